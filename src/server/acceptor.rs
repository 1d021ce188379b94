//! The pull API: callers that run their own accept loop (one thread or many) take
//! requests from the engine one at a time. The C ABI's `FCGX_Accept_r` is built on it.

use std::io;
use std::sync::Arc;

use super::{Config, Listener, Request};
use crate::engine::{Counters, Engine, Options};

/// Accepts requests one at a time, for callers that run their own loop (one thread or
/// many) instead of handing a closure to [`crate::Server::serve`].
///
/// # Example
///
/// ```no_run
/// use std::io::Write;
/// let listener = fcgi::server::Listener::bind("127.0.0.1:9000")?;
/// let acceptor = fcgi::server::Acceptor::new(listener, Default::default())?;
/// loop {
///     let mut req = acceptor.accept()?;
///     req.respond(200, &[("Content-Type", "text/plain")], b"pulled")?;
///     acceptor.finish(req)?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Acceptor {
    engine: Arc<Engine>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor").finish_non_exhaustive()
    }
}

impl Acceptor {
    /// An acceptor on `listener`. Of `config`, the limits, timeouts and the allow-list
    /// apply (`FCGI_WEB_SERVER_ADDRS` when it sets none); `workers` is only what
    /// `FCGI_MAX_REQS` answers, and signals are left alone. The listener is made
    /// non-blocking.
    ///
    /// # Errors
    ///
    /// Failure to create the engine, or a malformed `FCGI_WEB_SERVER_ADDRS`.
    ///
    /// # Example
    ///
    /// ```
    /// let l = fcgi::server::Listener::bind("127.0.0.1:0").unwrap();
    /// let a = fcgi::server::Acceptor::new(l, Default::default()).unwrap();
    /// # drop(a);
    /// ```
    pub fn new(listener: Listener, config: Config) -> io::Result<Acceptor> {
        listener.set_nonblocking(true)?;
        let mut opts = config.engine_options(super::AllowList::from_env()?);
        // The caller may exit right after `finish`: its last write completes first.
        opts.write_completion = false;
        Acceptor::with_options(listener, opts)
    }

    /// An acceptor with engine options as they are (the C ABI: the program's listening
    /// socket keeps its flags).
    pub(crate) fn with_options(listener: Listener, opts: Options) -> io::Result<Acceptor> {
        let engine = Engine::new(vec![listener], opts, Arc::new(Counters::default()))?;
        Ok(Acceptor { engine })
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Blocks until a request has arrived (BEGIN_REQUEST and all its params) on a new
    /// connection or a kept-alive one, and returns it. Management records, refusals and
    /// broken connections are dealt with on the way. Safe to call from many threads.
    ///
    /// # Errors
    ///
    /// `Interrupted` once [`Acceptor::shutdown`] was called; poller errors.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let acceptor = fcgi::server::Acceptor::new(fcgi::server::Listener::bind("127.0.0.1:0")?, Default::default())?;
    /// let req = acceptor.accept()?;
    /// println!("role {:?}", req.role());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn accept(&self) -> io::Result<Request> {
        self.engine
            .next(true)
            .map(|job| Request::from_job(&self.engine, job))
    }

    /// As [`Acceptor::accept`], but `WouldBlock` at once when no request is ready.
    pub(crate) fn try_accept(&self) -> io::Result<Request> {
        self.engine
            .next(false)
            .map(|job| Request::from_job(&self.engine, job))
    }

    /// Ends a request from [`Acceptor::accept`]: flushes its output, sends END_REQUEST
    /// (waiting, up to the write timeout, for the web server to take it), and hands the
    /// connection back. A request dropped without this is ended the same way: what it
    /// wrote goes out, with a 500 only if nothing was written (dropped by a panic's
    /// unwinding: a 500 unless bytes already reached the web server).
    ///
    /// # Errors
    ///
    /// The final write of a multiplexed request failed (the web server is gone).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # let acceptor = fcgi::server::Acceptor::new(fcgi::server::Listener::bind("127.0.0.1:0")?, Default::default())?;
    /// let req = acceptor.accept()?;
    /// acceptor.finish(req)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn finish(&self, req: Request) -> io::Result<()> {
        let (r, next) = req.finish();
        if let Some(job) = next {
            self.engine.push_ready(job);
        }
        r
    }

    /// Makes every current and future [`Acceptor::accept`] return `Interrupted`; requests
    /// already accepted are unaffected.
    ///
    /// # Example
    ///
    /// ```
    /// let l = fcgi::server::Listener::bind("127.0.0.1:0").unwrap();
    /// let a = fcgi::server::Acceptor::new(l, Default::default()).unwrap();
    /// a.shutdown();
    /// assert_eq!(a.accept().unwrap_err().kind(), std::io::ErrorKind::Interrupted);
    /// ```
    pub fn shutdown(&self) {
        self.engine.stop();
    }
}
