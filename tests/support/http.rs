//! A small blocking HTTP/1.1 client for tests (one request per connection, `Connection:
//! close`; Content-Length, chunked and close-delimited bodies), a raw-socket helper, and the
//! parser for the `echo` example's output.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::IO_TIMEOUT;

/// A parsed HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request to send.
#[derive(Clone, Debug, Default)]
pub struct Request<'a> {
    /// `GET` when empty.
    pub method: &'a str,
    /// Path and query; `/` when empty.
    pub path: &'a str,
    /// Extra header fields.
    pub headers: Vec<(&'a str, String)>,
    /// The body, sent with Content-Length (for POST even when empty).
    pub body: Option<&'a [u8]>,
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    send(
        addr,
        &Request {
            method: "GET",
            path,
            ..Request::default()
        },
    )
}

/// `POST path` with `body`.
pub fn post(addr: SocketAddr, path: &str, body: &[u8]) -> io::Result<Response> {
    send(
        addr,
        &Request {
            method: "POST",
            path,
            body: Some(body),
            ..Request::default()
        },
    )
}

/// Opens a connection with the test I/O timeouts set.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// Like [`connect`], with the receive buffer set to `bytes` before connecting (so the
/// advertised window stays small too).
pub fn connect_small_rcvbuf(addr: SocketAddr, bytes: usize) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_recv_buffer_size(bytes)?;
    sock.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// The request's head (request line and header fields, up to the empty line).
pub fn encode_head(addr: SocketAddr, req: &Request<'_>) -> Vec<u8> {
    let method = if req.method.is_empty() {
        "GET"
    } else {
        req.method
    };
    let path = if req.path.is_empty() { "/" } else { req.path };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in &req.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(body) = req.body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Sends `req` on a new connection and reads the whole response. The body is written from
/// a second thread while the response is read, so a peer that streams its answer before the
/// upload ends cannot deadlock the test.
pub fn send(addr: SocketAddr, req: &Request<'_>) -> io::Result<Response> {
    let stream = connect(addr)?;
    let mut writer = stream.try_clone()?;
    let head = encode_head(addr, req);
    let body = req.body.unwrap_or_default();
    thread::scope(|s| {
        let upload = s.spawn(move || -> io::Result<()> {
            writer.write_all(&head)?;
            writer.write_all(body)?;
            writer.flush()
        });
        let mut reader = BufReader::new(&stream);
        let response = read_response(&mut reader, req.method == "HEAD");
        // A complete response matters more than an upload the peer stopped reading, so
        // the upload's own error is reported only when there is no response.
        let sent = upload.join().expect("upload thread panicked");
        match (response, sent) {
            (Err(e), Err(up)) => Err(io::Error::new(e.kind(), format!("{e} (upload: {up})"))),
            (response, _) => response,
        }
    })
}

/// Reads one response from `r`. `head_request`: the response has no body.
pub fn read_response<R: BufRead>(r: &mut R, head_request: bool) -> io::Result<Response> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1.x status line: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line: {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line: {line:?}")))?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let chunked = resp
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let size_line = read_line(r)?;
            let hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| bad(format!("bad chunk size line: {size_line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !read_line(r)?.is_empty() {}
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(&mut resp.body[start..])?;
            if !read_line(r)?.is_empty() {
                return Err(bad("chunk not followed by CRLF".into()));
            }
        }
    } else if let Some(len) = resp.header("Content-Length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
        resp.body.resize(len, 0);
        r.read_exact(&mut resp.body)?;
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

fn read_line<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut line = Vec::new();
    r.by_ref().take(128 * 1024).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "connection ended inside a line: {:?}",
                String::from_utf8_lossy(&line)
            ),
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|e| bad(format!("non-UTF-8 line: {e}")))
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Sends `bytes` on a new connection, half-closes, and reads until the peer closes.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = connect(addr)?;
    s.write_all(bytes)?;
    s.shutdown(Shutdown::Write)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// What the `echo` example answers: its params in order, then the request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Echo {
    /// `(NAME, VALUE)` in the order the application received them.
    pub params: Vec<(String, String)>,
    /// The request body as echoed.
    pub body: Vec<u8>,
}

