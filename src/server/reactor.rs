//! The poller: listening sockets, idle kept-alive connections and closing connections in
//! one oneshot epoll set (kqueue elsewhere, see `crate::sys`).
//!
//! An idle connection costs a descriptor here and no thread: it is handed to a worker only
//! when its next record arrives, so the worker pool bounds requests in flight, not
//! connections. That is what keeps a single-threaded libfcgi-style application from stalling
//! behind a web server's keep-alive pool.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sys::{Events, Poller};
use parking_lot::Mutex;

use super::conn::Conn;
use super::listener::Listener;
use super::ServerCtx;

/// Key of the shutdown pipe (signals).
const KEY_SIGNAL: usize = usize::MAX - 1;
/// Connection keys start here; smaller keys are listener indexes.
const FIRST_CONN_KEY: usize = 1 << 20;
/// How long a closing connection may take to send its last bytes before it is dropped.
const LINGER: Duration = Duration::from_secs(2);

enum Parked {
    Idle(Conn, Instant),
    Closing(Conn, Instant),
}

/// What [`Reactor::wait`] produced.
pub(crate) enum Ready {
    /// A connection with bytes to read.
    Conn(Conn),
    /// Shutdown was requested (signal or handle).
    Shutdown,
}

pub(crate) struct Reactor {
    poller: Arc<Poller>,
    /// Emptied at shutdown, which closes the sockets (and removes Unix socket files).
    listeners: Mutex<Vec<Listener>>,
    listeners_armed: AtomicBool,
    signal_pipe: Option<OwnedFd>,
    parked: Mutex<HashMap<usize, Parked>>,
    next_key: AtomicUsize,
    accepting: AtomicBool,
    last_sweep: Mutex<Instant>,
    ctx: Arc<ServerCtx>,
}

impl Reactor {
    pub(crate) fn new(
        listeners: Vec<Listener>,
        signal_pipe: Option<OwnedFd>,
        ctx: Arc<ServerCtx>,
    ) -> io::Result<Reactor> {
        let poller = Arc::new(Poller::new()?);
        for (i, l) in listeners.iter().enumerate() {
            l.set_nonblocking(true)?;
            if let Listener::Tcp(t) = l {
                crate::sys::set_defer_accept(t.as_fd());
            }
            // Listeners live as long as the reactor, which deletes them on drop.
            poller.add(l.as_fd(), i)?;
        }
        if let Some(p) = &signal_pipe {
            // The pipe lives as long as the reactor, which deletes it on drop.
            poller.add(p.as_fd(), KEY_SIGNAL)?;
        }
        let _ = ctx.waker.set(Arc::clone(&poller));
        Ok(Reactor {
            poller,
            listeners: Mutex::new(listeners),
            listeners_armed: AtomicBool::new(true),
            signal_pipe,
            parked: Mutex::new(HashMap::new()),
            next_key: AtomicUsize::new(FIRST_CONN_KEY),
            accepting: AtomicBool::new(true),
            last_sweep: Mutex::new(Instant::now()),
            ctx,
        })
    }

    /// Parks an idle connection until its next byte arrives.
    pub(crate) fn park(&self, conn: Conn) {
        self.register(Parked::Idle(conn, Instant::now()));
    }

    /// Closes a connection gracefully: our side is shut down at once, and what the peer
    /// still sends is read and dropped until it closes too (or [`LINGER`] passes), so the
    /// last response is not destroyed by a reset.
    pub(crate) fn close(&self, mut conn: Conn) {
        let _ = conn.shared.stream.shutdown(Shutdown::Write);
        *conn.reader = super::conn::Reader::closed();
        self.register(Parked::Closing(conn, Instant::now() + LINGER));
    }

    fn register(&self, p: Parked) {
        if !self.accepting.load(Ordering::Relaxed) {
            if let Parked::Idle(..) = p {
                return; // shutting down: idle connections are closed
            }
        }
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let idle = matches!(p, Parked::Idle(..));
        // Registered and recorded under one lock: a waiter that sees the event at once
        // finds the connection. It stays in `parked` until `take` deletes its registration,
        // so the descriptor outlives the registration.
        let mut parked = self.parked.lock();
        let (Parked::Idle(c, _) | Parked::Closing(c, _)) = &p;
        if self.poller.add(c.shared.stream.as_fd(), key).is_ok() {
            parked.insert(key, p);
            if idle {
                self.ctx.stats.parked.fetch_add(1, Ordering::Relaxed);
            }
        } // else: dropped, which closes it
    }

    /// Removes a parked connection and its registration.
    fn take(&self, key: usize) -> Option<Parked> {
        let p = self.parked.lock().remove(&key)?;
        let (Parked::Idle(c, _) | Parked::Closing(c, _)) = &p;
        let _ = self.poller.delete(c.shared.stream.as_fd());
        if let Parked::Idle(..) = p {
            self.ctx.stats.parked.fetch_sub(1, Ordering::Relaxed);
        }
        Some(p)
    }

