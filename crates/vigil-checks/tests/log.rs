//! `kind = "log"` on real files: only lines appended since the previous run count, across
//! rotation (rename + create), truncation and partial lines; and the same between two
//! processes through a saved position (`log::position`, `log::resume`), as a one-shot
//! `vigil check` from cron runs.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use vigil_checks::model::{CheckKind, LogCheck, LogSource, Pattern};
use vigil_checks::probe::log;
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
async fn a_saved_position_carries_new_lines_to_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "old error\n");
    let kind = spec(&path, "error", 1);
    let check = log_check(&kind);
    let shown = path.display();
    assert!(log::position(check).is_none(), "no position before a run");
    assert!(run(&kind).await.passed);
    let token = end_process(&kind);
    assert!(
        token.starts_with("vigil-log/1 file k=") && token.contains(" dev=") && token.len() < 200,
        "{token}"
    );
    assert!(!token.contains('\n'));

    // Without the saved position a new process starts at the end: the defect.
    append(&path, "error: lost\n");
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason.contains("(first run: following from byte"),
        "{}",
        out.reason
    );
    let token = end_process(&kind);

    // With it, the lines appended in between are read, once.
    append(&path, "fine\nerror: disk full\n");
    log::resume(check, &token).unwrap();
    let out = run(&kind).await;
    assert!(!out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("1 new line matches /error/ in {shown} (first: error: disk full)")
    );
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("no new line matches /error/ in {shown} (read 0 B)")
    );

    // A process that has run keeps its own (newer) position over a saved one.
    append(&path, "error: seen once\n");
    assert!(!run(&kind).await.passed);
    log::resume(check, &token).unwrap();
    assert!(run(&kind).await.passed);
}

#[tokio::test]
async fn a_saved_position_counts_the_lines_in_between_against_min_matches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "");
    let kind = spec(&path, "timeout", 3);
    let check = log_check(&kind);
    assert!(run(&kind).await.passed);
    // Lines written between two processes count: under the bar, then over it.
    append(&path, "timeout 1\ntimeout 2\n");
    let token = end_process(&kind);
    log::resume(check, &token).unwrap();
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason.contains("fewer than min_matches 3"),
        "{}",
        out.reason
    );
    let token = end_process(&kind);
    append(&path, "timeout 3\ntimeout 4\ntimeout 5\n");
    log::resume(check, &token).unwrap();
    let out = run(&kind).await;
    assert!(!out.passed, "{out:?}");
    assert!(
        out.reason.starts_with("3 new lines match /timeout/"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn a_saved_position_follows_rotation_to_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(
        &path,
        &"a long history of lines without the word\n".repeat(10),
    );
    let kind = spec(&path, "error", 1);
    let check = log_check(&kind);
    assert!(run(&kind).await.passed);
    let token = end_process(&kind);

    std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    append(&path, "error in new file\n");
    log::resume(check, &token).unwrap();
    let out = run(&kind).await;
    assert!(!out.passed, "{out:?}");
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
async fn a_saved_position_reads_a_truncated_file_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, &"padding line\n".repeat(100));
    let kind = spec(&path, "(?i)fatal", 1);
    let check = log_check(&kind);
    assert!(run(&kind).await.passed);
    let token = end_process(&kind);

    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, "FATAL: boom\n");
    log::resume(check, &token).unwrap();
    let out = run(&kind).await;
    assert!(!out.passed, "{out:?}");
    assert!(
        out.reason.ends_with("(first: FATAL: boom)"),
        "{}",
        out.reason
    );
    assert!(run(&kind).await.passed);
}

#[tokio::test]
async fn a_saved_position_of_a_missing_file_reads_it_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.log");
    let kind = spec(&path, "error", 1);
    let check = log_check(&kind);
    assert!(run(&kind).await.passed);
    let token = end_process(&kind);
    assert!(token.contains(" missing sum="), "{token}");

    append(&path, "early error\n");
    log::resume(check, &token).unwrap();
    let out = run(&kind).await;
    assert!(!out.passed, "{out:?}");
    assert!(
        out.reason.ends_with("(first: early error)"),
        "{}",
        out.reason
    );
    assert!(run(&kind).await.passed);
}

