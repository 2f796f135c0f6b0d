//! Renders the configuration reference (`docs/config.md`) from the schema.
//!
//! Owns only presentation. Every key, type, default and description comes from
//! [`crate::schema`], the same data the validator uses, so the reference cannot drift
//! from the parser; a test fails when the committed file is stale.

use std::fmt::Write as _;

use crate::schema::{self, Dflt, KeyDoc, Section, Ty};

/// A complete, valid configuration using every key; shown in the reference and parsed by
/// the tests.
pub const COMPLETE_EXAMPLE: &str = r#"include = ["conf.d/*.toml"]

[vigil]
state_dir = "/var/lib/vigil"
log_format = "human"
log_level = "info"
control_socket = "/run/vigil/vigil.sock"
control_socket_group = "vigil-ops"
http_listen = "127.0.0.1:9731"
http_token_file = "/etc/vigil/http-token"
http_tls_cert = "/etc/vigil/tls/cert.pem"
http_tls_key = "/etc/vigil/tls/key.pem"

[defaults.guard]
cooldown = "120s"
max_restarts = 5
window = "1h"
lock_timeout = "10s"

[defaults.guard.backoff]
initial = "30s"
factor = 2.0
max = "10m"
reset = "10m"

[services.camera]
driver = "command"
restart_command = ["/home/ops/camera/scripts/managed_start.sh", "restart"]
start_command = ["/home/ops/camera/scripts/managed_start.sh", "start"]
stop_command = ["/home/ops/camera/scripts/managed_start.sh", "stop"]
status_command = ["/home/ops/camera/scripts/managed_start.sh", "status"]
command_timeout = "60s"
after = ["kms"]
ready_check = "rtsp"
alerts = ["ops-hook", "ops-slack", "ops-mail", "pager"]

[services.camera.guard]
max_restarts = 3
backoff = { initial = "1m", max = "30m" }

[services.camera.checks.http]
kind = "http"
url = "https://127.0.0.1:8443/health"
method = "GET"
expect_status = [200, "300-302"]
body_contains = "ok"
body_regex = "uptime: \\d+"
headers = { Authorization = "Bearer secret-token" }
ca_file = "/etc/camera/ca.pem"
insecure = false
follow_redirects = false
max_body = "64KiB"
every = "5m"
timeout = "10s"
retries = 3
retry_delay = "5s"
failure_threshold = 2
success_threshold = 1
grace = "30s"
on_failure = "restart"
severity = "critical"

[services.camera.checks.rtsp]
kind = "tcp"
host = "127.0.0.1"
port = 554
on_failure = "restart-group"

[services.camera.checks.listener]
kind = "listening"
port = 8443
protocol = "tcp"
address = "0.0.0.0"
severity = "warning"
on_failure = "alert"

[services.camera.checks.pipeline]
kind = "exec"
command = ["/usr/local/bin/camera-ctl", "status"]
expect_exit = 0
stdout_contains = "running"
on_failure = { exec = ["/usr/local/bin/camera-ctl", "flush"] }

[services.camera.checks.tunnel]
kind = "http"
url = "http://10.8.0.1/status"
proxy = "socks5h://ops:s3cret@127.0.0.1:1080"
max_latency = "2s"
client_cert = "/etc/camera/client.pem"
client_key = "/etc/camera/client.key"

[services.camera.checks.ws]
kind = "websocket"
url = "wss://127.0.0.1:8084/mqtt"
expect_status = 426
headers = { Origin = "https://camera.local" }
proxy = "http://proxy.local:3128"
ca_file = "/etc/camera/ca.pem"
insecure = true
client_cert = "/etc/camera/client.pem"
client_key = "/etc/camera/client.key"

[services.camera.checks.close_wait]
kind = "sockets"
port = 1883
state = "close-wait"
side = "local"
max = 50

[services.camera.checks.errors]
kind = "log"
path = "/var/log/camera/camera.log"
pattern = "(?i)error|panic"
min_matches = 3
severity = "warning"

[services.camera.checks.vpn]
kind = "interface"
interface = "wg0"
require_carrier = false

[services.camera.checks.frames]
kind = "file_age"
path = "/var/lib/camera/latest.jpg"
max_age = "10m"
fast_every = "30s"

[services.camera.checks.clock]
kind = "clock"
servers = ["pool.ntp.org", "192.168.1.1:123", "[2001:db8::123]:123"]
warn = "1s"
critical = "3s"
on_failure = "alert"

[services.camera.checks.cert]
kind = "tls_cert"
host = "camera.example.com"
port = 8443
server_name = "camera.example.com"
warn_days = 21
critical_days = 7
proxy = "socks5://127.0.0.1:1080"

