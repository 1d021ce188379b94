//! `fcgiapp.h` beyond the stream functions: library initialisation, CGI detection,
//! listening sockets, `FCGX_Request` handling and parameters.
//!
//! `FCGX_Accept_r` gets its requests from the server core (see [`super::request`]).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::{self, addr_of_mut};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

use super::request::RequestExt;
use super::stream::{free_stream, FCGX_FClose, FCGX_GetError};
use super::types::{FCGX_Request, FCGX_Stream};
use super::{ffi_boundary, os};

/// `FCGX_Accept_r` before `FCGX_Init` (libfcgi's value).
const NOT_INITIALISED: c_int = -9998;
/// `FCGX_Init` failed without an errno (libfcgi's value).
const INIT_FAILED: c_int = -9997;

/// Set once `FCGX_Init` has run.
static LIB_INITIALIZED: AtomicBool = AtomicBool::new(false);
/// Cached `OS_IsFcgi(0)`: -1 not yet asked, 0 CGI, 1 FastCGI.
static IS_FASTCGI: AtomicI32 = AtomicI32::new(-1);
/// `FCGI_WEB_SERVER_ADDRS`, read once by `FCGX_Init`.
static WEB_SERVER_ADDRS: Mutex<Option<CString>> = Mutex::new(None);
/// The request of the non-reentrant `FCGX_Accept`/`FCGX_Finish` (listening on fd 0).
static mut THE_REQUEST: FCGX_Request = zeroed_request();

/// An all-zero `FCGX_Request` (NULL pointers, zero integers).
pub(crate) const fn zeroed_request() -> FCGX_Request {
    FCGX_Request {
        requestId: 0,
        role: 0,
        in_: ptr::null_mut(),
        out: ptr::null_mut(),
        err: ptr::null_mut(),
        envp: ptr::null_mut(),
        paramsPtr: ptr::null_mut(),
        ipcFd: 0,
        isBeginProcessed: 0,
        keepConnection: 0,
        appStatus: 0,
        nWriters: 0,
        flags: 0,
        listen_sock: 0,
        detached: 0,
    }
}

/// Whether `FCGX_Init` has run.
pub(crate) fn is_initialized() -> bool {
    LIB_INITIALIZED.load(Ordering::Acquire)
}

/// A copy of `FCGI_WEB_SERVER_ADDRS` as read by `FCGX_Init` (the acceptors' allow-list).
pub(crate) fn web_server_addrs() -> Option<CString> {
    WEB_SERVER_ADDRS.lock().map(|g| g.clone()).unwrap_or(None)
}

/// The parameters of one request, behind `FCGX_Request::paramsPtr`: `"name=value"`
/// strings and the NULL-terminated vector of them that `envp` points to. Freed by
/// `FCGX_Free` (so by `FCGX_Finish_r` and the next `FCGX_Accept_r`).
#[derive(Debug)]
pub(crate) struct ParamsBlock {
    /// The strings, each `name=value` and a NUL, one after another in one allocation that
    /// never grows (so it never moves).
    strings: Box<[u8]>,
    /// Pointers into `strings`, then NULL.
    envp: Vec<*mut c_char>,
}

impl ParamsBlock {
    /// Builds the vector from pairs in order (libfcgi puts `FCGI_ROLE=...` first, then the
    /// web server's parameters in wire order). Bytes are copied as they are; a NUL inside
    /// a name or value ends that string for C, as in libfcgi.
    pub(crate) fn new<'a, I>(pairs: I) -> ParamsBlock
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
        I::IntoIter: Clone,
    {
        // Two passes over the pairs (sizes, then bytes) instead of a copy of them.
        let pairs = pairs.into_iter();
        let (count, total) = pairs
            .clone()
            .fold((0, 0), |(c, t), (n, v)| (c + 1, t + n.len() + v.len() + 2));
        let mut strings = Vec::with_capacity(total);
        // Each string's offset first (as an address-less pointer), its address once the
        // strings have their final place.
        let mut envp: Vec<*mut c_char> = Vec::with_capacity(count + 1);
        for (name, value) in pairs {
            envp.push(ptr::without_provenance_mut(strings.len()));
            strings.extend_from_slice(name);
            strings.push(b'=');
            strings.extend_from_slice(value);
            strings.push(0);
        }
        let mut strings = strings.into_boxed_slice();
        let base = strings.as_mut_ptr();
        for p in &mut envp {
            // SAFETY: every offset is inside `strings`.
            *p = unsafe { base.add(p.addr()) }.cast::<c_char>();
        }
        envp.push(ptr::null_mut());
        ParamsBlock { strings, envp }
    }

