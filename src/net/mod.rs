//! Addresses and sockets, once for every face of the crate: one address type
//! ([`Address`]), one parser ([`Address::parse_with`], in the [`Syntax`] each entry point
//! documents), one bind ([`bind`]) and one connect. The server's [`Listener`], the client,
//! the C ABI's `OS_CreateLocalIpcFd` / `FCGX_OpenSocket` and `OS_FcgiConnect`, and the
//! `cgi-fcgi` tool all go through them; what differs between them (the syntax, what
//! happens to a file already at a Unix path, close-on-exec) is a parameter here, not a
//! second implementation.
//!
//! Out of scope: accepting (the engine's) and the `FCGI_WEB_SERVER_ADDRS` allow-list.
//!
//! [`Listener`]: crate::server::Listener
//!
//! # Example
//!
//! ```
//! use fcgi::net::{Address, Syntax};
//! // The crate's syntax and libfcgi's read the same string the same way...
//! let ours = Address::parse("127.0.0.1:9000").unwrap();
//! assert_eq!(Address::parse_with(b"127.0.0.1:9000", Syntax::LibfcgiBind).unwrap(), ours);
//! // ...and differ where libfcgi has its own rules: port 0 there means "a Unix path".
//! assert!(matches!(Address::parse("127.0.0.1:0").unwrap(), Address::Tcp(_)));
//! assert!(matches!(
//!     Address::parse_with(b"127.0.0.1:0", Syntax::LibfcgiBind).unwrap(),
//!     Address::Unix(_)
//! ));
//! ```

pub mod diag;

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

/// The listen backlog used when none is configured, as php-fpm and fcgiwrap use.
///
/// # Example
///
/// ```
/// assert_eq!(fcgi::net::BindOptions::default().backlog, fcgi::net::DEFAULT_BACKLOG);
/// ```
pub const DEFAULT_BACKLOG: i32 = 511;

/// Where a FastCGI application listens: a TCP address or a Unix socket path.
///
/// Read from a string with [`Address::parse`] (the crate's syntax, also `FromStr`) or
/// [`Address::parse_with`] (a chosen [`Syntax`]). Displayed as `127.0.0.1:9000`,
/// `[::1]:9000` or `unix:/path`, which parse back to the same address.
///
/// # Example
///
/// ```
/// use fcgi::net::Address;
/// let a: Address = "unix:/run/php/fpm.sock".parse().unwrap();
/// assert_eq!(a, Address::Unix("/run/php/fpm.sock".into()));
/// assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// Which rules read an address string. Each entry point of the crate documents one.
///
/// # Example
///
/// ```
/// use fcgi::net::{Address, Syntax};
/// let any = Address::Tcp("0.0.0.0:9000".parse().unwrap());
/// for syntax in [Syntax::Crate, Syntax::LibfcgiBind] {
///     assert_eq!(Address::parse_with(b":9000", syntax).unwrap(), any);
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Syntax {
    /// The crate's own: [`Server::bind`](crate::Server::bind),
    /// [`Listener::bind`](crate::server::Listener::bind), the client's
    /// `"...".parse::<Address>()`.
    ///
    /// * `IP:PORT` and `[IPv6]:PORT` (numeric: host names are not resolved);
    /// * `:PORT` and `*:PORT`: every IPv4 interface (`0.0.0.0`; connecting to it reaches
    ///   this host);
    /// * `unix:PATH`: a Unix socket path;
    /// * a string starting with `/` or `.`, or without any `:`: a Unix socket path.
    ///
    /// Anything else (`host:port` with a name, a bad port) is an `InvalidInput` error.
    Crate,
    /// libfcgi's bind path (`FCGX_OpenSocket`, `OS_CreateLocalIpcFd`, `cgi-fcgi -start`),
    /// reference §5.3: after the **first** `:` comes a port read as `atoi` into a 16-bit
    /// `short` (`:70000` is port 4464); a port of 0 (none, or not a number) makes the whole
    /// string a Unix path (`/tmp/a:b`, `127.0.0.1:0`). The host: empty or `*` is every
    /// IPv4 interface, an IPv4 address is itself, a name is resolved and must have exactly
    /// one IPv4 address (as libfcgi's `gethostbyname` check). Added: `[IPv6]:PORT`.
    LibfcgiBind,
    /// libfcgi's connect path (`OS_FcgiConnect`, `cgi-fcgi -connect`): as
    /// [`Syntax::LibfcgiBind`], except that an empty host is `localhost` and a name may
    /// have several addresses (the first IPv4 one is used, as `gethostbyname`'s
    /// `h_addr`).
    LibfcgiConnect,
}

