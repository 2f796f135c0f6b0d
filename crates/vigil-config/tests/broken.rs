//! Broken configurations: each must fail with an error at the exact `line:col` and a
//! message that says what was expected and what was seen.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;

use vigil_config::{ConfigErrors, parse};

/// Lines 1-3: a valid service. Checks and schedules in the cases start at line 4.
const HEAD: &str = "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n";

/// Lines 1-7: a valid service with a valid tcp check; the case's line is line 8.
fn tcp_check(line: &str) -> String {
    format!(
        "{HEAD}[services.web.checks.health]\nkind = \"tcp\"\nhost = \"localhost\"\nport = 8080\n{line}\n"
    )
}

/// Lines 1-6: a valid service with an http check; the case's line is line 7.
fn http_check(line: &str) -> String {
    format!(
        "{HEAD}[services.web.checks.health]\nkind = \"http\"\nurl = \"http://localhost:8080/health\"\n{line}\n"
    )
}

/// Lines 1-5: a valid service and a check of `kind`; the case's lines start at line 6.
fn kind_check(kind: &str, lines: &str) -> String {
    format!("{HEAD}[services.web.checks.c]\nkind = \"{kind}\"\n{lines}\n")
}

/// Lines 1-4: a valid service and a schedule entry header; the case's lines start at 5.
fn schedule(lines: &str) -> String {
    format!("{HEAD}[[services.web.schedule]]\n{lines}\n")
}

