//! `vigil stop|start|pause|resume SERVICE|@GROUP [--for D] [--reason T]`: an operator's
//! hold. With a daemon, a request over the control socket (`remote.rs`; the daemon
//! records the caller's uid from the socket's peer credentials); without one (cron mode,
//! here), the same actors run for this command, and the CLI's own user is recorded.

use std::sync::Arc;

use vigil_checks::ProbeContext;
use vigil_config::model::Config;
use vigil_core::lifecycle::HoldKind;

use super::{HoldArgs, UsageError, guard_context};
use crate::exit;
use crate::guard::GuardContext;
use crate::ledger::{HoldRow, OperatorRow};
use crate::platform::clock;
use crate::render::hold::{self as words, Answer};
use crate::service::oneshot::{Actors, OneShotError};
use crate::service::operator::{self, Target};
use crate::service::protocol::{Control, OperatorCommand, Outcome};

pub(super) async fn hold(config: &Config, action: Control, args: HoldArgs) -> anyhow::Result<u8> {
    let usage = |e: operator::Refused| anyhow::Error::new(UsageError(e.to_string()));
    let now = clock::now();
    let target = operator::target(config, &args.target).map_err(usage)?;
    let until =
        operator::prepare(config, target, action, args.for_.as_deref(), now).map_err(usage)?;
    let label = target.label();
    let command = OperatorCommand {
        action,
        until,
        caller: Some(operator::current_caller()),
        reason: args.reason.clone(),
        source: "operator",
    };
    let cx = guard_context(config)?;
    let outcome = match run_actors(config, &cx, target, command.clone()).await? {
        Some(outcome) => outcome,
        None => record_only(config, &cx, target, command).await?,
    };
    let key = target.key().to_string();
    let now = clock::now();
    let current = cx.ledger.call(move |l| l.current_hold(&key, now)).await?;
    let answer = words::answer(&label, action, &outcome, current.as_ref(), now);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print_plain(&answer, current.as_ref(), now);
    }
    Ok(if answer.ok { exit::OK } else { exit::FAILED })
}

fn print_plain(answer: &Answer, hold: Option<&HoldRow>, now: vigil_core::Timestamp) {
    let line = hold.map(|h| words::describe_hold(h, now));
    print_answer(&answer.service, answer.ok, &answer.message, line.as_deref());
}

pub(super) fn print_answer(label: &str, ok: bool, message: &str, hold: Option<&str>) {
    if ok {
        println!("{label}: {message}");
    } else {
        eprintln!("{label}: {message}");
    }
    if let Some(hold) = hold {
        println!("{label}: now {hold}");
    }
}

/// Runs the command through this command's own actors; `None` when an exec service is
/// involved (its process belongs to `vigil run`, which is not running).
async fn run_actors(
    config: &Config,
    cx: &GuardContext,
    target: Target<'_>,
    command: OperatorCommand,
) -> anyhow::Result<Option<Outcome>> {
    let mut actors = Actors::new(cx.clone(), Arc::new(ProbeContext::new()));
    let started = match target {
        Target::Service(s) => actors.service(s).map(drop),
        Target::Group(g) => actors.group(config, g).map(drop),
    };
    match started {
        Ok(()) => {}
        Err(OneShotError::ExecOwnedByDaemon(_)) => {
            actors.close().await;
            return Ok(None);
        }
        Err(e) => {
            actors.close().await;
            return Err(e.into());
        }
    }
    let outcome = operator::apply(config, target, command, |name| actors.inbox(name)).await;
    actors.close().await;
    Ok(Some(outcome))
}

/// No daemon runs, and an exec service has no process to act on: the hold is recorded,
/// for `vigil run` to honour when it starts (a stopped service is not spawned).
async fn record_only(
    config: &Config,
    cx: &GuardContext,
    target: Target<'_>,
    command: OperatorCommand,
) -> anyhow::Result<Outcome> {
    let mut keys = vec![(
        target.key().to_string(),
        command.source,
        command.caller.clone(),
    )];
    if let Target::Group(g) = target {
        for m in g
            .members
            .iter()
            .filter(|m| config.service(m.as_str()).is_some())
        {
            keys.push((m.to_string(), "group", None));
        }
    }
    let first = keys[0].0.clone();
    let action = command.action;
    let outcome = cx
        .ledger
        .call(move |l| -> Result<Outcome, crate::ledger::LedgerError> {
            let now = clock::now();
            let held = l.current_hold(&first, now)?.map(|h| h.kind);
            match (action, held) {
                (Control::Pause, Some(HoldKind::Stopped)) => {
                    return Ok(Outcome::Held(HoldKind::Stopped));
                }
                (Control::Resume, h) if h != Some(HoldKind::Paused) => {
                    return Ok(done("not paused"));
                }
                _ => {}
            }
            for (key, source, caller) in keys {
                let reason = match source {
                    "group" => Some(format!("group {first} {}", action.past())),
                    _ => command.reason.clone(),
                };
                l.record_operator(
                    &key,
                    &OperatorRow {
                        action: action.action(),
                        at: now,
                        until: command.until,
                        caller,
                        reason,
                        source: source.to_owned(),
                    },
                )?;
            }
            Ok(done(match action {
                Control::Stop => "stop recorded: no daemon runs, so there is nothing to stop now; `vigil run` will not start it",
                Control::Start => "stop cleared: no daemon runs; `vigil run` starts it",
                Control::Pause => "pause recorded: `vigil run` will hold back automatic actions",
                Control::Resume => "pause cleared",
            }))
        })
        .await?;
    Ok(outcome)
}

fn done(detail: &str) -> Outcome {
    Outcome::Done(vigil_core::RestartReport {
        ok: true,
        detail: detail.to_owned(),
        duration: std::time::Duration::ZERO,
        action_required: None,
    })
}
