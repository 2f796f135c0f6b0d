//! `[groups.NAME]` and the service keys that refer across services (`after`,
//! `ready_check`, `on_failure = "restart-group"`): validated once every service is known.

use std::ops::Range;

use toml::de::DeValue;
use vigil_core::ServiceName;
use vigil_core::guard::GuardPolicy;

use super::{Inherit, guard, name_ok};
use vigil_core::CheckName;

use crate::model::{Group, OnFailure, Service};
use crate::schema;
use crate::suggest;
use crate::value::{Cx, KeyPath, Table, Value, nonempty_string, positive_duration, type_error};

/// What a service's table said about groups, with spans for errors found later.
#[derive(Default)]
pub(super) struct ServiceRefs {
    pub after: Vec<(String, Range<usize>, KeyPath)>,
    pub ready_check: Option<(String, Range<usize>, KeyPath)>,
    /// Checks with `on_failure = "restart-group"`: the value's span and path.
    pub restart_group: Vec<(Range<usize>, KeyPath)>,
}

/// Reads `after` and `ready_check` from a service table (their targets are checked in
/// [`groups`]). (A service-level `group` key would clash with the exec driver's Unix
/// group: membership is listed in `[groups.NAME] members`.)
pub(super) fn service_refs(cx: &mut Cx<'_>, t: &Table<'_>) -> ServiceRefs {
    let mut refs = ServiceRefs::default();
    if let Some(v) = t.get("after") {
        let path = t.path.key("after");
        refs.after = names(cx, v, &path);
    }
    if let Some(v) = t.get("ready_check") {
        let path = t.path.key("ready_check");
        if let Some(s) = nonempty_string(cx, v, &path) {
            refs.ready_check = Some((s, v.span(), path));
        }
    }
    refs
}

/// An array of names, each with its span.
fn names(cx: &mut Cx<'_>, v: &Value<'_>, path: &KeyPath) -> Vec<(String, Range<usize>, KeyPath)> {
    let DeValue::Array(items) = v.get_ref() else {
        type_error(cx, v, path, "an array of service names like [\"db\"]");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = path.index(i);
        if let Some(s) = nonempty_string(cx, item, &ipath) {
            out.push((s, item.span(), ipath));
        }
    }
    out
}

fn unknown_service(name: &str, services: &[Service]) -> String {
    let known = services.iter().map(|s| s.name.as_str());
    match suggest::closest(name, known) {
        Some(near) => format!("no service named `{name}`; did you mean `{near}`?"),
        None => format!("no service named `{name}`"),
    }
}

