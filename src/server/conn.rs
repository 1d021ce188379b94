//! One transport connection: a buffered record reader, a locked record writer, and the
//! state machine that turns records into requests.
//!
//! ```text
//!            +-----------+  BEGIN(id)   +-----------+  PARAMS(id, "")  +----------+
//!   parked --| between   |------------->| in params |----------------->| running  |
//!  (poller)  | requests  |<-------------| of id     |  ABORT(id) /     | handler  |
//!            +-----------+  UNKNOWN_ROLE+-----------+  bad params      +----------+
//!                 ^   |                                                     |
//!                 |   +-- id 0: GET_VALUES -> RESULT, other -> UNKNOWN_TYPE |
//!                 |   +-- records of inactive ids: skipped (spec 3.3)       |
//!                 +------------------- END_REQUEST(id) ---------------------+
//! ```
//!
//! While a request runs on a connection that does not multiplex, a `BEGIN_REQUEST` for
//! another id is answered `FCGI_CANT_MPX_CONN` and the running request is unaffected.

use std::io::{self, IoSlice, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::listener::Stream;
use super::ServerCtx;
use crate::protocol::{
    encode_end_request, encode_get_values_result, encode_header_into, BeginRequestBody, Header,
    Params, ParamsDecoder, ParamsLimits, ProtocolError, ProtocolStatus, RecordType, Role,
    UnknownTypeBody, HEADER_LEN, MAX_CONNS, MAX_CONTENT_LEN, MAX_REQS, MPXS_CONNS,
};

/// Bytes the reader buffers: one whole maximal record (header, content, padding) fits.
const READ_BUF: usize = HEADER_LEN + MAX_CONTENT_LEN + 255 + 1;

/// The state of a connection shared by its reader and every writer of its requests.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) stream: Stream,
    write_lock: Mutex<()>,
    /// Set when a write failed or the peer was seen gone: later writes fail fast.
    pub(crate) broken: AtomicBool,
    pub(crate) ctx: Arc<ServerCtx>,
}

impl Shared {
    pub(crate) fn new(stream: Stream, ctx: Arc<ServerCtx>) -> Shared {
        ctx.stats.open.fetch_add(1, Ordering::Relaxed);
        Shared {
            stream,
            write_lock: Mutex::new(()),
            broken: AtomicBool::new(false),
            ctx,
        }
    }

    /// Writes all of `bufs` as one unit, so records of concurrent requests never interleave.
    pub(crate) fn write_all(&self, bufs: &[&[u8]]) -> io::Result<()> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(aborted_error());
        }
        let _guard = self.write_lock.lock();
        let r = write_all_vectored(&self.stream, bufs);
        if r.is_err() {
            self.broken.store(true, Ordering::Relaxed);
        }
        r
    }

    /// Sends `FCGI_END_REQUEST` for `id`.
    pub(crate) fn end_request(
        &self,
        id: u16,
        app_status: i32,
        status: ProtocolStatus,
    ) -> io::Result<()> {
        let mut out = Vec::with_capacity(16);
        encode_end_request(&mut out, id, app_status as u32, status);
        self.write_all(&[&out])
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let before = self.ctx.stats.open.fetch_sub(1, Ordering::Relaxed);
        if before >= self.ctx.config.max_conns {
            // Below the limit again: let the poller re-arm the listeners.
            if let Some(p) = self.ctx.waker.get() {
                let _ = p.notify();
            }
        }
    }
}

fn write_all_vectored(mut s: &Stream, bufs: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = bufs
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| IoSlice::new(b))
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match s.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The error every stream operation returns once the web server has gone or aborted.
pub(crate) fn aborted_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "FastCGI request aborted: the web server closed the connection or sent ABORT_REQUEST",
    )
}

