//! The fleet's publishing load (issue 16): H simulated hosts × 50 services, each host
//! publishing its heartbeat and its services' states once a second through its own
//! connection, with the same code and schema as `vigil run` (`fleet::publish::write`).
//! Reports PostgreSQL's transactions and rows per second, its CPU, and the publishers'
//! CPU per host, for several H.
//!
//! Needs Debian's postgresql-15 (run as root). `cargo bench -p vigild --bench
//! fleet_publish [-- SECONDS]` (default 20 s per point).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

#[path = "support/pg.rs"]
mod pg;
use pg::now;
use vigild::fleet::publish::{ServiceState, write};

const SERVICES: usize = 50;

/// utime + stime of a process, in clock ticks.
fn ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// The postmaster and its children (backends included), by parent pid.
fn pg_ticks(postmaster: u32) -> u64 {
    let mut total = ticks(postmaster);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest = stat.rsplit(')').next().unwrap_or("");
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            total += ticks(pid);
        }
    }
    total
}

async fn counters(c: &tokio_postgres::Client) -> (i64, i64) {
    let r = c
        .query_one(
            "SELECT xact_commit, tup_inserted + tup_updated FROM pg_stat_database
             WHERE datname = 'postgres'",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let settings = ["-c".to_owned(), "max_connections=300".to_owned()];
    let (pg, port) = pg::start(dir.path(), &settings);
    let postmaster = pg.0.id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let connect = || async {
            let mut cfg = tokio_postgres::Config::new();
            cfg.host("127.0.0.1")
                .port(port)
                .user("postgres")
                .dbname("postgres");
            let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            Ok::<_, tokio_postgres::Error>(client)
        };
        let t0 = now();
        let mut admin = loop {
            match connect().await {
                Ok(c) => break c,
                Err(_) if t0.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        vigild::fleet::schema::migrate(&mut admin).await.unwrap();
        println!(
            "{:>5} {:>9} {:>10} {:>12} {:>10} {:>16}",
            "hosts", "services", "xact/s", "rows/s", "pg CPU %", "publish CPU/host"
        );
        for hosts in [50usize, 100, 200] {
            let stop = tokio_util::sync::CancellationToken::new();
            let mut tasks = Vec::new();
            for h in 0..hosts {
                let mut client = connect().await.unwrap();
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    let host = format!("sim-{h:03}");
                    let mut tick = 0u64;
                    // Spread the hosts over the second, as real hosts are.
                    tokio::time::sleep(Duration::from_millis((h as u64 * 1000) / hosts as u64))
                        .await;
                    let mut every = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            _ = every.tick() => {}
                        }
                        tick += 1;
                        let services: Vec<ServiceState> = (0..SERVICES)
                            .map(|s| ServiceState {
                                service: format!("svc-{s:02}"),
                                fleet_key: Some(format!("key-{s:02}")),
                                // A few services flap, as in a real fleet.
                                status: if (tick + s as u64).is_multiple_of(97) {
                                    "failing"
                                } else {
                                    "passing"
                                },
                                checks: "health=passing,tcp=passing".to_owned(),
                            })
                            .collect();
                        write(&mut client, &host, 30_000, &services, &[])
                            .await
                            .unwrap();
                    }
                }));
            }
            // Warm up, then measure.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let (x0, r0) = counters(&admin).await;
            let (p0, s0, w0) = (pg_ticks(postmaster), ticks(std::process::id()), now());
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let (x1, r1) = counters(&admin).await;
            let (p1, s1) = (pg_ticks(postmaster), ticks(std::process::id()));
            let wall = w0.elapsed().as_secs_f64();
            stop.cancel();
            for t in tasks {
                let _ = t.await;
            }
            // /proc/PID/stat counts in USER_HZ, 100 on Linux.
            let hz = 100.0;
            let pg_cpu = (p1 - p0) as f64 / hz / wall * 100.0;
            let own_cpu = (s1 - s0) as f64 / hz / wall;
            println!(
                "{hosts:>5} {:>9} {:>10.0} {:>12.0} {:>9.1}% {:>13.3} ms/s",
                hosts * SERVICES,
                (x1 - x0) as f64 / wall,
                (r1 - r0) as f64 / wall,
                pg_cpu,
                own_cpu / hosts as f64 * 1000.0,
            );
        }
        drop(pg);
    });
}
