//! A request as its handler sees it: role, params, input streams (`io::Read`) and output
//! streams (`io::Write`) that frame records on the connection.

use std::fmt;
use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::engine::{aborted_error, Conn, Engine, Event, Inbox, Job, Progress, Which};
use crate::protocol::{
    encode_stream_end, Header, Params, ProtocolStatus, RecordType, Role, HEADER_LEN,
    MAX_CONTENT_LEN,
};

/// Content bytes an output stream buffers before it sends a record: one maximal record
/// (65535 bytes) rounded down to a multiple of 8.
const OUT_CAP: usize = 65528;
/// At most this many records go out in one gathered write of a large `write` (16 × 64 KiB:
/// about 1 MiB a system call, 32 slices).
const DIRECT_RECORDS: usize = 16;

/// One FastCGI request, handed to the handler as `&mut Request`.
///
/// Params are looked up by name (case-sensitive, the first of duplicates wins, as libfcgi
/// does) or iterated in the order received. `stdin()` streams the body, `stdout()` and
/// `stderr()` buffer and frame output; [`Request::split`] gives all three at once.
///
/// # Example
///
/// ```
/// use std::io::{Read, Write};
/// let mut req = fcgi::Request::for_test(&[("REQUEST_METHOD", "POST")], b"ping");
/// let mut body = String::new();
/// req.stdin().read_to_string(&mut body).unwrap();
/// assert_eq!(req.param("REQUEST_METHOD"), Some("POST"));
/// write!(req.stdout(), "Content-Type: text/plain\r\n\r\n{body}").unwrap();
/// assert!(req.test_output().ends_with(b"\r\n\r\nping"));
/// ```
pub struct Request {
    pub(crate) id: u16,
    pub(crate) role: Role,
    pub(crate) keep_conn: bool,
    pub(crate) params: Params,
    pub(crate) input: Input,
    pub(crate) stdout: Stdout,
    pub(crate) stderr: Stderr,
    pub(crate) app_status: i32,
    /// The engine and connection of a request that came over FastCGI, until it ends.
    pub(crate) link: Option<Link>,
}

/// Where a request from the engine goes back to.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) engine: Arc<Engine>,
    pub(crate) conn: Arc<Conn>,
    pub(crate) multiplexed: bool,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("keep_conn", &self.keep_conn)
            .field("params", &self.params.len())
            .finish_non_exhaustive()
    }
}

impl Request {
    /// The role the web server asked for (Responder, Authorizer or Filter). The C library
    /// gives it as the param `FCGI_ROLE`, first in `envp`; here it is only this method
    /// ([`Request::params`] holds what the web server sent).
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::Request::for_test(&[], b"");
    /// assert_eq!(req.role(), fcgi::Role::Responder);
    /// ```
    pub fn role(&self) -> Role {
        self.role
    }

