//! The optional TCP listener (`[vigil] http_listen`): the control socket's routes over TCP,
//! plain or TLS, for Prometheus, a dashboard and remote operators.
//!
//! Owns: reading `http_token_file` and the TLS files, binding, the listener's own thread
//! and runtime, and the [`Gate`] every request passes before the router:
//! - reads that are public ([`is_public_read`]: `GET`/`HEAD` of `/metrics`, `/v1/health`,
//!   `/v1/status`, `/v1/history`, a service's `logs`, and the dashboard's `/`,
//!   `/assets/...` and `/v1/live`) need nothing;
//! - everything else (every operator endpoint, and any route added later: default deny)
//!   needs `Authorization: Bearer TOKEN` with the token of `http_token_file`, compared in
//!   constant time, and is answered 401 without it (also when no token file is
//!   configured). Only that header counts: never a cookie or a query parameter, and no
//!   CORS header is ever sent, so a page of another origin can neither send the token
//!   nor read an answer (its preflight `OPTIONS` is a 401 too);
//! - at most [`MAX_ANSWERING`] requests are being answered at once (the ledger thread and
//!   the service actors are shared with the checks and restarts); one more is a 503.
//!
//! Connections, head size and timeouts are the control socket's (`conn.rs`). The listener
//! runs on a thread of its own with its own single-threaded runtime: whatever a client
//! makes it do (TLS handshakes, scrapes in a loop, thousands of connections) costs that
//! thread, never the runtime thread that runs the checks and restarts.
//!
//! Must not: act on a request itself (the routes are `server.rs`'s, the actions the
//! actors'), or accept a credential from anywhere but the `Authorization` header.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use subtle::ConstantTimeEq as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use vigil_config::model::{HttpListener, TlsFiles};

use super::conn::{self, Access, Listener, Peer};
use super::server::{ApiError, ApiView, AppState, routes};
use crate::guard::GuardContext;
use crate::platform::clock;

/// Requests answered at once over TCP; one more is answered 503 (with `Retry-After`)
/// without being routed. A scrape, a dashboard's polls and an operator's command fit many
/// times over; a client looping on `/v1/history` gets no more than this share of the
/// ledger thread.
pub const MAX_ANSWERING: usize = 8;

/// How long the listener's runtime may take to finish its blocking jobs at shutdown.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// A refused token is logged at most once per this long (with the count since).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why the listener could not be set up: the daemon does not start (or a reload is
/// rejected, for the token).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("http_token_file {}: cannot read it: {source}", path.display())]
    TokenUnreadable { path: PathBuf, source: io::Error },
    #[error("http_token_file {} is empty: it must hold the bearer token", path.display())]
    TokenEmpty { path: PathBuf },
    #[error("http_tls_cert {}: {why}", path.display())]
    Cert { path: PathBuf, why: String },
    #[error("http_tls_key {}: {why}", path.display())]
    Key { path: PathBuf, why: String },
    #[error("http_tls_cert/http_tls_key: {0}")]
    Tls(#[from] rustls::Error),
    #[error("http_listen {addr}: cannot listen: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("http listener: cannot start its thread: {0}")]
    Thread(io::Error),
}

