//! Never panic, whatever the input: mutated and truncated copies of the complete example,
//! and more than 10,000 configurations generated from the schema's own keys with wrong
//! types, broken durations, unknown keys, duplicate tables, deep dotted headers, huge
//! values, invalid UTF-8 and truncations.
//!
//! Each input must either parse or fail with well-formed errors (1-based positions inside
//! the file, a message on one line, a sane key path); nothing may panic.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;

use vigil_config::schema::{Dflt, KeyDoc, Section, Ty};
use vigil_config::{COMPLETE_EXAMPLE, ConfigErrors, parse, schema};

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "\"",
    "'",
    "=",
    ",",
    ".",
    "\n",
    "#",
    " ",
    "0",
    "-1",
    "1e400",
    "99999999999999999999",
    "\"5x\"",
    "\"0\"",
    "[]",
    "{}",
    "\"\"",
    "true",
    "1979-05-27",
    "nan",
    "services.",
    "checks.",
    "kind = \"tcp\"",
    "kind = \"websocket\"",
    "driver = \"exec\"",
    "every",
    "cron = \"* * *\"",
    "timezone = \"Nowhere\"",
    "\u{0}",
    "é",
    "\\u0000",
    "\t",
    "port = 0",
    "url = \"http://\"",
    "expect_status = [\"1-2\", 999]",
    "max_body = \"9GiB\"",
    "on_failure = { exec = [] }",
    "body_regex = \"[\"",
    "backoff = { initial = \"1h\" }",
];

/// Values of every TOML type, valid and invalid for most keys.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "65536",
    "1.5",
    "-0.0",
    "inf",
    "nan",
    "true",
    "\"\"",
    "\"5x\"",
    "\"0\"",
    "\"30s\"",
    "\"-5s\"",
    "\"1d\"",
    "\"PT1S\"",
    "\"64KiB\"",
    "\"restart\"",
    "\"tcp\"",
    "\"http\"",
    "\"command\"",
    "\"exec\"",
    "\"UTC\"",
    "\"Nowhere/City\"",
    "\"0 * * * *\"",
    "\"* * *\"",
    "\"http://\"",
    "\"https://x:0\"",
    "\"200-100\"",
    "\"(\"",
    "[]",
    "[\"\"]",
    "[1, \"a\"]",
    "[\"/bin/true\"]",
    "{}",
    "{ exec = [] }",
    "{ initial = \"1s\" }",
    "99999999999999999999",
    "1979-05-27",
    "07:32:00",
    "\"\\u0000\"",
];

