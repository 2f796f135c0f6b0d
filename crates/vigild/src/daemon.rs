//! `vigil run`: the long-running daemon.
//!
//! Task tree (one owner per mutable state, messages in between):
//! - one **service actor** per service owns its driver and guard policy and performs every
//!   restart request for it, one at a time, through `guard::request`;
//! - one **check task** per check owns that check's health (`CheckHealth`) and runs on its
//!   own timer (no global tick); a failing critical check sends a restart request to its
//!   service actor;
//! - one **schedule task** per `[[services.X.schedule]]` entry sends `schedule` requests;
//! - the ledger thread (`LedgerHandle`) owns the SQLite connection.
//!
//! The main loop only handles signals: SIGHUP reloads (validate fully, then apply: unchanged
//! checks keep their tasks and state), SIGTERM/SIGINT shut down gracefully (checks cancelled
//! at once, in-flight restarts get a bounded grace), a second signal exits immediately.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_checks::ProbeContext;
use vigil_checks::runner::run_check;
use vigil_config::model::{Check, CheckKind, Config, OnFailure, ScheduleEntry, Service};
use vigil_core::health::{CheckHealth, RunVerdict};
use vigil_core::{RestartRequest, ServiceName, Source, Timestamp};

use crate::clock;
use crate::driver::Driver;
use crate::events;
use crate::guard::{self, Action, Decision, GuardContext};
use crate::heartbeat;
use crate::ledger::{CheckStateRow, LedgerHandle};

/// How long in-flight restarts may run on after a shutdown request.
const RESTART_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown waits for all tasks before naming the stragglers and exiting anyway.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// A request to a service actor.
pub enum ServiceMsg {
    Restart {
        request: RestartRequest,
        /// `None`: restart through the driver; `Some(check)`: run that check's repair
        /// command instead.
        repair: Option<vigil_config::model::Argv>,
        reply: Option<oneshot::Sender<Decision>>,
    },
    /// The service's definition changed on reload (driver or guard policy).
    Update(Box<Service>),
}

struct CheckTask {
    spec: Check,
    cancel: CancellationToken,
}

struct ServiceHandle {
    spec: Service,
    tx: mpsc::Sender<ServiceMsg>,
    started: watch::Sender<Option<Timestamp>>,
    /// The service's driver as the check tasks see it (for the uptime of `grace`).
    driver: watch::Sender<Driver>,
    cancel: CancellationToken,
    checks: BTreeMap<String, CheckTask>,
    schedules: CancellationToken,
}

/// Everything the daemon's tasks share.
struct Shared {
    guard: GuardContext,
    probes: Arc<ProbeContext>,
}

pub struct Daemon {
    config_path: PathBuf,
    config: Config,
    shared: Arc<Shared>,
    services: BTreeMap<ServiceName, ServiceHandle>,
    root: CancellationToken,
    tasks: JoinSet<String>,
}

impl Daemon {
    /// Opens the ledger and starts every task.
    pub async fn start(config_path: PathBuf, config: Config) -> anyhow::Result<Daemon> {
        let ledger = LedgerHandle::spawn(&config.vigil.state_dir)?;
        for intent in ledger.call(|l| l.dangling_intents(None)).await? {
            tracing::warn!(
                service = %intent.service,
                event = "dangling_intent",
                "restart allowed at {} (source {}) by vigil pid {} has no recorded outcome: a vigil process died mid-restart or is restarting it right now; it will be resolved under the service's lock",
                intent.at,
                intent.source,
                intent.pid
            );
        }
        let shared = Arc::new(Shared {
            guard: GuardContext {
                ledger,
                state_dir: config.vigil.state_dir.clone(),
            },
            probes: Arc::new(ProbeContext::new()),
        });
        let mut daemon = Daemon {
            config_path,
            config: config.clone(),
            shared,
            services: BTreeMap::new(),
            root: CancellationToken::new(),
            tasks: JoinSet::new(),
        };
        let saved = daemon.saved_check_states().await;
        let n_checks: usize = config.services.iter().map(|s| s.checks.len()).sum();
        let mut index = 0usize;
        for service in &config.services {
            daemon
                .start_service(service, &saved, &mut index, n_checks)
                .await;
        }
        tracing::info!(
            event = "started",
            services = config.services.len(),
            checks = n_checks,
            "vigil running: {} service(s), {} check(s), ledger {}",
            config.services.len(),
            n_checks,
            daemon.shared.guard.ledger.path().display()
        );
        Ok(daemon)
    }

