//! `kind = "interface"`: a network interface exists, is administratively up (`IFF_UP`) and,
//! unless `require_carrier = false`, has carrier (seed 003's WireGuard tunnel check).
//!
//! Owns: asking the kernel for the link over rtnetlink (one `RTM_GETLINK` by name on a
//! socket kept per thread: two system calls), and reading
//! `/sys/class/net/<name>/{flags,carrier,operstate}` (under a configurable root, so the
//! logic is testable against a fixture tree) whenever rtnetlink does not answer with the
//! link. Must not: change any link, or look at another network namespace than Vigil's own.
//!
//! The netlink answer is the sysfs one, field for field (net/core/net-sysfs.c against
//! rtnetlink.c's `rtnl_fill_ifinfo`): sysfs `flags` is `dev->flags`, and `ifi_flags` keeps
//! its `IFF_UP`; sysfs `operstate` and `IFLA_OPERSTATE` are both `dev->operstate`, or
//! `down` when the link is not running; sysfs `carrier` is `netif_carrier_ok` and fails
//! with EINVAL when the link is not running (read as no carrier), which is exactly
//! `IFF_LOWER_UP` in `ifi_flags`. Three sysfs files cost 27 µs of CPU per run on the
//! benchmark VM (nine system calls through kernfs), the netlink request about a third.
//! Not found, an alternative name (rtnetlink finds links by altname too, sysfs does not),
//! a name longer than a link's can be, a refused socket (seccomp, `RestrictAddressFamilies`)
//! or any other error: the sysfs path answers, so its reasons stay the ones seen before.

use std::cell::RefCell;
use std::io;
use std::path::Path;

use rustix::fd::OwnedFd;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};

use super::Verdict;
use super::kept_netlink::{Kept, read_u16, read_u32, with_kept};
use crate::model::InterfaceCheck;

/// `IFF_UP` in `/sys/class/net/<name>/flags`.
const IFF_UP: u32 = 0x1;
/// `IFF_LOWER_UP` in `ifi_flags`: running with carrier (sysfs `carrier` reads `1`).
const IFF_LOWER_UP: u32 = 0x1_0000;
/// `IFNAMSIZ`: a link name has at most 15 bytes.
const IFNAMSIZ: usize = 16;
/// `dev->operstate` names, as sysfs prints them (`operstates[]` in net-sysfs.c).
const OPERSTATES: [&str; 7] = [
    "unknown",
    "notpresent",
    "down",
    "lowerlayerdown",
    "testing",
    "dormant",
    "up",
];

pub(super) fn label(check: &InterfaceCheck) -> String {
    format!("interface {}", check.interface)
}

pub(super) async fn probe(check: &InterfaceCheck) -> Verdict {
    // One netlink request (or a handful of tiny sysfs reads): cheaper inline than a
    // blocking-pool round trip.
    match netlink_link(&check.interface) {
        Some(link) => judge(check, &link),
        None => probe_at(Path::new("/sys/class/net"), check),
    }
}

/// What rtnetlink says about a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link {
    /// `ifi_flags` (`dev_get_flags`).
    pub flags: u32,
    /// `IFLA_OPERSTATE`, when present.
    pub operstate: Option<u8>,
}

/// The verdict from a netlink answer, in the sysfs path's words.
fn judge(check: &InterfaceCheck, link: &Link) -> Verdict {
    let name = &check.interface;
    let operstate = link
        .operstate
        .and_then(|o| OPERSTATES.get(usize::from(o)))
        .copied()
        .unwrap_or("unknown");
    if link.flags & IFF_UP == 0 {
        return Err(format!(
            "interface {name} is administratively down (operstate {operstate})"
        ));
    }
    if !check.require_carrier {
        return Ok(format!("interface {name} is up (operstate {operstate})"));
    }
    if link.flags & IFF_LOWER_UP != 0 {
        Ok(format!(
            "interface {name} is up with carrier (operstate {operstate})"
        ))
    } else {
        Err(format!(
            "interface {name} has no carrier (operstate {operstate})"
        ))
    }
}

