//! Prometheus metrics: `GET /metrics` on the control socket and the TCP listener, in the
//! Prometheus text exposition format (0.0.4), encoded by `prometheus-client`. The
//! reference is docs/metrics.md (a test checks it against what is exposed).
//!
//! Owns: the series and their counters, which series exist, and what a scrape reads.
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
//! Encoding is `prometheus-client`'s: a scrape registers one [`Collector`] (`Scrape`: a
//! snapshot of the series and the scrape's inputs, budgets, holds and the time) in a
//! fresh [`Registry`], and the collector hands each family to the crate's descriptor and
//! metric encoders, which write the names (a counter's `_total`, a unit's `_seconds`, an
//! info's `_info`), escape label values, format numbers and histogram buckets. The
//! crate's own metric objects are not used: the counters stay this module's atomics
//! (kept across reloads, dropped with their service) and the gauges are facts read at
//! scrape time, so nothing is copied into the crate's types. The format is the
//! Prometheus text format rather than the crate's default OpenMetrics text, because that
//! is what `promtool check metrics` lints and what the documented names are in (an
//! OpenMetrics counter family is announced without its `_total`).
//!
//! Cardinality is bounded by the configuration: series exist for the services, checks,
//! groups (as `service="@NAME"`) and alert channels of the running configuration, and
//! label values otherwise come from closed sets (sources, verdicts, statuses, states,
//! results); events about anything else are ignored. A reload drops a removed service's
//! series and keeps the counters of what stays. Must not: block or fail when an event is
//! published, or label anything by request. What guards the exposition is its real
//! consumers: `promtool check metrics` and a real Prometheus scrape it in
//! `tests/metrics_e2e.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use vigil_config::model::{Config, DriverSpec};
use vigil_core::event::Event;
use vigil_core::guard::GuardPolicy;
use vigil_core::health::{HealthStatus, RunVerdict};
use vigil_core::lifecycle::HoldKind;
use vigil_core::{RestartRequest, ServiceName, Source, Timestamp, Verdict, decide};

use crate::ledger::{COMMIT_TIMES, LedgerHandle};
use crate::observe::bus::{Events, Published, Subscriber};
use crate::platform::histogram::{CHECK_BOUNDS, Histogram};

/// The `Content-Type` of the exposition (the Prometheus text format, 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A metric family as registered with the encoder, which derives the name Prometheus
/// sees from it ([`Family::exposed`]).
#[derive(Debug)]
pub struct Family {
    /// Without the suffixes the encoder adds: the unit, a counter's `_total`, an info's
    /// `_info`.
    pub name: &'static str,
    /// The unit is seconds (`_seconds`).
    pub seconds: bool,
    pub kind: MetricType,
    pub help: &'static str,
}

impl Family {
    /// The family's name in the exposition (`# TYPE` and its samples, before a
    /// histogram's `_bucket`, `_sum`, `_count`).
    pub fn exposed(&self) -> String {
        let unit = if self.seconds { "_seconds" } else { "" };
        let suffix = match self.kind {
            MetricType::Counter => "_total",
            MetricType::Info => "_info",
            _ => "",
        };
        format!("{}{unit}{suffix}", self.name)
    }

    /// Its type in the exposition's `# TYPE` line (an info is a gauge there).
    pub fn exposed_type(&self) -> &'static str {
        match self.kind {
            MetricType::Counter => "counter",
            MetricType::Histogram => "histogram",
            MetricType::Gauge | MetricType::Info => "gauge",
            MetricType::Unknown => "untyped",
        }
    }

    fn describe<'s>(
        &'s self,
        encoder: &'s mut DescriptorEncoder<'_>,
    ) -> Result<MetricEncoder<'s>, std::fmt::Error> {
        let unit = self.seconds.then_some(&SECONDS);
        encoder.encode_descriptor(self.name, self.help, unit, self.kind)
    }
}

static SECONDS: Unit = Unit::Seconds;

const fn family(name: &'static str, kind: MetricType, help: &'static str) -> Family {
    Family {
        name,
        seconds: false,
        kind,
        help,
    }
}

const fn in_seconds(family: Family) -> Family {
    Family {
        seconds: true,
        ..family
    }
}

