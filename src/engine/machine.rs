//! The connection state machine: FastCGI records in, events and reply bytes out, no I/O.
//!
//! One [`Machine`] per transport connection, in the codec's style one level up: the caller
//! feeds whatever bytes it has ([`Machine::advance`]) and gets back how many it used and,
//! at most, one [`Event`]: a request whose head (BEGIN_REQUEST and the whole PARAMS stream)
//! is complete, a piece of a request's stdin or data stream, the end of one, or an abort.
//! Everything the application does not need to see is answered here, once, into
//! [`Machine::take_output`]: `FCGI_GET_VALUES_RESULT`, `FCGI_UNKNOWN_TYPE`,
//! `FCGI_END_REQUEST` with `FCGI_UNKNOWN_ROLE` or `FCGI_CANT_MPX_CONN`, the `431` of
//! oversized params, the `503` + `FCGI_OVERLOADED` of a request over a budget, and the
//! END_REQUEST of a request aborted before it ran.
//!
//! ```text
//!                 BEGIN(id)          PARAMS(id, "")           finish(id)
//!   (no request) ----------> Head -----------------> Running -----------> (gone)
//!        ^                    |                        |
//!        |   ABORT / 431 /    |          ABORT(id): Event::Abort, stays Running
//!        +---- 503 -----------+          STDIN/DATA: Event::Data, then Event::End
//! ```
//!
//! A connection that does not multiplex holds at most one request. A BEGIN_REQUEST for
//! another id while that request still receives input is answered `FCGI_CANT_MPX_CONN`;
//! once its input is complete, the next BEGIN_REQUEST is a pipelined request and waits
//! ([`Progress::Blocked`]) until [`Machine::finish`]. Records of ids that are not active
//! are skipped (spec 3.3).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::protocol::{
    encode_end_request, encode_get_values_result, encode_header_into, encode_stream_end,
    BeginRequestBody, Header, Params, ParamsDecoder, ParamsLimits, ProtocolError, ProtocolStatus,
    RecordType, Role, UnknownTypeBody, HEADER_LEN, MAX_CONNS, MAX_CONTENT_LEN, MAX_REQS,
    MPXS_CONNS,
};

/// The limits and shared counters every machine of one engine obeys.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Several requests per connection (`FCGI_MPXS_CONNS=1`).
    pub(crate) multiplex: bool,
    /// Requests at once on one multiplexed connection.
    pub(crate) max_reqs_per_conn: usize,
    /// Params of one request.
    pub(crate) params: ParamsLimits,
    /// Bytes of params that heads in progress may hold together, over every connection.
    pub(crate) head_budget: usize,
    /// Bytes of params that the heads in progress of one connection may hold together (a
    /// multiplexed connection's requests share it).
    pub(crate) conn_head_budget: usize,
    /// Bytes of params heads in progress hold now.
    pub(crate) head_bytes: AtomicUsize,
    /// Answered as `FCGI_MAX_CONNS`.
    pub(crate) max_conns: usize,
    /// Answered as `FCGI_MAX_REQS` (the threads that serve requests).
    pub(crate) max_reqs: AtomicUsize,
    /// Requests refused with `FCGI_OVERLOADED`.
    pub(crate) refused: AtomicU64,
}

impl Limits {
    /// Limits with the given switches and the default budgets.
    pub(crate) fn new(multiplex: bool, max_reqs: usize, max_conns: usize) -> Limits {
        Limits {
            multiplex,
            max_reqs_per_conn: 32,
            params: ParamsLimits::default(),
            head_budget: 64 << 20,
            conn_head_budget: ParamsLimits::default().max_bytes,
            head_bytes: AtomicUsize::new(0),
            max_conns,
            max_reqs: AtomicUsize::new(max_reqs),
            refused: AtomicU64::new(0),
        }
    }

