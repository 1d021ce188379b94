//! The wiring of `FCGX_Request` to the server core: `FCGX_Accept_r` takes requests from a
//! [`server::Acceptor`](crate::server::Acceptor) on the request's listening socket, and
//! the three `FCGX_Stream`s of a request are [`StreamIo`] backends over its core
//! [`Request`](crate::server::Request).
//!
//! Behind `FCGX_Request::paramsPtr` hangs a [`RequestExt`]: the `envp` strings and, for a
//! request from the core, the core request itself and its acceptor (to finish it).
//!
//! One acceptor per listening socket, shared by every thread that accepts on it; it works
//! on a `dup` of the program's descriptor, so the program's own descriptor stays open and
//! owned by the program, and its file status flags are never changed (a non-blocking one
//! gives `-EAGAIN` when no request is ready, as in libfcgi). Descriptors are known by
//! identity, never by number alone:
//! * an acceptor is found by the program's descriptor number *and* the socket's inode, so
//!   a listening socket the program closed (and maybe replaced, on the same number) is
//!   let go of: its acceptor stops and its `dup` closes;
//! * a connection is closed only through the engine, by its key (`FCGX_Free(r, 1)` after
//!   `FCGX_Finish_r` finds the connection kept for that `FCGX_Request` in [`KEPT`]).
//!
//! fork after accept is supported: a process forked while it held a request may finish it
//! (the end records and `FCGI_END_REQUEST` go out from the child), and the parent lets go
//! of it with `FCGX_Detach` + `FCGX_Free(r, 1)` (nothing written, no shutdown). A forked
//! child drops what it inherited from the parent's acceptors without touching what they
//! share (the epoll set), and gets acceptors of its own if it accepts.

use std::collections::HashMap;
use std::ffi::c_int;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError, Weak};

use super::fcgiapp::{web_server_addrs, ParamsBlock};
use super::os;
use super::stream::{new_reader, new_writer, Io, StreamIo, READER_BUFFLEN};
use super::types::FCGX_Request;
use crate::engine::Conn;
use crate::protocol::Role;
use crate::server::{Acceptor, AllowList, Config, Listener, Request};

/// Private per-request state behind `FCGX_Request::paramsPtr`.
#[derive(Debug)]
pub(crate) struct RequestExt {
    /// The `name=value` strings `envp` points to.
    pub(crate) params: ParamsBlock,
    /// The core request (None for requests made by hand).
    pub(crate) core: Option<Core>,
}

/// A request from the core and what ends it.
#[derive(Debug)]
pub(crate) struct Core {
    req: Box<Request>,
    acceptor: Arc<Acceptor>,
    /// [`crate::sys::forks`] when it was accepted: another value now means this process is a child
    /// forked since.
    forks: u64,
}

/// The identity of an open file: its device and inode (`fstat`).
type Identity = (u64, u64);

/// The identity of descriptor `fd`, or the error `fstat` gives (EBADF when it is closed).
fn identity(fd: c_int) -> io::Result<Identity> {
    // SAFETY: fstat fills the zeroed buffer; failure is reported by -1.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((st.st_dev, st.st_ino))
    }
}

/// An acceptor and the program's listening socket it serves.
struct Registered {
    /// The program's descriptor number.
    fd: c_int,
    /// The socket's identity when the acceptor was made.
    ident: Identity,
    acceptor: Arc<Acceptor>,
}

/// Acceptors by the program's listening socket (descriptor number and identity).
static ACCEPTORS: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// The value of [`crate::sys::forks`] whose inheritance was let go of by
/// [`settle_after_fork`].
static SETTLED: AtomicU64 = AtomicU64::new(0);

/// In a process forked since the last call: lets go of the acceptors and kept
/// connections inherited from the parent. They share the parent's epoll set and sockets,
/// so nothing is done to those: the child's copies of the descriptors close as their last
/// users (a request the child finishes) drop them. Cheap when nothing forked.
fn settle_after_fork() {
    let now = crate::sys::forks();
    if SETTLED.load(Ordering::Acquire) == now {
        return;
    }
    SETTLED.store(now, Ordering::Release);
    let inherited = match ACCEPTORS.try_lock() {
        Ok(mut t) => std::mem::take(&mut *t),
        Err(TryLockError::Poisoned(p)) => std::mem::take(&mut *p.into_inner()),
        Err(TryLockError::WouldBlock) => return, // held by a thread of the parent
    };
    for r in inherited {
        // Not closed here (the engine drops when its last request does): no wait for a
        // signal handler of this single-threaded child.
        os::unregister_wake_fd(r.acceptor.engine().wake_fd(), false);
        os::unregister_wake_fd(r.acceptor.engine().halt_fd(), false);
        r.acceptor.engine().abandon_in_child();
    }
    crate::sys::epoll::forget_accepts_in_child();
    match KEPT.try_lock() {
        Ok(mut kept) => *kept = None,
        Err(TryLockError::Poisoned(p)) => *p.into_inner() = None,
        Err(TryLockError::WouldBlock) => {}
    }
}

