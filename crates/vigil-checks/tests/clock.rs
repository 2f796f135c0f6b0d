//! `clock` probes against an in-test SNTP responder on loopback that serves the wall clock
//! plus a chosen offset (or garbage, or nothing).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use vigil_checks::model::{CheckKind, ClockCheck};
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

#[derive(Clone, Copy)]
enum Answer {
    Offset(f64),
    Garbage,
    KissOfDeath,
    Silent,
}

#[expect(
    clippy::disallowed_methods,
    reason = "an SNTP server serves the wall clock"
)]
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn ntp(t: f64) -> [u8; 8] {
    let t = t + 2_208_988_800.0;
    let secs = t.floor();
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(secs as u32).to_be_bytes());
    out[4..].copy_from_slice(&(((t - secs) * 4_294_967_296.0) as u32).to_be_bytes());
    out
}

struct Responder {
    port: u16,
    task: JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn responder(answer: Answer) -> Responder {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            if n < 48 {
                continue;
            }
            let reply: Vec<u8> = match answer {
                Answer::Silent => continue,
                Answer::Garbage => b"hello there".to_vec(),
                Answer::Offset(_) | Answer::KissOfDeath => {
                    let offset = match answer {
                        Answer::Offset(o) => o,
                        _ => 0.0,
                    };
                    let now = ntp(unix_now() + offset);
                    let mut p = vec![0x24, 2, 6, 0xec, 0, 0, 0, 0, 0, 0, 0, 0];
                    p.extend_from_slice(b"TEST");
                    p.extend_from_slice(&now); // reference
                    p.extend_from_slice(&buf[40..48]); // originate = the client's transmit
                    p.extend_from_slice(&now); // receive
                    p.extend_from_slice(&now); // transmit
                    if matches!(answer, Answer::KissOfDeath) {
                        p[1] = 0;
                        p[12..16].copy_from_slice(b"DENY");
                    }
                    p
                }
            };
            let _ = socket.send_to(&reply, from).await;
        }
    });
    Responder { port, task }
}

fn clock(ports: &[u16]) -> ClockCheck {
    ClockCheck {
        servers: ports.iter().map(|p| ("127.0.0.1".to_owned(), *p)).collect(),
        warn: Duration::from_secs(2),
        critical: Duration::from_secs(4),
    }
}

async fn run(check: ClockCheck, timeout: Duration) -> ProbeOutcome {
    probe(&CheckKind::Clock(check), timeout, &ProbeContext::new()).await
}

#[tokio::test]
async fn an_accurate_clock_passes() {
    let server = responder(Answer::Offset(0.0)).await;
    let out = run(clock(&[server.port]), Duration::from_secs(5)).await;
    assert!(out.passed && !out.warning, "{out:?}");
    assert!(
        out.reason.starts_with("clock offset +0.00")
            || out.reason.starts_with("clock offset -0.00"),
        "{}",
        out.reason
    );
    assert!(
        out.reason
            .contains(&format!("against 127.0.0.1:{}", server.port)),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn three_seconds_off_warns() {
    let server = responder(Answer::Offset(3.0)).await;
    let out = run(clock(&[server.port]), Duration::from_secs(5)).await;
    assert!(out.passed && out.warning, "{out:?}");
    assert!(
        out.reason.starts_with("clock offset +3.00")
            || out.reason.starts_with("clock offset +2.99"),
        "{}",
        out.reason
    );
    assert!(out.reason.ends_with(", warn above 2s"), "{}", out.reason);
}

#[tokio::test]
async fn five_seconds_behind_fails() {
    let server = responder(Answer::Offset(-5.0)).await;
    let out = run(clock(&[server.port]), Duration::from_secs(5)).await;
    assert!(!out.passed, "{out:?}");
    assert!(
        out.reason.starts_with("clock offset -5.00")
            || out.reason.starts_with("clock offset -4.99"),
        "{}",
        out.reason
    );
    assert!(
        out.reason.ends_with(", critical above 4s"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn garbage_fails_clearly_and_quickly() {
    let server = responder(Answer::Garbage).await;
    let out = run(clock(&[server.port]), Duration::from_secs(5)).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!(
            "clock: 127.0.0.1:{}: server answered garbage (11 bytes, expected at least 48)",
            server.port
        )
    );
    assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);
}

#[tokio::test]
async fn kiss_of_death_is_named() {
    let server = responder(Answer::KissOfDeath).await;
    let out = run(clock(&[server.port]), Duration::from_secs(5)).await;
    assert!(!out.passed);
    assert!(
        out.reason.ends_with("server sent kiss-o'-death \"DENY\""),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_deadline() {
    let server = responder(Answer::Silent).await;
    let out = run(clock(&[server.port]), Duration::from_millis(500)).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("clock: 127.0.0.1:{}: no answer within 400ms", server.port)
    );
    assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);
}

/// The reason names the wait as it was: 80% of a 1.5 s attempt is 1.2 s, not "2s".
#[tokio::test]
async fn a_silent_server_is_reported_with_the_real_wait() {
    let server = responder(Answer::Silent).await;
    let out = run(clock(&[server.port]), Duration::from_millis(1500)).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("clock: 127.0.0.1:{}: no answer within 1.2s", server.port)
    );
}

#[tokio::test]
async fn the_best_answer_wins_when_another_server_is_silent() {
    let silent = responder(Answer::Silent).await;
    let good = responder(Answer::Offset(0.0)).await;
    let out = run(clock(&[silent.port, good.port]), Duration::from_millis(800)).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason
            .contains(&format!("against 127.0.0.1:{}", good.port)),
        "{}",
        out.reason
    );
}
