//! Starting one child: the pool's listening socket on fd 0, the scoreboard descriptor named
//! in the environment, stdout/stderr to /dev/null or to pipes (`catch_workers_output`),
//! the pool's environment, limits, priority, directory and credentials (in php-fpm's
//! order: limits, chdir, then groups, group, user).

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};

use fcgi::pm::scoreboard::{Board, ENV_VAR};

use crate::config::{Limit, Pool};

/// Credentials to switch to in the child.
#[derive(Debug, Clone)]
pub struct Creds {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
}

/// Everything needed to start children of one pool, worked out once per configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub clear_env: bool,
    pub env: Vec<(OsString, OsString)>,
    pub creds: Option<Creds>,
    pub chdir: Option<CString>,
    pub rlimit_files: Option<u64>,
    pub rlimit_core: Option<Limit>,
    pub priority: Option<i32>,
    pub catch_output: bool,
    pub max_requests: u64,
}

/// A started child.
pub struct Spawned {
    pub child: Child,
    pub board: Option<Board>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// A user by name or number: (uid, primary gid, name).
pub fn lookup_user(u: &str) -> Result<(libc::uid_t, libc::gid_t, CString), String> {
    fcgi::net::user(u).map_err(|_| format!("cannot get uid for user '{u}'"))
}

/// A group by name or number.
pub fn lookup_group(g: &str) -> Result<libc::gid_t, String> {
    fcgi::net::group(g).map_err(|_| format!("cannot get gid for group '{g}'"))
}

/// The supplementary groups of `user` (initgroups' list), worked out in the manager since
/// the child may only make async-signal-safe calls before exec.
fn group_list(user: &CString, gid: libc::gid_t) -> Vec<libc::gid_t> {
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        // SAFETY: `groups` has room for `n` entries; getgrouplist updates `n`.
        let rc = unsafe { libc::getgrouplist(user.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n as usize);
            return groups;
        }
        if n > 65536 {
            return vec![gid];
        }
        n = n.max(64) * 2;
    }
}

/// Works out a pool's plan. `warn` gets notices (credentials ignored when not root).
pub fn plan(p: &Pool, warn: &mut dyn FnMut(String)) -> Result<Plan, String> {
    let program = crate::config::resolve_command(p.command())?;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let creds = match (&p.user, &p.group) {
        (None, None) => None,
        _ if !root => {
            warn(format!(
                "[pool {}] 'user' and 'group' are ignored: fcgi-pm is not running as root",
                p.name
            ));
            None
        }
        (Some(u), g) => {
            let (uid, pgid, name) = lookup_user(u)?;
            let gid = match g {
                Some(g) => lookup_group(g)?,
                None => pgid,
            };
            let mut groups = group_list(&name, pgid);
            if !groups.contains(&gid) {
                groups.push(gid);
            }
            Some(Creds { uid, gid, groups })
        }
        (None, Some(g)) => {
            let gid = lookup_group(g)?;
            // SAFETY: getuid has no preconditions.
            let uid = unsafe { libc::getuid() };
            Some(Creds {
                uid,
                gid,
                groups: vec![gid],
            })
        }
    };
    let mut env = Vec::new();
    for (k, v) in &p.env {
        // php-fpm: a value starting with '$' is taken from the manager's environment.
        let value = match v.strip_prefix('$') {
            Some(name) if !name.is_empty() => std::env::var_os(name).unwrap_or_default(),
            _ => OsString::from(v),
        };
        env.push((OsString::from(k), value));
    }
    if let Some((raw, _)) = &p.allowed_clients {
        let list: Vec<&str> = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        env.push(("FCGI_WEB_SERVER_ADDRS".into(), list.join(",").into()));
    }
    let chdir = match &p.chdir {
        Some(d) => Some(
            CString::new(std::os::unix::ffi::OsStrExt::as_bytes(d.as_os_str()))
                .map_err(|_| "chdir contains a NUL byte".to_string())?,
        ),
        None => None,
    };
    Ok(Plan {
        program,
        args: p.args.clone(),
        clear_env: p.clear_env,
        env,
        creds,
        chdir,
        rlimit_files: p.rlimit_files,
        rlimit_core: p.rlimit_core,
        priority: p.process_priority,
        catch_output: p.catch_workers_output,
        max_requests: p.max_requests,
    })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, v: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: v as libc::rlim_t,
        rlim_max: v as libc::rlim_t,
    };
    // SAFETY: a plain struct passed by pointer.
    check(unsafe { libc::setrlimit(resource, &lim) })
}

/// Starts one child of `plan` with `listen` as its fd 0.
pub fn spawn(plan: &Plan, listen: BorrowedFd<'_>, pool: &str) -> io::Result<Spawned> {
    let board = Board::create(plan.max_requests).ok();
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args);
    if plan.clear_env {
        cmd.env_clear();
    }
    cmd.envs(plan.env.iter().map(|(k, v)| (k, v)));
    cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_PID");
    cmd.env("FCGI_PM_POOL", pool);
    let board_fd = board.as_ref().map(|b| b.fd().as_raw_fd());
    match board_fd {
        Some(fd) => cmd.env(ENV_VAR, fd.to_string()),
        None => cmd.env_remove(ENV_VAR),
    };
    let fd0: OwnedFd = listen.try_clone_to_owned()?;
    cmd.stdin(Stdio::from(fd0));
    if plan.catch_output {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let p = plan.clone();
    // SAFETY: the closure runs in the child between fork and exec and makes only
    // async-signal-safe system calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // The manager blocks its signals (it reads them from a signalfd) and may have
            // been started with some ignored: the child starts with none of that.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            for s in crate::manager::SIGNALS {
                libc::signal(s, libc::SIG_DFL);
            }
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            if let Some(fd) = board_fd {
                check(libc::fcntl(fd, libc::F_SETFD, 0))?;
            }
            if let Some(n) = p.rlimit_files {
                set_limit(libc::RLIMIT_NOFILE, n)?;
            }
            if let Some(l) = p.rlimit_core {
                let v = match l {
                    Limit::Unlimited => libc::RLIM_INFINITY,
                    Limit::Value(v) => v,
                };
                set_limit(libc::RLIMIT_CORE, v)?;
            }
            if let Some(prio) = p.priority {
                check(libc::setpriority(libc::PRIO_PROCESS, 0, prio))?;
            }
            if let Some(dir) = &p.chdir {
                check(libc::chdir(dir.as_ptr()))?;
            }
            if let Some(c) = &p.creds {
                check(libc::setgroups(c.groups.len(), c.groups.as_ptr()))?;
                check(libc::setgid(c.gid))?;
                check(libc::setuid(c.uid))?;
            }
            // If the manager dies, the children stop (SIGTERM: graceful for libfcgi
            // programs). Set after setuid, which clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    Ok(Spawned {
        child,
        board,
        stdout,
        stderr,
    })
}
