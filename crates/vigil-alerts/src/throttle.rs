//! One channel's deduplication, recovery and grouping, as a pure state machine.
//!
//! Time comes in as a value (`now`); alerts go in through [`Throttle::offer`] and groups
//! come out of [`Throttle::take_due`] once their `group_wait` window has closed. Nothing
//! here reads a clock, sleeps or sends; the channel task around it does (docs/alerts.md).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use vigil_config::model::{AlertEvent, EventSet};
use vigil_core::Timestamp;

use crate::alert::Alert;

/// What [`Throttle::offer`] did with an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Added to the open group.
    Queued,
    /// The same event for the same service and check was sent `ago`, less than `repeat`.
    Duplicate { ago: Duration },
    /// A `recovered` for a check this channel was never told is failing or warning.
    NothingToRecover,
}

type Identity = (AlertEvent, String, Option<String>);

/// Bound on remembered identities; older ones are forgotten once outside `repeat`.
const PRUNE_ABOVE: usize = 4096;

#[derive(Debug)]
pub struct Throttle {
    repeat: Duration,
    group_wait: Duration,
    /// The channel takes `failing` or `warning`, so a `recovered` must close one of them.
    recovery_closes: bool,
    /// When each identity was last let through.
    sent: HashMap<Identity, Timestamp>,
    /// Checks announced as failing or warning and not yet recovered.
    open: HashSet<(String, Option<String>)>,
    pending: Vec<Arc<Alert>>,
    /// When the open group closes.
    closes_at: Option<Timestamp>,
}

impl Throttle {
    pub fn new(repeat: Duration, group_wait: Duration, events: EventSet) -> Throttle {
        Throttle {
            repeat,
            group_wait,
            recovery_closes: events.contains(AlertEvent::Failing)
                || events.contains(AlertEvent::Warning),
            sent: HashMap::new(),
            open: HashSet::new(),
            pending: Vec::new(),
            closes_at: None,
        }
    }

    /// Deduplicates `alert` and, unless suppressed, adds it to the open group (opening one
    /// that closes `group_wait` after `now`).
    pub fn offer(&mut self, alert: Arc<Alert>, now: Timestamp) -> Offer {
        let target = (alert.service.clone(), alert.check.clone());
        match alert.event {
            AlertEvent::Recovered if self.recovery_closes => {
                if !self.open.remove(&target) {
                    return Offer::NothingToRecover;
                }
                // The incident is over: its alerts (the check's, and the service's own)
                // may be announced afresh next time.
                self.sent.retain(|(_, service, check), _| {
                    !(*service == target.0 && (check.is_none() || *check == target.1))
                });
            }
            event => {
                let identity = (event, target.0.clone(), target.1.clone());
                if let Some(last) = self.sent.get(&identity) {
                    let ago = now.saturating_since(*last);
                    if ago < self.repeat {
                        return Offer::Duplicate { ago };
                    }
                }
                self.prune(now);
                self.sent.insert(identity, now);
                if matches!(event, AlertEvent::Failing | AlertEvent::Warning) {
                    self.open.insert(target);
                }
            }
        }
        self.pending.push(alert);
        if self.closes_at.is_none() {
            self.closes_at = Some(now.saturating_add(self.group_wait));
        }
        Offer::Queued
    }

    /// When the open group closes, if one is open.
    pub fn due_at(&self) -> Option<Timestamp> {
        self.closes_at
    }

    /// The open group, once its window has closed at `now`.
    pub fn take_due(&mut self, now: Timestamp) -> Option<Vec<Arc<Alert>>> {
        match self.closes_at {
            Some(at) if at <= now => self.take_all(),
            _ => None,
        }
    }

