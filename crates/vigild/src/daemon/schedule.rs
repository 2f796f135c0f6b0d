//! Schedule tasks: each `[[services.X.schedule]]` entry fires restart requests with
//! source `schedule`.

use tokio_util::sync::CancellationToken;
use vigil_core::{RestartRequest, ServiceName, Source};

use vigil_core::event::Event;

use crate::observe::bus::Events;
use crate::platform::clock;
use crate::service::inbox;
use crate::service::protocol::ServiceMsg;

/// Fires one schedule entry: each firing is a restart request with source `schedule`.
pub(super) async fn schedule_loop(
    service: ServiceName,
    schedule: vigil_core::schedule::Schedule,
    tx: inbox::Sender<ServiceMsg>,
    events: Events,
    cancel: CancellationToken,
) {
    let mut after = clock::now();
    while let Some(next) = schedule.next_after(after) {
        if !clock::sleep_until_wall(next, &cancel).await {
            return;
        }
        events.publish(
            &service,
            Event::ScheduleFired {
                schedule: schedule.describe(),
            },
        );
        let msg = ServiceMsg::restart(RestartRequest::new(Source::Schedule), None);
        if tx.send(msg).await.is_err() {
            return;
        }
        after = next.max(clock::now());
    }
}
