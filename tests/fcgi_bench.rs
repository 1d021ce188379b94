//! The `fcgi-bench` binary against a real PHP-FPM.

mod support_client;

use std::process::Command;

use support_client::PhpFpm;

fn bench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fcgi-bench"))
        .args(args)
        .output()
        .expect("run fcgi-bench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
        .trim()
        .to_string()
}

#[test]
fn counts_requests_connections_and_failures() {
    let Some(fpm) = PhpFpm::start("bench", 4) else {
        return;
    };
    std::fs::write(fpm.dir.path().join("hello.php"), "<?php echo 'hello';").unwrap();
    let script = fpm.script("hello.php");
    let tcp = fpm.tcp().to_string();
    let unix = fpm.unix().to_string();

    let (code, out, _) = bench(&["-n", "200", "-c", "4", "-s", &script, &tcp]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "Completed:"), "200");
    assert_eq!(field(&out, "Failed:"), "0");
    assert_eq!(field(&out, "Non-2xx:"), "0");
    let conns: u64 = field(&out, "Connections:").parse().unwrap();
    assert!((1..=4).contains(&conns), "{out}");
    assert!(
        field(&out, "Throughput:").contains("(1000 bytes of stdout)"),
        "{out}"
    );
    let rps: f64 = field(&out, "Requests/s:").parse().unwrap();
    assert!(rps > 0.0);
    assert!(field(&out, "Latency (ms):").starts_with("min "));

    // Without keep-alive: one connection per request.
    let (code, out, _) = bench(&["-n", "50", "-c", "2", "-K", "-s", &script, &unix]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "Connections:"), "50");

    // For a duration, with a request body (PHP hashes it; all must succeed) and progress.
    let upload = fpm.script("upload.php");
    let (code, out, err) = bench(&["-d", "1.5", "-c", "2", "-b", "100000", "-s", &upload, &tcp]);
    assert_eq!(code, 0, "{out}");
    let done: u64 = field(&out, "Completed:").parse().unwrap();
    assert!(done > 0);
    assert!(err.contains("req/s"), "no progress line: {err}");

    // A missing script: php-fpm's 404, counted apart by status, with a warning.
    let (code, out, err) = bench(&["-n", "5", "-s", "/nonexistent.php", &tcp]);
    assert_eq!(code, 0);
    assert_eq!(field(&out, "Non-2xx:"), "5 (404: 5)");
    assert!(
        err.contains("no answer was 2xx (404: is -s SCRIPT_FILENAME right?)"),
        "{err}"
    );
    // And mixed: a script answering with the status asked for in the query string.
    std::fs::write(
        fpm.dir.path().join("code.php"),
        "<?php http_response_code(intval($_GET['c'] ?? 200));",
    )
    .unwrap();
    let code_php = fpm.script("code.php");
    let (code, out, _) = bench(&["-n", "4", "-s", &code_php, "-p", "QUERY_STRING=c=503", &tcp]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(field(&out, "Non-2xx:"), "4 (503: 4)");
}

#[test]
fn keep_alive_with_defaults_against_five_children() {
    // Issue 9: `fcgi-bench -k` with defaults against pm.max_children = 5 and 32 callers
    // left kept connections waiting for a child that never came (27 failed). Now the pool
    // learns the backend's 5 and nothing fails.
    let Some(fpm) = PhpFpm::start("bench5", 5) else {
        return;
    };
    let script = fpm.script("hello.php");
    let (code, out, err) = bench(&[
        "-k",
        "-c",
        "32",
        "-n",
        "3000",
        "-s",
        &script,
        &fpm.tcp().to_string(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(field(&out, "Failed:"), "0");
    assert_eq!(field(&out, "Completed:"), "3000");
    assert_eq!(field(&out, "Non-2xx:"), "0");
    assert!(
        field(&out, "Backend limit:").starts_with("5 (learned"),
        "{out}"
    );
    assert!(
        err.contains("it accepts no more than 5 connections"),
        "{err}"
    );
}

#[test]
fn failures_and_bad_arguments() {
    let port = support_client::free_port();
    let (code, out, _) = bench(&["-n", "3", &format!("127.0.0.1:{port}")]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(field(&out, "Failed:"), "3");
    assert!(
        field(&out, "First error:").contains("cannot connect"),
        "{out}"
    );

    let (code, _, err) = bench(&["-n", "3", "-d", "1", "127.0.0.1:1"]);
    assert_eq!(code, 2);
    assert!(err.contains("not both"), "{err}");
    let (code, _, err) = bench(&["-x"]);
    assert_eq!(code, 2);
    assert!(err.contains("usage:"), "{err}");
    assert!(err.contains("invalid option '-x'"), "{err}");
    let (code, _, err) = bench(&["-c"]);
    assert_eq!(code, 2);
    assert!(err.contains("missing argument for option '-c'"), "{err}");
    let (code, _, err) = bench(&["-c", "many", "127.0.0.1:1"]);
    assert_eq!(code, 2);
    assert!(err.contains("-c many: not a number"), "{err}");
    // --help: to stdout, exit 0, as users of other tools expect.
    for flag in ["--help", "-h"] {
        let (code, out, err) = bench(&[flag]);
        assert_eq!(code, 0, "{flag}: {err}");
        assert!(out.starts_with("usage: fcgi-bench"), "{out}");
        assert!(out.contains("--max-conns"), "{out}");
    }
    let (code, out, _) = bench(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("fcgi-bench "), "{out}");
}
