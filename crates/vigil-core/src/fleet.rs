//! The fleet's decision: may this host restart a member of a fleet key now, given what
//! the whole fleet is doing (SPEC §10).
//!
//! The local guard decides first ([`crate::guard::decide`]); an allowed restart of a
//! service with a `fleet_key` then asks this function, with a snapshot of the key's
//! state read from PostgreSQL inside the transaction that takes the lease (the edge,
//! `vigild::fleet`). Like the local guard it is a pure function of (rules, snapshot,
//! request, now): `now` is the database's clock, so hosts whose clocks disagree still
//! agree on which leases have expired.
//!
//! Invariants (unit-tested below):
//! - an unforced request is never granted while `max_concurrent` unexpired leases of the
//!   key are held, nor while `max_restarts` leases of the key started inside the window,
//!   nor while fewer than `min_healthy` *other* members report passing;
//! - a forced request is always granted (it still takes a lease, so the fleet sees it);
//! - every refusal names a wait strictly greater than zero.

use std::fmt;
use std::time::Duration;

use crate::guard::per_window;
use crate::time::{Timestamp, format_duration};

/// The fleet-wide rules of one key (`[fleet.keys.NAME]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetRules {
    /// At most this many restarts of the key in progress across the fleet (default 1).
    pub max_concurrent: u32,
    /// At most `max` restarts of the key started inside a rolling `window`, fleet-wide.
    pub budget: Option<FleetBudget>,
    /// No automatic restart while fewer than this many other members report passing.
    pub min_healthy: Option<u32>,
}

impl Default for FleetRules {
    fn default() -> Self {
        FleetRules {
            max_concurrent: 1,
            budget: None,
            min_healthy: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetBudget {
    pub max_restarts: u32,
    pub window: Duration,
}

/// A lease some host holds on the key (unexpired, unreleased).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLease {
    pub host: String,
    pub service: String,
    pub started: Timestamp,
    pub expires: Timestamp,
}

/// A service of the key on some host, as it last reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub host: String,
    pub service: String,
    /// Its checks pass (or only warn), and its host was seen recently.
    pub healthy: bool,
}

/// What the fleet knows about one key, read in the lease's transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetSnapshot {
    /// Unexpired, unreleased leases.
    pub held: Vec<HeldLease>,
    /// When each lease of the key started, for those inside the budget's window (any
    /// order; older ones are ignored).
    pub started: Vec<Timestamp>,
    /// Every member of the key, this one included.
    pub members: Vec<Member>,
}

/// Who asks: this host's service.
#[derive(Clone, Copy, Debug)]
pub struct Asker<'a> {
    pub key: &'a str,
    pub host: &'a str,
    pub service: &'a str,
    /// `vigil restart --force`: skips `min_healthy` and the budget, and never waits for
    /// another lease; it still takes one.
    pub forced: bool,
}

/// Why the fleet refused a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetRefusal {
    /// `max_concurrent` leases are held: names the one that started first.
    Busy {
        key: String,
        held: u32,
        max: u32,
        host: String,
        service: String,
        ago: Duration,
        /// Until the first held lease expires (it may be released sooner).
        wait: Duration,
    },
    /// `max_restarts` leases started inside the window.
    Budget {
        key: String,
        count: u32,
        max: u32,
        window: Duration,
        wait: Duration,
    },
    /// Fewer than `min_healthy` other members pass.
    MinHealthy {
        key: String,
        healthy: u32,
        members: u32,
        need: u32,
        wait: Duration,
    },
    /// PostgreSQL could not be asked within `timeout` and `on_unreachable = "deny"`.
    Unreachable { key: String, error: String },
}

impl FleetRefusal {
    /// How long until asking again could be granted (`None`: unknown).
    /// A busy key is asked again at most [`BUSY_RECHECK`] later: its lease is usually
    /// released well before it would expire.
    pub fn wait(&self) -> Option<Duration> {
        match self {
            FleetRefusal::Busy { wait, .. } => Some((*wait).min(BUSY_RECHECK)),
            FleetRefusal::Budget { wait, .. } | FleetRefusal::MinHealthy { wait, .. } => {
                Some(*wait)
            }
            FleetRefusal::Unreachable { .. } => None,
        }
    }

    /// `busy`, `budget`, `min_healthy`, `unreachable`.
    pub fn rule(&self) -> &'static str {
        match self {
            FleetRefusal::Busy { .. } => "busy",
            FleetRefusal::Budget { .. } => "budget",
            FleetRefusal::MinHealthy { .. } => "min_healthy",
            FleetRefusal::Unreachable { .. } => "unreachable",
        }
    }

    pub fn key(&self) -> &str {
        match self {
            FleetRefusal::Busy { key, .. }
            | FleetRefusal::Budget { key, .. }
            | FleetRefusal::MinHealthy { key, .. }
            | FleetRefusal::Unreachable { key, .. } => key,
        }
    }
}

