//! Operator control end to end (issue 13), for every driver against a running daemon:
//! `vigil stop` leaves the service down, and while it is down its failing check restarts
//! nothing and alerts no one (a real webhook receiver counts zero); `vigil start` brings
//! it back; `vigil pause --for 3s` holds back the restart of a failure until it expires by
//! itself, then the failure is restarted through the guard.
//!
//! Beds: `command` and `exec` always; `docker` with `VIGIL_TEST_DOCKER=1`; `systemd` with
//! `VIGIL_TEST_SYSTEMD=1` (see `driver_conformance.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::time::Duration;

use rustix::process::Signal;
use serde_json::Value;
use support::*;
use vigil_test_helpers::receiver::{Receiver, Script};

const LONG: Duration = Duration::from_secs(40);

/// A driver under operator control.
trait Bed {
    /// Driver keys of a service that can be stopped and started.
    fn keys(&self, env: &Env) -> String;
    /// The keys of a check (`[services.svc.checks.up]`) that passes while it runs.
    fn check(&self, env: &Env) -> String;
    /// The current instance, `None` while it is not running.
    fn instance(&self, env: &Env) -> Option<String>;
    /// The service dies, not by Vigil's hand.
    fn kill(&self, env: &Env);
    fn cleanup(&self, _env: &Env) {}
}

struct Cleanup<'a>(&'a dyn Bed, &'a Env);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.0.cleanup(self.1);
    }
}

