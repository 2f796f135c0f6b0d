//! `kind = "sockets"`: count this host's TCP sockets (IPv4 and IPv6) in one state on one
//! port, like `ss -tn state close-wait '( sport = :5000 )' | wc -l`; fail above `max`.
//!
//! Owns: a hand-rolled NETLINK_SOCK_DIAG dump (`SOCK_DIAG_BY_FAMILY` with an
//! `inet_diag_req_v2`; the state is filtered by the kernel through `idiag_states`, the
//! port by an `INET_DIAG_REQ_BYTECODE` program, so a host with 100k sockets returns only
//! the matching ones), and the `/proc/net/tcp{,6}` fallback used when netlink is refused
//! (EPERM, EPROTONOSUPPORT, ...). Must not: allocate per socket (both paths only count),
//! connect anything, or look outside Vigil's own network namespace.
//!
//! Everything here is safe code (rustix); the kernel's structs are written and read as
//! bytes.

use std::io;

use rustix::fd::OwnedFd;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink};

use super::Verdict;
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
/// The bytecode program: `port >= P && port <= P`, two 8-byte conditions.
const BC_LEN: usize = 16;
/// Enough for the kernel's largest dump batch (it fills up to 32 KiB per datagram).
const RECV_BUF: usize = 64 * 1024;
/// A dump that never ends is a kernel bug; do not hang a check on it.
const RECV_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The request for one family: header, `inet_diag_req_v2`, and the port filter.
fn request(family: u8, port: u16, state: u8, side: Side, seq: u32) -> Vec<u8> {
    let total = NLMSG_HDRLEN + REQ_LEN + 4 + BC_LEN;
    let mut msg = Vec::with_capacity(total);
    // struct nlmsghdr
    msg.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // struct inet_diag_req_v2: family, protocol, ext, pad, states, id (48 zero bytes:
    // the id does not filter dumps).
    msg.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    msg.extend_from_slice(&(1u32 << state).to_ne_bytes());
    msg.extend_from_slice(&[0u8; 48]);
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

fn count_netlink(port: u16, state: u8, side: Side) -> io::Result<u64> {
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
    let mut buf = vec![0u8; RECV_BUF];
    let mut total = 0;
    for (seq, family) in [(1, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        match dump_family(&fd, &mut buf, family, port, state, side, seq) {
            Ok(n) => total += n,
            // A kernel without IPv6 has no AF_INET6 handler.
            Err(e) if family == libc::AF_INET6 as u8 && e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

fn dump_family(
    fd: &OwnedFd,
    buf: &mut [u8],
    family: u8,
    port: u16,
    state: u8,
    side: Side,
    seq: u32,
) -> io::Result<u64> {
    let req = request(family, port, state, side, seq);
    // Unconnected netlink sockets send to the kernel (port id 0).
    rustix::net::send(fd, &req, SendFlags::empty())?;
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
                    SOCK_DIAG_BY_FAMILY => count += 1,
                    _ => {}
                }
            }
            at += (msg_len + 3) & !3;
        }
    }
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    buf.get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_ne_bytes)
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
        let req = request(2, 5000, 8, Side::Local, 7);
        assert_eq!(req.len(), 16 + 56 + 4 + 16);
        assert_eq!(read_u32(&req, 0) as usize, req.len());
        assert_eq!(read_u32(&req, 16 + 4), 1 << 8);
        // The bytecode: S_GE yes=8 no=20, port; S_LE yes=8 no=12, port.
        let bc = &req[16 + 56 + 4..];
        assert_eq!(&bc[..2], &[INET_DIAG_BC_S_GE, 8]);
        assert_eq!(read_u16(bc, 2), 20);
        assert_eq!(read_u16(bc, 6), 5000);
        assert_eq!(&bc[8..10], &[INET_DIAG_BC_S_LE, 8]);
        assert_eq!(read_u16(bc, 10), 12);
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
