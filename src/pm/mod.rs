//! Process management support: what the `fcgi-pm` manager shares with the programs it
//! runs and with Rust servers.
//!
//! - [`scoreboard`]: the shared-memory page through which a child on this crate's library
//!   (Rust or the libfcgi C ABI) reports idle/busy, requests served and the current
//!   request to the manager, and learns its `pm.max_requests`;
//! - [`status`]: the pool status document in php-fpm's formats (text, JSON, XML, HTML,
//!   OpenMetrics/Prometheus), rendered from a plain snapshot;
//! - [`endpoint`]: answering status and ping requests over FastCGI, for the manager and
//!   for a Rust [`Server`](crate::Server).
//!
//! The manager itself is the `fcgi-pm` binary (`src/bin/fcgi-pm/`); see the README's
//! "Deploying" section.
//!
//! # Example
//!
//! ```
//! use fcgi::pm::status::{render, PoolStatus, Query};
//! let page = render(&PoolStatus::new("www", "static"), &Query::parse("openmetrics"));
//! assert!(page.body.ends_with("# EOF\n"));
//! ```

pub mod endpoint;
pub mod scoreboard;
pub mod status;