fn status(env: &Env) -> Value {
    let out = env.vigil(&["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["services"][0].clone()
}

/// History rows of the service with this verdict.
fn rows(env: &Env, verdict: &str) -> Vec<Value> {
    env.history()
        .into_iter()
        .filter(|e| e["service"] == "svc" && e["verdict"] == verdict)
        .collect()
}

fn alerts_about_svc(hook: &Receiver) -> Vec<String> {
    hook.delivered()
        .iter()
        .flat_map(|r| {
            let doc: Value = serde_json::from_slice(&r.body).unwrap();
            doc["alerts"].as_array().cloned().unwrap_or_default()
        })
        .filter(|a| a["service"] == "svc")
        .map(|a| a["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn operator_control(bed: &dyn Bed) {
    let env = Env::new();
    let _cleanup = Cleanup(bed, &env);
    let hook = Receiver::start(Script::ok());
    env.write_config(&format!(
        r#"[defaults.guard]
cooldown = "0"
max_restarts = 20

[services.svc]
{keys}
[services.svc.checks.up]
{check}
every = "200ms"
timeout = "5s"

[alerts.hook]
kind = "webhook"
url = "{url}"
group_wait = "100ms"
events = ["restarted", "skipped", "given-up", "failing", "recovered", "warning", "watchdog"]
"#,
        keys = bed.keys(&env),
        check = bed.check(&env),
        url = hook.url("/hook"),
    ));
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    wait_until(LONG, "the check to pass", || {
        (status(&env)["checks"][0]["status"] == "passing").then_some(())
    });
    let first = wait_until(LONG, "the service to run", || bed.instance(&env));
    // (A check that ran before the service was up may have restarted it once, and
    // alerted about it.)
    std::thread::sleep(Duration::from_millis(300));
    let before = rows(&env, "allowed").len();
    // Such a restart's alert may still be on its way (group_wait, a loaded machine): it
    // must be counted before the stop, not taken for an alert sent while stopped.
    let restarted_ok = rows(&env, "allowed")
        .iter()
        .filter(|r| r["outcome"] == "ok")
        .count();
    wait_until(LONG, "the alerts of restarts before the stop", || {
        let sent = alerts_about_svc(&hook);
        (sent.iter().filter(|e| *e == "restarted").count() >= restarted_ok).then_some(())
    });
    // And any failing/recovered alert of that start-up: settled once nothing new has
    // arrived for ten times the channel's group_wait.
    let mut alerted = alerts_about_svc(&hook).len();
    wait_until(LONG, "the alerts before the stop to settle", || {
        std::thread::sleep(Duration::from_millis(1000));
        let now = alerts_about_svc(&hook).len();
        std::mem::replace(&mut alerted, now).eq(&now).then_some(())
    });

    // stop: down, and down it stays; its failing check restarts nothing, alerts no one.
    let out = ok(&env.vigil(&["stop", "svc", "--reason", "disk swap"]));
    assert!(out.contains("svc:"), "{out}");
    wait_until(LONG, "the service to be down", || {
        bed.instance(&env).is_none().then_some(())
    });
    let s = status(&env);
    assert_eq!(s["state"], "stopped", "{s}");
    assert_eq!(s["hold"]["reason"], "disk swap", "{s}");
    assert_eq!(
        s["hold"]["by"]["uid"],
        u64::from(rustix::process::getuid().as_raw())
    );
    wait_until(LONG, "the check to fail while stopped", || {
        let s = status(&env);
        (s["checks"][0]["status"] == "failing" && s["checks"][0]["expected_down"] == true)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bed.instance(&env), None, "a stopped service came back");
    assert_eq!(rows(&env, "allowed").len(), before, "{:?}", env.history());
    let out = env.vigil(&["restart", "svc", "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let said = text(&out.stderr) + &text(&out.stdout);
    assert!(
        said.contains("stopped by")
            && said.contains("disk swap")
            && said.contains("vigil start svc"),
        "{said}"
    );
    assert_eq!(rows(&env, "allowed").len(), before);

    // start: back up.
    ok(&env.vigil(&["start", "svc"]));
    let second = wait_until(LONG, "the service to be back", || bed.instance(&env));
    assert_ne!(second, first);
    wait_until(LONG, "the check to pass again", || {
        (status(&env)["checks"][0]["status"] == "passing").then_some(())
    });
    // Past the channel's group_wait: anything sent while stopped has arrived.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        alerts_about_svc(&hook).len(),
        alerted,
        "alerts while stopped: {:?}",
        alerts_about_svc(&hook)
    );

    // pause --for 3s: a failure is held back until the pause ends by itself, then it is
    // restarted through the guard.
    ok(&env.vigil(&["pause", "svc", "--for", "3s"]));
    assert_eq!(status(&env)["state"], "paused");
    bed.kill(&env);
    wait_until(LONG, "the check to see the failure", || {
        (status(&env)["checks"][0]["status"] == "failing").then_some(())
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(bed.instance(&env), None, "restarted during the pause");
    assert_eq!(rows(&env, "allowed").len(), before, "{:?}", env.history());
    let third = wait_until(LONG, "a restart after the pause", || bed.instance(&env));
    assert_ne!(third, second);
    assert_eq!(rows(&env, "expired").len(), 1, "{:?}", env.history());
    let allowed = rows(&env, "allowed");
    assert!(allowed.len() > before, "{:?}", env.history());
    assert!(
        allowed[before]["at"].as_str() >= rows(&env, "expired")[0]["at"].as_str(),
        "{allowed:?}"
    );
    let verdicts: Vec<String> = env
        .history()
        .iter()
        .filter(|e| e["service"] == "svc" && e["source"] == "operator")
        .map(|e| e["verdict"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        verdicts,
        ["stop", "start", "pause", "expired"],
        "{verdicts:?}"
    );
    drop(daemon);
}

/// A pid file's process, if it runs.
fn pid_in(path: &std::path::Path) -> Option<String> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    alive(pid).then(|| pid.to_string())
}

fn pid_check(env: &Env) -> String {
    format!(
        "kind = \"process\"\npid_file = {:?}",
        env.path("svc.pid").display().to_string()
    )
}

// ---------------------------------------------------------------------------------------
// command: start/stop/restart scripts around a background process with a pid file

struct CommandBed;

impl Bed for CommandBed {
    fn keys(&self, env: &Env) -> String {
        let pidf = env.path("svc.pid").display().to_string();
        let sleeper = helper_bin("vigil-sleeper").display().to_string();
        let start = format!("setsid {sleeper} >/dev/null & echo $! > {pidf}");
        assert!(
            command("sh")
                .arg("-c")
                .arg(&start)
                .status()
                .unwrap()
                .success()
        );
        let stop = format!("kill $(cat {pidf}); rm -f {pidf}");
        format!(
            r#"driver = "command"
restart_command = ["sh", "-c", "kill $(cat {pidf}) 2>/dev/null; {start}"]
stop_command = ["sh", "-c", "{stop}"]
start_command = ["sh", "-c", "{start}"]
status_command = ["sh", "-c", "kill -0 $(cat {pidf})"]
"#
        )
    }
    fn check(&self, env: &Env) -> String {
        pid_check(env)
    }
    fn instance(&self, env: &Env) -> Option<String> {
        pid_in(&env.path("svc.pid"))
    }
    fn kill(&self, env: &Env) {
        let pid = self.instance(env).expect("running");
        signal(pid.parse().unwrap(), Signal::KILL);
    }
    fn cleanup(&self, env: &Env) {
        if let Some(pid) = pid_in(&env.path("svc.pid")) {
            signal(pid.parse().unwrap(), Signal::KILL);
        }
    }
}

#[test]
fn command_service_under_operator_control() {
    operator_control(&CommandBed);
}

// ---------------------------------------------------------------------------------------
// exec: Vigil's own process (restart = "always": an exit is an automatic restart too)

struct ExecBed;

impl Bed for ExecBed {
    fn keys(&self, env: &Env) -> String {
        format!(
            "driver = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo $$ > {}; exec {}\"]\nrestart = \"always\"\nrestart_delay = \"0\"\nstop_timeout = \"2s\"\n",
            env.path("svc.pid").display(),
            helper_bin("vigil-sleeper").display()
        )
    }
    fn check(&self, env: &Env) -> String {
        pid_check(env)
    }
    fn instance(&self, env: &Env) -> Option<String> {
        let e = status(env)["exec"].clone();
        (e["state"] == "running").then(|| e["pid"].as_u64().map(|p| p.to_string()))?
    }
    fn kill(&self, env: &Env) {
        let pid = self.instance(env).expect("running");
        signal(pid.parse().unwrap(), Signal::KILL);
    }
}

#[test]
fn exec_service_under_operator_control() {
    operator_control(&ExecBed);
}

// ---------------------------------------------------------------------------------------
// docker: a container on a real dockerd

struct DockerBed {
    name: String,
}

impl Bed for DockerBed {
    fn keys(&self, _env: &Env) -> String {
        let spec = serde_json::json!({
            "Image": "vigil-busybox:latest",
            "Cmd": ["sleep", "3600"],
            "Labels": {"vigil-test": "1"},
            "HostConfig": {"NetworkMode": "none"},
        });
        let name = &self.name;
        let (code, body) = support::docker::call(
            "POST",
            &format!("/containers/create?name={name}"),
            Some(spec),
        );
        assert_eq!(code, 201, "create: {body}");
        let (code, body) =
            support::docker::call("POST", &format!("/containers/{name}/start"), None);
        assert_eq!(code, 204, "start: {body}");
        format!("driver = \"docker\"\ncontainer = \"{name}\"\nstop_timeout = \"1s\"\n")
    }
    fn check(&self, _env: &Env) -> String {
        format!("kind = \"docker\"\ncontainer = \"{}\"", self.name)
    }
    fn instance(&self, _env: &Env) -> Option<String> {
        let (code, body) =
            support::docker::call("GET", &format!("/containers/{}/json", self.name), None);
        (code == 200 && body["State"]["Running"] == true).then(|| {
            body["State"]["StartedAt"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
    }
    fn kill(&self, _env: &Env) {
        let (code, body) =
            support::docker::call("POST", &format!("/containers/{}/kill", self.name), None);
        assert_eq!(code, 204, "kill: {body}");
    }
    fn cleanup(&self, _env: &Env) {
        let _ = support::docker::call(
            "DELETE",
            &format!("/containers/{}?force=1&v=1", self.name),
            None,
        );
    }
}

#[test]
fn docker_service_under_operator_control() {
    if std::env::var("VIGIL_TEST_DOCKER").as_deref() != Ok("1") {
        println!("skipped: set VIGIL_TEST_DOCKER=1 (and DOCKER_HOST, see bench/docker-up.sh)");
        return;
    }
    operator_control(&DockerBed {
        name: format!("vigil-op-{}", std::process::id()),
    });
}

// ---------------------------------------------------------------------------------------
// systemd: a unit of systemd 252 in the nspawn test bed

struct SystemdBed {
    unit: String,
}

impl Bed for SystemdBed {
    fn keys(&self, _env: &Env) -> String {
        support::systemd::run_job(vigil_checks::systemd::JobKind::Start, &self.unit);
        format!(
            "driver = \"systemd\"\nunit = \"{}\"\nbus_address = \"{}\"\n",
            self.unit,
            support::systemd::address()
        )
    }
    fn check(&self, _env: &Env) -> String {
        format!(
            "kind = \"systemd\"\nunit = \"{}\"\nbus_address = \"{}\"",
            self.unit,
            support::systemd::address()
        )
    }
    fn instance(&self, _env: &Env) -> Option<String> {
        let state = support::systemd::on_bus(async |b| b.unit_state(&self.unit).await.ok())?;
        state
            .is_active()
            .then(|| state.active_enter.map(|t| t.as_millis().to_string()))?
    }
    fn kill(&self, _env: &Env) {
        // Stopped behind Vigil's back (as an admin's `systemctl stop` would).
        support::systemd::run_job(vigil_checks::systemd::JobKind::Stop, &self.unit);
    }
    fn cleanup(&self, _env: &Env) {
        support::systemd::run_job(vigil_checks::systemd::JobKind::Stop, &self.unit);
    }
}

#[test]
fn systemd_service_under_operator_control() {
    if std::env::var("VIGIL_TEST_SYSTEMD").as_deref() != Ok("1") {
        println!(
            "skipped: set VIGIL_TEST_SYSTEMD=1 and VIGIL_TEST_SYSTEMD_BUS (see bench/nspawn-up.sh)"
        );
        return;
    }
    operator_control(&SystemdBed {
        unit: format!("vigil-sleep@op-{}.service", std::process::id()),
    });
}

// ---------------------------------------------------------------------------------------
// Durable holds, cron mode, bad input

fn exec_config(env: &Env) {
    env.write_config(&format!(
        "[defaults.guard]\ncooldown = \"0\"\n\n[services.svc]\n{}\n[services.svc.checks.up]\n{}\nevery = \"200ms\"\n",
        ExecBed.keys(env),
        pid_check(env)
    ));
}

/// A stop and a pause outlive `vigil run`: a stopped exec service is not spawned when the
/// daemon starts again, and a paused one stays paused (its exit is held back).
#[test]
fn holds_survive_a_restart_of_vigil_run() {
    let env = Env::new();
    exec_config(&env);
    let mut daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    wait_until(LONG, "the service to run", || ExecBed.instance(&env));
    ok(&env.vigil(&["stop", "svc"]));
    daemon.signal(Signal::TERM);
    assert_eq!(daemon.wait_exit(LONG).and_then(|s| s.code()), Some(0));

    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    std::thread::sleep(Duration::from_millis(800));
    let s = status(&env);
    assert_eq!(s["state"], "stopped", "{s}");
    assert_ne!(s["exec"]["state"], "running", "{s}");
    assert!(
        !daemon.log_text().contains("process started"),
        "a stopped service was spawned:\n{}",
        daemon.log_text()
    );
    ok(&env.vigil(&["start", "svc"]));
    wait_until(LONG, "the service to start", || ExecBed.instance(&env));

    ok(&env.vigil(&["pause", "svc"]));
    drop(daemon);
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    // Paused is not stopped: the daemon starts it.
    wait_until(LONG, "the paused service to run", || ExecBed.instance(&env));
    assert_eq!(status(&env)["state"], "paused");
    ExecBed.kill(&env);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        ExecBed.instance(&env),
        None,
        "a paused service was restarted"
    );
    ok(&env.vigil(&["resume", "svc"]));
    wait_until(LONG, "the service back after resume", || {
        ExecBed.instance(&env)
    });
    drop(daemon);
}

/// Without a daemon (cron mode), `vigil check` honours a pause and a stop recorded in the
/// ledger: the failing check's restart is held back and its command does not run.
#[test]
fn one_shot_check_honours_pause_and_stop() {
    let env = Env::new();
    let ran = env.path("restarted");
    env.write_config(&format!(
        r#"[services.svc]
driver = "command"
restart_command = ["touch", {ran:?}]
stop_command = ["true"]
start_command = ["true"]

[services.svc.checks.up]
kind = "exec"
command = ["false"]
"#,
        ran = ran.display().to_string()
    ));
    for hold in ["pause", "stop"] {
        ok(&env.vigil(&[hold, "svc", "--reason", "maintenance"]));
        let out = env.vigil(&["check", "--json"]);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let action = &doc["services"][0]["action"];
        assert_eq!(action["verdict"], "held", "{hold}: {doc}");
        assert!(
            action["message"].as_str().unwrap().contains("maintenance"),
            "{action}"
        );
        assert!(!ran.exists(), "{hold}: the restart command ran");
        // Stopped: down on purpose, so its failing check does not fail `vigil check`.
        let expected = if hold == "stop" { Some(0) } else { Some(1) };
        assert_eq!(out.status.code(), expected, "{hold}: {}", text(&out.stderr));
        ok(&env.vigil(&[if hold == "pause" { "resume" } else { "start" }, "svc"]));
    }
    let out = env.vigil(&["check", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["services"][0]["action"]["verdict"], "allowed", "{doc}");
    assert!(ran.exists());
    let verdicts: Vec<String> = env
        .history()
        .iter()
        .map(|e| e["verdict"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        verdicts,
        ["pause", "resume", "stop", "start", "allowed"],
        "{verdicts:?}"
    );
}

/// Bad input is a clear message and exit 2, and nothing is recorded: with a daemon and
/// without one.
#[test]
fn bad_operator_input_is_refused_and_nothing_is_recorded() {
    let env = Env::new();
    env.write_config(
        r#"[services.web]
driver = "command"
restart_command = ["true"]

[groups.stack]
members = ["web"]
"#,
    );
    let cases: [(&[&str], &str); 6] = [
        (&["stop", "nope"], "unknown service `nope`"),
        (&["pause", "@nope"], "unknown group `@nope`"),
        (&["stop", "web", "--for", "soon"], "invalid --for"),
        (&["pause", "web", "--for", "0"], "invalid --for"),
        (&["stop", "web"], "without `stop_command` cannot be stopped"),
        (
            &["stop", "@stack"],
            "without `stop_command` cannot be stopped",
        ),
    ];
    let check = |env: &Env| {
        for (args, says) in cases {
            let out = env.vigil(args);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{args:?}: {}",
                text(&out.stderr)
            );
            assert!(
                text(&out.stderr).contains(says),
                "{args:?}: {}",
                text(&out.stderr)
            );
        }
        assert!(env.history().is_empty(), "{:?}", env.history());
    };
    check(&env);
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    check(&env);
    drop(daemon);
}

/// `vigil logs -f` shows a line the service prints after the command started, within a
/// second; `-n` shows the last lines.
#[test]
fn logs_follow_shows_new_lines() {
    let env = Env::new();
    let trigger = env.path("trigger");
    env.write_config(&format!(
        r#"[services.talker]
driver = "exec"
command = ["sh", "-c", "echo hello-1; echo hello-2 >&2; while true; do if [ -f {t} ]; then echo \"said-$(cat {t})\"; rm -f {t}; fi; sleep 0.02; done"]
"#,
        t = trigger.display()
    ));
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    let out = wait_until(LONG, "the first lines", || {
        let out = env.vigil(&["logs", "talker", "-n", "5"]);
        let t = text(&out.stdout);
        (t.contains("hello-1") && t.contains("hello-2")).then_some(t)
    });
    assert!(out.contains("stdout") && out.contains("stderr"), "{out}");
    let mut follow = command(vigil_bin())
        .args(["logs", "talker", "-f", "-n", "0", "-c"])
        .arg(env.config_path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The follower is connected once the daemon has answered its request; give the
    // request a moment, then speak.
    std::thread::sleep(Duration::from_millis(300));
    let said_at = instant_now();
    std::fs::write(&trigger, "42").unwrap();
    let line = loop {
        let left = Duration::from_secs(1).saturating_sub(said_at.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("said-42") => break line,
            Ok(_) => continue,
            Err(_) => panic!("no line within one second"),
        }
    };
    assert!(line.contains("stdout"), "{line}");
    let _ = follow.kill();
    let _ = follow.wait();
    drop(daemon);
}

/// A stop over the control socket is recorded with the caller's uid (the socket's peer
/// credentials), and a user who may not use the socket cannot stop anything. As root
/// only (it runs the CLI as `nobody`).
#[test]
fn a_stop_over_the_socket_names_the_caller_and_needs_access() {
    if !rustix::process::getuid().is_root() {
        println!("skipped: needs root (runs the CLI as nobody)");
        return;
    }
    let env = Env::new();
    let open = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    open(env.dir.path());
    let _cleanup = Cleanup(&CommandBed, &env);
    let keys = CommandBed.keys(&env);
    let config = |group: &str| {
        env.write_config(&format!(
            "control_socket_group_placeholder = 0\n[services.svc]\n{keys}"
        ));
        // `[vigil]` is written first by write_config: put the group there.
        let text = std::fs::read_to_string(env.config_path()).unwrap().replace(
            "control_socket_group_placeholder = 0\n",
            &if group.is_empty() {
                String::new()
            } else {
                format!("control_socket_group = \"{group}\"\n")
            },
        );
        std::fs::write(env.config_path(), text).unwrap();
        open(&env.config_path());
    };
    let as_nobody = |args: &[&str]| {
        command("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(vigil_bin())
            .args(args)
            .arg("-c")
            .arg(env.config_path())
            .output()
            .unwrap()
    };

    // The socket is its owner's (0600): nobody cannot use it.
    config("");
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    open(&env.state_dir());
    let out = as_nobody(&["stop", "svc"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("Permission denied")
            || text(&out.stderr).contains("permission denied"),
        "{}",
        text(&out.stderr)
    );
    assert!(rows(&env, "stop").is_empty(), "{:?}", env.history());
    assert!(CommandBed.instance(&env).is_some());
    drop(daemon);

    // With `control_socket_group` naming the caller's group, the stop goes through and
    // the ledger names the caller.
    config("nogroup");
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    let out = as_nobody(&["stop", "svc", "--reason", "by nobody"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stops = rows(&env, "stop");
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert!(
        stops[0]["message"]
            .as_str()
            .unwrap()
            .contains("by nobody (uid 65534)"),
        "{stops:?}"
    );
    let s = status(&env);
    assert_eq!(s["hold"]["by"]["uid"], 65534, "{s}");
    assert_eq!(s["hold"]["by"]["user"], "nobody", "{s}");
    drop(daemon);
}

/// A maintenance window (every 3 s, for 2 s) holds back the restart a failing check would
/// get; when the window ends the failure is restarted through the guard. The ledger shows
/// the window's start and end.
#[test]
fn a_maintenance_window_holds_back_a_restart_until_it_ends() {
    let env = Env::new();
    let healthy = env.path("healthy");
    std::fs::write(&healthy, "").unwrap();
    env.write_config(&format!(
        r#"[defaults.guard]
cooldown = "0"

[services.svc]
driver = "command"
restart_command = ["touch", {healthy:?}]

[services.svc.checks.up]
kind = "exec"
command = ["test", "-f", {healthy:?}]
every = "100ms"

[[services.svc.maintenance]]
every = "3s"
duration = "2s"
"#,
        healthy = healthy.display().to_string()
    ));
    let daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    let s = status(&env);
    assert_eq!(s["next_maintenance"]["action"], "pause", "{s}");
    let opened = wait_until(LONG, "the window to open", || {
        rows(&env, "pause")
            .into_iter()
            .find(|r| r["source"] == "window")
    });
    assert!(
        opened["message"]
            .as_str()
            .unwrap()
            .contains("maintenance window"),
        "{opened}"
    );
    assert_eq!(status(&env)["hold"]["source"], "window");
    std::fs::remove_file(&healthy).unwrap();
    wait_until(LONG, "the check to fail in the window", || {
        (status(&env)["checks"][0]["status"] == "failing").then_some(())
    });
    assert!(!healthy.exists(), "restarted inside the window");
    let closed = wait_until(LONG, "the window to close", || {
        rows(&env, "expired")
            .into_iter()
            .find(|r| r["source"] == "window")
    });
    assert!(
        closed["message"]
            .as_str()
            .unwrap()
            .contains("maintenance window ended"),
        "{closed}"
    );
    let restart = wait_until(LONG, "the restart after the window", || {
        rows(&env, "allowed").into_iter().next()
    });
    assert!(
        restart["at"].as_str() >= closed["at"].as_str(),
        "restarted before the window closed: {restart} / {closed}"
    );
    assert!(healthy.exists());
    drop(daemon);
}
