//! Drivers: how a service is restarted, stopped and started, and how its state is read.
//!
//! Drivers act and report typed outcomes ([`RestartReport`]); they never retry and never
//! decide. A service's acting driver is built once, by [`build`], from its spec and the
//! shared clients of a [`DriverContext`], and owned by the service's actor: every
//! operation on the service (a restart, a group's stop and start) goes through that owner,
//! so the driver always knows which events are its own (a container's `die` during
//! Vigil's restart). Reading a service's state ([`Reader`]: is it up, since when, a unit's
//! state for `vigil status`) acts on nothing and may be done from anywhere.
//!
//! - `command`: the user's argv commands (`restart_command`, ...), through the one spawn
//!   site for commands that run to completion;
//! - `systemd`: a unit over D-Bus, through the shared bus connections;
//! - `docker`: a container over the Engine API, and its event follower;
//! - `exec`: a process Vigil spawns and supervises itself.

pub mod command;
pub mod docker;
pub mod exec;
pub mod systemd;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_checks::ProbeContext;
use vigil_checks::systemd::{JobKind, UnitState};
use vigil_config::model::{CommandDriver, DockerDriver, DriverSpec, ExecDriver, Service};
use vigil_core::lifecycle::{Notify, Op};
use vigil_core::restart_policy::Termination;
use vigil_core::{ServiceName, Signal, Timestamp};

pub use vigil_core::RestartReport;

pub use self::command::run_command;
use self::docker::OwnRestarts;
use self::exec::ExecProcess;
use self::systemd::SystemdUnit;
use crate::guard::Tracker;
use crate::observe::bus::Events;

/// A future a driver hands out.
pub type DriverFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The shared clients drivers are built with: the D-Bus connections (one per bus, shared
/// with the `systemd` checks), where exec services' notify sockets live, and where their
/// events go.
#[derive(Clone)]
pub struct DriverContext {
    pub probes: Arc<ProbeContext>,
    pub state_dir: PathBuf,
    pub events: Events,
    /// Exec services' captured output.
    pub outputs: exec::output::Outputs,
}

/// The acting driver of one service, owned by its actor.
pub enum Driver {
    /// Operations that run to completion with their own deadlines (command, systemd,
    /// docker).
    Remote(Arc<dyn RemoteDriver>),
    /// A process Vigil supervises itself (exec).
    Process(Box<dyn ProcessDriver>),
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Driver::Remote(_) => f.write_str("Driver::Remote"),
            Driver::Process(_) => f.write_str("Driver::Process"),
        }
    }
}

/// A driver whose operations run to completion.
pub trait RemoteDriver: Send + Sync {
    /// Restart, start or stop the service, within the driver's own deadline. `tracker`
    /// (an allowed restart's): report what is started, and hand the restart's lock to
    /// what is spawned.
    fn run(&self, op: Op, tracker: Option<Tracker>) -> DriverFuture<'_, RestartReport>;
    /// Whether the service runs, when the driver can tell.
    fn is_running(&self) -> DriverFuture<'_, Option<bool>>;
    /// Why an automatic restart cannot succeed now, if it cannot (systemd's start limit).
    fn restart_blocked(&self) -> DriverFuture<'_, Option<String>>;
    /// Starts following the driver's own events (Docker's event stream) until `cancel`.
    fn follow(
        &self,
        service: &ServiceName,
        cancel: CancellationToken,
    ) -> Option<mpsc::Receiver<DriverEvent>>;
}

/// What a process driver observed.
#[derive(Debug)]
pub enum ProcessEvent {
    /// The leader exited: call [`ProcessDriver::reap`].
    Exited,
    /// sd_notify messages from the service's own processes.
    Notify(Vec<Notify>),
}

