//! CGI mode behaves as FastCGI mode: the handler runs through the same wrapper (a panic
//! or an error gives a 500, the message on stderr, app status 1), and the library never
//! exits the process: `serve_cgi_status` returns the status to the caller.
//!
//! The CGI process is this test binary run again (with a pipe on fd 0, which makes
//! `Server::from_env` choose CGI), selecting the `child` test through an environment
//! variable.

use std::io::Write;
use std::process::{Command, Stdio};

const CHILD: &str = "FCGI_TEST_CGI_CHILD";

/// In the child process: serve once as CGI with a handler that fails as `how` says, then
/// report from after `serve_cgi_status` that the process is still here.
#[test]
fn child() {
    let Ok(how) = std::env::var(CHILD) else {
        return;
    };
    let server = fcgi::Server::from_env().unwrap();
    assert!(server.is_cgi(), "a pipe on fd 0 means CGI");
    let status = server
        .serve_cgi_status(move |req| {
            // Something written to the (buffered) stdout before the failure.
            req.stdout().write_all(b"Status: 200 OK\r\n\r\npartial")?;
            match how.as_str() {
                "panic" => panic!("handler gave up"),
                _ => Err(std::io::Error::other("handler failed")),
            }
        })
        .unwrap();
    // Reached: the library returned instead of exiting.
    eprintln!("after serve: status {status}");
}

fn run_child(how: &str) -> (String, String, bool) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, how)
        .env("REQUEST_METHOD", "GET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn panic_in_cgi_mode_gives_500_and_returns() {
    let (stdout, stderr, ok) = run_child("panic");
    assert!(
        stdout.contains("Status: 500 Internal Server Error\r\n"),
        "stdout: {stdout}"
    );
    assert!(
        !stdout.contains("partial"),
        "the unsent partial response is replaced by the 500: {stdout}"
    );
    assert!(
        stderr.contains("handler panicked: handler gave up"),
        "{stderr}"
    );
    assert!(stderr.contains("after serve: status 1"), "{stderr}");
    assert!(ok, "the process ends normally: {stderr}");
}

#[test]
fn error_in_cgi_mode_gives_500_and_returns() {
    let (stdout, stderr, ok) = run_child("error");
    assert!(
        stdout.contains("Status: 500 Internal Server Error\r\n"),
        "stdout: {stdout}"
    );
    assert!(stderr.contains("handler error: handler failed"), "{stderr}");
    assert!(stderr.contains("after serve: status 1"), "{stderr}");
    assert!(ok, "{stderr}");
}
