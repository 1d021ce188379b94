//! The connection engine: one reactor that every face of the crate uses (the Rust
//! [`Server`](crate::Server), multiplexed connections, and the C ABI's `FCGX_Accept_r`).
//!
//! Threads that are free to serve a request call [`Engine::next`]; that is the only place
//! where the engine waits. A free thread waits on the engine's epoll set and handles what
//! comes: it accepts one connection when a listener is ready (so connections are accepted
//! only while a thread is free to take their request, and processes sharing a socket keep
//! sharing its load), reads a connection's bytes without blocking, feeds them to the
//! connection's [`machine::Machine`], and takes the request once its head is complete. A
//! slow or silent peer costs a descriptor and a deadline, never a thread. A request then
//! reads the rest of its input and writes its output on its own thread, each blocking call
//! under a deadline; when it ends, output the peer has not taken yet is finished from the
//! poller ("write completion"), and a kept-alive connection waits in the epoll set with no
//! thread and no read buffer.
//!
//! Connections stay registered, edge-triggered, for their whole life: a kept-alive request
//! costs `epoll_wait`, `recv` and `sendmsg`, nothing else. Listeners are edge-triggered
//! with `EPOLLEXCLUSIVE` in the shared set; connections that arrived under one edge are
//! taken by the next free thread before it waits. While nothing but the listeners needs
//! watching (no kept-alive connection, no head in progress), free threads wait in epoll
//! sets of their own instead, where each arrival wakes one of them and none needs that
//! second look: a new connection costs `epoll_wait`, `accept4`, `recv`, `sendmsg` and
//! `close` (see [`Engine::wait_own`]). Deadlines (a head's, an idle connection's, a slow reader's, a
//! closing connection's linger) share one timerfd, armed only while one is pending, so an
//! idle engine wakes for nothing.

pub(crate) mod conn;
pub(crate) mod machine;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

pub(crate) use conn::{aborted_error, BufPool, Conn, Inbox, Shared};
pub(crate) use machine::{Event, Head, Limits, Progress, Which};

use crate::server::{AllowList, Listener};
use crate::sys::epoll::{self, Epoll, EventFd, Peer, TimerFd};

const WAKE: u64 = u64::MAX;
const TIMER: u64 = u64::MAX - 1;
const LISTENER_BASE: u64 = 1 << 62;
/// In a thread's own set: the engine calls one free thread to the shared set.
const RECALL: u64 = u64::MAX - 2;
/// In a thread's own set: the engine stops.
const HALT: u64 = u64::MAX - 3;
/// How long a closing connection may take to send its last bytes before it is dropped.
const LINGER: Duration = Duration::from_secs(2);
/// How long accepting pauses when descriptors (or memory) run out.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);
/// Output a connection may owe its peer (replies it does not read) before the engine
/// stops reading that connection until the peer has taken it.
const OWED_MAX: usize = 256 << 10;
/// At most one log line per this interval for repeated accept errors.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long a thread may wait in `accept(2)` on a blocking listener while connections
/// wait in the shared set (see [`Engine::accept_on`]).
const ACCEPT_BOUND: Duration = Duration::from_millis(2);

/// How an engine is set up.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) limits: Limits,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) allow: Option<AllowList>,
    pub(crate) log_errors: bool,
    /// Polled when the engine wakes: a shutdown requested from outside (a signal handler
    /// that sets a flag and writes [`Engine::wake_fd`]).
    pub(crate) external_stop: Option<fn() -> bool>,
    /// Called once when the engine stops: the C ABI interrupts the threads that wait in a
    /// blocking `accept(2)` (see [`epoll::accept_interruptible`]).
    pub(crate) on_stop: Option<fn()>,
    /// Count the distinct threads that call [`Engine::next`] as `FCGI_MAX_REQS`.
    pub(crate) count_threads: bool,
    /// `TCP_DEFER_ACCEPT` on TCP listeners: the kernel hands a connection over once its
    /// first bytes are in. Without it, a free thread that accepted a connection whose
    /// bytes are still on their way is free to accept the next one, and a process takes
    /// connections its siblings on the same socket would serve at once (and a program that
    /// polls the socket before accepting sees it empty). It costs some latency at
    /// concurrency 1 (the kernel makes the connection when the bytes arrive).
    pub(crate) defer_accept: bool,
    /// Finish a request's output from the poller when the peer reads slowly (the Rust
    /// server, which lives until its drain). Off for the C library: a program may exit
    /// right after `FCGX_Finish_r`, so the last write completes before it returns.
    pub(crate) write_completion: bool,
    /// A C program's accept loop: with one thread, one blocking listener and no
    /// connection to watch, wait in `accept(2)` itself, as libfcgi does (the kernel hands
    /// each connection to exactly one waiting process, and a signal interrupts the wait).
    pub(crate) classic_accept: bool,
    /// Asked before an `accept(2)` on a blocking listener while connections wait in the
    /// shared set (see [`Engine::accept_on`]), and before calling threads out of such a
    /// wait (see [`Engine::call_watchers`]): a signal whose handler does nothing and is
    /// installed without `SA_RESTART` now (the C library's quiet signal, SIGPIPE or
    /// SIGURG); None: those waits stay unbounded.
    pub(crate) accept_signal: Option<fn() -> Option<libc::c_int>>,
}

/// Numbers an engine keeps for [`crate::server::Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) busy: AtomicUsize,
    pub(crate) max_busy: AtomicUsize,
    pub(crate) open: AtomicUsize,
    pub(crate) parked: AtomicUsize,
    pub(crate) served: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) aborted: AtomicU64,
}

/// A request for a free thread: its head, its connection, and for a multiplexed
/// connection the inbox its input arrives in.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) head: Head,
    pub(crate) conn: Arc<Conn>,
    pub(crate) inbox: Option<Arc<Inbox>>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Receiving a request head (or management records).
    Head,
    /// Between requests.
    Idle,
    /// A multiplexed connection: requests may run, input is routed.
    Mpx,
    /// Our side is shut down; the peer's last bytes are read and dropped.
    Closing,
    /// Output of a finished request waits for the peer to read it; then the connection
    /// goes on (`keep`) or closes.
    Flush { keep: bool },
}

#[derive(Debug)]
struct Entry {
    conn: Arc<Conn>,
    /// A thread works on the connection (drives its input, or serves its request).
    busy: bool,
    /// An event came while busy.
    event: bool,
    phase: Phase,
    deadline: Option<Instant>,
    /// The epoll registration's events, `None` before the first registration.
    interest: Option<u32>,
}

#[derive(Debug, Default)]
struct Slot {
    gen: u32,
    entry: Option<Entry>,
}

#[derive(Debug, Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
    open: usize,
}

impl Table {
    fn reserve(&mut self) -> u64 {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            (self.slots.len() - 1) as u32
        });
        let gen = self.slots[idx as usize].gen;
        ((gen as u64) << 32) | idx as u64
    }

    fn get(&mut self, key: u64) -> Option<&mut Entry> {
        let slot = self.slots.get_mut((key & 0xffff_ffff) as usize)?;
        if slot.gen != (key >> 32) as u32 {
            return None;
        }
        slot.entry.as_mut()
    }

    fn remove(&mut self, key: u64) -> Option<Entry> {
        let idx = (key & 0xffff_ffff) as usize;
        let slot = self.slots.get_mut(idx)?;
        if slot.gen != (key >> 32) as u32 {
            return None;
        }
        let e = slot.entry.take()?;
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(idx as u32);
        self.open -= 1;
        Some(e)
    }
}

/// What reading a connection's input led to.
enum Pumped {
    /// A request for this thread (connections that do not multiplex).
    Job(Job),
    /// Nothing more to read now.
    Wait,
    /// A multiplexed request's inbox is full: input waits for it.
    Stalled,
    /// The connection is done: `clean` when nothing of it is left unread.
    Close { clean: bool },
}

/// A listener and whether its file is non-blocking (accept cannot block).
#[derive(Debug)]
struct Listening {
    listener: Listener,
    nonblocking: bool,
    /// Whether more connections may wait in the queue with no edge to come (several
    /// arrivals before a waiter took the edge give one event); see [`More`].
    more: More,
}

