//! `kind = "process"`: a process (found by `pid_file` or by `name`) is alive, not a zombie,
//! and under its RSS / open-fd / thread / CPU limits (seeds 001 and 004).
//!
//! Owns: reading `/proc` (`/proc/<pid>/{stat,statm,comm,cmdline,fd}`) and judging limits.
//! Must not: signal or otherwise touch the process, or keep state between runs that
//! could change a verdict: CPU use is sampled twice inside one probe, [`CPU_WINDOW`] apart
//! (at most half the timeout), so the result does not depend on when the previous run
//! happened. (What it keeps, per thread, is up to [`KEPT_FILES`] open `/proc/<pid>/stat`
//! and `statm` files, which read exactly what a fresh open would; see [`read_kept`].)
//!
//! Cost (issue 17): a `/proc` file is read with one `open`, one `read` into a stack
//! buffer and a `close` (a seq_file answers a read that can hold it whole in one go, so a
//! short read is its end), not through `read_to_end`'s probing reads and allocations.
//! The thread count is `stat`'s `num_threads` (read anyway) and the RSS `statm`'s
//! resident pages, where both used to come from `status`: the same kernel counters
//! (`Threads:` is `num_threads`; `VmRSS:` and `statm` are summed alike, on 6.18 exactly
//! from the per-CPU counters, where `stat`'s own `rss` field there is only their
//! approximate total, so it is not used), and `status` costs the kernel far more to
//! generate (about 1.5 KB of text).
//! The open-fd count is the size the kernel reports for `/proc/<pid>/fd` (Linux 6.2+:
//! its number of open fds) once `faccessat` says the directory could be listed, else the
//! directory is listed as before. Finding a process by name still reads every process's
//! `comm` (and `cmdline` when `comm` differs) on every run, as it must: a pid found by
//! name is not remembered, because an older process can come to carry the name at any
//! time (`exec` and `prctl(PR_SET_NAME)` keep its start time; so does rewriting argv),
//! and only a full scan sees that. A scan by name stays on the blocking pool (it is
//! O(processes) and reads `cmdline`, which waits for the process's memory map lock). A pid
//! file is read inline when the kernel can answer from memory ([`cached_fs`]: a local
//! filesystem, cached, no I/O possible), else on the blocking pool too (it may sit on a
//! hung network filesystem).

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Access, AtFlags, CWD, Mode, OFlags, RawDir, StatxFlags};
use tokio::time::Instant;

use super::{Verdict, cached_fs};
use crate::model::{ProcessCheck, ProcessTarget};

/// How long CPU time is sampled over (shortened to half the probe timeout when that is
/// less). Clock ticks are usually 10ms, so the CPU figure has a resolution of ~5%.
pub const CPU_WINDOW: Duration = Duration::from_millis(200);
/// Bounded reads: a pid file is read up to this much (on the blocking pool).
const SMALL_READ: usize = 16 * 1024;
/// Enough of `cmdline` for argv[0].
const CMDLINE_READ: usize = 4096;

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
    /// `num_threads` (what `status` calls `Threads:`).
    threads: u64,
}

/// [`Stat`]'s fields borrowed from the bytes read.
#[derive(Clone, Copy, Debug)]
struct StatView<'a> {
    comm: &'a [u8],
    state: char,
    cpu_ticks: u64,
    start_time: u64,
    threads: u64,
}

impl StatView<'_> {
    fn owned(&self) -> Stat {
        Stat {
            comm: String::from_utf8_lossy(self.comm).into_owned(),
            state: self.state,
            cpu_ticks: self.cpu_ticks,
            start_time: self.start_time,
            threads: self.threads,
        }
    }
}

