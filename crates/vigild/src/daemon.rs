//! `vigil run`: the long-running daemon.
//!
//! Task tree (one owner per mutable state, messages in between):
//! - one **service actor** per service owns its driver and guard policy and performs every
//!   restart request for it, one at a time, through `guard::request`;
//! - one **check task** per check owns that check's health (`CheckHealth`) and runs on its
//!   own timer (no global tick); a failing critical check sends a restart request to its
//!   service actor;
//! - one **schedule task** per `[[services.X.schedule]]` entry sends `schedule` requests;
//! - the ledger thread (`LedgerHandle`) owns the SQLite connection;
//! - the **API task** serves the control socket (`api.rs`); it sees the running config and
//!   each actor's inbox through a published [`ApiView`], refreshed on every reload.
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
use vigil_core::health::{CheckHealth, HealthStatus, RunVerdict};
use vigil_core::{RestartRequest, ServiceName, Source, Timestamp};

use crate::alerting::AlertHub;
use crate::api::{self, ApiView};
use crate::clock;
use crate::driver::Driver;
use crate::events;
use crate::guard::{self, Action, Decision, GuardContext};
use crate::heartbeat;
use crate::ledger::{CheckStateRow, LedgerHandle};
use crate::sdnotify::{BeatHandle, Liveness, Notifier};

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
        /// Boxed: every service's channel allocates room for 32 messages up front.
        repair: Option<Box<vigil_config::model::Argv>>,
        reply: Option<oneshot::Sender<Decision>>,
    },
    /// The service's definition changed on reload (driver or guard policy).
    Update(Box<Service>),
    /// Its restart history was reset (`vigil reset`): a deferred restart may go now.
    Reset,
    /// Its restart group restarted it: a new instance, up since then.
    Restarted(Timestamp),
}

struct CheckTask {
    spec: Check,
    cancel: CancellationToken,
}

/// A running service as the daemon holds it. Its definition is not kept here: the
/// daemon's one `Config` has it (one copy per service, not one per holder).
struct ServiceHandle {
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
    /// Loops tick here; the systemd watchdog is fed only while all are fresh.
    liveness: Arc<Liveness>,
    /// Each group member's way to its group's actor (`on_failure = "restart-group"`);
    /// replaced on reload.
    groups: std::sync::RwLock<BTreeMap<ServiceName, mpsc::Sender<GroupMsg>>>,
}

/// A request to a group actor: a member's check asks for the whole group.
pub struct GroupMsg {
    pub member: ServiceName,
    pub check: String,
}

pub struct Daemon {
    config_path: PathBuf,
    /// Shared with the control socket's view and the group actors, never copied.
    config: Arc<Config>,
    shared: Arc<Shared>,
    services: BTreeMap<ServiceName, ServiceHandle>,
    root: CancellationToken,
    tasks: JoinSet<()>,
    api_view: watch::Sender<Arc<ApiView>>,
    /// Set when started by systemd (`NOTIFY_SOCKET`).
    notifier: Option<Arc<Notifier>>,
    /// Cancels the group actors (they are rebuilt on every reload).
    group_actors: CancellationToken,
    /// What each running task is, to name the stragglers at the shutdown deadline.
    labels: std::collections::HashMap<tokio::task::Id, String>,
}

