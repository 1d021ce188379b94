//! `FCGX_Stream`: the buffered byte streams of the C API, and the `FCGX_*` functions on them.
//!
//! The C-visible part is the classic one: `rdNext`/`wrNext`/`stop`/`stopUnget` bound the
//! buffer, and the stream functions work only through those fields and the two procedure
//! pointers, exactly as libfcgi's do, so streams that programs build by hand (mocks with
//! their own procedures) keep working. Streams made here have our `fill_buff`/`empty_buff`
//! procedures and a [`StreamData`] behind `data`, which moves bytes through a [`StreamIo`].
//!
//! [`StreamIo`] is the seam to the rest of the crate: the server core's request streams
//! implement it (`super::request`), and so does [`RecordWriter`], the plain record writer
//! behind `FCGX_CreateWriter` that `cgi-fcgi` uses.
//!
//! Out of scope: record parsing (the server core and `protocol` do it) and request state.

use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::ptr;

use super::types::{FCGX_Request, FCGX_Stream, FcgxError};
use super::{ffi_boundary, stream_error_code, EOF};
use crate::protocol::{encode_stream_end, Header, RecordType, HEADER_LEN};

/// The byte source or sink behind one `FCGX_Stream`.
///
/// A reader implements [`fill`](StreamIo::fill) (and, for a Filter request's input,
/// [`start_filter_data`](StreamIo::start_filter_data)); a writer implements
/// [`empty`](StreamIo::empty). The stream layer owns the buffer and all C-visible state;
/// an implementation only moves bytes. Errors are reported to C by `FCGX_GetError` as the
/// errno of an OS error, or as the FCGX code of an error made with
/// [`fcgx_error`](super::fcgx_error) (anything else counts as `FCGX_PROTOCOL_ERROR`).
pub(crate) trait StreamIo: Send {
    /// Reader: copies the next bytes of the stream's content into `buf`, waiting until at
    /// least one is available. `Ok(0)` means the stream has ended (its empty record came).
    /// On an error nothing may be consumed: the call is retried later if the program
    /// clears the error (the EAGAIN pattern of non-blocking readers).
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let _ = buf;
        Err(super::fcgx_error(FcgxError::CallSeq))
    }

    /// Writer: sends `data` (when not empty) as one record of the stream, then, when
    /// `close` is set, ends the stream (its empty record, and what else the request needs).
    /// All or nothing: on error the stream is closed and the bytes count as unsent.
    fn empty(&mut self, data: &[u8], close: bool) -> io::Result<()> {
        let _ = (data, close);
        Err(super::fcgx_error(FcgxError::CallSeq))
    }

    /// Reader: for a Filter request whose `FCGI_STDIN` has been read to its end, switches
    /// to reading `FCGI_DATA` and returns true; otherwise returns false and changes nothing.
    fn start_filter_data(&mut self) -> bool {
        false
    }
}

/// A stream's source or sink: a core request's input or output (held inline, no
/// allocation of its own), or any other.
pub(crate) enum Io {
    Input(super::request::CoreInput),
    Output(super::request::CoreOutput),
    Other(Box<dyn StreamIo>),
}

impl Io {
    fn get(&mut self) -> &mut dyn StreamIo {
        match self {
            Io::Input(i) => i,
            Io::Output(o) => o,
            Io::Other(o) => o.as_mut(),
        }
    }
}

/// Private state of the streams made here, behind `FCGX_Stream::data`.
struct StreamData {
    /// The buffer; `rdNext`, `wrNext`, `stop` and `stopUnget` point into it. Boxed, so it
    /// does not move.
    buf: Box<[u8]>,
    io: Io,
    /// The request whose `appStatus` `FCGX_SetExitStatus` sets (may be NULL).
    request: *mut FCGX_Request,
    /// The request made by `FCGX_CreateWriter`: only kept, so that it is freed with the
    /// stream (libfcgi leaked it).
    _owned_request: Option<Box<FCGX_Request>>,
}

/// Largest writer buffer (header included), as libfcgi: 65536 bytes.
const MAX_BUFFLEN: usize = 65536;
/// Smallest writer buffer (header included), as libfcgi: 32 bytes.
const MIN_BUFFLEN: usize = 32;
/// Buffer of a reader, as libfcgi's.
pub(crate) const READER_BUFFLEN: usize = 8192;

/// The content capacity of a writer asked for `bufflen` bytes: libfcgi rounds
/// `min(max(bufflen, 32), 65536)` up to a multiple of 8 and keeps 8 bytes for the record
/// header, so `FCGI_STDOUT` (8192) carries at most 8184 bytes a record, stderr (512) 504.
pub(crate) fn writer_capacity(bufflen: c_int) -> usize {
    let len = usize::try_from(bufflen)
        .unwrap_or(0)
        .clamp(MIN_BUFFLEN, MAX_BUFFLEN);
    len.next_multiple_of(8) - HEADER_LEN
}

/// A new reader stream over `io`, with a `bufflen`-byte buffer, belonging to `request`.
/// Free it with [`free_stream`].
pub(crate) fn new_reader(io: Io, bufflen: usize, request: *mut FCGX_Request) -> *mut FCGX_Stream {
    new_stream(io, bufflen.max(1), request, None, true)
}

/// A new writer stream over `io`, buffering what [`writer_capacity`] says for `bufflen`,
/// belonging to `request`. Free it with [`free_stream`].
pub(crate) fn new_writer(
    io: Io,
    bufflen: c_int,
    request: *mut FCGX_Request,
    owned_request: Option<Box<FCGX_Request>>,
) -> *mut FCGX_Stream {
    new_stream(io, writer_capacity(bufflen), request, owned_request, false)
}