static BUILD_INFO: Family = family(
    "vigil_build",
    MetricType::Info,
    "Always 1; the version of the running vigil as a label.",
);
static CHECK_UP: Family = family(
    "vigil_check_up",
    MetricType::Gauge,
    "1 when the check's last run passed (pass or warn), 0 when it failed.",
);
static CHECK_STATUS: Family = family(
    "vigil_check_status",
    MetricType::Gauge,
    "The check's health status after its thresholds and grace: 1 for the current status.",
);
static CHECK_RUNS: Family = family(
    "vigil_check_runs",
    MetricType::Counter,
    "Check runs by result: pass, warn, fail, or void (Vigil itself was stalled).",
);
static CHECK_DURATION: Family = in_seconds(family(
    "vigil_check_duration",
    MetricType::Histogram,
    "How long check runs took, all attempts and retry delays included.",
));
static RESTARTS: Family = family(
    "vigil_restarts",
    MetricType::Counter,
    "Restart requests decided by the guard, by source and verdict.",
);
static BUDGET_USED: Family = family(
    "vigil_restart_budget_used",
    MetricType::Gauge,
    "Restarts counted in the guard's current window.",
);
static BUDGET_LIMIT: Family = family(
    "vigil_restart_budget_limit",
    MetricType::Gauge,
    "The guard's max_restarts per window.",
);
static GIVEN_UP: Family = family(
    "vigil_service_given_up",
    MetricType::Gauge,
    "1 while the restart budget is spent and automatic restarts are refused.",
);
static SERVICE_STATE: Family = family(
    "vigil_service_state",
    MetricType::Gauge,
    "The service's state: running, down (an exec service's process is not running), paused, stopped, given_up; 1 for the current one.",
);
static EXEC_RESTARTS: Family = family(
    "vigil_exec_restarts",
    MetricType::Counter,
    "Times an exec service's process was started again since the daemon started.",
);
static EXEC_UPTIME: Family = in_seconds(family(
    "vigil_exec_uptime",
    MetricType::Gauge,
    "Since when an exec service's process runs; 0 while it does not.",
));
static DELIVERIES: Family = family(
    "vigil_alert_deliveries",
    MetricType::Counter,
    "Alert deliveries by channel and result: delivered, failed (after its retries), dropped (a full queue).",
);
static LEDGER_COMMIT: Family = in_seconds(family(
    "vigil_ledger_commit",
    MetricType::Histogram,
    "How long the ledger's transaction commits took (guard decisions and outcomes, batched check states).",
));

/// Every metric family, in the exposition's order; each is announced (`HELP`, `TYPE`)
/// even when it has no series yet (no exec service, no channel).
pub static FAMILIES: [&Family; 14] = [
    &BUILD_INFO,
    &CHECK_UP,
    &CHECK_STATUS,
    &CHECK_RUNS,
    &CHECK_DURATION,
    &RESTARTS,
    &BUDGET_USED,
    &BUDGET_LIMIT,
    &GIVEN_UP,
    &SERVICE_STATE,
    &EXEC_RESTARTS,
    &EXEC_UPTIME,
    &DELIVERIES,
    &LEDGER_COMMIT,
];

const VERDICTS: [&str; 3] = ["allowed", "skipped", "denied"];
/// Check run results, in [`verdict_index`] order and then `void`.
const RESULTS: [&str; 4] = ["pass", "warn", "fail", "void"];
/// Health statuses in [`status_index`] order.
const STATUSES: [&str; 4] = ["unknown", "passing", "warning", "failing"];
const STATES: [&str; 5] = ["running", "down", "paused", "stopped", "given_up"];
const DELIVERY_RESULTS: [&str; 3] = ["delivered", "failed", "dropped"];

/// An exec process that is not running (its start time's stand-in).
const NOT_RUNNING: i64 = i64::MIN;

/// The daemon's metrics: subscribe it to the event bus, give it the alert deliveries,
/// [`Metrics::configure`] it on every (re)load, [`Metrics::render`] it on a scrape.
pub struct Metrics {
    /// Replaced whole by a reload; a scrape encodes the one it took.
    series: RwLock<Arc<Series>>,
}

#[derive(Default)]
struct Series {
    /// Services and groups (`@NAME`) of the running configuration.
    services: BTreeMap<ServiceName, Arc<ServiceSeries>>,
    channels: BTreeMap<String, Arc<ChannelSeries>>,
}

struct ServiceSeries {
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
    /// The last run's verdict: 0 none yet, else 1 + its index in [`RESULTS`].
    last: AtomicU8,
    /// The health status's index in [`STATUSES`].
    status: AtomicU8,
    runs: [AtomicU64; 4],
    duration: Histogram,
}

#[derive(Default)]
struct ChannelSeries {
    deliveries: [AtomicU64; 3],
}

