//! One check on its own timer: runs the check, folds the verdict into the check's health
//! (`checks::fold`), saves its state, publishes its event, and asks the service's actor
//! (or its group's) for the check's action.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_checks::probe::file_age;
use vigil_config::model::{Check, CheckKind, OnFailure};
use vigil_core::event::Event;
use vigil_core::health::{CheckHealth, RunVerdict};
use vigil_core::lifecycle::Op;
use vigil_core::{RestartRequest, ServiceName, Source, Timestamp};

use crate::checks;
use crate::drivers::Reader;
use crate::ledger::CheckStateRow;
use crate::observe::sdnotify::BeatHandle;
use crate::platform::cell::Cell;
use crate::platform::clock;
use crate::service::inbox;
use crate::service::protocol::ServiceMsg;

use super::{Shared, save_every};

/// One check on its own timer.
pub(super) struct CheckLoop {
    /// Ticked on every wake-up (two-level liveness for the systemd watchdog).
    pub(super) beat: BeatHandle,
    pub(super) service: ServiceName,
    pub(super) check: Check,
    /// A failing or warning status was announced and no recovery yet.
    pub(super) announced: bool,
    pub(super) health: CheckHealth,
    /// When the state was last queued for the ledger, and with which verdict: unchanged
    /// verdicts are re-saved only every [`save_every`], so 1,000 checks at 1 s do not cost
    /// 1,000 upserts per second.
    pub(super) saved: Option<(Instant, Option<RunVerdict>)>,
    pub(super) shared: Arc<Shared>,
    pub(super) tx: inbox::Sender<ServiceMsg>,
    pub(super) started: Cell<Option<Timestamp>>,
    pub(super) reader: Cell<Reader>,
    pub(super) cancel: CancellationToken,
    /// A `log` check's read position as last saved (taken up before the first run).
    pub(super) position: Option<String>,
    /// Failed runs voided in a row because Vigil itself was stalled.
    pub(super) voided: u32,
}

/// Check runs start on a grid (from one process-wide origin), so checks that would start
/// a few milliseconds apart start in the same wake-up of the runtime.
///
/// Measured (1,000 `http` checks at 1 s, release build): each wake-up of the runtime
/// thread costs an `epoll_wait` return and a context switch, about a fifth of the daemon's
/// CPU when the checks were spread one per millisecond. On a 10 ms grid, ten checks share
/// a wake-up. A check's interval is unchanged (runs stay `every` apart); only its phase
/// moves, by less than one step, so start jitter at the server is unchanged. The step is
/// a hundredth of the interval at most: 1,000 checks at 100 ms on a 10 ms grid started in
/// bursts of a hundred, which needed more connections than a pool keeps (a new one for
/// 4 requests in 10) and queued each burst's last checks behind its first.
const GRID: Duration = Duration::from_millis(10);

/// The grid step for checks run every `every`: [`GRID`], or a hundredth of `every` if
/// that is shorter (not under a millisecond, the timer's resolution).
fn grid(every: Duration) -> Duration {
    (every / 100).clamp(Duration::from_millis(1), GRID)
}

/// `at`, rounded up to a multiple of `step` since the grid's origin.
fn on_grid(at: Instant, step: Duration) -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    let since = at.saturating_duration_since(origin);
    let step = step.as_nanos();
    let rem = since.as_nanos() % step;
    if rem == 0 {
        return at;
    }
    // `step - rem` < 10 ms: fits in u64 nanoseconds.
    at + Duration::from_nanos(u64::try_from(step - rem).unwrap_or(0))
}

/// How much longer than its timeouts allow a failed run must take to be laid at Vigil's
/// door: far above scheduling jitter (milliseconds), far below a real stall's seconds.
const STALL_SLACK: Duration = Duration::from_millis(500);
/// Voided runs in a row at most.
const MAX_VOIDED: u32 = 3;

