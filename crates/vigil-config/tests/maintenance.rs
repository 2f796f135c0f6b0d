//! `[[services.NAME.maintenance]]` and `[[groups.NAME.maintenance]]`: valid windows parse
//! into the model and round-trip through the effective configuration; each mistake is an
//! error at its exact `line:col` that names the problem.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;
use std::time::Duration;

use vigil_config::model::{MaintenanceAction, MaintenanceWindow};
use vigil_config::{Config, ConfigErrors, parse, render_effective};
use vigil_core::schedule::Schedule;

/// Lines 1-4: a command service that can be stopped. Line 5 is the window's header; the
/// case's lines start at line 6.
const HEAD: &str = "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\nstop_command = [\"/bin/stop\"]\n";

fn window(lines: &str) -> String {
    format!("{HEAD}[[services.web.maintenance]]\n{lines}\n")
}

fn config(src: &str) -> Config {
    parse(src, Path::new("vigil.toml")).unwrap_or_else(|e| panic!("{e}\n--- source:\n{src}"))
}

fn errors(src: &str) -> ConfigErrors {
    match parse(src, Path::new("vigil.toml")) {
        Ok(config) => panic!("expected errors, got a config: {config:#?}\n--- source:\n{src}"),
        Err(e) => e,
    }
}

/// The only error, as `file:line:col: key.path: message`.
#[track_caller]
fn only_error(src: &str) -> String {
    let errs = errors(src);
    assert_eq!(errs.len(), 1, "expected exactly one error, got:\n{errs}");
    errs.to_string()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---- valid windows ----

#[test]
fn cron_and_every_windows_parse_into_the_model() {
    let src = window(
        "cron = \"30 2 * * 1-5\"\ntimezone = \"Europe/Berlin\"\nduration = \"45m\"\naction = \"stop\"\n\
         [[services.web.maintenance]]\nevery = \"12h\"\nduration = \"10m\"\n\
         [[services.web.maintenance]]\ncron = \"15 0 4 * * *\"\nduration = \"90s\"\naction = \"pause\"",
    );
    let config = config(&src);
    let berlin = jiff::tz::db().get("Europe/Berlin").unwrap();
    assert_eq!(
        config.services[0].maintenance,
        vec![
            MaintenanceWindow {
                schedule: Schedule::cron("30 2 * * 1-5", berlin, "Europe/Berlin").unwrap(),
                duration: secs(45 * 60),
                action: MaintenanceAction::Stop,
            },
            MaintenanceWindow {
                schedule: Schedule::every(secs(12 * 3600)).unwrap(),
                duration: secs(10 * 60),
                // The default.
                action: MaintenanceAction::Pause,
            },
            MaintenanceWindow {
                // Six fields: a leading seconds field; the time zone defaults to UTC.
                schedule: Schedule::cron("15 0 4 * * *", jiff::tz::TimeZone::UTC, "UTC").unwrap(),
                duration: secs(90),
                action: MaintenanceAction::Pause,
            },
        ]
    );
    assert_eq!(MaintenanceAction::Pause.as_str(), "pause");
    assert_eq!(MaintenanceAction::Stop.as_str(), "stop");
}

#[test]
fn a_service_without_windows_has_none() {
    assert!(config(HEAD).services[0].maintenance.is_empty());
}

#[test]
fn stop_windows_work_for_drivers_that_can_always_stop() {
    for driver in [
        "driver = \"docker\"\ncontainer = \"web\"",
        "driver = \"systemd\"\nunit = \"web.service\"",
        "driver = \"exec\"\ncommand = [\"/bin/web\"]",
    ] {
        let src = format!(
            "[services.web]\n{driver}\n[[services.web.maintenance]]\nevery = \"1h\"\nduration = \"1m\"\naction = \"stop\"\n"
        );
        let w = &config(&src).services[0].maintenance;
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].action, MaintenanceAction::Stop);
    }
}

/// Lines 1-10: three command services, `db` and `cache` without `stop_command`; line 11
/// opens the group.
const TWO: &str = "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\nstop_command = [\"/bin/stop\"]\n\
                   [services.db]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n\
                   [services.cache]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n";

