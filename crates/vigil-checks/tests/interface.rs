//! `kind = "interface"` against a real veth pair created in the host network namespace.
//! The probe answers over rtnetlink (`RTM_GETLINK` by name) and falls back to sysfs; the
//! netlink answer is held to the sysfs one in every state, and a link's alternative name
//! (which rtnetlink resolves, sysfs does not) still reads "does not exist".
//!
//! Needs root (CAP_NET_ADMIN): CI runs as root, and without it this test fails loudly.
//! Only links with names generated here (`vg<pid><n>a`/`b`) are created or deleted, and a
//! drop guard deletes them even when an assertion panics.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use support::wait_until;
use vigil_checks::model::{CheckKind, InterfaceCheck};
use vigil_checks::probe::interface::probe_at;
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

#[expect(clippy::disallowed_methods, reason = "tests drive `ip` directly")]
fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A veth pair; deleting one end deletes both, on drop.
struct Veth {
    a: String,
    b: String,
}

impl Veth {
    fn create() -> Veth {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("vg{}{n}", std::process::id());
        let veth = Veth {
            a: format!("{base}a"),
            b: format!("{base}b"),
        };
        ip(&[
            "link", "add", &veth.a, "type", "veth", "peer", "name", &veth.b,
        ])
        .unwrap_or_else(|e| panic!("creating a veth pair needs root (CAP_NET_ADMIN): {e}"));
        veth
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Best effort: the pair may already be gone.
        let _ = ip(&["link", "del", &self.a]);
    }
}

async fn run(name: &str, require_carrier: bool) -> ProbeOutcome {
    let kind = CheckKind::Interface(InterfaceCheck {
        interface: name.to_owned(),
        require_carrier,
    });
    probe(&kind, Duration::from_secs(5), &ProbeContext::new()).await
}

/// Waits until the probe reports `reason` (operstate is updated asynchronously).
async fn wait_reason(name: &str, require_carrier: bool, passed: bool, reason: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = run(name, require_carrier).await;
        if out.passed == passed && out.reason == reason {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected passed={passed} {reason:?}, still {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn veth_pair_states() {
    let veth = Veth::create();
    let (a, b) = (veth.a.as_str(), veth.b.as_str());

    // Freshly created: both ends down.
    let out = run(a, true).await;
    assert!(!out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("interface {a} is administratively down (operstate down)")
    );

    // Up, but the peer is down: no carrier.
    ip(&["link", "set", a, "up"]).unwrap();
    wait_reason(
        a,
        true,
        false,
        &format!("interface {a} has no carrier (operstate lowerlayerdown)"),
    )
    .await;
    // Without require_carrier that is fine.
    let out = run(a, false).await;
    assert!(out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("interface {a} is up (operstate lowerlayerdown)")
    );

    // Peer up: carrier.
    ip(&["link", "set", b, "up"]).unwrap();
    wait_reason(
        a,
        true,
        true,
        &format!("interface {a} is up with carrier (operstate up)"),
    )
    .await;

    // Gone.
    ip(&["link", "del", a]).unwrap();
    wait_until("link deleted", Duration::from_secs(5), || {
        !std::path::Path::new("/sys/class/net").join(a).exists()
    })
    .await;
    let out = run(a, true).await;
    assert!(!out.passed);
    assert_eq!(out.reason, format!("interface {a} does not exist"));
}

#[tokio::test]
async fn loopback_is_up() {
    // `lo` has no carrier file semantics issues: it is up with carrier in any netns
    // where tests run.
    let out = run("lo", true).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason.starts_with("interface lo is up with carrier"),
        "{}",
        out.reason
    );
}

fn spec(name: &str, require_carrier: bool) -> InterfaceCheck {
    InterfaceCheck {
        interface: name.to_owned(),
        require_carrier,
    }
}

/// The probe's verdict (netlink) and the sysfs path's, once they agree twice in a row
/// (operstate and carrier settle asynchronously after a change).
async fn settled(name: &str, require_carrier: bool) -> (Result<String, String>, bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = spec(name, require_carrier);
        let out = probe(
            &CheckKind::Interface(c.clone()),
            Duration::from_secs(5),
            &ProbeContext::new(),
        )
        .await;
        let got = if out.passed {
            Ok(out.reason)
        } else {
            Err(out.reason)
        };
        let sysfs = probe_at(Path::new("/sys/class/net"), &c);
        if got == sysfs {
            let again = probe_at(Path::new("/sys/class/net"), &c);
            if again == sysfs {
                return (got, true);
            }
        }
        if tokio::time::Instant::now() > deadline {
            return (got, false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn netlink_and_sysfs_agree_in_every_state() {
    let veth = Veth::create();
    let (a, b) = (veth.a.as_str(), veth.b.as_str());
    let expect = |require_carrier: bool, want: Result<String, String>| async move {
        let (got, agreed) = settled(a, require_carrier).await;
        assert!(agreed, "netlink and sysfs disagree: netlink {got:?}");
        assert_eq!(got, want);
    };
    expect(
        true,
        Err(format!(
            "interface {a} is administratively down (operstate down)"
        )),
    )
    .await;
    ip(&["link", "set", a, "up"]).unwrap();
    expect(
        true,
        Err(format!(
            "interface {a} has no carrier (operstate lowerlayerdown)"
        )),
    )
    .await;
    expect(
        false,
        Ok(format!("interface {a} is up (operstate lowerlayerdown)")),
    )
    .await;
    ip(&["link", "set", b, "up"]).unwrap();
    expect(
        true,
        Ok(format!("interface {a} is up with carrier (operstate up)")),
    )
    .await;
    ip(&["link", "set", a, "down"]).unwrap();
    expect(
        false,
        Err(format!(
            "interface {a} is administratively down (operstate down)"
        )),
    )
    .await;
}

#[tokio::test]
async fn an_alternative_name_does_not_exist_as_before() {
    let veth = Veth::create();
    let alt = format!("{}x", veth.a);
    if let Err(e) = ip(&["link", "property", "add", "dev", &veth.a, "altname", &alt]) {
        // Kernels before 5.5 have no alternative names: nothing to hold apart.
        eprintln!("no altname support: {e}");
        return;
    }
    ip(&["link", "set", &veth.a, "up"]).unwrap();
    let out = probe(
        &CheckKind::Interface(spec(&alt, false)),
        Duration::from_secs(5),
        &ProbeContext::new(),
    )
    .await;
    assert!(!out.passed, "{out:?}");
    assert_eq!(out.reason, format!("interface {alt} does not exist"));
}
