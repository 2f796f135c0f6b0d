//! The `vigil` binary: command-line parsing and dispatch. Everything else lives in the
//! library modules; this file maps errors to exit codes (see `exit.rs`).

mod cli;
mod clock;
mod daemon;
mod driver;
mod events;
mod exit;
mod guard;
mod heartbeat;
mod ledger;
mod lock;
mod log;
mod output;

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(cli::main())
}
