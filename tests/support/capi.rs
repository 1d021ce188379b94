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

/// Runs the `cc` command `cc`; fails the test with the compiler's message, naming `what`,
/// unless it succeeds.
pub fn run_cc(cc: &mut Command, what: &str) {
    let out = cc.output().expect("cc");
    assert!(
        out.status.success(),
        "cc {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles `tests/c/<source>` against our headers into `dir/<name>`, linked with the
/// library in `lib` (from [`our_lib`]).
pub fn compile_c(dir: &Path, source: &str, name: &str, lib: &Path) -> PathBuf {
    let exe = dir.join(name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    run_cc(
        Command::new("cc")
            .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&exe)
            .arg(format!("-I{}", root.join("include").display()))
            .arg(root.join("tests/c").join(source))
            .arg("-L")
            .arg(lib)
            .args(["-lfcgi", "-ldl"]),
        source,
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

// ---- C programs built against either header set, run on either library ----

/// The header set a C program is compiled against.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Headers {
    /// `include/` of this crate.
    Ours,
    /// The classic ones in /usr/include (libfcgi-dev).
    Classic,
}

/// The `libfcgi.so.0` a C program runs on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// Ours, from the build's `lib/` (`LD_LIBRARY_PATH`).
    Ours,
    /// The classic one installed on the machine (`LD_LIBRARY_PATH` removed).
    Classic,
}

impl Runtime {
    /// What `tests/c/corners.h` reports for this library.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Ours => "ours",
            Runtime::Classic => "classic",
        }
    }
}

/// Both header sets; fails (or skips loudly) when cc or the classic headers are missing.
pub fn both_headers(test: &str) -> Option<[Headers; 2]> {
    (have_tools(&["cc"], test)
        && have_paths(
            &[
                "/usr/include/fcgiapp.h",
                "/usr/lib/x86_64-linux-gnu/libfcgi.so.0",
            ],
            test,
        ))
    .then_some([Headers::Ours, Headers::Classic])
}

/// A temporary directory with our library in `lib/` and the programs compiled into it.
pub struct CBuild {
    pub dir: tempfile::TempDir,
    pub lib: PathBuf,
}

impl CBuild {
    /// A fresh directory with our library as `lib/libfcgi.so.0`.
    pub fn new() -> CBuild {
        let dir = super::temp_dir();
        let lib = our_lib(dir.path());
        CBuild { dir, lib }
    }

    /// Compiles `tests/c/<src>` against `headers`, linked with `-lfcgi` (the library the
    /// program runs on is chosen when it starts).
    pub fn compile(&self, src: &str, headers: Headers) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let name = format!(
            "{}-{}",
            src.trim_end_matches(".c"),
            match headers {
                Headers::Ours => "ours-h",
                Headers::Classic => "classic-h",
            }
        );
        let exe = self.dir.path().join(name);
        let mut cc = Command::new("cc");
        cc.args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&exe)
            .arg(format!("-I{}", root.join("tests/c").display()));
        if headers == Headers::Ours {
            cc.arg(format!("-I{}", root.join("include").display()));
        }
        cc.arg(root.join("tests/c").join(src))
            .arg("-L")
            .arg(&self.lib)
            .args(["-lfcgi", "-ldl"]);
        run_cc(&mut cc, &format!("{src} ({headers:?} headers)"));
        exe
    }

    /// Compiles `tests/c/<src>` into a shared library (for `LD_PRELOAD`), linked with
    /// `-ldl`.
    pub fn compile_shared(&self, src: &str) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let so = self
            .dir
            .path()
            .join(src.trim_end_matches(".c").to_owned() + ".so");
        run_cc(
            Command::new("cc")
                .args(["-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o"])
                .arg(&so)
                .arg(root.join("tests/c").join(src))
                .arg("-ldl"),
            src,
        );
        so
    }

    /// The command that runs `exe` on `runtime`.
    pub fn command(&self, exe: &Path, runtime: Runtime) -> Command {
        let mut c = Command::new(exe);
        match runtime {
            Runtime::Ours => c.env("LD_LIBRARY_PATH", &self.lib),
            Runtime::Classic => c.env_remove("LD_LIBRARY_PATH"),
        };
        c
    }
}

/// A C program of `tests/c` running with a listening socket on fd 0, in its own process
/// group (killed with it when dropped); its real stderr arrives line by line.
pub struct CProc {
    pub child: Option<std::process::Child>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl CProc {
    /// Starts `cmd` with `fd0` as its standard input and checks (its first stderr line,
    /// from `tests/c/corners.h`) that it runs on `runtime`.
    pub fn spawn(mut cmd: Command, fd0: std::os::fd::OwnedFd, runtime: Runtime) -> CProc {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut child = cmd
            .stdin(Stdio::from(fd0))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn C program");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let p = CProc {
            child: Some(child),
            lines: rx,
        };
        let first = p.line();
        assert_eq!(
            first,
            format!("lib={}", runtime.name()),
            "the program did not run on the {} library",
            runtime.name()
        );
        p
    }