fn errors(src: &str) -> ConfigErrors {
    match parse(src, Path::new("vigil.toml")) {
        Ok(config) => panic!("expected errors, got a config: {config:#?}\n--- source:\n{src}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_error(src: &str, line: usize, col: usize, fragment: &str) {
    let errs = errors(src);
    assert!(
        errs.iter()
            .any(|e| e.line == line && e.col == col && e.message.contains(fragment)),
        "expected an error at {line}:{col} containing {fragment:?}, got:\n{errs}\n--- source:\n{src}"
    );
}

/// Like [`assert_error`], and it is the only error.
#[track_caller]
fn assert_only_error(src: &str, line: usize, col: usize, fragment: &str) {
    assert_error(src, line, col, fragment);
    let errs = errors(src);
    assert_eq!(errs.len(), 1, "expected exactly one error, got:\n{errs}");
}

// ---- typos in keys, at every level, with suggestions ----

#[test]
fn typo_in_top_level_table() {
    assert_only_error(
        "[service.web]\ndriver = \"command\"\n",
        1,
        2,
        "unknown key `service` at the top level; did you mean `services`?",
    );
}

#[test]
fn typo_in_vigil() {
    assert_only_error(
        "[vigil]\nlog_levl = \"info\"\n",
        2,
        1,
        "unknown key `log_levl` in [vigil]; did you mean `log_level`?",
    );
}

#[test]
fn typo_in_defaults_table_name() {
    assert_only_error(
        "[defaults.gaurd]\ncooldown = \"1m\"\n",
        1,
        11,
        "unknown key `gaurd` in [defaults]; did you mean `guard`?",
    );
}

#[test]
fn typo_in_defaults_guard() {
    assert_only_error(
        "[defaults.guard]\ncooldwn = \"1m\"\n",
        2,
        1,
        "unknown key `cooldwn` in [defaults.guard]; did you mean `cooldown`?",
    );
}

#[test]
fn typo_in_backoff() {
    assert_only_error(
        "[defaults.guard.backoff]\ninitial = \"1s\"\nmax = \"1m\"\nfactr = 2\n",
        4,
        1,
        "did you mean `factor`?",
    );
}

#[test]
fn typo_in_service_key_also_reports_the_missing_key() {
    let src = "[services.web]\ndriver = \"command\"\nrestart_comand = [\"/bin/true\"]\n";
    assert_error(
        src,
        3,
        1,
        "unknown key `restart_comand` in [services.web]; did you mean `restart_command`?",
    );
    assert_error(
        src,
        1,
        1,
        "missing required key `restart_command` for driver \"command\"",
    );
    assert_eq!(errors(src).len(), 2);
}

#[test]
fn typo_in_check() {
    assert_only_error(
        &tcp_check("evry = \"5s\""),
        8,
        1,
        "unknown key `evry` in [services.web.checks.health]; did you mean `every`?",
    );
}

#[test]
fn typo_in_service_guard() {
    let src = format!("{HEAD}[services.web.guard]\nmax_restart = 3\n");
    assert_only_error(&src, 5, 1, "did you mean `max_restarts`?");
}

#[test]
fn typo_in_schedule_entry() {
    let src = schedule("corn = \"0 * * * *\"");
    assert_error(&src, 5, 1, "did you mean `cron`?");
    assert_error(&src, 4, 1, "needs `cron` or `every`");
}

#[test]
fn typo_in_on_failure_table() {
    let src = tcp_check("on_failure = { exe = [\"/usr/local/bin/repair\"] }");
    assert_error(&src, 8, 16, "did you mean `exec`?");
    assert_error(&src, 8, 14, "missing required key `exec`");
}

#[test]
fn key_of_another_check_kind() {
    assert_only_error(
        &tcp_check("url = \"http://localhost\""),
        8,
        1,
        "key `url` does not apply to check kind \"tcp\" (it belongs to kind \"http\", \"websocket\")",
    );
}

#[test]
fn check_key_written_in_the_service_table() {
    let src = format!("{HEAD}every = \"5s\"\n");
    assert_only_error(
        &src,
        4,
        1,
        "`every` is a check key; put it in [services.web.checks.NAME]",
    );
}

#[test]
fn log_needs_exactly_one_source() {
    assert_only_error(
        &kind_check("log", "pattern = \"error\""),
        4,
        1,
        "[services.web.checks.c] needs `path` or `journal_unit` for kind log",
    );
    assert_only_error(
        &kind_check(
            "log",
            "path = \"/var/log/x\"\njournal_unit = \"web.service\"\npattern = \"e\"",
        ),
        7,
        1,
        "set either `path` or `journal_unit`, not both",
    );
    assert_only_error(
        &kind_check(
            "log",
            "path = \"/var/log/x\"\njournal_directory = \"/j\"\npattern = \"e\"",
        ),
        7,
        1,
        "`journal_directory` applies only with `journal_unit`",
    );
}

#[test]
fn log_journal_unit_names() {
    assert_only_error(
        &kind_check("log", "journal_unit = \"web.sevice\"\npattern = \"e\""),
        6,
        16,
        "unknown unit type `.sevice` in \"web.sevice\": expected one of .service, .socket, .device, .mount, .automount, .swap, .target, .path, .timer, .slice, .scope",
    );
    assert_only_error(
        &kind_check("log", "journal_unit = \"web service\"\npattern = \"e\""),
        6,
        16,
        "\"web service\" is not a unit name (letters, digits and `:-_.\\@`, like `web.service`)",
    );
}

// ---- wrong types ----

#[test]
fn integer_given_as_string() {
    assert_only_error(
        "[defaults.guard]\nmax_restarts = \"5\"\n",
        2,
        16,
        "expected an integer, found a string \"5\"",
    );
}

#[test]
fn integer_is_not_a_duration() {
    assert_only_error(
        "[defaults.guard]\ncooldown = 120\n",
        2,
        12,
        "expected a duration string like \"30s\", found integer 120",
    );
}

#[test]
fn boolean_given_as_string() {
    assert_only_error(
        &http_check("insecure = \"yes\""),
        7,
        12,
        "expected a boolean",
    );
}

#[test]
fn argv_given_as_string() {
    let src =
        "[services.web]\ndriver = \"command\"\nrestart_command = \"/bin/systemctl restart web\"\n";
    assert_only_error(src, 3, 19, "expected a command as an array of strings");
}

#[test]
fn argv_element_not_a_string() {
    let src = "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/kill\", 15]\n";
    let errs = errors(src);
    assert_eq!(errs.0[0].key_path, "services.web.restart_command[1]");
    assert_only_error(src, 3, 33, "expected a string, found integer 15");
}

#[test]
fn service_is_not_a_table() {
    assert_only_error(
        "[services]\nweb = \"command\"\n",
        2,
        7,
        "expected a table, found a string",
    );
}

#[test]
fn header_value_not_a_string() {
    assert_only_error(
        &http_check("headers = { X-Retries = 3 }"),
        7,
        25,
        "expected a string, found integer 3",
    );
}

// ---- bad values ----

#[test]
fn bad_duration() {
    assert_only_error(
        &tcp_check("every = \"five minutes\""),
        8,
        9,
        "invalid duration \"five minutes\": expected e.g. \"30s\", \"5m\", \"1h 30m\"",
    );
}

#[test]
fn negative_duration() {
    assert_only_error(
        "[defaults.guard]\ncooldown = \"-5s\"\n",
        2,
        12,
        "must not be negative",
    );
}

#[test]
fn zero_window() {
    assert_only_error(
        "[defaults.guard]\nwindow = \"0s\"\n",
        2,
        10,
        "must be greater than 0",
    );
}

#[test]
fn bad_size() {
    assert_only_error(
        &http_check("max_body = \"1 megabyte\""),
        7,
        12,
        "invalid size \"1 megabyte\"",
    );
}

#[test]
fn empty_argv() {
    let src = "[services.web]\ndriver = \"command\"\nrestart_command = []\n";
    assert_only_error(src, 3, 19, "empty command");
}

#[test]
fn empty_program() {
    let src = format!("{HEAD}start_command = [\"\", \"x\"]\n");
    assert_only_error(&src, 4, 18, "the program (first element) must not be empty");
}

#[test]
fn bad_regex() {
    assert_only_error(
        &http_check("body_regex = \"(unclosed\""),
        7,
        14,
        "invalid regex \"(unclosed\": unclosed group",
    );
}

#[test]
fn bad_url_without_scheme() {
    let src = format!(
        "{HEAD}[services.web.checks.health]\nkind = \"http\"\nurl = \"localhost:8080/health\"\n"
    );
    assert_only_error(
        &src,
        6,
        7,
        "invalid URL \"localhost:8080/health\": must be an absolute http:// or https:// URL with a host",
    );
}

#[test]
fn bad_url_without_host() {
    let src =
        format!("{HEAD}[services.web.checks.health]\nkind = \"http\"\nurl = \"https:///health\"\n");
    assert_only_error(&src, 6, 7, "with a host");
}

#[test]
fn bad_http_method() {
    assert_only_error(
        &http_check("method = \"FETCH\""),
        7,
        10,
        "unknown HTTP method \"FETCH\"",
    );
}

#[test]
fn port_zero() {
    let src =
        format!("{HEAD}[services.web.checks.health]\nkind = \"tcp\"\nhost = \"db\"\nport = 0\n");
    assert_only_error(&src, 7, 8, "0 is out of range: expected 1..=65535");
}

#[test]
fn port_too_large() {
    let src = format!("{HEAD}[services.web.checks.health]\nkind = \"listening\"\nport = 70000\n");
    assert_only_error(&src, 6, 8, "70000 is out of range: expected 1..=65535");
}

#[test]
fn status_range_reversed() {
    assert_only_error(
        &http_check("expect_status = \"399-200\""),
        7,
        17,
        "invalid status range \"399-200\": the start must not be greater than the end",
    );
}

#[test]
fn status_code_out_of_range() {
    assert_only_error(
        &http_check("expect_status = [200, 600]"),
        7,
        23,
        "status code 600 is out of range: expected 100..=599",
    );
}

#[test]
fn status_range_garbage() {
    assert_only_error(
        &http_check("expect_status = \"2xx\""),
        7,
        17,
        "invalid status range \"2xx\"",
    );
}

#[test]
fn bad_listening_address() {
    let src = format!(
        "{HEAD}[services.web.checks.health]\nkind = \"listening\"\nport = 80\naddress = \"localhost\"\n"
    );
    assert_only_error(&src, 7, 11, "invalid IP address \"localhost\"");
}

#[test]
fn expect_exit_out_of_range() {
    let src = format!(
        "{HEAD}[services.web.checks.health]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\nexpect_exit = 256\n"
    );
    assert_only_error(&src, 7, 15, "256 is out of range: expected 0..=255");
}

#[test]
fn failure_threshold_zero() {
    assert_only_error(
        &tcp_check("failure_threshold = 0"),
        8,
        21,
        "must be at least 1, found 0",
    );
}

#[test]
fn retries_zero() {
    assert_only_error(
        &tcp_check("retries = 0"),
        8,
        11,
        "must be at least 1, found 0",
    );
}

#[test]
fn backoff_max_below_initial() {
    assert_only_error(
        "[defaults.guard.backoff]\ninitial = \"5m\"\nmax = \"1m\"\n",
        3,
        7,
        "must be at least `initial` (300s), found 60s",
    );
}

#[test]
fn backoff_factor_below_one() {
    assert_only_error(
        "[defaults.guard]\nbackoff = { initial = \"1s\", max = \"1m\", factor = 0.5 }\n",
        2,
        50,
        "must be a finite number of at least 1.0, found 0.5",
    );
}

#[test]
fn backoff_missing_initial() {
    assert_only_error(
        "[defaults.guard]\nbackoff = { max = \"1m\" }\n",
        2,
        11,
        "missing required key `initial` in [defaults.guard.backoff]",
    );
}

// ---- enumerations ----

#[test]
fn unknown_check_kind_with_suggestion() {
    let src = format!("{HEAD}[services.web.checks.health]\nkind = \"htp\"\n");
    assert_only_error(
        &src,
        5,
        8,
        "unknown check kind \"htp\"; did you mean \"http\"?",
    );
}

#[test]
fn systemd_check_needs_a_unit() {
    let src = format!("{HEAD}[services.web.checks.d]\nkind = \"systemd\"\n");
    assert_only_error(
        &src,
        4,
        1,
        "missing required key `unit` for kind \"systemd\" in [services.web.checks.d]",
    );
}

#[test]
fn systemd_unit_name_is_checked() {
    let src = format!("{HEAD}[services.web.checks.d]\nkind = \"systemd\"\nunit = \"web server\"\n");
    assert_only_error(
        &src,
        6,
        8,
        "invalid unit name \"web server\": a unit name is letters, digits and ':', '_', '.', '\\', '@', '-'",
    );
}

#[test]
fn systemd_bus_address_must_be_a_unix_socket() {
    let src = format!(
        "{HEAD}[services.web.checks.d]\nkind = \"systemd\"\nunit = \"web\"\nbus_address = \"tcp:host=localhost,port=1\"\n"
    );
    assert_only_error(
        &src,
        7,
        15,
        "invalid bus_address \"tcp:host=localhost,port=1\": only unix sockets are supported: `unix:path=/run/dbus/system_bus_socket`",
    );
    let src = format!(
        "{HEAD}[services.web.checks.d]\nkind = \"systemd\"\nunit = \"web\"\nbus = \"session\"\n"
    );
    assert_only_error(&src, 7, 7, "\"session\"");
}

#[test]
fn docker_check_needs_a_container() {
    let src = format!("{HEAD}[services.web.checks.d]\nkind = \"docker\"\n");
    assert_only_error(
        &src,
        4,
        1,
        "missing required key `container` for kind \"docker\" in [services.web.checks.d]",
    );
}

#[test]
fn docker_host_must_be_a_unix_socket() {
    let src = format!(
        "{HEAD}[services.web.checks.d]\nkind = \"docker\"\ncontainer = \"kms\"\ndocker_host = \"tcp://127.0.0.1:2375\"\n"
    );
    assert_only_error(
        &src,
        7,
        15,
        "invalid docker_host \"tcp://127.0.0.1:2375\": only unix sockets are supported (`unix:///path`); tcp:// and ssh:// are not",
    );
    let src = format!(
        "{HEAD}[services.web.checks.d]\nkind = \"docker\"\ncontainer = \"kms\"\ndocker_host = \"unix://docker.sock\"\n"
    );
    assert_only_error(
        &src,
        7,
        15,
        "invalid docker_host \"unix://docker.sock\": needs an absolute socket path: `unix:///var/run/docker.sock`",
    );
}

#[test]
fn docker_container_name_is_checked() {
    let src = format!(
        "{HEAD}[services.web.checks.d]\nkind = \"docker\"\ncontainer = \"kms production\"\n"
    );
    assert_only_error(
        &src,
        6,
        13,
        "invalid container name \"kms production\": a name or id is letters, digits, '_', '.' and '-', starting with a letter or digit",
    );
}

#[test]
fn missing_check_kind() {
    let src = format!("{HEAD}[services.web.checks.health]\nevery = \"5s\"\n");
    assert_only_error(
        &src,
        4,
        1,
        "missing required key `kind` in [services.web.checks.health]",
    );
}

#[test]
fn unknown_driver_with_suggestion() {
    assert_only_error(
        "[services.web]\ndriver = \"comand\"\n",
        2,
        10,
        "unknown driver \"comand\"; did you mean \"command\"?",
    );
}

#[test]
fn systemd_driver_needs_a_unit() {
    assert_only_error(
        "[services.web]\ndriver = \"systemd\"\n",
        1,
        1,
        "missing required key `unit`",
    );
}

#[test]
fn systemd_driver_keys_are_checked() {
    assert_only_error(
        "[services.web]\ndriver = \"systemd\"\nunit = \"web\"\njob_timeout = \"0s\"\n",
        4,
        15,
        "must be greater than 0",
    );
    assert_only_error(
        "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\nreset_failed = true\n",
        4,
        1,
        "unknown key `reset_failed` in [services.web]: it belongs to driver \"systemd\"",
    );
}

#[test]
fn missing_driver() {
    assert_only_error(
        "[services.web]\nrestart_command = [\"/bin/true\"]\n",
        1,
        1,
        "missing required key `driver` in [services.web]",
    );
}

#[test]
fn missing_restart_command() {
    assert_only_error(
        "[vigil]\n\n[services.cam]\ndriver = \"command\"\nstop_command = [\"/bin/false\"]\n",
        3,
        1,
        "missing required key `restart_command` for driver \"command\"",
    );
}

#[test]
fn bad_on_failure_word() {
    assert_only_error(
        &tcp_check("on_failure = \"reboot\""),
        8,
        14,
        "unknown on_failure \"reboot\": expected one of \"restart\", \"alert\"",
    );
}

#[test]
fn bad_on_failure_type() {
    assert_only_error(
        &tcp_check("on_failure = 1"),
        8,
        14,
        "expected \"restart\", \"alert\", \"restart-group\" or a table like { exec = [\"/path/to/repair\"] }, found integer 1",
    );
}

#[test]
fn bad_severity() {
    assert_only_error(
        &tcp_check("severity = \"warn\""),
        8,
        12,
        "unknown severity \"warn\"; did you mean \"warning\"?",
    );
}

#[test]
fn bad_log_format() {
    assert_only_error(
        "[vigil]\nlog_format = \"xml\"\n",
        2,
        14,
        "unknown log_format \"xml\": expected one of \"human\", \"json\"",
    );
}

#[test]
fn invalid_service_name() {
    assert_only_error(
        "[services.\"my web\"]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n",
        1,
        11,
        "invalid service name \"my web\"",
    );
}

#[test]
fn invalid_check_name() {
    let src =
        format!("{HEAD}[services.web.checks._health]\nkind = \"tcp\"\nhost = \"a\"\nport = 1\n");
    assert_only_error(&src, 4, 22, "invalid check name \"_health\"");
}

// ---- schedules ----

#[test]
fn invalid_cron_five_fields() {
    assert_only_error(
        &schedule("cron = \"61 * * * *\""),
        5,
        8,
        "invalid cron expression `61 * * * *`",
    );
}

#[test]
fn invalid_cron_six_fields() {
    assert_only_error(
        &schedule("cron = \"0 0 25 * * *\""),
        5,
        8,
        "invalid cron expression `0 0 25 * * *`",
    );
}

#[test]
fn cron_that_never_fires_is_an_error_at_its_value() {
    assert_only_error(
        &schedule("cron = \",,, * * * *\""),
        5,
        8,
        "invalid cron expression `,,, * * * *`: never fires: the minute field `,,,` names no minute",
    );
    assert_only_error(
        &schedule("cron = \",,, * * * * *\""),
        5,
        8,
        "never fires: the second field `,,,` names no second",
    );
    assert_only_error(
        &schedule("timezone = \"UTC\"\n  cron = \"0 0 31 2 *\""),
        6,
        10,
        "invalid cron expression `0 0 31 2 *`: never fires: day 31 does not occur in February",
    );
    let errs = errors(&schedule("cron = \"0 0 30 2 *\""));
    assert_eq!(
        errs.to_string(),
        "vigil.toml:5:8: services.web.schedule[0].cron: invalid cron expression `0 0 30 2 *`: never fires: day 30 does not occur in February"
    );
}

#[test]
fn invalid_cron_field_count() {
    assert_only_error(&schedule("cron = \"* * *\""), 5, 8, "expected 5 fields");
}

#[test]
fn bad_timezone() {
    assert_only_error(
        &schedule("cron = \"0 8 * * *\"\ntimezone = \"Mars/Olympus_Mons\""),
        6,
        12,
        "unknown time zone \"Mars/Olympus_Mons\"",
    );
}

#[test]
fn timezone_typo_is_suggested() {
    assert_only_error(
        &schedule("cron = \"0 8 * * *\"\ntimezone = \"Europe/Berln\""),
        6,
        12,
        "did you mean \"Europe/Berlin\"?",
    );
}

#[test]
fn both_cron_and_every() {
    assert_only_error(
        &schedule("cron = \"0 * * * *\"\nevery = \"1h\""),
        6,
        1,
        "set either `cron` or `every`, not both",
    );
}

#[test]
fn neither_cron_nor_every() {
    assert_only_error(
        &schedule("timezone = \"UTC\""),
        4,
        1,
        "[[services.web.schedule]] entry #1 needs `cron` or `every`",
    );
}

#[test]
fn timezone_with_every() {
    assert_only_error(
        &schedule("every = \"6h\"\ntimezone = \"UTC\""),
        6,
        1,
        "`timezone` applies only to `cron` schedules",
    );
}

#[test]
fn schedule_written_as_a_single_table() {
    let src = format!("{HEAD}[services.web.schedule]\ncron = \"0 * * * *\"\n");
    assert_only_error(
        &src,
        4,
        1,
        "expected an array of tables (write [[services.web.schedule]]",
    );
}

#[test]
fn second_schedule_entry_is_indexed() {
    let src = schedule("every = \"1h\"\n[[services.web.schedule]]\nevery = 5");
    let errs = errors(&src);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs.0[0].key_path, "services.web.schedule[1].every");
    assert_error(&src, 7, 9, "found integer 5");
}

// ---- TOML syntax, duplicates ----

#[test]
fn duplicate_service() {
    let src = format!("{HEAD}\n[services.web]\ndriver = \"command\"\n");
    assert_only_error(
        &src,
        5,
        11,
        "duplicate table [services.web]: it is already defined on line 1",
    );
}

#[test]
fn duplicate_check_table() {
    let src = tcp_check("\n[services.web.checks.health]\nkind = \"tcp\"");
    assert_only_error(
        &src,
        9,
        22,
        "duplicate table [services.web.checks.health]: it is already defined on line 4",
    );
}

#[test]
fn duplicate_key() {
    let src = format!("{HEAD}driver = \"command\"\n");
    assert_only_error(&src, 4, 1, "duplicate key `driver`");
}

#[test]
fn a_header_with_99_dotted_parts_is_reported_at_its_own_position() {
    // toml reports its nesting limit without a position; this used to be `vigil.toml:1:1`.
    let deep = vec!["a"; 99].join(".");
    assert_only_error(
        &format!("{HEAD}\n[{deep}]\nx = 1\n"),
        5,
        2,
        "invalid TOML: this key has 99 dotted parts; at most 80 are supported",
    );
    assert_only_error(
        &format!("{HEAD}[services.web.checks.c]\n  {deep} = 1\n"),
        5,
        3,
        "this key has 99 dotted parts",
    );
}

#[test]
fn unclosed_string() {
    let src = "[vigil]\nlog_level = \"info\n";
    let errs = errors(src);
    assert!(errs.iter().all(|e| e.key_path.is_empty()), "{errs}");
    assert_error(src, 2, 18, "invalid TOML: invalid basic string");
}

#[test]
fn unreadable_file() {
    let errs = vigil_config::load(Path::new("/nonexistent/vigil.toml")).unwrap_err();
    assert_eq!(errs.len(), 1);
    let text = errs.to_string();
    assert!(
        text.starts_with("/nonexistent/vigil.toml: cannot read /nonexistent/vigil.toml: "),
        "{text}"
    );
    assert!(text.contains("No such file or directory"), "{text}");
}

#[test]
fn error_display_is_file_line_col_key_message() {
    let errs = errors("[defaults.guard]\ncooldown = 120\n");
    assert_eq!(
        errs.to_string(),
        "vigil.toml:2:12: defaults.guard.cooldown: expected a duration string like \"30s\", found integer 120 (write \"120s\" for seconds)"
    );
}

#[test]
fn integer_too_large_for_a_count() {
    assert_only_error(
        "[defaults.guard]\nmax_restarts = 99999999999999999999\n",
        2,
        16,
        "integer 99999999999999999999 is too large: at most 4294967295",
    );
}

#[test]
fn file_that_is_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, b"[vigil]\nlog_level = \"\xff\"\n").unwrap();
    let errs = vigil_config::load(&path).unwrap_err();
    assert_eq!(errs.len(), 1);
    let e = &errs.0[0];
    assert_eq!((e.line, e.col), (2, 14));
    assert!(e.message.contains("not valid UTF-8"), "{e}");
}

