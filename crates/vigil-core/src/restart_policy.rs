//! `restart = ...` for supervised processes: systemd's policy table as a pure function.
//!
//! systemd.service(5), "Table 2. Exit causes and the effect of the Restart= settings":
//!
//! | exit cause                | no | always | on-success | on-failure | on-abnormal | on-abort | on-watchdog |
//! |---------------------------|----|--------|------------|------------|-------------|----------|-------------|
//! | clean exit code or signal |    | X      | X          |            |             |          |             |
//! | unclean exit code         |    | X      |            | X          |             |          |             |
//! | unclean signal            |    | X      |            | X          | X           | X        |             |
//! | timeout                   |    | X      |            | X          | X           |          |             |
//! | watchdog                  |    | X      |            | X          | X           |          | X           |
//!
//! "Clean" is exit code 0, or death by SIGHUP, SIGINT, SIGTERM or SIGPIPE, plus whatever
//! `success_exit_status` adds. A stop Vigil asked for (operator, reload, shutdown) is not an
//! exit cause: it never restarts. Owns only the classification and the table; the edge
//! observes the process and acts.

use std::fmt;

use crate::signal::Signal;

/// `restart = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    No,
    OnSuccess,
    OnFailure,
    OnAbnormal,
    OnAbort,
    OnWatchdog,
    Always,
}

impl RestartPolicy {
    pub const ALL: [RestartPolicy; 7] = [
        RestartPolicy::No,
        RestartPolicy::Always,
        RestartPolicy::OnSuccess,
        RestartPolicy::OnFailure,
        RestartPolicy::OnAbnormal,
        RestartPolicy::OnAbort,
        RestartPolicy::OnWatchdog,
    ];
    /// The config spellings, in [`RestartPolicy::ALL`] order.
    pub const NAMES: [&'static str; 7] = [
        "no",
        "always",
        "on-success",
        "on-failure",
        "on-abnormal",
        "on-abort",
        "on-watchdog",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnSuccess => "on-success",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::OnAbnormal => "on-abnormal",
            RestartPolicy::OnAbort => "on-abort",
            RestartPolicy::OnWatchdog => "on-watchdog",
            RestartPolicy::Always => "always",
        }
    }

    pub fn parse(s: &str) -> Option<RestartPolicy> {
        RestartPolicy::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether a process that ended with `cause` is restarted (the table above).
    pub fn restarts_after(self, cause: ExitCause) -> bool {
        use ExitCause as C;
        use RestartPolicy as P;
        match (self, cause) {
            (P::No, _) => false,
            (P::Always, _) => true,
            (P::OnSuccess, C::Clean) => true,
            (P::OnSuccess, _) => false,
            (P::OnFailure, C::Clean) => false,
            (P::OnFailure, _) => true,
            (P::OnAbnormal, C::UncleanSignal | C::Timeout | C::Watchdog) => true,
            (P::OnAbnormal, C::Clean | C::UncleanExitCode) => false,
            (P::OnAbort, C::UncleanSignal) => true,
            (P::OnAbort, _) => false,
            (P::OnWatchdog, C::Watchdog) => true,
            (P::OnWatchdog, _) => false,
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a supervised main process ended, as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Termination {
    Code(i32),
    Signal(Signal),
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Termination::Code(c) => write!(f, "exit code {c}"),
            Termination::Signal(s) => write!(f, "killed by {s}"),
        }
    }
}

/// Why a process ended, for the policy table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitCause {
    /// Exit code 0, SIGHUP/SIGINT/SIGTERM/SIGPIPE, or a `success_exit_status` entry.
    Clean,
    UncleanExitCode,
    /// Any other signal (SIGKILL, SIGABRT, SIGSEGV, ...), including a core dump.
    UncleanSignal,
    /// Not ready within `start_timeout` (`ready = "notify"`), so Vigil stopped it.
    Timeout,
    /// No `WATCHDOG=1` within `watchdog` (or `WATCHDOG=trigger`), so Vigil killed it.
    Watchdog,
}

