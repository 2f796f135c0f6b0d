//! The daemon's control socket: HTTP+JSON on a unix socket (SPEC §6, "When a daemon runs,
//! the CLI talks to it over its API").
//!
//! Owns: binding the socket (refusing to start beside a live daemon, replacing a stale
//! socket, permissions 0600 or 0660 with a group), the `/v1` routes, and the limits that
//! keep any client from holding the daemon (connections, timeouts, no request bodies;
//! docs/cli-json.md). Must not: decide restarts itself — a manual restart is a message to
//! the service's actor, so it is serialized with every other request for that service and
//! reaches the driver that owns the service (an `exec` child belongs to the daemon).
//!
//! Routes (all JSON unless `format=text`; every error, the extractors' and the router's
//! included, is `{"error": "..."}` with its status):
//! - `GET  /v1/health`: pid, version, start time, services.
//! - `GET  /v1/status[?service=S][&format=text&color=1]`: the `vigil status` document.
//! - `GET  /v1/history[?service=S][&since=MS][&format=text&color=1]`: the ledger.
//! - `POST /v1/services/S/restart[?force=true]`: a manual restart through the guard.
//! - `POST /v1/services/S/reset`: clear the restart history and given-up state.
//! - `POST /v1/heartbeat/S/C`: push a heartbeat.
//! - `POST /v1/services/S/{stop,start,pause,resume}[?for=D][&reason=T]` (S may be
//!   `@GROUP`): an operator's hold, recorded with the caller's uid from the socket's peer
//!   credentials (`operate.rs`).
//! - `GET  /v1/fleet/status`, `GET /v1/fleet/history[?since=MS]`: the fleet, read from
//!   PostgreSQL (`vigil fleet status|history --json`'s documents; 404 without `[fleet]`,
//!   503 when the database does not answer within `[fleet] timeout`).
//! - `GET  /v1/services/S/logs[?n=N][&follow=true][&format=json]`: an exec service's
//!   captured output, streamed while `follow` (`operate.rs`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Path as UrlPath, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use vigil_config::model::{CheckKind, Config};
use vigil_core::{RestartRequest, ServiceName, Source, Timestamp};

use super::operate;
use crate::drivers::exec::output::Outputs;
use crate::guard::{self, GuardContext};
use crate::platform::clock;
use crate::render as output;
use crate::service::protocol::{Outcome, ServiceMsg};

/// What the API serves from: the running configuration and each service actor's inbox.
/// The daemon publishes a new view on every (re)load.
pub struct ApiView {
    pub config: Arc<Config>,
    /// Each service actor's inbox, and each group actor's as `@NAME`.
    pub services: BTreeMap<ServiceName, mpsc::Sender<ServiceMsg>>,
    /// Exec services' captured output.
    pub outputs: Outputs,
}

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) view: watch::Receiver<Arc<ApiView>>,
    pub(super) guard: GuardContext,
    started_at: Timestamp,
}

