//! The configuration file: php-fpm's INI syntax (`[global]`, one section per pool,
//! `include=` globs, `$pool`, `${ENV}`, `env[NAME]`), php-fpm's directives that are not
//! about PHP with php-fpm's defaults, plus `command` and `args`.
//!
//! Every error names the file and line. A directive fcgi-pm does not know is an error; a
//! php-fpm directive about PHP (`php_value[...]`, ...) or one fcgi-pm does not implement
//! gets an error that says so, never silence.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub place: Option<(PathBuf, usize)>,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Some((file, line)) => write!(f, "[{}:{}] {}", file.display(), line, self.msg),
            None => write!(f, "{}", self.msg),
        }
    }
}

fn err_at(file: &Path, line: usize, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        place: Some((file.to_path_buf(), line)),
        msg: msg.into(),
    }
}

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError {
        place: None,
        msg: msg.into(),
    }
}

/// Where a pool (or its status endpoint) listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// `port` alone: every address, IPv6 and IPv4-mapped (IPv4 only without IPv6).
    AnyPort(u16),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::AnyPort(p) => write!(f, "{p}"),
            ListenAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

impl ListenAddr {
    /// php-fpm's syntaxes: `ip.add.re.ss:port`, `[ip:6:addr:ess]:port`, `port`,
    /// `*:port` (every IPv4 address), `host:port`, `/path/to/unix/socket`.
    pub fn parse(value: &str, base: &Path) -> Result<ListenAddr, String> {
        let v = value.trim();
        if v.is_empty() {
            return Err("empty address".into());
        }
        if v.chars().all(|c| c.is_ascii_digit()) {
            return port(v).map(ListenAddr::AnyPort);
        }
        if let Some(p) = v.strip_prefix("*:") {
            return port(p).map(|p| ListenAddr::Tcp(SocketAddr::from(([0, 0, 0, 0], p))));
        }
        if v.starts_with('/') || !v.contains(':') {
            let p = Path::new(v);
            return Ok(ListenAddr::Unix(if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }));
        }
        if let Ok(a) = v.parse::<SocketAddr>() {
            if a.port() == 0 {
                return Err(format!("'{v}': port 0 is not a port to listen on"));
            }
            return Ok(ListenAddr::Tcp(a));
        }
        let (host, p) = v
            .rsplit_once(':')
            .ok_or_else(|| format!("'{v}' is not an address"))?;
        let p = port(p)?;
        let addr = (host, p)
            .to_socket_addrs()
            .map_err(|e| format!("'{v}': cannot resolve '{host}': {e}"))?
            .next()
            .ok_or_else(|| format!("'{v}': '{host}' has no address"))?;
        Ok(ListenAddr::Tcp(addr))
    }

    pub fn is_tcp(&self) -> bool {
        !matches!(self, ListenAddr::Unix(_))
    }
}

fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("'{s}' is not a port (1-65535)")),
        Ok(p) => Ok(p),
    }
}

/// The process manager styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pm {
    Static,
    Dynamic,
    Ondemand,
}

impl Pm {
    pub fn name(self) -> &'static str {
        match self {
            Pm::Static => "static",
            Pm::Dynamic => "dynamic",
            Pm::Ondemand => "ondemand",
        }
    }
}

/// Log levels, as php-fpm's `log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Notice,
    Warning,
    Error,
    Alert,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Notice => "NOTICE",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Alert => "ALERT",
        }
    }
}

/// Where the manager logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    File(PathBuf),
    Syslog,
}

/// A resource limit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Value(u64),
}

/// The `[global]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub pid: Option<PathBuf>,
    pub error_log: LogTarget,
    pub log_level: Level,
    pub syslog_ident: String,
    pub syslog_facility: i32,
    pub daemonize: bool,
    pub emergency_restart_threshold: u32,
    pub emergency_restart_interval: Duration,
    pub process_control_timeout: Duration,
    pub rlimit_files: Option<u64>,
    pub rlimit_core: Option<Limit>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            pid: None,
            error_log: LogTarget::Stderr,
            log_level: Level::Notice,
            syslog_ident: "fcgi-pm".into(),
            syslog_facility: libc::LOG_DAEMON,
            daemonize: true,
            emergency_restart_threshold: 0,
            emergency_restart_interval: Duration::ZERO,
            process_control_timeout: Duration::ZERO,
            rlimit_files: None,
            rlimit_core: None,
        }
    }
}

/// One pool section.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    /// Where the section was first opened.
    pub file: PathBuf,
    pub line: usize,
    pub listen: Option<ListenAddr>,
    pub listen_backlog: i32,
    pub listen_owner: Option<String>,
    pub listen_group: Option<String>,
    pub listen_mode: u32,
    /// `listen.allowed_clients` as written (for FCGI_WEB_SERVER_ADDRS) and parsed.
    pub allowed_clients: Option<(String, Vec<IpAddr>)>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub pm: Option<Pm>,
    pub max_children: u32,
    pub start_servers: u32,
    pub min_spare_servers: u32,
    pub max_spare_servers: u32,
    pub max_spawn_rate: u32,
    pub process_idle_timeout: Duration,
    pub max_requests: u64,
    pub status_path: Option<String>,
    pub status_listen: Option<ListenAddr>,
    pub ping_path: Option<String>,
    pub ping_response: Option<String>,
    pub request_terminate_timeout: Duration,
    pub request_slowlog_timeout: Duration,
    pub slowlog: Option<PathBuf>,
    pub catch_workers_output: bool,
    pub decorate_workers_output: bool,
    pub clear_env: bool,
    pub env: Vec<(String, String)>,
    pub chdir: Option<PathBuf>,
    pub rlimit_files: Option<u64>,
    pub rlimit_core: Option<Limit>,
    pub process_priority: Option<i32>,
    pub command: Option<PathBuf>,
    pub args: Vec<String>,
}

