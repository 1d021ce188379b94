//! The client against a real PHP-FPM (Debian's php-fpm8.2), over TCP and a Unix socket.

mod support;
mod support_client;

use std::io::Read;
use std::time::{Duration, Instant};

use fcgi::client::{
    get_values, Address, Backend, Balance, Config, Connection, Error, FcgiRequest, Pool,
    TimeoutKind,
};
use support_client::{sha1_of, PhpFpm};

fn request(fpm: &PhpFpm, script: &str, method: &str, query: &str) -> FcgiRequest {
    FcgiRequest::new().params([
        ("SCRIPT_FILENAME", fpm.script(script).as_str()),
        ("SCRIPT_NAME", &format!("/{script}")),
        ("REQUEST_URI", &format!("/{script}?{query}")),
        ("DOCUMENT_ROOT", &fpm.dir.path().display().to_string()),
        ("REQUEST_METHOD", method),
        ("QUERY_STRING", query),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_NAME", "localhost"),
        ("SERVER_PORT", "80"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ])
}

fn body_string(mut r: impl Read) -> String {
    let mut s = String::new();
    r.read_to_string(&mut s).expect("read body");
    s
}

/// php-fpm's "accepted conn" for the pool at `addr` (which counts requests), read from its
/// status page over a fresh connection.
fn accepted_conns(addr: &Address) -> u64 {
    let mut conn = Connection::connect(addr, &Config::default()).unwrap();
    let req = FcgiRequest::new().params([
        ("SCRIPT_FILENAME", "/fpm-status"),
        ("SCRIPT_NAME", "/fpm-status"),
        ("REQUEST_URI", "/fpm-status"),
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", ""),
    ]);
    let text = body_string(conn.send(req, std::io::empty()).unwrap());
    let line = text
        .lines()
        .find(|l| l.starts_with("accepted conn:"))
        .unwrap_or_else(|| panic!("no accepted conn in status page:\n{text}"));
    line["accepted conn:".len()..].trim().parse().unwrap()
}

#[test]
fn get_with_query_string_over_tcp_and_unix() {
    let Some(fpm) = PhpFpm::start("get", 2) else {
        return;
    };
    for addr in [fpm.tcp(), fpm.unix()] {
        let mut conn = Connection::connect(&addr, &Config::default()).unwrap();
        let resp = conn
            .send(
                request(&fpm, "echo.php", "GET", "a=1&b=hello%20world"),
                std::io::empty(),
            )
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain;charset=UTF-8")
        );
        let body = body_string(resp);
        assert!(body.contains("method=GET\n"), "{body}");
        assert!(body.contains("query=a=1&b=hello%20world\n"), "{body}");
        assert!(body.contains("get.a=1\n"), "{body}");
        assert!(body.contains("get.b=hello world\n"), "{body}");
        // Keep-alive: the same connection serves a second request.
        assert!(
            conn.is_reusable(),
            "connection not reusable after a clean request"
        );
        let body = body_string(
            conn.send(
                request(&fpm, "echo.php", "GET", "second=2"),
                std::io::empty(),
            )
            .unwrap(),
        );
        assert!(body.contains("get.second=2\n"), "{body}");
        assert_eq!(conn.requests(), 2);
    }
}

#[test]
fn post_form() {
    let Some(fpm) = PhpFpm::start("post", 1) else {
        return;
    };
    let form = b"name=Ada+Lovelace&lang=rust%21";
    let req = request(&fpm, "echo.php", "POST", "q=1")
        .param("CONTENT_TYPE", "application/x-www-form-urlencoded")
        .param("CONTENT_LENGTH", form.len().to_string());
    let mut conn = Connection::connect(&fpm.tcp(), &Config::default()).unwrap();
    let mut resp = conn.send(req, &form[..]).unwrap();
    let body = body_string(&mut resp);
    assert_eq!(resp.app_status(), Some(0));
    assert!(body.contains("method=POST\n"), "{body}");
    assert!(body.contains("get.q=1\n"), "{body}");
    assert!(body.contains("post.name=Ada Lovelace\n"), "{body}");
    assert!(body.contains("post.lang=rust!\n"), "{body}");
}

