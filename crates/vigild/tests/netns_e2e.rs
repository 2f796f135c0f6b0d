//! Seed 003 in a network namespace of its own: a WireGuard-like interface (an `ifb` link,
//! as this kernel has no wireguard or dummy) goes down; `vigil check`, run inside the
//! namespace, sees it and runs the repair command (`on_failure = { exec = [...] }`)
//! through the guard, which brings it back; the next run passes.
//!
//! Needs root (CAP_NET_ADMIN and `ip netns`); the namespace and its link are created here
//! with names of their own and deleted on drop.

#![allow(clippy::unwrap_used)] // A panic is a test failure.

mod support;

use support::*;

fn ip(args: &[&str]) {
    let out = command("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        text(&out.stderr)
    );
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = command("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn a_downed_interface_in_a_namespace_is_repaired_through_the_guard() {
    let ns = Netns(format!("vigil-t{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    let link = "wgtest0";
    ip(&["-n", &ns.0, "link", "add", link, "type", "ifb"]);
    ip(&["-n", &ns.0, "link", "set", link, "up"]);

    let env = Env::new();
    env.write_config(&format!(
        r#"
[services.vpn]
driver = "command"
restart_command = ["true"]

[services.vpn.checks.wg]
kind = "interface"
interface = "{link}"
require_carrier = false
on_failure = {{ exec = ["ip", "link", "set", "{link}", "up"] }}
"#
    ));
    let check = || {
        command("ip")
            .args(["netns", "exec", &ns.0])
            .arg(vigil_bin())
            .args(["check", "--json", "-c"])
            .arg(env.config_path())
            .output()
            .unwrap()
    };
    let verdict = |out: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
    };

    let out = check();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(verdict(&out)["services"][0]["checks"][0]["verdict"], "pass");
    // The host's namespace has no such link: the check really ran inside.
    assert!(!std::path::Path::new(&format!("/sys/class/net/{link}")).exists());

    ip(&["-n", &ns.0, "link", "set", link, "down"]);
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    let doc = verdict(&out);
    let c = &doc["services"][0]["checks"][0];
    assert_eq!(c["verdict"], "fail");
    assert_eq!(
        c["reason"],
        format!("interface {link} is administratively down (operstate down)")
    );
    let action = &doc["services"][0]["action"];
    assert_eq!(action["kind"], "repair");
    assert_eq!(action["verdict"], "allowed");
    assert_eq!(action["outcome"], "ok", "{action}");

    let out = check();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(verdict(&out)["services"][0]["checks"][0]["verdict"], "pass");
    let history = env.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["source"], "health");
}