    /// The FastCGI request id (1 for nginx, Apache and lighttpd; varies with HAProxy).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::Request::for_test(&[], b"").id(), 1);
    /// ```
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Whether the web server keeps the connection open after this request (`FCGI_KEEP_CONN`).
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!fcgi::Request::for_test(&[], b"").keep_conn());
    /// ```
    pub fn keep_conn(&self) -> bool {
        self.keep_conn
    }

    /// The value of param `name` as UTF-8, for the common case; `None` if absent **or**
    /// not UTF-8. To tell the two apart use [`Request::param_utf8`] (absent is `Ok(None)`,
    /// not UTF-8 an error) or [`Request::param_bytes`] (any bytes).
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::Request::for_test(&[("QUERY_STRING", "a=1")], b"");
    /// assert_eq!(req.param("QUERY_STRING"), Some("a=1"));
    /// assert_eq!(req.param("query_string"), None);
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        self.param_utf8(name).ok().flatten()
    }

    /// The value of param `name` as UTF-8, telling an absent param (`Ok(None)`) from one
    /// that is not UTF-8 (an `InvalidData` error naming it, which `?` turns into the
    /// handler's error; or match it and answer 400).
    ///
    /// # Errors
    ///
    /// `InvalidData` when the param is present and not valid UTF-8.
    ///
    /// # Example
    ///
    /// ```
    /// let mut req = fcgi::Request::for_test_bytes(&[(b"QUERY_STRING", b"q=\xff")], b"");
    /// assert_eq!(req.param_utf8("HTTP_HOST").unwrap(), None);
    /// assert!(req.param_utf8("QUERY_STRING").is_err());
    /// assert_eq!(req.param("QUERY_STRING"), None);
    /// assert_eq!(req.param_bytes(b"QUERY_STRING"), Some(&b"q=\xff"[..]));
    /// ```
    pub fn param_utf8(&self, name: &str) -> io::Result<Option<&str>> {
        self.params.get_str(name).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("param {name} is not UTF-8: {e}"),
            )
        })
    }

    /// The raw value of param `name`: `None` only when absent.
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::Request::for_test(&[("A", "1")], b"");
    /// assert_eq!(req.param_bytes(b"A"), Some(&b"1"[..]));
    /// ```
    pub fn param_bytes(&self, name: &[u8]) -> Option<&[u8]> {
        self.params.get(name)
    }

    /// All params, in the order the web server sent them (and nothing else: no
    /// `FCGI_ROLE`, see [`Request::role`]).
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::Request::for_test(&[("A", "1"), ("B", "2")], b"");
    /// let names: Vec<_> = req.params().map(|p| p.name).collect();
    /// assert_eq!(names, [&b"A"[..], &b"B"[..]]);
    /// ```
    pub fn params(&self) -> impl ExactSizeIterator<Item = crate::protocol::Pair<'_>> + Clone + '_ {
        self.params.iter()
    }

    /// The request body (`FCGI_STDIN`), streamed as it arrives.
    ///
    /// # Example
    ///
    /// ```
    /// use std::io::Read;
    /// let mut req = fcgi::Request::for_test(&[], b"abc");
    /// let mut v = Vec::new();
    /// req.stdin().read_to_end(&mut v).unwrap();
    /// assert_eq!(v, b"abc");
    /// ```
    pub fn stdin(&mut self) -> &mut Input {
        self.input.select(RecordType::Stdin);
        &mut self.input
    }

    /// The Filter role's file data (`FCGI_DATA`). Switching to it skips whatever of stdin
    /// was not read (the web server sends stdin first, spec 6.4). Other roles have no data
    /// stream: for them it is empty at once, without waiting on the connection.
    ///
    /// # Example
    ///
    /// ```
    /// use std::io::Read;
    /// let mut req = fcgi::Request::for_test(&[], b"");
    /// let mut v = Vec::new();
    /// req.data().read_to_end(&mut v).unwrap();
    /// assert!(v.is_empty());
    /// ```
    pub fn data(&mut self) -> &mut Input {
        self.input.select(RecordType::Data);
        if self.role != Role::Filter {
            self.input.done[slot(RecordType::Data)] = true;
        }
        &mut self.input
    }

    /// The response stream (`FCGI_STDOUT`): CGI headers, an empty line, then the body.
    ///
    /// # Example
    ///
    /// ```
    /// use std::io::Write;
    /// let mut req = fcgi::Request::for_test(&[], b"");
    /// req.stdout().write_all(b"Status: 204 No Content\r\n\r\n").unwrap();
    /// ```
    pub fn stdout(&mut self) -> &mut Stdout {
        &mut self.stdout
    }

    /// The error stream (`FCGI_STDERR`); web servers log it.
    ///
    /// # Example
    ///
    /// ```
    /// use std::io::Write;
    /// let mut req = fcgi::Request::for_test(&[], b"");
    /// writeln!(req.stderr(), "something odd").unwrap();
    /// ```
    pub fn stderr(&mut self) -> &mut Stderr {
        &mut self.stderr
    }

    /// Stdin (or data, whichever was selected last), stdout and stderr at once, for code
    /// that reads and writes in one expression.
    ///
    /// # Example
    ///
    /// ```
    /// let mut req = fcgi::Request::for_test(&[], b"echo");
    /// let (input, out, _err) = req.split();
    /// std::io::copy(input, out).unwrap();
    /// assert_eq!(req.test_output(), b"echo");
    /// ```
    pub fn split(&mut self) -> (&mut Input, &mut Stdout, &mut Stderr) {
        (&mut self.input, &mut self.stdout, &mut self.stderr)
    }

    /// As [`Request::split`], with the params too, so a handler reads them while it
    /// streams its response, without copying them first (`param_bytes()` borrows the
    /// whole request, `stdout()` needs it mutably).
    ///
    /// # Example
    ///
    /// ```
    /// use std::io::Write;
    /// let mut req = fcgi::Request::for_test(&[("QUERY_STRING", "a=1")], b"");
    /// let (params, _input, out, _err) = req.split_all();
    /// out.write_all(b"Content-Type: text/plain\r\n\r\n").unwrap();
    /// out.write_all(params.get(b"QUERY_STRING").unwrap_or_default()).unwrap();
    /// assert!(req.test_output().ends_with(b"\r\n\r\na=1"));
    /// ```
    pub fn split_all(&mut self) -> (&Params, &mut Input, &mut Stdout, &mut Stderr) {
        (
            &self.params,
            &mut self.input,
            &mut self.stdout,
            &mut self.stderr,
        )
    }

    /// Sets the application status sent in `FCGI_END_REQUEST` (a CGI program's exit code;
    /// `cgi-fcgi` exits with it). Default 0.
    ///
    /// # Example
    ///
    /// ```
    /// let mut req = fcgi::Request::for_test(&[], b"");
    /// req.set_app_status(3);
    /// assert_eq!(req.app_status(), 3);
    /// ```
    pub fn set_app_status(&mut self, status: i32) {
        self.app_status = status;
    }

    /// The application status that will be sent.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::Request::for_test(&[], b"").app_status(), 0);
    /// ```
    pub fn app_status(&self) -> i32 {
        self.app_status
    }

    /// Whether the web server aborted the request: it sent `FCGI_ABORT_REQUEST`, or closed
    /// the connection (nginx, Apache and lighttpd abort that way). Once true, reads and
    /// writes fail with `ConnectionAborted`.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!fcgi::Request::for_test(&[], b"").is_aborted());
    /// ```
    pub fn is_aborted(&mut self) -> bool {
        self.input.check_aborted()
    }

    /// A request for unit tests of handlers: Responder role, id 1, the given params and
    /// stdin; output is collected in memory and read back with [`Request::test_output`].
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::Request::for_test(&[("A", "1")], b"body");
    /// assert_eq!(req.param("A"), Some("1"));
    /// ```
    pub fn for_test(params: &[(&str, &str)], stdin: &[u8]) -> Request {
        let mut p = Params::default();
        for (n, v) in params {
            p.push(n.as_bytes(), v.as_bytes());
        }
        Request::local(
            Role::Responder,
            p,
            Box::new(io::Cursor::new(stdin.to_vec())),
            Sink::Memory(Vec::new()),
            Sink::Memory(Vec::new()),
        )
    }

    /// As [`Request::for_test`], with params given as bytes (values that are not UTF-8).
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::Request::for_test_bytes(&[(b"RAW", b"\xfe")], b"");
    /// assert_eq!(req.param_bytes(b"RAW"), Some(&b"\xfe"[..]));
    /// ```
    pub fn for_test_bytes(params: &[(&[u8], &[u8])], stdin: &[u8]) -> Request {
        let mut req = Request::for_test(&[], stdin);
        for (n, v) in params {
            req.params.push(n, v);
        }
        req
    }

    /// What a [`Request::for_test`] request wrote to stdout so far.
    ///
    /// # Example
    ///
    /// ```
    /// use std::io::Write;
    /// let mut req = fcgi::Request::for_test(&[], b"");
    /// req.stdout().write_all(b"x").unwrap();
    /// assert_eq!(req.test_output(), b"x");
    /// ```
    pub fn test_output(&self) -> &[u8] {
        match &self.stdout.0.sink {
            Sink::Memory(v) => v,
            _ => &[],
        }
    }

    /// A request not carried by FastCGI records (tests, CGI mode).
    pub(crate) fn local(
        role: Role,
        params: Params,
        input: Box<dyn Read + Send>,
        out: Sink,
        err: Sink,
    ) -> Request {
        Request {
            id: 1,
            role,
            keep_conn: false,
            params,
            input: Input::new(Source::Local(input), RecordType::Stdin),
            stdout: Stdout(Output::new(out, RecordType::Stdout, 1)),
            stderr: Stderr(Output::new(err, RecordType::Stderr, 1)),
            app_status: 0,
            link: None,
        }
    }

    /// A request the engine handed to this thread.
    pub(crate) fn from_job(engine: &Arc<Engine>, job: Job) -> Request {
        let Job { head, conn, inbox } = job;
        let c = &engine.counters;
        let busy = c.busy.fetch_add(1, Ordering::Relaxed) + 1;
        c.max_busy.fetch_max(busy, Ordering::Relaxed);
        let id = head.id;
        let multiplexed = inbox.is_some();
        let src = match inbox {
            Some(inbox) => Source::Mpx {
                inbox,
                engine: Arc::clone(engine),
                conn: Arc::clone(&conn),
            },
            None => Source::Conn {
                engine: Arc::clone(engine),
                conn: Arc::clone(&conn),
                id,
                aborted: false,
            },
        };
        let output = |t| Output::new(Sink::Records(Arc::clone(&conn)), t, id);
        let mut stdout = Stdout(output(RecordType::Stdout));
        let mut stderr = Stderr(output(RecordType::Stderr));
        if let Source::Mpx { inbox, .. } = &src {
            stdout.0.abort = Some(Arc::clone(inbox));
            stderr.0.abort = Some(Arc::clone(inbox));
        }
        Request {
            id,
            role: head.role,
            keep_conn: head.keep_conn,
            params: head.params,
            stdout,
            stderr,
            input: Input::new(src, RecordType::Stdin),
            app_status: 0,
            link: Some(Link {
                engine: Arc::clone(engine),
                conn,
                multiplexed,
            }),
        }
    }

    /// The descriptor of the connection a request came on (the C ABI's `ipcFd`).
    pub(crate) fn conn_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::{AsFd, AsRawFd};
        self.link.as_ref().map(|l| l.conn.as_fd().as_raw_fd())
    }

    /// Whether stdout bytes reached the web server (so a 500 can no longer be sent).
    pub(crate) fn stdout_sent(&self) -> bool {
        match self.stdout.0.sink {
            Sink::Records(_) | Sink::Local(_) => self.stdout.0.sent > 0,
            Sink::Memory(_) => self.stdout.0.written > 0,
        }
    }

    /// Calls `handler`, turning errors and panics into a 500 (when nothing was sent yet)
    /// plus the message on the error stream and app status 1, so the request still ends
    /// with exactly one END_REQUEST. Returns whether the handler succeeded.
    pub(crate) fn run(&mut self, handler: &dyn super::Handler) -> bool {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| handler.call(self)));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("handler error: {e}")),
            Err(payload) => {
                if let Some(l) = &self.link {
                    l.engine.counters.panics.fetch_add(1, Ordering::Relaxed);
                }
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                Some(format!("handler panicked: {msg}"))
            }
        };
        let Some(msg) = failure else { return true };
        // Only a failed handler is worth a look at the socket; a clean one costs nothing.
        if self.input.abort_seen() || self.is_aborted() {
            return false;
        }
        if !self.stdout_sent() {
            self.stdout.0.discard();
            let _ = self.respond(
                500,
                &[("Content-Type", "text/plain")],
                b"500 Internal Server Error\n",
            );
        }
        let _ = writeln!(self.stderr(), "{msg}");
        if self.app_status == 0 {
            self.app_status = 1;
        }
        false
    }

    /// Ends the request: flushes both output streams, and for a request from the engine
    /// sends their end records and END_REQUEST in one write, hands the connection back,
    /// and returns the connection's next request when it is already here (pipelined).
    pub(crate) fn finish(mut self) -> (io::Result<()>, Option<Job>) {
        self.end()
    }

    fn end(&mut self) -> (io::Result<()>, Option<Job>) {
        let Some(link) = self.link.take() else {
            return (self.stdout.flush().and_then(|_| self.stderr.flush()), None);
        };
        let c = &link.engine.counters;
        c.busy.fetch_sub(1, Ordering::Relaxed);
        let aborted = self.input.abort_seen();
        if aborted {
            c.aborted.fetch_add(1, Ordering::Relaxed);
        }
        let id = self.id;
        let (err_tail, out_tail, end) = self.final_records();
        // Counted before END_REQUEST goes out: a web server that has read it sees it.
        if !aborted {
            c.served.fetch_add(1, Ordering::Relaxed);
        }
        let tail: [&[u8]; 3] = [&err_tail, &out_tail, &end];
        if link.multiplexed {
            let ok = link.engine.finish_multiplexed(&link.conn, id, &tail);
            (if ok { Ok(()) } else { Err(aborted_error()) }, None)
        } else {
            (Ok(()), link.engine.finish(&link.conn, id, &tail))
        }
    }
}