/// A body source that yields `len` deterministic bytes without holding them in memory.
struct Pattern {
    pos: u64,
    len: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let p = self.pos + i as u64;
            *b = (p.wrapping_mul(2654435761) >> 7) as u8;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[test]
fn upload_16_mib_hashed_by_php() {
    let Some(fpm) = PhpFpm::start("upload", 1) else {
        return;
    };
    const LEN: u64 = 16 << 20;
    let (expected, n) = sha1_of(Pattern { pos: 0, len: LEN }).unwrap();
    assert_eq!(n, LEN);
    for addr in [fpm.tcp(), fpm.unix()] {
        let req = request(&fpm, "upload.php", "POST", "")
            .param("CONTENT_TYPE", "application/octet-stream")
            .param("CONTENT_LENGTH", LEN.to_string());
        let mut conn = Connection::connect(&addr, &Config::default()).unwrap();
        let resp = conn.send(req, Pattern { pos: 0, len: LEN }).unwrap();
        assert_eq!(resp.status(), 200);
        let body = body_string(resp);
        assert_eq!(body, format!("{LEN} {expected}"), "over {addr}");
    }
}

#[test]
fn download_16_mib_hashed_by_test() {
    let Some(fpm) = PhpFpm::start("download", 1) else {
        return;
    };
    for addr in [fpm.unix(), fpm.tcp()] {
        let mut conn = Connection::connect(&addr, &Config::default()).unwrap();
        let mut resp = conn
            .send(
                request(&fpm, "download.php", "GET", "blocks=256"),
                std::io::empty(),
            )
            .unwrap();
        let php_sha1 = resp.header("X-Sha1").unwrap().to_string();
        assert_eq!(resp.header("X-Length"), Some("16777216"));
        let (sha1, n) = sha1_of(&mut resp).unwrap();
        assert_eq!(n, 16 << 20, "over {addr}");
        assert_eq!(sha1, php_sha1, "over {addr}");
        assert_eq!(resp.app_status(), Some(0));
        assert!(
            resp.stderr().is_empty(),
            "{:?}",
            String::from_utf8_lossy(resp.stderr())
        );
    }
}

#[test]
fn status_codes_and_headers_set_by_php() {
    let Some(fpm) = PhpFpm::start("status", 1) else {
        return;
    };
    let mut conn = Connection::connect(&fpm.tcp(), &Config::default()).unwrap();

    let resp = conn
        .send(
            request(&fpm, "status.php", "GET", "code=201"),
            std::io::empty(),
        )
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.head().header_all("x-custom").collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert!(resp.header("Set-Cookie").unwrap().starts_with("sess=abc"));
    assert_eq!(body_string(resp), "code 201");

    let resp = conn
        .send(
            request(&fpm, "status.php", "GET", "code=418"),
            std::io::empty(),
        )
        .unwrap();
    assert_eq!(resp.status(), 418);
    resp.finish().unwrap();

    // header('Location: ...') with an explicit code.
    let resp = conn
        .send(
            request(&fpm, "status.php", "GET", "code=301&loc=/moved"),
            std::io::empty(),
        )
        .unwrap();
    assert_eq!(resp.status(), 301);
    assert_eq!(resp.head().location(), Some("/moved"));
    resp.finish().unwrap();

    // A bare Location: PHP turns it into 302 itself.
    let resp = conn
        .send(request(&fpm, "redirect.php", "GET", ""), std::io::empty())
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.head().location(), Some("https://example.test/landing"));
    resp.finish().unwrap();

    // A script that does not exist: php-fpm's 404 with "Primary script unknown" on stderr.
    let mut resp = conn
        .send(request(&fpm, "missing.php", "GET", ""), std::io::empty())
        .unwrap();
    assert_eq!(resp.status(), 404);
    std::io::copy(&mut resp, &mut std::io::sink()).unwrap();
    let err = String::from_utf8_lossy(resp.stderr()).into_owned();
    assert!(err.contains("Primary script unknown"), "stderr: {err:?}");
}

