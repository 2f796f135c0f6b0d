//! Starting a supervised service process: the second of Vigil's two spawn sites (the first
//! is `vigil_checks::process::run`, for commands that run to completion).
//!
//! Owns: argv/cwd/env, the process group (the child leads its own), `user`/`group`
//! (dropping privileges when root: looked up through NSS, with the user's supplementary
//! groups), pipes for outputs
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

use nix::unistd::{Gid, Group, Uid, User, getgrouplist, setgid, setgroups, setuid};
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
    #[error(
        "unknown user {0:?} (looked up through NSS: /etc/passwd and what /etc/nsswitch.conf names)"
    )]
    UnknownUser(String),
    #[error(
        "unknown group {0:?} (looked up through NSS: /etc/group and what /etc/nsswitch.conf names)"
    )]
    UnknownGroup(String),
    #[error(
        "user {0} has no account (through NSS): set `group` too, or the process would keep Vigil's group"
    )]
    UidWithoutGroup(String),
    #[error("cannot look up {what:?}: {source}")]
    Lookup { what: String, source: io::Error },
    #[error("cannot switch to user/group {0}: vigil is not running as root")]
    NotRoot(String),
    #[error("cannot run {program}: {source}")]
    Io { program: String, source: io::Error },
}

/// Who a service runs as, resolved before the fork (NSS lookups are not safe between
/// fork and exec).
struct Identity {
    uid: Uid,
    gid: Gid,
    /// Supplementary groups, as `initgroups(user, gid)` would set them.
    groups: Vec<Gid>,
}

/// Resolves `user`/`group` through NSS (`getpwnam_r`, `getgrnam_r`, `getgrouplist`; so
/// `/etc/passwd`, LDAP, SSSD, ... whatever `/etc/nsswitch.conf` names) or as numbers, as
/// systemd's `User=`/`Group=` do: the group defaults to the user's primary group, and the
/// supplementary groups are the user's. `None`: run as Vigil runs.
fn identity(spec: &ExecDriver) -> Result<Option<Identity>, SpawnError> {
    let lookup = |what: &str, e: nix::Error| SpawnError::Lookup {
        what: what.to_owned(),
        source: io::Error::from(e),
    };
    let user = match &spec.user {
        None => None,
        Some(name) => {
            let entry = match name.parse::<u32>() {
                Ok(n) => User::from_uid(Uid::from_raw(n)),
                Err(_) => User::from_name(name),
            }
            .map_err(|e| lookup(name, e))?;
            match (entry, name.parse::<u32>()) {
                (Some(entry), _) => Some((entry.uid, Some(entry))),
                // A bare uid without an account: only with an explicit group, so the
                // process never keeps Vigil's (root's) group.
                (None, Ok(n)) if spec.group.is_some() => Some((Uid::from_raw(n), None)),
                (None, Ok(_)) => return Err(SpawnError::UidWithoutGroup(name.clone())),
                (None, Err(_)) => return Err(SpawnError::UnknownUser(name.clone())),
            }
        }
    };
    let group = match &spec.group {
        None => None,
        Some(name) => Some(match name.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => {
                Group::from_name(name)
                    .map_err(|e| lookup(name, e))?
                    .ok_or_else(|| SpawnError::UnknownGroup(name.clone()))?
                    .gid
            }
        }),
    };
    let uid = user.as_ref().map(|(uid, _)| *uid);
    let gid = group.or_else(|| user.as_ref().and_then(|(_, e)| e.as_ref().map(|e| e.gid)));
    let me = rustix::process::getuid();
    let switching = uid.is_some_and(|u| u.as_raw() != me.as_raw())
        || gid.is_some_and(|g| g.as_raw() != rustix::process::getgid().as_raw());
    if !me.is_root() {
        if switching {
            let who = format!(
                "{}:{}",
                spec.user.as_deref().unwrap_or("-"),
                spec.group.as_deref().unwrap_or("-")
            );
            return Err(SpawnError::NotRoot(who));
        }
        return Ok(None);
    }
    // Only `group`: the user stays Vigil's (root).
    let (Some(uid), Some(gid)) = (uid.or(gid.map(|_| Uid::from_raw(me.as_raw()))), gid) else {
        return Ok(None);
    };
    let groups = match user.as_ref().and_then(|(_, e)| e.as_ref()) {
        Some(entry) => {
            // NSS hands out C strings: a name never holds a NUL byte.
            let name = std::ffi::CString::new(entry.name.as_str())
                .map_err(|_| SpawnError::UnknownUser(entry.name.clone()))?;
            getgrouplist(&name, gid).map_err(|e| lookup(&entry.name, e))?
        }
        // No account (a bare uid, or only `group`): no supplementary groups but that one.
        None => vec![gid],
    };
    Ok(Some(Identity { uid, gid, groups }))
}

/// Makes the child take `who`'s identity between fork and exec: supplementary groups,
/// then the group, then the user (the order that still has the right to each step).
/// std's `Command::uid`/`gid` cannot set supplementary groups (`groups` is unstable), so
/// this is the one `pre_exec` hook.
#[allow(unsafe_code)]
fn switch_identity_in_child(cmd: &mut std::process::Command, who: Identity) {
    let switch = move || -> io::Result<()> {
        setgroups(&who.groups).map_err(io::Error::from)?;
        setgid(who.gid).map_err(io::Error::from)?;
        setuid(who.uid).map_err(io::Error::from)?;
        Ok(())
    };
    // SAFETY: the closure runs in the forked child, where only async-signal-safe work is
    // allowed. It makes three system calls (setgroups, setgid, setuid) on data resolved
    // before the fork and allocates nothing: nix passes the slice as is, and an error is
    // an `io::Error` holding the errno.
    unsafe {
        cmd.pre_exec(switch);
    }
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
    let who = identity(spec)?;
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
    if let Some(who) = who {
        switch_identity_in_child(&mut cmd, who);
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