impl Request {
    /// The bytes that end the request: the end of stderr and of stdout (their buffered
    /// content first), then END_REQUEST with the app status.
    fn final_records(&mut self) -> (Vec<u8>, Vec<u8>, [u8; 16]) {
        let err_tail = self.stderr.0.take_final();
        let out_tail = self.stdout.0.take_final();
        let mut end = [0; 16];
        let header = crate::protocol::Header::new(RecordType::EndRequest, self.id, 8);
        end[..8].copy_from_slice(&header.encode());
        let body = crate::protocol::EndRequestBody {
            app_status: self.app_status as u32,
            protocol_status: ProtocolStatus::RequestComplete,
        };
        end[8..].copy_from_slice(&body.encode());
        (err_tail, out_tail, end)
    }

    /// Ends the request without END_REQUEST and closes its connection, shutting it down
    /// and draining what the peer still sends (the C ABI's `FCGX_Free(r, 1)` on a request
    /// not finished: the web server sees it fail, as with libfcgi). Not for multiplexed
    /// connections, which other requests share.
    pub(crate) fn abandon(mut self) {
        let Some(link) = self.link.take() else {
            return;
        };
        debug_assert!(!link.multiplexed);
        link.engine.counters.busy.fetch_sub(1, Ordering::Relaxed);
        link.engine.abandon(&link.conn);
    }

