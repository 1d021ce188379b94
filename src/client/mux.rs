//! Several requests at once on one connection, for backends that answer
//! `FCGI_MPXS_CONNS=1` (spec 3.3, 4.1).
//!
//! Owns: request ids on the shared connection, the demultiplexing of records into
//! per-request inboxes, and the interleaving of each request's STDIN records. There is no
//! I/O thread: whichever request thread needs the socket becomes the "leader" for one
//! round (poll, write queued records, read and sort records), then hands it back. Each
//! request keeps at most one STDIN record queued, and each inbox takes records until it
//! holds `INBOX_LIMIT` bytes (so at most that plus one record, 64 KiB); when a slow
//! reader's inbox is full, reading from the socket pauses
//! until it catches up. FastCGI has no per-request flow control, so that pause is the
//! price of multiplexing: one request that is not read holds back the others on its
//! connection (use separate connections for long, slowly-consumed streams).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::response::{Event, Exchange};
use super::{Address, Config, Connection, Error, FcgiRequest, Response, TimeoutKind};
use crate::protocol::{
    encode_header_into, encode_params, BeginRequestBody, EndRequestBody, Header, ProtocolError,
    RecordType, KEEP_CONN,
};
use crate::sys;

/// Stdout and stderr bytes a request's inbox holds before reading pauses.
const INBOX_LIMIT: usize = 1 << 20;

/// A connection that carries several requests at once, for backends that multiplex
/// (`FCGI_MPXS_CONNS=1`). Cloning it shares the connection; [`MuxConnection::send`] takes
/// `&self` and may be called from many threads.
///
/// Each request gets its own small id; its [`Response`] streams as on an own connection.
/// Dropping a response half-read aborts only that request (`FCGI_ABORT_REQUEST`); the others
/// go on. A response that is not read holds back the others once its inbox is full (1 MiB),
/// since FastCGI has no per-request flow control.
///
/// # Example
///
/// ```no_run
/// use std::io::Read;
/// use fcgi::client::{Config, MuxConnection, FcgiRequest};
/// let conn = MuxConnection::connect(&"127.0.0.1:9000".parse()?, &Config::default(), 16)?;
/// let threads: Vec<_> = (0..4).map(|i| {
///     let conn = conn.clone();
///     std::thread::spawn(move || -> Result<String, fcgi::client::Error> {
///         let mut resp = conn.send(FcgiRequest::new().param("N", i.to_string()), std::io::empty())?;
///         let mut body = String::new();
///         resp.read_to_string(&mut body).map_err(fcgi::client::Error::Io)?;
///         Ok(body)
///     })
/// }).collect();
/// for t in threads { println!("{}", t.join().unwrap()?); }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct MuxConnection {
    shared: Arc<MuxShared>,
}

#[derive(Debug)]
pub(crate) struct MuxShared {
    pub(crate) config: Config,
    pub(crate) addr: Address,
    max_reqs: usize,
    state: Mutex<MuxState>,
    cond: Condvar,
    waker: UnixStream,
}

#[derive(Debug)]
struct MuxState {
    io: Option<Io>,
    reqs: HashMap<u16, Inbox>,
    /// Whole records queued by request threads, with their request id.
    outq: VecDeque<(u16, Vec<u8>)>,
    /// Records read but not yet deliverable (their inbox is full), in arrival order.
    stalled: VecDeque<(Header, Vec<u8>)>,
    broken: Option<Broken>,
    started: u64,
}

/// The socket side, held by one leader at a time.
#[derive(Debug)]
struct Io {
    conn: Connection,
    /// Records being written, with their request id.
    wq: VecDeque<(u16, Vec<u8>)>,
    wpos: usize,
    wake_rx: UnixStream,
}

#[derive(Debug, Default)]
struct Inbox {
    events: VecDeque<In>,
    bytes: usize,
    /// A STDIN record (or the BEGIN/PARAMS) of this request waits in the queue.
    staged: bool,
    /// The response was dropped: discard its records until END_REQUEST frees the id.
    abandoned: bool,
    ended: bool,
}

#[derive(Debug)]
enum In {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    End(EndRequestBody),
}

