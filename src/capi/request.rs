//! The wiring of `FCGX_Request` to the server core: `FCGX_Accept_r` takes requests from a
//! [`server::Acceptor`](crate::server::Acceptor) on the request's listening socket, and
//! the three `FCGX_Stream`s of a request are [`StreamIo`] backends over its core
//! [`Request`](crate::server::Request).
//!
//! Behind `FCGX_Request::paramsPtr` hangs a [`RequestExt`]: the `envp` strings and, for a
//! request from the core, the core request itself and its acceptor (to finish it).
//!
//! One acceptor per listening descriptor, shared by every thread that accepts on it; it
//! works on a `dup` of the program's descriptor, so the program's own descriptor stays
//! open and owned by the program. Differences from libfcgi that follow from the core:
//! idle kept-alive connections wait in the core's poller, so a single-threaded program is
//! never stuck on one web-server connection; and the listening socket is put in
//! non-blocking mode (the file status is shared with the program's descriptor).

use std::ffi::c_int;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::fcgiapp::{web_server_addrs, ParamsBlock};
use super::os;
use super::stream::{new_reader, new_writer, StreamIo, READER_BUFFLEN};
use super::types::FCGX_Request;
use crate::protocol::Role;
use crate::server::{Acceptor, AllowList, Config, Listener, Request};

/// Private per-request state behind `FCGX_Request::paramsPtr`.
#[derive(Debug)]
pub(crate) struct RequestExt {
    /// The `name=value` strings `envp` points to.
    pub(crate) params: Box<ParamsBlock>,
    /// The core request and the acceptor that finishes it (None for requests made by hand).
    pub(crate) core: Option<(Box<Request>, Arc<Acceptor>)>,
}

/// Acceptors by the program's listening descriptor.
static ACCEPTORS: Mutex<Vec<(c_int, Arc<Acceptor>)>> = Mutex::new(Vec::new());

/// The acceptor for `listen_sock`, made on first use. It works on a `dup` of the
/// program's descriptor and leaves its file status flags alone: a blocking socket is
/// accepted on only when the engine saw it readable, a non-blocking one gives `-EAGAIN`
/// when no request is ready, as in libfcgi.
fn acceptor_for(listen_sock: c_int) -> io::Result<Arc<Acceptor>> {
    let mut table = ACCEPTORS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, a)) = table.iter().find(|(fd, _)| *fd == listen_sock) {
        return Ok(Arc::clone(a));
    }
    check_listening(listen_sock)?;
    // SAFETY: dup of a descriptor number; failure is reported by -1.
    let fd = unsafe { libc::fcntl(listen_sock, libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is our own fresh duplicate; the Listener takes ownership of it.
    let listener = unsafe { Listener::from_raw_fd(fd) }?;
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
    let mut config = Config {
        log_errors: false, // libfcgi writes nothing to the program's stderr
        handle_signals: false,
        allow,
        ..Config::default()
    };
    config.apply_env();
    let mut opts = config.engine_options(None);
    // FCGI_MAX_REQS: the threads that really call FCGX_Accept_r.
    opts.limits
        .max_reqs
        .store(0, std::sync::atomic::Ordering::Relaxed);
    opts.count_threads = true;
    opts.external_stop = Some(os::shutdown_pending);
    opts.classic_accept = true;
    let acceptor = Arc::new(Acceptor::with_options(listener, opts)?);
    os::register_wake_fd(acceptor.engine().wake_fd());
    table.push((listen_sock, Arc::clone(&acceptor)));
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
struct CoreRef(*mut Request);

// SAFETY: the request is only used by the thread that currently runs the FCGX_Request,
// and it outlives the streams (FCGX_Free frees the streams first).
unsafe impl Send for CoreRef {}

impl CoreRef {
    fn get(&mut self) -> &mut Request {
        // SAFETY: see the Send impl; the pointer comes from a live Box<Request>.
        unsafe { &mut *self.0 }
    }
}

/// `FCGI_STDIN` (then `FCGI_DATA` for a Filter) of a core request.
struct CoreInput {
    req: CoreRef,
    on_data: bool,
}

impl StreamIo for CoreInput {
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let on_data = self.on_data;
        let req = self.req.get();
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
struct CoreOutput {
    req: CoreRef,
    stderr: bool,
}

impl StreamIo for CoreOutput {
    fn empty(&mut self, data: &[u8], close: bool) -> io::Result<()> {
        let stderr = self.stderr;
        let req = self.req.get();
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
    if os::shutdown_pending() {
        return -libc::EINTR;
    }
    let acceptor = match acceptor_for(r.listen_sock) {
        Ok(a) => a,
        Err(e) => return negative_errno(&e),
    };
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
    let req = match accepted {
        Ok(req) => req,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return -libc::EINTR,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return -libc::EAGAIN,
        Err(e) => return negative_errno(&e),
    };
    let mut req = Box::new(req);
    crate::pm::scoreboard::request_started_with(|n| req.param_bytes(n)); // fcgi-pm hook
    let role = req.role();
    let role_name = role.name().as_bytes().to_vec();
    let params = ParamsBlock::new(
        std::iter::once((&b"FCGI_ROLE"[..], &role_name[..]))
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
    let request_ptr: *mut FCGX_Request = r;
    r.in_ = new_reader(
        Box::new(CoreInput {
            req: CoreRef(core),
            on_data: false,
        }),
        READER_BUFFLEN,
        request_ptr,
    );
    r.out = new_writer(
        Box::new(CoreOutput {
            req: CoreRef(core),
            stderr: false,
        }),
        8192,
        request_ptr,
        None,
    );
    r.err = new_writer(
        Box::new(CoreOutput {
            req: CoreRef(core),
            stderr: true,
        }),
        512,
        request_ptr,
        None,
    );
    let mut ext = Box::new(RequestExt {
        params,
        core: Some((req, acceptor)),
    });
    r.envp = ext.params.envp();
    r.paramsPtr = Box::into_raw(ext).cast();
    0
}

/// Ends the core request of `ext` (if any) with `app_status`: END_REQUEST goes out and the
/// core keeps or closes the connection. Returns whether there was one.
pub(crate) fn finish_core(ext: &mut RequestExt, app_status: c_int) -> bool {
    let Some((mut req, acceptor)) = ext.core.take() else {
        return false;
    };
    req.set_app_status(app_status);
    let _ = acceptor.finish(*req);
    crate::pm::scoreboard::request_finished(); // fcgi-pm hook
    true
}

/// `-errno` of an error, or -9999 when there is none (libfcgi's values).
fn negative_errno(e: &io::Error) -> c_int {
    match e.raw_os_error() {
        Some(code) if code > 0 => -code,
        _ => -9999,
    }
}
