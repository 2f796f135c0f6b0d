//! The control socket: with a daemon running, the CLI's restart/status/history/reset/
//! heartbeat go through it; without one (or with a stale socket) they work on the ledger.

#![allow(clippy::unwrap_used)] // A panic is a test failure.

mod support;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::time::Duration;

use rustix::process::Signal;
use support::*;

fn config(env: &Env, extra_vigil: &str) {
    let recorder = helper_bin("vigil-restart-recorder");
    let text = format!(
        r#"[vigil]
state_dir = {state:?}
{extra_vigil}

[services.svc]
driver = "command"
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "1"]

[services.svc.checks.beat]
kind = "heartbeat"
ttl = "1h"
on_failure = "alert"
"#,
        state = env.state_dir().display().to_string(),
        recorder = recorder.display().to_string(),
        log = env.path("restarts.log").display().to_string(),
    );
    std::fs::write(env.config_path(), text).unwrap();
}

fn socket(env: &Env) -> std::path::PathBuf {
    env.state_dir().join("vigil.sock")
}

fn wait_socket(env: &Env, daemon: &Daemon) {
    daemon.wait_log("vigil running", Duration::from_secs(20));
    assert!(socket(env).exists(), "no control socket");
}

/// Through the daemon: the restart is performed (and logged) by the daemon's service
/// actor; the CLI prints the same words and exit codes as without a daemon.
#[test]
fn cli_commands_go_through_a_running_daemon() {
    let env = Env::new();
    config(&env, "");
    let daemon = env.start_daemon(&[]);
    wait_socket(&env, &daemon);
    let mode = std::fs::metadata(socket(&env))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    let out = env.vigil(&["restart", "svc"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("svc: Restart ALLOWED (1/5 per hour)"));
    assert!(text(&out.stdout).contains("svc: restarted:"));
    assert_eq!(recorder_runs(&env.path("restarts.log")).len(), 1);
    // The daemon did it: its log has the verdict with the manual source.
    daemon.wait_log(
        "Restart ALLOWED (1/5 per hour) (source manual)",
        Duration::from_secs(5),
    );

    let out = env.vigil(&["restart", "svc", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["verdict"], "skipped");
    assert_eq!(doc["reason"], "cooldown");
    daemon.wait_log("Restart SKIPPED: cooldown active", Duration::from_secs(5));

    let out = env.vigil(&["heartbeat", "svc/beat"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = env.vigil(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["services"][0]["restarts_in_window"], 1);
    let out = env.vigil(&["status"]);
    assert!(
        text(&out.stdout).contains("1/5 per hour"),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains('\x1b'), "color on a pipe");

    let entries = env.history();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["verdict"], "allowed");
    assert_eq!(entries[1]["verdict"], "skipped");
    let out = env.vigil(&["history", "--since", "1h"]);
    assert!(
        text(&out.stdout).contains("manual"),
        "{}",
        text(&out.stdout)
    );

    let out = env.vigil(&["reset", "svc"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 restart(s) no longer count"));
    let out = env.vigil(&["restart", "svc"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(recorder_runs(&env.path("restarts.log")).len(), 2);

    // A service the CLI's config has but the daemon's does not: the daemon says so, exit 2.
    let cli_only = env.path("cli-only.toml");
    let mut text_cfg = std::fs::read_to_string(env.config_path()).unwrap();
    text_cfg.push_str("\n[services.extra]\ndriver = \"command\"\nrestart_command = [\"true\"]\n");
    std::fs::write(&cli_only, text_cfg).unwrap();
    let out = command(vigil_bin())
        .args(["restart", "extra", "-c"])
        .arg(&cli_only)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("the running daemon has no service `extra`"),
        "{}",
        text(&out.stderr)
    );
}

/// One daemon per state: a second refuses while the first answers; a socket left by a
/// killed daemon neither blocks the CLI (direct mode) nor the next daemon.
#[test]
fn a_second_daemon_refuses_and_a_stale_socket_is_replaced() {
    let env = Env::new();
    config(&env, "");
    let mut first = env.start_daemon(&[]);
    wait_socket(&env, &first);
    let out = env.vigil(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("another vigil daemon is already running"),
        "{}",
        text(&out.stderr)
    );

    first.signal(Signal::KILL);
    first.wait_exit(Duration::from_secs(10)).expect("killed");
    assert!(socket(&env).exists(), "a killed daemon leaves its socket");
    // Direct mode: nobody listens, so the CLI restarts on its own.
    let out = env.vigil(&["restart", "svc"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(recorder_runs(&env.path("restarts.log")).len(), 1);

    let mut second = env.start_daemon(&[]);
    wait_socket(&env, &second);
    let out = env.vigil(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    second.signal(Signal::TERM);
    assert_eq!(
        second
            .wait_exit(Duration::from_secs(15))
            .and_then(|s| s.code()),
        Some(0)
    );
    assert!(!socket(&env).exists(), "a clean stop removes the socket");
}

/// `control_socket_group`: the socket belongs to that group, mode 0660.
#[test]
fn control_socket_group_sets_group_and_mode() {
    let env = Env::new();
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    let (name, gid) = groups
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.first()?.to_string(), f.get(2)?.parse::<u32>().ok()?))
        })
        .find(|(_, gid)| *gid != 0)
        .expect("a non-root group");
    let path = env.path("ctl/api.sock");
    config(
        &env,
        &format!(
            "control_socket = {:?}\ncontrol_socket_group = {name:?}",
            path.display().to_string()
        ),
    );
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", Duration::from_secs(20));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid);
    let out = env.vigil(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // An unknown group stops the daemon before it runs anything, with the reason.
    let other = Env::new();
    config(&other, "control_socket_group = \"no-such-group-vigil\"");
    let out = other.vigil(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no group named `no-such-group-vigil`"),
        "{}",
        text(&out.stderr)
    );
}
