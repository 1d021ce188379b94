//! Issue 10, "C ABI": the drop-in's corner cases, each reproduced by a C program of
//! `tests/c` compiled against both header sets (ours in `include/`, the classic ones in
//! /usr/include) and run on our `libfcgi.so.0`, and where the classic library's behaviour
//! is the reference, on the classic library too. Every program first reports which
//! library the loader took (`tests/c/corners.h`: only ours defines `fcgi_rs_version`), and
//! [`CProc::spawn`] checks it.
//!
//! 1. `FCGX_Free(&r, 1)` after `FCGX_Finish_r` on a kept connection closes that connection
//!    only (never a later one that reuses its descriptor number); a listening socket the
//!    program closed and replaced is not served from a stale `dup`.
//! 2. An `O_NONBLOCK` listening socket gives -EAGAIN at once; the program's file status
//!    flags never change (a classic-library process sharing the socket keeps working).
//! 3. fork after accept: the child answers and finishes, the parent detaches and lets go.
//! 4. `FCGI_GET_VALUES` answers the threads that run `FCGX_Accept_r` and the connections the
//!    library really holds.
//! 5. `FCGI_WEB_SERVER_ADDRS`: Unix-socket peers served, IPv4-mapped entries and peers
//!    match, a list without an address is an error the program sees.
//! 6. The params limits (431 by default) are settable by environment.
//! 8. `FCGI_ROLE` is in the C environment (fcgiapp and fcgi_stdio), and only there.
//! 9. A shutdown signal ends `FCGX_Accept_r` in a thread that waits in `accept(2)` while
//!    another thread took the signal.
//! 10. A process that keeps a connection for the web server and loses a new connection to
//!     another process on the same socket goes on serving the kept one.
//!
//! Tools (cc, the classic headers and library) are required: without them a test says it
//! skips, and fails instead when `CI=true` or `FCGI_REQUIRE_PEERS=1`.

mod support;

use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use fcgi::protocol::{
    encode_header_into, encode_record, encode_stream_end, BeginRequestBody, RecordType, Role,
};
use support::capi::{both_headers, CBuild, CProc, FcgiConn, Got, Headers, Runtime};

const LIMIT: Duration = Duration::from_secs(10);

/// A listening TCP socket on 127.0.0.1, port 0: the descriptor for the program's fd 0.
fn tcp_listener() -> (OwnedFd, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l.into(), port)
}

/// Runs `tests/c/<src>` on `runtime` with `fd0` as its listening socket and `env` set.
fn start(
    b: &CBuild,
    exe: &std::path::Path,
    runtime: Runtime,
    args: &[&str],
    env: &[(&str, &str)],
    fd0: OwnedFd,
) -> CProc {
    let mut cmd = b.command(exe, runtime);
    cmd.args(args).envs(env.iter().copied());
    CProc::spawn(cmd, fd0, runtime)
}

// ---- 1. FCGX_Free(&r, 1) after FCGX_Finish_r; the listening socket by identity ----

/// The call order, with `FCGI_MAX_CONNS=1` (ours; the classic library ignores it):
/// the connection the program closed must stop counting at once, so the next connection
/// is accepted and kept. Before the fix the library held the closed descriptor number as a
/// live connection (until its idle timeout, 300 s), and the next connection waited.
#[test]
fn free_after_finish_closes_that_connection_and_serves_the_next() {
    let test = "free_after_finish_closes_that_connection_and_serves_the_next";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("free_kept.c", h);
        for rt in [Runtime::Classic, Runtime::Ours] {
            let (fd, port) = tcp_listener();
            let p = start(&b, &exe, rt, &[], &[("FCGI_MAX_CONNS", "1")], fd);
            let mut a = FcgiConn::tcp(port);
            a.send_request(1, true, &[("QUERY_STRING", "free")], b"");
            let r = a.reply(1, LIMIT).unwrap();
            assert_eq!(r.body(), "n=1 q=free in=0\n", "{rt:?} {h:?}");
            a.closed_within(LIMIT)
                .unwrap_or_else(|e| panic!("{rt:?} {h:?}: FCGX_Free(&r, 1) closes: {e}"));
            drop(a); // the classic library drains until the peer closes too
            assert_eq!(p.line(), "served 1");

            let mut next = FcgiConn::tcp(port);
            for n in 2..=3 {
                next.send_request(1, true, &[("QUERY_STRING", "keep")], b"abc");
                let r = next.reply(1, LIMIT).unwrap_or_else(|e| {
                    panic!("{rt:?} {h:?}: request {n} on the next connection: {e}")
                });
                assert_eq!(r.body(), format!("n={n} q=keep in=3\n"));
                assert_eq!(p.line(), format!("served {n}"));
            }
        }
    }
}

