//! The FastCGI wire protocol, with no I/O.
//!
//! This module owns every byte layout of the FastCGI 1.0 specification: the 8-byte record
//! header ([`Header`]), the discrete bodies ([`BeginRequestBody`], [`EndRequestBody`],
//! [`UnknownTypeBody`]), name-value pairs ([`ParamsDecoder`], [`encode_pair`]) and the
//! management variables of `FCGI_GET_VALUES`. It reads from byte slices and writes into
//! `Vec<u8>`; sockets, threads and request state are out of scope (see [`crate::server`]).
//!
//! Running out of input is never an error: decoders answer [`Status::Partial`] and consume
//! nothing, as `httparse` does. Errors ([`ProtocolError`]) are reserved for bytes that can
//! never become valid.
//!
//! # Example
//!
//! ```
//! use fcgi::protocol::{decode_record, encode_record, RecordType, Status};
//!
//! let mut wire = Vec::new();
//! encode_record(&mut wire, RecordType::Stdout, 1, b"Content-Type: text/plain\r\n\r\nhi");
//! match decode_record(&wire).unwrap() {
//!     Status::Complete((record, used)) => {
//!         assert_eq!(record.header.record_type, RecordType::Stdout);
//!         assert_eq!(record.content, b"Content-Type: text/plain\r\n\r\nhi");
//!         assert_eq!(used, wire.len());
//!     }
//!     Status::Partial(_) => unreachable!(),
//! }
//! ```
#![forbid(unsafe_code)]

mod body;
mod params;
mod record;

pub use body::{
    encode_get_values, encode_get_values_result, BeginRequestBody, EndRequestBody, UnknownTypeBody,
    MAX_CONNS, MAX_REQS, MPXS_CONNS,
};
pub use params::{encode_pair, encode_params, Pair, Params, ParamsDecoder, ParamsLimits};
pub use record::{
    decode_record, encode_end_request, encode_header_into, encode_record, encode_stream_end,
    Header, Record,
};

use std::fmt;

/// `FCGI_VERSION_1`, the only protocol version there is (spec 8).
pub const VERSION_1: u8 = 1;
/// `FCGI_HEADER_LEN`: bytes in a record header (spec 8).
pub const HEADER_LEN: usize = 8;
/// The largest `contentLength` a record can carry (spec 3.3: a 16-bit field).
pub const MAX_CONTENT_LEN: usize = 65535;
/// `FCGI_NULL_REQUEST_ID`: the request id of management records (spec 3.3).
pub const NULL_REQUEST_ID: u16 = 0;
/// `FCGI_KEEP_CONN`: the flag bit of `FCGI_BEGIN_REQUEST` asking the application to keep the
/// connection open after the request (spec 5.1).
pub const KEEP_CONN: u8 = 1;
/// `FCGI_LISTENSOCK_FILENO`: the descriptor on which a web server hands over the listening
/// socket (spec 2.2).
pub const LISTENSOCK_FILENO: i32 = 0;

/// The outcome of a decoder that may need more bytes.
///
/// Incomplete input is not an error (as in `httparse`): `Partial(n)` says at least `n` more
/// bytes are needed, and nothing was consumed.
///
/// # Example
///
/// ```
/// use fcgi::protocol::{decode_record, Status};
/// assert_eq!(decode_record(&[1, 6, 0]).unwrap(), Status::Partial(5));
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// A whole item was decoded.
    Complete(T),
    /// At least this many more bytes are needed.
    Partial(usize),
}

