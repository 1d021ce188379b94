//! A request as its handler sees it: role, params, input streams (`io::Read`) and output
//! streams (`io::Write`) that frame records on the connection.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::conn::{aborted_error, side_record, Conn, Reader, Shared, Side};
use super::mpx::Inbox;
use crate::protocol::{
    encode_header_into, encode_stream_end, Header, Params, ProtocolStatus, RecordType, Role,
    HEADER_LEN, MAX_CONTENT_LEN,
};

/// Content bytes an output stream buffers before it sends a record: one maximal record
/// (65535 bytes) rounded down to a multiple of 8.
const OUT_CAP: usize = 65528;

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
    /// The role the web server asked for (Responder, Authorizer or Filter).
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

    /// The value of param `name` as UTF-8; `None` if absent or not UTF-8 (then use
    /// [`Request::param_bytes`]).
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::Request::for_test(&[("QUERY_STRING", "a=1")], b"");
    /// assert_eq!(req.param("QUERY_STRING"), Some("a=1"));
    /// assert_eq!(req.param("query_string"), None);
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        self.param_bytes(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The raw value of param `name`.
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

    /// All params, in the order the web server sent them.
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::Request::for_test(&[("A", "1"), ("B", "2")], b"");
    /// let names: Vec<_> = req.params().map(|p| p.name).collect();
    /// assert_eq!(names, [&b"A"[..], &b"B"[..]]);
    /// ```
    pub fn params(&self) -> impl ExactSizeIterator<Item = crate::protocol::Pair<'_>> + '_ {
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
        }
    }

    /// A request read from a connection that does not multiplex: the input reads the
    /// socket inline, through the connection's own reader.
    pub(crate) fn inline(head: super::conn::Head, conn: Conn) -> Request {
        let Conn { shared, reader } = conn;
        let src = Source::Inline {
            reader,
            shared: Arc::clone(&shared),
            id: head.id,
            aborted: false,
        };
        Request::on_connection(head, &shared, src)
    }

    /// A request of a multiplexed connection: input arrives through `inbox`.
    pub(crate) fn multiplexed(
        head: super::conn::Head,
        shared: Arc<Shared>,
        inbox: Inbox,
    ) -> Request {
        Request::on_connection(head, &shared, Source::Mpx(inbox))
    }

    fn on_connection(head: super::conn::Head, shared: &Arc<Shared>, src: Source) -> Request {
        let id = head.id;
        let output = |t| Output::new(Sink::Records(Arc::clone(shared)), t, id);
        Request {
            id,
            role: head.role,
            keep_conn: head.keep_conn,
            params: head.params,
            stdout: Stdout(output(RecordType::Stdout)),
            stderr: Stderr(output(RecordType::Stderr)),
            input: Input::new(src, RecordType::Stdin),
            app_status: 0,
        }
    }

    /// The connection an inline request came on.
    pub(crate) fn conn_shared(&self) -> Option<Arc<Shared>> {
        match (&self.input.src, &self.stdout.0.sink) {
            (Source::Inline { .. }, Sink::Records(s)) => Some(Arc::clone(s)),
            _ => None,
        }
    }

    /// Whether stdout bytes reached the web server (so a 500 can no longer be sent).
    pub(crate) fn stdout_sent(&self) -> bool {
        match self.stdout.0.sink {
            Sink::Records(_) => self.stdout.0.sent > 0,
            _ => self.stdout.0.written > 0,
        }
    }

    /// Ends the request: flushes both output streams, sends their end records and
    /// END_REQUEST in one write, and gives back the connection's reader (inline requests).
    pub(crate) fn finish(mut self) -> (io::Result<()>, Option<Box<Reader>>, bool) {
        let result = match (&self.stdout.0.sink, &self.stderr.0.sink) {
            (Sink::Records(shared), Sink::Records(_)) => {
                let shared = Arc::clone(shared);
                let id = self.id;
                let err_tail = self.stderr.0.take_final();
                let out_tail = self.stdout.0.take_final();
                let mut end = Vec::with_capacity(16);
                crate::protocol::encode_end_request(
                    &mut end,
                    id,
                    self.app_status as u32,
                    ProtocolStatus::RequestComplete,
                );
                shared.write_all(&[&err_tail, &out_tail, &end])
            }
            _ => self.stdout.flush().and_then(|_| self.stderr.flush()),
        };
        let input_done = self.input.finish_from_buffer(self.role);
        let reader = match self.input.src {
            Source::Inline { reader, .. } => Some(reader),
            _ => None,
        };
        (result, reader, input_done)
    }
}

/// Where an [`Input`] reads from.
pub(crate) enum Source {
    /// The connection's socket, read by the request's own thread.
    Inline {
        reader: Box<Reader>,
        shared: Arc<Shared>,
        id: u16,
        aborted: bool,
    },
    /// Chunks routed by the connection's reader thread (multiplexed connections).
    Mpx(Inbox),
    /// A plain reader (CGI mode, tests).
    Local(Box<dyn Read + Send>),
}

/// The input streams of a request: `FCGI_STDIN`, and `FCGI_DATA` for the Filter role
/// (selected with [`Request::data`]). Implements `io::Read`; end of stream is `Ok(0)`, an
/// aborted request is a `ConnectionAborted` error.
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
    /// Bytes of the current inline record that belong to `current`.
    in_record: bool,
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

impl Input {
    fn new(src: Source, current: RecordType) -> Input {
        Input {
            src,
            current,
            done: [false, false],
            in_record: false,
            received: [0, 0],
        }
    }

