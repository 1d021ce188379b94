//! The server's protocol behaviour, driven over a real socket with raw records.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use fcgi::protocol::{
    encode_get_values, encode_header_into, encode_params, encode_record, encode_stream_end,
    ParamsDecoder, ParamsLimits, ProtocolStatus, RecordType, Role, UnknownTypeBody,
};

#[test]
fn responder_request_echoes_id_params_and_body_then_closes() {
    let srv = TestServer::start(config(2), echo);
    let mut c = srv.connect();
    let r = c.request(0x1234, false, &[("A", "1"), ("B", "two")], b"body bytes");
    assert_eq!(
        r.text(),
        "Content-Type: text/plain\r\n\r\nA=1\nB=two\n\nbody bytes"
    );
    assert_eq!(r.protocol_status(), ProtocolStatus::RequestComplete);
    assert_eq!(r.end.unwrap().app_status, 0);
    assert!(r.stdout_ended, "STDOUT must end with an empty record");
    // Exactly one END_REQUEST, then the application closes (no FCGI_KEEP_CONN).
    assert!(c.record().is_none());
}

#[test]
fn keep_conn_serves_sequential_requests_on_one_connection() {
    let srv = TestServer::start(config(2), echo);
    let mut c = srv.connect();
    for i in 1..=5u16 {
        let body = format!("request {i}");
        let r = c.request(1, true, &[("N", &i.to_string())], body.as_bytes());
        assert_eq!(r.body(), format!("N={i}\n\n{body}").as_bytes());
    }
    eventually("the idle connection to be parked", || {
        srv.stats.snapshot().connections_parked == 1
    });
    let s = srv.stats.snapshot();
    assert_eq!(s.requests_served, 5);
    assert_eq!(
        s.workers_busy, 0,
        "an idle kept-alive connection holds no worker"
    );
}

#[test]
fn pipelined_requests_are_not_lost() {
    let srv = TestServer::start(config(2), echo);
    let mut c = srv.connect();
    let mut both = Raw::request_bytes(1, true, &[("Q", "first")], b"one");
    both.extend(Raw::request_bytes(2, false, &[("Q", "second")], b"two"));
    c.send(&both);
    assert_eq!(c.response(1).body(), b"Q=first\n\none");
    assert_eq!(c.response(2).body(), b"Q=second\n\ntwo");
}

