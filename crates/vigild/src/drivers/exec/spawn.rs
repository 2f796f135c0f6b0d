//! Starting a supervised service process: the second of Vigil's two spawn sites (the first
//! is `vigil_checks::process::run`, for commands that run to completion).
//!
//! Owns: argv/cwd/env, the process group (the child leads its own), `user`/`group`
//! (dropping privileges when root; std clears supplementary groups), pipes for outputs
//! Vigil routes, `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`. Must not: wait for,
//! signal or judge the process; the supervisor does that through `proc.rs`.
//!
//! `WATCHDOG_PID` must equal the service's own pid, which is unknown before the fork and
//! std offers no safe hook between fork and exec. With `watchdog` set, the process is
//! therefore started through Vigil's own binary (`/proc/self/exe __vigil_exec_wrap ARGV`),
//! which sets `WATCHDOG_PID` to its pid and execs the command: same pid, one extra exec.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::Pid;
use vigil_config::model::{ExecDriver, OutputTarget};

/// The hidden first argument of the exec wrapper (see the module docs).
pub const WRAP_ARG: &str = "__vigil_exec_wrap";

/// A freshly spawned service process.
pub struct Spawned {
    pub pid: Pid,
    /// Read ends of the routed outputs (`None`: `/dev/null`).
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot run {program}: program not found")]
    NotFound { program: String },
    #[error("cannot run {program}: permission denied (is it executable?)")]
    PermissionDenied { program: String },
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error("cannot switch to user/group {0}: vigil is not running as root")]
    NotRoot(String),
    #[error("cannot run {program}: {source}")]
    Io { program: String, source: io::Error },
}

/// Resolves `user`/`group` to ids from `/etc/passwd` and `/etc/group` (or numbers).
fn identity(spec: &ExecDriver) -> Result<(Option<u32>, Option<u32>), SpawnError> {
    let mut uid = None;
    let mut gid = None;
    if let Some(user) = &spec.user {
        let (u, primary) = match user.parse::<u32>() {
            Ok(n) => (
                n,
                lookup("/etc/passwd", |f| f.get(2) == Some(&user.as_str()), 3),
            ),
            Err(_) => {
                let line = find_entry("/etc/passwd", user)
                    .ok_or_else(|| SpawnError::UnknownUser(user.clone()))?;
                let u = line
                    .get(2)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| SpawnError::UnknownUser(user.clone()))?;
                (u, line.get(3).and_then(|s| s.parse().ok()))
            }
        };
        uid = Some(u);
        gid = primary;
    }
    if let Some(group) = &spec.group {
        gid = Some(match group.parse::<u32>() {
            Ok(n) => n,
            Err(_) => find_entry("/etc/group", group)
                .and_then(|f| f.get(2).and_then(|s| s.parse().ok()))
                .ok_or_else(|| SpawnError::UnknownGroup(group.clone()))?,
        });
    }
    let me = rustix::process::getuid();
    let switching = uid.is_some_and(|u| u != me.as_raw())
        || gid.is_some_and(|g| g != rustix::process::getgid().as_raw());
    if switching && !me.is_root() {
        let who = format!(
            "{}:{}",
            spec.user.as_deref().unwrap_or("-"),
            spec.group.as_deref().unwrap_or("-")
        );
        return Err(SpawnError::NotRoot(who));
    }
    if !me.is_root() {
        return Ok((None, None));
    }
    Ok((uid, gid))
}

fn find_entry(file: &str, name: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|f| f.first().is_some_and(|n| n == name))
}

fn lookup(file: &str, pred: impl Fn(&[&str]) -> bool, field: usize) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| pred(f))
        .and_then(|f| f.get(field).and_then(|s| s.parse().ok()))
}

fn stdio(target: &OutputTarget) -> Stdio {
    match target {
        OutputTarget::Null => Stdio::null(),
        OutputTarget::Log | OutputTarget::File(_) => Stdio::piped(),
    }
}

