//! The client against the crate's own server (issue 4: "the same against the crate's own
//! server examples, including multiplexed connections"): both ends of this crate, over real
//! loopback sockets.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fcgi::client::{
    get_values, Address, Backend, Config, Connection, Error, FcgiRequest, MuxConnection, Pool,
};
use fcgi::server::{Config as ServerConfig, ShutdownHandle, StatsHandle};
use fcgi::Role;

struct Running {
    addr: Address,
    stop: ShutdownHandle,
    stats: StatsHandle,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.shutdown();
    }
}

fn start<H>(config: ServerConfig, handler: H) -> Running
where
    H: Fn(&mut fcgi::Request) -> std::io::Result<()> + Send + Sync + 'static,
{
    let mut config = config;
    config.handle_signals = false;
    let server = fcgi::Server::bind("127.0.0.1:0")
        .unwrap()
        .config_with(config);
    let addr: Address = server.local_addrs()[0].parse().unwrap();
    let (stop, stats) = (server.shutdown_handle(), server.stats_handle());
    std::thread::spawn(move || server.serve(handler));
    Running { addr, stop, stats }
}

/// An application with a route per check, like a small PHP site.
fn app(req: &mut fcgi::Request) -> std::io::Result<()> {
    let path = req.param("SCRIPT_NAME").unwrap_or("/").to_owned();
    match path.as_str() {
        "/query" => {
            let q = req.param("QUERY_STRING").unwrap_or("").to_owned();
            req.respond(200, &[("Content-Type", "text/plain")], q.as_bytes())
        }
        "/form" => {
            let mut body = String::new();
            req.stdin().read_to_string(&mut body)?;
            let fields: Vec<&str> = body.split('&').collect();
            let out = format!("{} fields: {}", fields.len(), fields.join(","));
            req.respond(200, &[("Content-Type", "text/plain")], out.as_bytes())
        }
        "/hash" => {
            // Hash the upload as it streams in (FNV-1a 64), never holding it.
            let mut h: u64 = 0xcbf29ce484222325;
            let mut n = 0u64;
            let mut buf = vec![0; 65536];
            loop {
                let got = req.stdin().read(&mut buf)?;
                if got == 0 {
                    break;
                }
                for &b in &buf[..got] {
                    h = (h ^ b as u64).wrapping_mul(0x100000001b3);
                }
                n += got as u64;
            }
            req.respond(
                200,
                &[("Content-Type", "text/plain")],
                format!("{n} {h:016x}").as_bytes(),
            )
        }
        "/download" => {
            let n: usize = req
                .param("QUERY_STRING")
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            req.write_head(200, &[("Content-Type", "application/octet-stream")])?;
            let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len());
                req.stdout().write_all(&chunk[..k])?;
                left -= k;
            }
            Ok(())
        }
        "/created" => req.respond(201, &[("Location", "/items/9"), ("X-Id", "9")], b"made"),
        "/moved" => req
            .stdout()
            .write_all(b"Location: https://example.test/elsewhere\r\n\r\n"),
        "/warn" => {
            writeln!(req.stderr(), "PHP Warning:  something odd")?;
            req.set_app_status(3);
            req.respond(200, &[("Content-Type", "text/plain")], b"with a warning")
        }
        _ => req.respond(404, &[("Content-Type", "text/plain")], b"no route"),
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn get(pool: &Pool, script: &str, query: &str) -> (u16, String) {
    let req = FcgiRequest::new()
        .param("SCRIPT_NAME", script)
        .param("QUERY_STRING", query)
        .param("REQUEST_METHOD", "GET");
    let mut resp = pool.send(req, std::io::empty()).unwrap();
    let mut body = String::new();
    resp.read_to_string(&mut body).unwrap();
    (resp.status(), body)
}

