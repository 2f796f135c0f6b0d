//! One conformance suite every driver passes (issue 5): against a running daemon,
//! - two simultaneous restart requests execute once (the second is refused by the guard);
//! - after a restart the service is running again (a new instance);
//! - a restart that would hang is cut at the driver's deadline and the service comes back;
//! - a failed restart is reported precisely (exit 1, the driver's reason).
//!
//! Beds: `command` and `exec` always; `docker` with `VIGIL_TEST_DOCKER=1` (a real dockerd,
//! `bench/docker-up.sh`); `systemd` with `VIGIL_TEST_SYSTEMD=1` (systemd 252 in nspawn,
//! `bench/nspawn-up.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::time::Duration;

use rustix::process::Signal;
use support::*;

const LONG: Duration = Duration::from_secs(40);

/// A driver under test: the service's driver keys in three variants, and how to tell one
/// instance of the service from the next.
trait Bed {
    /// Driver keys of a service whose restart works.
    fn healthy(&self, env: &Env) -> String;
    /// Driver keys of a service whose restart would hang without the driver's deadline.
    fn hanging(&self, env: &Env) -> String;
    /// Driver keys of a service whose restart fails, and a fragment of the reason.
    fn failing(&self, env: &Env) -> (String, String);
    /// The current instance (a pid, a start time), `None` while it is not running.
    fn instance(&self, env: &Env) -> Option<String>;
    /// How a hanging restart ends: the exit code of `vigil restart` and a fragment of its
    /// output. Drivers that stop the service themselves kill it at their deadline and
    /// succeed; a command driver kills the command at `command_timeout` and fails.
    fn hang_outcome(&self) -> (i32, &'static str) {
        (0, "restarted")
    }
    /// Called with the daemon up, just before the failing restart is requested.
    fn before_failing_restart(&self, _env: &Env) {}
    /// Stops whatever the bed left running for `env`.
    fn cleanup(&self, _env: &Env) {}
}

/// Runs the bed's cleanup when a step ends, pass or fail.
struct Cleanup<'a>(&'a dyn Bed, &'a Env);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.0.cleanup(self.1);
    }
}

fn config(env: &Env, driver_keys: &str) {
    env.write_config(&format!(
        "[defaults.guard]\ncooldown = \"1h\"\nmax_restarts = 5\n\n[services.svc]\n{driver_keys}\n"
    ));
}

fn restart(env: &Env) -> std::process::Output {
    env.vigil(&["restart", "svc"])
}