impl Pool {
    fn new(name: &str, file: &Path, line: usize) -> Pool {
        Pool {
            name: name.into(),
            file: file.to_path_buf(),
            line,
            listen: None,
            // php-fpm: -1 on Linux (the kernel's somaxconn).
            listen_backlog: -1,
            listen_owner: None,
            listen_group: None,
            listen_mode: 0o660,
            allowed_clients: None,
            user: None,
            group: None,
            pm: None,
            max_children: 0,
            start_servers: 0,
            min_spare_servers: 0,
            max_spare_servers: 0,
            max_spawn_rate: 32,
            process_idle_timeout: Duration::from_secs(10),
            max_requests: 0,
            status_path: None,
            status_listen: None,
            ping_path: None,
            ping_response: None,
            request_terminate_timeout: Duration::ZERO,
            request_slowlog_timeout: Duration::ZERO,
            slowlog: None,
            catch_workers_output: false,
            decorate_workers_output: true,
            clear_env: true,
            env: Vec::new(),
            chdir: None,
            rlimit_files: None,
            rlimit_core: None,
            process_priority: None,
            command: None,
            args: Vec::new(),
        }
    }

    pub fn pm(&self) -> Pm {
        self.pm.unwrap_or(Pm::Static)
    }

    pub fn listen(&self) -> &ListenAddr {
        self.listen.as_ref().expect("validated: listen is set")
    }

    pub fn command(&self) -> &Path {
        self.command.as_deref().expect("validated: command is set")
    }

    /// The ping response, when ping is on.
    pub fn ping_response(&self) -> String {
        self.ping_response.clone().unwrap_or_else(|| "pong".into())
    }
}

/// A whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub file: PathBuf,
    pub global: Global,
    pub pools: Vec<Pool>,
}

/// Where relative paths resolve: `-p PREFIX` if given, else the main file's directory.
#[derive(Debug, Clone)]
pub struct Load {
    pub prefix: Option<PathBuf>,
}

struct Parser<'a> {
    load: &'a Load,
    base: PathBuf,
    global: Global,
    pools: Vec<Pool>,
    /// Index into `pools` of the open section; None in `[global]`.
    current: Option<usize>,
    depth: usize,
    env: HashMap<String, String>,
}

/// Reads and checks the configuration in `file`.
pub fn load(file: &Path, opts: &Load) -> Result<Config, ConfigError> {
    let base = match &opts.prefix {
        Some(p) => p.clone(),
        None => file
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let mut p = Parser {
        load: opts,
        base,
        global: Global::default(),
        pools: Vec::new(),
        current: None,
        depth: 0,
        env: std::env::vars().collect(),
    };
    p.file(file)?;
    let _ = p.load;
    let mut cfg = Config {
        file: file.to_path_buf(),
        global: p.global,
        pools: p.pools,
    };
    validate(&mut cfg)?;
    Ok(cfg)
}

/// Parses configuration text (the lines of `name`), for tests.
#[cfg(test)]
pub fn parse_str(text: &str) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir();
    let opts = Load {
        prefix: Some(dir.clone()),
    };
    let mut p = Parser {
        load: &opts,
        base: dir,
        global: Global::default(),
        pools: Vec::new(),
        current: None,
        depth: 0,
        env: [("HOME".to_string(), "/home/x".to_string())].into(),
    };
    p.text(Path::new("test.conf"), text)?;
    let mut cfg = Config {
        file: "test.conf".into(),
        global: p.global,
        pools: p.pools,
    };
    validate(&mut cfg)?;
    Ok(cfg)
}

