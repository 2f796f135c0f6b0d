//! systemd over D-Bus: one shared connection per bus, a unit's state, and restart jobs
//! followed to their end. Used by the `systemd` check and by vigild's systemd driver.
//!
//! Owns: connecting to a bus (`bus = "system" | "user"` or an explicit `bus_address`),
//! caching that connection ([`Buses`]; a closed or broken one is replaced on next use), the
//! unit's properties as a typed [`UnitState`], and queueing a job (`RestartUnit`, ...) and
//! waiting for its `JobRemoved` with a deadline ([`JobOutcome`]). Must not: decide, retry,
//! or shell out to `systemctl`; every failure is a typed error with a one-line message.
//!
//! Cost per use: a state read is the eight properties it needs (six of the unit, `Result`
//! and `NRestarts` of a service), asked in one pipelined batch on the shared connection (one
//! round trip). The unit's object path is computed locally (systemd's
//! escaping), and reading a property through it loads the unit, so no `LoadUnit` call.
//! A job costs one method call: `Subscribe` and the `JobRemoved` match rule are set up
//! once per connection, and one watcher task hands every `JobRemoved` to the jobs waiting
//! on that connection (an in-process broadcast), so no match rule churns per restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{OnceCell, broadcast, oneshot};
use tokio::time::Instant;
use vigil_core::Timestamp;
use zbus::proxy::CacheProperties;
use zbus::{Connection, OwnedObjectPath, OwnedVariant};
use zbus_systemd::systemd1::ManagerProxy;

pub use crate::model::SystemdBus;

const DESTINATION: &str = "org.freedesktop.systemd1";
const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_INTERFACE: &str = "org.freedesktop.systemd1.Service";

/// A D-Bus failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot connect to {bus}: {}", describe(.error))]
    Connect { bus: SystemdBus, error: zbus::Error },
    #[error("{what}: {}", describe(.error))]
    Call { what: String, error: zbus::Error },
    #[error("{what}: the bus connection closed")]
    Closed { what: String },
}

/// The job a unit method queues (mode `replace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    Start,
    Stop,
    Restart,
    TryRestart,
    ReloadOrRestart,
}

impl JobKind {
    /// The `org.freedesktop.systemd1.Manager` method: `RestartUnit`, ...
    pub fn method(self) -> &'static str {
        match self {
            JobKind::Start => "StartUnit",
            JobKind::Stop => "StopUnit",
            JobKind::Restart => "RestartUnit",
            JobKind::TryRestart => "TryRestartUnit",
            JobKind::ReloadOrRestart => "ReloadOrRestartUnit",
        }
    }
}

impl SystemdError {
    fn call(what: impl Into<String>) -> impl FnOnce(zbus::Error) -> SystemdError {
        let what = what.into();
        move |error| SystemdError::Call { what, error }
    }

    /// The D-Bus error name of a failed call (`org.freedesktop.systemd1.NoSuchUnit`).
    pub fn error_name(&self) -> Option<&str> {
        match self {
            SystemdError::Call {
                error: zbus::Error::MethodError(name, _, _),
                ..
            } => Some(name.as_str()),
            _ => None,
        }
    }

    /// The connection itself failed (not one call on it): the cached connection is dropped
    /// and the next use reconnects.
    fn is_transport(&self) -> bool {
        match self {
            SystemdError::Connect { .. } | SystemdError::Closed { .. } => true,
            SystemdError::Call { error, .. } => matches!(
                error,
                zbus::Error::InputOutput(_) | zbus::Error::Connection(..)
            ),
        }
    }
}

/// A zbus error as one line: the D-Bus error's own message when it has one
/// (`Unit x.service not found.`), else the transport problem.
pub fn describe(error: &zbus::Error) -> String {
    match error {
        zbus::Error::MethodError(name, Some(message), _) if !message.is_empty() => {
            format!("{} ({name})", message.trim_end_matches('.'))
        }
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        zbus::Error::InputOutput(e) | zbus::Error::Connection(e, _) => e.to_string(),
        other => other.to_string(),
    }
}