/// Who is on the other end of a connection: the uid from its peer credentials
/// (`SO_PEERCRED`), in every request's extensions.
#[derive(Clone, Copy, Debug)]
pub(super) struct Peer {
    pub(super) uid: Option<u32>,
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

/// The most connections served at once. The CLI opens one connection per command, so this
/// is far above real use, and each connection costs one task and at most
/// [`MAX_REQUEST_HEAD`] of buffers: a flood of connections costs a few MiB, never the
/// daemon's file descriptors. One more is answered 503 and closed at once.
pub const MAX_CONNECTIONS: usize = 256;

/// From a new connection (or the first byte of a next request) to the end of the request's
/// head. The CLI sends its few header lines at once; 10 s still allows a human typing into
/// `socat`, and a client that trickles bytes (or blank lines) is closed after it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A kept-alive connection with no request in flight is closed after this long. The CLI
/// uses one connection per command; 30 s lets a script reuse one (curl with several URLs)
/// without letting idle connections hold on to [`MAX_CONNECTIONS`].
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer the client stops reading: a write that finds no room in the socket for this
/// long closes the connection. The answer waits for the client, the daemon does not.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes of a request hyper buffers (its minimum is 8 KiB). A request is one line
/// and a few headers; a longer head is answered 431 by hyper itself.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Connections beyond [`MAX_CONNECTIONS`] are answered 503 by at most this many at once,
/// each given [`REFUSE_WAIT`] to send its request; more are closed without an answer.
const MAX_REFUSING: usize = 16;

/// How long a refused connection may take to send its request and read the 503.
const REFUSE_WAIT: Duration = Duration::from_secs(1);

/// At shutdown, how long answers already in flight may take to be written.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// After a failed `accept` (out of file descriptors), how long before the next one, so a
/// persistent error does not spin the runtime thread.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Tests shorten the header and idle timeouts (`HEADER_MS,IDLE_MS`) to watch them work in
/// a second rather than half a minute. Not for users: the values above are the contract.
const TEST_TIMEOUTS_ENV: &str = "__VIGIL_TEST_CONTROL_TIMEOUTS";

/// The per-connection time limits.
#[derive(Clone, Copy, Debug)]
struct Limits {
    header: Duration,
    idle: Duration,
    write_stall: Duration,
}

impl Limits {
    fn from_env() -> Limits {
        let mut limits = Limits {
            header: HEADER_READ_TIMEOUT,
            idle: IDLE_TIMEOUT,
            write_stall: WRITE_STALL_TIMEOUT,
        };
        let parsed = std::env::var(TEST_TIMEOUTS_ENV).ok().and_then(|v| {
            let (header, idle) = v.split_once(',')?;
            Some((header.trim().parse().ok()?, idle.trim().parse().ok()?))
        });
        if let Some((header, idle)) = parsed {
            limits.header = Duration::from_millis(header);
            limits.idle = Duration::from_millis(idle);
        }
        limits
    }

    /// For a connection that only gets a 503.
    fn refusing(self) -> Limits {
        Limits {
            header: self.header.min(REFUSE_WAIT),
            idle: self.idle.min(REFUSE_WAIT),
            write_stall: REFUSE_WAIT,
        }
    }
}

/// Serves the API until `cancel`; removes the socket file on the way out.
///
/// Each connection is served by hyper directly (`axum::serve` has no timeouts) inside the
/// limits above; everything here runs on the daemon's one runtime thread, so no client
/// can hold more than one bounded slot, and none can make a check or restart wait.
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
        .route("/v1/services/{service}/stop", post(operate::stop))
        .route("/v1/services/{service}/start", post(operate::start))
        .route("/v1/services/{service}/pause", post(operate::pause))
        .route("/v1/services/{service}/resume", post(operate::resume))
        .route("/v1/services/{service}/logs", get(operate::logs))
        .route("/v1/fleet/status", get(fleet_status))
        .route("/v1/fleet/history", get(fleet_history))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API route") })
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let full = Router::new().fallback(|| async {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the daemon is serving {MAX_CONNECTIONS} control connections already; try again when some have closed"
            ),
        )
    });
    let limits = Limits::from_env();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut connections = JoinSet::new();
    let mut refused_logged = false;
    loop {
        let accepted = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, event = "api_accept_failed", "control socket: cannot accept a connection");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            refused_logged = false;
            let served = serve_connection(stream, app.clone(), slot, limits, true, cancel.clone());
            connections.spawn(served);
            continue;
        }
        if !refused_logged {
            refused_logged = true;
            tracing::warn!(
                event = "api_connections_full",
                limit = MAX_CONNECTIONS,
                "control socket: {MAX_CONNECTIONS} connections open; refusing more until some close"
            );
        }
        // Answered 503 in the documented shape (after its request: an HTTP client takes an
        // answer before its request for a broken connection), or closed when even the
        // refusals are at their bound.
        if let Ok(slot) = refusing.clone().try_acquire_owned() {
            let refused = serve_connection(
                stream,
                full.clone(),
                slot,
                limits.refusing(),
                false,
                cancel.clone(),
            );
            connections.spawn(refused);
        }
    }
    // No new connections: the CLI falls back to the ledger, as without a daemon.
    drop(listener);
    let _ = std::fs::remove_file(&path);
    // Each connection saw `cancel` too: it finishes the answer in flight, then closes.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
}

