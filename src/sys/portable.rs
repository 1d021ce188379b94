//! The poller elsewhere than Linux: the `polling` crate (kqueue, event ports), behind the
//! same small interface as the epoll one.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Events filled by [`Poller::wait`].
#[derive(Debug)]
pub(crate) struct Events(polling::Events);

impl Events {
    pub(crate) fn new() -> Events {
        Events(polling::Events::new())
    }
    pub(crate) fn with_capacity(n: usize) -> Events {
        Events(polling::Events::with_capacity(
            std::num::NonZeroUsize::new(n.max(1)).expect("at least 1"),
        ))
    }
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
    pub(crate) fn keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().map(|e| e.key)
    }
}

/// Readable-oneshot registrations over `polling`.
#[derive(Debug)]
pub(crate) struct Poller(polling::Poller);

impl Poller {
    /// Whether several threads may wait at once, each woken for its own events.
    pub(crate) const MULTI_WAIT: bool = false;

    pub(crate) fn new() -> io::Result<Poller> {
        polling::Poller::new().map(Poller)
    }
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, key: usize) -> io::Result<()> {
        // SAFETY: the caller deletes the registration before closing the descriptor.
        unsafe { self.0.add(fd.as_raw_fd(), polling::Event::readable(key)) }
    }
    pub(crate) fn modify(&self, fd: BorrowedFd<'_>, key: usize) -> io::Result<()> {
        self.0.modify(fd, polling::Event::readable(key))
    }
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.0.delete(fd)
    }
    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        match self.0.wait(&mut events.0, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            r => r.map(drop),
        }
    }
    pub(crate) fn notify(&self) -> io::Result<()> {
        self.0.notify()
    }
}
