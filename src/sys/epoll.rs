//! epoll, eventfd and timerfd: the reactor's three descriptors, and the socket calls the
//! engine makes on its hot path (`accept4`, `recv`, `sendmsg`).
//!
//! Registrations carry a caller-chosen 64-bit key. Connections are registered
//! edge-triggered once for their lifetime (no re-arming per request); listening sockets
//! edge-triggered with `EPOLLEXCLUSIVE` in the engine's shared set (level-triggered in a
//! thread's own set), so one idle process of several sharing a socket is woken per
//! connection, as threads blocked in `accept(2)` are.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use super::cvt;

/// Readable, and the peer's half-close, edge-triggered: a connection's registration.
pub(crate) const CONN: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
/// [`CONN`] and writable: a connection with output waiting for room.
pub(crate) const CONN_OUT: u32 = CONN | libc::EPOLLOUT as u32;
/// Nothing but errors and hang-ups (always reported): a connection whose thread reads it
/// directly for a while.
pub(crate) const QUIET: u32 = libc::EPOLLET as u32;
/// Readable, edge-triggered, and exclusive across epoll sets: a listener. Edge-triggered,
/// because a level-triggered registration is put back on the ready list when a waiter
/// takes it and wakes the next waiter of the same set, and so on, before the first one has
/// accepted: every idle thread would try `accept` for each connection. Exclusive, so one
/// of several processes sharing the socket (whichever has a waiting thread) is woken.
pub(crate) const LISTENER: u32 = (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLEXCLUSIVE) as u32;
/// Readable, level-triggered: the wake-up and timer descriptors.
pub(crate) const LEVEL: u32 = libc::EPOLLIN as u32;
/// Readable, level-triggered and exclusive: a listener in one thread's own epoll set (see
/// the engine's `Engine::wait_own`). Each arrival wakes one set that has a waiting thread (a
/// set whose thread is busy lets the wake-up pass on to the next), and a set checks the
/// queue again each time its thread comes back, so connections that arrived together
/// are never left without a thread to notice them; with one waiter per set, level
/// triggering wakes no one else.
pub(crate) const LISTENER_OWN: u32 = (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32;
/// Readable, edge-triggered and exclusive: an eventfd that is written and never read,
/// each write waking one of the sets it is in that has a waiting thread.
pub(crate) const EDGE_ONE: u32 = (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLEXCLUSIVE) as u32;

/// An epoll set.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

/// One ready registration: its key (what happened is read from the descriptor itself:
/// the engine always reads, or writes, and sees).
#[derive(Copy, Clone, Debug)]
pub(crate) struct Ready {
    pub(crate) key: u64,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall returning a new descriptor, owned at once.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as isize)?;
        // SAFETY: the descriptor was just created and nothing else owns it.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: `ev` is valid for the call; epoll_ctl only reads it (DEL ignores it).
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) } as isize).map(drop)
    }

    /// Registers `fd` under `key` with `events`.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, key: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), events, key)
    }

    /// Changes a registration's events.
    pub(crate) fn modify(&self, fd: BorrowedFd<'_>, key: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), events, key)
    }

    /// Removes a registration.
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0)
    }

    /// Waits for one ready registration, up to `timeout` (forever for `None`). `Ok(None)`
    /// when the wait timed out or a signal interrupted it.
    pub(crate) fn wait_one(&self, timeout: Option<Duration>) -> io::Result<Option<Ready>> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: one valid entry for epoll_wait to fill.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), &mut ev, 1, timeout_ms(timeout)) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Ok((n == 1).then_some(Ready { key: ev.u64 }))
    }
}

/// Milliseconds for poll-like calls; a sub-millisecond rest rounds up, so it never
/// becomes a busy loop of zero-millisecond waits.
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => d.as_micros().div_ceil(1000).min(libc::c_int::MAX as u128) as libc::c_int,
    }
}