impl ServiceSeries {
    fn new(policy: GuardPolicy, exec: bool) -> ServiceSeries {
        ServiceSeries {
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
            policy,
            exec: self.exec,
            counts: self.counts.clone(),
            checks,
        }
    }
}

impl CheckSeries {
    fn new() -> CheckSeries {
        CheckSeries {
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

/// The scrape-time facts from the ledger: per service or group, the restarts counted in
/// its window and whether the guard would deny (given up).
#[derive(Clone, Debug, Default)]
pub struct Budgets(pub BTreeMap<ServiceName, (u32, bool)>);

impl Metrics {
    pub fn new(config: &Config) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics {
            series: RwLock::default(),
        });
        metrics.configure(config);
        metrics
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Arc<Series>> {
        self.series.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The series of `config`'s services, checks, groups and channels: new ones start at
    /// zero, the others keep their counts, the rest disappear.
    pub fn configure(&self, config: &Config) {
        let mut current = self.series.write().unwrap_or_else(|p| p.into_inner());
        let mut services = BTreeMap::new();
        for s in &config.services {
            let exec = matches!(s.driver, DriverSpec::Exec(_));
            let old = current.services.get(&s.name).filter(|o| o.exec == exec);
            let checks = s
                .checks
                .iter()
                .map(|c| {
                    let name = c.name.to_string();
                    let kept = old.and_then(|o| o.checks.get(&name)).cloned();
                    (name, kept.unwrap_or_else(|| Arc::new(CheckSeries::new())))
                })
                .collect();
            let series = match old {
                Some(o) => o.updated(s.guard.clone(), checks),
                None => ServiceSeries {
                    checks,
                    ..ServiceSeries::new(s.guard.clone(), exec)
                },
            };
            services.insert(s.name.clone(), Arc::new(series));
        }
        for g in &config.groups {
            let key = g.ledger_key();
            let series = match current.services.get(&key) {
                Some(o) => o.updated(g.guard.clone(), BTreeMap::new()),
                None => ServiceSeries::new(g.guard.clone(), false),
            };
            services.insert(key, Arc::new(series));
        }
        let channels = config
            .alerts
            .iter()
            .map(|c| {
                let kept = current.channels.get(&c.name).cloned();
                (c.name.clone(), kept.unwrap_or_default())
            })
            .collect();
        *current = Arc::new(Series { services, channels });
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
        let series = self.read();
        if let Some(c) = series
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
        let series = self.read().clone();
        let checks: usize = series.services.values().map(|s| s.checks.len()).sum();
        let capacity = 4096 + checks * 1600 + series.services.len() * 600;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape {
            series,
            budgets: budgets.clone(),
            events: events.clone(),
            now,
        }));
        let mut out = String::with_capacity(capacity);
        // Writing to a `String` does not fail, and neither does the collector.
        if let Err(error) = prometheus_text::encode(&mut out, &registry) {
            tracing::warn!(%error, "metrics: the exposition could not be encoded");
        }
        out
    }

    fn counts(&self, key: &ServiceName) -> Option<Arc<ServiceCounts>> {
        self.read().services.get(key).map(|s| s.counts.clone())
    }
}

impl Series {
    /// Every check: its service's name, its name, its series.
    fn checks(&self) -> impl Iterator<Item = (&str, &str, &CheckSeries)> {
        self.services.iter().flat_map(|(service, s)| {
            s.checks
                .iter()
                .map(|(check, c)| (service.as_str(), check.as_str(), &**c))
        })
    }
}

/// One scrape: the series it encodes and its inputs, as a collector of the registry the
/// scrape encodes.
struct Scrape {
    series: Arc<Series>,
    budgets: Budgets,
    events: Events,
    now: Timestamp,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape")
            .field("budgets", &self.budgets)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Scrape {
    /// The service's state for `vigil_service_state`: a hold, given up, an exec service's
    /// process down, or running.
    fn state(&self, key: &ServiceName, s: &ServiceSeries) -> &'static str {
        let given_up = self.budgets.0.get(key).is_some_and(|(_, g)| *g);
        match self.events.hold_of(key) {
            Some(HoldKind::Stopped) => "stopped",
            Some(HoldKind::Paused) => "paused",
            None if given_up => "given_up",
            None if s.exec && s.counts.exec_since.load(Ordering::Relaxed) == NOT_RUNNING => "down",
            None => "running",
        }
    }
}

/// A histogram's sample from `h`; `buckets`: scratch space.
fn histogram(
    m: &mut MetricEncoder<'_>,
    h: &Histogram,
    buckets: &mut Vec<(f64, u64)>,
) -> Result<(), std::fmt::Error> {
    let count = h.buckets_into(buckets);
    m.encode_histogram::<NoLabelSet>(h.sum().as_secs_f64(), count, buckets, None)
}

/// A counter's sample (no exemplar).
fn counter(m: &mut MetricEncoder<'_>, n: u64) -> Result<(), std::fmt::Error> {
    m.encode_counter::<NoLabelSet, u64, u64>(&n, None)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let series = &*self.series;
        let mut buckets = Vec::with_capacity(16);

        BUILD_INFO
            .describe(&mut encoder)?
            .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;

        let mut m = CHECK_UP.describe(&mut encoder)?;
        for (service, check, c) in series.checks() {
            let up: u64 = match c.last.load(Ordering::Relaxed) {
                0 => continue,
                3 => 0,
                _ => 1,
            };
            m.encode_family(&[("service", service), ("check", check)])?
                .encode_gauge(&up)?;
        }

        let mut m = CHECK_STATUS.describe(&mut encoder)?;
        for (service, check, c) in series.checks() {
            let current = usize::from(c.status.load(Ordering::Relaxed));
            for (i, status) in STATUSES.into_iter().enumerate() {
                let labels = [("service", service), ("check", check), ("status", status)];
                m.encode_family(&labels)?
                    .encode_gauge(&u64::from(current == i))?;
            }
        }

        let mut m = CHECK_RUNS.describe(&mut encoder)?;
        for (service, check, c) in series.checks() {
            for (runs, result) in c.runs.iter().zip(RESULTS) {
                let n = runs.load(Ordering::Relaxed);
                if n > 0 {
                    let labels = [("service", service), ("check", check), ("result", result)];
                    counter(&mut m.encode_family(&labels)?, n)?;
                }
            }
        }

        let mut m = CHECK_DURATION.describe(&mut encoder)?;
        for (service, check, c) in series.checks() {
            let labels = [("service", service), ("check", check)];
            histogram(&mut m.encode_family(&labels)?, &c.duration, &mut buckets)?;
        }

        let mut m = RESTARTS.describe(&mut encoder)?;
        for (key, s) in &series.services {
            for (by_verdict, source) in s.counts.restarts.iter().zip(Source::ALL) {
                for (n, verdict) in by_verdict.iter().zip(VERDICTS) {
                    let n = n.load(Ordering::Relaxed);
                    if n > 0 {
                        let labels = [
                            ("service", key.as_str()),
                            ("source", source.as_str()),
                            ("verdict", verdict),
                        ];
                        counter(&mut m.encode_family(&labels)?, n)?;
                    }
                }
            }
        }

        let mut m = BUDGET_USED.describe(&mut encoder)?;
        for key in series.services.keys() {
            if let Some((used, _)) = self.budgets.0.get(key) {
                m.encode_family(&[("service", key.as_str())])?
                    .encode_gauge(&u64::from(*used))?;
            }
        }

        let mut m = BUDGET_LIMIT.describe(&mut encoder)?;
        for (key, s) in &series.services {
            m.encode_family(&[("service", key.as_str())])?
                .encode_gauge(&u64::from(s.policy.max_restarts))?;
        }

        let mut m = GIVEN_UP.describe(&mut encoder)?;
        for key in series.services.keys() {
            if let Some((_, given_up)) = self.budgets.0.get(key) {
                m.encode_family(&[("service", key.as_str())])?
                    .encode_gauge(&u64::from(*given_up))?;
            }
        }

        let mut m = SERVICE_STATE.describe(&mut encoder)?;
        for (key, s) in &series.services {
            let state = self.state(key, s);
            for st in STATES {
                m.encode_family(&[("service", key.as_str()), ("state", st)])?
                    .encode_gauge(&u64::from(st == state))?;
            }
        }

        let mut m = EXEC_RESTARTS.describe(&mut encoder)?;
        for (key, s) in series.services.iter().filter(|(_, s)| s.exec) {
            let starts = s.counts.exec_starts.load(Ordering::Relaxed);
            counter(
                &mut m.encode_family(&[("service", key.as_str())])?,
                starts.saturating_sub(1),
            )?;
        }

        let mut m = EXEC_UPTIME.describe(&mut encoder)?;
        for (key, s) in series.services.iter().filter(|(_, s)| s.exec) {
            let since = s.counts.exec_since.load(Ordering::Relaxed);
            let up = if since == NOT_RUNNING {
                0.0
            } else {
                (self.now.as_millis() - since).max(0) as f64 / 1000.0
            };
            m.encode_family(&[("service", key.as_str())])?
                .encode_gauge(&up)?;
        }

        let mut m = DELIVERIES.describe(&mut encoder)?;
        for (name, c) in &series.channels {
            for (n, result) in c.deliveries.iter().zip(DELIVERY_RESULTS) {
                let labels = [("channel", name.as_str()), ("result", result)];
                counter(&mut m.encode_family(&labels)?, n.load(Ordering::Relaxed))?;
            }
        }

        let mut m = LEDGER_COMMIT.describe(&mut encoder)?;
        histogram(&mut m, &COMMIT_TIMES, &mut buckets)
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
        for f in FAMILIES {
            let (name, kind) = (f.exposed(), f.exposed_type());
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

    /// The exposition is what the rest of the repository knows by name: every family
    /// under the name docs/metrics.md gives it (a counter with `_total`, a unit's
    /// `_seconds`), histograms with `le` buckets ending at `+Inf`, `_sum` and `_count`.
    #[test]
    fn the_encoder_names_families_and_buckets_as_documented() {
        let exposed: Vec<String> = FAMILIES.iter().map(|f| f.exposed()).collect();
        assert_eq!(
            exposed,
            [
                "vigil_build_info",
                "vigil_check_up",
                "vigil_check_status",
                "vigil_check_runs_total",
                "vigil_check_duration_seconds",
                "vigil_restarts_total",
                "vigil_restart_budget_used",
                "vigil_restart_budget_limit",
                "vigil_service_given_up",
                "vigil_service_state",
                "vigil_exec_restarts_total",
                "vigil_exec_uptime_seconds",
                "vigil_alert_deliveries_total",
                "vigil_ledger_commit_seconds",
            ]
        );
        let metrics = Metrics::new(&config(TWO));
        let events = Events::to(vec![metrics.clone()]);
        let now = Timestamp::from_millis(1_000_000);
        let text = metrics.render(&Budgets::default(), &events, now);
        let version = env!("CARGO_PKG_VERSION");
        let http = "service=\"web\",check=\"http\"";
        for expected in [
            format!("vigil_build_info{{version=\"{version}\"}} 1"),
            format!("vigil_check_duration_seconds_bucket{{{http},le=\"0.005\"}} 0"),
            format!("vigil_check_duration_seconds_bucket{{{http},le=\"2.5\"}} 0"),
            format!("vigil_check_duration_seconds_bucket{{{http},le=\"30\"}} 0"),
            format!("vigil_check_duration_seconds_bucket{{{http},le=\"+Inf\"}} 0"),
            format!("vigil_check_duration_seconds_count{{{http}}} 0"),
            "vigil_exec_uptime_seconds{service=\"db\"} 0.0".to_owned(),
            "vigil_service_state{service=\"db\",state=\"down\"} 1".to_owned(),
            "vigil_ledger_commit_seconds_bucket{le=\"5e-05\"}".to_owned(),
            "vigil_ledger_commit_seconds_bucket{le=\"1\"}".to_owned(),
            "vigil_ledger_commit_seconds_bucket{le=\"+Inf\"}".to_owned(),
            "vigil_ledger_commit_seconds_sum ".to_owned(),
        ] {
            assert!(text.contains(&expected), "{expected} missing in:\n{text}");
        }
        assert!(
            text.contains("# HELP vigil_restarts_total Restart requests decided by the guard, by source and verdict.\n# TYPE vigil_restarts_total counter\n"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF"),
            "the Prometheus text format has no EOF marker"
        );
        let buckets = text
            .lines()
            .filter(|l| l.starts_with("vigil_check_duration_seconds_bucket{"))
            .count();
        assert_eq!(buckets, CHECK_BOUNDS.len() + 1);
    }

    /// Label values are escaped (`\\`, `"`, line feeds) by the encoder.
    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::new(&config(""));
        let name = "a\"b\\c\nd";
        let series = Series {
            services: BTreeMap::new(),
            channels: BTreeMap::from([(name.to_owned(), Arc::default())]),
        };
        *metrics.series.write().unwrap() = Arc::new(series);
        let text = metrics.render(
            &Budgets::default(),
            &Events::to(Vec::new()),
            Timestamp::from_millis(0),
        );
        assert!(
            text.contains(
                "vigil_alert_deliveries_total{channel=\"a\\\"b\\\\c\\nd\",result=\"delivered\"} 0\n"
            ),
            "{text}"
        );
    }
}
