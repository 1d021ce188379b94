//! Issue 7, "Done when" 5 (scaled down): an idle kept connection holds no worker, no thread
//! and no read buffer, and the memory does not grow over repeated fill/close cycles;
//! multiplexed connections get no thread each. The full-scale figures (10,000 connections,
//! 20 cycles, 500 multiplexed) are measured by `benches/engine_idle.sh`.

mod common;
mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::engine::*;
use support::peers::App;
use support::{shout, temp_dir, wait_until, Addr};

/// `n` connections that each sent one request with FCGI_KEEP_CONN and read its answer.
fn fill(port: u16, n: usize) -> Vec<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(60);
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&request_bytes(true, &[])).unwrap();
            if let Err(e) = read_response(&mut s, deadline) {
                panic!("kept-alive connection {i}: {e}");
            }
            s
        })
        .collect()
}

#[test]
fn idle_kept_connections_hold_no_worker() {
    let server = common::TestServer::start(common::config(1), |req| {
        req.stdout()
            .write_all(b"Content-Type: text/plain\r\n\r\nhello")
    });
    let port: u16 = server.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut idle = fill(port, 50);
    let got = request(port, &[], Duration::from_secs(10));
    assert!(
        got.is_ok(),
        "a new connection while 50 kept ones are idle (1 worker): {got:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, s) in idle.iter_mut().enumerate() {
        s.write_all(&request_bytes(true, &[])).unwrap();
        let got = read_response(s, deadline);
        assert!(
            got.is_ok(),
            "second request on kept connection {i}: {got:?}"
        );
    }
}

/// `examples/hello` with 2 workers and `env`, after one answered request and once it runs
/// its main thread and 2 workers (an engine that starts workers later may have fewer: the
/// thread checks below allow for 2 more).
fn hello(dir: &std::path::Path, env: &[(&str, &str)]) -> (App, u16, u32) {
    let mut env = env.to_vec();
    env.push(("FCGI_WORKERS", "2"));
    let app = App::start("hello", dir, Addr::free_tcp(), &env);
    let port = app.addr.tcp().port();
    request(port, &[], Duration::from_secs(10)).expect("a first request");
    let pid = app.proc.pid();
    wait_until(Duration::from_secs(10), || {
        status_field(pid, "Threads") >= 3
    });
    (app, port, pid)
}

#[test]
fn idle_multiplexed_connections_add_no_thread() {
    let dir = temp_dir();
    let (_app, port, pid) = hello(dir.path(), &[("FCGI_MPXS_CONNS", "1")]);
    let before = status_field(pid, "Threads");
    let _idle = fill(port, 50);
    let after = status_field(pid, "Threads");
    assert!(
        after <= before + 2,
        "threads with 50 idle multiplexed connections: {before} before, {after} after"
    );
}

#[test]
fn idle_kept_connections_add_no_thread() {
    let dir = temp_dir();
    let (_app, port, pid) = hello(dir.path(), &[]);
    let before = status_field(pid, "Threads");
    let _idle = fill(port, 200);
    let after = status_field(pid, "Threads");
    assert!(
        after <= before + 2,
        "threads with 200 idle kept connections: {before} before, {after} after"
    );
}

#[test]
fn idle_connections_cost_at_most_16_kib_each_over_fill_close_cycles() {
    const CYCLES: usize = 5;
    let limit = raise_fd_limit();
    let n = 2000.min((limit as usize).saturating_sub(200));
    if n < 500 {
        shout(&format!(
            "*** SKIP idle_connections_cost_at_most_16_kib_each_over_fill_close_cycles: \
             descriptor limit {limit} ***"
        ));
        return;
    }
    let dir = temp_dir();
    let max_conns = (2 * n).to_string();
    let (_app, port, pid) = hello(dir.path(), &[("FCGI_MAX_CONNS", max_conns.as_str())]);
    let fds = open_fds(pid);
    let rss0 = status_field(pid, "VmRSS");
    let mut per_conn = Vec::new();
    for cycle in 0..=CYCLES {
        let conns = fill(port, n);
        let rss = status_field(pid, "VmRSS");
        per_conn.push((rss.saturating_sub(rss0)) as f64 / n as f64);
        if cycle == CYCLES {
            break;
        }
        drop(conns);
        assert!(
            wait_until(Duration::from_secs(30), || open_fds(pid) <= fds + 2),
            "the server still holds {} descriptors ({fds} before the fill)",
            open_fds(pid)
        );
    }
    assert!(
        per_conn.iter().all(|&kib| kib <= 16.0),
        "RSS per idle connection ({n} connections) after each of {} fills, in KiB: {per_conn:.1?}",
        CYCLES + 1
    );
}
