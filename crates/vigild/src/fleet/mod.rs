//! The fleet at the edge: this host's connection to the fleet's PostgreSQL, the lease
//! transaction around the pure `vigil_core::fleet::decide_fleet`, lease renewal and
//! release, the outage episode (`fleet-unreachable` / `fleet-recovered`, once each per
//! outage) and the publisher of this host's states and ledger rows (`publish.rs`).
//!
//! Architecture Invariant: every call to PostgreSQL is bounded by `[fleet] timeout`
//! (connecting included); a call that runs out drops the connection, so nothing is left
//! half-done on it (an uncommitted lease is rolled back by the server; a committed one
//! whose answer was lost expires after `lease_ttl`).
//!
//! Must not: decide (that is `vigil_core::fleet`), log or return the password.

pub mod publish;
pub mod query;
pub mod schema;
pub mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};
use vigil_config::model::{Fleet as FleetConfig, OnUnreachable};
use vigil_core::ServiceName;
use vigil_core::event::{Event, FLEET_SUBJECT};
use vigil_core::fleet::{
    Asker, FleetNote, FleetRefusal, FleetRules, FleetSnapshot, HeldLease, Member, decide_fleet,
};
use vigil_core::time::Timestamp;

use crate::observe::bus::Events;

/// `(extract(epoch ...) * 1000)::int8`: timestamps cross the wire as epoch milliseconds.
macro_rules! ms {
    ($col:literal) => {
        concat!("(extract(epoch from ", $col, ") * 1000)::int8")
    };
}
pub(crate) use ms;

/// This host's handle on the fleet: cheap to clone, shared by the guard and the publisher.
#[derive(Clone)]
pub struct FleetHandle {
    inner: Arc<Inner>,
}

struct Inner {
    config: FleetConfig,
    /// service name → its fleet key's name.
    members: HashMap<String, String>,
    /// The one connection, opened on demand. A tokio mutex: a fleet call holds it across
    /// its awaits (a transaction), and every wait for it is inside the call's timeout.
    conn: tokio::sync::Mutex<Option<Client>>,
    outage: std::sync::Mutex<Outage>,
    events: Events,
}

/// The current outage, if any: when it began and when to try connecting next.
#[derive(Default)]
struct Outage {
    since: Option<tokio::time::Instant>,
    next_try: Option<tokio::time::Instant>,
    backoff: Duration,
}

/// A fleet call that could not be completed within `timeout`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// What the fleet said to one restart of a fleet-keyed service.
#[derive(Debug)]
pub enum Asked {
    Granted {
        lease: Lease,
        note: FleetNote,
    },
    Refused(FleetRefusal),
    /// PostgreSQL could not be asked within `timeout`.
    Unreachable {
        key: String,
        error: String,
    },
}

/// A lease this host holds. Renewed every third of `lease_ttl` until released; dropped
/// unreleased (Vigil stopping mid-restart), renewal stops and it expires by itself.
#[derive(Debug)]
pub struct Lease {
    pub id: i64,
    pub key: String,
    renew: tokio::task::AbortHandle,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

impl FleetHandle {
    /// A handle for `config`'s `[fleet]`, with its services' keys; `None` without
    /// `[fleet]`. Connects lazily.
    pub fn new(config: &vigil_config::Config, events: Events) -> Option<FleetHandle> {
        let fleet = config.fleet.clone()?;
        let members = config
            .services
            .iter()
            .filter_map(|s| Some((s.name.to_string(), s.fleet_key.clone()?)))
            .collect();
        Some(FleetHandle {
            inner: Arc::new(Inner {
                config: fleet,
                members,
                conn: tokio::sync::Mutex::new(None),
                outage: std::sync::Mutex::default(),
                events,
            }),
        })
    }

    pub fn config(&self) -> &FleetConfig {
        &self.inner.config
    }

    pub fn host(&self) -> &str {
        &self.inner.config.host
    }

    /// The fleet key of `service`, if it has one.
    pub fn key_of(&self, service: &str) -> Option<&str> {
        self.inner.members.get(service).map(String::as_str)
    }

