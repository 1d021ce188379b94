//! The one system call the client needs that std and socket2 do not wrap: `poll(2)` on a
//! single descriptor, so one thread can wait for "readable or writable" at once (full-duplex
//! request bodies without a second thread).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// What `poll` reported.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    pub readable: bool,
    pub writable: bool,
}

/// `poll(2)` on one descriptor for reading and, if `want_write`, writing. `None` waits
/// forever. Hang-ups and errors are reported as readable (the next read says what happened).
pub(crate) fn poll(
    fd: BorrowedFd<'_>,
    want_write: bool,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    let mut events = libc::POLLIN;
    if want_write {
        events |= libc::POLLOUT;
    }
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    let ms: libc::c_int = match timeout {
        None => -1,
        // Round up so a sub-millisecond remainder does not become a busy loop of 0 ms polls.
        Some(d) => d.as_micros().div_ceil(1000).min(libc::c_int::MAX as u128) as libc::c_int,
    };
    loop {
        // SAFETY: `pfd` is a valid, initialized pollfd that lives across the call, and the
        // count 1 matches the single element passed; the descriptor is borrowed, so it stays
        // open for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let r = pfd.revents;
    Ok(Ready {
        readable: r & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        writable: r & (libc::POLLOUT | libc::POLLERR) != 0,
    })
}

/// `poll(2)` on a socket and a waker descriptor: the socket for reading (if `want_read`) and
/// writing (if `want_write`), the waker for reading. Returns the socket's readiness and
/// whether the waker is readable.
pub(crate) fn poll_with_waker(
    fd: BorrowedFd<'_>,
    want_read: bool,
    want_write: bool,
    waker: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> io::Result<(Ready, bool)> {
    let mut events = 0;
    if want_read {
        events |= libc::POLLIN;
    }
    if want_write {
        events |= libc::POLLOUT;
    }
    let mut fds = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        },
        libc::pollfd {
            fd: waker.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = timeout_ms(timeout);
    loop {
        // SAFETY: `fds` is a valid array of two initialized pollfds that lives across the
        // call, the count matches its length, and both descriptors are borrowed (open).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let r = fds[0].revents;
    let hangup = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    Ok((
        Ready {
            // A hang-up is reported even when reading was not asked for.
            readable: r & (libc::POLLIN | hangup) != 0,
            writable: r & (libc::POLLOUT | libc::POLLERR) != 0,
        },
        fds[1].revents != 0,
    ))
}

fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        // Round up so a sub-millisecond remainder does not become a busy loop of 0 ms polls.
        Some(d) => d.as_micros().div_ceil(1000).min(libc::c_int::MAX as u128) as libc::c_int,
    }
}
