//! A pool of kept-alive connections to one or more backends.
//!
//! Owns: per-backend idle lists and counts, the bound on connections, idle expiry, the FIFO
//! queue of callers waiting for a connection, backend choice (round-robin, least-busy,
//! affinity by key) and health marking. A leased connection is used without any pool lock
//! held, so a long streaming response holds only its own connection and never delays others
//! (the per-connection-mutex stall of a round-robin `Vec<Mutex<Client>>` cannot happen).

use std::collections::VecDeque;
use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use std::thread::Thread;

use super::response::{ConnRef, StartFailure};

/// Times a request is sent again after its connection failed before any byte went out
/// (a kept connection the backend had closed).
const MAX_STALE_RETRIES: usize = 3;
/// Times an idempotent request is sent again after it may have reached the application.
const MAX_IDEMPOTENT_RETRIES: usize = 1;
/// Upper bound on a probe of a backend marked down (connect, then `FCGI_GET_VALUES`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
use super::{connection::ConnState, TimeoutKind};
use super::{
    get_values, Address, BackendValues, Config, Connection, Error, FcgiRequest, MuxConnection,
    Response,
};

/// One backend of a [`Pool`].
///
/// # Example
///
/// ```
/// use fcgi::client::Backend;
/// let b = Backend::new("127.0.0.1:9000".parse().unwrap()).max_conns(4);
/// assert_eq!(b.address().to_string(), "127.0.0.1:9000");
/// ```
#[derive(Clone, Debug)]
pub struct Backend {
    addr: Address,
    max_conns: Option<usize>,
    mux_reqs: Option<usize>,
}

impl Backend {
    /// A backend at `addr`, bounded by the pool's per-backend maximum.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Backend::new("unix:/run/php/fpm.sock".parse().unwrap());
    /// ```
    pub fn new(addr: Address) -> Backend {
        Backend {
            addr,
            max_conns: None,
            mux_reqs: None,
        }
    }

    /// Sends [`Pool::send`] requests to this backend over one shared connection, up to
    /// `max_reqs` at once ([`super::MuxConnection`]), for backends that multiplex
    /// (`FCGI_MPXS_CONNS=1`). [`PoolBuilder::learn_backend_limits`] turns this on by itself
    /// when the backend says it multiplexes. [`Pool::get`] still leases plain connections.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Backend::new("127.0.0.1:9000".parse().unwrap()).multiplex(16);
    /// ```
    pub fn multiplex(mut self, max_reqs: usize) -> Backend {
        self.mux_reqs = Some(max_reqs.max(1));
        self
    }

    /// Bounds this backend's connections (busy plus idle) to `n` (at least 1).
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Backend::new("127.0.0.1:9000".parse().unwrap()).max_conns(2);
    /// ```
    pub fn max_conns(mut self, n: usize) -> Backend {
        self.max_conns = Some(n.max(1));
        self
    }

    /// The backend's address.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Backend::new("127.0.0.1:9000".parse().unwrap());
    /// assert!(matches!(b.address(), fcgi::client::Address::Tcp(_)));
    /// ```
    pub fn address(&self) -> &Address {
        &self.addr
    }
}

/// How a pool picks a backend for a request without an affinity key.
///
/// # Example
///
/// ```
/// let pool = fcgi::client::Pool::builder().balance(fcgi::client::Balance::LeastBusy).build();
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Balance {
    /// Each request goes to the next healthy backend with room.
    #[default]
    RoundRobin,
    /// Each request goes to the healthy backend with the fewest connections in use.
    LeastBusy,
}

/// A snapshot of one backend's state in a pool.
///
/// # Example
///
/// ```
/// let pool = fcgi::client::Pool::builder()
///     .backend(fcgi::client::Backend::new("127.0.0.1:9".parse().unwrap()))
///     .build();
/// let s = &pool.stats()[0];
/// assert_eq!((s.busy, s.idle, s.healthy), (0, 0, true));
/// assert_eq!((s.limit, s.configured_limit, s.unanswered), (8, 8, 0));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendStats {
    /// The backend's address.
    pub addr: Address,
    /// Connections leased out (or being opened).
    pub busy: usize,
    /// Kept-alive connections waiting for a request.
    pub idle: usize,
    /// The bound on busy plus idle connections now: the configured one, or lower once the
    /// pool learned that the backend accepts fewer connections (see [`Pool`]).
    pub limit: usize,
    /// The configured bound ([`Backend::max_conns`] or
    /// [`PoolBuilder::max_conns_per_backend`]).
    pub configured_limit: usize,
    /// New connections the backend left unanswered while it served its other ones.
    pub unanswered: u64,
    /// Requests whose connection ran out of [`super::Config::io_timeout`].
    pub timeouts: u64,
    /// False while the backend is marked down (after a refused or timed-out connect, or a
    /// timed-out request), until a probe finds it answering again.
    pub healthy: bool,
    /// Connections opened so far.
    pub connects: u64,
    /// Leases served by reusing an idle connection.
    pub reuses: u64,
    /// Failed connects so far.
    pub failures: u64,
    /// True when requests share one multiplexed connection.
    pub multiplexed: bool,
}

/// Builds a [`Pool`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use fcgi::client::{Backend, Pool};
/// let pool = Pool::builder()
///     .backend(Backend::new("127.0.0.1:9000".parse().unwrap()))
///     .backend(Backend::new("127.0.0.1:9001".parse().unwrap()))
///     .max_conns_per_backend(16)
///     .keepalive_timeout(Duration::from_secs(10))
///     .wait_timeout(Some(Duration::from_secs(2)))
///     .retry_after(Duration::from_secs(1))
///     .build();
/// assert_eq!(pool.stats().len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    backends: Vec<Backend>,
    config: Config,
    max_per_backend: usize,
    keepalive_timeout: Duration,
    wait_timeout: Option<Duration>,
    retry_after: Duration,
    balance: Balance,
    learn_limits: bool,
    log: bool,
}

