//! Drivers: how a service is restarted and how long it has been up.
//!
//! Drivers act and report typed outcomes ([`RestartReport`]); they never retry and never
//! decide. Every restart reaches a driver only through the guard (`guard.rs`).
//!
//! The systemd driver talks D-Bus through the shared connections of the daemon's
//! [`ProbeContext`] (one per bus, shared with the `systemd` checks): `RestartUnit` with mode
//! `replace`, then the job is followed to its `JobRemoved` within `job_timeout`.

use std::sync::Arc;
use std::time::Duration;

use vigil_checks::ProbeContext;
use vigil_checks::process::{self, Exit, Leftovers, RunSpec};
use vigil_checks::systemd::{Buses, JobEnd, JobKind, JobOutcome, UnitState};
use vigil_config::model::{Argv, CommandDriver, DockerDriver, DriverSpec, SystemdDriver};
use vigil_core::{Timestamp, format_duration};

use crate::docker::{self, OwnRestarts};

/// How one restart (or repair command) went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartReport {
    pub ok: bool,
    /// One line: what ran and how it ended ("`systemctl restart x`: exit code 0 in 1.2s").
    pub detail: String,
    pub duration: Duration,
    /// The service cannot be restarted again until someone acts (systemd's start limit
    /// tripped): the reason, raised as an ACTION REQUIRED alert.
    pub action_required: Option<String>,
}

/// A service's driver, built from its validated spec.
#[derive(Clone, Debug)]
pub enum Driver {
    Command(CommandDriver),
    /// The container, and what the driver and the event follower share about it.
    Docker(DockerDriver, Arc<OwnRestarts>),
    /// Owned by `vigil run`'s supervisor (`exec/`): a one-shot process cannot restart it.
    Exec,
    Systemd(SystemdUnit),
}

/// `driver = "systemd"` with the shared bus connections.
#[derive(Clone, Debug)]
pub struct SystemdUnit {
    spec: SystemdDriver,
    buses: Buses,
}

/// What one-shot commands say about an exec service: the running daemon owns its process.
pub const EXEC_OWNED_BY_DAEMON: &str = "exec services are supervised by `vigil run`, which owns their processes; this command cannot act on one without the daemon's control socket";

/// systemd's `Result` when its start limit refused a start.
const START_LIMIT_HIT: &str = "start-limit-hit";

impl Driver {
    /// `cx` provides the shared D-Bus connections of the systemd driver.
    pub fn new(spec: &DriverSpec, cx: &ProbeContext) -> Driver {
        match spec {
            DriverSpec::Command(c) => Driver::Command(c.clone()),
            DriverSpec::Docker(d) => Driver::Docker(d.clone(), Arc::default()),
            DriverSpec::Exec(_) => Driver::Exec,
            DriverSpec::Systemd(s) => Driver::Systemd(SystemdUnit {
                spec: s.clone(),
                buses: cx.buses().clone(),
            }),
        }
    }

    /// Restarts the service and waits for the driver's own deadline.
    pub async fn restart(&self) -> RestartReport {
        match self {
            Driver::Command(c) => run_command(&c.restart, c.timeout).await,
            Driver::Docker(d, own) => docker::restart(d, own).await,
            Driver::Exec => exec_not_here(),
            Driver::Systemd(u) => u.restart().await,
        }
    }

    /// Stops the service for a group restart. A command driver without `stop_command`
    /// has nothing to run here (its `restart_command` does the work in the start phase).
    pub async fn stop(&self) -> RestartReport {
        match self {
            Driver::Command(c) => match &c.stop {
                Some(stop) => run_command(stop, c.timeout).await,
                None => RestartReport {
                    ok: true,
                    detail: "no stop_command: restarted in the start phase".to_owned(),
                    duration: Duration::ZERO,
                    action_required: None,
                },
            },
            Driver::Docker(d, own) => docker::stop(d, own).await,
            Driver::Exec => exec_not_here(),
            Driver::Systemd(u) => u.job(JobKind::Stop).await,
        }
    }