impl Parser<'_> {
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn file(&mut self, file: &Path) -> Result<(), ConfigError> {
        if self.depth > 5 {
            return Err(err(format!(
                "{}: includes nested more than 5 deep (an include loop?)",
                file.display()
            )));
        }
        let bytes = std::fs::read(file)
            .map_err(|e| err(format!("cannot read '{}': {e}", file.display())))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            err_at(file, line, "the file is not UTF-8")
        })?;
        self.depth += 1;
        let r = self.text(file, &text);
        self.depth -= 1;
        r
    }

    fn text(&mut self, file: &Path, text: &str) -> Result<(), ConfigError> {
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with(';') || l.starts_with('#') {
                continue;
            }
            if let Some(rest) = l.strip_prefix('[') {
                let name = strip_comment(rest)
                    .trim()
                    .strip_suffix(']')
                    .ok_or_else(|| err_at(file, line, format!("section header without ']': {l}")))?
                    .trim();
                self.section(file, line, name)?;
                continue;
            }
            let (key, value) = l.split_once('=').ok_or_else(|| {
                err_at(
                    file,
                    line,
                    format!("syntax error: expected 'name = value' or '[section]', got '{l}'"),
                )
            })?;
            let key = key.trim();
            let value = self
                .value(value)
                .map_err(|m| err_at(file, line, format!("'{key}': {m}")))?;
            self.entry(file, line, key, value)?;
        }
        Ok(())
    }

    fn section(&mut self, file: &Path, line: usize, name: &str) -> Result<(), ConfigError> {
        if name.is_empty() {
            return Err(err_at(file, line, "empty section name"));
        }
        if name.eq_ignore_ascii_case("global") {
            self.current = None;
            return Ok(());
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err_at(
                file,
                line,
                format!("pool name '{name}': use letters, digits, '-', '_' and '.'"),
            ));
        }
        if let Some(i) = self
            .pools
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))
        {
            self.current = Some(i);
        } else {
            self.pools.push(Pool::new(name, file, line));
            self.current = Some(self.pools.len() - 1);
        }
        Ok(())
    }

    /// The value after `=`: quoted ('...' raw, "..." with ${ENV}) or bare (up to a `;`
    /// comment, with ${ENV}), trimmed.
    fn value(&self, v: &str) -> Result<String, String> {
        let v = v.trim();
        if let Some(rest) = v.strip_prefix('\'') {
            let end = rest.find('\'').ok_or("unterminated '...' string")?;
            check_trailing(&rest[end + 1..])?;
            return Ok(rest[..end].to_string());
        }
        if let Some(rest) = v.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, c @ ('"' | '\\'))) => out.push(c),
                        Some((_, c)) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err("unterminated \"...\" string".into()),
                    },
                    '"' => {
                        check_trailing(&rest[i + 1..])?;
                        return self.expand_env(&out);
                    }
                    c => out.push(c),
                }
            }
            return Err("unterminated \"...\" string".into());
        }
        self.expand_env(strip_comment(v).trim())
    }

    fn expand_env(&self, v: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = v;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let end = after.find('}').ok_or("'${' without '}'")?;
            let name = &after[..end];
            out.push_str(self.env.get(name).map(String::as_str).unwrap_or(""));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn entry(
        &mut self,
        file: &Path,
        line: usize,
        key: &str,
        value: String,
    ) -> Result<(), ConfigError> {
        let at = |m: String| err_at(file, line, m);
        let lkey = key.to_ascii_lowercase();
        if lkey == "include" {
            return self.include(file, line, &value);
        }
        // name[key] arrays
        if let Some((name, k)) = key.split_once('[') {
            let k = k
                .strip_suffix(']')
                .ok_or_else(|| at(format!("'{key}': '[' without ']'")))?;
            let name = name.trim().to_ascii_lowercase();
            if PHP_ARRAYS.contains(&name.as_str()) {
                return Err(at(format!(
                    "'{key}' is a PHP setting; fcgi-pm runs any program and has no PHP to give \
                     it to: remove the line, or set the program's own configuration"
                )));
            }
            if name != "env" {
                return Err(at(format!(
                    "unknown directive '{name}[...]' (only env[NAME] takes a key)"
                )));
            }
            let Some(i) = self.current else {
                return Err(at("env[...] belongs in a pool section, not [global]".into()));
            };
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(at(format!("env[{k}]: not a variable name")));
            }
            let pool = self.pools[i].name.clone();
            let value = expand_pool(&value, &pool);
            let p = &mut self.pools[i];
            p.env.retain(|(n, _)| n != k);
            p.env.push((k.to_string(), value));
            return Ok(());
        }
        match self.current {
            None => self.global_entry(&lkey, key, &value).map_err(at),
            Some(i) => {
                let name = self.pools[i].name.clone();
                let value = expand_pool(&value, &name);
                let base = self.base.clone();
                pool_entry(&mut self.pools[i], &lkey, key, &value, &base, |p| {
                    self_resolve(&base, p)
                })
                .map_err(at)
            }
        }
    }

    fn include(&mut self, file: &Path, line: usize, pattern: &str) -> Result<(), ConfigError> {
        let pattern = self.resolve(pattern);
        let paths = glob(&pattern).map_err(|e| err_at(file, line, e))?;
        if paths.is_empty() {
            // php-fpm warns and goes on; so do we (the manager logs it at start).
            eprintln!(
                "fcgi-pm: WARNING: [{}:{}] nothing matches the include pattern '{}'",
                file.display(),
                line,
                pattern.display()
            );
        }
        let saved = self.current;
        for p in paths {
            self.file(&p).map_err(|e| {
                if e.place.is_some() {
                    e
                } else {
                    err_at(file, line, format!("include: {}", e.msg))
                }
            })?;
        }
        // A section opened in an included file stays open, as in php-fpm; an include
        // without sections keeps the including section.
        if self.current.is_none() && saved.is_some() {
            self.current = saved;
        }
        Ok(())
    }

    fn global_entry(&mut self, lkey: &str, key: &str, v: &str) -> Result<(), String> {
        let base = self.base.clone();
        let g = &mut self.global;
        match lkey {
            "pid" => g.pid = non_empty(v).map(|p| self_resolve(&base, p)),
            "error_log" => {
                g.error_log = match v {
                    "" => LogTarget::Stderr,
                    "syslog" => LogTarget::Syslog,
                    "/dev/stderr" | "/proc/self/fd/2" => LogTarget::Stderr,
                    p => LogTarget::File(self_resolve(&base, p)),
                }
            }
            "log_level" => {
                g.log_level = match v.to_ascii_lowercase().as_str() {
                    "debug" => Level::Debug,
                    "notice" => Level::Notice,
                    "warning" => Level::Warning,
                    "error" => Level::Error,
                    "alert" => Level::Alert,
                    _ => return Err(format!("'{v}': use alert, error, warning, notice or debug")),
                }
            }
            "syslog.ident" => g.syslog_ident = v.into(),
            "syslog.facility" => g.syslog_facility = facility(v)?,
            "daemonize" => g.daemonize = boolean(v)?,
            "emergency_restart_threshold" => g.emergency_restart_threshold = int(v)? as u32,
            "emergency_restart_interval" => g.emergency_restart_interval = time(v)?,
            "process_control_timeout" => g.process_control_timeout = time(v)?,
            "rlimit_files" => g.rlimit_files = Some(int(v)?),
            "rlimit_core" => g.rlimit_core = Some(limit(v)?),
            _ => {
                return Err(unknown(
                    key,
                    GLOBAL_KEYS,
                    GLOBAL_UNSUPPORTED,
                    POOL_KEYS,
                    "[global]",
                ))
            }
        }
        Ok(())
    }
}

