//! One connection to a FastCGI backend: connecting, raw record I/O with timeouts, and
//! `FCGI_GET_VALUES`. The request exchange itself lives in [`super::response`].

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::Socket;

use super::pool::Watch;
use super::{Address, Config, Error, FcgiRequest, Response, TimeoutKind};
use crate::protocol::{
    self, decode_record, encode_get_values, ParamsDecoder, ParamsLimits, RecordType, Status,
    HEADER_LEN, MAX_CONTENT_LEN,
};
use crate::sys::{self, Ready};

/// Largest record on the wire: header, 65535 bytes of content, 255 of padding.
pub(super) const MAX_RECORD: usize = HEADER_LEN + MAX_CONTENT_LEN + 255;

/// What the backend answered to `FCGI_GET_VALUES` (spec 4.1).
///
/// Each field is `None` when the backend left the variable out or sent a value that is not
/// a number. PHP-FPM answers and then closes the connection.
///
/// # Example
///
/// ```no_run
/// use fcgi::client::{Connection, Config};
/// let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
/// let v = conn.get_values()?;
/// println!("max conns {:?}, multiplexing {:?}", v.max_conns, v.mpxs_conns);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendValues {
    /// `FCGI_MAX_CONNS`: concurrent connections the backend accepts.
    pub max_conns: Option<u32>,
    /// `FCGI_MAX_REQS`: concurrent requests the backend accepts.
    pub max_reqs: Option<u32>,
    /// `FCGI_MPXS_CONNS`: whether it runs several requests on one connection.
    pub mpxs_conns: Option<bool>,
    /// Every pair of the answer, as received.
    pub raw: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A connection to a FastCGI backend over TCP or a Unix socket.
///
/// It runs one request at a time ([`Connection::send`]); the [`Response`] borrows the
/// connection until it is read to the end or dropped. With [`Config::keep_conn`] (the
/// default) the connection stays open for the next request when the previous one ended
/// cleanly; a request dropped half-way leaves it closed ([`Connection::is_reusable`] false).
///
/// # Example
///
/// ```no_run
/// use std::io::Read;
/// use fcgi::client::{Config, Connection, FcgiRequest};
///
/// let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
/// let req = FcgiRequest::new()
///     .param("SCRIPT_FILENAME", "/srv/www/index.php")
///     .param("REQUEST_METHOD", "GET");
/// let mut resp = conn.send(req, std::io::empty())?;
/// let mut body = String::new();
/// resp.read_to_string(&mut body)?;
/// println!("{} {body}", resp.status());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    pub(super) sock: Socket,
    pub(super) addr: Address,
    pub(super) config: Config,
    pub(super) rbuf: Vec<u8>,
    pub(super) rpos: usize,
    pub(super) rlen: usize,
    pub(super) state: ConnState,
    pub(super) requests: u64,
    /// The pool's view of this connection's backend (capacity learning, health).
    pub(super) watch: Option<Arc<Watch>>,
    /// True once the backend sent a record on this connection: it accepted it.
    pub(super) answered: bool,
    /// Set when a wait ran out of the I/O time limit.
    pub(super) timed_out: bool,
    /// The request in progress: when it started, and the backend's count of ended
    /// requests then.
    pub(super) started: Option<(Instant, u64)>,
    /// True once this connection was reported to the pool as left unanswered.
    pub(super) reported: bool,
    /// The pool's bound generation when this connection was opened.
    pub(super) epoch: u64,
    /// The pool's pick has just found this idle connection alive, for the request that
    /// starts next on it: that start need not look again (one `poll` less). Cleared by
    /// the start, and when the pool hands the connection to a caller instead.
    pub(super) just_looked: bool,
}

/// How often a wait for the first answer on a new pooled connection looks at whether the
/// backend serves its other connections meanwhile.
const UNANSWERED_CHECK: Duration = Duration::from_millis(50);
/// How long a new pooled connection waits for its first record, while the backend ends
/// requests on other connections, before it counts as not accepted. php-fpm answers its
/// first record within milliseconds once a child has the connection.
const UNANSWERED_AFTER: Duration = Duration::from_millis(250);
/// Requests the backend must end on other connections meanwhile.
const UNANSWERED_SERVED: u64 = 2;

