//! The application side: a blocking FastCGI server with a bounded worker pool.
//!
//! A [`Server`] listens (TCP, Unix socket, the socket inherited on fd 0, or systemd socket
//! activation), and runs a handler `Fn(&mut Request) -> io::Result<()>` for each request on
//! one of its worker threads. One thread (the caller of [`Server::serve`]) polls the
//! listening sockets and the idle kept-alive connections; a connection is handed to a worker
//! only when its next request arrives, so the pool bounds requests in flight, not
//! connections. When every worker is busy and the queue is full, new requests are refused
//! at once with `Status: 503` and `FCGI_OVERLOADED`.
//!
//! When the process was not started as a FastCGI application (no listening socket on fd 0,
//! no socket activation), [`Server::from_env`] runs the handler once as a plain CGI program.
//!
//! # Example
//!
//! ```no_run
//! use std::io::Write;
//! fcgi::Server::bind("127.0.0.1:9000")?
//!     .workers(8)
//!     .serve(|req| {
//!         req.stdout().write_all(b"Content-Type: text/plain\r\n\r\nHello, World!")
//!     })
//! # ; Ok::<(), std::io::Error>(())
//! ```

mod acceptor;
mod listener;
mod request;
mod response;

pub use crate::net::{Address, DEFAULT_BACKLOG};
pub use acceptor::Acceptor;
pub use listener::{AllowList, Listener};
pub use request::{Input, Request, Stderr, Stdout};
pub use response::reason_phrase;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::engine::{Counters, Engine, Limits, Options};
use crate::protocol::ParamsLimits;
use crate::sys::epoll::EventFd;

/// Tunables of a [`Server`]; every setter of [`Server`] writes one of these fields.
///
/// # Example
///
/// ```
/// let c = fcgi::server::Config::default();
/// assert_eq!(c.workers, 16);
/// assert!(!c.multiplex);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Worker threads, i.e. requests handled at once (answered as `FCGI_MAX_REQS`). Default 16.
    /// A connection is accepted only while a worker is free to take its request; the
    /// others wait in the kernel's listen queue (where other processes on the same socket
    /// can take them).
    pub workers: usize,
    /// Connections kept open at once (answered as `FCGI_MAX_CONNS`); past it, new
    /// connections wait in the listen backlog. Default 1024.
    pub max_conns: usize,
    /// Run several requests of one connection concurrently (`FCGI_MPXS_CONNS=1`). Default off:
    /// a concurrent BEGIN_REQUEST is answered `FCGI_CANT_MPX_CONN`.
    pub multiplex: bool,
    /// Concurrent requests per multiplexed connection. Default 32.
    pub max_reqs_per_conn: usize,
    /// Limits on the params of one request. Default 1 MiB and 4096 pairs; past them the
    /// request is answered `431` without running.
    pub params: ParamsLimits,
    /// Bytes of params that request heads still arriving may hold together, over every
    /// connection; a request that would pass it is refused with `503`. Default 64 MiB.
    pub head_budget: usize,
    /// The deadline for a whole request head (BEGIN_REQUEST and all params) once its first
    /// byte arrived, and how long a request may wait for the next bytes of its body. Heads
    /// are read by the engine, never by a worker. Default 60 s, nginx's own
    /// `fastcgi_send_timeout`.
    pub read_timeout: Option<Duration>,
    /// How long a write may wait for the web server to take more of a response (time
    /// without progress, like nginx's `send_timeout`); past it the request is aborted and
    /// the connection closed. Default 60 s.
    pub write_timeout: Option<Duration>,
    /// Idle connections (kept-alive between requests, or new and silent) are closed after
    /// this long, so silent peers cannot hold every connection slot. Default 300 s, well
    /// past nginx's 60 s upstream `keepalive_timeout`, so nginx closes first.
    pub idle_timeout: Option<Duration>,
    /// How long a graceful shutdown waits for requests in flight. Default 30 s.
    pub shutdown_timeout: Duration,
    /// The allow-list of web server addresses. `None` (the default) means the one in the
    /// environment variable `FCGI_WEB_SERVER_ADDRS`, if set: replacing the configuration
    /// never drops it.
    pub allow: Option<AllowList>,
    /// Stop gracefully on SIGTERM and SIGUSR1. Default on.
    pub handle_signals: bool,
    /// Write protocol errors and refusals to the process's stderr. Default on.
    pub log_errors: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 16,
            max_conns: 1024,
            multiplex: false,
            max_reqs_per_conn: 32,
            params: ParamsLimits::default(),
            head_budget: 64 << 20,
            read_timeout: Some(Duration::from_secs(60)),
            write_timeout: Some(Duration::from_secs(60)),
            idle_timeout: Some(Duration::from_secs(300)),
            shutdown_timeout: Duration::from_secs(30),
            allow: None,
            handle_signals: true,
            log_errors: true,
        }
    }
}