impl Address {
    /// Parses `s` in the crate's syntax ([`Syntax::Crate`]). Never resolves a name.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an empty string, `unix:` with no path, or `host:port` whose host
    /// is not an IP address or whose port is not a number.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::net::Address;
    /// assert!(matches!(Address::parse("[::1]:9000").unwrap(), Address::Tcp(a) if a.is_ipv6()));
    /// assert!(matches!(Address::parse("/run/app.sock").unwrap(), Address::Unix(_)));
    /// assert!(Address::parse("localhost:9000").is_err());
    /// ```
    pub fn parse(s: &str) -> io::Result<Address> {
        Address::parse_with(s.as_bytes(), Syntax::Crate)
    }

    /// Parses `s` (bytes: a Unix path need not be UTF-8) in `syntax`. The libfcgi
    /// syntaxes resolve host names (through `getaddrinfo`); the crate's never does.
    ///
    /// # Errors
    ///
    /// [`Syntax::Crate`]: as [`Address::parse`]. The libfcgi syntaxes: `EINVAL` (as a raw
    /// OS error) for a host that is not UTF-8 or a bad `[IPv6]`, `EADDRNOTAVAIL` for a
    /// name that does not resolve to the IPv4 address(es) the syntax asks for.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::net::{Address, Syntax};
    /// let a = Address::parse_with(b":70000", Syntax::LibfcgiBind).unwrap();
    /// assert_eq!(a, Address::Tcp("0.0.0.0:4464".parse().unwrap()));
    /// ```
    pub fn parse_with(s: &[u8], syntax: Syntax) -> io::Result<Address> {
        match syntax {
            Syntax::Crate => parse_crate(s),
            Syntax::LibfcgiBind => parse_libfcgi(s, false),
            Syntax::LibfcgiConnect => parse_libfcgi(s, true),
        }
    }

    /// How the address is named in messages: the socket address, or the bare path.
    fn describe(&self) -> String {
        match self {
            Address::Tcp(a) => a.to_string(),
            Address::Unix(p) => p.display().to_string(),
        }
    }
}

impl FromStr for Address {
    type Err = io::Error;

    /// As [`Address::parse`].
    fn from_str(s: &str) -> io::Result<Address> {
        Address::parse(s)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a)
    }
}

fn bad_address(s: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "cannot parse address {:?}: use IP:PORT, [IPv6]:PORT, :PORT, unix:PATH or a socket path",
            String::from_utf8_lossy(s)
        ),
    )
}

fn unix_path(s: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(s))
}

fn parse_crate(s: &[u8]) -> io::Result<Address> {
    if s.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty address"));
    }
    if let Some(path) = s.strip_prefix(b"unix:") {
        if path.is_empty() {
            return Err(bad_address(s));
        }
        return Ok(Address::Unix(unix_path(path)));
    }
    if let Ok(text) = std::str::from_utf8(s) {
        if let Ok(a) = text.parse::<SocketAddr>() {
            return Ok(Address::Tcp(a));
        }
        if let Some(port) = text.strip_prefix(':').or_else(|| text.strip_prefix("*:")) {
            if let Ok(port) = port.parse::<u16>() {
                return Ok(Address::Tcp(SocketAddr::from((
                    Ipv4Addr::UNSPECIFIED,
                    port,
                ))));
            }
        }
    }
    if s.starts_with(b"/") || s.starts_with(b".") || !s.contains(&b':') {
        return Ok(Address::Unix(unix_path(s)));
    }
    Err(bad_address(s))
}

