//! Messages to the long-lived actors of a service and of a restart group: what the check
//! loops, schedules, the control socket and group actors send them, and the answers.
//!
//! A leaf module: it names the messages, it does not act on them.

use tokio::sync::oneshot;
use vigil_config::model::{Argv, Service};
use vigil_core::lifecycle::Op;
use vigil_core::{RestartReport, RestartRequest, ServiceName};

use crate::drivers::Driver;
use crate::guard::Decision;

/// A message to a service actor.
pub enum ServiceMsg {
    /// A request for the service's lifecycle: a restart through the guard (`guard`), a
    /// repair command (`op = Repair` with `repair`), a group's stop or start step.
    Request {
        op: Op,
        guard: Option<RestartRequest>,
        /// Boxed: every service's channel allocates room for its messages up front.
        repair: Option<Box<Argv>>,
        reply: Option<oneshot::Sender<Outcome>>,
    },
    /// The service's definition changed on reload (same driver kind): its guard policy,
    /// and the new driver built by the one factory (`None` for an exec service, whose
    /// process driver takes the new definition in place).
    Update {
        service: Box<Service>,
        driver: Option<Driver>,
    },
    /// Its restart history was reset (`vigil reset`): a deferred restart may go now.
    Reset,
}

impl ServiceMsg {
    /// A restart request through the guard, answered on `reply`.
    pub fn restart(request: RestartRequest, reply: Option<oneshot::Sender<Outcome>>) -> ServiceMsg {
        ServiceMsg::Request {
            op: Op::Restart,
            guard: Some(request),
            repair: None,
            reply,
        }
    }
}

/// How a request ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The guard decided (and, when allowed, the operation ran and was recorded).
    Decided(Decision),
    /// Not attempted: the driver says it cannot succeed (systemd's start limit).
    NotAttempted(String),
    /// The guard could not be asked.
    Failed(String),
    /// Dropped (an equal request was waiting, or the service is going away).
    Dropped(String),
    /// A step no guard decision covers finished (a group's stop phase).
    Done(RestartReport),
}

impl Outcome {
    /// The decision, when the guard made one.
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            Outcome::Decided(d) => Some(d),
            _ => None,
        }
    }

    /// Whether the operation ran and succeeded.
    pub fn succeeded(&self) -> bool {
        match self {
            Outcome::Decided(d) => d.restarted(),
            Outcome::Done(r) => r.ok,
            _ => false,
        }
    }

    /// One line: why it did not succeed, or what happened.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Decided(d) => match &d.report {
                Some(r) => r.detail.clone(),
                None => d.verdict.to_string(),
            },
            Outcome::NotAttempted(why) => format!("not attempted: {why}"),
            Outcome::Failed(why) => format!("the guard could not be asked: {why}"),
            Outcome::Dropped(why) => format!("dropped: {why}"),
            Outcome::Done(r) => r.detail.clone(),
        }
    }
}

/// A request to a group actor: a member's check asks for the whole group.
pub struct GroupMsg {
    pub member: ServiceName,
    pub check: String,
}