/// The bearer token. Its `Debug` never shows it.
pub struct Token(Box<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads `http_token_file`: its content without surrounding whitespace (a trailing
    /// newline from `echo` or an editor is not part of the token).
    pub fn read(path: &Path) -> Result<Token, HttpError> {
        let bytes = std::fs::read(path).map_err(|source| HttpError::TokenUnreadable {
            path: path.to_owned(),
            source,
        })?;
        let token = bytes.trim_ascii();
        if token.is_empty() {
            return Err(HttpError::TokenEmpty {
                path: path.to_owned(),
            });
        }
        Ok(Token(token.into()))
    }

    /// Whether `presented` is the token, in time that does not depend on where they
    /// differ (only on whether their lengths do).
    fn matches(&self, presented: &[u8]) -> bool {
        let same_len = presented.len() == self.0.len();
        // Compared with itself when the lengths differ, so the work is the same.
        let candidate = if same_len { presented } else { &self.0[..] };
        bool::from(candidate.ct_eq(&self.0)) & same_len
    }
}

/// The token of `spec`, if it names a file.
fn token_of(spec: &HttpListener) -> Result<Option<Token>, HttpError> {
    spec.token_file.as_deref().map(Token::read).transpose()
}

/// The listener's TLS from its PEM files: the ring provider, TLS 1.2 and 1.3, HTTP/1.1.
fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, HttpError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_err = |why: String| HttpError::Cert {
        path: files.cert.clone(),
        why,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err(
            "no certificate in it (a PEM `BEGIN CERTIFICATE` block)".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| HttpError::Key {
        path: files.key.clone(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The listener, bound and with its files read, not serving yet: the daemon binds it when
/// it starts, so a port in use or a bad file stops the start with the reason.
pub struct Bound {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    token: Option<Token>,
}

/// Reads the token and TLS files of `spec` and binds its address. A token file that
/// others may read is used, with a warning.
pub fn bind(spec: &HttpListener) -> Result<Bound, HttpError> {
    let token = token_of(spec)?;
    if let Some(path) = &spec.token_file
        && let Ok(meta) = std::fs::metadata(path)
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(event = "http_token_file_open", path = %path.display(),
                "http_token_file {} is readable by others (mode {:o}); chmod 600 it", path.display(), mode & 0o777);
        }
    }
    let tls = spec.tls.as_ref().map(tls_acceptor).transpose()?;
    let bind_err = |source| HttpError::Bind {
        addr: spec.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(spec.listen).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    Ok(Bound {
        listener,
        addr,
        tls,
        token,
    })
}

/// The running listener's token, replaced on reload.
pub struct TokenSwap(watch::Sender<Option<Arc<Token>>>);

impl TokenSwap {
    /// Reads the token `spec` names now (`None` when it names none: every operator
    /// endpoint then answers 401); the caller swaps it in with [`TokenSwap::set`] once
    /// the rest of the reload is accepted.
    pub fn read(spec: &HttpListener) -> Result<Option<Token>, HttpError> {
        token_of(spec)
    }

    pub fn set(&self, token: Option<Token>) {
        self.0.send_replace(token.map(Arc::new));
    }
}

impl Bound {
    /// Where it listens (`http_listen` with port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves the API on the listener's own thread until `cancel`. Returns the token's
    /// handle for reloads and a future that ends when the thread has finished (for the
    /// daemon's task set, which waits for it at shutdown).
    pub fn start(
        self,
        view: watch::Receiver<Arc<ApiView>>,
        guard: GuardContext,
        cancel: CancellationToken,
    ) -> Result<(TokenSwap, impl Future<Output = ()> + Send + 'static), HttpError> {
        let (token_tx, token_rx) = watch::channel(self.token.map(Arc::new));
        let gate = Arc::new(Gate {
            token: token_rx,
            answering: Arc::new(Semaphore::new(MAX_ANSWERING)),
            refusals: Refusals::default(),
        });
        let app = routes(AppState::new(view, guard, cancel.clone()));
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let (listener, tls, addr) = (self.listener, self.tls, self.addr);
        std::thread::Builder::new()
            .name("vigil-http".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "http listener: cannot start its runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(error) => {
                            tracing::error!(%error, %addr, "http listener: cannot listen");
                            return;
                        }
                    };
                    let listener = Listener::Tcp { listener, tls };
                    conn::serve(
                        listener,
                        app,
                        Access::Tcp(gate),
                        "http listener",
                        cancel,
                        || {},
                    )
                    .await;
                });
                runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
                drop(done_tx);
            })
            .map_err(HttpError::Thread)?;
        Ok((TokenSwap(token_tx), async move {
            let _ = done_rx.await;
        }))
    }
}

/// Whether a request is a public read: no token needed. `/`, `/assets/...` and the
/// live feed `/v1/live` are the dashboard's (`dashboard/`).
pub fn is_public_read(method: &Method, path: &str) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    match path {
        "/metrics" | "/v1/health" | "/v1/status" | "/v1/history" | "/v1/live" | "/" => true,
        _ if path.starts_with("/assets/") => true,
        _ => {
            // `/v1/services/S/logs`, one non-empty segment for S.
            let mut parts = path.split('/');
            matches!(
                (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next()),
                (Some(""), Some("v1"), Some("services"), Some(s), Some("logs"), None) if !s.is_empty()
            )
        }
    }
}

/// What every request over TCP passes before the router.
pub(super) struct Gate {
    token: watch::Receiver<Option<Arc<Token>>>,
    answering: Arc<Semaphore>,
    refusals: Refusals,
}

impl Gate {
    /// Lets `request` through (holding one of [`MAX_ANSWERING`] slots while its handler
    /// runs), or answers it: 401 without the token where one is needed, 503 when the
    /// listener is answering enough already.
    pub(super) fn admit(
        &self,
        request: &Request<Incoming>,
        peer: Peer,
    ) -> Result<Option<OwnedSemaphorePermit>, Refusal> {
        let (method, path) = (request.method(), request.uri().path());
        if !is_public_read(method, path) {
            if let Err(why) = self.authorize(request.headers()) {
                self.refusals.note(peer, method, path, &why);
                return Err(Refusal::Unauthorized(why));
            }
            if let Peer::Remote { addr } = peer {
                tracing::info!(event = "http_operator_request", %method, path, from = %addr,
                    "http listener: {method} {path} from {addr} (bearer token)");
            }
        }
        match self.answering.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => Err(Refusal::Busy),
        }
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Unauthorized> {
        let token = self.token.borrow().clone();
        let Some(token) = token else {
            return Err(Unauthorized::NoTokenFile);
        };
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(Unauthorized::Missing);
        };
        let value = value.as_bytes();
        let presented = match value.iter().position(|b| *b == b' ') {
            Some(i) if value[..i].eq_ignore_ascii_case(b"bearer") => value[i..].trim_ascii(),
            _ => return Err(Unauthorized::NotBearer),
        };
        if token.matches(presented) {
            Ok(())
        } else {
            Err(Unauthorized::Wrong)
        }
    }
}

