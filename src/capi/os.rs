//! `fcgios.h`: the OS layer of libfcgi. Exported because `cgi-fcgi` (itself a
//! `libfcgi.so.0` program) calls it: socket creation and connection, `fork`+`exec` of
//! application processes, and a small completion-callback I/O loop (`OS_Async*` +
//! `OS_DoIo`). Also the signal handlers that `FCGX_Init` installs (reference §5.2).
//!
//! Differences from libfcgi, all deliberate: `OS_CreateLocalIpcFd` returns -1 with errno
//! set instead of exiting and accepts `[v6addr]:port`; `OS_DoIo` uses `poll`, so
//! descriptors above `FD_SETSIZE` work; `OS_Accept` applies `webServerAddrs` by the
//! allow-list rule of `FCGX_Accept_r` (IPv6 too; a list without an address is EINVAL).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::IntoRawFd;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::server::AllowList;

use super::{errno, ffi_boundary, set_errno};
use crate::net::{Address, BindOptions, ConnectOptions, Existing, Syntax};

/// Set by SIGTERM/SIGUSR1 and `OS_ShutdownPending`: the accept loop should end.
static SHUTDOWN_PENDING: AtomicBool = AtomicBool::new(false);
/// `OS_LibInit` has run.
static LIB_INITIALIZED: AtomicBool = AtomicBool::new(false);
/// `LIBFCGI_OS_CLOSE_POLL_TIMEOUT`: how long `OS_Close` drains a shut-down socket (ms).
static CLOSE_POLL_TIMEOUT_MS: AtomicI32 = AtomicI32::new(2000);
/// `LIBFCGI_IS_AF_UNIX_KEEPER_POLL_TIMEOUT`: how long a new Unix-socket peer may stay
/// silent before `OS_Accept` drops it (ms).
static KEEPER_POLL_TIMEOUT_MS: AtomicI32 = AtomicI32::new(2000);

/// Whether a shutdown was requested (SIGTERM, SIGUSR1, `FCGX_ShutdownPending`).
pub(crate) fn shutdown_pending() -> bool {
    SHUTDOWN_PENDING.load(Ordering::SeqCst)
}

/// `atoi` of an environment variable, or `default` when it is unset.
fn env_millis(name: &str, default: c_int) -> c_int {
    match std::env::var_os(name).and_then(|v| CString::new(v.into_encoded_bytes()).ok()) {
        // SAFETY: a valid NUL-terminated string.
        Some(v) => unsafe { libc::atoi(v.as_ptr()) },
        None => default,
    }
}

/// The handler that does nothing: SIGPIPE's (writes to a closed peer fail with EPIPE),
/// and the quiet signal's (see [`quiet_signal`]).
extern "C" fn quiet_handler(_sig: c_int) {}

/// The signal the engine sends a thread of its own to end its wait in `accept(2)` (the
/// bound of that wait, or a call to watch connections): one whose handler is
/// [`quiet_handler`], installed without `SA_RESTART`, so the wait ends with EINTR and
/// nothing else happens. SIGPIPE while the handler libfcgi gives it is in place; else
/// SIGURG (ignored by default, raised by the kernel only for a socket's urgent data to
/// the socket's owner), whose handler the library installs the first time it needs it,
/// if the program left SIGURG at its default. None when the program handles both
/// itself. Asked before each use: the program may change its handlers at any time.
pub(crate) fn quiet_signal() -> Option<c_int> {
    if handler_is(libc::SIGPIPE, quiet_handler) {
        return Some(libc::SIGPIPE);
    }
    match disposition(libc::SIGURG)? {
        h if h == quiet_handler as *const () as usize => Some(libc::SIGURG),
        libc::SIG_DFL => install(libc::SIGURG, quiet_handler).then_some(libc::SIGURG),
        _ => None,
    }
}

/// The current `sa_sigaction` of `sig` (a handler's address, `SIG_DFL` or `SIG_IGN`).
fn disposition(sig: c_int) -> Option<libc::sighandler_t> {
    // SAFETY: sigaction only reads the disposition into a zeroed, valid struct.
    unsafe {
        let mut old: libc::sigaction = mem::zeroed();
        (libc::sigaction(sig, ptr::null(), &mut old) == 0).then_some(old.sa_sigaction)
    }
}

/// Whether `sig`'s handler is `handler`.
fn handler_is(sig: c_int, handler: extern "C" fn(c_int)) -> bool {
    disposition(sig) == Some(handler as *const () as usize)
}

/// Installs `handler` for `sig`, without `SA_RESTART` and with an empty mask.
fn install(sig: c_int, handler: extern "C" fn(c_int)) -> bool {
    // SAFETY: sigaction with a valid, zero-initialised struct.
    unsafe {
        let mut sa: libc::sigaction = mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, ptr::null_mut()) == 0
    }
}

/// The eventfds of the engines behind `FCGX_Accept_r`: a shutdown request writes each, so
/// threads waiting for a request wake at once (no thread polls the flag).
static WAKE_FDS: [AtomicI32; 16] = [const { AtomicI32::new(-1) }; 16];

