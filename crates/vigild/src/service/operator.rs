//! Operator control (`vigil stop|start|pause|resume SERVICE|@GROUP`): which actor a
//! command goes to, what is refused before anything is recorded, and how the answer
//! reads. Shared by the control socket and the one-shot CLI, so both say the same.
//!
//! Owns: naming the target, the checks that need no actor (an unknown name, a `stop`
//! without a way to stop), the fan-out of a group's pause (the answer's words are
//! `render::hold`'s). Must not:
//! decide what a hold does — that is the lifecycle machine's (`vigil_core::lifecycle`),
//! carried out by each service's actor, which records what it accepts.

use tokio::sync::oneshot;
use vigil_config::model::{
    Config, DriverSpec, Group, MaintenanceAction, MaintenanceWindow, Service,
};
use vigil_core::{ServiceName, Timestamp};

use crate::ledger::Caller;
use crate::service::inbox;
use crate::service::protocol::{Control, OperatorCommand, Outcome, ServiceMsg};

/// What an operator's command is about: a service, or a restart group (`@NAME`).
#[derive(Clone, Copy, Debug)]
pub enum Target<'c> {
    Service(&'c Service),
    Group(&'c Group),
}

impl Target<'_> {
    /// The name the operator typed: `web`, or `@stack`.
    pub fn label(&self) -> String {
        match self {
            Target::Service(s) => s.name.to_string(),
            Target::Group(g) => g.ledger_key().to_string(),
        }
    }

    /// The key of the actor (and of the ledger rows) the command goes to.
    pub fn key(&self) -> ServiceName {
        match self {
            Target::Service(s) => s.name.clone(),
            Target::Group(g) => g.ledger_key(),
        }
    }
}

/// Why a command is refused before anything is done or recorded (exit 2; the API's 400
/// or 404).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("unknown service `{name}` (configured: {known})")]
    UnknownService { name: String, known: String },
    #[error("unknown group `@{name}` (configured: {known})")]
    UnknownGroup { name: String, known: String },
    #[error(
        "{0}: a command service without `stop_command` cannot be stopped (add `stop_command`, or use `vigil pause {0}` to suspend automatic actions while it runs)"
    )]
    NoStopCommand(ServiceName),
    #[error("invalid --for: {0}")]
    BadDuration(String),
    #[error("--for is for stop and pause only")]
    ForWithoutHold,
}

impl Refused {
    /// Whether the name is unknown (the API's 404).
    pub fn is_unknown(&self) -> bool {
        matches!(
            self,
            Refused::UnknownService { .. } | Refused::UnknownGroup { .. }
        )
    }
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<&str> = names.collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

/// The service, or the group for `@NAME`.
pub fn target<'c>(config: &'c Config, name: &str) -> Result<Target<'c>, Refused> {
    if let Some(group) = name.strip_prefix('@') {
        return config
            .groups
            .iter()
            .find(|g| g.name.as_str() == group)
            .map(Target::Group)
            .ok_or_else(|| Refused::UnknownGroup {
                name: group.to_owned(),
                known: names(config.groups.iter().map(|g| g.name.as_str())),
            });
    }
    config
        .service(name)
        .map(Target::Service)
        .ok_or_else(|| Refused::UnknownService {
            name: name.to_owned(),
            known: names(config.services.iter().map(|s| s.name.as_str())),
        })
}

/// What the command asks, checked against the configuration: `for` parses (and is only
/// given to stop and pause), and a stop has a way to stop every service it reaches.
pub fn prepare(
    config: &Config,
    target: Target<'_>,
    action: Control,
    for_: Option<&str>,
    now: Timestamp,
) -> Result<Option<Timestamp>, Refused> {
    let until = match for_ {
        None => None,
        Some(_) if !matches!(action, Control::Stop | Control::Pause) => {
            return Err(Refused::ForWithoutHold);
        }
        Some(text) => {
            let d = vigil_config::parse_duration(text).map_err(Refused::BadDuration)?;
            if d.is_zero() {
                return Err(Refused::BadDuration(format!(
                    "{text:?} is zero: give how long, e.g. \"30m\""
                )));
            }
            Some(now.saturating_add(d))
        }
    };
    if action == Control::Stop {
        let services: Vec<&Service> = match target {
            Target::Service(s) => vec![s],
            Target::Group(g) => g
                .members
                .iter()
                .filter_map(|m| config.service(m.as_str()))
                .collect(),
        };
        for s in services {
            if let DriverSpec::Command(c) = &s.driver
                && c.stop.is_none()
            {
                return Err(Refused::NoStopCommand(s.name.clone()));
            }
        }
    }
    Ok(until)
}

