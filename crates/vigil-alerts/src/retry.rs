//! The delivery retry schedule: exponential backoff with jitter, as a pure function.

use std::time::Duration;

/// The longest pause between two attempts.
pub const MAX_PAUSE: Duration = Duration::from_secs(300);

/// The pause after the `failed`-th failed attempt (1 = the first): `first × 2^(failed-1)`,
/// capped at [`MAX_PAUSE`], scaled by `0.75 + 0.5 × jitter` (`jitter` in `[0, 1)`, from the
/// caller's random source) so that channels failing together do not retry in lockstep.
pub fn pause(first: Duration, failed: u32, jitter: f64) -> Duration {
    let exp = failed.saturating_sub(1).min(30);
    let base = first
        .checked_mul(1u32 << exp)
        .unwrap_or(MAX_PAUSE)
        .min(MAX_PAUSE);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.5
    };
    base.mul_f64(0.75 + 0.5 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_first_pause_and_is_capped() {
        let s = Duration::from_secs;
        let mid = |n| pause(s(2), n, 0.5);
        assert_eq!((mid(1), mid(2), mid(3), mid(4)), (s(2), s(4), s(8), s(16)));
        assert_eq!(mid(20), MAX_PAUSE);
        assert_eq!(mid(u32::MAX), MAX_PAUSE);
        assert_eq!(pause(s(2), 0, 0.5), s(2));
    }

    #[test]
    fn jitter_stays_within_a_quarter_either_way() {
        let s = Duration::from_secs;
        assert_eq!(pause(s(4), 1, 0.0), s(3));
        assert_eq!(pause(s(4), 1, 1.0), s(5));
        assert_eq!(pause(s(4), 1, f64::NAN), s(4));
        for j in 0..100 {
            let p = pause(s(8), 2, f64::from(j) / 100.0);
            assert!(p >= s(12) && p <= s(20), "{p:?}");
        }
    }
}
