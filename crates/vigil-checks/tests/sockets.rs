//! `kind = "sockets"` against real loopback connections, through both the sock_diag
//! netlink path and the `/proc/net/tcp` fallback.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::wait_until;
use vigil_checks::model::{CheckKind, Side, SocketsCheck, TcpState};
use vigil_checks::probe::sockets::{Method, Walk, count, count_netlink_walk};
use vigil_checks::{ProbeContext, probe};

const N: usize = 7;

fn spec(port: u16, state: TcpState, side: Side, max: u32) -> SocketsCheck {
    SocketsCheck {
        port,
        state,
        side,
        max,
    }
}

/// A server on 127.0.0.1:0 holding `N` accepted connections whose clients have closed:
/// `N` server-side sockets in CLOSE-WAIT on the server's port.
struct CloseWait {
    port: u16,
    _listener: TcpListener,
    _accepted: Vec<TcpStream>,
}

fn close_wait() -> CloseWait {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut accepted = Vec::new();
    for _ in 0..N {
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        accepted.push(server_side);
        drop(client);
    }
    CloseWait {
        port,
        _listener: listener,
        _accepted: accepted,
    }
}

fn counted(check: &SocketsCheck, method: Method) -> u64 {
    count(check, method).unwrap()
}

#[tokio::test]
async fn close_wait_sockets_are_counted_by_both_paths() {
    let server = close_wait();
    let check = spec(server.port, TcpState::CloseWait, Side::Local, 5);
    // The FIN of each client has been processed once every socket is in CLOSE-WAIT.
    wait_until(
        "all server sockets in close-wait",
        Duration::from_secs(5),
        || counted(&check, Method::Netlink) == N as u64,
    )
    .await;
    assert_eq!(counted(&check, Method::Proc), N as u64);
    assert_eq!(counted(&check, Method::Auto), N as u64);
    // The same port, other states: none established, and the listener is one LISTEN.
    let est = spec(server.port, TcpState::Established, Side::Local, 0);
    assert_eq!(counted(&est, Method::Netlink), 0);
    assert_eq!(counted(&est, Method::Proc), 0);
    let listen = spec(server.port, TcpState::Listen, Side::Local, 0);
    assert_eq!(counted(&listen, Method::Netlink), 1);
    assert_eq!(counted(&listen, Method::Proc), 1);

    let cx = ProbeContext::new();
    let out = probe(&CheckKind::Sockets(check), Duration::from_secs(5), &cx).await;
    assert!(!out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!(
            "{N} tcp sockets in close-wait on local port {}, expected at most 5",
            server.port
        )
    );
    let roomy = spec(server.port, TcpState::CloseWait, Side::Local, N as u32);
    let out = probe(&CheckKind::Sockets(roomy), Duration::from_secs(5), &cx).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!(
            "{N} tcp sockets in close-wait on local port {} (at most {N})",
            server.port
        )
    );
}

#[tokio::test]
async fn remote_side_counts_client_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut held = Vec::new();
    for _ in 0..3 {
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        held.push((client, server_side));
    }
    // Remote port = the server's: the 3 client sockets only.
    let remote = spec(port, TcpState::Established, Side::Remote, 2);
    assert_eq!(counted(&remote, Method::Netlink), 3);
    assert_eq!(counted(&remote, Method::Proc), 3);
    // Local port = the server's: the 3 accepted sockets only.
    let local = spec(port, TcpState::Established, Side::Local, 2);
    assert_eq!(counted(&local, Method::Netlink), 3);
    assert_eq!(counted(&local, Method::Proc), 3);
    let out = probe(
        &CheckKind::Sockets(remote),
        Duration::from_secs(5),
        &ProbeContext::new(),
    )
    .await;
    assert!(!out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("3 tcp sockets in established on remote port {port}, expected at most 2")
    );
}

#[tokio::test]
async fn ipv6_sockets_count_too() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        // No IPv6 loopback in this environment: the v4 tests above cover the logic.
        assert!(std::fs::read_to_string("/proc/net/if_inet6").map_or(true, |s| !s.contains("lo")));
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("::1", port)).unwrap();
    let (_server_side, _) = listener.accept().unwrap();
    let local = spec(port, TcpState::Established, Side::Local, 0);
    assert_eq!(counted(&local, Method::Netlink), 1);
    assert_eq!(counted(&local, Method::Proc), 1);
    drop(client);
}

