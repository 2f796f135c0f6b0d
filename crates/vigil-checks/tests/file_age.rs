//! `kind = "file_age"` against real files aged with `File::set_modified`.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

use vigil_checks::model::{CheckKind, FileAgeCheck};
use vigil_checks::probe::file_age::next_interval;
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

const MAX_AGE: Duration = Duration::from_secs(600);

fn spec(path: &Path) -> FileAgeCheck {
    FileAgeCheck {
        path: path.to_owned(),
        max_age: MAX_AGE,
        fast_every: MAX_AGE / 10,
    }
}

async fn run(path: &Path) -> ProbeOutcome {
    probe(
        &CheckKind::FileAge(spec(path)),
        Duration::from_secs(5),
        &ProbeContext::new(),
    )
    .await
}

/// Sets the file's mtime to `ago` before its current (fresh) mtime.
fn age_by(path: &Path, ago: Duration) {
    let file = File::options().write(true).open(path).unwrap();
    let fresh: SystemTime = file.metadata().unwrap().modified().unwrap();
    file.set_modified(fresh - ago).unwrap();
}

#[tokio::test]
async fn fresh_file_passes_and_stale_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stamp");
    std::fs::write(&path, b"x").unwrap();

    let out = run(&path).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason
            .starts_with(&format!("file {} last modified 0s ago", path.display()))
            || out.reason.contains("last modified 1s ago"),
        "{}",
        out.reason
    );

    age_by(&path, Duration::from_secs(912));
    let out = run(&path).await;
    assert!(!out.passed, "{out:?}");
    // The probe reads the clock a moment after the file's mtime was taken.
    let ok = [912, 913].iter().any(|s| {
        out.reason
            == format!(
                "file {} last modified {s}s ago, max_age 600s",
                path.display()
            )
    });
    assert!(ok, "{}", out.reason);

    // The daemon's interval, from the age the probe saw: stale beyond half of max_age →
    // fast_every.
    let age = out.file_age.unwrap();
    assert!(
        age >= Duration::from_secs(912) && age < Duration::from_secs(914),
        "{age:?}"
    );
    let every = Duration::from_secs(120);
    assert_eq!(
        next_interval(&spec(&path), every, Some(age)),
        Duration::from_secs(60)
    );

    // Touched again: fresh.
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::fs::metadata(dir.path()).unwrap().modified().unwrap())
        .unwrap();
    let out = run(&path).await;
    assert!(out.passed, "{out:?}");
}

#[tokio::test]
async fn half_of_max_age_switches_to_fast_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stamp");
    std::fs::write(&path, b"x").unwrap();
    let every = Duration::from_secs(120);
    let young = run(&path).await.file_age.unwrap();
    assert_eq!(next_interval(&spec(&path), every, Some(young)), every);
    // Wakes when the file crosses half of max_age (300 s), but not sooner than fast_every.
    let s = Duration::from_secs;
    assert_eq!(next_interval(&spec(&path), every, Some(s(200))), s(100));
    assert_eq!(next_interval(&spec(&path), every, Some(s(250))), s(60));
    // Unknown age (missing, or not known within the timeout): watched closely.
    assert_eq!(next_interval(&spec(&path), every, None), s(60));
    age_by(&path, Duration::from_secs(400));
    let old = run(&path).await.file_age.unwrap();
    assert_eq!(
        next_interval(&spec(&path), every, Some(old)),
        Duration::from_secs(60)
    );
    // Still under max_age: the check passes while being watched closely.
    assert!(run(&path).await.passed);
}

#[tokio::test]
async fn missing_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never-written");
    let out = run(&path).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("file {} does not exist (max_age 600s)", path.display())
    );
    // Unknown age: the daemon's interval is the fast one.
    assert_eq!(out.file_age, None);
}
