//! A blocking FastCGI client with a connection pool: the web server's side of the wire.
//!
//! This module sends requests to a FastCGI application (PHP-FPM, or this crate's server) and
//! streams both ways: the request body is any `impl Read`, sent as `FCGI_STDIN` records while
//! the response is read, and the response body is a streaming `Read` after a parsed CGI head.
//! It is built on [`crate::protocol`]; there is no second codec.
//!
//! - [`Connection`]: one connection, one request at a time ([`Connection::send`]).
//! - [`Response`]: status and headers, then the body; stderr kept apart; app and protocol
//!   status at the end.
//! - [`Pool`]: kept-alive connections to one or more backends, bounded, with fair waiting,
//!   idle expiry, at-most-once sending, a bound learned from how the backend behaves,
//!   health from timeouts and refusals with probes, session affinity, and multiplexing where
//!   the backend offers it.
//! - [`MuxConnection`]: several requests at once on one connection (`FCGI_MPXS_CONNS=1`).
//! - [`get_values`]: ask a backend for `FCGI_MAX_CONNS`, `FCGI_MAX_REQS`, `FCGI_MPXS_CONNS`.
//! - With the `http` feature: `FcgiRequest::from_http` builds the CGI params a web server sends
//!   from an `http::Request`, and `Head::to_http` gives an `http::response::Builder`.
//!
//! A [`Connection`] uses request id 1 for every request, as nginx and Apache do. HTTP itself
//! is out of scope: the caller turns the [`Head`] and body into its HTTP response.
//!
//! # Example
//!
//! ```no_run
//! use std::io::Read;
//! use fcgi::client::{Backend, Pool, FcgiRequest};
//!
//! let pool = Pool::builder()
//!     .backend(Backend::new("127.0.0.1:9000".parse()?))
//!     .max_conns_per_backend(8)
//!     .build();
//! let req = FcgiRequest::new()
//!     .param("SCRIPT_FILENAME", "/srv/www/index.php")
//!     .param("REQUEST_METHOD", "GET")
//!     .param("QUERY_STRING", "a=1");
//! let mut resp = pool.send(req, std::io::empty())?;
//! let mut body = String::new();
//! resp.read_to_string(&mut body)?;
//! println!("{} {:?}\n{body}", resp.status(), resp.header("Content-Type"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

mod connection;
mod error;
#[cfg(feature = "http")]
mod from_http;
mod head;
mod mux;
mod pool;
mod response;

use std::fmt;
use std::time::Duration;

pub use connection::{BackendValues, Connection};
pub use error::{Error, TimeoutKind};
#[cfg(feature = "http")]
pub use from_http::{CgiEnv, CgiError};
pub use head::{find_head_end, Head, HeadError};
pub use mux::MuxConnection;
pub use pool::{
    rendezvous_score, Backend, BackendStats, Balance, Pool, PoolBuilder, PooledConnection,
};
pub use response::Response;

use crate::protocol::{Header, Role};

/// Where a backend listens: the crate's one address type ([`crate::net::Address`]).
///
/// Parses in the crate's syntax ([`crate::net::Syntax::Crate`]): `IP:PORT`, `[IPv6]:PORT`,
/// `unix:/path`, or a path starting with `/`; displayed so that it parses back.
///
/// # Example
///
/// ```
/// use fcgi::client::Address;
/// let a: Address = "127.0.0.1:9000".parse().unwrap();
/// assert!(matches!(a, Address::Tcp(_)));
/// let u: Address = "unix:/run/php/fpm.sock".parse().unwrap();
/// assert_eq!(u.to_string(), "unix:/run/php/fpm.sock");
/// ```
pub use crate::net::Address;

/// Connection settings: time limits, size limits and keep-alive.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// let mut config = fcgi::client::Config::default();
/// config.io_timeout = Some(Duration::from_secs(5));
/// config.request_timeout = Some(Duration::from_secs(30));
/// assert!(config.keep_conn);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Limit for connecting. Default 5 s; `None` waits as long as the OS does.
    pub connect_timeout: Option<Duration>,
    /// Limit for a wait, during a request, in which no byte can be read or written (the
    /// backend is silent or does not read). Default 60 s. A pooled request that runs out of
    /// it marks its backend down. (How long an idle pooled connection is kept is
    /// [`PoolBuilder::keepalive_timeout`].)
    pub io_timeout: Option<Duration>,
    /// Limit for a whole request, from sending it to `FCGI_END_REQUEST`. Default none.
    pub request_timeout: Option<Duration>,
    /// Largest CGI response head accepted. Default 64 KiB.
    pub max_head_bytes: usize,
    /// Stderr bytes kept per response (the rest is counted, not stored). Default 64 KiB.
    pub stderr_limit: usize,
    /// Ask the backend to keep the connection open (`FCGI_KEEP_CONN`). Default true.
    pub keep_conn: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            connect_timeout: Some(Duration::from_secs(5)),
            io_timeout: Some(Duration::from_secs(60)),
            request_timeout: None,
            max_head_bytes: 64 * 1024,
            stderr_limit: 64 * 1024,
            keep_conn: true,
        }
    }
}

