//! The alert delivery log: each message's final outcome through each channel (delivered,
//! a dead letter, or dropped), shown by `vigil history`.

use rusqlite::params;
use vigil_core::Timestamp;

use super::{Ledger, Result, sql_err};

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

impl Ledger {
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
}