    /// Starts the service in a group restart: `start_command` after a `stop_command`,
    /// else `restart_command`; a container is started.
    pub async fn start(&self) -> RestartReport {
        match self {
            Driver::Command(c) => match (&c.stop, &c.start) {
                (Some(_), Some(start)) => run_command(start, c.timeout).await,
                _ => run_command(&c.restart, c.timeout).await,
            },
            Driver::Docker(d, own) => docker::start(d, own).await,
            Driver::Exec => exec_not_here(),
            Driver::Systemd(u) => u.job(JobKind::Start).await,
        }
    }

    /// Whether the service runs, when the driver can tell (`status_command`; a unit's
    /// `ActiveState`).
    pub async fn is_running(&self) -> Option<bool> {
        match self {
            Driver::Command(c) => {
                let status = c.status.as_ref()?;
                Some(run_command(status, c.timeout).await.ok)
            }
            Driver::Docker(d, _) => docker::inspect(d).await.ok().map(|s| s.running),
            Driver::Exec => None,
            Driver::Systemd(u) => u.state().await.ok().map(|s| s.is_active()),
        }
    }

    /// When the running instance started, for `grace`: `None` when the driver cannot tell
    /// (Vigil's own record of its last restart is used then), `Some(None)` when the service
    /// is not running. Docker: the container's `State.StartedAt`; systemd: the unit's
    /// `ActiveEnterTimestamp`, so restarts by anyone (systemctl, `Restart=`, Docker's own
    /// policy) count.
    pub async fn started_at(&self) -> Option<Option<Timestamp>> {
        match self {
            Driver::Command(_) | Driver::Exec => None,
            Driver::Docker(d, _) => {
                let state = docker::inspect(d).await.ok()?;
                Some(state.started_at.filter(|_| state.running))
            }
            Driver::Systemd(u) => {
                let state = u.state().await.ok()?;
                Some(if state.is_active() {
                    state.active_enter
                } else {
                    None
                })
            }
        }
    }

    /// The driver's own view of the service for `vigil status` (the container's state,
    /// health, exit code and restart count), or why it could not be read.
    pub async fn detail(&self) -> Option<String> {
        match self {
            Driver::Command(_) | Driver::Exec | Driver::Systemd(_) => None,
            Driver::Docker(d, _) => Some(match docker::inspect(d).await {
                Ok(state) => state.describe(),
                Err(e) => e,
            }),
        }
    }

    /// Why an automatic restart must not be attempted now, if it must not: the unit sits
    /// in `failed` with `Result=start-limit-hit` (systemd refuses to start it until someone
    /// resets it), unless the driver resets it itself (`reset_failed = true`).
    pub async fn restart_blocked(&self) -> Option<String> {
        let Driver::Systemd(u) = self else {
            return None;
        };
        if u.spec.reset_failed {
            return None;
        }
        let state = u.state().await.ok()?;
        (state.active_state == "failed" && state.result.as_deref() == Some(START_LIMIT_HIT))
            .then(|| {
                format!(
                    "unit {} is failed with Result=start-limit-hit: systemd refuses to start it; run `systemctl reset-failed {}` or `vigil restart`, or set reset_failed = true",
                    u.spec.unit, u.spec.unit
                )
            })
    }

    /// The unit's state for `vigil status` (systemd only).
    pub async fn unit_state(&self) -> Option<Result<UnitState, String>> {
        match self {
            Driver::Command(_) | Driver::Docker(..) | Driver::Exec => None,
            Driver::Systemd(u) => Some(u.state().await),
        }
    }
}

/// What a driver operation on an exec service outside its supervisor reports.
fn exec_not_here() -> RestartReport {
    RestartReport {
        ok: false,
        detail: EXEC_OWNED_BY_DAEMON.to_owned(),
        duration: Duration::ZERO,
        action_required: None,
    }
}

