//! The status document of a pool, in php-fpm's formats: text (the default), `?json`,
//! `?xml`, `?html`, `?openmetrics`, each with `?full` for one entry per process.
//!
//! The document is rendered from a plain data snapshot ([`PoolStatus`]), so whoever owns
//! the numbers (the `fcgi-pm` manager, or a Rust [`Server`](crate::Server) through
//! [`server_status`]) only supplies them. Field names are php-fpm's (`pool`, `process
//! manager`, `start time`, `start since`, `accepted conn`, `listen queue`, `max listen
//! queue`, `listen queue len`, `idle processes`, `active processes`, `total processes`,
//! `max active processes`, `max children reached`, `slow requests`), so dashboards and
//! exporters written for php-fpm read them; a Rust server says `workers` instead of
//! `processes` ([`Unit::Workers`]).
//!
//! `?openmetrics` is the Prometheus text exposition (version 0.0.4, ending with
//! OpenMetrics' `# EOF`): counters are named `*_total`, so `promtool check metrics`
//! accepts it (php-fpm's own output fails that check).
//!
//! # Example
//!
//! ```
//! use fcgi::pm::status::{render, PoolStatus, Query};
//! let mut s = PoolStatus::new("www", "static");
//! s.idle = 3;
//! s.active = 1;
//! let page = render(&s, &Query::parse("json"));
//! assert_eq!(page.content_type, "application/json");
//! assert!(page.body.contains("\"idle processes\":3"));
//! ```

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the entries are called: php-fpm's processes, or a Rust server's worker threads.
///
/// # Example
///
/// ```
/// assert_eq!(fcgi::pm::status::Unit::Workers.plural(), "workers");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unit {
    /// `idle processes`, `phpfpm_*` metrics (the process manager).
    #[default]
    Processes,
    /// `idle workers`, `fcgi_*` metrics (a Rust server's threads).
    Workers,
}

impl Unit {
    /// `processes` or `workers`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::pm::status::Unit::Processes.plural(), "processes");
    /// ```
    pub fn plural(self) -> &'static str {
        match self {
            Unit::Processes => "processes",
            Unit::Workers => "workers",
        }
    }

    fn metric_prefix(self) -> &'static str {
        match self {
            Unit::Processes => "phpfpm",
            Unit::Workers => "fcgi",
        }
    }
}

/// One process (or worker) of a pool, for `?full`.
///
/// # Example
///
/// ```
/// let p = fcgi::pm::status::ProcessStatus::idle(1234, 0);
/// assert_eq!(p.state, "Idle");
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ProcessStatus {
    /// Process id (a worker's index for a Rust server).
    pub pid: u32,
    /// `Idle`, `Running`, `Finishing` (retiring after a reload or a limit), ...
    pub state: String,
    /// When the process started, seconds since the epoch.
    pub start_time: i64,
    /// Requests it served (or started).
    pub requests: u64,
    /// Duration of the current request (running) or of the last one (idle), microseconds.
    pub request_duration_us: u64,
    /// Method of the current or last request, `-` when unknown.
    pub request_method: String,
    /// URI (with query string) of the current or last request, `-` when unknown.
    pub request_uri: String,
    /// `CONTENT_LENGTH` of the current or last request.
    pub content_length: u64,
    /// The authenticated user, `-` when unknown.
    pub user: String,
    /// Script of the current or last request, `-` when unknown.
    pub script: String,
    /// CPU percentage of the last request (0 when unknown).
    pub last_request_cpu: f64,
    /// Memory of the last request in bytes (0 when unknown).
    pub last_request_memory: u64,
}

impl ProcessStatus {
    /// An idle entry with nothing known about its requests.
    ///
    /// # Example
    ///
    /// ```
    /// let p = fcgi::pm::status::ProcessStatus::idle(7, 1_700_000_000);
    /// assert_eq!((p.pid, p.request_method.as_str()), (7, "-"));
    /// ```
    pub fn idle(pid: u32, start_time: i64) -> ProcessStatus {
        ProcessStatus {
            pid,
            state: "Idle".into(),
            start_time,
            request_method: "-".into(),
            request_uri: "-".into(),
            user: "-".into(),
            script: "-".into(),
            ..ProcessStatus::default()
        }
    }
}

