//! Helpers for the CGI response head (`Status:` and headers) and the Authorizer role.

use std::io::{self, Write};

use super::Request;

/// The reason phrase of an HTTP status code; `""` for codes it does not know.
///
/// # Example
///
/// ```
/// assert_eq!(fcgi::server::reason_phrase(404), "Not Found");
/// ```
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Rejects header names and values that would break the CGI head (CR, LF, or `:` in a name).
fn check_header(name: &str, value: &[u8]) -> io::Result<()> {
    let bad_name = name.is_empty() || name.bytes().any(|b| b == b':' || b <= b' ' || b == 127);
    if bad_name || value.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid response header {name:?}: {:?}",
                String::from_utf8_lossy(value)
            ),
        ));
    }
    Ok(())
}

impl Request {
    /// Writes the CGI response head: `Status: <code> <reason>`, the headers, and the empty
    /// line. The body follows with `stdout()`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a header name or value containing CR or LF (or a name with `:`),
    /// before anything is written; else write errors.
    ///
    /// # Example
    ///
    /// ```
    /// let mut req = fcgi::Request::for_test(&[], b"");
    /// req.write_head(201, &[("Location", "/items/7")]).unwrap();
    /// assert_eq!(req.test_output(), b"Status: 201 Created\r\nLocation: /items/7\r\n\r\n");
    /// assert!(req.write_head(200, &[("X", "a\r\nSet-Cookie: evil")]).is_err());
    /// ```
    pub fn write_head(&mut self, status: u16, headers: &[(&str, &str)]) -> io::Result<()> {
        self.write_head_bytes(status, headers)
    }

    /// As [`Request::write_head`], with header values as bytes (`&[u8]`, `Vec<u8>`,
    /// `&str`, ...): a value need not be UTF-8, e.g. a raw query string echoed back.
    /// Values are checked for CR and LF all the same. Names stay `&str` (HTTP header
    /// names are ASCII tokens).
    ///
    /// # Errors
    ///
    /// As [`Request::write_head`].
    ///
    /// # Example
    ///
    /// ```
    /// let mut req = fcgi::Request::for_test_bytes(&[(b"QUERY_STRING", b"q=\xff")], b"");
    /// let raw = req.param_bytes(b"QUERY_STRING").unwrap().to_vec();
    /// req.write_head_bytes(200, &[("X-Query", &raw[..])]).unwrap();
    /// assert_eq!(req.test_output(), b"Status: 200 OK\r\nX-Query: q=\xff\r\n\r\n");
    /// assert!(req.write_head_bytes(200, &[("X", &b"a\nb"[..])]).is_err());
    /// ```
    pub fn write_head_bytes<V: AsRef<[u8]>>(
        &mut self,
        status: u16,
        headers: &[(&str, V)],
    ) -> io::Result<()> {
        for (n, v) in headers {
            check_header(n, v.as_ref())?;
        }
        let mut head = format!("Status: {status} {}\r\n", reason_phrase(status)).into_bytes();
        for (n, v) in headers {
            head.extend_from_slice(n.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(v.as_ref());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        self.stdout().write_all(&head)
    }

    /// As [`Request::respond`], with header values as bytes (see
    /// [`Request::write_head_bytes`]).
    ///
    /// # Errors
    ///
    /// As [`Request::write_head`].
    ///
    /// # Example
    ///
    /// ```
    /// let mut req = fcgi::Request::for_test(&[], b"");
    /// req.respond_bytes(200, &[("Content-Type", &b"text/plain; charset=latin1"[..])], b"\xe9").unwrap();
    /// assert!(req.test_output().ends_with(b"\r\n\r\n\xe9"));
    /// ```
    pub fn respond_bytes<V: AsRef<[u8]>>(
        &mut self,
        status: u16,
        headers: &[(&str, V)],
        body: &[u8],
    ) -> io::Result<()> {
        self.write_head_bytes(status, headers)?;
        self.stdout().write_all(body)
    }

    /// Writes a whole response: head and body.
    ///
    /// # Errors
    ///
    /// As [`Request::write_head`].
    ///
    /// # Example
    ///
    /// ```
    /// let mut req = fcgi::Request::for_test(&[], b"");
    /// req.respond(404, &[("Content-Type", "text/plain")], b"no such thing").unwrap();
    /// assert!(req.test_output().starts_with(b"Status: 404 Not Found\r\n"));
    /// ```
    pub fn respond(
        &mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        self.write_head(status, headers)?;
        self.stdout().write_all(body)
    }

    /// Authorizer role: grants access (status 200) and passes `variables` to the web
    /// server as `Variable-NAME: value` headers, which it adds to the request's environment
    /// (spec 6.3).
    ///
    /// # Errors
    ///
    /// As [`Request::write_head`].
    ///
    /// # Example
    ///
    /// ```
    /// let mut req = fcgi::Request::for_test(&[], b"");
    /// req.authorize(&[("REMOTE_USER", "alice")]).unwrap();
    /// assert_eq!(req.test_output(), b"Status: 200 OK\r\nVariable-REMOTE_USER: alice\r\n\r\n");
    /// ```
    pub fn authorize(&mut self, variables: &[(&str, &str)]) -> io::Result<()> {
        let names: Vec<String> = variables
            .iter()
            .map(|(n, _)| format!("Variable-{n}"))
            .collect();
        let headers: Vec<(&str, &str)> = names
            .iter()
            .zip(variables)
            .map(|(n, (_, v))| (n.as_str(), *v))
            .collect();
        self.write_head(200, &headers)
    }

    /// Authorizer role: denies access. The web server sends this status, headers and body
    /// to the client (spec 6.3); use 401 with a `WWW-Authenticate` header to ask for
    /// credentials, 403 to refuse.
    ///
    /// # Errors
    ///
    /// As [`Request::write_head`].
    ///
    /// # Example
    ///
    /// ```
    /// let mut req = fcgi::Request::for_test(&[], b"");
    /// req.deny(401, &[("WWW-Authenticate", "Basic realm=\"x\"")], b"who are you?").unwrap();
    /// assert!(req.test_output().starts_with(b"Status: 401 Unauthorized\r\n"));
    /// ```
    pub fn deny(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> io::Result<()> {
        self.respond(status, headers, body)
    }
}
