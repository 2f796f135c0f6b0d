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
#[derive(Clone, Copy, Debug)]
pub struct KeyDoc {
    pub key: &'static str,
    pub ty: Ty,
    pub default: Dflt,
    pub doc: &'static str,
}

/// What a key takes (for the reference; the validator has one conversion per key).
#[derive(Clone, Copy, Debug)]
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
#[derive(Clone, Copy, Debug)]
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
pub const ON_FAILURE_WORDS: &[&str] = &["restart", "alert", "restart-group"];
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
/// Alert events, as [`crate::model::AlertEvent::as_str`] spells them.
pub const ALERT_EVENTS: &[&str] = &[
    "restarted",
    "skipped",
    "given-up",
    "failing",
    "recovered",
    "warning",
    "watchdog",
    "fleet-unreachable",
    "fleet-recovered",
];
pub const SMTP_TLS: &[&str] = &["starttls", "implicit", "none"];
pub const BUSES: &[&str] = &["system", "user"];
/// Maintenance window actions, as [`crate::model::MaintenanceAction::as_str`] spells them.
pub const MAINTENANCE_ACTIONS: &[&str] = &["pause", "stop"];
/// `[fleet] on_unreachable`.
pub const ON_UNREACHABLE: &[&str] = &["local", "deny"];

/// Alert channel kinds, with their keys.
pub static ALERT_KINDS: &[(&str, &Section)] = &[
    ("webhook", &ALERT_WEBHOOK),
    ("slack", &ALERT_SLACK),
    ("email", &ALERT_EMAIL),
    ("exec", &ALERT_EXEC),
];

/// Why a planned key is not available yet, appended to its "not available yet" error.
pub const PLANNED_KEY_HINTS: &[(&str, &str)] = &[("service", "needs the exec driver")];

