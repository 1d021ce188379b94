//! `pm = dynamic` and `pm = ondemand` under a load ramp, with php-fpm's rules: dynamic
//! keeps between `pm.min_spare_servers` and `pm.max_spare_servers` idle children (spawning
//! at a doubling rate, stopping one spare a second) within `pm.max_children`; ondemand
//! starts a child when a connection waits and none is idle, and stops children idle longer
//! than `pm.process_idle_timeout`. The figures are printed for BENCHMARKS.md.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::pm::{self, get, wait_status, Ground, Lib};
use support::Addr;

const T: Duration = Duration::from_secs(20);

fn slow_requests(
    listen: &Addr,
    n: usize,
    ms: u64,
) -> Vec<thread::JoinHandle<Result<pm::Reply, String>>> {
    (0..n)
        .map(|i| {
            let a = listen.clone();
            thread::spawn(move || get(&a, &format!("sleep={ms}&i={i}"), T))
        })
        .collect()
}

#[test]
fn dynamic_pool_follows_a_ramp_within_its_spare_bounds() {
    let Some(g) = Ground::new(Lib::Classic, "pm dynamic") else {
        return;
    };
    let status = Addr::free_tcp();
    let conf = pm::pool(
        "dyn",
        &g.listen,
        &g.app,
        &format!(
            "pm = dynamic\npm.max_children = 6\npm.start_servers = 2\npm.min_spare_servers = 1\n\
             pm.max_spare_servers = 2\npm.status_path = /status\npm.status_listen = {status}\n"
        ),
    );
    let m = g.start(&conf);
    support::wait_accepts(&status, T);
    let t0 = Instant::now();
    let j = wait_status(&status, T, |j| j.num("total processes") == 2);
    assert_eq!(j.str("process manager"), "dynamic");
    assert_eq!(j.num("idle processes"), 2, "start_servers = 2: {j:?}");

    // Step 1: four requests at once. The pool grows until one child is spare again.
    let step1 = slow_requests(&g.listen, 4, 8000);
    let j = wait_status(&status, T, |j| {
        j.num("active processes") == 4 && j.num("idle processes") >= 1
    });
    let grew = t0.elapsed();
    assert_eq!(
        (j.num("active processes"), j.num("idle processes")),
        (4, 1),
        "{j:?}"
    );
    assert_eq!(j.num("total processes"), 5);

    // Step 2: two more: six busy is pm.max_children, and no spare is possible.
    let step2 = slow_requests(&g.listen, 2, 4000);
    let j = wait_status(&status, T, |j| {
        j.num("active processes") == 6 && j.num("max children reached") >= 1
    });
    assert_eq!(
        j.num("total processes"),
        6,
        "never more than pm.max_children: {j:?}"
    );
    assert!(j.num("max children reached") >= 1, "{j:?}");
    for c in step1.into_iter().chain(step2) {
        assert_eq!(c.join().unwrap().expect("request").status, 200);
    }
    // Load gone: six idle children, more than max_spare_servers; one goes per second.
    let t1 = Instant::now();
    let j = wait_status(&status, T, |j| j.num("total processes") == 2);
    let shrank = t1.elapsed();
    assert_eq!(
        (j.num("idle processes"), j.num("active processes")),
        (2, 0),
        "{j:?}"
    );
    // Four spares were stopped, each by a maintenance pass of its own (one per second).
    let log = m.proc.log();
    let mut stops: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("exited with code 0"))
        .map(|l| &l[..22])
        .collect();
    assert_eq!(stops.len(), 4, "{log}");
    stops.dedup();
    assert!(
        stops.len() >= 3,
        "one spare stopped per second, not all at once: {log}"
    );
    assert_eq!(m.children().len(), 2);
    eprintln!("dynamic ramp: 2 -> 5 children in {grew:?} (4 busy + 1 spare), 6 at max_children, back to 2 spares in {shrank:?}");
}

#[test]
fn ondemand_pool_starts_children_for_waiting_connections_and_stops_idle_ones() {
    let Some(g) = Ground::new(Lib::Classic, "pm ondemand") else {
        return;
    };
    let status = Addr::free_tcp();
    let conf = pm::pool(
        "od",
        &g.listen,
        &g.app,
        &format!(
            "pm = ondemand\npm.max_children = 4\npm.process_idle_timeout = 1s\n\
             pm.status_path = /status\npm.status_listen = {status}\n"
        ),
    );
    let m = g.spawn(&conf);
    support::wait_accepts(&status, T);
    let j = wait_status(&status, T, |_| true);
    assert_eq!(j.str("process manager"), "ondemand");
    assert_eq!(j.num("total processes"), 0, "no child before a connection");
    assert!(m.children().is_empty());

    // The first request gets a child.
    let t0 = Instant::now();
    let r = get(&g.listen, "first", T).expect("first request");
    let first = t0.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(m.children().len(), 1);

    // Three at once while one child exists: it is busy, so more start (up to 4).
    let burst = slow_requests(&g.listen, 3, 1500);
    let j = wait_status(&status, T, |j| j.num("active processes") == 3);
    assert_eq!(j.num("active processes"), 3, "{j:?}");
    let peak = m.children().len();
    assert!((3..=4).contains(&peak), "children at the peak: {peak}");
    for c in burst {
        assert_eq!(c.join().unwrap().expect("request").status, 200);
    }
    // Idle children go after process_idle_timeout, one per second.
    let t1 = Instant::now();
    let j = wait_status(&status, T, |j| j.num("total processes") == 0);
    let gone = t1.elapsed();
    assert_eq!(j.num("total processes"), 0, "{j:?}");
    assert!(
        gone >= Duration::from_secs(1),
        "not before the idle timeout: {gone:?}"
    );
    assert!(support::wait_until(T, || m.children().is_empty()));
    // And a new connection starts one again.
    assert_eq!(get(&g.listen, "again", T).unwrap().status, 200);
    eprintln!("ondemand: first request {first:?} (child started for it), peak {peak} children, all idle ones stopped {gone:?} after the burst");
}
