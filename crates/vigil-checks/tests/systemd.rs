//! The `systemd` probe and the D-Bus client against a real systemd 252 (PID 1 of the
//! container that `bench/nspawn-up.sh` boots).
//!
//! Gated: runs only with `VIGIL_TEST_SYSTEMD=1`, talking to the container's system bus at
//! `$VIGIL_TEST_SYSTEMD_BUS`. Every test uses its own instance of the test bed's template
//! units (`vigil-sleep@NAME`, ...), so tests running in parallel never share a unit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

use std::time::Duration;

use vigil_checks::model::{CheckKind, SystemdBus, SystemdCheck};
use vigil_checks::systemd::{Bus, JobEnd, JobKind};
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

fn enabled() -> bool {
    if std::env::var("VIGIL_TEST_SYSTEMD").as_deref() == Ok("1") {
        true
    } else {
        println!(
            "skipped: set VIGIL_TEST_SYSTEMD=1 and VIGIL_TEST_SYSTEMD_BUS (see bench/nspawn-up.sh)"
        );
        false
    }
}

fn bus() -> SystemdBus {
    SystemdBus::Address(std::env::var("VIGIL_TEST_SYSTEMD_BUS").expect("VIGIL_TEST_SYSTEMD_BUS"))
}

fn check(unit: &str) -> CheckKind {
    CheckKind::Systemd(SystemdCheck {
        unit: unit.to_owned(),
        bus: bus(),
    })
}

async fn probe_with(cx: &ProbeContext, unit: &str) -> ProbeOutcome {
    probe(&check(unit), Duration::from_secs(10), cx).await
}

/// The test's own connection for driving units.
async fn control(cx: &ProbeContext) -> Bus {
    cx.buses()
        .get(&bus())
        .await
        .expect("connect to the test bed's bus")
}