    /// The next line of the program's stderr (10 s limit).
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line from the C program within 10 s")
    }

    /// The next line, or None when none comes within `limit`.
    pub fn line_within(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `sig` to the program and waits (10 s) for it to exit; its exit status.
    pub fn stop(mut self, sig: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                // SAFETY: its process group (children it forked), ours to end.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                return st;
            }
            if Instant::now() > deadline {
                // SAFETY: our own child's process group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                panic!("the C program did not exit after signal {sig}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for CProc {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // SAFETY: killing our own child's process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

// ---- a raw FastCGI client, record by record ----

/// A transport connection to an application.
pub enum Stream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What an application answered to one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reply {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub app_status: u32,
    pub protocol_status: u8,
}

impl Reply {
    /// The stdout body after the CGI headers, as text.
    pub fn body(&self) -> String {
        let text = String::from_utf8_lossy(&self.stdout);
        match text.split_once("\r\n\r\n") {
            Some((_, body)) => body.to_string(),
            None => text.into_owned(),
        }
    }
}

/// How a read for the next records ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// A whole record: its type, request id and content.
    Record(fcgi::protocol::RecordType, u16, Vec<u8>),
    /// The application closed (or reset) the connection.
    Closed,
    /// Nothing within the time limit; the connection is open.
    Nothing,
}

/// A FastCGI connection driven by hand: the bytes of each record are written as given, and
/// records are read one at a time with a deadline.
pub struct FcgiConn {
    pub s: Stream,
    buf: Vec<u8>,
}

/// BEGIN_REQUEST, the params (and their end), and, when `stdin` is given, the stdin
/// records and their end.
pub fn request_records(
    id: u16,
    keep: bool,
    params: &[(&[u8], &[u8])],
    stdin: Option<&[u8]>,
) -> Vec<u8> {
    use fcgi::protocol::*;
    let mut out = Vec::new();
    encode_header_into(&mut out, RecordType::BeginRequest, id, 8);
    out.extend_from_slice(
        &BeginRequestBody {
            role: Role::Responder,
            flags: u8::from(keep),
        }
        .encode(),
    );
    encode_params(&mut out, id, params.iter().copied());
    if let Some(body) = stdin {
        for chunk in body.chunks(MAX_CONTENT_LEN) {
            encode_record(&mut out, RecordType::Stdin, id, chunk);
        }
        encode_stream_end(&mut out, RecordType::Stdin, id);
    }
    out
}

impl FcgiConn {
    /// Connects over TCP to 127.0.0.1:`port`.
    pub fn tcp(port: u16) -> FcgiConn {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        FcgiConn {
            s: Stream::Tcp(s),
            buf: Vec::new(),
        }
    }

    /// Connects over TCP to `addr`.
    pub fn tcp_to(addr: std::net::SocketAddr) -> FcgiConn {
        let s = std::net::TcpStream::connect(addr).expect("connect");
        FcgiConn {
            s: Stream::Tcp(s),
            buf: Vec::new(),
        }
    }

    /// Connects to the Unix socket at `path`.
    pub fn unix(path: &Path) -> FcgiConn {
        let s = std::os::unix::net::UnixStream::connect(path).expect("connect");
        FcgiConn {
            s: Stream::Unix(s),
            buf: Vec::new(),
        }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write to the application");
    }

    /// Sends a whole responder request (id, keep-conn, params, stdin).
    pub fn send_request(&mut self, id: u16, keep: bool, params: &[(&str, &str)], stdin: &[u8]) {
        let params: Vec<(&[u8], &[u8])> = params
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        let bytes = request_records(id, keep, &params, Some(stdin));
        self.send(&bytes);
    }

    /// The next record, or how the wait ended, within `limit`.
    pub fn next(&mut self, limit: Duration) -> Got {
        use fcgi::protocol::{decode_record, Status};
        let deadline = Instant::now() + limit;
        loop {
            if let Status::Complete((rec, used)) =
                decode_record(&self.buf).expect("a well-formed record from the application")
            {
                let got = Got::Record(
                    rec.header.record_type,
                    rec.header.request_id,
                    rec.content.to_vec(),
                );
                self.buf.drain(..used);
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Nothing;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Got::Nothing
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Got::Closed,
            }
        }
    }

    /// Reads the records of request `id` up to its END_REQUEST, within `limit`.
    pub fn reply(&mut self, id: u16, limit: Duration) -> Result<Reply, String> {
        use fcgi::protocol::RecordType;
        let deadline = Instant::now() + limit;
        let mut r = Reply::default();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Got::Record(RecordType::Stdout, i, c) if i == id => r.stdout.extend(c),
                Got::Record(RecordType::Stderr, i, c) if i == id => r.stderr.extend(c),
                Got::Record(RecordType::EndRequest, i, c) if i == id => {
                    r.app_status = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                    r.protocol_status = c[4];
                    return Ok(r);
                }
                Got::Record(t, i, c) => {
                    return Err(format!("unexpected record {t:?} id {i}: {c:?}"));
                }
                Got::Closed => {
                    return Err(format!(
                        "connection closed before END_REQUEST (stdout so far {:?})",
                        String::from_utf8_lossy(&r.stdout)
                    ))
                }
                Got::Nothing => return Err("no END_REQUEST within the limit".into()),
            }
        }
    }

    /// Waits up to `limit` for the application to close the connection; Err with what
    /// came instead.
    pub fn closed_within(&mut self, limit: Duration) -> Result<(), String> {
        match self.next(limit) {
            Got::Closed => Ok(()),
            other => Err(format!("expected the connection to close, got {other:?}")),
        }
    }
}