/// Who a supervised process belongs to, set in its environment (`VIGIL_SERVICE`,
/// `VIGIL_STATE_DIR`) so that a later Vigil finds what a dead one left running, and the
/// descriptor of the service's instance lock it inherits (see `drivers/exec/mod.rs`).
pub struct Owner<'a> {
    pub service: &'a str,
    pub state_dir: &'a Path,
    pub instance_lock: Option<std::os::fd::BorrowedFd<'a>>,
}

/// Spawns the service's command in its own process group.
pub fn spawn(
    spec: &ExecDriver,
    notify_socket: &Path,
    watchdog: Option<Duration>,
    owner: &Owner<'_>,
) -> Result<Spawned, SpawnError> {
    let program = spec.command.program().to_owned();
    let (uid, gid) = identity(spec)?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the supervised-service spawn site: process group, identity, env and pipes live here"
    )]
    let mut cmd = match watchdog {
        Some(_) => {
            let mut c = std::process::Command::new("/proc/self/exe");
            c.arg(WRAP_ARG).arg(&program);
            c
        }
        None => std::process::Command::new(&program),
    };
    cmd.args(spec.command.args())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(stdio(&spec.stdout))
        .stderr(stdio(&spec.stderr))
        .env("NOTIFY_SOCKET", notify_socket)
        .env("VIGIL_SERVICE", owner.service)
        .env("VIGIL_STATE_DIR", owner.state_dir);
    if let Some(w) = watchdog {
        cmd.env("WATCHDOG_USEC", w.as_micros().to_string());
    } else {
        cmd.env_remove("WATCHDOG_USEC").env_remove("WATCHDOG_PID");
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(g) = gid {
        cmd.gid(g);
    }
    if let Some(u) = uid {
        cmd.uid(u);
    }
    // The instance lock is made inheritable just around the spawn (the runtime that spawns
    // is single-threaded, so no other spawn picks it up), then closed on exec again here.
    if let Some(fd) = owner.instance_lock {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(|e| SpawnError::Io {
            program: program.clone(),
            source: e.into(),
        })?;
    }
    let spawned = cmd.spawn();
    if let Some(fd) = owner.instance_lock {
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
    let mut child = spawned.map_err(|e| {
        if let Some(cwd) = &spec.cwd
            && !cwd.is_dir()
        {
            return SpawnError::Io {
                program: program.clone(),
                source: io::Error::new(
                    e.kind(),
                    format!("working directory {} is not a directory", cwd.display()),
                ),
            };
        }
        match e.kind() {
            io::ErrorKind::NotFound => SpawnError::NotFound {
                program: program.clone(),
            },
            io::ErrorKind::PermissionDenied => SpawnError::PermissionDenied {
                program: program.clone(),
            },
            _ => SpawnError::Io {
                program: program.clone(),
                source: e,
            },
        }
    })?;
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| SpawnError::Io {
            program: program.clone(),
            source: io::Error::other("spawned child has no pid"),
        })?;
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    // The std handle is dropped without waiting: the supervisor reaps through a pidfd.
    drop(child);
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
}

/// `vigil __vigil_exec_wrap PROGRAM ARGS...`: sets `WATCHDOG_PID` to this process's pid
/// and execs the program in its place (same pid). Returns only on failure.
pub fn exec_wrapper(args: &[std::ffi::OsString]) -> u8 {
    let Some((program, rest)) = args.split_first() else {
        eprintln!("vigil: {WRAP_ARG} needs a program");
        return 127;
    };
    #[expect(
        clippy::disallowed_methods,
        reason = "exec (not spawn) of the service in place of this wrapper; see the module docs"
    )]
    let err = std::process::Command::new(program)
        .args(rest)
        .env("WATCHDOG_PID", std::process::id().to_string())
        .exec();
    eprintln!("vigil: cannot run {}: {err}", program.to_string_lossy());
    if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}
