//! The fleet end to end (issue 16): several `vigil run` daemons, each its own host
//! (`[fleet] host`, its own `state_dir`, its own network namespace joined to the root one
//! by a veth link the test creates and removes), sharing one real PostgreSQL 15 that the
//! test starts in a temporary directory on a free port, listening on the links' root
//! ends. (The TLS test runs its hosts on loopback: its certificate names 127.0.0.1.)
//!
//! Gated: these run only with `VIGIL_TEST_SERVERS=1` (Debian's postgresql-15 package,
//! root for `ip netns`); otherwise each prints "skipped" and returns.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use support::{Daemon, Env, command, helper_bin, instant_now, recorder_runs, text, wait_until};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn enabled() -> bool {
    if std::env::var_os("VIGIL_TEST_SERVERS").is_some_and(|v| v == "1") {
        true
    } else {
        eprintln!("skipped: set VIGIL_TEST_SERVERS=1");
        false
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The `postgres` account's uid and gid.
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("a postgres user");
    let fields: Vec<&str> = line.split(':').collect();
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

/// Our own PostgreSQL 15 cluster: killed and removed with the test.
struct Pg {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    settings: Vec<String>,
    password: Option<String>,
}

impl Pg {
    /// With extra `-c` settings, given as `name=value` (`{dir}` is the cluster's dir).
    fn start_with(settings: &[&str]) -> Pg {
        Pg::start_auth(settings, None)
    }

    /// With SCRAM password authentication for `postgres` when `password` is given.
    fn start_auth(settings: &[&str], password: Option<&str>) -> Pg {
        let (uid, gid) = postgres_ids();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let mut initdb = command(format!("{PG_BIN}/initdb"));
        initdb
            .uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-U", "postgres", "--no-sync"]);
        match password {
            None => initdb.args(["-A", "trust"]),
            Some(pw) => {
                let file = dir.path().join("pwfile");
                std::fs::write(&file, format!("{pw}\n")).unwrap();
                std::os::unix::fs::chown(&file, Some(uid), Some(gid)).unwrap();
                initdb
                    .args(["-A", "scram-sha-256"])
                    .arg(format!("--pwfile={}", file.display()))
            }
        };
        let status = initdb
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb");
        // Hosts in network namespaces connect from their veth addresses.
        let hba = dir.path().join("data/pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str(if password.is_some() {
            "host all all 10.0.0.0/8 scram-sha-256\n"
        } else {
            "host all all 10.0.0.0/8 trust\n"
        });
        std::fs::write(&hba, rules).unwrap();
        let mut pg = Pg {
            dir,
            port: free_port(),
            child: None,
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
            password: password.map(str::to_owned),
        };
        pg.resume();
        pg
    }

    /// Starts (again) the server on the same data and port.
    fn resume(&mut self) {
        let (uid, gid) = postgres_ids();
        let mut cmd = command(format!("{PG_BIN}/postgres"));
        cmd.uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        // Later settings override the defaults above.
        for s in &self.settings {
            let s = s.replace("{dir}", &self.dir.path().display().to_string());
            cmd.args(["-c", &s]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_until(
            Duration::from_secs(30),
            "postgres to accept queries",
            || self.try_query("SELECT 1").filter(|s| s == "1"),
        );
    }

    /// Fast shutdown (SIGINT), waited for.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            support::signal(child.id(), rustix::process::Signal::INT);
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn try_query(&self, sql: &str) -> Option<String> {
        let mut psql = command(format!("{PG_BIN}/psql"));
        if let Some(pw) = &self.password {
            psql.env("PGPASSWORD", pw);
        }
        let out = psql
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-Atqc", sql])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| text(&out.stdout).trim().to_owned())
    }

    fn query(&self, sql: &str) -> String {
        self.try_query(sql)
            .unwrap_or_else(|| panic!("query failed: {sql}"))
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One host: its own scratch dir, config and daemon.
struct Host {
    name: String,
    env: Env,
    healthy: PathBuf,
    log: PathBuf,
    daemon: Option<Daemon>,
}

#[derive(Clone)]
struct HostOpts<'a> {
    hold_ms: u64,
    lease_ttl: &'a str,
    on_unreachable: &'a str,
    key: &'a str,
    /// More `[fleet]` lines.
    fleet_extra: String,
    /// Run the daemon in this network namespace, reaching PostgreSQL at this address.
    netns: Option<(String, String)>,
    /// The local guard's cooldown.
    cooldown: &'a str,
}

impl Default for HostOpts<'_> {
    fn default() -> Self {
        HostOpts {
            hold_ms: 1500,
            lease_ttl: "6s",
            on_unreachable: "local",
            key: "max_concurrent = 1",
            fleet_extra: String::new(),
            netns: None,
            cooldown: "3s",
        }
    }
}

impl Host {
    fn new(pg: &Pg, name: &str, opts: &HostOpts<'_>) -> Host {
        let env = Env::new();
        let healthy = env.path("healthy");
        let log = env.path("restarts.log");
        std::fs::write(&healthy, "").unwrap();
        let recorder = helper_bin("vigil-restart-recorder");
        let script = format!(
            "{} --log {} --hold-ms {} && touch {}",
            recorder.display(),
            log.display(),
            opts.hold_ms,
            healthy.display()
        );
        env.write_config(&format!(
            r#"
[defaults.guard]
cooldown = "{cooldown}"
max_restarts = 20
window = "1h"

[services.api]
driver = "command"
restart_command = ["/bin/sh", "-c", {script:?}]
command_timeout = "60s"
fleet_key = "api"

[services.api.checks.health]
kind = "exec"
command = ["test", "-f", {healthy:?}]
every = "200ms"
timeout = "5s"

[services.api.checks.beat]
kind = "exec"
command = ["/bin/sh", "-c", "date +%s%N >> {beats}"]
every = "1s"
timeout = "5s"

[fleet]
postgres = "{url}"
host = "{name}"
lease_ttl = "{ttl}"
timeout = "1s"
on_unreachable = "{unreachable}"
{extra}

[fleet.keys.api]
{key}
"#,
            healthy = healthy.display().to_string(),
            url = match &opts.netns {
                Some((_, addr)) => format!("postgres://postgres@{addr}:{}/postgres", pg.port),
                None => pg.url(),
            },
            ttl = opts.lease_ttl,
            unreachable = opts.on_unreachable,
            key = opts.key,
            extra = opts.fleet_extra,
            cooldown = opts.cooldown,
            beats = env.path("beats").display(),
        ));
        let daemon = match &opts.netns {
            None => env.start_daemon(&[]),
            Some((ns, _)) => {
                let log = env.path("daemon.log");
                let child = command("ip")
                    .args(["netns", "exec", ns])
                    .arg(support::vigil_bin())
                    .arg("run")
                    .arg("-c")
                    .arg(env.config_path())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .unwrap();
                Daemon { child, log }
            }
        };
        Host {
            name: name.to_owned(),
            env,
            healthy,
            log,
            daemon: Some(daemon),
        }
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    fn fail(&self) {
        let _ = std::fs::remove_file(&self.healthy);
    }

    /// The `beat` check's runs, in unix ns.
    fn beats(&self) -> Vec<u128> {
        std::fs::read_to_string(self.env.path("beats"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn runs(&self) -> Vec<(u128, u128)> {
        recorder_runs(&self.log)
    }

    fn starts(&self) -> usize {
        support::recorder_lines(&self.log)
            .iter()
            .filter(|(k, _, _)| k == "start")
            .count()
    }
}

/// Every host's service reports passing in the fleet's tables.
fn wait_all_passing(pg: &Pg, hosts: &[&Host]) {
    let n = hosts.len().to_string();
    wait_until(
        Duration::from_secs(30),
        "every host to publish passing",
        || {
            pg.try_query("SELECT count(*) FROM vigil_fleet_services WHERE status = 'passing'")
                .filter(|c| *c == n)
        },
    );
}

fn all_logs(hosts: &[&Host]) -> String {
    hosts
        .iter()
        .map(|h| format!("--- {}\n{}", h.name, h.daemon().log_text()))
        .collect()
}

/// Three replicas fail at once: each is restarted, one at a time (the restart commands'
/// start/end stamps never overlap across hosts), and the deferred ones say why.
#[test]
fn max_concurrent_one_restarts_every_replica_one_at_a_time() {
    if !enabled() {
        return;
    }
    let names = ["host-a", "host-b", "host-c"];
    let (links, pg) = netns_fleet(1, &names);
    let hosts: Vec<Host> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Host::new(&pg, n, &in_ns(&links, i, HostOpts::default())))
        .collect();
    let refs: Vec<&Host> = hosts.iter().collect();
    wait_all_passing(&pg, &refs);
    for h in &hosts {
        h.fail();
    }
    wait_until(Duration::from_secs(40), "three restarts", || {
        (hosts.iter().map(|h| h.runs().len()).sum::<usize>() >= 3).then_some(())
    });
    let mut runs: Vec<(u128, u128, &str)> = hosts
        .iter()
        .flat_map(|h| h.runs().into_iter().map(|(s, e)| (s, e, h.name.as_str())))
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 3, "{runs:?}\n{}", all_logs(&refs));
    for pair in runs.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "restarts overlap across hosts: {pair:?}"
        );
        // The next host goes as soon as the lease is released (its check asks every
        // 200 ms), not when the lease would have expired (6 s).
        let gap_ms = (pair[1].0 - pair[0].1) / 1_000_000;
        assert!(
            gap_ms < 3_000,
            "the next restart waited {gap_ms} ms: {pair:?}"
        );
    }
    for h in &hosts {
        assert_eq!(
            h.runs().len(),
            1,
            "{} restarted once\n{}",
            h.name,
            all_logs(&refs)
        );
    }
    let logs = all_logs(&refs);
    assert!(
        logs.contains("Restart SKIPPED: fleet: 1/1 restarting on host-"),
        "{logs}"
    );
    assert!(
        logs.contains("fleet: lease on api, 1/1 restarting"),
        "{logs}"
    );
    // The refusal is a verdict like the others, in the local ledger.
    let skipped = hosts
        .iter()
        .flat_map(|h| h.env.history())
        .filter(|e| e["reason"] == "fleet")
        .count();
    assert!(skipped >= 2, "two hosts waited at least once");
    // Every lease was released.
    assert_eq!(
        pg.query("SELECT count(*) FROM vigil_fleet_leases WHERE released_at IS NULL"),
        "0"
    );
    assert_eq!(
        pg.query("SELECT count(*) FROM vigil_fleet_leases WHERE outcome = 'ok'"),
        "3"
    );
    // The fleet view, on any host: the CLI and the control socket.
    let sock = hosts[0].env.state_dir().join("vigil.sock");
    let out = command("curl")
        .args(["-sf", "--unix-socket"])
        .arg(&sock)
        .arg("http://vigil/v1/fleet/status")
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["services"].as_array().unwrap().len(), 3, "{doc}");
    wait_until(
        Duration::from_secs(10),
        "every host's restart in the fleet history",
        || {
            let out = hosts[2].env.vigil(&["fleet", "history", "--json"]);
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let done: std::collections::BTreeSet<String> = doc["entries"]
                .as_array()?
                .iter()
                .filter(|e| e["verdict"] == "allowed" && e["outcome"] == "ok")
                .filter_map(|e| e["host"].as_str().map(str::to_owned))
                .collect();
            (done.len() == 3).then_some(())
        },
    );
    let out = hosts[1].env.vigil(&["fleet", "status"]);
    let table = text(&out.stdout);
    assert!(
        table.contains("host-a") && table.contains("host-c"),
        "{table}"
    );
}

/// The host holding the lease is SIGKILLed mid-restart: the other host's restart goes
/// after `lease_ttl` (not never), and the dead host is shown as lost.
#[test]
fn a_killed_lease_holder_blocks_the_fleet_for_at_most_lease_ttl() {
    if !enabled() {
        return;
    }
    let names = ["host-a", "host-b"];
    let (links, pg) = netns_fleet(2, &names);
    let opts = HostOpts {
        hold_ms: 60_000,
        lease_ttl: "3s",
        ..HostOpts::default()
    };
    let mut hosts: Vec<Host> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Host::new(&pg, n, &in_ns(&links, i, opts.clone())))
        .collect();
    {
        let refs: Vec<&Host> = hosts.iter().collect();
        wait_all_passing(&pg, &refs);
    }
    for h in &hosts {
        h.fail();
    }
    let holder = wait_until(Duration::from_secs(20), "one restart to start", || {
        hosts.iter().position(|h| h.starts() == 1)
    });
    let other = 1 - holder;
    // Only one lease: the other host waits.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hosts[other].starts(), 0);
    let recorder_pid = support::recorder_lines(&hosts[holder].log)[0].1;
    let mut dead = hosts[holder].daemon.take().unwrap();
    dead.signal(rustix::process::Signal::KILL);
    dead.wait_exit(Duration::from_secs(5)).unwrap();
    let killed_at = instant_now();
    // The restart command it ran (ours, through the shell it spawned) goes too.
    if support::alive(recorder_pid) {
        support::signal(recorder_pid, rustix::process::Signal::KILL);
    }
    wait_until(
        Duration::from_secs(15),
        "the other host's restart after lease_ttl",
        || (hosts[other].starts() == 1).then_some(()),
    );
    let waited = killed_at.elapsed();
    assert!(
        waited <= Duration::from_secs(3 + 3),
        "waited {waited:?}, lease_ttl is 3s"
    );
    let log = hosts[other].daemon().log_text();
    assert!(
        log.contains(&format!(
            "Restart SKIPPED: fleet: 1/1 restarting on {}",
            hosts[holder].name
        )),
        "{log}"
    );
    // Not seen for 3 × lease_ttl: lost.
    let dead_name = hosts[holder].name.clone();
    wait_until(
        Duration::from_secs(20),
        "the dead host shown as lost",
        || {
            let out = hosts[other].env.vigil(&["fleet", "status", "--json"]);
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            doc["services"]
                .as_array()?
                .iter()
                .any(|s| s["host"] == dead_name.as_str() && s["lost"] == true)
                .then_some(())
        },
    );
    drop(dead);
}

