//! HAProxy 2.6 (the Debian package) with a `fcgi-app` in front of the `echo` example: kept
//! connections (`option keep-conn`), multiplexed connections (`option mpxs-conns`, the one
//! web server that multiplexes) and `option get-values` (the one that asks FCGI_GET_VALUES).

mod support;

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fcgi::protocol::{
    decode_record, Header, ParamsDecoder, ParamsLimits, RecordType, Status, HEADER_LEN,
};

use support::http::{self, concurrent_posts, post_echo, Echo, Request};
use support::peers::{App, Haproxy, HaproxyConf, ReservedPort};
use support::{assert_bytes_eq, connections_to, pattern, require_peer, temp_dir, wait_until, Addr};

/// HAProxy in front of an example app, torn down in this order: HAProxy, app, temp dir.
struct Stack {
    haproxy: Haproxy,
    app: App,
    _dir: tempfile::TempDir,
}

fn stack(unix: bool, env: &[(&str, &str)], tune: impl FnOnce(&mut HaproxyConf)) -> Option<Stack> {
    require_peer("haproxy")?;
    let dir = temp_dir();
    let app = if unix {
        let addr = Addr::unix_in(dir.path(), "app.sock");
        App::start("echo", dir.path(), addr, env)
    } else {
        App::start_tcp("echo", dir.path(), env)
    };
    let mut conf = HaproxyConf::new(app.addr.clone());
    tune(&mut conf);
    let haproxy = Haproxy::start(dir.path(), &conf)?;
    Some(Stack {
        haproxy,
        app,
        _dir: dir,
    })
}

/// Like [`stack`] over TCP, with a [`Tap`] between HAProxy and the app.
fn tapped_stack(env: &[(&str, &str)], tune: impl FnOnce(&mut HaproxyConf)) -> Option<(Stack, Tap)> {
    require_peer("haproxy")?;
    let dir = temp_dir();
    let app = App::start_tcp("echo", dir.path(), env);
    let tap = Tap::start(app.addr.tcp());
    let mut conf = HaproxyConf::new(Addr::Tcp(tap.addr));
    tune(&mut conf);
    let haproxy = Haproxy::start(dir.path(), &conf)?;
    let s = Stack {
        haproxy,
        app,
        _dir: dir,
    };
    Some((s, tap))
}

/// GET, POST bodies of 0 B, 1 B, 64 KiB and 8 MiB, and a 32 KiB header, through `s`.
fn exercise(s: &mut Stack) {
    let addr = s.haproxy.addr;
    let resp = http::get(addr, "/some/path?a=1&b=two").expect("GET");
    assert_eq!(
        resp.status,
        200,
        "GET: {}\n{}",
        resp.text(),
        s.haproxy.proc.log()
    );
    let ctype = resp.header("Content-Type").unwrap_or_default();
    assert!(ctype.starts_with("text/plain"), "Content-Type {ctype:?}");
    let echo = Echo::parse(&resp.body);
    echo.assert_param("REQUEST_METHOD", "GET");
    echo.assert_param("QUERY_STRING", "a=1&b=two");
    echo.assert_param("REQUEST_URI", "/some/path?a=1&b=two");
    echo.assert_param("SCRIPT_NAME", "/some/path");
    echo.assert_param("GATEWAY_INTERFACE", "CGI/1.1");
    echo.assert_param("REMOTE_ADDR", "127.0.0.1");
    assert!(echo.body.is_empty(), "GET echoed a body: {:?}", echo.body);

    for (i, len) in [0, 1, 64 * 1024, 8 * 1024 * 1024].into_iter().enumerate() {
        if let Err(e) = http::try_post_echo(addr, "/post", &pattern(len, 100 + i as u32)) {
            panic!(
                "{e}\nhaproxy log:\n{}\napp log:\n{}",
                s.haproxy.proc.log(),
                s.app.proc.log()
            );
        }
    }

    http::assert_big_header_passes(addr);
    s.app.proc.assert_running();
}

#[test]
fn echo_over_tcp() {
    let Some(mut s) = stack(false, &[], |_| {}) else {
        return;
    };
    exercise(&mut s);
}

#[test]
fn echo_over_tcp_keep_conn() {
    let Some(mut s) = stack(false, &[], |c| c.keep_conn = true) else {
        return;
    };
    exercise(&mut s);
    // HAProxy parks the connection in its idle pool and the app leaves it open.
    let port = s.app.addr.tcp().port();
    assert!(
        connections_to(port) >= 1,
        "no kept connection from HAProxy to the app"
    );
    for i in 0..5 {
        post_echo(s.haproxy.addr, "/again", &pattern(1000, i));
    }
    concurrent_posts(s.haproxy.addr, 16, Duration::from_secs(20));
}

