//! The fleet's tables in PostgreSQL, created and migrated by Vigil (ARCHITECTURE.md,
//! "Fleet leases"). Versioned: `vigil_fleet_schema` holds one row, the version; each
//! step runs once, in one transaction, under a transaction-scoped advisory lock so that
//! hosts starting together do not race. Works on PostgreSQL 13 and newer (no syntax
//! newer than 13: no `MERGE`, no multirange types).
//!
//! Must not: drop or rewrite a table a running older Vigil still uses; a step only adds.

use tokio_postgres::Client;

/// Every migration step, in order: step `i` brings the schema to version `i + 1`.
const STEPS: &[&str] = &[
    // 1: leases, the per-key rows they lock on, hosts, services, published history.
    "CREATE TABLE vigil_fleet_keys (
        key text PRIMARY KEY
     );
     CREATE TABLE vigil_fleet_leases (
        id bigserial PRIMARY KEY,
        key text NOT NULL,
        host text NOT NULL,
        service text NOT NULL,
        forced boolean NOT NULL DEFAULT false,
        started_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        released_at timestamptz,
        outcome text
     );
     CREATE INDEX vigil_fleet_leases_key_started ON vigil_fleet_leases (key, started_at);
     CREATE INDEX vigil_fleet_leases_live ON vigil_fleet_leases (key) WHERE released_at IS NULL;
     CREATE TABLE vigil_fleet_hosts (
        host text PRIMARY KEY,
        last_seen timestamptz NOT NULL,
        lease_ttl_ms bigint NOT NULL,
        pid integer NOT NULL
     );
     CREATE TABLE vigil_fleet_services (
        host text NOT NULL,
        service text NOT NULL,
        fleet_key text,
        status text NOT NULL,
        checks text NOT NULL,
        updated_at timestamptz NOT NULL,
        failing_since timestamptz,
        PRIMARY KEY (host, service)
     );
     CREATE INDEX vigil_fleet_services_key ON vigil_fleet_services (fleet_key);
     CREATE TABLE vigil_fleet_history (
        host text NOT NULL,
        local_id bigint NOT NULL,
        service text NOT NULL,
        at timestamptz NOT NULL,
        source text NOT NULL,
        verdict text NOT NULL,
        reason text NOT NULL,
        message text NOT NULL,
        outcome text,
        finished_at timestamptz,
        PRIMARY KEY (host, local_id)
     );
     CREATE INDEX vigil_fleet_history_at ON vigil_fleet_history (at);",
];

/// The schema version this Vigil writes.
pub const VERSION: i32 = STEPS.len() as i32;

/// An arbitrary constant: the advisory lock every host's migration takes.
const MIGRATION_LOCK: i64 = 0x7669_6769_6c66_6c74; // "vigilflt"

/// Brings the database to [`VERSION`]. A database newer than this Vigil is left alone
/// (an error, so an old Vigil never writes rows it does not understand).
pub async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS vigil_fleet_schema (version integer NOT NULL);
         INSERT INTO vigil_fleet_schema (version)
           SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM vigil_fleet_schema);",
    )
    .await?;
    let row = tx
        .query_one("SELECT version FROM vigil_fleet_schema", &[])
        .await?;
    let current: i32 = row.get(0);
    for (i, step) in STEPS.iter().enumerate() {
        let version = i32::try_from(i).unwrap_or(i32::MAX).saturating_add(1);
        if version <= current {
            continue;
        }
        tx.batch_execute(step).await?;
        tx.execute("UPDATE vigil_fleet_schema SET version = $1", &[&version])
            .await?;
    }
    tx.commit().await
}

/// The version found in the database (`0`: none yet).
pub async fn version(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let exists = client
        .query_one("SELECT to_regclass('vigil_fleet_schema') IS NOT NULL", &[])
        .await?;
    if !exists.get::<_, bool>(0) {
        return Ok(0);
    }
    let row = client
        .query_one("SELECT version FROM vigil_fleet_schema", &[])
        .await?;
    Ok(row.get(0))
}
