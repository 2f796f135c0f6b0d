//! WebSocket upgrade probes against tiny tokio servers on loopback.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use vigil_checks::model::{CheckKind, StatusSet, TlsOptions, WebSocketCheck};
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Clone, Copy)]
enum Mode {
    Accept,
    WrongAccept,
    UpgradeRequired,
    Stall,
}

/// The correct `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2), computed independently
/// of the probe: SHA-1 via ring, base64 via the base64 crate.
fn accept_for(key: &str) -> String {
    use base64::Engine as _;
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

struct Server {
    port: u16,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            conns.spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let key = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                let upgrade = text.contains("\r\nUpgrade: websocket\r\n")
                    && text.contains("\r\nConnection: Upgrade\r\n")
                    && text.contains("\r\nSec-WebSocket-Version: 13\r\n")
                    && text.contains("\r\nX-Probe: yes\r\n")
                    && text.starts_with("GET /ws?x=1 HTTP/1.1\r\n");
                let reply = match mode {
                    Mode::Stall => {
                        std::future::pending::<()>().await;
                        return;
                    }
                    _ if !upgrade => "HTTP/1.1 400 Bad Request\r\n\r\n".to_owned(),
                    Mode::Accept => format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                        accept_for(&key)
                    ),
                    Mode::WrongAccept => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
                        .to_owned(),
                    Mode::UpgradeRequired => {
                        "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n".to_owned()
                    }
                };
                let _ = stream.write_all(reply.as_bytes()).await;
                // Hold the connection until the client closes it.
                let _ = stream.read(&mut buf).await;
            });
            while conns.try_join_next().is_some() {}
        }
    });
    Server { port, task }
}

fn ws(port: u16) -> WebSocketCheck {
    WebSocketCheck {
        url: format!("ws://127.0.0.1:{port}/ws?x=1"),
        expect_status: StatusSet(vec![(101, 101)]),
        headers: vec![("X-Probe".to_owned(), "yes".to_owned())],
        proxy: None,
        tls: TlsOptions::default(),
    }
}

async fn run(check: WebSocketCheck, timeout: Duration) -> ProbeOutcome {
    probe(&CheckKind::WebSocket(check), timeout, &ProbeContext::new()).await
}

#[tokio::test]
async fn a_correct_101_passes() {
    let server = serve(Mode::Accept).await;
    let out = run(ws(server.port), Duration::from_secs(5)).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason.starts_with("101 Switching Protocols in "),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn a_wrong_accept_header_fails() {
    let server = serve(Mode::WrongAccept).await;
    let out = run(ws(server.port), Duration::from_secs(5)).await;
    assert!(!out.passed);
    assert!(
        out.reason
            .contains("101 but Sec-WebSocket-Accept is \"AAAAAAAAAAAAAAAAAAAAAAAAAAA=\", expected"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn upgrade_required_fails_by_default_and_passes_when_expected() {
    let server = serve(Mode::UpgradeRequired).await;
    let out = run(ws(server.port), Duration::from_secs(5)).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!(
            "websocket ws://127.0.0.1:{}/ws?x=1: expected status 101, got 426 Upgrade Required",
            server.port
        )
    );
    let check = WebSocketCheck {
        expect_status: StatusSet(vec![(426, 426)]),
        ..ws(server.port)
    };
    let out = run(check, Duration::from_secs(5)).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason.starts_with("426 Upgrade Required in "),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn a_stalled_server_fails_within_the_timeout() {
    let server = serve(Mode::Stall).await;
    let out = run(ws(server.port), Duration::from_millis(300)).await;
    assert!(!out.passed);
    assert!(
        out.reason.ends_with("timed out after 300ms"),
        "{}",
        out.reason
    );
    assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = run(ws(port), Duration::from_secs(5)).await;
    assert!(!out.passed);
    assert!(
        out.reason.ends_with(": connection refused"),
        "{}",
        out.reason
    );
}