    fn select(&mut self, t: RecordType) {
        if self.current != t {
            self.current = t;
            self.in_record = false;
        }
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

    /// Whether every input stream the role has (stdin; stdin and data for a Filter) has
    /// ended, consuming what of them is already buffered (a handler that never read its
    /// empty stdin leaves its end record there). Reads nothing from the socket.
    fn finish_from_buffer(&mut self, role: Role) -> bool {
        let ended = |done: &[bool; 2]| done[0] && (role != Role::Filter || done[1]);
        let Source::Inline {
            reader,
            id,
            aborted,
            ..
        } = &mut self.src
        else {
            return true;
        };
        while !ended(&self.done) {
            if *aborted || !reader.skip_current_if_buffered() {
                return false;
            }
            self.in_record = false;
            match reader.buffered_header() {
                Some(h)
                    if h.request_id == *id
                        && matches!(h.record_type, RecordType::Stdin | RecordType::Data) =>
                {
                    reader.consume(h.record_len());
                    if h.content_length == 0 {
                        self.done[slot(h.record_type)] = true;
                    }
                }
                _ => return false,
            }
        }
        true
    }

    /// Whether an abort was already seen, without looking at the socket.
    pub(crate) fn abort_seen(&self) -> bool {
        match &self.src {
            Source::Inline {
                shared, aborted, ..
            } => *aborted || shared.broken.load(Ordering::Relaxed),
            Source::Mpx(inbox) => inbox.is_aborted(),
            Source::Local(_) => false,
        }
    }

    fn check_aborted(&mut self) -> bool {
        match &mut self.src {
            Source::Inline {
                reader,
                shared,
                id,
                aborted,
            } => {
                if *aborted || shared.broken.load(Ordering::Relaxed) {
                    return true;
                }
                if !reader.is_idle() {
                    return false;
                }
                // Nobody reads the socket while the handler works: look without consuming.
                let mut head = [0u8; HEADER_LEN];
                match shared.stream.peek_nonblocking(&mut head) {
                    Ok(0) => {
                        shared.broken.store(true, Ordering::Relaxed);
                        true
                    }
                    Ok(n) if n == HEADER_LEN => {
                        let abort = Header::decode(&head).is_ok_and(|h| {
                            h.record_type == RecordType::AbortRequest && h.request_id == *id
                        });
                        if abort {
                            *aborted = true;
                        }
                        abort
                    }
                    _ => false,
                }
            }
            Source::Mpx(inbox) => inbox.is_aborted(),
            Source::Local(_) => false,
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let which = slot(self.current);
        if self.done[which] || buf.is_empty() {
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
            Source::Mpx(inbox) => inbox.read(self.current, buf)?,
            Source::Inline {
                reader,
                shared,
                id,
                aborted,
            } => loop {
                if *aborted {
                    return Err(aborted_error());
                }
                if self.in_record {
                    let n = reader.read_content(&shared.stream, buf).inspect_err(|_| {
                        *aborted = true;
                    })?;
                    if n > 0 {
                        break n;
                    }
                    self.in_record = false;
                }
                let h = match reader.next_header(&shared.stream) {
                    Ok(Some(h)) => h,
                    Ok(None) | Err(_) => {
                        // The web server closed the connection: that is how nginx,
                        // Apache and lighttpd abort a request.
                        *aborted = true;
                        shared.broken.store(true, Ordering::Relaxed);
                        return Err(aborted_error());
                    }
                };
                match side_record(reader, shared, h, Some(*id))? {
                    Side::Handled => {}
                    Side::Mine(h) => match h.record_type {
                        RecordType::AbortRequest => {
                            *aborted = true;
                            return Err(aborted_error());
                        }
                        t @ (RecordType::Stdin | RecordType::Data) => {
                            if h.content_length == 0 {
                                self.done[slot(t)] = true;
                                if t == self.current {
                                    break 0;
                                }
                            } else if t == self.current {
                                self.in_record = true;
                            }
                            // else: the other stream's bytes while this one is read are
                            // skipped (a Filter that asks for data drops unread stdin).
                        }
                        _ => {} // params after their end, unknown types: skipped
                    },
                }
            },
        };
        self.received[which] += n as u64;
        Ok(n)
    }
}

/// Where an output stream goes.
pub(crate) enum Sink {
    Records(Arc<Shared>),
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
        self.seal();
        let r = match &mut self.sink {
            Sink::Records(shared) => shared.write_all(&[&self.buf]),
            _ => unreachable!("only record sinks buffer"),
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
            Sink::Local(w) => {
                let n = w.write(data)?;
                self.written += n as u64;
                return Ok(n);
            }
            Sink::Memory(v) => {
                v.extend_from_slice(data);
                self.written += data.len() as u64;
                return Ok(data.len());
            }
            Sink::Records(shared) => {
                if self.stream_ended || shared.broken.load(Ordering::Relaxed) {
                    return Err(aborted_error());
                }
            }
        }
        if self.buf.is_empty() {
            self.buf.resize(HEADER_LEN, 0);
        }
        if self.pending() + data.len() > OUT_CAP {
            self.send_buffered()?;
        }
        if data.len() >= OUT_CAP {
            // Large writes go out directly, one maximal record at a time, without a copy.
            let piece = &data[..data.len().min(MAX_CONTENT_LEN)];
            let mut h = Vec::with_capacity(HEADER_LEN);
            encode_header_into(&mut h, self.record_type, self.id, piece.len() as u16);
            if let Sink::Records(shared) = &self.sink {
                shared.write_all(&[&h, piece])?;
            }
            self.written += piece.len() as u64;
            self.sent += piece.len() as u64;
            return Ok(piece.len());
        }
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.sink {
            Sink::Local(w) => w.flush(),
            Sink::Memory(_) => Ok(()),
            Sink::Records(_) => self.send_buffered(),
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