// ---- the kinds of the check catalogue ----

#[test]
fn proxy_with_unsupported_scheme() {
    assert_only_error(
        &http_check("proxy = \"https://127.0.0.1:1080\""),
        7,
        9,
        "invalid proxy URL \"https://127.0.0.1:1080\": unsupported scheme \"https\"",
    );
}

#[test]
fn proxy_scheme_typo_is_suggested() {
    assert_only_error(
        &http_check("proxy = \"sock5h://127.0.0.1:1080\""),
        7,
        9,
        "unsupported scheme \"sock5h\"; did you mean \"socks5h\"?",
    );
}

#[test]
fn proxy_without_port() {
    assert_only_error(
        &http_check("proxy = \"socks5h://127.0.0.1\""),
        7,
        9,
        "missing port: write e.g. \"socks5h://127.0.0.1:1080\"",
    );
}

#[test]
fn proxy_without_scheme() {
    assert_only_error(
        &http_check("proxy = \"127.0.0.1:1080\""),
        7,
        9,
        "invalid proxy URL \"127.0.0.1:1080\": expected e.g. \"socks5h://127.0.0.1:1080\"",
    );
}

#[test]
fn proxy_errors_never_show_the_password() {
    let src = http_check("proxy = \"socks5://ops:hunter2@127.0.0.1\"");
    assert_only_error(
        &src,
        7,
        9,
        "invalid proxy URL \"socks5://***@127.0.0.1\": missing port",
    );
    assert!(!errors(&src).to_string().contains("hunter2"));
}

