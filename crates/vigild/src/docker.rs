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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use vigil_checks::probe::docker::{api, negotiate, socket_path};
use vigil_config::model::DockerDriver;
use vigil_core::{RestartRequest, ServiceName, Source, Timestamp};

use crate::clock;
use crate::daemon::ServiceMsg;
use crate::driver::RestartReport;

/// What the daemon and the driver share about one container: whether Vigil itself is
/// restarting it right now, so the `die` event of its own restart is not mistaken for a
/// crash.
#[derive(Debug, Default)]
pub struct OwnRestarts {
    in_flight: AtomicBool,
    /// Unix nanoseconds when the last restart Vigil made finished.
    last_done_ns: AtomicI64,
}

impl OwnRestarts {
    /// Whether an event at `time_ns` belongs to a restart Vigil made.
    fn covers(&self, time_ns: i64) -> bool {
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

fn socket(d: &DockerDriver) -> PathBuf {
    socket_path(d.docker_host.as_deref())
}

fn unreachable(socket: &Path, e: &io::Error) -> String {
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

/// How long after a `die` the loop waits for the `stop` that marks a deliberate
/// `docker stop` (which Vigil leaves alone).
const STOP_FOLLOWS_WITHIN: Duration = Duration::from_millis(200);
/// Pause before reconnecting to a daemon that went away.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Follows the engine's events for one container until `cancel`: a `die` that is neither
/// Vigil's own restart, nor a deliberate `docker stop`, nor handled by Docker's own restart
/// policy becomes a restart request with source `exit`; a `start` updates the uptime.
pub async fn follow_events(
    service: ServiceName,
    d: DockerDriver,
    own: Arc<OwnRestarts>,
    tx: mpsc::Sender<ServiceMsg>,
    started: watch::Sender<Option<Timestamp>>,
    cancel: CancellationToken,
) {
    let mut warned = false;
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = follow_once(&service, &d, &own, &tx, &started) => r,
        };
        if let Err(error) = result {
            if !warned {
                tracing::warn!(service = %service, event = "docker_events_lost", "cannot follow docker events for container {}: {error}; retrying every {}", d.container, vigil_core::format_duration(RECONNECT_DELAY));
                warned = true;
            }
        } else {
            warned = false;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
}

/// One event-stream connection; returns when the daemon closes it.
async fn follow_once(
    service: &ServiceName,
    d: &DockerDriver,
    own: &OwnRestarts,
    tx: &mpsc::Sender<ServiceMsg>,
    started: &watch::Sender<Option<Timestamp>>,
) -> Result<(), String> {
    let socket = socket(d);
    let version = negotiate(&socket).await?;
    let filters = serde_json::json!({
        "type": ["container"],
        "container": [d.container],
        "event": ["die", "stop", "start"],
    })
    .to_string();
    let path = format!("/v{version}/events?filters={}", api::segment(&filters));
    let mut events = EventStream::open(&socket, &path)
        .await
        .map_err(|e| unreachable(&socket, &e))?;
    // The stream is live from here: catch up on what happened while it was not.
    if let Ok(state) = inspect(d).await
        && state.running
    {
        let at = state.started_at;
        started.send_if_modified(|v| std::mem::replace(v, at) != at);
    }
    tracing::debug!(service = %service, "following docker events for {}", d.container);
    loop {
        let Some(event) = events.next().await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let action = event["Action"].as_str().unwrap_or_default();
        let time_ns = event["timeNano"].as_i64().unwrap_or(0);
        match action {
            "start" => {
                let at = Some(Timestamp::from_millis(time_ns / 1_000_000));
                started.send_if_modified(|v| std::mem::replace(v, at) != at);
            }
            "die" => {
                let code = event["Actor"]["Attributes"]["exitCode"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                if own.covers(time_ns) {
                    tracing::debug!(service = %service, "container {} died during Vigil's own restart", d.container);
                    continue;
                }
                // How long after Docker stamped the event Vigil had it (same host clock).
                let seen_after_us = (clock::now().as_millis().saturating_mul(1000))
                    .saturating_sub(time_ns / 1000)
                    .max(0);
                tracing::warn!(service = %service, event = "container_died", exit_code = %code,
                    seen_after_us,
                    "container {} died (exit code {code})", d.container);
                // A deliberate `docker stop` is followed by its `stop` event at once.
                let stopped = tokio::time::timeout(STOP_FOLLOWS_WITHIN, async {
                    loop {
                        match events.next().await {
                            Ok(Some(e)) if e["Action"] == "stop" => return true,
                            Ok(Some(_)) => {}
                            _ => return false,
                        }
                    }
                })
                .await
                .unwrap_or(false);
                if stopped {
                    tracing::info!(service = %service, event = "container_stopped",
                        "container {} was stopped on purpose (docker stop): not restarting it", d.container);
                    continue;
                }
                let policy = inspect(d)
                    .await
                    .map(|s| s.restart_policy)
                    .unwrap_or_default();
                if matches!(policy.as_str(), "always" | "unless-stopped" | "on-failure") {
                    tracing::info!(service = %service, event = "container_died_docker_restarts",
                        "container {} has restart policy {policy:?}: Docker restarts it, Vigil does not", d.container);
                    continue;
                }
                let msg = ServiceMsg::Restart {
                    request: RestartRequest::new(Source::Exit),
                    repair: None,
                    reply: None,
                };
                if tx.send(msg).await.is_err() {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
}

/// A streaming `GET` whose body is a sequence of JSON objects (chunked or not).
struct EventStream {
    reader: BufReader<UnixStream>,
    chunked: bool,
    /// Bytes left in the current chunk.
    chunk_left: usize,
    line: Vec<u8>,
}

/// The longest event accepted; a daemon sending more is broken.
const MAX_EVENT: usize = 1 << 20;

impl EventStream {
    async fn open(socket: &Path, path: &str) -> io::Result<EventStream> {
        let mut stream = UnixStream::connect(socket).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: vigil\r\n\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).await?;
        let status = status_line.split(' ').nth(1).unwrap_or_default().to_owned();
        let mut chunked = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "no response head",
                ));
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("transfer-encoding")
            {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
        if status != "200" {
            return Err(io::Error::other(format!(
                "GET /events answered {}",
                status_line.trim_end()
            )));
        }
        Ok(EventStream {
            reader,
            chunked,
            chunk_left: 0,
            line: Vec::new(),
        })
    }

    /// The next event; `None` when the daemon closed the stream.
    async fn next(&mut self) -> io::Result<Option<Value>> {
        loop {
            if let Some(end) = self.line.iter().position(|b| *b == b'\n') {
                let rest = self.line.split_off(end + 1);
                let line = std::mem::replace(&mut self.line, rest);
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                return serde_json::from_str(text)
                    .map(Some)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if self.line.len() > MAX_EVENT {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "event too long"));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Appends more body bytes to `line`; false at the end of the stream.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.chunked && self.chunk_left == 0 {
            let mut size = String::new();
            if self.reader.read_line(&mut size).await? == 0 {
                return Ok(false);
            }
            let size = size.trim();
            if size.is_empty() {
                // The CRLF that ends the previous chunk.
                return Ok(true);
            }
            let hex = size.split(';').next().unwrap_or_default();
            self.chunk_left = usize::from_str_radix(hex, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if self.chunk_left == 0 {
                return Ok(false);
            }
        }
        let mut buf = [0u8; 8192];
        let want = if self.chunked {
            self.chunk_left.min(buf.len())
        } else {
            buf.len()
        };
        let n = self.reader.read(&mut buf[..want]).await?;
        if n == 0 {
            return Ok(false);
        }
        if self.chunked {
            self.chunk_left -= n;
        }
        self.line.extend_from_slice(&buf[..n]);
        Ok(true)
    }
}
