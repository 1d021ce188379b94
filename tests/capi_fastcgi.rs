//! C programs on our `libfcgi.so.0` in FastCGI mode: `FCGX_Accept_r` (fcgiapp) and
//! `FCGI_Accept` (fcgi_stdio) on a listening socket passed as fd 0, driven by Debian's
//! `cgi-fcgi` running on the classic library (an independent implementation of the other
//! side), and SIGTERM ending the accept loop.
//!
//! Each test copies our library into a temporary `lib/libfcgi.so.0` (the classic one is
//! installed and would win otherwise) and the programs exit 3 if they find no
//! `fcgi_rs_version`. Missing tools: the test says it skips, or fails when `CI=true` or
//! `FCGI_REQUIRE_PEERS=1`.

mod support;

use support::peers_required;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn have(test: &str) -> bool {
    let cc = Command::new("cc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    let cgi_fcgi = Path::new("/usr/bin/cgi-fcgi").exists();
    if cc && cgi_fcgi {
        return true;
    }
    if peers_required() {
        panic!("{test}: needs cc and /usr/bin/cgi-fcgi (libfcgi-bin)");
    }
    eprintln!("SKIPPING {test}: needs cc and /usr/bin/cgi-fcgi (libfcgi-bin)");
    false
}

/// Our library in `dir/lib`, as `libfcgi.so.0` with the `libfcgi.so` link.
struct Prefix {
    dir: tempfile::TempDir,
}

impl Prefix {
    fn new() -> Prefix {
        let exe = std::env::current_exe().unwrap();
        let deps = exe.parent().unwrap();
        let built = [deps.join("libfcgi.so"), deps.join("../libfcgi.so")]
            .into_iter()
            .find(|p| p.exists())
            .expect("libfcgi.so next to the test executable");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::copy(built, dir.path().join("lib/libfcgi.so.0")).unwrap();
        std::os::unix::fs::symlink("libfcgi.so.0", dir.path().join("lib/libfcgi.so")).unwrap();
        Prefix { dir }
    }

    fn lib(&self) -> PathBuf {
        self.dir.path().join("lib")
    }

    fn compile(&self, src: &str) -> PathBuf {
        self.compile_with(src, false)
    }

    /// Compiles against our headers, or (`classic`) against the classic ones in
    /// /usr/include; either way linked with our library.
    fn compile_with(&self, src: &str, classic: bool) -> PathBuf {
        let name = format!(
            "{}-{}",
            src.trim_end_matches(".c"),
            if classic { "classic" } else { "ours" }
        );
        let exe = self.dir.path().join(name);
        let mut cmd = Command::new("cc");
        cmd.args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&exe);
        if !classic {
            cmd.arg(format!("-I{}/include", env!("CARGO_MANIFEST_DIR")));
        }
        let out = cmd
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/c")
                    .join(src),
            )
            .arg("-L")
            .arg(self.lib())
            .args(["-lfcgi", "-ldl"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cc {src}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    }

    /// Starts `exe` as a FastCGI application: a new listening socket on 127.0.0.1 as its
    /// fd 0, in its own process group. Returns the child and the address.
    fn spawn_app(&self, exe: &Path) -> (App, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let fd: std::os::fd::OwnedFd = listener.into();
        let child = Command::new(exe)
            .env("LD_LIBRARY_PATH", self.lib())
            .stdin(Stdio::from(fd))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        (App(Some(child)), addr)
    }
}

use std::os::unix::process::CommandExt;

/// A running application; killed (process group) if the test ends early.
struct App(Option<Child>);

impl App {
    fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }

    /// Sends `sig` and waits (up to 10 s) for the exit; returns the output.
    fn stop_with(mut self, sig: i32) -> Output {
        let mut child = self.0.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                // SAFETY: killing our own child's process group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                panic!("the application did not exit after signal {sig}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            // SAFETY: killing our own child's process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

/// Our headers, and the classic ones when libfcgi-dev is installed (the second build proves
/// binary compatibility of programs compiled against libfcgi's own headers).
fn header_sets(test: &str) -> Vec<bool> {
    if Path::new("/usr/include/fcgiapp.h").exists() {
        return vec![false, true];
    }
    if peers_required() {
        panic!("{test}: the classic headers (libfcgi-dev) are missing");
    }
    eprintln!("note: {test}: classic headers missing, built against ours only");
    vec![false]
}

/// One request through Debian's cgi-fcgi on the classic library (LD_LIBRARY_PATH unset):
/// `body` as stdin with CONTENT_LENGTH, `env` as extra params.
fn cgi_fcgi(addr: &str, body: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new("/usr/bin/cgi-fcgi")
        .args(["-bind", "-connect", addr])
        .env_remove("LD_LIBRARY_PATH")
        .env("CONTENT_LENGTH", body.len().to_string())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn fcgx_accept_r_serves_requests_and_ends_on_sigterm() {
    let test = "fcgx_accept_r_serves_requests_and_ends_on_sigterm";
    if !have(test) {
        return;
    }
    let prefix = Prefix::new();
    for classic in header_sets(test) {
        let exe = prefix.compile_with("echo.c", classic);
        let (app, addr) = prefix.spawn_app(&exe);
        assert!(app.pid() > 0);

        let out = cgi_fcgi(&addr, b"hello", &[("REQUEST_METHOD", "POST")]);
        assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Content-type: text/plain\r\n\r\nrequest 1 role=RESPONDER method=POST keep=0 id=1 fd=yes\nhello"
    );
        assert_eq!(String::from_utf8_lossy(&out.stderr), "to stderr 1");
        assert_eq!(
            out.status.code(),
            Some(5),
            "FCGX_SetExitStatus is END_REQUEST's appStatus"
        );

        let body = vec![b'x'; 100_000];
        let out = cgi_fcgi(&addr, &body, &[("REQUEST_METHOD", "PUT")]);
        let stdout = out.stdout;
        let head =
        b"Content-type: text/plain\r\n\r\nrequest 2 role=RESPONDER method=PUT keep=0 id=1 fd=yes\n";
        assert_eq!(
            &stdout[..head.len()],
            head,
            "{}",
            String::from_utf8_lossy(&stdout[..200.min(stdout.len())])
        );
        assert_eq!(
            &stdout[head.len()..],
            &body[..],
            "a 100 kB body echoed through several records"
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "the exit status is reset for each request"
        );

        let started = Instant::now();
        let out = app.stop_with(libc::SIGTERM);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            out.status.code(),
            Some(0),
            "SIGTERM ends the accept loop; the program exits itself"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("accept returned {}", -libc::EINTR)
        );
    }
}

#[test]
fn fcgi_stdio_program_runs_as_fastcgi_with_request_environ() {
    let test = "fcgi_stdio_program_runs_as_fastcgi_with_request_environ";
    if !have(test) {
        return;
    }
    let prefix = Prefix::new();
    for classic in header_sets(test) {
        let exe = prefix.compile_with("cgi_stdio.c", classic);
        let (app, addr) = prefix.spawn_app(&exe);
        for run in 1..=2 {
            let out = cgi_fcgi(&addr, b"hello\nWXYZ rest", &[("FCGI_TEST_VAR", "hi")]);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!(
                    "Content-type: text/plain\r\n\r\nrun {run} is_cgi=0\nline=hello\nfread=WXYZ\n\
                 fprintf to stdout\nputs\nputs_ret=10\nfwrite\nc\ngetenv=hi\nfileno=-1\n"
                )
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                "perr: No such file or directory"
            );
            assert_eq!(out.status.code(), Some(0));
        }
        let out = app.stop_with(libc::SIGTERM);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A FastCGI client written with the codec: what the tests send as the web server.
mod client {
    use fcgi::protocol::{
        decode_record, encode_params, encode_record, encode_stream_end, BeginRequestBody,
        EndRequestBody, RecordType, Role, Status, KEEP_CONN,
    };
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// One request's records: BEGIN_REQUEST, PARAMS, STDIN, and DATA when given.
    pub fn request_bytes(
        id: u16,
        role: Role,
        keep: bool,
        params: &[(&str, &str)],
        stdin: &[u8],
        data: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let body = BeginRequestBody {
            role,
            flags: if keep { KEEP_CONN } else { 0 },
        };
        encode_record(&mut out, RecordType::BeginRequest, id, &body.encode());
        encode_params(
            &mut out,
            id,
            params.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        );
        encode_record(&mut out, RecordType::Stdin, id, stdin);
        encode_stream_end(&mut out, RecordType::Stdin, id);
        if let Some(data) = data {
            encode_record(&mut out, RecordType::Data, id, data);
            encode_stream_end(&mut out, RecordType::Data, id);
        }
        out
    }

    /// The answer to one request: stdout, stderr, appStatus.
    #[derive(Debug)]
    pub struct Answer {
        pub stdout: Vec<u8>,
        pub stderr: Vec<u8>,
        pub app_status: u32,
    }

    /// Reads records until END_REQUEST for `id`; `pending` keeps bytes of later records.
    pub fn read_answer(conn: &mut TcpStream, id: u16, pending: &mut Vec<u8>) -> Answer {
        let mut answer = Answer {
            stdout: Vec::new(),
            stderr: Vec::new(),
            app_status: 0,
        };
        loop {
            while let Status::Complete((record, used)) = decode_record(pending).unwrap() {
                let h = record.header;
                assert_eq!(h.request_id, id, "answer for another request");
                let content = record.content.to_vec();
                pending.drain(..used);
                match h.record_type {
                    RecordType::Stdout => answer.stdout.extend_from_slice(&content),
                    RecordType::Stderr => answer.stderr.extend_from_slice(&content),
                    RecordType::EndRequest => {
                        answer.app_status = EndRequestBody::decode(&content).unwrap().app_status;
                        return answer;
                    }
                    other => panic!("unexpected record {other:?}"),
                }
            }
            let mut buf = [0u8; 65536];
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before END_REQUEST");
            pending.extend_from_slice(&buf[..n]);
        }
    }

    /// Connects, sends one request and reads its answer.
    pub fn call(
        addr: &str,
        role: Role,
        params: &[(&str, &str)],
        stdin: &[u8],
        data: Option<&[u8]>,
    ) -> Answer {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        conn.write_all(&request_bytes(1, role, false, params, stdin, data))
            .unwrap();
        read_answer(&mut conn, 1, &mut Vec::new())
    }
}

#[test]
fn all_three_roles_and_filter_data() {
    use fcgi::protocol::Role;
    let test = "all_three_roles_and_filter_data";
    if !have(test) {
        return;
    }
    let prefix = Prefix::new();
    for classic in header_sets(test) {
        let exe = prefix.compile_with("roles.c", classic);
        let (app, addr) = prefix.spawn_app(&exe);

        let a = client::call(&addr, Role::Responder, &[("X", "1")], b"body", None);
        assert_eq!(
            String::from_utf8_lossy(&a.stdout),
            format!(
                "role=RESPONDER id=1 keep=0 X=1 stdin=body eof=-1 err=0 filter=-1 err={}",
                -5
            )
        );
        assert_eq!(a.app_status, 101);

        let a = client::call(&addr, Role::Authorizer, &[("X", "auth")], b"", None);
        assert_eq!(
            String::from_utf8_lossy(&a.stdout),
            "role=AUTHORIZER id=1 keep=0 X=auth stdin= eof=-1 err=0 filter=-1 err=-5"
        );

        let a = client::call(&addr, Role::Filter, &[], b"in", Some(b"file data"));
        assert_eq!(
            String::from_utf8_lossy(&a.stdout),
            "role=FILTER id=1 keep=0 X=- stdin=in eof=-1 err=0 filter=0 data=file data"
        );
        drop(app);
    }
}

/// A single-threaded program and a web server that keeps connections open: an idle kept
/// connection must not stop the program from serving another connection (libfcgi blocked
/// on the kept one), and pipelined requests on one connection are all answered.
#[test]
fn single_threaded_program_serves_past_idle_kept_connections() {
    use fcgi::protocol::Role;
    use std::io::Write;
    let test = "single_threaded_program_serves_past_idle_kept_connections";
    if !have(test) {
        return;
    }
    let prefix = Prefix::new();
    let exe = prefix.compile("roles.c");
    let (app, addr) = prefix.spawn_app(&exe);

    let mut kept = std::net::TcpStream::connect(&addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut pending = Vec::new();
    kept.write_all(&client::request_bytes(
        7,
        Role::Responder,
        true,
        &[("X", "a")],
        b"",
        None,
    ))
    .unwrap();
    let a = client::read_answer(&mut kept, 7, &mut pending);
    assert!(String::from_utf8_lossy(&a.stdout).starts_with("role=RESPONDER id=7 keep=1 X=a"));
    assert_eq!(a.app_status, 107);

    // The kept connection is idle now; another connection must be served at once.
    let started = Instant::now();
    let b = client::call(&addr, Role::Responder, &[("X", "b")], b"", None);
    assert!(String::from_utf8_lossy(&b.stdout).contains("X=b"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stalled behind the idle kept connection"
    );

    // Two pipelined requests on the kept connection, sent in one write.
    let mut both = client::request_bytes(8, Role::Responder, true, &[("X", "c")], b"1", None);
    both.extend(client::request_bytes(
        9,
        Role::Responder,
        true,
        &[("X", "d")],
        b"2",
        None,
    ));
    kept.write_all(&both).unwrap();
    let c = client::read_answer(&mut kept, 8, &mut pending);
    let d = client::read_answer(&mut kept, 9, &mut pending);
    assert!(String::from_utf8_lossy(&c.stdout).contains("id=8 keep=1 X=c stdin=1"));
    assert!(String::from_utf8_lossy(&d.stdout).contains("id=9 keep=1 X=d stdin=2"));
    drop(app);
}

#[test]
fn many_threads_accept_on_one_socket_without_a_lock() {
    let test = "many_threads_accept_on_one_socket_without_a_lock";
    if !have(test) {
        return;
    }
    let prefix = Prefix::new();
    let exe = {
        let exe = prefix.dir.path().join("threads");
        let out = Command::new("cc")
            .args([
                "-std=gnu11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pthread",
                "-o",
            ])
            .arg(&exe)
            .arg(format!("-I{}/include", env!("CARGO_MANIFEST_DIR")))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/threads.c"))
            .arg("-L")
            .arg(prefix.lib())
            .args(["-lfcgi", "-ldl"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    };
    let (app, addr) = prefix.spawn_app(&exe);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || cgi_fcgi(&addr, b"", &[]))
        })
        .collect();
    let mut threads = std::collections::BTreeSet::new();
    for c in clients {
        let out = c.join().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text.lines().last().unwrap_or_default().to_owned();
        assert!(line.starts_with("thread "), "{text:?}");
        threads.insert(line);
    }
    assert!(
        threads.len() >= 2,
        "8 concurrent requests were all served by {threads:?}"
    );
    drop(app);
}

/// The bad-input cases of the reference: an aborted request ends with a stream error the
/// program sees (-3, as libfcgi), garbage and a CVE-2025-23016-style params length only
/// cost their own connection, and the program keeps serving.
#[test]
fn bad_input_ends_the_request_and_the_program_keeps_serving() {
    use fcgi::protocol::{encode_record, BeginRequestBody, RecordType, Role};
    use std::io::{Read, Write};
    let test = "bad_input_ends_the_request_and_the_program_keeps_serving";
    if !have(test) {
        return;
    }
    let prefix = Prefix::new();
    let exe = prefix.compile("roles.c");
    let (app, addr) = prefix.spawn_app(&exe);
    let connect = || {
        let c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    };

    // Abort in the middle of stdin.
    let mut conn = connect();
    let mut wire = Vec::new();
    let begin = BeginRequestBody {
        role: Role::Responder,
        flags: 0,
    };
    encode_record(&mut wire, RecordType::BeginRequest, 1, &begin.encode());
    fcgi::protocol::encode_params(&mut wire, 1, [(&b"X"[..], &b"ab"[..])]);
    encode_record(&mut wire, RecordType::Stdin, 1, b"part");
    conn.write_all(&wire).unwrap();
    // The abort must come in the middle of stdin: once the program has accepted the
    // request, taken in "part" and waits in recv(2) for more of it.
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let pid = app.pid() as u32;
    let reading_stdin = || support::waits_in_recv(pid, port);
    assert!(
        support::wait_until(Duration::from_secs(10), reading_stdin),
        "roles.c never waited for the rest of stdin (/proc/{pid}/task/*/syscall)"
    );
    let mut abort = Vec::new();
    fcgi::protocol::encode_header_into(&mut abort, RecordType::AbortRequest, 1, 0);
    conn.write_all(&abort).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("stdin=part eof=-1 err=-3"), "{text:?}");

    // Garbage: a wrong version byte.
    let mut conn = connect();
    conn.write_all(b"\x07garbage garbage garbage").unwrap();
    let mut sink = Vec::new();
    let _ = conn.read_to_end(&mut sink);

    // A params pair claiming 2 GiB (CVE-2025-23016): refused without allocating it.
    let mut conn = connect();
    let mut wire = Vec::new();
    encode_record(&mut wire, RecordType::BeginRequest, 1, &begin.encode());
    encode_record(
        &mut wire,
        RecordType::Params,
        1,
        &[0xff, 0xff, 0xff, 0xff, 0x01, b'N', b'v'],
    );
    conn.write_all(&wire).unwrap();
    let _ = conn.read_to_end(&mut sink);

    // Still serving.
    let a = client::call(&addr, Role::Responder, &[("X", "after")], b"ok", None);
    assert!(String::from_utf8_lossy(&a.stdout).contains("X=after stdin=ok eof=-1 err=0"));
    drop(app);
}

/// A fcgiapp program started as CGI (fd 0 a pipe) gets libfcgi's answer from
/// FCGX_Accept_r: -ENOTSOCK, and no CGI fallback.
#[test]
fn fcgx_accept_r_on_a_pipe_returns_enotsock() {
    let test = "fcgx_accept_r_on_a_pipe_returns_enotsock";
    if !have(test) {
        return;
    }
    let prefix = Prefix::new();
    let exe = prefix.compile("echo.c");
    let mut child = Command::new(&exe)
        .env("LD_LIBRARY_PATH", prefix.lib())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("accept returned {}", -libc::ENOTSOCK)
    );
}

/// Starts opensock.c on `spec` (FCGX_OpenSocket) and waits for its "listening" line.
fn spawn_opensock(prefix: &Prefix, exe: &Path, spec: &str, env: &[(&str, &str)]) -> App {
    use std::io::BufRead;
    let mut child = Command::new(exe)
        .arg(spec)
        .env("LD_LIBRARY_PATH", prefix.lib())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "listening\n", "opensock {spec} did not start");
    App(Some(child))
}

