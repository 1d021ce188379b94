//! The shipped C headers against the Rust exports: cbindgen reads `src/capi` and writes a
//! prototype for every `#[no_mangle] extern "C"` item into a temporary header, and a C file
//! includes the hand-written `include/*.h` and that header together. Two declarations of
//! one function (or object) with different types are a hard error in C ("conflicting
//! types"), so a Rust export that drifts from its declaration fails here.
//!
//! The shipped headers stay hand written (they must match libfcgi's); the generated one is
//! only a witness. The structures are excluded from it: their layouts are checked by
//! `tests/c/layout.c` and the compile-time assertions in `src/capi/types.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::capi::have_tools;

/// Items the headers define as types (cbindgen would emit a second definition).
const TYPES: &[&str] = &[
    "FCGX_Stream",
    "FCGX_Request",
    "FCGI_FILE",
    "FillProc",
    "EmptyProc",
    "FcgxError",
];

/// The prototypes cbindgen derives from `src/capi`, as C.
fn generated_prototypes() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config {
        language: cbindgen::Language::C,
        no_includes: true,
        // The headers name the structures with typedefs: `FCGX_Stream *`, not
        // `struct FCGX_Stream *`.
        style: cbindgen::Style::Type,
        usize_is_size_t: true,
        sys_includes: vec![],
        ..Default::default()
    };
    config.export.exclude = TYPES.iter().map(|s| s.to_string()).collect();
    // `struct timeval`, not a typedef name.
    config
        .export
        .rename
        .insert("timeval".into(), "struct timeval".into());
    // Constants live in the headers as macros; functions and statics are compared, with
    // the Rust type aliases they use (callback types under other names than the headers').
    config.export.item_types = vec![
        cbindgen::ItemType::Functions,
        cbindgen::ItemType::Globals,
        cbindgen::ItemType::Typedefs,
    ];
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/capi/mod.rs"))
        .generate()
        .expect("cbindgen reads src/capi");
    let mut out = Vec::new();
    bindings.write(&mut out);
    let text = String::from_utf8(out).expect("cbindgen writes UTF-8");
    unwrap_options(&text)
}

/// cbindgen writes `Option<Alias>` when `Alias` names a function pointer type (it only
/// simplifies `Option<extern fn ...>` written out); in C that is the (nullable) `Alias`.
fn unwrap_options(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("Option<") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "Option<".len()..];
        let end = after.find('>').expect("Option<...> is closed");
        let inner = &after[..end];
        assert!(
            inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "Option<{inner}>: only type names are expected"
        );
        out.push_str(inner);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Compiles `main` (C) with `headers` on the include path; `Err(compiler output)` on failure.
fn compile(dir: &Path, headers: &Path, main: &str, generated: &str) -> Result<(), String> {
    std::fs::write(dir.join("generated.h"), generated).unwrap();
    std::fs::write(dir.join("check.c"), main).unwrap();
    let out = Command::new("cc")
        // `int *` against the headers' `int stdioFds[3]` is the same type in C; GCC's
        // array-parameter warning is about style, not compatibility.
        .args([
            "-std=c99",
            "-Wall",
            "-Werror",
            "-Wno-array-parameter",
            "-fsyntax-only",
        ])
        .arg("-I")
        .arg(headers)
        .arg("-I")
        .arg(dir)
        .arg(dir.join("check.c"))
        .output()
        .expect("run cc");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Every shipped header, then the generated prototypes.
const CHECK_C: &str = r#"
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/time.h>
#include <arpa/inet.h>
#include "fastcgi.h"
#include "fcgiapp.h"
#include "fcgios.h"
#include "fcgi_stdio.h"
#include "generated.h"
int main(void) { return 0; }
"#;

#[test]
fn rust_exports_match_the_shipped_headers() {
    if !have_tools(&["cc"], "rust_exports_match_the_shipped_headers") {
        return;
    }
    let generated = generated_prototypes();
    // The witness is real: it holds the exports of every C ABI module.
    for name in [
        "FCGX_Accept_r",
        "FCGX_GetParam",
        "FCGX_PutStr",
        "OS_CreateLocalIpcFd",
        "FCGI_fopen",
        "_fcgi_sF",
    ] {
        assert!(
            generated.contains(name),
            "cbindgen gave no declaration of {name}:\n{generated}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    if let Err(msg) = compile(dir.path(), &shipped(), CHECK_C, &generated) {
        panic!(
            "the Rust exports and include/*.h disagree:\n{msg}\n--- generated.h ---\n{generated}"
        );
    }
}

#[test]
fn rust_exports_match_the_classic_headers() {
    if !have_tools(&["cc"], "rust_exports_match_the_classic_headers")
        || !support::capi::have_paths(
            &["/usr/include/fcgiapp.h"],
            "rust_exports_match_the_classic_headers",
        )
    {
        return;
    }
    let generated = generated_prototypes();
    let dir = tempfile::tempdir().unwrap();
    if let Err(msg) = compile(dir.path(), Path::new("/usr/include"), CHECK_C, &generated) {
        panic!("the Rust exports and the classic headers (libfcgi-dev) disagree:\n{msg}");
    }
}

/// The shipped headers.
fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include")
}

#[test]
fn a_drifted_export_fails_the_check() {
    if !have_tools(&["cc"], "a_drifted_export_fails_the_check") {
        return;
    }
    // The same check with one prototype changed as a careless edit of the Rust side would
    // (a `*mut c_char` where the header says `const char *`): it must not compile.
    let generated = generated_prototypes();
    let line = generated
        .lines()
        .find(|l| l.contains(" FCGX_PutS("))
        .expect("FCGX_PutS is exported")
        .to_owned();
    assert!(line.contains("const char"), "{line}");
    let drifted = generated.replace(&line, &line.replacen("const char", "char", 1));
    let dir = tempfile::tempdir().unwrap();
    assert!(compile(dir.path(), &shipped(), CHECK_C, &generated).is_ok());
    let err = compile(dir.path(), &shipped(), CHECK_C, &drifted)
        .expect_err("a prototype that differs from fcgiapp.h must fail to compile");
    assert!(err.contains("FCGX_PutS"), "{err}");
}
