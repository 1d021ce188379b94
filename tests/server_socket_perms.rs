//! A Unix socket's mode, owner and group: by default what the umask gives (as with the
//! classic libfcgi), from `FCGI_SOCKET_MODE` / `FCGI_SOCKET_OWNER` / `FCGI_SOCKET_GROUP`,
//! or from `BindOptions` on the builder, which wins over the environment.
//!
//! The umask and the environment belong to the whole process, so this file holds one test
//! that changes them step by step (a test binary of its own: no other test runs beside it).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use fcgi::net::BindOptions;
use fcgi::Server;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn set_umask(m: libc::mode_t) -> libc::mode_t {
    // SAFETY: umask only swaps the process's file creation mask.
    unsafe { libc::umask(m) }
}

#[test]
fn unix_socket_mode_owner_and_group() {
    for v in ["FCGI_SOCKET_MODE", "FCGI_SOCKET_OWNER", "FCGI_SOCKET_GROUP"] {
        std::env::remove_var(v);
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    let path = sock.to_str().unwrap();
    let old = set_umask(0o002);

    // Default: the umask decides (0777 & ~0002), as the C libraries; the former fixed
    // 0660 shut out a web server running as another user.
    let s = Server::bind(path).unwrap();
    assert_eq!(mode(&sock), 0o775, "umask 002");
    drop(s);
    set_umask(0o077);
    let s = Server::bind(path).unwrap();
    assert_eq!(mode(&sock), 0o700, "umask 077");
    drop(s);

    // The environment.
    std::env::set_var("FCGI_SOCKET_MODE", "0666");
    let s = Server::bind(path).unwrap();
    assert_eq!(mode(&sock), 0o666, "FCGI_SOCKET_MODE=0666");
    drop(s);

    // The builder wins over the environment.
    let opts = BindOptions::from_env().unwrap().mode(0o660);
    let s = Server::bind_with(path, &opts).unwrap();
    assert_eq!(
        mode(&sock),
        0o660,
        "BindOptions::mode beats the environment"
    );
    drop(s);

    // A malformed mode is an error naming the variable, not a silent default.
    std::env::set_var("FCGI_SOCKET_MODE", "rw-rw----");
    let e = Server::bind(path).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("FCGI_SOCKET_MODE"), "{e}");
    std::env::remove_var("FCGI_SOCKET_MODE");
    set_umask(old);

    // Owner and group, numeric: our own ids (no privilege needed).
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    std::env::set_var("FCGI_SOCKET_OWNER", uid.to_string());
    std::env::set_var("FCGI_SOCKET_GROUP", gid.to_string());
    let s = Server::bind(path).unwrap();
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    drop(s);
    std::env::remove_var("FCGI_SOCKET_OWNER");
    std::env::remove_var("FCGI_SOCKET_GROUP");

    // By name, to another user, where we may (CI runs as root): php-fpm's
    // listen.owner/listen.group.
    if uid == 0 && users_exist(&["nobody"]) {
        let opts = BindOptions::default().owner("nobody").group("nogroup");
        let s = Server::bind_with(path, &opts).unwrap();
        let meta = std::fs::metadata(&sock).unwrap();
        assert_eq!(meta.uid(), id("-u", "nobody"));
        assert_eq!(meta.gid(), id("-g", "nobody"));
        drop(s);
    }

    // An unknown owner: an error naming the socket and the user; no socket left behind.
    let opts = BindOptions::default().owner("no-such-user-fcgi");
    let e = Server::bind_with(path, &opts).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(path) && msg.contains("no-such-user-fcgi"),
        "{msg}"
    );
    assert!(!sock.exists());
}

fn users_exist(names: &[&str]) -> bool {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    names
        .iter()
        .all(|n| passwd.lines().any(|l| l.starts_with(&format!("{n}:"))))
        && group.lines().any(|l| l.starts_with("nogroup:"))
}

/// `id -u NAME` / `id -g NAME`.
fn id(flag: &str, name: &str) -> u32 {
    let out = std::process::Command::new("id")
        .args([flag, name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
