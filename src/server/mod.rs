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
mod conn;
mod listener;
mod mpx;
mod pool;
mod reactor;
mod request;
mod response;

pub use acceptor::Acceptor;
pub use listener::{Address, AllowList, Listener, DEFAULT_BACKLOG};
pub use request::{Input, Request, Stderr, Stdout};
pub use response::reason_phrase;

use std::io;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use crate::sys::Poller;
use crossbeam_channel::Receiver;

use crate::protocol::ParamsLimits;
use conn::Conn;
use reactor::Reactor;

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
    pub workers: usize,
    /// Requests that may wait for a worker before new ones are refused. Default 1024.
    pub queue: usize,
    /// Connections kept open at once (answered as `FCGI_MAX_CONNS`); past it, new
    /// connections wait in the listen backlog. Default 1024.
    pub max_conns: usize,
    /// Run several requests of one connection concurrently (`FCGI_MPXS_CONNS=1`). Default off:
    /// a concurrent BEGIN_REQUEST is answered `FCGI_CANT_MPX_CONN`.
    pub multiplex: bool,
    /// Concurrent requests per multiplexed connection. Default 32.
    pub max_reqs_per_conn: usize,
    /// Limits on the params of one request. Default 1 MiB and 4096 pairs.
    pub params: ParamsLimits,
    /// How long a worker waits for the next bytes of a request before giving up on the
    /// connection (a peer that stops mid-record holds a worker at most this long). Default
    /// 60 s, nginx's own `fastcgi_send_timeout`.
    pub read_timeout: Option<Duration>,
    /// Idle connections (kept-alive between requests, or new and silent) are closed after
    /// this long, so silent peers cannot hold every connection slot. Default 300 s, well
    /// past nginx's 60 s upstream `keepalive_timeout`, so nginx closes first.
    pub idle_timeout: Option<Duration>,
    /// How long a graceful shutdown waits for requests in flight. Default 30 s.
    pub shutdown_timeout: Duration,
    /// The `FCGI_WEB_SERVER_ADDRS` allow-list; read from the environment by default.
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
            queue: 1024,
            max_conns: 1024,
            multiplex: false,
            max_reqs_per_conn: 32,
            params: ParamsLimits::default(),
            read_timeout: Some(Duration::from_secs(60)),
            idle_timeout: Some(Duration::from_secs(300)),
            shutdown_timeout: Duration::from_secs(30),
            allow: None,
            handle_signals: true,
            log_errors: true,
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
    /// Idle connections parked in the poller (no thread held).
    pub connections_parked: usize,
    /// Requests waiting for a worker.
    pub queue_depth: usize,
    /// Requests that ran to their END_REQUEST.
    pub requests_served: u64,
    /// Requests refused with `FCGI_OVERLOADED` (503).
    pub refused: u64,
    /// Handlers that panicked.
    pub panics: u64,
    /// Requests the web server aborted.
    pub aborted: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) workers: AtomicUsize,
    pub(crate) busy: AtomicUsize,
    pub(crate) max_busy: AtomicUsize,
    pub(crate) open: AtomicUsize,
    pub(crate) parked: AtomicUsize,
    pub(crate) served: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) aborted: AtomicU64,
}

/// What handles share with a running server.
#[derive(Debug, Default)]
pub(crate) struct Control {
    shutdown: AtomicBool,
    pub(crate) waker: OnceLock<Arc<Poller>>,
    pub(crate) stats: Counters,
    queue: OnceLock<Receiver<Job>>,
}

impl Control {
    pub(crate) fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(p) = self.waker.get() {
            let _ = p.notify();
        }
    }

    pub(crate) fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

