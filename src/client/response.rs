//! One request/response exchange: sending BEGIN_REQUEST, PARAMS and the streamed STDIN while
//! reading STDOUT, STDERR and END_REQUEST, all on one thread.
//!
//! ```text
//!   start ──► [send params + stdin | read records] ──head complete──► Response (streaming)
//!                                                                    │ read() pumps stdin too
//!                         END_REQUEST ◄──────────────────────────────┘
//!   drop before END_REQUEST: best-effort FCGI_ABORT_REQUEST, then the connection is shut down
//! ```
//!
//! Full duplex without a second thread: whenever the exchange waits for the backend, it polls
//! the socket for "readable or writable" and sends the next STDIN record when it can write.
//! An application that writes a large answer before reading its input therefore never
//! deadlocks against us, and neither side's data is ever buffered beyond one record.

use std::io::{self, Read};
use std::ops::{Deref, DerefMut, Range};
use std::time::Instant;

use super::connection::ConnState;
use super::pool::PooledConnection;
use super::{Connection, Error, FcgiRequest, Head};
use crate::protocol::{
    encode_header_into, encode_params, encode_stream_end, BeginRequestBody, EndRequestBody, Header,
    ProtocolStatus, RecordType, HEADER_LEN, KEEP_CONN,
};

/// Body bytes per STDIN record: the largest multiple of 8 that fits a record.
const STDIN_CHUNK: usize = 65528;

/// The connection a response runs on: borrowed from the caller or leased from a pool.
#[derive(Debug)]
pub(crate) enum ConnRef<'a> {
    Borrowed(&'a mut Connection),
    Pooled(Box<PooledConnection>),
}

impl Deref for ConnRef<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            ConnRef::Borrowed(c) => c,
            ConnRef::Pooled(p) => p,
        }
    }
}

impl DerefMut for ConnRef<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match self {
            ConnRef::Borrowed(c) => c,
            ConnRef::Pooled(p) => p,
        }
    }
}

/// The connection a response runs on: its own, or a share of a multiplexed one.
#[derive(Debug)]
pub(crate) enum Link<'a> {
    Direct(ConnRef<'a>),
    Mux(std::sync::Arc<super::mux::MuxShared>),
    /// The request ended and its pooled connection went back to the pool.
    Released,
}

pub(super) enum Event {
    /// Stdout bytes in the connection's buffer (own connection).
    Stdout(Range<usize>),
    /// Stdout bytes handed over by a multiplexed connection.
    Owned(Vec<u8>),
    End,
}

/// The state of one request in flight.
pub(super) struct Exchange<'a> {
    pub(super) id: u16,
    pub(super) body: Option<Box<dyn Read + Send + 'a>>,
    /// True once bytes were read from the body: it cannot be sent again.
    body_touched: bool,
    /// True once any byte of the request went out.
    sent_any: bool,
    on_record: Option<super::RecordSink>,
    /// Records received for this request.
    records_seen: u64,
    wbuf: Vec<u8>,
    wpos: usize,
    pub(super) end_queued: bool,
    stdin_sent: bool,
    write_failed: bool,
    out: Range<usize>,
    owned: Vec<u8>,
    opos: usize,
    pending: Vec<u8>,
    ppos: usize,
    pub(super) stdout_bytes: u64,
    pub(super) end: Option<EndRequestBody>,
    stderr: Vec<u8>,
    stderr_limit: usize,
    stderr_dropped: u64,
    on_stderr: Option<super::StderrSink>,
    pub(super) deadline: Option<Instant>,
    failed: bool,
    parse_head: bool,
}

