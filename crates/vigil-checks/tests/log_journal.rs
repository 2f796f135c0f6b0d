//! `kind = "log"` with `journal_unit`, end to end against a real systemd-journald (the
//! host's, in a private mount namespace: vigil_test_helpers::journald): a config parsed
//! from TOML, probed run after run while journald writes; only the unit's entries new since
//! the previous run count, also between two processes through a saved position
//! (`log::position`, `log::resume`), as a one-shot `vigil check` from cron runs.
//!
//! Gated: runs only with `VIGIL_TEST_SERVERS=1` (root, systemd, util-linux); otherwise each
//! test prints "skipped" and returns.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::path::Path;
use std::time::Duration;

use vigil_checks::model::{CheckKind, LogCheck};
use vigil_checks::probe::log;
use vigil_checks::{ProbeContext, ProbeOutcome, probe};
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

/// The check `[services.app.checks.c]` of a config with these lines.
fn from_toml(lines: &str) -> CheckKind {
    let src = format!(
        "[services.app]\ndriver = \"command\"\nrestart_command = [\"true\"]\n[services.app.checks.c]\nkind = \"log\"\n{lines}\n"
    );
    let config = vigil_config::parse(&src, Path::new("vigil.toml")).unwrap();
    config.services[0].checks[0].kind.clone()
}

async fn run(kind: &CheckKind) -> ProbeOutcome {
    probe(kind, Duration::from_secs(10), &ProbeContext::new()).await
}

#[tokio::test]
async fn a_units_new_error_entries_fail_the_check_once() {
    if !enabled() {
        return;
    }
    let mut j = Journald::start(&Options::default());
    let root = j.root.display().to_string();
    let kind = from_toml(&format!(
        "journal_unit = \"vigil-e2e\"\njournal_directory = \"{root}\"\npattern = \"error\""
    ));
    let mut app = j.unit_writer("vigil-e2e.service", "app");
    app.line("error from before Vigil started");
    j.wait_for_message("app", "error from before Vigil started");

    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!(
            "no new entry of vigil-e2e.service matches /error/ (first run: following 1 journal file in {root} from their ends)"
        )
    );

    // Errors of the unit, and errors of others (which do not count).
    let mut other = j.unit_writer("vigil-e2e-other.service", "other");
    other.line("error in another unit");
    app.line("starting");
    app.line("error: disk full");
    app.line("fine");
    app.line("another error");
    j.send(&[("MESSAGE", b"error from no unit")]);
    j.wait_for_message("app", "another error");
    j.wait_for_message("other", "error in another unit");
    let out = run(&kind).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        "2 new entries of vigil-e2e.service match /error/ (min 1): first: error: disk full"
    );

    // Seen: not counted again.
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        "no new entry of vigil-e2e.service matches /error/ (read 0 new entries of vigil-e2e.service in 1 journal file)"
    );

    // Rotation (`journalctl --rotate` = SIGUSR2): the new file is followed.
    app.line("error before rotation");
    j.wait_for_message("app", "error before rotation");
    j.rotate();
    app.line("error after rotation");
    j.wait_for_message("app", "error after rotation");
    let out = run(&kind).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        "2 new entries of vigil-e2e.service match /error/ (min 1): first: error before rotation"
    );

    // systemd's own message about the unit counts, as with `journalctl -u`.
    j.send_as_pid1(&[
        (
            "MESSAGE",
            b"vigil-e2e.service: Main process exited, code=exited, status=1/FAILURE; error",
        ),
        ("UNIT", b"vigil-e2e.service"),
    ]);
    j.sync();
    let out = run(&kind).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        "1 new entry of vigil-e2e.service matches /error/ (min 1): first: vigil-e2e.service: Main process exited, code=exited, status=1/FAILURE; error"
    );
    app.finish();
    other.finish();
}

