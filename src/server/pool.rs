//! The worker pool: an idle worker waits on the poller itself and serves the connection it
//! gets, with no hand-off to another thread. With epoll every idle worker waits at once (the
//! kernel wakes one waiter per event, as threads blocked in `accept` are woken); with a
//! poller that takes one waiter, they take turns (leader/follower). Work that a worker
//! cannot take itself (several connections ready at once, requests of multiplexed
//! connections) goes through a bounded queue, and a notification wakes a waiter for it.
//!
//! When every worker is busy nobody leads, so the thread that called
//! [`crate::Server::serve`] does: it queues what arrives while the queue has room and refuses
//! the rest at once (`Status: 503` + `FCGI_OVERLOADED`), and it sees shutdown signals.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::sys::{Events, Poller};
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;

use super::conn::{self, Conn, Next};
use super::reactor::{Reactor, Ready};
use super::{mpx, request, Handler, Job, Request, ServerCtx};

/// How long one turn of waiting on the poller lasts before the leader looks around again.
const LEAD_TURN: Duration = Duration::from_millis(500);

pub(crate) struct Pool {
    pub(crate) reactor: Reactor,
    pub(crate) ctx: Arc<ServerCtx>,
    handler: Arc<dyn Handler>,
    /// Held by the thread that waits on the poller, where only one may.
    leader: Mutex<()>,
    tx: Sender<Job>,
    rx: Receiver<Job>,
    /// The thread of `serve`, woken when the last idle worker gets busy.
    watcher: OnceLock<Thread>,
    /// Jobs being run, END_REQUEST and closing included (the busy count of the stats
    /// drops earlier, when the handler returns): a graceful stop waits for this.
    active: AtomicUsize,
}

impl Pool {
    pub(crate) fn new(reactor: Reactor, ctx: Arc<ServerCtx>, handler: Arc<dyn Handler>) -> Pool {
        // Room for the configured queue plus one job per worker: a job only waits when a
        // worker is about to take it, or when every worker is busy (then `queue` bounds it).
        let (tx, rx) = bounded(ctx.config.queue + ctx.config.workers);
        let _ = ctx.queue.set(rx.clone());
        Pool {
            reactor,
            ctx,
            handler,
            leader: Mutex::new(()),
            tx,
            rx,
            watcher: OnceLock::new(),
            active: AtomicUsize::new(0),
        }
    }

    fn busy(&self) -> usize {
        self.ctx.stats.busy.load(Ordering::Relaxed)
    }

    fn all_busy(&self) -> bool {
        self.busy() >= self.ctx.config.workers
    }

