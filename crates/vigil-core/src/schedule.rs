//! Schedule math for `[[services.NAME.schedule]]`: when does a schedule fire next.
//!
//! Owns parsing a cron expression (through croner) and the rule for the next firing after
//! an instant, including what daylight-saving transitions do to it. It must not look up
//! time zones (the tzdb is I/O: the config crate resolves `timezone` and hands us a
//! [`TimeZone`]) nor read the clock: `next_after` takes the instant as a value.
//!
//! # Daylight saving time
//!
//! A cron expression names wall-clock times, and a transition makes some wall-clock times
//! happen twice (fall back) or never (spring forward). Vigil follows cron's old rule:
//!
//! - When the hour field is written out (`0 2 * * *`, `0 8,16,0 * * *`, `30 1-3 * * *`),
//!   the expression means "at this local time of day", so it fires once per matching day:
//!   - a repeated time fires only at its first (earlier) occurrence;
//!   - a time that does not exist that day fires once, at the first instant after the gap
//!     (the transition itself: `30 2 * * *` in Europe/Berlin on 2025-03-30 fires at
//!     03:00 CEST, 01:00 UTC). This is croner's choice for fixed-time jobs; Vigil applies
//!     it to every expression with an explicit hour field, so `0 2,14 * * *` behaves like
//!     `0 2 * * *` at 02:00.
//! - When the hour field is `*` or `*/n`, the expression means "every so often", so it
//!   follows elapsed time: a repeated hour fires twice (`0 * * * *` still fires every real
//!   hour), and times inside a gap are skipped (the next real hour comes anyway).

use std::fmt;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::{AmbiguousOffset, TimeZone};

use crate::time::{Timestamp, format_duration};

/// When a schedule fires: a cron expression in a time zone, or a fixed interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Cron(Box<CronSchedule>),
    Every(Duration),
}

#[derive(Clone, Debug, PartialEq)]
struct CronSchedule {
    /// The expression as written (trimmed), for display and for reload comparisons.
    expr: String,
    cron: Cron,
    tz: TimeZone,
    tz_name: String,
    /// The hour field is written out (not `*` or `*/n`): wall-clock semantics across DST,
    /// see the module docs.
    hours_explicit: bool,
}

/// A schedule that cannot be built, with a sentence saying why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleError(pub String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScheduleError {}

/// The fields of a 6-field expression, with their ranges, for error messages.
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12"),
    ("day-of-week", "0-7"),
];

/// How many times `next_after` may step over a firing it rejects (the later half of a
/// repeated hour) before giving up. One step skips a whole repeated range, so two would
/// do; the margin only guards against a pathological zone.
const MAX_HOPS: usize = 16;

/// 0001-01-01T00:00:00Z in seconds since the Unix epoch: croner's earliest year.
const YEAR_1_UTC_SECS: i64 = -62_135_596_800;

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

