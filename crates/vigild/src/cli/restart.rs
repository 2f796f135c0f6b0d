//! `vigil restart SERVICE [--force]`: a manual restart through the guard. With a daemon,
//! a message to the service's actor over the control socket (`remote.rs`); without one
//! (cron mode, here), the same actor run for this command.

use std::sync::Arc;

use vigil_checks::ProbeContext;
use vigil_config::model::Config;
use vigil_core::{RestartRequest, Source};

use super::{RestartArgs, guard_context, service_or_usage};
use crate::exit;
use crate::render as output;
use crate::render::hold as words;
use crate::service::oneshot::{Actors, OneShotError};
use crate::service::protocol::{Outcome, ServiceMsg};

pub(super) async fn restart(config: &Config, args: RestartArgs) -> anyhow::Result<u8> {
    let service = service_or_usage(config, &args.service)?;
    let cx = guard_context(config)?;
    let request = if args.force {
        RestartRequest::forced(Source::Manual)
    } else {
        RestartRequest::new(Source::Manual)
    };
    let mut actors = Actors::new(cx.clone(), Arc::new(ProbeContext::new()));
    let inbox = match actors.service(service) {
        Ok(inbox) => inbox,
        Err(e @ OneShotError::ExecOwnedByDaemon(_)) => {
            eprintln!("{e}");
            return Ok(exit::FAILED);
        }
        Err(e) => return Err(e.into()),
    };
    let outcome = Actors::ask(&inbox, |reply| ServiceMsg::restart(request, Some(reply))).await;
    actors.close().await;
    let decision = match outcome {
        Outcome::Decided(d) => d,
        Outcome::Held(kind) => {
            let name = service.name.to_string();
            let now = crate::platform::clock::now();
            let hold = cx.ledger.call(move |l| l.current_hold(&name, now)).await?;
            eprintln!(
                "{}",
                words::held_restart(service.name.as_str(), kind, hold.as_ref(), now)
            );
            return Ok(exit::FAILED);
        }
        other => {
            eprintln!("{}: {}", service.name, other.describe());
            return Ok(exit::FAILED);
        }
    };
    let code = if decision.restarted() {
        exit::OK
    } else {
        exit::FAILED
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::decision_json(&service.name, &decision))?
        );
    } else {
        println!("{}: {}", service.name, decision.verdict);
        if let Some(report) = &decision.report {
            let status = if report.ok {
                "restarted"
            } else {
                "restart FAILED"
            };
            println!("{}: {status}: {}", service.name, report.detail);
        }
    }
    Ok(code)
}