    /// The `char **` for `FCGX_Request::envp`; valid while the block lives.
    pub(crate) fn envp(&mut self) -> *mut *mut c_char {
        debug_assert!(self.envp.last().is_some_and(|p| p.is_null()));
        debug_assert!(!self.envp.is_empty() || self.strings.is_empty());
        self.envp.as_mut_ptr()
    }
}

/// 1 when the process is a CGI program, 0 when fd 0 is a FastCGI listening socket
/// (`getpeername(0)` fails with `ENOTCONN`). The answer is computed once. Calls
/// `FCGX_Init` first, and exits the process if that fails (as libfcgi does).
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_IsCGI() -> c_int {
    ffi_boundary!({
        let known = IS_FASTCGI.load(Ordering::Acquire);
        if known != -1 {
            return c_int::from(known == 0);
        }
        if !is_initialized() {
            let rc = FCGX_Init();
            if rc != 0 {
                // SAFETY: exit is always safe to call.
                unsafe { libc::exit(if rc < 0 { rc } else { -rc }) };
            }
        }
        let fcgi = os::OS_IsFcgi(0);
        IS_FASTCGI.store(fcgi, Ordering::Release);
        c_int::from(fcgi == 0)
    })
}

/// Initialises the library once: the request of `FCGX_Accept`, `OS_LibInit` (signal
/// handlers, timeouts) and `FCGI_WEB_SERVER_ADDRS`. Returns 0, or an errno value, or
/// -9997. Not thread-safe: call it before starting threads.
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_Init() -> c_int {
    ffi_boundary!({
        if is_initialized() {
            return 0;
        }
        // SAFETY: THE_REQUEST is only touched by the non-reentrant API, single-threaded.
        unsafe { FCGX_InitRequest(addr_of_mut!(THE_REQUEST), 0, 0) };
        // SAFETY: OS_LibInit ignores its argument.
        if unsafe { os::OS_LibInit(ptr::null_mut()) } == -1 {
            let e = super::errno();
            return if e != 0 { e } else { INIT_FAILED };
        }
        if crate::sys::is_unconnected_socket(0) {
            // The listening socket a web server or manager passed on fd 0: from now on the
            // kernel keeps connections that have not spoken yet (see the engine).
            // SAFETY: fd 0 is open (it is a socket); a failure only leaves it unset.
            crate::sys::set_defer_accept(unsafe { std::os::fd::BorrowedFd::borrow_raw(0) });
        }
        let addrs = std::env::var_os("FCGI_WEB_SERVER_ADDRS")
            .and_then(|v| CString::new(std::os::unix::ffi::OsStringExt::into_vec(v)).ok());
        if let Ok(mut slot) = WEB_SERVER_ADDRS.lock() {
            *slot = addrs;
        }
        LIB_INITIALIZED.store(true, Ordering::Release);
        0
    })
}

/// Creates a listening socket, as `OS_CreateLocalIpcFd`: `"path"` is a Unix socket
/// (unlinked first), `":port"`/`"*:port"` any IPv4 address, `"host:port"` one IPv4
/// address, `"[v6addr]:port"` an IPv6 one. Returns the fd, or -1 with errno set (libfcgi
/// exited the process on most errors). A new socket on fd 0 turns an earlier "CGI" answer
/// of `FCGX_IsCGI` into "FastCGI".
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_OpenSocket(path: *const c_char, backlog: c_int) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        let fd = unsafe { os::OS_CreateLocalIpcFd(path, backlog) };
        if fd >= 0 {
            // A listening socket the program had at this number is gone.
            super::request::replaced(fd);
            // SAFETY: fd was just opened here; a failure (a Unix socket) leaves it unset.
            crate::sys::set_defer_accept(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        }
        if fd == 0 {
            let _ = IS_FASTCGI.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
        }
        fd
    })
}

