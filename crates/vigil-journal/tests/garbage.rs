//! Real journal files as fixtures (tests/data, written by systemd-journald 252 and cut after
//! their last object; see `write_fixtures` in real_journald.rs), and garbage: random bytes,
//! truncations at every length and random corruption of the fixtures go through the whole
//! reader (file parser and follower) without a panic.
//!
//! Not gated: needs nothing but the files in tests/data.
#![allow(clippy::unwrap_used)] // Test code: a panic is a test failure.

mod common;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vigil_journal::{Follower, JournalFile, Limits, Position, Roots, read_all_entries};

const FIXTURES: [&str; 2] = ["compact-keyed", "regular-jenkins"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/{name}.journal"))
}

#[test]
fn fixtures_read_exactly_as_journalctl_exported_them() {
    for name in FIXTURES {
        let path = fixture(name);
        let export_text = std::fs::read(path.with_extension("export")).unwrap();
        let theirs = common::parse_export(&export_text);
        let ours = read_all_entries(&path).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name}: entry count");
        assert!(ours.len() > 50);
        let mut jf = JournalFile::open(&path).unwrap();
        let (mut s1, mut s2) = (Vec::new(), Vec::new());
        for (mine, (cursor, fields)) in ours.iter().zip(&theirs) {
            assert_eq!(&mine.cursor.to_string(), cursor, "{name}");
            let mut a = mine.fields.clone();
            let mut b = fields.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b, "{name}: fields of {cursor}");
            for f in &mine.fields {
                assert!(
                    jf.find_data(f, &mut s1, &mut s2).unwrap().is_some(),
                    "{name}: hash lookup"
                );
            }
        }
        assert!(
            jf.find_data(b"MESSAGE=not in this file", &mut s1, &mut s2)
                .unwrap()
                .is_none()
        );
    }
}

/// Puts `bytes` as `system.journal` into a directory a follower already ran on (so the
/// file is new and read from its start), polls, and returns the unit's messages.
fn follow_fresh(bytes: &[u8], unit: &str) -> Result<Vec<Vec<u8>>, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Follower::new(unit, Roots::Directory(dir.path().to_owned()));
    f.poll(Limits::default(), |_| {})
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("system.journal"), bytes).unwrap();
    let mut got = Vec::new();
    f.poll(Limits::default(), |e| got.push(e.message.to_vec()))
        .map_err(|e| e.to_string())?;
    // A second poll must not hand the same entries again.
    let mut again = 0;
    f.poll(Limits::default(), |_| again += 1)
        .map_err(|e| e.to_string())?;
    assert_eq!(again, 0, "entries handed twice");
    Ok(got)
}

#[test]
fn a_file_that_appears_after_the_first_run_is_read_from_its_start() {
    for name in FIXTURES {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let got = follow_fresh(&bytes, "vigil-mixed.service").unwrap();
        assert_eq!(got.len(), 2, "{name}");
        assert_eq!(got[0], b"from the unit");
        assert!(got[1].starts_with(b"big from the unit abc"));
        assert_eq!(
            got[1].len(),
            "big from the unit ".len() + 3000,
            "the compressed message whole"
        );
        assert!(follow_fresh(&bytes, "absent.service").unwrap().is_empty());
    }
}