/// C's `atoi` (glibc: `(int) strtol(s, NULL, 10)`: leading blanks, a sign, digits, clamped
/// to `long`), then truncated to libfcgi's `short` port.
fn atoi_port(s: &[u8]) -> u16 {
    let s = match s.iter().position(|b| !b" \t\n\r\x0b\x0c".contains(b)) {
        Some(i) => &s[i..],
        None => return 0,
    };
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for &b in digits.iter().take_while(|b| b.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    let n = if neg { n.saturating_neg() } else { n };
    n as i32 as i16 as u16
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

fn parse_libfcgi(s: &[u8], connect: bool) -> io::Result<Address> {
    // Added to libfcgi's syntax: "[v6]:port".
    if s.first() == Some(&b'[') {
        if let Some(end) = s.iter().position(|&b| b == b']') {
            if s.get(end + 1) == Some(&b':') {
                let port = atoi_port(&s[end + 2..]);
                let host = std::str::from_utf8(&s[1..end]).map_err(|_| einval())?;
                let ip: Ipv6Addr = host.parse().map_err(|_| einval())?;
                if port != 0 {
                    return Ok(Address::Tcp(SocketAddr::from((ip, port))));
                }
            }
        }
    }
    let Some(colon) = s.iter().position(|&b| b == b':') else {
        return Ok(Address::Unix(unix_path(s)));
    };
    let port = atoi_port(&s[colon + 1..]);
    if port == 0 {
        return Ok(Address::Unix(unix_path(s)));
    }
    let host = &s[..colon];
    if host == b"*" || (host.is_empty() && !connect) {
        return Ok(Address::Tcp(SocketAddr::from((
            Ipv4Addr::UNSPECIFIED,
            port,
        ))));
    }
    let host = if host.is_empty() {
        "localhost"
    } else {
        std::str::from_utf8(host).map_err(|_| einval())?
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Address::Tcp(SocketAddr::from((ip, port))));
    }
    let not_available = || io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
    let mut v4 = (host, port)
        .to_socket_addrs()
        .map_err(|_| not_available())?
        .filter(SocketAddr::is_ipv4);
    let first = v4.next().ok_or_else(not_available)?;
    // libfcgi binds a name only if it has exactly one IPv4 address.
    if !connect && v4.next().is_some() {
        return Err(not_available());
    }
    Ok(Address::Tcp(first))
}

/// What [`bind`] does with a file already at a Unix socket path.
///
/// # Example
///
/// ```
/// assert_eq!(fcgi::net::BindOptions::default().existing, fcgi::net::Existing::ReplaceStale);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Existing {
    /// A socket nobody listens on any more is replaced; a live one is an `AddrInUse`
    /// error and any other file an `AlreadyExists` error (never removed). The server's.
    ReplaceStale,
    /// Any socket file is replaced, live or not; another file is kept (and the bind
    /// fails). `cgi-fcgi -start`'s.
    ReplaceSocket,
    /// Whatever is there is unlinked first, as libfcgi's `OS_CreateLocalIpcFd` does.
    Unlink,
}

/// How [`bind`] makes a listening socket. Built from [`BindOptions::default`] (or
/// [`BindOptions::from_env`]) with the setters.
///
/// `mode`, `owner` and `group` set a Unix socket's permissions as php-fpm's
/// `listen.mode`, `listen.owner` and `listen.group` do (TCP sockets ignore them). By
/// default none is set: the socket file gets `0777` less the process's umask and belongs
/// to the process, exactly as with the classic libfcgi (which never changes it), so a
/// deployment that works with the C library works the same here. Connecting to a Unix
/// socket needs write permission on it: a web server running as another user (Apache's
/// `www-data`) needs `mode(0o660)` with its group, or `0o666`.
///
/// # Example
///
/// ```
/// let opts = fcgi::net::BindOptions::default().mode(0o660).group("www-data");
/// assert_eq!(opts.mode, Some(0o660));
/// assert_eq!(opts.backlog, fcgi::net::DEFAULT_BACKLOG);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BindOptions {
    /// `listen(2)` backlog. Default [`DEFAULT_BACKLOG`].
    pub backlog: i32,
    /// Unix socket permission bits (`chmod`), e.g. `0o660`. Default none (the umask's).
    pub mode: Option<u32>,
    /// Unix socket owner: a user name or a numeric uid. Default none (the process's).
    pub owner: Option<String>,
    /// Unix socket group: a group name or a numeric gid. Default none (the process's).
    pub group: Option<String>,
    /// What to do with a file already at a Unix path. Default [`Existing::ReplaceStale`].
    pub existing: Existing,
    /// Close-on-exec on the socket. Default on (libfcgi's sockets are inherited: off).
    pub cloexec: bool,
    /// An IPv6 socket takes IPv6 only, so `[::]:9000` and `0.0.0.0:9000` can coexist.
    /// Default on.
    pub v6_only: bool,
}