#[test]
fn max_latency_zero() {
    assert_only_error(
        &http_check("max_latency = \"0s\""),
        7,
        15,
        "must be greater than 0",
    );
}

#[test]
fn client_cert_without_key() {
    assert_only_error(
        &http_check("client_cert = \"/etc/c.pem\""),
        7,
        1,
        "`client_cert` needs `client_key` in [services.web.checks.health]: set both or neither",
    );
}

#[test]
fn client_key_without_cert() {
    assert_only_error(
        &kind_check("websocket", "url = \"wss://h\"\nclient_key = \"/k\""),
        7,
        1,
        "`client_key` needs `client_cert`",
    );
}

#[test]
fn websocket_with_http_url() {
    assert_only_error(
        &kind_check("websocket", "url = \"http://localhost:8083/mqtt\""),
        6,
        7,
        "invalid URL \"http://localhost:8083/mqtt\": must be an absolute ws:// or wss:// URL with a host",
    );
}

#[test]
fn websocket_url_without_host() {
    assert_only_error(
        &kind_check("websocket", "url = \"wss:///mqtt\""),
        6,
        7,
        "must be an absolute ws:// or wss:// URL with a host",
    );
}

#[test]
fn websocket_bad_status() {
    assert_only_error(
        &kind_check("websocket", "url = \"ws://h\"\nexpect_status = 99"),
        7,
        17,
        "status code 99 is out of range",
    );
}

