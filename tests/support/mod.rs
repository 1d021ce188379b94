//! Shared harness for the integration tests: free ports, temp dirs, child processes in their
//! own process group, and the real peers (nginx, HAProxy, cgi-fcgi) next to the crate's
//! examples. Each test file pulls it in with `mod support;` and uses only part of it.
#![allow(dead_code)]

pub mod capi;
pub mod engine;
pub mod http;
pub mod peers;
pub mod pm;

use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use std::{env, fmt, fs, thread};

/// How long a freshly started process gets to open its socket.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Read/write timeout for one exchange with a peer in a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a FastCGI application (or a peer) listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// A TCP address on loopback.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl Addr {
    /// A free TCP port on 127.0.0.1.
    pub fn free_tcp() -> Addr {
        Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], free_port())))
    }

    /// A free TCP port on `[::1]`, or `None` (after a loud SKIP line) when this machine has
    /// no IPv6 loopback.
    pub fn free_tcp6() -> Option<Addr> {
        match TcpListener::bind("[::1]:0") {
            Ok(l) => Some(Addr::Tcp(l.local_addr().expect("local_addr"))),
            Err(e) => {
                shout(&format!(
                    "\n*** SKIP: no IPv6 loopback ([::1]: {e}); test did NOT run ***\n"
                ));
                None
            }
        }
    }

    /// `dir/name` as a Unix socket address.
    pub fn unix_in(dir: &Path, name: &str) -> Addr {
        Addr::Unix(dir.join(name))
    }

    /// The TCP address; panics for a Unix socket.
    pub fn tcp(&self) -> SocketAddr {
        match self {
            Addr::Tcp(a) => *a,
            Addr::Unix(p) => panic!("{} is not a TCP address", p.display()),
        }
    }

    /// Whether a connection to this address is accepted right now.
    pub fn accepts(&self) -> bool {
        match self {
            Addr::Tcp(a) => TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok(),
            Addr::Unix(p) => UnixStream::connect(p).is_ok(),
        }
    }
}

/// The form the examples take as their argument: `127.0.0.1:9000`, `[::1]:9000` or a path.
impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "{a}"),
            Addr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A fresh temporary directory, removed when the guard drops. World-traversable, so that
/// peers' worker processes running as another user can reach sockets and files in it.
pub fn temp_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("fcgi-test-")
        .tempdir()
        .expect("create temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    dir
}