impl fmt::Display for FleetRefusal {
    /// After "Restart SKIPPED: ": `fleet: 1/1 restarting on host-b, started 4s ago (...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetRefusal::Busy {
                key,
                held,
                max,
                host,
                service,
                ago,
                wait,
            } => write!(
                f,
                "fleet: {held}/{max} restarting on {host}, started {} ago (key {key}, {service} on {host}; its lease expires in {} unless released sooner)",
                format_duration(*ago),
                format_duration(*wait)
            ),
            FleetRefusal::Budget {
                key,
                count,
                max,
                window,
                wait,
            } => write!(
                f,
                "fleet: limit reached for key {key} ({count}/{max} {}, re-arms in {})",
                per_window(*window),
                format_duration(*wait)
            ),
            FleetRefusal::MinHealthy {
                key,
                healthy,
                members,
                need,
                ..
            } => write!(
                f,
                "fleet: {healthy}/{members} of key {key} passing, need {need} (counting this one as failing)"
            ),
            FleetRefusal::Unreachable { key, error } => write!(
                f,
                "fleet unreachable for key {key} ({error}); on_unreachable = deny"
            ),
        }
    }
}

/// What an allowed restart's verdict says about the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetNote {
    /// The lease was taken: `held` leases of the key (this one included) of `max`.
    Leased {
        key: String,
        held: u32,
        max: u32,
        forced: bool,
    },
    /// PostgreSQL could not be asked within `timeout`; `on_unreachable = "local"` (or a
    /// manual request): the local guard alone decided.
    Unreachable { key: String, error: String },
}

impl fmt::Display for FleetNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetNote::Leased {
                key,
                held,
                max,
                forced,
            } => write!(
                f,
                "fleet: lease on {key}, {held}/{max} restarting{}",
                if *forced { ", forced" } else { "" }
            ),
            FleetNote::Unreachable { key, error } => write!(
                f,
                "fleet unreachable for key {key} ({error}): the local guard alone decided"
            ),
        }
    }
}

/// How often a restart refused because the key is busy asks again (a lease's release is
/// not announced; asking is one short transaction).
pub const BUSY_RECHECK: Duration = Duration::from_secs(1);

/// How long a `min_healthy` refusal waits before asking again: the members' states are
/// published about once a second, so sooner says nothing new.
pub const MIN_HEALTHY_RECHECK: Duration = Duration::from_secs(2);

