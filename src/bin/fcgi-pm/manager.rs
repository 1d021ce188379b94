//! The manager's main loop: one thread, an epoll set with a signalfd (SIGCHLD, SIGTERM,
//! SIGINT, SIGQUIT, SIGUSR1, SIGUSR2), the ondemand pools' listening sockets
//! (edge-triggered, as php-fpm) and the children's output pipes, and a 100 ms tick.
//!
//! Signals as php-fpm: SIGUSR2 reloads gracefully (the configuration is read again, new
//! children start on the same sockets, old ones finish their request and exit), SIGQUIT
//! stops gracefully, SIGTERM and SIGINT stop fast, SIGUSR1 reopens the logs.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::{self, Config, ListenAddr, Load};
use crate::listen::Listener;
use crate::log;
use crate::pool::{Output, PoolRt};
use crate::spawn;
use crate::status_server::Hub;

const TICK: Duration = Duration::from_millis(100);
const TOKEN_SIGNAL: u64 = 0;

/// The signals the main loop takes through its signalfd; blocked in every thread.
pub fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// The signals the manager reads from its signalfd (php-fpm's, and its children's ends).
pub const SIGNALS: [libc::c_int; 6] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Blocks the manager's signals in this thread (and the threads it starts later).
pub fn block_signals() -> io::Result<()> {
    let set = signal_set();
    // An ignored signal is dropped even when blocked, and a shell starts background jobs
    // with SIGINT and SIGQUIT ignored: take the default back so the signalfd sees them.
    for s in SIGNALS.into_iter().filter(|&s| s != libc::SIGCHLD) {
        // SAFETY: setting a standard disposition.
        unsafe { libc::signal(s, libc::SIG_DFL) };
    }
    // SAFETY: a valid set; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; checked.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fresh descriptor.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: RawFd, token: u64, edge: bool) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | if edge { libc::EPOLLET } else { 0 }) as u32,
            u64: token,
        };
        // SAFETY: a valid event struct.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    fn del(&self, fd: RawFd) {
        // SAFETY: deleting a registration; errors (not registered) are ignored.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    fn wait(&self, timeout: Duration) -> io::Result<Vec<u64>> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
        // SAFETY: the buffer has room for 64 events.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                evs.as_mut_ptr(),
                evs.len() as libc::c_int,
                timeout.as_millis() as libc::c_int,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(e);
        }
        Ok(evs[..n as usize].iter().map(|e| e.u64).collect())
    }
}

/// What an epoll token stands for.
enum Watched {
    /// An ondemand pool's listening socket (by pool name).
    Listen(String, RawFd),
    /// A child's stdout or stderr.
    Pipe {
        pid: u32,
        pool: String,
        stream: &'static str,
        file: std::fs::File,
        partial: Vec<u8>,
        decorate: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping { graceful: bool },
}

pub struct Manager {
    cfg: Config,
    load: Load,
    pools: Vec<PoolRt>,
    listeners: HashMap<ListenAddr, Rc<Listener>>,
    hub: Hub,
    epoll: Epoll,
    sigfd: OwnedFd,
    watched: HashMap<u64, Watched>,
    next_token: u64,
    phase: Phase,
    kill_at: Option<Instant>,
    crashes: VecDeque<Instant>,
    pid_file: Option<PathBuf>,
}

impl Manager {
    /// Binds every pool's socket (errors here stop the start-up).
    pub fn bind_all(cfg: &Config) -> io::Result<HashMap<ListenAddr, Rc<Listener>>> {
        let mut map = HashMap::new();
        for p in &cfg.pools {
            let l = Listener::bind(p.listen(), p)?;
            map.insert(p.listen().clone(), Rc::new(l));
        }
        Ok(map)
    }

