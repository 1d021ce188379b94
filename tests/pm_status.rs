//! The status and ping pages `fcgi-pm` answers itself on `pm.status_listen`: php-fpm's
//! field names in every format, the scoreboard's view of children on our library, listen
//! queues from the kernel (TCP and Unix), OpenMetrics accepted by `promtool`, and ping
//! while every child is busy.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::pm::{self, get, page, wait_status, App, Lib, Pm};
use support::{require_peer, temp_dir, Addr};

const T: Duration = Duration::from_secs(20);

const POOL_FIELDS: [&str; 14] = [
    "pool",
    "process manager",
    "start time",
    "start since",
    "accepted conn",
    "listen queue",
    "max listen queue",
    "listen queue len",
    "idle processes",
    "active processes",
    "total processes",
    "max active processes",
    "max children reached",
    "slow requests",
];

#[test]
fn status_formats_queues_and_ping_while_every_child_is_busy() {
    let dir = temp_dir();
    let Some(ours) = App::build(dir.path(), Lib::Ours, "pm status") else {
        return;
    };
    let Some(classic) = App::build(dir.path(), Lib::Classic, "pm status") else {
        return;
    };
    let listen = Addr::free_tcp();
    let uds = Addr::unix_in(dir.path(), "uds.sock");
    let status = Addr::free_tcp();
    let sb = Addr::free_tcp();
    let conf = format!(
        "{}{}{}",
        pm::pool(
            "www",
            &listen,
            &classic,
            &format!(
                "pm = static\npm.max_children = 2\nlisten.backlog = 64\npm.status_path = /status\n\
                 ping.path = /ping\nping.response = alive\npm.status_listen = {status}\n\
                 request_slowlog_timeout = 1s\nslowlog = {}/www.slow\n",
                dir.path().display()
            )
        ),
        pm::pool(
            "uds",
            &uds,
            &classic,
            &format!(
                "pm = static\npm.max_children = 1\nlisten.backlog = 32\npm.status_path = /status-uds\n\
                 pm.status_listen = {status}\n"
            )
        ),
        pm::pool(
            "sb",
            &sb,
            &ours,
            &format!(
                "pm = static\npm.max_children = 1\npm.status_path = /status-sb\npm.status_listen = {status}\n\
                 request_slowlog_timeout = 500ms\nslowlog = {}/sb.slow\n",
                dir.path().display()
            )
        ),
    );
    let m = Pm::start(dir.path(), &conf, listen.clone());
    m.wait_children(4, T);
    support::wait_accepts(&status, T);

    // Idle pool: every field with php-fpm's name.
    let j = wait_status(&status, T, |j| j.num("total processes") == 2);
    for f in POOL_FIELDS {
        j.get(f);
    }
    assert_eq!(j.str("pool"), "www");
    assert_eq!(j.str("process manager"), "static");
    assert_eq!(j.num("listen queue len"), 64);
    assert_eq!(j.num("total processes"), 2);

    // Both children busy with a slow request, three more waiting in the listen queue.
    let busy: Vec<_> = (0..5)
        .map(|i| {
            let a = listen.clone();
            thread::spawn(move || get(&a, &format!("sleep=1500&n={i}"), T))
        })
        .collect();
    let j = wait_status(&status, T, |j| {
        j.num("active processes") == 2 && j.num("listen queue") == 3
    });
    assert_eq!(j.num("active processes"), 2, "{j:?}");
    assert_eq!(j.num("idle processes"), 0);
    assert_eq!(
        j.num("listen queue"),
        3,
        "three requests wait in the kernel's queue: {j:?}"
    );
    assert!(j.num("max listen queue") >= 3);
    let procs = j.arr("processes");
    assert_eq!(procs.len(), 2);
    for p in &procs {
        assert_eq!(
            p.str("state"),
            "Running",
            "seen in the kernel's socket tables: {p:?}"
        );
    }
    // The scoreboard of a child on our library: the running request itself.
    let sb_client = {
        let a = sb.clone();
        thread::spawn(move || get(&a, "sleep=1000&who=sb", T))
    };
    let mut last = String::new();
    let ok = support::wait_until(T, || {
        let (_, _, b) = page(&status, "/status-sb", "json&full").unwrap();
        last = b;
        last.contains("\"state\":\"Running\"")
    });
    assert!(ok, "{last}");
    let j = pm::Json::parse(&last).unwrap();
    let p = &j.arr("processes")[0];
    assert_eq!(p.str("request method"), "GET");
    assert_eq!(p.str("request uri"), "/app?sleep=1000&who=sb");
    assert_eq!(p.str("script"), "/srv/app");
    assert_eq!(p.num("requests"), 1);
    assert_eq!(sb_client.join().unwrap().expect("sb request").status, 200);
    // Ping answers at once although every child is busy.
    let t0 = Instant::now();
    let (code, ctype, body) = page(&status, "/ping", "").unwrap();
    assert_eq!(
        (code, ctype.as_str(), body.as_str()),
        (200, "text/plain", "alive")
    );
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "ping took {:?}",
        t0.elapsed()
    );

    // The Unix socket pool: one child busy, two waiting (sock_diag's count).
    let uds_clients: Vec<_> = (0..3)
        .map(|_| {
            let a = uds.clone();
            thread::spawn(move || get(&a, "sleep=1000", T))
        })
        .collect();
    let mut last = String::new();
    let ok = support::wait_until(T, || {
        let (_, _, b) = page(&status, "/status-uds", "json").unwrap();
        last = b;
        last.contains("\"listen queue\":2,") && last.contains("\"listen queue len\":32,")
    });
    assert!(ok, "unix listen queue: {last}");

    for c in busy.into_iter().chain(uds_clients) {
        assert_eq!(c.join().unwrap().expect("request").status, 200);
    }
    let j = wait_status(&status, T, |j| {
        j.num("accepted conn") == 5 && j.num("active processes") == 0
    });
    assert_eq!(j.num("accepted conn"), 5);
    assert!(
        j.num("slow requests") >= 2,
        "1.5 s requests past a 1 s slowlog timeout: {j:?}"
    );
    assert_eq!(j.num("listen queue"), 0);
    assert!(j.num("max active processes") >= 2);
    // Classic children: the slow log knows the pid; children on our library: the request.
    let slow = support::read_lossy(&dir.path().join("www.slow"));
    assert!(slow.contains("[pool www] pid "), "{slow}");
    let slow = support::read_lossy(&dir.path().join("sb.slow"));
    assert!(slow.contains("[pool sb] pid "), "{slow}");
    assert!(
        slow.contains("script_filename = /srv/app\nrequest = \"GET /app?sleep=1000&who=sb\""),
        "{slow}"
    );

    // The other formats.
    let (_, ctype, text) = page(&status, "/status", "full").unwrap();
    assert_eq!(ctype, "text/plain");
    assert!(
        text.starts_with("pool:                 www\nprocess manager:      static\n"),
        "{text}"
    );
    assert!(text.contains("\nmax active processes: "));
    assert!(text.contains("\n************************\npid:                  "));
    let (_, ctype, xml) = page(&status, "/status", "xml").unwrap();
    assert_eq!(ctype, "text/xml");
    assert!(xml.starts_with("<?xml version=\"1.0\" ?>\n<status>\n<pool>www</pool>\n"));
    assert!(xml.contains("<accepted-conn>5</accepted-conn>"));
    let (_, ctype, html) = page(&status, "/status", "html&full").unwrap();
    assert_eq!(ctype, "text/html");
    assert!(html.contains("<tr><th>accepted conn</th><td>5</td></tr>"));
    let (_, ctype, metrics) = page(&status, "/status", "openmetrics&full").unwrap();
    assert!(ctype.starts_with("text/plain; version=0.0.4"));
    assert!(
        metrics.contains("phpfpm_accepted_connections_total{pool=\"www\"} 5\n"),
        "{metrics}"
    );
    if let Some(promtool) = require_peer("promtool") {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{metrics}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Unknown paths and HEAD.
    let (code, _, _) = page(&status, "/nothing", "").unwrap();
    assert_eq!(code, 404);
}