    /// Stops accepting and closes idle connections; requests in flight go on.
    pub(crate) fn begin_shutdown(&self) {
        self.accepting.store(false, Ordering::Relaxed);
        for l in self.listeners.lock().drain(..) {
            let _ = self.poller.delete(l.as_fd());
        }
        let idle: Vec<usize> = self
            .parked
            .lock()
            .iter()
            .filter(|(_, p)| matches!(p, Parked::Idle(..)))
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            if let Some(Parked::Idle(c, _)) = self.take(k) {
                self.close(c);
            }
        }
    }

    /// Whether the reactor still accepts connections.
    pub(crate) fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// Waits for events and turns them into ready connections. New connections are parked
    /// until they send their first bytes.
    pub(crate) fn wait(&self, events: &mut Events, timeout: Duration) -> io::Result<Vec<Ready>> {
        events.clear();
        self.poller.wait(events, Some(timeout))?;
        let mut out = Vec::new();
        for key in events.keys() {
            match key {
                KEY_SIGNAL => {
                    if let Some(p) = &self.signal_pipe {
                        let mut b = [0u8; 64];
                        let _ = (&std::fs::File::from(p.try_clone()?)).read(&mut b);
                        let _ = self.poller.modify(p.as_fd(), KEY_SIGNAL);
                    }
                    self.ctx.request_shutdown();
                }
                k if k < FIRST_CONN_KEY => self.accept_from(k, &mut out),
                k => match self.take(k) {
                    Some(Parked::Idle(c, _)) => out.push(Ready::Conn(c)),
                    Some(Parked::Closing(c, deadline)) => self.drain_closing(c, deadline),
                    None => {}
                },
            }
        }
        self.rearm_listeners();
        self.sweep();
        if self.ctx.shutdown_requested() {
            out.push(Ready::Shutdown);
        }
        Ok(out)
    }

    /// Accepts pending connections. One whose first bytes are already there is ready at
    /// once (no poller round trip, the common case behind a busy web server); the others are
    /// parked until they send something.
    fn accept_from(&self, index: usize, ready: &mut Vec<Ready>) {
        let listeners = self.listeners.lock();
        let Some(l) = listeners.get(index) else {
            return;
        };
        // Accept what is pending, within the connection limit.
        for _ in 0..64 {
            if !self.accepting.load(Ordering::Relaxed) || self.ctx.at_connection_limit() {
                break;
            }
            match l.accept() {
                Ok(Some(stream)) => {
                    if let Some(list) = &self.ctx.config.allow {
                        if !list.allows(stream.peer_ip()) {
                            self.ctx.log(format_args!(
                                "connection from {:?} dropped: not in FCGI_WEB_SERVER_ADDRS",
                                stream.peer_ip()
                            ));
                            continue;
                        }
                    }
                    let _ = stream.set_read_timeout(self.ctx.config.read_timeout);
                    let has_data = matches!(stream.peek_nonblocking(&mut [0u8; 1]), Ok(1));
                    let conn = Conn::new(stream, Arc::clone(&self.ctx));
                    if has_data {
                        ready.push(Ready::Conn(conn));
                    } else {
                        self.park(conn);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // EMFILE and friends: log, back off via the next wait.
                    if !matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED | libc::EPROTO | libc::ECONNRESET | libc::EINTR)
                    ) {
                        self.ctx.log(format_args!("accept: {e}"));
                        break;
                    }
                }
            }
        }
        self.listeners_armed.store(false, Ordering::Relaxed);
    }

    fn rearm_listeners(&self) {
        if self.listeners_armed.load(Ordering::Relaxed)
            || !self.accepting.load(Ordering::Relaxed)
            || self.ctx.at_connection_limit()
        {
            return;
        }
        for (i, l) in self.listeners.lock().iter().enumerate() {
            let _ = self.poller.modify(l.as_fd(), i);
        }
        self.listeners_armed.store(true, Ordering::Relaxed);
    }

    fn drain_closing(&self, c: Conn, deadline: Instant) {
        let s = &c.shared.stream;
        let mut buf = [0u8; 4096];
        if s.set_nonblocking(true).is_err() {
            return;
        }
        loop {
            match (&*s).read(&mut buf) {
                Ok(0) => return, // peer closed: done
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
        if Instant::now() < deadline {
            self.register(Parked::Closing(c, deadline));
        }
    }

    /// Drops closing connections past their deadline, at most once a second.
    fn sweep(&self) {
        let now = Instant::now();
        {
            let mut last = self.last_sweep.lock();
            if now.duration_since(*last) < Duration::from_secs(1) {
                return;
            }
            *last = now;
        }
        let idle_timeout = self.ctx.config.idle_timeout;
        let expired: Vec<usize> = self
            .parked
            .lock()
            .iter()
            .filter(|(_, p)| match p {
                Parked::Closing(_, deadline) => *deadline <= now,
                Parked::Idle(_, since) => idle_timeout.is_some_and(|t| now - *since >= t),
            })
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            match self.take(k) {
                Some(Parked::Idle(c, _)) => self.close(c),
                Some(Parked::Closing(..)) | None => {}
            }
        }
    }
}

impl Reactor {
    /// Wakes the thread blocked in [`Reactor::wait`], if any.
    pub(crate) fn notify(&self) {
        let _ = self.poller.notify();
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        let keys: Vec<usize> = self.parked.lock().keys().copied().collect();
        for k in keys {
            self.take(k);
        }
        for l in self.listeners.get_mut().iter() {
            let _ = self.poller.delete(l.as_fd());
        }
        if let Some(p) = &self.signal_pipe {
            let _ = self.poller.delete(p.as_fd());
        }
    }
}
