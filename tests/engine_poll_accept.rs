//! Issue 7, "Done when" 2: a program that poll()s the listening socket before each
//! FCGX_Accept_r (as several language bindings do) answers every request. The socket must
//! stay readable while connections wait, so they must wait in the kernel's accept queue,
//! not in a queue of the library's own.
//!
//! `tests/c/engine_app.c -p` (single-threaded) is stopped (SIGSTOP), 20 whole requests
//! fill its accept queue, it goes on (SIGCONT), and all 20 must be answered. Today the first
//! FCGX_Accept_r accepts all 20 into the library's private queue, the program serves one and
//! then waits in poll() for a socket that no longer looks readable.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::capi::{compile_c, have_paths, have_tools, our_lib, Running};
use support::engine::*;
use support::{temp_dir, wait_until};

/// Answers how many of 20 queued requests `tests/c/engine_app.c -p`, on the classic library
/// or ours, answered within 10 s.
fn answered_of_20(test: &str, classic: bool) -> Option<usize> {
    if !have_tools(&["cc"], test) || !have_paths(&[CLASSIC], test) {
        return None;
    }
    let dir = temp_dir();
    let ours = our_lib(dir.path());
    let exe = compile_c(dir.path(), "engine_app.c", "engine_app", &ours);
    let lib = if classic {
        Lib::Classic
    } else {
        Lib::Ours(&ours)
    };
    let (listener, port) = listener();
    let procs: Vec<Running> = spawn_sharing(&listener, 1, || lib.engine_app(&exe, &["-p"]));
    drop(listener);
    let pid = procs[0].0.id();
    lib.assert_loaded(pid);

    signal(pid, libc::SIGSTOP);
    assert!(
        wait_until(Duration::from_secs(10), || state(pid) == 'T'),
        "the program did not stop"
    );
    let conns: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&request_bytes(false, &[])).unwrap();
            s
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || accept_queue(port) == 20),
        "the 20 requests did not reach the accept queue: {}",
        accept_queue(port)
    );
    signal(pid, libc::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Each connection is closed once answered (the classic library lingers until then).
    let answered = conns
        .into_iter()
        .map(|mut s| read_response(&mut s, deadline).is_ok())
        .filter(|&ok| ok)
        .count();
    Some(answered)
}

#[test]
fn poll_before_accept_on_our_library_answers_all_20() {
    if let Some(n) = answered_of_20("poll_before_accept_on_our_library_answers_all_20", false) {
        assert_eq!(n, 20, "requests answered within 10 s");
    }
}

/// The control: the classic library accepts one connection per FCGX_Accept_r.
#[test]
fn poll_before_accept_on_the_classic_library_answers_all_20() {
    if let Some(n) = answered_of_20(
        "poll_before_accept_on_the_classic_library_answers_all_20",
        true,
    ) {
        assert_eq!(n, 20, "requests answered within 10 s");
    }
}
