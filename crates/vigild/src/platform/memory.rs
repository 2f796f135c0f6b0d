//! Giving back code pages the daemon is not running.
//!
//! Most of the code a daemon has touched by the time it is up ran once: argument and
//! config parsing, validation, the ledger's migrations, the first spawn of every service.
//! The kernel maps file-backed pages around each fault in 64 KiB blocks (fault-around), so
//! every touched function also maps its neighbours: after starting 500 services, 7 of the
//! binary's 10 MiB of code were mapped and counted in Vigil's PSS, while the steady state
//! (waiting, the odd restart, the control socket) runs in about 1 MiB of it.
//!
//! The same happens after any burst of activity: the first restart after a quiet spell
//! maps about 4.5 MiB of code around the 1 MiB or so it runs (the guard, SQLite's write
//! path, the spawn, the log). So [`release_loop`] releases 3 s after startup and then,
//! every 30 s, again if the mapped file pages grew by more than 1 MiB since the last
//! release: a quiet daemon's footprint returns to its steady state within a minute of
//! activity, and one whose activity is continuous stops releasing once nothing new gets
//! mapped. The price is paid by the next burst: a few hundred minor faults (a fraction of
//! a millisecond, no I/O while the pages are cached).
//!
//! [`release_code_pages`] drops the executable's read-only, never-written mappings from
//! the page tables (`MADV_DONTNEED`). Their pages stay in the page cache, and whatever runs
//! next maps them back with a minor fault: contents cannot change, since for a private file
//! mapping without copied-on-write pages `MADV_DONTNEED` means "re-read from the file". A
//! mapping holding any copied-on-write page (relocated RELRO data, written globals) would
//! lose its contents, so a mapping is released only when smaps reports no anonymous page
//! in it. Then `malloc_trim` returns the free heap pages startup left behind.

use std::time::Duration;

/// How long after startup the first release runs: long enough for the first spawns,
/// state writes and readiness to finish.
pub const RELEASE_AFTER: Duration = Duration::from_secs(3);
/// How often the mapped file pages are looked at afterwards (one read of smaps_rollup).
pub const RECHECK_EVERY: Duration = Duration::from_secs(30);
/// Growth of mapped file pages since the last release that calls for another.
pub const REGROWTH_KIB: u64 = 1024;

/// Releases [`RELEASE_AFTER`] startup, then whenever the mapped file pages grew by
/// [`REGROWTH_KIB`] (looked at every [`RECHECK_EVERY`]), until `cancel`. Each release is
/// logged at debug level.
pub async fn release_loop(cancel: tokio_util::sync::CancellationToken) {
    let mut wait = RELEASE_AFTER;
    // Mapped file pages (PSS, KiB) right after the last release.
    let mut floor: Option<u64> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = RECHECK_EVERY;
        if !due(floor, mapped_file_kib()) {
            continue;
        }
        match release_code_pages() {
            Ok(r) => {
                tracing::debug!(
                    event = "pages_released",
                    code_kib = r.code_kib,
                    mappings = r.mappings,
                    "released {} KiB of code and read-only data pages not in use",
                    r.code_kib
                )
            }
            Err(error) => {
                tracing::debug!(event = "pages_released", %error, "cannot release code pages");
            }
        }
        floor = mapped_file_kib();
    }
}

/// Whether to release again: after startup (no floor yet), when the mapped file pages
/// cannot be read, or when they grew by [`REGROWTH_KIB`] since the last release.
fn due(floor: Option<u64>, now: Option<u64>) -> bool {
    match (floor, now) {
        (Some(floor), Some(now)) => now >= floor + REGROWTH_KIB,
        _ => true,
    }
}

/// This process's file-backed PSS in KiB (`Pss_File` of /proc/self/smaps_rollup).
fn mapped_file_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss_File:"))
        .and_then(|rest| rest.split_ascii_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// What a release gave back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Resident pages of the executable's code and read-only data unmapped, in KiB.
    pub code_kib: u64,
    /// Mappings released.
    pub mappings: usize,
}

/// One mapping of the executable file, from `/proc/self/smaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    private: bool,
    inode: u64,
    rss_kib: u64,
    anonymous_kib: u64,
}

/// Parses smaps text: every mapping with its permissions, inode, Rss and Anonymous.
fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            let perms = fields.next().unwrap_or("");
            let _offset = fields.next();
            let _dev = fields.next();
            let inode = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            out.push(Mapping {
                start,
                end,
                writable: perms.as_bytes().get(1) == Some(&b'w'),
                private: perms.as_bytes().get(3) == Some(&b'p'),
                inode,
                rss_kib: 0,
                // Unknown until its field is seen: never release on a missing field.
                anonymous_kib: u64::MAX,
            });
            continue;
        }
        let Some(current) = out.last_mut() else {
            continue;
        };
        let value = || fields.clone().next().and_then(|s| s.parse::<u64>().ok());
        match first {
            "Rss:" => current.rss_kib = value().unwrap_or(0),
            "Anonymous:" => current.anonymous_kib = value().unwrap_or(u64::MAX),
            _ => {}
        }
    }
    out
}