/// Why the shared connection is dead (every request on it gets the error).
#[derive(Clone, Debug)]
enum Broken {
    Closed,
    Io(io::ErrorKind, String),
    Protocol(ProtocolError),
    Unexpected { record_type: u8, request_id: u16 },
}

impl Broken {
    fn error(&self, ex: &Exchange<'_>) -> Error {
        match self {
            Broken::Closed => Error::BackendClosed {
                stdout_bytes: ex.stdout_bytes,
            },
            Broken::Io(kind, msg) => Error::Io(io::Error::new(*kind, msg.clone())),
            Broken::Protocol(e) => Error::Protocol(*e),
            Broken::Unexpected {
                record_type,
                request_id,
            } => Error::UnexpectedRecord {
                record_type: *record_type,
                request_id: *request_id,
                expected_id: ex.id,
            },
        }
    }
}

impl MuxConnection {
    /// Connects to `addr` for up to `max_reqs` concurrent requests (at least 1; use the
    /// backend's `FCGI_MAX_REQS`).
    ///
    /// # Errors
    ///
    /// As [`Connection::connect`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use fcgi::client::{get_values, Config, MuxConnection};
    /// let addr = "127.0.0.1:9000".parse()?;
    /// let v = get_values(&addr, &Config::default())?;
    /// if v.mpxs_conns == Some(true) {
    ///     let conn = MuxConnection::connect(&addr, &Config::default(), v.max_reqs.unwrap_or(8) as usize)?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect(
        addr: &Address,
        config: &Config,
        max_reqs: usize,
    ) -> Result<MuxConnection, Error> {
        let conn = Connection::connect(addr, config)?;
        let (waker, wake_rx) = UnixStream::pair()?;
        waker.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(MuxConnection {
            shared: Arc::new(MuxShared {
                config: config.clone(),
                addr: addr.clone(),
                max_reqs: max_reqs.clamp(1, u16::MAX as usize),
                state: Mutex::new(MuxState {
                    io: Some(Io {
                        conn,
                        wq: VecDeque::new(),
                        wpos: 0,
                        wake_rx,
                    }),
                    reqs: HashMap::new(),
                    outq: VecDeque::new(),
                    stalled: VecDeque::new(),
                    broken: None,
                    started: 0,
                }),
                cond: Condvar::new(),
                waker,
            }),
        })
    }

    /// The backend address.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, MuxConnection};
    /// let conn = MuxConnection::connect(&"127.0.0.1:9000".parse()?, &Config::default(), 4)?;
    /// println!("{}", conn.address());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn address(&self) -> &Address {
        &self.shared.addr
    }

    /// Requests in flight now (ids in use, including aborted ones not yet ended).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, MuxConnection};
    /// let conn = MuxConnection::connect(&"127.0.0.1:9000".parse()?, &Config::default(), 4)?;
    /// assert_eq!(conn.in_flight(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_flight(&self) -> usize {
        self.shared.state.lock().reqs.len()
    }

    /// Requests started on this connection so far.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, MuxConnection};
    /// let conn = MuxConnection::connect(&"127.0.0.1:9000".parse()?, &Config::default(), 4)?;
    /// assert_eq!(conn.requests(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn requests(&self) -> u64 {
        self.shared.state.lock().started
    }

    /// True once the connection failed (closed, reset, malformed input); every request on
    /// it then fails and a new connection is needed.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, MuxConnection};
    /// let conn = MuxConnection::connect(&"127.0.0.1:9000".parse()?, &Config::default(), 4)?;
    /// assert!(!conn.is_broken());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.shared.state.lock().broken.is_some()
    }

    /// Sends a request on the shared connection, waiting for a free id when `max_reqs` are
    /// in flight; see [`Connection::send`] for the rest.
    ///
    /// # Errors
    ///
    /// As [`Connection::send`]; [`Error::Timeout`] if no id frees up within the request or
    /// idle timeout.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, MuxConnection, FcgiRequest};
    /// let conn = MuxConnection::connect(&"127.0.0.1:9000".parse()?, &Config::default(), 4)?;
    /// let status = conn.send(FcgiRequest::new(), std::io::empty())?.finish()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send<'a, R: Read + Send + 'a>(
        &self,
        mut request: FcgiRequest,
        body: R,
    ) -> Result<Response<'a>, Error> {
        let shared = &self.shared;
        let mut ex = Exchange::new(0, &mut request, Box::new(body), Vec::new(), &shared.config);
        let wait_until = ex
            .deadline
            .or_else(|| shared.config.io_timeout.map(|t| Instant::now() + t));
        let mut st = shared.state.lock();
        let id = loop {
            if st.broken.is_some() {
                return Err(Error::ConnectionUnusable);
            }
            if st.reqs.len() < shared.max_reqs {
                let id = (1..=u16::MAX)
                    .find(|i| !st.reqs.contains_key(i))
                    .expect("fewer than 65535 requests in flight");
                break id;
            }
            let timed_out = match wait_until {
                Some(d) => shared.cond.wait_until(&mut st, d).timed_out(),
                None => {
                    shared.cond.wait(&mut st);
                    false
                }
            };
            if timed_out && st.reqs.len() >= shared.max_reqs {
                return Err(Error::Timeout(if ex.deadline.is_some() {
                    TimeoutKind::Request
                } else {
                    TimeoutKind::Io
                }));
            }
        };
        ex.id = id;
        let mut rec = Vec::new();
        encode_header_into(&mut rec, RecordType::BeginRequest, id, 8);
        rec.extend_from_slice(
            &BeginRequestBody {
                role: request.role,
                flags: KEEP_CONN,
            }
            .encode(),
        );
        encode_params(
            &mut rec,
            id,
            request.params.iter().map(|(n, v)| (&n[..], &v[..])),
        );
        st.reqs.insert(
            id,
            Inbox {
                staged: true,
                ..Inbox::default()
            },
        );
        st.outq.push_back((id, rec));
        st.started += 1;
        drop(st);
        shared.wake();
        Response::start_mux(Arc::clone(shared), ex)
    }
}

