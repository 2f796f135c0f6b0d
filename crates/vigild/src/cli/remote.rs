//! The commands a running daemon answers over its control socket: `status`, `history`,
//! `restart`, `reset`, `stop`, `start`, `pause`, `resume`, `logs`, and
//! `heartbeat SERVICE/CHECK`. They need nothing from the
//! configuration (the daemon validates names against its own), so `main` sends them as
//! soon as `locate.rs` finds the daemon, without reading the configuration.

use crate::control::client::{self, DaemonClient};
use crate::exit;
use crate::render as output;

use super::{
    Command, HistoryArgs, LogsArgs, ResetArgs, RestartArgs, StatusArgs, UsageError, from_daemon,
    parse_since,
};
use crate::render::hold::HoldJson;
use crate::service::protocol::Control;

/// A command the daemon can answer.
pub(super) enum Remote<'a> {
    Status(&'a StatusArgs),
    History(&'a HistoryArgs),
    Restart(&'a RestartArgs),
    Reset(&'a ResetArgs),
    Heartbeat { service: &'a str, check: &'a str },
    Hold(Hold<'a>),
    Logs(&'a LogsArgs),
}

/// An operator's stop, start, pause or resume.
pub(super) struct Hold<'a> {
    pub(super) action: Control,
    pub(super) target: &'a str,
    pub(super) for_: Option<&'a str>,
    pub(super) reason: Option<&'a str>,
    pub(super) json: bool,
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
            Command::Stop(a) | Command::Pause(a) => Remote::Hold(Hold {
                action: if matches!(command, Command::Stop(_)) {
                    Control::Stop
                } else {
                    Control::Pause
                },
                target: &a.target,
                for_: a.for_.as_deref(),
                reason: a.reason.as_deref(),
                json: a.json,
            }),
            Command::Start(a) | Command::Resume(a) => Remote::Hold(Hold {
                action: if matches!(command, Command::Start(_)) {
                    Control::Start
                } else {
                    Control::Resume
                },
                target: &a.target,
                for_: None,
                reason: a.reason.as_deref(),
                json: a.json,
            }),
            Command::Logs(args) => Remote::Logs(args),
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
        Remote::Hold(h) => {
            let (body, answer) = daemon
                .operator(h.target, h.action, h.for_, h.reason)
                .await
                .map_err(from_daemon)?;
            if h.json {
                print!("{body}");
            } else {
                let line = answer.hold.as_ref().map(HoldJson::describe);
                super::hold::print_answer(
                    &answer.service,
                    answer.ok,
                    &answer.message,
                    line.as_deref(),
                );
            }
            Ok(if answer.ok { exit::OK } else { exit::FAILED })
        }
        Remote::Logs(args) => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            daemon
                .logs(&args.service, args.lines, args.follow, args.json, |chunk| {
                    // A closed stdout (`| head`) ends the command on the next write.
                    let _ = stdout.write_all(chunk).and_then(|()| stdout.flush());
                })
                .await
                .map_err(from_daemon)?;
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
