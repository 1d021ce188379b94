//! Bodies of the discrete records and of the `FCGI_GET_VALUES` exchange (spec 4, 5).

use super::{
    encode_pair, encode_record, ProtocolError, ProtocolStatus, RecordType, Role, KEEP_CONN,
    NULL_REQUEST_ID,
};

/// `FCGI_MAX_CONNS`: how many transport connections the application accepts (spec 4.1).
pub const MAX_CONNS: &str = "FCGI_MAX_CONNS";
/// `FCGI_MAX_REQS`: how many concurrent requests the application accepts (spec 4.1).
pub const MAX_REQS: &str = "FCGI_MAX_REQS";
/// `FCGI_MPXS_CONNS`: "1" if the application multiplexes connections, else "0" (spec 4.1).
pub const MPXS_CONNS: &str = "FCGI_MPXS_CONNS";

/// `FCGI_BeginRequestBody` (spec 5.1).
///
/// # Example
///
/// ```
/// use fcgi::protocol::{BeginRequestBody, Role};
/// let b = BeginRequestBody { role: Role::Responder, flags: fcgi::protocol::KEEP_CONN };
/// assert_eq!(b.encode(), [0, 1, 1, 0, 0, 0, 0, 0]);
/// assert!(BeginRequestBody::decode(&b.encode()).unwrap().keep_conn());
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BeginRequestBody {
    /// The role the web server asks for.
    pub role: Role,
    /// The flags byte; only [`KEEP_CONN`] is defined.
    pub flags: u8,
}

impl BeginRequestBody {
    /// The 8 body bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::{BeginRequestBody, Role};
    /// assert_eq!(BeginRequestBody { role: Role::Filter, flags: 0 }.encode()[1], 3);
    /// ```
    pub fn encode(&self) -> [u8; 8] {
        let r = u16::from(self.role).to_be_bytes();
        [r[0], r[1], self.flags, 0, 0, 0, 0, 0]
    }

    /// Decodes a body, which must be exactly 8 bytes.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadBodyLength`] for any other length.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::{BeginRequestBody, Role};
    /// assert_eq!(BeginRequestBody::decode(&[0, 2, 0, 0, 0, 0, 0, 0]).unwrap().role, Role::Authorizer);
    /// assert!(BeginRequestBody::decode(&[0, 1]).is_err());
    /// ```
    pub fn decode(content: &[u8]) -> Result<BeginRequestBody, ProtocolError> {
        let b: &[u8; 8] = content
            .try_into()
            .map_err(|_| ProtocolError::BadBodyLength {
                record_type: RecordType::BeginRequest.into(),
                len: content.len(),
            })?;
        Ok(BeginRequestBody {
            role: Role::from(u16::from_be_bytes([b[0], b[1]])),
            flags: b[2],
        })
    }

    /// Whether the web server asked to keep the connection open (`FCGI_KEEP_CONN`).
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::{BeginRequestBody, Role};
    /// assert!(!BeginRequestBody { role: Role::Responder, flags: 0 }.keep_conn());
    /// ```
    pub fn keep_conn(&self) -> bool {
        self.flags & KEEP_CONN != 0
    }
}

/// `FCGI_EndRequestBody` (spec 5.5).
///
/// # Example
///
/// ```
/// use fcgi::protocol::{EndRequestBody, ProtocolStatus};
/// let b = EndRequestBody { app_status: 1, protocol_status: ProtocolStatus::UnknownRole };
/// assert_eq!(EndRequestBody::decode(&b.encode()).unwrap(), b);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EndRequestBody {
    /// The application's status, as a CGI program's exit code.
    pub app_status: u32,
    /// How the request ended at the protocol level.
    pub protocol_status: ProtocolStatus,
}

impl EndRequestBody {
    /// The 8 body bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::{EndRequestBody, ProtocolStatus};
    /// let b = EndRequestBody { app_status: 0x01020304, protocol_status: ProtocolStatus::RequestComplete };
    /// assert_eq!(b.encode(), [1, 2, 3, 4, 0, 0, 0, 0]);
    /// ```
    pub fn encode(&self) -> [u8; 8] {
        let s = self.app_status.to_be_bytes();
        [s[0], s[1], s[2], s[3], self.protocol_status.into(), 0, 0, 0]
    }

    /// Decodes a body, which must be exactly 8 bytes.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadBodyLength`] for any other length.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::EndRequestBody;
    /// assert!(EndRequestBody::decode(&[0; 7]).is_err());
    /// ```
    pub fn decode(content: &[u8]) -> Result<EndRequestBody, ProtocolError> {
        let b: &[u8; 8] = content
            .try_into()
            .map_err(|_| ProtocolError::BadBodyLength {
                record_type: RecordType::EndRequest.into(),
                len: content.len(),
            })?;
        Ok(EndRequestBody {
            app_status: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            protocol_status: ProtocolStatus::from(b[4]),
        })
    }
}

/// `FCGI_UnknownTypeBody` (spec 4.2): names the management type that was not understood.
///
/// # Example
///
/// ```
/// use fcgi::protocol::{RecordType, UnknownTypeBody};
/// let b = UnknownTypeBody { record_type: RecordType::Unknown(200) };
/// assert_eq!(b.encode(), [200, 0, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(UnknownTypeBody::decode(&b.encode()).unwrap(), b);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UnknownTypeBody {
    /// The type that was not understood.
    pub record_type: RecordType,
}

