//! Vigil itself under a real systemd (issue 3, seed 004's two-level liveness): the unit
//! `vigil systemd-unit` prints is installed in the nspawn test bed's systemd 252 (never the
//! host's), systemd sees Vigil `active` through `READY=1`, and when Vigil is SIGSTOPped,
//! systemd's watchdog kills it and `Restart=on-failure` brings it back.
//!
//! Gated: runs only with `VIGIL_TEST_SYSTEMD=1` and `VIGIL_TEST_SYSTEMD_LEADER` (the
//! container's PID 1 as the host sees it; `bench/nspawn-up.sh`). The test drives the
//! container's systemd with `systemctl` run inside it (`nsenter`), as an operator would.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::time::Duration;

use support::*;

struct Container {
    leader: String,
}

impl Container {
    fn root(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/{}/root", self.leader))
    }

    /// Runs a command inside the container (all its namespaces).
    fn run(&self, args: &[&str]) -> std::process::Output {
        command("nsenter")
            .args(["-t", &self.leader, "-a"])
            .args(args)
            .output()
            .unwrap()
    }

    fn show(&self, unit: &str, property: &str) -> String {
        text(
            &self
                .run(&["systemctl", "show", "-P", property, unit])
                .stdout,
        )
        .trim()
        .to_owned()
    }
}

/// Removes what the test installed in the container, pass or fail.
struct Installed<'a> {
    container: &'a Container,
    unit: String,
    files: Vec<std::path::PathBuf>,
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let _ = self.container.run(&["systemctl", "stop", &self.unit]);
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        let _ = self.container.run(&["systemctl", "daemon-reload"]);
    }
}

#[test]
fn systemd_sees_vigil_ready_and_its_watchdog_restarts_a_stopped_vigil() {
    if std::env::var("VIGIL_TEST_SYSTEMD").as_deref() != Ok("1") {
        println!(
            "skipped: set VIGIL_TEST_SYSTEMD=1 and VIGIL_TEST_SYSTEMD_LEADER (see bench/nspawn-up.sh)"
        );
        return;
    }
    let container = Container {
        leader: std::env::var("VIGIL_TEST_SYSTEMD_LEADER").expect("VIGIL_TEST_SYSTEMD_LEADER"),
    };
    let id = format!("vigil-self-{}", std::process::id());
    let root = container.root();
    let bin_in = format!("/usr/local/bin/{id}");
    let conf_in = format!("/etc/{id}.toml");
    let unit = format!("{id}.service");
    let unit_path = root.join(format!("etc/systemd/system/{unit}"));
    let mut installed = Installed {
        container: &container,
        unit: unit.clone(),
        files: Vec::new(),
    };

    // Vigil's binary (the host's build: same Debian, same glibc) and a config inside.
    std::fs::copy(vigil_bin(), root.join(bin_in.trim_start_matches('/'))).unwrap();
    installed
        .files
        .push(root.join(bin_in.trim_start_matches('/')));
    std::fs::write(
        root.join(conf_in.trim_start_matches('/')),
        format!(
            "[vigil]\nstate_dir = \"/var/lib/{id}\"\n\n[services.demo]\ndriver = \"command\"\nrestart_command = [\"true\"]\n\n[services.demo.checks.ok]\nkind = \"exec\"\ncommand = [\"true\"]\nevery = \"500ms\"\n"
        ),
    )
    .unwrap();
    installed
        .files
        .push(root.join(conf_in.trim_start_matches('/')));

    // The unit exactly as `vigil systemd-unit` prints it, pointed at the container's paths
    // and with a short watchdog so the test is quick.
    let out = command(vigil_bin())
        .args(["systemd-unit", "-c", &conf_in])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let unit_text = text(&out.stdout)
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                format!("ExecStart={bin_in} run -c {conf_in}")
            } else if l.starts_with("WatchdogSec=") {
                "WatchdogSec=2s".to_owned()
            } else if l.starts_with("RestartSec=") {
                "RestartSec=200ms".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(unit_text.contains("Type=notify"));
    std::fs::write(&unit_path, unit_text + "\n").unwrap();
    installed.files.push(unit_path);
    let reload = container.run(&["systemctl", "daemon-reload"]);
    assert!(reload.status.success(), "{}", text(&reload.stderr));

    // `systemctl start` of a Type=notify unit returns once READY=1 arrived.
    let start = container.run(&["systemctl", "start", &unit]);
    assert!(
        start.status.success(),
        "start: {}{}",
        text(&start.stderr),
        text(
            &container
                .run(&["journalctl", "-u", &unit, "--no-pager", "-n", "20"])
                .stdout
        )
    );
    assert_eq!(container.show(&unit, "ActiveState"), "active");
    assert_eq!(container.show(&unit, "NRestarts"), "0");
    // STATUS= reaches systemd too.
    wait_until(
        Duration::from_secs(10),
        "Vigil's STATUS= in systemd",
        || {
            container
                .show(&unit, "StatusText")
                .contains("service(s)")
                .then_some(())
        },
    );
    let first = container.show(&unit, "MainPID");
    assert_ne!(first, "0");

    // Hang Vigil: no more WATCHDOG=1; systemd kills it (SIGABRT) and restarts it.
    let stop = container.run(&[
        "systemctl",
        "kill",
        "--kill-whom=main",
        "--signal=SIGSTOP",
        &unit,
    ]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let second = wait_until(
        Duration::from_secs(30),
        "systemd's watchdog to restart Vigil",
        || {
            let pid = container.show(&unit, "MainPID");
            (container.show(&unit, "NRestarts") == "1"
                && container.show(&unit, "ActiveState") == "active"
                && pid != first
                && pid != "0")
                .then_some(pid)
        },
    );
    assert_ne!(second, first);
    let journal = text(
        &container
            .run(&["journalctl", "-u", &unit, "--no-pager", "-o", "cat"])
            .stdout,
    );
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    drop(installed);
}
