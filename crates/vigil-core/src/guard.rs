//! The guard's decision: may this restart happen now, and if not, why and until when.
//!
//! This is SPEC §2 steps 2-5 as a pure function of (policy, restart history, request,
//! now). Step 1 (the cross-process lock) and step 6 (performing and recording the restart)
//! belong to the edge, which calls [`decide`] while holding the lock.
//!
//! Invariants (property-tested in `tests/guard_props.rs`):
//! - an unforced request is never allowed when `max_restarts` restarts already lie in the
//!   rolling window, so no interval of length `window` (ends included) ever holds more
//!   than `max_restarts` unforced restarts;
//! - an unforced request is never allowed within `cooldown` of the previous restart;
//! - every non-allowed verdict names a retry instant strictly after `now` (a wait always
//!   makes progress);
//! - a clock that steps backwards never panics and never allows more restarts: restarts
//!   recorded "in the future" count as inside the window and as zero seconds ago.

use std::fmt;
use std::time::Duration;

use crate::Source;
use crate::backoff::BackoffPolicy;
use crate::fleet::{FleetNote, FleetRefusal};
use crate::time::{Timestamp, format_duration};

/// The loop-safety policy of one service (`[defaults.guard]` merged with
/// `[services.NAME.guard]`).
#[derive(Clone, Debug, PartialEq)]
pub struct GuardPolicy {
    /// Minimum time between two restarts from any source (default 120s).
    pub cooldown: Duration,
    /// Restarts allowed inside one rolling `window` (default 5).
    pub max_restarts: u32,
    /// The rolling window the budget counts over (default 1h).
    pub window: Duration,
    /// How long to wait for the service's restart lock (default 10s).
    pub lock_timeout: Duration,
    /// Optional exponential backoff between consecutive restarts.
    pub backoff: Option<BackoffPolicy>,
}

impl GuardPolicy {
    /// The earliest instant whose restarts still count against the budget at `now`:
    /// restarts at or after it are inside the rolling window (see [`decide`]). The edge
    /// uses it to query or prune the ledger with the same rule.
    pub fn window_start(&self, now: Timestamp) -> Timestamp {
        now.saturating_sub(self.window)
    }
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            cooldown: Duration::from_secs(120),
            max_restarts: 5,
            window: Duration::from_secs(3600),
            lock_timeout: Duration::from_secs(10),
            backoff: None,
        }
    }
}

/// One restart the guard allowed, as the ledger remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartRecord {
    pub at: Timestamp,
    pub source: Source,
    pub forced: bool,
}

/// A request to restart a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartRequest {
    pub source: Source,
    /// `vigil restart --force`: skips the budget, cooldown and backoff (never the lock).
    pub forced: bool,
}

impl RestartRequest {
    pub fn new(source: Source) -> Self {
        RestartRequest {
            source,
            forced: false,
        }
    }

    pub fn forced(source: Source) -> Self {
        RestartRequest {
            source,
            forced: true,
        }
    }
}

/// The guard's answer, with the numbers that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Restart now. `count` includes this restart. `fleet`: for a service with a
    /// `fleet_key`, what the fleet said (set by the edge after [`decide`]).
    Allowed {
        count: u32,
        max: u32,
        window: Duration,
        forced: bool,
        fleet: Option<FleetNote>,
    },
    /// Not now; the source may ask again (or, for exit/watchdog, the request is deferred).
    Skipped(Skip),
    /// The budget is spent: the service is `given-up` until `rearm_at`, a reset, or a
    /// forced restart.
    Denied(Denial),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// `now - last_restart < cooldown`.
    Cooldown {
        ago: Duration,
        by: Source,
        need: Duration,
        wait: Duration,
    },
    /// Exponential backoff after `streak` consecutive quick restarts.
    Backoff {
        ago: Duration,
        streak: u32,
        need: Duration,
        wait: Duration,
    },
    /// The service's restart lock was held by someone else for `lock_timeout`.
    /// Produced by the edge, never by [`decide`].
    Lock { waited: Duration },
    /// The local guard allowed it, the fleet did not (`vigil_core::fleet`). Produced by
    /// the edge, never by [`decide`].
    Fleet(FleetRefusal),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// `count >= max` restarts inside the rolling window.
    Limit {
        count: u32,
        max: u32,
        window: Duration,
        /// When enough restarts have left the window for the budget to allow one again:
        /// usually the oldest one's leaving, later when forced restarts overspent it.
        rearm_at: Timestamp,
    },
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }

    /// `allowed`, `skipped` or `denied`: the ledger's verdict column.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Allowed { .. } => "allowed",
            Verdict::Skipped(_) => "skipped",
            Verdict::Denied(_) => "denied",
        }
    }

    /// `cooldown`, `backoff`, `lock`, `limit`, or `None` when allowed.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Verdict::Allowed { .. } => None,
            Verdict::Skipped(Skip::Cooldown { .. }) => Some("cooldown"),
            Verdict::Skipped(Skip::Backoff { .. }) => Some("backoff"),
            Verdict::Skipped(Skip::Lock { .. }) => Some("lock"),
            Verdict::Skipped(Skip::Fleet(_)) => Some("fleet"),
            Verdict::Denied(Denial::Limit { .. }) => Some("limit"),
        }
    }

    /// The earliest instant at which asking again could be allowed, or `None` when the
    /// verdict is `allowed` or depends on another process (lock). Always after `now` for
    /// verdicts produced by [`decide`] at `now`.
    pub fn retry_at(&self, now: Timestamp) -> Option<Timestamp> {
        match self {
            Verdict::Allowed { .. } => None,
            Verdict::Skipped(Skip::Cooldown { wait, .. } | Skip::Backoff { wait, .. }) => {
                // Round a sub-millisecond remainder up: the retry must not land before the
                // wait is over, nor on `now` itself.
                let whole_ms =
                    Duration::from_millis(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                let wait = if whole_ms < *wait {
                    whole_ms.saturating_add(Duration::from_millis(1))
                } else {
                    whole_ms
                };
                Some(now.saturating_add(wait))
            }
            Verdict::Skipped(Skip::Lock { .. }) => None,
            Verdict::Skipped(Skip::Fleet(refusal)) => refusal.wait().map(|w| now.saturating_add(w)),
            Verdict::Denied(Denial::Limit { rearm_at, .. }) => Some(*rearm_at),
        }
    }
}

