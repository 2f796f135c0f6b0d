//! `/metrics` against its real consumers and its documentation: a real Prometheus scrapes
//! the TCP listener and answers queries about a forced restart and a failing check;
//! `promtool` accepts the exposition and the example rules (and runs the rules' alerts);
//! docs/metrics.md documents exactly the families (and labels) exposed; the Grafana
//! dashboard uses only documented metrics (and a real Prometheus parses its queries); a
//! reload drops a removed service's series.
//!
//! Prometheus and promtool (Debian's `prometheus` package) are used when
//! `VIGIL_TEST_SERVERS=1`, as `.ci/run` sets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::http::*;
use support::*;

const TOKEN: &str = "metrics-test-token";

fn servers() -> bool {
    if std::env::var_os("VIGIL_TEST_SERVERS").is_none_or(|v| v != "1") {
        println!("skipped: set VIGIL_TEST_SERVERS=1 (Prometheus and promtool)");
        return false;
    }
    true
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// A command service with a passing and a failing check, an exec service, and an alert
/// channel, so that every family has series.
fn config(env: &Env, with_worker: bool) {
    let token = env.path("token");
    std::fs::write(&token, TOKEN).unwrap();
    let worker = if with_worker {
        r#"
[services.worker]
driver = "exec"
command = ["sleep", "1000"]
"#
    } else {
        ""
    };
    env.write_config(&format!(
        r#"http_listen = "127.0.0.1:0"
http_token_file = {token:?}

[services.svc]
driver = "command"
restart_command = ["true"]

[services.svc.checks.ok]
kind = "exec"
command = ["true"]
every = "1s"

[services.svc.checks.broken]
kind = "exec"
command = ["false"]
every = "1s"
on_failure = "alert"
{worker}
[alerts.hook]
kind = "webhook"
url = "http://127.0.0.1:9/nobody-listens"
"#,
        token = token.display().to_string()
    ));
}

/// `GET /metrics` over TCP: 200, the exposition's content type, its text.
fn scrape(addr: SocketAddr) -> String {
    let answer = ask(addr, "GET", "/metrics", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    text(&answer.body)
}

/// `GET /metrics` on the control socket.
fn scrape_socket(env: &Env) -> String {
    let mut s =
        std::os::unix::net::UnixStream::connect(env.state_dir().join("vigil.sock")).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut s, Duration::from_secs(30));
    assert_eq!(answer.status, 200, "{answer:?}");
    text(&answer.body)
}

/// One sample: its name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `# TYPE` lines: family → type.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// The value of the one sample named `name` with `labels` (a subset of its labels).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// docs/metrics.md's table: family → (type, labels).
fn documented() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let doc = std::fs::read_to_string(repo_file("docs/metrics.md")).unwrap();
    let rows: BTreeMap<_, _> = doc
        .lines()
        .filter(|l| l.starts_with("| `vigil_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let labels = cells[3]
                .split(',')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .filter(|c| !c.is_empty() && c != "—")
                .collect();
            (name, (cells[2].to_owned(), labels))
        })
        .collect();
    assert!(rows.len() >= 14, "docs/metrics.md's table: {rows:?}");
    rows
}

/// The family a sample belongs to (a histogram's `_bucket`, `_sum`, `_count`).
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, String>) -> &'a str {
    if families.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && families.get(base).is_some_and(|t| t == "histogram")
        {
            return base;
        }
    }
    panic!("sample {name} belongs to no announced family")
}

/// Starts the daemon and waits until the failing check has failed, the exec service runs
/// and a forced restart (over the control socket, as `vigil restart --force`) is counted.
fn start_and_settle(env: &Env) -> (Daemon, SocketAddr) {
    let (daemon, addr) = start(env, None);
    let out = env.vigil(&["restart", "svc", "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until(Duration::from_secs(20), "the checks' verdicts", || {
        let text = scrape(addr);
        (value(&text, "vigil_check_up", &[("check", "broken")]) == Some(0.0)
            && value(&text, "vigil_check_up", &[("check", "ok")]) == Some(1.0))
        .then_some(())
    });
    (daemon, addr)
}

