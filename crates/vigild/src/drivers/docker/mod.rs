//! `driver = "docker"`: a container driven through the Docker Engine API on its unix
//! socket (the `docker` check's client, `vigil_checks::probe::docker`, with version
//! negotiation), and the event stream that reports a container's death at once.
//!
//! Owns: restart (`POST /containers/{c}/restart?t=`), inspection (state, health, exit code,
//! restart count, `StartedAt` for uptime), and following `/events` for one container.
//! Must not: decide restarts — a death becomes a request with source `exit` to the
//! service's actor, which goes through the guard like any other.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use serde_json::Value;
use vigil_checks::probe::docker::{api, negotiate, socket_path};
use vigil_config::model::DockerDriver;
use vigil_core::Timestamp;

use crate::drivers::RestartReport;
use crate::platform::clock;

mod events;
pub use events::follow_events;

/// What the daemon and the driver share about one container: whether Vigil itself is
/// restarting it right now, so the `die` event of its own restart is not mistaken for a
/// crash.
#[derive(Debug, Default)]
pub struct OwnRestarts {
    pub(super) in_flight: AtomicBool,
    /// Unix nanoseconds when the last restart Vigil made finished.
    pub(super) last_done_ns: AtomicI64,
}

impl OwnRestarts {
    /// Whether an event at `time_ns` belongs to a restart Vigil made.
    pub(super) fn covers(&self, time_ns: i64) -> bool {
        self.in_flight.load(Ordering::SeqCst) || time_ns <= self.last_done_ns.load(Ordering::SeqCst)
    }
}

/// A container's state, as `vigil status` and the guard's grace need it.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerState {
    pub running: bool,
    /// `running`, `exited`, `restarting`, ...
    pub status: String,
    pub health: Option<String>,
    pub exit_code: i64,
    pub restart_count: i64,
    pub started_at: Option<Timestamp>,
    /// `HostConfig.RestartPolicy.Name` (`no`, `always`, `unless-stopped`, `on-failure`).
    pub restart_policy: String,
}

impl ContainerState {
    /// One line for `vigil status`.
    pub fn describe(&self) -> String {
        let mut s = self.status.clone();
        if let Some(h) = &self.health {
            s.push_str(&format!(" ({h})"));
        }
        if !self.running {
            s.push_str(&format!(", exit code {}", self.exit_code));
        }
        if let Some(t) = self.started_at {
            s.push_str(&format!(", started {t}"));
        }
        s.push_str(&format!(", docker restarts {}", self.restart_count));
        s
    }
}

pub(super) fn socket(d: &DockerDriver) -> PathBuf {
    socket_path(d.docker_host.as_deref())
}

pub(super) fn unreachable(socket: &Path, e: &io::Error) -> String {
    format!("docker daemon not reachable at {}: {e}", socket.display())
}

/// `GET /containers/{c}/json`, reduced to what Vigil uses.
pub async fn inspect(d: &DockerDriver) -> Result<ContainerState, String> {
    let socket = socket(d);
    let version = negotiate(&socket).await?;
    let path = format!("/v{version}/containers/{}/json", api::segment(&d.container));
    let (status, body) = api::request(&socket, "GET", &path, None)
        .await
        .map_err(|e| unreachable(&socket, &e))?;
    match status {
        200 => {}
        404 => return Err(format!("no such container: {}", d.container)),
        _ => {
            return Err(format!(
                "inspecting container {}: {status} {}",
                d.container,
                api::error_message(&body)
            ));
        }
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("inspecting container {}: invalid JSON: {e}", d.container))?;
    let state = &v["State"];
    Ok(ContainerState {
        running: state["Running"].as_bool().unwrap_or(false),
        status: state["Status"].as_str().unwrap_or("unknown").to_owned(),
        health: state["Health"]["Status"]
            .as_str()
            .filter(|s| !s.is_empty() && *s != "none")
            .map(str::to_owned),
        exit_code: state["ExitCode"].as_i64().unwrap_or(0),
        restart_count: v["RestartCount"].as_i64().unwrap_or(0),
        started_at: state["StartedAt"]
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            // Docker's zero time ("0001-01-01T00:00:00Z") means never started.
            .filter(|t| t.as_second() > 0)
            .map(Timestamp::from_jiff),
        restart_policy: v["HostConfig"]["RestartPolicy"]["Name"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("no")
            .to_owned(),
    })
}

/// Restarts the container (Docker stops it with `stop_timeout`, then starts it) and
/// reports how it went and in what state it came back.
pub async fn restart(d: &DockerDriver, own: &OwnRestarts) -> RestartReport {
    let secs = d.stop_timeout.as_secs();
    own_op(
        d,
        own,
        &format!("restart {} (t={secs}s)", d.container),
        &format!("restart?t={secs}"),
        true,
    )
    .await
}

/// Stops the container (a group restart's stop phase), as Vigil's own act.
pub async fn stop(d: &DockerDriver, own: &OwnRestarts) -> RestartReport {
    own_op(
        d,
        own,
        &format!("stop {}", d.container),
        &format!("stop?t={}", d.stop_timeout.as_secs()),
        false,
    )
    .await
}

/// Starts the container (a group restart's start phase).
pub async fn start(d: &DockerDriver, own: &OwnRestarts) -> RestartReport {
    own_op(d, own, &format!("start {}", d.container), "start", true).await
}

/// `POST /containers/{c}/{op}` (restart, stop, start), marked as Vigil's own so its
/// events are not deaths; 304 (already stopped/started) counts as done. `what` names the
/// operation in the report ("restart kms (t=10s)").
async fn own_op(
    d: &DockerDriver,
    own: &OwnRestarts,
    what: &str,
    op: &str,
    want_running: bool,
) -> RestartReport {
    let started = tokio::time::Instant::now();
    own.in_flight.store(true, Ordering::SeqCst);
    let result = async {
        let socket = socket(d);
        let version = negotiate(&socket).await?;
        let path = format!("/v{version}/containers/{}/{op}", api::segment(&d.container));
        let (status, body) = api::request(&socket, "POST", &path, None)
            .await
            .map_err(|e| unreachable(&socket, &e))?;
        match status {
            204 | 304 => inspect(d).await,
            404 => Err(format!("no such container: {}", d.container)),
            _ => Err(format!("{status} {}", api::error_message(&body))),
        }
    }
    .await;
    own.last_done_ns.store(
        clock::now().as_millis().saturating_mul(1_000_000),
        Ordering::SeqCst,
    );
    own.in_flight.store(false, Ordering::SeqCst);
    let duration = started.elapsed();
    let took = vigil_core::format_duration(duration);
    match result {
        Ok(state) if state.running == want_running => RestartReport {
            ok: true,
            detail: format!("docker {what} in {took}: {}", state.describe()),
            duration,
            action_required: None,
        },
        Ok(state) => RestartReport {
            ok: false,
            detail: format!("docker {what} in {took}, but it is {}", state.describe()),
            duration,
            action_required: None,
        },
        Err(e) => RestartReport {
            ok: false,
            detail: format!("docker {what}: {e}"),
            duration,
            action_required: None,
        },
    }
}
