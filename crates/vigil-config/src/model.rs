//! The validated configuration: domain types that make illegal states unrepresentable.
//!
//! Everything here has already been checked (durations parsed, regexes compiled, cron
//! expressions parsed, argv lists non-empty, defaults applied). Nothing downstream
//! re-validates. Types derive `PartialEq` so a reload can tell unchanged services and
//! checks from changed ones.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use vigil_core::guard::GuardPolicy;
use vigil_core::health::Thresholds;
use vigil_core::schedule::Schedule;
use vigil_core::{CheckName, ServiceName};

/// A whole, valid configuration: the main file and the files it includes.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The main file this was loaded from.
    pub path: PathBuf,
    /// Every file read: `path`, then each included file in include order (globs expanded
    /// and sorted). A reload reads `path` again, which expands the globs again: files added
    /// to or removed from a `conf.d` directory take effect; this list says what the running
    /// configuration came from.
    pub files: Vec<PathBuf>,
    pub vigil: Settings,
    /// `[defaults.guard]`, already merged into every service's `guard`.
    pub default_guard: GuardPolicy,
    /// Services in file order.
    pub services: Vec<Service>,
    /// `[groups.*]` in file order.
    pub groups: Vec<Group>,
    /// `[alerts.NAME]` channels in file order.
    pub alerts: Vec<AlertChannel>,
    /// `[fleet]`: several hosts sharing restart rules through PostgreSQL.
    pub fleet: Option<Fleet>,
}

impl Config {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }

    /// The restart group `service` belongs to, if any (at most one).
    pub fn group_of(&self, service: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.members.iter().any(|m| m.as_str() == service))
    }

    pub fn alert_channel(&self, name: &str) -> Option<&AlertChannel> {
        self.alerts.iter().find(|c| c.name == name)
    }
}

/// `[groups.NAME]`: services restarted together (seed 001's "restart ALL services"), under
/// one guard decision with the group's own lock, cooldown and budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: ServiceName,
    /// Start order (stops run in reverse): `members`, each moved after the services in
    /// its `after`.
    pub members: Vec<ServiceName>,
    /// `[defaults.guard]` with `[groups.NAME.guard]` applied on top.
    pub guard: GuardPolicy,
    /// How long a member's `ready_check` may take to pass after it starts.
    pub ready_timeout: Duration,
    /// `[[groups.NAME.maintenance]]` in file order: windows over the whole group.
    pub maintenance: Vec<MaintenanceWindow>,
}

impl Group {
    /// The group's key in the ledger and its lock file: `@NAME`, which no service name
    /// can be (they start with a letter or digit).
    pub fn ledger_key(&self) -> ServiceName {
        ServiceName::new(format!("@{}", self.name))
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
    /// The daemon's control socket (HTTP+JSON; the CLI reaches a running daemon through
    /// it). Default `state_dir/vigil.sock`.
    pub control_socket: PathBuf,
    /// When set, the socket is owned by this group and mode 0660; otherwise 0600.
    pub control_socket_group: Option<String>,
    /// `http_listen` and the keys that go with it: the optional TCP listener (metrics,
    /// the read-only API, and with a token the operator's endpoints). `None`: off.
    pub http: Option<HttpListener>,
}

/// `[vigil] http_listen` with `http_token_file` and `http_tls_cert`/`http_tls_key`.
/// The files are named here and read by the daemon when it starts (and the token file on
/// every reload): one-shot commands load this configuration too, often as a user who may
/// not read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpListener {
    /// The address and port to listen on (port 0: any free port, which the daemon logs).
    pub listen: SocketAddr,
    /// The file holding the bearer token the mutating endpoints require. Without it they
    /// all answer 401 over TCP.
    pub token_file: Option<PathBuf>,
    /// TLS with this certificate chain and key (PEM); plain HTTP without.
    pub tls: Option<TlsFiles>,
}

