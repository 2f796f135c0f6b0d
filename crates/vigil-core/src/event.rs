//! Every fact Vigil reports about a service, as one closed type.
//!
//! The lifecycle machine, the guard at the edge and the check loops emit [`Event`]s; the
//! log line, the alert and the metric are their subscribers, so the wording of a
//! fact lives here once (the seed's wording: "Restart SKIPPED: cooldown active (90s ago
//! by health, need 120s, wait 30s more)") and tests assert on events, not on log text.
//!
//! Events carry durations and values, never a clock reading: whoever publishes an event
//! stamps it, and [`Event::message`] takes that stamp to say "re-arms at ..., in 35m".

use std::time::Duration;

use crate::guard::{Denial, Skip};
use crate::health::{HealthStatus, RunVerdict};
use crate::outcome::RestartReport;
use crate::restart_policy::{ExitCause, RestartPolicy};
use crate::signal::Signal;
use crate::time::{Timestamp, format_duration};
use crate::{RestartRequest, Source, Verdict};

/// The pseudo-service fleet-wide events ([`Event::FleetUnreachable`], ...) are published
/// under: parentheses cannot start a service's name.
pub const FLEET_SUBJECT: &str = "(fleet)";

/// One fact about a service (or one of its checks).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    // ----------------------------------------------------------------- the guard
    /// The guard's verdict on one request.
    Verdict {
        request: RestartRequest,
        verdict: Verdict,
        /// For a denial inside an already announced given-up episode: how many denials
        /// the episode has counted (they are counted on the episode, not stored as rows).
        repeat: Option<u32>,
    },
    /// An allowed restart (or repair command) finished.
    RestartFinished {
        request: RestartRequest,
        verdict: Verdict,
        report: RestartReport,
    },
    /// The driver said the service cannot be restarted again until someone acts.
    ActionRequired {
        why: String,
    },
    /// A restart whose Vigil process died before recording its outcome.
    RestartInterrupted {
        intent: i64,
        allowed_at: Timestamp,
        source: String,
        pid: u32,
    },
    /// The guard could not be asked (the ledger or the lock failed).
    GuardError {
        source: Source,
        error: String,
    },
    /// A restart started by a Vigil that died still runs: the guard waits for it before
    /// anything else restarts the service.
    RestartStillRunning {
        by_pid: u32,
        what: String,
        child: Option<u32>,
    },
    /// A restart whose Vigil died was resolved with what is known.
    RestartResolved {
        by_pid: u32,
        outcome: &'static str,
        detail: String,
    },

    // ----------------------------------------------------------------- the lifecycle
    /// The budget is spent: automatic restarts stop until the window re-arms. Emitted
    /// once per given-up episode.
    GivenUp {
        request: RestartRequest,
        verdict: Verdict,
    },
    /// The given-up episode ended: the window re-armed on its own.
    Rearmed,
    /// An operator's stop or pause ended by itself (`--for`, a maintenance window).
    HoldExpired {
        kind: &'static str,
    },
    /// An operator's stop or start of the service finished.
    OperatorFinished {
        op: &'static str,
        report: RestartReport,
    },
    /// A request was refused because an operator holds the service (stopped or paused).
    RestartHeld {
        source: Source,
        kind: &'static str,
    },
    /// A refused restart whose source will not ask again, kept until the guard allows it.
    RestartDeferred {
        source: Source,
        wait: Duration,
        verdict: Verdict,
    },
    /// A deferred restart is no longer needed: the service runs again.
    DeferredDropped {
        source: Source,
    },
    /// An automatic restart was not attempted: the driver says it cannot succeed
    /// (systemd's start limit). `first` is the first refusal of the episode.
    RestartNotAttempted {
        source: Source,
        why: String,
        first: bool,
    },

    // ----------------------------------------------------------------- exec processes
    /// A supervised process was spawned. `since_exit`: from the previous instance's exit
    /// being observed to this spawn (Vigil's own share of a crash-to-restart).
    ProcessStarted {
        pid: i32,
        command: String,
        since_exit: Option<Duration>,
    },
    SpawnFailed {
        detail: String,
    },
    /// `READY=1` arrived.
    ProcessReady {
        pid: i32,
        after: Duration,
    },
    /// The process ended without Vigil stopping it (or after a watchdog/start-timeout
    /// signal); `cause` is its row in systemd's restart table.
    ProcessExited {
        pid: i32,
        how: String,
        cause: ExitCause,
        uptime: Duration,
    },
    /// `restart = ...` does not restart after this cause.
    NotRestarted {
        policy: RestartPolicy,
        cause: ExitCause,
        how: String,
    },
    /// No `READY=1` within `start_timeout`.
    StartTimeout {
        pid: i32,
        timeout: Duration,
        signal: Signal,
    },
    /// No `WATCHDOG=1` within the watchdog interval; `evidence` was read before the signal.
    WatchdogTimeout {
        pid: i32,
        signal: Signal,
        evidence: String,
    },
    /// Still running `after` the stop signal: SIGKILL to the process group.
    ProcessKill {
        pid: i32,
        after: Duration,
    },
    /// Vigil is stopping the process (its stop signal to the group).
    ProcessStopping {
        pid: i32,
        why: String,
        signal: Signal,
        timeout: Duration,
    },
    ProcessStopped {
        pid: i32,
        how: String,
        killed: bool,
        took: Duration,
    },
    /// The process did not die within `grace` of SIGKILL (uninterruptible sleep?).
    ProcessUnkillable {
        pid: i32,
        grace: Duration,
    },
    /// Processes left in the group after the main process ended, killed.
    Leftovers {
        processes: Vec<String>,
        killed_by: String,
    },
    /// `on_daemon_exit = "leave"`: the process keeps running after Vigil exits.
    LeftRunning {
        pid: i32,
    },
    /// The service's definition changed on reload: restarted with the new one.
    DefinitionChanged,
    /// The service announced `STOPPING=1` or `RELOADING=1`.
    Announced {
        what: &'static str,
    },

    // ----------------------------------------------------------------- checks
    /// A check changed status. `recovered`: it passes again after a failing or warning
    /// status was announced. `took`: the run, all its attempts (the check loop's
    /// measure; a metric's histogram observes it).
    CheckStatus {
        check: String,
        verdict: RunVerdict,
        from: HealthStatus,
        to: HealthStatus,
        reason: String,
        recovered: bool,
        took: Duration,
    },
    /// A run that did not change the check's status.
    CheckRun {
        check: String,
        verdict: RunVerdict,
        status: HealthStatus,
        reason: String,
        took: Duration,
    },
    /// A verdict ignored during the service's grace period.
    CheckGrace {
        check: String,
        verdict: RunVerdict,
        left: Duration,
        reason: String,
        took: Duration,
    },
    /// A failing check with `on_failure = "alert"`: not restarting.
    FailingAlertOnly {
        check: String,
        reason: String,
    },
    /// A `[[services.X.schedule]]` entry fired.
    ScheduleFired {
        schedule: String,
    },
    /// A maintenance window began: the service is paused or stopped until `until` (its
    /// end is the hold's expiry, [`Event::HoldExpired`]).
    MaintenanceStarted {
        /// `pause` or `stop`.
        action: &'static str,
        until: Timestamp,
        window: String,
    },
    // ----------------------------------------------------------------- the fleet
    /// PostgreSQL could not be reached (or answered too slowly): fleet-keyed restarts are
    /// decided per `on_unreachable` until it is back. Once per outage, published under
    /// the pseudo-service [`FLEET_SUBJECT`].
    FleetUnreachable {
        error: String,
        /// `local` or `deny`.
        on_unreachable: &'static str,
    },
    /// PostgreSQL answers again after an outage of `after`; what was not published during
    /// it is published now.
    FleetRecovered {
        after: Duration,
    },
    /// A lease this host held expired before it could be renewed (a partition, a slow
    /// database): other hosts may restart members of the key now.
    FleetLeaseLost {
        key: String,
    },

    /// Vigil itself was stalled while the check ran (the run took far longer than its
    /// timeouts allow): the run says nothing about the service; it is not counted and runs
    /// again.
    VigilStalled {
        check: String,
        took: Duration,
        bound: Duration,
    },
}