    async fn saved_check_states(&self) -> BTreeMap<(String, String), CheckHealth> {
        match self.shared.guard.ledger.call(|l| l.check_states()).await {
            Ok(rows) => rows
                .into_iter()
                .map(|r| ((r.service, r.check), r.health))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read saved check states; starting from unknown");
                BTreeMap::new()
            }
        }
    }

    async fn start_service(
        &mut self,
        service: &Service,
        saved: &BTreeMap<(String, String), CheckHealth>,
        index: &mut usize,
        n_checks: usize,
    ) {
        let name = service.name.clone();
        let started_at = {
            let n = name.to_string();
            self.shared
                .guard
                .ledger
                .call(move |l| l.last_successful_restart(&n))
                .await
                .unwrap_or(None)
        };
        let (started, _) = watch::channel(started_at);
        let (driver, _) = watch::channel(Driver::new(&service.driver, &self.shared.probes));
        let (tx, rx) = mpsc::channel(64);
        let cancel = self.root.child_token();
        {
            let actor = ServiceActor {
                spec: service.clone(),
                announced_given_up: None,
                announced_blocked: false,
                driver: Driver::new(&service.driver, &self.shared.probes),
                shared: self.shared.clone(),
                started: started.clone(),
                cancel: cancel.clone(),
            };
            let label = format!("service {name}");
            self.tasks.spawn(async move {
                actor.run(rx).await;
                label
            });
        }
        let mut handle = ServiceHandle {
            spec: service.clone(),
            tx,
            started,
            driver,
            cancel,
            checks: BTreeMap::new(),
            schedules: CancellationToken::new(),
        };
        for check in &service.checks {
            let initial = saved
                .get(&(name.to_string(), check.name.to_string()))
                .copied()
                .unwrap_or_default();
            let offset = stagger(*index, n_checks, check.every);
            *index += 1;
            let task = self.spawn_check(&name, &handle, check, initial, offset);
            handle.checks.insert(check.name.to_string(), task);
        }
        handle.schedules = self.spawn_schedules(&name, &handle, &service.schedules);
        self.services.insert(name, handle);
    }

    fn spawn_check(
        &mut self,
        service: &ServiceName,
        handle: &ServiceHandle,
        check: &Check,
        initial: CheckHealth,
        first_delay: Duration,
    ) -> CheckTask {
        let cancel = handle.cancel.child_token();
        let task = CheckLoop {
            service: service.clone(),
            check: check.clone(),
            health: initial,
            saved: None,
            shared: self.shared.clone(),
            tx: handle.tx.clone(),
            started: handle.started.subscribe(),
            driver: handle.driver.subscribe(),
            cancel: cancel.clone(),
        };
        let label = format!("check {service}/{}", check.name);
        self.tasks.spawn(async move {
            task.run(first_delay).await;
            label
        });
        CheckTask {
            spec: check.clone(),
            cancel,
        }
    }

    fn spawn_schedules(
        &mut self,
        service: &ServiceName,
        handle: &ServiceHandle,
        schedules: &[ScheduleEntry],
    ) -> CancellationToken {
        let cancel = handle.cancel.child_token();
        for (i, entry) in schedules.iter().enumerate() {
            let schedule = entry.schedule.clone();
            let tx = handle.tx.clone();
            let cancel = cancel.clone();
            let service = service.clone();
            let label = format!("schedule {service}#{i}");
            self.tasks.spawn(async move {
                schedule_loop(service, schedule, tx, cancel).await;
                label
            });
        }
        cancel
    }

    /// Runs until SIGTERM/SIGINT; handles SIGHUP reloads on the way.
    pub async fn run_until_signalled(mut self) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!(event = "shutdown", signal = "SIGTERM", "SIGTERM received: shutting down"); break; }
                _ = int.recv() => { tracing::info!(event = "shutdown", signal = "SIGINT", "SIGINT received: shutting down"); break; }
                _ = hup.recv() => self.reload().await,
                Some(res) = self.tasks.join_next() => {
                    // Tasks only end on cancellation; an early end is a bug worth logging.
                    match res {
                        Ok(label) => tracing::warn!(task = %label, "task ended unexpectedly"),
                        Err(error) => tracing::error!(%error, "task panicked"),
                    }
                }
            }
        }
        // A second signal means "now": exit without waiting.
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!(
                event = "shutdown_forced",
                "second signal: exiting immediately"
            );
            std::process::exit(i32::from(crate::exit::INTERRUPTED));
        });
        self.shutdown().await;
        Ok(())
    }

    /// Cancels everything and waits (bounded) for the tasks, naming stragglers.
    pub async fn shutdown(mut self) {
        let started = Instant::now();
        self.root.cancel();
        let deadline = started + SHUTDOWN_DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    tracing::error!(
                        event = "shutdown_stragglers",
                        remaining = self.tasks.len(),
                        "{} task(s) still running after {}; exiting anyway",
                        self.tasks.len(),
                        vigil_core::format_duration(SHUTDOWN_DEADLINE)
                    );
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        tracing::info!(
            event = "stopped",
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "vigil stopped cleanly"
        );
    }

    /// SIGHUP: load and validate the whole file first; apply only a valid one.
    async fn reload(&mut self) {
        let new = match vigil_config::load(&self.config_path) {
            Ok(c) => c,
            Err(errors) => {
                tracing::error!(
                    event = "reload_rejected",
                    errors = errors.0.len(),
                    "reload rejected, keeping the running configuration:\n{errors}"
                );
                return;
            }
        };
        if new.vigil.state_dir != self.config.vigil.state_dir {
            tracing::warn!(
                event = "reload_partial",
                "state_dir changed ({} -> {}); this takes effect only after a restart of vigil",
                self.config.vigil.state_dir.display(),
                new.vigil.state_dir.display()
            );
        }
        let mut kept = 0usize;
        let mut changed = 0usize;
        // Removed services.
        let removed: Vec<ServiceName> = self
            .services
            .keys()
            .filter(|name| new.service(name.as_str()).is_none())
            .cloned()
            .collect();
        for name in removed {
            if let Some(handle) = self.services.remove(&name) {
                handle.cancel.cancel();
                changed += 1;
                tracing::info!(service = %name, event = "service_removed", "service removed");
            }
        }
        let saved = self.saved_check_states().await;
        let n_checks: usize = new.services.iter().map(|s| s.checks.len()).sum();
        let mut index = 0usize;
        for service in &new.services {
            let Some(mut handle) = self.services.remove(&service.name) else {
                self.start_service(service, &saved, &mut index, n_checks)
                    .await;
                changed += 1;
                tracing::info!(service = %service.name, event = "service_added", "service added");
                continue;
            };
            if handle.spec.driver != service.driver {
                handle
                    .driver
                    .send_replace(Driver::new(&service.driver, &self.shared.probes));
            }
            if handle.spec.driver != service.driver || handle.spec.guard != service.guard {
                let _ = handle
                    .tx
                    .send(ServiceMsg::Update(Box::new(service.clone())))
                    .await;
                changed += 1;
            }
            let mut checks = std::mem::take(&mut handle.checks);
            for check in &service.checks {
                match checks.remove(check.name.as_str()) {
                    Some(task) if task.spec == *check => {
                        kept += 1;
                        handle.checks.insert(check.name.to_string(), task);
                    }
                    old => {
                        if let Some(old) = old {
                            old.cancel.cancel();
                        }
                        changed += 1;
                        let offset = stagger(index, n_checks, check.every);
                        let task = self.spawn_check(
                            &service.name,
                            &handle,
                            check,
                            CheckHealth::default(),
                            offset,
                        );
                        handle.checks.insert(check.name.to_string(), task);
                    }
                }
                index += 1;
            }
            for (_, gone) in checks {
                gone.cancel.cancel();
                changed += 1;
            }
            if handle.spec.schedules != service.schedules {
                handle.schedules.cancel();
                handle.schedules = self.spawn_schedules(&service.name, &handle, &service.schedules);
                changed += 1;
            }
            handle.spec = service.clone();
            self.services.insert(service.name.clone(), handle);
        }
        self.config = new;
        tracing::info!(
            event = "reloaded",
            kept,
            changed,
            "configuration reloaded: {kept} check(s) unchanged (state kept), {changed} change(s) applied"
        );
    }
}

