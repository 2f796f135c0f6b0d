//! Shared by the integration tests: journalctl's export format, the reference output.
#![allow(
    dead_code,
    clippy::disallowed_methods,
    reason = "each test binary uses a part; journalctl is the oracle"
)]

use std::path::Path;
use std::process::Command;

/// `journalctl -o export` of one file: per entry, its cursor and its fields in order.
pub fn export(file: &Path) -> Vec<(String, Vec<Vec<u8>>)> {
    parse_export(&journalctl(|c| {
        c.arg("--file")
            .arg(file)
            .args(["-o", "export", "--no-pager"])
    }))
}

/// journalctl's output with the arguments `args` adds; panics if it fails.
fn journalctl(args: impl FnOnce(&mut Command) -> &mut Command) -> Vec<u8> {
    let mut command = Command::new("journalctl");
    let out = args(&mut command).output().expect("run journalctl");
    assert!(
        out.status.success(),
        "journalctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Parses export-format text: per entry, its `__CURSOR` and its fields (`NAME=value`).
pub fn parse_export(b: &[u8]) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut entries = Vec::new();
    let (mut cursor, mut fields) = (String::new(), Vec::new());
    let mut i = 0;
    while i < b.len() {
        let nl = b[i..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |p| i + p);
        let line = &b[i..nl];
        if line.is_empty() {
            entries.push((std::mem::take(&mut cursor), std::mem::take(&mut fields)));
            i = nl + 1;
            continue;
        }
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            let name = &line[..eq];
            if name == b"__CURSOR" {
                cursor = String::from_utf8_lossy(&line[eq + 1..]).into_owned();
            } else if !name.starts_with(b"__") {
                fields.push(line.to_vec());
            }
            i = nl + 1;
        } else {
            // Binary field: NAME\n, 64-bit LE length, value, \n.
            let len = u64::from_le_bytes(b[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let mut f = line.to_vec();
            f.push(b'=');
            f.extend_from_slice(&b[nl + 9..nl + 9 + len]);
            fields.push(f);
            i = nl + 9 + len + 1;
        }
    }
    entries
}

/// The messages `journalctl -D root <matches>` shows, one per line (`-o cat`), in the
/// files journald still keeps: with `["-u", unit]`, the entries journald attributed to the
/// unit; with `["-t", tag]`, a writer's lines whatever journald attributed them to.
pub fn messages(root: &Path, matches: &[&str]) -> Vec<String> {
    let out = journalctl(|c| {
        c.arg("-D")
            .arg(root)
            .args(matches)
            .args(["-o", "cat", "-q", "--no-pager"])
    });
    String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_owned)
        .collect()
}
