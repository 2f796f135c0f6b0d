//! Pushed heartbeats (`vigil heartbeat`, `POST /v1/heartbeat/...`): the latest per check
//! and how many.

use rusqlite::params;
use vigil_core::Timestamp;

use super::{Ledger, Result, sql_err, ts};

impl Ledger {
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
}
