//! One check run: up to `retries` attempts, `retry_delay` apart, folded into one verdict.
//!
//! Owns: performing the attempts and the sleeps that [`RetryPolicy`] asks for, and mapping
//! `severity` onto the verdict. Must not: keep health across runs, apply thresholds or
//! grace, or trigger actions; the core's `CheckHealth` and the daemon do that.
//!
//! Cancellation-safe: dropping a run mid-probe or mid-sleep abandons it (an exec probe's
//! process group is killed by `process::run`'s guard).

use vigil_core::health::RunVerdict;
use vigil_core::retry::{NextStep, RetryPolicy};

use crate::context::ProbeContext;
use crate::model::{Check, Severity};
use crate::probe::{ProbeOutcome, probe};

/// The result of one run of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRun {
    pub verdict: RunVerdict,
    /// Every attempt, in order; never empty for a probe. Empty for a pushed check
    /// (`heartbeat`), which the daemon evaluates from the ledger without probing.
    pub attempts: Vec<ProbeOutcome>,
    /// The last attempt's reason, plus ` (attempt 3/3)` when `retries > 1`.
    pub reason: String,
}

/// Runs `check` once: probes until an attempt passes or `retries` attempts failed.
pub async fn run_check(check: &Check, cx: &ProbeContext) -> CheckRun {
    let policy = RetryPolicy {
        attempts: check.retries,
        delay: check.retry_delay,
    };
    let total = check.retries.max(1);
    let mut attempts = Vec::new();
    let passed = loop {
        let outcome = probe(&check.kind, check.timeout, cx).await;
        let passed = outcome.passed;
        attempts.push(outcome);
        let attempt = u32::try_from(attempts.len()).unwrap_or(u32::MAX);
        match policy.after_attempt(attempt, passed) {
            NextStep::Finish { passed } => break passed,
            NextStep::RetryAfter(delay) => {
                tracing::debug!(
                    check = %check.name,
                    attempt,
                    of = total,
                    reason = attempts.last().map(|a| a.reason.as_str()).unwrap_or_default(),
                    "attempt failed, retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    };
    let warned = attempts.last().is_some_and(|a| a.warning);
    let verdict = match (passed, check.severity) {
        (true, _) if warned => RunVerdict::Warn,
        (true, _) => RunVerdict::Pass,
        (false, Severity::Warning) => RunVerdict::Warn,
        (false, Severity::Critical) => RunVerdict::Fail,
    };
    let last = attempts
        .last()
        .map(|a| a.reason.as_str())
        .unwrap_or_default();
    let reason = if total > 1 {
        format!("{last} (attempt {}/{total})", attempts.len())
    } else {
        last.to_owned()
    };
    CheckRun {
        verdict,
        attempts,
        reason,
    }
}
