//! A check's health over time: consecutive counts, thresholds and grace.
//!
//! One check run (after its retries) yields a [`RunVerdict`]. [`CheckHealth::observe`]
//! folds it into the check's state: `failure_threshold` consecutive failed runs turn the
//! check `failing`, `success_threshold` consecutive passes recover it. While a check is
//! failing every further failed run asks for its action again (a skipped restart is
//! dropped because the check will ask again, SPEC §2), as long as the consecutive
//! failures still reach `failure_threshold`: a pass that falls short of recovering resets
//! that count, so a flapping check does not ask on every single failed run.
//!
//! Must not: read the clock (time comes in as `now` and `uptime`), or decide whether the
//! action may run (that is the guard's job).

use std::time::Duration;

use crate::time::Timestamp;

/// The result of one check run, after retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunVerdict {
    Pass,
    /// A warning threshold was crossed, or a `severity = "warning"` check failed.
    Warn,
    Fail,
}

impl RunVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            RunVerdict::Pass => "pass",
            RunVerdict::Warn => "warn",
            RunVerdict::Fail => "fail",
        }
    }

    pub fn parse(s: &str) -> Option<RunVerdict> {
        match s {
            "pass" => Some(RunVerdict::Pass),
            "warn" => Some(RunVerdict::Warn),
            "fail" => Some(RunVerdict::Fail),
            _ => None,
        }
    }
}

/// Where a check stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum HealthStatus {
    /// No verdict yet (just started, in grace, or just restarted).
    #[default]
    Unknown,
    Passing,
    Warning,
    Failing,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Passing => "passing",
            HealthStatus::Warning => "warning",
            HealthStatus::Failing => "failing",
        }
    }

    pub fn parse(s: &str) -> Option<HealthStatus> {
        match s {
            "unknown" => Some(HealthStatus::Unknown),
            "passing" => Some(HealthStatus::Passing),
            "warning" => Some(HealthStatus::Warning),
            "failing" => Some(HealthStatus::Failing),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive failed (or warning) runs before the check is failing (or warning).
    pub failure: u32,
    /// Consecutive passing runs before a failing check recovers.
    pub success: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            failure: 1,
            success: 1,
        }
    }
}

/// The persisted health of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CheckHealth {
    pub status: HealthStatus,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// When `status` last changed.
    pub last_change: Option<Timestamp>,
}

/// What one observation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The service is still inside its `grace` period: the run was not counted and this
    /// much grace is left. `transition` is `None` and `wants_action` is false.
    pub in_grace: Option<Duration>,
    /// `(from, to)` when the status changed.
    pub transition: Option<(HealthStatus, HealthStatus)>,
    /// The check is failing (or warning) after this run: its `on_failure` action (or
    /// alert) is due again.
    pub wants_action: bool,
}

impl CheckHealth {
    pub fn observe(
        &mut self,
        run: RunVerdict,
        thresholds: Thresholds,
        now: Timestamp,
    ) -> Observation {
        let failure = thresholds.failure.max(1);
        let success = thresholds.success.max(1);
        let before = self.status;
        match run {
            RunVerdict::Pass => {
                self.consecutive_failures = 0;
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                let recovered = match before {
                    HealthStatus::Unknown | HealthStatus::Passing => true,
                    HealthStatus::Warning | HealthStatus::Failing => {
                        self.consecutive_successes >= success
                    }
                };
                if recovered {
                    self.status = HealthStatus::Passing;
                }
            }
            RunVerdict::Warn | RunVerdict::Fail => {
                self.consecutive_successes = 0;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= failure {
                    let target = if run == RunVerdict::Fail {
                        HealthStatus::Failing
                    } else {
                        HealthStatus::Warning
                    };
                    self.status = target;
                }
            }
        }
        let transition = (before != self.status).then_some((before, self.status));
        if transition.is_some() {
            self.last_change = Some(now);
        }
        // Acting takes `failure` consecutive bad runs every time, not only the first: a
        // failing check that passed once (short of recovering) and failed once more has not
        // earned another restart yet, and a warning run never re-fires a failing action.
        let wants_action = run != RunVerdict::Pass
            && self.consecutive_failures >= failure
            && matches!(self.status, HealthStatus::Failing | HealthStatus::Warning);
        Observation {
            in_grace: None,
            transition,
            wants_action,
        }
    }

