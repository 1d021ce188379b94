//! The CGI fallback: when the process was started as a plain CGI program, the same handler
//! runs once on the environment, stdin and stdout (RFC 3875), so one binary serves both
//! ways, through the same wrapper as in FastCGI mode (an error or a panic gives a 500).

use std::io;

use crate::protocol::{Params, Role};
use crate::server::Request;

/// Whether fd 0 is the listening socket a web server hands a FastCGI application: the
/// spec's test (2.2), `getpeername(0)` failing with `ENOTCONN`. A pipe, a file, a terminal,
/// a closed fd 0 or a connected socket mean CGI.
pub(crate) fn stdin_is_listen_socket() -> bool {
    crate::sys::is_unconnected_socket(0)
}

/// Runs `handler` once as a CGI program; returns its app status (the exit status a CGI
/// program should end with).
pub(crate) fn run_once<H>(handler: &H) -> io::Result<i32>
where
    H: Fn(&mut Request) -> io::Result<()> + Send + Sync,
{
    let mut params = Params::default();
    for (name, value) in std::env::vars_os() {
        use std::os::unix::ffi::OsStrExt;
        params.push(name.as_bytes(), value.as_bytes());
    }
    let role = match std::env::var("FCGI_ROLE").as_deref() {
        Ok("AUTHORIZER") => Role::Authorizer,
        Ok("FILTER") => Role::Filter,
        _ => Role::Responder,
    };
    let mut req = Request::local(
        role,
        params,
        Box::new(io::stdin()),
        crate::server::request_sink_stdout(),
        crate::server::request_sink_stderr(),
    );
    req.run(handler);
    let status = req.app_status();
    req.finish().0?;
    Ok(status)
}
