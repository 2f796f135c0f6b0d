//! The daemon's control socket: HTTP+JSON on a unix socket (SPEC §6, "When a daemon runs,
//! the CLI talks to it over its API").
//!
//! Owns: binding the socket (refusing to start beside a live daemon, replacing a stale
//! socket, permissions 0600 or 0660 with a group) and the `/v1` routes, which the optional
//! TCP listener (`http.rs`) serves too. The limits that keep any client from holding the
//! daemon (connections, timeouts, no request bodies; docs/cli-json.md) are `conn.rs`'s,
//! shared by both listeners. Must not: decide restarts itself — a manual restart is a message to
//! the service's actor, so it is serialized with every other request for that service and
//! reaches the driver that owns the service (an `exec` child belongs to the daemon).
//!
//! Routes (all JSON unless `format=text`; every error, the extractors' and the router's
//! included, is `{"error": "..."}` with its status):
//! - `GET  /metrics`: Prometheus metrics (`observe/metrics.rs`).
//! - `GET  /v1/health`: pid, version, start time, services, the TCP listener's address.
//! - `GET  /v1/status[?service=S][&format=text&color=1]`: the `vigil status` document.
//! - `GET  /v1/history[?service=S][&since=MS][&format=text&color=1]`: the ledger.
//! - `POST /v1/services/S/restart[?force=true]`: a manual restart through the guard.
//! - `POST /v1/services/S/reset`: clear the restart history and given-up state.
//! - `POST /v1/heartbeat/S/C`: push a heartbeat.
//! - `POST /v1/services/S/{stop,start,pause,resume}[?for=D][&reason=T]` (S may be
//!   `@GROUP`): an operator's hold, recorded with the caller's uid from the socket's peer
//!   credentials, or over TCP as the token's holder and its address (`operate.rs`).
//! - `GET  /v1/fleet/status`, `GET /v1/fleet/history[?since=MS]`: the fleet, read from
//!   PostgreSQL (`vigil fleet status|history --json`'s documents; 404 without `[fleet]`,
//!   503 when the database does not answer within `[fleet] timeout`).
//! - `GET  /v1/services/S/logs[?n=N][&follow=true][&format=json]`: an exec service's
//!   captured output, streamed while `follow` (`operate.rs`).
//! - `GET  /`, `/assets/NAME`, `/v1/live` (server-sent events), `/v1/whoami`: the live
//!   dashboard and its feed (`dashboard/`).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Path as UrlPath, Query, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use vigil_config::model::{CheckKind, Config};
use vigil_core::{RestartRequest, ServiceName, Source, Timestamp};

pub(super) use super::conn::Peer;
use super::conn::{self, Access, Listener};
pub use super::conn::{HEADER_READ_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS, WRITE_STALL_TIMEOUT};
use super::{dashboard, operate};
use crate::drivers::exec::output::Outputs;
use crate::guard::{self, GuardContext};
use crate::observe::metrics::{self as prometheus, Metrics};
use crate::platform::clock;
use crate::render as output;
use crate::service::inbox;
use crate::service::protocol::{Outcome, ServiceMsg};

/// What the API serves from: the running configuration and each service actor's inbox.
/// The daemon publishes a new view on every (re)load.
pub struct ApiView {
    pub config: Arc<Config>,
    /// Each service actor's inbox, and each group actor's as `@NAME`.
    pub services: BTreeMap<ServiceName, inbox::Sender<ServiceMsg>>,
    /// Exec services' captured output.
    pub outputs: Outputs,
    /// Where the TCP listener listens (`http_listen`, its port resolved), if it is on.
    pub http: Option<SocketAddr>,
    /// The daemon's metrics, for `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// What every handler shares; the same for both listeners.
#[derive(Clone)]
pub(super) struct AppState {
    pub(super) view: watch::Receiver<Arc<ApiView>>,
    pub(super) guard: GuardContext,
    pub(super) started_at: Timestamp,
    /// The dashboard's live feed (one per listener, ended by the listener's `cancel`).
    pub(super) live: Arc<dashboard::Live>,
}

impl AppState {
    pub(super) fn new(
        view: watch::Receiver<Arc<ApiView>>,
        guard: GuardContext,
        cancel: CancellationToken,
    ) -> AppState {
        AppState {
            view,
            guard,
            started_at: clock::now(),
            live: dashboard::Live::new(cancel),
        }
    }
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

/// The API's routes, served by both listeners (the TCP listener lets only some of them
/// through without its token: `http.rs`).
pub(super) fn routes(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/history", get(history))
        .route("/v1/services/{service}/restart", post(restart))
        .route("/v1/services/{service}/reset", post(reset))
        .route("/v1/heartbeat/{service}/{check}", post(heartbeat))
        .route("/v1/services/{service}/stop", post(operate::stop))
        .route("/v1/services/{service}/start", post(operate::start))
        .route("/v1/services/{service}/pause", post(operate::pause))
        .route("/v1/services/{service}/resume", post(operate::resume))
        .route("/v1/services/{service}/logs", get(operate::logs))
        .merge(dashboard::routes())
        .route("/v1/fleet/status", get(fleet_status))
        .route("/v1/fleet/history", get(fleet_history))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API route") })
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves the API on the control socket until `cancel`; removes the socket file on the
/// way out (the CLI then falls back to the ledger, as without a daemon). It runs on the
/// daemon's runtime thread, within the limits of `conn.rs`.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    view: watch::Receiver<Arc<ApiView>>,
    guard: GuardContext,
    cancel: CancellationToken,
) {
    let app = routes(AppState::new(view, guard, cancel.clone()));
    conn::serve(
        Listener::Unix(listener),
        app,
        Access::Socket,
        "control socket",
        cancel,
        move || {
            let _ = std::fs::remove_file(&path);
        },
    )
    .await;
}

/// The query string, or a 400 in the documented shape (axum's own rejection is plain
/// text).
pub(super) struct ApiQuery<T>(pub(super) T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("invalid query string: {}", rejection_detail(&rejection)),
            )),
        }
    }
}