/// A pool's numbers: everything the status document shows.
///
/// # Example
///
/// ```
/// let s = fcgi::pm::status::PoolStatus::new("www", "dynamic");
/// assert_eq!(s.total(), 0);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The pool's name.
    pub pool: String,
    /// `static`, `dynamic` or `ondemand`.
    pub process_manager: String,
    /// When the pool started, seconds since the epoch.
    pub start_time: i64,
    /// Requests accepted by the pool.
    pub accepted_conn: u64,
    /// Connections waiting in the listen queue now.
    pub listen_queue: u64,
    /// The most connections seen waiting in the listen queue.
    pub max_listen_queue: u64,
    /// The listen queue's size (the backlog).
    pub listen_queue_len: u64,
    /// Idle processes (workers).
    pub idle: u64,
    /// Processes (workers) running a request.
    pub active: u64,
    /// The most processes (workers) active at once.
    pub max_active: u64,
    /// Times the manager wanted to start a process but `pm.max_children` was reached.
    pub max_children_reached: u64,
    /// Requests that ran past `request_slowlog_timeout`.
    pub slow_requests: u64,
    /// One entry per process, for `?full`.
    pub processes: Vec<ProcessStatus>,
    /// What the entries are called.
    pub unit: Unit,
}

impl PoolStatus {
    /// A pool with every number 0, started now.
    ///
    /// # Example
    ///
    /// ```
    /// let s = fcgi::pm::status::PoolStatus::new("api", "ondemand");
    /// assert_eq!(s.pool, "api");
    /// ```
    pub fn new(pool: &str, process_manager: &str) -> PoolStatus {
        PoolStatus {
            pool: pool.into(),
            process_manager: process_manager.into(),
            start_time: epoch_secs(SystemTime::now()),
            accepted_conn: 0,
            listen_queue: 0,
            max_listen_queue: 0,
            listen_queue_len: 0,
            idle: 0,
            active: 0,
            max_active: 0,
            max_children_reached: 0,
            slow_requests: 0,
            processes: Vec::new(),
            unit: Unit::Processes,
        }
    }

    /// Idle plus active.
    ///
    /// # Example
    ///
    /// ```
    /// let mut s = fcgi::pm::status::PoolStatus::new("www", "static");
    /// s.idle = 2;
    /// s.active = 3;
    /// assert_eq!(s.total(), 5);
    /// ```
    pub fn total(&self) -> u64 {
        self.idle + self.active
    }
}

/// The output format.
///
/// # Example
///
/// ```
/// use fcgi::pm::status::{Format, Query};
/// assert_eq!(Query::parse("xml&full").format, Format::Xml);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `text/plain`, php-fpm's default.
    #[default]
    Text,
    /// `application/json`.
    Json,
    /// `text/xml`.
    Xml,
    /// `text/html`.
    Html,
    /// Prometheus text exposition with `# EOF`.
    OpenMetrics,
}

/// What a status request asked for: a format and whether to list every process.
///
/// # Example
///
/// ```
/// let q = fcgi::pm::status::Query::parse("json&full");
/// assert!(q.full);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Query {
    /// The format.
    pub format: Format,
    /// `?full`: one entry per process.
    pub full: bool,
}

impl Query {
    /// Reads a `QUERY_STRING` as php-fpm does: the presence of the keys `html`, `xml`,
    /// `json`, `openmetrics` (first match in that order) and `full`, with or without a
    /// value; anything else is ignored.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::pm::status::{Format, Query};
    /// assert_eq!(Query::parse("").format, Format::Text);
    /// assert_eq!(Query::parse("full=1&openmetrics").format, Format::OpenMetrics);
    /// ```
    pub fn parse(query_string: &str) -> Query {
        let has = |key: &str| {
            query_string
                .split('&')
                .any(|kv| kv.split('=').next() == Some(key))
        };
        let format = if has("html") {
            Format::Html
        } else if has("xml") {
            Format::Xml
        } else if has("json") {
            Format::Json
        } else if has("openmetrics") {
            Format::OpenMetrics
        } else {
            Format::Text
        };
        Query {
            format,
            full: has("full"),
        }
    }
}

