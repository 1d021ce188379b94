//! # fcgi: FastCGI for Rust and C
//!
//! FastCGI keeps CGI's model (parameters, stdin, stdout, stderr, an exit status) but runs it
//! over one socket to a long-lived process. This crate is:
//!
//! - [`protocol`]: the wire format, with no I/O: records, bodies, name-value pairs;
//!
//! The application server, the C ABI and the client are built on that one codec.
#![deny(rust_2018_idioms)]
#![cfg_attr(test, deny(warnings))]
#![warn(missing_docs, missing_debug_implementations)]

pub mod client;
pub mod protocol;