#[test]
fn group_windows_parse_into_the_model() {
    let src = "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\nstop_command = [\"/bin/stop\"]\n\
               [services.kms]\ndriver = \"docker\"\ncontainer = \"kms\"\n\
               [groups.platform]\nmembers = [\"web\", \"kms\"]\n\
               [[groups.platform.maintenance]]\ncron = \"0 4 * * 0\"\nduration = \"2h\"\naction = \"stop\"\n\
               [[groups.platform.maintenance]]\nevery = \"1h\"\nduration = \"59m 59s\"\n";
    let config = config(src);
    assert_eq!(
        config.groups[0].maintenance,
        vec![
            MaintenanceWindow {
                schedule: Schedule::cron("0 4 * * 0", jiff::tz::TimeZone::UTC, "UTC").unwrap(),
                duration: secs(2 * 3600),
                action: MaintenanceAction::Stop,
            },
            MaintenanceWindow {
                schedule: Schedule::every(secs(3600)).unwrap(),
                duration: secs(3599),
                action: MaintenanceAction::Pause,
            },
        ]
    );
    // The group's windows are the group's, not its members'.
    assert!(config.services.iter().all(|s| s.maintenance.is_empty()));
}

#[test]
fn a_pause_window_of_a_group_needs_no_stop_command() {
    let src = format!(
        "{TWO}[groups.g]\nmembers = [\"web\", \"db\"]\n[[groups.g.maintenance]]\nevery = \"24h\"\nduration = \"1h\"\naction = \"pause\"\n"
    );
    assert_eq!(config(&src).groups[0].maintenance.len(), 1);
}

