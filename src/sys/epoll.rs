//! The poller on Linux: epoll with oneshot registrations and an eventfd to wake the waiter.
//!
//! One `epoll_wait` per wait and nothing else: no timer descriptor to re-arm, no notifier to
//! re-register (the notifier is level-triggered and only read when it fired). The server
//! waits once per request, so this is on the hot path.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Key reserved for the notifier.
const NOTIFY_KEY: u64 = u64::MAX;

/// Events filled by [`Poller::wait`].
pub(crate) struct Events {
    list: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    /// Room for 64 events per wait.
    pub(crate) fn new() -> Events {
        Events::with_capacity(64)
    }

    /// Room for `n` (at least 1) events per wait.
    pub(crate) fn with_capacity(n: usize) -> Events {
        Events {
            list: vec![libc::epoll_event { events: 0, u64: 0 }; n.max(1)],
            len: 0,
        }
    }

    /// Forgets the last wait's events.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// The keys of the ready registrations.
    pub(crate) fn keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.list[..self.len]
            .iter()
            .map(|e| e.u64)
            .filter(|&k| k != NOTIFY_KEY)
            .map(|k| k as usize)
    }
}

/// An epoll set where every registration is readable-oneshot: after it fires it stays
/// registered but disarmed until [`Poller::modify`] or [`Poller::delete`].
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: OwnedFd,
    notifier: OwnedFd,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Poller {
    /// Whether several threads may wait at once, each woken for its own events.
    pub(crate) const MULTI_WAIT: bool = true;

    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: plain syscalls returning new descriptors, owned at once.
        let (epoll, notifier) = unsafe {
            let ep = cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?;
            let epoll = OwnedFd::from_raw_fd(ep);
            let ev = cvt(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?;
            (epoll, OwnedFd::from_raw_fd(ev))
        };
        let p = Poller { epoll, notifier };
        // Level-triggered: a notification stays pending until a wait reads it.
        p.ctl(
            libc::EPOLL_CTL_ADD,
            p.notifier.as_raw_fd(),
            libc::EPOLLIN as u32,
            NOTIFY_KEY,
        )?;
        Ok(p)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: `ev` is valid for the call; epoll_ctl only reads it (DEL ignores it).
        cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    const INTEREST: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;

    /// Registers `fd` under `key`, armed. The caller deletes it before closing `fd`.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, key: usize) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            Self::INTEREST,
            key as u64,
        )
    }

    /// Re-arms a registration that fired.
    pub(crate) fn modify(&self, fd: BorrowedFd<'_>, key: usize) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_MOD,
            fd.as_raw_fd(),
            Self::INTEREST,
            key as u64,
        )
    }

    /// Removes a registration.
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0)
    }

    /// Waits up to `timeout` (forever for `None`) for registrations to fire or a
    /// notification; interrupted waits return with no events.
    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let ms = match timeout {
            None => -1,
            Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
        };
        // SAFETY: the list has `len()` initialised entries for epoll_wait to overwrite.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.list.as_mut_ptr(),
                events.list.len() as libc::c_int,
                ms,
            )
        };
        if n < 0 {
            events.len = 0;
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        events.len = n as usize;
        if events.list[..events.len]
            .iter()
            .any(|e| e.u64 == NOTIFY_KEY)
        {
            let mut buf = [0u8; 8];
            // SAFETY: reads at most 8 bytes into `buf`; the eventfd is non-blocking.
            unsafe { libc::read(self.notifier.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        }
        Ok(())
    }

    /// Wakes the current or next [`Poller::wait`].
    pub(crate) fn notify(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`; an eventfd at its maximum returns EAGAIN,
        // which still leaves a notification pending.
        unsafe { libc::write(self.notifier.as_raw_fd(), (&one as *const u64).cast(), 8) };
        Ok(())
    }
}
