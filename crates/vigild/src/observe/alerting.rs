//! The daemon's side of alerting: the alert router as a subscriber of the event bus, and
//! the ledger as the alert delivery log.
//!
//! Owns which events become which alerts (the `impl Subscriber`: the same facts the log
//! shows, never a second source of them), which [`Alerter`] is current (a reload swaps
//! it; the old one sends what it has grouped and ends on its own) and how deliveries
//! reach the ledger (queued, never awaited). Must not wait on anything: publishing runs
//! on the hot path.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use vigil_alerts::{Alert, Alerter, Delivery, DeliveryLog, Deps, Numbers, Outcome};
use vigil_config::model::{AlertEvent, Config};
use vigil_core::Verdict;
use vigil_core::event::Event;
use vigil_core::guard::{Denial, Skip};
use vigil_core::health::HealthStatus;

use crate::ledger::{DeliveryRow, LedgerHandle};
use crate::observe::bus::{Published, Subscriber};
use crate::observe::metrics::Metrics;
use crate::platform::clock;

/// How long shutdown waits for alert deliveries in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where alerts go: the daemon's current channels, or nowhere (one-shot commands).
#[derive(Clone, Default)]
pub struct AlertHub(Option<Arc<Inner>>);

struct Inner {
    current: watch::Sender<Arc<Alerter>>,
    deps: Deps,
}

impl AlertHub {
    /// Alerts are dropped (one-shot CLI commands only log).
    pub fn none() -> AlertHub {
        AlertHub(None)
    }

    /// Starts the channels of `config`; deliveries are recorded in `ledger` and counted
    /// in `metrics`.
    pub fn start(config: &Config, ledger: LedgerHandle, metrics: Arc<Metrics>) -> AlertHub {
        let deps = Deps {
            host: Arc::from(vigil_alerts::host_name()),
            clock: clock::now,
            log: Arc::new(LedgerLog(ledger, metrics)),
            http: vigil_alerts::http_client(),
        };
        let alerter = Arc::new(Alerter::start(config, deps.clone()));
        let (current, _) = watch::channel(alerter);
        AlertHub(Some(Arc::new(Inner { current, deps })))
    }

    /// The hot path: hands `alert` to the current channels. Never waits.
    pub fn raise(&self, alert: impl FnOnce() -> Alert) {
        if let Some(inner) = &self.0 {
            let alerter = inner.current.borrow();
            if !alerter.is_empty() {
                alerter.notify(alert());
            }
        }
    }

    /// Reload: new channels and routes for `config`. The old channels send what they have
    /// grouped and finish their deliveries in the background.
    pub fn reload(&self, config: &Config) {
        if let Some(inner) = &self.0 {
            let new = Arc::new(Alerter::start(config, inner.deps.clone()));
            let old = inner.current.send_replace(new);
            tokio::spawn(async move {
                if let Some(old) = Arc::into_inner(old) {
                    old.shutdown(SHUTDOWN_GRACE).await;
                }
            });
        }
    }

    /// Shutdown: what is grouped goes out now; deliveries get [`SHUTDOWN_GRACE`].
    pub async fn shutdown(&self) {
        if let Some(inner) = &self.0 {
            let current = inner.current.send_replace(Arc::new(Alerter::none()));
            if let Some(alerter) = Arc::into_inner(current) {
                alerter.shutdown(SHUTDOWN_GRACE).await;
            }
        }
    }
}

/// The ledger as the delivery log (and the metrics' count of deliveries).
struct LedgerLog(LedgerHandle, Arc<Metrics>);

