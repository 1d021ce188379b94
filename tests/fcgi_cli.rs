//! The `fcgi` command line: every option against the crate's own server (in this test, over
//! TCP and a Unix socket) and against a real PHP-FPM; exit statuses; usage and `--help`.

mod support_client;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use fcgi::server::{Config as ServerConfig, ShutdownHandle};
use support_client::{sha1_of, PhpFpm, TempDir};

const FCGI: &str = env!("CARGO_BIN_EXE_fcgi");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `fcgi` with `args` and `stdin`, bounded in time by its own --max-time where given
/// and by the test server's answers.
fn fcgi(args: &[&str], stdin: &[u8]) -> Out {
    let mut child = Command::new(FCGI)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fcgi");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The crate's server with routes like a small PHP site; stopped on drop.
struct Own {
    tcp: String,
    unix: String,
    stops: Vec<ShutdownHandle>,
    _dir: TempDir,
}

impl Drop for Own {
    fn drop(&mut self) {
        for s in &self.stops {
            s.shutdown();
        }
    }
}

fn app(req: &mut fcgi::Request) -> std::io::Result<()> {
    // Routed by the script's file name, wherever its directory.
    let name = req.param("SCRIPT_FILENAME").unwrap_or("");
    let script = format!("/{}", name.rsplit('/').next().unwrap_or(""));
    let query = req.param("QUERY_STRING").unwrap_or("").to_owned();
    match script.as_str() {
        "/echo.php" => {
            let mut lines: Vec<String> = req
                .params()
                .map(|p| {
                    format!(
                        "{}={}",
                        String::from_utf8_lossy(p.name),
                        String::from_utf8_lossy(p.value)
                    )
                })
                .collect();
            lines.sort();
            let mut body = Vec::new();
            req.stdin().read_to_end(&mut body)?;
            let method = req.param("REQUEST_METHOD").unwrap_or("").to_owned();
            write!(
                req.stdout(),
                "Content-Type: text/plain\r\nX-Method: {method}\r\n\r\n{}\n--\n",
                lines.join("\n")
            )?;
            req.stdout().write_all(&body)
        }
        "/hash.php" => {
            let mut h: u64 = 0xcbf29ce484222325;
            let (mut n, mut buf) = (0u64, vec![0; 65536]);
            loop {
                let got = req.stdin().read(&mut buf)?;
                if got == 0 {
                    break;
                }
                for &b in &buf[..got] {
                    h = (h ^ b as u64).wrapping_mul(0x100000001b3);
                }
                n += got as u64;
            }
            req.respond(200, &[], format!("{n} {h:016x}").as_bytes())
        }
        "/status.php" => {
            let code: u16 = query
                .strip_prefix("code=")
                .unwrap_or("200")
                .parse()
                .unwrap_or(200);
            req.respond(code, &[("X-Code", &code.to_string())], b"status page")
        }
        "/warn.php" => {
            req.stderr().write_all(b"app warning\n")?;
            req.respond(200, &[], b"warned")
        }
        "/slow.php" => {
            std::thread::sleep(Duration::from_secs(3));
            req.respond(200, &[], b"late")
        }
        _ => req.respond(404, &[], b"no such script"),
    }
}

fn own() -> Own {
    let dir = TempDir::new("cli");
    let sock = dir.path().join("own.sock").display().to_string();
    let mut stops = Vec::new();
    let mut addrs = Vec::new();
    for a in ["127.0.0.1:0", sock.as_str()] {
        let mut cfg = ServerConfig::default();
        cfg.handle_signals = false;
        let server = fcgi::Server::bind(a).unwrap().config_with(cfg);
        addrs.push(server.local_addrs()[0].clone());
        stops.push(server.shutdown_handle());
        std::thread::spawn(move || server.serve(app));
    }
    Own {
        tcp: format!("fcgi://{}", addrs[0]),
        unix: format!("unix:{sock}:"),
        stops,
        _dir: dir,
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn has_line(out: &str, line: &str) -> bool {
    out.lines().any(|l| l == line)
}

#[test]
fn own_server_get_params_and_query_over_tcp_and_unix() {
    let srv = own();
    for base in [&srv.tcp, &srv.unix] {
        let url = format!("{base}/srv/www/echo.php?a=1&b=two");
        let o = fcgi(&[&url], b"");
        assert_eq!(o.code, 0, "{url}: {}", o.stderr);
        // Without -i, the body only.
        assert!(!o.stdout.contains("X-Method"), "{}", o.stdout);
        for line in [
            "SCRIPT_FILENAME=/srv/www/echo.php",
            "SCRIPT_NAME=/echo.php",
            "DOCUMENT_ROOT=/srv/www",
            "REQUEST_URI=/echo.php?a=1&b=two",
            "QUERY_STRING=a=1&b=two",
            "REQUEST_METHOD=GET",
            "SERVER_PROTOCOL=HTTP/1.1",
            "GATEWAY_INTERFACE=CGI/1.1",
            "REMOTE_ADDR=127.0.0.1",
            "HTTP_HOST=localhost",
            "REDIRECT_STATUS=200",
        ] {
            assert!(
                has_line(&o.stdout, line),
                "{url}: no {line} in\n{}",
                o.stdout
            );
        }
        assert!(!o.stdout.contains("CONTENT_LENGTH"), "{}", o.stdout);
    }
    // --root: SCRIPT_NAME is the path under it.
    let o = fcgi(
        &["--root", "/srv", &format!("{}/srv/www/echo.php", srv.tcp)],
        b"",
    );
    assert!(
        has_line(&o.stdout, "SCRIPT_NAME=/www/echo.php"),
        "{}",
        o.stdout
    );
    assert!(has_line(&o.stdout, "DOCUMENT_ROOT=/srv"), "{}", o.stdout);
    // But a script under another root is a usage error.
    let o = fcgi(
        &[
            "--root",
            "/elsewhere",
            &format!("{}/srv/www/echo.php", srv.tcp),
        ],
        b"",
    );
    assert_eq!(o.code, 2, "{}", o.stderr);
}

#[test]
fn own_server_method_data_headers_params_include_verbose_output() {
    let srv = own();
    let echo = format!("{}/srv/echo.php", srv.tcp);
    // -X
    let o = fcgi(&["-i", "-X", "PUT", &echo], b"");
    assert!(
        o.stdout
            .starts_with("Content-Type: text/plain\r\nX-Method: PUT\r\n\r\n"),
        "{}",
        o.stdout
    );
    // -d twice: joined with '&', a form POST.
    let o = fcgi(&["-d", "a=1", "-d", "b=2", &echo], b"");
    assert_eq!(o.code, 0, "{}", o.stderr);
    for line in [
        "REQUEST_METHOD=POST",
        "CONTENT_LENGTH=7",
        "CONTENT_TYPE=application/x-www-form-urlencoded",
    ] {
        assert!(has_line(&o.stdout, line), "no {line} in\n{}", o.stdout);
    }
    assert!(o.stdout.ends_with("--\na=1&b=2"), "{}", o.stdout);
    // -H: HTTP_*, Content-Type, Host; Proxy dropped (httpoxy); 'Name:' removes a default.
    let o = fcgi(
        &[
            "-H",
            "X-Forwarded-For: 10.0.0.1",
            "-H",
            "Content-Type: application/json",
            "-H",
            "Host: example.test:8080",
            "-H",
            "Proxy: http://evil/",
            "-H",
            "Accept-Language:",
            "-d",
            "{}",
            &echo,
        ],
        b"",
    );
    for line in [
        "HTTP_X_FORWARDED_FOR=10.0.0.1",
        "CONTENT_TYPE=application/json",
        "HTTP_HOST=example.test:8080",
        "SERVER_NAME=example.test",
    ] {
        assert!(has_line(&o.stdout, line), "no {line} in\n{}", o.stdout);
    }
    assert!(!o.stdout.contains("HTTP_PROXY"), "{}", o.stdout);
    assert!(!o.stdout.contains("ACCEPT_LANGUAGE"), "{}", o.stdout);
    // -p sets a param as given, over the defaults.
    let o = fcgi(
        &["-p", "REMOTE_ADDR=192.0.2.7", "-p", "APP_ENV=test", &echo],
        b"",
    );
    assert!(has_line(&o.stdout, "REMOTE_ADDR=192.0.2.7"), "{}", o.stdout);
    assert!(has_line(&o.stdout, "APP_ENV=test"), "{}", o.stdout);
    assert!(
        !has_line(&o.stdout, "REMOTE_ADDR=127.0.0.1"),
        "{}",
        o.stdout
    );
    // -v: the params and every record, on stderr; the body unchanged on stdout.
    let o = fcgi(&["-v", "-d", "x=1", &echo], b"");
    assert_eq!(o.code, 0);
    for needle in [
        "> BEGIN_REQUEST id=1 8 bytes role=RESPONDER flags=0",
        ">   SCRIPT_FILENAME=/srv/echo.php",
        "> STDIN id=1 3 bytes",
        "> STDIN id=1 0 bytes (end of stream)",
        "< STDOUT id=1",
        "< END_REQUEST id=1 8 bytes app_status=0 protocol_status=RequestComplete",
    ] {
        assert!(o.stderr.contains(needle), "no {needle:?} in\n{}", o.stderr);
    }
    assert!(o.stdout.ends_with("--\nx=1"), "{}", o.stdout);
    // The application's stderr goes to stderr, never into the body.
    let o = fcgi(&[&format!("{}/srv/warn.php", srv.tcp)], b"");
    assert_eq!((o.code, o.stdout.as_str()), (0, "warned"));
    assert!(o.stderr.contains("app warning"), "{}", o.stderr);
    // -o FILE
    let dir = TempDir::new("cli-out");
    let file = dir.path().join("body.txt");
    let o = fcgi(
        &[
            "-o",
            file.to_str().unwrap(),
            &format!("{}/srv/warn.php", srv.tcp),
        ],
        b"",
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "warned");
}

#[test]
fn own_server_data_from_a_file_and_from_stdin_streamed() {
    let srv = own();
    let hash = format!("{}/srv/hash.php", srv.tcp);
    let dir = TempDir::new("cli-data");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let path = dir.path().join("upload.bin");
    std::fs::write(&path, &data).unwrap();
    let expect = format!("{} {:016x}", data.len(), fnv(&data));
    let o = fcgi(&["-d", &format!("@{}", path.display()), &hash], b"");
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, expect.as_str()),
        "{}",
        o.stderr
    );
    let o = fcgi(&["-d", "@-", &hash], &data);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, expect.as_str()),
        "{}",
        o.stderr
    );
    // A file and a string, joined by '&'.
    std::fs::write(dir.path().join("small"), b"a=1").unwrap();
    let o = fcgi(
        &[
            "-d",
            &format!("@{}", dir.path().join("small").display()),
            "-d",
            "b=2",
            &hash,
        ],
        b"",
    );
    assert_eq!(o.stdout, format!("7 {:016x}", fnv(b"a=1&b=2")));
    // A file that cannot be read: curl's 26, before connecting.
    let o = fcgi(&["-d", "@/nonexistent/file", &hash], b"");
    assert_eq!(o.code, 26, "{}", o.stderr);
    assert!(
        o.stderr.contains("cannot read /nonexistent/file"),
        "{}",
        o.stderr
    );
}

