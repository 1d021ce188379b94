//! `fcgi_stdio.h`: stdio for programs that run as CGI or as FastCGI unchanged.
//!
//! `_fcgi_sF` holds the program's `stdin`, `stdout` and `stderr` as `FCGI_FILE`s. The
//! first `FCGI_Accept` decides the mode: in CGI mode they wrap the real C streams and the
//! accept loop runs once; in FastCGI mode they are the current request's streams and
//! `environ` is its parameters. Every function dispatches the same way: a real `FILE`
//! gets the C library's function, a request stream the `FCGX_*` equivalent, and a
//! wrapper with neither (before the first accept, or a NULL argument) the failure value.
//! The printf family is in `capi/printf.c` (variadic).

use std::ffi::{c_char, c_int, c_long, c_void};
use std::ptr::{self, addr_of_mut};

use super::fcgiapp::{FCGX_Accept, FCGX_Finish, FCGX_IsCGI};
use super::stream::{
    FCGX_ClearError, FCGX_FClose, FCGX_FFlush, FCGX_GetChar, FCGX_GetError, FCGX_GetLine,
    FCGX_GetStr, FCGX_HasSeenEOF, FCGX_PutChar, FCGX_PutS, FCGX_PutStr, FCGX_SetExitStatus,
    FCGX_StartFilterData, FCGX_UnGetChar,
};
use super::types::{FCGX_Stream, FCGI_FILE};
use super::{errno, ffi_boundary, set_errno, EOF};

/// The program's `stdin`, `stdout` and `stderr` (`FCGI_stdin` = `&_fcgi_sF[0]`, ...):
/// 48 bytes of data, exported with default visibility so that a program's copy of it
/// (a copy relocation) is the one everyone uses.
#[unsafe(no_mangle)]
pub static mut _fcgi_sF: [FCGI_FILE; 3] = [FCGI_FILE::EMPTY; 3];

unsafe extern "C" {
    static mut stdin: *mut libc::FILE;
    static mut stdout: *mut libc::FILE;
    static mut stderr: *mut libc::FILE;
    static mut environ: *mut *mut c_char;
}

/// `FCGI_Accept` has run once.
static mut ACCEPT_CALLED: bool = false;
/// The mode chosen by the first `FCGI_Accept`.
static mut IS_CGI: bool = false;
/// `environ` points at request parameters (so it must be cleared when they are freed).
static mut ENVIRON_IS_PARAMS: bool = false;

/// `&_fcgi_sF[i]`.
fn sf(i: usize) -> *mut FCGI_FILE {
    debug_assert!(i < 3);
    // SAFETY: i < 3, inside the array; only the address is taken.
    unsafe { addr_of_mut!(_fcgi_sF).cast::<FCGI_FILE>().add(i) }
}

/// True for the three wrappers of `_fcgi_sF`, which are never freed.
fn is_standard(fp: *mut FCGI_FILE) -> bool {
    (0..3).any(|i| sf(i) == fp)
}

/// A `malloc`ed wrapper around a real `FILE`, or NULL if `file` is NULL (or out of
/// memory). `malloc`/`free` as in libfcgi, so wrappers a program allocates itself can be
/// closed too.
fn wrap(file: *mut libc::FILE) -> *mut FCGI_FILE {
    if file.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: malloc of the wrapper's size; the result is checked before use.
    let fp = unsafe { libc::malloc(std::mem::size_of::<FCGI_FILE>()) }.cast::<FCGI_FILE>();
    if !fp.is_null() {
        // SAFETY: fp is a fresh allocation of the right size and alignment.
        unsafe {
            fp.write(FCGI_FILE {
                stdio_stream: file,
                fcgx_stream: ptr::null_mut(),
            })
        };
    }
    fp
}

/// Frees a wrapper (with `free`) unless it is one of `_fcgi_sF`.
///
/// # Safety
/// `fp` came from `malloc` (as [`wrap`]'s do) or is one of `_fcgi_sF`.
unsafe fn release(fp: *mut FCGI_FILE) {
    if !is_standard(fp) {
        // SAFETY: per the contract, a malloc'ed wrapper.
        unsafe { libc::free(fp.cast()) };
    }
}

/// Which stream an `FCGI_FILE` holds.
enum Target {
    Stdio(*mut libc::FILE),
    Fcgx(*mut FCGX_Stream),
    Neither,
}