/// Runs `method` on `unit` and waits for its job; panics unless it ends `done`.
async fn job(b: &Bus, kind: JobKind, unit: &str) {
    let out = b
        .job(kind, unit, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{} {unit}: {e}", kind.method()));
    assert_eq!(
        out.end,
        JobEnd::Removed("done".to_owned()),
        "{} {unit}: {out:?}",
        kind.method()
    );
}

/// Starts from a clean slate: stopped and not failed.
async fn fresh(b: &Bus, unit: &str) {
    job(b, JobKind::Stop, unit).await;
    let _ = b.reset_failed(unit).await;
}

/// Probes until `done` holds, at most 10s.
async fn probe_until(
    cx: &ProbeContext,
    unit: &str,
    done: impl Fn(&ProbeOutcome) -> bool,
) -> ProbeOutcome {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = probe_with(cx, unit).await;
        if done(&outcome) || tokio::time::Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn passes_while_active_and_fails_when_stopped_or_failed() {
    if !enabled() {
        return;
    }
    let cx = ProbeContext::new();
    let b = control(&cx).await;
    let unit = "vigil-sleep@check-cycle.service";
    fresh(&b, unit).await;

    let out = probe_with(&cx, unit).await;
    assert!(!out.passed, "{out:?}");
    assert!(
        out.reason
            .starts_with("unit vigil-sleep@check-cycle.service is inactive (dead)"),
        "{}",
        out.reason
    );

    job(&b, JobKind::Start, unit).await;
    let out = probe_with(&cx, unit).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason
            .starts_with("unit vigil-sleep@check-cycle.service is active (running) for "),
        "{}",
        out.reason
    );

    job(&b, JobKind::Stop, unit).await;
    let out = probe_with(&cx, unit).await;
    assert!(!out.passed, "{out:?}");

    job(&b, JobKind::Start, unit).await;
    assert!(probe_with(&cx, unit).await.passed);
    // One connection for the test's control and every probe.
    assert_eq!(cx.buses().cached(), 1);
}

#[tokio::test]
async fn a_failed_unit_says_its_result() {
    if !enabled() {
        return;
    }
    let cx = ProbeContext::new();
    let b = control(&cx).await;
    let unit = "vigil-fail@check.service";
    fresh(&b, unit).await;
    // Type=simple: the start job is done as soon as the process runs; it exits 3 next.
    job(&b, JobKind::Start, unit).await;
    let out = probe_until(&cx, unit, |o| o.reason.contains("failed")).await;
    assert!(!out.passed, "{out:?}");
    assert!(
        out.reason.starts_with(
            "unit vigil-fail@check.service is failed (Result=exit-code, NRestarts=0), since "
        ),
        "{}",
        out.reason
    );
    b.reset_failed(unit).await.unwrap();
    let out = probe_with(&cx, unit).await;
    assert!(out.reason.contains("is inactive (dead)"), "{}", out.reason);
}

#[tokio::test]
async fn a_crash_loop_reports_its_restarts() {
    if !enabled() {
        return;
    }
    let cx = ProbeContext::new();
    let b = control(&cx).await;
    let unit = "vigil-crash@check.service";
    fresh(&b, unit).await;
    job(&b, JobKind::Start, unit).await;
    // Restart=on-failure every 100ms until StartLimitBurst=3 trips.
    let out = probe_until(&cx, unit, |o| o.reason.contains("is failed")).await;
    assert!(!out.passed, "{out:?}");
    let re = regex::Regex::new(
        r"^unit vigil-crash@check\.service is failed \(Result=(exit-code|start-limit-hit), NRestarts=[1-9]\)",
    )
    .unwrap();
    assert!(re.is_match(&out.reason), "{}", out.reason);
    let _ = b.reset_failed(unit).await;
}

#[tokio::test]
async fn activating_says_for_how_long() {
    if !enabled() {
        return;
    }
    let cx = ProbeContext::new();
    let b = control(&cx).await;
    let unit = "vigil-slow@30.service";
    fresh(&b, unit).await;
    // The start job stays running for 30s: follow it for a moment only.
    let out = b
        .job(JobKind::Start, unit, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(out.end, JobEnd::DeadlineExceeded, "{out:?}");
    let probed = probe_with(&cx, unit).await;
    assert!(!probed.passed, "{probed:?}");
    let re = regex::Regex::new(
        r"^unit vigil-slow@30\.service is activating \(start-pre\) for \d+\.\ds$",
    )
    .unwrap();
    assert!(re.is_match(&probed.reason), "{}", probed.reason);
    job(&b, JobKind::Stop, unit).await;
}

#[tokio::test]
async fn a_missing_unit_is_not_loaded() {
    if !enabled() {
        return;
    }
    let cx = ProbeContext::new();
    let out = probe_with(&cx, "vigil-no-such-unit.service").await;
    assert!(!out.passed, "{out:?}");
    assert_eq!(
        out.reason,
        "unit vigil-no-such-unit.service is not loaded (not-found: Unit vigil-no-such-unit.service not found)"
    );
}

#[tokio::test]
async fn an_unreachable_bus_fails_clearly() {
    // Needs no test bed: nothing listens there.
    let cx = ProbeContext::new();
    let kind = CheckKind::Systemd(SystemdCheck {
        unit: "web.service".to_owned(),
        bus: SystemdBus::Address("unix:path=/nonexistent/vigil/bus".to_owned()),
    });
    let out = probe(&kind, Duration::from_secs(5), &cx).await;
    assert!(!out.passed);
    assert!(
        out.reason.starts_with(
            "systemd web.service on the bus at unix:path=/nonexistent/vigil/bus: cannot connect to the bus at unix:path=/nonexistent/vigil/bus: "
        ),
        "{}",
        out.reason
    );
    assert!(
        out.reason.contains("No such file or directory"),
        "{}",
        out.reason
    );
    assert_eq!(cx.buses().cached(), 0, "a failed connection is not cached");
}