/// A PEM certificate chain and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
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
    /// `[[services.NAME.maintenance]]` in file order.
    pub maintenance: Vec<MaintenanceWindow>,
    /// Members of its restart group this service starts after.
    pub after: Vec<ServiceName>,
    /// In a group restart, this check must pass before the next member starts.
    pub ready_check: Option<CheckName>,
    /// `alerts = [...]`: which channels hear about this service.
    pub alerts: AlertRoute,
    /// `fleet_key = "..."`: the `[fleet.keys.NAME]` whose fleet-wide rules its restarts
    /// also pass (validated to exist).
    pub fleet_key: Option<String>,
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

/// How a service is restarted: `command`, `exec`, `docker` or `systemd`.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverSpec {
    Command(CommandDriver),
    Docker(DockerDriver),
    Exec(ExecDriver),
    Systemd(SystemdDriver),
}

impl DriverSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            DriverSpec::Command(_) => "command",
            DriverSpec::Docker(_) => "docker",
            DriverSpec::Exec(_) => "exec",
            DriverSpec::Systemd(_) => "systemd",
        }
    }

    /// The deadline of a check's repair command (`on_failure = { exec = [...] }`).
    pub fn command_timeout(&self) -> Duration {
        match self {
            DriverSpec::Command(c) => c.timeout,
            DriverSpec::Exec(e) => e.stop_timeout.max(Duration::from_secs(60)),
            DriverSpec::Docker(_) => Duration::from_secs(60),
            DriverSpec::Systemd(s) => s.job_timeout,
        }
    }
}

/// `driver = "exec"`: Vigil spawns and supervises the process itself (SPEC §4).
#[derive(Clone, Debug, PartialEq)]
pub struct ExecDriver {
    pub command: Argv,
    pub cwd: Option<PathBuf>,
    /// `env` table, in file order, added to Vigil's own environment.
    pub env: Vec<(String, String)>,
    /// User name or numeric uid to run as (Vigil must be root to switch).
    pub user: Option<String>,
    /// Group name or numeric gid (default: the user's primary group).
    pub group: Option<String>,
    pub stdout: OutputTarget,
    pub stderr: OutputTarget,
    /// A file target is rotated when it would grow past this many bytes.
    pub log_max_size: u64,
    /// Rotated files kept (`file.1` .. `file.N`).
    pub log_keep: u32,
    pub restart: vigil_core::RestartPolicy,
    /// `RestartSec`: the pause between an exit and the restart request.
    pub restart_delay: Duration,
    pub success_exit_status: vigil_core::SuccessStatus,
    pub stop_signal: vigil_core::Signal,
    /// After `stop_signal`, the whole process group is SIGKILLed after this long.
    pub stop_timeout: Duration,
    pub ready: Ready,
    /// `ready = "notify"`: no `READY=1` within this long → stopped, cause `timeout`.
    pub start_timeout: Duration,
    /// No `WATCHDOG=1` within this long → hang evidence, `watchdog_signal`, restart.
    pub watchdog: Option<Duration>,
    pub watchdog_signal: vigil_core::Signal,
    pub on_daemon_exit: OnDaemonExit,
}

/// Where a supervised process's stdout or stderr goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputTarget {
    /// Into Vigil's log, one line per line, prefixed with the service name.
    Log,
    /// `/dev/null`.
    Null,
    /// A file, rotated by size (`log_max_size`, `log_keep`).
    File(PathBuf),
}

/// `ready = "started" | "notify"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ready {
    /// Up as soon as it has been spawned (systemd `Type=simple`/`exec`).
    #[default]
    Started,
    /// Up when it sends `READY=1` on `NOTIFY_SOCKET` (systemd `Type=notify`).
    Notify,
}

/// What `vigil run` does with a service's processes when it exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnDaemonExit {
    /// Stop them per `stop_signal`/`stop_timeout`.
    #[default]
    Stop,
    /// Leave them running.
    Leave,
}

