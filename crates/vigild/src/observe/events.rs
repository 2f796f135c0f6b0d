//! Every observable fact Vigil logs, emitted in one place each.
//!
//! Human logs read like the seed ("Restart SKIPPED: cooldown active (90s ago by health,
//! need 120s, wait 30s more)"); JSON logs carry the same message plus the numbers as
//! fields (`count`, `max`, `wait_ms`, ...). Alerts are raised here too, from the same
//! facts, through the [`AlertHub`] (which only queues them: nothing here waits).

use vigil_alerts::{Alert, Numbers, Outcome};
use vigil_config::model::AlertEvent;
use vigil_core::guard::{Denial, Skip};
use vigil_core::health::{HealthStatus, Observation, RunVerdict};
use vigil_core::{RestartRequest, ServiceName, Timestamp, Verdict, format_duration};

use crate::drivers::RestartReport;
use crate::ledger::Intent;
use crate::observe::alerting::AlertHub;
use crate::platform::clock;

fn alert(event: AlertEvent, service: &ServiceName, check: Option<&str>, message: String) -> Alert {
    Alert {
        event,
        service: service.to_string(),
        check: check.map(str::to_owned),
        at: clock::now(),
        message,
        source: None,
        status: None,
        outcome: None,
        numbers: Numbers::default(),
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The guard's verdict on one request (a skipped one is the `skipped` alert).
pub fn verdict(
    alerts: &AlertHub,
    service: &ServiceName,
    request: RestartRequest,
    verdict: &Verdict,
) {
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
            alerts.raise(|| {
                let mut a = alert(AlertEvent::Skipped, service, None, verdict.to_string());
                a.source = Some(request.source.as_str());
                if let Skip::Cooldown { wait, .. } | Skip::Backoff { wait, .. } = skip {
                    a.numbers.wait = Some(*wait);
                }
                a
            });
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
/// given-up episode by the daemon (and on every denial by one-shot commands). Nothing
/// happens unless `verdict` is a `denied(limit)`.
pub fn given_up(
    alerts: &AlertHub,
    service: &ServiceName,
    request: RestartRequest,
    verdict: &Verdict,
    now: Timestamp,
) {
    let Verdict::Denied(Denial::Limit {
        count,
        max,
        window,
        rearm_at,
    }) = verdict
    else {
        return;
    };
    let message = format!(
        "ACTION REQUIRED: Check service health manually - automatic restarts stopped (re-arms at {rearm_at}, in {})",
        format_duration(rearm_at.saturating_since(now))
    );
    tracing::error!(
        service = %service,
        event = "given_up",
        rearm_at = %rearm_at,
        "{message}"
    );
    alerts.raise(|| {
        let mut a = alert(
            AlertEvent::GivenUp,
            service,
            None,
            format!("{message}; {verdict}"),
        );
        a.at = now;
        a.source = Some(request.source.as_str());
        a.numbers = Numbers {
            count: Some(*count),
            max: Some(*max),
            window: Some(*window),
            rearm_at: Some(*rearm_at),
            ..Numbers::default()
        };
        a
    });
}

/// An allowed restart finished (the `restarted` alert, with its outcome).
pub fn restart_finished(
    alerts: &AlertHub,
    service: &ServiceName,
    request: RestartRequest,
    verdict: &Verdict,
    report: &RestartReport,
) {
    let source = request.source.as_str();
    alerts.raise(|| {
        let (text, outcome) = if report.ok {
            ("Restart complete", Outcome::Ok)
        } else {
            ("Restart FAILED", Outcome::Failed)
        };
        let mut a = alert(
            AlertEvent::Restarted,
            service,
            None,
            format!("{text}: {} ({verdict}, source {source})", report.detail),
        );
        a.source = Some(source);
        a.outcome = Some(outcome);
        a.numbers.duration = Some(report.duration);
        if let Verdict::Allowed {
            count, max, window, ..
        } = verdict
        {
            a.numbers.count = Some(*count);
            a.numbers.max = Some(*max);
            a.numbers.window = Some(*window);
        }
        a
    });
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

/// One check's alerting state, owned by whoever runs the check.
pub struct CheckAlerts {
    pub hub: AlertHub,
    /// A `failing` or `warning` alert was raised and no `recovered` yet.
    pub announced: bool,
}

impl CheckAlerts {
    /// No alerts (one-shot commands).
    pub fn none() -> CheckAlerts {
        CheckAlerts {
            hub: AlertHub::none(),
            announced: false,
        }
    }
}

/// One check run and what it did to the check's health. A change to failing or warning
/// raises that alert (and marks it announced); a change to passing after an announced one
/// raises `recovered` (whether the check went through `unknown` after a restart or not).
pub fn check_run(
    alerts: &mut CheckAlerts,
    service: &ServiceName,
    check: &str,
    run: RunVerdict,
    reason: &str,
    obs: &Observation,
    status: HealthStatus,
) {
    if obs.in_grace.is_none()
        && let Some((from, to)) = obs.transition
    {
        let event = match to {
            HealthStatus::Failing => Some(AlertEvent::Failing),
            HealthStatus::Warning => Some(AlertEvent::Warning),
            HealthStatus::Passing if alerts.announced => Some(AlertEvent::Recovered),
            _ => None,
        };
        if let Some(event) = event {
            alerts.announced = event != AlertEvent::Recovered;
            alerts.hub.raise(|| {
                let message = format!(
                    "Health check {}: {} -> {}: {reason}",
                    run.as_str().to_uppercase(),
                    from.as_str(),
                    to.as_str()
                );
                let mut a = alert(event, service, Some(check), message);
                a.status = Some(to.as_str());
                a
            });
        }
    }
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

// ---------------------------------------------------------------- exec supervision

/// A supervised process was spawned.
/// `since_exit`: from the previous instance's exit being observed to this spawn (the
/// part of crash-to-restart latency Vigil itself spends: policy, guard, ledger, spawn).
pub fn exec_started(
    service: &ServiceName,
    pid: i32,
    command: &str,
    since_exit: Option<std::time::Duration>,
) {
    match since_exit {
        Some(d) => tracing::info!(service = %service, event = "exec_started", pid,
            since_exit_us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            "started pid {pid} ({} after the previous exit): {command}", format_duration(d)),
        None => {
            tracing::info!(service = %service, event = "exec_started", pid, "started pid {pid}: {command}")
        }
    }
}

/// A supervised process could not be spawned.
pub fn exec_spawn_failed(service: &ServiceName, detail: &str) {
    tracing::error!(service = %service, event = "exec_spawn_failed", "cannot start: {detail}");
}

/// A supervised process ended without Vigil stopping it (or after its watchdog/start
/// timeout signal); `cause` is its row in systemd's restart table.
pub fn exec_exited(
    service: &ServiceName,
    pid: i32,
    how: &str,
    cause: &str,
    uptime: std::time::Duration,
) {
    tracing::warn!(
        service = %service,
        event = "exec_exited",
        pid,
        cause,
        uptime_ms = ms(uptime),
        "process {pid} exited: {how} (exit cause: {cause}) after {}",
        format_duration(uptime)
    );
}

/// Vigil stopped a supervised process.
pub fn exec_stopped(
    service: &ServiceName,
    pid: i32,
    how: &str,
    killed: bool,
    took: std::time::Duration,
) {
    if killed {
        tracing::warn!(service = %service, event = "exec_stopped", pid, killed, duration_ms = ms(took),
            "stopped pid {pid} with SIGKILL after the stop timeout ({how}, {})", format_duration(took));
    } else {
        tracing::info!(service = %service, event = "exec_stopped", pid, killed, duration_ms = ms(took),
            "stopped pid {pid} ({how}, {})", format_duration(took));
    }
}

/// Processes were left in a service's process group after its main process ended.
pub fn exec_leftovers(service: &ServiceName, processes: &[String], killed_by: &str) {
    tracing::warn!(
        service = %service,
        event = "exec_leftovers",
        count = processes.len(),
        killed_by,
        "{} leftover process(es) in the process group after the main process ended, killed ({killed_by}): {}",
        processes.len(),
        processes.join("; ")
    );
}

/// A supervised process missed its watchdog deadline; `evidence` was read before the kill.
/// Raises the `watchdog` alert with the evidence.
pub fn watchdog_timeout(
    alerts: &AlertHub,
    service: &ServiceName,
    pid: i32,
    signal: vigil_core::Signal,
    evidence: &str,
) {
    tracing::error!(
        service = %service,
        event = "watchdog",
        pid,
        signal = %signal,
        "Watchdog timeout: killing pid {pid} with {signal}. Hang evidence:\n{evidence}"
    );
    alerts.raise(|| {
        alert(
            AlertEvent::Watchdog,
            service,
            None,
            format!("Watchdog timeout: pid {pid} killed with {signal}. Hang evidence:\n{evidence}"),
        )
    });
}