#[test]
fn php_warnings_arrive_as_stderr() {
    let Some(fpm) = PhpFpm::start("warn", 1) else {
        return;
    };
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let req =
        request(&fpm, "warn.php", "GET", "").on_stderr(move |b| sink.lock().extend_from_slice(b));
    let mut conn = Connection::connect(&fpm.unix(), &Config::default()).unwrap();
    let mut resp = conn.send(req, std::io::empty()).unwrap();
    let body = body_string(&mut resp);
    assert_eq!(body, "done", "warnings must not leak into stdout");
    let err = String::from_utf8_lossy(resp.stderr()).into_owned();
    assert!(err.contains("client-test-warning"), "stderr: {err:?}");
    assert!(err.contains("Undefined variable"), "stderr: {err:?}");
    assert!(err.contains("client-test-error-log"), "stderr: {err:?}");
    assert_eq!(&*seen.lock(), resp.stderr(), "callback saw the same bytes");
    drop(resp);

    // A bounded buffer keeps the first bytes and counts the rest.
    let req = request(&fpm, "warn.php", "GET", "").stderr_limit(10);
    let mut resp = conn.send(req, std::io::empty()).unwrap();
    std::io::copy(&mut resp, &mut std::io::sink()).unwrap();
    assert_eq!(resp.stderr().len(), 10);
    assert!(resp.stderr_dropped() > 0);
}

#[test]
fn pool_reuses_connections_counted_by_php_fpm() {
    let Some(fpm) = PhpFpm::start("reuse", 2) else {
        return;
    };
    let addr = fpm.tcp();
    let conn_of = |pool: &Pool| {
        body_string(
            pool.send(request(&fpm, "conn.php", "GET", ""), std::io::empty())
                .unwrap(),
        )
    };
    let before = accepted_conns(&addr);
    let pool = Pool::builder()
        .backend(Backend::new(addr.clone()).max_conns(1))
        .build();
    let seen: std::collections::HashSet<String> = (0..20).map(|_| conn_of(&pool)).collect();
    // The backend saw every request on one and the same socket.
    assert_eq!(seen.len(), 1, "backend-side connections: {seen:?}");
    assert!(seen.iter().next().unwrap().contains("socket:["));
    let stats = &pool.stats()[0];
    assert_eq!((stats.connects, stats.reuses), (1, 19), "{stats:?}");
    // php-fpm's status page counts requests ("accepted conn"), not connections: all 20
    // (and the first status query) reached it.
    let after = accepted_conns(&addr);
    assert!(after >= before + 21, "status: {before} -> {after}");

    // Without FCGI_KEEP_CONN, each request is a new connection at the backend.
    let mut config = Config::default();
    config.keep_conn = false;
    let no_keep = Pool::builder()
        .backend(Backend::new(addr).max_conns(1))
        .config(config)
        .build();
    let seen: std::collections::HashSet<String> = (0..5).map(|_| conn_of(&no_keep)).collect();
    assert_eq!(seen.len(), 5, "backend-side connections: {seen:?}");
    assert_eq!(no_keep.stats()[0].connects, 5);
}

#[test]
fn max_children_1_queues_concurrent_requests() {
    let Some(fpm) = PhpFpm::start("maxch", 1) else {
        return;
    };
    let addr = fpm.tcp();
    // PHP-FPM 8.2 answers GET_VALUES with FCGI_MPXS_CONNS=0 only (no MAX_CONNS/MAX_REQS),
    // then closes the connection.
    let v = get_values(&addr, &Config::default()).unwrap();
    assert_eq!(v.mpxs_conns, Some(false), "{v:?}");
    eprintln!("php-fpm GET_VALUES answer: {v:?}");

    // Kept-alive connections pin php-fpm's only worker, so the pool is bounded to
    // pm.max_children and queues callers instead of opening connections that would hang.
    let pool = Pool::builder()
        .backend(Backend::new(addr.clone()).max_conns(1))
        .max_conns_per_backend(4)
        .wait_timeout(Some(Duration::from_secs(20)))
        .build();
    assert!(pool.refresh_limits()[0].is_ok());
    assert_eq!(pool.stats()[0].limit, 1);
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            let req = request(&fpm, "slow.php", "GET", "ms=200");
            std::thread::spawn(move || body_string(pool.send(req, std::io::empty()).unwrap()))
        })
        .collect();
    let bodies: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let elapsed = start.elapsed();
    assert!(bodies.iter().all(|b| b.starts_with("pid=")), "{bodies:?}");
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one worker served all: {bodies:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(800),
        "ran in parallel? {elapsed:?}"
    );
    assert_eq!(pool.stats()[0].connects, 1, "{:?}", pool.stats());
    assert_eq!(pool.stats()[0].idle, 1);
    // Its idle kept-alive connection pins php-fpm's only worker: close it.
    drop(pool);

    // A caller that cannot get the only connection in time gets a clear timeout.
    let short = Pool::builder()
        .backend(Backend::new(addr.clone()).max_conns(1))
        .wait_timeout(Some(Duration::from_millis(100)))
        .build();
    let held = short
        .send(request(&fpm, "slow.php", "GET", "ms=500"), std::io::empty())
        .unwrap();
    let err = short
        .send(request(&fpm, "echo.php", "GET", ""), std::io::empty())
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(TimeoutKind::PoolWait)),
        "{err}"
    );
    drop(held);

    // Without keep-alive, php-fpm itself queues the connections in its listen backlog.
    let mut config = Config::default();
    config.keep_conn = false;
    let pool = Pool::builder()
        .backend(Backend::new(addr).max_conns(4))
        .config(config)
        .build();
    let start = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            let req = request(&fpm, "slow.php", "GET", "ms=200");
            std::thread::spawn(move || body_string(pool.send(req, std::io::empty()).unwrap()))
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap().starts_with("pid="));
    }
    assert!(start.elapsed() >= Duration::from_millis(800));
}

