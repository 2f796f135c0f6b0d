//! `[groups.NAME]` and the service keys that refer across services (`after`,
//! `ready_check`, `on_failure = "restart-group"`): validated once every service is known.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::ops::Range;

use toml::de::DeValue;
use vigil_core::ServiceName;
use vigil_core::guard::GuardPolicy;

use super::{Inherit, guard, maintenance, name_ok};
use vigil_core::CheckName;

use crate::model::{Group, OnFailure, Service};
use crate::schema;
use crate::value::{Cx, KeyPath, Table, Value, nonempty_string, positive_duration, type_error};

/// What a service's table said about groups, with spans for errors found later.
#[derive(Default)]
pub(super) struct ServiceRefs {
    pub after: Vec<(String, Range<usize>, KeyPath)>,
    pub ready_check: Option<(String, Range<usize>, KeyPath)>,
    /// Checks with `on_failure = "restart-group"`: the value's span and path.
    pub restart_group: Vec<(Range<usize>, KeyPath)>,
    /// `fleet_key`, checked against `[fleet.keys]` in `fleet::check_refs`.
    pub fleet_key: Option<super::fleet::KeyRef>,
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

fn unknown_service(cx: &mut Cx<'_>, name: &str, services: &[Service]) -> String {
    let known = services.iter().map(|s| s.name.as_str());
    match cx.suggest(name, known) {
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
    let by_name: HashMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
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
            let mut windows = maintenance::windows(cx, &t);
            let (Some(guard), Some(ready_timeout)) = (guard, ready_timeout) else {
                ok = false;
                continue;
            };
            let mut group = Group {
                name: ServiceName::new(name.get_ref().as_ref()),
                members: Vec::new(),
                guard,
                ready_timeout,
                maintenance: Vec::new(),
            };
            let mut listed = HashSet::new();
            for (member, span, mpath) in members {
                match by_name.get(member.as_str()).map(|&i| &services[i]) {
                    None => {
                        if cx.wants(span.start) {
                            let message = unknown_service(cx, &member, services);
                            cx.error(span, &mpath, message);
                        } else {
                            cx.errors.count();
                        }
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
                    Some(s) if !listed.insert(s.name.clone()) => {
                        cx.error(span, &mpath, format!("`{member}` is listed twice"));
                        ok = false;
                    }
                    Some(s) => group.members.push(s.name.clone()),
                }
            }
            let members: Vec<&Service> = group
                .members
                .iter()
                .filter_map(|m| by_name.get(m.as_str()).map(|&i| &services[i]))
                .collect();
            maintenance::check_group(cx, &members, &mut windows);
            match windows.list {
                Some(list) => group.maintenance = list,
                None => ok = false,
            }
            groups.push((group, t.span.clone(), gpath));
        }
    }
    // One group per service: the first group that lists it keeps it.
    let mut group_of: HashMap<ServiceName, usize> = HashMap::new();
    for (i, (g, _, _)) in groups.iter().enumerate() {
        for m in &g.members {
            match group_of.get(m) {
                Some(&first) if first != i => {
                    // Reported at the group that listed it first.
                    let (other, span, path) = &groups[first];
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
                Some(_) => {}
                None => {
                    group_of.insert(m.clone(), i);
                }
            }
        }
    }
    let member_sets: Vec<HashSet<&str>> = groups
        .iter()
        .map(|(g, _, _)| g.members.iter().map(ServiceName::as_str).collect())
        .collect();
    for (i, service) in services.iter_mut().enumerate() {
        let Some(r) = refs.get(i) else {
            continue;
        };
        let group = group_of.get(&service.name).copied();
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
                Some(g) if !member_sets[g].contains(target.as_str()) => {
                    let g = &groups[g].0;
                    cx.error(
                        span.clone(),
                        path,
                        format!(
                            "`{target}` is not a member of group `{}` (members: {})",
                            g.name,
                            super::alerts::some_names(
                                g.members.iter().map(ServiceName::as_str),
                                10
                            )
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
                let msg = match cx.suggest(check, known) {
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
/// requires (a stable topological sort: always the earliest-listed member whose `after`
/// members are all placed). `Err` names the members left in a cycle.
fn start_order(
    members: &[ServiceName],
    services: &[Service],
) -> Result<Vec<ServiceName>, Vec<String>> {
    let index: HashMap<&ServiceName, usize> =
        members.iter().enumerate().map(|(i, m)| (m, i)).collect();
    let by_name: HashMap<&ServiceName, &Service> = services.iter().map(|s| (&s.name, s)).collect();
    // waiting[i]: how many members `i` starts after; next[j]: who starts after `j`.
    let mut waiting = vec![0usize; members.len()];
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
    for (i, m) in members.iter().enumerate() {
        let Some(s) = by_name.get(m) else {
            continue;
        };
        let mut seen = HashSet::new();
        for a in &s.after {
            if let Some(&j) = index.get(a)
                && seen.insert(j)
            {
                waiting[i] += 1;
                next[j].push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..members.len())
        .filter(|&i| waiting[i] == 0)
        .map(Reverse)
        .collect();
    let mut placed = Vec::with_capacity(members.len());
    let mut done = vec![false; members.len()];
    while let Some(Reverse(i)) = ready.pop() {
        placed.push(members[i].clone());
        done[i] = true;
        for &k in &next[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.push(Reverse(k));
            }
        }
    }
    if placed.len() < members.len() {
        let rest = members
            .iter()
            .zip(&done)
            .filter(|(_, d)| !**d)
            .map(|(m, _)| m.to_string())
            .collect();
        return Err(rest);
    }
    Ok(placed)
}

/// Whether a check's `on_failure` is `"restart-group"` (for [`ServiceRefs`]).
pub(super) fn is_restart_group(on_failure: &OnFailure) -> bool {
    matches!(on_failure, OnFailure::RestartGroup)
}
