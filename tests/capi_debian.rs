//! Real Debian programs linked against `libfcgi.so.0`, run unchanged on ours through
//! `LD_LIBRARY_PATH`: `fcgiwrap` (fcgi_stdio, serving a shell CGI script) and the Perl
//! `FCGI` module (libfcgi-perl, fcgiapp) under `spawn-fcgi`. Requests come from Debian's
//! `cgi-fcgi` on the classic library. Each test proves which library the program mapped
//! by reading its `/proc/PID/maps`.
//!
//! Missing programs: the test says it skips, or fails when `CI=true` or
//! `FCGI_REQUIRE_PEERS=1`.

mod support;

use support::capi::{have_paths, our_lib, wait_for_port, Running};
use support::{free_port, peers_required};

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A child in its own process group, killed with its group when dropped.
impl Running {
    /// Asserts the process mapped the library in `lib` (and not the classic one).
    fn assert_maps(&self, lib: &Path) {
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.0.id())).unwrap();
        let ours = lib.join("libfcgi.so.0");
        assert!(
            maps.contains(ours.to_str().unwrap()),
            "our libfcgi.so.0 not mapped:\n{maps}"
        );
        assert!(
            !maps.contains("/x86_64-linux-gnu/libfcgi.so"),
            "the classic library is mapped"
        );
    }
}

/// One request through the classic cgi-fcgi.
fn cgi_fcgi(addr: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new("/usr/bin/cgi-fcgi")
        .args(["-bind", "-connect", addr])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn fcgiwrap_serves_a_shell_cgi_script_on_our_library() {
    let test = "fcgiwrap_serves_a_shell_cgi_script_on_our_library";
    if !have_paths(&["/usr/sbin/fcgiwrap", "/usr/bin/cgi-fcgi"], test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lib = our_lib(dir.path());
    let script = dir.path().join("hello.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello from sh, q=%s m=%s\\n' \"$QUERY_STRING\" \"$REQUEST_METHOD\"\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fd: std::os::fd::OwnedFd = listener.into();
    let app = Running(
        std::os::unix::process::CommandExt::process_group(
            Command::new("/usr/sbin/fcgiwrap")
                .env("LD_LIBRARY_PATH", &lib)
                .stdin(Stdio::from(fd)),
            0,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    for round in 0..2 {
        let q = format!("round={round}");
        let out = cgi_fcgi(
            &addr,
            &[
                ("GATEWAY_INTERFACE", "CGI/1.1"),
                ("REQUEST_METHOD", "GET"),
                ("SCRIPT_FILENAME", script.to_str().unwrap()),
                ("SCRIPT_NAME", "/hello.sh"),
                ("DOCUMENT_ROOT", dir.path().to_str().unwrap()),
                ("QUERY_STRING", &q),
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.ends_with(&format!("\r\n\r\nhello from sh, q={q} m=GET\n")),
            "fcgiwrap answered: {stdout:?} / {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0));
    }
    app.assert_maps(&lib);
}

#[test]
fn perl_fcgi_module_under_spawn_fcgi_on_our_library() {
    let test = "perl_fcgi_module_under_spawn_fcgi_on_our_library";
    if !have_paths(
        &["/usr/bin/perl", "/usr/bin/spawn-fcgi", "/usr/bin/cgi-fcgi"],
        test,
    ) {
        return;
    }
    let perl_ok = Command::new("perl")
        .args(["-MFCGI", "-e", "1"])
        .status()
        .is_ok_and(|s| s.success());
    if !perl_ok {
        if peers_required() {
            panic!("{test}: the Perl FCGI module (libfcgi-perl) is missing");
        }
        eprintln!("SKIPPING {test}: the Perl FCGI module (libfcgi-perl) is missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lib = our_lib(dir.path());
    let script = dir.path().join("hello.pl");
    std::fs::write(
        &script,
        r#"use strict; use FCGI;
my $req = FCGI::Request();
my $n = 0;
while ($req->Accept() >= 0) {
    $n++;
    my $body = '';
    read(STDIN, $body, $ENV{CONTENT_LENGTH} || 0);
    print "Content-Type: text/plain\r\n\r\nperl $n q=$ENV{QUERY_STRING} body=$body\n";
    print STDERR "perl stderr $n";
}
"#,
    )
    .unwrap();
    let port = free_port();
    let app = Running(
        std::os::unix::process::CommandExt::process_group(
            Command::new("/usr/bin/spawn-fcgi")
                .args([
                    "-n",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "--",
                    "/usr/bin/perl",
                ])
                .arg(&script)
                .env("LD_LIBRARY_PATH", &lib),
            0,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    wait_for_port(port);
    let addr = format!("127.0.0.1:{port}");
    for n in 1..=2 {
        let mut child = Command::new("/usr/bin/cgi-fcgi")
            .args(["-bind", "-connect", &addr])
            .env_clear()
            .env("REQUEST_METHOD", "POST")
            .env("QUERY_STRING", format!("n={n}"))
            .env("CONTENT_LENGTH", "4")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"ping").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("Content-Type: text/plain\r\n\r\nperl {n} q=n={n} body=ping\n")
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("perl stderr {n}")
        );
    }
    app.assert_maps(&lib);
}