/// docs/metrics.md documents exactly the families exposed, with their types, and each
/// sample carries exactly its family's documented labels. The control socket serves the
/// same families.
#[test]
fn the_metrics_reference_matches_the_exposition() {
    let env = Env::new();
    config(&env, true);
    let (_daemon, addr) = start_and_settle(&env);
    let text = scrape(addr);
    let exposed = families(&text);
    let documented = documented();
    let documented_names: BTreeSet<&String> = documented.keys().collect();
    let exposed_names: BTreeSet<&String> = exposed.keys().collect();
    assert_eq!(
        documented_names, exposed_names,
        "docs/metrics.md and /metrics disagree on the families"
    );
    for (name, kind) in &exposed {
        assert_eq!(&documented[name].0, kind, "{name}'s type");
    }
    let mut with_samples = BTreeSet::new();
    for s in samples(&text) {
        assert!(s.name.starts_with("vigil_"), "{s:?}");
        let family = family_of(&s.name, &exposed);
        with_samples.insert(family.to_owned());
        let mut labels: BTreeSet<String> = s.labels.keys().cloned().collect();
        if s.name.ends_with("_bucket") {
            assert!(labels.remove("le"), "{s:?}");
        }
        assert_eq!(labels, documented[family].1, "{s:?}");
    }
    let silent: Vec<&&String> = exposed_names
        .iter()
        .filter(|n| !with_samples.contains(n.as_str()))
        .collect();
    assert!(
        silent.is_empty(),
        "families without a sample: {silent:?}\n{text}"
    );
    assert_eq!(
        value(
            &text,
            "vigil_restarts_total",
            &[
                ("service", "svc"),
                ("source", "manual"),
                ("verdict", "allowed")
            ]
        ),
        Some(1.0)
    );
    assert!(value(&text, "vigil_exec_uptime_seconds", &[("service", "worker")]).unwrap() > 0.0);
    assert_eq!(
        value(
            &text,
            "vigil_service_state",
            &[("service", "worker"), ("state", "running")]
        ),
        Some(1.0)
    );
    assert_eq!(families(&scrape_socket(&env)), exposed);
}

/// A reload drops a removed service's series; what stays keeps its counts.
#[test]
fn a_reload_drops_a_removed_services_series() {
    let env = Env::new();
    config(&env, true);
    let (daemon, addr) = start_and_settle(&env);
    assert!(scrape(addr).contains("service=\"worker\""));
    config(&env, false);
    daemon.signal(rustix::process::Signal::HUP);
    daemon.wait_log("configuration reloaded", Duration::from_secs(20));
    let text = scrape(addr);
    assert!(!text.contains("service=\"worker\""), "{text}");
    assert_eq!(
        value(
            &text,
            "vigil_restarts_total",
            &[
                ("service", "svc"),
                ("source", "manual"),
                ("verdict", "allowed")
            ]
        ),
        Some(1.0),
        "{text}"
    );
}

/// Every query of the Grafana dashboard uses documented metrics only (a histogram's
/// `_bucket`, `_sum`, `_count` included), and every panel has one.
#[test]
fn the_grafana_dashboard_uses_documented_metrics() {
    let documented = documented();
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for expr in &exprs {
        let used = metric_names(expr);
        assert!(!used.is_empty(), "no vigil metric in {expr}");
        for name in used {
            let known = documented.contains_key(&name)
                || ["_bucket", "_sum", "_count"].iter().any(|s| {
                    name.strip_suffix(s)
                        .and_then(|base| documented.get(base))
                        .is_some_and(|(t, _)| t == "histogram")
                });
            assert!(known, "{name} (in {expr}) is not in docs/metrics.md");
        }
    }
}