/// Decides whether `asker` may take a lease on its key at `now` (the database's clock).
/// Rules in this order: budget, min_healthy, max_concurrent; a forced request skips them
/// all.
pub fn decide_fleet(
    rules: &FleetRules,
    snapshot: &FleetSnapshot,
    asker: Asker<'_>,
    now: Timestamp,
) -> Result<FleetNote, FleetRefusal> {
    let held: Vec<&HeldLease> = snapshot.held.iter().filter(|l| l.expires > now).collect();
    let held_count = u32::try_from(held.len()).unwrap_or(u32::MAX);
    let granted = FleetNote::Leased {
        key: asker.key.to_owned(),
        held: held_count.saturating_add(1),
        max: rules.max_concurrent,
        forced: asker.forced,
    };
    if asker.forced {
        return Ok(granted);
    }
    if let Some(budget) = rules.budget {
        let start = now.saturating_sub(budget.window);
        let mut inside: Vec<Timestamp> = snapshot
            .started
            .iter()
            .copied()
            .filter(|t| *t >= start)
            .collect();
        let count = u32::try_from(inside.len()).unwrap_or(u32::MAX);
        if count >= budget.max_restarts {
            inside.sort_unstable();
            // `count - max + 1` must leave the window; the last of them is the k-th oldest.
            let k = count - budget.max_restarts;
            let rearm = match inside.get(usize::try_from(k).unwrap_or(usize::MAX)) {
                Some(at) => at
                    .saturating_add(budget.window)
                    .saturating_add(Duration::from_millis(1)),
                None => now.saturating_add(budget.window),
            };
            return Err(FleetRefusal::Budget {
                key: asker.key.to_owned(),
                count,
                max: budget.max_restarts,
                window: budget.window,
                wait: rearm.saturating_since(now).max(Duration::from_millis(1)),
            });
        }
    }
    if let Some(need) = rules.min_healthy {
        let others = snapshot
            .members
            .iter()
            .filter(|m| !(m.host == asker.host && m.service == asker.service));
        let (mut healthy, mut members) = (0u32, 1u32);
        for m in others {
            members = members.saturating_add(1);
            if m.healthy {
                healthy = healthy.saturating_add(1);
            }
        }
        if healthy < need {
            return Err(FleetRefusal::MinHealthy {
                key: asker.key.to_owned(),
                healthy,
                members,
                need,
                wait: MIN_HEALTHY_RECHECK,
            });
        }
    }
    if held_count >= rules.max_concurrent {
        // Name the lease that started first: the one most likely to end first.
        let first = held.iter().min_by_key(|l| (l.started, l.expires)).copied();
        let frees = held.iter().map(|l| l.expires).min().unwrap_or(now);
        let (host, service, ago) = match first {
            Some(l) => (
                l.host.clone(),
                l.service.clone(),
                now.saturating_since(l.started),
            ),
            // max_concurrent = 0: nothing is held, nothing will free.
            None => ("nobody".to_owned(), String::new(), Duration::ZERO),
        };
        return Err(FleetRefusal::Busy {
            key: asker.key.to_owned(),
            held: held_count,
            max: rules.max_concurrent,
            host,
            service,
            ago,
            wait: frees.saturating_since(now).max(Duration::from_millis(1)),
        });
    }
    Ok(granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    fn lease(host: &str, started_s_ago: u64, expires_in_s: u64) -> HeldLease {
        HeldLease {
            host: host.to_owned(),
            service: "api".to_owned(),
            started: NOW.saturating_sub(Duration::from_secs(started_s_ago)),
            expires: NOW.saturating_add(Duration::from_secs(expires_in_s)),
        }
    }

    fn member(host: &str, healthy: bool) -> Member {
        Member {
            host: host.to_owned(),
            service: "api".to_owned(),
            healthy,
        }
    }

    fn ask(forced: bool) -> Asker<'static> {
        Asker {
            key: "api",
            host: "host-a",
            service: "api",
            forced,
        }
    }

    #[test]
    fn a_held_lease_refuses_with_the_seed_style_wording() {
        let rules = FleetRules::default();
        let snap = FleetSnapshot {
            held: vec![lease("host-b", 4, 26)],
            ..FleetSnapshot::default()
        };
        let refusal = decide_fleet(&rules, &snap, ask(false), NOW).unwrap_err();
        assert!(
            refusal
                .to_string()
                .starts_with("fleet: 1/1 restarting on host-b, started 4s ago"),
            "{refusal}"
        );
        assert_eq!(refusal.wait(), Some(BUSY_RECHECK));
    }

    #[test]
    fn an_expired_lease_does_not_count() {
        let rules = FleetRules::default();
        let mut old = lease("host-b", 40, 0);
        old.expires = NOW;
        let snap = FleetSnapshot {
            held: vec![old],
            ..FleetSnapshot::default()
        };
        let note = decide_fleet(&rules, &snap, ask(false), NOW).unwrap();
        assert_eq!(note.to_string(), "fleet: lease on api, 1/1 restarting");
    }

    #[test]
    fn min_healthy_counts_the_asker_as_failing() {
        let rules = FleetRules {
            min_healthy: Some(2),
            max_concurrent: 3,
            ..FleetRules::default()
        };
        // The asker itself reports passing (stale); two others, one failing.
        let snap = FleetSnapshot {
            members: vec![
                member("host-a", true),
                member("host-b", true),
                member("host-c", false),
            ],
            ..FleetSnapshot::default()
        };
        let refusal = decide_fleet(&rules, &snap, ask(false), NOW).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "fleet: 1/3 of key api passing, need 2 (counting this one as failing)"
        );
        let snap = FleetSnapshot {
            members: vec![
                member("host-a", false),
                member("host-b", true),
                member("host-c", true),
            ],
            ..FleetSnapshot::default()
        };
        assert!(decide_fleet(&rules, &snap, ask(false), NOW).is_ok());
    }

    #[test]
    fn the_budget_counts_leases_in_the_window_and_re_arms_when_the_oldest_leaves() {
        let rules = FleetRules {
            max_concurrent: 5,
            budget: Some(FleetBudget {
                max_restarts: 2,
                window: Duration::from_secs(3600),
            }),
            min_healthy: None,
        };
        let snap = FleetSnapshot {
            started: vec![
                NOW.saturating_sub(Duration::from_secs(4000)), // outside
                NOW.saturating_sub(Duration::from_secs(600)),
                NOW.saturating_sub(Duration::from_secs(1200)),
            ],
            ..FleetSnapshot::default()
        };
        let refusal = decide_fleet(&rules, &snap, ask(false), NOW).unwrap_err();
        assert!(
            refusal
                .to_string()
                .starts_with("fleet: limit reached for key api (2/2 per hour, re-arms in 40m"),
            "{refusal}"
        );
        assert_eq!(refusal.wait(), Some(Duration::from_millis(2_400_001)));
    }

    #[test]
    fn forced_skips_every_rule_but_still_counts_as_held() {
        let rules = FleetRules {
            max_concurrent: 1,
            budget: Some(FleetBudget {
                max_restarts: 0,
                window: Duration::from_secs(60),
            }),
            min_healthy: Some(5),
        };
        let snap = FleetSnapshot {
            held: vec![lease("host-b", 1, 10)],
            ..FleetSnapshot::default()
        };
        let note = decide_fleet(&rules, &snap, ask(true), NOW).unwrap();
        assert_eq!(
            note.to_string(),
            "fleet: lease on api, 2/1 restarting, forced"
        );
    }

    #[test]
    fn every_refusal_waits_a_positive_time() {
        let rules = FleetRules::default();
        let mut l = lease("host-b", 1, 0);
        l.expires = NOW.saturating_add(Duration::from_millis(1));
        let snap = FleetSnapshot {
            held: vec![l],
            ..FleetSnapshot::default()
        };
        let refusal = decide_fleet(&rules, &snap, ask(false), NOW).unwrap_err();
        assert!(refusal.wait().unwrap() > Duration::ZERO);
    }
}
