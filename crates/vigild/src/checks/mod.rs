//! A check's run and what it means, shared by the daemon's check loops and one-shot
//! `vigil check`: [`run_once`] runs the probe (with retries), or for a `heartbeat` check
//! reads the ledger; [`fold`] folds the run into the check's health and names the events
//! it produces and whether the check's action is wanted.
//!
//! A `log` check reads only what was written since its previous run. Its read position
//! is saved with the check's state in the ledger ([`position`]) and taken up again by the
//! next process's first run ([`resume`]): one-shot `vigil check` from cron sees the lines
//! written since the previous cron run, and a restarted daemon goes on where it stopped.
//!
//! Must not: act (the caller sends the request to the service's actor) or read the clock.

pub mod heartbeat;

use std::time::Duration;

use vigil_checks::probe::log as log_probe;
use vigil_checks::runner::run_check;
use vigil_checks::{CheckRun, ProbeContext};
use vigil_config::model::{Check, CheckKind};
use vigil_core::event::Event;
use vigil_core::health::{CheckHealth, HealthStatus, Observation, RunVerdict};
use vigil_core::{ServiceName, Timestamp};

use crate::ledger::LedgerHandle;

/// One run: a probe (with retries), or for a heartbeat check a ledger read.
/// `watching_since`: when monitoring began (the daemon's check loop), for a heartbeat's
/// grace before its first push; `None` in one-shot runs.
pub async fn run_once(
    service: &ServiceName,
    check: &Check,
    probes: &ProbeContext,
    ledger: &LedgerHandle,
    watching_since: Option<Timestamp>,
    now: Timestamp,
) -> CheckRun {
    let CheckKind::Heartbeat(spec) = &check.kind else {
        return run_check(check, probes).await;
    };
    heartbeat::evaluate(
        ledger,
        service.as_str(),
        check.name.as_str(),
        spec,
        watching_since,
        now,
    )
    .await
    .unwrap_or_else(|error| CheckRun {
        verdict: RunVerdict::Fail,
        attempts: Vec::new(),
        reason: format!("cannot read heartbeats: {error}"),
    })
}

/// What one run did to a check.
pub struct Folded {
    pub obs: Observation,
    /// The event to publish about it.
    pub event: Event,
    /// The check's action (restart, repair, group restart) is wanted now.
    pub wants_action: bool,
}

/// Folds `run` into `health`. `announced`: a failing or warning status was announced
/// (alerted) and no recovery yet; a change to passing after it is a recovery. `took`:
/// how long the run took (for its event).
pub fn fold(
    health: &mut CheckHealth,
    announced: &mut bool,
    check: &Check,
    run: &CheckRun,
    uptime: Option<Duration>,
    now: Timestamp,
    took: Duration,
) -> Folded {
    let obs = health.observe_after_grace(run.verdict, check.thresholds, check.grace, uptime, now);
    let name = check.name.to_string();
    let event = match (obs.in_grace, obs.transition) {
        (Some(left), _) => Event::CheckGrace {
            check: name,
            verdict: run.verdict,
            left,
            reason: run.reason.clone(),
            took,
        },
        (None, Some((from, to))) => {
            let recovered = to == HealthStatus::Passing && *announced;
            match to {
                HealthStatus::Failing | HealthStatus::Warning => *announced = true,
                HealthStatus::Passing => *announced = false,
                HealthStatus::Unknown => {}
            }
            Event::CheckStatus {
                check: name,
                verdict: run.verdict,
                from,
                to,
                reason: run.reason.clone(),
                recovered,
                took,
            }
        }
        (None, None) => Event::CheckRun {
            check: name,
            verdict: run.verdict,
            status: health.status,
            reason: run.reason.clone(),
            took,
        },
    };
    Folded {
        wants_action: obs.wants_action && run.verdict == RunVerdict::Fail,
        obs,
        event,
    }
}

/// How long a run took, from its attempts: each attempt's probe time and the retry
/// delays between them (for one-shot runs, which do not time the run as a whole).
pub fn run_time(check: &Check, run: &CheckRun) -> Duration {
    let probes: Duration = run.attempts.iter().map(|a| a.elapsed).sum();
    let retries = u32::try_from(run.attempts.len().saturating_sub(1)).unwrap_or(u32::MAX);
    probes + check.retry_delay * retries
}

/// Takes up a `log` check's saved read position before this process's first run of it
/// (the position in memory, if any, wins). An unusable position is logged and the check
/// starts where a first run does (at the end).
pub fn resume(service: &ServiceName, check: &Check, saved: Option<&str>) {
    let (CheckKind::Log(spec), Some(token)) = (&check.kind, saved) else {
        return;
    };
    if let Err(why) = log_probe::resume(spec, token) {
        tracing::warn!(service = %service, check = %check.name, event = "log_position_unusable",
            "the saved read position cannot be used ({why}); reading from the end of the log");
    }
}

/// A `log` check's read position after a run, to save with its state.
pub fn position(check: &Check) -> Option<String> {
    match &check.kind {
        CheckKind::Log(spec) => log_probe::position(spec),
        _ => None,
    }
}
