//! The configuration schema as data: every section, key, type, default and description.
//!
//! This is the single source of truth for both sides: the validator takes its known keys,
//! "did you mean" candidates and defaults (parsed from the TOML literals below) from here,
//! and [`crate::reference_markdown`] renders `docs/config.md` from it. Docs and parser
//! cannot drift. This module holds data only; it must not parse or validate anything.

/// One section of the file (a table, or a table's keys for one `kind`/`driver`).
#[derive(Debug)]
pub struct Section {
    /// Anchor in the rendered reference.
    pub id: &'static str,
    /// The table header as users write it, e.g. `[services.NAME.checks.CHECK]`.
    pub header: &'static str,
    /// Other headers that take the same keys (e.g. `[services.NAME.guard]`).
    pub also: &'static [&'static str],
    /// When the keys apply, e.g. `kind = "http"`.
    pub applies: Option<&'static str>,
    pub doc: &'static str,
    pub keys: &'static [KeyDoc],
    /// Keys the product contract names but this version does not implement yet: they are
    /// rejected with "not available yet" rather than "unknown".
    pub planned: &'static [&'static str],
}

impl Section {
    pub fn key(&self, key: &str) -> Option<&'static KeyDoc> {
        self.keys.iter().find(|k| k.key == key)
    }
}

/// One key of a section.
#[derive(Debug)]
pub struct KeyDoc {
    pub key: &'static str,
    pub ty: Ty,
    pub default: Dflt,
    pub doc: &'static str,
}

/// What a key takes (for the reference; the validator has one conversion per key).
#[derive(Debug)]
pub enum Ty {
    String,
    Bool,
    /// A duration string, see "Durations"; `nonzero` when 0 is rejected.
    Duration {
        nonzero: bool,
    },
    /// A byte size: a string like `"64KiB"` or an integer number of bytes.
    Size,
    /// A path; relative paths are resolved against the config file's directory.
    Path,
    /// A command as an array of strings, no shell.
    Argv,
    Table,
    ArrayOfTables,
    Int {
        min: i64,
        max: Option<i64>,
    },
    Float {
        min: f64,
    },
    OneOf(&'static [&'static str]),
    /// One of [`DRIVERS`].
    Driver,
    /// One of [`CHECK_KINDS`].
    CheckKind,
    Other(&'static str),
}

/// A key's default.
#[derive(Debug)]
pub enum Dflt {
    Required,
    /// Optional, and absent means "not set".
    None,
    /// The default as a TOML literal: the validator parses exactly this text when the key
    /// is absent, so the documented default is the real one.
    Value(&'static str),
    /// A default that depends on the environment, described in words.
    Computed(&'static str),
}

pub const LOG_FORMATS: &[&str] = &["human", "json"];
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
pub const ON_FAILURE_WORDS: &[&str] = &["restart", "alert"];
pub const SEVERITIES: &[&str] = &["critical", "warning"];
pub const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];
pub const PROTOCOLS: &[&str] = &["tcp", "udp"];
/// `sockets` states, as [`crate::model::TcpState::as_str`] spells them.
pub const TCP_STATES: &[&str] = &[
    "established",
    "syn-sent",
    "syn-recv",
    "fin-wait-1",
    "fin-wait-2",
    "time-wait",
    "close",
    "close-wait",
    "last-ack",
    "listen",
    "closing",
];
pub const SIDES: &[&str] = &["local", "remote"];
pub const PROXY_SCHEMES: &[&str] = &["socks5", "socks5h", "http"];
pub const BUSES: &[&str] = &["system", "user"];

/// Why a planned key is not available yet, appended to its "not available yet" error.
pub const PLANNED_KEY_HINTS: &[(&str, &str)] = &[
    ("journal_unit", "use `path`"),
    ("service", "needs the exec driver"),
];

/// Drivers this version implements, with their keys.
pub static DRIVERS: &[(&str, &Section)] =
    &[("command", &DRIVER_COMMAND), ("systemd", &DRIVER_SYSTEMD)];
/// Drivers the product contract names that are not implemented yet.
pub const PLANNED_DRIVERS: &[&str] = &["exec", "docker"];

/// Check kinds this version implements, with their keys.
pub static CHECK_KINDS: &[(&str, &Section)] = &[
    ("http", &HTTP),
    ("tcp", &TCP),
    ("listening", &LISTENING),
    ("exec", &EXEC),
    ("websocket", &WEBSOCKET),
    ("sockets", &SOCKETS),
    ("log", &LOG),
    ("interface", &INTERFACE),
    ("file_age", &FILE_AGE),
    ("clock", &CLOCK),
    ("tls_cert", &TLS_CERT),
    ("redis", &REDIS),
    ("postgres", &POSTGRES),
    ("mqtt", &MQTT),
    ("process", &PROCESS),
    ("heartbeat", &HEARTBEAT),
    ("docker", &DOCKER),
    ("systemd", &SYSTEMD),
];
/// Check kinds the product contract names that are not implemented yet.
pub const PLANNED_CHECK_KINDS: &[&str] = &[];

/// Every section, in reference order.
pub static SECTIONS: &[&Section] = &[
    &TOP,
    &VIGIL,
    &DEFAULTS,
    &GUARD,
    &BACKOFF,
    &SERVICE,
    &DRIVER_COMMAND,
    &DRIVER_SYSTEMD,
    &CHECK,
    &ON_FAILURE,
    &HTTP,
    &TCP,
    &LISTENING,
    &EXEC,
    &WEBSOCKET,
    &SOCKETS,
    &LOG,
    &INTERFACE,
    &FILE_AGE,
    &CLOCK,
    &TLS_CERT,
    &REDIS,
    &POSTGRES,
    &MQTT,
    &PROCESS,
    &HEARTBEAT,
    &DOCKER,
    &SYSTEMD,
    &SCHEDULE,
];

const fn key(key: &'static str, ty: Ty, default: Dflt, doc: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        ty,
        default,
        doc,
    }
}

