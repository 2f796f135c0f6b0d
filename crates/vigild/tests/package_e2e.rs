//! The Debian package on a pristine systemd host, used as an operator would: the
//! container of `bench/pkg-up.sh` (Debian 12 booted with systemd 252, every boot
//! pristine) installs the .deb that `dist/build.sh deb` built, and the test then drives
//! it from inside with `systemctl`, `vigil`, `man`, bash completion, `runuser`, `apt`.
//!
//! One scenario, in order, because every step builds on the system the previous one left:
//! install (enabled, active through READY=1), an upgrade reloads without restarting,
//! `vigil status` as root without `-c`, a service added and `systemctl reload vigil`, a
//! failing check restarts its unit, man pages and completion, the control socket's group
//! (a member gets answers, others the reason, never a ledger of their own), an exec
//! service as a user only NSS knows (libnss-extrausers), a broken configuration fails the
//! unit once instead of looping, `apt remove` leaves no Vigil process, `apt purge`
//! removes the ledger.
//!
//! Gated: runs only with `VIGIL_TEST_PACKAGE=1`, `VIGIL_TEST_PACKAGE_LEADER` (the
//! container's PID 1 as the host sees it) and `VIGIL_TEST_PACKAGE_DEB` (the .deb).

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(30);

/// The package test bed's container.
struct Container {
    leader: String,
}

impl Container {
    /// A path inside the container, as the host reaches it.
    fn path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader)).join(inside.trim_start_matches('/'))
    }

    /// `sh -c SCRIPT` inside the container (all its namespaces), as root, with a clean
    /// environment.
    fn sh(&self, script: &str) -> Output {
        command("nsenter")
            .args(["-t", &self.leader, "-a", "/bin/sh", "-c", script])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// Like [`sh`](Self::sh), failing the test (with the unit's journal) unless it
    /// succeeds; its stdout.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed ({:?}):\n{}{}\n--- journal:\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr),
            self.journal()
        );
        text(&out.stdout)
    }

    fn journal(&self) -> String {
        text(
            &self
                .sh("journalctl -u vigil --no-pager -n 30 -o cat")
                .stdout,
        )
    }

    fn write(&self, inside: &str, contents: &str) {
        let path = self.path(inside);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{inside}: {e}"));
    }

    fn show(&self, unit: &str, property: &str) -> String {
        self.ok(&format!("systemctl show -P {property} {unit}"))
            .trim()
            .to_owned()
    }

    /// `vigil status --json` as root, without `-c`: the document.
    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok("vigil status --json")).unwrap()
    }
}

fn service<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

/// A unit inside the container for Vigil to look after: busybox's httpd on loopback,
/// serving `/health` from a file its ExecStartPre recreates on every start.
const DEMO_UNIT: &str = "[Unit]
Description=Vigil package test: a web server with a health file
[Service]
RuntimeDirectory=demo
RuntimeDirectoryPreserve=no
ExecStartPre=/bin/sh -c 'echo ok > /run/demo/health'
ExecStart=/bin/busybox httpd -f -p 127.0.0.1:18090 -h /run/demo
";

const DEMO_SERVICE: &str = r#"
[services.demo]
driver = "systemd"
unit = "demo.service"

[services.demo.guard]
cooldown = "0s"

[services.demo.checks.health]
kind = "http"
url = "http://127.0.0.1:18090/health"
every = "500ms"
timeout = "2s"
"#;

/// A user only NSS knows (libnss-extrausers stands in for LDAP/SSSD), in two groups only
/// NSS knows; `vigil-ops` also lists `alice`, a local user.
const EXTRAUSERS_PASSWD: &str =
    "ldapuser:x:5000:5000:LDAP-style user:/nonexistent:/usr/sbin/nologin\n";
const EXTRAUSERS_GROUP: &str =
    "ldapgroup:x:5000:\nvigil-ops:x:5001:alice,ldapuser\nldapextra:x:5002:ldapuser\n";