#[test]
fn unknown_tcp_state_with_suggestion() {
    assert_only_error(
        &kind_check("sockets", "port = 1883\nstate = \"close-wiat\"\nmax = 5"),
        7,
        9,
        "unknown TCP state \"close-wiat\"; did you mean \"close-wait\"?",
    );
}

#[test]
fn tcp_state_in_ss_spelling_is_accepted() {
    for spelling in ["CLOSE_WAIT", "close_wait", "CLOSE-WAIT", "close-wait"] {
        let src = kind_check(
            "sockets",
            &format!("port = 1883\nstate = \"{spelling}\"\nmax = 5"),
        );
        let config = parse(&src, Path::new("vigil.toml")).unwrap_or_else(|e| panic!("{e}"));
        let vigil_config::CheckKind::Sockets(s) = &config.services[0].checks[0].kind else {
            panic!("not sockets")
        };
        assert_eq!(s.state, vigil_config::TcpState::CloseWait, "{spelling}");
    }
}

#[test]
fn sockets_negative_max() {
    assert_only_error(
        &kind_check("sockets", "port = 1883\nstate = \"close-wait\"\nmax = -1"),
        8,
        7,
        "must be at least 0, found -1",
    );
}

#[test]
fn sockets_missing_max_and_bad_side() {
    let src = kind_check(
        "sockets",
        "port = 1883\nstate = \"listen\"\nside = \"remot\"",
    );
    assert_error(
        &src,
        8,
        8,
        "unknown side \"remot\"; did you mean \"remote\"?",
    );
    assert_error(
        &src,
        4,
        1,
        "missing required key `max` for kind \"sockets\" in [services.web.checks.c]",
    );
    assert_eq!(errors(&src).len(), 2);
}

#[test]
fn log_bad_pattern_and_zero_min_matches() {
    let src = kind_check(
        "log",
        "path = \"/var/log/x\"\npattern = \"(\"\nmin_matches = 0",
    );
    assert_error(&src, 7, 11, "invalid regex \"(\"");
    assert_error(&src, 8, 15, "must be at least 1, found 0");
    assert_eq!(errors(&src).len(), 2);
}

#[test]
fn interface_name_with_slash() {
    assert_only_error(
        &kind_check("interface", "interface = \"../wg0\""),
        6,
        13,
        "invalid interface name \"../wg0\": must not contain '/'",
    );
}

#[test]
fn interface_name_too_long() {
    assert_only_error(
        &kind_check("interface", "interface = \"averyveryverylongname\""),
        6,
        13,
        "at most 15 bytes",
    );
}

#[test]
fn fast_every_above_max_age() {
    assert_only_error(
        &kind_check(
            "file_age",
            "path = \"/f\"\nmax_age = \"5m\"\nfast_every = \"10m\"",
        ),
        8,
        14,
        "must be at most `max_age` (300s), found 600s",
    );
}

#[test]
fn clock_critical_below_warn() {
    assert_only_error(
        &kind_check(
            "clock",
            "servers = [\"pool.ntp.org\"]\nwarn = \"5s\"\ncritical = \"1s\"",
        ),
        8,
        12,
        "must be at least `warn` (5s), found 1s",
    );
}

#[test]
fn clock_warn_above_default_critical() {
    assert_only_error(
        &kind_check("clock", "servers = [\"pool.ntp.org\"]\nwarn = \"10s\""),
        7,
        8,
        "must be at most `critical` (4s), found 10s",
    );
}

#[test]
fn clock_without_servers() {
    assert_only_error(
        &kind_check("clock", "servers = []"),
        6,
        11,
        "expected at least one server",
    );
}

#[test]
fn clock_bad_server() {
    assert_only_error(
        &kind_check("clock", "servers = [\"pool.ntp.org\", \"::1:123x\"]"),
        6,
        28,
        "invalid server \"::1:123x\"",
    );
}

#[test]
fn critical_days_above_warn_days() {
    assert_only_error(
        &kind_check(
            "tls_cert",
            "host = \"h\"\nwarn_days = 7\ncritical_days = 10",
        ),
        8,
        17,
        "must be at most `warn_days` (7), found 10",
    );
    assert_only_error(
        &kind_check("tls_cert", "host = \"h\"\nwarn_days = 2"),
        7,
        13,
        "must be at least `critical_days` (3), found 2",
    );
}