const POSITIVE: Ty = Ty::Duration { nonzero: true };
const DURATION: Ty = Ty::Duration { nonzero: false };
const AT_LEAST_1: Ty = Ty::Int { min: 1, max: None };
const PORT: Ty = Ty::Int {
    min: 1,
    max: Some(65535),
};
const AT_LEAST_0: Ty = Ty::Int { min: 0, max: None };

// Keys shared by several kinds.
const PROXY_KEY: KeyDoc = key(
    "proxy",
    Ty::Other("proxy URL"),
    Dflt::None,
    "Connect through a proxy: `\"socks5://[user:pass@]host:port\"` (Vigil resolves names), `\"socks5h://...\"` (the proxy resolves names) or `\"http://[user:pass@]host:port\"` (HTTP CONNECT). The port is required; `user` and `pass` may be percent-encoded.",
);
const CA_FILE_KEY: KeyDoc = key(
    "ca_file",
    Ty::Path,
    Dflt::None,
    "Extra trusted root certificates (PEM).",
);
const INSECURE_KEY: KeyDoc = key(
    "insecure",
    Ty::Bool,
    Dflt::Value("false"),
    "Do not verify the server's certificate.",
);
const CLIENT_CERT_KEY: KeyDoc = key(
    "client_cert",
    Ty::Path,
    Dflt::None,
    "A TLS client certificate (PEM); needs `client_key`.",
);
const CLIENT_KEY_KEY: KeyDoc = key(
    "client_key",
    Ty::Path,
    Dflt::None,
    "The private key (PEM) of `client_cert`; needs `client_cert`.",
);
const HEADERS_KEY: KeyDoc = key(
    "headers",
    Ty::Other("table of strings"),
    Dflt::None,
    "Extra request headers, sent in file order, e.g. `{ Authorization = \"Bearer xyz\" }`.",
);
const PASSWORD_KEY: KeyDoc = key(
    "password",
    Ty::String,
    Dflt::None,
    "The password, inline. Never shown in errors or logs. Not with `password_file`.",
);
const PASSWORD_FILE_KEY: KeyDoc = key(
    "password_file",
    Ty::Path,
    Dflt::None,
    "A file holding the password, read at every run (a trailing newline is ignored). Not with `password`.",
);
const TLS_KEY: KeyDoc = key(
    "tls",
    Ty::Bool,
    Dflt::Value("false"),
    "Speak TLS. The keys `ca_file`, `insecure`, `client_cert` and `client_key` apply only with `tls = true`.",
);
const TLS_CA_FILE_KEY: KeyDoc = key(
    "ca_file",
    Ty::Path,
    Dflt::None,
    "Extra trusted root certificates (PEM). Only with `tls = true`.",
);
const TLS_INSECURE_KEY: KeyDoc = key(
    "insecure",
    Ty::Bool,
    Dflt::Computed("`false`"),
    "Do not verify the server's certificate. Only with `tls = true`.",
);
const TLS_CLIENT_CERT_KEY: KeyDoc = key(
    "client_cert",
    Ty::Path,
    Dflt::None,
    "A TLS client certificate (PEM); needs `client_key`. Only with `tls = true`.",
);
const TLS_CLIENT_KEY_KEY: KeyDoc = key(
    "client_key",
    Ty::Path,
    Dflt::None,
    "The private key (PEM) of `client_cert`. Only with `tls = true`.",
);
const HOST_KEY: KeyDoc = key(
    "host",
    Ty::String,
    Dflt::Required,
    "Host name or IP address (not empty).",
);
const USERNAME_KEY: KeyDoc = key(
    "username",
    Ty::String,
    Dflt::None,
    "The user name to authenticate as.",
);