/// One connection: hyper's HTTP/1 server inside [`Limits`], holding its slot until it
/// closes.
async fn serve_connection(
    stream: UnixStream,
    app: Router,
    slot: OwnedSemaphorePermit,
    limits: Limits,
    keep_alive: bool,
    cancel: CancellationToken,
) {
    let in_flight = Arc::new(InFlight::default());
    let peer = Peer {
        uid: stream.peer_cred().ok().map(|c| c.uid()),
    };
    let io = TokioIo::new(Guarded::new(stream, in_flight.clone(), limits));
    let router = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(peer);
        // Counted from the moment the head is parsed (this closure runs in hyper's
        // dispatch, not when the future is first polled) until the body is written.
        let busy = in_flight.enter();
        let answer: Pin<Box<dyn Future<Output = Response> + Send>> = match refuse_body(&request) {
            Some(refused) => Box::pin(std::future::ready(refused)),
            None => {
                let routed = router.call(request);
                Box::pin(async move { routed.await.unwrap_or_else(|never| match never {}) })
            }
        };
        async move {
            let response = answer.await;
            Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(MAX_REQUEST_HEAD)
        // `Guarded` times the head (hyper's own timer would also cut idle connections).
        .header_read_timeout(None)
        .keep_alive(keep_alive);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(SHUTDOWN_GRACE, connection.as_mut())
                .await
                .unwrap_or(Ok(()))
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "control socket: connection closed");
    }
    drop(slot);
}

/// Every endpoint takes its input from the path and query: a request body is refused
/// (413) instead of being ignored, and without reading it (the connection is closed after
/// the answer).
fn refuse_body(request: &Request<Incoming>) -> Option<Response> {
    let headers = request.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()));
    let has_body = match length {
        Some(Some(0)) => false,
        Some(_) => true,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    };
    if !has_body {
        return None;
    }
    let mut response = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "{} {} takes no request body (its input is the path and query string)",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}

/// How many requests of one connection are being answered, and the connection's task to
/// wake when the last one is done (hyper may have nothing else to wake it for, and the
/// idle deadline starts then).
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    waker: std::sync::Mutex<Option<Waker>>,
}

impl InFlight {
    fn enter(self: &Arc<Self>) -> Busy {
        self.count.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Whether a request is in flight; if so, `cx` is woken when none is.
    fn any(&self, cx: &Context<'_>) -> bool {
        let busy = self.count.load(Ordering::Relaxed) > 0;
        if busy {
            let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_mut() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        busy
    }
}

/// One request being answered, until its response body is written (or dropped).
struct Busy(Arc<InFlight>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::Relaxed) == 1 {
            let waker = self
                .0
                .waker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// A response body that keeps its request counted as in flight while hyper writes it.
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Where a connection is between requests, for its read deadline.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for (the rest of) a request head: [`Limits::header`] from the connection's
    /// start or the next request's first byte.
    Head,
    /// A request is being answered: no read deadline (the guard's lock timeout and the
    /// driver's deadline bound a restart).
    Busy,
    /// Kept alive between requests: [`Limits::idle`] since the last answer.
    Idle,
}

/// The connection's socket with its deadlines: a read that waits past the phase's deadline
/// and a write that finds no room for [`Limits::write_stall`] fail with `TimedOut`, which
/// makes hyper close the connection.
struct Guarded {
    io: UnixStream,
    in_flight: Arc<InFlight>,
    limits: Limits,
    phase: Phase,
    read_deadline: Pin<Box<Sleep>>,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    fn new(io: UnixStream, in_flight: Arc<InFlight>, limits: Limits) -> Guarded {
        Guarded {
            io,
            in_flight,
            limits,
            phase: Phase::Head,
            read_deadline: Box::pin(tokio::time::sleep(limits.header)),
            write_deadline: None,
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        let after = match phase {
            Phase::Head => self.limits.header,
            Phase::Idle => self.limits.idle,
            Phase::Busy => return,
        };
        self.read_deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + after);
    }

    /// A write found no room: fails once it has waited [`Limits::write_stall`].
    fn write_stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let stall = self.limits.write_stall;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the answer",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn wrote<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => self.write_stalled(cx),
            ready => {
                self.write_deadline = None;
                ready
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match (this.phase, this.in_flight.any(cx)) {
            (Phase::Busy, false) => this.enter(Phase::Idle),
            (Phase::Head | Phase::Idle, true) => this.enter(Phase::Busy),
            _ => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.enter(Phase::Head);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.phase != Phase::Busy && this.read_deadline.as_mut().poll(cx).is_ready() {
                    let what = if this.phase == Phase::Head {
                        "no complete request head in time"
                    } else {
                        "idle"
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.wrote(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
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