fn new_stream(
    io: Io,
    capacity: usize,
    request: *mut FCGX_Request,
    owned_request: Option<Box<FCGX_Request>>,
    is_reader: bool,
) -> *mut FCGX_Stream {
    let mut data = StreamData {
        buf: take_buffer(capacity),
        io,
        request,
        _owned_request: owned_request,
    };
    let base = data.buf.as_mut_ptr();
    // SAFETY: capacity is the buffer's length, so base + capacity is its end.
    let end = unsafe { base.add(capacity) };
    let stream = if is_reader {
        // Nothing readable yet: rdNext == stop. wrNext == stop keeps PutChar off the buffer.
        FCGX_Stream {
            rdNext: base,
            wrNext: base,
            stop: base,
            stopUnget: base,
            isReader: 1,
            isClosed: 0,
            wasFCloseCalled: 0,
            FCGI_errno: 0,
            fillBuffProc: Some(fill_buff),
            emptyBuffProc: None,
            data: ptr::null_mut(),
        }
    } else {
        // The whole buffer is free: [wrNext, stop). rdNext == stop keeps GetChar off it.
        FCGX_Stream {
            rdNext: end,
            wrNext: base,
            stop: end,
            stopUnget: ptr::null_mut(),
            isReader: 0,
            isClosed: 0,
            wasFCloseCalled: 0,
            FCGI_errno: 0,
            fillBuffProc: None,
            emptyBuffProc: Some(empty_buff),
            data: ptr::null_mut(),
        }
    };
    // One allocation for the stream and its state (the buffer is moved, not copied).
    let both = Box::into_raw(Box::new(OurStream { stream, data }));
    // SAFETY: `both` is a live allocation; its `data` lives as long as its `stream`.
    unsafe {
        (*both).stream.data = ptr::addr_of_mut!((*both).data).cast::<c_void>();
    }
    both.cast::<FCGX_Stream>()
}

/// A stream made by [`new_stream`] and its state, in one allocation: the `FCGX_Stream`
/// comes first, so a pointer to it is a pointer to the whole.
#[repr(C)]
struct OurStream {
    stream: FCGX_Stream,
    data: StreamData,
}

/// Frees a stream made by this module (and its buffer and owned request). Streams with
/// foreign procedures (built by the program) are left alone. NULL is ignored.
///
/// # Safety
/// `stream` is NULL or a stream pointer not used again afterwards.
pub(crate) unsafe fn free_stream(stream: *mut FCGX_Stream) {
    if stream.is_null() {
        return;
    }
    // SAFETY: non-NULL and valid per the contract.
    if unsafe { our_data(stream) }.is_none() {
        return;
    }
    // SAFETY: our streams are the first field of an OurStream Box-allocated by new_stream.
    let both = unsafe { Box::from_raw(stream.cast::<OurStream>()) };
    give_buffer(both.data.buf);
}

/// Stream buffers kept by this thread for the next request's streams: every request makes
/// three (8 KiB, 8 KiB and 512 bytes), and zeroing fresh ones cost more than the rest of
/// a small request's work. A reused buffer holds the old request's bytes, outside the
/// part the stream's pointers expose.
const BUFFERS_KEPT: usize = 6;

thread_local! {
    static BUFFERS: std::cell::RefCell<Vec<Box<[u8]>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn take_buffer(capacity: usize) -> Box<[u8]> {
    BUFFERS
        .try_with(|b| {
            let mut b = b.borrow_mut();
            let i = b.iter().position(|buf| buf.len() == capacity)?;
            Some(b.swap_remove(i))
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0u8; capacity].into_boxed_slice())
}

fn give_buffer(buf: Box<[u8]>) {
    let _ = BUFFERS.try_with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < BUFFERS_KEPT {
            b.push(buf);
        }
    });
}

/// The private state of a stream made here; None for streams the program built itself.
///
/// # Safety
/// `stream` points to a valid `FCGX_Stream`.
unsafe fn our_data<'a>(stream: *mut FCGX_Stream) -> Option<&'a mut StreamData> {
    // SAFETY: valid per the contract.
    let s = unsafe { &*stream };
    let ours = match (s.fillBuffProc, s.emptyBuffProc) {
        (Some(fill), None) => ptr::fn_addr_eq(fill, fill_buff as super::types::FillProc),
        (None, Some(empty)) => ptr::fn_addr_eq(empty, empty_buff as super::types::EmptyProc),
        _ => false,
    };
    if ours && !s.data.is_null() {
        // SAFETY: our procedures are installed only by new_stream, with data a StreamData.
        Some(unsafe { &mut *s.data.cast::<StreamData>() })
    } else {
        None
    }
}

/// Records a stream error: the first error code is kept; the stream is closed. (libfcgi
/// left `isClosed` alone when a code was already set, which can make `FCGX_GetStr` spin
/// after a program clears `isClosed` only; closing always avoids that.)
///
/// # Safety
/// `stream` points to a valid `FCGX_Stream`.
unsafe fn set_error(stream: *mut FCGX_Stream, code: c_int) {
    // SAFETY: valid per the contract.
    let s = unsafe { &mut *stream };
    if s.FCGI_errno == 0 {
        s.FCGI_errno = code;
    }
    s.isClosed = 1;
}