/// A rendered status page.
///
/// # Example
///
/// ```
/// let s = fcgi::pm::status::PoolStatus::new("www", "static");
/// let page = fcgi::pm::status::render(&s, &Default::default());
/// assert_eq!(page.content_type, "text/plain");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The document.
    pub body: String,
}

impl Page {
    /// A page with this content type and body (the ping page, an error page).
    ///
    /// # Example
    ///
    /// ```
    /// let p = fcgi::pm::status::Page::new("text/plain", "pong".into());
    /// assert_eq!(p.body, "pong");
    /// ```
    pub fn new(content_type: &'static str, body: String) -> Page {
        Page { content_type, body }
    }
}

/// The response headers php-fpm sends with status and ping pages (besides
/// `Content-Type`): they must never be cached.
///
/// # Example
///
/// ```
/// assert!(fcgi::pm::status::NO_CACHE_HEADERS.iter().any(|(n, _)| *n == "Cache-Control"));
/// ```
pub const NO_CACHE_HEADERS: [(&str, &str); 2] = [
    ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
    (
        "Cache-Control",
        "no-cache, no-store, must-revalidate, max-age=0",
    ),
];

fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `%d/%b/%Y:%H:%M:%S %z` in local time, as php-fpm's text and HTML formats.
fn local_time(epoch: i64) -> String {
    // SAFETY: localtime_r writes into a zeroed tm; strftime writes at most buf.len()
    // bytes into buf and returns how many.
    unsafe {
        let t: libc::time_t = epoch as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return epoch.to_string();
        }
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%d/%b/%Y:%H:%M:%S %z".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#039;"),
            c if (c as u32) < 0x20 && c != '\t' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The pool fields in order: (name, value as text, is a string).
fn pool_fields(s: &PoolStatus, start_time: String, now: i64) -> Vec<(String, String, bool)> {
    let u = s.unit.plural();
    vec![
        ("pool".into(), s.pool.clone(), true),
        ("process manager".into(), s.process_manager.clone(), true),
        ("start time".into(), start_time, false),
        (
            "start since".into(),
            (now - s.start_time).max(0).to_string(),
            false,
        ),
        ("accepted conn".into(), s.accepted_conn.to_string(), false),
        ("listen queue".into(), s.listen_queue.to_string(), false),
        (
            "max listen queue".into(),
            s.max_listen_queue.to_string(),
            false,
        ),
        (
            "listen queue len".into(),
            s.listen_queue_len.to_string(),
            false,
        ),
        (format!("idle {u}"), s.idle.to_string(), false),
        (format!("active {u}"), s.active.to_string(), false),
        (format!("total {u}"), s.total().to_string(), false),
        (format!("max active {u}"), s.max_active.to_string(), false),
        (
            "max children reached".into(),
            s.max_children_reached.to_string(),
            false,
        ),
        ("slow requests".into(), s.slow_requests.to_string(), false),
    ]
}

/// The per-process fields in order: (name, value as text, is a string).
fn process_fields(
    p: &ProcessStatus,
    start_time: String,
    now: i64,
) -> Vec<(&'static str, String, bool)> {
    vec![
        ("pid", p.pid.to_string(), false),
        ("state", p.state.clone(), true),
        ("start time", start_time, false),
        (
            "start since",
            (now - p.start_time).max(0).to_string(),
            false,
        ),
        ("requests", p.requests.to_string(), false),
        ("request duration", p.request_duration_us.to_string(), false),
        ("request method", p.request_method.clone(), true),
        ("request uri", p.request_uri.clone(), true),
        ("content length", p.content_length.to_string(), false),
        ("user", p.user.clone(), true),
        ("script", p.script.clone(), true),
        (
            "last request cpu",
            format!("{:.2}", p.last_request_cpu),
            false,
        ),
        (
            "last request memory",
            p.last_request_memory.to_string(),
            false,
        ),
    ]
}

