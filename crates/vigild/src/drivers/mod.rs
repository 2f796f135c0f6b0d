//! Drivers: how a service is restarted, stopped and started, and how long it has been up.
//!
//! Drivers act and report typed outcomes ([`RestartReport`]); they never retry and never
//! decide. Every restart reaches a driver only through the guard (`guard/`).
//!
//! - `command`: the user's argv commands (`restart_command`, ...), through the one spawn
//!   site for commands that run to completion;
//! - `systemd`: a unit over D-Bus, through the shared connections of the [`ProbeContext`];
//! - `docker`: a container over the Engine API, and its event follower;
//! - `exec`: the pieces of native supervision (spawn, pidfds, pipes, the notify socket).

pub mod command;
pub mod docker;
pub mod exec;
pub mod systemd;

use std::sync::Arc;
use std::time::Duration;

use vigil_checks::ProbeContext;
use vigil_checks::systemd::{JobKind, UnitState};
use vigil_config::model::{CommandDriver, DockerDriver, DriverSpec};
use vigil_core::Timestamp;

pub use vigil_core::RestartReport;

pub use self::command::run_command;
use self::docker::OwnRestarts;
use self::systemd::SystemdUnit;

/// What a driver's own event source (Docker's event stream) tells the service's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverEvent {
    /// The service died and neither Vigil nor the engine is bringing it back: a restart
    /// request with source `exit`.
    Died,
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

/// What one-shot commands say about an exec service: the running daemon owns its process.
pub const EXEC_OWNED_BY_DAEMON: &str = "exec services are supervised by `vigil run`, which owns their processes; this command cannot act on one without the daemon's control socket";

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