/// `fillBuffProc` of our readers: refills the buffer from the [`StreamIo`]. At the end of
/// the stream it marks the stream closed; on an error it records it and leaves the buffer
/// pointers as they were, so a retry after clearing the error is possible.
unsafe extern "C" fn fill_buff(stream: *mut FCGX_Stream) {
    ffi_boundary!({
        if stream.is_null() {
            return;
        }
        // SAFETY: called by the stream functions (or the program) with a valid stream.
        let Some(data) = (unsafe { our_data(stream) }) else {
            return;
        };
        let result = data.io.get().fill(&mut data.buf);
        let base = data.buf.as_mut_ptr();
        // SAFETY: stream is valid; n <= buf.len() so base + n stays in the buffer.
        unsafe {
            match result {
                Ok(0) => {
                    (*stream).stop = (*stream).rdNext;
                    (*stream).wrNext = (*stream).stop;
                    (*stream).isClosed = 1;
                }
                Ok(n) => {
                    let n = n.min(data.buf.len());
                    (*stream).rdNext = base;
                    (*stream).stopUnget = base;
                    (*stream).stop = base.add(n);
                    (*stream).wrNext = (*stream).stop;
                }
                Err(e) => set_error(stream, stream_error_code(&e)),
            }
        }
    })
}

/// `emptyBuffProc` of our writers: hands the buffered bytes (one record) and, with
/// `doClose`, the end of the stream to the [`StreamIo`]. On success the buffer is empty
/// again; on error the stream is closed and the buffer stays full, so later writes fail.
unsafe extern "C" fn empty_buff(stream: *mut FCGX_Stream, do_close: c_int) {
    ffi_boundary!({
        if stream.is_null() {
            return;
        }
        // SAFETY: called by the stream functions (or the program) with a valid stream.
        let Some(data) = (unsafe { our_data(stream) }) else {
            return;
        };
        let base = data.buf.as_mut_ptr();
        // SAFETY: wrNext points into our buffer, between base and its end.
        let used = unsafe { (*stream).wrNext.offset_from(base) };
        let used = usize::try_from(used).unwrap_or(0).min(data.buf.len());
        if used == 0 && do_close == 0 {
            return;
        }
        let result = data.io.get().empty(&data.buf[..used], do_close != 0);
        // SAFETY: stream is valid; base + len is the buffer's end.
        unsafe {
            match result {
                Ok(()) => {
                    (*stream).wrNext = base;
                    (*stream).stop = base.add(data.buf.len());
                    (*stream).rdNext = (*stream).stop;
                }
                Err(e) => set_error(stream, stream_error_code(&e)),
            }
        }
    })
}

/// The private state of `stream` if it is one of our open writers with an empty buffer
/// (nothing buffered, so whole buffers can go straight to the backend in order).
///
/// # Safety
/// `stream` points to a valid `FCGX_Stream`.
unsafe fn direct_writer<'a>(stream: *mut FCGX_Stream) -> Option<&'a mut StreamData> {
    // SAFETY: valid per the contract.
    let s = unsafe { &*stream };
    if s.isReader != 0 || s.isClosed != 0 {
        return None;
    }
    // SAFETY: valid per the contract.
    let data = unsafe { our_data(stream) }?;
    let base = data.buf.as_mut_ptr();
    // SAFETY: base + len is the end of the buffer.
    let end = unsafe { base.add(data.buf.len()) };
    (s.wrNext == base && s.stop == end).then_some(data)
}

/// Bytes between two pointers of one buffer (0 if `to` is before `from`).
///
/// # Safety
/// Both point into (or one past) the same buffer.
unsafe fn span(from: *const u8, to: *const u8) -> usize {
    // SAFETY: same buffer per the contract.
    usize::try_from(unsafe { to.offset_from(from) }).unwrap_or(0)
}

/// Reads one byte from `stream`: 0..=255, or `EOF` at the end of the stream, on error, on
/// a writer or a NULL stream.
///
/// # Safety
/// `stream` is NULL or a valid `FCGX_Stream`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_GetChar(stream: *mut FCGX_Stream) -> c_int {
    ffi_boundary!(EOF, {
        if stream.is_null() {
            return EOF;
        }
        // SAFETY: stream is valid; rdNext < stop are in its buffer; fillBuffProc is the
        // stream's own procedure.
        unsafe {
            let s = stream;
            if (*s).isClosed != 0 || (*s).isReader == 0 {
                return EOF;
            }
            if (*s).rdNext != (*s).stop {
                let c = *(*s).rdNext;
                (*s).rdNext = (*s).rdNext.add(1);
                return c_int::from(c);
            }
            let Some(fill) = (*s).fillBuffProc else {
                return EOF;
            };
            fill(s);
            if (*s).isClosed != 0 {
                return EOF;
            }
            (*s).stopUnget = (*s).rdNext;
            if (*s).rdNext != (*s).stop {
                let c = *(*s).rdNext;
                (*s).rdNext = (*s).rdNext.add(1);
                return c_int::from(c);
            }
            EOF
        }
    })
}

/// Reads up to `n` bytes into `str`, waiting for more until `n` are read, the stream ends
/// or fails. Returns the number read; 0 when `n <= 0`, on a writer, a closed or NULL stream.
///
/// # Safety
/// `stream` is NULL or a valid stream; `str` is valid for `n` bytes of writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_GetStr(
    str: *mut c_char,
    n: c_int,
    stream: *mut FCGX_Stream,
) -> c_int {
    ffi_boundary!({
        if stream.is_null() || str.is_null() || n <= 0 {
            return 0;
        }
        let want = n as usize;
        let mut moved = 0usize;
        let out = str.cast::<u8>();
        // SAFETY: stream is valid and its [rdNext, stop) readable; out has n bytes.
        unsafe {
            let s = stream;
            if (*s).isClosed != 0 || (*s).isReader == 0 {
                return 0;
            }
            loop {
                let avail = span((*s).rdNext, (*s).stop);
                if avail > 0 {
                    let m = avail.min(want - moved);
                    ptr::copy_nonoverlapping((*s).rdNext, out.add(moved), m);
                    (*s).rdNext = (*s).rdNext.add(m);
                    moved += m;
                    if moved == want {
                        return moved as c_int;
                    }
                }
                if (*s).isClosed != 0 || (*s).isReader == 0 {
                    return moved as c_int;
                }
                let Some(fill) = (*s).fillBuffProc else {
                    return moved as c_int;
                };
                fill(s);
                if (*s).isClosed != 0 {
                    return moved as c_int;
                }
                (*s).stopUnget = (*s).rdNext;
            }
        }
    })
}

