//! A static `fcgi-pm` pool of a C program on Debian's classic libfcgi behind real nginx
//! (the Debian package): the checks the interop tests run against the `echo` example
//! (params in nginx's order, POST bodies from 0 B to 8 MiB, a 32 KiB header), over TCP
//! and over a Unix socket.

mod support;

use std::time::Duration;

use support::http::{self, Echo};
use support::peers::{Nginx, NginxConf};
use support::pm::{self, App, Lib, Pm};
use support::{pattern, require_peer, temp_dir, Addr};

fn behind_nginx(unix: bool) {
    if require_peer("nginx").is_none() {
        return;
    }
    let dir = temp_dir();
    let Some(app) = App::build(dir.path(), Lib::Classic, "pm behind nginx") else {
        return;
    };
    let listen = if unix {
        Addr::unix_in(dir.path(), "pool.sock")
    } else {
        Addr::free_tcp()
    };
    // nginx runs as root here; the socket's default mode (0660, owner root) lets it in.
    let conf = pm::pool("www", &listen, &app, "pm = static\npm.max_children = 3\n");
    let m = Pm::start(dir.path(), &conf, listen.clone());
    m.wait_children(3, Duration::from_secs(20));
    let Some(nginx) = Nginx::start(dir.path(), &NginxConf::new(listen.clone())) else {
        return;
    };
    let addr = nginx.addr;

    let resp = http::get(addr, "/some/path?a=1&b=two").expect("GET");
    assert_eq!(
        resp.status,
        200,
        "GET: {}\n{}",
        resp.text(),
        nginx.proc.log()
    );
    let pid: u32 = resp.header("X-Pid").unwrap().parse().unwrap();
    assert!(
        m.children().contains(&pid),
        "answered by a child of the pool"
    );
    Echo::parse(&resp.body).assert_nginx_get(addr.port());

    for (i, len) in [0, 1, 64 * 1024, 8 * 1024 * 1024].into_iter().enumerate() {
        if let Err(e) = http::try_post_echo(addr, "/post", &pattern(len, i as u32)) {
            panic!(
                "{e}\nnginx log:\n{}\nfcgi-pm log:\n{}",
                nginx.proc.log(),
                m.proc.log()
            );
        }
    }

    http::assert_big_header_passes(addr);

    // Concurrent requests spread over the children.
    http::concurrent_posts(addr, 24, Duration::from_secs(30));
    assert_eq!(m.children().len(), 3);
}

#[test]
fn classic_pool_behind_nginx_over_tcp() {
    behind_nginx(false);
}

#[test]
fn classic_pool_behind_nginx_over_a_unix_socket() {
    behind_nginx(true);
}
