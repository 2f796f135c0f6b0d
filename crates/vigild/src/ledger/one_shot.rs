//! The ledger connection of a one-shot command (`vigil check` from cron, `status`,
//! `heartbeat`, `restart` without a daemon): a process that opens the ledger, writes a row
//! or two and exits, every minute.
//!
//! SQLite's defaults suit the daemon's long-lived connection, not this. Measured on a cron
//! `vigil check` (callgrind, strace, perf; issue 17):
//!
//! - The first connection to open the ledger rebuilds the write-ahead log's index by
//!   reading and checksumming every frame in the log (no other process has it mapped),
//!   and only a connection that knows the log was checkpointed starts it over. So each
//!   run appended a frame, and the next one read them all, up to SQLite's 1000-page
//!   automatic checkpoint: at 230 frames the rebuild was a quarter of the command's
//!   instructions, and up to 4 MiB were read per run.
//! - A process that closes the last connection checkpoints the log and deletes it
//!   (which one-shot commands did now and then, racing their own exit). Done every run,
//!   that is three fsyncs more (the new log's header, the log, the database file) and both
//!   files created again: measured, more CPU than the rebuild it saves.
//!
//! So a one-shot connection never checkpoints on close, and when it opens a log longer
//! than [`CHECKPOINT_AT`] it checkpoints and truncates it: a rebuild reads at most that
//! much, and the checkpoint's fsyncs come once in about as many runs as it has pages.
//! What is written and how durably (every commit still `synchronous = FULL`) is unchanged.

use std::path::Path;

use rusqlite::config::DbConfig;

use super::in_place::wal_path;
use super::{Ledger, Result, sql_err};

/// The write-ahead log's length at which a one-shot command checkpoints it when it opens
/// the ledger: 16 pages of 4 KiB. A `vigil check` run adds about one page; a rebuild costs
/// about 3 µs of CPU per page and a checkpoint a few hundred µs (its fsyncs), so the sum
/// per run is smallest around here.
pub const CHECKPOINT_AT: u64 = 16 * (4096 + 24);

impl Ledger {
    /// Opens (creating if needed) the ledger in `state_dir` for a one-shot command.
    pub fn open_one_shot(state_dir: &Path) -> Result<Ledger> {
        let mut ledger = Ledger::open(state_dir)?;
        ledger
            .conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(sql_err(&ledger.path))?;
        let wal_len = std::fs::metadata(wal_path(&ledger.path)).map_or(0, |m| m.len());
        if wal_len >= CHECKPOINT_AT {
            // Without waiting: a connection in a transaction (the daemon's) leaves the log
            // as it is, for a later run or the daemon's own checkpoints.
            let truncated = ledger.without_busy_wait(|l| {
                l.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .map_err(sql_err(&l.path))
            });
            if let Err(error) = truncated {
                tracing::debug!(%error, "cannot checkpoint the ledger's write-ahead log");
            }
        }
        Ok(ledger)
    }
}

#[cfg(test)]
mod tests {
    use vigil_core::Timestamp;
    use vigil_core::health::{CheckHealth, HealthStatus, RunVerdict};

    use super::super::{CheckStateRow, LedgerHandle};
    use super::*;

    fn wal_len(dir: &Path) -> u64 {
        std::fs::metadata(wal_path(&dir.join(super::super::FILE_NAME))).map_or(0, |m| m.len())
    }

    /// Writes `n` heartbeat rows of about 200 bytes for `service` in one commit: `n / 16`
    /// pages or so.
    fn write_rows(ledger: &Ledger, service: &str, n: u32) {
        ledger
            .conn
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO heartbeats (service, name, at)
                 SELECT ?2, printf('%0200d', i), i FROM n",
                rusqlite::params![n, service],
            )
            .expect("insert");
    }

    fn rows(ledger: &Ledger) -> i64 {
        ledger
            .conn
            .query_row("SELECT count(*) FROM heartbeats", [], |r| r.get(0))
            .expect("count")
    }

    /// Closing a one-shot connection leaves the log to the next run (no checkpoint, no
    /// delete); the next one-shot open that finds it longer than `CHECKPOINT_AT`
    /// checkpoints and truncates it, and everything written is in the database.
    #[test]
    fn the_log_is_kept_on_close_and_truncated_when_long() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open_one_shot(dir.path()).expect("open");
        write_rows(&ledger, "a", 20);
        drop(ledger);
        let short = wal_len(dir.path());
        assert!(short > 0, "the log was checkpointed on close");
        assert!(short < CHECKPOINT_AT, "{short}");

        // Short: kept as it is.
        let ledger = Ledger::open_one_shot(dir.path()).expect("open");
        assert_eq!(wal_len(dir.path()), short);
        write_rows(&ledger, "b", 1000);
        drop(ledger);
        assert!(
            wal_len(dir.path()) >= CHECKPOINT_AT,
            "{}",
            wal_len(dir.path())
        );

        // Long: checkpointed and truncated at the next open.
        let ledger = Ledger::open_one_shot(dir.path()).expect("open");
        assert_eq!(wal_len(dir.path()), 0);
        assert_eq!(rows(&ledger), 1020);
        drop(ledger);
        // A daemon's connection sees the same rows.
        assert_eq!(rows(&Ledger::open(dir.path()).expect("open")), 1020);
    }

    /// A reader in a transaction (the daemon answering `vigil status`) keeps the log: the
    /// one-shot open neither truncates under it nor fails.
    #[test]
    fn a_reader_keeps_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open_one_shot(dir.path()).expect("open");
        write_rows(&ledger, "a", 1000);
        drop(ledger);
        let long = wal_len(dir.path());
        let daemon = Ledger::open(dir.path()).expect("open");
        daemon.conn.execute_batch("BEGIN").expect("begin");
        assert_eq!(rows(&daemon), 1000);
        let ledger = Ledger::open_one_shot(dir.path()).expect("open");
        assert!(wal_len(dir.path()) >= long.min(CHECKPOINT_AT));
        assert_eq!(rows(&ledger), 1000);
        daemon.conn.execute_batch("COMMIT").expect("commit");
    }

    /// A one-shot command's handle has no ledger thread: a job runs on the caller's
    /// thread, and a saved check state is in the database at once, for any other
    /// connection.
    #[tokio::test]
    async fn a_one_shot_handle_runs_everything_where_it_is_called() {
        let dir = tempfile::tempdir().expect("tempdir");
        let handle = LedgerHandle::spawn_one_shot(dir.path()).expect("open");
        let here = std::thread::current().id();
        assert_eq!(handle.call(|_| std::thread::current().id()).await, here);
        handle.save_check_state(CheckStateRow {
            service: "web".into(),
            check: "health".into(),
            health: CheckHealth {
                status: HealthStatus::Passing,
                consecutive_failures: 0,
                consecutive_successes: 3,
                last_change: None,
            },
            last_verdict: Some(RunVerdict::Pass),
            last_reason: "200 OK".into(),
            last_run: Some(Timestamp::from_secs(1)),
            position: None,
        });
        let other = Ledger::open(dir.path()).expect("open");
        let states = other.check_states().expect("states");
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].health.consecutive_successes, 3);
    }
}
