//! What the CLI prints: human tables (color only on a TTY, never with `NO_COLOR`) and the
//! stable JSON documents described in `docs/cli-json.md` (each carries `"version": 1`).

pub mod hold;

use std::io::IsTerminal as _;

use serde::Serialize;
use vigil_config::model::Config;
use vigil_core::guard::{Denial, Skip};
use vigil_core::health::HealthStatus;
use vigil_core::{RestartRequest, Source, Timestamp, Verdict, decide, format_duration};

use crate::guard::Decision;
use crate::ledger::{DeliveryRow, HistoryRow, LedgerError, LedgerHandle};
use crate::platform::clock;

pub const JSON_VERSION: u32 = 1;

thread_local! {
    /// Set while rendering for another process (the daemon rendering for a CLI over the
    /// control socket): that process's terminal decides, not ours.
    static COLOR_OVERRIDE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether this process's stdout wants color: a TTY, and no `NO_COLOR`.
pub fn stdout_wants_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Runs `render` with color forced on or off (rendering is synchronous, so the override
/// cannot leak into another task on this thread).
pub fn with_color<T>(color: bool, render: impl FnOnce() -> T) -> T {
    COLOR_OVERRIDE.set(Some(color));
    let out = render();
    COLOR_OVERRIDE.set(None);
    out
}

fn color_enabled() -> bool {
    COLOR_OVERRIDE.get().unwrap_or_else(stdout_wants_color)
}

fn paint(text: &str, code: &str) -> String {
    if color_enabled() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn painted_state(state: &str) -> String {
    match state {
        "ok" | "passing" | "pass" | "allowed" | "delivered" => paint(state, "32"),
        "warning" | "warn" | "skipped" | "unknown" | "reset" | "dropped" | "paused" | "pause"
        | "resume" | "expired" | "expected-down" => paint(state, "33"),
        "stopped" | "stop" | "start" => paint(state, "36"),
        "failing" | "fail" | "denied" | "given-up" | "failed" | "interrupted" => paint(state, "31"),
        other => other.to_owned(),
    }
}

/// Renders rows as an aligned table; `cells` may contain color codes, widths use `plain`.
fn table(header: &[&str], rows: &[Vec<(String, String)>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, (plain, _)) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(plain.chars().count());
            }
        }
    }
    let mut out = String::new();
    let last = header.len().saturating_sub(1);
    for (i, h) in header.iter().enumerate() {
        out.push_str(&paint(h, "1"));
        if i < last {
            out.push_str(&" ".repeat(widths[i] - h.chars().count() + 2));
        }
    }
    out.push('\n');
    for row in rows {
        for (i, (plain, shown)) in row.iter().enumerate() {
            out.push_str(shown);
            if i < last {
                out.push_str(&" ".repeat(widths[i].saturating_sub(plain.chars().count()) + 2));
            }
        }
        out.push('\n');
    }
    out
}

fn cell(text: impl Into<String>) -> (String, String) {
    let t = text.into();
    (t.clone(), t)
}

fn state_cell(state: &str) -> (String, String) {
    (state.to_owned(), painted_state(state))
}

// ---------------------------------------------------------------- status

#[derive(Serialize, Debug)]
pub struct StatusReport {
    pub version: u32,
    pub generated_at: String,
    pub services: Vec<ServiceStatus>,
    /// Allowed restarts without a recorded outcome (a Vigil died mid-restart, or one is
    /// restarting right now).
    pub dangling_intents: Vec<DanglingIntent>,
}

#[derive(Serialize, Debug)]
pub struct DanglingIntent {
    pub service: String,
    pub at: String,
    pub source: String,
    pub pid: u32,
}

#[derive(Serialize, Debug)]
pub struct ServiceStatus {
    pub name: String,
    pub driver: &'static str,
    /// From the driver (`status_command` exit 0), or `null` when it cannot tell.
    pub running: Option<bool>,
    /// The driver's own view, when it has one: for `docker`, the container's state,
    /// health, exit code, start time and Docker's restart count.
    pub driver_detail: Option<String>,
    /// `stopped` or `paused` (an operator's hold, see `hold`), else `ok`, `failing`,
    /// `warning`, `given-up` or `unknown`.
    pub state: &'static str,
    /// An operator's stop or pause in force: since when, until when, by whom, why.
    pub hold: Option<hold::HoldJson>,
    pub restarts_in_window: u32,
    pub max_restarts: u32,
    pub window_secs: u64,
    pub cooldown_left_secs: u64,
    /// When a given-up service re-arms (the oldest restart leaves the window).
    pub rearm_at: Option<String>,
    /// While given up: the denials of this given-up episode (counted on the episode, not
    /// stored one by one) and when the first was.
    pub denials: Option<u32>,
    pub given_up_since: Option<String>,
    pub last_restart: Option<LastRestart>,
    pub next_scheduled_restart: Option<String>,
    pub schedules: Vec<String>,
    /// The next (or current) maintenance window.
    pub next_maintenance: Option<MaintenanceJson>,
    pub checks: Vec<CheckStatus>,
    /// `driver = "exec"`: the supervised process as `vigil run` last reported it.
    pub exec: Option<ExecStatus>,
    /// `driver = "systemd"`: the unit as systemd reports it; `null` for other drivers.
    pub systemd: Option<SystemdStatus>,
}