/// The scenario itself: the closed connection's idle timeout (1 s here) must not
/// shut down the next connection, which got the same descriptor number and is in the
/// middle of sending its request. Before the fix the timer closed that number at ~1 s.
#[test]
fn free_after_finish_leaves_the_next_connection_alive_past_the_idle_timeout() {
    let test = "free_after_finish_leaves_the_next_connection_alive_past_the_idle_timeout";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("free_kept.c", h);
        for rt in [Runtime::Classic, Runtime::Ours] {
            let (fd, port) = tcp_listener();
            let p = start(&b, &exe, rt, &[], &[("FCGI_IDLE_TIMEOUT", "1")], fd);
            let mut a = FcgiConn::tcp(port);
            a.send_request(1, true, &[("QUERY_STRING", "free")], b"");
            assert_eq!(a.reply(1, LIMIT).unwrap().body(), "n=1 q=free in=0\n");
            a.closed_within(LIMIT).unwrap();
            drop(a);
            assert_eq!(p.line(), "served 1");

            // The next connection sends the start of a request head and stays in it (the
            // read timeout, 60 s, applies to it, not the idle one).
            let mut next = FcgiConn::tcp(port);
            let mut head = Vec::new();
            encode_header_into(&mut head, RecordType::BeginRequest, 1, 8);
            head.extend_from_slice(
                &BeginRequestBody {
                    role: Role::Responder,
                    flags: 1,
                }
                .encode(),
            );
            let mut pairs = Vec::new();
            fcgi::protocol::encode_pair(&mut pairs, b"QUERY_STRING", b"late");
            encode_record(&mut head, RecordType::Params, 1, &pairs);
            next.send(&head);
            // Past the first connection's idle timeout: nothing may happen to this one.
            assert_eq!(
                next.next(Duration::from_millis(2500)),
                Got::Nothing,
                "{rt:?} {h:?}: the connection was touched while its head was arriving"
            );
            let mut rest = Vec::new();
            encode_stream_end(&mut rest, RecordType::Params, 1);
            encode_record(&mut rest, RecordType::Stdin, 1, b"xy");
            encode_stream_end(&mut rest, RecordType::Stdin, 1);
            next.send(&rest);
            let r = next
                .reply(1, LIMIT)
                .unwrap_or_else(|e| panic!("{rt:?} {h:?}: {e}"));
            assert_eq!(r.body(), "n=2 q=late in=2\n");
        }
    }
}

/// `FCGX_Free(&r, 1)` on a request not finished gives it up as libfcgi does: what was
/// flushed arrives, then the connection closes without END_REQUEST (a kept connection
/// too), so the web server sees the request fail instead of a truncated answer that
/// looks complete; the program goes on.
#[test]
fn free_before_finish_gives_the_request_up_without_end_request() {
    let test = "free_before_finish_gives_the_request_up_without_end_request";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("free_kept.c", h);
        for rt in [Runtime::Classic, Runtime::Ours] {
            let (fd, port) = tcp_listener();
            let p = start(&b, &exe, rt, &[], &[], fd);
            let mut c = FcgiConn::tcp(port);
            c.send_request(1, true, &[("QUERY_STRING", "abandon")], b"");
            let mut stdout = Vec::new();
            loop {
                match c.next(LIMIT) {
                    Got::Record(RecordType::Stdout, 1, data) => stdout.extend(data),
                    Got::Closed => break,
                    other => panic!("{rt:?} {h:?}: {other:?} (stdout {stdout:?})"),
                }
            }
            assert_eq!(
                String::from_utf8_lossy(&stdout),
                "Content-type: text/plain\r\n\r\nn=1 q=abandon in=0\n",
                "{rt:?} {h:?}"
            );
            drop(c);
            assert_eq!(p.line(), "abandoned 1");
            let mut c = FcgiConn::tcp(port);
            c.send_request(1, false, &[], b"");
            assert_eq!(c.reply(1, LIMIT).unwrap().body(), "n=2 q= in=0\n");
        }
    }
}

/// The program closes its listening socket and opens another, which gets the same
/// descriptor number: requests must come from the new socket, and the old one must be
/// closed (connecting to it is refused), as with the classic library. Before the fix the
/// library kept accepting on its `dup` of the old socket, found by number.
#[test]
fn a_replaced_listening_socket_is_not_served_from_a_stale_dup() {
    let test = "a_replaced_listening_socket_is_not_served_from_a_stale_dup";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("relisten.c", h);
        for rt in [Runtime::Classic, Runtime::Ours] {
            let dir = support::temp_dir();
            let one = dir.path().join("one");
            let two = dir.path().join("two");
            let l = UnixListener::bind(&one).unwrap();
            let p = start(&b, &exe, rt, &[two.to_str().unwrap()], &[], l.into());
            let mut c = FcgiConn::unix(&one);
            c.send_request(1, false, &[], b"");
            assert_eq!(c.reply(1, LIMIT).unwrap().body(), "first\n");
            assert_eq!(p.line(), "listening fd=0");
            for n in 1..=2 {
                let mut c = FcgiConn::unix(&two);
                c.send_request(1, false, &[], b"");
                let r = c
                    .reply(1, LIMIT)
                    .unwrap_or_else(|e| panic!("{rt:?} {h:?}: on the new socket: {e}"));
                assert_eq!(r.body(), format!("second {n}\n"));
            }
            let old = std::os::unix::net::UnixStream::connect(&one);
            assert_eq!(
                old.map_err(|e| e.kind()).err(),
                Some(std::io::ErrorKind::ConnectionRefused),
                "{rt:?} {h:?}: the socket the program closed still accepts connections"
            );
        }
    }
}

// ---- 2. O_NONBLOCK listening sockets; the program's flags ----

/// An event-loop program: `O_NONBLOCK` set by the program, -EAGAIN (-11) at once when no
/// connection waits, requests served after poll() says readable, flags untouched.
#[test]
fn nonblocking_listening_socket_gives_eagain_at_once_and_keeps_its_flags() {
    let test = "nonblocking_listening_socket_gives_eagain_at_once_and_keeps_its_flags";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("nonblock.c", h);
        for rt in [Runtime::Classic, Runtime::Ours] {
            let (fd, port) = tcp_listener();
            let p = start(&b, &exe, rt, &["nonblock"], &[], fd);
            let empty = p.line();
            let (rc, ms) = empty
                .strip_prefix("empty rc=")
                .and_then(|s| s.split_once(" ms="))
                .unwrap_or_else(|| panic!("{empty:?}"));
            assert_eq!(rc, (-libc::EAGAIN).to_string(), "{rt:?} {h:?}: {empty}");
            assert!(
                ms.parse::<u64>().unwrap() < 1000,
                "{rt:?} {h:?}: -EAGAIN must come at once: {empty}"
            );
            assert_eq!(p.line(), "ready");
            for n in 1..=3 {
                let mut c = FcgiConn::tcp(port);
                c.send_request(1, false, &[], b"");
                let r = c
                    .reply(1, LIMIT)
                    .unwrap_or_else(|e| panic!("{rt:?} {h:?}: request {n}: {e}"));
                assert!(r.body().starts_with(&format!("n={n} ")), "{:?}", r.body());
                drop(c); // the classic library drains until the peer closes
                assert_eq!(p.line(), format!("served {n} flags=kept"), "{rt:?} {h:?}");
            }
        }
    }
}

