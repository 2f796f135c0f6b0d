//! `vigil check [SERVICE...] [--no-restart]`: one pass of the checks, like seed 000's cron
//! script. Each check runs (with retries) and is folded into its saved health exactly as
//! the daemon's check loop does (`checks::fold`); a failing one's action goes to the
//! service's actor (or its group's), the same actor the daemon runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use vigil_checks::{CheckRun, ProbeContext};
use vigil_config::model::{Argv, Config, DriverSpec, OnFailure, Service};
use vigil_core::health::HealthStatus;
use vigil_core::lifecycle::{HoldKind, Op};
use vigil_core::{RestartRequest, Source, Timestamp};

use super::{CheckArgs, guard_context, service_or_usage};
use crate::checks;
use crate::drivers::Reader;
use crate::exit;
use crate::guard::{self, GuardContext};
use crate::ledger::CheckStateRow;
use crate::platform::clock;
use crate::render::hold::HoldJson;
use crate::render::{self as output, ActionReport, CheckReport, ServiceCheckReport};
use crate::service::oneshot::{Actors, EXEC_OWNED_BY_DAEMON};
use crate::service::protocol::ServiceMsg;

/// What a failing check asks for.
enum Wanted {
    Restart,
    Repair(Argv),
    Group,
}

pub(super) async fn check(config: &Config, args: CheckArgs) -> anyhow::Result<u8> {
    let mut selected = Vec::new();
    for name in &args.services {
        selected.push(service_or_usage(config, name)?);
    }
    if selected.is_empty() {
        selected = config.services.iter().collect();
    }
    let cx = guard_context(config)?;
    let probes = Arc::new(ProbeContext::new());
    let saved: BTreeMap<(String, String), CheckStateRow> = cx
        .ledger
        .call(|l| l.check_states())
        .await?
        .into_iter()
        .map(|r| ((r.service.clone(), r.check.clone()), r))
        .collect();
    let mut actors = Actors::new(cx.clone(), probes.clone());

    let mut reports = Vec::new();
    let mut any_failing = false;
    for service in selected {
        tracing::info!(service = %service.name, event = "check_start", "=== Health Check Start: {} ===", service.name);
        let (check_reports, wanted) = run_checks(&cx, &probes, service, &saved).await?;
        let hold = {
            let (n, now) = (service.name.to_string(), clock::now());
            cx.ledger
                .call(move |l| l.current_hold(&n, now))
                .await?
                .map(|h| HoldJson::of(&h, now))
        };
        let stopped = hold.as_ref().is_some_and(|h| h.state == "stopped");
        // A stopped service is down on purpose: its failing checks are expected.
        any_failing |= !stopped && check_reports.iter().any(|c| c.status == "failing");
        let action = match wanted {
            None => None,
            // Held: no actor is asked (an exec service has none here; a dry run asks no
            // one), and the answer is the same the actor gives.
            Some((check_name, wanted))
                if hold.is_some() && (args.no_restart || is_exec(service)) =>
            {
                let h = hold.as_ref().map(HoldJson::describe);
                let kind = if stopped {
                    HoldKind::Stopped
                } else {
                    HoldKind::Paused
                };
                Some(ActionReport::held(
                    &check_name,
                    matches!(wanted, Wanted::Repair(_)),
                    kind,
                    h,
                ))
            }
            Some((check_name, wanted)) => Some(
                act(
                    config,
                    &cx,
                    &mut actors,
                    service,
                    &check_name,
                    wanted,
                    args.no_restart,
                )
                .await?,
            ),
        };
        let action = action.map(|mut a| {
            if let (Some(h), "held") = (&hold, a.verdict) {
                a.message = format!("Restart HELD: the service is {}", h.describe());
            }
            a
        });
        let failing_here = check_reports.iter().any(|c| c.status == "failing");
        let verdict_line = if failing_here { "FAILED" } else { "PASSED" };
        tracing::info!(service = %service.name, event = "check_end", "=== Health Check {verdict_line}: {} ===", service.name);
        reports.push(ServiceCheckReport {
            service: service.name.to_string(),
            checks: check_reports,
            action,
            hold,
        });
    }
    actors.close().await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::check_json(&reports, any_failing))?
        );
    } else {
        print!("{}", output::render_check(&reports));
    }
    Ok(if any_failing { exit::FAILED } else { exit::OK })
}

