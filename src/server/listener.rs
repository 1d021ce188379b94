//! Listening sockets: TCP (IPv4 and IPv6), Unix paths, an inherited socket on fd 0, systemd
//! socket activation, and the `FCGI_WEB_SERVER_ADDRS` allow-list (spec 3.2).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use socket2::{SockRef, Socket};

use crate::net::{Address, BindOptions};

/// A listening socket the server accepts FastCGI connections on.
///
/// # Example
///
/// ```
/// let l = fcgi::server::Listener::bind("127.0.0.1:0").unwrap();
/// assert!(l.local_addr().unwrap().contains("127.0.0.1"));
/// ```
#[derive(Debug)]
pub enum Listener {
    /// TCP, IPv4 or IPv6.
    Tcp(TcpListener),
    /// A Unix socket; the path is removed again when the listener is dropped if this
    /// listener created it.
    Unix(UnixListener, Option<PathBuf>),
}

impl Listener {
    /// Binds `addr` (see [`Address::parse`]) with [`BindOptions::from_env`]: the default
    /// backlog, and a Unix socket's mode, owner and group from `FCGI_SOCKET_MODE`,
    /// `FCGI_SOCKET_OWNER` and `FCGI_SOCKET_GROUP` when set (else the umask decides, as
    /// with the classic libfcgi).
    ///
    /// # Errors
    ///
    /// A malformed address or `FCGI_SOCKET_MODE`; any error of `socket(2)`, `bind(2)`,
    /// `chmod(2)`, `chown(2)` or `listen(2)`, or a Unix path that exists and is not a stale
    /// socket. Errors name the address: `127.0.0.1:9000: Address already in use`.
    ///
    /// # Example
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("fcgi-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("app.sock");
    /// let l = fcgi::server::Listener::bind(path.to_str().unwrap()).unwrap();
    /// assert!(path.exists());
    /// drop(l);
    /// assert!(!path.exists());
    /// ```
    pub fn bind(addr: &str) -> io::Result<Listener> {
        Listener::bind_with(addr, &BindOptions::from_env()?)
    }

    /// Binds `addr` (see [`Address::parse`]) as `opts` say: backlog, and for a Unix socket
    /// its mode, owner and group (php-fpm's `listen.mode`, `listen.owner`,
    /// `listen.group`).
    ///
    /// # Errors
    ///
    /// As [`Listener::bind`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::os::unix::fs::PermissionsExt;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("app.sock");
    /// let opts = fcgi::net::BindOptions::default().mode(0o666);
    /// let l = fcgi::server::Listener::bind_with(path.to_str().unwrap(), &opts).unwrap();
    /// assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o666);
    /// # drop(l);
    /// ```
    pub fn bind_with(addr: &str, opts: &BindOptions) -> io::Result<Listener> {
        Listener::bind_address(&Address::parse(addr)?, opts)
    }

    /// Binds a parsed address as `opts` say.
    ///
    /// # Errors
    ///
    /// As [`Listener::bind`], without the parsing.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::net::{Address, BindOptions};
    /// let a = Address::Tcp("127.0.0.1:0".parse().unwrap());
    /// let l = fcgi::server::Listener::bind_address(&a, &BindOptions::default()).unwrap();
    /// # drop(l);
    /// ```
    pub fn bind_address(addr: &Address, opts: &BindOptions) -> io::Result<Listener> {
        let fd = crate::net::bind(addr, opts)?;
        Ok(match addr {
            Address::Tcp(_) => Listener::Tcp(TcpListener::from(fd)),
            Address::Unix(p) => Listener::Unix(UnixListener::from(fd), Some(p.clone())),
        })
    }

    /// Binds a TCP address with `SO_REUSEADDR` and the given backlog. An IPv6 address is
    /// bound IPv6-only, so `[::]:9000` and `0.0.0.0:9000` can coexist.
    ///
    /// # Errors
    ///
    /// Any error of `socket(2)`, `bind(2)` or `listen(2)`, naming the address.
    ///
    /// # Example
    ///
    /// ```
    /// let l = fcgi::server::Listener::bind_tcp("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    /// # drop(l);
    /// ```
    pub fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<Listener> {
        Listener::bind_address(
            &Address::Tcp(addr),
            &BindOptions::default().backlog(backlog),
        )
    }

    /// Binds a Unix socket at `path` and sets its permission `mode`. A stale socket file
    /// (one nobody listens on any more) is replaced; a live one is an `AddrInUse` error, and
    /// a path that is not a socket is never removed.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if another process listens on `path`, `AlreadyExists` if it is not a
    /// socket, or any error of `bind(2)`, `listen(2)` or `chmod(2)`; each names the path.
    ///
    /// # Example
    ///
    /// ```
    /// use std::os::unix::fs::PermissionsExt;
    /// let path = std::env::temp_dir().join(format!("fcgi-doc-mode-{}.sock", std::process::id()));
    /// let l = fcgi::server::Listener::bind_unix(&path, 0o600, 16).unwrap();
    /// assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    /// # drop(l);
    /// ```
    pub fn bind_unix(path: &Path, mode: u32, backlog: i32) -> io::Result<Listener> {
        Listener::bind_address(
            &Address::Unix(path.to_path_buf()),
            &BindOptions::default().mode(mode).backlog(backlog),
        )
    }

    /// Takes over an already listening socket by descriptor, as handed over on fd 0 by
    /// spawn-fcgi, `cgi-fcgi -start` and web servers that spawn applications (spec 2.2).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `fd` is not a listening stream socket.
    ///
    /// # Safety
    ///
    /// `fd` must be an open descriptor that nothing else owns: the listener closes it.
    ///
    /// # Example
    ///
    /// ```
    /// use std::os::fd::IntoRawFd;
    /// let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let l = unsafe { fcgi::server::Listener::from_raw_fd(tcp.into_raw_fd()) }.unwrap();
    /// # drop(l);
    /// ```
    pub unsafe fn from_raw_fd(fd: RawFd) -> io::Result<Listener> {
        // SAFETY: the caller hands over ownership of an open descriptor.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        Listener::from_socket(socket)
    }

    fn from_socket(socket: Socket) -> io::Result<Listener> {
        let not_listening = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "descriptor is not a listening stream socket",
            )
        };
        if !socket.is_listener().map_err(|_| not_listening())? {
            return Err(not_listening());
        }
        let fd: OwnedFd = socket.into();
        let family = SockRef::from(&fd).local_addr()?;
        if family.is_unix() {
            Ok(Listener::Unix(UnixListener::from(fd), None))
        } else {
            Ok(Listener::Tcp(TcpListener::from(fd)))
        }
    }

    /// The listening socket inherited on fd 0, if fd 0 is one (spec 2.2: `getpeername(0)`
    /// fails with `ENOTCONN` for a FastCGI application). Takes ownership of fd 0.
    ///
    /// # Example
    ///
    /// ```no_run
    /// if let Some(l) = fcgi::server::Listener::inherited() {
    ///     println!("started by a web server on {:?}", l.local_addr());
    /// }
    /// ```
    pub fn inherited() -> Option<Listener> {
        if !crate::cgi::stdin_is_listen_socket() {
            return None;
        }
        // SAFETY: fd 0 is open (getpeername answered ENOTCONN) and, being a listening socket,
        // is not the process's standard input in any useful sense; we take it over.
        unsafe { Listener::from_raw_fd(0) }.ok()
    }

    /// The sockets passed by systemd socket activation (`LISTEN_PID` equal to this process,
    /// `LISTEN_FDS` descriptors from fd 3). The variables are removed from the environment
    /// so children do not inherit them.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(fcgi::server::Listener::from_systemd().is_empty());
    /// ```
    pub fn from_systemd() -> Vec<Listener> {
        let pid_ok = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| p == std::process::id());
        let count = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse::<i32>().ok())
            .unwrap_or(0);
        if !pid_ok || count <= 0 {
            return Vec::new();
        }
        // Called before the server starts its threads, as systemd's own sd_listen_fds does.
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
        (3..3 + count)
            .filter(|&fd| crate::sys::fd_is_open(fd))
            .filter_map(|fd| {
                // SAFETY: systemd passed these descriptors to this process (LISTEN_PID),
                // and the descriptor is open.
                let l = unsafe { Listener::from_raw_fd(fd) }.ok()?;
                // set CLOEXEC: children must not inherit the listening socket
                let _ = SockRef::from(&l).set_cloexec(true);
                Some(l)
            })
            .collect()
    }

    /// A printable local address (`127.0.0.1:9000`, `[::1]:9000` or the socket path).
    ///
    /// # Errors
    ///
    /// Any error of `getsockname(2)`.
    ///
    /// # Example
    ///
    /// ```
    /// let l = fcgi::server::Listener::bind("[::1]:0").unwrap();
    /// assert!(l.local_addr().unwrap().starts_with("[::1]:"));
    /// ```
    pub fn local_addr(&self) -> io::Result<String> {
        match self {
            Listener::Tcp(l) => Ok(l.local_addr()?.to_string()),
            Listener::Unix(l, _) => Ok(l
                .local_addr()?
                .as_pathname()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(unnamed unix socket)".into())),
        }
    }

    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(on),
            Listener::Unix(l, _) => l.set_nonblocking(on),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l, _) => l.as_fd(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(path)) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The `FCGI_WEB_SERVER_ADDRS` allow-list: a comma-separated list of IPv4 or IPv6 addresses
