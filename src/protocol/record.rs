//! Record headers and whole records (spec 3.3).

use super::{
    EndRequestBody, ProtocolError, ProtocolStatus, RecordType, Status, HEADER_LEN, MAX_CONTENT_LEN,
    VERSION_1,
};

/// The fixed 8-byte prefix of every record (`FCGI_Header`, spec 3.3).
///
/// # Example
///
/// ```
/// use fcgi::protocol::{Header, RecordType};
/// let h = Header::new(RecordType::BeginRequest, 0x1234, 8);
/// assert_eq!(h.encode(), [1, 1, 0x12, 0x34, 0, 8, 0, 0]);
/// assert_eq!(Header::decode(&h.encode()).unwrap(), h);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The record type.
    pub record_type: RecordType,
    /// The request id; 0 for management records.
    pub request_id: u16,
    /// Bytes of content that follow the header.
    pub content_length: u16,
    /// Bytes of padding that follow the content, to be skipped.
    pub padding_length: u8,
}

impl Header {
    /// A version-1 header with no padding.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::{Header, RecordType};
    /// assert_eq!(Header::new(RecordType::Stdin, 1, 0).padding_length, 0);
    /// ```
    pub fn new(record_type: RecordType, request_id: u16, content_length: u16) -> Header {
        Header {
            record_type,
            request_id,
            content_length,
            padding_length: 0,
        }
    }

    /// The eight bytes of this header, version 1, reserved byte 0.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::{Header, RecordType};
    /// let mut h = Header::new(RecordType::Stdout, 1, 190);
    /// h.padding_length = 2;
    /// assert_eq!(h.encode(), [1, 6, 0, 1, 0, 190, 2, 0]);
    /// ```
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let id = self.request_id.to_be_bytes();
        let len = self.content_length.to_be_bytes();
        [
            VERSION_1,
            self.record_type.into(),
            id[0],
            id[1],
            len[0],
            len[1],
            self.padding_length,
            0,
        ]
    }

    /// Decodes eight header bytes.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadVersion`] if the version byte is not 1. Every type byte is
    /// accepted (unknown ones as [`RecordType::Unknown`]).
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::{Header, RecordType};
    /// let h = Header::decode(&[1, 5, 0, 1, 0xff, 0xff, 7, 0]).unwrap();
    /// assert_eq!((h.record_type, h.content_length, h.padding_length), (RecordType::Stdin, 65535, 7));
    /// ```
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, ProtocolError> {
        if bytes[0] != VERSION_1 {
            return Err(ProtocolError::BadVersion(bytes[0]));
        }
        Ok(Header {
            record_type: RecordType::from(bytes[1]),
            request_id: u16::from_be_bytes([bytes[2], bytes[3]]),
            content_length: u16::from_be_bytes([bytes[4], bytes[5]]),
            padding_length: bytes[6],
        })
    }

    /// Bytes of the whole record: header, content and padding.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::{Header, RecordType};
    /// let mut h = Header::new(RecordType::Stdout, 1, 10);
    /// h.padding_length = 6;
    /// assert_eq!(h.record_len(), 24);
    /// ```
    pub fn record_len(&self) -> usize {
        HEADER_LEN + self.content_length as usize + self.padding_length as usize
    }
}

/// A decoded record, borrowing its content from the input buffer.
///
/// # Example
///
/// ```
/// use fcgi::protocol::{decode_record, Status};
/// let Status::Complete((rec, _)) = decode_record(&[1, 5, 0, 1, 0, 2, 0, 0, b'h', b'i']).unwrap()
/// else { unreachable!() };
/// assert_eq!(rec.content, b"hi");
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The header.
    pub header: Header,
    /// The content bytes (padding excluded).
    pub content: &'a [u8],
}

/// Decodes one record from the front of `buf`.
///
/// Returns the record and the bytes it used (header, content and padding), or
/// [`Status::Partial`] with the number of bytes still missing; nothing is copied.
///
/// # Errors
///
/// [`ProtocolError::BadVersion`] as soon as the first byte is known to be wrong.
///
/// # Example
///
/// ```
/// use fcgi::protocol::{decode_record, Status};
/// let wire = [1, 6, 0, 1, 0, 3, 5, 0, b'a', b'b', b'c', 0, 0, 0, 0, 0];
/// let Status::Complete((rec, used)) = decode_record(&wire).unwrap() else { unreachable!() };
/// assert_eq!((rec.content, used), (&b"abc"[..], 16));
/// assert_eq!(decode_record(&wire[..15]).unwrap(), Status::Partial(1));
/// ```
pub fn decode_record(buf: &[u8]) -> Result<Status<(Record<'_>, usize)>, ProtocolError> {
    if let Some(&v) = buf.first() {
        if v != VERSION_1 {
            return Err(ProtocolError::BadVersion(v));
        }
    }
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Status::Partial(HEADER_LEN - buf.len()));
    };
    let header = Header::decode(head)?;
    let total = header.record_len();
    if buf.len() < total {
        return Ok(Status::Partial(total - buf.len()));
    }
    let content = &buf[HEADER_LEN..HEADER_LEN + header.content_length as usize];
    Ok(Status::Complete((Record { header, content }, total)))
}

/// Appends a header for `content_length` bytes of `record_type` to `out`.
///
/// # Example
///
/// ```
/// use fcgi::protocol::{encode_header_into, RecordType};
/// let mut out = Vec::new();
/// encode_header_into(&mut out, RecordType::Stderr, 3, 0);
/// assert_eq!(out, [1, 7, 0, 3, 0, 0, 0, 0]);
/// ```
pub fn encode_header_into(
    out: &mut Vec<u8>,
    record_type: RecordType,
    request_id: u16,
    content_length: u16,
) {
    out.extend_from_slice(&Header::new(record_type, request_id, content_length).encode());
}