/// PostgreSQL stopped while checks fail: with `local` the restart goes and says so;
/// with `deny` it is skipped and says so; once each per outage the events; when the
/// database is back the deferred restart goes and the history is published once.
#[test]
fn postgres_down_local_proceeds_deny_skips_and_history_catches_up_once() {
    if !enabled() {
        return;
    }
    let (links, mut pg) = netns_fleet(3, &["host-local", "host-deny"]);
    let local = Host::new(&pg, "host-local", &in_ns(&links, 0, HostOpts::default()));
    let deny = Host::new(
        &pg,
        "host-deny",
        &in_ns(
            &links,
            1,
            HostOpts {
                on_unreachable: "deny",
                ..HostOpts::default()
            },
        ),
    );
    wait_all_passing(&pg, &[&local, &deny]);
    pg.stop();
    let stopped_at = instant_now();
    local.fail();
    deny.fail();
    wait_until(Duration::from_secs(20), "the local host's restart", || {
        (local.runs().len() == 1).then_some(())
    });
    let log = deny.daemon().wait_log(
        "Restart SKIPPED: fleet unreachable for key api",
        Duration::from_secs(10),
    );
    assert!(log.contains("on_unreachable = deny"), "{log}");
    let log = local.daemon().log_text();
    assert!(log.contains("the local guard alone decided"), "{log}");
    // Checks keep failing on the deny host: still one unreachable event per host.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(deny.starts(), 0);
    for h in [&local, &deny] {
        let log = h.daemon().log_text();
        assert_eq!(
            log.matches("fleet unreachable: ").count(),
            1,
            "{}: {log}",
            h.name
        );
    }
    // PostgreSQL stays away for 20 s while the deny host's check keeps failing.
    while stopped_at.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(deny.starts(), 0);
    pg.resume();
    deny.daemon()
        .wait_log("fleet recovered", Duration::from_secs(20));
    // A check at every = "1s" never missed a beat by more than `timeout` (1s) meanwhile.
    for h in [&local, &deny] {
        let beats = h.beats();
        assert!(beats.len() >= 5, "{}: {beats:?}", h.name);
        let worst = beats.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            worst <= 2_000_000_000,
            "{}: a 1s check waited {} ms between runs",
            h.name,
            worst / 1_000_000
        );
    }
    wait_until(Duration::from_secs(20), "the deny host's restart", || {
        (deny.runs().len() == 1).then_some(())
    });
    // Every local history row is in the fleet's history, exactly once.
    for h in [&local, &deny] {
        let local_rows = h.env.history().len();
        wait_until(Duration::from_secs(20), "the history published", || {
            let n: usize = pg
                .query(&format!(
                    "SELECT count(*) FROM vigil_fleet_history WHERE host = '{}'",
                    h.name
                ))
                .parse()
                .ok()?;
            (n >= local_rows).then_some(())
        });
    }
    assert_eq!(
        pg.query(
            "SELECT count(*) FROM (SELECT host, local_id FROM vigil_fleet_history
             GROUP BY host, local_id HAVING count(*) > 1) d"
        ),
        "0"
    );
}