/// Renders the status document for `query`, at the current time.
///
/// # Example
///
/// ```
/// use fcgi::pm::status::{render, PoolStatus, ProcessStatus, Query};
/// let mut s = PoolStatus::new("www", "static");
/// s.processes.push(ProcessStatus::idle(42, s.start_time));
/// let page = render(&s, &Query::parse("full"));
/// assert!(page.body.starts_with("pool:                 www\n"));
/// assert!(page.body.contains("pid:                  42\n"));
/// ```
pub fn render(s: &PoolStatus, query: &Query) -> Page {
    render_at(s, query, SystemTime::now())
}

/// [`render`] at a given time (for reproducible output).
///
/// # Example
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use fcgi::pm::status::{render_at, PoolStatus, Query};
/// let mut s = PoolStatus::new("www", "static");
/// s.start_time = 1000;
/// let page = render_at(&s, &Query::parse("json"), UNIX_EPOCH + Duration::from_secs(1060));
/// assert!(page.body.contains("\"start since\":60"));
/// ```
pub fn render_at(s: &PoolStatus, query: &Query, now: SystemTime) -> Page {
    let now = epoch_secs(now);
    match query.format {
        Format::Text => text(s, query.full, now),
        Format::Json => json(s, query.full, now),
        Format::Xml => xml(s, query.full, now),
        Format::Html => html(s, query.full, now),
        Format::OpenMetrics => openmetrics(s, query.full, now),
    }
}

fn text(s: &PoolStatus, full: bool, now: i64) -> Page {
    let mut body = String::new();
    for (name, value, _) in pool_fields(s, local_time(s.start_time), now) {
        let _ = writeln!(body, "{:<22}{value}", format!("{name}:"));
    }
    if full {
        for p in &s.processes {
            body.push_str("\n************************\n");
            for (name, value, _) in process_fields(p, local_time(p.start_time), now) {
                // php-fpm writes "request URI" in this format only.
                let name = if name == "request uri" {
                    "request URI"
                } else {
                    name
                };
                let _ = writeln!(body, "{:<22}{value}", format!("{name}:"));
            }
        }
    }
    Page {
        content_type: "text/plain",
        body,
    }
}

fn json(s: &PoolStatus, full: bool, now: i64) -> Page {
    let obj = |fields: Vec<(String, String, bool)>| {
        let items: Vec<String> = fields
            .into_iter()
            .map(|(n, v, is_str)| {
                let v = if is_str { json_str(&v) } else { v };
                format!("{}:{v}", json_str(&n))
            })
            .collect();
        format!("{{{}}}", items.join(","))
    };
    let mut body = obj(pool_fields(s, s.start_time.to_string(), now));
    if full {
        body.pop(); // the closing brace
        let procs: Vec<String> = s
            .processes
            .iter()
            .map(|p| {
                obj(process_fields(p, p.start_time.to_string(), now)
                    .into_iter()
                    .map(|(n, v, t)| (n.to_string(), v, t))
                    .collect())
            })
            .collect();
        let _ = write!(body, ", \"{}\":[{}]}}", s.unit.plural(), procs.join(","));
    }
    Page {
        content_type: "application/json",
        body,
    }
}

fn xml_name(n: &str) -> String {
    n.replace(' ', "-").to_ascii_lowercase()
}

fn xml(s: &PoolStatus, full: bool, now: i64) -> Page {
    let mut body = String::from("<?xml version=\"1.0\" ?>\n<status>\n");
    for (name, value, _) in pool_fields(s, s.start_time.to_string(), now) {
        let n = xml_name(&name);
        let _ = writeln!(body, "<{n}>{}</{n}>", markup(&value));
    }
    if full {
        let _ = writeln!(body, "<{}>", s.unit.plural());
        let one = &s.unit.plural()
            [..s.unit.plural().len() - if s.unit == Unit::Processes { 2 } else { 1 }];
        for p in &s.processes {
            let _ = write!(body, "<{one}>");
            for (name, value, _) in process_fields(p, p.start_time.to_string(), now) {
                let n = xml_name(name);
                let _ = write!(body, "<{n}>{}</{n}>", markup(&value));
            }
            let _ = writeln!(body, "</{one}>");
        }
        let _ = writeln!(body, "</{}>", s.unit.plural());
    }
    body.push_str("</status>");
    Page {
        content_type: "text/xml",
        body,
    }
}

