//! `render_effective`: the effective configuration as TOML validates back into the same
//! `Config`, and never shows a secret.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;

use vigil_config::{COMPLETE_EXAMPLE, Config, REDACTED, parse, render_effective};

const PATH: &str = "/etc/vigil/vigil.toml";

/// The complete example with every inline secret given as a file or variable instead.
fn without_inline_secrets() -> String {
    let mut src = COMPLETE_EXAMPLE.to_owned();
    for (from, to) in [
        (
            "headers = { Authorization = \"Bearer secret-token\" }",
            "headers = { Accept = \"text/plain\" }",
        ),
        (
            "password = \"redis-secret\"",
            "password_file = \"/etc/redis.pass\"",
        ),
        (
            "password = \"mqtt-secret\"",
            "password_file = \"/etc/mqtt.pass\"",
        ),
        (
            "socks5h://ops:s3cret@127.0.0.1:1080",
            "socks5h://ops@127.0.0.1:1080",
        ),
        (
            "url = \"https://alerts.example.com/vigil\"",
            "url_env = \"OPS_HOOK\"",
        ),
        ("headers = { Authorization = \"Bearer hook-token\" }\n", ""),
        (
            "secret = \"hmac-secret\"",
            "secret_file = \"/etc/vigil/hmac\"",
        ),
        (
            "webhook_url = \"https://hooks.slack.com/services/T000/B000/XXXX\"",
            "webhook_url_env = \"SLACK_URL\"",
        ),
        (
            "password = \"smtp-secret\"",
            "password_env = \"SMTP_PASSWORD\"",
        ),
    ] {
        assert!(src.contains(from), "{from}");
        src = src.replace(from, to);
    }
    src
}

fn config(src: &str) -> Config {
    parse(src, Path::new(PATH)).unwrap_or_else(|e| panic!("{e}\n--- source:\n{src}"))
}

#[test]
fn the_effective_config_validates_back_into_the_same_config() {
    let original = config(&without_inline_secrets());
    let text = render_effective(&original);
    assert!(!text.contains(REDACTED), "{text}");
    assert!(!text.contains("include"), "{text}");
    let again = config(&text);
    assert_eq!(again, original, "--- rendered:\n{text}");
    // And rendering is stable.
    assert_eq!(render_effective(&again), text);
}

#[test]
fn defaults_are_written_out() {
    let src = "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n\
               [services.web.checks.up]\nkind = \"tcp\"\nhost = \"localhost\"\nport = 80\n";
    let text = render_effective(&config(src));
    for line in [
        "[defaults.guard]",
        "cooldown = \"2m\"",
        "[services.web.guard]",
        "command_timeout = \"1m\"",
        "every = \"30s\"",
        "on_failure = \"restart\"",
        "log_level = \"info\"",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert_eq!(config(&text), config(src));
}

#[test]
fn secrets_are_never_shown() {
    let original = config(COMPLETE_EXAMPLE);
    let text = render_effective(&original);
    for secret in [
        "secret-token",
        "redis-secret",
        "mqtt-secret",
        "s3cret",
        "hook-token",
        "hmac-secret",
        "smtp-secret",
        "https://alerts.example.com/vigil",
        "hooks.slack.com/services/T000/B000/XXXX",
    ] {
        assert!(!text.contains(secret), "{secret} shown in:\n{text}");
    }
    // References to secrets are not secrets.
    for reference in [
        "password_file = \"/etc/camera/pg.pass\"",
        "webhook_url_env = \"VIGIL_SLACK_URL\"",
        "secret_file = \"/etc/vigil/hook.secret\"",
        "password_env = \"VIGIL_SMTP_PASSWORD\"",
        "proxy = \"socks5h://ops:<redacted>@127.0.0.1:1080\"",
        "headers = { Authorization = \"<redacted>\" }",
        "url = \"https://alerts.example.com/REDACTED\"",
        "webhook_url = \"https://hooks.slack.com/REDACTED\"",
    ] {
        assert!(text.contains(reference), "no {reference} in:\n{text}");
    }
}

#[test]
fn exec_environment_values_that_look_like_credentials_are_redacted() {
    let src = "[services.app]\ndriver = \"exec\"\ncommand = [\"/bin/app\"]\n\
               env = { PORT = \"8080\", DB_PASSWORD = \"hunter2\", api_token = \"t0k\" }\n";
    let text = render_effective(&config(src));
    assert!(text.contains("PORT = \"8080\""), "{text}");
    assert!(!text.contains("hunter2") && !text.contains("t0k"), "{text}");
}