/// A maintenance window in `vigil status --json`.
#[derive(Serialize, Debug)]
pub struct MaintenanceJson {
    pub start: String,
    pub end: String,
    /// `pause` or `stop`.
    pub action: &'static str,
    /// Whether it is open now.
    pub open: bool,
}

#[derive(Serialize, Debug)]
pub struct ExecStatus {
    /// `starting`, `running`, `stopping`, `restart-pending`, `given-up`, `exited`,
    /// `stopped`, `left-running`; `unknown` when no `vigil run` reported it.
    pub state: String,
    pub pid: Option<u32>,
    pub main_pid: Option<u32>,
    /// The last `STATUS=` text the service sent over sd_notify.
    pub status_text: Option<String>,
    pub since: Option<String>,
    pub detail: String,
    /// The `vigil run` that owns the process, and whether it is alive.
    pub vigil_pid: Option<u32>,
    pub daemon_running: bool,
}

/// A systemd unit's state in `vigil status`.
#[derive(Serialize, Debug)]
pub struct SystemdStatus {
    pub unit: String,
    /// `active`, `failed`, `inactive`, `activating`, ...; `null` when the bus could not be
    /// asked (`error` says why).
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
    pub load_state: Option<String>,
    /// The service's `Result` (`success`, `exit-code`, `start-limit-hit`, ...).
    pub result: Option<String>,
    /// Automatic restarts by systemd's own `Restart=`.
    pub n_restarts: Option<u32>,
    /// `ActiveEnterTimestamp`: when the unit last became active.
    pub active_since: Option<String>,
    /// Since `active_since`, while the unit is active (what `grace` counts).
    pub uptime_secs: Option<u64>,
    pub error: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct LastRestart {
    pub at: String,
    pub source: String,
    pub forced: bool,
    pub outcome: Option<String>,
    pub detail: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct CheckStatus {
    pub name: String,
    pub kind: &'static str,
    pub every_secs: f64,
    /// `unknown`, `passing`, `warning`, `failing`.
    pub status: &'static str,
    pub last_verdict: Option<&'static str>,
    pub last_reason: String,
    pub last_run: Option<String>,
    pub age_secs: Option<u64>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_change: Option<String>,
    /// The check fails while an operator has stopped the service: as expected.
    pub expected_down: bool,
}

/// Builds the status report from the config and the ledger (works without a daemon).
pub async fn status(
    config: &Config,
    ledger: &LedgerHandle,
    only: Option<&str>,
) -> Result<StatusReport, LedgerError> {
    status_with(config, ledger, only, &vigil_checks::ProbeContext::new()).await
}

/// What a service's driver says about it, read by probing it: a `status_command` run,
/// the Docker API, the unit's state over D-Bus. `vigil status` reads it for every report;
/// the dashboard's feed reads it in the background at its own pace, so a slow or hanging
/// probe never holds a snapshot (`control/dashboard/live.rs`).
#[derive(Clone, Debug, Default)]
pub struct DriverView {
    /// Whether it runs, from `status_command` or the container's state (`None`: the
    /// driver cannot tell, or it is systemd's or exec's, told by `unit` or the ledger).
    pub running: Option<bool>,
    pub detail: Option<String>,
    pub unit: Option<Result<vigil_checks::systemd::UnitState, String>>,
}

impl DriverView {
    /// Asks `spec`'s driver, through the shared clients of `probes`.
    pub async fn read(
        spec: &vigil_config::model::DriverSpec,
        probes: &vigil_checks::ProbeContext,
    ) -> DriverView {
        let driver = crate::drivers::Reader::new(spec, probes);
        let detail = driver.detail().await;
        let unit = driver.unit_state().await;
        let running = match driver {
            crate::drivers::Reader::Command(_) | crate::drivers::Reader::Docker(_) => {
                driver.is_running().await
            }
            crate::drivers::Reader::Exec | crate::drivers::Reader::Systemd(_) => None,
        };
        DriverView {
            running,
            detail,
            unit,
        }
    }
}

/// Where a status report gets each service's [`DriverView`].
pub enum Drivers<'a> {
    /// Asks every driver now, through these shared clients.
    Probe(&'a vigil_checks::ProbeContext),
    /// Views read earlier, by service name (a service missing is reported as unknown).
    Known(&'a std::collections::BTreeMap<String, DriverView>),
}

/// [`status`] asking the drivers through `probes`, so that a caller building reports in
/// a loop keeps one D-Bus connection rather than opening one per report.
pub async fn status_with(
    config: &Config,
    ledger: &LedgerHandle,
    only: Option<&str>,
    probes: &vigil_checks::ProbeContext,
) -> Result<StatusReport, LedgerError> {
    status_using(config, ledger, only, Drivers::Probe(probes)).await
}

/// [`status`] with the drivers' views from `drivers`.
pub async fn status_using(
    config: &Config,
    ledger: &LedgerHandle,
    only: Option<&str>,
    drivers: Drivers<'_>,
) -> Result<StatusReport, LedgerError> {
    let now = clock::now();
    let states = ledger.call(|l| l.check_states()).await?;
    let exec_states = ledger.call(|l| l.exec_states()).await?;
    let dangling = ledger.call(|l| l.dangling_intents(None)).await?;
    let mut services = Vec::new();
    for service in &config.services {
        if only.is_some_and(|o| o != service.name.as_str()) {
            continue;
        }
        let name = service.name.to_string();
        let window = service.guard.window;
        // Same edge as the guard: a restart exactly one window ago still counts.
        let window_start = service.guard.window_start(now);
        let (history, last, episode, hold) = {
            let n = name.clone();
            ledger
                .call(move |l| -> Result<_, LedgerError> {
                    let counted = l.counted_restarts(&n, window_start)?;
                    let last = l.last_allowed(&n)?;
                    Ok((
                        counted,
                        last,
                        l.given_up_episode(&n, now)?,
                        l.current_hold(&n, now)?,
                    ))
                })
                .await?
        };
        let hold = hold.map(|h| hold::HoldJson::of(&h, now));
        let stopped = hold.as_ref().is_some_and(|h| h.state == "stopped");
        let count = history.iter().filter(|r| r.at >= window_start).count();
        let verdict = decide(
            &service.guard,
            &history,
            RestartRequest::new(Source::Health),
            now,
        );
        let (cooldown_left, rearm_at) = match &verdict {
            Verdict::Skipped(Skip::Cooldown { wait, .. } | Skip::Backoff { wait, .. }) => {
                (wait.as_secs(), None)
            }
            Verdict::Denied(Denial::Limit { rearm_at, .. }) => (0, Some(*rearm_at)),
            _ => (0, None),
        };
        let checks: Vec<CheckStatus> = service
            .checks
            .iter()
            .map(|c| {
                let row = states
                    .iter()
                    .find(|r| r.service == name && r.check == c.name.as_str());
                let health = row.map(|r| r.health).unwrap_or_default();
                CheckStatus {
                    name: c.name.to_string(),
                    kind: c.kind.as_str(),
                    every_secs: c.every.as_secs_f64(),
                    status: health.status.as_str(),
                    last_verdict: row.and_then(|r| r.last_verdict).map(|v| v.as_str()),
                    last_reason: row.map(|r| r.last_reason.clone()).unwrap_or_default(),
                    last_run: row.and_then(|r| r.last_run).map(|t| t.to_string()),
                    age_secs: row
                        .and_then(|r| r.last_run)
                        .map(|t| now.saturating_since(t).as_secs()),
                    consecutive_failures: health.consecutive_failures,
                    consecutive_successes: health.consecutive_successes,
                    last_change: health.last_change.map(|t| t.to_string()),
                    expected_down: stopped && health.status == HealthStatus::Failing,
                }
            })
            .collect();
        let state = if rearm_at.is_some() {
            "given-up"
        } else if checks
            .iter()
            .any(|c| c.status == HealthStatus::Failing.as_str())
        {
            "failing"
        } else if checks
            .iter()
            .any(|c| c.status == HealthStatus::Warning.as_str())
        {
            "warning"
        } else if checks.is_empty() || checks.iter().all(|c| c.status == "passing") {
            "ok"
        } else {
            "unknown"
        };
        let next_scheduled = service
            .schedules
            .iter()
            .filter_map(|s| s.schedule.next_after(now))
            .min();
        let DriverView {
            running: driver_running,
            detail: driver_detail,
            unit,
        } = match &drivers {
            Drivers::Probe(probes) => DriverView::read(&service.driver, probes).await,
            Drivers::Known(views) => views.get(&name).cloned().unwrap_or_default(),
        };
        let exec = match &service.driver {
            vigil_config::model::DriverSpec::Exec(_) => {
                Some(exec_status(exec_states.iter().find(|r| r.service == name)))
            }
            _ => None,
        };
        let running = match (&exec, &unit) {
            (Some(e), _) if e.daemon_running => Some(matches!(
                e.state.as_str(),
                "running" | "starting" | "stopping"
            )),
            (Some(e), _) if e.state == "left-running" => e
                .pid
                .map(|p| std::path::Path::new(&format!("/proc/{p}")).exists()),
            (Some(_), _) => None,
            (None, Some(Ok(state))) => Some(state.is_active()),
            (None, Some(Err(_))) => None,
            (None, None) => driver_running,
        };
        let state = match (&hold, &exec) {
            (Some(h), _) if h.state == "stopped" => "stopped",
            (Some(_), _) => "paused",
            (None, Some(e)) if e.daemon_running && e.state == "given-up" => "given-up",
            _ => state,
        };
        let systemd = match (&service.driver, unit) {
            (vigil_config::model::DriverSpec::Systemd(spec), Some(state)) => {
                Some(systemd_status(&spec.unit, state, now))
            }
            _ => None,
        };
        services.push(ServiceStatus {
            name: name.clone(),
            driver: service.driver.kind(),
            running,
            driver_detail,
            state,
            hold,
            restarts_in_window: u32::try_from(count).unwrap_or(u32::MAX),
            max_restarts: service.guard.max_restarts,
            window_secs: window.as_secs(),
            cooldown_left_secs: cooldown_left,
            rearm_at: rearm_at.map(|t| t.to_string()),
            denials: episode.map(|(n, _)| n),
            given_up_since: episode.map(|(_, at)| at.to_string()),
            last_restart: last.map(|r| LastRestart {
                at: r.at.to_string(),
                source: r.source,
                forced: r.forced,
                outcome: r.outcome,
                detail: r.outcome_detail,
            }),
            next_scheduled_restart: next_scheduled.map(|t| t.to_string()),
            next_maintenance: crate::service::operator::next_window(&service.maintenance, now).map(
                |(w, start, end)| MaintenanceJson {
                    start: start.to_string(),
                    end: end.to_string(),
                    action: w.action.as_str(),
                    open: start <= now,
                },
            ),
            schedules: service
                .schedules
                .iter()
                .map(|s| s.schedule.describe())
                .collect(),
            checks,
            exec,
            systemd,
        });
    }
    Ok(StatusReport {
        version: JSON_VERSION,
        generated_at: now.to_string(),
        services,
        dangling_intents: dangling
            .into_iter()
            .filter(|d| only.is_none_or(|o| o == d.service))
            .map(|d| DanglingIntent {
                service: d.service,
                at: d.at.to_string(),
                source: d.source,
                pid: d.pid,
            })
            .collect(),
    })
}

fn exec_status(row: Option<&crate::ledger::ExecStateRow>) -> ExecStatus {
    let Some(r) = row else {
        return ExecStatus {
            state: "unknown".to_owned(),
            pid: None,
            main_pid: None,
            status_text: None,
            since: None,
            detail: "no `vigil run` has supervised it yet".to_owned(),
            vigil_pid: None,
            daemon_running: false,
        };
    };
    // The owner is alive if its pid runs a vigil (a recycled pid runs something else).
    let daemon_running = std::fs::read_to_string(format!("/proc/{}/comm", r.vigil_pid))
        .is_ok_and(|c| c.trim() == "vigil");
    ExecStatus {
        state: r.state.clone(),
        pid: r.pid,
        main_pid: r.main_pid,
        status_text: r.status_text.clone(),
        since: Some(r.since.to_string()),
        detail: r.detail.clone(),
        vigil_pid: Some(r.vigil_pid),
        daemon_running,
    }
}

fn systemd_status(
    unit: &str,
    state: Result<vigil_checks::systemd::UnitState, String>,
    now: Timestamp,
) -> SystemdStatus {
    match state {
        Ok(s) => SystemdStatus {
            unit: unit.to_owned(),
            uptime_secs: s
                .active_enter
                .filter(|_| s.is_active())
                .map(|t| now.saturating_since(t).as_secs()),
            active_since: s.active_enter.map(|t| t.to_string()),
            active_state: Some(s.active_state),
            sub_state: Some(s.sub_state),
            load_state: Some(s.load_state),
            result: s.result,
            n_restarts: s.n_restarts,
            error: None,
        },
        Err(e) => SystemdStatus {
            unit: unit.to_owned(),
            active_state: None,
            sub_state: None,
            load_state: None,
            result: None,
            n_restarts: None,
            active_since: None,
            uptime_secs: None,
            error: Some(e),
        },
    }
}

fn age(secs: Option<u64>) -> String {
    match secs {
        Some(s) => format!("{} ago", format_duration(std::time::Duration::from_secs(s))),
        None => "never".to_owned(),
    }
}

pub fn render_status(report: &StatusReport) -> String {
    let rows: Vec<Vec<(String, String)>> = report
        .services
        .iter()
        .map(|s| {
            let budget = format!(
                "{}/{} {}",
                s.restarts_in_window,
                s.max_restarts,
                vigil_core::guard::per_window(std::time::Duration::from_secs(s.window_secs))
            );
            let cooldown = if s.cooldown_left_secs > 0 {
                format!(
                    "{} left",
                    format_duration(std::time::Duration::from_secs(s.cooldown_left_secs))
                )
            } else if let Some(rearm) = &s.rearm_at {
                match s.denials {
                    Some(n) => format!("re-arms {rearm} ({n} denied)"),
                    None => format!("re-arms {rearm}"),
                }
            } else {
                "-".to_owned()
            };
            let running = match s.running {
                Some(true) => "yes",
                Some(false) => "no",
                None => "?",
            };
            vec![
                cell(s.name.clone()),
                cell(s.driver),
                cell(running),
                state_cell(s.state),
                cell(budget),
                cell(cooldown),
                cell(
                    s.next_scheduled_restart
                        .clone()
                        .unwrap_or_else(|| "-".to_owned()),
                ),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "SERVICE",
            "DRIVER",
            "RUNNING",
            "STATE",
            "RESTARTS",
            "COOLDOWN",
            "NEXT SCHEDULED",
        ],
        &rows,
    );
    let details: Vec<String> = report
        .services
        .iter()
        .filter_map(|s| {
            Some(format!(
                "{} ({}): {}\n",
                s.name,
                s.driver,
                s.driver_detail.as_ref()?
            ))
        })
        .collect();
    if !details.is_empty() {
        out.push('\n');
        out.extend(details);
    }
    let holds: Vec<String> = report
        .services
        .iter()
        .filter_map(|s| {
            let h = s.hold.as_ref()?;
            let clear = if h.state == "stopped" {
                "start"
            } else {
                "resume"
            };
            Some(format!(
                "{}: {}; `vigil {clear} {}` clears it\n",
                s.name,
                h.describe(),
                s.name
            ))
        })
        .collect();
    let windows: Vec<String> = report
        .services
        .iter()
        .filter_map(|s| {
            let w = s.next_maintenance.as_ref()?;
            let when = if w.open { "open now" } else { "next" };
            Some(format!(
                "{}: maintenance window {when}: {} to {} ({})\n",
                s.name, w.start, w.end, w.action
            ))
        })
        .collect();
    if !holds.is_empty() || !windows.is_empty() {
        out.push('\n');
        out.extend(holds);
        out.extend(windows);
    }
    let check_rows: Vec<Vec<(String, String)>> = report
        .services
        .iter()
        .flat_map(|s| {
            s.checks.iter().map(move |c| {
                vec![
                    cell(format!("{}/{}", s.name, c.name)),
                    cell(c.kind),
                    state_cell(if c.expected_down {
                        "expected-down"
                    } else {
                        c.status
                    }),
                    cell(age(c.age_secs)),
                    cell(c.last_reason.clone()),
                ]
            })
        })
        .collect();
    let unit_rows: Vec<Vec<(String, String)>> = report
        .services
        .iter()
        .filter_map(|s| {
            let u = s.systemd.as_ref()?;
            let state = match (&u.active_state, &u.sub_state) {
                (Some(a), Some(sub)) => format!("{a} ({sub})"),
                _ => u.error.clone().unwrap_or_else(|| "?".to_owned()),
            };
            let painted = match u.active_state.as_deref() {
                Some("active") => paint(&state, "32"),
                Some("failed") => paint(&state, "31"),
                Some(_) => paint(&state, "33"),
                None => paint(&state, "31"),
            };
            let up = match u.uptime_secs {
                Some(secs) => format_duration(std::time::Duration::from_secs(secs)),
                None => "-".to_owned(),
            };
            Some(vec![
                cell(s.name.clone()),
                cell(u.unit.clone()),
                (state, painted),
                cell(u.result.clone().unwrap_or_else(|| "-".to_owned())),
                cell(
                    u.n_restarts
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                ),
                cell(up),
            ])
        })
        .collect();
    if !unit_rows.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["SERVICE", "UNIT", "ACTIVE", "RESULT", "NRESTARTS", "UP"],
            &unit_rows,
        ));
    }
    if !check_rows.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["CHECK", "KIND", "STATUS", "LAST RUN", "REASON"],
            &check_rows,
        ));
    }
    let exec_rows: Vec<Vec<(String, String)>> = report
        .services
        .iter()
        .filter_map(|s| {
            let e = s.exec.as_ref()?;
            let state = if e.daemon_running || e.state == "unknown" {
                e.state.clone()
            } else {
                format!("{} (vigil run not running)", e.state)
            };
            Some(vec![
                cell(s.name.clone()),
                cell(e.pid.map_or_else(|| "-".to_owned(), |p| p.to_string())),
                state_cell(&state),
                cell(e.status_text.clone().unwrap_or_else(|| "-".to_owned())),
                cell(if e.detail.is_empty() {
                    "-".to_owned()
                } else {
                    e.detail.clone()
                }),
            ])
        })
        .collect();
    if !exec_rows.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["EXEC SERVICE", "PID", "STATE", "STATUS", "DETAIL"],
            &exec_rows,
        ));
    }
    for d in &report.dangling_intents {
        out.push_str(&format!(
            "\n{}: restart allowed at {} (source {}) by vigil pid {} has no outcome yet (in progress, or that vigil died)\n",
            paint("warning", "33"),
            d.at,
            d.source,
            d.pid
        ));
    }
    out
}