    pub fn on_unreachable(&self) -> OnUnreachable {
        self.inner.config.on_unreachable
    }

    /// Runs `f` on the connection (opening it first if needed), all within `timeout`.
    /// A failure or a timeout drops the connection and opens (or continues) an outage.
    pub async fn call<R, F>(&self, f: F) -> Result<R, Unreachable>
    where
        F: for<'c> FnOnce(
            &'c mut Client,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<R, tokio_postgres::Error>> + Send + 'c>,
        >,
    {
        if let Some(error) = self.backing_off() {
            return Err(error);
        }
        let timeout = self.inner.config.timeout;
        let result = tokio::time::timeout(timeout, async {
            let mut guard = self.inner.conn.lock().await;
            if guard.is_none() {
                *guard = Some(self.connect().await?);
            }
            let Some(client) = guard.as_mut() else {
                return Err(Unreachable("no connection".to_owned()));
            };
            match f(client).await {
                Ok(r) => Ok(r),
                Err(e) => {
                    *guard = None;
                    Err(Unreachable(describe(&e)))
                }
            }
        })
        .await;
        let result = match result {
            Ok(r) => r,
            Err(_) => {
                // The call was cut mid-way: never reuse its connection.
                if let Ok(mut guard) = self.inner.conn.try_lock() {
                    *guard = None;
                }
                Err(Unreachable(format!(
                    "no answer within {} (timeout)",
                    vigil_core::format_duration(timeout)
                )))
            }
        };
        match &result {
            Ok(_) => self.reachable(),
            Err(e) => self.unreachable(&e.0),
        }
        result
    }