impl Config {
    /// Applies the environment variables a deployment sets, when they are set and valid:
    /// `FCGI_WORKERS`, `FCGI_MAX_CONNS`, `FCGI_MPXS_CONNS` (`1` turns multiplexing on),
    /// `FCGI_READ_TIMEOUT`, `FCGI_WRITE_TIMEOUT` and `FCGI_IDLE_TIMEOUT` (seconds, `0` for
    /// none), `FCGI_PARAMS_MAX_BYTES` and `FCGI_PARAMS_MAX_PAIRS`. The C library reads the
    /// same variables.
    ///
    /// # Example
    ///
    /// ```
    /// let mut c = fcgi::server::Config::default();
    /// c.apply_env();
    /// assert!(c.workers >= 1);
    /// ```
    pub fn apply_env(&mut self) {
        let num = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let secs = |v: u64| (v > 0).then(|| Duration::from_secs(v));
        if let Some(n) = num("FCGI_WORKERS") {
            self.workers = (n as usize).max(1);
        }
        if let Some(n) = num("FCGI_MAX_CONNS") {
            self.max_conns = (n as usize).max(1);
        }
        if let Some(n) = num("FCGI_MPXS_CONNS") {
            self.multiplex = n == 1;
        }
        if let Some(n) = num("FCGI_READ_TIMEOUT") {
            self.read_timeout = secs(n);
        }
        if let Some(n) = num("FCGI_WRITE_TIMEOUT") {
            self.write_timeout = secs(n);
        }
        if let Some(n) = num("FCGI_IDLE_TIMEOUT") {
            self.idle_timeout = secs(n);
        }
        if let Some(n) = num("FCGI_PARAMS_MAX_BYTES") {
            self.params.max_bytes = n as usize;
        }
        if let Some(n) = num("FCGI_PARAMS_MAX_PAIRS") {
            self.params.max_pairs = n as usize;
        }
    }

    /// The engine's options; `env_allow` is the environment's allow-list, used when the
    /// configuration sets none.
    pub(crate) fn engine_options(&self, env_allow: Option<AllowList>) -> Options {
        let mut limits = Limits::new(self.multiplex, self.workers, self.max_conns);
        limits.max_reqs_per_conn = self.max_reqs_per_conn.max(1);
        limits.params = self.params;
        // A multiplexed connection's heads in progress share what one request may hold.
        limits.conn_head_budget = self.params.max_bytes;
        limits.head_budget = self.head_budget;
        Options {
            limits,
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
            idle_timeout: self.idle_timeout,
            allow: self.allow.clone().or(env_allow),
            log_errors: self.log_errors,
            external_stop: None,
            on_stop: None,
            count_threads: false,
            classic_accept: false,
            accept_signal: None,
            defer_accept: true,
            write_completion: true,
        }
    }
}

/// A snapshot of a server's state, from [`StatsHandle::snapshot`].
///
/// # Example
///
/// ```
/// let server = fcgi::Server::bind("127.0.0.1:0").unwrap().workers(3);
/// let stats = server.stats_handle().snapshot();
/// assert_eq!(stats.workers, 3);
/// assert_eq!(stats.requests_served, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Worker threads in the pool.
    pub workers: usize,
    /// Workers running a request now.
    pub workers_busy: usize,
    /// Workers waiting for work.
    pub workers_idle: usize,
    /// The most workers ever busy at once.
    pub max_workers_busy: usize,
    /// Connections open.
    pub connections_open: usize,
    /// Connections waiting in the poller (no thread held): idle kept-alive ones, heads
    /// still arriving, responses the web server has not read yet.
    pub connections_parked: usize,
    /// Requests that ran to their END_REQUEST (counted before it goes out).
    pub requests_served: u64,
    /// Requests refused with `FCGI_OVERLOADED` (503): past a multiplexed connection's
    /// request cap, or the heads budget.
    pub refused: u64,
    /// Handlers that panicked.
    pub panics: u64,
    /// Requests the web server aborted, or whose response it stopped reading.
    pub aborted: u64,
    /// Connections waiting in the kernel's listen queue now (not yet accepted: accepting
    /// waits for a free worker), from the kernel (`TCP_INFO`, sock_diag).
    pub listen_queue: u64,
    /// The most connections seen waiting in the listen queue, over the snapshots taken.
    pub max_listen_queue: u64,
    /// The size of the listen queue (the backlog).
    pub listen_queue_len: u64,
}

