//! The ledger: every restart request and the guard's verdict, plus the last known state of
//! every check, in SQLite under `state_dir`.
//!
//! Shared by the daemon and every one-shot CLI process. WAL mode and a busy timeout make
//! concurrent writers safe; `synchronous = FULL` makes every committed row survive a crash
//! of the process (and of the machine). The schema is versioned with `PRAGMA
//! user_version`; opening a newer schema than this binary knows is an error, never a
//! silent downgrade.
//!
//! A restart is recorded twice: the *intent* (verdict `allowed`, no outcome) is committed
//! before the driver acts, the *outcome* after. An intent left without outcome means a
//! Vigil process died mid-restart; the guard resolves it (as `interrupted`) under the
//! service's lock, and [`Ledger::dangling_intents`] reports it until then.
//!
//! This module must not decide anything: the guard's decision lives in `vigil_core`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};
use vigil_core::health::{CheckHealth, HealthStatus, RunVerdict};
use vigil_core::{RestartRecord, Source, Timestamp, Verdict};

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ledger {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "ledger {path} has schema version {found}, newer than this vigil understands ({SCHEMA_VERSION}); upgrade vigil"
    )]
    TooNew { path: PathBuf, found: i64 },
}

pub type Result<T> = std::result::Result<T, LedgerError>;

/// How long a write (or opening the ledger) waits for another process's transaction.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The file name of the ledger inside `state_dir`.
pub const FILE_NAME: &str = "ledger.db";

/// An open ledger. Not `Sync`: give it one owner (the daemon's ledger thread, or a CLI
/// command).
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    counted: std::cell::RefCell<CountedCache>,
}

/// The counted restarts per service as last read, so that a guard decision in a crash
/// storm does not re-read thousands of rows. Coherent across processes through `PRAGMA
/// data_version`, which changes exactly when another connection committed; this
/// connection's own writes to counted rows update or drop the cached entry.
#[derive(Default)]
struct CountedCache {
    data_version: i64,
    /// Per service: the window start the rows were read for, and the rows (by `at`).
    services: std::collections::HashMap<String, (i64, Vec<RestartRecord>)>,
}

/// Cached rows per service beyond which the front (rows older than the window) is
/// dropped.
const COUNTED_CACHE_PRUNE: usize = 4096;

/// One row of restart history, as `vigil history` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRow {
    pub id: i64,
    pub service: String,
    pub at: Timestamp,
    pub source: String,
    pub forced: bool,
    /// `allowed`, `skipped`, `denied` or `reset`.
    pub verdict: String,
    /// `cooldown`, `backoff`, `lock`, `limit`, or empty.
    pub reason: String,
    /// The verdict in words, with its numbers.
    pub message: String,
    /// `ok`, `failed`, `interrupted`, or `None` while in flight.
    pub outcome: Option<String>,
    pub outcome_detail: Option<String>,
    pub finished_at: Option<Timestamp>,
    pub pid: u32,
    /// What a hung process was doing when the watchdog fired (source `watchdog`).
    pub evidence: Option<String>,
}

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

/// One alert message's final outcome through one channel (`vigil history`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: i64,
    pub channel: String,
    /// `webhook`, `slack`, `email`, `exec`.
    pub kind: String,
    /// When the group closed and the message was assembled.
    pub created_at: Timestamp,
    pub finished_at: Timestamp,
    /// `delivered`, `failed` (a dead letter: every attempt failed) or `dropped` (the
    /// channel's queue overflowed before any attempt).
    pub status: String,
    pub attempts: u32,
    pub alerts: u32,
    /// Event names in the message, each once.
    pub events: Vec<String>,
    /// Services in the message, each once.
    pub services: Vec<String>,
    pub summary: String,
    /// The last error, when not delivered.
    pub error: Option<String>,
    pub pid: u32,
}

/// An allowed restart with no recorded outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub service: String,
    pub at: Timestamp,
    pub source: String,
    pub pid: u32,
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
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

fn ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_millis)
}