    pub fn new(
        cfg: Config,
        load: Load,
        listeners: HashMap<ListenAddr, Rc<Listener>>,
    ) -> io::Result<Manager> {
        let set = signal_set();
        // SAFETY: a valid set; the descriptor is checked.
        let sfd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
        // SAFETY: fresh descriptor.
        let sigfd = unsafe { OwnedFd::from_raw_fd(sfd) };
        let epoll = Epoll::new()?;
        epoll.add(sigfd.as_raw_fd(), TOKEN_SIGNAL, false)?;
        let mut hub = Hub::new();
        hub.configure(&cfg)?;
        let mut pools = Vec::new();
        for p in &cfg.pools {
            let plan = spawn::plan(p, &mut |w| log::warning(&w)).map_err(io::Error::other)?;
            let l = Rc::clone(&listeners[p.listen()]);
            pools.push(PoolRt::new(p.clone(), plan, l));
        }
        let pid_file = cfg.global.pid.clone();
        let mut m = Manager {
            cfg,
            load,
            pools,
            listeners,
            hub,
            epoll,
            sigfd,
            watched: HashMap::new(),
            next_token: 1,
            phase: Phase::Running,
            kill_at: None,
            crashes: VecDeque::new(),
            pid_file,
        };
        m.sync_listen_watches();
        m.publish();
        Ok(m)
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Registers the listening sockets of ondemand pools, and only those.
    fn sync_listen_watches(&mut self) {
        let stale: Vec<u64> = self
            .watched
            .iter()
            .filter(|(_, w)| matches!(w, Watched::Listen(..)))
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            if let Some(Watched::Listen(_, fd)) = self.watched.remove(&t) {
                self.epoll.del(fd);
            }
        }
        let wanted: Vec<(String, RawFd)> = self
            .pools
            .iter()
            .filter(|p| !p.retiring && p.cfg.pm() == config::Pm::Ondemand)
            .map(|p| (p.cfg.name.clone(), p.listener.fd().as_raw_fd()))
            .collect();
        for (name, fd) in wanted {
            let t = self.token();
            if self.epoll.add(fd, t, true).is_ok() {
                self.watched.insert(t, Watched::Listen(name, fd));
            }
        }
    }

    fn watch_outputs(&mut self) {
        let mut outs: Vec<(String, bool, Output)> = Vec::new();
        for p in &mut self.pools {
            for o in p.new_outputs.drain(..) {
                outs.push((p.cfg.name.clone(), p.cfg.decorate_workers_output, o));
            }
        }
        for (pool, decorate, o) in outs {
            let pipes: [(&'static str, Option<OwnedFd>); 2] = [
                ("stdout", o.stdout.map(OwnedFd::from)),
                ("stderr", o.stderr.map(OwnedFd::from)),
            ];
            for (stream, fd) in pipes {
                let Some(fd) = fd else { continue };
                // SAFETY: fcntl on a descriptor we own.
                unsafe {
                    let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                    libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
                }
                let t = self.token();
                if self.epoll.add(fd.as_raw_fd(), t, false).is_ok() {
                    self.watched.insert(
                        t,
                        Watched::Pipe {
                            pid: o.pid,
                            pool: pool.clone(),
                            stream,
                            file: std::fs::File::from(fd),
                            partial: Vec::new(),
                            decorate,
                        },
                    );
                }
            }
        }
    }

    fn read_pipe(&mut self, token: u64) {
        let Some(Watched::Pipe {
            pid,
            pool,
            stream,
            file,
            partial,
            decorate,
        }) = self.watched.get_mut(&token)
        else {
            return;
        };
        let mut buf = [0u8; 8192];
        let mut closed = false;
        loop {
            match file.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let emit = |line: &[u8]| {
            let text = String::from_utf8_lossy(line);
            if *decorate {
                log::warning(&format!(
                    "[pool {pool}] child {pid} said into {stream}: \"{text}\""
                ));
            } else {
                log::raw(&text);
            }
        };
        while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=nl).collect();
            emit(&line[..line.len() - 1]);
        }
        if partial.len() > 1024 {
            let line: Vec<u8> = std::mem::take(partial);
            emit(&line);
        }
        if closed {
            if !partial.is_empty() {
                let line = std::mem::take(partial);
                emit(&line);
            }
            if let Some(Watched::Pipe { file, .. }) = self.watched.remove(&token) {
                self.epoll.del(file.as_raw_fd());
            }
        }
    }

    pub fn start(&mut self) {
        let now = Instant::now();
        for p in &mut self.pools {
            p.start();
            p.observe(now);
        }
        self.watch_outputs();
        self.publish();
    }

    fn accepting(&self) -> bool {
        self.phase == Phase::Running
    }

