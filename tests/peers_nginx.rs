//! nginx (the Debian package) in front of the `echo` example: over TCP and a Unix socket,
//! with and without kept-alive upstream connections, bodies from 0 B to 8 MiB, a 32 KiB
//! header, 200 concurrent requests on a pool of 4 workers, and clients that go away
//! mid-response.

mod support;

use std::time::{Duration, Instant};

use support::http::{self, concurrent_posts, post_echo, Echo};
use support::peers::{App, Nginx, NginxConf, ReservedPort};
use support::{connections_to, pattern, require_peer, temp_dir, Addr};

/// nginx in front of an example app, torn down in this order: nginx, app, temp dir.
struct Stack {
    nginx: Nginx,
    app: App,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Tcp,
    Tcp6,
    Unix,
}

fn stack(
    app: &str,
    via: Via,
    env: &[(&str, &str)],
    tune: impl FnOnce(&mut NginxConf),
) -> Option<Stack> {
    require_peer("nginx")?;
    let dir = temp_dir();
    let app = match via {
        // The app's socket is made by the test and inherited: never a port found free.
        Via::Tcp => App::start_tcp(app, dir.path(), env),
        Via::Tcp6 => App::start(app, dir.path(), Addr::free_tcp6()?, env),
        Via::Unix => App::start(app, dir.path(), Addr::unix_in(dir.path(), "app.sock"), env),
    };
    let mut conf = NginxConf::new(app.addr.clone());
    tune(&mut conf);
    let nginx = Nginx::start(dir.path(), &conf)?;
    Some(Stack {
        nginx,
        app,
        _dir: dir,
    })
}

/// GET, POST bodies of 0 B, 1 B, 64 KiB and 8 MiB, and a 32 KiB header, through `s`.
fn exercise(s: &mut Stack) {
    let addr = s.nginx.addr;

    let resp = http::get(addr, "/some/path?a=1&b=two").expect("GET");
    assert_eq!(
        resp.status,
        200,
        "GET: {}\n{}",
        resp.text(),
        s.nginx.proc.log()
    );
    let ctype = resp.header("Content-Type").unwrap_or_default();
    assert!(ctype.starts_with("text/plain"), "Content-Type {ctype:?}");
    Echo::parse(&resp.body).assert_nginx_get(addr.port());

    // Seen with nginx 1.22: once the app has started answering, nginx does not reliably
    // send the rest of the request body. An echo that copies stdin to stdout as it reads
    // stalled after about 3.9 MB of the 8 MiB (socket queues empty both ways, the app
    // waiting for stdin) until fastcgi_read_timeout cut it off. Reading all of stdin before
    // answering works. HAProxy and cgi-fcgi keep sending.
    for (i, len) in [0, 1, 64 * 1024, 8 * 1024 * 1024].into_iter().enumerate() {
        if let Err(e) = http::try_post_echo(addr, "/post", &pattern(len, i as u32)) {
            panic!(
                "{e}\nnginx log:\n{}\napp log:\n{}",
                s.nginx.proc.log(),
                s.app.proc.log()
            );
        }
    }

    http::assert_big_header_passes(addr);

    s.app.proc.assert_running();
}

#[test]
fn echo_over_tcp() {
    let Some(mut s) = stack("echo", Via::Tcp, &[], |_| {}) else {
        return;
    };
    exercise(&mut s);
    let port = s.app.addr.tcp().port();
    // Without keep-conn nginx closes its connection to the app after every request.
    assert!(
        support::wait_until(Duration::from_secs(5), || connections_to(port) == 0),
        "{} connections to the app still open without keep-alive",
        connections_to(port)
    );
}

#[test]
fn echo_over_tcp_keep_conn() {
    let Some(mut s) = stack("echo", Via::Tcp, &[], |c| c.keepalive = Some(8)) else {
        return;
    };
    exercise(&mut s);
    // Sequential requests through a keep-alive pool reuse one connection, and the app
    // leaves it open between requests.
    let port = s.app.addr.tcp().port();
    let open = connections_to(port);
    assert_eq!(
        open, 1,
        "expected exactly one kept-alive connection from nginx to the app"
    );
    for i in 0..5 {
        post_echo(s.nginx.addr, "/again", &pattern(100, i));
    }
    assert_eq!(
        connections_to(port),
        1,
        "kept-alive connection was not reused"
    );
}

/// The app listening on `[::1]:port`, nginx connecting over IPv6.
#[test]
fn echo_over_ipv6() {
    let Some(mut s) = stack("echo", Via::Tcp6, &[], |_| {}) else {
        return;
    };
    exercise(&mut s);
}

#[test]
fn echo_over_unix_socket() {
    let Some(mut s) = stack("echo", Via::Unix, &[], |_| {}) else {
        return;
    };
    exercise(&mut s);
}

#[test]
fn echo_over_unix_socket_keep_conn() {
    let Some(mut s) = stack("echo", Via::Unix, &[], |c| c.keepalive = Some(8)) else {
        return;
    };
    exercise(&mut s);
    for i in 0..5 {
        post_echo(s.nginx.addr, "/again", &pattern(100, i));
    }
}

