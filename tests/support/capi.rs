//! Helpers of the C ABI tests: the built `libfcgi.so`, a library directory the loader takes
//! it from (never the classic one installed beside it), and checks for C tools.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{peers_required, shout};

/// Skips (loudly) or, when peers are required, fails: `what` is missing for `test`.
fn missing(test: &str, what: &str) -> bool {
    if peers_required() {
        panic!("{test}: {what} is missing (CI=true or FCGI_REQUIRE_PEERS=1)");
    }
    shout(&format!(
        "*** SKIP {test}: {what} is missing; this test did NOT run ***"
    ));
    false
}

/// Whether each tool answers `--version`.
pub fn have_tools(tools: &[&str], test: &str) -> bool {
    for tool in tools {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            return missing(test, &format!("tool `{tool}`"));
        }
    }
    true
}

/// Whether each path exists.
pub fn have_paths(paths: &[&str], test: &str) -> bool {
    for p in paths {
        if !Path::new(p).exists() {
            return missing(test, p);
        }
    }
    true
}

/// The `libfcgi.so` cargo built for this test run (in `deps/` on a clean tree).
pub fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    [deps.join("libfcgi.so"), deps.join("../libfcgi.so")]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("libfcgi.so not found next to {}", exe.display()))
}

/// `dir/lib` holding our library as `libfcgi.so.0` (and the `libfcgi.so` link): put it on
/// `LD_LIBRARY_PATH` and the loader takes ours, not the classic one.
pub fn our_lib(dir: &Path) -> PathBuf {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::copy(built_library(), lib.join("libfcgi.so.0")).unwrap();
    let link = lib.join("libfcgi.so");
    if !link.exists() {
        std::os::unix::fs::symlink("libfcgi.so.0", link).unwrap();
    }
    lib
}

/// Waits up to 10 s for something to listen on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP/1.0 GET on 127.0.0.1:`port`, the whole answer as text (10 s limit).
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response within 10 s");
    out
}

/// A child in its own process group, killed with its group when dropped.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of our own child.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Compiles `tests/c/<source>` against our headers into `dir/<name>`, linked with the
/// library in `lib` (from [`our_lib`]).
pub fn compile_c(dir: &Path, source: &str, name: &str, lib: &Path) -> PathBuf {
    let exe = dir.join(name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("cc")
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(format!("-I{}", root.join("include").display()))
        .arg(root.join("tests/c").join(source))
        .arg("-L")
        .arg(lib)
        .args(["-lfcgi", "-ldl"])
        .output()
        .expect("cc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Starts `exe` on our library, as spawn-fcgi would: a listening socket on fd 0, in its own
/// process group. Returns the port and the running child.
pub fn spawn_on_fd0(exe: &Path, lib: &Path) -> (u16, Running) {
    use std::os::unix::process::CommandExt;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd: std::os::fd::OwnedFd = listener.into();
    let child = Command::new(exe)
        .env("LD_LIBRARY_PATH", lib)
        .stdin(Stdio::from(fd))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    (port, Running(child))
}
