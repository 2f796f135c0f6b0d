//! `kind = "process"`: a process (found by `pid_file` or by `name`) is alive, not a zombie,
//! and under its RSS / open-fd / thread / CPU limits (seeds 001 and 004).
//!
//! Owns: reading `/proc` (`/proc/<pid>/{stat,status,comm,cmdline,fd}`) and judging limits.
//! Must not: signal or otherwise touch the process, or keep state between runs: CPU use
//! is sampled twice inside one probe, [`CPU_WINDOW`] apart (at most half the timeout), so
//! the result does not depend on when the previous run happened.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::Verdict;
use crate::model::{ProcessCheck, ProcessTarget};

/// How long CPU time is sampled over (shortened to half the probe timeout when that is
/// less). Clock ticks are usually 10ms, so the CPU figure has a resolution of ~5%.
pub const CPU_WINDOW: Duration = Duration::from_millis(200);
/// Bounded reads: `/proc/<pid>/stat` and `status` are a few KiB at most.
const SMALL_READ: u64 = 16 * 1024;
/// Enough of `cmdline` for argv[0].
const CMDLINE_READ: u64 = 4096;

pub(super) fn label(check: &ProcessCheck) -> String {
    match &check.target {
        ProcessTarget::PidFile(p) => format!("process (pid_file {})", p.display()),
        ProcessTarget::Name(n) => format!("process {n}"),
    }
}

/// What `/proc/<pid>/stat` tells us.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stat {
    comm: String,
    state: char,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// Since boot, in clock ticks.
    start_time: u64,
}

pub(super) async fn probe(check: &ProcessCheck, timeout: Duration) -> Verdict {
    let owned = check.clone();
    let (pid, first) = tokio::task::spawn_blocking(move || find(&owned.target))
        .await
        .map_err(|e| format!("{}: lookup task failed: {e}", label(check)))??;
    let who = format!("process {pid} ({})", first.comm);
    let mut seen = Vec::new();
    let mut over = Vec::new();

    if let Some(limit) = check.max_cpu_percent {
        let window = CPU_WINDOW.min(timeout / 2);
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let second = read_stat(pid).map_err(|_| format!("{who} exited while being measured"))?;
        if second.start_time != first.start_time {
            return Err(format!("{who} exited while being measured"));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let ticks = second.cpu_ticks.saturating_sub(first.cpu_ticks) as f64;
        let hz = rustix::param::clock_ticks_per_second().max(1) as f64;
        let percent = if elapsed > 0.0 {
            ticks / hz / elapsed * 100.0
        } else {
            0.0
        };
        let text = format!(
            "CPU {percent:.0}% over {}ms",
            (elapsed * 1000.0).round() as u64
        );
        if percent > limit {
            over.push(format!("{text}, limit {limit}%"));
        } else {
            seen.push(text);
        }
    }

    let status = if check.max_rss.is_some() || check.max_threads.is_some() {
        Some(read_small(&proc_path(pid, "status")).map_err(|e| format!("{who}: {e}"))?)
    } else {
        None
    };
    let status = status.as_deref().unwrap_or("");
    if let Some(limit) = check.max_rss {
        // Kernel threads have no VmRSS line.
        let rss = status_field(status, "VmRSS:").unwrap_or(0) * 1024;
        let text = format!("RSS {}", bytes(rss));
        if rss > limit {
            over.push(format!("{text}, limit {}", bytes(limit)));
        } else {
            seen.push(text);
        }
    }
    if let Some(limit) = check.max_threads {
        let threads = status_field(status, "Threads:").unwrap_or(1);
        let text = format!("{threads} threads");
        if threads > limit {
            over.push(format!("{text}, limit {limit}"));
        } else {
            seen.push(text);
        }
    }
    if let Some(limit) = check.max_fds {
        let fds = count_fds(pid).map_err(|e| format!("{who}: cannot count open fds: {e}"))?;
        let text = format!("{fds} open fds");
        if fds > limit {
            over.push(format!("{text}, limit {limit}"));
        } else {
            seen.push(text);
        }
    }

    if !over.is_empty() {
        return Err(format!("{who} {}", over.join("; ")));
    }
    if seen.is_empty() {
        Ok(format!("{who} is running"))
    } else {
        Ok(format!("{who} is running: {}", seen.join(", ")))
    }
}

/// The process a target names, with its stat. Blocking.
fn find(target: &ProcessTarget) -> Result<(i32, Stat), String> {
    match target {
        ProcessTarget::PidFile(path) => by_pid_file(path),
        ProcessTarget::Name(name) => by_name(name),
    }
}

fn by_pid_file(path: &Path) -> Result<(i32, Stat), String> {
    let shown = path.display();
    let text = match read_small(path) {
        Ok(t) => t,
        Err(e) if e.starts_with("not found") => {
            return Err(format!("pid file {shown} does not exist"));
        }
        Err(e) => return Err(format!("cannot read pid file {shown}: {e}")),
    };
    let trimmed = text.trim();
    let pid = trimmed
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            let shown_text: String = trimmed.chars().take(40).collect();
            format!("pid file {shown} does not hold a pid (read {shown_text:?})")
        })?;
    let stat = read_stat(pid)
        .map_err(|_| format!("pid file {shown} names pid {pid}, which is not running"))?;
    if is_dead(&stat) {
        return Err(format!("process {pid} ({}) is a zombie", stat.comm));
    }
    Ok((pid, stat))
}

