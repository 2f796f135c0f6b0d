//! The guard across processes: concurrent requesters never overlap a restart, and a Vigil
//! killed at any moment leaves a ledger that opens, loses nothing committed, and reports
//! the interrupted restart.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;

fn recorder_service(env: &Env, hold_ms: u32, extra: &str) {
    let recorder = helper_bin("vigil-restart-recorder");
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "0"
max_restarts = 100000
window = "1h"
lock_timeout = "60s"

[services.svc]
driver = "command"
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "{hold_ms}"]
command_timeout = "30s"
{extra}
"#,
        recorder = recorder.display().to_string(),
        log = env.path("restarts.log").display().to_string(),
    ));
}

/// Two CLI hammers plus a daemon firing a schedule every 100 ms request restarts of one
/// service; the restart command records its start and end. No two runs may overlap, and the
/// ledger's allowed count must equal the number of runs.
#[test]
fn concurrent_requesters_never_overlap_a_restart() {
    let env = Env::new();
    recorder_service(
        &env,
        15,
        r#"
[[services.svc.schedule]]
every = "100ms"
"#,
    );
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", Duration::from_secs(20));

    const PER_HAMMER: usize = 25;
    let hammers: Vec<_> = (0..2)
        .map(|_| {
            let config = env.config_path();
            std::thread::spawn(move || {
                let mut allowed = 0usize;
                for _ in 0..PER_HAMMER {
                    let out = command(vigil_bin())
                        .args(["restart", "svc", "--json", "-c"])
                        .arg(&config)
                        .output()
                        .expect("vigil restart");
                    let doc: serde_json::Value =
                        serde_json::from_slice(&out.stdout).expect("restart json");
                    if doc["verdict"] == "allowed" {
                        assert!(out.status.success(), "allowed restart exits 0");
                        allowed += 1;
                    } else {
                        assert_eq!(out.status.code(), Some(1));
                    }
                }
                allowed
            })
        })
        .collect();
    let cli_allowed: usize = hammers.into_iter().map(|h| h.join().expect("hammer")).sum();
    // A graceful stop lets an in-flight daemon restart finish and record its outcome.
    let mut daemon = daemon;
    daemon.signal(rustix::process::Signal::TERM);
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("daemon stops");
    assert_eq!(status.code(), Some(0), "{}", daemon.log_text());
    let runs = recorder_runs(&env.path("restarts.log"));
    for pair in runs.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two restarts overlapped: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
    let history = env.history();
    let allowed: Vec<_> = history
        .iter()
        .filter(|e| e["verdict"] == "allowed")
        .collect();
    assert_eq!(
        allowed.len(),
        runs.len(),
        "every allowed verdict ran the restart command exactly once"
    );
    assert!(
        allowed.iter().all(|e| e["outcome"] == "ok"),
        "every allowed restart recorded its outcome"
    );
    let cli_allowed_in_ledger = allowed.iter().filter(|e| e["source"] == "manual").count();
    assert_eq!(cli_allowed_in_ledger, cli_allowed);
    assert_eq!(
        cli_allowed,
        2 * PER_HAMMER,
        "cooldown 0 and a 60 s lock wait: all allowed"
    );
    assert!(
        allowed.iter().any(|e| e["source"] == "schedule"),
        "the daemon's schedule competed for the lock too"
    );
}

/// A tiny deterministic generator so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// `kill -9` of `vigil restart` at random moments over 200 cycles.
#[test]
fn kill_dash_nine_at_random_moments_never_corrupts_the_ledger() {
    let env = Env::new();
    recorder_service(&env, 3, "");
    let mut rng = Lcg(0x5eed_1234);
    let mut committed: BTreeSet<i64> = BTreeSet::new();
    let mut saw_dangling = 0usize;
    let mut saw_interrupted_report = false;
    for cycle in 0..200 {
        let mut child = command(vigil_bin())
            .args(["restart", "svc", "-c"])
            .arg(env.config_path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn vigil restart");
        let delay = Duration::from_micros(rng.next() % 12_000);
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();

        // The ledger always opens, and everything committed before is still there.
        let history = env.history();
        let ids: BTreeSet<i64> = history.iter().filter_map(|e| e["id"].as_i64()).collect();
        assert!(
            committed.is_subset(&ids),
            "cycle {cycle}: committed rows were lost"
        );
        committed = ids;
        let dangling: Vec<_> = history
            .iter()
            .filter(|e| e["verdict"] == "allowed" && e["outcome"].is_null())
            .collect();
        assert!(
            dangling.len() <= 1,
            "cycle {cycle}: at most one dangling intent, found {}",
            dangling.len()
        );
        if !dangling.is_empty() {
            saw_dangling += 1;
            // It is reported, never hidden.
            let status = env.vigil(&["status", "--json"]);
            let doc: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status");
            assert_eq!(doc["dangling_intents"].as_array().map(Vec::len), Some(1));
        }
        if history
            .iter()
            .any(|e| e["outcome"] == "interrupted" || e["outcome"] == "unknown")
        {
            saw_interrupted_report = true;
        }
    }
    // A final clean restart resolves any dangling intent with what is known.
    let out = env.vigil(&["restart", "svc"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let history = env.history();
    assert!(
        history
            .iter()
            .all(|e| e["verdict"] != "allowed" || !e["outcome"].is_null()),
        "no intent left dangling after a clean restart"
    );
    assert!(
        saw_dangling > 0 && saw_interrupted_report,
        "200 random kills should hit the restart window at least once (dangling {saw_dangling})"
    );
    // `interrupted` only when the restart provably started nothing; `unknown`, naming
    // what ran, when its command had started.
    for e in history
        .iter()
        .filter(|e| e["outcome"] == "interrupted" || e["outcome"] == "unknown")
    {
        let detail = e["outcome_detail"].as_str().unwrap_or_default();
        if e["outcome"] == "interrupted" {
            assert!(
                detail.contains("before the restart started anything"),
                "{e}"
            );
        } else {
            assert!(detail.starts_with("outcome unknown: vigil pid"), "{e}");
            assert!(detail.contains("vigil-restart-recorder"), "{e}");
        }
    }
}