/// The sockets process `pid` has open.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// The event loop's race: poll() says the listening socket is readable, FCGX_Accept_r
/// accepts the connection before its first bytes arrive (a Unix socket has no deferred
/// accept). The classic library then reads the head (its socket is blocking); ours must
/// wait for that connection's head too, not return -EAGAIN and leave its request where
/// the program never looks again (the listening socket is no longer readable).
#[test]
fn nonblocking_accept_waits_for_the_head_of_the_connection_it_accepted() {
    let test = "nonblocking_accept_waits_for_the_head_of_the_connection_it_accepted";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("nonblock.c", h);
        for rt in [Runtime::Classic, Runtime::Ours] {
            let dir = support::temp_dir();
            let path = dir.path().join("s");
            let l = UnixListener::bind(&path).unwrap();
            let p = start(&b, &exe, rt, &["nonblock"], &[], l.into());
            assert!(p.line().starts_with("empty rc=-11 "));
            assert_eq!(p.line(), "ready");
            let before = sockets_of(p.pid());
            let mut c = FcgiConn::unix(&path);
            // The program accepts (one socket more) before the request is sent.
            assert!(
                support::wait_until(LIMIT, || sockets_of(p.pid()) > before),
                "{rt:?} {h:?}: the connection was not accepted"
            );
            c.send_request(1, false, &[], b"");
            let r = c
                .reply(1, LIMIT)
                .unwrap_or_else(|e| panic!("{rt:?} {h:?}: {e}"));
            assert!(r.body().starts_with("n=1 "), "{:?}", r.body());
            drop(c);
            assert_eq!(p.line(), "served 1 flags=kept", "{rt:?} {h:?}");
        }
    }
}

/// A blocking listening socket shared (one open file description) by a process on our
/// library and one on the classic library: ours must not set `O_NONBLOCK` on it (the test
/// holds the same description and checks), so the classic one, started after ours served a
/// request, blocks in accept and serves, instead of failing with -EAGAIN.
#[test]
fn a_classic_process_sharing_the_socket_keeps_working() {
    let test = "a_classic_process_sharing_the_socket_keeps_working";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    let classic_exe = b.compile("nonblock.c", Headers::Classic);
    for h in headers {
        let exe = b.compile("nonblock.c", h);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let flags = || {
            // SAFETY: F_GETFL on our own open descriptor.
            unsafe { libc::fcntl(l.as_raw_fd(), libc::F_GETFL) }
        };
        let before = flags();
        assert_eq!(before & libc::O_NONBLOCK, 0);
        let ours = start(
            &b,
            &exe,
            Runtime::Ours,
            &["block"],
            &[],
            l.try_clone().unwrap().into(),
        );
        let mut c = FcgiConn::tcp(port);
        c.send_request(1, false, &[], b"");
        let r = c.reply(1, LIMIT).unwrap();
        assert!(r.body().starts_with("n=1 "), "{:?}", r.body());
        assert_eq!(ours.line(), "served 1 flags=kept", "{h:?}");
        assert_eq!(
            flags(),
            before,
            "{h:?}: the shared file status flags changed"
        );
        // Ours leaves; the classic process is then the only one in accept.
        assert!(ours.stop(libc::SIGTERM).success());
        let classic = start(
            &b,
            &classic_exe,
            Runtime::Classic,
            &["block"],
            &[],
            l.try_clone().unwrap().into(),
        );
        for n in 1..=2 {
            let mut c = FcgiConn::tcp(port);
            c.send_request(1, false, &[], b"");
            let r = c
                .reply(1, LIMIT)
                .unwrap_or_else(|e| panic!("{h:?}: the classic process: {e}"));
            assert_eq!(r.body(), format!("n={n} pid={}\n", classic.pid()), "{h:?}");
            drop(c);
            assert_eq!(classic.line(), format!("served {n} flags=kept"));
        }
        assert_eq!(flags(), before);
    }
}

// ---- 3. fork after accept ----

/// Parent `FCGX_Detach` + `FCGX_Free(&r, 1)`, child answers and `FCGX_Finish_r`s: the web
/// server gets the child's answer and exactly one END_REQUEST (its exit status), then the
/// connection closes once both processes let go; in both orders, kept connection or not.
#[test]
fn fork_after_accept_the_child_answers() {
    let test = "fork_after_accept_the_child_answers";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("fork.c", h);
        for mode in ["child-first", "parent-first"] {
            for rt in [Runtime::Classic, Runtime::Ours] {
                let (fd, port) = tcp_listener();
                let p = start(&b, &exe, rt, &[mode], &[], fd);
                let parent = p.pid();
                for keep in [false, true] {
                    let mut c = FcgiConn::tcp(port);
                    c.send_request(1, keep, &[], b"hello");
                    let what = format!("{rt:?} {h:?} {mode} keep={keep}");
                    let r = c.reply(1, LIMIT).unwrap_or_else(|e| panic!("{what}: {e}"));
                    // Exactly one END_REQUEST, then the connection closes once both
                    // processes let go of it.
                    c.closed_within(LIMIT)
                        .unwrap_or_else(|e| panic!("{what}: after the answer: {e}"));
                    drop(c);
                    let forked = p.line();
                    let child: u32 = forked
                        .strip_prefix("forked ")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("{forked:?}"));
                    assert_eq!(
                        r.body(),
                        format!("child {child} of {parent}: hello\n"),
                        "{what}"
                    );
                    assert_eq!((r.app_status, r.protocol_status), (7, 0), "{what}");
                    assert_eq!(p.line(), format!("released {child} detach=0"), "{what}");
                }
            }
        }
    }
}

