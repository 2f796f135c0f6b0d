//! Following a container's events: a death that is neither Vigil's own restart, nor a
//! deliberate `docker stop`, nor handled by Docker's own restart policy is reported to the
//! service's owner as a [`DriverEvent::Died`]; a `start` updates the uptime.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_checks::probe::docker::{api, negotiate};
use vigil_config::model::DockerDriver;
use vigil_core::{ServiceName, Timestamp};

use super::{OwnRestarts, inspect, socket, unreachable};
use crate::drivers::DriverEvent;
use crate::platform::clock;

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
    tx: mpsc::Sender<DriverEvent>,
    cancel: CancellationToken,
) {
    let mut warned = false;
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = follow_once(&service, &d, &own, &tx) => r,
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
    tx: &mpsc::Sender<DriverEvent>,
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
        let _ = tx.send(DriverEvent::Started(state.started_at)).await;
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
                if tx.send(DriverEvent::Started(at)).await.is_err() {
                    return Ok(());
                }
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
                if tx.send(DriverEvent::Died).await.is_err() {
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