/// Whether a connection waits in a listener's queue now (one `poll`).
fn readable(l: &Listening) -> bool {
    epoll::wait_fd(l.listener.as_fd(), false, Some(Duration::ZERO)).unwrap_or(false)
}

/// "More may wait" for one listener, with a count of successful accepts beside the flag,
/// so that an attempt that found the queue empty clears only the flag it saw: a thread
/// whose `accept` came back empty must not clear the flag another thread set meanwhile
/// for connections that arrived after that empty look (they gave no edge of their own,
/// and nothing else would take them until the next arrival).
#[derive(Debug, Default)]
struct More(AtomicU64);

impl More {
    /// Before an attempt: what it may clear later.
    fn seen(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn get(&self) -> bool {
        self.seen() & 1 == 1
    }

    /// An attempt took a connection: another may wait.
    fn took(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some((v | 1) + 2));
    }

    /// An attempt that began at `seen` found the queue empty: clear the flag, unless a
    /// connection was taken since.
    fn empty(&self, seen: u64) {
        let _ = self
            .0
            .compare_exchange(seen, seen & !1, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Code a test runs at a chosen point inside the engine.
#[cfg(test)]
struct Hook(Box<dyn FnOnce() + Send>);

#[cfg(test)]
impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// The reactor; see the module documentation.
#[derive(Debug)]
pub(crate) struct Engine {
    epoll: Epoll,
    wake: EventFd,
    timer: TimerFd,
    timer_at: Mutex<Option<Instant>>,
    /// Shared with a thread that waits in `accept(2)`, which holds no lock meanwhile.
    listeners: RwLock<Vec<Arc<Listening>>>,
    /// Whether the listeners are in the epoll set.
    listening: Mutex<bool>,
    /// Accepting pauses until then (descriptors ran out).
    backoff_until: Mutex<Option<Instant>>,
    accept_log: Mutex<(Option<Instant>, u64)>,
    table: Mutex<Table>,
    ready: Mutex<VecDeque<Job>>,
    ready_len: AtomicUsize,
    /// Threads waiting in the shared epoll set.
    waiters: AtomicUsize,
    /// Threads waiting in their own sets (see [`Engine::wait_own`]).
    own_waiters: AtomicUsize,
    /// Written (never read) to call one of the threads that wait in their own sets to the
    /// shared set: something there needs a watcher.
    recall: EventFd,
    /// Written once (never read) when the engine stops: wakes every thread in its own set.
    halt: EventFd,
    /// Whether free threads wait in sets of their own while nothing else needs watching
    /// ([`Engine::wait_own`]): whenever there is a listener to wait for. (A C program's
    /// single thread waits in `accept(2)` itself instead, see `classic_accept`.)
    own_sets: bool,
    /// Tells this engine's own sets from another's (a thread keeps one set).
    id: u64,
    stopping: AtomicBool,
    /// Jobs handed out and not finished, for a graceful stop to wait on.
    jobs: Mutex<usize>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) counters: Arc<Counters>,
    idle_timeout: Option<Duration>,
    allow: Option<AllowList>,
    external_stop: Option<fn() -> bool>,
    on_stop: Option<fn()>,
    /// Run once by [`Engine::drain`] right after it looked at what is left (tests).
    #[cfg(test)]
    drain_looked: Mutex<Option<Hook>>,
    /// Run once by [`Engine::next`] right before it counts itself a waiter in the shared
    /// set (tests).
    #[cfg(test)]
    before_wait: Mutex<Option<Hook>>,
    count_threads: bool,
    classic_accept: bool,
    accept_signal: Option<fn() -> Option<libc::c_int>>,
    write_completion: bool,
}

thread_local! {
    /// Engines (by address) this thread has asked for requests.
    static SEEN: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
    /// While this thread runs a non-blocking [`Engine::next`]: the connections it accepted
    /// whose request head had not arrived, and until when it waits for them (see there).
    static ACCEPTED: std::cell::RefCell<Option<Vec<Accepted>>> =
        const { std::cell::RefCell::new(None) };
    /// This thread's own epoll set, and the id of the engine it belongs to.
    static OWN_SET: std::cell::RefCell<Option<(u64, Epoll)>> =
        const { std::cell::RefCell::new(None) };
    /// The id of the engine whose [`Engine::next`] this thread runs (0: none).
    static IN_NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Engine ids, for [`OWN_SET`] and [`IN_NEXT`].
static ENGINE_IDS: AtomicU64 = AtomicU64::new(1);

/// Marks the calling thread as inside an engine's [`Engine::next`] until dropped.
struct InNext(u64);

impl InNext {
    fn enter(id: u64) -> InNext {
        InNext(IN_NEXT.with(|c| c.replace(id)))
    }
}

impl Drop for InNext {
    fn drop(&mut self) {
        IN_NEXT.with(|c| c.set(self.0));
    }
}

/// What a wait in a thread's own set came to.
enum Own {
    /// A request for this thread.
    Job(Job),
    /// Woken (a connection went to another thread or process, a recall): look again.
    Again,
    /// The engine has something to watch: wait in the shared set.
    Shared,
}

/// A connection's key, and until when to wait for its head (None: no limit).
type Accepted = (u64, Option<Instant>);

/// Ends a non-blocking [`Engine::next`]'s list of the connections it accepted.
struct AcceptedList;

impl AcceptedList {
    fn start() -> AcceptedList {
        ACCEPTED.with(|a| *a.borrow_mut() = Some(Vec::new()));
        AcceptedList
    }
}

impl Drop for AcceptedList {
    fn drop(&mut self) {
        ACCEPTED.with(|a| *a.borrow_mut() = None);
    }
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "FastCGI engine stopped")
}

impl Engine {
    /// An engine on `listeners`; its counters go to `counters`.
    pub(crate) fn new(
        listeners: Vec<Listener>,
        opts: Options,
        counters: Arc<Counters>,
    ) -> io::Result<Arc<Engine>> {
        let epoll = Epoll::new()?;
        let wake = EventFd::new()?;
        let timer = TimerFd::new()?;
        epoll.add(wake.as_fd(), WAKE, epoll::LEVEL)?;
        epoll.add(timer.as_fd(), TIMER, epoll::LEVEL)?;
        let own_sets = !listeners.is_empty();
        let listeners = listeners
            .into_iter()
            .map(|l| {
                if let Listener::Tcp(t) = &l {
                    // FastCGI clients speak first: accept once the first bytes are in, and
                    // send responses without Nagle's delay (accepted sockets inherit it).
                    if opts.defer_accept {
                        crate::sys::set_defer_accept(t.as_fd());
                    }
                    crate::sys::set_nodelay(t.as_fd());
                }
                Arc::new(Listening {
                    nonblocking: crate::sys::is_nonblocking(l.as_fd()),
                    listener: l,
                    more: More::default(),
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            limits: opts.limits,
            bufs: BufPool::default(),
            read_timeout: opts.read_timeout,
            write_timeout: opts.write_timeout,
            log_errors: opts.log_errors,
        });
        let engine = Arc::new(Engine {
            epoll,
            wake,
            timer,
            timer_at: Mutex::new(None),
            listeners: RwLock::new(listeners),
            listening: Mutex::new(false),
            backoff_until: Mutex::new(None),
            accept_log: Mutex::new((None, 0)),
            table: Mutex::new(Table::default()),
            ready: Mutex::new(VecDeque::new()),
            ready_len: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            own_waiters: AtomicUsize::new(0),
            recall: EventFd::new()?,
            halt: EventFd::new()?,
            own_sets,
            id: ENGINE_IDS.fetch_add(1, Ordering::Relaxed),
            stopping: AtomicBool::new(false),
            jobs: Mutex::new(0),
            shared,
            counters,
            idle_timeout: opts.idle_timeout,
            allow: opts.allow,
            external_stop: opts.external_stop,
            on_stop: opts.on_stop,
            #[cfg(test)]
            drain_looked: Mutex::new(None),
            #[cfg(test)]
            before_wait: Mutex::new(None),
            count_threads: opts.count_threads,
            classic_accept: opts.classic_accept,
            accept_signal: opts.accept_signal,
            write_completion: opts.write_completion,
        });
        engine.update_listening();
        Ok(engine)
    }

    /// The eventfd that wakes the engine's waiters (for signal handlers).
    pub(crate) fn wake_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.wake.as_fd().as_raw_fd()
    }

    /// The eventfd that wakes the threads waiting in their own sets, for a signal handler
    /// that requests the stop ([`Options::external_stop`]); written only then (they do
    /// not read it: it stays readable).
    pub(crate) fn halt_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.halt.as_fd().as_raw_fd()
    }

    pub(crate) fn log(&self, args: std::fmt::Arguments<'_>) {
        self.shared.log(args)
    }

    fn is_stopping(&self) -> bool {
        if self.stopping.load(Ordering::Acquire) {
            return true;
        }
        if self.external_stop.is_some_and(|f| f()) {
            self.stop();
            return true;
        }
        false
    }

    /// [`Engine::is_stopping`] without stopping: for a thread about to wait in `accept(2)`.
    fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::Acquire) || self.external_stop.is_some_and(|f| f())
    }