impl Echo {
    /// What nginx sends for `GET /some/path?a=1&b=two` through `/etc/nginx/fastcgi_params`
    /// on `port`: the CGI params, in the order that file starts with, and no body.
    pub fn assert_nginx_get(&self, port: u16) {
        self.assert_param("REQUEST_METHOD", "GET");
        self.assert_param("QUERY_STRING", "a=1&b=two");
        self.assert_param("REQUEST_URI", "/some/path?a=1&b=two");
        self.assert_param("SCRIPT_NAME", "/some/path");
        self.assert_param("SERVER_PROTOCOL", "HTTP/1.1");
        self.assert_param("GATEWAY_INTERFACE", "CGI/1.1");
        self.assert_param("REMOTE_ADDR", "127.0.0.1");
        self.assert_param("SERVER_PORT", &port.to_string());
        let first: Vec<&str> = self
            .params
            .iter()
            .take(4)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            first,
            [
                "QUERY_STRING",
                "REQUEST_METHOD",
                "CONTENT_TYPE",
                "CONTENT_LENGTH"
            ]
        );
        assert!(self.body.is_empty(), "GET echoed a body: {:?}", self.body);
    }

    /// Parses the echo body: `NAME=VALUE` lines, an empty line, then the raw request body.
    pub fn parse(bytes: &[u8]) -> Echo {
        let mut params = Vec::new();
        let mut rest = bytes;
        loop {
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                panic!(
                    "echo output has no empty line after the params: {:?}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(2000)])
                );
            };
            let line = &rest[..nl];
            rest = &rest[nl + 1..];
            if line.is_empty() {
                break;
            }
            let line = String::from_utf8_lossy(line);
            let (n, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("echo param line without '=': {line:?}"));
            params.push((n.to_string(), v.to_string()));
        }
        Echo {
            params,
            body: rest.to_vec(),
        }
    }

    /// The first param named `name` (case-sensitive, as FastCGI names are).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Panics unless `name` is present with `value`.
    #[track_caller]
    pub fn assert_param(&self, name: &str, value: &str) {
        assert_eq!(
            self.param(name),
            Some(value),
            "param {name}; all params: {:?}",
            self.params
                .iter()
                .map(|(n, v)| format!("{n}={}", &v[..v.len().min(80)]))
                .collect::<Vec<_>>()
        );
    }
}

/// POSTs `body` to the `echo` example (through a peer) and checks that it comes back byte
/// for byte, with REQUEST_METHOD and CONTENT_LENGTH; says what went wrong otherwise.
pub fn try_post_echo(addr: SocketAddr, path: &str, body: &[u8]) -> Result<Echo, String> {
    let len = body.len();
    let resp = post(addr, path, body).map_err(|e| format!("POST {len} B: {e}"))?;
    if resp.status != 200 {
        return Err(format!(
            "POST {len} B: status {}: {}",
            resp.status,
            resp.text()
        ));
    }
    let echo = Echo::parse(&resp.body);
    if echo.param("REQUEST_METHOD") != Some("POST")
        || echo.param("CONTENT_LENGTH") != Some(&len.to_string())
    {
        return Err(format!("POST {len} B: params {:?}", echo.params));
    }
    if echo.body != body {
        let first = echo.body.iter().zip(body).position(|(a, b)| a != b);
        return Err(format!(
            "POST {len} B: echoed {} B, first difference at {first:?}",
            echo.body.len()
        ));
    }
    Ok(echo)
}

/// [`try_post_echo`], panicking on failure.
#[track_caller]
pub fn post_echo(addr: SocketAddr, path: &str, body: &[u8]) -> Echo {
    try_post_echo(addr, path, body).unwrap_or_else(|e| panic!("{e}"))
}