fn stagger(index: usize, total: usize, every: Duration) -> Duration {
    if total <= 1 {
        return Duration::ZERO;
    }
    // Within the first second (or `every`, if shorter): fast first verdicts, and checks
    // sharing an interval stay evenly spread instead of firing in the same millisecond.
    let span = every.min(Duration::from_secs(1));
    let frac = u32::try_from(index % total).unwrap_or(0);
    let total = u32::try_from(total).unwrap_or(u32::MAX);
    span / total * frac
}

/// How often a check whose verdict does not change is re-saved (for `vigil status`'s age and
/// counters): five runs, within 1-10 s. Any change of verdict or status is saved at once.
fn save_every(every: Duration) -> Duration {
    (every * 5).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// The owner of one service's driver and policy; performs its restart requests in order.
struct ServiceActor {
    spec: Service,
    /// The re-arm instant of the given-up episode already announced, so "ACTION REQUIRED"
    /// is raised once per episode rather than on every denied request.
    announced_given_up: Option<Timestamp>,
    /// An automatic restart was already refused because the driver said it cannot succeed
    /// (systemd's start limit); later refusals of the same episode log quietly.
    announced_blocked: bool,
    driver: Driver,
    shared: Arc<Shared>,
    started: watch::Sender<Option<Timestamp>>,
    cancel: CancellationToken,
}

impl ServiceActor {
    async fn run(mut self, mut rx: mpsc::Receiver<ServiceMsg>) {
        loop {
            let msg = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                msg = rx.recv() => match msg { Some(m) => m, None => return },
            };
            match msg {
                ServiceMsg::Update(spec) => {
                    self.driver = Driver::new(&spec.driver, &self.shared.probes);
                    self.spec = *spec;
                    tracing::info!(service = %self.spec.name, event = "service_updated", "driver/guard settings updated");
                }
                ServiceMsg::Restart {
                    request,
                    repair,
                    reply,
                } => {
                    // An automatic restart that cannot succeed is not attempted (never a
                    // loop against systemd's start limit); a manual one always is.
                    if repair.is_none() && request.source != Source::Manual {
                        if let Some(why) = self.driver.restart_blocked().await {
                            events::restart_blocked(
                                &self.spec.name,
                                request,
                                &why,
                                !self.announced_blocked,
                            );
                            self.announced_blocked = true;
                            continue;
                        }
                        self.announced_blocked = false;
                    }
                    let action = match &repair {
                        Some(argv) => Action::Repair(argv, self.spec.driver.timeout()),
                        None => Action::Restart(&self.driver),
                    };
                    let fut = guard::request(
                        &self.shared.guard,
                        &self.spec.name,
                        &self.spec.guard,
                        action,
                        request,
                    );
                    let cancel = self.cancel.clone();
                    let outcome = tokio::select! {
                        res = fut => res,
                        _ = async { cancel.cancelled().await; tokio::time::sleep(RESTART_SHUTDOWN_GRACE).await } => {
                            tracing::error!(service = %self.spec.name, event = "restart_abandoned",
                                "shutdown: restart still running after {}; abandoned (its process group was killed; the ledger keeps the intent, reported as interrupted)",
                                vigil_core::format_duration(RESTART_SHUTDOWN_GRACE));
                            return;
                        }
                    };
                    match outcome {
                        Ok(decision) => {
                            match decision.given_up_until() {
                                Some(rearm_at) => {
                                    let announced = self
                                        .announced_given_up
                                        .is_some_and(|t| decision.decided_at < t);
                                    if !announced {
                                        events::given_up(
                                            &self.spec.name,
                                            rearm_at,
                                            decision.decided_at,
                                        );
                                    }
                                    self.announced_given_up = Some(rearm_at);
                                }
                                None if decision.verdict.is_allowed() => {
                                    self.announced_given_up = None
                                }
                                None => {}
                            }
                            if decision.restarted() && repair.is_none() {
                                self.started.send_replace(decision.finished_at);
                            }
                            if let Some(reply) = reply {
                                let _ = reply.send(decision);
                            }
                        }
                        Err(error) => tracing::error!(
                            service = %self.spec.name,
                            event = "guard_error",
                            %error,
                            "restart request failed"
                        ),
                    }
                }
            }
        }
    }
}

