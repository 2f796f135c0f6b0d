//! `kind = "sockets"`: count this host's TCP sockets (IPv4 and IPv6) in one state on one
//! port, like `ss -tn state close-wait '( sport = :5000 )' | wc -l`; fail above `max`.
//!
//! Owns: a hand-rolled NETLINK_SOCK_DIAG dump (one legacy `TCPDIAG_GETSOCK` request for
//! both families, or `SOCK_DIAG_BY_FAMILY` per family where the kernel refuses it; the
//! state is filtered by the kernel through `idiag_states`, the port through the
//! request's socket id and an `INET_DIAG_REQ_BYTECODE` program, so a host with 100k
//! sockets returns only the matching ones), and the `/proc/net/tcp{,6}` fallback used when netlink is refused
//! (EPERM, EPROTONOSUPPORT, ...). Must not: allocate per socket (both paths only count),
//! connect anything, or look outside Vigil's own network namespace.
//!
//! Everything here is safe code (rustix); the kernel's structs are written and read as
//! bytes.

use std::cell::RefCell;
use std::io;

use rustix::fd::OwnedFd;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink};

use super::Verdict;
use super::kept_netlink::{Kept, read_u16, read_u32, with_kept};
use crate::model::{Side, SocketsCheck};

/// Where the counting reads the kernel's socket table from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// NETLINK_SOCK_DIAG, falling back to `/proc` when netlink is unavailable.
    Auto,
    /// NETLINK_SOCK_DIAG only (an error when it is unavailable).
    Netlink,
    /// `/proc/net/tcp` and `/proc/net/tcp6` only.
    Proc,
}

pub(super) fn label(check: &SocketsCheck) -> String {
    format!(
        "sockets tcp {} on {} port {}",
        check.state.as_str(),
        side_name(check.side),
        check.port
    )
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Local => "local",
        Side::Remote => "remote",
    }
}

pub(super) async fn probe(check: &SocketsCheck) -> Verdict {
    let owned = check.clone();
    let counted = tokio::task::spawn_blocking(move || count(&owned, Method::Auto))
        .await
        .map_err(|e| format!("{}: counting task failed: {e}", label(check)))?;
    judge(check, counted)
}

fn judge(check: &SocketsCheck, counted: Result<u64, String>) -> Verdict {
    let n = counted.map_err(|e| format!("{}: {e}", label(check)))?;
    let what = format!(
        "{n} tcp socket{} in {} on {} port {}",
        if n == 1 { "" } else { "s" },
        check.state.as_str(),
        side_name(check.side),
        check.port
    );
    if n > u64::from(check.max) {
        Err(format!("{what}, expected at most {}", check.max))
    } else {
        Ok(format!("{what} (at most {})", check.max))
    }
}

/// Counts the sockets `check` describes. Blocking (a few syscalls); call it off the
/// runtime's worker threads.
pub fn count(check: &SocketsCheck, method: Method) -> Result<u64, String> {
    let state = check.state.kernel_code();
    match method {
        Method::Proc => count_proc(check.port, state, check.side),
        Method::Netlink => count_netlink(check.port, state, check.side)
            .map_err(|e| format!("sock_diag netlink: {e}")),
        Method::Auto => match count_netlink(check.port, state, check.side) {
            Ok(n) => Ok(n),
            Err(e) if netlink_unavailable(&e) => count_proc(check.port, state, check.side),
            Err(e) => Err(format!("sock_diag netlink: {e}")),
        },
    }
}

fn netlink_unavailable(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EPERM | libc::EACCES | libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT)
            | Some(libc::ENOENT | libc::EOPNOTSUPP)
    )
}

// ---- netlink ------------------------------------------------------------------------
//
// Cost model (measured at ~100k established loopback sockets): the kernel's TCP dump walks
// the whole established hash for every request and tests each socket's state, family and
// ports before building a reply; the replies are the only other cost. So:
// - one walk for both families: the legacy `TCPDIAG_GETSOCK` request (an
//   `inet_diag_req`) is dumped with `sdiag_family = AF_UNSPEC`, i.e. IPv4 and IPv6
//   sockets in a single pass, where `SOCK_DIAG_BY_FAMILY` needs one request (one walk)
//   per family and rejects `AF_UNSPEC` (no handler: ENOENT). Kernels that refuse the
//   legacy type get the two per-family requests instead.
// - the port goes in the request's `id.idiag_sport`/`idiag_dport` too, which the dump
//   compares inline right after the state (a non-zero id port filters dumps), so most
//   sockets are rejected without running the bytecode. The bytecode stays: it is the
//   documented filter, and it keeps port 0 exact (a zero id port means "any").

