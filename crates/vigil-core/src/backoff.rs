//! Exponential backoff between consecutive quick restarts.
//!
//! A *streak* is a run of restarts each of which followed the previous one by less than
//! `reset`; a service that stayed up `reset` long starts a new streak. After a streak of
//! `n` restarts the next one must wait `min(initial * factor^(n-1), max)` after the last.

use std::time::Duration;

use crate::guard::RestartRecord;
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
    /// Healthy uptime after which the streak is forgotten.
    pub reset: Duration,
}

impl BackoffPolicy {
    /// The delay required after a streak of `streak` (>= 1) restarts.
    pub fn delay_after(&self, streak: u32) -> Duration {
        if streak == 0 {
            return Duration::ZERO;
        }
        let exp = i32::try_from(streak - 1).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exp);
        let max = self.max.as_secs_f64();
        if !secs.is_finite() || secs >= max {
            self.max
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }

    /// The length of the current streak ending at the latest restart, or 0 if the service
    /// has been up for `reset` since then. `history` may be in any order; ascending order
    /// (the ledger's) avoids a sorted copy.
    pub fn streak(&self, history: &[RestartRecord], now: Timestamp) -> u32 {
        if history.is_sorted_by_key(|r| r.at) {
            return self.streak_of_sorted(history, now);
        }
        let mut sorted = history.to_vec();
        sorted.sort_unstable_by_key(|r| r.at);
        self.streak_of_sorted(&sorted, now)
    }

    /// [`BackoffPolicy::streak`] for a history sorted ascending by `at`: walks back from
    /// the end, no allocation.
    pub(crate) fn streak_of_sorted(&self, history: &[RestartRecord], now: Timestamp) -> u32 {
        debug_assert!(history.is_sorted_by_key(|r| r.at));
        let Some(last) = history.last() else {
            return 0;
        };
        if now.saturating_since(last.at) >= self.reset {
            return 0;
        }
        // `gap < reset` on whole milliseconds: `gap_ms < ceil(reset in ms)`. Integer math
        // keeps the walk cheap when a long streak makes it walk far.
        let reset_ms = u64::try_from(self.reset.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        let quick = history
            .windows(2)
            .rev()
            .take_while(|pair| pair[1].at.as_millis().abs_diff(pair[0].at.as_millis()) < reset_ms)
            .count();
        u32::try_from(quick).unwrap_or(u32::MAX).saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_secs(10),
            factor: 2.0,
            max: Duration::from_secs(300),
            reset: Duration::from_secs(600),
        }
    }

    #[test]
    fn delays_grow_and_cap() {
        let p = policy();
        assert_eq!(p.delay_after(1), Duration::from_secs(10));
        assert_eq!(p.delay_after(2), Duration::from_secs(20));
        assert_eq!(p.delay_after(5), Duration::from_secs(160));
        assert_eq!(p.delay_after(6), Duration::from_secs(300));
        assert_eq!(p.delay_after(200), Duration::from_secs(300));
    }

    #[test]
    fn streak_resets_after_healthy_uptime() {
        let p = policy();
        let rec = |s| RestartRecord {
            at: Timestamp::from_secs(s),
            source: Source::Exit,
            forced: false,
        };
        let h = [rec(0), rec(100), rec(200)];
        assert_eq!(p.streak(&h, Timestamp::from_secs(250)), 3);
        assert_eq!(p.streak(&h, Timestamp::from_secs(800)), 0);
        let h = [rec(0), rec(1000), rec(1100)];
        assert_eq!(p.streak(&h, Timestamp::from_secs(1150)), 2);
    }
}
