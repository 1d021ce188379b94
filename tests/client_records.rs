//! The client's record reader against a scripted backend on a loopback socket: bad input
//! (truncated records, wrong version, wrong ids, hostile lengths, refusals) must end in a
//! clear error, never a hang or an unbounded allocation.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fcgi::client::{Address, Backend, Config, Connection, Error, Pool, Request, TimeoutKind};
use fcgi::protocol::{
    decode_record, encode_end_request, encode_get_values_result, encode_record, encode_stream_end,
    Header, ProtocolError, ProtocolStatus, RecordType, Status,
};

/// When the scripted backend writes its bytes.
#[derive(Copy, Clone, PartialEq, Eq)]
enum When {
    /// After reading the request up to the empty STDIN record; then it closes its side.
    AfterRequest,
    /// At once, without reading; then it closes its side.
    Immediately,
    /// After the request, then it stays open (reading until the client closes).
    AfterRequestStayOpen,
    /// At once, then it closes its sending side and never reads (holding the socket 3 s).
    ImmediatelyNeverRead,
}

/// Starts a one-connection backend; the handle yields every byte the client sent.
fn backend(when: When, bytes: Vec<u8>) -> (Address, JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Address::Tcp(l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        if when == When::ImmediatelyNeverRead {
            let _ = s.write_all(&bytes);
            let _ = s.shutdown(Shutdown::Write);
            std::thread::sleep(Duration::from_secs(3));
            return got;
        }
        if when != When::Immediately {
            read_request(&mut s, &mut got);
        }
        let _ = s.write_all(&bytes);
        if when != When::AfterRequestStayOpen {
            let _ = s.shutdown(Shutdown::Write);
        }
        let _ = s.read_to_end(&mut got);
        got
    });
    (addr, h)
}