impl PoolBuilder {
    /// Adds a backend.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Pool::builder().backend(fcgi::client::Backend::new("127.0.0.1:9000".parse().unwrap()));
    /// ```
    pub fn backend(mut self, backend: Backend) -> PoolBuilder {
        self.backends.push(backend);
        self
    }

    /// Connection settings for every connection (timeouts, limits, keep-alive).
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Pool::builder().config(fcgi::client::Config::default());
    /// ```
    pub fn config(mut self, config: Config) -> PoolBuilder {
        self.config = config;
        self
    }

    /// The default bound on connections per backend (busy plus idle). Default 8.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Pool::builder().max_conns_per_backend(4);
    /// ```
    pub fn max_conns_per_backend(mut self, n: usize) -> PoolBuilder {
        self.max_per_backend = n.max(1);
        self
    }

    /// How long an idle kept-alive connection stays in the pool before it is closed (so an
    /// idle pool does not pin backend workers), as nginx's upstream `keepalive_timeout`.
    /// Default 30 s. Not to be confused with [`super::Config::io_timeout`], the limit on a
    /// silent wait during a request.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Pool::builder().keepalive_timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn keepalive_timeout(mut self, t: Duration) -> PoolBuilder {
        self.keepalive_timeout = t;
        self
    }

    /// The former name of [`PoolBuilder::keepalive_timeout`].
    ///
    /// # Example
    ///
    /// ```
    /// #![allow(deprecated)]
    /// let b = fcgi::client::Pool::builder().idle_timeout(std::time::Duration::from_secs(5));
    /// ```
    #[deprecated(note = "renamed keepalive_timeout (Config::io_timeout is the I/O limit)")]
    pub fn idle_timeout(self, t: Duration) -> PoolBuilder {
        self.keepalive_timeout(t)
    }

    /// How long a caller waits for a free connection (`None`: forever). Default 10 s.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Pool::builder().wait_timeout(None);
    /// ```
    pub fn wait_timeout(mut self, t: Option<Duration>) -> PoolBuilder {
        self.wait_timeout = t;
        self
    }

    /// How often a backend marked down is probed: a connect when it refused connections, a
    /// `FCGI_GET_VALUES` round trip (bounded by 1 s) when it timed out. It takes requests
    /// again as soon as a probe succeeds. Default 250 ms.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Pool::builder().retry_after(std::time::Duration::from_millis(500));
    /// ```
    pub fn retry_after(mut self, t: Duration) -> PoolBuilder {
        self.retry_after = t;
        self
    }

    /// Whether the pool writes one line to stderr when it lowers a backend's connection
    /// limit, or marks a backend down or up. Default true.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Pool::builder().log(false);
    /// ```
    pub fn log(mut self, on: bool) -> PoolBuilder {
        self.log = on;
        self
    }

    /// The balancing rule for requests without a key. Default round-robin.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Pool::builder().balance(fcgi::client::Balance::RoundRobin);
    /// ```
    pub fn balance(mut self, balance: Balance) -> PoolBuilder {
        self.balance = balance;
        self
    }

    /// Asks each backend for `FCGI_MAX_CONNS` (`FCGI_GET_VALUES`, on a separate connection)
    /// before its first connection, and lowers its bound to that. Default off. PHP-FPM 8.2
    /// does not report `FCGI_MAX_CONNS`: bound its backends to `pm.max_children` with
    /// [`Backend::max_conns`] instead.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Pool::builder().learn_backend_limits(true);
    /// ```
    pub fn learn_backend_limits(mut self, on: bool) -> PoolBuilder {
        self.learn_limits = on;
        self
    }

    /// Builds the pool; no connection is opened until the first request. A background
    /// thread closes idle connections once they pass the idle timeout (so an idle pool does
    /// not pin backend workers); it ends when the pool and its connections are dropped.
    ///
    /// # Example
    ///
    /// ```
    /// let pool = fcgi::client::Pool::builder().build();
    /// assert!(pool.stats().is_empty());
    /// ```
    pub fn build(self) -> Pool {
        let learn_limits = self.learn_limits;
        let max_per_backend = self.max_per_backend;
        let keep_conn = self.config.keep_conn;
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let slots = self
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let limit = b.max_conns.unwrap_or(max_per_backend);
                    Slot {
                        idle: Vec::new(),
                        busy: 0,
                        limit,
                        configured_limit: limit,
                        // An explicit bound is the caller's word: never lowered. Without
                        // keep-alive, a backend's listen queue is where waiting belongs.
                        learn_capacity: b.max_conns.is_none() && keep_conn,
                        limits_learned: !learn_limits,
                        mux_reqs: b.mux_reqs,
                        mux: None,
                        mux_connecting: false,
                        down: None,
                        connects: 0,
                        reuses: 0,
                        failures: 0,
                        unanswered: 0,
                        timeouts: 0,
                        lowered_from: None,
                        watch: Arc::new(Watch {
                            backend: i,
                            pool: weak.clone(),
                            ended: AtomicU64::new(0),
                            answered_open: AtomicUsize::new(0),
                            epoch: AtomicU64::new(0),
                        }),
                    }
                })
                .collect();
            Shared {
                backends: self.backends,
                config: self.config,
                keepalive_timeout: self.keepalive_timeout,
                wait_timeout: self.wait_timeout,
                retry_after: self.retry_after,
                balance: self.balance,
                log: self.log,
                state: Mutex::new(State {
                    slots,
                    queue: VecDeque::new(),
                    next_ticket: 0,
                    rr: 0,
                }),
                background: OnceLock::new(),
            }
        });
        let weak = Arc::downgrade(&shared);
        let every =
            (self.keepalive_timeout / 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        // Without the thread (spawn failed), idle connections are still expired lazily,
        // and a backend marked down is tried again by traffic after `retry_after`.
        if let Ok(handle) = std::thread::Builder::new()
            .name("fcgi-pool-reaper".into())
            .spawn(move || loop {
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let pause = shared.tick(every);
                drop(shared);
                std::thread::park_timeout(pause);
            })
        {
            let _ = shared.background.set(handle.thread().clone());
        }
        Pool { shared }
    }
}

