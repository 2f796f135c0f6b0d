//! The CLI's side of the control socket (`server.rs`): when a daemon answers,
//! `restart`, `status`, `history`, `reset` and `heartbeat` go through it (the daemon owns
//! its children and serializes restarts per service); when none does, the CLI works on
//! the ledger directly (the seed's cron mode). Which socket to try is `cli/locate.rs`'s
//! business; a socket that refuses us is reported with what is missing.

use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::control::server::CLIENT_READ_TIMEOUT;
use crate::render::hold;
use crate::service::protocol::Control;

/// A daemon that answered on its control socket.
pub struct DaemonClient {
    http: reqwest::Client,
    socket: PathBuf,
}

/// Why the daemon could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket exists but refuses us; `why` says what is missing.
    #[error("cannot reach the daemon at {path}: permission denied ({why})")]
    Denied { path: PathBuf, why: String },
    #[error("cannot reach the daemon at {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("the daemon on {path} did not answer: {detail}")]
    Transport { path: PathBuf, detail: String },
    /// The daemon refused the request; its message is for the user as is.
    #[error("{message}")]
    Refused { status: u16, message: String },
}

impl ClientError {
    /// The daemon does not know the service (its config differs from the CLI's).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Refused { status: 404, .. })
    }

    /// The daemon found the request's input wrong (a `--for` that does not parse, a stop
    /// the service cannot do): a usage error, like the CLI's own.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, ClientError::Refused { status: 400, .. })
    }
}

/// Connects to the daemon's socket, if one answers. `Ok(None)`: no daemon (no socket
/// file, or a stale one nobody listens on).
pub fn reach(socket: &Path) -> Result<Option<DaemonClient>, ClientError> {
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(ClientError::Denied {
                path: socket.to_owned(),
                why: why_denied(socket),
            });
        }
        Err(source) => {
            return Err(ClientError::Connect {
                path: socket.to_owned(),
                source,
            });
        }
    }
    vigil_checks::install_crypto_provider();
    let http = reqwest::Client::builder()
        .unix_socket(socket)
        .no_proxy()
        .connect_timeout(CLIENT_READ_TIMEOUT)
        // Plain HTTP on a local socket: no TLS roots to load.
        .tls_certs_only([])
        .build()
        .map_err(|e| ClientError::Transport {
            path: socket.to_owned(),
            detail: e.to_string(),
        })?;
    Ok(Some(DaemonClient {
        http,
        socket: socket.to_owned(),
    }))
}

/// What keeps this user from a socket they may not connect to: a directory on the way
/// they cannot enter, a socket for its owner only, or a group they are not in (or were
/// added to after logging in). Users and groups are named through NSS.
fn why_denied(socket: &Path) -> String {
    use std::os::unix::fs::MetadataExt as _;
    for dir in socket.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        if rustix::fs::access(dir, rustix::fs::Access::EXEC_OK).is_err()
            && let Ok(meta) = std::fs::metadata(dir)
        {
            let mode = meta.mode() & 0o7777;
            return if mode & 0o010 != 0 {
                not_in_group(meta.gid(), &format!("the group of {}", dir.display()))
            } else {
                format!(
                    "the directory {} (mode {mode:04o}) is closed to you",
                    dir.display()
                )
            };
        }
    }
    let Ok(meta) = std::fs::metadata(socket) else {
        return "the socket is closed to you".to_owned();
    };
    let mode = meta.mode() & 0o777;
    if mode & 0o060 == 0o060 {
        return not_in_group(meta.gid(), "the socket's group");
    }
    let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.uid().to_string(), |u| u.name);
    format!(
        "the socket is for `{owner}` only (mode {mode:04o}): the daemon's configuration sets no `control_socket_group`"
    )
}

/// "you are not in group `G`, WHAT", or, when the group lists this user but this session
/// does not have it yet, how to get it.
fn not_in_group(gid: u32, what: &str) -> String {
    use nix::unistd::{Gid, Group, User, getegid, geteuid, getgrouplist, getgroups};
    let gid = Gid::from_raw(gid);
    let group = Group::from_gid(gid)
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name);
    let in_session = getegid() == gid || getgroups().is_ok_and(|g| g.contains(&gid));
    if in_session {
        return format!("you are in group `{group}`, {what}, and still refused");
    }
    let listed = User::from_uid(geteuid())
        .ok()
        .flatten()
        .and_then(|me| std::ffi::CString::new(me.name).ok().map(|n| (n, me.gid)))
        .and_then(|(name, primary)| getgrouplist(&name, primary).ok())
        .is_some_and(|groups| groups.contains(&gid));
    if listed {
        format!(
            "you are in group `{group}`, {what}, but this session started before you were added: log in again, or run `newgrp {group}`"
        )
    } else {
        format!("you are not in group `{group}`, {what}")
    }
}

/// A manual restart's answer (the `vigil restart --json` document).
#[derive(Deserialize, Debug)]
pub struct RestartAnswer {
    pub service: String,
    pub message: String,
    pub outcome: Option<String>,
    pub detail: Option<String>,
}