/// FCGX_OpenSocket + FCGX_InitRequest(&req, sock, 0): a Unix socket, IPv4 and IPv6 TCP
/// (the `[::1]:port` extension), and FCGI_WEB_SERVER_ADDRS applied to accepted peers.
#[test]
fn open_socket_listeners_serve_requests_and_honour_web_server_addrs() {
    use fcgi::protocol::Role;
    use std::io::{Read, Write};
    let test = "open_socket_listeners_serve_requests_and_honour_web_server_addrs";
    if !have(test) {
        return;
    }
    let prefix = Prefix::new();
    let exe = prefix.compile("opensock.c");

    let path = prefix.dir.path().join("app.sock");
    let spec = path.to_str().unwrap();
    let app = spawn_opensock(&prefix, &exe, spec, &[]);
    let out = cgi_fcgi(spec, b"", &[("X", "unix")]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Content-type: text/plain\r\n\r\nvia {spec} X=unix\n")
    );
    drop(app);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = format!("127.0.0.1:{port}");
    let app = spawn_opensock(&prefix, &exe, &spec, &[]);
    let a = client::call(&spec, Role::Responder, &[("X", "v4")], b"", None);
    assert!(String::from_utf8_lossy(&a.stdout).ends_with(&format!("via {spec} X=v4\n")));
    drop(app);

    if let Ok(l) = std::net::TcpListener::bind("[::1]:0") {
        let port = l.local_addr().unwrap().port();
        drop(l);
        let spec = format!("[::1]:{port}");
        let app = spawn_opensock(&prefix, &exe, &spec, &[]);
        let a = client::call(&spec, Role::Responder, &[("X", "v6")], b"", None);
        assert!(String::from_utf8_lossy(&a.stdout).ends_with(&format!("via {spec} X=v6\n")));
        drop(app);
    } else {
        eprintln!("note: no IPv6 loopback; [::1]:port not exercised");
    }

    // Only 10.1.1.1 may connect: a connection from 127.0.0.1 is closed unanswered.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = format!("127.0.0.1:{port}");
    let app = spawn_opensock(
        &prefix,
        &exe,
        &spec,
        &[("FCGI_WEB_SERVER_ADDRS", "10.1.1.1")],
    );
    let mut conn = std::net::TcpStream::connect(&spec).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = conn.write_all(&client::request_bytes(
        1,
        Role::Responder,
        false,
        &[],
        b"",
        None,
    ));
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    assert!(
        answer.is_empty(),
        "a peer outside FCGI_WEB_SERVER_ADDRS was answered"
    );
    drop(app);
    let app = spawn_opensock(
        &prefix,
        &exe,
        &spec,
        &[("FCGI_WEB_SERVER_ADDRS", "10.1.1.1,127.0.0.1")],
    );
    let a = client::call(&spec, Role::Responder, &[("X", "allowed")], b"", None);
    assert!(String::from_utf8_lossy(&a.stdout).ends_with("X=allowed\n"));
    drop(app);
}

