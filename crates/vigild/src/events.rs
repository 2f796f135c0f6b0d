//! Every observable fact Vigil logs, emitted in one place each.
//!
//! Human logs read like the seed ("Restart SKIPPED: cooldown active (90s ago by health,
//! need 120s, wait 30s more)"); JSON logs carry the same message plus the numbers as
//! fields (`count`, `max`, `wait_ms`, ...). Alerts (a later issue) hook in here.

use vigil_core::guard::{Denial, Skip};
use vigil_core::health::{HealthStatus, Observation, RunVerdict};
use vigil_core::{RestartRequest, ServiceName, Timestamp, Verdict, format_duration};

use crate::driver::RestartReport;
use crate::ledger::Intent;

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The guard's verdict on one request.
pub fn verdict(service: &ServiceName, request: RestartRequest, verdict: &Verdict) {
    let source = request.source.as_str();
    match verdict {
        Verdict::Allowed {
            count, max, forced, ..
        } => tracing::info!(
            service = %service,
            event = "restart_allowed",
            source,
            forced = *forced,
            count = *count,
            max = *max,
            "{verdict} (source {source})"
        ),
        Verdict::Skipped(skip) => {
            let (wait, need, ago) = match skip {
                Skip::Cooldown {
                    wait, need, ago, ..
                }
                | Skip::Backoff {
                    wait, need, ago, ..
                } => (ms(*wait), ms(*need), ms(*ago)),
                Skip::Lock { waited } => (0, 0, ms(*waited)),
            };
            tracing::info!(
                service = %service,
                event = "restart_skipped",
                source,
                reason = verdict.reason().unwrap_or(""),
                wait_ms = wait,
                need_ms = need,
                ago_ms = ago,
                "{verdict}"
            );
        }
        Verdict::Denied(Denial::Limit {
            count,
            max,
            rearm_at,
            ..
        }) => {
            tracing::warn!(
                service = %service,
                event = "restart_denied",
                source,
                reason = "limit",
                count = *count,
                max = *max,
                rearm_at = %rearm_at,
                "{verdict}"
            );
        }
    }
}

/// The budget is spent: automatic restarts stop until `rearm_at`. Announced once per
/// given-up episode by the daemon (and on every denial by one-shot commands).
pub fn given_up(service: &ServiceName, rearm_at: Timestamp, now: Timestamp) {
    tracing::error!(
        service = %service,
        event = "given_up",
        rearm_at = %rearm_at,
        "ACTION REQUIRED: Check service health manually - automatic restarts stopped (re-arms at {rearm_at}, in {})",
        format_duration(rearm_at.saturating_since(now))
    );
}

/// An allowed restart finished.
pub fn restart_finished(service: &ServiceName, request: RestartRequest, report: &RestartReport) {
    let source = request.source.as_str();
    if report.ok {
        tracing::info!(
            service = %service,
            event = "restarted",
            source,
            duration_ms = ms(report.duration),
            "Restart complete: {}",
            report.detail
        );
    } else {
        tracing::error!(
            service = %service,
            event = "restart_failed",
            source,
            duration_ms = ms(report.duration),
            "Restart FAILED: {}",
            report.detail
        );
    }
    if let Some(why) = &report.action_required {
        tracing::error!(
            service = %service,
            event = "action_required",
            "ACTION REQUIRED: {why}"
        );
    }
}

/// An automatic restart was not attempted because the driver says it cannot succeed
/// (systemd's start limit tripped). `first` is the first refusal of the episode; later
/// ones are logged at debug level so a failing check does not repeat it every run.
pub fn restart_blocked(service: &ServiceName, request: RestartRequest, why: &str, first: bool) {
    let source = request.source.as_str();
    if first {
        tracing::error!(
            service = %service,
            event = "restart_not_attempted",
            source,
            "Restart NOT ATTEMPTED: {why}"
        );
    } else {
        tracing::debug!(
            service = %service,
            event = "restart_not_attempted",
            source,
            "Restart NOT ATTEMPTED: {why}"
        );
    }
}

/// A restart whose Vigil process died before recording its outcome.
pub fn interrupted_restart(intent: &Intent) {
    tracing::warn!(
        service = %intent.service,
        event = "restart_interrupted",
        intent_id = intent.id,
        pid = intent.pid,
        "restart allowed at {} (source {}) by vigil pid {} never recorded an outcome: that process died mid-restart; recorded as interrupted, outcome unknown",
        intent.at,
        intent.source,
        intent.pid
    );
}

/// One check run and what it did to the check's health.
pub fn check_run(
    service: &ServiceName,
    check: &str,
    run: RunVerdict,
    reason: &str,
    obs: &Observation,
    status: HealthStatus,
) {
    if let Some(left) = obs.in_grace {
        tracing::info!(
            service = %service,
            check,
            event = "check_grace",
            grace_left_ms = ms(left),
            "Health check: grace period active ({} left), result ignored: {reason}",
            format_duration(left)
        );
        return;
    }
    match obs.transition {
        Some((from, to)) => {
            let level_warn = matches!(to, HealthStatus::Failing | HealthStatus::Warning);
            if level_warn {
                tracing::warn!(
                    service = %service,
                    check,
                    event = "check_status",
                    from = from.as_str(),
                    to = to.as_str(),
                    "Health check {}: {} -> {}: {reason}",
                    run.as_str().to_uppercase(),
                    from.as_str(),
                    to.as_str()
                );
            } else {
                tracing::info!(
                    service = %service,
                    check,
                    event = "check_status",
                    from = from.as_str(),
                    to = to.as_str(),
                    "Health check {}: {} -> {}: {reason}",
                    run.as_str().to_uppercase(),
                    from.as_str(),
                    to.as_str()
                );
            }
        }
        None if run == RunVerdict::Pass => tracing::debug!(
            service = %service,
            check,
            event = "check_run",
            verdict = run.as_str(),
            "Health check PASS: {reason}"
        ),
        None => tracing::warn!(
            service = %service,
            check,
            event = "check_run",
            verdict = run.as_str(),
            status = status.as_str(),
            "Health check {} ({}): {reason}",
            run.as_str().to_uppercase(),
            status.as_str()
        ),
    }
}