    /// Connections waiting in the listeners' kernel queues, and the queues' sizes (summed),
    /// as the kernel reports them.
    pub(crate) fn listen_queue(&self) -> (u64, u64) {
        self.listeners
            .read()
            .iter()
            .filter_map(|l| crate::net::diag::listen_queue(l.listener.as_fd()))
            .fold((0, 0), |(w, b), (qw, qb)| (w + qw, b + qb))
    }

    /// Whether every listener's file was non-blocking when the engine was made (a C
    /// program's `O_NONBLOCK` socket: `FCGX_Accept_r` then returns -EAGAIN).
    pub(crate) fn nonblocking(&self) -> bool {
        let ls = self.listeners.read();
        !ls.is_empty() && ls.iter().all(|l| l.nonblocking)
    }

    /// Blocks until a request's head is complete and returns it; the calling thread then
    /// serves it and hands it back with [`Engine::finish`]. With `wait` false, returns
    /// `WouldBlock` instead of waiting when nothing is ready; but a connection this call
    /// accepted is waited for until its request head is complete (or it closes, or the
    /// read timeout passes), as libfcgi reads the connection it accepted: the caller (a
    /// C event loop that polls its listening socket) would not learn of its request
    /// otherwise, the socket being no longer readable.
    ///
    /// # Errors
    ///
    /// `Interrupted` once the engine stops; `WouldBlock` (see above); epoll errors.
    pub(crate) fn next(&self, wait: bool) -> io::Result<Job> {
        if self.count_threads {
            self.count_thread();
        }
        let _accepted = (!wait).then(AcceptedList::start);
        let _in_next = InNext::enter(self.id);
        loop {
            if self.is_stopping() {
                return Err(stopped());
            }
            if wait && self.classic_accept && self.may_wait_in_accept() {
                if let Some(job) = self.accept_blocking() {
                    return Ok(self.hand_out(job));
                }
                continue;
            }
            // Requests already waiting go first: a thread that took a fresh connection
            // each time it came back would starve them while connections keep arriving.
            if self.ready_len.load(Ordering::SeqCst) > 0 {
                if let Some(job) = self.pop_ready() {
                    return Ok(self.hand_out(job));
                }
            }
            if let Some(job) = self.accept_leftovers(false).0 {
                return Ok(self.hand_out(job));
            }
            if wait && self.own_sets {
                match self.wait_own()? {
                    Own::Job(job) => return Ok(self.hand_out(job)),
                    Own::Again => continue,
                    Own::Shared => {}
                }
            }
            #[cfg(test)]
            if let Some(Hook(f)) = self.before_wait.lock().take() {
                f();
            }
            self.waiters.fetch_add(1, Ordering::SeqCst);
            // Counted, then looked: a drain that saw no waiter and cleared the wake-up
            // (see `drain`) looked after the stop began, so this sees it.
            if self.stopping.load(Ordering::SeqCst) {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            if self.ready_len.load(Ordering::SeqCst) > 0 {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                if let Some(job) = self.pop_ready() {
                    return Ok(self.hand_out(job));
                }
                continue;
            }
            let timeout = if wait {
                None
            } else {
                self.accepted_head_wait()
            };
            let ev = self.epoll.wait_one(timeout);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            let Some(ev) = ev? else {
                if !wait && !self.is_stopping() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                continue;
            };
            let job = match ev.key {
                WAKE => {
                    if !self.is_stopping() {
                        self.wake.drain();
                    }
                    None
                }
                TIMER => {
                    self.timer.drain();
                    self.on_timer();
                    None
                }
                k if k & LISTENER_BASE != 0 => self.accept((k & !LISTENER_BASE) as usize),
                k => self.on_event(k),
            };
            if let Some(job) = job {
                return Ok(self.hand_out(job));
            }
        }
    }

    /// While the engine has nothing to watch but its listeners, a free thread waits in an
    /// epoll set of its own, which holds the listeners (level-triggered, exclusive: see
    /// [`epoll::LISTENER_OWN`]), the recall eventfd and the halt eventfd. Each arrival wakes one waiting
    /// thread, and a thread that comes back finds connections that arrived meanwhile, so
    /// a new connection costs `epoll_wait` and `accept4` and no second look at the queue.
    /// Once a connection waits in the shared set (or a request in the queue), one of the
    /// threads is called there ([`Engine::call_watchers`]); the others go there as they
    /// come back while it has something to watch.
    fn wait_own(&self) -> io::Result<Own> {
        // Counted before the look, so that whoever parks a connection or queues a
        // request after it sees this thread and calls it back (see `call_watchers`).
        self.own_waiters.fetch_add(1, Ordering::SeqCst);
        let ev = if self.nothing_to_watch() {
            OWN_SET.with(|own| {
                let mut own = own.borrow_mut();
                if own.as_ref().is_none_or(|(id, _)| *id != self.id) {
                    *own = None;
                    // Out of descriptors: this thread waits in the shared set instead.
                    let Ok(set) = self.own_set() else {
                        return Ok(None);
                    };
                    *own = Some((self.id, set));
                }
                let (_, set) = own.as_ref().expect("set just made");
                set.wait_one(None).map(Some)
            })
        } else {
            Ok(None)
        };
        self.own_waiters.fetch_sub(1, Ordering::SeqCst);
        let Some(ev) = ev? else {
            return Ok(Own::Shared);
        };
        let Some(ev) = ev else {
            return Ok(Own::Again); // a signal
        };
        match ev.key {
            // Looked at again by the caller's loop (the stop, or what needs watching).
            RECALL | HALT => Ok(Own::Again),
            k if *self.listening.lock() => {
                // A listener: take the connection; the "more may wait" flag stays alone,
                // as the own sets need no second look.
                let i = (k & !LISTENER_BASE) as usize;
                let Some(l) = self.listeners.read().get(i).cloned() else {
                    return Ok(Own::Again); // stopped: the listeners are gone
                };
                let res = self.accept_on(&l);
                drop(l); // a stop closes the listener once its clones are gone
                Ok(self.accepted(res).map_or(Own::Again, Own::Job))
            }
            _ => Ok(Own::Again),
        }
    }

    /// Whether the shared set has nothing a thread must watch: no parked connection, no
    /// queued request, accepting, not stopping.
    fn nothing_to_watch(&self) -> bool {
        !self.stopping.load(Ordering::SeqCst)
            && self.counters.parked.load(Ordering::SeqCst) == 0
            && self.ready_len.load(Ordering::SeqCst) == 0
            && *self.listening.lock()
    }

    /// A new own set for the calling thread.
    fn own_set(&self) -> io::Result<Epoll> {
        let set = Epoll::new()?;
        set.add(self.recall.as_fd(), RECALL, epoll::EDGE_ONE)?;
        set.add(self.halt.as_fd(), HALT, epoll::LEVEL)?;
        for (i, l) in self.listeners.read().iter().enumerate() {
            set.add(
                l.listener.as_fd(),
                LISTENER_BASE | i as u64,
                epoll::LISTENER_OWN,
            )?;
        }
        Ok(set)
    }

    /// `accept(2)` on `l`, which the caller holds by a clone, not the listeners' lock: on
    /// a blocking listener (a C program's) the call may wait, when another thread or
    /// process took the connection first; this thread holds no request then and waits,
    /// as a classic libfcgi thread does, for the next connection or until the engine
    /// stops (see [`epoll::accept_interruptible`]).
    ///
    /// While connections or requests wait in the shared set, that wait is bounded by
    /// [`ACCEPT_BOUND`] (given an `accept_signal`): the thread may be the only one to watch
    /// them, and a kept connection's next request would otherwise wait until a new
    /// connection reached this process. Processes that share a socket lose connections to
    /// each other between a look at the socket and the accept; nothing else can wake a
    /// blocked accept.
    fn accept_on(&self, l: &Listening) -> io::Result<(OwnedFd, Peer)> {
        if l.nonblocking {
            epoll::accept(l.listener.as_fd())
        } else {
            let watched = self.counters.parked.load(Ordering::SeqCst) > 0
                || self.ready_len.load(Ordering::SeqCst) > 0;
            let bound = self
                .accept_signal
                .filter(|_| watched)
                .and_then(|signal| signal())
                .map(|sig| (sig, ACCEPT_BOUND));
            epoll::accept_interruptible(l.listener.as_fd(), || self.stop_requested(), bound)
        }
    }

    /// Something now waits in the shared set (a parked connection, a queued request) and
    /// the calling thread will not wait there next: if no thread waits there and some
    /// wait in their own sets, call one back (one watcher is enough; the others stay where
    /// a new connection costs the least). A thread inside [`Engine::next`] that parks a
    /// connection waits in the shared set next; its caller need not call. Nothing happens
    /// where no thread waits in an own set (a C program's single thread, no listener).
    ///
    /// With no thread in either, threads of a C program may wait in `accept(2)` on a
    /// blocking listener (they lost the connection they were woken for to another
    /// process, when nothing waited in the shared set): the quiet signal, if any, brings
    /// them back to watch.
    fn call_watchers(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            return;
        }
        if self.own_waiters.load(Ordering::SeqCst) > 0 {
            self.recall.notify();
        } else if epoll::any_in_accept() {
            if let Some(sig) = self.accept_signal.and_then(|signal| signal()) {
                epoll::interrupt_accepts(sig);
            }
        }
    }