#[test]
fn echo_over_unix_socket_keep_conn() {
    let Some(mut s) = stack(true, &[], |c| c.keep_conn = true) else {
        return;
    };
    exercise(&mut s);
    concurrent_posts(s.haproxy.addr, 16, Duration::from_secs(20));
}

/// With `option get-values` HAProxy asks the app for FCGI_MAX_REQS and FCGI_MPXS_CONNS on
/// each new connection and sends no request before the answer. A tap
/// between HAProxy and the app records the start of each connection both ways, so the test
/// sees the question on the wire and the app's answer (not just requests that work).
#[test]
fn get_values_answered() {
    let Some(_) = require_peer("haproxy") else {
        return;
    };
    let dir = temp_dir();
    let app = App::start_tcp("echo", dir.path(), &[("FCGI_WORKERS", "5")]);
    let tap = Tap::start(app.addr.tcp());
    let mut conf = HaproxyConf::new(Addr::Tcp(tap.addr));
    conf.keep_conn = true;
    conf.get_values = true;
    let Some(haproxy) = Haproxy::start(dir.path(), &conf) else {
        return;
    };
    let mut s = Stack {
        haproxy,
        app,
        _dir: dir,
    };
    exercise(&mut s);
    concurrent_posts(s.haproxy.addr, 16, Duration::from_secs(20));

    let conns = tap.conns.lock().unwrap().clone();
    assert!(!conns.is_empty(), "HAProxy never connected through the tap");
    for (i, (up, down)) in conns.iter().enumerate() {
        // HAProxy's first record on each connection: GET_VALUES (type 9, id 0) naming
        // FCGI_MAX_REQS and FCGI_MPXS_CONNS (HAProxy 2.6 does not ask FCGI_MAX_CONNS).
        let asked = first_record(up).unwrap_or_else(|| panic!("conn {i}: no record"));
        assert_eq!(
            asked.0,
            RecordType::GetValues,
            "conn {i}: HAProxy's first record"
        );
        let names: Vec<String> = pairs(&asked.1).into_iter().map(|(n, _)| n).collect();
        for want in ["FCGI_MAX_REQS", "FCGI_MPXS_CONNS"] {
            assert!(names.iter().any(|n| n == want), "conn {i}: asked {names:?}");
        }
        // Its requests come only after the answer; the app's first record is the answer
        // with the real limits (5 workers, no multiplexing).
        let answer = first_record(down).unwrap_or_else(|| panic!("conn {i}: no answer"));
        assert_eq!(
            answer.0,
            RecordType::GetValuesResult,
            "conn {i}: app's first record"
        );
        let values = pairs(&answer.1);
        let value = |n: &str| values.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(value("FCGI_MAX_REQS"), Some("5"), "conn {i}: {values:?}");
        assert_eq!(value("FCGI_MPXS_CONNS"), Some("0"), "conn {i}: {values:?}");
        // Exactly what was asked is answered (spec 4.1).
        let answered: Vec<&String> = values.iter().map(|(n, _)| n).collect();
        assert_eq!(
            answered.len(),
            names.len(),
            "conn {i}: {values:?} for {names:?}"
        );
    }
}

/// The first record in `bytes`: its type and content.
fn first_record(bytes: &[u8]) -> Option<(RecordType, Vec<u8>)> {
    match decode_record(bytes).ok()? {
        Status::Complete((rec, _)) => Some((rec.header.record_type, rec.content.to_vec())),
        Status::Partial(_) => None,
    }
}

/// The name-value pairs of a GET_VALUES(_RESULT) body.
fn pairs(body: &[u8]) -> Vec<(String, String)> {
    let mut d = ParamsDecoder::new(ParamsLimits::default());
    d.feed(body).expect("name-value pairs");
    d.finish()
        .expect("complete pairs")
        .iter()
        .map(|p| {
            (
                String::from_utf8_lossy(p.name).into_owned(),
                String::from_utf8_lossy(p.value).into_owned(),
            )
        })
        .collect()
}

/// Bytes kept from the start of each direction of a tapped connection.
const TAP_KEEP: usize = 4096;

/// Per tapped connection: the first bytes (HAProxy to app, app to HAProxy).
type Taps = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

/// A TCP relay that records the first [`TAP_KEEP`] bytes each way of every connection,
/// and counts the FCGI_BEGIN_REQUEST records HAProxy sends through it.
struct Tap {
    addr: std::net::SocketAddr,
    conns: Taps,
    begun: Arc<AtomicUsize>,
}

