//! The hot-path cost of raising an alert: `Alerter::notify` (routing by service and event,
//! one `Arc`, a push into each chosen channel's bounded queue), which is all a check task
//! or a restart pays.
//!
//! - `no_channels`: the daemon without `[alerts]`.
//! - `1_channel_hanging_receiver`: one webhook channel whose receiver never answers; its
//!   tasks run on a separate runtime thread, as in the daemon, draining the queue.
//! - `4_channels`: the same alert routed to four channels (three of them hanging).
//! - `queue_full`: nothing drains the queue (the channel's tasks never run): every push
//!   drops the oldest entry (the overflow path, counted and logged every 100th).
//! - `build_and_notify`: as the daemon does it, the alert built (message formatted) first.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vigil_alerts::{Alert, Alerter, Deps, NoLog, Numbers, http_client};
use vigil_config::model::AlertEvent;
use vigil_core::Timestamp;
use vigil_test_helpers::receiver::{Receiver, Script};

fn clock() -> Timestamp {
    Timestamp::from_millis(1_739_527_200_000)
}

fn deps() -> Deps {
    Deps {
        host: Arc::from("bench-host"),
        clock,
        log: Arc::new(NoLog),
        http: http_client(),
    }
}

fn alert(i: u64) -> Alert {
    Alert {
        event: AlertEvent::Failing,
        service: format!("svc-{}", i % 100),
        check: Some("health".to_owned()),
        at: clock(),
        message: "Health check FAIL: passing -> failing: GET http://127.0.0.1:8080/health: expected status 200-399, got 500 Internal Server Error".to_owned(),
        source: None,
        status: Some("failing"),
        outcome: None,
        numbers: Numbers::default(),
    }
}

fn config(channels: &[String]) -> vigil_config::Config {
    let mut toml = String::new();
    for (i, url) in channels.iter().enumerate() {
        toml.push_str(&format!(
            "[alerts.c{i}]\nkind = \"webhook\"\nurl = \"{url}\"\nrepeat = \"0\"\ngroup_wait = \"1s\"\ntimeout = \"1h\"\nretries = 1\n"
        ));
    }
    vigil_config::parse(&toml, Path::new("/tmp/bench.toml")).expect("valid bench config")
}

fn bench(c: &mut Criterion) {
    let hang = Receiver::start(Script::Hang);
    let url = hang.url("/");
    let running = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("notify");
    g.measurement_time(Duration::from_secs(3));

    let none = Alerter::none();
    let a = alert(1);
    g.bench_function("no_channels", |b| {
        b.iter(|| none.notify(black_box(a.clone())))
    });

    let one =
        running.block_on(async { Alerter::start(&config(std::slice::from_ref(&url)), deps()) });
    g.bench_function("1_channel_hanging_receiver", |b| {
        b.iter(|| one.notify(black_box(a.clone())))
    });

    let four = running.block_on(async { Alerter::start(&config(&vec![url.clone(); 4]), deps()) });
    g.bench_function("4_channels", |b| {
        b.iter(|| four.notify(black_box(a.clone())))
    });

    // A runtime that is never driven: the channel's tasks never run, the queue stays full.
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let full = {
        let _guard = idle.enter();
        Alerter::start(&config(std::slice::from_ref(&url)), deps())
    };
    g.bench_function("queue_full", |b| {
        b.iter(|| full.notify(black_box(a.clone())))
    });

    let mut i = 0u64;
    g.bench_function("build_and_notify", |b| {
        b.iter(|| {
            i += 1;
            one.notify(black_box(alert(i)))
        })
    });
    g.finish();
    drop((one, four, full));
    running.shutdown_timeout(Duration::from_millis(100));
    drop(idle);
}

criterion_group!(benches, bench);
criterion_main!(benches);