/// Reads a line: at most `n - 1` bytes, stopping after a newline (which is kept), then a
/// NUL. Returns `str`, or NULL if the stream ended before the first byte. `n <= 0`
/// returns NULL without writing (libfcgi wrote one byte there).
///
/// # Safety
/// `stream` is NULL or a valid stream; `str` is valid for `n` bytes of writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_GetLine(
    str: *mut c_char,
    n: c_int,
    stream: *mut FCGX_Stream,
) -> *mut c_char {
    ffi_boundary!({
        if str.is_null() || n <= 0 {
            return ptr::null_mut();
        }
        let mut len = 0usize;
        let room = (n - 1) as usize;
        // SAFETY: str has n bytes; len < n - 1 while writing bytes, len <= n - 1 for the NUL.
        unsafe {
            while len < room {
                let c = FCGX_GetChar(stream);
                if c == EOF {
                    if len == 0 {
                        return ptr::null_mut();
                    }
                    break;
                }
                *str.add(len) = c as u8 as c_char;
                len += 1;
                if c == c_int::from(b'\n') {
                    break;
                }
            }
            *str.add(len) = 0;
        }
        str
    })
}

/// Pushes back `c` (one byte just read): returns `c`, or `EOF` if `c` is `EOF`, the stream
/// is closed, a writer, or nothing was read from the current buffer.
///
/// # Safety
/// `stream` is NULL or a valid stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_UnGetChar(c: c_int, stream: *mut FCGX_Stream) -> c_int {
    ffi_boundary!(EOF, {
        if stream.is_null() {
            return EOF;
        }
        // SAFETY: stream is valid; stopUnget <= rdNext - 1 is in its buffer.
        unsafe {
            let s = stream;
            if c == EOF || (*s).isClosed != 0 || (*s).isReader == 0 || (*s).rdNext == (*s).stopUnget
            {
                return EOF;
            }
            (*s).rdNext = (*s).rdNext.sub(1);
            *(*s).rdNext = c as u8;
        }
        c
    })
}

/// `EOF` once the stream has ended or failed (it is closed), else 0. NULL gives `EOF`.
///
/// # Safety
/// `stream` is NULL or a valid stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_HasSeenEOF(stream: *mut FCGX_Stream) -> c_int {
    ffi_boundary!(EOF, {
        // SAFETY: valid or NULL per the contract.
        match unsafe { stream.as_ref() } {
            Some(s) if s.isClosed == 0 => 0,
            _ => EOF,
        }
    })
}

/// Writes one byte: returns it as `unsigned char`, or `EOF` when the buffer is full and
/// the stream is closed, a reader, or NULL.
///
/// # Safety
/// `stream` is NULL or a valid stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_PutChar(c: c_int, stream: *mut FCGX_Stream) -> c_int {
    ffi_boundary!(EOF, {
        if stream.is_null() {
            return EOF;
        }
        // SAFETY: stream is valid; [wrNext, stop) is writable buffer space.
        unsafe {
            let s = stream;
            if (*s).wrNext != (*s).stop {
                *(*s).wrNext = c as u8;
                (*s).wrNext = (*s).wrNext.add(1);
                return c_int::from(c as u8);
            }
            if (*s).isClosed != 0 || (*s).isReader != 0 {
                return EOF;
            }
            let Some(empty) = (*s).emptyBuffProc else {
                return EOF;
            };
            empty(s, 0);
            if (*s).wrNext != (*s).stop {
                *(*s).wrNext = c as u8;
                (*s).wrNext = (*s).wrNext.add(1);
                return c_int::from(c as u8);
            }
            EOF
        }
    })
}

/// Writes `n` bytes of `str`: returns `n`, or -1 if the stream is closed, a reader or NULL
/// while bytes remain to be written. `n == 0` returns 0; `n < 0` returns -1.
///
/// # Safety
/// `stream` is NULL or a valid stream; `str` is valid for `n` bytes of reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_PutStr(
    str: *const c_char,
    n: c_int,
    stream: *mut FCGX_Stream,
) -> c_int {
    ffi_boundary!({
        if n == 0 {
            return 0;
        }
        if n < 0 || str.is_null() || stream.is_null() {
            return -1;
        }
        let want = n as usize;
        let src = str.cast::<u8>();
        let mut moved = 0usize;
        // SAFETY: stream is valid, [wrNext, stop) writable; src has n readable bytes.
        unsafe {
            let s = stream;
            loop {
                // Whole buffers of our own streams go to the backend without the copy into
                // the stream buffer: the same records, one memcpy less.
                if let Some(data) = direct_writer(s) {
                    let cap = data.buf.len();
                    // A request's own output takes all the whole buffers in one go (it cuts
                    // its own records, up to 64 KiB each, and gathers them into few system
                    // calls); other writers one buffer, one record, at a time.
                    let step = match data.io {
                        Io::Output(_) => (want - moved) / cap * cap,
                        _ => cap,
                    };
                    while step > 0 && want - moved >= step {
                        let chunk = std::slice::from_raw_parts(src.add(moved), step);
                        if let Err(e) = data.io.get().empty(chunk, false) {
                            set_error(s, stream_error_code(&e));
                            return -1;
                        }
                        moved += step;
                    }
                    if moved == want {
                        return n;
                    }
                }
                let room = span((*s).wrNext, (*s).stop);
                if room > 0 {
                    let m = room.min(want - moved);
                    ptr::copy_nonoverlapping(src.add(moved), (*s).wrNext, m);
                    (*s).wrNext = (*s).wrNext.add(m);
                    moved += m;
                    if moved == want {
                        return n;
                    }
                }
                if (*s).isClosed != 0 || (*s).isReader != 0 {
                    return -1;
                }
                let Some(empty) = (*s).emptyBuffProc else {
                    return -1;
                };
                empty(s, 0);
                if (*s).isClosed == 0 && (*s).wrNext == (*s).stop {
                    // A procedure that made no room and did not fail: give up, don't spin.
                    return -1;
                }
            }
        }
    })
}