impl SystemdUnit {
    async fn state(&self) -> Result<UnitState, String> {
        let unit = self.spec.unit.as_str();
        self.buses
            .with(
                &self.spec.bus,
                |bus| async move { bus.unit_state(unit).await },
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// A group restart's stop or start step: the job, followed to its end.
    async fn job(&self, kind: JobKind) -> RestartReport {
        let started = tokio::time::Instant::now();
        let spec = &self.spec;
        let unit = spec.unit.as_str();
        let outcome = self
            .buses
            .with(&spec.bus, |bus| async move {
                bus.job(kind, unit, spec.job_timeout).await
            })
            .await;
        let duration = started.elapsed();
        match outcome {
            Err(e) => RestartReport {
                ok: false,
                detail: e.to_string(),
                duration,
                action_required: None,
            },
            Ok(job) if kind == JobKind::Stop => {
                let done = matches!(&job.end, JobEnd::Removed(r) if r == "done");
                RestartReport {
                    ok: done,
                    detail: format!(
                        "StopUnit {}: {} in {}",
                        job.unit,
                        match &job.end {
                            JobEnd::Removed(r) => format!("job {r}"),
                            JobEnd::DeadlineExceeded => "job not finished".to_owned(),
                        },
                        latency(job.took)
                    ),
                    duration,
                    action_required: None,
                }
            }
            Ok(job) => judge_job(&job, spec.job_timeout, duration),
        }
    }

    async fn restart(&self) -> RestartReport {
        let started = tokio::time::Instant::now();
        let spec = &self.spec;
        let unit = spec.unit.as_str();
        let outcome = self
            .buses
            .with(&spec.bus, |bus| async move {
                if spec.reset_failed {
                    match bus.reset_failed(unit).await {
                        // Not loaded: nothing to reset; RestartUnit says what is wrong.
                        Err(e) if e.error_name() == Some("org.freedesktop.systemd1.NoSuchUnit") => {
                        }
                        other => other?,
                    }
                }
                bus.restart_unit(unit, spec.job_timeout).await
            })
            .await;
        let duration = started.elapsed();
        let mut report = match outcome {
            Err(e) => RestartReport {
                ok: false,
                detail: e.to_string(),
                duration,
                action_required: None,
            },
            Ok(job) => judge_job(&job, spec.job_timeout, duration),
        };
        if spec.reset_failed {
            report.detail = format!("ResetFailedUnit, then {}", report.detail);
        }
        report
    }
}

/// The report for a restart job that ended (or ran past its deadline).
fn judge_job(job: &JobOutcome, job_timeout: Duration, duration: Duration) -> RestartReport {
    let head = format!("{} {}", job.kind.method(), job.unit);
    let took = latency(job.took);
    let unit_now = match &job.state {
        Some(s) => format!(
            "unit {} ({}){}",
            s.active_state,
            s.sub_state,
            s.result_suffix()
        ),
        None => "unit state unknown".to_owned(),
    };
    let active = job.state.as_ref().is_some_and(UnitState::is_active);
    let limit_hit = job
        .state
        .as_ref()
        .is_some_and(|s| s.result.as_deref() == Some(START_LIMIT_HIT) && !s.is_active());
    let (ok, detail) = match &job.end {
        JobEnd::Removed(result) if result == "done" && active => {
            (true, format!("{head}: job done in {took}, {unit_now}"))
        }
        JobEnd::Removed(result) if result == "done" => {
            (false, format!("{head}: job done in {took}, but {unit_now}"))
        }
        JobEnd::Removed(_) if limit_hit => (
            false,
            format!(
                "{head}: start-limit-hit: systemd's start limit refused the start (job failed in {took}); not retried automatically until the unit is reset"
            ),
        ),
        JobEnd::Removed(result) => (false, format!("{head}: job {result} in {took}, {unit_now}")),
        JobEnd::DeadlineExceeded => (
            false,
            format!(
                "{head}: job not finished after {} (job_timeout; it may still be running in systemd), {unit_now}",
                format_duration(job_timeout)
            ),
        ),
    };
    RestartReport {
        ok,
        detail,
        duration,
        action_required: limit_hit.then(|| {
            format!(
                "systemd's start limit tripped for {} (Result=start-limit-hit); automatic restarts stop until `systemctl reset-failed {}`, a manual `vigil restart`, or reset_failed = true",
                job.unit, job.unit
            )
        }),
    }
}

fn latency(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1}ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// Output kept from a driver or repair command, for the one-line report.
const CAPTURE_LIMIT: usize = 64 * 1024;

/// Runs a driver or repair command: success is exit code 0 within `timeout`.
pub async fn run_command(argv: &Argv, timeout: Duration) -> RestartReport {
    let spec = RunSpec {
        capture_limit: CAPTURE_LIMIT,
        // A restart command may start the service in the background (e.g.
        // `managed_start.sh restart`); what it leaves running is the service.
        leftovers: Leftovers::Keep,
        ..RunSpec::new(argv, timeout)
    };
    match process::run(spec).await {
        Err(e) => RestartReport {
            ok: false,
            detail: format!("`{argv}`: {e}"),
            duration: Duration::ZERO,
            action_required: None,
        },
        Ok(out) => {
            let took = vigil_core::format_duration(out.duration);
            let (ok, how) = match (out.timed_out, out.exit) {
                (true, _) | (false, None) => (
                    false,
                    format!(
                        "timed out after {} (process group killed)",
                        vigil_core::format_duration(timeout)
                    ),
                ),
                (false, Some(Exit::Code(0))) => (true, format!("exit code 0 in {took}")),
                (false, Some(exit)) => (false, format!("{exit} after {took}")),
            };
            let detail = if ok {
                format!("`{argv}`: {how}")
            } else {
                match first_line(&out.stderr).or_else(|| first_line(&out.stdout)) {
                    Some(line) => format!("`{argv}`: {how}: {line}"),
                    None => format!("`{argv}`: {how}"),
                }
            };
            RestartReport {
                ok,
                detail,
                duration: out.duration,
                action_required: None,
            }
        }
    }
}

fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut line = line.to_owned();
    if line.len() > 200 {
        let mut cut = 200;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(active: &str, sub: &str, result: &str) -> UnitState {
        UnitState {
            unit: "web.service".to_owned(),
            load_state: "loaded".to_owned(),
            active_state: active.to_owned(),
            sub_state: sub.to_owned(),
            result: Some(result.to_owned()),
            n_restarts: Some(0),
            active_enter: None,
            state_change: None,
            invocation_id: String::new(),
        }
    }

    fn job(end: JobEnd, state: UnitState) -> JobOutcome {
        JobOutcome {
            kind: JobKind::Restart,
            unit: "web.service".to_owned(),
            job: "/org/freedesktop/systemd1/job/7".to_owned(),
            queued: Duration::from_micros(400),
            end,
            took: Duration::from_micros(2500),
            state: Some(state),
        }
    }

    const T: Duration = Duration::from_secs(90);

    #[test]
    fn done_and_active_is_ok() {
        let r = judge_job(
            &job(
                JobEnd::Removed("done".into()),
                state("active", "running", "success"),
            ),
            T,
            Duration::ZERO,
        );
        assert!(r.ok);
        assert_eq!(
            r.detail,
            "RestartUnit web.service: job done in 2.5ms, unit active (running) (Result=success, NRestarts=0)"
        );
        assert_eq!(r.action_required, None);
    }

    #[test]
    fn done_but_dead_is_not_ok() {
        let r = judge_job(
            &job(
                JobEnd::Removed("done".into()),
                state("failed", "failed", "exit-code"),
            ),
            T,
            Duration::ZERO,
        );
        assert!(!r.ok);
        assert!(
            r.detail
                .ends_with("but unit failed (failed) (Result=exit-code, NRestarts=0)")
        );
    }

    #[test]
    fn start_limit_hit_requires_action() {
        let r = judge_job(
            &job(
                JobEnd::Removed("failed".into()),
                state("failed", "failed", "start-limit-hit"),
            ),
            T,
            Duration::ZERO,
        );
        assert!(!r.ok);
        assert!(
            r.detail
                .starts_with("RestartUnit web.service: start-limit-hit: ")
        );
        assert!(r.action_required.is_some());
    }

    #[test]
    fn other_results_and_deadlines_are_reported() {
        let r = judge_job(
            &job(
                JobEnd::Removed("dependency".into()),
                state("inactive", "dead", "success"),
            ),
            T,
            Duration::ZERO,
        );
        assert_eq!(
            r.detail,
            "RestartUnit web.service: job dependency in 2.5ms, unit inactive (dead) (Result=success, NRestarts=0)"
        );
        let r = judge_job(
            &job(
                JobEnd::DeadlineExceeded,
                state("activating", "start-pre", "success"),
            ),
            Duration::from_secs(1),
            Duration::ZERO,
        );
        assert!(!r.ok);
        assert!(
            r.detail
                .starts_with("RestartUnit web.service: job not finished after 1s (job_timeout"),
            "{}",
            r.detail
        );
    }
}