/// # Safety
/// `fp` is NULL or a valid `FCGI_FILE`.
unsafe fn target(fp: *mut FCGI_FILE) -> Target {
    // SAFETY: NULL or valid per the contract.
    match unsafe { fp.as_ref() } {
        Some(f) if !f.stdio_stream.is_null() => Target::Stdio(f.stdio_stream),
        Some(f) if !f.fcgx_stream.is_null() => Target::Fcgx(f.fcgx_stream),
        _ => Target::Neither,
    }
}

/// Waits for the next request. The first call decides the mode (`FCGX_IsCGI`, which also
/// installs the signal handlers) and registers `FCGI_Finish` with `atexit`.
/// CGI mode: the standard streams become the real ones and 0 is returned once; the next
/// call returns `EOF`, so the accept loop body runs exactly once.
/// FastCGI mode: finishes the previous request, accepts the next one (fd 0) and makes
/// `environ` its parameters; returns 0 or the negative `FCGX_Accept` error.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_Accept() -> c_int {
    ffi_boundary!({
        // SAFETY: fcgi_stdio is single-threaded by contract (as in libfcgi).
        unsafe {
            if !ACCEPT_CALLED {
                IS_CGI = FCGX_IsCGI() != 0;
                ACCEPT_CALLED = true;
                libc::atexit(finish_at_exit);
            } else if IS_CGI {
                return EOF;
            }
            if IS_CGI {
                for (i, file) in [stdin, stdout, stderr].into_iter().enumerate() {
                    *sf(i) = FCGI_FILE {
                        stdio_stream: file,
                        fcgx_stream: ptr::null_mut(),
                    };
                }
                return 0;
            }
            let mut streams = [ptr::null_mut::<FCGX_Stream>(); 3];
            let mut envp: *mut *mut c_char = ptr::null_mut();
            let [a, b, c] = &mut streams;
            let rc = FCGX_Accept(a, b, c, &mut envp);
            if rc < 0 {
                // The previous request's parameters are freed: don't leave environ
                // pointing at them (libfcgi did, until exit).
                if ENVIRON_IS_PARAMS {
                    environ = ptr::null_mut();
                    ENVIRON_IS_PARAMS = false;
                }
                for i in 0..3 {
                    (*sf(i)).fcgx_stream = ptr::null_mut();
                }
                return rc;
            }
            for (i, s) in streams.into_iter().enumerate() {
                *sf(i) = FCGI_FILE {
                    stdio_stream: ptr::null_mut(),
                    fcgx_stream: s,
                };
            }
            environ = envp;
            ENVIRON_IS_PARAMS = true;
        }
        0
    })
}

extern "C" fn finish_at_exit() {
    FCGI_Finish()
}

/// Ends the current request (FastCGI mode): flushes and closes its streams, clears the
/// standard streams and sets `environ` to NULL. Does nothing in CGI mode or before the
/// first `FCGI_Accept`.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_Finish() {
    ffi_boundary!({
        // SAFETY: single-threaded by contract.
        unsafe {
            if !ACCEPT_CALLED || IS_CGI {
                return;
            }
            FCGX_Finish();
            for i in 0..3 {
                (*sf(i)).fcgx_stream = ptr::null_mut();
            }
            environ = ptr::null_mut();
            ENVIRON_IS_PARAMS = false;
        }
    })
}

/// Filter role: switches stdin to the `FCGI_DATA` stream. -1 in CGI mode or on error.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_StartFilterData() -> c_int {
    ffi_boundary!({
        // SAFETY: sf(0) is valid; the stream pointer is the library's own.
        unsafe {
            match target(sf(0)) {
                Target::Stdio(_) => -1,
                Target::Fcgx(s) => FCGX_StartFilterData(s),
                Target::Neither => FCGX_StartFilterData(ptr::null_mut()),
            }
        }
    })
}

/// Sets the current request's exit status (FastCGI mode only).
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_SetExitStatus(status: c_int) {
    ffi_boundary!({
        // SAFETY: sf(0) is valid; the stream pointer is the library's own.
        unsafe {
            if let Target::Fcgx(s) = target(sf(0)) {
                FCGX_SetExitStatus(status, s);
            }
        }
    })
}