/// Writes the NUL-terminated `str`: its length, or -1.
///
/// # Safety
/// `stream` is NULL or a valid stream; `str` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_PutS(str: *const c_char, stream: *mut FCGX_Stream) -> c_int {
    ffi_boundary!({
        if str.is_null() {
            return -1;
        }
        // SAFETY: NUL-terminated per the contract.
        let len = unsafe { libc::strlen(str) };
        let Ok(len) = c_int::try_from(len) else {
            return -1;
        };
        // SAFETY: forwarded contract.
        unsafe { FCGX_PutStr(str, len, stream) }
    })
}

/// Sends the buffered output now (one record). 0, or -1 if the stream failed doing so.
/// Readers, closed and NULL streams give 0.
///
/// # Safety
/// `stream` is NULL or a valid stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_FFlush(stream: *mut FCGX_Stream) -> c_int {
    ffi_boundary!({
        // SAFETY: valid or NULL per the contract; emptyBuffProc is the stream's own.
        unsafe {
            let Some(s) = stream.as_ref() else {
                return 0;
            };
            if s.isClosed != 0 || s.isReader != 0 {
                return 0;
            }
            let Some(empty) = s.emptyBuffProc else {
                return 0;
            };
            empty(stream, 0);
            if (*stream).isClosed != 0 {
                -1
            } else {
                0
            }
        }
    })
}

/// Closes the stream (once): a writer flushes and ends its stream. Returns 0, or `EOF`
/// if the stream has an error. NULL gives 0.
///
/// # Safety
/// `stream` is NULL or a valid stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_FClose(stream: *mut FCGX_Stream) -> c_int {
    ffi_boundary!({
        if stream.is_null() {
            return 0;
        }
        // SAFETY: stream is valid; emptyBuffProc is the stream's own.
        unsafe {
            let s = stream;
            if (*s).wasFCloseCalled == 0 {
                if (*s).isReader == 0 {
                    if let Some(empty) = (*s).emptyBuffProc {
                        empty(s, 1);
                    }
                }
                (*s).wasFCloseCalled = 1;
                (*s).isClosed = 1;
                if (*s).isReader != 0 {
                    (*s).stop = (*s).rdNext;
                    (*s).wrNext = (*s).stop;
                } else {
                    (*s).stop = (*s).wrNext;
                    (*s).rdNext = (*s).stop;
                }
            }
            if (*s).FCGI_errno == 0 {
                0
            } else {
                EOF
            }
        }
    })
}

/// The stream's first error: 0, an errno value (> 0) or an FCGX code (< 0).
/// NULL gives `FCGX_CALL_SEQ_ERROR`.
///
/// # Safety
/// `stream` is NULL or a valid stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_GetError(stream: *mut FCGX_Stream) -> c_int {
    ffi_boundary!({
        // SAFETY: valid or NULL per the contract.
        match unsafe { stream.as_ref() } {
            Some(s) => s.FCGI_errno,
            None => FcgxError::CallSeq as c_int,
        }
    })
}

/// Forgets the stream's error. The stream stays closed (as in libfcgi).
///
/// # Safety
/// `stream` is NULL or a valid stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_ClearError(stream: *mut FCGX_Stream) {
    ffi_boundary!({
        // SAFETY: valid or NULL per the contract.
        if let Some(s) = unsafe { stream.as_mut() } {
            s.FCGI_errno = 0;
        }
    })
}

/// Sets the exit status (`appStatus`, sent in `FCGI_END_REQUEST`) of the request that
/// owns `stream`. Streams built by the program, and NULL, are ignored.
///
/// # Safety
/// `stream` is NULL or a valid stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_SetExitStatus(status: c_int, stream: *mut FCGX_Stream) {
    ffi_boundary!({
        if stream.is_null() {
            return;
        }
        // SAFETY: stream valid; the request outlives its streams (FCGX_Free frees them).
        unsafe {
            if let Some(data) = our_data(stream) {
                if let Some(req) = data.request.as_mut() {
                    req.appStatus = status;
                }
            }
        }
    })
}

/// Filter role: once `FCGI_STDIN` has been read to its end, switches the input stream to
/// `FCGI_DATA`. 0 on success; otherwise -1 and the stream error `FCGX_CALL_SEQ_ERROR`.
///
/// # Safety
/// `stream` is NULL or a valid stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_StartFilterData(stream: *mut FCGX_Stream) -> c_int {
    ffi_boundary!({
        if stream.is_null() {
            return -1;
        }
        // SAFETY: stream is valid.
        unsafe {
            let s = stream;
            let switched = (*s).isReader != 0
                && (*s).isClosed != 0
                && our_data(s).is_some_and(|data| data.io.get().start_filter_data());
            if !switched {
                set_error(s, FcgxError::CallSeq as c_int);
                return -1;
            }
            (*s).isClosed = 0;
            (*s).stop = (*s).rdNext;
            (*s).wrNext = (*s).stop;
        }
        0
    })
}