/// A request the gate answers itself.
#[derive(Clone, Copy, Debug)]
pub(super) enum Refusal {
    /// It needs the token: 401.
    Unauthorized(Unauthorized),
    /// [`MAX_ANSWERING`] requests are being answered: 503.
    Busy,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized(why) => unauthorized(why),
            Refusal::Busy => {
                let mut response = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the TCP listener is answering {MAX_ANSWERING} requests already; try again"
                    ),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        }
    }
}

/// Why a request that needs the token is refused.
#[derive(Clone, Copy, Debug)]
pub(super) enum Unauthorized {
    NoTokenFile,
    Missing,
    NotBearer,
    Wrong,
}

fn unauthorized(why: Unauthorized) -> Response {
    let (message, challenge) = match why {
        Unauthorized::NoTokenFile => (
            "the operator endpoints are closed on the TCP listener: no http_token_file is configured (use the control socket, or set http_token_file)",
            "Bearer realm=\"vigil\"",
        ),
        Unauthorized::Missing => (
            "this endpoint needs `Authorization: Bearer TOKEN` (the token of http_token_file); only the public reads (/metrics, /v1/health, /v1/status, /v1/history, a service's logs, the dashboard and its /v1/live feed) are open without it",
            "Bearer realm=\"vigil\"",
        ),
        Unauthorized::NotBearer => (
            "the Authorization header must be `Bearer TOKEN`",
            "Bearer realm=\"vigil\", error=\"invalid_request\"",
        ),
        Unauthorized::Wrong => (
            "the bearer token is not the one of http_token_file",
            "Bearer realm=\"vigil\", error=\"invalid_token\"",
        ),
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// Refused tokens, logged at most once per [`REFUSAL_LOG_EVERY`] so that a client
/// guessing tokens cannot fill the log.
#[derive(Default)]
struct Refusals {
    /// When the last line was logged (ms since the epoch), and refusals since.
    logged_at: AtomicU64,
    since: AtomicU64,
}

impl Refusals {
    fn note(&self, peer: Peer, method: &Method, path: &str, why: &Unauthorized) {
        let Peer::Remote { addr } = peer else {
            return;
        };
        let n = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(clock::now().as_millis()).unwrap_or(0);
        let last = self.logged_at.load(Ordering::Relaxed);
        let every = u64::try_from(REFUSAL_LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) < every
            || self
                .logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.since.store(0, Ordering::Relaxed);
        tracing::warn!(event = "http_unauthorized", %method, path, from = %addr, refused = n,
            "http listener: {method} {path} from {addr} refused ({why:?}); {n} refusal(s) since the last such line");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_reads_are_exactly_the_listed_gets() {
        for path in [
            "/metrics",
            "/v1/health",
            "/v1/status",
            "/v1/history",
            "/v1/services/web/logs",
            "/",
            "/assets/app.js",
            "/v1/live",
        ] {
            assert!(is_public_read(&Method::GET, path), "{path}");
            assert!(is_public_read(&Method::HEAD, path), "{path}");
            assert!(!is_public_read(&Method::POST, path), "{path}");
            assert!(!is_public_read(&Method::OPTIONS, path), "{path}");
        }
        for path in [
            "/v1/services/web/restart",
            "/v1/services//logs",
            "/v1/services/web/logs/x",
            "/v1/heartbeat/web/beat",
            "/../../etc/passwd",
            "/v1/statusx",
            "/v1/whoami",
            "/v1/live/x",
            "/metrics/",
        ] {
            assert!(!is_public_read(&Method::GET, path), "{path}");
        }
    }

    #[test]
    fn the_token_matches_only_itself() {
        let token = Token(b"s3cret-token".to_vec().into());
        assert!(token.matches(b"s3cret-token"));
        assert!(!token.matches(b"s3cret-tokeN"));
        assert!(!token.matches(b"s3cret-toke"));
        assert!(!token.matches(b"s3cret-token2"));
        assert!(!token.matches(b""));
        assert_eq!(format!("{token:?}"), "Token(..)");
    }

    #[test]
    fn a_token_file_is_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "  abc123\n").expect("write");
        assert!(Token::read(&path).expect("token").matches(b"abc123"));
        std::fs::write(&path, "\n \n").expect("write");
        let empty = Token::read(&path).expect_err("empty");
        assert!(empty.to_string().contains("is empty"), "{empty}");
        let missing = Token::read(&dir.path().join("nope")).expect_err("missing");
        assert!(missing.to_string().contains("cannot read it"), "{missing}");
    }
}