/// "per hour", "per day", "per 30m": the window as the seed words it.
pub fn per_window(window: Duration) -> String {
    match window.as_secs() {
        60 if window.subsec_nanos() == 0 => "per minute".to_owned(),
        3600 if window.subsec_nanos() == 0 => "per hour".to_owned(),
        86_400 if window.subsec_nanos() == 0 => "per day".to_owned(),
        _ => format!("per {}", format_duration(window)),
    }
}

impl fmt::Display for Verdict {
    /// The seed's wording, with every number that made the verdict.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Allowed {
                count,
                max,
                window,
                forced,
                fleet,
            } => {
                let force = if *forced { ", forced" } else { "" };
                let fleet = match fleet {
                    Some(note) => format!("; {note}"),
                    None => String::new(),
                };
                write!(
                    f,
                    "Restart ALLOWED ({count}/{max} {}{force}{fleet})",
                    per_window(*window)
                )
            }
            Verdict::Skipped(Skip::Cooldown {
                ago,
                by,
                need,
                wait,
            }) => write!(
                f,
                "Restart SKIPPED: cooldown active ({} ago by {by}, need {}, wait {} more)",
                format_duration(*ago),
                format_duration(*need),
                format_duration(*wait)
            ),
            Verdict::Skipped(Skip::Backoff {
                ago,
                streak,
                need,
                wait,
            }) => write!(
                f,
                "Restart SKIPPED: backoff active ({} ago, {streak} quick restart{} in a row, need {}, wait {} more)",
                format_duration(*ago),
                if *streak == 1 { "" } else { "s" },
                format_duration(*need),
                format_duration(*wait)
            ),
            Verdict::Skipped(Skip::Lock { waited }) => write!(
                f,
                "Restart SKIPPED: could not acquire lock (another restart in progress, waited {})",
                format_duration(*waited)
            ),
            Verdict::Skipped(Skip::Fleet(refusal)) => write!(f, "Restart SKIPPED: {refusal}"),
            Verdict::Denied(Denial::Limit {
                count, max, window, ..
            }) => write!(
                f,
                "Restart DENIED: limit reached ({count}/{max} {})",
                per_window(*window)
            ),
        }
    }
}