pub static TOP: Section = Section {
    id: "top-level",
    header: "top level",
    also: &[],
    applies: None,
    doc: "A configuration file has at most these three tables; anything else is an error.",
    keys: &[
        key(
            "vigil",
            Ty::Table,
            Dflt::None,
            "Settings of Vigil itself: see [`[vigil]`](#vigil).",
        ),
        key(
            "defaults",
            Ty::Table,
            Dflt::None,
            "Defaults every service starts from: see [`[defaults]`](#defaults).",
        ),
        key(
            "services",
            Ty::Table,
            Dflt::None,
            "One table per service, keyed by its name: see [`[services.NAME]`](#services).",
        ),
    ],
    planned: &["alerts"],
};

pub static VIGIL: Section = Section {
    id: "vigil",
    header: "[vigil]",
    also: &[],
    applies: None,
    doc: "Settings of Vigil itself.",
    keys: &[
        key(
            "state_dir",
            Ty::Path,
            Dflt::Computed(
                "`/var/lib/vigil` when running as root, else `$XDG_STATE_HOME/vigil`, else `$HOME/.local/state/vigil`",
            ),
            "Where the restart ledger (SQLite) and the per-service lock files live. A relative path is resolved against the config file's directory.",
        ),
        key(
            "log_format",
            Ty::OneOf(LOG_FORMATS),
            Dflt::Value("\"human\""),
            "Log line format. The `--log-format` flag overrides it.",
        ),
        key(
            "log_level",
            Ty::OneOf(LOG_LEVELS),
            Dflt::Value("\"info\""),
            "The least severe level that is logged.",
        ),
    ],
    planned: &[],
};

pub static DEFAULTS: Section = Section {
    id: "defaults",
    header: "[defaults]",
    also: &[],
    applies: None,
    doc: "Defaults inherited by every service.",
    keys: &[key(
        "guard",
        Ty::Table,
        Dflt::None,
        "The restart guard of every service: see [`[defaults.guard]`](#guard).",
    )],
    planned: &[],
};

pub static GUARD: Section = Section {
    id: "guard",
    header: "[defaults.guard]",
    also: &["[services.NAME.guard]"],
    applies: None,
    doc: "The loop-safe gate every restart request passes, from every source and every process: lock, budget, cooldown, backoff. `[defaults.guard]` applies to every service; `[services.NAME.guard]` overrides it key by key for one service.",
    keys: &[
        key(
            "cooldown",
            DURATION,
            Dflt::Value("\"120s\""),
            "Minimum time between two restarts of the service, whatever asked for them.",
        ),
        key(
            "max_restarts",
            AT_LEAST_1,
            Dflt::Value("5"),
            "Restarts allowed inside one rolling `window`. When reached, automatic restarts stop (state `given-up`) until an entry leaves the window, `vigil reset`, or `vigil restart --force`.",
        ),
        key(
            "window",
            POSITIVE,
            Dflt::Value("\"1h\""),
            "The rolling window that `max_restarts` counts over.",
        ),
        key(
            "lock_timeout",
            DURATION,
            Dflt::Value("\"10s\""),
            "How long a restart request waits for the service's restart lock (shared by the daemon and every CLI call) before it is skipped.",
        ),
        key(
            "backoff",
            Ty::Table,
            Dflt::None,
            "Exponential backoff between consecutive restarts: see [`backoff`](#backoff). Off when absent. A service's `backoff` replaces the default one as a whole.",
        ),
    ],
    planned: &[],
};

pub static BACKOFF: Section = Section {
    id: "backoff",
    header: "[defaults.guard.backoff]",
    also: &["[services.NAME.guard.backoff]"],
    applies: None,
    doc: "After a streak of `n` quick restarts, the next one must wait `min(initial × factor^(n-1), max)` after the previous one. A service that stayed up for `reset` starts a new streak.",
    keys: &[
        key(
            "initial",
            POSITIVE,
            Dflt::Required,
            "The wait after the first restart of a streak.",
        ),
        key(
            "factor",
            Ty::Float { min: 1.0 },
            Dflt::Value("2.0"),
            "Each further restart of the streak multiplies the wait by this (an integer is fine).",
        ),
        key(
            "max",
            POSITIVE,
            Dflt::Required,
            "The longest wait; at least `initial`.",
        ),
        key(
            "reset",
            DURATION,
            Dflt::Value("\"10m\""),
            "Healthy uptime after which the streak is forgotten.",
        ),
    ],
    planned: &[],
};

