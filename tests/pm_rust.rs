//! The Rust side of process management: a Rust `Server` offers php-fpm's status document
//! (workers instead of processes) on a path and on a listener of its own; and a Rust
//! server started by `fcgi-pm` reports through the scoreboard and stops cleanly after
//! `pm.max_requests`.

mod support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use fcgi::pm::endpoint::{serve_status_on, with_status, Paths};
use support::peers::example_path;
use support::pm::{self, get, page, Json, Pm};
use support::{temp_dir, wait_until, Addr};

const T: Duration = Duration::from_secs(20);

#[test]
fn a_rust_server_answers_the_status_document_on_a_path_and_on_its_own_listener() {
    let mut config = fcgi::server::Config::default();
    config.workers = 2;
    config.handle_signals = false;
    // Both listeners on port 0: a port picked beforehand may be taken meanwhile.
    let server = fcgi::Server::bind("127.0.0.1:0")
        .unwrap()
        .config_with(config);
    let side_listener = fcgi::server::Listener::bind("127.0.0.1:0").unwrap();
    let listen = Addr::Tcp(server.local_addrs()[0].parse().unwrap());
    let side = Addr::Tcp(side_listener.local_addr().unwrap().parse().unwrap());
    let stats = server.stats_handle();
    let stop = server.shutdown_handle();
    let _side = serve_status_on(
        side_listener,
        "app",
        Paths::new("/status", "/ping"),
        stats.clone(),
    )
    .unwrap();
    let gate = Arc::new(Barrier::new(2));
    let g = Arc::clone(&gate);
    let app = thread::spawn(move || {
        server.serve(with_status(
            "app",
            Paths::new("/status", "/ping"),
            stats,
            move |req| {
                if req.param("QUERY_STRING") == Some("hold") {
                    g.wait();
                    g.wait();
                }
                req.respond(200, &[("Content-Type", "text/plain")], b"app")
            },
        ))
    });
    assert!(support::wait_accepts(&listen, T) && support::wait_accepts(&side, T));

    // On the application's own socket, by path.
    let (code, ctype, body) = page(&listen, "/status", "json").unwrap();
    assert_eq!((code, ctype.as_str()), (200, "application/json"));
    let j = Json::parse(&body).unwrap();
    assert_eq!(j.str("pool"), "app");
    assert_eq!(j.num("idle workers") + j.num("active workers"), 2);
    assert_eq!(j.num("total workers"), 2);
    let (_, _, pong) = page(&listen, "/ping", "").unwrap();
    assert_eq!(pong, "pong");

    // Hold one worker: the side listener sees it busy.
    let a = listen.clone();
    let held = thread::spawn(move || get(&a, "hold", T));
    gate.wait();
    let ok = wait_until(T, || {
        let (_, _, b) = page(&side, "/status", "json").unwrap();
        Json::parse(&b).unwrap().num("active workers") == 1
    });
    assert!(ok);
    let (_, _, text) = page(&side, "/status", "").unwrap();
    assert!(text.contains("active workers:       1\n"), "{text}");
    let (_, _, metrics) = page(&side, "/status", "openmetrics").unwrap();
    assert!(
        metrics.contains("fcgi_active_workers{pool=\"app\"} 1\n"),
        "{metrics}"
    );
    gate.wait();
    assert_eq!(held.join().unwrap().unwrap().status, 200);
    let (code, _, _) = page(&side, "/other", "").unwrap();
    assert_eq!(code, 404);
    stop.shutdown();
    app.join().unwrap().unwrap();
}

#[test]
fn a_rust_server_under_fcgi_pm_reports_and_stops_after_max_requests() {
    let dir = temp_dir();
    let listen = Addr::free_tcp();
    let status = Addr::free_tcp();
    let conf = format!(
        "[www]\nlisten = {listen}\ncommand = {}\npm = static\npm.max_children = 1\npm.max_requests = 5\n\
         pm.status_path = /status\npm.status_listen = {status}\n",
        example_path("hello").display()
    );
    let m = Pm::start(dir.path(), &conf, listen.clone());
    let first = m.wait_children(1, T);
    for i in 0..20 {
        let r = get(&listen, &format!("i={i}"), T)
            .unwrap_or_else(|e| panic!("request {i}: {e}\n{}", m.proc.log()));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Hello, World!");
    }
    // Each child served its 5 and left on its own, with exit code 0.
    assert!(
        wait_until(T, || m.proc.log().matches("exited with code 0").count()
            >= 3),
        "{}",
        m.proc.log()
    );
    assert!(!m.children().contains(&first[0]));
    let j = pm::wait_status(&status, T, |j| j.num("accepted conn") == 20);
    assert_eq!(j.num("accepted conn"), 20, "{j:?}");
}
