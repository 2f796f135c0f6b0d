//! `kind = "interface"`: a network interface exists, is administratively up (`IFF_UP`) and,
//! unless `require_carrier = false`, has carrier (seed 003's WireGuard tunnel check).
//!
//! Owns: reading `/sys/class/net/<name>/{flags,carrier,operstate}` (under a configurable
//! root, so the logic is testable against a fixture tree). Must not: change any link, or
//! look at another network namespace than Vigil's own (sysfs shows only the reader's).

use std::io;
use std::path::Path;

use super::Verdict;
use crate::model::InterfaceCheck;

/// `IFF_UP` in `/sys/class/net/<name>/flags`.
const IFF_UP: u32 = 0x1;

pub(super) fn label(check: &InterfaceCheck) -> String {
    format!("interface {}", check.interface)
}

pub(super) async fn probe(check: &InterfaceCheck) -> Verdict {
    // A handful of tiny sysfs reads: cheaper inline than a blocking-pool round trip.
    probe_at(Path::new("/sys/class/net"), check)
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