impl<'a> Exchange<'a> {
    /// A new exchange for request `id` with `wbuf` queued to send first.
    pub(super) fn new(
        id: u16,
        request: &mut FcgiRequest,
        body: Box<dyn Read + Send + 'a>,
        wbuf: Vec<u8>,
        config: &super::Config,
    ) -> Exchange<'a> {
        let timeout = request.timeout.or(config.request_timeout);
        let mut on_record = request.on_record.take();
        if let Some(f) = on_record.as_mut() {
            trace_sent(f, &wbuf);
        }
        Exchange {
            id,
            body: Some(body),
            body_touched: false,
            sent_any: false,
            on_record,
            records_seen: 0,
            wbuf,
            wpos: 0,
            end_queued: false,
            stdin_sent: false,
            write_failed: false,
            out: 0..0,
            owned: Vec::new(),
            opos: 0,
            pending: Vec::new(),
            ppos: 0,
            stdout_bytes: 0,
            end: None,
            stderr: Vec::new(),
            stderr_limit: request.stderr_limit.unwrap_or(config.stderr_limit),
            stderr_dropped: 0,
            on_stderr: request.on_stderr.take(),
            deadline: timeout.map(|t| Instant::now() + t),
            failed: false,
            parse_head: request.parse_head,
        }
    }

    /// Reads the next piece of the body as one STDIN record (the empty one at its end).
    pub(super) fn next_stdin_record(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        out.clear();
        if self.end_queued {
            return Ok(());
        }
        let Some(body) = self.body.as_mut() else {
            return Ok(());
        };
        out.resize(HEADER_LEN + STDIN_CHUNK, 0);
        let n = loop {
            match body.read(&mut out[HEADER_LEN..]) {
                Ok(n) => break n.min(STDIN_CHUNK),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Body(e)),
            }
        };
        self.body_touched |= n > 0;
        if n == 0 {
            out.clear();
            encode_stream_end(out, RecordType::Stdin, self.id);
            self.end_queued = true;
        } else {
            let h = Header::new(RecordType::Stdin, self.id, n as u16).encode();
            out[..HEADER_LEN].copy_from_slice(&h);
            out.truncate(HEADER_LEN + n);
        }
        if let Some(f) = self.on_record.as_mut() {
            trace_sent(f, out);
        }
        Ok(())
    }

    fn wants_write(&self) -> bool {
        !self.stdin_sent && !self.write_failed && self.end.is_none()
    }

    /// Sends what can be sent without blocking: queued bytes, then more of the body.
    fn pump_stdin(&mut self, conn: &mut Connection) -> Result<(), Error> {
        if !self.sent_any && self.wpos == 0 && !self.end_queued && !self.body_touched {
            // The head and the first piece of the body (for an empty body, its end) go out
            // in one write, as web servers send them: one segment, one wake-up of the
            // application. An empty body stays untouched, so a request that turns out not
            // sent can still be sent again.
            let mut first = Vec::new();
            self.next_stdin_record(&mut first)?;
            self.wbuf.extend_from_slice(&first);
        }
        loop {
            if self.wpos < self.wbuf.len() {
                match conn.write_some(&self.wbuf[self.wpos..]) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        self.wpos += n;
                        self.sent_any = true;
                    }
                    // Nothing of the request went out: the application cannot have seen it.
                    Err(e) if !self.sent_any => return Err(Error::NotSent(e)),
                    Err(_) => {
                        // The backend stopped reading (closed or reset). What it already
                        // sent, END_REQUEST included, is still to be read.
                        self.write_failed = true;
                        return Ok(());
                    }
                }
                continue;
            }
            if self.end_queued {
                self.stdin_sent = true;
                return Ok(());
            }
            let mut wbuf = std::mem::take(&mut self.wbuf);
            let res = self.next_stdin_record(&mut wbuf);
            self.wbuf = wbuf;
            res?;
            if self.wbuf.is_empty() {
                return Ok(());
            }
            self.wpos = 0;
        }
    }

    pub(super) fn take_stderr(&mut self, bytes: &[u8]) {
        if let Some(cb) = self.on_stderr.as_mut() {
            cb(bytes);
        }
        let room = self.stderr_limit.saturating_sub(self.stderr.len());
        let keep = room.min(bytes.len());
        self.stderr.extend_from_slice(&bytes[..keep]);
        self.stderr_dropped += (bytes.len() - keep) as u64;
    }

    /// The next stdout data or the end of the request, from whichever link.
    fn next_event(&mut self, link: &mut Link<'_>) -> Result<Event, Error> {
        match link {
            Link::Direct(conn) => self.next_event_direct(conn),
            Link::Mux(shared) => super::mux::next_event(shared, self),
            Link::Released => Ok(Event::End),
        }
    }

    /// Reads records until stdout data or the end of the request.
    fn next_event_direct(&mut self, conn: &mut Connection) -> Result<Event, Error> {
        loop {
            if let Some((h, range)) = conn.take_buffered_record()? {
                self.records_seen += 1;
                conn.note_answered();
                if let Some(f) = self.on_record.as_mut() {
                    f(super::Direction::Received, &h, &conn.rbuf[range.clone()]);
                }
                if h.request_id == 0 && h.record_type.is_management() {
                    continue; // e.g. a late GET_VALUES_RESULT: not part of the request
                }
                let unexpected = Error::UnexpectedRecord {
                    record_type: h.record_type.into(),
                    request_id: h.request_id,
                    expected_id: self.id,
                };
                if h.request_id != self.id {
                    return Err(unexpected);
                }
                match h.record_type {
                    RecordType::Stdout if range.is_empty() => continue,
                    RecordType::Stdout => {
                        self.stdout_bytes += range.len() as u64;
                        return Ok(Event::Stdout(range));
                    }
                    RecordType::Stderr => {
                        self.take_stderr(&conn.rbuf[range]);
                        continue;
                    }
                    RecordType::EndRequest => {
                        let body = EndRequestBody::decode(&conn.rbuf[range])?;
                        self.end = Some(body);
                        conn.note_end();
                        // spec 5.5: after END_REQUEST the connection is free again, if the
                        // request ran to its end on our side too.
                        let clean = conn.config.keep_conn
                            && self.stdin_sent
                            && !self.write_failed
                            && conn.rpos == conn.rlen;
                        conn.state = if clean {
                            ConnState::Idle
                        } else {
                            ConnState::Broken
                        };
                        return Ok(Event::End);
                    }
                    _ => return Err(unexpected),
                }
            }
            if !self.sent_any && self.wants_write() {
                // Nothing sent yet: the socket has room for the head (and the body's first
                // piece), so it goes out without a poll first.
                self.pump_stdin(conn)?;
                if self.sent_any {
                    continue;
                }
            }
            let want_write = self.wants_write();
            let ready = conn.wait(want_write, self.deadline)?;
            if ready.writable && want_write {
                self.pump_stdin(conn)?;
            }
            if ready.readable && !conn.read_some()? {
                return Err(Error::BackendClosed {
                    stdout_bytes: self.stdout_bytes,
                });
            }
        }
    }

    /// The outcome carried by END_REQUEST, as a result.
    pub(super) fn end_result(&self) -> Result<(), Error> {
        let Some(end) = self.end else {
            return Ok(());
        };
        match end.protocol_status {
            ProtocolStatus::RequestComplete => Ok(()),
            ProtocolStatus::CantMpxConn => Err(Error::CantMpxConn),
            ProtocolStatus::Overloaded => Err(Error::Overloaded {
                app_status: end.app_status,
            }),
            ProtocolStatus::UnknownRole => Err(Error::UnknownRole),
            ProtocolStatus::Unknown(v) => Err(Error::UnknownProtocolStatus(v)),
        }
    }

    /// Reads stdout until the empty line that ends the CGI head. Each byte is looked at
    /// once, however the backend splits its records.
    fn read_head(&mut self, link: &mut Link<'_>) -> Result<Head, Error> {
        if !self.parse_head {
            return Head::parse(b"").map_err(Error::BadHead);
        }
        let limit = match link {
            Link::Direct(conn) => conn.config.max_head_bytes,
            Link::Mux(shared) => shared.config.max_head_bytes,
            Link::Released => usize::MAX,
        };
        let mut buf: Vec<u8> = Vec::new();
        let mut line_start = 0;
        loop {
            let old = buf.len();
            match self.next_event(link)? {
                Event::Stdout(range) => {
                    let Link::Direct(conn) = link else {
                        unreachable!("a range only comes from an own connection")
                    };
                    buf.extend_from_slice(&conn.rbuf[range]);
                }
                Event::Owned(bytes) => buf.extend_from_slice(&bytes),
                Event::End => {
                    self.end_result()?;
                    return Err(Error::IncompleteHead);
                }
            }
            for i in old..buf.len() {
                if buf[i] != b'\n' {
                    continue;
                }
                let line = &buf[line_start..i];
                if line.is_empty() || line == b"\r" {
                    self.pending = buf.split_off(i + 1);
                    return Head::parse(&buf).map_err(Error::BadHead);
                }
                line_start = i + 1;
            }
            if buf.len() > limit {
                return Err(Error::HeadTooLarge { limit });
            }
        }
    }
}