impl Default for BindOptions {
    fn default() -> BindOptions {
        BindOptions {
            backlog: DEFAULT_BACKLOG,
            mode: None,
            owner: None,
            group: None,
            existing: Existing::ReplaceStale,
            cloexec: true,
            v6_only: true,
        }
    }
}

/// The environment variables [`BindOptions::from_env`] reads.
const ENV_MODE: &str = "FCGI_SOCKET_MODE";
const ENV_OWNER: &str = "FCGI_SOCKET_OWNER";
const ENV_GROUP: &str = "FCGI_SOCKET_GROUP";

impl BindOptions {
    /// The defaults with what the environment sets: `FCGI_SOCKET_MODE` (octal, e.g.
    /// `0660`), `FCGI_SOCKET_OWNER` and `FCGI_SOCKET_GROUP` (names or numeric ids), so a
    /// deployment can open a Unix socket to its web server without a code change.
    /// [`Server::bind`](crate::Server::bind) and
    /// [`Listener::bind`](crate::server::Listener::bind) use it.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming the variable when `FCGI_SOCKET_MODE` is not an octal mode of
    /// at most `0777` (a typo must not leave the socket open to everyone, or closed).
    ///
    /// # Example
    ///
    /// ```
    /// let opts = fcgi::net::BindOptions::from_env().unwrap();
    /// // Explicit settings win over the environment:
    /// let opts = opts.mode(0o600);
    /// assert_eq!(opts.mode, Some(0o600));
    /// ```
    pub fn from_env() -> io::Result<BindOptions> {
        let mut o = BindOptions::default();
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(m) = var(ENV_MODE) {
            let digits = m.strip_prefix("0o").unwrap_or(&m);
            o.mode = Some(
                u32::from_str_radix(digits, 8)
                    .ok()
                    .filter(|&m| m <= 0o777)
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("{ENV_MODE}={m:?}: not an octal mode such as 0660"),
                        )
                    })?,
            );
        }
        o.owner = var(ENV_OWNER);
        o.group = var(ENV_GROUP);
        Ok(o)
    }

    /// Sets the `listen(2)` backlog.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::net::BindOptions::default().backlog(16).backlog, 16);
    /// ```
    pub fn backlog(mut self, backlog: i32) -> BindOptions {
        self.backlog = backlog;
        self
    }

    /// Sets a Unix socket's permission bits (php-fpm's `listen.mode`).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::net::BindOptions::default().mode(0o666).mode, Some(0o666));
    /// ```
    pub fn mode(mut self, mode: u32) -> BindOptions {
        self.mode = Some(mode);
        self
    }

    /// Sets a Unix socket's owner, by user name or numeric uid (php-fpm's `listen.owner`;
    /// changing it needs the privilege to).
    ///
    /// # Example
    ///
    /// ```
    /// let o = fcgi::net::BindOptions::default().owner("www-data");
    /// assert_eq!(o.owner.as_deref(), Some("www-data"));
    /// ```
    pub fn owner(mut self, user: impl Into<String>) -> BindOptions {
        self.owner = Some(user.into());
        self
    }

    /// Sets a Unix socket's group, by group name or numeric gid (php-fpm's
    /// `listen.group`).
    ///
    /// # Example
    ///
    /// ```
    /// let o = fcgi::net::BindOptions::default().group("www-data");
    /// assert_eq!(o.group.as_deref(), Some("www-data"));
    /// ```
    pub fn group(mut self, group: impl Into<String>) -> BindOptions {
        self.group = Some(group.into());
        self
    }

    /// Sets what happens to a file already at a Unix path.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::net::{BindOptions, Existing};
    /// assert_eq!(BindOptions::default().existing(Existing::Unlink).existing, Existing::Unlink);
    /// ```
    pub fn existing(mut self, existing: Existing) -> BindOptions {
        self.existing = existing;
        self
    }

    /// Sets close-on-exec on the socket (off for a socket a child inherits).
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!fcgi::net::BindOptions::default().cloexec(false).cloexec);
    /// ```
    pub fn cloexec(mut self, on: bool) -> BindOptions {
        self.cloexec = on;
        self
    }

    /// Sets whether an IPv6 socket takes IPv6 only (off: IPv4-mapped peers too).
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!fcgi::net::BindOptions::default().v6_only(false).v6_only);
    /// ```
    pub fn v6_only(mut self, on: bool) -> BindOptions {
        self.v6_only = on;
        self
    }
}

