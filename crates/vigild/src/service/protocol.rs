//! Messages to the long-lived actors of a service and of a restart group: what the check
//! loops, schedules, the control socket and group actors send them, and the answers.
//!
//! A leaf module: it names the messages, it does not act on them.

use tokio::sync::oneshot;
use vigil_config::model::{Argv, Service};
use vigil_core::lifecycle::{HoldKind, Op};
use vigil_core::{RestartReport, RestartRequest, ServiceName, Timestamp};

use crate::drivers::Driver;
use crate::guard::Decision;
use crate::ledger::{Caller, OperatorAction};

/// A message to a service actor. Every variant is one pointer: each service's inbox
/// allocates a block of 32 messages up front, so with 40-byte messages 500 services held
/// 600 KiB of empty slots (issue 11's memory regression).
pub enum ServiceMsg {
    /// A request for the service's lifecycle: a restart through the guard (`guard`), a
    /// repair command (`op = Repair` with `repair`), a group's stop or start step.
    Request(Box<RequestMsg>),
    /// The service's definition changed on reload (same driver kind): its guard policy,
    /// and the new driver built by the one factory (`None` for an exec service, whose
    /// process driver takes the new definition in place).
    Update(Box<UpdateMsg>),
    /// Its restart history was reset (`vigil reset`): a deferred restart may go now.
    Reset,
    /// An operator's stop, start, pause or resume (or a maintenance window's), recorded in
    /// the ledger when the service's lifecycle accepts it.
    Operator(Box<OperatorMsg>),
}

/// See [`ServiceMsg::Request`].
pub struct RequestMsg {
    pub op: Op,
    pub guard: Option<RestartRequest>,
    pub repair: Option<Argv>,
    pub reply: Option<oneshot::Sender<Outcome>>,
}

/// See [`ServiceMsg::Update`].
pub struct UpdateMsg {
    pub service: Service,
    pub driver: Option<Driver>,
}

/// See [`ServiceMsg::Operator`].
pub struct OperatorMsg {
    pub command: OperatorCommand,
    pub reply: Option<oneshot::Sender<Outcome>>,
}

/// What an operator asks of a service, with who asked and why.
#[derive(Clone, Debug)]
pub struct OperatorCommand {
    pub action: Control,
    /// When a stop or pause ends by itself (`--for`).
    pub until: Option<Timestamp>,
    /// `None`: nobody in particular (a maintenance window, a group's step).
    pub caller: Option<Caller>,
    pub reason: Option<String>,
    /// `operator`, `window` (a maintenance window) or `group` (a group's step).
    pub source: &'static str,
}

impl ServiceMsg {
    /// A restart request through the guard, answered on `reply`.
    pub fn restart(request: RestartRequest, reply: Option<oneshot::Sender<Outcome>>) -> ServiceMsg {
        ServiceMsg::request(Op::Restart, Some(request), None, reply)
    }

    pub fn request(
        op: Op,
        guard: Option<RestartRequest>,
        repair: Option<Argv>,
        reply: Option<oneshot::Sender<Outcome>>,
    ) -> ServiceMsg {
        ServiceMsg::Request(Box::new(RequestMsg {
            op,
            guard,
            repair,
            reply,
        }))
    }

    pub fn operator(
        command: OperatorCommand,
        reply: Option<oneshot::Sender<Outcome>>,
    ) -> ServiceMsg {
        ServiceMsg::Operator(Box::new(OperatorMsg { command, reply }))
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
    /// A step no guard decision covers finished (a group's stop phase, an operator's
    /// command).
    Done(RestartReport),
    /// Refused: an operator's stop or pause holds the service.
    Held(HoldKind),
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
            Outcome::Held(kind) => format!("refused: {}", held_words(*kind)),
        }
    }
}

/// A request to a group actor: a member's check asks for the whole group.
pub struct GroupMsg {
    pub member: ServiceName,
    pub check: String,
}

/// An operator's command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Stop,
    Start,
    Pause,
    Resume,
}

impl Control {
    /// As the ledger records it.
    pub fn action(self) -> OperatorAction {
        match self {
            Control::Stop => OperatorAction::Stop,
            Control::Start => OperatorAction::Start,
            Control::Pause => OperatorAction::Pause,
            Control::Resume => OperatorAction::Resume,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.action().as_str()
    }

    /// `stopped`, `started`, `paused`, `resumed`.
    pub fn past(self) -> &'static str {
        match self {
            Control::Stop => "stopped",
            Control::Start => "started",
            Control::Pause => "paused",
            Control::Resume => "resumed",
        }
    }
}

/// What a hold means, in words (how to clear it is the caller's to add).
pub fn held_words(kind: HoldKind) -> &'static str {
    match kind {
        HoldKind::Stopped => "the service is stopped by an operator",
        HoldKind::Paused => "automatic actions are paused by an operator",
    }
}