impl DeliveryLog for LedgerLog {
    fn record(&self, d: Delivery) {
        let status = if d.delivered {
            "delivered"
        } else if d.attempts == 0 {
            "dropped"
        } else {
            "failed"
        };
        self.1.delivery(&d.channel, status);
        self.0.record_delivery(DeliveryRow {
            id: 0,
            channel: d.channel,
            kind: d.kind.to_owned(),
            created_at: d.created_at,
            finished_at: d.finished_at,
            status: status.to_owned(),
            attempts: d.attempts,
            alerts: u32::try_from(d.alerts).unwrap_or(u32::MAX),
            events: d.events.iter().map(|e| (*e).to_owned()).collect(),
            services: d.services,
            summary: d.summary,
            error: d.error,
            pid: 0,
        });
    }
}

/// Which events are alerts, and what they say.
impl Subscriber for AlertHub {
    fn publish(&self, p: &Published<'_>) {
        // A service held down or paused by an operator is muted (its events are logged).
        if p.held.is_some() {
            return;
        }
        let base = |event: AlertEvent, message: String| Alert {
            event,
            service: p.service.to_string(),
            check: p.event.check().map(str::to_owned),
            at: p.at,
            message,
            source: None,
            status: None,
            outcome: None,
            numbers: Numbers::default(),
        };
        match p.event {
            Event::Verdict {
                request,
                verdict: verdict @ Verdict::Skipped(skip),
                ..
            } => self.raise(|| {
                let mut a = base(AlertEvent::Skipped, verdict.to_string());
                a.source = Some(request.source.as_str());
                if let Skip::Cooldown { wait, .. } | Skip::Backoff { wait, .. } = skip {
                    a.numbers.wait = Some(*wait);
                }
                a
            }),
            Event::GivenUp { request, verdict } => self.raise(|| {
                let mut a = base(
                    AlertEvent::GivenUp,
                    format!("{}; {verdict}", p.event.message(p.at)),
                );
                a.source = Some(request.source.as_str());
                if let Verdict::Denied(Denial::Limit {
                    count,
                    max,
                    window,
                    rearm_at,
                }) = verdict
                {
                    a.numbers = Numbers {
                        count: Some(*count),
                        max: Some(*max),
                        window: Some(*window),
                        rearm_at: Some(*rearm_at),
                        ..Numbers::default()
                    };
                }
                a
            }),
            Event::RestartFinished {
                request,
                verdict,
                report,
            } => self.raise(|| {
                let (text, outcome) = if report.ok {
                    ("Restart complete", Outcome::Ok)
                } else {
                    ("Restart FAILED", Outcome::Failed)
                };
                let source = request.source.as_str();
                let mut a = base(
                    AlertEvent::Restarted,
                    format!("{text}: {} ({verdict}, source {source})", report.detail),
                );
                a.source = Some(source);
                a.outcome = Some(outcome);
                a.numbers.duration = Some(report.duration);
                if let Verdict::Allowed {
                    count, max, window, ..
                } = verdict
                {
                    a.numbers.count = Some(*count);
                    a.numbers.max = Some(*max);
                    a.numbers.window = Some(*window);
                }
                a
            }),
            Event::CheckStatus { to, recovered, .. } => {
                let event = match to {
                    HealthStatus::Failing => Some(AlertEvent::Failing),
                    HealthStatus::Warning => Some(AlertEvent::Warning),
                    HealthStatus::Passing if *recovered => Some(AlertEvent::Recovered),
                    _ => None,
                };
                if let Some(event) = event {
                    self.raise(|| {
                        let mut a = base(event, p.event.message(p.at));
                        a.status = Some(to.as_str());
                        a
                    });
                }
            }
            Event::WatchdogTimeout {
                pid,
                signal,
                evidence,
            } => self.raise(|| {
                base(
                    AlertEvent::Watchdog,
                    format!(
                        "Watchdog timeout: pid {pid} killed with {signal}. Hang evidence:\n{evidence}"
                    ),
                )
            }),
            Event::FleetUnreachable { .. } => {
                self.raise(|| base(AlertEvent::FleetUnreachable, p.event.message(p.at)));
            }
            Event::FleetRecovered { .. } => {
                self.raise(|| base(AlertEvent::FleetRecovered, p.event.message(p.at)));
            }
            _ => {}
        }
    }
}