/// Zeroes the 80 bytes of `request`, then sets `listen_sock`, `flags` and `ipcFd = -1`.
/// Returns 0 (-1 for NULL, where libfcgi crashed).
///
/// # Safety
/// `request` is NULL or valid for writes of an `FCGX_Request`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_InitRequest(
    request: *mut FCGX_Request,
    sock: c_int,
    flags: c_int,
) -> c_int {
    ffi_boundary!({
        if request.is_null() {
            return -1;
        }
        super::request::forget_kept(request);
        let mut r = zeroed_request();
        r.listen_sock = sock;
        r.flags = flags;
        r.ipcFd = -1;
        // SAFETY: valid for writes per the contract; the old contents are not dropped
        // (they are plain C data).
        unsafe { ptr::write(request, r) };
        0
    })
}

/// Finishes the previous request and waits for the next one on `request->listen_sock`
/// (many threads may wait on one socket; kept-alive connections wait in the server core's
/// poller, so no thread is stuck on an idle one). On success fills `requestId`, `role`,
/// `keepConnection`, `ipcFd`, `envp` and the three streams, resets `appStatus` to 0, and
/// returns 0. Otherwise returns -9998 before `FCGX_Init`, -EINTR once a shutdown was
/// requested (SIGTERM, SIGUSR1, `FCGX_ShutdownPending`), or `-errno` (-9999 without one):
/// -88 (ENOTSOCK) when the socket is not a socket, -11 (EAGAIN) at once when the socket is
/// `O_NONBLOCK` (the program's flags, never changed) and no request is ready, -22 (EINVAL)
/// when `FCGI_WEB_SERVER_ADDRS` names no address or a malformed one.
///
/// # Safety
/// `request` is NULL or a request initialised by `FCGX_InitRequest`, which stays at the
/// same address until `FCGX_Finish_r`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Accept_r(request: *mut FCGX_Request) -> c_int {
    ffi_boundary!({
        if request.is_null() {
            return -libc::EINVAL;
        }
        if !is_initialized() {
            return NOT_INITIALISED;
        }
        // SAFETY: forwarded contract; after Finish_r the request holds no streams.
        unsafe {
            FCGX_Finish_r(request);
            super::request::accept_into(&mut *request)
        }
    })
}

/// Ends the current request: closes stderr and stdout (their end records, and
/// `FCGI_END_REQUEST` with `appStatus` from the last writer), then frees it as
/// `FCGX_Free`; the core keeps the connection when the web server asked to and it is
/// sound, else closes it (`ipcFd` becomes -1 when libfcgi would have closed it: no
/// keep-conn, or a stream error). NULL and requests without a current request are
/// ignored.
///
/// # Safety
/// `request` is NULL or a request initialised by `FCGX_InitRequest`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Finish_r(request: *mut FCGX_Request) {
    ffi_boundary!({
        // SAFETY: valid or NULL per the contract; streams are the request's own.
        unsafe {
            let Some(r) = request.as_mut() else {
                return;
            };
            let mut close = r.keepConnection == 0;
            if !r.in_.is_null() {
                close |= FCGX_FClose(r.err) != 0;
                close |= FCGX_FClose(r.out) != 0;
                close |= FCGX_GetError(r.in_) != 0;
            }
            free_request(request, close, false);
        }
    })
}

/// Frees the request's streams (`in`, `out`, `err` become NULL) and parameters, and ends
/// its core request (`FCGI_END_REQUEST` with `appStatus`; the core keeps or closes the
/// connection). With `close`, the request's connection is closed (a graceful shutdown
/// unless detached), also one kept alive by `FCGX_Finish_r`, and `ipcFd` becomes -1;
/// connections are closed through the core by identity, never by descriptor number. A
/// detached request freed with `close` is let go of without `FCGI_END_REQUEST` (a forked
/// child serves it), and a child forked after the accept ends the request itself. See
/// `request::free_connection`. `envp` is left dangling, as in libfcgi. NULL is ignored.
///
/// # Safety
/// `request` is NULL or a request initialised by `FCGX_InitRequest`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Free(request: *mut FCGX_Request, close: c_int) {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe { free_request(request, close != 0, true) }
    })
}

