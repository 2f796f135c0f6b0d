//! The sock_diag counter keeps one netlink socket per thread between counts. Alone in its
//! test binary: it counts the process's sock_diag sockets, which other tests would open.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::net::TcpListener;

use vigil_checks::model::{Side, TcpState};
use vigil_checks::probe::sockets::{Walk, count_netlink_walk};

/// The inodes of this process's open NETLINK_SOCK_DIAG sockets.
fn sock_diag_sockets() -> Vec<u64> {
    let ours: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    std::fs::read_to_string("/proc/net/netlink")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = f.get(9)?.parse().ok()?;
            (f.get(1) == Some(&"4") && ours.contains(&inode)).then_some(inode)
        })
        .collect()
}

/// A thread keeps its netlink socket between counts (one socket, not one per run):
/// counts through the kept socket follow the sockets as they come and go, and both walks
/// share it without mixing up their replies.
#[test]
fn counts_through_a_kept_socket_follow_changes() {
    std::thread::spawn(counts_on_one_thread).join().unwrap();
}

fn counts_on_one_thread() {
    let listen0 = TcpState::Listen.kernel_code();
    count_netlink_walk(1, listen0, Side::Local, Walk::Single).unwrap();
    let kept = sock_diag_sockets();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let listen = TcpState::Listen.kernel_code();
    for round in 0..20 {
        let listener = (round % 2 == 0).then(|| TcpListener::bind(("127.0.0.1", port)).unwrap());
        let want = u64::from(listener.is_some());
        for walk in [Walk::Single, Walk::PerFamily] {
            let n = count_netlink_walk(port, listen, Side::Local, walk).unwrap();
            assert_eq!(n, want, "round {round}, {walk:?}");
        }
    }
    assert_eq!(sock_diag_sockets(), kept);
}
