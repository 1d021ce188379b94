//! The few raw system calls std and socket2 do not offer, in one place.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

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

/// Whether `fd` is an open descriptor (`fcntl(F_GETFD)` succeeds); checked before taking
/// ownership of descriptors named by the environment, which may lie.
pub(crate) fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}