    /// Takes `n` bytes from the heads budget; false (nothing taken) when it would overflow.
    fn charge(&self, n: usize) -> bool {
        let mut cur = self.head_bytes.load(Ordering::Relaxed);
        loop {
            if cur.saturating_add(n) > self.head_budget {
                return false;
            }
            match self.head_bytes.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn refund(&self, n: usize) {
        if n > 0 {
            self.head_bytes.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn get_values(&self) -> [(&'static str, String); 3] {
        [
            (MAX_CONNS, self.max_conns.to_string()),
            (MAX_REQS, self.max_reqs.load(Ordering::Relaxed).to_string()),
            (
                MPXS_CONNS,
                if self.multiplex { "1" } else { "0" }.to_string(),
            ),
        ]
    }
}

/// A request's input stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    /// `FCGI_STDIN`.
    Stdin,
    /// `FCGI_DATA` (Filter role).
    Data,
}

impl Which {
    fn slot(self) -> usize {
        usize::from(self == Which::Data)
    }

    fn of(t: RecordType) -> Option<Which> {
        match t {
            RecordType::Stdin => Some(Which::Stdin),
            RecordType::Data => Some(Which::Data),
            _ => None,
        }
    }
}

/// A request ready to run: BEGIN_REQUEST and its whole PARAMS stream arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) id: u16,
    pub(crate) role: Role,
    pub(crate) keep_conn: bool,
    pub(crate) params: Params,
}

/// What the caller has to act on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A request's head is complete.
    Head(Head),
    /// The last `len` bytes used are content of a request's input stream.
    Data { id: u16, which: Which, len: usize },
    /// A request's input stream ended.
    End { id: u16, which: Which },
    /// The web server aborted a running request (`FCGI_ABORT_REQUEST`).
    Abort { id: u16 },
}

/// The result of [`Machine::advance`]; each variant carries the bytes used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// An event; call again with the rest of the input.
    Event(usize, Event),
    /// The input is used up (or, with `room` 0, stream content waits): feed more.
    NeedMore(usize),
    /// A pipelined BEGIN_REQUEST waits for the running request to finish.
    Blocked(usize),
}

/// A violation that ends the connection (the peer is out of sync, or hostile).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConnError {
    /// Bytes that are not FastCGI.
    Protocol(ProtocolError),
    /// Records in an order the protocol forbids.
    Order(String),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Protocol(e) => e.fmt(f),
            ConnError::Order(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<ConnError> for std::io::Error {
    fn from(e: ConnError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

#[derive(Debug)]
enum State {
    /// Params arriving; `charged` bytes count against [`Limits::head_budget`].
    Head {
        dec: Box<ParamsDecoder>,
        charged: usize,
    },
    /// Handed out; `ended` per [`Which`].
    Running { ended: [bool; 2] },
}

#[derive(Debug)]
struct Active {
    id: u16,
    keep: bool,
    role: Role,
    state: State,
}

/// Where the content of the current record goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Sink {
    Skip,
    /// Into `collect` (a BEGIN_REQUEST body, a management record).
    Collect,
    Params,
    Stream(Which),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Cursor {
    /// Collecting a record header.
    Header {
        buf: [u8; HEADER_LEN],
        have: u8,
    },
    /// A complete header kept back: a pipelined BEGIN_REQUEST.
    Held(Header),
    Content {
        h: Header,
        left: u16,
        to: Sink,
    },
    Padding(u8),
}

const FRESH: Cursor = Cursor::Header {
    buf: [0; HEADER_LEN],
    have: 0,
};

/// One connection's protocol state; see the module documentation.
#[derive(Debug)]
pub(crate) struct Machine {
    cursor: Cursor,
    active: Vec<Active>,
    collect: Vec<u8>,
    out: Vec<u8>,
    notes: Vec<String>,
    /// A request without keep-conn ended here (refused or answered by the machine): the
    /// connection closes once the output is out, and later input is ignored.
    close_after: bool,
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

impl Machine {
    /// A machine for a new connection.
    pub(crate) fn new() -> Machine {
        Machine {
            cursor: FRESH,
            active: Vec::new(),
            collect: Vec::new(),
            out: Vec::new(),
            notes: Vec::new(),
            close_after: false,
        }
    }

    /// Uses bytes of `input` until one event is ready, or the input is used up, or a
    /// pipelined request must wait. `room` caps the stream content one [`Event::Data`] may
    /// cover (the reader's buffer); with `room` 0, stream content is left in the input.
    ///
    /// # Errors
    ///
    /// A [`ConnError`] when the connection cannot go on; feed it nothing more.
    pub(crate) fn advance(
        &mut self,
        lim: &Limits,
        input: &[u8],
        room: usize,
    ) -> Result<Progress, ConnError> {
        let mut used = 0;
        loop {
            if self.close_after {
                // Nothing after a request that asked to close counts.
                return Ok(Progress::NeedMore(input.len()));
            }
            match &mut self.cursor {
                Cursor::Held(h) => {
                    let h = *h;
                    if self.blocks(lim, &h) {
                        return Ok(Progress::Blocked(used));
                    }
                    self.cursor = FRESH;
                    if let Some(ev) = self.on_header(lim, h)? {
                        return Ok(Progress::Event(used, ev));
                    }
                }
                Cursor::Header { have: 0, .. } if input.len() - used >= HEADER_LEN => {
                    // A whole header in the input: decode it in place.
                    let head: &[u8; HEADER_LEN] =
                        input[used..used + HEADER_LEN].try_into().expect("8 bytes");
                    let h = Header::decode(head).map_err(ConnError::Protocol)?;
                    used += HEADER_LEN;
                    if self.blocks(lim, &h) {
                        self.cursor = Cursor::Held(h);
                        return Ok(Progress::Blocked(used));
                    }
                    if let Some(ev) = self.on_header(lim, h)? {
                        return Ok(Progress::Event(used, ev));
                    }
                }
                Cursor::Header { buf, have } => {
                    let rest = &input[used..];
                    if rest.is_empty() {
                        return Ok(Progress::NeedMore(used));
                    }
                    let at = *have as usize;
                    let take = (HEADER_LEN - at).min(rest.len());
                    buf[at..at + take].copy_from_slice(&rest[..take]);
                    *have += take as u8;
                    used += take;
                    if (*have as usize) < HEADER_LEN {
                        return Ok(Progress::NeedMore(used));
                    }
                    let h = Header::decode(buf).map_err(ConnError::Protocol)?;
                    self.cursor = FRESH;
                    if self.blocks(lim, &h) {
                        self.cursor = Cursor::Held(h);
                        return Ok(Progress::Blocked(used));
                    }
                    if let Some(ev) = self.on_header(lim, h)? {
                        return Ok(Progress::Event(used, ev));
                    }
                }
                Cursor::Padding(left) => {
                    let take = (*left as usize).min(input.len() - used);
                    *left -= take as u8;
                    used += take;
                    if *left > 0 {
                        return Ok(Progress::NeedMore(used));
                    }
                    self.cursor = FRESH;
                }
                Cursor::Content { h, left, to } => {
                    let (h, to) = (*h, *to);
                    let mut take = (*left as usize).min(input.len() - used);
                    if let Sink::Stream(_) = to {
                        take = take.min(room);
                    }
                    if take == 0 {
                        return Ok(Progress::NeedMore(used));
                    }
                    *left -= take as u16;
                    let done = *left == 0;
                    let piece = &input[used..used + take];
                    used += take;
                    if done {
                        self.cursor = after_content(&h);
                    }
                    match to {
                        Sink::Skip => {}
                        Sink::Collect => {
                            self.collect.extend_from_slice(piece);
                            if done {
                                self.on_collected(lim, h)?;
                            }
                        }
                        Sink::Params => {
                            if let Some(ev) = self.on_params(lim, h.request_id, piece, false)? {
                                return Ok(Progress::Event(used, ev));
                            }
                        }
                        Sink::Stream(which) => {
                            let ev = Event::Data {
                                id: h.request_id,
                                which,
                                len: take,
                            };
                            return Ok(Progress::Event(used, ev));
                        }
                    }
                }
            }
        }
    }

    /// While the cursor is inside stream content: the request, the stream, and the content
    /// bytes of this record still to come. A reader with nothing buffered may read that
    /// many bytes straight into its own buffer, then call [`Machine::consume_stream`].
    pub(crate) fn stream_left(&self) -> Option<(u16, Which, usize)> {
        match self.cursor {
            Cursor::Content {
                h,
                left,
                to: Sink::Stream(which),
            } => Some((h.request_id, which, left as usize)),
            _ => None,
        }
    }

    /// Records that `n` bytes of the current stream content were read around the machine
    /// (at most what [`Machine::stream_left`] said).
    pub(crate) fn consume_stream(&mut self, n: usize) {
        if let Cursor::Content { h, left, .. } = &mut self.cursor {
            debug_assert!(n <= *left as usize);
            *left -= n.min(*left as usize) as u16;
            if *left == 0 {
                self.cursor = after_content(h);
            }
        }
    }

    /// A pipelined BEGIN_REQUEST must wait when the connection does not multiplex and the
    /// running request's input is complete (a BEGIN_REQUEST while input still comes is a
    /// concurrent request, answered `FCGI_CANT_MPX_CONN`).
    fn blocks(&self, lim: &Limits, h: &Header) -> bool {
        !lim.multiplex
            && h.request_id != 0
            && h.record_type == RecordType::BeginRequest
            && self.active.iter().any(|a| {
                matches!(
                    a.state,
                    State::Running {
                        ended: [true, true]
                    }
                )
            })
    }

    fn find(&self, id: u16) -> Option<usize> {
        self.active.iter().position(|a| a.id == id)
    }

    fn start(&mut self, h: Header, to: Sink) {
        self.cursor = if h.content_length > 0 {
            Cursor::Content {
                h,
                left: h.content_length,
                to,
            }
        } else {
            after_content(&h)
        };
    }

    fn remove(&mut self, lim: &Limits, i: usize) -> Active {
        let a = self.active.swap_remove(i);
        if let State::Head { charged, .. } = a.state {
            lim.refund(charged);
        }
        a
    }

    fn on_header(&mut self, lim: &Limits, h: Header) -> Result<Option<Event>, ConnError> {
        let id = h.request_id;
        if id == 0 {
            // Management records: GET_VALUES is answered, anything else is UNKNOWN_TYPE.
            self.collect.clear();
            self.start(h, Sink::Collect);
            if h.content_length == 0 {
                self.on_collected(lim, h)?;
            }
            return Ok(None);
        }
        let at = self.find(id);
        let mut event = None;
        let to = match h.record_type {
            RecordType::BeginRequest => {
                if at.is_some() {
                    return Err(ConnError::Order(format!(
                        "FCGI_BEGIN_REQUEST for request {id} which is already active"
                    )));
                }
                if h.content_length != 8 {
                    return Err(ConnError::Protocol(ProtocolError::BadBodyLength {
                        record_type: u8::from(RecordType::BeginRequest),
                        len: h.content_length as usize,
                    }));
                }
                self.collect.clear();
                Sink::Collect
            }
            RecordType::Params => match at.map(|i| &self.active[i].state) {
                Some(State::Head { .. }) if h.content_length == 0 => {
                    event = self.on_params(lim, id, &[], true)?;
                    Sink::Skip
                }
                Some(State::Head { .. }) => Sink::Params,
                _ => Sink::Skip,
            },
            t @ (RecordType::Stdin | RecordType::Data) => {
                let which = Which::of(t).expect("a stream type");
                match at.map(|i| &mut self.active[i].state) {
                    Some(State::Head { .. }) => {
                        return Err(ConnError::Order(format!(
                            "request {id}: received {t:?} before the end of FCGI_PARAMS"
                        )))
                    }
                    Some(State::Running { ended }) if !ended[which.slot()] => {
                        if h.content_length == 0 {
                            ended[which.slot()] = true;
                            event = Some(Event::End { id, which });
                            Sink::Skip
                        } else {
                            Sink::Stream(which)
                        }
                    }
                    _ => Sink::Skip,
                }
            }
            RecordType::AbortRequest => {
                if let Some(i) = at {
                    match self.active[i].state {
                        State::Head { .. } => {
                            let a = self.remove(lim, i);
                            encode_end_request(
                                &mut self.out,
                                id,
                                0,
                                ProtocolStatus::RequestComplete,
                            );
                            self.close_after |= !a.keep;
                        }
                        State::Running { .. } => event = Some(Event::Abort { id }),
                    }
                }
                Sink::Skip
            }
            _ => Sink::Skip,
        };
        self.start(h, to);
        Ok(event)
    }

    /// A BEGIN_REQUEST body or a management record is complete in `collect`.
    fn on_collected(&mut self, lim: &Limits, h: Header) -> Result<(), ConnError> {
        if h.request_id == 0 {
            if h.record_type == RecordType::GetValues {
                self.answer_get_values(lim);
            } else {
                encode_header_into(&mut self.out, RecordType::UnknownType, 0, 8);
                let body = UnknownTypeBody {
                    record_type: h.record_type,
                };
                self.out.extend_from_slice(&body.encode());
            }
            self.collect = Vec::new();
            return Ok(());
        }
        let body = BeginRequestBody::decode(&self.collect).map_err(ConnError::Protocol)?;
        self.collect.clear();
        let (id, keep) = (h.request_id, body.keep_conn());
        if let Role::Unknown(r) = body.role {
            self.notes.push(format!(
                "request {id}: unknown role {r}, answered FCGI_UNKNOWN_ROLE"
            ));
            encode_end_request(&mut self.out, id, 0, ProtocolStatus::UnknownRole);
            self.close_after |= !keep;
            return Ok(());
        }
        if !lim.multiplex && !self.active.is_empty() {
            // spec 5.5: a concurrent request on a connection that does not multiplex.
            encode_end_request(&mut self.out, id, 0, ProtocolStatus::CantMpxConn);
            return Ok(());
        }
        if self.active.len() >= lim.max_reqs_per_conn.max(1) {
            self.notes.push(format!(
                "request {id}: {} requests already run on this connection; refused (503)",
                self.active.len()
            ));
            self.refuse_overloaded(lim, id, keep);
            return Ok(());
        }
        self.active.push(Active {
            id,
            keep,
            role: body.role,
            state: State::Head {
                dec: Box::new(ParamsDecoder::new(lim.params)),
                charged: 0,
            },
        });
        Ok(())
    }

    fn answer_get_values(&mut self, lim: &Limits) {
        let mut dec = ParamsDecoder::new(ParamsLimits {
            max_bytes: MAX_CONTENT_LEN,
            max_pairs: 64,
        });
        let names = dec.feed(&self.collect).and_then(|_| dec.finish());
        let values = lim.get_values();
        let mut answer: Vec<(&str, &str)> = Vec::new();
        if let Ok(names) = &names {
            for p in names.iter() {
                if let Some((n, v)) = values.iter().find(|(n, _)| n.as_bytes() == p.name) {
                    answer.push((n, v));
                }
            }
        }
        encode_get_values_result(&mut self.out, &answer);
    }

    /// Params content for request `id` (`end`: the empty record that ends them).
    fn on_params(
        &mut self,
        lim: &Limits,
        id: u16,
        piece: &[u8],
        end: bool,
    ) -> Result<Option<Event>, ConnError> {
        let Some(i) = self.find(id) else {
            return Ok(None);
        };
        let keep = self.active[i].keep;
        if !matches!(self.active[i].state, State::Head { .. }) {
            return Ok(None);
        }
        if !end {
            // This connection's other heads in progress (a multiplexed connection's), with
            // this one, share one budget; one head alone is bounded by the params limits.
            let (mine, others) = self
                .active
                .iter()
                .enumerate()
                .fold((0, 0), |(m, o), (j, a)| match a.state {
                    State::Head { charged, .. } if j == i => (m + charged, o),
                    State::Head { charged, .. } => (m, o + charged),
                    State::Running { .. } => (m, o),
                });
            let over = if others > 0 && others + mine + piece.len() > lim.conn_head_budget {
                Some(("this connection's", lim.conn_head_budget))
            } else if !lim.charge(piece.len()) {
                Some(("all connections'", lim.head_budget))
            } else {
                None
            };
            if let Some((whose, budget)) = over {
                self.remove(lim, i);
                self.notes.push(format!(
                    "request {id}: {whose} heads in progress would hold more than {budget} bytes of params; refused (503)"
                ));
                self.refuse_overloaded(lim, id, keep);
                return Ok(None);
            }
            let State::Head { dec, charged } = &mut self.active[i].state else {
                unreachable!("checked above")
            };
            *charged += piece.len();
            if let Err(e) = dec.feed(piece) {
                self.remove(lim, i);
                self.notes.push(format!("request {id}: {e}; refused (431)"));
                self.refuse(id, 431, "Request Header Fields Too Large", None, keep);
                return Ok(None);
            }
            return Ok(None);
        }
        let State::Head { dec, charged } = &mut self.active[i].state else {
            unreachable!("checked above")
        };
        let params = dec.finish().map_err(ConnError::Protocol)?;
        lim.refund(*charged);
        let a = &mut self.active[i];
        let filter = a.role == Role::Filter;
        a.state = State::Running {
            // Only the Filter role has a data stream.
            ended: [false, !filter],
        };
        Ok(Some(Event::Head(Head {
            id,
            role: a.role,
            keep_conn: keep,
            params,
        })))
    }

    fn refuse_overloaded(&mut self, lim: &Limits, id: u16, keep: bool) {
        lim.refused.fetch_add(1, Ordering::Relaxed);
        self.refuse(
            id,
            503,
            "Service Unavailable",
            Some(ProtocolStatus::Overloaded),
            keep,
        );
    }

    /// Ends request `id` here: a `Status:` response on stdout (web servers that ignore the
    /// protocol status still see the error), then END_REQUEST with `protocol` (default
    /// REQUEST_COMPLETE).
    fn refuse(
        &mut self,
        id: u16,
        status: u16,
        reason: &str,
        protocol: Option<ProtocolStatus>,
        keep: bool,
    ) {
        let mut body = format!("Status: {status} {reason}\r\nContent-Type: text/plain\r\n");
        if protocol == Some(ProtocolStatus::Overloaded) {
            body.push_str("Retry-After: 1\r\n");
        }
        body.push_str(&format!("\r\n{status} {reason}\n"));
        encode_header_into(&mut self.out, RecordType::Stdout, id, body.len() as u16);
        self.out.extend_from_slice(body.as_bytes());
        encode_stream_end(&mut self.out, RecordType::Stdout, id);
        encode_end_request(
            &mut self.out,
            id,
            0,
            protocol.unwrap_or(ProtocolStatus::RequestComplete),
        );
        self.close_after |= !keep;
    }

    /// The application ended request `id` (its END_REQUEST is going out). Returns whether
    /// the web server asked to keep the connection; `None` if `id` was not running.
    pub(crate) fn finish(&mut self, lim: &Limits, id: u16) -> Option<bool> {
        let i = self.find(id)?;
        let a = self.remove(lim, i);
        self.close_after |= !a.keep;
        Some(a.keep)
    }

    /// Whether request `id` received the end of each of its input streams.
    pub(crate) fn input_done(&self, id: u16) -> bool {
        match self.find(id).map(|i| &self.active[i].state) {
            Some(State::Running { ended }) => ended == &[true, true],
            _ => true,
        }
    }

    /// Bytes to send to the web server, produced by the machine itself.
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether there is output to send.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Bytes of output to send.
    pub(crate) fn output_len(&self) -> usize {
        self.out.len()
    }

    /// Messages worth a log line (refusals, unknown roles).
    pub(crate) fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Requests in progress (heads and running).
    pub(crate) fn active(&self) -> usize {
        self.active.len()
    }

    /// Requests handed out and not finished.
    pub(crate) fn running(&self) -> usize {
        self.active
            .iter()
            .filter(|a| matches!(a.state, State::Running { .. }))
            .count()
    }

    /// Whether the connection is between records with no request in progress: closing it
    /// now loses nothing, and an idle timeout may close it.
    pub(crate) fn is_idle(&self) -> bool {
        self.active.is_empty() && self.cursor == FRESH
    }

    /// Whether the connection is at a record boundary (nothing half received).
    pub(crate) fn at_boundary(&self) -> bool {
        matches!(
            self.cursor,
            Cursor::Header { have: 0, .. } | Cursor::Held(_)
        )
    }

    /// Whether a request that asked to close the connection has ended.
    pub(crate) fn wants_close(&self) -> bool {
        self.close_after
    }

    /// Gives back what heads in progress took from the budget (the connection is gone).
    pub(crate) fn release(&mut self, lim: &Limits) {
        while !self.active.is_empty() {
            self.remove(lim, 0);
        }
    }
}

fn after_content(h: &Header) -> Cursor {
    if h.padding_length > 0 {
        Cursor::Padding(h.padding_length)
    } else {
        FRESH
    }
}

/// What a run of a machine produced, owned, with stream content coalesced per request
/// and stream (so how the input was cut does not show): for tests and fuzzing.
#[derive(Debug, PartialEq, Eq, Clone)]
pub(crate) enum Seen {
    Head(u16, Role, bool, Vec<(Vec<u8>, Vec<u8>)>),
    Data(u16, Which, Vec<u8>),
    End(u16, Which),
    Abort(u16),
    Blocked,
    Error(String),
}

/// Feeds `input` to `m` in pieces of at most `piece` bytes, as a reader would, and
/// collects the events and the output bytes. Checks the machine's promises on the way:
/// `NeedMore` uses all it was given, an event's data lies within what was used.
pub(crate) fn trace(
    lim: &Limits,
    m: &mut Machine,
    input: &[u8],
    piece: usize,
) -> (Vec<Seen>, Vec<u8>) {
    let mut seen: Vec<Seen> = Vec::new();
    let mut out = Vec::new();
    let mut pending: &[u8] = &[];
    let mut rest = input;
    loop {
        if pending.is_empty() {
            if rest.is_empty() {
                break;
            }
            let n = piece.max(1).min(rest.len());
            pending = &rest[..n];
            rest = &rest[n..];
        }
        match m.advance(lim, pending, usize::MAX) {
            Err(e) => {
                seen.push(Seen::Error(e.to_string()));
                break;
            }
            Ok(Progress::NeedMore(used)) => {
                assert_eq!(used, pending.len(), "NeedMore uses all it was given");
                pending = &[];
            }
            Ok(Progress::Blocked(_)) => {
                seen.push(Seen::Blocked);
                break;
            }
            Ok(Progress::Event(used, ev)) => {
                assert!(used <= pending.len());
                let data = &pending[..used];
                pending = &pending[used..];
                match ev {
                    Event::Head(h) => seen.push(Seen::Head(
                        h.id,
                        h.role,
                        h.keep_conn,
                        h.params
                            .iter()
                            .map(|p| (p.name.to_vec(), p.value.to_vec()))
                            .collect(),
                    )),
                    Event::Data { id, which, len } => {
                        assert!(len > 0 && len <= used);
                        let bytes = &data[used - len..];
                        match seen.last_mut() {
                            Some(Seen::Data(i, w, v)) if *i == id && *w == which => {
                                v.extend_from_slice(bytes)
                            }
                            _ => seen.push(Seen::Data(id, which, bytes.to_vec())),
                        }
                    }
                    Event::End { id, which } => seen.push(Seen::End(id, which)),
                    Event::Abort { id } => seen.push(Seen::Abort(id)),
                }
            }
        }
        out.extend(m.take_output());
    }
    out.extend(m.take_output());
    (seen, out)
}

/// The fuzz target `machine` (and its saved inputs' replay): byte 0 picks multiplexing and
/// small limits, byte 1 the size of the pieces; the rest is the connection's input. The
/// machine must never panic, must give the same events, replies and errors however the
/// input is cut, and must give back every byte of the heads budget.
pub(crate) fn fuzz_check(data: &[u8]) {
    let (Some(&mode), Some(&piece)) = (data.first(), data.get(1)) else {
        return;
    };
    let input = &data[2..];
    let mut lim = Limits::new(mode & 1 != 0, 2, 8);
    lim.max_reqs_per_conn = 1 + (mode as usize >> 1) % 4;
    if mode & 0x40 != 0 {
        lim.params = ParamsLimits {
            max_bytes: 64,
            max_pairs: 4,
        };
        lim.head_budget = 100;
    }
    let whole = trace(&lim, &mut Machine::new(), input, usize::MAX);
    let mut m = Machine::new();
    let cut = trace(&lim, &mut m, input, piece as usize);
    assert_eq!(whole, cut, "the same input cut in pieces of {piece}");
    m.release(&lim);
    assert_eq!(
        lim.head_bytes.load(Ordering::Relaxed),
        0,
        "heads budget given back"
    );
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
