//! `vigil-sleeper`: prints its pid on stdout and sleeps until killed; for supervision
//! tests. `--ignore-term` makes it ignore SIGTERM (set before the pid is printed, so a
//! test that has read the pid knows the disposition is in place).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let mut ignore_term = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--ignore-term" => ignore_term = true,
            other => {
                eprintln!("vigil-sleeper: unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    if ignore_term {
        ignore_sigterm();
    }
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{}", std::process::id())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(2);
    }
    drop(stdout);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[allow(unsafe_code, reason = "std has no way to set a signal disposition")]
fn ignore_sigterm() {
    // SAFETY: SIG_IGN installs no handler code; nothing runs asynchronously.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}