    /// The C ABI's fork support: the request leaves its engine without the engine ending
    /// it. With `write_end`, its end records and END_REQUEST are written here (blocking,
    /// under the write timeout: a forked child finishing the request); without, nothing is
    /// written (a parent letting go of a request its child serves). Either way this
    /// process's descriptor closes as the request drops, with no shutdown of the socket.
    /// `in_child`: this process was forked after the request was accepted, and shares the
    /// engine's epoll set with its parent; it is left alone.
    ///
    /// # Errors
    ///
    /// The final write failed.
    pub(crate) fn release_forked(mut self, in_child: bool, write_end: bool) -> io::Result<()> {
        let Some(link) = self.link.take() else {
            return Ok(());
        };
        link.engine.counters.busy.fetch_sub(1, Ordering::Relaxed);
        let r = if write_end {
            let (err_tail, out_tail, end) = self.final_records();
            link.conn.write_all(&[&err_tail, &out_tail, &end[..]])
        } else {
            Ok(())
        };
        link.engine.forget(&link.conn, in_child);
        r
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.link.is_none() {
            return;
        }
        // Dropped without being finished (a pulled request the caller forgot): the web
        // server still gets exactly one END_REQUEST. What was written goes out as it is,
        // and a 500 only when nothing was written. Dropped by a panic's unwinding, it ends
        // as a panicking handler's request does: a 500 unless bytes already reached the
        // web server (buffered output is dropped).
        let nothing = if std::thread::panicking() {
            !self.stdout_sent()
        } else {
            self.stdout.0.written == 0
        };
        if nothing && !self.input.abort_seen() {
            self.stdout.0.discard();
            let _ = self.respond(
                500,
                &[("Content-Type", "text/plain")],
                b"500 Internal Server Error\n",
            );
            if self.app_status == 0 {
                self.app_status = 1;
            }
        }
        let engine = self.link.as_ref().map(|l| Arc::clone(&l.engine));
        if let (_, Some(next)) = self.end() {
            if let Some(e) = engine {
                e.push_ready(next);
            }
        }
    }
}