/// Reads records until the empty STDIN record.
fn read_request(s: &mut TcpStream, got: &mut Vec<u8>) {
    let mut buf = [0u8; 65536];
    loop {
        let mut rest = &got[..];
        while let Ok(Status::Complete((rec, used))) = decode_record(rest) {
            if rec.header.record_type == RecordType::Stdin && rec.content.is_empty() {
                return;
            }
            rest = &rest[used..];
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The records in `wire`, as (type, id, content).
fn records(wire: &[u8]) -> Vec<(RecordType, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = wire;
    while let Ok(Status::Complete((rec, used))) = decode_record(rest) {
        out.push((
            rec.header.record_type,
            rec.header.request_id,
            rec.content.to_vec(),
        ));
        rest = &rest[used..];
    }
    out
}

fn stdout(id: u16, bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_record(&mut v, RecordType::Stdout, id, bytes);
    v
}

fn end(id: u16, app: u32, status: ProtocolStatus) -> Vec<u8> {
    let mut v = Vec::new();
    encode_end_request(&mut v, id, app, status);
    v
}

fn quick() -> Config {
    let mut c = Config::default();
    c.idle_timeout = Some(Duration::from_secs(5));
    c
}

/// Sends a request and returns the error, whether `send` or reading the body reports it.
fn send_err(addr: &Address, config: &Config) -> Error {
    let mut conn = Connection::connect(addr, config).unwrap();
    let err = match conn.send(Request::new().param("A", "b"), std::io::empty()) {
        Ok(mut resp) => {
            let mut v = Vec::new();
            let e = resp
                .read_to_end(&mut v)
                .expect_err("response read to the end without error");
            let inner = e.into_inner().expect("inner error");
            *inner.downcast::<Error>().expect("client Error")
        }
        Err(e) => e,
    };
    assert!(!conn.is_reusable(), "connection reusable after {err}");
    err
}

#[test]
fn a_well_formed_answer_with_split_head_and_interleaved_records() {
    let mut wire = Vec::new();
    // A management record (id 0) and stderr before stdout; the head split byte by byte.
    encode_record(
        &mut wire,
        RecordType::GetValuesResult,
        0,
        b"\x0f\x01FCGI_MPXS_CONNS0",
    );
    encode_record(&mut wire, RecordType::Stderr, 1, b"warn 1\n");
    for b in b"Status: 201 Made\r\nX-A: 1\r\n\r\nhello " {
        wire.extend(stdout(1, &[*b]));
    }
    encode_record(&mut wire, RecordType::Stderr, 1, b"warn 2\n");
    wire.extend(stdout(1, b"world"));
    encode_stream_end(&mut wire, RecordType::Stdout, 1);
    wire.extend(end(1, 7, ProtocolStatus::RequestComplete));
    let (addr, h) = backend(When::AfterRequestStayOpen, wire);
    let mut conn = Connection::connect(&addr, &quick()).unwrap();
    let mut resp = conn
        .send(Request::new().param("A", "b"), &b"body!"[..])
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.head().reason(), Some("Made"));
    assert_eq!(resp.header("x-a"), Some("1"));
    let mut body = String::new();
    resp.read_to_string(&mut body).unwrap();
    assert_eq!(body, "hello world");
    assert_eq!(resp.stderr(), b"warn 1\nwarn 2\n");
    assert_eq!(resp.app_status(), Some(7));
    assert_eq!(
        resp.protocol_status(),
        Some(ProtocolStatus::RequestComplete)
    );
    drop(resp);
    assert!(conn.is_reusable());
    drop(conn);
    let sent = records(&h.join().unwrap());
    let expect: Vec<(RecordType, u16, Vec<u8>)> = vec![
        (RecordType::BeginRequest, 1, vec![0, 1, 1, 0, 0, 0, 0, 0]), // responder, KEEP_CONN
        (RecordType::Params, 1, b"\x01\x01Ab".to_vec()),
        (RecordType::Params, 1, vec![]),
        (RecordType::Stdin, 1, b"body!".to_vec()),
        (RecordType::Stdin, 1, vec![]),
    ];
    assert_eq!(sent, expect);
}

#[test]
fn truncated_header_and_truncated_content() {
    let mut wire = stdout(1, b"Content-Type: a/b\r\n\r\n");
    wire.extend_from_slice(&[1, 6, 0]); // three bytes of a header, then EOF
    let (addr, _h) = backend(When::AfterRequest, wire);
    let err = send_err(&addr, &quick());
    assert!(
        matches!(err, Error::BackendClosed { stdout_bytes: 21 }),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("closed the connection before FCGI_END_REQUEST"));

    let mut wire = stdout(1, b"X: y\n\n");
    wire.extend_from_slice(&Header::new(RecordType::Stdout, 1, 100).encode());
    wire.extend_from_slice(&[b'z'; 10]); // 10 of 100 announced bytes
    let (addr, _h) = backend(When::AfterRequest, wire);
    let err = send_err(&addr, &quick());
    assert!(matches!(err, Error::BackendClosed { .. }), "{err}");

    // Nothing at all: closed before answering.
    let (addr, _h) = backend(When::AfterRequest, Vec::new());
    let err = send_err(&addr, &quick());
    assert!(
        matches!(err, Error::BackendClosed { stdout_bytes: 0 }),
        "{err}"
    );
}

#[test]
fn wrong_version_is_a_protocol_error() {
    let (addr, _h) = backend(When::AfterRequest, b"HTTP/1.1 200 OK\r\n\r\n".to_vec());
    let err = send_err(&addr, &quick());
    assert!(
        matches!(err, Error::Protocol(ProtocolError::BadVersion(b'H'))),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("backend sent a malformed record"));

    // Mid-body, after a good head.
    let mut wire = stdout(1, b"A: b\n\nok");
    wire.extend_from_slice(&[2, 6, 0, 1, 0, 0, 0, 0]);
    let (addr, _h) = backend(When::AfterRequest, wire);
    let err = send_err(&addr, &quick());
    assert!(
        matches!(err, Error::Protocol(ProtocolError::BadVersion(2))),
        "{err}"
    );
}

#[test]
fn records_for_a_wrong_id_or_of_a_wrong_type() {
    let (addr, _h) = backend(
        When::AfterRequest,
        end(7, 0, ProtocolStatus::RequestComplete),
    );
    let err = send_err(&addr, &quick());
    assert!(
        matches!(
            err,
            Error::UnexpectedRecord {
                record_type: 3,
                request_id: 7,
                expected_id: 1
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "backend sent a record of type 3 for request id 7 while request 1 was in progress"
    );

    let mut wire = stdout(1, b"A: b\n\n");
    encode_record(&mut wire, RecordType::Stdin, 1, b"??");
    let (addr, _h) = backend(When::AfterRequest, wire);
    let err = send_err(&addr, &quick());
    assert!(
        matches!(err, Error::UnexpectedRecord { record_type: 5, .. }),
        "{err}"
    );

    // END_REQUEST whose body is not 8 bytes.
    let mut wire = Vec::new();
    encode_record(&mut wire, RecordType::EndRequest, 1, &[0; 7]);
    let (addr, _h) = backend(When::AfterRequest, wire);
    let err = send_err(&addr, &quick());
    assert!(
        matches!(
            err,
            Error::Protocol(ProtocolError::BadBodyLength {
                record_type: 3,
                len: 7
            })
        ),
        "{err}"
    );
}

#[test]
fn refusals_in_end_request() {
    type Check = fn(&Error) -> bool;
    let cases: [(ProtocolStatus, Check); 4] = [
        (ProtocolStatus::Overloaded, |e| {
            matches!(e, Error::Overloaded { app_status: 9 })
        }),
        (ProtocolStatus::CantMpxConn, |e| {
            matches!(e, Error::CantMpxConn)
        }),
        (ProtocolStatus::UnknownRole, |e| {
            matches!(e, Error::UnknownRole)
        }),
        (ProtocolStatus::Unknown(42), |e| {
            matches!(e, Error::UnknownProtocolStatus(42))
        }),
    ];
    for (status, check) in cases {
        // Refused at once, before the request was read (as a busy server does).
        let (addr, _h) = backend(When::Immediately, end(1, 9, status));
        let mut conn = Connection::connect(&addr, &quick()).unwrap();
        let err = conn
            .send(Request::new(), std::io::empty())
            .expect_err("refusal accepted");
        assert!(check(&err), "{status:?}: {err}");
    }
    let (addr, _h) = backend(When::Immediately, end(1, 0, ProtocolStatus::Overloaded));
    let err = send_err(&addr, &quick());
    assert!(err.to_string().contains("FCGI_OVERLOADED"));
    assert!(err.is_retryable());
}

#[test]
fn end_before_the_head_is_complete() {
    let mut wire = stdout(1, b"Content-Type: text/plain\r\n");
    wire.extend(end(1, 0, ProtocolStatus::RequestComplete));
    let (addr, _h) = backend(When::AfterRequest, wire);
    let err = send_err(&addr, &quick());
    assert!(matches!(err, Error::IncompleteHead), "{err}");

    let mut wire = stdout(1, b"no colon in this line\n\nbody");
    wire.extend(end(1, 0, ProtocolStatus::RequestComplete));
    let (addr, _h) = backend(When::AfterRequest, wire);
    let err = send_err(&addr, &quick());
    assert!(matches!(err, Error::BadHead(_)), "{err}");
}

#[test]
fn hostile_lengths_are_bounded() {
    // A head that never ends: many full-size records. Refused at the limit, not buffered.
    let mut wire = Vec::new();
    for _ in 0..64 {
        wire.extend(stdout(1, &[b'x'; 65535]));
    }
    let (addr, _h) = backend(When::AfterRequest, wire);
    let mut config = quick();
    config.max_head_bytes = 100_000;
    let err = send_err(&addr, &config);
    assert!(
        matches!(err, Error::HeadTooLarge { limit: 100_000 }),
        "{err}"
    );

    // The same in one-byte records with no newline: each byte is looked at once, so this
    // ends quickly rather than rescanning the head for every record.
    let mut wire = Vec::new();
    for _ in 0..70_000 {
        wire.extend(stdout(1, b"x"));
    }
    let (addr, _h) = backend(When::AfterRequest, wire);
    let t0 = Instant::now();
    let err = send_err(&addr, &quick());
    assert!(matches!(err, Error::HeadTooLarge { limit: 65536 }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

    // A header announcing 65535 bytes and 255 of padding, then silence: the idle timeout
    // ends the wait, and the buffer is one record at most.
    let mut wire = stdout(1, b"A: b\n\n");
    let mut h = Header::new(RecordType::Stdout, 1, 65535);
    h.padding_length = 255;
    wire.extend_from_slice(&h.encode());
    wire.extend_from_slice(&[0; 1000]);
    let (addr, _h) = backend(When::AfterRequestStayOpen, wire);
    let mut config = quick();
    config.idle_timeout = Some(Duration::from_millis(300));
    let t0 = Instant::now();
    let err = send_err(&addr, &config);
    assert!(matches!(err, Error::Timeout(TimeoutKind::Idle)), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3));

    // Stderr flood: kept to the limit, counted beyond it.
    let mut wire = Vec::new();
    for _ in 0..40 {
        encode_record(&mut wire, RecordType::Stderr, 1, &[b'e'; 65535]);
    }
    wire.extend(stdout(1, b"A: b\n\nok"));
    wire.extend(end(1, 0, ProtocolStatus::RequestComplete));
    let (addr, _h) = backend(When::AfterRequest, wire);
    let mut conn = Connection::connect(&addr, &quick()).unwrap();
    let mut resp = conn.send(Request::new(), std::io::empty()).unwrap();
    std::io::copy(&mut resp, &mut std::io::sink()).unwrap();
    assert_eq!(resp.stderr().len(), 64 * 1024);
    assert_eq!(resp.stderr_dropped(), 40 * 65535 - 64 * 1024);
}

#[test]
fn dropping_a_response_sends_abort_and_closes() {
    let mut wire = stdout(1, b"A: b\n\npartial");
    wire.extend(stdout(1, &[b'x'; 10_000]));
    let (addr, h) = backend(When::AfterRequestStayOpen, wire);
    let mut conn = Connection::connect(&addr, &quick()).unwrap();
    let mut resp = conn.send(Request::new(), std::io::empty()).unwrap();
    let mut some = [0u8; 7];
    resp.read_exact(&mut some).unwrap();
    assert_eq!(&some, b"partial");
    drop(resp);
    assert!(!conn.is_reusable());
    assert!(matches!(
        conn.send(Request::new(), std::io::empty()),
        Err(Error::ConnectionUnusable)
    ));
    // The backend saw ABORT_REQUEST for id 1 after the request, then the close
    // (read_to_end in the backend returned, so the join does not hang).
    let sent = records(&h.join().unwrap());
    assert_eq!(
        sent.last().unwrap(),
        &(RecordType::AbortRequest, 1, Vec::new()),
        "{sent:?}"
    );
}

#[test]
fn app_that_ends_without_reading_its_input() {
    // The backend answers at once and never reads the (large) body: the client must not
    // block writing it, and the connection must not be reused.
    let mut wire = stdout(1, b"Status: 413\r\n\r\ntoo big");
    wire.extend(end(1, 0, ProtocolStatus::RequestComplete));
    let (addr, _h) = backend(When::ImmediatelyNeverRead, wire);
    let t0 = Instant::now();
    let mut conn = Connection::connect(&addr, &quick()).unwrap();
    let body = std::io::repeat(b'u').take(64 << 20);
    let mut resp = conn.send(Request::new(), body).unwrap();
    assert_eq!(resp.status(), 413);
    let mut text = String::new();
    resp.read_to_string(&mut text).unwrap();
    assert_eq!(text, "too big");
    assert!(t0.elapsed() < Duration::from_secs(2), "blocked on the body");
    drop(resp);
    assert!(!conn.is_reusable());
}

#[test]
fn body_read_error_is_reported_as_the_callers() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let (addr, _h) = backend(When::AfterRequestStayOpen, Vec::new());
    let mut conn = Connection::connect(&addr, &quick()).unwrap();
    let err = conn.send(Request::new(), Failing).unwrap_err();
    assert!(matches!(err, Error::Body(_)), "{err}");
    assert!(err.to_string().contains("disk on fire"));
}

#[test]
fn request_timeout_holds_against_a_trickling_backend() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Address::Tcp(l.local_addr().unwrap());
    let _h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        read_request(&mut s, &mut got);
        let _ = s.write_all(&stdout(1, b"A: b\n\n"));
        // One byte every 20 ms for up to 5 s: never idle, never done.
        for _ in 0..250 {
            if s.write_all(&stdout(1, b".")).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut config = quick();
    config.request_timeout = Some(Duration::from_millis(400));
    let t0 = Instant::now();
    let err = send_err(&addr, &config);
    assert!(matches!(err, Error::Timeout(TimeoutKind::Request)), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

/// One whole answer for request id 1.
fn answer(body: &[u8]) -> Vec<u8> {
    let mut wire = stdout(1, b"Content-Type: text/plain\r\n\r\n");
    wire.extend(stdout(1, body));
    encode_stream_end(&mut wire, RecordType::Stdout, 1);
    wire.extend(end(1, 0, ProtocolStatus::RequestComplete));
    wire
}

#[test]
fn pool_resends_when_a_kept_connection_was_closed_by_the_backend() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Address::Tcp(l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        // First connection: one answer, then the next request is read and the connection
        // closed without a reply (a worker recycled between requests).
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        read_request(&mut s, &mut got);
        s.write_all(&answer(b"first")).unwrap();
        let mut got = Vec::new();
        read_request(&mut s, &mut got);
        drop(s);
        // Second connection: the resent request.
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        read_request(&mut s, &mut got);
        s.write_all(&answer(b"second")).unwrap();
        let _ = s.read_to_end(&mut got);
        records(&got)
    });
    let pool = Pool::builder()
        .backend(Backend::new(addr).max_conns(1))
        .config(quick())
        .build();
    let mut text = String::new();
    pool.send(Request::new(), std::io::empty())
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "first");
    text.clear();
    pool.send(Request::new().param("N", "2"), std::io::empty())
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "second");
    let s = &pool.stats()[0];
    assert_eq!((s.connects, s.reuses), (2, 1), "{s:?}");
    drop(pool);
    let resent = h.join().unwrap();
    assert!(resent.contains(&(RecordType::Params, 1, b"\x01\x01N2".to_vec())));

    // With a body already partly sent, the request is not resent: the caller gets the error.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Address::Tcp(l.local_addr().unwrap());
    let _h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        read_request(&mut s, &mut got);
        s.write_all(&answer(b"first")).unwrap();
        let mut got = Vec::new();
        read_request(&mut s, &mut got);
        drop(s);
        // A second connection would be accepted here, but must not be used.
        let _ = l.accept();
    });
    let pool = Pool::builder()
        .backend(Backend::new(addr).max_conns(1))
        .config(quick())
        .build();
    pool.send(Request::new(), std::io::empty())
        .unwrap()
        .finish()
        .unwrap();
    let err = pool.send(Request::new(), &b"payload"[..]).unwrap_err();
    assert!(
        matches!(err, Error::BackendClosed { .. } | Error::Io(_)),
        "{err}"
    );
    assert_eq!(pool.stats()[0].connects, 1);
}