/// An error with the address it is about: displayed `ADDRESS: error`; the system error
/// stays reachable as its source and through [`os_error`].
#[derive(Debug)]
struct AddrError {
    addr: String,
    source: io::Error,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.addr, self.source)
    }
}

impl std::error::Error for AddrError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn named(addr: &Address, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        AddrError {
            addr: addr.describe(),
            source: e,
        },
    )
}

/// The `errno` behind an error of [`bind`] (which names the address, so its own
/// `raw_os_error()` is `None`).
///
/// # Example
///
/// ```
/// use fcgi::net::{bind, os_error, Address, BindOptions};
/// let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let addr = Address::Tcp(taken.local_addr().unwrap());
/// let e = bind(&addr, &BindOptions::default()).unwrap_err();
/// assert_eq!(os_error(&e), Some(libc::EADDRINUSE));
/// assert!(e.to_string().starts_with(&addr.to_string()));
/// ```
pub fn os_error(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()?
            .downcast_ref::<AddrError>()?
            .source
            .raw_os_error()
    })
}

/// `sun_path` holds 108 bytes.
fn unix_sockaddr(path: &Path) -> io::Result<SockAddr> {
    if path.as_os_str().len() > 108 {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    SockAddr::unix(path)
}

fn new_socket(domain: Domain, cloexec: bool) -> io::Result<Socket> {
    if cloexec {
        Socket::new(domain, Type::STREAM, None)
    } else {
        Socket::new_raw(domain, Type::STREAM, None)
    }
}

/// Makes room for a Unix socket at `path`, as `existing` says.
fn clear_unix_path(path: &Path, existing: Existing) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let is_socket = meta.file_type().is_socket();
    match existing {
        Existing::Unlink => {
            let _ = std::fs::remove_file(path);
        }
        Existing::ReplaceSocket if is_socket => {
            let _ = std::fs::remove_file(path);
        }
        Existing::ReplaceSocket => {}
        Existing::ReplaceStale if !is_socket => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ));
        }
        Existing::ReplaceStale => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process listens on this socket",
                ));
            }
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// A user of the system's database, by name or number: (uid, primary gid, name). For the
/// owner of a socket, and for a process manager's `user` directive.
///
/// # Errors
///
/// `NotFound` naming the user when the database has no such user.
///
/// # Example
///
/// ```
/// let (uid, _gid, name) = fcgi::net::user("root").unwrap();
/// assert_eq!((uid, name.to_str().unwrap()), (0, "root"));
/// assert!(fcgi::net::user("no-such-user-here").is_err());
/// ```
pub fn user(user: &str) -> io::Result<(libc::uid_t, libc::gid_t, std::ffi::CString)> {
    crate::sys::lookup_user(user)
}

/// A group's gid, by name or number.
///
/// # Errors
///
/// `NotFound` naming the group when the database has no such group.
///
/// # Example
///
/// ```
/// assert_eq!(fcgi::net::group("0").unwrap(), 0);
/// assert!(fcgi::net::group("no-such-group-here").is_err());
/// ```
pub fn group(group: &str) -> io::Result<libc::gid_t> {
    crate::sys::lookup_gid(group)
}

/// Sets a bound Unix socket's mode, owner and group as `opts` say.
fn set_permissions(path: &Path, opts: &BindOptions) -> io::Result<()> {
    if let Some(mode) = opts.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    let uid = opts
        .owner
        .as_deref()
        .map(crate::sys::lookup_uid)
        .transpose()?;
    let gid = opts
        .group
        .as_deref()
        .map(crate::sys::lookup_gid)
        .transpose()?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(path, uid, gid)?;
    }
    Ok(())
}

/// Binds a listening stream socket on `addr` as `opts` say: TCP with `SO_REUSEADDR`; a
/// Unix socket after dealing with what is at its path ([`Existing`]), with its mode,
/// owner and group set before it listens. The socket is blocking.
///
/// # Errors
///
/// Any error of `socket(2)`, `bind(2)`, `chmod(2)`, `chown(2)` or `listen(2)`, an unknown
/// owner or group, a path longer than `sun_path` (`ENAMETOOLONG`), or what [`Existing`]
/// refuses. Every error names the address (`127.0.0.1:9000: Address already in use`);
/// [`os_error`] gives its `errno`.
///
/// # Example
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// use fcgi::net::{bind, Address, BindOptions};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("app.sock");
/// let fd = bind(&Address::Unix(path.clone()), &BindOptions::default().mode(0o660)).unwrap();
/// assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
/// # drop(fd);
/// ```
pub fn bind(addr: &Address, opts: &BindOptions) -> io::Result<OwnedFd> {
    bind_socket(addr, opts)
        .map(OwnedFd::from)
        .map_err(|e| named(addr, e))
}