/// Stops an acceptor whose listening socket the program closed: its `dup` closes (so the
/// socket closes once the program's descriptor is gone too), idle connections close,
/// threads waiting in it move on (see [`accept_into`]).
fn retire(r: Registered) {
    r.acceptor.shutdown();
    // Unregistered before it can close, and after any signal handler writing it is done.
    os::unregister_wake_fd(r.acceptor.engine().wake_fd(), true);
    os::unregister_wake_fd(r.acceptor.engine().halt_fd(), true);
}

/// The acceptor for the listening socket on `listen_sock`, made on first use. It works on
/// a `dup` of the program's descriptor and leaves its file status flags alone (the
/// `O_NONBLOCK` it finds then decides whether `FCGX_Accept_r` may return -EAGAIN). Found
/// by number, with no system call per request: a socket the library opens at a number
/// that has an acceptor retires it ([`replaced`]). (A program that closes its listening
/// socket and goes on calling `FCGX_Accept_r` on the number without opening another is
/// still served from the `dup`; classic libfcgi would fail with -EBADF.)
fn acceptor_for(listen_sock: c_int) -> io::Result<Arc<Acceptor>> {
    settle_after_fork();
    let mut table = ACCEPTORS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = table.iter().find(|r| r.fd == listen_sock) {
        return Ok(Arc::clone(&r.acceptor));
    }
    let ident = identity(listen_sock)?;
    check_listening(listen_sock)?;
    let allow = match web_server_addrs() {
        Some(list) if !list.as_bytes().is_empty() => {
            let text = String::from_utf8_lossy(list.as_bytes()).into_owned();
            match AllowList::parse(&text) {
                Ok(l) => Some(l),
                Err(e) => {
                    report_bad_allow_list(&text, &e);
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
            }
        }
        _ => None,
    };
    // SAFETY: dup of a descriptor number; failure is reported by -1.
    let fd = unsafe { libc::fcntl(listen_sock, libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is our own fresh duplicate; the Listener takes ownership of it.
    let listener = unsafe { Listener::from_raw_fd(fd) }?;
    let mut config = Config {
        log_errors: false, // libfcgi writes nothing to the program's stderr
        handle_signals: false,
        allow,
        ..Config::default()
    };
    config.apply_env();
    let mut opts = config.engine_options(None);
    // FCGI_MAX_REQS: the threads that really call FCGX_Accept_r.
    opts.limits.max_reqs.store(0, Ordering::Relaxed);
    opts.count_threads = true;
    opts.external_stop = Some(os::shutdown_pending);
    opts.on_stop = Some(os::interrupt_waiting_accepts);
    opts.classic_accept = true;
    // An accept that lost its connection to another process ends soon (see the engine).
    opts.accept_signal = Some(os::quiet_signal);
    // The program may exit right after FCGX_Finish_r: its last write completes first.
    opts.write_completion = false;
    // Before the first acceptor exists, so every fork that could inherit one is counted.
    crate::sys::watch_forks();
    let acceptor = Arc::new(Acceptor::with_options(listener, opts)?);
    os::register_wake_fd(acceptor.engine().wake_fd());
    // Threads waiting in their own epoll sets (see engine::Engine::wait_own) wake by this.
    os::register_wake_fd(acceptor.engine().halt_fd());
    table.push(Registered {
        fd: listen_sock,
        ident,
        acceptor: Arc::clone(&acceptor),
    });
    Ok(acceptor)
}

/// Says once on stderr why `FCGX_Accept_r` fails: an `FCGI_WEB_SERVER_ADDRS` that names
/// no address, or a malformed entry, would otherwise drop every TCP peer in silence.
fn report_bad_allow_list(list: &str, e: &io::Error) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!(
            "fcgi: FCGI_WEB_SERVER_ADDRS={list:?} refused: {e}; FCGX_Accept_r returns -EINVAL"
        );
    }
}

/// The library just opened a socket at descriptor `fd` (`FCGX_OpenSocket`): an acceptor
/// made for a socket that had this number before is stale, and retires.
pub(crate) fn replaced(fd: c_int) {
    let mut table = ACCEPTORS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = table.iter().position(|r| r.fd == fd) {
        if identity(fd).ok() != Some(table[i].ident) {
            retire(table.swap_remove(i));
        }
    }
}

/// Whether `a` is (still) the acceptor of `listen_sock`.
fn is_current(listen_sock: c_int, a: &Arc<Acceptor>) -> bool {
    let table = ACCEPTORS.lock().unwrap_or_else(|e| e.into_inner());
    table
        .iter()
        .any(|r| r.fd == listen_sock && Arc::ptr_eq(&r.acceptor, a))
}

/// A connection kept alive after a request ended (`FCGX_Finish_r`, the web server's
/// keep-conn), remembered for the `FCGX_Request` whose `ipcFd` still names it:
/// `FCGX_Free(r, 1)` closes it through the engine, by key.
#[derive(Debug)]
struct Kept {
    fd: c_int,
    conn: Weak<Conn>,
    acceptor: Weak<Acceptor>,
}

/// Kept connections by the address of their `FCGX_Request`. An entry goes when that
/// request accepts again, is initialised again, or is freed with `close`; entries whose
/// connection is gone are pruned as the table grows.
static KEPT: Mutex<Option<HashMap<usize, Kept, BuildHasherDefault<AddrHasher>>>> = Mutex::new(None);

/// Hashes the address of an `FCGX_Request` (one multiplication, where the default hasher
/// spends about a hundred instructions on each request's insert and remove). The keys are
/// the program's own addresses, not a peer's input: nothing to defend against.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_usize(&mut self, n: usize) {
        // Fibonacci hashing, with the high half folded into the low one: hashbrown takes
        // the bucket from the low bits and a tag from the high ones.
        let h = (n as u64 ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn remember_kept(request: usize, k: Kept) {
    let mut guard = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::default);
    if map.len() >= 64 && map.len().is_power_of_two() {
        map.retain(|_, k| k.conn.strong_count() > 0);
    }
    map.insert(request, k);
}

fn take_kept(request: usize) -> Option<Kept> {
    let mut guard = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    guard.as_mut()?.remove(&request)
}

/// Forgets the kept connection of `request` (it is being initialised or accepts again;
/// the connection stays with the engine).
pub(crate) fn forget_kept(request: *const FCGX_Request) {
    let _ = take_kept(request as usize);
}

/// The error `accept(2)` would give on `fd` if it is not a listening socket: EBADF,
/// ENOTSOCK (a CGI program's stdin: libfcgi's -88), or EINVAL (a socket not listening).
fn check_listening(fd: c_int) -> io::Result<()> {
    let mut listening: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: valid option pointer and length.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            std::ptr::addr_of_mut!(listening).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if listening == 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(())
}

/// A core request shared by the three stream backends of one `FCGX_Request`. They use it
/// one at a time (a request is used by one thread at a time, as in libfcgi).
struct CoreRef {
    req: *mut Request,
    /// [`crate::sys::forks`] when the request was accepted.
    forks: u64,
}

// SAFETY: the request is only used by the thread that currently runs the FCGX_Request,
// and it outlives the streams (FCGX_Free frees the streams first).
unsafe impl Send for CoreRef {}

impl CoreRef {
    fn get(&mut self) -> &mut Request {
        // SAFETY: see the Send impl; the pointer comes from a live Box<Request>.
        unsafe { &mut *self.req }
    }

    /// The request, unless this process forked since it was accepted and it shares its
    /// connection with other requests (FCGI_MPXS_CONNS=1): a child must not read or
    /// write records there, the parent still does.
    fn usable(&mut self) -> io::Result<&mut Request> {
        settle_after_fork();
        let forked = self.forks != crate::sys::forks();
        let req = self.get();
        if forked && req.link.as_ref().is_some_and(|l| l.multiplexed) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a request of a multiplexed connection is not served from a forked child",
            ));
        }
        Ok(req)
    }
}

