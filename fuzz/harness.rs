//! What the fuzz targets check, shared with `tests/protocol_regress.rs` so that every saved
//! input replays through exactly the same code on stable Rust.
//!
//! Each function takes arbitrary bytes and panics only on a codec bug: a panic inside the
//! codec, or a decoded value that contradicts the bytes it came from.
#![allow(dead_code)]

use fcgi::protocol::{
    decode_record, encode_pair, BeginRequestBody, EndRequestBody, Header, ParamsDecoder,
    ParamsLimits, ProtocolError, RecordType, Status, UnknownTypeBody, HEADER_LEN,
};

/// `record`: walks `data` as a connection would, one record after another. PARAMS, GET_VALUES
/// and GET_VALUES_RESULT contents go through a [`ParamsDecoder`] (an empty record ends the
/// stream), the discrete bodies through their decoders.
pub fn record(data: &[u8]) {
    let limits = ParamsLimits {
        max_bytes: 4096,
        max_pairs: 64,
    };
    let mut pairs = PairStream::new(limits);
    let mut rest = data;
    loop {
        match decode_record(rest) {
            Err(e) => {
                assert_eq!(e, ProtocolError::BadVersion(rest[0]));
                return;
            }
            Ok(Status::Partial(n)) => {
                let missing = match rest.first_chunk::<HEADER_LEN>() {
                    Some(head) => Header::decode(head).unwrap().record_len() - rest.len(),
                    None => HEADER_LEN - rest.len(),
                };
                assert!(n > 0);
                assert_eq!(n, missing);
                return;
            }
            Ok(Status::Complete((rec, used))) => {
                let h = rec.header;
                assert_eq!(used, h.record_len());
                assert!(used <= rest.len());
                assert_eq!(
                    rec.content,
                    &rest[HEADER_LEN..][..h.content_length as usize]
                );
                assert_eq!(h.encode()[..7], rest[..7]);
                match h.record_type {
                    RecordType::BeginRequest | RecordType::EndRequest | RecordType::UnknownType => {
                        bodies(rec.content)
                    }
                    RecordType::Params | RecordType::GetValues | RecordType::GetValuesResult => {
                        pairs.feed(rec.content);
                        if rec.content.is_empty() {
                            pairs.finish();
                        }
                    }
                    _ => {}
                }
                rest = &rest[used..];
            }
        }
    }
}

/// `params`: `data[0]` and `data[1]` pick small limits; the rest is a sequence of chunks, each
/// a length byte and then up to that many bytes, fed to one [`ParamsDecoder`].
pub fn params(data: &[u8]) {
    let [a, b, chunks @ ..] = data else {
        return;
    };
    let mut rest = chunks;
    let mut pairs = PairStream::new(ParamsLimits {
        max_bytes: usize::from(*a) * 64,
        max_pairs: usize::from(*b % 64),
    });
    while let [n, tail @ ..] = rest {
        let (chunk, after) = tail.split_at(usize::from(*n).min(tail.len()));
        pairs.feed(chunk);
        rest = after;
    }
    pairs.finish();
    // The decoder is reusable after finish.
    if pairs.limits.max_pairs >= 1 && pairs.limits.max_bytes >= 2 {
        let mut wire = Vec::new();
        encode_pair(&mut wire, b"N", b"V");
        pairs.feed(&wire);
        let params = pairs.finish().expect("a fresh stream after finish");
        assert_eq!(params, vec![(b"N".to_vec(), b"V".to_vec())]);
    }
}

/// `bodies`: the three fixed-size body decoders on the same bytes.
pub fn bodies(data: &[u8]) {
    let wrong = |record_type: u8| ProtocolError::BadBodyLength {
        record_type,
        len: data.len(),
    };
    match BeginRequestBody::decode(data) {
        Ok(b) => {
            assert_eq!(b.encode()[..3], data[..3]);
            assert_eq!(BeginRequestBody::decode(&b.encode()), Ok(b));
        }
        Err(e) => assert!(data.len() != 8 && e == wrong(1)),
    }
    match EndRequestBody::decode(data) {
        Ok(b) => {
            assert_eq!(b.encode()[..5], data[..5]);
            assert_eq!(EndRequestBody::decode(&b.encode()), Ok(b));
        }
        Err(e) => assert!(data.len() != 8 && e == wrong(3)),
    }
    match UnknownTypeBody::decode(data) {
        Ok(b) => {
            assert_eq!(b.encode()[0], data[0]);
            assert_eq!(UnknownTypeBody::decode(&b.encode()), Ok(b));
        }
        Err(e) => assert!(data.len() != 8 && e == wrong(11)),
    }
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A [`ParamsDecoder`] plus the invariants every feed must keep.
struct PairStream {
    limits: ParamsLimits,
    decoder: ParamsDecoder,
    fed: usize,
    failed: bool,
}

impl PairStream {
    fn new(limits: ParamsLimits) -> PairStream {
        PairStream {
            limits,
            decoder: ParamsDecoder::new(limits),
            fed: 0,
            failed: false,
        }
    }

    /// Feeds `chunk`, also after an error: a caller that keeps going must not crash the codec,
    /// and a refused stream stays refused.
    fn feed(&mut self, chunk: &[u8]) {
        self.fed += chunk.len();
        match self.decoder.feed(chunk) {
            Ok(()) => assert!(!self.failed, "a refused stream accepted more bytes"),
            Err(e) => {
                assert!(matches!(
                    e,
                    ProtocolError::ParamsTooLong { .. } | ProtocolError::TooManyParams { .. }
                ));
                self.failed = true;
            }
        }
        self.check(self.decoder.pairs().map(|p| p.name.len() + p.value.len()));
    }

    /// Ends the stream; on success, the pairs re-encode and decode to themselves.
    fn finish(&mut self) -> Option<Pairs> {
        let failed = std::mem::take(&mut self.failed);
        let result = self.decoder.finish();
        self.fed = 0;
        let params = match result {
            Ok(params) => params,
            Err(_) => return None,
        };
        assert!(!failed, "finish succeeded after a refused feed");
        assert_eq!(
            params.byte_len(),
            params.iter().map(|p| p.name.len() + p.value.len()).sum()
        );
        let pairs: Pairs = params
            .iter()
            .map(|p| (p.name.to_vec(), p.value.to_vec()))
            .collect();
        let mut wire = Vec::new();
        for (n, v) in &pairs {
            encode_pair(&mut wire, n, v);
        }
        let mut again = ParamsDecoder::new(self.limits);
        again
            .feed(&wire)
            .expect("re-encoded pairs within the same limits");
        let back = again.finish().expect("re-encoded pairs are whole");
        assert!(back.iter().eq(params.iter()));
        Some(pairs)
    }

    /// Storage never passes the bytes fed nor the limits.
    fn check(&self, sizes: impl Iterator<Item = usize>) {
        let (mut count, mut stored) = (0, 0);
        for s in sizes {
            count += 1;
            stored += s;
        }
        assert!(count <= self.limits.max_pairs, "{count} pairs stored");
        assert!(
            stored <= self.fed,
            "{stored} bytes stored from {}",
            self.fed
        );
        assert!(stored <= self.limits.max_bytes, "{stored} bytes stored");
    }
}
