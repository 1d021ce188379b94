//! The C structures of the libfcgi ABI, `#[repr(C)]`, with their sizes and field offsets
//! asserted at compile time (x86_64 / LP64 values from the classic library; other 64-bit
//! targets share them). `tests/c/layout.c` asserts the same numbers from C, against our
//! headers and against the classic ones.

use std::ffi::{c_char, c_int, c_void};
use std::mem::{offset_of, size_of};

/// Fill procedure of a reader stream (`fillBuffProc`).
pub(crate) type FillProc = unsafe extern "C" fn(stream: *mut FCGX_Stream);
/// Empty procedure of a writer stream (`emptyBuffProc`).
pub(crate) type EmptyProc = unsafe extern "C" fn(stream: *mut FCGX_Stream, do_close: c_int);

/// `FCGX_Stream`: one input or output stream of a request, with its buffer pointers public.
///
/// `[rdNext, stop)` are the bytes readable now (reader); `[wrNext, stop)` is the free output
/// space (writer). Programs read and even write these fields, so their meaning is the
/// classic one. Private state hangs off `data`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct FCGX_Stream {
    pub rdNext: *mut u8,
    pub wrNext: *mut u8,
    pub stop: *mut u8,
    pub stopUnget: *mut u8,
    pub isReader: c_int,
    pub isClosed: c_int,
    pub wasFCloseCalled: c_int,
    pub FCGI_errno: c_int,
    pub fillBuffProc: Option<FillProc>,
    pub emptyBuffProc: Option<EmptyProc>,
    pub data: *mut c_void,
}

/// `FCGX_Request`: allocated by the program (often on its stack), 80 bytes.
///
/// Everything the library keeps beyond these fields lives behind `paramsPtr`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct FCGX_Request {
    pub requestId: c_int,
    pub role: c_int,
    pub in_: *mut FCGX_Stream,
    pub out: *mut FCGX_Stream,
    pub err: *mut FCGX_Stream,
    pub envp: *mut *mut c_char,
    pub paramsPtr: *mut c_void,
    pub ipcFd: c_int,
    pub isBeginProcessed: c_int,
    pub keepConnection: c_int,
    pub appStatus: c_int,
    pub nWriters: c_int,
    pub flags: c_int,
    pub listen_sock: c_int,
    pub detached: c_int,
}

/// `FCGI_FILE`: a real `FILE` or a request stream; `_fcgi_sF` is an array of three.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct FCGI_FILE {
    pub stdio_stream: *mut libc::FILE,
    pub fcgx_stream: *mut FCGX_Stream,
}

impl FCGI_FILE {
    /// Both pointers NULL: the state of `_fcgi_sF` before the first `FCGI_Accept`.
    pub(crate) const EMPTY: FCGI_FILE = FCGI_FILE {
        stdio_stream: std::ptr::null_mut(),
        fcgx_stream: std::ptr::null_mut(),
    };
}

/// Stream error codes (`FCGX_GetError` values below zero), pinned to libfcgi's numbers.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // the full pinned set of libfcgi codes, not all of them produced here
pub(crate) enum FcgxError {
    /// `FCGX_UNSUPPORTED_VERSION`: a record with a version other than 1.
    UnsupportedVersion = -2,
    /// `FCGX_PROTOCOL_ERROR`: EOF mid-stream, an aborted request, a record type mismatch.
    Protocol = -3,
    /// `FCGX_PARAMS_ERROR`: malformed name-value pairs.
    Params = -4,
    /// `FCGX_CALL_SEQ_ERROR`: a call out of sequence (e.g. `FCGX_StartFilterData`).
    CallSeq = -5,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<FCGX_Stream>() == 72);
    assert!(offset_of!(FCGX_Stream, rdNext) == 0);
    assert!(offset_of!(FCGX_Stream, wrNext) == 8);
    assert!(offset_of!(FCGX_Stream, stop) == 16);
    assert!(offset_of!(FCGX_Stream, stopUnget) == 24);
    assert!(offset_of!(FCGX_Stream, isReader) == 32);
    assert!(offset_of!(FCGX_Stream, isClosed) == 36);
    assert!(offset_of!(FCGX_Stream, wasFCloseCalled) == 40);
    assert!(offset_of!(FCGX_Stream, FCGI_errno) == 44);
    assert!(offset_of!(FCGX_Stream, fillBuffProc) == 48);
    assert!(offset_of!(FCGX_Stream, emptyBuffProc) == 56);
    assert!(offset_of!(FCGX_Stream, data) == 64);

    assert!(size_of::<FCGX_Request>() == 80);
    assert!(offset_of!(FCGX_Request, requestId) == 0);
    assert!(offset_of!(FCGX_Request, role) == 4);
    assert!(offset_of!(FCGX_Request, in_) == 8);
    assert!(offset_of!(FCGX_Request, out) == 16);
    assert!(offset_of!(FCGX_Request, err) == 24);
    assert!(offset_of!(FCGX_Request, envp) == 32);
    assert!(offset_of!(FCGX_Request, paramsPtr) == 40);
    assert!(offset_of!(FCGX_Request, ipcFd) == 48);
    assert!(offset_of!(FCGX_Request, isBeginProcessed) == 52);
    assert!(offset_of!(FCGX_Request, keepConnection) == 56);
    assert!(offset_of!(FCGX_Request, appStatus) == 60);
    assert!(offset_of!(FCGX_Request, nWriters) == 64);
    assert!(offset_of!(FCGX_Request, flags) == 68);
    assert!(offset_of!(FCGX_Request, listen_sock) == 72);
    assert!(offset_of!(FCGX_Request, detached) == 76);

    assert!(size_of::<FCGI_FILE>() == 16);
    assert!(offset_of!(FCGI_FILE, stdio_stream) == 0);
    assert!(offset_of!(FCGI_FILE, fcgx_stream) == 8);
    assert!(size_of::<[FCGI_FILE; 3]>() == 48);
};