/// Decides a restart request. `history` is this service's allowed restarts, in any order;
/// entries older than the window are ignored for the budget (the edge may prune them or
/// not). Ascending order by `at` (the ledger's) is the fast path: after one cheap check of
/// the order, the window is found by binary search and nothing is allocated.
///
/// The checks run in SPEC order: budget (denied), cooldown (skipped), backoff (skipped).
/// A forced request skips all three and is always allowed here; the lock still applies at
/// the edge.
///
/// The window is closed: a restart counts while at most `window` has elapsed since it
/// (seed 000: with restarts from 10:00:00, a request at 11:00:00 is still denied and one
/// at 11:00:01 is allowed).
pub fn decide(
    policy: &GuardPolicy,
    history: &[RestartRecord],
    request: RestartRequest,
    now: Timestamp,
) -> Verdict {
    let scan = Scan::new(history, policy.window_start(now));
    let count = scan.count;

    if request.forced {
        return Verdict::Allowed {
            count: count.saturating_add(1),
            max: policy.max_restarts,
            window: policy.window,
            forced: true,
            fleet: None,
        };
    }

    if count >= policy.max_restarts {
        return Verdict::Denied(Denial::Limit {
            count,
            max: policy.max_restarts,
            window: policy.window,
            rearm_at: scan.rearm_at(policy, history, now),
        });
    }

    if let Some(last) = scan.last {
        let ago = now.saturating_since(last.at);
        if ago < policy.cooldown {
            return Verdict::Skipped(Skip::Cooldown {
                ago,
                by: last.source,
                need: policy.cooldown,
                wait: policy.cooldown - ago,
            });
        }
        if let Some(backoff) = &policy.backoff {
            let streak = if scan.sorted {
                backoff.streak_of_sorted(history, now)
            } else {
                backoff.streak(history, now)
            };
            if streak > 0 {
                let need = backoff.delay_after(streak);
                if ago < need {
                    return Verdict::Skipped(Skip::Backoff {
                        ago,
                        streak,
                        need,
                        wait: need - ago,
                    });
                }
            }
        }
    }

    Verdict::Allowed {
        count: count + 1,
        max: policy.max_restarts,
        window: policy.window,
        forced: false,
        fleet: None,
    }
}

/// What `decide` needs from the history, gathered without allocating.
struct Scan<'h> {
    /// Whether the history is sorted ascending by `at`.
    sorted: bool,
    /// Restarts at or after the window start. Restarts in the future (the clock stepped
    /// back) count too, as zero seconds ago: a clock going back never allows more.
    count: u32,
    window_start: i64,
    /// For sorted history, the index of the first restart in the window.
    first_in_window: usize,
    /// The earliest restart in the window (unsorted history only).
    oldest_in_window: i64,
    /// The latest restart by time; among equal times the last one listed.
    last: Option<&'h RestartRecord>,
}