/// Parses `[groups.*]`, resolves membership and order, and fills in each member's
/// `after`/`ready_check`. Reports every cross-reference error at its value.
pub(super) fn groups(
    cx: &mut Cx<'_>,
    top: &Table<'_>,
    services: &mut [Service],
    refs: &[ServiceRefs],
    default_guard: Option<&GuardPolicy>,
) -> Option<Vec<Group>> {
    let mut ok = true;
    let mut groups: Vec<(Group, Range<usize>, KeyPath)> = Vec::new();
    if let Some(v) = top.get("groups") {
        let path = KeyPath::default().key("groups");
        let all = Table::new(cx, v, path, "[groups]".to_owned(), &[])?;
        for (name, gv) in all.entries() {
            let gpath = all.path.key(name.get_ref());
            if !name_ok(cx, "group", name, &gpath) {
                ok = false;
                continue;
            }
            let label = format!("[{gpath}]");
            let Some(t) = Table::new(cx, gv, gpath.clone(), label, &[&schema::GROUP]) else {
                ok = false;
                continue;
            };
            t.reject_unknown(cx, &|_| None);
            let members = match t.get("members") {
                Some(mv) => names(cx, mv, &gpath.key("members")),
                None => Vec::new(),
            };
            let guard = match t.get("guard") {
                Some(gv) => {
                    let p = gpath.key("guard");
                    let label = format!("[{p}]");
                    Table::new(cx, gv, p, label, &[&schema::GUARD])
                        .and_then(|g| guard(cx, &g, Inherit::From(default_guard)))
                }
                None => default_guard.cloned(),
            };
            let ready_timeout = t.defaulted(cx, "ready_timeout", positive_duration);
            let (Some(guard), Some(ready_timeout)) = (guard, ready_timeout) else {
                ok = false;
                continue;
            };
            let mut group = Group {
                name: ServiceName::new(name.get_ref().as_ref()),
                members: Vec::new(),
                guard,
                ready_timeout,
            };
            for (member, span, mpath) in members {
                match services.iter().find(|s| s.name.as_str() == member) {
                    None => {
                        cx.error(span, &mpath, unknown_service(&member, services));
                        ok = false;
                    }
                    Some(s) if matches!(s.driver, crate::model::DriverSpec::Exec(_)) => {
                        cx.error(
                            span,
                            &mpath,
                            format!(
                                "`{member}` uses driver = \"exec\": exec services cannot be restart-group members yet (their supervisor restarts them on exit)"
                            ),
                        );
                        ok = false;
                    }
                    Some(s) if group.members.contains(&s.name) => {
                        cx.error(span, &mpath, format!("`{member}` is listed twice"));
                        ok = false;
                    }
                    Some(s) => group.members.push(s.name.clone()),
                }
            }
            groups.push((group, t.span.clone(), gpath));
        }
    }
    // One group per service.
    for (i, (g, _, _)) in groups.iter().enumerate() {
        for m in &g.members {
            if let Some((other, span, path)) =
                groups[..i].iter().find(|(o, _, _)| o.members.contains(m))
            {
                cx.error(
                    span.clone(),
                    path,
                    format!(
                        "`{m}` is in groups `{}` and `{}`; a service restarts with one group",
                        other.name, g.name
                    ),
                );
                ok = false;
            }
        }
    }
    for (i, service) in services.iter_mut().enumerate() {
        let r = &refs[i];
        let group = groups
            .iter()
            .find(|(g, _, _)| g.members.contains(&service.name))
            .map(|(g, _, _)| g);
        for (target, span, path) in &r.after {
            match group {
                None => {
                    cx.error(
                        span.clone(),
                        path,
                        format!(
                            "`after` orders members of a restart group, and `{}` is in none (list it in [groups.NAME] members)",
                            service.name
                        ),
                    );
                    ok = false;
                }
                Some(g) if !g.members.iter().any(|m| m.as_str() == target) => {
                    cx.error(
                        span.clone(),
                        path,
                        format!(
                            "`{target}` is not a member of group `{}` (members: {})",
                            g.name,
                            g.members
                                .iter()
                                .map(ServiceName::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    ok = false;
                }
                Some(_) if target == service.name.as_str() => {
                    cx.error(span.clone(), path, "a service cannot start after itself");
                    ok = false;
                }
                Some(_) => service.after.push(ServiceName::new(target.as_str())),
            }
        }
        if let Some((check, span, path)) = &r.ready_check {
            if service.checks.iter().any(|c| c.name.as_str() == check) {
                service.ready_check = Some(CheckName::new(check.as_str()));
            } else {
                let known = service.checks.iter().map(|c| c.name.as_str());
                let msg = match suggest::closest(check, known) {
                    Some(near) => format!(
                        "`{check}` is not a check of `{}`; did you mean `{near}`?",
                        service.name
                    ),
                    None => format!("`{check}` is not a check of `{}`", service.name),
                };
                cx.error(span.clone(), path, msg);
                ok = false;
            }
        }
        if group.is_none() {
            for (span, path) in &r.restart_group {
                cx.error(
                    span.clone(),
                    path,
                    format!(
                        "on_failure = \"restart-group\", but `{}` is in no restart group (list it in [groups.NAME] members)",
                        service.name
                    ),
                );
                ok = false;
            }
        }
    }
    let mut out = Vec::new();
    for (mut g, span, path) in groups {
        if g.members.is_empty() {
            cx.error(span, &path, format!("group `{}` has no members", g.name));
            ok = false;
            continue;
        }
        match start_order(&g.members, services) {
            Ok(order) => g.members = order,
            Err(cycle) => {
                cx.error(
                    span,
                    &path,
                    format!(
                        "the `after` orders of group `{}` form a cycle: {}",
                        g.name,
                        cycle.join(" -> ")
                    ),
                );
                ok = false;
                continue;
            }
        }
        out.push(g);
    }
    ok.then_some(out)
}

/// Members in start order: listed order, moved only as far as each service's `after`
/// requires (a stable topological sort). `Err` names a cycle.
fn start_order(
    members: &[ServiceName],
    services: &[Service],
) -> Result<Vec<ServiceName>, Vec<String>> {
    let after = |m: &ServiceName| -> Vec<ServiceName> {
        services
            .iter()
            .find(|s| &s.name == m)
            .map(|s| {
                s.after
                    .iter()
                    .filter(|a| members.contains(a))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut placed: Vec<ServiceName> = Vec::new();
    while placed.len() < members.len() {
        let next = members
            .iter()
            .find(|m| !placed.contains(m) && after(m).iter().all(|a| placed.contains(a)));
        match next {
            Some(m) => placed.push(m.clone()),
            None => {
                let rest: Vec<String> = members
                    .iter()
                    .filter(|m| !placed.contains(m))
                    .map(|m| m.to_string())
                    .collect();
                return Err(rest);
            }
        }
    }
    Ok(placed)
}

/// Whether a check's `on_failure` is `"restart-group"` (for [`ServiceRefs`]).
pub(super) fn is_restart_group(on_failure: &OnFailure) -> bool {
    matches!(on_failure, OnFailure::RestartGroup)
}