/// The dashboard's queries: every panel target's `expr` and the variables' queries.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_file("docs/grafana-dashboard.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(doc["title"].is_string());
    let mut out = Vec::new();
    fn panels(list: &serde_json::Value, out: &mut Vec<String>) {
        for p in list.as_array().into_iter().flatten() {
            if p["type"] == "row" {
                panels(&p["panels"], out);
                continue;
            }
            let targets = p["targets"].as_array().expect("a panel with targets");
            assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
            for t in targets {
                out.push(t["expr"].as_str().expect("an expr").to_owned());
            }
        }
    }
    panels(&doc["panels"], &mut out);
    for v in doc["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push(q.to_owned());
        }
    }
    out
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("vigil_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}

/// A port nobody listens on (now).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's `/api/v1/query`: its `data.result`, after asserting `success`.
fn prom_query(prom: SocketAddr, query: &str) -> Vec<serde_json::Value> {
    let answer = ask(
        prom,
        "GET",
        &format!("/api/v1/query?query={}", percent_encode(query)),
        &[],
    );
    let doc = answer.json();
    assert_eq!(doc["status"], "success", "{query}: {doc}");
    doc["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The single value of an instant query, if it has one result.
fn prom_value(prom: SocketAddr, query: &str) -> Option<String> {
    let result = prom_query(prom, query);
    match result.as_slice() {
        [one] => one["value"][1].as_str().map(str::to_owned),
        _ => None,
    }
}

/// Starts a real Prometheus on a free loopback port, with its own storage in `env`'s
/// directory, scraping `target` every second as job `vigil` (`job`: more of the job's
/// YAML, one key a line, e.g. its scheme and TLS settings); waits until it is ready. Its
/// log is `prometheus.log`.
fn start_prometheus(env: &Env, target: SocketAddr, job: &str) -> (KillOnDrop, SocketAddr) {
    assert!(
        command("prometheus").arg("--version").output().is_ok(),
        "prometheus is needed (Debian's prometheus package)"
    );
    let prom = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let job: String = job.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(
        env.path("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: vigil\n{job}    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(env.path("prometheus.log")).unwrap();
    let child = command("prometheus")
        .arg(format!(
            "--config.file={}",
            env.path("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            env.path("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prom}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let prometheus = KillOnDrop(child);
    wait_until(Duration::from_secs(30), "Prometheus to be ready", || {
        let mut s = std::net::TcpStream::connect(prom).ok()?;
        s.write_all(b"GET /-/ready HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut got = String::new();
        s.read_to_string(&mut got).ok()?;
        got.starts_with("HTTP/1.1 200").then_some(())
    });
    (prometheus, prom)
}

/// A real Prometheus scrapes Vigil's TCP listener every second; after a forced restart
/// and with a failing check, its own query API reports `vigil_restarts_total` and
/// `vigil_check_up` as they are. It also parses every query of the Grafana dashboard.
#[test]
fn prometheus_scrapes_the_listener() {
    if !servers() {
        return;
    }
    let env = Env::new();
    config(&env, true);
    let (_daemon, addr) = start(&env, None);
    let (_prometheus, prom) = start_prometheus(&env, addr, "");
    let prom_log = || std::fs::read_to_string(env.path("prometheus.log")).unwrap_or_default();

    let out = env.vigil(&["restart", "svc", "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let restarts =
        r#"vigil_restarts_total{job="vigil",service="svc",source="manual",verdict="allowed"}"#;
    wait_until(
        Duration::from_secs(30),
        "Prometheus to have the restart",
        || (prom_value(prom, restarts).as_deref() == Some("1")).then_some(()),
    );
    wait_until(
        Duration::from_secs(30),
        "Prometheus to have the check verdicts",
        || {
            let broken = prom_value(prom, r#"vigil_check_up{service="svc",check="broken"}"#);
            let ok = prom_value(prom, r#"vigil_check_up{service="svc",check="ok"}"#);
            (broken.as_deref() == Some("0") && ok.as_deref() == Some("1")).then_some(())
        },
    );
    assert_eq!(
        prom_value(prom, r#"up{job="vigil"}"#).as_deref(),
        Some("1"),
        "{}",
        prom_log()
    );
    assert_eq!(
        prom_value(
            prom,
            r#"vigil_check_status{service="svc",check="broken",status="failing"}"#
        )
        .as_deref(),
        Some("1")
    );
    // No other restart of svc was allowed (the failing check only alerts).
    let allowed = prom_query(
        prom,
        r#"vigil_restarts_total{service="svc",verdict="allowed"}"#,
    );
    assert_eq!(allowed.len(), 1, "{allowed:?}");
    assert_eq!(
        prom_value(prom, r#"vigil_restart_budget_used{service="svc"}"#).as_deref(),
        Some("1")
    );

    // Prometheus parses and runs every query of the dashboard.
    for expr in dashboard_exprs() {
        if expr.starts_with("label_values(") {
            continue; // a Grafana function, not PromQL
        }
        let q = expr
            .replace("$instance", ".*")
            .replace("$service", ".*")
            .replace("$__rate_interval", "1m");
        prom_query(prom, &q);
    }
}

/// Prometheus scrapes the listener over TLS (`http_tls_cert`/`http_tls_key`: a
/// certificate for 127.0.0.1 made with rcgen, which Prometheus is given as its CA): the
/// target is up and the checks' values arrive through Prometheus's query API.
#[test]
fn prometheus_scrapes_the_tls_listener() {
    if !servers() {
        return;
    }
    let env = Env::new();
    config(&env, false);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(env.path("cert.pem"), cert.pem()).unwrap();
    std::fs::write(env.path("key.pem"), key.serialize_pem()).unwrap();
    let listen = "http_listen = \"127.0.0.1:0\"\n";
    let plain = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(plain.contains(listen), "{plain}");
    let tls = plain.replace(
        listen,
        &format!("{listen}http_tls_cert = \"cert.pem\"\nhttp_tls_key = \"key.pem\"\n"),
    );
    std::fs::write(env.config_path(), tls).unwrap();
    let (daemon, addr) = start(&env, None);
    assert!(daemon.log_text().contains(&format!("https://{addr}")));

    let job = format!(
        "scheme: https\ntls_config:\n  ca_file: {}",
        env.path("cert.pem").display()
    );
    let (_prometheus, prom) = start_prometheus(&env, addr, &job);
    let prom_log = || std::fs::read_to_string(env.path("prometheus.log")).unwrap_or_default();
    wait_until(
        Duration::from_secs(30),
        "Prometheus to have the check verdicts over TLS",
        || {
            let broken = prom_value(prom, r#"vigil_check_up{service="svc",check="broken"}"#);
            let ok = prom_value(prom, r#"vigil_check_up{service="svc",check="ok"}"#);
            (broken.as_deref() == Some("0") && ok.as_deref() == Some("1")).then_some(())
        },
    );
    assert_eq!(
        prom_value(prom, r#"up{job="vigil"}"#).as_deref(),
        Some("1"),
        "{}",
        prom_log()
    );
}

/// `promtool check metrics` accepts the exposition, from the TCP listener and from the
/// control socket, with no lint complaint.
#[test]
fn promtool_accepts_the_exposition() {
    if !servers() {
        return;
    }
    let env = Env::new();
    config(&env, true);
    let (_daemon, addr) = start_and_settle(&env);
    for exposition in [scrape(addr), scrape_socket(&env)] {
        let mut child = command("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian's prometheus package)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(exposition.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics: {:?}\n{}{}\n--- exposition:\n{exposition}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

/// docs/prometheus-rules.yml passes `promtool check rules`, and its alerts fire on
/// sample series as described (`promtool test rules`): given up; budget above 80 %
/// (not once given up); a check failing for 5 minutes (not before).
#[test]
fn the_example_rules_are_valid_and_fire() {
    if !servers() {
        return;
    }
    let rules = repo_file("docs/prometheus-rules.yml");
    let out = command("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let at = r#"instance: "h:9731", job: vigil"#;
    let series = |name: &str, labels: &str, values: &str| {
        format!(
            "      - series: '{name}{{{labels}instance=\"h:9731\",job=\"vigil\"}}'\n        values: '{values}'\n"
        )
    };
    let mut input = String::new();
    input += &series(
        "vigil_service_given_up",
        r#"service="web","#,
        "0 0 1 1 1 1 1 1",
    );
    input += &series(
        "vigil_restart_budget_used",
        r#"service="web","#,
        "2 4 5 5 5 5 5 5",
    );
    input += &series("vigil_restart_budget_limit", r#"service="web","#, "5x8");
    input += &series("vigil_service_given_up", r#"service="api","#, "0x8");
    input += &series("vigil_restart_budget_used", r#"service="api","#, "9x8");
    input += &series("vigil_restart_budget_limit", r#"service="api","#, "10x8");
    input += &series(
        "vigil_check_status",
        r#"service="web",check="http",status="failing","#,
        "1x8",
    );
    let test = format!(
        r#"rule_files: [{rules:?}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
{input}    alert_rule_test:
      - eval_time: 1m
        alertname: VigilServiceGivenUp
        exp_alerts: []
      - eval_time: 3m
        alertname: VigilServiceGivenUp
        exp_alerts:
          - exp_labels: {{severity: critical, service: web, {at}}}
            exp_annotations:
              summary: "web on h:9731 gave up: its restart budget is spent"
              description: "Automatic restarts of web are refused until its window re-arms; see `vigil status web` and `vigil history --service web`."
      - eval_time: 3m
        alertname: VigilRestartBudgetHigh
        exp_alerts:
          - exp_labels: {{severity: warning, service: api, {at}}}
            exp_annotations:
              summary: "api on h:9731 used 90% of its restart budget"
              description: "api keeps being restarted; a few more and Vigil gives up on it."
      - eval_time: 4m
        alertname: VigilCheckFailing
        exp_alerts: []
      - eval_time: 6m
        alertname: VigilCheckFailing
        exp_alerts:
          - exp_labels: {{severity: warning, service: web, check: http, status: failing, {at}}}
            exp_annotations:
              summary: "check web/http on h:9731 has been failing for 5 minutes"
              description: "See `vigil status web` for its last reason."
"#,
        rules = rules.display().to_string()
    );
    let file = dir.path().join("rules_test.yml");
    std::fs::write(&file, test).unwrap();
    let out = command("promtool")
        .arg("test")
        .arg("rules")
        .arg(&file)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
