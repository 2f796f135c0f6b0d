//! A filesystem that never answers (a FUSE mount nobody serves, as a hung NFS server)
//! stops only the checks that look at it: the daemon's one runtime thread never waits on
//! it, so other services' checks keep their schedule and `vigil status` answers.
//!
//! It guards the inline `stat` and pid-file reads of issue 17 (`probe/cached_fs.rs`:
//! inline only when the kernel can answer from memory) and the `file_age` interval lookup,
//! which used to `stat` on the runtime thread after every run and froze the daemon here.
//!
//! Needs root (a FUSE mount, in a private mount namespace that only the daemon sees): CI
//! runs as root, and without it this test fails loudly.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::*;

fn status(env: &Env) -> serde_json::Value {
    let out = env.vigil(&["status", "--json"]);
    assert!(out.status.success(), "status: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status json")
}

fn check<'a>(doc: &'a serde_json::Value, service: &str, check: &str) -> &'a serde_json::Value {
    doc["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == service))
        .and_then(|s| s["checks"].as_array())
        .and_then(|c| c.iter().find(|c| c["name"] == check))
        .unwrap_or_else(|| panic!("no check {service}/{check} in {doc}"))
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_hung_filesystem_stops_only_its_own_checks() {
    let env = Env::new();
    let hung = env.path("hung");
    std::fs::create_dir(&hung).unwrap();
    let fresh = env.path("fresh");
    std::fs::write(&fresh, "x").unwrap();
    let pid_file = env.path("me.pid");
    std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
    let ticks = env.path("ticks.log");
    env.write_config(&format!(
        r#"
[services.stuck]
driver = "command"
restart_command = ["true"]

[services.stuck.checks.stamp]
kind = "file_age"
path = {hung_stamp:?}
max_age = "1h"
every = "200ms"
timeout = "300ms"
failure_threshold = 100000
on_failure = "alert"

[services.stuck.checks.pid]
kind = "process"
pid_file = {hung_pid:?}
every = "200ms"
timeout = "300ms"
failure_threshold = 100000
on_failure = "alert"

[services.fine]
driver = "command"
restart_command = ["true"]

[services.fine.checks.stamp]
kind = "file_age"
path = {fresh:?}
max_age = "1h"
every = "100ms"

[services.fine.checks.pid]
kind = "process"
pid_file = {pid_file:?}
every = "100ms"

[services.fine.checks.ticks]
kind = "exec"
command = ["sh", "-c", "echo x >> {ticks}"]
every = "100ms"
"#,
        hung_stamp = hung.join("stamp").display().to_string(),
        hung_pid = hung.join("svc.pid").display().to_string(),
        fresh = fresh.display().to_string(),
        pid_file = pid_file.display().to_string(),
        ticks = ticks.display(),
    ));
    let log = env.path("daemon.log");
    let child = command("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(helper_bin("vigil-hung-fuse"))
        .arg(&hung)
        .arg(vigil_bin())
        .arg("run")
        .arg("-c")
        .arg(env.config_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("daemon log"))
        .spawn()
        .expect("spawn unshare vigil-hung-fuse vigil run");
    let daemon = Daemon { child, log };
    daemon.wait_log("vigil running", Duration::from_secs(20));

    // Both checks on the hung filesystem time out (so it really is hung, not failing
    // fast), several runs each.
    wait_until(
        Duration::from_secs(20),
        "both checks on the hung filesystem to time out twice",
        || {
            let doc = status(&env);
            ["stamp", "pid"]
                .iter()
                .all(|name| {
                    let c = check(&doc, "stuck", name);
                    c["last_reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("timed out"))
                        && c["consecutive_failures"].as_u64().is_some_and(|n| n >= 2)
                })
                .then_some(())
        },
    );

    // Meanwhile, and afterwards, the other service's checks keep running and passing.
    let before = lines(&ticks);
    std::thread::sleep(Duration::from_millis(1500));
    let after = lines(&ticks);
    assert!(
        after >= before + 5,
        "the exec check ran {} times in 1.5 s at every = 100ms: the runtime was stopped\n{}",
        after - before,
        daemon.log_text()
    );
    let doc = status(&env);
    for name in ["stamp", "pid", "ticks"] {
        let c = check(&doc, "fine", name);
        assert_eq!(c["status"], "passing", "fine/{name}: {c}");
        assert!(
            c["consecutive_successes"].as_u64().is_some_and(|n| n >= 5),
            "fine/{name}: {c}"
        );
    }
    let stamp = check(&doc, "fine", "stamp")["last_reason"].to_string();
    assert!(stamp.contains("last modified"), "{stamp}");
    let pid = check(&doc, "fine", "pid")["last_reason"].to_string();
    assert!(
        pid.contains(&format!("process {}", std::process::id())),
        "{pid}"
    );
}