/// An eventfd: written to wake a waiter (also from a signal handler), read to clear.
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall returning a new descriptor, owned at once.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) } as isize)?;
        // SAFETY: the descriptor was just created and nothing else owns it.
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
        })
    }

    /// Makes the descriptor readable (async-signal-safe: one `write`).
    pub(crate) fn notify(&self) {
        notify_raw(self.fd.as_raw_fd());
    }

    /// Clears it.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `buf`; the eventfd is non-blocking.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// Writes 1 to the eventfd `fd`; async-signal-safe. An eventfd at its maximum refuses the
/// write, which still leaves it readable.
pub(crate) fn notify_raw(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of `one` to a descriptor; a stale one fails harmlessly.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// A timerfd on the monotonic clock, armed to one absolute time.
#[derive(Debug)]
pub(crate) struct TimerFd {
    fd: OwnedFd,
}

impl TimerFd {
    pub(crate) fn new() -> io::Result<TimerFd> {
        // SAFETY: plain syscall returning a new descriptor, owned at once.
        let fd = cvt(unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
            )
        } as isize)?;
        // SAFETY: the descriptor was just created and nothing else owns it.
        Ok(TimerFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
        })
    }

    /// Fires once, `after` from now (at least a millisecond).
    pub(crate) fn arm(&self, after: Duration) {
        let spec = one_shot(after.max(Duration::from_millis(1)));
        // SAFETY: `spec` is valid for the call; the old value is not asked for.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// Clears the expiration.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `buf`; the timerfd is non-blocking.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// The peer of an accepted connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A TCP peer's address.
    Ip(IpAddr),
    /// A Unix-socket peer.
    Local,
}

/// `accept4(fd, SOCK_CLOEXEC)`: a new connection and its peer, from the address `accept4`
/// reports (no extra `getpeername`). The socket stays blocking, as libfcgi's are: the
/// engine asks for non-blocking calls one by one (`MSG_DONTWAIT`), and a thread that must
/// wait does so in the call itself, under the socket's own timeouts ([`set_timeout`]).
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, Peer)> {
    // SAFETY: sockaddr_storage is plain data; accept4 writes at most `len` bytes into it.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let s = libc::accept4(
            fd.as_raw_fd(),
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_CLOEXEC,
        );
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        let owned = OwnedFd::from_raw_fd(s);
        let peer = match addr.ss_family as libc::c_int {
            libc::AF_INET => {
                let a = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                Peer::Ip(IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                let a = &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                Peer::Ip(IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)))
            }
            _ => Peer::Local,
        };
        Ok((owned, peer))
    }
}

/// The threads waiting in [`accept_interruptible`] now (`pthread_t`; 0: a free slot). A
/// blocking `accept(2)` ends for a connection or a signal, nothing else: a shutdown
/// signals them ([`interrupt_accepts`]). A thread that finds every slot taken waits
/// unregistered, as with the classic library.
static IN_ACCEPT: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

/// [`accept`] on a blocking listener, where the calling thread may wait: registered in
/// [`IN_ACCEPT`] meanwhile, so a shutdown can interrupt it. `stop` is checked once
/// registered (`Interrupted` without accepting when it says so): a shutdown that sets
/// its flag before it looks at the registry either is seen here or signals this thread.
/// (A signal that lands between this check and the call itself is spent before the wait
/// begins; the threads that leave their accept loop signal again, see
/// [`interrupt_accepts`].)
///
/// With `bound` (a signal and a time), the wait ends with `Interrupted` after that time
/// if no connection came: a timer of this thread sends it the signal, whose handler must
/// do nothing and be installed without `SA_RESTART`. Where the timer cannot be made, the
/// accept waits unbounded.
pub(crate) fn accept_interruptible(
    fd: BorrowedFd<'_>,
    stop: impl Fn() -> bool,
    bound: Option<(libc::c_int, Duration)>,
) -> io::Result<(OwnedFd, Peer)> {
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() } as usize;
    let slot = IN_ACCEPT
        .iter()
        .find(|s| s.compare_exchange(0, me, SeqCst, SeqCst).is_ok());
    let armed = bound.is_some_and(|(sig, after)| AcceptTimer::arm(sig, after));
    let res = if stop() {
        Err(io::Error::from_raw_os_error(libc::EINTR))
    } else {
        accept(fd)
    };
    if armed {
        // A signal sent meanwhile is handled when this call returns, before any other
        // call of this thread can be interrupted by it.
        AcceptTimer::disarm();
    }
    if let Some(s) = slot {
        s.store(0, SeqCst);
    }
    res
}

