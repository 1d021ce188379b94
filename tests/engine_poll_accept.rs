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

/// A connection whose first bytes are still on their way must stay in the kernel's queue
/// (TCP_DEFER_ACCEPT): if the library took it and waited for them, it would be free to take
/// the next connection too, and a program that polls the socket before accepting would
/// then find the socket empty while the first request waits inside the library. Found by
/// `benches/engine_poll.sh` (1 of 20 answered) when the C library stopped setting
/// TCP_DEFER_ACCEPT; the test above queues whole requests only, so it missed it.
#[test]
fn a_connection_that_has_not_spoken_yet_is_not_taken_from_a_polling_program() {
    let test = "a_connection_that_has_not_spoken_yet_is_not_taken_from_a_polling_program";
    if !have_tools(&["cc"], test) || !have_paths(&[CLASSIC], test) {
        return;
    }
    let app = OursApp::start(&["-p"]);
    let port = app.port;
    let deadline = || Instant::now() + Duration::from_secs(10);
    // A first request: the program has initialised the library (which sets
    // TCP_DEFER_ACCEPT on its socket; connections queued before that are taken as they are).
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    first.write_all(&request_bytes(false, &[])).unwrap();
    read_response(&mut first, deadline()).expect("the first request is answered");
    // A connects and says nothing yet; B connects and asks. B is answered...
    let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    b.write_all(&request_bytes(false, &[])).unwrap();
    read_response(&mut b, deadline()).expect("the request that was sent is answered");
    // ...and A, speaking now, is answered too: the program is back in poll() on the
    // listening socket, which must show A.
    a.write_all(&request_bytes(false, &[])).unwrap();
    read_response(&mut a, deadline()).expect("the late speaker is answered");
}
