//! `[alerts.NAME]` channels and the services' `alerts = [...]` routes.
//!
//! Owns the alert keys' meaning: which secret key groups exist (`url`/`url_file`/`url_env`
//! and friends, exactly one of each group), the email channel's auth pairing and port
//! default, and the cross-reference from a service's `alerts` to the channels. Secrets given
//! in a file or an environment variable are read when used, never here; an inline secret is
//! never echoed in a message.

use std::collections::HashSet;

use toml::de::DeValue;

use super::{headers, name_ok};
use crate::model::{
    AlertChannel, AlertEvent, AlertRoute, ChannelKind, EmailChannel, EventSet, ExecChannel, Secret,
    SlackChannel, SmtpTls, WebhookChannel,
};
use crate::schema::{self, Section};
use crate::value::{
    self, Cx, KeyPath, Table, Value, argv, count, duration, integer, one_of, positive_duration,
    shorten, string, type_error,
};

/// The channel names of `[alerts]`, valid or not (services may name any of them; an
/// invalid channel is reported on its own), sorted and as a set.
pub(super) struct ChannelNames {
    list: Vec<String>,
    set: HashSet<String>,
}

pub(super) fn channel_names(top: &Table<'_>) -> ChannelNames {
    let list: Vec<String> = match top.get("alerts").map(|v| v.get_ref()) {
        Some(DeValue::Table(map)) => map.keys().map(|k| k.get_ref().to_string()).collect(),
        _ => Vec::new(),
    };
    let set = list.iter().cloned().collect();
    ChannelNames { list, set }
}

/// At most `n` names, joined, with how many more there are.
pub(crate) fn some_names<'a>(names: impl ExactSizeIterator<Item = &'a str>, n: usize) -> String {
    let total = names.len();
    let shown: Vec<&str> = names.take(n).collect();
    if total > n {
        format!("{}, ... ({} more)", shown.join(", "), total - n)
    } else {
        shown.join(", ")
    }
}

pub(super) fn alerts(cx: &mut Cx<'_>, top: &Table<'_>) -> Option<Vec<AlertChannel>> {
    let Some(v) = top.get("alerts") else {
        return Some(Vec::new());
    };
    let path = KeyPath::default().key("alerts");
    let all = Table::new(cx, v, path, "[alerts]".to_owned(), &[])?;
    let mut channels = Some(Vec::new());
    for (name, v) in all.entries() {
        let channel = channel(cx, &all.path, name, v);
        match (&mut channels, channel) {
            (Some(list), Some(c)) => list.push(c),
            _ => channels = None,
        }
    }
    channels
}

fn kind(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &KeyPath,
) -> Option<(&'static str, &'static Section)> {
    let s = string(cx, v, path)?;
    if let Some((name, section)) = schema::ALERT_KINDS.iter().find(|(n, _)| *n == s) {
        return Some((name, section));
    }
    let names: Vec<&str> = schema::ALERT_KINDS.iter().map(|(n, _)| *n).collect();
    cx.error(
        v.span(),
        path,
        value::unknown_word("alert kind", &s, &names, &[]),
    );
    None
}