#[test]
fn the_entry_limit_leaves_the_rest_for_the_next_run() {
    let bytes = std::fs::read(fixture("compact-keyed")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut f = Follower::new(
        "vigil-mixed.service",
        Roots::Directory(dir.path().to_owned()),
    );
    f.poll(Limits::default(), |_| {}).unwrap();
    std::fs::write(dir.path().join("system.journal"), &bytes).unwrap();
    let one = Limits { entries: 1 };
    let mut got = Vec::new();
    let p = f.poll(one, |e| got.push(e.message.to_vec())).unwrap();
    assert!(p.more_pending);
    let p = f.poll(one, |e| got.push(e.message.to_vec())).unwrap();
    assert_eq!(got.len(), 2);
    assert!(!p.more_pending || p.entries == 1);
    let p = f.poll(one, |e| got.push(e.message.to_vec())).unwrap();
    assert_eq!((got.len(), p.entries, p.more_pending), (2, 0, false));
}

/// A file deleted before the follower read it to its end is said in the run's problems,
/// once; one read to its end that journald would not write again (`*.journal~`) is not.
#[test]
fn a_file_deleted_before_it_was_read_to_its_end_is_reported_once() {
    let bytes = std::fs::read(fixture("compact-keyed")).unwrap();
    let unit = "vigil-mixed.service";
    let dir = tempfile::tempdir().unwrap();
    let mut f = Follower::new(unit, Roots::Directory(dir.path().to_owned()));
    f.poll(Limits::default(), |_| {}).unwrap();
    let unread = dir.path().join("unread.journal~");
    let read = dir.path().join("read.journal~");
    std::fs::write(&unread, &bytes).unwrap();
    let p = f.poll(Limits { entries: 1 }, |_| {}).unwrap();
    assert!(p.more_pending && p.problems.is_empty(), "{p:?}");
    std::fs::remove_file(&unread).unwrap();
    std::fs::write(&read, &bytes).unwrap();
    let p = f.poll(Limits::default(), |_| {}).unwrap();
    assert_eq!(p.entries, 2, "the new file, whole");
    assert_eq!(
        p.problems,
        [format!(
            "{}: deleted before it was read to its end; entries of {unit} in it may be missed",
            unread.display()
        )]
    );
    std::fs::remove_file(&read).unwrap();
    let p = f.poll(Limits::default(), |_| {}).unwrap();
    assert!(p.problems.is_empty(), "{p:?}");
    assert_eq!((p.files, p.entries), (0, 0));
}

/// The same in a new process (a cron run): a file of the saved position deleted before
/// it was read to its end is said, by count (the position keeps inodes, not names).
#[test]
fn a_file_of_a_saved_position_deleted_unread_is_reported() {
    let bytes = std::fs::read(fixture("compact-keyed")).unwrap();
    let unit = "vigil-mixed.service";
    let dir = tempfile::tempdir().unwrap();
    let roots = Roots::Directory(dir.path().to_owned());
    let mut f = Follower::new(unit, roots.clone());
    f.poll(Limits::default(), |_| {}).unwrap();
    let unread = dir.path().join("unread.journal~");
    std::fs::write(&unread, &bytes).unwrap();
    f.poll(Limits { entries: 1 }, |_| {}).unwrap();
    let text = f.position().unwrap().to_string();
    let mut g = Follower::new(unit, roots);
    g.resume(text.parse::<Position>().unwrap()).unwrap();
    std::fs::remove_file(&unread).unwrap();
    let p = g.poll(Limits::default(), |_| {}).unwrap();
    assert_eq!(
        p.problems,
        [format!(
            "1 file of the saved position: deleted before it was read to its end; entries of {unit} in it may be missed"
        )]
    );
}

/// Whatever the bytes, the reader returns (an error at worst) and never panics.
fn exercise(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.journal");
    std::fs::write(&path, bytes).unwrap();
    let _ = read_all_entries(&path);
    if let Ok(mut jf) = JournalFile::open(&path) {
        let (mut s1, mut s2) = (Vec::new(), Vec::new());
        let _ = jf.find_data(b"_SYSTEMD_UNIT=vigil-mixed.service", &mut s1, &mut s2);
        let _ = jf.find_data(b"MESSAGE=plain entry 3", &mut s1, &mut s2);
    }
    let _ = follow_fresh(bytes, "vigil-mixed.service");
}

#[test]
fn every_truncation_of_a_real_file_is_survived() {
    for name in FIXTURES {
        let bytes = std::fs::read(fixture(name)).unwrap();
        // Every 8-byte boundary in the header and the first objects, then strides.
        let mut cuts: Vec<usize> = (0..2048).step_by(8).collect();
        cuts.extend((2048..bytes.len()).step_by(997));
        for cut in cuts {
            exercise(&bytes[..cut]);
        }
    }
}

#[test]
fn a_half_written_tail_is_retried_not_skipped() {
    // The file as a reader may see it while journald appends: the header already counts
    // the last entries, the bytes are not there yet. Those entries are not handed over
    // and not skipped: once the rest is written, they are read.
    let bytes = std::fs::read(fixture("compact-keyed")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("system.journal");
    let mut f = Follower::new(
        "vigil-mixed.service",
        Roots::Directory(dir.path().to_owned()),
    );
    f.poll(Limits::default(), |_| {}).unwrap();
    // Zero the last quarter of the file (objects "not yet written"), keep the size.
    let mut partial = bytes.clone();
    let from = bytes.len() * 3 / 4;
    partial[from..].fill(0);
    std::fs::write(&path, &partial).unwrap();
    let mut got = Vec::new();
    let _ = f.poll(Limits::default(), |e| got.push(e.message.to_vec()));
    // Same inode, now complete.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes))
        .unwrap();
    f.poll(Limits::default(), |e| got.push(e.message.to_vec()))
        .unwrap();
    assert_eq!(
        got.len(),
        2,
        "{:?}",
        got.iter()
            .map(|m| String::from_utf8_lossy(&m[..m.len().min(20)]).into_owned())
            .collect::<Vec<_>>()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_survived(mut bytes in proptest::collection::vec(any::<u8>(), 0..4096), sig in any::<bool>()) {
        if sig && bytes.len() >= 8 {
            // Mostly past the signature check, to reach the deeper paths.
            bytes[..8].copy_from_slice(b"LPKSHHRH");
        }
        exercise(&bytes);
    }

    #[test]
    fn corrupted_real_files_are_survived(
        which in 0usize..2,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        header_edits in proptest::collection::vec((0usize..272, any::<u8>()), 0..4),
    ) {
        let mut bytes = std::fs::read(fixture(FIXTURES[which])).unwrap();
        let n = bytes.len();
        for (at, value) in edits {
            bytes[at.index(n)] = value;
        }
        for (at, value) in header_edits {
            bytes[at] = value;
        }
        exercise(&bytes);
    }
}
