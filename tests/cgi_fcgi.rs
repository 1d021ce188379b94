//! Our `cgi-fcgi` beside the classic one (Debian's libfcgi-bin): the same command lines,
//! the same bytes out, the same exit codes; against PHP-FPM, fcgiwrap started by
//! `-start`, and a scripted backend that splits records the classic tool trips on.

mod support_client;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fcgi::protocol::{
    decode_record, encode_end_request, encode_record, encode_stream_end, ProtocolStatus,
    RecordType, Status,
};
use support_client::{peers_required, PhpFpm, TempDir};

const OURS: &str = env!("CARGO_BIN_EXE_cgi-fcgi");
const CLASSIC: &str = "/usr/bin/cgi-fcgi";

fn classic_available() -> bool {
    if Path::new(CLASSIC).exists() {
        return true;
    }
    if peers_required() {
        panic!("{CLASSIC} is required (CI=true or FCGI_REQUIRE_PEERS=1) but not found");
    }
    eprintln!("\n*** SKIPPING: {CLASSIC} (libfcgi-bin) not installed ***\n");
    false
}

/// A named request: its environment and stdin.
type Case = (&'static str, Vec<(String, String)>, Vec<u8>);

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn run(bin: &str, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut child = Command::new(bin)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn same_output_as_the_classic_tool_against_php_fpm() {
    if !classic_available() {
        return;
    }
    let Some(fpm) = PhpFpm::start("cgifcgi", 2) else {
        return;
    };
    let root = fpm.dir.path().display().to_string();
    let base = |script: &str, method: &str, query: &str| -> Vec<(String, String)> {
        vec![
            ("SCRIPT_FILENAME".into(), format!("{root}/{script}")),
            ("SCRIPT_NAME".into(), format!("/{script}")),
            ("REQUEST_METHOD".into(), method.into()),
            ("QUERY_STRING".into(), query.into()),
            ("SERVER_PROTOCOL".into(), "HTTP/1.1".into()),
            ("HTTP_HOST".into(), "example.test".into()),
        ]
    };
    let form = b"a=1&b=two+words".to_vec();
    let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut cases: Vec<Case> = vec![
        ("get", base("env.php", "GET", "q=%41&x=1"), Vec::new()),
        ("status", base("status.php", "GET", "code=201"), Vec::new()),
        ("warn", base("warn.php", "GET", ""), Vec::new()),
        ("missing", base("missing.php", "GET", ""), Vec::new()),
    ];
    let mut post = base("env.php", "POST", "");
    post.push((
        "CONTENT_TYPE".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    post.push(("CONTENT_LENGTH".into(), form.len().to_string()));
    cases.push(("post", post, form));
    let mut up = base("upload.php", "PUT", "");
    up.push(("CONTENT_LENGTH".into(), upload.len().to_string()));
    cases.push(("upload", up, upload));
    for addr in [fpm.tcp().to_string(), fpm.sock.display().to_string()] {
        for (name, env, stdin) in &cases {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let args = ["-bind", "-connect", addr.as_str()];
            let classic = run(CLASSIC, &args, &env, stdin);
            let ours = run(OURS, &args, &env, stdin);
            assert_eq!(ours.code, classic.code, "{name} over {addr}: exit code");
            assert_eq!(
                text(&ours.stdout),
                text(&classic.stdout),
                "{name} over {addr}: stdout"
            );
            assert_eq!(
                text(&ours.stderr),
                text(&classic.stderr),
                "{name} over {addr}: stderr"
            );
            assert!(!ours.stdout.is_empty(), "{name}: empty answer");
        }
    }
    // Spot checks that the comparison compared something real.
    let env: Vec<(&str, &str)> = cases[2]
        .1
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let warn = run(
        OURS,
        &["-bind", "-connect", &fpm.tcp().to_string()],
        &env,
        b"",
    );
    assert!(text(&warn.stderr).contains("client-test-warning"));
    assert!(text(&warn.stdout).ends_with("done"));
}

/// A CGI script for fcgiwrap.
fn hello_script(dir: &Path) -> String {
    let path = dir.join("hello.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello %s\\n' \"$QUERY_STRING\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Runs our tool under `setsid`, so whatever it starts stays in a process group we can
/// stop; returns its exit code, the first line of its stdout (when `capture`), and that
/// group id. The started applications inherit stdout, so it is read only up to a newline.
fn run_setsid(args: &[&str], env: &[(&str, &str)], capture: bool) -> (i32, Vec<u8>, u32) {
    let mut child = Command::new("setsid")
        .arg(OURS)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pgid = child.id();
    let reader = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"\n") {
                    break;
                }
            }
            got
        })
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            kill_group(pgid);
            panic!("cgi-fcgi did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = reader.map(|r| r.join().unwrap()).unwrap_or_default();
    (status.code().unwrap_or(-1), stdout, pgid)
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} never accepted",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn start_and_connect_forms_with_fcgiwrap() {
    if !classic_available() {
        return;
    }
    if !Path::new("/usr/sbin/fcgiwrap").exists() {
        assert!(!peers_required(), "fcgiwrap is required but not installed");
        eprintln!("\n*** SKIPPING: fcgiwrap not installed ***\n");
        return;
    }
    let dir = TempDir::new("cgifcgi-start");
    let script = hello_script(dir.path());
    let sock = dir.path().join("wrap.sock");
    let sock_s = sock.display().to_string();
    let env = [
        ("SCRIPT_FILENAME", script.as_str()),
        ("QUERY_STRING", "x=1"),
        ("REQUEST_METHOD", "GET"),
    ];

    // -start: listens, starts two fcgiwrap on fd 0, exits 0.
    let (code, _, pgid) = run_setsid(
        &["-start", "-connect", &sock_s, "/usr/sbin/fcgiwrap", "2"],
        &env,
        false,
    );
    assert_eq!(code, 0);
    wait_for_socket(&sock);
    // -bind: ours and the classic tool get the same answer from it.
    let ours = run(OURS, &["-bind", "-connect", &sock_s], &env, b"");
    let classic = run(CLASSIC, &["-bind", "-connect", &sock_s], &env, b"");
    assert_eq!(
        text(&ours.stdout),
        "Content-Type: text/plain\r\n\r\nhello x=1\n"
    );
    assert_eq!(ours.stdout, classic.stdout);
    assert_eq!(ours.code, classic.code);

    // -f: the arguments from a command file (comments and a #! line skipped).
    let cmd = dir.path().join("cmd");
    std::fs::write(
        &cmd,
        format!("#!{OURS} -f\n# a comment\n-bind -connect {sock_s}\n"),
    )
    .unwrap();
    let from_file = run(OURS, &["-f", &cmd.display().to_string()], &env, b"");
    assert_eq!(from_file.stdout, ours.stdout);
    kill_group(pgid);

    // -connect NAME APP: nothing listens yet, so it starts the app, then bridges.
    let sock2 = dir.path().join("wrap2.sock");
    let sock2_s = sock2.display().to_string();
    let (code, first, pgid2) =
        run_setsid(&["-connect", &sock2_s, "/usr/sbin/fcgiwrap"], &env, true);
    assert_eq!(code, 0);
    assert_eq!(text(&first), "Content-Type: text/plain\r\n\r\nhello x=1\n");
    // Now it is running: the same command line only bridges.
    let second = run(
        OURS,
        &["-connect", &sock2_s, "/usr/sbin/fcgiwrap"],
        &env,
        b"",
    );
    assert_eq!(second.stdout, first);
    kill_group(pgid2);

    // Bad command lines and an unreachable application: same exit codes and messages.
    for args in [
        &[][..],
        &["-bind"][..],
        &["-start", "-connect", "x.sock"][..],
        &["-bind", "-connect", "/nonexistent/dir/sock"][..],
        &["-bind", "-connect", "127.0.0.1:1"][..],
        &["-bogus", "-connect", "x"][..],
    ] {
        let ours = run(OURS, args, &env, b"");
        let classic = run(CLASSIC, args, &env, b"");
        assert_eq!(ours.code, classic.code, "{args:?}");
        assert_eq!(text(&ours.stderr), text(&classic.stderr), "{args:?}");
    }
}

/// A backend that answers one request with `wire`, written `chunk` bytes at a time.
fn scripted(wire: Vec<u8>, chunk: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let wire = wire.clone();
            std::thread::spawn(move || {
                // Read the request up to the empty STDIN record.
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                'read: loop {
                    let mut rest = &got[..];
                    while let Ok(Status::Complete((rec, used))) = decode_record(rest) {
                        if rec.header.record_type == RecordType::Stdin && rec.content.is_empty() {
                            break 'read;
                        }
                        rest = &rest[used..];
                    }
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.set_nodelay(true);
                for piece in wire.chunks(chunk) {
                    if s.write_all(piece).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
    });
    addr
}

#[test]
fn robust_where_the_classic_tool_is_not() {
    if !Path::new(CLASSIC).exists() && peers_required() {
        panic!("{CLASSIC} required");
    }
    // Management records in the middle, padding, and every record split in 3-byte writes.
    let mut wire = Vec::new();
    encode_record(
        &mut wire,
        RecordType::GetValuesResult,
        0,
        b"\x0f\x01FCGI_MPXS_CONNS0",
    );
    encode_record(
        &mut wire,
        RecordType::UnknownType,
        0,
        &[200, 0, 0, 0, 0, 0, 0, 0],
    );
    let mut padded = fcgi::protocol::Header::new(RecordType::Stdout, 1, 20);
    padded.padding_length = 4;
    wire.extend_from_slice(&padded.encode());
    wire.extend_from_slice(b"Status: 200 OK\r\n\r\nhi");
    wire.extend_from_slice(&[0; 4]);
    encode_record(&mut wire, RecordType::Stderr, 1, b"note\n");
    encode_record(&mut wire, RecordType::Stdout, 1, b" there");
    encode_stream_end(&mut wire, RecordType::Stdout, 1);
    encode_end_request(&mut wire, 1, 7, ProtocolStatus::RequestComplete);
    let addr = scripted(wire, 3);
    let ours = run(OURS, &["-bind", "-connect", &addr], &[], b"");
    assert_eq!(text(&ours.stdout), "Status: 200 OK\r\n\r\nhi there");
    assert_eq!(text(&ours.stderr), "note\n");
    assert_eq!(ours.code, 7, "exit code is the app status");
    if Path::new(CLASSIC).exists() {
        let classic = run(CLASSIC, &["-bind", "-connect", &addr], &[], b"");
        eprintln!(
            "classic cgi-fcgi on the same answer: exit {}, stdout {:?}",
            classic.code,
            text(&classic.stdout)
        );
    }

    // A refusal: both tools exit with FCGX_PROTOCOL_ERROR (253); ours also says why.
    let mut wire = Vec::new();
    encode_end_request(&mut wire, 1, 0, ProtocolStatus::Overloaded);
    let addr = scripted(wire, 64);
    let ours = run(OURS, &["-bind", "-connect", &addr], &[], b"");
    assert_eq!(ours.code, 253);
    assert!(text(&ours.stderr).contains("FCGI_OVERLOADED"));
    if Path::new(CLASSIC).exists() {
        let classic = run(CLASSIC, &["-bind", "-connect", &addr], &[], b"");
        assert_eq!(classic.code, 253);
    }
}

fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

#[test]
fn same_output_as_the_classic_tool_against_the_crate_examples() {
    if !classic_available() {
        return;
    }
    for (name, status) in [("echo", 0), ("hello", 0), ("filter", 0)] {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut app = Command::new(example(name))
            .arg(&addr)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the examples are built by cargo test");
        let t = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{name} did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let body: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let len = body.len().to_string();
        let env = [
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_LENGTH", len.as_str()),
            ("QUERY_STRING", "x=1&y=2"),
            ("SCRIPT_NAME", "/app"),
        ];
        let args = ["-bind", "-connect", addr.as_str()];
        let ours = run(OURS, &args, &env, &body);
        let classic = run(CLASSIC, &args, &env, &body);
        assert_eq!(ours.code, status, "{name}: {}", text(&ours.stderr));
        assert_eq!(ours.code, classic.code, "{name}: exit codes");
        assert_eq!(text(&ours.stdout), text(&classic.stdout), "{name}: stdout");
        assert!(!ours.stdout.is_empty());
        app.kill().unwrap();
        app.wait().unwrap();
    }
}

#[test]
fn help_exits_0_and_bad_arguments_exit_1() {
    for flag in ["--help", "-h"] {
        let r = run(OURS, &[flag], &[], b"");
        assert_eq!(r.code, 0, "{flag}");
        let out = String::from_utf8_lossy(&r.stdout);
        assert!(out.starts_with("Usage:"), "{out}");
        assert!(out.contains("-bind -connect"), "{out}");
    }
    // Anything else unknown: the classic message and status.
    let r = run(OURS, &["-x"], &[], b"");
    assert_eq!(r.code, 1);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("Unknown option -x"), "{err}");
    assert!(err.contains("Usage:"), "{err}");
}