/// `min_healthy = 2` of three: with two replicas failing neither restarts by itself;
/// `vigil restart --force` still works and is recorded.
#[test]
fn min_healthy_holds_automatic_restarts_but_not_forced_ones() {
    if !enabled() {
        return;
    }
    let names = ["host-a", "host-b", "host-c"];
    let (links, pg) = netns_fleet(4, &names);
    let opts = HostOpts {
        key: "max_concurrent = 3\nmin_healthy = 2",
        ..HostOpts::default()
    };
    let hosts: Vec<Host> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Host::new(&pg, n, &in_ns(&links, i, opts.clone())))
        .collect();
    let refs: Vec<&Host> = hosts.iter().collect();
    wait_all_passing(&pg, &refs);
    hosts[0].fail();
    hosts[1].fail();
    hosts[0]
        .daemon()
        .wait_log("of key api passing, need 2", Duration::from_secs(20));
    hosts[1]
        .daemon()
        .wait_log("of key api passing, need 2", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        hosts[0].starts() + hosts[1].starts(),
        0,
        "{}",
        all_logs(&refs)
    );
    let out = hosts[0].env.vigil(&["restart", "--force", "api"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(hosts[0].runs().len(), 1);
    let forced = hosts[0]
        .env
        .history()
        .into_iter()
        .filter(|e| e["verdict"] == "allowed" && e["forced"] == true)
        .count();
    assert_eq!(forced, 1);
    let _ = Path::new("");
}

/// `openssl` with `args`, in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = command("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certs(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=vigil-test-ca",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// TLS to PostgreSQL with `ca_file`: the connection is encrypted (pg_stat_ssl says so);
/// a server whose certificate another CA signed is refused, and the daemon says why.
#[test]
fn tls_with_a_ca_file_is_verified() {
    if !enabled() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path(), "ca");
    // A second, unrelated CA.
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path(), "other");
    let (uid, gid) = postgres_ids();
    let pgssl = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(pgssl.path(), Some(uid), Some(gid)).unwrap();
    for f in ["server.crt", "server.key"] {
        let to = pgssl.path().join(f);
        std::fs::copy(certs.path().join(f), &to).unwrap();
        std::os::unix::fs::chown(&to, Some(uid), Some(gid)).unwrap();
    }
    let ssl_cert = format!(
        "ssl_cert_file={}",
        pgssl.path().join("server.crt").display()
    );
    let ssl_key = format!("ssl_key_file={}", pgssl.path().join("server.key").display());
    let pg = Pg::start_with(&["ssl=on", &ssl_cert, &ssl_key]);
    let good = Host::new(
        &pg,
        "host-tls",
        &HostOpts {
            fleet_extra: format!(
                "ca_file = {:?}",
                certs.path().join("ca.pem").display().to_string()
            ),
            ..HostOpts::default()
        },
    );
    let bad = Host::new(
        &pg,
        "host-wrong-ca",
        &HostOpts {
            fleet_extra: format!(
                "ca_file = {:?}",
                other.path().join("other.pem").display().to_string()
            ),
            ..HostOpts::default()
        },
    );
    wait_all_passing(&pg, &[&good]);
    assert_eq!(
        pg.query(
            "SELECT count(*) > 0 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'vigil' AND s.ssl"
        ),
        "t"
    );
    let log = bad
        .daemon()
        .wait_log("fleet unreachable: ", Duration::from_secs(20));
    assert!(
        log.contains("certificate") || log.contains("issuer"),
        "{log}"
    );
    assert_eq!(
        pg.query("SELECT count(*) FROM vigil_fleet_hosts WHERE host = 'host-wrong-ca'"),
        "0"
    );
}