/// Why a backend is marked down.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum DownReason {
    /// A connect failed: a connect probe tells when it is back.
    Refused,
    /// A connect or a request ran out of time: a `FCGI_GET_VALUES` round trip tells.
    TimedOut,
}

#[derive(Debug)]
struct Down {
    reason: DownReason,
    next_probe: Instant,
    probing: bool,
}

#[derive(Debug)]
struct Slot {
    idle: Vec<(Connection, Instant)>,
    busy: usize,
    limit: usize,
    configured_limit: usize,
    learn_capacity: bool,
    limits_learned: bool,
    mux_reqs: Option<usize>,
    mux: Option<MuxConnection>,
    mux_connecting: bool,
    down: Option<Down>,
    connects: u64,
    reuses: u64,
    failures: u64,
    unanswered: u64,
    timeouts: u64,
    /// The bound before it was last lowered, until it is confirmed or undone.
    lowered_from: Option<usize>,
    watch: Arc<Watch>,
}

impl Slot {
    fn healthy(&self) -> bool {
        self.down.is_none()
    }
    fn has_room(&self, mux: bool) -> bool {
        match (mux, self.mux_reqs, &self.mux) {
            // A multiplexed connection queues its own callers for a free request id.
            (true, Some(_), _) => !self.mux_connecting,
            _ => !self.idle.is_empty() || self.busy + self.idle.len() < self.limit,
        }
    }
    /// Requests in flight on this backend.
    fn load(&self) -> usize {
        self.busy + self.mux.as_ref().map_or(0, |m| m.in_flight())
    }
}

/// The pool's view of one backend, shared with its connections: they count the requests
/// it ends and the connections it answered, and report a new connection it leaves
/// unanswered while it serves the others.
///
/// PHP-FPM does not announce `FCGI_MAX_CONNS`, and each of its children holds one kept
/// connection and accepts the next only when that one closes: a pool that opens more
/// connections than it has children leaves the extra ones in its listen queue, where their
/// requests wait for a child that never comes. Such a request cannot be resent (it may run
/// once a child takes it), so the pool lets the backend reach it instead: it lowers its
/// bound for that backend to the connections the backend really answered, which closes
/// kept connections as they come back until the waiting ones are accepted.
#[derive(Debug)]
pub(crate) struct Watch {
    backend: usize,
    pool: Weak<Shared>,
    /// Requests ended (`FCGI_END_REQUEST` read) on this backend.
    pub(crate) ended: AtomicU64,
    /// Open connections on which the backend has sent a record.
    pub(crate) answered_open: AtomicUsize,
    /// Bumped each time the bound is lowered: connections opened before it (under the old
    /// bound) are expected to wait, and their reports lower nothing further.
    pub(crate) epoch: AtomicU64,
}

impl Watch {
    /// A new connection (opened in `epoch`) waited `waited` for its first record while the
    /// backend ended `served` requests on its other connections.
    pub(crate) fn unanswered(&self, waited: Duration, served: u64, epoch: u64) {
        let Some(shared) = self.pool.upgrade() else {
            return;
        };
        let mut st = shared.state.lock();
        let slot = &mut st.slots[self.backend];
        slot.unanswered += 1;
        let answered = self.answered_open.load(Ordering::Relaxed).max(1);
        if !slot.learn_capacity
            || answered >= slot.limit
            || epoch != self.epoch.load(Ordering::Relaxed)
        {
            return;
        }
        self.epoch.fetch_add(1, Ordering::Relaxed);
        let old = slot.limit;
        slot.limit = answered;
        slot.lowered_from = Some(old);
        // Idle connections beyond the new bound close now: each frees a worker that then
        // accepts a waiting connection.
        let mut closed = Vec::new();
        while slot.busy + slot.idle.len() > slot.limit && !slot.idle.is_empty() {
            closed.push(slot.idle.remove(0));
        }
        drop(st);
        drop(closed);
        shared.say(format_args!(
            "backend {} left a new connection unanswered for {} ms while it served {served} \
             requests on its other {answered}: it accepts no more than {answered} connections \
             at once (PHP-FPM: one per child, pm.max_children), not {old}. Lowered this \
             pool's limit to {answered}; set Backend::max_conns({answered}) to match the \
             backend (fcgi-bench -m {answered})",
            shared.backends[self.backend].addr,
            waited.as_millis(),
        ));
    }

    /// A connection reported unanswered got its first record after all: if the backend
    /// now answers more connections than the lowered bound, that request was only slow to
    /// answer (a backend that accepts no more cannot do that); the lowering is undone.
    pub(crate) fn answered_late(&self) {
        let Some(shared) = self.pool.upgrade() else {
            return;
        };
        let mut st = shared.state.lock();
        let slot = &mut st.slots[self.backend];
        let answered = self.answered_open.load(Ordering::Relaxed);
        if !slot.learn_capacity || answered <= slot.limit {
            return;
        }
        let Some(before) = slot.lowered_from.take() else {
            return;
        };
        slot.limit = before.max(answered).min(slot.configured_limit);
        let limit = slot.limit;
        wake_front(&st);
        drop(st);
        shared.say(format_args!(
            "backend {} answered {answered} connections at once after all (a slow first \
             answer, not a full backend): this pool's limit is {limit} again",
            shared.backends[self.backend].addr,
        ));
    }
}