// ---------------------------------------------------------------- history

#[derive(Serialize, Debug)]
pub struct HistoryJson<'a> {
    pub version: u32,
    pub entries: Vec<HistoryEntry<'a>>,
    /// Alert deliveries (docs/cli-json.md).
    pub alerts: Vec<DeliveryEntry<'a>>,
}

#[derive(Serialize, Debug)]
pub struct DeliveryEntry<'a> {
    pub id: i64,
    pub channel: &'a str,
    pub kind: &'a str,
    pub created_at: String,
    pub finished_at: String,
    pub status: &'a str,
    pub attempts: u32,
    pub alerts: u32,
    pub events: &'a [String],
    pub services: &'a [String],
    pub summary: &'a str,
    pub error: Option<&'a str>,
    pub pid: u32,
}

#[derive(Serialize, Debug)]
pub struct HistoryEntry<'a> {
    pub id: i64,
    pub service: &'a str,
    pub at: String,
    pub source: &'a str,
    pub forced: bool,
    pub verdict: &'a str,
    pub reason: &'a str,
    pub message: &'a str,
    pub outcome: Option<&'a str>,
    pub outcome_detail: Option<&'a str>,
    pub finished_at: Option<String>,
    pub pid: u32,
    /// Hang evidence of a watchdog restart.
    pub evidence: Option<&'a str>,
    /// For the first denial of a given-up episode: the episode's denials in all (this
    /// one included), and the last one's time. Later denials are counted here, not
    /// stored as entries of their own.
    pub denials: Option<u32>,
    pub last_denial_at: Option<String>,
}