/// The one case fork after accept cannot support: a multiplexed connection
/// (`FCGI_MPXS_CONNS=1`), shared by other requests, cannot go with a child. It fails
/// loudly, never with an empty answer: the library says why on the program's stderr, the
/// child's reads and writes fail, and the parent answers 500 with the reason on
/// FCGI_STDERR and exit status 1.
#[test]
fn fork_after_accept_on_a_multiplexed_connection_fails_loudly() {
    let test = "fork_after_accept_on_a_multiplexed_connection_fails_loudly";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("fork.c", h);
        for mode in ["child-first", "parent-first"] {
            let (fd, port) = tcp_listener();
            let p = start(
                &b,
                &exe,
                Runtime::Ours,
                &[mode],
                &[("FCGI_MPXS_CONNS", "1")],
                fd,
            );
            let mut c = FcgiConn::tcp(port);
            c.send_request(1, true, &[], b"hello");
            let what = format!("{h:?} {mode}");
            let r = c.reply(1, LIMIT).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(r.body(), "500 Internal Server Error\n", "{what}");
            assert!(
                String::from_utf8_lossy(&r.stderr).contains("multiplexed"),
                "{what}: {r:?}"
            );
            assert_eq!(r.app_status, 1, "{what}");
            // Parent and child each say why (in either order around "released").
            let mut lines: Vec<String> = Vec::new();
            let said =
                |lines: &[String]| lines.iter().filter(|l| l.contains("multiplexed")).count();
            while said(&lines) < 2 || !lines.iter().any(|l| l.starts_with("released ")) {
                match p.line_within(LIMIT) {
                    Some(l) => lines.push(l),
                    None => panic!("{what}: {lines:?}"),
                }
            }
            assert_eq!(said(&lines), 2, "{what}: {lines:?}");
            assert_eq!(
                c.next(Duration::from_millis(300)),
                Got::Nothing,
                "{what}: one END_REQUEST, the connection stays"
            );
        }
    }
}

// ---- 4. FCGI_GET_VALUES ----

/// Sends FCGI_GET_VALUES for the three variables on `c`; the answer's pairs.
fn get_values(c: &mut FcgiConn) -> Vec<(String, String)> {
    let mut q = Vec::new();
    fcgi::protocol::encode_get_values(
        &mut q,
        &["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"],
    );
    c.send(&q);
    match c.next(LIMIT) {
        Got::Record(RecordType::GetValuesResult, 0, content) => {
            let mut d = fcgi::protocol::ParamsDecoder::new(Default::default());
            d.feed(&content).unwrap();
            d.finish()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        String::from_utf8_lossy(p.name).into_owned(),
                        String::from_utf8_lossy(p.value).into_owned(),
                    )
                })
                .collect()
        }
        other => panic!("no GET_VALUES_RESULT: {other:?}"),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// A single-threaded program answers FCGI_MAX_REQS=1 (as classic does), a program with
/// four accept threads 4 (once they all called FCGX_Accept_r, never more), and
/// FCGI_MAX_CONNS what the library holds: with `FCGI_MAX_CONNS=2`, two kept connections
/// are served and a third waits in the kernel's queue until one of them closes.
#[test]
fn get_values_answers_the_threads_and_the_connections_really_held() {
    let test = "get_values_answers_the_threads_and_the_connections_really_held";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("params.c", h);
        let (fd, port) = tcp_listener();
        let p = start(&b, &exe, Runtime::Ours, &[], &[("FCGI_MAX_CONNS", "2")], fd);
        let mut c1 = FcgiConn::tcp(port);
        assert_eq!(
            get_values(&mut c1),
            pairs(&[
                ("FCGI_MAX_CONNS", "2"),
                ("FCGI_MAX_REQS", "1"),
                ("FCGI_MPXS_CONNS", "0")
            ]),
            "{h:?}"
        );
        c1.send_request(1, true, &[], b"");
        c1.reply(1, LIMIT).unwrap();
        let mut c2 = FcgiConn::tcp(port);
        c2.send_request(1, true, &[], b"");
        c2.reply(1, LIMIT).unwrap();
        let mut c3 = FcgiConn::tcp(port);
        c3.send_request(1, true, &[], b"");
        assert_eq!(
            c3.next(Duration::from_millis(500)),
            Got::Nothing,
            "{h:?}: a third connection was served with FCGI_MAX_CONNS=2"
        );
        // Both held connections still work; closing one lets the third in.
        c2.send_request(1, true, &[], b"");
        c2.reply(1, LIMIT).unwrap();
        drop(c1);
        c3.reply(1, LIMIT)
            .unwrap_or_else(|e| panic!("{h:?}: the third connection, once one closed: {e}"));
        for _ in 0..4 {
            assert_eq!(p.line().split(' ').next(), Some("served"));
        }

        let (fd, port) = tcp_listener();
        let _p4 = start(&b, &exe, Runtime::Ours, &["4"], &[], fd);
        let deadline = Instant::now() + LIMIT;
        loop {
            let v = get_values(&mut FcgiConn::tcp(port));
            let reqs: u32 = v[1].1.parse().unwrap();
            assert!((1..=4).contains(&reqs), "{h:?}: {v:?}");
            if reqs == 4 {
                assert_eq!(v[0], ("FCGI_MAX_CONNS".into(), "1024".into()));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{h:?}: four threads never answered 4: {v:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The classic library's answer to the same question, for reference: 1, 1, 0. Its reply
/// only goes out once more bytes follow the record (a known bug), so a request follows.
#[test]
fn get_values_on_the_classic_library_for_reference() {
    let test = "get_values_on_the_classic_library_for_reference";
    let Some(_) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    let exe = b.compile("params.c", Headers::Classic);
    for rt in [Runtime::Classic, Runtime::Ours] {
        let (fd, port) = tcp_listener();
        let _p = start(&b, &exe, rt, &[], &[], fd);
        let mut c = FcgiConn::tcp(port);
        let mut q = Vec::new();
        fcgi::protocol::encode_get_values(&mut q, &["FCGI_MAX_REQS", "FCGI_MPXS_CONNS"]);
        q.extend(support::capi::request_records(1, false, &[], Some(b"")));
        c.send(&q);
        match c.next(LIMIT) {
            Got::Record(RecordType::GetValuesResult, 0, content) => {
                let mut d = fcgi::protocol::ParamsDecoder::new(Default::default());
                d.feed(&content).unwrap();
                let got: Vec<(String, String)> = d
                    .finish()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            String::from_utf8_lossy(p.name).into_owned(),
                            String::from_utf8_lossy(p.value).into_owned(),
                        )
                    })
                    .collect();
                assert_eq!(
                    got,
                    pairs(&[("FCGI_MAX_REQS", "1"), ("FCGI_MPXS_CONNS", "0")]),
                    "{rt:?}"
                );
            }
            other => panic!("{rt:?}: no GET_VALUES_RESULT: {other:?}"),
        }
        c.reply(1, LIMIT).unwrap();
    }
}

// ---- 5. FCGI_WEB_SERVER_ADDRS ----

/// The list is about TCP peers: a Unix-socket peer is served with it set (as classic).
#[test]
fn allow_list_serves_unix_socket_peers() {
    let test = "allow_list_serves_unix_socket_peers";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("params.c", h);
        for rt in [Runtime::Classic, Runtime::Ours] {
            let dir = support::temp_dir();
            let path = dir.path().join("s");
            let l = UnixListener::bind(&path).unwrap();
            let p = start(
                &b,
                &exe,
                rt,
                &[],
                &[("FCGI_WEB_SERVER_ADDRS", "10.1.1.1")],
                l.into(),
            );
            let mut c = FcgiConn::unix(&path);
            c.send_request(1, false, &[], b"");
            let r = c
                .reply(1, LIMIT)
                .unwrap_or_else(|e| panic!("{rt:?} {h:?}: {e}"));
            assert!(r.body().starts_with("entries=1 "), "{:?}", r.body());
            drop(c);
            assert_eq!(p.line(), "served 1");
        }
    }
}

