//! The connection machinery both listeners share: the control socket (`server.rs`) and
//! the optional TCP listener (`http.rs`) accept here, and each connection is served by
//! hyper inside the same limits (connections, request head size, header/idle/write
//! timeouts, no request bodies; docs/cli-json.md).
//!
//! Owns: the accept loop (connection slots, the 503 for one too many), a connection's
//! deadlines (`Guarded`), a TLS handshake within the header deadline, and the gate each
//! request passes before the router ([`Access`]: no body; over TCP, the bearer token).
//! Must not: know what a route does, or act on a request itself.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::http::Gate;
use super::server::ApiError;

/// Who is on the other end of a connection, in every request's extensions.
#[derive(Clone, Copy, Debug)]
pub(super) enum Peer {
    /// On the control socket: the uid from its peer credentials (`SO_PEERCRED`).
    Local { uid: Option<u32> },
    /// Over the TCP listener: the address the connection came from (a TCP peer has no
    /// uid; what it may do is decided by the bearer token, see `http.rs`).
    Remote { addr: SocketAddr },
}

/// What a listener lets through to the router.
#[derive(Clone)]
pub(super) enum Access {
    /// The control socket: its file's permissions decide who connects; every route is
    /// open to them.
    Socket,
    /// The TCP listener: public reads, everything else only with the bearer token, and a
    /// bound on requests being answered at once (`http.rs`).
    Tcp(Arc<Gate>),
}

/// A listening socket.
pub(super) enum Listener {
    Unix(UnixListener),
    Tcp {
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
    },
}

/// An accepted connection, before its TLS handshake (if any).
enum Accepted {
    Unix(UnixStream),
    Tcp(TcpStream, SocketAddr),
}

impl Listener {
    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
            Listener::Tcp { listener, .. } => {
                let (stream, addr) = listener.accept().await?;
                // Answers are small and written at once: no Nagle delay on them.
                let _ = stream.set_nodelay(true);
                Ok(Accepted::Tcp(stream, addr))
            }
        }
    }

    fn tls(&self) -> Option<TlsAcceptor> {
        match self {
            Listener::Tcp { tls, .. } => tls.clone(),
            Listener::Unix(_) => None,
        }
    }
}

/// A connection's byte stream.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