/// What handles share with a server, before and while it runs.
#[derive(Debug)]
pub(crate) struct Control {
    /// Written by [`ShutdownHandle::shutdown`]; the thread of `serve` waits on it.
    stop: EventFd,
    stopped: AtomicBool,
    pub(crate) counters: Arc<Counters>,
    engine: OnceLock<Arc<Engine>>,
    max_listen_queue: std::sync::atomic::AtomicU64,
}

impl Control {
    fn new() -> io::Result<Control> {
        Ok(Control {
            stop: EventFd::new()?,
            stopped: AtomicBool::new(false),
            counters: Arc::default(),
            engine: OnceLock::new(),
            max_listen_queue: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn request_shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop.notify();
    }
}

/// Stops a running server from any thread: it stops accepting, lets requests in flight
/// finish (up to [`Config::shutdown_timeout`]) and [`Server::serve`] returns.
///
/// # Example
///
/// ```
/// let server = fcgi::Server::bind("127.0.0.1:0").unwrap();
/// let stop = server.shutdown_handle();
/// let t = std::thread::spawn(move || server.serve(|_req| Ok(())));
/// stop.shutdown();
/// t.join().unwrap().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct ShutdownHandle(Arc<Control>);

impl ShutdownHandle {
    /// Requests a graceful shutdown.
    ///
    /// # Example
    ///
    /// ```
    /// fcgi::Server::bind("127.0.0.1:0").unwrap().shutdown_handle().shutdown();
    /// ```
    pub fn shutdown(&self) {
        self.0.request_shutdown();
    }
}

/// Reads a server's [`Stats`] from any thread.
///
/// # Example
///
/// ```
/// let server = fcgi::Server::bind("127.0.0.1:0").unwrap();
/// let stats = server.stats_handle();
/// assert_eq!(stats.snapshot().connections_open, 0);
/// ```
#[derive(Clone, Debug)]
pub struct StatsHandle(Arc<Control>, usize);

impl StatsHandle {
    /// The current numbers.
    ///
    /// # Example
    ///
    /// ```
    /// let s = fcgi::Server::bind("127.0.0.1:0").unwrap().stats_handle().snapshot();
    /// assert_eq!(s.workers_busy, 0);
    /// ```
    pub fn snapshot(&self) -> Stats {
        let c = &self.0.counters;
        let workers = self.1;
        let busy = c.busy.load(Ordering::Relaxed);
        let refused = self
            .0
            .engine
            .get()
            .map_or(0, |e| e.shared.limits.refused.load(Ordering::Relaxed));
        let (listen_queue, listen_queue_len) =
            self.0.engine.get().map_or((0, 0), |e| e.listen_queue());
        let max_listen_queue = self
            .0
            .max_listen_queue
            .fetch_max(listen_queue, Ordering::Relaxed)
            .max(listen_queue);
        Stats {
            workers,
            workers_busy: busy,
            workers_idle: workers.saturating_sub(busy),
            max_workers_busy: c.max_busy.load(Ordering::Relaxed),
            connections_open: c.open.load(Ordering::Relaxed),
            connections_parked: c.parked.load(Ordering::Relaxed),
            requests_served: c.served.load(Ordering::Relaxed),
            refused,
            panics: c.panics.load(Ordering::Relaxed),
            aborted: c.aborted.load(Ordering::Relaxed),
            listen_queue,
            max_listen_queue,
            listen_queue_len,
        }
    }
}

/// A FastCGI application server. Build it with a constructor, tune it with the setters,
/// and run it with [`Server::serve`].
///
/// # Example
///
/// ```no_run
/// use std::io::Write;
/// // The listening socket from the web server on fd 0, or CGI when there is none.
/// fcgi::Server::from_env()?.serve(|req| {
///     req.respond(200, &[("Content-Type", "text/plain")], b"hi")
/// })
/// # ; Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Server {
    listeners: Vec<Listener>,
    config: Config,
    /// `FCGI_WEB_SERVER_ADDRS`, read (and checked) when the server is made.
    env_allow: Option<AllowList>,
    control: Arc<Control>,
    cgi: bool,
}

impl Server {
    fn with(listeners: Vec<Listener>, cgi: bool) -> io::Result<Server> {
        Ok(Server {
            listeners,
            config: Config::default(),
            env_allow: AllowList::from_env()?,
            control: Arc::new(Control::new()?),
            cgi,
        })
    }
    /// A server listening on `addr`: `127.0.0.1:9000`, `[::1]:9000`, `:9000` or a Unix
    /// socket path (see [`Listener::bind`]; a Unix socket's mode, owner and group come
    /// from `FCGI_SOCKET_MODE`, `FCGI_SOCKET_OWNER`, `FCGI_SOCKET_GROUP` when set, else
    /// the umask decides, as with the classic libfcgi; see [`Server::bind_with`]).
    ///
    /// # Errors
    ///
    /// Binding errors, naming the address (`127.0.0.1:9000: Address already in use`), or
    /// a malformed `FCGI_WEB_SERVER_ADDRS` or `FCGI_SOCKET_MODE`.
    ///
    /// # Example
    ///
    /// ```
    /// let s = fcgi::Server::bind("127.0.0.1:0").unwrap();
    /// assert_eq!(s.local_addrs().len(), 1);
    /// ```
    pub fn bind(addr: &str) -> io::Result<Server> {
        Server::with(vec![Listener::bind(addr)?], false)
    }

