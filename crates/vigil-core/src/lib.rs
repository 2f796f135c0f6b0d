//! Vigil's pure decision core.
//!
//! Everything here is a deterministic function of its inputs: restart policy, the restart
//! history, health observations and `now`. Nothing in this crate reads a clock, sleeps,
//! spawns, or touches a file or socket; time comes in as a [`Timestamp`] value and
//! decisions go out as values. That is what lets the guard be proven with property tests
//! and scenario scripts in simulated time (see `tests/`).
//!
//! Architecture Invariant: this crate's manifest has no tokio, serde, reqwest or rusqlite,
//! and clippy's `disallowed-methods` bans clock reads here.

pub mod backoff;
pub mod event;
pub mod fleet;
pub mod guard;
pub mod health;
pub mod ids;
pub mod lifecycle;
pub mod outcome;
pub mod restart_policy;
pub mod retry;
pub mod schedule;
pub mod signal;
pub mod time;

pub use guard::{Denial, GuardPolicy, RestartRecord, RestartRequest, Skip, Verdict, decide};
pub use ids::{CheckName, ServiceName};
pub use outcome::RestartReport;
pub use restart_policy::{ExitCause, RestartPolicy, SuccessStatus, Termination};
pub use signal::Signal;
pub use time::{Moment, Timestamp, format_duration};

/// Why a restart was requested. Stored in the ledger as [`Source::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A critical check turned failing.
    Health,
    /// A `[[services.X.schedule]]` entry fired.
    Schedule,
    /// A supervised process ended.
    Exit,
    /// A supervised process missed its watchdog deadline.
    Watchdog,
    /// An operator asked (`vigil restart`, the API).
    Manual,
    /// Another member of the service's restart group failed.
    Group,
}

impl Source {
    pub const ALL: [Source; 6] = [
        Source::Health,
        Source::Schedule,
        Source::Exit,
        Source::Watchdog,
        Source::Manual,
        Source::Group,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Health => "health",
            Source::Schedule => "schedule",
            Source::Exit => "exit",
            Source::Watchdog => "watchdog",
            Source::Manual => "manual",
            Source::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|src| src.as_str() == s)
    }

    /// Whether a skipped request from this source must be deferred rather than dropped.
    ///
    /// Health checks and schedules ask again on their own; a process that died (exit,
    /// watchdog) would never come back if its restart were dropped (SPEC §2).
    pub fn is_deferred_when_skipped(self) -> bool {
        matches!(self, Source::Exit | Source::Watchdog)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
