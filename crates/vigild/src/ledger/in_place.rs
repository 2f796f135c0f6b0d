//! The ledger's tuned path, kept apart because it bends the one-owner rule for speed: an
//! exec service's crash-to-restart decision (lock, decide, intent, spawn, outcome).
//!
//! Measured on this project's 2-core VM (docs/BENCHMARKS.md, "How the crash figure came
//! down"): the intent's `FULL` commit cost one fsync (435 µs) before the spawn, the
//! outcome's another before the next exit was looked at, and each job to the ledger
//! thread two cross-CPU wake-ups. Two techniques remove them, each with its safeguard:
//!
//! - relaxed commits (`Ledger::transaction(true, ..)`) reach the WAL without waiting for
//!   the disk, and the ledger thread fdatasyncs the WAL right after ([`sync_wal`]), with a
//!   checkpoint every [`CHECKPOINT_EVERY`] flushes since relaxed commits skip SQLite's
//!   automatic one (without it, 1,500 commits grew the WAL to 26 MiB);
//! - [`LedgerHandle::call_now_or_queued`] runs a short, fsync-free job on the caller's
//!   thread when the ledger thread is idle with nothing queued (so it never overtakes an
//!   earlier job), with SQLite's busy wait off (a write held by another process sends the
//!   job to the ledger thread to wait there, never on the runtime thread).
//!
//! With the other changes of that table, the crash-to-restart median went from 1.08 ms
//! to 0.62 ms.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{BUSY_TIMEOUT, Ledger, LedgerError, LedgerHandle, Result, is_busy, sql_err};

/// Every this many WAL flushes after relaxed commits, a checkpoint instead (a restart
/// writes a few pages: about SQLite's default of 1000 WAL pages per checkpoint).
pub(super) const CHECKPOINT_EVERY: u64 = 200;

/// The write-ahead log next to the database file.
pub(super) fn wal_path(db: &Path) -> PathBuf {
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
pub(super) const RESTORE_SYNC: &str = "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 1000";

impl Ledger {
    /// Runs `f` with SQLite's busy handler off: a write another process holds fails at
    /// once with SQLITE_BUSY instead of waiting up to [`BUSY_TIMEOUT`].
    pub(super) fn without_busy_wait<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R>,
    ) -> Result<R> {
        self.conn
            .busy_timeout(Duration::ZERO)
            .map_err(sql_err(&self.path))?;
        let result = f(self);
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(sql_err(&self.path))?;
        result
    }
}

impl LedgerHandle {
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
}