    async fn connect(&self) -> Result<Client, Unreachable> {
        let c = &self.inner.config;
        let mut pg = tokio_postgres::Config::new();
        pg.user(&c.postgres.user)
            .host(&c.postgres.host)
            .port(c.postgres.port)
            .dbname(&c.postgres.database)
            .application_name("vigil")
            .connect_timeout(c.timeout);
        if let Some(secret) = &c.password {
            let password = secret.read().map_err(Unreachable)?;
            pg.password(password);
        }
        let mut client = match &c.tls {
            None => {
                let (client, connection) = pg
                    .connect(NoTls)
                    .await
                    .map_err(|e| Unreachable(describe(&e)))?;
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(error = %describe(&error), "fleet connection closed");
                    }
                });
                client
            }
            Some(tls) => {
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let config = vigil_checks::probe::tls_client_config(tls.ca_file.as_deref())
                    .await
                    .map_err(Unreachable)?;
                let (client, connection) = pg
                    .connect(tls::RustlsConnect(config))
                    .await
                    .map_err(|e| Unreachable(describe(&e)))?;
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(error = %describe(&error), "fleet connection closed");
                    }
                });
                client
            }
        };
        schema::migrate(&mut client).await.map_err(|e| {
            Unreachable(format!("cannot migrate the fleet schema: {}", describe(&e)))
        })?;
        Ok(client)
    }

    /// While an outage backs off, the error to return at once (no call waits on a
    /// database that just failed).
    fn backing_off(&self) -> Option<Unreachable> {
        let outage = self.inner.outage.lock().unwrap_or_else(|p| p.into_inner());
        match outage.next_try {
            Some(at) if tokio::time::Instant::now() < at => Some(Unreachable(format!(
                "unreachable for {} (retrying with backoff)",
                vigil_core::format_duration(outage.since.map_or(Duration::ZERO, |s| s.elapsed()))
            ))),
            _ => None,
        }
    }

    fn unreachable(&self, error: &str) {
        let first = {
            let mut outage = self.inner.outage.lock().unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            let first = outage.since.is_none();
            if first {
                outage.since = Some(now);
                outage.backoff = Duration::from_millis(500);
            } else {
                outage.backoff = (outage.backoff * 2).min(Duration::from_secs(10));
            }
            outage.next_try = Some(now + outage.backoff);
            first
        };
        if first {
            self.inner.events.publish(
                &ServiceName::new(FLEET_SUBJECT),
                Event::FleetUnreachable {
                    error: error.to_owned(),
                    on_unreachable: self.inner.config.on_unreachable.as_str(),
                },
            );
        }
    }

    fn reachable(&self) {
        let since = {
            let mut outage = self.inner.outage.lock().unwrap_or_else(|p| p.into_inner());
            let since = outage.since.take();
            *outage = Outage::default();
            since
        };
        if let Some(since) = since {
            self.inner.events.publish(
                &ServiceName::new(FLEET_SUBJECT),
                Event::FleetRecovered {
                    after: since.elapsed(),
                },
            );
        }
    }

    /// Whether an outage is open.
    pub fn is_unreachable(&self) -> bool {
        self.inner
            .outage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .since
            .is_some()
    }

    /// Asks for a lease for `service` (`None`: not a fleet-keyed service).
    pub async fn acquire(&self, service: &str, forced: bool) -> Option<Asked> {
        let key = self.key_of(service)?.to_owned();
        let rules = self
            .inner
            .config
            .key(&key)
            .map(|k| k.rules.clone())
            .unwrap_or_default();
        let host = self.inner.config.host.clone();
        let ttl = self.inner.config.lease_ttl;
        let (k, s, h) = (key.clone(), service.to_owned(), host.clone());
        let answer = self
            .call(move |client| {
                Box::pin(async move { take_lease(client, &rules, &k, &h, &s, forced, ttl).await })
            })
            .await;
        Some(match answer {
            Ok(Ok((id, note))) => Asked::Granted {
                lease: self.renewing(id, key),
                note,
            },
            Ok(Err(refusal)) => Asked::Refused(refusal),
            Err(Unreachable(error)) => Asked::Unreachable { key, error },
        })
    }

    /// Starts renewing lease `id` every third of `lease_ttl`.
    fn renewing(&self, id: i64, key: String) -> Lease {
        let fleet = self.clone();
        let ttl = self.inner.config.lease_ttl;
        let k = key.clone();
        let task = tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            let mut lost = false;
            loop {
                tokio::time::sleep(ttl / 3).await;
                let secs = ttl.as_secs_f64();
                let renewed = fleet
                    .call(move |c| {
                        Box::pin(async move {
                            c.execute(
                                "UPDATE vigil_fleet_leases
                                 SET expires_at = now() + make_interval(secs => $2)
                                 WHERE id = $1 AND released_at IS NULL AND expires_at > now()",
                                &[&id, &secs],
                            )
                            .await
                        })
                    })
                    .await;
                match renewed {
                    Ok(1) => last_ok = tokio::time::Instant::now(),
                    Ok(_) => lost = true,
                    Err(_) if last_ok.elapsed() >= ttl => lost = true,
                    Err(_) => {}
                }
                if lost {
                    fleet.inner.events.publish(
                        &ServiceName::new(FLEET_SUBJECT),
                        Event::FleetLeaseLost { key: k.clone() },
                    );
                    return;
                }
            }
        });
        Lease {
            id,
            key,
            renew: task.abort_handle(),
        }
    }

    /// Releases `lease` with the restart's outcome. Not released (PostgreSQL away), it
    /// expires after `lease_ttl`.
    pub async fn release(&self, lease: Lease, outcome: &str) {
        lease.renew.abort();
        let (id, outcome) = (lease.id, outcome.to_owned());
        let released = self
            .call(move |c| {
                Box::pin(async move {
                    c.execute(
                        "UPDATE vigil_fleet_leases SET released_at = now(), outcome = $2
                         WHERE id = $1 AND released_at IS NULL",
                        &[&id, &outcome],
                    )
                    .await
                })
            })
            .await;
        if let Err(Unreachable(error)) = released {
            tracing::warn!(fleet_key = %lease.key, lease = lease.id, %error, "cannot release the fleet lease: it expires after lease_ttl");
        }
    }
}

/// How much later than a member's failure began another member's published state must
/// be to count for `min_healthy`: the ledger writes check states at most
/// `CHECK_STATE_FLUSH` late, and the publisher reads them from there.
const FRESH_MARGIN: Duration = crate::ledger::CHECK_STATE_FLUSH;