#[test]
fn password_and_password_file_together() {
    let src = kind_check(
        "redis",
        "host = \"h\"\npassword = \"topsecret\"\npassword_file = \"/p\"",
    );
    assert_only_error(
        &src,
        8,
        1,
        "set either `password` or `password_file`, not both",
    );
    assert!(!errors(&src).to_string().contains("topsecret"));
}

#[test]
fn password_of_the_wrong_type_is_not_shown() {
    let src = kind_check("mqtt", "host = \"h\"\npassword = 918273");
    assert_only_error(&src, 7, 12, "expected a string, found an integer");
    assert!(!errors(&src).to_string().contains("918273"));
}

#[test]
fn tls_keys_without_tls() {
    let src = kind_check(
        "postgres",
        "host = \"h\"\nca_file = \"/ca.pem\"\ninsecure = true",
    );
    assert_error(
        &src,
        7,
        1,
        "`ca_file` applies only with tls = true (`tls` defaults to false)",
    );
    assert_error(&src, 8, 1, "`insecure` applies only with tls = true");
    assert_eq!(errors(&src).len(), 2);
}

#[test]
fn tls_keys_with_tls_false() {
    assert_only_error(
        &kind_check(
            "mqtt",
            "host = \"h\"\ntls = false\nclient_cert = \"/c\"\nclient_key = \"/k\"",
        )
        .replace("client_key = \"/k\"\n", ""),
        8,
        1,
        "`client_cert` applies only with tls = true (`tls` is false)",
    );
}

#[test]
fn tls_key_of_another_kind() {
    assert_only_error(
        &kind_check("tcp", "host = \"h\"\nport = 1\ntls = true"),
        8,
        1,
        "key `tls` does not apply to check kind \"tcp\" (it belongs to kind \"redis\", \"postgres\", \"mqtt\")",
    );
}

#[test]
fn pid_file_and_name_together() {
    assert_only_error(
        &kind_check("process", "pid_file = \"/run/x.pid\"\nname = \"x\""),
        7,
        1,
        "set either `pid_file` or `name`, not both",
    );
}

#[test]
fn process_without_target() {
    assert_only_error(
        &kind_check("process", "max_fds = 10"),
        4,
        1,
        "[services.web.checks.c] needs `pid_file` or `name` for kind process",
    );
}

#[test]
fn process_service_not_available_yet() {
    assert_only_error(
        &kind_check("process", "service = \"web\""),
        6,
        1,
        "`service` is not available yet in [services.web.checks.c]: needs the exec driver",
    );
}

#[test]
fn process_bad_size() {
    assert_only_error(
        &kind_check("process", "name = \"x\"\nmax_rss = \"512MB!\""),
        7,
        11,
        "invalid size \"512MB!\"",
    );
}

#[test]
fn process_cpu_percent_zero() {
    assert_only_error(
        &kind_check("process", "name = \"x\"\nmax_cpu_percent = 0"),
        7,
        19,
        "must be a finite number greater than 0, found 0",
    );
}

#[test]
fn process_name_is_not_a_path() {
    assert_only_error(
        &kind_check("process", "name = \"/usr/bin/x\""),
        6,
        8,
        "a name, not a path",
    );
}

#[test]
fn debug_output_never_shows_passwords() {
    let src = kind_check(
        "redis",
        "host = \"h\"\npassword = \"topsecret\"\n[services.web.checks.h]\nkind = \"http\"\nurl = \"http://x\"\nproxy = \"socks5://u:pw-secret@p:1\"",
    );
    let config = parse(&src, Path::new("vigil.toml")).unwrap_or_else(|e| panic!("{e}"));
    let debug = format!("{config:?}");
    assert!(!debug.contains("topsecret"), "{debug}");
    assert!(!debug.contains("pw-secret"), "{debug}");
}

#[test]
fn control_socket_keys() {
    let long = "x".repeat(120);
    assert_only_error(
        &format!("[vigil]\ncontrol_socket = \"/run/{long}.sock\"\n{HEAD}"),
        2,
        18,
        "unix sockets allow at most 107",
    );
    assert_only_error(
        &format!("[vigil]\ncontrol_socket_group = \"\"\n{HEAD}"),
        2,
        24,
        "must not be empty",
    );
    assert_only_error(
        &format!("[vigil]\ncontrol_socket = 5\n{HEAD}"),
        2,
        18,
        "expected",
    );
}

#[test]
fn http_listener_keys() {
    assert_only_error(
        &format!("[vigil]\nhttp_listen = \"localhost:9731\"\n{HEAD}"),
        2,
        15,
        "expected an IP address and port like \"127.0.0.1:9731\"",
    );
    assert_only_error(
        &format!("[vigil]\nhttp_listen = \"127.0.0.1\"\n{HEAD}"),
        2,
        15,
        "no host names",
    );
    assert_only_error(
        &format!("[vigil]\nhttp_token_file = \"/etc/vigil/token\"\n{HEAD}"),
        2,
        1,
        "`http_token_file` applies only with `http_listen`",
    );
    assert_only_error(
        &format!("[vigil]\nhttp_listen = \"127.0.0.1:9731\"\nhttp_tls_cert = \"c.pem\"\n{HEAD}"),
        3,
        1,
        "`http_tls_cert` needs `http_tls_key` too",
    );
    assert_only_error(
        &format!("[vigil]\nhttp_listen = \"127.0.0.1:9731\"\nhttp_tls_key = \"k.pem\"\n{HEAD}"),
        3,
        1,
        "`http_tls_key` needs `http_tls_cert` too",
    );
    assert_only_error(
        &format!("[vigil]\nhttp_listen = \"127.0.0.1:9731\"\nhttp_token_file = \"\"\n{HEAD}"),
        3,
        19,
        "path must not be empty",
    );
    // IPv6 and port 0 (any free port) are fine; the files are not read here.
    let ok = format!(
        "[vigil]\nhttp_listen = \"[::1]:0\"\nhttp_token_file = \"/nonexistent/token\"\n{HEAD}"
    );
    let config = parse(&ok, Path::new("vigil.toml")).unwrap_or_else(|e| panic!("{e}"));
    let http = config.vigil.http.expect("listener on");
    assert_eq!(http.listen.to_string(), "[::1]:0");
    assert_eq!(
        http.token_file.as_deref(),
        Some(Path::new("/nonexistent/token"))
    );
    assert!(http.tls.is_none());
}