/// A timer setting that expires once, `after` from now (zero: stopped).
fn one_shot(after: Duration) -> libc::itimerspec {
    libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    }
}

/// A thread's one-shot POSIX timer that signals that thread alone (`SIGEV_THREAD_ID`),
/// made on first use, for [`accept_interruptible`]'s bound. Deleted when the thread ends;
/// a forked child (which has no timers) makes its own.
struct AcceptTimer {
    /// [`super::forks`] when it was made: another value, and this is a forked child.
    forks: u64,
    sig: libc::c_int,
    id: libc::timer_t,
}

thread_local! {
    static ACCEPT_TIMER: std::cell::RefCell<Option<AcceptTimer>> =
        const { std::cell::RefCell::new(None) };
}

impl AcceptTimer {
    /// Arms the calling thread's timer to send `sig` after `after`; false if it cannot,
    /// or if the thread blocks `sig` (it would only wait for the program to take it).
    fn arm(sig: libc::c_int, after: Duration) -> bool {
        // SAFETY: pthread_sigmask only reads the thread's mask into a valid sigset_t.
        let blocked = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set) != 0
                || libc::sigismember(&set, sig) == 1
        };
        if blocked {
            return false;
        }
        ACCEPT_TIMER
            .try_with(|t| {
                let mut t = t.borrow_mut();
                let forks = super::forks();
                if let Some(old) = t.take_if(|old| old.forks != forks || old.sig != sig) {
                    if old.forks != forks {
                        // The parent's timer (this is a forked child): not ours to delete.
                        std::mem::forget(old);
                    }
                }
                if t.is_none() {
                    *t = AcceptTimer::new(sig);
                }
                t.as_ref().is_some_and(|t| t.set(after))
            })
            .unwrap_or(false)
    }

    /// Stops the calling thread's timer.
    fn disarm() {
        let _ = ACCEPT_TIMER.try_with(|t| {
            if let Some(t) = t.borrow().as_ref() {
                t.set(Duration::ZERO);
            }
        });
    }

    fn new(sig: libc::c_int) -> Option<AcceptTimer> {
        super::watch_forks();
        let forks = super::forks();
        // SAFETY: a zeroed sigevent is valid; the fields set are those SIGEV_THREAD_ID
        // reads; timer_create writes the id on success.
        unsafe {
            let mut ev: libc::sigevent = std::mem::zeroed();
            ev.sigev_notify = libc::SIGEV_THREAD_ID;
            ev.sigev_signo = sig;
            ev.sigev_notify_thread_id = libc::gettid();
            let mut id: libc::timer_t = std::ptr::null_mut();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) != 0 {
                return None;
            }
            Some(AcceptTimer { forks, sig, id })
        }
    }

    /// One expiry after `after` (zero: stopped).
    fn set(&self, after: Duration) -> bool {
        let spec = one_shot(after);
        // SAFETY: a timer of this process and a valid itimerspec.
        unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) == 0 }
    }
}

impl Drop for AcceptTimer {
    fn drop(&mut self) {
        // SAFETY: our own timer (a parent's is forgotten, not dropped, see `arm`).
        unsafe { libc::timer_delete(self.id) };
    }
}

