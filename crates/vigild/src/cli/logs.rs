//! `vigil logs SERVICE [-n N] [-f]`: an exec service's captured output, from the daemon
//! that captures it (its in-memory ring per service, followed live with `-f`: `remote.rs`).
//! Without a daemon (here), the files the output goes to when `stdout`/`stderr` are files.

use std::path::Path;

use vigil_config::model::{Config, DriverSpec, OutputTarget};

use super::{LogsArgs, UsageError, service_or_usage};
use crate::exit;

pub(super) async fn logs(config: &Config, args: LogsArgs) -> anyhow::Result<u8> {
    let service = service_or_usage(config, &args.service)?;
    let DriverSpec::Exec(spec) = &service.driver else {
        return Err(anyhow::Error::new(UsageError(format!(
            "{}: `vigil logs` shows what exec services print; this one is driver = \"{}\" (its output is wherever that driver keeps it, e.g. `journalctl -u` or `docker logs`)",
            service.name,
            service.driver.kind()
        ))));
    };
    let files: Vec<(&str, &Path)> = [("stdout", &spec.stdout), ("stderr", &spec.stderr)]
        .into_iter()
        .filter_map(|(name, target)| match target {
            OutputTarget::File(path) => Some((name, path.as_path())),
            _ => None,
        })
        .collect();
    if files.is_empty() || args.follow {
        eprintln!(
            "{}: no daemon is running; `vigil run` keeps what exec services print{}",
            service.name,
            if files.is_empty() {
                ""
            } else {
                " (without it, -f has nothing to follow; the files are there)"
            }
        );
        return Ok(exit::FAILED);
    }
    for (stream, path) in files {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        let lines: Vec<&str> = text.lines().collect();
        let skip = lines.len().saturating_sub(args.lines);
        println!("==> {} ({stream}) <==", path.display());
        for line in &lines[skip..] {
            println!("{line}");
        }
    }
    Ok(exit::OK)
}
