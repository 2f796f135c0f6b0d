//! Command-line interface (SPEC §6): parsing, and the one-shot commands that work directly
//! on the ledger without a daemon (the seed's cron mode), concurrently with one.
//!
//! `check.rs` and `restart.rs` are the one-shot commands that act: they drive the same
//! service actors as the daemon (`service::oneshot`).

mod check;
mod fast_args;
mod hold;
mod logs;
mod restart;

use self::check::check;
use self::hold::hold;
use self::logs::logs;
use self::restart::restart;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vigil_config::model::{CheckKind, Config, LogFormat};
use vigil_core::Timestamp;

mod locate;
mod remote;

use crate::control::client;

use crate::daemon::Daemon;
use crate::exit;
use crate::guard::{self, GuardContext};
use crate::ledger::LedgerHandle;
use crate::observe::bus::Events;
use crate::observe::log;
use crate::platform::clock;
use crate::render as output;
use crate::service::protocol::Control;

/// Vigil keeps Linux services alive without ever making things worse.
#[derive(Parser, Debug)]
#[command(name = "vigil", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file [default: $VIGIL_CONFIG, else /etc/vigil/vigil.toml].
    #[arg(short = 'c', long = "config", global = true, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
    /// The daemon's control socket to talk to [default: /run/vigil/vigil.sock, else the
    /// configuration's `control_socket`]. The daemon itself listens where its
    /// configuration says.
    #[arg(long, global = true, env = "VIGIL_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Log format on stderr (overrides `[vigil] log_format`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

