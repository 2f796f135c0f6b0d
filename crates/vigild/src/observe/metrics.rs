//! Prometheus metrics: `GET /metrics` on the control socket and the TCP listener, in the
//! text exposition format (0.0.4). The reference is docs/metrics.md (a test checks it
//! against what is exposed).
//!
//! Owns: the series and their counters, which series exist, and rendering.
//! - Counters come from the event bus: [`Metrics`] is a [`Subscriber`], so a metric is
//!   the same fact as its log line (a restart counted is a `Verdict` event published).
//!   Publishing costs a read lock (written only by a reload) and relaxed atomic adds.
//! - Gauges are read at scrape time from what the daemon already has: a check's last
//!   verdict and status (kept from its events), holds (the bus's [`Events::hold_of`]),
//!   the restart budget and given-up state (the ledger's counted restarts, through the
//!   pure `decide`), an exec process's start (its events).
//! - `vigil_ledger_commit_seconds` is the ledger's own lock-free histogram
//!   ([`crate::ledger::COMMIT_TIMES`]).
//!
//! Cardinality is bounded by the configuration: series exist for the services, checks,
//! groups (as `service="@NAME"`) and alert channels of the running configuration, and
//! label values otherwise come from closed sets (sources, verdicts, statuses, states,
//! results); events about anything else are ignored. A reload drops a removed service's
//! series and keeps the counters of what stays. Must not: block or fail when an event is
//! published, or label anything by request.
//!
//! The exposition is written here rather than by `prometheus-client`: most series are
//! gauges read at scrape time from state the daemon already keeps (the ledger's budget,
//! holds, last verdicts), which that crate would need copied into its own registered
//! metric objects or a custom collector, and the text format is small (escaping and
//! number formatting are the only subtle parts; 100 services x 10 checks render in
//! ~1 ms). What guards it is its real consumers: `promtool check metrics` and a real
//! Prometheus scrape it in `tests/metrics_e2e.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use vigil_config::model::{Config, DriverSpec};
use vigil_core::event::Event;
use vigil_core::guard::GuardPolicy;
use vigil_core::health::{HealthStatus, RunVerdict};
use vigil_core::{RestartRequest, ServiceName, Source, Timestamp, Verdict, decide};

use crate::ledger::{COMMIT_TIMES, LedgerHandle};
use crate::observe::bus::{Events, Published, Subscriber};
use crate::platform::histogram::{CHECK_BOUNDS, Histogram};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric family: name, type, help. Rendered in this order, each with its `HELP`
/// and `TYPE` lines even when it has no series yet (no exec service, no channel).
pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "vigil_build_info",
        "gauge",
        "Always 1; the version of the running vigil as a label.",
    ),
    (
        "vigil_check_up",
        "gauge",
        "1 when the check's last run passed (pass or warn), 0 when it failed.",
    ),
    (
        "vigil_check_status",
        "gauge",
        "The check's health status after its thresholds and grace: 1 for the current status.",
    ),
    (
        "vigil_check_runs_total",
        "counter",
        "Check runs by result: pass, warn, fail, or void (Vigil itself was stalled).",
    ),
    (
        "vigil_check_duration_seconds",
        "histogram",
        "How long check runs took, all attempts and retry delays included.",
    ),
    (
        "vigil_restarts_total",
        "counter",
        "Restart requests decided by the guard, by source and verdict.",
    ),
    (
        "vigil_restart_budget_used",
        "gauge",
        "Restarts counted in the guard's current window.",
    ),
    (
        "vigil_restart_budget_limit",
        "gauge",
        "The guard's max_restarts per window.",
    ),
    (
        "vigil_service_given_up",
        "gauge",
        "1 while the restart budget is spent and automatic restarts are refused.",
    ),
    (
        "vigil_service_state",
        "gauge",
        "The service's state: running, down (an exec service's process is not running), paused, stopped, given_up; 1 for the current one.",
    ),
    (
        "vigil_exec_restarts_total",
        "counter",
        "Times an exec service's process was started again since the daemon started.",
    ),
    (
        "vigil_exec_uptime_seconds",
        "gauge",
        "Since when an exec service's process runs; 0 while it does not.",
    ),
    (
        "vigil_alert_deliveries_total",
        "counter",
        "Alert deliveries by channel and result: delivered, failed (after its retries), dropped (a full queue).",
    ),
    (
        "vigil_ledger_commit_seconds",
        "histogram",
        "How long the ledger's transaction commits took (guard decisions and outcomes, batched check states).",
    ),
];

