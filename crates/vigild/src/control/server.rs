//! The daemon's control socket: HTTP+JSON on a unix socket (SPEC §6, "When a daemon runs,
//! the CLI talks to it over its API").
//!
//! Owns: binding the socket (refusing to start beside a live daemon, replacing a stale
//! socket, permissions 0600 or 0660 with a group), and the `/v1` routes. Must not: decide
//! restarts itself — a manual restart is a message to the service's actor, so it is
//! serialized with every other request for that service and reaches the driver that owns
//! the service (an `exec` child belongs to the daemon).
//!
//! Routes (all JSON unless `format=text`; errors are `{"error": "..."}`):
//! - `GET  /v1/health`: pid, version, start time, services.
//! - `GET  /v1/status[?service=S][&format=text&color=1]`: the `vigil status` document.
//! - `GET  /v1/history[?service=S][&since=MS][&format=text&color=1]`: the ledger.
//! - `POST /v1/services/S/restart[?force=true]`: a manual restart through the guard.
//! - `POST /v1/services/S/reset`: clear the restart history and given-up state.
//! - `POST /v1/heartbeat/S/C`: push a heartbeat.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use vigil_config::model::{CheckKind, Config};
use vigil_core::{RestartRequest, ServiceName, Source, Timestamp};

use crate::guard::{self, GuardContext};
use crate::platform::clock;
use crate::render as output;
use crate::service::protocol::ServiceMsg;

/// What the API serves from: the running configuration and each service actor's inbox.
/// The daemon publishes a new view on every (re)load.
pub struct ApiView {
    pub config: Arc<Config>,
    pub services: BTreeMap<ServiceName, mpsc::Sender<ServiceMsg>>,
}

#[derive(Clone)]
struct AppState {
    view: watch::Receiver<Arc<ApiView>>,
    guard: GuardContext,
    started_at: Timestamp,
}

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "another vigil daemon is already running and answering on {0} (stop it first, or give this one another state_dir/control_socket)"
    )]
    AlreadyRunning(PathBuf),
    #[error("cannot create the control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "control_socket_group: no group named `{0}` (looked up through NSS: /etc/group and what /etc/nsswitch.conf names)"
    )]
    UnknownGroup(String),
    #[error("control_socket_group: cannot look up `{name}`: {source}")]
    GroupLookup { name: String, source: io::Error },
}

/// Binds the control socket: refuses when a daemon answers there, replaces a stale socket
/// file, and makes the socket reachable only with the configured permissions (it is
/// created under a temporary name, restricted, then renamed into place, so it is never
/// briefly open to everyone).
pub fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, BindError> {
    let io_err = |source| BindError::Io {
        path: path.to_owned(),
        source,
    };
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(BindError::AlreadyRunning(path.to_owned()));
    }
    let gid = match group {
        Some(name) => Some(group_id(name)?),
        None => None,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        create_socket_dir(dir, gid).map_err(io_err)?;
    }
    let tmp = path.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io_err)?;
    let restrict = || -> io::Result<()> {
        let mode = if let Some(gid) = gid {
            rustix::fs::chown(&tmp, None, Some(rustix::fs::Gid::from_raw(gid)))?;
            0o660
        } else {
            0o600
        };
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        // Replaces a stale socket left by a daemon that died without cleaning up.
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = restrict() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    Ok(listener)
}