    /// Runs until stopped; returns the exit code.
    pub fn run(&mut self) -> i32 {
        log::notice(&format!("fcgi-pm is running, pid {}", std::process::id()));
        log::notice("ready to handle connections");
        loop {
            let tokens = match self.epoll.wait(TICK) {
                Ok(t) => t,
                Err(e) => {
                    log::alert(&format!("epoll_wait: {e}"));
                    return 70;
                }
            };
            let now = Instant::now();
            for t in tokens {
                match t {
                    TOKEN_SIGNAL => self.signals(),
                    t => match self.watched.get(&t) {
                        Some(Watched::Listen(name, _)) => {
                            let name = name.clone();
                            if self.accepting() {
                                if let Some(p) = self.pools.iter_mut().find(|p| p.cfg.name == name)
                                {
                                    p.on_connection(now);
                                }
                            }
                        }
                        Some(Watched::Pipe { .. }) => self.read_pipe(t),
                        None => {}
                    },
                }
            }
            let accepting = self.accepting();
            for p in &mut self.pools {
                p.observe(now);
                p.tick(now, accepting);
            }
            self.watch_outputs();
            // Pools removed by a reload go once their children are gone, with their
            // socket unless the new configuration uses it.
            let (gone, kept): (Vec<PoolRt>, Vec<PoolRt>) = std::mem::take(&mut self.pools)
                .into_iter()
                .partition(|p| p.retiring && p.children.is_empty());
            self.pools = kept;
            for p in gone {
                if Rc::strong_count(&p.listener) == 1 {
                    p.listener.unlink();
                }
            }
            self.publish();
            if let Phase::Stopping { .. } = self.phase {
                if let Some(t) = self.kill_at {
                    if now >= t {
                        for p in &self.pools {
                            for c in &p.children {
                                crate::pool::kill(c.pid, libc::SIGKILL);
                            }
                        }
                        self.kill_at = None;
                    }
                }
                if self.pools.iter().all(|p| p.children.is_empty()) {
                    self.reap();
                    return self.exit();
                }
            }
        }
    }

    fn exit(&mut self) -> i32 {
        self.hub.shutdown();
        if let Some(p) = &self.pid_file {
            let _ = std::fs::remove_file(p);
        }
        for l in self.listeners.values() {
            l.unlink();
        }
        log::notice("exiting, bye-bye!");
        0
    }

    fn publish(&self) {
        let snaps = self
            .pools
            .iter()
            .filter(|p| !p.retiring)
            .map(PoolRt::status)
            .collect();
        self.hub.publish(snaps);
    }

    fn signals(&mut self) {
        loop {
            // SAFETY: signalfd_siginfo is plain data; read fills at most its size.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let n = unsafe {
                libc::read(
                    self.sigfd.as_raw_fd(),
                    std::ptr::addr_of_mut!(info).cast(),
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                )
            };
            if n != std::mem::size_of::<libc::signalfd_siginfo>() as isize {
                return;
            }
            match info.ssi_signo as libc::c_int {
                libc::SIGCHLD => self.reap(),
                libc::SIGTERM | libc::SIGINT => {
                    log::notice(&format!(
                        "received {}, terminating",
                        if info.ssi_signo as i32 == libc::SIGINT {
                            "SIGINT"
                        } else {
                            "SIGTERM"
                        }
                    ));
                    self.stop(false);
                }
                libc::SIGQUIT => {
                    log::notice("received SIGQUIT, finishing");
                    self.stop(true);
                }
                libc::SIGUSR1 => {
                    log::notice("received SIGUSR1, reopening the logs");
                    log::reopen();
                    for p in &mut self.pools {
                        p.reopen_logs();
                    }
                    log::notice("logs reopened");
                }
                libc::SIGUSR2 => {
                    log::notice("received SIGUSR2, reloading the configuration");
                    self.reload();
                }
                _ => {}
            }
        }
    }

    /// php-fpm: fast stop (SIGTERM, then SIGKILL after process_control_timeout, 1 s when
    /// that is 0); graceful stop (SIGTERM, which libfcgi programs and this crate's take as
    /// "finish the request, then leave"; SIGKILL after process_control_timeout, none when 0).
    fn stop(&mut self, graceful: bool) {
        if let Phase::Stopping { graceful: g } = self.phase {
            if !g || graceful {
                return;
            }
        }
        self.phase = Phase::Stopping { graceful };
        let pct = self.cfg.global.process_control_timeout;
        let grace = if graceful {
            (!pct.is_zero()).then_some(pct)
        } else {
            Some(if pct.is_zero() {
                Duration::from_secs(1)
            } else {
                pct
            })
        };
        self.kill_at = grace.map(|g| Instant::now() + g);
        for p in &mut self.pools {
            p.stop_all(grace);
        }
        self.hub.shutdown();
    }

