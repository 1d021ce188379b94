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