#[test]
fn exit_status_follows_the_answer() {
    let srv = own();
    let status = |code: u16| fcgi(&[&format!("{}/srv/status.php?code={code}", srv.tcp)], b"");
    assert_eq!(status(200).code, 0);
    assert_eq!(status(302).code, 0);
    let o = status(404);
    assert_eq!((o.code, o.stdout.as_str()), (22, "status page"));
    assert_eq!(status(503).code, 22);
    // -i shows the head the application sent.
    let o = fcgi(
        &["-i", &format!("{}/srv/status.php?code=404", srv.tcp)],
        b"",
    );
    assert!(o.stdout.starts_with("Status: 404"), "{}", o.stdout);
    assert!(
        o.stdout.contains("X-Code: 404\r\n\r\nstatus page"),
        "{}",
        o.stdout
    );
    // --max-time: curl's 28.
    let o = fcgi(&["-m", "0.3", &format!("{}/srv/slow.php", srv.tcp)], b"");
    assert_eq!(o.code, 28, "{}", o.stderr);
    assert!(o.stderr.contains("timed out"), "{}", o.stderr);
    // Nobody listening: 7.
    let port = support_client::free_port();
    let o = fcgi(&[&format!("fcgi://127.0.0.1:{port}/x.php")], b"");
    assert_eq!(o.code, 7, "{}", o.stderr);
    assert!(o.stderr.starts_with("fcgi: cannot connect"), "{}", o.stderr);
    // Closed without an answer: 52; an answer that is not FastCGI: 8.
    for (bytes, code) in [(&b""[..], 52), (&b"HTTP/1.1 200 OK\r\n\r\n"[..], 8)] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(bytes);
            let _ = s.shutdown(Shutdown::Both);
        });
        let o = fcgi(&[&format!("fcgi://{addr}/x.php")], b"");
        assert_eq!(o.code, code, "{}", o.stderr);
        h.join().unwrap();
    }
}

