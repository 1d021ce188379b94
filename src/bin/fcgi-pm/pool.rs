//! One pool at run time: its children, what is known of each (from the scoreboard, or
//! from the kernel's socket tables for children that keep none), and php-fpm's process
//! management: static, dynamic (spare-server bounds, doubling spawn rate) and ondemand
//! (a child per waiting connection when none is idle, idle ones stopped after
//! `pm.process_idle_timeout`), plus request timeouts, slow logs and `pm.max_requests`.

use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fcgi::pm::scoreboard::Board;
use fcgi::pm::status::{PoolStatus, ProcessStatus};

use crate::config::{Pm, Pool};
use crate::listen::Listener;
use crate::log;
use crate::spawn::{self, Plan, Spawned};

/// How long a child asked to stop (SIGTERM) for a request timeout gets before SIGKILL.
pub const TERMINATE_GRACE: Duration = Duration::from_millis(500);
/// A child that dies younger than this, unasked, is restarted after this long.
pub const RESPAWN_BACKOFF: Duration = Duration::from_secs(1);
/// php-fpm's idle server maintenance period.
pub const MAINTENANCE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Too many spares (dynamic) or idle too long (ondemand): not replaced.
    Idle,
    /// `pm.max_requests` reached (children without a scoreboard): replaced.
    MaxRequests,
    /// `request_terminate_timeout`: replaced.
    Timeout,
    /// Replaced by a newer generation (reload).
    Reload,
    /// The manager or the pool stops.
    Shutdown,
}

#[derive(Debug)]
pub struct Stopping {
    pub reason: StopReason,
    pub kill_at: Option<Instant>,
    pub killed: bool,
}

/// What is known about a child.
#[derive(Debug)]
pub struct Observed {
    pub busy: bool,
    pub requests: u64,
    req_key: u64,
    pub req_since: Option<Instant>,
    pub last_active: Instant,
    pub method: String,
    pub uri: String,
    pub script: String,
    pub content_length: u64,
    pub last_duration_us: u64,
    pub slow_logged: bool,
    pub terminated: bool,
    held: HashSet<u64>,
    pub scoreboard: bool,
}

pub struct ChildRt {
    pub pid: u32,
    pub started: Instant,
    pub start_epoch: i64,
    pub generation: u64,
    pub board: Option<Board>,
    pub stop: Option<Stopping>,
    pub obs: Observed,
}

impl ChildRt {
    fn state_name(&self) -> &'static str {
        match (&self.stop, self.obs.busy) {
            (Some(_), _) => "Finishing",
            (None, true) => "Running",
            (None, false) => "Idle",
        }
    }
}

fn epoch_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Sends `sig` to `pid`.
pub fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child of ours that has not been reaped yet.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// A child's output pipes, for the main loop to watch.
pub struct Output {
    pub pid: u32,
    pub stdout: Option<std::process::ChildStdout>,
    pub stderr: Option<std::process::ChildStderr>,
}

pub struct PoolRt {
    pub cfg: Pool,
    pub plan: Plan,
    pub listener: Rc<Listener>,
    pub children: Vec<ChildRt>,
    pub generation: u64,
    spawn_rate: u32,
    warn_max_children: bool,
    accepted_dead: u64,
    max_active: u64,
    max_children_reached: u64,
    slow_requests: u64,
    lq: (u64, u64),
    max_lq: u64,
    pub start_epoch: i64,
    slowlog: Option<log::SlowLog>,
    respawn_at: Option<Instant>,
    last_maintenance: Instant,
    /// The pool was removed from the configuration: its children finish and it goes.
    pub retiring: bool,
    /// New children's output pipes, taken by the main loop.
    pub new_outputs: Vec<Output>,
}