// ---- rtnetlink ----------------------------------------------------------------------

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 0x1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct ifinfomsg)`.
const IFINFO_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_EXT_MASK: u16 = 29;
/// `RTEXT_FILTER_SKIP_STATS`: leave the per-family statistics out of the answer (older
/// kernels ignore the bit).
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
/// `NLA_TYPE_MASK`: an attribute type without its nested/byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// One link's answer is a few KiB; one with many VFs could be more (then: sysfs).
const RECV_BUF: usize = 32 * 1024;
/// The request: header, `ifinfomsg`, `IFLA_EXT_MASK`, `IFLA_IFNAME` (name, NUL, padding).
const REQ_MAX: usize = NLMSG_HDRLEN + IFINFO_LEN + 8 + 4 + IFNAMSIZ;

/// The `RTM_GETLINK` request for `name` (at most 15 bytes, no NUL), and its length.
fn request(name: &[u8], seq: u32) -> ([u8; REQ_MAX], usize) {
    let mut req = [0u8; REQ_MAX];
    let name_attr = 4 + name.len() + 1;
    let len = NLMSG_HDRLEN + IFINFO_LEN + 8 + name_attr.next_multiple_of(4);
    let put = |req: &mut [u8; REQ_MAX], at: usize, bytes: &[u8]| {
        req[at..at + bytes.len()].copy_from_slice(bytes);
    };
    // struct nlmsghdr; struct ifinfomsg stays zero (AF_UNSPEC, index 0: look up by name).
    put(&mut req, 0, &(len as u32).to_ne_bytes());
    put(&mut req, 4, &RTM_GETLINK.to_ne_bytes());
    put(&mut req, 6, &NLM_F_REQUEST.to_ne_bytes());
    put(&mut req, 8, &seq.to_ne_bytes());
    let mut at = NLMSG_HDRLEN + IFINFO_LEN;
    put(&mut req, at, &8u16.to_ne_bytes());
    put(&mut req, at + 2, &IFLA_EXT_MASK.to_ne_bytes());
    put(&mut req, at + 4, &RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
    at += 8;
    put(&mut req, at, &(name_attr as u16).to_ne_bytes());
    put(&mut req, at + 2, &IFLA_IFNAME.to_ne_bytes());
    put(&mut req, at + 4, name);
    (req, len)
}

/// The link named exactly `name`, over rtnetlink; `None` when netlink does not answer
/// with it (not found, an altname, an error: the caller asks sysfs instead).
fn netlink_link(name: &str) -> Option<Link> {
    // Each thread keeps its socket and buffer (`kept_netlink`).
    thread_local! {
        static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
    }
    if name.is_empty() || name.len() >= IFNAMSIZ || name.as_bytes().contains(&0) {
        return None;
    }
    let open = || {
        let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::DGRAM, None)?;
        Ok(Kept {
            fd,
            buf: vec![0u8; RECV_BUF],
            seq: 0,
        })
    };
    with_kept(&KEPT, open, |k| {
        k.seq = k.seq.wrapping_add(1);
        let (req, len) = request(name.as_bytes(), k.seq);
        ask(&k.fd, &mut k.buf, &req[..len], k.seq, name.as_bytes())
    })
    .ok()?
}

/// Sends `req` and reads its answer: `Ok(Some(link))` for the link named `name`,
/// `Ok(None)` for a netlink error (no such link, ...) or a link of another name, `Err`
/// when the socket is no longer usable.
fn ask(
    fd: &OwnedFd,
    buf: &mut [u8],
    req: &[u8],
    seq: u32,
    name: &[u8],
) -> io::Result<Option<Link>> {
    // Unconnected netlink sockets send to the kernel (port id 0).
    rustix::net::send(fd, req, SendFlags::empty())?;
    loop {
        // rtnetlink answers a request before `send` returns: never wait for it.
        let (_, len) = rustix::net::recv(fd, &mut *buf, RecvFlags::DONTWAIT | RecvFlags::TRUNC)?;
        if len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "answer truncated",
            ));
        }
        // `None`: an answer to another (earlier) request; read on.
        if let Some(answer) = parse(&buf[..len], seq, name)? {
            return Ok(answer);
        }
    }
}

/// Parses one datagram: `Ok(None)` when it holds nothing for `seq`, `Ok(Some(None))` for
/// an error or a link not named `name`.
fn parse(data: &[u8], seq: u32, name: &[u8]) -> io::Result<Option<Option<Link>>> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink message");
    let mut at = 0;
    while at + NLMSG_HDRLEN <= data.len() {
        let msg_len = read_u32(data, at) as usize;
        let msg_type = read_u16(data, at + 4);
        let msg_seq = read_u32(data, at + 8);
        if msg_len < NLMSG_HDRLEN || at + msg_len > data.len() {
            return Err(malformed());
        }
        let msg = &data[at..at + msg_len];
        at += msg_len.next_multiple_of(4);
        if msg_seq != seq {
            continue;
        }
        match msg_type {
            NLMSG_ERROR => return Ok(Some(None)),
            RTM_NEWLINK => {
                if msg.len() < NLMSG_HDRLEN + IFINFO_LEN {
                    return Err(malformed());
                }
                let flags = read_u32(msg, NLMSG_HDRLEN + 8);
                let (mut named, mut operstate) = (false, None);
                let mut a = NLMSG_HDRLEN + IFINFO_LEN;
                while a + 4 <= msg.len() {
                    let attr_len = usize::from(read_u16(msg, a));
                    let attr_type = read_u16(msg, a + 2) & NLA_TYPE_MASK;
                    if attr_len < 4 || a + attr_len > msg.len() {
                        return Err(malformed());
                    }
                    let payload = &msg[a + 4..a + attr_len];
                    match attr_type {
                        IFLA_IFNAME => {
                            let end = payload
                                .iter()
                                .position(|&b| b == 0)
                                .unwrap_or(payload.len());
                            named = &payload[..end] == name;
                        }
                        IFLA_OPERSTATE => operstate = payload.first().copied(),
                        _ => {}
                    }
                    a += attr_len.next_multiple_of(4);
                }
                return Ok(Some(named.then_some(Link { flags, operstate })));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// The probe against a sysfs `class/net` directory at `root`.
pub fn probe_at(root: &Path, check: &InterfaceCheck) -> Verdict {
    let name = &check.interface;
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("interface name {name:?} is not valid"));
    }
    let dir = root.join(name);
    let flags = match std::fs::read_to_string(dir.join("flags")) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(format!("interface {name} does not exist"));
        }
        Err(err) => return Err(format!("interface {name}: cannot read flags: {err}")),
    };
    let flags = flags.trim();
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16)
        .map_err(|_| format!("interface {name}: unreadable flags {flags:?}"))?;
    let operstate = std::fs::read_to_string(dir.join("operstate"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    if flags & IFF_UP == 0 {
        return Err(format!(
            "interface {name} is administratively down (operstate {operstate})"
        ));
    }
    if !check.require_carrier {
        return Ok(format!("interface {name} is up (operstate {operstate})"));
    }
    // Reading `carrier` of a link that is down fails with EINVAL: no carrier.
    let carrier = match std::fs::read_to_string(dir.join("carrier")) {
        Ok(text) => text.trim() == "1",
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => false,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(format!("interface {name} disappeared while being read"));
        }
        Err(err) => return Err(format!("interface {name}: cannot read carrier: {err}")),
    };
    if carrier {
        Ok(format!(
            "interface {name} is up with carrier (operstate {operstate})"
        ))
    } else {
        Err(format!(
            "interface {name} has no carrier (operstate {operstate})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(root: &Path, name: &str, flags: &str, carrier: Option<&str>, oper: &str) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("flags"), flags).unwrap();
        std::fs::write(dir.join("operstate"), oper).unwrap();
        if let Some(c) = carrier {
            std::fs::write(dir.join("carrier"), c).unwrap();
        }
    }

    fn check(name: &str, require_carrier: bool) -> InterfaceCheck {
        InterfaceCheck {
            interface: name.to_owned(),
            require_carrier,
        }
    }

    /// A `RTM_NEWLINK` answer with `flags`, `IFLA_IFNAME = name` and `IFLA_OPERSTATE`.
    fn newlink(seq: u32, flags: u32, name: &str, operstate: u8) -> Vec<u8> {
        let mut body = vec![0u8; IFINFO_LEN];
        body[8..12].copy_from_slice(&flags.to_ne_bytes());
        let mut attr = |t: u16, payload: &[u8]| {
            let len = 4 + payload.len();
            body.extend_from_slice(&(len as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(payload);
            body.resize(body.len().next_multiple_of(4), 0);
        };
        attr(IFLA_IFNAME, format!("{name}\0").as_bytes());
        attr(IFLA_OPERSTATE, &[operstate]);
        let mut msg = Vec::new();
        msg.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn the_request_names_the_link() {
        let (req, len) = request(b"wg0", 7);
        let req = &req[..len];
        assert_eq!(len, 16 + 16 + 8 + 8);
        assert_eq!(read_u32(req, 0) as usize, len);
        assert_eq!(read_u16(req, 4), RTM_GETLINK);
        assert_eq!(read_u16(req, 6), NLM_F_REQUEST);
        assert_eq!(read_u32(req, 8), 7);
        // ifinfomsg: AF_UNSPEC, index 0 (by name).
        assert!(req[16..32].iter().all(|&b| b == 0));
        assert_eq!(read_u16(req, 32), 8);
        assert_eq!(read_u16(req, 34), IFLA_EXT_MASK);
        assert_eq!(read_u32(req, 36), RTEXT_FILTER_SKIP_STATS);
        assert_eq!(read_u16(req, 40), 4 + 4);
        assert_eq!(read_u16(req, 42), IFLA_IFNAME);
        assert_eq!(&req[44..48], b"wg0\0");
        // The longest name: 15 bytes, its NUL, no padding.
        let (_, len) = request(b"abcdefghijklmno", 1);
        assert_eq!(len, REQ_MAX);
    }

    #[test]
    fn answers_are_parsed_and_checked_against_the_name() {
        let up = IFF_UP | IFF_LOWER_UP;
        let msg = newlink(5, up, "wg0", 6);
        assert_eq!(
            parse(&msg, 5, b"wg0").unwrap(),
            Some(Some(Link {
                flags: up,
                operstate: Some(6)
            }))
        );
        // Another request's answer: nothing for this one.
        assert_eq!(parse(&msg, 4, b"wg0").unwrap(), None);
        // Found by an alternative name: the link's name differs, so sysfs answers.
        assert_eq!(parse(&msg, 5, b"tunnel").unwrap(), Some(None));
        assert_eq!(parse(&msg, 5, b"wg").unwrap(), Some(None));
        // NLMSG_ERROR (ENODEV): sysfs answers.
        let mut err = Vec::new();
        err.extend_from_slice(&36u32.to_ne_bytes());
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&0u16.to_ne_bytes());
        err.extend_from_slice(&5u32.to_ne_bytes());
        err.extend_from_slice(&0u32.to_ne_bytes());
        err.extend_from_slice(&(-libc::ENODEV).to_ne_bytes());
        err.extend_from_slice(&[0u8; 16]);
        assert_eq!(parse(&err, 5, b"wg0").unwrap(), Some(None));
        // Cut short: malformed.
        assert!(parse(&msg[..msg.len() - 4], 5, b"wg0").is_err());
    }

    #[test]
    fn netlink_verdicts_read_like_the_sysfs_ones() {
        let link = |flags, operstate| Link {
            flags,
            operstate: Some(operstate),
        };
        // The fixture tree's cases (`fixture_tree_reasons`), from netlink.
        assert_eq!(
            judge(&check("wg0", true), &link(0x1091 | IFF_LOWER_UP, 0)),
            Ok("interface wg0 is up with carrier (operstate unknown)".to_owned())
        );
        assert_eq!(
            judge(&check("eth1", false), &link(0x1002, 2)),
            Err("interface eth1 is administratively down (operstate down)".to_owned())
        );
        assert_eq!(
            judge(&check("eth2", true), &link(0x1003, 3)),
            Err("interface eth2 has no carrier (operstate lowerlayerdown)".to_owned())
        );
        assert_eq!(
            judge(&check("eth2", false), &link(0x1003, 3)),
            Ok("interface eth2 is up (operstate lowerlayerdown)".to_owned())
        );
        // An operstate sysfs has no name for reads as `unknown`, as an unreadable one did.
        assert_eq!(
            judge(&check("x", false), &link(IFF_UP, 42)),
            Ok("interface x is up (operstate unknown)".to_owned())
        );
    }

    #[test]
    fn loopback_is_answered_by_netlink_as_sysfs_answers() {
        let link = netlink_link("lo").expect("rtnetlink answers for lo");
        for require_carrier in [true, false] {
            let c = check("lo", require_carrier);
            assert_eq!(judge(&c, &link), probe_at(Path::new("/sys/class/net"), &c));
        }
        // Not found, too long, or not a name: left to sysfs.
        assert_eq!(netlink_link("vg-no-such-link"), None);
        assert_eq!(netlink_link("abcdefghijklmnop"), None);
        assert_eq!(netlink_link(""), None);
    }

    #[test]
    fn fixture_tree_reasons() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fixture(root, "wg0", "0x1091\n", Some("1\n"), "unknown\n");
        fixture(root, "eth1", "0x1002\n", None, "down\n");
        fixture(root, "eth2", "0x1003\n", Some("0\n"), "lowerlayerdown\n");
        assert_eq!(
            probe_at(root, &check("wg0", true)),
            Ok("interface wg0 is up with carrier (operstate unknown)".to_owned())
        );
        assert_eq!(
            probe_at(root, &check("wg1", true)),
            Err("interface wg1 does not exist".to_owned())
        );
        assert_eq!(
            probe_at(root, &check("eth1", false)),
            Err("interface eth1 is administratively down (operstate down)".to_owned())
        );
        assert_eq!(
            probe_at(root, &check("eth2", true)),
            Err("interface eth2 has no carrier (operstate lowerlayerdown)".to_owned())
        );
        assert_eq!(
            probe_at(root, &check("eth2", false)),
            Ok("interface eth2 is up (operstate lowerlayerdown)".to_owned())
        );
        assert!(probe_at(root, &check("../etc", true)).is_err());
        fixture(root, "bad", "zz\n", None, "up\n");
        assert_eq!(
            probe_at(root, &check("bad", true)),
            Err("interface bad: unreadable flags \"zz\"".to_owned())
        );
    }
}