/// `TCPDIAG_GETSOCK`: the legacy inet_diag request, dumped for both address families.
const TCPDIAG_GETSOCK: u16 = 18;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;
const INET_DIAG_BC_D_GE: u8 = 4;
const INET_DIAG_BC_D_LE: u8 = 5;
/// `sizeof(struct inet_diag_req_v2)`.
const REQ_LEN: usize = 56;
/// `sizeof(struct inet_diag_req)` (the legacy request).
const REQ_V1_LEN: usize = 60;
/// `sizeof(struct inet_diag_sockid)`.
const SOCKID_LEN: usize = 48;
/// The bytecode program: `port >= P && port <= P`, two 8-byte conditions.
const BC_LEN: usize = 16;
/// Larger than the kernel's largest dump batch (it fills at most 32 KiB per datagram).
const RECV_BUF: usize = 64 * 1024;
/// A dump that never ends is a kernel bug; do not hang a check on it.
const RECV_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Which request shape a dump uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// One `TCPDIAG_GETSOCK` dump: both families in one pass over the socket table.
    Single,
    /// One `SOCK_DIAG_BY_FAMILY` dump per family (AF_INET, then AF_INET6).
    PerFamily,
}

/// `struct inet_diag_sockid` with only the filtered port set (network byte order); the
/// addresses, interface and cookie are zero (they do not filter dumps).
fn sockid(port: u16, side: Side) -> [u8; SOCKID_LEN] {
    let mut id = [0u8; SOCKID_LEN];
    let at = match side {
        Side::Local => 0,  // idiag_sport
        Side::Remote => 2, // idiag_dport
    };
    id[at..at + 2].copy_from_slice(&port.to_be_bytes());
    id
}

/// The request: header, `inet_diag_req_v2` for `family` (or, with `family == None`, the
/// legacy `inet_diag_req` covering both families), and the port filter.
fn request(family: Option<u8>, port: u16, state: u8, side: Side, seq: u32) -> Vec<u8> {
    let body = if family.is_some() {
        REQ_LEN
    } else {
        REQ_V1_LEN
    };
    let total = NLMSG_HDRLEN + body + 4 + BC_LEN;
    let msg_type = if family.is_some() {
        SOCK_DIAG_BY_FAMILY
    } else {
        TCPDIAG_GETSOCK
    };
    let mut msg = Vec::with_capacity(total);
    // struct nlmsghdr
    msg.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_ne_bytes());
    msg.extend_from_slice(&msg_type.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    let states = 1u32 << state;
    match family {
        // struct inet_diag_req_v2: family, protocol, ext, pad, states, id.
        Some(family) => {
            msg.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
            msg.extend_from_slice(&states.to_ne_bytes());
            msg.extend_from_slice(&sockid(port, side));
        }
        // struct inet_diag_req: family (ignored: the dump is AF_UNSPEC), src_len,
        // dst_len, ext, id, states, dbs. The protocol is the message type's (TCP).
        None => {
            msg.extend_from_slice(&[0, 0, 0, 0]);
            msg.extend_from_slice(&sockid(port, side));
            msg.extend_from_slice(&states.to_ne_bytes());
            msg.extend_from_slice(&0u32.to_ne_bytes());
        }
    }
    // struct nlattr { len, type } + the bytecode.
    msg.extend_from_slice(&u16::try_from(4 + BC_LEN).unwrap_or(0).to_ne_bytes());
    msg.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
    let (ge, le) = match side {
        Side::Local => (INET_DIAG_BC_S_GE, INET_DIAG_BC_S_LE),
        Side::Remote => (INET_DIAG_BC_D_GE, INET_DIAG_BC_D_LE),
    };
    // struct inet_diag_bc_op { code: u8, yes: u8, no: u16 }, each comparison followed by
    // an op whose `no` holds the port. `yes` goes on to the next condition; `no` jumps
    // past the end (remaining length + 4), which rejects the socket.
    for (op, remaining) in [(ge, BC_LEN), (le, BC_LEN - 8)] {
        msg.extend_from_slice(&[op, 8]);
        msg.extend_from_slice(&u16::try_from(remaining + 4).unwrap_or(0).to_ne_bytes());
        msg.extend_from_slice(&[0, 0]);
        msg.extend_from_slice(&port.to_ne_bytes());
    }
    msg
}

/// A kernel without the legacy request answers EINVAL (unknown type) or EOPNOTSUPP /
/// ENOENT (no handler).
fn legacy_refused(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOENT)
    )
}

fn count_netlink(port: u16, state: u8, side: Side) -> io::Result<u64> {
    match count_netlink_walk(port, state, side, Walk::Single) {
        Err(e) if legacy_refused(&e) => count_netlink_walk(port, state, side, Walk::PerFamily),
        counted => counted,
    }
}