/// A process Vigil spawns and supervises (the edge of `driver = "exec"`).
pub trait ProcessDriver: Send {
    /// Before the first spawn: makes sure no instance left by an earlier Vigil runs.
    fn prepare(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
    /// Spawns the service; the new leader's pid.
    fn spawn(&mut self) -> Result<i32, String>;
    /// Sends `signal` to the process group of `pid` (if it is the current process).
    fn signal(&mut self, pid: i32, signal: Signal);
    /// The next thing the process did (its output is routed on the way).
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<ProcessEvent>;
    /// After [`ProcessEvent::Exited`]: reaps the leader, empties its group, drains its
    /// output; how it ended.
    fn reap(&mut self) -> Pin<Box<dyn Future<Output = Option<Termination>> + Send + '_>>;
    /// What the hung process `pid` is doing.
    fn evidence(&self, pid: i32, since_ping: Duration, interval: Duration) -> String;
    /// Forgets a process that would not die.
    fn abandon(&mut self);
    /// Leaves the process running past Vigil's exit.
    fn detach(&mut self);
    /// Uses a changed definition from the next spawn on.
    fn reconfigure(&mut self, spec: &DriverSpec);
    /// The definition it runs, for the lifecycle's process spec.
    fn exec_spec(&self) -> Option<&ExecDriver>;
}

/// Why a driver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot bind the exec service's NOTIFY_SOCKET: {0}")]
    NotifySocket(std::io::Error),
}

/// Builds a service's acting driver: the one factory.
pub fn build(service: &Service, cx: &DriverContext) -> Result<Driver, BuildError> {
    Ok(match &service.driver {
        DriverSpec::Exec(spec) => Driver::Process(Box::new(ExecProcess::new(
            service.name.clone(),
            spec.clone(),
            &cx.state_dir,
            cx.events.clone(),
            cx.outputs.of(&service.name),
        )?)),
        spec => Driver::Remote(Arc::new(Remote {
            reader: Reader::new(spec, &cx.probes),
            own: Arc::default(),
        })),
    })
}

impl Remote {
    /// What an operation starts, in words (for the ledger: what a dead Vigil left
    /// running).
    fn describe(&self, op: Op) -> String {
        match &self.reader {
            Reader::Command(c) => format!("`{}`", c.restart),
            Reader::Docker(d) => format!("docker {} {}", op.as_str(), d.container),
            Reader::Systemd(u) => format!("systemd {} of {}", op.as_str(), u.spec.unit),
            Reader::Exec => op.as_str().to_owned(),
        }
    }
}

/// The acting side of the command, systemd and docker drivers.
struct Remote {
    reader: Reader,
    /// Docker: what the driver and its event follower share about Vigil's own operations.
    own: Arc<OwnRestarts>,
}

impl RemoteDriver for Remote {
    fn run(&self, op: Op, tracker: Option<Tracker>) -> DriverFuture<'_, RestartReport> {
        Box::pin(async move {
            let tracker = tracker.as_ref();
            if let Some(t) = tracker
                && !matches!(self.reader, Reader::Command(_))
            {
                t.starting(&self.describe(op)).await;
            }
            match (&self.reader, op) {
                (Reader::Command(c), Op::Restart | Op::Repair) => {
                    run_command(&c.restart, c.timeout, tracker).await
                }
                // A command driver without `stop_command` has nothing to run for a stop
                // (its `restart_command` does the work in the start phase).
                (Reader::Command(c), Op::Stop) => match &c.stop {
                    Some(stop) => run_command(stop, c.timeout, tracker).await,
                    None => RestartReport {
                        ok: true,
                        detail: "no stop_command: restarted in the start phase".to_owned(),
                        duration: Duration::ZERO,
                        action_required: None,
                    },
                },
                // `start_command` after a `stop_command`, else `restart_command`.
                (Reader::Command(c), Op::Start) => match (&c.stop, &c.start) {
                    (Some(_), Some(start)) => run_command(start, c.timeout, tracker).await,
                    _ => run_command(&c.restart, c.timeout, tracker).await,
                },
                (Reader::Docker(d), Op::Restart | Op::Repair) => {
                    docker::restart(d, &self.own).await
                }
                (Reader::Docker(d), Op::Stop) => docker::stop(d, &self.own).await,
                (Reader::Docker(d), Op::Start) => docker::start(d, &self.own).await,
                (Reader::Systemd(u), Op::Restart | Op::Repair) => u.restart().await,
                (Reader::Systemd(u), Op::Stop) => u.job(JobKind::Stop).await,
                (Reader::Systemd(u), Op::Start) => u.job(JobKind::Start).await,
                (Reader::Exec, _) => RestartReport {
                    ok: false,
                    detail: "an exec service is driven by its process driver".to_owned(),
                    duration: Duration::ZERO,
                    action_required: None,
                },
            }
        })
    }

    fn is_running(&self) -> DriverFuture<'_, Option<bool>> {
        Box::pin(self.reader.is_running())
    }

    fn restart_blocked(&self) -> DriverFuture<'_, Option<String>> {
        Box::pin(self.reader.restart_blocked())
    }

    fn follow(
        &self,
        service: &ServiceName,
        cancel: CancellationToken,
    ) -> Option<mpsc::Receiver<DriverEvent>> {
        let Reader::Docker(spec) = &self.reader else {
            return None;
        };
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(docker::follow_events(
            service.clone(),
            spec.clone(),
            self.own.clone(),
            tx,
            cancel,
        ));
        Some(rx)
    }
}

