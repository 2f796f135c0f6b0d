//! `vigil run`: the long-running daemon.
//!
//! Task tree (one owner per mutable state, messages in between):
//! - one **service actor** per service (`service/actor.rs`) owns its driver and drives
//!   its lifecycle machine: every request for the service goes through it, one driver
//!   operation at a time, each restart through the guard; one per restart group too;
//! - one **check task** per check owns that check's health (`CheckHealth`) and runs on its
//!   own timer (no global tick); a failing critical check sends a restart request to its
//!   service actor;
//! - one **schedule task** per `[[services.X.schedule]]` entry sends `schedule` requests;
//! - the ledger thread (`LedgerHandle`) owns the SQLite connection;
//! - the **API task** serves the control socket (`control/server.rs`); it sees the running config and
//!   each actor's inbox through a published [`ApiView`], refreshed on every reload. With
//!   `http_listen`, the same routes are served over TCP on a thread of their own
//!   (`control/http.rs`).
//!
//! The main loop only handles signals: SIGHUP reloads (validate fully, then apply: unchanged
//! checks keep their tasks and state), SIGTERM/SIGINT shut down gracefully (checks cancelled
//! at once, in-flight restarts get a bounded grace), a second signal exits immediately.

mod check_loop;
mod maintenance;
mod reload;
mod schedule;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_checks::ProbeContext;
use vigil_config::model::{Check, Config, MaintenanceWindow, Service};
use vigil_core::health::{CheckHealth, HealthStatus};
use vigil_core::{ServiceName, Timestamp};

use crate::control::http::{self, TokenSwap};
use crate::control::server::{self as api, ApiView};
use crate::drivers::{self, Driver, DriverContext, Reader};
use crate::guard::GuardContext;
use crate::ledger::{CheckStateRow, LedgerHandle};
use crate::observe::alerting::AlertHub;
use crate::observe::bus::Events;
use crate::observe::metrics::Metrics;
use crate::observe::sdnotify::{Liveness, Notifier};
use crate::platform::cell::Cell;
use crate::platform::clock::Clock;
use crate::service::actor::{Deps, ServiceActor};
use crate::service::group::{self, GroupDriver};
use crate::service::inbox;
use crate::service::protocol::ServiceMsg;

use self::check_loop::CheckLoop;
use self::maintenance::maintenance_loop;
use self::schedule::schedule_loop;

pub use self::reload::{ConfigDiff, ServiceChange};

/// How long shutdown waits for all tasks before naming the stragglers and exiting anyway.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

struct CheckTask {
    spec: Check,
    cancel: CancellationToken,
}

/// A running service as the daemon holds it. Its definition is not kept here: the
/// daemon's one `Config` has it (one copy per service, not one per holder).
struct ServiceHandle {
    tx: inbox::Sender<ServiceMsg>,
    started: Cell<Option<Timestamp>>,
    /// The service's state as the check tasks read it (for the uptime of `grace`).
    reader: Cell<Reader>,
    cancel: CancellationToken,
    checks: BTreeMap<String, CheckTask>,
    schedules: CancellationToken,
}

/// Everything the daemon's tasks share.
struct Shared {
    guard: GuardContext,
    /// The alert router (a subscriber of the guard's event bus), for reload and shutdown.
    alerts: AlertHub,
    /// The metrics (another subscriber), reconfigured on reload.
    metrics: Arc<Metrics>,
    drivers: DriverContext,
    probes: Arc<ProbeContext>,
    clock: Clock,
    /// Loops tick here; the systemd watchdog is fed only while all are fresh.
    liveness: Arc<Liveness>,
    /// When a stall of Vigil's runtime was last announced (one line per stall, however
    /// many checks saw it).
    stall_announced: std::sync::Mutex<Option<Instant>>,
    /// Each group member's way to its group's actor (`on_failure = "restart-group"`);
    /// replaced on reload.
    groups: std::sync::RwLock<BTreeMap<ServiceName, (ServiceName, inbox::Sender<ServiceMsg>)>>,
}

impl Shared {
    fn deps(&self) -> Deps {
        Deps {
            gate: Arc::new(self.guard.clone()),
            events: self.guard.events.clone(),
            clock: self.clock.clone(),
            ledger: Some(self.guard.ledger.clone()),
            follow: true,
        }
    }
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
    /// The TCP listener's address, when `http_listen` is set.
    http_addr: Option<std::net::SocketAddr>,
    /// Its token's handle, swapped on reload.
    http_token: Option<TokenSwap>,
}