impl Ledger {
    /// Opens (creating if needed) the ledger in `state_dir`.
    ///
    /// Two processes opening a new ledger at once (a daemon starting while a CLI command
    /// runs) race to switch it to WAL and to create the schema; SQLite answers the loser
    /// SQLITE_BUSY without consulting the busy handler. Opening is retried for up to
    /// [`BUSY_TIMEOUT`], like any other busy write.
    pub fn open(state_dir: &Path) -> Result<Ledger> {
        std::fs::create_dir_all(state_dir).map_err(|source| LedgerError::StateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join(FILE_NAME);
        let started = crate::clock::monotonic();
        let mut pause = Duration::from_millis(2);
        loop {
            match Self::open_once(&path) {
                Err(LedgerError::Sqlite { source, .. })
                    if is_busy(&source) && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Ledger> {
        let conn = Connection::open(path).map_err(sql_err(path))?;
        let mut ledger = Ledger {
            conn,
            path: path.to_owned(),
            counted: Default::default(),
        };
        ledger.configure()?;
        ledger.migrate()?;
        Ok(ledger)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&mut self) -> Result<()> {
        let err = sql_err(&self.path);
        self.conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
        // journal_mode returns a row; query it rather than execute.
        let _mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(&err)?;
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(&err)?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let err = sql_err(&path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(&err)?;
        if version > SCHEMA_VERSION {
            return Err(LedgerError::TooNew {
                path: path.clone(),
                found: version,
            });
        }
        if version < 1 {
            tx.execute_batch(
                "CREATE TABLE restarts (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    service TEXT NOT NULL,
                    at INTEGER NOT NULL,
                    source TEXT NOT NULL,
                    forced INTEGER NOT NULL DEFAULT 0,
                    verdict TEXT NOT NULL,
                    reason TEXT NOT NULL DEFAULT '',
                    message TEXT NOT NULL,
                    counts INTEGER NOT NULL DEFAULT 0,
                    outcome TEXT,
                    outcome_detail TEXT,
                    finished_at INTEGER,
                    pid INTEGER NOT NULL
                );
                CREATE INDEX restarts_by_service ON restarts(service, at);
                CREATE TABLE check_state (
                    service TEXT NOT NULL,
                    name TEXT NOT NULL,
                    status TEXT NOT NULL,
                    consecutive_failures INTEGER NOT NULL,
                    consecutive_successes INTEGER NOT NULL,
                    last_change INTEGER,
                    last_verdict TEXT,
                    last_reason TEXT NOT NULL DEFAULT '',
                    last_run INTEGER,
                    PRIMARY KEY (service, name)
                );
                PRAGMA user_version = 1;",
            )
            .map_err(&err)?;
        }
        if version < 2 {
            tx.execute_batch(
                "CREATE TABLE heartbeats (
                    service TEXT NOT NULL,
                    name TEXT NOT NULL,
                    at INTEGER NOT NULL,
                    count INTEGER NOT NULL DEFAULT 1,
                    PRIMARY KEY (service, name)
                );
                PRAGMA user_version = 2;",
            )
            .map_err(&err)?;
        }
        if version < 3 {
            // v3: hang evidence on restart rows; the runtime state of exec services.
            tx.execute_batch(
                "ALTER TABLE restarts ADD COLUMN evidence TEXT;
                CREATE TABLE exec_state (
                    service TEXT PRIMARY KEY,
                    vigil_pid INTEGER NOT NULL,
                    pid INTEGER,
                    main_pid INTEGER,
                    state TEXT NOT NULL,
                    status_text TEXT,
                    since INTEGER NOT NULL,
                    detail TEXT NOT NULL DEFAULT ''
                );
                PRAGMA user_version = 3;",
            )
            .map_err(&err)?;
        }
        if version < 4 {
            // v4: alert deliveries (delivered, dead letters, dropped).
            tx.execute_batch(
                "CREATE TABLE alert_deliveries (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    channel TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    finished_at INTEGER NOT NULL,
                    status TEXT NOT NULL,
                    attempts INTEGER NOT NULL,
                    alerts INTEGER NOT NULL,
                    events TEXT NOT NULL,
                    services TEXT NOT NULL,
                    summary TEXT NOT NULL,
                    error TEXT,
                    pid INTEGER NOT NULL
                );
                CREATE INDEX alert_deliveries_by_time ON alert_deliveries(finished_at);
                PRAGMA user_version = 4;",
            )
            .map_err(&err)?;
        }
        if version < 5 {
            // v5: partial indexes for the guard's two queries per decision, so a decision
            // costs the same on a ledger with a year of history as on a new one (before,
            // the dangling-intent probe scanned the whole table).
            tx.execute_batch(
                "CREATE INDEX restarts_counted ON restarts(service, at) WHERE counts = 1;
                CREATE INDEX restarts_dangling ON restarts(service)
                    WHERE verdict = 'allowed' AND outcome IS NULL;
                PRAGMA user_version = 5;",
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        Ok(())
    }

    /// The restarts that count against `service`'s budget and were requested at or after
    /// `since` (restarts stamped in the future, after a clock step back, are included).
    pub fn counted_restarts(&self, service: &str, since: Timestamp) -> Result<Vec<RestartRecord>> {
        let err = sql_err(&self.path);
        let version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
            .map_err(&err)?;
        let since_ms = since.as_millis();
        {
            let mut cache = self.counted.borrow_mut();
            if cache.data_version != version {
                cache.services.clear();
                cache.data_version = version;
            }
            if let Some((read_since, rows)) = cache.services.get_mut(service)
                && *read_since <= since_ms
            {
                let first = rows.partition_point(|r| r.at.as_millis() < since_ms);
                if rows.len() > COUNTED_CACHE_PRUNE {
                    rows.drain(..first);
                    *read_since = since_ms;
                    return Ok(rows.clone());
                }
                return Ok(rows[first..].to_vec());
            }
        }
        let rows = self.read_counted(service, since)?;
        self.counted
            .borrow_mut()
            .services
            .insert(service.to_owned(), (since_ms, rows.clone()));
        Ok(rows)
    }

    fn read_counted(&self, service: &str, since: Timestamp) -> Result<Vec<RestartRecord>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at, source, forced FROM restarts
                 WHERE service = ?1 AND counts = 1 AND at >= ?2 ORDER BY at",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![service, since.as_millis()], |r| {
                let source: String = r.get(1)?;
                Ok(RestartRecord {
                    at: Timestamp::from_millis(r.get(0)?),
                    source: Source::parse(&source).unwrap_or(Source::Manual),
                    forced: r.get(2)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }

    /// Records how an allowed restart ended.
    pub fn record_outcome(
        &self,
        id: i64,
        ok: bool,
        detail: &str,
        finished_at: Timestamp,
    ) -> Result<()> {
        let err = sql_err(&self.path);
        self.conn
            .execute(
                "UPDATE restarts SET outcome = ?2, outcome_detail = ?3, finished_at = ?4 WHERE id = ?1",
                params![id, if ok { "ok" } else { "failed" }, detail, finished_at.as_millis()],
            )
            .map_err(&err)?;
        Ok(())
    }

    /// Records one verdict; only allowed ones count against the budget. For an allowed
    /// restart this is the *intent*, committed before the restart is performed; the
    /// returned row id is for [`Ledger::record_outcome`].
    ///
    /// `evidence` (e.g. what a hung process was doing) is stored with the row, in the same
    /// commit.
    pub fn record_verdict(
        &self,
        service: &str,
        source: Source,
        forced: bool,
        verdict: &Verdict,
        at: Timestamp,
        evidence: Option<&str>,
    ) -> Result<i64> {
        let err = sql_err(&self.path);
        self.conn
            .prepare_cached(
                "INSERT INTO restarts (service, at, source, forced, verdict, reason, message, counts, pid, evidence)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    service,
                    at.as_millis(),
                    source.as_str(),
                    forced,
                    verdict.kind(),
                    verdict.reason().unwrap_or(""),
                    verdict.to_string(),
                    verdict.is_allowed(),
                    std::process::id(),
                    evidence
                ])
            })
            .map_err(&err)?;
        if verdict.is_allowed()
            && let Some((_, rows)) = self.counted.borrow_mut().services.get_mut(service)
        {
            // After any equal `at`, as the index (service, at, rowid) orders them.
            let record = RestartRecord { at, source, forced };
            let i = rows.partition_point(|r| r.at <= at);
            rows.insert(i, record);
        }
        Ok(self.conn.last_insert_rowid())
    }

    /// Runs `f` in one `IMMEDIATE` transaction: one lock, one commit, and no other
    /// connection's write between its reads and its writes. With `relaxed` the commit runs
    /// with `synchronous = NORMAL`: it reaches the WAL (it survives a crash of Vigil)
    /// without waiting for the disk; the next `FULL` commit on this connection, or
    /// [`sync_wal`], makes it durable against power loss too. Nor does it run an
    /// automatic checkpoint (which would fsync): the next full commit does.
    pub fn transaction<R>(&self, relaxed: bool, f: impl FnOnce(&Self) -> Result<R>) -> Result<R> {
        let err = sql_err(&self.path);
        if relaxed {
            self.conn
                .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0")
                .map_err(&err)?;
        }
        let result = self
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(&err)
            .and_then(|()| f(self))
            .and_then(|r| self.conn.execute_batch("COMMIT").map_err(&err).map(|()| r));
        if result.is_err() {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            // What `f` wrote is gone; so is what it cached.
            self.counted.borrow_mut().services.clear();
        }
        if relaxed {
            self.conn.execute_batch(RESTORE_SYNC).map_err(&err)?;
        }
        result
    }

    /// Runs `f` with SQLite's busy handler off: a write another process holds fails at
    /// once with SQLITE_BUSY instead of waiting up to [`BUSY_TIMEOUT`].
    fn without_busy_wait<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        self.conn
            .busy_timeout(Duration::ZERO)
            .map_err(sql_err(&self.path))?;
        let result = f(self);
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(sql_err(&self.path))?;
        result
    }

    /// Copies the WAL into the database file as far as readers allow, syncing both (what
    /// SQLite's automatic checkpoint does after a full commit).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(sql_err(&self.path))
    }