#[test]
fn windows_round_trip_through_the_effective_config() {
    let src = "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\nstop_command = [\"/bin/stop\"]\n\
               [[services.web.maintenance]]\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\"\nduration = \"1h 30m\"\naction = \"stop\"\n\
               [[services.web.maintenance]]\nevery = \"6h\"\nduration = \"250ms\"\n\
               [groups.g]\nmembers = [\"web\"]\n\
               [[groups.g.maintenance]]\nevery = \"2h\"\nduration = \"1m\"\naction = \"stop\"\n";
    let original = config(src);
    let text = render_effective(&original);
    for line in [
        "[[services.web.maintenance]]",
        "cron = \"0 3 * * *\"",
        "timezone = \"Europe/Berlin\"",
        "duration = \"1h 30m\"",
        "action = \"stop\"",
        "every = \"6h\"",
        "duration = \"250ms\"",
        // The default is written out.
        "action = \"pause\"",
        "[[groups.g.maintenance]]",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    let again = config(&text);
    assert_eq!(again, original, "--- rendered:\n{text}");
    assert_eq!(render_effective(&again), text);
}

// ---- errors, each at its line:col ----

#[test]
fn missing_duration() {
    assert_eq!(
        only_error(&window("every = \"1h\"")),
        "vigil.toml:5:1: services.web.maintenance[0].duration: missing required key `duration` in [[services.web.maintenance]] entry #1"
    );
}

#[test]
fn zero_duration() {
    assert_eq!(
        only_error(&window("every = \"1h\"\nduration = \"0\"")),
        "vigil.toml:7:12: services.web.maintenance[0].duration: must be greater than 0"
    );
    assert_eq!(
        only_error(&window("cron = \"0 3 * * *\"\nduration = \"0s\"")),
        "vigil.toml:7:12: services.web.maintenance[0].duration: must be greater than 0"
    );
}

#[test]
fn both_cron_and_every() {
    assert_eq!(
        only_error(&window(
            "cron = \"0 3 * * *\"\nevery = \"1h\"\nduration = \"5m\""
        )),
        "vigil.toml:7:1: services.web.maintenance[0].every: set either `cron` or `every`, not both"
    );
}

#[test]
fn neither_cron_nor_every() {
    assert_eq!(
        only_error(&window("duration = \"5m\"")),
        "vigil.toml:5:1: services.web.maintenance[0]: [[services.web.maintenance]] entry #1 needs `cron` or `every`"
    );
}

#[test]
fn unknown_action_lists_the_allowed_values() {
    assert_eq!(
        only_error(&window(
            "every = \"1h\"\nduration = \"5m\"\naction = \"restart\""
        )),
        "vigil.toml:8:10: services.web.maintenance[0].action: unknown action \"restart\": expected one of \"pause\", \"stop\""
    );
    // A near miss is suggested.
    let text = only_error(&window(
        "every = \"1h\"\nduration = \"5m\"\naction = \"paus\"",
    ));
    assert!(
        text.starts_with("vigil.toml:8:10: services.web.maintenance[0].action: unknown action \"paus\"; did you mean \"pause\"?"),
        "{text}"
    );
}

#[test]
fn every_window_that_is_not_shorter_than_its_interval_overlaps() {
    assert_eq!(
        only_error(&window("every = \"1h\"\nduration = \"2h\"")),
        "vigil.toml:7:12: services.web.maintenance[0].duration: windows would overlap: duration 2h is not shorter than every 1h"
    );
    // Equal is not shorter.
    assert_eq!(
        only_error(&window("duration = \"60m\"\n  every = \"1h\"")),
        "vigil.toml:6:12: services.web.maintenance[0].duration: windows would overlap: duration 1h is not shorter than every 1h"
    );
}

#[test]
fn stop_window_on_a_command_service_without_stop_command() {
    let src = "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n\
               [[services.web.maintenance]]\nevery = \"1h\"\nduration = \"5m\"\naction = \"stop\"\n";
    assert_eq!(
        only_error(src),
        "vigil.toml:7:10: services.web.maintenance[0].action: a stop window needs `stop_command`, and `web` (driver = \"command\") has none; add it, or use action = \"pause\""
    );
    // Every stop window is reported, even one that is invalid for another reason too.
    let src = src.replace("duration = \"5m\"", "duration = \"2h\"");
    let errs = errors(&format!(
        "{src}[[services.web.maintenance]]\ncron = \"0 1 * * *\"\nduration = \"1m\"\naction = \"stop\"\n"
    ));
    let at: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(at, [(6, 12), (7, 10), (11, 10)], "{errs}");
}

#[test]
fn stop_window_of_a_group_with_a_command_member_without_stop_command() {
    let src = format!(
        "{TWO}[groups.g]\nmembers = [\"web\", \"db\"]\n[[groups.g.maintenance]]\nevery = \"24h\"\nduration = \"1h\"\naction = \"stop\"\n"
    );
    assert_eq!(
        only_error(&src),
        "vigil.toml:16:10: groups.g.maintenance[0].action: a stop window needs `stop_command`, and member `db` (driver = \"command\") has none; add it, or use action = \"pause\""
    );
    let src = src.replace("[\"web\", \"db\"]", "[\"cache\", \"web\", \"db\"]");
    let text = only_error(&src);
    assert!(
        text.ends_with(
            "a stop window needs `stop_command`, and members `cache`, `db` (driver = \"command\") have none; add it, or use action = \"pause\""
        ),
        "{text}"
    );
}

#[test]
fn group_window_errors_are_indexed_and_located() {
    let src = format!(
        "{TWO}[groups.g]\nmembers = [\"web\"]\n\
         [[groups.g.maintenance]]\nevery = \"1h\"\nduration = \"5m\"\n\
         [[groups.g.maintenance]]\nevery = \"30m\"\nduration = \"30m\"\n"
    );
    assert_eq!(
        only_error(&src),
        "vigil.toml:18:12: groups.g.maintenance[1].duration: windows would overlap: duration 30m is not shorter than every 30m"
    );
    let src = format!(
        "{TWO}[groups.g]\nmembers = [\"web\"]\n[[groups.g.maintenance]]\nduration = \"5m\"\n"
    );
    assert_eq!(
        only_error(&src),
        "vigil.toml:13:1: groups.g.maintenance[0]: [[groups.g.maintenance]] entry #1 needs `cron` or `every`"
    );
}

#[test]
fn schedule_keys_are_read_as_for_schedules() {
    assert_eq!(
        only_error(&window(
            "every = \"6h\"\ntimezone = \"UTC\"\nduration = \"5m\""
        )),
        "vigil.toml:7:1: services.web.maintenance[0].timezone: `timezone` applies only to `cron` schedules"
    );
    let text = only_error(&window("cron = \"61 * * * *\"\nduration = \"5m\""));
    assert!(
        text.starts_with(
            "vigil.toml:6:8: services.web.maintenance[0].cron: invalid cron expression `61 * * * *`"
        ),
        "{text}"
    );
    let text = only_error(&window(
        "cron = \"0 8 * * *\"\ntimezone = \"Europe/Berln\"\nduration = \"5m\"",
    ));
    assert!(
        text.contains("7:12") && text.contains("did you mean \"Europe/Berlin\"?"),
        "{text}"
    );
}

#[test]
fn unknown_key_in_a_window_is_suggested() {
    assert_eq!(
        only_error(&window(
            "every = \"1h\"\nduration = \"5m\"\nacton = \"stop\""
        )),
        "vigil.toml:8:1: services.web.maintenance[0].acton: unknown key `acton` in [[services.web.maintenance]] entry #1; did you mean `action`?"
    );
}

#[test]
fn maintenance_written_as_a_single_table() {
    let src = format!("{HEAD}[services.web.maintenance]\nevery = \"1h\"\nduration = \"5m\"\n");
    let text = only_error(&src);
    assert!(
        text.starts_with("vigil.toml:5:1: services.web.maintenance: expected an array of tables (write [[services.web.maintenance]] with two brackets), found a table"),
        "{text}"
    );
}