    /// A server listening on `addr` bound as `opts` say: for a Unix socket its mode, owner
    /// and group (as php-fpm's `listen.mode`, `listen.owner`, `listen.group`), and the
    /// backlog. [`Server::bind`] is this with [`BindOptions::from_env`]
    /// (`FCGI_SOCKET_MODE`, `FCGI_SOCKET_OWNER`, `FCGI_SOCKET_GROUP`); start from that
    /// to let the environment speak, from `BindOptions::default()` to ignore it.
    ///
    /// # Errors
    ///
    /// As [`Server::bind`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use fcgi::net::BindOptions;
    /// // Apache's workers (www-data) may connect; nobody else may.
    /// let opts = BindOptions::from_env()?.mode(0o660).group("www-data");
    /// let server = fcgi::Server::bind_with("/run/app/app.sock", &opts)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// [`BindOptions::from_env`]: crate::net::BindOptions::from_env
    pub fn bind_with(addr: &str, opts: &crate::net::BindOptions) -> io::Result<Server> {
        Server::with(vec![Listener::bind_with(addr, opts)?], false)
    }

    /// A server on an existing listener (e.g. one built by hand or from a descriptor).
    ///
    /// # Errors
    ///
    /// A malformed `FCGI_WEB_SERVER_ADDRS`.
    ///
    /// # Example
    ///
    /// ```
    /// let l = fcgi::server::Listener::bind("127.0.0.1:0").unwrap();
    /// let s = fcgi::Server::from_listener(l).unwrap();
    /// # drop(s);
    /// ```
    pub fn from_listener(listener: Listener) -> io::Result<Server> {
        Server::with(vec![listener], false)
    }

    /// The server a web server or process manager meant: systemd socket activation
    /// (`LISTEN_FDS`) if present, else the listening socket on fd 0 (spawn-fcgi,
    /// `cgi-fcgi -start`, mod_fcgid, lighttpd `bin-path`), else plain CGI: [`Server::serve`]
    /// then runs the handler once on the process's environment, stdin and stdout.
    ///
    /// Call it before starting other threads (it edits the environment).
    ///
    /// # Errors
    ///
    /// A malformed `FCGI_WEB_SERVER_ADDRS`.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let s = fcgi::Server::from_env().unwrap();
    /// println!("CGI mode: {}", s.is_cgi());
    /// ```
    pub fn from_env() -> io::Result<Server> {
        let activated = Listener::from_systemd();
        if !activated.is_empty() {
            return Server::with(activated, false);
        }
        match Listener::inherited() {
            Some(l) => Server::with(vec![l], false),
            None => Server::with(Vec::new(), true),
        }
    }

