//! `driver = "systemd"` end to end against a real systemd 252 (PID 1 of the container that
//! `bench/nspawn-up.sh` boots): the `vigil` binary restarts units over the container's
//! system bus, follows the jobs, reports `start-limit-hit`, honors `grace` from the unit's
//! `ActiveEnterTimestamp`, and a failing HTTP check restarts a unit whose server runs
//! inside the container's network namespace (reached over the test bed's private veth).
//!
//! Gated: runs only with `VIGIL_TEST_SYSTEMD=1` (plus `VIGIL_TEST_SYSTEMD_BUS`, `_LEADER`
//! and `_ADDR`, which `bench/nspawn-up.sh` prints). Every test uses its own instances of the
//! test bed's template units.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Env, text, wait_until};
use vigil_checks::model::SystemdBus;
use vigil_checks::systemd::{Buses, JobEnd, JobKind, UnitState};

fn enabled() -> bool {
    if std::env::var("VIGIL_TEST_SYSTEMD").as_deref() == Ok("1") {
        true
    } else {
        println!(
            "skipped: set VIGIL_TEST_SYSTEMD=1 and VIGIL_TEST_SYSTEMD_BUS/_LEADER/_ADDR (see bench/nspawn-up.sh)"
        );
        false
    }
}

fn address() -> String {
    std::env::var("VIGIL_TEST_SYSTEMD_BUS").expect("VIGIL_TEST_SYSTEMD_BUS")
}

/// Runs one D-Bus action on the test bed's bus, on a runtime of its own.
fn on_bus<T>(f: impl AsyncFnOnce(vigil_checks::systemd::Bus) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bus = Buses::default()
            .get(&SystemdBus::Address(address()))
            .await
            .expect("connect to the test bed's bus");
        f(bus).await
    })
}

fn state(unit: &str) -> UnitState {
    on_bus(async |b| b.unit_state(unit).await.unwrap())
}

/// `method` on `unit`, waiting for its job to be `done`.
fn job(kind: JobKind, unit: &str) {
    let out = on_bus(async |b| b.job(kind, unit, Duration::from_secs(20)).await.unwrap());
    assert_eq!(
        out.end,
        JobEnd::Removed("done".to_owned()),
        "{} {unit}: {out:?}",
        kind.method()
    );
}

/// Stopped, not failed, start-limit counter cleared.
fn fresh(unit: &str) {
    job(JobKind::Stop, unit);
    on_bus(async |b| {
        let _ = b.reset_failed(unit).await;
    });
}

