//! The only place in Vigil that reads the wall clock, and the clock handle actors take
//! time from.
//!
//! Everything else takes a [`Timestamp`] (wall time, for what is persisted) or a
//! [`Moment`] (monotonic, for the lifecycle's timers) as a value. Actors hold a [`Clock`]:
//! the real one reads the system clock and tokio's; a simulated one derives wall time
//! from tokio's clock, so a test that pauses tokio's time (`start_paused`) runs an actor
//! through hours in milliseconds with both clocks agreeing.

use std::sync::Arc;
use std::time::Duration;

use vigil_core::{Moment, Timestamp};

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

/// Where an actor gets time: wall time for the ledger and messages, monotonic moments for
/// timers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Moments count from here (tokio's clock, paused in simulated tests).
    epoch: tokio::time::Instant,
    /// `None`: the real wall clock. `Some(t)`: wall time is `t` plus tokio's elapsed time.
    simulated_wall: Option<Timestamp>,
}

impl Clock {
    /// The real clocks. Must be called inside a tokio runtime.
    pub fn real() -> Clock {
        Clock(Arc::new(Inner {
            epoch: tokio::time::Instant::now(),
            simulated_wall: None,
        }))
    }

    /// Wall time that starts at `wall_at_epoch` and advances with tokio's clock: with
    /// tokio's time paused, a whole day passes as fast as the actors can process it.
    pub fn simulated(wall_at_epoch: Timestamp) -> Clock {
        Clock(Arc::new(Inner {
            epoch: tokio::time::Instant::now(),
            simulated_wall: Some(wall_at_epoch),
        }))
    }

    pub fn wall(&self) -> Timestamp {
        match self.0.simulated_wall {
            None => now(),
            Some(start) => start.saturating_add(self.0.epoch.elapsed()),
        }
    }

    pub fn moment(&self) -> Moment {
        Moment::from_duration(self.0.epoch.elapsed())
    }

    /// The tokio instant of a moment, to sleep until it.
    pub fn instant_of(&self, at: Moment) -> tokio::time::Instant {
        self.0.epoch + at.since_epoch()
    }

    /// The moment of wall time `at` (now, if `at` is past): a hold's `--for` expiry,
    /// given as wall time, becomes a timer.
    pub fn moment_at(&self, at: Timestamp) -> Moment {
        let ahead = at.as_millis().saturating_sub(self.wall().as_millis());
        self.moment()
            .saturating_add(Duration::from_millis(u64::try_from(ahead).unwrap_or(0)))
    }

    /// How long from now until `at` (zero if past).
    pub fn until(&self, at: Moment) -> Duration {
        at.saturating_since(self.moment())
    }
}

/// Sleeps until wall time `at`, in steps of at most 30 s against the wall clock, so a
/// clock step or a suspend cannot make a timed action early or hours late; `false` when
/// `cancel` fires first.
pub async fn sleep_until_wall(at: Timestamp, cancel: &tokio_util::sync::CancellationToken) -> bool {
    loop {
        let now = now();
        if now >= at {
            return true;
        }
        let left = at.saturating_since(now).min(Duration::from_secs(30));
        tokio::select! {
            biased;
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(left) => {}
        }
    }
}
