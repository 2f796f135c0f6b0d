//! What a driver operation reports: how one restart, stop, start or repair command went.
//!
//! Plain data, produced at the edge by a driver and carried through the lifecycle and the
//! event stream; drivers report, they never retry or decide.

use std::time::Duration;

/// How one restart (or repair command) went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartReport {
    pub ok: bool,
    /// One line: what ran and how it ended ("`systemctl restart x`: exit code 0 in 1.2s").
    pub detail: String,
    pub duration: Duration,
    /// The service cannot be restarted again until someone acts (systemd's start limit
    /// tripped): the reason, raised as an ACTION REQUIRED alert.
    pub action_required: Option<String>,
}
