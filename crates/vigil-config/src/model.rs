//! The validated configuration: domain types that make illegal states unrepresentable.
//!
//! Everything here has already been checked (durations parsed, regexes compiled, cron
//! expressions parsed, argv lists non-empty, defaults applied). Nothing downstream
//! re-validates. Types derive `PartialEq` so a reload can tell unchanged services and
//! checks from changed ones.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use vigil_core::guard::GuardPolicy;
use vigil_core::health::Thresholds;
use vigil_core::schedule::Schedule;
use vigil_core::{CheckName, ServiceName};

/// A whole, valid configuration file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this was loaded from.
    pub path: PathBuf,
    pub vigil: Settings,
    /// `[defaults.guard]`, already merged into every service's `guard`.
    pub default_guard: GuardPolicy,
    /// Services in file order.
    pub services: Vec<Service>,
}

impl Config {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }
}

/// `[vigil]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Where the ledger and lock files live. Default: `/var/lib/vigil` for root,
    /// `$XDG_STATE_HOME/vigil` (or `~/.local/state/vigil`) otherwise. Relative paths are
    /// resolved against the config file's directory.
    pub state_dir: PathBuf,
    /// `log_format = "human" | "json"` (the `--log-format` flag overrides it).
    pub log_format: LogFormat,
    /// `log_level = "error" | "warn" | "info" | "debug" | "trace"` (default info).
    pub log_level: LogLevel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

/// `[services.NAME]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub name: ServiceName,
    pub driver: DriverSpec,
    /// `[defaults.guard]` with `[services.NAME.guard]` applied on top.
    pub guard: GuardPolicy,
    /// `[services.NAME.checks.*]` in file order.
    pub checks: Vec<Check>,
    /// `[[services.NAME.schedule]]` in file order.
    pub schedules: Vec<ScheduleEntry>,
}

/// A non-empty argv list. The program is `argv[0]`; no shell is involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Argv(Vec<String>);

impl Argv {
    /// `None` when `args` is empty or the program is an empty string.
    pub fn new(args: Vec<String>) -> Option<Argv> {
        match args.first() {
            Some(program) if !program.is_empty() => Some(Argv(args)),
            _ => None,
        }
    }

    pub fn program(&self) -> &str {
        &self.0[0]
    }

    pub fn args(&self) -> &[String] {
        &self.0[1..]
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl std::fmt::Display for Argv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, arg) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            {
                write!(f, "'{}'", arg.replace('\'', "'\\''"))?;
            } else {
                f.write_str(arg)?;
            }
        }
        Ok(())
    }
}

/// How a service is restarted. Only `command` exists so far; `exec`, `systemd` and
/// `docker` are recognised by the parser and rejected with a clear message.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverSpec {
    Command(CommandDriver),
}

impl DriverSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            DriverSpec::Command(_) => "command",
        }
    }
}

/// `driver = "command"`.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandDriver {
    /// `restart_command` (required).
    pub restart: Argv,
    pub start: Option<Argv>,
    pub stop: Option<Argv>,
    /// Exit 0 means running.
    pub status: Option<Argv>,
    /// `command_timeout` (default 60s): each command is killed (its whole process group)
    /// after this long and counts as failed.
    pub timeout: Duration,
}

/// `[services.S.checks.NAME]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: CheckName,
    pub kind: CheckKind,
    /// `every` (default 30s): the interval between runs.
    pub every: Duration,
    /// `timeout` (default 10s): the deadline of one attempt.
    pub timeout: Duration,
    /// `retries` (default 1): attempts inside one run; the run passes on the first pass.
    pub retries: u32,
    /// `retry_delay` (default 5s).
    pub retry_delay: Duration,
    /// `failure_threshold` / `success_threshold` (default 1 / 1).
    pub thresholds: Thresholds,
    /// `grace` (default 0): no verdicts until the service has been up this long.
    pub grace: Duration,
    /// `on_failure` (default `restart`).
    pub on_failure: OnFailure,
    /// `severity` (default `critical`).
    pub severity: Severity,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OnFailure {
    /// Ask the guard to restart the service (source `health`).
    Restart,
    /// Only log/alert.
    Alert,
    /// Run a repair command, through the same guard as a restart.
    Exec(Argv),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Severity {
    #[default]
    Critical,
    /// Failures yield `warn` verdicts: alert, never restart.
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    Http(HttpCheck),
    Tcp(TcpCheck),
    Listening(ListeningCheck),
    Exec(ExecCheck),
}

impl CheckKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::Listening(_) => "listening",
            CheckKind::Exec(_) => "exec",
        }
    }
}

/// A compiled regex that compares by its source text.
#[derive(Clone, Debug)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A set of accepted HTTP status codes: `expect_status = [200, 204]`, `"200-399"`, or a
/// list mixing both (`[200, "300-302"]`). Default 200-399.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl StatusSet {
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= code && code <= hi)
    }
}

impl Default for StatusSet {
    fn default() -> Self {
        StatusSet(vec![(200, 399)])
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// `kind = "http"`.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCheck {
    /// An absolute `http://` or `https://` URL (validated).
    pub url: String,
    /// `method` (default GET), upper-cased.
    pub method: String,
    pub expect_status: StatusSet,
    pub body_contains: Option<String>,
    pub body_regex: Option<Pattern>,
    /// `headers` table, in file order.
    pub headers: Vec<(String, String)>,
    /// `ca_file`: extra trusted roots (PEM).
    pub ca_file: Option<PathBuf>,
    /// `insecure`: do not verify the server's certificate.
    pub insecure: bool,
    /// `follow_redirects` (default false).
    pub follow_redirects: bool,
    /// `max_body` (default "1MiB"): at most this much of the body is read.
    pub max_body: usize,
}

/// `kind = "tcp"`: a TCP connect succeeds within `timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpCheck {
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// `kind = "listening"`: a local socket bound to `port` (TCP in LISTEN, or a bound UDP
/// socket), read from /proc/net/{tcp,tcp6,udp,udp6}, like `ss -tln`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListeningCheck {
    pub port: u16,
    pub protocol: Protocol,
    /// Only sockets bound to this address (or to the wildcard address) count; any address
    /// when `None`.
    pub address: Option<IpAddr>,
}

/// `kind = "exec"`: run `command`; pass when it exits with `expect_exit` (and its stdout
/// contains `stdout_contains`) within `timeout`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecCheck {
    pub command: Argv,
    pub expect_exit: i32,
    pub stdout_contains: Option<String>,
}

/// `[[services.NAME.schedule]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleEntry {
    pub schedule: Schedule,
}