/// Shared D-Bus connections, one per bus; cheap to clone. Lives in the
/// [`crate::ProbeContext`], so checks and drivers of one daemon share them.
///
/// A connection is bound to the tokio runtime it was made on; a context is never shared
/// across runtimes.
#[derive(Clone, Debug, Default)]
pub struct Buses {
    conns: Arc<Mutex<HashMap<SystemdBus, Bus>>>,
}

impl Buses {
    /// The connection for `bus`, made on first use or when the cached one has closed.
    pub async fn get(&self, bus: &SystemdBus) -> Result<Bus, SystemdError> {
        if let Some(b) = self.lock().get(bus)
            && !b.conn.is_closed()
        {
            return Ok(b.clone());
        }
        let b = Bus::connect(bus).await?;
        // Two first uses may race to connect; keep the first, the other one closes.
        let mut map = self.lock();
        let entry = map.entry(bus.clone()).or_insert_with(|| b.clone());
        if entry.conn.is_closed() {
            *entry = b;
        }
        Ok(entry.clone())
    }

    /// Runs `f` on the connection for `bus`; a transport failure drops the cached
    /// connection so the next call reconnects (a restarted dbus-daemon, a rebooted
    /// container).
    pub async fn with<T, F>(
        &self,
        bus: &SystemdBus,
        f: impl FnOnce(Bus) -> F,
    ) -> Result<T, SystemdError>
    where
        F: Future<Output = Result<T, SystemdError>>,
    {
        let b = self.get(bus).await?;
        let conn = b.conn.clone();
        let result = f(b).await;
        if let Err(e) = &result
            && e.is_transport()
        {
            let mut map = self.lock();
            if map.get(bus).is_some_and(|cached| same(&cached.conn, &conn)) {
                map.remove(bus);
            }
        }
        result
    }

    /// How many connections are cached (for tests and `vigil status`).
    pub fn cached(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SystemdBus, Bus>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.conns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn same(a: &Connection, b: &Connection) -> bool {
    a.unique_name() == b.unique_name()
}

/// One connection to a bus with systemd on it; cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    conn: Connection,
    manager: ManagerProxy<'static>,
    /// `Subscribe`, the `JobRemoved` match and its watcher task: set up on the first job.
    jobs: Arc<OnceCell<JobWatch>>,
}

/// `JobRemoved` signals of one connection, `(job path, result)`, for every waiting job.
#[derive(Debug)]
struct JobWatch {
    tx: broadcast::Sender<(OwnedObjectPath, String)>,
    /// Dropped with the last clone of the [`Bus`]: stops the watcher task (which holds the
    /// connection's signal stream and would otherwise keep the connection open).
    _stop: oneshot::Sender<()>,
}

/// `JobRemoved` signals buffered per waiting job; systemd announces every job of the
/// machine, so a waiter that falls further behind than this may miss its own.
const JOB_SIGNAL_BUFFER: usize = 1024;

/// A unit's state as systemd reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitState {
    pub unit: String,
    /// `loaded`, `not-found`, `masked`, `error`, `bad-setting`, ...
    pub load_state: String,
    /// `active`, `reloading`, `inactive`, `failed`, `activating`, `deactivating`.
    pub active_state: String,
    /// The type-specific state: `running`, `dead`, `start-pre`, `auto-restart`, ...
    pub sub_state: String,
    /// A service's `Result` (`success`, `exit-code`, `signal`, `timeout`, `watchdog`,
    /// `start-limit-hit`, ...); `None` for other unit types.
    pub result: Option<String>,
    /// A service's `NRestarts` (automatic restarts by systemd's `Restart=`).
    pub n_restarts: Option<u32>,
    /// `ActiveEnterTimestamp`: when the unit last became active (`None`: never).
    pub active_enter: Option<Timestamp>,
    /// `StateChangeTimestamp`: when `ActiveState` last changed.
    pub state_change: Option<Timestamp>,
    /// `InvocationID`, hex: a new one for every start of the unit.
    pub invocation_id: String,
}