impl CheckLoop {
    /// Not an `async fn`, which would store `self` twice (as captured and as a moved-in
    /// local); see `service/actor.rs`.
    #[expect(clippy::manual_async_fn, reason = "an async fn would store self twice")]
    pub(super) fn run(
        mut self,
        first_delay: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let grid = grid(self.check.every);
            let mut due = on_grid(Instant::now() + first_delay, grid);
            let watching_since = clock::now();
            let mut seen_start = self.started.version();
            checks::resume(&self.service, &self.check, self.position.as_deref());
            loop {
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
                self.beat.tick();
                let run_started = Instant::now();
                let run = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return,
                    run = checks::run_once(
                        &self.service,
                        &self.check,
                        &self.shared.probes,
                        &self.shared.guard.ledger,
                        Some(watching_since),
                        clock::now(),
                    ) => run,
                };
                let took = run_started.elapsed();
                if self.stalled(&run, took) {
                    // Run again now: the stall said nothing about the service.
                    due = Instant::now();
                    continue;
                }
                self.voided = 0;
                // Fixed rate: the next run is due `every` after this one was due; one that is
                // already past goes back on the grid.
                due += self.interval(&run);
                let now = Instant::now();
                if due < now {
                    due = on_grid(now, grid);
                }
                let now = clock::now();
                if self.started.version() != seen_start {
                    // The service was restarted: forget the old instance's failures. A run that
                    // straddled the restart says nothing about the new instance.
                    seen_start = self.started.version();
                    self.health.reset(now);
                    self.save(None, "service restarted".to_owned(), now);
                    continue;
                }
                let uptime = self.uptime(now).await;
                let folded = checks::fold(
                    &mut self.health,
                    &mut self.announced,
                    &self.check,
                    &run,
                    uptime,
                    now,
                    took,
                );
                self.shared
                    .guard
                    .events
                    .publish(&self.service, folded.event);
                let position = checks::position(&self.check);
                let moved = position.is_some() && position != self.position;
                if folded.obs.in_grace.is_none() {
                    let unchanged = self.saved.is_some_and(|(at, verdict)| {
                        verdict == Some(run.verdict) && at.elapsed() < save_every(self.check.every)
                    });
                    if folded.obs.transition.is_some() || !unchanged || moved {
                        self.save(Some(run.verdict), run.reason.clone(), now);
                    }
                } else if let Some(p) = position.clone().filter(|_| moved) {
                    // A run in grace still consumed its lines.
                    let (s, c) = (self.service.to_string(), self.check.name.to_string());
                    let saved = self
                        .shared
                        .guard
                        .ledger
                        .call(move |l| l.save_check_position(&s, &c, &p))
                        .await;
                    if let Err(error) = saved {
                        tracing::warn!(service = %self.service, check = %self.check.name, %error,
                            "cannot save the log check's read position");
                    }
                }
                if moved {
                    self.position = position;
                }
                if folded.wants_action {
                    self.act(&run.reason).await;
                }
            }
        }
    }

    /// A failed run is void when Vigil itself was late: the run took far longer than its
    /// timeouts allow (its attempts' timeouts and retry delays), which only a stalled
    /// runtime does; a probe's timeout that fires seconds late says nothing about the
    /// service. The stall is published once (across checks) with its length; the run is
    /// not counted. At most [`MAX_VOIDED`] runs in a row are voided, so a runtime that is
    /// late all the time still gets verdicts.
    fn stalled(&mut self, run: &vigil_checks::CheckRun, took: Duration) -> bool {
        if run.verdict == RunVerdict::Pass
            || matches!(self.check.kind, CheckKind::Heartbeat(_))
            || self.voided >= MAX_VOIDED
        {
            return false;
        }
        let attempts = self.check.retries.max(1);
        let bound = self.check.timeout * attempts + self.check.retry_delay * (attempts - 1);
        if took <= bound + STALL_SLACK {
            return false;
        }
        self.voided += 1;
        let now = Instant::now();
        let announced = {
            let mut last = self
                .shared
                .stall_announced
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let fresh = last.is_none_or(|at| now.duration_since(at) > took);
            if fresh {
                *last = Some(now);
            }
            !fresh
        };
        let event = Event::VigilStalled {
            check: self.check.name.to_string(),
            took,
            bound,
        };
        if announced {
            tracing::debug!(service = %self.service, check = %self.check.name, "{}", event.message(clock::now()));
        } else {
            self.shared.guard.events.publish(&self.service, event);
        }
        true
    }

    /// How long the service has been up, for `grace`: from the driver when it knows (a
    /// systemd unit's `ActiveEnterTimestamp`, whoever started it), else since Vigil's last
    /// successful restart. Asked only of checks with a grace period.
    async fn uptime(&self, now: Timestamp) -> Option<Duration> {
        let ledger = || self.started.get().map(|t| now.saturating_since(t));
        if self.check.grace.is_zero() {
            return ledger();
        }
        let reader = self.reader.get();
        match reader.started_at().await {
            Some(Some(t)) => Some(now.saturating_since(t)),
            Some(None) => None,
            None => ledger(),
        }
    }

    /// The pause before the next run: `every`, except for `file_age` checks, whose interval
    /// adapts to the file's age (`file_age::next_interval`) as the run's last attempt saw
    /// it. No second lookup: an age the probe did not learn (missing, unreadable, or a hung
    /// filesystem that timed the probe out) is unknown, so the fast interval.
    fn interval(&self, run: &vigil_checks::CheckRun) -> Duration {
        let every = self.check.every;
        let CheckKind::FileAge(spec) = &self.check.kind else {
            return every;
        };
        let age = run.attempts.last().and_then(|a| a.file_age);
        file_age::next_interval(spec, every, age)
    }

    async fn act(&self, reason: &str) {
        let health = RestartRequest::new(Source::Health);
        let msg = match &self.check.on_failure {
            OnFailure::Restart => ServiceMsg::restart(health, None),
            OnFailure::Alert => {
                self.shared.guard.events.publish(
                    &self.service,
                    Event::FailingAlertOnly {
                        check: self.check.name.to_string(),
                        reason: reason.to_owned(),
                    },
                );
                return;
            }
            OnFailure::Exec(argv) => {
                ServiceMsg::request(Op::Repair, Some(health), Some(argv.clone()), None)
            }
            OnFailure::RestartGroup => {
                let route = self
                    .shared
                    .groups
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&self.service)
                    .cloned();
                if let Some((group, inbox)) = route {
                    tracing::warn!(group = %group, service = %self.service, check = %self.check.name,
                        event = "group_restart_wanted",
                        "check {}/{} is failing: restarting group {group}", self.service, self.check.name);
                    let _ = inbox.send(ServiceMsg::restart(health, None)).await;
                }
                return;
            }
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
            position: checks::position(&self.check),
        });
    }
}
