//! How the CLI finds the daemon (SPEC §6, `cli/locate.rs`): `--socket`/`$VIGIL_SOCKET`
//! reach it without reading the configuration at all, a socket that answers nothing is
//! named, and a user the socket refuses is told what is missing (a group, a directory, or
//! a socket for root only) instead of getting a ledger of their own.
//!
//! The refusals need another user: those tests run as root (as CI does) and start the
//! CLI as `nobody` with `setpriv`; otherwise they print "skipped".

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(20);

/// A daemon with one command-driven service `svc`; `vigil` lines go into `[vigil]`.
fn daemon(env: &Env, vigil: &str) -> Daemon {
    let text = format!(
        "[vigil]\nstate_dir = {:?}\n{vigil}\n\n[services.svc]\ndriver = \"command\"\nrestart_command = [\"true\"]\n",
        env.state_dir().display().to_string()
    );
    std::fs::write(env.config_path(), text).unwrap();
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    daemon
}

/// `vigil ARGS` with no `-c`, stdin closed.
fn vigil(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = command(vigil_bin());
    cmd.args(args)
        .env_remove("VIGIL_SOCKET")
        .env_remove("VIGIL_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::null()).output().unwrap()
}

/// With `--socket` (or `$VIGIL_SOCKET`), status, history, restart and reset talk to the
/// daemon without reading the configuration: here it does not even exist.
#[test]
fn a_named_socket_is_used_without_reading_the_configuration() {
    let env = Env::new();
    let _daemon = daemon(&env, "");
    let socket = env.state_dir().join("vigil.sock");
    let socket = socket.to_str().unwrap();
    let missing = env.path("no-such-dir/vigil.toml");
    let missing = missing.to_str().unwrap();

    let out = vigil(
        &["status", "--json", "--socket", socket, "-c", missing],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["services"][0]["name"], "svc", "{doc}");

    let out = vigil(
        &["restart", "svc", "-c", missing],
        &[("VIGIL_SOCKET", socket)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("svc: "), "{}", text(&out.stdout));

    let out = vigil(
        &["history", "--json", "--socket", socket, "-c", missing],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["entries"].as_array().map(Vec::len), Some(1), "{doc}");

    let out = vigil(&["reset", "svc", "--socket", socket, "-c", missing], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // The daemon's own names decide: an unknown service is a usage error (exit 2).
    let out = vigil(&["status", "nope", "--socket", socket, "-c", missing], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("the running daemon has no service `nope` (it runs: svc)"),
        "{}",
        text(&out.stderr)
    );
    // A usage error is found before anything is sent.
    let out = vigil(&["history", "--since", "soon", "--socket", socket], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid --since"));
}

/// A named socket nobody answers on is an error naming it (not a fallback to the ledger).
#[test]
fn a_named_socket_without_a_daemon_is_named() {
    let env = Env::new();
    env.write_config("[services.svc]\ndriver = \"command\"\nrestart_command = [\"true\"]\n");
    let socket = env.path("nothing.sock");
    let out = env.vigil(&["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "vigil: no daemon answers at {} (named with --socket or $VIGIL_SOCKET)",
            socket.display()
        )
    );
    assert!(!env.state_dir().join("ledger.db").exists());
}

fn as_root() -> bool {
    if rustix::process::geteuid().is_root() {
        true
    } else {
        println!("skipped: needs root (to run the CLI as another user)");
        false
    }
}

/// `vigil ARGS` as `nobody` (uid/gid 65534), with `groups` as its supplementary groups.
fn vigil_as_nobody(args: &[&str], groups: &str) -> Output {
    let mut cmd = command("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534"]);
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={groups}"));
    }
    cmd.arg(vigil_bin())
        .args(args)
        .env_remove("VIGIL_SOCKET")
        .env_remove("VIGIL_CONFIG")
        .env("HOME", "/nonexistent")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// A scratch directory others may enter (tempdirs are 0700).
fn open_env() -> Env {
    let env = Env::new();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env
}

/// The daemon creates a missing socket directory that the socket's group can enter, and
/// only that group; a user outside it is told which group they lack; inside it they get
/// their answer.
#[test]
fn a_user_outside_the_sockets_group_is_told_which_group() {
    if !as_root() {
        return;
    }
    let env = open_env();
    let socket = env.path("run/vigil.sock");
    let _daemon = daemon(
        &env,
        &format!(
            "control_socket = {:?}\ncontrol_socket_group = \"adm\"",
            socket.to_str().unwrap()
        ),
    );
    let adm = nix::unistd::Group::from_name("adm").unwrap().unwrap().gid;
    let dir = std::fs::metadata(env.path("run")).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o750);
    assert_eq!(dir.gid(), adm.as_raw());
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), adm.as_raw());

    let out = vigil_as_nobody(&["status", "--socket", socket.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "vigil: cannot reach the daemon at {}: permission denied (you are not in group `adm`, the group of {})",
            socket.display(),
            env.path("run").display()
        )
    );

    let out = vigil_as_nobody(
        &["status", "--socket", socket.to_str().unwrap()],
        &adm.as_raw().to_string(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("svc"), "{}", text(&out.stdout));
}

/// In a directory everyone may enter (as systemd's `RuntimeDirectory=vigil` makes
/// /run/vigil), the refusal names the socket's group; without `control_socket_group` the
/// socket is root's only, and the message says so.
#[test]
fn the_refusal_names_the_sockets_group_or_its_owner() {
    if !as_root() {
        return;
    }
    let env = open_env();
    std::fs::create_dir(env.path("run")).unwrap();
    std::fs::set_permissions(env.path("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = env.path("run/vigil.sock");
    let s = socket.to_str().unwrap();
    let mut daemon_with_group = daemon(
        &env,
        &format!("control_socket = {s:?}\ncontrol_socket_group = \"adm\""),
    );
    let out = vigil_as_nobody(&["history", "--socket", s], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "vigil: cannot reach the daemon at {s}: permission denied (you are not in group `adm`, the socket's group)"
        )
    );
    daemon_with_group.signal(rustix::process::Signal::TERM);
    assert!(daemon_with_group.wait_exit(LONG).is_some());

    let _root_only = daemon(&env, &format!("control_socket = {s:?}"));
    let out = vigil_as_nobody(&["status", "--socket", s], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "vigil: cannot reach the daemon at {s}: permission denied (the socket is for `root` only (mode 0600): the daemon's configuration sets no `control_socket_group`)"
        )
    );
    assert!(Path::new(s).exists());
}
