//! The C ABI of `libfcgi.so.0`, checked on the built library itself.
//!
//! * ELF: SONAME, the exported symbol set (the classic library's, plus the marker
//!   `fcgi_rs_version`), `_fcgi_sF` (48 bytes, reached through the GOT).
//! * Headers: `tests/c/layout.c` / `layout.cpp` compiled against `include/` and against the
//!   classic headers (libfcgi-dev), proving the same layouts, constants and prototypes.
//! * C programs built against either header set and run on our library: printf
//!   conversions through `FCGX_FPrintF`, the fcgi_stdio CGI mode, `FCGX_IsCGI` and
//!   `FCGX_OpenSocket`.
//!
//! The classic library is installed on the test machines, and the loader silently prefers
//! it over `LD_LIBRARY_PATH=target/debug`; so every test copies our library into its own
//! temporary `lib/libfcgi.so.0` (plus the `libfcgi.so` link), and every C program checks
//! `dlsym(RTLD_DEFAULT, "fcgi_rs_version")` and exits 3 if it ran on the classic library.
//!
//! Tools (cc, c++, nm, readelf) and the classic headers are required: a test without them
//! prints that it skips, and fails instead when `CI=true` or `FCGI_REQUIRE_PEERS=1`.

mod support;

use support::capi::{built_library, have_tools};
use support::peers_required;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fcgi::protocol::{decode_record, RecordType, Status};

/// True if the classic headers (libfcgi-dev) are installed; else skip loudly / fail.
fn have_classic_headers(test: &str) -> bool {
    if Path::new("/usr/include/fcgiapp.h").exists() {
        return true;
    }
    if peers_required() {
        panic!("{test}: the classic headers (libfcgi-dev) are missing");
    }
    eprintln!(
        "SKIPPING {test}: the classic headers (libfcgi-dev, /usr/include/fcgiapp.h) are missing"
    );
    false
}

/// A temporary prefix with our library as `lib/libfcgi.so.0` + `lib/libfcgi.so`, and a
/// `bin/` for compiled programs.
struct Prefix {
    dir: tempfile::TempDir,
}

impl Prefix {
    fn new() -> Prefix {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let so = dir.path().join("lib/libfcgi.so.0");
        std::fs::copy(built_library(), &so).expect("copy libfcgi.so");
        std::os::unix::fs::symlink("libfcgi.so.0", dir.path().join("lib/libfcgi.so")).unwrap();
        Prefix { dir }
    }

    fn lib_dir(&self) -> PathBuf {
        self.dir.path().join("lib")
    }

    fn so(&self) -> PathBuf {
        self.lib_dir().join("libfcgi.so.0")
    }

    /// Compiles and links `tests/c/<src>` against our library, with our headers
    /// (`classic == false`) or the classic ones in /usr/include.
    fn compile(&self, src: &str, classic: bool) -> PathBuf {
        let name = format!(
            "{}-{}",
            src.trim_end_matches(".c"),
            if classic { "classic" } else { "ours" }
        );
        let exe = self.dir.path().join("bin").join(name);
        let mut cmd = Command::new("cc");
        cmd.args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&exe);
        if !classic {
            cmd.arg(format!("-I{}/include", env!("CARGO_MANIFEST_DIR")));
        }
        cmd.arg(c_source(src))
            .arg("-L")
            .arg(self.lib_dir())
            .args(["-lfcgi", "-ldl"]);
        let out = cmd.output().expect("run cc");
        assert!(
            out.status.success(),
            "cc {src} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    }

    /// Runs `exe` on our library, with `stdin` bytes on a pipe.
    fn run(&self, exe: &Path, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
        let mut child = self
            .command(exe, args, env)
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn C program");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_ne!(
            out.status.code(),
            Some(3),
            "{} ran on the classic libfcgi",
            exe.display()
        );
        out
    }

