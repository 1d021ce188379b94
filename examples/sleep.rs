//! The Rust twin of `tests/c/engine_app.c`, for the engine measurements of issue 7
//! (`benches/engine.sh`, `tests/engine_*.rs`): reads the request's stdin to the end, sleeps
//! `SLEEP_MS` milliseconds (param, default 0), then answers `pid=<pid>` and `BODY_BYTES`
//! (param, default 0) bytes of `x`. The pid lets a client count requests per process.
//!
//! ```text
//! cargo run --example sleep -- 127.0.0.1:9000    # or a Unix socket path
//! FCGI_WORKERS=1 spawn-fcgi -F 4 -p 9000 -- target/debug/examples/sleep   # fd 0
//! ```
use std::io::{self, Write};
use std::time::Duration;

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1);
    let pid = std::process::id();
    fcgi::Server::listen(addr.as_deref())?
        .env_overrides()
        .serve(move |req| {
            let num = |name: &str| {
                req.param(name)
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let (ms, mut bytes) = (num("SLEEP_MS"), num("BODY_BYTES"));
            io::copy(req.stdin(), &mut io::sink())?;
            if ms > 0 {
                std::thread::sleep(Duration::from_millis(ms));
            }
            let out = req.stdout();
            write!(out, "Content-Type: text/plain\r\n\r\npid={pid}\n")?;
            let fill = [b'x'; 65536];
            while bytes > 0 {
                let n = bytes.min(fill.len() as u64) as usize;
                out.write_all(&fill[..n])?;
                bytes -= n as u64;
            }
            Ok(())
        })
}