/// `FCGX_Free`, also on behalf of `FCGX_Finish_r` (`asked` false): then `close` is
/// libfcgi's own conclusion (no keep-conn, a stream error), and the core, which knows the
/// connection's state, decides whether to keep it.
///
/// # Safety
/// `request` is NULL or a request initialised by `FCGX_InitRequest`.
unsafe fn free_request(request: *mut FCGX_Request, close: bool, asked: bool) {
    // SAFETY: valid or NULL per the contract; the streams and paramsPtr were made by this
    // library (or are NULL).
    unsafe {
        let Some(r) = request.as_mut() else {
            return;
        };
        for slot in [&mut r.in_, &mut r.out, &mut r.err] {
            free_stream(*slot);
            *slot = ptr::null_mut::<FCGX_Stream>();
        }
        let ext = (!r.paramsPtr.is_null()).then(|| Box::from_raw(r.paramsPtr.cast::<RequestExt>()));
        r.paramsPtr = ptr::null_mut::<c_void>();
        super::request::free_connection(r, ext, close && asked);
        if close {
            r.ipcFd = -1;
            r.detached = 0;
        }
    }
}

/// `FCGX_Accept_r` on the library's own request (listening on fd 0), calling `FCGX_Init`
/// first if needed; stores the streams and parameters through the non-NULL pointers.
/// Not thread-safe.
///
/// # Safety
/// Each pointer is NULL or valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Accept(
    in_: *mut *mut FCGX_Stream,
    out: *mut *mut FCGX_Stream,
    err: *mut *mut FCGX_Stream,
    envp: *mut *mut *mut c_char,
) -> c_int {
    ffi_boundary!({
        if !is_initialized() {
            let rc = FCGX_Init();
            if rc != 0 {
                return rc;
            }
        }
        // SAFETY: THE_REQUEST belongs to this non-reentrant API; out-pointers per contract.
        unsafe {
            let r = addr_of_mut!(THE_REQUEST);
            let rc = FCGX_Accept_r(r);
            if !in_.is_null() {
                *in_ = (*r).in_;
            }
            if !out.is_null() {
                *out = (*r).out;
            }
            if !err.is_null() {
                *err = (*r).err;
            }
            if !envp.is_null() {
                *envp = (*r).envp;
            }
            rc
        }
    })
}

/// `FCGX_Finish_r` on the library's own request. Not thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_Finish() {
    ffi_boundary!({
        // SAFETY: THE_REQUEST belongs to this non-reentrant API.
        unsafe { FCGX_Finish_r(addr_of_mut!(THE_REQUEST)) }
    })
}

/// The value of parameter `name` in `envp` (the first `name=value` entry, compared
/// case-sensitively), or NULL. NULL arguments give NULL.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `envp` is NULL or a NULL-terminated vector
/// of NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_GetParam(name: *const c_char, envp: *mut *mut c_char) -> *mut c_char {
    ffi_boundary!({
        if name.is_null() || envp.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: NUL-terminated strings and a NULL-terminated vector per the contract.
        unsafe {
            let name = CStr::from_ptr(name).to_bytes();
            let mut p = envp;
            while !(*p).is_null() {
                let entry = CStr::from_ptr(*p).to_bytes();
                if entry.len() > name.len() && entry.starts_with(name) && entry[name.len()] == b'='
                {
                    return (*p).add(name.len() + 1);
                }
                p = p.add(1);
            }
        }
        ptr::null_mut()
    })
}

/// Asks the accept loop to end, like SIGTERM does (async-signal-safe).
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_ShutdownPending() {
    ffi_boundary!({ os::OS_ShutdownPending() })
}

/// Undoes `FCGX_Detach`. Returns 0 (-1 for NULL).
///
/// # Safety
/// `r` is NULL or a valid request.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Attach(r: *mut FCGX_Request) -> c_int {
    ffi_boundary!({
        // SAFETY: valid or NULL per the contract.
        let Some(r) = (unsafe { r.as_mut() }) else {
            return -1;
        };
        r.detached = 0;
        0
    })
}