pub static SERVICE: Section = Section {
    id: "services",
    header: "[services.NAME]",
    also: &[],
    applies: None,
    doc: "Something Vigil can restart. `NAME` uses letters, digits, `_`, `.`, `@` and `-`, starts with a letter or digit, and has at most 64 characters; quote names with dots or `@` (`[services.\"api@2\"]`). The driver's keys (below) sit in the same table.",
    keys: &[
        key(
            "driver",
            Ty::Driver,
            Dflt::Required,
            "How the service is restarted: `\"command\"` or `\"systemd\"`. `\"exec\"` and `\"docker\"` are recognised but not available yet.",
        ),
        key(
            "guard",
            Ty::Table,
            Dflt::None,
            "Overrides of [`[defaults.guard]`](#guard) for this service, key by key.",
        ),
        key(
            "checks",
            Ty::Table,
            Dflt::None,
            "Health checks, one table per check: [`[services.NAME.checks.CHECK]`](#checks).",
        ),
        key(
            "schedule",
            Ty::ArrayOfTables,
            Dflt::None,
            "Scheduled restarts: [`[[services.NAME.schedule]]`](#schedule).",
        ),
    ],
    planned: &["group", "after", "alerts"],
};

pub static DRIVER_COMMAND: Section = Section {
    id: "driver-command",
    header: "[services.NAME]",
    also: &[],
    applies: Some("driver = \"command\""),
    doc: "Vigil runs commands you give it (argv lists, no shell) to restart, start, stop and query the service, e.g. an existing `managed_start.sh restart`. Each command runs in its own process group and is killed with it after `command_timeout`.",
    keys: &[
        key(
            "restart_command",
            Ty::Argv,
            Dflt::Required,
            "Restarts the service.",
        ),
        key("start_command", Ty::Argv, Dflt::None, "Starts the service."),
        key("stop_command", Ty::Argv, Dflt::None, "Stops the service."),
        key(
            "status_command",
            Ty::Argv,
            Dflt::None,
            "Tells whether the service runs: exit status 0 means running.",
        ),
        key(
            "command_timeout",
            POSITIVE,
            Dflt::Value("\"60s\""),
            "Each command is killed (its whole process group) after this long and counts as failed.",
        ),
    ],
    planned: &[],
};

pub static DRIVER_SYSTEMD: Section = Section {
    id: "driver-systemd",
    header: "[services.NAME]",
    also: &[],
    applies: Some("driver = \"systemd\""),
    doc: "Vigil asks systemd over D-Bus to restart a unit (`RestartUnit`, mode `replace`) and follows the job to its end (`JobRemoved`): the restart succeeds when the job is `done` and the unit is active. Any other job result (`failed`, `timeout`, `dependency`, `canceled`, ...) fails the restart with the unit's `Result`. When systemd's own start limit trips (`Result=start-limit-hit`), the restart is recorded as failed with that reason and an ACTION REQUIRED alert; automatic restarts are not attempted again while the unit stays failed that way (a manual `vigil restart`, `systemctl reset-failed`, or `reset_failed = true` lift it). The service's uptime (for `grace`) is the unit's `ActiveEnterTimestamp`; `vigil status` shows the unit's state, `Result` and `NRestarts`.",
    keys: &[
        UNIT_KEY,
        BUS_KEY,
        BUS_ADDRESS_KEY,
        key(
            "reset_failed",
            Ty::Bool,
            Dflt::Value("false"),
            "Call `ResetFailedUnit` before every guard-approved restart: clears the failed state and systemd's start-limit counter, so the guard alone limits restarts.",
        ),
        key(
            "job_timeout",
            POSITIVE,
            Dflt::Value("\"90s\""),
            "How long to wait for the restart job to finish; past it the restart counts as failed (the job may still be running in systemd).",
        ),
    ],
    planned: &[],
};