/// Is `peer` (connecting to `to`) served by the program with `list` set? Drops are seen as
/// the connection closing without an answer.
fn served_with_list(
    b: &CBuild,
    exe: &std::path::Path,
    list: &str,
    listener: TcpListener,
    peer_to: std::net::SocketAddr,
) -> bool {
    let p = start(
        b,
        exe,
        Runtime::Ours,
        &[],
        &[("FCGI_WEB_SERVER_ADDRS", list)],
        listener.into(),
    );
    let mut c = FcgiConn::tcp_to(peer_to);
    c.send_request(1, false, &[], b"");
    let served = match c.reply(1, LIMIT) {
        Ok(r) => {
            assert!(r.body().starts_with("entries=1 "), "{:?}", r.body());
            true
        }
        Err(e) => {
            assert!(e.starts_with("connection closed"), "{list:?}: {e}");
            false
        }
    };
    drop(p);
    served
}

/// IPv4-mapped IPv6 addresses match their IPv4 form, in the list and in the peer: an entry
/// `::ffff:127.0.0.1` admits the IPv4 peer 127.0.0.1, and an entry `127.0.0.1` admits that
/// peer seen by a dual-stack IPv6 socket as `::ffff:127.0.0.1`. Other addresses are still
/// dropped.
#[test]
fn allow_list_matches_ipv4_mapped_addresses_both_ways() {
    let test = "allow_list_matches_ipv4_mapped_addresses_both_ways";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("params.c", h);
        for (list, want) in [
            ("::ffff:127.0.0.1", true),
            ("10.0.0.1, ::ffff:127.0.0.1", true),
            ("127.0.0.1", true),
            ("::ffff:10.0.0.1", false),
            ("::1", false),
        ] {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let to = l.local_addr().unwrap();
            assert_eq!(
                served_with_list(&b, &exe, list, l, to),
                want,
                "{h:?}: IPv4 peer, list {list:?}"
            );
        }
        let Ok(l6) = TcpListener::bind("[::]:0") else {
            support::shout(&format!(
                "*** SKIP part of {test}: no IPv6 ([::]:0); the dual-stack half did NOT run ***"
            ));
            continue;
        };
        let port = l6.local_addr().unwrap().port();
        let to: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        assert!(
            served_with_list(&b, &exe, "127.0.0.1", l6, to),
            "{h:?}: a v4-mapped peer on a dual-stack socket, list 127.0.0.1"
        );
    }
}

/// A list that names no address (`" , "`) would drop every TCP peer: FCGX_Accept_r fails
/// with -EINVAL (and says why on stderr) instead, so the program's loop ends at once; a
/// malformed entry does the same. An empty list means no check, as in the classic library.
#[test]
fn allow_list_without_an_address_is_an_error_the_program_sees() {
    let test = "allow_list_without_an_address_is_an_error_the_program_sees";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("params.c", h);
        for list in [" , ", ",", "localhost", "127.0.0.1, 10.0.0.300"] {
            let (fd, _port) = tcp_listener();
            let p = start(
                &b,
                &exe,
                Runtime::Ours,
                &[],
                &[("FCGI_WEB_SERVER_ADDRS", list)],
                fd,
            );
            let msg = p.line();
            assert!(
                msg.contains("FCGI_WEB_SERVER_ADDRS") && msg.contains(list.trim()),
                "{h:?} {list:?}: {msg}"
            );
            assert_eq!(
                p.line(),
                format!("accept returned {}", -libc::EINVAL),
                "{h:?} {list:?}"
            );
        }
        let (fd, port) = tcp_listener();
        let _p = start(
            &b,
            &exe,
            Runtime::Ours,
            &[],
            &[("FCGI_WEB_SERVER_ADDRS", "")],
            fd,
        );
        let mut c = FcgiConn::tcp(port);
        c.send_request(1, false, &[], b"");
        c.reply(1, LIMIT).unwrap();
    }
}