#[test]
fn backend_killed_mid_response_then_pool_recovers() {
    let Some(mut fpm) = PhpFpm::start("kill", 2) else {
        return;
    };
    let pool = Pool::builder()
        .backend(Backend::new(fpm.tcp()))
        .retry_after(Duration::from_millis(200))
        .build();
    let mut resp = pool
        .send(request(&fpm, "stream.php", "GET", "s=30"), std::io::empty())
        .unwrap();
    let mut first = vec![0u8; 100001];
    resp.read_exact(&mut first).unwrap();
    assert!(first[..100000].iter().all(|&b| b == b'a'));
    let t0 = Instant::now();
    fpm.kill();
    let mut rest = Vec::new();
    let err = resp.read_to_end(&mut rest).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10));
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
    assert!(
        matches!(
            inner,
            Some(Error::BackendClosed { .. }) | Some(Error::Io(_))
        ),
        "unclear error: {err:?}"
    );
    eprintln!("mid-response kill reported as: {err}");
    drop(resp);

    // While it is down: a clear connect error, and the backend is marked down.
    let err = pool
        .send(request(&fpm, "echo.php", "GET", ""), std::io::empty())
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(!pool.stats()[0].healthy);
    let err = pool
        .send(request(&fpm, "echo.php", "GET", ""), std::io::empty())
        .unwrap_err();
    assert!(matches!(err, Error::NoBackend), "{err}");

    // Returns once php-fpm accepts connections again; the pool takes the backend back
    // when its probe (every 200 ms) connects.
    fpm.restart();
    assert!(
        support::wait_until(Duration::from_secs(10), || pool.stats()[0].healthy),
        "the probe never found php-fpm back"
    );
    let body = body_string(
        pool.send(request(&fpm, "echo.php", "GET", "back=1"), std::io::empty())
            .unwrap(),
    );
    assert!(body.contains("get.back=1\n"), "{body}");
    assert!(pool.stats()[0].healthy);
}

#[test]
fn full_duplex_large_answer_before_reading_input() {
    let Some(fpm) = PhpFpm::start("duplex", 1) else {
        return;
    };
    const OUT: u64 = 8 << 20;
    const IN: u64 = 8 << 20;
    let mut config = Config::default();
    config.request_timeout = Some(Duration::from_secs(60));
    for addr in [fpm.unix(), fpm.tcp()] {
        let mut conn = Connection::connect(&addr, &config).unwrap();
        // PUT: PHP reads a POST body in full before the script runs, but leaves any other
        // method's body on the wire until the script reads php://input.
        let req = request(&fpm, "duplex.php", "PUT", &format!("out={OUT}"))
            .param("CONTENT_TYPE", "application/octet-stream")
            .param("CONTENT_LENGTH", IN.to_string());
        let mut resp = conn.send(req, Pattern { pos: 0, len: IN }).unwrap();
        let mut body = Vec::new();
        resp.read_to_end(&mut body).unwrap();
        assert_eq!(body.len() as u64, OUT + format!("\nread={IN}").len() as u64);
        assert!(body.ends_with(format!("\nread={IN}").as_bytes()));
        drop(resp);
        assert!(conn.is_reusable());
    }
}

