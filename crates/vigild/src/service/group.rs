//! Restart groups (seed 001's "restart ALL services"): one guard decision for the group,
//! then members stop in reverse start order and start in order, each waiting for its
//! `ready_check` before the next.
//!
//! A group is driven like a service: a [`ServiceActor`](super::actor::ServiceActor) named
//! `@NAME` (its ledger key, which no service name can be) with the group's guard policy,
//! whose driver is [`GroupDriver`]: its "restart" is the whole stop/start sequence. So a
//! group gets the same lifecycle as a service (one sequence at a time, repeated requests
//! merged, given-up announced once per episode) from the same machine.
//!
//! Owns: the sequence and its report. Must not: touch a member's driver — each step is a
//! request to the member's own actor (the one owner of its driver, so a container's `die`
//! during the group's stop is known as Vigil's own); each member's start is a forced
//! request with source `group` through the member's own guard (the group's decision
//! authorized it), recorded in the member's ledger under the member's lock.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use vigil_checks::ProbeContext;
use vigil_checks::runner::run_check;
use vigil_config::model::{Check, Config, Group};
use vigil_core::health::RunVerdict;
use vigil_core::lifecycle::{HoldKind, Op};
use vigil_core::{RestartReport, RestartRequest, ServiceName, Source};

use crate::drivers::{DriverEvent, DriverFuture, RemoteDriver};
use crate::observe::bus::Events;
use crate::service::inbox;
use crate::service::protocol::{Control, OperatorCommand, Outcome, ServiceMsg};

/// One member, as the sequence needs it: its actor's inbox and its ready check.
#[derive(Clone)]
pub struct Member {
    pub name: ServiceName,
    pub inbox: inbox::Sender<ServiceMsg>,
    pub ready: Option<Check>,
}

/// The members of `group` in start order, reached through `inbox_of`.
pub fn members(
    config: &Config,
    group: &Group,
    inbox_of: impl Fn(&ServiceName) -> Option<inbox::Sender<ServiceMsg>>,
) -> Vec<Member> {
    group
        .members
        .iter()
        .filter_map(|name| {
            let s = config.service(name.as_str())?;
            Some(Member {
                name: s.name.clone(),
                inbox: inbox_of(&s.name)?,
                ready: s
                    .ready_check
                    .as_ref()
                    .and_then(|r| s.checks.iter().find(|c| &c.name == r))
                    .cloned(),
            })
        })
        .collect()
}

/// A group's "driver": its operations are sequences over the members' actors.
pub struct GroupDriver {
    /// The group's name (`[groups.NAME]`), for messages.
    pub name: ServiceName,
    pub members: Vec<Member>,
    pub ready_timeout: Duration,
    pub probes: ProbeContext,
    /// Which members an operator holds (a restart of the group would leave one down).
    pub events: Events,
}

impl RemoteDriver for GroupDriver {
    fn run(
        &self,
        op: Op,
        _tracker: Option<crate::guard::Tracker>,
    ) -> DriverFuture<'_, RestartReport> {
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let result = match op {
                Op::Restart | Op::Repair => match self.held_member() {
                    Some(why) => Err(why),
                    None => self.sequence(Step::Restart).await,
                },
                Op::Stop => self.sequence(Step::Stop).await,
                Op::Start => self.sequence(Step::Start).await,
            };
            let (ok, detail) = match result {
                Ok(detail) => (true, detail),
                Err(detail) => (false, detail),
            };
            RestartReport {
                ok,
                detail,
                duration: started.elapsed(),
                action_required: None,
            }
        })
    }

    fn is_running(&self) -> DriverFuture<'_, Option<bool>> {
        Box::pin(async { None })
    }

    fn restart_blocked(&self) -> DriverFuture<'_, Option<String>> {
        Box::pin(async { None })
    }

    fn follow(
        &self,
        _service: &ServiceName,
        _cancel: CancellationToken,
    ) -> Option<mpsc::Receiver<DriverEvent>> {
        None
    }
}

/// What a group's sequence does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The group's restart: each member's stop, then its start through its guard.
    Restart,
    /// `vigil stop @GROUP`: each member is stopped and held down (in reverse order).
    Stop,
    /// `vigil start @GROUP`: each member's stop is lifted and it starts (in order).
    Start,
}

impl GroupDriver {
    /// A member an operator holds, which a restart of the group would leave down.
    fn held_member(&self) -> Option<String> {
        let (m, kind) = self
            .members
            .iter()
            .find_map(|m| Some((m, self.events.hold_of(&m.name)?)))?;
        Some(format!(
            "{} is {} by an operator; nothing was stopped (`vigil {} {}` first)",
            m.name,
            kind.as_str(),
            if kind == HoldKind::Stopped {
                "start"
            } else {
                "resume"
            },
            m.name
        ))
    }