/// Whether a thread waits in [`accept_interruptible`] now.
pub(crate) fn any_in_accept() -> bool {
    IN_ACCEPT.iter().any(|s| s.load(SeqCst) != 0)
}

/// Sends `sig` to every other thread waiting in [`accept_interruptible`], whose accept
/// then fails with EINTR, provided `sig`'s handler was installed without `SA_RESTART`
/// (the caller's to check). Async-signal-safe (atomics, `pthread_self`, `pthread_kill`).
/// A registered thread cannot end before it unregisters, so each `pthread_t` read here
/// names a live thread, short of one that leaves its accept, returns and is joined in
/// the instant between the read and the call.
pub(crate) fn interrupt_accepts(sig: libc::c_int) {
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() } as usize;
    for s in &IN_ACCEPT {
        let t = s.load(SeqCst);
        if t != 0 && t != me {
            // SAFETY: `t` was registered by a live thread (see above); a thread that has
            // ended meanwhile gives ESRCH at worst.
            unsafe { libc::pthread_kill(t as libc::pthread_t, sig) };
        }
    }
}

/// In a forked child: the parent's threads that waited in accept are not here.
pub(crate) fn forget_accepts_in_child() {
    for s in &IN_ACCEPT {
        s.store(0, SeqCst);
    }
}

/// `recv(fd, buf)`: with `wait` false (`MSG_DONTWAIT`), `WouldBlock` when nothing is
/// there; with `wait`, blocks up to the socket's receive timeout (then `WouldBlock`).
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], wait: bool) -> io::Result<usize> {
    let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
    loop {
        // SAFETY: `buf` is a valid writable region of `buf.len()` bytes for the call.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
        match cvt(n) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// `sendmsg(fd, bufs, MSG_NOSIGNAL)`: a gathered write that never raises SIGPIPE (a C
/// program may not ignore it). With `wait` false (`MSG_DONTWAIT`), `WouldBlock` when the
/// socket has no room; with `wait`, blocks up to the socket's send timeout.
pub(crate) fn send(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>], wait: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if wait { 0 } else { libc::MSG_DONTWAIT };
    // SAFETY: msghdr is plain data; every field the kernel reads is set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    loop {
        // SAFETY: `msg` points at `bufs`, which outlive the call; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) };
        match cvt(n) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Sets a socket's receive (`write` false) or send timeout: how long one blocking call may
/// wait without progress; `None` waits forever.
pub(crate) fn set_timeout(fd: BorrowedFd<'_>, write: bool, t: Option<Duration>) -> io::Result<()> {
    let t = t.unwrap_or(Duration::ZERO);
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        // A timeout under a microsecond would read as "forever".
        tv_usec: (t.subsec_micros() as libc::suseconds_t).max(if t.is_zero() { 0 } else { 1 }),
    };
    let opt = if write {
        libc::SO_SNDTIMEO
    } else {
        libc::SO_RCVTIMEO
    };
    // SAFETY: `tv` is a valid option value that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    cvt(rc as isize).map(drop)
}

/// Waits until `first` or `second` is readable, up to `timeout`: `Some(true)` when
/// `first` is (errors and hang-ups count), `Some(false)` when only `second` is or a signal
/// interrupted the wait, `None` when the time passed.
pub(crate) fn wait_either(
    first: BorrowedFd<'_>,
    second: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> io::Result<Option<bool>> {
    let mut fds = [
        libc::pollfd {
            fd: first.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: second.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: two valid pollfds that live across the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms(timeout)) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(Some(false))
        } else {
            Err(e)
        };
    }
    Ok((n > 0).then_some(fds[0].revents != 0))
}

/// Waits until `fd` is readable (`write` false) or writable, up to `timeout`; false when
/// the time passed without it. Errors and hang-ups count as ready (the next call says).
pub(crate) fn wait_fd(
    fd: BorrowedFd<'_>,
    write: bool,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: if write { libc::POLLOUT } else { libc::POLLIN },
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd that lives across the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms(timeout)) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
