//! `max_body = "1GiB"` does not mean a gigabyte of memory: `body_contains` is matched as
//! the body streams. A loopback server streams 200 MiB; the process's peak RSS (VmHWM) may
//! grow by a few MiB, not by the body. Alone in its own test binary, so the peak is this
//! test's.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use vigil_checks::model::{CheckKind, HttpCheck};
use vigil_checks::{ProbeContext, probe};

const BODY: u64 = 200 * 1024 * 1024;
const NEEDLE: &[u8] = b"READY-AT-THE-END";

/// Serves every request with `BODY` bytes of `z`, the last of them `NEEDLE`, written in
/// 64 KiB pieces (the needle straddles two of them).
async fn serve_large() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {BODY}\r\nconnection: close\r\n\r\n"
                );
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b'z'; 64 * 1024];
                let split = NEEDLE.len() as u64 / 2;
                let mut left = BODY - NEEDLE.len() as u64;
                while left > 0 {
                    let n = piece.len().min(usize::try_from(left).unwrap());
                    if stream.write_all(&piece[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
                let (a, b) = NEEDLE.split_at(usize::try_from(split).unwrap());
                let _ = stream.write_all(a).await;
                let _ = stream.flush().await;
                let _ = stream.write_all(b).await;
            });
        }
    });
    (port, task)
}

/// The peak resident set size so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_200_mib_body_is_matched_in_bounded_memory() {
    let (port, server) = serve_large().await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let cx = ProbeContext::new();
    let check = |needle: &str| HttpCheck {
        body_contains: Some(needle.to_owned()),
        max_body: 1 << 30,
        ..support::http(&url)
    };
    let before = peak_rss_kib();

    let found = probe(
        &CheckKind::Http(check("READY-AT-THE-END")),
        Duration::from_secs(120),
        &cx,
    )
    .await;
    assert!(found.passed, "{found:?}");

    let missing = probe(
        &CheckKind::Http(check("NEVER-THERE")),
        Duration::from_secs(120),
        &cx,
    )
    .await;
    assert!(!missing.passed);
    assert!(
        missing.reason.ends_with(&format!(
            "body does not contain \"NEVER-THERE\" (read {BODY} bytes)"
        )),
        "{}",
        missing.reason
    );

    let grew_mib = peak_rss_kib().saturating_sub(before) / 1024;
    server.abort();
    assert!(
        grew_mib < 32,
        "the peak RSS grew by {grew_mib} MiB reading a {} MiB body",
        BODY >> 20
    );
}