/// Where an [`Input`] reads from.
pub(crate) enum Source {
    /// The connection's socket, read by the request's own thread through the connection's
    /// protocol machine (connections that do not multiplex).
    Conn {
        engine: Arc<Engine>,
        conn: Arc<Conn>,
        id: u16,
        aborted: bool,
    },
    /// Input routed by whichever thread reads the (multiplexed) connection.
    Mpx {
        inbox: Arc<Inbox>,
        engine: Arc<Engine>,
        conn: Arc<Conn>,
    },
    /// A plain reader (CGI mode, tests).
    Local(Box<dyn Read + Send>),
}

/// The input streams of a request: `FCGI_STDIN`, and `FCGI_DATA` for the Filter role
/// (selected with [`Request::data`]). Implements `io::Read`; end of stream is `Ok(0)`, an
/// aborted request is a `ConnectionAborted` error, a peer that sends nothing for the read
/// timeout a `TimedOut` one.
///
/// # Example
///
/// ```
/// use std::io::Read;
/// let mut req = fcgi::Request::for_test(&[], b"hello");
/// let input: &mut fcgi::server::Input = req.stdin();
/// let mut buf = [0; 2];
/// assert_eq!(input.read(&mut buf).unwrap(), 2);
/// ```
pub struct Input {
    pub(crate) src: Source,
    /// Which stream reads return: Stdin or Data.
    current: RecordType,
    /// End seen: [stdin, data].
    done: [bool; 2],
    /// Bytes received so far: [stdin, data].
    received: [u64; 2],
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Input")
            .field("stream", &self.current)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

fn slot(t: RecordType) -> usize {
    usize::from(t == RecordType::Data)
}

fn which(t: RecordType) -> Which {
    if t == RecordType::Data {
        Which::Data
    } else {
        Which::Stdin
    }
}

impl Input {
    fn new(src: Source, current: RecordType) -> Input {
        Input {
            src,
            current,
            done: [false, false],
            received: [0, 0],
        }
    }