/// libfcgi++ in FastCGI mode: std::cin/cout/cerr redirected to fcgi_streambufs over the
/// request's streams (upstream's echo-cpp pattern), built from capi/fcgio.cpp.
#[test]
fn cpp_iostreams_over_request_streams() {
    let test = "cpp_iostreams_over_request_streams";
    if !have(test) {
        return;
    }
    if Command::new("c++")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        if peers_required() {
            panic!("{test}: c++ is missing");
        }
        eprintln!("SKIPPING {test}: c++ is missing");
        return;
    }
    let prefix = Prefix::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = prefix.dir.path().join("echo_cpp");
    let out = Command::new("c++")
        .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(format!("-I{}/include", root.display()))
        .arg(root.join("tests/c/echo_cpp.cpp"))
        .arg(root.join("capi/fcgio.cpp"))
        .arg("-L")
        .arg(prefix.lib())
        .args(["-lfcgi", "-ldl"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (app, addr) = prefix.spawn_app(&exe);
    for n in 1..=2 {
        let out = cgi_fcgi(&addr, format!("line {n}\nrest").as_bytes(), &[]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("Content-type: text/plain\r\n\r\ncpp {n} got line {n}\n")
        );
        assert_eq!(String::from_utf8_lossy(&out.stderr), format!("cerr {n}"));
    }
    drop(app);
}