pub(crate) fn protocol_error(e: ProtocolError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A buffered reader of records that can hand out content piecewise (a large STDIN record
/// is read straight into the caller's buffer, never held whole).
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Content bytes of the current record not yet consumed, then its padding.
    content_left: usize,
    padding_left: usize,
}

impl Reader {
    pub(crate) fn new() -> Reader {
        Reader {
            buf: vec![0; READ_BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            content_left: 0,
            padding_left: 0,
        }
    }

    /// A reader with no buffer, for a connection that is only being closed (its last bytes
    /// are read into a scratch buffer and dropped): 64 KiB less per closing connection.
    pub(crate) fn closed() -> Reader {
        Reader {
            buf: Box::new([]),
            pos: 0,
            end: 0,
            content_left: 0,
            padding_left: 0,
        }
    }

    /// Bytes received but not yet consumed.
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.pos
    }

    /// True when the current record is consumed and nothing else is buffered.
    pub(crate) fn is_idle(&self) -> bool {
        self.buffered() == 0 && self.content_left == 0 && self.padding_left == 0
    }

    fn fill(&mut self, mut s: &Stream) -> io::Result<usize> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        loop {
            match io::Read::read(&mut s, &mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes at least `n` bytes available at `pos` (n <= buffer size).
    fn fill_to(&mut self, s: &Stream, n: usize) -> io::Result<bool> {
        if self.pos + n > self.buf.len() {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        while self.buffered() < n {
            if self.fill(s)? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Discards what is left of the current record.
    pub(crate) fn skip_record(&mut self, s: &Stream) -> io::Result<()> {
        while self.content_left + self.padding_left > 0 {
            if self.buffered() == 0 && self.fill(s)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = (self.content_left + self.padding_left).min(self.buffered());
            self.pos += take;
            let from_content = take.min(self.content_left);
            self.content_left -= from_content;
            self.padding_left -= take - from_content;
        }
        Ok(())
    }

    /// The next record header, after skipping the rest of the current record. `Ok(None)`
    /// when the peer closed the connection at a record boundary.
    pub(crate) fn next_header(&mut self, s: &Stream) -> io::Result<Option<Header>> {
        self.skip_record(s)?;
        if !self.fill_to(s, HEADER_LEN)? {
            return if self.buffered() == 0 {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a record header",
                ))
            };
        }
        let head: &[u8; HEADER_LEN] = self.buf[self.pos..self.pos + HEADER_LEN]
            .try_into()
            .expect("8 bytes");
        let header = Header::decode(head).map_err(protocol_error)?;
        self.pos += HEADER_LEN;
        self.content_left = header.content_length as usize;
        self.padding_left = header.padding_length as usize;
        Ok(Some(header))
    }

    /// The whole content of the current record (at most 65535 bytes), consumed.
    pub(crate) fn content(&mut self, s: &Stream) -> io::Result<&[u8]> {
        let n = self.content_left;
        if !self.fill_to(s, n)? {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a record",
            ));
        }
        let start = self.pos;
        self.pos += n;
        self.content_left = 0;
        Ok(&self.buf[start..start + n])
    }

    /// Reads up to `out.len()` bytes of the current record's content. Large reads with an
    /// empty buffer go straight from the socket into `out`.
    pub(crate) fn read_content(&mut self, s: &Stream, out: &mut [u8]) -> io::Result<usize> {
        if self.content_left == 0 || out.is_empty() {
            return Ok(0);
        }
        let want = out.len().min(self.content_left);
        if self.buffered() == 0 {
            if want >= 4096 {
                let n = loop {
                    match io::Read::read(&mut &*s, &mut out[..want]) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        r => break r?,
                    }
                };
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in the middle of a record",
                    ));
                }
                self.content_left -= n;
                return Ok(n);
            }
            if self.fill(s)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a record",
                ));
            }
        }
        let n = want.min(self.buffered());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.content_left -= n;
        Ok(n)
    }

    /// Consumes the rest of the current record if it is all buffered.
    pub(crate) fn skip_current_if_buffered(&mut self) -> bool {
        let rest = self.content_left + self.padding_left;
        if rest > self.buffered() {
            return false;
        }
        self.pos += rest;
        self.content_left = 0;
        self.padding_left = 0;
        true
    }

    /// The header of the next record, if that whole record is buffered (at a boundary).
    pub(crate) fn buffered_header(&self) -> Option<Header> {
        if self.content_left + self.padding_left != 0 {
            return None;
        }
        let head: &[u8; HEADER_LEN] = self.pending().first_chunk()?;
        let h = Header::decode(head).ok()?;
        (self.buffered() >= h.record_len()).then_some(h)
    }

    /// Between requests on a connection that does not multiplex: drops buffered leftovers
    /// of finished requests (complete records of inactive ids, spec 3.3) and says whether a
    /// record that needs handling now (a BEGIN_REQUEST or a management record) is buffered.
    /// `false` means the connection should wait in the poller: what is buffered is nothing,
    /// or a partial record whose rest will make the socket readable.
    pub(crate) fn next_record_buffered(&mut self) -> bool {
        loop {
            if !self.skip_current_if_buffered() {
                return false;
            }
            match self.buffered_header() {
                None => return false,
                Some(h) if h.request_id != 0 && h.record_type != RecordType::BeginRequest => {
                    self.consume(h.record_len());
                }
                Some(_) => return true,
            }
        }
    }

    /// Drops `n` buffered bytes (a whole record from [`Reader::buffered_header`]).
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.buffered());
        self.pos += n;
    }

    /// The buffered bytes, for a look at what is pending without reading the socket.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Reads what the socket has without blocking (the socket must be non-blocking).
    /// `Ok(false)` on EOF.
    pub(crate) fn fill_nonblocking(&mut self, s: &Stream) -> io::Result<bool> {
        loop {
            if self.end == self.buf.len() && self.pos == 0 {
                return Ok(true);
            }
            match self.fill(s) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
    }

    /// Decodes one whole record from the buffer alone (non-blocking paths); `None` when it
    /// is not all there yet.
    pub(crate) fn buffered_record(&mut self) -> io::Result<Option<(Header, Vec<u8>)>> {
        debug_assert_eq!(self.content_left + self.padding_left, 0);
        match crate::protocol::decode_record(self.pending()).map_err(protocol_error)? {
            crate::protocol::Status::Complete((rec, used)) => {
                let out = (rec.header, rec.content.to_vec());
                self.pos += used;
                Ok(Some(out))
            }
            crate::protocol::Status::Partial(_) => Ok(None),
        }
    }
}