/// Writes `str`, `": "` and `strerror(errno)` to `FCGI_stderr`, with no newline (byte for
/// byte what libfcgi writes).
///
/// # Safety
/// `str` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_perror(str: *const c_char) {
    ffi_boundary!({
        let e = errno();
        // SAFETY: strings are NUL-terminated; strerror returns a valid string.
        unsafe {
            FCGI_fputs(str, sf(2));
            FCGI_fputs(c": ".as_ptr(), sf(2));
            FCGI_fputs(libc::strerror(e), sf(2));
        }
        set_errno(e);
    })
}

/// `fopen`, wrapped.
///
/// # Safety
/// Arguments as for `fopen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fopen(path: *const c_char, mode: *const c_char) -> *mut FCGI_FILE {
    // SAFETY: forwarded contract.
    ffi_boundary!({ wrap(unsafe { libc::fopen(path, mode) }) })
}

/// Closes a real file or a request stream; frees the wrapper unless it is a standard one.
/// Returns the close result, or `EOF`.
///
/// # Safety
/// `fp` is NULL or a valid wrapper, not used after (unless standard).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fclose(fp: *mut FCGI_FILE) -> c_int {
    ffi_boundary!({
        if fp.is_null() {
            return EOF;
        }
        // SAFETY: valid per the contract.
        unsafe {
            let n = match target(fp) {
                Target::Stdio(f) => {
                    (*fp).stdio_stream = ptr::null_mut();
                    libc::fclose(f)
                }
                Target::Fcgx(s) => {
                    (*fp).fcgx_stream = ptr::null_mut();
                    FCGX_FClose(s)
                }
                Target::Neither => EOF,
            };
            release(fp);
            n
        }
    })
}

/// `fflush`; NULL flushes all real files; a request stream is `FCGX_FFlush`ed.
///
/// # Safety
/// `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fflush(fp: *mut FCGI_FILE) -> c_int {
    ffi_boundary!({
        if fp.is_null() {
            // SAFETY: fflush(NULL) is defined.
            return unsafe { libc::fflush(ptr::null_mut()) };
        }
        // SAFETY: valid per the contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::fflush(f),
                Target::Fcgx(s) => FCGX_FFlush(s),
                Target::Neither => EOF,
            }
        }
    })
}

/// `freopen`; a request stream is closed and the wrapper becomes a real file.
///
/// # Safety
/// Arguments as for `freopen`; `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_freopen(
    path: *const c_char,
    mode: *const c_char,
    fp: *mut FCGI_FILE,
) -> *mut FCGI_FILE {
    ffi_boundary!({
        // SAFETY: valid per the contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => {
                    if libc::freopen(path, mode, f).is_null() {
                        ptr::null_mut()
                    } else {
                        fp
                    }
                }
                Target::Fcgx(s) => {
                    FCGX_FClose(s);
                    (*fp).stdio_stream = libc::fopen(path, mode);
                    if (*fp).stdio_stream.is_null() {
                        return ptr::null_mut();
                    }
                    (*fp).fcgx_stream = ptr::null_mut();
                    fp
                }
                Target::Neither => ptr::null_mut(),
            }
        }
    })
}

/// `setvbuf` on a real file; -1 otherwise (errno untouched, as libfcgi).
///
/// # Safety
/// Arguments as for `setvbuf`; `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_setvbuf(
    fp: *mut FCGI_FILE,
    buf: *mut c_char,
    bufmode: c_int,
    size: usize,
) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::setvbuf(f, buf, bufmode, size),
                _ => -1,
            }
        }
    })
}

/// `setbuf` on a real file; nothing otherwise.
///
/// # Safety
/// Arguments as for `setbuf`; `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_setbuf(fp: *mut FCGI_FILE, buf: *mut c_char) {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            if let Target::Stdio(f) = target(fp) {
                libc::setbuf(f, buf);
            }
        }
    })
}

/// Fails with `ESPIPE`: request streams cannot seek.
fn espipe() -> c_int {
    set_errno(libc::ESPIPE);
    -1
}

/// `fseek` on a real file; -1/`ESPIPE` otherwise.
///
/// # Safety
/// `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fseek(fp: *mut FCGI_FILE, offset: c_long, whence: c_int) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::fseek(f, offset, whence),
                _ => espipe(),
            }
        }
    })
}

