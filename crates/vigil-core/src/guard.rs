//! The guard's decision: may this restart happen now, and if not, why and until when.
//!
//! This is SPEC §2 steps 2-5 as a pure function of (policy, restart history, request,
//! now). Step 1 (the cross-process lock) and step 6 (performing and recording the restart)
//! belong to the edge, which calls [`decide`] while holding the lock.
//!
//! Invariants (property-tested in `tests/guard_props.rs`):
//! - an unforced request is never allowed when `max_restarts` restarts already lie in the
//!   rolling window, so no window ever holds more than `max_restarts` unforced restarts;
//! - an unforced request is never allowed within `cooldown` of the previous restart;
//! - every non-allowed verdict names a retry instant strictly after `now` (a wait always
//!   makes progress);
//! - a clock that steps backwards never panics and never allows more restarts: restarts
//!   recorded "in the future" count as inside the window and as zero seconds ago.

use std::fmt;
use std::time::Duration;

use crate::Source;
use crate::backoff::BackoffPolicy;
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
    /// Restart now. `count` includes this restart.
    Allowed {
        count: u32,
        max: u32,
        window: Duration,
        forced: bool,
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// `count >= max` restarts inside the rolling window.
    Limit {
        count: u32,
        max: u32,
        window: Duration,
        /// When the oldest restart in the window leaves it.
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
                Some(now.saturating_add(*wait))
            }
            Verdict::Skipped(Skip::Lock { .. }) => None,
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
            } => {
                let force = if *forced { ", forced" } else { "" };
                write!(
                    f,
                    "Restart ALLOWED ({count}/{max} {}{force})",
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
/// entries older than the window are ignored (the edge may prune them or not).
///
/// The checks run in SPEC order: budget (denied), cooldown (skipped), backoff (skipped).
/// A forced request skips all three and is always allowed here; the lock still applies at
/// the edge.
pub fn decide(
    policy: &GuardPolicy,
    history: &[RestartRecord],
    request: RestartRequest,
    now: Timestamp,
) -> Verdict {
    // A record is inside the window while less than `window` has elapsed since it. Records
    // in the future (clock stepped back) have zero elapsed, so they count: never allow more.
    let in_window = |r: &&RestartRecord| now.saturating_since(r.at) < policy.window;
    let count = history.iter().filter(in_window).count();
    let count = u32::try_from(count).unwrap_or(u32::MAX);

    if request.forced {
        return Verdict::Allowed {
            count: count.saturating_add(1),
            max: policy.max_restarts,
            window: policy.window,
            forced: true,
        };
    }

    if count >= policy.max_restarts {
        // The oldest in-window record leaves the window first; its expiry re-arms the budget.
        let oldest = history
            .iter()
            .filter(in_window)
            .map(|r| r.at)
            .min()
            .unwrap_or(now);
        let rearm_at = oldest.saturating_add(policy.window);
        // `oldest` is in the window, so `rearm_at > now`; the max() guards max_restarts = 0
        // with an empty window, which re-arms never and must still report progress.
        let rearm_at = if rearm_at > now {
            rearm_at
        } else {
            now.saturating_add(policy.window.max(Duration::from_millis(1)))
        };
        return Verdict::Denied(Denial::Limit {
            count,
            max: policy.max_restarts,
            window: policy.window,
            rearm_at,
        });
    }

    // The latest restart by time; among equal times any is fine for the numbers we report.
    if let Some(last) = history.iter().max_by_key(|r| r.at) {
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
            let streak = backoff.streak(history, now);
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
        assert_eq!(v.retry_at(Timestamp::from_secs(1090)), Some(Timestamp::from_secs(1120)));
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
        assert_eq!(v.to_string(), "Restart DENIED: limit reached (5/5 per hour)");
        assert_eq!(v.retry_at(Timestamp::from_secs(1500)), Some(Timestamp::from_secs(3600)));
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