pub fn history_json<'a>(rows: &'a [HistoryRow], deliveries: &'a [DeliveryRow]) -> HistoryJson<'a> {
    HistoryJson {
        version: JSON_VERSION,
        alerts: deliveries
            .iter()
            .map(|d| DeliveryEntry {
                id: d.id,
                channel: &d.channel,
                kind: &d.kind,
                created_at: d.created_at.to_string(),
                finished_at: d.finished_at.to_string(),
                status: &d.status,
                attempts: d.attempts,
                alerts: d.alerts,
                events: &d.events,
                services: &d.services,
                summary: &d.summary,
                error: d.error.as_deref(),
                pid: d.pid,
            })
            .collect(),
        entries: rows
            .iter()
            .map(|r| HistoryEntry {
                id: r.id,
                service: &r.service,
                at: r.at.to_string(),
                source: &r.source,
                forced: r.forced,
                verdict: &r.verdict,
                reason: &r.reason,
                message: &r.message,
                outcome: r.outcome.as_deref(),
                outcome_detail: r.outcome_detail.as_deref(),
                finished_at: r.finished_at.map(|t| t.to_string()),
                pid: r.pid,
                evidence: r.evidence.as_deref(),
                denials: (r.verdict == "denied").then_some(r.repeats.saturating_add(1)),
                last_denial_at: r.last_at.map(|t| t.to_string()),
            })
            .collect(),
    }
}