fn get_values_answer(c: &mut Raw) -> Vec<(String, String)> {
    let mut q = Vec::new();
    encode_get_values(
        &mut q,
        &[
            "FCGI_MAX_CONNS",
            "FCGI_MAX_REQS",
            "FCGI_MPXS_CONNS",
            "X_UNKNOWN",
        ],
    );
    c.send(&q);
    let rec = c.record().expect("GET_VALUES_RESULT");
    assert_eq!(rec.header.record_type, RecordType::GetValuesResult);
    assert_eq!(rec.header.request_id, 0);
    let mut d = ParamsDecoder::new(ParamsLimits::default());
    d.feed(&rec.content).unwrap();
    d.finish()
        .unwrap()
        .iter()
        .map(|p| {
            (
                String::from_utf8(p.name.to_vec()).unwrap(),
                String::from_utf8(p.value.to_vec()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn get_values_answers_real_limits_at_any_point() {
    let mut cfg = config(3);
    cfg.max_conns = 77;
    let srv = TestServer::start(cfg, echo);
    let expected = vec![
        ("FCGI_MAX_CONNS".to_string(), "77".to_string()),
        ("FCGI_MAX_REQS".to_string(), "3".to_string()),
        ("FCGI_MPXS_CONNS".to_string(), "0".to_string()),
    ];
    let mut c = srv.connect();
    // First record on the connection (HAProxy's `option get-values`).
    assert_eq!(get_values_answer(&mut c), expected);
    // In the middle of a request, while the handler waits for stdin.
    let mut part = Raw::begin_bytes(1, Role::Responder, true);
    encode_params(&mut part, 1, [(&b"K"[..], &b"V"[..])]);
    encode_record(&mut part, RecordType::Stdin, 1, b"half");
    c.send(&part);
    assert_eq!(get_values_answer(&mut c), expected);
    let mut rest = Vec::new();
    encode_stream_end(&mut rest, RecordType::Stdin, 1);
    c.send(&rest);
    assert_eq!(c.response(1).body(), b"K=V\n\nhalf");
    // Between requests, on the kept connection.
    assert_eq!(get_values_answer(&mut c), expected);
    assert_eq!(c.request(1, false, &[], b"").body(), b"\n");
}

#[test]
fn unknown_management_type_gets_unknown_type_and_connection_stays_usable() {
    let srv = TestServer::start(config(2), echo);
    let mut c = srv.connect();
    let mut rec = Vec::new();
    encode_record(&mut rec, RecordType::Unknown(200), 0, b"some body to skip");
    c.send(&rec);
    let ans = c.record().unwrap();
    assert_eq!(ans.header.record_type, RecordType::UnknownType);
    assert_eq!(ans.header.request_id, 0);
    assert_eq!(
        UnknownTypeBody::decode(&ans.content).unwrap().record_type,
        RecordType::Unknown(200)
    );
    assert_eq!(
        c.request(1, false, &[("Z", "z")], b"ok").body(),
        b"Z=z\n\nok"
    );
}

#[test]
fn unknown_role_is_ended_with_unknown_role() {
    let srv = TestServer::start(config(2), echo);
    let mut c = srv.connect();
    let mut bytes = Raw::begin_bytes(5, Role::Unknown(9), true);
    encode_params(&mut bytes, 5, [(&b"A"[..], &b"1"[..])]);
    encode_stream_end(&mut bytes, RecordType::Stdin, 5);
    c.send(&bytes);
    let r = c.response(5);
    assert_eq!(r.protocol_status(), ProtocolStatus::UnknownRole);
    assert!(r.stdout.is_empty());
    // The rejected request's records were skipped; the connection still serves.
    assert_eq!(c.request(6, false, &[], b"next").body(), b"\nnext");
}

#[test]
fn concurrent_begin_without_multiplexing_gets_cant_mpx_conn() {
    let srv = TestServer::start(config(2), echo);
    let mut c = srv.connect();
    let mut part = Raw::begin_bytes(1, Role::Responder, true);
    encode_params(&mut part, 1, [(&b"R"[..], &b"one"[..])]);
    encode_record(&mut part, RecordType::Stdin, 1, b"abc");
    c.send(&part);
    // While request 1 waits for the rest of its stdin, request 2 begins.
    c.send(&Raw::request_bytes(2, true, &[("R", "two")], b"xyz"));
    let refused = c.response(2);
    assert_eq!(refused.protocol_status(), ProtocolStatus::CantMpxConn);
    let mut rest = Vec::new();
    encode_record(&mut rest, RecordType::Stdin, 1, b"def");
    encode_stream_end(&mut rest, RecordType::Stdin, 1);
    c.send(&rest);
    assert_eq!(c.response(1).body(), b"R=one\n\nabcdef");
}

#[test]
fn abort_request_during_stdin_reaches_the_handler_and_ends_the_request_once() {
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = TestServer::start(config(2), move |req| {
        let mut buf = Vec::new();
        let r = req.stdin().read_to_end(&mut buf);
        tx.send((r.map_err(|e| e.kind()), req.is_aborted()))
            .unwrap();
        Ok(())
    });
    let mut c = srv.connect();
    let mut part = Raw::begin_bytes(3, Role::Responder, true);
    encode_params(&mut part, 3, []);
    encode_record(&mut part, RecordType::Stdin, 3, b"partial");
    encode_header_into(&mut part, RecordType::AbortRequest, 3, 0);
    c.send(&part);
    let (read, aborted) = rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(read, Err(std::io::ErrorKind::ConnectionAborted));
    assert!(aborted);
    let r = c.response(3);
    assert_eq!(r.protocol_status(), ProtocolStatus::RequestComplete);
    // Exactly one END_REQUEST: the next thing on the connection answers the next request.
    assert_eq!(c.request(4, false, &[], b"").end.unwrap().app_status, 0);
    eventually("abort counted", || srv.stats.snapshot().aborted == 1);
}

#[test]
fn web_server_closing_the_socket_is_an_abort_and_writes_fail_fast() {
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = TestServer::start(config(2), move |req| {
        let chunk = vec![b'x'; 16 * 1024];
        let mut written = 0u64;
        let started = std::time::Instant::now();
        let result = loop {
            if let Err(e) = req
                .stdout()
                .write_all(&chunk)
                .and_then(|_| req.stdout().flush())
            {
                break Err(e.kind());
            }
            written += chunk.len() as u64;
            if started.elapsed() > Duration::from_secs(15) {
                break Ok(written);
            }
        };
        tx.send((result, req.is_aborted())).unwrap();
        Ok(())
    });
    let mut c = srv.connect();
    c.send(&Raw::request_bytes(1, false, &[], b""));
    let first = c.record().unwrap();
    assert_eq!(first.header.record_type, RecordType::Stdout);
    drop(c); // nginx, Apache and lighttpd abort this way
    let (result, aborted) = rx.recv_timeout(TIMEOUT).unwrap();
    assert!(
        result.is_err(),
        "writes must fail once the peer is gone: {result:?}"
    );
    assert!(aborted);
    // The server goes on serving.
    srv.stop.shutdown();
}

#[test]
fn stdout_is_split_into_records_of_at_most_65535_bytes() {
    let srv = TestServer::start(config(2), |req| {
        req.stdout()
            .write_all(b"Content-Type: application/octet-stream\r\n\r\n")?;
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        req.stdout().write_all(&big)?;
        for _ in 0..1000 {
            req.stdout().write_all(b"0123456789")?;
        }
        writeln!(req.stderr(), "a note")
    });
    let mut c = srv.connect();
    let r = c.request(1, false, &[], b"");
    assert!(r.stdout_records.iter().all(|&n| n <= 65535));
    assert!(r.stdout_records.len() >= 5);
    let body = r.body();
    assert_eq!(body.len(), 310_000);
    assert!(body[..300_000]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(r.stderr, b"a note\n");
}

#[test]
fn flush_sends_output_before_the_handler_returns() {
    let gate = Gate::default();
    let g = gate.clone();
    let srv = TestServer::start(config(2), move |req| {
        req.stdout()
            .write_all(b"Content-Type: text/event-stream\r\n\r\nevent 1\n")?;
        req.stdout().flush()?;
        g.wait();
        req.stdout().write_all(b"event 2\n")
    });
    let mut c = srv.connect();
    c.send(&Raw::request_bytes(1, false, &[], b""));
    let first = c.record().unwrap();
    assert!(
        first.content.ends_with(b"event 1\n"),
        "pushed before the gate opened"
    );
    gate.open();
    let rest = c.response(1);
    assert!(rest.stdout.starts_with(b"event 2\n"));
}

#[test]
fn large_body_streams_through_in_pieces() {
    let srv = TestServer::start(config(2), |req| {
        let mut total = 0u64;
        let mut sum = 0u64;
        let mut buf = vec![0; 100_000];
        loop {
            let n = req.stdin().read(&mut buf)?;
            if n == 0 {
                break;
            }
            sum = buf[..n]
                .iter()
                .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
            total += n as u64;
        }
        write!(
            req.stdout(),
            "Content-Type: text/plain\r\n\r\n{total} {sum}"
        )
    });
    let body: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let sum = body
        .iter()
        .fold(0u64, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
    let mut c = srv.connect();
    let w = c.s.try_clone().unwrap();
    let bytes = Raw::request_bytes(1, false, &[], &body);
    let t = std::thread::spawn(move || (&w).write_all(&bytes).unwrap());
    let r = c.response(1);
    t.join().unwrap();
    assert_eq!(r.body(), format!("{} {sum}", body.len()).as_bytes());
}

#[test]
fn filter_role_reads_stdin_then_data() {
    let srv = TestServer::start(config(2), |req| {
        let mut stdin = String::new();
        req.stdin().read_to_string(&mut stdin)?;
        let mut data = String::new();
        req.data().read_to_string(&mut data)?;
        let role = req.role();
        write!(
            req.stdout(),
            "Content-Type: text/plain\r\n\r\n{role:?}|{stdin}|{data}"
        )
    });
    let mut c = srv.connect();
    let mut b = Raw::begin_bytes(1, Role::Filter, false);
    encode_params(&mut b, 1, [(&b"FCGI_DATA_LENGTH"[..], &b"9"[..])]);
    encode_record(&mut b, RecordType::Stdin, 1, b"form");
    encode_stream_end(&mut b, RecordType::Stdin, 1);
    encode_record(&mut b, RecordType::Data, 1, b"file");
    encode_record(&mut b, RecordType::Data, 1, b" data");
    encode_stream_end(&mut b, RecordType::Data, 1);
    c.send(&b);
    assert_eq!(c.response(1).body(), b"Filter|form|file data");
}

#[test]
fn authorizer_helpers_produce_variable_headers_and_denials() {
    let srv = TestServer::start(config(2), |req| {
        assert_eq!(req.role(), Role::Authorizer);
        if req.param("HTTP_AUTHORIZATION") == Some("ok") {
            req.authorize(&[("USER", "alice")])
        } else {
            req.deny(403, &[("Content-Type", "text/plain")], b"no")
        }
    });
    for (auth, expect) in [
        ("ok", "Status: 200 OK\r\nVariable-USER: alice\r\n\r\n"),
        (
            "bad",
            "Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno",
        ),
    ] {
        let mut c = srv.connect();
        let mut b = Raw::begin_bytes(1, Role::Authorizer, false);
        encode_params(&mut b, 1, [(&b"HTTP_AUTHORIZATION"[..], auth.as_bytes())]);
        encode_stream_end(&mut b, RecordType::Stdin, 1);
        c.send(&b);
        assert_eq!(c.response(1).text(), expect);
    }
}

#[test]
fn app_status_is_sent_in_end_request() {
    let srv = TestServer::start(config(1), |req| {
        req.set_app_status(42);
        Ok(())
    });
    let mut c = srv.connect();
    assert_eq!(c.request(1, false, &[], b"").end.unwrap().app_status, 42);
}

#[test]
fn params_are_case_sensitive_first_wins_and_may_span_records() {
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = TestServer::start(config(1), move |req| {
        tx.send((
            req.param("DUP").map(String::from),
            req.param("dup").map(String::from),
            req.param_bytes(b"BIG").map(|v| v.len()),
            req.params().count(),
        ))
        .unwrap();
        Ok(())
    });
    let big = "v".repeat(100_000);
    let mut c = srv.connect();
    let mut b = Raw::begin_bytes(1, Role::Responder, false);
    encode_params(
        &mut b,
        1,
        [
            (&b"DUP"[..], &b"first"[..]),
            (&b"BIG"[..], big.as_bytes()),
            (&b"DUP"[..], &b"second"[..]),
        ],
    );
    encode_stream_end(&mut b, RecordType::Stdin, 1);
    c.send(&b);
    c.response(1);
    let got = rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(got, (Some("first".into()), None, Some(100_000), 3));
}

#[test]
fn unread_but_complete_stdin_lets_the_connection_close_at_once() {
    // A handler that never reads its (empty) stdin: the end record is already buffered, so
    // the server closes outright instead of lingering for the peer to close first.
    let srv = TestServer::start(config(1), |req| {
        req.respond(200, &[("Content-Type", "text/plain")], b"hi")
    });
    let mut c = srv.connect();
    let r = c.request(1, false, &[], b"");
    assert_eq!(r.body(), b"hi");
    assert!(c.record().is_none());
    let t = std::time::Instant::now();
    while srv.stats.snapshot().connections_open > 0 {
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "connection lingered"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(c);
}

#[test]
fn data_of_a_responder_is_empty_at_once() {
    // Only a Filter gets FCGI_DATA; asking a Responder's data must not wait for records
    // that never come (nor treat the web server's silence as an abort).
    let srv = TestServer::start(config(1), |req| {
        let mut data = Vec::new();
        req.data().read_to_end(&mut data)?;
        let mut body = Vec::new();
        req.stdin().read_to_end(&mut body)?;
        write!(
            req.stdout(),
            "Content-Type: text/plain\r\n\r\n{}|{}",
            data.len(),
            body.len()
        )
    });
    let mut c = srv.connect();
    assert_eq!(c.request(1, true, &[], b"abc").body(), b"0|3");
}