#[test]
fn dropping_a_half_read_response_does_not_poison_the_pool() {
    let Some(fpm) = PhpFpm::start("drop", 2) else {
        return;
    };
    let pool = Pool::builder()
        .backend(Backend::new(fpm.unix()).max_conns(1))
        .build();
    for round in 0..3 {
        let mut resp = pool
            .send(
                request(&fpm, "download.php", "GET", "blocks=64"),
                std::io::empty(),
            )
            .unwrap();
        let mut some = vec![0u8; 1000];
        resp.read_exact(&mut some).unwrap();
        assert_eq!(&some[..8], b"0000000\n");
        drop(resp);
        // The next request on the pool gets a clean connection and a whole answer.
        let mut resp = pool
            .send(
                request(&fpm, "download.php", "GET", "blocks=2"),
                std::io::empty(),
            )
            .unwrap();
        let sha = resp.header("X-Sha1").unwrap().to_string();
        let (got, n) = sha1_of(&mut resp).unwrap();
        assert_eq!((got, n), (sha, 2 * 65536), "round {round}");
    }
    let s = &pool.stats()[0];
    // Each dropped response closed its connection; each whole one was kept and reused.
    assert_eq!(s.connects + s.reuses, 6, "{s:?}");
    assert!(s.connects >= 3, "a half-read connection was reused: {s:?}");
}

#[test]
fn idle_and_request_timeouts() {
    let Some(fpm) = PhpFpm::start("timeout", 2) else {
        return;
    };
    let mut config = Config::default();
    config.io_timeout = Some(Duration::from_millis(300));
    let mut conn = Connection::connect(&fpm.tcp(), &config).unwrap();
    let t0 = Instant::now();
    let err = conn
        .send(
            request(&fpm, "slow.php", "GET", "ms=3000"),
            std::io::empty(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(TimeoutKind::Io)), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(!conn.is_reusable());
    assert!(matches!(
        conn.send(request(&fpm, "echo.php", "GET", ""), std::io::empty()),
        Err(Error::ConnectionUnusable)
    ));

    // The whole-request limit applies while the body streams, too.
    let mut conn = Connection::connect(&fpm.tcp(), &Config::default()).unwrap();
    let resp = conn
        .send(
            request(&fpm, "stream.php", "GET", "s=5").timeout(Duration::from_millis(500)),
            std::io::empty(),
        )
        .unwrap();
    let t0 = Instant::now();
    let err = body_string_result(resp).unwrap_err();
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
    assert!(
        matches!(inner, Some(Error::Timeout(TimeoutKind::Request))),
        "{err:?}"
    );
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert!(t0.elapsed() < Duration::from_secs(2));

    // Connect to a port nobody listens on: a connect error naming the address.
    let dead = Address::Tcp(([127, 0, 0, 1], support_client::free_port()).into());
    let err = Connection::connect(&dead, &Config::default()).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&dead.to_string()));
}

fn body_string_result(mut r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).map(|_| v)
}

#[test]
fn several_backends_balance_affinity_and_failover() {
    let Some(fpm) = PhpFpm::start("multi", 2) else {
        return;
    };
    let dead = Address::Tcp(([127, 0, 0, 1], support_client::free_port()).into());
    // The [tcp] and [unix] pools of this php-fpm are separate sets of workers: two backends.
    let pool = Pool::builder()
        .backend(Backend::new(fpm.tcp()))
        .backend(Backend::new(fpm.unix()))
        .backend(Backend::new(dead))
        .retry_after(Duration::from_secs(60))
        .build();
    let pid_of = |body: String| {
        body.lines()
            .find_map(|l| l.strip_prefix("pid=").map(str::to_string))
            .unwrap()
    };
    // Round-robin: the dead backend fails once, is marked down, requests still succeed.
    for _ in 0..6 {
        pool.send(request(&fpm, "echo.php", "GET", ""), std::io::empty())
            .unwrap()
            .finish()
            .unwrap();
    }
    let s = pool.stats();
    assert!(s[0].connects >= 1 && s[1].connects >= 1, "{s:?}");
    assert!(!s[2].healthy && s[2].failures == 1, "{s:?}");

    // Affinity: one key always lands on one backend (so on one pool of workers).
    for key in [&b"session-a"[..], b"session-b", b"session-c"] {
        let first = pool.get_keyed(Some(key)).unwrap().backend();
        for _ in 0..5 {
            let resp = pool
                .send_keyed(key, request(&fpm, "echo.php", "GET", ""), std::io::empty())
                .unwrap();
            pid_of(body_string(resp));
            assert_eq!(pool.get_keyed(Some(key)).unwrap().backend(), first);
        }
    }

    // Least-busy: with one response held open on a backend, the next goes to the other.
    let lb = Pool::builder()
        .backend(Backend::new(fpm.tcp()))
        .backend(Backend::new(fpm.unix()))
        .balance(Balance::LeastBusy)
        .build();
    let held = lb.get().unwrap();
    let other = lb.get().unwrap();
    assert_ne!(held.backend(), other.backend());
}

