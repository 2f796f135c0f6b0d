//! `kind = "exec"`: run a command; it passes when it exits with `expect_exit` (and its
//! stdout contains `stdout_contains`) within the timeout.
//!
//! Owns: judging a [`RunOutcome`](crate::process::RunOutcome). Must not: spawn by any
//! other means than [`crate::process::run`] (process group, timeout, kill-on-drop).

use std::time::Duration;

use vigil_core::format_duration;

use super::{Verdict, first_line, latency};
use crate::model::ExecCheck;
use crate::process::{self, Exit, RunOutcome, RunSpec};

/// Enough of stdout to find `stdout_contains` in any sane status output.
const CAPTURE_LIMIT: usize = 256 * 1024;
/// How much of a stderr/stdout line goes into a reason.
const LINE_MAX: usize = 200;

pub(super) fn label(check: &ExecCheck) -> String {
    format!("exec `{}`", check.command)
}

pub(super) async fn probe(check: &ExecCheck, timeout: Duration) -> Verdict {
    let spec = RunSpec {
        capture_limit: CAPTURE_LIMIT,
        ..RunSpec::new(&check.command, timeout)
    };
    let outcome = process::run(spec)
        .await
        .map_err(|e| format!("{}: {e}", label(check)))?;
    judge(check, timeout, &outcome)
}

/// The label is formatted only for a failure reason: a passing run never needs it.
fn judge(check: &ExecCheck, timeout: Duration, outcome: &RunOutcome) -> Verdict {
    let exit = match outcome.exit {
        Some(exit) if !outcome.timed_out => exit,
        _ => {
            return Err(format!(
                "{}: timed out after {} (process group killed){}",
                label(check),
                format_duration(timeout),
                output_hint(outcome)
            ));
        }
    };
    if exit != Exit::Code(check.expect_exit) {
        let expected = match exit {
            Exit::Code(_) => check.expect_exit.to_string(),
            Exit::Signal(_) => format!("exit code {}", check.expect_exit),
        };
        return Err(format!(
            "{}: {exit}, expected {expected}{}",
            label(check),
            output_hint(outcome)
        ));
    }
    if let Some(needle) = &check.stdout_contains {
        let stdout = String::from_utf8_lossy(&outcome.stdout);
        if !stdout.contains(needle.as_str()) {
            let mut reason = format!(
                "{}: stdout does not contain {needle:?} (read {} bytes)",
                label(check),
                outcome.stdout.len()
            );
            if let Some(line) = first_line(&outcome.stdout, LINE_MAX) {
                reason.push_str(&format!("; stdout: {line}"));
            }
            return Err(reason);
        }
    }
    Ok(format!("{exit} in {}", latency(outcome.duration)))
}

/// `; stderr: <first line>`, else `; stdout: <first line>`: many status commands print
/// their complaint on stdout.
fn output_hint(outcome: &RunOutcome) -> String {
    if let Some(line) = first_line(&outcome.stderr, LINE_MAX) {
        format!("; stderr: {line}")
    } else if let Some(line) = first_line(&outcome.stdout, LINE_MAX) {
        format!("; stdout: {line}")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Argv;

    fn check(expect_exit: i32, stdout_contains: Option<&str>) -> ExecCheck {
        ExecCheck {
            command: Argv::new(vec!["emqx".into(), "ctl".into(), "status".into()]).unwrap(),
            expect_exit,
            stdout_contains: stdout_contains.map(str::to_owned),
        }
    }

    fn outcome(exit: Option<Exit>, stdout: &str, stderr: &str) -> RunOutcome {
        RunOutcome {
            exit,
            timed_out: exit.is_none(),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            duration: Duration::from_millis(12),
            pid: 42,
        }
    }

    fn judged(c: &ExecCheck, o: &RunOutcome) -> Verdict {
        judge(c, Duration::from_secs(5), o)
    }

    #[test]
    fn reasons_say_what_was_expected_and_seen() {
        let c = check(0, Some("is running"));
        assert_eq!(
            judged(
                &c,
                &outcome(Some(Exit::Code(0)), "Node emqx is running\n", "")
            ),
            Ok("exit code 0 in 12ms".to_owned())
        );
        assert_eq!(
            judged(
                &c,
                &outcome(Some(Exit::Code(1)), "", "Node not responding\nmore")
            ),
            Err(
                "exec `emqx ctl status`: exit code 1, expected 0; stderr: Node not responding"
                    .to_owned()
            )
        );
        assert_eq!(
            judged(&c, &outcome(Some(Exit::Code(0)), "Node emqx is stopped\n", "")),
            Err("exec `emqx ctl status`: stdout does not contain \"is running\" (read 21 bytes); stdout: Node emqx is stopped".to_owned())
        );
        assert_eq!(
            judged(&c, &outcome(None, "", "")),
            Err("exec `emqx ctl status`: timed out after 5s (process group killed)".to_owned())
        );
        assert_eq!(
            judged(&c, &outcome(Some(Exit::Signal(9)), "", "")),
            Err(
                "exec `emqx ctl status`: killed by signal 9 (SIGKILL), expected exit code 0"
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_non_zero_exit_can_be_expected() {
        let c = check(3, None);
        assert!(judged(&c, &outcome(Some(Exit::Code(3)), "", "")).is_ok());
        assert!(judged(&c, &outcome(Some(Exit::Code(0)), "", "")).is_err());
    }
}