/// Counts through one request shape only, without falling back to the other (tests and
/// benchmarks compare them; checks use [`count`]).
pub fn count_netlink_walk(port: u16, state: u8, side: Side, walk: Walk) -> io::Result<u64> {
    // Each thread keeps its socket and buffer between runs (`kept_netlink`).
    thread_local! {
        static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
    }
    let open = || {
        let fd = rustix::net::socket(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            Some(netlink::SOCK_DIAG),
        )?;
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(RECV_TIMEOUT),
        )?;
        Ok(Kept {
            fd,
            buf: vec![0u8; RECV_BUF],
            seq: 0,
        })
    };
    with_kept(&KEPT, open, |k| {
        walk_with(&k.fd, &mut k.buf, port, state, side, walk)
    })
}

fn walk_with(
    fd: &OwnedFd,
    buf: &mut [u8],
    port: u16,
    state: u8,
    side: Side,
    walk: Walk,
) -> io::Result<u64> {
    if walk == Walk::Single {
        let req = request(None, port, state, side, 1);
        return dump(fd, buf, &req, TCPDIAG_GETSOCK, 1);
    }
    let mut total = 0;
    for (seq, family) in [(2, libc::AF_INET as u8), (3, libc::AF_INET6 as u8)] {
        let req = request(Some(family), port, state, side, seq);
        match dump(fd, buf, &req, SOCK_DIAG_BY_FAMILY, seq) {
            Ok(n) => total += n,
            // A kernel without IPv6 has no AF_INET6 handler.
            Err(e) if family == libc::AF_INET6 as u8 && e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Sends `req` and counts the `reply_type` messages of its dump until NLMSG_DONE.
fn dump(fd: &OwnedFd, buf: &mut [u8], req: &[u8], reply_type: u16, seq: u32) -> io::Result<u64> {
    // Unconnected netlink sockets send to the kernel (port id 0).
    rustix::net::send(fd, req, SendFlags::empty())?;
    let mut count = 0u64;
    loop {
        let (len, _) = rustix::net::recv(fd, &mut *buf, RecvFlags::empty())?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "dump ended without NLMSG_DONE",
            ));
        }
        let mut at = 0;
        while at + NLMSG_HDRLEN <= len {
            let msg_len = read_u32(buf, at) as usize;
            let msg_type = read_u16(buf, at + 4);
            let msg_seq = read_u32(buf, at + 8);
            if msg_len < NLMSG_HDRLEN || at + msg_len > len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed netlink message",
                ));
            }
            if msg_seq == seq {
                match msg_type {
                    NLMSG_DONE => return Ok(count),
                    NLMSG_ERROR => {
                        let errno = if msg_len >= NLMSG_HDRLEN + 4 {
                            i32::from_ne_bytes(
                                buf[at + NLMSG_HDRLEN..at + NLMSG_HDRLEN + 4]
                                    .try_into()
                                    .unwrap_or([0; 4]),
                            )
                        } else {
                            0
                        };
                        if errno != 0 {
                            return Err(io::Error::from_raw_os_error(-errno));
                        }
                        // An ACK; the dump goes on.
                    }
                    t if t == reply_type => count += 1,
                    _ => {}
                }
            }
            at += (msg_len + 3) & !3;
        }
    }
}

// ---- /proc fallback -----------------------------------------------------------------

fn count_proc(port: u16, state: u8, side: Side) -> Result<u64, String> {
    let mut total = 0;
    let mut read_any = false;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read(file) {
            Ok(text) => {
                read_any = true;
                total += count_proc_text(&text, port, state, side);
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(format!("cannot read {file}: {err}")),
        }
    }
    if read_any {
        Ok(total)
    } else {
        Err("cannot read /proc/net/tcp (is /proc mounted?)".to_owned())
    }
}

/// Counts the rows of a `/proc/net/tcp{,6}` text in `state` with the port on `side`.
/// Only the port and state columns are decoded; the header and garbage are skipped.
pub fn count_proc_text(text: &[u8], port: u16, state: u8, side: Side) -> u64 {
    text.split(|&b| b == b'\n')
        .filter(|line| {
            let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty()).skip(1); // `sl:`
            let (Some(local), Some(remote), Some(st)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return false;
            };
            let addr = match side {
                Side::Local => local,
                Side::Remote => remote,
            };
            let Some(colon) = addr.iter().rposition(|&b| b == b':') else {
                return false;
            };
            hex(&addr[colon + 1..]) == Some(u32::from(port)) && hex(st) == Some(u32::from(state))
        })
        .count() as u64
}

