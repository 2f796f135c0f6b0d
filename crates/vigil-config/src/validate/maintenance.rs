//! `[[services.NAME.maintenance]]` and `[[groups.NAME.maintenance]]`: recurring windows
//! that hold a service or a whole group.
//!
//! A window's schedule is read by the same code as `[[services.NAME.schedule]]`. Whether
//! `action = "stop"` can be carried out depends on the drivers involved, which for a group
//! are known only once its members are resolved: [`windows`] keeps where each stop action
//! is written, and the service and group walks check it with [`check_service`] and
//! [`check_group`].

use std::ops::Range;

use crate::model::{DriverSpec, MaintenanceAction, MaintenanceWindow, Service};
use crate::schema;
use crate::value::{Cx, KeyPath, Table, one_of, positive_duration};

/// The windows of one service or group.
pub(super) struct Windows {
    /// `None` when any window is invalid (its errors are recorded).
    pub list: Option<Vec<MaintenanceWindow>>,
    /// Where each `action = "stop"` is written, also in otherwise invalid windows, so that
    /// the driver check reports every one of them.
    stops: Vec<(Range<usize>, KeyPath)>,
}

/// Reads `[[OWNER.maintenance]]` of the service or group table `owner`.
pub(super) fn windows(cx: &mut Cx<'_>, owner: &Table<'_>) -> Windows {
    let mut stops = Vec::new();
    let list = super::array_of_tables(cx, owner, "maintenance", &schema::MAINTENANCE, |cx, t| {
        window(cx, t, &mut stops)
    });
    Windows { list, stops }
}

fn window(
    cx: &mut Cx<'_>,
    t: &Table<'_>,
    stops: &mut Vec<(Range<usize>, KeyPath)>,
) -> Option<MaintenanceWindow> {
    let schedule = super::schedule(cx, t);
    let duration = t.required(cx, "duration", positive_duration);
    let action = t.defaulted(cx, "action", |cx, v, p| {
        match one_of(cx, v, p, "action", schema::MAINTENANCE_ACTIONS)? {
            "pause" => Some(MaintenanceAction::Pause),
            "stop" => Some(MaintenanceAction::Stop),
            _ => None,
        }
    });
    if action == Some(MaintenanceAction::Stop)
        && let Some(v) = t.get("action")
    {
        stops.push((v.span(), t.path.key("action")));
    }
    // A window that lasts until the next one opens would hold the service for good.
    let interval = schedule.as_ref().and_then(|s| s.interval());
    if let (Some(duration), Some(interval), Some(v)) = (duration, interval, t.get("duration"))
        && duration >= interval
    {
        let message = format!(
            "windows would overlap: duration {} is not shorter than every {}",
            vigil_core::format_duration(duration),
            vigil_core::format_duration(interval)
        );
        cx.error(v.span(), &t.path.key("duration"), message);
        return None;
    }
    Some(MaintenanceWindow {
        schedule: schedule?,
        duration: duration?,
        action: action?,
    })
}

/// A stop window of the service `name` needs a way to stop it: a `driver = "command"`
/// service without `stop_command` has none.
pub(super) fn check_service(cx: &mut Cx<'_>, name: &str, driver: &DriverSpec, w: &mut Windows) {
    if matches!(driver, DriverSpec::Command(c) if c.stop.is_none()) {
        let message = format!(
            "a stop window needs `stop_command`, and `{name}` (driver = \"command\") has none; add it, or use action = \"pause\""
        );
        fail(cx, w, &message);
    }
}

/// A stop window of a group stops every member: each `driver = "command"` member needs
/// `stop_command`.
pub(super) fn check_group(cx: &mut Cx<'_>, members: &[&Service], w: &mut Windows) {
    let lacking: Vec<String> = members
        .iter()
        .filter(|s| matches!(&s.driver, DriverSpec::Command(c) if c.stop.is_none()))
        .map(|s| format!("`{}`", s.name))
        .collect();
    let names = super::alerts::some_names(lacking.iter().map(String::as_str), 10);
    let message = match lacking.len() {
        0 => return,
        1 => format!(
            "a stop window needs `stop_command`, and member {names} (driver = \"command\") has none; add it, or use action = \"pause\""
        ),
        _ => format!(
            "a stop window needs `stop_command`, and members {names} (driver = \"command\") have none; add it, or use action = \"pause\""
        ),
    };
    fail(cx, w, &message);
}

/// Reports `message` at every stop action; the windows are then invalid.
fn fail(cx: &mut Cx<'_>, w: &mut Windows, message: &str) {
    if w.stops.is_empty() {
        return;
    }
    for (span, path) in &w.stops {
        cx.error(span.clone(), path, message);
    }
    w.list = None;
}