/// `ftell` on a real file, truncated to `int` (libfcgi's prototype); -1/`ESPIPE` otherwise.
///
/// # Safety
/// `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_ftell(fp: *mut FCGI_FILE) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::ftell(f) as c_int,
                _ => espipe(),
            }
        }
    })
}

/// `rewind` on a real file; sets `ESPIPE` otherwise.
///
/// # Safety
/// `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_rewind(fp: *mut FCGI_FILE) {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::rewind(f),
                _ => {
                    espipe();
                }
            }
        }
    })
}

/// `fgetpos` on a real file; -1/`ESPIPE` otherwise.
///
/// # Safety
/// `fp` is NULL or a valid wrapper; `pos` as for `fgetpos`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fgetpos(fp: *mut FCGI_FILE, pos: *mut libc::fpos_t) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::fgetpos(f, pos),
                _ => espipe(),
            }
        }
    })
}

/// `fsetpos` on a real file; -1/`ESPIPE` otherwise.
///
/// # Safety
/// `fp` is NULL or a valid wrapper; `pos` as for `fsetpos`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fsetpos(fp: *mut FCGI_FILE, pos: *const libc::fpos_t) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::fsetpos(f, pos),
                _ => espipe(),
            }
        }
    })
}

/// `fgetc` / `FCGX_GetChar`.
///
/// # Safety
/// `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fgetc(fp: *mut FCGI_FILE) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::fgetc(f),
                Target::Fcgx(s) => FCGX_GetChar(s),
                Target::Neither => EOF,
            }
        }
    })
}

/// `FCGI_fgetc(FCGI_stdin)`.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_getchar() -> c_int {
    // SAFETY: sf(0) is a valid wrapper.
    ffi_boundary!({ unsafe { FCGI_fgetc(sf(0)) } })
}

/// `ungetc` / `FCGX_UnGetChar`.
///
/// # Safety
/// `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_ungetc(c: c_int, fp: *mut FCGI_FILE) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => ungetc(c, f),
                Target::Fcgx(s) => FCGX_UnGetChar(c, s),
                Target::Neither => EOF,
            }
        }
    })
}

unsafe extern "C" {
    fn ungetc(c: c_int, stream: *mut libc::FILE) -> c_int;
}

/// `fgets` / `FCGX_GetLine`.
///
/// # Safety
/// `fp` is NULL or a valid wrapper; `str` is valid for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fgets(
    str: *mut c_char,
    size: c_int,
    fp: *mut FCGI_FILE,
) -> *mut c_char {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::fgets(str, size, f),
                Target::Fcgx(s) => FCGX_GetLine(str, size, s),
                Target::Neither => ptr::null_mut(),
            }
        }
    })
}

/// Reads a line from stdin without its newline (unbounded, like `gets`). NULL if stdin
/// ended before the first byte.
///
/// # Safety
/// `str` must be large enough for the line (the `gets` contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_gets(str: *mut c_char) -> *mut c_char {
    ffi_boundary!({
        if str.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: sf(0) is valid; str is large enough per the contract.
        unsafe {
            let getc: Box<dyn Fn() -> c_int> = match target(sf(0)) {
                Target::Stdio(f) => Box::new(move || libc::fgetc(f)),
                Target::Fcgx(s) => Box::new(move || FCGX_GetChar(s)),
                Target::Neither => return ptr::null_mut(),
            };
            let mut len = 0usize;
            loop {
                let c = getc();
                if c == c_int::from(b'\n') {
                    break;
                }
                if c == EOF {
                    if len == 0 {
                        return ptr::null_mut();
                    }
                    break;
                }
                *str.add(len) = c as u8 as c_char;
                len += 1;
            }
            *str.add(len) = 0;
        }
        str
    })
}

/// `fputc` / `FCGX_PutChar`.
///
/// # Safety
/// `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fputc(c: c_int, fp: *mut FCGI_FILE) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::fputc(c, f),
                Target::Fcgx(s) => FCGX_PutChar(c, s),
                Target::Neither => EOF,
            }
        }
    })
}

/// `FCGI_fputc(c, FCGI_stdout)`.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_putchar(c: c_int) -> c_int {
    // SAFETY: sf(1) is a valid wrapper.
    ffi_boundary!({ unsafe { FCGI_fputc(c, sf(1)) } })
}

