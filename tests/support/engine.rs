//! Helpers of the connection-engine tests (`tests/engine_*.rs`, issue 7): programs sharing
//! one listening socket, the kernel's view of a listener (its accept queue, which process
//! holds which connection), raw FastCGI requests with deadlines, and /proc readings.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fcgi::protocol::{
    decode_record, encode_header_into, encode_params, encode_record, encode_stream_end,
    BeginRequestBody, RecordType, Role, Status,
};

use super::capi::Running;
use super::read_lossy;

/// The params every request of these tests carries, plus `extra`.
fn params<'a>(extra: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", "/engine"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
    ];
    p.extend_from_slice(extra);
    p
}

/// BEGIN_REQUEST (id 1, responder) and the params with their end: a request whose stdin is
/// still to come, so a program that reads its stdin to the end waits on it.
pub fn head_bytes(keep: bool, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_header_into(&mut out, RecordType::BeginRequest, 1, 8);
    out.extend_from_slice(
        &BeginRequestBody {
            role: Role::Responder,
            flags: u8::from(keep),
        }
        .encode(),
    );
    let p = params(extra);
    encode_params(
        &mut out,
        1,
        p.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    );
    out
}

/// The end of stdin (an empty FCGI_STDIN record) of request 1.
pub fn stdin_end_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    encode_stream_end(&mut out, RecordType::Stdin, 1);
    out
}

/// A whole request: [`head_bytes`], then an empty stdin.
pub fn request_bytes(keep: bool, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = head_bytes(keep, extra);
    encode_record(&mut out, RecordType::Stdin, 1, b"");
    out.extend(stdin_end_bytes());
    out
}