#[tokio::test]
async fn a_saved_position_reads_a_partial_last_line_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "");
    let kind = spec(&path, "error$", 1);
    let check = log_check(&kind);
    assert!(run(&kind).await.passed);
    append(&path, "an err");
    assert!(run(&kind).await.passed);
    let token = end_process(&kind);

    append(&path, "or\n");
    log::resume(check, &token).unwrap();
    let out = run(&kind).await;
    assert!(!out.passed, "{out:?}");
    assert!(out.reason.ends_with("(first: an error)"), "{}", out.reason);
}

#[tokio::test]
async fn an_unusable_token_is_refused_with_its_reason_and_the_check_starts_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "history\n");
    let kind = spec(&path, "error", 1);
    let check = log_check(&kind);
    assert!(run(&kind).await.passed);
    let token = end_process(&kind);

    let other_path = spec(&dir.path().join("other.log"), "error", 1);
    let other_pattern = spec(&path, "warn", 1);
    let journal = CheckKind::Log(LogCheck {
        source: LogSource::Journal(vigil_checks::model::JournalSource {
            unit: "x.service".into(),
            directory: None,
        }),
        pattern: Pattern(regex::Regex::new("error").unwrap()),
        min_matches: 1,
    });
    let v2 = token.replacen("vigil-log/1 ", "vigil-log/2 ", 1);
    let altered = token.replacen(" off=", " off=1", 1);
    let cases: Vec<(&CheckKind, &str, &str)> = vec![
        (&kind, "", "not a log position"),
        (
            &kind,
            "garbage",
            "not a log position (it starts \"garbage\"",
        ),
        (&kind, &v2, "version \"2\"; this Vigil reads version 1"),
        (&kind, &token[..token.len() - 1], "checksum does not match"),
        (&kind, &token[..token.len() - 22], "no checksum"),
        (&kind, &altered, "checksum does not match"),
        (&other_path, &token, "saved for another path"),
        (&other_pattern, &token, "or pattern"),
        (
            &journal,
            &token,
            "a position of a file source, but this check reads a journal",
        ),
    ];
    for (kind, text, why) in cases {
        let e = log::resume(log_check(kind), text).unwrap_err();
        assert!(e.contains(why), "{text:?}: {e}");
    }
    // Refused: the next run is a first run.
    append(&path, "error: after\n");
    let out = run(&kind).await;
    assert!(out.passed, "{out:?}");
    assert!(out.reason.contains("(first run:"), "{}", out.reason);
    assert!(log::position(check).is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No input makes `resume` panic; anything but an intact token is refused.
    #[test]
    fn resume_refuses_any_garbage_without_panicking(text in "\\PC{0,200}") {
        let check = LogCheck {
            source: LogSource::File("/nonexistent/vigil-proptest.log".into()),
            pattern: Pattern(regex::Regex::new("error").unwrap()),
            min_matches: 1,
        };
        prop_assert!(log::resume(&check, &text).is_err());
        let journal = LogCheck {
            source: LogSource::Journal(vigil_checks::model::JournalSource {
                unit: "x.service".into(),
                directory: Some("/nonexistent/journal".into()),
            }),
            ..check
        };
        prop_assert!(log::resume(&journal, &text).is_err());
    }

    /// A valid token with one byte changed, or cut anywhere, is refused.
    #[test]
    fn resume_refuses_altered_or_cut_tokens(at in 0usize..1000, byte in 0x20u8..0x7f) {
        let check = LogCheck {
            source: LogSource::File(format!("/nonexistent/vigil-proptest-{at}-{byte}.log").into()),
            pattern: Pattern(regex::Regex::new("error").unwrap()),
            min_matches: 1,
        };
        prop_assert!(log::run(&check).is_ok());
        let token = log::position(&check).unwrap();
        log::forget_position(&check);
        let at = at % token.len();
        let mut altered = token.clone().into_bytes();
        altered[at] = byte;
        let altered = String::from_utf8(altered).unwrap();
        if altered != token {
            prop_assert!(log::resume(&check, &altered).is_err(), "{}", altered);
        }
        prop_assert!(log::resume(&check, &token[..at]).is_err());
        prop_assert!(log::resume(&check, &token).is_ok());
        log::forget_position(&check);
    }
}
