//! The client's record reader against a scripted backend on a loopback socket: bad input
//! (truncated records, wrong version, wrong ids, hostile lengths, refusals) must end in a
//! clear error, never a hang or an unbounded allocation.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fcgi::client::{Address, Backend, Config, Connection, Error, FcgiRequest, Pool, TimeoutKind};
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
        let closes = when != When::AfterRequestStayOpen;
        if closes {
            // The answer and the FIN in one segment (corked until the shutdown), so the
            // client sees the close together with the last record: whether it then
            // thinks the connection reusable does not depend on which thread runs first.
            cork(&s);
        }
        let _ = s.write_all(&bytes);
        if closes {
            let _ = s.shutdown(Shutdown::Write);
        }
        let _ = s.read_to_end(&mut got);
        got
    });
    (addr, h)
}

/// TCP_CORK on `s`: what it writes waits for a full segment or the shutdown.
fn cork(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_cork(true)
        .unwrap_or_else(|e| panic!("TCP_CORK: {e}"));
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
    c.io_timeout = Some(Duration::from_secs(5));
    c
}

/// Sends a request and returns the error, whether `send` or reading the body reports it.
fn send_err(addr: &Address, config: &Config) -> Error {
    let mut conn = Connection::connect(addr, config).unwrap();
    let err = match conn.send(FcgiRequest::new().param("A", "b"), std::io::empty()) {
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
        .send(FcgiRequest::new().param("A", "b"), &b"body!"[..])
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
            .send(FcgiRequest::new(), std::io::empty())
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
    config.io_timeout = Some(Duration::from_millis(300));
    let t0 = Instant::now();
    let err = send_err(&addr, &config);
    assert!(matches!(err, Error::Timeout(TimeoutKind::Io)), "{err}");
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
    let mut resp = conn.send(FcgiRequest::new(), std::io::empty()).unwrap();
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
    let mut resp = conn.send(FcgiRequest::new(), std::io::empty()).unwrap();
    let mut some = [0u8; 7];
    resp.read_exact(&mut some).unwrap();
    assert_eq!(&some, b"partial");
    drop(resp);
    assert!(!conn.is_reusable());
    assert!(matches!(
        conn.send(FcgiRequest::new(), std::io::empty()),
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
    let mut resp = conn.send(FcgiRequest::new(), body).unwrap();
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
    let err = conn.send(FcgiRequest::new(), Failing).unwrap_err();
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

/// The params of each request a scripted backend read, in order.
type Seen = std::sync::Arc<parking_lot::Mutex<Vec<Vec<u8>>>>;

/// What a scripted keep-alive backend does with the request at index `n` (counted over
/// all its connections).
#[derive(Copy, Clone, PartialEq, Eq)]
enum Fate {
    Answer,
    /// Read the whole request, then close the connection without a byte back: a worker
    /// killed while running it.
    DieAfterReading,
    /// Answer, then close the connection while it is idle (a worker recycled between
    /// requests); the close is signalled on the channel once done.
    AnswerThenClose,
    /// Answer after a pause (a slow script).
    AnswerAfter(Duration),
}

/// A script for [`scripted_children`]: the requests numbered in `dying` (from 0) are read
/// and then dropped with their connection; every other one is answered.
fn die_on(dying: &'static [usize]) -> impl Fn(usize, &[u8]) -> Fate + Send + Sync + 'static {
    move |n, _| {
        if dying.contains(&n) {
            Fate::DieAfterReading
        } else {
            Fate::Answer
        }
    }
}

/// A pool of one connection to `addr`, with the tests' I/O deadline.
fn one_conn_pool(addr: Address) -> Pool {
    Pool::builder()
        .backend(Backend::new(addr).max_conns(1))
        .config(quick())
        .build()
}

/// A keep-alive backend serving connections one after another (one "child"), deciding each
/// request's fate with `fate(n)`. Every request it reads is recorded in the returned list.
fn scripted_children(
    children: usize,
    fate: impl Fn(usize, &[u8]) -> Fate + Send + Sync + 'static,
) -> (Address, Seen, std::sync::mpsc::Receiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Address::Tcp(l.local_addr().unwrap());
    let seen: Seen = Default::default();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let fate = std::sync::Arc::new(fate);
    let l = std::sync::Arc::new(l);
    for _ in 0..children {
        let (l, seen, fate, closed_tx) = (l.clone(), seen.clone(), fate.clone(), closed_tx.clone());
        std::thread::spawn(move || {
            // Like a php-fpm child: accept one connection, serve it until it closes.
            while let Ok((mut s, _)) = l.accept() {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut got = Vec::new();
                loop {
                    got.clear();
                    read_request(&mut s, &mut got);
                    let recs = records(&got);
                    if !recs
                        .iter()
                        .any(|(t, _, c)| *t == RecordType::Stdin && c.is_empty())
                    {
                        break; // the client closed
                    }
                    let params: Vec<u8> = recs
                        .iter()
                        .filter(|(t, _, _)| *t == RecordType::Params)
                        .flat_map(|(_, _, c)| c.clone())
                        .collect();
                    let n = {
                        let mut seen = seen.lock();
                        seen.push(params);
                        seen.len() - 1
                    };
                    let params = seen.lock()[n].clone();
                    match fate(n, &params) {
                        Fate::AnswerAfter(pause) => {
                            std::thread::sleep(pause);
                            if s.write_all(&answer(format!("n={n}").as_bytes())).is_err() {
                                break;
                            }
                        }
                        Fate::Answer => {
                            if s.write_all(&answer(format!("n={n}").as_bytes())).is_err() {
                                break;
                            }
                        }
                        Fate::DieAfterReading => break,
                        Fate::AnswerThenClose => {
                            let _ = s.write_all(&answer(format!("n={n}").as_bytes()));
                            let _ = s.shutdown(Shutdown::Both);
                            let _ = closed_tx.send(());
                            break;
                        }
                    }
                }
            }
        });
    }
    (addr, seen, closed_rx)
}

fn tag(seen: &Seen, needle: &[u8]) -> usize {
    seen.lock()
        .iter()
        .filter(|p| p.windows(needle.len()).any(|w| w == needle))
        .count()
}

#[test]
fn a_request_that_may_have_run_is_never_sent_twice() {
    // POST with an empty and a non-empty body, GET marked not idempotent with both, and a
    // GET left idempotent (by its method) whose body was already read, so that it cannot
    // go again: the worker dies after reading the request. It ran once; the caller gets an
    // error that says it may have run, and no second copy ever reaches the backend.
    let cases: [(&str, Option<bool>, &[u8]); 5] = [
        ("POST", None, b""),
        ("POST", None, b"payload"),
        ("GET", Some(false), b""),
        ("GET", Some(false), b"payload"),
        ("GET", None, b"payload"),
    ];
    for (i, (method, idempotent, body)) in cases.into_iter().enumerate() {
        let (addr, seen, _) = scripted_children(1, die_on(&[1]));
        let pool = one_conn_pool(addr);
        pool.send(
            FcgiRequest::new().param("REQUEST_METHOD", "GET"),
            std::io::empty(),
        )
        .unwrap()
        .finish()
        .unwrap();
        let id = format!("case-{i}");
        let mut req = FcgiRequest::new()
            .param("REQUEST_METHOD", method)
            .param("ID", &id)
            .param("CONTENT_LENGTH", body.len().to_string());
        if let Some(yes) = idempotent {
            req = req.idempotent(yes);
        }
        assert_eq!(req.is_idempotent(), method == "GET" && idempotent.is_none());
        let err = pool.send(req, body).unwrap_err();
        assert!(
            matches!(err, Error::BackendClosed { stdout_bytes: 0 } | Error::Io(_)),
            "{method} {body:?}: {err}"
        );
        assert!(err.may_have_run(), "{method} {body:?}: {err}");
        assert!(!err.is_retryable(), "{method} {body:?}: {err}");
        // The backend serves the next request on a new connection; by then it has read
        // everything the client sent.
        pool.send(
            FcgiRequest::new().param("REQUEST_METHOD", "GET"),
            std::io::empty(),
        )
        .unwrap()
        .finish()
        .unwrap();
        assert_eq!(
            tag(&seen, id.as_bytes()),
            1,
            "{method} {body:?} ran {} times",
            tag(&seen, id.as_bytes())
        );
        assert_eq!(seen.lock().len(), 3);
    }
}

#[test]
fn an_idempotent_request_is_sent_again_once_when_its_worker_died() {
    // A GET (idempotent by method) whose worker died after reading it goes again, once, on
    // a new connection: the caller asked for that by its method.
    let (addr, seen, _) = scripted_children(1, die_on(&[1, 3, 4]));
    let pool = one_conn_pool(addr);
    let get = |id: &str| {
        FcgiRequest::new()
            .param("REQUEST_METHOD", "GET")
            .param("ID", id)
    };
    pool.send(get("a"), std::io::empty())
        .unwrap()
        .finish()
        .unwrap();
    let mut text = String::new();
    pool.send(get("b"), std::io::empty())
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "n=2");
    assert_eq!(tag(&seen, b"\x02\x01IDb"), 2);
    // Twice in a row: one resend only, then the error.
    let err = pool.send(get("c"), std::io::empty()).unwrap_err();
    assert!(err.may_have_run(), "{err}");
    assert_eq!(tag(&seen, b"\x02\x01IDc"), 2);
    // A POST marked idempotent is resent as well.
    let (addr, seen, _) = scripted_children(1, die_on(&[1]));
    let pool = one_conn_pool(addr);
    pool.send(get("a"), std::io::empty())
        .unwrap()
        .finish()
        .unwrap();
    let post = FcgiRequest::new()
        .param("REQUEST_METHOD", "POST")
        .param("ID", "p")
        .idempotent(true);
    pool.send(post, std::io::empty()).unwrap().finish().unwrap();
    assert_eq!(tag(&seen, b"\x02\x01IDp"), 2);
}

#[test]
fn a_kept_connection_closed_while_idle_is_replaced_before_sending() {
    // The worker answers, then closes its kept connection (recycled). The next request,
    // a POST, finds the close before writing a byte and goes on a new connection: it was
    // never sent on the closed one, so it runs exactly once.
    let (addr, seen, closed) = scripted_children(1, |n, _| {
        if n == 0 {
            Fate::AnswerThenClose
        } else {
            Fate::Answer
        }
    });
    let pool = one_conn_pool(addr.clone());
    pool.send(FcgiRequest::new(), std::io::empty())
        .unwrap()
        .finish()
        .unwrap();
    closed.recv_timeout(Duration::from_secs(10)).unwrap();
    let post = FcgiRequest::new()
        .param("REQUEST_METHOD", "POST")
        .param("ID", "x");
    let mut text = String::new();
    pool.send(post, &b"payload"[..])
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "n=1");
    assert_eq!(tag(&seen, b"\x02\x01IDx"), 1);
    let s = &pool.stats()[0];
    assert_eq!((s.connects, s.reuses), (2, 0), "{s:?}");

    // On the caller's own connection the same close is a typed error that says the
    // request was not sent.
    let (addr, seen, closed) = scripted_children(1, |_, _| Fate::AnswerThenClose);
    let mut conn = Connection::connect(&addr, &quick()).unwrap();
    conn.send(FcgiRequest::new(), std::io::empty())
        .unwrap()
        .finish()
        .unwrap();
    closed.recv_timeout(Duration::from_secs(10)).unwrap();
    let err = conn
        .send(FcgiRequest::new().param("ID", "y"), std::io::empty())
        .unwrap_err();
    assert!(matches!(err, Error::NotSent(_)), "{err}");
    assert!(!err.may_have_run() && err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("before the request was sent"),
        "{err}"
    );
    assert_eq!(seen.lock().len(), 1);
}

#[test]
fn the_pool_learns_how_many_connections_the_backend_accepts() {
    // Two "children", each serving one kept connection and accepting the next only when it
    // closes (PHP-FPM's model, which it does not announce). A default pool (8 connections)
    // with 6 callers leaves 4 connections in the listen queue: their requests must not be
    // resent (they run once a child takes them); the pool lowers its bound to the 2
    // connections really answered, closes kept ones until the waiting ones are accepted,
    // and every request succeeds exactly once.
    let (addr, seen, _) = scripted_children(2, |_, _| Fate::Answer);
    let pool = Pool::builder()
        .backend(Backend::new(addr))
        .config(quick())
        .build();
    assert_eq!(pool.stats()[0].limit, 8);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (pool, barrier) = (pool.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..20 {
                    let req = FcgiRequest::new()
                        .param("REQUEST_METHOD", "POST")
                        .param("ID", format!("{t}-{i};"));
                    pool.send(req, std::io::empty())
                        .unwrap_or_else(|e| panic!("{t}-{i}: {e}"))
                        .finish()
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = &pool.stats()[0];
    assert_eq!(s.limit, 2, "{s:?}");
    assert_eq!(s.configured_limit, 8, "{s:?}");
    assert!(s.unanswered >= 1, "{s:?}");
    assert!(s.busy + s.idle <= 2, "{s:?}");
    assert_eq!(seen.lock().len(), 120);
    for t in 0..6 {
        for i in 0..20 {
            assert_eq!(tag(&seen, format!("{t}-{i};").as_bytes()), 1, "{t}-{i}");
        }
    }

    // An explicit bound is the caller's word: it is not lowered, even when it is too high
    // (three against two children). The connection left in the queue is counted, and its
    // request waits out the I/O timeout instead, as the caller chose.
    let (addr, seen, _) = scripted_children(2, |_, _| Fate::Answer);
    let mut config = quick();
    config.io_timeout = Some(Duration::from_millis(800));
    let pool = Pool::builder()
        .backend(Backend::new(addr).max_conns(3))
        .config(config)
        .log(false)
        .build();
    let (a, b) = (pool.get().unwrap(), pool.get().unwrap());
    let mut c = pool.get().unwrap();
    drop(a);
    let mut pinned = pool.get().unwrap(); // a is idle in the pool: reused, keeping a child
    let serve = |conn: &mut fcgi::client::PooledConnection| {
        conn.send(FcgiRequest::new(), std::io::empty())
            .unwrap()
            .finish()
            .unwrap()
    };
    let waiting = std::thread::spawn(move || {
        c.send(FcgiRequest::new().param("ID", "c"), std::io::empty())
            .unwrap_err()
    });
    let mut b = b;
    while !waiting.is_finished() {
        serve(&mut pinned);
        serve(&mut b);
    }
    let err = waiting.join().unwrap();
    assert!(matches!(err, Error::Timeout(TimeoutKind::Io)), "{err}");
    let s = &pool.stats()[0];
    assert_eq!((s.limit, s.configured_limit), (3, 3), "{s:?}");
    assert_eq!(s.unanswered, 1, "{s:?}");
    assert_eq!(tag(&seen, b"\x02\x01IDc"), 0);
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
    a.send(FcgiRequest::new(), std::io::empty())
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
        let pool2 = pool.clone();
        let order = order.clone();
        threads.push(std::thread::spawn(move || {
            let conn = pool2.get().unwrap();
            order.lock().push(i);
            drop(conn);
        }));
        // Each waiter is in the queue before the next one arrives: arrival order is known,
        // not guessed from sleeps.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.waiting() != i + 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "waiter {i} never queued"
            );
            std::thread::yield_now();
        }
    }
    drop(first);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock(), [0, 1, 2, 3, 4]);
    let s = &pool.stats()[0];
    assert_eq!((s.connects, s.reuses), (1, 5), "{s:?}");
}

#[test]
fn a_slow_first_answer_does_not_shrink_the_pool_for_good() {
    // Eight children: the backend accepts every connection. A slow script on a new
    // connection, while another connection is served, looks like a connection left in the
    // listen queue for a while: the bound drops to what was answered. When the slow answer
    // comes, the backend has answered more connections than that bound, which a full
    // backend cannot do: the lowering is undone.
    let (addr, _, _) = scripted_children(8, |_, params| {
        if params.windows(4).any(|w| w == b"SLOW") {
            Fate::AnswerAfter(Duration::from_millis(700))
        } else {
            Fate::Answer
        }
    });
    let pool = Pool::builder()
        .backend(Backend::new(addr))
        .config(quick())
        .log(false)
        .build();
    let mut held = pool.get().unwrap();
    held.send(FcgiRequest::new(), std::io::empty())
        .unwrap()
        .finish()
        .unwrap();
    let slow = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            pool.send(FcgiRequest::new().param("SLOW", "1"), std::io::empty())
                .unwrap()
                .finish()
                .unwrap()
        })
    };
    let mut lowest = usize::MAX;
    while !slow.is_finished() {
        held.send(FcgiRequest::new(), std::io::empty())
            .unwrap()
            .finish()
            .unwrap();
        lowest = lowest.min(pool.stats()[0].limit);
    }
    slow.join().unwrap();
    let s = &pool.stats()[0];
    assert_eq!(s.unanswered, 1, "{s:?}");
    assert_eq!(
        lowest, 1,
        "the slow answer was never taken for a full backend: {s:?}"
    );
    assert_eq!(s.limit, 8, "{s:?}");
}

#[test]
fn a_leased_connection_closed_by_the_backend_is_seen_before_its_request_is_sent() {
    // The pool's pick looks at an idle connection just before a request starts on it, and
    // that start then skips its own look. A connection handed to the caller instead may
    // start its request much later: that start must look again.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Address::Tcp(l.local_addr().unwrap());
    let (close_tx, close_rx) = std::sync::mpsc::channel::<()>();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        read_request(&mut s, &mut got);
        s.write_all(&answer(b"first")).unwrap();
        // Kept open and idle until told: then closed, like a recycled php-fpm child.
        let _ = close_rx.recv();
        s.shutdown(Shutdown::Both).unwrap();
        closed_tx.send(()).unwrap();
    });
    let pool = one_conn_pool(addr);
    pool.send(FcgiRequest::new(), std::io::empty())
        .unwrap()
        .finish()
        .unwrap();
    let mut leased = pool.get().unwrap(); // picked (and looked at) while alive
    close_tx.send(()).unwrap();
    closed_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let err = leased
        .send(FcgiRequest::new(), std::io::empty())
        .unwrap_err();
    assert!(matches!(err, Error::NotSent(_)), "{err}");
    assert!(!err.may_have_run(), "{err}");
}
