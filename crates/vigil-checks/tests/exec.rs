//! Exec probes and whole check runs (retries, severity, cancellation) with real commands.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use support::{KillOnDrop, argv, check, process_gone, wait_until};
use vigil_checks::model::{CheckKind, ExecCheck, Severity};
use vigil_checks::{ProbeContext, probe, run_check};
use vigil_core::health::RunVerdict;

fn exec(args: &[&str], expect_exit: i32, stdout_contains: Option<&str>) -> CheckKind {
    CheckKind::Exec(ExecCheck {
        command: argv(args),
        expect_exit,
        stdout_contains: stdout_contains.map(str::to_owned),
    })
}

async fn run(kind: CheckKind, timeout: Duration) -> vigil_checks::ProbeOutcome {
    probe(&kind, timeout, &ProbeContext::new()).await
}

#[tokio::test]
async fn exec_passes_on_the_expected_exit_and_output() {
    let out = run(
        exec(
            &["sh", "-c", "echo 'Node emqx is running'"],
            0,
            Some("is running"),
        ),
        Duration::from_secs(5),
    )
    .await;
    assert!(out.passed, "{out:?}");
    assert!(out.reason.starts_with("exit code 0 in "), "{}", out.reason);

    let out = run(
        exec(&["sh", "-c", "exit 3"], 3, None),
        Duration::from_secs(5),
    )
    .await;
    assert!(out.passed, "{out:?}");
}

#[tokio::test]
async fn exec_failure_reasons_show_the_exit_and_stderr() {
    let out = run(
        exec(
            &[
                "sh",
                "-c",
                "echo 'Node not responding to pings.' >&2; echo second >&2; exit 1",
            ],
            0,
            None,
        ),
        Duration::from_secs(5),
    )
    .await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        "exec `sh -c 'echo '\\''Node not responding to pings.'\\'' >&2; echo second >&2; exit 1'`: \
         exit code 1, expected 0; stderr: Node not responding to pings."
    );

    let out = run(
        exec(
            &["sh", "-c", "echo 'Node is stopped'"],
            0,
            Some("is running"),
        ),
        Duration::from_secs(5),
    )
    .await;
    assert!(!out.passed);
    assert!(
        out.reason.ends_with(
            ": stdout does not contain \"is running\" (read 16 bytes); stdout: Node is stopped"
        ),
        "{}",
        out.reason
    );

    let out = run(
        exec(&["/nonexistent/emqx", "ctl", "status"], 0, None),
        Duration::from_secs(5),
    )
    .await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        "exec `/nonexistent/emqx ctl status`: cannot run /nonexistent/emqx: program not found"
    );
}

#[tokio::test]
async fn exec_timeout_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!(
        "sleep 30 & echo $! > {0}.tmp && mv {0}.tmp {0}; sleep 30",
        pid_file.display()
    );
    let out = run(
        exec(&["sh", "-c", &script], 0, None),
        Duration::from_millis(500),
    )
    .await;
    assert!(!out.passed);
    assert!(
        out.reason
            .ends_with(": timed out after 500ms (process group killed)"),
        "{}",
        out.reason
    );
    assert!(out.elapsed < Duration::from_secs(3), "{:?}", out.elapsed);
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = KillOnDrop(pid);
    wait_until("the grandchild is gone", Duration::from_secs(5), || {
        process_gone(pid)
    })
    .await;
}

/// A command that fails until its `n`th run, counting runs in a file.
fn nth_run_passes(dir: &std::path::Path, n: u32) -> CheckKind {
    let counter = dir.join("count");
    let script = format!(
        "c=$(cat {f} 2>/dev/null || echo 0); c=$((c+1)); echo $c > {f}; echo attempt $c; [ $c -ge {n} ]",
        f = counter.display()
    );
    exec(&["sh", "-c", &script], 0, None)
}

fn runs_so_far(dir: &std::path::Path) -> u32 {
    std::fs::read_to_string(dir.join("count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn retries_pass_on_the_third_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = check(nth_run_passes(dir.path(), 3));
    c.retries = 3;
    let run = run_check(&c, &ProbeContext::new()).await;
    assert_eq!(run.verdict, RunVerdict::Pass);
    assert_eq!(run.attempts.len(), 3);
    assert_eq!(
        run.attempts.iter().map(|a| a.passed).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert!(run.reason.starts_with("exit code 0 in "), "{}", run.reason);
    assert!(run.reason.ends_with(" (attempt 3/3)"), "{}", run.reason);
    assert_eq!(runs_so_far(dir.path()), 3);
}

#[tokio::test]
async fn a_run_fails_after_every_attempt_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = check(nth_run_passes(dir.path(), 10));
    c.retries = 3;
    let run = run_check(&c, &ProbeContext::new()).await;
    assert_eq!(run.verdict, RunVerdict::Fail);
    assert_eq!(run.attempts.len(), 3);
    assert!(
        run.reason
            .ends_with("exit code 1, expected 0; stdout: attempt 3 (attempt 3/3)"),
        "{}",
        run.reason
    );
}

#[tokio::test]
async fn the_attempt_suffix_appears_only_with_retries() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = check(nth_run_passes(dir.path(), 1));
    c.retries = 5;
    let run = run_check(&c, &ProbeContext::new()).await;
    assert_eq!(run.verdict, RunVerdict::Pass);
    assert_eq!(run.attempts.len(), 1);
    assert!(run.reason.ends_with("(attempt 1/5)"), "{}", run.reason);

    let c = check(exec(&["false"], 0, None));
    let run = run_check(&c, &ProbeContext::new()).await;
    assert_eq!(run.verdict, RunVerdict::Fail);
    assert_eq!(run.reason, "exec `false`: exit code 1, expected 0");
}

#[tokio::test]
async fn a_warning_check_warns_instead_of_failing() {
    let mut c = check(exec(&["false"], 0, None));
    c.severity = Severity::Warning;
    let run = run_check(&c, &ProbeContext::new()).await;
    assert_eq!(run.verdict, RunVerdict::Warn);

    let mut c = check(exec(&["true"], 0, None));
    c.severity = Severity::Warning;
    assert_eq!(
        run_check(&c, &ProbeContext::new()).await.verdict,
        RunVerdict::Pass
    );
}

#[tokio::test]
async fn a_run_can_be_dropped_mid_sleep() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = check(nth_run_passes(dir.path(), 10));
    c.retries = 3;
    c.retry_delay = Duration::from_secs(3600);
    let cx = ProbeContext::new();
    let task = tokio::spawn(async move { run_check(&c, &cx).await });
    wait_until("the first attempt ran", Duration::from_secs(5), || {
        runs_so_far(dir.path()) == 1
    })
    .await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(runs_so_far(dir.path()), 1);
}

#[tokio::test]
async fn dropping_a_run_mid_probe_kills_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!(
        "echo $$ > {0}.tmp && mv {0}.tmp {0}; sleep 30",
        pid_file.display()
    );
    let mut c = check(exec(&["sh", "-c", &script], 0, None));
    c.timeout = Duration::from_secs(60);
    let cx = ProbeContext::new();
    let task = tokio::spawn(async move { run_check(&c, &cx).await });
    wait_until("the command started", Duration::from_secs(5), || {
        pid_file.exists()
    })
    .await;
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = KillOnDrop(pid);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    wait_until("the command is gone", Duration::from_secs(5), || {
        process_gone(pid)
    })
    .await;
}
