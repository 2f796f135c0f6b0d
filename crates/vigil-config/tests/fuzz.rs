//! Never panic, whatever the input: hundreds of mutated and truncated configurations.
//!
//! Each input must either parse or fail with well-formed errors (1-based positions inside
//! the file, a message); nothing may panic.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;

use vigil_config::{COMPLETE_EXAMPLE, parse, schema};

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
        assert!(
            !errs.is_empty(),
            "an error result without errors for:\n{src}"
        );
        let lines = src.split('\n').count();
        for e in &errs {
            assert!(
                e.line >= 1 && e.line <= lines,
                "line {} outside the file: {e}\n{src}",
                e.line
            );
            assert!(e.col >= 1, "column 0: {e}");
            assert!(!e.message.is_empty());
            assert!(!e.message.contains('\n'), "multi-line message: {e:?}");
        }
        let _ = errs.to_string();
        if errs.iter().all(|e| e.key_path.is_empty()) {
            return Outcome::Syntax;
        }
        return Outcome::Semantic;
    }
    Outcome::Valid
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
