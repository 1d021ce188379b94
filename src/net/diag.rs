//! The kernel's view of listening sockets, as `ss` reads it: the accept queue of a
//! listener (`TCP_INFO` for TCP, netlink sock_diag for Unix sockets), and the inodes of the
//! connections a listening socket has handed out (to tell which process holds one, for
//! programs that report nothing themselves). Linux only.
//!
//! # Example
//!
//! ```
//! let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let (waiting, backlog) = fcgi::net::diag::listen_queue(std::os::fd::AsFd::as_fd(&l)).unwrap();
//! assert_eq!(waiting, 0);
//! assert!(backlog > 0);
//! ```

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::Address as Local;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_RQLEN: u16 = 4;
const TCP_ESTABLISHED: u32 = 1;
const TCP_CLOSE_WAIT: u32 = 8;
const TCP_LISTEN: u32 = 10;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct UnixDiagReq {
    family: u8,
    protocol: u8,
    pad: u16,
    states: u32,
    ino: u32,
    show: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagSockId {
    sport: u16,
    dport: u16,
    src: [u32; 4],
    dst: [u32; 4],
    iface: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

/// Sends one request and collects the payloads of the answers.
fn query<T: Copy>(req: &T, dump: bool) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: a plain socket call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let hdr_len = std::mem::size_of::<NlMsgHdr>();
    let body_len = std::mem::size_of::<T>();
    let hdr = NlMsgHdr {
        len: (hdr_len + body_len) as u32,
        kind: SOCK_DIAG_BY_FAMILY,
        flags: NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 },
        seq: 1,
        pid: 0,
    };
    let mut msg = Vec::with_capacity(hdr_len + body_len);
    // SAFETY: both are plain #[repr(C)] structs read as bytes.
    unsafe {
        msg.extend_from_slice(std::slice::from_raw_parts(
            std::ptr::addr_of!(hdr).cast::<u8>(),
            hdr_len,
        ));
        msg.extend_from_slice(std::slice::from_raw_parts(
            (req as *const T).cast::<u8>(),
            body_len,
        ));
    }
    // SAFETY: sending a buffer we own to the kernel (destination: the default, kernel).
    let sent = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receiving into a buffer we own.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let data = &buf[..n as usize];
        let mut off = 0;
        while off + hdr_len <= data.len() {
            let len = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(data[off + 4..off + 6].try_into().unwrap());
            if len < hdr_len || off + len > data.len() {
                return Err(io::Error::other("sock_diag: malformed answer"));
            }
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code = i32::from_ne_bytes(
                        data[off + hdr_len..off + hdr_len + 4]
                            .try_into()
                            .unwrap_or([0; 4]),
                    );
                    if code == 0 {
                        return Ok(out);
                    }
                    return Err(io::Error::from_raw_os_error(-code));
                }
                _ => out.push(data[off + hdr_len..off + len].to_vec()),
            }
            off += (len + 3) & !3;
        }
        if !dump && !out.is_empty() {
            return Ok(out);
        }
    }
}

/// Netlink attributes after a fixed part of `skip` bytes: (type, payload).
fn attrs(msg: &[u8], skip: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = (skip + 3) & !3;
    while off + 4 <= msg.len() {
        let len = u16::from_ne_bytes([msg[off], msg[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([msg[off + 2], msg[off + 3]]);
        if len < 4 || off + len > msg.len() {
            break;
        }
        out.push((kind, &msg[off + 4..off + len]));
        off += (len + 3) & !3;
    }
    out
}

/// (connections waiting to be accepted, backlog) of a listening socket, from the kernel:
/// `TCP_INFO` on a TCP listener (`tcpi_unacked`, `tcpi_sacked`), sock_diag for a Unix one.
/// `None` when the kernel does not say (not a listening socket, no sock_diag).
///
/// # Example
///
/// ```
/// let l = std::os::unix::net::UnixListener::bind(
///     std::env::temp_dir().join(format!("fcgi-diag-doc-{}.sock", std::process::id())),
/// ).unwrap();
/// let q = fcgi::net::diag::listen_queue(std::os::fd::AsFd::as_fd(&l));
/// assert_eq!(q.map(|(waiting, _)| waiting), Some(0));
/// # std::fs::remove_file(l.local_addr().unwrap().as_pathname().unwrap()).unwrap();
/// ```
pub fn listen_queue(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    if let Some(q) = tcp_queue(fd) {
        return Some(q);
    }
    unix_queue(socket_inode(fd)?)
}

/// The inode of a socket (`fstat`), as the kernel's socket tables name it.
///
/// # Example
///
/// ```
/// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// assert!(fcgi::net::diag::socket_inode(std::os::fd::AsFd::as_fd(&l)).is_some());
/// ```
pub fn socket_inode(fd: BorrowedFd<'_>) -> Option<u64> {
    // SAFETY: fstat into a zeroed plain struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd.as_raw_fd(), &mut st) == 0).then_some(st.st_ino)
    }
}

fn tcp_queue(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed tcp_info.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::addr_of_mut!(info).cast(),
            &mut len,
        );
        // For a listening socket the kernel reports the accept queue in tcpi_unacked and
        // the backlog in tcpi_sacked.
        (rc == 0 && u32::from(info.tcpi_state) == TCP_LISTEN)
            .then_some((u64::from(info.tcpi_unacked), u64::from(info.tcpi_sacked)))
    }
}