/// `driver = "systemd"`: a unit restarted over D-Bus (`RestartUnit`, mode `replace`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemdDriver {
    /// The full unit name (`.service` appended when no type suffix was given).
    pub unit: String,
    pub bus: SystemdBus,
    /// `reset_failed` (default false): `ResetFailedUnit` before every guard-approved
    /// restart, which also clears systemd's start-limit counter.
    pub reset_failed: bool,
    /// `job_timeout` (default 90s): how long to wait for the restart job's `JobRemoved`.
    pub job_timeout: Duration,
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

/// `driver = "docker"`: a container driven through the Docker Engine API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerDriver {
    /// Container name or id.
    pub container: String,
    /// A `unix:///path` URL; `None`: `$DOCKER_HOST` when it is a `unix://` URL, else
    /// `unix:///var/run/docker.sock`.
    pub docker_host: Option<String>,
    /// `stop_timeout` (default 10s): how long Docker waits after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
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
    /// Restart the service's whole group (`on_failure = "restart-group"`), under the
    /// group's guard.
    RestartGroup,
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
    WebSocket(WebSocketCheck),
    Sockets(SocketsCheck),
    Log(LogCheck),
    Interface(InterfaceCheck),
    FileAge(FileAgeCheck),
    Clock(ClockCheck),
    TlsCert(TlsCertCheck),
    Redis(RedisCheck),
    Postgres(PostgresCheck),
    Mqtt(MqttCheck),
    Process(ProcessCheck),
    Heartbeat(HeartbeatCheck),
    Docker(DockerCheck),
    Systemd(SystemdCheck),
}

impl CheckKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::Listening(_) => "listening",
            CheckKind::Exec(_) => "exec",
            CheckKind::WebSocket(_) => "websocket",
            CheckKind::Sockets(_) => "sockets",
            CheckKind::Log(_) => "log",
            CheckKind::Interface(_) => "interface",
            CheckKind::FileAge(_) => "file_age",
            CheckKind::Clock(_) => "clock",
            CheckKind::TlsCert(_) => "tls_cert",
            CheckKind::Redis(_) => "redis",
            CheckKind::Postgres(_) => "postgres",
            CheckKind::Mqtt(_) => "mqtt",
            CheckKind::Process(_) => "process",
            CheckKind::Heartbeat(_) => "heartbeat",
            CheckKind::Docker(_) => "docker",
            CheckKind::Systemd(_) => "systemd",
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

/// The largest `max_body` with `body_regex`: a regex is matched against the body held in
/// memory, so this bounds what one check may hold. `body_contains` alone is matched as the
/// body streams (a window of the needle's length), so any `max_body` costs no memory.
pub const MAX_BODY_WITH_REGEX: usize = 4 * 1024 * 1024;

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
    /// `max_body` (default "1MiB"): at most this much of the body is read. At most
    /// [`MAX_BODY_WITH_REGEX`] with `body_regex`.
    pub max_body: usize,
    /// `proxy`: reach the URL through a SOCKS5 or HTTP proxy (seed 000's
    /// `curl -x socks5h://127.0.0.1:1080`).
    pub proxy: Option<Proxy>,
    /// `max_latency`: a response slower than this fails the check even with a good status.
    pub max_latency: Option<Duration>,
    /// `client_cert` + `client_key` (PEM): a TLS client certificate.
    pub client_cert: Option<ClientCert>,
}

impl HttpCheck {
    /// A `GET` of `url` with every other field at its config default: what `kind = "http"`
    /// with only `url` set becomes (tests/full.rs holds the two in step).
    pub fn get(url: impl Into<String>) -> HttpCheck {
        HttpCheck {
            url: url.into(),
            method: "GET".to_owned(),
            expect_status: StatusSet::default(),
            body_contains: None,
            body_regex: None,
            headers: Vec::new(),
            ca_file: None,
            insecure: false,
            follow_redirects: false,
            max_body: 1 << 20,
            proxy: None,
            max_latency: None,
            client_cert: None,
        }
    }
}

