//! The plain HTTP/1.1 client (probe/http1.rs) against scripted servers on loopback: it
//! keeps connections alive, reads every framing RFC 9112 allows, and leaves whatever it
//! does not read cleanly to reqwest, so the reasons are reqwest's.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{http, run_http as run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vigil_checks::ProbeContext;
use vigil_checks::model::{HttpCheck, Pattern};

/// A server that answers each request with `reply(request head)`'s bytes and, when
/// `close` says so, closes the connection after it.
struct Raw {
    port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Raw {
    async fn start(reply: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static, close: bool) -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(reply);
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let (reply, r) = (reply.clone(), r.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        r.fetch_add(1, Ordering::SeqCst);
                        if stream.write_all(&reply(&head)).await.is_err() {
                            return;
                        }
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        Raw {
            port,
            connections,
            requests,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A keep-alive server answering `200 OK`, and the request heads it has read.
async fn recording() -> (Raw, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let server = Raw::start(
        move |head| {
            s.lock().unwrap().push(head.to_owned());
            ok("")
        },
        false,
    )
    .await;
    (server, seen)
}

#[tokio::test]
async fn a_keep_alive_connection_serves_every_run() {
    let server = Raw::start(|_| ok("ready"), false).await;
    let cx = ProbeContext::new();
    for _ in 0..10 {
        let out = run(http(&server.url("127.0.0.1", "/health")), &cx).await;
        assert!(out.passed, "{out:?}");
        assert!(out.reason.starts_with("200 OK in "), "{}", out.reason);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 10);
    // No reqwest client was needed.
    assert_eq!(cx.cached_clients(), 0);
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced() {
    let server = Raw::start(|_| ok("ready"), true).await;
    let cx = ProbeContext::new();
    for _ in 0..5 {
        let out = run(http(&server.url("127.0.0.1", "/")), &cx).await;
        assert!(out.passed, "{out:?}");
        // The server's close reaches us before the next run.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 5);
    assert_eq!(cx.cached_clients(), 0);
}

#[tokio::test]
async fn the_request_names_the_host_the_agent_and_the_configured_headers() {
    let (server, seen) = recording().await;
    let cx = ProbeContext::new();
    let check = HttpCheck {
        method: "HEAD".to_owned(),
        headers: vec![("X-Probe".to_owned(), "vigil".to_owned())],
        ..http(&server.url("127.0.0.1", "/p?q=1"))
    };
    assert!(run(check, &cx).await.passed);
    let head = seen.lock().unwrap()[0].clone();
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines[0], "HEAD /p?q=1 HTTP/1.1");
    let port = server.port;
    for want in [
        "x-probe: vigil".to_owned(),
        format!("user-agent: vigil/{}", env!("CARGO_PKG_VERSION")),
        "accept: */*".to_owned(),
        format!("host: 127.0.0.1:{port}"),
    ] {
        assert!(lines.contains(&want.as_str()), "{want} in {lines:?}");
    }
}

/// Requests are prepared once per URL and kept; checks of one URL that differ in method
/// or headers must each still send their own.
#[tokio::test]
async fn checks_of_one_url_send_their_own_method_and_headers() {
    let (server, seen) = recording().await;
    let cx = ProbeContext::new();
    let url = server.url("127.0.0.1", "/same");
    let with = |method: &str, header: &str| HttpCheck {
        method: method.to_owned(),
        headers: vec![("X-Check".to_owned(), header.to_owned())],
        ..http(&url)
    };
    let order = [("GET", "a"), ("GET", "b"), ("HEAD", "b"), ("GET", "a")];
    for _ in 0..2 {
        for (method, header) in order {
            assert!(run(with(method, header), &cx).await.passed);
        }
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2 * order.len());
    for (head, (method, header)) in seen.iter().zip(order.iter().cycle()) {
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], format!("{method} /same HTTP/1.1"), "{head}");
        let want = format!("x-check: {header}");
        assert!(lines.contains(&want.as_str()), "{want} in {lines:?}");
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn chunked_close_delimited_and_empty_bodies_are_read() {
    let server = Raw::start(
        |head| {
            let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
            match path.as_str() {
                // READY split across chunks, with an extension and a trailer.
                "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nstRE\r\n3\r\nADY\r\n0\r\nX-T: 1\r\n\r\n".to_vec(),
                "/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                _ => ok("nothing"),
            }
        },
        false,
    )
    .await;
    // A body without a length ends when the server closes.
    let closing = Raw::start(|_| b"HTTP/1.0 200 OK\r\n\r\nstatus: READY\n".to_vec(), true).await;
    let cx = ProbeContext::new();
    let pattern = Pattern(regex::Regex::new("RE.DY").unwrap());
    for url in [
        server.url("127.0.0.1", "/chunked"),
        closing.url("127.0.0.1", "/close"),
    ] {
        let check = HttpCheck {
            body_contains: Some("READY".to_owned()),
            body_regex: Some(pattern.clone()),
            ..http(&url)
        };
        let out = run(check, &cx).await;
        assert!(out.passed, "{url}: {out:?}");
    }
    let out = run(http(&server.url("127.0.0.1", "/204")), &cx).await;
    assert!(
        out.passed && out.reason.starts_with("204 No Content in "),
        "{out:?}"
    );
    let missing = HttpCheck {
        body_contains: Some("READY".to_owned()),
        ..http(&server.url("127.0.0.1", "/other"))
    };
    let out = run(missing, &cx).await;
    assert!(
        out.reason
            .ends_with(": body does not contain \"READY\" (read 7 bytes)"),
        "{}",
        out.reason
    );
    assert_eq!(cx.cached_clients(), 0);
}

/// Responses the plain client does not read are sent again through reqwest: the reason
/// is the one reqwest gives when it alone talks to the same server (by name, which the
/// plain client leaves to reqwest).
#[tokio::test]
async fn what_it_does_not_read_gets_reqwests_reason() {
    let cases: [(&str, &[u8]); 4] = [
        ("garbage", b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
        (
            "two lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        ),
        (
            "cut body",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstarting and then nothing",
        ),
        (
            "bad chunk",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ),
    ];
    for (what, bytes) in cases {
        let bytes = bytes.to_vec();
        let server = Raw::start(move |_| bytes.clone(), true).await;
        let check = |host: &str| HttpCheck {
            body_contains: Some("READY".to_owned()),
            ..http(&server.url(host, "/"))
        };
        let by_ip = run(check("127.0.0.1"), &ProbeContext::new()).await;
        let by_name = run(check("localhost"), &ProbeContext::new()).await;
        let after_label = |r: &str| r.split_once(": ").map(|(_, rest)| rest.to_owned());
        assert!(!by_ip.passed, "{what}: {by_ip:?}");
        assert!(!by_ip.reason.contains("timed out"), "{what}: {by_ip:?}");
        eprintln!("{what}: {}", by_ip.reason);
        assert_eq!(
            by_ip.passed, by_name.passed,
            "{what}: {by_ip:?} / {by_name:?}"
        );
        assert_eq!(
            after_label(&by_ip.reason),
            after_label(&by_name.reason),
            "{what}"
        );
    }
}
