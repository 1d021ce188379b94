//! Starting the crate's example applications and the real peers in front of them: nginx,
//! HAProxy (`fcgi-app`) and Debian's `cgi-fcgi`. Every server gets its own config in the
//! test's temp dir and runs in its own process group (see [`Proc`]).

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::{require_peer, Addr, Proc, START_TIMEOUT};

/// A TCP port on 127.0.0.1 held by a socket of the test process, bound but not listening:
/// connections to it are refused, and no other process can bind the port while it lives
/// (no `SO_REUSEADDR`, `SO_REUSEPORT`). Unlike [`super::free_port`], whose port is free
/// again when it returns, so that servers started at once by tests running in parallel can
/// be handed the same port.
#[derive(Debug)]
pub struct ReservedPort {
    sock: Socket,
    /// The port's address.
    pub addr: SocketAddr,
}

impl ReservedPort {
    /// A port the kernel picks, held until this drops.
    pub fn new() -> ReservedPort {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind 127.0.0.1:0");
        let addr = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("local_addr");
        ReservedPort { sock, addr }
    }
}

/// Makes `fd` (a socket of the test process, close-on-exec) descriptor `target` of the
/// program `cmd` starts, so that the program serves on a socket the test process made:
/// the socket's port is never free between being picked and being served.
fn hand_over(cmd: &mut Command, fd: RawFd, target: RawFd) {
    // SAFETY: dup2 and fcntl are async-signal-safe and touch no memory of the parent. The
    // closure runs after the child's stdio is set up, so `target` may be 0, 1 or 2.
    unsafe {
        cmd.pre_exec(move || {
            if fd == target {
                // Already there: only clear close-on-exec (dup2 would leave it set).
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags == -1 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, target) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `target/<profile>/examples/<name>`, found from the test binary's own path
/// (`target/<profile>/deps/<test>-<hash>`). `cargo test` builds the examples first.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "example `{name}` not found at {}: plain `cargo test` builds the examples, but \
         `cargo test --test <file>` does not; run `cargo build --examples` first",
        path.display()
    );
    path
}

/// A running example application.
#[derive(Debug)]
pub struct App {
    /// The process (its log holds the app's stdout and stderr).
    pub proc: Proc,
    /// Where it listens.
    pub addr: Addr,
}

impl App {
    /// Starts example `name` listening on `addr` with extra environment `env` (e.g.
    /// `FCGI_WORKERS`), and waits until it accepts connections.
    ///
    /// For a TCP address prefer [`App::start_tcp`]: a port from [`Addr::free_tcp`] may be
    /// taken by another test's server before the application binds it, and then this waits
    /// for, and the test talks to, that other server.
    pub fn start(name: &str, dir: &Path, addr: Addr, env: &[(&str, &str)]) -> App {
        let mut cmd = App::command(name, env);
        cmd.arg(addr.to_string());
        let mut proc = Proc::spawn(name, cmd, dir.join(format!("app-{name}.log")));
        proc.wait_accepts(&addr);
        App { proc, addr }
    }

    /// Starts example `name` on a TCP port of 127.0.0.1 with extra environment `env`, and
    /// waits until it serves. The listening socket is made here and handed to the
    /// application as fd 0, the FastCGI way (`Listener::inherited`), so its port is never
    /// free for another process to take.
    pub fn start_tcp(name: &str, dir: &Path, env: &[(&str, &str)]) -> App {
        // As the library's own bind does: SO_REUSEADDR and its backlog.
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        sock.set_reuse_address(true).expect("SO_REUSEADDR");
        sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind 127.0.0.1:0");
        sock.listen(fcgi::server::DEFAULT_BACKLOG).expect("listen");
        let addr = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("local_addr");
        let mut cmd = App::command(name, env);
        hand_over(&mut cmd, sock.as_raw_fd(), 0);
        let mut proc = Proc::spawn(name, cmd, dir.join(format!("app-{name}.log")));
        // Connections are queued from now on; this copy of the socket is kept until the
        // application answers, so that a probe to an application that died waits (and is
        // seen to) rather than reaching whatever took the port next.
        wait_serves(name, &mut proc, addr);
        drop(sock);
        App {
            proc,
            addr: Addr::Tcp(addr),
        }
    }

    fn command(name: &str, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(example_path(name));
        cmd.env_remove("FCGI_WEB_SERVER_ADDRS")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env("RUST_BACKTRACE", "1")
            .envs(env.iter().copied());
        cmd
    }
}

/// Waits until the FastCGI application `name` (`proc`) answers an `FCGI_GET_VALUES` on
/// `addr`, whose listening socket it inherited (a connection waits in its queue until the
/// application runs). Panics with its log if it exits first or does not answer within
/// [`START_TIMEOUT`].
fn wait_serves(name: &str, proc: &mut Proc, addr: SocketAddr) {
    use fcgi::protocol::{encode_get_values, Header, RecordType, HEADER_LEN, MPXS_CONNS};
    let deadline = Instant::now() + START_TIMEOUT;
    let mut ask = Vec::new();
    encode_get_values(&mut ask, &[MPXS_CONNS]);
    let mut conn = TcpStream::connect(addr).expect("connect to the application's socket");
    conn.write_all(&ask).expect("send FCGI_GET_VALUES");
    // Short waits, to look at the process in between.
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set_read_timeout");
    let mut head = [0u8; HEADER_LEN];
    let mut have = 0;
    while have < HEADER_LEN {
        let err = match read_watching(proc, &mut conn, deadline, &mut head[have..]) {
            Ok(0) => "connection closed".to_string(),
            Ok(n) => {
                have += n;
                continue;
            }
            Err(e) => e,
        };
        panic!(
            "{name} on {addr} did not answer FCGI_GET_VALUES: {err}; its log:\n{}",
            proc.log()
        );
    }
    let h = Header::decode(&head).expect("a record header");
    assert_eq!(
        h.record_type,
        RecordType::GetValuesResult,
        "{name} answered FCGI_GET_VALUES with {h:?}"
    );
}

/// One read from `conn` (set to time out after a short wait) of the server `proc`: the
/// bytes read (0 at the end), or why none came. Between the short waits the process must
/// still run; after `deadline` it gives up.
fn read_watching(
    proc: &mut Proc,
    conn: &mut TcpStream,
    deadline: Instant,
    buf: &mut [u8],
) -> Result<usize, String> {
    loop {
        match conn.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                proc.assert_running();
                if Instant::now() >= deadline {
                    return Err(format!("no answer within {START_TIMEOUT:?}"));
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// How a test's nginx is set up in front of the application.
#[derive(Clone, Debug)]
pub struct NginxConf {
    /// The FastCGI application's address.
    pub upstream: Addr,
    /// `Some(n)`: `fastcgi_keep_conn on;` and `keepalive n;` in the upstream block (both
    /// are needed for nginx to keep connections to the app).
    pub keepalive: Option<u32>,
    /// `fastcgi_buffering` (nginx's default is on).
    pub buffering: bool,
    /// Lines added inside `http { }`.
    pub extra_http: String,
    /// Lines added inside the FastCGI `location / { }`.
    pub extra_location: String,
    /// `Some(n)`: `sndbuf=n` on the listening socket, so that little of an answer sits in
    /// kernel buffers towards the client (for clients that leave mid-response).
    pub client_sndbuf: Option<u32>,
}

impl NginxConf {
    /// Defaults: no keep-alive, buffering on.
    pub fn new(upstream: Addr) -> NginxConf {
        NginxConf {
            upstream,
            keepalive: None,
            buffering: true,
            extra_http: String::new(),
            extra_location: String::new(),
            client_sndbuf: None,
        }
    }
}

/// A running nginx serving `/static/` from [`Nginx::root`] and everything else over
/// FastCGI.
#[derive(Debug)]
pub struct Nginx {
    /// The process group (master and workers); its log includes the error log.
    pub proc: Proc,
    /// The HTTP address.
    pub addr: SocketAddr,
    /// The document root: `/static/x` is `root/static/x`.
    pub root: PathBuf,
    error_log: PathBuf,
    access_log: PathBuf,
}

impl Nginx {
    /// Writes the config under `dir/nginx/`, starts nginx in the foreground (`daemon off;`;
    /// prefix, config and logs all in that directory) on a socket made here, and waits
    /// until it answers. `None` when nginx is not installed (and skipping is allowed).
    pub fn start(dir: &Path, conf: &NginxConf) -> Option<Nginx> {
        let bin = require_peer("nginx")?;
        let base = dir.join("nginx");
        let root = base.join("www");
        fs::create_dir_all(root.join("static")).expect("mkdir nginx root");
        // The HTTP socket is bound and listening here, and nginx inherits it the way a new
        // binary does on an upgrade (`NGINX="fd;"`; it matches the `listen` address below,
        // so nginx takes it over instead of binding). With a port from `Addr::free_tcp`,
        // nginx processes of tests started together could be given the same port: one of
        // them fails to bind, and the test's readiness check is met by the other one.
        let (listener, addr) = nginx_listener();
        let error_log = base.join("error.log");
        let server = match &conf.upstream {
            Addr::Tcp(a) => a.to_string(),
            Addr::Unix(p) => format!("unix:{}", p.display()),
        };
        let (keepalive, keep_conn) = match conf.keepalive {
            Some(n) => (format!("keepalive {n};"), "fastcgi_keep_conn on;"),
            None => (String::new(), ""),
        };
        // The master runs as root under CI; its workers must be able to reach the app's
        // Unix socket in the (root-owned) temp dir, so they stay root too.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let b = base.display();
        // What the readiness location answers: this nginx's config, no other.
        let ready = format!("ready {}", base.display());
        let text = format!(
            r#"{user}
daemon off;
master_process on;
worker_processes 1;
pid {b}/nginx.pid;
error_log {b}/error.log info;
events {{ worker_connections 2048; }}
http {{
    log_format test '$status $body_bytes_sent "$request" completion=$request_completion upstream=$upstream_status';
    access_log {b}/access.log test;
    client_body_temp_path {b}/client_body;
    proxy_temp_path {b}/proxy;
    fastcgi_temp_path {b}/fastcgi;
    uwsgi_temp_path {b}/uwsgi;
    scgi_temp_path {b}/scgi;
    client_max_body_size 64m;
    large_client_header_buffers 4 64k;
    keepalive_timeout 30s;
    upstream app {{
        server {server};
        {keepalive}
    }}
    server {{
        listen {addr}{sndbuf};
        root {root};
        location = {READY_PATH} {{
            access_log off;
            return 200 "{ready}";
        }}
        location /static/ {{ }}
        location / {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass app;
            {keep_conn}
            fastcgi_buffering {buffering};
            fastcgi_connect_timeout 10s;
            fastcgi_send_timeout 30s;
            fastcgi_read_timeout 30s;
            {extra_location}
        }}
    }}
    {extra_http}
}}
"#,
            root = root.display(),
            buffering = if conf.buffering { "on" } else { "off" },
            sndbuf = conf
                .client_sndbuf
                .map(|n| format!(" sndbuf={n}"))
                .unwrap_or_default(),
            extra_location = conf.extra_location,
            extra_http = conf.extra_http,
        );
        let conf_path = base.join("nginx.conf");
        fs::write(&conf_path, text).expect("write nginx.conf");
        let mut cmd = Command::new(bin);
        // -e: even the messages before the config is read go to our log, not /var/log.
        cmd.arg("-p")
            .arg(&base)
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&conf_path);
        nginx_inherits(&mut cmd, &listener);
        let mut proc = Proc::spawn("nginx", cmd, base.join("stderr.log"));
        proc.add_log(error_log.clone());
        // The socket accepts (into its queue) from the start, so "accepts" says nothing:
        // wait for this nginx's own answer. This copy of the socket is kept meanwhile, so
        // the port cannot pass to another process even if nginx fails to start.
        wait_http_answer("nginx", &mut proc, addr, READY_PATH, &ready);
        drop(listener);
        Some(Nginx {
            proc,
            addr,
            root,
            error_log,
            access_log: base.join("access.log"),
        })
    }

    /// nginx's access log so far: `status bytes "request" completion=OK|
    /// upstream=status` per request.
    pub fn access_log(&self) -> String {
        super::read_lossy(&self.access_log)
    }

    /// nginx's error log so far (the app's FCGI_STDERR shows up here).
    pub fn error_log(&self) -> String {
        super::read_lossy(&self.error_log)
    }
}

/// The descriptor nginx inherits its HTTP socket on.
const NGINX_LISTEN_FD: RawFd = 3;

/// Makes the nginx that `cmd` starts take `listener` (from [`nginx_listener`]) over, the
/// way a new binary does on an upgrade: as descriptor [`NGINX_LISTEN_FD`], named in the
/// `NGINX` variable. nginx's `listen` address must be the socket's.
pub fn nginx_inherits(cmd: &mut Command, listener: &Socket) {
    cmd.env("NGINX", format!("{NGINX_LISTEN_FD};"));
    hand_over(cmd, listener.as_raw_fd(), NGINX_LISTEN_FD);
}

/// The location nginx answers [`wait_http_answer`]'s readiness check on.
const READY_PATH: &str = "/.harness-ready";

/// A listening TCP socket on a port of 127.0.0.1 the kernel picks, set up as nginx sets up
/// its own (`SO_REUSEADDR`, backlog 511, non-blocking: nginx does not change an inherited
/// socket's blocking mode), and its address.
pub fn nginx_listener() -> (Socket, SocketAddr) {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    sock.set_reuse_address(true).expect("SO_REUSEADDR");
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind 127.0.0.1:0");
    // NGX_LISTEN_BACKLOG on Linux: with the same backlog nginx leaves the socket as it is.
    sock.listen(511).expect("listen");
    sock.set_nonblocking(true).expect("O_NONBLOCK");
    let addr = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("local_addr");
    (sock, addr)
}

/// Waits until the HTTP server `name` (`proc`), on a listening socket it inherited from the
/// test, answers `GET path` with a 200 whose body is `body` (a connection waits in the
/// socket's queue until the server runs). Panics with its log if it exits first, answers
/// something else, or does not answer within [`START_TIMEOUT`].
fn wait_http_answer(name: &str, proc: &mut Proc, addr: SocketAddr, path: &str, body: &str) {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut conn = TcpStream::connect(addr).expect("connect to the server's socket");
    write!(
        conn,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the readiness request");
    // Short waits, to look at the process in between.
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set_read_timeout");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let err = loop {
        match read_watching(proc, &mut conn, deadline, &mut buf) {
            Ok(0) => break None,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e),
        }
    };
    let text = String::from_utf8_lossy(&answer);
    let ok = text.starts_with("HTTP/1.1 200") && text.ends_with(&format!("\r\n\r\n{body}"));
    if err.is_some() || !ok {
        panic!(
            "{name} on {addr} did not answer GET {path} as expected ({}); got {text:?}; its log:\n{}",
            err.as_deref().unwrap_or("wrong answer"),
            proc.log()
        );
    }
}

/// How a test's HAProxy is set up in front of the application.
#[derive(Clone, Debug)]
pub struct HaproxyConf {
    /// The FastCGI application's address.
    pub upstream: Addr,
    /// `option keep-conn`.
    pub keep_conn: bool,
    /// `Some(n)`: `option mpxs-conns` and `option max-reqs n`. Only against an app that
    /// multiplexes: HAProxy 2.6 puts requests that queued on a new connection while its
    /// GET_VALUES was in flight on that one connection even when the answer says
    /// FCGI_MPXS_CONNS=0, and it ignores the FCGI_CANT_MPX_CONN END_REQUEST of the refused
    /// ones, whose clients then wait for `timeout server` (504).
    pub mpxs: Option<u32>,
    /// `option get-values`: HAProxy asks FCGI_MAX_REQS/FCGI_MPXS_CONNS first.
    pub get_values: bool,
    /// `tune.bufsize`. HAProxy 2.6 corrupts request bodies above 65535 (a 16-bit STDIN
    /// record length wraps), so [`HaproxyConf::new`] picks 65528, which also leaves room for
    /// a 32 KiB request header.
    pub bufsize: u32,
    /// `Some(n)`: `tune.sndbuf.client n`, so that little of an answer sits in kernel
    /// buffers towards the client (for clients that leave mid-response).
    pub client_sndbuf: Option<u32>,
}

impl HaproxyConf {
    /// Defaults: no keep-conn, no multiplexing, no get-values, bufsize 65528.
    pub fn new(upstream: Addr) -> HaproxyConf {
        HaproxyConf {
            upstream,
            keep_conn: false,
            mpxs: None,
            get_values: false,
            bufsize: 65528,
            client_sndbuf: None,
        }
    }
}

/// A running HAProxy whose only backend is the FastCGI application.
#[derive(Debug)]
pub struct Haproxy {
    /// The process; its log is HAProxy's stderr, with the app's FCGI_STDERR.
    pub proc: Proc,
    /// The HTTP address.
    pub addr: SocketAddr,
}

/// The descriptor HAProxy gets its frontend's socket on.
const FRONTEND_FD: RawFd = 3;

impl Haproxy {
    /// Writes `dir/haproxy/haproxy.cfg`, starts `haproxy -db` and waits for its port.
    /// `None` when HAProxy is not installed (and skipping is allowed).
    pub fn start(dir: &Path, conf: &HaproxyConf) -> Option<Haproxy> {
        let bin = require_peer("haproxy")?;
        assert!(
            conf.bufsize <= 65528,
            "tune.bufsize above 65528 corrupts bodies in HAProxy 2.6"
        );
        let base = dir.join("haproxy");
        let docroot = base.join("www");
        fs::create_dir_all(&docroot).expect("mkdir haproxy docroot");
        // The frontend's socket is bound here and handed over as fd 3 (`bind fd@3`;
        // HAProxy listens on it). With a port from `Addr::free_tcp`, HAProxy processes of
        // tests started together could be given the same port and, as HAProxy binds with
        // SO_REUSEPORT, both bind it and the kernel splits the connections between them.
        let frontend = ReservedPort::new();
        let addr = Addr::Tcp(frontend.addr);
        let server = match &conf.upstream {
            Addr::Tcp(a) => a.to_string(),
            Addr::Unix(p) => p.display().to_string(),
        };
        let mut options = String::new();
        if conf.keep_conn {
            options.push_str("    option keep-conn\n");
        }
        if let Some(n) = conf.mpxs {
            options.push_str(&format!("    option mpxs-conns\n    option max-reqs {n}\n"));
        }
        if conf.get_values {
            options.push_str("    option get-values\n");
        }
        let text = format!(
            r#"global
    log stderr format raw local0 info
    tune.bufsize {bufsize}
{sndbuf}    maxconn 2048

defaults
    mode http
    log global
    option httplog
    timeout connect 10s
    timeout client 30s
    timeout server 30s
    timeout http-request 30s

frontend fe
    bind fd@{FRONTEND_FD}
    default_backend be

backend be
    use-fcgi-app app
    http-reuse always
    server app {server} proto fcgi

fcgi-app app
    docroot {docroot}
    log-stderr global
{options}"#,
            bufsize = conf.bufsize,
            sndbuf = conf
                .client_sndbuf
                .map(|n| format!("    tune.sndbuf.client {n}\n"))
                .unwrap_or_default(),
            docroot = docroot.display(),
        );
        let conf_path = base.join("haproxy.cfg");
        fs::write(&conf_path, text).expect("write haproxy.cfg");
        let mut cmd = Command::new(bin);
        cmd.arg("-db").arg("-f").arg(&conf_path);
        hand_over(&mut cmd, frontend.sock.as_raw_fd(), FRONTEND_FD);
        let mut proc = Proc::spawn("haproxy", cmd, base.join("haproxy.log"));
        // Refused until HAProxy listens. This copy holds the port meanwhile, even if
        // HAProxy fails to start.
        proc.wait_accepts(&addr);
        drop(frontend);
        Some(Haproxy {
            proc,
            addr: addr.tcp(),
        })
    }
}

/// What a `cgi-fcgi` run produced.
#[derive(Debug)]
pub struct CgiOutput {
    /// Its exit status (the application's app status).
    pub status: ExitStatus,
    /// The CGI response: header lines, an empty line, the body.
    pub stdout: Vec<u8>,
    /// Its stderr (the application's FCGI_STDERR).
    pub stderr: Vec<u8>,
}

impl CgiOutput {
    /// Splits stdout into header lines and body at the first empty line (CRLF or LF).
    pub fn split(&self) -> (Vec<String>, Vec<u8>) {
        let out = &self.stdout;
        let mut headers = Vec::new();
        let mut pos = 0;
        loop {
            let Some(nl) = out[pos..].iter().position(|&b| b == b'\n') else {
                panic!(
                    "no end of headers in cgi-fcgi output: {:?}",
                    String::from_utf8_lossy(out)
                );
            };
            let mut line = &out[pos..pos + nl];
            pos += nl + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.is_empty() {
                return (headers, out[pos..].to_vec());
            }
            headers.push(String::from_utf8_lossy(line).into_owned());
        }
    }
}

/// Runs `cgi-fcgi -bind -connect ADDR` with exactly `env` as its environment (it sends all
/// of it as params) and `stdin` on its stdin. `None` when cgi-fcgi is not installed (and
/// skipping is allowed). Panics if it runs longer than `timeout` (it is killed).
pub fn cgi_fcgi(
    connect: &Addr,
    env: &[(&str, &str)],
    stdin: &[u8],
    timeout: Duration,
) -> Option<CgiOutput> {
    let bin = require_peer("cgi-fcgi")?;
    let mut child = Command::new(bin)
        .env_clear()
        .envs(env.iter().copied())
        .arg("-bind")
        .arg("-connect")
        .arg(connect.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cgi-fcgi");
    let mut input = child.stdin.take().expect("stdin");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || {
        // cgi-fcgi reads only CONTENT_LENGTH bytes: a broken pipe after that is fine.
        let _ = input.write_all(&stdin);
    });
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait cgi-fcgi") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cgi-fcgi did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    Some(CgiOutput {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    })
}