/// The callback type of [`FcgiRequest::on_stderr`].
pub(crate) type StderrSink = Box<dyn FnMut(&[u8]) + Send>;

/// The callback type of [`FcgiRequest::on_record`].
pub(crate) type RecordSink = Box<dyn FnMut(Direction, &Header, &[u8]) + Send>;

/// Which way a record went, for [`FcgiRequest::on_record`].
///
/// # Example
///
/// ```
/// use fcgi::client::Direction;
/// assert_ne!(Direction::Sent, Direction::Received);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the backend.
    Sent,
    /// From the backend to the client.
    Received,
}

/// The former name of [`FcgiRequest`], which collided with `http::Request` in exactly the
/// programs the `http` feature is for (and with the server's [`crate::Request`]).
///
/// # Example
///
/// ```
/// #![allow(deprecated)]
/// let req: fcgi::client::Request = fcgi::client::FcgiRequest::new();
/// ```
#[deprecated(note = "renamed FcgiRequest")]
pub type Request = FcgiRequest;

/// Methods HTTP defines as idempotent (RFC 9110 section 9.2.2), as nginx's
/// `fastcgi_next_upstream` treats them without `non_idempotent`.
const IDEMPOTENT_METHODS: [&[u8]; 6] = [b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"];

/// A request to send: role, params and per-request options. The body is passed separately
/// to [`Connection::send`] or [`Pool::send`].
///
/// # Example
///
/// ```
/// use fcgi::client::FcgiRequest;
/// use fcgi::protocol::Role;
/// let req = FcgiRequest::new()
///     .role(Role::Responder)
///     .param("REQUEST_METHOD", "GET")
///     .params([("QUERY_STRING", "x=1"), ("SERVER_PROTOCOL", "HTTP/1.1")]);
/// assert_eq!(req.get_param("QUERY_STRING"), Some(&b"x=1"[..]));
/// ```
pub struct FcgiRequest {
    pub(crate) role: Role,
    pub(crate) params: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) stderr_limit: Option<usize>,
    pub(crate) on_stderr: Option<StderrSink>,
    pub(crate) on_record: Option<RecordSink>,
    pub(crate) parse_head: bool,
    pub(crate) idempotent: Option<bool>,
}

impl fmt::Debug for FcgiRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcgiRequest")
            .field("role", &self.role)
            .field("params", &self.params.len())
            .field("timeout", &self.timeout)
            .field("idempotent", &self.is_idempotent())
            .finish_non_exhaustive()
    }
}

impl Default for FcgiRequest {
    fn default() -> FcgiRequest {
        FcgiRequest::new()
    }
}

impl FcgiRequest {
    /// A Responder request with no params.
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::client::FcgiRequest::new();
    /// assert_eq!(req.get_param("X"), None);
    /// ```
    pub fn new() -> FcgiRequest {
        FcgiRequest {
            role: Role::Responder,
            params: Vec::new(),
            timeout: None,
            stderr_limit: None,
            on_stderr: None,
            on_record: None,
            parse_head: true,
            idempotent: None,
        }
    }

    /// Says whether this request may run twice without harm, which allows a [`Pool`] to
    /// send it again on another connection when it failed after it may have reached the
    /// application (the connection closed or timed out before any answer).
    ///
    /// Without this call the method decides: `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT` and
    /// `DELETE` in `REQUEST_METHOD` are idempotent (RFC 9110 9.2.2, as nginx's
    /// `fastcgi_next_upstream` without `non_idempotent`); any other method, or none, is not.
    /// A request that is not idempotent is sent at most once: the pool resends it only when
    /// the application cannot have seen it (see [`Error::may_have_run`]).
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::client::FcgiRequest;
    /// assert!(FcgiRequest::new().param("REQUEST_METHOD", "GET").is_idempotent());
    /// assert!(!FcgiRequest::new().param("REQUEST_METHOD", "POST").is_idempotent());
    /// assert!(FcgiRequest::new().param("REQUEST_METHOD", "POST").idempotent(true).is_idempotent());
    /// assert!(!FcgiRequest::new().param("REQUEST_METHOD", "GET").idempotent(false).is_idempotent());
    /// assert!(!FcgiRequest::new().is_idempotent());
    /// ```
    pub fn idempotent(mut self, yes: bool) -> FcgiRequest {
        self.idempotent = Some(yes);
        self
    }

    /// Whether the pool may send this request twice; see [`FcgiRequest::idempotent`].
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::client::FcgiRequest::new().param("REQUEST_METHOD", "HEAD");
    /// assert!(req.is_idempotent());
    /// ```
    pub fn is_idempotent(&self) -> bool {
        self.idempotent.unwrap_or_else(|| {
            self.get_param("REQUEST_METHOD")
                .is_some_and(|m| IDEMPOTENT_METHODS.contains(&m))
        })
    }