/// The Rust entry points decide by the same rule from the same environment: a `Server`
/// whose configuration was replaced (`config_with`) and an `Acceptor` both keep
/// `FCGI_WEB_SERVER_ADDRS` (a 127.0.0.1 peer is dropped with `10.9.9.9`), and both refuse a
/// list that names no address. Run in a child process of this test binary, which owns its
/// environment.
#[test]
fn rust_entry_points_keep_the_environment_allow_list() {
    const CHILD: &str = "FCGI_CORNERS_ALLOW_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return allow_list_child();
    }
    let test = "rust_entry_points_keep_the_environment_allow_list";
    for list in ["10.9.9.9", " , "] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("FCGI_WEB_SERVER_ADDRS", list)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{list:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// [`rust_entry_points_keep_the_environment_allow_list`] in the child process.
fn allow_list_child() {
    use fcgi::server::{Acceptor, Config, Listener};
    let std_l = || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // SAFETY: the descriptor is handed over (into_raw_fd) to the Listener.
        let l = unsafe { Listener::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(l)) };
        (l.unwrap(), port)
    };
    let dropped = |port: u16| {
        let mut c = FcgiConn::tcp(port);
        c.send_request(1, false, &[], b"");
        c.reply(1, LIMIT)
            .is_err_and(|e| e.starts_with("connection closed"))
    };
    if std::env::var("FCGI_WEB_SERVER_ADDRS").unwrap() == " , " {
        let (l, _) = std_l();
        let e = Acceptor::new(l, Config::default()).unwrap_err();
        assert!(e.to_string().contains("names no address"), "{e}");
        let e = fcgi::Server::bind("127.0.0.1:0").unwrap_err();
        assert!(e.to_string().contains("names no address"), "{e}");
        return;
    }
    let (l, port) = std_l();
    let acceptor = std::sync::Arc::new(Acceptor::new(l, Config::default()).unwrap());
    let a = std::sync::Arc::clone(&acceptor);
    let waiter = std::thread::spawn(move || a.accept().map(drop));
    assert!(
        dropped(port),
        "Acceptor::new served a peer outside the list"
    );
    acceptor.shutdown();
    assert_eq!(
        waiter.join().unwrap().unwrap_err().kind(),
        std::io::ErrorKind::Interrupted
    );

    let (l, port) = std_l();
    let server = fcgi::Server::from_listener(l)
        .unwrap()
        .config_with(Config::default());
    let stop = server.shutdown_handle();
    let serving = std::thread::spawn(move || server.serve(|req| req.respond(200, &[], b"no")));
    assert!(dropped(port), "Server::config_with dropped the list");
    stop.shutdown();
    serving.join().unwrap().unwrap();
}

// ---- 6. params limits ----

/// `n` params `P_<i>=v`.
fn many_params(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("P_{i}"), "v".to_string()))
        .collect()
}

/// Sends one request with `params` on a new connection; the reply.
fn ask(port: u16, params: &[(String, String)]) -> support::capi::Reply {
    let p: Vec<(&str, &str)> = params
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut c = FcgiConn::tcp(port);
    c.send_request(1, false, &p, b"");
    c.reply(1, LIMIT).unwrap()
}

/// Over 4096 params (or 1 MiB of them) the library answers 431 itself, the program never
/// sees the request; `FCGI_PARAMS_MAX_PAIRS` / `FCGI_PARAMS_MAX_BYTES` raise the limits, and
/// the classic library (no limit) serves such requests.
#[test]
fn params_limits_answer_431_and_are_set_by_environment() {
    let test = "params_limits_answer_431_and_are_set_by_environment";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    let pairs_5000 = many_params(5000);
    let big = vec![("P_BIG".to_string(), "x".repeat(1_500_000))];
    for h in headers {
        let exe = b.compile("params.c", h);

        let (fd, port) = tcp_listener();
        let p = start(&b, &exe, Runtime::Ours, &[], &[], fd);
        for params in [&pairs_5000, &big] {
            let r = ask(port, params);
            assert!(
                String::from_utf8_lossy(&r.stdout)
                    .starts_with("Status: 431 Request Header Fields Too Large\r\n"),
                "{h:?}: {:?}",
                r.body()
            );
        }
        let r = ask(port, &many_params(4095));
        assert_eq!(
            r.body(),
            "entries=4096 first=FCGI_ROLE=RESPONDER role=RESPONDER p=4095\n"
        );
        assert_eq!(
            p.line(),
            "served 1",
            "{h:?}: the refused requests never ran"
        );

        let env = [
            ("FCGI_PARAMS_MAX_PAIRS", "10000"),
            ("FCGI_PARAMS_MAX_BYTES", "4194304"),
        ];
        for rt in [Runtime::Classic, Runtime::Ours] {
            let (fd, port) = tcp_listener();
            let _p = start(&b, &exe, rt, &[], &env, fd);
            assert_eq!(
                ask(port, &pairs_5000).body(),
                "entries=5001 first=FCGI_ROLE=RESPONDER role=RESPONDER p=5000\n",
                "{rt:?} {h:?}"
            );
            assert_eq!(
                ask(port, &big).body(),
                "entries=2 first=FCGI_ROLE=RESPONDER role=RESPONDER p=1\n",
                "{rt:?} {h:?}"
            );
        }
    }
}

// ---- 8. FCGI_ROLE ----

