//! `max_body` with `body_regex` is bounded (the regex needs the body in memory); with
//! `body_contains` alone (matched as the body streams) it is not.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;

use vigil_config::model::{CheckKind, MAX_BODY_WITH_REGEX};
use vigil_config::parse;

/// An http check whose `max_body` is on line 7, column 12.
fn http_check(lines: &str, max_body: &str) -> String {
    format!(
        "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n[services.web.checks.health]\nkind = \"http\"\nurl = \"http://localhost:8080/health\"\nmax_body = {max_body}\n{lines}\n"
    )
}

fn max_body(src: &str) -> usize {
    let config = parse(src, Path::new("vigil.toml")).unwrap();
    match &config.services[0].checks[0].kind {
        CheckKind::Http(http) => http.max_body,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_regex_check_may_not_hold_a_gigabyte() {
    let src = http_check("body_regex = \"ok\"", "\"1GiB\"");
    let errs = parse(&src, Path::new("vigil.toml")).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs}");
    let e = errs.iter().next().unwrap();
    assert_eq!((e.line, e.col), (7, 12), "{errs}");
    assert!(
        e.message.starts_with(
            "at most \"4MiB\" with `body_regex` (the body is held in memory to match a regex), found \"1GiB\""
        ),
        "{errs}"
    );
}

#[test]
fn the_limit_itself_and_streamed_matches_are_fine() {
    let src = http_check("body_regex = \"ok\"", "\"4MiB\"");
    assert_eq!(max_body(&src), MAX_BODY_WITH_REGEX);
    let src = http_check("body_contains = \"ok\"", "\"1GiB\"");
    assert_eq!(max_body(&src), 1 << 30);
}
