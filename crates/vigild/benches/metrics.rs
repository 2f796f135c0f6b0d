//! Rendering `/metrics` for 100 services with 10 checks each (1,000 check series with
//! their histograms, about 22,000 lines), after every check has run and some services
//! restarted. The target is under 2 ms of CPU per scrape (docs/BENCHMARKS.md).
//! `scrape_budgets` adds the ledger job a scrape makes (the counted restarts of each
//! service from the ledger thread's cache).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vigil_core::event::Event;
use vigil_core::health::{HealthStatus, RunVerdict};
use vigil_core::{RestartRequest, Source, Timestamp, Verdict};
use vigild::ledger::{LedgerHandle, NewVerdict};
use vigild::observe::bus::Events;
use vigild::observe::metrics::{Budgets, Metrics};

const SERVICES: usize = 100;
const CHECKS: usize = 10;

fn config() -> vigil_config::model::Config {
    let mut text = String::new();
    for s in 0..SERVICES {
        let _ = write!(
            text,
            "[services.service-{s:03}]\ndriver = \"command\"\nrestart_command = [\"true\"]\n"
        );
        for c in 0..CHECKS {
            let _ = write!(
                text,
                "[services.service-{s:03}.checks.check-{c}]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\n",
                8000 + c
            );
        }
    }
    text.push_str("[alerts.ops]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n");
    vigil_config::parse(&text, std::path::Path::new("/etc/vigil/vigil.toml")).expect("valid")
}

fn bench(c: &mut Criterion) {
    let config = config();
    let metrics = Metrics::new(&config);
    let events = Events::to(vec![metrics.clone()]);
    let mut budgets = BTreeMap::new();
    for (i, s) in config.services.iter().enumerate() {
        for (j, check) in s.checks.iter().enumerate() {
            for run in 0..20u64 {
                events.publish(
                    &s.name,
                    Event::CheckRun {
                        check: check.name.to_string(),
                        verdict: if (i + j) % 7 == 0 {
                            RunVerdict::Fail
                        } else {
                            RunVerdict::Pass
                        },
                        status: HealthStatus::Passing,
                        reason: String::new(),
                        took: Duration::from_micros(300 + 997 * run),
                    },
                );
            }
        }
        if i % 3 == 0 {
            events.publish(
                &s.name,
                Event::Verdict {
                    request: RestartRequest::new(Source::Health),
                    verdict: Verdict::Allowed {
                        count: 1,
                        max: 5,
                        window: Duration::from_secs(3600),
                        forced: false,
                        fleet: None,
                    },
                    repeat: None,
                },
            );
        }
        budgets.insert(
            s.name.clone(),
            (u32::try_from(i % 6).expect("small"), i % 6 == 5),
        );
    }
    let budgets = Budgets(budgets);
    let now = Timestamp::from_millis(1_739_527_200_000);
    let text = metrics.render(&budgets, &events, now);
    eprintln!(
        "exposition: {} lines, {} bytes",
        text.lines().count(),
        text.len()
    );
    c.bench_function("render_100x10", |b| {
        b.iter(|| black_box(metrics.render(black_box(&budgets), &events, now)))
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = LedgerHandle::spawn(dir.path()).expect("ledger");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for s in config.services.iter().step_by(3) {
        let (name, policy) = (s.name.to_string(), s.guard.clone());
        runtime
            .block_on(ledger.call(move |l| {
                let request = RestartRequest::new(Source::Health);
                let verdict = vigil_core::decide(&policy, &[], request, now);
                l.record_verdict(&NewVerdict {
                    service: &name,
                    request,
                    verdict: &verdict,
                    at: now,
                    evidence: None,
                    tracked: false,
                })
            }))
            .expect("record");
    }
    c.bench_function("scrape_budgets_100", |b| {
        b.iter(|| black_box(runtime.block_on(metrics.budgets(&ledger, now))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
