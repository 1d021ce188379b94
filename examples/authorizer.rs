//! An Authorizer (FastCGI role 2): allows requests that carry the header
//! `Authorization: Bearer let-me-in` and passes `AUTH_USER=demo` to the web server as a
//! `Variable-` header; everything else gets 401. Run as a Responder it answers 400.
//!
//! ```text
//! cargo run --example authorizer -- 127.0.0.1:9001
//! ```
use fcgi::Role;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    fcgi::Server::listen(addr.as_deref())?
        .env_overrides()
        .serve(|req| {
            if req.role() != Role::Authorizer {
                return req.respond(
                    400,
                    &[("Content-Type", "text/plain")],
                    b"this application is an authorizer\n",
                );
            }
            if req.param("HTTP_AUTHORIZATION") == Some("Bearer let-me-in") {
                req.authorize(&[("AUTH_USER", "demo")])
            } else {
                req.deny(
                    401,
                    &[
                        ("Content-Type", "text/plain"),
                        ("WWW-Authenticate", "Bearer"),
                    ],
                    b"unauthorized\n",
                )
            }
        })
}
