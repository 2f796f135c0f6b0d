//! Process-group plumbing for supervised services: pidfds, group signals, the scan for
//! processes left in a group, reaping, and hang evidence read from `/proc`.
//!
//! Architecture Invariant: a service's process group is signalled only while something
//! pins its id: the leader alive or unreaped (a zombie still holds the id), or, after the
//! leader was reaped, members a probe (`kill(-pgid, 0)`) has just found alive. A recycled
//! pid can therefore not make Vigil signal an unrelated group. Leaders are watched
//! through pidfds (which do not reap). After a leader exits it is reaped first and the
//! group probed: empty (the common case) costs one syscall, not a scan of `/proc`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use vigil_core::{Signal, Termination};

/// A pidfd registered with tokio: readable once the process has exited (not reaped).
pub struct PidFd(AsyncFd<OwnedFd>);

impl PidFd {
    pub fn open(pid: Pid) -> io::Result<PidFd> {
        let fd = rustix::process::pidfd_open(pid, PidfdFlags::NONBLOCK)?;
        Ok(PidFd(register(fd)?))
    }

    /// Resolves once the process has exited; it stays resolved.
    pub async fn exited(&self) {
        if self.0.readable().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// [`PidFd::exited`] for a hand-written poll loop: `Ready` once the process has exited
    /// (and from then on); otherwise the task is woken when it does.
    pub fn poll_exited(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self.0.poll_read_ready(cx) {
            std::task::Poll::Ready(Ok(_)) => std::task::Poll::Ready(()),
            // Like `exited`: an error (never seen for a pidfd) means never.
            std::task::Poll::Ready(Err(_)) | std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    /// Reaps the exited process. `None` if it has not exited (or was reaped elsewhere).
    pub fn reap(&self) -> Option<Termination> {
        let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        let status = rustix::process::waitid(WaitId::PidFd(self.0.get_ref().as_fd()), opts)
            .ok()
            .flatten()?;
        if let Some(code) = status.exit_status() {
            Some(Termination::Code(code))
        } else {
            status
                .terminating_signal()
                .map(|s| Termination::Signal(Signal::from_raw(s)))
        }
    }
}

/// Registers a pidfd with tokio's reactor (tokio has no safe type for pidfds).
#[allow(
    unsafe_code,
    reason = "tokio's AsyncFd::register is unsafe only to demand I/O safety, which OwnedFd gives"
)]
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of `fd`; an OwnedFd's raw fd is valid, stays
    // open and keeps referring to the same pidfd until it is dropped with the AsyncFd.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// Sends `sig` to every process of group `pgid`. Call only while the leader is unreaped.
/// A stopped group also gets SIGCONT, so the signal is acted on at once (a SIGSTOPped
/// process would otherwise keep SIGTERM/SIGABRT pending forever), as systemd does.
pub fn signal_group(pgid: Pid, sig: Signal) {
    if let Some(s) = rustix::process::Signal::from_named_raw(sig.as_raw()) {
        let _ = rustix::process::kill_process_group(pgid, s);
    }
    if sig != Signal::KILL && sig != Signal::CONT {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::CONT);
    }
}

/// Whether any process is left in group `pgid` (after its leader was reaped).
pub fn group_alive(pgid: Pid) -> bool {
    rustix::process::test_kill_process_group(pgid).is_ok()
}

/// One line of `/proc/PID/stat` after the command name: `(state, ppid, pgrp)`.
fn stat_fields(pid: i32) -> Option<(char, i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    let pgrp = it.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// The process groups of live processes whose environment says they belong to `service`
/// of the Vigil whose state is in `state_dir` (`VIGIL_SERVICE`, `VIGIL_STATE_DIR`, set by
/// `spawn`): what a Vigil that died left running. Reads `/proc/PID/environ` of every
/// process, so it is only called when the service's instance lock says there is one.
pub fn owned_groups(service: &str, state_dir: &std::path::Path) -> Vec<(Pid, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let want_service = format!("VIGIL_SERVICE={service}");
    let want_dir = format!("VIGIL_STATE_DIR={}", state_dir.display());
    let me = std::process::id();
    let mut groups: Vec<(Pid, String)> = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if u32::try_from(pid).ok() == Some(me) {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let mut vars = environ.split(|b| *b == 0);
        let (mut is_service, mut is_ours) = (false, false);
        for var in &mut vars {
            is_service |= var == want_service.as_bytes();
            is_ours |= var == want_dir.as_bytes();
        }
        if !(is_service && is_ours) {
            continue;
        }
        let Some((state, _, pgrp)) = stat_fields(pid) else {
            continue;
        };
        if state == 'Z' || state == 'X' {
            continue;
        }
        if let Some(pg) = Pid::from_raw(pgrp)
            && !groups.iter().any(|(g, _)| *g == pg)
            && let Some(p) = Pid::from_raw(pid)
        {
            groups.push((pg, describe(p)));
        }
    }
    groups
}

/// The live (non-zombie) processes of group `pgid`, other than `except`.
pub fn group_members(pgid: Pid, except: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let want = pgid.as_raw_nonzero().get();
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == except.as_raw_nonzero().get() {
            continue;
        }
        if let Some((state, _, pgrp)) = stat_fields(pid)
            && pgrp == want
            && state != 'Z'
            && state != 'X'
            && let Some(p) = Pid::from_raw(pid)
        {
            out.push(p);
        }
    }
    out
}