    fn command(&self, exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .env("LD_LIBRARY_PATH", self.lib_dir())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

fn c_source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(name)
}

fn tool_output(cmd: &str, args: &[&str], file: &Path) -> String {
    let out = Command::new(cmd).args(args).arg(file).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn soname_is_libfcgi_so_0() {
    if !have_tools(&["readelf"], "soname_is_libfcgi_so_0") {
        return;
    }
    let prefix = Prefix::new();
    let dynamic = tool_output("readelf", &["-dW"], &prefix.so());
    let soname: Vec<&str> = dynamic.lines().filter(|l| l.contains("(SONAME)")).collect();
    assert_eq!(soname.len(), 1, "{dynamic}");
    assert!(
        soname[0].contains("Library soname: [libfcgi.so.0]"),
        "{}",
        soname[0]
    );
}

#[test]
fn exported_symbols_equal_the_classic_set_plus_the_marker() {
    if !have_tools(
        &["nm"],
        "exported_symbols_equal_the_classic_set_plus_the_marker",
    ) {
        return;
    }
    let classic: BTreeSet<String> = include_str!("data/libfcgi-symbols.txt")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(classic.len(), 89, "88 functions and _fcgi_sF");
    // Keep the stored list honest where the classic library is installed.
    let system = Path::new("/usr/lib/x86_64-linux-gnu/libfcgi.so.0");
    if system.exists() {
        let listed = tool_output("nm", &["-D", "--defined-only"], system);
        let names: BTreeSet<String> = listed
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .map(str::to_owned)
            .collect();
        assert_eq!(
            names, classic,
            "tests/data/libfcgi-symbols.txt is out of date"
        );
    }

    let prefix = Prefix::new();
    let listed = tool_output("nm", &["-D", "--defined-only"], &prefix.so());
    let ours: BTreeSet<String> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = classic.difference(&ours).collect();
    let extra: Vec<&String> = ours.difference(&classic).collect();
    assert!(
        missing.is_empty(),
        "classic symbols not exported: {missing:?}"
    );
    assert_eq!(
        extra,
        vec!["fcgi_rs_version"],
        "unexpected exports (Rust internals leaking?)"
    );
    assert!(
        !listed.contains("_ZN") && !listed.contains("rust_"),
        "Rust-internal symbols exported:\n{listed}"
    );
}

#[test]
fn fcgi_sf_is_48_bytes_of_bss_reached_through_the_got() {
    if !have_tools(
        &["nm", "readelf"],
        "fcgi_sf_is_48_bytes_of_bss_reached_through_the_got",
    ) {
        return;
    }
    let prefix = Prefix::new();
    let sized = tool_output("nm", &["-D", "-S", "--defined-only"], &prefix.so());
    let line = sized
        .lines()
        .find(|l| l.ends_with(" _fcgi_sF"))
        .unwrap_or_else(|| panic!("_fcgi_sF not exported:\n{sized}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(u64::from_str_radix(fields[1], 16).unwrap(), 48, "{line}");
    assert_eq!(fields[2], "B", "a zero-initialised data object: {line}");
    if cfg!(target_arch = "x86_64") {
        let relocs = tool_output("readelf", &["-rW"], &prefix.so());
        assert!(
            relocs
                .lines()
                .any(|l| l.contains("R_X86_64_GLOB_DAT") && l.contains("_fcgi_sF")),
            "the library must reach _fcgi_sF through its GOT, so a program's copy wins"
        );
    }
}

#[test]
fn headers_declare_the_classic_layouts_constants_and_prototypes() {
    let test = "headers_declare_the_classic_layouts_constants_and_prototypes";
    if !have_tools(&["cc", "c++"], test) || !have_classic_headers(test) {
        return;
    }
    let ours = format!("-I{}/include", env!("CARGO_MANIFEST_DIR"));
    for (compiler, std, src) in [
        ("cc", "-std=c11", "layout.c"),
        ("c++", "-std=c++11", "layout.cpp"),
    ] {
        for include in [Some(ours.as_str()), None] {
            let mut cmd = Command::new(compiler);
            cmd.args([std, "-Wall", "-Wextra", "-Werror", "-fsyntax-only"]);
            if let Some(i) = include {
                cmd.arg(i);
            }
            let out = cmd.arg(c_source(src)).output().unwrap();
            assert!(
                out.status.success(),
                "{src} against {} headers:\n{}",
                if include.is_some() {
                    "our"
                } else {
                    "the classic"
                },
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The concatenated content of the FCGI_STDOUT records of request 1 in `bytes`, checking
/// that the stream ends with its empty record and that padding keeps records 8-aligned.
fn stdout_content(bytes: &[u8]) -> Vec<u8> {
    let mut rest = bytes;
    let mut content = Vec::new();
    let mut ended = false;
    while !rest.is_empty() {
        let Status::Complete((record, used)) = decode_record(rest).expect("valid records") else {
            panic!("truncated record in program output");
        };
        assert_eq!(record.header.record_type, RecordType::Stdout);
        assert_eq!(record.header.request_id, 1);
        assert!(!ended, "data after the end of the stream");
        assert_eq!(used % 8, 0, "records are padded to a multiple of 8");
        ended = record.content.is_empty();
        content.extend_from_slice(record.content);
        rest = &rest[used..];
    }
    assert!(ended, "stream not ended by an empty record");
    content
}

#[test]
fn fcgx_fprintf_has_c99_semantics() {
    if !have_tools(&["cc"], "fcgx_fprintf_has_c99_semantics")
        || !have_classic_headers("fcgx_fprintf_has_c99_semantics")
    {
        return;
    }
    let prefix = Prefix::new();
    let mut expected =
        b"zu=18446744073709551615|lf=2.500000|hhd=44|jd=-42|pos=b-a|null=(null)|nul=\0|\
F=1.500000|a=0x1p+0|w=7   |00ff|+1.23e+04|%|0.25|va=12,x||"
            .to_vec();
    expected.extend(std::iter::repeat_n(b'b', 2999));
    expected.push(b'|');
    expected.extend(std::iter::repeat_n(b' ', 4999));
    expected.extend_from_slice(b"1\n");
    for classic in [false, true] {
        let exe = prefix.compile("printf.c", classic);
        let out = prefix.run(&exe, &[], b"", &[]);
        assert!(
            out.status.success(),
            "printf.c (classic headers: {classic}) failed: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let content = stdout_content(&out.stdout);
        assert_eq!(
            String::from_utf8_lossy(&content[..200.min(content.len())]),
            String::from_utf8_lossy(&expected[..200])
        );
        assert_eq!(content, expected, "classic headers: {classic}");
    }
}

#[test]
fn fcgi_stdio_cgi_mode_runs_the_loop_body_once_on_real_stdio() {
    let test = "fcgi_stdio_cgi_mode_runs_the_loop_body_once_on_real_stdio";
    if !have_tools(&["cc", "readelf"], test) || !have_classic_headers(test) {
        return;
    }
    let prefix = Prefix::new();
    for classic in [false, true] {
        let exe = prefix.compile("cgi_stdio.c", classic);
        if cfg!(target_arch = "x86_64") {
            // The program owns the live copy of _fcgi_sF; the library must use it too.
            let relocs = tool_output("readelf", &["-rW"], &exe);
            assert!(
                relocs
                    .lines()
                    .any(|l| l.contains("R_X86_64_COPY") && l.contains("_fcgi_sF")),
                "expected a copy relocation of _fcgi_sF in the program:\n{relocs}"
            );
        }
        let out = prefix.run(&exe, &[], b"hello\nWXYZ rest", &[("FCGI_TEST_VAR", "hi")]);
        assert!(
            out.status.success(),
            "{:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Content-type: text/plain\r\n\r\nrun 1 is_cgi=1\nline=hello\nfread=WXYZ\n\
             fprintf to stdout\nputs\nputs_ret=10\nfwrite\nc\ngetenv=hi\nfileno=1\n\
             loop ended count=1 rc=-1\n",
            "classic headers: {classic}"
        );
        // perror writes no newline, byte for byte as libfcgi.
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "perr: No such file or directory"
        );
    }
}

#[test]
fn is_cgi_follows_what_fd_0_is() {
    if !have_tools(&["cc", "sh"], "is_cgi_follows_what_fd_0_is") {
        return;
    }
    let prefix = Prefix::new();
    let exe = prefix.compile("iscgi.c", false);
    let run_with = |stdin: Stdio, args: &[&str]| -> String {
        let out = prefix
            .command(&exe, args, &[])
            .stdin(stdin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    assert_eq!(
        prefix.run(&exe, &[], b"", &[]).stdout,
        b"is_cgi=1\n",
        "a pipe is CGI"
    );
    assert_eq!(
        run_with(Stdio::null(), &[]),
        "is_cgi=1\n",
        "/dev/null is CGI"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fd: std::os::fd::OwnedFd = listener.into();
    assert_eq!(
        run_with(Stdio::from(fd), &[]),
        "is_cgi=0\n",
        "a listening socket is FastCGI"
    );
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd: std::os::fd::OwnedFd = a.into();
    assert_eq!(
        run_with(Stdio::from(fd), &[]),
        "is_cgi=1\n",
        "a connected socket is CGI"
    );
    let closed = Command::new("sh")
        .args(["-c", "exec \"$0\" <&-"])
        .arg(&exe)
        .env("LD_LIBRARY_PATH", prefix.lib_dir())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&closed.stdout),
        "is_cgi=1\n",
        "a closed fd 0 is CGI"
    );

    // FCGX_OpenSocket: -1 with errno instead of exiting; TCP on IPv4 and IPv6.
    assert_eq!(
        run_with(Stdio::null(), &["/nonexistent-fcgi-dir/app.sock"]),
        format!("fd=-1 errno={} is_cgi=1\n", libc::ENOENT)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is not fd 0, so the answer is still about fd 0 (/dev/null): CGI.
    assert_eq!(
        run_with(Stdio::null(), &[&format!("127.0.0.1:{port}")]),
        "fd=ok errno=0 is_cgi=1\n"
    );
    if let Ok(v6) = std::net::TcpListener::bind("[::1]:0") {
        let port = v6.local_addr().unwrap().port();
        drop(v6);
        assert_eq!(
            run_with(Stdio::null(), &[&format!("[::1]:{port}")]),
            "fd=ok errno=0 is_cgi=1\n"
        );
    } else {
        eprintln!("note: no IPv6 loopback here; [::1]:port not exercised");
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    assert_eq!(
        run_with(Stdio::null(), &[&format!("127.0.0.1:{port}")]),
        format!("fd=-1 errno={} is_cgi=1\n", libc::EADDRINUSE),
        "a busy port is an error return, not an exit"
    );
}

/// What a minimal FastCGI responder (written here with the codec) received.
#[derive(Debug, Default)]
struct Received {
    request_id: u16,
    params: Vec<u8>,
    stdin: Vec<u8>,
}

/// Serves one request on `listener`: reads BEGIN_REQUEST, PARAMS and STDIN up to their
/// empty records, answers STDERR "warn", STDOUT "body:<stdin>" and END_REQUEST with
/// appStatus 5, then closes.
fn serve_one(listener: std::net::TcpListener) -> std::thread::JoinHandle<Received> {
    use fcgi::protocol::{encode_end_request, encode_record, encode_stream_end, ProtocolStatus};
    use std::io::Read;
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut got = Received::default();
        let mut buf = Vec::new();
        let (mut params_done, mut stdin_done) = (false, false);
        while !(params_done && stdin_done) {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).unwrap();
            assert!(n > 0, "cgi-fcgi closed before the end of STDIN");
            buf.extend_from_slice(&chunk[..n]);
            while let Status::Complete((record, used)) = decode_record(&buf).unwrap() {
                let h = record.header;
                match h.record_type {
                    RecordType::BeginRequest => got.request_id = h.request_id,
                    RecordType::Params if record.content.is_empty() => params_done = true,
                    RecordType::Params => got.params.extend_from_slice(record.content),
                    RecordType::Stdin if record.content.is_empty() => stdin_done = true,
                    RecordType::Stdin => got.stdin.extend_from_slice(record.content),
                    other => panic!("unexpected record {other:?}"),
                }
                buf.drain(..used);
            }
        }
        let id = got.request_id;
        let mut out = Vec::new();
        encode_record(&mut out, RecordType::Stderr, id, b"warn");
        encode_stream_end(&mut out, RecordType::Stderr, id);
        let mut body = b"Content-type: text/plain\r\n\r\nbody:".to_vec();
        body.extend_from_slice(&got.stdin);
        encode_record(&mut out, RecordType::Stdout, id, &body);
        encode_stream_end(&mut out, RecordType::Stdout, id);
        encode_end_request(&mut out, id, 5, ProtocolStatus::RequestComplete);
        conn.write_all(&out).unwrap();
        got
    })
}

/// Runs Debian's `cgi-fcgi -bind` against [`serve_one`], on our library (`Some`) or on the
/// classic one (`None`), with CONTENT_LENGTH 5 and 12 bytes on stdin.
fn bridge(prefix: Option<&Prefix>) -> (Received, Output) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve_one(listener);
    let exe = Path::new("/usr/bin/cgi-fcgi");
    let args = ["-bind", "-connect", &addr.to_string()];
    let env = [("CONTENT_LENGTH", "5"), ("REQUEST_METHOD", "POST")];
    let mut cmd = match prefix {
        Some(prefix) => prefix.command(exe, &args, &env),
        None => {
            let mut cmd = Command::new(exe);
            cmd.args(args).envs(env).env_remove("LD_LIBRARY_PATH");
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd
        }
    };
    let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"abcdeIGNORED")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (server.join().unwrap(), out)
}

/// Debian's `cgi-fcgi` is itself a libfcgi.so.0 program (FCGX_CreateWriter, OS_FcgiConnect,
/// OS_Async*, OS_DoIo, ...): in bridge mode, on our library, it must send the request and
/// relay the answer and exit status, exactly as it does on the classic library.
#[test]
fn debian_cgi_fcgi_bridges_a_request_on_our_library() {
    let test = "debian_cgi_fcgi_bridges_a_request_on_our_library";
    if !Path::new("/usr/bin/cgi-fcgi").exists() {
        if peers_required() {
            panic!("{test}: /usr/bin/cgi-fcgi (libfcgi-bin) is missing");
        }
        eprintln!("SKIPPING {test}: /usr/bin/cgi-fcgi (libfcgi-bin) is missing");
        return;
    }
    let prefix = Prefix::new();
    // Prove which library the loader gives cgi-fcgi with this environment.
    let trace = prefix
        .command(
            Path::new("/usr/bin/cgi-fcgi"),
            &[],
            &[("LD_TRACE_LOADED_OBJECTS", "1")],
        )
        .output()
        .unwrap();
    let trace = String::from_utf8_lossy(&trace.stdout);
    let line = trace
        .lines()
        .find(|l| l.contains("libfcgi.so.0"))
        .expect("libfcgi.so.0 NEEDED");
    assert!(
        line.contains(prefix.so().to_str().unwrap()),
        "cgi-fcgi would load: {line}"
    );

    let (got, out) = bridge(Some(&prefix));
    assert_eq!(got.request_id, 1);
    // cgi-fcgi reads whole buffers of stdin once CONTENT_LENGTH > 0 (that is the tool's
    // behaviour on either library; compared below).
    assert!(got.stdin.starts_with(b"abcde"), "{:?}", got.stdin);
    let mut decoder = fcgi::protocol::ParamsDecoder::new(Default::default());
    decoder.feed(&got.params).unwrap();
    let params = decoder.finish().unwrap();
    assert_eq!(
        params.get(b"REQUEST_METHOD"),
        Some(&b"POST"[..]),
        "the environment is sent as PARAMS"
    );
    let body = format!(
        "Content-type: text/plain\r\n\r\nbody:{}",
        String::from_utf8_lossy(&got.stdin)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), body);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "warn");
    assert_eq!(
        out.status.code(),
        Some(5),
        "END_REQUEST appStatus is the exit status"
    );

    if Path::new("/usr/lib/x86_64-linux-gnu/libfcgi.so.0").exists() {
        let (classic, classic_out) = bridge(None);
        assert_eq!(
            classic.stdin, got.stdin,
            "stdin relayed as on the classic library"
        );
        assert_eq!(classic_out.stdout, out.stdout);
        assert_eq!(classic_out.stderr, out.stderr);
        assert_eq!(classic_out.status.code(), out.status.code());
    }
}

/// `cgi-fcgi -start` on our library: OS_CreateLocalIpcFd makes the listener and
/// OS_SpawnChild starts the application with it as fd 0, where FCGX_IsCGI says FastCGI.
#[test]
fn debian_cgi_fcgi_starts_an_application_on_our_listener() {
    let test = "debian_cgi_fcgi_starts_an_application_on_our_listener";
    if !have_tools(&["cc"], test) {
        return;
    }
    if !Path::new("/usr/bin/cgi-fcgi").exists() {
        if peers_required() {
            panic!("{test}: /usr/bin/cgi-fcgi (libfcgi-bin) is missing");
        }
        eprintln!("SKIPPING {test}: /usr/bin/cgi-fcgi (libfcgi-bin) is missing");
        return;
    }
    let prefix = Prefix::new();
    let iscgi = prefix.compile("iscgi.c", false);
    let result = prefix.dir.path().join("app.out");
    let app = prefix.dir.path().join("bin/app.sh");
    // Write to a temporary name, then rename, so the test never reads half a result.
    std::fs::write(
        &app,
        format!(
            "#!/bin/sh\n\"{exe}\" > \"{out}.tmp\" 2>&1\nmv \"{out}.tmp\" \"{out}\"\n",
            exe = iscgi.display(),
            out = result.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&app).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&app, perms).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    // cgi-fcgi closes its copy of the listener with OS_Close(fd, TRUE), which drains for
    // LIBFCGI_OS_CLOSE_POLL_TIMEOUT ms (2000 by default, on either library).
    let out = prefix
        .command(
            Path::new("/usr/bin/cgi-fcgi"),
            &[
                "-start",
                "-connect",
                &format!("127.0.0.1:{port}"),
                app.to_str().unwrap(),
            ],
            &[("LIBFCGI_OS_CLOSE_POLL_TIMEOUT", "100")],
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1800),
        "LIBFCGI_OS_CLOSE_POLL_TIMEOUT=100 ignored: {:?}",
        started.elapsed()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !result.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the spawned application never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(&result).unwrap(),
        "is_cgi=0\n",
        "fd 0 is the listener"
    );
}

#[test]
fn fcgx_init_installs_libfcgi_signal_handlers() {
    if !have_tools(&["cc"], "fcgx_init_installs_libfcgi_signal_handlers") {
        return;
    }
    let prefix = Prefix::new();
    let exe = prefix.compile("signals.c", false);
    let out = prefix.run(&exe, &[], b"", &[]);
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pipe=lib usr1=mine term=lib restart=0 int=dfl write=EPIPE alive\n"
    );
}

#[test]
fn fcgi_stdio_functions_on_files_empty_wrappers_and_request_streams() {
    let test = "fcgi_stdio_functions_on_files_empty_wrappers_and_request_streams";
    if !have_tools(&["cc"], test) || !have_classic_headers(test) {
        return;
    }
    let prefix = Prefix::new();
    for classic in [false, true] {
        let exe = prefix.compile("stdio_files.c", classic);
        let records = prefix.dir.path().join("records.bin");
        let dir = prefix.dir.path().to_str().unwrap();
        let out = prefix.run(&exe, &[dir, records.to_str().unwrap()], b"", &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with("ok "),
            "classic headers {classic}: {stdout}"
        );
        let content = stdout_content(&std::fs::read(&records).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&content),
            "fprintf 7|fputs|cfwrite|ab"
        );
    }
}

/// `libfcgi.a` carries the C objects too: a program links statically (no libfcgi.so.0
/// needed at all) and the printf family works through the naked exports. `-rdynamic` and
/// `--undefined` keep the marker visible to the program's own `dlsym` check.
#[test]
fn static_library_links_and_runs() {
    if !have_tools(&["cc"], "static_library_links_and_runs") {
        return;
    }
    let lib = built_library().with_file_name("libfcgi.a");
    assert!(lib.exists(), "{} missing", lib.display());
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("printf-static");
    let out = Command::new("cc")
        .args([
            "-std=gnu11",
            "-rdynamic",
            "-Wl,--undefined=fcgi_rs_version",
            "-o",
        ])
        .arg(&exe)
        .arg(format!("-I{}/include", env!("CARGO_MANIFEST_DIR")))
        .arg(c_source("printf.c"))
        .arg(&lib)
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "static link failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if have_tools(&["readelf"], "static_library_links_and_runs") {
        let dynamic = tool_output("readelf", &["-dW"], &exe);
        assert!(
            !dynamic.contains("libfcgi"),
            "linked dynamically after all:\n{dynamic}"
        );
    }
    let run = Command::new(&exe)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{:?} {}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let content = stdout_content(&run.stdout);
    assert!(
        content.starts_with(b"zu=18446744073709551615|lf=2.500000|"),
        "{content:?}"
    );
}