/// A response being received: the parsed CGI head, then the body as a streaming `Read`.
///
/// Reading returns the application's stdout after the head, as it arrives, and `Ok(0)` at
/// `FCGI_END_REQUEST`; a refusal or failure there is an `io::Error` whose inner error is a
/// [`Error`]. Stderr is collected on the side (bounded by [`FcgiRequest::stderr_limit`], or passed
/// to [`FcgiRequest::on_stderr`]). Reading also keeps sending the request body, so both directions
/// stream.
///
/// Dropping a response before its end sends `FCGI_ABORT_REQUEST` (when at a record boundary)
/// and shuts its own connection down, so it is never reused half-read; on a
/// [`super::MuxConnection`] only that request is aborted and its later records discarded.
///
/// # Example
///
/// ```no_run
/// use std::io::Read;
/// use fcgi::client::{Config, Connection, FcgiRequest};
/// let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
/// let mut resp = conn.send(FcgiRequest::new().param("SCRIPT_FILENAME", "/srv/a.php"), std::io::empty())?;
/// assert_eq!(resp.status(), 200);
/// let mut body = Vec::new();
/// resp.read_to_end(&mut body)?;
/// assert_eq!(resp.app_status(), Some(0));
/// eprintln!("{}", String::from_utf8_lossy(resp.stderr()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Response<'a> {
    ex: Exchange<'a>,
    head: Head,
    link: Link<'a>,
    backend: Option<usize>,
    addr: super::Address,
}