/// The restart history, then (when there are any) the alert deliveries.
pub fn render_history(rows: &[HistoryRow], deliveries: &[DeliveryRow]) -> String {
    let mut out = render_restarts(rows);
    if !deliveries.is_empty() {
        out.push('\n');
        out.push_str(&render_deliveries(deliveries));
    }
    out
}

fn render_deliveries(rows: &[DeliveryRow]) -> String {
    let rows: Vec<Vec<(String, String)>> = rows
        .iter()
        .map(|d| {
            let mut what = d.summary.clone();
            if let Some(error) = &d.error {
                what.push_str(" — ");
                what.push_str(error);
            }
            vec![
                cell(d.finished_at.to_string()),
                cell(format!("{} ({})", d.channel, d.kind)),
                state_cell(&d.status),
                cell(d.attempts.to_string()),
                cell(d.events.join(",")),
                cell(what),
            ]
        })
        .collect();
    table(
        &[
            "ALERT SENT",
            "CHANNEL",
            "STATUS",
            "TRIES",
            "EVENTS",
            "MESSAGE",
        ],
        &rows,
    )
}

fn render_restarts(rows: &[HistoryRow]) -> String {
    if rows.is_empty() {
        return "no restart requests recorded\n".to_owned();
    }
    let rows: Vec<Vec<(String, String)>> = rows
        .iter()
        .map(|r| {
            let outcome = r.outcome.clone().unwrap_or_else(|| {
                if r.verdict == "allowed" {
                    "in-flight".to_owned()
                } else {
                    "-".to_owned()
                }
            });
            let mut message = r.message.clone();
            if r.repeats > 0 {
                message.push_str(&format!(
                    " — denied {} times in this given-up episode, last at {}",
                    r.repeats.saturating_add(1),
                    r.last_at.map(|t| t.to_string()).unwrap_or_default()
                ));
            }
            if let Some(detail) = &r.outcome_detail {
                message.push_str(" — ");
                message.push_str(detail);
            }
            if let Some(evidence) = &r.evidence {
                message.push_str(" — evidence: ");
                message.push_str(&evidence.replace('\n', " | "));
            }
            vec![
                cell(r.at.to_string()),
                cell(r.service.clone()),
                cell(if r.forced {
                    format!("{} (forced)", r.source)
                } else {
                    r.source.clone()
                }),
                state_cell(&r.verdict),
                state_cell(&outcome),
                cell(message),
            ]
        })
        .collect();
    table(
        &["TIME", "SERVICE", "SOURCE", "VERDICT", "OUTCOME", "MESSAGE"],
        &rows,
    )
}