fn ip(args: &[&str]) {
    let out = command("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        text(&out.stderr)
    );
}

/// A network namespace joined to the root one by a veth pair; deleted on drop (which
/// removes the pair).
struct Link {
    ns: String,
    /// The root side's name and address (PostgreSQL listens there).
    host_if: String,
    host_addr: String,
}

impl Link {
    fn new(tag: &str, subnet: &str, i: u8) -> Link {
        let ns = format!("vf{}{tag}", std::process::id());
        let host_if = format!("vfh{}{tag}", std::process::id() % 100_000);
        let peer = format!("vfp{}{tag}", std::process::id() % 100_000);
        let (a, b) = (4 * i + 1, 4 * i + 2);
        let host_addr = format!("{subnet}.{a}");
        ip(&["netns", "add", &ns]);
        let link = Link {
            ns: ns.clone(),
            host_if: host_if.clone(),
            host_addr: host_addr.clone(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer, "netns", &ns,
        ]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{subnet}.{b}/30"),
            "dev",
            &peer,
        ]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "link", "set", &peer, "up"]);
        ip(&["link", "set", &host_if, "up"]);
        link
    }

    fn set(&self, up: bool) {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }]);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = command("ip").args(["link", "del", &self.host_if]).output();
        let _ = command("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// PostgreSQL and one network namespace per host, each joined to the root namespace by a
/// veth link that PostgreSQL listens on. `test` keeps tests running at once apart.
fn netns_fleet(test: u32, names: &[&str]) -> (Vec<Link>, Pg) {
    let pid = std::process::id();
    let subnet = format!("10.{}.{}", 200 + pid % 50, ((pid / 50) % 40) * 6 + test);
    let links: Vec<Link> = names
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let tag = format!("{test}{}", char::from(b'a' + u8::try_from(i).unwrap()));
            Link::new(&tag, &subnet, u8::try_from(i).unwrap())
        })
        .collect();
    let addrs: Vec<&str> = links.iter().map(|l| l.host_addr.as_str()).collect();
    let listen = format!("listen_addresses=127.0.0.1,{}", addrs.join(","));
    let pg = Pg::start_with(&[&listen]);
    (links, pg)
}

