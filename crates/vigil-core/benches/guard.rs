//! `decide` over a long, unpruned ledger: 1,000 restarts, part of them still in the window.
//!
//! The guard runs under the service's restart lock, so its cost is latency on every
//! restart request; the target is well under a microsecond.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vigil_core::backoff::BackoffPolicy;
use vigil_core::{GuardPolicy, RestartRecord, RestartRequest, Source, Timestamp, decide};

const NOW_MS: i64 = 1_739_527_200_000;

/// `n` restarts `spacing` apart, the last one `before_now` ago, ascending (the ledger's
/// order). With 1,000 restarts 7.2s apart, half lie in a 1h window, half have expired.
fn history(n: usize, spacing: Duration, before_now: Duration) -> Vec<RestartRecord> {
    let last = Timestamp::from_millis(NOW_MS).saturating_sub(before_now);
    (0..n)
        .rev()
        .map(|i| RestartRecord {
            at: last.saturating_sub(spacing * u32::try_from(i).expect("small")),
            source: Source::ALL[i % Source::ALL.len()],
            forced: i % 17 == 0,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let now = Timestamp::from_millis(NOW_MS);
    let request = RestartRequest::new(Source::Health);
    let mixed = history(1000, Duration::from_millis(7200), Duration::from_secs(300));
    // A budget large enough that the request reaches the cooldown and backoff steps.
    let roomy = GuardPolicy {
        max_restarts: 10_000,
        ..GuardPolicy::default()
    };
    let with_backoff = GuardPolicy {
        backoff: Some(BackoffPolicy {
            initial: Duration::from_secs(10),
            factor: 2.0,
            max: Duration::from_secs(3600),
            reset: Duration::from_secs(600),
        }),
        ..roomy.clone()
    };

    // Realistic for a flapping service: bursts of three restarts a minute apart, a quiet
    // 20 minutes between bursts (longer than `reset`, so streaks stay short).
    let bursty: Vec<RestartRecord> = (0..1000i64)
        .rev()
        .map(|i| RestartRecord {
            at: Timestamp::from_millis(NOW_MS - 300_000 - (i / 3) * 1_320_000 - (i % 3) * 60_000),
            source: Source::Exit,
            forced: false,
        })
        .collect();

    let mut group = c.benchmark_group("decide_1000");
    group.bench_function("no_backoff", |b| {
        b.iter(|| {
            decide(
                black_box(&roomy),
                black_box(&mixed),
                request,
                black_box(now),
            )
        })
    });
    group.bench_function("backoff", |b| {
        b.iter(|| {
            decide(
                black_box(&with_backoff),
                black_box(&bursty),
                request,
                black_box(now),
            )
        })
    });
    // Worst case: every restart followed the previous within `reset`, so the streak walks
    // all 1,000.
    group.bench_function("backoff_full_streak", |b| {
        b.iter(|| {
            decide(
                black_box(&with_backoff),
                black_box(&mixed),
                request,
                black_box(now),
            )
        })
    });
    // The default budget with 5 restarts in the window and 995 expired ones: denied.
    let mostly_expired = {
        let mut h = history(995, Duration::from_secs(60), Duration::from_secs(7200));
        h.extend(history(
            5,
            Duration::from_secs(600),
            Duration::from_secs(300),
        ));
        h
    };
    let default = GuardPolicy::default();
    group.bench_function("limit_denied", |b| {
        b.iter(|| {
            decide(
                black_box(&default),
                black_box(&mostly_expired),
                request,
                black_box(now),
            )
        })
    });
    // Out of order history: correct, but backoff then sorts a copy.
    let mut shuffled = mixed.clone();
    shuffled.swap(10, 900);
    group.bench_function("backoff_unsorted", |b| {
        b.iter(|| {
            decide(
                black_box(&with_backoff),
                black_box(&shuffled),
                request,
                black_box(now),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
