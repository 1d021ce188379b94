//! `Hello, World!` as text/plain.
//!
//! ```text
//! cargo run --example hello -- 127.0.0.1:9000    # or [::1]:9000, or /path/to/app.sock
//! cargo run --example hello                      # fd 0 listening socket, or once as CGI
//! ```
use std::io::Write;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    fcgi::Server::listen(addr.as_deref())?
        .env_overrides()
        .serve(|req| {
            req.stdout()
                .write_all(b"Content-Type: text/plain\r\n\r\nHello, World!")
        })
}