pub static CHECK: Section = Section {
    id: "checks",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: None,
    doc: "A probe of the service's health; `CHECK` follows the naming rules of services. A check runs every `every`. One run makes up to `retries` attempts, `retry_delay` apart, and passes on the first passing attempt. `failure_threshold` consecutive failed runs turn the check failing, which triggers `on_failure` (again on every further failed run while it stays failing); `success_threshold` consecutive passing runs recover it. The keys below apply to every kind; each kind adds its own.",
    keys: &[
        key(
            "kind",
            Ty::CheckKind,
            Dflt::Required,
            "What is probed; see the kinds below.",
        ),
        key(
            "every",
            POSITIVE,
            Dflt::Value("\"30s\""),
            "Interval between runs.",
        ),
        key(
            "timeout",
            POSITIVE,
            Dflt::Value("\"10s\""),
            "Deadline of one attempt.",
        ),
        key(
            "retries",
            AT_LEAST_1,
            Dflt::Value("1"),
            "Attempts inside one run.",
        ),
        key(
            "retry_delay",
            DURATION,
            Dflt::Value("\"5s\""),
            "Pause between the attempts of one run.",
        ),
        key(
            "failure_threshold",
            AT_LEAST_1,
            Dflt::Value("1"),
            "Consecutive failed runs before the check is failing.",
        ),
        key(
            "success_threshold",
            AT_LEAST_1,
            Dflt::Value("1"),
            "Consecutive passing runs before a failing check recovers.",
        ),
        key(
            "grace",
            DURATION,
            Dflt::Value("\"0s\""),
            "No verdicts until the service has been up this long (the uptime comes from the driver).",
        ),
        key(
            "on_failure",
            Ty::Other("`\"restart\"`, `\"alert\"` or `{ exec = [...] }`"),
            Dflt::Value("\"restart\""),
            "What a failing check does: ask the guard for a restart (source `health`), only alert, or run a repair command (through the same guard). See [`on_failure`](#on-failure).",
        ),
        key(
            "severity",
            Ty::OneOf(SEVERITIES),
            Dflt::Value("\"critical\""),
            "A `warning` check yields `warn` verdicts: it alerts, never restarts.",
        ),
    ],
    planned: &[],
};

pub static ON_FAILURE: Section = Section {
    id: "on-failure",
    header: "on_failure = { ... }",
    also: &[],
    applies: None,
    doc: "The table form of a check's `on_failure`: a repair command instead of a restart, e.g. `on_failure = { exec = [\"/usr/local/bin/flush-cache\"] }`.",
    keys: &[key("exec", Ty::Argv, Dflt::Required, "The repair command.")],
    planned: &[],
};

pub static HTTP: Section = Section {
    id: "check-http",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"http\""),
    doc: "An HTTP(S) request must get an accepted status (and body) within `timeout`.",
    keys: &[
        key(
            "url",
            Ty::Other("URL"),
            Dflt::Required,
            "An absolute `http://` or `https://` URL with a host.",
        ),
        key(
            "method",
            Ty::OneOf(HTTP_METHODS),
            Dflt::Value("\"GET\""),
            "The request method; case-insensitive.",
        ),
        key(
            "expect_status",
            Ty::Other("status code, range string, or array of them"),
            Dflt::Value("\"200-399\""),
            "Accepted status codes: `200`, `\"200-399\"`, or a list such as `[200, \"300-302\"]`. Codes are 100 to 599.",
        ),
        key(
            "body_contains",
            Ty::String,
            Dflt::None,
            "The body must contain this text.",
        ),
        key(
            "body_regex",
            Ty::Other("regex"),
            Dflt::None,
            "The body must match this regular expression (Rust `regex` syntax).",
        ),
        HEADERS_KEY,
        CA_FILE_KEY,
        INSECURE_KEY,
        CLIENT_CERT_KEY,
        CLIENT_KEY_KEY,
        PROXY_KEY,
        key(
            "max_latency",
            POSITIVE,
            Dflt::None,
            "A response slower than this fails the check, even with an accepted status.",
        ),
        key(
            "follow_redirects",
            Ty::Bool,
            Dflt::Value("false"),
            "Follow redirects; otherwise the redirect's own status is judged.",
        ),
        key(
            "max_body",
            Ty::Size,
            Dflt::Value("\"1MiB\""),
            "At most this much of the body is read (and matched).",
        ),
    ],
    planned: &[],
};

pub static TCP: Section = Section {
    id: "check-tcp",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"tcp\""),
    doc: "A TCP connection to `host:port` must succeed within `timeout`.",
    keys: &[
        key(
            "host",
            Ty::String,
            Dflt::Required,
            "Host name or IP address (not empty).",
        ),
        key("port", PORT, Dflt::Required, "TCP port."),
    ],
    planned: &[],
};

pub static LISTENING: Section = Section {
    id: "check-listening",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"listening\""),
    doc: "A local socket must be bound to `port` (a TCP socket in LISTEN, or a bound UDP socket), like `ss -tln`; read from `/proc/net`, nothing is sent.",
    keys: &[
        key("port", PORT, Dflt::Required, "Local port."),
        key(
            "protocol",
            Ty::OneOf(PROTOCOLS),
            Dflt::Value("\"tcp\""),
            "Socket protocol.",
        ),
        key(
            "address",
            Ty::Other("IP address"),
            Dflt::Computed("any address"),
            "Only sockets bound to this address (or to the wildcard address) count.",
        ),
    ],
    planned: &[],
};