/// FCGI_ROLE is the first entry of the C environment (fcgiapp's envp, fcgi_stdio's
/// `environ`), as in the classic library, for each role; the Rust API gives the role as
/// `Request::role()` and keeps the params the web server sent, without it.
#[test]
fn fcgi_role_is_in_the_c_environment_and_role_in_rust() {
    let test = "fcgi_role_is_in_the_c_environment_and_role_in_rust";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        let exe = b.compile("params.c", h);
        let stdio = b.compile("role_stdio.c", h);
        for rt in [Runtime::Classic, Runtime::Ours] {
            let (fd, port) = tcp_listener();
            let _p = start(&b, &exe, rt, &[], &[], fd);
            for (role, name) in [
                (Role::Responder, "RESPONDER"),
                (Role::Authorizer, "AUTHORIZER"),
                (Role::Filter, "FILTER"),
            ] {
                let mut c = FcgiConn::tcp(port);
                c.send(&role_request(role));
                let r = c.reply(1, LIMIT).unwrap();
                assert_eq!(
                    r.body(),
                    format!("entries=2 first=FCGI_ROLE={name} role={name} p=1\n"),
                    "{rt:?} {h:?}"
                );
            }
            let (fd, port) = tcp_listener();
            let _p = start(&b, &stdio, rt, &[], &[], fd);
            let mut c = FcgiConn::tcp(port);
            c.send_request(1, false, &[], b"");
            assert_eq!(c.reply(1, LIMIT).unwrap().body(), "FCGI_ROLE=RESPONDER\n");
        }
    }

    // The same request as the Rust API sees it.
    let std_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_l.local_addr().unwrap().port();
    // SAFETY: the descriptor is handed over (into_raw_fd) to the Listener.
    let l =
        unsafe { fcgi::server::Listener::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(std_l)) }
            .unwrap();
    let acceptor = fcgi::server::Acceptor::new(l, Default::default()).unwrap();
    let client = std::thread::spawn(move || {
        let mut c = FcgiConn::tcp(port);
        c.send(&role_request(Role::Authorizer));
        c.reply(1, LIMIT).unwrap()
    });
    let req = acceptor.accept().unwrap();
    assert_eq!(req.role(), Role::Authorizer);
    let names: Vec<Vec<u8>> = req.params().map(|p| p.name.to_vec()).collect();
    assert_eq!(names, vec![b"P_1".to_vec()]);
    assert_eq!(req.param("FCGI_ROLE"), None);
    acceptor.finish(req).unwrap();
    client.join().unwrap();
}

/// A whole request with `role`, one param `P_1=x`, empty stdin and (for a Filter) data.
fn role_request(role: Role) -> Vec<u8> {
    let mut out = Vec::new();
    encode_header_into(&mut out, RecordType::BeginRequest, 1, 8);
    out.extend_from_slice(&BeginRequestBody { role, flags: 0 }.encode());
    fcgi::protocol::encode_params(&mut out, 1, [(&b"P_1"[..], &b"x"[..])]);
    encode_stream_end(&mut out, RecordType::Stdin, 1);
    if role == Role::Filter {
        encode_stream_end(&mut out, RecordType::Data, 1);
    }
    out
}

// ---- 9. a shutdown signal and threads waiting in accept(2) ----

/// Whether a thread of `pid` waits in `accept(2)` now (its wait channel).
fn in_accept(pid: u32) -> bool {
    threads_where(pid, in_accept_now) > 0
}

/// Whether the thread at `/proc/PID/task/TID` waits in `accept(2)`.
fn in_accept_now(task: &std::path::Path) -> bool {
    std::fs::read_to_string(task.join("wchan")).is_ok_and(|w| w.trim() == "inet_csk_accept")
}

/// How many threads of `pid` `pred` holds for (given `/proc/PID/task/TID`).
fn threads_where(pid: u32, pred: impl Fn(&std::path::Path) -> bool) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|t| pred(&t.path()))
        .count()
}

/// Threads of `pid` waiting for a connection: in `epoll_wait` (x86_64: 232; epoll_pwait
/// 281, epoll_pwait2 441) or in `accept(2)`, read from `/proc/PID/task/*/`.
fn waiting_for_a_connection(pid: u32) -> usize {
    threads_where(pid, |t| {
        in_accept_now(t)
            || std::fs::read_to_string(t.join("syscall"))
                .is_ok_and(|s| matches!(s.split_whitespace().next(), Some("232" | "281" | "441")))
    })
}

