//! The pull API (`Acceptor`), which the libfcgi-compatible `FCGX_Accept_r` stands on.

mod common;

use std::io::Write;
use std::sync::Arc;

use common::*;
use fcgi::protocol::ProtocolStatus;
use fcgi::server::{Acceptor, Listener};

fn acceptor() -> (Arc<Acceptor>, String) {
    let l = Listener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (
        Arc::new(Acceptor::new(l, Default::default()).unwrap()),
        addr,
    )
}

fn serve_one(a: &Acceptor) {
    let mut req = a.accept().unwrap();
    echo(&mut req).unwrap();
    a.finish(req).unwrap();
}

#[test]
fn single_threaded_accept_loop_never_stalls_behind_kept_alive_connections() {
    let (a, addr) = acceptor();
    let a2 = Arc::clone(&a);
    let server = std::thread::spawn(move || loop {
        match a2.accept() {
            Ok(mut req) => {
                echo(&mut req).unwrap();
                a2.finish(req).unwrap();
            }
            Err(_) => return,
        }
    });
    // Like nginx with `keepalive 4`: several kept connections, used in turn.
    let mut conns: Vec<Raw> = (0..4).map(|_| Raw::connect(&addr)).collect();
    for round in 0..3 {
        for (i, c) in conns.iter_mut().enumerate().rev() {
            let body = format!("round {round} conn {i}");
            assert_eq!(
                c.request(1, true, &[], body.as_bytes()).body(),
                format!("\n{body}").as_bytes()
            );
        }
    }
    a.shutdown();
    server.join().unwrap();
}

#[test]
fn many_threads_accept_on_one_listener() {
    // Four threads accept on one acceptor; each round sends four requests at once and each
    // handler waits at a barrier for the other three. A thread holding a request cannot
    // accept another, so a round completes only when four different threads each hold
    // one: every thread serves exactly one request per round, whatever the scheduling.
    const THREADS: usize = 4;
    const ROUNDS: usize = 10;
    let (a, addr) = acceptor();
    let round = Rendezvous::new(THREADS);
    let servers: Vec<_> = (0..THREADS)
        .map(|_| {
            let a = Arc::clone(&a);
            let round = round.clone();
            std::thread::spawn(move || {
                let mut served = 0;
                while let Ok(mut req) = a.accept() {
                    eprintln!(
                        "got {:?} {:?}",
                        std::thread::current().id(),
                        std::time::Instant::now()
                    );
                    if round.wait() {
                        echo(&mut req).unwrap();
                    } else {
                        req.respond(500, &[], b"no full round").unwrap();
                    }
                    a.finish(req).unwrap();
                    served += 1;
                }
                served
            })
        })
        .collect();
    for r in 0..ROUNDS {
        let clients: Vec<_> = (0..THREADS)
            .map(|i| {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    let mut c = Raw::connect(&addr);
                    let body = format!("r{r}c{i}");
                    assert_eq!(
                        c.request(1, false, &[], body.as_bytes()).body(),
                        format!("\n{body}").as_bytes()
                    );
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    }
    a.shutdown();
    let served: Vec<usize> = servers.into_iter().map(|s| s.join().unwrap()).collect();
    assert_eq!(
        served, [ROUNDS; THREADS],
        "one request per thread per round"
    );
}

#[test]
fn a_request_dropped_without_finish_still_gets_end_request() {
    let (a, addr) = acceptor();
    let mut c = Raw::connect(&addr);
    // Nothing written: a 500, app status 1, exactly one END_REQUEST, and the kept
    // connection serves the next request.
    c.send(&Raw::request_bytes(1, true, &[], b""));
    drop(a.accept().unwrap());
    let r = c.response(1);
    assert!(r.text().starts_with("Status: 500"), "{}", r.text());
    assert_eq!(r.protocol_status(), ProtocolStatus::RequestComplete);
    assert_eq!(r.end.unwrap().app_status, 1);
    // Something written: it stays as it is (no 500 after it), and the request ends.
    c.send(&Raw::request_bytes(2, true, &[], b""));
    let mut req = a.accept().unwrap();
    req.stdout()
        .write_all(b"Status: 202 Accepted\r\n\r\npartial")
        .unwrap();
    drop(req);
    let r = c.response(2);
    assert_eq!(r.text(), "Status: 202 Accepted\r\n\r\npartial");
    assert!(r.stdout_ended);
    // Dropped by a panic while its output is only buffered: a 500, as for a handler
    // that panics.
    c.send(&Raw::request_bytes(3, true, &[], b""));
    let a2 = Arc::clone(&a);
    let panicked = std::thread::spawn(move || {
        let mut req = a2.accept().unwrap();
        req.stdout()
            .write_all(b"Status: 200 OK\r\n\r\nhalf")
            .unwrap();
        panic!("the application fails while holding the request");
    })
    .join();
    assert!(panicked.is_err());
    let r = c.response(3);
    assert!(r.text().starts_with("Status: 500"), "{}", r.text());
    assert_eq!(r.end.unwrap().app_status, 1);
    // The connection is still usable: no second END_REQUEST is in the way.
    c.send(&Raw::request_bytes(4, false, &[], b"z"));
    serve_one(&a);
    assert_eq!(c.response(4).body(), b"\nz");
    assert!(
        c.record().is_none(),
        "one END_REQUEST per request, then close"
    );
}

#[test]
fn pipelined_request_after_finish_is_served_next() {
    let (a, addr) = acceptor();
    let mut c = Raw::connect(&addr);
    let mut two = Raw::request_bytes(1, true, &[("N", "1")], b"");
    two.extend(Raw::request_bytes(2, true, &[("N", "2")], b""));
    c.send(&two);
    serve_one(&a);
    serve_one(&a);
    assert_eq!(c.response(1).body(), b"N=1\n\n");
    assert_eq!(c.response(2).body(), b"N=2\n\n");
    let mut req = {
        c.send(&Raw::request_bytes(3, false, &[], b"x"));
        a.accept().unwrap()
    };
    req.stdout()
        .write_all(b"Status: 204 No Content\r\n\r\n")
        .unwrap();
    a.finish(req).unwrap();
    assert!(c.response(3).text().starts_with("Status: 204"));
}