/// A record type (spec 8), with [`RecordType::Unknown`] for values this version does not
/// define, so an application can answer them with `FCGI_UNKNOWN_TYPE`.
///
/// # Example
///
/// ```
/// use fcgi::protocol::RecordType;
/// assert_eq!(RecordType::from(5), RecordType::Stdin);
/// assert_eq!(u8::from(RecordType::Unknown(42)), 42);
/// assert!(RecordType::GetValues.is_management());
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// `FCGI_BEGIN_REQUEST` (1): starts a request.
    BeginRequest,
    /// `FCGI_ABORT_REQUEST` (2): the web server aborts a request.
    AbortRequest,
    /// `FCGI_END_REQUEST` (3): the application ends a request.
    EndRequest,
    /// `FCGI_PARAMS` (4): the name-value pair stream of a request.
    Params,
    /// `FCGI_STDIN` (5): the request body stream.
    Stdin,
    /// `FCGI_STDOUT` (6): the response stream.
    Stdout,
    /// `FCGI_STDERR` (7): the error stream.
    Stderr,
    /// `FCGI_DATA` (8): the Filter role's file data stream.
    Data,
    /// `FCGI_GET_VALUES` (9): a management query.
    GetValues,
    /// `FCGI_GET_VALUES_RESULT` (10): the answer to a query.
    GetValuesResult,
    /// `FCGI_UNKNOWN_TYPE` (11): the answer to a management record of an unknown type.
    UnknownType,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for RecordType {
    fn from(v: u8) -> Self {
        match v {
            1 => RecordType::BeginRequest,
            2 => RecordType::AbortRequest,
            3 => RecordType::EndRequest,
            4 => RecordType::Params,
            5 => RecordType::Stdin,
            6 => RecordType::Stdout,
            7 => RecordType::Stderr,
            8 => RecordType::Data,
            9 => RecordType::GetValues,
            10 => RecordType::GetValuesResult,
            11 => RecordType::UnknownType,
            other => RecordType::Unknown(other),
        }
    }
}

impl From<RecordType> for u8 {
    fn from(t: RecordType) -> u8 {
        match t {
            RecordType::BeginRequest => 1,
            RecordType::AbortRequest => 2,
            RecordType::EndRequest => 3,
            RecordType::Params => 4,
            RecordType::Stdin => 5,
            RecordType::Stdout => 6,
            RecordType::Stderr => 7,
            RecordType::Data => 8,
            RecordType::GetValues => 9,
            RecordType::GetValuesResult => 10,
            RecordType::UnknownType => 11,
            RecordType::Unknown(v) => v,
        }
    }
}

impl RecordType {
    /// True for the types that form streams ended by an empty record (spec appendix A).
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::RecordType;
    /// assert!(RecordType::Stdin.is_stream());
    /// assert!(!RecordType::EndRequest.is_stream());
    /// ```
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            RecordType::Params
                | RecordType::Stdin
                | RecordType::Stdout
                | RecordType::Stderr
                | RecordType::Data
        )
    }

    /// True for the management types defined by the spec (`GET_VALUES`,
    /// `GET_VALUES_RESULT`, `UNKNOWN_TYPE`), which travel on request id 0 (spec 3.3, 4).
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::RecordType;
    /// assert!(RecordType::UnknownType.is_management());
    /// assert!(!RecordType::Params.is_management());
    /// ```
    pub fn is_management(self) -> bool {
        matches!(
            self,
            RecordType::GetValues | RecordType::GetValuesResult | RecordType::UnknownType
        )
    }
}

/// The role a web server asks the application to play (spec 6), with
/// [`Role::Unknown`] for values the spec does not define.
///
/// # Example
///
/// ```
/// use fcgi::protocol::Role;
/// assert_eq!(Role::from(3), Role::Filter);
/// assert_eq!(Role::Authorizer.name(), "AUTHORIZER");
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `FCGI_RESPONDER` (1): the CGI/1.1 role, answer an HTTP request.
    Responder,
    /// `FCGI_AUTHORIZER` (2): decide whether a request may proceed.
    Authorizer,
    /// `FCGI_FILTER` (3): transform the `FCGI_DATA` stream into a response.
    Filter,
    /// Any other value.
    Unknown(u16),
}

impl From<u16> for Role {
    fn from(v: u16) -> Self {
        match v {
            1 => Role::Responder,
            2 => Role::Authorizer,
            3 => Role::Filter,
            other => Role::Unknown(other),
        }
    }
}

impl From<Role> for u16 {
    fn from(r: Role) -> u16 {
        match r {
            Role::Responder => 1,
            Role::Authorizer => 2,
            Role::Filter => 3,
            Role::Unknown(v) => v,
        }
    }
}

impl Role {
    /// The name libfcgi puts in `FCGI_ROLE` (`RESPONDER`, `AUTHORIZER`, `FILTER`), or
    /// `UNKNOWN` for other values.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::protocol::Role::Responder.name(), "RESPONDER");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Role::Responder => "RESPONDER",
            Role::Authorizer => "AUTHORIZER",
            Role::Filter => "FILTER",
            Role::Unknown(_) => "UNKNOWN",
        }
    }
}

