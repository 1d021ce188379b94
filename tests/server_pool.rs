//! The worker pool: keep-alive without stalls, accept on demand, panics, multiplexing,
//! stats, graceful shutdown.

mod common;
mod support;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use fcgi::protocol::{
    encode_params, encode_record, encode_stream_end, ProtocolStatus, RecordType, Role,
};

#[test]
fn idle_kept_alive_connections_do_not_pin_the_only_worker() {
    // The libfcgi / PHP-FPM stall: one worker, several kept-alive connections from a web
    // server's pool; a request on a new connection must still be served.
    let srv = TestServer::start(config(1), echo);
    let mut idle: Vec<Raw> = (0..4).map(|_| srv.connect()).collect();
    for (i, c) in idle.iter_mut().enumerate() {
        let r = c.request(1, true, &[("I", &i.to_string())], b"");
        assert_eq!(r.body(), format!("I={i}\n\n").as_bytes());
    }
    let mut fresh = srv.connect();
    assert_eq!(
        fresh.request(1, true, &[], b"not stalled").body(),
        b"\nnot stalled"
    );
    // And each idle one still works, in any order.
    for c in idle.iter_mut().rev() {
        assert_eq!(c.request(1, true, &[], b"again").body(), b"\nagain");
    }
    let s = srv.stats.snapshot();
    assert_eq!(s.max_workers_busy, 1);
    assert!(s.connections_open >= 5);
}

#[test]
fn two_hundred_concurrent_requests_with_four_workers_all_succeed() {
    let srv = TestServer::start(config(4), |req| {
        std::thread::sleep(Duration::from_millis(2));
        echo(req)
    });
    let addr = srv.addr.clone();
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = Raw::connect(&addr);
                let body = format!("client {i}");
                let r = c.request(1, true, &[], body.as_bytes());
                assert_eq!(r.body(), format!("\n{body}").as_bytes());
                assert_eq!(r.protocol_status(), ProtocolStatus::RequestComplete);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Counted once END_REQUEST is out, a moment after the client may read it.
    eventually("200 served", || srv.stats.snapshot().requests_served == 200);
    let s = srv.stats.snapshot();
    assert_eq!(s.refused, 0);
    assert!(s.max_workers_busy <= 4);
}

/// The length of a TCP listening socket's accept queue (`tcpi_unacked` of `TCP_INFO`).
fn accept_queue_len(fd: std::os::fd::BorrowedFd<'_>) -> u32 {
    use std::os::fd::AsRawFd;
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid option buffer and length.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_unacked
}

#[test]
fn a_busy_server_leaves_new_connections_in_the_kernel_queue_then_serves_them() {
    // Accept on demand: with its only worker busy, the server takes no connection (so
    // other processes on the same socket could); the waiting one is served afterwards,
    // never refused.
    use std::os::fd::AsFd;
    let gate = Gate::default();
    let g = gate.clone();
    let listener = fcgi::server::Listener::bind("127.0.0.1:0").unwrap();
    let watch = listener.as_fd().try_clone_to_owned().unwrap();
    let mut cfg = config(1);
    cfg.handle_signals = false;
    let server = fcgi::Server::from_listener(listener)
        .unwrap()
        .config_with(cfg);
    let addr = server.local_addrs()[0].clone();
    let stats = server.stats_handle();
    let stop = server.shutdown_handle();
    let t = std::thread::spawn(move || {
        server.serve(move |req| {
            g.wait();
            echo(req)
        })
    });
    let mut busy = Raw::connect(&addr);
    busy.send(&Raw::request_bytes(1, false, &[], b"first"));
    eventually("the worker to be busy", || {
        stats.snapshot().workers_busy == 1
    });
    let mut waiting = Raw::connect(&addr);
    waiting.send(&Raw::request_bytes(1, false, &[], b"second"));
    eventually("the second connection in the accept queue", || {
        accept_queue_len(watch.as_fd()) == 1
    });
    let s = stats.snapshot();
    assert_eq!(s.connections_open, 1, "not accepted");
    assert_eq!(
        s.listen_queue, 1,
        "the server's stats show the kernel's queue"
    );
    assert_eq!(s.max_listen_queue, 1);
    assert_eq!(s.listen_queue_len, fcgi::server::DEFAULT_BACKLOG as u64);
    gate.open();
    assert_eq!(busy.response(1).body(), b"\nfirst");
    assert_eq!(waiting.response(1).body(), b"\nsecond");
    assert_eq!(accept_queue_len(watch.as_fd()), 0);
    assert_eq!(stats.snapshot().listen_queue, 0);
    assert_eq!(stats.snapshot().refused, 0);
    stop.shutdown();
    t.join().unwrap().unwrap();
}

