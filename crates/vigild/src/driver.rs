//! Drivers: how a service is restarted and how long it has been up.
//!
//! Drivers act and report typed outcomes ([`RestartReport`]); they never retry and never
//! decide. Every restart reaches a driver only through the guard (`guard.rs`).

use std::sync::Arc;
use std::time::Duration;

use vigil_checks::process::{self, Exit, Leftovers, RunSpec};
use vigil_config::model::{Argv, CommandDriver, DockerDriver, DriverSpec};
use vigil_core::Timestamp;

use crate::docker::{self, OwnRestarts};

/// How one restart (or repair command) went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartReport {
    pub ok: bool,
    /// One line: what ran and how it ended ("`systemctl restart x`: exit code 0 in 1.2s").
    pub detail: String,
    pub duration: Duration,
}

/// A service's driver, built from its validated spec.
#[derive(Clone, Debug)]
pub enum Driver {
    Command(CommandDriver),
    /// The container, and what the driver and the event follower share about it.
    Docker(DockerDriver, Arc<OwnRestarts>),
    /// Owned by `vigil run`'s supervisor (`exec/`): a one-shot process cannot restart it.
    Exec,
}

/// What one-shot commands say about an exec service: the running daemon owns its process.
pub const EXEC_OWNED_BY_DAEMON: &str = "exec services are supervised by `vigil run`, which owns their processes; this command cannot act on one without the daemon's control socket";

impl Driver {
    pub fn new(spec: &DriverSpec) -> Driver {
        match spec {
            DriverSpec::Command(c) => Driver::Command(c.clone()),
            DriverSpec::Docker(d) => Driver::Docker(d.clone(), Arc::default()),
            DriverSpec::Exec(_) => Driver::Exec,
        }
    }

    /// Restarts the service and waits for the driver's own deadline.
    pub async fn restart(&self) -> RestartReport {
        match self {
            Driver::Command(c) => run_command(&c.restart, c.timeout).await,
            Driver::Docker(d, own) => docker::restart(d, own).await,
            Driver::Exec => exec_not_here(),
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
                },
            },
            Driver::Docker(d, own) => docker::stop(d, own).await,
            Driver::Exec => exec_not_here(),
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
        }
    }

    /// Whether the service runs, when the driver can tell (`status_command`).
    pub async fn is_running(&self) -> Option<bool> {
        match self {
            Driver::Command(c) => {
                let status = c.status.as_ref()?;
                Some(run_command(status, c.timeout).await.ok)
            }
            Driver::Docker(d, _) => docker::inspect(d).await.ok().map(|s| s.running),
            Driver::Exec => None,
        }
    }

    /// When the service's current instance started, when the driver knows (Docker's
    /// `State.StartedAt`); `None`: the daemon uses the last restart in the ledger.
    pub async fn started_at(&self) -> Option<Timestamp> {
        match self {
            Driver::Command(_) | Driver::Exec => None,
            Driver::Docker(d, _) => docker::inspect(d)
                .await
                .ok()
                .filter(|s| s.running)
                .and_then(|s| s.started_at),
        }
    }

    /// The driver's own view of the service for `vigil status` (the container's state,
    /// health, exit code and restart count), or why it could not be read.
    pub async fn detail(&self) -> Option<String> {
        match self {
            Driver::Command(_) | Driver::Exec => None,
            Driver::Docker(d, _) => Some(match docker::inspect(d).await {
                Ok(state) => state.describe(),
                Err(e) => e,
            }),
        }
    }
}

/// What a driver operation on an exec service outside its supervisor reports.
fn exec_not_here() -> RestartReport {
    RestartReport {
        ok: false,
        detail: EXEC_OWNED_BY_DAEMON.to_owned(),
        duration: Duration::ZERO,
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