/// `GET /big-header` with a 32 KiB `X-Big-Header` and a short header after it: the
/// application must see both, whole, in its params (a 200 echo).
#[track_caller]
pub fn assert_big_header_passes(addr: SocketAddr) {
    let big = "x".repeat(32 * 1024);
    let resp = send(
        addr,
        &Request {
            method: "GET",
            path: "/big-header",
            headers: vec![("X-Big-Header", big.clone()), ("X-After", "after".into())],
            body: None,
        },
    )
    .expect("GET with a 32 KiB header");
    assert_eq!(resp.status, 200, "32 KiB header: {}", resp.text());
    let echo = Echo::parse(&resp.body);
    assert_eq!(
        echo.param("HTTP_X_BIG_HEADER").map(str::len),
        Some(big.len())
    );
    echo.assert_param("HTTP_X_BIG_HEADER", &big);
    echo.assert_param("HTTP_X_AFTER", "after");
}

/// Runs `n` requests at once (threads released together by a barrier); each POSTs its own
/// body and query and must get exactly that back. Panics listing the failures.
pub fn concurrent_posts(addr: SocketAddr, n: usize, deadline: Duration) {
    let barrier = Arc::new(Barrier::new(n));
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || -> Result<(), String> {
                    let body = format!("request number {i}\n").into_bytes();
                    barrier.wait();
                    let resp = post(addr, &format!("/c?i={i}"), &body)
                        .map_err(|e| format!("request {i}: {e}"))?;
                    if resp.status != 200 {
                        return Err(format!(
                            "request {i}: status {}: {}",
                            resp.status,
                            resp.text()
                        ));
                    }
                    let echo = Echo::parse(&resp.body);
                    if echo.param("QUERY_STRING") != Some(&format!("i={i}")) || echo.body != body {
                        return Err(format!("request {i}: wrong answer {:?}", resp.text()));
                    }
                    Ok(())
                })
                .expect("spawn client thread")
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().expect("client thread panicked").err())
        .collect();
    let took = start.elapsed();
    assert!(
        failures.is_empty(),
        "{} of {n} concurrent requests failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(took < deadline, "{n} concurrent requests took {took:?}");
}

/// POSTs `body` (to the `echo` example, whose answer is as big), reads the first 16 KiB of
/// the answer and hangs up: a client going away mid-response. The upload runs in its own
/// thread, so a peer that streams the answer before the upload ends works too.
///
/// The client's receive buffer is kept small, so that the kernel cannot soak up the whole
/// answer on the client's behalf (loopback buffers grow to megabytes): the peer must still
/// be sending when the client leaves. Pair it with a small send buffer on the peer's side.
#[track_caller]
pub fn abandon_mid_response(addr: SocketAddr, path: &str, body: &[u8]) {
    if let Err(e) = try_abandon_mid_response(addr, path, body) {
        panic!("{e}");
    }
}

/// [`abandon_mid_response`], saying what went wrong (with what arrived) instead of
/// panicking.
pub fn try_abandon_mid_response(addr: SocketAddr, path: &str, body: &[u8]) -> Result<(), String> {
    let conn = connect_small_rcvbuf(addr, 16 * 1024).map_err(|e| format!("connect: {e}"))?;
    let mut writer = conn.try_clone().map_err(|e| format!("clone socket: {e}"))?;
    let head = encode_head(
        addr,
        &Request {
            method: "POST",
            path,
            body: Some(body),
            ..Request::default()
        },
    );
    thread::scope(|s| {
        s.spawn(move || {
            // Fails once the reader below hangs up: expected.
            let _ = writer.write_all(&head).and_then(|_| writer.write_all(body));
        });
        let start = read_start(&conn, 16 * 1024);
        // Both directions, so the upload thread stops too; unread data makes this a reset.
        let _ = conn.shutdown(Shutdown::Both);
        let first = start?;
        if !first.starts_with(b"HTTP/1.1 200") {
            return Err(format!(
                "answer starts {:?}",
                String::from_utf8_lossy(&first[..64])
            ));
        }
        Ok(())
    })
}

/// Reads the first `n` bytes of an answer; when it ends or fails sooner, says how, and what
/// came before (an error page, say).
fn read_start(mut conn: &TcpStream, n: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let end = match conn.read(&mut buf[got..]) {
            Ok(0) => "the connection ended".to_string(),
            Ok(k) => {
                got += k;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => e.to_string(),
        };
        return Err(format!(
            "reading the start of the answer: {end} after {got} B: {:?}",
            String::from_utf8_lossy(&buf[..got.min(1024)])
        ));
    }
    Ok(buf)
}