/// (connections waiting to be accepted, backlog) of the Unix listening socket `inode`.
fn unix_queue(inode: u64) -> Option<(u64, u64)> {
    let req = UnixDiagReq {
        family: libc::AF_UNIX as u8,
        states: 1 << TCP_LISTEN,
        ino: inode as u32,
        show: UDIAG_SHOW_RQLEN,
        cookie: [u32::MAX, u32::MAX],
        ..UnixDiagReq::default()
    };
    let answers = query(&req, false).ok()?;
    // unix_diag_msg: family, type, state, pad, ino (u32), cookie (2 x u32) = 16 bytes.
    for msg in &answers {
        for (kind, payload) in attrs(msg, 16) {
            if kind == UNIX_DIAG_RQLEN && payload.len() >= 8 {
                let rq = u32::from_ne_bytes(payload[0..4].try_into().ok()?);
                let wq = u32::from_ne_bytes(payload[4..8].try_into().ok()?);
                return Some((u64::from(rq), u64::from(wq)));
            }
        }
    }
    None
}

/// Inodes of the open connections accepted from the listener at `local`.
///
/// # Errors
///
/// Netlink errors (no sock_diag).
///
/// # Example
///
/// ```no_run
/// let addr = fcgi::net::Address::parse("127.0.0.1:9000").unwrap();
/// let held = fcgi::net::diag::connection_inodes(&addr).unwrap();
/// println!("{} connections open", held.len());
/// ```
pub fn connection_inodes(local: &Local) -> io::Result<HashSet<u64>> {
    match local {
        Local::Tcp(addr) => {
            let mut set = HashSet::new();
            for family in [libc::AF_INET, libc::AF_INET6] {
                let req = InetDiagReqV2 {
                    family: family as u8,
                    protocol: libc::IPPROTO_TCP as u8,
                    states: (1 << TCP_ESTABLISHED) | (1 << TCP_CLOSE_WAIT),
                    ..InetDiagReqV2::default()
                };
                for msg in query(&req, true)? {
                    // inet_diag_msg: family, state, timer, retrans (4), sockid (48),
                    // expires, rqueue, wqueue, uid, inode (5 x u32).
                    if msg.len() < 72 {
                        continue;
                    }
                    let sport = u16::from_be_bytes([msg[4], msg[5]]);
                    if sport != addr.port() {
                        continue;
                    }
                    if !addr.ip().is_unspecified() && !src_matches(&msg, addr.ip()) {
                        continue;
                    }
                    let inode = u32::from_ne_bytes(msg[68..72].try_into().unwrap());
                    if inode != 0 {
                        set.insert(u64::from(inode));
                    }
                }
            }
            Ok(set)
        }
        Local::Unix(path) => unix_connections(path),
    }
}

fn src_matches(msg: &[u8], ip: std::net::IpAddr) -> bool {
    let family = msg[0] as i32;
    let src = &msg[8..24];
    match ip {
        std::net::IpAddr::V4(a) => {
            (family == libc::AF_INET && src[..4] == a.octets())
                || (family == libc::AF_INET6 && src == a.to_ipv6_mapped().octets())
        }
        std::net::IpAddr::V6(a) => family == libc::AF_INET6 && src == a.octets(),
    }
}

fn unix_connections(path: &Path) -> io::Result<HashSet<u64>> {
    use std::os::unix::ffi::OsStrExt;
    let want = path.as_os_str().as_bytes();
    let req = UnixDiagReq {
        family: libc::AF_UNIX as u8,
        states: 1 << TCP_ESTABLISHED,
        show: UDIAG_SHOW_NAME,
        ..UnixDiagReq::default()
    };
    let mut set = HashSet::new();
    for msg in query(&req, true)? {
        if msg.len() < 16 {
            continue;
        }
        let inode = u32::from_ne_bytes(msg[4..8].try_into().unwrap());
        for (kind, payload) in attrs(&msg, 16) {
            let name = payload.split(|b| *b == 0).next().unwrap_or(&[]);
            if kind == UNIX_DIAG_NAME && name == want {
                set.insert(u64::from(inode));
            }
        }
    }
    Ok(set)
}

/// The socket inodes among the open descriptors of process `pid` (from `/proc/PID/fd`).
///
/// # Example
///
/// ```
/// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let mine = fcgi::net::diag::process_socket_inodes(std::process::id());
/// let ino = fcgi::net::diag::socket_inode(std::os::fd::AsFd::as_fd(&l)).unwrap();
/// assert!(mine.contains(&ino));
/// ```
pub fn process_socket_inodes(pid: u32) -> HashSet<u64> {
    let mut set = HashSet::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return set;
    };
    for entry in dir.flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let t = target.to_string_lossy();
            if let Some(n) = t
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
            {
                set.insert(n);
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn inode_of(fd: std::os::fd::BorrowedFd<'_>) -> u64 {
        socket_inode(fd).unwrap()
    }

    #[test]
    fn tcp_connections_of_a_listener_and_who_holds_them() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let (s, _) = l.accept().unwrap();
        let set = connection_inodes(&Local::Tcp(addr)).unwrap();
        let ino = inode_of(s.as_fd());
        assert!(set.contains(&ino), "{set:?} lacks {ino}");
        assert_eq!(
            set.len(),
            1,
            "only the server side of the connection: {set:?}"
        );
        assert!(process_socket_inodes(std::process::id()).contains(&ino));
        drop(s);
        let set = connection_inodes(&Local::Tcp(addr)).unwrap();
        assert!(!set.contains(&ino));
    }

    #[test]
    fn unix_queue_and_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let ino = inode_of(l.as_fd());
        assert_eq!(unix_queue(ino).map(|q| q.0), Some(0));
        let _a = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let _b = std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert_eq!(unix_queue(ino).map(|q| q.0), Some(2));
        let (s, _) = l.accept().unwrap();
        assert_eq!(unix_queue(ino).map(|q| q.0), Some(1));
        let set = connection_inodes(&Local::Unix(path.clone())).unwrap();
        assert!(set.contains(&inode_of(s.as_fd())), "{set:?}");
    }
}