[services.camera.checks.cache]
kind = "redis"
host = "127.0.0.1"
port = 6380
username = "vigil"
password = "redis-secret"
tls = true
ca_file = "/etc/redis/ca.pem"
insecure = false
client_cert = "/etc/redis/client.pem"
client_key = "/etc/redis/client.key"

[services.camera.checks.db]
kind = "postgres"
host = "db.local"
port = 5433
user = "camera"
database = "frames"
password_file = "/etc/camera/pg.pass"

[services.camera.checks.broker]
kind = "mqtt"
host = "127.0.0.1"
port = 8883
username = "vigil"
password = "mqtt-secret"
client_id = "vigil-camera"
tls = true
insecure = true

[services.camera.checks.daemon]
kind = "process"
pid_file = "/run/camera.pid"
max_rss = "512MiB"
max_fds = 1024
max_threads = 64
max_cpu_percent = 150.0

[services.camera.checks.encoder]
kind = "process"
name = "ffmpeg"
max_rss = 1073741824

[services.camera.checks.uploader]
kind = "heartbeat"
ttl = "15m"

[services.camera.checks.kms]
kind = "docker"
container = "kms-production"
require_healthy = true
docker_host = "unix:///run/docker.sock"

[services.camera.checks.journal]
kind = "log"
journal_unit = "camera-encoder"
journal_directory = "/var/lib/machines/encoder/var/log/journal"
pattern = "(?i)dropped \\d+ frames"
[services.camera.checks.units]
kind = "systemd"
unit = "camera-encoder"
bus = "system"
bus_address = "unix:path=/run/dbus/system_bus_socket"

[[services.camera.schedule]]
cron = "0 8,16 * * *"
timezone = "Europe/Berlin"

[[services.camera.schedule]]
every = "24h"

[[services.camera.maintenance]]
cron = "0 3 * * 0"
timezone = "Europe/Berlin"
duration = "30m"
action = "stop"

[[services.camera.maintenance]]
every = "6h"
duration = "5m"

[services.kms]
driver = "docker"
container = "kms-production"
docker_host = "unix:///run/docker.sock"
stop_timeout = "20s"

[groups.platform]
members = ["camera", "kms"]
ready_timeout = "30s"

[groups.platform.guard]
cooldown = "5m"
max_restarts = 2

[[groups.platform.maintenance]]
cron = "0 2 1 * *"
duration = "1h"
action = "stop"

[services.worker]
driver = "exec"
command = ["/opt/worker/bin/worker", "--port", "8080"]
cwd = "/opt/worker"
env = { RUST_LOG = "info", PORT = "8080" }
user = "worker"
group = "worker"
stdout = "log"
stderr = { file = "/var/log/worker/stderr.log" }
log_max_size = "10MiB"
log_keep = 5
restart = "always"
restart_delay = "1s"
success_exit_status = [75, "SIGUSR1"]
stop_signal = "SIGTERM"
stop_timeout = "10s"
ready = "notify"
start_timeout = "90s"
watchdog = "30s"
watchdog_signal = "SIGABRT"
on_daemon_exit = "stop"

[alerts.ops-hook]
kind = "webhook"
url = "https://alerts.example.com/vigil"
headers = { Authorization = "Bearer hook-token" }
secret_file = "/etc/vigil/hook.secret"
events = ["given-up", "failing", "recovered", "restarted"]
repeat = "1h"
group_wait = "10s"
timeout = "10s"
retries = 5
retry_delay = "2s"
queue_size = 1000

[alerts.ops-slack]
kind = "slack"
webhook_url_env = "VIGIL_SLACK_URL"

[alerts.ops-mail]
kind = "email"
smtp_host = "smtp.example.com"
smtp_port = 587
tls = "starttls"
username = "vigil@example.com"
password_file = "/etc/vigil/smtp.pass"
from = "Vigil <vigil@example.com>"
to = ["ops@example.com", "oncall@example.com"]
ca_file = "/etc/vigil/smtp-ca.pem"
events = ["given-up"]

[alerts.pager]
kind = "exec"
command = ["/usr/local/bin/page-oncall", "--team", "ops"]
timeout = "30s"

# The other ways to give a secret: inline, in a file, in an environment variable.
[alerts.hook-env]
kind = "webhook"
url_env = "VIGIL_HOOK_URL"
secret = "hmac-secret"

[alerts.hook-file]
kind = "webhook"
url_file = "/etc/vigil/hook.url"
secret_env = "VIGIL_HOOK_SECRET"

[alerts.slack-file]
kind = "slack"
webhook_url_file = "/etc/vigil/slack.url"

[alerts.slack-inline]
kind = "slack"
webhook_url = "https://hooks.slack.com/services/T000/B000/XXXX"