/// (spec 3.2), the one rule for every entry point (the Rust server, [`Acceptor`], and
/// the C library's `FCGX_Accept_r` and `OS_Accept`). When set, a TCP peer not in the list
/// is dropped at once; Unix-socket peers are not concerned (the list names TCP peers, as
/// in libfcgi). IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) and their IPv4 form are the
/// same address, in the list and in the peer.
///
/// [`Acceptor`]: crate::server::Acceptor
///
/// # Example
///
/// ```
/// use fcgi::server::AllowList;
/// let list = AllowList::parse("127.0.0.1, ::1").unwrap();
/// assert!(list.allows(Some("127.0.0.1".parse().unwrap())));
/// assert!(list.allows(Some("::ffff:127.0.0.1".parse().unwrap())));
/// assert!(!list.allows(Some("10.1.2.3".parse().unwrap())));
/// let mapped = AllowList::parse("::ffff:127.0.0.1").unwrap();
/// assert!(mapped.allows(Some("127.0.0.1".parse().unwrap())));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    addrs: Vec<IpAddr>,
}

/// An address in the form the list compares: IPv4-mapped IPv6 as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl AllowList {
    /// Parses a comma-separated list; blanks around entries are ignored, empty entries are
    /// skipped.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming the entry that is not an IP address, or saying that the list
    /// names no address at all (`" , "`): such a list would drop every TCP peer, so it is
    /// refused rather than applied. (Unset, or set to the empty string, means no list.)
    ///
    /// # Example
    ///
    /// ```
    /// assert!(fcgi::server::AllowList::parse("localhost").is_err());
    /// assert!(fcgi::server::AllowList::parse(" , ").is_err());
    /// ```
    pub fn parse(s: &str) -> io::Result<AllowList> {
        let mut addrs = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let ip: IpAddr = item.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("FCGI_WEB_SERVER_ADDRS: {item:?} is not an IP address"),
                )
            })?;
            addrs.push(canonical(ip));
        }
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("FCGI_WEB_SERVER_ADDRS: {s:?} names no address (it would drop every peer)"),
            ));
        }
        Ok(AllowList { addrs })
    }

    /// The list from the environment variable `FCGI_WEB_SERVER_ADDRS`, or `None` when it is
    /// unset or empty (everyone allowed).
    ///
    /// # Errors
    ///
    /// As [`AllowList::parse`]: a malformed list, or one without an address, is an error,
    /// never "allow all" nor "drop all".
    ///
    /// # Example
    ///
    /// ```
    /// let _ = fcgi::server::AllowList::from_env();
    /// ```
    pub fn from_env() -> io::Result<Option<AllowList>> {
        match std::env::var("FCGI_WEB_SERVER_ADDRS") {
            Ok(v) if !v.is_empty() => AllowList::parse(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// Whether a TCP peer with this address may talk to the application. `None` stands
    /// for a peer without an IP address (a Unix socket's): the list does not concern it,
    /// so it is allowed.
    ///
    /// # Example
    ///
    /// ```
    /// let list = fcgi::server::AllowList::parse("::1").unwrap();
    /// assert!(list.allows(Some("::1".parse().unwrap())));
    /// assert!(!list.allows(Some("127.0.0.1".parse().unwrap())));
    /// assert!(list.allows(None));
    /// ```
    pub fn allows(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            None => true,
            Some(ip) => self.addrs.contains(&canonical(ip)),
        }
    }
}
