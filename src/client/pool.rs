//! A pool of kept-alive connections to one or more backends.
//!
//! Owns: per-backend idle lists and counts, the bound on connections, idle expiry, the FIFO
//! queue of callers waiting for a connection, backend choice (round-robin, least-busy,
//! affinity by key) and health marking. A leased connection is used without any pool lock
//! held, so a long streaming response holds only its own connection and never delays others
//! (the per-connection-mutex stall of a round-robin `Vec<Mutex<Client>>` cannot happen).

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use std::thread::Thread;

use super::response::{ConnRef, StartFailure};

/// Times a request is sent again after a reused connection turned out closed.
const MAX_STALE_RETRIES: usize = 3;
use super::{connection::ConnState, TimeoutKind};
use super::{
    get_values, Address, BackendValues, Config, Connection, Error, MuxConnection, Request, Response,
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
    /// The bound on busy plus idle connections.
    pub limit: usize,
    /// False while the backend is marked down after a failed connect.
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
///     .idle_timeout(Duration::from_secs(10))
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
    idle_timeout: Duration,
    wait_timeout: Option<Duration>,
    retry_after: Duration,
    balance: Balance,
    learn_limits: bool,
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

    /// How long an idle connection is kept. Default 30 s.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::client::Pool::builder().idle_timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn idle_timeout(mut self, t: Duration) -> PoolBuilder {
        self.idle_timeout = t;
        self
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

    /// How long a backend whose connect failed is left out before it is tried again.
    /// Default 5 s.
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
        let slots = self
            .backends
            .iter()
            .map(|b| Slot {
                idle: Vec::new(),
                busy: 0,
                limit: b.max_conns.unwrap_or(self.max_per_backend),
                limits_learned: !self.learn_limits,
                mux_reqs: b.mux_reqs,
                mux: None,
                mux_connecting: false,
                down_until: None,
                connects: 0,
                reuses: 0,
                failures: 0,
            })
            .collect();
        let shared = Arc::new(Shared {
            backends: self.backends,
            config: self.config,
            idle_timeout: self.idle_timeout,
            wait_timeout: self.wait_timeout,
            retry_after: self.retry_after,
            balance: self.balance,
            state: Mutex::new(State {
                slots,
                queue: VecDeque::new(),
                next_ticket: 0,
                rr: 0,
            }),
        });
        let weak = Arc::downgrade(&shared);
        let every =
            (self.idle_timeout / 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        // Without the thread (spawn failed), idle connections are still expired lazily.
        let _ = std::thread::Builder::new()
            .name("fcgi-pool-reaper".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                shared.close_idle(false);
            });
        Pool { shared }
    }
}

#[derive(Debug)]
struct Slot {
    idle: Vec<(Connection, Instant)>,
    busy: usize,
    limit: usize,
    limits_learned: bool,
    mux_reqs: Option<usize>,
    mux: Option<MuxConnection>,
    mux_connecting: bool,
    down_until: Option<Instant>,
    connects: u64,
    reuses: u64,
    failures: u64,
}