#[test]
fn every_remaining_function_through_the_shared_library() {
    let test = "every_remaining_function_through_the_shared_library";
    if !have_tools(&["cc"], test) || !have_classic_headers(test) {
        return;
    }
    let prefix = Prefix::new();
    for classic in [false, true] {
        let exe = prefix.compile("every.c", classic);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = prefix.run(&exe, &[&port.to_string()], b"stdin-bytes", &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout == "vprintf\nok 51\n",
            "classic headers {classic}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Together, the C and C++ programs that the tests run call every exported function and
/// use `_fcgi_sF` (read from their undefined symbols; layout.c only compiles).
#[test]
fn test_programs_cover_every_exported_symbol() {
    let test = "test_programs_cover_every_exported_symbol";
    if !have_tools(&["cc", "c++", "nm"], test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let include = format!("-I{}/include", env!("CARGO_MANIFEST_DIR"));
    let mut used = BTreeSet::new();
    let programs = std::fs::read_dir(c_source(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| (n.ends_with(".c") || n.ends_with(".cpp")) && !n.starts_with("layout"));
    for name in programs {
        let object = dir.path().join(format!("{name}.o"));
        let compiler = if name.ends_with(".cpp") { "c++" } else { "cc" };
        let out = Command::new(compiler)
            .args(["-c", "-o"])
            .arg(&object)
            .arg(&include)
            .arg(c_source(&name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let undefined = tool_output("nm", &["-u"], &object);
        used.extend(
            undefined
                .lines()
                .filter_map(|l| l.split_whitespace().last())
                .map(str::to_owned),
        );
    }
    let missing: Vec<&str> = include_str!("data/libfcgi-symbols.txt")
        .lines()
        .filter(|s| !used.contains(*s))
        .collect();
    assert!(missing.is_empty(), "no test program calls {missing:?}");
}