/// A connection between requests: the transport, its reader, and its bookkeeping.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) reader: Box<Reader>,
}

/// What the web server asked for, once BEGIN_REQUEST and the whole PARAMS stream arrived.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) id: u16,
    pub(crate) role: Role,
    pub(crate) keep_conn: bool,
    pub(crate) params: Params,
}

/// What [`Conn::read_request`] found.
#[derive(Debug)]
pub(crate) enum Next {
    /// A request ready to run.
    Request(Head),
    /// The connection is finished (peer closed, or a refused request without keep-conn).
    Close,
    /// Only records that needed no request came (management queries, leftovers of finished
    /// or refused requests) and nothing more is buffered: the connection should wait in the
    /// poller, not in a worker.
    Idle,
}

/// What a record that is not the caller's business turned into.
pub(crate) enum Side {
    /// Answered or skipped; read on.
    Handled,
    /// A record of the request `active`: the caller deals with it.
    Mine(Header),
}

impl Conn {
    pub(crate) fn new(stream: Stream, ctx: Arc<ServerCtx>) -> Conn {
        Conn {
            shared: Arc::new(Shared::new(stream, ctx)),
            reader: Box::new(Reader::new()),
        }
    }

    /// Reads records until a request is ready to run, answering management records and
    /// refusing what must be refused on the way.
    pub(crate) fn read_request(&mut self) -> io::Result<Next> {
        let shared = Arc::clone(&self.shared);
        let s = &shared.stream;
        let mut active: Option<(u16, bool, Role, ParamsDecoder)> = None;
        let mut handled_any = false;
        loop {
            if active.is_none() && handled_any {
                // The rest of the last record is on its way; after it, an empty buffer
                // means nothing is pending.
                self.reader.skip_record(s)?;
                if self.reader.is_idle() {
                    return Ok(Next::Idle);
                }
            }
            handled_any = true;
            let Some(h) = self.reader.next_header(s)? else {
                return match active {
                    None => Ok(Next::Close),
                    Some(_) => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the end of FCGI_PARAMS",
                    )),
                };
            };
            let active_id = active.as_ref().map(|a| a.0);
            if h.record_type == RecordType::BeginRequest && h.request_id != 0 && active.is_none() {
                let body =
                    BeginRequestBody::decode(self.reader.content(s)?).map_err(protocol_error)?;
                let keep = body.keep_conn();
                match body.role {
                    Role::Unknown(r) => {
                        shared.ctx.log(format_args!(
                            "request {}: unknown role {r}, answered FCGI_UNKNOWN_ROLE",
                            h.request_id
                        ));
                        shared.end_request(h.request_id, 0, ProtocolStatus::UnknownRole)?;
                        if !keep {
                            return Ok(Next::Close);
                        }
                    }
                    role => {
                        active = Some((
                            h.request_id,
                            keep,
                            role,
                            ParamsDecoder::new(shared.ctx.params_limits()),
                        ))
                    }
                }
                continue;
            }
            match side_record(&mut self.reader, &shared, h, active_id)? {
                Side::Handled => {}
                Side::Mine(h) => {
                    let (id, keep, role, dec) = active.as_mut().expect("Mine implies active");
                    match h.record_type {
                        RecordType::Params => {
                            let content = self.reader.content(s)?;
                            if content.is_empty() {
                                let params = dec.finish().map_err(protocol_error)?;
                                return Ok(Next::Request(Head {
                                    id: *id,
                                    role: *role,
                                    keep_conn: *keep,
                                    params,
                                }));
                            }
                            if let Err(e) = dec.feed(content) {
                                // Params over the limits: refuse this request, keep the
                                // connection in sync (its later records are skipped).
                                shared.ctx.log(format_args!("request {id}: {e}; refused"));
                                refuse_with_status(
                                    &shared,
                                    *id,
                                    431,
                                    "Request Header Fields Too Large",
                                )?;
                                let keep = *keep;
                                active = None;
                                if !keep {
                                    return Ok(Next::Close);
                                }
                            }
                        }
                        RecordType::AbortRequest => {
                            shared.end_request(*id, 0, ProtocolStatus::RequestComplete)?;
                            let keep = *keep;
                            active = None;
                            if !keep {
                                return Ok(Next::Close);
                            }
                        }
                        RecordType::Stdin | RecordType::Data => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "request {id}: received {:?} before the end of FCGI_PARAMS",
                                    h.record_type
                                ),
                            ));
                        }
                        _ => {} // unknown application record type: skipped
                    }
                }
            }
        }
    }
}