fn html(s: &PoolStatus, full: bool, now: i64) -> Page {
    let mut body = String::from(
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \
         \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n\
         <head><title>FastCGI Pool Status</title></head>\n<body>\n<table>\n",
    );
    for (name, value, _) in pool_fields(s, local_time(s.start_time), now) {
        let _ = writeln!(body, "<tr><th>{name}</th><td>{}</td></tr>", markup(&value));
    }
    body.push_str("</table>\n");
    if full {
        body.push_str("<table border=\"1\">\n<tr>");
        for (name, _, _) in process_fields(&ProcessStatus::default(), String::new(), now) {
            let _ = write!(body, "<th>{name}</th>");
        }
        body.push_str("</tr>\n");
        for p in &s.processes {
            body.push_str("<tr>");
            for (_, value, _) in process_fields(p, local_time(p.start_time), now) {
                let _ = write!(body, "<td>{}</td>", markup(&value));
            }
            body.push_str("</tr>\n");
        }
        body.push_str("</table>");
    }
    body.push_str("</body></html>");
    Page {
        content_type: "text/html",
        body,
    }
}

fn openmetrics(s: &PoolStatus, full: bool, now: i64) -> Page {
    let p = s.unit.metric_prefix();
    let u = s.unit.plural();
    let pool = format!("pool=\"{}\"", label(&s.pool));
    let mut body = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = write!(
            body,
            "# HELP {p}_{name} {help}\n# TYPE {p}_{name} {kind}\n{p}_{name}{{{pool}}} {value}\n"
        );
    };
    metric(
        "up",
        "gauge",
        &format!(
            "Could pool {} using a {} PM be reached?",
            label(&s.pool),
            label(&s.process_manager)
        ),
        "1".into(),
    );
    metric(
        "start_since",
        "gauge",
        "The number of seconds since the pool started.",
        (now - s.start_time).max(0).to_string(),
    );
    metric(
        "accepted_connections_total",
        "counter",
        "The number of requests accepted by the pool.",
        s.accepted_conn.to_string(),
    );
    metric(
        "listen_queue",
        "gauge",
        "The number of requests in the queue of pending connections.",
        s.listen_queue.to_string(),
    );
    metric(
        "max_listen_queue",
        "gauge",
        "The maximum number of requests in the queue of pending connections since the pool started.",
        s.max_listen_queue.to_string(),
    );
    metric(
        "listen_queue_length",
        "gauge",
        "The size of the socket queue of pending connections.",
        s.listen_queue_len.to_string(),
    );
    metric(
        &format!("idle_{u}"),
        "gauge",
        &format!("The number of idle {u}."),
        s.idle.to_string(),
    );
    metric(
        &format!("active_{u}"),
        "gauge",
        &format!("The number of active {u}."),
        s.active.to_string(),
    );
    metric(
        &format!("total_{u}"),
        "gauge",
        &format!("The number of idle + active {u}."),
        s.total().to_string(),
    );
    metric(
        &format!("max_active_{u}"),
        "gauge",
        &format!("The maximum number of active {u} since the pool started."),
        s.max_active.to_string(),
    );
    metric(
        "max_children_reached_total",
        "counter",
        "The number of times the process limit was reached when the pool tried to start more children.",
        s.max_children_reached.to_string(),
    );
    metric(
        "slow_requests_total",
        "counter",
        "The number of requests that exceeded request_slowlog_timeout.",
        s.slow_requests.to_string(),
    );
    if full && !s.processes.is_empty() {
        let mut family =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(&ProcessStatus) -> String| {
                let _ = write!(
                    body,
                    "# HELP {p}_process_{name} {help}\n# TYPE {p}_process_{name} {kind}\n"
                );
                for proc_ in &s.processes {
                    let _ = writeln!(
                        body,
                        "{p}_process_{name}{{{pool},pid=\"{}\"}} {}",
                        proc_.pid,
                        value(proc_)
                    );
                }
            };
        family(
            "requests_total",
            "counter",
            "The number of requests the process has served.",
            &|x| x.requests.to_string(),
        );
        family(
            "request_duration_seconds",
            "gauge",
            "The duration of the current request, or of the last one when idle.",
            &|x| format!("{:.6}", x.request_duration_us as f64 / 1e6),
        );
        family(
            "start_since",
            "gauge",
            "The number of seconds since the process started.",
            &|x| (now - x.start_time).max(0).to_string(),
        );
        family(
            "busy",
            "gauge",
            "1 when the process is running a request, 0 when it is idle.",
            &|x| u8::from(x.state != "Idle").to_string(),
        );
    }
    body.push_str("# EOF\n");
    Page {
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body,
    }
}

