//! The Rust API as an application uses it over a real connection: byte-valued headers and
//! params that are not UTF-8, params read while the response streams, a pulled request
//! dropped without `finish`, and the stats a web server can rely on.

mod common;

use std::io::Write;

use common::*;
use fcgi::protocol::{encode_params, encode_stream_end, ProtocolStatus, RecordType};

/// A request whose params are raw bytes (not UTF-8), as a web server passes a query string.
fn raw_request(id: u16, params: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Raw::begin_bytes(id, fcgi::Role::Responder, false);
    encode_params(&mut out, id, params.iter().copied());
    encode_stream_end(&mut out, RecordType::Stdin, id);
    out
}

#[test]
fn raw_query_string_is_echoed_in_a_header_and_the_body() {
    let srv = TestServer::start(config(1), |req| {
        // Absent and not-UTF-8 are different answers.
        assert_eq!(req.param_utf8("HTTP_X_ABSENT")?, None);
        let not_utf8 = req.param_utf8("QUERY_STRING").unwrap_err();
        assert_eq!(not_utf8.kind(), std::io::ErrorKind::InvalidData);
        assert!(not_utf8.to_string().contains("QUERY_STRING"));
        // The params stay readable while the response streams: no copy.
        let (params, _input, out, _err) = req.split_all();
        let q = params.get(b"QUERY_STRING").unwrap_or_default();
        out.write_all(b"Status: 200 OK\r\nX-Query: ")?;
        out.write_all(q)?;
        out.write_all(b"\r\n\r\n")?;
        out.flush()?;
        out.write_all(q)?;
        Ok(())
    });
    let mut c = srv.connect();
    c.send(&raw_request(1, &[(b"QUERY_STRING", b"q=caf\xe9&x=\xff")]));
    let r = c.response(1);
    assert_eq!(r.protocol_status(), ProtocolStatus::RequestComplete);
    assert_eq!(r.end.unwrap().app_status, 0, "{}", r.text());
    assert_eq!(
        r.stdout,
        b"Status: 200 OK\r\nX-Query: q=caf\xe9&x=\xff\r\n\r\nq=caf\xe9&x=\xff"
    );
}

#[test]
fn write_head_bytes_sends_byte_values_and_refuses_crlf() {
    let srv = TestServer::start(config(1), |req| {
        let q = req
            .param_bytes(b"QUERY_STRING")
            .unwrap_or_default()
            .to_vec();
        // CR or LF in a value never reaches the wire: header injection is refused.
        let injected = req.write_head_bytes(200, &[("X-Bad", &b"a\r\nSet-Cookie: x"[..])]);
        assert_eq!(
            injected.unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        req.respond_bytes(200, &[("X-Query", &q[..]), ("X-Len", b"3")], &q)
    });
    let mut c = srv.connect();
    c.send(&raw_request(1, &[(b"QUERY_STRING", b"\xff\xfe")]));
    let r = c.response(1);
    assert_eq!(
        r.stdout,
        b"Status: 200 OK\r\nX-Query: \xff\xfe\r\nX-Len: 3\r\n\r\n\xff\xfe"
    );
}

#[test]
fn requests_are_counted_before_their_end_request_goes_out() {
    let srv = TestServer::start(config(2), echo);
    let mut c = srv.connect();
    for n in 1..=5u64 {
        let r = c.request(1, true, &[], b"x");
        assert_eq!(r.protocol_status(), ProtocolStatus::RequestComplete);
        // Read right after END_REQUEST arrived: no waiting, the count is already there.
        assert_eq!(srv.stats.snapshot().requests_served, n);
    }
}

#[test]
fn demo_prints_as_many_requests_served_as_it_made() {
    let exe = std::env::current_exe().unwrap();
    let demo = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/demo");
    assert!(
        demo.exists(),
        "{} (cargo test builds examples)",
        demo.display()
    );
    let out = std::process::Command::new(&demo).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let made = text.matches("-- END_REQUEST").count();
    assert_eq!(made, 2, "{text}");
    assert!(
        text.contains(&format!("requests_served: {made},")),
        "the stats count every request the demo made: {text}"
    );
}
