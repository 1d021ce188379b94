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
/// let e = Error::Timeout(TimeoutKind::Idle);
/// assert_eq!(e.to_string(), "backend sent nothing within the idle read timeout");
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Connecting to the backend.
    Connect,
    /// No byte could be read or written for the idle timeout.
    Idle,
    /// The whole request (sending and receiving) took longer than its limit.
    Request,
    /// Waiting for a free connection in a [`super::Pool`].
    PoolWait,
}

/// Everything that can go wrong talking to a FastCGI backend.
///
/// `Display` says whose fault it is: the backend's (it refused, closed early or sent bytes
/// that are not FastCGI), the network's, or the caller's.
///
/// # Example
///
/// ```
/// use fcgi::client::Error;
/// let e = Error::Overloaded { app_status: 0 };
/// assert!(e.to_string().contains("FCGI_OVERLOADED"));
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
    /// A socket error while talking to the backend.
    Io(io::Error),
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
    /// True when the request was refused or failed in a way that another attempt (on another
    /// connection or backend) may fix: overload, a refused connection, a closed backend.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::client::Error;
    /// assert!(!Error::UnknownRole.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Overloaded { .. }
                | Error::CantMpxConn
                | Error::NoBackend
                | Error::Timeout(TimeoutKind::Connect | TimeoutKind::PoolWait)
        )
    }

    /// Turns this error into an `io::Error` of a fitting kind, keeping it as the source
    /// (what [`super::Response`]'s `Read` returns).
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::client::{Error, TimeoutKind};
    /// let io = Error::Timeout(TimeoutKind::Idle).into_io();
    /// assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    /// assert!(io.get_ref().unwrap().downcast_ref::<Error>().is_some());
    /// ```
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            Error::Io(e) | Error::Body(e) => return io::Error::new(e.kind(), self),
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
            Error::Io(e) => write!(f, "I/O error talking to the FastCGI backend: {e}"),
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
                write!(f, "connecting to the backend timed out")
            }
            Error::Timeout(TimeoutKind::Idle) => {
                write!(f, "backend sent nothing within the idle read timeout")
            }
            Error::Timeout(TimeoutKind::Request) => {
                write!(f, "backend did not finish the request within its time limit")
            }
            Error::Timeout(TimeoutKind::PoolWait) => {
                write!(f, "no pooled connection became free within the wait timeout")
            }
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
            Error::Io(e) | Error::Body(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::BadHead(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}