#[test]
fn get_post_status_headers_stderr_and_connection_reuse() {
    let srv = start(ServerConfig::default(), app);
    let pool = Pool::builder()
        .backend(Backend::new(srv.addr.clone()).max_conns(1))
        .build();
    assert_eq!(get(&pool, "/query", "a=1&b=two"), (200, "a=1&b=two".into()));
    assert_eq!(get(&pool, "/nowhere", ""), (404, "no route".into()));

    let form = b"name=alice&city=paris&x=1";
    let req = FcgiRequest::new()
        .param("SCRIPT_NAME", "/form")
        .param("REQUEST_METHOD", "POST")
        .param("CONTENT_TYPE", "application/x-www-form-urlencoded")
        .param("CONTENT_LENGTH", form.len().to_string());
    let mut resp = pool.send(req, &form[..]).unwrap();
    let mut body = String::new();
    resp.read_to_string(&mut body).unwrap();
    assert_eq!(body, "3 fields: name=alice,city=paris,x=1");
    drop(resp);

    let req = FcgiRequest::new().param("SCRIPT_NAME", "/created");
    let mut resp = pool.send(req, std::io::empty()).unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.header("Location"), Some("/items/9"));
    assert_eq!(resp.header("x-id"), Some("9"));
    let mut b = String::new();
    resp.read_to_string(&mut b).unwrap();
    assert_eq!(b, "made");
    drop(resp);

    let req = FcgiRequest::new().param("SCRIPT_NAME", "/moved");
    let mut resp = pool.send(req, std::io::empty()).unwrap();
    assert_eq!(
        resp.status(),
        302,
        "a Location without Status is a redirect (RFC 3875)"
    );
    assert_eq!(
        resp.header("Location"),
        Some("https://example.test/elsewhere")
    );
    // Read to the end: a response dropped half-read is aborted and its connection closed.
    std::io::copy(&mut resp, &mut std::io::sink()).unwrap();
    drop(resp);

    let req = FcgiRequest::new().param("SCRIPT_NAME", "/warn");
    let mut resp = pool.send(req, std::io::empty()).unwrap();
    let mut b = String::new();
    resp.read_to_string(&mut b).unwrap();
    assert_eq!(b, "with a warning", "stderr never mixes into the body");
    assert_eq!(resp.finish().unwrap(), 3);

    let req = FcgiRequest::new().param("SCRIPT_NAME", "/warn");
    let mut resp = pool.send(req, std::io::empty()).unwrap();
    std::io::copy(&mut resp, &mut std::io::sink()).unwrap();
    assert_eq!(resp.stderr(), b"PHP Warning:  something odd\n");
    drop(resp);

    // Seven requests, one kept-alive connection: the server saw a single connection. (A
    // request counts as served once its END_REQUEST is out, a moment after we read it.)
    let t = Instant::now();
    while srv.stats.snapshot().requests_served < 7 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = srv.stats.snapshot();
    assert_eq!(s.requests_served, 7);
    assert_eq!(s.connections_open, 1);
}