    /// Allowed restarts without an outcome, oldest first (all services when `None`).
    pub fn dangling_intents(&self, service: Option<&str>) -> Result<Vec<Intent>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(match service {
                // Two statements, not `(?1 IS NULL OR service = ?1)`: that form cannot use
                // the partial index and scans the whole table.
                Some(_) => {
                    "SELECT id, service, at, source, pid FROM restarts
                     WHERE service = ?1 AND verdict = 'allowed' AND outcome IS NULL ORDER BY id"
                }
                None => {
                    "SELECT id, service, at, source, pid FROM restarts
                     WHERE verdict = 'allowed' AND outcome IS NULL AND ?1 IS NULL ORDER BY id"
                }
            })
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![service], |r| {
                Ok(Intent {
                    id: r.get(0)?,
                    service: r.get(1)?,
                    at: Timestamp::from_millis(r.get(2)?),
                    source: r.get(3)?,
                    pid: r.get(4)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }

    /// Marks a dangling intent as interrupted. Call only while holding the service's
    /// restart lock, which proves no live process is still performing it. The restart keeps
    /// counting against the budget: it may well have happened.
    pub fn resolve_interrupted(&self, id: i64, at: Timestamp) -> Result<()> {
        let err = sql_err(&self.path);
        self.conn
            .execute(
                "UPDATE restarts SET outcome = 'interrupted',
                    outcome_detail = 'vigil process ' || pid || ' died during the restart; outcome unknown',
                    finished_at = ?2
                 WHERE id = ?1 AND outcome IS NULL",
                params![id, at.as_millis()],
            )
            .map_err(&err)?;
        Ok(())
    }

    /// `vigil reset`: the service's past restarts stop counting (they stay in the history)
    /// and a `reset` row records who did it and when.
    pub fn reset(&mut self, service: &str, at: Timestamp) -> Result<usize> {
        self.counted.borrow_mut().services.remove(service);
        let path = self.path.clone();
        let err = sql_err(&path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let cleared = tx
            .execute(
                "UPDATE restarts SET counts = 0 WHERE service = ?1 AND counts = 1",
                params![service],
            )
            .map_err(&err)?;
        tx.execute(
            "INSERT INTO restarts (service, at, source, forced, verdict, reason, message, counts, pid)
             VALUES (?1, ?2, 'manual', 0, 'reset', '', ?3, 0, ?4)",
            params![
                service,
                at.as_millis(),
                format!("Restart history reset ({cleared} restart(s) no longer count)"),
                std::process::id()
            ],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(cleared)
    }

    /// The end of the last successful restart: the start of the current instance as far
    /// as the ledger knows (used for `grace` with the command driver).
    pub fn last_successful_restart(&self, service: &str) -> Result<Option<Timestamp>> {
        let err = sql_err(&self.path);
        self.conn
            .query_row(
                "SELECT MAX(finished_at) FROM restarts WHERE service = ?1 AND outcome = 'ok'",
                params![service],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(ts)
            .map_err(&err)
    }

    /// History rows, newest last, optionally for one service and since an instant.
    pub fn history(
        &self,
        service: Option<&str>,
        since: Option<Timestamp>,
    ) -> Result<Vec<HistoryRow>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, service, at, source, forced, verdict, reason, message, outcome,
                        outcome_detail, finished_at, pid, evidence
                 FROM restarts
                 WHERE (?1 IS NULL OR service = ?1) AND (?2 IS NULL OR at >= ?2)
                 ORDER BY at, id",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![service, since.map(Timestamp::as_millis)], |r| {
                Ok(HistoryRow {
                    id: r.get(0)?,
                    service: r.get(1)?,
                    at: Timestamp::from_millis(r.get(2)?),
                    source: r.get(3)?,
                    forced: r.get(4)?,
                    verdict: r.get(5)?,
                    reason: r.get(6)?,
                    message: r.get(7)?,
                    outcome: r.get(8)?,
                    outcome_detail: r.get(9)?,
                    finished_at: ts(r.get(10)?),
                    pid: r.get(11)?,
                    evidence: r.get(12)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }

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

    /// Records an alert delivery's final outcome (the `id` and `pid` of `row` are ignored).
    pub fn record_delivery(&self, row: &DeliveryRow) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO alert_deliveries (channel, kind, created_at, finished_at, status,
                    attempts, alerts, events, services, summary, error, pid)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    row.channel,
                    row.kind,
                    row.created_at.as_millis(),
                    row.finished_at.as_millis(),
                    row.status,
                    row.attempts,
                    row.alerts,
                    row.events.join(","),
                    row.services.join("\n"),
                    row.summary,
                    row.error,
                    std::process::id()
                ],
            )
            .map_err(sql_err(&self.path))?;
        Ok(())
    }

    /// Alert deliveries, oldest first, optionally about one service and since an instant.
    pub fn deliveries(
        &self,
        service: Option<&str>,
        since: Option<Timestamp>,
    ) -> Result<Vec<DeliveryRow>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, channel, kind, created_at, finished_at, status, attempts, alerts,
                        events, services, summary, error, pid
                 FROM alert_deliveries
                 WHERE (?1 IS NULL OR finished_at >= ?1)
                 ORDER BY finished_at, id",
            )
            .map_err(&err)?;
        let split = |s: String, sep: char| -> Vec<String> {
            s.split(sep)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let rows = stmt
            .query_map(params![since.map(Timestamp::as_millis)], |r| {
                Ok(DeliveryRow {
                    id: r.get(0)?,
                    channel: r.get(1)?,
                    kind: r.get(2)?,
                    created_at: Timestamp::from_millis(r.get(3)?),
                    finished_at: Timestamp::from_millis(r.get(4)?),
                    status: r.get(5)?,
                    attempts: r.get(6)?,
                    alerts: r.get(7)?,
                    events: split(r.get(8)?, ','),
                    services: split(r.get(9)?, '\n'),
                    summary: r.get(10)?,
                    error: r.get(11)?,
                    pid: r.get(12)?,
                })
            })
            .map_err(&err)?;
        let rows = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)?;
        Ok(match service {
            Some(s) => rows
                .into_iter()
                .filter(|r| r.services.iter().any(|x| x == s))
                .collect(),
            None => rows,
        })
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

    /// `vigil heartbeat SERVICE/CHECK`: remembers the latest heartbeat (and how many).
    pub fn record_heartbeat(&self, service: &str, check: &str, at: Timestamp) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO heartbeats (service, name, at, count) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (service, name) DO UPDATE SET
                    at = MAX(heartbeats.at, excluded.at), count = heartbeats.count + 1",
                params![service, check, at.as_millis()],
            )
            .map_err(sql_err(&self.path))?;
        Ok(())
    }