    fn reap(&mut self) {
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid with WNOHANG on any child.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let stopping = !self.accepting();
            let mut crashed = false;
            for p in &mut self.pools {
                if let Some(c) = p.reaped(pid as u32, status, stopping) {
                    crashed = c;
                    break;
                }
            }
            if crashed {
                self.crash();
            }
        }
    }

    /// emergency_restart_threshold crashes within emergency_restart_interval: reload.
    fn crash(&mut self) {
        let g = &self.cfg.global;
        let (n, within) = (
            g.emergency_restart_threshold as usize,
            g.emergency_restart_interval,
        );
        if n == 0 || within.is_zero() || !self.accepting() {
            return;
        }
        let now = Instant::now();
        self.crashes.push_back(now);
        while self.crashes.len() > n {
            self.crashes.pop_front();
        }
        if self.crashes.len() == n && now.duration_since(self.crashes[0]) <= within {
            log::warning(&format!(
                "failed processes threshold ({n} in {} sec) is reached, initiating reload",
                within.as_secs()
            ));
            self.crashes.clear();
            self.reload();
        }
    }

    /// SIGUSR2: read the configuration again and move every pool to it without closing
    /// the sockets that stay.
    fn reload(&mut self) {
        if !self.accepting() {
            return;
        }
        let new = match config::load(&self.cfg.file, &self.load).and_then(|c| {
            config::check_system(&c)?;
            Ok(c)
        }) {
            Ok(c) => c,
            Err(e) => {
                log::error(&format!(
                    "reload failed, keeping the running configuration: {e}"
                ));
                return;
            }
        };
        // Sockets: keep the ones that stay, bind the new ones.
        let mut listeners = HashMap::new();
        for p in &new.pools {
            let addr = p.listen().clone();
            let l = match self.listeners.get(&addr) {
                Some(l) => {
                    // Backlog, filter and permissions may have changed.
                    if let Err(e) = l.apply(p) {
                        log::error(&format!("[pool {}] {addr}: {e}", p.name));
                    }
                    Rc::clone(l)
                }
                None => match Listener::bind(&addr, p) {
                    Ok(l) => Rc::new(l),
                    Err(e) => {
                        log::error(&format!(
                            "reload failed, keeping the running configuration: {e}"
                        ));
                        return;
                    }
                },
            };
            listeners.insert(addr, l);
        }
        let mut plans = Vec::new();
        for p in &new.pools {
            match spawn::plan(p, &mut |w| log::warning(&w)) {
                Ok(plan) => plans.push(plan),
                Err(e) => {
                    log::error(&format!(
                        "reload failed, keeping the running configuration: [pool {}] {e}",
                        p.name
                    ));
                    return;
                }
            }
        }
        if let Err(e) = self.hub.configure(&new) {
            log::error(&format!("reload: status: {e}"));
        }
        let _ = log::init(
            &new.global.error_log,
            new.global.log_level,
            &new.global.syslog_ident,
            new.global.syslog_facility,
        );
        let grace = (!new.global.process_control_timeout.is_zero())
            .then_some(new.global.process_control_timeout);
        let mut old_pools = std::mem::take(&mut self.pools);
        for (p, plan) in new.pools.iter().zip(plans) {
            let l = Rc::clone(&listeners[p.listen()]);
            match old_pools
                .iter()
                .position(|o| o.cfg.name == p.name && !o.retiring)
            {
                Some(i) => {
                    let mut pool = old_pools.remove(i);
                    pool.reload(p.clone(), plan, l, grace);
                    self.pools.push(pool);
                }
                None => {
                    let mut pool = PoolRt::new(p.clone(), plan, l);
                    pool.start();
                    self.pools.push(pool);
                }
            }
        }
        for mut gone in old_pools {
            log::notice(&format!(
                "[pool {}] removed from the configuration; stopping it",
                gone.cfg.name
            ));
            gone.retiring = true;
            gone.stop_all(grace);
            self.pools.push(gone);
        }
        // Sockets of removed pools stay open until their children are gone.
        for (addr, l) in self.listeners.drain() {
            if !listeners.contains_key(&addr) && Rc::strong_count(&l) == 1 {
                l.unlink();
            }
        }
        self.listeners = listeners;
        if self.pid_file != new.global.pid {
            if let Some(p) = &self.pid_file {
                let _ = std::fs::remove_file(p);
            }
            if let Some(p) = &new.global.pid {
                let _ = std::fs::write(p, format!("{}", std::process::id()));
            }
            self.pid_file = new.global.pid.clone();
        }
        self.cfg = new;
        self.sync_listen_watches();
        self.watch_outputs();
        self.publish();
        log::notice("configuration reloaded");
    }
}