// ---------------------------------------------------------------- restart / check

#[derive(Serialize, Debug)]
pub struct DecisionJson {
    pub version: u32,
    pub service: String,
    pub verdict: &'static str,
    pub reason: Option<&'static str>,
    pub message: String,
    pub retry_at: Option<String>,
    pub outcome: Option<&'static str>,
    pub detail: Option<String>,
}

pub fn decision_json(service: &vigil_core::ServiceName, d: &Decision) -> DecisionJson {
    DecisionJson {
        version: JSON_VERSION,
        service: service.to_string(),
        verdict: d.verdict.kind(),
        reason: d.verdict.reason(),
        message: d.verdict.to_string(),
        retry_at: d
            .verdict
            .retry_at(d.decided_at)
            .map(|t: Timestamp| t.to_string()),
        outcome: d
            .report
            .as_ref()
            .map(|r| if r.ok { "ok" } else { "failed" }),
        detail: d.report.as_ref().map(|r| r.detail.clone()),
    }
}

#[derive(Serialize, Debug)]
pub struct CheckReport {
    pub name: String,
    pub kind: &'static str,
    /// This run: `pass`, `warn`, `fail`.
    pub verdict: &'static str,
    /// The check's status after this run.
    pub status: &'static str,
    pub reason: String,
    pub attempts: usize,
    /// Set when the result was ignored because the service is inside its grace period.
    pub in_grace_secs: Option<u64>,
}