const VERDICTS: [&str; 3] = ["allowed", "skipped", "denied"];
/// Check run results; as labels in [`RESULT_LABELS`].
const RESULT_LABELS: [&str; 4] = [
    "result=\"pass\"",
    "result=\"warn\"",
    "result=\"fail\"",
    "result=\"void\"",
];
/// Health statuses in [`status_index`] order, as labels.
const STATUS_LABELS: [&str; 4] = [
    "status=\"unknown\"",
    "status=\"passing\"",
    "status=\"warning\"",
    "status=\"failing\"",
];
const STATES: [&str; 5] = ["running", "down", "paused", "stopped", "given_up"];
const DELIVERY_RESULTS: [&str; 3] = ["delivered", "failed", "dropped"];

/// An exec process that is not running (its start time's stand-in).
const NOT_RUNNING: i64 = i64::MIN;

/// The daemon's metrics: subscribe it to the event bus, give it the alert deliveries,
/// [`Metrics::configure`] it on every (re)load, [`Metrics::render`] it on a scrape.
pub struct Metrics {
    registry: RwLock<Registry>,
}

#[derive(Default)]
struct Registry {
    /// Services and groups (`@NAME`) of the running configuration.
    services: BTreeMap<ServiceName, Arc<ServiceSeries>>,
    channels: BTreeMap<String, Arc<ChannelSeries>>,
}

struct ServiceSeries {
    /// `service="NAME"`, escaped.
    label: String,
    /// The guard's policy, for the budget gauges.
    policy: GuardPolicy,
    exec: bool,
    /// Shared with the series a reload replaces this one with, so no count is lost.
    counts: Arc<ServiceCounts>,
    checks: BTreeMap<String, Arc<CheckSeries>>,
}

#[derive(Default)]
struct ServiceCounts {
    /// `[source][verdict]`.
    restarts: [[AtomicU64; 3]; 6],
    exec_starts: AtomicU64,
    /// When the exec process started (ms since the epoch), or [`NOT_RUNNING`].
    exec_since: AtomicI64,
}

struct CheckSeries {
    /// `service="NAME",check="CHECK"`, escaped.
    label: String,
    /// The last run's verdict: 0 none yet, else 1 + its index in [`RESULT_LABELS`].
    last: AtomicU8,
    /// The health status's index in [`STATUS_LABELS`].
    status: AtomicU8,
    runs: [AtomicU64; 4],
    duration: Histogram,
}

struct ChannelSeries {
    label: String,
    deliveries: [AtomicU64; 3],
}

impl ServiceSeries {
    fn new(name: &str, policy: GuardPolicy, exec: bool) -> ServiceSeries {
        ServiceSeries {
            label: label("service", name),
            policy,
            exec,
            counts: Arc::new(ServiceCounts {
                exec_since: AtomicI64::new(NOT_RUNNING),
                ..ServiceCounts::default()
            }),
            checks: BTreeMap::new(),
        }
    }

    /// The same series with a new policy and set of checks, counters kept (a reload).
    fn updated(&self, policy: GuardPolicy, checks: BTreeMap<String, Arc<CheckSeries>>) -> Self {
        ServiceSeries {
            label: self.label.clone(),
            policy,
            exec: self.exec,
            counts: self.counts.clone(),
            checks,
        }
    }
}

impl CheckSeries {
    fn new(service: &str, check: &str) -> CheckSeries {
        CheckSeries {
            label: format!("{},{}", label("service", service), label("check", check)),
            last: AtomicU8::new(0),
            status: AtomicU8::new(0),
            runs: Default::default(),
            duration: Histogram::new(CHECK_BOUNDS),
        }
    }

