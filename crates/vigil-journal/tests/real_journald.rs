//! The reader against files a real systemd-journald writes while the test reads them
//! (the host's journald in a private mount namespace: vigil_test_helpers::journald).
//!
//! - Every entry decodes to exactly what `journalctl --file … -o export` prints (fields and
//!   cursor), in all four modes journald 252 can write (compact or regular items, keyed or
//!   Jenkins hash), with ZSTD-compressed large fields; every field value is found again
//!   through the file's hash table (so the hash functions are right).
//! - A follower reads a unit's new entries only, whichever way they reach journald.
//!
//! Gated: runs only with `VIGIL_TEST_SERVERS=1` (root, systemd, util-linux); otherwise each
//! test prints "skipped" and returns.
#![allow(clippy::unwrap_used)] // Test code: a panic is a test failure.
#![allow(
    clippy::disallowed_methods,
    reason = "tests run journalctl as the oracle"
)]

mod common;

use std::path::Path;

use common::export;

use vigil_journal::{Follower, JournalFile, Limits, Roots, read_all_entries};
use vigil_test_helpers::journald::{Journald, Options};

fn enabled() -> bool {
    if std::env::var_os("VIGIL_TEST_SERVERS").is_some_and(|v| v == "1") {
        assert!(
            Journald::available(),
            "VIGIL_TEST_SERVERS=1 but systemd-journald/systemd-cat/unshare are missing"
        );
        true
    } else {
        eprintln!("skipped: set VIGIL_TEST_SERVERS=1");
        false
    }
}

const MODES: [(bool, bool); 4] = [(true, true), (false, false), (true, false), (false, true)];

fn options(compact: bool, keyed_hash: bool) -> Options {
    Options {
        compact,
        keyed_hash,
        ..Options::default()
    }
}

/// Entries of every shape; `unit`'s lines come from a writer in its cgroup (tests running
/// at the same time must use different units: each writer removes its cgroup when done).
fn write_mixed(j: &mut Journald, big: usize, unit: &str) {
    let big: String = (0..big).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    for i in 0..50 {
        j.send(&[
            ("MESSAGE", format!("plain entry {i}").as_bytes()),
            ("SYSLOG_IDENTIFIER", b"vigil-test"),
            ("PRIORITY", b"6"),
            ("VIGIL_N", i.to_string().as_bytes()),
        ]);
    }
    j.send(&[("MESSAGE", b"two\nlines"), ("BINARY", b"\x00\x01\xff\n")]);
    j.send(&[
        ("MESSAGE", format!("{big} error at the end").as_bytes()),
        ("SYSLOG_IDENTIFIER", b"vigil-big"),
    ]);
    j.send(&[
        ("MESSAGE", b"same big field again"),
        ("BIG_FIELD", big.as_bytes()),
    ]);
    j.send(&[("MESSAGE", b"and again"), ("BIG_FIELD", big.as_bytes())]);
    // journald resolves the unit from the writer's cgroup: keep it alive until then.
    let mut w = j.unit_writer(unit, "mixed");
    w.line("from the unit");
    w.line(&format!("big from the unit {big}"));
    j.wait_for_message("mixed", "from the unit");
    w.finish();
    j.sync();
}

#[test]
fn every_entry_reads_as_journalctl_exports_it_in_every_mode() {
    if !enabled() {
        return;
    }
    for (compact, keyed) in MODES {
        let mut j = Journald::start(&options(compact, keyed));
        write_mixed(&mut j, 40_000, "vigil-mixed.service");
        let file = j.dir.join("system.journal");
        let mut jf = JournalFile::open(&file).unwrap();
        let h = jf.header().clone();
        assert_eq!(h.compact(), compact, "compact flag");
        assert_eq!(h.keyed_hash(), keyed, "keyed-hash flag");
        let ours = read_all_entries(&file).unwrap();
        let theirs = export(&file);
        assert!(
            theirs.len() >= 56,
            "journalctl exported {} entries",
            theirs.len()
        );
        // journald may append while we read: compare the common prefix.
        let n = ours.len().min(theirs.len());
        assert!(n >= 56);
        let mut compressed_seen = false;
        let (mut s1, mut s2) = (Vec::new(), Vec::new());
        for (mine, (cursor, fields)) in ours.iter().zip(&theirs).take(n) {
            assert_eq!(
                &mine.cursor.to_string(),
                cursor,
                "cursor (compact {compact}, keyed {keyed})"
            );
            let mut a = mine.fields.clone();
            let mut b = fields.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b, "fields of {cursor}");
            compressed_seen |= mine.fields.iter().any(|f| f.len() > 30_000);
            // Every field value is found through the hash table.
            for f in &mine.fields {
                let found = jf.find_data(f, &mut s1, &mut s2).unwrap();
                assert!(
                    found.is_some(),
                    "hash lookup of {:?}",
                    String::from_utf8_lossy(&f[..f.len().min(40)])
                );
            }
        }
        assert!(compressed_seen, "the large fields were read back whole");
        assert!(
            ours.iter()
                .any(|e| e.field("_SYSTEMD_UNIT") == Some(b"vigil-mixed.service"))
        );
        assert!(
            ours.iter()
                .any(|e| e.field("BINARY") == Some(b"\x00\x01\xff\n"))
        );
    }
}

