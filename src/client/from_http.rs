//! CGI params from the `http` crate's request types (feature `http`), as a web server sends
//! them (nginx's `fastcgi_params` with `fastcgi_split_path_info`), and the response head back
//! into an `http::response::Builder`.
//!
//! Owns the mapping only: what the document root is, where the script ends and which
//! addresses to report are the caller's [`CgiEnv`]. The request body is not touched; a body
//! without `Content-Length` (chunked, or HTTP/2 without the header) must be measured or
//! spooled by the caller and given to [`FcgiRequest::from_http_sized`], since PHP reads
//! exactly `CONTENT_LENGTH` bytes.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{FcgiRequest, Head};

/// What the web server knows that the HTTP request does not carry: document root, how to
/// split the path, addresses, TLS.
///
/// # Example
///
/// ```
/// use fcgi::client::CgiEnv;
/// let env = CgiEnv::new("/srv/www")
///     .split_path_info(".php")
///     .index("index.php")
///     .server_addr("127.0.0.1:8080".parse().unwrap())
///     .remote_addr("127.0.0.1:50000".parse().unwrap())
///     .https(true);
/// ```
#[derive(Clone, Debug)]
pub struct CgiEnv {
    document_root: PathBuf,
    split: Option<String>,
    index: String,
    server_addr: Option<SocketAddr>,
    remote_addr: Option<SocketAddr>,
    server_name: Option<String>,
    server_software: String,
    https: bool,
    extra: Vec<(String, String)>,
}

impl CgiEnv {
    /// An environment serving scripts from `document_root`, with index `index.php`, no
    /// path splitting and no addresses.
    ///
    /// # Example
    ///
    /// ```
    /// let env = fcgi::client::CgiEnv::new("/var/www/html");
    /// ```
    pub fn new(document_root: impl Into<PathBuf>) -> CgiEnv {
        CgiEnv {
            document_root: document_root.into(),
            split: None,
            index: "index.php".to_string(),
            server_addr: None,
            remote_addr: None,
            server_name: None,
            server_software: concat!("fcgi-rs/", env!("CARGO_PKG_VERSION")).to_string(),
            https: false,
            extra: Vec::new(),
        }
    }

    /// Splits the path after the first segment ending in `suffix` (e.g. `".php"`): the part
    /// up to it is the script (`SCRIPT_NAME`), the rest is `PATH_INFO`.
    ///
    /// # Example
    ///
    /// ```
    /// let env = fcgi::client::CgiEnv::new("/srv").split_path_info(".php");
    /// ```
    pub fn split_path_info(mut self, suffix: impl Into<String>) -> CgiEnv {
        self.split = Some(suffix.into());
        self
    }

    /// The script appended to a path ending in `/` (default `index.php`).
    ///
    /// # Example
    ///
    /// ```
    /// let env = fcgi::client::CgiEnv::new("/srv").index("app.php");
    /// ```
    pub fn index(mut self, index: impl Into<String>) -> CgiEnv {
        self.index = index.into();
        self
    }

    /// The address the HTTP request arrived on (`SERVER_ADDR`, `SERVER_PORT`).
    ///
    /// # Example
    ///
    /// ```
    /// let env = fcgi::client::CgiEnv::new("/srv").server_addr("127.0.0.1:80".parse().unwrap());
    /// ```
    pub fn server_addr(mut self, addr: SocketAddr) -> CgiEnv {
        self.server_addr = Some(addr);
        self
    }

    /// The HTTP client's address (`REMOTE_ADDR`, `REMOTE_PORT`).
    ///
    /// # Example
    ///
    /// ```
    /// let env = fcgi::client::CgiEnv::new("/srv").remote_addr("127.0.0.1:4000".parse().unwrap());
    /// ```
    pub fn remote_addr(mut self, addr: SocketAddr) -> CgiEnv {
        self.remote_addr = Some(addr);
        self
    }

    /// `SERVER_NAME` (default: the `Host` header without its port, else the server address).
    ///
    /// # Example
    ///
    /// ```
    /// let env = fcgi::client::CgiEnv::new("/srv").server_name("example.com");
    /// ```
    pub fn server_name(mut self, name: impl Into<String>) -> CgiEnv {
        self.server_name = Some(name.into());
        self
    }