    /// Sets the role (`FCGI_RESPONDER` by default).
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::client::FcgiRequest::new().role(fcgi::protocol::Role::Authorizer);
    /// ```
    pub fn role(mut self, role: Role) -> FcgiRequest {
        self.role = role;
        self
    }

    /// Adds one param (names and values are bytes; they need not be UTF-8).
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::client::FcgiRequest::new().param("CONTENT_LENGTH", 5.to_string());
    /// assert_eq!(req.get_param("CONTENT_LENGTH"), Some(&b"5"[..]));
    /// ```
    pub fn param(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> FcgiRequest {
        self.params
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    /// Adds several params.
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::client::FcgiRequest::new().params([("A", "1"), ("B", "2")]);
    /// assert_eq!(req.get_param("B"), Some(&b"2"[..]));
    /// ```
    pub fn params<I, N, V>(mut self, pairs: I) -> FcgiRequest
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        for (n, v) in pairs {
            self = self.param(n, v);
        }
        self
    }

    /// The value of the first param named `name`.
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::client::FcgiRequest::new().param("A", "1").param("A", "2");
    /// assert_eq!(req.get_param("A"), Some(&b"1"[..]));
    /// ```
    pub fn get_param(&self, name: impl AsRef<[u8]>) -> Option<&[u8]> {
        let name = name.as_ref();
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &v[..])
    }

    /// Limits this whole request (overrides [`Config::request_timeout`]).
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::client::FcgiRequest::new().timeout(std::time::Duration::from_secs(2));
    /// ```
    pub fn timeout(mut self, limit: Duration) -> FcgiRequest {
        self.timeout = Some(limit);
        self
    }

    /// Stderr bytes to keep for this request (overrides [`Config::stderr_limit`]).
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::client::FcgiRequest::new().stderr_limit(1024);
    /// ```
    pub fn stderr_limit(mut self, bytes: usize) -> FcgiRequest {
        self.stderr_limit = Some(bytes);
        self
    }

    /// Passes stdout through untouched: the response's head is empty (status 200, no
    /// headers) and reading returns all of stdout, CGI head included, as `cgi-fcgi` does.
    /// Refusals such as `FCGI_OVERLOADED` then surface when reading.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use std::io::Read;
    /// use fcgi::client::{Config, Connection, FcgiRequest};
    /// let mut conn = Connection::connect(&"127.0.0.1:9000".parse()?, &Config::default())?;
    /// let mut raw = String::new();
    /// conn.send(FcgiRequest::new().without_head(), std::io::empty())?.read_to_string(&mut raw)?;
    /// assert!(raw.contains("\r\n\r\n") || raw.contains("\n\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn without_head(mut self) -> FcgiRequest {
        self.parse_head = false;
        self
    }

    /// Calls `f` with each piece of stderr as it arrives (in addition to the bounded buffer;
    /// set [`FcgiRequest::stderr_limit`] to 0 to keep none).
    ///
    /// # Example
    ///
    /// ```
    /// let req = fcgi::client::FcgiRequest::new()
    ///     .on_stderr(|bytes| eprint!("app: {}", String::from_utf8_lossy(bytes)));
    /// ```
    pub fn on_stderr(mut self, f: impl FnMut(&[u8]) + Send + 'static) -> FcgiRequest {
        self.on_stderr = Some(Box::new(f));
        self
    }

    /// Calls `f` with every record of this request as it is sent or received (header and
    /// content), for tracing (`fcgi -v` uses it). Only on an own connection; a request on a
    /// [`MuxConnection`] is not traced.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::client::{Direction, FcgiRequest};
    /// let req = FcgiRequest::new().on_record(|dir, header, content| {
    ///     let arrow = if dir == Direction::Sent { '>' } else { '<' };
    ///     eprintln!("{arrow} {:?} {} bytes", header.record_type, content.len());
    /// });
    /// ```
    pub fn on_record(
        mut self,
        f: impl FnMut(Direction, &Header, &[u8]) + Send + 'static,
    ) -> FcgiRequest {
        self.on_record = Some(Box::new(f));
        self
    }
}

/// Connects to `addr`, asks for the backend's limits with `FCGI_GET_VALUES` and closes the
/// connection (PHP-FPM closes it anyway after answering).
///
/// # Errors
///
/// As [`Connection::connect`] and [`Connection::get_values`].
///
/// # Example
///
/// ```no_run
/// let v = fcgi::client::get_values(&"127.0.0.1:9000".parse()?, &Default::default())?;
/// println!("{:?} {:?} {:?}", v.max_conns, v.max_reqs, v.mpxs_conns);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn get_values(addr: &Address, config: &Config) -> Result<BackendValues, Error> {
    Connection::connect(addr, config)?.get_values()
}

const _: fn() = || {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Connection>();
    send::<Response<'static>>();
    send_sync::<Pool>();
    send_sync::<MuxConnection>();
};