fn channel(
    cx: &mut Cx<'_>,
    parent: &KeyPath,
    name: &toml::Spanned<toml::de::DeString<'_>>,
    v: &Value<'_>,
) -> Option<AlertChannel> {
    let path = parent.key(name.get_ref());
    let name_valid = name_ok(cx, "alert channel", name, &path);
    let label = format!("[{path}]");
    let mut t = Table::new(cx, v, path, label, &[&schema::ALERT])?;
    let kind = t.required(cx, "kind", kind);
    if let Some((kind_name, section)) = kind {
        t.add_section(section);
        t.reject_unknown(cx, &|key| {
            super::other_kind_hint("alert kind", kind_name, schema::ALERT_KINDS, key)
        });
    }
    let events = t.optional(cx, "events", events);
    let events_ok = t.get("events").is_none() || events.is_some();
    let repeat = t.defaulted(cx, "repeat", duration);
    let group_wait = t.defaulted(cx, "group_wait", duration);
    let timeout = t.defaulted(cx, "timeout", positive_duration);
    let retries = t.defaulted(cx, "retries", count);
    let retry_delay = t.defaulted(cx, "retry_delay", positive_duration);
    let queue_size = t.defaulted(cx, "queue_size", |cx, v, p| {
        integer(cx, v, p, 1, 1_000_000).and_then(|n| usize::try_from(n).ok())
    });
    let kind = match kind {
        Some(("webhook", _)) => webhook(cx, &t).map(ChannelKind::Webhook),
        Some(("slack", _)) => slack(cx, &t).map(ChannelKind::Slack),
        Some(("email", _)) => email(cx, &t).map(ChannelKind::Email),
        Some(("exec", _)) => t
            .required(cx, "command", argv)
            .map(|command| ChannelKind::Exec(ExecChannel { command })),
        _ => None,
    };
    if !name_valid || !events_ok {
        return None;
    }
    Some(AlertChannel {
        name: name.get_ref().to_string(),
        kind: kind?,
        events: events.unwrap_or_else(EventSet::default_events),
        repeat: repeat?,
        group_wait: group_wait?,
        timeout: timeout?,
        retries: retries?,
        retry_delay: retry_delay?,
        queue_size: queue_size?,
    })
}

