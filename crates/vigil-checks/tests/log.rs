//! `kind = "log"` on real files: only lines appended since the previous run count, across
//! rotation (rename + create), truncation and partial lines.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use vigil_checks::model::{CheckKind, LogCheck, LogSource, Pattern};
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

fn spec(path: &Path, pattern: &str, min_matches: u32) -> CheckKind {
    CheckKind::Log(LogCheck {
        source: LogSource::File(path.to_owned()),
        pattern: Pattern(regex::Regex::new(pattern).unwrap()),
        min_matches,
    })
}

async fn run(kind: &CheckKind) -> ProbeOutcome {
    probe(kind, Duration::from_secs(5), &ProbeContext::new()).await
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[tokio::test]
async fn first_run_starts_at_the_end_and_lines_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "old error 1\nold error 2\n");
    let kind = spec(&path, "error", 1);
    let shown = path.display();

    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("no new line matches /error/ in {shown} (first run: following from byte 24)")
    );

    append(&path, "ok\nerror: disk full\nfine\nanother error\n");
    let out = run(&kind).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("2 new lines match /error/ in {shown} (first: error: disk full)")
    );

    // Already seen: not counted again.
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("no new line matches /error/ in {shown} (read 0 B)")
    );

    append(&path, "all good\n");
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("no new line matches /error/ in {shown} (read 9 B)")
    );
}

#[tokio::test]
async fn rotation_by_rename_and_create_reads_the_new_file_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(
        &path,
        "a long history of lines without the word\n"
            .repeat(10)
            .as_str(),
    );
    let kind = spec(&path, "error", 1);
    assert!(run(&kind).await.passed);

    std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    append(&path, "error in new file\n");
    let out = run(&kind).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!(
            "1 new line matches /error/ in {} (first: error in new file)",
            path.display()
        )
    );
    assert!(run(&kind).await.passed);
}

#[tokio::test]
async fn truncation_reads_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, &"padding line\n".repeat(100));
    let kind = spec(&path, "(?i)fatal", 1);
    assert!(run(&kind).await.passed);

    // copytruncate: same inode, now shorter than the cursor.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, "FATAL: boom\n");
    let out = run(&kind).await;
    assert!(!out.passed);
    assert!(
        out.reason.starts_with("1 new line matches /(?i)fatal/"),
        "{}",
        out.reason
    );
    assert!(
        out.reason.ends_with("(first: FATAL: boom)"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn partial_lines_wait_for_their_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "");
    let kind = spec(&path, "error$", 1);
    assert!(run(&kind).await.passed);

    append(&path, "an err");
    assert!(run(&kind).await.passed);
    append(&path, "or\n");
    let out = run(&kind).await;
    assert!(!out.passed);
    assert!(out.reason.ends_with("(first: an error)"), "{}", out.reason);
}

#[tokio::test]
async fn min_matches_sets_the_bar() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "");
    let kind = spec(&path, "timeout", 3);
    assert!(run(&kind).await.passed);

    append(&path, "timeout 1\nok\ntimeout 2\n");
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!(
            "2 new lines match /timeout/ in {}, fewer than min_matches 3 (read 23 B)",
            path.display()
        )
    );
    append(&path, "timeout 3\ntimeout 4\ntimeout 5\n");
    let out = run(&kind).await;
    assert!(!out.passed);
    assert!(
        out.reason.starts_with("3 new lines match /timeout/"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn a_missing_file_is_read_from_the_start_once_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.log");
    let kind = spec(&path, "error", 1);
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!(
            "no new line matches /error/: {} does not exist (yet)",
            path.display()
        )
    );
    append(&path, "early error\n");
    let out = run(&kind).await;
    assert!(!out.passed);
    assert!(
        out.reason.ends_with("(first: early error)"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn a_big_burst_is_read_in_bounded_chunks_across_lines() {
    // Lines straddle the 64 KiB read boundaries; each match must be counted exactly once.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.log");
    append(&path, "");
    let kind = spec(&path, "needle", 1);
    assert!(run(&kind).await.passed);
    let mut text = String::new();
    for i in 0..50_000 {
        if i % 7 == 0 {
            text.push_str(&format!("line {i} has a needle in it\n"));
        } else {
            text.push_str(&format!("line {i} is hay, plain hay\n"));
        }
    }
    append(&path, &text);
    let out = run(&kind).await;
    assert!(!out.passed);
    let expected = (0..50_000).filter(|i| i % 7 == 0).count();
    assert!(
        out.reason
            .starts_with(&format!("{expected} new lines match /needle/")),
        "{}",
        out.reason
    );
    assert!(
        out.reason.ends_with("(first: line 0 has a needle in it)"),
        "{}",
        out.reason
    );
}
