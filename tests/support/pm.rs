//! Running `fcgi-pm` in the tests: its child program (`tests/c/pm_app.c`, built against
//! Debian's classic libfcgi or ours), a manager in its own process group with a config in
//! the test's temp dir, FastCGI requests to the pool and to the status socket, and a small
//! JSON reader for the status document.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fcgi::client::{Address, Config, Connection, FcgiRequest};

use super::capi::{compile_c, have_paths, our_lib, run_cc};
use super::{temp_dir, wait_until, Addr, Proc};

/// Which libfcgi the child program runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lib {
    /// Debian's `libfcgi.so.0` (`cc pm_app.c -lfcgi`).
    Classic,
    /// This crate's, through `LD_LIBRARY_PATH` (scoreboard and `pm.max_requests` exit).
    Ours,
}

/// The child program, built in `dir`; `None` (after a loud skip, or a failure when peers
/// are required) when the classic library's headers are missing.
pub struct App {
    pub exe: PathBuf,
    /// `LD_LIBRARY_PATH` for [`Lib::Ours`].
    pub lib_dir: Option<PathBuf>,
    pub lib: Lib,
}

impl App {
    pub fn build(dir: &Path, lib: Lib, test: &str) -> Option<App> {
        match lib {
            Lib::Classic => {
                if !have_paths(&["/usr/include/fcgiapp.h", "/usr/bin/cc"], test) {
                    return None;
                }
                let exe = dir.join("pm_app_classic");
                let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/pm_app.c");
                run_cc(
                    Command::new("cc")
                        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
                        .arg(&exe)
                        .arg(&src)
                        .arg("-lfcgi"),
                    "pm_app.c (classic)",
                );
                Some(App {
                    exe,
                    lib_dir: None,
                    lib,
                })
            }
            Lib::Ours => {
                let lib_dir = our_lib(dir);
                let exe = compile_c(dir, "pm_app.c", "pm_app_ours", &lib_dir);
                Some(App {
                    exe,
                    lib_dir: Some(lib_dir),
                    lib,
                })
            }
        }
    }

    /// The pool lines that run this program (`command`, and its library path).
    pub fn pool_lines(&self) -> String {
        let mut s = format!("command = {}\n", self.exe.display());
        if let Some(l) = &self.lib_dir {
            s.push_str(&format!("env[LD_LIBRARY_PATH] = {}\n", l.display()));
        }
        s
    }
}

/// What most manager tests stand on: a temp dir, the child program built in it, and a free
/// TCP address for the pool `www`.
pub struct Ground {
    pub dir: tempfile::TempDir,
    pub app: App,
    pub listen: Addr,
}

impl Ground {
    /// `None` when [`App::build`] skips (it says so loudly, or fails when peers are
    /// required).
    pub fn new(lib: Lib, test: &str) -> Option<Ground> {
        let dir = temp_dir();
        let app = App::build(dir.path(), lib, test)?;
        Some(Ground {
            dir,
            app,
            listen: Addr::free_tcp(),
        })
    }

    /// The pool `www` on [`Ground::listen`] running the program, with `extra` lines.
    pub fn pool(&self, extra: &str) -> String {
        pool("www", &self.listen, &self.app, extra)
    }

    /// [`Pm::start`] on `conf`, in this ground's directory.
    pub fn start(&self, conf: &str) -> Pm {
        Pm::start(self.dir.path(), conf, self.listen.clone())
    }

    /// [`Pm::spawn`] on `conf`, in this ground's directory.
    pub fn spawn(&self, conf: &str) -> Pm {
        Pm::spawn(self.dir.path(), conf, self.listen.clone())
    }
}

/// The `fcgi-pm` binary cargo built for the tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fcgi-pm"))
}

/// A running manager, stopped with its process group when dropped.
pub struct Pm {
    pub proc: Proc,
    pub conf: PathBuf,
    pub listen: Addr,
}

impl Pm {
    /// Writes `conf` to `dir/fcgi-pm.conf` and starts `fcgi-pm -F -O -y` on it; waits
    /// until `listen` accepts connections.
    pub fn start(dir: &Path, conf: &str, listen: Addr) -> Pm {
        let mut m = Pm::spawn(dir, conf, listen);
        let listen = m.listen.clone();
        m.proc.wait_accepts(&listen);
        m
    }