/// A config with one systemd-driven service `svc` for `unit`; `extra` goes into the
/// service table, `checks` after it.
fn config(env: &Env, unit: &str, extra: &str, checks: &str) {
    env.write_config(&format!(
        "[defaults.guard]\ncooldown = \"0s\"\nmax_restarts = 50\n\n[services.svc]\ndriver = \"systemd\"\nunit = \"{unit}\"\nbus_address = \"{}\"\n{extra}\n{checks}",
        address()
    ));
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

#[test]
fn restart_moves_active_enter_timestamp_and_status_shows_the_unit() {
    if !enabled() {
        return;
    }
    let unit = "vigil-sleep@drv-restart.service";
    fresh(unit);
    job(JobKind::Start, unit);
    let before = state(unit);
    let env = Env::new();
    config(&env, unit, "", "");

    let out = env.vigil(&["restart", "svc", "--json"]);
    let doc = json(&out);
    assert!(out.status.success(), "{doc}\n{}", text(&out.stderr));
    assert_eq!(doc["outcome"], "ok", "{doc}");
    let detail = doc["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("RestartUnit {unit}: job done in ")),
        "{detail}"
    );
    assert!(
        detail.ends_with("unit active (running) (Result=success, NRestarts=0)"),
        "{detail}"
    );

    let after = state(unit);
    assert!(after.is_active());
    assert_ne!(
        after.invocation_id, before.invocation_id,
        "a new instance runs"
    );
    assert!(
        after.active_enter > before.active_enter,
        "ActiveEnterTimestamp moved: {:?} -> {:?}",
        before.active_enter,
        after.active_enter
    );

    let out = env.vigil(&["status", "--json"]);
    let doc = json(&out);
    let svc = &doc["services"][0];
    assert_eq!(svc["driver"], "systemd", "{doc}");
    assert_eq!(svc["running"], true, "{doc}");
    let sd = &svc["systemd"];
    assert_eq!(sd["unit"], unit);
    assert_eq!(sd["active_state"], "active");
    assert_eq!(sd["sub_state"], "running");
    assert_eq!(sd["result"], "success");
    assert_eq!(sd["n_restarts"], 0);
    assert!(sd["uptime_secs"].as_u64().is_some(), "{sd}");
    assert!(sd["active_since"].as_str().is_some(), "{sd}");

    let out = env.vigil(&["status"]);
    let human = text(&out.stdout);
    assert!(human.contains("NRESTARTS"), "{human}");
    assert!(human.contains(unit), "{human}");
    assert!(human.contains("active (running)"), "{human}");
    job(JobKind::Stop, unit);
}

#[test]
fn start_limit_hit_is_reported_once_and_reset_failed_clears_it() {
    if !enabled() {
        return;
    }
    // StartLimitBurst=3 per hour: the 4th start within the hour is refused.
    let unit = "vigil-limit@drv.service";
    fresh(unit);
    let env = Env::new();
    let failing = "[services.svc.checks.unit]\nkind = \"systemd\"\nunit = \"vigil-sleep@drv-never-started\"\n";
    config(&env, unit, "", failing);
    for i in 1..=3 {
        let out = env.vigil(&["restart", "svc", "--json"]);
        assert!(out.status.success(), "restart {i}: {}", text(&out.stdout));
    }
    let out = env.vigil(&["restart", "svc", "--json"]);
    let doc = json(&out);
    assert!(!out.status.success(), "{doc}");
    assert_eq!(doc["outcome"], "failed", "{doc}");
    let detail = doc["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "RestartUnit {unit}: start-limit-hit: systemd's start limit refused the start"
        )),
        "{detail}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .contains("ACTION REQUIRED: systemd's start limit tripped for vigil-limit@drv.service"),
        "{stderr}"
    );
    let s = state(unit);
    assert_eq!(
        (s.active_state.as_str(), s.result.as_deref()),
        ("failed", Some("start-limit-hit"))
    );
    let last = env.history().pop().unwrap();
    assert_eq!(last["outcome"], "failed");
    assert!(
        last["outcome_detail"]
            .as_str()
            .unwrap()
            .contains("start-limit-hit")
    );

    // A failing check does not try again: the restart is not attempted (and not recorded).
    let entries = env.history().len();
    let out = env.vigil(&["check", "--json"]);
    let doc = json(&out);
    let action = &doc["services"][0]["action"];
    assert_eq!(action["verdict"], "not-attempted", "{doc}");
    assert!(
        action["message"]
            .as_str()
            .unwrap()
            .contains("is failed with Result=start-limit-hit"),
        "{action}"
    );
    assert_eq!(env.history().len(), entries, "nothing recorded");

    // reset_failed = true clears it before the guard-approved restart.
    config(&env, unit, "reset_failed = true", "");
    let out = env.vigil(&["restart", "svc", "--json"]);
    let doc = json(&out);
    assert!(out.status.success(), "{doc}");
    assert!(
        doc["detail"].as_str().unwrap().starts_with(&format!(
            "ResetFailedUnit, then RestartUnit {unit}: job done in "
        )),
        "{doc}"
    );
    assert!(state(unit).is_active());
    fresh(unit);
}