/// Who runs this process, as a caller of an operator's command (the CLI without a daemon).
pub fn current_caller() -> Caller {
    caller_of(rustix::process::getuid().as_raw())
}

/// The caller with user id `uid` (the control socket's peer), named through NSS.
pub fn caller_of(uid: u32) -> Caller {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    Caller::local(uid, user)
}

/// Sends the command to the target's actors and waits for its answer. A group's stop and
/// start go to the group's actor (members stop in reverse order and start in order with
/// their ready checks, as in a group restart); its pause and resume go to the group's
/// actor and then to each member.
pub async fn apply(
    config: &Config,
    target: Target<'_>,
    command: OperatorCommand,
    inbox_of: impl Fn(&ServiceName) -> Option<inbox::Sender<ServiceMsg>>,
) -> Outcome {
    let key = target.key();
    let Some(inbox) = inbox_of(&key) else {
        return Outcome::Dropped(format!("{key} has no actor (is it configured?)"));
    };
    let members: Vec<Member> = match target {
        Target::Service(_) => Vec::new(),
        Target::Group(g) => g
            .members
            .iter()
            .filter(|m| config.service(m.as_str()).is_some())
            .filter_map(|m| Some((m.clone(), inbox_of(m)?)))
            .collect(),
    };
    apply_to(&key, &inbox, &members, command).await
}

/// A group member's name and inbox.
pub type Member = (ServiceName, inbox::Sender<ServiceMsg>);

/// [`apply`] with the actors found: `members` is empty for a service. Maintenance windows
/// of groups go through here too.
pub async fn apply_to(
    key: &ServiceName,
    inbox: &inbox::Sender<ServiceMsg>,
    members: &[Member],
    command: OperatorCommand,
) -> Outcome {
    let outcome = send(inbox, command.clone()).await;
    if members.is_empty()
        || !matches!(command.action, Control::Pause | Control::Resume)
        || !matches!(outcome, Outcome::Done(ref r) if r.ok)
    {
        return outcome;
    }
    for (member, inbox) in members {
        let answer = send(inbox, member_step(&command, key)).await;
        // A stopped member is already more than paused; one an operator holds keeps
        // that hold.
        if !matches!(answer, Outcome::Done(ref r) if r.ok) && !matches!(answer, Outcome::Held(_)) {
            return Outcome::Failed(format!("{member}: {}", answer.describe()));
        }
    }
    outcome
}

/// A group's command as its members get it (source `group`, nobody in particular asked).
pub fn member_step(command: &OperatorCommand, group_key: &ServiceName) -> OperatorCommand {
    let group = group_key.as_str().trim_start_matches('@');
    OperatorCommand {
        caller: None,
        reason: Some(format!("group {group} {}", command.action.past())),
        source: "group",
        ..command.clone()
    }
}

async fn send(inbox: &inbox::Sender<ServiceMsg>, command: OperatorCommand) -> Outcome {
    let (reply, answer) = oneshot::channel();
    let msg = ServiceMsg::operator(command, Some(reply));
    if inbox.send(msg).await.is_err() {
        return Outcome::Dropped("vigil is stopping".to_owned());
    }
    answer
        .await
        .unwrap_or_else(|_| Outcome::Dropped("vigil stopped before answering".to_owned()))
}

/// The first window of `windows` that is open at `now` or opens after it: its start and
/// end.
pub fn next_window(
    windows: &[MaintenanceWindow],
    now: Timestamp,
) -> Option<(&MaintenanceWindow, Timestamp, Timestamp)> {
    windows
        .iter()
        .filter_map(|w| {
            // From one window's length ago: a window open now is found too.
            let start = w.schedule.next_after(now.saturating_sub(w.duration))?;
            Some((w, start, start.saturating_add(w.duration)))
        })
        .min_by_key(|(_, start, _)| *start)
}

/// What a maintenance window asks of its service at its start, until `end`.
pub fn window_command(window: &MaintenanceWindow, end: Timestamp) -> OperatorCommand {
    OperatorCommand {
        action: match window.action {
            MaintenanceAction::Pause => Control::Pause,
            MaintenanceAction::Stop => Control::Stop,
        },
        until: Some(end),
        caller: None,
        reason: Some(format!(
            "maintenance window ({}, {})",
            window.schedule.describe(),
            vigil_core::format_duration(window.duration)
        )),
        source: "window",
    }
}