    /// For programs that take an optional address argument: [`Server::bind`] it when given,
    /// else [`Server::from_env`].
    ///
    /// # Errors
    ///
    /// As those two.
    ///
    /// # Example
    ///
    /// ```no_run
    /// let s = fcgi::Server::listen(std::env::args().nth(1).as_deref()).unwrap();
    /// # drop(s);
    /// ```
    pub fn listen(addr: Option<&str>) -> io::Result<Server> {
        match addr {
            Some(a) => Server::bind(a),
            None => Server::from_env(),
        }
    }

    /// Applies the environment variables of [`Config::apply_env`] (`FCGI_WORKERS`,
    /// `FCGI_MAX_CONNS`, `FCGI_MPXS_CONNS`, the timeouts and the params limits), when set.
    ///
    /// # Example
    ///
    /// ```
    /// let s = fcgi::Server::bind("127.0.0.1:0").unwrap().env_overrides();
    /// assert!(s.config().workers >= 1);
    /// ```
    pub fn env_overrides(mut self) -> Server {
        self.config.apply_env();
        self
    }

    /// Sets the number of worker threads (at least 1).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::Server::bind("127.0.0.1:0").unwrap().workers(0).config().workers, 1);
    /// ```
    pub fn workers(mut self, n: usize) -> Server {
        self.config.workers = n.max(1);
        self
    }

    /// Sets the connection limit (at least 1).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::Server::bind("127.0.0.1:0").unwrap().max_conns(7).config().max_conns, 7);
    /// ```
    pub fn max_conns(mut self, n: usize) -> Server {
        self.config.max_conns = n.max(1);
        self
    }

    /// Turns multiplexing on or off.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(fcgi::Server::bind("127.0.0.1:0").unwrap().multiplex(true).config().multiplex);
    /// ```
    pub fn multiplex(mut self, on: bool) -> Server {
        self.config.multiplex = on;
        self
    }

    /// Replaces the whole configuration.
    ///
    /// # Example
    ///
    /// ```
    /// let mut c = fcgi::server::Config::default();
    /// c.handle_signals = false;
    /// let s = fcgi::Server::bind("127.0.0.1:0").unwrap().config_with(c);
    /// assert!(!s.config().handle_signals);
    /// ```
    pub fn config_with(mut self, config: Config) -> Server {
        self.config = config;
        self
    }

    /// The configuration in effect.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::Server::bind("127.0.0.1:0").unwrap().config().max_conns, 1024);
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether [`Server::serve`] will run once as CGI.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!fcgi::Server::bind("127.0.0.1:0").unwrap().is_cgi());
    /// ```
    pub fn is_cgi(&self) -> bool {
        self.cgi
    }