/// Writes records of one stream straight to a file descriptor: the writer behind
/// `FCGX_CreateWriter` (cgi-fcgi's `FCGI_PARAMS`). Each flush is one record padded to a
/// multiple of 8 bytes; closing adds the stream's empty record, except for an `FCGI_STDERR`
/// stream that never carried anything (libfcgi's rule).
pub(crate) struct RecordWriter {
    fd: c_int,
    request_id: u16,
    record_type: RecordType,
    anything_written: bool,
}

impl RecordWriter {
    /// A writer of `record_type` records for `request_id` on `fd` (not owned: not closed).
    pub(crate) fn new(fd: c_int, request_id: u16, record_type: RecordType) -> RecordWriter {
        RecordWriter {
            fd,
            request_id,
            record_type,
            anything_written: false,
        }
    }
}

/// Appends `content` as one record padded to a multiple of 8 (libfcgi's framing).
fn encode_padded_record(out: &mut Vec<u8>, record_type: RecordType, id: u16, content: &[u8]) {
    // Writer buffers hold at most 65528 bytes (< 65535), so one record always suffices;
    // split anyway rather than truncate a length.
    for piece in content.chunks(65528) {
        let pad = (8 - piece.len() % 8) % 8;
        let mut header = Header::new(record_type, id, piece.len() as u16);
        header.padding_length = pad as u8;
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(piece);
        out.resize(out.len() + pad, 0);
    }
}

/// `write()` all of `bytes` to `fd`, retrying on EINTR.
pub(crate) fn write_all_fd(fd: c_int, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: bytes is a valid readable slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

impl StreamIo for RecordWriter {
    fn empty(&mut self, data: &[u8], close: bool) -> io::Result<()> {
        let mut out = Vec::with_capacity(data.len() + 2 * HEADER_LEN + 8);
        if !data.is_empty() {
            encode_padded_record(&mut out, self.record_type, self.request_id, data);
        }
        let silent_stderr =
            self.record_type == RecordType::Stderr && !self.anything_written && data.is_empty();
        if close && !silent_stderr {
            encode_stream_end(&mut out, self.record_type, self.request_id);
        }
        if out.is_empty() {
            return Ok(());
        }
        self.anything_written = true;
        write_all_fd(self.fd, &out)
    }
}

/// A writer of `streamType` records for request `requestId` on the connected `socket`,
/// buffering `bufflen` bytes (header included; at least 32, at most 65536). It does not
/// send `FCGI_END_REQUEST`. Free it with `FCGX_FreeStream`; NULL only if a panic occurred.
///
/// # Safety
/// Always safe to call; `socket` should be a connected descriptor.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_CreateWriter(
    socket: c_int,
    requestId: c_int,
    bufflen: c_int,
    streamType: c_int,
) -> *mut FCGX_Stream {
    ffi_boundary!({
        let mut request = Box::new(super::fcgiapp::zeroed_request());
        request.ipcFd = socket;
        request.requestId = requestId;
        // Two writers: closing this one alone never ends the request.
        request.nWriters = 2;
        let req_ptr: *mut FCGX_Request = &mut *request;
        let io = RecordWriter::new(socket, requestId as u16, RecordType::from(streamType as u8));
        new_writer(Io::Other(Box::new(io)), bufflen, req_ptr, Some(request))
    })
}

/// Frees a stream (and its buffer), then sets `*stream` to NULL. NULL is ignored.
///
/// # Safety
/// `stream` is NULL or points to NULL or to a stream not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_FreeStream(stream: *mut *mut FCGX_Stream) {
    ffi_boundary!({
        // SAFETY: valid or NULL per the contract.
        unsafe {
            let Some(slot) = stream.as_mut() else {
                return;
            };
            free_stream(*slot);
            *slot = ptr::null_mut();
        }
    })
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)] // tests call the exports with valid arguments
mod tests {
    use super::*;
    use crate::protocol::{decode_record, Status};
    use std::collections::VecDeque;
    use std::ffi::CStr;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    /// An in-memory reader: each item is one `fill` result (bytes, or an error kind).
    struct Script {
        steps: VecDeque<io::Result<Vec<u8>>>,
        data: Vec<u8>,
        filter: bool,
    }

    impl StreamIo for Script {
        fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.steps.pop_front() {
                None => Ok(0),
                Some(Err(e)) => Err(e),
                Some(Ok(bytes)) => {
                    let n = bytes.len().min(buf.len());
                    buf[..n].copy_from_slice(&bytes[..n]);
                    if n < bytes.len() {
                        self.steps.push_front(Ok(bytes[n..].to_vec()));
                    }
                    Ok(n)
                }
            }
        }