/// How loud an event is in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

/// A number or word behind an event, for structured (JSON) logs and metrics.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    U64(u64),
    I64(i64),
    Bool(bool),
    Str(String),
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Event {
    /// The event's name in JSON logs (`event`), stable across releases.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Verdict { verdict, .. } => match verdict {
                Verdict::Allowed { .. } => "restart_allowed",
                Verdict::Skipped(_) => "restart_skipped",
                Verdict::Denied(_) => "restart_denied",
            },
            Event::RestartFinished { report, .. } => {
                if report.ok {
                    "restarted"
                } else {
                    "restart_failed"
                }
            }
            Event::ActionRequired { .. } => "action_required",
            Event::RestartInterrupted { .. } => "restart_interrupted",
            Event::GuardError { .. } => "guard_error",
            Event::RestartStillRunning { .. } => "restart_still_running",
            Event::RestartResolved { .. } => "restart_resolved",
            Event::GivenUp { .. } => "given_up",
            Event::Rearmed => "rearmed",
            Event::HoldExpired { .. } => "hold_expired",
            Event::OperatorFinished { op, .. } => match *op {
                "stop" => "stopped",
                _ => "started",
            },
            Event::RestartHeld { .. } => "restart_held",
            Event::RestartDeferred { .. } => "restart_deferred",
            Event::DeferredDropped { .. } => "deferred_dropped",
            Event::RestartNotAttempted { .. } => "restart_not_attempted",
            Event::ProcessStarted { .. } => "exec_started",
            Event::SpawnFailed { .. } => "exec_spawn_failed",
            Event::ProcessReady { .. } => "exec_ready",
            Event::ProcessExited { .. } => "exec_exited",
            Event::NotRestarted { .. } => "exec_not_restarted",
            Event::StartTimeout { .. } => "start_timeout",
            Event::WatchdogTimeout { .. } => "watchdog",
            Event::ProcessKill { .. } => "exec_kill",
            Event::ProcessStopping { .. } => "exec_stopping",
            Event::ProcessStopped { .. } => "exec_stopped",
            Event::ProcessUnkillable { .. } => "exec_unkillable",
            Event::Leftovers { .. } => "exec_leftovers",
            Event::LeftRunning { .. } => "exec_left_running",
            Event::DefinitionChanged => "exec_definition_changed",
            Event::Announced { what } => match *what {
                "RELOADING=1" => "exec_reloading",
                _ => "exec_stopping_announced",
            },
            Event::CheckStatus { .. } => "check_status",
            Event::CheckRun { .. } => "check_run",
            Event::CheckGrace { .. } => "check_grace",
            Event::FailingAlertOnly { .. } => "failing_alert_only",
            Event::ScheduleFired { .. } => "schedule_fired",
            Event::MaintenanceStarted { .. } => "maintenance_started",
            Event::VigilStalled { .. } => "vigil_stalled",
            Event::FleetUnreachable { .. } => "fleet_unreachable",
            Event::FleetRecovered { .. } => "fleet_recovered",
            Event::FleetLeaseLost { .. } => "fleet_lease_lost",
        }
    }

    /// The check the event is about, if any.
    pub fn check(&self) -> Option<&str> {
        match self {
            Event::CheckStatus { check, .. }
            | Event::CheckRun { check, .. }
            | Event::CheckGrace { check, .. }
            | Event::FailingAlertOnly { check, .. }
            | Event::VigilStalled { check, .. } => Some(check),
            _ => None,
        }
    }

    pub fn level(&self) -> Level {
        match self {
            Event::Verdict {
                verdict, repeat, ..
            } => match verdict {
                Verdict::Allowed { .. } | Verdict::Skipped(_) => Level::Info,
                Verdict::Denied(_) if repeat.is_some() => Level::Debug,
                Verdict::Denied(_) => Level::Warn,
            },
            Event::RestartFinished { report, .. } => {
                if report.ok {
                    Level::Info
                } else {
                    Level::Error
                }
            }
            Event::ActionRequired { .. } | Event::GivenUp { .. } | Event::GuardError { .. } => {
                Level::Error
            }
            Event::RestartNotAttempted { first, .. } => {
                if *first {
                    Level::Error
                } else {
                    Level::Debug
                }
            }
            Event::RestartInterrupted { .. }
            | Event::RestartStillRunning { .. }
            | Event::RestartResolved { .. }
            | Event::ProcessExited { .. }
            | Event::StartTimeout { .. }
            | Event::ProcessKill { .. }
            | Event::Leftovers { .. } => Level::Warn,
            Event::ProcessStopped { killed, .. } => {
                if *killed {
                    Level::Warn
                } else {
                    Level::Info
                }
            }
            Event::SpawnFailed { .. }
            | Event::WatchdogTimeout { .. }
            | Event::ProcessUnkillable { .. } => Level::Error,
            Event::CheckStatus { to, .. } => match to {
                HealthStatus::Failing | HealthStatus::Warning => Level::Warn,
                _ => Level::Info,
            },
            Event::CheckRun { verdict, .. } => match verdict {
                RunVerdict::Pass => Level::Debug,
                _ => Level::Warn,
            },
            Event::FailingAlertOnly { .. } | Event::VigilStalled { .. } => Level::Warn,
            Event::FleetUnreachable { .. } | Event::FleetLeaseLost { .. } => Level::Warn,
            Event::FleetRecovered { .. } => Level::Info,
            Event::RestartHeld { .. } => Level::Debug,
            Event::OperatorFinished { report, .. } => {
                if report.ok {
                    Level::Info
                } else {
                    Level::Error
                }
            }
            Event::Rearmed
            | Event::HoldExpired { .. }
            | Event::RestartDeferred { .. }
            | Event::DeferredDropped { .. }
            | Event::ProcessStarted { .. }
            | Event::ProcessReady { .. }
            | Event::NotRestarted { .. }
            | Event::ProcessStopping { .. }
            | Event::LeftRunning { .. }
            | Event::DefinitionChanged
            | Event::Announced { .. }
            | Event::CheckGrace { .. }
            | Event::ScheduleFired { .. }
            | Event::MaintenanceStarted { .. } => Level::Info,
        }
    }

    /// The log line (without timestamp, level and service), in the seed's wording where
    /// the seed has one. `at` is when the event was published.
    pub fn message(&self, at: Timestamp) -> String {
        match self {
            Event::Verdict {
                request,
                verdict,
                repeat,
            } => match (verdict, repeat) {
                (Verdict::Allowed { .. }, _) => format!("{verdict} (source {})", request.source),
                (Verdict::Denied(_), Some(n)) => format!(
                    "{verdict} (denial {n} of this given-up episode, counted on it; source {})",
                    request.source
                ),
                _ => verdict.to_string(),
            },
            Event::RestartFinished { report, .. } => {
                if report.ok {
                    format!("Restart complete: {}", report.detail)
                } else {
                    format!("Restart FAILED: {}", report.detail)
                }
            }
            Event::ActionRequired { why } => format!("ACTION REQUIRED: {why}"),
            Event::RestartInterrupted {
                allowed_at,
                source,
                pid,
                ..
            } => format!(
                "restart allowed at {allowed_at} (source {source}) by vigil pid {pid} never recorded an outcome: that process died mid-restart; recorded as interrupted, outcome unknown"
            ),
            Event::GuardError { error, .. } => format!("restart request failed: {error}"),
            Event::RestartStillRunning {
                by_pid,
                what,
                child,
            } => match child {
                Some(pid) => format!(
                    "a restart started by vigil pid {by_pid}, which died, still runs: {what} (pid {pid}); waiting for it"
                ),
                None => format!(
                    "a restart started by vigil pid {by_pid}, which died, still runs: {what}; waiting for it"
                ),
            },
            Event::RestartResolved {
                outcome, detail, ..
            } => format!("restart recorded as {outcome}: {detail}"),
            Event::GivenUp { verdict, .. } => {
                let rearm = match verdict {
                    Verdict::Denied(Denial::Limit { rearm_at, .. }) => *rearm_at,
                    _ => at,
                };
                format!(
                    "ACTION REQUIRED: Check service health manually - automatic restarts stopped (re-arms at {rearm}, in {})",
                    format_duration(rearm.saturating_since(at))
                )
            }
            Event::Rearmed => {
                "the restart budget re-armed (a restart left the window): automatic restarts resume"
                    .to_owned()
            }
            Event::HoldExpired { kind } => match *kind {
                "stopped" => {
                    "the stop ended (its time is up): starting the service again".to_owned()
                }
                _ => {
                    "the pause ended (its time is up): automatic actions go through the guard again"
                        .to_owned()
                }
            },
            Event::OperatorFinished { op, report } => {
                let what = if *op == "stop" { "Stop" } else { "Start" };
                if report.ok {
                    format!("{what} complete: {}", report.detail)
                } else {
                    format!("{what} FAILED: {}", report.detail)
                }
            }
            Event::RestartHeld { source, kind } => {
                format!(
                    "Restart NOT ATTEMPTED: the service is {kind} by an operator (source {source})"
                )
            }
            Event::RestartDeferred {
                source,
                wait,
                verdict,
            } => format!(
                "restart (source {source}) deferred until {}: {verdict}",
                at.saturating_add(*wait)
            ),
            Event::DeferredDropped { source } => format!(
                "the service runs again: the deferred restart (source {source}) is no longer needed"
            ),
            Event::RestartNotAttempted { why, .. } => format!("Restart NOT ATTEMPTED: {why}"),
            Event::ProcessStarted {
                pid,
                command,
                since_exit,
            } => match since_exit {
                Some(d) => format!(
                    "started pid {pid} ({} after the previous exit): {command}",
                    format_duration(*d)
                ),
                None => format!("started pid {pid}: {command}"),
            },
            Event::SpawnFailed { detail } => format!("cannot start: {detail}"),
            Event::ProcessReady { after, .. } => {
                format!("ready (READY=1) {} after start", format_duration(*after))
            }
            Event::ProcessExited {
                pid,
                how,
                cause,
                uptime,
            } => format!(
                "process {pid} exited: {how} (exit cause: {}) after {}",
                cause.as_str(),
                format_duration(*uptime)
            ),
            Event::NotRestarted { policy, cause, how } => format!(
                "not restarted: restart = {policy} does not restart after {} ({how})",
                cause.as_str()
            ),
            Event::StartTimeout {
                pid,
                timeout,
                signal,
            } => format!(
                "no READY=1 within start_timeout {}: stopping pid {pid} with {signal}",
                format_duration(*timeout)
            ),
            Event::WatchdogTimeout {
                pid,
                signal,
                evidence,
            } => format!(
                "Watchdog timeout: killing pid {pid} with {signal}. Hang evidence:\n{evidence}"
            ),
            Event::ProcessKill { after, .. } => format!(
                "still running {} after the signal: SIGKILL to its process group",
                format_duration(*after)
            ),
            Event::ProcessStopping {
                pid,
                why,
                signal,
                timeout,
            } => format!(
                "stopping pid {pid} ({why}): {signal} to its process group, SIGKILL after {}",
                format_duration(*timeout)
            ),
            Event::ProcessStopped {
                pid,
                how,
                killed,
                took,
            } => {
                if *killed {
                    format!(
                        "stopped pid {pid} with SIGKILL after the stop timeout ({how}, {})",
                        format_duration(*took)
                    )
                } else {
                    format!("stopped pid {pid} ({how}, {})", format_duration(*took))
                }
            }
            Event::ProcessUnkillable { pid, grace } => format!(
                "pid {pid} did not die within {} of SIGKILL (uninterruptible sleep?); giving up on it",
                format_duration(*grace)
            ),
            Event::Leftovers {
                processes,
                killed_by,
            } => format!(
                "{} leftover process(es) in the process group after the main process ended, killed ({killed_by}): {}",
                processes.len(),
                processes.join("; ")
            ),
            Event::LeftRunning { pid } => {
                format!("on_daemon_exit = leave: process {pid} keeps running")
            }
            Event::DefinitionChanged => {
                "definition changed on reload: restarting with the new one".to_owned()
            }
            Event::Announced { what } => format!("the service announced {what}"),
            Event::CheckStatus {
                verdict,
                from,
                to,
                reason,
                ..
            } => format!(
                "Health check {}: {} -> {}: {reason}",
                verdict.as_str().to_uppercase(),
                from.as_str(),
                to.as_str()
            ),
            Event::CheckRun {
                verdict,
                status,
                reason,
                ..
            } => match verdict {
                RunVerdict::Pass => format!("Health check PASS: {reason}"),
                _ => format!(
                    "Health check {} ({}): {reason}",
                    verdict.as_str().to_uppercase(),
                    status.as_str()
                ),
            },
            Event::CheckGrace { left, reason, .. } => format!(
                "Health check: grace period active ({} left), result ignored: {reason}",
                format_duration(*left)
            ),
            Event::FailingAlertOnly { reason, .. } => {
                format!("check failing, on_failure = alert: not restarting ({reason})")
            }
            Event::ScheduleFired { schedule } => {
                format!("=== Scheduled Restart Triggered: {schedule} ===")
            }
            Event::MaintenanceStarted {
                action,
                until,
                window,
            } => format!(
                "maintenance window ({window}) begins: {} until {until}",
                if *action == "stop" {
                    "stopping the service"
                } else {
                    "automatic actions paused"
                }
            ),
            Event::FleetUnreachable {
                error,
                on_unreachable,
            } => format!(
                "fleet unreachable: {error}; fleet-keyed restarts: {} until PostgreSQL is back",
                if *on_unreachable == "deny" {
                    "automatic ones skipped (on_unreachable = deny)"
                } else {
                    "the local guard alone decides (on_unreachable = local)"
                }
            ),
            Event::FleetRecovered { after } => format!(
                "fleet recovered: PostgreSQL answers again after {}; publishing what waited",
                format_duration(*after)
            ),
            Event::FleetLeaseLost { key } => format!(
                "fleet lease on {key} lost: it expired before it could be renewed; other hosts may restart members of {key} now"
            ),
            Event::VigilStalled { took, bound, .. } => format!(
                "vigil itself was stalled during this run (it took {}, its timeouts allow {}): the result is not counted; running it again",
                format_duration(*took),
                format_duration(*bound)
            ),
        }
    }

    /// The numbers and words behind the event, for JSON logs.
    pub fn fields(&self) -> Vec<(&'static str, Field)> {
        use Field::{Bool, I64, Str, U64};
        let source = |s: Source| ("source", Str(s.as_str().to_owned()));
        match self {
            Event::Verdict {
                request,
                verdict,
                repeat,
            } => {
                let mut f = vec![source(request.source)];
                match verdict {
                    Verdict::Allowed {
                        count, max, forced, ..
                    } => {
                        f.push(("forced", Bool(*forced)));
                        f.push(("count", U64(u64::from(*count))));
                        f.push(("max", U64(u64::from(*max))));
                    }
                    Verdict::Skipped(skip) => {
                        let (wait, need, ago) = match skip {
                            Skip::Cooldown {
                                wait, need, ago, ..
                            }
                            | Skip::Backoff {
                                wait, need, ago, ..
                            } => (ms(*wait), ms(*need), ms(*ago)),
                            Skip::Lock { waited } => (0, 0, ms(*waited)),
                            Skip::Fleet(refusal) => (refusal.wait().map_or(0, ms), 0, 0),
                        };
                        if let Skip::Fleet(refusal) = skip {
                            f.push(("fleet_key", Str(refusal.key().to_owned())));
                            f.push(("fleet_rule", Str(refusal.rule().to_owned())));
                        }
                        f.push(("reason", Str(verdict.reason().unwrap_or("").to_owned())));
                        f.push(("wait_ms", U64(wait)));
                        f.push(("need_ms", U64(need)));
                        f.push(("ago_ms", U64(ago)));
                    }
                    Verdict::Denied(Denial::Limit {
                        count,
                        max,
                        rearm_at,
                        ..
                    }) => {
                        f.push(("reason", Str("limit".to_owned())));
                        f.push(("count", U64(u64::from(*count))));
                        f.push(("max", U64(u64::from(*max))));
                        f.push(("rearm_at", Str(rearm_at.to_string())));
                        if let Some(n) = repeat {
                            f.push(("repeat", U64(u64::from(*n))));
                        }
                    }
                }
                f
            }
            Event::RestartFinished {
                request, report, ..
            } => vec![
                source(request.source),
                ("duration_ms", U64(ms(report.duration))),
            ],
            Event::RestartInterrupted { intent, pid, .. } => {
                vec![("intent_id", I64(*intent)), ("pid", U64(u64::from(*pid)))]
            }
            Event::GuardError { source: s, .. } => vec![source(*s)],
            Event::RestartStillRunning { by_pid, child, .. } => {
                let mut f = vec![("by_pid", U64(u64::from(*by_pid)))];
                if let Some(c) = child {
                    f.push(("child_pid", U64(u64::from(*c))));
                }
                f
            }
            Event::RestartResolved {
                by_pid, outcome, ..
            } => vec![
                ("by_pid", U64(u64::from(*by_pid))),
                ("outcome", Str((*outcome).to_owned())),
            ],
            Event::GivenUp { request, verdict } => {
                let mut f = vec![source(request.source)];
                if let Verdict::Denied(Denial::Limit { rearm_at, .. }) = verdict {
                    f.push(("rearm_at", Str(rearm_at.to_string())));
                }
                f
            }
            Event::RestartDeferred {
                source: s, wait, ..
            } => {
                vec![source(*s), ("wait_ms", U64(ms(*wait)))]
            }
            Event::DeferredDropped { source: s }
            | Event::RestartNotAttempted { source: s, .. }
            | Event::RestartHeld { source: s, .. } => vec![source(*s)],
            Event::ProcessStarted {
                pid, since_exit, ..
            } => {
                let mut f = vec![("pid", I64(i64::from(*pid)))];
                if let Some(d) = since_exit {
                    f.push((
                        "since_exit_us",
                        U64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                    ));
                }
                f
            }
            Event::ProcessReady { pid, .. }
            | Event::ProcessKill { pid, .. }
            | Event::ProcessUnkillable { pid, .. }
            | Event::LeftRunning { pid } => vec![("pid", I64(i64::from(*pid)))],
            Event::ProcessExited {
                pid, cause, uptime, ..
            } => vec![
                ("pid", I64(i64::from(*pid))),
                ("cause", Str(cause.as_str().to_owned())),
                ("uptime_ms", U64(ms(*uptime))),
            ],
            Event::NotRestarted { policy, cause, .. } => vec![
                ("restart", Str(policy.as_str().to_owned())),
                ("cause", Str(cause.as_str().to_owned())),
            ],
            Event::StartTimeout { pid, .. } => vec![("pid", I64(i64::from(*pid)))],
            Event::WatchdogTimeout { pid, signal, .. } => vec![
                ("pid", I64(i64::from(*pid))),
                ("signal", Str(signal.to_string())),
            ],
            Event::ProcessStopping { pid, signal, .. } => vec![
                ("pid", I64(i64::from(*pid))),
                ("signal", Str(signal.to_string())),
            ],
            Event::ProcessStopped {
                pid, killed, took, ..
            } => vec![
                ("pid", I64(i64::from(*pid))),
                ("killed", Bool(*killed)),
                ("duration_ms", U64(ms(*took))),
            ],
            Event::Leftovers {
                processes,
                killed_by,
            } => vec![
                ("count", U64(processes.len() as u64)),
                ("killed_by", Str(killed_by.clone())),
            ],
            Event::CheckStatus { from, to, took, .. } => vec![
                ("from", Str(from.as_str().to_owned())),
                ("to", Str(to.as_str().to_owned())),
                ("took_ms", U64(ms(*took))),
            ],
            Event::CheckRun {
                verdict,
                status,
                took,
                ..
            } => vec![
                ("verdict", Str(verdict.as_str().to_owned())),
                ("status", Str(status.as_str().to_owned())),
                ("took_ms", U64(ms(*took))),
            ],
            Event::CheckGrace { left, took, .. } => vec![
                ("grace_left_ms", U64(ms(*left))),
                ("took_ms", U64(ms(*took))),
            ],
            Event::VigilStalled { took, bound, .. } => {
                vec![("took_ms", U64(ms(*took))), ("bound_ms", U64(ms(*bound)))]
            }
            Event::OperatorFinished { report, .. } => {
                vec![("duration_ms", U64(ms(report.duration)))]
            }
            Event::ActionRequired { .. }
            | Event::Rearmed
            | Event::HoldExpired { .. }
            | Event::SpawnFailed { .. }
            | Event::DefinitionChanged
            | Event::Announced { .. }
            | Event::FailingAlertOnly { .. }
            | Event::ScheduleFired { .. } => Vec::new(),
            Event::MaintenanceStarted { until, .. } => {
                vec![("until", Str(until.to_string()))]
            }
            Event::FleetUnreachable { on_unreachable, .. } => {
                vec![("on_unreachable", Str((*on_unreachable).to_owned()))]
            }
            Event::FleetRecovered { after } => vec![("outage_ms", U64(ms(*after)))],
            Event::FleetLeaseLost { key } => vec![("fleet_key", Str(key.clone()))],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_up_says_when_it_re_arms_from_the_publication_time() {
        let verdict = Verdict::Denied(Denial::Limit {
            count: 5,
            max: 5,
            window: Duration::from_secs(3600),
            rearm_at: Timestamp::from_secs(1_739_531_100),
        });
        let e = Event::GivenUp {
            request: RestartRequest::new(Source::Health),
            verdict,
        };
        assert_eq!(
            e.message(Timestamp::from_secs(1_739_529_000)),
            "ACTION REQUIRED: Check service health manually - automatic restarts stopped (re-arms at 2025-02-14T11:05:00Z, in 35m)"
        );
        assert_eq!(e.level(), Level::Error);
        assert_eq!(e.name(), "given_up");
    }

    #[test]
    fn a_repeated_denial_is_quiet_and_says_it_is_counted_on_the_episode() {
        let verdict = Verdict::Denied(Denial::Limit {
            count: 5,
            max: 5,
            window: Duration::from_secs(3600),
            rearm_at: Timestamp::from_secs(100),
        });
        let first = Event::Verdict {
            request: RestartRequest::new(Source::Health),
            verdict: verdict.clone(),
            repeat: None,
        };
        let again = Event::Verdict {
            request: RestartRequest::new(Source::Health),
            verdict,
            repeat: Some(7),
        };
        assert_eq!(first.level(), Level::Warn);
        assert_eq!(again.level(), Level::Debug);
        assert_eq!(
            first.message(Timestamp::from_secs(1)),
            "Restart DENIED: limit reached (5/5 per hour)"
        );
        assert!(
            again
                .message(Timestamp::from_secs(1))
                .contains("denial 7 of this given-up episode")
        );
    }
}