    /// `SERVER_SOFTWARE` (default `fcgi-rs/VERSION`).
    ///
    /// # Example
    ///
    /// ```
    /// let env = fcgi::client::CgiEnv::new("/srv").server_software("myproxy/1.0");
    /// ```
    pub fn server_software(mut self, name: impl Into<String>) -> CgiEnv {
        self.server_software = name.into();
        self
    }

    /// Whether the request came over TLS (`HTTPS=on`, `REQUEST_SCHEME=https`).
    ///
    /// # Example
    ///
    /// ```
    /// let env = fcgi::client::CgiEnv::new("/srv").https(true);
    /// ```
    pub fn https(mut self, on: bool) -> CgiEnv {
        self.https = on;
        self
    }

    /// An extra param added to every request (like nginx's `fastcgi_param`).
    ///
    /// # Example
    ///
    /// ```
    /// let env = fcgi::client::CgiEnv::new("/srv").param("APP_ENV", "prod");
    /// ```
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> CgiEnv {
        self.extra.push((name.into(), value.into()));
        self
    }
}

/// Why an HTTP request cannot be mapped to CGI params.
///
/// # Example
///
/// ```
/// use fcgi::client::{CgiEnv, CgiError, FcgiRequest};
/// let req = http::Request::get("/a/%2e%2e/secret.php").body(()).unwrap();
/// assert_eq!(FcgiRequest::from_http(&req, &CgiEnv::new("/srv")).unwrap_err(), CgiError::DotDotSegment);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CgiError {
    /// The decoded path contains a NUL byte.
    NulInPath,
    /// The decoded path has a `..` segment (it could leave the document root).
    DotDotSegment,
    /// The path does not start with `/`.
    RelativePath,
    /// The body's length is not known (`Transfer-Encoding` without `Content-Length`, or an
    /// HTTP/2 or HTTP/3 request that may carry a body and has no `Content-Length`): measure
    /// or spool it and use [`FcgiRequest::from_http_sized`].
    UnknownLength,
    /// `Content-Length` is not one decimal number (or the request has several that differ,
    /// or it differs from the length given to [`FcgiRequest::from_http_sized`]).
    BadContentLength,
}

impl fmt::Display for CgiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgiError::NulInPath => "request path contains a NUL byte",
            CgiError::DotDotSegment => "request path contains a '..' segment",
            CgiError::RelativePath => "request path does not start with '/'",
            CgiError::UnknownLength => {
                "request body length is unknown (no Content-Length): measure or spool the \
                 body and use FcgiRequest::from_http_sized"
            }
            CgiError::BadContentLength => "request has an invalid Content-Length",
        })
    }
}

impl std::error::Error for CgiError {}

