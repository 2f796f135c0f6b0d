//! `driver = "exec"` end to end: real processes under `vigil run`, the restart policy
//! table over real exits and signals, the guard capping a crash loop, sd_notify readiness
//! and the watchdog (seed 004), real sd_notify clients nobody here wrote, process-group
//! cleanup, reload and shutdown.

mod support;

use std::time::Duration;

use rustix::process::Signal;
use support::*;

const LONG: Duration = Duration::from_secs(30);

fn client() -> String {
    helper_bin("vigil-notify-client").display().to_string()
}

fn status(env: &Env) -> serde_json::Value {
    let out = env.vigil(&["status", "--json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status json ({e}): {}", text(&out.stderr)))
}

fn exec_of(doc: &serde_json::Value, service: &str) -> serde_json::Value {
    doc["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == service))
        .map(|s| s["exec"].clone())
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until `service` reports `state` and returns its exec status.
fn wait_state(env: &Env, service: &str, state: &str) -> serde_json::Value {
    wait_until(LONG, &format!("{service} to be {state}"), || {
        let e = exec_of(&status(env), service);
        (e["state"] == state).then_some(e)
    })
}

fn entries_for(env: &Env, service: &str) -> Vec<serde_json::Value> {
    env.history()
        .into_iter()
        .filter(|e| e["service"] == service)
        .collect()
}

fn pids_in(path: &std::path::Path, kind: &str) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(kind)?.trim().parse().ok())
        .collect()
}