/// The options for host `i` of a [`netns_fleet`].
fn in_ns<'a>(links: &[Link], i: usize, opts: HostOpts<'a>) -> HostOpts<'a> {
    HostOpts {
        netns: Some((links[i].ns.clone(), links[i].host_addr.clone())),
        ..opts
    }
}

/// Two hosts, each in its own network namespace, reaching PostgreSQL over a veth link.
/// The lease holder's link is cut mid-restart: it loses its lease after `lease_ttl` and
/// the other host restarts then; when the link returns the cut-off host does not restart
/// its replica a second time for the same failure, and publishes what it recorded.
#[test]
fn a_partitioned_holder_loses_its_lease_after_lease_ttl_and_does_not_restart_twice() {
    if !enabled() {
        return;
    }
    let (links, pg) = netns_fleet(5, &["host-a", "host-b"]);
    let hosts: Vec<Host> = links
        .iter()
        .enumerate()
        .map(|(i, l)| {
            Host::new(
                &pg,
                ["host-a", "host-b"][i],
                &HostOpts {
                    hold_ms: 8000,
                    lease_ttl: "3s",
                    // Longer than the restart: a check run that failed while the restart
                    // ran asks again right after it (the local guard's business).
                    cooldown: "20s",
                    netns: Some((l.ns.clone(), l.host_addr.clone())),
                    ..HostOpts::default()
                },
            )
        })
        .collect();
    {
        let refs: Vec<&Host> = hosts.iter().collect();
        wait_all_passing(&pg, &refs);
    }
    // The daemons really are in their namespaces: PostgreSQL sees their veth addresses.
    assert_eq!(
        pg.query("SELECT count(DISTINCT client_addr) FROM pg_stat_activity WHERE application_name = 'vigil'"),
        "2"
    );
    for h in &hosts {
        h.fail();
    }
    let holder = wait_until(Duration::from_secs(20), "one restart to start", || {
        hosts.iter().position(|h| h.starts() == 1)
    });
    let other = 1 - holder;
    links[holder].set(false);
    let cut_at = instant_now();
    wait_until(
        Duration::from_secs(15),
        "the other host's restart once the lease expired",
        || (hosts[other].starts() == 1).then_some(()),
    );
    let waited = cut_at.elapsed();
    assert!(waited <= Duration::from_secs(3 + 3), "waited {waited:?}");
    hosts[holder]
        .daemon()
        .wait_log("fleet lease on api lost", Duration::from_secs(10));
    // Both restarts end; the link returns; nobody restarts again.
    wait_until(Duration::from_secs(30), "both restarts to end", || {
        (hosts[holder].runs().len() == 1 && hosts[other].runs().len() == 1).then_some(())
    });
    links[holder].set(true);
    hosts[holder]
        .daemon()
        .wait_log("fleet recovered", Duration::from_secs(20));
    let name = hosts[holder].name.clone();
    wait_until(
        Duration::from_secs(20),
        "the cut-off host's restart published",
        || {
            let n = pg.try_query(&format!(
                "SELECT count(*) FROM vigil_fleet_history WHERE host = '{name}' AND outcome = 'ok'"
            ))?;
            (n == "1").then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    for h in &hosts {
        assert_eq!(h.starts(), 1, "{} restarted once", h.name);
    }
}

/// An exec service's exit while another host holds the key's lease: the exit restart is
/// refused by the fleet, deferred (not dropped), and goes as soon as the lease is
/// released, not when it would have expired.
#[test]
fn an_exit_restart_refused_by_the_fleet_is_deferred_until_the_lease_is_released() {
    if !enabled() {
        return;
    }
    let (links, pg) = netns_fleet(6, &["host-a", "host-b"]);
    let a = Host::new(
        &pg,
        "host-a",
        &in_ns(
            &links,
            0,
            HostOpts {
                hold_ms: 4000,
                lease_ttl: "30s",
                cooldown: "20s",
                ..HostOpts::default()
            },
        ),
    );
    let env = Env::new();
    let spawns = env.path("spawns");
    let trigger = env.path("trigger");
    let script = format!(
        "date +%s%N >> {s}; while [ ! -f {t} ]; do sleep 0.05; done; rm -f {t}; exit 1",
        s = spawns.display(),
        t = trigger.display()
    );
    env.write_config(&format!(
        r#"
[defaults.guard]
cooldown = "0"
max_restarts = 20
window = "1h"

[services.api]
driver = "exec"
command = ["/bin/sh", "-c", {script:?}]
restart = "on-failure"
restart_delay = "0"
fleet_key = "api"

[fleet]
postgres = "postgres://postgres@{addr}:{port}/postgres"
host = "host-b"
lease_ttl = "30s"
timeout = "1s"

[fleet.keys.api]
max_concurrent = 1
"#,
        addr = links[1].host_addr,
        port = pg.port,
    ));
    let log = env.path("daemon.log");
    let child = command("ip")
        .args(["netns", "exec", &links[1].ns])
        .arg(support::vigil_bin())
        .arg("run")
        .arg("-c")
        .arg(env.config_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let b = Daemon { child, log };
    let spawned = || -> Vec<u128> {
        std::fs::read_to_string(&spawns)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    wait_until(Duration::from_secs(20), "host-b's process", || {
        (spawned().len() == 1).then_some(())
    });
    wait_all_passing(&pg, &[&a]);
    a.fail();
    wait_until(Duration::from_secs(20), "host-a's restart to start", || {
        (a.starts() == 1).then_some(())
    });
    std::fs::write(&trigger, "").unwrap();
    b.wait_log(
        "Restart SKIPPED: fleet: 1/1 restarting on host-a",
        Duration::from_secs(10),
    );
    wait_until(Duration::from_secs(20), "host-b's deferred restart", || {
        (spawned().len() == 2).then_some(())
    });
    let a_end = a.runs()[0].1;
    let respawned = spawned()[1];
    assert!(
        respawned > a_end,
        "host-b went before host-a's restart ended"
    );
    let after_ms = (respawned - a_end) / 1_000_000;
    assert!(
        after_ms < 3_000,
        "host-b waited {after_ms} ms after the release (the lease would expire after 30 s)"
    );
    let history = env.history();
    let refused = history
        .iter()
        .filter(|e| e["source"] == "exit" && e["reason"] == "fleet")
        .count();
    let allowed = history
        .iter()
        .filter(|e| e["source"] == "exit" && e["verdict"] == "allowed")
        .count();
    assert!(refused >= 1, "{history:?}");
    assert_eq!(allowed, 1, "{history:?}");
}

/// The password comes from `password_file` or `password_env`, and never shows: a wrong
/// one is refused with PostgreSQL's reason, the secret appears in no log line.
#[test]
fn the_password_is_read_from_a_file_or_the_environment_and_never_logged() {
    if !enabled() {
        return;
    }
    const SECRET: &str = "fl33t-s3cret-pw";
    let pg = Pg::start_auth(&[], Some(SECRET));
    let env_file = Env::new();
    let file = env_file.path("pg-password");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let by_file = Host::new(
        &pg,
        "host-file",
        &HostOpts {
            fleet_extra: format!("password_file = {:?}", file.display().to_string()),
            ..HostOpts::default()
        },
    );
    let wrong = env_file.path("wrong");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let refused = Host::new(
        &pg,
        "host-wrong",
        &HostOpts {
            fleet_extra: format!("password_file = {:?}", wrong.display().to_string()),
            ..HostOpts::default()
        },
    );
    // password_env: the daemon's environment.
    let env = Env::new();
    std::fs::write(env.path("healthy"), "").unwrap();
    env.write_config(&format!(
        r#"
[services.api]
driver = "command"
restart_command = ["true"]
fleet_key = "api"

[services.api.checks.health]
kind = "exec"
command = ["true"]
every = "200ms"

[fleet]
postgres = "{url}"
password_env = "VIGIL_TEST_PG_PASSWORD"
host = "host-env"

[fleet.keys.api]
"#,
        url = pg.url()
    ));
    let log = env.path("daemon.log");
    let child = command(support::vigil_bin())
        .arg("run")
        .arg("-c")
        .arg(env.config_path())
        .env("VIGIL_TEST_PG_PASSWORD", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let by_env = Daemon { child, log };
    wait_until(
        Duration::from_secs(20),
        "both good hosts publishing",
        || {
            pg.try_query(
                "SELECT count(*) FROM vigil_fleet_hosts WHERE host IN ('host-file', 'host-env')",
            )
            .filter(|n| n == "2")
        },
    );
    let log = refused
        .daemon()
        .wait_log("fleet unreachable: ", Duration::from_secs(20));
    assert!(log.contains("password authentication failed"), "{log}");
    // `vigil fleet status` reads the password the same way.
    let out = by_file.env.vigil(&["fleet", "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for text in [
        by_file.daemon().log_text(),
        refused.daemon().log_text(),
        by_env.log_text(),
        support::text(&out.stdout),
        support::text(&by_file.env.vigil(&["config", "show"]).stdout),
    ] {
        assert!(!text.contains(SECRET), "the password leaked: {text}");
    }
}

/// Every postgres process of the cluster (the postmaster and its children).
fn pg_pids(postmaster: u32) -> Vec<u32> {
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

/// Sends `sig` to a postgres process of this test's cluster, unless it has exited.
fn signal_unless_gone(pid: u32, sig: rustix::process::Signal) {
    match support::try_signal(pid, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => panic!("kill {pid}: {e}"),
    }
}

/// PostgreSQL hung (every process SIGSTOPped: connections open, no answers): a restart
/// decision waits at most `timeout` on it, then the local guard decides and says so.
#[test]
fn a_hung_postgres_delays_a_restart_by_at_most_timeout() {
    if !enabled() {
        return;
    }
    let (links, pg) = netns_fleet(7, &["host-a"]);
    let a = Host::new(&pg, "host-a", &in_ns(&links, 0, HostOpts::default()));
    wait_all_passing(&pg, &[&a]);
    let postmaster = pg.child.as_ref().unwrap().id();
    // The postmaster first, so it forks no new child; then the children listed after it
    // stopped. A child may still exit on its own meanwhile (a backend whose client left):
    // gone, it needs no stopping (CI once failed here on ESRCH).
    support::signal(postmaster, rustix::process::Signal::STOP);
    let pids = pg_pids(postmaster);
    for &pid in &pids[1..] {
        signal_unless_gone(pid, rustix::process::Signal::STOP);
    }
    let failed_at = support::now_ns();
    a.fail();
    wait_until(Duration::from_secs(20), "the restart", || {
        (a.starts() == 1).then_some(())
    });
    for &pid in &pids {
        signal_unless_gone(pid, rustix::process::Signal::CONT);
    }
    let started = support::recorder_lines(&a.log)[0].2;
    let delay_ms = (started - failed_at) / 1_000_000;
    // The check notices within 200 ms; the fleet call gives up after `timeout` (1 s).
    assert!(delay_ms < 1_000 + 1_500, "the restart waited {delay_ms} ms");
    let log = a.daemon().log_text();
    assert!(log.contains("no answer within 1s (timeout)"), "{log}");
    assert!(log.contains("the local guard alone decided"), "{log}");
}
