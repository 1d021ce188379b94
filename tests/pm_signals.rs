//! `fcgi-pm`'s signals and life cycle, as php-fpm's: SIGUSR2 reloads with no request lost,
//! SIGQUIT finishes requests then stops, SIGTERM stops fast, SIGUSR1 reopens the log;
//! crash restarts and `emergency_restart_threshold`; `-t`, `-D`; workers' output; and
//! `listen.allowed_clients`.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::pm::{self, get, Ground, Lib};
use support::{temp_dir, wait_until, Addr};

const T: Duration = Duration::from_secs(20);

#[test]
fn sigusr2_during_a_load_of_120_requests_answers_all_of_them() {
    let Some(g) = Ground::new(Lib::Classic, "pm reload") else {
        return;
    };
    let conf = g.pool("pm = static\npm.max_children = 4\n");
    let m = g.start(&conf);
    let first = m.wait_children(4, T);
    // The reload reads the file again: three children from now on.
    std::fs::write(
        &m.conf,
        conf.replace("max_children = 4", "max_children = 3"),
    )
    .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (a, done) = (g.listen.clone(), Arc::clone(&done));
            thread::spawn(move || {
                (0..15)
                    .map(|i| {
                        let r = get(&a, &format!("sleep=40&c={c}&i={i}"), T);
                        done.fetch_add(1, Ordering::SeqCst);
                        r
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    assert!(wait_until(T, || done.load(Ordering::SeqCst) >= 30));
    m.signal(libc::SIGUSR2);
    let mut answered = 0;
    let mut late_pids = std::collections::BTreeSet::new();
    for c in clients {
        for (i, r) in c.join().unwrap().into_iter().enumerate() {
            let r = r.unwrap_or_else(|e| panic!("a request was lost: {e}; log:\n{}", m.proc.log()));
            assert_eq!(r.status, 200);
            answered += 1;
            if i == 14 {
                late_pids.insert(r.pid);
            }
        }
    }
    assert_eq!(answered, 120);
    let after = m.wait_children(3, T);
    assert!(
        after.iter().all(|p| !first.contains(p)),
        "{first:?} -> {after:?}"
    );
    assert!(
        late_pids.iter().all(|p| !first.contains(p)),
        "the last requests ran on new children"
    );
    let log = m.proc.log();
    assert!(
        log.contains("received SIGUSR2, reloading the configuration"),
        "{log}"
    );
    assert!(log.contains("configuration reloaded"), "{log}");
}

#[test]
fn a_broken_configuration_on_reload_keeps_the_running_one() {
    let Some(g) = Ground::new(Lib::Classic, "pm reload broken") else {
        return;
    };
    let conf = g.pool("pm = static\npm.max_children = 2\n");
    let m = g.start(&conf);
    let before = m.wait_children(2, T);
    std::fs::write(&m.conf, format!("{conf}pm.max_chldren = 3\n")).unwrap();
    m.signal(libc::SIGUSR2);
    assert!(wait_until(T, || m.proc.log().contains("reload failed")));
    assert!(m
        .proc
        .log()
        .contains("unknown directive 'pm.max_chldren' (did you mean 'pm.max_children'?)"));
    assert_eq!(m.children(), before);
    assert_eq!(get(&g.listen, "", T).unwrap().status, 200);
}

/// Whether one of `kids` holds a connection accepted on `listen` (a request in flight).
fn in_a_child(kids: &[u32], listen: &Addr) -> bool {
    let port = listen.tcp().port();
    kids.iter()
        .any(|&k| support::engine::connections_held(k, port) > 0)
}

#[test]
fn sigquit_finishes_the_running_request_then_stops() {
    let Some(g) = Ground::new(Lib::Classic, "pm sigquit") else {
        return;
    };
    let conf = g.pool("pm = static\npm.max_children = 2\n");
    let mut m = g.start(&conf);
    let kids = m.wait_children(2, T);
    let a = g.listen.clone();
    let slow = thread::spawn(move || get(&a, "sleep=1000", T));
    // Wait until a child has accepted it (not a fixed pause).
    assert!(
        wait_until(T, || in_a_child(&kids, &g.listen)),
        "no child took the request"
    );
    m.signal(libc::SIGQUIT);
    let r = slow
        .join()
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(r.status, 200);
    assert!(
        wait_until(Duration::from_secs(5), || !m.proc.is_running()),
        "{}",
        m.proc.log()
    );
    assert!(m.proc.log().contains("exiting, bye-bye!"));
    assert!(!g.listen.accepts(), "the socket is closed");
}

#[test]
fn sigterm_stops_fast() {
    let Some(g) = Ground::new(Lib::Classic, "pm sigterm") else {
        return;
    };
    let conf = g.pool("pm = static\npm.max_children = 2\n");
    let mut m = g.start(&conf);
    let kids = m.wait_children(2, T);
    let a = g.listen.clone();
    let slow = thread::spawn(move || get(&a, "sleep=8000", T));
    assert!(
        wait_until(T, || in_a_child(&kids, &g.listen)),
        "no child took the request"
    );
    let t0 = Instant::now();
    m.signal(libc::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(3), || !m.proc.is_running()),
        "{}",
        m.proc.log()
    );
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(slow.join().unwrap().is_err(), "the 8 s request was cut");
}

#[test]
fn crashes_are_restarted_and_the_threshold_reloads_the_pool() {
    let Some(g) = Ground::new(Lib::Classic, "pm crash") else {
        return;
    };
    let conf = format!(
        "[global]\nemergency_restart_threshold = 3\nemergency_restart_interval = 30s\n{}",
        g.pool("pm = static\npm.max_children = 2\ncatch_workers_output = yes\n")
    );
    let m = g.start(&conf);
    m.wait_children(2, T);
    // What a worker writes to its stderr lands in the manager's log.
    assert_eq!(
        get(&g.listen, "say=hello-from-the-child", T)
            .unwrap()
            .status,
        200
    );
    assert!(
        wait_until(T, || m
            .proc
            .log()
            .contains("said into stderr: \"hello-from-the-child\"")),
        "{}",
        m.proc.log()
    );
    for i in 0..3 {
        assert!(get(&g.listen, "crash=1", T).is_err(), "crash {i}");
        // The crashed child is replaced (after 1 s when it died that young).
        m.wait_children(2, Duration::from_secs(5));
    }
    let log = m.proc.log();
    assert!(log.contains("exited on signal 11 (SIGSEGV"), "{log}");
    assert!(
        wait_until(T, || m.proc.log().contains(
            "failed processes threshold (3 in 30 sec) is reached, initiating reload"
        )),
        "{}",
        m.proc.log()
    );
    assert!(wait_until(T, || m
        .proc
        .log()
        .contains("configuration reloaded")));
    m.wait_children(2, T);
    assert_eq!(get(&g.listen, "", T).unwrap().status, 200);
}

#[test]
fn sigusr1_reopens_the_error_log() {
    let Some(g) = Ground::new(Lib::Classic, "pm sigusr1") else {
        return;
    };
    let log = g.dir.path().join("pm-error.log");
    let conf = format!(
        "[global]\nerror_log = {}\n{}",
        log.display(),
        g.pool("pm = static\npm.max_children = 1\n")
    );
    // Without -O the error_log directive applies.
    let path = g.dir.path().join("fcgi-pm.conf");
    std::fs::write(&path, conf).unwrap();
    let mut cmd = Command::new(pm::binary());
    cmd.arg("-F").arg("-y").arg(&path);
    let mut proc = support::Proc::spawn("fcgi-pm", cmd, g.dir.path().join("stderr.log"));
    proc.wait_accepts(&g.listen);
    assert!(wait_until(T, || support::read_lossy(&log)
        .contains("ready to handle connections")));
    let rotated = g.dir.path().join("pm-error.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(proc.pid() as i32, libc::SIGUSR1) };
    assert!(
        wait_until(T, || support::read_lossy(&log).contains("logs reopened")),
        "{}",
        support::read_lossy(&rotated)
    );
    assert!(support::read_lossy(&rotated).contains("ready to handle connections"));
}

/// Writes `conf` to `path` and runs `fcgi-pm -t -y path` (check the file and stop): its
/// exit code and stderr.
fn test_config(path: &std::path::Path, conf: &str) -> (Option<i32>, String) {
    std::fs::write(path, conf).unwrap();
    let out = Command::new(pm::binary())
        .args(["-t", "-y"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn test_flag_checks_the_file_and_names_the_line() {
    let dir = temp_dir();
    let path = dir.path().join("bad.conf");
    let (code, err) = test_config(
        &path,
        "[www]\nlisten = 127.0.0.1:9\npm = static\npm.max_kids = 2\ncommand = /bin/true\n",
    );
    assert_eq!(code, Some(78));
    assert!(
        err.contains(&format!(
            "[{}:4] unknown directive 'pm.max_kids'",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("test failed"), "{err}");

    let (code, err) = test_config(
        &path,
        "[www]\nlisten = 127.0.0.1:9\npm = static\npm.max_children = 2\ncommand = /bin/true\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("test is successful"));

    let (code, err) = test_config(
        &path,
        "[www]\nlisten = 127.0.0.1:9\npm = static\npm.max_children = 2\ncommand = /no/such/program\n",
    );
    assert_eq!(code, Some(78));
    assert!(err.contains("'/no/such/program' is not an executable file"));
}

/// A daemon's pid, killed with its children when dropped.
struct Daemon(u32);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the daemon this test started; its children follow
        // (PR_SET_PDEATHSIG).
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

#[test]
fn daemonize_writes_the_pid_file_and_stops_on_sigterm() {
    let Some(g) = Ground::new(Lib::Classic, "pm daemon") else {
        return;
    };
    let pidfile = g.dir.path().join("pm.pid");
    let conf = format!(
        "[global]\npid = {}\nerror_log = {}/err.log\ndaemonize = yes\n{}",
        pidfile.display(),
        g.dir.path().display(),
        g.pool("pm = static\npm.max_children = 1\n")
    );
    let path = g.dir.path().join("fcgi-pm.conf");
    std::fs::write(&path, conf).unwrap();
    let t0 = Instant::now();
    let out = Command::new(pm::binary())
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = Daemon(pid);
    assert!(wait_until(T, || g.listen.accepts()));
    assert_eq!(get(&g.listen, "", T).unwrap().status, 200);
    // SAFETY: kill(2) on the daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(wait_until(
        Duration::from_secs(5),
        || !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z"))
    ));
    assert!(!pidfile.exists(), "the pid file is removed at exit");
}

#[test]
fn allowed_clients_are_passed_on_and_enforced() {
    let Some(g) = Ground::new(Lib::Classic, "pm allowed") else {
        return;
    };
    let conf = g.pool("pm = static\npm.max_children = 1\nlisten.allowed_clients = 127.0.0.2\n");
    let m = g.spawn(&conf);
    let kids = m.wait_children(1, T);
    let env = std::fs::read(format!("/proc/{}/environ", kids[0])).unwrap();
    assert!(
        env.split(|b| *b == 0)
            .any(|v| v == b"FCGI_WEB_SERVER_ADDRS=127.0.0.2"),
        "{}",
        String::from_utf8_lossy(&env)
    );
    // From 127.0.0.1 the connection is never established.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let to = socket2::SockAddr::from(g.listen.tcp());
    assert!(s.connect_timeout(&to, Duration::from_millis(500)).is_err());
    // From 127.0.0.2 it is, and the child answers.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&socket2::SockAddr::from(std::net::SocketAddr::from((
        [127, 0, 0, 2],
        0,
    ))))
    .unwrap();
    assert!(s.connect_timeout(&to, Duration::from_secs(2)).is_ok());
}

#[test]
fn pool_settings_reach_the_child() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        support::shout("*** SKIP pool_settings_reach_the_child: needs root (user = nobody) ***");
        return;
    }
    let Some(g) = Ground::new(Lib::Classic, "pm settings") else {
        return;
    };
    let work = g.dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let conf = g.pool(&format!(
        "pm = static\npm.max_children = 1\nuser = nobody\nchdir = {}\nrlimit_files = 123\n\
             env[GREETING] = hello $pool\nenv[FROM_MANAGER] = $PATH\n",
        work.display()
    ));
    let m = g.start(&conf);
    let kid = m.wait_children(1, T)[0];
    let status = std::fs::read_to_string(format!("/proc/{kid}/status")).unwrap();
    let (uid, _, _) = nobody();
    assert!(status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid.to_string())), "{status}");
    assert_eq!(
        std::fs::read_link(format!("/proc/{kid}/cwd")).unwrap(),
        work
    );
    let limits = std::fs::read_to_string(format!("/proc/{kid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("123")),
        "{limits}"
    );
    let env = String::from_utf8_lossy(&std::fs::read(format!("/proc/{kid}/environ")).unwrap())
        .replace('\0', "\n");
    assert!(env.lines().any(|l| l == "GREETING=hello www"), "{env}");
    let path = std::env::var("PATH").unwrap_or_default();
    assert!(
        env.lines().any(|l| l == format!("FROM_MANAGER={path}")),
        "{env}"
    );
    assert!(
        !env.lines().any(|l| l.starts_with("HOME=")),
        "clear_env: {env}"
    );
    assert_eq!(get(&g.listen, "", T).unwrap().status, 200);
}

fn nobody() -> (u32, u32, String) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .expect("user nobody");
    let f: Vec<&str> = line.split(':').collect();
    (
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
        f[0].to_string(),
    )
}
