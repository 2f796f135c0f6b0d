//! From spanned TOML values to typed values, one conversion per kind of value.
//!
//! Owns the validation context ([`Cx`], which collects errors instead of stopping), key
//! paths, the [`Table`] view that knows its section's keys (for unknown-key detection and
//! documented defaults), and the conversions (durations, sizes, argv, URLs, ...). Every
//! conversion reports what it expected and what it saw, at the value's span, and returns
//! `None` on error so that validation goes on and every error is collected. Nothing here
//! knows which key means what; that is `validate`'s job.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeValue};

use vigil_core::schedule::{Schedule, ScheduleError};

use crate::error::{Collector, ConfigError, Sources};
use crate::model::{Argv, Pattern, Proxy, ProxyScheme};
use crate::schema::{Dflt, KeyDoc, Section};
use crate::suggest;

pub(crate) type Value<'a> = Spanned<DeValue<'a>>;

/// Durations longer than this are rejected: nobody means them, and they would overflow
/// instant arithmetic downstream.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The validation context: where errors go.
pub(crate) struct Cx<'s> {
    sources: &'s Sources<'s>,
    /// Every error, counted; the first ones (by position) kept.
    pub(crate) errors: Collector<ConfigError>,
    /// Schema defaults parsed once each (they are read for every table that omits them).
    defaults: HashMap<&'static str, Option<Value<'static>>>,
    /// A scratch context (for a default literal) only counts its errors.
    scratch: bool,
    /// Names compared for "did you mean" among sets the file makes large (services,
    /// checks, channels, time zones): once spent, such errors come without a suggestion.
    suggestions_left: usize,
    /// The tz database's zone names, listed once.
    zone_names: Option<Vec<String>>,
    /// Time zones looked up, by name as written (`None`: unknown).
    zones: HashMap<String, Option<jiff::tz::TimeZone>>,
    /// The zone names in lower case, for lookups that must not touch the file system.
    zone_set: Option<std::collections::HashSet<String>>,
    /// Cron schedules built, by expression and zone name: croner spends tens of
    /// microseconds on each parse, and files repeat their expressions.
    crons: HashMap<(String, String), Result<Schedule, ScheduleError>>,
}

fn list_zones() -> Vec<String> {
    jiff::tz::db().available().map(|n| n.to_string()).collect()
}

/// How many names [`Cx::suggest`] compares in one parse (a few milliseconds).
const SUGGESTION_BUDGET: usize = 200_000;

impl<'s> Cx<'s> {
    pub(crate) fn new(sources: &'s Sources<'s>, errors: Collector<ConfigError>) -> Self {
        Cx {
            sources,
            errors,
            defaults: HashMap::new(),
            scratch: false,
            suggestions_left: SUGGESTION_BUDGET,
            zone_names: None,
            zones: HashMap::new(),
            zone_set: None,
            crons: HashMap::new(),
        }
    }

    fn scratch(sources: &'s Sources<'s>) -> Self {
        Cx {
            sources,
            errors: Collector::new(1),
            defaults: HashMap::new(),
            scratch: true,
            suggestions_left: 0,
            zone_names: None,
            zones: HashMap::new(),
            zone_set: None,
            crons: HashMap::new(),
        }
    }

    pub(crate) fn error(&mut self, span: Range<usize>, path: &KeyPath, message: impl Into<String>) {
        self.error_with(span, path, || message.into());
    }

    /// Like [`Cx::error`], building the message only if the error is kept: for errors a
    /// file can hold by the million (unknown keys, wrong types).
    pub(crate) fn error_with(
        &mut self,
        span: Range<usize>,
        path: &KeyPath,
        message: impl FnOnce() -> String,
    ) {
        if self.scratch || !self.errors.wants(span.start) {
            self.errors.count();
            return;
        }
        let e = self.sources.error(span.clone(), path.as_str(), message());
        self.errors.push(span.start, e);
    }

    /// Whether an error at `offset` would be kept (so a costly message is worth building).
    pub(crate) fn wants(&self, offset: usize) -> bool {
        !self.scratch && self.errors.wants(offset)
    }

