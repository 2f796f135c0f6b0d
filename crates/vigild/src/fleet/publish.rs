//! The publisher: once a second (at most a third of `lease_ttl` apart) this host writes
//! its heartbeat, its services' check states and its new ledger rows to PostgreSQL, in
//! one transaction per batch.
//!
//! Idempotent: history rows are keyed by (host, local row id) and upserted, so a batch
//! sent twice (its answer lost to a timeout) or re-sent after an outage is stored once.
//! The cursor only moves past rows that are final (a refusal, or an allowed restart
//! with its outcome), so an outcome recorded later is published too.
//!
//! Must not: run on a check's or a restart's path (it is its own task; an outage only
//! delays it).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigil_core::health::HealthStatus;

use super::FleetHandle;
use crate::ledger::{HistoryRow, LedgerHandle};

/// Rows per batch.
const BATCH: i64 = 500;

/// One service's state as published.
#[derive(Clone, Debug)]
pub struct ServiceState {
    pub service: String,
    pub fleet_key: Option<String>,
    pub status: &'static str,
    pub checks: String,
}

/// Publishes until `stop`.
pub async fn run(
    fleet: FleetHandle,
    ledger: LedgerHandle,
    services: Vec<(String, Option<String>)>,
    stop: CancellationToken,
) {
    let every = (fleet.config().lease_ttl / 3).min(Duration::from_secs(1));
    let mut cursor: i64 = 0;
    loop {
        match publish_once(&fleet, &ledger, &services, cursor).await {
            Ok(next) => cursor = next,
            Err(error) => tracing::debug!(%error, "fleet publish postponed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One batch; returns the new cursor.
async fn publish_once(
    fleet: &FleetHandle,
    ledger: &LedgerHandle,
    services: &[(String, Option<String>)],
    cursor: i64,
) -> Result<i64, String> {
    let (states, rows) = ledger
        .call(move |l| {
            Ok::<_, crate::ledger::LedgerError>((
                l.check_states()?,
                l.history_after(cursor, BATCH)?,
            ))
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut per_service: BTreeMap<&str, Vec<(String, HealthStatus)>> = BTreeMap::new();
    for s in &states {
        per_service
            .entry(s.service.as_str())
            .or_default()
            .push((s.check.clone(), s.health.status));
    }
    let published: Vec<ServiceState> = services
        .iter()
        .map(|(name, key)| {
            let checks = per_service.get(name.as_str()).cloned().unwrap_or_default();
            ServiceState {
                service: name.clone(),
                fleet_key: key.clone(),
                status: summary(&checks),
                checks: checks
                    .iter()
                    .map(|(c, s)| format!("{c}={}", s.as_str()))
                    .collect::<Vec<_>>()
                    .join(","),
            }
        })
        .collect();
    let next = next_cursor(cursor, &rows);
    let host = fleet.host().to_owned();
    let ttl_ms = i64::try_from(fleet.config().lease_ttl.as_millis()).unwrap_or(i64::MAX);
    fleet
        .call(move |c| Box::pin(async move { write(c, &host, ttl_ms, &published, &rows).await }))
        .await
        .map_err(|e| e.0)?;
    Ok(next)
}

/// A service's status from its checks: failing if one fails, passing if all pass or
/// warn, else unknown.
fn summary(checks: &[(String, HealthStatus)]) -> &'static str {
    if checks.iter().any(|(_, s)| *s == HealthStatus::Failing) {
        "failing"
    } else if !checks.is_empty()
        && checks
            .iter()
            .all(|(_, s)| matches!(s, HealthStatus::Passing | HealthStatus::Warning))
    {
        "passing"
    } else {
        "unknown"
    }
}

/// The cursor after publishing `rows`: just before the first row still in flight.
fn next_cursor(cursor: i64, rows: &[HistoryRow]) -> i64 {
    let mut next = cursor;
    for r in rows {
        if r.verdict == "allowed" && r.outcome.is_none() {
            break;
        }
        next = r.id;
    }
    next
}

/// One batch in one transaction: the host's heartbeat, its services' states, its new
/// ledger rows (public for the load benchmark, `benches/fleet_publish.rs`).
pub async fn write(
    client: &mut tokio_postgres::Client,
    host: &str,
    ttl_ms: i64,
    services: &[ServiceState],
    rows: &[HistoryRow],
) -> Result<(), tokio_postgres::Error> {
    let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO vigil_fleet_hosts (host, last_seen, lease_ttl_ms, pid) VALUES ($1, now(), $2, $3)
         ON CONFLICT (host) DO UPDATE SET last_seen = now(), lease_ttl_ms = $2, pid = $3",
        &[&host, &ttl_ms, &pid],
    )
    .await?;
    let upsert_service = tx
        .prepare(
            "INSERT INTO vigil_fleet_services
               (host, service, fleet_key, status, checks, updated_at, failing_since)
             VALUES ($1, $2, $3, $4, $5, now(), CASE WHEN $4 = 'failing' THEN now() END)
             ON CONFLICT (host, service) DO UPDATE
               SET fleet_key = $3, status = $4, checks = $5, updated_at = now(),
                   failing_since = CASE WHEN $4 = 'failing'
                     THEN COALESCE(vigil_fleet_services.failing_since, now()) END",
        )
        .await?;
    for s in services {
        tx.execute(
            &upsert_service,
            &[&host, &s.service, &s.fleet_key, &s.status, &s.checks],
        )
        .await?;
    }
    if !rows.is_empty() {
        let upsert_row = tx
            .prepare(
                "INSERT INTO vigil_fleet_history
                   (host, local_id, service, at, source, verdict, reason, message, outcome, finished_at)
                 VALUES ($1, $2, $3, to_timestamp($4::int8 / 1000.0), $5, $6, $7, $8, $9,
                         to_timestamp($10::int8 / 1000.0))
                 ON CONFLICT (host, local_id) DO UPDATE
                   SET outcome = $9, finished_at = to_timestamp($10::int8 / 1000.0), message = $8",
            )
            .await?;
        for r in rows {
            let finished = r.finished_at.map(vigil_core::Timestamp::as_millis);
            tx.execute(
                &upsert_row,
                &[
                    &host,
                    &r.id,
                    &r.service,
                    &r.at.as_millis(),
                    &r.source,
                    &r.verdict,
                    &r.reason,
                    &r.message,
                    &r.outcome,
                    &finished,
                ],
            )
            .await?;
        }
    }
    tx.commit().await
}