impl Schedule {
    /// 5-field POSIX cron or 6 fields with leading seconds. `tz` already resolved by the
    /// caller (the config crate does the tzdb lookup, which is I/O); `tz_name` is for
    /// display.
    pub fn cron(expr: &str, tz: TimeZone, tz_name: &str) -> Result<Schedule, ScheduleError> {
        let expr = expr.trim();
        let invalid =
            |why: String| ScheduleError(format!("invalid cron expression `{expr}`: {why}"));
        if expr.is_empty() {
            return Err(invalid("the expression is empty".to_owned()));
        }
        let fields: Vec<&str> = expr.split_whitespace().collect();
        // `@daily` and friends are croner's; anything else must have 5 or 6 fields. Checked
        // here because croner's own message talks about years, which Vigil never accepts.
        if !expr.starts_with('@') && !(5..=6).contains(&fields.len()) {
            return Err(invalid(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with \
                 leading seconds, found {}",
                fields.len()
            )));
        }
        let cron = parser()
            .parse(expr)
            .map_err(|err| invalid(explain(&fields, &err)))?;
        let hours_explicit = !cron.pattern.hours.from_wildcard;
        Ok(Schedule {
            kind: Kind::Cron(Box::new(CronSchedule {
                expr: expr.to_owned(),
                cron,
                tz,
                tz_name: tz_name.to_owned(),
                hours_explicit,
            })),
        })
    }

    /// Fires every `interval` (> 0, else error) counted from the instant given to
    /// next_after.
    ///
    /// Instants are milliseconds, so the interval must be at least 1ms and any
    /// sub-millisecond remainder is dropped.
    pub fn every(interval: Duration) -> Result<Schedule, ScheduleError> {
        if interval.is_zero() {
            return Err(ScheduleError(
                "invalid interval `0s`: an `every` schedule needs an interval greater than zero"
                    .to_owned(),
            ));
        }
        if interval < Duration::from_millis(1) {
            return Err(ScheduleError(format!(
                "invalid interval `{interval:?}`: an `every` schedule needs an interval of at \
                 least 1ms"
            )));
        }
        Ok(Schedule {
            kind: Kind::Every(interval),
        })
    }

    /// The first firing strictly after `after`. None only if the cron never matches again.
    ///
    /// `None` also when no later instant is representable (an interval from the end of
    /// time, or a cron expression past croner's year 5000).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(interval) => {
                let next = after.saturating_add(*interval);
                (next > after).then_some(next)
            }
            Kind::Cron(c) => c.next_after(after),
        }
    }

    /// Human text for `vigil status`, e.g. "cron `0 8,16,0 * * *` (Europe/Berlin)" or
    /// "every 1h".
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Every(interval) => format!("every {}", format_duration(*interval)),
            Kind::Cron(c) => format!("cron `{}` ({})", c.expr, c.tz_name),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl CronSchedule {
    fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let mut from = after;
        for _ in 0..MAX_HOPS {
            let candidate = self.croner_next(from)?;
            if candidate <= from {
                // croner promises "after"; never hand back a non-increasing instant.
                from = from.saturating_add(Duration::from_secs(1));
                continue;
            }
            if self.hours_explicit {
                if let Some(fired) = self.gap_firing(from, candidate) {
                    return Some(fired);
                }
                if let Some(end) = self.repeated_range_end(candidate) {
                    // The later occurrence of a time that already fired: step over the
                    // whole repeated range instead of one firing at a time.
                    from = end.saturating_sub(Duration::from_secs(1)).max(candidate);
                    continue;
                }
            }
            return Some(candidate);
        }
        None
    }

    /// croner's next match strictly after `after`, on whole seconds.
    fn croner_next(&self, after: Timestamp) -> Option<Timestamp> {
        // Flooring to the second and searching exclusively yields the first whole-second
        // match >= floor + 1s, which is strictly after `after` and misses nothing: cron
        // times are whole seconds.
        let secs = calendar_start(after).as_millis().div_euclid(1000);
        let start = jiff::Timestamp::from_second(secs).ok()?;
        let start = start.to_zoned(self.tz.clone());
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(Timestamp::from_jiff(next.timestamp()))
    }

    /// A spring-forward transition in `(from, until]` whose skipped wall-clock range holds a
    /// time this expression names: it fires at the transition (the first instant after the
    /// gap). croner already does this for single-time expressions; this extends it to hour
    /// lists and ranges.
    fn gap_firing(&self, from: Timestamp, until: Timestamp) -> Option<Timestamp> {
        for transition in self.tz.following(calendar_start(from).to_jiff()) {
            let at = transition.timestamp();
            if Timestamp::from_jiff(at) > until {
                break;
            }
            let after = transition.offset();
            let before = self
                .tz
                .to_offset(at.checked_sub(jiff::SignedDuration::from_nanos(1)).ok()?);
            if after <= before {
                continue; // not a gap
            }
            let gap_start = before.to_datetime(at);
            let gap_end = after.to_datetime(at);
            let named = self
                .cron
                .find_next_occurrence(&gap_start, true)
                .is_ok_and(|m| m < gap_end);
            let fired = Timestamp::from_jiff(at);
            if named && fired > from {
                return Some(fired);
            }
        }
        None
    }

    /// If `at` is the later occurrence of a repeated wall-clock time, the instant the
    /// repeated range ends (the first instant whose wall-clock time was not repeated).
    fn repeated_range_end(&self, at: Timestamp) -> Option<Timestamp> {
        let zoned = at.to_jiff().to_zoned(self.tz.clone());
        let AmbiguousOffset::Fold { before, after } =
            self.tz.to_ambiguous_zoned(zoned.datetime()).offset()
        else {
            return None;
        };
        if zoned.offset() != after || before == after {
            return None;
        }
        // The transition that started this fold is the latest one at or before `at`.
        let probe = at
            .to_jiff()
            .checked_add(jiff::SignedDuration::from_nanos(1))
            .ok()?;
        let transition = self.tz.preceding(probe).next()?;
        let shift = i64::from(before.seconds()) - i64::from(after.seconds());
        let end = Timestamp::from_jiff(transition.timestamp())
            .saturating_add(Duration::from_secs(shift.unsigned_abs()));
        Some(end)
    }
}