#[test]
fn pool_survives_php_fpm_recycling_workers() {
    // pm.max_requests = 2: every worker exits (closing its kept connection) after two
    // requests; the pool notices closed idle connections or resends on a fresh one.
    let Some(fpm) = PhpFpm::start_with("recycle", 1, "pm.max_requests = 2") else {
        return;
    };
    let pool = Pool::builder()
        .backend(Backend::new(fpm.unix()).max_conns(1))
        .build();
    let mut seen = std::collections::HashSet::new();
    for i in 0..10 {
        let body = body_string(
            pool.send(
                request(&fpm, "conn.php", "GET", &format!("i={i}")),
                std::io::empty(),
            )
            .unwrap_or_else(|e| panic!("request {i}: {e}")),
        );
        seen.insert(body);
    }
    let s = &pool.stats()[0];
    eprintln!("{s:?}, {} backend-side connections", seen.len());
    assert!(seen.len() >= 5, "workers were not recycled: {seen:?}");
    assert!(s.connects >= 5, "{s:?}");
}

/// An `http`-based server forwarding to PHP-FPM: params from `http::Request`, the answer
/// back as an `http::Response`.
#[cfg(feature = "http")]
#[test]
fn http_request_forwarded_to_php_fpm() {
    use fcgi::client::CgiEnv;
    let Some(fpm) = PhpFpm::start("http", 1) else {
        return;
    };
    let form = "a=1&b=two";
    let http_req = http::Request::post("/env.php/extra/path?q=%41")
        .header("Host", "example.test:8080")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Content-Length", form.len().to_string())
        .header("X-Forwarded-For", "10.0.0.1")
        .header("Proxy", "http://evil.test/")
        .header("Cookie", "s=1")
        .header("Cookie", "t=2")
        .body(form.as_bytes())
        .unwrap();
    let env = CgiEnv::new(fpm.dir.path())
        .split_path_info(".php")
        .https(true)
        .server_addr("127.0.0.1:8080".parse().unwrap())
        .remote_addr("127.0.0.9:4444".parse().unwrap());
    let req = FcgiRequest::from_http(&http_req, &env).unwrap();
    let pool = Pool::builder().backend(Backend::new(fpm.tcp())).build();
    let mut resp = pool.send(req, *http_req.body()).unwrap();
    let mut body = String::new();
    resp.read_to_string(&mut body).unwrap();
    let http_resp = resp.head().to_http().body(body).unwrap();
    assert_eq!(http_resp.status(), 200);
    assert_eq!(http_resp.headers()["x-seen-method"], "POST");
    let body = http_resp.body();
    let root = fpm.dir.path().display().to_string();
    for line in [
        "SCRIPT_NAME=/env.php".to_string(),
        format!("SCRIPT_FILENAME={root}/env.php"),
        "PATH_INFO=/extra/path".to_string(),
        format!("PATH_TRANSLATED={root}/extra/path"),
        "PHP_SELF=/env.php/extra/path".to_string(),
        "QUERY_STRING=q=%41".to_string(),
        "REQUEST_URI=/env.php/extra/path?q=%41".to_string(),
        "HTTP_HOST=example.test:8080".to_string(),
        "HTTP_X_FORWARDED_FOR=10.0.0.1".to_string(),
        "HTTP_PROXY=(unset)".to_string(),
        "HTTPS=on".to_string(),
        "REMOTE_ADDR=127.0.0.9".to_string(),
        "SERVER_NAME=example.test".to_string(),
        "SERVER_PORT=8080".to_string(),
        "CONTENT_LENGTH=9".to_string(),
        "get.q=A".to_string(),
        "post.a=1".to_string(),
        "post.b=two".to_string(),
        "cookie.s=1".to_string(),
        "cookie.t=2".to_string(),
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in:\n{body}"
        );
    }
}