/// The `protocolStatus` of `FCGI_END_REQUEST` (spec 5.5).
///
/// # Example
///
/// ```
/// use fcgi::protocol::ProtocolStatus;
/// assert_eq!(u8::from(ProtocolStatus::Overloaded), 2);
/// assert_eq!(ProtocolStatus::from(9), ProtocolStatus::Unknown(9));
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolStatus {
    /// `FCGI_REQUEST_COMPLETE` (0): normal end of request.
    RequestComplete,
    /// `FCGI_CANT_MPX_CONN` (1): the application does not run concurrent requests on one
    /// connection.
    CantMpxConn,
    /// `FCGI_OVERLOADED` (2): the application ran out of a resource.
    Overloaded,
    /// `FCGI_UNKNOWN_ROLE` (3): the role is not one the application plays.
    UnknownRole,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for ProtocolStatus {
    fn from(v: u8) -> Self {
        match v {
            0 => ProtocolStatus::RequestComplete,
            1 => ProtocolStatus::CantMpxConn,
            2 => ProtocolStatus::Overloaded,
            3 => ProtocolStatus::UnknownRole,
            other => ProtocolStatus::Unknown(other),
        }
    }
}

impl From<ProtocolStatus> for u8 {
    fn from(s: ProtocolStatus) -> u8 {
        match s {
            ProtocolStatus::RequestComplete => 0,
            ProtocolStatus::CantMpxConn => 1,
            ProtocolStatus::Overloaded => 2,
            ProtocolStatus::UnknownRole => 3,
            ProtocolStatus::Unknown(v) => v,
        }
    }
}

/// Bytes that can never be a valid FastCGI message.
///
/// # Example
///
/// ```
/// use fcgi::protocol::{decode_record, ProtocolError};
/// let err = decode_record(&[2, 1, 0, 1, 0, 0, 0, 0]).unwrap_err();
/// assert_eq!(err, ProtocolError::BadVersion(2));
/// assert_eq!(err.to_string(), "unsupported FastCGI version 2 in record header");
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A record header whose version is not `FCGI_VERSION_1`.
    BadVersion(u8),
    /// A discrete record whose body does not have the size its type requires.
    BadBodyLength {
        /// The record type.
        record_type: u8,
        /// The length received.
        len: usize,
    },
    /// The name-value pairs would exceed the configured byte limit.
    ParamsTooLong {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// More name-value pairs than the configured limit.
    TooManyParams {
        /// The configured limit on the number of pairs.
        limit: usize,
    },
    /// A name-value pair stream ended in the middle of a pair.
    TruncatedParams,
    /// `FCGI_BEGIN_REQUEST` with the null request id.
    BeginWithNullId,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProtocolError::BadVersion(v) => {
                write!(f, "unsupported FastCGI version {v} in record header")
            }
            ProtocolError::BadBodyLength { record_type, len } => write!(
                f,
                "record of type {record_type} has a body of {len} bytes, not the size its type requires"
            ),
            ProtocolError::ParamsTooLong { limit } => {
                write!(f, "name-value pairs exceed the limit of {limit} bytes")
            }
            ProtocolError::TooManyParams { limit } => {
                write!(f, "more than {limit} name-value pairs")
            }
            ProtocolError::TruncatedParams => {
                write!(f, "name-value pair stream ended in the middle of a pair")
            }
            ProtocolError::BeginWithNullId => {
                write!(f, "FCGI_BEGIN_REQUEST with request id 0")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_type_round_trips_every_byte() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(RecordType::from(v)), v);
        }
        assert!(matches!(RecordType::from(0), RecordType::Unknown(0)));
        assert!(matches!(RecordType::from(12), RecordType::Unknown(12)));
    }

    #[test]
    fn role_and_status_round_trip() {
        for v in 0..=600u16 {
            assert_eq!(u16::from(Role::from(v)), v);
        }
        for v in 0..=255u8 {
            assert_eq!(u8::from(ProtocolStatus::from(v)), v);
        }
        assert_eq!(Role::from(0), Role::Unknown(0));
        assert_eq!(Role::Unknown(9).name(), "UNKNOWN");
    }

    #[test]
    fn classification_matches_spec_appendix_a() {
        let streams = [4u8, 5, 6, 7, 8];
        let mgmt = [9u8, 10, 11];
        for v in 1..=11u8 {
            let t = RecordType::from(v);
            assert_eq!(t.is_stream(), streams.contains(&v), "{t:?}");
            assert_eq!(t.is_management(), mgmt.contains(&v), "{t:?}");
        }
    }
}