/// `FCGI_STDIN` (then `FCGI_DATA` for a Filter) of a core request.
pub(crate) struct CoreInput {
    req: CoreRef,
    on_data: bool,
}

impl StreamIo for CoreInput {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let on_data = self.on_data;
        let req = self.req.usable()?;
        if on_data {
            req.data().read(buf)
        } else {
            req.stdin().read(buf)
        }
    }

    fn start_filter_data(&mut self) -> bool {
        if self.on_data || self.req.get().role() != Role::Filter {
            return false;
        }
        self.on_data = true;
        true
    }
}

/// `FCGI_STDOUT` or `FCGI_STDERR` of a core request. Each buffer the C stream hands over
/// goes out as a record at once (`flush`); the end records and `FCGI_END_REQUEST` are
/// sent by the core when the request is finished.
pub(crate) struct CoreOutput {
    req: CoreRef,
    stderr: bool,
}

impl StreamIo for CoreOutput {
    fn empty(&mut self, data: &[u8], close: bool) -> io::Result<()> {
        let stderr = self.stderr;
        let req = self.req.usable()?;
        let out: &mut dyn Write = if stderr { req.stderr() } else { req.stdout() };
        out.write_all(data)?;
        if close {
            // The last bytes stay buffered: they go out with the stream's end record and
            // FCGI_END_REQUEST, in one write, when the request is finished.
            Ok(())
        } else {
            out.flush()
        }
    }
}