fn self_resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn pool_entry(
    p: &mut Pool,
    lkey: &str,
    key: &str,
    v: &str,
    base: &Path,
    resolve: impl Fn(&str) -> PathBuf,
) -> Result<(), String> {
    match lkey {
        "listen" => p.listen = Some(ListenAddr::parse(v, base)?),
        "listen.backlog" => {
            p.listen_backlog = v
                .trim()
                .parse::<i32>()
                .map_err(|_| format!("'{v}' is not a number"))?
        }
        "listen.owner" => p.listen_owner = non_empty(v).map(Into::into),
        "listen.group" => p.listen_group = non_empty(v).map(Into::into),
        "listen.mode" => {
            p.listen_mode = u32::from_str_radix(v.trim(), 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| format!("'{v}' is not an octal mode such as 0660"))?
        }
        "listen.allowed_clients" => {
            p.allowed_clients = match non_empty(v) {
                None => None,
                Some(list) => {
                    let ips = list
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| {
                            s.parse::<IpAddr>()
                                .map_err(|_| format!("'{s}' is not an IPv4 or IPv6 address"))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Some((list.to_string(), ips))
                }
            }
        }
        "user" => p.user = non_empty(v).map(Into::into),
        "group" => p.group = non_empty(v).map(Into::into),
        "pm" => {
            p.pm = Some(match v.to_ascii_lowercase().as_str() {
                "static" => Pm::Static,
                "dynamic" => Pm::Dynamic,
                "ondemand" => Pm::Ondemand,
                _ => {
                    return Err(format!(
                        "invalid process manager '{v}' (static, dynamic or ondemand)"
                    ))
                }
            })
        }
        "pm.max_children" => p.max_children = int(v)? as u32,
        "pm.start_servers" => p.start_servers = int(v)? as u32,
        "pm.min_spare_servers" => p.min_spare_servers = int(v)? as u32,
        "pm.max_spare_servers" => p.max_spare_servers = int(v)? as u32,
        "pm.max_spawn_rate" => p.max_spawn_rate = int(v)? as u32,
        "pm.process_idle_timeout" => p.process_idle_timeout = time(v)?,
        "pm.max_requests" => p.max_requests = int(v)?,
        "pm.status_path" => p.status_path = non_empty(v).map(Into::into),
        "pm.status_listen" => {
            p.status_listen = match non_empty(v) {
                None => None,
                Some(a) => Some(ListenAddr::parse(a, base)?),
            }
        }
        "ping.path" => p.ping_path = non_empty(v).map(Into::into),
        "ping.response" => p.ping_response = Some(v.into()),
        "request_terminate_timeout" => p.request_terminate_timeout = time(v)?,
        "request_slowlog_timeout" => p.request_slowlog_timeout = time(v)?,
        "slowlog" => p.slowlog = non_empty(v).map(&resolve),
        "catch_workers_output" => p.catch_workers_output = boolean(v)?,
        "decorate_workers_output" => p.decorate_workers_output = boolean(v)?,
        "clear_env" => p.clear_env = boolean(v)?,
        "chdir" => p.chdir = non_empty(v).map(&resolve),
        "rlimit_files" => p.rlimit_files = Some(int(v)?),
        "rlimit_core" => p.rlimit_core = Some(limit(v)?),
        "process.priority" => {
            let n: i32 = v
                .trim()
                .parse()
                .map_err(|_| format!("'{v}' is not a number"))?;
            if !(-19..=20).contains(&n) {
                return Err(format!("{n}: the priority is between -19 and 20"));
            }
            p.process_priority = Some(n);
        }
        "command" => {
            let c = non_empty(v).ok_or("empty command")?;
            p.command = Some(if c.contains('/') {
                resolve(c)
            } else {
                PathBuf::from(c)
            });
        }
        "args" => p.args = split_args(v)?,
        _ => {
            return Err(unknown(
                key,
                POOL_KEYS,
                POOL_UNSUPPORTED,
                GLOBAL_KEYS,
                "a pool section",
            ))
        }
    }
    Ok(())
}

fn expand_pool(v: &str, pool: &str) -> String {
    v.replace("$pool", pool)
}

fn strip_comment(v: &str) -> &str {
    match v.find(';') {
        Some(i) => &v[..i],
        None => v,
    }
}

fn check_trailing(rest: &str) -> Result<(), String> {
    let r = rest.trim();
    if r.is_empty() || r.starts_with(';') {
        Ok(())
    } else {
        Err(format!("unexpected '{r}' after the closing quote"))
    }
}

fn non_empty(v: &str) -> Option<&str> {
    let v = v.trim();
    (!v.is_empty()).then_some(v)
}

fn int(v: &str) -> Result<u64, String> {
    let t = v.trim();
    t.parse::<u64>()
        .map_err(|_| format!("'{v}' is not a whole number >= 0"))
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Ok(true),
        "" | "0" | "no" | "off" | "false" | "none" => Ok(false),
        _ => Err(format!(
            "'{v}' is not a boolean (yes/no, on/off, true/false, 1/0)"
        )),
    }
}

/// php-fpm's times: a whole number with `s` (default), `m`, `h` or `d`; fcgi-pm also takes
/// `ms`.
pub fn time(v: &str) -> Result<Duration, String> {
    let t = v.trim();
    let bad = || format!("'{v}' is not a time (a number with s, m, h, d or ms)");
    let (num, mult_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000)
    } else if let Some(n) = t.strip_suffix('d') {
        (n, 86_400_000)
    } else {
        (t, 1000)
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    n.checked_mul(mult_ms)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

fn limit(v: &str) -> Result<Limit, String> {
    if v.trim().eq_ignore_ascii_case("unlimited") {
        Ok(Limit::Unlimited)
    } else {
        int(v)
            .map(Limit::Value)
            .map_err(|_| format!("'{v}': use 'unlimited' or a number >= 0"))
    }
}

fn facility(v: &str) -> Result<i32, String> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "daemon" => libc::LOG_DAEMON,
        "user" => libc::LOG_USER,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        _ => return Err(format!("'{v}': use daemon, user or local0..local7")),
    })
}

