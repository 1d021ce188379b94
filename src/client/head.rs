//! The CGI response head (RFC 3875 section 6): header lines up to the first empty line.
//!
//! This module owns the pure parsing of the head a FastCGI Responder writes at the start of
//! its stdout: `Status:`, `Location:` and the other header fields. It works on bytes already
//! received; reading them from the connection is the job of [`super::Response`].

use std::fmt;

/// A parsed CGI response head: the HTTP status and the header fields, in order.
///
/// Header names keep the case the application wrote; lookups ignore case. The CGI-only
/// field `Status` is consumed into [`Head::status`] and not kept among the headers;
/// `Location` is kept.
///
/// # Example
///
/// ```
/// use fcgi::client::Head;
/// let head = Head::parse(b"Status: 404 Not Here\r\nContent-Type: text/plain\r\n").unwrap();
/// assert_eq!(head.status(), 404);
/// assert_eq!(head.reason(), Some("Not Here"));
/// assert_eq!(head.header("content-type"), Some("text/plain"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    status: u16,
    reason: Option<String>,
    explicit_status: bool,
    headers: Vec<(String, String)>,
}

/// Why a CGI response head could not be parsed.
///
/// # Example
///
/// ```
/// use fcgi::client::{Head, HeadError};
/// assert!(matches!(Head::parse(b"no colon here\n"), Err(HeadError::BadLine { line: 1 })));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadError {
    /// A line that is neither `name: value` nor a continuation of the previous field.
    BadLine {
        /// The 1-based line number.
        line: usize,
    },
    /// A `Status:` value that does not start with a 3-digit code from 100 to 999.
    BadStatus(String),
    /// A header name or value that is not valid UTF-8 or contains control characters.
    BadEncoding {
        /// The 1-based line number.
        line: usize,
    },
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::BadLine { line } => {
                write!(
                    f,
                    "line {line} of the CGI response head is not a header field"
                )
            }
            HeadError::BadStatus(v) => write!(f, "invalid CGI Status value {v:?}"),
            HeadError::BadEncoding { line } => write!(
                f,
                "line {line} of the CGI response head has non-UTF-8 or control bytes"
            ),
        }
    }
}

impl std::error::Error for HeadError {}

/// Finds the end of the head in `buf`: the index just past the empty line (`\n\n`,
/// `\r\n\r\n` or a mix), or `None` if the head is not complete yet.
///
/// # Example
///
/// ```
/// use fcgi::client::find_head_end;
/// assert_eq!(find_head_end(b"A: b\r\n\r\nbody"), Some(8));
/// assert_eq!(find_head_end(b"A: b\n\nbody"), Some(6));
/// assert_eq!(find_head_end(b"\r\nbody"), Some(2));
/// assert_eq!(find_head_end(b"A: b\r\n"), None);
/// ```
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

