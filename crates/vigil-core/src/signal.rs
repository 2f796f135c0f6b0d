//! Signals as values: names and numbers (Linux numbering), for configuration and for the
//! restart policy table. Pure: nothing here sends a signal.

use std::fmt;

/// A signal number as Linux numbers it (x86, arm, riscv: the generic table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

/// `(number, name)`, the generic Linux table.
const TABLE: &[(i32, &str)] = &[
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (10, "SIGUSR1"),
    (11, "SIGSEGV"),
    (12, "SIGUSR2"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (15, "SIGTERM"),
    (16, "SIGSTKFLT"),
    (17, "SIGCHLD"),
    (18, "SIGCONT"),
    (19, "SIGSTOP"),
    (20, "SIGTSTP"),
    (21, "SIGTTIN"),
    (22, "SIGTTOU"),
    (23, "SIGURG"),
    (24, "SIGXCPU"),
    (25, "SIGXFSZ"),
    (26, "SIGVTALRM"),
    (27, "SIGPROF"),
    (28, "SIGWINCH"),
    (29, "SIGIO"),
    (30, "SIGPWR"),
    (31, "SIGSYS"),
];

impl Signal {
    pub const HUP: Signal = Signal(1);
    pub const INT: Signal = Signal(2);
    pub const QUIT: Signal = Signal(3);
    pub const ILL: Signal = Signal(4);
    pub const TRAP: Signal = Signal(5);
    pub const ABRT: Signal = Signal(6);
    pub const BUS: Signal = Signal(7);
    pub const FPE: Signal = Signal(8);
    pub const KILL: Signal = Signal(9);
    pub const USR1: Signal = Signal(10);
    pub const SEGV: Signal = Signal(11);
    pub const USR2: Signal = Signal(12);
    pub const PIPE: Signal = Signal(13);
    pub const ALRM: Signal = Signal(14);
    pub const TERM: Signal = Signal(15);
    pub const CONT: Signal = Signal(18);
    pub const STOP: Signal = Signal(19);
    pub const SYS: Signal = Signal(31);

    /// Any number is representable (real-time signals have no name here).
    pub const fn from_raw(n: i32) -> Signal {
        Signal(n)
    }

    pub const fn as_raw(self) -> i32 {
        self.0
    }

    /// `SIGTERM`, `TERM`, `sigterm` or `15`.
    pub fn parse(s: &str) -> Option<Signal> {
        let s = s.trim();
        if let Ok(n) = s.parse::<i32>() {
            return (1..=64).contains(&n).then_some(Signal(n));
        }
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        TABLE
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(num, _)| Signal(*num))
    }

    pub fn name(self) -> Option<&'static str> {
        TABLE.iter().find(|(n, _)| *n == self.0).map(|(_, s)| *s)
    }

    /// Every named signal, for "did you mean" and docs.
    pub fn names() -> impl Iterator<Item = &'static str> {
        TABLE.iter().map(|(_, n)| *n)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "signal {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_numbers_and_short_forms() {
        assert_eq!(Signal::parse("SIGTERM"), Some(Signal::TERM));
        assert_eq!(Signal::parse("term"), Some(Signal::TERM));
        assert_eq!(Signal::parse("6"), Some(Signal::ABRT));
        assert_eq!(Signal::parse("SIGNOPE"), None);
        assert_eq!(Signal::parse("0"), None);
        assert_eq!(Signal::ABRT.to_string(), "SIGABRT");
        assert_eq!(Signal::from_raw(40).to_string(), "signal 40");
    }
}