#[test]
fn docker_driver_keys() {
    let svc = |lines: &str| format!("[services.web]\ndriver = \"docker\"\n{lines}\n");
    assert_only_error(&svc(""), 1, 1, "missing required key `container`");
    assert_only_error(&svc("container = \"bad name!\""), 3, 13, "container");
    assert_only_error(
        &svc("container = \"web\"\ndocker_host = \"tcp://10.0.0.1:2375\""),
        4,
        15,
        "only unix sockets are supported",
    );
    assert_only_error(
        &svc("container = \"web\"\nstop_timeout = \"soon\""),
        4,
        16,
        "duration",
    );
    assert_only_error(
        &svc("container = \"web\"\nrestart_command = [\"true\"]"),
        4,
        1,
        "restart_command",
    );
}

/// Two valid services (lines 1-6) for the group cases.
const TWO: &str = "[services.a]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n[services.b]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n";

#[test]
fn group_members_must_exist_once_and_in_one_group() {
    assert_only_error(
        &format!("{TWO}[groups.g]\nmembers = [\"a\", \"bb\"]\n"),
        8,
        17,
        "no service named `bb`; did you mean `b`?",
    );
    assert_only_error(
        &format!("{TWO}[groups.g]\nmembers = [\"a\", \"a\"]\n"),
        8,
        17,
        "`a` is listed twice",
    );
    assert_only_error(
        &format!("{TWO}[groups.g]\nmembers = [\"a\"]\n[groups.h]\nmembers = [\"a\", \"b\"]\n"),
        7,
        1,
        "`a` is in groups `g` and `h`",
    );
    assert_only_error(
        &format!("{TWO}[groups.g]\nmembers = []\n"),
        7,
        1,
        "has no members",
    );
    assert_only_error(
        "[services.x]\ndriver = \"exec\"\ncommand = [\"/bin/true\"]\n[services.y]\ndriver = \"command\"\nrestart_command = [\"true\"]\n[groups.g]\nmembers = [\"x\", \"y\"]\n",
        8,
        12,
        "exec services cannot be restart-group members yet",
    );
    assert_only_error(
        &format!("{TWO}[groups.g]\nmembers = [\"a\"]\nready_timeout = \"0s\"\n"),
        9,
        17,
        "",
    );
    assert_only_error(
        &format!("{TWO}[groups.g]\nmembers = [\"a\"]\nmembrs = [\"b\"]\n"),
        9,
        1,
        "unknown key `membrs`",
    );
}

#[test]
fn group_references_from_services() {
    // `after` outside a group, or naming a non-member.
    let src = "[services.a]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\nafter = [\"b\"]\n[services.b]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n";
    assert_only_error(src, 4, 10, "is in none");
    let src = "[services.a]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\nafter = [\"c\"]\n[services.b]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n[groups.g]\nmembers = [\"a\", \"b\"]\n";
    assert_only_error(
        src,
        4,
        10,
        "`c` is not a member of group `g` (members: a, b)",
    );
    // An ordering cycle.
    let src = "[services.a]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\nafter = [\"b\"]\n[services.b]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\nafter = [\"a\"]\n[groups.g]\nmembers = [\"a\", \"b\"]\n";
    assert_only_error(src, 9, 1, "form a cycle: a -> b");
    // `ready_check` names no check of the service.
    let src = "[services.a]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\nready_check = \"helth\"\n[services.a.checks.health]\nkind = \"tcp\"\nhost = \"h\"\nport = 1\n[groups.g]\nmembers = [\"a\"]\n";
    assert_only_error(
        src,
        4,
        15,
        "`helth` is not a check of `a`; did you mean `health`?",
    );
    // restart-group outside a group.
    let src = "[services.a]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n[services.a.checks.health]\nkind = \"tcp\"\nhost = \"h\"\nport = 1\non_failure = \"restart-group\"\n";
    assert_only_error(src, 8, 14, "is in no restart group");
}

// ---- alert channels: every key ----

/// Lines 1-2: an alert channel header and its kind; the case's lines start at line 3.
fn channel(kind: &str, lines: &str) -> String {
    format!("[alerts.ops]\nkind = \"{kind}\"\n{lines}\n")
}

/// A webhook channel with a valid URL (lines 1-3); the case's line is line 4.
fn webhook(line: &str) -> String {
    channel(
        "webhook",
        &format!("url = \"http://127.0.0.1:9/hook\"\n{line}"),
    )
}

/// An email channel with its required keys (lines 1-5); the case's line is line 6.
fn email(line: &str) -> String {
    channel(
        "email",
        &format!(
            "smtp_host = \"127.0.0.1\"\nfrom = \"vigil@example.com\"\nto = [\"ops@example.com\"]\n{line}"
        ),
    )
}

#[test]
fn alerts_must_be_a_table() {
    assert_only_error("alerts = 1\n", 1, 10, "expected a table, found integer 1");
}

#[test]
fn alert_kind_missing_and_unknown() {
    assert_only_error(
        "[alerts.ops]\nurl = \"http://h\"\n",
        1,
        1,
        "missing required key `kind` in [alerts.ops]",
    );
    assert_only_error(
        "[alerts.ops]\nkind = \"webhok\"\n",
        2,
        8,
        "unknown alert kind \"webhok\"; did you mean \"webhook\"?",
    );
}

#[test]
fn alert_channel_name_is_checked() {
    assert_error(
        &channel("exec", "command = [\"/bin/true\"]").replace("alerts.ops", "alerts.\"bad name\""),
        1,
        9,
        "invalid alert channel name \"bad name\"",
    );
}

#[test]
fn alert_events() {
    assert_only_error(
        &webhook("events = \"failing\""),
        4,
        10,
        "expected an array of event names",
    );
    assert_only_error(
        &webhook("events = []"),
        4,
        10,
        "expected at least one event",
    );
    assert_only_error(
        &webhook("events = [\"failing\", \"given_up\"]"),
        4,
        22,
        "unknown alert event \"given_up\"; did you mean \"given-up\"?",
    );
}

#[test]
fn alert_durations_counts_and_sizes() {
    assert_only_error(
        &webhook("repeat = \"soon\""),
        4,
        10,
        "invalid duration \"soon\"",
    );
    assert_only_error(
        &webhook("group_wait = 10"),
        4,
        14,
        "found integer 10 (write \"10s\" for seconds)",
    );
    assert_only_error(&webhook("timeout = \"0\""), 4, 11, "must be greater than 0");
    assert_only_error(
        &webhook("retries = 0"),
        4,
        11,
        "must be at least 1, found 0",
    );
    assert_only_error(
        &webhook("retry_delay = \"0s\""),
        4,
        15,
        "must be greater than 0",
    );
    assert_only_error(
        &webhook("queue_size = 0"),
        4,
        14,
        "0 is out of range: expected 1..=1000000",
    );
}

