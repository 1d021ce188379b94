//! A Filter (FastCGI role 3): reads stdin, then the file data (`FCGI_DATA`) and answers it
//! upper-cased as text/plain, followed by a line saying whether `FCGI_DATA_LENGTH` matched.
//! Run as a Responder it upper-cases the request body instead.
//!
//! ```text
//! cargo run --example filter -- 127.0.0.1:9002
//! ```
use std::io::{self, Read, Write};

use fcgi::Role;

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1);
    fcgi::Server::listen(addr.as_deref())?
        .env_overrides()
        .serve(|req| {
            let mut stdin = Vec::new();
            req.stdin().read_to_end(&mut stdin)?;
            let mut data = Vec::new();
            let input = if req.role() == Role::Filter {
                req.data().read_to_end(&mut data)?;
                &data
            } else {
                &stdin
            };
            let expected = req
                .param("FCGI_DATA_LENGTH")
                .and_then(|v| v.parse::<usize>().ok());
            let mut body = input.to_ascii_uppercase();
            match expected {
                Some(n) if n == input.len() => body.extend_from_slice(b"\n[data complete]\n"),
                Some(n) => body.extend_from_slice(
                    format!("\n[data incomplete: {} of {n} bytes]\n", input.len()).as_bytes(),
                ),
                None => {}
            }
            req.write_head(200, &[("Content-Type", "text/plain")])?;
            req.stdout().write_all(&body)
        })
}