#[test]
fn idle_connections_are_closed_so_they_do_not_pin_workers() {
    // One worker: while a pool keeps an idle connection to it, nobody else is served.
    let Some(fpm) = PhpFpm::start("reap", 1) else {
        return;
    };
    let mut quick = Config::default();
    quick.io_timeout = Some(Duration::from_secs(3));
    let direct = |fpm: &PhpFpm| {
        let mut conn = Connection::connect(&fpm.tcp(), &quick).unwrap();
        let resp = conn.send(request(fpm, "echo.php", "GET", "d=1"), std::io::empty());
        body_string(resp.unwrap_or_else(|e| panic!("worker still pinned? {e}")))
    };

    // The idle timeout closes it in the background, with no further traffic on the pool.
    let keepalive = Duration::from_millis(300);
    let pool = Pool::builder()
        .backend(Backend::new(fpm.tcp()))
        .keepalive_timeout(keepalive)
        .build();
    let sent = Instant::now();
    pool.send(request(&fpm, "echo.php", "GET", ""), std::io::empty())
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(pool.stats()[0].idle, 1);
    // Kept for the keep-alive timeout (it went idle after `sent`), then closed by the
    // background reaper (it looks every 150 ms): stats() itself closes nothing.
    assert!(
        support::wait_until(Duration::from_secs(5), || pool.stats()[0].idle == 0),
        "the idle connection was not reaped"
    );
    let reaped = sent.elapsed();
    assert!(
        reaped >= keepalive,
        "reaped {reaped:?} after the request, before the keep-alive timeout"
    );
    assert!(direct(&fpm).contains("get.d=1\n"));

    // close_idle() does it at once.
    let pool = Pool::builder().backend(Backend::new(fpm.tcp())).build();
    pool.send(request(&fpm, "echo.php", "GET", ""), std::io::empty())
        .unwrap()
        .finish()
        .unwrap();
    pool.close_idle();
    assert_eq!(pool.stats()[0].idle, 0);
    assert!(direct(&fpm).contains("get.d=1\n"));
}

#[test]
fn a_long_streaming_response_holds_only_its_own_connection() {
    // The stall of a round-robin Vec<Mutex<Client>> (pingora#133): a long response must not
    // delay requests that can use another connection.
    let Some(fpm) = PhpFpm::start("nostall", 2) else {
        return;
    };
    let pool = Pool::builder()
        .backend(Backend::new(fpm.tcp()).max_conns(2))
        .build();
    let mut long = pool
        .send(request(&fpm, "stream.php", "GET", "s=3"), std::io::empty())
        .unwrap();
    let mut first = vec![0u8; 1000];
    long.read_exact(&mut first).unwrap();
    let t0 = Instant::now();
    for i in 0..20 {
        let body = body_string(
            pool.send(
                request(&fpm, "echo.php", "GET", &format!("i={i}")),
                std::io::empty(),
            )
            .unwrap(),
        );
        assert!(body.contains(&format!("get.i={i}\n")));
    }
    let quick = t0.elapsed();
    assert!(
        quick < Duration::from_secs(2),
        "blocked behind the stream: {quick:?}"
    );
    let s = &pool.stats()[0];
    assert_eq!((s.busy, s.connects), (1, 2), "{s:?}");
    // The stream is still going, then ends normally.
    let rest = body_string(long);
    assert!(
        rest.ends_with("late"),
        "{}",
        &rest[rest.len().saturating_sub(20)..]
    );
}