impl std::fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("head", &self.head)
            .field("end", &self.ex.end)
            .field("stdout_bytes", &self.ex.stdout_bytes)
            .finish_non_exhaustive()
    }
}

/// A failed start; `retry` gives the request and body back when no byte of the body was
/// read and no record came back, so that sending it again is possible (whether it is
/// safe is for the caller: see `Error::may_have_run` and `FcgiRequest::is_idempotent`).
pub(crate) type Retry<'a> = (FcgiRequest, Box<dyn Read + Send + 'a>);

/// See [`Response::try_start`].
pub(crate) struct StartFailure<'a> {
    pub(crate) error: Error,
    pub(crate) retry: Option<Box<Retry<'a>>>,
}

impl<'a> Response<'a> {
    pub(crate) fn start(
        conn: ConnRef<'a>,
        request: FcgiRequest,
        body: Box<dyn Read + Send + 'a>,
    ) -> Result<Response<'a>, Error> {
        Response::try_start(conn, request, body).map_err(|f| f.error)
    }

    pub(crate) fn try_start(
        mut conn: ConnRef<'a>,
        mut request: FcgiRequest,
        body: Box<dyn Read + Send + 'a>,
    ) -> Result<Response<'a>, StartFailure<'a>> {
        if conn.state != ConnState::Idle {
            return Err(StartFailure {
                error: Error::ConnectionUnusable,
                retry: None,
            });
        }
        // A kept connection the backend closed while it was idle (php-fpm recycling a
        // child, a reload): seen before any byte is written, so certainly not run.
        if conn.requests > 0 && !conn.still_reusable() {
            return Err(StartFailure {
                error: Error::NotSent(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the backend closed the kept connection while it was idle",
                )),
                retry: Some(Box::new((request, body))),
            });
        }
        conn.state = ConnState::Busy;
        conn.requests += 1;
        conn.note_start();
        let (backend, addr) = match &conn {
            ConnRef::Pooled(p) => (Some(p.backend()), p.address().clone()),
            ConnRef::Borrowed(c) => (None, c.address().clone()),
        };
        // One request at a time per connection, so always id 1, as nginx and Apache use.
        let id = 1;
        let mut wbuf = Vec::new();
        encode_header_into(&mut wbuf, RecordType::BeginRequest, id, 8);
        let flags = if conn.config.keep_conn { KEEP_CONN } else { 0 };
        wbuf.extend_from_slice(
            &BeginRequestBody {
                role: request.role,
                flags,
            }
            .encode(),
        );
        encode_params(
            &mut wbuf,
            id,
            request.params.iter().map(|(n, v)| (&n[..], &v[..])),
        );
        let mut ex = Exchange::new(id, &mut request, body, wbuf, &conn.config);
        let mut link = Link::Direct(conn);
        match ex.read_head(&mut link) {
            Ok(head) => Ok(Response {
                ex,
                head,
                link,
                backend,
                addr,
            }),
            Err(error) => {
                let Link::Direct(mut conn) = link else {
                    unreachable!()
                };
                if ex.end.is_none() {
                    conn.state = ConnState::Broken;
                    let _ = conn.sock.shutdown(std::net::Shutdown::Both);
                }
                let retry = if !ex.body_touched && ex.records_seen == 0 {
                    request.on_stderr = ex.on_stderr.take();
                    request.on_record = ex.on_record.take();
                    ex.body.take().map(|b| Box::new((request, b)))
                } else {
                    None
                };
                Err(StartFailure { error, retry })
            }
        }
    }

    /// Starts an exchange on a multiplexed connection (the request is already queued).
    pub(super) fn start_mux(
        shared: std::sync::Arc<super::mux::MuxShared>,
        mut ex: Exchange<'a>,
    ) -> Result<Response<'a>, Error> {
        let addr = shared.addr.clone();
        let mut link = Link::Mux(shared);
        match ex.read_head(&mut link) {
            Ok(head) => Ok(Response {
                ex,
                head,
                link,
                backend: None,
                addr,
            }),
            Err(e) => {
                if let Link::Mux(shared) = &link {
                    super::mux::release(shared, ex.id, ex.end.is_none());
                }
                Err(e)
            }
        }
    }

    /// Sets the pool's index of the backend that serves this response.
    pub(super) fn set_backend(&mut self, backend: usize) {
        self.backend = Some(backend);
    }

    /// The index (in the order added to the [`super::PoolBuilder`]) of the backend that
    /// answered, for a response from a [`super::Pool`]; `None` on a caller's own connection.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Backend, Pool, FcgiRequest};
    /// let pool = Pool::builder()
    ///     .backend(Backend::new("127.0.0.1:9000".parse()?))
    ///     .backend(Backend::new("127.0.0.1:9001".parse()?))
    ///     .build();
    /// let resp = pool.send(FcgiRequest::new(), std::io::empty())?;
    /// println!("served by backend #{:?} at {}", resp.backend(), resp.address());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backend(&self) -> Option<usize> {
        self.backend
    }

    /// The address of the backend that answered.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection, FcgiRequest};
    /// let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let resp = conn.send(FcgiRequest::new(), std::io::empty())?;
    /// assert_eq!(resp.address().to_string(), "127.0.0.1:9000");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn address(&self) -> &super::Address {
        &self.addr
    }

    /// The parsed CGI response head.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection, FcgiRequest};
    /// # let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let resp = conn.send(FcgiRequest::new(), std::io::empty())?;
    /// for (name, value) in resp.head().headers() {
    ///     println!("{name}: {value}");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The HTTP status: from `Status:`, 302 for an absolute `Location:`, else 200.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection, FcgiRequest};
    /// # let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let resp = conn.send(FcgiRequest::new(), std::io::empty())?;
    /// if resp.status() == 404 { eprintln!("not found") }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn status(&self) -> u16 {
        self.head.status()
    }

    /// The first header named `name` (case-insensitive); see [`Head::header`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection, FcgiRequest};
    /// # let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let resp = conn.send(FcgiRequest::new(), std::io::empty())?;
    /// println!("{:?}", resp.header("Content-Type"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The stderr received so far, up to the limit (the rest is counted in
    /// [`Response::stderr_dropped`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection, FcgiRequest};
    /// # let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let resp = conn.send(FcgiRequest::new(), std::io::empty())?;
    /// let resp_stderr = String::from_utf8_lossy(resp.stderr()).into_owned();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stderr(&self) -> &[u8] {
        &self.ex.stderr
    }

    /// Stderr bytes that did not fit the buffer.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection, FcgiRequest};
    /// # let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let resp = conn.send(FcgiRequest::new().stderr_limit(0), std::io::empty())?;
    /// println!("{} stderr bytes dropped so far", resp.stderr_dropped());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stderr_dropped(&self) -> u64 {
        self.ex.stderr_dropped
    }

    /// The application status from `FCGI_END_REQUEST`, once the body was read to its end.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection, FcgiRequest};
    /// # let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let mut resp = conn.send(FcgiRequest::new(), std::io::empty())?;
    /// std::io::copy(&mut resp, &mut std::io::sink())?;
    /// assert!(resp.app_status().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn app_status(&self) -> Option<u32> {
        self.ex.end.map(|e| e.app_status)
    }

    /// The protocol status from `FCGI_END_REQUEST`, once the body was read to its end.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection, FcgiRequest};
    /// use fcgi::protocol::ProtocolStatus;
    /// # let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let mut resp = conn.send(FcgiRequest::new(), std::io::empty())?;
    /// resp.finish()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn protocol_status(&self) -> Option<ProtocolStatus> {
        self.ex.end.map(|e| e.protocol_status)
    }

    /// Stdout bytes received so far, head included.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection, FcgiRequest};
    /// # let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let resp = conn.send(FcgiRequest::new(), std::io::empty())?;
    /// assert!(resp.stdout_bytes() > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stdout_bytes(&self) -> u64 {
        self.ex.stdout_bytes
    }

    /// Reads and discards the rest of the body, so the connection can be reused; returns
    /// the application status.
    ///
    /// # Errors
    ///
    /// As for reading: the backend's refusals, a close before `FCGI_END_REQUEST`, timeouts.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection, FcgiRequest};
    /// # let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let status = conn.send(FcgiRequest::new(), std::io::empty())?.finish()?;
    /// assert_eq!(status, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn finish(mut self) -> Result<u32, Error> {
        self.ex.pending.clear();
        self.ex.ppos = 0;
        self.ex.out = 0..0;
        self.ex.owned.clear();
        loop {
            match self.next_chunk() {
                Ok(Some(_)) => {
                    self.ex.out = 0..0;
                    self.ex.owned.clear();
                }
                Ok(None) => return Ok(self.ex.end.map_or(0, |e| e.app_status)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes stdout data available in `ex.out`; `None` at the end of the request.
    fn next_chunk(&mut self) -> Result<Option<()>, Error> {
        if self.ex.failed {
            return Err(Error::ConnectionUnusable);
        }
        if self.ex.end.is_some() {
            return self.ex.end_result().map(|_| None);
        }
        match self.ex.next_event(&mut self.link) {
            Ok(Event::Stdout(r)) => {
                self.ex.out = r;
                Ok(Some(()))
            }
            Ok(Event::Owned(v)) => {
                self.ex.owned = v;
                self.ex.opos = 0;
                Ok(Some(()))
            }
            Ok(Event::End) => {
                // The last record is read: a pooled connection goes back to the pool now,
                // whatever the caller does with this response afterwards.
                if matches!(self.link, Link::Direct(ConnRef::Pooled(_))) {
                    self.link = Link::Released;
                }
                self.ex.end_result().map(|_| None)
            }
            Err(e) => {
                self.ex.failed = true;
                match &mut self.link {
                    Link::Direct(conn) => {
                        conn.state = ConnState::Broken;
                        let _ = conn.sock.shutdown(std::net::Shutdown::Both);
                    }
                    Link::Mux(shared) => super::mux::release(shared, self.ex.id, true),
                    Link::Released => {}
                }
                Err(e)
            }
        }
    }
}

impl Read for Response<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.ex.ppos < self.ex.pending.len() {
                let src = &self.ex.pending[self.ex.ppos..];
                let n = src.len().min(buf.len());
                buf[..n].copy_from_slice(&src[..n]);
                self.ex.ppos += n;
                return Ok(n);
            }
            if !self.ex.out.is_empty() {
                let Link::Direct(conn) = &self.link else {
                    unreachable!("a range only comes from an own connection")
                };
                let r = self.ex.out.clone();
                let n = r.len().min(buf.len());
                buf[..n].copy_from_slice(&conn.rbuf[r.start..r.start + n]);
                self.ex.out.start += n;
                return Ok(n);
            }
            if self.ex.opos < self.ex.owned.len() {
                let src = &self.ex.owned[self.ex.opos..];
                let n = src.len().min(buf.len());
                buf[..n].copy_from_slice(&src[..n]);
                self.ex.opos += n;
                return Ok(n);
            }
            match self.next_chunk() {
                Ok(Some(())) => continue,
                Ok(None) => return Ok(0),
                Err(e) => return Err(e.into_io()),
            }
        }
    }
}