/// Splits `args` like a shell: spaces separate words, '...' and "..." quote, a backslash
/// escapes the next character.
pub fn split_args(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("args: unterminated '...'".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err("args: unterminated \"...\"".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("args: unterminated \"...\"".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

const GLOBAL_KEYS: &[&str] = &[
    "pid",
    "error_log",
    "log_level",
    "syslog.ident",
    "syslog.facility",
    "daemonize",
    "emergency_restart_threshold",
    "emergency_restart_interval",
    "process_control_timeout",
    "rlimit_files",
    "rlimit_core",
    "include",
];
const GLOBAL_UNSUPPORTED: &[&str] = &[
    "process.max",
    "log_limit",
    "log_buffering",
    "process.priority",
    "events.mechanism",
    "systemd_interval",
];
const POOL_KEYS: &[&str] = &[
    "listen",
    "listen.backlog",
    "listen.owner",
    "listen.group",
    "listen.mode",
    "listen.allowed_clients",
    "user",
    "group",
    "pm",
    "pm.max_children",
    "pm.start_servers",
    "pm.min_spare_servers",
    "pm.max_spare_servers",
    "pm.max_spawn_rate",
    "pm.process_idle_timeout",
    "pm.max_requests",
    "pm.status_path",
    "pm.status_listen",
    "ping.path",
    "ping.response",
    "request_terminate_timeout",
    "request_slowlog_timeout",
    "slowlog",
    "catch_workers_output",
    "decorate_workers_output",
    "clear_env",
    "env[NAME]",
    "chdir",
    "rlimit_files",
    "rlimit_core",
    "process.priority",
    "command",
    "args",
    "include",
];
const POOL_UNSUPPORTED: &[&str] = &[
    "prefix",
    "chroot",
    "listen.acl_users",
    "listen.acl_groups",
    "listen.setfib",
    "process.dumpable",
    "access.log",
    "access.format",
    "access.suppress_path",
    "request_terminate_timeout_track_finished",
];
const PHP_KEYS: &[&str] = &["security.limit_extensions", "request_slowlog_trace_depth"];
const PHP_ARRAYS: &[&str] = &["php_value", "php_flag", "php_admin_value", "php_admin_flag"];

fn unknown(key: &str, known: &[&str], unsupported: &[&str], other: &[&str], here: &str) -> String {
    let l = key.to_ascii_lowercase();
    if PHP_KEYS.contains(&l.as_str()) {
        return format!(
            "'{key}' is about PHP; fcgi-pm runs any program and has no PHP to give it to: remove the line"
        );
    }
    if unsupported.contains(&l.as_str()) {
        return format!(
            "'{key}' is a php-fpm directive that fcgi-pm does not implement: remove the line"
        );
    }
    if other.contains(&l.as_str()) && !known.contains(&l.as_str()) {
        let there = if here == "[global]" {
            "a pool section"
        } else {
            "[global]"
        };
        return format!("'{key}' belongs in {there}, not in {here}");
    }
    let best = known
        .iter()
        .map(|k| (distance(&l, k), *k))
        .min()
        .filter(|(d, _)| *d <= (l.len() / 4).clamp(1, 3));
    match best {
        Some((_, k)) => format!("unknown directive '{key}' (did you mean '{k}'?)"),
        None => format!("unknown directive '{key}'"),
    }
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `glob(3)` on a pattern, sorted; directories are skipped.
fn glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(pattern.as_os_str().as_bytes())
        .map_err(|_| "include pattern contains a NUL".to_string())?;
    // SAFETY: glob fills a zeroed glob_t that we free with globfree; the pattern is a
    // valid C string.
    unsafe {
        let mut g: libc::glob_t = std::mem::zeroed();
        let rc = libc::glob(c.as_ptr(), libc::GLOB_ERR | libc::GLOB_MARK, None, &mut g);
        if rc == libc::GLOB_NOMATCH {
            libc::globfree(&mut g);
            return Ok(Vec::new());
        }
        if rc != 0 {
            libc::globfree(&mut g);
            return Err(format!(
                "cannot expand the include pattern '{}'",
                pattern.display()
            ));
        }
        let mut out = Vec::new();
        for i in 0..g.gl_pathc {
            let p = CStr::from_ptr(*g.gl_pathv.add(i));
            let b = p.to_bytes();
            if b.ends_with(b"/") {
                continue;
            }
            out.push(PathBuf::from(std::ffi::OsStr::from_bytes(b)));
        }
        libc::globfree(&mut g);
        Ok(out)
    }
}

fn check_path(pool: &Pool, what: &str, p: &str) -> Result<(), ConfigError> {
    let e = |m: String| err(format!("[pool {}] {m}", pool.name));
    if !p.starts_with('/') {
        return Err(e(format!("the {what} '{p}' must start with a '/'")));
    }
    if p.len() < 2 {
        return Err(e(format!("the {what} '{p}' is not long enough")));
    }
    if !p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c))
    {
        return Err(e(format!(
            "the {what} '{p}' must contain only the following characters '[alphanum]/_-.'"
        )));
    }
    Ok(())
}

/// php-fpm's checks (fpm_conf_process_all_pools), and fcgi-pm's own.
fn validate(cfg: &mut Config) -> Result<(), ConfigError> {
    if cfg.pools.is_empty() {
        return Err(err(
            "at least one pool section must be specified in the configuration",
        ));
    }
    let mut listens: HashMap<String, String> = HashMap::new();
    for p in &mut cfg.pools {
        let name = p.name.clone();
        let e = |m: String| ConfigError {
            place: Some((p.file.clone(), p.line)),
            msg: format!("[pool {name}] {m}"),
        };
        let Some(listen) = &p.listen else {
            return Err(e("no listen address has been defined".into()));
        };
        if let Some(other) = listens.insert(listen.to_string(), name.clone()) {
            return Err(e(format!(
                "listen address {listen} is also pool '{other}''s"
            )));
        }
        if p.command.is_none() {
            return Err(e(
                "'command' is not set: fcgi-pm needs the program each child runs (php-fpm's pools run PHP itself)".into(),
            ));
        }
        let Some(pm) = p.pm else {
            return Err(e(
                "the process manager is missing (pm = static, dynamic or ondemand)".into(),
            ));
        };
        if p.max_children < 1 {
            return Err(e("pm.max_children must be a positive value".into()));
        }
        if pm == Pm::Dynamic {
            if p.min_spare_servers == 0 {
                return Err(e(format!(
                    "pm.min_spare_servers({}) must be a positive value",
                    p.min_spare_servers
                )));
            }
            if p.max_spare_servers == 0 {
                return Err(e(format!(
                    "pm.max_spare_servers({}) must be a positive value",
                    p.max_spare_servers
                )));
            }
            if p.min_spare_servers > p.max_children || p.max_spare_servers > p.max_children {
                return Err(e(format!(
                    "pm.min_spare_servers({}) and pm.max_spare_servers({}) cannot be greater than pm.max_children({})",
                    p.min_spare_servers, p.max_spare_servers, p.max_children
                )));
            }
            if p.max_spare_servers < p.min_spare_servers {
                return Err(e(format!(
                    "pm.max_spare_servers({}) must not be less than pm.min_spare_servers({})",
                    p.max_spare_servers, p.min_spare_servers
                )));
            }
            if p.start_servers == 0 {
                p.start_servers =
                    p.min_spare_servers + (p.max_spare_servers - p.min_spare_servers) / 2;
            } else if p.start_servers < p.min_spare_servers || p.start_servers > p.max_spare_servers
            {
                return Err(e(format!(
                    "pm.start_servers({}) must not be less than pm.min_spare_servers({}) and not greater than pm.max_spare_servers({})",
                    p.start_servers, p.min_spare_servers, p.max_spare_servers
                )));
            }
            if p.max_spawn_rate < 1 {
                return Err(e("pm.max_spawn_rate must be a positive value".into()));
            }
        }
        if pm == Pm::Ondemand && p.process_idle_timeout.is_zero() {
            return Err(e("pm.process_idle_timeout must be greater than 0".into()));
        }
        if !p.request_slowlog_timeout.is_zero() && p.slowlog.is_none() {
            return Err(e(
                "'slowlog' must be specified for use with 'request_slowlog_timeout'".into(),
            ));
        }
        if let Some(s) = p.status_path.clone() {
            check_path(p, "status path", &s)?;
        }
        if let Some(s) = p.ping_path.clone() {
            check_path(p, "ping path", &s)?;
            if p.ping_response.as_deref() == Some("") {
                return Err(e("the ping response page is empty".into()));
            }
        }
        if p.status_path.is_some() && p.ping_path.is_some() && p.status_path == p.ping_path {
            return Err(e("pm.status_path and ping.path are the same".into()));
        }
        if (p.status_path.is_some() || p.ping_path.is_some()) && p.status_listen.is_none() {
            return Err(e(
                "pm.status_path and ping.path need pm.status_listen: fcgi-pm answers them itself on that socket (the children may be any program)".into(),
            ));
        }
        if p.status_listen.is_some() && p.status_path.is_none() && p.ping_path.is_none() {
            return Err(e(
                "pm.status_listen is set but neither pm.status_path nor ping.path".into(),
            ));
        }
        if p.status_listen.as_ref() == Some(listen) {
            return Err(e("pm.status_listen must differ from listen".into()));
        }
        if let Some(d) = &p.chdir {
            if !d.is_absolute() {
                return Err(e(format!(
                    "the chdir path '{}' must start with a '/'",
                    d.display()
                )));
            }
        }
        if p.allowed_clients.is_some() && !listen.is_tcp() {
            return Err(e(
                "listen.allowed_clients applies to TCP sockets only".into()
            ));
        }
    }
    // Status listeners may be shared between pools, if the paths differ.
    let mut routes: HashMap<(String, String), String> = HashMap::new();
    for p in &cfg.pools {
        if let Some(sl) = &p.status_listen {
            if let Some(other) = listens.get(&sl.to_string()) {
                return Err(err(format!(
                    "[pool {}] pm.status_listen {sl} is the listen address of pool '{other}'",
                    p.name
                )));
            }
            for path in [&p.status_path, &p.ping_path].into_iter().flatten() {
                if let Some(other) = routes.insert((sl.to_string(), path.clone()), p.name.clone()) {
                    return Err(err(format!(
                        "[pool {}] {sl}{path} is already answered for pool '{other}'",
                        p.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The checks only `-t` and start-up make (they look at the system): commands exist and
/// are executable, users and groups exist, chdir directories exist.
pub fn check_system(cfg: &Config) -> Result<(), ConfigError> {
    for p in &cfg.pools {
        let e = |m: String| err(format!("[pool {}] {m}", p.name));
        resolve_command(p.command()).map_err(e)?;
        if let Some(u) = &p.user {
            crate::spawn::lookup_user(u).map_err(e)?;
        }
        if let Some(g) = &p.group {
            crate::spawn::lookup_group(g).map_err(e)?;
        }
        for who in [&p.listen_owner].into_iter().flatten() {
            crate::spawn::lookup_user(who).map_err(e)?;
        }
        for g in [&p.listen_group].into_iter().flatten() {
            crate::spawn::lookup_group(g).map_err(e)?;
        }
        if let Some(d) = &p.chdir {
            if !d.is_dir() {
                return Err(e(format!(
                    "the chdir path '{}' does not exist or is not a directory",
                    d.display()
                )));
            }
        }
    }
    Ok(())
}

/// The program to execute: a path with a '/' as given, else found in `PATH`.
pub fn resolve_command(c: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let exec_ok = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if c.to_string_lossy().contains('/') {
        if exec_ok(c) {
            return Ok(c.to_path_buf());
        }
        return Err(format!(
            "command '{}' is not an executable file",
            c.display()
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(c);
        if exec_ok(&cand) {
            return Ok(cand);
        }
    }
    Err(format!("command '{}' is not found in PATH", c.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str =
        "[www]\nlisten = 127.0.0.1:9000\npm = static\npm.max_children = 4\ncommand = /bin/true\n";

    fn e(text: &str) -> String {
        parse_str(text).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_pool_and_php_fpm_defaults() {
        let c = parse_str(MIN).unwrap();
        let p = &c.pools[0];
        assert_eq!(p.name, "www");
        assert_eq!(
            p.listen,
            Some(ListenAddr::Tcp("127.0.0.1:9000".parse().unwrap()))
        );
        assert_eq!((p.pm(), p.max_children), (Pm::Static, 4));
        assert_eq!(p.listen_backlog, -1);
        assert_eq!(p.listen_mode, 0o660);
        assert!(p.clear_env && !p.catch_workers_output);
        assert_eq!(p.process_idle_timeout, Duration::from_secs(10));
        assert_eq!(p.max_spawn_rate, 32);
        assert!(c.global.daemonize);
        assert_eq!(c.global.log_level, Level::Notice);
    }

    #[test]
    fn unknown_directives_name_their_line() {
        let msg = e(&format!("{MIN}pm.max_childern = 5\n"));
        assert_eq!(
            msg,
            "[test.conf:6] unknown directive 'pm.max_childern' (did you mean 'pm.max_children'?)"
        );
        let msg = e(&format!("{MIN}frobnicate = 1\n"));
        assert_eq!(msg, "[test.conf:6] unknown directive 'frobnicate'");
        let msg = e(&format!("[global]\npm = static\n{MIN}"));
        assert!(
            msg.starts_with("[test.conf:2] 'pm' belongs in a pool section"),
            "{msg}"
        );
        let msg = e(&format!("{MIN}php_admin_value[memory_limit] = 32M\n"));
        assert!(
            msg.starts_with("[test.conf:6] 'php_admin_value[memory_limit]' is a PHP setting"),
            "{msg}"
        );
        let msg = e(&format!("{MIN}access.log = x\n"));
        assert!(
            msg.contains("php-fpm directive that fcgi-pm does not implement"),
            "{msg}"
        );
        let msg = e(&format!("{MIN}just some words\n"));
        assert!(msg.starts_with("[test.conf:6] syntax error"), "{msg}");
    }

    #[test]
    fn values_quotes_comments_and_expansions() {
        let c = parse_str(&format!(
            "{MIN}env[A] = \"x ; y\" ; comment\nenv[B] = 'raw ${{HOME}}'\nenv[C] = ${{HOME}}/d ; c\nenv[D] = $pool-1\nslowlog = /tmp/$pool.slow\n"
        ))
        .unwrap();
        let env = &c.pools[0].env;
        assert_eq!(env[0], ("A".into(), "x ; y".into()));
        assert_eq!(env[1], ("B".into(), "raw ${HOME}".into()));
        assert_eq!(env[2], ("C".into(), "/home/x/d".into()));
        assert_eq!(env[3], ("D".into(), "www-1".into()));
        assert_eq!(c.pools[0].slowlog, Some(PathBuf::from("/tmp/www.slow")));
        assert!(e(&format!("{MIN}env[A] = \"open\n")).contains("unterminated"));
    }

    #[test]
    fn times_and_booleans() {
        assert_eq!(time("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(time("10").unwrap(), Duration::from_secs(10));
        assert_eq!(time("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(time("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(time("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(time("250ms").unwrap(), Duration::from_millis(250));
        assert!(time("1.5s").is_err() && time("-1").is_err() && time("s").is_err());
        assert!(boolean("yes").unwrap() && !boolean("Off").unwrap());
        assert!(boolean("maybe").is_err());
    }

    #[test]
    fn listen_syntaxes() {
        let b = Path::new("/etc");
        assert_eq!(
            ListenAddr::parse("9000", b).unwrap(),
            ListenAddr::AnyPort(9000)
        );
        assert_eq!(
            ListenAddr::parse("[::1]:9000", b).unwrap(),
            ListenAddr::Tcp("[::1]:9000".parse().unwrap())
        );
        assert_eq!(
            ListenAddr::parse("*:9000", b).unwrap(),
            ListenAddr::Tcp("0.0.0.0:9000".parse().unwrap())
        );
        assert_eq!(
            ListenAddr::parse("/run/app.sock", b).unwrap(),
            ListenAddr::Unix("/run/app.sock".into())
        );
        assert_eq!(
            ListenAddr::parse("run/app.sock", b).unwrap(),
            ListenAddr::Unix("/etc/run/app.sock".into())
        );
        assert!(ListenAddr::parse("localhost:9000", b).unwrap().is_tcp());
        assert!(ListenAddr::parse("127.0.0.1:0", b).is_err());
        assert!(ListenAddr::parse("127.0.0.1:99999", b).is_err());
    }

    #[test]
    fn dynamic_checks_as_php_fpm() {
        let dy = "[www]\nlisten = 9000\npm = dynamic\ncommand = /bin/true\npm.max_children = 5\n";
        assert!(e(dy).contains("pm.min_spare_servers(0) must be a positive value"));
        let c = parse_str(&format!(
            "{dy}pm.min_spare_servers = 1\npm.max_spare_servers = 3\n"
        ))
        .unwrap();
        assert_eq!(
            c.pools[0].start_servers, 2,
            "php-fpm's default: min + (max - min) / 2"
        );
        assert!(e(&format!(
            "{dy}pm.min_spare_servers = 1\npm.max_spare_servers = 9\n"
        ))
        .contains("cannot be greater than pm.max_children"));
        assert!(e(&format!(
            "{dy}pm.min_spare_servers = 2\npm.max_spare_servers = 3\npm.start_servers = 1\n"
        ))
        .contains("pm.start_servers(1) must not be less than"));
    }

    #[test]
    fn status_needs_its_own_listener() {
        assert!(e(&format!("{MIN}pm.status_path = /status\n")).contains("need pm.status_listen"));
        assert!(e(&format!(
            "{MIN}pm.status_path = status\npm.status_listen = 9001\n"
        ))
        .contains("must start with a '/'"));
        assert!(e(&format!(
            "{MIN}pm.status_path = /st<x\npm.status_listen = 9001\n"
        ))
        .contains("only the following characters"));
        let c = parse_str(&format!(
            "{MIN}pm.status_path = /status\npm.status_listen = 127.0.0.1:9001\nping.path = /ping\n"
        ))
        .unwrap();
        assert_eq!(c.pools[0].ping_response(), "pong");
    }

    #[test]
    fn missing_essentials() {
        assert!(e("[global]\npid = /x\n").contains("at least one pool"));
        assert!(
            e("[www]\npm = static\npm.max_children = 1\ncommand = /bin/true\n")
                .contains("no listen address")
        );
        assert!(
            e("[www]\nlisten = 9000\npm = static\npm.max_children = 1\n")
                .contains("'command' is not set")
        );
        assert!(
            e("[www]\nlisten = 9000\ncommand = /bin/true\npm.max_children = 1\n")
                .contains("process manager is missing")
        );
        assert!(
            e("[www]\nlisten = 9000\ncommand = /bin/true\npm = static\n")
                .contains("pm.max_children must be a positive value")
        );
        assert!(e(&format!("{MIN}request_slowlog_timeout = 1s\n"))
            .contains("'slowlog' must be specified"));
        assert!(e(&format!("{MIN}[two]\nlisten = 127.0.0.1:9000\npm = static\npm.max_children = 1\ncommand = /bin/true\n"))
            .contains("is also pool 'www''s"));
    }

    #[test]
    fn args_split_like_a_shell() {
        assert_eq!(
            split_args("-a 'b c' \"d \\\"e\" f\\ g").unwrap(),
            vec!["-a", "b c", "d \"e", "f g"]
        );
        assert!(split_args("'open").is_err());
        assert_eq!(split_args("").unwrap(), Vec::<String>::new());
        let c = parse_str(&format!("{MIN}args = --port 1 \"two words\"\n")).unwrap();
        assert_eq!(c.pools[0].args, vec!["--port", "1", "two words"]);
    }

    #[test]
    fn allowed_clients_parse_and_apply_to_tcp_only() {
        let c = parse_str(&format!("{MIN}listen.allowed_clients = 127.0.0.1, ::1\n")).unwrap();
        let (raw, ips) = c.pools[0].allowed_clients.clone().unwrap();
        assert_eq!(raw, "127.0.0.1, ::1");
        assert_eq!(ips.len(), 2);
        assert!(e(&format!("{MIN}listen.allowed_clients = 127.0.0.x\n"))
            .contains("not an IPv4 or IPv6"));
    }

    #[test]
    fn includes_globs_and_sections_across_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pool.d")).unwrap();
        std::fs::write(dir.path().join("pool.d/a.conf"), MIN).unwrap();
        std::fs::write(
            dir.path().join("pool.d/b.conf"),
            "[b]\nlisten = 127.0.0.1:9002\npm = ondemand\npm.max_children = 2\ncommand = /bin/true\nbogus = 1\n",
        )
        .unwrap();
        let main = dir.path().join("main.conf");
        std::fs::write(
            &main,
            "[global]\nerror_log = log/pm.log\ninclude = pool.d/*.conf\n",
        )
        .unwrap();
        let err = load(&main, &Load { prefix: None }).unwrap_err().to_string();
        assert!(
            err.ends_with("pool.d/b.conf:6] unknown directive 'bogus'"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("pool.d/b.conf"),
            "[b]\nlisten = 127.0.0.1:9002\npm = ondemand\npm.max_children = 2\ncommand = /bin/true\n",
        )
        .unwrap();
        let c = load(&main, &Load { prefix: None }).unwrap();
        assert_eq!(
            c.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["www", "b"]
        );
        assert_eq!(
            c.global.error_log,
            LogTarget::File(dir.path().join("log/pm.log"))
        );
        // An include loop is stopped.
        std::fs::write(&main, "include = main.conf\n").unwrap();
        assert!(load(&main, &Load { prefix: None })
            .unwrap_err()
            .to_string()
            .contains("nested more than 5"));
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "[",
            "]",
            "=",
            "[x",
            "a[b = c",
            "[ ]",
            "env[] = x",
            "\u{0}",
            "[w]\nlisten=\"",
            "[w]\nenv[X]=${",
        ] {
            let _ = parse_str(text);
        }
    }
}
