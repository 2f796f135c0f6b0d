//! Vigil as a systemd citizen (SPEC §4, seed 004's two-level liveness): `READY=1` once its
//! loops run, `WATCHDOG=1` only while every internal loop has ticked recently, `STATUS=`
//! with a one-line summary, `STOPPING=1` on shutdown; and `vigil systemd-unit`.
//!
//! Owns: the sending side of the `sd_notify` protocol for Vigil itself and the [`Liveness`]
//! registry loops tick into. Must not: decide anything about services. (Receiving
//! notifications from supervised children is the exec driver's job.)
//!
//! Two-level liveness: systemd's watchdog catches a Vigil that is dead or whose runtime is
//! wedged (the pinging task cannot run); the registry catches a Vigil that is alive but
//! whose parts are not — a ledger writer that stopped answering, a check loop that stopped
//! waking up. Either way the ping is withheld and systemd restarts Vigil.

use std::collections::BTreeMap;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use vigil_core::health::HealthStatus;

use crate::ledger::LedgerHandle;
use crate::platform::clock;

/// Where and how often to notify systemd (from `NOTIFY_SOCKET`, `WATCHDOG_USEC`,
/// `WATCHDOG_PID`).
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// systemd's watchdog timeout for us, when enabled.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd asked for, if any. A `WATCHDOG_PID` naming another process
    /// (an inherited environment) disables the watchdog, as in `sd_watchdog_enabled`.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let addr = notify_addr(path.as_encoded_bytes())?;
        let socket = UnixDatagram::unbound().ok()?;
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|pid| pid.trim().parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us)
            .map(Duration::from_micros);
        Some(Notifier {
            socket,
            addr,
            watchdog,
        })
    }

    /// Sends one datagram (`KEY=VALUE` lines); best effort, as `sd_notify` is.
    pub fn send(&self, message: &str) {
        if let Err(error) = self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            tracing::debug!(%error, "sd_notify send failed");
        }
    }
}

/// `NOTIFY_SOCKET`: a path, or `@name` for the abstract namespace.
fn notify_addr(raw: &[u8]) -> Option<SocketAddr> {
    match raw.split_first()? {
        (b'@', name) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name).ok()
        }
        (b'/', _) => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(raw)).ok(),
        _ => None,
    }
}

use std::os::unix::ffi::OsStrExt as _;

/// Internal loops register here and tick; the watchdog pings only while none is stale.
#[derive(Default)]
pub struct Liveness {
    loops: Mutex<BTreeMap<u64, Beat>>,
    next_id: AtomicU64,
    base: std::sync::OnceLock<Instant>,
}

struct Beat {
    label: String,
    /// Milliseconds since `base` at the last tick.
    last: Arc<AtomicU64>,
    max_gap: Duration,
}

/// A registered loop; ticks with [`BeatHandle::tick`], deregisters on drop.
pub struct BeatHandle {
    id: u64,
    last: Arc<AtomicU64>,
    registry: Arc<Liveness>,
}