#[test]
fn grace_counts_from_active_enter_timestamp() {
    if !enabled() {
        return;
    }
    let unit = "vigil-sleep@drv-grace.service";
    fresh(unit);
    // Started behind Vigil's back: the ledger knows no restart, systemd knows the start.
    job(JobKind::Start, unit);
    let env = Env::new();
    let check = |grace: &str| {
        format!(
            "[services.svc.checks.refused]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = 1\ntimeout = \"1s\"\ngrace = \"{grace}\"\n"
        )
    };
    config(&env, unit, "", &check("1h"));
    let out = env.vigil(&["check", "--json"]);
    let doc = json(&out);
    let c = &doc["services"][0]["checks"][0];
    let left = c["in_grace_secs"].as_u64().unwrap_or(0);
    assert!(left > 3500, "in grace for the hour: {doc}");
    assert!(doc["services"][0]["action"].is_null(), "{doc}");

    config(&env, unit, "", &check("2s"));
    let started = state(unit).active_enter.unwrap();
    wait_until(Duration::from_secs(10), "the unit to be up 2s", || {
        let out = env.vigil(&["check", "--json"]);
        let doc = json(&out);
        let action = doc["services"][0]["action"].clone();
        (!action.is_null()).then_some(action)
    });
    let after = state(unit);
    assert!(after.is_active());
    assert!(
        after.active_enter.unwrap() > started,
        "restarted by the failing check"
    );
    // The new instance is inside its grace again.
    let out = env.vigil(&["check", "--json"]);
    let doc = json(&out);
    assert!(
        doc["services"][0]["checks"][0]["in_grace_secs"]
            .as_u64()
            .is_some(),
        "{doc}"
    );
    job(JobKind::Stop, unit);
}

#[test]
fn a_job_past_job_timeout_fails_the_restart() {
    if !enabled() {
        return;
    }
    let unit = "vigil-slow@20.service";
    fresh(unit);
    let env = Env::new();
    config(&env, unit, "job_timeout = \"1s\"", "");
    let t0 = support::instant_now();
    let out = env.vigil(&["restart", "svc", "--json"]);
    let took = t0.elapsed();
    let doc = json(&out);
    assert!(!out.status.success(), "{doc}");
    let detail = doc["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "RestartUnit {unit}: job not finished after 1s (job_timeout; it may still be running in systemd), unit activating (start-pre)"
        )),
        "{detail}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    job(JobKind::Stop, unit);
}

#[test]
fn restarting_a_missing_unit_fails_clearly() {
    if !enabled() {
        return;
    }
    let env = Env::new();
    config(&env, "vigil-no-such-unit.service", "", "");
    let out = env.vigil(&["restart", "svc", "--json"]);
    let doc = json(&out);
    assert!(!out.status.success(), "{doc}");
    assert_eq!(
        doc["detail"],
        "RestartUnit vigil-no-such-unit.service: Unit vigil-no-such-unit.service not found (org.freedesktop.systemd1.NoSuchUnit)",
        "{doc}"
    );
}

