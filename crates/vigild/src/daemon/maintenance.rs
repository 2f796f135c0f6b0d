//! Maintenance windows (`[[services.X.maintenance]]`, `[[groups.G.maintenance]]`): at each
//! window's start, the service (or group) is paused or stopped until the window's end, as
//! `vigil pause|stop --for` would, with source `window`. The end is the hold's own expiry:
//! the actor's lifecycle lifts it at `until` (recorded in the ledger), so a window ends on
//! time even across a restart of `vigil run`.
//!
//! An operator's own stop or pause is never overridden by a window (the actor refuses
//! the window's command), and a window already in force when the daemon starts applies at
//! once for what is left of it.

use tokio_util::sync::CancellationToken;
use vigil_config::model::MaintenanceWindow;
use vigil_core::ServiceName;
use vigil_core::event::Event;

use crate::observe::bus::Events;
use crate::platform::clock;
use crate::service::inbox;
use crate::service::operator;
use crate::service::protocol::{Outcome, ServiceMsg};

/// Runs one window entry of `service` (a service, or a group's `@NAME` actor).
/// A group's window pauses its members too (`members`, empty for a service), as
/// `vigil pause @GROUP` does; its stop goes through the group's own sequence.
pub(super) async fn maintenance_loop(
    service: ServiceName,
    window: MaintenanceWindow,
    tx: inbox::Sender<ServiceMsg>,
    members: Vec<operator::Member>,
    events: Events,
    cancel: CancellationToken,
) {
    // From one window's length ago: a window already open is found too.
    let mut after = clock::now().saturating_sub(window.duration);
    while let Some(start) = window.schedule.next_after(after) {
        after = start;
        let end = start.saturating_add(window.duration);
        if end <= clock::now() {
            continue;
        }
        if !clock::sleep_until_wall(start, &cancel).await {
            return;
        }
        events.publish(
            &service,
            Event::MaintenanceStarted {
                action: window.action.as_str(),
                until: end,
                window: window.schedule.describe(),
            },
        );
        let command = operator::window_command(&window, end);
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            outcome = operator::apply_to(&service, &tx, &members, command) => outcome,
        };
        match outcome {
            Outcome::Done(r) if r.ok => {}
            Outcome::Dropped(_) => return,
            other => {
                tracing::warn!(service = %service, event = "maintenance_not_applied",
                    "maintenance window not applied: {}", other.describe());
            }
        }
    }
}