impl UnitState {
    /// `active` or `reloading`: what `systemctl is-active` accepts.
    pub fn is_active(&self) -> bool {
        matches!(self.active_state.as_str(), "active" | "reloading")
    }

    /// `(Result=exit-code, NRestarts=3)`, or empty for a unit type without them.
    pub fn result_suffix(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.result {
            parts.push(format!("Result={r}"));
        }
        if let Some(n) = self.n_restarts {
            parts.push(format!("NRestarts={n}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobEnd {
    /// `JobRemoved` arrived: `done`, `canceled`, `timeout`, `failed`, `dependency`,
    /// `skipped`, `invalid`, `assert`, `unsupported`, `collected`, `once`, `frozen`.
    Removed(String),
    /// The deadline passed first; the job may still be queued or running in systemd.
    DeadlineExceeded,
}

/// A queued job and how it ended.
#[derive(Clone, Debug)]
pub struct JobOutcome {
    pub kind: JobKind,
    pub unit: String,
    /// The job's object path (`/org/freedesktop/systemd1/job/1234`).
    pub job: String,
    /// From the call until systemd answered with the queued job.
    pub queued: Duration,
    pub end: JobEnd,
    /// From the call to `JobRemoved` (or the deadline).
    pub took: Duration,
    /// The unit right after the job ended (`None` if that read failed).
    pub state: Option<UnitState>,
}

impl Bus {
    async fn connect(bus: &SystemdBus) -> Result<Bus, SystemdError> {
        let fail = |error| SystemdError::Connect {
            bus: bus.clone(),
            error,
        };
        let conn = match bus {
            SystemdBus::System => Connection::system().await,
            SystemdBus::User => Connection::session().await,
            SystemdBus::Address(a) => zbus::connection::Builder::address(a.as_str()).build().await,
        }
        .map_err(fail)?;
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(fail)?;
        Ok(Bus {
            conn,
            manager,
            jobs: Arc::new(OnceCell::new()),
        })
    }

    /// The unit's state. A unit that does not exist reads as `load_state = not-found`.
    pub async fn unit_state(&self, unit: &str) -> Result<UnitState, SystemdError> {
        let path = unit_path(unit);
        let what = || format!("reading unit {unit}");
        let props = zbus::fdo::PropertiesProxy::builder(&self.conn)
            .destination(DESTINATION)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(SystemdError::call(what()))?;
        // Only the properties we use, pipelined: a `GetAll` answers with about 90 of them,
        // and decoding those was most of a state read's CPU.
        let unit_if = zbus::names::InterfaceName::from_static_str_unchecked(UNIT_INTERFACE);
        let service_if = zbus::names::InterfaceName::from_static_str_unchecked(SERVICE_INTERFACE);
        let get = |name: &'static str| props.get(unit_if.clone(), name);
        let get_service = |name: &'static str| {
            let props = &props;
            let service_if = service_if.clone();
            async move {
                if unit.ends_with(".service") {
                    props.get(service_if, name).await.ok()
                } else {
                    None
                }
            }
        };
        // The three states from one `ListUnitsByNames` answer: one snapshot of systemd's
        // state. Three separate `Get`s could straddle a transition and read, say,
        // `ActiveState = active` with `SubState = failed`.
        let names = vec![unit.to_owned()];
        let (listed, entered, changed, invocation, result, restarts) = tokio::join!(
            self.manager.list_units_by_names(names),
            get("ActiveEnterTimestamp"),
            get("StateChangeTimestamp"),
            get("InvocationID"),
            get_service("Result"),
            get_service("NRestarts"),
        );
        let listed = listed.map_err(SystemdError::call(what()))?;
        let Some((_, _, load_state, active_state, sub_state, ..)) = listed.into_iter().next()
        else {
            return Err(SystemdError::call(what())(zbus::Error::Failure(
                "ListUnitsByNames answered with no unit".to_owned(),
            )));
        };
        Ok(UnitState {
            unit: unit.to_owned(),
            load_state,
            active_state,
            sub_state,
            result: result.and_then(|v| String::try_from(v).ok()),
            n_restarts: restarts.and_then(|v| u32::try_from(v).ok()),
            active_enter: timestamp(entered.ok()),
            state_change: timestamp(changed.ok()),
            invocation_id: invocation
                .ok()
                .and_then(|v| Vec::<u8>::try_from(v).ok())
                .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
                .unwrap_or_default(),
        })
    }

    /// One `t` (u64) property of the unit's `org.freedesktop.systemd1.Unit` interface, e.g.
    /// `ActiveEnterTimestampMonotonic` (benchmarks and tests).
    pub async fn unit_u64(&self, unit: &str, property: &str) -> Result<u64, SystemdError> {
        let what = || format!("reading {property} of {unit}");
        let props = zbus::fdo::PropertiesProxy::builder(&self.conn)
            .destination(DESTINATION)
            .path(unit_path(unit))
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(SystemdError::call(what()))?;
        let iface = zbus::names::InterfaceName::from_static_str_unchecked(UNIT_INTERFACE);
        let v = props
            .get(iface, property)
            .await
            .map_err(|e| SystemdError::call(what())(e.into()))?;
        u64::try_from(v).map_err(SystemdError::call(what()))
    }

    /// `LoadError` of a unit that did not load: `Unit x.service not found.`
    pub async fn load_error(&self, unit: &str) -> Option<String> {
        let proxy = zbus_systemd::systemd1::UnitProxy::builder(&self.conn)
            .path(unit_path(unit))
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .ok()?;
        let (_, message) = proxy.load_error().await.ok()?;
        (!message.is_empty()).then(|| message.trim_end_matches('.').to_owned())
    }

    /// `ResetFailedUnit`: clears the failed state and the start-limit counter.
    pub async fn reset_failed(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager
            .reset_failed_unit(unit.to_owned())
            .await
            .map_err(SystemdError::call(format!("ResetFailedUnit {unit}")))
    }

    /// `RestartUnit(unit, "replace")`, followed to its `JobRemoved` within `deadline`.
    pub async fn restart_unit(
        &self,
        unit: &str,
        deadline: Duration,
    ) -> Result<JobOutcome, SystemdError> {
        self.job(JobKind::Restart, unit, deadline).await
    }

    /// Queues a `kind` job for `unit` with mode `replace` and waits for its `JobRemoved`, at
    /// most `deadline` from the call.
    pub async fn job(
        &self,
        kind: JobKind,
        unit: &str,
        deadline: Duration,
    ) -> Result<JobOutcome, SystemdError> {
        let started = Instant::now();
        let method = kind.method();
        let what = || format!("{method} {unit}");
        let watch = self.job_watch().await?;
        // Listening before the job exists, so its JobRemoved cannot be missed.
        let mut removed = watch.tx.subscribe();
        let (unit_s, mode) = (unit.to_owned(), "replace".to_owned());
        let m = &self.manager;
        let job: OwnedObjectPath = match kind {
            JobKind::Start => m.start_unit(unit_s, mode).await,
            JobKind::Stop => m.stop_unit(unit_s, mode).await,
            JobKind::Restart => m.restart_unit(unit_s, mode).await,
            JobKind::TryRestart => m.try_restart_unit(unit_s, mode).await,
            JobKind::ReloadOrRestart => m.reload_or_restart_unit(unit_s, mode).await,
        }
        .map_err(SystemdError::call(what()))?;
        let queued = started.elapsed();
        let until = started + deadline;
        let end = loop {
            tokio::select! {
                biased;
                signal = removed.recv() => match signal {
                    Ok((path, result)) if path == job => break JobEnd::Removed(result),
                    // Another job's, or we fell behind other jobs' signals: keep waiting
                    // (the deadline bounds a missed one).
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(SystemdError::Closed { what: what() })
                    }
                },
                () = self.conn.closed() => return Err(SystemdError::Closed { what: what() }),
                () = tokio::time::sleep_until(until) => break JobEnd::DeadlineExceeded,
            }
        };
        let took = started.elapsed();
        drop(removed);
        let state = self.unit_state(unit).await.ok();
        Ok(JobOutcome {
            kind,
            unit: unit.to_owned(),
            job: job.to_string(),
            queued,
            end,
            took,
            state,
        })
    }

    /// `Subscribe` (so systemd emits job signals), one `JobRemoved` match rule and the
    /// task that fans the signals out; once per connection.
    async fn job_watch(&self) -> Result<&JobWatch, SystemdError> {
        self.jobs
            .get_or_try_init(|| async {
                match self.manager.subscribe().await {
                    Ok(()) => {}
                    // Subscribed already (systemd tracks it per client).
                    Err(zbus::Error::MethodError(name, _, _))
                        if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
                    Err(error) => {
                        return Err(SystemdError::Call {
                            what: "Subscribe".to_owned(),
                            error,
                        });
                    }
                }
                let mut stream = self
                    .manager
                    .receive_job_removed()
                    .await
                    .map_err(SystemdError::call("watching JobRemoved"))?;
                let (tx, _) = broadcast::channel(JOB_SIGNAL_BUFFER);
                let (stop, mut stopped) = oneshot::channel::<()>();
                let fan_out = tx.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            biased;
                            _ = &mut stopped => return,
                            signal = stream.next() => {
                                let Some(signal) = signal else { return };
                                if let Ok(args) = signal.args() {
                                    // No receiver just means no job is waiting.
                                    let _ = fan_out.send((args.job, args.result));
                                }
                            }
                        }
                    }
                });
                Ok(JobWatch { tx, _stop: stop })
            })
            .await
    }
}

