//! Finding the daemon (SPEC §6): the commands a daemon answers reach it without reading
//! the configuration, so a user allowed to talk to the daemon needs no read access to a
//! configuration that may hold secrets, and a user who may not is told why instead of
//! silently getting an empty ledger of their own.
//!
//! The order:
//! 1. `--socket PATH` or `$VIGIL_SOCKET`: that socket, and nothing else.
//! 2. The system configuration (`/etc/vigil/vigil.toml`, by default or named with `-c`):
//!    `/run/vigil/vigil.sock` first, then, once the configuration is read, its
//!    `control_socket` if that is another path.
//! 3. Any other configuration: its `control_socket` (another instance, with a
//!    `state_dir` and a socket of its own).
//!
//! When nothing answers, the commands work on the ledger directly (cron mode), except for
//! a user other than root on the system configuration without a `state_dir` of its own:
//! their ledger would be a new, empty one, so that is refused with the reason.
//!
//! Owns: that order and the refusals. Must not: talk to the daemon beyond connecting
//! (`control/client.rs`), or read the configuration itself (the caller does, in between).

use std::path::{Path, PathBuf};

use vigil_config::model::Config;

use crate::control::client::{self, ClientError, DaemonClient};

/// Where the system's daemon listens (`[vigil] control_socket`'s default for the
/// `/var/lib/vigil` state, and the packaged unit's `RuntimeDirectory=vigil`).
pub const DEFAULT_SOCKET: &str = "/run/vigil/vigil.sock";

/// The configuration used when no `-c` or `$VIGIL_CONFIG` names one.
pub const SYSTEM_CONFIG: &str = "/etc/vigil/vigil.toml";

/// Where the lookup stands before the configuration is read.
pub enum Lookup {
    /// A daemon answered: the configuration is not read at all.
    Daemon(DaemonClient),
    /// Read the configuration and call [`after_config`]; `tried` is the socket that was
    /// already found silent.
    ReadConfig { tried: Option<PathBuf> },
}

/// Why the CLI neither reached a daemon nor may fall back to the ledger.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("no daemon answers at {0} (named with --socket or $VIGIL_SOCKET)")]
    NotAtNamed(PathBuf),
    #[error(
        "no daemon answers at {socket}, and {config} is the system's configuration: its ledger is root's, not yours. Start the daemon (`systemctl start vigil`), run this as root, or name a configuration of your own with -c"
    )]
    NotYours { socket: PathBuf, config: PathBuf },
}

/// Whether `config` is the system configuration (by default, or named by its path).
pub fn is_system_config(config: &Path, named: bool) -> bool {
    if !named || config == Path::new(SYSTEM_CONFIG) {
        return true;
    }
    match (
        std::fs::canonicalize(config),
        std::fs::canonicalize(SYSTEM_CONFIG),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Steps 1 and 2 of the order, before reading the configuration.
pub fn before_config(socket: Option<&Path>, system_config: bool) -> Result<Lookup, Unreachable> {
    if let Some(socket) = socket {
        return match client::reach(socket)? {
            Some(daemon) => Ok(Lookup::Daemon(daemon)),
            None => Err(Unreachable::NotAtNamed(socket.to_owned())),
        };
    }
    if !system_config {
        return Ok(Lookup::ReadConfig { tried: None });
    }
    let default = Path::new(DEFAULT_SOCKET);
    Ok(match client::reach(default)? {
        Some(daemon) => Lookup::Daemon(daemon),
        None => Lookup::ReadConfig {
            tried: Some(default.to_owned()),
        },
    })
}

/// The rest of the order, with the configuration read: its `control_socket` (unless that
/// was `tried` already). `Ok(None)`: no daemon, work on the ledger.
pub fn after_config(
    config: &Config,
    config_path: &Path,
    tried: Option<&Path>,
    system_config: bool,
) -> Result<Option<DaemonClient>, Unreachable> {
    let socket = &config.vigil.control_socket;
    if tried != Some(socket.as_path())
        && let Some(daemon) = client::reach(socket)?
    {
        return Ok(Some(daemon));
    }
    // Not root, and the system configuration left `state_dir` to its per-user default:
    // the ledger would be a fresh one of this user's, not the daemon's.
    let per_user_state = !rustix::process::geteuid().is_root()
        && config.vigil.state_dir == vigil_config::default_state_dir();
    if system_config && per_user_state {
        return Err(Unreachable::NotYours {
            socket: tried.unwrap_or(socket).to_owned(),
            config: config_path.to_owned(),
        });
    }
    Ok(None)
}