impl<'h> Scan<'h> {
    fn new(history: &'h [RestartRecord], window_start: Timestamp) -> Scan<'h> {
        let window_start = window_start.as_millis();
        // About a third of a nanosecond per record; it buys a binary search, an
        // allocation-free backoff streak and an allocation-free re-arm time.
        if history.is_sorted_by_key(|r| r.at) {
            let first = history.partition_point(|r| r.at.as_millis() < window_start);
            return Scan {
                sorted: true,
                count: u32::try_from(history.len() - first).unwrap_or(u32::MAX),
                window_start,
                first_in_window: first,
                oldest_in_window: history.get(first).map_or(i64::MAX, |r| r.at.as_millis()),
                last: history.last(),
            };
        }
        let mut scan = Scan {
            sorted: false,
            count: 0,
            window_start,
            first_in_window: 0,
            oldest_in_window: i64::MAX,
            last: None,
        };
        for r in history {
            let at = r.at.as_millis();
            if at >= window_start {
                scan.count = scan.count.saturating_add(1);
                scan.oldest_in_window = scan.oldest_in_window.min(at);
            }
            if scan.last.is_none_or(|l| at >= l.at.as_millis()) {
                scan.last = Some(r);
            }
        }
        scan
    }

    /// When the budget re-arms: when enough in-window restarts have left the window that
    /// fewer than `max_restarts` remain. Usually that is the oldest one; after forced
    /// restarts (or a lowered `max_restarts`) the budget is overspent and a later one must
    /// leave too.
    fn rearm_at(
        &self,
        policy: &GuardPolicy,
        history: &[RestartRecord],
        now: Timestamp,
    ) -> Timestamp {
        let count = self.count;
        // `count - max + 1` restarts must leave; the last of them is the k-th oldest.
        let k = count.saturating_sub(policy.max_restarts).saturating_add(1);
        let index = usize::try_from(k - 1).unwrap_or(usize::MAX);
        let kth_oldest = if count == 0 || k > count {
            // A budget of zero never re-arms by itself (only a reset or a forced restart):
            // name a time one window ahead so that a waiter still makes progress.
            None
        } else if k == 1 {
            Some(self.oldest_in_window)
        } else if self.sorted {
            history
                .get(self.first_in_window.saturating_add(index))
                .map(|r| r.at.as_millis())
        } else {
            let mut in_window: Vec<i64> = history
                .iter()
                .map(|r| r.at.as_millis())
                .filter(|&at| at >= self.window_start)
                .collect();
            (index < in_window.len()).then(|| *in_window.select_nth_unstable(index).1)
        };
        match kth_oldest {
            // It leaves once more than `window` has elapsed: 1ms (our resolution) later.
            Some(at) => Timestamp::from_millis(at)
                .saturating_add(policy.window)
                .saturating_add(Duration::from_millis(1))
                .max(now.saturating_add(Duration::from_millis(1))),
            None => now.saturating_add(policy.window.max(Duration::from_millis(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(secs: i64, source: Source) -> RestartRecord {
        RestartRecord {
            at: Timestamp::from_secs(secs),
            source,
            forced: false,
        }
    }

    #[test]
    fn cooldown_wording_matches_the_seed() {
        let policy = GuardPolicy::default();
        let v = decide(
            &policy,
            &[rec(1000, Source::Health)],
            RestartRequest::new(Source::Schedule),
            Timestamp::from_secs(1090),
        );
        assert_eq!(
            v.to_string(),
            "Restart SKIPPED: cooldown active (90s ago by health, need 120s, wait 30s more)"
        );
        assert_eq!(
            v.retry_at(Timestamp::from_secs(1090)),
            Some(Timestamp::from_secs(1120))
        );
    }

    #[test]
    fn limit_wording_matches_the_seed() {
        let policy = GuardPolicy::default();
        let history: Vec<_> = (0..5).map(|i| rec(i * 300, Source::Health)).collect();
        let v = decide(
            &policy,
            &history,
            RestartRequest::new(Source::Health),
            Timestamp::from_secs(1500),
        );
        assert_eq!(
            v.to_string(),
            "Restart DENIED: limit reached (5/5 per hour)"
        );
        // The first restart (at 0) still counts at 3600 exactly; it has left 1ms later.
        assert_eq!(
            v.retry_at(Timestamp::from_secs(1500)),
            Some(Timestamp::from_millis(3_600_001))
        );
    }

    #[test]
    fn the_window_is_closed_and_re_arms_one_millisecond_after_a_full_window() {
        let policy = GuardPolicy {
            max_restarts: 1,
            ..GuardPolicy::default()
        };
        let history = [rec(0, Source::Health)];
        let at = |ms| {
            decide(
                &policy,
                &history,
                RestartRequest::new(Source::Health),
                Timestamp::from_millis(ms),
            )
        };
        assert_eq!(at(3_600_000).reason(), Some("limit"));
        assert_eq!(
            at(3_600_000).retry_at(Timestamp::from_millis(3_600_000)),
            Some(Timestamp::from_millis(3_600_001))
        );
        assert!(at(3_600_001).is_allowed());
        assert_eq!(
            policy.window_start(Timestamp::from_millis(3_600_000)),
            Timestamp::from_millis(0)
        );
    }

    #[test]
    fn an_overspent_budget_re_arms_when_enough_restarts_left() {
        // Two forced restarts beyond a budget of 2: three of the four must leave the window.
        let policy = GuardPolicy {
            max_restarts: 2,
            ..GuardPolicy::default()
        };
        let mut history: Vec<_> = [0, 600, 1200, 1800]
            .map(|s| rec(s, Source::Manual))
            .to_vec();
        let now = Timestamp::from_secs(2000);
        let expected = Some(Timestamp::from_millis(4_800_001)); // 1200s + 1h + 1ms
        let v = decide(&policy, &history, RestartRequest::new(Source::Health), now);
        assert_eq!(
            v.to_string(),
            "Restart DENIED: limit reached (4/2 per hour)"
        );
        assert_eq!(v.retry_at(now), expected);
        history.reverse(); // the unsorted path agrees
        let v = decide(&policy, &history, RestartRequest::new(Source::Health), now);
        assert_eq!(v.retry_at(now), expected);
    }

    #[test]
    fn a_sub_millisecond_wait_rounds_the_retry_up() {
        let policy = GuardPolicy {
            cooldown: Duration::from_micros(120_000_500),
            ..GuardPolicy::default()
        };
        let now = Timestamp::from_secs(1120);
        let v = decide(
            &policy,
            &[rec(1000, Source::Health)],
            RestartRequest::new(Source::Exit),
            now,
        );
        assert_eq!(v.reason(), Some("cooldown"));
        assert_eq!(v.retry_at(now), Some(Timestamp::from_millis(1_120_001)));
    }

    #[test]
    fn forced_skips_budget_and_cooldown() {
        let policy = GuardPolicy::default();
        let history: Vec<_> = (0..5).map(|i| rec(i, Source::Health)).collect();
        let v = decide(
            &policy,
            &history,
            RestartRequest::forced(Source::Manual),
            Timestamp::from_secs(5),
        );
        assert!(v.is_allowed());
        assert_eq!(v.to_string(), "Restart ALLOWED (6/5 per hour, forced)");
    }
}