impl UnknownTypeBody {
    /// The 8 body bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::{RecordType, UnknownTypeBody};
    /// assert_eq!(UnknownTypeBody { record_type: RecordType::Stdin }.encode()[0], 5);
    /// ```
    pub fn encode(&self) -> [u8; 8] {
        [self.record_type.into(), 0, 0, 0, 0, 0, 0, 0]
    }

    /// Decodes a body, which must be exactly 8 bytes.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadBodyLength`] for any other length.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::UnknownTypeBody;
    /// assert!(UnknownTypeBody::decode(&[1]).is_err());
    /// ```
    pub fn decode(content: &[u8]) -> Result<UnknownTypeBody, ProtocolError> {
        let b: &[u8; 8] = content
            .try_into()
            .map_err(|_| ProtocolError::BadBodyLength {
                record_type: RecordType::UnknownType.into(),
                len: content.len(),
            })?;
        Ok(UnknownTypeBody {
            record_type: RecordType::from(b[0]),
        })
    }
}

/// Appends an `FCGI_GET_VALUES` record asking for `names` (pairs with empty values).
///
/// # Example
///
/// ```
/// use fcgi::protocol::{encode_get_values, MPXS_CONNS};
/// let mut out = Vec::new();
/// encode_get_values(&mut out, &[MPXS_CONNS]);
/// assert_eq!(&out[..8], &[1, 9, 0, 0, 0, 17, 0, 0]);
/// assert_eq!(&out[8..], b"\x0f\x00FCGI_MPXS_CONNS");
/// ```
pub fn encode_get_values(out: &mut Vec<u8>, names: &[&str]) {
    let mut body = Vec::new();
    for name in names {
        encode_pair(&mut body, name.as_bytes(), b"");
    }
    encode_record(out, RecordType::GetValues, NULL_REQUEST_ID, &body);
}

/// Appends an `FCGI_GET_VALUES_RESULT` record carrying `pairs`.
///
/// A reply that would not fit one record (65535 bytes) is cut at the last whole pair, since
/// the spec defines the answer as a single record.
///
/// # Example
///
/// ```
/// use fcgi::protocol::{encode_get_values_result, MAX_REQS};
/// let mut out = Vec::new();
/// encode_get_values_result(&mut out, &[(MAX_REQS, "4")]);
/// assert_eq!(&out[8..], b"\x0d\x01FCGI_MAX_REQS4");
/// ```
pub fn encode_get_values_result(out: &mut Vec<u8>, pairs: &[(&str, &str)]) {
    let mut body = Vec::new();
    for (name, value) in pairs {
        let before = body.len();
        encode_pair(&mut body, name.as_bytes(), value.as_bytes());
        if body.len() > super::MAX_CONTENT_LEN {
            body.truncate(before);
            break;
        }
    }
    super::encode_header_into(
        out,
        RecordType::GetValuesResult,
        NULL_REQUEST_ID,
        body.len() as u16,
    );
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode_record, ParamsDecoder, ParamsLimits, Status};

    #[test]
    fn begin_body_golden_and_lengths() {
        let b = BeginRequestBody {
            role: Role::Responder,
            flags: 0,
        };
        assert_eq!(b.encode(), *b"\x00\x01\x00\x00\x00\x00\x00\x00");
        for len in [0usize, 7, 9, 16] {
            assert_eq!(
                BeginRequestBody::decode(&vec![0; len]),
                Err(ProtocolError::BadBodyLength {
                    record_type: 1,
                    len
                })
            );
        }
        let unknown = BeginRequestBody::decode(&[0xff, 0xfe, 0xff, 1, 1, 1, 1, 1]).unwrap();
        assert_eq!(unknown.role, Role::Unknown(0xfffe));
        assert!(unknown.keep_conn());
    }

    #[test]
    fn get_values_result_round_trips_through_the_params_decoder() {
        let mut out = Vec::new();
        encode_get_values_result(&mut out, &[(MAX_CONNS, "100"), (MPXS_CONNS, "0")]);
        let Status::Complete((rec, used)) = decode_record(&out).unwrap() else {
            panic!()
        };
        assert_eq!(used, out.len());
        assert_eq!(rec.header.record_type, RecordType::GetValuesResult);
        assert_eq!(rec.header.request_id, 0);
        let mut d = ParamsDecoder::new(ParamsLimits::default());
        d.feed(rec.content).unwrap();
        let params = d.finish().unwrap();
        let got: Vec<_> = params.iter().map(|p| (p.name, p.value)).collect();
        assert_eq!(
            got,
            vec![
                (&b"FCGI_MAX_CONNS"[..], &b"100"[..]),
                (&b"FCGI_MPXS_CONNS"[..], &b"0"[..])
            ]
        );
    }

    #[test]
    fn get_values_result_never_exceeds_one_record() {
        let big = "v".repeat(40_000);
        let mut out = Vec::new();
        encode_get_values_result(&mut out, &[("A", &big), ("B", &big), ("C", "1")]);
        let Status::Complete((rec, used)) = decode_record(&out).unwrap() else {
            panic!()
        };
        assert_eq!(used, out.len());
        assert!(rec.content.len() <= 65535);
        assert!(rec.content.starts_with(b"\x01\x80\x00\x9c\x40A"));
    }
}
