//! The C ABI of the classic libfcgi (`libfcgi.so.0`): `FCGX_*`, `FCGI_*`, `OS_*` and
//! `_fcgi_sF`, as declared by the headers in `include/`.
//!
//! This module only adapts: it checks C arguments, keeps the C-visible structures in the
//! classic layout and calls Rust code. It is private; its `#[no_mangle]` items are exported
//! from the cdylib anyway, and they are the only exported symbols besides the marker
//! `fcgi_rs_version` (internal helpers are plain Rust items, or hidden C functions).
//!
//! Layout:
//! * [`types`]: the `#[repr(C)]` structures and their layout assertions;
//! * [`stream`]: the `FCGX_Stream` buffer machinery over the internal [`stream::StreamIo`]
//!   trait, and the `FCGX_*` stream functions;
//! * [`fcgiapp`]: requests, parameters, CGI detection, sockets;
//! * [`request`]: `FCGX_Accept_r` on the server core, and the core-backed streams;
//! * [`stdio`]: the `fcgi_stdio.h` layer and `_fcgi_sF`;
//! * [`os`]: the `OS_*` functions (used by `cgi-fcgi`) and signal installation;
//! * [`export`]: exports of the C functions in `capi/printf.c`.
//!
//! Rules at this boundary (see `style.md` 7.4): every export runs its body inside
//! [`ffi_boundary!`], so a panic becomes the documented failure value instead of unwinding
//! into C; NULL pointers are checked first and give an error value where the classic
//! library would have crashed.
#![allow(non_camel_case_types, non_snake_case)]
#![warn(clippy::undocumented_unsafe_blocks)]
// The exports take raw pointers and check them; they are `unsafe extern "C"` where they
// dereference them.
#![allow(clippy::missing_safety_doc)]

use std::ffi::c_int;
use std::io;

mod export;
pub(crate) mod fcgiapp;
pub(crate) mod os;
pub(crate) mod request;
pub(crate) mod stdio;
pub(crate) mod stream;
pub(crate) mod types;

/// `EOF` of `<stdio.h>`.
pub(crate) const EOF: c_int = -1;

/// The value an export returns when its body panicked: -1/EOF for `int`, NULL for
/// pointers, 0 for `size_t`, nothing for `void`.
pub(crate) trait FailValue {
    /// The failure value.
    fn fail_value() -> Self;
}

impl FailValue for c_int {
    fn fail_value() -> Self {
        -1
    }
}

impl FailValue for usize {
    fn fail_value() -> Self {
        0
    }
}

impl FailValue for () {
    fn fail_value() -> Self {}
}

impl<T> FailValue for *mut T {
    fn fail_value() -> Self {
        std::ptr::null_mut()
    }
}

/// Runs an export's body, turning a panic into a failure value (the body's type's
/// [`FailValue`], or an explicit one). A panic must not unwind into C.
macro_rules! ffi_boundary {
    ($fallback:expr, $body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(_) => $fallback,
        }
    };
    ($body:block) => {
        ffi_boundary!($crate::capi::FailValue::fail_value(), $body)
    };
}
pub(crate) use ffi_boundary;

/// Sets the calling thread's `errno`.
pub(crate) fn set_errno(code: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = code };
}

/// The calling thread's `errno`.
pub(crate) fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// An [`io::Error`] carrying an FCGX stream error code, for [`stream::StreamIo`] backends
/// that fail for a protocol reason rather than an OS one.
pub(crate) fn fcgx_error(code: types::FcgxError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, FcgxCode(code))
}

/// Payload of [`fcgx_error`].
#[derive(Debug)]
struct FcgxCode(types::FcgxError);

impl std::fmt::Display for FcgxCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FastCGI stream error {}", self.0 as i32)
    }
}

impl std::error::Error for FcgxCode {}

/// The value `FCGX_GetError` reports for an I/O error: the errno when there is one (> 0),
/// an FCGX code (< 0) otherwise. This is the only place that maps errors to stream codes.
pub(crate) fn stream_error_code(e: &io::Error) -> c_int {
    if let Some(code) = e.raw_os_error() {
        return code;
    }
    if let Some(code) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<FcgxCode>())
    {
        return code.0 as c_int;
    }
    match e.kind() {
        io::ErrorKind::WouldBlock => libc::EAGAIN,
        io::ErrorKind::Interrupted => libc::EINTR,
        io::ErrorKind::BrokenPipe => libc::EPIPE,
        io::ErrorKind::ConnectionReset => libc::ECONNRESET,
        _ => types::FcgxError::Protocol as c_int,
    }
}

/// Marker proving which library a program loaded: present in fcgi's `libfcgi.so.0` only
/// (the classic library has no such symbol). `dlsym(RTLD_DEFAULT, "fcgi_rs_version")`
/// finds this NUL-terminated version string.
#[unsafe(no_mangle)]
pub static fcgi_rs_version: [u8; VERSION.len() + 1] = {
    let mut out = [0u8; VERSION.len() + 1];
    let mut i = 0;
    while i < VERSION.len() {
        out[i] = VERSION.as_bytes()[i];
        i += 1;
    }
    out
};

/// The crate version, which [`fcgi_rs_version`] holds.
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)] // tests call the exports with valid arguments
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_os_and_fcgx_errors() {
        assert_eq!(
            stream_error_code(&io::Error::from_raw_os_error(libc::EPIPE)),
            libc::EPIPE
        );
        assert_eq!(stream_error_code(&fcgx_error(types::FcgxError::Params)), -4);
        assert_eq!(
            stream_error_code(&io::ErrorKind::WouldBlock.into()),
            libc::EAGAIN
        );
        assert_eq!(stream_error_code(&io::ErrorKind::UnexpectedEof.into()), -3);
    }

    #[test]
    fn boundary_turns_panic_into_fail_value() {
        let v: c_int = ffi_boundary!({ panic!("boom") });
        assert_eq!(v, -1);
        let p: *mut u8 = ffi_boundary!({ panic!("boom") });
        assert!(p.is_null());
    }

    /// Every exported function runs inside `ffi_boundary!` (the naked tail-jumps of
    /// `export.rs`, which have no Rust body, excepted).
    #[test]
    fn every_export_body_is_inside_ffi_boundary() {
        let sources = [
            ("fcgiapp.rs", include_str!("fcgiapp.rs")),
            ("os.rs", include_str!("os.rs")),
            ("stdio.rs", include_str!("stdio.rs")),
            ("stream.rs", include_str!("stream.rs")),
        ];
        let mut checked = 0;
        for (file, text) in sources {
            for (at, _) in text.match_indices("#[unsafe(no_mangle)]\n") {
                let rest = &text[at..];
                let sig = rest.find(" fn ").map(|i| &rest[i + 4..]);
                let Some(sig) =
                    sig.filter(|_| !rest.lines().nth(1).unwrap_or("").contains("static"))
                else {
                    continue;
                };
                let name = &sig[..sig.find('(').unwrap()];
                let body = &rest[..rest.find("\n}\n").unwrap()];
                assert!(
                    body.contains("ffi_boundary!"),
                    "{file}: {name} is not inside ffi_boundary!"
                );
                checked += 1;
            }
        }
        assert_eq!(
            checked,
            88 - 6,
            "all Rust-defined exported functions were checked"
        );
    }

    #[test]
    fn marker_is_the_crate_version() {
        let s = std::ffi::CStr::from_bytes_with_nul(&fcgi_rs_version).unwrap();
        assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