    /// The directory relative paths written at `offset` are resolved against: the
    /// directory of the file they are written in.
    pub(crate) fn base_dir(&self, offset: usize) -> &'s Path {
        match self.sources.locate(offset) {
            Some((file, _)) => &file.dir,
            None => Path::new(""),
        }
    }

    /// "Did you mean" among `candidates`, a set the file can make large: each name
    /// compared is charged to a budget for the whole parse, so a file with a hundred
    /// thousand unknown names among a hundred thousand services stays linear.
    pub(crate) fn suggest<'c>(
        &mut self,
        word: &str,
        candidates: impl IntoIterator<Item = &'c str>,
    ) -> Option<&'c str> {
        let left = &mut self.suggestions_left;
        let budgeted = candidates.into_iter().take_while(|_| {
            let more = *left > 0;
            *left = left.saturating_sub(1);
            more
        });
        let near = suggest::closest(word, budgeted);
        // A search cut short may have missed the nearest name: suggest nothing rather
        // than something worse.
        if *left == 0 { None } else { near }
    }

    /// The time zone named `name` in the tz database. A name the database does not list
    /// is not looked up (a failed lookup may search the file system each time); every
    /// name is looked up once per parse.
    pub(crate) fn time_zone(&mut self, name: &str) -> Option<jiff::tz::TimeZone> {
        if let Some(tz) = self.zones.get(name) {
            return tz.clone();
        }
        let names = self.zone_names.get_or_insert_with(list_zones);
        let set = self
            .zone_set
            .get_or_insert_with(|| names.iter().map(|n| n.to_ascii_lowercase()).collect());
        let tz = if set.contains(&name.to_ascii_lowercase()) {
            jiff::tz::db().get(name).ok()
        } else {
            None
        };
        self.zones.insert(name.to_owned(), tz.clone());
        tz
    }

    /// The schedule of a cron expression in a zone, built once per parse.
    pub(crate) fn cron(
        &mut self,
        expr: &str,
        tz: jiff::tz::TimeZone,
        tz_name: &str,
    ) -> Result<Schedule, ScheduleError> {
        let key = (expr.to_owned(), tz_name.to_owned());
        self.crons
            .entry(key)
            .or_insert_with(|| Schedule::cron(expr, tz, tz_name))
            .clone()
    }

    /// "Did you mean" among the tz database's zone names (listed once per parse).
    pub(crate) fn suggest_zone(&mut self, name: &str) -> Option<String> {
        let names = self.zone_names.take().unwrap_or_else(list_zones);
        let near = self
            .suggest(name, names.iter().map(String::as_str))
            .map(str::to_owned);
        self.zone_names = Some(names);
        near
    }
}

/// A dotted key path such as `services.web.checks.health.every`, quoting segments that are
/// not bare TOML keys and indexing arrays as `schedule[0]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(String);

impl KeyPath {
    /// Built for every key read, so without `format!`.
    pub(crate) fn key(&self, key: &str) -> KeyPath {
        let bare = !key.is_empty()
            && key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        let mut path = String::with_capacity(self.0.len() + key.len() + 3);
        path.push_str(&self.0);
        if !self.0.is_empty() {
            path.push('.');
        }
        if bare {
            path.push_str(key);
        } else {
            path.push_str(&format!("{key:?}"));
        }
        KeyPath(path)
    }

    pub(crate) fn index(&self, i: usize) -> KeyPath {
        KeyPath(format!("{}[{i}]", self.0))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TOML table seen through the sections that define its keys.
pub(crate) struct Table<'a> {
    /// Entries in file order.
    entries: Vec<(&'a Spanned<DeString<'a>>, &'a Value<'a>)>,
    pub(crate) span: Range<usize>,
    pub(crate) path: KeyPath,
    /// How messages name the table, e.g. `[services.web.checks.health]`.
    pub(crate) label: String,
    sections: Vec<&'static Section>,
}

impl<'a> Table<'a> {
    /// `None` (with an error) when `v` is not a table.
    pub(crate) fn new(
        cx: &mut Cx<'_>,
        v: &'a Value<'a>,
        path: KeyPath,
        label: String,
        sections: &[&'static Section],
    ) -> Option<Table<'a>> {
        let DeValue::Table(map) = v.get_ref() else {
            type_error(cx, v, &path, "a table");
            return None;
        };
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        Some(Table {
            entries,
            span: v.span(),
            path,
            label,
            sections: sections.to_vec(),
        })
    }

    /// A table that is absent from the file: every key takes its default.
    pub(crate) fn empty(
        span: Range<usize>,
        path: KeyPath,
        label: String,
        sections: &[&'static Section],
    ) -> Table<'a> {
        Table {
            entries: Vec::new(),
            span,
            path,
            label,
            sections: sections.to_vec(),
        }
    }

    /// The sub-table `key`, or an empty one when absent. `None` (with an error) when `key`
    /// holds something else than a table.
    pub(crate) fn child_or_empty(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        sections: &[&'static Section],
    ) -> Option<Table<'a>> {
        let path = self.path.key(key);
        let label = format!("[{path}]");
        match self.get(key) {
            Some(v) => Table::new(cx, v, path, label, sections),
            None => Some(Table::empty(self.span.clone(), path, label, sections)),
        }
    }