/// The running server's configuration and shared state.
#[derive(Debug)]
pub(crate) struct ServerCtx {
    pub(crate) config: Config,
    control: Arc<Control>,
    get_values: [(&'static str, String); 3],
}

impl Deref for ServerCtx {
    type Target = Control;
    fn deref(&self) -> &Control {
        &self.control
    }
}

impl ServerCtx {
    fn new(config: Config, control: Arc<Control>) -> ServerCtx {
        let get_values = conn::get_values_table(config.max_conns, config.workers, config.multiplex);
        ServerCtx {
            config,
            control,
            get_values,
        }
    }

    pub(crate) fn log(&self, args: std::fmt::Arguments<'_>) {
        if self.config.log_errors {
            eprintln!("fcgi: {args}");
        }
    }

    pub(crate) fn params_limits(&self) -> ParamsLimits {
        self.config.params
    }

    pub(crate) fn get_values(&self) -> &[(&'static str, String)] {
        &self.get_values
    }

    pub(crate) fn at_connection_limit(&self) -> bool {
        self.stats.open.load(Ordering::Relaxed) >= self.config.max_conns
    }
}

/// Work for the pool.
pub(crate) enum Job {
    /// A connection with a request arriving (connections that do not multiplex).
    Conn(Conn),
    /// A request of a multiplexed connection.
    Request(Box<Request>),
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
        let c = &self.0.stats;
        let workers = c.workers.load(Ordering::Relaxed).max(self.1);
        let busy = c.busy.load(Ordering::Relaxed);
        Stats {
            workers,
            workers_busy: busy,
            workers_idle: workers.saturating_sub(busy),
            max_workers_busy: c.max_busy.load(Ordering::Relaxed),
            connections_open: c.open.load(Ordering::Relaxed),
            connections_parked: c.parked.load(Ordering::Relaxed),
            queue_depth: self.0.queue.get().map_or(0, |q| q.len()),
            requests_served: c.served.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            panics: c.panics.load(Ordering::Relaxed),
            aborted: c.aborted.load(Ordering::Relaxed),
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
    control: Arc<Control>,
    cgi: bool,
}

impl Server {
    fn with(listeners: Vec<Listener>, cgi: bool) -> io::Result<Server> {
        let config = Config {
            allow: AllowList::from_env()?,
            ..Config::default()
        };
        Ok(Server {
            listeners,
            config,
            control: Arc::default(),
            cgi,
        })
    }

    /// A server listening on `addr`: `127.0.0.1:9000`, `[::1]:9000`, `:9000` or a Unix
    /// socket path (see [`Listener::bind`]).
    ///
    /// # Errors
    ///
    /// Binding errors, or a malformed `FCGI_WEB_SERVER_ADDRS`.
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

    /// Applies the environment variables `FCGI_WORKERS`, `FCGI_MAX_QUEUE`,
    /// `FCGI_MAX_CONNS` and `FCGI_MPXS_CONNS` (`1` turns multiplexing on), when set.
    ///
    /// # Example
    ///
    /// ```
    /// let s = fcgi::Server::bind("127.0.0.1:0").unwrap().env_overrides();
    /// assert!(s.config().workers >= 1);
    /// ```
    pub fn env_overrides(mut self) -> Server {
        let num = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        if let Some(n) = num("FCGI_WORKERS") {
            self = self.workers(n);
        }
        if let Some(n) = num("FCGI_MAX_QUEUE") {
            self = self.queue(n);
        }
        if let Some(n) = num("FCGI_MAX_CONNS") {
            self = self.max_conns(n);
        }
        if let Some(n) = num("FCGI_MPXS_CONNS") {
            self = self.multiplex(n == 1);
        }
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

    /// Sets how many requests may wait for a worker (0: refuse whenever all are busy).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::Server::bind("127.0.0.1:0").unwrap().queue(5).config().queue, 5);
    /// ```
    pub fn queue(mut self, n: usize) -> Server {
        self.config.queue = n;
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
    /// assert_eq!(fcgi::Server::bind("127.0.0.1:0").unwrap().config().queue, 1024);
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
    /// `handler` once and returns (the process should then exit with the app status, which
    /// this function does when it is not 0).
    ///
    /// A handler that returns an error or panics ends its request: a `500` response if
    /// nothing was sent yet, the error on FCGI_STDERR, app status 1; every other request
    /// goes on.
    ///
    /// # Errors
    ///
    /// Failure to set up the poller or the signal pipe; errors of single connections are
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
        if self.cgi {
            return crate::cgi::run_once(&handler);
        }
        let workers = self.config.workers;
        let ctx = Arc::new(ServerCtx::new(self.config, self.control));
        let signal_pipe = if ctx.config.handle_signals {
            Some(crate::sys::shutdown_signal_pipe()?)
        } else {
            None
        };
        let reactor = Reactor::new(self.listeners, signal_pipe, Arc::clone(&ctx))?;
        let pool = Arc::new(pool::Pool::new(
            reactor,
            Arc::clone(&ctx),
            Arc::new(handler),
        ));
        ctx.stats.workers.store(workers, Ordering::Relaxed);
        for i in 0..workers {
            let pool = Arc::clone(&pool);
            thread::Builder::new()
                .name(format!("fcgi-worker-{i}"))
                .spawn(move || pool.worker())?;
        }
        pool.watch()?;
        Ok(())
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