/// Every `restart` policy against real exits (code 0, code 3), real signals (SIGTERM,
/// SIGHUP, SIGKILL, SIGABRT, SIGSEGV) and a watchdog timeout, compared with systemd's
/// Table 2 (the pure table is unit-tested in vigil-core; this proves the edge classifies
/// real processes the same way).
#[test]
fn restart_policy_matrix_over_real_processes() {
    let env = Env::new();
    let c = client();
    let outcomes: [(&str, &str, &str); 7] = [
        ("exit0", "--exit 0 --after-ms 50", "clean"),
        ("exit3", "--exit 3 --after-ms 50", "unclean-code"),
        ("term", "--signal 15 --after-ms 50", "clean"),
        ("hup", "--signal 1 --after-ms 50", "clean"),
        ("kill", "--signal 9 --after-ms 50", "unclean-signal"),
        ("abrt", "--signal 6 --after-ms 50", "unclean-signal"),
        ("segv", "--signal 11 --after-ms 50", "unclean-signal"),
    ];
    let policies = [
        "no",
        "always",
        "on-success",
        "on-failure",
        "on-abnormal",
        "on-abort",
        "on-watchdog",
    ];
    // systemd.service(5) Table 2, by cause, in the column order above.
    let table = |cause: &str| -> [bool; 7] {
        match cause {
            "clean" => [false, true, true, false, false, false, false],
            "unclean-code" => [false, true, false, true, false, false, false],
            "unclean-signal" => [false, true, false, true, true, true, false],
            "watchdog" => [false, true, false, true, true, false, true],
            other => panic!("{other}"),
        }
    };
    let mut body = String::from(
        "[defaults.guard]\ncooldown = \"1h\"\nmax_restarts = 100\nlock_timeout = \"30s\"\n",
    );
    let mut cases = Vec::new();
    for (name, args, cause) in outcomes
        .iter()
        .map(|(n, a, c)| (*n, a.to_string(), *c))
        .chain([(
            "wd",
            "--ready-after-ms 0 --ping-ms 50 --ping-for-ms 100".to_owned(),
            "watchdog",
        )])
    {
        for (i, policy) in policies.iter().enumerate() {
            let service = format!("{name}-{policy}");
            let argv: Vec<String> = std::iter::once(c.clone())
                .chain(args.split_whitespace().map(str::to_owned))
                .collect();
            body.push_str(&format!(
                "\n[services.{service:?}]\ndriver = \"exec\"\ncommand = {argv:?}\nrestart = \"{policy}\"\nrestart_delay = \"0\"\nstdout = \"null\"\n"
            ));
            if cause == "watchdog" {
                body.push_str("ready = \"notify\"\nwatchdog = \"400ms\"\n");
            }
            cases.push((service, table(cause)[i], cause));
        }
    }
    env.write_config(&body);
    let _daemon = env.start_daemon(&[]);
    // Each case ends observably: a restart request in the ledger, or state `exited`.
    let outcome = wait_until(Duration::from_secs(60), "every case to settle", || {
        let doc = status(&env);
        let history = env.history();
        let mut got = Vec::new();
        for (service, _, _) in &cases {
            let restarted = history
                .iter()
                .any(|e| e["service"] == service.as_str() && e["verdict"] == "allowed");
            let exited = exec_of(&doc, service)["state"] == "exited";
            if !restarted && !exited {
                return None;
            }
            got.push(restarted);
        }
        Some(got)
    });
    let mut mismatches = Vec::new();
    for ((service, expected, cause), restarted) in cases.iter().zip(outcome) {
        if restarted != *expected {
            mismatches.push(format!(
                "{service} ({cause}): restarted={restarted}, systemd restarts={expected}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // Watchdog restarts carry source `watchdog`; exits carry `exit`.
    let history = env.history();
    for e in history.iter().filter(|e| e["verdict"] == "allowed") {
        let service = e["service"].as_str().unwrap_or_default();
        let want = if service.starts_with("wd-") {
            "watchdog"
        } else {
            "exit"
        };
        assert_eq!(e["source"], want, "{e}");
    }
}

/// Seed 004: a service pinging the watchdog is SIGSTOPped; Vigil captures hang evidence,
/// kills it with SIGABRT and restarts it with source `watchdog`.
#[test]
fn seed004_sigstopped_service_is_killed_with_sigabrt_and_restarted_with_evidence() {
    let env = Env::new();
    let pids = env.path("pids");
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "0s"

[services.lightscope]
driver = "exec"
command = [{c:?}, "--pid-file", {p:?}, "--print", "packet loop running", "--ready-after-ms", "0", "--status", "Processing packets...", "--ping-ms", "100"]
ready = "notify"
watchdog = "1s"
restart = "on-failure"
restart_delay = "0"

# The watchdog alert, with its evidence, as JSON on a command's stdin.
[alerts.ops]
kind = "exec"
command = ["sh", "-c", "cat >> {a}"]
events = ["watchdog"]
group_wait = "0s"
"#,
        c = client(),
        p = pids.display().to_string(),
        a = env.path("alerts.json").display(),
    ));
    let daemon = env.start_daemon(&[]);
    let running = wait_state(&env, "lightscope", "running");
    assert_eq!(running["status_text"], "Processing packets...", "{running}");
    let first: u32 = running["pid"].as_u64().expect("pid") as u32;
    signal(first, Signal::STOP);
    let second = wait_until(LONG, "a new instance", || {
        let e = exec_of(&status(&env), "lightscope");
        let pid = e["pid"].as_u64()? as u32;
        (e["state"] == "running" && pid != first).then_some(pid)
    });
    assert!(alive(second));
    wait_until(LONG, "the stopped process to be gone", || {
        (!alive(first)).then_some(())
    });
    let log = daemon.log_text();
    assert!(
        log.contains(&format!(
            "Watchdog timeout: killing pid {first} with SIGABRT"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "process {first} exited: killed by SIGABRT (exit cause: watchdog)"
        )),
        "{log}"
    );
    let entries = entries_for(&env, "lightscope");
    let wd = entries
        .iter()
        .find(|e| e["source"] == "watchdog")
        .unwrap_or_else(|| panic!("no watchdog entry: {entries:?}"));
    assert_eq!(wd["verdict"], "allowed");
    assert_eq!(wd["outcome"], "ok");
    let evidence = wd["evidence"].as_str().expect("evidence");
    assert!(evidence.contains("state: T (stopped)"), "{evidence}");
    assert!(evidence.contains("threads ("), "{evidence}");
    assert!(evidence.contains("wchan"), "{evidence}");
    assert!(
        evidence.contains("stdout: packet loop running"),
        "{evidence}"
    );
    let alerts = wait_until(LONG, "the watchdog alert", || {
        let text = std::fs::read_to_string(env.path("alerts.json")).ok()?;
        text.contains("Watchdog timeout").then_some(text)
    });
    assert!(alerts.contains("\"watchdog\""), "{alerts}");
    assert!(alerts.contains("state: T (stopped)"), "{alerts}");
}

/// A crash loop with restart = "always" and restart_delay = "0": the guard allows
/// `max_restarts`, then the service is given up; "ACTION REQUIRED" is raised once.
#[test]
fn crash_loop_is_capped_by_the_guard_and_given_up_once() {
    let env = Env::new();
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "0s"
max_restarts = 3
window = "1h"

[services.crashy]
driver = "exec"
command = [{c:?}, "--exit", "1"]
restart = "always"
restart_delay = "0"
"#,
        c = client()
    ));
    let mut daemon = env.start_daemon(&[]);
    let e = wait_state(&env, "crashy", "given-up");
    assert!(
        e["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("limit reached (3/3 per hour)"),
        "{e}"
    );
    let doc = status(&env);
    assert_eq!(doc["services"][0]["state"], "given-up", "{doc}");
    assert_eq!(doc["services"][0]["restarts_in_window"], 3, "{doc}");
    // Still given up a few polls later (the deferred restart is kept, not re-sent).
    daemon.wait_log("ACTION REQUIRED", LONG);
    daemon.signal(Signal::TERM);
    daemon.wait_exit(LONG).expect("vigil exits");
    let log = daemon.log_text();
    assert_eq!(log.matches("ACTION REQUIRED").count(), 1, "{log}");
    let entries = entries_for(&env, "crashy");
    let allowed = entries.iter().filter(|e| e["verdict"] == "allowed").count();
    assert_eq!(allowed, 3, "{entries:?}");
    assert!(entries.iter().all(|e| e["source"] == "exit"));
    assert!(entries.iter().any(|e| e["verdict"] == "denied"));
}

/// `vigil reset` re-arms a given-up exec service: the daemon's deferred restart goes
/// through as soon as the budget allows it.
#[test]
fn reset_rearms_a_given_up_service() {
    let env = Env::new();
    let marker = env.path("allow-run");
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "0s"
max_restarts = 1

[services.flap]
driver = "exec"
command = ["/bin/sh", "-c", "test -e {m} && exec sleep 600; exit 1"]
restart = "on-failure"
restart_delay = "0"
"#,
        m = marker.display()
    ));
    let _daemon = env.start_daemon(&[]);
    wait_state(&env, "flap", "given-up");
    std::fs::write(&marker, "").unwrap();
    let out = env.vigil(&["reset", "flap"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let e = wait_state(&env, "flap", "running");
    let pid = e["pid"].as_u64().unwrap() as u32;
    assert!(alive(pid));
}

/// Stopping a service whose process forked a grandchild that ignores SIGTERM leaves no
/// process behind: the leftover is SIGKILLed after stop_timeout and reported.
#[test]
fn stop_kills_a_term_ignoring_grandchild_and_reports_it() {
    let env = Env::new();
    let pids = env.path("pids");
    env.write_config(&format!(
        r#"
[services.forker]
driver = "exec"
command = [{c:?}, "--pid-file", {p:?}, "--fork-ignoring-term"]
stop_timeout = "500ms"
"#,
        c = client(),
        p = pids.display().to_string()
    ));
    let mut daemon = env.start_daemon(&[]);
    let child = wait_until(LONG, "the grandchild's pid", || {
        pids_in(&pids, "child ").first().copied()
    });
    let main = pids_in(&pids, "main ")[0];
    assert!(alive(main) && alive(child));
    daemon.signal(Signal::TERM);
    let status = daemon.wait_exit(LONG).expect("vigil exits");
    assert_eq!(status.code(), Some(0), "{}", daemon.log_text());
    wait_until(Duration::from_secs(5), "both processes to be gone", || {
        (!alive(main) && !alive(child)).then_some(())
    });
    let log = daemon.log_text();
    assert!(log.contains("leftover process(es)"), "{log}");
    assert!(log.contains(&format!("{child} ")), "{log}");
    assert!(log.contains("killed (SIGKILL)"), "{log}");
    assert_eq!(exec_of(&status_after(&env), "forker")["state"], "stopped");
}

fn status_after(env: &Env) -> serde_json::Value {
    status(env)
}

/// A datagram from a process outside the service's group is ignored.
#[test]
fn spoofed_notify_senders_are_ignored() {
    let env = Env::new();
    env.write_config(
        r#"
[services.waiting]
driver = "exec"
command = ["/bin/sleep", "600"]
ready = "notify"
"#,
    );
    let daemon = env.start_daemon(&[]);
    wait_state(&env, "waiting", "starting");
    let sock = env.state_dir().join("notify").join("waiting.sock");
    let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
    client
        .send_to(b"READY=1\nSTATUS=spoofed", &sock)
        .expect("send");
    daemon.wait_log("ignored sd_notify datagram from pid", LONG);
    let e = exec_of(&status(&env), "waiting");
    assert_eq!(e["state"], "starting", "{e}");
    assert!(e["status_text"].is_null(), "{e}");
}

/// `systemd-notify` (Debian's systemd package), run as a child of the service's shell.
#[test]
fn systemd_notify_marks_the_service_ready_with_its_status() {
    if !std::path::Path::new("/usr/bin/systemd-notify").exists() {
        assert!(
            std::env::var_os("VIGIL_TEST_SERVERS").is_none(),
            "systemd-notify is missing"
        );
        eprintln!("skipped: /usr/bin/systemd-notify is not installed");
        return;
    }
    let env = Env::new();
    env.write_config(
        r#"
[services.sdn]
driver = "exec"
command = ["/bin/sh", "-c", "systemd-notify --ready --status='ready via systemd-notify' && exec sleep 600"]
ready = "notify"
start_timeout = "20s"
"#,
    );
    let _daemon = env.start_daemon(&[]);
    let e = wait_state(&env, "sdn", "running");
    assert_eq!(e["status_text"], "ready via systemd-notify", "{e}");
}

/// Python's `sdnotify` library (Debian's python3-sdnotify) with a watchdog: it must stay
/// up while it pings, and `STATUS=` shows in `vigil status`.
#[test]
fn python_sdnotify_library_client() {
    let python = "/usr/bin/python3";
    let have = command(python)
        .args(["-c", "import sdnotify"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("VIGIL_TEST_SERVERS").is_none(),
            "python3-sdnotify is missing"
        );
        eprintln!("skipped: python3-sdnotify is not installed");
        return;
    }
    let env = Env::new();
    let script = env.path("svc.py");
    std::fs::write(
        &script,
        "import sdnotify, time\nn = sdnotify.SystemdNotifier()\nn.notify('READY=1')\nn.notify('STATUS=python says hi')\nwhile True:\n    n.notify('WATCHDOG=1')\n    time.sleep(0.1)\n",
    )
    .unwrap();
    env.write_config(&format!(
        r#"
[services.py]
driver = "exec"
command = ["{python}", {s:?}]
ready = "notify"
watchdog = "2s"
"#,
        s = script.display().to_string()
    ));
    let daemon = env.start_daemon(&[]);
    let e = wait_state(&env, "py", "running");
    assert_eq!(e["status_text"], "python says hi", "{e}");
    let pid = e["pid"].as_u64().unwrap() as u32;
    // Outlive two watchdog intervals: pings keep it alive.
    daemon.wait_log("ready (READY=1)", LONG);
    std::thread::sleep(Duration::from_secs(5));
    assert!(alive(pid), "{}", daemon.log_text());
    assert!(!daemon.log_text().contains("Watchdog timeout"));
}

/// libsystemd's own `sd_notify()` from a tiny C program (libsystemd-dev + gcc).
#[test]
fn libsystemd_sd_notify_client() {
    let header = std::path::Path::new("/usr/include/systemd/sd-daemon.h");
    if !header.exists() {
        assert!(
            std::env::var_os("VIGIL_TEST_SERVERS").is_none(),
            "libsystemd-dev is missing"
        );
        eprintln!("skipped: libsystemd-dev is not installed");
        return;
    }
    let env = Env::new();
    let src = env.path("client.c");
    let bin = env.path("client");
    std::fs::write(
        &src,
        "#include <systemd/sd-daemon.h>\n#include <unistd.h>\nint main(void) {\n  uint64_t usec = 0;\n  int wd = sd_watchdog_enabled(0, &usec);\n  sd_notifyf(0, \"READY=1\\nSTATUS=libsystemd watchdog=%d usec=%llu\", wd, (unsigned long long)usec);\n  for (;;) { sd_notify(0, \"WATCHDOG=1\"); usleep(100000); }\n}\n",
    )
    .unwrap();
    let out = command("gcc")
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .arg("-lsystemd")
        .output()
        .expect("gcc");
    assert!(out.status.success(), "gcc: {}", text(&out.stderr));
    env.write_config(&format!(
        r#"
[services.c]
driver = "exec"
command = [{b:?}]
ready = "notify"
watchdog = "1500ms"
"#,
        b = bin.display().to_string()
    ));
    let _daemon = env.start_daemon(&[]);
    let e = wait_state(&env, "c", "running");
    // sd_watchdog_enabled() checks WATCHDOG_PID == getpid(): the exec wrapper got it right.
    assert_eq!(
        e["status_text"], "libsystemd watchdog=1 usec=1500000",
        "{e}"
    );
}

/// SIGHUP restarts only exec services whose definition changed, starts new ones and
/// stops removed ones; unchanged ones keep their process.
#[test]
fn sighup_reload_restarts_only_changed_exec_services() {
    let env = Env::new();
    let svc = |name: &str, arg: &str| {
        format!(
            "\n[services.{name}]\ndriver = \"exec\"\ncommand = [\"/bin/sleep\", \"{arg}\"]\nstop_timeout = \"2s\"\n"
        )
    };
    env.write_config(&format!(
        "{}{}{}",
        svc("same", "600"),
        svc("changed", "600"),
        svc("removed", "600")
    ));
    let daemon = env.start_daemon(&[]);
    let pid =
        |name: &str| -> u32 { wait_state(&env, name, "running")["pid"].as_u64().unwrap() as u32 };
    let (same, changed, removed) = (pid("same"), pid("changed"), pid("removed"));
    env.write_config(&format!(
        "{}{}{}",
        svc("same", "600"),
        svc("changed", "601"),
        svc("added", "600")
    ));
    daemon.signal(Signal::HUP);
    let changed2 = wait_until(LONG, "changed to be restarted", || {
        let e = exec_of(&status(&env), "changed");
        let p = e["pid"].as_u64()? as u32;
        (e["state"] == "running" && p != changed).then_some(p)
    });
    let added = pid("added");
    wait_until(LONG, "removed to be stopped", || {
        (!alive(removed)).then_some(())
    });
    assert!(alive(same) && alive(changed2) && alive(added));
    assert!(!alive(changed));
    assert_eq!(exec_of(&status(&env), "same")["pid"], same);
    let log = daemon.log_text();
    assert!(log.contains("definition changed on reload"), "{log}");
}

/// `on_daemon_exit = "leave"` keeps the process when vigil exits; the default stops it.
#[test]
fn on_daemon_exit_leave_keeps_the_process() {
    let env = Env::new();
    env.write_config(
        r#"
[services.kept]
driver = "exec"
command = ["/bin/sleep", "600"]
on_daemon_exit = "leave"

[services.stopped]
driver = "exec"
command = ["/bin/sleep", "600"]
"#,
    );
    let mut daemon = env.start_daemon(&[]);
    let kept = wait_state(&env, "kept", "running")["pid"].as_u64().unwrap() as u32;
    let stopped = wait_state(&env, "stopped", "running")["pid"]
        .as_u64()
        .unwrap() as u32;
    daemon.signal(Signal::TERM);
    daemon.wait_exit(LONG).expect("vigil exits");
    let _guard = KillPid(kept);
    assert!(alive(kept), "{}", daemon.log_text());
    wait_until(
        Duration::from_secs(5),
        "the default service to stop",
        || (!alive(stopped)).then_some(()),
    );
    assert_eq!(exec_of(&status(&env), "kept")["state"], "left-running");
}

/// Kills a process the test made vigil leave behind.
struct KillPid(u32);

impl Drop for KillPid {
    fn drop(&mut self) {
        if alive(self.0) {
            signal(self.0, Signal::KILL);
        }
    }
}

/// Outputs: stdout into a rotated file, stderr into Vigil's log with the service name;
/// `user`/`group` drop privileges when vigil runs as root.
#[test]
fn outputs_and_identity() {
    let env = Env::new();
    let out = env.path("out/stdout.log");
    let as_root = rustix::process::getuid().is_root();
    let user = if as_root { "user = \"nobody\"\n" } else { "" };
    env.write_config(&format!(
        r#"
[services.talker]
driver = "exec"
command = ["/bin/sh", "-c", "echo to-file uid=$(id -u); echo to-log >&2; exec sleep 600"]
stdout = {{ file = {o:?} }}
{user}"#,
        o = out.display().to_string()
    ));
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("talker: to-log", LONG);
    let line = wait_until(LONG, "the file output", || {
        let t = std::fs::read_to_string(&out).ok()?;
        t.contains("to-file").then_some(t)
    });
    if as_root {
        assert!(line.contains("uid=65534"), "{line}");
    }
    assert!(!daemon.log_text().contains("talker: to-file"));
}

/// One-shot CLI commands on an exec service say the daemon owns it.
#[test]
fn one_shot_restart_of_an_exec_service_says_the_daemon_owns_it() {
    let env = Env::new();
    env.write_config("[services.w]\ndriver = \"exec\"\ncommand = [\"/bin/sleep\", \"600\"]\n");
    let out = env.vigil(&["restart", "w"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("supervised by `vigil run`"),
        "{}",
        text(&out.stderr)
    );
    assert!(env.history().is_empty());
}

/// The rest of the protocol through `systemd-notify`: `EXTEND_TIMEOUT_USEC=` extends the
/// start deadline, a missing `READY=1` is a start timeout (an abnormal exit cause),
/// `WATCHDOG=trigger` and `WATCHDOG_USEC=` fire the watchdog, `MAINPID=` is recorded.
#[test]
fn notify_protocol_extras_via_systemd_notify() {
    if !std::path::Path::new("/usr/bin/systemd-notify").exists() {
        assert!(std::env::var_os("VIGIL_TEST_SERVERS").is_none());
        eprintln!("skipped: /usr/bin/systemd-notify is not installed");
        return;
    }
    let env = Env::new();
    let sh = |name: &str, script: &str, extra: &str| {
        format!(
            "\n[services.{name}]\ndriver = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\nready = \"notify\"\nrestart_delay = \"0\"\n{extra}\n"
        )
    };
    env.write_config(&format!(
        "[defaults.guard]\ncooldown = \"1h\"\n{}{}{}{}{}",
        sh(
            "extended",
            "systemd-notify EXTEND_TIMEOUT_USEC=5000000 && sleep 1 && systemd-notify --ready && exec sleep 600",
            "start_timeout = \"300ms\"\nrestart = \"always\""
        ),
        sh("never_ready", "exec sleep 600", "start_timeout = \"300ms\"\nrestart = \"on-abnormal\"\nstop_timeout = \"1s\""),
        sh(
            "triggered",
            "systemd-notify --ready && sleep 0.2 && systemd-notify WATCHDOG=trigger && exec sleep 600",
            "restart = \"on-watchdog\""
        ),
        sh(
            "shortened",
            "systemd-notify --ready WATCHDOG_USEC=300000 && exec sleep 600",
            "watchdog = \"1h\"\nrestart = \"on-watchdog\""
        ),
        sh(
            "forking",
            "sleep 600 & systemd-notify --ready MAINPID=$! && wait",
            "restart = \"no\""
        ),
    ));
    let daemon = env.start_daemon(&[]);
    let watchdog_restart = |service: &str| {
        wait_until(LONG, &format!("{service}'s watchdog restart"), || {
            entries_for(&env, service)
                .into_iter()
                .find(|e| e["source"] == "watchdog" && e["verdict"] == "allowed")
        })
    };
    for service in ["triggered", "shortened"] {
        let e = watchdog_restart(service);
        assert!(
            e["evidence"]
                .as_str()
                .unwrap_or_default()
                .contains("main process"),
            "{e}"
        );
    }
    let timeout = wait_until(LONG, "never_ready's restart", || {
        entries_for(&env, "never_ready")
            .into_iter()
            .find(|e| e["verdict"] == "allowed")
    });
    assert_eq!(timeout["source"], "exit", "{timeout}");
    daemon.wait_log("(exit cause: timeout)", LONG);
    let extended = wait_state(&env, "extended", "running");
    assert!(entries_for(&env, "extended").is_empty(), "{extended}");
    let forking = wait_state(&env, "forking", "running");
    let main = forking["main_pid"].as_u64().expect("main_pid") as u32;
    assert_ne!(Some(u64::from(main)), forking["pid"].as_u64());
    assert!(alive(main));
}

/// A failing health check restarts an exec service through the guard (source `health`):
/// the old process is stopped per its stop policy and a new one started.
#[test]
fn failing_check_restarts_an_exec_service() {
    let env = Env::new();
    let flag = env.path("unhealthy");
    env.write_config(&format!(
        r#"
[services.api]
driver = "exec"
command = ["/bin/sleep", "600"]

[services.api.checks.alive]
kind = "exec"
command = ["/bin/sh", "-c", "test ! -e {f}"]
every = "100ms"
"#,
        f = flag.display()
    ));
    let _daemon = env.start_daemon(&[]);
    let first = wait_state(&env, "api", "running")["pid"].as_u64().unwrap() as u32;
    std::fs::write(&flag, "").unwrap();
    let second = wait_until(LONG, "a restart by the check", || {
        let e = exec_of(&status(&env), "api");
        let p = e["pid"].as_u64()? as u32;
        (e["state"] == "running" && p != first).then_some(p)
    });
    std::fs::remove_file(&flag).unwrap();
    assert!(alive(second));
    wait_until(Duration::from_secs(5), "the old process to be gone", || {
        (!alive(first)).then_some(())
    });
    let entries = entries_for(&env, "api");
    assert_eq!(entries[0]["source"], "health", "{entries:?}");
    assert_eq!(entries[0]["outcome"], "ok", "{entries:?}");
}

/// A few seconds after startup the daemon drops the code pages it is not running
/// (`memory.rs`); whatever runs next maps its code back in. A crash after the release is
/// still restarted through the guard and `status` still answers.
#[test]
fn after_releasing_code_pages_the_daemon_keeps_supervising() {
    let env = Env::new();
    env.write_config(
        r#"log_level = "debug"

[services.app]
driver = "exec"
command = ["/bin/sleep", "100000"]
restart = "always"
restart_delay = "0"
"#,
    );
    let daemon = env.start_daemon(&[]);
    let running = wait_state(&env, "app", "running");
    let first = running["pid"].as_u64().expect("pid") as u32;
    let log = daemon.wait_log("of code and read-only data pages", LONG);
    let line = log
        .lines()
        .find(|l| l.contains("of code and read-only data pages"))
        .expect("release line");
    let released: u64 = line
        .split("released ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no KiB count in {line:?}"));
    assert!(released > 0, "{line}");
    signal(first, Signal::KILL);
    let again = wait_until(LONG, "a new instance after the release", || {
        let e = exec_of(&status(&env), "app");
        let pid = e["pid"].as_u64()? as u32;
        (e["state"] == "running" && pid != first).then_some(pid)
    });
    assert!(alive(again));
    let restarts: Vec<_> = entries_for(&env, "app")
        .into_iter()
        .filter(|e| e["source"] == "exit")
        .collect();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    assert_eq!(restarts[0]["verdict"], "allowed", "{restarts:?}");
}