#[test]
fn usage_help_and_bad_urls() {
    let o = fcgi(&["--help"], b"");
    assert_eq!(o.code, 0);
    assert!(o.stdout.starts_with("usage: fcgi"), "{}", o.stdout);
    for opt in [
        "-X",
        "-d @FILE",
        "-H",
        "-i",
        "-v",
        "--status",
        "--ping",
        "Exit status",
    ] {
        assert!(o.stdout.contains(opt), "--help lacks {opt}");
    }
    assert_eq!(fcgi(&["-h"], b"").code, 0);
    let o = fcgi(&["--version"], b"");
    assert_eq!(o.code, 0);
    assert!(o.stdout.starts_with("fcgi "), "{}", o.stdout);
    // Errors as curl's: a message, the usage, 2.
    for (args, needle) in [
        (&[][..], "no URL given"),
        (
            &["--bogus", "fcgi://127.0.0.1/x"][..],
            "invalid option '--bogus'",
        ),
        (&["-X"][..], "missing argument for option '-X'"),
        (
            &["-H", "nocolon", "fcgi://127.0.0.1/x"][..],
            "expected 'NAME: VALUE'",
        ),
        (
            &["fcgi://127.0.0.1/a", "fcgi://127.0.0.1/b"][..],
            "only one URL",
        ),
    ] {
        let o = fcgi(args, b"");
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(needle), "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains("usage: fcgi"), "{}", o.stderr);
    }
    // Bad URLs: curl's 3.
    for url in [
        "http://127.0.0.1/x.php",
        "fcgi:///x.php",
        "fcgi://127.0.0.1:9000",
        "unix:",
    ] {
        let o = fcgi(&[url], b"");
        assert_eq!(o.code, 3, "{url}: {}", o.stderr);
    }
}

