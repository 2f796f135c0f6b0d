//! The `docker` probe against a real dockerd (`bench/docker-up.sh`).
//!
//! Gated: runs only with `VIGIL_TEST_DOCKER=1`, talking to the daemon at `$DOCKER_HOST`
//! (a `unix://` URL), which must have the `vigil-busybox:latest` image. Containers are
//! created with the label `vigil-test=1` and no network, and are force-removed by a drop
//! guard (and by `bench/docker-down.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use vigil_checks::model::{CheckKind, DockerCheck};
use vigil_checks::probe::docker::{api, negotiate, socket_path};
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

const IMAGE: &str = "vigil-busybox:latest";

fn enabled() -> bool {
    if std::env::var("VIGIL_TEST_DOCKER").as_deref() == Ok("1") {
        true
    } else {
        println!("skipped: set VIGIL_TEST_DOCKER=1 (and DOCKER_HOST, see bench/docker-up.sh)");
        false
    }
}

fn socket() -> PathBuf {
    socket_path(None)
}

/// Removes the containers it created, even when an assertion fails.
struct Containers {
    socket: PathBuf,
    ids: Vec<String>,
}

impl Drop for Containers {
    fn drop(&mut self) {
        let socket = self.socket.clone();
        let ids = std::mem::take(&mut self.ids);
        // A fresh runtime on a fresh thread: this may run inside (or after) the test's own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for id in ids {
                    let _ = api::request(
                        &socket,
                        "DELETE",
                        &format!("/containers/{id}?force=1&v=1"),
                        None,
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

async fn call(socket: &Path, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let version = negotiate(socket).await.expect("negotiate API version");
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    let (status, bytes) = api::request(
        socket,
        method,
        &format!("/v{version}{path}"),
        body.as_deref(),
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

impl Containers {
    fn new() -> Self {
        Containers {
            socket: socket(),
            ids: Vec::new(),
        }
    }

    /// Creates and starts a container; returns its name.
    async fn run(&mut self, name: &str, cmd: &[&str], healthcheck: Option<Value>) -> String {
        let name = format!("vigil-test-{name}-{}", std::process::id());
        let mut spec = json!({
            "Image": IMAGE,
            "Cmd": cmd,
            "Labels": {"vigil-test": "1"},
            "HostConfig": {"NetworkMode": "none"},
        });
        if let Some(hc) = healthcheck {
            spec["Healthcheck"] = hc;
        }
        let (status, created) = call(
            &self.socket,
            "POST",
            &format!("/containers/create?name={name}"),
            Some(spec),
        )
        .await;
        assert_eq!(status, 201, "create {name}: {created}");
        self.ids.push(created["Id"].as_str().unwrap().to_owned());
        let (status, body) = call(
            &self.socket,
            "POST",
            &format!("/containers/{name}/start"),
            None,
        )
        .await;
        assert_eq!(status, 204, "start {name}: {body}");
        name
    }
}

fn check(container: &str) -> CheckKind {
    CheckKind::Docker(DockerCheck {
        container: container.to_owned(),
        require_healthy: None,
        docker_host: None,
    })
}

async fn probe_once(kind: &CheckKind) -> ProbeOutcome {
    probe(kind, Duration::from_secs(10), &ProbeContext::default()).await
}

/// Probes until `done` holds (health checks take a few intervals), at most 20s.
async fn probe_until(kind: &CheckKind, done: impl Fn(&ProbeOutcome) -> bool) -> ProbeOutcome {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let outcome = probe_once(kind).await;
        if done(&outcome) || tokio::time::Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn healthcheck(test: &[&str]) -> Value {
    json!({
        "Test": test,
        "Interval": 200_000_000u64,
        "Timeout": 2_000_000_000u64,
        "Retries": 1,
    })
}

#[tokio::test]
async fn containers_in_every_state() {
    if !enabled() {
        return;
    }
    let mut c = Containers::new();
    let plain = c.run("plain", &["sleep", "3600"], None).await;
    let healthy = c
        .run(
            "healthy",
            &["sleep", "3600"],
            Some(healthcheck(&["CMD", "true"])),
        )
        .await;
    let unhealthy = c
        .run(
            "unhealthy",
            &["sleep", "3600"],
            Some(healthcheck(&["CMD-SHELL", "echo backend down; false"])),
        )
        .await;
    let exited = c.run("exits", &["sh", "-c", "exit 3"], None).await;

    // Running, no HEALTHCHECK: health is not required.
    let out = probe_once(&check(&plain)).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason
            .starts_with(&format!("container {plain} running for ")),
        "{out:?}"
    );
    // ... unless asked for.
    let strict = CheckKind::Docker(DockerCheck {
        container: plain.clone(),
        require_healthy: Some(true),
        docker_host: None,
    });
    let out = probe_once(&strict).await;
    assert!(!out.passed, "{out:?}");
    assert!(out.reason.contains("has no HEALTHCHECK"), "{out:?}");

    // HEALTHCHECK `true`: starting, then healthy.
    let out = probe_until(&check(&healthy), |o| o.passed).await;
    assert!(out.passed, "{out:?}");
    assert!(out.reason.ends_with("(healthy)"), "{out:?}");

    // HEALTHCHECK `false`: unhealthy, with the check's output in the reason.
    let out = probe_until(&check(&unhealthy), |o| o.reason.contains("but unhealthy")).await;
    assert!(!out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("container {unhealthy} is running but unhealthy (last check: backend down)")
    );
    // Not required: running is enough.
    let lenient = CheckKind::Docker(DockerCheck {
        container: unhealthy.clone(),
        require_healthy: Some(false),
        docker_host: None,
    });
    let out = probe_once(&lenient).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason.ends_with("(health: unhealthy, not required)"),
        "{out:?}"
    );

    // Exited with 3.
    let (status, body) = call(
        &c.socket,
        "POST",
        &format!("/containers/{exited}/wait"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let out = probe_once(&check(&exited)).await;
    assert!(!out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        format!("container {exited} is exited (exit code 3, OOMKilled false)")
    );

    // By id as well as by name.
    let id = c.ids[0].clone();
    let out = probe_once(&check(&id[..12])).await;
    assert!(out.passed, "{out:?}");
}

#[tokio::test]
async fn missing_container() {
    if !enabled() {
        return;
    }
    let out = probe_once(&check("vigil-test-no-such-container")).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        "no such container: vigil-test-no-such-container"
    );
}

#[tokio::test]
async fn daemon_not_reachable() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker.sock");
    let kind = CheckKind::Docker(DockerCheck {
        container: "x".to_owned(),
        require_healthy: None,
        docker_host: Some(format!("unix://{}", path.display())),
    });
    let out = probe_once(&kind).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!(
            "docker daemon not reachable at {}: no such socket",
            path.display()
        )
    );

    // A socket nobody accepts on: connection refused.
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(listener);
    let out = probe_once(&kind).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!(
            "docker daemon not reachable at {}: connection refused",
            path.display()
        )
    );
}