#[test]
fn panicking_handler_gets_500_and_the_worker_goes_on() {
    let srv = TestServer::start(config(1), |req| {
        if req.param("PANIC").is_some() {
            req.stdout()
                .write_all(b"Content-Type: text/plain\r\n\r\npartial")?;
            panic!("boom in handler");
        }
        echo(req)
    });
    let mut c = srv.connect();
    let r = c.request(1, true, &[("PANIC", "1")], b"");
    assert!(
        r.text()
            .starts_with("Status: 500 Internal Server Error\r\n"),
        "{}",
        r.text()
    );
    assert!(
        !r.text().contains("partial"),
        "unsent output is replaced by the 500"
    );
    assert!(String::from_utf8_lossy(&r.stderr).contains("boom in handler"));
    assert_eq!(r.end.unwrap().app_status, 1);
    // Same connection, same (only) worker.
    assert_eq!(
        c.request(2, false, &[], b"still here").body(),
        b"\nstill here"
    );
    assert_eq!(srv.stats.snapshot().panics, 1);
}

#[test]
fn handler_error_after_output_keeps_the_output_and_reports_on_stderr() {
    let srv = TestServer::start(config(1), |req| {
        req.stdout()
            .write_all(b"Content-Type: text/plain\r\n\r\nsome")?;
        req.stdout().flush()?;
        Err(std::io::Error::other("database went away"))
    });
    let mut c = srv.connect();
    let r = c.request(1, false, &[], b"");
    assert_eq!(r.body(), b"some");
    assert!(String::from_utf8_lossy(&r.stderr).contains("database went away"));
    assert_eq!(r.end.unwrap().app_status, 1);
}

fn multiplexed_config() -> fcgi::server::Config {
    let mut cfg = config(4);
    cfg.multiplex = true;
    cfg.max_reqs_per_conn = 3;
    cfg
}

#[test]
fn multiplexed_requests_run_concurrently_on_one_connection() {
    // The three requests of one connection meet at a barrier: each handler returns only
    // once all three are running, so the test passes only if they run at the same time.
    let all_three = Rendezvous::new(3);
    let srv = TestServer::start(multiplexed_config(), move |req| {
        let mut body = Vec::new();
        req.stdin().read_to_end(&mut body)?;
        if !all_three.wait() {
            return Err(std::io::Error::other(
                "the three requests did not run at once",
            ));
        }
        req.stdout()
            .write_all(b"Content-Type: text/plain\r\n\r\n")?;
        req.stdout().write_all(&body)
    });
    let mut c = srv.connect();
    // Interleave three requests record by record.
    let mut b = Vec::new();
    for id in [1u16, 2, 3] {
        b.extend(Raw::begin_bytes(id, Role::Responder, true));
        encode_params(&mut b, id, [(&b"ID"[..], id.to_string().as_bytes())]);
    }
    for id in [3u16, 1, 2] {
        encode_record(
            &mut b,
            RecordType::Stdin,
            id,
            format!("body-{id}").as_bytes(),
        );
    }
    for id in [2u16, 3, 1] {
        encode_stream_end(&mut b, RecordType::Stdin, id);
    }
    c.send(&b);
    let mut bodies = std::collections::BTreeMap::new();
    let mut ended = 0;
    while ended < 3 {
        let rec = c.record().expect("record");
        match rec.header.record_type {
            RecordType::Stdout => bodies
                .entry(rec.header.request_id)
                .or_insert_with(Vec::new)
                .extend(rec.content),
            RecordType::EndRequest => ended += 1,
            t => panic!("unexpected {t:?}"),
        }
    }
    for id in [1u16, 2, 3] {
        let text = String::from_utf8(bodies[&id].clone()).unwrap();
        assert!(text.ends_with(&format!("\r\n\r\nbody-{id}")), "{text}");
    }
}