impl Tap {
    fn start(upstream: std::net::SocketAddr) -> Tap {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let conns: Taps = Arc::default();
        let all = Arc::clone(&conns);
        let begun = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&begun);
        // Ends with the test process (it only ever waits in accept).
        thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let slot = {
                    let mut all = all.lock().unwrap();
                    all.push((Vec::new(), Vec::new()));
                    all.len() - 1
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let a = Arc::clone(&all);
                let n = Arc::clone(&counter);
                thread::spawn(move || pump(client, server, &a, slot, Some(&n)));
                let a = Arc::clone(&all);
                thread::spawn(move || pump(s2, c2, &a, slot, None));
            }
        });
        Tap { addr, conns, begun }
    }

    /// How many FCGI_BEGIN_REQUEST records HAProxy has sent through the tap so far (each
    /// counted once it has been passed on to the app).
    fn begun(&self) -> usize {
        self.begun.load(Ordering::SeqCst)
    }
}

/// Follows a stream of FastCGI records piece by piece, counting FCGI_BEGIN_REQUESTs.
#[derive(Default)]
struct RecordScan {
    head: [u8; HEADER_LEN],
    have: usize,
    skip: usize,
}

impl RecordScan {
    /// Takes the next bytes of the stream; answers how many BEGIN_REQUEST records start in
    /// them.
    fn feed(&mut self, mut bytes: &[u8]) -> usize {
        let mut begins = 0;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(bytes.len());
                self.skip -= k;
                bytes = &bytes[k..];
                continue;
            }
            let k = (HEADER_LEN - self.have).min(bytes.len());
            self.head[self.have..self.have + k].copy_from_slice(&bytes[..k]);
            self.have += k;
            bytes = &bytes[k..];
            if self.have == HEADER_LEN {
                let h = Header::decode(&self.head).expect("HAProxy sent a bad record header");
                if h.record_type == RecordType::BeginRequest {
                    begins += 1;
                }
                self.skip = h.record_len() - HEADER_LEN;
                self.have = 0;
            }
        }
        begins
    }
}