impl Daemon {
    /// Opens the ledger and starts every task.
    pub async fn start(config_path: PathBuf, config: Config) -> anyhow::Result<Daemon> {
        // First, so a second daemon on the same state refuses before it runs any check.
        let listener = api::bind(
            &config.vigil.control_socket,
            config.vigil.control_socket_group.as_deref(),
        )?;
        raise_fd_limit();
        let config = Arc::new(config);
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
        let alerts = AlertHub::start(&config, ledger.clone());
        let shared = Arc::new(Shared {
            guard: GuardContext {
                ledger,
                state_dir: config.vigil.state_dir.clone(),
                alerts,
            },
            probes: Arc::new(ProbeContext::new()),
            liveness: Arc::new(Liveness::default()),
            groups: std::sync::RwLock::default(),
        });
        let (api_view, view_rx) = watch::channel(Arc::new(ApiView {
            config: config.clone(),
            services: BTreeMap::new(),
        }));
        let mut daemon = Daemon {
            config_path,
            config: config.clone(),
            shared,
            services: BTreeMap::new(),
            root: CancellationToken::new(),
            tasks: JoinSet::new(),
            api_view,
            notifier: Notifier::from_env().map(Arc::new),
            group_actors: CancellationToken::new(),
            labels: std::collections::HashMap::new(),
        };
        let saved = daemon.saved_check_states().await;
        let n_checks: usize = config.services.iter().map(|s| s.checks.len()).sum();
        let mut index = 0usize;
        for service in &config.services {
            daemon
                .start_service(service, &saved, &mut index, n_checks)
                .await;
        }
        daemon.publish_api_view();
        daemon.start_groups();
        {
            let socket = config.vigil.control_socket.clone();
            let guard = daemon.shared.guard.clone();
            let cancel = daemon.root.child_token();
            daemon.spawn_labeled(
                "control socket".to_owned(),
                api::serve(listener, socket, view_rx, guard, cancel),
            );
        }
        if let Some(notifier) = daemon.notifier.clone() {
            let liveness = daemon.shared.liveness.clone();
            let ledger = daemon.shared.guard.ledger.clone();
            let cancel = daemon.root.child_token();
            let services = config.services.len();
            daemon.spawn_labeled(
                "systemd watchdog".to_owned(),
                crate::sdnotify::watchdog_loop(notifier, liveness, ledger, services, cancel),
            );
        }
        daemon.notify(&format!(
            "READY=1\nSTATUS=running {} service(s), {n_checks} check(s)",
            config.services.len()
        ));
        tracing::info!(
            event = "started",
            services = config.services.len(),
            checks = n_checks,
            "vigil running: {} service(s), {} check(s), ledger {}, control socket {}",
            config.services.len(),
            n_checks,
            daemon.shared.guard.ledger.path().display(),
            config.vigil.control_socket.display()
        );
        // Code pages not in use are given back a little after startup and after bursts of
        // activity (`memory.rs`). Detached: the supervised tasks must not end, this one does.
        tokio::spawn(crate::memory::release_loop(daemon.root.child_token()));
        Ok(daemon)
    }