impl PoolRt {
    pub fn new(cfg: Pool, plan: Plan, listener: Rc<Listener>) -> PoolRt {
        let slowlog = open_slowlog(&cfg);
        let lq = listener.queue().unwrap_or((0, 0));
        PoolRt {
            cfg,
            plan,
            listener,
            children: Vec::new(),
            generation: 1,
            spawn_rate: 1,
            warn_max_children: false,
            accepted_dead: 0,
            max_active: 0,
            max_children_reached: 0,
            slow_requests: 0,
            lq,
            max_lq: 0,
            start_epoch: epoch_now(),
            slowlog,
            respawn_at: None,
            last_maintenance: Instant::now(),
            retiring: false,
            new_outputs: Vec::new(),
        }
    }

    fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Children of the current generation that are not stopping: the ones the process
    /// manager counts.
    fn live(&self) -> impl Iterator<Item = &ChildRt> {
        self.children
            .iter()
            .filter(|c| c.generation == self.generation && c.stop.is_none())
    }

    /// Children of the current generation still alive (stopping ones included): what
    /// `pm.max_children` bounds.
    fn running(&self) -> usize {
        self.children
            .iter()
            .filter(|c| c.generation == self.generation)
            .count()
    }

    /// Starts the children a fresh pool starts with.
    pub fn start(&mut self) {
        let n = match self.cfg.pm() {
            Pm::Static => self.cfg.max_children,
            Pm::Dynamic => self.cfg.start_servers,
            Pm::Ondemand => 0,
        };
        self.spawn_n(n as usize);
    }

    /// Starts `n` children (fewer if `pm.max_children` or a start failure stops it).
    pub fn spawn_n(&mut self, n: usize) {
        for _ in 0..n {
            if self.running() >= self.cfg.max_children as usize {
                return;
            }
            if !self.spawn_one() {
                return;
            }
        }
    }

    fn spawn_one(&mut self) -> bool {
        match spawn::spawn(&self.plan, self.listener.fd(), &self.cfg.name) {
            Ok(Spawned {
                child,
                board,
                stdout,
                stderr,
            }) => {
                let pid = child.id();
                // The child is reaped by the main loop's waitpid(-1); dropping the handle
                // neither waits nor kills.
                drop(child);
                if stdout.is_some() || stderr.is_some() {
                    self.new_outputs.push(Output {
                        pid,
                        stdout,
                        stderr,
                    });
                }
                let now = Instant::now();
                self.children.push(ChildRt {
                    pid,
                    started: now,
                    start_epoch: epoch_now(),
                    generation: self.generation,
                    board,
                    stop: None,
                    obs: Observed {
                        busy: false,
                        requests: 0,
                        req_key: 0,
                        req_since: None,
                        last_active: now,
                        method: String::new(),
                        uri: String::new(),
                        script: String::new(),
                        content_length: 0,
                        last_duration_us: 0,
                        slow_logged: false,
                        terminated: false,
                        held: HashSet::new(),
                        scoreboard: false,
                    },
                });
                log::debug(&format!("[pool {}] child {pid} started", self.name()));
                true
            }
            Err(e) => {
                log::error(&format!(
                    "[pool {}] cannot start '{}': {e}; trying again in {} s",
                    self.name(),
                    self.plan.program.display(),
                    RESPAWN_BACKOFF.as_secs()
                ));
                self.respawn_at = Some(Instant::now() + RESPAWN_BACKOFF);
                false
            }
        }
    }