fn is_dead(stat: &Stat) -> bool {
    matches!(stat.state, 'Z' | 'X' | 'x')
}

/// The oldest live process whose `comm` or argv[0] basename is `name` (ties: lowest pid).
fn by_name(name: &str) -> Result<(i32, Stat), String> {
    let dir = std::fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
    let mut best: Option<(i32, Stat)> = None;
    let mut zombie: Option<i32> = None;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if !name_matches(pid, name) {
            continue;
        }
        // Gone since the listing: not a candidate.
        let Ok(stat) = read_stat(pid) else { continue };
        if is_dead(&stat) {
            zombie.get_or_insert(pid);
            continue;
        }
        let older = match &best {
            None => true,
            Some((bp, bs)) => (stat.start_time, pid) < (bs.start_time, *bp),
        };
        if older {
            best = Some((pid, stat));
        }
    }
    match (best, zombie) {
        (Some(found), _) => Ok(found),
        (None, Some(pid)) => Err(format!("process {pid} ({name}) is a zombie")),
        (None, None) => Err(format!("no process named {name} is running")),
    }
}

/// `comm` (the kernel's 15-byte name) or the basename of argv[0] equals `name`.
fn name_matches(pid: i32, name: &str) -> bool {
    if let Ok(comm) = std::fs::read(proc_path(pid, "comm")) {
        let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
        if comm == name.as_bytes() {
            return true;
        }
    }
    let mut argv0 = Vec::new();
    let Ok(file) = std::fs::File::open(proc_path(pid, "cmdline")) else {
        return false;
    };
    if file.take(CMDLINE_READ).read_to_end(&mut argv0).is_err() {
        return false;
    }
    let argv0 = argv0.split(|&b| b == 0).next().unwrap_or(&[]);
    let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
    !base.is_empty() && base == name.as_bytes()
}

fn proc_path(pid: i32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// A bounded read of a small text file; errors as short text (`not found`, ...).
fn read_small(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "not found".to_owned(),
        _ => e.to_string(),
    })?;
    let mut buf = Vec::new();
    file.take(SMALL_READ)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn read_stat(pid: i32) -> Result<Stat, String> {
    parse_stat(&read_small(&proc_path(pid, "stat"))?).ok_or_else(|| "unparsable stat".to_owned())
}

/// `pid (comm) S ppid ...`: comm may hold spaces and parentheses, so split at the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let state = rest.first()?.chars().next()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    let start_time: u64 = rest.get(19)?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        cpu_ticks: utime + stime,
        start_time,
    })
}

/// `VmRSS:    1234 kB` → 1234; `Threads:  7` → 7.
fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn count_fds(pid: i32) -> io::Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(proc_path(pid, "fd"))? {
        entry?;
        n += 1;
    }
    Ok(n)
}

/// `612 MiB`, `3.5 GiB`, `80 KiB`.
fn bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    if n >= 10 * GIB || (n >= GIB && n.is_multiple_of(GIB)) {
        format!("{} GiB", n / GIB)
    } else if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else if n >= MIB {
        format!("{} MiB", n / MIB)
    } else {
        format!("{} KiB", n / KIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm_parses() {
        let line = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 3 0 987654 12345678 300 18446744073709551615 1 1 0 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.comm, "my (odd) proc");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.cpu_ticks, 300);
        assert_eq!(stat.start_time, 987_654);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tworker\nVmRSS:\t  626688 kB\nThreads:\t12\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(626_688));
        assert_eq!(status_field(status, "Threads:"), Some(12));
        assert_eq!(status_field(status, "VmSwap:"), None);
    }

    #[test]
    fn byte_sizes_read_well() {
        assert_eq!(bytes(612 * 1024 * 1024), "612 MiB");
        assert_eq!(bytes(512 * 1024 * 1024), "512 MiB");
        assert_eq!(bytes(1536 * 1024 * 1024), "1.5 GiB");
        assert_eq!(bytes(80 * 1024), "80 KiB");
    }

    #[test]
    fn own_process_is_found_by_comm() {
        let me = std::process::id() as i32;
        let comm = std::fs::read_to_string(proc_path(me, "comm")).unwrap();
        let (pid, stat) = by_name(comm.trim()).unwrap();
        // The oldest with our name: ourselves, or an older namesake.
        assert!(stat.start_time <= read_stat(me).unwrap().start_time);
        assert!(pid > 0);
    }
}
