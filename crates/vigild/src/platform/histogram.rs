//! A histogram of durations with fixed buckets, kept in atomics: observing one is a few
//! comparisons and two relaxed atomic adds, no lock and no allocation, so it can sit on
//! hot paths (the ledger's commits on the crash-to-restart path, every check run).
//! `observe/metrics.rs` reads it at scrape time.
//!
//! A snapshot taken while another thread observes may count an observation in its bucket
//! but not yet in its sum (or the reverse); the count is derived from the buckets, so the
//! buckets and the count always agree.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most finite buckets a histogram may have.
pub const MAX_BOUNDS: usize = 15;

/// Upper bounds (inclusive, ascending) of check runs: 5 ms to 30 s.
pub const CHECK_BOUNDS: &[Duration] = &[
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// Upper bounds of the ledger's commits: 50 µs (a relaxed commit to the WAL) to 1 s (an
/// fsync on a loaded disk).
pub const COMMIT_BOUNDS: &[Duration] = &[
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_secs(1),
];

pub struct Histogram {
    bounds: &'static [Duration],
    /// Observations per bucket (not cumulative); the last one past every bound.
    counts: [AtomicU64; MAX_BOUNDS + 1],
    sum_ns: AtomicU64,
}

/// What a histogram held at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Cumulative counts, one per bound and then the total (`+Inf`).
    pub cumulative: Vec<u64>,
    pub sum: Duration,
}

impl Histogram {
    /// `bounds`: ascending, at most [`MAX_BOUNDS`].
    pub const fn new(bounds: &'static [Duration]) -> Histogram {
        assert!(bounds.len() <= MAX_BOUNDS);
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; MAX_BOUNDS + 1],
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn bounds(&self) -> &'static [Duration] {
        self.bounds
    }

    pub fn observe(&self, d: Duration) {
        let i = self
            .bounds
            .iter()
            .position(|b| d <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The cumulative counts into `out` (cleared first): one per bound, then the total.
    pub fn cumulative_into(&self, out: &mut Vec<u64>) {
        out.clear();
        let mut total = 0u64;
        for c in &self.counts[..=self.bounds.len()] {
            total += c.load(Ordering::Relaxed);
            out.push(total);
        }
    }

    /// Each bucket as (its upper bound in seconds, the observations in it, not
    /// cumulative) into `out` (cleared first), the last one's bound `f64::INFINITY`;
    /// returns their total.
    pub fn buckets_into(&self, out: &mut Vec<(f64, u64)>) -> u64 {
        out.clear();
        let bounds = self.bounds.iter().map(Duration::as_secs_f64);
        let mut total = 0u64;
        for (bound, c) in bounds.chain([f64::INFINITY]).zip(&self.counts) {
            let n = c.load(Ordering::Relaxed);
            total += n;
            out.push((bound, n));
        }
        total
    }

    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed))
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut cumulative = Vec::with_capacity(self.bounds.len() + 1);
        self.cumulative_into(&mut cumulative);
        Snapshot {
            cumulative,
            sum: self.sum(),
        }
    }

    /// How many observations it holds.
    pub fn total(&self) -> u64 {
        self.counts[..=self.bounds.len()]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_cumulatively() {
        static H: Histogram = Histogram::new(&[
            Duration::from_millis(1),
            Duration::from_millis(10),
            Duration::from_millis(100),
        ]);
        H.observe(Duration::from_micros(500));
        H.observe(Duration::from_millis(1)); // inclusive bound
        H.observe(Duration::from_millis(50));
        H.observe(Duration::from_secs(3));
        let s = H.snapshot();
        assert_eq!(s.cumulative, vec![2, 2, 3, 4]);
        assert_eq!(s.sum, Duration::from_micros(3_051_500));
        assert_eq!(H.total(), 4);
        let mut buckets = Vec::new();
        assert_eq!(H.buckets_into(&mut buckets), 4);
        assert_eq!(
            buckets,
            vec![(0.001, 2), (0.01, 0), (0.1, 1), (f64::INFINITY, 1)]
        );
    }

    #[test]
    fn the_bounds_fit() {
        assert!(CHECK_BOUNDS.len() <= MAX_BOUNDS && COMMIT_BOUNDS.len() <= MAX_BOUNDS);
        assert!(CHECK_BOUNDS.windows(2).all(|w| w[0] < w[1]));
        assert!(COMMIT_BOUNDS.windows(2).all(|w| w[0] < w[1]));
    }
}