/// `%XX` decoding; malformed escapes are kept as they are.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Splits `path` after the first segment ending in `suffix`.
fn split_path<'p>(path: &'p [u8], suffix: Option<&str>) -> (&'p [u8], &'p [u8]) {
    if let Some(suffix) = suffix.map(str::as_bytes).filter(|s| !s.is_empty()) {
        let mut from = 0;
        while let Some(pos) = find(&path[from..], suffix) {
            let end = from + pos + suffix.len();
            if end == path.len() || path[end] == b'/' {
                return (&path[..end], &path[end..]);
            }
            from += pos + 1;
        }
    }
    (path, b"")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl FcgiRequest {
    /// The params a web server sends for `req` (as nginx's `fastcgi_params` with
    /// `SCRIPT_FILENAME` and `fastcgi_split_path_info`): `SCRIPT_FILENAME`, `SCRIPT_NAME`,
    /// `PATH_INFO`, `PATH_TRANSLATED`, `REQUEST_METHOD`, `REQUEST_URI`, `DOCUMENT_URI`,
    /// `DOCUMENT_ROOT`, `QUERY_STRING`, `CONTENT_TYPE`, `CONTENT_LENGTH`, `SERVER_*`,
    /// `REMOTE_*`, `HTTPS`, `REQUEST_SCHEME`, `GATEWAY_INTERFACE`, `REDIRECT_STATUS` and one
    /// `HTTP_*` per header.
    ///
    /// `CONTENT_LENGTH` is never empty: the `Content-Length` header when there is one;
    /// otherwise `0` for an HTTP/1 request without `Transfer-Encoding` (it has no body,
    /// RFC 9112 6.3) and for a `GET`, `HEAD`, `OPTIONS` or `TRACE` over HTTP/2 or 3; any
    /// other request is refused with [`CgiError::UnknownLength`] (use
    /// [`FcgiRequest::from_http_sized`]).
    ///
    /// Headers: `Proxy` is dropped (httpoxy, CVE-2016-5385), as are names containing `_`
    /// (they would be indistinguishable from `-` once mapped); repeated headers are joined
    /// with `, ` (`Cookie` with `; `). The path is percent-decoded for `SCRIPT_NAME` and
    /// `PATH_INFO`; `REQUEST_URI` stays as received.
    ///
    /// # Errors
    ///
    /// [`CgiError`] for a path with NUL, a `..` segment, or no leading `/`, an invalid
    /// `Content-Length`, or a body of unknown length.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::client::{CgiEnv, FcgiRequest};
    /// let http_req = http::Request::post("/app/index.php/users/7?x=1")
    ///     .header("Host", "example.com:8080")
    ///     .header("Content-Type", "application/json")
    ///     .header("Content-Length", "2")
    ///     .header("Proxy", "http://evil/")
    ///     .body(())
    ///     .unwrap();
    /// let env = CgiEnv::new("/srv/www").split_path_info(".php");
    /// let req = FcgiRequest::from_http(&http_req, &env).unwrap();
    /// assert_eq!(req.get_param("SCRIPT_FILENAME"), Some(&b"/srv/www/app/index.php"[..]));
    /// assert_eq!(req.get_param("PATH_INFO"), Some(&b"/users/7"[..]));
    /// assert_eq!(req.get_param("QUERY_STRING"), Some(&b"x=1"[..]));
    /// assert_eq!(req.get_param("SERVER_NAME"), Some(&b"example.com"[..]));
    /// assert_eq!(req.get_param("HTTP_PROXY"), None);
    /// ```
    pub fn from_http<B>(req: &http::Request<B>, env: &CgiEnv) -> Result<FcgiRequest, CgiError> {
        let length = match declared_length(req)? {
            Some(n) => n,
            None if req.headers().contains_key(http::header::TRANSFER_ENCODING) => {
                return Err(CgiError::UnknownLength)
            }
            None if req.version() <= http::Version::HTTP_11 => 0,
            None if matches!(
                *req.method(),
                http::Method::GET
                    | http::Method::HEAD
                    | http::Method::OPTIONS
                    | http::Method::TRACE
            ) =>
            {
                0
            }
            None => return Err(CgiError::UnknownLength),
        };
        Self::build_from_http(req, env, length)
    }

    /// As [`FcgiRequest::from_http`], for a body of `length` bytes measured or spooled by
    /// the caller (chunked uploads, HTTP/2 without `Content-Length`): `CONTENT_LENGTH` is
    /// `length`.
    ///
    /// # Errors
    ///
    /// As [`FcgiRequest::from_http`]; [`CgiError::BadContentLength`] when the request
    /// declares another length.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::client::{CgiEnv, FcgiRequest};
    /// let http_req = http::Request::post("/upload.php")
    ///     .header("Transfer-Encoding", "chunked")
    ///     .body(())
    ///     .unwrap();
    /// let env = CgiEnv::new("/srv/www");
    /// assert!(FcgiRequest::from_http(&http_req, &env).is_err());
    /// let req = FcgiRequest::from_http_sized(&http_req, &env, 1234).unwrap();
    /// assert_eq!(req.get_param("CONTENT_LENGTH"), Some(&b"1234"[..]));
    /// ```
    pub fn from_http_sized<B>(
        req: &http::Request<B>,
        env: &CgiEnv,
        length: u64,
    ) -> Result<FcgiRequest, CgiError> {
        if declared_length(req)?.is_some_and(|n| n != length) {
            return Err(CgiError::BadContentLength);
        }
        Self::build_from_http(req, env, length)
    }

    fn build_from_http<B>(
        req: &http::Request<B>,
        env: &CgiEnv,
        length: u64,
    ) -> Result<FcgiRequest, CgiError> {
        let uri = req.uri();
        let raw_path = uri.path();
        if !raw_path.starts_with('/') {
            return Err(CgiError::RelativePath);
        }
        let path = percent_decode(raw_path.as_bytes());
        if path.contains(&0) {
            return Err(CgiError::NulInPath);
        }
        if path.split(|&b| b == b'/').any(|seg| seg == b"..") {
            return Err(CgiError::DotDotSegment);
        }
        let (script, path_info) = split_path(&path, env.split.as_deref());
        let mut script_name = script.to_vec();
        if script_name.ends_with(b"/") {
            script_name.extend_from_slice(env.index.as_bytes());
        }
        let root = env.document_root.as_os_str().as_bytes();
        let root = root.strip_suffix(b"/").unwrap_or(root);
        let join = |p: &[u8]| [root, p].concat();

        let headers = req.headers();
        let header =
            |name: http::header::HeaderName| headers.get(name).map(|v| v.as_bytes()).unwrap_or(b"");
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| uri.authority().map(|a| a.to_string()));
        let server_name = env
            .server_name
            .clone()
            .or_else(|| host.as_deref().map(strip_port))
            .or_else(|| env.server_addr.map(|a| a.ip().to_string()))
            .unwrap_or_default();
        let protocol = match req.version() {
            http::Version::HTTP_09 => "HTTP/0.9",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        let request_uri = uri.path_and_query().map(|p| p.as_str()).unwrap_or(raw_path);

        let mut out = FcgiRequest::new()
            .param("QUERY_STRING", uri.query().unwrap_or(""))
            .param("REQUEST_METHOD", req.method().as_str())
            .param("CONTENT_TYPE", header(http::header::CONTENT_TYPE))
            .param("CONTENT_LENGTH", length.to_string())
            .param("SCRIPT_NAME", &script_name)
            .param("SCRIPT_FILENAME", join(&script_name))
            .param("PATH_INFO", path_info)
            .param("REQUEST_URI", request_uri)
            .param("DOCUMENT_URI", &path)
            .param("DOCUMENT_ROOT", root)
            .param("SERVER_PROTOCOL", protocol)
            .param("REQUEST_SCHEME", if env.https { "https" } else { "http" })
            .param("GATEWAY_INTERFACE", "CGI/1.1")
            .param("SERVER_SOFTWARE", &env.server_software)
            .param("SERVER_NAME", server_name)
            // PHP built with --enable-force-cgi-redirect refuses to run without it.
            .param("REDIRECT_STATUS", "200");
        if !path_info.is_empty() {
            out = out.param("PATH_TRANSLATED", join(path_info));
        }
        if env.https {
            out = out.param("HTTPS", "on");
        }
        if let Some(a) = env.server_addr {
            out = out
                .param("SERVER_ADDR", a.ip().to_string())
                .param("SERVER_PORT", a.port().to_string());
        }
        if let Some(a) = env.remote_addr {
            out = out
                .param("REMOTE_ADDR", a.ip().to_string())
                .param("REMOTE_PORT", a.port().to_string());
        }
        for name in headers.keys() {
            let n = name.as_str();
            if n.contains('_')
                || name == http::header::CONTENT_TYPE
                || name == http::header::CONTENT_LENGTH
                || n == "proxy"
            {
                continue;
            }
            let sep: &[u8] = if name == http::header::COOKIE {
                b"; "
            } else {
                b", "
            };
            let mut value = Vec::new();
            for (i, v) in headers.get_all(name).iter().enumerate() {
                if i > 0 {
                    value.extend_from_slice(sep);
                }
                value.extend_from_slice(v.as_bytes());
            }
            let cgi_name = format!("HTTP_{}", n.to_ascii_uppercase().replace('-', "_"));
            out = out.param(cgi_name, value);
        }
        for (n, v) in &env.extra {
            out = out.param(n, v);
        }
        Ok(out)
    }
}

/// The request's `Content-Length`: `None` without one; an error when it is not a number or
/// several headers disagree.
fn declared_length<B>(req: &http::Request<B>) -> Result<Option<u64>, CgiError> {
    let mut found = None;
    for v in req.headers().get_all(http::header::CONTENT_LENGTH) {
        let text = v.to_str().map_err(|_| CgiError::BadContentLength)?.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CgiError::BadContentLength);
        }
        let n: u64 = text.parse().map_err(|_| CgiError::BadContentLength)?;
        if found.is_some_and(|f| f != n) {
            return Err(CgiError::BadContentLength);
        }
        found = Some(n);
    }
    Ok(found)
}