pub(super) async fn probe(check: &ProcessCheck, timeout: Duration) -> Verdict {
    let (pid, first) = match inline_pid_file(&check.target) {
        Some(found) => found?,
        None => {
            let target = check.target.clone();
            tokio::task::spawn_blocking(move || find(&target))
                .await
                .map_err(|e| format!("{}: lookup task failed: {e}", label(check)))??
        }
    };
    let who = format!("process {pid} ({})", first.comm);
    let mut seen = Vec::new();
    let mut over = Vec::new();
    // The latest stat read: the second sample's when CPU is measured.
    let mut latest = first;

    if let Some(limit) = check.max_cpu_percent {
        let window = CPU_WINDOW.min(timeout / 2);
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let second = read_stat(pid).map_err(|_| format!("{who} exited while being measured"))?;
        if second.start_time != latest.start_time {
            return Err(format!("{who} exited while being measured"));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let ticks = second.cpu_ticks.saturating_sub(latest.cpu_ticks) as f64;
        latest = second;
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

    if let Some(limit) = check.max_rss {
        // Kernel threads have no memory: 0.
        let rss = resident_bytes(pid).map_err(|e| format!("{who}: {e}"))?;
        let text = format!("RSS {}", bytes(rss));
        if rss > limit {
            over.push(format!("{text}, limit {}", bytes(limit)));
        } else {
            seen.push(text);
        }
    }
    if let Some(limit) = check.max_threads {
        let threads = latest.threads;
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

/// A pid file read on the runtime thread when the kernel can answer from memory
/// ([`cached_fs`]); `None` sends the lookup to the blocking pool. A file that fills the
/// buffer goes to the pool too, which reads up to [`SMALL_READ`] as before.
fn inline_pid_file(target: &ProcessTarget) -> Option<Result<(i32, Stat), String>> {
    let ProcessTarget::PidFile(path) = target else {
        return None;
    };
    let mut buf = [0u8; 256];
    let n = cached_fs::read(path, &mut buf).filter(|&n| n < buf.len())?;
    Some(pid_file_names(path, &String::from_utf8_lossy(&buf[..n])))
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
    pid_file_names(path, &text)
}

/// The live process a pid file's `text` names.
fn pid_file_names(path: &Path, text: &str) -> Result<(i32, Stat), String> {
    let shown = path.display();
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
    if is_dead(stat.state) {
        return Err(format!("process {pid} ({}) is a zombie", stat.comm));
    }
    Ok((pid, stat))
}

fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// The oldest live process whose `comm` or argv[0] basename is `name` (ties: lowest pid).
///
/// Reads `comm`, then `cmdline` when `comm` differs, then `stat` of a match, as before;
/// each with one `open`, `read` and `close` and no allocation. (Reading every `stat`
/// first to skip the names of processes younger than the best match so far cost more:
/// `stat` is the most expensive of the three to generate.) Each file is opened relative
/// to the open `/proc`, by the name the listing gave (`<pid>/comm`): no formatting of
/// the pid and one path component fewer for the kernel to walk, per file; and one buffer
/// serves every read of the scan.
fn by_name(name: &str) -> Result<(i32, Stat), String> {
    let dir = rustix::fs::open(
        "/proc",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot read /proc: {}", io::Error::from(e)))?;
    let mut listing = [MaybeUninit::<u8>::uninit(); 8192];
    let mut entries = RawDir::new(&dir, &mut listing);
    // Large enough for `stat` and for the part of `cmdline` argv[0] is read from.
    let mut buf = [0u8; CMDLINE_READ];
    let mut best: Option<(i32, u64, Stat)> = None;
    let mut zombie: Option<i32> = None;
    while let Some(entry) = entries.next() {
        // A listing error ends the scan, as `read_dir(..).flatten()` did.
        let Ok(entry) = entry else { break };
        let entry_name = entry.file_name().to_bytes();
        let Some(pid) = parse_pid(entry_name) else {
            continue;
        };
        if !name_matches(&dir, entry_name, name, &mut buf) {
            continue;
        }
        // Gone since the listing: not a candidate.
        let Ok(text) = read_proc_at(&dir, entry_name, c"stat", &mut buf) else {
            continue;
        };
        let Some(stat) = parse_stat_bytes(text) else {
            continue;
        };
        if is_dead(stat.state) {
            zombie.get_or_insert(pid);
            continue;
        }
        if let Some((bp, bstart, _)) = &best
            && (stat.start_time, pid) >= (*bstart, *bp)
        {
            continue;
        }
        let owned = stat.owned();
        best = Some((pid, owned.start_time, owned));
    }
    match (best, zombie) {
        (Some((pid, _, stat)), _) => Ok((pid, stat)),
        (None, Some(pid)) => Err(format!("process {pid} ({name}) is a zombie")),
        (None, None) => Err(format!("no process named {name} is running")),
    }
}

/// `comm` (the kernel's 15-byte name) or the basename of argv[0] equals `name`, for the
/// process `/proc/<pid>` (`pid` as the listing spelled it); `buf` is scratch.
fn name_matches(proc: &OwnedFd, pid: &[u8], name: &str, buf: &mut [u8]) -> bool {
    if let Ok(comm) = read_proc_at(proc, pid, c"comm", buf)
        && comm.strip_suffix(b"\n").unwrap_or(comm) == name.as_bytes()
    {
        return true;
    }
    argv0_matches(proc, pid, name, buf)
}

fn parse_pid(name: &[u8]) -> Option<i32> {
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// Reads `<pid>/<file>` relative to the open `/proc` (`pid` as the listing spelled it).
fn read_proc_at<'b>(
    proc: &OwnedFd,
    pid: &[u8],
    file: &CStr,
    buf: &'b mut [u8],
) -> io::Result<&'b [u8]> {
    let mut path = [0u8; 64];
    let file = file.to_bytes_with_nul();
    let len = pid.len() + 1 + file.len();
    if len > path.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    path[..pid.len()].copy_from_slice(pid);
    path[pid.len()] = b'/';
    path[pid.len() + 1..len].copy_from_slice(file);
    let path = CStr::from_bytes_with_nul(&path[..len])
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fd = rustix::fs::openat(proc, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let len = read_proc_fd(&fd, buf)?;
    Ok(&buf[..len])
}

/// The basename of argv[0] (from `cmdline`, read into `buf`) equals `name`.
fn argv0_matches(proc: &OwnedFd, pid: &[u8], name: &str, buf: &mut [u8]) -> bool {
    let Ok(argv0) = read_proc_at(proc, pid, c"cmdline", buf) else {
        return false;
    };
    let argv0 = argv0.split(|&b| b == 0).next().unwrap_or(&[]);
    let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
    !base.is_empty() && base == name.as_bytes()
}

fn proc_path(pid: i32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// `/proc/<pid>/<file>` as a C string in `out`, without allocating.
fn proc_cpath<'a>(pid: i32, file: &CStr, out: &'a mut [u8; 64]) -> &'a CStr {
    use std::io::Write;
    let mut cursor = io::Cursor::new(&mut out[..]);
    // 6 + 11 + 1 + a short file name + NUL fit in 64 bytes.
    let _ = write!(cursor, "/proc/{pid}/");
    let _ = cursor.write_all(file.to_bytes_with_nul());
    let len = cursor.position() as usize;
    CStr::from_bytes_with_nul(&out[..len]).unwrap_or(c"/proc/self/")
}

/// Opens `/proc/<pid>/<file>` for reading.
fn open_proc(pid: i32, file: &CStr) -> io::Result<OwnedFd> {
    let mut path = [0u8; 64];
    let fd = rustix::fs::open(
        proc_cpath(pid, file, &mut path),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(fd)
}

/// Fills `buf` from `fd` until EOF or `buf` is full.
fn read_fd(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = match rustix::io::read(fd.as_fd(), &mut buf[filled..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Fills `buf` from the start of a procfs file, fresh or kept open, with one `pread` per
/// chunk (at offset 0 the kernel generates the file again). A seq_file (`stat`, `statm`)
/// and `cmdline` hand out everything a read can hold in one go, so a short read is the
/// end: no extra read for EOF.
fn read_proc_fd(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = match rustix::io::pread(fd.as_fd(), &mut buf[filled..], filled as u64) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let asked = buf.len() - filled;
        filled += n;
        if n < asked {
            break;
        }
    }
    Ok(filled)
}

/// A bounded read of a small text file; errors as short text (`not found`, ...).
fn read_small(path: &Path) -> Result<String, String> {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| read_error(e.into()))?;
    let mut buf = [0u8; SMALL_READ];
    let len = read_fd(&fd, &mut buf).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// How many `/proc/<pid>/{stat,statm}` files a thread keeps open for [`read_kept`].
const KEPT_FILES: usize = 16;

thread_local! {
    /// `/proc/<pid>/<file>` files kept open, the most recently read last.
    static KEPT: std::cell::RefCell<Vec<(i32, &'static CStr, OwnedFd)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `/proc/<pid>/<file>` (`stat` or `statm`) into `buf`, read through a file kept open
/// from the last read of it when there is one (a `pread` at offset 0 makes the kernel
/// generate it again) instead of an `open`, a `read` and a `close`: the check of one pid
/// file reads the same pid run after run. An open file names the process it was opened
/// for, not the number: once that process is gone (reaped, or its pid reused) the read
/// fails with `ESRCH`, and the file is opened afresh, so what is read is always what a
/// fresh open would read, errors included.
fn read_kept(pid: i32, file: &'static CStr, buf: &mut [u8]) -> io::Result<usize> {
    KEPT.with(|cell| {
        let mut kept = cell.borrow_mut();
        if let Some(at) = kept.iter().position(|(p, f, _)| *p == pid && *f == file) {
            let (_, _, fd) = kept.remove(at);
            if let Ok(len) = read_proc_fd(&fd, buf)
                && len > 0
            {
                kept.push((pid, file, fd));
                return Ok(len);
            }
        }
        let fd = open_proc(pid, file)?;
        let len = read_proc_fd(&fd, buf)?;
        if kept.len() >= KEPT_FILES {
            kept.remove(0);
        }
        kept.push((pid, file, fd));
        Ok(len)
    })
}

/// The reason text of a failed read: `not found`, or the error's own words.
fn read_error(e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "not found".to_owned(),
        _ => e.to_string(),
    }
}

fn read_stat(pid: i32) -> Result<Stat, String> {
    let mut buf = [0u8; 2048];
    let len = read_kept(pid, c"stat", &mut buf).map_err(read_error)?;
    parse_stat_bytes(&buf[..len])
        .map(|s| s.owned())
        .ok_or_else(|| "unparsable stat".to_owned())
}

/// `pid (comm) S ppid ...`: comm may hold spaces and parentheses, so split at the last `)`.
#[cfg(test)]
fn parse_stat(text: &str) -> Option<Stat> {
    parse_stat_bytes(text.as_bytes()).map(|s| s.owned())
}

/// [`parse_stat`] on the bytes read, borrowing `comm`.
fn parse_stat_bytes(text: &[u8]) -> Option<StatView<'_>> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let comm = text.get(open + 1..close)?;
    // After the comm: field 3 (state) is the first; field n is the (n - 3)th.
    let mut rest = text
        .get(close + 1..)?
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let state = char::from(*rest.next()?.first()?);
    let mut field =
        |skip: usize| -> Option<u64> { std::str::from_utf8(rest.nth(skip)?).ok()?.parse().ok() };
    let utime = field(10)?; // field 14
    let stime = field(0)?; // field 15
    let threads = field(4)?; // field 20
    let start_time = field(1)?; // field 22
    Some(StatView {
        comm,
        state,
        cpu_ticks: utime + stime,
        start_time,
        threads,
    })
}

/// The resident set size of `pid` in bytes: `statm`'s second field (pages), the figure
/// `status` shows as `VmRSS:`.
fn resident_bytes(pid: i32) -> Result<u64, String> {
    let mut buf = [0u8; 256];
    let len = read_kept(pid, c"statm", &mut buf).map_err(read_error)?;
    resident_pages(&buf[..len])
        .map(|pages| pages * rustix::param::page_size() as u64)
        .ok_or_else(|| "unparsable statm".to_owned())
}

/// `size resident shared text lib data dt` → `resident`.
fn resident_pages(statm: &[u8]) -> Option<u64> {
    let word = statm
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .nth(1)?;
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// How many fds `pid` has open. Since Linux 6.2 the size of `/proc/<pid>/fd` is that
/// number (the open-fd bitmap's weight, which is what a listing counts); the kernel
/// reports it without the permission a listing needs, so `faccessat` asks first. A
/// refused access, a size of 0 (older kernels, or no fds) or any error: the directory is
/// listed as before, so counts and errors stay the listing's.
fn count_fds(pid: i32) -> io::Result<u64> {
    let mut path = [0u8; 64];
    let dir = proc_cpath(pid, c"fd", &mut path);
    if rustix::fs::accessat(CWD, dir, Access::READ_OK, AtFlags::EACCESS).is_ok()
        && let Ok(st) = rustix::fs::statx(CWD, dir, AtFlags::empty(), StatxFlags::SIZE)
        && st.stx_size > 0
    {
        return Ok(st.stx_size);
    }
    count_fds_listed(pid)
}

/// Counts `/proc/<pid>/fd`'s entries.
fn count_fds_listed(pid: i32) -> io::Result<u64> {
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
        assert_eq!(stat.threads, 3);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn statm_resident_parses() {
        assert_eq!(resident_pages(b"5611 1234 876 12 0 321 0\n"), Some(1234));
        assert_eq!(resident_pages(b"0 0 0 0 0 0 0\n"), Some(0));
        assert_eq!(resident_pages(b"5611"), None);
        assert_eq!(resident_pages(b"5611 x"), None);
    }

    /// `Threads:` and `VmRSS:` from `status`, as they used to be read.
    fn status_threads_and_rss_kib(pid: i32) -> (u64, u64) {
        let text = std::fs::read_to_string(proc_path(pid, "status")).unwrap();
        let field = |key: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .map_or(0, |w| w.parse().unwrap())
        };
        (field("Threads:"), field("VmRSS:"))
    }

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "the test starts the process it inspects"
    )]
    fn threads_and_rss_are_what_status_shows() {
        // A process that does not move: a `sleep` asleep (its RSS is settled).
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let wchan = proc_path(pid, "wchan");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&wchan).is_ok_and(|w| w.contains("nanosleep")) {
            assert!(std::time::Instant::now() < deadline, "sleep never slept");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (threads, rss_kib) = status_threads_and_rss_kib(pid);
        assert_eq!(read_stat(pid).unwrap().threads, threads);
        assert_eq!(resident_bytes(pid).unwrap(), rss_kib * 1024);
        child.kill().unwrap();
        child.wait().unwrap();

        // Several threads (not this process's: other tests start threads meanwhile).
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import threading, time\n\
                for _ in range(3): threading.Thread(target=time.sleep, args=(30,)).start()\n\
                time.sleep(30)",
            ])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while status_threads_and_rss_kib(pid).0 != 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "python never had 4 threads"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(read_stat(pid).unwrap().threads, 4);
        child.kill().unwrap();
        child.wait().unwrap();

        // A kernel thread (kthreadd) has no memory: 0, as status's missing `VmRSS:` was.
        if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
            assert_eq!(resident_bytes(2).unwrap(), 0);
        }
    }

    #[test]
    fn byte_sizes_read_well() {
        assert_eq!(bytes(612 * 1024 * 1024), "612 MiB");
        assert_eq!(bytes(512 * 1024 * 1024), "512 MiB");
        assert_eq!(bytes(1536 * 1024 * 1024), "1.5 GiB");
        assert_eq!(bytes(80 * 1024), "80 KiB");
    }

    #[test]
    fn proc_paths_are_built_without_allocating() {
        let mut out = [0u8; 64];
        assert_eq!(proc_cpath(1234, c"stat", &mut out), c"/proc/1234/stat");
        assert_eq!(
            proc_cpath(i32::MAX, c"cmdline", &mut out),
            c"/proc/2147483647/cmdline"
        );
    }

    #[test]
    fn proc_reads_match_std() {
        let me = std::process::id() as i32;
        let me_text = me.to_string();
        let proc =
            rustix::fs::open("/proc", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut buf = [0u8; SMALL_READ];
        let status = read_proc_at(&proc, me_text.as_bytes(), c"status", &mut buf)
            .unwrap()
            .to_vec();
        let std_status = std::fs::read(proc_path(me, "status")).unwrap();
        // Both start with the same `Name:` ... lines (counters further down move).
        assert_eq!(status[..40], std_status[..40]);
        // A buffer smaller than the file: filled, and the caller sees a prefix.
        let mut small = [0u8; 8];
        assert_eq!(
            read_proc_at(&proc, me_text.as_bytes(), c"status", &mut small).unwrap(),
            &std_status[..8]
        );
        let err = read_proc_at(&proc, b"2147483647", c"stat", &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        // A name the listing could never give: refused, not truncated.
        let long = [b'9'; 60];
        let err = read_proc_at(&proc, &long, c"cmdline", &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = read_proc_at(&proc, b"1\x002", c"stat", &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // The pid file reader: the whole file, lossily decoded.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        std::fs::write(&path, b"42\n\xff").unwrap();
        assert_eq!(read_small(&path).unwrap(), "42\n\u{fffd}");
        assert_eq!(read_small(&dir.path().join("no")).unwrap_err(), "not found");
        assert_eq!(
            read_small(dir.path()).unwrap_err(),
            io::Error::from_raw_os_error(libc::EISDIR).to_string()
        );
    }

    fn kept() -> Vec<(i32, &'static CStr)> {
        KEPT.with(|cell| cell.borrow().iter().map(|(p, f, _)| (*p, *f)).collect())
    }

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "the test starts the process it inspects"
    )]
    fn a_kept_proc_file_reads_what_a_fresh_open_reads() {
        // Tests may share a thread (`--test-threads=1`).
        KEPT.with(|cell| cell.borrow_mut().clear());
        let me = std::process::id() as i32;
        let first = read_stat(me).unwrap();
        assert_eq!(kept(), vec![(me, c"stat")]);
        // Generated again on every read: the process's CPU time moves.
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let second = read_stat(me).unwrap();
        assert_eq!(kept(), vec![(me, c"stat")]);
        assert!(second.cpu_ticks > first.cpu_ticks, "{first:?} {second:?}");
        assert_eq!(second.start_time, first.start_time);
        // `statm` too, as its own file: the RSS grows by what is touched in between.
        let rss = resident_bytes(me).unwrap();
        assert_eq!(kept(), vec![(me, c"stat"), (me, c"statm")]);
        let touched = std::hint::black_box(vec![1u8; 64 << 20]);
        let grown = resident_bytes(me).unwrap();
        assert!(grown >= rss + (60 << 20), "{rss} -> {grown} bytes");
        drop(touched);

        // Once the process is gone the kept file fails and a fresh open gives the reason.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(read_stat(pid).is_ok());
        assert!(resident_bytes(pid).is_ok());
        assert_eq!(kept().len(), 4);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(read_stat(pid).unwrap_err(), "not found");
        assert_eq!(resident_bytes(pid).unwrap_err(), "not found");
        assert_eq!(kept(), vec![(me, c"stat"), (me, c"statm")]);

        // At most KEPT_FILES files, the least recently read closed first.
        let mut kids: Vec<_> = (0..KEPT_FILES)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap()
            })
            .collect();
        for kid in &kids {
            read_stat(kid.id() as i32).unwrap();
        }
        let now = kept();
        assert_eq!(now.len(), KEPT_FILES);
        assert!(now.iter().all(|(p, _)| *p != me));
        assert_eq!(
            now[KEPT_FILES - 1],
            (kids[KEPT_FILES - 1].id() as i32, c"stat")
        );
        for kid in &mut kids {
            let _ = kid.kill();
            let _ = kid.wait();
        }
    }

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "the test starts the process it inspects"
    )]
    fn fd_count_from_the_directory_size_matches_the_listing() {
        // Another process, as a check looks at: listing our own fd directory would count
        // the listing's own descriptor. bash holds 200 more fds than it starts with
        // (dash reads only one-digit descriptors in redirections).
        let opens: String = (10..210)
            .map(|fd| format!("exec {fd}</dev/null; "))
            .collect();
        let mut child = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("{opens}read -t 30 _"))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut counts = (0, 0);
        for _ in 0..500 {
            counts = (count_fds_listed(pid).unwrap(), count_fds(pid).unwrap());
            if counts.0 >= 200 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        let (listed, fast) = counts;
        assert!(listed >= 200, "{counts:?}");
        assert_eq!(fast, listed, "size-based count, listing");
        // No such process: the listing's error, as before.
        assert_eq!(
            count_fds(i32::MAX).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
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