    /// How long a non-blocking [`Engine::next`] may still wait: for the connections it
    /// accepted, while they wait in the poller for the rest of their heads (None: no
    /// read timeout, no limit).
    fn accepted_head_wait(&self) -> Option<Duration> {
        ACCEPTED.with(|a| {
            let mut a = a.borrow_mut();
            let Some(list) = a.as_mut() else {
                return Some(Duration::ZERO);
            };
            let now = Instant::now();
            let mut t = self.table.lock();
            list.retain(|&(key, until)| {
                matches!(t.get(key), Some(e) if !e.busy) && until.is_none_or(|u| u > now)
            });
            if list.iter().any(|(_, until)| until.is_none()) {
                return None;
            }
            Some(
                list.iter()
                    .filter_map(|(_, until)| *until)
                    .min()
                    .map_or(Duration::ZERO, |u| u.saturating_duration_since(now)),
            )
        })
    }

    fn count_thread(&self) {
        let me = self as *const Engine as usize;
        SEEN.with(|seen| {
            let mut seen = seen.borrow_mut();
            if !seen.contains(&me) {
                seen.push(me);
                self.shared.limits.max_reqs.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    fn hand_out(&self, job: Job) -> Job {
        *self.jobs.lock() += 1;
        if self.counters.parked.load(Ordering::SeqCst) > 0
            || self.ready_len.load(Ordering::SeqCst) > 0
        {
            // This thread leaves; the shared set keeps a watcher.
            self.call_watchers();
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            // Connections that arrived together gave one edge, and this thread leaves with
            // one of them: take the next one now for a thread that waits (the accept this
            // thread would make when it comes back, made earlier). Not from a blocking
            // listener: a sibling process may take the connection between the check and
            // the accept, and this thread would wait there with its request; a waiter,
            // which holds nothing, is woken to look instead.
            let (next, blocking_more) = self.accept_leftovers(true);
            if let Some(next) = next {
                self.push_ready(next);
            }
            if blocking_more {
                self.wake.notify();
            }
            // This thread may have taken the wake-up meant for a queued job (and left with
            // another): pass it on, as pop_ready does.
            if self.ready_len.load(Ordering::SeqCst) > 0 {
                self.wake.notify();
            }
        }
        job
    }

    fn pop_ready(&self) -> Option<Job> {
        let mut q = self.ready.lock();
        let job = q.pop_front()?;
        self.ready_len.fetch_sub(1, Ordering::SeqCst);
        if !q.is_empty() && self.waiters.load(Ordering::SeqCst) > 0 {
            // Pass the wake-up on: the rest should run in parallel.
            self.wake.notify();
        }
        Some(job)
    }

    /// Queues a job for the next free thread, waking one if any waits.
    pub(crate) fn push_ready(&self, job: Job) {
        self.ready.lock().push_back(job);
        self.ready_len.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.wake.notify();
        } else {
            self.call_watchers();
        }
    }

    // ---- accepting ----

    /// Puts the listeners in the epoll set, or takes them out, as the state says: out while
    /// stopping, while backing off, and while the connection limit is reached.
    fn update_listening(&self) {
        let want = !self.stopping.load(Ordering::Acquire)
            && self.backoff_until.lock().is_none()
            && self.table.lock().open < self.shared.limits.max_conns;
        let mut on = self.listening.lock();
        if *on == want {
            return;
        }
        for (i, l) in self.listeners.read().iter().enumerate() {
            let fd = l.listener.as_fd();
            let _ = if want {
                self.epoll
                    .add(fd, LISTENER_BASE | i as u64, epoll::LISTENER)
            } else {
                self.epoll.delete(fd)
            };
        }
        *on = want;
    }

    /// Whether the calling thread may wait in `accept(2)` itself: the only thread, one
    /// blocking listener, and nothing else the engine must watch.
    fn may_wait_in_accept(&self) -> bool {
        if self.shared.limits.max_reqs.load(Ordering::Relaxed) > 1
            || self.ready_len.load(Ordering::SeqCst) > 0
            || self.backoff_until.lock().is_some()
            || self.table.lock().open > 0
        {
            return false;
        }
        let ls = self.listeners.read();
        ls.len() == 1 && !ls[0].nonblocking
    }

    /// A C program's only thread, with nothing else to watch: waits in `accept(2)`. On a
    /// Unix socket (no `TCP_DEFER_ACCEPT` there), it then waits for the new connection's
    /// first bytes and the listener at once (`poll`): it stays with the connection it took
    /// unless another arrives meanwhile, and a peer slow to speak never keeps the next one
    /// waiting.
    fn accept_blocking(&self) -> Option<Job> {
        // A clone, not the lock: the engine may stop meanwhile (its listener then closes
        // when this wait ends, which the stop interrupts).
        let l = Arc::clone(self.listeners.read().first()?);
        let listener = l.listener.as_fd();
        let res = self.accept_on(&l);
        let Ok((fd, peer)) = res else {
            return self.accepted(res);
        };
        if !matches!(l.listener, Listener::Tcp(_)) {
            let timeout = self.shared.read_timeout;
            if let Ok(None) = epoll::wait_either(fd.as_fd(), listener, timeout) {
                return None; // nothing within the head's deadline: a silent peer
            }
        }
        drop(l);
        self.accepted(Ok((fd, peer)))
    }

    /// A free thread, before it waits: connections that arrived together with the last
    /// accepted one got no edge of their own; take one of them, if any. A thread that
    /// `holds` a request only looks at blocking listeners and says whether one of them
    /// has a connection waiting.
    fn accept_leftovers(&self, holds: bool) -> (Option<Job>, bool) {
        let n = self.listeners.read().len();
        let mut blocking_more = false;
        for i in 0..n {
            // Until one brings a request for this thread, or the queue is empty.
            loop {
                let (more, blocking) = self
                    .listeners
                    .read()
                    .get(i)
                    .map_or((false, false), |l| (l.more.get(), !l.nonblocking));
                if !more || !*self.listening.lock() {
                    break;
                }
                if holds && blocking {
                    // Only look: a waiter is woken if one waits.
                    let ls = self.listeners.read();
                    let l = &ls[i];
                    let seen = l.more.seen();
                    if readable(l) {
                        blocking_more = true;
                    } else {
                        l.more.empty(seen);
                    }
                    break;
                }
                // (On a blocking listener, free threads that came back together may all
                // see the one connection left, and all but one then wait in accept. Letting
                // one thread at a time take leftovers there avoided that, but when that
                // thread lost the connection to another process and waited in accept, the
                // others left connections that came under one edge waiting with it.)
                if let Some(job) = self.accept(i) {
                    return (Some(job), blocking_more);
                }
            }
        }
        (None, blocking_more)
    }

    fn accept(&self, i: usize) -> Option<Job> {
        let l = Arc::clone(self.listeners.read().get(i)?);
        let seen = l.more.seen();
        if !l.nonblocking && !readable(&l) {
            // A blocking listener whose connection another thread or process took
            // meanwhile: accepting would block this thread. (One may still take it between
            // this look and the accept: see `accept_on`. A lock around look and accept would
            // keep the process's other threads from accepting while its holder waits there,
            // and arrivals would go unserved.)
            l.more.empty(seen);
            return None;
        }
        let res = self.accept_on(&l);
        match res {
            Ok(_) => l.more.took(),
            Err(_) => l.more.empty(seen),
        }
        drop(l);
        self.accepted(res)
    }

    fn accepted(&self, res: io::Result<(OwnedFd, Peer)>) -> Option<Job> {
        let (fd, peer) = match res {
            Ok(x) => x,
            Err(e) => {
                self.accept_error(e);
                return None;
            }
        };
        if let (Some(list), Peer::Ip(ip)) = (&self.allow, peer) {
            if !list.allows(Some(ip)) {
                self.log(format_args!(
                    "connection from {ip} dropped: not in FCGI_WEB_SERVER_ADDRS"
                ));
                return None;
            }
        }
        let conn = self.insert(fd);
        let key = conn.key;
        let job = self.drive(conn, false);
        if job.is_none() {
            ACCEPTED.with(|a| {
                if let Some(list) = a.borrow_mut().as_mut() {
                    let until = self.shared.read_timeout.map(|t| Instant::now() + t);
                    list.push((key, until));
                }
            });
        }
        job
    }

    fn accept_error(&self, e: io::Error) {
        match e.raw_os_error() {
            // Another waiter took it, or the peer gave up: nothing to do.
            Some(libc::EAGAIN | libc::ECONNABORTED | libc::EPROTO | libc::EINTR | libc::EPERM) => {}
            code => {
                if matches!(
                    code,
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) {
                    // Out of descriptors or memory: stop accepting for a moment (waiting
                    // connections stay in the kernel's queue), never spin.
                    let until = Instant::now() + ACCEPT_BACKOFF;
                    *self.backoff_until.lock() = Some(until);
                    self.update_listening();
                    self.arm_timer(until);
                }
                let mut log = self.accept_log.lock();
                let now = Instant::now();
                if log.0.is_none_or(|t| now.duration_since(t) >= LOG_INTERVAL) {
                    let more = std::mem::take(&mut log.1);
                    *log = (Some(now), 0);
                    drop(log);
                    if more > 0 {
                        self.log(format_args!(
                            "accept: {e} (and {more} more since the last message); pausing"
                        ));
                    } else {
                        self.log(format_args!("accept: {e}; pausing"));
                    }
                } else {
                    log.1 += 1;
                }
            }
        }
    }

    /// Records a new connection, busy (the caller drives it).
    fn insert(&self, fd: OwnedFd) -> Arc<Conn> {
        let mut t = self.table.lock();
        let key = t.reserve();
        let conn = Arc::new(Conn::new(fd, key, Arc::clone(&self.shared)));
        let idx = (key & 0xffff_ffff) as usize;
        t.slots[idx].entry = Some(Entry {
            conn: Arc::clone(&conn),
            busy: true,
            event: false,
            phase: Phase::Head,
            deadline: None,
            interest: None,
        });
        t.open += 1;
        let at_limit = t.open >= self.shared.limits.max_conns;
        drop(t);
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        if at_limit {
            self.update_listening();
        }
        conn
    }

    // ---- connection events ----

    fn on_event(&self, key: u64) -> Option<Job> {
        let conn = {
            let mut t = self.table.lock();
            let e = t.get(key)?;
            if e.busy {
                e.event = true;
                return None;
            }
            e.busy = true;
            Arc::clone(&e.conn)
        };
        self.counters.parked.fetch_sub(1, Ordering::SeqCst);
        self.drive(conn, false)
    }

    fn phase(&self, conn: &Conn) -> Phase {
        self.table
            .lock()
            .get(conn.key)
            .map_or(Phase::Closing, |e| e.phase)
    }

    /// Works on a connection this thread holds (busy): sends waiting output, reads what
    /// the socket has and feeds the machine, until a request is ready for this thread or
    /// the connection waits in the poller again (or closes). Other requests that became
    /// ready (multiplexed connections) are queued for other threads.
    ///
    /// `drained`: the socket was read to its end since the last edge the engine could have
    /// missed (a request just finished after a short read), so reading it again now would
    /// only give `EAGAIN`; new bytes will raise an event.
    fn drive(&self, conn: Arc<Conn>, mut drained: bool) -> Option<Job> {
        loop {
            let mut phase = self.phase(&conn);
            if conn.has_pending() {
                match conn.flush() {
                    Ok(true) => {
                        if self.park(&conn, phase) {
                            return None;
                        }
                        continue;
                    }
                    Ok(false) => {}
                    Err(_) => {
                        if let Phase::Flush { .. } = phase {
                            self.counters.aborted.fetch_add(1, Ordering::Relaxed);
                        }
                        self.close(&conn, false);
                        return None;
                    }
                }
            }
            match phase {
                Phase::Flush { keep: true } => phase = Phase::Idle,
                Phase::Flush { keep: false } => {
                    let clean = self.input_clean(&conn);
                    self.close(&conn, !clean);
                    return None;
                }
                Phase::Closing => {
                    if self.drain_closing(&conn) && !self.park(&conn, Phase::Closing) {
                        continue;
                    }
                    return None;
                }
                _ => {}
            }
            let pumped = self.pump(&conn, std::mem::take(&mut drained));
            if conn.has_pending() && !matches!(pumped, Pumped::Job(_)) {
                // Replies the peer has not taken yet: wait for room first.
                if let Pumped::Close { .. } = pumped {
                    self.close(&conn, true);
                    return None;
                }
            }
            match pumped {
                Pumped::Job(job) => return Some(job),
                Pumped::Wait | Pumped::Stalled => {
                    let next = self.wait_phase(&conn, phase);
                    if matches!(pumped, Pumped::Wait) && conn.read.lock().maybe_more {
                        continue;
                    }
                    if self.park(&conn, next) {
                        return self.take_queued_for_me();
                    }
                }
                Pumped::Close { clean } => {
                    self.close(&conn, !clean);
                    return self.take_queued_for_me();
                }
            }
        }
    }

    /// A multiplexed connection's requests were queued while driving it; the driving
    /// thread is free, so it takes the first itself (no wake-up needed).
    fn take_queued_for_me(&self) -> Option<Job> {
        if self.ready_len.load(Ordering::SeqCst) == 0 {
            return None;
        }
        self.pop_ready()
    }

    /// The phase a connection waits in after its input was read.
    fn wait_phase(&self, conn: &Conn, current: Phase) -> Phase {
        if self.shared.limits.multiplex {
            return Phase::Mpx;
        }
        let rs = conn.read.lock();
        match current {
            Phase::Idle | Phase::Head if rs.machine.is_idle() && rs.buf.is_empty() => Phase::Idle,
            _ => Phase::Head,
        }
    }

    /// Whether nothing of the connection's input is left unread (closing cannot reset it).
    fn input_clean(&self, conn: &Conn) -> bool {
        let rs = conn.read.lock();
        rs.buf.is_empty() && rs.machine.at_boundary() && !rs.maybe_more
    }

    /// Feeds the connection's input to its machine, reading the socket without blocking.
    fn pump(&self, conn: &Arc<Conn>, drained: bool) -> Pumped {
        let lim = &self.shared.limits;
        let pool = &self.shared.bufs;
        let mut rs = conn.read.lock();
        let mut drained = drained && !rs.maybe_more;
        let result = loop {
            if rs.stalled.is_some() {
                break Pumped::Stalled;
            }
            let progress = {
                let rs = &mut *rs;
                rs.machine.advance(lim, rs.buf.pending(), usize::MAX)
            };
            match progress {
                Err(e) => {
                    self.log(format_args!("connection closed: {e}"));
                    break Pumped::Close { clean: false };
                }
                Ok(Progress::Event(used, ev)) => {
                    let data_at = used;
                    match ev {
                        Event::Head(head) if !lim.multiplex => {
                            rs.buf.consume(used);
                            break Pumped::Job(Job {
                                head,
                                conn: Arc::clone(conn),
                                inbox: None,
                            });
                        }
                        Event::Head(head) => {
                            rs.buf.consume(used);
                            let inbox = Arc::new(Inbox::default());
                            rs.routes.push((head.id, Arc::clone(&inbox)));
                            self.push_ready(Job {
                                head,
                                conn: Arc::clone(conn),
                                inbox: Some(inbox),
                            });
                        }
                        Event::Data { id, which, len } => {
                            let full = match rs.route(id) {
                                Some(b) => {
                                    !b.push(which, &rs.buf.pending()[data_at - len..data_at])
                                }
                                None => false,
                            };
                            rs.buf.consume(used);
                            if full {
                                rs.stalled = Some(id);
                            }
                        }
                        Event::End { id, which } => {
                            rs.buf.consume(used);
                            if let Some(b) = rs.route(id) {
                                b.end(which);
                            }
                        }
                        Event::Abort { id } => {
                            rs.buf.consume(used);
                            if let Some(b) = rs.route(id) {
                                b.abort();
                            }
                        }
                    }
                }
                Ok(Progress::Blocked(used)) => {
                    rs.buf.consume(used);
                    break Pumped::Wait;
                }
                Ok(Progress::NeedMore(used)) => {
                    rs.buf.consume(used);
                    if rs.machine.wants_close() {
                        // The machine ended a request itself (a refusal, an unknown
                        // role): its peer may still be sending the rest of it, which
                        // must not reset the answer. Linger.
                        break Pumped::Close { clean: false };
                    }
                    if rs.eof {
                        if !rs.machine.is_idle() {
                            self.log(format_args!(
                                "connection closed in the middle of a request head"
                            ));
                        }
                        break Pumped::Close { clean: true };
                    }
                    if drained {
                        break Pumped::Wait;
                    }
                    if conn.pending_len() + rs.machine.output_len() > OWED_MAX {
                        // Replies the peer does not read (GET_VALUES after GET_VALUES):
                        // read nothing more until they are out.
                        break Pumped::Wait;
                    }
                    match rs.fill_nonblocking(conn.as_fd(), pool) {
                        Ok(true) => drained = !rs.maybe_more,
                        Ok(false) => break Pumped::Wait,
                        Err(_) => break Pumped::Close { clean: false },
                    }
                }
            }
        };
        for note in rs.machine.take_notes() {
            self.log(format_args!("{note}"));
        }
        if rs.machine.has_output() {
            let out = rs.machine.take_output();
            if conn.write_or_queue(&[&out]).is_err() {
                rs.buf.release(pool);
                return Pumped::Close { clean: false };
            }
        }
        if !matches!(result, Pumped::Job(_)) {
            rs.buf.release(pool);
        }
        if let Pumped::Close { .. } = result {
            for (_, b) in rs.routes.drain(..) {
                b.abort();
            }
        }
        result
    }

    /// Reads and drops what a closing connection's peer still sends. Returns false when
    /// the connection is finished (closed).
    fn drain_closing(&self, conn: &Arc<Conn>) -> bool {
        let mut buf = [0u8; 4096];
        // A peer that keeps sending does not keep this thread: at most 1 MiB a turn (its
        // next bytes bring the next turn; the linger deadline ends it).
        for _ in 0..256 {
            match epoll::recv(conn.as_fd(), &mut buf, false) {
                Ok(0) => {
                    self.close(conn, false);
                    return false;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => {
                    self.close(conn, false);
                    return false;
                }
            }
        }
        true
    }

    /// Gives a connection this thread holds back to the poller, to wait in `phase`.
    /// Returns false (and keeps it busy) when an event came meanwhile: drive it again.
    fn park(&self, conn: &Arc<Conn>, phase: Phase) -> bool {
        let now = Instant::now();
        let deadline = match phase {
            Phase::Head => {
                // One deadline for the whole head, kept across the events that bring it.
                let kept = self
                    .table
                    .lock()
                    .get(conn.key)
                    .filter(|e| e.phase == Phase::Head)
                    .and_then(|e| e.deadline);
                kept.or_else(|| self.shared.read_timeout.map(|t| now + t))
            }
            Phase::Idle => self.idle_timeout.map(|t| now + t),
            Phase::Mpx => {
                let rs = conn.read.lock();
                if rs.machine.running() > 0 {
                    None // its requests' threads have their own deadlines
                } else if rs.machine.is_idle() {
                    self.idle_timeout.map(|t| now + t)
                } else {
                    // Only heads arriving: one deadline for them, kept across events.
                    let kept = self.table.lock().get(conn.key).and_then(|e| e.deadline);
                    kept.or_else(|| self.shared.read_timeout.map(|t| now + t))
                }
            }
            Phase::Flush { .. } => self.shared.write_timeout.map(|t| now + t),
            Phase::Closing => Some(now + LINGER),
        };
        let want = if conn.has_pending() {
            epoll::CONN_OUT
        } else {
            epoll::CONN
        };
        let mut t = self.table.lock();
        let Some(e) = t.get(conn.key) else {
            return true;
        };
        if e.event {
            e.event = false;
            return false;
        }
        if e.interest != Some(want) {
            let r = match e.interest {
                None => self.epoll.add(conn.as_fd(), conn.key, want),
                Some(_) => self.epoll.modify(conn.as_fd(), conn.key, want),
            };
            if let Err(err) = r {
                drop(t);
                self.log(format_args!("cannot watch a connection: {err}"));
                self.close(conn, false);
                return true;
            }
            e.interest = Some(want);
        }
        e.busy = false;
        e.phase = phase;
        e.deadline = deadline;
        drop(t);
        self.counters.parked.fetch_add(1, Ordering::SeqCst);
        if IN_NEXT.with(|c| c.get()) != self.id {
            self.call_watchers();
        }
        if let Some(d) = deadline {
            self.arm_timer(d);
        }
        self.tell_drain();
        true
    }

    /// Closes a connection: at once, or (`linger`) by shutting our side and reading what
    /// the peer still sends for a moment, so unread input does not reset the response.
    fn close(&self, conn: &Arc<Conn>, linger: bool) {
        if linger && !conn.is_broken() {
            conn.shutdown_write();
            {
                let mut rs = conn.read.lock();
                rs.buf.release(&self.shared.bufs);
                for (_, b) in rs.routes.drain(..) {
                    b.abort();
                }
            }
            if let Some(e) = self.table.lock().get(conn.key) {
                e.phase = Phase::Closing;
            }
            if !self.drain_closing(conn) {
                return;
            }
            if !self.park(conn, Phase::Closing) {
                // An event came: the next drive reads it.
                self.drive(Arc::clone(conn), false);
            }
            return;
        }
        let entry = self.table.lock().remove(conn.key);
        let Some(entry) = entry else { return };
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        if !entry.busy {
            self.counters.parked.fetch_sub(1, Ordering::SeqCst);
        }
        let running = {
            let mut rs = conn.read.lock();
            let running = rs.machine.active() > 0;
            for (_, b) in rs.routes.drain(..) {
                b.abort();
            }
            running
        };
        if running && self.shared.limits.multiplex {
            // Requests of other threads still hold it: make their I/O fail now, and stop
            // its events, since the descriptor stays open until they drop it.
            conn.shutdown_both();
            if entry.interest.is_some() {
                let _ = self.epoll.delete(conn.as_fd());
            }
        }
        drop(entry);
        if self.table.lock().open + 1 == self.shared.limits.max_conns {
            self.update_listening();
        }
        self.tell_drain();
    }

    /// While stopping, a connection's state changed on a thread other than the draining
    /// one (which waits in the poller for what is left): wake it to look again.
    fn tell_drain(&self) {
        if self.stopping.load(Ordering::Acquire) {
            self.wake.notify();
        }
    }

    // ---- requests ----

    /// Ends a request of a connection that does not multiplex: `tail` (the output's last
    /// records and END_REQUEST) goes out, then the connection waits for its next request,
    /// or its output is finished from the poller, or it closes. When the next request is
    /// already buffered (pipelined), it is returned for this thread.
    pub(crate) fn finish(&self, job_conn: &Arc<Conn>, id: u16, tail: &[&[u8]]) -> Option<Job> {
        let next = self.finish_inner(job_conn, id, tail);
        // Done once its connection is in its next state (output left for the poller to
        // finish is then in sight of a drain); a pipelined request that follows carries
        // the count on.
        if next.is_none() {
            self.job_done();
        }
        next
    }

    fn finish_inner(&self, job_conn: &Arc<Conn>, id: u16, tail: &[&[u8]]) -> Option<Job> {
        let conn = job_conn;
        let lim = &self.shared.limits;
        let (keep, clean) = {
            let mut rs = conn.read.lock();
            // The rest of this request's input that is already here is dropped.
            loop {
                let step = {
                    let rs = &mut *rs;
                    rs.machine.advance(lim, rs.buf.pending(), usize::MAX)
                };
                match step {
                    Ok(Progress::Event(used, Event::Data { id: i, .. }))
                    | Ok(Progress::Event(used, Event::End { id: i, .. }))
                    | Ok(Progress::Event(used, Event::Abort { id: i }))
                        if i == id =>
                    {
                        rs.buf.consume(used)
                    }
                    Ok(Progress::Event(used, _)) => rs.buf.consume(used),
                    Ok(Progress::NeedMore(used)) | Ok(Progress::Blocked(used)) => {
                        rs.buf.consume(used);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let done = rs.machine.input_done(id);
            let keep = rs.machine.finish(lim, id).unwrap_or(false);
            let clean = done && rs.buf.is_empty() && rs.machine.at_boundary() && !rs.maybe_more;
            if !done {
                // Input of the finished request that is still to come will be skipped.
            }
            (keep, clean)
        };
        let keep = keep && !self.stopping.load(Ordering::Acquire) && !conn.is_broken();
        let written = if self.write_completion {
            conn.write_or_queue(tail)
        } else {
            conn.write_all(tail).map(|()| false)
        };
        match written {
            Err(_) => {
                self.counters.aborted.fetch_add(1, Ordering::Relaxed);
                self.close(conn, false);
                return None;
            }
            Ok(true) => {
                // The peer reads slowly: the poller finishes the output; no thread waits.
                if !self.park(conn, Phase::Flush { keep }) {
                    return self.drive(Arc::clone(conn), false);
                }
                return None;
            }
            Ok(false) => {}
        }
        if !keep {
            self.close(conn, !clean);
            return None;
        }
        if let Some(e) = self.table.lock().get(conn.key) {
            e.phase = Phase::Idle;
        }
        self.drive(Arc::clone(conn), true)
    }

    /// Ends a request of a multiplexed connection: its id is released first (the web
    /// server may reuse it once END_REQUEST is out), then `tail` is written.
    pub(crate) fn finish_multiplexed(&self, conn: &Arc<Conn>, id: u16, tail: &[&[u8]]) -> bool {
        let (keep, idle) = {
            let mut rs = conn.read.lock();
            rs.unroute(id);
            let keep = rs.machine.finish(&self.shared.limits, id).unwrap_or(false);
            (keep, rs.machine.active() == 0)
        };
        let r = conn.write_all(tail);
        if r.is_err() {
            self.counters.aborted.fetch_add(1, Ordering::Relaxed);
        }
        if !keep && idle {
            // Only this connection's own thread may close it; a parked one is closed here.
            self.close_if_parked(conn);
        }
        self.job_done();
        r.is_ok()
    }

    /// Closes a connection that waits in the poller between requests, because the
    /// program asked (the C ABI's `FCGX_Free(r, 1)` after `FCGX_Finish_r` on a kept
    /// connection); found by its key, so a later connection on the same descriptor number
    /// is never touched. `linger`: shut down our side and drain the peer's last bytes
    /// first, as `OS_IpcClose` does. Output still going out is sent first. Nothing happens
    /// when the connection is gone or a thread holds it (its next request runs). Returns
    /// whether it will close.
    pub(crate) fn close_parked(&self, conn: &Arc<Conn>, linger: bool) -> bool {
        {
            let mut t = self.table.lock();
            let Some(e) = t.get(conn.key) else {
                return false;
            };
            if e.busy || !Arc::ptr_eq(&e.conn, conn) {
                return false;
            }
            if let Phase::Flush { .. } = e.phase {
                e.phase = Phase::Flush { keep: false };
                return true;
            }
            e.busy = true;
        }
        self.counters.parked.fetch_sub(1, Ordering::SeqCst);
        self.close(conn, linger);
        true
    }

    /// Ends a request of a connection that does not multiplex without END_REQUEST and
    /// closes the connection (shut down, the peer's last bytes drained in the poller):
    /// the program gave up on it. The calling thread holds the connection.
    pub(crate) fn abandon(&self, conn: &Arc<Conn>) {
        self.counters.aborted.fetch_add(1, Ordering::Relaxed);
        self.close(conn, true);
        self.job_done();
    }

    /// A request's connection leaves the engine without END_REQUEST and without being
    /// shut down (the C ABI's fork support: the request was handed to a forked child,
    /// whose copy of the descriptor now serves it). The engine stops watching it; its
    /// descriptor closes when the request lets go of it. `in_child`: this process is the
    /// forked child, which shares the parent's epoll set and must leave it alone.
    pub(crate) fn forget(&self, conn: &Arc<Conn>, in_child: bool) {
        let entry = if in_child {
            // Locks another thread of the parent held at the fork stay held: never wait.
            self.table.try_lock().and_then(|mut t| t.remove(conn.key))
        } else {
            let entry = self.table.lock().remove(conn.key);
            self.job_done();
            entry
        };
        let Some(entry) = entry else { return };
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        if !entry.busy {
            self.counters.parked.fetch_sub(1, Ordering::SeqCst);
        }
        if !in_child && entry.interest.is_some() {
            let _ = self.epoll.delete(conn.as_fd());
        }
        drop(entry);
        if !in_child && self.table.lock().open + 1 == self.shared.limits.max_conns {
            self.update_listening();
        }
    }

    /// In a forked child: lets go of every connection the engine held when the process
    /// forked (the child's copies of their descriptors close as their last users drop
    /// them), without a system call on what the child shares with its parent (the epoll
    /// set, the sockets' state). Skipped if another thread held the table at the fork.
    pub(crate) fn abandon_in_child(&self) {
        let Some(mut t) = self.table.try_lock() else {
            return;
        };
        let mut entries = Vec::new();
        for key in 0..t.slots.len() as u64 {
            let key = key | (u64::from(t.slots[key as usize].gen) << 32);
            entries.extend(t.remove(key));
        }
        drop(t);
        drop(entries);
    }

    fn close_if_parked(&self, conn: &Arc<Conn>) {
        let parked = {
            let mut t = self.table.lock();
            match t.get(conn.key) {
                Some(e) if !e.busy => {
                    e.busy = true;
                    true
                }
                _ => false,
            }
        };
        if parked {
            self.counters.parked.fetch_sub(1, Ordering::SeqCst);
            self.close(conn, true);
        }
    }

    fn job_done(&self) {
        let mut jobs = self.jobs.lock();
        *jobs = jobs.saturating_sub(1);
        if *jobs == 0 && self.stopping.load(Ordering::Acquire) {
            // The stopping thread waits in `drain` for this.
            self.wake.notify();
        }
    }

    /// A multiplexed request's inbox drained while the connection's input waited for it:
    /// read on (from the request's thread), queueing requests that become ready.
    pub(crate) fn resume(&self, conn: &Arc<Conn>) {
        conn.read.lock().stalled = None;
        if self.try_take(conn) {
            self.release(conn);
        } else if let Some(e) = self.table.lock().get(conn.key) {
            e.event = true;
        }
    }

    /// Takes a parked connection for this thread (false when another thread has it).
    fn try_take(&self, conn: &Conn) -> bool {
        let mut t = self.table.lock();
        match t.get(conn.key) {
            Some(e) if !e.busy => {
                e.busy = true;
                drop(t);
                self.counters.parked.fetch_sub(1, Ordering::SeqCst);
                true
            }
            _ => false,
        }
    }

    /// Drives a multiplexed connection this thread took until it waits in the poller;
    /// requests that became ready go to the queue (this thread serves one already).
    fn release(&self, conn: &Arc<Conn>) {
        if let Some(job) = self.drive(Arc::clone(conn), false) {
            self.push_ready(job);
        }
        for (_, b) in conn.read.lock().routes.iter() {
            b.kick();
        }
    }

    /// A multiplexed request needs input and none is there: when no other thread reads
    /// its connection, read it here (routing what comes to every request of it) until
    /// this request's input arrives or `deadline` passes. Returns false when another
    /// thread reads the connection (wait for the inbox to change instead).
    pub(crate) fn read_for(
        &self,
        conn: &Arc<Conn>,
        inbox: &Inbox,
        which: Which,
        deadline: Option<Instant>,
    ) -> bool {
        if !self.try_take(conn) {
            return false;
        }
        loop {
            match self.pump(conn, false) {
                Pumped::Close { clean } => {
                    self.close(conn, !clean);
                    return true;
                }
                Pumped::Job(job) => self.push_ready(job),
                Pumped::Stalled => break,
                Pumped::Wait => {
                    if inbox.ready(which) {
                        break;
                    }
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|l| l.is_zero()) {
                        break;
                    }
                    match epoll::wait_fd(conn.as_fd(), false, left) {
                        Ok(true) => {}
                        Ok(false) | Err(_) => break,
                    }
                }
            }
        }
        self.release(conn);
        true
    }

    /// The thread serving a request on `conn` is about to wait for its input: the
    /// connection's events would only wake other threads meanwhile, so mute them.
    pub(crate) fn mute(&self, conn: &Conn) {
        let mut t = self.table.lock();
        if let Some(e) = t.get(conn.key) {
            if e.interest.is_some_and(|i| i != epoll::QUIET)
                && self
                    .epoll
                    .modify(conn.as_fd(), conn.key, epoll::QUIET)
                    .is_ok()
            {
                e.interest = Some(epoll::QUIET);
            }
        }
    }

    // ---- timers ----

    fn arm_timer(&self, at: Instant) {
        let mut cur = self.timer_at.lock();
        if cur.is_some_and(|c| c <= at) {
            return; // an earlier wake-up is set; it re-arms for the rest
        }
        *cur = Some(at);
        self.timer.arm(at.saturating_duration_since(Instant::now()));
    }

    fn on_timer(&self) {
        *self.timer_at.lock() = None;
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        {
            let mut b = self.backoff_until.lock();
            match *b {
                Some(until) if until <= now => *b = None,
                Some(until) => next = Some(until),
                None => {}
            }
        }
        self.update_listening();
        let mut expired = Vec::new();
        {
            let mut t = self.table.lock();
            for slot in t.slots.iter_mut() {
                let Some(e) = slot.entry.as_mut() else {
                    continue;
                };
                match e.deadline {
                    Some(d) if !e.busy && d <= now => {
                        e.busy = true;
                        expired.push((Arc::clone(&e.conn), e.phase));
                    }
                    Some(d) if !e.busy => next = Some(next.map_or(d, |n| n.min(d))),
                    _ => {}
                }
            }
        }
        for (conn, phase) in expired {
            self.counters.parked.fetch_sub(1, Ordering::SeqCst);
            match phase {
                Phase::Head => {
                    self.log(format_args!(
                        "connection closed: request head not complete within {:?}",
                        self.shared.read_timeout.unwrap_or_default()
                    ));
                    self.close(&conn, false);
                }
                Phase::Flush { .. } => {
                    self.counters.aborted.fetch_add(1, Ordering::Relaxed);
                    self.log(format_args!(
                        "connection closed: the web server did not read the response within {:?}",
                        self.shared.write_timeout.unwrap_or_default()
                    ));
                    self.close(&conn, false);
                }
                Phase::Idle | Phase::Mpx | Phase::Closing => self.close(&conn, false),
            }
        }
        if let Some(n) = next {
            self.arm_timer(n);
        }
    }

    // ---- stopping ----

    /// Stops accepting, closes idle connections, and makes every [`Engine::next`] return
    /// `Interrupted`; requests in flight go on.
    pub(crate) fn stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.update_listening();
        if let Some(f) = self.on_stop {
            f();
        }
        // Closing the listeners resets connections still in their queue, so the web server
        // tries elsewhere at once (and a Unix socket's file goes away).
        self.listeners.write().clear();
        let idle: Vec<Arc<Conn>> = {
            let mut t = self.table.lock();
            t.slots
                .iter_mut()
                .filter_map(|s| s.entry.as_mut())
                .filter(|e| !e.busy && matches!(e.phase, Phase::Idle | Phase::Head))
                .map(|e| {
                    e.busy = true;
                    Arc::clone(&e.conn)
                })
                .collect()
        };
        for c in idle {
            self.counters.parked.fetch_sub(1, Ordering::SeqCst);
            self.close(&c, false);
        }
        // Level-triggered and never drained from now on: every waiter wakes, in turn.
        self.wake.notify();
        self.halt.notify();
    }

    /// After [`Engine::stop`], from the stopping thread: waits until every request handed
    /// out has finished, and drives what the engine still owes (responses going out to slow
    /// readers, connections closing) until it is done, or until `deadline`. Returns whether
    /// everything finished.
    pub(crate) fn drain(&self, deadline: Instant) -> bool {
        loop {
            if self.waiters.load(Ordering::SeqCst) == 0 {
                // Every idle worker has seen the stop and left: the wake-up has done its
                // work, and must not keep this wait from sleeping. Cleared before the look
                // below, so that a request ending or a connection closing after the look
                // (which notifies) wakes the wait.
                self.wake.drain();
            }
            let jobs = *self.jobs.lock();
            if jobs == 0 && !self.owes_output() {
                return true;
            }
            #[cfg(test)]
            if let Some(Hook(f)) = self.drain_looked.lock().take() {
                f();
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Woken by the connections' events, and by requests finishing (`job_done`).
            let ev = match self.epoll.wait_one(Some(deadline - now)) {
                Ok(Some(ev)) => ev,
                Ok(None) => continue,
                Err(_) => return false,
            };
            match ev.key {
                WAKE => {}
                TIMER => {
                    self.timer.drain();
                    self.on_timer();
                }
                k if k & LISTENER_BASE != 0 => {}
                k => {
                    if let Some(job) = self.on_event(k) {
                        // A request that came after the stop: nobody serves it now.
                        self.close(&job.conn, true);
                    }
                }
            }
        }
    }

    /// Whether a connection still has output for a slow reader, or is closing.
    fn owes_output(&self) -> bool {
        self.table
            .lock()
            .slots
            .iter()
            .filter_map(|s| s.entry.as_ref())
            .any(|e| matches!(e.phase, Phase::Flush { .. } | Phase::Closing))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Connections hold no reference to the engine; dropping the table closes them.
        let t = self.table.get_mut();
        for s in t.slots.iter_mut() {
            if let Some(e) = s.entry.take() {
                let mut rs = e.conn.read.lock();
                for (_, b) in rs.routes.drain(..) {
                    b.abort();
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
