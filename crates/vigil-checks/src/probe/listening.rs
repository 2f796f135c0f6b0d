//! `kind = "listening"`: a local socket is bound to a port, like `ss -tln` / `ss -uln`.
//!
//! Owns: parsing `/proc/net/{tcp,tcp6,udp,udp6}` (a pure function over the file text, so it
//! is tested with fixtures) and matching sockets against the check. Must not: connect to
//! anything; a listening check only looks at the kernel's socket table (of Vigil's own
//! network namespace).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Verdict;
use super::sockets::Method;
use crate::model::{ListeningCheck, Protocol, Side, SocketsCheck, TcpState};

/// `TCP_LISTEN` in the `st` column.
pub const TCP_LISTEN: u8 = 0x0A;

/// One row of `/proc/net/{tcp,tcp6,udp,udp6}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketEntry {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The kernel's state number (`0A` = LISTEN for TCP; `07` = unconnected for UDP).
    pub state: u8,
}

/// How the kernel printed the 32-bit words of addresses: it prints each in host byte
/// order, so the file's text depends on the machine that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

impl Endian {
    pub const NATIVE: Endian = if cfg!(target_endian = "big") {
        Endian::Big
    } else {
        Endian::Little
    };

    fn word_bytes(self, word: u32) -> [u8; 4] {
        match self {
            Endian::Little => word.to_le_bytes(),
            Endian::Big => word.to_be_bytes(),
        }
    }
}

/// Parses the text of a `/proc/net/{tcp,tcp6,udp,udp6}` file written by a kernel with
/// byte order `endian`. The header and unparsable lines are skipped.
pub fn parse_proc_net(text: &str, endian: Endian) -> Vec<SocketEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let slot = fields.next()?;
            if !slot.ends_with(':') {
                return None; // the header line
            }
            let local = parse_socket_addr(fields.next()?, endian)?;
            let remote = parse_socket_addr(fields.next()?, endian)?;
            let state = u8::from_str_radix(fields.next()?, 16).ok()?;
            Some(SocketEntry {
                local,
                remote,
                state,
            })
        })
        .collect()
}

/// `0100007F:1F90` (IPv4) or 32 hex digits + `:PORT` (IPv6). The port is printed in
/// network order already; the address as 32-bit words in host order.
fn parse_socket_addr(field: &str, endian: Endian) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    if addr.len() != 8 && addr.len() != 32 {
        return None;
    }
    for i in (0..addr.len()).step_by(8) {
        let word = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&endian.word_bytes(word));
    }
    let ip = match <[u8; 4]>::try_from(bytes.as_slice()) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?)),
    };
    Some(SocketAddr::new(ip, port))
}

/// `::ffff:1.2.3.4` as `1.2.3.4`, so dual-stack sockets compare with IPv4 addresses.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether a socket bound to `local` accepts traffic for `wanted`: the same address, or
/// a wildcard (`::` also covers IPv4 on a dual-stack socket; `0.0.0.0` only IPv4).
pub fn address_matches(local: IpAddr, wanted: IpAddr) -> bool {
    let (local, wanted) = (canonical(local), canonical(wanted));
    local == wanted
        || match local {
            IpAddr::V6(l) => l.is_unspecified(),
            IpAddr::V4(l) => l.is_unspecified() && wanted.is_ipv4(),
        }
}

/// The first socket that satisfies the check, or `Err` with every socket bound to the
/// port at all (in LISTEN for TCP), for the reason.
pub fn find_bound(
    entries: &[SocketEntry],
    protocol: Protocol,
    port: u16,
    address: Option<IpAddr>,
) -> Result<SocketAddr, Vec<SocketAddr>> {
    let on_port = entries
        .iter()
        .filter(|e| e.local.port() == port && (protocol == Protocol::Udp || e.state == TCP_LISTEN));
    let mut others = Vec::new();
    for entry in on_port {
        match address {
            Some(wanted) if !address_matches(entry.local.ip(), wanted) => {
                others.push(entry.local);
            }
            _ => return Ok(entry.local),
        }
    }
    Err(others)
}

pub(super) fn label(check: &ListeningCheck) -> String {
    format!(
        "listening {} port {}",
        proto_name(check.protocol),
        check.port
    )
}

fn proto_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