// `defer`: a subcommand's arguments are defined only when it is the one run (its name and
// about line stay in the parent's help), so `vigil check` from cron does not build the
// other commands' argument definitions (measured: 3 % of its instructions). Generated
// completion scripts list a subcommand's global options before its own since.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum Command {
    /// Run the daemon in the foreground (SIGHUP reloads, SIGTERM/SIGINT stop).
    Run,
    /// Run every check once (with retries) and act on failures, like a cron health script.
    Check(CheckArgs),
    /// Ask the guard to restart a service now (source `manual`).
    Restart(RestartArgs),
    /// Show each service's state, checks, restart budget and next scheduled restart.
    Status(StatusArgs),
    /// Show the ledger: every restart request and the guard's verdict.
    History(HistoryArgs),
    /// Clear a service's restart history and its given-up state (emergency reset).
    Reset(ResetArgs),
    /// Take a service (or @GROUP) down on purpose: no restarts from any source and no
    /// alerts until `vigil start` or the end of --for.
    Stop(HoldArgs),
    /// Clear a stop and bring the service (or @GROUP, in order) up.
    Start(TargetArgs),
    /// Keep a service (or @GROUP) running and checked, but suspend automatic actions and
    /// alerts until `vigil resume` or the end of --for.
    Pause(HoldArgs),
    /// Clear a pause: what failed meanwhile goes through the guard as usual.
    Resume(TargetArgs),
    /// Show what an exec service printed (the last lines, and new ones with -f).
    Logs(LogsArgs),
    /// Push a heartbeat for a `kind = "heartbeat"` check (SERVICE/CHECK, or SERVICE when it
    /// has exactly one heartbeat check).
    Heartbeat(HeartbeatArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a systemd unit file for Vigil itself (Type=notify, watchdog, sandboxing).
    SystemdUnit,
    /// Alert channel commands.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(CompletionsArgs),
    /// The fleet, from its PostgreSQL database (`[fleet]`): every host's services and
    /// leases, or the published history.
    #[command(subcommand)]
    Fleet(FleetCommand),
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum FleetCommand {
    /// Every host, every service, its check states, who holds a lease, last seen; a host
    /// not seen for 3 × lease_ttl is lost.
    Status(FleetStatusArgs),
    /// Every host's published restarts and verdicts.
    History(FleetHistoryArgs),
}

#[derive(Args, Debug)]
struct FleetStatusArgs {
    /// Machine-readable output (see docs/cli-json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct FleetHistoryArgs {
    /// Only rows newer than this (e.g. "24h", "30m").
    #[arg(long)]
    since: Option<String>,
    /// Machine-readable output (see docs/cli-json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct CompletionsArgs {
    shell: clap_complete::Shell,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum AlertCommand {
    /// Send a test alert through one channel, once (no retries), and report the outcome:
    /// exit 0 delivered, 1 failed (the reason is printed), 2 unknown channel.
    Test(AlertTestArgs),
}

#[derive(Args, Debug)]
struct AlertTestArgs {
    /// The `[alerts.NAME]` channel.
    channel: String,
    /// The event the test alert pretends to be.
    #[arg(long, default_value = "restarted", value_parser = clap::builder::PossibleValuesParser::new(vigil_config::schema::ALERT_EVENTS))]
    event: String,
    /// Machine-readable output (see docs/cli-json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct HeartbeatArgs {
    /// SERVICE/CHECK, or SERVICE.
    name: String,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Only these services (default: all).
    services: Vec<String>,
    /// Report what would be done and why, without restarting anything.
    #[arg(long)]
    no_restart: bool,
    /// Machine-readable output (see docs/cli-json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct RestartArgs {
    /// The service to restart.
    service: String,
    /// Skip the budget, cooldown and backoff (never the lock); recorded as forced.
    #[arg(long)]
    force: bool,
    /// Machine-readable output (see docs/cli-json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// Only this service [default: all].
    service: Option<String>,
    /// Machine-readable output (see docs/cli-json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct HistoryArgs {
    /// Only this service [default: all].
    service: Option<String>,
    /// Only entries newer than this (e.g. "24h", "30m", "7d") [default: everything].
    #[arg(long)]
    since: Option<String>,
    /// Machine-readable output (see docs/cli-json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ResetArgs {
    /// The service whose history and given-up state to clear.
    service: String,
}

#[derive(Args, Debug)]
struct HoldArgs {
    /// SERVICE, or @GROUP for a restart group.
    target: String,
    /// Ends by itself after this long (e.g. "30m", "2h").
    #[arg(long = "for", value_name = "DURATION")]
    for_: Option<String>,
    /// Why, for the ledger and `vigil status`.
    #[arg(long)]
    reason: Option<String>,
    /// Machine-readable output (see docs/cli-json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct LogsArgs {
    service: String,
    /// How many of the last lines.
    #[arg(short = 'n', long = "lines", default_value_t = 50)]
    lines: usize,
    /// Keep printing new lines as they come (until interrupted).
    #[arg(short = 'f', long)]
    follow: bool,
    /// One JSON object per line: `seq`, `at`, `stream`, `text` (see docs/cli-json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct TargetArgs {
    /// SERVICE, or @GROUP for a restart group.
    target: String,
    /// Why, for the ledger.
    #[arg(long)]
    reason: Option<String>,
    /// Machine-readable output (see docs/cli-json.md).
    #[arg(long)]
    json: bool,
}

impl From<TargetArgs> for HoldArgs {
    fn from(t: TargetArgs) -> HoldArgs {
        HoldArgs {
            target: t.target,
            for_: None,
            reason: t.reason,
            json: t.json,
        }
    }
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum ConfigCommand {
    /// Validate the configuration; every error as `file:line:col: message`.
    Check,
    /// Print the effective configuration (every included file, every default applied,
    /// secrets redacted) as TOML.
    Show,
}

/// The packaging step's command (`dist/build.sh`): `vigil __dist-assets DIR`. Outside
/// clap, so no help text, man page or completion ever offers it.
const DIST_ASSETS_ARG: &str = "__dist-assets";

/// Parses arguments, runs the command, returns the exit code.
pub fn main() -> u8 {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == DIST_ASSETS_ARG) {
        return match (args.next(), args.next()) {
            (Some(dir), None) => dist_assets(Path::new(&dir)),
            _ => {
                eprintln!("usage: vigil {DIST_ASSETS_ARG} DIR");
                exit::USAGE
            }
        };
    }
    // Cron's `vigil check` without building clap's command tree (`fast_args.rs`).
    let argv: Vec<_> = std::env::args_os().collect();
    let cli = match fast_args::check(&argv, |name| std::env::var_os(name))
        .map_or_else(|| parse_args(argv), Ok)
    {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    // Before any other thread exists (the runtime's, the ledger's).
    crate::platform::limit_malloc_arenas(if matches!(cli.command, Command::Run) {
        2
    } else {
        1
    });
    let named_config = cli.config.is_some();
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(locate::SYSTEM_CONFIG));
    match &cli.command {
        Command::Config(ConfigCommand::Check) => return config_check(&config_path),
        Command::Config(ConfigCommand::Show) => return config_show(&config_path),
        Command::SystemdUnit => return systemd_unit(cli.config.as_deref()),
        Command::Completions(args) => return completions(args.shell),
        _ => {}
    }
    // The daemon first, without reading the configuration (`locate.rs`); only for the
    // commands it answers.
    let system_config = remote::Remote::of(&cli.command).is_some()
        && locate::is_system_config(&config_path, named_config);
    let mut tried = None;
    if let Some(request) = remote::Remote::of(&cli.command) {
        match locate::before_config(cli.socket.as_deref(), system_config) {
            Ok(locate::Lookup::Daemon(daemon)) => {
                let format = match cli.log_format {
                    Some(LogFormatArg::Json) => LogFormat::Json,
                    Some(LogFormatArg::Human) | None => LogFormat::Human,
                };
                log::init(format, vigil_config::model::LogLevel::Info);
                return block_on(remote::run(&daemon, request));
            }
            Ok(locate::Lookup::ReadConfig { tried: t }) => tried = t,
            Err(e) => {
                eprintln!("vigil: {e}");
                return exit::FAILED;
            }
        }
    }
    let config = match vigil_config::load(&config_path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            if let Some(socket) = &tried {
                eprintln!(
                    "vigil: no daemon answers at {} (is it running? `systemctl status vigil`), and {} cannot be used instead",
                    socket.display(),
                    config_path.display()
                );
            } else {
                eprintln!(
                    "vigil: {} error(s) in {}",
                    errors.len(),
                    config_path.display()
                );
            }
            return exit::USAGE;
        }
    };
    let format = match cli.log_format {
        Some(LogFormatArg::Human) => LogFormat::Human,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None => config.vigil.log_format,
    };
    log::init(format, config.vigil.log_level);
    if let Some(request) = remote::Remote::of(&cli.command) {
        match locate::after_config(&config, &config_path, tried.as_deref(), system_config) {
            Ok(Some(daemon)) => return block_on(remote::run(&daemon, request)),
            Ok(None) => {}
            Err(e) => {
                eprintln!("vigil: {e}");
                return exit::FAILED;
            }
        }
    }
    // Boxed: the future of every command is 8.6 KB, and on the stack it was copied on the
    // way into the runtime (four copies in this function's frame alone, each a new page
    // or two of stack to fault in; with clap's frames, the stack was 25 pages deep).
    block_on(Box::pin(dispatch(cli.command, config_path, config)))
}

/// `Cli::try_parse`, without dropping the command definitions afterwards: freeing them
/// one by one is work the process's exit does for nothing.
fn parse_args(argv: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = std::mem::ManuallyDrop::new(Cli::command());
    let mut matches = command.try_get_matches_from_mut(argv)?;
    Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))
}