/// Appends `content` to `out` as records of `record_type`, split into pieces of at most
/// 65535 bytes. Empty content appends nothing: use [`encode_stream_end`] to end a stream.
///
/// # Example
///
/// ```
/// use fcgi::protocol::{encode_record, RecordType};
/// let mut out = Vec::new();
/// encode_record(&mut out, RecordType::Stdout, 1, &vec![b'x'; 70000]);
/// assert_eq!(out.len(), 70000 + 2 * 8);
/// assert_eq!(&out[..8], &[1, 6, 0, 1, 0xff, 0xff, 0, 0]);
/// ```
pub fn encode_record(out: &mut Vec<u8>, record_type: RecordType, request_id: u16, content: &[u8]) {
    out.reserve(content.len() + HEADER_LEN * content.len().div_ceil(MAX_CONTENT_LEN));
    for piece in content.chunks(MAX_CONTENT_LEN) {
        encode_header_into(out, record_type, request_id, piece.len() as u16);
        out.extend_from_slice(piece);
    }
}

/// Appends the empty record that ends a stream of `record_type` (spec 3.3).
///
/// # Example
///
/// ```
/// use fcgi::protocol::{encode_stream_end, RecordType};
/// let mut out = Vec::new();
/// encode_stream_end(&mut out, RecordType::Stdout, 1);
/// assert_eq!(out, [1, 6, 0, 1, 0, 0, 0, 0]);
/// ```
pub fn encode_stream_end(out: &mut Vec<u8>, record_type: RecordType, request_id: u16) {
    encode_header_into(out, record_type, request_id, 0);
}

/// Appends an `FCGI_END_REQUEST` record (spec 5.5).
///
/// # Example
///
/// ```
/// use fcgi::protocol::{encode_end_request, ProtocolStatus};
/// let mut out = Vec::new();
/// encode_end_request(&mut out, 1, 0, ProtocolStatus::RequestComplete);
/// assert_eq!(out, [1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
/// ```
pub fn encode_end_request(
    out: &mut Vec<u8>,
    request_id: u16,
    app_status: u32,
    protocol_status: ProtocolStatus,
) {
    encode_header_into(out, RecordType::EndRequest, request_id, 8);
    out.extend_from_slice(
        &EndRequestBody {
            app_status,
            protocol_status,
        }
        .encode(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden bytes in the style of h2o's unit test.
    #[test]
    fn golden_begin_request_header() {
        let h = Header::new(RecordType::BeginRequest, 0x1234, 8);
        assert_eq!(h.encode(), *b"\x01\x01\x12\x34\x00\x08\x00\x00");
    }

    #[test]
    fn decode_every_content_length_boundary_and_padding() {
        for len in [0usize, 1, 127, 128, 255, 256, 8184, 65534, 65535] {
            for pad in 0..=7u8 {
                let mut h = Header::new(RecordType::Stdin, 7, len as u16);
                h.padding_length = pad;
                let mut wire = h.encode().to_vec();
                wire.extend((0..len).map(|i| i as u8));
                wire.extend(std::iter::repeat_n(0xee, pad as usize));
                wire.extend_from_slice(b"next");
                let Status::Complete((rec, used)) = decode_record(&wire).unwrap() else {
                    panic!("complete record reported partial");
                };
                assert_eq!(used, 8 + len + pad as usize);
                assert_eq!(rec.content.len(), len);
                assert_eq!(rec.header, h);
                assert_eq!(&wire[used..], b"next");
                // Every strict prefix is partial, with the exact count missing.
                for cut in 0..used {
                    match decode_record(&wire[..cut]).unwrap() {
                        Status::Partial(n) if cut < 8 => assert_eq!(n, 8 - cut),
                        Status::Partial(n) => assert_eq!(n, used - cut),
                        Status::Complete(_) => panic!("prefix {cut} of {used} decoded"),
                    }
                }
            }
        }
    }

    #[test]
    fn bad_version_is_reported_from_the_first_byte() {
        assert_eq!(decode_record(&[0]), Err(ProtocolError::BadVersion(0)));
        assert_eq!(
            decode_record(b"GET / HTTP/1.1\r\n"),
            Err(ProtocolError::BadVersion(b'G'))
        );
        assert_eq!(decode_record(&[]), Ok(Status::Partial(8)));
    }

    #[test]
    fn encode_splits_at_65535_and_keeps_order() {
        for len in [1usize, 65535, 65536, 131070, 131071, 200_000] {
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode_record(&mut out, RecordType::Stdout, 9, &content);
            let mut back = Vec::new();
            let mut rest = &out[..];
            let mut records = 0;
            while !rest.is_empty() {
                let Status::Complete((rec, used)) = decode_record(rest).unwrap() else {
                    panic!("partial");
                };
                assert!(rec.header.content_length > 0);
                assert_eq!(rec.header.request_id, 9);
                back.extend_from_slice(rec.content);
                rest = &rest[used..];
                records += 1;
            }
            assert_eq!(back, content);
            assert_eq!(records, len.div_ceil(65535));
        }
        let mut out = Vec::new();
        encode_record(&mut out, RecordType::Stdout, 1, b"");
        assert!(out.is_empty());
    }

    #[test]
    fn golden_end_request_overloaded() {
        let mut out = Vec::new();
        encode_end_request(&mut out, 0x0102, 0xdeadbeef, ProtocolStatus::Overloaded);
        assert_eq!(
            out,
            b"\x01\x03\x01\x02\x00\x08\x00\x00\xde\xad\xbe\xef\x02\x00\x00\x00"
        );
    }
}