/// What a caller got from the pool.
// Moved once per request, on the stack: boxing the connection would allocate for each.
#[allow(clippy::large_enum_variant)]
enum Lease {
    Conn(PooledConnection),
    Mux(usize, MuxConnection),
}

#[derive(Debug)]
struct State {
    slots: Vec<Slot>,
    /// Waiting callers in arrival order, each with its thread to unpark.
    queue: VecDeque<(u64, Thread)>,
    next_ticket: u64,
    rr: usize,
}

#[derive(Debug)]
pub(crate) struct Shared {
    backends: Vec<Backend>,
    config: Config,
    keepalive_timeout: Duration,
    wait_timeout: Option<Duration>,
    retry_after: Duration,
    balance: Balance,
    log: bool,
    state: Mutex<State>,
    /// The background thread (idle expiry, probes), woken when a backend goes down.
    background: OnceLock<Thread>,
}

impl Shared {
    fn say(&self, args: std::fmt::Arguments<'_>) {
        if self.log {
            eprintln!("fcgi client pool: {args}");
        }
    }

    /// Closes idle connections that expired or were closed by the backend (all of them
    /// with `all`); wakes waiters, since each one closed frees a place.
    fn close_idle(&self, all: bool) {
        let mut closed = Vec::new();
        let mut st = self.state.lock();
        for slot in &mut st.slots {
            let mut i = 0;
            while i < slot.idle.len() {
                let (conn, since) = &mut slot.idle[i];
                if all || since.elapsed() >= self.keepalive_timeout || !conn.is_reusable() {
                    closed.push(slot.idle.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        if !closed.is_empty() {
            wake_front(&st);
        }
        drop(st);
        drop(closed);
    }

    /// Marks backend `b` down for `reason`, and says so (see [`Shared::set_down`]).
    fn mark_down(&self, b: usize, reason: DownReason, why: &dyn std::fmt::Display) {
        let mut st = self.state.lock();
        let (closed, first) = self.set_down(&mut st, b, reason);
        drop(st);
        drop(closed);
        if first {
            self.announce_down(b, why);
        }
    }

    /// Marks backend `b` down for `reason` under the lock. Returns its idle connections,
    /// to be closed outside the lock (they are as suspect as the backend, and on PHP-FPM
    /// they would pin the children a probe needs), and whether it was up until now.
    fn set_down(
        &self,
        st: &mut State,
        b: usize,
        reason: DownReason,
    ) -> (Vec<(Connection, Instant)>, bool) {
        let slot = &mut st.slots[b];
        if reason == DownReason::TimedOut {
            slot.timeouts += 1;
        } else {
            slot.failures += 1;
        }
        let closed = std::mem::take(&mut slot.idle);
        let first = slot.down.is_none();
        match &mut slot.down {
            Some(d) => {
                if reason == DownReason::TimedOut {
                    d.reason = reason;
                }
            }
            None => {
                slot.down = Some(Down {
                    reason,
                    next_probe: Instant::now() + self.retry_after,
                    probing: false,
                })
            }
        }
        wake_front(st);
        (closed, first)
    }

    /// Logs that backend `b` went down and wakes the prober.
    fn announce_down(&self, b: usize, why: &dyn std::fmt::Display) {
        self.say(format_args!(
            "backend {} marked down ({why}); probing it every {} ms",
            self.backends[b].addr,
            self.retry_after.as_millis()
        ));
        if let Some(t) = self.background.get() {
            t.unpark();
        }
    }

    /// Without a background thread (it could not be started), a backend marked down is
    /// tried again by traffic once its probe time has come.
    fn expire_down(&self, st: &mut State) {
        if self.background.get().is_some() {
            return;
        }
        let now = Instant::now();
        for slot in &mut st.slots {
            if slot.down.as_ref().is_some_and(|d| now >= d.next_probe) {
                slot.down = None;
            }
        }
    }

    /// One round of the background thread: idle expiry, then the probes that are due.
    /// Returns how long to sleep.
    fn tick(&self, every: Duration) -> Duration {
        self.close_idle(false);
        let now = Instant::now();
        let due: Vec<(usize, DownReason)> = {
            let mut st = self.state.lock();
            st.slots
                .iter_mut()
                .enumerate()
                .filter_map(|(i, s)| {
                    let d = s.down.as_mut()?;
                    (now >= d.next_probe && !d.probing).then(|| {
                        d.probing = true;
                        (i, d.reason)
                    })
                })
                .collect()
        };
        for (b, reason) in due {
            let alive = self.probe(b, reason);
            let mut st = self.state.lock();
            let slot = &mut st.slots[b];
            if alive {
                slot.down = None;
                wake_front(&st);
                drop(st);
                self.say(format_args!(
                    "backend {} answers again: back in use",
                    self.backends[b].addr
                ));
            } else if let Some(d) = slot.down.as_mut() {
                d.probing = false;
                d.next_probe = Instant::now() + self.retry_after;
            }
        }
        let st = self.state.lock();
        let now = Instant::now();
        let pause = st
            .slots
            .iter()
            .filter_map(|s| s.down.as_ref())
            .map(|d| d.next_probe.saturating_duration_since(now))
            .fold(every, Duration::min);
        drop(st);
        pause
    }

    /// Whether backend `b` answers: a connect for a refused backend; for a timed-out one,
    /// a `FCGI_GET_VALUES` round trip (any answer, even a close, shows a live process; a
    /// stopped one accepts connections in its kernel queue but never reads them).
    fn probe(&self, b: usize, reason: DownReason) -> bool {
        let mut config = self.config.clone();
        config.connect_timeout = Some(
            config
                .connect_timeout
                .map_or(PROBE_TIMEOUT, |t| t.min(PROBE_TIMEOUT)),
        );
        config.io_timeout = Some(PROBE_TIMEOUT);
        config.request_timeout = Some(PROBE_TIMEOUT);
        let Ok(mut conn) = Connection::connect(&self.backends[b].addr, &config) else {
            return false;
        };
        if reason == DownReason::Refused {
            return true;
        }
        !matches!(
            conn.get_values(),
            Err(Error::Timeout(_) | Error::Connect { .. })
        )
    }
}

// Moved once per request, on the stack: boxing the connection would allocate for each.
#[allow(clippy::large_enum_variant)]
enum Choice {
    Idle(usize, Connection),
    Connect(usize),
    Mux(usize, MuxConnection),
    MuxConnect(usize),
    Wait,
    NoneHealthy,
}

/// Connections to one or more FastCGI backends, kept alive and shared by threads.
///
/// Each backend has a bound on its connections. A caller that finds every allowed
/// connection in use waits in a FIFO queue (parked, and woken only when first in line; never
/// spinning) up to the wait timeout. A connection goes back to the pool as soon as its
/// response's last record is read. Idle connections close after the keep-alive timeout and
/// are checked for a backend-side close before reuse. Requests with an affinity key go to
/// the same healthy backend every time ([`rendezvous_score`]), so a session stays where its
/// state is.
///
/// **At most once.** A request goes out again only when the application cannot have seen it
/// (the kept connection was found closed before a byte was written), or when it is
/// [idempotent](FcgiRequest::idempotent) and its connection closed or timed out before any
/// answer; errors say which ([`Error::may_have_run`]).
///
/// **Capacity learned from behaviour.** PHP-FPM does not announce `FCGI_MAX_CONNS`, and each
/// child holds one kept connection: connections beyond `pm.max_children` wait in its listen
/// queue for a child that never comes. When a new connection gets no answer for 250 ms
/// while the backend serves its other ones, the pool does not resend its request (it runs
/// once a child takes the connection); it lowers its bound for that backend to the
/// connections that were answered, closes kept connections beyond it as they come back (a
/// child then accepts the waiting one), counts it in [`BackendStats::unanswered`] and logs
/// one line naming the `max_conns` to set. A bound set with [`Backend::max_conns`] is never
/// lowered. For PHP-FPM, set `Backend::max_conns` to `pm.max_children` (and use
/// `pm.status_path` to watch `max children reached` and `listen queue`).
///
/// **Health from behaviour.** A backend whose connect fails, or whose request gets no byte
/// within [`Config::io_timeout`], is marked down and left out; a background thread probes
/// it every `retry_after` (a connect, or a `FCGI_GET_VALUES` round trip after a timeout, so
/// that a stopped process is not taken for a live one) and it takes requests again as soon
/// as a probe succeeds.
///
/// `Pool` is cheap to clone (an `Arc`) and `Send + Sync`.
///
/// # Example
///
/// ```no_run
/// use std::io::Read;
/// use fcgi::client::{Backend, Pool, FcgiRequest};
/// let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
/// let worker = {
///     let pool = pool.clone();
///     std::thread::spawn(move || -> Result<u16, fcgi::client::Error> {
///         let resp = pool.send(FcgiRequest::new().param("SCRIPT_FILENAME", "/srv/a.php"), std::io::empty())?;
///         Ok(resp.status())
///     })
/// };
/// let mut resp = pool.send_keyed(b"session-42", FcgiRequest::new(), std::io::empty())?;
/// std::io::copy(&mut resp, &mut std::io::stdout())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// A builder with the defaults (8 connections per backend, lowered to what a backend
    /// really accepts; 30 s keep-alive; 10 s wait; probes every 250 ms; round-robin).
    ///
    /// # Example
    ///
    /// ```
    /// let pool = fcgi::client::Pool::builder().build();
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            backends: Vec::new(),
            config: Config::default(),
            max_per_backend: 8,
            keepalive_timeout: Duration::from_secs(30),
            wait_timeout: Some(Duration::from_secs(10)),
            retry_after: Duration::from_millis(250),
            balance: Balance::RoundRobin,
            learn_limits: false,
            log: true,
        }
    }

    /// Sends a request on a pooled connection; see [`Connection::send`]. The connection
    /// returns to the pool as soon as the response's last record is read (reading it to its
    /// end, or [`Response::finish`]), even while the [`Response`] is kept; a response dropped
    /// early closes it.
    ///
    /// The request is sent at most once unless it is idempotent: it goes out again, on
    /// another connection, only when the application cannot have seen it (a kept connection
    /// the backend had closed, found before any byte was written) or, for an
    /// [idempotent](FcgiRequest::is_idempotent) request whose body was not read yet, once
    /// after its connection closed or timed out before any answer.
    ///
    /// # Errors
    ///
    /// As [`Pool::get`] and [`Connection::send`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Backend, Pool, FcgiRequest};
    /// # let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
    /// let status = pool.send(FcgiRequest::new(), std::io::empty())?.finish()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send<'a, R: Read + Send + 'a>(
        &self,
        request: FcgiRequest,
        body: R,
    ) -> Result<Response<'a>, Error> {
        self.send_inner(None, request, Box::new(body))
    }

    /// Like [`Pool::send`], with an affinity key: requests with the same key go to the same
    /// backend while it is healthy.
    ///
    /// # Errors
    ///
    /// As [`Pool::send`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Backend, Pool, FcgiRequest};
    /// # let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
    /// let resp = pool.send_keyed(b"PHPSESSID=abc", FcgiRequest::new(), std::io::empty())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_keyed<'a, R: Read + Send + 'a>(
        &self,
        key: &[u8],
        request: FcgiRequest,
        body: R,
    ) -> Result<Response<'a>, Error> {
        self.send_inner(Some(key), request, Box::new(body))
    }

    /// Sends on a leased connection, again on another one when that is safe (see
    /// [`Pool::send`]).
    fn send_inner<'a>(
        &self,
        key: Option<&[u8]>,
        mut request: FcgiRequest,
        mut body: Box<dyn Read + Send + 'a>,
    ) -> Result<Response<'a>, Error> {
        let idempotent = request.is_idempotent();
        let (mut stale, mut resent) = (0, 0);
        let mut failed: Option<Error> = None;
        loop {
            let lease = match self.acquire(key, true) {
                Ok(lease) => lease,
                // A second attempt found no backend: the first failure says more.
                Err(e) => return Err(failed.unwrap_or(e)),
            };
            let conn = match lease {
                Lease::Conn(conn) => conn,
                Lease::Mux(b, mux) => {
                    let res = mux.send(request, body);
                    if res.is_err() && mux.is_broken() {
                        // Let the next request open a new shared connection.
                        let mut st = self.shared.state.lock();
                        let slot = &mut st.slots[b];
                        if slot.mux.as_ref().is_some_and(|m| m.is_broken()) {
                            slot.mux = None;
                        }
                    }
                    return res.map(|mut r| {
                        r.set_backend(b);
                        r
                    });
                }
            };
            match Response::try_start(ConnRef::Pooled(Box::new(conn)), request, body) {
                Ok(resp) => return Ok(resp),
                Err(StartFailure {
                    error,
                    retry: Some(retry),
                }) => {
                    let again = match &error {
                        // Certainly not seen by the application.
                        Error::NotSent(_) => {
                            stale += 1;
                            stale <= MAX_STALE_RETRIES
                        }
                        // May have run: only an idempotent request goes again.
                        Error::BackendClosed { .. }
                        | Error::Io(_)
                        | Error::Timeout(TimeoutKind::Io)
                            if idempotent =>
                        {
                            resent += 1;
                            resent <= MAX_IDEMPOTENT_RETRIES
                        }
                        _ => false,
                    };
                    if !again {
                        return Err(error);
                    }
                    failed = Some(error);
                    (request, body) = *retry;
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// Leases a connection (reused or new); it returns to the pool when dropped, if it is
    /// still reusable.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]`(`[`TimeoutKind::PoolWait`]`)` when none frees up in time,
    /// [`Error::NoBackend`] when every backend is marked down, and the connect error of the
    /// last backend tried.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Backend, Pool, FcgiRequest};
    /// # let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
    /// let mut conn = pool.get()?;
    /// conn.send(FcgiRequest::new(), std::io::empty())?.finish()?;
    /// conn.send(FcgiRequest::new(), std::io::empty())?.finish()?; // same connection
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> Result<PooledConnection, Error> {
        self.get_keyed(None)
    }

    /// Leases a connection to the backend chosen for `key` (see [`Pool::send_keyed`]).
    ///
    /// # Errors
    ///
    /// As [`Pool::get`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Backend, Pool};
    /// # let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
    /// let a = pool.get_keyed(Some(b"user-7"))?.backend();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_keyed(&self, key: Option<&[u8]>) -> Result<PooledConnection, Error> {
        match self.acquire(key, false)? {
            Lease::Conn(mut conn) => {
                // The caller may start its request much later: that start looks again.
                conn.just_looked = false;
                Ok(conn)
            }
            Lease::Mux(..) => unreachable!("multiplexed leases only when asked for"),
        }
    }

    fn acquire(&self, key: Option<&[u8]>, allow_mux: bool) -> Result<Lease, Error> {
        let shared = &self.shared;
        let deadline = shared.wait_timeout.map(|t| Instant::now() + t);
        let mut last_err: Option<Error> = None;
        let mut st = shared.state.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push_back((ticket, std::thread::current()));
        loop {
            if st.queue.front().map(|w| w.0) == Some(ticket) {
                match self.choose(&mut st, key, allow_mux) {
                    Choice::Idle(b, conn) => {
                        st.queue.pop_front();
                        st.slots[b].busy += 1;
                        st.slots[b].reuses += 1;
                        wake_front(&st);
                        return Ok(Lease::Conn(self.lease(b, conn)));
                    }
                    Choice::Mux(b, mux) => {
                        st.queue.pop_front();
                        st.slots[b].reuses += 1;
                        wake_front(&st);
                        return Ok(Lease::Mux(b, mux));
                    }
                    Choice::MuxConnect(b) => {
                        st.queue.pop_front();
                        st.slots[b].mux_connecting = true;
                        let reqs = st.slots[b].mux_reqs.unwrap_or(1);
                        wake_front(&st);
                        drop(st);
                        let res =
                            MuxConnection::connect(&shared.backends[b].addr, &shared.config, reqs);
                        st = shared.state.lock();
                        wake_front(&st);
                        let slot = &mut st.slots[b];
                        slot.mux_connecting = false;
                        match res {
                            Ok(mux) => {
                                slot.connects += 1;
                                slot.mux = Some(mux.clone());
                                return Ok(Lease::Mux(b, mux));
                            }
                            Err(e) => {
                                let (closed, first) = shared.set_down(&mut st, b, down_reason(&e));
                                MutexGuard::unlocked(&mut st, || {
                                    drop(closed);
                                    if first {
                                        shared.announce_down(b, &e);
                                    }
                                });
                                last_err = Some(e);
                                st.queue.push_front((ticket, std::thread::current()));
                                continue;
                            }
                        }
                    }
                    Choice::Connect(b) => {
                        st.queue.pop_front();
                        st.slots[b].busy += 1;
                        let learn = !st.slots[b].limits_learned;
                        st.slots[b].limits_learned = true;
                        wake_front(&st);
                        drop(st);
                        let addr = &shared.backends[b].addr;
                        let learned = learn.then(|| get_values(addr, &shared.config));
                        let res = Connection::connect(addr, &shared.config);
                        st = shared.state.lock();
                        match learned {
                            Some(Ok(v)) => {
                                let slot = &mut st.slots[b];
                                if let Some(m) = v.max_conns {
                                    slot.limit = slot.limit.min((m as usize).max(1));
                                }
                                if v.mpxs_conns == Some(true) && slot.mux_reqs.is_none() {
                                    slot.mux_reqs = Some(
                                        v.max_reqs.map_or(slot.limit, |r| (r as usize).max(1)),
                                    );
                                }
                            }
                            // Ask again before the next new connection.
                            Some(Err(_)) => st.slots[b].limits_learned = false,
                            None => {}
                        }
                        let slot = &mut st.slots[b];
                        match res {
                            Ok(mut conn) => {
                                slot.connects += 1;
                                conn.epoch = slot.watch.epoch.load(Ordering::Relaxed);
                                conn.watch = Some(Arc::clone(&slot.watch));
                                return Ok(Lease::Conn(self.lease(b, conn)));
                            }
                            Err(e) => {
                                slot.busy -= 1;
                                let (closed, first) = shared.set_down(&mut st, b, down_reason(&e));
                                MutexGuard::unlocked(&mut st, || {
                                    drop(closed);
                                    if first {
                                        shared.announce_down(b, &e);
                                    }
                                });
                                last_err = Some(e);
                                wake_front(&st);
                                // Try another backend at once, ahead of the queue.
                                st.queue.push_front((ticket, std::thread::current()));
                                continue;
                            }
                        }
                    }
                    Choice::NoneHealthy => {
                        st.queue.pop_front();
                        wake_front(&st);
                        return Err(last_err.unwrap_or(Error::NoBackend));
                    }
                    Choice::Wait => {}
                }
            }
            // Parked until the caller ahead leaves the queue or a connection frees up:
            // only the front of the queue is woken, never the whole herd.
            let timed_out = MutexGuard::unlocked(&mut st, || match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now < d {
                        std::thread::park_timeout(d - now);
                    }
                    Instant::now() >= d
                }
                None => {
                    std::thread::park();
                    false
                }
            });
            if timed_out
                && !(st.queue.front().map(|w| w.0) == Some(ticket)
                    && self.can_serve(&st, key, allow_mux))
            {
                st.queue.retain(|w| w.0 != ticket);
                wake_front(&st);
                return Err(Error::Timeout(TimeoutKind::PoolWait));
            }
        }
    }

    fn lease(&self, backend: usize, conn: Connection) -> PooledConnection {
        PooledConnection {
            conn: Some(conn),
            shared: Arc::clone(&self.shared),
            backend,
        }
    }

    fn can_serve(&self, st: &State, key: Option<&[u8]>, mux: bool) -> bool {
        match key {
            Some(k) => self
                .affinity_backend(st, k)
                .is_some_and(|b| st.slots[b].has_room(mux)),
            None => st.slots.iter().any(|s| s.healthy() && s.has_room(mux)),
        }
    }

    /// The healthy backend with the highest rendezvous score for `key` (see
    /// [`rendezvous_score`]).
    fn affinity_backend(&self, st: &State, key: &[u8]) -> Option<usize> {
        (0..st.slots.len())
            .filter(|&i| st.slots[i].healthy())
            .max_by_key(|&i| rendezvous_score(&self.shared.backends[i].addr, key))
    }

    fn choose(&self, st: &mut State, key: Option<&[u8]>, mux: bool) -> Choice {
        self.shared.expire_down(st);
        let n = st.slots.len();
        let pick = match key {
            Some(k) => match self.affinity_backend(st, k) {
                None => return Choice::NoneHealthy,
                Some(b) if st.slots[b].has_room(mux) => b,
                Some(_) => return Choice::Wait,
            },
            None => {
                if !st.slots.iter().any(|s| s.healthy()) {
                    return Choice::NoneHealthy;
                }
                let start = st.rr;
                let candidates = (0..n)
                    .map(|i| (start + i) % n)
                    .filter(|&i| st.slots[i].healthy() && st.slots[i].has_room(mux));
                let chosen = match self.shared.balance {
                    Balance::LeastBusy => candidates.min_by_key(|&i| st.slots[i].load()),
                    Balance::RoundRobin => candidates.into_iter().next(),
                };
                match chosen {
                    Some(b) => {
                        st.rr = (b + 1) % n;
                        b
                    }
                    None => return Choice::Wait,
                }
            }
        };
        let keepalive_timeout = self.shared.keepalive_timeout;
        let slot = &mut st.slots[pick];
        if mux && slot.mux_reqs.is_some() {
            return match &slot.mux {
                Some(m) if !m.is_broken() => Choice::Mux(pick, m.clone()),
                _ => Choice::MuxConnect(pick),
            };
        }
        while let Some((mut conn, since)) = slot.idle.pop() {
            if since.elapsed() < keepalive_timeout && conn.is_reusable() {
                conn.just_looked = true;
                return Choice::Idle(pick, conn);
            }
            // Expired or closed by the backend: dropping closes it, freeing a place.
        }
        if slot.busy < slot.limit {
            Choice::Connect(pick)
        } else {
            Choice::Wait
        }
    }

    /// Asks each backend for its limits (`FCGI_GET_VALUES`, on a separate connection) and
    /// lowers the pool's bound for a backend to its `FCGI_MAX_CONNS` when that is smaller.
    ///
    /// # Errors
    ///
    /// Each backend's result is returned in order; a failure changes nothing for it.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Backend, Pool};
    /// let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
    /// for r in pool.refresh_limits() {
    ///     println!("{:?}", r.map(|v| v.max_conns));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refresh_limits(&self) -> Vec<Result<BackendValues, Error>> {
        let results: Vec<_> = self
            .shared
            .backends
            .iter()
            .map(|b| get_values(&b.addr, &self.shared.config))
            .collect();
        let mut st = self.shared.state.lock();
        for (slot, r) in st.slots.iter_mut().zip(&results) {
            if let Ok(BackendValues {
                max_conns: Some(m), ..
            }) = r
            {
                slot.limit = slot.limit.min((*m as usize).max(1));
            }
        }
        results
    }

    /// Closes every idle connection now (e.g. before a backend reload); leased ones are not
    /// affected.
    ///
    /// # Example
    ///
    /// ```
    /// let pool = fcgi::client::Pool::builder().build();
    /// pool.close_idle();
    /// ```
    pub fn close_idle(&self) {
        self.shared.close_idle(true);
    }

    /// Callers waiting in [`Pool::get`] (or `send`) for a connection now, in the FIFO queue
    /// that serves them in arrival order.
    ///
    /// # Example
    ///
    /// ```
    /// let pool = fcgi::client::Pool::builder()
    ///     .backend(fcgi::client::Backend::new("127.0.0.1:9".parse().unwrap()))
    ///     .build();
    /// assert_eq!(pool.waiting(), 0);
    /// ```
    pub fn waiting(&self) -> usize {
        self.shared.state.lock().queue.len()
    }

    /// A snapshot of every backend's counters, in the order they were added.
    ///
    /// # Example
    ///
    /// ```
    /// let pool = fcgi::client::Pool::builder()
    ///     .backend(fcgi::client::Backend::new("127.0.0.1:9".parse().unwrap()).max_conns(3))
    ///     .build();
    /// assert_eq!(pool.stats()[0].limit, 3);
    /// ```
    pub fn stats(&self) -> Vec<BackendStats> {
        let st = self.shared.state.lock();
        st.slots
            .iter()
            .zip(&self.shared.backends)
            .map(|(s, b)| BackendStats {
                addr: b.addr.clone(),
                busy: s.load(),
                idle: s.idle.len(),
                limit: s.limit,
                configured_limit: s.configured_limit,
                unanswered: s.unanswered,
                timeouts: s.timeouts,
                healthy: s.healthy(),
                connects: s.connects,
                reuses: s.reuses,
                failures: s.failures,
                multiplexed: s.mux_reqs.is_some(),
            })
            .collect()
    }
}

