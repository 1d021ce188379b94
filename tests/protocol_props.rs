//! Property tests of the protocol codec: everything encoded decodes back, from any split of
//! the byte stream, and the name-value decoder never stores more than it was fed.
//!
//! Case counts are modest so the file runs in seconds in a debug build; raise them with
//! `PROPTEST_CASES=5000 cargo test --test protocol_props`.

use fcgi::protocol::{
    decode_record, encode_get_values, encode_get_values_result, encode_pair, encode_params,
    encode_record, BeginRequestBody, EndRequestBody, Header, ParamsDecoder, ParamsLimits,
    ProtocolError, ProtocolStatus, RecordType, Role, Status, UnknownTypeBody, HEADER_LEN,
    MAX_CONTENT_LEN,
};
use proptest::collection::vec;
use proptest::prelude::*;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// `cases` unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// `len` pseudo-random bytes from `seed` (cheap where a proptest byte vector would be slow).
fn bytes_from_seed(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Byte strings whose lengths sit on the interesting boundaries of the pair format:
/// tiny, around the 1-byte/4-byte switch at 128, a few hundred, and now and then large.
fn pair_bytes() -> BoxedStrategy<Vec<u8>> {
    let len = prop_oneof![
        4 => 0usize..=3,
        6 => 124usize..=132,
        3 => 0usize..=300,
        1 => prop_oneof![Just(65535usize), Just(65536), 60_000usize..=70_000],
    ];
    len.prop_flat_map(|n| {
        if n <= 300 {
            vec(any::<u8>(), n).boxed()
        } else {
            any::<u64>()
                .prop_map(move |seed| bytes_from_seed(seed, n))
                .boxed()
        }
    })
    .boxed()
}

fn pairs() -> impl Strategy<Value = Pairs> {
    vec((pair_bytes(), pair_bytes()), 0..6)
}

/// Splits `wire` into pieces whose sizes cycle through `sizes` (each at least 1).
fn chunked<'a>(wire: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        1 => Just(vec![1usize]),
        3 => vec(1usize..=9, 1..8),
        3 => vec(1usize..=70_000, 1..8),
    ]
}

fn wire_of(pairs: &Pairs) -> Vec<u8> {
    let mut wire = Vec::new();
    for (n, v) in pairs {
        encode_pair(&mut wire, n, v);
    }
    wire
}

fn owned(params: &fcgi::protocol::Params) -> Pairs {
    params
        .iter()
        .map(|p| (p.name.to_vec(), p.value.to_vec()))
        .collect()
}

/// Walks a buffer of whole records, returning (header, content) for each.
fn records(mut wire: &[u8]) -> Vec<(Header, Vec<u8>)> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        match decode_record(wire) {
            Ok(Status::Complete((rec, used))) => {
                out.push((rec.header, rec.content.to_vec()));
                wire = &wire[used..];
            }
            other => panic!("expected a whole record, got {other:?}"),
        }
    }
    out
}