/// A pool snapshot of a Rust [`Server`](crate::Server), from its
/// [`Stats`](crate::server::Stats): workers instead of processes, `static` as the process
/// manager, requests served as `accepted conn`, refusals as `max children reached`; the
/// listen queue fields are 0 (the server keeps no count of them).
///
/// # Example
///
/// ```
/// let server = fcgi::Server::bind("127.0.0.1:0").unwrap().workers(4);
/// let s = fcgi::pm::status::server_status("app", &server.stats_handle().snapshot(), 0);
/// assert_eq!((s.idle, s.active), (4, 0));
/// ```
pub fn server_status(name: &str, stats: &crate::server::Stats, start_time: i64) -> PoolStatus {
    let mut s = PoolStatus::new(name, "static");
    s.unit = Unit::Workers;
    s.start_time = start_time;
    s.accepted_conn = stats.requests_served;
    s.idle = stats.workers_idle as u64;
    s.active = stats.workers_busy as u64;
    s.max_active = stats.max_workers_busy as u64;
    s.max_children_reached = stats.refused;
    s.listen_queue = stats.listen_queue;
    s.max_listen_queue = stats.max_listen_queue;
    s.listen_queue_len = stats.listen_queue_len;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> PoolStatus {
        let mut s = PoolStatus::new("www", "dynamic");
        s.start_time = 1_000_000;
        s.accepted_conn = 190;
        s.listen_queue = 2;
        s.max_listen_queue = 5;
        s.listen_queue_len = 511;
        s.idle = 3;
        s.active = 1;
        s.max_active = 4;
        s.max_children_reached = 1;
        s.slow_requests = 6;
        let mut p = ProcessStatus::idle(4242, 1_000_010);
        p.state = "Running".into();
        p.requests = 12;
        p.request_duration_us = 1_250_000;
        p.request_method = "GET".into();
        p.request_uri = "/a?b=<c>&\"d\"".into();
        p.script = "/srv/a".into();
        s.processes.push(p);
        s.processes.push(ProcessStatus::idle(4243, 1_000_020));
        s
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn query_keys_as_php_fpm_reads_them() {
        assert_eq!(Query::parse("json").format, Format::Json);
        assert_eq!(Query::parse("json=1&full").format, Format::Json);
        assert!(Query::parse("json=1&full").full);
        assert_eq!(Query::parse("html&json").format, Format::Html);
        assert_eq!(Query::parse("jsonx").format, Format::Text);
        assert!(!Query::parse("fullness").full);
        assert_eq!(Query::parse("&&=&").format, Format::Text);
    }

    #[test]
    fn text_has_php_fpm_field_names_and_alignment() {
        let page = render_at(&sample(), &Query::parse(""), at(1_000_100));
        let lines: Vec<&str> = page.body.lines().collect();
        assert_eq!(lines[0], "pool:                 www");
        assert_eq!(lines[1], "process manager:      dynamic");
        assert_eq!(lines[3], "start since:          100");
        assert_eq!(lines[4], "accepted conn:        190");
        assert_eq!(lines[5], "listen queue:         2");
        assert_eq!(lines[6], "max listen queue:     5");
        assert_eq!(lines[7], "listen queue len:     511");
        assert_eq!(lines[8], "idle processes:       3");
        assert_eq!(lines[9], "active processes:     1");
        assert_eq!(lines[10], "total processes:      4");
        assert_eq!(lines[11], "max active processes: 4");
        assert_eq!(lines[12], "max children reached: 1");
        assert_eq!(lines[13], "slow requests:        6");
        assert_eq!(lines.len(), 14, "no process entries without ?full");
        let full = render_at(&sample(), &Query::parse("full"), at(1_000_100)).body;
        assert!(full.contains("\n************************\npid:                  4242\n"));
        assert!(full.contains("request URI:          /a?b=<c>&\"d\"\n"));
        assert!(full.contains("request duration:     1250000\n"));
    }

    #[test]
    fn json_is_flat_and_escaped() {
        let page = render_at(&sample(), &Query::parse("json&full"), at(1_000_100));
        assert_eq!(page.content_type, "application/json");
        let b = &page.body;
        assert!(b.starts_with("{\"pool\":\"www\",\"process manager\":\"dynamic\",\"start time\":1000000,\"start since\":100,"));
        assert!(b.contains("\"listen queue len\":511,\"idle processes\":3,\"active processes\":1,\"total processes\":4,"));
        assert!(b.contains(", \"processes\":[{\"pid\":4242,\"state\":\"Running\""));
        assert!(b.contains("\"request uri\":\"/a?b=<c>&\\\"d\\\"\""));
        assert!(b.ends_with("}]}"));
        let short = render_at(&sample(), &Query::parse("json"), at(1_000_100)).body;
        assert!(short.ends_with("\"slow requests\":6}"));
    }

    #[test]
    fn xml_and_html_escape_markup() {
        let x = render_at(&sample(), &Query::parse("xml&full"), at(1_000_100)).body;
        assert!(x.starts_with("<?xml version=\"1.0\" ?>\n<status>\n<pool>www</pool>\n"));
        assert!(x.contains("<idle-processes>3</idle-processes>"));
        assert!(x.contains("<request-uri>/a?b=&lt;c&gt;&amp;&quot;d&quot;</request-uri>"));
        assert!(x.contains("<processes>\n<process><pid>4242</pid>"));
        assert!(x.ends_with("</processes>\n</status>"));
        let h = render_at(&sample(), &Query::parse("html&full"), at(1_000_100)).body;
        assert!(h.contains("<tr><th>idle processes</th><td>3</td></tr>"));
        assert!(h.contains("<td>/a?b=&lt;c&gt;&amp;&quot;d&quot;</td>"));
        assert!(!h.contains("<c>"));
    }

    #[test]
    fn openmetrics_counters_end_in_total() {
        let page = render_at(&sample(), &Query::parse("openmetrics&full"), at(1_000_100));
        let b = &page.body;
        assert!(b.contains("# TYPE phpfpm_accepted_connections_total counter\nphpfpm_accepted_connections_total{pool=\"www\"} 190\n"));
        assert!(b.contains("phpfpm_idle_processes{pool=\"www\"} 3\n"));
        assert!(b.contains("phpfpm_process_requests_total{pool=\"www\",pid=\"4242\"} 12\n"));
        assert!(b.ends_with("# EOF\n"));
        for line in b.lines().filter(|l| l.starts_with("# TYPE")) {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(
                parts[3] == "counter",
                parts[2].ends_with("_total"),
                "{line}"
            );
        }
    }

    #[test]
    fn a_rust_server_says_workers() {
        let stats = crate::server::Stats {
            workers: 4,
            workers_busy: 1,
            workers_idle: 3,
            requests_served: 9,
            ..Default::default()
        };
        let s = server_status("app", &stats, 0);
        let t = render(&s, &Query::default()).body;
        assert!(t.contains("idle workers:         3\n"));
        assert!(t.contains("accepted conn:        9\n"));
        let m = render(&s, &Query::parse("openmetrics")).body;
        assert!(m.contains("fcgi_active_workers{pool=\"app\"} 1\n"));
        let x = render(&s, &Query::parse("xml&full")).body;
        assert!(x.contains("<workers>\n</workers>"));
    }

    #[test]
    fn hostile_names_stay_inside_their_quotes() {
        let mut s = PoolStatus::new("a\"b\nc", "static");
        s.start_time = 0;
        let j = render(&s, &Query::parse("json")).body;
        assert!(j.starts_with("{\"pool\":\"a\\\"b\\nc\""));
        let m = render(&s, &Query::parse("openmetrics")).body;
        assert!(m.contains("{pool=\"a\\\"b\\nc\"}"));
    }
}
