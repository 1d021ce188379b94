//! The pull side of the server: any number of threads call [`Acceptor::accept`] on one
//! listener and get one request each, as libfcgi's `FCGX_Accept_r` works (on epoll they all
//! wait at once and the kernel wakes one per event, as threads blocked in `accept` are). Idle kept-alive
//! connections wait in the poller, never in a thread, so even a single-threaded accept loop
//! behind a web server's keep-alive pool never stalls.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::sys::{Events, Poller};
use parking_lot::Mutex;

use super::conn::Conn;
use super::pool::{end_request, next_request};
use super::reactor::{Reactor, Ready};
use super::{Config, Control, Listener, Request, ServerCtx};

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
    reactor: Reactor,
    ctx: Arc<ServerCtx>,
    /// Where the poller takes one waiter only (not epoll), the thread that holds this waits
    /// on it and the others wait for their turn.
    leader: Mutex<()>,
    /// Connections whose next request is already buffered.
    pipelined: Mutex<VecDeque<Conn>>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor").finish_non_exhaustive()
    }
}

impl Acceptor {
    /// An acceptor on `listener`. Of `config`, the limits, timeouts and the allow-list
    /// apply; `workers` is only what `FCGI_MAX_REQS` answers, and signals are left alone.
    ///
    /// # Errors
    ///
    /// Failure to create the poller.
    ///
    /// # Example
    ///
    /// ```
    /// let l = fcgi::server::Listener::bind("127.0.0.1:0").unwrap();
    /// let a = fcgi::server::Acceptor::new(l, Default::default()).unwrap();
    /// # drop(a);
    /// ```
    pub fn new(listener: Listener, config: Config) -> io::Result<Acceptor> {
        let ctx = Arc::new(ServerCtx::new(config, Arc::new(Control::default())));
        let reactor = Reactor::new(vec![listener], None, Arc::clone(&ctx))?;
        Ok(Acceptor {
            reactor,
            ctx,
            leader: Mutex::new(()),
            pipelined: Mutex::new(VecDeque::new()),
        })
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
        loop {
            if self.ctx.shutdown_requested() {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "FastCGI acceptor shut down",
                ));
            }
            let next = self.pipelined.lock().pop_front();
            let conn = match next {
                Some(c) => c,
                None => {
                    let ready = {
                        // epoll wakes one waiting thread per event: no turns needed there.
                        let _turn = (!Poller::MULTI_WAIT).then(|| self.leader.lock());
                        let mut events = Events::with_capacity(1);
                        self.reactor.wait(&mut events, Duration::from_millis(500))?
                    };
                    let mut conn = None;
                    for r in ready {
                        match r {
                            Ready::Conn(c) if conn.is_none() => conn = Some(c),
                            Ready::Conn(c) => self.pipelined.lock().push_back(c),
                            Ready::Shutdown => {}
                        }
                    }
                    match conn {
                        Some(c) => c,
                        None => continue,
                    }
                }
            };
            if let Some(req) = next_request(conn, &self.reactor, &self.ctx) {
                return Ok(req);
            }
        }
    }

    /// Ends a request from [`Acceptor::accept`]: flushes its output, sends END_REQUEST, and
    /// parks or closes the connection.
    ///
    /// # Errors
    ///
    /// None today; the signature leaves room for reporting a failed final write.
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
        if let Some(c) = end_request(req, &self.reactor, &self.ctx) {
            self.pipelined.lock().push_back(c);
        }
        Ok(())
    }

    /// Makes every current and future [`Acceptor::accept`] return `Interrupted` (within
    /// half a second for one that is waiting); requests already accepted are unaffected.
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
        self.ctx.request_shutdown();
    }
}
