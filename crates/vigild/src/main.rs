//! The `vigil` binary: everything lives in the `vigild` library; this file only maps the
//! command's result to the process exit code (see `exit.rs`).

use std::process::ExitCode;

fn main() -> ExitCode {
    // The exec wrapper (`drivers/exec/spawn.rs`) must do nothing but exec the service.
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|a| a == vigild::drivers::exec::spawn::WRAP_ARG)
    {
        let rest: Vec<_> = args.collect();
        return ExitCode::from(vigild::drivers::exec::spawn::exec_wrapper(&rest));
    }
    ExitCode::from(vigild::cli::main())
}