macro_rules! each_conn {
    ($conn:expr, $io:ident => $body:expr) => {
        match $conn {
            Conn::Unix($io) => $body,
            Conn::Tcp($io) => $body,
            Conn::Tls($io) => $body,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_conn!(self.get_mut(), io => Pin::new(io).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_conn!(self.get_mut(), io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each_conn!(self.get_mut(), io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each_conn!(self, io => io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_conn!(self.get_mut(), io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_conn!(self.get_mut(), io => Pin::new(io).poll_shutdown(cx))
    }
}

/// The most connections served at once, by each listener. The CLI opens one connection per
/// command, so this is far above real use, and each connection costs one task and at most
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

/// Serves `app` on `listener` until `cancel`, then calls `closed` (the control socket
/// removes its file) and gives the answers in flight [`SHUTDOWN_GRACE`]. `label` names
/// the listener in log lines (`control socket`, `http listener`).
///
/// Each connection is served by hyper directly (`axum::serve` has no timeouts) inside the
/// limits above, so no client can hold more than one bounded slot, and none can make a
/// check or restart wait.
pub(super) async fn serve(
    listener: Listener,
    app: Router,
    access: Access,
    label: &'static str,
    cancel: CancellationToken,
    closed: impl FnOnce(),
) {
    let what = match &access {
        Access::Socket => "control",
        Access::Tcp(_) => "TCP",
    };
    let full = Router::new().fallback(move || async move {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the daemon is serving {MAX_CONNECTIONS} {what} connections already; try again when some have closed"
            ),
        )
    });
    let limits = Limits::from_env();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let tls = listener.tls();
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
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, event = "api_accept_failed", "{label}: cannot accept a connection");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        let conn = Connection {
            tls: tls.clone(),
            access: access.clone(),
            cancel: cancel.clone(),
            label,
        };
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            refused_logged = false;
            connections.spawn(conn.serve(stream, app.clone(), slot, limits, true));
            continue;
        }
        if !refused_logged {
            refused_logged = true;
            tracing::warn!(
                event = "api_connections_full",
                limit = MAX_CONNECTIONS,
                "{label}: {MAX_CONNECTIONS} connections open; refusing more until some close"
            );
        }
        // Answered 503 in the documented shape (after its request: an HTTP client takes an
        // answer before its request for a broken connection), or closed when even the
        // refusals are at their bound.
        if let Ok(slot) = refusing.clone().try_acquire_owned() {
            connections.spawn(conn.serve(stream, full.clone(), slot, limits.refusing(), false));
        }
    }
    drop(listener);
    closed();
    // Each connection saw `cancel` too: it finishes the answer in flight, then closes.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
}

/// What a connection's task needs besides its stream.
struct Connection {
    tls: Option<TlsAcceptor>,
    access: Access,
    cancel: CancellationToken,
    label: &'static str,
}

impl Connection {
    /// One connection: its TLS handshake (within the header deadline), then hyper's HTTP/1
    /// server inside [`Limits`], holding its slot until it closes.
    async fn serve(
        self,
        accepted: Accepted,
        app: Router,
        slot: OwnedSemaphorePermit,
        limits: Limits,
        keep_alive: bool,
    ) {
        let head_by = Instant::now() + limits.header;
        let (io, peer) = match accepted {
            Accepted::Unix(stream) => {
                let uid = stream.peer_cred().ok().map(|c| c.uid());
                (Conn::Unix(stream), Peer::Local { uid })
            }
            Accepted::Tcp(stream, addr) => {
                let peer = Peer::Remote { addr };
                match &self.tls {
                    None => (Conn::Tcp(stream), peer),
                    Some(acceptor) => {
                        let handshake = tokio::select! {
                            () = self.cancel.cancelled() => return,
                            h = tokio::time::timeout_at(head_by, acceptor.accept(stream)) => h,
                        };
                        match handshake {
                            Ok(Ok(tls)) => (Conn::Tls(Box::new(tls)), peer),
                            Ok(Err(error)) => {
                                tracing::debug!(%error, %addr, "{}: TLS handshake failed", self.label);
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%addr, "{}: no TLS handshake in time", self.label);
                                return;
                            }
                        }
                    }
                }
            }
        };
        let in_flight = Arc::new(InFlight::default());
        let io = TokioIo::new(Guarded::new(io, in_flight.clone(), limits, head_by));
        let router = TowerToHyperService::new(app);
        let access = self.access;
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(peer);
            // Counted from the moment the head is parsed (this closure runs in hyper's
            // dispatch, not when the future is first polled) until the body is written.
            let busy = in_flight.enter();
            let admitted = match refuse_body(&request) {
                Some(refused) => Err(refused),
                None => match &access {
                    Access::Socket => Ok(None),
                    Access::Tcp(gate) => gate
                        .admit(&request, peer)
                        .map_err(IntoResponse::into_response),
                },
            };
            let answer: Pin<Box<dyn Future<Output = Response> + Send>> = match admitted {
                Err(refused) => Box::pin(std::future::ready(refused)),
                Ok(permit) => {
                    let routed = router.call(request);
                    Box::pin(async move {
                        let response = routed.await.unwrap_or_else(|never| match never {});
                        // A request's share of the listener ends with its handler; a
                        // streamed body (a followed `logs`) no longer counts.
                        drop(permit);
                        response
                    })
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
            () = self.cancel.cancelled() => {
                connection.as_mut().graceful_shutdown();
                tokio::time::timeout(SHUTDOWN_GRACE, connection.as_mut())
                    .await
                    .unwrap_or(Ok(()))
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "{}: connection closed", self.label);
        }
        drop(slot);
    }
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
    io: Conn,
    in_flight: Arc<InFlight>,
    limits: Limits,
    phase: Phase,
    read_deadline: Pin<Box<Sleep>>,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    /// `head_by`: when the first request's head must be complete (a TLS handshake has
    /// already used part of [`Limits::header`]).
    fn new(io: Conn, in_flight: Arc<InFlight>, limits: Limits, head_by: Instant) -> Guarded {
        Guarded {
            io,
            in_flight,
            limits,
            phase: Phase::Head,
            read_deadline: Box::pin(tokio::time::sleep_until(head_by)),
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