impl DaemonClient {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        bounded: bool,
    ) -> Result<String, ClientError> {
        let transport = |e: reqwest::Error| ClientError::Transport {
            path: self.socket.clone(),
            detail: vigil_checks::probe::error_chain(&e),
        };
        let mut url = format!("http://vigil{path}");
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(&encode(value));
        }
        let mut request = self.http.request(method, url);
        if bounded {
            request = request.timeout(CLIENT_READ_TIMEOUT);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.text().await.map_err(transport)?;
        if status.is_success() {
            return Ok(body);
        }
        Err(refusal(status, &body))
    }

    /// `vigil status`: JSON, or the rendered table (colored if `color`).
    pub async fn status(
        &self,
        service: Option<&str>,
        json: bool,
        color: bool,
    ) -> Result<String, ClientError> {
        let mut q = read_query(json, color);
        if let Some(s) = service {
            q.push(("service", s.to_owned()));
        }
        self.call(reqwest::Method::GET, "/v1/status", &q, true)
            .await
    }

    /// `vigil history`: JSON, or the rendered table. `since` in Unix milliseconds.
    pub async fn history(
        &self,
        service: Option<&str>,
        since_ms: Option<i64>,
        json: bool,
        color: bool,
    ) -> Result<String, ClientError> {
        let mut q = read_query(json, color);
        if let Some(s) = service {
            q.push(("service", s.to_owned()));
        }
        if let Some(ms) = since_ms {
            q.push(("since", ms.to_string()));
        }
        self.call(reqwest::Method::GET, "/v1/history", &q, true)
            .await
    }

    /// A manual restart through the daemon's guard; the answer's JSON text and its parse.
    pub async fn restart(
        &self,
        service: &str,
        force: bool,
    ) -> Result<(String, RestartAnswer), ClientError> {
        let body = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/services/{}/restart", encode(service)),
                &[("force", force.to_string())],
                false,
            )
            .await?;
        let answer = serde_json::from_str(&body).map_err(|e| ClientError::Transport {
            path: self.socket.clone(),
            detail: format!("unexpected answer ({e}): {body}"),
        })?;
        Ok((body, answer))
    }

    /// Clears the service's history; the number of restarts that no longer count.
    pub async fn reset(&self, service: &str) -> Result<u64, ClientError> {
        let body = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/services/{}/reset", encode(service)),
                &[],
                false,
            )
            .await?;
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["cleared"].as_u64())
            .ok_or_else(|| ClientError::Transport {
                path: self.socket.clone(),
                detail: format!("unexpected answer: {body}"),
            })
    }

    /// An operator's stop, start, pause or resume; the answer's JSON text and its parse.
    pub async fn operator(
        &self,
        target: &str,
        action: Control,
        for_: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(String, hold::Answer), ClientError> {
        let mut q = Vec::new();
        if let Some(f) = for_ {
            q.push(("for", f.to_owned()));
        }
        if let Some(r) = reason {
            q.push(("reason", r.to_owned()));
        }
        let body = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/services/{}/{}", encode(target), action.as_str()),
                &q,
                false,
            )
            .await?;
        let answer = serde_json::from_str(&body).map_err(|e| ClientError::Transport {
            path: self.socket.clone(),
            detail: format!("unexpected answer ({e}): {body}"),
        })?;
        Ok((body, answer))
    }

    /// An exec service's captured output: the last `n` lines, then (with `follow`) new
    /// lines as they come, each handed to `out` as it arrives.
    pub async fn logs(
        &self,
        service: &str,
        n: usize,
        follow: bool,
        json: bool,
        mut out: impl FnMut(&[u8]),
    ) -> Result<(), ClientError> {
        let transport = |e: reqwest::Error| ClientError::Transport {
            path: self.socket.clone(),
            detail: vigil_checks::probe::error_chain(&e),
        };
        let url = format!(
            "http://vigil/v1/services/{}/logs?n={n}&follow={follow}&format={}",
            encode(service),
            if json { "json" } else { "text" }
        );
        let mut request = self.http.get(url);
        if !follow {
            request = request.timeout(CLIENT_READ_TIMEOUT);
        }
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.map_err(transport)?;
            return Err(refusal(status, &body));
        }
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            out(&chunk);
        }
        Ok(())
    }

    /// Pushes a heartbeat; the time the daemon recorded.
    pub async fn heartbeat(&self, service: &str, check: &str) -> Result<String, ClientError> {
        let body = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/heartbeat/{}/{}", encode(service), encode(check)),
                &[],
                true,
            )
            .await?;
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["at"].as_str().map(str::to_owned))
            .ok_or_else(|| ClientError::Transport {
                path: self.socket.clone(),
                detail: format!("unexpected answer: {body}"),
            })
    }
}

/// The daemon's refusal, from its `{"error": ...}` answer.
fn refusal(status: reqwest::StatusCode, body: &str) -> ClientError {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("HTTP {status}: {body}"));
    ClientError::Refused {
        status: status.as_u16(),
        message,
    }
}

fn read_query(json: bool, color: bool) -> Vec<(&'static str, String)> {
    vec![
        ("format", if json { "json" } else { "text" }.to_owned()),
        ("color", color.to_string()),
    ]
}

/// Percent-encodes a path segment or query value (service and check names are validated
/// identifiers, but the CLI may be handed anything).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