/// Runs a command's future on the CLI's runtime and maps its error to an exit code.
fn block_on(command: impl std::future::Future<Output = anyhow::Result<u8>>) -> u8 {
    // One thread runs every task: checks wait on I/O and timers, so a second worker mostly
    // adds park/wake churn (the largest CPU item in the 1,000-check benchmark). Blocking-pool
    // threads serve DNS lookups and long file scans; a few are plenty, and idle ones should
    // not linger (each costs stack and allocator memory).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(8)
        .thread_keep_alive(Duration::from_secs(2))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vigil: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    let res = runtime.block_on(command);
    // Do not wait for blocking tasks (e.g. a stuck DNS lookup) on the way out.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil: {e:#}");
            if e.is::<UnknownService>() || e.is::<UsageError>() {
                exit::USAGE
            } else {
                exit::FAILED
            }
        }
    }
}

/// `vigil systemd-unit`: the packaged unit, starting this binary (with `-c` when named).
fn systemd_unit(config: Option<&Path>) -> u8 {
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/vigil"));
    let quote = |p: &Path| {
        let s = p.display().to_string();
        if s.contains(char::is_whitespace) {
            format!("\"{s}\"")
        } else {
            s
        }
    };
    let config = config.map(|c| quote(&std::path::absolute(c).unwrap_or_else(|_| c.to_owned())));
    print!(
        "{}",
        crate::observe::sdnotify::unit_file(&quote(&exe), config.as_deref())
    );
    exit::OK
}

/// The clap definition of the whole command line (for man pages and completions).
fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// `vigil completions SHELL`.
fn completions(shell: clap_complete::Shell) -> u8 {
    clap_complete::generate(shell, &mut command(), "vigil", &mut std::io::stdout());
    exit::OK
}