impl Head {
    /// Parses the header lines of a head, without its final empty line (it may be present).
    ///
    /// Lines end with LF or CRLF. A line starting with a space or tab continues the
    /// previous field (obsolete folding, joined with one space). Without `Status:`, the status
    /// is 302 when a `Location:` is an absolute URL (client redirect, RFC 3875 6.2.4) and 200
    /// otherwise; a `Location:` starting with `/` without `Status:` is a local redirect
    /// ([`Head::is_local_redirect`]).
    ///
    /// # Errors
    ///
    /// [`HeadError`] for a line without a colon, a bad header name, non-UTF-8 bytes, or an
    /// invalid `Status:` value.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::client::Head;
    /// let head = Head::parse(b"Location: https://example.com/\n").unwrap();
    /// assert_eq!(head.status(), 302);
    /// assert_eq!(head.location(), Some("https://example.com/"));
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Head, HeadError> {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut status: Option<(u16, Option<String>)> = None;
        for (idx, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line_no = idx + 1;
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if line.is_empty() {
                // The empty line ends the head; anything after it is not ours to parse.
                break;
            }
            let text =
                std::str::from_utf8(line).map_err(|_| HeadError::BadEncoding { line: line_no })?;
            if text.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                return Err(HeadError::BadEncoding { line: line_no });
            }
            if text.starts_with([' ', '\t']) {
                let Some(last) = headers.last_mut() else {
                    return Err(HeadError::BadLine { line: line_no });
                };
                last.1.push(' ');
                last.1.push_str(text.trim());
                continue;
            }
            let Some((name, value)) = text.split_once(':') else {
                return Err(HeadError::BadLine { line: line_no });
            };
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(HeadError::BadLine { line: line_no });
            }
            let value = value.trim_matches([' ', '\t']);
            if name.eq_ignore_ascii_case("Status") {
                status = Some(parse_status(value)?);
            } else {
                headers.push((name.to_string(), value.to_string()));
            }
        }
        let explicit_status = status.is_some();
        let (code, reason) = match status {
            Some(s) => s,
            None => {
                let location = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("Location"));
                match location {
                    Some((_, v)) if !v.starts_with('/') => (302, None),
                    _ => (200, None),
                }
            }
        };
        Ok(Head {
            status: code,
            reason,
            explicit_status,
            headers,
        })
    }

    /// The HTTP status code.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::client::Head::parse(b"Content-Type: a/b").unwrap().status(), 200);
    /// ```
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase of the `Status:` field, if the application gave one.
    ///
    /// # Example
    ///
    /// ```
    /// let h = fcgi::client::Head::parse(b"Status: 201 Created").unwrap();
    /// assert_eq!(h.reason(), Some("Created"));
    /// ```
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The header fields in the order received (without `Status`).
    ///
    /// # Example
    ///
    /// ```
    /// let h = fcgi::client::Head::parse(b"A: 1\nB: 2\n").unwrap();
    /// assert_eq!(h.headers()[1], ("B".to_string(), "2".to_string()));
    /// ```
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of the first field named `name` (ASCII case-insensitive).
    ///
    /// # Example
    ///
    /// ```
    /// let h = fcgi::client::Head::parse(b"X-Powered-By: PHP").unwrap();
    /// assert_eq!(h.header("x-powered-by"), Some("PHP"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the fields named `name` (e.g. several `Set-Cookie`).
    ///
    /// # Example
    ///
    /// ```
    /// let h = fcgi::client::Head::parse(b"Set-Cookie: a=1\nSet-Cookie: b=2").unwrap();
    /// assert_eq!(h.header_all("set-cookie").collect::<Vec<_>>(), ["a=1", "b=2"]);
    /// ```
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Location` field, if any.
    ///
    /// # Example
    ///
    /// ```
    /// let h = fcgi::client::Head::parse(b"Status: 301\nLocation: /new").unwrap();
    /// assert_eq!((h.status(), h.location()), (301, Some("/new")));
    /// ```
    pub fn location(&self) -> Option<&str> {
        self.header("Location")
    }

    /// True for a CGI local redirect (RFC 3875 6.2.2): a `Location:` that is a path, with
    /// no `Status:`; the web server is expected to serve that path itself.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(fcgi::client::Head::parse(b"Location: /other").unwrap().is_local_redirect());
    /// ```
    pub fn is_local_redirect(&self) -> bool {
        !self.explicit_status && self.location().is_some_and(|l| l.starts_with('/'))
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_status(value: &str) -> Result<(u16, Option<String>), HeadError> {
    let bad = || HeadError::BadStatus(value.to_string());
    let digits = value.get(..3).ok_or_else(bad)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let code: u16 = digits.parse().map_err(|_| bad())?;
    if code < 100 {
        return Err(bad());
    }
    let rest = &value[3..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return Err(bad());
    }
    let reason = rest.trim();
    Ok((code, (!reason.is_empty()).then(|| reason.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_style_head() {
        let raw = b"X-Powered-By: PHP/8.2\r\nStatus: 418 I'm a teapot\r\nContent-type: text/html; charset=UTF-8\r\n\r\nbody";
        let end = find_head_end(raw).unwrap();
        assert_eq!(&raw[end..], b"body");
        let h = Head::parse(&raw[..end]).unwrap();
        assert_eq!(h.status(), 418);
        assert_eq!(h.reason(), Some("I'm a teapot"));
        assert_eq!(h.headers().len(), 2);
        assert_eq!(h.header("CONTENT-TYPE"), Some("text/html; charset=UTF-8"));
        assert_eq!(h.header("status"), None);
    }

    #[test]
    fn defaults_and_redirects() {
        assert_eq!(Head::parse(b"").unwrap().status(), 200);
        let h = Head::parse(b"Location: http://x/\n").unwrap();
        assert_eq!(h.status(), 302);
        assert!(!h.is_local_redirect());
        let h = Head::parse(b"Location: /local?x=1\n").unwrap();
        assert_eq!(h.status(), 200);
        assert!(h.is_local_redirect());
        let h = Head::parse(b"Status: 303 See Other\nLocation: /x\n").unwrap();
        assert_eq!(h.status(), 303);
        assert!(!h.is_local_redirect());
    }

    #[test]
    fn bad_status_values() {
        for v in ["", "20", "abc", "2000", "099", "20x OK", "200OK"] {
            let line = format!("Status: {v}\n");
            assert!(
                matches!(Head::parse(line.as_bytes()), Err(HeadError::BadStatus(_))),
                "{v:?} accepted"
            );
        }
        assert_eq!(Head::parse(b"Status:200").unwrap().status(), 200);
        assert_eq!(Head::parse(b"Status: 200\t").unwrap().reason(), None);
    }

    #[test]
    fn bad_lines() {
        assert_eq!(
            Head::parse(b"A: 1\ngarbage\n"),
            Err(HeadError::BadLine { line: 2 })
        );
        assert_eq!(Head::parse(b": v\n"), Err(HeadError::BadLine { line: 1 }));
        assert_eq!(
            Head::parse(b"Bad Name: v\n"),
            Err(HeadError::BadLine { line: 1 })
        );
        assert_eq!(
            Head::parse(b" leading continuation\n"),
            Err(HeadError::BadLine { line: 1 })
        );
        assert_eq!(
            Head::parse(b"A: \xff\xfe\n"),
            Err(HeadError::BadEncoding { line: 1 })
        );
        assert_eq!(
            Head::parse(b"A: x\x00y\n"),
            Err(HeadError::BadEncoding { line: 1 })
        );
    }

    #[test]
    fn folding_and_multiple_values() {
        let h = Head::parse(b"A: one\r\n  two\r\nA: three\r\n").unwrap();
        assert_eq!(h.header_all("a").collect::<Vec<_>>(), ["one two", "three"]);
    }

    #[test]
    fn head_end_variants() {
        assert_eq!(find_head_end(b"\n"), Some(1));
        assert_eq!(find_head_end(b"A: b\r\n\nx"), Some(7));
        assert_eq!(find_head_end(b"A: b\n\r\nx"), Some(7));
        assert_eq!(find_head_end(b"A: b\r\r\n"), None);
        assert_eq!(find_head_end(b""), None);
    }
}