impl Drop for Response<'_> {
    fn drop(&mut self) {
        if self.ex.end.is_some() || self.ex.failed {
            return;
        }
        // Abandoned half-way. Tell the application (spec 5.4) if no record is half-sent,
        // then shut the connection down: draining an unknown amount of output would cost
        // more than a new connection, and the connection must not go back to a pool.
        match &mut self.link {
            Link::Direct(conn) => {
                conn.state = ConnState::Broken;
                if self.ex.wpos == self.ex.wbuf.len() && !self.ex.write_failed {
                    let abort = Header::new(RecordType::AbortRequest, self.ex.id, 0).encode();
                    let _ = conn.write_some(&abort);
                }
                let _ = conn.sock.shutdown(std::net::Shutdown::Both);
            }
            // On a shared connection only this request is aborted; its later records are
            // discarded and the others go on.
            Link::Mux(shared) => super::mux::release(shared, self.ex.id, true),
            Link::Released => {}
        }
    }
}

/// Reports each whole record in `wire` as sent.
fn trace_sent(f: &mut super::RecordSink, mut wire: &[u8]) {
    while let Ok(crate::protocol::Status::Complete((rec, used))) =
        crate::protocol::decode_record(wire)
    {
        f(super::Direction::Sent, &rec.header, rec.content);
        wire = &wire[used..];
    }
}
