//! `fcgi-pm` with a static pool of a C program on Debian's classic libfcgi (and on ours):
//! the kernel shares the socket between the children, a killed child is replaced, a
//! request past `request_terminate_timeout` is ended, `pm.max_requests` recycles children,
//! and the pool behind real nginx passes the interop checks.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::pm::{self, get, Ground, Lib};

const T: Duration = Duration::from_secs(20);

#[test]
fn classic_static_pool_shares_sixteen_one_second_requests_over_four_children() {
    let Some(g) = Ground::new(Lib::Classic, "pm static classic") else {
        return;
    };
    let conf = g.pool("pm = static\npm.max_children = 4\n");
    let m = g.start(&conf);
    let kids = m.wait_children(4, T);
    // Which library each child really mapped.
    for k in &kids {
        assert_eq!(pm::mapped_libfcgi(*k), "classic", "child {k}");
    }
    let started = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let a = g.listen.clone();
            thread::spawn(move || get(&a, "sleep=1000", T))
        })
        .collect();
    let mut pids = std::collections::BTreeMap::new();
    for c in clients {
        let r = c.join().unwrap().expect("request");
        assert_eq!(r.status, 200);
        *pids.entry(r.pid).or_insert(0) += 1;
    }
    let took = started.elapsed();
    assert!(
        took <= Duration::from_millis(4600),
        "16 x 1 s over 4 children took {took:?}"
    );
    assert_eq!(pids.len(), 4, "served by {pids:?}");
    assert!(
        pids.keys().all(|p| kids.contains(p)),
        "{pids:?} vs {kids:?}"
    );
    eprintln!(
        "16 concurrent 1 s requests, static 4, classic libfcgi: {took:?}, per child {pids:?}"
    );
}

#[test]
fn a_killed_child_is_replaced_within_two_seconds() {
    let Some(g) = Ground::new(Lib::Classic, "pm kill") else {
        return;
    };
    let conf = g.pool("pm = static\npm.max_children = 3\n");
    let m = g.start(&conf);
    let before = m.wait_children(3, T);
    let victim = before[1];
    // A child that dies younger than 1 s is replaced after 1 s (a crash loop must not spin):
    // kill one that is older, as a crash in production is.
    assert!(support::wait_until(T, || process_age(victim) > Duration::from_millis(1100)));
    // SAFETY: kill(2) on a child of the manager this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let t0 = Instant::now();
    let ok = support::wait_until(Duration::from_secs(2), || {
        let now = m.children();
        now.len() == 3 && !now.contains(&victim)
    });
    let took = t0.elapsed();
    assert!(
        ok,
        "children after 2 s: {:?}; log:\n{}",
        m.children(),
        m.proc.log()
    );
    eprintln!("SIGKILLed child replaced in {took:?}");
    assert!(m
        .proc
        .log()
        .contains(&format!("child {victim} exited on signal 9 (SIGKILL)")));
    // And the pool serves.
    assert_eq!(get(&g.listen, "", T).unwrap().status, 200);
}

#[test]
fn request_terminate_timeout_ends_a_ten_second_request_and_refills_the_pool() {
    let Some(g) = Ground::new(Lib::Classic, "pm terminate") else {
        return;
    };
    let conf = g.pool("pm = static\npm.max_children = 2\nrequest_terminate_timeout = 2s\n");
    let m = g.start(&conf);
    let before = m.wait_children(2, T);
    let t0 = Instant::now();
    let r = get(&g.listen, "sleep=10000", T);
    let took = t0.elapsed();
    // The web server gets its answer at once: the connection closes with the child.
    assert!(r.is_err(), "a terminated request cannot complete: {r:?}");
    assert!(took < Duration::from_secs(3), "ended after {took:?}");
    assert!(
        took >= Duration::from_secs(2),
        "ended after {took:?}, before the timeout"
    );
    // The pool is back to full size, with one child replaced.
    let replaced = support::wait_until(Duration::from_secs(3), || {
        let now = m.children();
        now.len() == 2 && now.iter().filter(|p| !before.contains(p)).count() == 1
    });
    assert!(
        replaced,
        "{before:?} -> {:?}; log:\n{}",
        m.children(),
        m.proc.log()
    );
    let log = m.proc.log();
    assert!(log.contains("execution timed out"), "{log}");
    assert!(
        log.contains("\"GET /app?sleep=10000\"") || log.contains("request: -"),
        "{log}"
    );
    eprintln!("request_terminate_timeout=2s ended a 10 s request after {took:?}");
}

fn max_requests(lib: Lib) {
    let Some(g) = Ground::new(lib, "pm max_requests") else {
        return;
    };
    let conf = g.pool("pm = static\npm.max_children = 2\npm.max_requests = 10\n");
    let m = g.start(&conf);
    m.wait_children(2, T);
    let mut pids = std::collections::BTreeMap::<u32, u64>::new();
    for i in 0..80 {
        let r = get(&g.listen, &format!("i={i}"), T)
            .unwrap_or_else(|e| panic!("request {i} failed: {e}; log:\n{}", m.proc.log()));
        assert_eq!(r.status, 200);
        assert!(
            r.served <= 10,
            "child {} served {} requests",
            r.pid,
            r.served
        );
        let e = pids.entry(r.pid).or_default();
        *e = (*e).max(r.served);
    }
    assert!(
        pids.len() >= 8,
        "80 requests over {} children: {pids:?}",
        pids.len()
    );
    eprintln!(
        "pm.max_requests=10 ({lib:?}): 80 requests, {} children",
        pids.len()
    );
}

/// Children on this crate's library count their requests and leave their accept loop at
/// the limit themselves: no request is lost.
#[test]
fn max_requests_ours_eighty_requests_none_failed_eight_children() {
    max_requests(Lib::Ours);
}

/// Classic children are counted from the kernel's socket tables and stopped (SIGTERM,
/// which libfcgi takes as "finish, then leave") once idle at the limit.
#[test]
fn max_requests_classic_eighty_requests_none_failed() {
    let Some(g) = Ground::new(Lib::Classic, "pm max_requests classic") else {
        return;
    };
    let conf = g.pool("pm = static\npm.max_children = 2\npm.max_requests = 10\n");
    let m = g.start(&conf);
    m.wait_children(2, T);
    let mut pids = std::collections::BTreeSet::new();
    for i in 0..80 {
        // Requests long enough for the manager's 100 ms look at the sockets to see them.
        let r = get(&g.listen, &format!("sleep=120&i={i}"), T)
            .unwrap_or_else(|e| panic!("request {i} failed: {e}; log:\n{}", m.proc.log()));
        assert_eq!(r.status, 200);
        pids.insert(r.pid);
    }
    assert!(pids.len() >= 6, "80 requests over {} children", pids.len());
}

/// How long process `pid` has been running, from /proc.
fn process_age(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let start_ticks: f64 = fields.get(19).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|u| u.parse().ok()))
        .unwrap_or(0.0);
    Duration::from_secs_f64((uptime - start_ticks / hz).max(0.0))
}
