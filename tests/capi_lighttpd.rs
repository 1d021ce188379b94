//! The Authorizer role through a real web server: lighttpd's `mod_fastcgi` in
//! `"mode" => "authorizer"` asks a C program on our `libfcgi.so.0` (`FCGX_Accept_r`)
//! before serving a static file.
//!
//! lighttpd missing: the test says it skips, or fails when `CI=true` or
//! `FCGI_REQUIRE_PEERS=1`.

mod support;

use support::capi::{compile_c, have_paths, http_get, our_lib, spawn_on_fd0, Running};

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn lighttpd_authorizer_mode_asks_our_library() {
    let test = "lighttpd_authorizer_mode_asks_our_library";
    if !have_paths(&["/usr/sbin/lighttpd"], test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lib = our_lib(dir.path());
    let exe = compile_c(dir.path(), "authz.c", "authz", &lib);

    let (app_port, _app) = spawn_on_fd0(&exe, &lib);

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