    fn select(&mut self, t: RecordType) {
        self.current = t;
    }

    /// Bytes of the current stream received so far (compare with `CONTENT_LENGTH` or
    /// `FCGI_DATA_LENGTH`, spec 6.2, 6.4).
    ///
    /// # Example
    ///
    /// ```
    /// use std::io::Read;
    /// let mut req = fcgi::Request::for_test(&[], b"abc");
    /// std::io::copy(req.stdin(), &mut std::io::sink()).unwrap();
    /// assert_eq!(req.stdin().received(), 3);
    /// ```
    pub fn received(&self) -> u64 {
        self.received[slot(self.current)]
    }

    /// Whether an abort was already seen, without looking at the socket.
    pub(crate) fn abort_seen(&self) -> bool {
        match &self.src {
            Source::Conn { conn, aborted, .. } => *aborted || conn.is_broken(),
            Source::Mpx { inbox, conn, .. } => inbox.is_aborted() || conn.is_broken(),
            Source::Local(_) => false,
        }
    }

    fn check_aborted(&mut self) -> bool {
        match &mut self.src {
            Source::Conn {
                conn, id, aborted, ..
            } => {
                if *aborted || conn.is_broken() {
                    return true;
                }
                let rs = conn.read.lock();
                let mut head = [0u8; HEADER_LEN];
                let seen = if rs.buf.is_empty() {
                    drop(rs);
                    // Nobody reads the socket while the handler works: look without
                    // consuming.
                    match conn.peek(&mut head) {
                        Ok(0) => {
                            conn.broken.store(true, Ordering::Relaxed);
                            return true;
                        }
                        Ok(n) => n,
                        Err(_) => 0,
                    }
                } else if rs.machine.at_boundary() {
                    let p = rs.buf.pending();
                    let n = p.len().min(HEADER_LEN);
                    head[..n].copy_from_slice(&p[..n]);
                    n
                } else {
                    0
                };
                if seen == HEADER_LEN
                    && Header::decode(&head).is_ok_and(|h| {
                        h.record_type == RecordType::AbortRequest && h.request_id == *id
                    })
                {
                    *aborted = true;
                }
                *aborted
            }
            Source::Mpx { inbox, conn, .. } => inbox.is_aborted() || conn.is_broken(),
            Source::Local(_) => false,
        }
    }