#[test]
fn journald_compresses_large_fields_with_zstd() {
    if !enabled() {
        return;
    }
    let mut j = Journald::start(&Options::default());
    write_mixed(&mut j, 40_000, "vigil-zstd.service");
    let h = JournalFile::open(&j.dir.join("system.journal"))
        .unwrap()
        .header()
        .clone();
    // Debian 12 (systemd 252): ZSTD, keyed hash, compact.
    assert_eq!(
        h.incompatible_flags & 0b11111,
        0b11100,
        "flags {:#x}",
        h.incompatible_flags
    );
}

/// Messages of `unit` handed over by one poll.
fn poll(f: &mut Follower) -> (vigil_journal::Poll, Vec<String>) {
    let mut got = Vec::new();
    let p = f
        .poll(Limits::default(), |e| {
            got.push(String::from_utf8_lossy(e.message).into_owned())
        })
        .unwrap();
    (p, got)
}

#[test]
fn a_follower_reads_only_the_units_new_entries_in_every_mode() {
    if !enabled() {
        return;
    }
    for (compact, keyed) in MODES {
        let mut j = Journald::start(&options(compact, keyed));
        let unit = "vigil-follow.service";
        let mut w = j.unit_writer(unit, "follow");
        w.line("before the first run");
        j.wait_for_message("follow", "before the first run");
        let mut f = Follower::new(unit, Roots::Directory(j.root.clone()));
        let (p, got) = poll(&mut f);
        assert!(
            p.first && got.is_empty(),
            "first run reads nothing: {got:?}"
        );

        // The unit's own lines, other traffic, a second unit.
        w.line("one");
        let mut other = j.unit_writer("vigil-other.service", "other");
        other.line("other unit error");
        for i in 0..200 {
            j.send(&[("MESSAGE", format!("noise {i}").as_bytes())]);
        }
        w.line("two");
        j.wait_for_message("follow", "two");
        j.wait_for_message("other", "other unit error");
        let (p, got) = poll(&mut f);
        assert!(!p.first);
        assert_eq!(got, ["one", "two"], "compact {compact} keyed {keyed}");
        assert!(f.cursor().is_some());

        // systemd's messages about the unit (UNIT= from PID 1), another root daemon's
        // (OBJECT_SYSTEMD_UNIT= from uid 0); UNIT= from anyone else does not count.
        j.send_as_pid1(&[
            ("MESSAGE", b"Started vigil-follow.service."),
            ("UNIT", unit.as_bytes()),
        ]);
        j.send(&[("MESSAGE", b"not pid 1"), ("UNIT", unit.as_bytes())]);
        j.send(&[
            ("MESSAGE", b"about it"),
            ("OBJECT_SYSTEMD_UNIT", unit.as_bytes()),
        ]);
        j.sync();
        let (_, got) = poll(&mut f);
        assert_eq!(got, ["Started vigil-follow.service.", "about it"]);

        // Nothing new: nothing read.
        let (p, got) = poll(&mut f);
        assert!(got.is_empty() && p.entries == 0);
        w.finish();
        other.finish();
    }
}

/// Regenerates the fixtures of tests/garbage.rs (`VIGIL_JOURNAL_WRITE_FIXTURES=1`): small
/// files a real journald wrote, cut after their last object, with journalctl's export.
#[test]
fn write_fixtures() {
    if std::env::var_os("VIGIL_JOURNAL_WRITE_FIXTURES").is_none() || !enabled() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, compact, keyed) in [
        ("compact-keyed", true, true),
        ("regular-jenkins", false, false),
    ] {
        let mut j = Journald::start(&Options {
            compact,
            keyed_hash: keyed,
            max_file_size: Some("512K".into()),
        });
        write_mixed(&mut j, 3000, "vigil-mixed.service");
        let src = j.dir.join("system.journal");
        let bytes = std::fs::read(&src).unwrap();
        j.stop();
        let bytes = std::fs::read(&src).unwrap_or(bytes);
        let h = vigil_journal::Header::parse(&bytes).unwrap();
        let tail = h.tail_object_offset as usize;
        let size = u64::from_le_bytes(bytes[tail + 8..tail + 16].try_into().unwrap()) as usize;
        let end = (tail + size).div_ceil(8) * 8;
        // journalctl refuses a file shorter than its arena: export the whole one.
        let whole = std::env::temp_dir().join(format!("vigil-fixture-{name}.journal"));
        std::fs::write(&whole, &bytes).unwrap();
        let path = dir.join(format!("{name}.journal"));
        std::fs::write(&path, &bytes[..end.min(bytes.len())]).unwrap();
        let out = std::process::Command::new("journalctl")
            .arg("--file")
            .arg(&whole)
            .args(["-o", "export", "--no-pager"])
            .output()
            .unwrap();
        std::fs::write(dir.join(format!("{name}.export")), out.stdout).unwrap();
        std::fs::remove_file(&whole).unwrap();
    }
}