fn strip_port(host: &str) -> String {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
        .to_string()
}

impl Head {
    /// An `http::response::Builder` with this head's status and headers (fields that are
    /// not valid HTTP header names or values are skipped).
    ///
    /// # Example
    ///
    /// ```
    /// let head = fcgi::client::Head::parse(b"Status: 404\r\nContent-Type: text/plain\r\n").unwrap();
    /// let resp = head.to_http().body(()).unwrap();
    /// assert_eq!(resp.status(), 404);
    /// assert_eq!(resp.headers()["content-type"], "text/plain");
    /// ```
    pub fn to_http(&self) -> http::response::Builder {
        let mut b = http::Response::builder()
            .status(http::StatusCode::from_u16(self.status()).unwrap_or(http::StatusCode::OK));
        if let Some(h) = b.headers_mut() {
            for (n, v) in self.headers() {
                if let (Ok(n), Ok(v)) = (
                    http::header::HeaderName::from_bytes(n.as_bytes()),
                    http::header::HeaderValue::from_str(v),
                ) {
                    h.append(n, v);
                }
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(req: &http::Request<()>, env: &CgiEnv) -> FcgiRequest {
        FcgiRequest::from_http(req, env).unwrap()
    }

    fn get<'a>(r: &'a FcgiRequest, n: &str) -> Option<&'a str> {
        r.get_param(n).map(|v| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"/a%20b"), b"/a b");
        assert_eq!(percent_decode(b"/%zz%4"), b"/%zz%4");
        assert_eq!(percent_decode(b"%41%42%"), b"AB%");
        assert_eq!(percent_decode(b"%e2%82%ac"), "€".as_bytes());
    }

