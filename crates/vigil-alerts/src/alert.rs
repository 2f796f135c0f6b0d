//! The values that travel: one [`Alert`] (something that happened to a service) and one
//! [`Message`] (a group of alerts that goes out through one channel as one delivery).
//!
//! Plain data: no I/O, no clock. The daemon fills an `Alert` from the same facts it logs.

use std::sync::Arc;
use std::time::Duration;

use vigil_config::model::AlertEvent;
use vigil_core::Timestamp;

/// One thing that happened, as every channel sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub event: AlertEvent,
    pub service: String,
    /// `None` for service-level events (restarts, given-up).
    pub check: Option<String>,
    /// When it happened.
    pub at: Timestamp,
    /// The log line's message, with its numbers in words.
    pub message: String,
    /// The restart source (`health`, `schedule`, ...), when a restart request is involved.
    pub source: Option<&'static str>,
    /// A check's status after the change (`failing`, `warning`, `passing`).
    pub status: Option<&'static str>,
    /// `restarted` only: whether the restart worked.
    pub outcome: Option<Outcome>,
    pub numbers: Numbers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
        }
    }
}

/// The numbers behind an alert, each present only when known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Numbers {
    /// Restarts counted in the window.
    pub count: Option<u32>,
    /// The budget (`max_restarts`).
    pub max: Option<u32>,
    pub window: Option<Duration>,
    /// How long until a skipped restart would be allowed.
    pub wait: Option<Duration>,
    /// When a given-up service re-arms.
    pub rearm_at: Option<Timestamp>,
    /// How long the restart took.
    pub duration: Option<Duration>,
}

impl Numbers {
    pub fn is_empty(&self) -> bool {
        *self == Numbers::default()
    }
}

/// The prefix of alerts that need a person.
pub const ACTION_REQUIRED: &str = "ACTION REQUIRED: ";

impl Alert {
    /// A short headline for the event.
    pub fn title(&self) -> &'static str {
        match (self.event, self.outcome) {
            (AlertEvent::Restarted, Some(Outcome::Failed)) => "Restart FAILED",
            (AlertEvent::Restarted, _) => "Restart complete",
            (AlertEvent::Skipped, _) => "Restart skipped",
            (AlertEvent::GivenUp, _) => "ACTION REQUIRED: automatic restarts stopped",
            (AlertEvent::Failing, _) => "Check failing",
            (AlertEvent::Recovered, _) => "Check recovered",
            (AlertEvent::Warning, _) => "Check warning",
            (AlertEvent::Watchdog, _) => "Watchdog timeout",
            (AlertEvent::FleetUnreachable, _) => "Fleet database unreachable",
            (AlertEvent::FleetRecovered, _) => "Fleet database reachable again",
        }
    }

    /// `web` or `web/health`.
    pub fn subject(&self) -> String {
        match &self.check {
            Some(check) => format!("{}/{check}", self.service),
            None => self.service.clone(),
        }
    }

    /// One line: `ACTION REQUIRED: web: automatic restarts stopped`, `web/health: Check
    /// failing`.
    pub fn headline(&self) -> String {
        let title = self.title();
        match title.strip_prefix(ACTION_REQUIRED) {
            Some(rest) => format!("{ACTION_REQUIRED}{}: {rest}", self.subject()),
            None => format!("{}: {title}", self.subject()),
        }
    }

    /// Whether a person must act.
    pub fn needs_action(&self) -> bool {
        matches!(self.event, AlertEvent::GivenUp)
            || matches!(
                (self.event, self.outcome),
                (AlertEvent::Restarted, Some(Outcome::Failed))
            )
    }
}

/// A group of alerts delivered through one channel as one message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub channel: Arc<str>,
    /// The host Vigil runs on.
    pub host: Arc<str>,
    /// Sent by `vigil alert test`.
    pub test: bool,
    /// When the group was closed and the message assembled.
    pub created_at: Timestamp,
    /// At least one, in arrival order.
    pub alerts: Vec<Arc<Alert>>,
}

impl Message {
    /// One line for notifications and subjects: the only alert's headline, or a count by
    /// event for a group (`ACTION REQUIRED: 3 alerts: 2 failing, 1 given-up (api, db)`).
    pub fn summary(&self) -> String {
        let test = if self.test { "TEST: " } else { "" };
        if let [only] = self.alerts.as_slice() {
            return format!("{test}{}", only.headline());
        }
        let mut counts: Vec<(AlertEvent, usize)> = Vec::new();
        for a in &self.alerts {
            match counts.iter_mut().find(|(e, _)| *e == a.event) {
                Some((_, n)) => *n += 1,
                None => counts.push((a.event, 1)),
            }
        }
        let counts: Vec<String> = counts.iter().map(|(e, n)| format!("{n} {e}")).collect();
        let mut services: Vec<&str> = Vec::new();
        for a in &self.alerts {
            if !services.contains(&a.service.as_str()) {
                services.push(&a.service);
            }
        }
        let shown = services.len().min(3);
        let mut names = services[..shown].join(", ");
        if services.len() > shown {
            names.push_str(&format!(" and {} more", services.len() - shown));
        }
        let action = if self.alerts.iter().any(|a| a.needs_action()) {
            ACTION_REQUIRED
        } else {
            ""
        };
        format!(
            "{test}{action}{} alerts: {} ({names})",
            self.alerts.len(),
            counts.join(", ")
        )
    }

    /// The identical `service` of every alert, if they share one.
    pub fn single_service(&self) -> Option<&str> {
        let first = self.alerts.first()?.service.as_str();
        self.alerts
            .iter()
            .all(|a| a.service == first)
            .then_some(first)
    }
}