    fn ran(&self, verdict: RunVerdict, took: Duration) {
        let i = verdict_index(verdict);
        self.runs[i].fetch_add(1, Ordering::Relaxed);
        self.last.store(1 + i as u8, Ordering::Relaxed);
        self.duration.observe(took);
    }

    fn set_status(&self, status: HealthStatus) {
        self.status.store(status_index(status), Ordering::Relaxed);
    }
}

fn verdict_index(v: RunVerdict) -> usize {
    match v {
        RunVerdict::Pass => 0,
        RunVerdict::Warn => 1,
        RunVerdict::Fail => 2,
    }
}

fn status_index(s: HealthStatus) -> u8 {
    match s {
        HealthStatus::Unknown => 0,
        HealthStatus::Passing => 1,
        HealthStatus::Warning => 2,
        HealthStatus::Failing => 3,
    }
}

fn source_index(s: Source) -> usize {
    match s {
        Source::Health => 0,
        Source::Schedule => 1,
        Source::Exit => 2,
        Source::Watchdog => 3,
        Source::Manual => 4,
        Source::Group => 5,
    }
}

/// `name="value"` with the value escaped as the exposition format wants (`\`, `"`, line
/// feeds).
fn label(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 3);
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The scrape-time facts from the ledger: per service or group, the restarts counted in
/// its window and whether the guard would deny (given up).
#[derive(Clone, Debug, Default)]
pub struct Budgets(pub BTreeMap<ServiceName, (u32, bool)>);

