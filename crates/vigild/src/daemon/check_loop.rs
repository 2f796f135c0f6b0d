//! One check on its own timer: runs the probe (with retries), folds the verdict into the
//! check's health, saves its state, raises its alerts, and asks for its action.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_config::model::{Check, CheckKind, OnFailure};
use vigil_core::health::{CheckHealth, RunVerdict};
use vigil_core::{RestartRequest, ServiceName, Source, Timestamp};

use vigil_checks::runner::run_check;

use crate::checks::heartbeat;
use crate::drivers::Driver;
use crate::ledger::CheckStateRow;
use crate::observe::events;
use crate::observe::sdnotify::BeatHandle;
use crate::platform::clock;
use crate::service::protocol::{GroupMsg, ServiceMsg};

use super::{Shared, save_every};

/// One check on its own timer.
pub(super) struct CheckLoop {
    /// Ticked on every wake-up (two-level liveness for the systemd watchdog).
    pub(super) beat: BeatHandle,
    pub(super) service: ServiceName,
    pub(super) check: Check,
    pub(super) alerts: events::CheckAlerts,
    pub(super) health: CheckHealth,
    /// When the state was last queued for the ledger, and with which verdict: unchanged
    /// verdicts are re-saved only every [`save_every`], so 1,000 checks at 1 s do not cost
    /// 1,000 upserts per second.
    pub(super) saved: Option<(Instant, Option<RunVerdict>)>,
    pub(super) shared: Arc<Shared>,
    pub(super) tx: mpsc::Sender<ServiceMsg>,
    pub(super) started: watch::Receiver<Option<Timestamp>>,
    pub(super) driver: watch::Receiver<Driver>,
    pub(super) cancel: CancellationToken,
}

impl CheckLoop {
    /// Not an `async fn`, which would store `self` twice (as captured and as a moved-in
    /// local); see `exec::Supervisor::run`.
    #[expect(clippy::manual_async_fn, reason = "an async fn would store self twice")]
    pub(super) fn run(
        mut self,
        first_delay: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let mut due = Instant::now() + first_delay;
            let watching_since = clock::now();
            self.started.mark_unchanged();
            loop {
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
                self.beat.tick();
                let run = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return,
                    run = self.run_once(watching_since) => run,
                };
                // Fixed rate: the next run is due `every` after this one was due, never in the past.
                due = (due + self.interval()).max(Instant::now());
                let now = clock::now();
                if self.started.has_changed().unwrap_or(false) {
                    // The service was restarted: forget the old instance's failures. A run that
                    // straddled the restart says nothing about the new instance.
                    self.started.mark_unchanged();
                    self.health.reset(now);
                    self.save(None, "service restarted".to_owned(), now);
                    continue;
                }
                let uptime = self.uptime(now).await;
                let obs = self.health.observe_after_grace(
                    run.verdict,
                    self.check.thresholds,
                    self.check.grace,
                    uptime,
                    now,
                );
                events::check_run(
                    &mut self.alerts,
                    &self.service,
                    self.check.name.as_str(),
                    run.verdict,
                    &run.reason,
                    &obs,
                    self.health.status,
                );
                if obs.in_grace.is_none() {
                    let unchanged = self.saved.is_some_and(|(at, verdict)| {
                        verdict == Some(run.verdict) && at.elapsed() < save_every(self.check.every)
                    });
                    if obs.transition.is_some() || !unchanged {
                        self.save(Some(run.verdict), run.reason.clone(), now);
                    }
                }
                if obs.wants_action && run.verdict == RunVerdict::Fail {
                    self.act(&run.reason).await;
                }
            }
        }
    }

    /// How long the service has been up, for `grace`: from the driver when it knows (a
    /// systemd unit's `ActiveEnterTimestamp`, whoever started it), else since Vigil's last
    /// successful restart. Asked only of checks with a grace period.
    async fn uptime(&self, now: Timestamp) -> Option<Duration> {
        let ledger = || (*self.started.borrow()).map(|t| now.saturating_since(t));
        if self.check.grace.is_zero() {
            return ledger();
        }
        let driver = self.driver.borrow().clone();
        match driver.started_at().await {
            Some(Some(t)) => Some(now.saturating_since(t)),
            Some(None) => None,
            None => ledger(),
        }
    }

    /// The pause before the next run: `every`, except for `file_age` checks, which wake up
    /// when the file crosses half of `max_age` and then run every `fast_every` (seed 003's
    /// adaptive interval), so a file going stale is noticed within `fast_every`.
    fn interval(&self) -> Duration {
        let every = self.check.every;
        let CheckKind::FileAge(spec) = &self.check.kind else {
            return every;
        };
        let half = spec.max_age / 2;
        let fast = spec.fast_every.min(every);
        match vigil_checks::probe::file_age::file_age(&spec.path) {
            Ok(age) if age < half => every.min((half - age).max(fast)),
            // Past half of max_age, stale, or missing: watch closely.
            _ => fast,
        }
    }

    /// One run: a probe (with retries), or for a heartbeat check a ledger read.
    async fn run_once(&self, watching_since: Timestamp) -> vigil_checks::CheckRun {
        let CheckKind::Heartbeat(spec) = &self.check.kind else {
            return run_check(&self.check, &self.shared.probes).await;
        };
        let ledger = &self.shared.guard.ledger;
        let (service, check) = (self.service.as_str(), self.check.name.as_str());
        match heartbeat::evaluate(
            ledger,
            service,
            check,
            spec,
            Some(watching_since),
            clock::now(),
        )
        .await
        {
            Ok(run) => run,
            Err(error) => vigil_checks::CheckRun {
                verdict: RunVerdict::Fail,
                attempts: Vec::new(),
                reason: format!("cannot read heartbeats: {error}"),
            },
        }
    }

    async fn act(&self, reason: &str) {
        let repair = match &self.check.on_failure {
            OnFailure::Restart => None,
            OnFailure::Alert => {
                tracing::warn!(
                    service = %self.service,
                    check = %self.check.name,
                    event = "failing_alert_only",
                    "check failing, on_failure = alert: not restarting ({reason})"
                );
                return;
            }
            OnFailure::Exec(argv) => Some(Box::new(argv.clone())),
            OnFailure::RestartGroup => {
                let route = self
                    .shared
                    .groups
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&self.service)
                    .cloned();
                if let Some(group) = route {
                    let _ = group
                        .send(GroupMsg {
                            member: self.service.clone(),
                            check: self.check.name.to_string(),
                        })
                        .await;
                }
                return;
            }
        };
        let msg = ServiceMsg::Restart {
            request: RestartRequest::new(Source::Health),
            repair,
            reply: None,
        };
        let _ = self.tx.send(msg).await;
    }

    fn save(&mut self, verdict: Option<RunVerdict>, reason: String, now: Timestamp) {
        self.saved = Some((Instant::now(), verdict));
        self.shared.guard.ledger.save_check_state(CheckStateRow {
            service: self.service.to_string(),
            check: self.check.name.to_string(),
            health: self.health,
            last_verdict: verdict,
            last_reason: reason,
            last_run: Some(now),
        });
    }
}
