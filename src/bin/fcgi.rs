//! `fcgi`: one FastCGI request from the command line, in the spirit of curl.
//!
//! ```text
//! fcgi [OPTIONS] fcgi://HOST:PORT/path/to/script.php[?QUERY]
//! fcgi [OPTIONS] unix:/run/php/php-fpm.sock:/path/to/script.php[?QUERY]
//! fcgi --status fcgi://127.0.0.1:9000[/status[?full]]
//! fcgi --ping unix:/run/php/php-fpm.sock[:/ping]
//! ```
//!
//! The path of the URL is the script's file name (`SCRIPT_FILENAME`), as a web server would
//! compute it from its document root; the params are those nginx's `fastcgi_params` sends.
//! The body of the answer goes to stdout, the application's stderr to stderr; `-i` shows
//! the CGI head first, `-v` every record. The exit status says how it went (see `--help`).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fcgi::client::{
    find_head_end, Address, Config, Connection, Direction, Error, FcgiRequest, Head,
};
use fcgi::protocol::{
    BeginRequestBody, EndRequestBody, Header, ParamsDecoder, ParamsLimits, RecordType,
};

const USAGE: &str = "usage: fcgi [OPTIONS] fcgi://HOST:PORT/SCRIPT[?QUERY]
       fcgi [OPTIONS] unix:SOCKET:/SCRIPT[?QUERY]";

const HELP: &str = "\
Sends one request to a FastCGI application (PHP-FPM, ...) with the params a web server
would send, and writes the answer's body to stdout and the application's stderr to stderr.

URL:
  fcgi://127.0.0.1:9000/srv/www/x.php?q=1   TCP; the path is SCRIPT_FILENAME
  unix:/run/php/php-fpm.sock:/srv/www/x.php Unix socket, then ':' and the script
  With --status or --ping the script may be left out.

Options:
  -X, --request METHOD      REQUEST_METHOD (default GET, or POST with -d)
  -d, --data DATA           send DATA as the body (POST, CONTENT_TYPE
                            application/x-www-form-urlencoded unless -H gives one);
                            several -d are joined with '&'
  -d @FILE                  send FILE as it is (streamed, like curl's --data-binary);
                            @- reads stdin (kept in a temporary file to count it)
      --data-binary DATA    the same as -d
  -H, --header 'NAME: VALUE'
                            a request header: HTTP_NAME (Content-Type is CONTENT_TYPE;
                            'NAME:' alone removes a default, e.g. 'Host:')
  -p, --param NAME=VALUE    a CGI param, set as given (overrides the defaults)
      --root DIR            DOCUMENT_ROOT (default: the script's directory); SCRIPT_NAME
                            is the script's path under it
  -i, --include             show the CGI response head before the body
  -v, --verbose             show the params and every record sent and received (stderr)
  -o, --output FILE         write the body to FILE instead of stdout
      --status              ask for PHP-FPM's status page (pm.status_path; the URL's path,
                            default /status; ?full, ?json... as its query)
      --ping                ask for PHP-FPM's ping page (ping.path; default /ping)
      --connect-timeout SECONDS
                            limit for connecting (default 5)
  -m, --max-time SECONDS    limit for the whole request (default none; 60 s without a
                            byte either way ends it in any case)
  -h, --help                this help
  -V, --version             the version

Exit status (as curl where it has one):
  0   the application answered with a status below 400
  22  the application answered with a status of 400 or more (curl's --fail), or refused
      the request (FCGI_OVERLOADED, FCGI_UNKNOWN_ROLE)
  2   bad arguments          3   bad URL               7   cannot connect
  8   the answer is not FastCGI or has no valid CGI head
  23  cannot write the output                          26  cannot read the -d file
  28  timed out              52  the application closed without answering
  56  the connection failed while the answer came";

/// curl's codes for the outcomes above.
mod exit {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 2;
    pub const URL: u8 = 3;
    pub const CONNECT: u8 = 7;
    pub const WEIRD: u8 = 8;
    pub const HTTP_ERROR: u8 = 22;
    pub const WRITE: u8 = 23;
    pub const READ: u8 = 26;
    pub const TIMEOUT: u8 = 28;
    pub const EMPTY: u8 = 52;
    pub const RECV: u8 = 56;
}

/// A failure with its exit code and message.
struct Fail(u8, String);

impl Fail {
    fn new(code: u8, msg: impl Into<String>) -> Fail {
        Fail(code, msg.into())
    }
}

#[derive(Default)]
enum Page {
    #[default]
    Script,
    Status,
    Ping,
}

#[derive(Default)]
struct Options {
    url: Option<String>,
    method: Option<String>,
    data: Vec<String>,
    headers: Vec<(String, String)>,
    params: Vec<(String, String)>,
    root: Option<String>,
    include: bool,
    verbose: bool,
    output: Option<PathBuf>,
    page: Page,
    connect_timeout: Option<Duration>,
    max_time: Option<Duration>,
}

enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

fn parse_args(args: Vec<OsString>) -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let mut o = Options::default();
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('X') | Long("request") => o.method = Some(string(&mut p)?),
            Short('d') | Long("data") | Long("data-binary") => o.data.push(string(&mut p)?),
            Short('H') | Long("header") => {
                let h = string(&mut p)?;
                let (n, v) = h
                    .split_once(':')
                    .ok_or_else(|| format!("-H {h}: expected 'NAME: VALUE'"))?;
                let n = n.trim();
                if n.is_empty() || n.bytes().any(|b| !b.is_ascii_graphic()) {
                    return Err(format!("-H {h}: not a header name"));
                }
                o.headers.push((n.to_string(), v.trim().to_string()));
            }
            Short('p') | Long("param") => {
                let v = string(&mut p)?;
                let (n, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("-p {v}: expected NAME=VALUE"))?;
                o.params.push((n.to_string(), val.to_string()));
            }
            Long("root") => o.root = Some(string(&mut p)?),
            Short('i') | Long("include") => o.include = true,
            Short('v') | Long("verbose") => o.verbose = true,
            Short('o') | Long("output") => o.output = Some(string(&mut p)?.into()),
            Long("status") => o.page = Page::Status,
            Long("ping") => o.page = Page::Ping,
            Long("connect-timeout") => {
                o.connect_timeout = Some(seconds(&mut p, "--connect-timeout")?)
            }
            Short('m') | Long("max-time") => o.max_time = Some(seconds(&mut p, "--max-time")?),
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Value(v) if o.url.is_none() => {
                o.url = Some(v.into_string().map_err(|v| format!("{v:?}: not UTF-8"))?)
            }
            Value(v) => return Err(format!("{}: only one URL", v.to_string_lossy())),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    if o.url.is_none() {
        return Err("no URL given".into());
    }
    Ok(Parsed::Run(Box::new(o)))
}

fn string(p: &mut lexopt::Parser) -> Result<String, String> {
    p.value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|v| format!("{v:?}: not UTF-8"))
}

