//! `vigil-restart-recorder`: stands in for a restart command and proves restarts never
//! overlap.
//!
//! `--log PATH --hold-ms N [--exit CODE]`: appends `start <pid> <unix_ns> <restart id>`,
//! sleeps N ms, appends `end <pid> <unix_ns> <restart id>`, exits CODE (default 0). The
//! restart id is `$VIGIL_RESTART_ID` (the ledger row of the restart Vigil runs it for), or
//! `-`. Each line is one `write(2)` to an `O_APPEND` file, so concurrent recorders never
//! interleave within a line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Args {
    log: PathBuf,
    hold: Duration,
    exit: u8,
}

fn parse_args() -> Result<Args, String> {
    let mut log = None;
    let mut hold = None;
    let mut exit = 0u8;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--log" => log = Some(PathBuf::from(value()?)),
            "--hold-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--hold-ms: {e}"))?;
                hold = Some(Duration::from_millis(ms));
            }
            "--exit" => exit = value()?.parse().map_err(|e| format!("--exit: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        log: log.ok_or("--log is required")?,
        hold: hold.ok_or("--hold-ms is required")?,
        exit,
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("vigil-restart-recorder: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<u8, String> {
    let args = parse_args()?;
    let mut log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&args.log)
        .map_err(|e| format!("{}: {e}", args.log.display()))?;
    record(&mut log, "start")?;
    std::thread::sleep(args.hold);
    record(&mut log, "end")?;
    Ok(args.exit)
}

fn record(log: &mut File, what: &str) -> Result<(), String> {
    let id = std::env::var("VIGIL_RESTART_ID").unwrap_or_else(|_| "-".to_owned());
    let line = format!("{what} {} {} {id}\n", std::process::id(), unix_ns()?);
    // One write(2): O_APPEND makes it atomic with respect to other appenders.
    let written = log
        .write(line.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    if written != line.len() {
        return Err(format!("short write ({written} of {} bytes)", line.len()));
    }
    Ok(())
}

fn unix_ns() -> Result<u128, String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the recorder's whole job is wall-clock timestamps"
    )]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .map_err(|e| format!("clock before 1970: {e}"))
}