fn char_floor(s: &str, mut at: usize) -> usize {
    at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// `structural` mutations edit raw text (mostly TOML syntax errors); the others keep the
/// TOML well-formed and break values, keys and required lines (validation errors).
fn mutate(rng: &mut Rng, src: &str, structural: bool) -> String {
    let mut s = src.to_owned();
    for _ in 0..1 + rng.below(4) {
        let at = char_floor(&s, rng.below(s.len() + 1));
        let mut lines: Vec<String> = s.lines().map(str::to_owned).collect();
        let line = rng.below(lines.len());
        let op = if structural {
            rng.below(4)
        } else {
            4 + rng.below(5)
        };
        match op {
            0 => {
                // Delete a few characters.
                let end = char_floor(&s, at + 1 + rng.below(8));
                s.replace_range(at..end, "");
            }
            1 => s.insert_str(at, PIECES[rng.below(PIECES.len())]),
            2 => {
                // Duplicate a line elsewhere.
                let copy = lines.get(line).cloned().unwrap_or_default();
                s.insert_str(at, &format!("\n{copy}\n"));
            }
            3 => s.truncate(at),
            4..=6 => {
                // Replace a value with one of another type or out of range.
                if let Some(l) = lines.get_mut(line)
                    && let Some((key, _)) = l.split_once(" = ")
                {
                    *l = format!("{key} = {}", VALUES[rng.below(VALUES.len())]);
                }
                s = lines.join("\n");
            }
            7 => {
                // Rename a key to another known key (or a typo of it).
                let keys: Vec<&str> = schema::SECTIONS
                    .iter()
                    .flat_map(|s| s.keys.iter().map(|k| k.key))
                    .collect();
                let mut new_key = keys[rng.below(keys.len())].to_owned();
                if rng.below(2) == 0 && new_key.len() > 2 {
                    let cut = rng.below(new_key.len());
                    new_key.remove(cut);
                }
                if let Some(l) = lines.get_mut(line)
                    && let Some((_, value)) = l.split_once(" = ")
                {
                    *l = format!("{new_key} = {value}");
                }
                s = lines.join("\n");
            }
            _ => {
                // Drop a whole line (often a required key).
                if line < lines.len() {
                    lines.remove(line);
                }
                s = lines.join("\n");
            }
        }
    }
    s
}

enum Outcome {
    Valid,
    /// Only TOML syntax errors (they have no key path).
    Syntax,
    Semantic,
}

fn check(src: &str) -> Outcome {
    let result = std::panic::catch_unwind(|| parse(src, Path::new("fuzz.toml")));
    let Ok(result) = result else {
        panic!("parse panicked on:\n{src}");
    };
    if let Err(errs) = result {
        assert_well_formed(&errs, src, Path::new("fuzz.toml"));
        if errs.iter().all(|e| e.key_path.is_empty()) {
            return Outcome::Syntax;
        }
        return Outcome::Semantic;
    }
    Outcome::Valid
}

/// Every error is located inside its file (the fuzzed one, or a file it includes), says
/// something on one line, and has a key path made of well-formed segments.
fn assert_well_formed(errs: &ConfigErrors, src: &str, path: &Path) {
    assert!(
        !errs.is_empty(),
        "an error result without errors for:\n{src}"
    );
    let lines = src.split('\n').count();
    for e in errs {
        assert!(e.line >= 1, "line 0: {e}\n{src}");
        if e.file == path {
            assert!(
                e.line <= lines,
                "line {} outside the file: {e}\n{src}",
                e.line
            );
        }
        assert!(e.col >= 1, "column 0: {e}\n{src}");
        assert!(!e.message.is_empty());
        assert!(!e.message.contains('\n'), "multi-line message: {e:?}");
        assert!(
            sane_key_path(&e.key_path),
            "key path {:?}: {e}\n{src}",
            e.key_path
        );
    }
    let text = errs.to_string();
    assert!(text.lines().count() <= vigil_config::SHOWN_ERRORS + 1);
}

/// Empty, or dotted segments that are bare keys or quoted strings, each optionally
/// indexed (`schedule[0]`).
fn sane_key_path(path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    let mut rest = path;
    loop {
        // A segment: a quoted string or a bare key...
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let Some(end) = end else { return false };
            rest = &quoted[end + 1..];
        } else {
            let bare = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            if bare == 0 {
                return false;
            }
            rest = &rest[bare..];
        }
        // ...with indexes...
        while let Some(index) = rest.strip_prefix('[') {
            let Some(end) = index.find(']') else {
                return false;
            };
            if index[..end].is_empty() || !index[..end].bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            rest = &index[end + 1..];
        }
        // ...then a dot and the next segment, or the end.
        match rest.strip_prefix('.') {
            Some(next) => rest = next,
            None => return rest.is_empty(),
        }
    }
}

#[test]
fn every_truncation_of_the_complete_example() {
    for end in 0..=COMPLETE_EXAMPLE.len() {
        if COMPLETE_EXAMPLE.is_char_boundary(end) {
            let _ = check(&COMPLETE_EXAMPLE[..end]);
        }
    }
}

#[test]
fn hundreds_of_random_text_mutations() {
    let mut rng = Rng(0x5EED_F0CA_CC1A_u64);
    for _ in 0..500 {
        check(&mutate(&mut rng, COMPLETE_EXAMPLE, true));
    }
}

#[test]
fn hundreds_of_random_value_and_key_mutations() {
    let mut rng = Rng(0xC0FF_EE15_600D_u64);
    let (mut valid, mut syntax, mut semantic) = (0, 0, 0);
    for _ in 0..1000 {
        match check(&mutate(&mut rng, COMPLETE_EXAMPLE, false)) {
            Outcome::Valid => valid += 1,
            Outcome::Syntax => syntax += 1,
            Outcome::Semantic => semantic += 1,
        }
    }
    // These mutations must mostly get past the TOML parser, or the validator goes untested.
    assert!(
        semantic > 600,
        "valid {valid}, syntax errors {syntax}, validation errors {semantic}"
    );
}