/// The lines of runs.log (written by count.php) for request `id`: one per run.
fn runs_of(fpm: &PhpFpm, id: &str) -> Vec<String> {
    std::fs::read_to_string(fpm.dir.path().join("runs.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').next() == Some(id))
        .map(str::to_string)
        .collect()
}

/// Waits (bounded) until count.php has started for `id`; returns the worker's pid.
fn wait_for_run(fpm: &PhpFpm, id: &str) -> u32 {
    let t0 = Instant::now();
    loop {
        if let Some(line) = runs_of(fpm, id).first() {
            return line.split(' ').nth(1).unwrap().parse().unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "{id} never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends a POST to count.php in a thread; `interrupt` runs once the script is running.
fn post_interrupted(
    fpm: &PhpFpm,
    pool: &Pool,
    id: &str,
    body: &'static [u8],
    interrupt: impl FnOnce(u32),
) {
    let req = request(fpm, "count.php", "POST", "ms=5000")
        .param("HTTP_X_ID", id)
        .param("CONTENT_TYPE", "application/octet-stream")
        .param("CONTENT_LENGTH", body.len().to_string());
    assert!(!req.is_idempotent());
    let sender = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.send(req, body).and_then(|r| r.finish()))
    };
    let pid = wait_for_run(fpm, id);
    interrupt(pid);
    let result = sender.join().unwrap();
    match &result {
        Err(e) => {
            assert!(e.may_have_run(), "{id}: {e}");
            assert!(!e.is_retryable(), "{id}: {e}");
            eprintln!("{id}: the caller got: {e}");
        }
        Ok(_) => eprintln!("{id}: the worker finished the request"),
    }
    // The pool serves again; by now anything it might have resent would have run.
    let t0 = Instant::now();
    loop {
        let ok = pool
            .send(request(fpm, "echo.php", "GET", ""), std::io::empty())
            .and_then(|r| r.finish())
            .is_ok();
        if ok {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "pool did not recover"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        runs_of(fpm, id).len(),
        1,
        "{id} ran twice: {:?}",
        runs_of(fpm, id)
    );
}

#[test]
fn a_post_whose_child_is_killed_or_reloaded_runs_once() {
    // The duplicate of issue 9: a POST (empty body, or not) in flight when its php-fpm
    // child dies, killed or by a reload (SIGUSR2), was sent again and ran twice.
    let Some(fpm) = PhpFpm::start("once", 2) else {
        return;
    };
    for addr in [fpm.tcp(), fpm.unix()] {
        let pool = Pool::builder().backend(Backend::new(addr.clone())).build();
        // Warm a kept connection, so that the request goes on a reused one.
        pool.send(request(&fpm, "echo.php", "GET", ""), std::io::empty())
            .unwrap()
            .finish()
            .unwrap();
        for (n, body) in [&b""[..], &b"a=1&b=2"[..]].into_iter().enumerate() {
            let id = format!("kill-{addr}-{n}");
            post_interrupted(&fpm, &pool, &id, body, |pid| {
                // SAFETY: kill(2) on a pid read from the worker's own log line.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            });
        }
    }
    let pool = Pool::builder().backend(Backend::new(fpm.tcp())).build();
    pool.send(request(&fpm, "echo.php", "GET", ""), std::io::empty())
        .unwrap()
        .finish()
        .unwrap();
    post_interrupted(&fpm, &pool, "reload", b"", |_| fpm.signal_master("USR2"));
}

#[test]
fn a_default_pool_learns_php_fpm_capacity() {
    // pm.max_children = 5 and a default pool (8 connections): 32 callers, no failure, and
    // the learned limit (5) in the stats.
    let Some(fpm) = PhpFpm::start("capacity", 5) else {
        return;
    };
    let pool = Pool::builder().backend(Backend::new(fpm.tcp())).build();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(32));
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let (pool, barrier) = (pool.clone(), barrier.clone());
            let script = fpm.script("hello.php");
            std::thread::spawn(move || {
                barrier.wait();
                let mut worst = Duration::ZERO;
                for i in 0..25 {
                    let req = FcgiRequest::new().params([
                        ("SCRIPT_FILENAME", script.as_str()),
                        ("REQUEST_METHOD", "GET"),
                        ("QUERY_STRING", ""),
                    ]);
                    let t0 = Instant::now();
                    let body = body_string(
                        pool.send(req, std::io::empty())
                            .unwrap_or_else(|e| panic!("caller {t} request {i}: {e}")),
                    );
                    worst = worst.max(t0.elapsed());
                    assert_eq!(body, "Hello, World!");
                }
                worst
            })
        })
        .collect();
    let worst = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap();
    let s = &pool.stats()[0];
    eprintln!("{s:?}; slowest request {worst:?}");
    assert_eq!(s.limit, 5, "{s:?}");
    assert!(s.unanswered >= 1, "{s:?}");
    assert!(s.busy + s.idle <= 5, "{s:?}");
}