/// Registers an engine's wake-up eventfd for [`request_shutdown`].
pub(crate) fn register_wake_fd(fd: c_int) {
    for slot in &WAKE_FDS {
        if slot
            .compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

/// Unregisters an engine's eventfd. With `wait`, returns only once no signal handler can
/// still be writing it, so the caller may then close it (its number could otherwise be
/// reused by another file, which a late write would corrupt). A forked child does not
/// wait (a handler of a parent thread may have been running at the fork; it never ends
/// there), and must not close the descriptor.
pub(crate) fn unregister_wake_fd(fd: c_int, wait: bool) {
    for slot in &WAKE_FDS {
        let _ = slot.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
    }
    while wait && WAKING.load(Ordering::SeqCst) > 0 {
        std::thread::yield_now();
    }
}

/// Signal handlers in [`request_shutdown`] now.
static WAKING: AtomicUsize = AtomicUsize::new(0);

/// The first shutdown request interrupted the threads waiting in `accept(2)`; later ones
/// (the same signal sent to those threads among them) do not again.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Sets the shutdown flag and wakes every waiting accept: threads waiting in the engine's
/// poller through its eventfd, threads waiting in `accept(2)` by a signal whose handler is
/// ours, `sig` (the one being handled) or another (see [`interrupt_waiting_accepts`]).
/// Async-signal-safe: atomics, `write(2)`, `sigaction(2)`, `pthread_kill`.
fn request_shutdown(sig: Option<c_int>) {
    SHUTDOWN_PENDING.store(true, Ordering::SeqCst);
    WAKING.fetch_add(1, Ordering::SeqCst);
    for slot in &WAKE_FDS {
        let fd = slot.load(Ordering::SeqCst);
        if fd >= 0 {
            crate::sys::epoll::notify_raw(fd);
        }
    }
    WAKING.fetch_sub(1, Ordering::SeqCst);
    if !INTERRUPTED.swap(true, Ordering::SeqCst) {
        match sig {
            Some(sig) => crate::sys::epoll::interrupt_accepts(sig),
            None => interrupt_waiting_accepts(),
        }
    }
}

extern "C" fn shutdown_handler(sig: c_int) {
    let saved = errno();
    request_shutdown(Some(sig));
    set_errno(saved);
}

/// Interrupts the threads that wait in `accept(2)` on a blocking listening socket (they
/// wake for a connection or a signal, nothing else), so that they see the shutdown: with
/// SIGTERM or SIGUSR1, whichever has our handler; with neither (the program handles both
/// itself), they wait on, as with the classic library. Async-signal-safe; the engine
/// calls it when it stops.
pub(crate) fn interrupt_waiting_accepts() {
    if !crate::sys::epoll::any_in_accept() {
        return;
    }
    if let Some(sig) = [libc::SIGTERM, libc::SIGUSR1]
        .into_iter()
        .find(|&s| handler_is(s, shutdown_handler))
    {
        crate::sys::epoll::interrupt_accepts(sig);
    }
}

/// Installs libfcgi's handlers: SIGPIPE ignored through a no-op handler (writes fail with
/// EPIPE), SIGUSR1 and SIGTERM request a shutdown. Only where the current disposition is
/// `SIG_DFL` or `SIG_IGN`; no `SA_RESTART`, so a blocked `accept` returns EINTR.
fn install_signal_handlers() {
    let handlers: [(c_int, extern "C" fn(c_int)); 3] = [
        (libc::SIGPIPE, quiet_handler),
        (libc::SIGUSR1, shutdown_handler),
        (libc::SIGTERM, shutdown_handler),
    ];
    for (sig, handler) in handlers {
        if matches!(disposition(sig), Some(libc::SIG_DFL | libc::SIG_IGN)) {
            install(sig, handler);
        }
    }
}

/// Initialises the OS layer once: reads the two timeouts from the environment and
/// installs the signal handlers. The argument is ignored. Returns 0.
///
/// # Safety
/// Always safe; `stdioFds` is not read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_LibInit(stdioFds: *mut c_int) -> c_int {
    let _ = stdioFds;
    ffi_boundary!({
        if LIB_INITIALIZED.swap(true, Ordering::SeqCst) {
            return 0;
        }
        CLOSE_POLL_TIMEOUT_MS.store(
            env_millis("LIBFCGI_OS_CLOSE_POLL_TIMEOUT", 2000),
            Ordering::SeqCst,
        );
        KEEPER_POLL_TIMEOUT_MS.store(
            env_millis("LIBFCGI_IS_AF_UNIX_KEEPER_POLL_TIMEOUT", 2000),
            Ordering::SeqCst,
        );
        install_signal_handlers();
        0
    })
}

/// Forgets pending asynchronous operations. The handlers stay installed.
#[unsafe(no_mangle)]
pub extern "C" fn OS_LibShutdown() {
    ffi_boundary!({
        if let Ok(mut table) = ASYNC_TABLE.lock() {
            table.clear();
        }
    })
}

/// Parses `path` in libfcgi's bind syntax and binds it as `OS_CreateLocalIpcFd` does
/// (reference §5.3), through the crate's one parser and one bind (`crate::net`): blocking,
/// no close-on-exec (programs rely on inheriting it), whatever is at a Unix path unlinked
/// first, no chmod (the umask decides), `SO_REUSEADDR` on TCP.
fn create_listener(path: &[u8], backlog: c_int) -> io::Result<c_int> {
    if path.len() >= 1024 {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let addr = Address::parse_with(path, Syntax::LibfcgiBind)?;
    let opts = BindOptions::default()
        .backlog(backlog)
        .existing(Existing::Unlink)
        .cloexec(false)
        .v6_only(false);
    crate::net::bind(&addr, &opts).map(IntoRawFd::into_raw_fd)
}

/// Creates a listening socket for `bindPath` (syntax in `FCGX_OpenSocket`): blocking,
/// without close-on-exec. Returns the fd, or -1 with errno set.
///
/// # Safety
/// `bindPath` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_CreateLocalIpcFd(bindPath: *const c_char, backlog: c_int) -> c_int {
    ffi_boundary!({
        if bindPath.is_null() {
            set_errno(libc::EINVAL);
            return -1;
        }
        // SAFETY: NUL-terminated per the contract.
        let path = unsafe { CStr::from_ptr(bindPath) }.to_bytes();
        match create_listener(path, backlog) {
            Ok(fd) => fd,
            Err(e) => {
                set_errno(crate::net::os_error(&e).unwrap_or(libc::EINVAL));
                -1
            }
        }
    })
}

/// Connects to a FastCGI application at `bindPath`: `"host:port"` (TCP; an empty host is
/// localhost), `"[v6]:port"`, or a Unix socket path. Returns the fd, or -1 if `connect`
/// fails. An unknown host prints `Unknown host: ...` and exits with 1000, as libfcgi.
///
/// # Safety
/// `bindPath` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_FcgiConnect(bindPath: *mut c_char) -> c_int {
    ffi_boundary!({
        if bindPath.is_null() {
            set_errno(libc::EINVAL);
            return -1;
        }
        // SAFETY: NUL-terminated per the contract.
        let path = unsafe { CStr::from_ptr(bindPath) }.to_bytes();
        let target = Address::parse_with(path, Syntax::LibfcgiConnect);
        let opts = ConnectOptions {
            timeout: None,
            cloexec: false,
            nodelay: false,
            nonblocking: false,
        };
        let result = match target {
            Ok(addr) => crate::net::connect(&addr, opts),
            Err(_) => {
                eprintln!("Unknown host: {}", String::from_utf8_lossy(path));
                // SAFETY: exit is always safe to call.
                unsafe { libc::exit(1000) }
            }
        };
        match result {
            Ok(socket) => socket.into_raw_fd(),
            Err(e) => {
                set_errno(e.raw_os_error().unwrap_or(libc::ECONNREFUSED));
                -1
            }
        }
    })
}