fn conformance(bed: &dyn Bed) {
    // 1. Two requests at once execute once; the service runs again, as a new instance.
    let env = Env::new();
    let _cleanup = Cleanup(bed, &env);
    config(&env, &bed.healthy(&env));
    let mut daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    let first = wait_until(LONG, "the service to run", || bed.instance(&env));
    let spawn = || {
        command(vigil_bin())
            .args(["restart", "svc", "-c"])
            .arg(env.config_path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(1)),
        "one restart, one refusal: {codes:?}\n{}\n{}",
        text(&outs[0].stdout),
        text(&outs[1].stdout)
    );
    let refused = outs.iter().find(|o| o.status.code() == Some(1)).unwrap();
    assert!(
        text(&refused.stdout).contains("Restart SKIPPED: cooldown active"),
        "{}",
        text(&refused.stdout)
    );
    let verdicts: Vec<String> = env
        .history()
        .iter()
        .map(|e| e["verdict"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(verdicts, ["allowed", "skipped"]);
    let second = wait_until(LONG, "a new instance", || {
        bed.instance(&env).filter(|i| *i != first)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bed.instance(&env), Some(second), "restarted more than once");
    daemon.signal(Signal::TERM);
    assert_eq!(
        daemon.wait_exit(LONG).and_then(|s| s.code()),
        Some(0),
        "{}",
        daemon.log_text()
    );

    // 2. A restart that would hang is cut at the driver's deadline; the service comes back.
    let env = Env::new();
    let _cleanup = Cleanup(bed, &env);
    config(&env, &bed.hanging(&env));
    let mut daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    let first = wait_until(LONG, "the service to run", || bed.instance(&env));
    let out = restart(&env);
    let (code, fragment) = bed.hang_outcome();
    assert_eq!(out.status.code(), Some(code), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(fragment),
        "{}",
        text(&out.stdout)
    );
    wait_until(LONG, "a new instance", || {
        bed.instance(&env).filter(|i| *i != first)
    });
    daemon.signal(Signal::TERM);
    daemon.wait_exit(LONG);

    // 3. A failed restart is reported with the driver's reason.
    let env = Env::new();
    let _cleanup = Cleanup(bed, &env);
    let (keys, reason) = bed.failing(&env);
    config(&env, &keys);
    let mut daemon = env.start_daemon(&[]);
    daemon.wait_log("vigil running", LONG);
    bed.before_failing_restart(&env);
    let out = restart(&env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("restart FAILED"), "{stdout}");
    assert!(stdout.contains(&reason), "expected {reason:?} in {stdout}");
    let history = env.history();
    assert_eq!(history[0]["outcome"], "failed");
    assert!(
        history[0]["outcome_detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&reason)
    );
    daemon.signal(Signal::TERM);
    daemon.wait_exit(LONG);
}

/// A pid file's process, if it runs.
fn pid_in(path: &std::path::Path) -> Option<String> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    alive(pid).then(|| pid.to_string())
}

// ---------------------------------------------------------------------------------------
// command: a script that replaces the background service and records its pid, like the
// seeds' `managed_start.sh restart`

struct CommandBed;

impl CommandBed {
    /// The service's first instance runs before Vigil starts (Vigil only restarts it).
    fn keys(env: &Env, restart_tail: &str, timeout: &str) -> String {
        let pidf = env.path("svc.pid").display().to_string();
        let sleeper = helper_bin("vigil-sleeper").display().to_string();
        let started = command("sh")
            .arg("-c")
            .arg(format!("setsid {sleeper} >/dev/null & echo $! > {pidf}"))
            .status()
            .unwrap();
        assert!(started.success());
        format!(
            r#"driver = "command"
restart_command = ["sh", "-c", "kill $(cat {pidf}); setsid {sleeper} >/dev/null & echo $! > {pidf}; {restart_tail}"]
status_command = ["sh", "-c", "kill -0 $(cat {pidf})"]
command_timeout = "{timeout}"
"#
        )
    }
}

impl Bed for CommandBed {
    fn healthy(&self, env: &Env) -> String {
        Self::keys(env, "true", "10s")
    }
    fn hanging(&self, env: &Env) -> String {
        // The new instance starts, then the command hangs: killed at command_timeout.
        Self::keys(env, "sleep 600", "1s")
    }
    fn failing(&self, env: &Env) -> (String, String) {
        (
            Self::keys(env, "echo 'port 8080 busy' >&2; exit 3", "10s"),
            "exit code 3".to_owned(),
        )
    }
    fn instance(&self, env: &Env) -> Option<String> {
        pid_in(&env.path("svc.pid"))
    }
    fn hang_outcome(&self) -> (i32, &'static str) {
        (1, "timed out after 1s (process group killed)")
    }
    fn cleanup(&self, env: &Env) {
        if let Some(pid) = pid_in(&env.path("svc.pid")) {
            signal(pid.parse().unwrap(), Signal::KILL);
        }
    }
}

#[test]
fn command_driver_conforms() {
    conformance(&CommandBed);
}

// ---------------------------------------------------------------------------------------
// exec: Vigil's own supervised process

struct ExecBed;

impl ExecBed {
    fn status(env: &Env) -> serde_json::Value {
        let out = env.vigil(&["status", "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        doc["services"][0]["exec"].clone()
    }
}

impl Bed for ExecBed {
    fn healthy(&self, _env: &Env) -> String {
        format!(
            "driver = \"exec\"\ncommand = [{:?}]\nstop_timeout = \"2s\"\nrestart_delay = \"0\"\n",
            helper_bin("vigil-sleeper").display().to_string()
        )
    }
    fn hanging(&self, _env: &Env) -> String {
        // Ignores SIGTERM: the stop is cut by SIGKILL at stop_timeout.
        format!(
            "driver = \"exec\"\ncommand = [{:?}, \"--ignore-term\"]\nstop_timeout = \"1s\"\nrestart_delay = \"0\"\n",
            helper_bin("vigil-sleeper").display().to_string()
        )
    }
    fn failing(&self, env: &Env) -> (String, String) {
        // The program disappears after the first start (`before_failing_restart`): the
        // restart cannot spawn it.
        let program = env.path("service-binary");
        std::fs::copy(helper_bin("vigil-sleeper"), &program).unwrap();
        let keys = format!(
            "driver = \"exec\"\ncommand = [{:?}]\nstop_timeout = \"2s\"\nrestart = \"no\"\n",
            program.display().to_string()
        );
        (keys, "program not found".to_owned())
    }
    fn before_failing_restart(&self, env: &Env) {
        wait_until(LONG, "the first instance", || self.instance(env));
        std::fs::remove_file(env.path("service-binary")).unwrap();
    }
    fn instance(&self, env: &Env) -> Option<String> {
        let e = Self::status(env);
        (e["state"] == "running").then(|| e["pid"].as_u64().map(|p| p.to_string()))?
    }
}

#[test]
fn exec_driver_conforms() {
    conformance(&ExecBed);
}

// ---------------------------------------------------------------------------------------
// docker: a container on a real dockerd

mod docker_bed {
    use serde_json::json;

    use super::*;
    use support::docker::call;

    /// Containers created by this bed, force-removed on drop.
    pub struct DockerBed {
        pub names: std::sync::Mutex<Vec<String>>,
    }

    impl DockerBed {
        fn container(&self, cmd: &[&str]) -> String {
            let mut names = self.names.lock().unwrap();
            let name = format!("vigil-conf-{}-{}", std::process::id(), names.len());
            let spec = json!({
                "Image": "vigil-busybox:latest",
                "Cmd": cmd,
                "Labels": {"vigil-test": "1"},
                "HostConfig": {"NetworkMode": "none"},
            });
            let (status, body) = call(
                "POST",
                &format!("/containers/create?name={name}"),
                Some(spec),
            );
            assert_eq!(status, 201, "create: {body}");
            let (status, body) = call("POST", &format!("/containers/{name}/start"), None);
            assert_eq!(status, 204, "start: {body}");
            names.push(name.clone());
            name
        }
        fn keys(name: &str, stop_timeout: &str) -> String {
            format!(
                "driver = \"docker\"\ncontainer = \"{name}\"\nstop_timeout = \"{stop_timeout}\"\n"
            )
        }
    }

    impl Drop for DockerBed {
        fn drop(&mut self) {
            let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            for name in names.iter() {
                let _ = call("DELETE", &format!("/containers/{name}?force=1&v=1"), None);
            }
        }
    }

    impl Bed for DockerBed {
        fn healthy(&self, env: &Env) -> String {
            let name = self.container(&["sleep", "3600"]);
            std::fs::write(env.path("container"), &name).unwrap();
            Self::keys(&name, "1s")
        }
        fn hanging(&self, env: &Env) -> String {
            // PID 1 in a container ignores SIGTERM without a handler: Docker kills it at
            // the stop timeout.
            let name = self.container(&["sh", "-c", "trap '' TERM; sleep 3600 & wait"]);
            std::fs::write(env.path("container"), &name).unwrap();
            Self::keys(&name, "1s")
        }
        fn failing(&self, env: &Env) -> (String, String) {
            let name = format!("vigil-conf-missing-{}", std::process::id());
            std::fs::write(env.path("container"), &name).unwrap();
            (
                Self::keys(&name, "1s"),
                format!("no such container: {name}"),
            )
        }
        fn instance(&self, env: &Env) -> Option<String> {
            let name = std::fs::read_to_string(env.path("container")).ok()?;
            let (status, body) = call("GET", &format!("/containers/{name}/json"), None);
            (status == 200 && body["State"]["Running"] == true).then(|| {
                body["State"]["StartedAt"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
        }
    }
}

#[test]
fn docker_driver_conforms() {
    if std::env::var("VIGIL_TEST_DOCKER").as_deref() != Ok("1") {
        println!("skipped: set VIGIL_TEST_DOCKER=1 (and DOCKER_HOST, see bench/docker-up.sh)");
        return;
    }
    conformance(&docker_bed::DockerBed {
        names: std::sync::Mutex::default(),
    });
}

// ---------------------------------------------------------------------------------------
// systemd: units of systemd 252 in the nspawn test bed, over its system bus

mod systemd_bed {
    use vigil_checks::systemd::JobKind;

    use super::*;
    use support::systemd::{address, on_bus, run_job};

    pub struct SystemdBed;

    impl SystemdBed {
        fn keys(env: &Env, unit: String, job_timeout: &str) -> String {
            std::fs::write(env.path("unit"), &unit).unwrap();
            format!(
                "driver = \"systemd\"\nunit = \"{unit}\"\nbus_address = \"{}\"\njob_timeout = \"{job_timeout}\"\n",
                address()
            )
        }
    }

    impl Bed for SystemdBed {
        fn healthy(&self, env: &Env) -> String {
            let unit = format!("vigil-sleep@conf-{}.service", std::process::id());
            run_job(JobKind::Start, &unit);
            Self::keys(env, unit, "20s")
        }
        fn hanging(&self, env: &Env) -> String {
            // ExecStartPre sleeps 3 s: the restart job outlives job_timeout.
            let unit = "vigil-slow@3.service".to_owned();
            run_job(JobKind::Start, &unit);
            Self::keys(env, unit, "1s")
        }
        fn failing(&self, env: &Env) -> (String, String) {
            // No such unit: systemd refuses the job. (A Type=simple unit that crashes right
            // after its start is a job `done` to systemd: the health checks catch that.)
            let unit = format!("vigil-conf-missing-{}.service", std::process::id());
            (Self::keys(env, unit.clone(), "20s"), unit)
        }
        fn instance(&self, env: &Env) -> Option<String> {
            let unit = std::fs::read_to_string(env.path("unit")).ok()?;
            let state = on_bus(async |b| b.unit_state(&unit).await.ok())?;
            state
                .is_active()
                .then(|| state.active_enter.map(|t| t.as_millis().to_string()))?
        }
        fn hang_outcome(&self) -> (i32, &'static str) {
            (1, "job not finished after 1s")
        }
        fn cleanup(&self, env: &Env) {
            if let Ok(unit) = std::fs::read_to_string(env.path("unit")) {
                run_job(JobKind::Stop, &unit);
            }
        }
    }
}

#[test]
fn systemd_driver_conforms() {
    if std::env::var("VIGIL_TEST_SYSTEMD").as_deref() != Ok("1") {
        println!(
            "skipped: set VIGIL_TEST_SYSTEMD=1 and VIGIL_TEST_SYSTEMD_BUS (see bench/nspawn-up.sh)"
        );
        return;
    }
    conformance(&systemd_bed::SystemdBed);
}
