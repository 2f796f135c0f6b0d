//! Seed 001 replayed: a camera platform's six monitored things on loopback stand-ins,
//! checked in cron mode (`vigil check`, as the seed's `*/12 * * * *` script), with
//! `managed_start.sh restart` as the one restart for everything. A CLOSE-WAIT leak above 5
//! on one port restarts the platform, and every verdict is logged with its reason.
//!
//! Stand-ins: the config server (HTTPS in the seed) and the dashboard are plain HTTP
//! servers (the config server's is checked as a listening port, since the stand-in leaks
//! every connection it accepts); coturn is two listening TCP ports; Kurento's WebSocket is a server answering
//! 426; EMQX is a listening port plus a status command; the leak is real sockets held in
//! CLOSE_WAIT by a server that never closes them. The Docker container check of the seed
//! is not part of this replay (it needs a Docker engine).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::*;

/// Answers every request with `426 Upgrade Required`, like Kurento to a plain GET.
fn upgrade_required_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    port
}

/// A server that accepts connections and never closes them: once clients hang up, its
/// side sits in CLOSE_WAIT.
struct Leaky {
    port: u16,
    held: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Leaky {
    fn start() -> Leaky {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                keep.lock().unwrap().push(stream);
            }
        });
        Leaky { port, held }
    }

    /// `n` clients connect and hang up; returns once the server holds them all.
    fn leak(&self, n: usize) {
        let before = self.held.lock().unwrap().len();
        for _ in 0..n {
            drop(TcpStream::connect(("127.0.0.1", self.port)).unwrap());
        }
        wait_until(Duration::from_secs(5), "the leaked connections", || {
            (self.held.lock().unwrap().len() >= before + n).then_some(())
        });
    }
}

#[test]
fn seed_001_close_wait_leak_restarts_the_platform() {
    let env = Env::new();
    let dashboard = start_flaky_http(&env, "dash");
    let config_server = Leaky::start();
    let turn = TcpListener::bind("127.0.0.1:0").unwrap();
    let turn_tls = TcpListener::bind("127.0.0.1:0").unwrap();
    let mqtt = TcpListener::bind("127.0.0.1:0").unwrap();
    let kurento = upgrade_required_server();
    let emqx_status = env.path("emqx.status");
    std::fs::write(&emqx_status, "Node 'emqx@127.0.0.1' 5.0 is started\n").unwrap();
    let recorder = helper_bin("vigil-restart-recorder");
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "120s"
max_restarts = 5
window = "1h"

[services.camera-platform]
driver = "command"
# The seed's `managed_start.sh restart`: one restart brings back ALL services.
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "1"]

# A listening check, not a connect: the stand-in leaks every connection it accepts, so a
# probe that connects would itself add to the CLOSE_WAIT count.
[services.camera-platform.checks.config-server]
kind = "listening"
port = {config_port}

[services.camera-platform.checks.dashboard]
kind = "http"
url = "http://127.0.0.1:{dash_port}/"
timeout = "5s"

[services.camera-platform.checks.coturn]
kind = "listening"
port = {turn}

[services.camera-platform.checks.coturn-tls]
kind = "listening"
port = {turn_tls}

[services.camera-platform.checks.kurento-ws]
kind = "websocket"
url = "ws://127.0.0.1:{kurento}/kurento"
expect_status = 426

[services.camera-platform.checks.emqx-port]
kind = "listening"
port = {mqtt}

[services.camera-platform.checks.emqx-status]
kind = "exec"
command = ["cat", {emqx_status:?}]
stdout_contains = "is started"

[services.camera-platform.checks.close-wait-config]
kind = "sockets"
port = {config_port}
state = "close-wait"
max = 5

[services.camera-platform.checks.close-wait-dashboard]
kind = "sockets"
port = {dash_port}
state = "close-wait"
max = 5
"#,
        recorder = recorder.display().to_string(),
        log = env.path("restarts.log").display().to_string(),
        config_port = config_server.port,
        dash_port = dashboard.1,
        turn = turn.local_addr().unwrap().port(),
        turn_tls = turn_tls.local_addr().unwrap().port(),
        mqtt = mqtt.local_addr().unwrap().port(),
        emqx_status = emqx_status.display().to_string(),
    ));

    // Everything healthy: nothing to do.
    let out = env.vigil(&["check", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{doc:#}\n{}", text(&out.stderr));
    let checks = doc["services"][0]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 9);
    assert!(checks.iter().all(|c| c["verdict"] == "pass"), "{doc:#}");

    // Five leaked connections are tolerated (max = 5) ...
    config_server.leak(5);
    let out = env.vigil(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // ... seven are a leak: the platform is restarted, once, with the reason logged.
    config_server.leak(2);
    let out = env.vigil(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let leak = doc["services"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "close-wait-config")
        .unwrap()
        .clone();
    assert_eq!(leak["verdict"], "fail");
    let reason = leak["reason"].as_str().unwrap();
    assert!(
        reason.contains('7') && reason.contains("close-wait"),
        "{reason}"
    );
    assert_eq!(doc["services"][0]["action"]["verdict"], "allowed");
    assert_eq!(doc["services"][0]["action"]["outcome"], "ok");
    assert_eq!(recorder_runs(&env.path("restarts.log")).len(), 1);
    let log = text(&out.stderr);
    assert!(log.contains("Restart ALLOWED (1/5 per hour)"), "{log}");
    assert!(log.contains("close-wait"), "{log}");

    // The next cron run, still leaking: the restarted platform starts unknown and the
    // first failure asks again; the guard skips it inside the cooldown (seed wording).
    let out = env.vigil(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("Restart SKIPPED: cooldown active"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(recorder_runs(&env.path("restarts.log")).len(), 1);

    // The broker's status command failing is also caught, with its output in the reason.
    std::fs::write(
        &emqx_status,
        "Node 'emqx@127.0.0.1' not responding to pings.\n",
    )
    .unwrap();
    let out = env.vigil(&["check", "--json", "--no-restart"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let emqx = doc["services"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "emqx-status")
        .unwrap()
        .clone();
    assert_eq!(emqx["verdict"], "fail");
    assert!(
        emqx["reason"].as_str().unwrap().contains("is started"),
        "{emqx}"
    );
}