/// Runs a service's checks (concurrently), folds each into its saved health, saves it,
/// and says which failing check's action is wanted first.
async fn run_checks(
    cx: &GuardContext,
    probes: &ProbeContext,
    service: &Service,
    saved: &BTreeMap<(String, String), CheckStateRow>,
) -> anyhow::Result<(Vec<CheckReport>, Option<(String, Wanted)>)> {
    for c in &service.checks {
        let key = (service.name.to_string(), c.name.to_string());
        checks::resume(
            &service.name,
            c,
            saved.get(&key).and_then(|r| r.position.as_deref()),
        );
    }
    let runs = join_all(
        service
            .checks
            .iter()
            .map(|c| checks::run_once(&service.name, c, probes, &cx.ledger, None, clock::now())),
    )
    .await;
    let started_at = {
        let n = service.name.to_string();
        cx.ledger
            .call(move |l| l.last_successful_restart(&n))
            .await?
    };
    let reader = Reader::new(&service.driver, probes);
    // The driver's uptime (a container's or unit's start): asked once, by the first check
    // with a grace period, if any.
    let mut driver_started: Option<Option<Option<Timestamp>>> = None;
    let mut reports = Vec::new();
    let mut wanted = None;
    for (check, run) in service.checks.iter().zip(runs) {
        let now = clock::now();
        let key = (service.name.to_string(), check.name.to_string());
        let row = saved.get(&key);
        let mut health = row.map(|r| r.health).unwrap_or_default();
        // A restart since the saved state: the new instance starts unknown.
        if let (Some(start), Some(last_run)) = (started_at, row.and_then(|r| r.last_run))
            && start > last_run
        {
            health.reset(now);
        }
        let mut announced = matches!(health.status, HealthStatus::Failing | HealthStatus::Warning);
        let uptime = if check.grace.is_zero() {
            started_at.map(|t| now.saturating_since(t))
        } else {
            // The driver's uptime when it knows (systemd: ActiveEnterTimestamp).
            let driver = match driver_started {
                Some(answer) => answer,
                None => *driver_started.insert(reader.started_at().await),
            };
            match driver {
                Some(Some(t)) => Some(now.saturating_since(t)),
                Some(None) => None,
                None => started_at.map(|t| now.saturating_since(t)),
            }
        };
        let took = checks::run_time(check, &run);
        let folded = checks::fold(&mut health, &mut announced, check, &run, uptime, now, took);
        cx.events.publish(&service.name, folded.event);
        if folded.obs.in_grace.is_none() {
            let row = CheckStateRow {
                service: service.name.to_string(),
                check: check.name.to_string(),
                health,
                last_verdict: Some(run.verdict),
                last_reason: run.reason.clone(),
                last_run: Some(now),
                position: checks::position(check),
            };
            cx.ledger.call(move |l| l.save_check_state(&row)).await?;
        } else if let Some(position) = checks::position(check) {
            let (s, c) = (service.name.to_string(), check.name.to_string());
            cx.ledger
                .call(move |l| l.save_check_position(&s, &c, &position))
                .await?;
        }
        if folded.wants_action && wanted.is_none() {
            wanted = match &check.on_failure {
                OnFailure::Restart => Some(Wanted::Restart),
                OnFailure::Exec(argv) => Some(Wanted::Repair(argv.clone())),
                OnFailure::RestartGroup => Some(Wanted::Group),
                OnFailure::Alert => None,
            }
            .map(|w| (check.name.to_string(), w));
        }
        reports.push(report(check, &run, health.status, folded.obs.in_grace));
    }
    Ok((reports, wanted))
}