    /// The printable addresses of the listeners.
    ///
    /// # Example
    ///
    /// ```
    /// let s = fcgi::Server::bind("127.0.0.1:0").unwrap();
    /// assert!(s.local_addrs()[0].starts_with("127.0.0.1:"));
    /// ```
    pub fn local_addrs(&self) -> Vec<String> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// A handle that stops the server gracefully.
    ///
    /// # Example
    ///
    /// ```
    /// let h = fcgi::Server::bind("127.0.0.1:0").unwrap().shutdown_handle();
    /// h.shutdown();
    /// ```
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.control))
    }

    /// A handle to read the server's [`Stats`].
    ///
    /// # Example
    ///
    /// ```
    /// let h = fcgi::Server::bind("127.0.0.1:0").unwrap().stats_handle();
    /// assert_eq!(h.snapshot().refused, 0);
    /// ```
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Arc::clone(&self.control), self.config.workers)
    }

    /// Serves requests until shutdown (signal or [`ShutdownHandle`]); in CGI mode, runs
    /// `handler` once and returns.
    ///
    /// A handler that returns an error or panics ends its request: a `500` response if
    /// nothing was sent yet, the error on FCGI_STDERR (stderr in CGI mode), app status 1;
    /// every other request goes on. In CGI mode the app status is the caller's to use as
    /// the exit status: see [`Server::serve_cgi_status`].
    ///
    /// # Errors
    ///
    /// Failure to set up the engine or the signal pipe; errors of single connections are
    /// logged, never returned.
    ///
    /// # Example
    ///
    /// ```no_run
    /// fcgi::Server::bind("127.0.0.1:9000")?.serve(|req| {
    ///     req.respond(200, &[("Content-Type", "text/plain")], b"ok")
    /// })
    /// # ; Ok::<(), std::io::Error>(())
    /// ```
    pub fn serve<H>(self, handler: H) -> io::Result<()>
    where
        H: Fn(&mut Request) -> io::Result<()> + Send + Sync + 'static,
    {
        self.serve_cgi_status(handler).map(drop)
    }

    /// As [`Server::serve`], and returns the app status of the request run in CGI mode
    /// (always 0 in FastCGI mode), for a `main` that exits with it.
    ///
    /// # Errors
    ///
    /// As [`Server::serve`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// let status = fcgi::Server::from_env()?.serve_cgi_status(|req| {
    ///     req.set_app_status(3);
    ///     req.respond(200, &[], b"")
    /// })?;
    /// std::process::exit(status);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn serve_cgi_status<H>(self, handler: H) -> io::Result<i32>
    where
        H: Fn(&mut Request) -> io::Result<()> + Send + Sync + 'static,
    {
        if self.cgi {
            return crate::cgi::run_once(&handler);
        }
        let Server {
            listeners,
            config,
            env_allow,
            control,
            ..
        } = self;
        for l in &listeners {
            l.set_nonblocking(true)?;
        }
        let signal_pipe = if config.handle_signals {
            Some(crate::sys::shutdown_signal_pipe()?)
        } else {
            None
        };
        let engine = Engine::new(
            listeners,
            config.engine_options(env_allow),
            Arc::clone(&control.counters),
        )?;
        let _ = control.engine.set(Arc::clone(&engine));
        let handler: Arc<dyn Handler> = Arc::new(handler);
        let mut threads = Vec::with_capacity(config.workers);
        for i in 0..config.workers {
            let engine = Arc::clone(&engine);
            let handler = Arc::clone(&handler);
            let control = Arc::clone(&control);
            threads.push(
                thread::Builder::new()
                    .name(format!("fcgi-worker-{i}"))
                    .spawn(move || worker(&engine, &*handler, &control))?,
            );
        }
        // This thread only waits for the word to stop (a signal or a handle): no timer.
        if !control.stopped.load(Ordering::SeqCst) {
            wait_for_stop(signal_pipe.as_ref(), &control.stop)?;
        }
        engine.stop();
        let finished = engine.drain(Instant::now() + config.shutdown_timeout);
        if finished {
            for t in threads {
                let _ = t.join();
            }
        }
        Ok(0)
    }
}

/// A worker thread: takes requests from the engine until it stops.
fn worker(engine: &Arc<Engine>, handler: &dyn Handler, control: &Control) {
    loop {
        let job = match engine.next(true) {
            Ok(job) => job,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(e) => {
                engine.log(format_args!("worker stops: {e}"));
                return;
            }
        };
        let mut next = Some(job);
        while let Some(job) = next {
            let mut req = Request::from_job(engine, job);
            // fcgi-pm scoreboard hooks (src/pm/scoreboard.rs): request start and end, and a
            // clean stop after pm.max_requests. No-ops unless started by fcgi-pm.
            crate::pm::scoreboard::request_started_with(|n| req.param_bytes(n));
            req.run(handler);
            crate::pm::scoreboard::request_finished();
            if crate::pm::scoreboard::should_exit() {
                control.request_shutdown();
            }
            next = req.finish().1;
        }
    }
}

/// Blocks until the signal pipe or the stop eventfd is readable.
fn wait_for_stop(signal_pipe: Option<&std::os::fd::OwnedFd>, stop: &EventFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut fds = vec![libc::pollfd {
        fd: stop.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    if let Some(p) = signal_pipe {
        fds.push(libc::pollfd {
            fd: p.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
    loop {
        // SAFETY: `fds` is a valid array of initialised pollfds that lives across the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n > 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if n < 0 && e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The process's stdout as a request's output (CGI mode).
pub(crate) fn request_sink_stdout() -> request::Sink {
    request::Sink::Local(Box::new(io::stdout()))
}

/// The process's stderr as a request's error output (CGI mode).
pub(crate) fn request_sink_stderr() -> request::Sink {
    request::Sink::Local(Box::new(io::stderr()))
}

/// The handler type, object-safe.
pub(crate) trait Handler: Send + Sync {
    fn call(&self, req: &mut Request) -> io::Result<()>;
}

impl<F> Handler for F
where
    F: Fn(&mut Request) -> io::Result<()> + Send + Sync,
{
    fn call(&self, req: &mut Request) -> io::Result<()> {
        self(req)
    }
}
