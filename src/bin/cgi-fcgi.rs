//! `cgi-fcgi`: the CGI-to-FastCGI bridge and application starter, command-line compatible
//! with the classic tool of libfcgi:
//!
//! ```text
//! cgi-fcgi -f CMDPATH
//! cgi-fcgi -bind -connect CONNNAME
//! cgi-fcgi -start -connect CONNNAME APPPATH [NSERVERS]
//! cgi-fcgi -connect CONNNAME APPPATH [NSERVERS]
//! ```
//!
//! CONNNAME is read as the classic tool reads it, in libfcgi's syntax (`fcgi::net::Syntax`):
//! after the first colon comes a port, and `host:port` is TCP (an empty host is every
//! interface for `-start` and the local host for `-connect`, a name is resolved, `[v6]:port`
//! is IPv6); anything else, a port of 0 included, is a Unix socket path. As a bridge it
//! sends the whole environment as params and `CONTENT_LENGTH` bytes of stdin, copies the
//! application's stdout and stderr through untouched, and exits with the application status.
//! Built on the crate's client, so records split anywhere, management records
//! (`FCGI_GET_VALUES_RESULT`, `FCGI_UNKNOWN_TYPE`) and padding are handled.
//!
//! Exit codes as the classic tool: the app status; the `errno` of a failed connect or
//! start; 1 for bad arguments; 253 (`FCGX_PROTOCOL_ERROR`) when the application ends with a
//! protocol status other than complete, closes early or sends malformed records; 254
//! (`FCGX_UNSUPPORTED_VERSION`) for a wrong record version. One addition: `-h` or `--help`
//! prints the usage on stdout and exits 0 (the classic tool calls it an unknown option).
//!
//! The arguments are parsed by hand, not with the `lexopt` the other binaries use: the
//! classic options are single-dash long words (`-bind`, `-connect`), which a POSIX parser
//! reads as clusters of short options.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, ExitCode, Stdio};

use fcgi::client::{Config, Connection, Error, FcgiRequest};
use fcgi::net::{Address, BindOptions, Existing, Syntax};
use fcgi::protocol::ProtocolError;

const USAGE: &str = "Usage:
    cgi-fcgi -f <cmdPath> , or
    cgi-fcgi -connect <connName> <appPath> [<nServers>] , or
    cgi-fcgi -start -connect <connName> <appPath> [<nServers>] , or
    cgi-fcgi -bind -connect <connName> ,
where <connName> is either the pathname of a UNIX domain socket
or (if -bind is given) a hostName:portNumber specification
or (if -start is given) a :portNumber specification (uses local host).";

/// `FCGX_PROTOCOL_ERROR` (-3) as an exit status.
const EXIT_PROTOCOL_ERROR: u8 = 253;
/// `FCGX_UNSUPPORTED_VERSION` (-2) as an exit status.
const EXIT_UNSUPPORTED_VERSION: u8 = 254;

#[derive(Debug, Default)]
struct Args {
    bind: bool,
    start: bool,
    connect: String,
    app: String,
    servers: usize,
}

/// Parses the arguments; messages go to stderr, and `Err(())` means "print usage, exit 1".
fn parse(argv: &[String], args: &mut Args) -> Result<(), ()> {
    let mut errors = 0;
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        if a.starts_with('-') {
            match a.as_str() {
                "-f" => {
                    let Some(path) = argv.get(i + 1) else {
                        eprintln!("Missing command file name after -f");
                        return Err(());
                    };
                    let Ok(text) = std::fs::read_to_string(path) else {
                        eprintln!("Cannot open command file {path}");
                        return Err(());
                    };
                    // Lines starting with '#' are comments (a "#!" line included); the
                    // words of the other lines are the arguments.
                    let words: Vec<String> = text
                        .lines()
                        .filter(|l| !l.starts_with('#'))
                        .flat_map(|l| l.split([' ', '\t']))
                        .filter(|w| !w.is_empty())
                        .map(str::to_string)
                        .collect();
                    *args = Args {
                        bind: true,
                        start: true,
                        ..Args::default()
                    };
                    return parse(&words, args);
                }
                "-start" => args.bind = false,
                "-bind" => args.start = false,
                "-connect" => match argv.get(i + 1) {
                    Some(name) => {
                        args.connect = name.clone();
                        i += 1;
                    }
                    None => {
                        eprintln!("Missing connection name after -connect");
                        errors += 1;
                    }
                },
                _ => {
                    eprintln!("Unknown option {a}");
                    errors += 1;
                }
            }
        } else if args.app.is_empty() {
            args.app = a.clone();
        } else if a.starts_with(|c: char| c.is_ascii_digit()) && args.servers == 0 {
            args.servers = a.parse().unwrap_or(0);
            if args.servers == 0 {
                eprintln!("Number of servers must be greater than 0");
                errors += 1;
            }
        } else {
            eprintln!("Unknown argument {a}");
            errors += 1;
        }
        i += 1;
    }
    if args.start && args.app.is_empty() {
        eprintln!("Missing application pathname");
        errors += 1;
    }
    if args.connect.is_empty() {
        eprintln!("Missing -connect <connName>");
        errors += 1;
    }
    args.servers = args.servers.max(1);
    if errors > 0 {
        Err(())
    } else {
        Ok(())
    }
}

