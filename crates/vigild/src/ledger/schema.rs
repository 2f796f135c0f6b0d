//! The ledger's tables, created and migrated in `PRAGMA user_version` steps (v1 restarts
//! and check states, v2 heartbeats, v3 evidence and exec state, v4 alert deliveries, v5
//! the partial indexes behind the guard's two queries, v6 given-up episodes counted on
//! their first denial, log checks' positions, operator holds; v7 a TCP caller's address),
//! each tested from older files.

use super::{Ledger, LedgerError, Result, SCHEMA_VERSION, sql_err};

impl Ledger {
    pub(super) fn migrate(&mut self) -> Result<()> {
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
        if version < 6 {
            // v6: within one given-up episode, repeated denials are counted on its first
            // denial row (`repeats`, `last_at`) instead of one row each; `rearm_at` says
            // when the episode ends. The index finds a service's latest episode row. A
            // `log` check's read position is kept with its state, for the next process.
            // A tracked restart (one whose action reports its progress) records what it
            // started (`action`) and the process it spawned (`child_pid`, `child_start`),
            // so that after a crash the next Vigil knows whether it is still running.
            // An operator's stop, start, pause, resume (and a hold's expiry) is a row
            // too (source `operator` or `window`), with who asked (`uid`, `user`), why
            // (`reason_text`) and until when (`hold_until`).
            tx.execute_batch(
                "ALTER TABLE restarts ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE restarts ADD COLUMN last_at INTEGER;
                ALTER TABLE restarts ADD COLUMN rearm_at INTEGER;
                CREATE INDEX restarts_episodes ON restarts(service, at)
                    WHERE verdict IN ('allowed', 'denied', 'reset', 'rearmed');
                ALTER TABLE check_state ADD COLUMN position TEXT;
                ALTER TABLE restarts ADD COLUMN tracked INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE restarts ADD COLUMN action TEXT;
                ALTER TABLE restarts ADD COLUMN child_pid INTEGER;
                ALTER TABLE restarts ADD COLUMN child_start INTEGER;
                ALTER TABLE restarts ADD COLUMN hold_until INTEGER;
                ALTER TABLE restarts ADD COLUMN uid INTEGER;
                ALTER TABLE restarts ADD COLUMN user TEXT;
                ALTER TABLE restarts ADD COLUMN reason_text TEXT;
                CREATE INDEX restarts_holds ON restarts(service, at)
                    WHERE verdict IN ('stop', 'start', 'pause', 'resume', 'expired');
                PRAGMA user_version = 6;",
            )
            .map_err(&err)?;
        }
        if version < 7 {
            // v7: an operator's action over the TCP listener has no uid (`uid` is NULL,
            // `user` is `token`); `peer` is the address it came from.
            tx.execute_batch(
                "ALTER TABLE restarts ADD COLUMN peer TEXT;
                PRAGMA user_version = 7;",
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        Ok(())
    }
}