fn hex(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc << 4 | v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TcpState;

    const TCP: &[u8] = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1
   1: 0100007F:1388 0100007F:D2F0 08 00000000:00000000 00:00000000 00000000  1000        0 3333 1
   2: 0100007F:1388 0100007F:D2F1 08 00000000:00000000 00:00000000 00000000  1000        0 3334 1
   3: 0100007F:D2F2 0100007F:1388 01 00000000:00000000 00:00000000 00000000  1000        0 3335 1
   4: garbage
";

    #[test]
    fn proc_rows_are_counted_by_port_side_and_state() {
        let cw = TcpState::CloseWait.kernel_code();
        let est = TcpState::Established.kernel_code();
        assert_eq!(count_proc_text(TCP, 5000, cw, Side::Local), 2);
        assert_eq!(count_proc_text(TCP, 5000, est, Side::Local), 0);
        assert_eq!(count_proc_text(TCP, 5000, est, Side::Remote), 1);
        assert_eq!(count_proc_text(TCP, 5001, cw, Side::Local), 0);
    }

    #[test]
    fn the_request_is_well_formed() {
        let req = request(Some(2), 5000, 8, Side::Local, 7);
        assert_eq!(req.len(), 16 + 56 + 4 + 16);
        assert_eq!(read_u32(&req, 0) as usize, req.len());
        assert_eq!(read_u16(&req, 4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(read_u32(&req, 8), 7);
        assert_eq!(req[16], 2);
        assert_eq!(req[17], libc::IPPROTO_TCP as u8);
        assert_eq!(read_u32(&req, 16 + 4), 1 << 8);
        // id.idiag_sport = 5000 in network byte order, idiag_dport unset.
        assert_eq!(&req[16 + 8..16 + 12], &[0x13, 0x88, 0, 0]);
        // The bytecode: S_GE yes=8 no=20, port; S_LE yes=8 no=12, port.
        let bc = &req[16 + 56 + 4..];
        assert_eq!(&bc[..2], &[INET_DIAG_BC_S_GE, 8]);
        assert_eq!(read_u16(bc, 2), 20);
        assert_eq!(read_u16(bc, 6), 5000);
        assert_eq!(&bc[8..10], &[INET_DIAG_BC_S_LE, 8]);
        assert_eq!(read_u16(bc, 10), 12);
    }

    #[test]
    fn the_legacy_request_covers_both_families_in_one_dump() {
        let req = request(None, 5000, 1, Side::Remote, 9);
        assert_eq!(req.len(), 16 + 60 + 4 + 16);
        assert_eq!(read_u32(&req, 0) as usize, req.len());
        assert_eq!(read_u16(&req, 4), TCPDIAG_GETSOCK);
        assert_eq!(read_u16(&req, 6), NLM_F_REQUEST | NLM_F_DUMP);
        // inet_diag_req: family 0, then the id: sport 0, dport 5000 (big-endian).
        assert_eq!(&req[16..20], &[0, 0, 0, 0]);
        assert_eq!(&req[20..24], &[0, 0, 0x13, 0x88]);
        assert!(req[24..20 + 48].iter().all(|&b| b == 0));
        // states after the 48-byte id, then dbs.
        assert_eq!(read_u32(&req, 16 + 4 + 48), 1 << 1);
        assert_eq!(read_u32(&req, 16 + 4 + 48 + 4), 0);
        let bc = &req[16 + 60..];
        assert_eq!(read_u16(bc, 0), 20);
        assert_eq!(read_u16(bc, 2), INET_DIAG_REQ_BYTECODE);
        assert_eq!(&bc[4..6], &[INET_DIAG_BC_D_GE, 8]);
        assert_eq!(&bc[12..14], &[INET_DIAG_BC_D_LE, 8]);
        assert_eq!(read_u16(bc, 4 + 6), 5000);
    }

    #[test]
    fn only_an_unknown_request_type_falls_back_to_per_family_dumps() {
        for errno in [libc::EINVAL, libc::EOPNOTSUPP, libc::ENOENT] {
            assert!(legacy_refused(&io::Error::from_raw_os_error(errno)));
        }
        assert!(!legacy_refused(&io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!legacy_refused(&io::Error::from(io::ErrorKind::TimedOut)));
    }

    #[test]
    fn reasons_name_count_state_and_limit() {
        let check = SocketsCheck {
            port: 5000,
            state: TcpState::CloseWait,
            side: Side::Local,
            max: 5,
        };
        assert_eq!(
            judge(&check, Ok(12)),
            Err("12 tcp sockets in close-wait on local port 5000, expected at most 5".to_owned())
        );
        assert_eq!(
            judge(&check, Ok(1)),
            Ok("1 tcp socket in close-wait on local port 5000 (at most 5)".to_owned())
        );
    }
}
