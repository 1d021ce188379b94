//! Build script: compiles the C half of the libfcgi ABI (`capi/*.c`) and names the shared
//! library. Nothing else happens here: no code generation, no header generation.
//!
//! * `capi/printf.c` holds the variadic and `va_list` functions (stable Rust can define
//!   neither). Its functions are `visibility("hidden")`; `src/capi/export.rs` exports them
//!   under their libfcgi names through naked tail-jumps, because a Rust cdylib exports only
//!   Rust `#[no_mangle]` items (rust-lang/rust#36342).
//! * The cdylib gets the SONAME `libfcgi.so.0`, the classic library's, so programs linked
//!   against it record `NEEDED libfcgi.so.0`.

fn main() {
    let sources = ["capi/printf.c"];
    let mut build = cc::Build::new();
    build
        .include("include")
        .flag_if_supported("-std=c99")
        .flag_if_supported("-Wall")
        .flag_if_supported("-Wextra")
        .pic(true);
    for src in sources {
        build.file(src);
        println!("cargo:rerun-if-changed={src}");
    }
    build.compile("fcgi_capi");
    for header in [
        "fastcgi.h",
        "fcgiapp.h",
        "fcgi_stdio.h",
        "fcgio.h",
        "fcgios.h",
        "fcgimisc.h",
        "fcgi_config.h",
    ] {
        println!("cargo:rerun-if-changed=include/{header}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libfcgi.so.0");
    }
}