    /// Reads the current stream of a request on a connection that does not multiplex:
    /// buffered bytes through the machine, then the socket, large reads straight into
    /// `buf` when the buffer is empty.
    fn read_conn(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Source::Conn {
            engine,
            conn,
            id,
            aborted,
        } = &mut self.src
        else {
            unreachable!("read_conn on another source")
        };
        let want = which(self.current);
        let lim = &engine.shared.limits;
        let mut rs = conn.read.lock();
        let mut muted = false;
        loop {
            if *aborted {
                return Err(aborted_error());
            }
            let step = {
                let rs = &mut *rs;
                rs.machine.advance(lim, rs.buf.pending(), buf.len())
            };
            match step {
                Err(e) => {
                    *aborted = true;
                    conn.broken.store(true, Ordering::Relaxed);
                    return Err(e.into());
                }
                Ok(Progress::Event(used, ev)) => {
                    match ev {
                        Event::Data { id: i, which, len } if i == *id && which == want => {
                            buf[..len].copy_from_slice(&rs.buf.pending()[used - len..used]);
                            rs.buf.consume(used);
                            return Ok(len);
                        }
                        Event::End { id: i, which } if i == *id => {
                            rs.buf.consume(used);
                            self.done[usize::from(which == Which::Data)] = true;
                            if which == want {
                                return Ok(0);
                            }
                        }
                        Event::Abort { id: i } if i == *id => {
                            rs.buf.consume(used);
                            *aborted = true;
                            return Err(aborted_error());
                        }
                        // The other stream's bytes while this one is read are skipped (a
                        // Filter that asks for its data drops unread stdin).
                        _ => rs.buf.consume(used),
                    }
                }
                Ok(Progress::Blocked(used)) => {
                    // Blocked only once every input stream of the request has ended.
                    rs.buf.consume(used);
                    self.done = [true, true];
                    return Ok(0);
                }
                Ok(Progress::NeedMore(used)) => {
                    rs.buf.consume(used);
                    if rs.machine.has_output() {
                        conn.send_machine_output(&mut rs)?;
                    }
                    if rs.eof {
                        // The web server closed the connection: that is how nginx,
                        // Apache and lighttpd abort a request.
                        *aborted = true;
                        conn.broken.store(true, Ordering::Relaxed);
                        return Err(aborted_error());
                    }
                    let pool = &engine.shared.bufs;
                    let mut before_wait = || {
                        if !muted {
                            muted = true;
                            engine.mute(conn);
                        }
                    };
                    let direct = match rs.machine.stream_left() {
                        Some((i, w, left)) if rs.buf.is_empty() && i == *id && w == want => {
                            Some(left.min(buf.len()))
                        }
                        _ => None,
                    }
                    .filter(|&n| n >= 4096);
                    let r = match direct {
                        Some(n) => {
                            // A large read with nothing buffered: straight into `buf`.
                            let r = crate::engine::conn::recv_blocking(
                                conn,
                                &mut buf[..n],
                                &mut before_wait,
                            );
                            if let Ok(n) = r {
                                if n > 0 {
                                    rs.machine.consume_stream(n);
                                    return Ok(n);
                                }
                            }
                            r
                        }
                        None => rs.fill_blocking(conn, pool, &mut before_wait),
                    };
                    match r {
                        Ok(0) => {
                            *aborted = true;
                            conn.broken.store(true, Ordering::Relaxed);
                            return Err(aborted_error());
                        }
                        Ok(_) => {}
                        Err(e) => {
                            *aborted = true;
                            conn.broken.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
            }
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let which_slot = slot(self.current);
        if self.done[which_slot] || buf.is_empty() {
            return Ok(0);
        }
        let n = match &mut self.src {
            Source::Local(r) => {
                if self.current == RecordType::Data {
                    0
                } else {
                    r.read(buf)?
                }
            }
            Source::Mpx {
                inbox,
                engine,
                conn,
            } => {
                let w = which(self.current);
                let deadline = engine
                    .shared
                    .read_timeout
                    .map(|t| std::time::Instant::now() + t);
                loop {
                    let seen = inbox.version();
                    let (got, resume) = inbox.try_read(w, buf)?;
                    if resume {
                        engine.resume(conn);
                    }
                    if let Some(n) = got {
                        break n;
                    }
                    if engine.read_for(conn, inbox, w, deadline) {
                        continue;
                    }
                    if !inbox.wait_change(seen, deadline) {
                        return Err(crate::engine::conn::read_timed_out());
                    }
                }
            }
            Source::Conn { .. } => self.read_conn(buf)?,
        };
        if n == 0 {
            self.done[which_slot] = true;
        }
        self.received[which_slot] += n as u64;
        Ok(n)
    }
}

/// Where an output stream goes.
pub(crate) enum Sink {
    Records(Arc<Conn>),
    Local(Box<dyn Write + Send>),
    Memory(Vec<u8>),
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sink::Records(_) => "Sink::Records",
            Sink::Local(_) => "Sink::Local",
            Sink::Memory(_) => "Sink::Memory",
        })
    }
}

/// The buffering record writer behind [`Stdout`] and [`Stderr`].
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) sink: Sink,
    record_type: RecordType,
    id: u16,
    /// `HEADER_LEN` bytes reserved for the header, then buffered content.
    buf: Vec<u8>,
    written: u64,
    /// Content bytes that reached the wire.
    sent: u64,
    stream_ended: bool,
    /// A multiplexed request's inbox, which knows when the request was aborted.
    abort: Option<Arc<Inbox>>,
}

impl Output {
    fn new(sink: Sink, record_type: RecordType, id: u16) -> Output {
        Output {
            sink,
            record_type,
            id,
            buf: Vec::new(),
            written: 0,
            sent: 0,
            stream_ended: false,
            abort: None,
        }
    }

    fn pending(&self) -> usize {
        self.buf.len().saturating_sub(HEADER_LEN)
    }

    /// Fills in the header of the buffered record; the buffer is then one whole record.
    fn seal(&mut self) {
        let len = self.pending() as u16;
        let h = crate::protocol::Header::new(self.record_type, self.id, len).encode();
        self.buf[..HEADER_LEN].copy_from_slice(&h);
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if self.pending() == 0 {
            return Ok(());
        }
        if matches!(self.sink, Sink::Records(_)) {
            self.seal();
        }
        let r = match &mut self.sink {
            Sink::Records(conn) => conn.write_all(&[&self.buf]),
            // CGI mode: the same buffering, so a failure before anything went out still
            // gives a 500, as in FastCGI mode.
            Sink::Local(w) => w.write_all(&self.buf[HEADER_LEN..]),
            Sink::Memory(_) => unreachable!("memory sinks do not buffer"),
        };
        self.sent += self.pending() as u64;
        self.buf.truncate(HEADER_LEN);
        r
    }