#[test]
fn multiplexing_is_capped_per_connection_and_advertised() {
    let gate = Gate::default();
    let g = gate.clone();
    let srv = TestServer::start(multiplexed_config(), move |req| {
        g.wait();
        echo(req)
    });
    let mut c = srv.connect();
    let mut q = Vec::new();
    fcgi::protocol::encode_get_values(&mut q, &["FCGI_MPXS_CONNS"]);
    c.send(&q);
    let ans = c.record().unwrap();
    assert_eq!(ans.content, b"\x0f\x01FCGI_MPXS_CONNS1");
    for id in 1..=4u16 {
        c.send(&Raw::request_bytes(id, true, &[], b""));
    }
    let refused = c.response(4);
    assert_eq!(refused.protocol_status(), ProtocolStatus::Overloaded);
    gate.open();
    let mut ended = 0;
    while ended < 3 {
        if c.record().unwrap().header.record_type == RecordType::EndRequest {
            ended += 1;
        }
    }
}

#[test]
fn abort_of_one_multiplexed_request_leaves_the_others() {
    let srv = TestServer::start(multiplexed_config(), |req| {
        let mut body = Vec::new();
        match req.stdin().read_to_end(&mut body) {
            Ok(_) => {
                req.stdout()
                    .write_all(b"Content-Type: text/plain\r\n\r\n")?;
                req.stdout().write_all(&body)
            }
            Err(e) => Err(e),
        }
    });
    let mut c = srv.connect();
    let mut b = Vec::new();
    for id in [1u16, 2] {
        b.extend(Raw::begin_bytes(id, Role::Responder, true));
        encode_params(&mut b, id, []);
        encode_record(&mut b, RecordType::Stdin, id, b"data");
    }
    fcgi::protocol::encode_header_into(&mut b, RecordType::AbortRequest, 1, 0);
    encode_stream_end(&mut b, RecordType::Stdin, 2);
    c.send(&b);
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 2 {
        let rec = c.record().unwrap();
        if rec.header.record_type == RecordType::EndRequest {
            seen.insert(rec.header.request_id, rec);
        }
    }
    assert!(seen.contains_key(&1) && seen.contains_key(&2));
}

#[test]
fn stats_snapshot_reflects_the_pool() {
    let gate = Gate::default();
    let g = gate.clone();
    let srv = TestServer::start(config(3), move |req| {
        if req.param("WAIT").is_some() {
            g.wait();
        }
        echo(req)
    });
    let mut c1 = srv.connect();
    c1.send(&Raw::request_bytes(1, false, &[("WAIT", "1")], b""));
    let mut c2 = srv.connect();
    c2.send(&Raw::request_bytes(1, false, &[("WAIT", "1")], b""));
    eventually("two busy", || srv.stats.snapshot().workers_busy == 2);
    let s = srv.stats.snapshot();
    assert_eq!((s.workers, s.workers_busy, s.workers_idle), (3, 2, 1));
    assert!(s.connections_open >= 2);
    gate.open();
    c1.response(1);
    c2.response(1);
    eventually("idle again", || srv.stats.snapshot().workers_busy == 0);
    eventually("both served", || srv.stats.snapshot().requests_served == 2);
    let s = srv.stats.snapshot();
    assert_eq!(s.max_workers_busy, 2);
}

#[test]
fn graceful_shutdown_finishes_requests_in_flight_and_stops_accepting() {
    let gate = Gate::default();
    let g = gate.clone();
    let srv = TestServer::start(config(2), move |req| {
        g.wait();
        echo(req)
    });
    let addr = srv.addr.clone();
    let mut inflight = srv.connect();
    inflight.send(&Raw::request_bytes(1, false, &[], b"in flight"));
    eventually("busy", || srv.stats.snapshot().workers_busy == 1);
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(
        support::listening(port),
        "no LISTEN row for {port} in /proc/net/tcp"
    );
    srv.stop.shutdown();
    // The shutdown has begun (the server stopped accepting) while the request is still in
    // its handler: it must be finished, not dropped.
    eventually("the listener to close", || !support::listening(port));
    assert_eq!(srv.stats.snapshot().workers_busy, 1, "still in flight");
    gate.open();
    assert_eq!(inflight.response(1).body(), b"\nin flight");
    srv.shutdown().unwrap();
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "listener closed after shutdown"
    );
}

