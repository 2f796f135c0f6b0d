//! Messages to the long-lived actors of a service and of a restart group: what the check
//! loops, schedules, the control socket and driver event followers send them.
//!
//! A leaf module: it names the messages, it does not act on them.

use tokio::sync::oneshot;
use vigil_config::model::Service;
use vigil_core::{RestartRequest, ServiceName, Timestamp};

use crate::guard::Decision;

/// A request to a service actor.
pub enum ServiceMsg {
    Restart {
        request: RestartRequest,
        /// `None`: restart through the driver; `Some(check)`: run that check's repair
        /// command instead.
        /// Boxed: every service's channel allocates room for 32 messages up front.
        repair: Option<Box<vigil_config::model::Argv>>,
        reply: Option<oneshot::Sender<Decision>>,
    },
    /// The service's definition changed on reload (driver or guard policy).
    Update(Box<Service>),
    /// Its restart history was reset (`vigil reset`): a deferred restart may go now.
    Reset,
    /// Its restart group restarted it: a new instance, up since then.
    Restarted(Timestamp),
}

/// A request to a group actor: a member's check asks for the whole group.
pub struct GroupMsg {
    pub member: ServiceName,
    pub check: String,
}
