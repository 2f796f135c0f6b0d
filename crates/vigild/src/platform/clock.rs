//! The only place in Vigil that reads the wall clock.
//!
//! Everything else takes a [`Timestamp`] as a value. Tests that need a different "now"
//! call the pure core directly with their own timestamps.

use vigil_core::Timestamp;

/// The current wall-clock time.
pub fn now() -> Timestamp {
    #[expect(clippy::disallowed_methods, reason = "the one blessed clock read")]
    let ts = jiff::Timestamp::now();
    Timestamp::from_jiff(ts)
}

/// Monotonic time for in-process intervals outside tokio (the ledger thread's flush timer).
pub fn monotonic() -> std::time::Instant {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one blessed monotonic clock read"
    )]
    let now = std::time::Instant::now();
    now
}