impl Liveness {
    fn elapsed_ms(&self) -> u64 {
        let base = *self.base.get_or_init(clock::monotonic);
        u64::try_from(clock::monotonic().duration_since(base).as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a loop that must tick at least every `max_gap`.
    pub fn register(self: &Arc<Self>, label: String, max_gap: Duration) -> BeatHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let last = Arc::new(AtomicU64::new(self.elapsed_ms()));
        self.lock().insert(
            id,
            Beat {
                label,
                last: last.clone(),
                max_gap,
            },
        );
        BeatHandle {
            id,
            last,
            registry: self.clone(),
        }
    }

    /// Loops silent for longer than they may be, with how long.
    pub fn stale(&self) -> Vec<(String, Duration)> {
        let now = self.elapsed_ms();
        self.lock()
            .values()
            .filter_map(|b| {
                let gap = Duration::from_millis(now.saturating_sub(b.last.load(Ordering::Relaxed)));
                (gap > b.max_gap).then(|| (b.label.clone(), gap))
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Beat>> {
        self.loops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BeatHandle {
    pub fn tick(&self) {
        self.last
            .store(self.registry.elapsed_ms(), Ordering::Relaxed);
    }
}

impl Drop for BeatHandle {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// The one-line `STATUS=` summary.
fn summary(services: usize, states: &[crate::ledger::CheckStateRow]) -> String {
    let failing = states
        .iter()
        .filter(|r| r.health.status == HealthStatus::Failing)
        .count();
    let warning = states
        .iter()
        .filter(|r| r.health.status == HealthStatus::Warning)
        .count();
    format!(
        "{services} service(s), {} check(s) seen: {failing} failing, {warning} warning",
        states.len()
    )
}

/// Keeps systemd informed: probes the ledger writer (a round trip through its thread),
/// sends `STATUS=`, and `WATCHDOG=1` only while the probe and every registered loop are
/// fresh. Runs until `cancel`.
pub async fn watchdog_loop(
    notifier: Arc<Notifier>,
    liveness: Arc<Liveness>,
    ledger: LedgerHandle,
    services: usize,
    cancel: CancellationToken,
) {
    // Ping at half the timeout, as sd_watchdog_enabled(3) recommends; STATUS every 5 s
    // without a watchdog.
    let period = notifier.watchdog.map_or(Duration::from_secs(5), |w| {
        (w / 2).max(Duration::from_millis(10))
    });
    // The ledger probe is itself a registered loop: a writer stuck on a lock or a disk
    // stops its ticks.
    let ledger_beat = liveness.register("ledger writer".to_owned(), period * 2);
    let status = Arc::new(Mutex::new(String::new()));
    {
        let (status, cancel) = (status.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let states = tokio::select! {
                    _ = cancel.cancelled() => return,
                    states = ledger.call(|l| l.check_states()) => states,
                };
                ledger_beat.tick();
                if let Ok(states) = states {
                    *status.lock().unwrap_or_else(|p| p.into_inner()) = summary(services, &states);
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
            }
        });
    }
    let mut withheld = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let stale = liveness.stale();
        let line = status.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if stale.is_empty() {
            if withheld {
                tracing::info!(
                    event = "watchdog_resumed",
                    "every internal loop ticks again; watchdog pings resumed"
                );
                withheld = false;
            }
            let ping = if notifier.watchdog.is_some() {
                "WATCHDOG=1\n"
            } else {
                ""
            };
            notifier.send(&format!("{ping}STATUS={line}"));
        } else {
            let what: Vec<String> = stale
                .iter()
                .map(|(label, gap)| {
                    format!("{label} silent for {}", vigil_core::format_duration(*gap))
                })
                .collect();
            if !withheld {
                tracing::error!(
                    event = "watchdog_withheld",
                    "withholding the systemd watchdog ping: {}",
                    what.join(", ")
                );
                withheld = true;
            }
            notifier.send(&format!("STATUS=degraded: {}", what.join(", ")));
        }
    }
}

/// The unit file the packages install (`package/vigil.service`, as
/// `/lib/systemd/system/vigil.service`). One text: `vigil systemd-unit` prints the same,
/// with the running binary's path.
const PACKAGED_UNIT: &str = include_str!("../../package/vigil.service");

/// The `ExecStart=` line of [`PACKAGED_UNIT`].
const PACKAGED_EXEC_START: &str = "ExecStart=/usr/bin/vigil run";

/// `vigil systemd-unit`: the packaged unit file, starting `exe` (with `-c config` when a
/// configuration other than the default was named). Both are quoted for systemd already.
pub fn unit_file(exe: &str, config: Option<&str>) -> String {
    let exec_start = match config {
        Some(config) => format!("ExecStart={exe} run -c {config}"),
        None => format!("ExecStart={exe} run"),
    };
    PACKAGED_UNIT.replacen(PACKAGED_EXEC_START, &exec_start, 1)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn the_packaged_unit_starts_the_packaged_binary_once() {
        assert_eq!(PACKAGED_UNIT.matches(PACKAGED_EXEC_START).count(), 1);
        assert_eq!(unit_file("/usr/bin/vigil", None), PACKAGED_UNIT);
        let unit = unit_file("/opt/vigil/vigil", Some("/srv/v.toml"));
        assert!(unit.contains("\nExecStart=/opt/vigil/vigil run -c /srv/v.toml\n"));
        assert!(!unit.contains("/usr/bin/vigil"));
    }
}
