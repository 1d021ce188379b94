//! `scripts/install.sh`: the installed tree (libraries with their SONAME names and links,
//! headers, pkg-config files), libfcgi++'s exported symbols, and programs built the way
//! users build them (`pkg-config --cflags --libs fcgi`), run on the installed libraries.
//!
//! The script installs the libraries cargo built for this test run (`FCGI_BUILD_DIR`), so
//! no release build is needed. Required tools missing: the test says it skips, and fails
//! instead when `CI=true` or `FCGI_REQUIRE_PEERS=1`.

mod support;

use support::capi::have_tools;
use support::peers_required;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fcgi::protocol::{decode_record, RecordType, Status};

/// Where cargo put this run's `libfcgi.so` and `libfcgi.a` (next to this test executable).
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    if deps.join("libfcgi.so").exists() {
        deps
    } else {
        deps.parent().expect("profile dir").to_path_buf()
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/install.sh` into a fresh temporary prefix.
fn install() -> tempfile::TempDir {
    let prefix = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("scripts/install.sh"))
        .arg(prefix.path())
        .env("FCGI_BUILD_DIR", build_dir())
        .output()
        .expect("run scripts/install.sh");
    assert!(
        out.status.success(),
        "install.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    prefix
}

fn output(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(cmd: &mut Command) -> String {
    String::from_utf8(output(cmd).stdout).unwrap()
}

/// The content of the FCGI_STDOUT records (request 1) a program wrote to its stdout.
fn stdout_content(mut rest: &[u8]) -> Vec<u8> {
    let mut content = Vec::new();
    while !rest.is_empty() {
        let Status::Complete((record, used)) = decode_record(rest).expect("valid records") else {
            panic!("truncated record");
        };
        assert_eq!(record.header.record_type, RecordType::Stdout);
        content.extend_from_slice(record.content);
        rest = &rest[used..];
    }
    content
}

#[test]
fn install_script_lays_out_libraries_headers_and_pkg_config() {
    let test = "install_script_lays_out_libraries_headers_and_pkg_config";
    if !have_tools(&["sh", "c++", "ar", "readelf", "nm"], test) {
        return;
    }
    let prefix = install();
    let lib = prefix.path().join("lib");
    for (link, target) in [
        ("libfcgi.so.0", "libfcgi.so.0.0.0"),
        ("libfcgi.so", "libfcgi.so.0"),
        ("libfcgi++.so.0", "libfcgi++.so.0.0.0"),
        ("libfcgi++.so", "libfcgi++.so.0"),
    ] {
        assert_eq!(
            std::fs::read_link(lib.join(link)).unwrap(),
            Path::new(target),
            "{link}"
        );
    }
    for (file, soname) in [
        ("libfcgi.so.0.0.0", "libfcgi.so.0"),
        ("libfcgi++.so.0.0.0", "libfcgi++.so.0"),
    ] {
        let dynamic = text(Command::new("readelf").arg("-dW").arg(lib.join(file)));
        assert!(
            dynamic.contains(&format!("Library soname: [{soname}]")),
            "{file}:\n{dynamic}"
        );
    }
    let dynamic = text(
        Command::new("readelf")
            .arg("-dW")
            .arg(lib.join("libfcgi++.so.0.0.0")),
    );
    assert!(
        dynamic.contains("Shared library: [libfcgi.so.0]"),
        "libfcgi++ needs libfcgi.so.0"
    );
    for file in [
        "libfcgi.a",
        "libfcgi++.a",
        "pkgconfig/fcgi.pc",
        "pkgconfig/fcgi++.pc",
    ] {
        assert!(lib.join(file).is_file(), "{file} missing");
    }
    for h in [
        "fastcgi.h",
        "fcgiapp.h",
        "fcgi_stdio.h",
        "fcgio.h",
        "fcgios.h",
        "fcgimisc.h",
        "fcgi_config.h",
    ] {
        let installed = std::fs::read(prefix.path().join("include").join(h)).unwrap();
        assert_eq!(
            installed,
            std::fs::read(root().join("include").join(h)).unwrap(),
            "{h}"
        );
    }

    // libfcgi++ exports exactly the classic library's symbols, with the same binding
    // (weak inline destructors and thunks included).
    let classic: BTreeSet<String> = include_str!("data/libfcgi++-symbols.txt")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(classic.len(), 44);
    let listed = text(
        Command::new("nm")
            .args(["-D", "--defined-only"])
            .arg(lib.join("libfcgi++.so.0.0.0")),
    );
    let ours: BTreeSet<String> = listed
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| format!("{} {}", f[1], f[2]))
        })
        .collect();
    assert_eq!(
        ours, classic,
        "libfcgi++ exports differ from the classic library's"
    );
}

#[test]
fn programs_build_with_pkg_config_and_run_on_the_installed_libraries() {
    let test = "programs_build_with_pkg_config_and_run_on_the_installed_libraries";
    if !have_tools(&["sh", "cc", "c++", "ar", "pkg-config"], test) {
        return;
    }
    let prefix = install();
    let pc_path = prefix.path().join("lib/pkgconfig");
    let flags = |pkgs: &[&str]| -> Vec<String> {
        text(
            Command::new("pkg-config")
                .args(["--cflags", "--libs"])
                .args(pkgs)
                .env("PKG_CONFIG_PATH", &pc_path),
        )
        .split_whitespace()
        .map(str::to_owned)
        .collect()
    };
    let lib = prefix.path().join("lib");
    let run = |exe: &Path| -> Output {
        let out = Command::new(exe)
            .env("LD_LIBRARY_PATH", &lib)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_ne!(
            out.status.code(),
            Some(3),
            "{} ran on the classic library",
            exe.display()
        );
        assert!(
            out.status.success(),
            "{:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    // C, the way the issue promises: cc app.c $(pkg-config --cflags --libs fcgi).
    let exe = prefix.path().join("iscgi");
    output(
        Command::new("cc")
            .arg(root().join("tests/c/iscgi.c"))
            .arg("-o")
            .arg(&exe)
            .args(flags(&["fcgi"]))
            .arg("-ldl"),
    );
    assert_eq!(run(&exe).stdout, b"is_cgi=1\n");

    // C++ against our fcgio.h (pkg-config) and against the classic one (/usr/include),
    // both on our libfcgi++.
    let expected =
        "unbuffered 42\nvia cout\nbuffered output longer than sixteen bytes|fcgi_ostream|\
                    in=word,123,line two,eof|buffered-in=abcdefghij,z|";
    let classic_header = Path::new("/usr/include/fcgio.h").exists();
    if !classic_header {
        if peers_required() {
            panic!("{test}: the classic headers (libfcgi-dev) are missing");
        }
        eprintln!("SKIPPING the classic-header half of {test}: /usr/include/fcgio.h is missing");
    }
    for classic in [false, true] {
        if classic && !classic_header {
            continue;
        }
        let exe = prefix.path().join(if classic {
            "streambuf-classic"
        } else {
            "streambuf-ours"
        });
        let mut cmd = Command::new("c++");
        cmd.args(["-std=c++11", "-Wall", "-Wextra", "-Werror"])
            .arg(root().join("tests/c/streambuf.cpp"));
        cmd.arg("-o").arg(&exe);
        if classic {
            cmd.arg("-L").arg(&lib).args(["-lfcgi++", "-lfcgi"]);
        } else {
            cmd.args(flags(&["fcgi++"]));
        }
        output(cmd.arg("-ldl"));
        let content = stdout_content(&run(&exe).stdout);
        assert_eq!(
            String::from_utf8_lossy(&content),
            expected,
            "classic header: {classic}"
        );
    }
}
