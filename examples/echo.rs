//! Echoes the request as text/plain: one `NAME=VALUE` line per param in the order received,
//! an empty line, then the request body byte for byte.
//!
//! The body is read to the end before the response starts: nginx stops sending a request
//! body once the response has begun (it drops its spooled copy), so an application that
//! answers while still reading a large body would wait forever for the rest.
//!
//! ```text
//! cargo run --example echo -- 127.0.0.1:9000
//! ```
use std::io::{self, Read, Write};

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
            let mut body = Vec::new();
            req.stdin().read_to_end(&mut body)?;
            req.stdout().write_all(&head)?;
            req.stdout().write_all(&body)
        })
}