    /// As [`Pm::start`], without waiting for the socket.
    pub fn spawn(dir: &Path, conf: &str, listen: Addr) -> Pm {
        let path = dir.join("fcgi-pm.conf");
        std::fs::write(&path, conf).unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("-F").arg("-O").arg("-y").arg(&path);
        let proc = Proc::spawn("fcgi-pm", cmd, dir.join("fcgi-pm.log"));
        Pm {
            proc,
            conf: path,
            listen,
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Sends `sig` to the manager.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// The manager's children now (sorted pids).
    pub fn children(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// Waits until the manager has `n` children, each running its program already (a
    /// child just forked is still the manager: its uid, directory, environment and
    /// libraries are not the program's yet); panics with the log otherwise.
    pub fn wait_children(&self, n: usize, timeout: Duration) -> Vec<u32> {
        let ok = wait_until(timeout, || {
            let kids = self.children();
            kids.len() == n && kids.iter().all(|k| execd(*k))
        });
        let now = self.children();
        assert!(
            ok,
            "wanted {n} children, have {:?} after {timeout:?}; log:\n{}",
            now,
            self.proc.log()
        );
        now
    }
}

/// Whether process `pid` runs a program other than the manager (its `exec` is done).
pub fn execd(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| !exe.to_string_lossy().contains("fcgi-pm"))
}

/// The children of `pid` (from /proc).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .filter(|c| {
            // Zombies waiting to be reaped are not children that serve.
            std::fs::read_to_string(format!("/proc/{c}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .map(|r| !r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
        })
        .collect();
    out.sort_unstable();
    out
}

fn address(a: &Addr) -> Address {
    match a {
        Addr::Tcp(s) => Address::Tcp(*s),
        Addr::Unix(p) => Address::Unix(p.clone()),
    }
}

/// What the pool's program answered.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub pid: u32,
    pub served: u64,
    pub body: Vec<u8>,
}

/// One GET to the pool (a new connection), with `query` as `QUERY_STRING`.
pub fn get(addr: &Addr, query: &str, timeout: Duration) -> Result<Reply, String> {
    let mut config = Config::default();
    config.connect_timeout = Some(Duration::from_secs(5));
    config.request_timeout = Some(timeout);
    config.keep_conn = false;
    let mut conn = Connection::connect(&address(addr), &config).map_err(|e| e.to_string())?;
    let req = FcgiRequest::new()
        .param("REQUEST_METHOD", "GET")
        .param("SCRIPT_NAME", "/app")
        .param("SCRIPT_FILENAME", "/srv/app")
        .param("REQUEST_URI", format!("/app?{query}"))
        .param("QUERY_STRING", query);
    let mut resp = conn
        .send(req, std::io::empty())
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let pid = resp
        .header("X-Pid")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let served = resp
        .header("X-Served")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = Vec::new();
    resp.read_to_end(&mut body).map_err(|e| e.to_string())?;
    Ok(Reply {
        status,
        pid,
        served,
        body,
    })
}

/// A status or ping page from the manager's status socket: (status, content type, body).
pub fn page(addr: &Addr, path: &str, query: &str) -> Result<(u16, String, String), String> {
    let mut config = Config::default();
    config.connect_timeout = Some(Duration::from_secs(5));
    config.request_timeout = Some(Duration::from_secs(10));
    config.keep_conn = false;
    let mut conn = Connection::connect(&address(addr), &config).map_err(|e| e.to_string())?;
    let req = FcgiRequest::new()
        .param("REQUEST_METHOD", "GET")
        .param("SCRIPT_NAME", path)
        .param("SCRIPT_FILENAME", path)
        .param("QUERY_STRING", query);
    let mut resp = conn
        .send(req, std::io::empty())
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let ctype = resp.header("Content-Type").unwrap_or_default().to_string();
    let mut body = String::new();
    resp.read_to_string(&mut body).map_err(|e| e.to_string())?;
    Ok((status, ctype, body))
}

/// The status document as JSON.
pub fn status_json(addr: &Addr, query: &str) -> Json {
    let (status, ctype, body) = page(addr, "/status", query).expect("status page");
    assert_eq!(status, 200, "{body}");
    assert_eq!(ctype, "application/json");
    Json::parse(&body).unwrap_or_else(|e| panic!("status is not JSON ({e}): {body}"))
}

/// Polls the status until `cond` holds on it.
pub fn wait_status(addr: &Addr, timeout: Duration, mut cond: impl FnMut(&Json) -> bool) -> Json {
    let deadline = Instant::now() + timeout;
    loop {
        let j = status_json(addr, "json&full");
        if cond(&j) || Instant::now() > deadline {
            return j;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A JSON value (just enough to read the status document strictly).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    pub fn parse(s: &str) -> Result<Json, String> {
        let b = s.as_bytes();
        let mut i = 0;
        let v = value(b, &mut i)?;
        ws(b, &mut i);
        if i != b.len() {
            return Err(format!("trailing bytes at {i}"));
        }
        Ok(v)
    }

    /// A number field of an object.
    pub fn num(&self, key: &str) -> u64 {
        match self {
            Json::Obj(m) => match m.get(key) {
                Some(Json::Num(n)) => *n as u64,
                other => panic!("field {key:?} is {other:?} in {self:?}"),
            },
            _ => panic!("not an object: {self:?}"),
        }
    }

    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m
                .get(key)
                .unwrap_or_else(|| panic!("no field {key:?} in {self:?}")),
            _ => panic!("not an object: {self:?}"),
        }
    }

    pub fn str(&self, key: &str) -> String {
        match self.get(key) {
            Json::Str(s) => s.clone(),
            other => panic!("field {key:?} is {other:?}"),
        }
    }

    pub fn arr(&self, key: &str) -> Vec<Json> {
        match self.get(key) {
            Json::Arr(a) => a.clone(),
            other => panic!("field {key:?} is {other:?}"),
        }
    }
}

