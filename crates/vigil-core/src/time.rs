//! Wall-clock instants as plain values.
//!
//! The ledger outlives the process, so cooldowns, windows and budgets are measured in wall
//! time. Every subtraction saturates: a clock that stepped backwards counts as "no time
//! elapsed", never as a panic or an underflow.

use std::fmt;
use std::time::Duration;

/// Milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub const fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is not before `self`.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        if self.0 <= earlier.0 {
            Duration::ZERO
        } else {
            Duration::from_millis(self.0.abs_diff(earlier.0))
        }
    }

    pub fn saturating_add(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }

    /// The instant as a `jiff::Timestamp`, for formatting and calendar math.
    pub fn to_jiff(self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.0).unwrap_or(if self.0 < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        })
    }

    pub fn from_jiff(ts: jiff::Timestamp) -> Timestamp {
        Timestamp(ts.as_millisecond())
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with second precision, as in the seed's logs: `2025-02-14T10:30:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ts = self.to_jiff();
        write!(f, "{}", ts.strftime("%Y-%m-%dT%H:%M:%SZ"))
    }
}

/// A point on the monotonic clock: the time since an epoch the edge chose (the daemon
/// takes its own start). The lifecycle's timers (watchdog deadlines, stop escalation,
/// deferred restarts) use it, so a wall-clock step can neither fire a watchdog early nor
/// hold a restart back; the guard's budget stays in wall time ([`Timestamp`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Moment(Duration);

impl Moment {
    pub const ZERO: Moment = Moment(Duration::ZERO);

    pub const fn from_duration(since_epoch: Duration) -> Moment {
        Moment(since_epoch)
    }

    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// Time from `earlier` to `self`; zero if `earlier` is not before `self`.
    pub fn saturating_since(self, earlier: Moment) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    pub fn saturating_add(self, d: Duration) -> Moment {
        Moment(self.0.saturating_add(d))
    }
}

impl std::ops::Add<Duration> for Moment {
    type Output = Moment;
    fn add(self, d: Duration) -> Moment {
        self.saturating_add(d)
    }
}

/// Formats a duration the way Vigil's messages and config do: `90s`, `5m`, `1h 30m`,
/// `250ms`. Up to ten minutes stays in whole seconds so that verdicts read like the seed
/// ("need 120s, wait 30s more").
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let total_secs = d.as_secs();
    let rem_ms = ms % 1000;
    if total_secs < 600 || (total_secs == 600 && rem_ms == 0) {
        return if rem_ms == 0 {
            format!("{total_secs}s")
        } else {
            // Round up so a wait never reads as shorter than it is.
            format!("{}s", total_secs + 1)
        };
    }
    let days = total_secs / 86_400;
    let hours = (total_secs % 86_400) / 3600;
    let mins = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if mins > 0 {
        parts.push(format!("{mins}m"));
    }
    if secs > 0 {
        parts.push(format!("{secs}s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_since_never_underflows() {
        let a = Timestamp::from_secs(100);
        let b = Timestamp::from_secs(50);
        assert_eq!(a.saturating_since(b), Duration::from_secs(50));
        assert_eq!(b.saturating_since(a), Duration::ZERO);
    }

    #[test]
    fn durations_read_like_the_seed() {
        assert_eq!(format_duration(Duration::from_secs(120)), "120s");
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_millis(29_001)), "30s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn display_is_rfc3339_utc() {
        assert_eq!(
            Timestamp::from_secs(1_739_529_000).to_string(),
            "2025-02-14T10:30:00Z"
        );
    }
}