impl Daemon {
    /// Opens the ledger and starts every task.
    pub async fn start(config_path: PathBuf, config: Config) -> anyhow::Result<Daemon> {
        // First, so a second daemon on the same state refuses before it runs any check.
        let listener = api::bind(
            &config.vigil.control_socket,
            config.vigil.control_socket_group.as_deref(),
        )?;
        // Then the TCP listener: a port in use or an unreadable token or TLS file stops
        // the start with the reason, before anything runs.
        let http = config.vigil.http.as_ref().map(http::bind).transpose()?;
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
        let metrics = Metrics::new(&config);
        let alerts = AlertHub::start(&config, ledger.clone(), metrics.clone());
        let clock = Clock::real();
        let events = Events::new(alerts.clone(), metrics.clone());
        let probes = Arc::new(ProbeContext::new());
        let shared = Arc::new(Shared {
            guard: GuardContext {
                ledger,
                state_dir: config.vigil.state_dir.clone(),
                events: events.clone(),
                fleet: crate::fleet::FleetHandle::new(&config, events.clone()),
            },
            alerts,
            metrics,
            drivers: DriverContext {
                probes: probes.clone(),
                state_dir: config.vigil.state_dir.clone(),
                events,
                outputs: Default::default(),
            },
            probes,
            clock,
            liveness: Arc::new(Liveness::default()),
            stall_announced: std::sync::Mutex::default(),
            groups: std::sync::RwLock::default(),
        });
        let (api_view, view_rx) = watch::channel(Arc::new(ApiView {
            config: config.clone(),
            services: BTreeMap::new(),
            outputs: shared.drivers.outputs.clone(),
            http: http.as_ref().map(http::Bound::addr),
            metrics: shared.metrics.clone(),
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
            http_addr: http.as_ref().map(http::Bound::addr),
            http_token: None,
        };
        // Every driver is built before anything starts: one that cannot be built (an exec
        // service's notify socket) stops the daemon with the reason.
        let mut built = Vec::new();
        for service in &config.services {
            built.push(
                drivers::build(service, &daemon.shared.drivers)
                    .map_err(|e| anyhow::anyhow!("service {}: {e}", service.name))?,
            );
        }
        let saved = daemon.saved_check_states().await;
        let n_checks: usize = config.services.iter().map(|s| s.checks.len()).sum();
        let mut index = 0usize;
        for (service, driver) in config.services.iter().zip(built) {
            daemon
                .start_service(service, driver, &saved, &mut index, n_checks)
                .await;
        }
        daemon.start_groups();
        daemon.publish_api_view();
        if let Some(bound) = http {
            let addr = bound.addr();
            let guard = daemon.shared.guard.clone();
            let cancel = daemon.root.child_token();
            let spec = config.vigil.http.as_ref();
            let (tls, token) = (
                spec.is_some_and(|h| h.tls.is_some()),
                spec.is_some_and(|h| h.token_file.is_some()),
            );
            let (swap, done) = bound.start(view_rx.clone(), guard, cancel)?;
            daemon.http_token = Some(swap);
            daemon.spawn_labeled("http listener".to_owned(), done);
            tracing::info!(
                event = "http_listening",
                %addr,
                tls,
                token,
                "http listener on {}://{addr}{}",
                if tls { "https" } else { "http" },
                if token {
                    ""
                } else {
                    " (no http_token_file: the operator endpoints answer 401 over TCP)"
                }
            );
        }
        {
            let socket = config.vigil.control_socket.clone();
            let guard = daemon.shared.guard.clone();
            let cancel = daemon.root.child_token();
            daemon.spawn_labeled(
                "control socket".to_owned(),
                api::serve(listener, socket, view_rx, guard, cancel),
            );
        }
        if let Some(fleet) = daemon.shared.guard.fleet.clone() {
            let ledger = daemon.shared.guard.ledger.clone();
            let services = config
                .services
                .iter()
                .map(|s| (s.name.to_string(), s.fleet_key.clone()))
                .collect();
            let cancel = daemon.root.child_token();
            daemon.spawn_labeled(
                "fleet publisher".to_owned(),
                crate::fleet::publish::run(fleet, ledger, services, cancel),
            );
        }
        if let Some(notifier) = daemon.notifier.clone() {
            let liveness = daemon.shared.liveness.clone();
            let ledger = daemon.shared.guard.ledger.clone();
            let cancel = daemon.root.child_token();
            let services = config.services.len();
            daemon.spawn_labeled(
                "systemd watchdog".to_owned(),
                crate::observe::sdnotify::watchdog_loop(
                    notifier, liveness, ledger, services, cancel,
                ),
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
        if let Some(stalls) = test_stalls() {
            tokio::spawn(stalls);
        }
        // Code pages not in use are given back a little after startup and after bursts of
        // activity (`platform/memory.rs`). Detached: the supervised tasks must not end,
        // this one does.
        tokio::spawn(crate::platform::memory::release_loop(
            daemon.root.child_token(),
        ));
        Ok(daemon)
    }

    /// One actor per `[groups.NAME]`, driving the group's lifecycle through its members'
    /// actors. Rebuilt from scratch on reload (groups hold no state beyond the ledger).
    fn start_groups(&mut self) {
        self.group_actors.cancel();
        self.group_actors = self.root.child_token();
        let mut routes = BTreeMap::new();
        for g in &self.config.groups {
            let members = group::members(&self.config, g, |name| {
                self.services.get(name).map(|h| h.tx.clone())
            });
            let driver = GroupDriver {
                name: g.name.clone(),
                members,
                ready_timeout: g.ready_timeout,
                probes: (*self.shared.probes).clone(),
                events: self.shared.guard.events.clone(),
            };
            let (tx, rx) = inbox::channel(64);
            for m in &g.members {
                routes.insert(m.clone(), (g.name.clone(), tx.clone()));
            }
            let actor = ServiceActor::for_group(
                g,
                Driver::Remote(Arc::new(driver)),
                self.shared.deps(),
                self.group_actors.clone(),
                self.root.clone(),
            );
            // Not in the task set: a reload ends these on purpose.
            let inboxes: Vec<_> = g
                .members
                .iter()
                .filter_map(|m| Some((m.clone(), self.services.get(m)?.tx.clone())))
                .collect();
            for window in &g.maintenance {
                tokio::spawn(maintenance_loop(
                    g.ledger_key(),
                    window.clone(),
                    tx.clone(),
                    inboxes.clone(),
                    self.shared.guard.events.clone(),
                    self.group_actors.clone(),
                ));
            }
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

    /// Shows the API the running config and the actors' inboxes (a group's as `@NAME`).
    fn publish_api_view(&self) {
        let mut services: BTreeMap<ServiceName, _> = self
            .services
            .iter()
            .map(|(name, handle)| (name.clone(), handle.tx.clone()))
            .collect();
        let groups = self.shared.groups.read().unwrap_or_else(|p| p.into_inner());
        for (group, tx) in groups.values() {
            services.insert(ServiceName::new(format!("@{group}")), tx.clone());
        }
        drop(groups);
        self.api_view.send_replace(Arc::new(ApiView {
            config: self.config.clone(),
            services,
            outputs: self.shared.drivers.outputs.clone(),
            http: self.http_addr,
            metrics: self.shared.metrics.clone(),
        }));
    }

    async fn saved_check_states(&self) -> BTreeMap<(String, String), CheckStateRow> {
        match self.shared.guard.ledger.call(|l| l.check_states()).await {
            Ok(rows) => rows
                .into_iter()
                .map(|r| ((r.service.clone(), r.check.clone()), r))
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
        driver: Driver,
        saved: &BTreeMap<(String, String), CheckStateRow>,
        index: &mut usize,
        n_checks: usize,
    ) {
        let name = service.name.clone();
        let reader = Reader::new(&service.driver, &self.shared.probes);
        // The driver's own start time when it has one (a container's StartedAt, a unit's
        // ActiveEnterTimestamp), else the last restart Vigil made. An exec service's
        // uptime starts when its actor spawns it.
        let is_exec = matches!(driver, Driver::Process(_));
        let started_at = match reader.started_at().await {
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
        let started = Cell::new(started_at);
        let reader = Cell::new(reader);
        let (tx, rx) = inbox::channel(64);
        let cancel = self.root.child_token();
        let actor = ServiceActor::new(
            service,
            driver,
            self.shared.deps(),
            started.clone(),
            cancel.clone(),
            self.root.clone(),
        );
        // The actor's own future, not one wrapping it: every async block that moves a
        // future in and awaits it stores it twice (kilobytes per service).
        self.spawn_labeled(format!("service {name}"), actor.run(rx));
        let mut handle = ServiceHandle {
            tx,
            started,
            reader,
            cancel,
            checks: BTreeMap::new(),
            schedules: CancellationToken::new(),
        };
        for check in &service.checks {
            let row = saved.get(&(name.to_string(), check.name.to_string()));
            let initial = row.map(|r| r.health).unwrap_or_default();
            let position = row.and_then(|r| r.position.clone());
            let offset = stagger(*index, n_checks, check.every);
            *index += 1;
            let last = row.and_then(|r| r.last_verdict);
            self.shared
                .metrics
                .check_started(&name, check.name.as_str(), initial.status, last);
            let task = self.spawn_check(&name, &handle, check, initial, position, offset);
            handle.checks.insert(check.name.to_string(), task);
        }
        handle.schedules = self.spawn_schedules(&name, &handle, service);
        self.services.insert(name, handle);
    }

    fn spawn_check(
        &mut self,
        service: &ServiceName,
        handle: &ServiceHandle,
        check: &Check,
        initial: CheckHealth,
        position: Option<String>,
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
            announced: matches!(
                initial.status,
                HealthStatus::Failing | HealthStatus::Warning
            ),
            health: initial,
            saved: None,
            shared: self.shared.clone(),
            tx: handle.tx.clone(),
            started: handle.started.clone(),
            reader: handle.reader.clone(),
            cancel: cancel.clone(),
            position,
            voided: 0,
        };
        let label = format!("check {service}/{}", check.name);
        self.spawn_labeled(label, task.run(first_delay));
        CheckTask {
            spec: check.clone(),
            cancel,
        }
    }

    /// The service's timed tasks: its scheduled restarts and its maintenance windows.
    fn spawn_schedules(
        &mut self,
        name: &ServiceName,
        handle: &ServiceHandle,
        service: &Service,
    ) -> CancellationToken {
        let cancel = handle.cancel.child_token();
        for (i, entry) in service.schedules.iter().enumerate() {
            let schedule = entry.schedule.clone();
            let tx = handle.tx.clone();
            let cancel = cancel.clone();
            let service = name.clone();
            let events = self.shared.guard.events.clone();
            let label = format!("schedule {service}#{i}");
            self.spawn_labeled(label, schedule_loop(service, schedule, tx, events, cancel));
        }
        self.spawn_windows(name, &service.maintenance, &handle.tx, &cancel);
        cancel
    }

    /// One task per maintenance window of `name` (a service, or a group's `@NAME`).
    fn spawn_windows(
        &mut self,
        name: &ServiceName,
        windows: &[MaintenanceWindow],
        tx: &inbox::Sender<ServiceMsg>,
        cancel: &CancellationToken,
    ) {
        for (i, window) in windows.iter().enumerate() {
            let label = format!("maintenance {name}#{i}");
            let task = maintenance_loop(
                name.clone(),
                window.clone(),
                tx.clone(),
                Vec::new(),
                self.shared.guard.events.clone(),
                cancel.clone(),
            );
            self.spawn_labeled(label, task);
        }
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
                    // Tasks only end on cancellation (or a removed service's actor,
                    // after stopping it); anything else is a bug.
                    match res {
                        Ok((id, ())) => {
                            let label = self.labels.remove(&id).unwrap_or_default();
                            // A removed service's actor ends after stopping it.
                            if !label.starts_with("service ") {
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
        self.shared.alerts.shutdown().await;
        tracing::info!(
            event = "stopped",
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "vigil stopped cleanly"
        );
    }
}

/// A test hook: `VIGIL_TEST_STALLS=AFTER_MS:STALL_MS:COUNT:PERIOD_MS` blocks the runtime
/// thread COUNT times for STALL_MS (every PERIOD_MS, starting AFTER_MS after startup), as
/// a CPU-bound piece of work on it would: the tests of "a verdict is void when Vigil
/// itself was late" need a real stall. Unset, nothing happens.
fn test_stalls() -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    let spec = std::env::var("VIGIL_TEST_STALLS").ok()?;
    let n: Vec<u64> = spec.split(':').filter_map(|p| p.parse().ok()).collect();
    let [after, stall, count, period] = n[..] else {
        tracing::warn!("VIGIL_TEST_STALLS={spec}: expected AFTER_MS:STALL_MS:COUNT:PERIOD_MS");
        return None;
    };
    Some(async move {
        tokio::time::sleep(Duration::from_millis(after)).await;
        for _ in 0..count {
            tracing::warn!(
                event = "test_stall",
                "test hook: blocking the runtime for {stall}ms"
            );
            std::thread::sleep(Duration::from_millis(stall));
            tokio::time::sleep(Duration::from_millis(period.saturating_sub(stall))).await;
        }
    })
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
    // sharing an interval stay evenly spread instead of firing in the same millisecond
    // (the check loop then rounds each start up to its 10 ms grid: a few share a wake-up).
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