/// `fputs` / `FCGX_PutS` (which returns the length written, not 0).
///
/// # Safety
/// `fp` is NULL or a valid wrapper; `str` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fputs(str: *const c_char, fp: *mut FCGI_FILE) -> c_int {
    ffi_boundary!({
        if str.is_null() {
            return EOF;
        }
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::fputs(str, f),
                Target::Fcgx(s) => FCGX_PutS(str, s),
                Target::Neither => EOF,
            }
        }
    })
}

/// `str` and a newline to stdout. Returns the result of writing the newline (10), or a
/// negative value / `EOF`.
///
/// # Safety
/// `str` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_puts(str: *const c_char) -> c_int {
    ffi_boundary!({
        if str.is_null() {
            return EOF;
        }
        // SAFETY: sf(1) is valid; str per the contract.
        unsafe {
            match target(sf(1)) {
                Target::Stdio(f) => {
                    let n = libc::fputs(str, f);
                    if n < 0 {
                        n
                    } else {
                        libc::fputc(c_int::from(b'\n'), f)
                    }
                }
                Target::Fcgx(s) => {
                    let n = FCGX_PutS(str, s);
                    if n < 0 {
                        n
                    } else {
                        FCGX_PutChar(c_int::from(b'\n'), s)
                    }
                }
                Target::Neither => EOF,
            }
        }
    })
}

/// `size * nmemb` as the `int` count the FCGX calls take (0 if zero; capped at INT_MAX).
fn byte_count(size: usize, nmemb: usize) -> c_int {
    size.checked_mul(nmemb)
        .map_or(c_int::MAX, |n| c_int::try_from(n).unwrap_or(c_int::MAX))
}

/// `fread`; on a request stream `FCGX_GetStr(size * nmemb) / size`. `(size_t)EOF` when the
/// wrapper holds nothing.
///
/// # Safety
/// `fp` is NULL or a valid wrapper; `ptr` is valid for `size * nmemb` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fread(
    ptr: *mut c_void,
    size: usize,
    nmemb: usize,
    fp: *mut FCGI_FILE,
) -> usize {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::fread(ptr, size, nmemb, f),
                Target::Fcgx(s) => {
                    let n = byte_count(size, nmemb);
                    if n == 0 {
                        return 0;
                    }
                    // C arithmetic of libfcgi: the int result converted to size_t.
                    (FCGX_GetStr(ptr.cast(), n, s) as isize as usize) / size
                }
                Target::Neither => EOF as isize as usize,
            }
        }
    })
}

/// `fwrite`; on a request stream `FCGX_PutStr(size * nmemb) / size`. `(size_t)EOF` when the
/// wrapper holds nothing.
///
/// # Safety
/// `fp` is NULL or a valid wrapper; `ptr` is valid for `size * nmemb` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fwrite(
    ptr: *mut c_void,
    size: usize,
    nmemb: usize,
    fp: *mut FCGI_FILE,
) -> usize {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::fwrite(ptr, size, nmemb, f),
                Target::Fcgx(s) => {
                    let n = byte_count(size, nmemb);
                    if n == 0 {
                        return 0;
                    }
                    (FCGX_PutStr(ptr.cast_const().cast(), n, s) as isize as usize) / size
                }
                Target::Neither => EOF as isize as usize,
            }
        }
    })
}

/// `feof` / `FCGX_HasSeenEOF`; -1 when the wrapper holds nothing.
///
/// # Safety
/// `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_feof(fp: *mut FCGI_FILE) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::feof(f),
                Target::Fcgx(s) => FCGX_HasSeenEOF(s),
                Target::Neither => -1,
            }
        }
    })
}

/// `ferror` / `FCGX_GetError` (which can be negative); -1 when the wrapper holds nothing.
///
/// # Safety
/// `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_ferror(fp: *mut FCGI_FILE) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::ferror(f),
                Target::Fcgx(s) => FCGX_GetError(s),
                Target::Neither => -1,
            }
        }
    })
}

/// `clearerr` / `FCGX_ClearError`.
///
/// # Safety
/// `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_clearerr(fp: *mut FCGI_FILE) {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::clearerr(f),
                Target::Fcgx(s) => FCGX_ClearError(s),
                Target::Neither => {}
            }
        }
    })
}

/// `tmpfile`, wrapped.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_tmpfile() -> *mut FCGI_FILE {
    // SAFETY: tmpfile has no preconditions.
    ffi_boundary!({ wrap(unsafe { libc::tmpfile() }) })
}