#[derive(Serialize, Debug)]
pub struct ActionReport {
    pub check: String,
    /// `restart` or `repair`.
    pub kind: &'static str,
    pub dry_run: bool,
    pub verdict: &'static str,
    pub message: String,
    pub outcome: Option<&'static str>,
    pub detail: Option<String>,
}

impl ActionReport {
    pub fn dry_run(check: &str, repair: bool, verdict: &Verdict) -> ActionReport {
        ActionReport {
            check: check.to_owned(),
            kind: if repair { "repair" } else { "restart" },
            dry_run: true,
            verdict: verdict.kind(),
            message: verdict.to_string(),
            outcome: None,
            detail: None,
        }
    }

    /// An automatic restart not attempted because it cannot succeed (systemd's start limit).
    pub fn blocked(check: &str, why: &str) -> ActionReport {
        ActionReport {
            check: check.to_owned(),
            kind: "restart",
            dry_run: false,
            verdict: "not-attempted",
            message: format!("Restart NOT ATTEMPTED: {why}"),
            outcome: None,
            detail: None,
        }
    }

    /// What a request's [`Outcome`](crate::service::protocol::Outcome) was.
    pub fn from_outcome(
        check: &str,
        repair: bool,
        outcome: &crate::service::protocol::Outcome,
    ) -> ActionReport {
        use crate::service::protocol::Outcome;
        match outcome {
            Outcome::Decided(d) => ActionReport::performed(check, repair, d),
            Outcome::NotAttempted(why) => ActionReport::blocked(check, why),
            Outcome::Held(kind) => ActionReport::held(check, repair, *kind, None),
            other => ActionReport {
                check: check.to_owned(),
                kind: if repair { "repair" } else { "restart" },
                dry_run: false,
                verdict: "not-attempted",
                message: other.describe(),
                outcome: None,
                detail: None,
            },
        }
    }