/// A proxy URL, validated: `socks5://[user:pass@]host:port` (the client resolves names),
/// `socks5h://...` (the proxy resolves names), or `http://[user:pass@]host:port`.
/// Its `Debug` shows [`Proxy::redacted`], never the credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Proxy {
    /// The URL as written (credentials included; never log it, use [`Proxy::redacted`]).
    pub url: String,
    pub scheme: ProxyScheme,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Proxy {
    /// `socks5h://127.0.0.1:1080` with any credentials replaced by `***`.
    pub fn redacted(&self) -> String {
        let auth = if self.username.is_some() { "***@" } else { "" };
        format!(
            "{}://{auth}{}:{}",
            self.scheme.as_str(),
            self.host,
            self.port
        )
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({})", self.redacted())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyScheme {
    Socks5,
    Socks5h,
    Http,
}

impl ProxyScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyScheme::Socks5 => "socks5",
            ProxyScheme::Socks5h => "socks5h",
            ProxyScheme::Http => "http",
        }
    }
}

/// `client_cert` / `client_key`: PEM files, resolved like `ca_file`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// TLS settings shared by the TLS-speaking kinds (`ca_file`, `insecure`, `client_cert`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TlsOptions {
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    pub client_cert: Option<ClientCert>,
}

/// A secret: `password = "..."` inline, `password_file = "/path"` read when it is used
/// (trailing newline stripped), or `password_env = "VAR"` (an environment variable of the
/// Vigil process, read when it is used). Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
    Env(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret::Inline(***)"),
            Secret::File(p) => write!(f, "Secret::File({})", p.display()),
            Secret::Env(name) => write!(f, "Secret::Env({name})"),
        }
    }
}

impl Secret {
    /// The value: inline, the file's contents without its trailing newline, or the
    /// environment variable. The error names the file or variable, never the value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Inline(value) => Ok(value.clone()),
            Secret::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => Ok(text.trim_end_matches(['\n', '\r']).to_owned()),
                Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
            },
            Secret::Env(name) => match std::env::var(name) {
                Ok(value) if !value.is_empty() => Ok(value),
                Ok(_) => Err(format!("environment variable {name} is empty")),
                Err(_) => Err(format!("environment variable {name} is not set")),
            },
        }
    }
}

/// `kind = "websocket"`: the HTTP Upgrade handshake over `ws://` or `wss://`; passes when
/// the status is in `expect_status` (default 101; seed 001 expects 426).
#[derive(Clone, Debug, PartialEq)]
pub struct WebSocketCheck {
    pub url: String,
    pub expect_status: StatusSet,
    pub headers: Vec<(String, String)>,
    pub proxy: Option<Proxy>,
    pub tls: TlsOptions,
}

/// A TCP state as `ss` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
}

impl TcpState {
    pub const ALL: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// The config spelling: `close-wait`, `time-wait`, `established`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn-sent",
            TcpState::SynRecv => "syn-recv",
            TcpState::FinWait1 => "fin-wait-1",
            TcpState::FinWait2 => "fin-wait-2",
            TcpState::TimeWait => "time-wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close-wait",
            TcpState::LastAck => "last-ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
        }
    }

    /// The kernel's state number (`/proc/net/tcp` `st` column, `TCP_*` in sock_diag).
    pub fn kernel_code(self) -> u8 {
        match self {
            TcpState::Established => 1,
            TcpState::SynSent => 2,
            TcpState::SynRecv => 3,
            TcpState::FinWait1 => 4,
            TcpState::FinWait2 => 5,
            TcpState::TimeWait => 6,
            TcpState::Close => 7,
            TcpState::CloseWait => 8,
            TcpState::LastAck => 9,
            TcpState::Listen => 10,
            TcpState::Closing => 11,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Side {
    /// Sockets whose local port is `port` (a server's connections).
    #[default]
    Local,
    /// Sockets whose remote port is `port` (a client's connections to it).
    Remote,
}

/// `kind = "sockets"`: count this host's TCP sockets in `state` on `port`; fail when the
/// count is above `max` (seed 001's CLOSE-WAIT leak detector).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketsCheck {
    pub port: u16,
    pub state: TcpState,
    pub side: Side,
    pub max: u32,
}

/// Where a `log` check reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSource {
    /// `path`: a file, followed across rotation (inode change) and truncation.
    File(PathBuf),
    /// `journal_unit`: the unit's entries in the systemd journal (what `journalctl -u UNIT`
    /// shows), followed by cursor across journal file rotation; `pattern` applies to
    /// `MESSAGE`.
    Journal(JournalSource),
}

