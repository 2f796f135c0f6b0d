//! Where events go: every [`Event`] about a service is published here once, stamped, and
//! handed to each subscriber (the log line, the alert router, the metrics; a test's
//! recorder).
//!
//! Owns: stamping (from the publisher's [`Clock`], so simulated tests get simulated
//! times) and fan-out. Must not: block or fail — subscribers only format and queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use vigil_core::event::Event;
use vigil_core::lifecycle::HoldKind;
use vigil_core::{ServiceName, Timestamp};

use crate::observe::alerting::AlertHub;
use crate::observe::metrics::Metrics;
use crate::platform::clock::Clock;

/// One published event.
pub struct Published<'a> {
    pub service: &'a ServiceName,
    pub at: Timestamp,
    pub event: &'a Event,
    /// An operator's stop or pause holds the service: its events are logged, not alerted.
    pub held: Option<HoldKind>,
}

/// Something that hears every published event.
pub trait Subscriber: Send + Sync {
    fn publish(&self, published: &Published<'_>);
}

/// The publishing side, cheap to clone: each actor holds one.
#[derive(Clone)]
pub struct Events {
    subscribers: Arc<[Arc<dyn Subscriber>]>,
    clock: Option<Clock>,
    holds: Arc<Holds>,
}

/// Which services an operator's stop or pause holds (each actor keeps its own entry
/// current), so that every event about them, from any source, is marked `held`.
#[derive(Default)]
struct Holds {
    /// How many entries `map` has: publishing reads no lock while nothing is held.
    count: AtomicUsize,
    map: RwLock<HashMap<ServiceName, HoldKind>>,
}

impl Events {
    /// The daemon's: log lines, alerts and metrics.
    pub fn new(alerts: AlertHub, metrics: Arc<Metrics>) -> Events {
        Events::to(vec![Arc::new(LogLines), Arc::new(alerts), metrics])
    }

    /// Log lines only (one-shot commands: alerts are the daemon's).
    pub fn log_only() -> Events {
        Events::to(vec![Arc::new(LogLines)])
    }

    pub fn to(subscribers: Vec<Arc<dyn Subscriber>>) -> Events {
        Events {
            subscribers: subscribers.into(),
            clock: None,
            holds: Arc::default(),
        }
    }

    /// Marks `service` as held (or no longer) for every event published from now on.
    pub fn set_hold(&self, service: &ServiceName, hold: Option<HoldKind>) {
        let mut map = self.holds.map.write().unwrap_or_else(|p| p.into_inner());
        match hold {
            Some(kind) => map.insert(service.clone(), kind),
            None => map.remove(service),
        };
        self.holds.count.store(map.len(), Ordering::Release);
    }

    /// The hold `set_hold` last recorded for `service`.
    pub fn hold_of(&self, service: &ServiceName) -> Option<HoldKind> {
        if self.holds.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let map = self.holds.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(service).copied()
    }

    /// Stamps events with `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Events {
        self.clock = Some(clock);
        self
    }

    pub fn publish(&self, service: &ServiceName, event: Event) {
        let at = match &self.clock {
            Some(c) => c.wall(),
            None => crate::platform::clock::now(),
        };
        let published = Published {
            service,
            at,
            event: &event,
            held: self.hold_of(service),
        };
        for s in self.subscribers.iter() {
            s.publish(&published);
        }
    }
}

/// Renders each event as a log line.
struct LogLines;

impl Subscriber for LogLines {
    fn publish(&self, p: &Published<'_>) {
        crate::observe::log::event(p);
    }
}

/// Keeps every event, for tests that assert on events rather than on log text.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<(ServiceName, Timestamp, Event)>>>);

impl Recorder {
    pub fn events(&self) -> Vec<(ServiceName, Timestamp, Event)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Subscriber for Recorder {
    fn publish(&self, p: &Published<'_>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push((
            p.service.clone(),
            p.at,
            p.event.clone(),
        ));
    }
}