    /// Queues a job; gives it back when every worker is busy and the queue is full.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Job> {
        if self.all_busy() && self.rx.len() >= self.ctx.config.queue {
            return Err(job);
        }
        match self.tx.try_send(job) {
            Ok(()) => {
                self.reactor.notify(); // a leader blocked on the poller picks it up
                Ok(())
            }
            Err(e) => Err(e.into_inner()),
        }
    }

    /// A ready connection this thread will not serve itself: its own thread if it
    /// multiplexes, else the queue, else a refusal.
    fn dispatch(self: &Arc<Self>, c: Conn) {
        if self.ctx.config.multiplex {
            let pool = Arc::clone(self);
            let spawned = thread::Builder::new()
                .name("fcgi-mpx-conn".into())
                .spawn(move || mpx::run(c, pool));
            if let Err(e) = spawned {
                self.ctx
                    .log(format_args!("cannot start a connection thread: {e}"));
            }
            return;
        }
        if let Err(Job::Conn(c)) = self.submit(Job::Conn(c)) {
            refuse_overloaded(c, &self.reactor, &self.ctx);
        }
    }

    fn handle(self: &Arc<Self>, ready: Vec<Ready>, serve_one: bool) -> Option<Conn> {
        let mut mine = None;
        for r in ready {
            match r {
                Ready::Conn(c) if serve_one && mine.is_none() && !self.ctx.config.multiplex => {
                    mine = Some(c)
                }
                Ready::Conn(c) => self.dispatch(c),
                Ready::Shutdown => self.reactor.begin_shutdown(),
            }
        }
        mine
    }

    /// A worker starts running a handler.
    fn busy_inc(&self) {
        let busy = self.ctx.stats.busy.fetch_add(1, Ordering::Relaxed) + 1;
        self.ctx.stats.max_busy.fetch_max(busy, Ordering::Relaxed);
        if busy >= self.ctx.config.workers {
            if let Some(t) = self.watcher.get() {
                t.unpark();
            }
        }
    }

    /// A handler returned. Counted before its END_REQUEST goes out, so a web server that
    /// sends the next request the moment it reads END_REQUEST never finds the pool "full"
    /// because of a worker that is only tidying up (the request is queued and this worker
    /// takes it).
    fn busy_dec(&self) {
        self.ctx.stats.busy.fetch_sub(1, Ordering::Relaxed);
    }

    fn run(&self, job: Job) {
        self.active.fetch_add(1, Ordering::SeqCst);
        match job {
            Job::Conn(c) => self.serve_conn(c),
            Job::Request(req) => self.run_multiplexed(*req),
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// Runs the requests of one connection that does not multiplex, until it goes idle
    /// (parked) or closes.
    fn serve_conn(&self, mut c: Conn) {
        let (reactor, ctx) = (&self.reactor, &*self.ctx);
        self.busy_inc();
        loop {
            let Some(mut req) = next_request(c, reactor, ctx) else {
                self.busy_dec();
                return;
            };
            run_handler(&mut req, ctx, &*self.handler);
            self.busy_dec();
            match end_request(req, reactor, ctx) {
                Some(next) => {
                    // The next request is already buffered (pipelined).
                    self.busy_inc();
                    c = next;
                }
                None => return,
            }
        }
    }

    /// Runs one request of a multiplexed connection and ends it.
    fn run_multiplexed(&self, mut req: Request) {
        let ctx = &*self.ctx;
        self.busy_inc();
        run_handler(&mut req, ctx, &*self.handler);
        self.busy_dec();
        if let request::Source::Mpx(inbox) = &req.input.src {
            inbox.release();
        }
        let keep = req.keep_conn;
        let shared = match &req.stdout.0.sink {
            request::Sink::Records(s) => Some(Arc::clone(s)),
            _ => None,
        };
        let (r, _, _) = req.finish();
        if r.is_ok() {
            ctx.stats.served.fetch_add(1, Ordering::Relaxed);
        }
        if let (false, Some(s)) = (keep, shared) {
            let _ = s.stream.shutdown(std::net::Shutdown::Write);
        }
    }

    /// Waits for ready connections: directly where the poller takes several waiters, else
    /// behind the leader lock (giving up after `lock_wait`, if given).
    fn wait_turn(
        &self,
        events: &mut Events,
        timeout: Duration,
        lock_wait: Option<Duration>,
    ) -> io::Result<Option<Vec<Ready>>> {
        let _turn = if Poller::MULTI_WAIT {
            None
        } else {
            match lock_wait {
                None => Some(self.leader.lock()),
                Some(d) => match self.leader.try_lock_for(d) {
                    Some(g) => Some(g),
                    None => return Ok(None),
                },
            }
        };
        self.reactor.wait(events, timeout).map(Some)
    }

    fn new_events() -> Events {
        // Waiting together, each worker takes one event, so work spreads over them.
        Events::with_capacity(if Poller::MULTI_WAIT { 1 } else { 64 })
    }

    /// A worker thread: queued work first, else wait for a connection and serve it, until
    /// shutdown leaves nothing to do.
    pub(crate) fn worker(self: Arc<Self>) {
        let mut events = Pool::new_events();
        loop {
            if let Ok(job) = self.rx.try_recv() {
                if !self.rx.is_empty() {
                    // Notifications of jobs queued together may have woken only this
                    // worker: pass the wake-up on, so the rest run in parallel.
                    self.reactor.notify();
                }
                self.run(job);
                continue;
            }
            if !self.reactor.is_accepting() {
                return;
            }
            let ready = match self.wait_turn(&mut events, LEAD_TURN, None) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    self.ctx.log(format_args!("poller: {e}"));
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if let Some(c) = self.handle(ready, true) {
                self.run(Job::Conn(c));
            }
        }
    }

    /// The thread of `serve`: waits on the poller while every worker is busy (queueing or
    /// refusing what arrives, and seeing signals), then, after shutdown began, waits for
    /// requests in flight up to the deadline.
    pub(crate) fn watch(self: &Arc<Self>) -> io::Result<()> {
        let _ = self.watcher.set(thread::current());
        let mut events = Events::new();
        let turn = Duration::from_millis(10);
        while self.reactor.is_accepting() {
            if !self.all_busy() {
                thread::park_timeout(Duration::from_millis(200));
                continue;
            }
            if let Some(ready) = self.wait_turn(&mut events, turn, Some(turn))? {
                self.handle(ready, false);
            }
        }
        // Graceful: requests in flight and queued finish, up to the deadline; closing
        // connections still need the poller meanwhile.
        let deadline = Instant::now() + self.ctx.config.shutdown_timeout;
        let turn = Duration::from_millis(50);
        while Instant::now() < deadline
            && (self.active.load(Ordering::SeqCst) > 0 || !self.rx.is_empty())
        {
            for r in self
                .wait_turn(&mut events, turn, Some(turn))?
                .unwrap_or_default()
            {
                if let Ready::Conn(c) = r {
                    self.reactor.close(c);
                }
            }
        }
        Ok(())
    }
}

/// Every worker busy and the queue full: answer what the connection sent without a worker,
/// `Status: 503` + `Retry-After` on stdout and `FCGI_OVERLOADED` in END_REQUEST.
fn refuse_overloaded(mut c: Conn, reactor: &Reactor, ctx: &ServerCtx) {
    let shared = Arc::clone(&c.shared);
    let s = &shared.stream;
    let open = s.set_nonblocking(true).is_ok() && c.reader.fill_nonblocking(s).unwrap_or(false);
    let _ = s.set_nonblocking(false);
    let mut close = !open;
    loop {
        match c.reader.buffered_record() {
            Ok(Some((h, content))) => {
                let r = match h.record_type {
                    _ if h.request_id == 0 => conn::management_reply(&shared, h, &content),
                    crate::protocol::RecordType::BeginRequest => {
                        let body = crate::protocol::BeginRequestBody::decode(&content);
                        close |= !body.is_ok_and(|b| b.keep_conn());
                        ctx.log(format_args!(
                            "request {}: all {} workers busy and the queue full; refused (503)",
                            h.request_id, ctx.config.workers
                        ));
                        conn::refuse_overloaded(&shared, h.request_id)
                    }
                    _ => Ok(()), // records of the refused request: ignored
                };
                if r.is_err() {
                    return;
                }
            }
            Ok(None) => break,
            Err(_) => return, // garbage: drop the connection
        }
    }
    if close {
        reactor.close(c);
    } else {
        reactor.park(c);
    }
}

/// Reads the next request of a connection; `None` when the connection ended instead (it is
/// then closed, or closing in the reactor).
pub(crate) fn next_request(mut c: Conn, reactor: &Reactor, ctx: &ServerCtx) -> Option<Request> {
    match c.read_request() {
        Ok(Next::Request(head)) => Some(Request::inline(head, c)),
        Ok(Next::Close) => {
            reactor.close(c);
            None
        }
        Ok(Next::Idle) => {
            reactor.park(c);
            None
        }
        Err(e) => {
            if e.kind() != io::ErrorKind::UnexpectedEof
                && e.kind() != io::ErrorKind::ConnectionReset
            {
                ctx.log(format_args!("connection closed: {e}"));
            }
            reactor.close(c);
            None
        }
    }
}

/// Ends a request read by [`next_request`]: END_REQUEST goes out, then the connection is
/// closed (no keep-conn), parked (idle, or leftovers of the finished request still to come)
/// or given back (its next request is already buffered).
pub(crate) fn end_request(req: Request, reactor: &Reactor, ctx: &ServerCtx) -> Option<Conn> {
    let keep = req.keep_conn;
    let shared = req.conn_shared()?;
    let (result, reader, input_done) = req.finish();
    let mut c = Conn {
        shared,
        reader: reader?,
    };
    result.ok()?; // the web server is gone: drop the connection
    ctx.stats.served.fetch_add(1, Ordering::Relaxed);
    if !keep || !reactor.is_accepting() {
        if !(input_done && c.reader.is_idle()) {
            reactor.close(c); // unread input: close without resetting the response
        }
        return None;
    }
    if !c.reader.next_record_buffered() {
        // Idle (or only part of a record in): wait in the poller, not in this thread.
        reactor.park(c);
        return None;
    }
    Some(c)
}

/// Calls the handler, turning errors and panics into a 500 (when nothing was sent) plus a
/// message on FCGI_STDERR, so the request still ends with exactly one END_REQUEST.
fn run_handler(req: &mut Request, ctx: &ServerCtx, handler: &dyn Handler) {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| handler.call(req)));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("handler error: {e}")),
        Err(payload) => {
            ctx.stats.panics.fetch_add(1, Ordering::Relaxed);
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            Some(format!("handler panicked: {msg}"))
        }
    };
    // Only a failed handler is worth a look at the socket; a clean one costs no syscall.
    let aborted = req.input.abort_seen() || (failure.is_some() && req.is_aborted());
    if aborted {
        ctx.stats.aborted.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if let Some(msg) = failure {
        use std::io::Write;
        if !req.stdout_sent() {
            req.stdout.0.discard();
            let _ = req.respond(
                500,
                &[("Content-Type", "text/plain")],
                b"500 Internal Server Error\n",
            );
        }
        let _ = writeln!(req.stderr(), "{msg}");
        if req.app_status == 0 {
            req.app_status = 1;
        }
    }
}