#[test]
fn a_failing_http_check_restarts_the_unit_serving_it_inside_the_container() {
    if !enabled() {
        return;
    }
    let leader = std::env::var("VIGIL_TEST_SYSTEMD_LEADER").expect("VIGIL_TEST_SYSTEMD_LEADER");
    let addr = std::env::var("VIGIL_TEST_SYSTEMD_ADDR").expect("VIGIL_TEST_SYSTEMD_ADDR");
    let port = 18111;
    let unit = format!("vigil-web@{port}.service");
    fresh(&unit);
    job(JobKind::Start, &unit);
    let before = state(&unit);
    // The unit's runtime directory, seen from the host through the container's root.
    let health = format!("/proc/{leader}/root/run/vigil-web-{port}/health");
    wait_until(Duration::from_secs(5), "the health file", || {
        std::path::Path::new(&health).exists().then_some(())
    });

    let env = Env::new();
    config(
        &env,
        &unit,
        "",
        &format!(
            "[services.svc.checks.health]\nkind = \"http\"\nurl = \"http://{addr}:{port}/health\"\nevery = \"200ms\"\ntimeout = \"2s\"\n"
        ),
    );
    let mut daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", Duration::from_secs(10));
    wait_until(Duration::from_secs(10), "the check to pass", || {
        let doc = json(&env.vigil(&["status", "--json"]));
        (doc["services"][0]["checks"][0]["status"] == "passing").then_some(())
    });
    assert!(env.history().is_empty(), "no restart while healthy");

    // Break it: the server now answers 404; the restart's ExecStartPre writes the file again.
    std::fs::remove_file(&health).unwrap();
    let entry = wait_until(
        Duration::from_secs(15),
        "a restart by the health check",
        || {
            env.history()
                .into_iter()
                .find(|e| e["verdict"] == "allowed" && !e["outcome"].is_null())
        },
    );
    assert_eq!(entry["source"], "health", "{entry}");
    assert_eq!(entry["outcome"], "ok", "{entry}");
    assert!(
        entry["outcome_detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("RestartUnit {unit}: job done in ")),
        "{entry}"
    );
    assert!(
        std::path::Path::new(&health).exists(),
        "ExecStartPre ran again"
    );
    let after = state(&unit);
    assert!(after.active_enter > before.active_enter);
    wait_until(Duration::from_secs(10), "the check to pass again", || {
        let doc = json(&env.vigil(&["status", "--json"]));
        (doc["services"][0]["checks"][0]["status"] == "passing").then_some(())
    });
    let log = daemon.log_text();
    assert!(log.contains("404"), "the failure reason is logged:\n{log}");
    daemon.signal(rustix::process::Signal::TERM);
    daemon.wait_exit(Duration::from_secs(10));
    job(JobKind::Stop, &unit);
}

#[test]
fn the_daemon_does_not_loop_against_the_start_limit() {
    if !enabled() {
        return;
    }
    let unit = "vigil-limit@daemon.service";
    fresh(unit);
    // Trip systemd's start limit (3 starts per hour) behind Vigil's back.
    for _ in 0..3 {
        job(JobKind::Restart, unit);
    }
    let out = on_bus(async |b| b.restart_unit(unit, Duration::from_secs(20)).await.unwrap());
    assert_eq!(out.end, JobEnd::Removed("failed".to_owned()), "{out:?}");
    assert_eq!(state(unit).result.as_deref(), Some("start-limit-hit"));

    let env = Env::new();
    config(
        &env,
        unit,
        "",
        &format!(
            "[services.svc.checks.unit]\nkind = \"systemd\"\nunit = \"{unit}\"\nevery = \"100ms\"\n"
        ),
    );
    let mut daemon = env.start_daemon(&[]);
    daemon.wait_log("Restart NOT ATTEMPTED", Duration::from_secs(10));
    // Many more failing runs: still nothing attempted, and said once.
    wait_until(Duration::from_secs(10), "10 more failing runs", || {
        let doc = json(&env.vigil(&["status", "--json"]));
        (doc["services"][0]["checks"][0]["consecutive_failures"].as_u64() >= Some(10)).then_some(())
    });
    assert!(
        env.history().is_empty(),
        "no restart attempted: {:?}",
        env.history()
    );
    let log = daemon.log_text();
    assert_eq!(log.matches("Restart NOT ATTEMPTED").count(), 1, "{log}");
    assert!(
        log.contains("is failed with Result=start-limit-hit"),
        "{log}"
    );

    // An operator resets it: the next failing run restarts the unit.
    on_bus(async |b| b.reset_failed(unit).await.unwrap());
    let entry = wait_until(Duration::from_secs(10), "a restart after the reset", || {
        env.history()
            .into_iter()
            .find(|e| e["verdict"] == "allowed" && !e["outcome"].is_null())
    });
    assert_eq!(entry["outcome"], "ok", "{entry}");
    assert!(state(unit).is_active());
    daemon.signal(rustix::process::Signal::TERM);
    daemon.wait_exit(Duration::from_secs(10));
    fresh(unit);
}