#[test]
fn odd_whole_inputs() {
    for src in [
        "",
        "\u{feff}",
        "\n\n\n",
        "=",
        "[",
        "[[a]]\n[a]",
        "a = 1\n[a]",
        "services = 1",
        "services = []",
        "[services]\nweb = []",
        "[[services]]",
        "[services.web]\nchecks = 1",
        "[services.web]\nschedule = \"x\"",
        "[services.web]\nschedule = [1]",
        "[services.web]\nmaintenance = \"x\"",
        "[services.web]\nmaintenance = [1]",
        "[services.web]\nmaintenance = [{}]\ndriver = \"command\"\nrestart_command = [\"x\"]",
        "[groups.g]\nmaintenance = {}",
        "[groups.g]\nmembers = [\"nope\"]\n[[groups.g.maintenance]]\naction = \"stop\"",
        "[services.web]\nguard = 5\ndriver = \"command\"\nrestart_command = [\"x\"]",
        "vigil = { state_dir = \"\" }",
        "defaults = []",
        "[defaults]\nguard = []",
        "[services.\"\"]\ndriver = \"command\"",
        &format!("[services.{}]\ndriver = \"command\"", "a".repeat(100)),
        &format!("x = \"{}\"", "y".repeat(10_000)),
        &"[a]\n".repeat(200),
    ] {
        let _ = check(src);
    }
}

// ---- configurations generated from the schema ----

/// Random picks.
impl Rng {
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Values that are wrong for most keys: other types, broken durations and sizes, huge
/// and empty things.
fn wrong_value(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => format!("\"{}\"", "x".repeat(1 + rng.below(20_000))),
        1 => format!("[{}]", vec!["1"; 1 + rng.below(2000)].join(", ")),
        2 => (rng.pick(&[
            "\"5x\"",
            "\"-1s\"",
            "\"1d\"",
            "\"99999999999999h\"",
            "\"1.5.5s\"",
            "\"PT\"",
            "\"9GiB\"",
            "\"1.5MiB\"",
            "\"\"",
            "\" \"",
            "\"\\u0000\"",
        ]))
        .to_owned(),
        3 => (rng.pick(&[
            "-1",
            "0",
            "65536",
            "99999999999999999999",
            "-9223372036854775808",
            "1e400",
            "nan",
            "-inf",
            "1.0",
        ]))
        .to_owned(),
        4 => (rng.pick(&[
            "true",
            "1979-05-27",
            "07:32:00",
            "1979-05-27T07:32:00Z",
            "{}",
            "{ a = 1 }",
            "[]",
            "[[]]",
            "[{}]",
        ]))
        .to_owned(),
        _ => VALUES[rng.below(VALUES.len())].to_owned(),
    }
}

