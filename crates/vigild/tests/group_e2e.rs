//! Restart groups (seed 001's "restart ALL services"): one guard decision for the group,
//! members stop in reverse order and start in order (waiting for ready checks), a second
//! failure inside the group's cooldown is skipped with the seed's wording, and a restart
//! that fails half way stops and names the member.

#![allow(clippy::unwrap_used)] // A panic is a test failure.

mod support;

use std::time::Duration;

use support::*;

/// Three command services; each appends "stop NAME"/"start NAME" to `order.log`.
/// `broken_start` makes that service's start command fail.
fn config(env: &Env, broken_start: Option<&str>) {
    let order = env.path("order.log").display().to_string();
    let flag = env.path("healthy").display().to_string();
    let mut text = String::from(
        "[groups.platform]\nmembers = [\"db\", \"broker\", \"web\"]\nready_timeout = \"5s\"\n\n[groups.platform.guard]\ncooldown = \"1h\"\n\n",
    );
    for name in ["db", "broker", "web"] {
        let fail = if broken_start == Some(name) {
            "; exit 3"
        } else {
            ""
        };
        text.push_str(&format!(
            r#"[services.{name}]
driver = "command"
restart_command = ["sh", "-c", "echo restart {name} >> {order}"]
stop_command = ["sh", "-c", "echo stop {name} >> {order}"]
start_command = ["sh", "-c", "echo start {name} >> {order}; touch {ready}{fail}"]

"#,
            ready = env.path(&format!("ready-{name}")).display(),
        ));
    }
    // broker must be ready (its start creates ready-broker) before web starts.
    text.push_str(&format!(
        r#"[services.broker.checks.ready]
kind = "exec"
command = ["test", "-f", "{ready}"]
every = "1h"
on_failure = "alert"

[services.web.checks.health]
kind = "exec"
command = ["test", "-f", "{flag}"]
every = "100ms"
on_failure = "restart-group"
"#,
        ready = env.path("ready-broker").display(),
    ));
    text = text.replace(
        "[services.broker]\n",
        "[services.broker]\nready_check = \"ready\"\n",
    );
    env.write_config(&text);
}

fn order(env: &Env) -> Vec<String> {
    std::fs::read_to_string(env.path("order.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_failing_member_restarts_the_group_in_order_once_under_its_cooldown() {
    let env = Env::new();
    config(&env, None);
    std::fs::write(env.path("healthy"), "").unwrap();
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", Duration::from_secs(20));
    std::fs::remove_file(env.path("healthy")).unwrap();

    daemon.wait_log("group platform: stopped", Duration::from_secs(20));
    assert_eq!(
        order(&env),
        [
            "stop web",
            "stop broker",
            "stop db",
            "start db",
            "start broker",
            "start web"
        ]
    );
    // The check keeps failing: the group's cooldown skips it, in the seed's words.
    daemon.wait_log("Restart SKIPPED: cooldown active", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(order(&env).len(), 6, "restarted twice: {:?}", order(&env));
    assert!(
        daemon
            .log_text()
            .contains("group platform: broker is ready")
    );

    let history = env.history();
    let rows: Vec<(String, String, String)> = history
        .iter()
        .map(|e| {
            (
                e["service"].as_str().unwrap().to_owned(),
                e["source"].as_str().unwrap().to_owned(),
                e["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let allowed: Vec<&(String, String, String)> =
        rows.iter().filter(|r| r.2 == "allowed").collect();
    assert_eq!(
        allowed
            .iter()
            .map(|r| (r.0.as_str(), r.1.as_str()))
            .collect::<Vec<_>>(),
        [
            ("@platform", "health"),
            ("db", "group"),
            ("broker", "group"),
            ("web", "group")
        ]
    );
    assert!(
        rows.iter().any(|r| r.0 == "@platform" && r.2 == "skipped"),
        "{rows:?}"
    );
}

/// Cron mode (`vigil check`): a start that fails half way stops the group restart there
/// and names the member; later members are not started.
#[test]
fn a_group_restart_that_fails_half_way_stops_and_names_the_member() {
    let env = Env::new();
    config(&env, Some("broker"));
    let out = env.vigil(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let web = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "web")
        .unwrap();
    let action = &web["action"];
    assert_eq!(action["kind"], "restart-group");
    assert_eq!(action["outcome"], "failed");
    let detail = action["detail"].as_str().unwrap();
    assert!(
        detail.contains("starting broker failed") && detail.contains("not started: web"),
        "{detail}"
    );
    assert_eq!(
        order(&env),
        [
            "stop web",
            "stop broker",
            "stop db",
            "start db",
            "start broker"
        ]
    );
}

/// `vigil stop @GROUP` stops the members in reverse order and holds each down (a failing
/// member check restarts nothing); `vigil start @GROUP` starts them in order, each after
/// the one before is ready, exactly as a group restart does. The ledger has a row for the
/// group (the caller's) and one per member (source `group`).
#[test]
fn stop_and_start_of_a_group_step_through_its_members_in_order() {
    let env = Env::new();
    config(&env, None);
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", Duration::from_secs(20));

    let out = env.vigil(&["stop", "@platform", "--reason", "rack move"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(order(&env), ["stop web", "stop broker", "stop db"]);
    // web's health check fails (no `healthy` file): a stopped member is not restarted,
    // and neither is its group.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(order(&env).len(), 3, "{:?}", order(&env));
    let out = env.vigil(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in doc["services"].as_array().unwrap() {
        assert_eq!(s["state"], "stopped", "{s}");
        assert_eq!(s["hold"]["source"], "group", "{s}");
    }

    std::fs::remove_file(env.path("ready-broker")).ok();
    let out = env.vigil(&["start", "@platform"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        order(&env)[3..],
        ["start db", "start broker", "start web"],
        "{:?}",
        order(&env)
    );
    let rows: Vec<(String, String, String)> = env
        .history()
        .iter()
        .map(|e| {
            (
                e["service"].as_str().unwrap().to_owned(),
                e["verdict"].as_str().unwrap().to_owned(),
                e["source"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(_, v, _)| v == "stop" || v == "start")
        .collect();
    let expect = |s: &str, v: &str, src: &str| (s.to_owned(), v.to_owned(), src.to_owned());
    assert_eq!(
        rows,
        [
            expect("@platform", "stop", "operator"),
            expect("web", "stop", "group"),
            expect("broker", "stop", "group"),
            expect("db", "stop", "group"),
            expect("@platform", "start", "operator"),
            expect("db", "start", "group"),
            expect("broker", "start", "group"),
            expect("web", "start", "group"),
        ]
    );
    drop(daemon);
}
