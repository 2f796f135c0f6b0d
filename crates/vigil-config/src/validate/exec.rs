//! The keys of `driver = "exec"` (SPEC §4): command, environment, identity, outputs,
//! restart policy, stop and readiness settings, the watchdog.

use toml::de::DeValue;
use vigil_core::{RestartPolicy, Signal, SuccessStatus};

use crate::model::{ExecDriver, OnDaemonExit, OutputTarget, Ready};
use crate::schema;
use crate::suggest;
use crate::value::{
    self, Cx, KeyPath, Table, Value, argv, count, duration, nonempty_string, one_of,
    positive_duration, shorten, string, type_error,
};

pub(super) fn exec_driver(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<ExecDriver> {
    let command = t.required(cx, "command", argv);
    let cwd = t.optional(cx, "cwd", value::path);
    let env = t.optional(cx, "env", env_table);
    let user = t.optional(cx, "user", nonempty_string);
    let group = t.optional(cx, "group", nonempty_string);
    let stdout = t.defaulted(cx, "stdout", output_target);
    let stderr = t.defaulted(cx, "stderr", output_target);
    let log_max_size = t.defaulted(cx, "log_max_size", value::size);
    let log_keep = t.defaulted(cx, "log_keep", count);
    let restart = t.defaulted(cx, "restart", |cx, v, p| {
        one_of(cx, v, p, "restart policy", schema::RESTART_POLICIES).and_then(RestartPolicy::parse)
    });
    let restart_delay = t.defaulted(cx, "restart_delay", duration);
    let success = t.optional(cx, "success_exit_status", success_exit_status);
    let stop_signal = t.defaulted(cx, "stop_signal", signal);
    let stop_timeout = t.defaulted(cx, "stop_timeout", positive_duration);
    let ready = t.defaulted(cx, "ready", |cx, v, p| {
        match one_of(cx, v, p, "ready mode", schema::READY_MODES)? {
            "started" => Some(Ready::Started),
            "notify" => Some(Ready::Notify),
            _ => None,
        }
    });
    let start_timeout = t.defaulted(cx, "start_timeout", positive_duration);
    let watchdog = t.optional(cx, "watchdog", positive_duration);
    let watchdog_signal = t.defaulted(cx, "watchdog_signal", signal);
    let on_daemon_exit = t.defaulted(cx, "on_daemon_exit", |cx, v, p| {
        match one_of(cx, v, p, "on_daemon_exit", schema::ON_DAEMON_EXIT)? {
            "stop" => Some(OnDaemonExit::Stop),
            "leave" => Some(OnDaemonExit::Leave),
            _ => None,
        }
    });
    if t.key_span("watchdog_signal").is_some() && watchdog.is_none() && t.get("watchdog").is_none()
    {
        let span = t
            .key_span("watchdog_signal")
            .unwrap_or_else(|| t.span.clone());
        cx.error(
            span,
            &t.path.key("watchdog_signal"),
            "`watchdog_signal` needs `watchdog` (the interval the process must ping within)",
        );
        return None;
    }
    let log_max_size = log_max_size.and_then(|n| u64::try_from(n).ok());
    Some(ExecDriver {
        command: command?,
        cwd,
        env: env.unwrap_or_default(),
        user,
        group,
        stdout: stdout?,
        stderr: stderr?,
        log_max_size: log_max_size?,
        log_keep: log_keep?,
        restart: restart?,
        restart_delay: restart_delay?,
        success_exit_status: success.unwrap_or_default(),
        stop_signal: stop_signal?,
        stop_timeout: stop_timeout?,
        ready: ready?,
        start_timeout: start_timeout?,
        watchdog,
        watchdog_signal: watchdog_signal?,
        on_daemon_exit: on_daemon_exit?,
    })
}

/// `env`: a table of strings; names must be non-empty and free of `=` and NUL.
fn env_table(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<Vec<(String, String)>> {
    let label = format!("[{path}]");
    let t = Table::new(cx, v, path.clone(), label, &[])?;
    let mut out = Some(Vec::new());
    for (name, value) in t.entries() {
        let epath = path.key(name.get_ref());
        let bad_name = name.get_ref().is_empty() || name.get_ref().contains(['=', '\0']);
        if bad_name {
            let message = format!(
                "invalid environment variable name {:?}: must be non-empty, without '=' or NUL",
                shorten(name.get_ref())
            );
            cx.error(name.span(), &epath, message);
            out = None;
        }
        let text = match value.get_ref() {
            DeValue::String(_) => string(cx, value, &epath),
            DeValue::Integer(i) => Some(i.to_string()),
            DeValue::Boolean(b) => Some(b.to_string()),
            _ => {
                type_error(cx, value, &epath, "a string");
                None
            }
        };
        let Some(text) = text else {
            out = None;
            continue;
        };
        if text.contains('\0') {
            cx.error(
                value.span(),
                &epath,
                "value must not contain NUL characters",
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

/// `"log"`, `"null"` or `{ file = "PATH" }`.
fn output_target(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<OutputTarget> {
    match v.get_ref() {
        DeValue::String(s) => match s.as_ref() {
            "log" => Some(OutputTarget::Log),
            "null" => Some(OutputTarget::Null),
            other => {
                let message = if other.contains('/') {
                    format!(
                        "expected \"log\", \"null\" or {{ file = {:?} }}, found a path string: write it as {{ file = {:?} }}",
                        shorten(other),
                        shorten(other)
                    )
                } else {
                    value::unknown_word("output", other, &["log", "null"], &[])
                };
                cx.error(v.span(), path, message);
                None
            }
        },
        DeValue::Table(_) => {
            let label = format!("[{path}]");
            let t = Table::new(cx, v, path.clone(), label, &[&OUTPUT_FILE])?;
            t.reject_unknown(cx, &|_| None);
            t.required(cx, "file", value::path).map(OutputTarget::File)
        }
        _ => {
            type_error(cx, v, path, "\"log\", \"null\" or { file = \"PATH\" }");
            None
        }
    }
}

/// The one key of an output table (kept out of the reference's section list).
static OUTPUT_FILE: schema::Section = schema::Section {
    id: "output-file",
    header: "{ file = ... }",
    also: &[],
    applies: None,
    doc: "",
    keys: &[schema::KeyDoc {
        key: "file",
        ty: schema::Ty::Path,
        default: schema::Dflt::Required,
        doc: "The file output is appended to.",
    }],
    planned: &[],
};

/// A signal name (`"SIGTERM"`, `"TERM"`) or number.
fn signal(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<Signal> {
    let text = match v.get_ref() {
        DeValue::Integer(i) => i.to_string(),
        DeValue::String(s) => s.to_string(),
        _ => {
            type_error(cx, v, path, "a signal name like \"SIGTERM\"");
            return None;
        }
    };
    match Signal::parse(&text) {
        Some(s) => Some(s),
        None => {
            let message = match suggest::closest(&text.to_ascii_uppercase(), Signal::names()) {
                Some(near) => format!(
                    "unknown signal {:?}; did you mean {near:?}?",
                    shorten(&text)
                ),
                None => format!(
                    "unknown signal {:?}: expected a name like \"SIGTERM\" or a number 1-64",
                    shorten(&text)
                ),
            };
            cx.error(v.span(), path, message);
            None
        }
    }
}

/// `success_exit_status = [75, "SIGUSR1"]`.
fn success_exit_status(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<SuccessStatus> {
    let DeValue::Array(items) = v.get_ref() else {
        type_error(cx, v, path, "an array of exit codes and signal names");
        return None;
    };
    let mut out = Some(SuccessStatus::default());
    for (i, item) in items.iter().enumerate() {
        let ipath = path.index(i);
        match item.get_ref() {
            DeValue::Integer(_) => {
                let code =
                    value::integer(cx, item, &ipath, 0, 255).and_then(|n| i32::try_from(n).ok());
                match (code, &mut out) {
                    (Some(c), Some(s)) => s.codes.push(c),
                    _ => out = None,
                }
            }
            DeValue::String(_) => match (signal(cx, item, &ipath), &mut out) {
                (Some(sig), Some(s)) => s.signals.push(sig),
                _ => out = None,
            },
            _ => {
                type_error(cx, item, &ipath, "an exit code (0-255) or a signal name");
                out = None;
            }
        }
    }
    out
}
