//! A cron `vigil check` pays only for what it runs (issue 17): a run opens the ledger and
//! runs the checks; it builds no driver and reaches no Docker engine or D-Bus while the
//! checks pass, and its ledger connection leaves the write-ahead log short for the next
//! run (`ledger/one_shot.rs`) while saving every run's check state. Its command line is
//! read without clap (`cli/fast_args.rs`) and means what clap says it means.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use support::*;

/// The longest the write-ahead log may be after a one-shot run: the next run truncates it
/// once it reaches 16 frames (`ledger::one_shot::CHECKPOINT_AT`), and one run adds a few.
const WAL_BOUND: u64 = 24 * (4096 + 24);

fn check_json(env: &Env) -> serde_json::Value {
    let out = env.vigil(&["check", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("check json")
}

fn wal_len(env: &Env) -> Option<u64> {
    std::fs::metadata(env.state_dir().join("ledger.db-wal"))
        .ok()
        .map(|m| m.len())
}

/// A `command` service `web` with one http check on `port`.
fn web_service(port: u16) -> String {
    format!(
        r#"
[services.web]
driver = "command"
restart_command = ["true"]

[services.web.checks.http]
kind = "http"
url = "http://127.0.0.1:{port}/health"
"#
    )
}

#[test]
fn cron_runs_keep_the_ledger_log_short_and_save_every_run() {
    let env = Env::new();
    let (_server, port) = start_flaky_http(&env, "web");
    env.write_config(&web_service(port));
    let runs = 40;
    let mut truncated = false;
    let mut last = 0;
    for run in 1..=runs {
        let doc = check_json(&env);
        assert_eq!(doc["services"][0]["checks"][0]["verdict"], "pass", "{doc}");
        // Left for the next run (no checkpoint and delete on the way out), and short.
        let len = wal_len(&env).unwrap_or_else(|| panic!("run {run}: no write-ahead log"));
        assert!(len < WAL_BOUND, "run {run}: the log is {len} bytes");
        truncated |= len < last;
        last = len;
    }
    assert!(truncated, "the log was never checkpointed");
    // Every run's state was saved: the check passed `runs` times in a row.
    let out = env.vigil(&["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let check = &doc["services"][0]["checks"][0];
    assert_eq!(check["consecutive_successes"], runs, "{doc}");
    assert_eq!(check["status"], "passing", "{doc}");
}

#[test]
fn passing_checks_reach_no_driver() {
    let env = Env::new();
    let (_server, port) = start_flaky_http(&env, "web");
    let missing = env.path("missing");
    let missing = missing.display();
    env.write_config(&format!(
        r#"
[services.box]
driver = "docker"
container = "box"
docker_host = "unix://{missing}/docker.sock"

[services.box.checks.http]
kind = "http"
url = "http://127.0.0.1:{port}/box"

[services.unit]
driver = "systemd"
unit = "unit.service"
bus_address = "unix:path={missing}/bus"

[services.unit.checks.http]
kind = "http"
url = "http://127.0.0.1:{port}/unit"
"#
    ));
    let out = env.vigil(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check json");
    for service in doc["services"].as_array().expect("services") {
        assert_eq!(service["checks"][0]["verdict"], "pass", "{doc}");
        assert!(service["action"].is_null(), "{doc}");
    }
    // Nothing tried the engine's socket or the bus (an error would name them).
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("missing"), "{stderr}");
    // Only the ledger in the state directory: no locks, no driver state.
    let mut entries: Vec<String> = std::fs::read_dir(env.state_dir())
        .expect("state dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert!(
        entries
            .iter()
            .all(|e| ["ledger.db", "ledger.db-shm", "ledger.db-wal"].contains(&e.as_str())),
        "{entries:?}"
    );
}

/// `vigil check`'s usual command lines, read without clap, mean what clap says: the
/// configuration from `$VIGIL_CONFIG` or from `-c` before or after `check`, `--json`,
/// service names; what clap refuses is refused with clap's words and exit code.
#[test]
fn cron_command_lines_mean_what_clap_says() {
    let env = Env::new();
    let (_server, port) = start_flaky_http(&env, "web");
    env.write_config(&format!(
        "{}{}",
        web_service(port),
        format_args!(
            r#"
[services.db]
driver = "command"
restart_command = ["true"]

[services.db.checks.http]
kind = "http"
url = "http://127.0.0.1:{port}/db"
"#
        )
    ));
    let config = env.config_path();
    let run = |args: &[&std::ffi::OsStr], from_env: bool| {
        let mut cmd = command(vigil_bin());
        cmd.args(args).env_remove("VIGIL_SOCKET");
        if from_env {
            cmd.env("VIGIL_CONFIG", &config);
        } else {
            cmd.env_remove("VIGIL_CONFIG");
        }
        cmd.output().expect("run vigil")
    };
    let services = |out: &std::process::Output| -> Vec<String> {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check json");
        doc["services"]
            .as_array()
            .expect("services")
            .iter()
            .map(|s| s["service"].as_str().expect("name").to_owned())
            .collect()
    };
    let c = config.as_os_str();
    let os = |a: &'static str| std::ffi::OsStr::new(a);
    // The whole configuration, from the environment or from -c anywhere.
    assert_eq!(
        services(&run(&[os("check"), os("--json")], true)),
        ["web", "db"]
    );
    assert_eq!(
        services(&run(&[os("-c"), c, os("check"), os("--json")], false)),
        ["web", "db"]
    );
    let mut config_eq = std::ffi::OsString::from("--config=");
    config_eq.push(c);
    assert_eq!(
        services(&run(
            &[os("check"), os("db"), &config_eq, os("--json")],
            false
        )),
        ["db"]
    );
    // -c wins over $VIGIL_CONFIG.
    let other = env.path("other.toml");
    std::fs::write(&other, "").expect("write");
    let out = run(&[os("check"), os("--json")], true);
    assert_eq!(services(&out), ["web", "db"]);
    let out = run(
        &[os("check"), os("-c"), other.as_os_str(), os("--json")],
        true,
    );
    assert_eq!(services(&out), Vec::<String>::new());
    // Refused by clap, as before: usage errors, exit 2.
    for (args, says) in [
        (
            vec![os("check"), os("--json"), os("--json")],
            "cannot be used multiple times",
        ),
        (
            vec![os("check"), os("--bogus")],
            "unexpected argument '--bogus'",
        ),
        (
            vec![os("--json"), os("check")],
            "unexpected argument '--json'",
        ),
    ] {
        let out = run(&args, true);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // An unknown service is the command's usage error, as before.
    let out = run(&[os("check"), os("nosuch")], true);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("unknown service `nosuch`"),
        "{}",
        text(&out.stderr)
    );
}
