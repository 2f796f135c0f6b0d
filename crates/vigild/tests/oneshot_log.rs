//! Seed 000's cron job: `vigil check` run again and again (a new process each time) on a
//! `log` check fails when a matching line was written since the previous run, and passes
//! on the next. The read position lives in the ledger between runs (before, each one-shot
//! run started at the end of the log, so a cron job could never fire).
//!
//! The journal variant runs against a real systemd-journald in a private mount namespace
//! (gated by `VIGIL_TEST_SERVERS=1`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::io::Write as _;

use support::*;
use vigil_test_helpers::journald::{Journald, Options};

fn check(env: &Env) -> (i32, serde_json::Value) {
    let out = env.vigil(&["check", "--json", "--no-restart"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check json ({e}): {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), doc)
}

fn reason(doc: &serde_json::Value) -> String {
    doc["services"][0]["checks"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn one_shot_log_checks_see_the_lines_written_between_runs() {
    let env = Env::new();
    let log = env.path("app.log");
    std::fs::write(&log, "error: before the first run (not counted)\n").unwrap();
    env.write_config(&format!(
        r#"
[services.app]
driver = "command"
restart_command = ["true"]

[services.app.checks.errors]
kind = "log"
path = {log:?}
pattern = "error"
"#,
        log = log.display().to_string()
    ));
    let append = |line: &str| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(f, "{line}").unwrap();
    };
    // The first run starts at the end: old errors do not count.
    let (code, doc) = check(&env);
    assert_eq!(code, 0, "{doc}");
    // A matching line between two runs: the next run fails with it...
    append("info: fine");
    append("error: disk full");
    let (code, doc) = check(&env);
    assert_eq!(code, 1, "{doc}");
    assert!(reason(&doc).contains("error: disk full"), "{doc}");
    // ... and the one after passes: nothing new.
    let (code, doc) = check(&env);
    assert_eq!(code, 0, "{doc}");
    // Rotation by rename and create: the new file is read from its start.
    std::fs::rename(&log, env.path("app.log.1")).unwrap();
    std::fs::write(&log, "error: after rotation\n").unwrap();
    let (code, doc) = check(&env);
    assert_eq!(code, 1, "{doc}");
    assert!(reason(&doc).contains("error: after rotation"), "{doc}");
}

#[test]
fn one_shot_journal_checks_see_the_entries_written_between_runs() {
    if std::env::var_os("VIGIL_TEST_SERVERS").is_none_or(|v| v != "1") {
        println!("skipped: set VIGIL_TEST_SERVERS=1");
        return;
    }
    assert!(Journald::available(), "systemd-journald is needed");
    let mut j = Journald::start(&Options::default());
    let env = Env::new();
    env.write_config(&format!(
        r#"
[services.app]
driver = "command"
restart_command = ["true"]

[services.app.checks.errors]
kind = "log"
journal_unit = "vigil-oneshot"
journal_directory = {root:?}
pattern = "error"
"#,
        root = j.root.display().to_string()
    ));
    let mut app = j.unit_writer("vigil-oneshot.service", "app");
    app.line("error: before the first run");
    j.wait_for_message("app", "error: before the first run");
    let (code, doc) = check(&env);
    assert_eq!(code, 0, "{doc}");
    app.line("error: between the runs");
    j.wait_for_message("app", "error: between the runs");
    let (code, doc) = check(&env);
    assert_eq!(code, 1, "{doc}");
    assert!(reason(&doc).contains("error: between the runs"), "{doc}");
    let (code, doc) = check(&env);
    assert_eq!(code, 0, "{doc}");
    // Across a rotation of the journal.
    app.line("error: before the rotation");
    j.wait_for_message("app", "error: before the rotation");
    j.rotate();
    app.line("fine after the rotation");
    j.wait_for_message("app", "fine after the rotation");
    let (code, doc) = check(&env);
    assert_eq!(code, 1, "{doc}");
    assert!(reason(&doc).contains("error: before the rotation"), "{doc}");
    let (code, doc) = check(&env);
    assert_eq!(code, 0, "{doc}");
}

/// The daemon and one-shot runs share the position: what a stopped daemon had read is not
/// read again by the next cron run, and what was written after it is.
#[test]
fn a_daemon_and_one_shot_runs_share_the_read_position() {
    let env = Env::new();
    let log = env.path("app.log");
    std::fs::write(&log, "").unwrap();
    env.write_config(&format!(
        r#"
[services.app]
driver = "command"
restart_command = ["true"]

[services.app.checks.errors]
kind = "log"
path = {log:?}
pattern = "error"
every = "100ms"
on_failure = "alert"
"#,
        log = log.display().to_string()
    ));
    let append = |line: &str| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(f, "{line}").unwrap();
    };
    let mut daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", std::time::Duration::from_secs(20));
    // A log check's first run starts at the end of the file: append after it.
    wait_until(
        std::time::Duration::from_secs(20),
        "the check's first run",
        || {
            let out = env.vigil(&["status", "--json"]);
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            doc["services"][0]["checks"][0]["last_run"]
                .is_string()
                .then_some(())
        },
    );
    append("error: seen by the daemon");
    daemon.wait_log(
        "error: seen by the daemon",
        std::time::Duration::from_secs(20),
    );
    daemon.signal(rustix::process::Signal::TERM);
    assert_eq!(
        daemon
            .wait_exit(std::time::Duration::from_secs(20))
            .and_then(|s| s.code()),
        Some(0)
    );
    // Nothing new since the daemon's last run: passes (the daemon's line is not re-read).
    let (code, doc) = check(&env);
    assert_eq!(code, 0, "{doc}");
    append("error: after the daemon");
    let (code, doc) = check(&env);
    assert_eq!(code, 1, "{doc}");
    assert!(reason(&doc).contains("error: after the daemon"), "{doc}");
}