impl ExitCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitCause::Clean => "clean",
            ExitCause::UncleanExitCode => "unclean exit code",
            ExitCause::UncleanSignal => "unclean signal",
            ExitCause::Timeout => "timeout",
            ExitCause::Watchdog => "watchdog",
        }
    }
}

/// `success_exit_status`: exit codes and signals that count as clean besides the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuccessStatus {
    pub codes: Vec<i32>,
    pub signals: Vec<Signal>,
}

impl SuccessStatus {
    /// systemd's defaults: code 0, or SIGHUP, SIGINT, SIGTERM, SIGPIPE.
    pub fn is_clean(&self, t: Termination) -> bool {
        match t {
            Termination::Code(0) => true,
            Termination::Code(c) => self.codes.contains(&c),
            Termination::Signal(s) => {
                matches!(s, Signal::HUP | Signal::INT | Signal::TERM | Signal::PIPE)
                    || self.signals.contains(&s)
            }
        }
    }

    /// The cause of a termination Vigil did not ask for.
    pub fn classify(&self, t: Termination) -> ExitCause {
        if self.is_clean(t) {
            ExitCause::Clean
        } else {
            match t {
                Termination::Code(_) => ExitCause::UncleanExitCode,
                Termination::Signal(_) => ExitCause::UncleanSignal,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// systemd.service(5) Table 2, transcribed row by row: `X` where a restart happens,
    /// columns in the man page's order (no, always, on-success, on-failure, on-abnormal,
    /// on-abort, on-watchdog).
    const TABLE: [(ExitCause, [bool; 7]); 5] = {
        const X: bool = true;
        const O: bool = false;
        [
            (ExitCause::Clean, [O, X, X, O, O, O, O]),
            (ExitCause::UncleanExitCode, [O, X, O, X, O, O, O]),
            (ExitCause::UncleanSignal, [O, X, O, X, X, X, O]),
            (ExitCause::Timeout, [O, X, O, X, X, O, O]),
            (ExitCause::Watchdog, [O, X, O, X, X, O, X]),
        ]
    };

    #[test]
    fn matches_systemds_table_2() {
        for (cause, row) in TABLE {
            for (policy, expected) in RestartPolicy::ALL.into_iter().zip(row) {
                assert_eq!(
                    policy.restarts_after(cause),
                    expected,
                    "Restart={policy} after {}",
                    cause.as_str()
                );
            }
        }
    }

    #[test]
    fn clean_is_code_zero_and_the_four_signals() {
        let s = SuccessStatus::default();
        assert_eq!(s.classify(Termination::Code(0)), ExitCause::Clean);
        for sig in [Signal::HUP, Signal::INT, Signal::TERM, Signal::PIPE] {
            assert_eq!(s.classify(Termination::Signal(sig)), ExitCause::Clean);
        }
        assert_eq!(s.classify(Termination::Code(1)), ExitCause::UncleanExitCode);
        assert_eq!(
            s.classify(Termination::Code(255)),
            ExitCause::UncleanExitCode
        );
        for sig in [
            Signal::KILL,
            Signal::ABRT,
            Signal::SEGV,
            Signal::QUIT,
            Signal::BUS,
            Signal::USR1,
        ] {
            assert_eq!(
                s.classify(Termination::Signal(sig)),
                ExitCause::UncleanSignal
            );
        }
    }

    #[test]
    fn success_exit_status_extends_the_clean_set() {
        let s = SuccessStatus {
            codes: vec![75],
            signals: vec![Signal::USR1],
        };
        assert_eq!(s.classify(Termination::Code(75)), ExitCause::Clean);
        assert_eq!(
            s.classify(Termination::Signal(Signal::USR1)),
            ExitCause::Clean
        );
        assert_eq!(
            s.classify(Termination::Code(76)),
            ExitCause::UncleanExitCode
        );
        assert!(!RestartPolicy::OnFailure.restarts_after(s.classify(Termination::Code(75))));
    }

    #[test]
    fn names_round_trip() {
        for (p, name) in RestartPolicy::ALL.into_iter().zip(RestartPolicy::NAMES) {
            assert_eq!(p.as_str(), name);
            assert_eq!(RestartPolicy::parse(name), Some(p));
        }
    }
}