    /// The latest heartbeat of a check, if any ever arrived.
    pub fn last_heartbeat(&self, service: &str, check: &str) -> Result<Option<Timestamp>> {
        self.conn
            .query_row(
                "SELECT MAX(at) FROM heartbeats WHERE service = ?1 AND name = ?2",
                params![service, check],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(ts)
            .map_err(sql_err(&self.path))
    }

    /// Every saved check state (all services).
    pub fn check_states(&self) -> Result<Vec<CheckStateRow>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT service, name, status, consecutive_failures, consecutive_successes,
                        last_change, last_verdict, last_reason, last_run
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
                })
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::{GuardPolicy, RestartRequest, decide};

    fn allowed(ledger: &Ledger, service: &str, at: Timestamp) {
        let verdict = decide(
            &GuardPolicy {
                cooldown: Duration::ZERO,
                max_restarts: 1000,
                ..GuardPolicy::default()
            },
            &[],
            RestartRequest::new(Source::Exit),
            at,
        );
        assert!(verdict.is_allowed());
        ledger
            .record_verdict(service, Source::Exit, false, &verdict, at, None)
            .unwrap();
    }

    fn counted_at(ledger: &Ledger, service: &str, since: i64) -> Vec<i64> {
        ledger
            .counted_restarts(service, Timestamp::from_secs(since))
            .unwrap()
            .iter()
            .map(|r| r.at.as_millis() / 1000)
            .collect()
    }

    /// The counted-restarts cache must never hide what another process wrote: a daemon's
    /// guard and a CLI's `restart`/`reset` share the ledger.
    #[test]
    fn counted_restarts_stay_coherent_with_other_connections_and_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Ledger::open(dir.path()).unwrap();
        let mut cli = Ledger::open(dir.path()).unwrap();
        allowed(&daemon, "web", Timestamp::from_secs(100));
        assert_eq!(counted_at(&daemon, "web", 0), [100]);
        // Own write: appended in order, also between equal and later times.
        allowed(&daemon, "web", Timestamp::from_secs(300));
        allowed(&daemon, "web", Timestamp::from_secs(200));
        assert_eq!(counted_at(&daemon, "web", 0), [100, 200, 300]);
        assert_eq!(counted_at(&daemon, "web", 150), [200, 300]);
        // Another connection's restart and reset are seen at once.
        allowed(&cli, "web", Timestamp::from_secs(400));
        assert_eq!(counted_at(&daemon, "web", 150), [200, 300, 400]);
        cli.reset("web", Timestamp::from_secs(500)).unwrap();
        assert!(counted_at(&daemon, "web", 0).is_empty());
        // Own reset drops the cached rows too.
        allowed(&daemon, "web", Timestamp::from_secs(600));
        assert_eq!(counted_at(&daemon, "web", 0), [600]);
        daemon.reset("web", Timestamp::from_secs(700)).unwrap();
        assert!(counted_at(&daemon, "web", 0).is_empty());
        // A window reaching further back than what was read re-reads.
        allowed(&cli, "api", Timestamp::from_secs(10));
        allowed(&cli, "api", Timestamp::from_secs(20));
        assert_eq!(counted_at(&daemon, "api", 15), [20]);
        assert_eq!(counted_at(&daemon, "api", 5), [10, 20]);
        // Skipped and denied verdicts never count.
        let skipped = Verdict::Skipped(vigil_core::Skip::Lock {
            waited: Duration::from_secs(1),
        });
        daemon
            .record_verdict(
                "api",
                Source::Exit,
                false,
                &skipped,
                Timestamp::from_secs(30),
                None,
            )
            .unwrap();
        assert_eq!(counted_at(&daemon, "api", 5), [10, 20]);
    }

    /// A relaxed transaction is committed (another process sees it at once) and leaves
    /// the connection at `synchronous = FULL` for every later commit, also when it fails.
    #[test]
    fn relaxed_transactions_commit_and_restore_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Ledger::open(dir.path()).unwrap();
        let cli = Ledger::open(dir.path()).unwrap();
        let sync = |l: &Ledger| -> i64 {
            l.conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        let autocheckpoint = |l: &Ledger| -> i64 {
            l.conn
                .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(sync(&daemon), 2, "FULL");
        assert_eq!(autocheckpoint(&daemon), 1000);
        daemon
            .transaction(true, |l| {
                assert_eq!(sync(l), 1, "NORMAL inside");
                assert_eq!(autocheckpoint(l), 0, "no checkpoint (an fsync) inside");
                allowed(l, "web", Timestamp::from_secs(100));
                Ok(())
            })
            .unwrap();
        assert_eq!(sync(&daemon), 2);
        assert_eq!(counted_at(&cli, "web", 0), [100]);
        assert_eq!(counted_at(&daemon, "web", 0), [100]);
        let failed: Result<()> = daemon.transaction(true, |l| {
            allowed(l, "web", Timestamp::from_secs(200));
            Err(LedgerError::TooNew {
                path: l.path.clone(),
                found: 99,
            })
        });
        assert!(failed.is_err());
        assert_eq!(sync(&daemon), 2);
        assert_eq!(autocheckpoint(&daemon), 1000);
        assert!(daemon.conn.is_autocommit(), "rolled back");
        assert_eq!(counted_at(&cli, "web", 0), [100], "the failed one is gone");
        assert_eq!(counted_at(&daemon, "web", 0), [100], "also from the cache");
        // What the ledger thread does after a relaxed commit; nothing pending without
        // a WAL.
        assert!(wal_path(&daemon.path).exists());
        sync_wal(&daemon.path).unwrap();
        sync_wal(&dir.path().join("absent.db")).unwrap();
    }

    /// The guard's two reads per decision use their partial indexes, so a decision does
    /// not slow down as the history grows (the dangling-intent probe once scanned it all).
    #[test]
    fn guard_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = ledger
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows = stmt
                .query_map(params!["web", 0], |r| r.get::<_, String>(3))
                .unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        let counted = plan(
            "SELECT at, source, forced FROM restarts
             WHERE service = ?1 AND counts = 1 AND at >= ?2 ORDER BY at",
        );
        assert!(counted.contains("restarts_counted"), "{counted}");
        let dangling = plan(
            "SELECT id, service, at, source, pid FROM restarts
             WHERE service = ?1 AND verdict = 'allowed' AND outcome IS NULL AND ?2 = ?2 ORDER BY id",
        );
        assert!(dangling.contains("restarts_dangling"), "{dangling}");
    }

    #[test]
    fn intents_outcomes_and_reset_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path()).unwrap();
        let now = Timestamp::from_secs(10_000);
        let verdict = decide(
            &GuardPolicy::default(),
            &[],
            RestartRequest::new(Source::Health),
            now,
        );
        let id = ledger
            .record_verdict("web", Source::Health, false, &verdict, now, None)
            .unwrap();
        assert_eq!(ledger.dangling_intents(None).unwrap().len(), 1);
        ledger
            .record_outcome(
                id,
                true,
                "exit code 0",
                now.saturating_add(Duration::from_secs(1)),
            )
            .unwrap();
        assert!(ledger.dangling_intents(None).unwrap().is_empty());
        let counted = ledger
            .counted_restarts("web", Timestamp::UNIX_EPOCH)
            .unwrap();
        assert_eq!(counted.len(), 1);
        assert_eq!(
            ledger.last_successful_restart("web").unwrap(),
            Some(Timestamp::from_secs(10_001))
        );
        assert_eq!(ledger.reset("web", now).unwrap(), 1);
        assert!(
            ledger
                .counted_restarts("web", Timestamp::UNIX_EPOCH)
                .unwrap()
                .is_empty()
        );
        let history = ledger.history(Some("web"), None).unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].verdict, "reset");
        // Reopening keeps everything and does not migrate twice.
        drop(ledger);
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.history(None, None).unwrap().len(), 2);
    }

    /// `call_now_or_queued` runs in place only when nothing is queued: it never
    /// overtakes a job sent before it, and it sees that job's writes.
    #[tokio::test]
    async fn a_call_in_place_never_overtakes_queued_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let handle = LedgerHandle::spawn(dir.path()).unwrap();
        let here = std::thread::current().id();
        // Idle: in place, on this thread.
        let this_thread = |_: &mut Ledger| Ok(std::thread::current().id());
        let ran_on = handle.call_now_or_queued(this_thread).await.unwrap();
        assert_eq!(ran_on, here);
        // A slow job queued first: the next call must wait for it and see its write.
        let queued = || {
            handle
                .cell
                .queued
                .load(std::sync::atomic::Ordering::Acquire)
        };
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let h = handle.clone();
        let slow = tokio::spawn(async move {
            h.call(move |l| {
                gate.recv().unwrap();
                allowed(l, "web", Timestamp::from_secs(100));
            })
            .await;
        });
        while queued() < 1 {
            tokio::task::yield_now().await;
        }
        let h = handle.clone();
        let after = tokio::spawn(async move {
            h.call_now_or_queued(|l| {
                let seen = l.counted_restarts("web", Timestamp::from_secs(0))?;
                Ok((std::thread::current().id(), seen.len()))
            })
            .await
        });
        while queued() < 2 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        slow.await.unwrap();
        let (ran_on, seen) = after.await.unwrap().unwrap();
        assert_ne!(
            ran_on, here,
            "queued behind the slow job, on the ledger thread"
        );
        assert_eq!(seen, 1, "after the slow job's write");
        // Idle again (the thread counts a job done just after answering): in place again.
        while queued() > 0 {
            tokio::task::yield_now().await;
        }
        let ran_on = handle.call_now_or_queued(this_thread).await.unwrap();
        assert_eq!(ran_on, here);
    }

    /// In place, a write another process holds is not waited for on the caller's (the
    /// runtime's) thread: the call goes to the ledger thread, which waits for it.
    #[tokio::test]
    async fn a_busy_ledger_is_waited_for_on_the_ledger_thread_not_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let handle = LedgerHandle::spawn(dir.path()).unwrap();
        let here = std::thread::current().id();
        let other = Ledger::open(dir.path()).unwrap();
        other.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let h = handle.clone();
        let call = tokio::spawn(async move {
            h.call_now_or_queued(|l| {
                l.transaction(true, |l| {
                    allowed(l, "web", Timestamp::from_secs(100));
                    Ok(std::thread::current().id())
                })
            })
            .await
        });
        // The call tried in place, got SQLITE_BUSY at once and queued itself (waiting in
        // place would block this thread, which holds the other write, until the timeout).
        while handle
            .cell
            .queued
            .load(std::sync::atomic::Ordering::Acquire)
            < 1
        {
            tokio::task::yield_now().await;
        }
        allowed(&other, "web", Timestamp::from_secs(50));
        other.conn.execute_batch("COMMIT").unwrap();
        let ran_on = call.await.unwrap().unwrap();
        assert_ne!(ran_on, here);
        assert_eq!(counted_at(&other, "web", 0), [50, 100]);
        // And the connection waits for busy writes again afterwards.
        let timeout: i64 = handle
            .call(|l| l.conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(timeout, BUSY_TIMEOUT.as_millis() as i64);
    }

    /// Relaxed commits skip SQLite's automatic checkpoint; the ledger thread's WAL flushes
    /// checkpoint now and then, so a long crash loop does not grow the WAL without bound.
    #[tokio::test]
    async fn relaxed_commits_with_flushes_keep_the_wal_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let handle = LedgerHandle::spawn(dir.path()).unwrap();
        for i in 0..1500 {
            handle
                .call_now_or_queued(move |l| {
                    l.transaction(true, |l| {
                        allowed(l, "crash", Timestamp::from_secs(i));
                        Ok(())
                    })
                })
                .await
                .unwrap();
            handle.sync_soon();
            // At a crash loop's pace (a restart takes a millisecond) the thread keeps up:
            // a queued job runs after every flush sent before it.
            handle.call(|_| ()).await;
        }
        let wal = std::fs::metadata(wal_path(handle.path())).unwrap().len();
        // Without checkpoints: 1500 commits of about four 4 KiB pages each, 26 MiB.
        assert!(wal < 6 << 20, "WAL is {wal} bytes");
        let rows = handle
            .call(|l| l.counted_restarts("crash", Timestamp::from_secs(0)))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1500);
    }

    #[tokio::test]
    async fn queued_check_states_are_flushed_before_jobs_and_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let handle = LedgerHandle::spawn(dir.path()).unwrap();
        let row = |n: u32| CheckStateRow {
            service: "web".into(),
            check: "health".into(),
            health: CheckHealth {
                status: HealthStatus::Failing,
                consecutive_failures: n,
                consecutive_successes: 0,
                last_change: None,
            },
            last_verdict: Some(RunVerdict::Fail),
            last_reason: format!("run {n}"),
            last_run: Some(Timestamp::from_secs(i64::from(n))),
        };
        for n in 1..=50 {
            handle.save_check_state(row(n));
        }
        // A job sees every earlier write: the batch is flushed first, newest row wins.
        let states = handle.call(|l| l.check_states()).await.unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].health.consecutive_failures, 50);
        handle.save_check_state(row(51));
        drop(handle);
        // Dropping the last handle flushes; wait for the thread to let go, then reopen.
        let mut seen = 0;
        for _ in 0..200 {
            seen = Ledger::open(dir.path()).unwrap().check_states().unwrap()[0]
                .health
                .consecutive_failures;
            if seen == 51 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen, 51);
    }

    #[test]
    fn a_version_1_ledger_is_migrated_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        // A v1 ledger as the first release wrote it.
        let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        conn.execute_batch(
            "CREATE TABLE restarts (id INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL,
                at INTEGER NOT NULL, source TEXT NOT NULL, forced INTEGER NOT NULL DEFAULT 0,
                verdict TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', message TEXT NOT NULL,
                counts INTEGER NOT NULL DEFAULT 0, outcome TEXT, outcome_detail TEXT,
                finished_at INTEGER, pid INTEGER NOT NULL);
             CREATE INDEX restarts_by_service ON restarts(service, at);
             CREATE TABLE check_state (service TEXT NOT NULL, name TEXT NOT NULL,
                status TEXT NOT NULL, consecutive_failures INTEGER NOT NULL,
                consecutive_successes INTEGER NOT NULL, last_change INTEGER, last_verdict TEXT,
                last_reason TEXT NOT NULL DEFAULT '', last_run INTEGER,
                PRIMARY KEY (service, name));
             INSERT INTO restarts (service, at, source, verdict, message, counts, outcome, pid)
                VALUES ('web', 1000, 'health', 'allowed', 'Restart ALLOWED (1/5 per hour)', 1, 'ok', 7);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.history(None, None).unwrap().len(), 1);
        ledger
            .record_heartbeat("web", "beat", Timestamp::from_secs(5))
            .unwrap();
        ledger
            .record_heartbeat("web", "beat", Timestamp::from_secs(3))
            .unwrap();
        assert_eq!(
            ledger.last_heartbeat("web", "beat").unwrap(),
            Some(Timestamp::from_secs(5))
        );
        assert_eq!(ledger.last_heartbeat("web", "other").unwrap(), None);
    }

    fn delivery(channel: &str, services: &[&str], at: i64, status: &str) -> DeliveryRow {
        DeliveryRow {
            id: 0,
            channel: channel.to_owned(),
            kind: "webhook".to_owned(),
            created_at: Timestamp::from_secs(at - 1),
            finished_at: Timestamp::from_secs(at),
            status: status.to_owned(),
            attempts: 4,
            alerts: services.len() as u32,
            events: vec!["failing".to_owned(), "given-up".to_owned()],
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            summary: "ACTION REQUIRED: 2 alerts".to_owned(),
            error: (status != "delivered").then(|| "the receiver answered 500".to_owned()),
            pid: 0,
        }
    }

    #[test]
    fn a_version_2_ledger_gains_alert_deliveries_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        // A v2 ledger (v1 tables plus heartbeats), as the previous release wrote it.
        drop(Ledger::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        conn.execute_batch(
            "DROP TABLE alert_deliveries;
             DROP TABLE exec_state;
             DROP INDEX restarts_counted;
             DROP INDEX restarts_dangling;
             ALTER TABLE restarts DROP COLUMN evidence;
             INSERT INTO restarts (service, at, source, verdict, message, counts, outcome, pid)
                VALUES ('web', 1000, 'health', 'allowed', 'Restart ALLOWED (1/5 per hour)', 1, 'ok', 7);
             INSERT INTO heartbeats (service, name, at) VALUES ('web', 'beat', 5000);
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(conn);
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.history(None, None).unwrap().len(), 1);
        assert_eq!(
            ledger.last_heartbeat("web", "beat").unwrap(),
            Some(Timestamp::from_secs(5))
        );
        let version: i64 = ledger
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        ledger
            .record_delivery(&delivery("ops", &["web", "db"], 100, "failed"))
            .unwrap();
        ledger
            .record_delivery(&delivery("ops", &["api"], 200, "delivered"))
            .unwrap();
        let all = ledger.deliveries(None, None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].services, ["web", "db"]);
        assert_eq!(all[0].events, ["failing", "given-up"]);
        assert_eq!(all[0].error.as_deref(), Some("the receiver answered 500"));
        assert_eq!(all[0].pid, std::process::id());
        assert_eq!(ledger.deliveries(Some("db"), None).unwrap().len(), 1);
        assert_eq!(
            ledger
                .deliveries(None, Some(Timestamp::from_secs(150)))
                .unwrap()[0]
                .channel,
            "ops"
        );
        assert!(ledger.deliveries(Some("nope"), None).unwrap().is_empty());
    }

    #[test]
    fn concurrent_first_opens_all_succeed() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_owned();
            let threads: Vec<_> = (0..6)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || Ledger::open(&path).map(|_| ()))
                })
                .collect();
            for t in threads {
                t.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Ledger::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        let err = Ledger::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}