impl Metrics {
    pub fn new(config: &Config) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics {
            registry: RwLock::default(),
        });
        metrics.configure(config);
        metrics
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The series of `config`'s services, checks, groups and channels: new ones start at
    /// zero, the others keep their counts, the rest disappear.
    pub fn configure(&self, config: &Config) {
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        let mut services = BTreeMap::new();
        for s in &config.services {
            let exec = matches!(s.driver, DriverSpec::Exec(_));
            let old = registry.services.get(&s.name).filter(|o| o.exec == exec);
            let checks = s
                .checks
                .iter()
                .map(|c| {
                    let name = c.name.to_string();
                    let kept = old.and_then(|o| o.checks.get(&name)).cloned();
                    let series =
                        kept.unwrap_or_else(|| Arc::new(CheckSeries::new(s.name.as_str(), &name)));
                    (name, series)
                })
                .collect();
            let series = match old {
                Some(o) => o.updated(s.guard.clone(), checks),
                None => ServiceSeries {
                    checks,
                    ..ServiceSeries::new(s.name.as_str(), s.guard.clone(), exec)
                },
            };
            services.insert(s.name.clone(), Arc::new(series));
        }
        for g in &config.groups {
            let key = g.ledger_key();
            let series = match registry.services.get(&key) {
                Some(o) => o.updated(g.guard.clone(), BTreeMap::new()),
                None => ServiceSeries::new(key.as_str(), g.guard.clone(), false),
            };
            services.insert(key, Arc::new(series));
        }
        let channels = config
            .alerts
            .iter()
            .map(|c| {
                let series = registry.channels.get(&c.name).cloned().unwrap_or_else(|| {
                    Arc::new(ChannelSeries {
                        label: label("channel", &c.name),
                        deliveries: Default::default(),
                    })
                });
                (c.name.clone(), series)
            })
            .collect();
        *registry = Registry { services, channels };
    }

    /// A check task starts (at startup, or fresh after a change): its status, and its last
    /// verdict as saved in the ledger.
    pub fn check_started(
        &self,
        service: &ServiceName,
        check: &str,
        status: HealthStatus,
        last: Option<RunVerdict>,
    ) {
        let registry = self.read();
        if let Some(c) = registry
            .services
            .get(service)
            .and_then(|s| s.checks.get(check))
        {
            c.set_status(status);
            let last = last.map_or(0, |v| 1 + verdict_index(v) as u8);
            c.last.store(last, Ordering::Relaxed);
        }
    }

    /// An alert delivery ended: `delivered`, `failed` or `dropped`.
    pub fn delivery(&self, channel: &str, result: &str) {
        let Some(i) = DELIVERY_RESULTS.iter().position(|r| *r == result) else {
            return;
        };
        if let Some(c) = self.read().channels.get(channel) {
            c.deliveries[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads what the budget gauges need from the ledger: one job on the ledger thread,
    /// from its cache of counted restarts.
    pub async fn budgets(&self, ledger: &LedgerHandle, now: Timestamp) -> Budgets {
        let wanted: Vec<(ServiceName, GuardPolicy)> = self
            .read()
            .services
            .iter()
            .map(|(name, s)| (name.clone(), s.policy.clone()))
            .collect();
        let read = ledger
            .call(move |l| {
                let mut out = BTreeMap::new();
                for (name, policy) in wanted {
                    let history = l.counted_restarts(name.as_str(), policy.window_start(now))?;
                    let used = history
                        .iter()
                        .filter(|r| r.at >= policy.window_start(now))
                        .count();
                    let verdict =
                        decide(&policy, &history, RestartRequest::new(Source::Health), now);
                    let given_up = matches!(verdict, Verdict::Denied(_));
                    out.insert(name, (u32::try_from(used).unwrap_or(u32::MAX), given_up));
                }
                Ok::<_, crate::ledger::LedgerError>(out)
            })
            .await;
        match read {
            Ok(map) => Budgets(map),
            Err(error) => {
                tracing::debug!(%error, "metrics: cannot read the restart budgets");
                Budgets::default()
            }
        }
    }

    /// The exposition: everything but the budget gauges from memory, those from `budgets`
    /// (services missing there get none), holds from `events`.
    pub fn render(&self, budgets: &Budgets, events: &Events, now: Timestamp) -> String {
        let registry = self.read();
        let checks: usize = registry.services.values().map(|s| s.checks.len()).sum();
        let mut out = String::with_capacity(4096 + checks * 1600 + registry.services.len() * 600);
        let mut w = Writer {
            out: &mut out,
            cumulative: Vec::with_capacity(16),
            le: [CHECK_BOUNDS, COMMIT_TIMES.bounds()].map(le_labels),
            digits: itoa::Buffer::new(),
        };
        for (name, kind, help) in FAMILIES {
            w.head(name, kind, help);
            match *name {
                "vigil_build_info" => {
                    let version = label("version", env!("CARGO_PKG_VERSION"));
                    w.sample(name, "", &version, "", 1);
                }
                "vigil_check_up" => {
                    for c in registry.checks() {
                        match c.last.load(Ordering::Relaxed) {
                            0 => {}
                            3 => w.sample(name, "", &c.label, "", 0),
                            _ => w.sample(name, "", &c.label, "", 1),
                        }
                    }
                }
                "vigil_check_status" => {
                    for c in registry.checks() {
                        let current = usize::from(c.status.load(Ordering::Relaxed));
                        for (i, status) in STATUS_LABELS.iter().enumerate() {
                            w.sample(name, "", &c.label, status, u64::from(current == i));
                        }
                    }
                }
                "vigil_check_runs_total" => {
                    for c in registry.checks() {
                        for (i, result) in RESULT_LABELS.iter().enumerate() {
                            let n = c.runs[i].load(Ordering::Relaxed);
                            if n > 0 {
                                w.sample(name, "", &c.label, result, n);
                            }
                        }
                    }
                }
                "vigil_check_duration_seconds" => {
                    for c in registry.checks() {
                        w.histogram(name, &c.label, &c.duration, 0);
                    }
                }
                "vigil_restarts_total" => {
                    for s in registry.services.values() {
                        for (si, source) in Source::ALL.iter().enumerate() {
                            for (vi, verdict) in VERDICTS.iter().enumerate() {
                                let n = s.counts.restarts[si][vi].load(Ordering::Relaxed);
                                if n > 0 {
                                    let more = format!(
                                        "source=\"{}\",verdict=\"{verdict}\"",
                                        source.as_str()
                                    );
                                    w.sample(name, "", &s.label, &more, n);
                                }
                            }
                        }
                    }
                }
                "vigil_restart_budget_used" => {
                    for (key, s) in &registry.services {
                        if let Some((used, _)) = budgets.0.get(key) {
                            w.sample(name, "", &s.label, "", u64::from(*used));
                        }
                    }
                }
                "vigil_restart_budget_limit" => {
                    for s in registry.services.values() {
                        w.sample(name, "", &s.label, "", u64::from(s.policy.max_restarts));
                    }
                }
                "vigil_service_given_up" => {
                    for (key, s) in &registry.services {
                        if let Some((_, given_up)) = budgets.0.get(key) {
                            w.sample(name, "", &s.label, "", u64::from(*given_up));
                        }
                    }
                }
                "vigil_service_state" => {
                    for (key, s) in &registry.services {
                        let given_up = budgets.0.get(key).is_some_and(|(_, g)| *g);
                        let state = match events.hold_of(key) {
                            Some(vigil_core::lifecycle::HoldKind::Stopped) => "stopped",
                            Some(vigil_core::lifecycle::HoldKind::Paused) => "paused",
                            None if given_up => "given_up",
                            None if s.exec
                                && s.counts.exec_since.load(Ordering::Relaxed) == NOT_RUNNING =>
                            {
                                "down"
                            }
                            None => "running",
                        };
                        for st in STATES {
                            let more = format!("state=\"{st}\"");
                            w.sample(name, "", &s.label, &more, u64::from(st == state));
                        }
                    }
                }
                "vigil_exec_restarts_total" => {
                    for s in registry.services.values().filter(|s| s.exec) {
                        let starts = s.counts.exec_starts.load(Ordering::Relaxed);
                        w.sample(name, "", &s.label, "", starts.saturating_sub(1));
                    }
                }
                "vigil_exec_uptime_seconds" => {
                    for s in registry.services.values().filter(|s| s.exec) {
                        let since = s.counts.exec_since.load(Ordering::Relaxed);
                        let up = if since == NOT_RUNNING {
                            0.0
                        } else {
                            (now.as_millis() - since).max(0) as f64 / 1000.0
                        };
                        w.sample_f64(name, &s.label, up);
                    }
                }
                "vigil_alert_deliveries_total" => {
                    for c in registry.channels.values() {
                        for (i, r) in DELIVERY_RESULTS.iter().enumerate() {
                            let n = c.deliveries[i].load(Ordering::Relaxed);
                            w.sample(name, "", &c.label, &format!("result=\"{r}\""), n);
                        }
                    }
                }
                "vigil_ledger_commit_seconds" => w.histogram(name, "", &COMMIT_TIMES, 1),
                _ => {}
            }
        }
        drop(registry);
        out
    }

    fn counts(&self, key: &ServiceName) -> Option<Arc<ServiceCounts>> {
        self.read().services.get(key).map(|s| s.counts.clone())
    }
}

impl Registry {
    fn checks(&self) -> impl Iterator<Item = &CheckSeries> {
        self.services
            .values()
            .flat_map(|s| s.checks.values().map(|c| &**c))
    }
}

/// Renders samples into the exposition text.
struct Writer<'a> {
    out: &'a mut String,
    cumulative: Vec<u64>,
    /// The `le` labels of the check and commit histograms' buckets, made once a scrape.
    le: [Vec<String>; 2],
    digits: itoa::Buffer,
}

/// `le="0.005"`, ..., `le="+Inf"`.
fn le_labels(bounds: &[Duration]) -> Vec<String> {
    bounds
        .iter()
        .map(|b| format!("le=\"{}\"", b.as_secs_f64()))
        .chain(std::iter::once("le=\"+Inf\"".to_owned()))
        .collect()
}

impl Writer<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// `NAME{LABELS,MORE} VALUE`; `suffix` goes after the name (`_bucket`, ...).
    fn sample(&mut self, name: &str, suffix: &str, labels: &str, more: &str, value: u64) {
        self.name(name, suffix, labels, more);
        // Most of a scrape's 20,000 lines end in an integer: `itoa` instead of `fmt`
        // takes a third off the render (docs/BENCHMARKS.md).
        self.out.push(' ');
        self.out.push_str(self.digits.format(value));
        self.out.push('\n');
    }

    fn sample_f64(&mut self, name: &str, labels: &str, value: f64) {
        self.name(name, "", labels, "");
        let _ = writeln!(self.out, " {value}");
    }

    fn name(&mut self, name: &str, suffix: &str, labels: &str, more: &str) {
        let out = &mut *self.out;
        out.push_str(name);
        out.push_str(suffix);
        if !labels.is_empty() || !more.is_empty() {
            out.push('{');
            out.push_str(labels);
            if !labels.is_empty() && !more.is_empty() {
                out.push(',');
            }
            out.push_str(more);
            out.push('}');
        }
    }

    /// A histogram's series; `which`: its `le` labels in [`Writer::le`].
    fn histogram(&mut self, name: &str, labels: &str, h: &Histogram, which: usize) {
        h.cumulative_into(&mut self.cumulative);
        let cumulative = std::mem::take(&mut self.cumulative);
        let le = std::mem::take(&mut self.le[which]);
        for (n, le) in cumulative.iter().zip(&le) {
            self.sample(name, "_bucket", labels, le, *n);
        }
        self.le[which] = le;
        self.sample_f64_suffix(name, "_sum", labels, h.sum().as_secs_f64());
        let count = cumulative.last().copied().unwrap_or(0);
        self.sample(name, "_count", labels, "", count);
        self.cumulative = cumulative;
    }

    fn sample_f64_suffix(&mut self, name: &str, suffix: &str, labels: &str, value: f64) {
        self.name(name, suffix, labels, "");
        let _ = writeln!(self.out, " {value}");
    }
}