    /// Like [`CheckHealth::observe`], but a run while the service is inside its `grace`
    /// period yields no verdict at all: nothing is counted and no action is asked for.
    pub fn observe_after_grace(
        &mut self,
        run: RunVerdict,
        thresholds: Thresholds,
        grace: Duration,
        uptime: Option<Duration>,
        now: Timestamp,
    ) -> Observation {
        if let Some(left) = grace_remaining(uptime, grace) {
            return Observation {
                in_grace: Some(left),
                transition: None,
                wants_action: false,
            };
        }
        self.observe(run, thresholds, now)
    }

    /// Forget the counts after the service was restarted: the new instance starts unknown
    /// and must fail `failure_threshold` times again before another restart is asked for.
    pub fn reset(&mut self, now: Timestamp) {
        if self.status != HealthStatus::Unknown {
            self.last_change = Some(now);
        }
        self.status = HealthStatus::Unknown;
        self.consecutive_failures = 0;
        self.consecutive_successes = 0;
    }
}

/// How much of the `grace` period is left, given the service's uptime. `None` means the
/// grace is over (or there is none). An unknown uptime is treated as "up long enough":
/// grace protects a start Vigil knows about, it must not mute checks forever.
pub fn grace_remaining(uptime: Option<Duration>, grace: Duration) -> Option<Duration> {
    let uptime = uptime?;
    (uptime < grace).then(|| grace - uptime)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        failure: 3,
        success: 2,
    };

    #[test]
    fn failing_needs_consecutive_failures() {
        let mut h = CheckHealth::default();
        let now = Timestamp::from_secs(1);
        assert!(!h.observe(RunVerdict::Fail, T, now).wants_action);
        assert!(!h.observe(RunVerdict::Fail, T, now).wants_action);
        h.observe(RunVerdict::Pass, T, now);
        assert_eq!(h.consecutive_failures, 0);
        h.observe(RunVerdict::Fail, T, now);
        h.observe(RunVerdict::Fail, T, now);
        let o = h.observe(RunVerdict::Fail, T, now);
        assert!(o.wants_action);
        assert_eq!(
            o.transition,
            Some((HealthStatus::Passing, HealthStatus::Failing))
        );
        // Still failing: asks again.
        assert!(h.observe(RunVerdict::Fail, T, now).wants_action);
        // One pass is not enough to recover.
        let o = h.observe(RunVerdict::Pass, T, now);
        assert_eq!(h.status, HealthStatus::Failing);
        assert!(!o.wants_action);
        let o = h.observe(RunVerdict::Pass, T, now);
        assert_eq!(
            o.transition,
            Some((HealthStatus::Failing, HealthStatus::Passing))
        );
    }

    #[test]
    fn a_flapping_failing_check_needs_the_threshold_again() {
        let mut h = CheckHealth::default();
        let now = Timestamp::from_secs(1);
        for _ in 0..3 {
            h.observe(RunVerdict::Fail, T, now);
        }
        assert_eq!(h.status, HealthStatus::Failing);
        // One pass: not recovered (success threshold 2), but the failure count restarts.
        h.observe(RunVerdict::Pass, T, now);
        assert_eq!(h.status, HealthStatus::Failing);
        let o = h.observe(RunVerdict::Fail, T, now);
        assert!(!o.wants_action, "1 consecutive failure < threshold 3");
        // A warning run while failing does not ask for the failing action either.
        assert!(!h.observe(RunVerdict::Warn, T, now).wants_action);
        let o = h.observe(RunVerdict::Fail, T, now);
        assert!(o.wants_action);
        assert_eq!(h.status, HealthStatus::Failing);
    }

    #[test]
    fn grace_applies_only_to_known_recent_starts() {
        let g = Duration::from_secs(30);
        assert_eq!(
            grace_remaining(Some(Duration::from_secs(10)), g),
            Some(Duration::from_secs(20))
        );
        assert_eq!(grace_remaining(Some(Duration::from_secs(30)), g), None);
        assert_eq!(grace_remaining(None, g), None);
    }
}