impl MuxShared {
    /// Interrupts the leader's poll so it picks up newly queued records. A full waker
    /// socket already guarantees a wake-up, so a failed write is fine.
    fn wake(&self) {
        use std::io::Write;
        let _ = (&self.waker).write(&[1]);
    }
}

/// Ends this request's share of the connection: removes it, or (when `abort` and it has not
/// ended) marks it abandoned, discards what it received and queues `FCGI_ABORT_REQUEST`.
pub(crate) fn release(shared: &MuxShared, id: u16, abort: bool) {
    let mut st = shared.state.lock();
    let broken = st.broken.is_some();
    let Some(inbox) = st.reqs.get_mut(&id) else {
        return;
    };
    if inbox.abandoned {
        return; // already aborted
    }
    if abort && !inbox.ended && !broken {
        inbox.abandoned = true;
        inbox.events.clear();
        inbox.bytes = 0;
        let mut rec = Vec::new();
        encode_header_into(&mut rec, RecordType::AbortRequest, id, 0);
        st.outq.push_back((id, rec));
    } else {
        st.reqs.remove(&id);
    }
    flush_stalled(&mut st);
    drop(st);
    shared.cond.notify_all();
    shared.wake();
}

/// The next stdout data or the end of request `ex.id`, doing I/O for everyone as needed.
pub(crate) fn next_event(shared: &Arc<MuxShared>, ex: &mut Exchange<'_>) -> Result<Event, Error> {
    let id = ex.id;
    let mut stdin = Vec::new();
    'outer: loop {
        let mut st = shared.state.lock();
        loop {
            let Some(inbox) = st.reqs.get_mut(&id) else {
                return Err(Error::ConnectionUnusable);
            };
            if let Some(ev) = inbox.events.pop_front() {
                match ev {
                    In::Stdout(v) => {
                        inbox.bytes -= v.len();
                        let unstalled = flush_stalled(&mut st);
                        drop(st);
                        shared.cond.notify_all();
                        if unstalled {
                            shared.wake();
                        }
                        ex.stdout_bytes += v.len() as u64;
                        return Ok(Event::Owned(v));
                    }
                    In::Stderr(v) => {
                        inbox.bytes -= v.len();
                        let unstalled = flush_stalled(&mut st);
                        drop(st);
                        shared.cond.notify_all();
                        if unstalled {
                            shared.wake();
                        }
                        ex.take_stderr(&v);
                        continue 'outer;
                    }
                    In::End(body) => {
                        st.reqs.remove(&id);
                        let unstalled = flush_stalled(&mut st);
                        drop(st);
                        shared.cond.notify_all();
                        if unstalled {
                            shared.wake();
                        }
                        ex.end = Some(body);
                        return Ok(Event::End);
                    }
                }
            }
            let staged = inbox.staged;
            if let Some(b) = &st.broken {
                let err = b.error(ex);
                st.reqs.remove(&id);
                return Err(err);
            }
            if !ex.end_queued && !staged {
                // Queue the next piece of the body, read without holding the lock.
                drop(st);
                ex.next_stdin_record(&mut stdin)?;
                let mut st = shared.state.lock();
                if let Some(inbox) = st.reqs.get_mut(&id) {
                    inbox.staged = true;
                    st.outq.push_back((id, std::mem::take(&mut stdin)));
                }
                drop(st);
                shared.wake();
                continue 'outer;
            }
            let has_work = st.stalled.is_empty()
                || !st.outq.is_empty()
                || st.io.as_ref().is_some_and(|io| !io.wq.is_empty());
            if has_work {
                if let Some(mut io) = st.io.take() {
                    // Lead one round of I/O for every request on the connection.
                    // A request's `staged` stays set until its record is written, so each
                    // request has at most one record in memory here.
                    io.wq.extend(st.outq.drain(..));
                    let want_read = st.stalled.is_empty();
                    drop(st);
                    shared.cond.notify_all();
                    let budget = io.conn.wait_budget(ex.deadline);
                    let result = round(&mut io, want_read, budget);
                    let mut st2 = shared.state.lock();
                    st2.io = Some(io);
                    let outcome = match result {
                        Ok((records, written)) => {
                            for rid in written {
                                if let Some(inbox) = st2.reqs.get_mut(&rid) {
                                    inbox.staged = false;
                                }
                            }
                            distribute(&mut st2, records);
                            None
                        }
                        Err(RoundError::Timeout { deadline }) => {
                            Some(Error::Timeout(if deadline {
                                TimeoutKind::Request
                            } else {
                                TimeoutKind::Io
                            }))
                        }
                        Err(RoundError::Broken(b, records)) => {
                            distribute(&mut st2, records);
                            st2.broken = Some(b);
                            None
                        }
                    };
                    drop(st2);
                    shared.cond.notify_all();
                    if let Some(err) = outcome {
                        // Only this request waited too long; the others go on.
                        release(shared, id, true);
                        return Err(err);
                    }
                    continue 'outer;
                }
            }
            // Someone else leads, or all that can happen is a reader catching up.
            let (budget, is_deadline) = match &st.io {
                Some(io) => io.conn.wait_budget(ex.deadline),
                None => (shared.config.io_timeout, false),
            };
            let timed_out = match budget {
                Some(b) => shared.cond.wait_for(&mut st, b).timed_out(),
                None => {
                    shared.cond.wait(&mut st);
                    false
                }
            };
            if timed_out && st.reqs.get(&id).is_some_and(|i| i.events.is_empty()) {
                drop(st);
                release(shared, id, true);
                return Err(Error::Timeout(if is_deadline {
                    TimeoutKind::Request
                } else {
                    TimeoutKind::Io
                }));
            }
        }
    }
}

