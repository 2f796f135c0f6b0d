//! `[fleet]`, `[fleet.keys.NAME]` and the services' `fleet_key` (checked once both are
//! known).

use std::ops::Range;

use vigil_core::fleet::{FleetBudget, FleetRules};

use super::alerts::env_name;
use super::no_hint;
use crate::model::{Fleet, FleetKey, FleetTls, OnUnreachable, PgTarget, Secret, Service};
use crate::schema;
use crate::suggest;
use crate::value::{
    self, Cx, KeyPath, Table, Value, boolean, count, nonempty_string, one_of, positive_duration,
    shorten, string,
};

/// A service's `fleet_key`, with where it was written.
pub(super) type KeyRef = (String, Range<usize>, KeyPath);

/// Reads a service table's `fleet_key` (its target is checked in [`check_refs`]).
pub(super) fn service_key(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<KeyRef> {
    let v = t.get("fleet_key")?;
    let path = t.path.key("fleet_key");
    let name = nonempty_string(cx, v, &path)?;
    Some((name, v.span(), path))
}

/// `[fleet]`: `Some(None)` when absent.
pub(super) fn fleet(cx: &mut Cx<'_>, top: &Table<'_>) -> Option<Option<Fleet>> {
    let Some(v) = top.get("fleet") else {
        return Some(None);
    };
    let path = KeyPath::default().key("fleet");
    let t = Table::new(cx, v, path, "[fleet]".to_owned(), &[&schema::FLEET])?;
    t.reject_unknown(cx, &|key| {
        (key == "password").then(|| {
            "`password` is not taken in [fleet]: put the password in a file (`password_file`) or an environment variable (`password_env`), so it is never shown".to_owned()
        })
    });
    let postgres = t.required(cx, "postgres", pg_url);
    let file = t.optional(cx, "password_file", value::path);
    let env = t.optional(cx, "password_env", env_name);
    let password = match (t.key_span("password_file"), t.key_span("password_env")) {
        (Some(_), Some(span)) => {
            cx.error(
                span,
                &t.path.key("password_env"),
                "set either `password_file` or `password_env`, not both",
            );
            None
        }
        (Some(_), None) => file.map(|p| Some(Secret::File(p))),
        (None, Some(_)) => env.map(|e| Some(Secret::Env(e))),
        (None, None) => Some(None),
    };
    let host = match t.get("host") {
        Some(v) => {
            let p = t.path.key("host");
            nonempty_string(cx, v, &p)
        }
        None => Some(default_host()),
    };
    let lease_ttl = t.defaulted(cx, "lease_ttl", positive_duration);
    let timeout = t.defaulted(cx, "timeout", positive_duration);
    let on_unreachable = t.defaulted(cx, "on_unreachable", |cx, v, p| {
        match one_of(cx, v, p, "on_unreachable", schema::ON_UNREACHABLE)? {
            "local" => Some(OnUnreachable::Local),
            "deny" => Some(OnUnreachable::Deny),
            _ => None,
        }
    });
    let ca_file = t.optional(cx, "ca_file", value::path);
    let tls_flag = t.optional(cx, "tls", boolean);
    let tls = match (tls_flag, t.key_span("ca_file"), ca_file) {
        (Some(false), Some(span), _) => {
            cx.error(
                span,
                &t.path.key("ca_file"),
                "`ca_file` needs TLS: remove `tls = false`",
            );
            None
        }
        (_, Some(_), Some(ca)) => Some(Some(FleetTls { ca_file: Some(ca) })),
        (_, Some(_), None) => None,
        (Some(true), None, _) => Some(Some(FleetTls { ca_file: None })),
        _ => Some(None),
    };
    if let (Some(ttl), Some(timeout), Some(v)) = (lease_ttl, timeout, t.get("timeout"))
        && timeout >= ttl
    {
        let message = format!(
            "must be shorter than `lease_ttl` ({}), found {}: a lease is renewed within `timeout`, a third of `lease_ttl` apart",
            vigil_core::format_duration(ttl),
            vigil_core::format_duration(timeout)
        );
        cx.error(v.span(), &t.path.key("timeout"), message);
    }
    let keys = keys(cx, &t);
    Some(Some(Fleet {
        postgres: postgres?,
        password: password?,
        host: host?,
        lease_ttl: lease_ttl?,
        timeout: timeout?,
        on_unreachable: on_unreachable?,
        tls: tls?,
        keys: keys?,
    }))
}

fn keys(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<Vec<FleetKey>> {
    let Some(v) = t.get("keys") else {
        return Some(Vec::new());
    };
    let path = t.path.key("keys");
    let all = Table::new(cx, v, path, "[fleet.keys]".to_owned(), &[])?;
    let mut out = Some(Vec::new());
    for (name, v) in all.entries() {
        let path = all.path.key(name.get_ref());
        let valid = super::name_ok(cx, "fleet key", name, &path);
        let label = format!("[{path}]");
        let key = Table::new(cx, v, path, label, &[&schema::FLEET_KEY])
            .and_then(|k| rules(cx, &k))
            .filter(|_| valid);
        match (&mut out, key) {
            (Some(list), Some(rules)) => list.push(FleetKey {
                name: name.get_ref().to_string(),
                rules,
            }),
            _ => out = None,
        }
    }
    out
}

fn rules(cx: &mut Cx<'_>, t: &Table<'_>) -> Option<FleetRules> {
    t.reject_unknown(cx, &no_hint);
    let max_concurrent = t.defaulted(cx, "max_concurrent", count);
    let max_restarts = t.optional(cx, "max_restarts", count);
    let window = t.optional(cx, "window", positive_duration);
    let min_healthy = match t.get("min_healthy") {
        Some(_) => t.optional(cx, "min_healthy", count).map(Some),
        None => Some(None),
    };
    let budget = match (t.key_span("max_restarts"), t.key_span("window")) {
        (Some(_), Some(_)) => match (max_restarts, window) {
            (Some(max_restarts), Some(window)) => Some(Some(FleetBudget {
                max_restarts,
                window,
            })),
            _ => None,
        },
        (Some(span), None) => {
            let message = format!("`max_restarts` needs `window` in {}", t.label);
            cx.error(span, &t.path.key("max_restarts"), message);
            None
        }
        (None, Some(span)) => {
            let message = format!("`window` needs `max_restarts` in {}", t.label);
            cx.error(span, &t.path.key("window"), message);
            None
        }
        (None, None) => Some(None),
    };
    if let (Some(0), Some(v)) = (max_concurrent, t.get("max_concurrent")) {
        cx.error(
            v.span(),
            &t.path.key("max_concurrent"),
            "must be at least 1 (0 would never restart anything)",
        );
        return None;
    }
    if let (Some(Some(0)), Some(v)) = (min_healthy, t.get("min_healthy")) {
        cx.error(
            v.span(),
            &t.path.key("min_healthy"),
            "must be at least 1 (leave it out for no minimum)",
        );
        return None;
    }
    Some(FleetRules {
        max_concurrent: max_concurrent?,
        budget: budget?,
        min_healthy: min_healthy?,
    })
}

/// Each service's `fleet_key` names a `[fleet.keys.NAME]` of a `[fleet]` table.
pub(super) fn check_refs(
    cx: &mut Cx<'_>,
    fleet: Option<&Fleet>,
    services: &mut [Service],
    refs: Vec<(usize, KeyRef)>,
) {
    for (i, (name, span, path)) in refs {
        let Some(fleet) = fleet else {
            cx.error(
                span,
                &path,
                format!(
                    "fleet_key {:?} needs a [fleet] table (with [fleet.keys.{}])",
                    shorten(&name),
                    shorten(&name)
                ),
            );
            continue;
        };
        if fleet.key(&name).is_none() {
            let known = fleet.keys.iter().map(|k| k.name.as_str());
            let message = match suggest::closest(&name, known) {
                Some(near) => format!(
                    "unknown fleet key {:?}; did you mean {near:?}? (define it as [fleet.keys.{}])",
                    shorten(&name),
                    shorten(&name)
                ),
                None => format!(
                    "unknown fleet key {:?}: define it as [fleet.keys.{}]",
                    shorten(&name),
                    shorten(&name)
                ),
            };
            cx.error(span, &path, message);
            continue;
        }
        if let Some(s) = services.get_mut(i) {
            s.fleet_key = Some(name);
        }
    }
}

/// `postgres://USER@HOST[:PORT]/DATABASE` (or `postgresql://`), no password, no query.
fn pg_url(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Option<PgTarget> {
    let s = string(cx, v, path)?;
    match parse_pg_url(&s) {
        Ok(target) => Some(target),
        Err(why) => {
            cx.error(v.span(), path, why);
            None
        }
    }
}

pub(crate) fn parse_pg_url(s: &str) -> Result<PgTarget, String> {
    let shape = "expected `postgres://USER@HOST[:PORT]/DATABASE`";
    let rest = s
        .strip_prefix("postgres://")
        .or_else(|| s.strip_prefix("postgresql://"))
        .ok_or_else(|| format!("{shape}, found {:?}", shorten(s)))?;
    if rest.contains('?') {
        return Err(format!(
            "{shape}: no query parameters (TLS is `tls` / `ca_file`)"
        ));
    }
    let (authority, database) = rest
        .split_once('/')
        .ok_or_else(|| format!("{shape}: the database name is missing"))?;
    let (user, hostport) = authority
        .rsplit_once('@')
        .ok_or_else(|| format!("{shape}: the user name is missing"))?;
    if user.contains(':') {
        // Never echo it: it is a password.
        return Err(
            "the URL holds a password: put it in `password_file` or `password_env` instead, so it is never shown"
                .to_owned(),
        );
    }
    if user.is_empty() || database.is_empty() || database.contains('/') {
        return Err(format!("{shape}, found {:?}", shorten(s)));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{shape}: unclosed `[` in the host"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("{shape}, found {:?}", shorten(s))),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{shape}: the host is missing"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{shape}: port {:?} is not a port number", shorten(p)))?,
        None => 5432,
    };
    Ok(PgTarget {
        user: user.to_owned(),
        host: host.to_owned(),
        port,
        database: database.to_owned(),
    })
}

/// The machine's host name, for `[fleet] host`.
fn default_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_pg_url("postgres://vigil@10.0.0.1:5433/fleet").unwrap();
        assert_eq!(t.to_string(), "postgres://vigil@10.0.0.1:5433/fleet");
        let t = parse_pg_url("postgresql://vigil@db/fleet").unwrap();
        assert_eq!(t.port, 5432);
        let t = parse_pg_url("postgres://vigil@[::1]:6000/fleet").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 6000));
        let e = parse_pg_url("postgres://vigil:hunter2@db/fleet").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(parse_pg_url("postgres://db/fleet").is_err());
        assert!(parse_pg_url("postgres://vigil@db/fleet?sslmode=require").is_err());
    }
}
