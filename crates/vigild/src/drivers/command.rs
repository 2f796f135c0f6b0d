//! `driver = "command"` and repair commands: argv commands run to completion through
//! `vigil_checks::process` (own process group, bounded output, group kill on timeout).

use std::time::Duration;

use vigil_checks::process::{self, Exit, Leftovers, RunSpec};
use vigil_config::model::Argv;

use super::RestartReport;
use crate::guard::Tracker;

/// Output kept from a driver or repair command, for the one-line report.
const CAPTURE_LIMIT: usize = 64 * 1024;

/// Runs a driver or repair command: success is exit code 0 within `timeout`. With the
/// `tracker` of an allowed restart, the command is recorded before it starts, its pid
/// once spawned, and its process group inherits the restart's lock.
pub async fn run_command(
    argv: &Argv,
    timeout: Duration,
    tracker: Option<&Tracker>,
) -> RestartReport {
    if let Some(t) = tracker {
        t.starting(&format!("`{argv}`")).await;
    }
    let on_spawn = |pid: u32| {
        if let Some(t) = tracker {
            t.spawned(pid);
        }
    };
    // The restart's ledger row, for the command's own logs (and to tie each run of it to
    // its row, whatever happens to Vigil meanwhile).
    let env = tracker
        .map(|t| vec![("VIGIL_RESTART_ID".to_owned(), t.intent().to_string())])
        .unwrap_or_default();
    let spec = RunSpec {
        capture_limit: CAPTURE_LIMIT,
        env: &env,
        // A restart command may start the service in the background (e.g.
        // `managed_start.sh restart`); what it leaves running is the service.
        leftovers: Leftovers::Keep,
        inherit: tracker.map(Tracker::fd),
        on_spawn: Some(&on_spawn),
        ..RunSpec::new(argv, timeout)
    };
    match process::run(spec).await {
        Err(e) => RestartReport {
            ok: false,
            detail: format!("`{argv}`: {e}"),
            duration: Duration::ZERO,
            action_required: None,
        },
        Ok(out) => {
            let took = vigil_core::format_duration(out.duration);
            let (ok, how) = match (out.timed_out, out.exit) {
                (true, _) | (false, None) => (
                    false,
                    format!(
                        "timed out after {} (process group killed)",
                        vigil_core::format_duration(timeout)
                    ),
                ),
                (false, Some(Exit::Code(0))) => (true, format!("exit code 0 in {took}")),
                (false, Some(exit)) => (false, format!("{exit} after {took}")),
            };
            let detail = if ok {
                format!("`{argv}`: {how}")
            } else {
                match first_line(&out.stderr).or_else(|| first_line(&out.stdout)) {
                    Some(line) => format!("`{argv}`: {how}: {line}"),
                    None => format!("`{argv}`: {how}"),
                }
            };
            RestartReport {
                ok,
                detail,
                duration: out.duration,
                action_required: None,
            }
        }
    }
}

fn first_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut line = line.to_owned();
    if line.len() > 200 {
        let mut cut = 200;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    Some(line)
}
