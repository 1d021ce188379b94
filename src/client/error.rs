//! The client's error type.

use std::{fmt, io};

use super::HeadError;
use crate::protocol::ProtocolError;

/// Which time limit ran out.
///
/// # Example
///
/// ```
/// use fcgi::client::{Error, TimeoutKind};
/// let e = Error::Timeout(TimeoutKind::Io);
/// assert_eq!(
///     e.to_string(),
///     "timed out: the backend neither sent nor took a byte within the I/O timeout"
/// );
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Connecting to the backend ([`super::Config::connect_timeout`]).
    Connect,
    /// No byte could be read or written for [`super::Config::io_timeout`].
    Io,
    /// The whole request (sending and receiving) took longer than its limit.
    Request,
    /// Waiting for a free connection in a [`super::Pool`].
    PoolWait,
}

#[allow(non_upper_case_globals)]
impl TimeoutKind {
    /// The former name of [`TimeoutKind::Io`].
    ///
    /// # Example
    ///
    /// ```
    /// #![allow(deprecated)]
    /// use fcgi::client::TimeoutKind;
    /// assert_eq!(TimeoutKind::Idle, TimeoutKind::Io);
    /// ```
    #[deprecated(note = "renamed TimeoutKind::Io (the limit is Config::io_timeout)")]
    pub const Idle: TimeoutKind = TimeoutKind::Io;
}

/// Everything that can go wrong talking to a FastCGI backend.
///
/// `Display` says what happened and whose fault it is: the backend's (it refused, closed
/// early or sent bytes that are not FastCGI), the network's, or the caller's.
/// [`Error::may_have_run`] says whether the application may have seen the request, which
/// decides whether sending it again is safe.
///
/// # Example
///
/// ```
/// use fcgi::client::Error;
/// let e = Error::Overloaded { app_status: 0 };
/// assert!(e.to_string().contains("FCGI_OVERLOADED"));
/// assert!(!e.may_have_run());
/// assert!(e.is_retryable());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The backend could not be reached.
    Connect {
        /// The address tried.
        addr: String,
        /// The cause.
        source: io::Error,
    },
    /// A socket error while talking to the backend, after some of the request went out.
    Io(io::Error),
    /// The connection failed before any byte of the request went out (a kept connection the
    /// backend had closed, or a write refused at once): the application cannot have seen
    /// the request.
    NotSent(io::Error),
    /// Reading the request body (the caller's `Read`) failed.
    Body(io::Error),
    /// The backend refused the request with `FCGI_OVERLOADED`.
    Overloaded {
        /// The application status it sent along.
        app_status: u32,
    },
    /// The backend refused a second concurrent request on one connection
    /// (`FCGI_CANT_MPX_CONN`).
    CantMpxConn,
    /// The backend does not play the requested role (`FCGI_UNKNOWN_ROLE`).
    UnknownRole,
    /// The backend ended the request with a protocol status the spec does not define.
    UnknownProtocolStatus(u8),
    /// The backend closed the connection before `FCGI_END_REQUEST`.
    BackendClosed {
        /// Bytes of stdout received for the request before the close.
        stdout_bytes: u64,
    },
    /// The backend sent bytes that are not a valid FastCGI record.
    Protocol(ProtocolError),
    /// The backend sent a record that has no place here (wrong request id or type).
    UnexpectedRecord {
        /// The record type byte.
        record_type: u8,
        /// The record's request id.
        request_id: u16,
        /// The request id in progress (0 when none).
        expected_id: u16,
    },
    /// The application's stdout did not start with a valid CGI response head.
    BadHead(HeadError),
    /// The stdout ended (`FCGI_END_REQUEST`) before the empty line ending the head.
    IncompleteHead,
    /// The CGI response head was longer than the configured limit.
    HeadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A time limit ran out.
    Timeout(TimeoutKind),
    /// Every backend of the pool is marked down.
    NoBackend,
    /// The connection cannot be used: an earlier request on it failed or is unfinished.
    ConnectionUnusable,
}

impl Error {
    /// False when the application cannot have seen the request: the connection was refused
    /// or never made, nothing of the request went out ([`Error::NotSent`]), no connection
    /// was free, or the backend refused it in `FCGI_END_REQUEST` (`FCGI_OVERLOADED`,
    /// `FCGI_CANT_MPX_CONN`, `FCGI_UNKNOWN_ROLE`: spec 5.5, the request was not run). True
    /// for everything else, where some of the request was sent: the application may have
    /// run it, even if nothing came back (a worker killed after reading a request leaves
    /// exactly this trace).
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::client::{Error, TimeoutKind};
    /// assert!(Error::BackendClosed { stdout_bytes: 0 }.may_have_run());
    /// assert!(Error::Timeout(TimeoutKind::Io).may_have_run());
    /// assert!(!Error::Timeout(TimeoutKind::Connect).may_have_run());
    /// ```
    pub fn may_have_run(&self) -> bool {
        !matches!(
            self,
            Error::Connect { .. }
                | Error::NotSent(_)
                | Error::Overloaded { .. }
                | Error::CantMpxConn
                | Error::UnknownRole
                | Error::NoBackend
                | Error::ConnectionUnusable
                | Error::Timeout(TimeoutKind::Connect | TimeoutKind::PoolWait)
        )
    }

