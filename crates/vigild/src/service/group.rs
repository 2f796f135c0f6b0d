//! Restart groups (seed 001's "restart ALL services"): one guard decision for the group,
//! then members stop in reverse start order and start in order, each waiting for its
//! `ready_check` before the next.
//!
//! Owns: the stop/start sequence and its report. Must not: bypass the guard — the group's
//! decision is taken under the group's own lock and budget (`@NAME` in the ledger), and
//! each member's start is recorded in the member's ledger with source `group` (forced:
//! the group's decision authorized it), under the member's lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use vigil_checks::ProbeContext;
use vigil_checks::runner::run_check;
use vigil_config::model::{Check, Config, Group};
use vigil_core::guard::GuardPolicy;
use vigil_core::health::RunVerdict;
use vigil_core::{RestartRequest, ServiceName, Source};

use crate::drivers::{Driver, RestartReport};
use crate::guard::{self, Action, Decision, GuardContext, GuardError};
use crate::observe::events;
use crate::platform::clock;
use crate::service::RESTART_SHUTDOWN_GRACE;
use crate::service::protocol::{GroupMsg, ServiceMsg};

/// One member, as the sequence needs it.
pub struct Member {
    pub name: ServiceName,
    pub driver: Driver,
    pub guard: GuardPolicy,
    pub ready: Option<Check>,
}

/// The members of `group`, in start order, with drivers built from `config`.
pub fn members(config: &Config, group: &Group, probes: &ProbeContext) -> Vec<Member> {
    group
        .members
        .iter()
        .filter_map(|name| {
            let s = config.service(name.as_str())?;
            Some(Member {
                name: s.name.clone(),
                driver: Driver::new(&s.driver, probes),
                guard: s.guard.clone(),
                ready: s
                    .ready_check
                    .as_ref()
                    .and_then(|r| s.checks.iter().find(|c| &c.name == r))
                    .cloned(),
            })
        })
        .collect()
}

/// Asks the group's guard, and when allowed runs the whole sequence under its lock.
pub async fn restart(
    cx: &GuardContext,
    group: &Group,
    members: &[Member],
    probes: &ProbeContext,
    request: RestartRequest,
) -> Result<Decision, GuardError> {
    tracing::info!(group = %group.name, event = "group_restart_requested",
        "group {}: restart of all members requested (source {}): {}",
        group.name, request.source,
        members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "));
    let sequence = sequence(cx, group, members, probes);
    guard::request(
        cx,
        &group.ledger_key(),
        &group.guard,
        Action::Run(Box::pin(sequence)),
        request,
    )
    .await
}

async fn sequence(
    cx: &GuardContext,
    group: &Group,
    members: &[Member],
    probes: &ProbeContext,
) -> RestartReport {
    let started = tokio::time::Instant::now();
    let fail = |detail: String| RestartReport {
        ok: false,
        detail,
        duration: started.elapsed(),
        action_required: None,
    };
    let mut stopped = Vec::new();
    for m in members.iter().rev() {
        let report = m.driver.stop().await;
        tracing::info!(group = %group.name, service = %m.name, event = "group_member_stopped",
            ok = report.ok, "group {}: stop {}: {}", group.name, m.name, report.detail);
        if !report.ok {
            return fail(format!(
                "stopping {} failed: {}; stopped before it: {}; nothing was started",
                m.name,
                report.detail,
                list(&stopped)
            ));
        }
        stopped.push(m.name.as_str());
    }
    let mut up = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let driver = &m.driver;
        let decision = guard::request(
            cx,
            &m.name,
            &m.guard,
            Action::Run(Box::pin(driver.start())),
            RestartRequest::forced(Source::Group),
        )
        .await;
        let not_started = || {
            list(
                &members[i + 1..]
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>(),
            )
        };
        match decision {
            Ok(d) if d.restarted() => {}
            Ok(d) => {
                let why = d
                    .report
                    .map(|r| r.detail)
                    .unwrap_or_else(|| d.verdict.to_string());
                return fail(format!(
                    "starting {} failed: {why}; started before it: {}; not started: {}",
                    m.name,
                    list(&up),
                    not_started()
                ));
            }
            Err(e) => {
                return fail(format!(
                    "starting {} failed: {e}; not started: {}",
                    m.name,
                    not_started()
                ));
            }
        }
        if let Some(check) = &m.ready {
            if let Err(reason) = wait_ready(check, group.ready_timeout, probes).await {
                return fail(format!(
                    "{} started but its ready_check {} did not pass within {}: {reason}; not started: {}",
                    m.name,
                    check.name,
                    vigil_core::format_duration(group.ready_timeout),
                    not_started()
                ));
            }
            tracing::info!(group = %group.name, service = %m.name, event = "group_member_ready",
                "group {}: {} is ready ({} passes)", group.name, m.name, check.name);
        }
        up.push(m.name.as_str());
    }
    RestartReport {
        ok: true,
        detail: format!(
            "group {}: stopped {}; started {} in {}",
            group.name,
            list(&stopped),
            list(&up),
            vigil_core::format_duration(started.elapsed())
        ),
        duration: started.elapsed(),
        action_required: None,
    }
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

/// The owner of one restart group's requests: one at a time, through the group's guard.
pub struct GroupActor {
    pub group: vigil_config::model::Group,
    pub config: Arc<Config>,
    pub members: BTreeMap<ServiceName, mpsc::Sender<ServiceMsg>>,
    pub guard: GuardContext,
    pub probes: Arc<ProbeContext>,
    pub cancel: CancellationToken,
}

impl GroupActor {
    pub async fn run(self, mut rx: mpsc::Receiver<GroupMsg>) {
        loop {
            let msg = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                msg = rx.recv() => match msg { Some(m) => m, None => return },
            };
            tracing::warn!(group = %self.group.name, service = %msg.member, check = %msg.check,
                event = "group_restart_wanted",
                "check {}/{} is failing: restarting group {}", msg.member, msg.check, self.group.name);
            let members = members(&self.config, &self.group, &self.probes);
            let fut = restart(
                &self.guard,
                &self.group,
                &members,
                &self.probes,
                RestartRequest::new(Source::Health),
            );
            let outcome = tokio::select! {
                res = fut => res,
                _ = async { self.cancel.cancelled().await; tokio::time::sleep(RESTART_SHUTDOWN_GRACE).await } => return,
            };
            match outcome {
                Ok(decision) => {
                    if let Some(rearm_at) = decision.given_up_until() {
                        let _ = rearm_at;
                        events::given_up(
                            &self.guard.alerts,
                            &self.group.ledger_key(),
                            RestartRequest::new(Source::Health),
                            &decision.verdict,
                            decision.decided_at,
                        );
                    }
                    if decision.verdict.is_allowed() {
                        let at = decision.finished_at.unwrap_or_else(clock::now);
                        for tx in self.members.values() {
                            let _ = tx.send(ServiceMsg::Restarted(at)).await;
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(group = %self.group.name, event = "guard_error", %error,
                    "group restart request failed")
                }
            }
        }
    }
}
