//! TCP connect and listening-socket probes against real sockets on loopback.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use support::check;
use vigil_checks::model::{CheckKind, ListeningCheck, Protocol, TcpCheck};
use vigil_checks::{ProbeContext, ProbeOutcome, probe, run_check};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn run(kind: CheckKind) -> ProbeOutcome {
    probe(&kind, TIMEOUT, &ProbeContext::new()).await
}

fn tcp(host: &str, port: u16) -> CheckKind {
    CheckKind::Tcp(TcpCheck {
        host: host.to_owned(),
        port,
    })
}

fn listening(port: u16, protocol: Protocol, address: Option<IpAddr>) -> CheckKind {
    CheckKind::Listening(ListeningCheck {
        port,
        protocol,
        address,
    })
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn tcp_connect_passes_when_something_listens() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = run(tcp("127.0.0.1", port)).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason
            .starts_with(&format!("connected to 127.0.0.1:{port} in ")),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn tcp_connect_tries_every_resolved_address() {
    // `localhost` may resolve to ::1 first; only 127.0.0.1 listens.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = run(tcp("localhost", port)).await;
    assert!(out.passed, "{out:?}");
}

/// A listener that never accepts, with an accept queue of one, filled: the kernel drops
/// the next SYN, so a connect stays in progress until the client sends its SYN again
/// (after 1 s) and finds room. Returns the listener (keep it) and the queued connection.
fn full_listener() -> (rustix::fd::OwnedFd, std::net::TcpStream, u16) {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    rustix::net::bind(&fd, &any).unwrap();
    rustix::net::listen(&fd, 0).unwrap();
    let port = std::net::SocketAddr::try_from(rustix::net::getsockname(&fd).unwrap())
        .unwrap()
        .port();
    let queued = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    (fd, queued, port)
}

/// The path for a connect still in progress when it returns (not the common loopback
/// case, which settles without the runtime): it times out with the usual reason, and it
/// completes when the listener makes room before the deadline.
#[tokio::test]
async fn a_tcp_connect_still_in_progress_is_awaited() {
    let (listener, _queued, port) = full_listener();
    let cx = ProbeContext::new();
    let out = probe(&tcp("127.0.0.1", port), Duration::from_millis(300), &cx).await;
    assert!(!out.passed, "{out:?}");
    assert!(out.reason.contains("timed out"), "{}", out.reason);

    // Room in the queue after 200 ms: the SYN sent again (at ~1 s) gets through.
    let accepter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let accepted = rustix::net::accept(&listener).unwrap();
        (listener, accepted)
    });
    let out = probe(&tcp("127.0.0.1", port), Duration::from_secs(10), &cx).await;
    let _accepted = accepter.join().unwrap();
    assert!(out.passed, "{out:?}");
}

#[tokio::test]
async fn tcp_connection_refused() {
    let (_reserved, port) = vigil_test_helpers::refused_port();
    let out = run(tcp("127.0.0.1", port)).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("tcp 127.0.0.1:{port}: connection refused")
    );
}

#[tokio::test]
async fn listening_tcp_socket_is_found_with_address_filter() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();

    let out = run(listening(port, Protocol::Tcp, None)).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("tcp socket listening on port {port} (1 socket)")
    );

    let out = run(listening(
        port,
        Protocol::Tcp,
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ))
    .await;
    assert!(out.passed, "{out:?}");

    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let out = run(listening(port, Protocol::Tcp, Some(other))).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("no tcp socket listening on 127.0.0.2:{port} (found only 127.0.0.1:{port})")
    );

    drop(listener);
    let out = run(listening(port, Protocol::Tcp, None)).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("no tcp socket listening on port {port}")
    );
}

#[tokio::test]
async fn an_established_connection_is_not_listening() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (_server_side, _) = listener.accept().await.unwrap();
    let client_port = client.local_addr().unwrap().port();
    let out = run(listening(client_port, Protocol::Tcp, None)).await;
    assert!(!out.passed, "{out:?}");
}

#[tokio::test]
async fn listening_udp_socket_is_found() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();

    let out = run(listening(port, Protocol::Udp, None)).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(out.reason, format!("udp socket bound to 127.0.0.1:{port}"));

    // No TCP socket on that port.
    let out = run(listening(port, Protocol::Tcp, None)).await;
    assert!(!out.passed);

    drop(socket);
    let out = run(listening(port, Protocol::Udp, None)).await;
    assert!(!out.passed);
    assert_eq!(out.reason, format!("no udp socket bound to port {port}"));
}

#[tokio::test]
async fn retries_count_attempts_on_a_refused_port() {
    let port = free_port();
    let mut c = check(tcp("127.0.0.1", port));
    c.retries = 2;
    let run = run_check(&c, &ProbeContext::new()).await;
    assert_eq!(run.attempts.len(), 2);
    assert_eq!(
        run.reason,
        format!("tcp 127.0.0.1:{port}: connection refused (attempt 2/2)")
    );
}