/// `journal_unit` (+ `journal_directory`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JournalSource {
    /// A full unit name: `web` in the config becomes `web.service`, as with journalctl.
    pub unit: String,
    /// `None`: journald's own directories for this machine
    /// (`/var/log/journal/<machine-id>/`, `/run/log/journal/<machine-id>/`).
    pub directory: Option<PathBuf>,
}

/// `kind = "log"`: only lines new since the previous run are read; the check FAILS when at
/// least `min_matches` of them match `pattern` (seed 000's "journalctl | grep error").
#[derive(Clone, Debug, PartialEq)]
pub struct LogCheck {
    pub source: LogSource,
    pub pattern: Pattern,
    /// Default 1.
    pub min_matches: u32,
}

/// `kind = "interface"`: the network interface exists, is administratively up and (unless
/// `require_carrier = false`) has carrier (seed 003's WireGuard check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceCheck {
    pub interface: String,
    pub require_carrier: bool,
}

/// `kind = "file_age"`: the file was modified less than `max_age` ago. Once it is older
/// than half of `max_age`, the check runs every `fast_every` instead of `every` (seed 003's
/// adaptive interval).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileAgeCheck {
    pub path: PathBuf,
    pub max_age: Duration,
    /// Default `max_age / 10`.
    pub fast_every: Duration,
}

/// `kind = "clock"`: SNTP offset of the local clock against `servers`; above `warn`
/// (default 2s) the run warns, above `critical` (default 4s) it fails (seed 003).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockCheck {
    /// `host[:port]` (port default 123), at least one.
    pub servers: Vec<(String, u16)>,
    pub warn: Duration,
    pub critical: Duration,
}

/// `kind = "tls_cert"`: days until the certificate served on `host:port` (with SNI
/// `server_name`, default `host`) expires. Fewer than `warn_days` (default 14) warns, fewer
/// than `critical_days` (default 3) fails. The expiry is read even from certificates that
/// do not validate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsCertCheck {
    pub host: String,
    pub port: u16,
    pub server_name: Option<String>,
    pub warn_days: u32,
    pub critical_days: u32,
    pub proxy: Option<Proxy>,
}

/// `kind = "redis"`: RESP `PING` answered with `PONG` (after `AUTH` when a password is
/// set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisCheck {
    pub host: String,
    /// Default 6379.
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `tls = true`: TLS with the shared options.
    pub tls: Option<TlsOptions>,
}

/// `kind = "postgres"`: the startup handshake is answered (like `pg_isready`); with a
/// `password` (or `password_file`), it authenticates and runs `SELECT 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresCheck {
    pub host: String,
    /// Default 5432.
    pub port: u16,
    /// Default "postgres".
    pub user: String,
    pub database: Option<String>,
    pub password: Option<Secret>,
    pub tls: Option<TlsOptions>,
}

/// `kind = "mqtt"`: MQTT 3.1.1 CONNECT answered by a CONNACK with return code 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttCheck {
    pub host: String,
    /// Default 1883 (8883 is usual with TLS; it is not inferred).
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Default "vigil-<pid>".
    pub client_id: Option<String>,
    pub tls: Option<TlsOptions>,
}

/// Which process a `process` check looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessTarget {
    /// `pid_file`.
    PidFile(PathBuf),
    /// `name`: the oldest process whose `comm` (or argv[0] basename) equals it.
    Name(String),
}

