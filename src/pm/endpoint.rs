//! Answering status and ping requests over FastCGI, as php-fpm does: the request's path
//! (`SCRIPT_NAME`, else `DOCUMENT_URI`, else the path of `REQUEST_URI`) is compared with
//! `pm.status_path` and `ping.path`; the status format comes from `QUERY_STRING`; `HEAD`
//! gets the headers only; the answers are never cached.
//!
//! The `fcgi-pm` manager answers on its `pm.status_listen` socket with this module. A Rust
//! [`Server`](crate::Server) gets the same document by wrapping its handler
//! ([`with_status`]) or on a listener of its own ([`serve_status`]).
//!
//! # Example
//!
//! ```no_run
//! use fcgi::pm::endpoint::{with_status, Paths};
//! let server = fcgi::Server::bind("127.0.0.1:9000")?;
//! let stats = server.stats_handle();
//! server.serve(with_status("app", Paths::new("/status", "/ping"), stats, |req| {
//!     req.respond(200, &[("Content-Type", "text/plain")], b"hello")
//! }))
//! # ; Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use super::status::{self, Page, PoolStatus, Query, NO_CACHE_HEADERS};
use crate::server::{Request, StatsHandle};

/// The paths a status endpoint answers, and the ping response.
///
/// # Example
///
/// ```
/// let p = fcgi::pm::endpoint::Paths::new("/status", "/ping");
/// assert_eq!(p.ping_response, "pong");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Paths {
    /// `pm.status_path`.
    pub status: Option<String>,
    /// `ping.path`.
    pub ping: Option<String>,
    /// `ping.response` (php-fpm's default `pong`).
    pub ping_response: String,
}

impl Paths {
    /// Both paths set, ping answering `pong`.
    ///
    /// # Example
    ///
    /// ```
    /// let p = fcgi::pm::endpoint::Paths::new("/fpm-status", "/fpm-ping");
    /// assert_eq!(p.status.as_deref(), Some("/fpm-status"));
    /// ```
    pub fn new(status: &str, ping: &str) -> Paths {
        Paths {
            status: Some(status.into()),
            ping: Some(ping.into()),
            ping_response: "pong".into(),
        }
    }
}

/// What a request asks for.
///
/// # Example
///
/// ```
/// use fcgi::pm::endpoint::{route, Paths, Route};
/// let req = fcgi::Request::for_test(&[("SCRIPT_NAME", "/ping")], b"");
/// assert_eq!(route(&Paths::new("/status", "/ping"), &req), Route::Ping);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The status page, in this format.
    Status(Query),
    /// The ping page.
    Ping,
    /// Neither.
    Other,
}

/// The path a request is for: `SCRIPT_NAME`, else `DOCUMENT_URI`, else `REQUEST_URI`
/// without its query string.
///
/// # Example
///
/// ```
/// let req = fcgi::Request::for_test(&[("REQUEST_URI", "/status?json")], b"");
/// assert_eq!(fcgi::pm::endpoint::request_path(&req), "/status");
/// ```
pub fn request_path(req: &Request) -> &str {
    req.param("SCRIPT_NAME")
        .filter(|s| !s.is_empty())
        .or_else(|| req.param("DOCUMENT_URI").filter(|s| !s.is_empty()))
        .or_else(|| {
            req.param("REQUEST_URI")
                .map(|u| u.split('?').next().unwrap_or(""))
        })
        .unwrap_or("")
}

/// Which page `req` asks for under `paths`.
///
/// # Example
///
/// ```
/// use fcgi::pm::endpoint::{route, Paths, Route};
/// let req = fcgi::Request::for_test(&[("SCRIPT_NAME", "/status"), ("QUERY_STRING", "json")], b"");
/// assert!(matches!(route(&Paths::new("/status", "/ping"), &req), Route::Status(_)));
/// ```
pub fn route(paths: &Paths, req: &Request) -> Route {
    let path = request_path(req);
    if paths.ping.as_deref() == Some(path) {
        Route::Ping
    } else if paths.status.as_deref() == Some(path) {
        Route::Status(Query::parse(req.param("QUERY_STRING").unwrap_or("")))
    } else {
        Route::Other
    }
}

