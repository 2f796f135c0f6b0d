//! Shared fixtures for vigil-checks' integration tests: spec constructors, a tiny HTTP(S)
//! responder on loopback, waits on conditions with deadlines, and process liveness.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use vigil_checks::model::{Argv, Check, CheckKind, HttpCheck, OnFailure, Severity};
use vigil_core::CheckName;
use vigil_core::health::Thresholds;

pub fn argv(args: &[&str]) -> Argv {
    Argv::new(args.iter().map(|s| (*s).to_owned()).collect()).expect("non-empty argv")
}

/// An HTTP check with the config defaults.
pub fn http(url: &str) -> HttpCheck {
    HttpCheck::get(url)
}

/// One `http` probe of `check`, with a 5 s deadline.
pub async fn run_http(
    check: HttpCheck,
    cx: &vigil_checks::ProbeContext,
) -> vigil_checks::ProbeOutcome {
    vigil_checks::probe(&CheckKind::Http(check), Duration::from_secs(5), cx).await
}

/// A check with the config defaults, except a short timeout and retry delay.
pub fn check(kind: CheckKind) -> Check {
    Check {
        name: CheckName::new("probe"),
        kind,
        every: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        retries: 1,
        retry_delay: Duration::from_millis(20),
        thresholds: Thresholds::default(),
        grace: Duration::ZERO,
        on_failure: OnFailure::Restart,
        severity: Severity::Critical,
    }
}

/// Polls `cond` every 10ms; panics naming `what` if it is still false after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// True when `pid` no longer runs: gone from /proc, or a zombie waiting for its parent
/// (a reparented grandchild may stay a zombie for a while in a container).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // The state follows the parenthesised command name, which may contain spaces.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            matches!(state, Some('Z' | 'X'))
        }
    }
}

/// SIGKILLs a process the test started indirectly when the test ends, pass or fail.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = i32::try_from(self.0)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// What the test server saw.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the test server answers a request.
pub enum Reply {
    Status {
        code: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// Read the request, then never answer.
    Silent,
    /// Announce `len` bytes and stream them (after `prefix`) until the client goes away.
    Stream { prefix: Vec<u8>, len: u64 },
}

impl Reply {
    pub fn status(code: u16, body: &str) -> Reply {
        Reply::Status {
            code,
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    pub fn redirect(code: u16, location: &str) -> Reply {
        Reply::Status {
            code,
            body: String::new(),
            headers: vec![("Location".to_owned(), location.to_owned())],
        }
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A loopback HTTP/1.1 server; stops (with all its connections) when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
    /// Bytes written by `Reply::Stream` answers.
    pub streamed: Arc<AtomicU64>,
    /// Set when a `Reply::Stream` answer stopped (client gone or all sent).
    pub stream_done: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
    serve_with(None, Arc::new(handler)).await
}

pub async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> Server {
    serve_with(Some(acceptor), Arc::new(handler)).await
}

async fn serve_with(tls: Option<tokio_rustls::TlsAcceptor>, handler: Handler) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let streamed = Arc::new(AtomicU64::new(0));
    let stream_done = Arc::new(AtomicBool::new(false));
    let state = ConnState {
        handler,
        requests: requests.clone(),
        streamed: streamed.clone(),
        stream_done: stream_done.clone(),
    };
    let task = tokio::spawn(async move {
        // Dropping the set (when this task is aborted) aborts every connection.
        let mut conns = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            let tls = tls.clone();
            conns.spawn(async move {
                match tls {
                    Some(acceptor) => {
                        // A client that rejects our certificate fails the handshake.
                        if let Ok(stream) = acceptor.accept(stream).await {
                            state.handle(stream).await;
                        }
                    }
                    None => state.handle(stream).await,
                }
            });
            while conns.try_join_next().is_some() {}
        }
    });
    Server {
        addr,
        requests,
        streamed,
        stream_done,
        task,
    }
}

#[derive(Clone)]
struct ConnState {
    handler: Handler,
    requests: Arc<Mutex<Vec<Request>>>,
    streamed: Arc<AtomicU64>,
    stream_done: Arc<AtomicBool>,
}

impl ConnState {
    async fn handle<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S) {
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        self.requests.lock().unwrap().push(request.clone());
        match (self.handler)(&request) {
            Reply::Status {
                code,
                body,
                headers,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {code} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reason(code),
                    body.len()
                );
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
            Reply::Silent => std::future::pending::<()>().await,
            Reply::Stream { prefix, len } => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_ok()
                    && stream.write_all(&prefix).await.is_ok()
                {
                    let chunk = vec![b'z'; 64 * 1024];
                    let mut left = len.saturating_sub(prefix.len() as u64);
                    while left > 0 {
                        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                        if stream.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                        self.streamed.fetch_add(n as u64, Ordering::SeqCst);
                        left -= n as u64;
                    }
                }
                self.stream_done.store(true, Ordering::SeqCst);
            }
        }
    }
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Request {
        method,
        path,
        headers,
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}