/// Fills `r` with the next request from the core: id, role, keep-conn, `envp`
/// (`FCGI_ROLE` first, then the params in wire order), the connection's descriptor and
/// the three streams. Returns 0, or the negative value `FCGX_Accept_r` returns.
///
/// # Safety
/// `r` is a valid request whose previous request has been finished and freed.
pub(crate) unsafe fn accept_into(r: &mut FCGX_Request) -> c_int {
    forget_kept(r);
    if os::shutdown_pending() {
        return -libc::EINTR;
    }
    let mut acceptor = match acceptor_for(r.listen_sock) {
        Ok(a) => a,
        Err(e) => return negative_errno(&e),
    };
    let req = loop {
        if os::shutdown_pending() {
            return -libc::EINTR;
        }
        // fcgi-pm hook (src/pm/scoreboard.rs): pm.max_requests reached, end every accept loop.
        if crate::pm::scoreboard::should_exit() {
            acceptor.shutdown();
            return -libc::EINTR;
        }
        let accepted = if acceptor.engine().nonblocking() {
            acceptor.try_accept()
        } else {
            acceptor.accept()
        };
        match accepted {
            Ok(req) => break req,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                // Retired meanwhile (the program closed its socket): go on with the
                // socket that has the number now, if it is one.
                if os::shutdown_pending() || is_current(r.listen_sock, &acceptor) {
                    return -libc::EINTR;
                }
                acceptor = match acceptor_for(r.listen_sock) {
                    Ok(a) => a,
                    Err(e) => return negative_errno(&e),
                };
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return -libc::EAGAIN,
            Err(e) => return negative_errno(&e),
        }
    };
    let mut req = Box::new(req);
    crate::pm::scoreboard::request_started_with(|n| req.param_bytes(n)); // fcgi-pm hook
    let role = req.role();
    let params = ParamsBlock::new(
        std::iter::once((&b"FCGI_ROLE"[..], role.name().as_bytes()))
            .chain(req.params().map(|p| (p.name, p.value))),
    );
    r.requestId = c_int::from(req.id());
    r.role = c_int::from(u16::from(role));
    r.keepConnection = c_int::from(req.keep_conn());
    r.ipcFd = req.conn_fd().unwrap_or(-1);
    r.isBeginProcessed = 1;
    r.appStatus = 0; // per request (libfcgi kept the previous request's: reference §8 #9)
    r.nWriters = 2;
    let core: *mut Request = &mut *req;
    let forks = crate::sys::forks();
    let core_ref = || CoreRef { req: core, forks };
    let request_ptr: *mut FCGX_Request = r;
    r.in_ = new_reader(
        Io::Input(CoreInput {
            req: core_ref(),
            on_data: false,
        }),
        READER_BUFFLEN,
        request_ptr,
    );
    r.out = new_writer(
        Io::Output(CoreOutput {
            req: core_ref(),
            stderr: false,
        }),
        8192,
        request_ptr,
        None,
    );
    r.err = new_writer(
        Io::Output(CoreOutput {
            req: core_ref(),
            stderr: true,
        }),
        512,
        request_ptr,
        None,
    );
    let mut ext = Box::new(RequestExt {
        params,
        core: Some(Core {
            req,
            acceptor,
            forks,
        }),
    });
    r.envp = ext.params.envp();
    r.paramsPtr = Box::into_raw(ext).cast();
    0
}