/// The path's parameters, percent-decoded, or a 400 (or 500) in the documented shape.
pub(super) struct ApiPath<T>(pub(super) T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match UrlPath::<T>::from_request_parts(parts, state).await {
            Ok(UrlPath(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                format!("invalid path: {}", rejection_detail(&rejection)),
            )),
        }
    }
}

/// The innermost cause of an extractor's rejection (the outer layers repeat it).
fn rejection_detail(rejection: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = rejection;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {} (see the `Allow` header)",
            uri.path()
        ),
    )
}

/// An error answer: a status code and a message the CLI prints as is.
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(super) fn internal(error: impl std::fmt::Display) -> ApiError {
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

pub(super) type ApiResult = Result<Response, ApiError>;

/// Pretty JSON, byte for byte what the CLI prints without a daemon.
pub(super) fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body + "\n").into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

pub(super) fn text(body: String) -> Response {
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

/// The Prometheus exposition: the budgets from the ledger (one job), the rest from memory.
async fn metrics(State(st): State<AppState>) -> ApiResult {
    let view = st.view.borrow().clone();
    let budgets = view.metrics.budgets(&st.guard.ledger, clock::now()).await;
    let body = view
        .metrics
        .render(&budgets, &st.guard.events, clock::now());
    Ok(([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], body).into_response())
}

fn fleet_of(st: &AppState) -> Result<&crate::fleet::FleetHandle, ApiError> {
    st.guard
        .fleet
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no [fleet] in the configuration"))
}

async fn fleet_status(State(st): State<AppState>) -> ApiResult {
    let rows = crate::fleet::query::status(fleet_of(&st)?)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok(json(&serde_json::json!({ "version": 1, "services": rows })))
}

async fn fleet_history(State(st): State<AppState>, ApiQuery(q): ApiQuery<ReadQuery>) -> ApiResult {
    let rows = crate::fleet::query::history(fleet_of(&st)?, q.since)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok(json(&serde_json::json!({ "version": 1, "entries": rows })))
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
        "http": view.http.map(|a| a.to_string()),
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

async fn status(State(st): State<AppState>, ApiQuery(q): ApiQuery<ReadQuery>) -> ApiResult {
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

async fn history(State(st): State<AppState>, ApiQuery(q): ApiQuery<ReadQuery>) -> ApiResult {
    if let Some(name) = &q.service {
        known_service(&st.view.borrow().clone(), name)?;
    }
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
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<RestartQuery>,
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
        .send(ServiceMsg::restart(request, Some(reply)))
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"))?;
    let outcome = answer.await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon stopped before the restart request was decided",
        )
    })?;
    match outcome {
        Outcome::Decided(decision) => Ok(json(&output::decision_json(&service, &decision))),
        Outcome::Failed(why) => Err(ApiError::internal(format!("{service}: {why}"))),
        Outcome::Held(kind) => {
            let (name, now) = (service.to_string(), clock::now());
            let hold = st
                .guard
                .ledger
                .call(move |l| l.current_hold(&name, now))
                .await
                .map_err(ApiError::internal)?;
            Err(ApiError::new(
                StatusCode::CONFLICT,
                output::hold::held_restart(service.as_str(), kind, hold.as_ref(), now),
            ))
        }
        other => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{service}: {}", other.describe()),
        )),
    }
}

async fn reset(State(st): State<AppState>, ApiPath(name): ApiPath<String>) -> ApiResult {
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
    ApiPath((name, check)): ApiPath<(String, String)>,
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