    pub(crate) fn add_section(&mut self, section: &'static Section) {
        self.sections.push(section);
    }

    /// Entries in file order, with their key spans.
    pub(crate) fn entries(
        &self,
    ) -> impl Iterator<Item = (&'a Spanned<DeString<'a>>, &'a Value<'a>)> + '_ {
        self.entries.iter().copied()
    }

    fn doc(&self, key: &str) -> Option<(&'static Section, &'static KeyDoc)> {
        self.sections
            .iter()
            .find_map(|s| s.key(key).map(|k| (*s, k)))
    }

    /// The raw value of a documented key.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value<'a>> {
        debug_assert!(
            self.doc(key).is_some(),
            "key `{key}` of {} is read but not documented in the schema",
            self.label
        );
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| *v)
    }

    /// The span of the key `key` itself (not its value), if present.
    pub(crate) fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(k, _)| k.span())
    }

    /// Reports every key that no section of this table documents. `hint` may explain a
    /// key better than "unknown" (e.g. a key of another check kind).
    pub(crate) fn reject_unknown(&self, cx: &mut Cx<'_>, hint: &dyn Fn(&str) -> Option<String>) {
        for (k, _) in &self.entries {
            let key = k.get_ref().as_ref();
            if self.doc(key).is_some() {
                continue;
            }
            if !cx.wants(k.span().start) {
                // It will only be counted: spare the suggestions.
                cx.errors.count();
                continue;
            }
            let message = if self.sections.iter().any(|s| s.planned.contains(&key)) {
                match crate::schema::PLANNED_KEY_HINTS
                    .iter()
                    .find(|(k, _)| *k == key)
                {
                    Some((_, why)) => {
                        format!("`{key}` is not available yet in {}: {why}", self.label)
                    }
                    None => format!("`{key}` is not available yet in {}", self.label),
                }
            } else if let Some(h) = hint(key) {
                h
            } else {
                let known = self
                    .sections
                    .iter()
                    .flat_map(|s| s.keys.iter().map(|k| k.key));
                match suggest::closest(key, known) {
                    Some(near) => format!(
                        "unknown key `{key}` in {}; did you mean `{near}`?",
                        self.label
                    ),
                    None => {
                        let known: Vec<String> = self
                            .sections
                            .iter()
                            .flat_map(|s| s.keys.iter().map(|k| format!("`{}`", k.key)))
                            .collect();
                        format!(
                            "unknown key `{key}` in {} (known keys: {})",
                            self.label,
                            known.join(", ")
                        )
                    }
                }
            };
            cx.error(k.span(), &self.path.key(key), message);
        }
    }

    /// A key that must be present.
    pub(crate) fn required<T>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        conv: impl FnOnce(&mut Cx<'_>, &'a Value<'a>, &KeyPath) -> Option<T>,
    ) -> Option<T> {
        let path = self.path.key(key);
        match self.get(key) {
            Some(v) => conv(cx, v, &path),
            None => {
                let context = match self.doc(key).and_then(|(s, _)| s.applies) {
                    Some(applies) => format!(" for {}", applies.replacen(" = ", " ", 1)),
                    None => String::new(),
                };
                let message = format!("missing required key `{key}`{context} in {}", self.label);
                cx.error(self.span.clone(), &path, message);
                None
            }
        }
    }

    /// A key that may be absent; `None` when absent or invalid.
    pub(crate) fn optional<T>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        conv: impl FnOnce(&mut Cx<'_>, &'a Value<'a>, &KeyPath) -> Option<T>,
    ) -> Option<T> {
        let path = self.path.key(key);
        self.get(key).and_then(|v| conv(cx, v, &path))
    }

    /// A key with a documented default: the value when present and valid, else the
    /// default from the schema, parsed by the same conversion. (After an invalid value the
    /// error is already recorded; the default only lets validation go on.)
    pub(crate) fn defaulted<T>(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        conv: impl for<'v> Fn(&mut Cx<'_>, &'v Value<'v>, &KeyPath) -> Option<T>,
    ) -> Option<T> {
        let path = self.path.key(key);
        if let Some(v) = self.get(key)
            && let Some(t) = conv(cx, v, &path)
        {
            return Some(t);
        }
        let literal = match self.doc(key).map(|(_, d)| &d.default) {
            Some(Dflt::Value(literal)) => *literal,
            _ => {
                let message = format!("internal error: key `{key}` has no documented default");
                cx.error(self.span.clone(), &path, message);
                return None;
            }
        };
        let parsed = documented_default(cx, literal, &path, &conv);
        if parsed.is_none() {
            let message =
                format!("internal error: the documented default {literal} of `{key}` is invalid");
            cx.error(self.span.clone(), &path, message);
        }
        parsed
    }
}