fn bind_socket(addr: &Address, opts: &BindOptions) -> io::Result<Socket> {
    match addr {
        Address::Tcp(a) => {
            let socket = new_socket(Domain::for_address(*a), opts.cloexec)?;
            socket.set_reuse_address(true)?;
            if a.is_ipv6() {
                socket.set_only_v6(opts.v6_only)?;
            }
            socket.bind(&(*a).into())?;
            socket.listen(opts.backlog)?;
            Ok(socket)
        }
        Address::Unix(path) => {
            let sa = unix_sockaddr(path)?;
            clear_unix_path(path, opts.existing)?;
            let socket = new_socket(Domain::UNIX, opts.cloexec)?;
            socket.bind(&sa)?;
            if let Err(e) = set_permissions(path, opts) {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
            socket.listen(opts.backlog)?;
            Ok(socket)
        }
    }
}

/// How [`connect`] makes a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectOptions {
    /// Limit for the connect; `None` waits as long as the system does.
    pub(crate) timeout: Option<Duration>,
    /// Close-on-exec on the socket.
    pub(crate) cloexec: bool,
    /// `TCP_NODELAY` on a TCP connection.
    pub(crate) nodelay: bool,
    /// Leave the socket non-blocking (it is made so, and connects so, either way).
    pub(crate) nonblocking: bool,
}

/// Connects a stream socket to `addr`; the socket is blocking unless `opts.nonblocking`.
/// Errors are the system's (with their `errno`); the caller names the address.
pub(crate) fn connect(addr: &Address, opts: ConnectOptions) -> io::Result<Socket> {
    let (domain, sa) = match addr {
        Address::Tcp(a) => (Domain::for_address(*a), SockAddr::from(*a)),
        Address::Unix(p) => (Domain::UNIX, unix_sockaddr(p)?),
    };
    // Without a limit, a Unix socket's connect waits for room in a full backlog, where a
    // non-blocking one fails at once (EAGAIN): that wait needs a blocking connect.
    let wait_for_room = opts.timeout.is_none() && matches!(addr, Address::Unix(_));
    if !opts.nonblocking || wait_for_room {
        let socket = new_socket(domain, opts.cloexec)?;
        match opts.timeout {
            Some(t) => socket.connect_timeout(&sa, t)?,
            None => socket.connect(&sa)?,
        }
        if opts.nonblocking {
            socket.set_nonblocking(true)?;
        }
        return finish_connect(socket, addr, opts);
    }
    // Non-blocking from the start: no fcntl(2) before and after the connect.
    let ty = Type::STREAM.nonblocking();
    let socket = if opts.cloexec {
        Socket::new(domain, ty, None)?
    } else {
        Socket::new_raw(domain, ty, None)?
    };
    match socket.connect(&sa) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let ready = crate::sys::poll(socket.as_fd(), true, opts.timeout)?;
            // A connection being made is not readable: readable means it failed (a
            // FastCGI application never speaks first), and only then is SO_ERROR asked.
            if ready.readable || !ready.writable {
                if let Some(e) = socket.take_error()? {
                    return Err(e);
                }
            }
            if !ready.writable {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
        }
        Err(e) => return Err(e),
    }
    finish_connect(socket, addr, opts)
}