// ---- against PHP-FPM ----

#[test]
fn php_fpm_get_post_upload_headers_and_status() {
    let Some(fpm) = PhpFpm::start("cli", 2) else {
        return;
    };
    let tcp = format!("fcgi://127.0.0.1:{}", fpm.port);
    let unix = format!("unix:{}:", fpm.sock.display());
    for base in [&tcp, &unix] {
        let o = fcgi(
            &[&format!("{base}{}?a=1&b=x%20y", fpm.script("echo.php"))],
            b"",
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        for line in ["method=GET", "query=a=1&b=x%20y", "get.a=1", "get.b=x y"] {
            assert!(
                has_line(&o.stdout, line),
                "{base}: no {line} in\n{}",
                o.stdout
            );
        }
    }
    let env = format!("{tcp}{}", fpm.script("env.php"));
    // -d: a form POST PHP parses; -H and -X; -i shows PHP's head.
    let o = fcgi(
        &[
            "-i",
            "-X",
            "PATCH",
            "-d",
            "a=1",
            "-d",
            "b=two",
            "-H",
            "X-Forwarded-For: 10.1.2.3",
            &env,
        ],
        b"",
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("X-Seen-Method: PATCH\r\n"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("Content-type: text/plain;charset=UTF-8\r\n"),
        "{}",
        o.stdout
    );
    for line in [
        "HTTP_X_FORWARDED_FOR=10.1.2.3",
        "CONTENT_LENGTH=9",
        "CONTENT_TYPE=application/x-www-form-urlencoded",
        &format!("SCRIPT_FILENAME={}", fpm.script("env.php")),
        "SCRIPT_NAME=/env.php",
        "PHP_SELF=/env.php",
        "REQUEST_URI=/env.php",
    ] {
        assert!(has_line(&o.stdout, line), "no {line} in\n{}", o.stdout);
    }
    let o = fcgi(&["-d", "a=1", "-d", "b=two", &env], b"");
    assert!(
        has_line(&o.stdout, "post.a=1") && has_line(&o.stdout, "post.b=two"),
        "{}",
        o.stdout
    );
    // -d @file: PHP hashes what it read.
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let path = fpm.dir.path().join("up.bin");
    std::fs::write(&path, &data).unwrap();
    let (sha, _) = sha1_of(&data[..]).unwrap();
    let upload = format!("{tcp}{}", fpm.script("upload.php"));
    let o = fcgi(
        &[
            "-H",
            "Content-Type: application/octet-stream",
            "-d",
            &format!("@{}", path.display()),
            &upload,
        ],
        b"",
    );
    assert_eq!(o.stdout, format!("{} {sha}", data.len()), "{}", o.stderr);
    // -d @- (stdin), -p, -o against PHP too.
    let o = fcgi(
        &[
            "-H",
            "Content-Type: application/octet-stream",
            "-d",
            "@-",
            &upload,
        ],
        &data,
    );
    assert_eq!(o.stdout, format!("{} {sha}", data.len()), "{}", o.stderr);
    let o = fcgi(
        &[
            "-p",
            "QUERY_STRING=p=9",
            &format!("{tcp}{}", fpm.script("echo.php")),
        ],
        b"",
    );
    assert!(has_line(&o.stdout, "get.p=9"), "{}", o.stdout);
    let out = fpm.dir.path().join("out.txt");
    let o = fcgi(
        &[
            "-o",
            out.to_str().unwrap(),
            &format!("{tcp}{}?x=1", fpm.script("echo.php")),
        ],
        b"",
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
    assert!(std::fs::read_to_string(&out).unwrap().contains("get.x=1\n"));
    // The status decides the exit code; PHP's warnings arrive on stderr.
    let status = format!("{tcp}{}", fpm.script("status.php"));
    assert_eq!(fcgi(&[&format!("{status}?code=201")], b"").code, 0);
    let o = fcgi(&[&format!("{status}?code=404")], b"");
    assert_eq!((o.code, o.stdout.as_str()), (22, "code 404"));
    let o = fcgi(&[&format!("{tcp}{}", fpm.script("warn.php"))], b"");
    assert_eq!((o.code, o.stdout.as_str()), (0, "done"));
    assert!(o.stderr.contains("client-test-warning"), "{}", o.stderr);
    // A script PHP-FPM cannot find: its 404 and "Primary script unknown".
    let o = fcgi(&[&format!("{tcp}/nonexistent/x.php")], b"");
    assert_eq!(o.code, 22, "{}", o.stderr);
    assert!(o.stderr.contains("Primary script unknown"), "{}", o.stderr);
    // -v shows PHP-FPM's records.
    let o = fcgi(&["-v", &format!("{status}?code=200")], b"");
    assert!(o.stderr.contains("< STDOUT id=1"), "{}", o.stderr);
    assert!(
        o.stderr.contains("< END_REQUEST id=1 8 bytes app_status=0"),
        "{}",
        o.stderr
    );
}

#[test]
fn php_fpm_status_and_ping_pages() {
    let Some(fpm) = PhpFpm::start("cli-pages", 2) else {
        return;
    };
    let tcp = format!("fcgi://127.0.0.1:{}", fpm.port);
    let o = fcgi(&["--status", &format!("{tcp}/fpm-status")], b"");
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        has_line(&o.stdout, "pool:                 tcp"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("accepted conn:"), "{}", o.stdout);
    let o = fcgi(&["--status", &format!("{tcp}/fpm-status?json")], b"");
    assert!(o.stdout.starts_with("{\"pool\":\"tcp\""), "{}", o.stdout);
    let o = fcgi(
        &[
            "--status",
            &format!("unix:{}:/fpm-status?full", fpm.sock.display()),
        ],
        b"",
    );
    assert!(
        has_line(&o.stdout, "pool:                 unix"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("************************"),
        "{}",
        o.stdout
    );
    let o = fcgi(&["--ping", &format!("{tcp}/fpm-ping")], b"");
    assert_eq!((o.code, o.stdout.as_str()), (0, "pong"), "{}", o.stderr);
    // The default paths (/status, /ping) are not configured here: PHP-FPM answers 404.
    let o = fcgi(&["--ping", &tcp], b"");
    assert_eq!(o.code, 22, "{}", o.stdout);
    let o = fcgi(
        &[
            "-i",
            "--ping",
            &format!("unix:{}:/fpm-ping", fpm.sock.display()),
        ],
        b"",
    );
    assert!(o.stdout.contains("\r\n\r\npong"), "{}", o.stdout);
}