impl Slot {
    fn healthy(&self, now: Instant) -> bool {
        self.down_until.is_none_or(|t| now >= t)
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

/// What a caller got from the pool.
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
struct Shared {
    backends: Vec<Backend>,
    config: Config,
    idle_timeout: Duration,
    wait_timeout: Option<Duration>,
    retry_after: Duration,
    balance: Balance,
    state: Mutex<State>,
}

impl Shared {
    /// Closes idle connections that expired or were closed by the backend (all of them
    /// with `all`); wakes waiters, since each one closed frees a place.
    fn close_idle(&self, all: bool) {
        let mut closed = Vec::new();
        let mut st = self.state.lock();
        for slot in &mut st.slots {
            let mut i = 0;
            while i < slot.idle.len() {
                let (conn, since) = &mut slot.idle[i];
                if all || since.elapsed() >= self.idle_timeout || !conn.is_reusable() {
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
}

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
/// spinning)
/// up to the wait timeout. Idle connections expire after the idle timeout and are checked
/// for a backend-side close before reuse. A backend whose connect fails is left out for
/// `retry_after`, then tried again. Requests with an affinity key go to the same healthy
/// backend every time (rendezvous hashing), so a session stays where its state is.
///
/// `Pool` is cheap to clone (an `Arc`) and `Send + Sync`.
///
/// # Example
///
/// ```no_run
/// use std::io::Read;
/// use fcgi::client::{Backend, Pool, Request};
/// let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
/// let worker = {
///     let pool = pool.clone();
///     std::thread::spawn(move || -> Result<u16, fcgi::client::Error> {
///         let resp = pool.send(Request::new().param("SCRIPT_FILENAME", "/srv/a.php"), std::io::empty())?;
///         Ok(resp.status())
///     })
/// };
/// let mut resp = pool.send_keyed(b"session-42", Request::new(), std::io::empty())?;
/// std::io::copy(&mut resp, &mut std::io::stdout())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// A builder with the defaults (8 connections per backend, 30 s idle, 10 s wait, 5 s
    /// retry, round-robin).
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
            idle_timeout: Duration::from_secs(30),
            wait_timeout: Some(Duration::from_secs(10)),
            retry_after: Duration::from_secs(5),
            balance: Balance::RoundRobin,
            learn_limits: false,
        }
    }

    /// Sends a request on a pooled connection; see [`Connection::send`]. The connection
    /// returns to the pool when the response is read to its end (or is closed when the
    /// response is dropped early).
    ///
    /// # Errors
    ///
    /// As [`Pool::get`] and [`Connection::send`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use fcgi::client::{Backend, Pool, Request};
    /// # let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
    /// let status = pool.send(Request::new(), std::io::empty())?.finish()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send<'a, R: Read + Send + 'a>(
        &self,
        request: Request,
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
    /// # use fcgi::client::{Backend, Pool, Request};
    /// # let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
    /// let resp = pool.send_keyed(b"PHPSESSID=abc", Request::new(), std::io::empty())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_keyed<'a, R: Read + Send + 'a>(
        &self,
        key: &[u8],
        request: Request,
        body: R,
    ) -> Result<Response<'a>, Error> {
        self.send_inner(Some(key), request, Box::new(body))
    }

    /// Sends on a leased connection. A kept-alive connection the backend closed while it was
    /// idle (e.g. PHP-FPM's `pm.max_requests` recycling a worker) fails before any byte of
    /// the body is read; the request is then sent again on another connection.
    fn send_inner<'a>(
        &self,
        key: Option<&[u8]>,
        mut request: Request,
        mut body: Box<dyn Read + Send + 'a>,
    ) -> Result<Response<'a>, Error> {
        let mut attempts = 0;
        loop {
            let conn = match self.acquire(key, true)? {
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
                    return res;
                }
            };
            let reused = conn.requests() > 0;
            match Response::try_start(ConnRef::Pooled(conn), request, body) {
                Ok(resp) => return Ok(resp),
                Err(StartFailure {
                    retry: Some(retry), ..
                }) if reused && attempts < MAX_STALE_RETRIES => {
                    attempts += 1;
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
    /// # use fcgi::client::{Backend, Pool, Request};
    /// # let pool = Pool::builder().backend(Backend::new("127.0.0.1:9000".parse()?)).build();
    /// let mut conn = pool.get()?;
    /// conn.send(Request::new(), std::io::empty())?.finish()?;
    /// conn.send(Request::new(), std::io::empty())?.finish()?; // same connection
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
            Lease::Conn(conn) => Ok(conn),
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
                                slot.down_until = None;
                                slot.mux = Some(mux.clone());
                                return Ok(Lease::Mux(b, mux));
                            }
                            Err(e) => {
                                slot.failures += 1;
                                slot.down_until = Some(Instant::now() + shared.retry_after);
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
                            Ok(conn) => {
                                slot.connects += 1;
                                slot.down_until = None;
                                return Ok(Lease::Conn(self.lease(b, conn)));
                            }
                            Err(e) => {
                                slot.busy -= 1;
                                slot.failures += 1;
                                slot.down_until = Some(Instant::now() + shared.retry_after);
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
        let now = Instant::now();
        match key {
            Some(k) => self
                .affinity_backend(st, k, now)
                .is_some_and(|b| st.slots[b].has_room(mux)),
            None => st.slots.iter().any(|s| s.healthy(now) && s.has_room(mux)),
        }
    }

    /// The healthy backend with the highest rendezvous hash for `key`.
    fn affinity_backend(&self, st: &State, key: &[u8], now: Instant) -> Option<usize> {
        (0..st.slots.len())
            .filter(|&i| st.slots[i].healthy(now))
            .max_by_key(|&i| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                self.shared.backends[i].addr.hash(&mut h);
                h.finish()
            })
    }

    fn choose(&self, st: &mut State, key: Option<&[u8]>, mux: bool) -> Choice {
        let now = Instant::now();
        let n = st.slots.len();
        let pick = match key {
            Some(k) => match self.affinity_backend(st, k, now) {
                None => return Choice::NoneHealthy,
                Some(b) if st.slots[b].has_room(mux) => b,
                Some(_) => return Choice::Wait,
            },
            None => {
                if !st.slots.iter().any(|s| s.healthy(now)) {
                    return Choice::NoneHealthy;
                }
                let start = st.rr;
                let candidates = (0..n)
                    .map(|i| (start + i) % n)
                    .filter(|&i| st.slots[i].healthy(now) && st.slots[i].has_room(mux));
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
        let idle_timeout = self.shared.idle_timeout;
        let slot = &mut st.slots[pick];
        if mux && slot.mux_reqs.is_some() {
            return match &slot.mux {
                Some(m) if !m.is_broken() => Choice::Mux(pick, m.clone()),
                _ => Choice::MuxConnect(pick),
            };
        }
        while let Some((mut conn, since)) = slot.idle.pop() {
            if since.elapsed() < idle_timeout && conn.is_reusable() {
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
        let now = Instant::now();
        let st = self.shared.state.lock();
        st.slots
            .iter()
            .zip(&self.shared.backends)
            .map(|(s, b)| BackendStats {
                addr: b.addr.clone(),
                busy: s.load(),
                idle: s.idle.len(),
                limit: s.limit,
                healthy: s.healthy(now),
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
/// # use fcgi::client::{Backend, Pool, Request};
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
        let keep = conn
            .as_mut()
            .is_some_and(|c| c.state == ConnState::Idle && c.is_reusable());
        let mut st = self.shared.state.lock();
        let slot = &mut st.slots[self.backend];
        slot.busy -= 1;
        if keep {
            if let Some(c) = conn.take() {
                slot.idle.push((c, Instant::now()));
            }
        }
        wake_front(&st);
        drop(st);
        // A connection not kept is closed here, outside the lock.
        drop(conn);
    }
}

/// Wakes the caller at the front of the wait queue, which alone may take what was freed.
fn wake_front(st: &State) {
    if let Some((_, t)) = st.queue.front() {
        t.unpark();
    }
}
