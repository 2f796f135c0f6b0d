//! `kind = "docker"`: `GET /containers/{name}/json` from the Docker Engine API over its
//! unix socket; passes when the container runs and, when required, its HEALTHCHECK says
//! `healthy`.
//!
//! Owns: resolving the socket (`docker_host`, `$DOCKER_HOST` at probe time, the default
//! socket), API version negotiation (cached per socket), and the container-state reasons.
//! Must not: talk to anything but a unix socket, or read more than [`api::MAX_BODY`] of a
//! response.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use vigil_core::format_duration;

use super::{Verdict, first_line};
use crate::model::DockerCheck;

/// The socket used when neither `docker_host` nor a `unix://` `$DOCKER_HOST` is set.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The newest Engine API version this client speaks; older daemons are used at theirs.
const MAX_API_VERSION: (u32, u32) = (1, 45);

pub(super) fn label(check: &DockerCheck) -> String {
    format!("docker {}", check.container)
}

/// The daemon's socket for `docker_host`: the URL's path, else `$DOCKER_HOST` when it is a
/// `unix://` URL, else [`DEFAULT_SOCKET`]. Read at probe time, so a daemon restarted with a
/// new environment is followed.
pub fn socket_path(docker_host: Option<&str>) -> PathBuf {
    let env = std::env::var("DOCKER_HOST").ok();
    let url = docker_host.or(env.as_deref().filter(|h| h.starts_with("unix://")));
    match url.and_then(|u| u.strip_prefix("unix://")) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

/// A minimal Docker Engine API client: one HTTP/1.1 request per connection over the unix
/// socket. Used by the `docker` check and the tests; also meant for the docker driver.
pub mod api {
    use std::io;
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    /// The largest response body read; larger ones are an error.
    pub const MAX_BODY: usize = 4 << 20;
    const MAX_HEAD: usize = 64 << 10;

    /// Sends `method path` (with a JSON `body`, if any) to the daemon at `socket` and
    /// returns the status code and the decoded body (chunked transfer-encoding undone).
    /// `path` is sent as is: include the `/v1.NN` prefix and any query.
    ///
    /// Errors are connection problems (`ConnectionRefused`, `NotFound` for a missing
    /// socket, ...) and malformed or oversized responses (`InvalidData`).
    pub async fn request(
        socket: &Path,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> io::Result<(u16, Vec<u8>)> {
        let mut stream = UnixStream::connect(socket).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: vigil\r\nAccept: application/json\r\nConnection: close\r\n"
        );
        match body {
            Some(b) => req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )),
            None if method != "GET" && method != "HEAD" => req.push_str("Content-Length: 0\r\n"),
            None => {}
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        if let Some(b) = body {
            out.extend_from_slice(b);
        }
        stream.write_all(&out).await?;

        let mut raw = Vec::new();
        let limit = (MAX_HEAD + MAX_BODY + 64 * 1024) as u64;
        (&mut stream).take(limit + 1).read_to_end(&mut raw).await?;
        if raw.len() as u64 > limit {
            return Err(invalid(format!(
                "response larger than {} MiB",
                MAX_BODY >> 20
            )));
        }
        parse_response(&raw)
    }

    fn invalid(msg: impl Into<String>) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, msg.into())
    }

    /// Splits a complete HTTP/1.x response (read to EOF) into status and body.
    pub(crate) fn parse_response(raw: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        let head_end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .filter(|&p| p <= MAX_HEAD)
            .ok_or_else(|| {
                if raw.is_empty() {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "empty response")
                } else {
                    invalid("malformed HTTP response head")
                }
            })?;
        let head = String::from_utf8_lossy(&raw[..head_end]);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.split(' ');
        let version = parts.next().unwrap_or_default();
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let mut chunked = false;
        let mut length = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            }
        }
        let rest = &raw[head_end + 4..];
        let body = if chunked {
            dechunk(rest)?
        } else if let Some(n) = length {
            if rest.len() < n {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "response body shorter than Content-Length",
                ));
            }
            rest[..n].to_vec()
        } else {
            rest.to_vec()
        };
        if body.len() > MAX_BODY {
            return Err(invalid(format!(
                "response larger than {} MiB",
                MAX_BODY >> 20
            )));
        }
        Ok((status, body))
    }

    fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| invalid("truncated chunked body"))?;
            let size_text = String::from_utf8_lossy(&rest[..eol]);
            let size_hex = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| invalid(format!("bad chunk size {size_hex:?}")))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                return Ok(body);
            }
            if rest.len() < size + 2 || body.len() + size > MAX_BODY {
                return Err(invalid(if rest.len() < size + 2 {
                    "truncated chunked body".to_owned()
                } else {
                    format!("response larger than {} MiB", MAX_BODY >> 20)
                }));
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }

    /// The daemon's `{"message": ...}` from an error body, or the body's first line.
    pub fn error_message(body: &[u8]) -> String {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .or_else(|| super::first_line(body, 200))
            .unwrap_or_else(|| "(empty body)".to_owned())
    }

    /// Percent-encodes a path segment (container names and ids are plain already).
    pub fn segment(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
}