/// `kind = "process"`: the process exists (and is not a zombie) and stays under every limit
/// set.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessCheck {
    pub target: ProcessTarget,
    /// Bytes.
    pub max_rss: Option<u64>,
    pub max_fds: Option<u64>,
    pub max_threads: Option<u64>,
    /// CPU use between two runs, in percent of one core.
    pub max_cpu_percent: Option<f64>,
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

/// `[[services.NAME.maintenance]]` / `[[groups.NAME.maintenance]]`: a window that opens at
/// each firing of `schedule` and lasts `duration`, during which `action` holds the service
/// (or the group).
///
/// Validated: `duration > 0`; with an `every` schedule, `duration < every` (windows never
/// overlap); `Stop` only where every command-driver service involved has `stop_command`.
#[derive(Clone, Debug, PartialEq)]
pub struct MaintenanceWindow {
    /// When each window opens (`cron` with its `timezone`, or `every`).
    pub schedule: Schedule,
    /// How long each window lasts.
    pub duration: Duration,
    pub action: MaintenanceAction,
}

/// What a maintenance window does for its length: `action = "pause" | "stop"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MaintenanceAction {
    /// Restarts and repair commands are held back, as `vigil pause` does; the service
    /// keeps running and is still checked.
    #[default]
    Pause,
    /// The service is stopped when the window opens and started when it closes, as
    /// `vigil stop` / `vigil start` do.
    Stop,
}

impl MaintenanceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceAction::Pause => "pause",
            MaintenanceAction::Stop => "stop",
        }
    }
}

/// `kind = "heartbeat"`: pushed, not probed. The service (or a cron job) runs
/// `vigil heartbeat SERVICE/CHECK`; the check fails when none arrived within `ttl`
/// (counting from when the check started if none ever arrived). Seed 004's dead-man switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatCheck {
    pub ttl: Duration,
}

/// `kind = "docker"`: the container is running (and, when required, its HEALTHCHECK
/// reports `healthy`), asked of the Docker Engine API over a unix socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerCheck {
    /// Container name or id.
    pub container: String,
    /// `None`: required exactly when the container has a HEALTHCHECK.
    pub require_healthy: Option<bool>,
    /// A `unix:///path` URL. `None`: `$DOCKER_HOST` when it is a `unix://` URL, else
    /// `unix:///var/run/docker.sock`, resolved when the probe runs.
    pub docker_host: Option<String>,
}

/// What happened, as alert channels name it (`events = [...]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertEvent {
    /// An allowed restart finished (successfully or not).
    Restarted,
    /// A restart request was skipped (cooldown, backoff, lock). Off by default.
    Skipped,
    /// The restart budget is spent: automatic restarts stopped.
    GivenUp,
    /// A critical check turned failing.
    Failing,
    /// A check that was failing or warning passes again.
    Recovered,
    /// A check turned warning.
    Warning,
    /// A supervised process missed its watchdog deadline.
    Watchdog,
    /// PostgreSQL, the fleet's database, cannot be reached (once per outage).
    FleetUnreachable,
    /// PostgreSQL answers again after an outage.
    FleetRecovered,
}

