//! The Authorizer role through a real web server: lighttpd's `mod_fastcgi` in
//! `"mode" => "authorizer"` asks a C program on our `libfcgi.so.0` (`FCGX_Accept_r`)
//! before serving a static file.
//!
//! lighttpd missing: the test says it skips, or fails when `CI=true` or
//! `FCGI_REQUIRE_PEERS=1`.

mod support;

use support::capi::{http_get, our_lib};
use support::peers_required;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn lighttpd_authorizer_mode_asks_our_library() {
    let test = "lighttpd_authorizer_mode_asks_our_library";
    if !Path::new("/usr/sbin/lighttpd").exists() {
        if peers_required() {
            panic!("{test}: lighttpd is missing");
        }
        eprintln!("SKIPPING {test}: lighttpd is missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lib = our_lib(dir.path());
    let exe = dir.path().join("authz");
    let out = Command::new("cc")
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(format!("-I{}/include", env!("CARGO_MANIFEST_DIR")))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/authz.c"))
        .arg("-L")
        .arg(&lib)
        .args(["-lfcgi", "-ldl"])
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app_port = listener.local_addr().unwrap().port();
    let fd: std::os::fd::OwnedFd = listener.into();
    let _app = Running(
        Command::new(&exe)
            .env("LD_LIBRARY_PATH", &lib)
            .stdin(Stdio::from(fd))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );

    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("secret.txt"), "the secret\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("lighttpd.conf");
    std::fs::write(
        &conf,
        format!(
            "server.document-root = \"{www}\"\nserver.bind = \"127.0.0.1\"\nserver.port = {port}\n\
             server.errorlog = \"{d}/error.log\"\nserver.modules = (\"mod_fastcgi\")\n\
             fastcgi.server = ( \"/\" => (( \"host\" => \"127.0.0.1\", \"port\" => {app_port},\n\
                 \"mode\" => \"authorizer\", \"docroot\" => \"{www}\" )))\n",
            www = www.display(),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut lighttpd = Running(
        Command::new("/usr/sbin/lighttpd")
            .arg("-D")
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = lighttpd.0.try_wait() {
            let mut err = String::new();
            let _ = lighttpd.0.stderr.take().unwrap().read_to_string(&mut err);
            panic!("lighttpd exited {status}: {err}");
        }
        assert!(Instant::now() < deadline, "lighttpd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let allowed = http_get(port, "/secret.txt");
    assert!(allowed.starts_with("HTTP/1.0 200"), "{allowed}");
    assert!(allowed.ends_with("the secret\n"), "{allowed}");
    let denied = http_get(port, "/secret.txt?deny=1");
    assert!(denied.starts_with("HTTP/1.0 403"), "{denied}");
    assert!(!denied.contains("the secret"), "{denied}");
}
