//! What the fuzz targets check, shared with `tests/protocol_regress.rs` so that every saved
//! input replays through exactly the same code on stable Rust.
//!
//! Each function takes arbitrary bytes and panics only on a bug: a panic inside the codec, a
//! decoded value that contradicts the bytes it came from, or (`connection`) a server that
//! answers garbage or stops serving.
#![allow(dead_code)]

use fcgi::protocol::{
    decode_record, encode_header_into, encode_pair, encode_record, encode_stream_end,
    BeginRequestBody, EndRequestBody, Header, ParamsDecoder, ParamsLimits, ProtocolError,
    RecordType, Status, UnknownTypeBody, HEADER_LEN,
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

/// `connection`: the bytes are what a web server sends on one connection to a running
/// `fcgi::Server` (real loopback socket, echo-style handler that reads its whole input).
/// Whatever they are, the server answers with valid records only, and afterwards a
/// well-formed request on a new connection is still served.
pub fn connection(data: &[u8]) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::sync::OnceLock;
    use std::time::Duration;

    static ADDR: OnceLock<String> = OnceLock::new();
    let addr = ADDR.get_or_init(|| {
        let mut config = fcgi::server::Config::default();
        config.workers = 2;
        config.handle_signals = false;
        config.log_errors = false;
        config.read_timeout = Some(Duration::from_millis(200));
        let server = fcgi::Server::bind("127.0.0.1:0")
            .unwrap()
            .config_with(config);
        let addr = server.local_addrs()[0].clone();
        std::thread::spawn(move || {
            server.serve(|req| {
                let mut body = Vec::new();
                let _ = req.stdin().read_to_end(&mut body);
                let mut data = Vec::new();
                let _ = req.data().read_to_end(&mut data);
                req.stdout()
                    .write_all(b"Content-Type: text/plain\r\n\r\n")?;
                req.stdout().write_all(&body)
            })
        });
        addr
    });
    let talk = |bytes: &[u8]| -> Vec<u8> {
        let mut s = TcpStream::connect(addr.as_str()).expect("the server is up");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.take(4 << 20).read_to_end(&mut out);
        out
    };
    // Every byte the server sends parses as whole records of version 1.
    let answer = talk(data);
    let mut rest = &answer[..];
    while !rest.is_empty() {
        match decode_record(rest) {
            Ok(Status::Complete((_, used))) => rest = &rest[used..],
            other => panic!("server sent bytes that are not records: {other:?}"),
        }
    }
    // And it still serves.
    let mut ok = Vec::new();
    encode_header_into(&mut ok, RecordType::BeginRequest, 1, 8);
    ok.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    encode_stream_end(&mut ok, RecordType::Params, 1);
    encode_record(&mut ok, RecordType::Stdin, 1, b"alive");
    encode_stream_end(&mut ok, RecordType::Stdin, 1);
    let reply = talk(&ok);
    assert!(
        reply.windows(5).any(|w| w == b"alive"),
        "the server stopped serving after this input"
    );
}

/// `machine`: the connection state machine with no socket. Byte 0 picks multiplexing and
/// small limits, byte 1 the size of the pieces the rest is fed in. The machine must not
/// panic, must give the same events, replies and errors however the input is cut, and must
/// give back its whole heads budget (the checks live in the crate: `fcgi::__fuzz_machine`).
pub fn machine(data: &[u8]) {
    fcgi::__fuzz_machine(data)
}
