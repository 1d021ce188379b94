//! Echoes the request as text/plain: one `NAME=VALUE` line per param in the order received,
//! an empty line, then the request body byte for byte.
//!
//! ```text
//! cargo run --example echo -- 127.0.0.1:9000
//! ```
use std::io::{self, Write};

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1);
    fcgi::Server::listen(addr.as_deref())?
        .env_overrides()
        .serve(|req| {
            let mut head = b"Content-Type: text/plain\r\n\r\n".to_vec();
            for p in req.params() {
                head.extend_from_slice(p.name);
                head.push(b'=');
                head.extend_from_slice(p.value);
                head.push(b'\n');
            }
            head.push(b'\n');
            req.stdout().write_all(&head)?;
            let (stdin, stdout, _) = req.split();
            io::copy(stdin, stdout)?;
            Ok(())
        })
}