impl AlertEvent {
    pub const ALL: [AlertEvent; 9] = [
        AlertEvent::Restarted,
        AlertEvent::Skipped,
        AlertEvent::GivenUp,
        AlertEvent::Failing,
        AlertEvent::Recovered,
        AlertEvent::Warning,
        AlertEvent::Watchdog,
        AlertEvent::FleetUnreachable,
        AlertEvent::FleetRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::Restarted => "restarted",
            AlertEvent::Skipped => "skipped",
            AlertEvent::GivenUp => "given-up",
            AlertEvent::Failing => "failing",
            AlertEvent::Recovered => "recovered",
            AlertEvent::Warning => "warning",
            AlertEvent::Watchdog => "watchdog",
            AlertEvent::FleetUnreachable => "fleet-unreachable",
            AlertEvent::FleetRecovered => "fleet-recovered",
        }
    }

    pub fn parse(s: &str) -> Option<AlertEvent> {
        AlertEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

impl std::fmt::Display for AlertEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`AlertEvent`]s (`events = [...]`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventSet(u16);

impl EventSet {
    /// The default: every event but `skipped`.
    pub fn default_events() -> EventSet {
        AlertEvent::ALL
            .into_iter()
            .filter(|e| *e != AlertEvent::Skipped)
            .collect()
    }

    pub fn contains(self, e: AlertEvent) -> bool {
        self.0 & e.bit() != 0
    }

    pub fn insert(&mut self, e: AlertEvent) {
        self.0 |= e.bit();
    }

    pub fn iter(self) -> impl Iterator<Item = AlertEvent> {
        AlertEvent::ALL
            .into_iter()
            .filter(move |e| self.contains(*e))
    }
}

impl FromIterator<AlertEvent> for EventSet {
    fn from_iter<I: IntoIterator<Item = AlertEvent>>(iter: I) -> Self {
        let mut set = EventSet(0);
        for e in iter {
            set.insert(e);
        }
        set
    }
}

impl std::fmt::Debug for EventSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.iter().map(AlertEvent::as_str))
            .finish()
    }
}

/// `[services.NAME] alerts = [...]`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AlertRoute {
    /// Absent: every channel.
    #[default]
    All,
    /// These channels (validated to exist), possibly none (`alerts = []`).
    Only(Vec<String>),
}

impl AlertRoute {
    pub fn includes(&self, channel: &str) -> bool {
        match self {
            AlertRoute::All => true,
            AlertRoute::Only(names) => names.iter().any(|n| n == channel),
        }
    }
}

/// Which D-Bus bus a systemd unit is reached on (`bus`, `bus_address`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SystemdBus {
    /// `bus = "system"` (default): `$DBUS_SYSTEM_BUS_ADDRESS`, else
    /// `unix:path=/run/dbus/system_bus_socket`.
    System,
    /// `bus = "user"`: the user's session bus (`$DBUS_SESSION_BUS_ADDRESS`, else
    /// `$XDG_RUNTIME_DIR/bus`), where `systemd --user` lives.
    User,
    /// `bus_address`: an explicit `unix:path=...` (or `unix:abstract=...`) address.
    Address(String),
}

impl std::fmt::Display for SystemdBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SystemdBus::System => f.write_str("the system bus"),
            SystemdBus::User => f.write_str("the user bus"),
            SystemdBus::Address(a) => write!(f, "the bus at {a}"),
        }
    }
}

/// `[alerts.NAME]`: one alert channel.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertChannel {
    /// A valid name (same rules as services).
    pub name: String,
    pub kind: ChannelKind,
    /// `events` (default: all but `skipped`).
    pub events: EventSet,
    /// `repeat` (default 1h): an identical alert is not sent again within this.
    pub repeat: Duration,
    /// `group_wait` (default 10s): alerts arriving within this of the first one of a
    /// group go out as one message.
    pub group_wait: Duration,
    /// `timeout` (default 10s): one delivery attempt.
    pub timeout: Duration,
    /// `retries` (default 5): delivery attempts of one message, the first included.
    pub retries: u32,
    /// `retry_delay` (default 2s): the pause after the first failed attempt; it doubles
    /// (with jitter) after each further one, up to 5 minutes.
    pub retry_delay: Duration,
    /// `queue_size` (default 1000): messages waiting for delivery (and alerts waiting to be
    /// grouped) beyond this drop the oldest, counted and logged.
    pub queue_size: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ChannelKind {
    Webhook(WebhookChannel),
    Slack(SlackChannel),
    Email(EmailChannel),
    Exec(ExecChannel),
}

impl ChannelKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::Webhook(_) => "webhook",
            ChannelKind::Slack(_) => "slack",
            ChannelKind::Email(_) => "email",
            ChannelKind::Exec(_) => "exec",
        }
    }
}

