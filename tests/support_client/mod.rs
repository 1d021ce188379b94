//! A real PHP-FPM for the client tests: own config, php.ini and scripts in a temp dir, one pool
//! on a loopback TCP port and one on a Unix socket, started under `setsid` and stopped by
//! process group.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const PHP_FPM: &str = "php-fpm8.2";

/// True when a missing peer must fail the test instead of skipping it.
pub fn peers_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("FCGI_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "fcgi-client-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running php-fpm master with its children, in its own process group.
pub struct PhpFpm {
    pub dir: TempDir,
    pub port: u16,
    pub sock: PathBuf,
    pub max_children: usize,
    child: Option<Child>,
}

impl PhpFpm {
    /// Starts php-fpm with `max_children` static workers per pool and the test scripts, or
    /// returns `None` (after saying so loudly) when php-fpm is not installed and peers are
    /// not required.
    pub fn start(tag: &str, max_children: usize) -> Option<PhpFpm> {
        PhpFpm::start_with(tag, max_children, "")
    }

    /// As [`PhpFpm::start`], with `extra` lines added to both pools' config.
    pub fn start_with(tag: &str, max_children: usize, extra: &str) -> Option<PhpFpm> {
        if !have(PHP_FPM) {
            if peers_required() {
                panic!("{PHP_FPM} is required (CI=true or FCGI_REQUIRE_PEERS=1) but not found");
            }
            eprintln!("\n*** SKIPPING: {PHP_FPM} not installed; set FCGI_REQUIRE_PEERS=1 to fail instead ***\n");
            return None;
        }
        let dir = TempDir::new(tag);
        let port = free_port();
        let sock = dir.path().join("fpm.sock");
        let d = dir.path().display().to_string();
        let conf = format!(
            "[global]\n\
             pid = {d}/fpm.pid\n\
             error_log = {d}/fpm.log\n\
             log_level = notice\n\
             daemonize = no\n\
             \n\
             [tcp]\n\
             user = root\n\
             group = root\n\
             listen = 127.0.0.1:{port}\n\
             pm = static\n\
             pm.max_children = {max_children}\n\
             pm.status_path = /fpm-status\n\
             ping.path = /fpm-ping\n\
             catch_workers_output = yes\n\
             request_terminate_timeout = 60s\n\
             {extra}\n\
             \n\
             [unix]\n\
             user = root\n\
             group = root\n\
             listen = {d}/fpm.sock\n\
             pm = static\n\
             pm.max_children = {max_children}\n\
             pm.status_path = /fpm-status\n\
             ping.path = /fpm-ping\n\
             catch_workers_output = yes\n\
             request_terminate_timeout = 60s\n\
             {extra}\n"
        );
        std::fs::write(dir.path().join("fpm.conf"), conf).unwrap();
        std::fs::write(
            dir.path().join("php.ini"),
            "display_errors = Off\nlog_errors = On\nerror_reporting = E_ALL\n\
             post_max_size = 64M\nmemory_limit = 256M\noutput_buffering = 4096\n\
             max_execution_time = 60\n",
        )
        .unwrap();
        write_scripts(dir.path());
        let mut fpm = PhpFpm {
            dir,
            port,
            sock,
            max_children,
            child: None,
        };
        fpm.launch();
        Some(fpm)
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let child = Command::new("setsid")
            .arg(PHP_FPM)
            .args(["-F", "-R", "-y"])
            .arg(d.join("fpm.conf"))
            .arg("-c")
            .arg(d.join("php.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn php-fpm under setsid");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let tcp_ok = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            let unix_ok = UnixStream::connect(&self.sock).is_ok();
            if tcp_ok && unix_ok {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "php-fpm exited early ({status}); log:\n{}",
                        std::fs::read_to_string(d.join("fpm.log")).unwrap_or_default()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "php-fpm did not accept within 15 s; log:\n{}",
                std::fs::read_to_string(d.join("fpm.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The TCP address.
    pub fn tcp(&self) -> fcgi::client::Address {
        fcgi::client::Address::Tcp(([127, 0, 0, 1], self.port).into())
    }

    /// The Unix socket address.
    pub fn unix(&self) -> fcgi::client::Address {
        fcgi::client::Address::Unix(self.sock.clone())
    }

    /// The full path of a test script.
    pub fn script(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = self.child.as_ref() {
            // The master is the group leader (setsid): signal the whole group.
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg("--")
                .arg(format!("-{}", c.id()))
                .stderr(Stdio::null())
                .status();
        }
    }

    /// The master's process id.
    pub fn master_pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `sig` (e.g. "USR2", a graceful reload) to the master only.
    pub fn signal_master(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.master_pid().to_string())
            .stderr(Stdio::null())
            .status();
    }

    /// Kills the master and every worker at once (SIGKILL to the process group).
    pub fn kill(&mut self) {
        self.signal("KILL");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        // Workers are reparented, not our children: wait until the port is really free.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(&self.sock);
    }

    /// Starts php-fpm again with the same config, port and socket.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// The log file contents (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fpm.log")).unwrap_or_default()
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            if let Some(c) = self.child.as_mut() {
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            self.signal("KILL");
            if let Some(mut c) = self.child.take() {
                let _ = c.wait();
            }
        }
    }
}

fn write_scripts(dir: &Path) {
    let scripts: &[(&str, &str)] = &[
        (
            "echo.php",
            r#"<?php
header('Content-Type: text/plain');
echo "method=", $_SERVER['REQUEST_METHOD'], "\n";
echo "query=", $_SERVER['QUERY_STRING'] ?? '', "\n";
foreach ($_GET as $k => $v) { echo "get.$k=$v\n"; }
foreach ($_POST as $k => $v) { echo "post.$k=$v\n"; }
echo "pid=", getmypid(), "\n";
"#,
        ),
        (
            "env.php",
            r#"<?php
header('Content-Type: text/plain');
header('X-Seen-Method: ' . $_SERVER['REQUEST_METHOD']);
foreach (['SCRIPT_NAME', 'SCRIPT_FILENAME', 'PATH_INFO', 'PATH_TRANSLATED', 'PHP_SELF',
          'QUERY_STRING', 'REQUEST_URI', 'HTTP_HOST', 'HTTP_X_FORWARDED_FOR', 'HTTP_PROXY',
          'HTTPS', 'REMOTE_ADDR', 'SERVER_NAME', 'SERVER_PORT', 'CONTENT_TYPE',
          'CONTENT_LENGTH'] as $k) {
    echo $k, '=', $_SERVER[$k] ?? '(unset)', "\n";
}
foreach ($_GET as $k => $v) { echo "get.$k=$v\n"; }
foreach ($_POST as $k => $v) { echo "post.$k=$v\n"; }
foreach ($_COOKIE as $k => $v) { echo "cookie.$k=$v\n"; }
"#,
        ),
        (
            "conn.php",
            r#"<?php
// Names the connection this request arrived on, seen from the backend: the socket inodes
// this worker holds (its listening socket and the accepted connection).
$socks = [];
foreach (scandir('/proc/self/fd') as $fd) {
    $l = @readlink("/proc/self/fd/$fd");
    if ($l !== false && str_starts_with($l, 'socket:')) { $socks[] = $l; }
}
sort($socks);
header('Content-Type: text/plain');
echo implode(",", $socks);
"#,
        ),
        (
            "upload.php",
            r#"<?php
$in = fopen('php://input', 'rb');
$h = hash_init('sha1');
$n = 0;
while (!feof($in)) {
    $chunk = fread($in, 65536);
    if ($chunk === false) break;
    $n += strlen($chunk);
    hash_update($h, $chunk);
}
header('Content-Type: text/plain');
echo $n, " ", hash_final($h);
"#,
        ),
        (
            "download.php",
            r#"<?php
$blocks = intval($_GET['blocks'] ?? '256');
$h = hash_init('sha1');
for ($i = 0; $i < $blocks; $i++) { hash_update($h, str_repeat(sprintf("%07d\n", $i), 8192)); }
header('Content-Type: application/octet-stream');
header('X-Sha1: ' . hash_final($h));
header('X-Length: ' . ($blocks * 65536));
for ($i = 0; $i < $blocks; $i++) { echo str_repeat(sprintf("%07d\n", $i), 8192); }
"#,
        ),
        (
            "status.php",
            r#"<?php
$code = intval($_GET['code'] ?? '200');
http_response_code($code);
header('X-Custom: one');
header('X-Custom: two', false);
setcookie('sess', 'abc');
if (isset($_GET['loc'])) { header('Location: ' . $_GET['loc']); }
echo "code $code";
"#,
        ),
        (
            "redirect.php",
            r#"<?php
header('Location: https://example.test/landing');
"#,
        ),
        (
            "warn.php",
            r#"<?php
trigger_error("client-test-warning", E_USER_WARNING);
echo $undefined_variable_for_test;
error_log("client-test-error-log");
echo "done";
"#,
        ),
        (
            "slow.php",
            r#"<?php
usleep(intval($_GET['ms'] ?? '300') * 1000);
header('Content-Type: text/plain');
echo "pid=", getmypid();
"#,
        ),
        (
            "stream.php",
            r#"<?php
header('Content-Type: text/plain');
while (ob_get_level() > 0) { ob_end_flush(); }
echo str_repeat("a", 100000), "\n";
flush();
sleep(intval($_GET['s'] ?? '20'));
echo "late";
"#,
        ),
        (
            "hello.php",
            r#"<?php
echo "Hello, World!";
"#,
        ),
        (
            "count.php",
            r#"<?php
// Records each run (ID and pid) in runs.log before it sleeps, so that a test can kill the
// worker mid-request and count how many times the request ran.
$line = ($_SERVER['HTTP_X_ID'] ?? '-') . " " . getmypid() . "\n";
file_put_contents(__DIR__ . '/runs.log', $line, FILE_APPEND | LOCK_EX);
usleep(intval($_GET['ms'] ?? '3000') * 1000);
header('Content-Type: text/plain');
echo "ran";
"#,
        ),
        (
            "duplex.php",
            r#"<?php
// Writes a large answer before reading any input: a client that sends its whole body
// before reading would deadlock against this.
header('Content-Type: application/octet-stream');
$out = intval($_GET['out'] ?? '8388608');
$chunk = str_repeat("z", 65536);
for ($i = 0; $i < $out / 65536; $i++) { echo $chunk; flush(); }
$in = fopen('php://input', 'rb');
$n = 0;
while (!feof($in)) { $c = fread($in, 65536); if ($c === false) break; $n += strlen($c); }
echo "\nread=$n";
"#,
        ),
    ];
    for (name, body) in scripts {
        std::fs::write(dir.join(name), body).unwrap();
    }
}

/// SHA-1 of everything read from `r`, computed by coreutils' `sha1sum` as an independent
/// implementation; returns (hex digest, bytes read).
pub fn sha1_of(mut r: impl std::io::Read) -> std::io::Result<(String, u64)> {
    use std::io::Write;
    let mut child = Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let mut buf = vec![0u8; 65536];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        stdin.write_all(&buf[..n])?;
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok((
        text.split_whitespace().next().unwrap_or("").to_string(),
        total,
    ))
}
