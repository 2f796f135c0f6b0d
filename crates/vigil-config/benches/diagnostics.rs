//! `vigil config check` on huge broken files: `load` (read, parse, validate) and the
//! printed report (the first 100 errors and a count), as every command that loads the
//! configuration does. The target is well under a second for any file up to 10 MB.
//!
//! The shapes are the issue's: duplicate tables after many comment lines (426 KB took
//! 9.7 s), 100,000 errors of several kinds in 10 MB, a long line of errors, and the
//! floods a file can hold most of (one error every 2-4 bytes). Run with
//! `cargo bench -p vigil-config --bench diagnostics`; the load average is printed before
//! and after, since the machine is shared.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

fn duplicate_tables_after_comments(tables: usize, comment_lines: usize) -> String {
    let mut s = "#\n".repeat(comment_lines);
    s.push_str(&"[services.a]\n".repeat(tables));
    s
}

/// ~10 MB, 100,000 errors: unknown keys (with a suggestion) and invalid durations.
fn ten_megabytes_of_mistakes() -> String {
    let pad = format!("# {}\n", "-".repeat(40));
    let mut s = String::with_capacity(10 << 20);
    for i in 0..50_000 {
        s.push_str(&format!(
            "[services.s{i}]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\ncomand_timeout = \"5s\"\n\
             [services.s{i}.checks.c]\nkind = \"tcp\"\nhost = \"localhost\"\nport = 80\nevery = \"5x\"\n"
        ));
        s.push_str(&pad);
        s.push_str(&pad);
    }
    s
}

/// ~10 MB, 100,000 duplicate tables after 200,000 comment lines, each after a comment.
fn ten_megabytes_of_duplicate_tables() -> String {
    let pad = format!("# {}\n", "=".repeat(90));
    let mut s = "#\n".repeat(200_000);
    for _ in 0..100_001 {
        s.push_str("[services.a]\n");
        s.push_str(&pad);
    }
    s
}

/// A valid ~10 MB file: 50,000 services with an HTTP check each.
fn ten_megabytes_valid() -> String {
    (0..50_000)
        .map(|i| {
            format!(
                "[services.s{i}]\ndriver = \"command\"\nrestart_command = [\"/usr/bin/systemctl\", \"restart\", \"s{i}\"]\n\n\
                 [services.s{i}.checks.health]\nkind = \"http\"\nurl = \"http://127.0.0.1:8080/health\"\nevery = \"30s\"\n\n"
            )
        })
        .collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    eprintln!("load average before: {}", load_average().trim());
    let dir = std::env::temp_dir().join(format!("vigil-config-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases: Vec<(&str, String)> = vec![
        (
            "426KB_2000_duplicate_tables",
            duplicate_tables_after_comments(2000, 200_000),
        ),
        ("10MB_100k_errors", ten_megabytes_of_mistakes()),
        (
            "10MB_100k_duplicate_tables",
            ten_megabytes_of_duplicate_tables(),
        ),
        (
            "800KB_400k_errors_on_one_line",
            format!(
                "[services.a]\ndriver = \"command\"\nrestart_command = [{}]\n",
                vec!["1"; 400_000].join(",")
            ),
        ),
        ("10MB_2.5M_duplicate_keys", "a=1\n".repeat(2_500_000)),
        ("10MB_15M_syntax_errors", "=\n".repeat(5_000_000)),
        ("10MB_valid", ten_megabytes_valid()),
    ];
    let mut group = c.benchmark_group("config_check");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for (name, src) in &cases {
        let path: PathBuf = dir.join(format!("{name}.toml"));
        std::fs::write(&path, src).expect("write the case");
        group.bench_function(*name, |b| b.iter(|| check(black_box(&path))));
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("load average after: {}", load_average().trim());
}

/// What `vigil config check` does: load, then print the report.
fn check(path: &Path) -> usize {
    match vigil_config::load(path) {
        Ok(config) => config.services.len(),
        Err(errors) => errors.to_string().len() + errors.len(),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
