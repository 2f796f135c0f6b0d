//! `vigil run` end to end: a real HTTP server flipping to 500, signals, reload.

mod support;

use std::time::Duration;

use rustix::process::Signal;
use support::*;

/// The issue's bound: a check turning 500 is acted on within `every * failure_threshold +
/// timeout` plus 100 ms, and not again inside the cooldown.
#[test]
fn http_500_restarts_within_the_bound_and_not_again_inside_cooldown() {
    let env = Env::new();
    let (_http, port) = start_flaky_http(&env, "http");
    let recorder = helper_bin("vigil-restart-recorder");
    let every_ms = 300u128;
    let threshold = 2u128;
    let timeout_ms = 1000u128;
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "60s"

[services.web]
driver = "command"
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "1"]

[services.web.checks.health]
kind = "http"
url = "http://127.0.0.1:{port}/health"
every = "{every_ms}ms"
timeout = "{timeout_ms}ms"
failure_threshold = {threshold}
"#,
        recorder = recorder.display().to_string(),
        log = env.path("restarts.log").display().to_string(),
    ));
    let daemon = env.start_daemon(&[]);
    // Passing first.
    wait_until(Duration::from_secs(20), "the check to pass", || {
        let out = env.vigil(&["status", "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (doc["services"][0]["checks"][0]["status"] == "passing").then_some(())
    });
    let flipped_at = now_ns();
    std::fs::write(env.path("http.status.tmp"), "500").unwrap();
    std::fs::rename(env.path("http.status.tmp"), env.path("http.status")).unwrap();

    let bound =
        Duration::from_millis(u64::try_from(every_ms * threshold + timeout_ms + 100).unwrap());
    let first = wait_until(bound * 3, "the restart", || {
        recorder_runs(&env.path("restarts.log")).first().copied()
    });
    let latency = Duration::from_nanos(u64::try_from(first.0 - flipped_at).unwrap());
    assert!(
        latency <= bound,
        "restarted {latency:?} after the flip; bound is {bound:?}"
    );
    // Still 500 after the restart: the check fails again, the guard skips it (cooldown).
    daemon.wait_log("Restart SKIPPED: cooldown active", Duration::from_secs(10));
    assert_eq!(recorder_runs(&env.path("restarts.log")).len(), 1);
    let log = daemon.log_text();
    assert!(log.contains("Restart ALLOWED (1/5 per hour)"), "{log}");
    assert!(log.contains("expected status 200-399, got 500"), "{log}");
}

/// SIGTERM cancels an in-flight check (killing its process group) and exits 0 promptly.
#[test]
fn sigterm_cancels_in_flight_checks_and_exits_zero() {
    let env = Env::new();
    let pid_file = env.path("check.pid");
    env.write_config(&format!(
        r#"
[services.svc]
driver = "command"
restart_command = ["true"]

[services.svc.checks.slow]
kind = "exec"
command = ["sh", "-c", "echo $$ > {pid}; exec sleep 30"]
timeout = "60s"
every = "1h"
"#,
        pid = pid_file.display()
    ));
    let mut daemon = env.start_daemon(&[]);
    let check_pid: u32 = wait_until(Duration::from_secs(20), "the check to start", || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    assert!(alive(check_pid));
    let sent = instant_now();
    daemon.signal(Signal::TERM);
    let status = daemon
        .wait_exit(Duration::from_secs(5))
        .expect("vigil exits after SIGTERM");
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(0), "{}", daemon.log_text());
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    wait_until(
        Duration::from_secs(3),
        "the check's process to be gone",
        || (!alive(check_pid)).then_some(()),
    );
    let log = daemon.log_text();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("vigil stopped cleanly"), "{log}");
}