/// The connection side of `FCGX_Free(r, close)`, after the streams were freed: ends the
/// core request of `ext` (if any) and closes what `close` asks to, by identity. `close`
/// is the program's `FCGX_Free(r, 1)` (from `FCGX_Finish_r`, whose own conclusion the core
/// makes better, it is false).
///
/// * Finishing (no `close`): `FCGI_END_REQUEST` with `appStatus` goes out and the core
///   keeps or closes the connection; a kept one is remembered for `r`. In a child forked
///   after the accept, the child writes the end records itself.
/// * `close` on a detached request: let go of without a byte written or a shutdown (a
///   forked child serves it, as with libfcgi's plain `close`).
/// * `close` on a request not detached: abandoned as libfcgi does, without
///   `FCGI_END_REQUEST`; the connection is shut down and closed.
/// * No request, `close`: the connection kept for `r` by its last request is closed
///   through the engine, if it is still the one `ipcFd` names. A descriptor number alone
///   is never closed.
/// * A multiplexed connection is never closed for one request, nor handed to a child.
pub(crate) fn free_connection(r: &mut FCGX_Request, ext: Option<Box<RequestExt>>, close: bool) {
    settle_after_fork();
    let request = r as *const FCGX_Request as usize;
    let detached = r.detached != 0;
    let Some(Core {
        mut req,
        acceptor,
        forks,
    }) = ext.and_then(|e| e.core)
    else {
        if close {
            if let Some(k) = take_kept(request).filter(|k| k.fd == r.ipcFd) {
                if let (Some(conn), Some(acceptor)) = (k.conn.upgrade(), k.acceptor.upgrade()) {
                    acceptor.engine().close_parked(&conn, !detached);
                }
            }
        }
        return;
    };
    let in_child = forks != crate::sys::forks();
    let multiplexed = req.link.as_ref().is_some_and(|l| l.multiplexed);
    let mut app_status = r.appStatus;
    if multiplexed {
        if in_child || (close && detached) {
            // Other requests share the connection (FCGI_MPXS_CONNS=1): it cannot go with
            // a child. Said loudly; the parent answers 500, the child writes nothing.
            fork_on_multiplexed(&mut req, in_child);
            if in_child {
                let _ = req.release_forked(true, false);
                return;
            }
            app_status = 1;
        }
        // Ended as usual (also on FCGX_Free(r, 1): the connection is not the request's).
    } else if close {
        if !in_child {
            crate::pm::scoreboard::request_finished(); // fcgi-pm hook
        }
        if detached {
            // Handed over: a forked child serves it on its copy of the descriptor.
            let _ = req.release_forked(in_child, false);
        } else if in_child {
            // Abandoned, as libfcgi's OS_IpcClose: no END_REQUEST, the socket shut down.
            if let Some(l) = &req.link {
                l.conn.shutdown_write();
            }
            let _ = req.release_forked(true, false);
        } else {
            req.abandon();
        }
        return;
    } else if in_child {
        // Finished by a child forked after the accept: the end records go out from here.
        req.set_app_status(app_status);
        let _ = req.release_forked(true, true);
        return;
    }
    let conn = (!multiplexed)
        .then(|| req.link.as_ref().map(|l| Arc::downgrade(&l.conn)))
        .flatten();
    let keep = req.keep_conn();
    req.set_app_status(app_status);
    let _ = acceptor.finish(*req);
    crate::pm::scoreboard::request_finished(); // fcgi-pm hook
    if let (true, Some(conn)) = (keep, conn) {
        remember_kept(
            request,
            Kept {
                fd: r.ipcFd,
                conn,
                acceptor: Arc::downgrade(&acceptor),
            },
        );
    }
}

/// A request of a multiplexed connection handed to a forked child: not supported (the
/// two processes would write records on one connection). Says so on stderr; in the
/// parent, the request is answered 500 (if nothing was sent yet) with the reason on
/// FCGI_STDERR, then ended as usual.
fn fork_on_multiplexed(req: &mut Request, in_child: bool) {
    let msg = "fcgi: a request of a multiplexed connection (FCGI_MPXS_CONNS=1) cannot be \
               handed to a forked child; it is answered 500";
    eprintln!("{msg}");
    if in_child {
        return;
    }
    if !req.stdout_sent() {
        req.stdout().0.discard();
        let _ = req.respond(
            500,
            &[("Content-Type", "text/plain")],
            b"500 Internal Server Error\n",
        );
    }
    let _ = writeln!(req.stderr(), "{msg}");
}

/// `-errno` of an error, or -9999 when there is none (libfcgi's values).
fn negative_errno(e: &io::Error) -> c_int {
    match e.raw_os_error() {
        Some(code) if code > 0 => -code,
        _ => -9999,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn request_addresses_spread_over_buckets() {
        // FCGX_Request addresses are 8-aligned (and often a struct size apart): their
        // hashes must still differ in the low bits hashbrown picks buckets with.
        let b = BuildHasherDefault::<AddrHasher>::default();
        for stride in [8usize, 120, 4096] {
            let lows: std::collections::HashSet<u64> = (0..64usize)
                .map(|i| b.hash_one(0x7f00_0000_1000 + i * stride) & 63)
                .collect();
            assert!(
                lows.len() >= 32,
                "stride {stride}: {} buckets of 64",
                lows.len()
            );
        }
    }
}