/// `read(2)`.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_Read(fd: c_int, buf: *mut c_char, len: usize) -> c_int {
    // SAFETY: forwarded contract.
    ffi_boundary!({ unsafe { libc::read(fd, buf.cast(), len) as c_int } })
}

/// `write(2)`.
///
/// # Safety
/// `buf` is valid for `len` bytes of reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_Write(fd: c_int, buf: *mut c_char, len: usize) -> c_int {
    // SAFETY: forwarded contract.
    ffi_boundary!({ unsafe { libc::write(fd, buf.cast_const().cast(), len) as c_int } })
}

/// Forks a child that runs `execPath` with `listenFd` moved to its fd 0 (and fds 1 and
/// 2 closed), as libfcgi does for `cgi-fcgi -start`. The parent gets 0; a failed `fork`
/// exits the process with errno.
///
/// # Safety
/// `execPath` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_SpawnChild(execPath: *mut c_char, listenFd: c_int) -> c_int {
    ffi_boundary!({
        if execPath.is_null() {
            set_errno(libc::EINVAL);
            return -1;
        }
        let argv: [*const c_char; 2] = [execPath.cast_const(), ptr::null()];
        // SAFETY: after fork the child calls only async-signal-safe functions (close,
        // dup2, execv, _exit) on memory prepared before the fork.
        unsafe {
            let pid = libc::fork();
            if pid < 0 {
                libc::exit(errno());
            }
            if pid == 0 {
                if listenFd != 0 {
                    libc::close(0);
                    libc::dup2(listenFd, 0);
                    libc::close(listenFd);
                }
                libc::close(1);
                libc::close(2);
                libc::execv(argv[0], argv.as_ptr());
                libc::_exit(*libc::__errno_location());
            }
        }
        0
    })
}

/// Completion callback of the asynchronous operations.
type AsyncProc = unsafe extern "C" fn(client_data: *mut c_void, len: c_int);

/// One pending `OS_AsyncRead`/`OS_AsyncWrite`.
#[derive(Clone, Copy)]
struct AsyncOp {
    fd: c_int,
    write: bool,
    /// The caller's buffer, as an address (the table is shared between threads).
    buf: usize,
    len: usize,
    proc_: Option<AsyncProc>,
    client_data: usize,
}

