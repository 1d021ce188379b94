//! The CGI fallback: when the process was started as a plain CGI program, the same handler
//! runs once on the environment, stdin and stdout (RFC 3875), so one binary serves both ways.

use std::io;

use crate::protocol::{Params, Role};
use crate::server::Request;

/// Whether fd 0 is the listening socket a web server hands a FastCGI application: the
/// spec's test (2.2), `getpeername(0)` failing with `ENOTCONN`. A pipe, a file, a terminal,
/// a closed fd 0 or a connected socket mean CGI.
pub(crate) fn stdin_is_listen_socket() -> bool {
    crate::sys::is_unconnected_socket(0)
}

/// Runs `handler` once as a CGI program; exits the process with the app status when it is
/// not 0.
pub(crate) fn run_once<H>(handler: &H) -> io::Result<()>
where
    H: Fn(&mut Request) -> io::Result<()>,
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
    let result = handler(&mut req);
    let status = req.app_status();
    let (flushed, _, _) = req.finish();
    result?;
    flushed?;
    if status != 0 {
        std::process::exit(status);
    }
    Ok(())
}