fn finish_connect(socket: Socket, addr: &Address, opts: ConnectOptions) -> io::Result<Socket> {
    if opts.nodelay && matches!(addr, Address::Tcp(_)) {
        socket.set_nodelay(true)?;
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonblocking_opts(timeout: Option<Duration>) -> ConnectOptions {
        ConnectOptions {
            timeout,
            cloexec: true,
            nodelay: true,
            nonblocking: true,
        }
    }

    #[test]
    fn a_nonblocking_connect_gives_a_connected_nonblocking_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = Address::Tcp(l.local_addr().unwrap());
        for timeout in [None, Some(Duration::from_secs(5))] {
            let s = connect(&addr, nonblocking_opts(timeout)).unwrap();
            assert_eq!(
                s.peer_addr().unwrap().as_socket(),
                Some(l.local_addr().unwrap())
            );
            assert!(s.nonblocking().unwrap());
            assert!(s.nodelay().unwrap());
            let (_, _) = l.accept().unwrap();
        }
    }

    #[test]
    fn a_nonblocking_connect_reports_a_refusal() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = Address::Tcp(l.local_addr().unwrap());
        drop(l);
        let e = connect(&addr, nonblocking_opts(Some(Duration::from_secs(5)))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn a_nonblocking_connect_times_out_when_the_backlog_is_full() {
        // A listener that never accepts, with the smallest queue: once it is full, the
        // kernel drops further SYNs and the connect waits for its limit.
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))
            .unwrap();
        l.listen(0).unwrap();
        let addr = Address::Tcp(l.local_addr().unwrap().as_socket().unwrap());
        let opts = nonblocking_opts(Some(Duration::from_millis(200)));
        let mut held = Vec::new();
        let err = loop {
            match connect(&addr, opts) {
                Ok(s) => held.push(s),
                Err(e) => break e,
            }
            assert!(held.len() < 8, "the queue never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }

    fn tcp(s: &str) -> Address {
        Address::Tcp(s.parse().unwrap())
    }
    fn unix(s: &str) -> Address {
        Address::Unix(s.into())
    }

    /// The server's documented syntax (`Address::parse`, `Server::bind`) gives what it
    /// gave before the parsers were merged.
    #[test]
    fn crate_syntax_server_forms() {
        for (s, want) in [
            ("127.0.0.1:9000", tcp("127.0.0.1:9000")),
            ("127.0.0.1:0", tcp("127.0.0.1:0")),
            ("[::1]:9000", tcp("[::1]:9000")),
            (":9000", tcp("0.0.0.0:9000")),
            ("*:9000", tcp("0.0.0.0:9000")),
            ("/run/app.sock", unix("/run/app.sock")),
            ("./app.sock", unix("./app.sock")),
            ("app.sock", unix("app.sock")),
            ("/tmp/a:b", unix("/tmp/a:b")),
        ] {
            assert_eq!(Address::parse(s).unwrap(), want, "{s}");
        }
        for bad in ["", "localhost:9000", "1.2.3.4:port", ":70000", "unix:"] {
            let e = Address::parse(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    /// The client's documented syntax (`"...".parse::<client::Address>()`).
    #[test]
    fn crate_syntax_client_forms() {
        for (s, want) in [
            ("127.0.0.1:9000", tcp("127.0.0.1:9000")),
            ("[::1]:9000", tcp("[::1]:9000")),
            ("unix:/run/php/fpm.sock", unix("/run/php/fpm.sock")),
            ("unix:relative.sock", unix("relative.sock")),
            ("/run/php/fpm.sock", unix("/run/php/fpm.sock")),
        ] {
            let a: Address = s.parse().unwrap();
            assert_eq!(a, want, "{s}");
            // Display parses back to the same address.
            assert_eq!(a.to_string().parse::<Address>().unwrap(), a, "{s}");
        }
        assert_eq!(
            unix("/run/x.sock").to_string(),
            "unix:/run/x.sock",
            "the client's display form"
        );
    }

    /// libfcgi's bind path syntax (reference §5.3), as `OS_CreateLocalIpcFd` read it.
    #[test]
    fn libfcgi_bind_syntax() {
        let p = |s: &[u8]| Address::parse_with(s, Syntax::LibfcgiBind).unwrap();
        assert_eq!(p(b":9000"), tcp("0.0.0.0:9000"));
        assert_eq!(p(b"*:9000"), tcp("0.0.0.0:9000"));
        assert_eq!(p(b"127.0.0.1:9000"), tcp("127.0.0.1:9000"));
        assert_eq!(p(b"[::1]:9001"), tcp("[::1]:9001"));
        // atoi into a short: wraps, stops at the first non-digit, skips blanks.
        assert_eq!(p(b":70000"), tcp("0.0.0.0:4464"));
        assert_eq!(p(b":9000abc"), tcp("0.0.0.0:9000"));
        assert_eq!(p(b": 9000"), tcp("0.0.0.0:9000"));
        // Port 0 (or no number): the whole string is a Unix path.
        assert_eq!(p(b"127.0.0.1:0"), unix("127.0.0.1:0"));
        assert_eq!(p(b"/tmp/a:b"), unix("/tmp/a:b"));
        assert_eq!(p(b"/tmp/s"), unix("/tmp/s"));
        assert_eq!(p(b"unix:/x"), unix("unix:/x"));
        assert_eq!(p(b"[::1]:0"), unix("[::1]:0"));
        // Not UTF-8 is fine in a path.
        assert_eq!(
            p(b"/tmp/\xff.sock"),
            Address::Unix(PathBuf::from(OsStr::from_bytes(b"/tmp/\xff.sock")))
        );
        // Host names: exactly one IPv4 address (localhost is 127.0.0.1 in /etc/hosts).
        assert_eq!(p(b"localhost:9000"), tcp("127.0.0.1:9000"));
        let e = Address::parse_with(b"no-such-host.invalid:9000", Syntax::LibfcgiBind);
        assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::EADDRNOTAVAIL));
        let e = Address::parse_with(b"[nonsense]:9000", Syntax::LibfcgiBind);
        assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::EINVAL));
    }

    /// libfcgi's connect syntax (`OS_FcgiConnect`, `cgi-fcgi -connect`).
    #[test]
    fn libfcgi_connect_syntax() {
        let p = |s: &[u8]| Address::parse_with(s, Syntax::LibfcgiConnect).unwrap();
        assert_eq!(p(b":9000"), tcp("127.0.0.1:9000"), "empty host: localhost");
        assert_eq!(p(b"localhost:9000"), tcp("127.0.0.1:9000"));
        assert_eq!(p(b"127.0.0.1:9000"), tcp("127.0.0.1:9000"));
        assert_eq!(p(b"[::1]:9000"), tcp("[::1]:9000"));
        assert_eq!(p(b"/run/app.sock"), unix("/run/app.sock"));
        assert_eq!(p(b"app.sock"), unix("app.sock"));
    }

    #[test]
    fn atoi_is_glibc_atoi_into_a_short() {
        for (s, n) in [
            (&b"9000"[..], 9000u16),
            (b"  +12", 12),
            (b"-1", 65535),
            (b"65536", 0),
            (b"99999999999999999999", (i64::MAX as i32) as i16 as u16),
            (b"x1", 0),
            (b"", 0),
        ] {
            assert_eq!(atoi_port(s), n, "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn bind_errors_name_the_address_and_keep_errno() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = Address::Tcp(taken.local_addr().unwrap());
        let e = bind(&addr, &BindOptions::default()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(os_error(&e), Some(libc::EADDRINUSE));
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{}: ", taken.local_addr().unwrap())),
            "{msg}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/app.sock");
        let e = bind(&Address::Unix(path.clone()), &BindOptions::default()).unwrap_err();
        assert_eq!(os_error(&e), Some(libc::ENOENT));
        assert!(
            e.to_string().starts_with(&path.display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn existing_files_at_a_unix_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"keep me").unwrap();
        let at = |p: &Path| Address::Unix(p.to_path_buf());
        // The server's policy never removes a file that is not a socket...
        let e = bind(&at(&file), &BindOptions::default()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        // ...nor does cgi-fcgi's...
        let opts = BindOptions::default().existing(Existing::ReplaceSocket);
        assert!(bind(&at(&file), &opts).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
        // ...libfcgi's unlinks it.
        let opts = BindOptions::default().existing(Existing::Unlink);
        let _fd = bind(&at(&file), &opts).unwrap();
        assert!(std::fs::symlink_metadata(&file)
            .unwrap()
            .file_type()
            .is_socket());

        // A live socket: the server refuses, cgi-fcgi replaces it.
        let live = dir.path().join("live.sock");
        let _l = bind(&at(&live), &BindOptions::default()).unwrap();
        let e = bind(&at(&live), &BindOptions::default()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let opts = BindOptions::default().existing(Existing::ReplaceSocket);
        let _again = bind(&at(&live), &opts).unwrap();
    }

    #[test]
    fn path_longer_than_sun_path_is_enametoolong() {
        let long = Address::Unix(PathBuf::from(format!("/tmp/{}", "x".repeat(120))));
        let e = bind(&long, &BindOptions::default()).unwrap_err();
        assert_eq!(os_error(&e), Some(libc::ENAMETOOLONG));
    }
}
