//! The systemd test bed (`bench/nspawn-up.sh`): systemd 252 in a container, over its bus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vigil_checks::model::SystemdBus;
use vigil_checks::systemd::{Buses, JobKind};

pub fn address() -> String {
    std::env::var("VIGIL_TEST_SYSTEMD_BUS").expect("VIGIL_TEST_SYSTEMD_BUS")
}

pub fn on_bus<T>(f: impl AsyncFnOnce(vigil_checks::systemd::Bus) -> T) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let bus = Buses::default()
                .get(&SystemdBus::Address(address()))
                .await
                .expect("the test bed's bus");
            f(bus).await
        })
}

pub fn run_job(kind: JobKind, unit: &str) {
    on_bus(async |b| {
        let _ = b.reset_failed(unit).await;
        let _ = b.job(kind, unit, Duration::from_secs(30)).await;
    });
}