/// Counts each event where the log line and alert see it.
impl Subscriber for Metrics {
    fn publish(&self, p: &Published<'_>) {
        let check = |name: &str| {
            self.read()
                .services
                .get(p.service)
                .and_then(|s| s.checks.get(name).cloned())
        };
        match p.event {
            Event::Verdict {
                request, verdict, ..
            } => {
                let v = match verdict {
                    Verdict::Allowed { .. } => 0,
                    Verdict::Skipped(_) => 1,
                    Verdict::Denied(_) => 2,
                };
                if let Some(s) = self.counts(p.service) {
                    s.restarts[source_index(request.source)][v].fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::CheckStatus {
                check: name,
                verdict,
                to,
                took,
                ..
            } => {
                if let Some(c) = check(name) {
                    c.ran(*verdict, *took);
                    c.set_status(*to);
                }
            }
            Event::CheckRun {
                check: name,
                verdict,
                status,
                took,
                ..
            } => {
                if let Some(c) = check(name) {
                    c.ran(*verdict, *took);
                    c.set_status(*status);
                }
            }
            Event::CheckGrace {
                check: name,
                verdict,
                took,
                ..
            } => {
                if let Some(c) = check(name) {
                    c.ran(*verdict, *took);
                }
            }
            Event::VigilStalled { check: name, .. } => {
                if let Some(c) = check(name) {
                    c.runs[3].fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::ProcessStarted { .. } => {
                if let Some(s) = self.counts(p.service) {
                    s.exec_starts.fetch_add(1, Ordering::Relaxed);
                    s.exec_since.store(p.at.as_millis(), Ordering::Relaxed);
                }
            }
            Event::ProcessExited { .. }
            | Event::ProcessStopped { .. }
            | Event::SpawnFailed { .. } => {
                if let Some(s) = self.counts(p.service) {
                    s.exec_since.store(NOT_RUNNING, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(body: &str) -> Config {
        vigil_config::parse(body, std::path::Path::new("/etc/vigil/vigil.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const TWO: &str = r#"
[services.web]
driver = "command"
restart_command = ["true"]
[services.web.checks.http]
kind = "tcp"
host = "127.0.0.1"
port = 1
[services.db]
driver = "exec"
command = ["sleep", "1000"]
"#;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    /// Events become counts and gauges; every family is announced; a reload keeps the
    /// counts of what stays and drops the series of a removed service.
    #[test]
    fn events_are_counted_and_a_reload_drops_removed_series() {
        let metrics = Metrics::new(&config(TWO));
        let events = Events::to(vec![metrics.clone()]);
        let (web, db) = (ServiceName::new("web"), ServiceName::new("db"));
        events.publish(
            &web,
            Event::Verdict {
                request: RestartRequest::forced(Source::Manual),
                verdict: Verdict::Allowed {
                    count: 1,
                    max: 5,
                    window: Duration::from_secs(3600),
                    forced: true,
                    fleet: None,
                },
                repeat: None,
            },
        );
        events.publish(
            &web,
            Event::CheckStatus {
                check: "http".to_owned(),
                verdict: RunVerdict::Fail,
                from: HealthStatus::Unknown,
                to: HealthStatus::Failing,
                reason: "refused".to_owned(),
                recovered: false,
                took: Duration::from_millis(30),
            },
        );
        events.publish(
            &db,
            Event::ProcessStarted {
                pid: 42,
                command: "sleep".to_owned(),
                since_exit: None,
            },
        );
        // Unknown names are ignored (cardinality is the configuration's).
        events.publish(&ServiceName::new("ghost"), Event::Rearmed);
        events.publish(
            &web,
            Event::CheckRun {
                check: "ghost".to_owned(),
                verdict: RunVerdict::Pass,
                status: HealthStatus::Passing,
                reason: String::new(),
                took: Duration::ZERO,
            },
        );
        let budgets = Budgets(BTreeMap::from([(web.clone(), (1, false))]));
        let now = Timestamp::from_millis(i64::MAX / 2);
        let text = metrics.render(&budgets, &events, now);
        for (name, kind, _) in FAMILIES {
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
        }
        let samples = lines(&text);
        for expected in [
            "vigil_restarts_total{service=\"web\",source=\"manual\",verdict=\"allowed\"} 1",
            "vigil_check_up{service=\"web\",check=\"http\"} 0",
            "vigil_check_status{service=\"web\",check=\"http\",status=\"failing\"} 1",
            "vigil_check_runs_total{service=\"web\",check=\"http\",result=\"fail\"} 1",
            "vigil_check_duration_seconds_bucket{service=\"web\",check=\"http\",le=\"0.025\"} 0",
            "vigil_check_duration_seconds_bucket{service=\"web\",check=\"http\",le=\"0.05\"} 1",
            "vigil_check_duration_seconds_count{service=\"web\",check=\"http\"} 1",
            "vigil_restart_budget_used{service=\"web\"} 1",
            "vigil_service_state{service=\"web\",state=\"running\"} 1",
            "vigil_exec_restarts_total{service=\"db\"} 0",
            "vigil_service_state{service=\"db\",state=\"running\"} 1",
        ] {
            assert!(
                samples.contains(&expected),
                "{expected} missing in:\n{text}"
            );
        }
        assert!(!text.contains("ghost"), "{text}");

        events.set_hold(&web, Some(vigil_core::lifecycle::HoldKind::Paused));
        let text = metrics.render(&budgets, &events, now);
        assert!(text.contains("vigil_service_state{service=\"web\",state=\"paused\"} 1"));

        // `db` removed: its series go; `web`'s counts stay.
        metrics.configure(&config(&TWO[..TWO.find("[services.db]").unwrap()]));
        let text = metrics.render(&budgets, &events, now);
        assert!(!text.contains("service=\"db\""), "{text}");
        assert!(text.contains(
            "vigil_restarts_total{service=\"web\",source=\"manual\",verdict=\"allowed\"} 1"
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            label("channel", "a\"b\\c\nd"),
            "channel=\"a\\\"b\\\\c\\nd\""
        );
        assert_eq!(label("service", "web"), "service=\"web\"");
    }
}