/// `events = ["given-up", "failing"]`: at least one known event name.
fn events(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<EventSet> {
    let DeValue::Array(items) = v.get_ref() else {
        type_error(
            cx,
            v,
            path,
            "an array of event names like [\"given-up\", \"failing\"]",
        );
        return None;
    };
    if items.is_empty() {
        let message = format!(
            "expected at least one event (known events: {})",
            schema::ALERT_EVENTS.join(", ")
        );
        cx.error(v.span(), path, message);
        return None;
    }
    let mut set = Some(EventSet::default());
    for (i, item) in items.iter().enumerate() {
        let parsed = one_of(
            cx,
            item,
            &path.index(i),
            "alert event",
            schema::ALERT_EVENTS,
        )
        .and_then(AlertEvent::parse);
        match (&mut set, parsed) {
            (Some(s), Some(e)) => s.insert(e),
            _ => set = None,
        }
    }
    set
}

/// One secret group: `inline` | `file` | `env`. `Some(None)` when none is set and the
/// group is optional. `check_inline` validates an inline value (its message must not echo
/// the value).
fn secret(
    cx: &mut Cx<'_>,
    t: &Table<'_>,
    [inline, file, env]: [&str; 3],
    required: bool,
    check_inline: fn(&str) -> Result<(), String>,
) -> Option<Option<Secret>> {
    let inline_value = t.optional(cx, inline, |cx, v, p| match v.get_ref() {
        DeValue::String(s) if s.is_empty() => {
            cx.error(
                v.span(),
                p,
                format!("must not be empty (or use `{file}` / `{env}`)"),
            );
            None
        }
        DeValue::String(s) => match check_inline(s) {
            Ok(()) => Some(s.to_string()),
            Err(reason) => {
                cx.error(v.span(), p, reason);
                None
            }
        },
        DeValue::Array(_) | DeValue::Table(_) => {
            type_error(cx, v, p, "a string");
            None
        }
        _ => {
            // Only the type: a number written as a secret is still a secret.
            cx.error(v.span(), p, "expected a string (quote the value)");
            None
        }
    });
    let file_value = t.optional(cx, file, value::path);
    let env_value = t.optional(cx, env, env_name);
    let set: Vec<&str> = [inline, file, env]
        .into_iter()
        .filter(|k| t.key_span(k).is_some())
        .collect();
    match set.as_slice() {
        [] if required => {
            let message = format!(
                "missing required key `{inline}` (or `{file}`, or `{env}`) in {}",
                t.label
            );
            cx.error(t.span.clone(), &t.path.key(inline), message);
            None
        }
        [] => Some(None),
        [one] => {
            if *one == inline {
                inline_value.map(|s| Some(Secret::Inline(s)))
            } else if *one == file {
                file_value.map(|p| Some(Secret::File(p)))
            } else {
                env_value.map(|n| Some(Secret::Env(n)))
            }
        }
        [first, second, ..] => {
            let span = t.key_span(second).unwrap_or_else(|| t.span.clone());
            let message = format!(
                "set only one of `{inline}`, `{file}` and `{env}` (found `{first}` and `{second}`)"
            );
            cx.error(span, &t.path.key(second), message);
            None
        }
    }
}

/// An environment variable name: letters, digits and `_`, not starting with a digit.
pub(super) fn env_name(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<String> {
    let s = string(cx, v, path)?;
    let valid = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        let message = format!(
            "invalid environment variable name {:?}: use letters, digits and '_', not starting with a digit",
            shorten(&s)
        );
        cx.error(v.span(), path, message);
        return None;
    }
    Some(s)
}

fn any_value(_: &str) -> Result<(), String> {
    Ok(())
}

/// An inline webhook URL: http(s), with a host. The message never shows the URL (it may
/// carry a token).
fn webhook_url(s: &str) -> Result<(), String> {
    value::check_http_url(s).map_err(|reason| format!("invalid URL: {reason}"))
}

fn webhook(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<WebhookChannel> {
    let url = secret(cx, t, ["url", "url_file", "url_env"], true, webhook_url);
    let headers = t.optional(cx, "headers", headers);
    let secret = secret(
        cx,
        t,
        ["secret", "secret_file", "secret_env"],
        false,
        any_value,
    );
    let reserved = headers.as_ref().and_then(|h| {
        h.iter()
            .find(|(n, _)| {
                n.eq_ignore_ascii_case("content-type")
                    || n.eq_ignore_ascii_case("x-vigil-signature")
            })
            .map(|(n, _)| n.clone())
    });
    if let Some(name) = reserved {
        let span = t.key_span("headers").unwrap_or_else(|| t.span.clone());
        let message = format!("header `{name}` is set by Vigil and cannot be overridden");
        cx.error(span, &t.path.key("headers").key(&name), message);
        return None;
    }
    Some(WebhookChannel {
        url: url??,
        headers: headers.unwrap_or_default(),
        secret: secret?,
    })
}

fn slack(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<SlackChannel> {
    let url = secret(
        cx,
        t,
        ["webhook_url", "webhook_url_file", "webhook_url_env"],
        true,
        webhook_url,
    );
    Some(SlackChannel { webhook_url: url?? })
}

fn email(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<EmailChannel> {
    let smtp_host = t.required(cx, "smtp_host", value::host);
    let tls = t.defaulted(cx, "tls", |cx, v, p| {
        match one_of(cx, v, p, "tls mode", schema::SMTP_TLS)? {
            "starttls" => Some(SmtpTls::StartTls),
            "implicit" => Some(SmtpTls::Implicit),
            "none" => Some(SmtpTls::None),
            _ => None,
        }
    });
    let port = t.optional(cx, "smtp_port", value::port);
    let port_ok = t.get("smtp_port").is_none() || port.is_some();
    let username = t.optional(cx, "username", value::nonempty_string);
    let password = secret(
        cx,
        t,
        ["password", "password_file", "password_env"],
        false,
        any_value,
    );
    let from = t.required(cx, "from", mailbox);
    let to = t.required(cx, "to", mailboxes);
    let ca_file = t.optional(cx, "ca_file", value::path);
    let auth = match (t.key_span("username"), &password) {
        (Some(_), Some(Some(secret))) => username.map(|u| Some((u, secret.clone()))),
        (Some(span), Some(None)) => {
            let message = format!(
                "`username` needs a password in {}: set `password`, `password_file` or `password_env`",
                t.label
            );
            cx.error(span, &t.path.key("username"), message);
            None
        }
        (None, Some(Some(_))) => {
            let key = ["password", "password_file", "password_env"]
                .into_iter()
                .find(|k| t.key_span(k).is_some())
                .unwrap_or("password");
            let span = t.key_span(key).unwrap_or_else(|| t.span.clone());
            let message = format!("`{key}` needs `username` in {}", t.label);
            cx.error(span, &t.path.key(key), message);
            None
        }
        (None, Some(None)) => Some(None),
        (_, None) => None,
    };
    if !port_ok {
        return None;
    }
    let tls = tls?;
    Some(EmailChannel {
        smtp_host: smtp_host?,
        smtp_port: port.unwrap_or_else(|| tls.default_port()),
        tls,
        auth: auth?,
        from: from?,
        to: to?,
        ca_file,
    })
}

/// `addr@host` or `Display Name <addr@host>`.
pub(crate) fn check_mailbox(s: &str) -> Result<(), &'static str> {
    if s.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters");
    }
    let addr = match (s.rfind('<'), s.trim_end().strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        (None, None) => s.trim(),
        _ => return Err("unbalanced '<' '>'"),
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Err("expected an address like \"ops@example.com\" or \"Ops <ops@example.com>\"");
    };
    let bad = |part: &str| {
        part.is_empty()
            || part
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | ',' | ';' | '"'))
    };
    if bad(local) || bad(domain) || local.contains('@') {
        return Err("expected an address like \"ops@example.com\" or \"Ops <ops@example.com>\"");
    }
    Ok(())
}