/// Every this many WAL flushes after relaxed commits, a checkpoint instead (a restart
/// writes a few pages: about SQLite's default of 1000 WAL pages per checkpoint).
const CHECKPOINT_EVERY: u64 = 200;

/// The write-ahead log next to the database file.
fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// Makes every commit so far durable against power loss. In WAL mode a commit is frames
/// appended to the WAL, so one `fdatasync` of that file covers every commit a relaxed
/// transaction left unsynced (what a checkpoint already moved to the database file was
/// synced by that checkpoint). No WAL file: nothing is pending.
pub fn sync_wal(db: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new().write(true).open(wal_path(db)) {
        Ok(f) => f.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Back to every commit fsynced, and checkpoints at SQLite's default WAL size.
const RESTORE_SYNC: &str = "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 1000";

/// A cloneable handle to a ledger owned by one dedicated thread.
///
/// SQLite calls block; the daemon's async tasks send closures to the ledger thread
/// instead of holding the connection. Check states are the exception: they are saved
/// after every check run, so they are queued and written in one transaction per
/// [`CHECK_STATE_FLUSH`] (one fsync instead of one per run), and before any other job runs
/// so that the process always reads its own writes. Other processes may see check states
/// up to that long after the run. The thread ends when the last handle is dropped, after
/// finishing every queued call and flushing, so a graceful shutdown never loses a write.
///
/// The connection sits behind a mutex the thread takes for each message, so that
/// [`LedgerHandle::call_now_or_queued`] can run a short, fsync-free job in place when the
/// thread is idle with nothing queued: two cross-CPU wake-ups fewer on an exec service's
/// crash-to-restart path.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: std::sync::mpsc::Sender<Msg>,
    path: PathBuf,
    cell: std::sync::Arc<LedgerCell>,
}

struct LedgerCell {
    ledger: std::sync::Mutex<Ledger>,
    /// Jobs sent and not finished yet: a job run in place must not overtake them.
    queued: std::sync::atomic::AtomicUsize,
}

impl LedgerCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A job that panicked left no transaction open (rusqlite rolls back on drop);
        // the connection stays usable.
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long check-state writes may wait to be batched.
pub const CHECK_STATE_FLUSH: Duration = Duration::from_secs(1);

type Job = Box<dyn FnOnce(&mut Ledger) + Send>;

enum Msg {
    Job(Job),
    CheckState(CheckStateRow),
    /// Batched like check states, but not flushed before every job: nothing in the
    /// daemon reads them back, and an exec service's crash-to-restart path must not wait
    /// for their fsync.
    ExecState(ExecStateRow),
    /// Write the pending exec states now, then answer.
    FlushExec(tokio::sync::oneshot::Sender<()>),
    /// fdatasync the WAL: outside the connection's lock and not counted as a queued
    /// job, so a decision in place never waits for it.
    SyncWal,
}

/// Check states waiting for the next batched write, newest per check.
#[derive(Default)]
struct PendingStates {
    rows: std::collections::BTreeMap<(String, String), CheckStateRow>,
    exec: std::collections::BTreeMap<String, ExecStateRow>,
    since: Option<std::time::Instant>,
}

impl PendingStates {
    fn flush_exec(&mut self, ledger: &mut Ledger) {
        if self.exec.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.exec);
        if self.rows.is_empty() {
            self.since = None;
        }
        if let Err(error) = ledger.save_exec_states(rows.values()) {
            tracing::warn!(%error, rows = rows.len(), "cannot save exec states");
        }
    }

    fn flush(&mut self, ledger: &mut Ledger) {
        if !self.rows.is_empty() && !self.exec.is_empty() {
            // Both at once (the timer or shutdown): exec states first, then checks.
            self.flush_exec(ledger);
        }
        if self.rows.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.rows);
        self.since = (!self.exec.is_empty()).then_some(self.since).flatten();
        if let Err(error) = ledger.save_check_states(rows.values()) {
            tracing::warn!(%error, rows = rows.len(), "cannot save check states");
        }
    }

    fn wait(&self) -> Option<Duration> {
        let since = self.since?;
        Some(
            CHECK_STATE_FLUSH
                .saturating_sub(crate::clock::monotonic().saturating_duration_since(since)),
        )
    }
}

