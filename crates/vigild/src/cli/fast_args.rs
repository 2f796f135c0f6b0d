//! `vigil check`'s command line as cron writes it, read without clap (issue 17).
//!
//! Building clap's command tree and matching against it was 145,000 of the 2.2 million
//! instructions of a cron `vigil check` (callgrind, dist build), with about 30 page
//! faults for its heap, its 16 KB stack frames and its code. So the usual forms are read
//! here: `check` with `--json`, `--no-restart` and service names; the global
//! `-c PATH`, `--config PATH`, `--config=PATH`, `--log-format human|json` (and `=`)
//! before or after `check`; `$VIGIL_CONFIG` and `$VIGIL_SOCKET` when set and not empty.
//!
//! Anything else returns `None` and goes through clap exactly as before: help, version,
//! any other command, an option that is unknown, repeated, abbreviated or given a value
//! clap would refuse or read otherwise (empty, or starting with `-`), `--`, an argument
//! that is not UTF-8, an empty `$VIGIL_CONFIG`/`$VIGIL_SOCKET`. So what this returns is
//! what clap returns; the tests compare the two on every form it takes.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{CheckArgs, Cli, Command, LogFormatArg};

/// The parsed command line, when it is a plain `vigil check`; `env` reads a variable.
pub(super) fn check(args: &[OsString], env: impl Fn(&str) -> Option<OsString>) -> Option<Cli> {
    let mut config = None;
    let mut log_format = None;
    let (mut json, mut no_restart) = (false, false);
    let mut services = Vec::new();
    let mut seen_check = false;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let arg = arg.to_str()?;
        if arg == "-c" {
            set_once(&mut config, PathBuf::from(value(rest.next())?))?;
        } else if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, v)) => (name, Some(v)),
                None => (long, None),
            };
            let mut take = || match inline {
                Some(v) => value(Some(v)),
                None => value(rest.next()),
            };
            match name {
                "config" => set_once(&mut config, PathBuf::from(take()?))?,
                "log-format" => {
                    let format = match take()? {
                        "human" => LogFormatArg::Human,
                        "json" => LogFormatArg::Json,
                        _ => return None,
                    };
                    set_once(&mut log_format, format)?;
                }
                // `check`'s own flags, only after it.
                "json" | "no-restart" if seen_check && inline.is_none() => {
                    let flag = if name == "json" {
                        &mut json
                    } else {
                        &mut no_restart
                    };
                    if std::mem::replace(flag, true) {
                        return None;
                    }
                }
                _ => return None,
            }
        } else if arg.starts_with('-') {
            return None;
        } else if seen_check {
            services.push(arg.to_owned());
        } else if arg == "check" {
            seen_check = true;
        } else {
            return None;
        }
    }
    if !seen_check {
        return None;
    }
    if config.is_none() {
        config = from_env(&env, "VIGIL_CONFIG")?;
    }
    Some(Cli {
        config,
        socket: from_env(&env, "VIGIL_SOCKET")?,
        log_format,
        command: Command::Check(CheckArgs {
            services,
            no_restart,
            json,
        }),
    })
}

/// An option's value as clap takes it without complaint: UTF-8 here, not empty, not
/// looking like an option.
fn value<S: AsRef<std::ffi::OsStr> + ?Sized>(v: Option<&S>) -> Option<&str> {
    v?.as_ref()
        .to_str()
        .filter(|v| !v.is_empty() && !v.starts_with('-'))
}

/// Sets an option given once; `None` (clap's business) when it was already given.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot.replace(value) {
        None => Some(()),
        Some(_) => None,
    }
}