pub static EXEC: Section = Section {
    id: "check-exec",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"exec\""),
    doc: "A command must exit with `expect_exit` (and print `stdout_contains`) within `timeout`; it is killed with its process group after that.",
    keys: &[
        key("command", Ty::Argv, Dflt::Required, "The command to run."),
        key(
            "expect_exit",
            Ty::Int {
                min: 0,
                max: Some(255),
            },
            Dflt::Value("0"),
            "The exit status that passes.",
        ),
        key(
            "stdout_contains",
            Ty::String,
            Dflt::None,
            "Standard output must contain this text.",
        ),
    ],
    planned: &[],
};

pub static WEBSOCKET: Section = Section {
    id: "check-websocket",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"websocket\""),
    doc: "A WebSocket opening handshake (an HTTP `Upgrade` request over `ws://` or `wss://`) must be answered with an accepted status within `timeout`. Nothing is sent after the handshake.",
    keys: &[
        key(
            "url",
            Ty::Other("URL"),
            Dflt::Required,
            "An absolute `ws://` or `wss://` URL with a host.",
        ),
        key(
            "expect_status",
            Ty::Other("status code, range string, or array of them"),
            Dflt::Value("101"),
            "Accepted status codes, written like `http`'s `expect_status`; e.g. `426` for a server that refuses the upgrade on purpose.",
        ),
        HEADERS_KEY,
        PROXY_KEY,
        CA_FILE_KEY,
        INSECURE_KEY,
        CLIENT_CERT_KEY,
        CLIENT_KEY_KEY,
    ],
    planned: &[],
};

pub static SOCKETS: Section = Section {
    id: "check-sockets",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"sockets\""),
    doc: "Counts this host's TCP sockets in `state` on `port` (like `ss -tan state close-wait`); fails when there are more than `max`. Read from the kernel, nothing is sent.",
    keys: &[
        key(
            "port",
            PORT,
            Dflt::Required,
            "The port to count sockets on.",
        ),
        key(
            "state",
            Ty::OneOf(TCP_STATES),
            Dflt::Required,
            "The TCP state to count. `ss` spellings such as `\"CLOSE-WAIT\"` and `\"close_wait\"` are accepted too.",
        ),
        key(
            "side",
            Ty::OneOf(SIDES),
            Dflt::Value("\"local\""),
            "`\"local\"`: sockets whose local port is `port` (a server's connections); `\"remote\"`: sockets whose remote port is `port` (connections to it).",
        ),
        key(
            "max",
            AT_LEAST_0,
            Dflt::Required,
            "The largest count that passes.",
        ),
    ],
    planned: &[],
};

pub static LOG: Section = Section {
    id: "check-log",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"log\""),
    doc: "Reads the lines appended to a log file since the previous run (following rotation and truncation); the check **fails** when at least `min_matches` of them match `pattern`. The first run only notes where the file ends.",
    keys: &[
        key("path", Ty::Path, Dflt::Required, "The log file."),
        key(
            "pattern",
            Ty::Other("regex"),
            Dflt::Required,
            "A regular expression (Rust `regex` syntax) matched against each new line.",
        ),
        key(
            "min_matches",
            AT_LEAST_1,
            Dflt::Value("1"),
            "Matching lines in one run that make it fail.",
        ),
    ],
    planned: &["journal_unit"],
};

pub static INTERFACE: Section = Section {
    id: "check-interface",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"interface\""),
    doc: "A network interface must exist and be up (and have carrier), read from `/sys/class/net`.",
    keys: &[
        key(
            "interface",
            Ty::String,
            Dflt::Required,
            "The interface name, e.g. `\"wg0\"`: 1 to 15 characters, no `/` or whitespace.",
        ),
        key(
            "require_carrier",
            Ty::Bool,
            Dflt::Value("true"),
            "Also require carrier (a link); `false` accepts an interface that is only administratively up.",
        ),
    ],
    planned: &[],
};

pub static FILE_AGE: Section = Section {
    id: "check-file-age",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"file_age\""),
    doc: "A file must have been modified less than `max_age` ago. Once it is older than half of `max_age`, the check runs every `fast_every` instead of `every`, so a stale file is noticed soon.",
    keys: &[
        key("path", Ty::Path, Dflt::Required, "The file."),
        key(
            "max_age",
            POSITIVE,
            Dflt::Required,
            "The oldest modification time that passes.",
        ),
        key(
            "fast_every",
            POSITIVE,
            Dflt::Computed("`max_age` / 10"),
            "The interval once the file is older than half of `max_age`; at most `max_age`.",
        ),
    ],
    planned: &[],
};