pub(super) async fn probe(check: &ListeningCheck) -> Verdict {
    // Without an address filter a TCP listener only needs counting: ask the kernel for
    // LISTEN sockets on the port over sock_diag, which skips the established-connection table
    // that `/proc/net/tcp` walks and prints in full (100 k lines on a busy host).
    if check.protocol == Protocol::Tcp && check.address.is_none() {
        let spec = SocketsCheck {
            port: check.port,
            state: TcpState::Listen,
            side: Side::Local,
            max: 0,
        };
        // On the runtime thread: a LISTEN-only dump walks only the listening hash, never
        // the established connections, so it takes microseconds however busy the host is
        // (handing it to the blocking pool cost more than the dump).
        let counted = super::sockets::count(&spec, Method::Netlink);
        // Netlink refused (some sandboxes): fall back to /proc below.
        if let Ok(n) = counted {
            return if n > 0 {
                Ok(format!(
                    "tcp socket listening on port {} ({n} socket{})",
                    check.port,
                    if n == 1 { "" } else { "s" }
                ))
            } else {
                Err(format!("no tcp socket listening on port {}", check.port))
            };
        }
    }
    let files: [&str; 2] = match check.protocol {
        Protocol::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
        Protocol::Udp => ["/proc/net/udp", "/proc/net/udp6"],
    };
    let mut entries = Vec::new();
    let mut read_any = false;
    for file in files {
        // Off the runtime thread: with many sockets the kernel's walk of the TCP hash table
        // behind this read takes tens of milliseconds or more.
        match tokio::fs::read_to_string(file).await {
            Ok(text) => {
                read_any = true;
                entries.extend(parse_proc_net(&text, Endian::NATIVE));
            }
            // No IPv6 on this host: only the v4 table exists.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(format!("{}: cannot read {file}: {err}", label(check))),
        }
    }
    if !read_any {
        return Err(format!(
            "{}: cannot read {} (is /proc mounted?)",
            label(check),
            files[0]
        ));
    }
    let proto = proto_name(check.protocol);
    let verb = match check.protocol {
        Protocol::Tcp => "listening on",
        Protocol::Udp => "bound to",
    };
    match find_bound(&entries, check.protocol, check.port, check.address) {
        Ok(local) => Ok(format!("{proto} socket {verb} {local}")),
        Err(others) => {
            let wanted = match check.address {
                Some(ip) => SocketAddr::new(ip, check.port).to_string(),
                None => format!("port {}", check.port),
            };
            let mut reason = format!("no {proto} socket {verb} {wanted}");
            if !others.is_empty() {
                let seen: Vec<String> = others.iter().map(ToString::to_string).collect();
                reason.push_str(&format!(" (found only {})", seen.join(", ")));
            }
            Err(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines from a little-endian host (x86_64), trimmed to the columns we read plus
    // a few trailing ones.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 3333 1 0000000000000000 20 4 30 10 -1
   3: 0A00000A:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1B58 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6666 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1 0000000000000000 100 0 0 10 0
   3: 000080FE00000000FF005002020000FE:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 8888 1 0000000000000000 100 0 0 10 0
";

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 9999 2 0000000000000000 0
  456: 0100007F:A1B2 0100007F:0035 01 00000000:00000000 00:00000000 00000000  1000        0 1111 2 0000000000000000 0
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ipv4_rows() {
        let rows = parse_proc_net(TCP, Endian::Little);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].local, sa("127.0.0.1:8080"));
        assert_eq!(rows[0].remote, sa("0.0.0.0:0"));
        assert_eq!(rows[0].state, TCP_LISTEN);
        assert_eq!(rows[1].local, sa("0.0.0.0:22"));
        assert_eq!(rows[2].remote, sa("127.0.0.1:54000"));
        assert_eq!(rows[2].state, 0x01);
        assert_eq!(rows[3].local, sa("10.0.0.10:8443"));
    }

    #[test]
    fn parses_ipv6_rows() {
        let rows = parse_proc_net(TCP6, Endian::Little);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].local, sa("[::]:80"));
        assert_eq!(rows[1].local, sa("[::1]:7000"));
        assert_eq!(rows[2].local, sa("[::ffff:127.0.0.1]:9000"));
        assert_eq!(rows[3].local, sa("[fe80::250:ff:fe00:2]:443"));
    }

    #[test]
    fn big_endian_words_are_read_in_order() {
        let text = "  sl  local\n   0: 7F000001:1F90 00000000:0000 0A 0\n";
        let rows = parse_proc_net(text, Endian::Big);
        assert_eq!(rows[0].local, sa("127.0.0.1:8080"));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let text = "header\n   0: nonsense\n   1: 0100007F:ZZZZ 00000000:0000 0A\n\n";
        assert!(parse_proc_net(text, Endian::Little).is_empty());
    }

    #[test]
    fn tcp_needs_listen_state() {
        let rows = parse_proc_net(TCP, Endian::Little);
        assert_eq!(
            find_bound(&rows, Protocol::Tcp, 8080, None),
            Ok(sa("127.0.0.1:8080"))
        );
        // Port 54000 only appears as a remote port of an established socket.
        assert_eq!(find_bound(&rows, Protocol::Tcp, 54000, None), Err(vec![]));
    }

    #[test]
    fn address_filter_accepts_exact_or_wildcard() {
        let mut rows = parse_proc_net(TCP, Endian::Little);
        rows.extend(parse_proc_net(TCP6, Endian::Little));
        // Exact match.
        assert!(find_bound(&rows, Protocol::Tcp, 8080, Some(ip("127.0.0.1"))).is_ok());
        // Bound elsewhere: reported.
        assert_eq!(
            find_bound(&rows, Protocol::Tcp, 8443, Some(ip("127.0.0.1"))),
            Err(vec![sa("10.0.0.10:8443")])
        );
        // 0.0.0.0 covers every IPv4 address but no IPv6 one.
        assert!(find_bound(&rows, Protocol::Tcp, 22, Some(ip("192.168.1.5"))).is_ok());
        assert!(find_bound(&rows, Protocol::Tcp, 22, Some(ip("::1"))).is_err());
        // :: covers both families.
        assert!(find_bound(&rows, Protocol::Tcp, 80, Some(ip("10.1.2.3"))).is_ok());
        assert!(find_bound(&rows, Protocol::Tcp, 80, Some(ip("::1"))).is_ok());
        // A v4-mapped socket matches the plain IPv4 address.
        assert!(find_bound(&rows, Protocol::Tcp, 9000, Some(ip("127.0.0.1"))).is_ok());
        assert!(find_bound(&rows, Protocol::Tcp, 7000, Some(ip("::1"))).is_ok());
        assert!(find_bound(&rows, Protocol::Tcp, 7000, Some(ip("127.0.0.1"))).is_err());
    }

    #[test]
    fn udp_counts_any_state() {
        let rows = parse_proc_net(UDP, Endian::Little);
        assert_eq!(
            find_bound(&rows, Protocol::Udp, 53, None),
            Ok(sa("127.0.0.53:53"))
        );
        assert_eq!(
            find_bound(&rows, Protocol::Udp, 0xA1B2, None),
            Ok(sa("127.0.0.1:41394"))
        );
        assert!(find_bound(&rows, Protocol::Udp, 54, None).is_err());
    }
}
