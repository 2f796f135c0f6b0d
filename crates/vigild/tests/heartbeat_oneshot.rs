//! A `heartbeat` check in one-shot `vigil check` (cron mode, no daemon): before the first
//! heartbeat, `ttl` counts from the check's first evaluation by any Vigil, so a freshly
//! configured check passes while it waits and fails once `ttl` has passed.

#![allow(clippy::unwrap_used)] // A panic is a test failure.

mod support;

use std::time::Duration;

use support::*;

fn config(env: &Env, ttl: &str) {
    env.write_config(&format!(
        r#"[services.svc]
driver = "command"
restart_command = ["true"]

[services.svc.checks.beat]
kind = "heartbeat"
ttl = "{ttl}"
on_failure = "alert"
"#
    ));
}

/// `vigil check --json`: (exit code, the check's verdict, its reason).
fn check(env: &Env) -> (Option<i32>, String, String) {
    let out = env.vigil(&["check", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", text(&out.stdout), text(&out.stderr)));
    let c = &doc["services"][0]["checks"][0];
    (
        out.status.code(),
        c["verdict"].as_str().unwrap().to_owned(),
        c["reason"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_fresh_heartbeat_check_waits_out_its_ttl_in_one_shot_runs() {
    let env = Env::new();
    config(&env, "1h");
    for _ in 0..2 {
        let (code, verdict, reason) = check(&env);
        assert_eq!(code, Some(0), "{reason}");
        assert_eq!(verdict, "pass", "{reason}");
        assert!(reason.starts_with("no heartbeat yet"), "{reason}");
    }
    // A heartbeat then counts as usual.
    let out = env.vigil(&["heartbeat", "svc/beat"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (_, verdict, reason) = check(&env);
    assert_eq!(verdict, "pass");
    assert!(reason.starts_with("last heartbeat"), "{reason}");
}

#[test]
fn a_heartbeat_that_never_comes_fails_one_ttl_after_the_first_run() {
    let env = Env::new();
    config(&env, "1s");
    let first = instant_now();
    let (code, verdict, reason) = check(&env);
    assert_eq!((code, verdict.as_str()), (Some(0), "pass"), "{reason}");
    let reason = wait_until(Duration::from_secs(20), "the check to fail", || {
        let (code, verdict, reason) = check(&env);
        (verdict == "fail").then(|| {
            assert_eq!(code, Some(1));
            reason
        })
    });
    assert!(first.elapsed() >= Duration::from_secs(1));
    assert!(reason.starts_with("no heartbeat received in"), "{reason}");
    // And it stays failing: the wait is not started over.
    let (_, verdict, reason) = check(&env);
    assert_eq!(verdict, "fail", "{reason}");
}