/// Copies `from` to `to` until EOF (then half-closes `to`), keeping the first bytes. The
/// upstream direction (HAProxy to app) has `begun`: BEGIN_REQUEST records are counted there
/// once written on to the app.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    all: &Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    slot: usize,
    begun: Option<&AtomicUsize>,
) {
    use std::io::Read;
    let upstream = begun.is_some();
    let mut scan = RecordScan::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut all = all.lock().unwrap();
            let kept = if upstream {
                &mut all[slot].0
            } else {
                &mut all[slot].1
            };
            let room = TAP_KEEP.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(begun) = begun {
            begun.fetch_add(scan.feed(&buf[..n]), Ordering::SeqCst);
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Opens `n` requests at once and keeps them open: each upload is held part-sent until all
/// are under way, then finished; every answer must match its own request. Answers how many
/// connections HAProxy had open to the app (through `tap`) while the requests were held.
fn hold_requests(s: &Stack, tap: &Tap, n: usize) -> usize {
    // HAProxy 2.6 holds a request back until its body is complete or fills a buffer
    // (tune.bufsize): only more than 65528 bytes make it open the request in the app.
    const BODY: usize = 100_000;
    const SENT: usize = 70_000;
    let addr = s.haproxy.addr;
    let before = tap.begun();
    let mut held = Vec::new();
    for i in 0..n {
        let body = pattern(BODY, 1000 + i as u32);
        let path = format!("/held?i={i}");
        let head = http::encode_head(
            addr,
            &Request {
                method: "POST",
                path: &path,
                body: Some(&body),
                ..Request::default()
            },
        );
        let mut conn = http::connect(addr).expect("connect");
        conn.write_all(&head).expect("send head");
        conn.write_all(&body[..SENT]).expect("send start of body");
        held.push((conn, body));
    }
    // Wait until HAProxy has passed every one of them on to the app (its BEGIN_REQUEST has
    // gone through the tap). None can finish while its body is held, so from then on the
    // connections carrying them stay open and no more are needed.
    let passed = || tap.begun() - before;
    assert!(
        wait_until(Duration::from_secs(20), || passed() >= n),
        "HAProxy passed on {} of {n} held requests\nHAProxy log:\n{}\napp log:\n{}",
        passed(),
        s.haproxy.proc.log(),
        s.app.proc.log()
    );
    let open = connections_to(tap.addr.port());
    support::shout(&format!(
        "haproxy: {n} requests open at once used {open} connections to the app"
    ));
    for (conn, body) in &mut held {
        conn.write_all(&body[SENT..]).expect("send rest of body");
    }
    for (i, (conn, body)) in held.into_iter().enumerate() {
        let resp = http::read_response(&mut BufReader::new(conn), false)
            .unwrap_or_else(|e| panic!("held request {i}: {e}\n{}", s.haproxy.proc.log()));
        assert_eq!(
            resp.status,
            200,
            "held request {i}: {}\nHAProxy log:\n{}\napp log:\n{}",
            resp.text(),
            s.haproxy.proc.log(),
            s.app.proc.log()
        );
        let echo = Echo::parse(&resp.body);
        echo.assert_param("QUERY_STRING", &format!("i={i}"));
        assert_bytes_eq(&echo.body, &body, &format!("held request {i}"));
    }
    open
}

/// Multiplexing: the app announces FCGI_MPXS_CONNS=1 and HAProxy puts up to 8 requests on
/// one connection, their records interleaved.
///
/// 16 requests held open at once fit on 2 connections (more if the app announces a lower
/// FCGI_MAX_REQS), not multiplexed they need 16; a tap between HAProxy and the app shows
/// when all 16 have reached the app. Then bursts of concurrent requests, and the whole
/// GET/POST/header round.
#[test]
fn mpxs_conns_concurrent_requests() {
    let env = [("FCGI_MPXS_CONNS", "1"), ("FCGI_WORKERS", "16")];
    let Some((mut s, tap)) = tapped_stack(&env, |c| {
        c.keep_conn = true;
        c.get_values = true;
        c.mpxs = Some(8);
    }) else {
        return;
    };
    let open = hold_requests(&s, &tap, 16);
    assert!(
        (1..=8).contains(&open),
        "{open} connections HAProxy -> app for 16 open requests: not multiplexed"
    );
    for _ in 0..2 {
        concurrent_posts(s.haproxy.addr, 48, Duration::from_secs(30));
    }
    exercise(&mut s);
    s.app.proc.assert_running();
}

/// Clients take a few KiB of an 8 MiB answer and hang up, more of them than the app has
/// workers. HAProxy then aborts the request towards the app (FCGI_ABORT_REQUEST, or by
/// closing the connection); the app must free the worker, and on a multiplexed connection
/// keep serving the other requests on it.
fn abandon_then_serve(s: &mut Stack) {
    let addr = s.haproxy.addr;
    let body = pattern(8 * 1024 * 1024, 9);
    for i in 0..5 {
        if let Err(e) = http::try_abandon_mid_response(addr, "/abandon", &body) {
            panic!(
                "abandoned request {i}: {e}\nHAProxy log:\n{}\napp log:\n{}",
                s.haproxy.proc.log(),
                s.app.proc.log()
            );
        }
    }
    let start = Instant::now();
    for i in 0..4 {
        post_echo(addr, "/after", &pattern(10_000, i));
    }
    concurrent_posts(addr, 8, Duration::from_secs(20));
    assert!(start.elapsed() < Duration::from_secs(20));
    s.app.proc.assert_running();
    // HAProxy logged the client-side aborts ("CD": client disconnected during data).
    assert!(
        support::wait_until(Duration::from_secs(5), || s
            .haproxy
            .proc
            .log()
            .contains(" CD")),
        "HAProxy never saw a client leave mid-response:\n{}",
        s.haproxy.proc.log()
    );
}

#[test]
fn client_disconnect_mid_response_keep_conn() {
    let env = [("FCGI_WORKERS", "2")];
    let Some(mut s) = stack(false, &env, |c| {
        c.keep_conn = true;
        c.client_sndbuf = Some(32 * 1024);
    }) else {
        return;
    };
    abandon_then_serve(&mut s);
}

#[test]
fn client_disconnect_mid_response_mpxs_conns() {
    let env = [("FCGI_MPXS_CONNS", "1"), ("FCGI_WORKERS", "2")];
    let Some(mut s) = stack(false, &env, |c| {
        c.keep_conn = true;
        c.get_values = true;
        c.mpxs = Some(8);
        c.client_sndbuf = Some(32 * 1024);
    }) else {
        return;
    };
    abandon_then_serve(&mut s);
}

/// The harness itself, without any app: HAProxy answers 503 when its only server is down.
#[test]
fn harness_haproxy_dead_upstream() {
    if require_peer("haproxy").is_none() {
        return;
    }
    let dir = temp_dir();
    // Held for the whole test, so that no other test's server can take the port.
    let dead = ReservedPort::new();
    let Some(haproxy) = Haproxy::start(dir.path(), &HaproxyConf::new(Addr::Tcp(dead.addr))) else {
        return;
    };
    let resp = http::get(haproxy.addr, "/app").expect("GET dead upstream");
    assert_eq!(resp.status, 503, "{}", resp.text());
}