/// Where CONNNAME points, in libfcgi's syntax: `OS_CreateLocalIpcFd`'s for `-start`,
/// `OS_FcgiConnect`'s for `-connect` (through the crate's one parser).
fn address(name: &str, for_bind: bool) -> std::io::Result<Address> {
    let syntax = if for_bind {
        Syntax::LibfcgiBind
    } else {
        Syntax::LibfcgiConnect
    };
    Address::parse_with(name.as_bytes(), syntax)
}

fn errno_exit(e: &std::io::Error) -> ExitCode {
    ExitCode::from(fcgi::net::os_error(e).map_or(1, |n| (n & 0xff) as u8))
}

fn connect(name: &str) -> Result<Connection, std::io::Error> {
    let mut config = Config::default();
    config.connect_timeout = None;
    config.io_timeout = None;
    config.keep_conn = false;
    match Connection::connect(&address(name, false)?, &config) {
        Ok(c) => Ok(c),
        Err(Error::Connect { source, .. }) => Err(source),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// Creates the listening socket and starts `servers` copies of `app` with it on fd 0.
fn start(args: &Args) -> Result<(), ExitCode> {
    let fail = |e: std::io::Error| {
        eprintln!("cgi-fcgi: cannot listen on {}: {e}", args.connect);
        errno_exit(&e)
    };
    let addr = address(&args.connect, true).map_err(fail)?;
    // A socket file left by an earlier run is replaced; any other file is not. The socket
    // is close-on-exec here: each child gets a copy on its fd 0, which exec keeps.
    let opts = BindOptions::default()
        .backlog(libc::SOMAXCONN)
        .existing(Existing::ReplaceSocket)
        .v6_only(false);
    // The bind's errors name the address already.
    let listener: OwnedFd = fcgi::net::bind(&addr, &opts).map_err(|e| {
        eprintln!("cgi-fcgi: cannot listen on {e}");
        errno_exit(&e)
    })?;
    let executable = std::fs::metadata(&args.app)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !executable {
        eprintln!("{} is not executable", args.app);
        return Err(ExitCode::from(1));
    }
    for _ in 0..args.servers {
        let fd = listener.try_clone().map_err(|e| errno_exit(&e))?;
        // spec 2.2: the application finds its listening socket on fd 0.
        Command::new(&args.app)
            .stdin(Stdio::from(fd))
            .spawn()
            .map_err(|e| {
                eprintln!("cgi-fcgi: cannot start {}: {e}", args.app);
                errno_exit(&e)
            })?;
    }
    Ok(())
}

/// Leading decimal digits, as `atoi` reads them (0 when there are none).
fn atoi(s: &str) -> u64 {
    let s = s.trim_start();
    let digits: &str = &s[..s.bytes().take_while(u8::is_ascii_digit).count()];
    digits.parse().unwrap_or(0)
}

fn bridge(mut conn: Connection) -> ExitCode {
    let content_length = std::env::var("CONTENT_LENGTH").map_or(0, |v| atoi(&v));
    let mut req = FcgiRequest::new()
        .without_head()
        .stderr_limit(0)
        .on_stderr(|bytes| {
            let _ = std::io::stderr().write_all(bytes);
        });
    for (name, value) in std::env::vars_os() {
        req = req.param(name.as_bytes(), value.as_bytes());
    }
    let stdin = std::io::stdin().take(content_length);
    let result = conn.send(req, stdin).and_then(|mut resp| {
        let mut out = std::io::stdout().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.write_all(&buf[..n]).map_err(Error::Io)?,
                Err(e) => {
                    let _ = out.flush();
                    return Err(match e.into_inner().map(|i| i.downcast::<Error>()) {
                        Some(Ok(inner)) => *inner,
                        Some(Err(other)) => Error::Io(std::io::Error::other(other)),
                        None => Error::Io(std::io::Error::other("read failed")),
                    });
                }
            }
        }
        out.flush().map_err(Error::Io)?;
        Ok(resp.app_status().unwrap_or(0))
    });
    match result {
        // exit(2) keeps the low 8 bits, as the classic tool's exit(appStatus) does.
        Ok(status) => ExitCode::from((status & 0xff) as u8),
        Err(e) => {
            eprintln!("cgi-fcgi: {e}");
            match e {
                Error::Protocol(ProtocolError::BadVersion(_)) => {
                    ExitCode::from(EXIT_UNSUPPORTED_VERSION)
                }
                Error::Io(io) | Error::Body(io) if io.raw_os_error().is_some() => errno_exit(&io),
                _ => ExitCode::from(EXIT_PROTOCOL_ERROR),
            }
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let mut args = Args {
        bind: true,
        start: true,
        ..Args::default()
    };
    if parse(&argv, &mut args).is_err() {
        eprintln!("{USAGE}");
        return ExitCode::from(1);
    }
    let mut conn = if args.bind {
        connect(&args.connect)
    } else {
        Err(std::io::Error::from_raw_os_error(libc::ENOTCONN))
    };
    if args.start && (!args.bind || conn.is_err()) {
        if let Err(code) = start(&args) {
            return code;
        }
        if !args.bind {
            return ExitCode::SUCCESS;
        }
        conn = connect(&args.connect);
    }
    match conn {
        Ok(conn) => bridge(conn),
        Err(e) => {
            eprintln!("Could not connect to {}", args.connect);
            errno_exit(&e)
        }
    }
}