    /// One actor per `[groups.NAME]`: serializes the group's restarts and tells members
    /// when they were restarted. Rebuilt from scratch on reload (groups hold no state
    /// beyond the ledger).
    fn start_groups(&mut self) {
        self.group_actors.cancel();
        self.group_actors = self.root.child_token();
        let mut routes = BTreeMap::new();
        let config = self.config.clone();
        for group in &self.config.groups {
            let (tx, rx) = mpsc::channel(64);
            let members: BTreeMap<ServiceName, mpsc::Sender<ServiceMsg>> = group
                .members
                .iter()
                .filter_map(|m| Some((m.clone(), self.services.get(m)?.tx.clone())))
                .collect();
            for m in &group.members {
                routes.insert(m.clone(), tx.clone());
            }
            let actor = GroupActor {
                group: group.clone(),
                config: config.clone(),
                members,
                shared: self.shared.clone(),
                cancel: self.group_actors.clone(),
            };
            // Not in the task set: a reload ends these on purpose.
            tokio::spawn(actor.run(rx));
        }
        *self
            .shared
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner()) = routes;
    }

    /// Tells systemd, when it started us.
    fn notify(&self, message: &str) {
        if let Some(n) = &self.notifier {
            n.send(message);
        }
    }

    /// Shows the API the running config and the actors' inboxes.
    fn publish_api_view(&self) {
        self.api_view.send_replace(Arc::new(ApiView {
            config: self.config.clone(),
            services: self
                .services
                .iter()
                .map(|(name, handle)| (name.clone(), handle.tx.clone()))
                .collect(),
        }));
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
        let actor_driver = Driver::new(&service.driver, &self.shared.probes);
        // The driver's own start time when it has one (a container's StartedAt, a unit's
        // ActiveEnterTimestamp), else the last restart Vigil made. An exec service's
        // uptime starts when its supervisor spawns it.
        let is_exec = matches!(service.driver, vigil_config::model::DriverSpec::Exec(_));
        let started_at = match actor_driver.started_at().await {
            Some(t) => t,
            None if is_exec => None,
            None => {
                let n = name.to_string();
                self.shared
                    .guard
                    .ledger
                    .call(move |l| l.last_successful_restart(&n))
                    .await
                    .unwrap_or(None)
            }
        };
        let (started, _) = watch::channel(started_at);
        let (driver, _) = watch::channel(actor_driver.clone());
        let (tx, rx) = mpsc::channel(64);
        let cancel = self.root.child_token();
        if let vigil_config::model::DriverSpec::Exec(spec) = &service.driver {
            let sup = crate::exec::Supervisor::new(
                service,
                spec.clone(),
                self.shared.guard.clone(),
                started.clone(),
                cancel.clone(),
                self.root.clone(),
            );
            let label = format!("exec service {name}");
            // The supervisor's own future, not one wrapping it: every async block that
            // moves a future in and awaits it stores it twice (kilobytes per service).
            self.spawn_labeled(label, sup.run(rx));
        } else {
            let actor = ServiceActor {
                spec: service.clone(),
                announced_given_up: None,
                announced_blocked: false,
                driver: actor_driver,
                shared: self.shared.clone(),
                started: started.clone(),
                cancel: cancel.clone(),
                inbox: tx.clone(),
                follower: None,
                deferred: None,
            };
            let label = format!("service {name}");
            self.spawn_labeled(label, actor.run(rx));
        }
        let mut handle = ServiceHandle {
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
        // A check loop wakes at least every interval plus its run (timeouts and retries);
        // sending a restart request may wait for a busy actor's inbox: a minute of slack.
        let attempts = check.retries.max(1);
        let max_gap = check.every
            + check.timeout * attempts
            + check.retry_delay * (attempts - 1)
            + Duration::from_secs(60);
        let beat = self
            .shared
            .liveness
            .register(format!("check {service}/{}", check.name), max_gap);
        let task = CheckLoop {
            beat,
            service: service.clone(),
            check: check.clone(),
            alerts: events::CheckAlerts {
                hub: self.shared.guard.alerts.clone(),
                announced: matches!(
                    initial.status,
                    HealthStatus::Failing | HealthStatus::Warning
                ),
            },
            health: initial,
            saved: None,
            shared: self.shared.clone(),
            tx: handle.tx.clone(),
            started: handle.started.subscribe(),
            driver: handle.driver.subscribe(),
            cancel: cancel.clone(),
        };
        let label = format!("check {service}/{}", check.name);
        self.spawn_labeled(label, task.run(first_delay));
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
            self.spawn_labeled(label, schedule_loop(service, schedule, tx, cancel));
        }
        cancel
    }

    fn spawn_labeled<F>(&mut self, label: String, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let handle = self.tasks.spawn(fut);
        self.labels.insert(handle.id(), label);
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
                Some(res) = self.tasks.join_next_with_id() => {
                    // Tasks only end on cancellation (or a removed service's exec
                    // supervisor, after stopping its process); anything else is a bug.
                    match res {
                        Ok((id, ())) => {
                            let label = self.labels.remove(&id).unwrap_or_default();
                            if !label.starts_with("exec service ") {
                                tracing::warn!(task = %label, "task ended unexpectedly");
                            }
                        }
                        Err(error) => {
                            self.labels.remove(&error.id());
                            tracing::error!(%error, "task panicked");
                        }
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
        self.notify("STOPPING=1\nSTATUS=stopping");
        let started = Instant::now();
        self.root.cancel();
        // Exec services get their stop_timeout (then SIGKILL) plus a margin to be reaped.
        let exec_stop = self
            .config
            .services
            .iter()
            .filter_map(|s| match &s.driver {
                vigil_config::model::DriverSpec::Exec(e) => {
                    Some(e.stop_timeout + Duration::from_secs(2))
                }
                _ => None,
            })
            .max()
            .unwrap_or_default();
        let limit = SHUTDOWN_DEADLINE.max(exec_stop);
        let deadline = started + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(Ok((id, _)))) => {
                    self.labels.remove(&id);
                }
                Ok(Some(Err(error))) => {
                    self.labels.remove(&error.id());
                }
                Ok(None) => break,
                Err(_) => {
                    let mut names: Vec<&str> = self.labels.values().map(String::as_str).collect();
                    names.sort_unstable();
                    tracing::error!(
                        event = "shutdown_stragglers",
                        remaining = self.tasks.len(),
                        "{} task(s) still running after {}; exiting anyway: {}",
                        self.tasks.len(),
                        vigil_core::format_duration(limit),
                        names.join(", ")
                    );
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        // Restarts have ended (or were abandoned): send what is grouped, bounded.
        self.shared.guard.alerts.shutdown().await;
        tracing::info!(
            event = "stopped",
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "vigil stopped cleanly"
        );
    }

    /// SIGHUP: load and validate the whole file first; apply only a valid one.
    async fn reload(&mut self) {
        self.notify("RELOADING=1\nSTATUS=reloading the configuration");
        let new = match vigil_config::load(&self.config_path) {
            Ok(c) => c,
            Err(errors) => {
                self.notify("READY=1\nSTATUS=reload rejected; running the previous configuration");
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
        let old = self.config.clone();
        for service in &new.services {
            let Some(mut handle) = self.services.remove(&service.name) else {
                self.start_service(service, &saved, &mut index, n_checks)
                    .await;
                changed += 1;
                tracing::info!(service = %service.name, event = "service_added", "service added");
                continue;
            };
            // Its previous definition (always there: handles and config change together).
            let was = old.service(service.name.as_str());
            let driver_changed = was.is_none_or(|w| w.driver != service.driver);
            if driver_changed {
                handle
                    .driver
                    .send_replace(Driver::new(&service.driver, &self.shared.probes));
            }
            if driver_changed || was.is_none_or(|w| w.guard != service.guard) {
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
            if was.is_none_or(|w| w.schedules != service.schedules) {
                handle.schedules.cancel();
                handle.schedules = self.spawn_schedules(&service.name, &handle, &service.schedules);
                changed += 1;
            }
            self.services.insert(service.name.clone(), handle);
        }
        if new.vigil.control_socket != self.config.vigil.control_socket
            || new.vigil.control_socket_group != self.config.vigil.control_socket_group
        {
            tracing::warn!(
                event = "reload_partial",
                "control_socket/control_socket_group changed; this takes effect only after a restart of vigil"
            );
        }
        let routes = |c: &Config| -> Vec<_> {
            c.services
                .iter()
                .map(|s| (s.name.clone(), s.alerts.clone()))
                .collect()
        };
        if new.alerts != self.config.alerts || routes(&new) != routes(&self.config) {
            self.shared.guard.alerts.reload(&new);
            changed += 1;
            tracing::info!(
                event = "alerts_reloaded",
                channels = new.alerts.len(),
                "alert channels reloaded: {} channel(s)",
                new.alerts.len()
            );
        }
        self.config = Arc::new(new);
        self.publish_api_view();
        self.start_groups();
        self.notify(&format!(
            "READY=1\nSTATUS=running {} service(s), {} check(s)",
            self.config.services.len(),
            self.config
                .services
                .iter()
                .map(|s| s.checks.len())
                .sum::<usize>()
        ));
        tracing::info!(
            event = "reloaded",
            kept,
            changed,
            "configuration reloaded: {kept} check(s) unchanged (state kept), {changed} change(s) applied"
        );
    }
}

/// Each exec service holds about four descriptors (pidfd, two output pipes, its notify
/// socket): raise the soft `RLIMIT_NOFILE` to the hard limit, as systemd does for itself,
/// so hundreds of services fit under a default soft limit of 1024.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum
        && let Err(error) = setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )
    {
        tracing::warn!(%error, "cannot raise the open-file limit");
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

/// The owner of one restart group's requests: one at a time, through the group's guard.
struct GroupActor {
    group: vigil_config::model::Group,
    config: Arc<Config>,
    members: BTreeMap<ServiceName, mpsc::Sender<ServiceMsg>>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl GroupActor {
    async fn run(self, mut rx: mpsc::Receiver<GroupMsg>) {
        loop {
            let msg = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                msg = rx.recv() => match msg { Some(m) => m, None => return },
            };
            tracing::warn!(group = %self.group.name, service = %msg.member, check = %msg.check,
                event = "group_restart_wanted",
                "check {}/{} is failing: restarting group {}", msg.member, msg.check, self.group.name);
            let members = crate::group::members(&self.config, &self.group, &self.shared.probes);
            let fut = crate::group::restart(
                &self.shared.guard,
                &self.group,
                &members,
                &self.shared.probes,
                RestartRequest::new(Source::Health),
            );
            let outcome = tokio::select! {
                res = fut => res,
                _ = async { self.cancel.cancelled().await; tokio::time::sleep(RESTART_SHUTDOWN_GRACE).await } => return,
            };
            match outcome {
                Ok(decision) => {
                    if let Some(rearm_at) = decision.given_up_until() {
                        let _ = rearm_at;
                        events::given_up(
                            &self.shared.guard.alerts,
                            &self.group.ledger_key(),
                            RestartRequest::new(Source::Health),
                            &decision.verdict,
                            decision.decided_at,
                        );
                    }
                    if decision.verdict.is_allowed() {
                        let at = decision.finished_at.unwrap_or_else(clock::now);
                        for tx in self.members.values() {
                            let _ = tx.send(ServiceMsg::Restarted(at)).await;
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(group = %self.group.name, event = "guard_error", %error,
                    "group restart request failed")
                }
            }
        }
    }
}

/// The deadline of a check's repair command.
fn repair_timeout(service: &Service) -> Duration {
    service.driver.command_timeout()
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
    /// The actor's own inbox, for the driver's event follower (a container's death).
    inbox: mpsc::Sender<ServiceMsg>,
    /// Stops the current driver's event follower (replaced when the driver changes).
    follower: Option<CancellationToken>,
    /// A refused restart whose source will not ask again (`exit`, `watchdog`): retried at
    /// this time (never dropped while the service stays down).
    deferred: Option<(RestartRequest, Timestamp)>,
}

impl ServiceActor {
    /// Starts following the driver's events, when it has any (Docker's event stream):
    /// a death is reported at once as a restart request with source `exit`.
    fn follow_driver(&mut self) {
        if let Some(old) = self.follower.take() {
            old.cancel();
        }
        if let Driver::Docker(spec, own) = &self.driver {
            let token = self.cancel.child_token();
            tokio::spawn(crate::docker::follow_events(
                self.spec.name.clone(),
                spec.clone(),
                own.clone(),
                self.inbox.clone(),
                self.started.clone(),
                token.clone(),
            ));
            self.follower = Some(token);
        }
    }

    /// Not an `async fn`, which would store `self` twice; see `exec::Supervisor::run`.
    #[expect(clippy::manual_async_fn, reason = "an async fn would store self twice")]
    fn run(
        mut self,
        mut rx: mpsc::Receiver<ServiceMsg>,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            self.follow_driver();
            loop {
                let deferred_until = self.deferred.as_ref().map(|(_, at)| {
                    let wait = at.saturating_since(clock::now());
                    Instant::now() + wait
                });
                let msg = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return,
                    msg = rx.recv() => match msg { Some(m) => m, None => return },
                    _ = async {
                        match deferred_until {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    } => {
                        let Some((request, _)) = self.deferred.take() else { continue };
                        if self.driver.is_running().await == Some(true) {
                            tracing::info!(service = %self.spec.name, event = "deferred_dropped",
                                "the service runs again: the deferred restart (source {}) is no longer needed", request.source);
                            continue;
                        }
                        ServiceMsg::Restart { request, repair: None, reply: None }
                    }
                };
                match msg {
                    ServiceMsg::Update(spec) => {
                        let driver_changed = spec.driver != self.spec.driver;
                        self.driver = Driver::new(&spec.driver, &self.shared.probes);
                        self.spec = *spec;
                        if driver_changed {
                            self.follow_driver();
                        }
                        tracing::info!(service = %self.spec.name, event = "service_updated", "driver/guard settings updated");
                    }
                    ServiceMsg::Restarted(at) => {
                        self.started.send_replace(Some(at));
                    }
                    ServiceMsg::Reset => {
                        // `vigil reset` through the API: a deferred restart may go now.
                        self.announced_given_up = None;
                        if let Some((_, at)) = &mut self.deferred {
                            *at = clock::now();
                        }
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
                        if !self.handle_restart(request, repair, reply).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Performs one restart request through the guard; false when shutdown abandoned it.
    async fn handle_restart(
        &mut self,
        request: RestartRequest,
        repair: Option<Box<vigil_config::model::Argv>>,
        reply: Option<oneshot::Sender<Decision>>,
    ) -> bool {
        let action = match &repair {
            Some(argv) => Action::Repair(argv, repair_timeout(&self.spec)),
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
                return false;
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
                                &self.shared.guard.alerts,
                                &self.spec.name,
                                request,
                                &decision.verdict,
                                decision.decided_at,
                            );
                        }
                        self.announced_given_up = Some(rearm_at);
                    }
                    None if decision.verdict.is_allowed() => self.announced_given_up = None,
                    None => {}
                }
                if decision.restarted() && repair.is_none() {
                    self.started.send_replace(decision.finished_at);
                }
                if decision.verdict.is_allowed() {
                    // Whatever brought the service back settles a pending one.
                    self.deferred = None;
                } else if request.source.is_deferred_when_skipped() {
                    // Nothing else would bring a dead process back: retry when the guard
                    // will allow it (a lock held elsewhere: in a second).
                    let at = decision
                        .verdict
                        .retry_at(decision.decided_at)
                        .unwrap_or(decision.decided_at.saturating_add(Duration::from_secs(1)));
                    tracing::info!(service = %self.spec.name, event = "restart_deferred",
                        "restart (source {}) deferred until {at}: {}", request.source, decision.verdict);
                    self.deferred = Some((request, at));
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
        true
    }
}

/// One check on its own timer.
struct CheckLoop {
    /// Ticked on every wake-up (two-level liveness for the systemd watchdog).
    beat: BeatHandle,
    service: ServiceName,
    check: Check,
    alerts: events::CheckAlerts,
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
    /// Not an `async fn`, which would store `self` twice (as captured and as a moved-in
    /// local); see `exec::Supervisor::run`.
    #[expect(clippy::manual_async_fn, reason = "an async fn would store self twice")]
    fn run(mut self, first_delay: Duration) -> impl Future<Output = ()> + Send + 'static {
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