/// The executable's mappings that can be dropped without losing anything.
fn releasable(maps: &[Mapping], exe_inode: u64) -> impl Iterator<Item = &Mapping> {
    maps.iter().filter(move |m| {
        m.inode == exe_inode && m.inode != 0 && m.private && !m.writable && m.anonymous_kib == 0
    })
}

/// Drops the executable's clean code and read-only data pages from this process's page
/// tables and trims the heap (see the module docs). Safe to call at any time from any
/// thread; costs one smaps read.
#[allow(unsafe_code)]
pub fn release_code_pages() -> std::io::Result<Released> {
    use std::os::unix::fs::MetadataExt as _;
    let exe_inode = std::fs::metadata("/proc/self/exe")?.ino();
    let maps = parse_smaps(&std::fs::read_to_string("/proc/self/smaps")?);
    let mut released = Released::default();
    for m in releasable(&maps, exe_inode) {
        // SAFETY: the range is one whole mapping of the executable file, private, not
        // writable and with no anonymous (copied-on-write) page, as smaps reported it a
        // moment ago; nothing can write to a read-only mapping in between. For such a
        // mapping MADV_DONTNEED only drops page-table entries: the next access faults the
        // same file contents back in, so no reader can observe a difference.
        let rc = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            released.code_kib += m.rss_kib;
            released.mappings += 1;
        }
    }
    // musl (the static build) has no malloc_trim: its allocator returns memory by itself.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory to the system; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d02d2c4000-55d02d5ad000 r--p 00000000 fe:00 5572415                    /usr/bin/vigil
Size:               2980 kB
Rss:                1748 kB
Anonymous:             0 kB
55d02d5ad000-55d02df48000 r-xp 002e8000 fe:00 5572415                    /usr/bin/vigil
Size:              10092 kB
Rss:                6988 kB
Anonymous:             0 kB
55d02df48000-55d02dfa9000 r--p 00c82000 fe:00 5572415                    /usr/bin/vigil
Size:                388 kB
Rss:                 388 kB
Anonymous:           388 kB
55d02dfa9000-55d02dfb1000 rw-p 00ce2000 fe:00 5572415                    /usr/bin/vigil
Size:                 32 kB
Rss:                  32 kB
Anonymous:            20 kB
7f0000000000-7f0000021000 r-xp 00000000 fe:00 99                         /usr/lib/libc.so.6
Rss:                  12 kB
Anonymous:             0 kB
7f0000100000-7f0000200000 rw-p 00000000 00:00 0
Rss:                 376 kB
Anonymous:           376 kB
55d02e000000-55d02e001000 r--p 00000000 fe:00 5572415                    /usr/bin/vigil
Rss:                   4 kB
";

    #[test]
    fn only_clean_read_only_mappings_of_the_executable_are_released() {
        let maps = parse_smaps(SAMPLE);
        assert_eq!(maps.len(), 7);
        let picked: Vec<(usize, u64)> = releasable(&maps, 5572415)
            .map(|m| (m.start, m.rss_kib))
            .collect();
        // Code and rodata; not the relocated RELRO data (anonymous pages), not the
        // writable data, not libc, not the heap, not a mapping without an Anonymous line.
        assert_eq!(
            picked,
            vec![(0x55d0_2d2c_4000, 1748), (0x55d0_2d5a_d000, 6988)]
        );
    }

    #[test]
    fn released_again_only_after_regrowth() {
        assert!(due(None, Some(900)), "the first release");
        assert!(!due(Some(900), Some(900)), "nothing new mapped");
        assert!(!due(Some(900), Some(900 + REGROWTH_KIB - 1)));
        assert!(
            due(Some(900), Some(900 + REGROWTH_KIB)),
            "a burst mapped 1 MiB more"
        );
        assert!(due(Some(900), None), "unreadable: release anyway");
        assert!(mapped_file_kib().is_some_and(|k| k > 0));
    }

    #[test]
    fn a_released_process_keeps_running_its_code_and_data() {
        // The test binary releases its own code while the harness's other threads run;
        // everything after this must behave, and relocated data (vtables, string tables)
        // must be intact.
        let before: Vec<String> = (0..64).map(|i| format!("{i:>4}")).collect();
        let released = release_code_pages().expect("smaps readable");
        assert!(released.mappings >= 1, "{released:?}");
        assert!(released.code_kib > 0, "{released:?}");
        let after: Vec<String> = (0..64).map(|i| format!("{i:>4}")).collect();
        assert_eq!(before, after);
        let boxed: Box<dyn std::fmt::Display> = Box::new(42u32);
        assert_eq!(boxed.to_string(), "42");
        let mut m = std::collections::HashMap::new();
        m.insert("a", 1);
        assert_eq!(m.get("a"), Some(&1));
        // And again: releasing twice is harmless.
        release_code_pages().expect("second release");
        assert_eq!(format!("{:?}", Some(1)), "Some(1)");
    }
}