pub static HEARTBEAT: Section = Section {
    id: "check-heartbeat",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"heartbeat\""),
    doc: "Pushed, not probed: the service (or its cron job) runs `vigil heartbeat SERVICE/CHECK`. The check fails when no heartbeat arrived within `ttl`; before the first one, `ttl` counts from when the check started.",
    keys: &[key(
        "ttl",
        POSITIVE,
        Dflt::Required,
        "The longest silence that passes.",
    )],
    planned: &[],
};

pub static DOCKER: Section = Section {
    id: "check-docker",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"docker\""),
    doc: "Asks the Docker Engine API (over its unix socket) about a container: it must be running and, when health is required, its HEALTHCHECK must report `healthy` (`starting` fails too). The API version is negotiated with the daemon.",
    keys: &[
        key(
            "container",
            Ty::String,
            Dflt::Required,
            "The container's name or id.",
        ),
        key(
            "require_healthy",
            Ty::Bool,
            Dflt::Computed("true when the container has a HEALTHCHECK"),
            "Require the HEALTHCHECK status `healthy`. `false` only requires the container to be running; `true` also fails a container without a HEALTHCHECK.",
        ),
        key(
            "docker_host",
            Ty::Other("`unix:///path` URL"),
            Dflt::Computed(
                "`$DOCKER_HOST` when it is a `unix://` URL, else `\"unix:///var/run/docker.sock\"`",
            ),
            "The daemon's socket. Only unix sockets are supported; `$DOCKER_HOST` is read when the check runs.",
        ),
    ],
    planned: &[],
};

// Keys shared by the systemd check and the systemd driver.
const UNIT_KEY: KeyDoc = key(
    "unit",
    Ty::String,
    Dflt::Required,
    "The unit, e.g. `\"web.service\"`. A name without a unit type suffix gets `.service` appended, as `systemctl` does.",
);
const BUS_KEY: KeyDoc = key(
    "bus",
    Ty::OneOf(BUSES),
    Dflt::Value("\"system\""),
    "The system manager (`\"system\"`: `$DBUS_SYSTEM_BUS_ADDRESS`, else `/run/dbus/system_bus_socket`) or the user's `systemd --user` (`\"user\"`: the session bus, `$DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`).",
);
const BUS_ADDRESS_KEY: KeyDoc = key(
    "bus_address",
    Ty::Other("D-Bus address"),
    Dflt::None,
    "An explicit bus address, e.g. `\"unix:path=/run/dbus/system_bus_socket\"` (or `unix:abstract=...`); overrides `bus`. One connection per address is shared by every check and driver.",
);

pub static SYSTEMD: Section = Section {
    id: "check-systemd",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"systemd\""),
    doc: "Asks systemd over D-Bus about a unit: it passes while the unit's `ActiveState` is `active` (or `reloading`). A failure says what was seen: `failed` with the unit's `Result` and `NRestarts`, `activating` and for how long, `inactive`, or that the unit is not loaded (missing, masked, bad unit file).",
    keys: &[UNIT_KEY, BUS_KEY, BUS_ADDRESS_KEY],
    planned: &[],
};

pub static CLOCK: Section = Section {
    id: "check-clock",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"clock\""),
    doc: "Measures the local clock's offset against NTP servers (SNTP): above `warn` the run warns, above `critical` it fails.",
    keys: &[
        key(
            "servers",
            Ty::Other("array of `\"host\"` or `\"host:port\"`"),
            Dflt::Required,
            "At least one NTP server; the port defaults to 123. IPv6 addresses with a port are bracketed: `\"[2001:db8::1]:123\"`.",
        ),
        key(
            "warn",
            POSITIVE,
            Dflt::Value("\"2s\""),
            "An offset above this warns.",
        ),
        key(
            "critical",
            POSITIVE,
            Dflt::Value("\"4s\""),
            "An offset above this fails; at least `warn`.",
        ),
    ],
    planned: &[],
};

pub static TLS_CERT: Section = Section {
    id: "check-tls-cert",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"tls_cert\""),
    doc: "Days until the certificate served on `host:port` expires: fewer than `warn_days` warns, fewer than `critical_days` fails. The expiry is read even from a certificate that does not validate.",
    keys: &[
        HOST_KEY,
        key("port", PORT, Dflt::Value("443"), "TCP port."),
        key(
            "server_name",
            Ty::String,
            Dflt::Computed("`host`"),
            "The name sent with SNI.",
        ),
        key(
            "warn_days",
            AT_LEAST_0,
            Dflt::Value("14"),
            "Fewer days left than this warns.",
        ),
        key(
            "critical_days",
            AT_LEAST_0,
            Dflt::Value("3"),
            "Fewer days left than this fails; at most `warn_days`.",
        ),
        PROXY_KEY,
    ],
    planned: &[],
};

