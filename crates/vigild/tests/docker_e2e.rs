//! `driver = "docker"` against a real dockerd (`bench/docker-up.sh`; gated on
//! `VIGIL_TEST_DOCKER=1` with `DOCKER_HOST` set): restart through the Engine API, status
//! from inspection, and deaths seen on the event stream.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use rustix::process::Signal;
use serde_json::{Value, json};
use support::*;
use vigil_checks::probe::docker::{api, negotiate, socket_path};

const IMAGE: &str = "vigil-busybox:latest";

fn enabled() -> bool {
    if std::env::var("VIGIL_TEST_DOCKER").as_deref() == Ok("1") {
        true
    } else {
        println!("skipped: set VIGIL_TEST_DOCKER=1 (and DOCKER_HOST, see bench/docker-up.sh)");
        false
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn call(method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let socket = socket_path(None);
    block_on(async {
        let version = negotiate(&socket).await.expect("negotiate");
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (status, bytes) = api::request(
            &socket,
            method,
            &format!("/v{version}{path}"),
            body.as_deref(),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    })
}

/// A running `sleep` container, force-removed on drop.
struct Container {
    name: String,
}

impl Container {
    fn run(tag: &str) -> Container {
        let name = format!("vigil-drv-{tag}-{}", std::process::id());
        let spec = json!({
            "Image": IMAGE,
            "Cmd": ["sleep", "3600"],
            "Labels": {"vigil-test": "1"},
            "HostConfig": {"NetworkMode": "none"},
        });
        let (status, body) = call(
            "POST",
            &format!("/containers/create?name={name}"),
            Some(spec),
        );
        assert_eq!(status, 201, "create: {body}");
        let c = Container { name };
        let (status, body) = call("POST", &format!("/containers/{}/start", c.name), None);
        assert_eq!(status, 204, "start: {body}");
        c
    }

    fn inspect(&self) -> Value {
        let (status, body) = call("GET", &format!("/containers/{}/json", self.name), None);
        assert_eq!(status, 200, "inspect: {body}");
        body
    }

    fn started_at(&self) -> String {
        self.inspect()["State"]["StartedAt"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn running(&self) -> bool {
        self.inspect()["State"]["Running"].as_bool() == Some(true)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A fresh thread: this may run inside another runtime.
        let _ = std::thread::spawn(move || {
            call("DELETE", &format!("/containers/{name}?force=1&v=1"), None)
        })
        .join();
    }
}

fn config(env: &Env, container: &str) {
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "0"
max_restarts = 10

[services.box]
driver = "docker"
container = "{container}"
stop_timeout = "1s"
"#
    ));
}

fn docker_host() -> PathBuf {
    socket_path(None)
}

#[test]
fn restart_and_status_through_the_engine_api() {
    if !enabled() {
        return;
    }
    assert!(docker_host().exists());
    let c = Container::run("restart");
    let env = Env::new();
    config(&env, &c.name);
    let before = c.started_at();

    let out = env.vigil(&["restart", "box"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("docker restart {} (t=1s)", c.name)),
        "{stdout}"
    );
    assert!(stdout.contains("running"), "{stdout}");
    assert!(c.running());
    assert_ne!(c.started_at(), before, "the container was not restarted");

    let out = env.vigil(&["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let svc = &doc["services"][0];
    assert_eq!(svc["driver"], "docker");
    assert_eq!(svc["running"], true);
    let detail = svc["driver_detail"].as_str().unwrap();
    assert!(detail.starts_with("running"), "{detail}");
    assert!(detail.contains("docker restarts 0"), "{detail}");

    // A container that is gone: the restart fails with the reason, exit 1.
    let env2 = Env::new();
    config(&env2, "vigil-no-such-container");
    let out = env2.vigil(&["restart", "box"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("no such container: vigil-no-such-container"),
        "{}",
        text(&out.stdout)
    );
}

/// The daemon follows the event stream: a killed container is restarted at once with
/// source `exit`; a deliberate `docker stop` is left alone; Vigil's own restarts are not
/// mistaken for deaths.
#[test]
fn a_dead_container_is_restarted_from_the_event_stream() {
    if !enabled() {
        return;
    }
    let c = Container::run("events");
    let env = Env::new();
    config(&env, &c.name);
    let mut daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", Duration::from_secs(20));
    // Give the follower its connection (it logs nothing when all is well): a manual
    // restart through the daemon is Vigil's own, and must not be taken for a death.
    std::thread::sleep(Duration::from_millis(300));
    let out = env.vigil(&["restart", "box"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    let (status, body) = call("POST", &format!("/containers/{}/kill", c.name), None);
    assert_eq!(status, 204, "kill: {body}");
    daemon.wait_log(
        &format!("container {} died (exit code 137)", c.name),
        Duration::from_secs(10),
    );
    wait_until(
        Duration::from_secs(20),
        "the container to run again",
        || c.running().then_some(()),
    );
    let sources: Vec<String> = env
        .history()
        .iter()
        .map(|e| e["source"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sources, ["manual", "exit"], "history");
    assert!(
        !daemon.log_text().contains("died (exit code 143)"),
        "Vigil's own restart was taken for a death:\n{}",
        daemon.log_text()
    );

    let (status, body) = call("POST", &format!("/containers/{}/stop?t=1", c.name), None);
    assert_eq!(status, 204, "stop: {body}");
    daemon.wait_log(
        "was stopped on purpose (docker stop)",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!c.running(), "a deliberate stop was undone");
    assert_eq!(env.history().len(), 2);

    daemon.signal(Signal::TERM);
    assert_eq!(
        daemon
            .wait_exit(Duration::from_secs(15))
            .and_then(|s| s.code()),
        Some(0)
    );
}

/// A death inside the cooldown is not dropped (nothing else would bring the container
/// back): the restart is deferred until the guard allows it.
#[test]
fn a_death_inside_the_cooldown_is_deferred_not_dropped() {
    if !enabled() {
        return;
    }
    let c = Container::run("defer");
    let env = Env::new();
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "3s"
max_restarts = 10

[services.box]
driver = "docker"
container = "{}"
stop_timeout = "1s"
"#,
        c.name
    ));
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let kill = || {
        let (status, body) = call("POST", &format!("/containers/{}/kill", c.name), None);
        assert_eq!(status, 204, "kill: {body}");
    };
    kill();
    wait_until(Duration::from_secs(20), "the first restart", || {
        (env.history().len() == 1 && c.running()).then_some(())
    });
    kill();
    daemon.wait_log("deferred until", Duration::from_secs(10));
    assert!(!c.running());
    wait_until(Duration::from_secs(20), "the deferred restart", || {
        (env.history().len() == 3 && c.running()).then_some(())
    });
    let verdicts: Vec<(String, String)> = env
        .history()
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_owned(),
                e["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("exit".to_owned(), "allowed".to_owned()),
            ("exit".to_owned(), "skipped".to_owned()),
            ("exit".to_owned(), "allowed".to_owned()),
        ]
    );
}

/// A group restart of Docker members goes through each member's own actor, the owner of
/// its driver: the event follower knows the group's stops and starts as Vigil's own (no
/// death, no "stopped on purpose", no exit restart). Before, the group built drivers of
/// its own and only a 200 ms timing rule kept the follower from misreading its stops.
#[test]
fn a_group_restart_of_docker_members_is_known_as_vigils_own() {
    if !enabled() {
        return;
    }
    let a = Container::run("group-a");
    let b = Container::run("group-b");
    let env = Env::new();
    let flag = env.path("healthy");
    std::fs::write(&flag, "").unwrap();
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "0"
max_restarts = 10

[groups.pair]
members = ["a", "b"]

[groups.pair.guard]
cooldown = "1h"

[services.a]
driver = "docker"
container = "{a}"
stop_timeout = "1s"

[services.b]
driver = "docker"
container = "{b}"
stop_timeout = "1s"

[services.b.checks.flag]
kind = "exec"
command = ["test", "-f", {flag:?}]
every = "200ms"
on_failure = "restart-group"
"#,
        a = a.name,
        b = b.name,
        flag = flag.display().to_string(),
    ));
    let mut daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", Duration::from_secs(20));
    // Give the followers their connections.
    std::thread::sleep(Duration::from_millis(500));
    let (a_before, b_before) = (a.started_at(), b.started_at());
    std::fs::remove_file(&flag).unwrap();
    daemon.wait_log("group pair: stopped", Duration::from_secs(30));
    assert!(a.running() && b.running());
    assert_ne!(a.started_at(), a_before);
    assert_ne!(b.started_at(), b_before);
    // Time for any misread event to turn into a restart request.
    std::thread::sleep(Duration::from_millis(1000));
    let log = daemon.log_text();
    assert!(!log.contains("stopped on purpose"), "{log}");
    assert!(!log.contains(" died (exit code"), "{log}");
    // The allowed restarts: the group's, and its members' starts (the group's cooldown
    // skips the check's later requests).
    let sources: Vec<(String, String)> = env
        .history()
        .iter()
        .filter(|e| e["verdict"] == "allowed")
        .map(|e| {
            (
                e["service"].as_str().unwrap().to_owned(),
                e["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("@pair".to_owned(), "health".to_owned()),
            ("a".to_owned(), "group".to_owned()),
            ("b".to_owned(), "group".to_owned()),
        ],
        "{log}"
    );
    daemon.signal(Signal::TERM);
    assert_eq!(
        daemon
            .wait_exit(Duration::from_secs(15))
            .and_then(|s| s.code()),
        Some(0)
    );
}