impl LedgerHandle {
    /// Opens the ledger and starts its thread.
    pub fn spawn(state_dir: &Path) -> Result<LedgerHandle> {
        let ledger = Ledger::open(state_dir)?;
        let path = ledger.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let cell = std::sync::Arc::new(LedgerCell {
            ledger: std::sync::Mutex::new(ledger),
            queued: std::sync::atomic::AtomicUsize::new(0),
        });
        let shared = cell.clone();
        let wal_of = path.clone();
        std::thread::Builder::new()
            .name("vigil-ledger".to_owned())
            .spawn(move || {
                let cell = shared;
                let mut syncs: u64 = 0;
                use std::sync::mpsc::RecvTimeoutError;
                let mut pending = PendingStates::default();
                loop {
                    let msg = match pending.wait() {
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some(wait) => rx.recv_timeout(wait),
                    };
                    match msg {
                        Ok(Msg::Job(job)) => {
                            let mut ledger = cell.lock();
                            pending.flush(&mut ledger);
                            job(&mut ledger);
                            drop(ledger);
                            cell.queued
                                .fetch_sub(1, std::sync::atomic::Ordering::Release);
                        }
                        Ok(Msg::CheckState(row)) => {
                            if pending.since.is_none() {
                                pending.since = Some(crate::clock::monotonic());
                            }
                            pending
                                .rows
                                .insert((row.service.clone(), row.check.clone()), row);
                        }
                        Ok(Msg::ExecState(row)) => {
                            if pending.since.is_none() {
                                pending.since = Some(crate::clock::monotonic());
                            }
                            pending.exec.insert(row.service.clone(), row);
                        }
                        Ok(Msg::SyncWal) => {
                            // Relaxed commits skip SQLite's automatic checkpoint; without
                            // one now and then a long crash loop would grow the WAL forever.
                            syncs += 1;
                            let result = if syncs.is_multiple_of(CHECKPOINT_EVERY) {
                                cell.lock().checkpoint()
                            } else {
                                sync_wal(&wal_of).map_err(|source| LedgerError::StateDir {
                                    path: wal_path(&wal_of),
                                    source,
                                })
                            };
                            if let Err(error) = result {
                                tracing::warn!(%error, "cannot flush the ledger's write-ahead log");
                            }
                        }
                        Ok(Msg::FlushExec(reply)) => {
                            pending.flush_exec(&mut cell.lock());
                            let _ = reply.send(());
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            let mut ledger = cell.lock();
                            pending.flush_exec(&mut ledger);
                            pending.flush(&mut ledger);
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            let mut ledger = cell.lock();
                            pending.flush_exec(&mut ledger);
                            pending.flush(&mut ledger);
                            return;
                        }
                    }
                }
            })
            .map_err(|source| LedgerError::StateDir {
                path: path.clone(),
                source,
            })?;
        Ok(LedgerHandle { tx, path, cell })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a check state for the next batched write. Never blocks.
    pub fn save_check_state(&self, row: CheckStateRow) {
        // The thread outlives every handle; a send can only fail after a job panicked.
        let _ = self.tx.send(Msg::CheckState(row));
    }

    /// Queues an exec service's runtime state for the next batched write (within
    /// [`CHECK_STATE_FLUSH`]). Never blocks.
    pub fn save_exec_state(&self, row: ExecStateRow) {
        let _ = self.tx.send(Msg::ExecState(row));
    }

    /// Writes the queued exec states now (e.g. the final ones before vigil exits).
    pub async fn flush_exec_states(&self) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::FlushExec(reply)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Queues an alert delivery record. Never blocks: alert delivery must not wait on the
    /// ledger either.
    pub fn record_delivery(&self, row: DeliveryRow) {
        let job: Job = Box::new(move |ledger| {
            if let Err(error) = ledger.record_delivery(&row) {
                tracing::warn!(%error, channel = %row.channel, "cannot record an alert delivery");
            }
        });
        self.send_job(job);
    }

    /// Queues a job, counted until the thread has run it.
    fn send_job(&self, job: Job) -> bool {
        self.cell
            .queued
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if self.tx.send(Msg::Job(job)).is_ok() {
            true
        } else {
            self.cell
                .queued
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            false
        }
    }

    /// Makes every commit so far durable soon: the ledger thread fsyncs the WAL next,
    /// while this caller goes on (see [`sync_wal`]).
    pub fn sync_soon(&self) {
        let _ = self.tx.send(Msg::SyncWal);
    }

    /// Runs `f` right here when the ledger thread is idle and no job is queued (the
    /// common case), else queues it like [`LedgerHandle::call`]. Either way `f` runs after
    /// every job this process queued before. Only for jobs that never fsync (in place,
    /// `f` blocks the caller's thread, an async runtime's, for as long as it runs) and
    /// that do not read check or exec states (their queued writes are not flushed first).
    ///
    /// In place SQLite does not wait for another process's write (no busy timeout): `f`
    /// failing with SQLITE_BUSY is run again on the ledger thread, which waits. So `f` must
    /// be safe to repeat after a busy failure (a transaction that never began is).
    pub async fn call_now_or_queued<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&mut Ledger) -> Result<R> + Send + 'static,
    {
        if self.cell.queued.load(std::sync::atomic::Ordering::Acquire) == 0
            && let Ok(mut ledger) = self.cell.ledger.try_lock()
        {
            let result = ledger.without_busy_wait(&f);
            drop(ledger);
            match result {
                Err(LedgerError::Sqlite { source, .. }) if is_busy(&source) => {}
                other => return other,
            }
        }
        self.call(f).await
    }

    /// Runs `f` on the ledger thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Ledger) -> R + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |ledger| {
            let _ = reply.send(f(ledger));
        });
        // The ledger thread only stops when every handle is gone, and we hold one.
        if !self.send_job(job) {
            unreachable_ledger();
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => unreachable_ledger(),
        }
    }
}

fn save_exec_row(conn: &Connection, row: &ExecStateRow) -> rusqlite::Result<()> {
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

fn save_row(conn: &Connection, row: &CheckStateRow) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO check_state (service, name, status, consecutive_failures,
            consecutive_successes, last_change, last_verdict, last_reason, last_run)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (service, name) DO UPDATE SET
            status = excluded.status,
            consecutive_failures = excluded.consecutive_failures,
            consecutive_successes = excluded.consecutive_successes,
            last_change = excluded.last_change,
            last_verdict = excluded.last_verdict,
            last_reason = excluded.last_reason,
            last_run = excluded.last_run",
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
    ])?;
    Ok(())
}

#[cold]
fn unreachable_ledger() -> ! {
    // Only reachable if a ledger job panicked, which is a bug; fail loudly.
    panic!("the ledger thread stopped unexpectedly")
}