/// Parses a schema default literal with `conv`, in a scratch context so that positions
/// inside the literal never leak into the file's errors.
pub(crate) fn documented_default<T>(
    cx: &mut Cx<'_>,
    literal: &'static str,
    path: &KeyPath,
    conv: &dyn for<'v> Fn(&mut Cx<'_>, &'v Value<'v>, &KeyPath) -> Option<T>,
) -> Option<T> {
    let sources = cx.sources;
    let value = cx
        .defaults
        .entry(literal)
        .or_insert_with(|| DeValue::parse(literal).ok())
        .as_ref()?;
    let mut scratch = Cx::scratch(sources);
    let t = conv(&mut scratch, value, path);
    if scratch.errors.is_empty() { t } else { None }
}

/// How a value is named in "found ..." messages.
pub(crate) fn found(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("a string {:?}", shorten(s)),
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(f) => format!("float {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

/// Long values are cut in messages so that one error stays one readable line.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut cut: String = s.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}

pub(crate) fn type_error(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath, expected: &str) {
    cx.error_with(v.span(), path, || {
        format!("expected {expected}, found {}", found(v.get_ref()))
    });
}

pub(crate) fn string(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<String> {
    match v.get_ref() {
        DeValue::String(s) => Some(s.to_string()),
        _ => {
            type_error(cx, v, path, "a string");
            None
        }
    }
}

pub(crate) fn nonempty_string(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<String> {
    let s = string(cx, v, path)?;
    if s.trim().is_empty() {
        cx.error(v.span(), path, "must not be empty");
        return None;
    }
    Some(s)
}

pub(crate) fn boolean(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<bool> {
    match v.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        _ => {
            type_error(cx, v, path, "a boolean (true or false)");
            None
        }
    }
}

/// The value of an integer literal, `None` when it does not fit in an `i64`.
pub(crate) fn int_value(i: &toml::de::DeInteger<'_>) -> Option<i64> {
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// An integer in `min..=max`. A `max` of `u32::MAX` or more reads as "no upper bound" in
/// messages ("must be at least 1").
pub(crate) fn integer(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &KeyPath,
    min: i64,
    max: i64,
) -> Option<i64> {
    let DeValue::Integer(i) = v.get_ref() else {
        type_error(cx, v, path, "an integer");
        return None;
    };
    let unbounded = max >= i64::from(u32::MAX);
    let message = match int_value(i) {
        Some(n) if (min..=max).contains(&n) => return Some(n),
        Some(n) if unbounded && n < min => format!("must be at least {min}, found {n}"),
        Some(n) if unbounded => format!("{n} is too large: at most {max}"),
        Some(n) => format!("{n} is out of range: expected {min}..={max}"),
        None if unbounded && !i.as_str().starts_with('-') => {
            format!("integer {i} is too large: at most {max}")
        }
        None if unbounded => format!("must be at least {min}, found {i}"),
        None => format!("integer {i} is out of range: expected {min}..={max}"),
    };
    cx.error(v.span(), path, message);
    None
}

/// A count of at least 1 (thresholds, retries, budgets).
pub(crate) fn count(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<u32> {
    let n = integer(cx, v, path, 1, i64::from(u32::MAX))?;
    u32::try_from(n).ok()
}

pub(crate) fn port(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<u16> {
    let n = integer(cx, v, path, 1, 65535)?;
    u16::try_from(n).ok()
}

/// A float (or integer) of at least `min`.
pub(crate) fn number_at_least(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &KeyPath,
    min: f64,
) -> Option<f64> {
    let n = match v.get_ref() {
        DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|n| n as f64),
        _ => {
            type_error(cx, v, path, "a number");
            return None;
        }
    };
    match n {
        Some(n) if n.is_finite() && n >= min => Some(n),
        _ => {
            let shown = v.get_ref();
            let shown = match shown {
                DeValue::Float(f) => f.to_string(),
                DeValue::Integer(i) => i.to_string(),
                _ => String::new(),
            };
            cx.error(
                v.span(),
                path,
                format!("must be a finite number of at least {min:?}, found {shown}"),
            );
            None
        }
    }
}

/// A duration string: `"30s"`, `"5m"`, `"1h 30m"`, `"250ms"`, `"PT90S"`, or `"0"`.
pub(crate) fn duration(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<Duration> {
    let s = match v.get_ref() {
        DeValue::String(s) => s,
        DeValue::Integer(i) => {
            let message = format!(
                "expected a duration string like \"30s\", found integer {i} (write \"{i}s\" for seconds)"
            );
            cx.error(v.span(), path, message);
            return None;
        }
        other => {
            let message = format!(
                "expected a duration string like \"30s\", found {}",
                found(other)
            );
            cx.error(v.span(), path, message);
            return None;
        }
    };
    match parse_duration(s) {
        Ok(d) => Some(d),
        Err(message) => {
            cx.error(v.span(), path, message);
            None
        }
    }
}

/// A duration greater than zero.
pub(crate) fn positive_duration(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &KeyPath,
) -> Option<Duration> {
    let d = duration(cx, v, path)?;
    if d.is_zero() {
        cx.error(v.span(), path, "must be greater than 0");
        return None;
    }
    Some(d)
}

/// Parses the duration syntax of the config file (see the reference's "Durations").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || {
        format!(
            "invalid duration {:?}: expected e.g. \"30s\", \"5m\", \"1h 30m\"",
            shorten(s)
        )
    };
    // jiff also reads "30" as an error and "1d" as calendar units; both stay errors.
    let Ok(signed) = t.parse::<jiff::SignedDuration>() else {
        return Err(calendar_units(s).unwrap_or_else(invalid));
    };
    if signed.is_negative() {
        return Err(format!(
            "invalid duration {:?}: must not be negative",
            shorten(s)
        ));
    }
    match Duration::try_from(signed) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        Ok(_) => Err(format!(
            "duration {:?} is too long: at most 100 years",
            shorten(s)
        )),
        Err(_) => Err(invalid()),
    }
}

/// The error for a duration written in days or longer units (`"1d"`, `"2 weeks"`), which
/// is rejected because a day's length depends on the calendar: it says so and, for days and
/// weeks, which number of hours to write instead. `None` when `s` has no such unit.
fn calendar_units(s: &str) -> Option<String> {
    use std::fmt::Write as _;
    let span = s.trim().parse::<jiff::Span>().ok()?;
    if span.get_years() == 0
        && span.get_months() == 0
        && span.get_weeks() == 0
        && span.get_days() == 0
    {
        return None;
    }
    let mut message = format!(
        "invalid duration {:?}: days, weeks, months and years are not accepted (their length \
         depends on the calendar)",
        shorten(s)
    );
    // Months and years have no fixed length even so: no suggestion for them.
    if let Ok(d) = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        && d.is_positive()
        && d.subsec_nanos() == 0
        && d.as_secs() % 3600 == 0
    {
        let _ = write!(message, "; write \"{}h\"", d.as_secs() / 3600);
    }
    Some(message)
}

/// A byte size: `"64KiB"`, `"1MiB"`, `"1000"`, or an integer number of bytes.
pub(crate) fn size(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<usize> {
    let bytes = match v.get_ref() {
        DeValue::Integer(_) => {
            integer(cx, v, path, 0, i64::MAX).and_then(|n| u64::try_from(n).ok())?
        }
        DeValue::String(s) => match parse_size(s) {
            Ok(n) => n,
            Err(message) => {
                cx.error(v.span(), path, message);
                return None;
            }
        },
        _ => {
            type_error(cx, v, path, "a size like \"64KiB\" or a number of bytes");
            return None;
        }
    };
    match usize::try_from(bytes) {
        Ok(n) => Some(n),
        Err(_) => {
            cx.error(v.span(), path, "size is too large");
            None
        }
    }
}

/// Parses a size string: digits and an optional unit `B`, `KB`, `KiB`, `MB`, `MiB`, `GB`,
/// `GiB` (case-insensitive).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let invalid = || {
        format!(
            "invalid size {:?}: expected e.g. \"64KiB\", \"1MiB\", \"1000\" (bytes)",
            shorten(s)
        )
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(invalid());
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(invalid()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size {:?} is too large", shorten(s)))
}

/// A path; relative paths are resolved against the config file's directory.
pub(crate) fn path(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<PathBuf> {
    let s = string(cx, v, path)?;
    if s.is_empty() {
        cx.error(v.span(), path, "path must not be empty");
        return None;
    }
    if s.contains('\0') {
        cx.error(v.span(), path, "path must not contain NUL characters");
        return None;
    }
    Some(cx.base_dir(v.span().start).join(s))
}

/// A unix socket path: a path (made absolute against the config's directory) that fits
/// `sockaddr_un` (107 bytes and the terminating NUL).
pub(crate) fn socket_path(cx: &mut Cx<'_>, v: &Value<'_>, key: &KeyPath) -> Option<PathBuf> {
    let p = path(cx, v, key)?;
    let len = p.as_os_str().len();
    if len > 107 {
        cx.error(
            v.span(),
            key,
            format!("socket path is {len} bytes long; unix sockets allow at most 107"),
        );
        return None;
    }
    Some(p)
}

/// An IP address and port to listen on: `"127.0.0.1:9731"`, `"[::1]:9731"`,
/// `"0.0.0.0:9731"`. No host names: what a listener binds must not depend on DNS.
pub(crate) fn socket_addr(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &KeyPath,
) -> Option<std::net::SocketAddr> {
    let s = string(cx, v, path)?;
    match s.parse::<std::net::SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let message = format!(
                "expected an IP address and port like \"127.0.0.1:9731\" or \"[::1]:9731\", found {:?} (no host names: the address is bound as written)",
                shorten(&s)
            );
            cx.error(v.span(), path, message);
            None
        }
    }
}

/// A command as a non-empty array of strings; no shell is involved.
pub(crate) fn argv(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<Argv> {
    let items = match v.get_ref() {
        DeValue::Array(items) => items,
        DeValue::String(s) => {
            let message = format!(
                "expected a command as an array of strings like [\"/usr/bin/prog\", \"arg\"], found a string {:?} (no shell is involved: write each argument as its own element)",
                shorten(s)
            );
            cx.error(v.span(), path, message);
            return None;
        }
        _ => {
            type_error(cx, v, path, "a command as an array of strings");
            return None;
        }
    };
    if items.is_empty() {
        let message = "empty command: expected at least the program, e.g. [\"/usr/bin/true\"]";
        cx.error(v.span(), path, message);
        return None;
    }
    let mut args = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match item.get_ref() {
            DeValue::String(s) if s.contains('\0') => {
                cx.error(
                    item.span(),
                    &path.index(i),
                    "argument must not contain NUL characters",
                );
                ok = false;
            }
            DeValue::String(s) => args.push(s.to_string()),
            _ => {
                type_error(cx, item, &path.index(i), "a string");
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    let program_span = items.first().map_or(v.span(), |p| p.span());
    let argv = Argv::new(args);
    if argv.is_none() {
        cx.error(
            program_span,
            &path.index(0),
            "the program (first element) must not be empty",
        );
    }
    argv
}

/// A string that must be one of `options` (compared exactly).
pub(crate) fn one_of(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &KeyPath,
    what: &str,
    options: &'static [&'static str],
) -> Option<&'static str> {
    let s = string(cx, v, path)?;
    if let Some(found) = options.iter().find(|o| **o == s) {
        return Some(found);
    }
    cx.error(v.span(), path, unknown_word(what, &s, options, &[]));
    None
}

/// `unknown WHAT "s"; did you mean "x"? (expected one of ...)`.
pub(crate) fn unknown_word(what: &str, s: &str, options: &[&str], also_known: &[&str]) -> String {
    let listed: Vec<String> = options.iter().map(|o| format!("{o:?}")).collect();
    let candidates = options.iter().chain(also_known).copied();
    match suggest::closest(s, candidates) {
        Some(near) => format!(
            "unknown {what} {:?}; did you mean {near:?}? (expected one of {})",
            shorten(s),
            listed.join(", ")
        ),
        None => format!(
            "unknown {what} {:?}: expected one of {}",
            shorten(s),
            listed.join(", ")
        ),
    }
}

pub(crate) fn regex(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<Pattern> {
    let s = string(cx, v, path)?;
    match regex::Regex::new(&s) {
        Ok(re) => Some(Pattern(re)),
        Err(e) => {
            // The syntax error's Display is a multi-line diagram; keep its last line.
            let text = e.to_string();
            let reason = text
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .unwrap_or_else(|| text.lines().last().unwrap_or("invalid"))
                .to_owned();
            cx.error(
                v.span(),
                path,
                format!("invalid regex {:?}: {reason}", shorten(&s)),
            );
            None
        }
    }
}

pub(crate) fn ip_addr(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<IpAddr> {
    let s = string(cx, v, path)?;
    match s.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            let message = format!(
                "invalid IP address {:?}: expected e.g. \"127.0.0.1\" or \"::1\"",
                shorten(&s)
            );
            cx.error(v.span(), path, message);
            None
        }
    }
}

/// An absolute `http://` or `https://` URL with a host.
pub(crate) fn http_url(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<String> {
    url(cx, v, path, check_http_url)
}

/// An absolute `ws://` or `wss://` URL with a host.
pub(crate) fn ws_url(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<String> {
    url(cx, v, path, check_ws_url)
}

fn url(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &KeyPath,
    check: fn(&str) -> Result<(), &'static str>,
) -> Option<String> {
    let s = string(cx, v, path)?;
    match check(&s) {
        Ok(()) => Some(s),
        Err(reason) => {
            // Credentials in the URL stay out of messages.
            let shown = shorten(&redact_userinfo(&s));
            cx.error(v.span(), path, format!("invalid URL {shown:?}: {reason}"));
            None
        }
    }
}

pub(crate) fn check_http_url(s: &str) -> Result<(), &'static str> {
    check_url(
        s,
        ["http://", "https://"],
        "must be an absolute http:// or https:// URL with a host",
    )
}

fn check_ws_url(s: &str) -> Result<(), &'static str> {
    check_url(
        s,
        ["ws://", "wss://"],
        "must be an absolute ws:// or wss:// URL with a host",
    )
}

fn check_url(s: &str, schemes: [&str; 2], expected: &'static str) -> Result<(), &'static str> {
    let lower = s.to_ascii_lowercase();
    let Some(rest_at) = schemes
        .iter()
        .find(|scheme| lower.starts_with(**scheme))
        .map(|scheme| scheme.len())
    else {
        return Err(expected);
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters");
    }
    let rest = s.get(rest_at..).unwrap_or("");
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err("unclosed '[' in the host");
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("invalid IPv6 address in the host");
        }
        match after {
            "" => (inside, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (inside, Some(port)),
                None => return Err("unexpected text after the IPv6 address"),
            },
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(expected);
    }
    if !host_port.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%'))
    {
        return Err("the host contains invalid characters");
    }
    if let Some(port) = port {
        // An empty port ("http://host:/") means the default port.
        if !port.is_empty() && !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
            return Err("the port must be a number in 1..=65535");
        }
    }
    Ok(())
}

/// A host name or IP address: not empty, no whitespace or control characters.
pub(crate) fn host(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<String> {
    let host = nonempty_string(cx, v, path)?;
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        cx.error(
            v.span(),
            path,
            format!("invalid host {:?}: must not contain spaces", shorten(&host)),
        );
        return None;
    }
    Some(host)
}

/// A number (float or integer) greater than 0.
pub(crate) fn positive_number(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<f64> {
    let (n, shown) = match v.get_ref() {
        DeValue::Float(f) => (f.as_str().parse::<f64>().ok(), f.to_string()),
        DeValue::Integer(i) => (int_value(i).map(|n| n as f64), i.to_string()),
        _ => {
            type_error(cx, v, path, "a number");
            return None;
        }
    };
    match n {
        Some(n) if n.is_finite() && n > 0.0 => Some(n),
        _ => {
            let message = format!("must be a finite number greater than 0, found {shown}");
            cx.error(v.span(), path, message);
            None
        }
    }
}

/// A proxy URL: `socks5://`, `socks5h://` or `http://`, optional `user:pass@`, a host and
/// a port. Messages never echo the credentials.
pub(crate) fn proxy(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<Proxy> {
    let s = string(cx, v, path)?;
    match parse_proxy(&s) {
        Ok(p) => Some(p),
        Err(reason) => {
            let message = format!(
                "invalid proxy URL {:?}: {reason}",
                shorten(&redact_userinfo(&s))
            );
            cx.error(v.span(), path, message);
            None
        }
    }
}

/// `scheme://user:pass@host` → `scheme://***@host`, for messages.
fn redact_userinfo(s: &str) -> String {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, s),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

/// Parses a proxy URL; the error is a reason to append to "invalid proxy URL ...".
pub fn parse_proxy(s: &str) -> Result<Proxy, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(
            "expected e.g. \"socks5h://127.0.0.1:1080\" (schemes: socks5, socks5h, http)"
                .to_owned(),
        );
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "socks5" => ProxyScheme::Socks5,
        "socks5h" => ProxyScheme::Socks5h,
        "http" => ProxyScheme::Http,
        other => {
            let options = crate::schema::PROXY_SCHEMES;
            let hint = match suggest::closest(other, options.iter().copied()) {
                Some(near) => format!("; did you mean {near:?}?"),
                None => String::new(),
            };
            return Err(format!(
                "unsupported scheme {:?}{hint} (expected socks5, socks5h or http)",
                shorten(other)
            ));
        }
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".to_owned());
    }
    let authority = match rest.find(['/', '?', '#']) {
        Some(end) if &rest[end..] == "/" => &rest[..end],
        Some(_) => return Err("a proxy URL has no path, query or fragment".to_owned()),
        None => rest,
    };
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, pass) = match info.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (info, None),
            };
            let user = percent_decode(user).ok_or("invalid percent-encoding in the user name")?;
            if user.is_empty() {
                return Err("empty user name before '@'".to_owned());
            }
            let pass = match pass {
                Some(p) => {
                    Some(percent_decode(p).ok_or("invalid percent-encoding in the password")?)
                }
                None => None,
            };
            // RFC 1929: each is sent with a one-byte length.
            let too_long = user.len() > 255 || pass.as_ref().is_some_and(|p| p.len() > 255);
            if scheme != ProxyScheme::Http && too_long {
                return Err("a SOCKS5 user name or password has at most 255 bytes".to_owned());
            }
            (Some(user), pass)
        }
    };
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err("unclosed '[' in the host".to_owned());
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("invalid IPv6 address in the host".to_owned());
        }
        (inside, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".to_owned());
    }
    if !host_port.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
    {
        return Err("the host contains invalid characters".to_owned());
    }
    let port = match port {
        None | Some("") => {
            return Err(format!(
                "missing port: write e.g. \"{}://{}:1080\"",
                scheme.as_str(),
                if host_port.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.to_owned()
                }
            ));
        }
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err("the port must be a number in 1..=65535".to_owned()),
        },
    };
    Ok(Proxy {
        url: s.to_owned(),
        scheme,
        host: host.to_owned(),
        port,
        username,
        password,
    })
}