/// Pending operations: at most one read and one write per fd.
static ASYNC_TABLE: Mutex<Vec<AsyncOp>> = Mutex::new(Vec::new());

fn register(op: AsyncOp) -> c_int {
    if op.fd < 0 {
        set_errno(libc::EBADF);
        return -1;
    }
    match ASYNC_TABLE.lock() {
        Ok(mut table) => {
            table.retain(|o| !(o.fd == op.fd && o.write == op.write));
            table.push(op);
            0
        }
        Err(_) => -1,
    }
}

/// Registers a read of up to `len` bytes from fd 0 into `buf`; `OS_DoIo` performs it and
/// calls `procPtr(clientData, result)`. Returns 0.
///
/// # Safety
/// `buf` stays valid for `len` bytes of writes until the callback runs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_AsyncReadStdin(
    buf: *mut c_void,
    len: c_int,
    procPtr: Option<AsyncProc>,
    clientData: *mut c_void,
) -> c_int {
    // SAFETY: forwarded contract.
    ffi_boundary!({ unsafe { OS_AsyncRead(0, 0, buf, len, procPtr, clientData) } })
}

/// Registers a read of up to `len` bytes from `fd` (the offset is ignored, as in libfcgi
/// on Unix); `OS_DoIo` performs it and calls `procPtr(clientData, result)`. Returns 0.
///
/// # Safety
/// `buf` stays valid for `len` bytes of writes until the callback runs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_AsyncRead(
    fd: c_int,
    offset: c_int,
    buf: *mut c_void,
    len: c_int,
    procPtr: Option<AsyncProc>,
    clientData: *mut c_void,
) -> c_int {
    let _ = offset;
    ffi_boundary!({
        register(AsyncOp {
            fd,
            write: false,
            buf: buf as usize,
            len: usize::try_from(len).unwrap_or(0),
            proc_: procPtr,
            client_data: clientData as usize,
        })
    })
}

/// Registers a write of `len` bytes of `buf` to `fd` (offset ignored); `OS_DoIo` performs
/// one `write` and calls `procPtr(clientData, result)`. Returns 0.
///
/// # Safety
/// `buf` stays valid for `len` bytes of reads until the callback runs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_AsyncWrite(
    fd: c_int,
    offset: c_int,
    buf: *mut c_void,
    len: c_int,
    procPtr: Option<AsyncProc>,
    clientData: *mut c_void,
) -> c_int {
    let _ = offset;
    ffi_boundary!({
        register(AsyncOp {
            fd,
            write: true,
            buf: buf as usize,
            len: usize::try_from(len).unwrap_or(0),
            proc_: procPtr,
            client_data: clientData as usize,
        })
    })
}

/// Waits (up to `tmo`, forever if NULL) until a registered operation can proceed, then
/// performs every ready one and calls its callback with the `read`/`write` result.
/// Returns 0. A failing `poll` (other than EINTR) exits the process, as libfcgi's select.
///
/// # Safety
/// `tmo` is NULL or a valid `timeval`; registered buffers are still valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_DoIo(tmo: *mut libc::timeval) -> c_int {
    ffi_boundary!({
        let ops: Vec<AsyncOp> = match ASYNC_TABLE.lock() {
            Ok(table) => table.clone(),
            Err(_) => return -1,
        };
        let mut fds: Vec<libc::pollfd> = Vec::new();
        for op in &ops {
            let events = if op.write {
                libc::POLLOUT
            } else {
                libc::POLLIN
            };
            match fds.iter_mut().find(|p| p.fd == op.fd) {
                Some(p) => p.events |= events,
                None => fds.push(libc::pollfd {
                    fd: op.fd,
                    events,
                    revents: 0,
                }),
            }
        }
        // SAFETY: NULL or valid per the contract.
        let timeout = match unsafe { tmo.as_ref() } {
            None => -1,
            Some(tv) => {
                let ms = tv
                    .tv_sec
                    .saturating_mul(1000)
                    .saturating_add((tv.tv_usec + 999) / 1000);
                ms.clamp(0, c_int::MAX as libc::time_t) as c_int
            }
        };
        // SAFETY: fds is a valid array of fds.len() pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                return 0;
            }
            // SAFETY: exit is always safe to call.
            unsafe { libc::exit(e) };
        }
        for write_pass in [false, true] {
            for p in &fds {
                let mask = if write_pass {
                    libc::POLLOUT
                } else {
                    libc::POLLIN
                };
                let ready = p.revents & (mask | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL)
                    != 0
                    && p.events & mask != 0;
                if !ready {
                    continue;
                }
                let op = {
                    let Ok(mut table) = ASYNC_TABLE.lock() else {
                        return -1;
                    };
                    let Some(i) = table
                        .iter()
                        .position(|o| o.fd == p.fd && o.write == write_pass)
                    else {
                        continue;
                    };
                    table.remove(i)
                };
                // SAFETY: the buffer was registered valid for len bytes until the callback.
                let result = unsafe {
                    if op.write {
                        libc::write(op.fd, op.buf as *const c_void, op.len)
                    } else {
                        libc::read(op.fd, op.buf as *mut c_void, op.len)
                    }
                } as c_int;
                if let Some(f) = op.proc_ {
                    // SAFETY: the caller's callback with the caller's data.
                    unsafe { f(op.client_data as *mut c_void, result) };
                }
            }
        }
        0
    })
}