impl Drop for Connection {
    fn drop(&mut self) {
        if let (true, Some(w)) = (self.answered, &self.watch) {
            w.answered_open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum ConnState {
    Idle,
    Busy,
    Broken,
}

impl Connection {
    /// Connects to `addr`, within [`Config::connect_timeout`].
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the backend cannot be reached, or
    /// [`Error::Timeout`]`(`[`TimeoutKind::Connect`]`)`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use fcgi::client::{Address, Config, Connection};
    /// let conn = Connection::connect(&Address::Unix("/run/php/php8.2-fpm.sock".into()), &Config::default())?;
    /// # Ok::<(), fcgi::client::Error>(())
    /// ```
    pub fn connect(addr: &Address, config: &Config) -> Result<Connection, Error> {
        let fail = |e: io::Error| {
            if e.kind() == io::ErrorKind::TimedOut {
                Error::Timeout(TimeoutKind::Connect)
            } else {
                Error::Connect {
                    addr: addr.to_string(),
                    source: e,
                }
            }
        };
        let opts = crate::net::ConnectOptions {
            timeout: config.connect_timeout,
            cloexec: true,
            nodelay: true,
            nonblocking: true,
        };
        let sock = crate::net::connect(addr, opts).map_err(fail)?;
        Ok(Connection {
            sock,
            addr: addr.clone(),
            config: config.clone(),
            rbuf: Vec::new(),
            rpos: 0,
            rlen: 0,
            state: ConnState::Idle,
            requests: 0,
            watch: None,
            answered: false,
            timed_out: false,
            started: None,
            reported: false,
            epoch: 0,
            just_looked: false,
        })
    }

    /// The backend address this connection was made to.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection};
    /// let conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// assert_eq!(conn.address().to_string(), "127.0.0.1:9000");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn address(&self) -> &Address {
        &self.addr
    }

    /// Requests started on this connection so far.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection};
    /// let conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// assert_eq!(conn.requests(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// True when the connection can carry another request: keep-alive was asked for, the
    /// last request ended cleanly, and the backend has not closed the connection since (a
    /// non-blocking check).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection, FcgiRequest};
    /// let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// conn.send(FcgiRequest::new(), std::io::empty())?.finish()?;
    /// println!("reusable: {}", conn.is_reusable());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_reusable(&mut self) -> bool {
        if self.state != ConnState::Idle || self.rpos != self.rlen {
            return false;
        }
        // An idle backend sends nothing: readable now means EOF, a reset or junk.
        match sys::poll(self.sock.as_fd(), false, Some(Duration::ZERO)) {
            Ok(r) if !r.readable => true,
            _ => {
                self.state = ConnState::Broken;
                false
            }
        }
    }

    /// [`Connection::is_reusable`], unless the pool's pick just said yes.
    pub(super) fn still_reusable(&mut self) -> bool {
        if std::mem::take(&mut self.just_looked)
            && self.state == ConnState::Idle
            && self.rpos == self.rlen
        {
            return true;
        }
        self.is_reusable()
    }

    /// Sends `request` with `body` as its stdin, and returns once the CGI response head has
    /// arrived; the body of the response then streams through the [`Response`]'s `Read`.
    ///
    /// The body is read in pieces of at most 64 KiB and sent as `FCGI_STDIN` records while
    /// the response is read, so a large upload never sits in memory and an application that
    /// answers before reading all its input does not deadlock the exchange. Set
    /// `CONTENT_LENGTH` among the params to the number of bytes `body` yields.
    ///
    /// # Errors
    ///
    /// The backend's refusals ([`Error::Overloaded`], [`Error::UnknownRole`],
    /// [`Error::CantMpxConn`]), [`Error::BackendClosed`], malformed records, a bad head,
    /// timeouts, [`Error::Body`] if reading `body` fails, and [`Error::ConnectionUnusable`]
    /// on a connection whose last request did not end cleanly.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::io::Read;
    /// use fcgi::client::{Config, Connection, FcgiRequest};
    /// let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let form = b"a=1&b=2";
    /// let req = FcgiRequest::new()
    ///     .param("SCRIPT_FILENAME", "/srv/form.php")
    ///     .param("REQUEST_METHOD", "POST")
    ///     .param("CONTENT_TYPE", "application/x-www-form-urlencoded")
    ///     .param("CONTENT_LENGTH", form.len().to_string());
    /// let mut resp = conn.send(req, &form[..])?;
    /// let mut out = Vec::new();
    /// resp.read_to_end(&mut out)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send<'a, R: Read + Send + 'a>(
        &'a mut self,
        request: FcgiRequest,
        body: R,
    ) -> Result<Response<'a>, Error> {
        Response::start(
            super::response::ConnRef::Borrowed(self),
            request,
            Box::new(body),
        )
    }

    /// Asks the backend for `FCGI_MAX_CONNS`, `FCGI_MAX_REQS` and `FCGI_MPXS_CONNS`.
    ///
    /// Only valid between requests. PHP-FPM answers only as the first record of a
    /// connection and then closes it, so use a fresh connection (see
    /// [`super::get_values`]).
    ///
    /// # Errors
    ///
    /// I/O errors, timeouts, [`Error::BackendClosed`] if the backend closes without an
    /// answer, [`Error::Protocol`] for a malformed answer.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Config, Connection};
    /// let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// assert!(conn.get_values()?.max_conns.unwrap_or(1) >= 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_values(&mut self) -> Result<BackendValues, Error> {
        if self.state != ConnState::Idle {
            return Err(Error::ConnectionUnusable);
        }
        self.state = ConnState::Broken; // until the answer is read
        let deadline = self.config.request_timeout.map(|t| Instant::now() + t);
        let mut out = Vec::new();
        encode_get_values(
            &mut out,
            &[
                protocol::MAX_CONNS,
                protocol::MAX_REQS,
                protocol::MPXS_CONNS,
            ],
        );
        self.write_all(&out, deadline)?;
        loop {
            let Some((header, range)) = self.next_record(deadline)? else {
                return Err(Error::BackendClosed { stdout_bytes: 0 });
            };
            if header.record_type != RecordType::GetValuesResult {
                // Anything else (e.g. UNKNOWN_TYPE) is skipped; the answer must still come.
                if header.request_id != 0 {
                    return Err(Error::UnexpectedRecord {
                        record_type: header.record_type.into(),
                        request_id: header.request_id,
                        expected_id: 0,
                    });
                }
                continue;
            }
            let mut dec = ParamsDecoder::new(ParamsLimits {
                max_bytes: MAX_CONTENT_LEN,
                max_pairs: 64,
            });
            dec.feed(&self.rbuf[range])?;
            let params = dec.finish()?;
            let num = |name: &str| {
                params
                    .get(name.as_bytes())
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.trim().parse::<u32>().ok())
            };
            let values = BackendValues {
                max_conns: num(protocol::MAX_CONNS),
                max_reqs: num(protocol::MAX_REQS),
                mpxs_conns: num(protocol::MPXS_CONNS).map(|v| v != 0),
                raw: params
                    .iter()
                    .map(|p| (p.name.to_vec(), p.value.to_vec()))
                    .collect(),
            };
            self.state = ConnState::Idle;
            return Ok(values);
        }
    }

    /// Time left before `deadline`, bounded by the idle timeout; which limit it is.
    pub(super) fn wait_budget(&self, deadline: Option<Instant>) -> (Option<Duration>, bool) {
        let idle = self.config.io_timeout;
        match deadline {
            None => (idle, false),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                match idle {
                    Some(i) if i < left => (Some(i), false),
                    _ => (Some(left), true),
                }
            }
        }
    }

    /// Waits until the socket is readable (or writable, if asked).
    ///
    /// On a pooled connection that has not had an answer yet, the wait is cut in slices
    /// to see whether the backend serves its other connections meanwhile (then it has not
    /// accepted this one; the pool is told, see `Watch::unanswered`).
    pub(super) fn wait(
        &mut self,
        want_write: bool,
        deadline: Option<Instant>,
    ) -> Result<Ready, Error> {
        // Checked on every wait, not only when poll times out: a backend that trickles
        // bytes forever must still hit the whole-request limit.
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::Timeout(TimeoutKind::Request));
        }
        let (budget, is_deadline) = self.wait_budget(deadline);
        let start = Instant::now();
        loop {
            let watching = self.watching();
            let slice = match (watching, budget) {
                (false, b) => b,
                (true, None) => Some(UNANSWERED_CHECK),
                (true, Some(b)) => Some(b.saturating_sub(start.elapsed()).min(UNANSWERED_CHECK)),
            };
            let ready = sys::poll(self.sock.as_fd(), want_write, slice)?;
            if ready.readable || ready.writable {
                return Ok(ready);
            }
            if !watching || budget.is_some_and(|b| start.elapsed() >= b) {
                if !is_deadline {
                    self.timed_out = true;
                }
                return Err(Error::Timeout(if is_deadline {
                    TimeoutKind::Request
                } else {
                    TimeoutKind::Io
                }));
            }
            self.check_unanswered();
        }
    }

    /// True while a pooled request waits for the first record of a new connection.
    fn watching(&self) -> bool {
        self.watch.is_some() && !self.answered && !self.reported && self.started.is_some()
    }

    /// Tells the pool when this new connection has waited long for an answer while the
    /// backend ended requests on its other connections.
    fn check_unanswered(&mut self) {
        let (Some(w), Some((since, ended_then))) = (&self.watch, self.started) else {
            return;
        };
        let waited = since.elapsed();
        let served = w.ended.load(Ordering::Relaxed).saturating_sub(ended_then);
        if waited >= UNANSWERED_AFTER && served >= UNANSWERED_SERVED {
            self.reported = true;
            w.unanswered(waited, served, self.epoch);
        }
    }

    /// Notes that a request starts on this connection.
    pub(super) fn note_start(&mut self) {
        self.started = self
            .watch
            .as_ref()
            .map(|w| (Instant::now(), w.ended.load(Ordering::Relaxed)));
    }

    /// Notes a record from the backend: the first one means it accepted the connection.
    pub(super) fn note_answered(&mut self) {
        if self.answered {
            return;
        }
        self.answered = true;
        if let Some(w) = &self.watch {
            w.answered_open.fetch_add(1, Ordering::Relaxed);
            if self.reported {
                w.answered_late();
            }
        }
    }

    /// Notes `FCGI_END_REQUEST`.
    pub(super) fn note_end(&mut self) {
        self.started = None;
        if let Some(w) = &self.watch {
            w.ended.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads what the socket has into the buffer. `Ok(false)` on EOF.
    pub(super) fn read_some(&mut self) -> Result<bool, Error> {
        if self.rpos == self.rlen {
            self.rpos = 0;
            self.rlen = 0;
        }
        if self.rbuf.len() < MAX_RECORD {
            self.rbuf.resize(MAX_RECORD, 0);
        }
        if self.rlen == self.rbuf.len() {
            // Make room: move the unconsumed tail to the front.
            self.rbuf.copy_within(self.rpos..self.rlen, 0);
            self.rlen -= self.rpos;
            self.rpos = 0;
        }
        loop {
            match (&self.sock).read(&mut self.rbuf[self.rlen..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.rlen += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Ensures the record starting at `rpos` is wholly in the buffer so it can be decoded.
    fn make_room_for(&mut self, needed: usize) {
        if self.rpos + needed > self.rbuf.len() {
            self.rbuf.copy_within(self.rpos..self.rlen, 0);
            self.rlen -= self.rpos;
            self.rpos = 0;
        }
    }

    /// Decodes the next whole record from the buffer if there is one: its header and the
    /// range of its content in `rbuf`; the record is consumed.
    pub(super) fn take_buffered_record(
        &mut self,
    ) -> Result<Option<(protocol::Header, std::ops::Range<usize>)>, Error> {
        match decode_record(&self.rbuf[self.rpos..self.rlen])? {
            Status::Complete((rec, used)) => {
                let start = self.rpos + HEADER_LEN;
                let range = start..start + rec.content.len();
                let header = rec.header;
                self.rpos += used;
                Ok(Some((header, range)))
            }
            Status::Partial(missing) => {
                self.make_room_for(self.rlen - self.rpos + missing);
                Ok(None)
            }
        }
    }

    /// Reads until one whole record is buffered; `None` on a clean EOF between records.
    fn next_record(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<(protocol::Header, std::ops::Range<usize>)>, Error> {
        loop {
            if let Some(r) = self.take_buffered_record()? {
                return Ok(Some(r));
            }
            self.wait(false, deadline)?;
            if !self.read_some()? {
                if self.rpos == self.rlen {
                    return Ok(None);
                }
                return Err(Error::BackendClosed { stdout_bytes: 0 });
            }
        }
    }

    /// Writes some of `buf` without blocking: the bytes written (0 if the socket is full).
    pub(super) fn write_some(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.sock.send_with_flags(buf, libc::MSG_NOSIGNAL) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `buf`, waiting for room within the timeouts.
    pub(super) fn write_all(
        &mut self,
        mut buf: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.write_some(buf)?;
            if n == 0 {
                let ready = self.wait(true, deadline)?;
                if !ready.writable {
                    // The backend is sending instead of reading: keep its bytes for later,
                    // within one record's worth, so this loop cannot spin.
                    if self.rlen - self.rpos >= MAX_RECORD {
                        return Err(Error::Io(io::Error::other(
                            "backend sends data without reading the request",
                        )));
                    }
                    if !self.read_some()? {
                        return Err(Error::BackendClosed { stdout_bytes: 0 });
                    }
                }
                continue;
            }
            buf = &buf[n..];
        }
        Ok(())
    }
}