/// Reads records until END_REQUEST or `deadline`; answers the stdout bytes, or what went
/// wrong. A refusal (FCGI_OVERLOADED or another protocol status) is an error.
pub fn read_response(s: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut stdout = Vec::new();
    loop {
        while let Status::Complete((rec, used)) =
            decode_record(&buf).map_err(|e| format!("bad record: {e:?}"))?
        {
            match rec.header.record_type {
                RecordType::Stdout => stdout.extend_from_slice(rec.content),
                RecordType::EndRequest => {
                    let status = rec.content.get(4).copied();
                    return if status == Some(0) {
                        Ok(stdout)
                    } else {
                        Err(format!("END_REQUEST with protocol status {status:?}"))
                    };
                }
                _ => {}
            }
            buf.drain(..used);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no answer before the deadline".into());
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let mut chunk = [0u8; 65536];
        match s.read(&mut chunk) {
            Ok(0) => return Err("connection closed before END_REQUEST".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err("no answer before the deadline".into())
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// One whole request on a new connection to 127.0.0.1:`port`, answered within `limit`:
/// the stdout bytes, or what went wrong.
pub fn request(port: u16, extra: &[(&str, &str)], limit: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + limit;
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.write_all(&request_bytes(false, extra))
        .map_err(|e| e.to_string())?;
    read_response(&mut s, deadline)
}

/// The `pid=N` line `tests/c/engine_app.c` and `examples/sleep` answer.
pub fn pid_of(stdout: &[u8]) -> u32 {
    let text = String::from_utf8_lossy(stdout);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    body.lines()
        .next()
        .and_then(|l| l.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid=N in the answer {text:?}"))
}

/// A listening socket on 127.0.0.1, port 0, with a backlog that holds every test's queue.
pub fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Starts `count` processes of `make()` sharing `listener` on fd 0 (as spawn-fcgi -F does),
/// each in its own process group.
pub fn spawn_sharing(
    listener: &TcpListener,
    count: usize,
    make: impl Fn() -> Command,
) -> Vec<Running> {
    (0..count)
        .map(|_| {
            let fd: OwnedFd = listener.try_clone().unwrap().into();
            let child = make()
                .stdin(Stdio::from(fd))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap();
            Running(child)
        })
        .collect()
}

fn tcp_table() -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in read_lossy(Path::new(table)).lines().skip(1) {
            rows.push(line.split_whitespace().map(str::to_string).collect());
        }
    }
    rows
}

fn local_port(row: &[String]) -> Option<u16> {
    row.get(1)?
        .rsplit_once(':')
        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
}

/// Connections waiting in the accept queue of the listener on `port` (the kernel's
/// `rx_queue` of a LISTEN socket).
pub fn accept_queue(port: u16) -> usize {
    tcp_table()
        .iter()
        .find(|r| local_port(r) == Some(port) && r.get(3).map(String::as_str) == Some("0A"))
        .and_then(|r| r.get(4)?.split_once(':').map(|(_, rx)| rx.to_string()))
        .and_then(|rx| usize::from_str_radix(&rx, 16).ok())
        .unwrap_or_else(|| panic!("no listener on port {port} in /proc/net/tcp"))
}

/// Server-side connections of `port` that process `pid` accepted (ESTABLISHED sockets of
/// local port `port` among its descriptors; a connection still in the accept queue has no
/// descriptor yet).
pub fn connections_held(pid: u32, port: u16) -> usize {
    let inodes: HashSet<String> = tcp_table()
        .into_iter()
        .filter(|r| local_port(r) == Some(port) && r.get(3).map(String::as_str) == Some("01"))
        .filter_map(|r| r.get(9).cloned())
        .filter(|i| i != "0")
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .filter(|i| inodes.contains(i))
        .count()
}

/// Bytes the server side of `port`'s connections has not got rid of (their `tx_queue`),
/// one figure per connection that has any.
pub fn unsent_per_connection(port: u16) -> Vec<usize> {
    tcp_table()
        .iter()
        .filter(|r| local_port(r) == Some(port) && r.get(3).map(String::as_str) == Some("01"))
        .filter_map(|r| r.get(4)?.split_once(':').map(|(tx, _)| tx.to_string()))
        .filter_map(|tx| usize::from_str_radix(&tx, 16).ok())
        .filter(|&n| n > 0)
        .collect()
}

/// A field of /proc/PID/status as a number (kB for VmRSS).
pub fn status_field(pid: u32, field: &str) -> u64 {
    let text = read_lossy(Path::new(&format!("/proc/{pid}/status")));
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Open descriptors of `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// user + system CPU time of `pid` so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = read_lossy(Path::new(&format!("/proc/{pid}/stat")));
    let after = stat.rsplit_once(") ").map(|(_, a)| a).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The process state letter of /proc/PID/stat (`T` when stopped).
pub fn state(pid: u32) -> char {
    let stat = read_lossy(Path::new(&format!("/proc/{pid}/stat")));
    stat.rsplit_once(") ")
        .and_then(|(_, a)| a.chars().next())
        .unwrap_or('?')
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child of this test.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

/// Raises this process's descriptor limit to its hard limit (children inherit it); answers
/// the new soft limit.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur
    }
}

/// Where Debian's classic libfcgi.so.0 lives.
pub const CLASSIC: &str = "/usr/lib/x86_64-linux-gnu/libfcgi.so.0";

/// Which libfcgi a process must have mapped.
#[derive(Clone, Copy, Debug)]
pub enum Lib<'a> {
    /// Ours, from this library directory (see `our_lib`).
    Ours(&'a Path),
    /// Debian's classic library.
    Classic,
    /// None: a Rust server.
    Rust,
}

impl Lib<'_> {
    /// The command for `tests/c/engine_app.c` (built by `compile_c`) on this library.
    pub fn engine_app(self, exe: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(exe);
        c.args(args);
        match self {
            Lib::Ours(lib) => c.env("LD_LIBRARY_PATH", lib),
            _ => c.env_remove("LD_LIBRARY_PATH"),
        };
        c
    }

    /// Waits up to 10 s for `pid` to map this library, and panics if it mapped the other.
    pub fn assert_loaded(self, pid: u32) {
        let want = match self {
            Lib::Ours(lib) => lib.join("libfcgi.so.0").display().to_string(),
            Lib::Classic => "/x86_64-linux-gnu/libfcgi.so.0".to_string(),
            Lib::Rust => return,
        };
        let maps = || read_lossy(Path::new(&format!("/proc/{pid}/maps")));
        assert!(
            super::wait_until(Duration::from_secs(10), || maps().contains(&want)),
            "process {pid} did not map {want}:\n{}",
            maps()
                .lines()
                .filter(|l| l.contains("libfcgi"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// `tests/c/engine_app.c` built against our library, one process of it serving a fresh
/// loopback listener on fd 0 (with `args`), our libfcgi.so.0 proven loaded. Stopped (its
/// process group killed) and its build removed when dropped.
pub struct OursApp {
    pub port: u16,
    pub pid: u32,
    _proc: Running,
    _dir: tempfile::TempDir,
}

impl OursApp {
    pub fn start(args: &[&str]) -> OursApp {
        let dir = super::temp_dir();
        let ours = super::capi::our_lib(dir.path());
        let exe = super::capi::compile_c(dir.path(), "engine_app.c", "engine_app", &ours);
        let lib = Lib::Ours(&ours);
        let (listener, port) = listener();
        let mut procs = spawn_sharing(&listener, 1, || lib.engine_app(&exe, args));
        drop(listener);
        let proc = procs.remove(0);
        let pid = proc.0.id();
        lib.assert_loaded(pid);
        OursApp {
            port,
            pid,
            _proc: proc,
            _dir: dir,
        }
    }
}