/// `fileno` of a real file; -1 otherwise (errno untouched).
///
/// # Safety
/// `fp` is NULL or a valid wrapper.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fileno(fp: *mut FCGI_FILE) -> c_int {
    ffi_boundary!({
        // SAFETY: forwarded contract.
        unsafe {
            match target(fp) {
                Target::Stdio(f) => libc::fileno(f),
                _ => -1,
            }
        }
    })
}

/// `fdopen`, wrapped.
///
/// # Safety
/// `mode` as for `fdopen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fdopen(fd: c_int, mode: *const c_char) -> *mut FCGI_FILE {
    // SAFETY: forwarded contract.
    ffi_boundary!({ wrap(unsafe { libc::fdopen(fd, mode) }) })
}

/// `popen`, wrapped.
///
/// # Safety
/// Arguments as for `popen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_popen(cmd: *const c_char, type_: *const c_char) -> *mut FCGI_FILE {
    // SAFETY: forwarded contract.
    ffi_boundary!({ wrap(unsafe { libc::popen(cmd, type_) }) })
}

/// `pclose` of a wrapped pipe (freeing the wrapper). A request stream gives `EOF` and
/// is left alone.
///
/// # Safety
/// `fp` is NULL or a valid wrapper, not used after.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_pclose(fp: *mut FCGI_FILE) -> c_int {
    ffi_boundary!({
        if fp.is_null() {
            return EOF;
        }
        // SAFETY: valid per the contract.
        unsafe {
            let n = match target(fp) {
                Target::Stdio(f) => {
                    (*fp).stdio_stream = ptr::null_mut();
                    libc::pclose(f)
                }
                Target::Fcgx(_) => return EOF,
                Target::Neither => EOF,
            };
            release(fp);
            n
        }
    })
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)] // tests call the exports with valid arguments
mod tests {
    use super::*;

    /// NULL where libfcgi dereferenced it: a failure value, no crash.
    #[test]
    fn null_files_give_failure_values() {
        let n = ptr::null_mut::<FCGI_FILE>();
        let mut buf = [0 as c_char; 8];
        let mut pos: libc::fpos_t = unsafe { std::mem::zeroed() };
        unsafe {
            assert_eq!(FCGI_fclose(n), EOF);
            assert_eq!(FCGI_pclose(n), EOF);
            assert!(FCGI_freopen(c"/dev/null".as_ptr(), c"r".as_ptr(), n).is_null());
            assert_eq!(FCGI_setvbuf(n, ptr::null_mut(), libc::_IONBF, 0), -1);
            FCGI_setbuf(n, ptr::null_mut());
            assert_eq!(FCGI_fseek(n, 0, libc::SEEK_SET), -1);
            assert_eq!(FCGI_ftell(n), -1);
            FCGI_rewind(n);
            assert_eq!(FCGI_fgetpos(n, &mut pos), -1);
            assert_eq!(FCGI_fsetpos(n, &pos), -1);
            assert_eq!(FCGI_fgetc(n), EOF);
            assert_eq!(FCGI_ungetc(1, n), EOF);
            assert!(FCGI_fgets(buf.as_mut_ptr(), 8, n).is_null());
            assert_eq!(FCGI_fputc(1, n), EOF);
            assert_eq!(FCGI_fputs(c"x".as_ptr(), n), EOF);
            assert_eq!(FCGI_fputs(ptr::null(), n), EOF);
            assert_eq!(FCGI_fread(buf.as_mut_ptr().cast(), 1, 1, n), usize::MAX);
            assert_eq!(FCGI_fwrite(buf.as_mut_ptr().cast(), 1, 1, n), usize::MAX);
            assert_eq!(FCGI_feof(n), -1);
            assert_eq!(FCGI_ferror(n), -1);
            FCGI_clearerr(n);
            assert_eq!(FCGI_fileno(n), -1);
            assert!(FCGI_gets(ptr::null_mut()).is_null());
            assert_eq!(FCGI_puts(ptr::null()), EOF);
        }
    }

    #[test]
    fn byte_count_caps_at_int_max() {
        assert_eq!(byte_count(3, 4), 12);
        assert_eq!(byte_count(0, 4), 0);
        assert_eq!(byte_count(usize::MAX, 2), c_int::MAX);
        assert_eq!(byte_count(1 << 40, 1), c_int::MAX);
    }
}