/// The single-walk (legacy, both families) dump and the per-family dumps agree, for v4
/// and v6 sockets, both sides, and states that live in the listening and established
/// tables; `Method::Netlink` (which prefers the single walk) and `/proc` agree with them.
#[test]
fn single_walk_and_per_family_dumps_agree() {
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = v4.local_addr().unwrap().port();
    // The same port on ::1 when there is IPv6 (a port free on 127.0.0.1 usually is).
    let v6 = TcpListener::bind(("::1", port)).ok();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
        held.push(v4.accept().unwrap().0);
    }
    let v6_conns = if let Some(v6) = &v6 {
        for _ in 0..2 {
            held.push(TcpStream::connect(("::1", port)).unwrap());
            held.push(v6.accept().unwrap().0);
        }
        2
    } else {
        0
    };
    let listeners = 1 + u64::from(v6.is_some());
    let cases = [
        (TcpState::Established, Side::Local, 4 + v6_conns),
        (TcpState::Established, Side::Remote, 4 + v6_conns),
        (TcpState::Listen, Side::Local, listeners),
        (TcpState::Listen, Side::Remote, 0),
        (TcpState::CloseWait, Side::Local, 0),
    ];
    for (state, side, want) in cases {
        let code = state.kernel_code();
        let single = count_netlink_walk(port, code, side, Walk::Single).unwrap();
        let per_family = count_netlink_walk(port, code, side, Walk::PerFamily).unwrap();
        let check = spec(port, state, side, 0);
        assert_eq!(
            (
                single,
                per_family,
                counted(&check, Method::Netlink),
                counted(&check, Method::Proc)
            ),
            (want, want, want, want),
            "{state:?} {side:?}"
        );
    }
    // Another port: nothing, through either request.
    let est = TcpState::Established.kernel_code();
    let other = port.wrapping_add(1).max(1);
    assert_eq!(
        count_netlink_walk(other, est, Side::Local, Walk::Single).unwrap(),
        count_netlink_walk(other, est, Side::Local, Walk::PerFamily).unwrap()
    );
}

#[tokio::test]
async fn nothing_on_an_unused_port_passes() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let check = spec(port, TcpState::CloseWait, Side::Local, 0);
    let out = probe(
        &CheckKind::Sockets(check),
        Duration::from_secs(5),
        &ProbeContext::new(),
    )
    .await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("0 tcp sockets in close-wait on local port {port} (at most 0)")
    );
}

/// Timing, not a check: `VIGIL_SOCKETS_BENCH=1 VIGIL_SOCKETS_BENCH_PORTS=41001,41003
/// cargo test --release -p vigil-checks --test sockets -- --nocapture bench` prints the
/// min and median time of one count per port, side and method, against whatever sockets
/// the host holds (`bench/sockets.sh` opens ~100k on loopback first).
#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "a benchmark reads the wall clock; it checks nothing"
)]
fn bench_counting_against_the_hosts_sockets() {
    type Way = Box<dyn Fn() -> u64>;
    if std::env::var_os("VIGIL_SOCKETS_BENCH").is_none() {
        return;
    }
    let ports: Vec<u16> = std::env::var("VIGIL_SOCKETS_BENCH_PORTS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    let rounds: usize = std::env::var("VIGIL_SOCKETS_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    for port in ports {
        for side in [Side::Local, Side::Remote] {
            let est = TcpState::Established.kernel_code();
            let ways: [(&str, Way); 4] = [
                (
                    "Netlink",
                    Box::new(move || {
                        counted(&spec(port, TcpState::Established, side, 0), Method::Netlink)
                    }),
                ),
                (
                    "Netlink single walk",
                    Box::new(move || count_netlink_walk(port, est, side, Walk::Single).unwrap()),
                ),
                (
                    "Netlink per family",
                    Box::new(move || count_netlink_walk(port, est, side, Walk::PerFamily).unwrap()),
                ),
                (
                    "Proc",
                    Box::new(move || {
                        counted(&spec(port, TcpState::Established, side, 0), Method::Proc)
                    }),
                ),
            ];
            for (method, way) in ways {
                let mut n = 0;
                let mut times: Vec<Duration> = (0..rounds)
                    .map(|_| {
                        let t = std::time::Instant::now();
                        n = way();
                        t.elapsed()
                    })
                    .collect();
                times.sort();
                println!(
                    "bench port {port} {side:?} {method}: {n} sockets, min {:.2} ms, median {:.2} ms",
                    times[0].as_secs_f64() * 1e3,
                    times[times.len() / 2].as_secs_f64() * 1e3,
                );
            }
        }
    }
}
