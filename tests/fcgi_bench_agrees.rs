//! `fcgi-bench`'s figures agree with an independent count: what it reports as completed
//! requests (and connections, and body bytes) is what the backend side counted, by count and
//! not by timing. Loopback, a few hundred requests, a few seconds.
//!
//! Two independent measures: an in-test `fcgi::Server` whose handler counts requests (and the
//! server's own stats), and `examples/hello` behind a relay in the test that decodes the
//! backend's records and counts END_REQUESTs, stdout bytes and accepted connections.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use fcgi::protocol::{decode_record, RecordType, Status};
use support::peers::App;
use support::{temp_dir, wait_until, Addr};

const HELLO_HEAD: &[u8] = b"Content-Type: text/plain\r\n\r\n";
const HELLO_BODY: &[u8] = b"Hello, World!";

/// Runs fcgi-bench (bounded: -n and a per-request timeout) and returns its stdout.
fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fcgi-bench"))
        .args(["-t", "10"])
        .args(args)
        .output()
        .expect("run fcgi-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fcgi-bench {args:?} exited with {}:\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A number from fcgi-bench's report line `NAME: value`.
fn field(out: &str, name: &str) -> u64 {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"));
    line.split_whitespace()
        .next()
        .and_then(|v| v.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("{name} {line}: not a number"))
}

/// The stdout bytes fcgi-bench reports (`Throughput: … (N bytes of stdout)`).
fn body_bytes(out: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("Throughput:"))
        .unwrap_or_else(|| panic!("no Throughput in:\n{out}"));
    let (_, tail) = line.split_once('(').expect("(N bytes of stdout)");
    tail.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn completed_requests_match_the_servers_own_count() {
    let server = fcgi::Server::bind("127.0.0.1:0").unwrap().workers(4);
    let addr = server.local_addrs()[0].clone();
    let stop = server.shutdown_handle();
    let stats = server.stats_handle();
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let t = thread::spawn(move || {
        server.serve(move |req| {
            h.fetch_add(1, Ordering::SeqCst);
            req.stdout()
                .write_all(b"Content-Type: text/plain\r\n\r\nok")
        })
    });

    let mut total = 0u64;
    for (n, keep) in [(500u64, "-k"), (300, "-K")] {
        let out = bench(&["-n", &n.to_string(), "-c", "4", keep, &addr]);
        assert_eq!(field(&out, "Completed:"), n, "{out}");
        assert_eq!(field(&out, "Failed:"), 0, "{out}");
        assert_eq!(body_bytes(&out), 2 * n, "{out}");
        total += n;
        // The handler ran once per request fcgi-bench counted: no more, no fewer.
        assert_eq!(handled.load(Ordering::SeqCst) as u64, total, "{out}");
        // The server's counter is bumped after END_REQUEST is written: let it catch up.
        assert!(
            wait_until(Duration::from_secs(5), || stats.snapshot().requests_served
                == total),
            "server served {} requests, fcgi-bench completed {total}",
            stats.snapshot().requests_served
        );
        let conns = field(&out, "Connections:");
        if keep == "-K" {
            assert_eq!(conns, n, "a connection per request:\n{out}");
        } else {
            assert!((1..=4).contains(&conns), "at most -c connections:\n{out}");
        }
    }
    stop.shutdown();
    t.join().unwrap().unwrap();
}

/// What the relay saw on the backend's side of the wire.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    end_requests: AtomicU64,
    stdout_bytes: AtomicU64,
}

/// A relay on 127.0.0.1 in front of `backend`: copies bytes both ways and decodes the
/// backend's records with the crate's codec, counting END_REQUESTs and stdout content bytes.
fn relay(backend: std::net::SocketAddr) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            s.connections.fetch_add(1, Ordering::SeqCst);
            let upstream = TcpStream::connect(backend).expect("connect to hello");
            for c in [&client, &upstream] {
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                c.set_nodelay(true).unwrap();
            }
            let (mut c_in, mut u_out) =
                (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 || u_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = u_out.shutdown(Shutdown::Write);
            });
            let (mut u_in, mut c_out, s) = (upstream, client, s.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                let mut pending = Vec::new();
                while let Ok(n) = u_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    // Counted before they are passed on, so a count is never behind what
                    // fcgi-bench has already seen.
                    pending.extend_from_slice(&buf[..n]);
                    let mut used_total = 0;
                    while let Ok(Status::Complete((rec, used))) =
                        decode_record(&pending[used_total..])
                    {
                        match rec.header.record_type {
                            RecordType::Stdout => {
                                s.stdout_bytes
                                    .fetch_add(rec.content.len() as u64, Ordering::SeqCst);
                            }
                            RecordType::EndRequest => {
                                s.end_requests.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => {}
                        }
                        used_total += used;
                    }
                    pending.drain(..used_total);
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown(Shutdown::Write);
            });
        }
    });
    (addr, seen)
}

#[test]
fn completed_requests_match_the_records_examples_hello_sent() {
    let dir = temp_dir();
    let app = App::start("hello", dir.path(), Addr::free_tcp(), &[]);
    let (addr, seen) = relay(app.addr.tcp());

    let mut total = 0u64;
    let mut conns_before = 0;
    for (n, keep, max) in [(400u64, "-k", "4"), (200, "-K", "4"), (300, "-k", "2")] {
        let out = bench(&["-n", &n.to_string(), "-c", "4", "-m", max, keep, &addr]);
        assert_eq!(field(&out, "Completed:"), n, "{out}");
        assert_eq!(field(&out, "Failed:"), 0, "{out}");
        assert_eq!(field(&out, "Non-2xx:"), 0, "{out}");
        total += n;
        // Every request fcgi-bench completed is one END_REQUEST the app sent, and the body
        // bytes it counted are the app's stdout without the head.
        assert_eq!(seen.end_requests.load(Ordering::SeqCst), total, "{out}");
        let per_request = (HELLO_HEAD.len() + HELLO_BODY.len()) as u64;
        assert_eq!(
            seen.stdout_bytes.load(Ordering::SeqCst),
            total * per_request
        );
        assert_eq!(body_bytes(&out), n * HELLO_BODY.len() as u64, "{out}");
        let conns = seen.connections.load(Ordering::SeqCst) - conns_before;
        conns_before += conns;
        assert_eq!(field(&out, "Connections:"), conns, "{out}");
        let max: u64 = max.parse().unwrap();
        if keep == "-K" {
            assert_eq!(conns, n);
        } else {
            assert!(
                (1..=max).contains(&conns),
                "{conns} connections for -m {max}"
            );
        }
    }
}
