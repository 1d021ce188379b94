//! C programs on our `libfcgi.so.0` in FastCGI mode: `FCGX_Accept_r` (fcgiapp) and
//! `FCGI_Accept` (fcgi_stdio) on a listening socket passed as fd 0, driven by Debian's
//! `cgi-fcgi` running on the classic library (an independent implementation of the other
//! side), and SIGTERM ending the accept loop.
//!
//! Each test copies our library into a temporary `lib/libfcgi.so.0` (the classic one is
//! installed and would win otherwise) and the programs exit 3 if they find no
//! `fcgi_rs_version`. Missing tools: the test says it skips, or fails when `CI=true` or
//! `FCGI_REQUIRE_PEERS=1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn peers_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("FCGI_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

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
        let exe = self.dir.path().join(src.trim_end_matches(".c"));
        let out = Command::new("cc")
            .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&exe)
            .arg(format!("-I{}/include", env!("CARGO_MANIFEST_DIR")))
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
    let exe = prefix.compile("echo.c");
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

#[test]
fn fcgi_stdio_program_runs_as_fastcgi_with_request_environ() {
    let test = "fcgi_stdio_program_runs_as_fastcgi_with_request_environ";
    if !have(test) {
        return;
    }
    let prefix = Prefix::new();
    let exe = prefix.compile("cgi_stdio.c");
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