    /// Drops buffered content that was not sent yet.
    pub(crate) fn discard(&mut self) {
        self.buf.truncate(HEADER_LEN.min(self.buf.len()));
    }

    /// The bytes that end this stream: buffered content as a record, then the empty record
    /// (stderr sends no end record if nothing was ever written to it, as libfcgi).
    fn take_final(&mut self) -> Vec<u8> {
        if self.stream_ended {
            return Vec::new();
        }
        self.stream_ended = true;
        let mut out = std::mem::take(&mut self.buf);
        if out.len() > HEADER_LEN {
            self.buf = out;
            self.seal();
            out = std::mem::take(&mut self.buf);
        } else {
            out.clear();
        }
        if self.written > 0 || self.record_type == RecordType::Stdout {
            encode_stream_end(&mut out, self.record_type, self.id);
        }
        out
    }
}

impl Write for Output {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        match &mut self.sink {
            Sink::Local(_) => {}
            Sink::Memory(v) => {
                v.extend_from_slice(data);
                self.written += data.len() as u64;
                return Ok(data.len());
            }
            Sink::Records(conn) => {
                if self.stream_ended
                    || conn.is_broken()
                    || self.abort.as_ref().is_some_and(|b| b.is_aborted())
                {
                    return Err(aborted_error());
                }
            }
        }
        if self.buf.is_empty() {
            // Room for this write and some more (plus the record's end and END_REQUEST,
            // which `take_final` appends) at once, not one growth step per write.
            self.buf
                .reserve(HEADER_LEN + data.len().clamp(1024, OUT_CAP) + 2 * HEADER_LEN);
            self.buf.resize(HEADER_LEN, 0);
        }
        if self.pending() + data.len() > OUT_CAP {
            self.send_buffered()?;
        }
        if data.len() >= OUT_CAP {
            // Large writes go out directly, without a copy: up to DIRECT_RECORDS maximal
            // records in one gathered write.
            let n = data.len().min(DIRECT_RECORDS * MAX_CONTENT_LEN);
            match &mut self.sink {
                Sink::Records(conn) => {
                    let mut heads = [[0u8; HEADER_LEN]; DIRECT_RECORDS];
                    for (h, piece) in heads.iter_mut().zip(data[..n].chunks(MAX_CONTENT_LEN)) {
                        *h = Header::new(self.record_type, self.id, piece.len() as u16).encode();
                    }
                    let mut parts: [&[u8]; 2 * DIRECT_RECORDS] = [&[]; 2 * DIRECT_RECORDS];
                    let mut k = 0;
                    for (h, piece) in heads.iter().zip(data[..n].chunks(MAX_CONTENT_LEN)) {
                        parts[k] = h;
                        parts[k + 1] = piece;
                        k += 2;
                    }
                    conn.write_all(&parts[..k])?;
                }
                Sink::Local(w) => w.write_all(&data[..n])?,
                Sink::Memory(_) => unreachable!("memory sinks return above"),
            }
            self.written += n as u64;
            self.sent += n as u64;
            return Ok(n);
        }
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Memory(_) => Ok(()),
            Sink::Records(_) => self.send_buffered(),
            Sink::Local(_) => {
                self.send_buffered()?;
                match &mut self.sink {
                    Sink::Local(w) => w.flush(),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// The response stream of a request (`FCGI_STDOUT`). Buffered: bytes go out in records of
/// at most 65535 bytes when the buffer fills, on [`Write::flush`] (server push), and when
/// the handler returns.
///
/// # Example
///
/// ```
/// use std::io::Write;
/// let mut req = fcgi::Request::for_test(&[], b"");
/// let out: &mut fcgi::server::Stdout = req.stdout();
/// out.write_all(b"Content-Type: text/plain\r\n\r\n").unwrap();
/// out.flush().unwrap();
/// ```
#[derive(Debug)]
pub struct Stdout(pub(crate) Output);

/// The error stream of a request (`FCGI_STDERR`), buffered like [`Stdout`].
///
/// # Example
///
/// ```
/// use std::io::Write;
/// let mut req = fcgi::Request::for_test(&[], b"");
/// let err: &mut fcgi::server::Stderr = req.stderr();
/// writeln!(err, "warning: odd input").unwrap();
/// ```
#[derive(Debug)]
pub struct Stderr(pub(crate) Output);

impl Write for Stdout {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.write(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Write for Stderr {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.write(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

// A request can move to another thread (the handler may hand it to a helper thread).
const _: fn() = || {
    fn ok<T: Send>() {}
    ok::<Request>();
};