/// Sends `page` with the no-cache headers (only the headers for `HEAD`).
///
/// # Errors
///
/// Writing to the web server failed.
///
/// # Example
///
/// ```
/// let mut req = fcgi::Request::for_test(&[("REQUEST_METHOD", "GET")], b"");
/// let page = fcgi::pm::status::render(&fcgi::pm::status::PoolStatus::new("www", "static"), &Default::default());
/// fcgi::pm::endpoint::send_page(&mut req, &page).unwrap();
/// assert!(String::from_utf8_lossy(req.test_output()).contains("pool:"));
/// ```
pub fn send_page(req: &mut Request, page: &Page) -> io::Result<()> {
    let head = req.param("REQUEST_METHOD") == Some("HEAD");
    let headers = [
        ("Content-Type", page.content_type),
        NO_CACHE_HEADERS[0],
        NO_CACHE_HEADERS[1],
    ];
    req.write_head(200, &headers)?;
    if !head {
        req.stdout().write_all(page.body.as_bytes())?;
    }
    Ok(())
}

/// Answers `req` if it is a status or ping request: `Ok(true)` when answered, `Ok(false)`
/// when it is for something else. `snapshot` is called only for status requests.
///
/// # Errors
///
/// Writing to the web server failed.
///
/// # Example
///
/// ```
/// use fcgi::pm::endpoint::{answer, Paths};
/// use fcgi::pm::status::PoolStatus;
/// let mut req = fcgi::Request::for_test(&[("SCRIPT_NAME", "/ping")], b"");
/// assert!(answer(&mut req, &Paths::new("/status", "/ping"), || PoolStatus::new("www", "static")).unwrap());
/// assert!(String::from_utf8_lossy(req.test_output()).ends_with("pong"));
/// ```
pub fn answer(
    req: &mut Request,
    paths: &Paths,
    snapshot: impl FnOnce() -> PoolStatus,
) -> io::Result<bool> {
    match route(paths, req) {
        Route::Ping => {
            send_page(req, &Page::new("text/plain", paths.ping_response.clone()))?;
            Ok(true)
        }
        Route::Status(q) => {
            send_page(req, &status::render(&snapshot(), &q))?;
            Ok(true)
        }
        Route::Other => Ok(false),
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Wraps a Rust server's handler so that the status and ping paths are answered from the
/// server's own [`Stats`](crate::server::Stats) (workers instead of processes) and every
/// other request goes to `handler`.
///
/// # Example
///
/// ```
/// use fcgi::pm::endpoint::{with_status, Paths};
/// let server = fcgi::Server::bind("127.0.0.1:0").unwrap().workers(2);
/// let h = with_status("app", Paths::new("/status", "/ping"), server.stats_handle(), |req| {
///     req.respond(200, &[], b"app")
/// });
/// let mut req = fcgi::Request::for_test(&[("SCRIPT_NAME", "/status"), ("QUERY_STRING", "json")], b"");
/// h(&mut req).unwrap();
/// assert!(String::from_utf8_lossy(req.test_output()).contains("\"idle workers\":2"));
/// ```
pub fn with_status<H>(
    name: &str,
    paths: Paths,
    stats: StatsHandle,
    handler: H,
) -> impl Fn(&mut Request) -> io::Result<()> + Send + Sync + 'static
where
    H: Fn(&mut Request) -> io::Result<()> + Send + Sync + 'static,
{
    let name = name.to_string();
    let started = now_secs();
    move |req| {
        let snapshot = || status::server_status(&name, &stats.snapshot(), started);
        if answer(req, &paths, snapshot)? {
            return Ok(());
        }
        handler(req)
    }
}

/// Serves the status and ping pages of a Rust server on a listener of their own (a
/// FastCGI socket at `addr`, two worker threads), so they answer even when every worker of
/// the application is busy. Runs until the process ends; other paths get `404`.
///
/// # Errors
///
/// Binding `addr` failed.
///
/// # Example
///
/// ```no_run
/// let server = fcgi::Server::bind("127.0.0.1:9000")?;
/// fcgi::pm::endpoint::serve_status("127.0.0.1:9001", "app", fcgi::pm::endpoint::Paths::new("/status", "/ping"), server.stats_handle())?;
/// server.serve(|req| req.respond(200, &[], b"app"))
/// # ; Ok::<(), std::io::Error>(())
/// ```
pub fn serve_status(
    addr: &str,
    name: &str,
    paths: Paths,
    stats: StatsHandle,
) -> io::Result<std::thread::JoinHandle<io::Result<()>>> {
    serve_status_on(crate::server::Listener::bind(addr)?, name, paths, stats)
}

/// As [`serve_status`], on a listener the caller bound (port 0, an inherited socket).
///
/// # Errors
///
/// Setting up the listener failed.
///
/// # Example
///
/// ```
/// use fcgi::pm::endpoint::{serve_status_on, Paths};
/// let server = fcgi::Server::bind("127.0.0.1:0")?;
/// let side = fcgi::server::Listener::bind("127.0.0.1:0")?;
/// println!("status on {}", side.local_addr()?);
/// serve_status_on(side, "app", Paths::new("/status", "/ping"), server.stats_handle())?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve_status_on(
    listener: crate::server::Listener,
    name: &str,
    paths: Paths,
    stats: StatsHandle,
) -> io::Result<std::thread::JoinHandle<io::Result<()>>> {
    let config = crate::server::Config {
        workers: 2,
        handle_signals: false,
        ..Default::default()
    };
    let server = crate::Server::from_listener(listener)?.config_with(config);
    let handler = with_status(name, paths, stats, |req| {
        req.respond(404, &[("Content-Type", "text/plain")], b"File not found.\n")
    });
    std::thread::Builder::new()
        .name("fcgi-status".into())
        .spawn(move || server.serve(handler))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(req: &Request) -> String {
        String::from_utf8_lossy(req.test_output()).into_owned()
    }

    #[test]
    fn paths_come_from_script_name_then_document_uri_then_request_uri() {
        let r = Request::for_test(&[("SCRIPT_NAME", "/a"), ("REQUEST_URI", "/b")], b"");
        assert_eq!(request_path(&r), "/a");
        let r = Request::for_test(&[("DOCUMENT_URI", "/c"), ("REQUEST_URI", "/b?x")], b"");
        assert_eq!(request_path(&r), "/c");
        let r = Request::for_test(&[("REQUEST_URI", "/b?x")], b"");
        assert_eq!(request_path(&r), "/b");
        let r = Request::for_test(&[], b"");
        assert_eq!(request_path(&r), "");
    }

    #[test]
    fn head_gets_headers_only() {
        let mut r = Request::for_test(&[("SCRIPT_NAME", "/ping"), ("REQUEST_METHOD", "HEAD")], b"");
        assert!(answer(&mut r, &Paths::new("/status", "/ping"), || unreachable!()).unwrap());
        let o = out(&r);
        assert!(o.contains("Cache-Control: no-cache"));
        assert!(!o.contains("pong"));
    }

    #[test]
    fn other_paths_are_left_alone() {
        let mut r = Request::for_test(&[("SCRIPT_NAME", "/index")], b"");
        assert!(!answer(&mut r, &Paths::new("/status", "/ping"), || unreachable!()).unwrap());
        assert!(out(&r).is_empty());
        let mut r = Request::for_test(&[("SCRIPT_NAME", "/status")], b"");
        assert!(!answer(&mut r, &Paths::default(), || unreachable!()).unwrap());
    }
}