fn mailbox(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<String> {
    let s = string(cx, v, path)?;
    match check_mailbox(&s) {
        Ok(()) => Some(s),
        Err(reason) => {
            let message = format!("invalid mailbox {:?}: {reason}", shorten(&s));
            cx.error(v.span(), path, message);
            None
        }
    }
}

fn mailboxes(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<Vec<String>> {
    let items = match v.get_ref() {
        DeValue::Array(items) => items,
        DeValue::String(s) => {
            let message = format!(
                "expected an array of mailboxes, found a string {:?} (write [\"ops@example.com\"])",
                shorten(s)
            );
            cx.error(v.span(), path, message);
            return None;
        }
        _ => {
            type_error(cx, v, path, "an array of mailboxes");
            return None;
        }
    };
    if items.is_empty() {
        cx.error(v.span(), path, "expected at least one recipient");
        return None;
    }
    let mut out = Some(Vec::new());
    for (i, item) in items.iter().enumerate() {
        match (&mut out, mailbox(cx, item, &path.index(i))) {
            (Some(list), Some(m)) => list.push(m),
            _ => out = None,
        }
    }
    out
}

/// `[services.NAME] alerts = ["ops-slack"]`: names of `[alerts.NAME]` tables.
pub(super) fn route(
    cx: &mut Cx<'_>,
    v: &Value<'_>,
    path: &KeyPath,
    known: &ChannelNames,
) -> Option<AlertRoute> {
    let DeValue::Array(items) = v.get_ref() else {
        type_error(
            cx,
            v,
            path,
            "an array of alert channel names like [\"ops-slack\"]",
        );
        return None;
    };
    let mut names = Some(Vec::new());
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = path.index(i);
        let Some(name) = string(cx, item, &ipath) else {
            names = None;
            continue;
        };
        if !known.set.contains(&name) {
            if cx.wants(item.span().start) {
                let message = match cx.suggest(&name, known.list.iter().map(String::as_str)) {
                    Some(near) => format!(
                        "unknown alert channel {:?}; did you mean {near:?}?",
                        shorten(&name)
                    ),
                    None if known.list.is_empty() => format!(
                        "unknown alert channel {:?}: no [alerts.NAME] table is defined",
                        shorten(&name)
                    ),
                    None => format!(
                        "unknown alert channel {:?} (defined: {})",
                        shorten(&name),
                        some_names(known.list.iter().map(String::as_str), 10)
                    ),
                };
                cx.error(item.span(), &ipath, message);
            } else {
                cx.errors.count();
            }
            names = None;
            continue;
        }
        if let Some(list) = &mut names
            && seen.insert(name.clone())
        {
            list.push(name);
        }
    }
    names.map(AlertRoute::Only)
}