[alerts.mail-env]
kind = "email"
smtp_host = "127.0.0.1"
tls = "none"
username = "vigil"
password_env = "VIGIL_SMTP_PASSWORD"
from = "vigil@example.com"
to = ["ops@example.com"]

[alerts.mail-inline]
kind = "email"
smtp_host = "mail.example.com"
tls = "implicit"
username = "vigil"
password = "smtp-secret"
from = "vigil@example.com"
to = ["ops@example.com"]

[services.encoder]
driver = "systemd"
unit = "camera-encoder.service"
bus = "system"
reset_failed = true
job_timeout = "30s"
fleet_key = "encoders"

[fleet]
postgres = "postgres://vigil@db.example.com:5432/vigil"
password_file = "/etc/vigil/pg-password"
host = "edge-01"
lease_ttl = "30s"
timeout = "2s"
on_unreachable = "local"
tls = true
ca_file = "/etc/vigil/pg-ca.pem"

[fleet.keys.encoders]
max_concurrent = 1
max_restarts = 4
window = "1h"
min_healthy = 2
"#;

/// A file with typical mistakes; the reference shows the errors `parse` really reports.
const BROKEN_EXAMPLE: &str = r#"[services.web]
driver = "command"
restart_command = "systemctl restart web"

[services.web.checks.health]
kind = "http"
url = "http://localhost:8080/health"
evry = "5s"
timeout = 10
"#;

/// The configuration reference as Markdown: the contents of `docs/config.md`.
pub fn reference_markdown() -> String {
    let mut out = String::new();
    out.push_str(INTRO);
    let errors = match crate::parse(
        BROKEN_EXAMPLE,
        std::path::Path::new("/etc/vigil/vigil.toml"),
    ) {
        Ok(_) => String::new(),
        Err(errors) => errors.to_string(),
    };
    let _ = write!(
        out,
        "\nFor example, this file:\n\n```toml\n{BROKEN_EXAMPLE}```\n\nis rejected with:\n\n```text\n{errors}\n```\n"
    );
    out.push_str(INTRO_END);
    out.push_str("\n## Contents\n\n- [Value syntax](#value-syntax)\n");
    for s in schema::SECTIONS {
        let _ = writeln!(out, "- [{}](#{})", title(s), s.id);
    }
    out.push_str("- [Not available yet](#not-available-yet)\n");
    out.push_str("- [Complete example](#complete-example)\n");
    out.push_str(VALUE_SYNTAX);
    for s in schema::SECTIONS {
        section(&mut out, s);
    }
    not_available(&mut out);
    out.push_str(
        "\n## Complete example\n\nEvery key, with the values a real setup might use:\n\n```toml\n",
    );
    out.push_str(COMPLETE_EXAMPLE);
    out.push_str("```\n");
    out
}

const INTRO: &str = r#"# Vigil configuration reference

<!-- Generated from crates/vigil-config/src/schema.rs by `reference_markdown()`.
     Do not edit by hand: run `VIGIL_UPDATE_DOCS=1 cargo test -p vigil-config`. -->