/// `%XX` decoding; `None` on a malformed escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("120s"), Duration::from_secs(120));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h 30m"), Duration::from_secs(5400));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("PT90S"), Duration::from_secs(90));
        assert!(
            parse_duration("-5s")
                .unwrap_err()
                .contains("must not be negative")
        );
        assert!(parse_duration("5x").unwrap_err().contains("expected e.g."));
        // Days and longer units are refused by name, with the hours to write instead.
        let days = parse_duration("1d").unwrap_err();
        assert_eq!(
            days,
            "invalid duration \"1d\": days, weeks, months and years are not accepted (their \
             length depends on the calendar); write \"24h\""
        );
        assert!(
            parse_duration("2 weeks")
                .unwrap_err()
                .ends_with("write \"336h\"")
        );
        assert!(
            parse_duration("1d 12h")
                .unwrap_err()
                .ends_with("write \"36h\"")
        );
        let months = parse_duration("1 month").unwrap_err();
        assert!(months.contains("depends on the calendar"), "{months}");
        assert!(!months.contains("write"), "{months}");
        // Not a whole number of hours: no suggestion.
        assert!(!parse_duration("1d 30m").unwrap_err().contains("write"));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("").is_err());
        assert!(
            parse_duration("1000000000h")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2 kb"), Ok(2000));
        assert_eq!(parse_size("7B"), Ok(7));
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(
            parse_size("99999999999999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn urls() {
        for good in [
            "http://localhost",
            "https://example.com:8443/health?x=1#y",
            "HTTP://user:pw@127.0.0.1:80/",
            "http://[::1]:8080/x",
            "http://host:/",
        ] {
            assert_eq!(check_http_url(good), Ok(()), "{good}");
        }
        for bad in [
            "localhost:8080",
            "ftp://x",
            "http://",
            "http:///path",
            "http://a b",
            "http://host:0/",
            "http://host:99999/",
            "http://[::1/",
            "http://ho$t/",
        ] {
            assert!(check_http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ws_urls() {
        assert_eq!(check_ws_url("wss://example.com/mqtt"), Ok(()));
        assert_eq!(check_ws_url("ws://[::1]:8083"), Ok(()));
        assert!(check_ws_url("http://example.com").is_err());
        assert!(check_ws_url("wss://").is_err());
    }

    #[test]
    fn proxies() {
        let p = parse_proxy("socks5h://us%40er:p%3Ass@127.0.0.1:1080").unwrap();
        assert_eq!(p.scheme, ProxyScheme::Socks5h);
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 1080));
        assert_eq!(p.username.as_deref(), Some("us@er"));
        assert_eq!(p.password.as_deref(), Some("p:ss"));
        let p = parse_proxy("HTTP://[::1]:3128/").unwrap();
        assert_eq!((p.scheme, p.host.as_str()), (ProxyScheme::Http, "::1"));
        assert_eq!(parse_proxy("socks5://h:1").unwrap().username, None);
        for bad in [
            "127.0.0.1:1080",
            "https://h:1",
            "socks5://h",
            "socks5://h:0",
            "socks5://:1080",
            "socks5://h:1/x",
            "socks5://u:%zz@h:1",
            "socks5://[::1:1",
        ] {
            assert!(parse_proxy(bad).is_err(), "{bad}");
        }
        assert_eq!(redact_userinfo("socks5://u:secret@h:1"), "socks5://***@h:1");
    }

    #[test]
    fn key_paths_quote_non_bare_segments() {
        let p = KeyPath::default()
            .key("services")
            .key("api@2")
            .key("schedule")
            .index(0);
        assert_eq!(p.as_str(), "services.\"api@2\".schedule[0]");
    }
}