    /// Not attempted: an operator's stop or pause holds the service (`what` describes it).
    pub fn held(
        check: &str,
        repair: bool,
        kind: vigil_core::lifecycle::HoldKind,
        what: Option<String>,
    ) -> ActionReport {
        let what = what.unwrap_or_else(|| kind.as_str().to_owned());
        ActionReport {
            check: check.to_owned(),
            kind: if repair { "repair" } else { "restart" },
            dry_run: false,
            verdict: "held",
            message: format!("Restart HELD: the service is {what}"),
            outcome: None,
            detail: None,
        }
    }

    pub fn performed(check: &str, repair: bool, d: &Decision) -> ActionReport {
        ActionReport {
            check: check.to_owned(),
            kind: if repair { "repair" } else { "restart" },
            dry_run: false,
            verdict: d.verdict.kind(),
            message: d.verdict.to_string(),
            outcome: d
                .report
                .as_ref()
                .map(|r| if r.ok { "ok" } else { "failed" }),
            detail: d.report.as_ref().map(|r| r.detail.clone()),
        }
    }
}

#[derive(Serialize, Debug)]
pub struct ServiceCheckReport {
    pub service: String,
    pub checks: Vec<CheckReport>,
    pub action: Option<ActionReport>,
    /// An operator's stop or pause in force (a stopped service's failing checks are
    /// expected, and do not make `vigil check` fail).
    pub hold: Option<hold::HoldJson>,
}

#[derive(Serialize, Debug)]
pub struct CheckJson<'a> {
    pub version: u32,
    pub failing: bool,
    pub services: &'a [ServiceCheckReport],
}

pub fn check_json(reports: &[ServiceCheckReport], failing: bool) -> CheckJson<'_> {
    CheckJson {
        version: JSON_VERSION,
        failing,
        services: reports,
    }
}

pub fn render_check(reports: &[ServiceCheckReport]) -> String {
    let rows: Vec<Vec<(String, String)>> = reports
        .iter()
        .flat_map(|s| {
            s.checks.iter().map(move |c| {
                let reason = match c.in_grace_secs {
                    Some(left) => format!("(grace, {left}s left) {}", c.reason),
                    None => c.reason.clone(),
                };
                let stopped = s.hold.as_ref().is_some_and(|h| h.state == "stopped");
                vec![
                    cell(format!("{}/{}", s.service, c.name)),
                    cell(c.kind),
                    state_cell(c.verdict),
                    state_cell(if stopped && c.status == "failing" {
                        "expected-down"
                    } else {
                        c.status
                    }),
                    cell(reason),
                ]
            })
        })
        .collect();
    let mut out = table(&["CHECK", "KIND", "RESULT", "STATUS", "REASON"], &rows);
    for s in reports {
        if let Some(h) = &s.hold {
            out.push_str(&format!("{}: {}\n", s.service, h.describe()));
        }
        if let Some(a) = &s.action {
            let what = match (a.dry_run, a.verdict) {
                (_, "held") => "held back",
                (true, _) => "would",
                (false, _) => "did",
            };
            out.push_str(&format!(
                "{}: {what} {} (check {} failing): {}",
                s.service, a.kind, a.check, a.message
            ));
            if let Some(detail) = &a.detail {
                out.push_str(&format!(" — {detail}"));
            }
            out.push('\n');
        }
    }
    out
}
