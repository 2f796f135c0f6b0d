//! A cron `vigil check` pays only for what it runs (issue 17): a run opens the ledger and
//! runs the checks; it builds no driver and reaches no Docker engine or D-Bus while the
//! checks pass, and its ledger connection leaves the write-ahead log short for the next
//! run (`ledger/one_shot.rs`) while saving every run's check state.

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

#[test]
fn cron_runs_keep_the_ledger_log_short_and_save_every_run() {
    let env = Env::new();
    let (_server, port) = start_flaky_http(&env, "web");
    env.write_config(&format!(
        r#"
[services.web]
driver = "command"
restart_command = ["true"]

[services.web.checks.http]
kind = "http"
url = "http://127.0.0.1:{port}/health"
"#
    ));
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