/// Whether `pid` belongs to the service led by `leader` (group `leader`): in its group,
/// or a descendant of the leader (a child that moved to its own group or session).
pub fn belongs_to(pid: Pid, leader: Pid) -> bool {
    if pid == leader {
        return true;
    }
    if rustix::process::getpgid(Some(pid)).is_ok_and(|g| g == leader) {
        return true;
    }
    let mut cur = pid.as_raw_nonzero().get();
    for _ in 0..32 {
        match stat_fields(cur) {
            Some((_, ppid, _)) if ppid == leader.as_raw_nonzero().get() => return true,
            Some((_, ppid, _)) if ppid > 1 => cur = ppid,
            _ => return false,
        }
    }
    false
}

/// The command line of `pid`, for reports ("4242 sleep 600").
pub fn describe(pid: Pid) -> String {
    let raw = pid.as_raw_nonzero().get();
    let cmd = std::fs::read(format!("/proc/{raw}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let mut cmd = if cmd.is_empty() {
        std::fs::read_to_string(format!("/proc/{raw}/comm"))
            .map(|c| format!("[{}]", c.trim()))
            .unwrap_or_default()
    } else {
        cmd
    };
    if cmd.len() > 120 {
        let mut cut = 120;
        while !cmd.is_char_boundary(cut) {
            cut -= 1;
        }
        cmd.truncate(cut);
        cmd.push('…');
    }
    format!("{raw} {cmd}")
}

fn state_name(c: char) -> &'static str {
    match c {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk sleep (uninterruptible)",
        'T' => "stopped",
        't' => "tracing stop",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        _ => "unknown",
    }
}

fn read_trim(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// What a hung process was doing, read before it is killed: process state and wait
/// channel of the main process and of each thread (at most 32), and the last lines it
/// logged. One text block for the ledger and the log.
pub fn hang_evidence(
    pid: Pid,
    since_ping: Duration,
    watchdog: Duration,
    last_lines: &[String],
) -> String {
    let raw = pid.as_raw_nonzero().get();
    let mut out = format!(
        "no WATCHDOG=1 for {} (watchdog {}); main process {}",
        vigil_core::format_duration(since_ping),
        vigil_core::format_duration(watchdog),
        describe(pid)
    );
    match stat_fields(raw) {
        Some((state, _, _)) => {
            let wchan = read_trim(&format!("/proc/{raw}/wchan")).unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "\nstate: {state} ({}), wchan: {wchan}",
                state_name(state)
            ));
        }
        None => out.push_str("\nstate: gone before evidence could be read"),
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{raw}/status")) {
        for key in [
            "VmRSS:",
            "Threads:",
            "voluntary_ctxt_switches:",
            "nonvoluntary_ctxt_switches:",
        ] {
            if let Some(line) = status.lines().find(|l| l.starts_with(key)) {
                out.push_str(&format!(
                    "\n{}",
                    line.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
        }
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{raw}/task")) {
        let mut tids: Vec<i32> = tasks
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort_unstable();
        out.push_str(&format!("\nthreads ({}):", tids.len()));
        for tid in tids.iter().take(32) {
            let base = format!("/proc/{raw}/task/{tid}");
            let stat = std::fs::read_to_string(format!("{base}/stat")).unwrap_or_default();
            let comm = read_trim(&format!("{base}/comm")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                .unwrap_or("?");
            let wchan = read_trim(&format!("{base}/wchan")).unwrap_or_else(|| "-".into());
            out.push_str(&format!("\n  {tid} {comm}: {state}, wchan {wchan}"));
        }
    }
    if last_lines.is_empty() {
        out.push_str("\nlast log lines: none");
    } else {
        out.push_str(&format!("\nlast log lines ({}):", last_lines.len()));
        for line in last_lines {
            out.push_str("\n  ");
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_of_this_process_names_state_threads_and_lines() {
        let pid = rustix::process::getpid();
        let text = hang_evidence(
            pid,
            Duration::from_secs(2),
            Duration::from_secs(1),
            &["hello".to_owned()],
        );
        assert!(
            text.contains("no WATCHDOG=1 for 2s (watchdog 1s)"),
            "{text}"
        );
        assert!(text.contains("state: "), "{text}");
        assert!(text.contains("threads ("), "{text}");
        assert!(text.contains("  hello"), "{text}");
    }

    #[test]
    fn this_process_belongs_to_its_own_group() {
        let me = rustix::process::getpid();
        let group = rustix::process::getpgid(None).unwrap();
        assert!(belongs_to(me, group));
    }
}
