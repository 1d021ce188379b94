//! `fcgi-pm`: a process manager for any FastCGI program, configured like PHP-FPM.
//!
//! ```text
//! fcgi-pm [-y FILE] [-t] [-F | -D] [-p PREFIX] [-g PIDFILE] [-O] [-R]
//! ```
//!
//! It reads php-fpm's configuration syntax (a `[global]` section and one section per
//! pool, plus `command` and `args`), binds each pool's socket and keeps it across reloads,
//! and runs the pool's program with that socket on fd 0 (as spawn-fcgi, `cgi-fcgi -start`
//! and web servers do), under `pm = static`, `dynamic` or `ondemand` with php-fpm's
//! meanings. Children on this crate's library (Rust, or the libfcgi C ABI) report through
//! a shared-memory scoreboard; for the others the manager reads the kernel's socket
//! tables. Status and ping pages are answered by the manager on `pm.status_listen`.
//! Signals as php-fpm: SIGUSR2 reload, SIGQUIT graceful stop, SIGTERM/SIGINT fast stop,
//! SIGUSR1 reopen logs. See the README's "Deploying" section.

mod config;
mod listen;
mod log;
mod manager;
mod pool;
mod spawn;
mod status_server;

use std::process::ExitCode;

const USAGE: &str = "Usage: fcgi-pm [-y FILE] [-t] [-F | -D] [-p PREFIX] [-g PIDFILE] [-O] [-R]
  -y, --fpm-config FILE   the configuration file (default /etc/fcgi-pm.conf)
  -t, --test              test the configuration and exit
  -F, --nodaemonize       stay in the foreground (overrides daemonize)
  -D, --daemonize         go to the background (overrides daemonize)
  -p, --prefix DIR        resolve relative paths in the configuration from DIR
                          (default: the configuration file's directory)
  -g, --pid FILE          the pid file (overrides the pid directive)
  -O, --force-stderr      log to stderr, whatever error_log says
  -R, --allow-to-run-as-root   accepted for php-fpm compatibility
  -h, --help              this text
  -v, --version           the version";

/// Exit code of a configuration error (php-fpm's FPM_EXIT_CONFIG).
const EXIT_CONFIG: u8 = 78;

struct Args {
    file: std::path::PathBuf,
    test: bool,
    daemonize: Option<bool>,
    prefix: Option<std::path::PathBuf>,
    pid: Option<std::path::PathBuf>,
    force_stderr: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        file: "/etc/fcgi-pm.conf".into(),
        test: false,
        daemonize: None,
        prefix: None,
        pid: None,
        force_stderr: false,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let s = arg.to_string_lossy().to_string();
        let mut value = |name: &str| {
            it.next()
                .map(std::path::PathBuf::from)
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match s.as_str() {
            "-y" | "--fpm-config" | "-c" => a.file = value(&s)?,
            "-t" | "--test" | "-tt" => a.test = true,
            "-F" | "--nodaemonize" => a.daemonize = Some(false),
            "-D" | "--daemonize" => a.daemonize = Some(true),
            "-p" | "--prefix" => a.prefix = Some(value(&s)?),
            "-g" | "--pid" => a.pid = Some(value(&s)?),
            "-O" | "--force-stderr" => a.force_stderr = true,
            "-R" | "--allow-to-run-as-root" => {}
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "-v" | "--version" => {
                println!("fcgi-pm {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            _ => {
                if let Some(f) = s.strip_prefix("--fpm-config=") {
                    a.file = f.into();
                } else if let Some(p) = s.strip_prefix("--prefix=") {
                    a.prefix = Some(p.into());
                } else if let Some(p) = s.strip_prefix("--pid=") {
                    a.pid = Some(p.into());
                } else {
                    return Err(format!("unknown option '{s}'"));
                }
            }
        }
    }
    Ok(a)
}

fn set_limit(resource: libc::__rlimit_resource_t, v: u64) {
    let lim = libc::rlimit {
        rlim_cur: v as libc::rlim_t,
        rlim_max: v as libc::rlim_t,
    };
    // SAFETY: a plain struct passed by pointer.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        log::warning(&format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
}

/// Forks into the background; the parent waits until the child says it started (or why
/// not) and exits with that. Returns the write end of that report pipe in the child.
fn daemonize(keep_stderr: bool) -> std::io::Result<std::fs::File> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors we own.
    let (mut r, w) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: single-threaded here (no thread has been started yet).
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            drop(r);
            // SAFETY: plain calls in the child.
            unsafe {
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    if !keep_stderr {
                        libc::dup2(null, 2);
                    }
                    if null > 2 {
                        libc::close(null);
                    }
                }
            }
            Ok(w)
        }
        _ => {
            drop(w);
            let mut msg = String::new();
            let _ = r.read_to_string(&mut msg);
            if msg.trim() == "ok" {
                std::process::exit(0);
            }
            eprintln!(
                "fcgi-pm: ERROR: {}",
                if msg.is_empty() {
                    "the daemon died while starting"
                } else {
                    msg.trim()
                }
            );
            std::process::exit(i32::from(EXIT_CONFIG));
        }
    }
}