fn seconds(p: &mut lexopt::Parser, name: &str) -> Result<Duration, String> {
    let s = string(p)?;
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{name} {s}: not a number of seconds"))
}

/// Where to connect, and the script with its query.
struct Target {
    addr: Address,
    script: Option<String>,
    query: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let (addr, rest) = if let Some(rest) = url.strip_prefix("fcgi://") {
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        // host, host:port, [v6], [v6]:port; the default port is PHP-FPM's 9000.
        let with_port = if authority.starts_with('[') {
            if authority.ends_with(']') {
                format!("{authority}:9000")
            } else {
                authority.to_string()
            }
        } else if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:9000")
        };
        let sa: SocketAddr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url}: {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: {authority}: no address"))?;
        (Address::Tcp(sa), path.to_string())
    } else if let Some(rest) = url.strip_prefix("unix:") {
        // The socket path, then ':' and the script path (which starts with '/').
        match rest.rfind(":/") {
            Some(i) if i > 0 => (Address::Unix(rest[..i].into()), rest[i + 1..].to_string()),
            _ => {
                let (sock, query) = match rest.split_once('?') {
                    Some((s, q)) => (s, format!("?{q}")),
                    None => (rest, String::new()),
                };
                (Address::Unix(sock.into()), query)
            }
        }
    } else {
        return Err(format!(
            "{url}: not fcgi://HOST:PORT/SCRIPT or unix:SOCKET:/SCRIPT"
        ));
    };
    if let Address::Unix(p) = &addr {
        if p.as_os_str().is_empty() {
            return Err(format!("{url}: no socket path"));
        }
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, q.to_string()),
        None => (rest.as_str(), String::new()),
    };
    let script = (!path.is_empty() && path != "/").then(|| path.to_string());
    Ok(Target {
        addr,
        script,
        query,
    })
}

