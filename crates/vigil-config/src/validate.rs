//! The walk from the parsed TOML tree to the validated [`Config`].
//!
//! Owns what each key means: which section a table belongs to, which conversion a key
//! takes, cross-key rules (backoff `max >= initial`, exactly one of `cron`/`every`), and
//! the merge of `[defaults.guard]` into each service. It never stops at the first error:
//! each function validates everything it can reach, records errors in [`Cx`], and returns
//! `None` when its part of the model cannot be built.

mod alerts;
mod exec;
mod fleet;
mod groups;
mod kinds;
mod maintenance;

use std::time::Duration;

use toml::de::DeValue;
use vigil_core::backoff::BackoffPolicy;
use vigil_core::guard::GuardPolicy;
use vigil_core::health::Thresholds;
use vigil_core::schedule::Schedule;
use vigil_core::{CheckName, ServiceName};

use crate::model::{
    AlertRoute, Check, CheckKind, CommandDriver, Config, DockerDriver, DriverSpec, ExecCheck,
    HttpCheck, HttpListener, ListeningCheck, LogFormat, LogLevel, OnFailure, Protocol,
    ScheduleEntry, Service, Settings, Severity, StatusSet, SystemdDriver, TcpCheck, TlsFiles,
};
use crate::schema::{self, Section};
use crate::suggest;
use crate::value::{
    self, Cx, KeyPath, Table, Value, argv, boolean, count, duration, found, integer, one_of,
    positive_duration, shorten, string, type_error,
};

/// Names of services and checks: `^[A-Za-z0-9][A-Za-z0-9_.@-]*$`, at most 64 characters.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'))
}

fn no_hint(_: &str) -> Option<String> {
    None
}

pub(crate) fn config(
    cx: &mut Cx<'_>,
    root: &Value<'_>,
    file: &std::path::Path,
    files: Vec<std::path::PathBuf>,
) -> Option<Config> {
    let top = Table::new(
        cx,
        root,
        KeyPath::default(),
        "the top level".to_owned(),
        &[&schema::TOP],
    )?;
    top.reject_unknown(cx, &|key| {
        let near = suggest::closest(key, schema::TOP.keys.iter().map(|k| k.key))?;
        Some(format!(
            "unknown key `{key}` at the top level; did you mean `{near}`?"
        ))
    });
    let settings = settings(cx, &top);
    let default_guard = defaults(cx, &top);
    let channels = alerts::channel_names(&top);
    let services = services(cx, &top, default_guard.as_ref(), &channels);
    let alerts = alerts::alerts(cx, &top);
    let fleet = fleet::fleet(cx, &top);
    let (mut services, mut refs) = services?;
    let fleet_refs: Vec<_> = refs
        .iter_mut()
        .enumerate()
        .filter_map(|(i, r)| r.fleet_key.take().map(|k| (i, k)))
        .collect();
    fleet::check_refs(
        cx,
        fleet.as_ref().and_then(Option::as_ref),
        &mut services,
        fleet_refs,
    );
    let groups = groups::groups(cx, &top, &mut services, &refs, default_guard.as_ref());
    Some(Config {
        path: file.to_path_buf(),
        files,
        vigil: settings?,
        default_guard: default_guard?,
        services,
        groups: groups?,
        alerts: alerts?,
        fleet: fleet?,
    })
}