/// `t`, or two days before year 1 if `t` is earlier. croner never matches before year 1,
/// and walking there from jiff's minimum (year -9999), date by date or transition by
/// transition, takes seconds; starting just before year 1 gives the same answers.
fn calendar_start(t: Timestamp) -> Timestamp {
    t.max(Timestamp::from_secs(YEAR_1_UTC_SECS - 2 * 86_400))
}

/// Names the field croner rejected, with croner's reason and the field's range.
fn explain(fields: &[&str], err: &croner::errors::CronError) -> String {
    let reason = croner_reason(err);
    // Re-parse each field alone (the others `*`) to find the culprit; the first that fails
    // on its own is the one to blame.
    let offset = if fields.len() == 5 { 1 } else { 0 };
    if fields.len() == 5 || fields.len() == 6 {
        for (i, field) in fields.iter().enumerate() {
            let mut probe = ["0", "*", "*", "*", "*", "*"];
            probe[i + offset] = field;
            if let Err(e) = parser().parse(&probe.join(" ")) {
                let (name, range) = FIELDS[i + offset];
                return format!(
                    "{name} field `{field}`: {} (allowed {range})",
                    croner_reason(&e)
                );
            }
        }
    }
    reason
}

/// croner's message without its category prefix, as a clause.
fn croner_reason(err: &croner::errors::CronError) -> String {
    use croner::errors::CronError;
    let text = match err {
        CronError::InvalidPattern(msg)
        | CronError::IllegalCharacters(msg)
        | CronError::ComponentError(msg) => msg.clone(),
        other => other.to_string(),
    };
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "rejected by the cron parser".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Europe/Berlin's current rule as a POSIX TZ string: deterministic, no tzdb I/O.
    fn berlin() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("valid POSIX TZ")
    }

    fn cron(expr: &str) -> Schedule {
        Schedule::cron(expr, berlin(), "Europe/Berlin").expect("valid expression")
    }

    fn utc(s: &str) -> Timestamp {
        Timestamp::from_jiff(s.parse().expect("RFC 3339 instant"))
    }

    /// The firings strictly after `start` and before `end`, in Berlin local time with
    /// offset.
    fn firings(s: &Schedule, start: &str, end: &str) -> Vec<String> {
        let (mut t, end) = (utc(start), utc(end));
        let mut out = Vec::new();
        while let Some(next) = s.next_after(t) {
            if next >= end {
                break;
            }
            assert!(next > t, "next_after({t}) = {next} is not after it");
            out.push(
                next.to_jiff()
                    .to_zoned(berlin())
                    .strftime("%Y-%m-%d %H:%M:%S%:z")
                    .to_string(),
            );
            t = next;
        }
        out
    }

    #[test]
    fn spring_forward_fires_once_at_the_end_of_the_gap() {
        // 2025-03-30: 02:00 CET jumps to 03:00 CEST, so 02:30 never happens.
        assert_eq!(
            firings(
                &cron("30 2 * * *"),
                "2025-03-28T12:00:00Z",
                "2025-03-31T12:00:00Z"
            ),
            [
                "2025-03-29 02:30:00+01:00",
                "2025-03-30 03:00:00+02:00",
                "2025-03-31 02:30:00+02:00",
            ]
        );
    }

    #[test]
    fn fall_back_fires_once_not_twice() {
        // 2025-10-26: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice.
        assert_eq!(
            firings(
                &cron("30 2 * * *"),
                "2025-10-24T12:00:00Z",
                "2025-10-27T12:00:00Z"
            ),
            [
                "2025-10-25 02:30:00+02:00",
                "2025-10-26 02:30:00+02:00",
                "2025-10-27 02:30:00+01:00",
            ]
        );
    }

    #[test]
    fn hour_lists_follow_the_wall_clock_across_dst_too() {
        assert_eq!(
            firings(
                &cron("0 2,14 * * *"),
                "2025-10-25T23:00:00Z",
                "2025-10-26T23:00:00Z"
            ),
            ["2025-10-26 02:00:00+02:00", "2025-10-26 14:00:00+01:00"]
        );
        assert_eq!(
            firings(
                &cron("30 2,14 * * *"),
                "2025-03-29T23:00:00Z",
                "2025-03-30T22:00:00Z"
            ),
            ["2025-03-30 03:00:00+02:00", "2025-03-30 14:30:00+02:00"]
        );
    }

    #[test]
    fn hourly_follows_elapsed_time_across_dst() {
        // Fall back: the repeated hour fires twice, one real hour apart.
        assert_eq!(
            firings(
                &cron("0 * * * *"),
                "2025-10-25T23:30:00Z",
                "2025-10-26T03:30:00Z"
            ),
            [
                "2025-10-26 02:00:00+02:00",
                "2025-10-26 02:00:00+01:00",
                "2025-10-26 03:00:00+01:00",
                "2025-10-26 04:00:00+01:00",
            ]
        );
        // Spring forward: 02:00 does not exist; 03:00 comes one real hour after 01:00.
        assert_eq!(
            firings(
                &cron("0 * * * *"),
                "2025-03-29T23:30:00Z",
                "2025-03-30T02:30:00Z"
            ),
            [
                "2025-03-30 01:00:00+01:00",
                "2025-03-30 03:00:00+02:00",
                "2025-03-30 04:00:00+02:00"
            ]
        );
    }

    #[test]
    fn seed_001_fixed_times() {
        assert_eq!(
            firings(
                &cron("0 8,16,0 * * *"),
                "2025-02-14T06:00:00Z",
                "2025-02-15T12:00:00Z"
            ),
            [
                "2025-02-14 08:00:00+01:00",
                "2025-02-14 16:00:00+01:00",
                "2025-02-15 00:00:00+01:00",
                "2025-02-15 08:00:00+01:00",
            ]
        );
    }

    #[test]
    fn six_fields_have_leading_seconds() {
        let s = cron("*/20 0 9 * * *");
        assert_eq!(
            firings(&s, "2025-06-01T06:00:00Z", "2025-06-01T08:00:00Z"),
            [
                "2025-06-01 09:00:00+02:00",
                "2025-06-01 09:00:20+02:00",
                "2025-06-01 09:00:40+02:00",
            ]
        );
    }

    #[test]
    fn next_after_is_strictly_after_even_on_a_firing_and_between_seconds() {
        let s = cron("0 * * * *");
        let at = utc("2025-06-01T10:00:00Z");
        assert_eq!(s.next_after(at), Some(utc("2025-06-01T11:00:00Z")));
        assert_eq!(
            s.next_after(at.saturating_sub(Duration::from_millis(1))),
            Some(at)
        );
        let every_second = cron("* * * * * *");
        let t = utc("2025-06-01T10:00:00Z").saturating_add(Duration::from_millis(500));
        assert_eq!(
            every_second.next_after(t),
            Some(utc("2025-06-01T10:00:01Z"))
        );
    }

    #[test]
    fn every_counts_from_the_given_instant() {
        let s = Schedule::every(Duration::from_secs(3600)).expect("positive interval");
        let t = utc("2025-06-01T10:17:03Z");
        assert_eq!(s.next_after(t), Some(utc("2025-06-01T11:17:03Z")));
        assert_eq!(s.describe(), "every 1h");
        assert_eq!(s.next_after(Timestamp::from_millis(i64::MAX)), None);
        assert_eq!(
            Schedule::every(Duration::ZERO).map(|_| ()),
            Err(ScheduleError(
                "invalid interval `0s`: an `every` schedule needs an interval greater than zero"
                    .to_owned()
            ))
        );
        assert!(Schedule::every(Duration::from_micros(10)).is_err());
    }

    #[test]
    fn describe_names_expression_and_zone() {
        assert_eq!(
            cron(" 0 8,16,0 * * * ").describe(),
            "cron `0 8,16,0 * * *` (Europe/Berlin)"
        );
        assert_eq!(
            Schedule::every(Duration::from_secs(5400)).map(|s| s.to_string()),
            Ok("every 1h 30m".to_owned())
        );
    }

    #[test]
    fn equality_is_by_expression_zone_and_interval() {
        assert_eq!(cron("0 8 * * *"), cron("0 8 * * *"));
        assert_ne!(cron("0 8 * * *"), cron("0 9 * * *"));
        assert_ne!(
            cron("0 8 * * *"),
            Schedule::cron("0 8 * * *", TimeZone::UTC, "UTC").expect("valid")
        );
        assert_eq!(
            Schedule::every(Duration::from_secs(60)),
            Schedule::every(Duration::from_secs(60))
        );
    }

    fn error(expr: &str) -> String {
        match Schedule::cron(expr, berlin(), "Europe/Berlin") {
            Ok(s) => panic!("`{expr}` parsed as {s}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn invalid_expressions_say_which_field_and_why() {
        assert_eq!(
            error("61 * * * *"),
            "invalid cron expression `61 * * * *`: minute field `61`: number out of bounds \
             (allowed 0-59)"
        );
        assert_eq!(
            error("0 24 * * *"),
            "invalid cron expression `0 24 * * *`: hour field `24`: number out of bounds \
             (allowed 0-23)"
        );
        assert_eq!(
            error("60 0 * * * *"),
            "invalid cron expression `60 0 * * * *`: second field `60`: number out of bounds \
             (allowed 0-59)"
        );
        assert_eq!(
            error("* * * *"),
            "invalid cron expression `* * * *`: expected 5 fields (minute hour day-of-month \
             month day-of-week) or 6 with leading seconds, found 4"
        );
        assert_eq!(
            error("0 0 1 1 * 2030"),
            "invalid cron expression `0 0 1 1 * 2030`: day-of-week field `2030`: number out \
             of bounds (allowed 0-7)"
        );
        assert!(error("1 2 3 4 5 6 7").ends_with("found 7"));
        assert_eq!(
            error("  "),
            "invalid cron expression ``: the expression is empty"
        );
        assert_eq!(
            error("every hour x y z"),
            "invalid cron expression `every hour x y z`: minute field `every`: cronPattern \
             contains illegal character 'E' in part 'EVERY' (allowed 0-59)"
        );
        assert_eq!(
            error("*/0 * * * *"),
            "invalid cron expression `*/0 * * * *`: minute field `*/0`: step cannot be zero \
             (allowed 0-59)"
        );
    }

    #[test]
    fn never_matching_expressions_have_no_next() {
        // February 30th never comes; croner gives up instead of looping.
        assert_eq!(
            cron("0 0 30 2 *").next_after(utc("2025-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let s = cron("0 8,16,0 * * *");
        assert!(s.next_after(Timestamp::from_millis(i64::MAX)).is_none());
        // croner's calendar starts in year 1: the first firing is its first midnight.
        let first = s.next_after(Timestamp::from_millis(i64::MIN));
        assert_eq!(
            first.map(|t| t.to_jiff().to_zoned(berlin()).datetime().to_string()),
            Some("0001-01-01T00:00:00".to_owned())
        );
        let every = Schedule::every(Duration::from_secs(1)).expect("positive");
        assert_eq!(
            every.next_after(Timestamp::from_millis(i64::MIN)),
            Some(Timestamp::from_millis(i64::MIN + 1000))
        );
    }

    /// A brute-force reading of the module docs' rule, minute by minute: does the
    /// schedule fire at `t`?
    fn fires_at(s: &CronSchedule, t: Timestamp) -> bool {
        let z = t.to_jiff().to_zoned(s.tz.clone());
        let matches = s.cron.is_time_matching(&z.datetime()).unwrap_or(false);
        let later_half = matches!(
            s.tz.to_ambiguous_zoned(z.datetime()).offset(),
            AmbiguousOffset::Fold { after, .. } if after == z.offset()
        );
        if matches && !(s.hours_explicit && later_half) {
            return true;
        }
        // The instant right after a gap fires for every time the gap swallowed.
        let before = t.saturating_sub(Duration::from_millis(1));
        let off_before = s.tz.to_offset(before.to_jiff());
        if s.hours_explicit && off_before < z.offset() {
            let (start, end) = (off_before.to_datetime(t.to_jiff()), z.datetime());
            let mut civil = start;
            while civil < end {
                if s.cron.is_time_matching(&civil).unwrap_or(false) {
                    return true;
                }
                civil = civil
                    .checked_add(jiff::SignedDuration::from_mins(1))
                    .expect("in range");
            }
        }
        false
    }

    #[test]
    fn next_after_agrees_with_a_brute_force_scan_around_transitions() {
        let exprs = [
            "30 2 * * *",
            "0 2,14 * * *",
            "*/20 1-3 * * *",
            "0 * * * *",
            "15 */2 * * *",
            "0 8,16,0 * * *",
        ];
        let windows = ["2025-03-29T22:00:00Z", "2025-10-25T22:00:00Z"];
        for expr in exprs {
            let s = cron(expr);
            let Kind::Cron(c) = &s.kind else {
                unreachable!()
            };
            for window in windows {
                let start = utc(window);
                // Every 7 minutes (and a few odd milliseconds) over 6 hours as `after`.
                for k in 0..52i64 {
                    let after = start.saturating_add(Duration::from_millis(
                        u64::try_from(k * 7 * 60_000 + (k % 3) * 400).expect("positive"),
                    ));
                    let mut expected = None;
                    let mut t = Timestamp::from_secs(after.as_secs() / 60 * 60 + 60);
                    for _ in 0..(3 * 24 * 60) {
                        if fires_at(c, t) {
                            expected = Some(t);
                            break;
                        }
                        t = t.saturating_add(Duration::from_secs(60));
                    }
                    assert_eq!(s.next_after(after), expected, "`{expr}` after {after}");
                }
            }
        }
    }
}