/// Waits (at most [`LIMIT`]) until `cond(pid)` holds for the program's threads, which the
/// kernel shows only in `/proc` (no event to wait for: it is looked at every 10 ms);
/// fails with `what` and each thread's system call otherwise.
fn until_threads(pid: u32, cond: impl Fn(u32) -> bool, what: &str) {
    let deadline = Instant::now() + LIMIT;
    while !cond(pid) {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {LIMIT:?} ({})",
            syscalls(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Each thread's current system call and wait channel, for a failure message.
fn syscalls(pid: u32) -> String {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| {
            let read = |f| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            let sys = read("syscall");
            format!(
                "{} {}",
                sys.split_whitespace().next().unwrap_or("?"),
                read("wchan").trim()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Three threads in `FCGX_Accept_r` with nothing to watch wait in epoll sets of their own
/// (see the engine), or in `accept(2)` when another took the connection they woke for;
/// SIGTERM goes to the main thread in `pthread_join`, and its handler must wake them
/// wherever they wait: each `FCGX_Accept_r` returns -1 and the program ends.
#[test]
fn sigterm_to_another_thread_ends_several_threads_waiting_for_a_request() {
    let test = "sigterm_to_another_thread_ends_several_threads_waiting_for_a_request";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        stop_in_accept_ends(&b, h, 3, |pid| waiting_for_a_connection(pid) == 3);
    }
}

/// Runs `stop_in_accept.c` with `threads` workers, serves one request, waits until
/// `waiting(pid)` holds, then sends SIGTERM to the process: it must exit 0.
fn stop_in_accept_ends(b: &CBuild, h: Headers, threads: usize, waiting: impl Fn(u32) -> bool) {
    let exe = b.compile("stop_in_accept.c", h);
    let (fd, port) = tcp_listener();
    let p = start(b, &exe, Runtime::Ours, &[&threads.to_string()], &[], fd);
    let mut c = FcgiConn::tcp(port);
    c.send_request(1, false, &[], b"");
    assert_eq!(c.reply(1, LIMIT).unwrap().body(), "served\n", "{h:?}");
    until_threads(
        p.pid(),
        &waiting,
        &format!("{h:?}: the {threads} worker(s) wait"),
    );
    let status = p.stop(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{h:?}: {status}");
}

/// The only thread in `FCGX_Accept_r` waits in `accept(2)` on a blocking socket, the main
/// thread in `pthread_join`; SIGTERM, sent to the process, goes to the main thread, whose
/// handler must also interrupt the accept: the worker's `FCGX_Accept_r` returns -1 and the
/// program ends. (The classic library waits in that accept for good: a `systemctl stop`
/// then waits for its SIGKILL.)
#[test]
fn sigterm_to_another_thread_ends_a_wait_in_accept() {
    let test = "sigterm_to_another_thread_ends_a_wait_in_accept";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    for h in headers {
        stop_in_accept_ends(&b, h, 1, in_accept);
    }
}

// ---- 10. a connection lost to another process, while a kept one waits ----

/// Processes that share one listening socket (spawn-fcgi -F, a process manager) race for
/// each new connection. A single-threaded process that keeps a connection for the web
/// server waits for the kept connection and the socket at once; when a connection arrives
/// and another process takes it between this process's look at the socket and its
/// `accept(2)`, that accept finds the queue empty and waits for the next connection. It
/// must not wait there for long: the web server's next request on the kept connection
/// would go unanswered until some new connection reached this very process (nginx with
/// `fastcgi_keep_conn on` then times out). `steal_accept.so` (LD_PRELOAD) plays the other
/// process at exactly that moment.
///
/// The bound is a signal that a timer sends the waiting thread, which only the library's
/// own no-op handler may receive: SIGPIPE while libfcgi's handler is in place, else
/// SIGURG (the library installs the handler where the program left SIGURG at its
/// default), so a program that set SIGPIPE otherwise after `FCGX_Init` is bounded too and
/// its own SIGPIPE handler never runs for it. A program that handles both keeps the
/// unbounded wait, as with libfcgi (the kept request is answered once a new connection
/// reaches the process), and neither of its handlers runs.
///
/// Ours only: the classic library reads the kept connection alone and never looks at the
/// socket while it is open.
#[test]
fn a_connection_lost_to_another_process_does_not_hold_up_a_kept_one() {
    let test = "a_connection_lost_to_another_process_does_not_hold_up_a_kept_one";
    let Some(headers) = both_headers(test) else {
        return;
    };
    let b = CBuild::new();
    let shim = b.compile_shared("steal_accept.c");
    let preload = shim.to_str().unwrap();
    // The program's own dispositions (tests/c/free_kept.c), and whether the wait is bounded.
    let cases: [(&[(&str, &str)], bool); 4] = [
        (&[], true),
        (&[("OWN_SIGPIPE", "ignore")], true),
        (&[("OWN_SIGPIPE", "handler")], true),
        (
            &[("OWN_SIGPIPE", "handler"), ("OWN_SIGURG", "handler")],
            false,
        ),
    ];
    for h in headers {
        let exe = b.compile("free_kept.c", h);
        for (own, bounded) in cases {
            let (fd, port) = tcp_listener();
            let mut env = vec![("LD_PRELOAD", preload)];
            env.extend_from_slice(own);
            let p = start(&b, &exe, Runtime::Ours, &[], &env, fd);
            let mut kept = FcgiConn::tcp(port);
            kept.send_request(1, true, &[("QUERY_STRING", "first")], b"");
            assert_eq!(kept.reply(1, LIMIT).unwrap().body(), "n=1 q=first in=0\n");
            assert_eq!(p.line(), "served 1");

            // A new connection: the program is told of it, and "another process" takes it.
            let mut lost = FcgiConn::tcp(port);
            lost.send_request(1, false, &[("QUERY_STRING", "lost")], b"");
            lost.closed_within(LIMIT).unwrap_or_else(|e| {
                panic!("{h:?} {own:?}: the other process took the connection: {e}")
            });
            assert_eq!(p.line(), "stole a connection", "{h:?} {own:?}");

            let (kept_n, next_n) = if bounded {
                kept.send_request(1, true, &[("QUERY_STRING", "kept")], b"");
                let r = kept.reply(1, LIMIT).unwrap_or_else(|e| {
                    panic!(
                        "{h:?} {own:?}: the kept connection's next request: {e} (threads: {})",
                        syscalls(p.pid())
                    )
                });
                assert_eq!(r.body(), "n=2 q=kept in=0\n", "{h:?} {own:?}");
                (2, 3)
            } else {
                until_threads(p.pid(), in_accept, &format!("{h:?} {own:?}: in accept"));
                kept.send_request(1, true, &[("QUERY_STRING", "kept")], b"");
                // A bound would have fired 100 times over by now.
                if let Some(line) = p.line_within(Duration::from_millis(200)) {
                    panic!("{h:?} {own:?}: the program wrote {line:?} while it waited in accept");
                }
                (3, 2) // the next connection ends the accept; the kept request follows
            };
            let mut next = FcgiConn::tcp(port);
            next.send_request(1, false, &[("QUERY_STRING", "next")], b"");
            let r = next.reply(1, LIMIT).unwrap();
            assert_eq!(
                r.body(),
                format!("n={next_n} q=next in=0\n"),
                "{h:?} {own:?}"
            );
            if !bounded {
                let r = kept.reply(1, LIMIT).unwrap();
                assert_eq!(
                    r.body(),
                    format!("n={kept_n} q=kept in=0\n"),
                    "{h:?} {own:?}"
                );
            }
            // Only the library's handler ran: the program wrote nothing but these.
            assert_eq!(p.line(), "served 2", "{h:?} {own:?}");
            assert_eq!(p.line(), "served 3", "{h:?} {own:?}");
        }
    }
}