/// Tab completion of `vigil sta` through bash-completion's loader, as an interactive
/// shell does it.
const COMPLETE_STA: &str = r#"
. /usr/share/bash-completion/bash_completion
_completion_loader vigil
func=$(complete -p vigil | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
COMP_WORDS=(vigil sta); COMP_CWORD=1; COMP_LINE="vigil sta"; COMP_POINT=${#COMP_LINE}
"$func" vigil sta vigil
printf '%s\n' "${COMPREPLY[@]}"
"#;

#[test]
fn the_package_installs_runs_and_goes_away_like_a_debian_service() {
    if std::env::var("VIGIL_TEST_PACKAGE").as_deref() != Ok("1") {
        println!(
            "skipped: set VIGIL_TEST_PACKAGE=1, VIGIL_TEST_PACKAGE_LEADER (bench/pkg-up.sh) and VIGIL_TEST_PACKAGE_DEB (dist/build.sh deb)"
        );
        return;
    }
    let ct = Container {
        leader: std::env::var("VIGIL_TEST_PACKAGE_LEADER").expect("VIGIL_TEST_PACKAGE_LEADER"),
    };
    let deb =
        PathBuf::from(std::env::var("VIGIL_TEST_PACKAGE_DEB").expect("VIGIL_TEST_PACKAGE_DEB"));
    std::fs::copy(&deb, ct.path("/var/tmp/vigil.deb")).unwrap();
    assert_eq!(
        ct.sh("test -e /usr/bin/vigil").status.code(),
        Some(1),
        "the test bed is not pristine (it already has vigil): bench/pkg-down.sh && bench/pkg-up.sh"
    );

    // -- Install (offline: dpkg, then apt for anything missing). Enabled, started, and
    // active only once Vigil sent READY=1 (Type=notify).
    ct.ok("dpkg -i /var/tmp/vigil.deb || apt-get -f install -y --no-download");
    assert_eq!(ct.ok("systemctl is-enabled vigil").trim(), "enabled");
    assert_eq!(ct.ok("systemctl is-active vigil").trim(), "active");
    assert!(ct.show("vigil", "StatusText").contains("service(s)"));
    assert_eq!(
        ct.ok("readlink -f \"$(which vigil)\"").trim(),
        "/usr/bin/vigil"
    );
    assert!(
        ct.ok("dpkg-query -W -f '${Conffiles}' vigil")
            .contains("/etc/vigil/vigil.toml")
    );
    let unit = ct.ok("systemctl cat vigil");
    assert!(unit.contains("ExecStart=/usr/bin/vigil run\n"), "{unit}");
    // The same unit `vigil systemd-unit` prints for the installed binary.
    assert_eq!(
        ct.ok("vigil systemd-unit"),
        ct.ok("cat /lib/systemd/system/vigil.service")
    );
    let socket = ct.ok("stat -c '%a %U:%G %F' /run/vigil /run/vigil/vigil.sock");
    assert_eq!(socket, "755 root:root directory\n600 root:root socket\n");

    // -- An upgrade (the same package again) reloads the daemon instead of restarting it:
    // the services it supervises keep running.
    let pid = ct.show("vigil", "MainPID");
    ct.ok("dpkg -i /var/tmp/vigil.deb");
    assert_eq!(
        ct.show("vigil", "MainPID"),
        pid,
        "the upgrade restarted vigil"
    );
    wait_until(LONG, "the upgrade's reload in the journal", || {
        ct.journal().contains("Reloading").then_some(())
    });

    // -- As root, without -c: the daemon answers (nothing configured yet).
    let status = ct.status();
    assert_eq!(
        status["services"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );

    // -- A service added in conf.d, applied with `systemctl reload vigil`.
    ct.write("/etc/systemd/system/demo.service", DEMO_UNIT);
    ct.ok("systemctl daemon-reload && systemctl start demo");
    ct.write("/etc/vigil/conf.d/demo.toml", DEMO_SERVICE);
    ct.ok("vigil config check");
    ct.ok("systemctl reload vigil");
    wait_until(LONG, "`vigil status` to show demo passing", || {
        let status = ct.status();
        (service(&status, "demo")?["checks"][0]["status"] == "passing").then_some(())
    });

    // -- A failing check restarts the unit inside the container (the health file goes,
    // httpd answers 404, Vigil restarts demo.service, ExecStartPre brings the file back).
    let before = ct.show("demo", "InvocationID");
    ct.ok("rm /run/demo/health");
    wait_until(LONG, "Vigil to restart demo.service", || {
        let now = ct.show("demo", "InvocationID");
        (now != before && ct.show("demo", "ActiveState") == "active").then_some(())
    });
    let history: serde_json::Value =
        serde_json::from_str(&ct.ok("vigil history demo --json")).unwrap();
    let restarted = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["source"] == "health" && e["outcome"] == "ok");
    assert!(restarted, "no successful health restart in {history}");

    // -- The man pages and bash completion.
    // LC_ALL=C: plain ASCII hyphens in the rendered page.
    let man = ct.ok("LC_ALL=C MANWIDTH=100 man -P cat vigil 2>&1");
    assert!(man.contains("vigil-status(1)"), "{man}");
    let man = ct.ok("LC_ALL=C man -P cat vigil-status 2>&1");
    assert!(man.contains("--json"), "{man}");
    ct.write("/var/tmp/complete-sta.bash", COMPLETE_STA);
    let completions = ct.ok("bash /var/tmp/complete-sta.bash");
    let mut offered: Vec<&str> = completions.split_whitespace().collect();
    offered.sort_unstable();
    assert_eq!(offered, ["start", "status"], "{completions}");

    // -- The control socket's group, and users only NSS knows.
    ct.write(
        "/etc/nsswitch.conf",
        &ct.ok("cat /etc/nsswitch.conf")
            .replace("passwd:         files", "passwd:         files extrausers")
            .replace("group:          files", "group:          files extrausers"),
    );
    ct.write("/var/lib/extrausers/passwd", EXTRAUSERS_PASSWD);
    ct.write("/var/lib/extrausers/group", EXTRAUSERS_GROUP);
    ct.write("/var/lib/extrausers/shadow", "");
    ct.ok("useradd -m alice && useradd -m bob");
    assert_eq!(
        ct.ok("getent group vigil-ops").trim(),
        "vigil-ops:x:5001:alice,ldapuser"
    );
    assert_eq!(
        ct.sh("grep -c vigil-ops /etc/group").status.code(),
        Some(1),
        "vigil-ops must be known through NSS only"
    );
    ct.ok(r#"sed -i 's/^\[vigil\]$/[vigil]\ncontrol_socket_group = "vigil-ops"/' /etc/vigil/vigil.toml"#);
    // The socket's group takes effect on a restart (a reload says so).
    ct.ok("systemctl restart vigil");
    let socket = ct.ok("stat -c '%a %U:%G' /run/vigil/vigil.sock");
    assert_eq!(socket.trim(), "660 root:vigil-ops");
    let out = ct.ok("runuser -u alice -- vigil status");
    assert!(out.contains("demo"), "{out}");
    let out = ct.sh("runuser -u bob -- vigil status");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "vigil: cannot reach the daemon at /run/vigil/vigil.sock: permission denied (you are not in group `vigil-ops`, the socket's group)"
    );
    // Without a daemon, a user never silently gets an empty ledger of their own.
    ct.ok("systemctl stop vigil");
    let out = ct.sh("runuser -u bob -- vigil status");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "no daemon answers at /run/vigil/vigil.sock, and /etc/vigil/vigil.toml is the system's configuration: its ledger is root's, not yours"
        ),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        ct.sh("test -e /home/bob/.local/state/vigil").status.code(),
        Some(1)
    );
    ct.ok("systemctl start vigil");

    // An exec service running as the NSS-only user: its uid, primary group and
    // supplementary groups all come from NSS.
    let mut config = ct.ok("cat /etc/vigil/vigil.toml");
    config.push_str(
        r#"
[services.ldapjob]
driver = "exec"
command = ["/bin/sh", "-c", "id > /var/tmp/ldapjob.id; exec sleep 600"]
user = "ldapuser"
"#,
    );
    ct.write("/etc/vigil/vigil.toml", &config);
    ct.ok("systemctl reload vigil");
    let id = wait_until(LONG, "the exec service to run as ldapuser", || {
        let id = text(&ct.sh("cat /var/tmp/ldapjob.id").stdout);
        id.ends_with('\n').then_some(id)
    });
    assert_eq!(
        id.trim(),
        "uid=5000(ldapuser) gid=5000(ldapgroup) groups=5000(ldapgroup),5001(vigil-ops),5002(ldapextra)"
    );

    // -- A broken configuration: exit status 2, and systemd does not retry it every 2 s.
    ct.ok("cp /etc/vigil/vigil.toml /var/tmp/vigil.toml.good");
    ct.ok("echo '[services.broken]' >> /etc/vigil/vigil.toml");
    assert_eq!(ct.sh("vigil config check").status.code(), Some(2));
    assert_eq!(ct.sh("systemctl restart vigil").status.code(), Some(1));
    std::thread::sleep(Duration::from_secs(5)); // RestartSec=2s: a loop would have restarted twice.
    assert_eq!(ct.show("vigil", "ActiveState"), "failed");
    assert_eq!(ct.show("vigil", "ExecMainStatus"), "2");
    assert_eq!(ct.show("vigil", "NRestarts"), "0");
    ct.ok("cp /var/tmp/vigil.toml.good /etc/vigil/vigil.toml && systemctl restart vigil");
    assert_eq!(ct.ok("systemctl is-active vigil").trim(), "active");
    wait_until(LONG, "the exec service to run again", || {
        ct.sh("pgrep -u ldapuser -x sleep")
            .status
            .success()
            .then_some(())
    });

    // -- `apt remove`: no Vigil process is left, nor the services it supervised; the
    // configuration and the ledger stay.
    ct.ok("apt-get remove -y vigil");
    assert_eq!(ct.sh("pgrep -x vigil").status.code(), Some(1));
    assert_eq!(ct.sh("pgrep -u ldapuser").status.code(), Some(1));
    ct.ok("test -f /var/lib/vigil/ledger.db && test -f /etc/vigil/vigil.toml");
    // -- `apt purge`: the ledger and the configuration go too.
    ct.ok("apt-get purge -y vigil");
    assert_eq!(ct.sh("test -e /var/lib/vigil").status.code(), Some(1));
    assert_eq!(
        ct.sh("test -e /etc/vigil/vigil.toml").status.code(),
        Some(1)
    );
    assert_eq!(ct.sh("test -e /usr/bin/vigil").status.code(), Some(1));
}
