//! Never panic, whatever the input: hundreds of mutated and truncated configurations.
//!
//! Each input must either parse or fail with well-formed errors (1-based positions inside
//! the file, a message); nothing may panic.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;

use vigil_config::{COMPLETE_EXAMPLE, parse};

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

fn mutate(rng: &mut Rng, src: &str) -> String {
    let mut s = src.to_owned();
    for _ in 0..1 + rng.below(4) {
        let mut at = rng.below(s.len() + 1);
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        match rng.below(5) {
            0 => {
                // Delete a few characters.
                let mut end = (at + 1 + rng.below(8)).min(s.len());
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.replace_range(at..end, "");
            }
            1 | 2 => s.insert_str(at, PIECES[rng.below(PIECES.len())]),
            3 => {
                // Duplicate a line.
                let lines: Vec<&str> = s.lines().collect();
                let line = lines[rng.below(lines.len())].to_owned();
                s.insert_str(at, &format!("\n{line}\n"));
            }
            _ => s.truncate(at),
        }
    }
    s
}

fn check(src: &str) {
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
    }
}

#[test]
fn every_truncation_of_the_complete_example() {
    for end in 0..=COMPLETE_EXAMPLE.len() {
        if COMPLETE_EXAMPLE.is_char_boundary(end) {
            check(&COMPLETE_EXAMPLE[..end]);
        }
    }
}

#[test]
fn hundreds_of_random_mutations() {
    let mut rng = Rng(0x5EED_F0CA_CC1A_u64);
    for _ in 0..600 {
        let src = mutate(&mut rng, COMPLETE_EXAMPLE);
        check(&src);
    }
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
        check(src);
    }
}
