//! # fcgi: FastCGI for Rust and C
//!
//! FastCGI keeps CGI's model (parameters, stdin, stdout, stderr, an exit status) but runs it
//! over one socket to a long-lived process. This crate is:
//!
//! - [`server`]: a blocking application server with a bounded worker pool, all three roles,
//!   keep-alive and multiplexed connections, and a CGI fallback;
//! - [`client`]: a blocking FastCGI client with a connection pool (PHP-FPM or any FastCGI
//!   application as the backend), used by the `cgi-fcgi` and `fcgi-bench` tools;
//! - [`protocol`]: the wire format, with no I/O: records, bodies, name-value pairs;
//! - [`net`]: addresses (the crate's syntax and libfcgi's), binding and connecting, shared
//!   by the server, the client, the C library and `cgi-fcgi`;
//! - [`pm`]: what the `fcgi-pm` process manager shares with its children and with Rust
//!   servers: the scoreboard, and the php-fpm-style status document.
//!
//! # Example
//!
//! ```no_run
//! use std::io::Write;
//! fcgi::Server::bind("127.0.0.1:9000")?.serve(|req| {
//!     write!(req.stdout(), "Content-Type: text/plain\r\n\r\nHello, World!")
//! })
//! # ; Ok::<(), std::io::Error>(())
//! ```
#![deny(rust_2018_idioms)]
#![cfg_attr(test, deny(warnings))]
#![warn(missing_docs, missing_debug_implementations)]

#[cfg(not(target_os = "linux"))]
compile_error!("fcgi is Linux-only: its engine is built on epoll, eventfd and timerfd");

mod cgi;
pub mod client;
mod engine;
pub mod net;
pub mod pm;
pub mod protocol;
pub mod server;
mod sys;

/// The checks of the fuzz target `machine` (the connection state machine, without
/// sockets), for `fuzz/` and the replay of its saved inputs. Not part of the API.
#[doc(hidden)]
pub fn __fuzz_machine(data: &[u8]) {
    engine::machine::fuzz_check(data)
}

// The libfcgi C ABI (libfcgi.so.0 / libfcgi.a); private, its symbols are exported anyway.
mod capi;

pub use protocol::Role;
pub use server::{Request, Server};

// The README's Rust examples are compiled as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
