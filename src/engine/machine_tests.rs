//! The machine state by state, with the exact bytes it answers (golden bytes), and a
//! property: however the input is cut into pieces, the events, replies and errors are the
//! same.

use super::*;
use crate::protocol::{encode_get_values, encode_params, encode_record, KEEP_CONN};

fn lim() -> Limits {
    Limits::new(false, 4, 16)
}

fn mpx() -> Limits {
    let mut l = Limits::new(true, 4, 16);
    l.max_reqs_per_conn = 2;
    l
}

fn begin(id: u16, role: u16, keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let body = BeginRequestBody {
        role: Role::from(role),
        flags: if keep { KEEP_CONN } else { 0 },
    };
    encode_header_into(&mut out, RecordType::BeginRequest, id, 8);
    out.extend_from_slice(&body.encode());
    out
}

fn params(id: u16, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_params(
        &mut out,
        id,
        pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    );
    out
}

fn record(t: RecordType, id: u16, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if content.is_empty() {
        encode_header_into(&mut out, t, id, 0);
    } else {
        encode_record(&mut out, t, id, content);
    }
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn run(lim: &Limits, m: &mut Machine, input: &[u8], piece: usize) -> (Vec<Seen>, Vec<u8>) {
    trace(lim, m, input, piece)
}

fn end_request(id: u16, app: u32, status: ProtocolStatus) -> Vec<u8> {
    let mut out = Vec::new();
    encode_end_request(&mut out, id, app, status);
    out
}

fn pairs(p: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    p.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn idle_then_head_then_stdin_then_finish() {
    let l = lim();
    let mut m = Machine::new();
    assert!(m.is_idle());
    let wire = cat(&[
        begin(1, 1, true),
        params(1, &[("A", "1"), ("B", "")]),
        record(RecordType::Stdin, 1, b"hello"),
        record(RecordType::Stdin, 1, b""),
    ]);
    let (seen, out) = run(&l, &mut m, &wire, usize::MAX);
    assert_eq!(
        seen,
        [
            Seen::Head(1, Role::Responder, true, pairs(&[("A", "1"), ("B", "")])),
            Seen::Data(1, Which::Stdin, b"hello".to_vec()),
            Seen::End(1, Which::Stdin),
        ]
    );
    assert!(out.is_empty(), "a request is the application's to answer");
    assert!(m.input_done(1));
    assert!(!m.is_idle());
    assert_eq!(m.finish(&l, 1), Some(true));
    assert!(m.is_idle() && !m.wants_close());
    assert_eq!(m.finish(&l, 1), None, "finished once");
}

#[test]
fn get_values_is_answered_with_the_limits_at_any_time() {
    let l = lim();
    let mut m = Machine::new();
    let mut q = Vec::new();
    encode_get_values(
        &mut q,
        &["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS", "X"],
    );
    let wire = cat(&[begin(1, 1, false), q.clone()]);
    let (seen, out) = run(&l, &mut m, &wire, 3);
    assert!(seen.is_empty());
    let mut golden = Vec::new();
    encode_get_values_result(
        &mut golden,
        &[
            ("FCGI_MAX_CONNS", "16"),
            ("FCGI_MAX_REQS", "4"),
            ("FCGI_MPXS_CONNS", "0"),
        ],
    );
    assert_eq!(out, golden);
}

#[test]
fn unknown_management_type_gets_unknown_type() {
    let l = lim();
    let mut m = Machine::new();
    let (seen, out) = run(&l, &mut m, &record(RecordType::from(42), 0, b"xyz"), 1);
    assert!(seen.is_empty());
    assert_eq!(out, [1, 11, 0, 0, 0, 8, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0]);
    assert!(m.is_idle());
}

#[test]
fn unknown_role_is_refused_and_closes_without_keep_conn() {
    let l = lim();
    let mut m = Machine::new();
    let wire = cat(&[
        begin(3, 9, false),
        params(3, &[]),
        record(RecordType::Stdin, 3, b""),
    ]);
    let (seen, out) = run(&l, &mut m, &wire, usize::MAX);
    assert!(seen.is_empty());
    assert_eq!(out, end_request(3, 0, ProtocolStatus::UnknownRole));
    assert!(m.wants_close());
    assert_eq!(m.take_notes().len(), 1);
    // With keep-conn the connection goes on, and the refused id's records are skipped.
    let mut m = Machine::new();
    let wire = cat(&[
        begin(3, 9, true),
        params(3, &[]),
        begin(4, 1, true),
        params(4, &[]),
    ]);
    let (seen, out) = run(&l, &mut m, &wire, 5);
    assert_eq!(seen, [Seen::Head(4, Role::Responder, true, vec![])]);
    assert_eq!(out, end_request(3, 0, ProtocolStatus::UnknownRole));
}

#[test]
fn concurrent_begin_without_multiplexing_is_cant_mpx_conn() {
    let l = lim();
    let mut m = Machine::new();
    let wire = cat(&[
        begin(1, 1, true),
        params(1, &[]),
        record(RecordType::Stdin, 1, b"part"),
        begin(2, 1, true),
        params(2, &[("IGNORED", "yes")]),
        record(RecordType::Stdin, 1, b""),
    ]);
    let (seen, out) = run(&l, &mut m, &wire, 7);
    assert_eq!(
        seen,
        [
            Seen::Head(1, Role::Responder, true, vec![]),
            Seen::Data(1, Which::Stdin, b"part".to_vec()),
            Seen::End(1, Which::Stdin),
        ]
    );
    assert_eq!(out, end_request(2, 0, ProtocolStatus::CantMpxConn));
}

#[test]
fn a_pipelined_request_waits_until_the_running_one_finishes() {
    let l = lim();
    let mut m = Machine::new();
    let first = cat(&[
        begin(1, 1, true),
        params(1, &[]),
        record(RecordType::Stdin, 1, b""),
    ]);
    let second = cat(&[
        begin(2, 1, false),
        params(2, &[("N", "2")]),
        record(RecordType::Stdin, 2, b""),
    ]);
    let wire = cat(&[first.clone(), second.clone()]);
    let mut input = &wire[..];
    let mut heads = 0;
    loop {
        match m.advance(&l, input, usize::MAX).unwrap() {
            Progress::Event(used, Event::Head(h)) => {
                heads += 1;
                assert_eq!(h.id, 1);
                input = &input[used..];
            }
            Progress::Event(used, _) => input = &input[used..],
            Progress::Blocked(used) => {
                input = &input[used..];
                break;
            }
            Progress::NeedMore(_) => panic!("the second request must wait, not be read"),
        }
    }
    assert_eq!(heads, 1);
    assert!(
        m.take_output().is_empty(),
        "no CANT_MPX_CONN for a pipelined request"
    );
    // Blocked again while request 1 runs; free once it finished.
    assert_eq!(
        m.advance(&l, input, usize::MAX).unwrap(),
        Progress::Blocked(0)
    );
    assert_eq!(m.finish(&l, 1), Some(true));
    match m.advance(&l, input, usize::MAX).unwrap() {
        Progress::Event(_, Event::Head(h)) => {
            assert_eq!(h.id, 2);
            assert!(!h.keep_conn);
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn abort_before_the_head_is_complete_is_answered_here() {
    let l = lim();
    let mut m = Machine::new();
    let wire = cat(&[
        begin(5, 1, false),
        record(RecordType::Params, 5, &[1, 1, b'A']), // half a pair
        record(RecordType::AbortRequest, 5, b""),
    ]);
    let (seen, out) = run(&l, &mut m, &wire, 2);
    assert!(seen.is_empty());
    assert_eq!(out, end_request(5, 0, ProtocolStatus::RequestComplete));
    assert!(m.wants_close());
    assert_eq!(l.head_bytes.load(Ordering::Relaxed), 0, "budget given back");
}

#[test]
fn abort_of_a_running_request_is_an_event_and_it_stays_until_finished() {
    let l = lim();
    let mut m = Machine::new();
    let wire = cat(&[
        begin(1, 1, true),
        params(1, &[]),
        record(RecordType::AbortRequest, 1, b""),
    ]);
    let (seen, out) = run(&l, &mut m, &wire, usize::MAX);
    assert_eq!(
        seen,
        [Seen::Head(1, Role::Responder, true, vec![]), Seen::Abort(1)]
    );
    assert!(
        out.is_empty(),
        "the application ends it, with exactly one END_REQUEST"
    );
    assert_eq!(m.active(), 1);
    assert_eq!(m.finish(&l, 1), Some(true));
}

#[test]
fn oversized_params_are_refused_with_431_and_later_records_skipped() {
    let mut l = lim();
    l.params = ParamsLimits {
        max_bytes: 10,
        max_pairs: 10,
    };
    let mut m = Machine::new();
    let wire = cat(&[
        begin(1, 1, true),
        params(1, &[("NAME", "a value far too long")]),
        record(RecordType::Stdin, 1, b"skipped"),
        record(RecordType::Stdin, 1, b""),
        begin(2, 1, true),
        params(2, &[("OK", "1")]),
    ]);
    let (seen, out) = run(&l, &mut m, &wire, 4);
    assert_eq!(
        seen,
        [Seen::Head(2, Role::Responder, true, pairs(&[("OK", "1")]))]
    );
    let body = "Status: 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n\r\n431 Request Header Fields Too Large\n";
    let mut golden = Vec::new();
    encode_record(&mut golden, RecordType::Stdout, 1, body.as_bytes());
    encode_stream_end(&mut golden, RecordType::Stdout, 1);
    encode_end_request(&mut golden, 1, 0, ProtocolStatus::RequestComplete);
    assert_eq!(out, golden);
}

#[test]
fn heads_over_the_process_budget_are_refused_with_503_overloaded() {
    let mut l = lim();
    l.head_budget = 5;
    let mut m = Machine::new();
    let wire = cat(&[begin(1, 1, false), params(1, &[("LONG", "123456")])]);
    let (seen, out) = run(&l, &mut m, &wire, usize::MAX);
    assert!(seen.is_empty());
    let body = "Status: 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\n\r\n503 Service Unavailable\n";
    let mut golden = Vec::new();
    encode_record(&mut golden, RecordType::Stdout, 1, body.as_bytes());
    encode_stream_end(&mut golden, RecordType::Stdout, 1);
    encode_end_request(&mut golden, 1, 0, ProtocolStatus::Overloaded);
    assert_eq!(out, golden);
    assert_eq!(l.refused.load(Ordering::Relaxed), 1);
    assert_eq!(l.head_bytes.load(Ordering::Relaxed), 0);
    assert!(m.wants_close());
}

#[test]
fn a_head_in_progress_holds_budget_until_complete_or_released() {
    let l = lim();
    let mut m = Machine::new();
    let wire = cat(&[
        begin(1, 1, true),
        record(RecordType::Params, 1, &[1, 2, b'A', b'x', b'y']),
    ]);
    let (seen, _) = run(&l, &mut m, &wire, usize::MAX);
    assert!(seen.is_empty());
    assert_eq!(l.head_bytes.load(Ordering::Relaxed), 5);
    m.release(&l);
    assert_eq!(l.head_bytes.load(Ordering::Relaxed), 0);
}

#[test]
fn multiplexed_requests_interleave_and_are_capped() {
    let l = mpx();
    let mut m = Machine::new();
    let wire = cat(&[
        begin(1, 1, true),
        begin(2, 3, true),
        params(2, &[]),
        params(1, &[("X", "1")]),
        begin(3, 1, true), // over the cap of 2
        params(3, &[]),
        record(RecordType::Stdin, 2, b"two"),
        record(RecordType::Stdin, 1, b"one"),
        record(RecordType::Stdin, 1, b""),
        record(RecordType::Data, 2, b"d"),
    ]);
    let (seen, out) = run(&l, &mut m, &wire, 6);
    assert_eq!(
        seen,
        [
            Seen::Head(2, Role::Filter, true, vec![]),
            Seen::Head(1, Role::Responder, true, pairs(&[("X", "1")])),
            Seen::Data(2, Which::Stdin, b"two".to_vec()),
            Seen::Data(1, Which::Stdin, b"one".to_vec()),
            Seen::End(1, Which::Stdin),
            Seen::Data(2, Which::Data, b"d".to_vec()),
        ]
    );
    assert!(
        out.starts_with(&[1, 6, 0, 3]),
        "request 3 refused on stdout"
    );
    assert!(out.ends_with(&end_request(3, 0, ProtocolStatus::Overloaded)));
    let mut q = Vec::new();
    encode_get_values(&mut q, &["FCGI_MPXS_CONNS"]);
    let (_, out) = run(&l, &mut m, &q, usize::MAX);
    let mut golden = Vec::new();
    encode_get_values_result(&mut golden, &[("FCGI_MPXS_CONNS", "1")]);
    assert_eq!(out, golden);
}

#[test]
fn records_of_inactive_ids_and_unknown_types_are_skipped() {
    let l = lim();
    let mut m = Machine::new();
    let wire = cat(&[
        record(RecordType::Stdin, 7, b"late"),
        record(RecordType::Params, 8, b"\x01\x01AB"),
        record(RecordType::from(200), 9, b"???"),
        begin(1, 1, false),
        record(RecordType::from(200), 1, b"app-specific"),
        params(1, &[]),
    ]);
    let (seen, out) = run(&l, &mut m, &wire, 1);
    assert_eq!(seen, [Seen::Head(1, Role::Responder, false, vec![])]);
    assert!(out.is_empty());
}

#[test]
fn protocol_violations_end_the_connection() {
    let l = lim();
    let cases: [(Vec<u8>, &str); 4] = [
        (
            vec![2, 1, 0, 1, 0, 8, 0, 0],
            "unsupported FastCGI version 2",
        ),
        (
            record(RecordType::BeginRequest, 1, &[0, 1, 0]),
            "has a body of 3 bytes",
        ),
        (
            cat(&[begin(1, 1, true), record(RecordType::Stdin, 1, b"x")]),
            "before the end of FCGI_PARAMS",
        ),
        (
            cat(&[begin(1, 1, true), params(1, &[]), begin(1, 1, true)]),
            "already active",
        ),
    ];
    for (wire, want) in cases {
        let mut m = Machine::new();
        let (seen, _) = run(&l, &mut m, &wire, 3);
        match seen.last() {
            Some(Seen::Error(e)) => assert!(e.contains(want), "{e} vs {want}"),
            other => panic!("expected an error containing {want:?}, got {other:?}"),
        }
    }
}

#[test]
fn stream_content_can_be_read_around_the_machine() {
    let l = lim();
    let mut m = Machine::new();
    let head = cat(&[begin(1, 1, false), params(1, &[])]);
    assert!(matches!(
        m.advance(&l, &head, usize::MAX).unwrap(),
        Progress::Event(_, Event::Head(_))
    ));
    let mut rec = Vec::new();
    encode_header_into(&mut rec, RecordType::Stdin, 1, 10);
    rec.push(0); // padding is announced below
    rec[6] = 3;
    rec.pop();
    assert_eq!(
        m.advance(&l, &rec, usize::MAX).unwrap(),
        Progress::NeedMore(8)
    );
    assert_eq!(m.stream_left(), Some((1, Which::Stdin, 10)));
    m.consume_stream(4); // read straight into a caller's buffer
    assert_eq!(m.stream_left(), Some((1, Which::Stdin, 6)));
    m.consume_stream(6);
    assert_eq!(m.stream_left(), None);
    // The padding, then the end of stdin.
    let tail = cat(&[vec![0, 0, 0], record(RecordType::Stdin, 1, b"")]);
    let (seen, _) = run(&l, &mut m, &tail, 1);
    assert_eq!(seen, [Seen::End(1, Which::Stdin)]);
}

#[test]
fn room_limits_each_data_event() {
    let l = lim();
    let mut m = Machine::new();
    let wire = cat(&[
        begin(1, 1, false),
        params(1, &[]),
        record(RecordType::Stdin, 1, b"abcdef"),
    ]);
    let mut input = &wire[..];
    let mut got = Vec::new();
    loop {
        match m.advance(&l, input, 4).unwrap() {
            Progress::Event(used, Event::Data { len, .. }) => {
                assert!(len <= 4);
                got.extend_from_slice(&input[used - len..used]);
                input = &input[used..];
            }
            Progress::Event(used, _) => input = &input[used..],
            Progress::NeedMore(_) | Progress::Blocked(_) => break,
        }
    }
    assert_eq!(got, b"abcdef");
    assert_eq!(
        m.advance(&l, b"", 0).unwrap(),
        Progress::NeedMore(0),
        "no room: nothing taken"
    );
}

mod split_invariance {
    use super::*;
    use proptest::prelude::*;

    /// A plausible stream: a few requests and management records, with arbitrary bytes
    /// mixed in when `junk` is set.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let item =
            prop_oneof![
                (1u16..4, 0u16..5, any::<bool>()).prop_map(|(id, role, k)| begin(id, role, k)),
                (
                    1u16..4,
                    proptest::collection::vec(("[A-Z]{1,8}", "[a-z]{0,8}"), 0..4)
                )
                    .prop_map(|(id, ps)| {
                        let ps: Vec<(&str, &str)> =
                            ps.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                        params(id, &ps)
                    }),
                (1u16..4, proptest::collection::vec(any::<u8>(), 0..40))
                    .prop_map(|(id, d)| record(RecordType::Stdin, id, &d)),
                (1u16..4, proptest::collection::vec(any::<u8>(), 0..10))
                    .prop_map(|(id, d)| record(RecordType::Data, id, &d)),
                (1u16..4).prop_map(|id| record(RecordType::AbortRequest, id, b"")),
                Just({
                    let mut q = Vec::new();
                    encode_get_values(&mut q, &["FCGI_MAX_REQS"]);
                    q
                }),
                proptest::collection::vec(any::<u8>(), 1..12),
            ];
        proptest::collection::vec(item, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn any_cut_gives_the_same_result(wire in stream(), piece in 1usize..20, mux in any::<bool>()) {
            let l = if mux { mpx() } else { lim() };
            let whole = run(&l, &mut Machine::new(), &wire, usize::MAX);
            let cut = run(&l, &mut Machine::new(), &wire, piece);
            prop_assert_eq!(whole, cut);
        }

        #[test]
        fn garbage_never_panics_and_budget_is_given_back(wire in proptest::collection::vec(any::<u8>(), 0..600), mux in any::<bool>()) {
            let l = if mux { mpx() } else { lim() };
            let mut m = Machine::new();
            let _ = run(&l, &mut m, &wire, 7);
            m.release(&l);
            prop_assert_eq!(l.head_bytes.load(Ordering::Relaxed), 0);
        }
    }
}

#[test]
fn the_heads_of_one_multiplexed_connection_share_one_budget() {
    let mut l = mpx();
    l.max_reqs_per_conn = 8;
    l.conn_head_budget = 40;
    let mut m = Machine::new();
    // Two heads in progress of 24 bytes each: the second passes the connection's 40.
    let half = |id| {
        let mut pair = vec![1u8, 21, b'N'];
        pair.extend_from_slice(&[b'v'; 21]);
        record(RecordType::Params, id, &pair) // 24 bytes of params content
    };
    let wire = cat(&[
        begin(1, 1, true),
        half(1),
        begin(2, 1, true),
        half(2),
        params(1, &[]),
    ]);
    let (seen, out) = run(&l, &mut m, &wire, usize::MAX);
    assert_eq!(seen.len(), 1, "request 1 completes: {seen:?}");
    assert!(matches!(&seen[0], Seen::Head(1, ..)));
    assert!(out.ends_with(&end_request(2, 0, ProtocolStatus::Overloaded)));
    assert_eq!(l.refused.load(Ordering::Relaxed), 1);
    // One head alone is bounded by the params limits only (1 MiB by default), not 40.
    let mut m = Machine::new();
    let wire = cat(&[begin(3, 1, true), half(3), half(3), params(3, &[])]);
    let (seen, _) = run(&l, &mut m, &wire, usize::MAX);
    assert!(matches!(&seen[..], [Seen::Head(3, ..)]), "{seen:?}");
}