    /// True when sending the same request again (on another connection or backend) is safe
    /// and may succeed: the application cannot have seen it ([`Error::may_have_run`] is
    /// false) and the cause may pass (a refused or lost connection, overload, no free
    /// connection). A request that may have run is never retryable by this rule; the
    /// caller may still resend one it knows to be idempotent.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::client::Error;
    /// assert!(!Error::UnknownRole.is_retryable());
    /// assert!(!Error::BackendClosed { stdout_bytes: 0 }.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        !self.may_have_run() && !matches!(self, Error::UnknownRole | Error::ConnectionUnusable)
    }

    /// The client error inside an `io::Error` returned by reading a [`super::Response`],
    /// if it carries one; see also `Error::from(io_error)`, which unwraps it by value.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::client::{Error, TimeoutKind};
    /// let io = Error::Timeout(TimeoutKind::Io).into_io();
    /// assert!(matches!(Error::in_io(&io), Some(Error::Timeout(TimeoutKind::Io))));
    /// assert!(Error::in_io(&std::io::Error::other("x")).is_none());
    /// ```
    pub fn in_io(e: &io::Error) -> Option<&Error> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
    }

    /// Turns this error into an `io::Error` of a fitting kind, keeping it as the source
    /// (what [`super::Response`]'s `Read` returns).
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::client::{Error, TimeoutKind};
    /// let io = Error::Timeout(TimeoutKind::Io).into_io();
    /// assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    /// assert!(io.get_ref().unwrap().downcast_ref::<Error>().is_some());
    /// ```
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            Error::Io(e) | Error::Body(e) | Error::NotSent(e) => {
                return io::Error::new(e.kind(), self)
            }
            Error::Connect { source, .. } => source.kind(),
            Error::Timeout(_) => io::ErrorKind::TimedOut,
            Error::BackendClosed { .. } => io::ErrorKind::UnexpectedEof,
            Error::Protocol(_) | Error::UnexpectedRecord { .. } => io::ErrorKind::InvalidData,
            Error::Overloaded { .. } | Error::CantMpxConn | Error::NoBackend => {
                io::ErrorKind::ConnectionRefused
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { addr, source } => {
                write!(f, "cannot connect to FastCGI backend {addr}: {source}")
            }
            Error::Io(e) => write!(f, "connection to the FastCGI backend failed: {e}"),
            Error::NotSent(e) => write!(
                f,
                "connection to the FastCGI backend failed before the request was sent: {e}"
            ),
            Error::Body(e) => write!(f, "reading the request body failed: {e}"),
            Error::Overloaded { app_status } => write!(
                f,
                "backend refused the request: FCGI_OVERLOADED (app status {app_status})"
            ),
            Error::CantMpxConn => write!(
                f,
                "backend refused a concurrent request on one connection: FCGI_CANT_MPX_CONN"
            ),
            Error::UnknownRole => {
                write!(f, "backend does not play this role: FCGI_UNKNOWN_ROLE")
            }
            Error::UnknownProtocolStatus(s) => write!(
                f,
                "backend ended the request with undefined protocol status {s}"
            ),
            Error::BackendClosed { stdout_bytes } => write!(
                f,
                "backend closed the connection before FCGI_END_REQUEST (after {stdout_bytes} bytes of stdout)"
            ),
            Error::Protocol(e) => write!(f, "backend sent a malformed record: {e}"),
            Error::UnexpectedRecord {
                record_type,
                request_id,
                expected_id,
            } => write!(
                f,
                "backend sent a record of type {record_type} for request id {request_id} while request {expected_id} was in progress"
            ),
            Error::BadHead(e) => write!(f, "backend sent a bad CGI response head: {e}"),
            Error::IncompleteHead => write!(
                f,
                "backend ended the request before the end of the CGI response head"
            ),
            Error::HeadTooLarge { limit } => write!(
                f,
                "backend's CGI response head is longer than the limit of {limit} bytes"
            ),
            Error::Timeout(TimeoutKind::Connect) => {
                write!(f, "timed out connecting to the backend")
            }
            Error::Timeout(TimeoutKind::Io) => write!(
                f,
                "timed out: the backend neither sent nor took a byte within the I/O timeout"
            ),
            Error::Timeout(TimeoutKind::Request) => write!(
                f,
                "timed out: the backend did not finish the request within its time limit"
            ),
            Error::Timeout(TimeoutKind::PoolWait) => write!(
                f,
                "timed out waiting for a free pooled connection (all in use)"
            ),
            Error::NoBackend => write!(f, "every backend of the pool is marked down"),
            Error::ConnectionUnusable => write!(
                f,
                "connection is unusable after an earlier failed or unfinished request"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(source),
            Error::Io(e) | Error::Body(e) | Error::NotSent(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::BadHead(e) => Some(e),
            _ => None,
        }
    }
}

/// An `io::Error` that carries a client [`Error`] (what reading a [`super::Response`]
/// returns) gives that error back; any other becomes [`Error::Io`].
///
/// # Example
///
/// ```
/// use fcgi::client::{Error, TimeoutKind};
/// let io = Error::Timeout(TimeoutKind::Request).into_io();
/// assert!(matches!(Error::from(io), Error::Timeout(TimeoutKind::Request)));
/// assert!(matches!(Error::from(std::io::Error::other("x")), Error::Io(_)));
/// ```
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        if e.get_ref().is_none() {
            return Error::Io(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(err)) => *err,
            Some(Err(other)) => Error::Io(io::Error::new(kind, other)),
            None => Error::Io(io::Error::from(kind)),
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}
