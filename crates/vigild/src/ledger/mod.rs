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
//! caller's thread; `one_shot` the connection of a one-shot command.

mod deliveries;
mod handle;
mod heartbeats;
mod in_place;
mod one_shot;
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
    Recorded, describe_caller,
};
pub use self::states::{CheckStateRow, ExecStateRow};

use crate::platform::histogram::{COMMIT_BOUNDS, Histogram};

use self::restarts::CountedCache;

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = 7;

/// How long the commits of [`Ledger::transaction`] took, in this process: every guard
/// decision and outcome, and the batched check and exec states. Observed with two atomic
/// adds (no lock: it is on the crash-to-restart path); the daemon exposes it as
/// `vigil_ledger_commit_seconds`.
pub static COMMIT_TIMES: Histogram = Histogram::new(COMMIT_BOUNDS);

/// Why the ledger could not be used. Its message carries the cause, once: `source()` is
/// `None`, so printing the chain (`{:#}`, [`vigil_checks::probe::error_chain`]) does not
/// repeat it ("database or disk is full: database or disk is full: Error code 13: ...").
#[derive(Debug)]
pub enum LedgerError {
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    TooNew {
        path: PathBuf,
        found: i64,
    },
}

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerError::StateDir { path, source } => {
                write!(
                    f,
                    "cannot create state directory {}: {source}",
                    path.display()
                )
            }
            LedgerError::Sqlite { path, source } => {
                write!(f, "ledger {}: {}", path.display(), sqlite_cause(source))
            }
            LedgerError::TooNew { path, found } => write!(
                f,
                "ledger {} has schema version {found}, newer than this vigil understands ({SCHEMA_VERSION}); upgrade vigil",
                path.display()
            ),
        }
    }
}

impl std::error::Error for LedgerError {}

/// SQLite's own words for a failure, without rusqlite's "Error code 13: " prefix when
/// SQLite gave no message.
fn sqlite_cause(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(code, None) => {
            rusqlite::ffi::code_to_str(code.extended_code).to_owned()
        }
        other => other.to_string(),
    }
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
    ///
    /// Each `COMMIT`'s duration goes to [`COMMIT_TIMES`] (`vigil_ledger_commit_seconds`).
    pub fn transaction<R>(&self, relaxed: bool, f: impl FnOnce(&Self) -> Result<R>) -> Result<R> {
        let err = sql_err(&self.path);
        if relaxed {
            self.conn
                .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0")
                .map_err(&err)?;
        }
        let commit = |r| {
            let started = crate::platform::clock::monotonic();
            let done = self.conn.execute_batch("COMMIT");
            COMMIT_TIMES.observe(started.elapsed());
            done.map_err(&err).map(|()| r)
        };
        let result = self
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(&err)
            .and_then(|()| f(self))
            .and_then(commit);
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

#[cfg(test)]
mod error_text {
    use super::*;

    /// A real SQLITE_FULL (the database may not grow past its page limit): its cause is
    /// printed once, by `{}` and by a chain printer (`{:#}`, what `vigil` prints on exit)
    /// alike, also when wrapped.
    #[test]
    fn a_full_disk_is_said_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(dir.path()).expect("open");
        ledger
            .conn
            .execute_batch("PRAGMA max_page_count = 64")
            .expect("pragma");
        let full = (0..100_000)
            .find_map(|i| {
                ledger
                    .record_heartbeat("svc", &format!("check-{i:0>200}"), Timestamp::from_secs(i))
                    .err()
            })
            .expect("the database filled up");
        assert!(
            matches!(&full, LedgerError::Sqlite { source, .. }
                if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)),
            "{full:?}"
        );
        let expected = format!(
            "ledger {}: database or disk is full",
            dir.path().join(FILE_NAME).display()
        );
        assert_eq!(full.to_string(), expected);
        // Wrapped transparently, as the guard's error wraps it.
        #[derive(Debug, thiserror::Error)]
        #[error(transparent)]
        struct Wrapped(#[from] LedgerError);
        assert_eq!(
            format!("{:#}", anyhow::Error::new(Wrapped::from(full))),
            expected
        );
    }

    #[test]
    fn a_code_without_message_has_no_error_code_prefix() {
        let e = LedgerError::Sqlite {
            path: PathBuf::from("/var/lib/vigil/ledger.db"),
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ),
        };
        assert_eq!(
            format!("{:#}", anyhow::Error::new(e)),
            "ledger /var/lib/vigil/ledger.db: database or disk is full"
        );
    }
}