pub static REDIS: Section = Section {
    id: "check-redis",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"redis\""),
    doc: "A Redis `PING` must be answered with `PONG` (after `AUTH` when a password is set).",
    keys: &[
        HOST_KEY,
        key("port", PORT, Dflt::Value("6379"), "TCP port."),
        USERNAME_KEY,
        PASSWORD_KEY,
        PASSWORD_FILE_KEY,
        TLS_KEY,
        TLS_CA_FILE_KEY,
        TLS_INSECURE_KEY,
        TLS_CLIENT_CERT_KEY,
        TLS_CLIENT_KEY_KEY,
    ],
    planned: &[],
};

pub static POSTGRES: Section = Section {
    id: "check-postgres",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"postgres\""),
    doc: "The PostgreSQL startup handshake must be answered (like `pg_isready`); with a password, Vigil also authenticates and runs `SELECT 1`.",
    keys: &[
        HOST_KEY,
        key("port", PORT, Dflt::Value("5432"), "TCP port."),
        key(
            "user",
            Ty::String,
            Dflt::Value("\"postgres\""),
            "The user name to connect as.",
        ),
        key(
            "database",
            Ty::String,
            Dflt::Computed("the user name"),
            "The database to connect to.",
        ),
        PASSWORD_KEY,
        PASSWORD_FILE_KEY,
        TLS_KEY,
        TLS_CA_FILE_KEY,
        TLS_INSECURE_KEY,
        TLS_CLIENT_CERT_KEY,
        TLS_CLIENT_KEY_KEY,
    ],
    planned: &[],
};

pub static MQTT: Section = Section {
    id: "check-mqtt",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"mqtt\""),
    doc: "An MQTT 3.1.1 `CONNECT` must be accepted (a `CONNACK` with return code 0).",
    keys: &[
        HOST_KEY,
        key(
            "port",
            PORT,
            Dflt::Value("1883"),
            "TCP port (8883 is usual with TLS; it is not inferred).",
        ),
        USERNAME_KEY,
        PASSWORD_KEY,
        PASSWORD_FILE_KEY,
        key(
            "client_id",
            Ty::String,
            Dflt::Computed("`\"vigil-<pid>\"`"),
            "The MQTT client identifier.",
        ),
        TLS_KEY,
        TLS_CA_FILE_KEY,
        TLS_INSECURE_KEY,
        TLS_CLIENT_CERT_KEY,
        TLS_CLIENT_KEY_KEY,
    ],
    planned: &[],
};

pub static PROCESS: Section = Section {
    id: "check-process",
    header: "[services.NAME.checks.CHECK]",
    also: &[],
    applies: Some("kind = \"process\""),
    doc: "A process must exist (and not be a zombie) and stay under every limit that is set. Set exactly one of `pid_file` and `name`.",
    keys: &[
        key(
            "pid_file",
            Ty::Path,
            Dflt::None,
            "A file holding the process ID.",
        ),
        key(
            "name",
            Ty::String,
            Dflt::None,
            "The oldest process whose name (`comm`, or the base name of `argv[0]`) equals this.",
        ),
        key(
            "max_rss",
            Ty::Size,
            Dflt::None,
            "Largest resident memory that passes.",
        ),
        key(
            "max_fds",
            AT_LEAST_1,
            Dflt::None,
            "Most open file descriptors that pass.",
        ),
        key(
            "max_threads",
            AT_LEAST_1,
            Dflt::None,
            "Most threads that pass.",
        ),
        key(
            "max_cpu_percent",
            Ty::Other("number > 0"),
            Dflt::None,
            "Highest CPU use between two runs that passes, in percent of one core (so above 100 on several cores).",
        ),
    ],
    planned: &["service"],
};

pub static SCHEDULE: Section = Section {
    id: "schedule",
    header: "[[services.NAME.schedule]]",
    also: &[],
    applies: None,
    doc: "A scheduled restart: a restart request with source `schedule`, through the guard like any other (so it is skipped while the guard says so). Each entry has exactly one of `cron` or `every`.",
    keys: &[
        key(
            "cron",
            Ty::Other("cron expression"),
            Dflt::None,
            "Five fields (minute, hour, day of month, month, day of week), or six with a leading seconds field, e.g. `\"0 8,16 * * *\"`.",
        ),
        key(
            "every",
            POSITIVE,
            Dflt::None,
            "A fixed interval instead of `cron`.",
        ),
        key(
            "timezone",
            Ty::Other("IANA time zone"),
            Dflt::Value("\"UTC\""),
            "The time zone `cron` is evaluated in, e.g. `\"Europe/Berlin\"`. Only with `cron`.",
        ),
    ],
    planned: &[],
};