/// `vigil __dist-assets DIR`: `DIR/man/vigil.1` and one page per subcommand
/// (`vigil-status.1`, `vigil-config-check.1`, ...), and `DIR/completions/` with
/// `vigil.bash`, `_vigil` (zsh) and `vigil.fish`.
fn dist_assets(out: &Path) -> u8 {
    let write = || -> std::io::Result<()> {
        let man = out.join("man");
        let completions = out.join("completions");
        std::fs::create_dir_all(&man)?;
        std::fs::create_dir_all(&completions)?;
        clap_mangen::generate_to(command(), &man)?;
        for (shell, file) in [
            (clap_complete::Shell::Bash, "vigil.bash"),
            (clap_complete::Shell::Zsh, "_vigil"),
            (clap_complete::Shell::Fish, "vigil.fish"),
        ] {
            let mut f = std::fs::File::create(completions.join(file))?;
            clap_complete::generate(shell, &mut command(), "vigil", &mut f);
        }
        Ok(())
    };
    match write() {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("vigil: cannot write to {}: {e}", out.display());
            exit::FAILED
        }
    }
}

/// `vigil config show`: what the daemon would run, from every file it would read.
fn config_show(path: &Path) -> u8 {
    match vigil_config::load(path) {
        Ok(config) => {
            print!("{}", vigil_config::render_effective(&config));
            exit::OK
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.len());
            exit::USAGE
        }
    }
}

fn config_check(path: &Path) -> u8 {
    match vigil_config::load(path) {
        Ok(config) => {
            let checks: usize = config.services.iter().map(|s| s.checks.len()).sum();
            let schedules: usize = config.services.iter().map(|s| s.schedules.len()).sum();
            println!(
                "{}: OK ({} service(s), {} check(s), {} schedule(s); state_dir {})",
                path.display(),
                config.services.len(),
                checks,
                schedules,
                config.vigil.state_dir.display()
            );
            exit::OK
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.len());
            exit::USAGE
        }
    }
}

async fn dispatch(command: Command, config_path: PathBuf, config: Config) -> anyhow::Result<u8> {
    match command {
        Command::Run => {
            let daemon = Daemon::start(config_path, config).await?;
            daemon.run_until_signalled().await?;
            Ok(exit::OK)
        }
        Command::Check(args) => check(&config, args).await,
        Command::Restart(args) => restart(&config, args).await,
        Command::Stop(args) => hold(&config, Control::Stop, args).await,
        Command::Start(args) => hold(&config, Control::Start, args.into()).await,
        Command::Pause(args) => hold(&config, Control::Pause, args).await,
        Command::Resume(args) => hold(&config, Control::Resume, args.into()).await,
        Command::Logs(args) => logs(&config, args).await,
        Command::Status(args) => {
            let ledger = one_shot_ledger(&config)?;
            if let Some(name) = &args.service {
                service_or_usage(&config, name)?;
            }
            let report = output::status(&config, &ledger, args.service.as_deref()).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", output::render_status(&report));
            }
            Ok(exit::OK)
        }
        Command::History(args) => {
            let since = match &args.since {
                Some(text) => Some(parse_since(text)?),
                None => None,
            };
            let ledger = one_shot_ledger(&config)?;
            let service = args.service.clone();
            let (rows, deliveries) = ledger
                .call(move |l| -> Result<_, crate::ledger::LedgerError> {
                    let s = service.as_deref();
                    Ok((l.history(s, since)?, l.deliveries(s, since)?))
                })
                .await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output::history_json(&rows, &deliveries))?
                );
            } else {
                print!("{}", output::render_history(&rows, &deliveries));
            }
            Ok(exit::OK)
        }
        Command::Reset(args) => {
            let service = service_or_usage(&config, &args.service)?;
            let cx = guard_context(&config)?;
            match guard::reset(&cx, &service.name, &service.guard).await? {
                Some(cleared) => {
                    println!(
                        "{}: restart history reset ({cleared} restart(s) no longer count; given-up state cleared)",
                        service.name
                    );
                    Ok(exit::OK)
                }
                None => {
                    eprintln!(
                        "{}: could not acquire the restart lock within {} (a restart is in progress); try again",
                        service.name,
                        vigil_core::format_duration(service.guard.lock_timeout)
                    );
                    Ok(exit::FAILED)
                }
            }
        }
        Command::Heartbeat(args) => {
            let (service, check) = heartbeat_target(&config, &args.name)?;
            if let Some(daemon) = daemon_client(&config)? {
                let at = daemon
                    .heartbeat(&service, &check)
                    .await
                    .map_err(from_daemon)?;
                println!("{service}/{check}: heartbeat recorded at {at}");
                return Ok(exit::OK);
            }
            let ledger = one_shot_ledger(&config)?;
            let now = clock::now();
            let (s, c) = (service.clone(), check.clone());
            ledger
                .call(move |l| l.record_heartbeat(&s, &c, now))
                .await?;
            println!("{service}/{check}: heartbeat recorded at {now}");
            Ok(exit::OK)
        }
        Command::Config(ConfigCommand::Check) => Ok(config_check(&config_path)),
        Command::Config(ConfigCommand::Show) => Ok(config_show(&config_path)),
        Command::SystemdUnit => Ok(systemd_unit(Some(&config_path))),
        Command::Completions(args) => Ok(completions(args.shell)),
        Command::Alert(AlertCommand::Test(args)) => alert_test(&config, args).await,
        Command::Fleet(command) => fleet(&config, command).await,
    }
}

