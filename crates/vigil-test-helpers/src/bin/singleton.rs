//! `vigil-singleton --lock PATH --log PATH [--exit-after-ms N]`: proves a service never
//! runs twice at once. It takes an exclusive `flock` on PATH without waiting: when it gets
//! it, it appends `start <pid> <unix_ns>` to the log and runs (holding the lock) until
//! killed, or exits 1 after N ms; when another instance holds it, it appends
//! `overlap <pid> <unix_ns>` and exits 3. Each line is one `write(2)` to an `O_APPEND`
//! file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("vigil-singleton: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<u8, String> {
    let mut lock = None;
    let mut log = None;
    let mut exit_after = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--lock" => lock = Some(PathBuf::from(value()?)),
            "--log" => log = Some(PathBuf::from(value()?)),
            "--exit-after-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--exit-after-ms: {e}"))?;
                exit_after = Some(Duration::from_millis(ms));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let lock = lock.ok_or("--lock is required")?;
    let log = log.ok_or("--log is required")?;
    let mut log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|e| format!("{}: {e}", lock.display()))?;
    if file.try_lock().is_err() {
        record(&mut log, "overlap")?;
        return Ok(3);
    }
    record(&mut log, "start")?;
    match exit_after {
        Some(d) => {
            std::thread::sleep(d);
            drop(file);
            Ok(1)
        }
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
}

fn record(log: &mut File, what: &str) -> Result<(), String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the singleton's log is wall-clock stamps"
    )]
    let now = SystemTime::now();
    let ns = now
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_nanos();
    let line = format!("{what} {} {ns}\n", std::process::id());
    log.write_all(line.as_bytes())
        .map_err(|e| format!("write: {e}"))
}
