//! Huge broken files are diagnosed in full: every error counted, the first 100 printed
//! with their `file:line:col`, then how many more there are. (The time this takes is
//! measured by `benches/diagnostics.rs`, not asserted here.)

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;

use vigil_config::{ConfigErrors, KEPT_ERRORS, SHOWN_ERRORS, parse};

/// About 10 MB: 50,000 services, each with an unknown key (a typo with a suggestion) and
/// a check with an invalid duration, padded with comments. 100,000 errors.
fn ten_megabytes_of_mistakes() -> String {
    let pad = format!("# {}\n", "-".repeat(40));
    let mut s = String::with_capacity(10 << 20);
    for i in 0..50_000 {
        s.push_str(&format!(
            "[services.s{i}]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\ncomand_timeout = \"5s\"\n\
             [services.s{i}.checks.c]\nkind = \"tcp\"\nhost = \"localhost\"\nport = 80\nevery = \"5x\"\n"
        ));
        for _ in 0..2 {
            s.push_str(&pad);
        }
    }
    s
}

/// Each shown line is `big.toml:LINE:COL: ...` with LINE and COL at least 1.
fn assert_located(text: &str, file: &str) {
    for line in text.lines().take(SHOWN_ERRORS) {
        let rest = line
            .strip_prefix(file)
            .and_then(|r| r.strip_prefix(':'))
            .unwrap_or_else(|| panic!("not located in {file}: {line}"));
        let mut parts = rest.splitn(3, ':');
        let l: usize = parts.next().unwrap().parse().unwrap();
        let c: usize = parts.next().unwrap().parse().unwrap();
        assert!(l >= 1 && c >= 1, "{line}");
        assert!(parts.next().unwrap().starts_with(' '), "{line}");
    }
}

fn errors(src: &str) -> ConfigErrors {
    parse(src, Path::new("big.toml")).unwrap_err()
}

#[test]
fn ten_megabytes_with_100_000_errors_show_the_first_100_and_count_the_rest() {
    let src = ten_megabytes_of_mistakes();
    assert!(src.len() > 9 << 20, "{} bytes", src.len());
    let errs = errors(&src);
    assert_eq!(errs.len(), 100_000);
    assert_eq!(errs.0.len(), 100_000, "all of them kept");
    let text = errs.to_string();
    assert_eq!(text.lines().count(), SHOWN_ERRORS + 1, "{text}");
    assert!(
        text.ends_with("\n... and 99,900 more errors"),
        "{}",
        text.lines().last().unwrap()
    );
    assert_located(&text, "big.toml");
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "big.toml:4:1: services.s0.comand_timeout: unknown key `comand_timeout` in [services.s0]; did you mean `command_timeout`?"
    );
    assert_eq!(
        lines.next().unwrap(),
        "big.toml:9:9: services.s0.checks.c.every: invalid duration \"5x\": expected e.g. \"30s\", \"5m\", \"1h 30m\""
    );
    // The last error of the file is kept too, at its own line.
    let last = errs.0.last().unwrap();
    assert_eq!(last.key_path, "services.s49999.checks.c.every");
    assert_eq!(last.line, 49_999 * 11 + 9);
}

#[test]
fn ten_megabytes_of_duplicate_tables_after_comments_are_located() {
    // The shape that took 9.7 s at 426 KB: duplicate tables after many comment lines.
    let mut src = "#\n".repeat(200_000);
    let pad = format!("# {}\n", "=".repeat(90));
    for _ in 0..100_001 {
        src.push_str("[services.a]\n");
        src.push_str(&pad);
    }
    assert!(src.len() > 9 << 20, "{} bytes", src.len());
    let errs = errors(&src);
    assert_eq!(errs.len(), 100_000);
    let text = errs.to_string();
    assert_eq!(text.lines().count(), SHOWN_ERRORS + 1);
    assert!(text.ends_with("\n... and 99,900 more errors"), "{text}");
    assert_located(&text, "big.toml");
    assert_eq!(
        text.lines().next().unwrap(),
        "big.toml:200003:11: duplicate table [services.a]: it is already defined on line 200001; a table may be defined only once, so put all its keys under the first header"
    );
}

#[test]
fn errors_past_the_kept_ones_are_counted() {
    // 150,000 unknown keys.
    let keys: String = (0..150_000).map(|i| format!("k{i}=1\n")).collect();
    let src = format!("[vigil]\n{keys}");
    let errs = errors(&src);
    assert_eq!(errs.len(), 150_000, "every error counted");
    assert_eq!(errs.0.len(), KEPT_ERRORS, "the first ones kept");
    assert_eq!(errs.0[0].line, 2);
    assert_eq!(errs.0[KEPT_ERRORS - 1].line, KEPT_ERRORS + 1);
    assert!(errs.to_string().ends_with("\n... and 149,900 more errors"));
}

#[test]
fn a_100_000_error_line_has_every_column_right() {
    // One long line of wrong types between non-ASCII strings: columns count characters.
    let src = format!(
        "[services.a]\ndriver = \"command\"\nrestart_command = [{}]\n",
        vec!["1"; 100_000].join(",\"é\",")
    );
    let errs = errors(&src);
    assert_eq!(errs.len(), 100_000);
    let first = &errs.0[0];
    assert_eq!((first.line, first.col), (3, 20));
    // Integer 2k is at byte 19 + 7k (`1,"é",` is 7 bytes) but column 20 + 6k.
    let e = errs
        .0
        .iter()
        .find(|e| e.key_path.ends_with("[2000]"))
        .unwrap();
    assert_eq!((e.line, e.col), (3, 20 + 6 * 1000), "{e}");
    let e = errs.0.last().unwrap();
    assert_eq!((e.line, e.col), (3, 20 + 6 * 99_999), "{e}");
}