/// A value of the right shape for `key` (most of the time valid, so that validation goes
/// deep), or a wrong one.
fn value_for(rng: &mut Rng, key: &KeyDoc, section: &Section, names: &Names) -> String {
    let quoted = |s: &str| format!("{s:?}");
    if names.clean {
        return clean_value(key, section);
    }
    if rng.chance(12) {
        return wrong_value(rng);
    }
    match key.key {
        "url" => quoted(rng.pick(&["http://127.0.0.1:8080/h", "ws://127.0.0.1/ws", "https://x/"])),
        "webhook_url" => quoted("https://hooks.example.com/T/B/X"),
        "host" | "smtp_host" => quoted(rng.pick(&["localhost", "127.0.0.1", "db.example.com"])),
        "unit" => quoted(rng.pick(&["web", "web.service", "x.timer", "bad unit"])),
        "journal_unit" => quoted(rng.pick(&["web", "web.service"])),
        "container" => quoted("web"),
        "pattern" | "body_regex" => quoted(rng.pick(&["error", "(?i)panic", "("])),
        "servers" => r#"["pool.ntp.org", "[::1]:123", "time.example.com:1234"]"#.to_owned(),
        "members" | "after" => format!(
            "[{}]",
            (0..rng.below(4))
                .map(|_| quoted(&names.services[rng.below(names.services.len())]))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "alerts" => format!(
            "[{}]",
            quoted(&names.channels[rng.below(names.channels.len())])
        ),
        "ready_check" => quoted(rng.pick(&["c0", "c1", "nope"])),
        "events" => r#"["failing", "recovered", "given-up"]"#.to_owned(),
        "from" => quoted(rng.pick(&["vigil@example.com", "Vigil <v@example.com>", "nobody"])),
        "to" => r#"["ops@example.com"]"#.to_owned(),
        "cron" => quoted(rng.pick(&[
            "0 4 * * *",
            "*/5 * * * *",
            "0 0 29 2 *",
            ",,, * * * *",
            ",,, * * * * *",
            "0 0 31 2 *",
            "0 0 * * 5#5",
            "61 * * * *",
        ])),
        "timezone" => quoted(rng.pick(&["UTC", "Europe/Berlin", "Europe/Berln", "Mars/Base"])),
        "interface" => quoted("lo"),
        "expect_status" => rng
            .pick(&["200", r#"[200, "300-302"]"#, r#""399-200""#])
            .to_string(),
        "headers" | "env" => r#"{ Accept = "text/plain", X-Token = "t" }"#.to_owned(),
        "stdout" | "stderr" => rng
            .pick(&[r#""log""#, r#""null""#, r#"{ file = "/tmp/out" }"#])
            .to_string(),
        "stop_signal" | "watchdog_signal" => quoted(rng.pick(&["SIGTERM", "KILL", "SIGNOPE"])),
        "restart" => quoted(rng.pick(&["on-failure", "always", "sometimes"])),
        "success_exit_status" => r#"[75, "SIGUSR1"]"#.to_owned(),
        "bus_address" => quoted("unix:path=/run/dbus/x"),
        "docker_host" => quoted("unix:///var/run/docker.sock"),
        "on_failure" => rng
            .pick(&[
                r#""restart""#,
                r#""alert""#,
                r#""restart-group""#,
                r#"{ exec = ["/bin/fix"] }"#,
            ])
            .to_string(),
        "proxy" => quoted(rng.pick(&["socks5h://u:p@127.0.0.1:1080", "ftp://x"])),
        "address" => quoted(rng.pick(&["0.0.0.0", "::1", "localhost"])),
        "include" => r#"["fuzz-nonexistent.d/*.toml"]"#.to_owned(),
        "max_cpu_percent" => "50.5".to_owned(),
        _ => match key.ty {
            Ty::String => quoted(rng.pick(&["x", "web", "/tmp/x", "vigil"])),
            Ty::Bool => rng.pick(&["true", "false"]).to_string(),
            Ty::Duration { .. } => quoted(rng.pick(&["30s", "5m", "1h 30m", "250ms", "0"])),
            Ty::Size => rng.pick(&[r#""64KiB""#, "1000", r#""1MiB""#]).to_string(),
            Ty::Path => quoted(rng.pick(&["/tmp/x", "relative/x", ""])),
            Ty::Argv => rng
                .pick(&[r#"["/bin/true"]"#, r#"["/bin/sh", "-c", "exit 0"]"#, "[]"])
                .to_string(),
            Ty::Int { min, max } => {
                let hi = max.unwrap_or(min + 100).min(min + 100);
                (min + i64::try_from(rng.below(usize::try_from(hi - min + 1).unwrap_or(1)))
                    .unwrap_or(0))
                .to_string()
            }
            Ty::Float { min } => format!("{:?}", min + 0.5),
            Ty::OneOf(options) => quoted(rng.pick(options)),
            Ty::Driver => quoted(rng.pick(&["command", "exec", "docker", "systemd", "comand"])),
            Ty::CheckKind => quoted(rng.pick(&["http", "tcp", "nope"])),
            Ty::Table | Ty::ArrayOfTables | Ty::Other(_) => wrong_value(rng),
        },
    }
}

struct Names {
    services: Vec<String>,
    channels: Vec<String>,
    /// Only keys and values that validate (to reach the model and round-trip it).
    clean: bool,
}

/// Keys a clean configuration leaves out: they refer across tables or constrain each
/// other (pairs, exactly-one-of groups, orderings).
const RISKY: &[&str] = &[
    // They need `http_listen` (and each other).
    "http_token_file",
    "http_tls_cert",
    "http_tls_key",
    // Names a `[fleet.keys.NAME]`, which generated files have no `[fleet]` for.
    "fleet_key",
    "after",
    "ready_check",
    "alerts",
    "members",
    "watchdog_signal",
    "fast_every",
    "warn",
    "critical",
    "warn_days",
    "critical_days",
    "pid_file",
    "journal_unit",
    "journal_directory",
    "password",
    "password_file",
    "tls",
    "ca_file",
    "insecure",
    "client_cert",
    "client_key",
    "url_file",
    "url_env",
    "secret",
    "secret_file",
    "secret_env",
    "webhook_url_file",
    "webhook_url_env",
    "password_env",
    "username",
    "bus_address",
    "include",
    "cron",
    "timezone",
    "require_healthy",
];

/// A value that validates for `key` in `section`.
fn clean_value(key: &KeyDoc, section: &Section) -> String {
    let quoted = |s: &str| format!("{s:?}");
    match key.key {
        "url" if section.id == "check-websocket" => quoted("ws://127.0.0.1:8083/mqtt"),
        // Channel URLs are secrets, given by variable (see `keys_of`).
        "url" if section.id == "alert-webhook" => quoted("HOOK_URL"),
        "webhook_url" => quoted("SLACK_URL"),
        "url" => quoted("http://127.0.0.1:8080/health"),
        "host" | "smtp_host" | "server_name" => quoted("localhost"),
        "unit" => quoted("web.service"),
        "container" => quoted("web"),
        "pattern" | "body_regex" => quoted("error"),
        "servers" => r#"["pool.ntp.org", "[::1]:123"]"#.to_owned(),
        "events" => r#"["failing", "recovered"]"#.to_owned(),
        "from" => quoted("Vigil <vigil@example.com>"),
        "to" => r#"["ops@example.com"]"#.to_owned(),
        "interface" => quoted("lo"),
        "name" => quoted("nginx"),
        "expect_status" => r#"[200, "300-302"]"#.to_owned(),
        "headers" | "env" => r#"{ Accept = "text/plain", User-Agent = "vigil" }"#.to_owned(),
        "stdout" | "stderr" => r#"{ file = "/tmp/out" }"#.to_owned(),
        "stop_signal" => quoted("SIGINT"),
        "restart" => quoted("always"),
        "success_exit_status" => r#"[75, "SIGUSR1"]"#.to_owned(),
        "docker_host" => quoted("unix:///var/run/docker.sock"),
        "on_failure" => r#"{ exec = ["/bin/fix", "it"] }"#.to_owned(),
        "proxy" => quoted("socks5h://ops@127.0.0.1:1080"),
        "address" => quoted("::1"),
        "max_cpu_percent" => "50.5".to_owned(),
        // Longer than a window's `duration` ("1m 30s" below), so windows never overlap.
        "every" if matches!(section.id, "schedule" | "maintenance") => quoted("1h"),
        // A stop window needs `stop_command` on a command service, which a clean file may lack.
        "action" if section.id == "maintenance" => quoted("pause"),
        "control_socket" => quoted("/run/vigil/fuzz.sock"),
        "http_listen" => quoted("127.0.0.1:9731"),
        _ => match key.ty {
            Ty::String => quoted("vigil"),
            Ty::Bool => "true".to_owned(),
            Ty::Duration { .. } => quoted("1m 30s"),
            Ty::Size => quoted("64KiB"),
            Ty::Path => quoted("relative/x"),
            Ty::Argv => r#"["/bin/sh", "-c", "exit 0"]"#.to_owned(),
            Ty::Int { min, .. } => (min + 7).to_string(),
            Ty::Float { min } => format!("{:?}", min + 0.5),
            Ty::OneOf(options) => quoted(options[options.len() / 2]),
            _ => quoted("?"),
        },
    }
}

/// A key's line in a table of `sections`: most keys documented (a subset), a few
/// unknown or misspelled.
fn keys_of(rng: &mut Rng, out: &mut String, sections: &[&Section], names: &Names) {
    // `driver` and `kind` are written with the header.
    let mut written = vec!["driver", "kind"];
    for section in sections {
        for key in section.keys {
            let required = matches!(key.default, Dflt::Required);
            if matches!(key.ty, Ty::Table | Ty::ArrayOfTables) || written.contains(&key.key) {
                continue;
            }
            // (Every header value of a channel is redacted in the effective config.)
            let risky = names.clean
                && (RISKY.contains(&key.key)
                    || (section.id == "alert-webhook" && key.key == "headers"));
            // A process check names its process, a log check its file, a schedule its
            // interval, a channel its URL.
            let needed = names.clean
                && (matches!(key.key, "name" | "path" | "webhook_url")
                    || (matches!(section.id, "schedule" | "maintenance") && key.key == "every")
                    || (section.id == "alert-webhook" && key.key == "url"));
            if (required || rng.chance(35) || needed) && !risky {
                written.push(key.key);
                let value = value_for(rng, key, section, names);
                // A clean file gives channel URLs (secrets) by variable, so that the
                // effective configuration has nothing to redact.
                let name = match (names.clean, section.id, key.key) {
                    (true, "alert-webhook", "url") => "url_env",
                    (true, "alert-slack", "webhook_url") => "webhook_url_env",
                    _ => key.key,
                };
                let _ = writeln_str(out, &format!("{name} = {value}"));
            }
        }
    }
    if !names.clean && rng.chance(15) {
        let known: Vec<&str> = sections
            .iter()
            .flat_map(|s| s.keys.iter().map(|k| k.key))
            .collect();
        let mut typo = rng.pick(&known).to_string();
        if typo.len() > 2 {
            typo.remove(rng.below(typo.len()));
        }
        let key = if rng.chance(50) {
            typo
        } else {
            format!("unknown_{}", rng.below(1000))
        };
        let _ = writeln_str(out, &format!("{key} = 1"));
    }
}

fn writeln_str(out: &mut String, line: &str) -> std::fmt::Result {
    out.push_str(line);
    out.push('\n');
    Ok(())
}

/// A configuration from the grammar of `schema`: settings, defaults, services with their
/// driver's keys, checks of every kind, schedules, maintenance windows, groups (with
/// theirs) and alert channels.
fn generate(rng: &mut Rng, clean: bool) -> String {
    let names = Names {
        services: (0..1 + rng.below(4)).map(|i| format!("s{i}")).collect(),
        channels: vec!["a0".to_owned(), "a1".to_owned()],
        clean,
    };
    let mut out = String::new();
    if !clean && rng.chance(5) {
        let _ = writeln_str(&mut out, "include = [\"fuzz-nonexistent.d/*.toml\"]");
    }
    if rng.chance(50) {
        out.push_str("[vigil]\n");
        keys_of(rng, &mut out, &[&schema::VIGIL], &names);
    }
    if rng.chance(50) {
        out.push_str("[defaults.guard]\n");
        keys_of(rng, &mut out, &[&schema::GUARD], &names);
        if rng.chance(40) {
            out.push_str("[defaults.guard.backoff]\n");
            keys_of(rng, &mut out, &[&schema::BACKOFF], &names);
        }
    }
    for service in &names.services {
        let (driver, driver_keys) = rng.pick(schema::DRIVERS);
        out.push_str(&format!("[services.{service}]\ndriver = \"{driver}\"\n"));
        let mut sections: Vec<&Section> = vec![driver_keys];
        if rng.chance(70) {
            sections.push(&schema::SERVICE);
        }
        keys_of(rng, &mut out, &sections, &names);
        if rng.chance(30) {
            out.push_str(&format!("[services.{service}.guard]\n"));
            keys_of(rng, &mut out, &[&schema::GUARD], &names);
        }
        for c in 0..rng.below(4) {
            let (kind, kind_keys) = rng.pick(schema::CHECK_KINDS);
            out.push_str(&format!(
                "[services.{service}.checks.c{c}]\nkind = \"{kind}\"\n"
            ));
            keys_of(rng, &mut out, &[&schema::CHECK, kind_keys], &names);
        }
        for _ in 0..rng.below(3) {
            out.push_str(&format!("[[services.{service}.schedule]]\n"));
            keys_of(rng, &mut out, &[&schema::SCHEDULE], &names);
        }
        for _ in 0..rng.below(3) {
            out.push_str(&format!("[[services.{service}.maintenance]]\n"));
            keys_of(rng, &mut out, &[&schema::MAINTENANCE], &names);
        }
    }
    if !clean && rng.chance(30) {
        out.push_str("[groups.g]\n");
        keys_of(rng, &mut out, &[&schema::GROUP], &names);
        for _ in 0..rng.below(3) {
            out.push_str("[[groups.g.maintenance]]\n");
            keys_of(rng, &mut out, &[&schema::MAINTENANCE], &names);
        }
    }
    for channel in &names.channels {
        if rng.chance(40) {
            let (kind, kind_keys) = rng.pick(schema::ALERT_KINDS);
            out.push_str(&format!("[alerts.{channel}]\nkind = \"{kind}\"\n"));
            keys_of(rng, &mut out, &[&schema::ALERT, kind_keys], &names);
        }
    }
    out
}

/// Breaks the structure of a generated file: duplicate tables, deep dotted headers,
/// junk, truncation.
fn break_structure(rng: &mut Rng, src: &str) -> String {
    let mut lines: Vec<String> = src.lines().map(str::to_owned).collect();
    match rng.below(5) {
        0 => {
            // Duplicate a table header (and what follows it) further down.
            let headers: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].starts_with('['))
                .collect();
            if !headers.is_empty() {
                let at = rng.pick(&headers);
                let copy = lines[at].clone();
                let to = at + 1 + rng.below(lines.len() - at);
                lines.insert(to, copy);
            }
        }
        1 => {
            let parts = 60 + rng.below(80);
            let header = format!("[{}]", vec!["a"; parts].join("."));
            let at = rng.below(lines.len() + 1);
            lines.insert(at, header);
        }
        2 => {
            let at = rng.below(lines.len() + 1);
            let junk = rng.pick(PIECES).to_string();
            lines.insert(at, junk);
        }
        3 => {
            let parts = 60 + rng.below(80);
            let at = rng.below(lines.len() + 1);
            lines.insert(at, format!("{} = 1", vec!["k"; parts].join(".")));
        }
        _ => {
            let mut s = lines.join("\n");
            s.truncate(char_floor(&s, rng.below(s.len() + 1)));
            return s;
        }
    }
    lines.join("\n")
}

#[test]
fn ten_thousand_generated_configurations() {
    let mut rng = Rng(0x0DD5_EED0_F00D_u64);
    let (mut valid, mut syntax, mut semantic) = (0, 0, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut round_trips = 0;
    for i in 0..10_500 {
        let clean = i % 4 == 2;
        let mut src = generate(&mut rng, clean);
        if clean {
            // A clean file validates, and its effective configuration validates back
            // into the same model.
            let config = parse(&src, Path::new("fuzz.toml"))
                .unwrap_or_else(|e| panic!("{e}\n--- source:\n{src}"));
            let shown = vigil_config::render_effective(&config);
            let again = parse(&shown, Path::new("fuzz.toml"))
                .unwrap_or_else(|e| panic!("{e}\n--- rendered:\n{shown}\n--- source:\n{src}"));
            assert_eq!(again, config, "--- rendered:\n{shown}\n--- source:\n{src}");
            round_trips += 1;
            continue;
        }
        if i % 4 == 1 {
            src = break_structure(&mut rng, &src);
        }
        if i % 20 == 3 {
            // Invalid UTF-8 somewhere: only `load` sees bytes.
            let mut bytes = src.into_bytes();
            let at = rng.below(bytes.len() + 1);
            bytes.insert(at, rng.pick(&[0xff_u8, 0xc3, 0x80, 0xfe]));
            let path = dir.path().join("fuzz.toml");
            std::fs::write(&path, &bytes).unwrap();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let result = std::panic::catch_unwind(|| vigil_config::load(&path));
            match result {
                Ok(Err(errs)) => assert_well_formed(&errs, &text, &path),
                Ok(Ok(_)) => {}
                Err(_) => panic!("load panicked on bytes:\n{text}"),
            }
            continue;
        }
        match check(&src) {
            Outcome::Valid => valid += 1,
            Outcome::Syntax => syntax += 1,
            Outcome::Semantic => semantic += 1,
        }
    }
    // The generator must reach every layer: valid files, TOML errors, validation errors.
    assert!(
        round_trips > 2500 && syntax > 1000 && semantic > 4000,
        "round trips {round_trips}, valid {valid}, syntax errors {syntax}, validation errors {semantic}"
    );
}
