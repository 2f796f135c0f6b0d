//! The lifecycle's scenario scripts (`tests/scenarios/*.scn`), run on the pure machine.
//!
//! Each file is a script, a line `---`, and the expected trace. vigild's tests run the
//! same files through the daemon's service actor with fake drivers in simulated time and
//! expect the same trace (`crates/vigild/tests/lifecycle_actor.rs`).
//!
//! `VIGIL_BLESS=1` writes each actual trace into its file instead of comparing (for a new
//! scenario; read the trace line by line in `git diff` before committing it).

use std::path::Path;

use vigil_core::lifecycle::sim;

fn scenario(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(format!("{name}.scn"));
    let text = std::fs::read_to_string(&path).expect("read scenario");
    let (script, expected) = sim::split_scenario(&text).expect("scenario shape");
    let script = sim::parse(script).expect("script parses");
    let actual = sim::run(&script).expect("script runs");
    if std::env::var_os("VIGIL_BLESS").is_some() {
        let script_part = text.split("\n---\n").next().unwrap_or_default();
        std::fs::write(&path, format!("{script_part}\n---\n{actual}\n")).expect("bless");
        return;
    }
    if let Some(diff) = sim::diff(expected, &actual) {
        panic!("{name}: trace differs (- expected, + actual):\n{diff}");
    }
}

#[test]
fn every_scenario_file_is_run_here() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("scenarios dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".scn").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert_eq!(names, SCENARIOS, "add the new scenario to SCENARIOS");
}

const SCENARIOS: [&str; 12] = [
    "deferred_exit_remote",
    "deferred_exit_remote_recovers",
    "operator_pause",
    "operator_stop_exec",
    "operator_stop_for",
    "seed000_cooldown",
    "seed000_restart_limit",
    "seed000_retry",
    "seed002_crash_loop",
    "seed004_watchdog",
    "slow_restart_answers_health",
    "stop_is_never_interrupted",
];

#[test]
fn seed000_cooldown() {
    scenario("seed000_cooldown");
}

#[test]
fn seed000_restart_limit() {
    scenario("seed000_restart_limit");
}

#[test]
fn seed000_retry() {
    scenario("seed000_retry");
}

#[test]
fn seed002_crash_loop() {
    scenario("seed002_crash_loop");
}

#[test]
fn seed004_watchdog() {
    scenario("seed004_watchdog");
}

#[test]
fn deferred_exit_remote() {
    scenario("deferred_exit_remote");
}

#[test]
fn deferred_exit_remote_recovers() {
    scenario("deferred_exit_remote_recovers");
}

#[test]
fn slow_restart_answers_health() {
    scenario("slow_restart_answers_health");
}

#[test]
fn stop_is_never_interrupted() {
    scenario("stop_is_never_interrupted");
}

#[test]
fn operator_pause() {
    scenario("operator_pause");
}

#[test]
fn operator_stop_exec() {
    scenario("operator_stop_exec");
}

#[test]
fn operator_stop_for() {
    scenario("operator_stop_for");
}
