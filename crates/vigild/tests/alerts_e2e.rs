//! Alerts end to end: `vigil run` with real alert channels (loopback webhook receivers),
//! a crash loop that exhausts the budget and heals, a storm of 200 failing services, a
//! receiver that hangs forever, and `vigil history` showing deliveries.

mod support;

use std::time::Duration;

use support::*;
use vigil_test_helpers::receiver::{Receiver, Request, Script};

/// Every alert (event, service) in the documents the receiver accepted.
fn delivered_alerts(rx: &Receiver) -> Vec<(String, String)> {
    rx.delivered()
        .iter()
        .flat_map(|r| {
            let doc: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            doc["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|a| {
                    (
                        a["event"].as_str().unwrap_or("").to_owned(),
                        a["service"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn count(alerts: &[(String, String)], event: &str) -> usize {
    alerts.iter().filter(|(e, _)| e == event).count()
}

fn doc(r: &Request) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("json")
}

/// A crash loop spends the budget: exactly one `given-up` per channel, and one
/// `recovered` when the service heals. Secrets stay out of logs and `vigil status`.
#[test]
fn a_crash_loop_alerts_given_up_once_per_channel_and_recovered_once() {
    let env = Env::new();
    let hook = Receiver::start(Script::ok());
    let hook2 = Receiver::start(Script::ok());
    let recorder = helper_bin("vigil-restart-recorder");
    let healthy = env.path("healthy");
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "0"
max_restarts = 2
window = "1h"

[services.web]
driver = "command"
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "1"]

[services.web.checks.health]
kind = "exec"
command = ["test", "-f", {healthy:?}]
every = "100ms"
timeout = "5s"

[alerts.ops-hook]
kind = "webhook"
url = "{url1}?token=SECRET-HOOK-TOKEN"
secret = "hmac-SECRET"
group_wait = "200ms"
retry_delay = "50ms"

[alerts.ops-hook-2]
kind = "webhook"
url_env = "VIGIL_TEST_HOOK_URL"
group_wait = "200ms"
"#,
        recorder = recorder.display().to_string(),
        log = env.path("restarts.log").display().to_string(),
        healthy = healthy.display().to_string(),
        url1 = hook.url("/hook"),
    ));
    let log = env.path("daemon.log");
    let mut cmd = command(vigil_bin());
    cmd.arg("run").arg("-c").arg(env.config_path());
    cmd.env("VIGIL_TEST_HOOK_URL", hook2.url("/two"));
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let daemon = Daemon {
        child: cmd.spawn().unwrap(),
        log,
    };

    for rx in [&hook, &hook2] {
        wait_until(Duration::from_secs(20), "the given-up alert", || {
            (count(&delivered_alerts(rx), "given-up") >= 1).then_some(())
        });
    }
    // The loop goes on (denied, every 100 ms) for a while: still one given-up each.
    daemon.wait_log("ACTION REQUIRED", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(recorder_runs(&env.path("restarts.log")).len(), 2);

    std::fs::write(&healthy, "").unwrap();
    for rx in [&hook, &hook2] {
        wait_until(Duration::from_secs(20), "the recovered alert", || {
            (count(&delivered_alerts(rx), "recovered") >= 1).then_some(())
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    for rx in [&hook, &hook2] {
        let alerts = delivered_alerts(rx);
        assert_eq!(count(&alerts, "given-up"), 1, "{alerts:?}");
        assert_eq!(count(&alerts, "recovered"), 1, "{alerts:?}");
        assert!(count(&alerts, "failing") >= 1, "{alerts:?}");
        assert!(count(&alerts, "restarted") >= 1, "{alerts:?}");
        assert_eq!(count(&alerts, "skipped"), 0, "skipped is off by default");
        // Every alert is about `web`, and the recovery came last.
        assert!(alerts.iter().all(|(_, s)| s == "web"), "{alerts:?}");
        assert_eq!(alerts.last().map(|(e, _)| e.as_str()), Some("recovered"));
    }
    // The first channel signs its requests.
    for r in hook.delivered() {
        let sig = r.header("x-vigil-signature").expect("signed");
        assert!(vigil_alerts::sign::verify(b"hmac-SECRET", &r.body, sig));
        assert_eq!(doc(&r)["channel"], "ops-hook");
    }
    // The given-up alert carries the numbers.
    let given_up = hook
        .delivered()
        .iter()
        .flat_map(|r| doc(r)["alerts"].as_array().cloned().unwrap_or_default())
        .find(|a| a["event"] == "given-up")
        .unwrap();
    assert_eq!(given_up["numbers"]["count"], 2);
    assert_eq!(given_up["numbers"]["max"], 2);
    assert_eq!(given_up["numbers"]["window_secs"], 3600);
    assert!(given_up["numbers"]["rearm_at"].is_string());

    // `vigil history` lists the deliveries, per channel.
    let out = env.vigil(&["history", "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deliveries = history["alerts"].as_array().cloned().unwrap_or_default();
    for channel in ["ops-hook", "ops-hook-2"] {
        assert!(
            deliveries
                .iter()
                .any(|d| d["channel"] == channel && d["status"] == "delivered"),
            "{deliveries:?}"
        );
    }
    let human = text(&env.vigil(&["history", "web"]).stdout);
    assert!(human.contains("ALERT SENT"), "{human}");
    assert!(human.contains("ops-hook (webhook)"), "{human}");

    // No secret in the log, in status, or in history.
    let status = text(&env.vigil(&["status", "--json"]).stdout);
    let everything = format!("{}{status}{human}{}", daemon.log_text(), text(&out.stdout));
    for secret in ["SECRET-HOOK-TOKEN", "hmac-SECRET", &hook2.url("/two")] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

/// 200 services failing within one second: one grouped message per channel per
/// `group_wait`.
#[test]
fn a_storm_of_200_failing_services_is_one_message_per_channel() {
    let env = Env::new();
    let hook = Receiver::start(Script::ok());
    let exec_out = env.path("exec-alerts");
    std::fs::create_dir(&exec_out).unwrap();
    let mut config = format!(
        r#"
[alerts.hook]
kind = "webhook"
url = "{url}"
group_wait = "3s"

[alerts.pager]
kind = "exec"
command = ["sh", "-c", "cat > {dir}/$$.json"]
group_wait = "3s"
"#,
        url = hook.url("/"),
        dir = exec_out.display()
    );
    for i in 0..200 {
        config.push_str(&format!(
            "\n[services.svc-{i:03}]\ndriver = \"command\"\nrestart_command = [\"true\"]\n\
             [services.svc-{i:03}.checks.port]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = 1\n\
             every = \"1h\"\non_failure = \"alert\"\n"
        ));
    }
    env.write_config(&config);
    let daemon = env.start_daemon(&[]);
    wait_until(
        Duration::from_secs(30),
        "the grouped webhook message",
        || (!hook.delivered().is_empty()).then_some(()),
    );
    wait_until(Duration::from_secs(30), "the grouped exec message", || {
        (std::fs::read_dir(&exec_out).ok()?.count() >= 1).then_some(())
    });
    // Nothing else is coming: every check runs once an hour.
    std::thread::sleep(Duration::from_secs(4));
    let messages = hook.delivered();
    assert_eq!(messages.len(), 1, "one webhook message for the storm");
    let d = doc(&messages[0]);
    assert_eq!(d["alerts"].as_array().unwrap().len(), 200);
    assert!(
        d["summary"]
            .as_str()
            .unwrap()
            .starts_with("200 alerts: 200 failing (svc-"),
        "{}",
        d["summary"]
    );
    let files: Vec<_> = std::fs::read_dir(&exec_out).unwrap().collect();
    assert_eq!(files.len(), 1, "one exec message for the storm");
    let path = files.into_iter().next().unwrap().unwrap().path();
    let exec_doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(exec_doc["alerts"].as_array().unwrap().len(), 200);
    assert_eq!(exec_doc["channel"], "pager");
    drop(daemon);
}

/// A receiver that never answers does not hold up anything: the failing check's alert is
/// stuck in flight while the restart runs to completion and the check goes on.
#[test]
fn a_hanging_receiver_does_not_hold_up_restarts() {
    let env = Env::new();
    let hook = Receiver::start(Script::Hang);
    let recorder = helper_bin("vigil-restart-recorder");
    let healthy = env.path("healthy");
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "0"
max_restarts = 3

[services.web]
driver = "command"
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "1"]

[services.web.checks.health]
kind = "exec"
command = ["test", "-f", {healthy:?}]
every = "100ms"

[alerts.stuck]
kind = "webhook"
url = "{url}"
group_wait = "0"
timeout = "1h"
retries = 1
"#,
        recorder = recorder.display().to_string(),
        log = env.path("restarts.log").display().to_string(),
        healthy = healthy.display().to_string(),
        url = hook.url("/"),
    ));
    let mut daemon = env.start_daemon(&[]);
    // The first failing alert reaches the receiver, which never answers...
    wait_until(Duration::from_secs(20), "the hung alert request", || {
        (!hook.requests().is_empty()).then_some(())
    });
    // ...and the restarts it announced go on regardless, through the whole budget.
    wait_until(Duration::from_secs(20), "three completed restarts", || {
        (recorder_runs(&env.path("restarts.log")).len() == 3).then_some(())
    });
    let history = env.history();
    let ok = history
        .iter()
        .filter(|e| e["verdict"] == "allowed" && e["outcome"] == "ok")
        .count();
    assert_eq!(ok, 3, "{history:?}");
    daemon.wait_log("ACTION REQUIRED", Duration::from_secs(10));
    // Still nothing delivered: the one request is hung, the rest wait behind it.
    assert!(hook.delivered().is_empty());
    assert_eq!(hook.requests().len(), 1);
    let out = env.vigil(&["history", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["alerts"]
            .as_array()
            .is_none_or(|a| a.iter().all(|d| d["status"] != "delivered")),
        "{doc}"
    );
    // Shutdown gives the hung delivery a bounded grace, then exits cleanly.
    daemon.signal(rustix::process::Signal::TERM);
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("vigil exits despite the hung receiver");
    assert_eq!(status.code(), Some(0), "{}", daemon.log_text());
}

/// `vigil alert test`: 0 delivered, 1 failed with the reason, 2 unknown channel.
#[test]
fn alert_test_reports_the_outcome_with_its_exit_code() {
    let env = Env::new();
    let ok = Receiver::start(Script::ok());
    let failing = Receiver::start(Script::Statuses {
        first: Vec::new(),
        then: 500,
    });
    env.write_config(&format!(
        r#"
[alerts.good]
kind = "webhook"
url = "{ok}"

[alerts.bad]
kind = "slack"
webhook_url = "{bad}"
retries = 5
"#,
        ok = ok.url("/"),
        bad = failing.url("/services/X"),
    ));
    let out = env.vigil(&["alert", "test", "good", "--event", "given-up"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("good: test alert (given-up) delivered through webhook"),
        "{}",
        text(&out.stdout)
    );
    let d = doc(&ok.delivered()[0]);
    assert_eq!(d["test"], true);
    assert_eq!(d["alerts"][0]["event"], "given-up");
    assert!(d["summary"].as_str().unwrap().starts_with("TEST: "), "{d}");

    let out = env.vigil(&["alert", "test", "bad"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "bad: test alert (restarted) NOT delivered through slack: the receiver answered 500"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&failing.url("/services/X")),
        "the URL leaked: {stderr}"
    );
    assert_eq!(failing.requests().len(), 1, "one attempt, no retries");

    let out = env.vigil(&["alert", "test", "bad", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["delivered"], false);
    assert_eq!(j["kind"], "slack");
    assert!(j["error"].as_str().unwrap().contains("500"));

    let out = env.vigil(&["alert", "test", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown alert channel `nope` (configured: good, bad)"),
        "{}",
        text(&out.stderr)
    );
    let out = env.vigil(&["alert", "test", "good", "--event", "exploded"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Measurement (not a pass/fail bound): how long from a failed check run to the restart it
/// causes, without alert channels and with one whose receiver hangs forever (`repeat = "0"`,
/// `group_wait = "0"`: every failing and restarted alert is queued behind the hung one).
/// Run with `VIGIL_ALERT_BENCH=1 cargo test --release -p vigild --test alerts_e2e
/// restart_delay -- --nocapture`; the numbers are in docs/BENCHMARKS.md.
#[test]
fn restart_delay_with_a_hanging_receiver_measurement() {
    if std::env::var_os("VIGIL_ALERT_BENCH").is_none_or(|v| v != "1") {
        eprintln!("skipped: set VIGIL_ALERT_BENCH=1 to measure");
        return;
    }
    let restarts: usize = std::env::var("VIGIL_ALERT_BENCH_RESTARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let hang = Receiver::start(Script::Hang);
    let mut results = Vec::new();
    for round in 0..2 {
        for (name, alerts) in [
            ("no alert channel", String::new()),
            (
                "hanging webhook",
                format!(
                    "[alerts.stuck]\nkind = \"webhook\"\nurl = \"{}\"\nrepeat = \"0\"\ngroup_wait = \"0\"\ntimeout = \"1h\"\nretries = 1\n",
                    hang.url("/")
                ),
            ),
        ] {
            let delays = measure_restart_delays(&alerts, restarts);
            results.push((round, name, delays));
        }
    }
    for (round, name, mut d) in results {
        d.sort();
        let pick = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
        let mean = d.iter().sum::<Duration>() / u32::try_from(d.len()).unwrap();
        eprintln!(
            "round {round} {name:>16}: n={} mean={:.3}ms p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms",
            d.len(),
            mean.as_secs_f64() * 1e3,
            pick(0.5).as_secs_f64() * 1e3,
            pick(0.9).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3,
            pick(1.0).as_secs_f64() * 1e3,
        );
    }
    assert!(
        !hang.requests().is_empty(),
        "the receiver was reached (and hung)"
    );
    assert!(hang.delivered().is_empty());
}

/// Runs a crash loop until `n` restarts and returns, for each restart after the first, the
/// time from the failed check run's own timestamp to the restart command's start.
fn measure_restart_delays(alerts: &str, n: usize) -> Vec<Duration> {
    let env = Env::new();
    let recorder = helper_bin("vigil-restart-recorder");
    let stamps = env.path("stamps");
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "0"
max_restarts = 1000000

[services.web]
driver = "command"
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "1"]

[services.web.checks.health]
kind = "exec"
command = ["sh", "-c", "date +%s%N >> {stamps}; exit 1"]
every = "50ms"
timeout = "5s"

{alerts}
"#,
        recorder = recorder.display().to_string(),
        log = env.path("restarts.log").display().to_string(),
        stamps = stamps.display(),
    ));
    let mut daemon = env.start_daemon(&[]);
    wait_until(Duration::from_secs(120), "the restarts", || {
        (recorder_runs(&env.path("restarts.log")).len() >= n).then_some(())
    });
    daemon.signal(rustix::process::Signal::TERM);
    daemon.wait_exit(Duration::from_secs(15));
    let fails: Vec<u128> = std::fs::read_to_string(&stamps)
        .expect("the check's stamps")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    recorder_runs(&env.path("restarts.log"))
        .iter()
        .skip(1)
        .filter_map(|(start, _)| {
            let fail = fails.iter().filter(|f| *f < start).max()?;
            Some(Duration::from_nanos(u64::try_from(start - fail).ok()?))
        })
        .collect()
}