fn ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

fn value(b: &[u8], i: &mut usize) -> Result<Json, String> {
    ws(b, i);
    match b.get(*i) {
        Some(b'{') => {
            *i += 1;
            let mut m = BTreeMap::new();
            ws(b, i);
            if b.get(*i) == Some(&b'}') {
                *i += 1;
                return Ok(Json::Obj(m));
            }
            loop {
                ws(b, i);
                let Json::Str(k) = value(b, i)? else {
                    return Err(format!("object key at {i} is not a string"));
                };
                ws(b, i);
                if b.get(*i) != Some(&b':') {
                    return Err(format!("':' expected at {i}"));
                }
                *i += 1;
                let v = value(b, i)?;
                if m.insert(k.clone(), v).is_some() {
                    return Err(format!("duplicate key {k:?}"));
                }
                ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b'}') => {
                        *i += 1;
                        return Ok(Json::Obj(m));
                    }
                    _ => return Err(format!("',' or '}}' expected at {i}")),
                }
            }
        }
        Some(b'[') => {
            *i += 1;
            let mut a = Vec::new();
            ws(b, i);
            if b.get(*i) == Some(&b']') {
                *i += 1;
                return Ok(Json::Arr(a));
            }
            loop {
                a.push(value(b, i)?);
                ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b']') => {
                        *i += 1;
                        return Ok(Json::Arr(a));
                    }
                    _ => return Err(format!("',' or ']' expected at {i}")),
                }
            }
        }
        Some(b'"') => {
            *i += 1;
            let mut s = String::new();
            loop {
                match b.get(*i) {
                    None => return Err("unterminated string".into()),
                    Some(b'"') => {
                        *i += 1;
                        return Ok(Json::Str(s));
                    }
                    Some(b'\\') => {
                        *i += 1;
                        match b.get(*i) {
                            Some(b'"') => s.push('"'),
                            Some(b'\\') => s.push('\\'),
                            Some(b'/') => s.push('/'),
                            Some(b'n') => s.push('\n'),
                            Some(b'r') => s.push('\r'),
                            Some(b't') => s.push('\t'),
                            Some(b'b') => s.push('\u{8}'),
                            Some(b'f') => s.push('\u{c}'),
                            Some(b'u') => {
                                let hex =
                                    std::str::from_utf8(b.get(*i + 1..*i + 5).ok_or("short \\u")?)
                                        .map_err(|e| e.to_string())?;
                                let c = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                                s.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                                *i += 4;
                            }
                            _ => return Err(format!("bad escape at {i}")),
                        }
                        *i += 1;
                    }
                    Some(c) if *c < 0x20 => return Err(format!("control byte in string at {i}")),
                    Some(_) => {
                        let rest = std::str::from_utf8(&b[*i..]).map_err(|e| e.to_string())?;
                        let c = rest.chars().next().unwrap();
                        s.push(c);
                        *i += c.len_utf8();
                    }
                }
            }
        }
        Some(b't') if b[*i..].starts_with(b"true") => {
            *i += 4;
            Ok(Json::Bool(true))
        }
        Some(b'f') if b[*i..].starts_with(b"false") => {
            *i += 5;
            Ok(Json::Bool(false))
        }
        Some(b'n') if b[*i..].starts_with(b"null") => {
            *i += 4;
            Ok(Json::Null)
        }
        Some(c) if *c == b'-' || c.is_ascii_digit() => {
            let start = *i;
            *i += 1;
            while *i < b.len() && (b[*i].is_ascii_digit() || b".eE+-".contains(&b[*i])) {
                *i += 1;
            }
            let t = std::str::from_utf8(&b[start..*i]).unwrap();
            t.parse()
                .map(Json::Num)
                .map_err(|_| format!("bad number {t:?}"))
        }
        _ => Err(format!("value expected at {i}")),
    }
}

/// The libfcgi a process mapped, from `/proc/PID/maps`: "classic", "ours" or "none".
///
/// A child just forked may not have run its program yet: this waits (up to 10 s) until the
/// process is no longer the manager (`exec` done) and the dynamic loader has mapped libc.
pub fn mapped_libfcgi(pid: u32) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let execd = !exe.to_string_lossy().contains("fcgi-pm");
        let loaded = maps.contains("libfcgi.so") || (execd && maps.contains("libc.so"));
        if loaded || std::time::Instant::now() >= deadline {
            return mapped_libfcgi_now(&maps);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn mapped_libfcgi_now(maps: &str) -> String {
    let lines: Vec<&str> = maps.lines().filter(|l| l.contains("libfcgi.so")).collect();
    if lines
        .iter()
        .any(|l| l.contains("/usr/lib/") || l.contains("/lib/x86_64-linux-gnu/"))
    {
        "classic".into()
    } else if !lines.is_empty() {
        "ours".into()
    } else {
        "none".into()
    }
}

/// A pool section with the usual test settings and `extra` lines.
pub fn pool(name: &str, listen: &Addr, app: &App, extra: &str) -> String {
    format!("[{name}]\nlisten = {listen}\n{}{extra}\n", app.pool_lines())
}