    #[test]
    fn split_rules() {
        assert_eq!(
            split_path(b"/a.php/b/c", Some(".php")),
            (&b"/a.php"[..], &b"/b/c"[..])
        );
        assert_eq!(
            split_path(b"/x.phpx/y.php", Some(".php")),
            (&b"/x.phpx/y.php"[..], &b""[..])
        );
        assert_eq!(
            split_path(b"/a.php", Some(".php")),
            (&b"/a.php"[..], &b""[..])
        );
        assert_eq!(split_path(b"/a/b", None), (&b"/a/b"[..], &b""[..]));
    }

    #[test]
    fn index_root_and_addresses() {
        let req = http::Request::get("/blog/?p=1")
            .header("Host", "[::1]:8443")
            .header("Cookie", "a=1")
            .header("cookie", "b=2")
            .header("Accept", "text/html")
            .header("accept", "*/*")
            .header("X_Spoof", "1")
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap();
        let env = CgiEnv::new("/srv/www/")
            .https(true)
            .server_addr("127.0.0.1:8443".parse().unwrap())
            .remote_addr("127.0.0.2:5000".parse().unwrap())
            .param("APP", "x");
        let p = params(&req, &env);
        assert_eq!(get(&p, "SCRIPT_NAME"), Some("/blog/index.php"));
        assert_eq!(get(&p, "SCRIPT_FILENAME"), Some("/srv/www/blog/index.php"));
        assert_eq!(get(&p, "DOCUMENT_ROOT"), Some("/srv/www"));
        assert_eq!(get(&p, "PATH_INFO"), Some(""));
        assert_eq!(get(&p, "PATH_TRANSLATED"), None);
        assert_eq!(get(&p, "REQUEST_URI"), Some("/blog/?p=1"));
        assert_eq!(get(&p, "SERVER_NAME"), Some("::1"));
        assert_eq!(get(&p, "SERVER_PROTOCOL"), Some("HTTP/2.0"));
        assert_eq!(get(&p, "HTTPS"), Some("on"));
        assert_eq!(get(&p, "REQUEST_SCHEME"), Some("https"));
        assert_eq!(get(&p, "SERVER_PORT"), Some("8443"));
        assert_eq!(get(&p, "REMOTE_ADDR"), Some("127.0.0.2"));
        assert_eq!(get(&p, "REMOTE_PORT"), Some("5000"));
        assert_eq!(get(&p, "HTTP_COOKIE"), Some("a=1; b=2"));
        assert_eq!(get(&p, "HTTP_ACCEPT"), Some("text/html, */*"));
        assert_eq!(get(&p, "HTTP_X_SPOOF"), None);
        assert_eq!(get(&p, "HTTP_HOST"), Some("[::1]:8443"));
        assert_eq!(get(&p, "CONTENT_LENGTH"), Some("0"));
        assert_eq!(get(&p, "APP"), Some("x"));
    }