/// A second signal exits at once even while a restart is still running.
#[test]
fn a_second_signal_exits_immediately() {
    let env = Env::new();
    let recorder = helper_bin("vigil-restart-recorder");
    env.write_config(&format!(
        r#"
[services.svc]
driver = "command"
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "20000"]

[[services.svc.schedule]]
every = "200ms"
"#,
        recorder = recorder.display().to_string(),
        log = env.path("restarts.log").display().to_string(),
    ));
    let mut daemon = env.start_daemon(&[]);
    wait_until(Duration::from_secs(20), "the restart to start", || {
        (!recorder_lines(&env.path("restarts.log")).is_empty()).then_some(())
    });
    daemon.signal(Signal::TERM);
    daemon.wait_log("SIGTERM received", Duration::from_secs(5));
    assert!(
        daemon.wait_exit(Duration::from_millis(300)).is_none(),
        "waits for the restart"
    );
    let sent = instant_now();
    daemon.signal(Signal::INT);
    let status = daemon
        .wait_exit(Duration::from_secs(3))
        .expect("second signal exits");
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Some(130));
    assert!(daemon.log_text().contains("second signal"));
}

fn consecutive_failures(env: &Env, check: &str) -> u64 {
    // Query with a copy of the last valid config: the live file may be broken on purpose.
    let out = command(vigil_bin())
        .args(["status", "--json", "-c"])
        .arg(env.path("valid.toml"))
        .output()
        .expect("vigil status");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status json ({e}): {}", text(&out.stderr)));
    doc["services"][0]["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == check))
        .and_then(|c| c["consecutive_failures"].as_u64())
        .unwrap_or(0)
}

/// SIGHUP applies a valid config atomically, keeping the state of unchanged checks, and
/// rejects a broken one while the old keeps running.
#[test]
fn sighup_reload_keeps_unchanged_checks_and_rejects_broken_configs() {
    let env = Env::new();
    let base = r#"
[services.svc]
driver = "command"
restart_command = ["true"]

[services.svc.checks.steady]
kind = "exec"
command = ["false"]
every = "100ms"
failure_threshold = 100000
on_failure = "alert"

[services.svc.checks.changing]
kind = "exec"
command = ["false"]
every = "100ms"
failure_threshold = 100000
on_failure = "alert"
"#;
    env.write_config(base);
    std::fs::copy(env.config_path(), env.path("valid.toml")).unwrap();
    let daemon = env.start_daemon(&[]);
    wait_until(Duration::from_secs(20), "failures to accumulate", || {
        (consecutive_failures(&env, "steady") >= 5 && consecutive_failures(&env, "changing") >= 5)
            .then_some(())
    });

    // A valid change: `changing` gets a new interval, a new check appears. The new interval
    // is long so the restarted check runs exactly once: its count settles at 1, which no
    // lag in the batched state writes can blur.
    env.write_config(&format!(
        "{}\n{}",
        base.replace(
            "[services.svc.checks.changing]\nkind = \"exec\"\ncommand = [\"false\"]\nevery = \"100ms\"",
            "[services.svc.checks.changing]\nkind = \"exec\"\ncommand = [\"false\"]\nevery = \"1h\""
        ),
        "[services.svc.checks.added]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\nevery = \"1h\"\non_failure = \"alert\"\n"
    ));
    std::fs::copy(env.config_path(), env.path("valid.toml")).unwrap();
    let before_steady = consecutive_failures(&env, "steady");
    let before_changing = consecutive_failures(&env, "changing");
    daemon.signal(Signal::HUP);
    daemon.wait_log("configuration reloaded", Duration::from_secs(10));
    let log = daemon.log_text();
    assert!(log.contains("1 check(s) unchanged"), "{log}");
    // The unchanged check kept counting; the changed one started over.
    std::thread::sleep(Duration::from_millis(50));
    let after_steady = consecutive_failures(&env, "steady");
    assert!(
        after_steady >= before_steady,
        "unchanged check lost its state: {before_steady} -> {after_steady}"
    );
    assert!(before_changing >= 5, "{before_changing}");
    wait_until(
        Duration::from_secs(10),
        "the changed check to start over",
        || (consecutive_failures(&env, "changing") == 1).then_some(()),
    );
    wait_until(Duration::from_secs(10), "the added check to run", || {
        let out = env.vigil(&["status", "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let checks = doc["services"][0]["checks"].as_array()?.clone();
        checks
            .iter()
            .any(|c| c["name"] == "added" && c["last_run"].is_string())
            .then_some(())
    });

    // A broken config is rejected with its reasons; the daemon keeps running the old one.
    std::fs::write(
        env.config_path(),
        "[services.svc]\ndriver = \"command\"\nrestart_comand = [\"true\"]\n",
    )
    .unwrap();
    daemon.signal(Signal::HUP);
    let log = daemon.wait_log("reload rejected", Duration::from_secs(10));
    assert!(log.contains("did you mean `restart_command`"), "{log}");
    let steady = consecutive_failures(&env, "steady");
    wait_until(
        Duration::from_secs(10),
        "the old config to keep running",
        || (consecutive_failures(&env, "steady") > steady).then_some(()),
    );
}

/// The budget spent: every denied request is logged and recorded, but "ACTION REQUIRED"
/// is raised once per given-up episode, not on every check run.
#[test]
fn given_up_is_announced_once_per_episode() {
    let env = Env::new();
    env.write_config(
        r#"
[defaults.guard]
cooldown = "0"
max_restarts = 1
window = "1h"

[services.svc]
driver = "command"
restart_command = ["true"]

[services.svc.checks.down]
kind = "exec"
command = ["false"]
every = "100ms"
"#,
    );
    let daemon = env.start_daemon(&[]);
    // One given-up episode: its later denials are counted on its first denial, not
    // written as rows of their own (a check failing every 100 ms would write 36,000 an
    // hour), and logged quietly.
    let denials = wait_until(Duration::from_secs(20), "several denials", || {
        let history = env.history();
        let denied: Vec<_> = history
            .iter()
            .filter(|e| e["verdict"] == "denied")
            .collect();
        let n = denied.first()?.get("denials")?.as_u64()?;
        (n >= 4).then_some((denied.len(), n))
    });
    assert_eq!(denials.0, 1, "one row for the episode, not one per denial");
    let log = daemon.log_text();
    assert_eq!(log.matches("ACTION REQUIRED").count(), 1, "{log}");
    assert_eq!(
        log.matches("Restart DENIED: limit reached (1/1 per hour)")
            .count(),
        1,
        "later denials of the episode are logged at debug level: {log}"
    );
    let status = env.vigil(&["status", "svc", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(doc["services"][0]["state"], "given-up", "{doc}");
    assert!(doc["services"][0]["denials"].as_u64() >= Some(4), "{doc}");
}

/// Seed 004's dead-man switch: while heartbeats arrive nothing happens; when they stop for
/// longer than `ttl` the service is restarted.
#[test]
fn missing_heartbeats_restart_the_service() {
    let env = Env::new();
    let recorder = helper_bin("vigil-restart-recorder");
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "1h"

[services.svc]
driver = "command"
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "1"]

[services.svc.checks.beat]
kind = "heartbeat"
ttl = "800ms"
every = "100ms"
"#,
        recorder = recorder.display().to_string(),
        log = env.path("restarts.log").display().to_string(),
    ));
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", Duration::from_secs(20));
    let pushing_until = instant_now() + Duration::from_millis(2000);
    while instant_now() < pushing_until {
        let out = env.vigil(&["heartbeat", "svc/beat"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        recorder_runs(&env.path("restarts.log")).is_empty(),
        "no restart while heartbeats arrive: {}",
        daemon.log_text()
    );
    wait_until(
        Duration::from_secs(10),
        "the restart after heartbeats stop",
        || (!recorder_runs(&env.path("restarts.log")).is_empty()).then_some(()),
    );
    assert!(daemon.log_text().contains("no heartbeat for"));
}

/// Seed 003's adaptive interval: with `every = "1h"` a stale file is still noticed within
/// `fast_every` of crossing `max_age`, and the service is restarted.
#[test]
fn file_age_checks_speed_up_as_the_file_ages() {
    let env = Env::new();
    let stamp = env.path("stamp");
    std::fs::write(&stamp, "fresh").unwrap();
    let recorder = helper_bin("vigil-restart-recorder");
    env.write_config(&format!(
        r#"
[services.svc]
driver = "command"
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "1"]

[services.svc.checks.stamp]
kind = "file_age"
path = {stamp:?}
max_age = "1500ms"
fast_every = "100ms"
every = "1h"
"#,
        recorder = recorder.display().to_string(),
        log = env.path("restarts.log").display().to_string(),
        stamp = stamp.display().to_string(),
    ));
    let written = instant_now();
    let daemon = env.start_daemon(&[]);
    wait_until(
        Duration::from_secs(15),
        "the restart of a stale file",
        || (!recorder_runs(&env.path("restarts.log")).is_empty()).then_some(()),
    );
    let took = written.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "noticed after {took:?} although every = 1h"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("last modified") && log.contains("passing -> failing"),
        "{log}"
    );
}

/// Reload end to end across driver kinds: one service goes command → exec → command,
/// and each definition takes effect (a driver-kind change is remove plus add: the exec
/// definition's process is spawned, and stopped again when the service goes back).
#[test]
fn reload_moves_a_service_between_command_and_exec_drivers() {
    let env = Env::new();
    let recorder = helper_bin("vigil-restart-recorder");
    let sleeper = helper_bin("vigil-sleeper");
    let command_service = |log: &str| {
        format!(
            r#"
[defaults.guard]
cooldown = "0"

[services.svc]
driver = "command"
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "1"]
"#,
            recorder = recorder.display().to_string(),
            log = env.path(log).display().to_string(),
        )
    };
    env.write_config(&command_service("first.log"));
    let mut daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", Duration::from_secs(20));
    let restart = || {
        let out = env.vigil(&["restart", "svc"]);
        assert!(out.status.success(), "restart: {}", text(&out.stderr));
    };
    restart();
    assert_eq!(recorder_runs(&env.path("first.log")).len(), 1);

    // command → exec: the exec definition's process runs.
    env.write_config(&format!(
        r#"
[services.svc]
driver = "exec"
command = [{sleeper:?}]
"#,
        sleeper = sleeper.display().to_string()
    ));
    daemon.signal(rustix::process::Signal::HUP);
    let pid = wait_until(Duration::from_secs(20), "the exec process", || {
        let out = env.vigil(&["status", "svc", "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let exec = &doc["services"][0]["exec"];
        (exec["state"] == "running").then(|| exec["pid"].as_u64())?
    });
    let pid = u32::try_from(pid).expect("pid");
    assert!(alive(pid), "the exec service's process {pid} runs");

    // exec → command: the process is stopped, the new command restarts the service.
    env.write_config(&command_service("second.log"));
    daemon.signal(rustix::process::Signal::HUP);
    wait_until(Duration::from_secs(20), "the exec process to stop", || {
        (!alive(pid)).then_some(())
    });
    wait_until(Duration::from_secs(20), "the command driver back", || {
        let out = env.vigil(&["status", "svc", "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (doc["services"][0]["driver"] == "command").then_some(())
    });
    restart();
    assert_eq!(recorder_runs(&env.path("second.log")).len(), 1);
    assert_eq!(recorder_runs(&env.path("first.log")).len(), 1);
    let log = daemon.log_text();
    assert_eq!(
        log.matches("replaced (its driver kind changed)").count(),
        2,
        "{log}"
    );
    daemon.signal(rustix::process::Signal::TERM);
    assert_eq!(
        daemon
            .wait_exit(Duration::from_secs(20))
            .and_then(|s| s.code()),
        Some(0)
    );
    // Every actor, the removed ones' included, ended with the daemon (a removed service's
    // actor once spun on its closed inbox and outlived the shutdown deadline).
    let log = daemon.log_text();
    assert!(!log.contains("still running after"), "{log}");
}
