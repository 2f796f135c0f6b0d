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
//!
//! # Bounded work
//!
//! The daemon asks for the next firing on its single runtime thread, so the search must
//! never spin. [`Schedule::cron`] rejects every expression that can never fire (a time
//! field that names nothing, like `,,, * * * *`; a date that never exists, like
//! `0 0 31 2 *`): the day fields are evaluated once for every shape a month can have
//! (12 months × 7 weekdays of the 1st × leap or not), which decides "never" exactly since
//! the Gregorian calendar repeats them all every 400 years. `next_after` then jumps to the
//! next matching date through that table (at most 4,800 month steps, usually none) and
//! lets croner search one day, so a firing costs microseconds whatever the expression.

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
    /// Shared: croner keeps a 5 KB year table per expression, and a configuration that
    /// repeats one expression holds it once.
    Cron(std::sync::Arc<CronSchedule>),
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
    /// Which dates and times of day the expression names, for bounded searches.
    calendar: Calendar,
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

/// The Gregorian calendar repeats every 400 years (146,097 days, a whole number of weeks):
/// a date shape that occurs at all occurs within this many months of any date.
const CYCLE_MONTHS: u32 = 400 * 12;

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

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
        let calendar = Calendar::new(&cron);
        if let Some(why) = never_fires(&cron, &calendar, &fields) {
            return Err(invalid(format!("never fires: {why}")));
        }
        let hours_explicit = !cron.pattern.hours.from_wildcard;
        Ok(Schedule {
            kind: Kind::Cron(std::sync::Arc::new(CronSchedule {
                expr: expr.to_owned(),
                cron,
                tz,
                tz_name: tz_name.to_owned(),
                hours_explicit,
                calendar,
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

    /// The first firing strictly after `after`.
    ///
    /// `None` only when no later instant is representable (an interval from the end of
    /// time, or a cron expression past croner's year 5000): expressions that never fire are
    /// rejected by [`Schedule::cron`]. The work is bounded whatever the expression (see the
    /// module docs), so this may run on the daemon's runtime thread.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.next_after_counting(after, &mut Work::default())
    }

    fn next_after_counting(&self, after: Timestamp, work: &mut Work) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(interval) => {
                let next = after.saturating_add(*interval);
                (next > after).then_some(next)
            }
            Kind::Cron(c) => c.next_after(after, work),
        }
    }

    /// The cron expression as written (trimmed) and the zone name it was given, if this
    /// is a cron schedule.
    pub fn cron_expr(&self) -> Option<(&str, &str)> {
        match &self.kind {
            Kind::Cron(c) => Some((&c.expr, &c.tz_name)),
            Kind::Every(_) => None,
        }
    }

    /// The interval, if this is an `every` schedule.
    pub fn interval(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Every(interval) => Some(*interval),
            Kind::Cron(_) => None,
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

/// What one `next_after` call did, for tests that bound the work without a clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Work {
    /// Months looked at in the date table while skipping to the next matching date.
    month_steps: u32,
    /// Searches handed to croner. Each starts on a date the expression names with a named
    /// time still to come, so croner searches one day (more only when a DST gap swallowed
    /// that day's times).
    croner_calls: u32,
    /// Time zone transitions examined for spring-forward firings.
    transitions: u32,
}

impl CronSchedule {
    fn next_after(&self, after: Timestamp, work: &mut Work) -> Option<Timestamp> {
        let mut from = after;
        for _ in 0..MAX_HOPS {
            let candidate = self.croner_next(from, work)?;
            if candidate <= from {
                // croner promises "after"; never hand back a non-increasing instant.
                from = from.saturating_add(Duration::from_secs(1));
                continue;
            }
            if self.hours_explicit {
                if let Some(fired) = self.gap_firing(from, candidate, work) {
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
    ///
    /// When `after`'s local date is not one the expression names, the search starts just
    /// before the next date that is (found in the date table), so croner never walks the
    /// calendar day by day: nothing can fire on the dates skipped.
    fn croner_next(&self, after: Timestamp, work: &mut Work) -> Option<Timestamp> {
        // Flooring to the second and searching exclusively yields the first whole-second
        // match >= floor + 1s, which is strictly after `after` and misses nothing: cron
        // times are whole seconds.
        let secs = calendar_start(after).as_millis().div_euclid(1000);
        let start = jiff::Timestamp::from_second(secs).ok()?;
        let mut start = start.to_zoned(self.tz.clone());
        let today = start.date();
        let mut first = self.calendar.next_date(today, &mut work.month_steps)?;
        if first == today && !self.fires_later_today(&start) {
            first = self
                .calendar
                .next_date(today.tomorrow().ok()?, &mut work.month_steps)?;
        }
        if first > today {
            // The first instant of that date (after a gap, if midnight is in one), less a
            // second: the exclusive search then starts exactly at the date's first instant.
            let midnight = first.to_zoned(self.tz.clone()).ok()?;
            let before = midnight
                .timestamp()
                .checked_sub(jiff::SignedDuration::from_secs(1))
                .ok()?;
            if before > start.timestamp() {
                start = before.to_zoned(self.tz.clone());
            }
        }
        work.croner_calls += 1;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(Timestamp::from_jiff(next.timestamp()))
    }

    /// Whether a time the expression names may still come today after `start` (its date
    /// matches). Conservatively yes when a transition is due before tomorrow: a repeated
    /// hour replays earlier wall-clock times.
    fn fires_later_today(&self, start: &jiff::Zoned) -> bool {
        let Ok(tomorrow) = start.date().tomorrow() else {
            return true;
        };
        let Ok(midnight) = tomorrow.to_zoned(self.tz.clone()) else {
            return true;
        };
        let transition_due = self
            .tz
            .following(start.timestamp())
            .next()
            .is_some_and(|t| t.timestamp() <= midnight.timestamp());
        if transition_due {
            return true;
        }
        // The search is exclusive of `start`'s own second.
        let t = start.time();
        let part = |v: i8| u32::from(v.unsigned_abs());
        let (h, m, s) = (part(t.hour()), part(t.minute()), part(t.second()) + 1);
        let (h, m, s) = if s < 60 {
            (h, m, s)
        } else if m < 59 {
            (h, m + 1, 0)
        } else {
            (h + 1, 0, 0)
        };
        h < 24 && self.calendar.next_time(h, m, s).is_some()
    }

    /// A spring-forward transition in `(from, until]` whose skipped wall-clock range holds a
    /// time this expression names: it fires at the transition (the first instant after the
    /// gap). croner already does this for single-time expressions; this extends it to hour
    /// lists and ranges.
    fn gap_firing(&self, from: Timestamp, until: Timestamp, work: &mut Work) -> Option<Timestamp> {
        for transition in self.tz.following(calendar_start(from).to_jiff()) {
            let at = transition.timestamp();
            if Timestamp::from_jiff(at) > until {
                break;
            }
            work.transitions += 1;
            let after = transition.offset();
            let before = self
                .tz
                .to_offset(at.checked_sub(jiff::SignedDuration::from_nanos(1)).ok()?);
            if after <= before {
                continue; // not a gap
            }
            let gap_start = before.to_datetime(at);
            let gap_end = after.to_datetime(at);
            let named = self.calendar.names_time_in(gap_start, gap_end);
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

/// Which dates and times of day a cron expression names, precomputed so that searches
/// jump instead of walking the calendar.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Calendar {
    /// `days[month - 1][weekday of the 1st][leap]`: bit `d` is set when day `d` of such a
    /// month matches the day-of-month, day-of-week and month fields. croner's own
    /// `day_match` decides each bit; it depends on nothing else (the year field is
    /// disallowed).
    days: [[[u32; 2]; 7]; 12],
    hours: u32,
    minutes: u64,
    seconds: u64,
}

/// croner's component bits (`croner::component` is private; a test checks the table built
/// from them against croner's own `day_match`).
const ALL_BIT: u8 = 1;
const NTH_BITS: [u8; 5] = [1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5];
const LAST_BIT: u8 = 1 << 6;
const CLOSEST_WEEKDAY_BIT: u8 = 1 << 7;

impl Calendar {
    /// The table croner's `day_match` describes, built from the pattern's bits in a few
    /// microseconds (calling `day_match` for every day of every month shape took 200).
    fn new(cron: &Cron) -> Calendar {
        let p = &cron.pattern;
        let bits = |values: Vec<u16>| values.into_iter().fold(0u64, |acc, v| acc | 1 << v);
        let set = |c: &croner::CronComponent, pos: u32, bit: u8| {
            u16::try_from(pos).is_ok_and(|pos| c.is_bit_set(pos, bit).unwrap_or(false))
        };
        // Day-of-month: plain days, `W` days, `L` and `LW`.
        let mut dom = 0u32;
        let mut dom_w = 0u32;
        for d in 1..=31 {
            if set(&p.days, d, ALL_BIT) {
                dom |= 1 << d;
            }
            if set(&p.days, d, CLOSEST_WEEKDAY_BIT) {
                dom_w |= 1 << d;
            }
        }
        let last = p.days.is_feature_enabled(LAST_BIT);
        let last_weekday = last && p.days.is_feature_enabled(CLOSEST_WEEKDAY_BIT);
        // Day-of-week (Sunday is 0): plain, `#n`, and `nL`.
        let weekdays = |bit: u8| {
            (0..7)
                .filter(|&w| set(&p.days_of_week, w, bit))
                .fold(0u8, |a, w| a | 1 << w)
        };
        let dow = weekdays(ALL_BIT);
        let dow_nth = NTH_BITS.map(weekdays);
        let dow_last = weekdays(LAST_BIT);
        let (star_dom, star_dow, both) = (
            p.is_dom_wildcard(),
            p.is_dow_wildcard(),
            p.matches_dom_and_dow(),
        );
        // masks[length - 28][weekday of the 1st], as `day_match` decides each day.
        let mut masks = [[0u32; 7]; 4];
        for (length, by_first) in (28u32..).zip(masks.iter_mut()) {
            for (first, mask) in (0u32..).zip(by_first.iter_mut()) {
                let weekday = |d: u32| (first + d - 1) % 7;
                let mut days = dom;
                if last_weekday {
                    days |= 1
                        << match weekday(length) {
                            6 => length - 1,
                            0 => length - 2,
                            _ => length,
                        };
                } else if last {
                    days |= 1 << length;
                }
                for pd in (1..=length).filter(|pd| dom_w & (1 << pd) != 0) {
                    let target = match weekday(pd) {
                        6 if pd > 1 => pd - 1,
                        6 => pd + 2,
                        0 if pd < length => pd + 1,
                        0 => pd - 2,
                        _ => pd,
                    };
                    days |= 1 << target;
                }
                for d in 1..=length {
                    let w = 1u8 << weekday(d);
                    let day_ok = days & (1 << d) != 0;
                    let nth = usize::try_from((d - 1) / 7).unwrap_or(usize::MAX);
                    let dow_ok = dow_nth.get(nth).is_some_and(|m| m & w != 0)
                        || (dow_last & w != 0 && d + 7 > length)
                        || dow & w != 0;
                    let matches = if (day_ok && star_dow) || (dow_ok && star_dom) {
                        true
                    } else if !star_dom && !star_dow {
                        if both {
                            day_ok && dow_ok
                        } else {
                            day_ok || dow_ok
                        }
                    } else {
                        false
                    };
                    if matches {
                        *mask |= 1 << d;
                    }
                }
            }
        }
        let mut days = [[[0u32; 2]; 7]; 12];
        for (m, by_weekday) in (1u32..).zip(days.iter_mut()) {
            if !p.month_match(m).unwrap_or(false) {
                continue;
            }
            for (first, by_leap) in by_weekday.iter_mut().enumerate() {
                for (leap, mask) in by_leap.iter_mut().enumerate() {
                    let length = month_length(m, leap == 1);
                    let shape = usize::try_from(length - 28).unwrap_or(0);
                    *mask = masks[shape][first];
                }
            }
        }
        Calendar {
            days,
            hours: u32::try_from(bits(p.hours.values())).unwrap_or(0),
            minutes: bits(p.minutes.values()),
            seconds: bits(p.seconds.values()),
        }
    }

    fn any_date(&self) -> bool {
        self.days.iter().flatten().flatten().any(|&mask| mask != 0)
    }

    fn month_mask(&self, year: i16, month: i8, first: jiff::civil::Weekday) -> u32 {
        let leap = usize::from(jiff::civil::date(year, 2, 1).in_leap_year());
        let first = usize::from(first.to_sunday_zero_offset().unsigned_abs());
        let month = usize::from(month.unsigned_abs()).saturating_sub(1);
        self.days
            .get(month)
            .and_then(|w| w.get(first))
            .map_or(0, |l| l[leap])
    }

    fn date_matches(&self, date: jiff::civil::Date) -> bool {
        let first = date.first_of_month().weekday();
        let mask = self.month_mask(date.year(), date.month(), first);
        mask & (1 << date.day().unsigned_abs()) != 0
    }

    /// The first date on or after `date` that the expression names (not before year 1),
    /// looking at most one calendar cycle ahead. Counts the months looked at.
    fn next_date(&self, date: jiff::civil::Date, steps: &mut u32) -> Option<jiff::civil::Date> {
        let mut date = date.max(jiff::civil::date(1, 1, 1));
        for _ in 0..=CYCLE_MONTHS {
            *steps += 1;
            let first = date.first_of_month();
            let mask = self.month_mask(date.year(), date.month(), first.weekday());
            // Days from `date` on: clear the bits of the earlier days (and bit 0).
            let from_today = mask & (u32::MAX << date.day().unsigned_abs());
            if from_today != 0 {
                let day = i8::try_from(from_today.trailing_zeros()).ok()?;
                return first.with().day(day).build().ok();
            }
            date = first.checked_add(jiff::Span::new().months(1)).ok()?;
        }
        None
    }

    /// The first time of day at or after `h:m:s` that the expression names.
    fn next_time(&self, h: u32, m: u32, s: u32) -> Option<(u32, u32, u32)> {
        for hour in h..24 {
            if self.hours & (1 << hour) == 0 {
                continue;
            }
            let m0 = if hour == h { m } else { 0 };
            for minute in m0..60 {
                if self.minutes & (1 << minute) == 0 {
                    continue;
                }
                let s0 = if hour == h && minute == m { s } else { 0 };
                let later = self.seconds & (u64::MAX << s0);
                if later != 0 {
                    return Some((hour, minute, later.trailing_zeros()));
                }
            }
        }
        None
    }

    /// Whether a wall-clock time in `[start, end)` is named (for DST gaps: at most a day
    /// or two of dates, each looked at in constant time).
    fn names_time_in(&self, start: jiff::civil::DateTime, end: jiff::civil::DateTime) -> bool {
        let mut date = start.date();
        while date <= end.date() {
            if self.date_matches(date) {
                let (h, m, s) = if date == start.date() {
                    let t = start.time();
                    let part = |v: i8| u32::from(v.unsigned_abs());
                    (part(t.hour()), part(t.minute()), part(t.second()))
                } else {
                    (0, 0, 0)
                };
                let named = self.next_time(h, m, s).and_then(|(h, m, s)| {
                    let [h, m, s] = [h, m, s].map(|v| i8::try_from(v).unwrap_or(i8::MAX));
                    let time = jiff::civil::Time::new(h, m, s, 0).ok()?;
                    Some(time.to_datetime(date))
                });
                if named.is_some_and(|t| t >= start && t < end) {
                    return true;
                }
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        false
    }
}

fn month_length(month: u32, leap: bool) -> u32 {
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Why an expression can never fire, if it cannot.
fn never_fires(cron: &Cron, calendar: &Calendar, fields: &[&str]) -> Option<String> {
    // The fields as written (5 fields: no seconds), for messages.
    let offset = if fields.len() == 5 { 1 } else { 0 };
    let written = |i: usize| i.checked_sub(offset).and_then(|j| fields.get(j)).copied();
    let names_nothing = |i: usize, what: &str| {
        let name = FIELDS[i].0;
        match written(i) {
            Some(f) => format!("the {name} field `{f}` names no {what}"),
            None => format!("the {name} field names no {what}"),
        }
    };
    let p = &cron.pattern;
    for (i, what, empty) in [
        (0, "second", calendar.seconds == 0),
        (1, "minute", calendar.minutes == 0),
        (2, "hour", calendar.hours == 0),
    ] {
        if empty {
            return Some(names_nothing(i, what));
        }
    }
    if calendar.any_date() {
        return None;
    }
    let months: Vec<u32> = p.months.values().into_iter().map(u32::from).collect();
    if months.is_empty() {
        return Some(names_nothing(4, "month"));
    }
    let dom: Vec<u32> = p.days.values().into_iter().map(u32::from).collect();
    let plain_dom = !p.days.has_modifiers() && (p.is_dow_wildcard() || p.matches_dom_and_dow());
    if p.is_dow_wildcard() && dom.is_empty() && !p.days.has_modifiers() {
        return Some(names_nothing(3, "day"));
    }
    if p.is_dom_wildcard() && p.days_of_week.values().is_empty() && !p.days_of_week.has_modifiers()
    {
        return Some(names_nothing(5, "day"));
    }
    if plain_dom && !dom.is_empty() {
        // Every named day is past the end of every named month.
        let longest = |m: u32| month_length(m, true);
        if dom.iter().all(|&d| months.iter().all(|&m| d > longest(m))) {
            let list = |items: Vec<String>, word: &str| match items.as_slice() {
                [] => String::new(),
                [one] => one.clone(),
                [init @ .., last] => format!("{} {word} {last}", init.join(", ")),
            };
            let days = list(dom.iter().map(u32::to_string).collect(), "and");
            let names = months
                .iter()
                .filter_map(|&m| MONTH_NAMES.get(usize::try_from(m).ok()?.checked_sub(1)?))
                .map(|n| (*n).to_owned())
                .collect();
            let (noun, verb) = if dom.len() == 1 {
                ("day", "does")
            } else {
                ("days", "do")
            };
            return Some(format!(
                "{noun} {days} {verb} not occur in {}",
                list(names, "or")
            ));
        }
    }
    Some(format!(
        "no date matches the day-of-month field `{}`, the month field `{}` and the day-of-week field `{}` together",
        written(3).unwrap_or("*"),
        written(4).unwrap_or("*"),
        written(5).unwrap_or("*"),
    ))
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
    fn never_firing_expressions_are_rejected_with_the_reason() {
        for (expr, why) in [
            (",,, * * * *", "the minute field `,,,` names no minute"),
            (",,, * * * * *", "the second field `,,,` names no second"),
            ("0 ,,, * * *", "the hour field `,,,` names no hour"),
            ("0 0 31 2 *", "day 31 does not occur in February"),
            ("0 0 30,31 2 *", "days 30 and 31 do not occur in February"),
            (
                "0 0 31 4,6,9,11 *",
                "day 31 does not occur in April, June, September or November",
            ),
            ("0 0 0 31 FEB *", "day 31 does not occur in February"),
            ("0 0 ,,, * *", "the day-of-month field `,,,` names no day"),
            ("0 0 * ,,, *", "the month field `,,,` names no month"),
            ("0 0 * * ,,,", "the day-of-week field `,,,` names no day"),
            ("0 0 30 2 +1", "day 30 does not occur in February"),
            (
                "0 0 LW 2 +0",
                "no date matches the day-of-month field `LW`, the month field `2` and the \
                 day-of-week field `+0` together",
            ),
        ] {
            assert_eq!(
                error(expr),
                format!("invalid cron expression `{expr}`: never fires: {why}"),
            );
        }
    }

    #[test]
    fn rare_but_real_dates_are_accepted() {
        // Feb 29 (every 4 to 8 years); the fifth Friday of February (when Feb 1 of a leap
        // year is a Friday); Feb 29 that is also a Monday (`+`: both day fields).
        for (expr, first) in [
            ("0 0 29 2 *", "2028-02-29 00:00:00+01:00"),
            ("0 0 * 2 5#5", "2036-02-29 00:00:00+01:00"),
            ("0 0 29 2 +1", "2044-02-29 00:00:00+01:00"),
            ("0 0 L 2 *", "2025-02-28 00:00:00+01:00"),
        ] {
            assert_eq!(
                firings(&cron(expr), "2025-01-01T00:00:00Z", "2045-01-01T00:00:00Z").first(),
                Some(&first.to_owned()),
                "{expr}"
            );
        }
    }

    /// The work of one `next_after`, counted (no clock): the date table and croner.
    fn work(s: &Schedule, after: Timestamp) -> (Option<Timestamp>, Work) {
        let mut work = Work::default();
        let next = s.next_after_counting(after, &mut work);
        (next, work)
    }

    #[test]
    fn next_after_does_bounded_work_on_adversarial_expressions() {
        let exprs = [
            "0 0 29 2 +1",
            "0 0 * 2 5#5",
            "59 59 23 31 12 *",
            "0 0 LW * *",
            "* * * * * *",
            "0 0 29 2 1",
            "30 2 29 2 +0",
            "*/7 1-3 * 3,10 0#5",
        ];
        let starts = [
            Timestamp::from_millis(i64::MIN),
            utc("1900-02-28T23:59:59Z"),
            utc("2025-03-30T00:59:59Z"),
            utc("2025-10-26T00:30:00Z"),
            utc("2099-12-31T23:00:00Z"),
            utc("4990-01-01T00:00:00Z"),
            Timestamp::from_millis(i64::MAX),
        ];
        for expr in exprs {
            let s = cron(expr);
            for start in starts {
                let (mut t, mut total) = (start, Work::default());
                for _ in 0..20 {
                    let (next, w) = work(&s, t);
                    // At most one calendar cycle of months, a hop or two through croner,
                    // and the transitions of the years in between (two a year).
                    assert!(w.month_steps <= 2 * (CYCLE_MONTHS + 1), "{expr}: {w:?}");
                    assert!(w.croner_calls <= 4, "{expr}: {w:?}");
                    assert!(w.transitions <= 2 * 60, "{expr}: {w:?}");
                    total.croner_calls += w.croner_calls;
                    let Some(next) = next else { break };
                    assert!(next > t);
                    t = next;
                }
                assert!(total.croner_calls >= 1 || start > utc("4990-01-01T00:00:00Z"));
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Any expression built from odd field values either is rejected, or fires again
        /// from any instant with bounded work; "never fires" agrees with croner's own
        /// search over the dates (the time fields are checked by the bit sets alone).
        #[test]
        fn accepted_expressions_fire_with_bounded_work(
            minute in proptest::sample::select(vec!["0", "*/7", "59", "1-3"]),
            hour in proptest::sample::select(vec!["0", "*", "2", "23", "1-3"]),
            dom in proptest::sample::select(
                vec!["*", "29", "30", "31", "L", "LW", "15W", "31W", "1,15", ",,,", "?"],
            ),
            month in proptest::sample::select(vec!["*", "2", "4", "2,4", "12", "FEB", ",,,"]),
            dow in proptest::sample::select(
                vec!["*", "0", "1", "5#5", "1#1", "5L", "+1", "+5#5", "+0", ",,,", "?"],
            ),
            start_s in -2_208_988_800i64..4_102_444_800,
        ) {
            let expr = format!("{minute} {hour} {dom} {month} {dow}");
            match Schedule::cron(&expr, berlin(), "Europe/Berlin") {
                Ok(s) => {
                    let mut t = Timestamp::from_secs(start_s);
                    for _ in 0..5 {
                        let (next, w) = work(&s, t);
                        proptest::prop_assert!(w.croner_calls <= 4, "{expr}: {w:?}");
                        proptest::prop_assert!(w.month_steps <= 2 * (CYCLE_MONTHS + 1));
                        let next = next.expect("an accepted expression fires again");
                        proptest::prop_assert!(next > t);
                        t = next;
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    proptest::prop_assert!(text.contains("never fires"), "{text}");
                    // croner agrees: no date from 2000 on (it gives up at year 5000).
                    let cron = parser().parse(&expr).expect("croner parses it");
                    let start = jiff::civil::date(2000, 1, 1).at(0, 0, 0, 0);
                    proptest::prop_assert!(cron.find_next_occurrence(&start, true).is_err());
                }
            }
        }
    }

    #[test]
    fn the_date_table_agrees_with_croners_day_match() {
        let dom = [
            "*", "?", "1", "15", "29", "30", "31", "L", "LW", "1W", "15W", "30W", "31W", "L,15W",
            "1-7", "*/10", ",,,", "2,31",
        ];
        let months = ["*", "2", "4", "1,2", "12"];
        let dow = [
            "*", "?", "0", "1", "7", "1-5", "5#5", "1#1", "2#3", "0L", "5L", "1,5L", "+1", "+5#5",
            "+0L", ",,,", "MON-FRI",
        ];
        for d in dom {
            for m in months {
                for w in dow {
                    let expr = format!("0 0 {d} {m} {w}");
                    let Ok(c) = parser().parse(&expr) else {
                        continue;
                    };
                    let table = Calendar::new(&c);
                    for month in 1..=12u32 {
                        for first in 0..7u32 {
                            for leap in [false, true] {
                                let year = if leap { 2000 } else { 2001 };
                                let mut want = 0u32;
                                for day in 1..=month_length(month, leap) {
                                    let weekday =
                                        croner::Weekday::from_days_from_sunday(first + day - 1);
                                    if c.pattern
                                        .day_match(year, month, day, weekday)
                                        .unwrap_or(false)
                                        && c.pattern.month_match(month).unwrap_or(false)
                                    {
                                        want |= 1 << day;
                                    }
                                }
                                let got = table.days[month as usize - 1][first as usize]
                                    [usize::from(leap)];
                                assert_eq!(
                                    got, want,
                                    "`{expr}` month {month} first {first} leap {leap}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_yearly_firing_skips_to_its_date_in_a_few_steps() {
        let s = cron("0 8 24 12 *");
        let (next, w) = work(&s, utc("2025-01-02T00:00:00Z"));
        assert_eq!(next, Some(utc("2025-12-24T07:00:00Z")));
        assert_eq!(w.croner_calls, 1, "{w:?}");
        assert!(w.month_steps <= 12, "{w:?}");
        // From just after the firing, the same day has nothing left: next year's date.
        let (next, w) = work(&s, utc("2025-12-24T07:00:00Z"));
        assert_eq!(next, Some(utc("2026-12-24T07:00:00Z")));
        assert_eq!(w.croner_calls, 1, "{w:?}");
        assert!(w.month_steps <= 14, "{w:?}");
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