/// The request body: the `-d` parts joined by `&`, each a string or a file.
struct Body {
    parts: Vec<Box<dyn Read + Send>>,
    len: u64,
}

impl Read for Body {
    /// Fills `buf` from the parts in turn (so small parts share a record).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let Some(first) = self.parts.first_mut() else {
                break;
            };
            match first.read(&mut buf[filled..])? {
                0 => {
                    self.parts.remove(0);
                }
                n => filled += n,
            }
        }
        Ok(filled)
    }
}

fn body(data: &[String]) -> Result<Body, Fail> {
    let mut parts: Vec<Box<dyn Read + Send>> = Vec::new();
    let mut len = 0;
    for (i, d) in data.iter().enumerate() {
        if i > 0 {
            parts.push(Box::new(&b"&"[..]));
            len += 1;
        }
        match d.strip_prefix('@') {
            Some("-") => {
                let (file, n) = spool(io::stdin().lock())
                    .map_err(|e| Fail::new(exit::READ, format!("cannot read stdin: {e}")))?;
                parts.push(Box::new(file));
                len += n;
            }
            Some(path) => {
                let read_err =
                    |e: io::Error| Fail::new(exit::READ, format!("cannot read {path}: {e}"));
                let file = File::open(path).map_err(read_err)?;
                let meta = file.metadata().map_err(read_err)?;
                if meta.is_file() {
                    len += meta.len();
                    // At most the length announced, even if the file grows meanwhile.
                    parts.push(Box::new(file.take(meta.len())));
                } else {
                    let (file, n) = spool(file).map_err(read_err)?;
                    parts.push(Box::new(file));
                    len += n;
                }
            }
            None => {
                len += d.len() as u64;
                parts.push(Box::new(io::Cursor::new(d.clone().into_bytes())));
            }
        }
    }
    Ok(Body { parts, len })
}

/// Copies `r` into an unlinked temporary file (to know its length before sending it);
/// returns the file, rewound, and its length.
fn spool(mut r: impl Read) -> io::Result<(File, u64)> {
    let dir = std::env::temp_dir();
    let mut n = 0u32;
    let (mut file, path) = loop {
        let path = dir.join(format!("fcgi-body-{}-{n}", std::process::id()));
        match File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => break (f, path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(e),
        }
    };
    let _ = std::fs::remove_file(&path);
    let len = io::copy(&mut r, &mut file)?;
    file.rewind()?;
    Ok((file, len))
}

