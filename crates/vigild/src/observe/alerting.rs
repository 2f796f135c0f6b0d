//! The daemon's side of alerting: the handle `events.rs` raises alerts through, and the
//! ledger as the alert delivery log.
//!
//! Owns which [`Alerter`] is current (a reload swaps it; the old one sends what it has
//! grouped and ends on its own) and how deliveries reach the ledger (queued, never
//! awaited). Must not: decide what is alerted (that is `events.rs`, from the same facts it
//! logs) or wait on anything: [`AlertHub::raise`] runs on the hot path.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use vigil_alerts::{Alert, Alerter, Delivery, DeliveryLog, Deps};
use vigil_config::model::Config;

use crate::ledger::{DeliveryRow, LedgerHandle};
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

    /// Starts the channels of `config`; deliveries are recorded in `ledger`.
    pub fn start(config: &Config, ledger: LedgerHandle) -> AlertHub {
        let deps = Deps {
            host: Arc::from(vigil_alerts::host_name()),
            clock: clock::now,
            log: Arc::new(LedgerLog(ledger)),
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

/// The ledger as the delivery log.
struct LedgerLog(LedgerHandle);

impl DeliveryLog for LedgerLog {
    fn record(&self, d: Delivery) {
        let status = if d.delivered {
            "delivered"
        } else if d.attempts == 0 {
            "dropped"
        } else {
            "failed"
        };
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