/// An environment default: `Some(None)` when unset, `None` (clap's business) when empty.
fn from_env(env: &impl Fn(&str) -> Option<OsString>, name: &str) -> Option<Option<PathBuf>> {
    match env(name) {
        None => Some(None),
        Some(v) if v.is_empty() => None,
        Some(v) => Some(Some(PathBuf::from(v))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

    use super::*;
    use clap::Parser;

    fn argv(line: &str) -> Vec<OsString> {
        std::iter::once("vigil")
            .chain(line.split(' ').filter(|a| !a.is_empty()))
            .map(OsString::from)
            .collect()
    }

    /// What clap makes of `args` with this process's environment, as text.
    fn clap(args: &[OsString]) -> String {
        format!("{:?}", Cli::try_parse_from(args).map_err(|e| e.kind()))
    }

    fn fast(args: &[OsString]) -> Option<Cli> {
        check(args, |name| std::env::var_os(name))
    }

    /// The forms cron uses are read here, and read as clap reads them.
    #[test]
    fn cron_forms_are_read_as_clap_reads_them() {
        // The tests' own environment must not name a configuration or a socket.
        assert!(std::env::var_os("VIGIL_CONFIG").is_none());
        assert!(std::env::var_os("VIGIL_SOCKET").is_none());
        for line in [
            "check",
            "check --json",
            "check --no-restart",
            "check --json --no-restart web db",
            "check web",
            "check web --json db",
            "check check",
            "-c /etc/vigil/vigil.toml check",
            "check -c /etc/vigil/vigil.toml",
            "check -c vigil.toml --json",
            "--config /tmp/v.toml check web",
            "--config=/tmp/v.toml check",
            "check --config=/tmp/a=b.toml",
            "-c check check",
            "--log-format json check",
            "check --log-format=human --json",
            "--log-format json -c v.toml check --no-restart web",
        ] {
            let args = argv(line);
            let fast = fast(&args).unwrap_or_else(|| panic!("`{line}` went to clap"));
            assert_eq!(format!("{:?}", Ok::<_, ()>(fast)), clap(&args), "`{line}`");
        }
    }

    /// Everything else goes to clap: what it accepts, what it refuses, and what it would
    /// read differently.
    #[test]
    fn other_forms_go_to_clap() {
        for line in [
            "",
            "--help",
            "-h",
            "--version",
            "-V",
            "help",
            "help check",
            "check --help",
            "check -h",
            "status",
            "restart web",
            "config check",
            "checks",
            "chec",
            "--json check",
            "--no-restart check",
            "check --json --json",
            "check --no-restart --no-restart",
            "check --json=true",
            "check --no-restart=false",
            "check -c",
            "check -c -x",
            "check --config",
            "check --config=",
            "check --conf x",
            "check -cvigil.toml",
            "check -c=vigil.toml",
            "-c a check -c b",
            "-c a --config b check",
            "check --log-format",
            "check --log-format yaml",
            "check --log-format JSON",
            "check --log-format=json --log-format=json",
            "check --socket /run/s.sock",
            "--socket=/run/s.sock check",
            "check -- web",
            "check -- --json",
            "check -",
            "check web -x",
            "check --bogus",
            "check -j",
        ] {
            let args = argv(line);
            assert!(fast(&args).is_none(), "`{line}` was read without clap");
            // Whatever clap makes of it is the answer (this only exercises it).
            let _ = clap(&args);
        }
        let mut args = argv("check");
        args.push(std::os::unix::ffi::OsStringExt::from_vec(vec![b'w', 0xff]));
        assert!(fast(&args).is_none());
    }

    /// `$VIGIL_CONFIG` and `$VIGIL_SOCKET` as clap reads them: a value when set, `-c`
    /// first; an empty one is clap's to judge.
    #[test]
    fn environment_defaults() {
        let env = |config: Option<&'static str>, socket: Option<&'static str>| {
            move |name: &str| match name {
                "VIGIL_CONFIG" => config.map(OsString::from),
                "VIGIL_SOCKET" => socket.map(OsString::from),
                _ => None,
            }
        };
        let cli = check(&argv("check"), env(Some("/e/v.toml"), Some("/e/s"))).unwrap();
        assert_eq!(
            cli.config.as_deref(),
            Some(std::path::Path::new("/e/v.toml"))
        );
        assert_eq!(cli.socket.as_deref(), Some(std::path::Path::new("/e/s")));
        let cli = check(&argv("check -c /a.toml"), env(Some("/e/v.toml"), None)).unwrap();
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("/a.toml")));
        assert!(cli.socket.is_none());
        assert!(check(&argv("check"), env(Some(""), None)).is_none());
        assert!(check(&argv("check"), env(None, Some(""))).is_none());
        assert!(check(&argv("check -c /a.toml"), env(None, Some(""))).is_none());
    }
}
