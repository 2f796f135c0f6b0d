//! The dashboard in a real browser: `vigil run` with the TCP listener on a free loopback
//! port, and headless Chromium driven by `tests/browser/dashboard.py` (python3-selenium
//! with Debian's chromium and chromium-driver). The script sees the service rows, a check
//! flip from passing to failing with the restart it causes, a given-up service at the top,
//! an exec service's pid and `STATUS=`, an operator's stop as a hold, all without a reload;
//! text contrast at WCAG AA in the light and dark schemes; no operator button without
//! the token; with it pasted in, a click on Restart and a keyboard-driven pause. This test
//! checks the daemon's side: what the ledger recorded and what ran. Screenshots go to
//! `$VIGIL_ARTIFACTS` (else `artifacts/` in cargo's target dir); on a failure also the
//! page's DOM, text and console log, the script's output and the daemon's log.
//!
//! Enabled by `VIGIL_TEST_SERVERS=1`, as `.ci/run` sets after installing the packages.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::http::*;
use support::*;

const TOKEN: &str = "dashboard-T0ken-4f1c9";

fn enabled() -> bool {
    if std::env::var_os("VIGIL_TEST_SERVERS").is_none_or(|v| v != "1") {
        println!("skipped: set VIGIL_TEST_SERVERS=1 (chromium, chromium-driver, python3-selenium)");
        return false;
    }
    true
}

fn repo_file(rel: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap().join(rel)
}

/// Where CI collects files to keep: `$VIGIL_ARTIFACTS`, else `artifacts/` in cargo's
/// target dir. Canonical, as Chromium's tooling wants paths without `..`.
fn artifacts() -> PathBuf {
    let dir = std::env::var_os("VIGIL_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("../artifacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// `web`: a command service whose exec check tests a file (removed by the script), with a
/// cooldown of an hour so that its one health restart stays 1/5. `api`: healthy, with a
/// scheduled restart and a maintenance window that are never due during a test (29
/// February), restarted from the page. `flaky`: always failing, budget 2: given up.
/// `worker`: an exec service that says `STATUS=` through systemd-notify. `batch`: healthy,
/// stopped by the script with `vigil stop` on the control socket.
fn config(env: &Env) {
    let token = env.path("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::write(env.path("ok"), "").unwrap();
    env.write_config(&format!(
        r#"http_listen = "127.0.0.1:0"
http_token_file = {token:?}

[services.web]
driver = "command"
restart_command = ["sh", "-c", "echo web >> {web_runs}"]

[services.web.guard]
cooldown = "1h"

[services.web.checks.ok-file]
kind = "exec"
command = ["test", "-f", {ok:?}]
every = "1s"

[services.api]
driver = "command"
restart_command = ["sh", "-c", "echo api >> {api_runs}"]

[services.api.checks.alive]
kind = "exec"
command = ["true"]
every = "1s"

[[services.api.schedule]]
cron = "0 4 29 2 *"

[[services.api.maintenance]]
cron = "0 3 29 2 *"
duration = "30m"
action = "pause"

[services.flaky]
driver = "command"
restart_command = ["true"]

[services.flaky.guard]
cooldown = "0s"
max_restarts = 2

[services.flaky.checks.broken]
kind = "exec"
command = ["false"]
every = "1s"

[services.batch]
driver = "command"
restart_command = ["true"]
stop_command = ["true"]

[services.batch.checks.alive]
kind = "exec"
command = ["true"]
every = "1s"

[services.worker]
driver = "exec"
command = ["/bin/sh", "-c", "systemd-notify --ready --status='serving 3 jobs' && exec sleep 600"]
ready = "notify"
"#,
        token = token.display().to_string(),
        ok = env.path("ok").display().to_string(),
        web_runs = env.path("web-runs").display(),
        api_runs = env.path("api-runs").display(),
    ));
}

fn rows(env: &Env, service: &str, source: &str, verdict: &str) -> Vec<serde_json::Value> {
    env.history()
        .into_iter()
        .filter(|e| e["service"] == service && e["source"] == source && e["verdict"] == verdict)
        .collect()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn the_dashboard_in_headless_chromium() {
    if !enabled() {
        return;
    }
    let env = Env::new();
    config(&env);
    let (daemon, addr) = start(&env, None);

    // Without the token a POST is refused, whatever the page shows.
    let refused = ask(addr, "POST", "/v1/services/api/restart", &[]);
    assert_eq!(refused.status, 401, "{refused:?}");

    let out_dir = artifacts();
    let script = repo_file("crates/vigild/tests/browser/dashboard.py");
    let mut child = KillOnDrop(
        command("/usr/bin/python3")
            .arg(&script)
            .arg("--url")
            .arg(format!("http://{addr}/"))
            .arg("--token")
            .arg(TOKEN)
            .arg("--ok-file")
            .arg(env.path("ok"))
            .arg("--artifacts")
            .arg(&out_dir)
            .arg("--vigil")
            .arg(vigil_bin())
            .arg("--config")
            .arg(env.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tests/browser/dashboard.py with /usr/bin/python3"),
    );
    let status = wait_until(Duration::from_secs(240), "the browser script", || {
        child.0.try_wait().unwrap()
    });
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read as _;
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    if !status.success() {
        // The script saved the page (screenshot, DOM, text, console); keep the rest.
        std::fs::write(
            out_dir.join("dashboard-script.log"),
            format!("{stdout}\n{stderr}"),
        )
        .unwrap();
        std::fs::write(out_dir.join("dashboard-daemon.log"), daemon.log_text()).unwrap();
        panic!(
            "the browser script failed ({status}); artifacts in {}:\n{stdout}\n{stderr}\n--- daemon log:\n{}",
            out_dir.display(),
            daemon.log_text()
        );
    }
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("no JSON summary ({e}): {stdout}\n{stderr}"));
    assert_eq!(seen["ok"], true, "{seen}");
    println!("the browser saw: {seen:#}");

    // What the clicks did, as the ledger has it.
    let manual = rows(&env, "api", "manual", "allowed");
    assert_eq!(manual.len(), 1, "{:?}", env.history());
    assert_eq!(manual[0]["forced"], false);
    assert_eq!(manual[0]["outcome"], "ok");
    assert_eq!(lines(&env.path("api-runs")), 1);
    assert_eq!(rows(&env, "web", "health", "allowed").len(), 1);
    assert_eq!(lines(&env.path("web-runs")), 1);
    for verdict in ["pause", "resume"] {
        let held = rows(&env, "api", "operator", verdict);
        assert_eq!(held.len(), 1, "{verdict}: {:?}", env.history());
        let message = held[0]["message"].as_str().unwrap();
        assert!(message.contains("by token from 127.0.0.1:"), "{message}");
    }
    assert!(
        rows(&env, "api", "operator", "pause")[0]["message"]
            .as_str()
            .unwrap()
            .contains("browser test")
    );
    assert!(!rows(&env, "flaky", "health", "denied").is_empty());
    let stop = rows(&env, "batch", "operator", "stop");
    assert_eq!(stop.len(), 1, "{:?}", env.history());
    assert!(
        stop[0]["message"].as_str().unwrap().contains("disk swap"),
        "{stop:?}"
    );
    for shot in ["dashboard.png", "dashboard-dark.png", "dashboard-phone.png"] {
        let png = std::fs::read(out_dir.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{shot}");
    }
    // No error but the given-up service's own.
    let log = daemon.log_text();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && !l.contains("flaky: ACTION REQUIRED"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}