/// A connection leased from a [`Pool`]; derefs to [`Connection`]. Dropping it returns it
/// to the pool if it is still reusable, and closes it otherwise.
///
/// # Example
///
/// ```no_run
/// # use fcgi::client::{Backend, Pool, FcgiRequest};
/// # let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
/// let mut conn = pool.get()?;
/// println!("backend #{} at {}", conn.backend(), conn.address());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PooledConnection {
    conn: Option<Connection>,
    shared: Arc<Shared>,
    backend: usize,
}

impl PooledConnection {
    /// The index of the backend (in the order added to the builder).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Backend, Pool};
    /// # let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
    /// assert_eq!(pool.get()?.backend(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backend(&self) -> usize {
        self.backend
    }
}

impl Deref for PooledConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let mut conn = self.conn.take();
        let reusable = conn
            .as_mut()
            .is_some_and(|c| c.state == ConnState::Idle && c.is_reusable());
        let timed_out = conn.as_ref().is_some_and(|c| c.timed_out);
        let mut st = self.shared.state.lock();
        let slot = &mut st.slots[self.backend];
        slot.busy -= 1;
        // Kept only within the bound, which may have been lowered since it was opened: a
        // connection closed here lets the backend accept one that waits.
        if reusable && !timed_out && slot.busy + slot.idle.len() < slot.limit {
            if let Some(c) = conn.take() {
                slot.idle.push((c, Instant::now()));
            }
        }
        wake_front(&st);
        drop(st);
        // A connection not kept is closed here, outside the lock.
        drop(conn);
        if timed_out {
            self.shared.mark_down(
                self.backend,
                DownReason::TimedOut,
                &"a request got no byte within the I/O timeout",
            );
        }
    }
}