fn versions() -> &'static Mutex<HashMap<PathBuf, String>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The API version to use with the daemon at `socket`: its `ApiVersion` from `/version`,
/// capped at [`MAX_API_VERSION`]. Cached per socket.
pub async fn negotiate(socket: &Path) -> Result<String, String> {
    if let Some(v) = versions().lock().ok().and_then(|m| m.get(socket).cloned()) {
        return Ok(v);
    }
    let (status, body) = api::request(socket, "GET", "/version", None)
        .await
        .map_err(|e| unreachable(socket, &e))?;
    if status != 200 {
        return Err(format!(
            "docker daemon at {}: GET /version: {status} {}",
            socket.display(),
            api::error_message(&body)
        ));
    }
    let server = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("ApiVersion")?.as_str().and_then(parse_version));
    let (major, minor) = match server {
        Some(v) if v < MAX_API_VERSION => v,
        Some(_) => MAX_API_VERSION,
        None => {
            return Err(format!(
                "docker daemon at {}: /version has no ApiVersion",
                socket.display()
            ));
        }
    };
    let version = format!("{major}.{minor}");
    if let Ok(mut m) = versions().lock() {
        m.insert(socket.to_owned(), version.clone());
    }
    Ok(version)
}

fn forget_version(socket: &Path) {
    if let Ok(mut m) = versions().lock() {
        m.remove(socket);
    }
}

fn unreachable(socket: &Path, err: &std::io::Error) -> String {
    let why = match err.kind() {
        std::io::ErrorKind::NotFound => "no such socket".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => super::describe_io(err),
    };
    format!("docker daemon not reachable at {}: {why}", socket.display())
}

pub(super) async fn probe(check: &DockerCheck) -> Verdict {
    let socket = socket_path(check.docker_host.as_deref());
    let version = negotiate(&socket).await?;
    let path = format!(
        "/v{version}/containers/{}/json",
        api::segment(&check.container)
    );
    let (status, body) = match api::request(&socket, "GET", &path, None).await {
        Ok(r) => r,
        Err(e) => {
            forget_version(&socket);
            return Err(unreachable(&socket, &e));
        }
    };
    match status {
        200 => {}
        404 => return Err(format!("no such container: {}", check.container)),
        _ => {
            // A daemon downgraded under us rejects the cached version: ask again next time.
            forget_version(&socket);
            return Err(format!(
                "docker daemon at {}: inspecting {}: {status} {}",
                socket.display(),
                check.container,
                api::error_message(&body)
            ));
        }
    }
    let inspect: Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "docker daemon at {}: inspecting {}: invalid JSON: {e}",
            socket.display(),
            check.container
        )
    })?;
    judge(check, &inspect, wall_now())
}