/// Makes the close of the request's connection a plain `close()` (no shutdown and drain).
/// Returns 0, or -1 when there is no connection (`ipcFd <= 0`) or `r` is NULL.
///
/// # Safety
/// `r` is NULL or a valid request.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Detach(r: *mut FCGX_Request) -> c_int {
    ffi_boundary!({
        // SAFETY: valid or NULL per the contract.
        let Some(r) = (unsafe { r.as_mut() }) else {
            return -1;
        };
        if r.ipcFd <= 0 {
            return -1;
        }
        r.detached = 1;
        0
    })
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)] // tests call the exports with valid arguments
mod tests {
    use super::*;

    #[test]
    fn get_param_finds_first_exact_name() {
        let mut block = ParamsBlock::new([
            (&b"FCGI_ROLE"[..], &b"RESPONDER"[..]),
            (b"QUERY", b"a=b"),
            (b"QUERY_STRING", b"x"),
            (b"QUERY", b"second"),
            (b"EMPTY", b""),
        ]);
        let envp = block.envp();
        let get = |n: &CStr| {
            // SAFETY: envp is a valid vector; the result points into it.
            let p = unsafe { FCGX_GetParam(n.as_ptr(), envp) };
            // SAFETY: non-NULL results are NUL-terminated strings in the block.
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes().to_vec())
        };
        assert_eq!(get(c"QUERY").as_deref(), Some(&b"a=b"[..]));
        assert_eq!(get(c"QUERY_STRING").as_deref(), Some(&b"x"[..]));
        assert_eq!(get(c"EMPTY").as_deref(), Some(&b""[..]));
        assert_eq!(get(c"query"), None);
        assert_eq!(get(c"QUER"), None);
        assert_eq!(get(c"FCGI_ROLE").as_deref(), Some(&b"RESPONDER"[..]));
        // SAFETY: NULL arguments are allowed.
        assert!(unsafe { FCGX_GetParam(ptr::null(), envp) }.is_null());
        // SAFETY: as above.
        assert!(unsafe { FCGX_GetParam(c"X".as_ptr(), ptr::null_mut()) }.is_null());
    }

    #[test]
    fn init_request_zeroes_and_sets_fields() {
        let mut r = zeroed_request();
        r.appStatus = 7;
        r.role = 3;
        // SAFETY: r is a valid request.
        assert_eq!(unsafe { FCGX_InitRequest(&mut r, 5, 1) }, 0);
        assert_eq!(
            (r.listen_sock, r.flags, r.ipcFd, r.appStatus, r.role),
            (5, 1, -1, 0, 0)
        );
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { FCGX_InitRequest(ptr::null_mut(), 0, 0) }, -1);
        // SAFETY: r is valid.
        assert_eq!(
            unsafe { FCGX_Detach(&mut r) },
            -1,
            "no connection: ipcFd is -1"
        );
        r.ipcFd = 9;
        // SAFETY: r is valid.
        assert_eq!(unsafe { FCGX_Detach(&mut r) }, 0);
        assert_eq!(r.detached, 1);
        // SAFETY: r is valid.
        assert_eq!(unsafe { FCGX_Attach(&mut r) }, 0);
        assert_eq!(r.detached, 0);
    }

    #[test]
    fn free_releases_params_and_keeps_fd_without_close() {
        let mut r = zeroed_request();
        // SAFETY: r is valid.
        unsafe { FCGX_InitRequest(&mut r, 0, 0) };
        let mut ext = Box::new(RequestExt {
            params: ParamsBlock::new([(&b"A"[..], &b"1"[..])]),
            core: None,
        });
        r.envp = ext.params.envp();
        r.paramsPtr = Box::into_raw(ext).cast();
        r.ipcFd = 1234;
        // SAFETY: r is valid and its paramsPtr a RequestExt.
        unsafe { FCGX_Free(&mut r, 0) };
        assert!(r.paramsPtr.is_null());
        assert_eq!(r.ipcFd, 1234);
    }
}
