//! `driver = "systemd"`: a unit restarted over D-Bus through the shared connections of the
//! daemon's `ProbeContext` (one per bus, shared with the `systemd` checks): `RestartUnit`
//! with mode `replace`, then the job is followed to its `JobRemoved` within `job_timeout`.

use std::time::Duration;

use vigil_checks::systemd::{Buses, JobEnd, JobKind, JobOutcome, UnitState};
use vigil_config::model::SystemdDriver;
use vigil_core::format_duration;

use super::RestartReport;

/// `driver = "systemd"` with the shared bus connections.
#[derive(Clone, Debug)]
pub struct SystemdUnit {
    pub(super) spec: SystemdDriver,
    pub(super) buses: Buses,
}

/// systemd's `Result` when its start limit refused a start.
pub(super) const START_LIMIT_HIT: &str = "start-limit-hit";
impl SystemdUnit {
    pub(super) async fn state(&self) -> Result<UnitState, String> {
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
    pub(super) async fn job(&self, kind: JobKind) -> RestartReport {
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

    pub(super) async fn restart(&self) -> RestartReport {
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