/// The wall clock: `State.StartedAt` is a wall-clock date, and the uptime is only shown.
#[expect(
    clippy::disallowed_methods,
    reason = "the container's StartedAt is a wall-clock date; the uptime in the reason compares it to now"
)]
fn wall_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// The verdict for one `containers/{name}/json` answer.
fn judge(check: &DockerCheck, inspect: &Value, now: jiff::Timestamp) -> Verdict {
    let name = &check.container;
    let state = &inspect["State"];
    let status = state["Status"].as_str().unwrap_or("unknown");
    let running = state["Running"].as_bool().unwrap_or(false);
    if state["Restarting"].as_bool() == Some(true) || status == "restarting" {
        return Err(format!("container {name} is restarting"));
    }
    if state["Paused"].as_bool() == Some(true) || status == "paused" {
        return Err(format!("container {name} is paused"));
    }
    if !running {
        let mut reason = format!("container {name} is {status}");
        if matches!(status, "exited" | "dead") {
            let code = state["ExitCode"].as_i64().unwrap_or(0);
            let oom = state["OOMKilled"].as_bool().unwrap_or(false);
            reason.push_str(&format!(" (exit code {code}, OOMKilled {oom})"));
        }
        if let Some(err) = state["Error"].as_str().filter(|e| !e.is_empty()) {
            reason.push_str(&format!(
                ": {}",
                first_line(err.as_bytes(), 200).unwrap_or_default()
            ));
        }
        return Err(reason);
    }

    let health = state["Health"]["Status"]
        .as_str()
        .filter(|s| !s.is_empty() && *s != "none");
    let required = check.require_healthy.unwrap_or(health.is_some());
    let uptime = state["StartedAt"]
        .as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .and_then(|started| {
            // Whole seconds, rounded: StartedAt has nanoseconds.
            let secs = (now.duration_since(started).as_millis() + 500) / 1000;
            let secs = u64::try_from(secs).ok()?;
            Some(format_duration(Duration::from_secs(secs)))
        });
    let running_for = match &uptime {
        Some(u) => format!("container {name} running for {u}"),
        None => format!("container {name} running"),
    };
    match (health, required) {
        (None, false) => Ok(running_for),
        (None, true) => Err(format!(
            "container {name} is running but has no HEALTHCHECK (require_healthy = true)"
        )),
        (Some("healthy"), _) => Ok(format!("{running_for} (healthy)")),
        (Some(h), false) => Ok(format!("{running_for} (health: {h}, not required)")),
        (Some("starting"), true) => Err(format!("container {name} is starting (health: starting)")),
        (Some("unhealthy"), true) => {
            let last = state["Health"]["Log"]
                .as_array()
                .and_then(|log| log.last())
                .map(|entry| {
                    let output = entry["Output"].as_str().unwrap_or_default();
                    match first_line(output.as_bytes(), 200) {
                        Some(line) => line,
                        None => format!(
                            "exit code {}, no output",
                            entry["ExitCode"].as_i64().unwrap_or(-1)
                        ),
                    }
                });
            match last {
                Some(last) => Err(format!(
                    "container {name} is running but unhealthy (last check: {last})"
                )),
                None => Err(format!("container {name} is running but unhealthy")),
            }
        }
        (Some(h), true) => Err(format!("container {name} is running but its health is {h}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(require_healthy: Option<bool>) -> DockerCheck {
        DockerCheck {
            container: "kms-production".to_owned(),
            require_healthy,
            docker_host: None,
        }
    }

    fn now() -> jiff::Timestamp {
        "2024-05-01T12:03:00Z"
            .parse()
            .unwrap_or_else(|_| unreachable!())
    }

    fn inspect(json: &str) -> Value {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn exited_reports_code_and_oom() {
        let v = inspect(
            r#"{"State":{"Status":"exited","Running":false,"ExitCode":137,"OOMKilled":false}}"#,
        );
        assert_eq!(
            judge(&check(None), &v, now()),
            Err("container kms-production is exited (exit code 137, OOMKilled false)".to_owned())
        );
    }

    #[test]
    fn running_with_and_without_health() {
        let healthy = inspect(
            r#"{"State":{"Status":"running","Running":true,"StartedAt":"2024-05-01T12:00:00.123456789Z","Health":{"Status":"healthy","Log":[]}}}"#,
        );
        assert_eq!(
            judge(&check(None), &healthy, now()),
            Ok("container kms-production running for 180s (healthy)".to_owned())
        );
        let plain = inspect(
            r#"{"State":{"Status":"running","Running":true,"StartedAt":"2024-05-01T11:00:00Z"}}"#,
        );
        assert_eq!(
            judge(&check(None), &plain, now()),
            Ok("container kms-production running for 1h 3m".to_owned())
        );
        assert!(judge(&check(Some(true)), &plain, now()).is_err());
    }

    #[test]
    fn unhealthy_shows_last_output_unless_not_required() {
        let v = inspect(
            r#"{"State":{"Status":"running","Running":true,"StartedAt":"2024-05-01T12:02:00Z","Health":{"Status":"unhealthy","Log":[{"ExitCode":1,"Output":"old"},{"ExitCode":1,"Output":"  curl: (7) refused\n"}]}}}"#,
        );
        assert_eq!(
            judge(&check(None), &v, now()),
            Err(
                "container kms-production is running but unhealthy (last check: curl: (7) refused)"
                    .to_owned()
            )
        );
        assert_eq!(
            judge(&check(Some(false)), &v, now()),
            Ok(
                "container kms-production running for 60s (health: unhealthy, not required)"
                    .to_owned()
            )
        );
        let starting = inspect(
            r#"{"State":{"Status":"running","Running":true,"Health":{"Status":"starting"}}}"#,
        );
        assert_eq!(
            judge(&check(None), &starting, now()),
            Err("container kms-production is starting (health: starting)".to_owned())
        );
    }

    #[test]
    fn restarting_and_paused_fail() {
        let v = inspect(r#"{"State":{"Status":"restarting","Running":true,"Restarting":true}}"#);
        assert_eq!(
            judge(&check(None), &v, now()),
            Err("container kms-production is restarting".to_owned())
        );
        let v = inspect(r#"{"State":{"Status":"paused","Running":true,"Paused":true}}"#);
        assert!(judge(&check(None), &v, now()).is_err());
    }

    #[test]
    fn responses_are_parsed_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(api::parse_response(plain).ok(), Some((200, b"{}".to_vec())));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(
            api::parse_response(chunked).ok(),
            Some((404, br#"{"a":1}"#.to_vec()))
        );
        assert!(
            api::parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .is_err()
        );
        assert!(api::parse_response(b"garbage").is_err());
        assert_eq!(
            api::error_message(br#"{"message":"No such container: x"}"#),
            "No such container: x"
        );
    }

    #[test]
    fn versions_are_capped() {
        assert_eq!(parse_version("1.41"), Some((1, 41)));
        assert!(parse_version("1.41") < Some(MAX_API_VERSION));
        assert!(parse_version("1.47") > Some(MAX_API_VERSION));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn docker_host_wins_over_the_default() {
        assert_eq!(
            socket_path(Some("unix:///run/d.sock")),
            PathBuf::from("/run/d.sock")
        );
    }
}
