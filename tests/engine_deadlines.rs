//! Deadlines of the engine that a peer cannot stretch, and a graceful stop that keeps what
//! it owes: a request head has one deadline however its bytes trickle in, and a response
//! still going out to a slow reader when the server stops is finished (up to the shutdown
//! timeout) before `serve` returns.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use fcgi::protocol::{decode_record, encode_params, RecordType, Role, Status};

#[test]
fn a_head_that_trickles_in_is_cut_off_at_one_deadline() {
    let mut cfg = config(1);
    cfg.read_timeout = Some(Duration::from_millis(400));
    let srv = TestServer::start(cfg, echo);
    let mut head = Raw::begin_bytes(1, Role::Responder, false);
    let mut params = Vec::new();
    encode_params(&mut params, 1, [(&b"NAME"[..], &[b'v'; 200][..])]);
    head.extend_from_slice(&params[..params.len() - 8]); // never the end of the params
    let mut c = srv.connect();
    c.s.set_nonblocking(false).unwrap();
    // One byte every 50 ms: each would restart a per-read timeout; the head's deadline is
    // one, so the server closes the connection long before the bytes run out (10 s).
    let start = Instant::now();
    let mut closed = false;
    for b in head.iter().cycle().take(200) {
        if c.s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut probe = [0u8; 1];
        c.s.set_nonblocking(true).unwrap();
        let r = c.s.read(&mut probe);
        c.s.set_nonblocking(false).unwrap();
        if matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "a trickling head held its connection for {:?}",
        start.elapsed()
    );
    // And the only worker was never taken: a normal request is served.
    let mut ok = srv.connect();
    assert_eq!(ok.request(1, false, &[], b"next").body(), b"\nnext");
}

#[test]
fn a_stop_waits_for_output_owed_to_a_slow_reader_up_to_the_shutdown_timeout() {
    // A Unix socket holds about `net.core.wmem_default` bytes in flight. The handler writes
    // three full records (they fit, so its blocking writes complete) and leaves 40 KB in its
    // buffer: when it returns, that rest and END_REQUEST do not fit, and the engine owes
    // them to a peer that reads nothing.
    let wmem: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let record = 65528;
    let blocking = 3 * record;
    assert!(
        blocking + 8 * 1024 < wmem,
        "wmem_default {wmem} too small for this test"
    );
    let total = blocking + (wmem - blocking) + 40_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let mut cfg = config(1);
    cfg.handle_signals = false;
    cfg.shutdown_timeout = Duration::from_secs(2);
    let server = fcgi::Server::bind(path.to_str().unwrap())
        .unwrap()
        .config_with(cfg);
    let stop = server.shutdown_handle();
    let stats = server.stats_handle();
    let t = std::thread::spawn(move || {
        server.serve(move |req| {
            let piece = [b'x'; 1000];
            let mut left = total;
            while left > 0 {
                let n = left.min(piece.len());
                req.stdout().write_all(&piece[..n])?;
                left -= n;
            }
            Ok(())
        })
    });
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.write_all(&Raw::request_bytes(1, false, &[], b""))
        .unwrap();
    eventually("the handler to return", || {
        stats.snapshot().requests_served == 1
    });
    eventually("its worker to be free", || {
        stats.snapshot().workers_busy == 0
    });
    assert_eq!(
        stats.snapshot().connections_open,
        1,
        "the response is still owed"
    );
    let stopped = Instant::now();
    stop.shutdown();
    // Nothing is read: `serve` must not return before the shutdown timeout.
    t.join().unwrap().unwrap();
    let waited = stopped.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "serve returned after {waited:?} with output still owed"
    );
    drop(c);
}

#[test]
fn a_stop_lets_a_slow_reader_have_the_whole_response() {
    const BIG: usize = 16 << 20;
    let mut cfg = config(1);
    cfg.handle_signals = false;
    cfg.shutdown_timeout = Duration::from_secs(20);
    let server = fcgi::Server::bind("127.0.0.1:0").unwrap().config_with(cfg);
    let addr = server.local_addrs()[0].clone();
    let stop = server.shutdown_handle();
    let stats = server.stats_handle();
    let t = std::thread::spawn(move || {
        server.serve(|req| {
            req.stdout()
                .write_all(b"Content-Type: text/plain\r\n\r\n")?;
            req.stdout().write_all(&vec![b'y'; BIG])
        })
    });
    let mut c = Raw::connect(&addr);
    c.send(&Raw::request_bytes(1, false, &[], b""));
    let mut early = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while stats.snapshot().requests_served == 0 {
        c.s.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        if let Ok(n) = c.s.read(&mut buf) {
            early.extend_from_slice(&buf[..n]);
        }
    }
    stop.shutdown();
    c.s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    c.s.read_to_end(&mut rest).unwrap();
    early.extend_from_slice(&rest);
    // The whole stream: the stdout records add up, and END_REQUEST closes it.
    let (mut stdout, mut ended) = (0usize, false);
    let mut rest = &early[..];
    while let Ok(Status::Complete((rec, used))) = decode_record(rest) {
        match rec.header.record_type {
            RecordType::Stdout => stdout += rec.content.len(),
            RecordType::EndRequest => ended = true,
            _ => {}
        }
        rest = &rest[used..];
    }
    assert!(rest.is_empty(), "{} bytes left over", rest.len());
    assert_eq!(stdout, BIG + "Content-Type: text/plain\r\n\r\n".len());
    assert!(ended, "END_REQUEST arrived");
    t.join().unwrap().unwrap();
}
