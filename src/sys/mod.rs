//! The few raw system calls std and socket2 do not offer, in one place: the reactor's
//! epoll, eventfd and timerfd and its socket calls ([`epoll`]), `recv` with `MSG_PEEK`,
//! `getpeername`, `poll(2)` for the client's full-duplex I/O, and the shutdown signal
//! pipe. The crate is Linux-only: these are Linux interfaces.

pub(crate) mod epoll;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

/// Turns a `-1` return into the `errno` error, as socket2's `syscall!` does.
fn cvt(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// `recv(fd, buf, MSG_PEEK | MSG_DONTWAIT)`: the pending bytes, without consuming them or
/// blocking. `Ok(0)` means the peer closed; `WouldBlock` that nothing is pending.
pub(crate) fn peek_nonblocking(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable region of `buf.len()` bytes for the whole call.
    let ret = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    cvt(ret)
}

/// Whether `getpeername(fd)` fails with `ENOTCONN`: the spec's test (2.2) for "this
/// descriptor is a listening socket handed over by a web server".
pub(crate) fn is_unconnected_socket(fd: i32) -> bool {
    // SAFETY: sockaddr_storage is plain data; getpeername writes at most `len` bytes into it
    // and only reads `fd`, which may be any integer (EBADF is a valid answer).
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let r = libc::getpeername(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        );
        r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOTCONN)
    }
}

static SIGNAL_WRITE_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_shutdown_signal(_: libc::c_int) {
    let fd = SIGNAL_WRITE_FD.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        let saved = io::Error::last_os_error().raw_os_error();
        // SAFETY: write(2) is async-signal-safe; the buffer is a static byte.
        unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
        if let Some(e) = saved {
            // SAFETY: errno is thread-local; restoring it keeps the interrupted code's view.
            unsafe { *libc::__errno_location() = e };
        }
    }
}

/// A pipe whose read end becomes readable when SIGTERM or SIGUSR1 arrives (the signals a
/// web server or process manager uses to stop a FastCGI application, spec 7). The handlers
/// are installed with `SA_RESTART`; a newer pipe replaces an older one.
pub(crate) fn shutdown_signal_pipe() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created both descriptors and nothing else owns them.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    let old = SIGNAL_WRITE_FD.swap(fds[1], std::sync::atomic::Ordering::Relaxed);
    if old >= 0 {
        // SAFETY: the previous write end was ours (stored by an earlier call) and is no
        // longer published to the handler.
        unsafe { libc::close(old) };
    }
    for sig in [libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: a zeroed sigaction is valid; the handler only calls async-signal-safe code.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_shutdown_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(read)
}

/// Forks this process has been through since [`watch_forks`] first ran (incremented in
/// the child by a `pthread_atfork` handler).
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn forked_child() {
    FORKS.fetch_add(1, Ordering::SeqCst);
}

/// Installs the fork handler once; call it before making anything a fork must be told
/// of, so that every later fork is counted.
pub(crate) fn watch_forks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only increments an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    });
}

/// How many forks this process has been through (see [`watch_forks`]): a value that
/// differs from one read earlier means the caller is now in a forked child. No system
/// call.
pub(crate) fn forks() -> u64 {
    FORKS.load(Ordering::Acquire)
}

/// Whether the open file behind `fd` has `O_NONBLOCK` set.
pub(crate) fn is_nonblocking(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: F_GETFL only queries the open file's status flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    flags != -1 && flags & libc::O_NONBLOCK != 0
}

/// `TCP_NODELAY` on a socket; set on a listening socket, accepted sockets inherit it.
pub(crate) fn set_nodelay(fd: BorrowedFd<'_>) {
    let _ = socket2::SockRef::from(&fd).set_nodelay(true);
}

/// Whether `fd` is an open descriptor (`fcntl(F_GETFD)` succeeds); checked before taking
/// ownership of descriptors named by the environment, which may lie.
pub(crate) fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

// ---- poll(2), for the client: one thread waits for "readable or writable" at once ----

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

use epoll::timeout_ms;

/// `TCP_DEFER_ACCEPT` on a listening TCP socket (Linux): `accept` then reports a connection
/// once its first bytes are in, so the server can serve it at once instead of parking it in
/// the poller first. FastCGI clients always speak first.
pub(crate) fn set_defer_accept(fd: BorrowedFd<'_>) {
    // Long enough that a peer which connects and says nothing never leaves the kernel (it
    // would be accepted, bytes-less, once the deferral ran out).
    let secs: libc::c_int = 30;
    // SAFETY: the option value is a c_int that lives across the call; a failure (say, on a
    // Unix socket) only means the option is not set.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn unknown(what: &str, name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("unknown {what} {name:?}"))
}

/// A user of the system's database by name or number (`getpwnam_r`, `getpwuid_r`): the
/// uid, the primary gid and the name.
pub(crate) fn lookup_user(user: &str) -> io::Result<(libc::uid_t, libc::gid_t, std::ffi::CString)> {
    let mut buf = vec![0u8; 16384];
    // SAFETY: getpwnam_r/getpwuid_r fill a zeroed passwd with pointers into `buf`, which
    // outlives their use here; the result pointer is checked before the entry is read.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut res: *mut libc::passwd = std::ptr::null_mut();
        let rc = if let Ok(uid) = user.parse::<libc::uid_t>() {
            libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut res)
        } else {
            let name = std::ffi::CString::new(user).map_err(|_| unknown("user", user))?;
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut res,
            )
        };
        if rc != 0 || res.is_null() {
            return Err(unknown("user", user));
        }
        let name = std::ffi::CStr::from_ptr(pw.pw_name).to_owned();
        Ok((pw.pw_uid, pw.pw_gid, name))
    }
}

/// A user's uid: a number as it is, a name looked up.
pub(crate) fn lookup_uid(user: &str) -> io::Result<libc::uid_t> {
    match user.parse::<libc::uid_t>() {
        Ok(uid) => Ok(uid),
        Err(_) => lookup_user(user).map(|(uid, _, _)| uid),
    }
}

/// A group's gid, from a numeric gid or a name (`getgrnam_r`).
pub(crate) fn lookup_gid(group: &str) -> io::Result<libc::gid_t> {
    if let Ok(gid) = group.parse::<libc::gid_t>() {
        return Ok(gid);
    }
    let name = std::ffi::CString::new(group).map_err(|_| unknown("group", group))?;
    let mut buf = vec![0u8; 16384];
    // SAFETY: as in lookup_uid, for getgrnam_r.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut res: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            name.as_ptr(),
            &mut gr,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut res,
        );
        if rc != 0 || res.is_null() {
            return Err(unknown("group", group));
        }
        Ok(gr.gr_gid)
    }
}
