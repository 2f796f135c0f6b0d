//! Broken `driver = "exec"` services: each fails at the exact `line:col` with a message
//! that says what was expected and what was seen.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;

use vigil_config::parse;

/// Lines 1-3: a valid exec service; the case's lines start at line 4.
fn exec(lines: &str) -> String {
    format!("[services.w]\ndriver = \"exec\"\ncommand = [\"/bin/sleep\", \"60\"]\n{lines}\n")
}

#[track_caller]
fn assert_only_error(src: &str, line: usize, col: usize, fragment: &str) {
    let errs = match parse(src, Path::new("vigil.toml")) {
        Ok(config) => panic!("expected errors, got {config:#?}\n--- source:\n{src}"),
        Err(e) => e,
    };
    assert!(
        errs.iter()
            .any(|e| e.line == line && e.col == col && e.message.contains(fragment)),
        "expected an error at {line}:{col} containing {fragment:?}, got:\n{errs}\n--- source:\n{src}"
    );
    assert_eq!(errs.len(), 1, "expected exactly one error, got:\n{errs}");
}

#[test]
fn a_minimal_exec_service_is_valid_with_systemd_like_defaults() {
    let config = parse(&exec(""), Path::new("vigil.toml")).unwrap();
    let vigil_config::model::DriverSpec::Exec(e) = &config.services[0].driver else {
        panic!("exec driver expected");
    };
    assert_eq!(e.restart, vigil_core::RestartPolicy::OnFailure);
    assert_eq!(e.restart_delay, std::time::Duration::from_millis(100));
    assert_eq!(e.stop_signal, vigil_core::Signal::TERM);
    assert_eq!(e.watchdog_signal, vigil_core::Signal::ABRT);
    assert_eq!(e.watchdog, None);
    assert_eq!(e.stdout, vigil_config::model::OutputTarget::Log);
}

#[test]
fn missing_command() {
    assert_only_error(
        "[services.w]\ndriver = \"exec\"\n",
        1,
        1,
        "missing required key `command` for driver \"exec\"",
    );
}

#[test]
fn command_as_a_string() {
    assert_only_error(
        "[services.w]\ndriver = \"exec\"\ncommand = \"sleep 60\"\n",
        3,
        11,
        "no shell is involved",
    );
}

#[test]
fn unknown_restart_policy_suggests() {
    assert_only_error(
        &exec("restart = \"on-falure\""),
        4,
        11,
        "unknown restart policy \"on-falure\"; did you mean \"on-failure\"?",
    );
}

#[test]
fn unknown_signal_suggests() {
    assert_only_error(
        &exec("stop_signal = \"SIGTERN\""),
        4,
        15,
        "unknown signal \"SIGTERN\"; did you mean \"SIGTERM\"?",
    );
}

#[test]
fn short_signal_names_and_numbers_are_accepted() {
    let src = exec("stop_signal = \"INT\"\nwatchdog = \"1s\"\nwatchdog_signal = 6");
    let config = parse(&src, Path::new("vigil.toml")).unwrap();
    let vigil_config::model::DriverSpec::Exec(e) = &config.services[0].driver else {
        panic!("exec driver expected");
    };
    assert_eq!(e.stop_signal, vigil_core::Signal::INT);
    assert_eq!(e.watchdog_signal, vigil_core::Signal::ABRT);
}

#[test]
fn output_path_must_be_a_file_table() {
    assert_only_error(
        &exec("stdout = \"/var/log/w.log\""),
        4,
        10,
        "write it as { file = \"/var/log/w.log\" }",
    );
}

#[test]
fn output_table_with_unknown_key() {
    assert_only_error(
        &exec("stderr = { file = \"/tmp/x\", mode = 1 }"),
        4,
        29,
        "unknown key `mode`",
    );
}

#[test]
fn success_exit_status_out_of_range() {
    assert_only_error(&exec("success_exit_status = [0, 300]"), 4, 27, "300");
}

#[test]
fn success_exit_status_bad_signal() {
    assert_only_error(
        &exec("success_exit_status = [\"SIGFOO\"]"),
        4,
        24,
        "unknown signal \"SIGFOO\"",
    );
}

#[test]
fn watchdog_signal_needs_watchdog() {
    assert_only_error(
        &exec("watchdog_signal = \"SIGKILL\""),
        4,
        1,
        "`watchdog_signal` needs `watchdog`",
    );
}

#[test]
fn zero_watchdog_is_rejected() {
    assert_only_error(&exec("watchdog = \"0s\""), 4, 12, "");
}

#[test]
fn bad_env_name() {
    assert_only_error(
        &exec("env = { \"A=B\" = \"x\" }"),
        4,
        9,
        "invalid environment variable name \"A=B\"",
    );
}

#[test]
fn env_value_must_be_a_string() {
    assert_only_error(&exec("env = { A = [1] }"), 4, 13, "expected a string");
}

#[test]
fn command_driver_keys_do_not_apply_to_exec() {
    assert_only_error(
        &exec("restart_command = [\"/bin/true\"]"),
        4,
        1,
        "unknown key `restart_command`",
    );
}

#[test]
fn unknown_ready_mode() {
    assert_only_error(&exec("ready = \"notfy\""), 4, 9, "did you mean \"notify\"?");
}