/// Drivers this version implements, with their keys.
pub static DRIVERS: &[(&str, &Section)] = &[
    ("command", &DRIVER_COMMAND),
    ("exec", &DRIVER_EXEC),
    ("docker", &DRIVER_DOCKER),
    ("systemd", &DRIVER_SYSTEMD),
];
/// Drivers the product contract names that are not implemented yet.
pub const PLANNED_DRIVERS: &[&str] = &[];
pub const RESTART_POLICIES: &[&str] = &vigil_core::RestartPolicy::NAMES;
pub const READY_MODES: &[&str] = &["started", "notify"];
pub const ON_DAEMON_EXIT: &[&str] = &["stop", "leave"];

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
    &GROUP,
    &DRIVER_COMMAND,
    &DRIVER_DOCKER,
    &DRIVER_EXEC,
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
    &MAINTENANCE,
    &ALERT,
    &ALERT_WEBHOOK,
    &ALERT_SLACK,
    &ALERT_EMAIL,
    &ALERT_EXEC,
    &FLEET,
    &FLEET_KEY,
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
    doc: "A configuration file has at most these keys and tables; anything else is an error.",
    keys: &[
        key(
            "include",
            Ty::Other("array of paths or globs"),
            Dflt::None,
            "More files to read, e.g. `[\"conf.d/*.toml\"]`: paths or globs (`*`, `?`, `[a-z]`; `*` does not match a leading dot) relative to this file's directory. Each pattern's matches are read in path order, patterns in the order written; a glob that matches nothing is fine, a plain path that does not exist is an error; a file named twice, or this file itself, is read once. An included file may hold only `[services.*]`, `[groups.*]` and `[alerts.*]` tables, which join this file's: `[vigil]`, `[defaults]` and `include` belong to the main file (so included files never include others). A service, group or alert channel defined in two files is an error at the second, naming the first. Relative paths inside an included file are resolved against that file's directory, and its errors are reported at its own `file:line:col`.",
        ),
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
        key(
            "groups",
            Ty::Table,
            Dflt::None,
            "Restart groups, keyed by name: see [`[groups.NAME]`](#groups).",
        ),
        key(
            "alerts",
            Ty::Table,
            Dflt::None,
            "One table per alert channel, keyed by its name: see [`[alerts.NAME]`](#alerts).",
        ),
        key(
            "fleet",
            Ty::Table,
            Dflt::None,
            "Several hosts sharing restart rules through PostgreSQL: see [`[fleet]`](#fleet).",
        ),
    ],
    planned: &[],
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
            "Log line format on stderr. The `--log-format` flag overrides it. Under journald (stderr is the journal) records are journal entries instead, with their priority and fields.",
        ),
        key(
            "log_level",
            Ty::OneOf(LOG_LEVELS),
            Dflt::Value("\"info\""),
            "The least severe level that is logged.",
        ),
        key(
            "control_socket",
            Ty::Path,
            Dflt::Computed(
                "`/run/vigil/vigil.sock` when `state_dir` is `/var/lib/vigil`, else `state_dir/vigil.sock`",
            ),
            "The daemon's control socket (HTTP+JSON). `vigil restart`, `status`, `history`, `reset` and `heartbeat` go through it when a daemon runs; without one they work on the ledger directly. The CLI tries `/run/vigil/vigil.sock` before reading the configuration, then this path (`--socket` or `$VIGIL_SOCKET` name another). A missing directory is created (0755, or 0750 with `control_socket_group` as its group). A second daemon refuses to start while the first answers here. At most 107 bytes (a unix socket path limit).",
        ),
        key(
            "control_socket_group",
            Ty::String,
            Dflt::None,
            "A group allowed to use the control socket (resolved through NSS): the socket gets that group and mode 0660. Without it the socket is 0600 (its owner only).",
        ),
        key(
            "http_listen",
            Ty::Other("`\"IP:PORT\"`"),
            Dflt::None,
            "Serve HTTP on this TCP address too (e.g. `\"127.0.0.1:9731\"`; port 0 picks a free port, which the log and `/v1/health` name): `/metrics` (Prometheus) and the read-only API (`/v1/health`, `/v1/status`, `/v1/history`, a service's `logs`) without a token, and the operator's endpoints (restart, reset, stop, start, pause, resume, heartbeat) only with `Authorization: Bearer` and the token of `http_token_file`. Off by default. Same limits as the control socket (docs/cli-json.md). A change takes effect at the next start of vigil.",
        ),
        key(
            "http_token_file",
            Ty::Path,
            Dflt::None,
            "A file holding the bearer token of the TCP listener's operator endpoints (surrounding whitespace is ignored). Read when the daemon starts and on every reload (SIGHUP rotates it); an unreadable or empty file stops the start (or rejects the reload). Without it every operator endpoint answers 401 over TCP. Keep it readable by vigil only (0600).",
        ),
        key(
            "http_tls_cert",
            Ty::Path,
            Dflt::None,
            "Serve the TCP listener over TLS with this certificate chain (PEM, leaf first); needs `http_tls_key`. Read when the daemon starts.",
        ),
        key(
            "http_tls_key",
            Ty::Path,
            Dflt::None,
            "The private key of `http_tls_cert` (PEM: PKCS#8, PKCS#1 or SEC1).",
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
            "How the service is restarted: `\"command\"` (commands you give), `\"exec\"` (Vigil supervises the process itself), `\"docker\"` (a container over the Engine API) or `\"systemd\"` (a unit over D-Bus).",
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
        key(
            "maintenance",
            Ty::ArrayOfTables,
            Dflt::None,
            "Maintenance windows: [`[[services.NAME.maintenance]]`](#maintenance).",
        ),
        key(
            "after",
            Ty::Other("array of service names"),
            Dflt::None,
            "Members of the same group this service starts after (and stops before).",
        ),
        key(
            "ready_check",
            Ty::String,
            Dflt::None,
            "One of this service's checks that must pass, in a group restart, before the next member starts (within the group's `ready_timeout`).",
        ),
        key(
            "alerts",
            Ty::Other("array of channel names"),
            Dflt::Computed("every channel"),
            "The [alert channels](#alerts) that hear about this service, e.g. `[\"ops-slack\"]`; `[]` for none. Each name must be an `[alerts.NAME]` table.",
        ),
        key(
            "fleet_key",
            Ty::String,
            Dflt::None,
            "The fleet key this service shares with services on other hosts, e.g. `\"api\"`: its restarts then also pass the key's fleet-wide rules ([`[fleet.keys.NAME]`](#fleet-keys)). Needs a [`[fleet]`](#fleet) table with that key.",
        ),
    ],
    planned: &[],
};

