//! Where the server listens and how it is started: TCP v4/v6, Unix sockets, fd 0 from a
//! spawner, systemd socket activation, the CGI fallback, the allow-list and signals.

mod common;
mod support;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use fcgi::protocol::{decode_record, RecordType, Status};
use fcgi::server::{AllowList, Listener};

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} not built (cargo test builds examples)",
        path.display()
    );
    path
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fcgi-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Sends one request over any stream and returns stdout and the END_REQUEST body.
fn roundtrip<S: Read + Write>(mut s: S, body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    s.write_all(&Raw::request_bytes(1, false, &[("P", "v")], body))
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let (mut out, mut end) = (Vec::new(), Vec::new());
    let mut rest = &buf[..];
    while let Ok(Status::Complete((rec, used))) = decode_record(rest) {
        match rec.header.record_type {
            RecordType::Stdout => out.extend_from_slice(rec.content),
            RecordType::EndRequest => end = rec.content.to_vec(),
            _ => {}
        }
        rest = &rest[used..];
    }
    (out, end)
}

#[test]
fn ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIP ipv6_loopback: no IPv6 loopback on this machine");
        return;
    }
    let srv = TestServer::start_on("[::1]:0", config(1), echo);
    assert!(srv.addr.starts_with("[::1]:"));
    let mut c = srv.connect();
    assert_eq!(c.request(1, false, &[], b"v6").body(), b"\nv6");
}

#[test]
fn bind_errors_name_the_address() {
    // TCP: the port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let e = fcgi::Server::bind(&addr).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        e.to_string().starts_with(&format!("{addr}: ")),
        "the message names {addr}: {e}"
    );
    // Unix: the directory does not exist.
    let dir = temp_dir("bind-errors");
    let path = dir.join("missing/app.sock");
    let e = Listener::bind(path.to_str().unwrap()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(
        e.to_string().starts_with(&format!("{}: ", path.display())),
        "the message names the path: {e}"
    );
    // A live socket: the path, and who holds it.
    let live = dir.join("live.sock");
    let _held = Listener::bind_unix(&live, 0o600, 16).unwrap();
    let e = Listener::bind_unix(&live, 0o600, 16).unwrap_err();
    assert!(
        e.to_string().starts_with(&live.display().to_string()),
        "{e}"
    );
}

#[test]
fn unix_socket_with_mode_stale_socket_replaced_live_one_refused() {
    let dir = temp_dir("unix");
    let path = dir.join("app.sock");
    // A stale socket file (nobody listens) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listener = Listener::bind_unix(&path, 0o600, 16).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A live one is not.
    let err = Listener::bind_unix(&path, 0o600, 16).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    // A regular file is never removed.
    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    assert!(Listener::bind_unix(&file, 0o600, 16).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    let mut cfg = config(1);
    cfg.handle_signals = false;
    let server = fcgi::Server::from_listener(listener)
        .unwrap()
        .config_with(cfg);
    let stop = server.shutdown_handle();
    let t = std::thread::spawn(move || server.serve(echo));
    let (out, end) = roundtrip(UnixStream::connect(&path).unwrap(), b"over unix");
    assert!(out.ends_with(b"P=v\n\nover unix"));
    assert_eq!(end[4], 0);
    stop.shutdown();
    t.join().unwrap().unwrap();
    assert!(!path.exists(), "socket file removed on shutdown");
}

/// Spawns `cmd` and kills it on drop.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn listening_socket_inherited_on_fd_0_like_spawn_fcgi() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd: OwnedFd = listener.into();
    let _child = Child(
        Command::new(example("echo"))
            .stdin(Stdio::from(fd))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (out, _) = roundtrip(std::net::TcpStream::connect(addr).unwrap(), b"via fd 0");
    assert!(
        out.ends_with(b"P=v\n\nvia fd 0"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn systemd_socket_activation_listen_fds() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let raw = listener.as_raw_fd();
    // The shell moves the socket to fd 3 (systemd's SD_LISTEN_FDS_START) and execs the
    // app with its own pid in LISTEN_PID. (Rust's Command may use fd 3 itself before exec,
    // so the move happens in the shell, not in pre_exec.)
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!(
            "{}LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\"",
            if raw == 3 {
                String::new()
            } else {
                format!("exec 3<&{raw} {raw}<&-; ")
            }
        ))
        .arg(example("echo"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: fcntl is async-signal-safe; it only clears close-on-exec on our socket.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _child = Child(cmd.spawn().unwrap());
    let (out, _) = roundtrip(std::net::TcpStream::connect(addr).unwrap(), b"activated");
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.ends_with("P=v\n\nactivated"), "{text}");
}

#[test]
fn cgi_fallback_runs_once_on_environment_and_stdio() {
    let mut child = Command::new(example("echo"))
        .env_clear()
        .env("REQUEST_METHOD", "POST")
        .env("CONTENT_LENGTH", "7")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"cgi in!").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("Content-Type: text/plain\r\n\r\n"),
        "{text}"
    );
    assert!(text.contains("REQUEST_METHOD=POST\n"));
    assert!(text.ends_with("\ncgi in!"));
}

#[test]
fn allow_list_drops_peers_not_listed() {
    let mut cfg = config(1);
    cfg.allow = Some(AllowList::parse("10.9.9.9, ::1").unwrap());
    let srv = TestServer::start(cfg, echo);
    let mut c = srv.connect();
    c.send(&Raw::request_bytes(1, false, &[], b"x"));
    assert!(c.record().is_none(), "dropped without an answer");

    let mut cfg = config(1);
    cfg.allow = Some(AllowList::parse("127.0.0.1").unwrap());
    let srv = TestServer::start(cfg, echo);
    assert_eq!(srv.connect().request(1, false, &[], b"ok").body(), b"\nok");
}

#[test]
fn allow_list_from_environment_in_a_real_process() {
    let _child = Child(
        Command::new(example("hello"))
            .arg("127.0.0.1:0")
            .env("FCGI_WEB_SERVER_ADDRS", "not an address")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut child = _child;
    let status = child.0.wait().unwrap();
    assert!(
        !status.success(),
        "a malformed allow-list is an error, not allow-all"
    );
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("FCGI_WEB_SERVER_ADDRS"), "{err}");
}

#[test]
fn sigterm_stops_gracefully_after_the_request_in_flight() {
    stops_gracefully_on(libc::SIGTERM);
}

#[test]
fn sigusr1_stops_gracefully_after_the_request_in_flight() {
    stops_gracefully_on(libc::SIGUSR1);
}

fn stops_gracefully_on(signal: i32) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(example("echo"))
        .arg(&addr)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut c = loop {
        match std::net::TcpStream::connect(&addr) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    // Start a request and leave its body unfinished.
    let full = Raw::request_bytes(1, false, &[], b"finish me");
    let cut = full.len() - 8; // all but the end of STDIN
    c.write_all(&full[..cut]).unwrap();
    // In flight: a worker runs the handler, which has read the body and waits in recv(2)
    // for the end of stdin.
    eventually("the handler waiting for the end of stdin", || {
        support::waits_in_recv(child.id(), port)
    });
    assert!(
        support::listening(port),
        "no LISTEN row for {port} in /proc/net/tcp"
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    // The signal was taken: the server stops accepting (closes its listener) ...
    eventually("the listener to close after the signal", || {
        !support::listening(port)
    });
    // ... and is still there, finishing the request in flight.
    assert!(
        child.try_wait().unwrap().is_none(),
        "still finishing the request in flight"
    );
    c.write_all(&full[cut..]).unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf).contains("finish me"));
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(std::net::TcpStream::connect(&addr).is_err());
}