#[test]
fn a_handler_that_ignores_its_body_does_not_pin_the_worker_on_a_kept_connection() {
    // hello-style handler: answers without reading stdin. The rest of the body (and its end
    // record) arrive after the answer; the worker must not wait for them.
    let srv = TestServer::start(config(1), |req| {
        req.respond(200, &[("Content-Type", "text/plain")], b"ignored your body")
    });
    let mut a = srv.connect();
    let mut part = Raw::begin_bytes(1, Role::Responder, true);
    encode_params(&mut part, 1, []);
    let mut body_record = Vec::new();
    encode_record(&mut body_record, RecordType::Stdin, 1, &[b'x'; 100]);
    part.extend_from_slice(&body_record[..30]); // a record cut in the middle
    a.send(&part);
    assert_eq!(a.response(1).body(), b"ignored your body");
    // Another client gets the only worker while `a` still owes the rest of its body.
    let mut b = srv.connect();
    assert_eq!(b.request(1, false, &[], b"").body(), b"ignored your body");
    // The late rest of a's body is skipped; a's next request is served.
    let mut rest = body_record[30..].to_vec();
    encode_record(&mut rest, RecordType::Stdin, 1, b"late part");
    encode_stream_end(&mut rest, RecordType::Stdin, 1);
    rest.extend(Raw::request_bytes(2, true, &[], b""));
    a.send(&rest);
    assert_eq!(a.response(2).body(), b"ignored your body");
    eventually("a parked again", || {
        srv.stats.snapshot().connections_parked == 1
    });
}

#[test]
fn stalled_and_idle_connections_are_closed_after_their_timeouts() {
    let mut cfg = config(1);
    cfg.idle_timeout = Some(Duration::from_millis(300));
    cfg.read_timeout = Some(Duration::from_millis(300));
    let srv = TestServer::start(cfg, echo);
    // Three bytes of a record header, then nothing: the head's deadline ends it. (A
    // connection that sends nothing at all never reaches the server: the kernel keeps it,
    // TCP_DEFER_ACCEPT, unless it connected before the option was set; a test of it would
    // depend on that order.)
    let mut stalled = srv.connect();
    stalled.send(&[1, 1, 0]);
    let mut kept = srv.connect();
    assert_eq!(kept.request(1, true, &[], b"x").body(), b"\nx");
    assert!(
        stalled.closed_by_server(),
        "a connection stalled in its head holds no slot forever"
    );
    assert!(
        kept.closed_by_server(),
        "an idle kept-alive connection is closed too"
    );
    eventually("no connection left", || {
        srv.stats.snapshot().connections_open == 0
    });
}

#[test]
fn a_connection_that_only_sends_leftovers_or_queries_does_not_hold_a_worker() {
    // One worker. A kept connection receives the late rest of an ignored request and a
    // GET_VALUES, nothing else: the worker must go back to the poller, not wait on it.
    let srv = TestServer::start(config(1), echo);
    let mut a = srv.connect();
    let mut leftovers = Vec::new();
    encode_record(
        &mut leftovers,
        RecordType::Stdin,
        9,
        b"late body of a finished request",
    );
    encode_stream_end(&mut leftovers, RecordType::Stdin, 9);
    fcgi::protocol::encode_get_values(&mut leftovers, &["FCGI_MAX_REQS"]);
    a.send(&leftovers);
    let ans = a.record().expect("GET_VALUES_RESULT");
    assert_eq!(ans.header.record_type, RecordType::GetValuesResult);
    eventually("the worker to be free again", || {
        srv.stats.snapshot().workers_busy == 0
    });
    let mut b = srv.connect();
    assert_eq!(b.request(1, false, &[], b"served").body(), b"\nserved");
    assert_eq!(a.request(2, false, &[], b"a too").body(), b"\na too");
}