/// One check on its own timer.
struct CheckLoop {
    service: ServiceName,
    check: Check,
    health: CheckHealth,
    /// When the state was last queued for the ledger, and with which verdict: unchanged
    /// verdicts are re-saved only every [`save_every`], so 1,000 checks at 1 s do not cost
    /// 1,000 upserts per second.
    saved: Option<(Instant, Option<RunVerdict>)>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<ServiceMsg>,
    started: watch::Receiver<Option<Timestamp>>,
    driver: watch::Receiver<Driver>,
    cancel: CancellationToken,
}

impl CheckLoop {
    async fn run(mut self, first_delay: Duration) {
        let mut due = Instant::now() + first_delay;
        let watching_since = clock::now();
        self.started.mark_unchanged();
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep_until(due) => {}
            }
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
            OnFailure::Exec(argv) => Some(argv.clone()),
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

/// Fires one schedule entry: each firing is a restart request with source `schedule`.
async fn schedule_loop(
    service: ServiceName,
    schedule: vigil_core::schedule::Schedule,
    tx: mpsc::Sender<ServiceMsg>,
    cancel: CancellationToken,
) {
    let mut after = clock::now();
    while let Some(next) = schedule.next_after(after) {
        // Sleep in bounded steps against the wall clock, so a clock step or suspend cannot
        // make a firing early or hours late.
        loop {
            let now = clock::now();
            if now >= next {
                break;
            }
            let left = next.saturating_since(now).min(Duration::from_secs(30));
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(left) => {}
            }
        }
        tracing::info!(service = %service, event = "schedule_fired", "=== Scheduled Restart Triggered: {} ===", schedule.describe());
        let msg = ServiceMsg::Restart {
            request: RestartRequest::new(Source::Schedule),
            repair: None,
            reply: None,
        };
        if tx.send(msg).await.is_err() {
            return;
        }
        after = next.max(clock::now());
    }
}