/// Whether a missing peer must fail the test instead of skipping it.
pub fn peers_required() -> bool {
    env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || env::var("FCGI_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Writes straight to the process's stderr, past the test harness's output capture, so a
/// skip is visible in a plain `cargo test` run.
pub fn shout(msg: &str) {
    let _ = writeln!(io::stderr(), "{msg}");
}

/// Finds the peer program `name` in `PATH` or the sbin directories.
///
/// Missing: panics when peers are required (`CI=true` or `FCGI_REQUIRE_PEERS=1`), otherwise
/// prints a loud SKIP line and answers `None`; the caller then returns early.
pub fn require_peer(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    let dirs = env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Some(candidate);
        }
    }
    if peers_required() {
        panic!("peer `{name}` is required (CI=true or FCGI_REQUIRE_PEERS=1) but is not installed");
    }
    shout(&format!(
        "\n*** SKIP: `{name}` is not installed; this test did NOT run (install it, or set \
         FCGI_REQUIRE_PEERS=1 to make this a failure) ***\n"
    ));
    None
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A child process leading its own session and process group (`setsid()` between fork and
/// exec, as the `setsid` tool does), with
/// stdout and stderr in a log file. Dropping it stops the whole group: SIGTERM, then SIGKILL
/// after a grace period.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    extra_logs: Vec<PathBuf>,
    stopped: bool,
}

impl Proc {
    /// Starts `cmd` in a new session, its output appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("open log {}: {e}", log.display()));
        let err = out.try_clone().expect("dup log fd");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: setsid and prctl are async-signal-safe and touch no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                // If the test process dies without running destructors, take the child along.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
            extra_logs: Vec::new(),
            stopped: false,
        }
    }

    /// Adds a log file the program writes itself (e.g. nginx's error log) to [`Proc::log`].
    pub fn add_log(&mut self, path: PathBuf) {
        self.extra_logs.push(path);
    }

    /// The process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote to stdout and stderr so far, then its own log files.
    pub fn log(&self) -> String {
        let mut text = read_lossy(&self.log);
        for extra in &self.extra_logs {
            text.push_str(&format!("\n--- {} ---\n", extra.display()));
            text.push_str(&read_lossy(extra));
        }
        text
    }

    /// The log file's path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the process is still running (not exited, not stopped).
    pub fn is_running(&mut self) -> bool {
        !self.stopped && matches!(self.child.try_wait(), Ok(None))
    }

    /// Panics, with the log, if the process has exited.
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            let status = self.child.try_wait().ok().flatten();
            panic!(
                "{} is not running any more (status {status:?}); its log:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// Waits until `addr` accepts connections; panics with the log on timeout or if the
    /// process exits first.
    pub fn wait_accepts(&mut self, addr: &Addr) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if addr.accepts() {
                return;
            }
            self.assert_running();
            if Instant::now() > deadline {
                panic!(
                    "{} did not accept on {addr} within {START_TIMEOUT:?}; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process group: SIGTERM, up to 3 s for the leader to exit, then SIGKILL for
    /// whatever is left of the group. Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscalls on a process group this test created.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && !self.exited_unreaped() {
            thread::sleep(Duration::from_millis(10));
        }
        // The leader is not reaped yet (at most a zombie), so the group id cannot have been
        // reused: killing it reaches only stragglers of this group.
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// Whether the leader has exited, without reaping it.
    fn exited_unreaped(&self) -> bool {
        // SAFETY: waitid with WNOWAIT only inspects; info is a plain C struct.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r == -1 || info.si_pid() != 0
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `addr` accepts connections; answers whether it did within `timeout`.
pub fn wait_accepts(addr: &Addr, timeout: Duration) -> bool {
    wait_until(timeout, || addr.accepts())
}

/// A file's contents as text, empty if it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; answers whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `n` bytes of a deterministic, non-repeating-looking pattern (a byte-level LCG), so that
/// a shifted, dropped or duplicated chunk cannot compare equal by accident.
pub fn pattern(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect()
}

/// Asserts two byte strings are equal, reporting lengths and the first difference rather
/// than dumping megabytes.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    panic!(
        "{what}: got {} bytes, want {}; first difference at {:?}; got starts {:?}",
        got.len(),
        want.len(),
        first.or(Some(got.len().min(want.len()))),
        String::from_utf8_lossy(&got[..got.len().min(200)])
    );
}

/// How many ESTABLISHED TCP connections (IPv4 and IPv6) have `port` as their remote port:
/// the client ends of connections to a local server on `port`. Lets a test see whether a
/// peer kept its connections to the application open.
pub fn connections_to(port: u16) -> usize {
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in read_lossy(Path::new(table)).lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols: sl local_address rem_address st ...; addresses are HEXIP:HEXPORT.
            let (Some(rem), Some(state)) = (cols.get(2), cols.get(3)) else {
                continue;
            };
            let rem_port = rem
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if rem_port == Some(port) && *state == "01" {
                n += 1;
            }
        }
    }
    n
}

/// Whether a thread of process `pid` is blocked in a blocking `recv(2)` on one of its
/// server-side connections of local port `port` (an ESTABLISHED socket of that port among
/// its descriptors), from `/proc/PID/task/TID/syscall`: the thread has taken in everything
/// the peer sent so far and waits for more. For a FastCGI application that is the proof
/// that a request was accepted and its handler reads the request's input: the engine's
/// own reads never wait (`MSG_DONTWAIT`), and a thread waiting for a connection sits in
/// `accept4` or `epoll_wait`, not in `recv`.
///
/// The kernel lets the parent read a child's `syscall` file; a thread that is running, or
/// that cannot be read, does not count.
pub fn waits_in_recv(pid: u32, port: u16) -> bool {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in read_lossy(Path::new(table)).lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && *state == "01" && *inode != "0" {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        // "NR ARG0 .. ARG5 SP PC" for a thread blocked in a system call; "running" or
        // "-1 SP PC" otherwise.
        let line = read_lossy(&task.path().join("syscall"));
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 7 || f[0].parse::<i64>().ok() != Some(libc::SYS_recvfrom) {
            return false;
        }
        let (Some(fd), Some(flags)) = (hex(f[1]), hex(f[4])) else {
            return false;
        };
        flags & libc::MSG_DONTWAIT as u64 == 0
            && fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .is_ok_and(|l| inodes.contains(l.to_string_lossy().as_ref()))
    })
}

/// Whether a TCP socket (IPv4 or IPv6) listens on local port `port`, from the kernel's
/// tables: the row goes away as soon as the listening socket is closed. Unlike a probing
/// `connect`, this adds no connection to the server it watches.
pub fn listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        read_lossy(Path::new(table)).lines().skip(1).any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols: sl local_address rem_address st ...; 0A is LISTEN.
            let local_port = cols
                .get(1)
                .and_then(|l| l.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && cols.get(3) == Some(&"0A")
        })
    })
}