    #[test]
    fn rejected_paths() {
        let env = CgiEnv::new("/srv");
        for (path, err) in [
            ("/a/../b.php", CgiError::DotDotSegment),
            ("/a/%2E%2E/b.php", CgiError::DotDotSegment),
            ("/..", CgiError::DotDotSegment),
            ("/a%00.php", CgiError::NulInPath),
        ] {
            let req = http::Request::get(path).body(()).unwrap();
            assert_eq!(
                FcgiRequest::from_http(&req, &env).unwrap_err(),
                err,
                "{path}"
            );
        }
        // "..." and "..a" are ordinary names.
        let req = http::Request::get("/.../..a.php").body(()).unwrap();
        assert!(FcgiRequest::from_http(&req, &env).is_ok());
    }

    #[test]
    fn content_length_is_never_empty() {
        let env = CgiEnv::new("/srv");
        let len = |req: http::Request<()>| {
            FcgiRequest::from_http(&req, &env)
                .map(|r| String::from_utf8(r.get_param("CONTENT_LENGTH").unwrap().to_vec()))
        };
        let post = || http::Request::post("/a.php");
        assert_eq!(
            len(post().header("Content-Length", "12").body(()).unwrap()),
            Ok(Ok("12".into()))
        );
        assert_eq!(len(post().body(()).unwrap()), Ok(Ok("0".into())));
        assert_eq!(
            len(post()
                .header("Transfer-Encoding", "chunked")
                .body(())
                .unwrap()),
            Err(CgiError::UnknownLength)
        );
        let h2 = |m: &str| {
            http::Request::builder()
                .method(m)
                .uri("/a.php")
                .version(http::Version::HTTP_2)
        };
        assert_eq!(len(h2("GET").body(()).unwrap()), Ok(Ok("0".into())));
        assert_eq!(
            len(h2("POST").body(()).unwrap()),
            Err(CgiError::UnknownLength)
        );
        assert_eq!(
            len(h2("POST").header("Content-Length", "3").body(()).unwrap()),
            Ok(Ok("3".into()))
        );
        for bad in ["", "x", "-1", "1 2", "99999999999999999999999"] {
            assert_eq!(
                len(post().header("Content-Length", bad).body(()).unwrap()),
                Err(CgiError::BadContentLength),
                "{bad:?}"
            );
        }
        let twice = post()
            .header("Content-Length", "1")
            .header("Content-Length", "2")
            .body(())
            .unwrap();
        assert_eq!(len(twice), Err(CgiError::BadContentLength));
        let req = post().header("Content-Length", "5").body(()).unwrap();
        assert_eq!(
            FcgiRequest::from_http_sized(&req, &env, 6).unwrap_err(),
            CgiError::BadContentLength
        );
        let req = post().body(()).unwrap();
        assert!(FcgiRequest::from_http_sized(&req, &env, 6).is_ok());
        assert!(CgiError::UnknownLength
            .to_string()
            .contains("from_http_sized"));
    }

    #[test]
    fn head_to_http_skips_invalid_fields() {
        let head =
            Head::parse(b"Status: 201\nX-Ok: yes\nSet-Cookie: a=1\nSet-Cookie: b=2\n").unwrap();
        let resp = head.to_http().body(()).unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers().get_all("set-cookie").iter().count(), 2);
        assert_eq!(resp.headers()["x-ok"], "yes");
    }
}