/// What a driver's own event source (Docker's event stream) tells the service's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverEvent {
    /// The service died and neither Vigil nor the engine is bringing it back: a restart
    /// request with source `exit`.
    Died,
    /// The service (re)started at this time, whoever started it.
    Started(Option<Timestamp>),
}

/// A read-only look at a service through its driver kind: whether it runs, since when,
/// and what `vigil status` shows. Acts on nothing, so it may be built anywhere.
#[derive(Clone, Debug)]
pub enum Reader {
    Command(CommandDriver),
    Docker(DockerDriver),
    /// The daemon's actor knows an exec service's process; this reader knows nothing.
    Exec,
    Systemd(SystemdUnit),
}

/// What one-shot commands say about an exec service: the running daemon owns its process.
pub const EXEC_OWNED_BY_DAEMON: &str = "exec services are supervised by `vigil run`, which owns their processes; this command cannot act on one without the daemon's control socket";

impl Reader {
    /// `cx` provides the shared D-Bus connections of the systemd driver.
    pub fn new(spec: &DriverSpec, cx: &ProbeContext) -> Reader {
        match spec {
            DriverSpec::Command(c) => Reader::Command(c.clone()),
            DriverSpec::Docker(d) => Reader::Docker(d.clone()),
            DriverSpec::Exec(_) => Reader::Exec,
            DriverSpec::Systemd(s) => Reader::Systemd(SystemdUnit {
                spec: s.clone(),
                buses: cx.buses().clone(),
            }),
        }
    }

    /// Whether the service runs, when the driver can tell (`status_command`; a unit's
    /// `ActiveState`).
    pub async fn is_running(&self) -> Option<bool> {
        match self {
            Reader::Command(c) => {
                let status = c.status.as_ref()?;
                Some(run_command(status, c.timeout, None).await.ok)
            }
            Reader::Docker(d) => docker::inspect(d).await.ok().map(|s| s.running),
            Reader::Exec => None,
            Reader::Systemd(u) => u.state().await.ok().map(|s| s.is_active()),
        }
    }

    /// When the running instance started, for `grace`: `None` when the driver cannot tell
    /// (Vigil's own record of its last restart is used then), `Some(None)` when the service
    /// is not running. Docker: the container's `State.StartedAt`; systemd: the unit's
    /// `ActiveEnterTimestamp`, so restarts by anyone (systemctl, `Restart=`, Docker's own
    /// policy) count.
    pub async fn started_at(&self) -> Option<Option<Timestamp>> {
        match self {
            Reader::Command(_) | Reader::Exec => None,
            Reader::Docker(d) => {
                let state = docker::inspect(d).await.ok()?;
                Some(state.started_at.filter(|_| state.running))
            }
            Reader::Systemd(u) => {
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
            Reader::Command(_) | Reader::Exec | Reader::Systemd(_) => None,
            Reader::Docker(d) => Some(match docker::inspect(d).await {
                Ok(state) => state.describe(),
                Err(e) => e,
            }),
        }
    }

    /// Why an automatic restart must not be attempted now, if it must not: the unit sits
    /// in `failed` with `Result=start-limit-hit` (systemd refuses to start it until someone
    /// resets it), unless the driver resets it itself (`reset_failed = true`).
    pub async fn restart_blocked(&self) -> Option<String> {
        let Reader::Systemd(u) = self else {
            return None;
        };
        if u.spec.reset_failed {
            return None;
        }
        let state = u.state().await.ok()?;
        (state.active_state == "failed" && state.result.as_deref() == Some(systemd::START_LIMIT_HIT))
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
            Reader::Command(_) | Reader::Docker(..) | Reader::Exec => None,
            Reader::Systemd(u) => Some(u.state().await),
        }
    }
}