fn main() -> ExitCode {
    use std::io::Write;
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fcgi-pm: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    let load = config::Load {
        prefix: args.prefix.clone(),
    };
    let mut cfg = match config::load(&args.file, &load).and_then(|c| {
        config::check_system(&c)?;
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fcgi-pm: ERROR: {e}");
            eprintln!(
                "fcgi-pm: ERROR: configuration file {} test failed",
                args.file.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.test {
        eprintln!(
            "fcgi-pm: NOTICE: configuration file {} test is successful",
            args.file.display()
        );
        return ExitCode::SUCCESS;
    }
    if let Some(p) = &args.pid {
        cfg.global.pid = Some(p.clone());
    }
    let daemon = args.daemonize.unwrap_or(cfg.global.daemonize);
    let target = if args.force_stderr {
        config::LogTarget::Stderr
    } else if daemon && cfg.global.error_log == config::LogTarget::Stderr {
        config::LogTarget::File("/var/log/fcgi-pm.log".into())
    } else {
        cfg.global.error_log.clone()
    };
    cfg.global.error_log = target.clone();
    if let Err(e) = log::init(
        &target,
        cfg.global.log_level,
        &cfg.global.syslog_ident,
        cfg.global.syslog_facility,
    ) {
        eprintln!("fcgi-pm: ERROR: cannot open the error log: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Some(n) = cfg.global.rlimit_files {
        set_limit(libc::RLIMIT_NOFILE, n);
    }
    if let Some(l) = cfg.global.rlimit_core {
        set_limit(
            libc::RLIMIT_CORE,
            match l {
                config::Limit::Unlimited => libc::RLIM_INFINITY,
                config::Limit::Value(v) => v,
            },
        );
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && cfg.pools.iter().any(|p| p.user.is_none()) {
        log::warning("running as root: pools without 'user' run their children as root");
    }
    let listeners = match manager::Manager::bind_all(&cfg) {
        Ok(l) => l,
        Err(e) => {
            log::alert(&format!("{e}"));
            eprintln!("fcgi-pm: ERROR: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut report = None;
    if daemon {
        match daemonize(target == config::LogTarget::Stderr) {
            Ok(w) => report = Some(w),
            Err(e) => {
                eprintln!("fcgi-pm: ERROR: fork: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let fail = |report: &mut Option<std::fs::File>, msg: String| {
        log::alert(&msg);
        if let Some(w) = report.as_mut() {
            let _ = w.write_all(msg.as_bytes());
        } else {
            eprintln!("fcgi-pm: ERROR: {msg}");
        }
        ExitCode::from(EXIT_CONFIG)
    };
    if let Err(e) = manager::block_signals() {
        return fail(&mut report, format!("cannot block signals: {e}"));
    }
    if let Some(p) = &cfg.global.pid {
        if let Err(e) = std::fs::write(p, format!("{}", std::process::id())) {
            return fail(
                &mut report,
                format!("cannot write the pid file {}: {e}", p.display()),
            );
        }
    }
    let mut m = match manager::Manager::new(cfg, load, listeners) {
        Ok(m) => m,
        Err(e) => return fail(&mut report, format!("{e}")),
    };
    m.start();
    if let Some(mut w) = report.take() {
        let _ = w.write_all(b"ok");
    }
    ExitCode::from(m.run() as u8)
}