/// Handles a record that is not part of the caller's request: management records, a
/// concurrent BEGIN_REQUEST on a connection that does not multiplex, records of inactive
/// ids. Records of `active` come back as [`Side::Mine`], content unread.
pub(crate) fn side_record(
    reader: &mut Reader,
    shared: &Shared,
    h: Header,
    active: Option<u16>,
) -> io::Result<Side> {
    let s = &shared.stream;
    if h.request_id == 0 {
        let content = reader.content(s)?;
        management_reply(shared, h, content)?;
        return Ok(Side::Handled);
    }
    if Some(h.request_id) == active {
        if h.record_type == RecordType::BeginRequest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "FCGI_BEGIN_REQUEST for request {} which is already active",
                    h.request_id
                ),
            ));
        }
        return Ok(Side::Mine(h));
    }
    if h.record_type == RecordType::BeginRequest {
        // spec 5.5: a concurrent request on a connection that does not multiplex
        reader.skip_record(s)?;
        shared.end_request(h.request_id, 0, ProtocolStatus::CantMpxConn)?;
        return Ok(Side::Handled);
    }
    // spec 3.3: while a request id is inactive, its records are ignored.
    Ok(Side::Handled)
}

/// Answers a management record (request id 0): GET_VALUES with the real limits, anything
/// else with UNKNOWN_TYPE (spec 4.1, 4.2). The connection stays usable.
pub(crate) fn management_reply(shared: &Shared, h: Header, content: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(64);
    if h.record_type == RecordType::GetValues {
        let mut dec = ParamsDecoder::new(ParamsLimits {
            max_bytes: MAX_CONTENT_LEN,
            max_pairs: 64,
        });
        let names = dec.feed(content).and_then(|_| dec.finish());
        let values = shared.ctx.get_values();
        let mut answer: Vec<(&str, &str)> = Vec::new();
        if let Ok(names) = &names {
            for p in names.iter() {
                if let Some((n, v)) = values.iter().find(|(n, _)| n.as_bytes() == p.name) {
                    answer.push((n, v));
                }
            }
        }
        encode_get_values_result(&mut out, &answer);
    } else {
        encode_header_into(&mut out, RecordType::UnknownType, 0, 8);
        out.extend_from_slice(
            &UnknownTypeBody {
                record_type: h.record_type,
            }
            .encode(),
        );
    }
    shared.write_all(&[&out])
}