fn settings(cx: &mut Cx<'_>, top: &Table<'_>) -> Option<Settings> {
    let t = top.child_or_empty(cx, "vigil", &[&schema::VIGIL])?;
    t.reject_unknown(cx, &no_hint);
    let state_dir = t.optional(cx, "state_dir", value::path);
    let log_format = t.defaulted(cx, "log_format", |cx, v, p| {
        match one_of(cx, v, p, "log_format", schema::LOG_FORMATS)? {
            "human" => Some(LogFormat::Human),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    });
    let log_level = t.defaulted(cx, "log_level", |cx, v, p| {
        match one_of(cx, v, p, "log_level", schema::LOG_LEVELS)? {
            "error" => Some(LogLevel::Error),
            "warn" => Some(LogLevel::Warn),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            "trace" => Some(LogLevel::Trace),
            _ => None,
        }
    });
    let control_socket = t.optional(cx, "control_socket", value::socket_path);
    let control_socket_group = t.optional(cx, "control_socket_group", value::nonempty_string);
    let http = http_listener(cx, &t);
    let state_dir = state_dir.unwrap_or_else(crate::default_state_dir);
    Some(Settings {
        control_socket: control_socket.unwrap_or_else(|| crate::default_control_socket(&state_dir)),
        control_socket_group,
        http: http?,
        state_dir,
        log_format: log_format?,
        log_level: log_level?,
    })
}

/// `http_listen` and its companions; `Some(None)` when the listener is off. The files are
/// only named here (the daemon reads them): a one-shot command run by a user who may not
/// read the token still loads this configuration.
fn http_listener(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<Option<HttpListener>> {
    let listen = t.optional(cx, "http_listen", value::socket_addr);
    let token_file = t.optional(cx, "http_token_file", value::path);
    let cert = t.optional(cx, "http_tls_cert", value::path);
    let key = t.optional(cx, "http_tls_key", value::path);
    let mut ok = true;
    if t.get("http_listen").is_none() {
        for name in ["http_token_file", "http_tls_cert", "http_tls_key"] {
            if let Some(span) = t.key_span(name) {
                let message =
                    format!("`{name}` applies only with `http_listen` (the TCP listener is off)");
                cx.error(span, &t.path.key(name), message);
                ok = false;
            }
        }
    }
    for (have, missing) in [
        ("http_tls_cert", "http_tls_key"),
        ("http_tls_key", "http_tls_cert"),
    ] {
        if let Some(span) = t.key_span(have)
            && t.get(missing).is_none()
        {
            let message = format!(
                "`{have}` needs `{missing}` too (TLS takes a certificate chain and its private key)"
            );
            cx.error(span, &t.path.key(have), message);
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let Some(listen) = listen else {
        // Absent (off), or invalid (its error is recorded).
        return t.get("http_listen").is_none().then_some(None);
    };
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        // One of them was invalid: its error is recorded.
        _ => return None,
    };
    if (t.get("http_token_file").is_some() && token_file.is_none())
        || (t.get("http_tls_cert").is_some() && tls.is_none())
    {
        return None;
    }
    Some(Some(HttpListener {
        listen,
        token_file,
        tls,
    }))
}

fn defaults(cx: &mut Cx<'_>, top: &Table<'_>) -> Option<GuardPolicy> {
    let t = top.child_or_empty(cx, "defaults", &[&schema::DEFAULTS])?;
    t.reject_unknown(cx, &no_hint);
    let g = t.child_or_empty(cx, "guard", &[&schema::GUARD])?;
    guard(cx, &g, Inherit::Documented)
}

/// Where a guard key that is absent comes from.
#[derive(Clone, Copy)]
pub(super) enum Inherit<'g> {
    /// `[defaults.guard]`: the schema's documented defaults.
    Documented,
    /// `[services.NAME.guard]`: the merged defaults (`None` when those were invalid; the
    /// service's own keys are still checked).
    From(Option<&'g GuardPolicy>),
}

pub(super) fn guard(cx: &mut Cx<'_>, t: &Table<'_>, inherit: Inherit<'_>) -> Option<GuardPolicy> {
    t.reject_unknown(cx, &no_hint);
    fn pick<T>(
        cx: &mut Cx<'_>,
        t: &Table<'_>,
        key: &str,
        inherit: Inherit<'_>,
        from_base: impl FnOnce(&GuardPolicy) -> T,
        conv: impl for<'v> Fn(&mut Cx<'_>, &'v Value<'v>, &KeyPath) -> Option<T>,
    ) -> Option<T> {
        match inherit {
            Inherit::Documented => t.defaulted(cx, key, conv),
            Inherit::From(base) => {
                let own = t.optional(cx, key, conv);
                own.or_else(|| base.map(from_base))
            }
        }
    }
    let cooldown = pick(cx, t, "cooldown", inherit, |b| b.cooldown, duration);
    let max_restarts = pick(cx, t, "max_restarts", inherit, |b| b.max_restarts, count);
    let window = pick(cx, t, "window", inherit, |b| b.window, positive_duration);
    let lock_timeout = pick(cx, t, "lock_timeout", inherit, |b| b.lock_timeout, duration);
    let backoff = match t.get("backoff") {
        Some(v) => {
            let path = t.path.key("backoff");
            let label = format!("[{path}]");
            Table::new(cx, v, path, label, &[&schema::BACKOFF])
                .and_then(|b| backoff(cx, &b))
                .map(Some)
        }
        None => match inherit {
            Inherit::Documented => Some(None),
            Inherit::From(base) => base.map(|b| b.backoff.clone()),
        },
    };
    Some(GuardPolicy {
        cooldown: cooldown?,
        max_restarts: max_restarts?,
        window: window?,
        lock_timeout: lock_timeout?,
        backoff: backoff?,
    })
}

fn backoff(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<BackoffPolicy> {
    t.reject_unknown(cx, &no_hint);
    let initial = t.required(cx, "initial", positive_duration);
    let factor = t.defaulted(cx, "factor", |cx, v, p| {
        value::number_at_least(cx, v, p, 1.0)
    });
    let max = t.required(cx, "max", positive_duration);
    let reset = t.defaulted(cx, "reset", duration);
    if let (Some(initial), Some(max), Some(v)) = (initial, max, t.get("max"))
        && max < initial
    {
        let message = format!(
            "must be at least `initial` ({}), found {}",
            vigil_core::format_duration(initial),
            vigil_core::format_duration(max)
        );
        cx.error(v.span(), &t.path.key("max"), message);
        return None;
    }
    Some(BackoffPolicy {
        initial: initial?,
        factor: factor?,
        max: max?,
        reset: reset?,
    })
}

fn services(
    cx: &mut Cx<'_>,
    top: &Table<'_>,
    default_guard: Option<&GuardPolicy>,
    channels: &alerts::ChannelNames,
) -> Option<(Vec<Service>, Vec<groups::ServiceRefs>)> {
    let Some(v) = top.get("services") else {
        return Some((Vec::new(), Vec::new()));
    };
    let path = KeyPath::default().key("services");
    let all = Table::new(cx, v, path, "[services]".to_owned(), &[])?;
    let mut services = Some((Vec::new(), Vec::new()));
    for (name, v) in all.entries() {
        let service = service(cx, &all.path, name, v, default_guard, channels);
        match (&mut services, service) {
            (Some((list, refs)), Some((s, r))) => {
                list.push(s);
                refs.push(r);
            }
            _ => services = None,
        }
    }
    services
}

/// Checks a service or check name (the key `name_key`), reporting at the key.
pub(super) fn name_ok(
    cx: &mut Cx<'_>,
    what: &str,
    name: &toml::Spanned<toml::de::DeString<'_>>,
    path: &KeyPath,
) -> bool {
    if is_valid_name(name.get_ref()) {
        return true;
    }
    let message = format!(
        "invalid {what} name {:?}: use letters, digits, '_', '.', '@' and '-', starting with a letter or digit, at most 64 characters",
        shorten(name.get_ref())
    );
    cx.error(name.span(), path, message);
    false
}

fn service(
    cx: &mut Cx<'_>,
    parent: &KeyPath,
    name: &toml::Spanned<toml::de::DeString<'_>>,
    v: &Value<'_>,
    default_guard: Option<&GuardPolicy>,
    channels: &alerts::ChannelNames,
) -> Option<(Service, groups::ServiceRefs)> {
    let path = parent.key(name.get_ref());
    let name_valid = name_ok(cx, "service", name, &path);
    let label = format!("[{path}]");
    let mut t = Table::new(cx, v, path, label, &[&schema::SERVICE])?;

    let driver = t.required(cx, "driver", driver_kind);
    if let Some((_, section)) = driver {
        t.add_section(section);
        t.reject_unknown(cx, &|key| service_key_hint(key, &t.path));
    }
    let driver = match driver {
        Some(("command", _)) => command_driver(cx, &t).map(DriverSpec::Command),
        Some(("docker", _)) => docker_driver(cx, &t).map(DriverSpec::Docker),
        Some(("exec", _)) => exec::exec_driver(cx, &t).map(DriverSpec::Exec),
        Some(("systemd", _)) => systemd_driver(cx, &t).map(DriverSpec::Systemd),
        _ => None,
    };

    let guard = match t.get("guard") {
        Some(gv) => {
            let gpath = t.path.key("guard");
            let label = format!("[{gpath}]");
            Table::new(cx, gv, gpath, label, &[&schema::GUARD])
                .and_then(|g| guard(cx, &g, Inherit::From(default_guard)))
        }
        None => default_guard.cloned(),
    };
    let checks = checks(cx, &t);
    let schedules = schedules(cx, &t);
    let mut maintenance = maintenance::windows(cx, &t);
    if let Some(driver) = &driver {
        maintenance::check_service(cx, name.get_ref(), driver, &mut maintenance);
    }
    let alerts = match t.get("alerts") {
        Some(v) => alerts::route(cx, v, &t.path.key("alerts"), channels),
        None => Some(AlertRoute::All),
    };
    let mut refs = groups::service_refs(cx, &t);
    refs.fleet_key = fleet::service_key(cx, &t);
    if let (Some(checks), Some(cv)) = (&checks, t.get("checks")) {
        refs.restart_group = restart_group_spans(checks, cv, &t.path.key("checks"));
    }
    if !name_valid {
        return None;
    }
    Some((
        Service {
            name: ServiceName::new(name.get_ref().as_ref()),
            driver: driver?,
            guard: guard?,
            checks: checks?,
            schedules: schedules?,
            maintenance: maintenance.list?,
            after: Vec::new(),
            ready_check: None,
            alerts: alerts?,
            fleet_key: None,
        },
        refs,
    ))
}

/// Where each `on_failure = "restart-group"` is written, to report it if the service
/// turns out to be in no group.
fn restart_group_spans(
    checks: &[Check],
    raw: &Value<'_>,
    path: &KeyPath,
) -> Vec<(std::ops::Range<usize>, KeyPath)> {
    let DeValue::Table(map) = raw.get_ref() else {
        return Vec::new();
    };
    checks
        .iter()
        .filter(|c| groups::is_restart_group(&c.on_failure))
        .filter_map(|c| {
            let table = map.get(c.name.as_str())?;
            let DeValue::Table(fields) = table.get_ref() else {
                return None;
            };
            let v = fields.get("on_failure")?;
            Some((v.span(), path.key(c.name.as_str()).key("on_failure")))
        })
        .collect()
}

/// The kinds (quoted) whose section documents `key`.
fn owners(kinds: &[(&str, &Section)], key: &str) -> Vec<String> {
    kinds
        .iter()
        .filter(|(_, s)| s.key(key).is_some())
        .map(|(name, _)| format!("{name:?}"))
        .collect()
}

/// For an unknown key of a table of kind `kind`: the hint that it belongs to other kinds,
/// if it does.
pub(crate) fn other_kind_hint(
    what: &str,
    kind: &str,
    kinds: &[(&str, &Section)],
    key: &str,
) -> Option<String> {
    let owners = owners(kinds, key);
    (!owners.is_empty()).then(|| {
        format!(
            "key `{key}` does not apply to {what} {kind:?} (it belongs to kind {})",
            owners.join(", ")
        )
    })
}

/// A key of some check kind written directly in the service table is a misplaced check.
fn service_key_hint(key: &str, path: &KeyPath) -> Option<String> {
    let is_check_key = schema::CHECK.key(key).is_some()
        || schema::CHECK_KINDS
            .iter()
            .any(|(_, s)| s.key(key).is_some());
    let drivers = owners(schema::DRIVERS, key);
    if !drivers.is_empty() {
        Some(format!(
            "unknown key `{key}` in [{path}]: it belongs to driver {}",
            drivers.join(", ")
        ))
    } else if is_check_key {
        Some(format!(
            "unknown key `{key}` in [{path}]: `{key}` is a check key; put it in [{path}.checks.NAME]"
        ))
    } else {
        None
    }
}

fn driver_kind(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &KeyPath,
) -> Option<(&'static str, &'static Section)> {
    let s = string(cx, v, path)?;
    if let Some((name, section)) = schema::DRIVERS.iter().find(|(name, _)| *name == s) {
        return Some((name, section));
    }
    let available: Vec<&str> = schema::DRIVERS.iter().map(|(name, _)| *name).collect();
    let message = if schema::PLANNED_DRIVERS.contains(&s.as_str()) {
        format!(
            "driver {s:?} is not available yet (available: {})",
            available.join(", ")
        )
    } else {
        unknown_with_planned("driver", &s, &available, schema::PLANNED_DRIVERS)
    };
    cx.error(v.span(), path, message);
    None
}

/// `unknown WHAT "s"; did you mean "x"?`, suggesting among available and planned names.
fn unknown_with_planned(what: &str, s: &str, available: &[&str], planned: &[&str]) -> String {
    let candidates = available.iter().chain(planned).copied();
    match suggest::closest(s, candidates) {
        Some(near) => format!(
            "unknown {what} {:?}; did you mean {near:?}? (available: {})",
            shorten(s),
            available.join(", ")
        ),
        None => format!(
            "unknown {what} {:?} (available: {})",
            shorten(s),
            available.join(", ")
        ),
    }
}

fn command_driver(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<CommandDriver> {
    let restart = t.required(cx, "restart_command", argv);
    let start = t.optional(cx, "start_command", argv);
    let stop = t.optional(cx, "stop_command", argv);
    let status = t.optional(cx, "status_command", argv);
    let timeout = t.defaulted(cx, "command_timeout", positive_duration);
    Some(CommandDriver {
        restart: restart?,
        start,
        stop,
        status,
        timeout: timeout?,
    })
}

fn docker_driver(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<DockerDriver> {
    let container = t.required(cx, "container", kinds::container_name);
    let docker_host = t.optional(cx, "docker_host", kinds::docker_host);
    let stop_timeout = t.defaulted(cx, "stop_timeout", value::duration);
    Some(DockerDriver {
        container: container?,
        docker_host,
        stop_timeout: stop_timeout?,
    })
}

fn systemd_driver(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<SystemdDriver> {
    let unit = t.required(cx, "unit", kinds::unit_name);
    let bus = kinds::systemd_bus(cx, t);
    let reset_failed = t.defaulted(cx, "reset_failed", boolean);
    let job_timeout = t.defaulted(cx, "job_timeout", positive_duration);
    Some(SystemdDriver {
        unit: unit?,
        bus: bus?,
        reset_failed: reset_failed?,
        job_timeout: job_timeout?,
    })
}

fn checks(cx: &mut Cx<'_>, service: &Table<'_>) -> Option<Vec<Check>> {
    let Some(v) = service.get("checks") else {
        return Some(Vec::new());
    };
    let path = service.path.key("checks");
    let label = format!("[{path}]");
    let all = Table::new(cx, v, path, label, &[])?;
    let mut checks = Some(Vec::new());
    for (name, v) in all.entries() {
        let check = check(cx, &all.path, name, v);
        match (&mut checks, check) {
            (Some(list), Some(c)) => list.push(c),
            _ => checks = None,
        }
    }
    checks
}

fn check_kind(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &KeyPath,
) -> Option<(&'static str, &'static Section)> {
    let s = string(cx, v, path)?;
    if let Some((name, section)) = schema::CHECK_KINDS.iter().find(|(name, _)| *name == s) {
        return Some((name, section));
    }
    let available: Vec<&str> = schema::CHECK_KINDS.iter().map(|(name, _)| *name).collect();
    let message = if schema::PLANNED_CHECK_KINDS.contains(&s.as_str()) {
        format!(
            "check kind {s:?} is not available yet (available: {})",
            available.join(", ")
        )
    } else {
        unknown_with_planned("check kind", &s, &available, schema::PLANNED_CHECK_KINDS)
    };
    cx.error(v.span(), path, message);
    None
}

fn check(
    cx: &mut Cx<'_>,
    parent: &KeyPath,
    name: &toml::Spanned<toml::de::DeString<'_>>,
    v: &Value<'_>,
) -> Option<Check> {
    let path = parent.key(name.get_ref());
    let name_valid = name_ok(cx, "check", name, &path);
    let label = format!("[{path}]");
    let mut t = Table::new(cx, v, path, label, &[&schema::CHECK])?;

    let kind = t.required(cx, "kind", check_kind);
    if let Some((kind_name, section)) = kind {
        t.add_section(section);
        t.reject_unknown(cx, &|key| {
            other_kind_hint("check kind", kind_name, schema::CHECK_KINDS, key)
        });
    }

    let every = t.defaulted(cx, "every", positive_duration);
    let timeout = t.defaulted(cx, "timeout", positive_duration);
    let retries = t.defaulted(cx, "retries", count);
    let retry_delay = t.defaulted(cx, "retry_delay", duration);
    let failure = t.defaulted(cx, "failure_threshold", count);
    let success = t.defaulted(cx, "success_threshold", count);
    let grace = t.defaulted(cx, "grace", duration);
    let on_failure = t.defaulted(cx, "on_failure", on_failure);
    let severity = t.defaulted(cx, "severity", |cx, v, p| {
        match one_of(cx, v, p, "severity", schema::SEVERITIES)? {
            "critical" => Some(Severity::Critical),
            "warning" => Some(Severity::Warning),
            _ => None,
        }
    });
    let kind = match kind {
        Some(("http", _)) => http(cx, &t).map(CheckKind::Http),
        Some(("tcp", _)) => tcp(cx, &t).map(CheckKind::Tcp),
        Some(("listening", _)) => listening(cx, &t).map(CheckKind::Listening),
        Some(("exec", _)) => exec(cx, &t).map(CheckKind::Exec),
        Some(("websocket", _)) => kinds::websocket(cx, &t).map(CheckKind::WebSocket),
        Some(("sockets", _)) => kinds::sockets(cx, &t).map(CheckKind::Sockets),
        Some(("log", _)) => kinds::log(cx, &t).map(CheckKind::Log),
        Some(("interface", _)) => kinds::interface(cx, &t).map(CheckKind::Interface),
        Some(("file_age", _)) => kinds::file_age(cx, &t).map(CheckKind::FileAge),
        Some(("clock", _)) => kinds::clock(cx, &t).map(CheckKind::Clock),
        Some(("tls_cert", _)) => kinds::tls_cert(cx, &t).map(CheckKind::TlsCert),
        Some(("redis", _)) => kinds::redis(cx, &t).map(CheckKind::Redis),
        Some(("postgres", _)) => kinds::postgres(cx, &t).map(CheckKind::Postgres),
        Some(("mqtt", _)) => kinds::mqtt(cx, &t).map(CheckKind::Mqtt),
        Some(("process", _)) => kinds::process(cx, &t).map(CheckKind::Process),
        Some(("heartbeat", _)) => kinds::heartbeat(cx, &t).map(CheckKind::Heartbeat),
        Some(("docker", _)) => kinds::docker(cx, &t).map(CheckKind::Docker),
        Some(("systemd", _)) => kinds::systemd(cx, &t).map(CheckKind::Systemd),
        _ => None,
    };
    if !name_valid {
        return None;
    }
    Some(Check {
        name: CheckName::new(name.get_ref().as_ref()),
        kind: kind?,
        every: every?,
        timeout: timeout?,
        retries: retries?,
        retry_delay: retry_delay?,
        thresholds: Thresholds {
            failure: failure?,
            success: success?,
        },
        grace: grace?,
        on_failure: on_failure?,
        severity: severity?,
    })
}

fn on_failure(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<OnFailure> {
    match v.get_ref() {
        DeValue::String(_) => match one_of(cx, v, path, "on_failure", schema::ON_FAILURE_WORDS)? {
            "restart" => Some(OnFailure::Restart),
            "alert" => Some(OnFailure::Alert),
            "restart-group" => Some(OnFailure::RestartGroup),
            _ => None,
        },
        DeValue::Table(_) => {
            let label = format!("[{path}]");
            let t = Table::new(cx, v, path.clone(), label, &[&schema::ON_FAILURE])?;
            t.reject_unknown(cx, &no_hint);
            t.required(cx, "exec", argv).map(OnFailure::Exec)
        }
        other => {
            let message = format!(
                "expected \"restart\", \"alert\", \"restart-group\" or a table like {{ exec = [\"/path/to/repair\"] }}, found {}",
                found(other)
            );
            cx.error(v.span(), path, message);
            None
        }
    }
}

fn http(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<HttpCheck> {
    let url = t.required(cx, "url", value::http_url);
    let method = t.defaulted(cx, "method", |cx, v, p| {
        let s = string(cx, v, p)?;
        let upper = s.to_ascii_uppercase();
        match schema::HTTP_METHODS.iter().find(|m| **m == upper) {
            Some(m) => Some((*m).to_owned()),
            None => {
                let message = value::unknown_word("HTTP method", &s, schema::HTTP_METHODS, &[]);
                cx.error(v.span(), p, message);
                None
            }
        }
    });
    let expect_status = t.defaulted(cx, "expect_status", status_set);
    let body_contains = t.optional(cx, "body_contains", string);
    let body_regex = t.optional(cx, "body_regex", value::regex);
    let headers = t.optional(cx, "headers", headers);
    let ca_file = t.optional(cx, "ca_file", value::path);
    let insecure = t.defaulted(cx, "insecure", boolean);
    let client_cert = kinds::client_cert(cx, t);
    let proxy = t.optional(cx, "proxy", value::proxy);
    let max_latency = t.optional(cx, "max_latency", positive_duration);
    let follow_redirects = t.defaulted(cx, "follow_redirects", boolean);
    let mut max_body = t.defaulted(cx, "max_body", value::size);
    if let (Some(_), Some(max), Some(v)) = (&body_regex, max_body, t.get("max_body"))
        && max > crate::model::MAX_BODY_WITH_REGEX
    {
        let message = format!(
            "at most {} with `body_regex` (the body is held in memory to match a regex), found {}; `body_contains` alone is matched as the body streams, with any max_body",
            byte_size(crate::model::MAX_BODY_WITH_REGEX),
            byte_size(max)
        );
        cx.error(v.span(), &t.path.key("max_body"), message);
        max_body = None;
    }
    // An invalid optional key yields `None` like an absent one; only the error list tells
    // them apart, and `parse` fails whenever it is non-empty.
    Some(HttpCheck {
        url: url?,
        method: method?,
        expect_status: expect_status?,
        body_contains,
        body_regex,
        headers: headers.unwrap_or_default(),
        ca_file,
        insecure: insecure?,
        follow_redirects: follow_redirects?,
        max_body: max_body?,
        proxy,
        max_latency,
        client_cert: client_cert?,
    })
}

/// `1GiB`, `64KiB`, or `1000 bytes`.
fn byte_size(n: usize) -> String {
    const KIB: usize = 1024;
    match n {
        _ if n >= KIB * KIB * KIB && n.is_multiple_of(KIB * KIB * KIB) => {
            format!("\"{}GiB\"", n / (KIB * KIB * KIB))
        }
        _ if n >= KIB * KIB && n.is_multiple_of(KIB * KIB) => format!("\"{}MiB\"", n / (KIB * KIB)),
        _ if n >= KIB && n.is_multiple_of(KIB) => format!("\"{}KiB\"", n / KIB),
        _ => format!("{n} bytes"),
    }
}

/// `expect_status`: `200`, `"200-399"`, or an array of either.
fn status_set(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<StatusSet> {
    match v.get_ref() {
        DeValue::Array(items) => {
            if items.is_empty() {
                cx.error(v.span(), path, "expected at least one status code or range");
                return None;
            }
            let mut ranges = Some(Vec::new());
            for (i, item) in items.iter().enumerate() {
                let range = status_item(cx, item, &path.index(i));
                match (&mut ranges, range) {
                    (Some(list), Some(r)) => list.push(r),
                    _ => ranges = None,
                }
            }
            ranges.map(StatusSet)
        }
        _ => status_item(cx, v, path).map(|r| StatusSet(vec![r])),
    }
}

fn status_item(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<(u16, u16)> {
    const RANGE: &str = "expected 100..=599";
    match v.get_ref() {
        DeValue::Integer(i) => match value::int_value(i).and_then(|n| u16::try_from(n).ok()) {
            Some(c) if (100..=599).contains(&c) => Some((c, c)),
            _ => {
                let message = format!("status code {i} is out of range: {RANGE}");
                cx.error(v.span(), path, message);
                None
            }
        },
        DeValue::String(s) => {
            let parse = |part: &str| part.trim().parse::<u16>().ok();
            let (lo, hi) = match s.split_once('-') {
                Some((lo, hi)) => (parse(lo), parse(hi)),
                None => (parse(s), parse(s)),
            };
            let (Some(lo), Some(hi)) = (lo, hi) else {
                let message = format!(
                    "invalid status range {:?}: expected a code like 200 or a range like \"200-399\"",
                    shorten(s)
                );
                cx.error(v.span(), path, message);
                return None;
            };
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) {
                let message = format!("status range {:?} is out of range: {RANGE}", shorten(s));
                cx.error(v.span(), path, message);
                return None;
            }
            if lo > hi {
                let message = format!(
                    "invalid status range {:?}: the start must not be greater than the end",
                    shorten(s)
                );
                cx.error(v.span(), path, message);
                return None;
            }
            Some((lo, hi))
        }
        _ => {
            type_error(
                cx,
                v,
                path,
                "a status code, a range like \"200-399\", or an array of them",
            );
            None
        }
    }
}

/// `headers`: a table of string values, in file order; names must be HTTP tokens.
fn headers(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<Vec<(String, String)>> {
    let label = format!("[{path}]");
    let t = Table::new(cx, v, path.clone(), label, &[])?;
    let mut out = Some(Vec::new());
    for (name, value) in t.entries() {
        let hpath = path.key(name.get_ref());
        let is_token = !name.get_ref().is_empty()
            && name
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
        if !is_token {
            let message = format!("invalid header name {:?}", shorten(name.get_ref()));
            cx.error(name.span(), &hpath, message);
            out = None;
        }
        let Some(text) = string(cx, value, &hpath) else {
            out = None;
            continue;
        };
        if text.contains(['\r', '\n', '\0']) {
            cx.error(
                value.span(),
                &hpath,
                "header value must not contain line breaks or NUL",
            );
            out = None;
            continue;
        }
        if let Some(list) = &mut out {
            list.push((name.get_ref().to_string(), text));
        }
    }
    out
}

fn tcp(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<TcpCheck> {
    let host = t.required(cx, "host", value::host);
    let port = t.required(cx, "port", value::port);
    Some(TcpCheck {
        host: host?,
        port: port?,
    })
}

fn listening(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<ListeningCheck> {
    let port = t.required(cx, "port", value::port);
    let protocol = t.defaulted(cx, "protocol", |cx, v, p| {
        match one_of(cx, v, p, "protocol", schema::PROTOCOLS)? {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    });
    let address = t.optional(cx, "address", value::ip_addr);
    Some(ListeningCheck {
        port: port?,
        protocol: protocol?,
        address,
    })
}

fn exec(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<ExecCheck> {
    let command = t.required(cx, "command", argv);
    let expect_exit = t.defaulted(cx, "expect_exit", |cx, v, p| {
        integer(cx, v, p, 0, 255).and_then(|n| i32::try_from(n).ok())
    });
    let stdout_contains = t.optional(cx, "stdout_contains", string);
    Some(ExecCheck {
        command: command?,
        expect_exit: expect_exit?,
        stdout_contains,
    })
}

fn schedules(cx: &mut Cx<'_>, service: &Table<'_>) -> Option<Vec<ScheduleEntry>> {
    array_of_tables(cx, service, "schedule", &schema::SCHEDULE, |cx, t| {
        schedule(cx, t).map(|schedule| ScheduleEntry { schedule })
    })
}

/// The entries of `[[OWNER.key]]`, each a table of `section` (unknown keys rejected) read
/// by `entry`. `None` when `key` holds something else than an array of tables, or when any
/// entry is invalid (every entry is still read, for its errors).
pub(super) fn array_of_tables<'a, T>(
    cx: &mut Cx<'_>,
    owner: &Table<'a>,
    key: &str,
    section: &'static Section,
    mut entry: impl FnMut(&mut Cx<'_>, &Table<'a>) -> Option<T>,
) -> Option<Vec<T>> {
    let Some(v) = owner.get(key) else {
        return Some(Vec::new());
    };
    let path = owner.path.key(key);
    let items = match v.get_ref() {
        DeValue::Array(items) => items,
        DeValue::Table(_) => {
            let message = format!(
                "expected an array of tables (write [[{path}]] with two brackets), found a table"
            );
            cx.error(v.span(), &path, message);
            return None;
        }
        _ => {
            type_error(cx, v, &path, "an array of tables");
            return None;
        }
    };
    let mut entries = Some(Vec::new());
    for (i, item) in items.iter().enumerate() {
        let label = format!("[[{path}]] entry #{}", i + 1);
        let parsed = Table::new(cx, item, path.index(i), label, &[section]).and_then(|t| {
            t.reject_unknown(cx, &no_hint);
            entry(cx, &t)
        });
        match (&mut entries, parsed) {
            (Some(list), Some(e)) => list.push(e),
            _ => entries = None,
        }
    }
    entries
}

/// When a table with `cron` (and `timezone`) or `every` fires: a schedule entry's or a
/// maintenance window's. Exactly one of `cron` and `every`; `timezone` only with `cron`.
pub(super) fn schedule(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<Schedule> {
    let cron = t.get("cron");
    let every = t.get("every");
    let timezone = t.get("timezone");
    match (cron, every) {
        (Some(_), Some(ev)) => {
            let span = t.key_span("every").unwrap_or_else(|| ev.span());
            let message = "set either `cron` or `every`, not both";
            cx.error(span, &t.path.key("every"), message);
            None
        }
        (None, None) => {
            let message = format!("{} needs `cron` or `every`", t.label);
            cx.error(t.span.clone(), &t.path, message);
            None
        }
        (Some(cv), None) => {
            let expr = t.optional(cx, "cron", string);
            let tz = t.defaulted(cx, "timezone", time_zone);
            match (expr, tz) {
                (Some(expr), Some((tz, tz_name))) => match cx.cron(&expr, tz, &tz_name) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        cx.error(
                            cv.span(),
                            &t.path.key("cron"),
                            schedule_message("cron expression", &expr, &e),
                        );
                        None
                    }
                },
                _ => None,
            }
        }
        (None, Some(ev)) => {
            if timezone.is_some() {
                let span = t.key_span("timezone").unwrap_or_else(|| ev.span());
                let message = "`timezone` applies only to `cron` schedules";
                cx.error(span, &t.path.key("timezone"), message);
            }
            match t.optional(cx, "every", positive_duration) {
                Some(d) => every_schedule(cx, d, ev, &t.path.key("every")),
                None => None,
            }
        }
    }
}

fn every_schedule(cx: &mut Cx<'_>, d: Duration, v: &Value<'_>, path: &KeyPath) -> Option<Schedule> {
    match Schedule::every(d) {
        Ok(s) => Some(s),
        Err(e) => {
            let text = match v.get_ref() {
                DeValue::String(s) => s.to_string(),
                _ => String::new(),
            };
            cx.error(v.span(), path, schedule_message("interval", &text, &e));
            None
        }
    }
}

/// The schedule's own sentence, prefixed with what was rejected unless it already says.
fn schedule_message(what: &str, text: &str, e: &vigil_core::schedule::ScheduleError) -> String {
    let reason = e.to_string();
    if reason.starts_with("invalid") {
        reason
    } else {
        format!("invalid {what} {:?}: {reason}", shorten(text))
    }
}

/// An IANA time zone name, looked up in the system's tz database.
fn time_zone(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &KeyPath,
) -> Option<(jiff::tz::TimeZone, String)> {
    let name = string(cx, v, path)?;
    // UTC needs no database (containers often have none).
    if name.eq_ignore_ascii_case("UTC") {
        return Some((jiff::tz::TimeZone::UTC, name));
    }
    match cx.time_zone(&name) {
        Some(tz) => Some((tz, name)),
        None if !cx.wants(v.span().start) => {
            cx.errors.count();
            None
        }
        None => {
            let message = match cx.suggest_zone(&name) {
                Some(near) => format!(
                    "unknown time zone {:?}; did you mean {near:?}?",
                    shorten(&name)
                ),
                None => format!(
                    "unknown time zone {:?}: expected an IANA name like \"Europe/Berlin\" or \"UTC\"",
                    shorten(&name)
                ),
            };
            cx.error(v.span(), path, message);
            None
        }
    }
}