#[test]
fn sixteen_mib_up_and_down_streamed() {
    let srv = start(ServerConfig::default(), app);
    let mut conn = Connection::connect(&srv.addr, &Config::default()).unwrap();
    let up: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let req = FcgiRequest::new()
        .param("SCRIPT_NAME", "/hash")
        .param("REQUEST_METHOD", "POST")
        .param("CONTENT_LENGTH", up.len().to_string());
    let mut resp = conn.send(req, &up[..]).unwrap();
    let mut body = String::new();
    resp.read_to_string(&mut body).unwrap();
    assert_eq!(body, format!("{} {:016x}", up.len(), fnv(&up)));
    drop(resp);

    let n = 16 * 1024 * 1024;
    let req = FcgiRequest::new()
        .param("SCRIPT_NAME", "/download")
        .param("QUERY_STRING", n.to_string());
    let mut resp = conn.send(req, std::io::empty()).unwrap();
    let mut h: u64 = 0xcbf29ce484222325;
    let mut total = 0usize;
    let mut buf = vec![0; 100_000];
    loop {
        let got = resp.read(&mut buf).unwrap();
        if got == 0 {
            break;
        }
        for &b in &buf[..got] {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        total += got;
    }
    let expected: Vec<u8> = (0..n).map(|i| ((i % 65536) % 251) as u8).collect();
    assert_eq!(total, n);
    assert_eq!(h, fnv(&expected));
}

#[test]
fn overloaded_server_gives_a_typed_error_and_unknown_role_too() {
    // A heads budget of 0 bytes: every request that sends params is refused, as when the
    // heads in progress of all connections hold the whole budget.
    let mut cfg = ServerConfig::default();
    cfg.workers = 1;
    cfg.head_budget = 0;
    let srv = start(cfg, move |req| req.respond(200, &[], b"done"));
    let mut c = Connection::connect(&srv.addr, &Config::default()).unwrap();
    // The refusal is a `Status: 503` head (for servers that ignore protocolStatus), then
    // END_REQUEST(FCGI_OVERLOADED): the client shows the 503, and the typed error at the end.
    let err = match c.send(FcgiRequest::new().param("A", "1"), std::io::empty()) {
        Err(e) => e,
        Ok(resp) => {
            assert_eq!(resp.status(), 503);
            assert_eq!(resp.header("Retry-After"), Some("1"));
            resp.finish().expect_err("FCGI_OVERLOADED at the end")
        }
    };
    assert!(matches!(err, Error::Overloaded { .. }), "{err}");
    assert!(err.is_retryable());

    let mut c = Connection::connect(&srv.addr, &Config::default()).unwrap();
    match c.send(FcgiRequest::new().role(Role::Unknown(7)), std::io::empty()) {
        Err(Error::UnknownRole) => {}
        Err(e) => panic!("expected FCGI_UNKNOWN_ROLE, got {e}"),
        Ok(mut resp) => {
            let mut b = String::new();
            let _ = resp.read_to_string(&mut b);
            panic!("expected FCGI_UNKNOWN_ROLE, got {} {b:?}", resp.status());
        }
    };
}

#[test]
fn multiplexed_connection_and_a_learning_pool() {
    let mut cfg = ServerConfig::default();
    cfg.workers = 4;
    cfg.multiplex = true;
    let srv = start(cfg, |req| {
        let n = req.param("N").unwrap_or("").to_owned();
        let mut body = Vec::new();
        req.stdin().read_to_end(&mut body)?;
        write!(
            req.stdout(),
            "Content-Type: text/plain\r\n\r\nn={n} len={}",
            body.len()
        )
    });
    let v = get_values(&srv.addr, &Config::default()).unwrap();
    assert_eq!(v.mpxs_conns, Some(true));
    assert_eq!(v.max_reqs, Some(4));
    let conn = MuxConnection::connect(&srv.addr, &Config::default(), 8).unwrap();
    let hs: Vec<_> = (0..8)
        .map(|i| {
            let conn = conn.clone();
            std::thread::spawn(move || {
                let data = vec![b'x'; 100_000 * i];
                let mut s = String::new();
                conn.send(FcgiRequest::new().param("N", i.to_string()), &data[..])
                    .unwrap()
                    .read_to_string(&mut s)
                    .unwrap();
                assert_eq!(s, format!("n={i} len={}", 100_000 * i));
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(
        srv.stats.snapshot().connections_open,
        1,
        "all eight on one connection"
    );
    let pool = Pool::builder()
        .backend(Backend::new(srv.addr.clone()))
        .learn_backend_limits(true)
        .build();
    for i in 0..20 {
        let mut s = String::new();
        pool.send(FcgiRequest::new().param("N", i.to_string()), &b"abc"[..])
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, format!("n={i} len=3"));
    }
}

fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

fn spawn_echo(port: u16) -> Child {
    let child = Command::new(example("echo"))
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("examples/echo (cargo test builds it)");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "echo did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

#[test]
fn backend_killed_mid_response_then_the_pool_recovers() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: Address = format!("127.0.0.1:{port}").parse().unwrap();
    let mut echo = spawn_echo(port);
    let pool = Pool::builder()
        .backend(Backend::new(addr))
        .retry_after(Duration::from_millis(100))
        .build();
    let body = vec![b'z'; 8 * 1024 * 1024];
    let req = FcgiRequest::new().param("REQUEST_METHOD", "POST");
    let mut resp = pool.send(req, &body[..]).unwrap();
    let mut first = vec![0; 4096];
    resp.read_exact(&mut first).unwrap();
    echo.kill().unwrap();
    echo.wait().unwrap();
    let rest = std::io::copy(&mut resp, &mut std::io::sink());
    let err = rest.expect_err("the backend died mid-response");
    assert!(
        err.to_string().to_lowercase().contains("closed")
            || err.kind() == std::io::ErrorKind::UnexpectedEof,
        "clear error: {err}"
    );
    drop(resp);
    // The dead connection is not kept for reuse.
    let s = &pool.stats()[0];
    assert_eq!((s.busy, s.idle, s.connects), (0, 0, 1), "{s:?}");
    // Returns once the new process accepts connections.
    let mut echo = spawn_echo(port);
    // A death mid-response is no failed connect, so the backend should still count as
    // healthy; were it marked down, its probe (every 100 ms) must see the new process
    // before a request can go there.
    assert!(
        support::wait_until(Duration::from_secs(10), || pool.stats()[0].healthy),
        "the pool never counted the restarted backend healthy"
    );
    let mut ok = String::new();
    pool.send(FcgiRequest::new().param("A", "1"), std::io::empty())
        .unwrap()
        .read_to_string(&mut ok)
        .unwrap();
    assert!(ok.starts_with("A=1\n"), "{ok}");
    let s = &pool.stats()[0];
    assert_eq!(
        (s.connects, s.healthy),
        (2, true),
        "a new connection: {s:?}"
    );
    echo.kill().unwrap();
    echo.wait().unwrap();
}

#[test]
fn a_response_read_to_its_end_gives_its_connection_back_at_once() {
    let srv = start(ServerConfig::default(), app);
    let pool = Pool::builder()
        .backend(Backend::new(srv.addr.clone()).max_conns(1))
        .wait_timeout(Some(Duration::from_millis(100)))
        .build();
    let req = || {
        FcgiRequest::new()
            .param("SCRIPT_NAME", "/query")
            .param("QUERY_STRING", "x=1")
    };
    let mut first = pool.send(req(), std::io::empty()).unwrap();
    assert_eq!(first.backend(), Some(0));
    assert_eq!(first.address(), &srv.addr);
    // Half-read: the only connection is still in use, so a second send waits and fails.
    let mut one = [0u8; 1];
    first.read_exact(&mut one).unwrap();
    let err = pool.send(req(), std::io::empty()).unwrap_err();
    assert!(
        matches!(err, Error::Timeout(fcgi::client::TimeoutKind::PoolWait)),
        "{err}"
    );
    // Read to its end (the response itself is kept): the connection is back.
    let mut rest = String::new();
    first.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "=1");
    let mut second = pool.send(req(), std::io::empty()).unwrap();
    let mut body = String::new();
    second.read_to_string(&mut body).unwrap();
    assert_eq!(body, "x=1");
    assert_eq!(first.app_status(), Some(0));
    let s = &pool.stats()[0];
    assert_eq!((s.connects, s.reuses), (1, 1), "{s:?}");
}

/// A started `examples/echo` on `port`, stopped (SIGKILL) on drop.
struct Echo(Child);

impl Echo {
    fn start(port: u16) -> Echo {
        Echo(spawn_echo(port))
    }
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, sig) };
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends GETs until `want` (the backend index that answered) holds for `n` in a row;
/// returns how long that took. Every request must succeed.
fn until(pool: &Pool, n: usize, want: impl Fn(usize) -> bool, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let mut run = 0;
    while run < n {
        assert!(
            t0.elapsed() < limit,
            "not within {limit:?}: {:?}",
            pool.stats()
        );
        let resp = pool
            .send(
                FcgiRequest::new().param("REQUEST_METHOD", "GET"),
                std::io::empty(),
            )
            .unwrap_or_else(|e| panic!("request failed: {e}; {:?}", pool.stats()));
        let b = resp.backend().unwrap();
        resp.finish().unwrap();
        run = if want(b) { run + 1 } else { 0 };
    }
    t0.elapsed()
}

#[test]
fn a_stopped_backend_is_left_out_and_taken_back_when_it_answers() {
    let (pa, pb) = (free_port(), free_port());
    let a = Echo::start(pa);
    let _b = Echo::start(pb);
    let mut config = Config::default();
    config.io_timeout = Some(Duration::from_secs(1));
    let pool = Pool::builder()
        .backend(Backend::new(format!("127.0.0.1:{pa}").parse().unwrap()))
        .backend(Backend::new(format!("127.0.0.1:{pb}").parse().unwrap()))
        .config(config)
        .build();
    // Both serve.
    until(&pool, 1, |b| b == 0, Duration::from_secs(5));
    until(&pool, 1, |b| b == 1, Duration::from_secs(5));
    // SIGSTOP: connects still succeed (the kernel queues them), nothing answers. The GETs
    // that land on it time out and go again to the other backend (they are idempotent),
    // and the stopped one is marked down: everything goes to the live one.
    a.signal(libc::SIGSTOP);
    let moved = until(&pool, 20, |b| b == 1, Duration::from_secs(10));
    let s = pool.stats();
    assert!(!s[0].healthy && s[0].timeouts >= 1, "{s:?}");
    assert!(s[1].healthy, "{s:?}");
    eprintln!("traffic moved to the live backend in {moved:?}");
    // SIGCONT: a probe (GET_VALUES round trip) finds it answering; traffic comes back.
    a.signal(libc::SIGCONT);
    let back = until(&pool, 1, |b| b == 0, Duration::from_secs(5));
    assert!(pool.stats()[0].healthy);
    eprintln!("and came back {back:?} after SIGCONT");
}

#[test]
fn a_restarted_backend_serves_again_within_a_second() {
    let (pa, pb) = (free_port(), free_port());
    let mut a = Echo::start(pa);
    let _b = Echo::start(pb);
    // Defaults: probes every 250 ms.
    let pool = Pool::builder()
        .backend(Backend::new(format!("127.0.0.1:{pa}").parse().unwrap()))
        .backend(Backend::new(format!("127.0.0.1:{pb}").parse().unwrap()))
        .build();
    until(&pool, 1, |b| b == 0, Duration::from_secs(5));
    drop(a);
    // Its kept connection is found closed, a new connect is refused: marked down, and
    // every request goes to the other one.
    until(&pool, 5, |b| b == 1, Duration::from_secs(5));
    assert!(!pool.stats()[0].healthy, "{:?}", pool.stats());
    a = Echo::start(pa); // returns once the port accepts
    let back = until(&pool, 1, |b| b == 0, Duration::from_secs(5));
    assert!(back < Duration::from_secs(1), "back after {back:?}");
    drop(a);
}