/// How a failed connect marks its backend down.
fn down_reason(e: &Error) -> DownReason {
    match e {
        Error::Timeout(_) => DownReason::TimedOut,
        _ => DownReason::Refused,
    }
}

/// The score of `addr` for affinity `key` in the pool's rendezvous (highest random weight)
/// hashing: a request with a key goes to the healthy backend with the highest score, so a
/// key stays on its backend while it is up, and when a backend leaves or comes back only
/// the keys it scores highest for move.
///
/// The score is 64-bit FNV-1a (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`)
/// over the address as displayed (`127.0.0.1:9000`, `unix:/run/php/fpm.sock`), one zero
/// byte and the key, finished with SplitMix64's mixing step (so that keys differing in
/// their last byte spread over backends). It has no random seed and is fixed by this
/// documentation: every build of every version gives the same score, so several proxies
/// built apart send a key to the same backend.
///
/// # Example
///
/// ```
/// use fcgi::client::{rendezvous_score, Address};
/// let a: Address = "127.0.0.1:9000".parse().unwrap();
/// let b: Address = "127.0.0.1:9001".parse().unwrap();
/// assert_eq!(rendezvous_score(&a, b"session-42"), 0x3180_61f7_6b50_0a16);
/// assert_ne!(rendezvous_score(&a, b"session-42"), rendezvous_score(&b, b"session-42"));
/// ```
pub fn rendezvous_score(addr: &Address, key: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let name = addr.to_string();
    let mut h = OFFSET;
    for &b in name.as_bytes().iter().chain(&[0u8]).chain(key) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    // SplitMix64's finalizer.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Wakes the caller at the front of the wait queue, which alone may take what was freed.
fn wake_front(st: &State) {
    if let Some((_, t)) = st.queue.front() {
        t.unpark();
    }
}