pub static GROUP: Section = Section {
    id: "groups",
    header: "[groups.NAME]",
    also: &[],
    applies: None,
    doc: "Services restarted together (a script's \"restart ALL services\"). A member's check with `on_failure = \"restart-group\"` asks for the group: one guard decision is taken with the group's own lock, cooldown and budget (recorded in the ledger as `@NAME`); then the members stop in reverse start order and start in order, each waiting for its `ready_check` to pass before the next starts. Members' restarts are recorded with source `group`. A group restart that fails half way stops there and names the member.",
    keys: &[
        key(
            "members",
            Ty::Other("array of service names"),
            Dflt::None,
            "Services in start order (a member can move itself later with `after`). A service is in at most one group.",
        ),
        key(
            "guard",
            Ty::Table,
            Dflt::None,
            "The group's own guard: overrides of [`[defaults.guard]`](#guard), key by key.",
        ),
        key(
            "ready_timeout",
            POSITIVE,
            Dflt::Value("\"60s\""),
            "How long a member's `ready_check` may take to pass after it starts, before the group restart stops as failed.",
        ),
        key(
            "maintenance",
            Ty::ArrayOfTables,
            Dflt::None,
            "Maintenance windows over the whole group: [`[[groups.NAME.maintenance]]`](#maintenance).",
        ),
    ],
    planned: &[],
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

pub static DRIVER_DOCKER: Section = Section {
    id: "driver-docker",
    header: "[services.NAME]",
    also: &[],
    applies: Some("driver = \"docker\""),
    doc: "A container, driven through the Docker Engine API on its unix socket (the API version is negotiated). A restart is the API's restart with `stop_timeout`; uptime for `grace` comes from `State.StartedAt`; `vigil status` shows the container's state, health, exit code and restart count. The daemon follows the engine's event stream, so a container that dies is restarted at once (source `exit`, deferred while the guard refuses), not at the next check.",
    keys: &[
        key(
            "container",
            Ty::String,
            Dflt::Required,
            "The container's name or id.",
        ),
        key(
            "docker_host",
            Ty::Other("`unix:///path` URL"),
            Dflt::Computed(
                "`$DOCKER_HOST` when it is a `unix://` URL, else `\"unix:///var/run/docker.sock\"`",
            ),
            "The daemon's socket. Only unix sockets are supported.",
        ),
        key(
            "stop_timeout",
            DURATION,
            Dflt::Value("\"10s\""),
            "How long Docker waits after the stop signal before it kills the container, on a restart.",
        ),
    ],
    planned: &[],
};

const SIGNAL_TY: Ty = Ty::Other("signal name, e.g. `\"SIGTERM\"`");
const OUTPUT_TY: Ty = Ty::Other("`\"log\"`, `\"null\"` or `{ file = \"PATH\" }`");

pub static DRIVER_EXEC: Section = Section {
    id: "driver-exec",
    header: "[services.NAME]",
    also: &[],
    applies: Some("driver = \"exec\""),
    doc: "Vigil spawns the process itself and supervises it with systemd's semantics, anywhere (containers, hosts without systemd). The process leads its own process group; stopping it sends `stop_signal` to the whole group, then SIGKILL after `stop_timeout`, and processes left in the group are killed and reported. It gets `NOTIFY_SOCKET` (systemd's `sd_notify` protocol: `READY=1`, `WATCHDOG=1`, `WATCHDOG=trigger`, `WATCHDOG_USEC=`, `STATUS=`, `STOPPING=1`, `EXTEND_TIMEOUT_USEC=`, `MAINPID=`), and `WATCHDOG_USEC`/`WATCHDOG_PID` when `watchdog` is set. Restarts after an exit or a watchdog kill go through the guard (sources `exit` and `watchdog`) and are deferred, never dropped, until the guard allows them.",
    keys: &[
        key(
            "command",
            Ty::Argv,
            Dflt::Required,
            "The program and its arguments (no shell).",
        ),
        key(
            "cwd",
            Ty::Path,
            Dflt::None,
            "Working directory (default: Vigil's own).",
        ),
        key(
            "env",
            Ty::Other("table of strings"),
            Dflt::None,
            "Environment variables added to Vigil's own, e.g. `{ PORT = \"8080\" }`.",
        ),
        key(
            "user",
            Ty::String,
            Dflt::None,
            "Run as this user (name or numeric uid), with the user's supplementary groups, as `initgroups` gives them; Vigil must run as root to switch. Names resolve through NSS (`/etc/passwd`, LDAP, SSSD, ... as `/etc/nsswitch.conf` says; the static build reads only `/etc/passwd`-style files).",
        ),
        key(
            "group",
            Ty::String,
            Dflt::None,
            "Run with this group (name or numeric gid). Default: the primary group of `user`.",
        ),
        key(
            "stdout",
            OUTPUT_TY,
            Dflt::Value("\"log\""),
            "`\"log\"`: each line goes to Vigil's log prefixed with the service name; `\"null\"`: discarded; `{ file = \"PATH\" }`: appended to a file rotated by size.",
        ),
        key(
            "stderr",
            OUTPUT_TY,
            Dflt::Value("\"log\""),
            "Like `stdout`.",
        ),
        key(
            "log_max_size",
            Ty::Size,
            Dflt::Value("\"10MiB\""),
            "A `{ file = ... }` output is rotated (`PATH.1`, `PATH.2`, ...) before it would grow past this.",
        ),
        key(
            "log_keep",
            AT_LEAST_1,
            Dflt::Value("5"),
            "Rotated files kept per output.",
        ),
        key(
            "restart",
            Ty::OneOf(RESTART_POLICIES),
            Dflt::Value("\"on-failure\""),
            "When an exit is restarted, with systemd's `Restart=` meanings (clean = exit code 0 or SIGHUP/SIGINT/SIGTERM/SIGPIPE, plus `success_exit_status`). Unlike systemd (`no`), the default restarts failures.",
        ),
        key(
            "restart_delay",
            DURATION,
            Dflt::Value("\"100ms\""),
            "Pause between an exit and its restart request (systemd's `RestartSec`).",
        ),
        key(
            "success_exit_status",
            Ty::Other("array of exit codes and signal names"),
            Dflt::None,
            "More exit codes (0-255) and signals that count as a clean exit, e.g. `[75, \"SIGUSR1\"]`.",
        ),
        key(
            "stop_signal",
            SIGNAL_TY,
            Dflt::Value("\"SIGTERM\""),
            "Sent to the whole process group to stop the service.",
        ),
        key(
            "stop_timeout",
            POSITIVE,
            Dflt::Value("\"10s\""),
            "After `stop_signal` (or `watchdog_signal`), whatever is left of the process group is SIGKILLed after this long.",
        ),
        key(
            "ready",
            Ty::OneOf(READY_MODES),
            Dflt::Value("\"started\""),
            "`\"started\"`: up once spawned; `\"notify\"`: up when the process sends `READY=1`.",
        ),
        key(
            "start_timeout",
            POSITIVE,
            Dflt::Value("\"90s\""),
            "With `ready = \"notify\"` (ignored otherwise): no `READY=1` within this long stops the process (exit cause `timeout`). `EXTEND_TIMEOUT_USEC=` extends it.",
        ),
        key(
            "watchdog",
            POSITIVE,
            Dflt::None,
            "Expect `WATCHDOG=1` at least this often (passed as `WATCHDOG_USEC`). A missed deadline records hang evidence (process state, wchan, threads, last log lines) in the ledger, sends `watchdog_signal`, and restarts with source `watchdog`.",
        ),
        key(
            "watchdog_signal",
            SIGNAL_TY,
            Dflt::Value("\"SIGABRT\""),
            "Sent to the process group on a missed watchdog deadline (SIGKILL follows after `stop_timeout`).",
        ),
        key(
            "on_daemon_exit",
            Ty::OneOf(ON_DAEMON_EXIT),
            Dflt::Value("\"stop\""),
            "When `vigil run` exits: `\"stop\"` the process per `stop_signal`/`stop_timeout`, or `\"leave\"` it running (a later `vigil run` starts a new instance; it does not adopt the old one).",
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
            "At most this much of the body is read (and matched). `body_contains` is matched as the body streams, so memory stays small whatever the size; with `body_regex` (matched against the body held in memory), at most `\"4MiB\"`.",
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
    doc: "Reads what was logged since the previous run, from a file (`path`, following rotation and truncation) or from the systemd journal (`journal_unit`, read natively from journald's files and followed by cursor across their rotation); the check **fails** when at least `min_matches` new lines (or entries) match `pattern`. Set exactly one of `path` and `journal_unit`. The first run only notes where the log ends. A journal file journald deletes before the check has read it to its end (its oldest archives go when the journal outgrows its limits, so a cron check far enough behind can lose entries) is reported in the run's reason, under `skipped`.",
    keys: &[
        key("path", Ty::Path, Dflt::None, "The log file."),
        key(
            "journal_unit",
            Ty::String,
            Dflt::None,
            "A systemd unit: its journal entries are read, the ones `journalctl -u UNIT` shows (the unit's own output, and systemd's and other root daemons' messages about it). Without a type, `.service` is added.",
        ),
        key(
            "journal_directory",
            Ty::Path,
            Dflt::Computed(
                "journald's: `/var/log/journal/<machine-id>` and `/run/log/journal/<machine-id>`",
            ),
            "Where the journal files are (a container's `/var/log/journal`, say): its `*.journal` files and those of its machine-ID subdirectories, like `journalctl -D`. Only with `journal_unit`.",
        ),
        key(
            "pattern",
            Ty::Other("regex"),
            Dflt::Required,
            "A regular expression (Rust `regex` syntax) matched against each new line, or each new entry's `MESSAGE`.",
        ),
        key(
            "min_matches",
            AT_LEAST_1,
            Dflt::Value("1"),
            "Matching lines (entries) in one run that make it fail.",
        ),
    ],
    planned: &[],
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
    doc: "A file must have been modified less than `max_age` ago. Once it is older than half of `max_age` (or missing, or its age cannot be read within `timeout`), the check runs every `fast_every` instead of `every`, so a stale file is noticed soon. A file on a filesystem that stops answering (a hung NFS server) fails this check with a timeout and never holds up other checks.",
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
    keys: &[CRON_KEY, EVERY_KEY, TIMEZONE_KEY],
    planned: &[],
};

// When a schedule fires: `[[services.NAME.schedule]]` and maintenance windows read these
// keys with the same code.
const CRON_KEY: KeyDoc = key(
    "cron",
    Ty::Other("cron expression"),
    Dflt::None,
    "Five fields (minute, hour, day of month, month, day of week), or six with a leading seconds field, e.g. `\"0 8,16 * * *\"`.",
);
const EVERY_KEY: KeyDoc = key(
    "every",
    POSITIVE,
    Dflt::None,
    "A fixed interval instead of `cron`.",
);
const TIMEZONE_KEY: KeyDoc = key(
    "timezone",
    Ty::Other("IANA time zone"),
    Dflt::Value("\"UTC\""),
    "The time zone `cron` is evaluated in, e.g. `\"Europe/Berlin\"`. Only with `cron`.",
);

pub static MAINTENANCE: Section = Section {
    id: "maintenance",
    header: "[[services.NAME.maintenance]]",
    also: &["[[groups.NAME.maintenance]]"],
    applies: None,
    doc: "A recurring maintenance window: it opens whenever its schedule fires (exactly one of `cron` or `every`, read as in [`[[services.NAME.schedule]]`](#schedule)) and lasts `duration`, during which `action` holds the service, or every member of the group. With `every`, `duration` must be shorter than the interval, so that windows never overlap.",
    keys: &[
        CRON_KEY,
        EVERY_KEY,
        TIMEZONE_KEY,
        key(
            "duration",
            POSITIVE,
            Dflt::Required,
            "How long each window lasts.",
        ),
        key(
            "action",
            Ty::OneOf(MAINTENANCE_ACTIONS),
            Dflt::Value("\"pause\""),
            "`\"pause\"`: restarts and repair commands are held back, as `vigil pause` does; the service keeps running and is still checked. `\"stop\"`: the service is stopped when the window opens and started when it closes, as `vigil stop` and `vigil start` do (a group stops in reverse start order and starts in order); a `driver = \"command\"` service (or group member) needs `stop_command` for it.",
        ),
    ],
    planned: &[],
};

/// `KEY`, `KEY_file` and `KEY_env`: a secret given inline, in a file or in an environment
/// variable; exactly one of the three (at most one when optional).
const fn secret_keys(
    inline: &'static str,
    file: &'static str,
    env: &'static str,
    what: &'static str,
    required: bool,
) -> [KeyDoc; 3] {
    let (d1, d2, d3) = if required {
        (
            Dflt::Computed("one of the three is required"),
            Dflt::Computed("one of the three is required"),
            Dflt::Computed("one of the three is required"),
        )
    } else {
        (Dflt::None, Dflt::None, Dflt::None)
    };
    [
        key(inline, Ty::String, d1, what),
        key(
            file,
            Ty::Path,
            d2,
            "A file holding the value instead, read at every delivery (a trailing newline is ignored).",
        ),
        key(
            env,
            Ty::Other("environment variable name"),
            d3,
            "An environment variable of the Vigil process holding the value instead, read at every delivery.",
        ),
    ]
}

const WEBHOOK_URL_KEYS: [KeyDoc; 3] = secret_keys(
    "url",
    "url_file",
    "url_env",
    "The URL to POST to (`http://` or `https://`). Treated as a secret: never logged or shown.",
    true,
);
const WEBHOOK_SECRET_KEYS: [KeyDoc; 3] = secret_keys(
    "secret",
    "secret_file",
    "secret_env",
    "A shared secret: each request carries `X-Vigil-Signature: sha256=<hex>`, the HMAC-SHA256 of the body under this key.",
    false,
);
const SLACK_URL_KEYS: [KeyDoc; 3] = secret_keys(
    "webhook_url",
    "webhook_url_file",
    "webhook_url_env",
    "The Slack incoming-webhook URL (`https://hooks.slack.com/services/...`). Treated as a secret: never logged or shown.",
    true,
);
const SMTP_PASSWORD_KEYS: [KeyDoc; 3] = secret_keys(
    "password",
    "password_file",
    "password_env",
    "The SMTP password, inline; needs `username`. Never shown in errors or logs.",
    false,
);

pub static ALERT: Section = Section {
    id: "alerts",
    header: "[alerts.NAME]",
    also: &[],
    applies: None,
    doc: "An alert channel: where Vigil tells people what happened. `NAME` follows the naming rules of services. Every service's events go to every channel unless the service lists its channels with `alerts = [...]`; each channel takes only the `events` it lists. An alert identical to one already sent (same event, service and check) is not sent again within `repeat`, and a `recovered` is sent only for a check this channel was told is failing or warning (it closes that alert). Alerts arriving within `group_wait` of the first one of a group go out together as one message. Delivery never blocks checks or restarts: each channel has its own bounded queue, retries failed deliveries `retries` times with exponential backoff and jitter, and records every delivery (and every one that gave up) in the ledger, shown by `vigil history`. `vigil alert test NAME` sends a test message. The keys below apply to every kind; each kind adds its own.",
    keys: &[
        key(
            "kind",
            Ty::OneOf(&["webhook", "slack", "email", "exec"]),
            Dflt::Required,
            "How alerts are delivered; see the kinds below.",
        ),
        key(
            "events",
            Ty::Other("array of event names"),
            Dflt::Computed("every event but `\"skipped\"`"),
            "The events this channel hears about: `\"restarted\"` (an allowed restart finished, or failed), `\"skipped\"` (a restart request was skipped: cooldown, backoff, lock), `\"given-up\"` (the restart budget is spent: ACTION REQUIRED), `\"failing\"` (a critical check turned failing), `\"recovered\"` (a failing or warning check passes again), `\"warning\"` (a check turned warning), `\"watchdog\"` (a supervised process missed its watchdog deadline).",
        ),
        key(
            "repeat",
            DURATION,
            Dflt::Value("\"1h\""),
            "An alert identical to one sent less than this ago (same event, service and check) is not sent again. `\"0\"` sends every one.",
        ),
        key(
            "group_wait",
            DURATION,
            Dflt::Value("\"10s\""),
            "Alerts arriving within this of the first alert of a group are sent as one message (a storm of 200 failing services is one message). `\"0\"` sends alerts at once (those raised in the same instant may still share a message).",
        ),
        key(
            "timeout",
            POSITIVE,
            Dflt::Value("\"10s\""),
            "Deadline of one delivery attempt (for `exec`, the command is killed with its process group after this).",
        ),
        key(
            "retries",
            AT_LEAST_1,
            Dflt::Value("5"),
            "Delivery attempts of one message, the first included; after the last failed one the message is recorded as failed in the ledger (`vigil history`).",
        ),
        key(
            "retry_delay",
            POSITIVE,
            Dflt::Value("\"2s\""),
            "The pause after the first failed attempt; it doubles after each further one (up to 5 minutes), with ±25% jitter.",
        ),
        key(
            "queue_size",
            Ty::Int {
                min: 1,
                max: Some(1_000_000),
            },
            Dflt::Value("1000"),
            "Messages waiting for delivery (and alerts waiting to be grouped) beyond this drop the oldest; drops are counted and logged.",
        ),
    ],
    planned: &[],
};

pub static ALERT_WEBHOOK: Section = Section {
    id: "alert-webhook",
    header: "[alerts.NAME]",
    also: &[],
    applies: Some("kind = \"webhook\""),
    doc: "POSTs the alert document (JSON, `Content-Type: application/json`; its schema is in `docs/alerts.md`) to a URL. A 2xx answer is a delivery; anything else, or no answer within `timeout`, is retried. Set exactly one of `url`, `url_file`, `url_env`.",
    keys: &[
        WEBHOOK_URL_KEYS[0],
        WEBHOOK_URL_KEYS[1],
        WEBHOOK_URL_KEYS[2],
        HEADERS_KEY,
        WEBHOOK_SECRET_KEYS[0],
        WEBHOOK_SECRET_KEYS[1],
        WEBHOOK_SECRET_KEYS[2],
    ],
    planned: &[],
};

pub static ALERT_SLACK: Section = Section {
    id: "alert-slack",
    header: "[alerts.NAME]",
    also: &[],
    applies: Some("kind = \"slack\""),
    doc: "Posts a readable message (a summary line, and a section with fields per alert) to a Slack incoming webhook. Set exactly one of `webhook_url`, `webhook_url_file`, `webhook_url_env`.",
    keys: &[SLACK_URL_KEYS[0], SLACK_URL_KEYS[1], SLACK_URL_KEYS[2]],
    planned: &[],
};

pub static ALERT_EMAIL: Section = Section {
    id: "alert-email",
    header: "[alerts.NAME]",
    also: &[],
    applies: Some("kind = \"email\""),
    doc: "Sends a plain-text email over SMTP: a subject that names the event, the service and the host, and a body that says what happened, the numbers, and what to do next.",
    keys: &[
        key(
            "smtp_host",
            Ty::String,
            Dflt::Required,
            "The SMTP server's host name or IP address; also the name its certificate must carry.",
        ),
        key(
            "smtp_port",
            PORT,
            Dflt::Computed("587 with `starttls`, 465 with `implicit`, 25 with `none`"),
            "The SMTP server's port.",
        ),
        key(
            "tls",
            Ty::OneOf(SMTP_TLS),
            Dflt::Value("\"starttls\""),
            "`\"starttls\"`: connect in plain text and upgrade with STARTTLS, refusing a server that does not offer it; `\"implicit\"`: TLS from the first byte (SMTPS); `\"none\"`: no TLS (credentials travel in clear).",
        ),
        key(
            "username",
            Ty::String,
            Dflt::None,
            "The user name to authenticate as (AUTH PLAIN or LOGIN); needs a password.",
        ),
        SMTP_PASSWORD_KEYS[0],
        SMTP_PASSWORD_KEYS[1],
        SMTP_PASSWORD_KEYS[2],
        key(
            "from",
            Ty::Other("mailbox"),
            Dflt::Required,
            "The sender: `\"vigil@example.com\"` or `\"Vigil <vigil@example.com>\"`.",
        ),
        key(
            "to",
            Ty::Other("array of mailboxes"),
            Dflt::Required,
            "The recipients, at least one.",
        ),
        key(
            "ca_file",
            Ty::Path,
            Dflt::None,
            "Extra trusted root certificates (PEM) for the server's certificate.",
        ),
    ],
    planned: &[],
};

pub static ALERT_EXEC: Section = Section {
    id: "alert-exec",
    header: "[alerts.NAME]",
    also: &[],
    applies: Some("kind = \"exec\""),
    doc: "Runs a command with the alert document (the webhook's JSON) on its standard input; exit status 0 is a delivery. It runs in its own process group, killed after `timeout`.",
    keys: &[key(
        "command",
        Ty::Argv,
        Dflt::Required,
        "The command to run.",
    )],
    planned: &[],
};

pub static FLEET: Section = Section {
    id: "fleet",
    header: "[fleet]",
    also: &[],
    applies: None,
    doc: "Several hosts, one restart budget (docs/fleet.md). Every host's Vigil names the same PostgreSQL database; services that share a `fleet_key` obey the key's fleet-wide rules in [`[fleet.keys.NAME]`](#fleet-keys). The local guard decides first; an allowed restart of a fleet-keyed service then takes a *lease* in PostgreSQL, in one transaction, and gives it back when the restart ends; a lease whose holder died expires after `lease_ttl`. Each host also publishes its services' states and its ledger rows, which `vigil fleet status` and `vigil fleet history` show on any host. Vigil creates and migrates its tables itself (PostgreSQL 13 or later).",
    keys: &[
        key(
            "postgres",
            Ty::Other("PostgreSQL URL"),
            Dflt::Required,
            "The database, as `postgres://USER@HOST[:PORT]/DATABASE` (port 5432 by default). The password is not written here: use `password_file` or `password_env`. Query parameters are not taken (TLS is `tls`/`ca_file`).",
        ),
        key(
            "password_file",
            Ty::Path,
            Dflt::None,
            "A file holding the role's password, read at each connection (a trailing newline is ignored). Not with `password_env`. The password never appears in logs, errors or `vigil config show`.",
        ),
        key(
            "password_env",
            Ty::String,
            Dflt::None,
            "An environment variable of the Vigil process holding the password. Not with `password_file`.",
        ),
        key(
            "host",
            Ty::String,
            Dflt::Computed("the machine's host name"),
            "This host's name in the fleet: leases, states and history rows carry it. Every host needs its own.",
        ),
        key(
            "lease_ttl",
            POSITIVE,
            Dflt::Value("\"30s\""),
            "A lease is renewed every third of this while its restart runs; one whose holder died (or lost the database) expires this long after its last renewal. A host not seen for 3 × `lease_ttl` is shown as lost.",
        ),
        key(
            "timeout",
            POSITIVE,
            Dflt::Value("\"2s\""),
            "The longest any fleet call may take (connecting included): a restart decision never waits longer than this on PostgreSQL.",
        ),
        key(
            "on_unreachable",
            Ty::OneOf(ON_UNREACHABLE),
            Dflt::Value("\"local\""),
            "When PostgreSQL cannot be asked within `timeout`: `local`, the local guard alone decides (the verdict says so); `deny`, automatic restarts of fleet-keyed services are skipped (manual ones still go through the local guard).",
        ),
        key(
            "tls",
            Ty::Bool,
            Dflt::Computed("`true` when `ca_file` is set, else `false`"),
            "Speak TLS to PostgreSQL (rustls), verifying the server's certificate against `ca_file`, or the system's roots without it.",
        ),
        key(
            "ca_file",
            Ty::Path,
            Dflt::None,
            "The CA certificate(s) (PEM) that signed the server's certificate; implies `tls = true`.",
        ),
        key(
            "keys",
            Ty::Table,
            Dflt::None,
            "The fleet keys' rules: [`[fleet.keys.NAME]`](#fleet-keys).",
        ),
    ],
    planned: &[],
};

pub static FLEET_KEY: Section = Section {
    id: "fleet-keys",
    header: "[fleet.keys.NAME]",
    also: &[],
    applies: None,
    doc: "The fleet-wide rules of one key, shared by every service with `fleet_key = \"NAME\"` on any host (each host's configuration should say the same). A refusal is a verdict like the local guard's: `skipped(fleet: 1/1 restarting on host-b, started 4s ago)`. `vigil restart --force` skips `min_healthy` and the budget and never waits for another lease, but still takes one.",
    keys: &[
        key(
            "max_concurrent",
            AT_LEAST_1,
            Dflt::Value("1"),
            "At most this many restarts of the key in progress across the fleet (leases held).",
        ),
        key(
            "max_restarts",
            AT_LEAST_0,
            Dflt::None,
            "At most this many restarts of the key, fleet-wide, inside the rolling `window`. Needs `window`.",
        ),
        key(
            "window",
            POSITIVE,
            Dflt::None,
            "The rolling window `max_restarts` counts over. Needs `max_restarts`.",
        ),
        key(
            "min_healthy",
            AT_LEAST_1,
            Dflt::None,
            "No automatic restart while fewer than this many members of the key on other hosts report passing (this one counts as failing; a member of a host not seen for 3 × `lease_ttl` counts as failing too).",
        ),
    ],
    planned: &[],
};