#[test]
fn pool_learns_the_backend_limit_from_get_values() {
    // Every connection: a GET_VALUES is answered with FCGI_MAX_CONNS=2 and closed; requests
    // are answered until the client closes.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Address::Tcp(l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 65536];
                loop {
                    let mut rest = &got[..];
                    let mut consumed = 0;
                    while let Ok(Status::Complete((rec, used))) = decode_record(rest) {
                        consumed += used;
                        rest = &rest[used..];
                        match rec.header.record_type {
                            RecordType::GetValues => {
                                let mut out = Vec::new();
                                encode_get_values_result(
                                    &mut out,
                                    &[("FCGI_MAX_CONNS", "2"), ("FCGI_MPXS_CONNS", "0")],
                                );
                                let _ = s.write_all(&out);
                                return;
                            }
                            RecordType::Stdin if rec.content.is_empty() => {
                                let _ = s.write_all(&answer(b"ok"));
                            }
                            _ => {}
                        }
                    }
                    got.drain(..consumed);
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    let pool = Pool::builder()
        .backend(Backend::new(addr))
        .max_conns_per_backend(8)
        .learn_backend_limits(true)
        .wait_timeout(Some(Duration::from_millis(200)))
        .config(quick())
        .build();
    assert_eq!(pool.stats()[0].limit, 8);
    let mut a = pool.get().unwrap();
    assert_eq!(pool.stats()[0].limit, 2);
    let b = pool.get().unwrap();
    let err = pool.get().unwrap_err();
    assert!(
        matches!(err, Error::Timeout(TimeoutKind::PoolWait)),
        "{err}"
    );
    let mut text = String::new();
    a.send(Request::new(), std::io::empty())
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "ok");
    drop(b);
    drop(a);
    assert_eq!(pool.stats()[0].idle, 2);
}

#[test]
fn pool_waiters_are_served_in_arrival_order() {
    // A backend that accepts and holds connections; leases need no request.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Address::Tcp(l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            match s {
                Ok(s) => held.push(s),
                Err(_) => return,
            }
        }
    });
    let pool = Pool::builder()
        .backend(Backend::new(addr).max_conns(1))
        .wait_timeout(Some(Duration::from_secs(10)))
        .build();
    let first = pool.get().unwrap();
    let order = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..5 {
        let pool = pool.clone();
        let order = order.clone();
        threads.push(std::thread::spawn(move || {
            let conn = pool.get().unwrap();
            order.lock().push(i);
            std::thread::sleep(Duration::from_millis(20));
            drop(conn);
        }));
        // Let each waiter queue before the next arrives.
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(first);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock(), [0, 1, 2, 3, 4]);
    let s = &pool.stats()[0];
    assert_eq!((s.connects, s.reuses), (1, 5), "{s:?}");
}
