//! The last known state of every check and every exec service: observations, not
//! decisions, batched by the ledger thread and written without an fsync of their own.

use rusqlite::{Connection, params};
use vigil_core::Timestamp;
use vigil_core::health::{CheckHealth, HealthStatus, RunVerdict};

use super::{Ledger, Result, sql_err, ts};

/// The runtime state of an exec service as its supervisor last wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecStateRow {
    pub service: String,
    /// The `vigil run` that owns the process.
    pub vigil_pid: u32,
    pub pid: Option<u32>,
    pub main_pid: Option<u32>,
    /// `starting`, `running`, `stopping`, `restart-pending`, `given-up`, `exited`,
    /// `stopped`, `left-running`.
    pub state: String,
    /// The last `STATUS=` text the service sent.
    pub status_text: Option<String>,
    pub since: Timestamp,
    pub detail: String,
}

/// The persisted state of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckStateRow {
    pub service: String,
    pub check: String,
    pub health: CheckHealth,
    pub last_verdict: Option<RunVerdict>,
    pub last_reason: String,
    pub last_run: Option<Timestamp>,
    /// A `log` check's read position (`vigil_checks::probe::log::position`), so the next
    /// process, a one-shot run or a restarted daemon, goes on from there. `None` keeps the
    /// saved one.
    pub position: Option<String>,
}

impl Ledger {
    /// Saves many exec states in one transaction.
    pub fn save_exec_states<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a ExecStateRow>,
    ) -> Result<()> {
        // Runtime state, not a decision: no fsync of its own (see `transaction`).
        let err = sql_err(&self.path);
        self.transaction(true, |l| {
            rows.into_iter()
                .try_for_each(|row| save_exec_row(&l.conn, row))
                .map_err(&err)
        })
    }

    /// Every exec service's last written runtime state.
    pub fn exec_states(&self) -> Result<Vec<ExecStateRow>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT service, vigil_pid, pid, main_pid, state, status_text, since, detail
                 FROM exec_state ORDER BY service",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ExecStateRow {
                    service: r.get(0)?,
                    vigil_pid: r.get(1)?,
                    pid: r.get(2)?,
                    main_pid: r.get(3)?,
                    state: r.get(4)?,
                    status_text: r.get(5)?,
                    since: Timestamp::from_millis(r.get(6)?),
                    detail: r.get(7)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }

    /// Saves the state of one check after a run.
    pub fn save_check_state(&self, row: &CheckStateRow) -> Result<()> {
        save_row(&self.conn, row).map_err(sql_err(&self.path))
    }

    /// Saves many check states in one transaction.
    pub fn save_check_states<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a CheckStateRow>,
    ) -> Result<()> {
        // Observations, not decisions: no fsync of their own (see `transaction`).
        let err = sql_err(&self.path);
        self.transaction(true, |l| {
            rows.into_iter()
                .try_for_each(|row| save_row(&l.conn, row))
                .map_err(&err)
        })
    }

    /// Saves only a `log` check's read position (a run whose verdict is not kept, inside
    /// the service's grace period, still consumed its lines).
    pub fn save_check_position(&self, service: &str, check: &str, position: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO check_state (service, name, status, consecutive_failures,
                    consecutive_successes, position)
                 VALUES (?1, ?2, 'unknown', 0, 0, ?3)
                 ON CONFLICT (service, name) DO UPDATE SET position = excluded.position",
                params![service, check, position],
            )
            .map_err(sql_err(&self.path))?;
        Ok(())
    }

    /// Every saved check state (all services).
    pub fn check_states(&self) -> Result<Vec<CheckStateRow>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT service, name, status, consecutive_failures, consecutive_successes,
                        last_change, last_verdict, last_reason, last_run, position
                 FROM check_state ORDER BY service, name",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                let status: String = r.get(2)?;
                let verdict: Option<String> = r.get(6)?;
                Ok(CheckStateRow {
                    service: r.get(0)?,
                    check: r.get(1)?,
                    health: CheckHealth {
                        status: HealthStatus::parse(&status).unwrap_or_default(),
                        consecutive_failures: r.get(3)?,
                        consecutive_successes: r.get(4)?,
                        last_change: ts(r.get(5)?),
                    },
                    last_verdict: verdict.as_deref().and_then(RunVerdict::parse),
                    last_reason: r.get(7)?,
                    last_run: ts(r.get(8)?),
                    position: r.get(9)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }
}

pub(super) fn save_exec_row(conn: &Connection, row: &ExecStateRow) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO exec_state (service, vigil_pid, pid, main_pid, state, status_text, since, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (service) DO UPDATE SET vigil_pid = excluded.vigil_pid,
            pid = excluded.pid, main_pid = excluded.main_pid, state = excluded.state,
            status_text = excluded.status_text, since = excluded.since,
            detail = excluded.detail",
    )?;
    stmt.execute(params![
        row.service,
        row.vigil_pid,
        row.pid,
        row.main_pid,
        row.state,
        row.status_text,
        row.since.as_millis(),
        row.detail
    ])?;
    Ok(())
}

pub(super) fn save_row(conn: &Connection, row: &CheckStateRow) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO check_state (service, name, status, consecutive_failures,
            consecutive_successes, last_change, last_verdict, last_reason, last_run, position)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (service, name) DO UPDATE SET
            status = excluded.status,
            consecutive_failures = excluded.consecutive_failures,
            consecutive_successes = excluded.consecutive_successes,
            last_change = excluded.last_change,
            last_verdict = excluded.last_verdict,
            last_reason = excluded.last_reason,
            last_run = excluded.last_run,
            position = COALESCE(excluded.position, check_state.position)",
    )?;
    stmt.execute(params![
        row.service,
        row.check,
        row.health.status.as_str(),
        row.health.consecutive_failures,
        row.health.consecutive_successes,
        row.health.last_change.map(Timestamp::as_millis),
        row.last_verdict.map(RunVerdict::as_str),
        row.last_reason,
        row.last_run.map(Timestamp::as_millis),
        row.position,
    ])?;
    Ok(())
}
