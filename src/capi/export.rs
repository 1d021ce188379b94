//! Exports of the C functions in `capi/printf.c` under their libfcgi names.
//!
//! A Rust cdylib exports only Rust `#[no_mangle]` items: rustc's version script makes
//! every other symbol local, including C objects linked in (rust-lang/rust#36342). So
//! each variadic or `va_list` function is written in C under a hidden `fcgi_capi_*` name,
//! and exported here by a naked function whose whole body is a tail jump to it: argument
//! registers, `%al` (the vector-register count of a variadic call) and the stack reach
//! the C function untouched, and its return goes straight back to the caller.

/// The tail-jump instruction of the target (the jump target is the `{}` operand).
#[cfg(target_arch = "x86_64")]
macro_rules! tail_jump {
    () => {
        "jmp {}"
    };
}
/// The tail-jump instruction of the target (the jump target is the `{}` operand).
#[cfg(target_arch = "aarch64")]
macro_rules! tail_jump {
    () => {
        "b {}"
    };
}

/// Defines, for each `Name => hidden_c_function`, an exported naked function `Name` that
/// jumps to `hidden_c_function`. The Rust signature is irrelevant (nothing is read); the
/// C prototype in `include/` is the real one.
macro_rules! c_exports {
    ($($(#[doc = $doc:expr])* $name:ident => $target:ident;)*) => {
        unsafe extern "C" {
            $(fn $target();)*
        }
        $(
            $(#[doc = $doc])*
            #[unsafe(no_mangle)]
            #[unsafe(naked)]
            pub unsafe extern "C" fn $name() {
                core::arch::naked_asm!(tail_jump!(), sym $target)
            }
        )*
    };
}

c_exports! {
    /// `int FCGX_FPrintF(FCGX_Stream *stream, const char *format, ...)`: C99 printf into a stream.
    FCGX_FPrintF => fcgi_capi_FCGX_FPrintF;
    /// `int FCGX_VFPrintF(FCGX_Stream *stream, const char *format, va_list arg)`.
    FCGX_VFPrintF => fcgi_capi_FCGX_VFPrintF;
    /// `int FCGI_fprintf(FCGI_FILE *fp, const char *format, ...)`.
    FCGI_fprintf => fcgi_capi_FCGI_fprintf;
    /// `int FCGI_printf(const char *format, ...)`: to `FCGI_stdout`.
    FCGI_printf => fcgi_capi_FCGI_printf;
    /// `int FCGI_vfprintf(FCGI_FILE *fp, const char *format, va_list ap)`.
    FCGI_vfprintf => fcgi_capi_FCGI_vfprintf;
    /// `int FCGI_vprintf(const char *format, va_list ap)`: to `FCGI_stdout`.
    FCGI_vprintf => fcgi_capi_FCGI_vprintf;
}
