//! Percentiles and a tiny JSON writer.

use std::fmt::Write as _;

/// Nearest-rank percentile (`p` in 0..=100) of an ascending-sorted slice.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "rank is in 1..=len, far below 2^52"
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// p50/p90/p99/max/mean of a sample (sorted in place).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of values.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarise `values` (sorted in place). `None` when empty.
    #[must_use]
    pub fn of(values: &mut [f64]) -> Option<Self> {
        values.sort_by(f64::total_cmp);
        #[expect(clippy::cast_precision_loss, reason = "sample sizes are small")]
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        Some(Self {
            count: values.len(),
            p50: percentile(values, 50.0)?,
            p90: percentile(values, 90.0)?,
            p99: percentile(values, 99.0)?,
            max: *values.last()?,
            mean,
        })
    }

    /// As a JSON object (values rounded to microseconds when in ms).
    #[must_use]
    pub fn to_json(&self) -> String {
        format!(
            "{{\"count\": {}, \"p50\": {}, \"p90\": {}, \"p99\": {}, \"max\": {}, \"mean\": {}}}",
            self.count,
            num(self.p50),
            num(self.p90),
            num(self.p99),
            num(self.max),
            num(self.mean)
        )
    }
}

/// A finite number with 3 decimals, or `null`.
#[must_use]
pub fn num(v: f64) -> String {
    if v.is_finite() {
        let s = format!("{v:.3}");
        // Trim trailing zeros for readability, keep at least one digit.
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            "0".to_owned()
        } else {
            s.to_owned()
        }
    } else {
        "null".to_owned()
    }
}

/// A JSON string literal.
#[must_use]
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&mut v).unwrap();
        assert!((s.p50 - 50.0).abs() < f64::EPSILON);
        assert!((s.p99 - 99.0).abs() < f64::EPSILON);
        assert!((s.max - 100.0).abs() < f64::EPSILON);
        assert!(Summary::of(&mut []).is_none());
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
    }

    #[test]
    fn json_helpers() {
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(f64::NAN), "null");
        assert_eq!(string("a\"b\\\n"), "\"a\\\"b\\\\\\n\"");
    }
}