/// Index just past the last length byte of the `i`th pair of `pairs` in its encoding.
fn end_of_lengths(pairs: &Pairs, i: usize) -> usize {
    let len_bytes = |n: usize| if n < 128 { 1 } else { 4 };
    let before: usize = pairs[..i]
        .iter()
        .map(|(n, v)| len_bytes(n.len()) + len_bytes(v.len()) + n.len() + v.len())
        .sum();
    before + len_bytes(pairs[i].0.len()) + len_bytes(pairs[i].1.len())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn header_round_trips_every_field(
        record_type in any::<u8>(),
        request_id in any::<u16>(),
        content_length in any::<u16>(),
        padding_length in any::<u8>(),
    ) {
        let h = Header { record_type: RecordType::from(record_type), request_id, content_length, padding_length };
        let bytes = h.encode();
        prop_assert_eq!(bytes[0], 1);
        prop_assert_eq!(bytes[1], record_type);
        prop_assert_eq!(bytes[7], 0);
        let back = Header::decode(&bytes).unwrap();
        prop_assert_eq!(back, h);
        prop_assert_eq!(u8::from(back.record_type), record_type);
        prop_assert_eq!(back.record_len(), HEADER_LEN + content_length as usize + padding_length as usize);
    }

    #[test]
    fn header_decode_checks_only_the_version(mut bytes in any::<[u8; 8]>()) {
        match Header::decode(&bytes) {
            Err(e) => {
                prop_assert_ne!(bytes[0], 1);
                prop_assert_eq!(e, ProtocolError::BadVersion(bytes[0]));
            }
            Ok(h) => {
                // Re-encoding gives the same bytes, except the reserved byte, which is zeroed.
                bytes[7] = 0;
                prop_assert_eq!(h.encode(), bytes);
            }
        }
    }

    #[test]
    fn bodies_round_trip(
        role in any::<u16>(),
        flags in any::<u8>(),
        app_status in any::<u32>(),
        protocol_status in any::<u8>(),
        unknown_type in any::<u8>(),
        wrong_len in (0usize..=24).prop_filter("not 8", |n| *n != 8),
    ) {
        let begin = BeginRequestBody { role: Role::from(role), flags };
        let back = BeginRequestBody::decode(&begin.encode()).unwrap();
        prop_assert_eq!(back, begin);
        prop_assert_eq!(u16::from(back.role), role);
        prop_assert_eq!(back.keep_conn(), flags & 1 == 1);

        let end = EndRequestBody { app_status, protocol_status: ProtocolStatus::from(protocol_status) };
        let back = EndRequestBody::decode(&end.encode()).unwrap();
        prop_assert_eq!(back, end);
        prop_assert_eq!(u8::from(back.protocol_status), protocol_status);

        let unknown = UnknownTypeBody { record_type: RecordType::from(unknown_type) };
        let back = UnknownTypeBody::decode(&unknown.encode()).unwrap();
        prop_assert_eq!(back, unknown);
        prop_assert_eq!(u8::from(back.record_type), unknown_type);

        let wrong = vec![1u8; wrong_len];
        prop_assert_eq!(
            BeginRequestBody::decode(&wrong),
            Err(ProtocolError::BadBodyLength { record_type: 1, len: wrong_len })
        );
        prop_assert_eq!(
            EndRequestBody::decode(&wrong),
            Err(ProtocolError::BadBodyLength { record_type: 3, len: wrong_len })
        );
        prop_assert_eq!(
            UnknownTypeBody::decode(&wrong),
            Err(ProtocolError::BadBodyLength { record_type: 11, len: wrong_len })
        );
    }

    #[test]
    fn bodies_decode_any_eight_bytes(bytes in any::<[u8; 8]>()) {
        // Reserved bytes are ignored on input and zero on output.
        let b = BeginRequestBody::decode(&bytes).unwrap().encode();
        prop_assert_eq!(&b[..3], &bytes[..3]);
        prop_assert_eq!(&b[3..], &[0u8; 5][..]);
        let e = EndRequestBody::decode(&bytes).unwrap().encode();
        prop_assert_eq!(&e[..5], &bytes[..5]);
        prop_assert_eq!(&e[5..], &[0u8; 3][..]);
        let u = UnknownTypeBody::decode(&bytes).unwrap().encode();
        prop_assert_eq!(u[0], bytes[0]);
        prop_assert_eq!(&u[1..], &[0u8; 7][..]);
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn encode_record_splits_any_length(
        len in prop_oneof![0usize..=3, 65534usize..=65537, 131069usize..=131072, 0usize..=200_000],
        seed in any::<u64>(),
        record_type in 1u8..=11,
        request_id in any::<u16>(),
    ) {
        let content = bytes_from_seed(seed, len);
        let mut wire = Vec::new();
        encode_record(&mut wire, RecordType::from(record_type), request_id, &content);
        let recs = records(&wire);
        prop_assert_eq!(recs.len(), len.div_ceil(MAX_CONTENT_LEN));
        let mut back = Vec::new();
        for (h, c) in &recs {
            prop_assert_eq!(u8::from(h.record_type), record_type);
            prop_assert_eq!(h.request_id, request_id);
            prop_assert_eq!(h.padding_length, 0);
            prop_assert!(h.content_length as usize <= MAX_CONTENT_LEN);
            prop_assert!(h.content_length > 0, "encode_record never writes an empty record");
            prop_assert_eq!(h.content_length as usize, c.len());
            back.extend_from_slice(c);
        }
        prop_assert_eq!(back, content);
        prop_assert_eq!(wire.len(), len + HEADER_LEN * recs.len());
    }

    #[test]
    fn padded_records_decode_from_any_split(
        specs in vec((any::<u8>(), any::<u16>(), 0usize..=700, any::<u8>(), any::<u64>()), 1..6),
        sizes in chunk_sizes(),
    ) {
        // Several records with arbitrary padding (and junk in it), back to back.
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for &(t, id, len, pad, seed) in &specs {
            let content = bytes_from_seed(seed, len);
            let h = Header { record_type: RecordType::from(t), request_id: id, content_length: len as u16, padding_length: pad };
            wire.extend_from_slice(&h.encode());
            wire.extend_from_slice(&content);
            wire.extend(std::iter::repeat_n(0xa5, pad as usize));
            expected.push((h, content));
        }
        // Feed a growing buffer the way a connection reads its socket.
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        for piece in chunked(&wire, &sizes) {
            buf.extend_from_slice(piece);
            loop {
                match decode_record(&buf).unwrap() {
                    Status::Complete((rec, used)) => {
                        let (h, c) = &expected[got.len()];
                        prop_assert_eq!(used, h.record_len());
                        prop_assert_eq!(rec.content, &c[..]);
                        got.push((rec.header, rec.content.to_vec()));
                        buf.drain(..used);
                    }
                    Status::Partial(n) => {
                        // The exact count missing: of the header, else of the whole record.
                        let want = if buf.len() < HEADER_LEN {
                            HEADER_LEN - buf.len()
                        } else {
                            expected[got.len()].0.record_len() - buf.len()
                        };
                        prop_assert_eq!(n, want);
                        break;
                    }
                }
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn pairs_round_trip_through_any_chunking(pairs in pairs(), sizes in chunk_sizes()) {
        let wire = wire_of(&pairs);
        let mut d = ParamsDecoder::new(ParamsLimits { max_bytes: usize::MAX, max_pairs: usize::MAX });
        for piece in chunked(&wire, &sizes) {
            d.feed(piece).unwrap();
        }
        let params = d.finish().unwrap();
        let total: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
        prop_assert_eq!(params.byte_len(), total);
        prop_assert_eq!(params.len(), pairs.len());
        prop_assert_eq!(owned(&params), pairs);
    }

    #[test]
    fn pairs_round_trip_one_byte_at_a_time(pairs in vec((vec(any::<u8>(), 0..=140), vec(any::<u8>(), 0..=140)), 0..6)) {
        let wire = wire_of(&pairs);
        let mut d = ParamsDecoder::new(ParamsLimits::default());
        for b in &wire {
            d.feed(std::slice::from_ref(b)).unwrap();
        }
        prop_assert_eq!(owned(&d.finish().unwrap()), pairs);
    }

    #[test]
    fn params_stream_round_trips_across_records(pairs in pairs(), request_id in 1u16.., sizes in chunk_sizes()) {
        // encode_params cuts the pair stream into records at arbitrary bytes; the decoder is
        // fed each record's content as it completes from a growing buffer.
        let mut wire = Vec::new();
        encode_params(&mut wire, request_id, pairs.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut d = ParamsDecoder::new(ParamsLimits { max_bytes: usize::MAX, max_pairs: usize::MAX });
        let mut buf: Vec<u8> = Vec::new();
        let mut ended = false;
        for piece in chunked(&wire, &sizes) {
            buf.extend_from_slice(piece);
            while let Status::Complete((rec, used)) = decode_record(&buf).unwrap() {
                prop_assert!(!ended, "record after the end of the stream");
                prop_assert_eq!(rec.header.record_type, RecordType::Params);
                prop_assert_eq!(rec.header.request_id, request_id);
                ended = rec.content.is_empty();
                d.feed(rec.content).unwrap();
                buf.drain(..used);
            }
        }
        prop_assert!(ended && buf.is_empty());
        prop_assert_eq!(owned(&d.finish().unwrap()), pairs);
    }

    #[test]
    fn get_values_names_round_trip(names in vec(prop_oneof!["FCGI_[A-Z_]{0,12}", ".{0,200}"], 0..8)) {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut wire = Vec::new();
        encode_get_values(&mut wire, &refs);
        let recs = records(&wire);
        let mut d = ParamsDecoder::new(ParamsLimits::default());
        for (h, c) in &recs {
            prop_assert_eq!(h.record_type, RecordType::GetValues);
            prop_assert_eq!(h.request_id, 0);
            d.feed(c).unwrap();
        }
        let params = d.finish().unwrap();
        let back: Vec<&[u8]> = params.iter().map(|p| p.name).collect();
        let want: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        prop_assert_eq!(back, want);
        prop_assert!(params.iter().all(|p| p.value.is_empty()));
    }

    #[test]
    fn get_values_result_is_one_record_holding_a_maximal_prefix(
        answers in vec((".{0,20}", prop_oneof![".{0,20}", "x{20000,40000}"]), 0..6),
    ) {
        let refs: Vec<(&str, &str)> = answers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let mut wire = Vec::new();
        encode_get_values_result(&mut wire, &refs);
        let recs = records(&wire);
        prop_assert_eq!(recs.len(), 1);
        let (h, content) = &recs[0];
        prop_assert_eq!(h.record_type, RecordType::GetValuesResult);
        prop_assert_eq!(h.request_id, 0);
        let mut d = ParamsDecoder::new(ParamsLimits::default());
        d.feed(content).unwrap();
        let got = owned(&d.finish().unwrap());
        let want: Pairs = answers.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
        prop_assert_eq!(&got[..], &want[..got.len()]);
        if got.len() < want.len() {
            // Cut only because the next pair would not fit.
            let mut next = Vec::new();
            encode_pair(&mut next, &want[got.len()].0, &want[got.len()].1);
            prop_assert!(content.len() + next.len() > MAX_CONTENT_LEN);
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn limits_are_enforced_before_storage(
        pairs in vec((vec(any::<u8>(), 0..=150), vec(any::<u8>(), 0..=150)), 0..8),
        max_bytes in 0usize..=800,
        max_pairs in 0usize..=8,
        sizes in chunk_sizes(),
    ) {
        let wire = wire_of(&pairs);
        // The first pair that passes a limit, and which limit.
        let mut bytes = 0;
        let mut offender = None;
        for (i, (n, v)) in pairs.iter().enumerate() {
            if i >= max_pairs {
                offender = Some((i, ProtocolError::TooManyParams { limit: max_pairs }));
                break;
            }
            bytes += n.len() + v.len();
            if bytes > max_bytes {
                offender = Some((i, ProtocolError::ParamsTooLong { limit: max_bytes }));
                break;
            }
        }
        let mut d = ParamsDecoder::new(ParamsLimits { max_bytes, max_pairs });
        let mut fed = 0;
        for piece in chunked(&wire, &sizes) {
            let start = fed;
            fed += piece.len();
            match d.feed(piece) {
                Ok(()) => {
                    if let Some((i, _)) = offender {
                        // No error yet: the offending lengths are not all in.
                        prop_assert!(fed < end_of_lengths(&pairs, i));
                    }
                }
                Err(e) => {
                    let Some((i, want)) = offender else {
                        return Err(TestCaseError::fail(format!("unexpected {e:?}")));
                    };
                    prop_assert_eq!(e, want);
                    // Refused in the piece that completed the pair's lengths: none of its
                    // name or value bytes was needed to decide.
                    let at = end_of_lengths(&pairs, i);
                    prop_assert!(start < at && at <= fed, "error at {start}..{fed}, lengths end at {at}");
                    return Ok(());
                }
            }
        }
        prop_assert!(offender.is_none(), "limit passed without an error");
        let params = d.finish().unwrap();
        prop_assert!(params.byte_len() <= wire.len());
        prop_assert!(params.byte_len() <= max_bytes);
        prop_assert!(params.len() <= max_pairs);
        prop_assert_eq!(owned(&params), pairs);
    }

    #[test]
    fn arbitrary_bytes_never_store_more_than_fed(
        wire in vec(any::<u8>(), 0..600),
        max_bytes in 0usize..=1000,
        max_pairs in 0usize..=16,
        sizes in chunk_sizes(),
    ) {
        let mut d = ParamsDecoder::new(ParamsLimits { max_bytes, max_pairs });
        let mut fed = 0;
        for piece in chunked(&wire, &sizes) {
            fed += piece.len();
            if d.feed(piece).is_err() {
                break;
            }
            prop_assert!(d.pairs().count() <= max_pairs);
            let stored: usize = d.pairs().map(|p| p.name.len() + p.value.len()).sum();
            prop_assert!(stored <= fed && stored <= max_bytes);
        }
        if let Ok(params) = d.finish() {
            prop_assert!(params.byte_len() <= fed);
            prop_assert!(params.byte_len() <= max_bytes);
            prop_assert!(params.len() <= max_pairs);
        }
    }

    #[test]
    fn hostile_four_byte_lengths_are_refused(
        name_len in prop_oneof![0u32..=4, 0u32..=70_000, 0u32..0x8000_0000],
        value_len in prop_oneof![0u32..=4, 0u32..=70_000, Just(0x7fff_ffffu32)],
        max_bytes in 0usize..=140_000,
    ) {
        let total = name_len as usize + value_len as usize;
        let mut wire = Vec::new();
        wire.extend_from_slice(&(name_len | 0x8000_0000).to_be_bytes());
        wire.extend_from_slice(&(value_len | 0x8000_0000).to_be_bytes());
        // At most three of the announced bytes ever arrive.
        wire.extend(std::iter::repeat_n(b'x', total.min(3)));
        let mut d = ParamsDecoder::new(ParamsLimits { max_bytes, max_pairs: 10 });
        let r = d.feed(&wire);
        if total > max_bytes {
            prop_assert_eq!(r, Err(ProtocolError::ParamsTooLong { limit: max_bytes }));
        } else {
            prop_assert_eq!(r, Ok(()));
            prop_assert_eq!(d.pairs().count(), usize::from(total <= 3));
            match d.finish() {
                Ok(params) => {
                    prop_assert!(total <= 3);
                    prop_assert_eq!(params.byte_len(), total);
                }
                Err(e) => {
                    prop_assert!(total > 3);
                    prop_assert_eq!(e, ProtocolError::TruncatedParams);
                }
            }
        }
    }
}