/// Closes `fd` (-1 is ignored and gives 0), forgetting its pending operations. With
/// `shutdown`, first shuts down the writing side and reads until the peer closes or
/// `LIBFCGI_OS_CLOSE_POLL_TIMEOUT` ms pass, so the peer sees a clean end instead of a
/// reset that could truncate the response. Returns `close`'s result.
#[unsafe(no_mangle)]
pub extern "C" fn OS_Close(fd: c_int, shutdown: c_int) -> c_int {
    ffi_boundary!({
        if fd == -1 {
            return 0;
        }
        if let Ok(mut table) = ASYNC_TABLE.lock() {
            table.retain(|o| o.fd != fd);
        }
        // SAFETY: plain syscalls on a descriptor; buffers are local.
        unsafe {
            if shutdown != 0 && libc::shutdown(fd, libc::SHUT_WR) == 0 {
                let timeout = CLOSE_POLL_TIMEOUT_MS.load(Ordering::SeqCst);
                let mut trash = [0u8; 1024];
                loop {
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    if libc::poll(&mut p, 1, timeout) <= 0 {
                        break;
                    }
                    if libc::read(fd, trash.as_mut_ptr().cast(), trash.len()) <= 0 {
                        break;
                    }
                }
            }
            libc::close(fd)
        }
    })
}

/// Stops reading `fd` (`shutdown(SHUT_RD)`), forgetting a pending read.
#[unsafe(no_mangle)]
pub extern "C" fn OS_CloseRead(fd: c_int) -> c_int {
    ffi_boundary!({
        if let Ok(mut table) = ASYNC_TABLE.lock() {
            table.retain(|o| o.fd != fd || o.write);
        }
        // SAFETY: a plain syscall.
        unsafe { libc::shutdown(fd, libc::SHUT_RD) }
    })
}

/// The allow-list `OS_Accept` applies for `webServerAddrs`: none for NULL or "", else
/// the rule of `FCGX_Accept_r` ([`AllowList`]: blanks trimmed, IPv4 and IPv6, a list
/// that names no address or a malformed entry is an error).
fn os_accept_allow_list(list: Option<&[u8]>) -> io::Result<Option<AllowList>> {
    match list {
        None | Some(b"") => Ok(None),
        Some(l) => AllowList::parse(&String::from_utf8_lossy(l)).map(Some),
    }
}