/// The classic libraries (libfcgi, PHP-FPM) stall here: nginx's keep-alive pool holds more
/// idle connections than the app has workers. A pool of 4 must still answer everyone.
#[test]
fn two_hundred_concurrent_requests_with_four_workers_and_keepalive_pool() {
    const WORKERS: usize = 4;
    const POOL: usize = 16;
    let env = [("FCGI_WORKERS", "4"), ("FCGI_MAX_QUEUE", "256")];
    let Some(mut s) = stack("echo", Via::Tcp, &env, |c| c.keepalive = Some(POOL as u32)) else {
        return;
    };
    // Fill nginx's pool with more idle kept connections than there are workers. A burst
    // opens only as many connections as nginx has requests to the app in flight at once,
    // which a quick app can keep to a handful: repeat it until the pool holds enough (it
    // only grows, the app keeps them open).
    let port = s.app.addr.tcp().port();
    for burst in 1.. {
        concurrent_posts(s.nginx.addr, 32, Duration::from_secs(30));
        // Every answer is in, so each connection nginx still has open to the app is idle;
        // wait until they all fit in its pool (it closes the ones there is no room for).
        assert!(
            support::wait_until(Duration::from_secs(10), || connections_to(port) <= POOL),
            "{} connections from nginx to the app, more than its pool of {POOL}",
            connections_to(port)
        );
        let pooled = connections_to(port);
        if pooled > WORKERS {
            break;
        }
        if burst == 20 {
            // How many connections nginx opens depends on how its requests overlap, which
            // the machine decides (about one run in 25 stays at the workers' number): say
            // so, and run the rest, which must pass either way.
            support::shout(&format!(
                "nginx keeps only {pooled} idle connections to the app after {burst} bursts, \
                 not more than its {WORKERS} workers: the stall this test looks for is not set up"
            ));
            break;
        }
    }
    concurrent_posts(s.nginx.addr, 200, Duration::from_secs(45));
    // And the idle pool must not block sequential requests afterwards.
    for i in 0..8 {
        post_echo(s.nginx.addr, "/after", &pattern(1000, i));
    }
    s.app.proc.assert_running();
}

/// A client takes a few KiB of an 8 MiB answer and hangs up; nginx (unbuffered) then drops
/// its connection to the app mid-response. The app must free the worker and keep serving.
#[test]
fn client_disconnect_mid_response_leaves_app_serving() {
    let env = [("FCGI_WORKERS", "2")];
    let Some(mut s) = stack("echo", Via::Tcp, &env, |c| {
        c.keepalive = Some(4);
        c.buffering = false;
        c.client_sndbuf = Some(32 * 1024);
    }) else {
        return;
    };
    let addr = s.nginx.addr;
    let body = pattern(8 * 1024 * 1024, 7);
    // More abandoned requests than workers: a leaked worker would stall what follows.
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
    // nginx logged each abandoned answer as incomplete, cut short of the 8 MiB: the clients
    // really left mid-response. (Its error log does not always say so.)
    let abandoned = |log: &str| {
        log.lines()
            .filter(|l| l.contains("/abandon ") && l.contains("completion= "))
            .filter(|l| {
                let sent: usize = l
                    .split(' ')
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                sent < body.len()
            })
            .count()
    };
    assert!(
        support::wait_until(Duration::from_secs(5), || abandoned(&s.nginx.access_log())
            == 5),
        "expected 5 requests cut short in the access log:\n{}",
        s.nginx.access_log()
    );
    let log = s.nginx.error_log();
    assert!(
        !log.contains("[emerg]") && !log.contains("[alert]"),
        "nginx error log:\n{log}"
    );
}

/// The `hello` example through a keep-alive pool: the same answer, request after request,
/// on one kept connection.
#[test]
fn hello_keep_conn() {
    let Some(s) = stack("hello", Via::Tcp, &[], |c| c.keepalive = Some(4)) else {
        return;
    };
    for _ in 0..10 {
        let resp = http::get(s.nginx.addr, "/hello").expect("GET /hello");
        assert_eq!(resp.status, 200, "{}", resp.text());
        let ctype = resp.header("Content-Type").unwrap_or_default();
        assert!(ctype.starts_with("text/plain"), "Content-Type {ctype:?}");
        assert_eq!(resp.text(), "Hello, World!");
    }
    assert_eq!(connections_to(s.app.addr.tcp().port()), 1);
}

/// The harness itself, without any app: nginx serves a static file from its root and
/// answers 502 when nothing listens upstream.
#[test]
fn harness_nginx_static_file_and_dead_upstream() {
    if require_peer("nginx").is_none() {
        return;
    }
    let dir = temp_dir();
    // Held for the whole test, so that no other test's server can take the port.
    let dead = ReservedPort::new();
    let Some(nginx) = Nginx::start(dir.path(), &NginxConf::new(Addr::Tcp(dead.addr))) else {
        return;
    };
    std::fs::write(nginx.root.join("static/hello.txt"), b"static hello\n").unwrap();
    let resp = http::get(nginx.addr, "/static/hello.txt").expect("GET static");
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"static hello\n"[..])
    );
    let resp = http::get(nginx.addr, "/app").expect("GET dead upstream");
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert!(
        support::wait_until(Duration::from_secs(5), || nginx
            .error_log()
            .contains("connect() failed")),
        "error log:\n{}",
        nginx.error_log()
    );
}
