//! CPU time and memory of a process, from `/proc/PID/{stat,status,smaps_rollup}`.

use std::fs;
use std::io;

/// CPU time and thread count from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// `utime` (field 14), in clock ticks.
    pub utime: u64,
    /// `stime` (field 15), in clock ticks.
    pub stime: u64,
    /// `num_threads` (field 20).
    pub threads: u64,
}

impl CpuTicks {
    /// `utime + stime`.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Parse the content of `/proc/PID/stat`.
///
/// The second field (`comm`) is in parentheses and may contain spaces, so
/// fields are counted after the last `)`.
#[must_use]
pub fn parse_stat(text: &str) -> Option<CpuTicks> {
    let after = &text[text.rfind(')')? + 1..];
    // `after` starts with field 3 (state).
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(CpuTicks {
        utime: field(14)?,
        stime: field(15)?,
        threads: field(20)?,
    })
}

/// Read `/proc/PID/stat`.
///
/// # Errors
/// When the process is gone or the file does not parse.
pub fn read_stat(pid: u32) -> io::Result<CpuTicks> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad stat"))
}

/// Memory figures in KiB from `/proc/PID/smaps_rollup` and `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size.
    pub rss_kib: u64,
    /// Proportional set size (shared pages divided among their users).
    pub pss_kib: u64,
    /// PSS of anonymous memory (heap, stacks).
    pub pss_anon_kib: u64,
    /// PSS of file-backed memory (the binary, libraries).
    pub pss_file_kib: u64,
    /// Private dirty pages.
    pub private_dirty_kib: u64,
    /// Peak RSS (`VmHWM`).
    pub hwm_kib: u64,
    /// Threads (`Threads:` in status).
    pub threads: u64,
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Parse `smaps_rollup` and `status` contents.
#[must_use]
pub fn parse_memory(smaps_rollup: &str, status: &str) -> Memory {
    Memory {
        rss_kib: kib_field(smaps_rollup, "Rss").unwrap_or(0),
        pss_kib: kib_field(smaps_rollup, "Pss").unwrap_or(0),
        pss_anon_kib: kib_field(smaps_rollup, "Pss_Anon").unwrap_or(0),
        pss_file_kib: kib_field(smaps_rollup, "Pss_File").unwrap_or(0),
        private_dirty_kib: kib_field(smaps_rollup, "Private_Dirty").unwrap_or(0),
        hwm_kib: kib_field(status, "VmHWM").unwrap_or(0),
        threads: kib_field(status, "Threads").unwrap_or(0),
    }
}

/// Read the memory figures of `pid`.
///
/// # Errors
/// When the process is gone or `/proc` is not readable.
pub fn read_memory(pid: u32) -> io::Result<Memory> {
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(parse_memory(&rollup, &status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_comm() {
        let s = "123 (a b) c) S 1 123 123 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 7 0 1000 \
                 12345678 900 18446744073709551615";
        let t = parse_stat(s).unwrap();
        assert_eq!((t.utime, t.stime, t.threads, t.total()), (250, 75, 7, 325));
    }

    #[test]
    fn memory_fields() {
        let rollup = "55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  12000 kB\nPss:  9000 kB\n\
                      Pss_Anon: 7000 kB\nPss_File: 2000 kB\nPss_Shmem: 0 kB\nPrivate_Dirty: 6900 kB\n";
        let status = "Name:\tvigil\nVmHWM:\t   13000 kB\nThreads:\t5\n";
        let m = parse_memory(rollup, status);
        assert_eq!(m.rss_kib, 12000);
        assert_eq!(m.pss_kib, 9000);
        assert_eq!(m.pss_anon_kib, 7000);
        assert_eq!(m.pss_file_kib, 2000);
        assert_eq!(m.private_dirty_kib, 6900);
        assert_eq!(m.hwm_kib, 13000);
        assert_eq!(m.threads, 5);
    }
}
