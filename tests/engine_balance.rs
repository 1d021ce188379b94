//! Issue 7, "Done when" 1 (scaled down, deterministic): processes that share one listening
//! socket share the load. A process takes a connection only when it has a thread free for
//! its request, so with every process busy the rest wait in the kernel's accept queue, where
//! the next free process finds them.
//!
//! Four single-threaded processes on one socket (as `spawn-fcgi -F 4`) are stopped
//! (SIGSTOP); 16 requests whose stdin is held back fill the accept queue; the processes go
//! on (SIGCONT). Each can take one request and then waits for its stdin, so each must hold
//! exactly one connection, 12 must stay queued, and once the stdin arrives every process
//! answers. Today a process accepts up to 64 waiting connections into a private queue, so
//! one of them takes most of the 16. The timed figures (16 requests of 1 s: at most 4.6 s,
//! 3 to 5 per process) are measured by `benches/engine_balance.sh`.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::capi::{compile_c, have_paths, have_tools, our_lib, Running};
use support::engine::*;
use support::peers::example_path;
use support::{temp_dir, wait_until};

/// The scenario above against four processes of `make()` on `lib`.
fn one_request_per_process(lib: Lib, make: impl Fn() -> Command) {
    let (listener, port) = listener();
    let procs: Vec<Running> = spawn_sharing(&listener, 4, make);
    drop(listener);
    let pids: Vec<u32> = procs.iter().map(|p| p.0.id()).collect();
    for &pid in &pids {
        lib.assert_loaded(pid);
    }

    for &pid in &pids {
        signal(pid, libc::SIGSTOP);
    }
    assert!(
        wait_until(Duration::from_secs(10), || pids
            .iter()
            .all(|&p| state(p) == 'T')),
        "the processes did not stop"
    );
    let mut conns: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&head_bytes(false, &[])).unwrap();
            s
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || accept_queue(port) == 16),
        "the 16 requests did not reach the accept queue: {}",
        accept_queue(port)
    );
    for &pid in &pids {
        signal(pid, libc::SIGCONT);
    }

    // Until each process holds a connection, or one holds more than it can serve.
    let held = || -> Vec<usize> { pids.iter().map(|&p| connections_held(p, port)).collect() };
    wait_until(Duration::from_secs(10), || {
        let h = held();
        h.iter().all(|&n| n >= 1) || h.iter().any(|&n| n >= 2)
    });
    let h = held();
    assert_eq!(
        h,
        vec![1; 4],
        "connections held by each process, with every process busy (the rest must wait in \
         the accept queue, which holds {})",
        accept_queue(port)
    );
    assert_eq!(
        accept_queue(port),
        12,
        "connections left in the accept queue"
    );

    // Release every request; each process answers.
    for s in &mut conns {
        s.write_all(&stdin_end_bytes()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // Each connection is closed once answered: a program may wait for that (the classic
    // library's lingering close does, up to 2 s).
    let served: HashSet<u32> = conns
        .into_iter()
        .map(|mut s| pid_of(&read_response(&mut s, deadline).expect("an answer")))
        .collect();
    assert_eq!(served, pids.iter().copied().collect::<HashSet<u32>>());
}

#[test]
fn four_c_processes_on_our_library_take_one_request_each() {
    if !have_tools(
        &["cc"],
        "four_c_processes_on_our_library_take_one_request_each",
    ) {
        return;
    }
    let dir = temp_dir();
    let lib = our_lib(dir.path());
    let exe = compile_c(dir.path(), "engine_app.c", "engine_app", &lib);
    let ours = Lib::Ours(&lib);
    one_request_per_process(ours, || ours.engine_app(&exe, &[]));
}

/// The control: the classic library accepts only when the program calls FCGX_Accept_r, so
/// it passes; this proves the scenario itself.
#[test]
fn four_c_processes_on_the_classic_library_take_one_request_each() {
    let test = "four_c_processes_on_the_classic_library_take_one_request_each";
    if !have_tools(&["cc"], test) || !have_paths(&[CLASSIC], test) {
        return;
    }
    let dir = temp_dir();
    let lib = our_lib(dir.path());
    let exe = compile_c(dir.path(), "engine_app.c", "engine_app", &lib);
    one_request_per_process(Lib::Classic, || Lib::Classic.engine_app(&exe, &[]));
}

#[test]
fn four_rust_servers_with_one_worker_take_one_request_each() {
    let exe = example_path("sleep");
    one_request_per_process(Lib::Rust, || {
        let mut c = Command::new(&exe);
        c.env("FCGI_WORKERS", "1");
        c
    });
}
