//! NOT COMPILED YET: needs the server of issue 2 (on main). After merging, move this file to
//! tests/client_own_server.rs. It passed in a trial merge of branch client with main (12:45).
//! The client against fcgi::Server with multiplexing on: MuxConnection and a learning Pool.
use fcgi::client::{get_values, Address, Backend, Config, MuxConnection, Pool, Request};
use std::io::{Read, Write};

#[test]
fn client_against_own_server() {
    let server = fcgi::Server::bind("127.0.0.1:0")
        .unwrap()
        .workers(4)
        .multiplex(true);
    let addr: Address = server.local_addrs()[0].parse().unwrap();
    let stop = server.shutdown_handle();
    let t = std::thread::spawn(move || {
        server.serve(|req| {
            let n = req
                .params()
                .find(|p| p.name == b"N")
                .map(|p| p.value.to_vec())
                .unwrap_or_default();
            let mut body = Vec::new();
            req.stdin().read_to_end(&mut body)?;
            write!(
                req.stdout(),
                "Content-Type: text/plain\r\n\r\nn={} len={}",
                String::from_utf8_lossy(&n),
                body.len()
            )
        })
    });
    let v = get_values(&addr, &Config::default()).unwrap();
    eprintln!("own server GET_VALUES: {v:?}");
    let conn = MuxConnection::connect(&addr, &Config::default(), 8).unwrap();
    let hs: Vec<_> = (0..8)
        .map(|i| {
            let conn = conn.clone();
            std::thread::spawn(move || {
                let data = vec![b'x'; 100_000 * i];
                let mut s = String::new();
                conn.send(Request::new().param("N", i.to_string()), &data[..])
                    .unwrap()
                    .read_to_string(&mut s)
                    .unwrap();
                assert_eq!(s, format!("n={i} len={}", 100_000 * i));
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let pool = Pool::builder()
        .backend(Backend::new(addr.clone()))
        .learn_backend_limits(true)
        .build();
    for i in 0..20 {
        let mut s = String::new();
        pool.send(Request::new().param("N", i.to_string()), &b"abc"[..])
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, format!("n={i} len=3"));
    }
    eprintln!("pool stats: {:?}", pool.stats());
    stop.shutdown();
    let _ = t.join();
}