/// A record read: header and content.
type Rec = (Header, Vec<u8>);

enum RoundError {
    Timeout {
        deadline: bool,
    },
    /// The connection is dead; the records read before are still delivered.
    Broken(Broken, Vec<(Header, Vec<u8>)>),
}

/// One poll, then writes and reads; returns the whole records read and the request ids
/// of the records fully written.
fn round(
    io: &mut Io,
    want_read: bool,
    (budget, is_deadline): (Option<Duration>, bool),
) -> Result<(Vec<Rec>, Vec<u16>), RoundError> {
    if budget == Some(Duration::ZERO) && is_deadline {
        return Err(RoundError::Timeout { deadline: true });
    }
    let want_write = !io.wq.is_empty();
    let (ready, woke) = sys::poll_with_waker(
        io.conn.sock.as_fd(),
        want_read,
        want_write,
        io.wake_rx.as_fd(),
        budget,
    )
    .map_err(|e| RoundError::Broken(Broken::Io(e.kind(), e.to_string()), Vec::new()))?;
    if woke {
        let mut sink = [0u8; 64];
        while matches!((&io.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
    }
    if !ready.readable && !ready.writable && !woke {
        return Err(RoundError::Timeout {
            deadline: is_deadline,
        });
    }
    let mut written = Vec::new();
    if ready.writable && want_write {
        while let Some((rid, front)) = io.wq.front() {
            match io.conn.write_some(&front[io.wpos..]) {
                Ok(0) => break,
                Ok(n) => {
                    io.wpos += n;
                    if io.wpos == front.len() {
                        written.push(*rid);
                        io.wq.pop_front();
                        io.wpos = 0;
                    }
                }
                Err(e) => {
                    return Err(RoundError::Broken(
                        Broken::Io(e.kind(), e.to_string()),
                        Vec::new(),
                    ))
                }
            }
        }
    }
    let mut records = Vec::new();
    if ready.readable {
        let open = match io.conn.read_some() {
            Ok(open) => open,
            Err(Error::Io(e)) => {
                return Err(RoundError::Broken(
                    Broken::Io(e.kind(), e.to_string()),
                    records,
                ))
            }
            Err(_) => false,
        };
        loop {
            match io.conn.take_buffered_record() {
                Ok(Some((h, range))) => records.push((h, io.conn.rbuf[range].to_vec())),
                Ok(None) => break,
                Err(Error::Protocol(e)) => {
                    return Err(RoundError::Broken(Broken::Protocol(e), records))
                }
                Err(e) => {
                    return Err(RoundError::Broken(
                        Broken::Io(io::ErrorKind::Other, e.to_string()),
                        records,
                    ))
                }
            }
        }
        if !open {
            return Err(RoundError::Broken(Broken::Closed, records));
        }
    }
    Ok((records, written))
}

/// Sorts records into inboxes, stalling behind a full one (order is kept).
fn distribute(st: &mut MuxState, records: Vec<(Header, Vec<u8>)>) {
    for rec in records {
        if st.broken.is_some() {
            return;
        }
        if !st.stalled.is_empty() {
            st.stalled.push_back(rec);
            continue;
        }
        if let Some(rec) = deliver(st, rec) {
            st.stalled.push_back(rec);
        }
    }
}

/// Moves stalled records into inboxes that have room again; true when the stall is over
/// (the leader may then read again).
fn flush_stalled(st: &mut MuxState) -> bool {
    if st.stalled.is_empty() {
        return false;
    }
    while let Some(rec) = st.stalled.pop_front() {
        if st.broken.is_some() {
            st.stalled.clear();
            return true;
        }
        if let Some(rec) = deliver(st, rec) {
            st.stalled.push_front(rec);
            return false;
        }
    }
    true
}

/// Delivers one record; gives it back when its inbox is full.
fn deliver(st: &mut MuxState, (h, content): (Header, Vec<u8>)) -> Option<(Header, Vec<u8>)> {
    if h.request_id == 0 && h.record_type.is_management() {
        return None;
    }
    let unexpected = Broken::Unexpected {
        record_type: h.record_type.into(),
        request_id: h.request_id,
    };
    let Some(inbox) = st.reqs.get_mut(&h.request_id) else {
        // A second END_REQUEST for an id already ended (some applications send one at the
        // abort and one when the handler returns) is harmless; anything else is not.
        if h.record_type != RecordType::EndRequest {
            st.broken = Some(unexpected);
        }
        return None;
    };
    match h.record_type {
        RecordType::EndRequest => match EndRequestBody::decode(&content) {
            Ok(body) => {
                if inbox.abandoned {
                    st.reqs.remove(&h.request_id);
                } else {
                    inbox.ended = true;
                    inbox.events.push_back(In::End(body));
                }
            }
            Err(e) => st.broken = Some(Broken::Protocol(e)),
        },
        RecordType::Stdout | RecordType::Stderr if inbox.abandoned || content.is_empty() => {}
        RecordType::Stdout | RecordType::Stderr => {
            if inbox.bytes >= INBOX_LIMIT {
                return Some((h, content));
            }
            inbox.bytes += content.len();
            inbox
                .events
                .push_back(if h.record_type == RecordType::Stdout {
                    In::Stdout(content)
                } else {
                    In::Stderr(content)
                });
        }
        _ => st.broken = Some(unexpected),
    }
    None
}
