//! Where events go: every [`Event`] about a service is published here once, stamped, and
//! handed to each subscriber (the log line, the alert router; a test's recorder).
//!
//! Owns: stamping (from the publisher's [`Clock`], so simulated tests get simulated
//! times) and fan-out. Must not: block or fail — subscribers only format and queue.

use std::sync::{Arc, Mutex};

use vigil_core::event::Event;
use vigil_core::{ServiceName, Timestamp};

use crate::observe::alerting::AlertHub;
use crate::platform::clock::Clock;

/// One published event.
pub struct Published<'a> {
    pub service: &'a ServiceName,
    pub at: Timestamp,
    pub event: &'a Event,
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
}

impl Events {
    /// The daemon's: log lines and alerts.
    pub fn new(alerts: AlertHub) -> Events {
        Events::to(vec![Arc::new(LogLines), Arc::new(alerts)])
    }

    /// Log lines only (one-shot commands: alerts are the daemon's).
    pub fn log_only() -> Events {
        Events::to(vec![Arc::new(LogLines)])
    }

    pub fn to(subscribers: Vec<Arc<dyn Subscriber>>) -> Events {
        Events {
            subscribers: subscribers.into(),
            clock: None,
        }
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
