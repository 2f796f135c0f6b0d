//! What a fleet lease costs (issue 16): `guard::begin` + `finish` for a fleet-keyed
//! service against a real PostgreSQL 15 on loopback, minus the same for a service
//! without a key; and the lease transaction alone. Prints median and p99.
//!
//! Needs Debian's postgresql-15 (run as root); starts its own cluster in a temporary
//! directory on a free port. `cargo bench -p vigild --bench fleet_lease [-- N]`;
//! `FLEET_BENCH_PG="synchronous_commit=off"` adds server settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

#[path = "support/pg.rs"]
mod pg;
use pg::now;
use vigil_core::{GuardPolicy, RestartReport, RestartRequest, ServiceName, Source};
use vigild::fleet::FleetHandle;
use vigild::guard::{Ask, Begun, GuardContext, begin, finish};
use vigild::ledger::LedgerHandle;
use vigild::observe::bus::Events;

/// `FLEET_BENCH_PG="synchronous_commit=off ..."`: more server settings.
fn extra_settings() -> Vec<String> {
    std::env::var("FLEET_BENCH_PG")
        .unwrap_or_default()
        .split_whitespace()
        .flat_map(|s| ["-c".to_owned(), s.to_owned()])
        .collect()
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let q = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name:<44} n={:<5} median {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
        v.len(),
        q(0.5).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        q(1.0).as_secs_f64() * 1e3
    );
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let pgdir = tempfile::tempdir().unwrap();
    let (_pg, port) = pg::start(pgdir.path(), &extra_settings());
    let state = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"[vigil]
state_dir = {state:?}

[services.keyed]
driver = "command"
restart_command = ["true"]
fleet_key = "api"

[services.healthy]
driver = "command"
restart_command = ["true"]
fleet_key = "budgeted"

[services.plain]
driver = "command"
restart_command = ["true"]

[fleet]
postgres = "postgres://postgres@127.0.0.1:{port}/postgres"
host = "bench-host"
timeout = "2s"

[fleet.keys.api]
max_concurrent = 1

[fleet.keys.budgeted]
max_concurrent = 1
max_restarts = 1000000
window = "1h"
"#,
        state = state.path().display().to_string()
    );
    let config = vigil_config::parse(&toml, &state.path().join("vigil.toml")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let events = Events::to(Vec::new());
        let fleet = FleetHandle::new(&config, events.clone()).unwrap();
        // Wait for the server, and migrate.
        let t0 = now();
        loop {
            if fleet
                .acquire("keyed", false)
                .await
                .is_some_and(|a| matches!(a, vigild::fleet::Asked::Granted { .. }))
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "postgres did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The lease from the loop above is dropped unreleased: let it expire out of the way.
        fleet
            .call(|c| {
                Box::pin(async move {
                    c.execute("UPDATE vigil_fleet_leases SET released_at = now()", &[])
                        .await
                })
            })
            .await
            .unwrap();

        let mut acquire = Vec::new();
        let mut release = Vec::new();
        for _ in 0..n {
            let t = now();
            let asked = fleet.acquire("keyed", false).await.unwrap();
            acquire.push(t.elapsed());
            let vigild::fleet::Asked::Granted { lease, .. } = asked else {
                panic!("refused: {asked:?}");
            };
            let t = now();
            fleet.release(lease, "ok").await;
            release.push(t.elapsed());
        }
        stats("lease transaction (max_concurrent)", acquire);
        stats("lease release", release);

        let mut acquire = Vec::new();
        for _ in 0..n {
            let t = now();
            let asked = fleet.acquire("healthy", false).await.unwrap();
            acquire.push(t.elapsed());
            if let vigild::fleet::Asked::Granted { lease, .. } = asked {
                fleet.release(lease, "ok").await;
            }
        }
        stats("lease transaction (+ budget window rows)", acquire);

        let ledger = LedgerHandle::spawn(state.path()).unwrap();
        let cx = GuardContext {
            ledger,
            state_dir: state.path().to_path_buf(),
            events,
            fleet: Some(fleet.clone()),
        };
        let policy = GuardPolicy {
            cooldown: Duration::ZERO,
            max_restarts: 1_000_000,
            window: Duration::from_secs(3600),
            lock_timeout: Duration::from_secs(5),
            backoff: None,
        };
        let report = RestartReport {
            ok: true,
            detail: "bench".to_owned(),
            duration: Duration::ZERO,
            action_required: None,
        };
        for (name, label) in [
            ("plain", "guard begin+finish, no fleet_key"),
            ("keyed", "guard begin+finish, fleet_key (lease)"),
        ] {
            let service = ServiceName::new(name);
            let mut v = Vec::new();
            for _ in 0..n {
                let mut ask = Ask::new(RestartRequest::new(Source::Health));
                ask.relaxed = true;
                let t = now();
                let Begun::Allowed(permit) = begin(&cx, &service, &policy, ask).await.unwrap()
                else {
                    panic!("refused");
                };
                finish(&cx, permit, report.clone()).await.unwrap();
                v.push(t.elapsed());
            }
            stats(label, v);
        }
    });
}
