//! Vigil as a systemd citizen, against a notification socket the test owns (the same
//! datagram protocol systemd listens on): READY=1, STATUS=, WATCHDOG=1 only while every
//! internal loop is alive (seed 004's two-level liveness), STOPPING=1.

#![allow(clippy::unwrap_used)] // A panic is a test failure.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use rustix::process::Signal;
use support::*;

/// Every datagram received within `limit`, stopping early when `until` matches one.
fn collect(sock: &UnixDatagram, limit: Duration, until: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = instant_now() + limit;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(instant_now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let stop = until(&msg);
                got.push(msg);
                if stop {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    got
}

#[test]
fn notifies_readiness_feeds_the_watchdog_only_while_alive_and_says_stopping() {
    let env = Env::new();
    env.write_config(
        r#"
[services.svc]
driver = "command"
restart_command = ["true"]

# Fails forever (alert only): its state is re-saved every second, so the ledger writer
# always has work that a held write lock blocks.
[services.svc.checks.busy]
kind = "exec"
command = ["false"]
every = "100ms"
on_failure = "alert"

# Passes only if commands do not inherit Vigil's own notification socket.
[services.svc.checks.env]
kind = "exec"
command = ["sh", "-c", "test -z \"$NOTIFY_SOCKET$WATCHDOG_USEC\""]
every = "100ms"
"#,
    );
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let log = env.path("daemon.log");
    let child = command(vigil_bin())
        .arg("run")
        .arg("-c")
        .arg(env.config_path())
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Daemon { child, log };

    let first = collect(&sock, Duration::from_secs(20), |m| m.contains("READY=1"));
    let ready = first.last().expect("a notification");
    assert!(ready.contains("READY=1"), "{first:?}");
    assert!(
        ready.contains("STATUS=running 1 service(s), 2 check(s)"),
        "{ready}"
    );
    // Pings at half of WATCHDOG_USEC, each with a summary.
    let pings = collect(&sock, Duration::from_secs(2), |_| false);
    let watchdog: Vec<&String> = pings.iter().filter(|m| m.contains("WATCHDOG=1")).collect();
    assert!(watchdog.len() >= 3, "{pings:?}");
    assert!(
        pings
            .iter()
            .any(|m| m.contains("STATUS=1 service(s), 2 check(s) seen: 1 failing")),
        "{pings:?}"
    );

    // The ledger writer stalls (another process holds the write lock): pings stop and the
    // reason is logged and put in STATUS; when it recovers, pings resume.
    let db = rusqlite::Connection::open(env.state_dir().join("ledger.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    daemon.wait_log(
        "withholding the systemd watchdog ping: ledger writer silent for",
        Duration::from_secs(10),
    );
    // Drop what was queued before the stall was noticed.
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    while sock.recv(&mut buf).is_ok() {}
    sock.set_nonblocking(false).unwrap();
    let stalled = collect(&sock, Duration::from_millis(1500), |_| false);
    assert!(
        stalled.iter().all(|m| !m.contains("WATCHDOG=1")),
        "pinged while the ledger writer was stuck: {stalled:?}"
    );
    assert!(
        stalled
            .iter()
            .any(|m| m.contains("STATUS=degraded: ledger writer silent")),
        "{stalled:?}"
    );
    db.execute_batch("COMMIT").unwrap();
    daemon.wait_log("watchdog pings resumed", Duration::from_secs(15));
    let resumed = collect(&sock, Duration::from_secs(5), |m| m.contains("WATCHDOG=1"));
    assert!(
        resumed.iter().any(|m| m.contains("WATCHDOG=1")),
        "{resumed:?}"
    );

    let out = env.vigil(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let env_check = doc["services"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "env")
        .cloned()
        .unwrap();
    assert_eq!(env_check["status"], "passing", "{env_check}");

    daemon.signal(Signal::TERM);
    let last = collect(&sock, Duration::from_secs(15), |m| m.contains("STOPPING=1"));
    assert!(last.iter().any(|m| m.contains("STOPPING=1")), "{last:?}");
    assert_eq!(
        daemon
            .wait_exit(Duration::from_secs(15))
            .and_then(|s| s.code()),
        Some(0)
    );
}

/// `vigil systemd-unit`: a notify unit with a watchdog, pointing at this binary and the
/// absolute config path; systemd's own verifier accepts it when present.
#[test]
fn systemd_unit_is_a_notify_unit_with_a_watchdog() {
    let env = Env::new();
    let out = command(vigil_bin())
        .args(["systemd-unit", "-c", "relative/vigil.toml"])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let unit = text(&out.stdout);
    for line in [
        "Type=notify",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "KillMode=mixed",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}:\n{unit}");
    }
    let exec = format!(
        "ExecStart={} run -c {}",
        vigil_bin().display(),
        env.path("relative/vigil.toml").display()
    );
    assert!(unit.lines().any(|l| l == exec), "missing {exec}:\n{unit}");
    let file = env.path("vigil.service");
    std::fs::write(&file, &unit).unwrap();
    // --man=no: the unit's Documentation= pages come with the package, not on this host.
    if let Ok(verify) = command("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&file)
        .output()
    {
        assert!(
            verify.status.success(),
            "systemd-analyze verify: {}{}",
            text(&verify.stdout),
            text(&verify.stderr)
        );
    }
}
