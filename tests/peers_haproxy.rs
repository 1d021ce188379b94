//! HAProxy 2.6 (the Debian package) with a `fcgi-app` in front of the `echo` example: kept
//! connections (`option keep-conn`), multiplexed connections (`option mpxs-conns`, the one
//! web server that multiplexes) and `option get-values` (the one that asks FCGI_GET_VALUES).

mod support;

use std::io::{BufReader, Write};
use std::thread;
use std::time::{Duration, Instant};

use support::http::{self, concurrent_posts, post_echo, Echo, Request};
use support::peers::{App, Haproxy, HaproxyConf};
use support::{assert_bytes_eq, connections_to, pattern, require_peer, temp_dir, Addr};

/// HAProxy in front of an example app, torn down in this order: HAProxy, app, temp dir.
struct Stack {
    haproxy: Haproxy,
    app: App,
    _dir: tempfile::TempDir,
}

fn stack(unix: bool, env: &[(&str, &str)], tune: impl FnOnce(&mut HaproxyConf)) -> Option<Stack> {
    require_peer("haproxy")?;
    let dir = temp_dir();
    let addr = if unix {
        Addr::unix_in(dir.path(), "app.sock")
    } else {
        Addr::free_tcp()
    };
    let app = App::start("echo", dir.path(), addr.clone(), env);
    let mut conf = HaproxyConf::new(addr);
    tune(&mut conf);
    let haproxy = Haproxy::start(dir.path(), &conf)?;
    Some(Stack {
        haproxy,
        app,
        _dir: dir,
    })
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

    let big = "y".repeat(32 * 1024);
    let resp = http::send(
        addr,
        &Request {
            method: "GET",
            path: "/big-header",
            headers: vec![("X-Big-Header", big.clone()), ("X-After", "after".into())],
            body: None,
        },
    )
    .expect("GET with a 32 KiB header");
    assert_eq!(resp.status, 200, "32 KiB header: {}", resp.text());
    let echo = Echo::parse(&resp.body);
    assert_eq!(
        echo.param("HTTP_X_BIG_HEADER").map(str::len),
        Some(big.len())
    );
    echo.assert_param("HTTP_X_BIG_HEADER", &big);
    echo.assert_param("HTTP_X_AFTER", "after");
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

/// With `option get-values` HAProxy asks the app for FCGI_MAX_CONNS, FCGI_MAX_REQS and
/// FCGI_MPXS_CONNS on each new connection and sends no request before the answer: an app
/// that does not answer GET_VALUES never serves a request here.
#[test]
fn get_values_answered() {
    let Some(mut s) = stack(false, &[], |c| {
        c.keep_conn = true;
        c.get_values = true;
    }) else {
        return;
    };
    exercise(&mut s);
    concurrent_posts(s.haproxy.addr, 16, Duration::from_secs(20));
}

/// Opens `n` requests at once and keeps them open: each upload is held part-sent until all
/// are under way, then finished; every answer must match its own request. Answers how many
/// connections HAProxy had open to the app while the requests were held.
fn hold_requests(s: &Stack, n: usize) -> usize {
    // HAProxy 2.6 holds a request back until its body is complete or fills a buffer
    // (tune.bufsize): only more than 65528 bytes make it open the request in the app.
    const BODY: usize = 100_000;
    const SENT: usize = 70_000;
    let addr = s.haproxy.addr;
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
    // Give HAProxy a moment to pass them all on.
    thread::sleep(Duration::from_millis(1000));
    let open = connections_to(s.app.addr.tcp().port());
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
/// FCGI_MAX_REQS), not multiplexed they need 16. Then bursts of concurrent requests, and
/// the whole GET/POST/header round.
#[test]
fn mpxs_conns_concurrent_requests() {
    let env = [("FCGI_MPXS_CONNS", "1"), ("FCGI_WORKERS", "16")];
    let Some(mut s) = stack(false, &env, |c| {
        c.keep_conn = true;
        c.get_values = true;
        c.mpxs = Some(8);
    }) else {
        return;
    };
    let open = hold_requests(&s, 16);
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
    for _ in 0..5 {
        http::abandon_mid_response(addr, "/abandon", &body);
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
    let Some(haproxy) = Haproxy::start(dir.path(), &HaproxyConf::new(Addr::free_tcp())) else {
        return;
    };
    let resp = http::get(haproxy.addr, "/app").expect("GET dead upstream");
    assert_eq!(resp.status, 503, "{}", resp.text());
}