fn report(
    check: &vigil_config::model::Check,
    run: &CheckRun,
    status: HealthStatus,
    in_grace: Option<std::time::Duration>,
) -> CheckReport {
    CheckReport {
        name: check.name.to_string(),
        kind: check.kind.as_str(),
        verdict: run.verdict.as_str(),
        status: status.as_str(),
        reason: run.reason.clone(),
        attempts: run.attempts.len(),
        in_grace_secs: in_grace.map(|d| d.as_secs()),
    }
}

/// Carries out a failing check's action through the service's (or group's) actor, or with
/// `--no-restart` says what the guard would say.
async fn act(
    config: &Config,
    cx: &GuardContext,
    actors: &mut Actors,
    service: &Service,
    check_name: &str,
    wanted: Wanted,
    dry_run: bool,
) -> anyhow::Result<ActionReport> {
    let request = RestartRequest::new(Source::Health);
    let repair = matches!(wanted, Wanted::Repair(_));
    if let Wanted::Group = wanted {
        let group = config
            .group_of(service.name.as_str())
            .ok_or_else(|| anyhow::anyhow!("{} is in no restart group", service.name))?;
        let mut report = if dry_run {
            let verdict = guard::preview(cx, &group.ledger_key(), &group.guard, request).await?;
            tracing::info!(service = %service.name, check = %check_name, event = "dry_run",
                "--no-restart: would restart group {} because check {check_name} is failing; the guard would say: {verdict}", group.name);
            ActionReport::dry_run(check_name, false, &verdict)
        } else {
            let inbox = actors.group(config, group)?;
            let outcome =
                Actors::ask(&inbox, |reply| ServiceMsg::restart(request, Some(reply))).await;
            ActionReport::from_outcome(check_name, false, &outcome)
        };
        report.kind = "restart-group";
        return Ok(report);
    }
    if dry_run {
        let verdict = guard::preview(cx, &service.name, &service.guard, request).await?;
        let what = if repair {
            "run the repair command"
        } else {
            "restart"
        };
        tracing::info!(service = %service.name, check = %check_name, event = "dry_run",
            "--no-restart: would {what} {} because check {check_name} is failing; the guard would say: {verdict}", service.name);
        return Ok(ActionReport::dry_run(check_name, repair, &verdict));
    }
    if !repair && matches!(service.driver, DriverSpec::Exec(_)) {
        tracing::warn!(service = %service.name, check = %check_name, event = "exec_not_owned",
            "check {check_name} is failing, but {EXEC_OWNED_BY_DAEMON}");
        return Ok(ActionReport {
            check: check_name.to_owned(),
            kind: "restart",
            dry_run: true,
            verdict: "skipped",
            message: EXEC_OWNED_BY_DAEMON.to_owned(),
            outcome: None,
            detail: None,
        });
    }
    let inbox = actors.service(service)?;
    let outcome = Actors::ask(&inbox, |reply| match wanted {
        Wanted::Repair(argv) => {
            ServiceMsg::request(Op::Repair, Some(request), Some(argv), Some(reply))
        }
        _ => ServiceMsg::restart(request, Some(reply)),
    })
    .await;
    Ok(ActionReport::from_outcome(check_name, repair, &outcome))
}

fn is_exec(service: &Service) -> bool {
    matches!(service.driver, DriverSpec::Exec(_))
}

/// Awaits futures concurrently, keeping their order (a tiny `join_all`).
async fn join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let futs: Vec<_> = futs.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut pending: Vec<(usize, std::pin::Pin<Box<F>>)> = futs.into_iter().enumerate().collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, fut)| match fut.as_mut().poll(cx) {
            std::task::Poll::Ready(out) => {
                outputs[*i] = Some(out);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
