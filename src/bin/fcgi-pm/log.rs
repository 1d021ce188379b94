//! The manager's error log (stderr, a file or syslog) in php-fpm's format
//! (`[30-May-2026 12:00:00] NOTICE: ...`), filtered by `log_level`, reopened on SIGUSR1;
//! and the pools' slow logs.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::{Level, LogTarget};

struct Logger {
    target: LogTarget,
    level: Level,
    file: Option<File>,
}

static LOGGER: Mutex<Option<Logger>> = Mutex::new(None);

/// `[dd-Mon-YYYY HH:MM:SS]` in local time.
pub fn stamp() -> String {
    // SAFETY: time, localtime_r and strftime on plain local buffers.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%d-%b-%Y %H:%M:%S".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Sets up (or replaces) the log. Errors opening a file are returned.
pub fn init(target: &LogTarget, level: Level, ident: &str, facility: i32) -> std::io::Result<()> {
    let file = match target {
        LogTarget::File(p) => Some(open(p)?),
        _ => None,
    };
    if *target == LogTarget::Syslog {
        // openlog keeps the pointer: leak one copy of the ident.
        let ident = std::ffi::CString::new(ident).unwrap_or_default();
        // SAFETY: the ident lives for the rest of the process.
        unsafe {
            libc::openlog(
                Box::leak(ident.into_boxed_c_str()).as_ptr(),
                libc::LOG_PID,
                facility,
            )
        };
    }
    *LOGGER.lock().unwrap_or_else(|e| e.into_inner()) = Some(Logger {
        target: target.clone(),
        level,
        file,
    });
    Ok(())
}

/// Reopens the log file (SIGUSR1, after log rotation).
pub fn reopen() {
    let mut g = LOGGER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = g.as_mut() {
        if let LogTarget::File(p) = &l.target {
            match open(p) {
                Ok(f) => l.file = Some(f),
                Err(e) => eprintln!("fcgi-pm: cannot reopen {}: {e}", p.display()),
            }
        }
    }
}

/// Writes one message at `level`.
pub fn log(level: Level, msg: &str) {
    let mut g = LOGGER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(l) = g.as_mut() else {
        eprintln!("{}: {msg}", level.name());
        return;
    };
    if level < l.level {
        return;
    }
    match &l.target {
        LogTarget::Syslog => {
            let prio = match level {
                Level::Debug => libc::LOG_DEBUG,
                Level::Notice => libc::LOG_NOTICE,
                Level::Warning => libc::LOG_WARNING,
                Level::Error => libc::LOG_ERR,
                Level::Alert => libc::LOG_ALERT,
            };
            let text =
                std::ffi::CString::new(format!("{}: {msg}", level.name()).replace('\0', " "))
                    .unwrap_or_default();
            // SAFETY: a "%s" format with one C string argument.
            unsafe { libc::syslog(prio, c"%s".as_ptr(), text.as_ptr()) };
        }
        LogTarget::File(_) => {
            if let Some(f) = l.file.as_mut() {
                let _ = writeln!(f, "[{}] {}: {msg}", stamp(), level.name());
            }
        }
        LogTarget::Stderr => {
            let _ = writeln!(std::io::stderr(), "[{}] {}: {msg}", stamp(), level.name());
        }
    }
}

/// A worker's output line written as it is (`decorate_workers_output = no`).
pub fn raw(msg: &str) {
    let mut g = LOGGER.lock().unwrap_or_else(|e| e.into_inner());
    match g.as_mut().map(|l| (&l.target, l.file.as_mut())) {
        Some((LogTarget::File(_), Some(f))) => {
            let _ = writeln!(f, "{msg}");
        }
        Some((LogTarget::Syslog, _)) => {
            drop(g);
            log(Level::Warning, msg);
        }
        _ => {
            let _ = writeln!(std::io::stderr(), "{msg}");
        }
    }
}

pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}
pub fn notice(msg: &str) {
    log(Level::Notice, msg);
}
pub fn warning(msg: &str) {
    log(Level::Warning, msg);
}
pub fn error(msg: &str) {
    log(Level::Error, msg);
}
pub fn alert(msg: &str) {
    log(Level::Alert, msg);
}

/// A pool's slow log file.
#[derive(Debug)]
pub struct SlowLog {
    path: PathBuf,
    file: Option<File>,
}

impl SlowLog {
    pub fn open(path: &Path) -> std::io::Result<SlowLog> {
        Ok(SlowLog {
            path: path.to_path_buf(),
            file: Some(open(path)?),
        })
    }

    pub fn reopen(&mut self) {
        self.file = open(&self.path).ok();
    }

    /// One entry: php-fpm's header line, then the request's params line.
    pub fn write(&mut self, pool: &str, pid: u32, script: &str, request: &str, elapsed_s: f64) {
        if let Some(f) = self.file.as_mut() {
            let _ = write!(
                f,
                "\n[{}]  [pool {pool}] pid {pid}\nscript_filename = {script}\nrequest = {request}\nelapsed = {elapsed_s:.3} s\n",
                stamp()
            );
        }
    }
}