/// `kind = "webhook"`: a JSON POST (the versioned payload of docs/alerts.md).
#[derive(Clone, PartialEq)]
pub struct WebhookChannel {
    /// `url` / `url_file` / `url_env` (an inline URL is validated as http(s)).
    pub url: Secret,
    /// `headers`, in file order (values may hold tokens: never logged).
    pub headers: Vec<(String, String)>,
    /// `secret` / `secret_file` / `secret_env`: HMAC-SHA256 key for `X-Vigil-Signature`.
    pub secret: Option<Secret>,
}

impl std::fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("WebhookChannel")
            .field("url", &self.url)
            .field("headers", &names)
            .field("secret", &self.secret)
            .finish()
    }
}

/// `kind = "slack"`: a Slack incoming webhook.
#[derive(Clone, Debug, PartialEq)]
pub struct SlackChannel {
    /// `webhook_url` / `webhook_url_file` / `webhook_url_env`.
    pub webhook_url: Secret,
}

/// `tls` of an email channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required, never skipped).
    #[default]
    StartTls,
    /// TLS from the first byte (SMTPS).
    Implicit,
    /// No TLS at all.
    None,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Implicit => "implicit",
            SmtpTls::None => "none",
        }
    }

    /// The usual port: 587 (submission), 465 (SMTPS), 25.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        }
    }
}

/// `kind = "email"`: SMTP.
#[derive(Clone, Debug, PartialEq)]
pub struct EmailChannel {
    pub smtp_host: String,
    /// `smtp_port` (default from `tls`: 587, 465 or 25).
    pub smtp_port: u16,
    pub tls: SmtpTls,
    /// `username` + `password` / `password_file` / `password_env`: both or neither.
    pub auth: Option<(String, Secret)>,
    /// `from`: a mailbox, `addr@host` or `Name <addr@host>`.
    pub from: String,
    /// `to`: at least one mailbox.
    pub to: Vec<String>,
    /// `ca_file`: extra trusted roots (PEM) for the server's certificate.
    pub ca_file: Option<PathBuf>,
}

/// `kind = "exec"`: runs `command` with the alert document (the webhook payload) on stdin.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecChannel {
    pub command: Argv,
}

/// `kind = "systemd"`: the unit is active (not failed, activating, inactive or missing),
/// asked of systemd over D-Bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemdCheck {
    /// The full unit name (`web.service`; a name without a unit type suffix has
    /// `.service` appended, as systemctl does).
    pub unit: String,
    pub bus: SystemdBus,
}

/// `[fleet]`: the fleet's database and this host's place in it (docs/fleet.md).
#[derive(Clone, Debug, PartialEq)]
pub struct Fleet {
    pub postgres: PgTarget,
    /// `password_file` / `password_env` (never inline: the file may be shown).
    pub password: Option<Secret>,
    /// This host's name in the fleet (default: the host name).
    pub host: String,
    pub lease_ttl: Duration,
    pub timeout: Duration,
    pub on_unreachable: OnUnreachable,
    /// `tls = true` (or a `ca_file`): TLS, verified against `ca_file` or the system roots.
    pub tls: Option<FleetTls>,
    /// `[fleet.keys.NAME]` in file order.
    pub keys: Vec<FleetKey>,
}

impl Fleet {
    pub fn key(&self, name: &str) -> Option<&FleetKey> {
        self.keys.iter().find(|k| k.name == name)
    }
}

/// Where PostgreSQL is: `postgres://USER@HOST[:PORT]/DATABASE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTarget {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub database: String,
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "postgres://{}@{host}:{}/{}",
            self.user, self.port, self.database
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetTls {
    pub ca_file: Option<PathBuf>,
}

/// `on_unreachable`: what a fleet-keyed restart does when PostgreSQL cannot be asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnUnreachable {
    /// The local guard alone decides; the verdict says the fleet was unreachable.
    Local,
    /// Automatic restarts are skipped.
    Deny,
}

impl OnUnreachable {
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnreachable::Local => "local",
            OnUnreachable::Deny => "deny",
        }
    }
}

/// `[fleet.keys.NAME]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetKey {
    pub name: String,
    pub rules: vigil_core::fleet::FleetRules,
}