/// `vigil fleet status|history`: read straight from PostgreSQL (no daemon needed).
async fn fleet(config: &Config, command: FleetCommand) -> anyhow::Result<u8> {
    let Some(handle) = crate::fleet::FleetHandle::new(config, Events::log_only()) else {
        return Err(anyhow::Error::new(UsageError(
            "no [fleet] table in the configuration".to_owned(),
        )));
    };
    match command {
        FleetCommand::Status(args) => {
            let rows = crate::fleet::query::status(&handle)
                .await
                .map_err(|e| anyhow::anyhow!("fleet database unreachable: {e}"))?;
            if args.json {
                let doc = serde_json::json!({ "version": 1, "services": rows });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!(
                    "{:<16} {:<16} {:<10} {:<9} {:<24} {:<10} CHECKS",
                    "HOST", "SERVICE", "KEY", "STATUS", "LAST SEEN", "LEASE"
                );
                for r in rows {
                    let seen = if r.lost {
                        format!("LOST ({}s ago)", r.last_seen_ms_ago / 1000)
                    } else {
                        format!("{}s ago", r.last_seen_ms_ago / 1000)
                    };
                    let lease = r
                        .lease_held_ms
                        .map_or_else(|| "-".to_owned(), |ms| format!("held {}s", ms / 1000));
                    println!(
                        "{:<16} {:<16} {:<10} {:<9} {:<24} {:<10} {}",
                        r.host,
                        r.service,
                        r.fleet_key.as_deref().unwrap_or("-"),
                        r.status,
                        seen,
                        lease,
                        r.checks
                    );
                }
            }
        }
        FleetCommand::History(args) => {
            let since = match &args.since {
                Some(text) => Some(parse_since(text)?.as_millis()),
                None => None,
            };
            let rows = crate::fleet::query::history(&handle, since)
                .await
                .map_err(|e| anyhow::anyhow!("fleet database unreachable: {e}"))?;
            if args.json {
                let doc = serde_json::json!({ "version": 1, "entries": rows });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                for r in rows {
                    println!(
                        "{} {} {} [{}] {} {}",
                        r.at,
                        r.host,
                        r.service,
                        r.source,
                        r.message,
                        r.outcome.as_deref().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(exit::OK)
}

/// `vigil alert test CHANNEL`: one attempt, reported.
async fn alert_test(config: &Config, args: AlertTestArgs) -> anyhow::Result<u8> {
    let Some(channel) = config.alert_channel(&args.channel) else {
        let known: Vec<&str> = config.alerts.iter().map(|c| c.name.as_str()).collect();
        return Err(anyhow::Error::new(UsageError(format!(
            "unknown alert channel `{}` (configured: {})",
            args.channel,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))));
    };
    let event = vigil_config::model::AlertEvent::parse(&args.event)
        .ok_or_else(|| UsageError(format!("unknown event {:?}", args.event)))?;
    let msg = vigil_alerts::test_message(
        &channel.name,
        &vigil_alerts::host_name(),
        event,
        clock::now(),
    );
    let sender = vigil_alerts::Sender::new(
        std::sync::Arc::new(channel.clone()),
        vigil_alerts::http_client(),
    );
    let started = clock::monotonic();
    let result = sender.send(&msg).await;
    let took = started.elapsed();
    let kind = channel.kind.as_str();
    if args.json {
        let doc = serde_json::json!({
            "version": 1,
            "channel": channel.name,
            "kind": kind,
            "event": event.as_str(),
            "delivered": result.is_ok(),
            "error": result.as_ref().err().map(|e| e.0.clone()),
            "duration_ms": u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    match result {
        Ok(()) => {
            if !args.json {
                println!(
                    "{}: test alert ({event}) delivered through {kind} in {}",
                    channel.name,
                    vigil_core::format_duration(took)
                );
            }
            Ok(exit::OK)
        }
        Err(e) => {
            if !args.json {
                eprintln!(
                    "{}: test alert ({event}) NOT delivered through {kind}: {e}",
                    channel.name
                );
            }
            Ok(exit::FAILED)
        }
    }
}

/// Resolves `SERVICE/CHECK` (or `SERVICE` with a single heartbeat check) to a configured
/// heartbeat check; anything else is a usage error.
fn heartbeat_target(config: &Config, name: &str) -> anyhow::Result<(String, String)> {
    let (service_name, check_name) = match name.split_once('/') {
        Some((s, c)) => (s, Some(c)),
        None => (name, None),
    };
    let service = service_or_usage(config, service_name)?;
    let beats: Vec<&str> = service
        .checks
        .iter()
        .filter(|c| matches!(c.kind, CheckKind::Heartbeat(_)))
        .map(|c| c.name.as_str())
        .collect();
    let usage = |msg: String| anyhow::Error::new(UsageError(msg));
    let check = match check_name {
        Some(c) if beats.contains(&c) => c,
        Some(c) => {
            return Err(usage(format!(
                "`{service_name}/{c}` is not a heartbeat check (heartbeat checks of {service_name}: {})",
                if beats.is_empty() {
                    "none".to_owned()
                } else {
                    beats.join(", ")
                }
            )));
        }
        None if beats.len() == 1 => beats[0],
        None => {
            return Err(usage(format!(
                "`{service_name}` has {} heartbeat checks; name one as SERVICE/CHECK ({})",
                beats.len(),
                beats.join(", ")
            )));
        }
    };
    Ok((service.name.to_string(), check.to_owned()))
}

/// A usage error (exit 2) for an unknown service name.
#[derive(Debug, thiserror::Error)]
#[error("unknown service `{name}` (configured: {known})")]
pub struct UnknownService {
    name: String,
    known: String,
}

fn service_or_usage<'c>(
    config: &'c Config,
    name: &str,
) -> anyhow::Result<&'c vigil_config::model::Service> {
    config.service(name).ok_or_else(|| {
        let known: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        anyhow::Error::new(UnknownService {
            name: name.to_owned(),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
        })
    })
}

/// The ledger of a one-shot command, on this thread (`LedgerHandle::spawn_one_shot`). Its
/// connection is left for the process's exit to release: a one-shot connection has nothing
/// to write on close (`ledger/one_shot.rs`), and closing it would free, piece by piece,
/// what the exit frees at once (measured: 4 % of a cron `vigil check`'s instructions).
fn one_shot_ledger(config: &Config) -> anyhow::Result<LedgerHandle> {
    let ledger = LedgerHandle::spawn_one_shot(&config.vigil.state_dir)?;
    std::mem::forget(ledger.clone());
    Ok(ledger)
}

fn guard_context(config: &Config) -> anyhow::Result<GuardContext> {
    Ok(GuardContext {
        ledger: one_shot_ledger(config)?,
        state_dir: config.vigil.state_dir.clone(),
        // One-shot commands only log; alerts are the daemon's.
        events: Events::log_only(),
        fleet: crate::fleet::FleetHandle::new(config, Events::log_only()),
    })
}

fn parse_since(text: &str) -> anyhow::Result<Timestamp> {
    let d: jiff::SignedDuration = text.trim().parse().map_err(|e| {
        anyhow::Error::new(UsageError(format!(
            "invalid --since {text:?}: {e} (expected e.g. \"24h\", \"30m\", \"7d\")"
        )))
    })?;
    let d = d.unsigned_abs();
    Ok(clock::now().saturating_sub(d))
}

/// A usage error found after parsing (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The running daemon, when one answers on the control socket.
fn daemon_client(config: &Config) -> anyhow::Result<Option<client::DaemonClient>> {
    Ok(client::reach(&config.vigil.control_socket)?)
}

/// A daemon's refusal: "no such service" is a usage error (exit 2), like the CLI's own.
fn from_daemon(e: client::ClientError) -> anyhow::Error {
    if e.is_not_found() || e.is_bad_request() {
        anyhow::Error::new(UsageError(e.to_string()))
    } else {
        anyhow::Error::new(e)
    }
}