/// Creates the socket's directory (e.g. `/run/vigil` when systemd's `RuntimeDirectory=`
/// did not) so the socket's group can enter it: 0750 with that group, else 0755. The
/// mode is set explicitly: the daemon's umask (0027 in the packaged unit) would close it.
fn create_socket_dir(dir: &Path, gid: Option<u32>) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mode = match gid {
        Some(gid) => {
            rustix::fs::chown(dir, None, Some(rustix::fs::Gid::from_raw(gid)))?;
            0o750
        }
        None => 0o755,
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// Looks a group name up through NSS (`getgrnam_r`: `/etc/group`, LDAP, SSSD, ...).
fn group_id(name: &str) -> Result<u32, BindError> {
    nix::unistd::Group::from_name(name)
        .map_err(|e| BindError::GroupLookup {
            name: name.to_owned(),
            source: io::Error::from(e),
        })?
        .map(|g| g.gid.as_raw())
        .ok_or_else(|| BindError::UnknownGroup(name.to_owned()))
}

/// Serves the API until `cancel`; removes the socket file on the way out.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    view: watch::Receiver<Arc<ApiView>>,
    guard: GuardContext,
    cancel: CancellationToken,
) {
    let state = AppState {
        view,
        guard,
        started_at: clock::now(),
    };
    let app = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/history", get(history))
        .route("/v1/services/{service}/restart", post(restart))
        .route("/v1/services/{service}/reset", post(reset))
        .route("/v1/heartbeat/{service}/{check}", post(heartbeat))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API route") })
        .with_state(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await;
    if let Err(error) = result {
        tracing::error!(%error, event = "api_stopped", "control socket stopped serving");
    }
    let _ = std::fs::remove_file(&path);
}

/// An error answer: a status code and a message the CLI prints as is.
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn internal(error: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// Pretty JSON, byte for byte what the CLI prints without a daemon.
fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body + "\n").into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn known_service(view: &ApiView, name: &str) -> Result<ServiceName, ApiError> {
    view.config
        .service(name)
        .map(|s| s.name.clone())
        .ok_or_else(|| {
            let known: Vec<&str> = view
                .config
                .services
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "the running daemon has no service `{name}` (it runs: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
}

async fn health(State(st): State<AppState>) -> ApiResult {
    let view = st.view.borrow().clone();
    Ok(json(&serde_json::json!({
        "version": output::JSON_VERSION,
        "vigil": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "started_at": st.started_at.to_string(),
        "config": view.config.path.display().to_string(),
        "services": view.config.services.len(),
    })))
}

#[derive(Deserialize)]
struct ReadQuery {
    service: Option<String>,
    /// Unix milliseconds.
    since: Option<i64>,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    color: bool,
}

#[derive(Deserialize, Default, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Text,
}

async fn status(State(st): State<AppState>, Query(q): Query<ReadQuery>) -> ApiResult {
    let view = st.view.borrow().clone();
    if let Some(name) = &q.service {
        known_service(&view, name)?;
    }
    let report = output::status(&view.config, &st.guard.ledger, q.service.as_deref())
        .await
        .map_err(ApiError::internal)?;
    Ok(match q.format {
        Format::Json => json(&report),
        Format::Text => text(output::with_color(q.color, || {
            output::render_status(&report)
        })),
    })
}

async fn history(State(st): State<AppState>, Query(q): Query<ReadQuery>) -> ApiResult {
    let since = q.since.map(Timestamp::from_millis);
    let service = q.service.clone();
    let (rows, deliveries) = st
        .guard
        .ledger
        .call(move |l| -> Result<_, crate::ledger::LedgerError> {
            let s = service.as_deref();
            Ok((l.history(s, since)?, l.deliveries(s, since)?))
        })
        .await
        .map_err(ApiError::internal)?;
    Ok(match q.format {
        Format::Json => json(&output::history_json(&rows, &deliveries)),
        Format::Text => text(output::with_color(q.color, || {
            output::render_history(&rows, &deliveries)
        })),
    })
}

#[derive(Deserialize)]
struct RestartQuery {
    #[serde(default)]
    force: bool,
}

async fn restart(
    State(st): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<RestartQuery>,
) -> ApiResult {
    let view = st.view.borrow().clone();
    let service = known_service(&view, &name)?;
    let inbox = view
        .services
        .get(&service)
        .cloned()
        .ok_or_else(|| ApiError::internal(format!("service `{name}` has no actor")))?;
    let request = if q.force {
        RestartRequest::forced(Source::Manual)
    } else {
        RestartRequest::new(Source::Manual)
    };
    let (reply, answer) = oneshot::channel();
    inbox
        .send(ServiceMsg::Restart {
            request,
            repair: None,
            reply: Some(reply),
        })
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"))?;
    let decision = answer.await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon stopped before the restart request was decided",
        )
    })?;
    Ok(json(&output::decision_json(&service, &decision)))
}

async fn reset(State(st): State<AppState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    let view = st.view.borrow().clone();
    let service = known_service(&view, &name)?;
    let policy = view
        .config
        .service(service.as_str())
        .map(|s| s.guard.clone())
        .ok_or_else(|| ApiError::internal("service vanished"))?;
    match guard::reset(&st.guard, &service, &policy)
        .await
        .map_err(ApiError::internal)?
    {
        Some(cleared) => {
            if let Some(inbox) = view.services.get(&service) {
                let _ = inbox.send(ServiceMsg::Reset).await;
            }
            Ok(json(&serde_json::json!({
            "version": output::JSON_VERSION,
            "service": service.as_str(),
            "cleared": cleared,
            })))
        }
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{service}: could not acquire the restart lock within {} (a restart is in progress); try again",
                vigil_core::format_duration(policy.lock_timeout)
            ),
        )),
    }
}

async fn heartbeat(
    State(st): State<AppState>,
    UrlPath((name, check)): UrlPath<(String, String)>,
) -> ApiResult {
    let view = st.view.borrow().clone();
    let service = known_service(&view, &name)?;
    let is_heartbeat = view.config.service(service.as_str()).is_some_and(|s| {
        s.checks
            .iter()
            .any(|c| c.name.as_str() == check && matches!(c.kind, CheckKind::Heartbeat(_)))
    });
    if !is_heartbeat {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("`{name}/{check}` is not a heartbeat check of the running daemon"),
        ));
    }
    let now = clock::now();
    let (s, c) = (service.to_string(), check.clone());
    st.guard
        .ledger
        .call(move |l| l.record_heartbeat(&s, &c, now))
        .await
        .map_err(ApiError::internal)?;
    Ok(json(&serde_json::json!({
        "version": output::JSON_VERSION,
        "service": service.as_str(),
        "check": check,
        "at": now.to_string(),
    })))
}

/// How long the CLI waits to connect and for read-only answers. A restart has no overall
/// deadline here: the guard's lock timeout and the driver's own deadline bound it.
pub const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(30);