    /// Asks a child to stop: SIGTERM (libfcgi programs and this crate's finish the
    /// request in flight and leave their accept loop), and SIGKILL after `grace` if given.
    pub fn stop_child(&mut self, pid: u32, reason: StopReason, grace: Option<Duration>) {
        if let Some(c) = self.children.iter_mut().find(|c| c.pid == pid) {
            if c.stop.is_some() && reason != StopReason::Shutdown {
                return;
            }
            kill(pid, libc::SIGTERM);
            let kill_at = grace.map(|g| Instant::now() + g);
            match &mut c.stop {
                Some(s) => {
                    s.reason = reason;
                    s.kill_at = match (s.kill_at, kill_at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                None => {
                    c.stop = Some(Stopping {
                        reason,
                        kill_at,
                        killed: false,
                    })
                }
            }
        }
    }

    /// Stops every child (graceful: SIGTERM; SIGKILL after `grace` if given).
    pub fn stop_all(&mut self, grace: Option<Duration>) {
        let pids: Vec<u32> = self.children.iter().map(|c| c.pid).collect();
        for pid in pids {
            self.stop_child(pid, StopReason::Shutdown, grace);
        }
    }

    /// Replaces the configuration (reload): new children of a new generation start, the
    /// old ones are asked to finish their request and exit.
    pub fn reload(
        &mut self,
        cfg: Pool,
        plan: Plan,
        listener: Rc<Listener>,
        grace: Option<Duration>,
    ) {
        let slow_changed = cfg.slowlog != self.cfg.slowlog;
        self.cfg = cfg;
        self.plan = plan;
        self.listener = listener;
        if slow_changed {
            self.slowlog = open_slowlog(&self.cfg);
        }
        self.generation += 1;
        self.spawn_rate = 1;
        self.respawn_at = None;
        // New children first, so the socket always has children accepting on it.
        self.start();
        let old: Vec<u32> = self
            .children
            .iter()
            .filter(|c| c.generation < self.generation)
            .map(|c| c.pid)
            .collect();
        for pid in old {
            self.stop_child(pid, StopReason::Reload, grace);
        }
    }

    pub fn reopen_logs(&mut self) {
        if let Some(s) = self.slowlog.as_mut() {
            s.reopen();
        }
    }

    /// A child of this pool was reaped. Answers whether it was one of ours.
    pub fn reaped(&mut self, pid: u32, status: libc::c_int, stopping_all: bool) -> Option<bool> {
        let i = self.children.iter().position(|c| c.pid == pid)?;
        let c = self.children.remove(i);
        // The scoreboard has the last word: requests served since the last look count too.
        let last = c.board.as_ref().map(Board::read).filter(|v| v.attached);
        self.accepted_dead += last.map_or(c.obs.requests, |v| v.requests.max(c.obs.requests));
        let lived = c.started.elapsed();
        let how = describe(status);
        let crashed = libc::WIFSIGNALED(status)
            && matches!(
                libc::WTERMSIG(status),
                libc::SIGSEGV | libc::SIGBUS | libc::SIGABRT | libc::SIGILL | libc::SIGFPE
            );
        let reason = c.stop.as_ref().map(|s| s.reason);
        let msg = format!(
            "[pool {}] child {pid} exited {how} after {:.6} seconds from start",
            self.name(),
            lived.as_secs_f64()
        );
        let expected =
            reason.is_some() || (libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        if expected {
            log::notice(&msg);
        } else {
            log::warning(&msg);
        }
        if stopping_all || self.retiring {
            return Some(false);
        }
        let replace = match reason {
            None => c.generation == self.generation,
            Some(StopReason::MaxRequests | StopReason::Timeout) => c.generation == self.generation,
            Some(StopReason::Idle | StopReason::Reload | StopReason::Shutdown) => false,
        };
        if replace {
            if reason.is_none() && !expected && lived < RESPAWN_BACKOFF {
                log::warning(&format!(
                    "[pool {}] child {pid} exited too quickly; the next one starts in {} s",
                    self.name(),
                    RESPAWN_BACKOFF.as_secs()
                ));
                self.respawn_at = Some(Instant::now() + RESPAWN_BACKOFF);
            } else if self.respawn_at.is_none() {
                // As php-fpm: a child that went away is replaced in every pm style
                // (dynamic and ondemand bounds apply at the next maintenance).
                self.spawn_n(1);
            }
        }
        Some(crashed && reason.is_none())
    }

    /// Updates what is known of each child (scoreboard, or the kernel's socket tables).
    pub fn observe(&mut self, now: Instant) {
        let need_scan = self
            .children
            .iter()
            .any(|c| !c.board.as_ref().is_some_and(|b| b.read().attached));
        let conns = if need_scan {
            fcgi::net::diag::connection_inodes(&self.listener.local).ok()
        } else {
            None
        };
        let now_wall = now_us();
        for c in &mut self.children {
            let view = c.board.as_ref().map(Board::read).filter(|v| v.attached);
            let o = &mut c.obs;
            let was_busy = o.busy;
            if let Some(v) = view {
                o.scoreboard = true;
                o.busy = v.busy();
                o.requests = v.requests;
                o.method = v.method;
                o.uri = v.uri;
                o.script = v.script;
                o.content_length = v.content_length;
                o.last_duration_us = v.last_duration_us;
                if o.busy {
                    if v.start_us != o.req_key {
                        o.req_key = v.start_us;
                        let age = Duration::from_micros(now_wall.saturating_sub(v.start_us));
                        o.req_since = Some(now.checked_sub(age).unwrap_or(now));
                        o.slow_logged = false;
                        o.terminated = false;
                    }
                } else {
                    o.req_since = None;
                }
            } else if let Some(conns) = &conns {
                let held: HashSet<u64> = fcgi::net::diag::process_socket_inodes(c.pid)
                    .into_iter()
                    .filter(|i| conns.contains(i))
                    .collect();
                let new = held.difference(&o.held).count() as u64;
                o.requests += new;
                o.busy = !held.is_empty();
                if o.busy {
                    let key = held.iter().copied().min().unwrap_or(0);
                    if key != o.req_key || o.req_since.is_none() {
                        o.req_key = key;
                        o.req_since = Some(now);
                        o.slow_logged = false;
                        o.terminated = false;
                    }
                } else {
                    if let Some(since) = o.req_since.take() {
                        o.last_duration_us = now.duration_since(since).as_micros() as u64;
                    }
                }
                o.held = held;
            }
            if o.busy || was_busy {
                o.last_active = now;
            }
        }
        let active = self.children.iter().filter(|c| c.obs.busy).count() as u64;
        self.max_active = self.max_active.max(active);
        if let Some(q) = self.listener.queue() {
            self.lq = q;
            self.max_lq = self.max_lq.max(q.0);
        }
    }

    /// Timeouts, kills that are due, `pm.max_requests` for children without a
    /// scoreboard, and the static pool's size; the dynamic/ondemand maintenance once a
    /// second.
    pub fn tick(&mut self, now: Instant, accepting: bool) {
        self.check_requests(now);
        for c in &mut self.children {
            if let Some(s) = &mut c.stop {
                if !s.killed && s.kill_at.is_some_and(|t| now >= t) {
                    kill(c.pid, libc::SIGKILL);
                    s.killed = true;
                }
            }
        }
        if !accepting || self.retiring {
            return;
        }
        if self.respawn_at.is_some_and(|t| now >= t) {
            self.respawn_at = None;
        }
        let max_req = self.cfg.max_requests;
        if max_req > 0 {
            let due: Vec<u32> = self
                .live()
                .filter(|c| !c.obs.busy && c.obs.requests >= max_req)
                .filter(|c| {
                    !c.obs.scoreboard
                        || now.duration_since(c.obs.last_active) > Duration::from_secs(1)
                })
                .map(|c| c.pid)
                .collect();
            for pid in due {
                log::notice(&format!(
                    "[pool {}] child {pid} served pm.max_requests ({max_req}); replacing it",
                    self.name()
                ));
                self.stop_child(pid, StopReason::MaxRequests, None);
            }
        }
        if self.cfg.pm() == Pm::Ondemand {
            self.ondemand_fill(false);
        }
        if self.respawn_at.is_none() && self.cfg.pm() == Pm::Static {
            let live = self.live().count();
            let want = self.cfg.max_children as usize;
            if live < want {
                self.spawn_n(want - live);
            }
        }
        if now.duration_since(self.last_maintenance) >= MAINTENANCE {
            self.last_maintenance = now;
            self.maintenance(now);
        }
    }

    fn check_requests(&mut self, now: Instant) {
        let term = self.cfg.request_terminate_timeout;
        let slow = self.cfg.request_slowlog_timeout;
        if term.is_zero() && slow.is_zero() {
            return;
        }
        let name = self.cfg.name.clone();
        let mut to_stop = Vec::new();
        for c in &mut self.children {
            let Some(since) = c.obs.req_since.filter(|_| c.obs.busy) else {
                continue;
            };
            let elapsed = now.duration_since(since);
            let o = &mut c.obs;
            let request = if o.method.is_empty() && o.uri.is_empty() {
                "-".to_string()
            } else {
                format!("\"{} {}\"", dash(&o.method), dash(&o.uri))
            };
            if !slow.is_zero() && !o.slow_logged && elapsed > slow {
                o.slow_logged = true;
                self.slow_requests += 1;
                log::warning(&format!(
                    "[pool {name}] child {}, script '{}' (request: {request}) executing too slow ({:.6} sec), logging",
                    c.pid,
                    dash(&o.script),
                    elapsed.as_secs_f64()
                ));
                if let Some(s) = self.slowlog.as_mut() {
                    s.write(
                        &name,
                        c.pid,
                        dash(&o.script),
                        &request,
                        elapsed.as_secs_f64(),
                    );
                }
            }
            if !term.is_zero() && !o.terminated && elapsed > term {
                o.terminated = true;
                log::warning(&format!(
                    "[pool {name}] child {}, script '{}' (request: {request}) execution timed out ({:.6} sec), terminating",
                    c.pid,
                    dash(&o.script),
                    elapsed.as_secs_f64()
                ));
                to_stop.push(c.pid);
            }
        }
        for pid in to_stop {
            self.stop_child(pid, StopReason::Timeout, Some(TERMINATE_GRACE));
        }
    }

    fn warn_max(&mut self) {
        if !self.warn_max_children {
            self.max_children_reached += 1;
            log::warning(&format!(
                "[pool {}] server reached pm.max_children setting ({}), consider raising it",
                self.name(),
                self.cfg.max_children
            ));
            self.warn_max_children = true;
        }
    }

    /// php-fpm's idle server maintenance (fpm_pctl_perform_idle_server_maintenance).
    fn maintenance(&mut self, now: Instant) {
        let idle: Vec<&ChildRt> = self.live().filter(|c| !c.obs.busy).collect();
        let idle_n = idle.len() as u32;
        // The idle child that started first.
        let oldest_idle = idle
            .iter()
            .min_by_key(|c| c.started)
            .map(|c| (c.pid, c.obs.last_active));
        match self.cfg.pm() {
            Pm::Static => {}
            Pm::Ondemand => {
                if let Some((pid, last)) = oldest_idle {
                    if now.duration_since(last) > self.cfg.process_idle_timeout {
                        log::debug(&format!(
                            "[pool {}] child {pid} idle too long; stopping it",
                            self.name()
                        ));
                        self.stop_child(pid, StopReason::Idle, None);
                    }
                }
            }
            Pm::Dynamic => {
                log::debug(&format!(
                    "[pool {}] currently {} active children, {idle_n} spare children, {} running children. Spawning rate {}",
                    self.name(),
                    self.live().count() as u32 - idle_n,
                    self.running(),
                    self.spawn_rate
                ));
                if idle_n > self.cfg.max_spare_servers {
                    if let Some((pid, _)) = oldest_idle {
                        self.stop_child(pid, StopReason::Idle, None);
                    }
                    self.spawn_rate = 1;
                    return;
                }
                if idle_n < self.cfg.min_spare_servers {
                    let running = self.running() as u32;
                    if running >= self.cfg.max_children {
                        self.warn_max();
                        self.spawn_rate = 1;
                        return;
                    }
                    if self.spawn_rate >= 8 {
                        log::warning(&format!(
                            "[pool {}] seems busy (you may need to increase pm.start_servers, or pm.min/max_spare_servers), spawning {} children, there are {idle_n} idle, and {running} total children",
                            self.name(),
                            self.spawn_rate
                        ));
                    }
                    let n = self
                        .spawn_rate
                        .min(self.cfg.min_spare_servers - idle_n)
                        .min(self.cfg.max_children - running);
                    if n == 0 {
                        self.warn_max();
                        self.spawn_rate = 1;
                        return;
                    }
                    self.warn_max_children = false;
                    if self.respawn_at.is_none() {
                        self.spawn_n(n as usize);
                    }
                    if self.spawn_rate < self.cfg.max_spawn_rate {
                        self.spawn_rate = (self.spawn_rate * 2).min(self.cfg.max_spawn_rate);
                    }
                    return;
                }
                self.spawn_rate = 1;
            }
        }
    }

    /// ondemand: a connection arrived on the listening socket (edge-triggered, as
    /// php-fpm's fpm_pctl_on_socket_accept).
    pub fn on_connection(&mut self, now: Instant) {
        if self.retiring || self.cfg.pm() != Pm::Ondemand {
            return;
        }
        if self.running() >= self.cfg.max_children as usize {
            self.warn_max();
            return;
        }
        // Fresh knowledge of who is idle and of what waits.
        self.observe(now);
        self.ondemand_fill(true);
    }

    /// ondemand: as many children as connections wait beyond the idle ones (edges that
    /// arrive together are one event), and one when an event finds none idle.
    fn ondemand_fill(&mut self, event: bool) {
        let idle = self.live().filter(|c| !c.obs.busy).count() as u64;
        let queued = self.lq.0;
        let mut need = queued.saturating_sub(idle);
        if event && idle == 0 {
            need = need.max(1);
        }
        if need == 0 {
            return;
        }
        let room = (self.cfg.max_children as usize).saturating_sub(self.running()) as u64;
        if room == 0 {
            self.warn_max();
            return;
        }
        self.warn_max_children = false;
        if self.respawn_at.is_none() {
            self.spawn_n(need.min(room) as usize);
        }
    }

    /// The status document of this pool.
    pub fn status(&self) -> PoolStatus {
        let mut s = PoolStatus::new(&self.cfg.name, self.cfg.pm().name());
        s.start_time = self.start_epoch;
        s.accepted_conn =
            self.accepted_dead + self.children.iter().map(|c| c.obs.requests).sum::<u64>();
        s.listen_queue = self.lq.0;
        s.max_listen_queue = self.max_lq;
        s.listen_queue_len = self.lq.1;
        s.active = self.children.iter().filter(|c| c.obs.busy).count() as u64;
        s.idle = self.children.len() as u64 - s.active;
        s.max_active = self.max_active;
        s.max_children_reached = self.max_children_reached;
        s.slow_requests = self.slow_requests;
        let now = Instant::now();
        for c in &self.children {
            let mut p = ProcessStatus::idle(c.pid, c.start_epoch);
            p.state = c.state_name().into();
            p.requests = c.obs.requests;
            p.request_duration_us = match c.obs.req_since.filter(|_| c.obs.busy) {
                Some(since) => now.duration_since(since).as_micros() as u64,
                None => c.obs.last_duration_us,
            };
            p.request_method = dash(&c.obs.method).into();
            p.request_uri = dash(&c.obs.uri).into();
            p.script = dash(&c.obs.script).into();
            p.content_length = c.obs.content_length;
            s.processes.push(p);
        }
        s
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn open_slowlog(cfg: &Pool) -> Option<log::SlowLog> {
    let path = cfg.slowlog.as_ref()?;
    match log::SlowLog::open(path) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error(&format!(
                "[pool {}] cannot open slowlog {}: {e}",
                cfg.name,
                path.display()
            ));
            None
        }
    }
}

/// "with code 0", "on signal 9 (SIGKILL)".
pub fn describe(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("with code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let name = match sig {
            libc::SIGTERM => "SIGTERM",
            libc::SIGKILL => "SIGKILL",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGBUS => "SIGBUS",
            libc::SIGABRT => "SIGABRT",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGINT => "SIGINT",
            libc::SIGILL => "SIGILL",
            libc::SIGFPE => "SIGFPE",
            libc::SIGPIPE => "SIGPIPE",
            _ => "",
        };
        let core = if libc::WCOREDUMP(status) {
            " - core dumped"
        } else {
            ""
        };
        if name.is_empty() {
            format!("on signal {sig}{core}")
        } else {
            format!("on signal {sig} ({name}{core})")
        }
    } else {
        format!("with status {status}")
    }
}