/// The names and values this application answers in GET_VALUES_RESULT.
pub(crate) fn get_values_table(
    max_conns: usize,
    max_reqs: usize,
    mpxs: bool,
) -> [(&'static str, String); 3] {
    [
        (MAX_CONNS, max_conns.to_string()),
        (MAX_REQS, max_reqs.to_string()),
        (MPXS_CONNS, if mpxs { "1" } else { "0" }.to_string()),
    ]
}

/// Ends request `id` with an HTTP error on stdout (for servers that ignore protocolStatus)
/// and END_REQUEST.
pub(crate) fn refuse_with_status(
    shared: &Shared,
    id: u16,
    status: u16,
    reason: &str,
) -> io::Result<()> {
    refuse(
        shared,
        id,
        status,
        reason,
        None,
        ProtocolStatus::RequestComplete,
    )
}

/// Refuses request `id` for lack of workers, and counts it: `Status: 503` with
/// `Retry-After` on stdout (nginx and most servers ignore protocolStatus) and
/// `FCGI_OVERLOADED` in END_REQUEST (HAProxy reads it).
pub(crate) fn refuse_overloaded(shared: &Shared, id: u16) -> io::Result<()> {
    shared.ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
    refuse(
        shared,
        id,
        503,
        "Service Unavailable",
        Some(1),
        ProtocolStatus::Overloaded,
    )
}

/// Refuses request `id`: `Status:` response on stdout, then END_REQUEST with `protocol`.
pub(crate) fn refuse(
    shared: &Shared,
    id: u16,
    status: u16,
    reason: &str,
    retry_after: Option<u32>,
    protocol: ProtocolStatus,
) -> io::Result<()> {
    let mut body = format!("Status: {status} {reason}\r\nContent-Type: text/plain\r\n");
    if let Some(secs) = retry_after {
        body.push_str(&format!("Retry-After: {secs}\r\n"));
    }
    body.push_str(&format!("\r\n{status} {reason}\n"));
    let mut out = Vec::with_capacity(body.len() + 40);
    encode_header_into(&mut out, RecordType::Stdout, id, body.len() as u16);
    out.extend_from_slice(body.as_bytes());
    encode_header_into(&mut out, RecordType::Stdout, id, 0);
    encode_end_request(&mut out, id, 0, protocol);
    shared.write_all(&[&out])
}
