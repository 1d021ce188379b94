//! Debian's `cgi-fcgi` (libfcgi-bin), the classic library's own client, against the
//! examples: a third FastCGI implementation that is not a web server. It sends its whole
//! environment as params, copies CONTENT_LENGTH bytes of stdin, prints the CGI response and
//! exits with the app status.

mod support;

use std::time::Duration;

use support::http::Echo;
use support::peers::{cgi_fcgi, App};
use support::{assert_bytes_eq, pattern, require_peer, temp_dir, Addr};

const TIMEOUT: Duration = Duration::from_secs(30);

fn post_env(len: usize) -> Vec<(&'static str, String)> {
    vec![
        ("REQUEST_METHOD", "POST".to_string()),
        ("CONTENT_LENGTH", len.to_string()),
        ("CONTENT_TYPE", "application/octet-stream".to_string()),
        ("QUERY_STRING", "from=cgi-fcgi".to_string()),
        ("SCRIPT_NAME", "/echo".to_string()),
        ("SERVER_PROTOCOL", "HTTP/1.1".to_string()),
        ("GATEWAY_INTERFACE", "CGI/1.1".to_string()),
    ]
}

/// POSTs `len` bytes to echo at `addr` through cgi-fcgi and checks the whole exchange.
fn echo_through_cgi_fcgi(addr: &Addr, len: usize) -> Option<()> {
    let body = pattern(len, len as u32);
    let env = post_env(len);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let out = cgi_fcgi(addr, &env_refs, &body, TIMEOUT)?;
    assert!(
        out.status.success(),
        "cgi-fcgi exit {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (headers, response) = out.split();
    assert!(
        headers.iter().any(|h| h
            .to_ascii_lowercase()
            .starts_with("content-type: text/plain")),
        "headers {headers:?}"
    );
    let echo = Echo::parse(&response);
    // `env -i`: the params are exactly the environment given, nothing more.
    let mut got = echo.params.clone();
    got.sort();
    let mut want: Vec<(String, String)> = env
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    want.sort();
    assert_eq!(got, want, "params for a {len} B body");
    assert_bytes_eq(&echo.body, &body, &format!("echoed body of {len} B"));
    Some(())
}

#[test]
fn echo_over_tcp_bodies() {
    if require_peer("cgi-fcgi").is_none() {
        return;
    }
    let dir = temp_dir();
    let mut app = App::start("echo", dir.path(), Addr::free_tcp(), &[]);
    for len in [0, 1, 64 * 1024, 1024 * 1024 + 7] {
        echo_through_cgi_fcgi(&app.addr, len);
    }
    app.proc.assert_running();
}

#[test]
fn echo_over_unix_socket() {
    if require_peer("cgi-fcgi").is_none() {
        return;
    }
    let dir = temp_dir();
    let addr = Addr::unix_in(dir.path(), "echo.sock");
    let mut app = App::start("echo", dir.path(), addr, &[]);
    for len in [0, 100_000] {
        echo_through_cgi_fcgi(&app.addr, len);
    }
    app.proc.assert_running();
}

#[test]
fn hello() {
    if require_peer("cgi-fcgi").is_none() {
        return;
    }
    let dir = temp_dir();
    let app = App::start("hello", dir.path(), Addr::free_tcp(), &[]);
    for _ in 0..3 {
        let env = [("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", "/hello")];
        let Some(out) = cgi_fcgi(&app.addr, &env, b"", TIMEOUT) else {
            return;
        };
        assert!(out.status.success(), "cgi-fcgi exit {:?}", out.status);
        let (headers, body) = out.split();
        assert!(
            headers.iter().any(|h| h
                .to_ascii_lowercase()
                .starts_with("content-type: text/plain")),
            "headers {headers:?}"
        );
        assert_eq!(String::from_utf8_lossy(&body), "Hello, World!");
    }
}

/// The harness itself: cgi-fcgi fails (non-zero exit, promptly) when nothing listens.
#[test]
fn harness_cgi_fcgi_dead_port_fails() {
    let env = [("REQUEST_METHOD", "GET")];
    let Some(out) = cgi_fcgi(&Addr::free_tcp(), &env, b"", TIMEOUT) else {
        return;
    };
    assert!(!out.status.success(), "cgi-fcgi succeeded with no app");
}

/// The harness itself: a missing peer skips the test (`None`), or fails it when peers are
/// required (CI=true or FCGI_REQUIRE_PEERS=1).
#[test]
fn harness_missing_peer_skips_or_fails() {
    let found = std::panic::catch_unwind(|| require_peer("no-such-peer-for-fcgi-tests"));
    if support::peers_required() {
        assert!(found.is_err(), "a missing peer must fail under CI");
    } else {
        assert_eq!(found.ok(), Some(None), "a missing peer must skip");
    }
}