/// A systemd timestamp (µs since the epoch; 0 means never).
fn timestamp(v: Option<OwnedVariant>) -> Option<Timestamp> {
    let us = u64::try_from(v?).ok()?;
    (us > 0).then(|| Timestamp::from_millis(i64::try_from(us / 1000).unwrap_or(i64::MAX)))
}

/// The object path of a unit, as systemd escapes it: every byte outside `[A-Za-z0-9]`
/// becomes `_xx` (lower-case hex); `web.service` -> `.../unit/web_2eservice`.
pub fn unit_path(unit: &str) -> OwnedObjectPath {
    let mut path = String::from("/org/freedesktop/systemd1/unit/");
    if unit.is_empty() {
        path.push('_');
    }
    for b in unit.bytes() {
        if b.is_ascii_alphanumeric() {
            path.push(char::from(b));
        } else {
            path.push_str(&format!("_{b:02x}"));
        }
    }
    // Only [A-Za-z0-9_] and '/' remain: always a valid object path.
    OwnedObjectPath::try_from(path).unwrap_or_else(|_| {
        OwnedObjectPath::try_from("/org/freedesktop/systemd1/unit/_").unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_are_escaped_like_systemd() {
        assert_eq!(
            unit_path("web.service").as_str(),
            "/org/freedesktop/systemd1/unit/web_2eservice"
        );
        assert_eq!(
            unit_path("vigil-sleep@a.service").as_str(),
            "/org/freedesktop/systemd1/unit/vigil_2dsleep_40a_2eservice"
        );
    }

    #[test]
    fn result_suffix_lists_what_is_known() {
        let mut s = UnitState {
            unit: "x.service".to_owned(),
            load_state: "loaded".to_owned(),
            active_state: "failed".to_owned(),
            sub_state: "failed".to_owned(),
            result: Some("exit-code".to_owned()),
            n_restarts: Some(3),
            active_enter: None,
            state_change: None,
            invocation_id: String::new(),
        };
        assert_eq!(s.result_suffix(), " (Result=exit-code, NRestarts=3)");
        s.result = None;
        s.n_restarts = None;
        assert_eq!(s.result_suffix(), "");
    }
}
