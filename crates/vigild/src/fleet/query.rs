//! What `vigil fleet status` and `vigil fleet history` read: every host's services, their
//! check states and leases, and the published history (docs/cli-json.md).
//!
//! Must not: write anything.

use serde::Serialize;

use super::{FleetHandle, ms, ts};

/// One host's service, as last published.
#[derive(Clone, Debug, Serialize)]
pub struct FleetServiceRow {
    pub host: String,
    pub service: String,
    pub fleet_key: Option<String>,
    /// `passing`, `failing`, `unknown`.
    pub status: String,
    /// `check=status,...`
    pub checks: String,
    /// The host's last heartbeat (RFC 3339).
    pub last_seen: String,
    pub last_seen_ms_ago: i64,
    /// Not seen for 3 × `lease_ttl`.
    pub lost: bool,
    /// A lease the service holds now: since how long, in ms.
    pub lease_held_ms: Option<i64>,
}

/// One published ledger row.
#[derive(Clone, Debug, Serialize)]
pub struct FleetHistoryRow {
    pub host: String,
    pub id: i64,
    pub service: String,
    pub at: String,
    pub source: String,
    pub verdict: String,
    pub reason: String,
    pub message: String,
    pub outcome: Option<String>,
}

pub async fn status(fleet: &FleetHandle) -> Result<Vec<FleetServiceRow>, String> {
    let rows = fleet
        .call(|c| {
            Box::pin(async move {
                c.query(
                    concat!(
                        "SELECT s.host, s.service, s.fleet_key, s.status, s.checks, ",
                        ms!("h.last_seen"),
                        ", ",
                        ms!("now() - h.last_seen"),
                        "::int8 / 1000,
                        h.last_seen < now() - make_interval(secs => h.lease_ttl_ms * 3 / 1000.0),
                        (SELECT ",
                        ms!("now() - min(l.started_at)"),
                        " / 1000 FROM vigil_fleet_leases l
                           WHERE l.host = s.host AND l.service = s.service
                             AND l.released_at IS NULL AND l.expires_at > now())
                     FROM vigil_fleet_services s JOIN vigil_fleet_hosts h USING (host)
                     ORDER BY s.host, s.service"
                    ),
                    &[],
                )
                .await
            })
        })
        .await
        .map_err(|e| e.0)?;
    Ok(rows
        .iter()
        .map(|r| FleetServiceRow {
            host: r.get(0),
            service: r.get(1),
            fleet_key: r.get(2),
            status: r.get(3),
            checks: r.get(4),
            last_seen: ts(r.get(5)).to_string(),
            last_seen_ms_ago: r.get(6),
            lost: r.get(7),
            lease_held_ms: r.get(8),
        })
        .collect())
}

pub async fn history(
    fleet: &FleetHandle,
    since_ms: Option<i64>,
) -> Result<Vec<FleetHistoryRow>, String> {
    let rows = fleet
        .call(move |c| {
            Box::pin(async move {
                c.query(
                    concat!(
                        "SELECT host, local_id, service, ",
                        ms!("at"),
                        ", source, verdict, reason, message, outcome
                     FROM vigil_fleet_history
                     WHERE $1::int8 IS NULL OR at >= to_timestamp($1::int8 / 1000.0)
                     ORDER BY at, host, local_id"
                    ),
                    &[&since_ms],
                )
                .await
            })
        })
        .await
        .map_err(|e| e.0)?;
    Ok(rows
        .iter()
        .map(|r| FleetHistoryRow {
            host: r.get(0),
            id: r.get(1),
            service: r.get(2),
            at: ts(r.get(3)).to_string(),
            source: r.get(4),
            verdict: r.get(5),
            reason: r.get(6),
            message: r.get(7),
            outcome: r.get(8),
        })
        .collect())
}