/// The lease transaction: lock the key's row, read what the fleet does with the key,
/// decide (pure), insert the lease. `Ok(Err(_))`: refused (nothing written).
async fn take_lease(
    client: &mut Client,
    rules: &FleetRules,
    key: &str,
    host: &str,
    service: &str,
    forced: bool,
    ttl: Duration,
) -> Result<Result<(i64, FleetNote), FleetRefusal>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO vigil_fleet_keys (key) VALUES ($1) ON CONFLICT (key) DO NOTHING",
        &[&key],
    )
    .await?;
    let now = tx
        .query_one(
            concat!(
                "SELECT ",
                ms!("now()"),
                " FROM vigil_fleet_keys WHERE key = $1 FOR UPDATE"
            ),
            &[&key],
        )
        .await?;
    let now = ts(now.get::<_, i64>(0));
    let mut snapshot = FleetSnapshot::default();
    for row in tx
        .query(
            concat!(
                "SELECT host, service, ",
                ms!("started_at"),
                ", ",
                ms!("expires_at"),
                " FROM vigil_fleet_leases
                 WHERE key = $1 AND released_at IS NULL AND expires_at > now()"
            ),
            &[&key],
        )
        .await?
    {
        snapshot.held.push(HeldLease {
            host: row.get(0),
            service: row.get(1),
            started: ts(row.get(2)),
            expires: ts(row.get(3)),
        });
    }
    if let Some(budget) = rules.budget {
        let secs = budget.window.as_secs_f64();
        for row in tx
            .query(
                concat!(
                    "SELECT ",
                    ms!("started_at"),
                    " FROM vigil_fleet_leases
                     WHERE key = $1 AND started_at > now() - make_interval(secs => $2)"
                ),
                &[&key, &secs],
            )
            .await?
        {
            snapshot.started.push(ts(row.get(0)));
        }
    }
    if rules.min_healthy.is_some() && !forced {
        // This member is failing (it asks for a restart): say so first, and count another
        // member as passing only if it published after this failure began plus the
        // ledger's flush delay, so two members failing at once both see each other fail.
        tx.execute(
            "INSERT INTO vigil_fleet_services
               (host, service, fleet_key, status, checks, updated_at, failing_since)
             VALUES ($1, $2, $3, 'failing', '', now(), now())
             ON CONFLICT (host, service) DO UPDATE
               SET status = 'failing', fleet_key = $3,
                   failing_since = COALESCE(vigil_fleet_services.failing_since, now())",
            &[&host, &service, &key],
        )
        .await?;
        for row in tx
            .query(
                "SELECT s.host, s.service,
                        s.status = 'passing'
                          AND h.last_seen > now() - make_interval(secs => h.lease_ttl_ms * 3 / 1000.0)
                          AND s.updated_at > me.failing_since + make_interval(secs => $4)
                 FROM vigil_fleet_services s JOIN vigil_fleet_hosts h USING (host),
                      vigil_fleet_services me
                 WHERE s.fleet_key = $1 AND me.host = $2 AND me.service = $3",
                &[&key, &host, &service, &FRESH_MARGIN.as_secs_f64()],
            )
            .await?
        {
            snapshot.members.push(Member {
                host: row.get(0),
                service: row.get(1),
                healthy: row.get(2),
            });
        }
    }
    let asker = Asker {
        key,
        host,
        service,
        forced,
    };
    let note = match decide_fleet(rules, &snapshot, asker, now) {
        Ok(note) => note,
        Err(refusal) => {
            // Nothing but this member's failing state was written.
            tx.commit().await?;
            return Ok(Err(refusal));
        }
    };
    let secs = ttl.as_secs_f64();
    let row = tx
        .query_one(
            "INSERT INTO vigil_fleet_leases (key, host, service, forced, started_at, expires_at)
             VALUES ($1, $2, $3, $4, now(), now() + make_interval(secs => $5))
             RETURNING id",
            &[&key, &host, &service, &forced, &secs],
        )
        .await?;
    let id: i64 = row.get(0);
    tx.commit().await?;
    Ok(Ok((id, note)))
}

pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// An error in words, with the server's message when there is one (never the password:
/// tokio-postgres does not put it in errors).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
    }
}
