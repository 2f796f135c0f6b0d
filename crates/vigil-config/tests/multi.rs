//! One file with several independent mistakes reports all of them at once, in file order.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;

#[test]
fn five_errors_are_reported_together_in_line_order() {
    let src = r#"[vigil]
log_format = "xml"

[defaults.guard]
cooldown = 120

[services.web]
driver = "command"
restart_command = ["/usr/bin/systemctl", "restart", "web"]

[services.web.checks.health]
kind = "http"
url = "http://localhost:8080/health"
evry = "5s"
expect_status = "399-200"

[[services.web.schedule]]
cron = "0 8 * * *"
every = "1h"
"#;
    let errs = vigil_config::parse(src, Path::new("/etc/vigil/vigil.toml")).unwrap_err();
    let expected = [
        "/etc/vigil/vigil.toml:2:14: vigil.log_format: unknown log_format \"xml\": expected one of \"human\", \"json\"",
        "/etc/vigil/vigil.toml:5:12: defaults.guard.cooldown: expected a duration string like \"30s\", found integer 120 (write \"120s\" for seconds)",
        "/etc/vigil/vigil.toml:14:1: services.web.checks.health.evry: unknown key `evry` in [services.web.checks.health]; did you mean `every`?",
        "/etc/vigil/vigil.toml:15:17: services.web.checks.health.expect_status: invalid status range \"399-200\": the start must not be greater than the end",
        "/etc/vigil/vigil.toml:19:1: services.web.schedule[0].every: set either `cron` or `every`, not both",
    ];
    assert_eq!(errs.to_string(), expected.join("\n"));
    let positions: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.col)).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted, "errors come back sorted");
}