Vigil reads one TOML file: the path given with `-c`, else `$VIGIL_CONFIG`, else
`/etc/vigil/vigil.toml`. That file may `include` more (a `conf.d` directory of services,
groups and alert channels): see [`include`](#top-level).

The file is validated strictly before anything runs: unknown keys, wrong types and
out-of-range values are errors, never silently ignored, and every error in the file is
reported at once, each as `file:line:col: key.path: message`, with a suggestion for
likely typos. A file with more than 100 errors shows the first 100 and how many more there
are.
"#;

const INTRO_END: &str = r#"
`vigil config check [-c FILE]` validates a file without running anything and exits 2
when it is invalid.

In the tables below, *required* keys must be set; a default in `code` is a TOML value
that applies when the key is absent.
"#;

const VALUE_SYNTAX: &str = r#"
## Value syntax

### Durations

A string of numbers with units: `"250ms"`, `"30s"`, `"5m"`, `"1h 30m"`, `"2 hours"`,
`"1.5h"`. Units: `ms`, `s`/`sec`/`secs`, `m`/`min`/`mins`, `h`/`hr`/`hours` (and
`us`, `ns`). ISO 8601 durations such as `"PT90S"` work too. `"0"` means zero. Negative
durations, days (whose length depends on the calendar) and more than 100 years are
rejected. A bare integer is **not** a duration: write `"30s"`, not `30`.

### Sizes

A string with an optional unit, `"64KiB"`, `"1MiB"`, `"2GB"`, `"1000"`, or an integer
number of bytes. Units (case-insensitive): `B`; `KB`, `MB`, `GB` (powers of 1000);
`KiB`, `MiB`, `GiB` (powers of 1024).

### Commands

An array of strings, the program first: `["/usr/bin/systemctl", "restart", "web"]`.
No shell is involved, so there is no quoting, globbing or `$VAR` expansion; to use a
shell, say so: `["/bin/sh", "-c", "..."]`. An empty array or an empty program is an
error.

### Paths

Relative paths are resolved against the directory of the configuration file.

### Names

Service and check names use letters, digits, `_`, `.`, `@` and `-`, start with a letter
or a digit, and have at most 64 characters. Quote names containing `.` or `@` in table
headers: `[services."api@2".checks.health]`.
"#;

fn title(s: &Section) -> String {
    match s.applies {
        Some(applies) => format!("`{}` with `{applies}`", s.header),
        None if s.id == schema::TOP.id => "Top level".to_owned(),
        None => format!("`{}`", s.header),
    }
}

fn section(out: &mut String, s: &Section) {
    let _ = write!(out, "\n<a id=\"{}\"></a>\n\n## {}\n\n", s.id, title(s));
    if !s.also.is_empty() {
        let also: Vec<String> = s.also.iter().map(|h| format!("`{h}`")).collect();
        let _ = writeln!(out, "Also: {}.\n", also.join(", "));
    }
    out.push_str(s.doc);
    out.push_str("\n\n| key | type | default | description |\n|---|---|---|---|\n");
    for k in s.keys {
        key_row(out, k);
    }
    if !s.planned.is_empty() {
        let planned: Vec<String> = s
            .planned
            .iter()
            .map(
                |k| match schema::PLANNED_KEY_HINTS.iter().find(|(h, _)| h == k) {
                    Some((_, why)) => format!("`{k}` ({why})"),
                    None => format!("`{k}`"),
                },
            )
            .collect();
        let _ = writeln!(
            out,
            "\nNot available yet (rejected with a clear error): {}.",
            planned.join(", ")
        );
    }
}

fn key_row(out: &mut String, k: &KeyDoc) {
    let default = match &k.default {
        Dflt::Required => "**required**".to_owned(),
        Dflt::None => "not set".to_owned(),
        Dflt::Value(literal) => format!("`{literal}`"),
        Dflt::Computed(text) => (*text).to_owned(),
    };
    let _ = writeln!(
        out,
        "| `{}` | {} | {} | {} |",
        k.key,
        cell(&ty(&k.ty)),
        cell(&default),
        cell(k.doc)
    );
}

fn ty(t: &Ty) -> String {
    let quoted = |names: &mut dyn Iterator<Item = &str>| -> String {
        let names: Vec<String> = names.map(|n| format!("`\"{n}\"`")).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            Some((last, _)) => last.clone(),
            None => String::new(),
        }
    };
    match t {
        Ty::String => "string".to_owned(),
        Ty::Bool => "boolean".to_owned(),
        Ty::Duration { nonzero: false } => "[duration](#durations)".to_owned(),
        Ty::Duration { nonzero: true } => "[duration](#durations) > 0".to_owned(),
        Ty::Size => "[size](#sizes)".to_owned(),
        Ty::Path => "[path](#paths)".to_owned(),
        Ty::Argv => "[command](#commands)".to_owned(),
        Ty::Table => "table".to_owned(),
        Ty::ArrayOfTables => "array of tables".to_owned(),
        Ty::Int { min, max: None } => format!("integer ≥ {min}"),
        Ty::Int {
            min,
            max: Some(max),
        } => format!("integer {min} to {max}"),
        Ty::Float { min } => format!("number ≥ {min:?}"),
        Ty::OneOf(names) => quoted(&mut names.iter().copied()),
        Ty::Driver => quoted(&mut schema::DRIVERS.iter().map(|(n, _)| *n)),
        Ty::CheckKind => quoted(&mut schema::CHECK_KINDS.iter().map(|(n, _)| *n)),
        Ty::Other(text) => (*text).to_owned(),
    }
}

/// Markdown table cells cannot contain a bare `|`.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn not_available(out: &mut String) {
    let list = |names: &[&str]| -> String {
        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        names.join(", ")
    };
    let _ = write!(
        out,
        "\n## Not available yet\n\nThe product contract names more than this version implements. These are recognised and rejected with \"not available yet\" instead of \"unknown\":\n\n"
    );
    for (what, names) in [
        ("drivers", schema::PLANNED_DRIVERS),
        ("check kinds", schema::PLANNED_CHECK_KINDS),
    ] {
        if !names.is_empty() {
            let _ = writeln!(out, "- {what}: {}", list(names));
        }
    }
    for s in schema::SECTIONS {
        if !s.planned.is_empty() {
            let place = if s.id == schema::TOP.id {
                "the top level".to_owned()
            } else {
                title(s)
            };
            let _ = writeln!(out, "- keys of {place}: {}", list(s.planned));
        }
    }
}