/// The IP address of an accepted peer, None for other families (Unix sockets).
fn peer_ip(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    match c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin: libc::sockaddr_in = unsafe { ptr::read(ptr::addr_of!(*storage).cast()) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 address is a sockaddr_in6.
            let sin6: libc::sockaddr_in6 = unsafe { ptr::read(ptr::addr_of!(*storage).cast()) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// The accept errors that are the client's business: retried silently.
fn is_reasonable_accept_errno(e: c_int) -> bool {
    matches!(
        e,
        libc::EPROTO
            | libc::ECONNABORTED
            | libc::ECONNRESET
            | libc::ETIMEDOUT
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
    )
}

/// Accepts a connection on `listen_sock` the libfcgi way: retries EINTR unless
/// `fail_on_intr` or a shutdown is pending; retries client-side errors; sets TCP_NODELAY
/// on IPv4 peers and drops TCP peers not in `webServerAddrs` (when non-empty; the rule of
/// `FCGX_Accept_r`, see [`AllowList`]: IPv4 and IPv6); drops Unix-socket peers that send
/// nothing within `LIBFCGI_IS_AF_UNIX_KEEPER_POLL_TIMEOUT` ms. Returns the fd, or -1
/// (errno set; a pending shutdown returns -1 without accepting; a `webServerAddrs` that
/// names no address, or a malformed one, gives EINVAL before accepting).
///
/// # Safety
/// `webServerAddrs` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_Accept(
    listen_sock: c_int,
    fail_on_intr: c_int,
    webServerAddrs: *const c_char,
) -> c_int {
    ffi_boundary!({
        // SAFETY: NULL or NUL-terminated per the contract.
        let list = unsafe { webServerAddrs.as_ref() }
            .map(|_| unsafe { CStr::from_ptr(webServerAddrs) }.to_bytes());
        let Ok(allow) = os_accept_allow_list(list) else {
            set_errno(libc::EINVAL);
            return -1;
        };
        loop {
            let (fd, family) = loop {
                if shutdown_pending() {
                    return -1;
                }
                // SAFETY: storage is large enough for any address; len is its size.
                let (fd, storage) = unsafe {
                    let mut storage: libc::sockaddr_storage = mem::zeroed();
                    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                    let fd = libc::accept(listen_sock, ptr::addr_of_mut!(storage).cast(), &mut len);
                    (fd, storage)
                };
                if fd < 0 {
                    let e = errno();
                    if e == libc::EINTR && fail_on_intr == 0 && !shutdown_pending() {
                        continue;
                    }
                    if shutdown_pending() || !is_reasonable_accept_errno(e) {
                        return -1;
                    }
                    continue;
                }
                let family = c_int::from(storage.ss_family);
                if family == libc::AF_INET {
                    let one: c_int = 1;
                    // SAFETY: valid option pointer and length.
                    unsafe {
                        libc::setsockopt(
                            fd,
                            libc::IPPROTO_TCP,
                            libc::TCP_NODELAY,
                            ptr::addr_of!(one).cast(),
                            mem::size_of::<c_int>() as libc::socklen_t,
                        )
                    };
                }
                if allow.as_ref().is_none_or(|l| l.allows(peer_ip(&storage))) {
                    break (fd, family);
                }
                // SAFETY: our own descriptor.
                unsafe { libc::close(fd) };
            };
            if family != libc::AF_UNIX {
                return fd;
            }
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rv =
                unsafe { libc::poll(&mut p, 1, KEEPER_POLL_TIMEOUT_MS.load(Ordering::SeqCst)) };
            if rv >= 0 && p.revents & libc::POLLIN != 0 {
                return fd;
            }
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
        }
    })
}

/// Same as `OS_Close`.
#[unsafe(no_mangle)]
pub extern "C" fn OS_IpcClose(ipcFd: c_int, shutdown: c_int) -> c_int {
    ffi_boundary!({ OS_Close(ipcFd, shutdown) })
}

/// 1 when `sock` is a FastCGI listening socket: `getpeername` fails with `ENOTCONN`
/// (a listening or unconnected socket). Pipes, files, closed fds and connected sockets
/// give 0.
#[unsafe(no_mangle)]
pub extern "C" fn OS_IsFcgi(sock: c_int) -> c_int {
    ffi_boundary!({
        // SAFETY: storage and len are valid for getpeername.
        unsafe {
            let mut storage: libc::sockaddr_storage = mem::zeroed();
            let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            set_errno(0);
            let rc = libc::getpeername(sock, ptr::addr_of_mut!(storage).cast(), &mut len);
            c_int::from(rc != 0 && errno() == libc::ENOTCONN)
        }
    })
}

/// Adds `flags` to the file status flags of `fd` (`fcntl(F_SETFL)`); exits the process
/// with errno on failure, as libfcgi does.
#[unsafe(no_mangle)]
pub extern "C" fn OS_SetFlags(fd: c_int, flags: c_int) {
    ffi_boundary!({
        // SAFETY: plain fcntl calls.
        unsafe {
            let old = libc::fcntl(fd, libc::F_GETFL, 0);
            if old == -1 || libc::fcntl(fd, libc::F_SETFL, old | flags) == -1 {
                libc::exit(errno());
            }
        }
    })
}

/// Requests a shutdown: `OS_Accept` stops accepting (async-signal-safe).
#[unsafe(no_mangle)]
pub extern "C" fn OS_ShutdownPending() {
    ffi_boundary!({ request_shutdown(None) })
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)] // tests call the exports with valid arguments
mod tests {
    use super::*;

    /// A TCP port on `host` that was free a moment ago (port 0 means "a Unix path" in
    /// libfcgi's bind syntax, so these tests pick the number first).
    fn free_port(host: &str) -> u16 {
        std::net::TcpListener::bind((host, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// `OS_CreateLocalIpcFd` reads libfcgi's syntax through the crate's one parser; each
    /// form still gives what the former private parser gave (reference §5.3).
    #[test]
    fn bind_path_syntax_matches_libfcgi() {
        let parse = |s: &[u8]| Address::parse_with(s, Syntax::LibfcgiBind).unwrap();
        let tcp = |s: &str| Address::Tcp(s.parse().unwrap());
        let unix = |s: &str| Address::Unix(s.into());
        assert_eq!(parse(b":9000"), tcp("0.0.0.0:9000"));
        assert_eq!(parse(b"*:9000"), tcp("0.0.0.0:9000"));
        assert_eq!(parse(b"127.0.0.1:9000"), tcp("127.0.0.1:9000"));
        assert_eq!(parse(b"[::1]:9001"), tcp("[::1]:9001"));
        // ":70000" wraps through a 16-bit port, as libfcgi's short.
        assert_eq!(parse(b":70000"), tcp("0.0.0.0:4464"));
        // Port 0: the whole string is a Unix path.
        assert_eq!(parse(b"127.0.0.1:0"), unix("127.0.0.1:0"));
        assert_eq!(parse(b"/tmp/a:b"), unix("/tmp/a:b"));
        assert_eq!(parse(b"/tmp/s"), unix("/tmp/s"));
        // OS_FcgiConnect: an empty host is localhost.
        let connect = Address::parse_with(b":9000", Syntax::LibfcgiConnect).unwrap();
        assert_eq!(connect, tcp("127.0.0.1:9000"));
    }

    #[test]
    fn fcgi_connect_reaches_tcp_and_unix_listeners() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let spec = CString::new(format!(":{}", l.local_addr().unwrap().port())).unwrap();
        let fd = unsafe { OS_FcgiConnect(spec.as_ptr().cast_mut()) };
        assert!(fd >= 0, "errno {}", errno());
        let (_peer, from) = l.accept().unwrap();
        assert!(from.ip().is_loopback());
        // Inherited by children, as libfcgi's.
        assert_eq!(
            unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC,
            0
        );
        OS_Close(fd, 0);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let u = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let spec = CString::new(path.to_str().unwrap()).unwrap();
        let fd = unsafe { OS_FcgiConnect(spec.as_ptr().cast_mut()) };
        assert!(fd >= 0, "errno {}", errno());
        u.accept().unwrap();
        OS_Close(fd, 0);
        // Nothing listens: -1 with connect's errno.
        drop(u);
        let fd = unsafe { OS_FcgiConnect(spec.as_ptr().cast_mut()) };
        assert_eq!(fd, -1);
        assert_eq!(errno(), libc::ECONNREFUSED);
    }

    #[test]
    fn create_local_ipc_fd_is_inheritable_and_keeps_errno() {
        let free = free_port("127.0.0.1");
        let spec = CString::new(format!("127.0.0.1:{free}")).unwrap();
        let fd = unsafe { OS_CreateLocalIpcFd(spec.as_ptr(), 5) };
        assert!(fd >= 0, "errno {}", errno());
        assert_eq!(
            unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC,
            0
        );
        // The same port again: bind's errno (the crate's bind names the address in its
        // message; the C caller still gets the errno).
        assert_eq!(unsafe { OS_CreateLocalIpcFd(spec.as_ptr(), 5) }, -1);
        assert_eq!(errno(), libc::EADDRINUSE);
        OS_Close(fd, 0);
    }

    #[test]
    fn os_accept_web_server_addrs_is_the_allow_list() {
        let lo = Some(IpAddr::from([127, 0, 0, 1]));
        let ok = |list: &[u8], peer| {
            os_accept_allow_list(Some(list))
                .unwrap()
                .is_none_or(|l| l.allows(peer))
        };
        assert!(os_accept_allow_list(None).unwrap().is_none());
        assert!(ok(b"", lo));
        assert!(ok(b"10.0.0.1,127.0.0.1", lo));
        assert!(!ok(b"10.0.0.1", lo));
        assert!(ok(b" 127.0.0.1", lo), "blanks are trimmed");
        assert!(ok(b"::ffff:127.0.0.1", lo));
        assert!(
            !ok(b"10.0.0.1", Some("::1".parse().unwrap())),
            "IPv6 peers too"
        );
        assert!(ok(b"10.0.0.1", None), "Unix-socket peers are not concerned");
        assert!(os_accept_allow_list(Some(b" , ")).is_err());
        assert!(os_accept_allow_list(Some(b"localhost")).is_err());
    }

    #[test]
    fn open_socket_errors_return_minus_one_with_errno() {
        // A path in a directory that does not exist: bind fails, the process lives on.
        let fd = unsafe { OS_CreateLocalIpcFd(c"/nonexistent-dir-fcgi/sock".as_ptr(), 5) };
        assert_eq!(fd, -1);
        assert_eq!(errno(), libc::ENOENT);
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { OS_CreateLocalIpcFd(ptr::null(), 5) }, -1);
    }

    #[test]
    fn open_socket_listens_on_ipv4_ipv6_and_unix() {
        let free = free_port("127.0.0.1");
        let spec = CString::new(format!("127.0.0.1:{free}")).unwrap();
        // SAFETY: a valid string.
        let fd = unsafe { OS_CreateLocalIpcFd(spec.as_ptr(), 5) };
        assert!(fd >= 0, "errno {}", errno());
        assert_eq!(OS_IsFcgi(fd), 1, "a listening socket is FastCGI");
        std::net::TcpStream::connect(("127.0.0.1", free)).unwrap();
        OS_Close(fd, 0);

        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            let free = free_port("::1");
            let spec = CString::new(format!("[::1]:{free}")).unwrap();
            // SAFETY: a valid string.
            let fd = unsafe { OS_CreateLocalIpcFd(spec.as_ptr(), 5) };
            assert!(fd >= 0, "errno {}", errno());
            std::net::TcpStream::connect(("::1", free)).unwrap();
            OS_Close(fd, 0);
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        std::fs::write(&path, b"stale").unwrap();
        let spec = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid string.
        let fd = unsafe { OS_CreateLocalIpcFd(spec.as_ptr(), 5) };
        assert!(
            fd >= 0,
            "the stale file is unlinked first; errno {}",
            errno()
        );
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        OS_Close(fd, 0);
    }

    #[test]
    fn is_fcgi_answers_per_descriptor_kind() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(OS_IsFcgi(a.as_raw_fd()), 0, "connected socket");
        let f = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(OS_IsFcgi(f.as_raw_fd()), 0, "not a socket");
        assert_eq!(OS_IsFcgi(987_654), 0, "closed fd");
    }

    fn nonblocking(fd: c_int) {
        OS_SetFlags(fd, libc::O_NONBLOCK);
    }

    /// All OS_Accept behaviour in one test: the shutdown flag it ends with is global.
    #[test]
    fn os_accept_filters_peers_and_stops_on_shutdown() {
        use std::io::Read;
        use std::io::Write;
        let port = free_port("127.0.0.1");
        let spec = CString::new(format!("127.0.0.1:{port}")).unwrap();
        let lfd = unsafe { OS_CreateLocalIpcFd(spec.as_ptr(), 5) };
        assert!(lfd >= 0);

        // An allowed IPv4 peer is accepted, with TCP_NODELAY set.
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let fd = unsafe { OS_Accept(lfd, 0, c"10.9.9.9,127.0.0.1".as_ptr()) };
        assert!(fd >= 0, "errno {}", errno());
        let mut nodelay: c_int = 0;
        let mut len = mem::size_of::<c_int>() as libc::socklen_t;
        unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                ptr::addr_of_mut!(nodelay).cast(),
                &mut len,
            )
        };
        assert_eq!(nodelay, 1);
        assert_eq!(OS_Close(fd, 0), 0);

        // A peer not in FCGI_WEB_SERVER_ADDRS is closed and accept goes on; on a
        // non-blocking listener that ends with EAGAIN, returned as -1.
        nonblocking(lfd);
        let mut rejected = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(unsafe { OS_Accept(lfd, 0, c"10.9.9.9".as_ptr()) }, -1);
        assert_eq!(errno(), libc::EAGAIN);
        let mut buf = [0u8; 1];
        rejected
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            rejected.read(&mut buf).unwrap_or(0),
            0,
            "the rejected peer sees EOF"
        );
        OS_Close(lfd, 0);

        // Unix sockets: a peer that sends nothing within the keeper timeout is dropped.
        KEEPER_POLL_TIMEOUT_MS.store(50, Ordering::SeqCst);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.sock");
        let spec = CString::new(path.to_str().unwrap()).unwrap();
        let ufd = unsafe { OS_CreateLocalIpcFd(spec.as_ptr(), 5) };
        assert!(ufd >= 0);
        let mut talker = std::os::unix::net::UnixStream::connect(&path).unwrap();
        talker.write_all(b"x").unwrap();
        let fd = unsafe { OS_Accept(ufd, 0, ptr::null()) };
        assert!(fd >= 0, "a peer with data is kept");
        OS_Close(fd, 0);
        nonblocking(ufd);
        let mut silent = std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert_eq!(unsafe { OS_Accept(ufd, 0, ptr::null()) }, -1);
        assert_eq!(errno(), libc::EAGAIN);
        silent
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            silent.read(&mut buf).unwrap_or(0),
            0,
            "the silent peer was closed"
        );

        // A pending shutdown: no accept at all.
        let _waiting = std::os::unix::net::UnixStream::connect(&path).unwrap();
        OS_ShutdownPending();
        assert!(shutdown_pending());
        assert_eq!(unsafe { OS_Accept(ufd, 0, ptr::null()) }, -1);
        OS_Close(ufd, 0);
        SHUTDOWN_PENDING.store(false, Ordering::SeqCst);
    }

    #[test]
    fn async_io_reads_and_writes_through_callbacks() {
        use std::os::fd::AsRawFd;
        unsafe extern "C" fn done(cd: *mut c_void, len: c_int) {
            unsafe { *cd.cast::<c_int>() = len };
        }
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut out = *b"ping";
        let mut wrote: c_int = -100;
        let mut inbuf = [0u8; 16];
        let mut read: c_int = -100;
        unsafe {
            assert_eq!(
                OS_AsyncWrite(
                    a.as_raw_fd(),
                    0,
                    out.as_mut_ptr().cast(),
                    4,
                    Some(done),
                    ptr::addr_of_mut!(wrote).cast()
                ),
                0
            );
            assert_eq!(
                OS_AsyncRead(
                    b.as_raw_fd(),
                    0,
                    inbuf.as_mut_ptr().cast(),
                    16,
                    Some(done),
                    ptr::addr_of_mut!(read).cast()
                ),
                0
            );
            let mut tv = libc::timeval {
                tv_sec: 5,
                tv_usec: 0,
            };
            let read_ptr = ptr::addr_of!(read);
            for _ in 0..10 {
                if read_ptr.read_volatile() != -100 {
                    break;
                }
                assert_eq!(OS_DoIo(&mut tv), 0);
            }
        }
        assert_eq!(wrote, 4);
        assert_eq!(read, 4);
        assert_eq!(&inbuf[..4], b"ping");
        // Nothing registered any more: a short timeout returns 0 with no callback.
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 10_000,
        };
        assert_eq!(unsafe { OS_DoIo(&mut tv) }, 0);
        assert_eq!(OS_CloseRead(b.as_raw_fd()), 0);
    }
}
