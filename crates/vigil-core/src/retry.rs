//! Retries inside one check run (`retries`, `retry_delay`), as a pure step function.
//!
//! Seed 000: "Tests service health 3 times before declaring failure ... 5-second delay
//! between retries". A run passes on its first passing attempt and fails only when every
//! attempt failed. The runtime performs the attempts and sleeps; this decides what is next.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts inside one run (>= 1).
    pub attempts: u32,
    /// Pause between two attempts.
    pub delay: Duration,
}

/// What to do after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// The run is over; `passed` is its result.
    Finish { passed: bool },
    /// Try again after this pause.
    RetryAfter(Duration),
}

impl RetryPolicy {
    /// `attempt` is 1-based: the number of the attempt that just ended.
    pub fn after_attempt(&self, attempt: u32, passed: bool) -> NextStep {
        if passed {
            NextStep::Finish { passed: true }
        } else if attempt >= self.attempts.max(1) {
            NextStep::Finish { passed: false }
        } else {
            NextStep::RetryAfter(self.delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_on_first_success_fails_after_the_last_attempt() {
        let p = RetryPolicy {
            attempts: 3,
            delay: Duration::from_secs(5),
        };
        assert_eq!(
            p.after_attempt(1, false),
            NextStep::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(p.after_attempt(2, true), NextStep::Finish { passed: true });
        assert_eq!(
            p.after_attempt(3, false),
            NextStep::Finish { passed: false }
        );
    }
}