/// The CGI params for `o` and `t`, as a web server sends them.
fn params(o: &Options, t: &Target, body_len: Option<u64>) -> Result<Vec<(String, String)>, Fail> {
    let (script, page) = match (&o.page, &t.script) {
        (Page::Script, Some(s)) => (s.clone(), false),
        (Page::Script, None) => {
            return Err(Fail::new(
                exit::URL,
                "no script in the URL (fcgi://HOST:PORT/path/to/script.php)",
            ))
        }
        (Page::Status, s) => (s.clone().unwrap_or_else(|| "/status".into()), true),
        (Page::Ping, s) => (s.clone().unwrap_or_else(|| "/ping".into()), true),
    };
    if !script.starts_with('/') {
        return Err(Fail::new(
            exit::URL,
            format!("{script}: not an absolute path"),
        ));
    }
    // PHP-FPM's status and ping pages match SCRIPT_NAME against their path.
    let (root, script_name) = if page {
        (String::from("/"), script.clone())
    } else {
        let root = match &o.root {
            Some(r) => r.trim_end_matches('/').to_string(),
            None => script[..script.rfind('/').unwrap_or(0)].to_string(),
        };
        let name = script
            .strip_prefix(root.as_str())
            .filter(|n| n.starts_with('/'))
            .ok_or_else(|| {
                Fail::new(exit::USAGE, format!("{script} is not under --root {root}"))
            })?;
        (
            if root.is_empty() { "/".into() } else { root },
            name.to_string(),
        )
    };
    let method = o
        .method
        .clone()
        .unwrap_or_else(|| if body_len.is_some() { "POST" } else { "GET" }.to_string());
    let request_uri = if t.query.is_empty() {
        script_name.clone()
    } else {
        format!("{script_name}?{}", t.query)
    };
    let (server_addr, server_port) = match &t.addr {
        Address::Tcp(a) => (a.ip().to_string(), a.port().to_string()),
        Address::Unix(_) => ("127.0.0.1".into(), "80".into()),
    };
    let mut p: Vec<(String, String)> = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        (
            "SERVER_SOFTWARE".into(),
            concat!("fcgi/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("SERVER_PROTOCOL".into(), "HTTP/1.1".into()),
        ("REQUEST_SCHEME".into(), "http".into()),
        ("REQUEST_METHOD".into(), method),
        ("SCRIPT_FILENAME".into(), script.clone()),
        ("SCRIPT_NAME".into(), script_name.clone()),
        ("DOCUMENT_ROOT".into(), root),
        ("DOCUMENT_URI".into(), script_name),
        ("REQUEST_URI".into(), request_uri),
        ("QUERY_STRING".into(), t.query.clone()),
        ("SERVER_NAME".into(), "localhost".into()),
        ("SERVER_ADDR".into(), server_addr),
        ("SERVER_PORT".into(), server_port),
        ("REMOTE_ADDR".into(), "127.0.0.1".into()),
        ("REMOTE_PORT".into(), "0".into()),
        // PHP built with --enable-force-cgi-redirect refuses to run without it.
        ("REDIRECT_STATUS".into(), "200".into()),
        ("HTTP_HOST".into(), "localhost".into()),
    ];
    if let Some(n) = body_len {
        p.push(("CONTENT_LENGTH".into(), n.to_string()));
        if !o.data.is_empty() {
            p.push((
                "CONTENT_TYPE".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
    }
    let mut set = |name: String, value: &str| {
        p.retain(|(n, _)| *n != name);
        if !value.is_empty() {
            p.push((name, value.to_string()));
        }
    };
    for (n, v) in &o.headers {
        let upper = n.to_ascii_uppercase().replace('-', "_");
        match upper.as_str() {
            "CONTENT_TYPE" => set(upper, v),
            // The length is the body's own.
            "CONTENT_LENGTH" => {}
            "HOST" => {
                let server = v.rsplit_once(':').map_or(v.as_str(), |(h, _)| h);
                set(
                    "SERVER_NAME".into(),
                    if v.is_empty() { "localhost" } else { server },
                );
                set("HTTP_HOST".into(), v);
            }
            // httpoxy (CVE-2016-5385): a Proxy header must never become HTTP_PROXY.
            "PROXY" => {}
            _ if n.contains('_') => {}
            _ => set(format!("HTTP_{upper}"), v),
        }
    }
    for (n, v) in &o.params {
        p.retain(|(pn, _)| pn != n);
        p.push((n.clone(), v.clone()));
    }
    Ok(p)
}

/// Prints a record for `-v`.
fn trace(dir: Direction, h: &Header, content: &[u8]) {
    let arrow = if dir == Direction::Sent { '>' } else { '<' };
    let name = match h.record_type {
        RecordType::BeginRequest => "BEGIN_REQUEST",
        RecordType::AbortRequest => "ABORT_REQUEST",
        RecordType::EndRequest => "END_REQUEST",
        RecordType::Params => "PARAMS",
        RecordType::Stdin => "STDIN",
        RecordType::Stdout => "STDOUT",
        RecordType::Stderr => "STDERR",
        RecordType::Data => "DATA",
        RecordType::GetValues => "GET_VALUES",
        RecordType::GetValuesResult => "GET_VALUES_RESULT",
        RecordType::UnknownType => "UNKNOWN_TYPE",
        RecordType::Unknown(_) => "UNKNOWN",
    };
    let detail = match h.record_type {
        RecordType::BeginRequest => BeginRequestBody::decode(content)
            .map(|b| format!(" role={} flags={}", b.role.name(), b.flags))
            .unwrap_or_default(),
        RecordType::EndRequest => EndRequestBody::decode(content)
            .map(|b| {
                format!(
                    " app_status={} protocol_status={:?}",
                    b.app_status, b.protocol_status
                )
            })
            .unwrap_or_default(),
        _ if content.is_empty() => " (end of stream)".into(),
        _ => String::new(),
    };
    eprintln!(
        "{arrow} {name} id={} {} bytes{detail}",
        h.request_id,
        content.len()
    );
    if h.record_type == RecordType::Params && !content.is_empty() {
        // Pairs may span records; one record's whole pairs are shown.
        let mut dec = ParamsDecoder::new(ParamsLimits {
            max_bytes: content.len(),
            max_pairs: 4096,
        });
        if dec.feed(content).is_ok() {
            if let Ok(pairs) = dec.finish() {
                for pair in pairs.iter() {
                    eprintln!(
                        "{arrow}   {}={}",
                        String::from_utf8_lossy(pair.name),
                        String::from_utf8_lossy(pair.value)
                    );
                }
            }
        }
    }
}

/// The exit code and message for a client error.
fn failure(e: Error) -> Fail {
    let code = match &e {
        Error::Connect { .. } | Error::NoBackend => exit::CONNECT,
        Error::Timeout(_) => exit::TIMEOUT,
        Error::Body(_) => exit::READ,
        Error::BackendClosed { stdout_bytes: 0 } | Error::NotSent(_) => exit::EMPTY,
        Error::BackendClosed { .. } | Error::Io(_) => exit::RECV,
        Error::Overloaded { .. } | Error::UnknownRole | Error::CantMpxConn => exit::HTTP_ERROR,
        _ => exit::WEIRD,
    };
    Fail(code, e.to_string())
}

fn run(o: Options) -> Result<u8, Fail> {
    let url = o.url.as_deref().unwrap_or_default();
    let target = parse_url(url).map_err(|m| Fail::new(exit::URL, m))?;
    let body = if o.data.is_empty() {
        None
    } else {
        Some(body(&o.data)?)
    };
    let params = params(&o, &target, body.as_ref().map(|b| b.len))?;
    let mut config = Config::default();
    config.keep_conn = false;
    if o.connect_timeout.is_some() {
        config.connect_timeout = o.connect_timeout;
    }
    config.request_timeout = o.max_time;
    if o.verbose {
        eprintln!("* connecting to {}", target.addr);
    }
    let mut conn = Connection::connect(&target.addr, &config).map_err(failure)?;
    if o.verbose {
        eprintln!("* connected");
    }
    let mut req = FcgiRequest::new()
        .params(params.iter().map(|(n, v)| (n, v)))
        .without_head()
        .stderr_limit(0)
        .on_stderr(|bytes| {
            let _ = io::stderr().write_all(bytes);
        });
    if o.verbose {
        req = req.on_record(trace);
    }
    let mut out: Box<dyn Write> = match &o.output {
        Some(path) => Box::new(io::BufWriter::new(File::create(path).map_err(|e| {
            Fail::new(exit::WRITE, format!("cannot write {}: {e}", path.display()))
        })?)),
        None => Box::new(io::stdout().lock()),
    };
    let write_err = |e: io::Error| Fail::new(exit::WRITE, format!("cannot write the output: {e}"));
    let body: Box<dyn Read + Send> = match body {
        Some(b) => Box::new(b),
        None => Box::new(io::empty()),
    };
    let mut resp = conn.send(req, body).map_err(failure)?;
    // The head, as the application sent it (bounded), then the body as it streams.
    let limit = Config::default().max_head_bytes;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        if let Some(end) = find_head_end(&head) {
            break end;
        }
        if head.len() > limit {
            return Err(Fail::new(
                exit::WEIRD,
                format!("the CGI head is longer than {limit} bytes"),
            ));
        }
        match resp.read(&mut buf) {
            Ok(0) => {
                return Err(Fail::new(
                    exit::WEIRD,
                    "the answer ended before the end of its CGI head",
                ))
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(failure(Error::from(e))),
        }
    };
    let parsed = Head::parse(&head[..end])
        .map_err(|e| Fail::new(exit::WEIRD, format!("bad CGI head: {e}")))?;
    if o.verbose {
        eprintln!("* status {}", parsed.status());
    }
    if o.include {
        out.write_all(&head[..end]).map_err(write_err)?;
    }
    out.write_all(&head[end..]).map_err(write_err)?;
    loop {
        match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.write_all(&buf[..n]).map_err(write_err)?,
            Err(e) => {
                let _ = out.flush();
                return Err(failure(Error::from(e)));
            }
        }
    }
    out.flush().map_err(write_err)?;
    Ok(if parsed.status() >= 400 {
        exit::HTTP_ERROR
    } else {
        exit::OK
    })
}

fn main() -> ExitCode {
    let o = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            println!("{USAGE}\n\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("fcgi {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fcgi: {e}\n{USAGE}\n(fcgi --help for more)");
            return ExitCode::from(exit::USAGE);
        }
    };
    match run(*o) {
        Ok(code) => ExitCode::from(code),
        Err(Fail(code, msg)) => {
            eprintln!("fcgi: {msg}");
            ExitCode::from(code)
        }
    }
}
