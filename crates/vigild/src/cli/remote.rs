//! The commands a running daemon answers over its control socket: `status`, `history`,
//! `restart`, `reset`, and `heartbeat SERVICE/CHECK`. They need nothing from the
//! configuration (the daemon validates names against its own), so `main` sends them as
//! soon as `locate.rs` finds the daemon, without reading the configuration.

use crate::control::client::{self, DaemonClient};
use crate::exit;
use crate::render as output;

use super::{
    Command, HistoryArgs, ResetArgs, RestartArgs, StatusArgs, UsageError, from_daemon, parse_since,
};

/// A command the daemon can answer.
pub(super) enum Remote<'a> {
    Status(&'a StatusArgs),
    History(&'a HistoryArgs),
    Restart(&'a RestartArgs),
    Reset(&'a ResetArgs),
    Heartbeat { service: &'a str, check: &'a str },
}

impl Remote<'_> {
    /// `None` for commands the daemon does not answer, and for `heartbeat SERVICE`, whose
    /// check only the configuration names.
    pub(super) fn of(command: &Command) -> Option<Remote<'_>> {
        Some(match command {
            Command::Status(args) => Remote::Status(args),
            Command::History(args) => Remote::History(args),
            Command::Restart(args) => Remote::Restart(args),
            Command::Reset(args) => Remote::Reset(args),
            Command::Heartbeat(args) => {
                let (service, check) = args.name.split_once('/')?;
                Remote::Heartbeat { service, check }
            }
            _ => return None,
        })
    }
}

/// Sends the command and prints the answer; the exit code.
pub(super) async fn run(daemon: &DaemonClient, command: Remote<'_>) -> anyhow::Result<u8> {
    match command {
        Remote::Status(args) => {
            let body = daemon
                .status(
                    args.service.as_deref(),
                    args.json,
                    output::stdout_wants_color(),
                )
                .await
                .map_err(from_daemon)?;
            print!("{body}");
            Ok(exit::OK)
        }
        Remote::History(args) => {
            let since = match &args.since {
                Some(text) => Some(parse_since(text)?),
                None => None,
            };
            let body = daemon
                .history(
                    args.service.as_deref(),
                    since.map(vigil_core::Timestamp::as_millis),
                    args.json,
                    output::stdout_wants_color(),
                )
                .await
                .map_err(from_daemon)?;
            print!("{body}");
            Ok(exit::OK)
        }
        Remote::Restart(args) => restart(daemon, &args.service, args.force, args.json).await,
        Remote::Reset(args) => match daemon.reset(&args.service).await {
            Ok(cleared) => {
                println!(
                    "{}: restart history reset ({cleared} restart(s) no longer count; given-up state cleared)",
                    args.service
                );
                Ok(exit::OK)
            }
            Err(client::ClientError::Refused {
                status: 409,
                message,
            }) => {
                eprintln!("{message}");
                Ok(exit::FAILED)
            }
            Err(e) => Err(from_daemon(e)),
        },
        Remote::Heartbeat { service, check } => {
            if service.is_empty() || check.is_empty() {
                return Err(anyhow::Error::new(UsageError(format!(
                    "`{service}/{check}`: name the heartbeat check as SERVICE/CHECK"
                ))));
            }
            let at = daemon
                .heartbeat(service, check)
                .await
                .map_err(from_daemon)?;
            println!("{service}/{check}: heartbeat recorded at {at}");
            Ok(exit::OK)
        }
    }
}

/// A manual restart through the daemon's guard: 0 restarted, 1 skipped, denied or failed.
pub(super) async fn restart(
    daemon: &DaemonClient,
    service: &str,
    force: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let (body, answer) = daemon.restart(service, force).await.map_err(from_daemon)?;
    if json {
        print!("{body}");
    } else {
        println!("{}: {}", answer.service, answer.message);
        if let (Some(outcome), Some(detail)) = (&answer.outcome, &answer.detail) {
            let status = if outcome == "ok" {
                "restarted"
            } else {
                "restart FAILED"
            };
            println!("{}: {status}: {detail}", answer.service);
        }
    }
    Ok(if answer.outcome.as_deref() == Some("ok") {
        exit::OK
    } else {
        exit::FAILED
    })
}
