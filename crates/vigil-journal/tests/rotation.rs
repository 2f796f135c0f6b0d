//! A follower across journal file rotation and compressed large messages, against a real
//! systemd-journald writing while the follower reads (vigil_test_helpers::journald):
//! rotation by SIGUSR2 (what `journalctl --rotate` asks for) and by journald itself when a
//! file reaches `RuntimeMaxFileSize`; every entry of the unit is handed over exactly once.
//!
//! Gated: runs only with `VIGIL_TEST_SERVERS=1`; otherwise each test prints "skipped".
#![allow(clippy::unwrap_used)] // Test code: a panic is a test failure.

use std::collections::BTreeSet;
use std::time::Duration;

use vigil_journal::{Follower, Limits, Roots};
use vigil_test_helpers::journald::{Journald, Options};

fn enabled() -> bool {
    if std::env::var_os("VIGIL_TEST_SERVERS").is_some_and(|v| v == "1") {
        assert!(
            Journald::available(),
            "VIGIL_TEST_SERVERS=1 but the journald test bed is missing"
        );
        true
    } else {
        eprintln!("skipped: set VIGIL_TEST_SERVERS=1");
        false
    }
}

fn poll(f: &mut Follower) -> Vec<String> {
    let mut got = Vec::new();
    let p = f
        .poll(Limits::default(), |e| {
            got.push(String::from_utf8_lossy(e.message).into_owned())
        })
        .unwrap();
    assert!(
        p.problems.is_empty() || p.problems.iter().all(|x| x.contains("retrying")),
        "{:?}",
        p.problems
    );
    got
}

#[test]
fn rotation_keeps_the_old_files_unread_tail_and_reads_the_new_file() {
    if !enabled() {
        return;
    }
    let mut j = Journald::start(&Options::default());
    let unit = "vigil-rot.service";
    let mut w = j.unit_writer(unit, "rot");
    let mut f = Follower::new(unit, Roots::Directory(j.root.clone()));
    assert!(poll(&mut f).is_empty());

    w.line("a");
    w.line("b");
    j.wait_for_message("rot", "b");
    j.rotate();
    w.line("c");
    w.line("d");
    j.wait_for_message("rot", "d");
    let mut got = poll(&mut f);
    got.sort();
    assert_eq!(got, ["a", "b", "c", "d"]);
    assert_eq!(j.archived().len(), 1);

    // Several rotations between two runs.
    w.line("e");
    j.wait_for_message("rot", "e");
    j.rotate();
    w.line("f");
    j.wait_for_message("rot", "f");
    j.rotate();
    w.line("g");
    j.wait_for_message("rot", "g");
    let mut got = poll(&mut f);
    got.sort();
    assert_eq!(got, ["e", "f", "g"]);
    assert_eq!(j.archived().len(), 3);
    assert!(poll(&mut f).is_empty());

    // A follower started after the rotations starts at the end of every file.
    let mut late = Follower::new(unit, Roots::Directory(j.root.clone()));
    assert!(poll(&mut late).is_empty());
    w.line("h");
    j.wait_for_message("rot", "h");
    assert_eq!(poll(&mut late), ["h"]);
    assert_eq!(poll(&mut f), ["h"]);
    w.finish();
}

#[test]
fn a_busy_unit_with_rotations_and_large_messages_is_read_exactly_once() {
    if !enabled() {
        return;
    }
    // Small files: journald also rotates by itself.
    let mut j = Journald::start(&Options {
        max_file_size: Some("1M".into()),
        ..Options::default()
    });
    let unit = "vigil-busy.service";
    let mut f = Follower::new(unit, Roots::Directory(j.root.clone()));
    assert!(poll(&mut f).is_empty());
    let n = 3000usize;
    let big_every = 50;
    let big_tail: String = "0123456789abcdef".repeat(1500); // 24 KB: compressed (ZSTD)
    let line = |i: usize| {
        if i.is_multiple_of(big_every) {
            format!("line {i} {big_tail} error")
        } else {
            format!("line {i}")
        }
    };
    let mut w = j.unit_writer(unit, "busy");
    let pid = j.pid();
    let rotator = std::thread::spawn(move || {
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(40));
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).unwrap(),
                rustix::process::Signal::USR2,
            )
            .unwrap();
        }
    });
    let mut got: Vec<String> = Vec::new();
    for i in 0..n {
        w.line(&line(i));
        if i.is_multiple_of(100) {
            got.extend(poll(&mut f));
        }
    }
    rotator.join().unwrap();
    let last = line(n - 1);
    j.wait_for_message("busy", &last);
    got.extend(poll(&mut f));
    got.extend(poll(&mut f));
    w.finish();

    assert!(
        j.archived().len() >= 4,
        "rotations happened: {:?}",
        j.archived()
    );
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "an entry was handed over twice");
    assert_eq!(got.len(), n, "every entry once");
    let want: BTreeSet<String> = (0..n).map(line).collect();
    assert_eq!(unique, want.iter().collect());
    assert!(
        got.iter()
            .any(|m| m.len() > 24_000 && m.ends_with(" error")),
        "large messages whole"
    );
}