    /// The open group, now (shutdown, reload).
    pub fn take_all(&mut self) -> Option<Vec<Arc<Alert>>> {
        self.closes_at = None;
        if self.pending.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.pending))
        }
    }

    fn prune(&mut self, now: Timestamp) {
        if self.sent.len() >= PRUNE_ABOVE {
            let repeat = self.repeat;
            self.sent.retain(|_, at| now.saturating_since(*at) < repeat);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Numbers;

    fn alert(event: AlertEvent, service: &str, check: Option<&str>) -> Arc<Alert> {
        Arc::new(Alert {
            event,
            service: service.to_owned(),
            check: check.map(str::to_owned),
            at: Timestamp::from_secs(0),
            message: String::new(),
            source: None,
            status: None,
            outcome: None,
            numbers: Numbers::default(),
        })
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_secs(1_000_000 + secs)
    }

    const HOUR: Duration = Duration::from_secs(3600);
    const TEN: Duration = Duration::from_secs(10);

    fn throttle() -> Throttle {
        Throttle::new(HOUR, TEN, EventSet::default_events())
    }

    #[test]
    fn identical_alerts_within_repeat_are_sent_once() {
        let mut th = throttle();
        let a = || alert(AlertEvent::GivenUp, "web", None);
        assert_eq!(th.offer(a(), t(0)), Offer::Queued);
        assert_eq!(
            th.offer(a(), t(30)),
            Offer::Duplicate {
                ago: Duration::from_secs(30)
            }
        );
        // Another service, another check or another event is not identical.
        assert_eq!(
            th.offer(alert(AlertEvent::GivenUp, "db", None), t(31)),
            Offer::Queued
        );
        assert_eq!(
            th.offer(alert(AlertEvent::Restarted, "web", None), t(32)),
            Offer::Queued
        );
        // After `repeat` it is sent again (a reminder).
        assert_eq!(th.offer(a(), t(3600)), Offer::Queued);
    }

    #[test]
    fn repeat_zero_sends_everything() {
        let mut th = Throttle::new(Duration::ZERO, TEN, EventSet::default_events());
        for i in 0..5 {
            assert_eq!(
                th.offer(alert(AlertEvent::GivenUp, "web", None), t(i)),
                Offer::Queued
            );
        }
    }

    #[test]
    fn recovered_closes_failing_and_lets_the_next_incident_through() {
        let mut th = throttle();
        let failing = || alert(AlertEvent::Failing, "web", Some("health"));
        let recovered = || alert(AlertEvent::Recovered, "web", Some("health"));
        // Nothing to recover before anything failed.
        assert_eq!(th.offer(recovered(), t(0)), Offer::NothingToRecover);
        assert_eq!(th.offer(failing(), t(1)), Offer::Queued);
        assert_eq!(
            th.offer(alert(AlertEvent::GivenUp, "web", None), t(2)),
            Offer::Queued
        );
        assert_eq!(th.offer(recovered(), t(3)), Offer::Queued);
        // Closed once: a second recovery has nothing left to close.
        assert_eq!(th.offer(recovered(), t(4)), Offer::NothingToRecover);
        // A new incident within `repeat` is announced afresh, given-up included.
        assert_eq!(th.offer(failing(), t(5)), Offer::Queued);
        assert_eq!(
            th.offer(alert(AlertEvent::GivenUp, "web", None), t(6)),
            Offer::Queued
        );
        // Recovering one check leaves another check's open alert alone.
        assert_eq!(
            th.offer(alert(AlertEvent::Failing, "web", Some("disk")), t(7)),
            Offer::Queued
        );
        assert_eq!(th.offer(recovered(), t(8)), Offer::Queued);
        assert!(matches!(
            th.offer(alert(AlertEvent::Failing, "web", Some("disk")), t(9)),
            Offer::Duplicate { .. }
        ));
    }

    #[test]
    fn warning_is_closed_by_recovered_too() {
        let mut th = throttle();
        assert_eq!(
            th.offer(alert(AlertEvent::Warning, "web", Some("cert")), t(0)),
            Offer::Queued
        );
        assert_eq!(
            th.offer(alert(AlertEvent::Recovered, "web", Some("cert")), t(1)),
            Offer::Queued
        );
    }

    #[test]
    fn a_channel_without_failing_gets_recoveries_deduplicated_by_repeat() {
        let events: EventSet = [AlertEvent::Recovered].into_iter().collect();
        let mut th = Throttle::new(HOUR, TEN, events);
        let recovered = || alert(AlertEvent::Recovered, "web", Some("health"));
        assert_eq!(th.offer(recovered(), t(0)), Offer::Queued);
        assert!(matches!(
            th.offer(recovered(), t(1)),
            Offer::Duplicate { .. }
        ));
    }

    #[test]
    fn a_storm_is_one_group_per_window() {
        let mut th = throttle();
        for i in 0..200 {
            let name = format!("svc-{i}");
            let at = Timestamp::from_millis(t(0).as_millis() + i * 5);
            assert_eq!(
                th.offer(alert(AlertEvent::Failing, &name, Some("up")), at),
                Offer::Queued
            );
        }
        assert_eq!(th.due_at(), Some(t(10)));
        assert_eq!(th.take_due(t(9)), None);
        let group = th.take_due(t(10)).unwrap();
        assert_eq!(group.len(), 200);
        assert_eq!(th.due_at(), None);
        assert_eq!(th.take_due(t(100)), None);
        // The next alert opens a new window from its own arrival.
        assert_eq!(
            th.offer(alert(AlertEvent::GivenUp, "svc-0", None), t(12)),
            Offer::Queued
        );
        assert_eq!(th.due_at(), Some(t(22)));
        assert_eq!(th.take_all().unwrap().len(), 1);
    }

    #[test]
    fn group_wait_zero_is_due_at_once() {
        let mut th = Throttle::new(HOUR, Duration::ZERO, EventSet::default_events());
        th.offer(alert(AlertEvent::Failing, "web", Some("h")), t(0));
        assert_eq!(th.take_due(t(0)).unwrap().len(), 1);
    }

    #[test]
    fn a_clock_stepping_back_never_reopens_a_duplicate_early() {
        let mut th = throttle();
        th.offer(alert(AlertEvent::GivenUp, "web", None), t(100));
        assert!(matches!(
            th.offer(alert(AlertEvent::GivenUp, "web", None), t(50)),
            Offer::Duplicate { ago } if ago == Duration::ZERO
        ));
    }

    #[test]
    fn memory_is_bounded_by_pruning_old_identities() {
        let mut th = Throttle::new(Duration::from_secs(1), TEN, EventSet::default_events());
        for i in 0..20_000i64 {
            th.offer(
                alert(AlertEvent::Restarted, &format!("s{i}"), None),
                t(i * 2),
            );
            th.take_all();
        }
        assert!(th.sent.len() <= PRUNE_ABOVE, "{}", th.sent.len());
    }
}
