//! The one-shot commands (the seed's cron mode): check, restart, status, history, reset,
//! config check; exit codes; JSON logs.

mod support;

use support::*;

fn recorder_config(env: &Env, guard: &str, checks: &str) {
    let recorder = helper_bin("vigil-restart-recorder");
    env.write_config(&format!(
        r#"
[defaults.guard]
{guard}

[services.svc]
driver = "command"
restart_command = [{recorder:?}, "--log", {log:?}, "--hold-ms", "1"]
{checks}
"#,
        recorder = recorder.display().to_string(),
        log = env.path("restarts.log").display().to_string(),
    ));
}

fn runs(env: &Env) -> usize {
    recorder_runs(&env.path("restarts.log")).len()
}

#[test]
fn config_check_reports_file_line_col_and_exits_2() {
    let env = Env::new();
    std::fs::write(
        env.config_path(),
        "[services.web]\ndriver = \"command\"\nrestart_command = [\"true\"]\n\n[services.web.checks.h]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\nevry = \"5s\"\n",
    )
    .unwrap();
    let out = env.vigil(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let expected = format!("{}:8:1:", env.config_path().display());
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("did you mean `every`"), "{err}");

    // Every other command refuses a broken config the same way.
    let out = env.vigil(&["status"]);
    assert_eq!(out.status.code(), Some(2));

    recorder_config(&env, "", "");
    let out = env.vigil(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("OK (1 service(s)"));
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    recorder_config(&env, "", "");
    assert_eq!(env.vigil(&["frobnicate"]).status.code(), Some(2));
    let out = env.vigil(&["restart", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown service `nope` (configured: svc)"));
    let out = env.vigil(&["history", "--since", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid --since"));
    let out = command(vigil_bin())
        .args(["status", "-c", "/nonexistent/vigil.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/vigil.toml"));
}

/// Seed 000 by hand: restart, restart again inside the cooldown (skipped, exit 1), force,
/// exhaust the budget (denied, given-up), reset.
#[test]
fn manual_restarts_cooldown_force_limit_and_reset() {
    let env = Env::new();
    recorder_config(
        &env,
        "cooldown = \"120s\"\nmax_restarts = 2\nwindow = \"1h\"",
        "",
    );
    let out = env.vigil(&["restart", "svc"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Restart ALLOWED (1/2 per hour)"));

    let out = env.vigil(&["restart", "svc"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    // e.g. "(11ms ago by manual, need 120s, wait 120s more)": the wait rounds up.
    assert!(
        stdout.contains("Restart SKIPPED: cooldown active (")
            && stdout.contains(" ago by manual, need 120s, wait 1"),
        "{stdout}"
    );
    assert_eq!(runs(&env), 1);

    let out = env.vigil(&["restart", "svc", "--force"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("Restart ALLOWED (2/2 per hour, forced)"));

    let out = env.vigil(&["restart", "svc", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["verdict"], "denied");
    assert_eq!(doc["reason"], "limit");
    assert_eq!(
        doc["message"],
        "Restart DENIED: limit reached (2/2 per hour)"
    );
    assert!(doc["retry_at"].is_string());
    assert!(text(&out.stderr).contains("ACTION REQUIRED"));

    let status: serde_json::Value =
        serde_json::from_slice(&env.vigil(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["services"][0]["state"], "given-up");
    assert_eq!(status["services"][0]["restarts_in_window"], 2);
    assert!(status["services"][0]["rearm_at"].is_string());
    let human = text(&env.vigil(&["status"]).stdout);
    assert!(
        human.contains("SERVICE") && human.contains("given-up") && human.contains("2/2 per hour"),
        "{human}"
    );

    let out = env.vigil(&["reset", "svc"]);
    assert_eq!(out.status.code(), Some(0));
    let status: serde_json::Value =
        serde_json::from_slice(&env.vigil(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["services"][0]["restarts_in_window"], 0);
    assert_ne!(status["services"][0]["state"], "given-up");
    let out = env.vigil(&["restart", "svc"]);
    assert_eq!(out.status.code(), Some(0), "reset clears the cooldown too");
    assert_eq!(runs(&env), 3);

    let history = env.history();
    let verdicts: Vec<&str> = history
        .iter()
        .map(|e| e["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        [
            "allowed", "skipped", "allowed", "denied", "reset", "allowed"
        ]
    );
    assert_eq!(history[2]["forced"], true);
    let human = text(&env.vigil(&["history", "svc", "--since", "1h"]).stdout);
    assert!(
        human.contains("TIME") && human.contains("manual (forced)"),
        "{human}"
    );
}

/// `vigil check` as the seed's cron script: failure_threshold counts across runs (the state
/// is persisted), `--no-restart` only reports, a real failure restarts through the guard.
#[test]
fn check_runs_act_through_the_guard_with_persisted_thresholds() {
    let env = Env::new();
    let flag = env.path("healthy");
    recorder_config(
        &env,
        "cooldown = \"120s\"",
        &format!(
            r#"
[services.svc.checks.flag]
kind = "exec"
command = ["test", "-f", {flag:?}]
failure_threshold = 2
retries = 2
retry_delay = "10ms"
"#,
            flag = flag.display().to_string()
        ),
    );
    std::fs::write(&flag, "").unwrap();
    let out = env.vigil(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::remove_file(&flag).unwrap();

    // First failing run: 1/2, not failing yet, nothing to do.
    let out = env.vigil(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["services"][0]["checks"][0]["verdict"], "fail");
    assert_eq!(doc["services"][0]["checks"][0]["attempts"], 2);
    assert!(doc["services"][0]["action"].is_null());

    // Second: failing; --no-restart says what would happen and does nothing.
    let out = env.vigil(&["check", "--no-restart"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("would restart"), "{stdout}");
    assert!(
        stdout.contains("Restart ALLOWED (1/5 per hour)"),
        "{stdout}"
    );
    assert_eq!(runs(&env), 0);

    // Third: restarts for real.
    let out = env.vigil(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(runs(&env), 1);
    assert!(text(&out.stdout).contains("did restart"));

    // The restarted instance starts unknown: it must fail twice again, then the guard skips.
    assert!(env.vigil(&["check"]).status.code() == Some(0));
    let out = env.vigil(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("Restart SKIPPED: cooldown active"));
    assert_eq!(runs(&env), 1);
}

/// Seed 000's grace: no verdict until the service has been up `grace`.
#[test]
fn grace_after_a_restart_mutes_verdicts() {
    let env = Env::new();
    recorder_config(
        &env,
        "cooldown = \"0\"",
        r#"
[services.svc.checks.down]
kind = "exec"
command = ["false"]
grace = "1h"
"#,
    );
    assert_eq!(env.vigil(&["restart", "svc"]).status.code(), Some(0));
    let out = env.vigil(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["services"][0]["checks"][0]["in_grace_secs"]
            .as_u64()
            .unwrap()
            > 3500
    );
    assert!(doc["services"][0]["action"].is_null());
    assert!(text(&out.stderr).contains("grace period active"));
    assert_eq!(runs(&env), 1);
}

#[test]
fn json_logs_are_one_object_per_line_with_the_numbers() {
    let env = Env::new();
    recorder_config(&env, "", "");
    assert_eq!(env.vigil(&["restart", "svc"]).status.code(), Some(0));
    let out = env.vigil(&["restart", "svc", "--log-format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let skipped = lines
        .iter()
        .find(|l| l["event"] == "restart_skipped")
        .expect("a restart_skipped event");
    assert_eq!(skipped["service"], "svc");
    assert_eq!(skipped["level"], "info");
    assert_eq!(skipped["reason"], "cooldown");
    assert_eq!(skipped["need_ms"], 120_000);
    assert!(skipped["wait_ms"].as_u64().unwrap() > 100_000);
    assert!(skipped["ts"].as_str().unwrap().ends_with('Z'));
    assert!(
        skipped["message"]
            .as_str()
            .unwrap()
            .starts_with("Restart SKIPPED: cooldown active")
    );

    // Human lines follow `[ts] LEVEL service: message`.
    let out = env.vigil(&["restart", "svc"]);
    let line = text(&out.stderr)
        .lines()
        .find(|l| l.contains("Restart SKIPPED"))
        .map(str::to_owned)
        .expect("human skip line");
    assert!(
        line.starts_with('[') && line.contains("Z] INFO svc: Restart SKIPPED"),
        "{line}"
    );
}

/// Every file in `tests/broken/` is refused by `vigil config check` with exit 2, its error
/// at the `line:col` named in the sibling `.expect` file (`LINE:COL fragment`), a clear
/// message, and no panic.
#[test]
fn broken_config_corpus_exits_2_with_the_right_position() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 30,
        "at least 30 broken configs, found {}",
        cases.len()
    );
    for case in cases {
        let expect = std::fs::read_to_string(case.with_extension("expect")).unwrap();
        let (pos, fragment) = expect.trim().split_once(' ').unwrap();
        let out = command(vigil_bin())
            .args(["config", "check", "-c"])
            .arg(&case)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", case.display());
        assert!(!stderr.contains("panicked"), "{}: {stderr}", case.display());
        let located = format!("{}:{pos}: ", case.display());
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&located))
            .unwrap_or_else(|| panic!("{}: no error at {pos}:\n{stderr}", case.display()));
        assert!(
            line.contains(fragment),
            "{}: expected {fragment:?} in {line}",
            case.display()
        );
    }
}

/// `vigil heartbeat` pushes; a heartbeat check passes while pushes are fresh.
#[test]
fn heartbeats_are_pushed_from_the_cli_and_checked() {
    let env = Env::new();
    recorder_config(
        &env,
        "",
        r#"
[services.svc.checks.beat]
kind = "heartbeat"
ttl = "1h"
on_failure = "alert"
"#,
    );
    // A fresh check waits out its ttl from its first run (tests/heartbeat_oneshot.rs).
    let out = env.vigil(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "none yet: waiting");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["services"][0]["checks"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("no heartbeat yet; waiting"),
        "{doc}"
    );
    let out = env.vigil(&["heartbeat", "svc/beat"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("svc/beat: heartbeat recorded"));
    assert_eq!(env.vigil(&["heartbeat", "svc"]).status.code(), Some(0));
    let out = env.vigil(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["services"][0]["checks"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("last heartbeat "),
        "{doc}"
    );
    let out = env.vigil(&["heartbeat", "svc/nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a heartbeat check (heartbeat checks of svc: beat)"));
}

/// A plain `http://` check never loads the system's CA roots: it works on a host without
/// ca-certificates (here: roots pointed at nothing), and an `https://` check there fails
/// with the reason.
#[test]
fn plain_http_checks_need_no_system_ca_store() {
    let env = Env::new();
    let (_server, port) = start_flaky_http(&env, "web");
    let config = |scheme: &str| {
        format!(
            r#"
[services.svc]
driver = "command"
restart_command = ["true"]

[services.svc.checks.web]
kind = "http"
url = "{scheme}://127.0.0.1:{port}/"
timeout = "2s"
"#
        )
    };
    let run = || {
        command(vigil_bin())
            .args(["check", "--no-restart", "--json", "-c"])
            .arg(env.config_path())
            .env("SSL_CERT_FILE", env.path("no-such-bundle.pem"))
            .env("SSL_CERT_DIR", env.path("no-such-dir"))
            .output()
            .expect("vigil check")
    };
    env.write_config(&config("http"));
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["services"][0]["checks"][0]["verdict"], "pass");

    env.write_config(&config("https"));
    let out = run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reason = doc["services"][0]["checks"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("CA certificates"), "{reason}");
}

/// `vigil config show` prints the effective configuration: the services of included files
/// too, every default written out, and secrets redacted; what it prints validates again.
#[test]
fn config_show_prints_the_effective_config_with_includes_and_no_secrets() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("conf.d")).unwrap();
    std::fs::write(
        env.path("conf.d/web.toml"),
        "[services.web]\ndriver = \"command\"\nrestart_command = [\"true\"]\n",
    )
    .unwrap();
    // `include` is a top-level key: before `[vigil]`.
    std::fs::write(
        env.config_path(),
        format!(
            "include = [\"conf.d/*.toml\"]\n\n[vigil]\nstate_dir = {:?}\n\n[alerts.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"TOP-SECRET-HMAC\"\n",
            env.state_dir().display().to_string()
        ),
    )
    .unwrap();
    let out = env.vigil(&["config", "show"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("[services.web]"), "{shown}");
    assert!(
        shown.contains("cooldown = "),
        "defaults written out: {shown}"
    );
    assert!(!shown.contains("TOP-SECRET-HMAC"), "{shown}");
    std::fs::write(env.path("shown.toml"), &shown).unwrap();
    let again = command(vigil_bin())
        .args(["config", "check", "-c"])
        .arg(env.path("shown.toml"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));

    std::fs::write(env.path("conf.d/bad.toml"), "[services.web]\ndriver = 3\n").unwrap();
    let out = env.vigil(&["config", "show"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad.toml:"),
        "{}",
        text(&out.stderr)
    );
}
