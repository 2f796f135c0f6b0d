//! Property tests of `Schedule::next_after` in zones with unusual transitions.
//!
//! Iterating `next_after` must be strictly increasing, every firing must be a time the
//! expression names in local time (or the end of a gap that swallowed such a time), and an
//! expression that names its hours never fires on the second pass of a repeated hour.

use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use jiff::tz::{AmbiguousOffset, TimeZone};
use proptest::prelude::*;
use proptest::sample::select;
use vigil_core::Timestamp;
use vigil_core::schedule::Schedule;

/// POSIX TZ rules (no tzdb I/O): Berlin, New York, Lord Howe (30-minute DST), Santiago
/// (southern hemisphere, midnight transitions) and UTC.
const ZONES: [&str; 5] = [
    "CET-1CEST,M3.5.0,M10.5.0/3",
    "EST5EDT,M3.2.0,M11.1.0",
    "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
    "<-04>4<-03>,M9.1.6/24,M4.1.6/24",
    "UTC0",
];

const EXPRS: [&str; 9] = [
    "30 2 * * *",
    "0 8,16,0 * * *",
    "0 * * * *",
    "*/15 * * * *",
    "0 0 * * *",
    "30 1-3 * * 0",
    "0 */2 * * *",
    "15 30 2 * * *",
    "0 0 1 * *",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn firings_increase_and_land_on_named_times(
        zone in select(ZONES.to_vec()),
        expr in select(EXPRS.to_vec()),
        // Somewhere in 1990..2060, or up to three days before one of a year's transitions.
        start_s in 631_152_000i64..2_840_140_800,
        near_transition in any::<bool>(),
        which in 0usize..2,
        back_s in 0i64..259_200,
    ) {
        let tz = TimeZone::posix(zone).expect("valid POSIX TZ");
        let schedule = Schedule::cron(expr, tz.clone(), zone).expect("valid expression");
        let cron = Cron::from_str(expr).expect("croner parses it");
        let mut t = Timestamp::from_secs(start_s);
        if near_transition
            && let Some(tr) = tz.following(t.to_jiff()).nth(which)
        {
            let back = Duration::from_secs(back_s.unsigned_abs());
            t = Timestamp::from_jiff(tr.timestamp()).saturating_sub(back);
        }
        for _ in 0..40 {
            let next = schedule.next_after(t).expect("these expressions fire forever");
            prop_assert!(next > t, "next_after({t}) = {next}");
            let local = next.to_jiff().to_zoned(tz.clone());
            let named = cron.is_time_matching(&local.datetime()).expect("matchable");
            // Otherwise it must be the first instant after a gap (a transition).
            let just_before = next.saturating_sub(Duration::from_millis(1)).to_jiff();
            let after_gap = tz.to_offset(just_before) < local.offset();
            prop_assert!(named || after_gap, "`{expr}` in {zone} fired at {local}");
            // An expression that names its hours fires a repeated time once: the first time.
            if !cron.pattern.hours.from_wildcard {
                let later_half = matches!(
                    tz.to_ambiguous_zoned(local.datetime()).offset(),
                    AmbiguousOffset::Fold { after, .. } if after == local.offset()
                );
                prop_assert!(!later_half, "`{expr}` in {zone} fired again at {local}");
            }
            t = next;
        }
    }

    #[test]
    fn every_is_a_fixed_step(interval_ms in 1u64..10_000_000, start in any::<i64>()) {
        let schedule = Schedule::every(Duration::from_millis(interval_ms)).expect("positive");
        let start = Timestamp::from_millis(start);
        match schedule.next_after(start) {
            Some(next) => {
                prop_assert!(next > start);
                prop_assert_eq!(next, start.saturating_add(Duration::from_millis(interval_ms)));
            }
            None => prop_assert_eq!(start, Timestamp::from_millis(i64::MAX)),
        }
    }
}