    /// Stops members in reverse start order, then starts them in order, each start
    /// waiting for the member's ready check (see [`Step`]).
    async fn sequence(&self, step: Step) -> Result<String, String> {
        let (stop, start) = (step != Step::Start, step != Step::Stop);
        let started = tokio::time::Instant::now();
        let group = &self.name;
        let mut stopped = Vec::new();
        if stop {
            for m in self.members.iter().rev() {
                let outcome = if step == Step::Stop {
                    self.operator(m, Control::Stop).await
                } else {
                    ask(m, Op::Stop, None).await
                };
                tracing::info!(group = %group, service = %m.name, event = "group_member_stopped",
                    ok = outcome.succeeded(), "group {group}: stop {}: {}", m.name, outcome.describe());
                if !outcome.succeeded() {
                    return Err(format!(
                        "stopping {} failed: {}; stopped before it: {}; nothing was started",
                        m.name,
                        outcome.describe(),
                        list(&stopped)
                    ));
                }
                stopped.push(m.name.as_str());
            }
        }
        let mut up = Vec::new();
        if start {
            for (i, m) in self.members.iter().enumerate() {
                let not_started = || {
                    list(
                        &self.members[i + 1..]
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>(),
                    )
                };
                let outcome = if step == Step::Start {
                    self.operator(m, Control::Start).await
                } else {
                    ask(m, Op::Start, Some(RestartRequest::forced(Source::Group))).await
                };
                if !outcome.succeeded() {
                    return Err(format!(
                        "starting {} failed: {}; started before it: {}; not started: {}",
                        m.name,
                        outcome.describe(),
                        list(&up),
                        not_started()
                    ));
                }
                if let Some(check) = &m.ready {
                    if let Err(reason) = wait_ready(check, self.ready_timeout, &self.probes).await {
                        return Err(format!(
                            "{} started but its ready_check {} did not pass within {}: {reason}; not started: {}",
                            m.name,
                            check.name,
                            vigil_core::format_duration(self.ready_timeout),
                            not_started()
                        ));
                    }
                    tracing::info!(group = %group, service = %m.name, event = "group_member_ready",
                        "group {group}: {} is ready ({} passes)", m.name, check.name);
                }
                up.push(m.name.as_str());
            }
        }
        let took = vigil_core::format_duration(started.elapsed());
        Ok(match (stop, start) {
            (true, true) => format!(
                "group {group}: stopped {}; started {} in {took}",
                list(&stopped),
                list(&up)
            ),
            (true, false) => format!("stopped {} in {took}", list(&stopped)),
            _ => format!("started {} in {took}", list(&up)),
        })
    }
}

impl GroupDriver {
    /// An operator's step for one member on the group's behalf (recorded in the member's
    /// ledger with source `group`).
    async fn operator(&self, member: &Member, action: Control) -> Outcome {
        let command = OperatorCommand {
            action,
            until: None,
            caller: None,
            reason: Some(format!(
                "group {} {}",
                self.name,
                match action {
                    Control::Stop => "stopped",
                    _ => "started",
                }
            )),
            source: "group",
        };
        send(member, |reply| ServiceMsg::operator(command, Some(reply))).await
    }
}

/// One step of the sequence: a request to a member's actor, answered when done.
async fn ask(member: &Member, op: Op, guard: Option<RestartRequest>) -> Outcome {
    send(member, |reply| {
        ServiceMsg::request(op, guard, None, Some(reply))
    })
    .await
}

async fn send(
    member: &Member,
    msg: impl FnOnce(oneshot::Sender<Outcome>) -> ServiceMsg,
) -> Outcome {
    let (reply, answer) = oneshot::channel();
    if member.inbox.send(msg(reply)).await.is_err() {
        return Outcome::Dropped(format!("{} is not running under vigil", member.name));
    }
    answer
        .await
        .unwrap_or_else(|_| Outcome::Dropped(format!("{} stopped before answering", member.name)))
}

/// Runs `check` until it passes, at most `limit`.
async fn wait_ready(check: &Check, limit: Duration, probes: &ProbeContext) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = String::from("not run yet");
    loop {
        let run = tokio::time::timeout_at(deadline, run_check(check, probes)).await;
        match run {
            Ok(run) if run.verdict == RunVerdict::Pass => return Ok(()),
            Ok(run) => last = run.reason,
            Err(_) => return Err(last),
        }
        let pause = tokio::time::Instant::now() + Duration::from_millis(200);
        if pause >= deadline {
            return Err(last);
        }
        tokio::time::sleep_until(pause).await;
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}
