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

//!
//! Layout: this file opens the connection and runs transactions; `schema` creates and
//! migrates the tables; `restarts` is the guard's side (counted restarts, verdicts,
//! intents, outcomes, resets, history); `states` the check and exec states; `deliveries`
//! the alert delivery log; `heartbeats` pushed heartbeats; `handle` the thread that owns
//! the connection in the daemon; `in_place` the tuned path that runs a decision on the
//! caller's thread.

mod deliveries;
mod handle;
mod heartbeats;
mod in_place;
mod restarts;
mod schema;
mod states;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use vigil_core::Timestamp;

pub use self::deliveries::DeliveryRow;
pub use self::handle::{CHECK_STATE_FLUSH, LedgerHandle};
pub use self::in_place::sync_wal;
pub use self::restarts::{
    Caller, DanglingOutcome, HistoryRow, HoldRow, Intent, NewVerdict, OperatorAction, OperatorRow,
    Recorded,
};
pub use self::states::{CheckStateRow, ExecStateRow};

use self::restarts::CountedCache;

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = 6;

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
        let started = crate::platform::clock::monotonic();
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
            self.conn
                .execute_batch(in_place::RESTORE_SYNC)
                .map_err(&err)?;
        }
        result
    }

    /// Copies the WAL into the database file as far as readers allow, syncing both (what
    /// SQLite's automatic checkpoint does after a full commit).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(sql_err(&self.path))
    }
}