#[test]
fn webhook_url_missing_invalid_or_twice() {
    assert_only_error(
        &channel("webhook", "secret = \"s\""),
        1,
        1,
        "missing required key `url` (or `url_file`, or `url_env`) in [alerts.ops]",
    );
    let src = channel("webhook", "url = \"ftp://user:tok3n@h/x\"");
    assert_only_error(
        &src,
        3,
        7,
        "invalid URL: must be an absolute http:// or https:// URL",
    );
    assert!(
        !errors(&src).to_string().contains("tok3n"),
        "the URL leaked"
    );
    assert_only_error(
        &webhook("url_env = \"HOOK_URL\""),
        4,
        1,
        "set only one of `url`, `url_file` and `url_env` (found `url` and `url_env`)",
    );
    assert_only_error(
        &channel("webhook", "url_file = \"\""),
        3,
        12,
        "path must not be empty",
    );
    assert_only_error(
        &channel("webhook", "url_env = \"1HOOK\""),
        3,
        11,
        "invalid environment variable name \"1HOOK\"",
    );
}

#[test]
fn webhook_headers_and_secret() {
    assert_only_error(
        &webhook("headers = { \"Content-Type\" = \"text/plain\" }"),
        4,
        1,
        "header `Content-Type` is set by Vigil and cannot be overridden",
    );
    assert_only_error(&webhook("headers = [\"x\"]"), 4, 11, "expected a table");
    let src = webhook("secret = 12345");
    assert_only_error(&src, 4, 10, "expected a string (quote the value)");
    assert!(
        !errors(&src).to_string().contains("12345"),
        "the secret leaked"
    );
    assert_only_error(
        &webhook("secret = \"a\"\nsecret_file = \"/s\""),
        5,
        1,
        "set only one of `secret`, `secret_file` and `secret_env`",
    );
    assert_only_error(
        &webhook("secret_env = \"A-B\""),
        4,
        14,
        "invalid environment variable name",
    );
}

#[test]
fn key_of_another_alert_kind() {
    assert_only_error(
        &webhook("smtp_host = \"h\""),
        4,
        1,
        "key `smtp_host` does not apply to alert kind \"webhook\" (it belongs to kind \"email\")",
    );
    assert_only_error(
        &webhook("evnts = [\"failing\"]"),
        4,
        1,
        "unknown key `evnts` in [alerts.ops]; did you mean `events`?",
    );
}

#[test]
fn slack_webhook_url() {
    assert_only_error(
        &channel("slack", ""),
        1,
        1,
        "missing required key `webhook_url` (or `webhook_url_file`, or `webhook_url_env`)",
    );
    assert_only_error(
        &channel("slack", "webhook_url = \"hooks.slack.com/services/x\""),
        3,
        15,
        "invalid URL",
    );
    assert_only_error(
        &channel("slack", "webhook_url_file = 3"),
        3,
        20,
        "expected a string, found integer 3",
    );
    assert_only_error(
        &channel("slack", "webhook_url_env = \"\""),
        3,
        19,
        "invalid environment variable name",
    );
}

#[test]
fn email_required_keys() {
    let errs = errors(&channel("email", ""));
    for key in ["smtp_host", "from", "to"] {
        assert!(
            errs.iter()
                .any(|e| e.message.contains(&format!("missing required key `{key}`"))),
            "{key}: {errs}"
        );
    }
}

#[test]
fn email_keys() {
    assert_only_error(
        &email("smtp_port = 0"),
        6,
        13,
        "0 is out of range: expected 1..=65535",
    );
    assert_only_error(&email("tls = \"ssl\""), 6, 7, "unknown tls mode \"ssl\"");
    assert_only_error(
        &email("username = \"vigil\""),
        6,
        1,
        "`username` needs a password in [alerts.ops]",
    );
    assert_only_error(
        &email("password_file = \"/p\""),
        6,
        1,
        "`password_file` needs `username` in [alerts.ops]",
    );
    let src = email("username = \"u\"\npassword = \"pw\"\npassword_env = \"PW\"");
    assert_only_error(
        &src,
        8,
        1,
        "set only one of `password`, `password_file` and `password_env`",
    );
    assert_only_error(
        &email("username = \"\"\npassword = \"pw\""),
        6,
        12,
        "must not be empty",
    );
    assert_only_error(&email("ca_file = \"\""), 6, 11, "path must not be empty");
    assert_only_error(
        &email("password_env = \"PW\"\nusername = 5"),
        7,
        12,
        "expected a string, found integer 5",
    );
}

#[test]
fn email_mailboxes() {
    let src = channel(
        "email",
        "smtp_host = \"h\"\nfrom = \"vigil at example.com\"\nto = [\"ops@example.com\"]",
    );
    assert_only_error(&src, 4, 8, "invalid mailbox \"vigil at example.com\"");
    let src = channel(
        "email",
        "smtp_host = \"h\"\nfrom = \"v@e\"\nto = \"ops@example.com\"",
    );
    assert_only_error(&src, 5, 6, "expected an array of mailboxes, found a string");
    let src = channel("email", "smtp_host = \"h\"\nfrom = \"v@e\"\nto = []");
    assert_only_error(&src, 5, 6, "expected at least one recipient");
    let src = channel(
        "email",
        "smtp_host = \"h\"\nfrom = \"Vigil <v@e>\"\nto = [\"ok@e\", \"Ops <ops@e\"]",
    );
    assert_only_error(&src, 5, 15, "unbalanced '<' '>'");
}

#[test]
fn exec_channel_command() {
    assert_only_error(
        &channel("exec", ""),
        1,
        1,
        "missing required key `command` for kind \"exec\" in [alerts.ops]",
    );
    assert_only_error(
        &channel("exec", "command = \"page-oncall --now\""),
        3,
        11,
        "no shell is involved",
    );
    assert_only_error(&channel("exec", "command = []"), 3, 11, "empty command");
}

#[test]
fn service_alerts_name_defined_channels() {
    let src = format!(
        "{HEAD}alerts = [\"ops-slak\"]\n\n[alerts.ops-slack]\nkind = \"slack\"\nwebhook_url_env = \"U\"\n"
    );
    assert_only_error(
        &src,
        4,
        11,
        "unknown alert channel \"ops-slak\"; did you mean \"ops-slack\"?",
    );
    assert_only_error(
        &format!("{HEAD}alerts = [\"pager\"]\n"),
        4,
        11,
        "unknown alert channel \"pager\": no [alerts.NAME] table is defined",
    );
    assert_only_error(
        &format!("{HEAD}alerts = \"pager\"\n"),
        4,
        10,
        "expected an array of alert channel names",
    );
    assert_only_error(
        &format!("{HEAD}alerts = [1]\n"),
        4,
        11,
        "expected a string, found integer 1",
    );
}