#[tokio::test]
async fn min_matches_and_a_missing_directory() {
    if !enabled() {
        return;
    }
    let mut j = Journald::start(&Options::default());
    let root = j.root.display().to_string();
    let kind = from_toml(&format!(
        "journal_unit = \"vigil-min.service\"\njournal_directory = \"{root}\"\npattern = \"timeout\"\nmin_matches = 3"
    ));
    assert!(run(&kind).await.passed);
    let mut app = j.unit_writer("vigil-min.service", "min");
    app.line("timeout 1");
    app.line("ok");
    app.line("timeout 2");
    j.wait_for_message("min", "timeout 2");
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        "2 new entries of vigil-min.service match /timeout/, fewer than min_matches 3 (read 3 new entries of vigil-min.service in 1 journal file)"
    );
    for i in 0..3 {
        app.line(&format!("timeout again {i}"));
    }
    j.wait_for_message("min", "timeout again 2");
    let out = run(&kind).await;
    assert!(!out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        "3 new entries of vigil-min.service match /timeout/ (min 3): first: timeout again 0"
    );
    app.finish();

    let kind = from_toml(
        "journal_unit = \"x.service\"\njournal_directory = \"/nonexistent/journal\"\npattern = \"e\"",
    );
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    let out = run(&kind).await;
    assert_eq!(
        out.reason,
        "no new entry of x.service matches /e/: no journal files in /nonexistent/journal (yet)"
    );
}

fn log_check(kind: &CheckKind) -> &LogCheck {
    match kind {
        CheckKind::Log(check) => check,
        other => panic!("not a log check: {other:?}"),
    }
}

/// What the process that ran `kind` leaves behind: its position as a token; then the
/// check's state is forgotten, as in a new process.
fn end_process(kind: &CheckKind) -> String {
    let check = log_check(kind);
    let token = log::position(check).expect("a position after a run");
    log::forget_position(check);
    assert!(log::position(check).is_none());
    token
}

#[tokio::test]
async fn a_saved_position_carries_new_entries_to_the_next_process_across_rotation() {
    if !enabled() {
        return;
    }
    let mut j = Journald::start(&Options::default());
    let root = j.root.display().to_string();
    let kind = from_toml(&format!(
        "journal_unit = \"vigil-resume\"\njournal_directory = \"{root}\"\npattern = \"error\""
    ));
    let check = log_check(&kind);
    let mut app = j.unit_writer("vigil-resume.service", "resume");
    app.line("error from before the first run");
    j.wait_for_message("resume", "error from before the first run");
    assert!(log::position(check).is_none(), "no position before a run");
    let out = run(&kind).await;
    assert!(out.passed && out.reason.contains("(first run:"), "{out:?}");
    let token = end_process(&kind);
    assert!(
        token.starts_with("vigil-log/1 journal k=") && !token.contains('\n'),
        "{token}"
    );

    // Without the saved position a new process starts at the end: the defect.
    app.line("error lost without a position");
    j.wait_for_message("resume", "error lost without a position");
    let out = run(&kind).await;
    assert!(out.passed && out.reason.contains("(first run:"), "{out:?}");
    let token = end_process(&kind);

    // With it, the entries written in between are handed over, once.
    app.line("fine");
    app.line("error between two processes");
    j.wait_for_message("resume", "error between two processes");
    log::resume(check, &token).unwrap();
    let out = run(&kind).await;
    assert!(!out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        "1 new entry of vigil-resume.service matches /error/ (min 1): first: error between two processes"
    );
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        "no new entry of vigil-resume.service matches /error/ (read 0 new entries of vigil-resume.service in 1 journal file)"
    );

    // Across a rotation (`journalctl --rotate`) between the two processes.
    let token = end_process(&kind);
    app.line("error before rotation");
    j.wait_for_message("resume", "error before rotation");
    j.rotate();
    app.line("error after rotation");
    j.wait_for_message("resume", "error after rotation");
    log::resume(check, &token).unwrap();
    let out = run(&kind).await;
    assert!(!out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        "2 new entries of vigil-resume.service match /error/ (min 1): first: error before rotation"
    );
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        "no new entry of vigil-resume.service matches /error/ (read 0 new entries of vigil-resume.service in 2 journal files)"
    );

    // A token of another pattern is refused; the check then starts at the end.
    let token = end_process(&kind);
    let other = from_toml(&format!(
        "journal_unit = \"vigil-resume\"\njournal_directory = \"{root}\"\npattern = \"warn\""
    ));
    let e = log::resume(log_check(&other), &token).unwrap_err();
    assert!(e.contains("saved for another"), "{e}");
    let e = log::resume(check, &token[..token.len() / 2]).unwrap_err();
    assert!(e.contains("corrupt"), "{e}");
    let out = run(&kind).await;
    assert!(out.passed && out.reason.contains("(first run:"), "{out:?}");
    app.finish();
}