        fn start_filter_data(&mut self) -> bool {
            if !self.filter || !self.steps.is_empty() {
                return false;
            }
            self.filter = false;
            self.steps.push_back(Ok(std::mem::take(&mut self.data)));
            true
        }
    }

    fn reader(steps: Vec<io::Result<Vec<u8>>>, bufflen: usize) -> *mut FCGX_Stream {
        let io = Script {
            steps: steps.into(),
            data: Vec::new(),
            filter: false,
        };
        new_reader(Io::Other(Box::new(io)), bufflen, ptr::null_mut())
    }

    fn get_str(s: *mut FCGX_Stream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        let got = unsafe { FCGX_GetStr(buf.as_mut_ptr().cast(), n as c_int, s) };
        buf.truncate(got as usize);
        buf
    }

    #[test]
    fn reader_delivers_bytes_across_fills_then_eof() {
        let s = reader(vec![Ok(b"hel".to_vec()), Ok(b"lo\nworld".to_vec())], 4);
        unsafe {
            assert_eq!(FCGX_GetChar(s), c_int::from(b'h'));
            assert_eq!(FCGX_UnGetChar(c_int::from(b'H'), s), c_int::from(b'H'));
            assert_eq!(
                FCGX_UnGetChar(c_int::from(b'x'), s),
                EOF,
                "one pushback only"
            );
            let mut line = [0 as c_char; 16];
            let p = FCGX_GetLine(line.as_mut_ptr(), 16, s);
            assert_eq!(p, line.as_mut_ptr());
            assert_eq!(CStr::from_ptr(p).to_bytes(), b"Hello\n");
            assert_eq!(FCGX_HasSeenEOF(s), 0);
            assert_eq!(get_str(s, 100), b"world", "short only at EOF");
            assert_eq!(FCGX_HasSeenEOF(s), EOF);
            assert_eq!(FCGX_GetChar(s), EOF);
            assert!(FCGX_GetLine(line.as_mut_ptr(), 16, s).is_null());
            assert_eq!(FCGX_GetError(s), 0, "a clean end is no error");
            assert_eq!(FCGX_PutChar(65, s), EOF, "readers don't write");
            assert_eq!(FCGX_PutStr(c"ab".as_ptr(), 2, s), -1);
            assert_eq!(FCGX_FFlush(s), 0);
            free_stream(s);
        }
    }

    #[test]
    fn get_line_respects_size_and_keeps_newline() {
        let s = reader(vec![Ok(b"abcdef\nx".to_vec())], 64);
        unsafe {
            let mut line = [0x7f as c_char; 8];
            assert!(!FCGX_GetLine(line.as_mut_ptr(), 4, s).is_null());
            assert_eq!(CStr::from_ptr(line.as_ptr()).to_bytes(), b"abc");
            assert!(!FCGX_GetLine(line.as_mut_ptr(), 1, s).is_null());
            assert_eq!(line[0], 0, "n == 1 stores only the NUL");
            assert!(FCGX_GetLine(line.as_mut_ptr(), 0, s).is_null());
            assert!(!FCGX_GetLine(line.as_mut_ptr(), 8, s).is_null());
            assert_eq!(CStr::from_ptr(line.as_ptr()).to_bytes(), b"def\n");
            free_stream(s);
        }
    }

    #[test]
    fn eagain_is_reported_and_retryable_after_clearing() {
        let s = reader(
            vec![
                Ok(b"ab".to_vec()),
                Err(io::ErrorKind::WouldBlock.into()),
                Ok(b"cd".to_vec()),
            ],
            64,
        );
        unsafe {
            assert_eq!(get_str(s, 4), b"ab");
            assert_eq!((*s).isClosed, 1);
            assert_eq!(FCGX_GetError(s), libc::EAGAIN);
            // The non-blocking reader pattern seen in public code.
            (*s).isClosed = 0;
            (*s).FCGI_errno = 0;
            assert_eq!(get_str(s, 2), b"cd");
            free_stream(s);
        }
    }

    #[test]
    fn protocol_errors_keep_the_first_code() {
        let s = reader(vec![Err(super::super::fcgx_error(FcgxError::Protocol))], 64);
        unsafe {
            assert_eq!(FCGX_GetChar(s), EOF);
            assert_eq!(FCGX_GetError(s), -3);
            FCGX_ClearError(s);
            assert_eq!(FCGX_GetError(s), 0);
            assert_eq!(FCGX_HasSeenEOF(s), EOF, "ClearError does not reopen");
            free_stream(s);
        }
    }

    #[test]
    fn start_filter_data_needs_stdin_at_eof() {
        let io = Script {
            steps: vec![Ok(b"stdin".to_vec())].into(),
            data: b"file data".to_vec(),
            filter: true,
        };
        let mut req = super::super::fcgiapp::zeroed_request();
        let s = new_reader(Io::Other(Box::new(io)), 64, &mut req);
        unsafe {
            assert_eq!(FCGX_StartFilterData(s), -1, "stdin not read to its end");
            assert_eq!(FCGX_GetError(s), -5);
            let s2 = reader(vec![], 64);
            assert_eq!(FCGX_GetChar(s2), EOF);
            assert_eq!(FCGX_StartFilterData(s2), -1, "not a Filter request");
            free_stream(s2);
            free_stream(s);

            let io = Script {
                steps: vec![Ok(b"stdin".to_vec())].into(),
                data: b"file data".to_vec(),
                filter: true,
            };
            let s = new_reader(Io::Other(Box::new(io)), 64, &mut req);
            assert_eq!(get_str(s, 64), b"stdin");
            assert_eq!(FCGX_StartFilterData(s), 0);
            assert_eq!(FCGX_HasSeenEOF(s), 0);
            assert_eq!(get_str(s, 64), b"file data");
            FCGX_SetExitStatus(7, s);
            assert_eq!(req.appStatus, 7);
            free_stream(s);
        }
    }

    /// Every record written to the other end of a socket pair: (type, id, content, padding).
    fn records(bytes: &[u8]) -> Vec<(u8, u16, Vec<u8>, u8)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            match decode_record(rest).unwrap() {
                Status::Complete((rec, used)) => {
                    let h = rec.header;
                    out.push((
                        u8::from(h.record_type),
                        h.request_id,
                        rec.content.to_vec(),
                        h.padding_length,
                    ));
                    rest = &rest[used..];
                }
                Status::Partial(_) => panic!("truncated record"),
            }
        }
        out
    }

    fn drain(mut sock: std::os::unix::net::UnixStream) -> Vec<u8> {
        let mut v = Vec::new();
        sock.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn writer_frames_records_like_libfcgi() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        unsafe {
            let mut s = FCGX_CreateWriter(fd, 1, 8192, 6);
            assert!(!s.is_null());
            let big = vec![b'x'; 8184 + 190];
            assert_eq!(
                FCGX_PutStr(big.as_ptr().cast(), big.len() as c_int, s),
                big.len() as c_int
            );
            assert_eq!(FCGX_PutChar(0x1ff, s), 0xff, "returned as unsigned char");
            assert_eq!(FCGX_PutS(c"!".as_ptr(), s), 1);
            assert_eq!(FCGX_FFlush(s), 0);
            assert_eq!(FCGX_FClose(s), 0);
            assert_eq!(FCGX_FClose(s), 0, "once only");
            assert_eq!(FCGX_PutStr(c"late".as_ptr(), 4, s), -1);
            assert_eq!(FCGX_PutChar(65, s), EOF);
            assert_eq!(FCGX_GetChar(s), EOF, "writers don't read");
            FCGX_FreeStream(&mut s);
            assert!(s.is_null());
            FCGX_FreeStream(&mut s);
            FCGX_FreeStream(ptr::null_mut());
        }
        drop(a);
        let recs = records(&drain(b));
        let summary: Vec<(u8, u16, usize, u8)> = recs
            .iter()
            .map(|(t, id, c, p)| (*t, *id, c.len(), *p))
            .collect();
        assert_eq!(summary, vec![(6, 1, 8184, 0), (6, 1, 192, 0), (6, 1, 0, 0)]);
        assert_eq!(&recs[1].2[190..], b"\xff!");
    }

    #[test]
    fn writer_pads_to_eight_and_stderr_without_output_sends_nothing() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        unsafe {
            let mut err = FCGX_CreateWriter(fd, 3, 512, 7);
            assert_eq!(FCGX_FClose(err), 0);
            FCGX_FreeStream(&mut err);
            let mut out = FCGX_CreateWriter(fd, 3, 10, 6);
            let text = [b'y'; 25 + 3];
            assert_eq!(
                FCGX_PutStr(text.as_ptr().cast(), text.len() as c_int, out),
                28
            );
            assert_eq!(FCGX_FClose(out), 0);
            FCGX_FreeStream(&mut out);
        }
        drop(a);
        let recs = records(&drain(b));
        let summary: Vec<(u8, u16, usize, u8)> = recs
            .iter()
            .map(|(t, id, c, p)| (*t, *id, c.len(), *p))
            .collect();
        // bufflen 10 is raised to 32: 24 content bytes a record; 4 bytes pad by 4.
        assert_eq!(summary, vec![(6, 3, 24, 0), (6, 3, 4, 4), (6, 3, 0, 0)]);
    }

    #[test]
    fn write_error_closes_the_stream_with_errno() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(b);
        // The Rust runtime already ignores SIGPIPE; say so explicitly, write() must fail
        // with EPIPE instead of killing the test process.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        unsafe {
            let mut s = FCGX_CreateWriter(a.as_raw_fd(), 1, 64, 6);
            assert_eq!(FCGX_PutS(c"hello".as_ptr(), s), 5);
            assert_eq!(FCGX_FFlush(s), -1);
            assert_eq!(FCGX_GetError(s), libc::EPIPE);
            assert_eq!(FCGX_FClose(s), EOF);
            FCGX_FreeStream(&mut s);
        }
    }

    #[test]
    fn hand_built_streams_use_their_own_procedures() {
        // A mock stream as programs build them: our functions must only use the fields.
        unsafe extern "C" fn fill(s: *mut FCGX_Stream) {
            unsafe { (*s).isClosed = 1 };
        }
        let mut bytes = *b"mock";
        let base = bytes.as_mut_ptr();
        let mut s = FCGX_Stream {
            rdNext: base,
            wrNext: unsafe { base.add(4) },
            stop: unsafe { base.add(4) },
            stopUnget: base,
            isReader: 1,
            isClosed: 0,
            wasFCloseCalled: 0,
            FCGI_errno: 0,
            fillBuffProc: Some(fill),
            emptyBuffProc: None,
            data: ptr::null_mut(),
        };
        assert_eq!(get_str(&mut s, 10), b"mock");
        assert_eq!(unsafe { FCGX_HasSeenEOF(&mut s) }, EOF);
        unsafe { FCGX_SetExitStatus(3, &mut s) }; // foreign data: ignored, no crash
        let mut p: *mut FCGX_Stream = &mut s;
        unsafe { FCGX_FreeStream(&mut p) }; // not ours: left alone
        assert!(p.is_null());
    }

    #[test]
    fn null_streams_give_failure_values() {
        let n = ptr::null_mut();
        unsafe {
            assert_eq!(FCGX_GetChar(n), EOF);
            assert_eq!(FCGX_GetStr(ptr::null_mut(), 5, n), 0);
            assert!(FCGX_GetLine(ptr::null_mut(), 5, n).is_null());
            assert_eq!(FCGX_UnGetChar(1, n), EOF);
            assert_eq!(FCGX_HasSeenEOF(n), EOF);
            assert_eq!(FCGX_PutChar(1, n), EOF);
            assert_eq!(FCGX_PutStr(c"a".as_ptr(), 1, n), -1);
            assert_eq!(FCGX_PutStr(ptr::null(), 0, n), 0);
            assert_eq!(FCGX_PutS(ptr::null(), n), -1);
            assert_eq!(FCGX_FFlush(n), 0);
            assert_eq!(FCGX_FClose(n), 0);
            assert_eq!(FCGX_GetError(n), -5);
            FCGX_ClearError(n);
            FCGX_SetExitStatus(1, n);
            assert_eq!(FCGX_StartFilterData(n), -1);
        }
    }

    #[test]
    fn writer_capacity_matches_libfcgi() {
        assert_eq!(writer_capacity(8192), 8184);
        assert_eq!(writer_capacity(512), 504);
        assert_eq!(writer_capacity(0), 24);
        assert_eq!(writer_capacity(-5), 24);
        assert_eq!(writer_capacity(1_000_000), 65528);
        assert_eq!(writer_capacity(33), 32);
    }
}
