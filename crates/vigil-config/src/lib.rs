//! Vigil's configuration: a TOML file parsed with spans and validated into the domain
//! types of [`model`], with every error reported as `file:line:col: key.path: message`.
//!
//! The layers: `toml`'s span-carrying parse tree (syntax errors come from there), then
//! `validate` walks it with the key tables of [`schema`] (which also render the reference,
//! [`reference_markdown`]) and the typed conversions of `value`, collecting every error
//! instead of stopping at the first. Nothing downstream re-validates a [`Config`].
//!
//! Architecture Invariant: the schema is the only list of keys. The validator's
//! unknown-key detection, suggestions and defaults, and `docs/config.md`, all come from it.
//!
//! This crate reads the configuration file, the files its `include` names (see `include`),
//! and a few environment variables for the default `state_dir`; it never writes, spawns or
//! reads a clock.

mod docs;
mod error;
mod include;
pub mod model;
mod render;
pub mod schema;
mod suggest;
mod syntax;
mod validate;
mod value;

use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use docs::{COMPLETE_EXAMPLE, reference_markdown};
pub use error::{ConfigError, ConfigErrors, KEPT_ERRORS, SHOWN_ERRORS};
pub use model::*;
pub use render::{REDACTED, render_effective};
pub use validate::is_valid_name;
pub use value::{parse_duration, parse_proxy, parse_size};

use error::{Collector, Positions, Sources};
use syntax::Problem;
use value::Cx;

/// Reads and validates the configuration file at `path`.
///
/// An unreadable file is one error naming the path and the OS error.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigErrors::new(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            key_path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }])
    })?;
    match String::from_utf8(bytes) {
        Ok(src) => parse(&src, path),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let src = String::from_utf8_lossy(e.as_bytes());
            let mut sources = Sources::new();
            sources.add(path, &src);
            // The lossy copy has the same bytes up to the first invalid one.
            let err = sources.error(valid..valid, "", "the file is not valid UTF-8");
            Err(ConfigErrors::new(vec![err]))
        }
    }
}

/// Validates `src`, the contents of the configuration file `path`, with the files it
/// includes.
///
/// `path` names the file in errors and anchors relative paths (`state_dir`, `ca_file`,
/// `include`); it is not read. The files `include` names are read from disk.
pub fn parse(src: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut errors = Collector::new(KEPT_ERRORS);
    let mut sources = Sources::new();
    sources.add(path, src);
    // The main file first: its `include` names the others.
    let Some(root) = parse_file(&sources, 0, &mut errors) else {
        return Err(errors.into_errors());
    };
    let patterns = include::patterns(root.get_ref(), &sources, &mut errors);
    let included = include::read(&patterns, path, &sources, &mut errors);
    let bases: Vec<usize> = included
        .iter()
        .map(|f| sources.add(&f.path, &f.text))
        .collect();
    let span = root.span();
    let mut merged = root.into_inner();
    for (index, (file, base)) in included.iter().zip(bases).enumerate() {
        if let Some(at) = file.invalid_at {
            let at = base + at;
            let message = "the file is not valid UTF-8";
            errors.push(at, sources.error(at..at, "", message));
            continue;
        }
        let Some(tree) = parse_file(&sources, index + 1, &mut errors) else {
            continue;
        };
        let tree = include::shift_table(tree.into_inner(), base);
        include::merge(&mut merged, tree, path, &sources, &mut errors);
    }
    let mut files = vec![path.to_path_buf()];
    files.extend(included.iter().map(|f| f.path.clone()));
    let mut cx = Cx::new(&sources, errors);
    let root = Spanned::new(span, DeValue::Table(merged));
    let config = validate::config(&mut cx, &root, path, files);
    match config {
        Some(config) if cx.errors.is_empty() => Ok(config),
        Some(_) | None => {
            if cx.errors.is_empty() {
                // Unreachable by construction (every `None` records an error first), but a
                // failure must never come back without a reason.
                let message = "internal error: invalid configuration without a reason";
                cx.error(0..0, &value::KeyPath::default(), message);
            }
            Err(cx.errors.into_errors())
        }
    }
}

/// Parses file `index` of `sources` into `toml`'s tree, or reports its TOML errors.
///
/// `toml` parses first and decides; only a file it rejects is read again by
/// [`syntax::check`], which finds every syntax and structure error with bounded work per
/// error (`toml`'s own recoverable parse builds a formatted error for each, which took
/// seconds for files with millions of them). Should the check find nothing in a file
/// `toml` rejects, `toml`'s own report is used.
fn parse_file<'s>(
    sources: &Sources<'s>,
    index: usize,
    errors: &mut Collector<ConfigError>,
) -> Option<Spanned<DeTable<'s>>> {
    let file = sources.file(index)?;
    let src = file.pos.src();
    if let Ok(root) = DeTable::parse(src) {
        return Some(root);
    }
    let problems = syntax::check(src, KEPT_ERRORS);
    if !problems.is_empty() {
        report(sources, index, problems, errors);
        return None;
    }
    let (_, toml_errors) = DeTable::parse_recoverable(src);
    let mut problems = Collector::new(KEPT_ERRORS);
    for e in &toml_errors {
        let span = e.span().unwrap_or(0..0);
        problems.push(span.start, (span, e.message().replace('\n', "; ")));
    }
    let (problems, _) = problems.finish();
    for (span, message) in without_echoes(problems, &file.pos) {
        let message = syntax_message(&file.pos, &mut None, span.clone(), &message);
        let global = file.base + span.start;
        errors.push(global, sources.error(global..global, "", message));
    }
    if errors.is_empty() {
        // `toml` rejected the file without saying why: never fail without a reason.
        let message = "invalid TOML (the parser gave no details)";
        errors.push(file.base, sources.error(file.base..file.base, "", message));
    }
    None
}

/// Turns the check's problems into errors of file `index`.
fn report(
    sources: &Sources<'_>,
    index: usize,
    problems: Collector<(usize, Problem)>,
    errors: &mut Collector<ConfigError>,
) {
    let Some(file) = sources.file(index) else {
        return;
    };
    let mut headers = None;
    let (kept, total) = problems.finish();
    let counted = kept.len();
    for (offset, problem) in kept {
        let message = match problem {
            Problem::Toml(e) => {
                let span = e
                    .unexpected()
                    .map_or(offset..offset, |s| s.start()..s.end());
                let text = syntax::toml_message(&e).replace('\n', "; ");
                syntax_message(&file.pos, &mut headers, span, &text)
            }
            Problem::TooManyParts { parts } => {
                format!("invalid TOML: this key has {parts} dotted parts; at most 80 are supported")
            }
        };
        let global = file.base + offset;
        errors.push(global, sources.error(global..global, "", message));
    }
    for _ in counted..total {
        errors.count();
    }
}

/// Makes toml's terse messages say what happened, especially for duplicates.
///
/// `headers` caches where each table header first appears (built on the first duplicate
/// table, in one pass over the file).
fn syntax_message(
    pos: &Positions<'_>,
    headers: &mut Option<std::collections::HashMap<String, usize>>,
    span: std::ops::Range<usize>,
    message: &str,
) -> String {
    if message != "duplicate key" {
        return format!("invalid TOML: {message}");
    }
    let key = pos.src().get(span.clone()).unwrap_or("").trim();
    let (line, _) = pos.line_col(span.start);
    let text = pos.line_text(line).trim();
    if text.starts_with('[') {
        let header = header_of(text);
        let first = headers.get_or_insert_with(|| {
            let mut first = std::collections::HashMap::new();
            for l in 1..=pos.line_count() {
                let t = pos.line_text(l).trim_start();
                if t.starts_with('[') {
                    first.entry(header_of(t)).or_insert(l);
                }
            }
            first
        });
        let at = match first.get(&header) {
            Some(&l) if l < line => format!("on line {l}"),
            _ => "earlier in the file".to_owned(),
        };
        format!(
            "duplicate table {header}: it is already defined {at}; a table may be defined only once, so put all its keys under the first header"
        )
    } else {
        format!(
            "duplicate key `{key}`: it is already set in this table; each key may appear only once"
        )
    }
}

/// Drops the "duplicate key" errors that only echo a duplicate table: toml's recovery
/// merges the second `[table]` into the first, so each of its keys is reported again.
fn without_echoes(
    errors: Vec<(std::ops::Range<usize>, String)>,
    pos: &Positions<'_>,
) -> Vec<(std::ops::Range<usize>, String)> {
    // Lines (after a duplicate table's header, up to the next header) whose duplicate
    // keys are echoes, as sorted ranges.
    let mut echo_lines: Vec<std::ops::Range<usize>> = Vec::new();
    for (span, message) in &errors {
        if message != "duplicate key" {
            continue;
        }
        let (line, _) = pos.line_col(span.start);
        if !pos.line_text(line).trim_start().starts_with('[') {
            continue;
        }
        let mut end = line + 1;
        while end <= pos.line_count() && !pos.line_text(end).trim_start().starts_with('[') {
            end += 1;
        }
        echo_lines.push(line + 1..end);
    }
    echo_lines.sort_by_key(|r| r.start);
    errors
        .into_iter()
        .filter(|(span, message)| {
            if message != "duplicate key" {
                return true;
            }
            let (line, _) = pos.line_col(span.start);
            let i = echo_lines.partition_point(|r| r.start <= line);
            !i.checked_sub(1)
                .and_then(|i| echo_lines.get(i))
                .is_some_and(|r| r.contains(&line))
        })
        .collect()
}

/// `[a . b]  # comment` → `[a.b]` (whitespace-insensitive, for comparing headers).
fn header_of(line: &str) -> String {
    let end = line.find(']').map_or(line.len(), |i| i + 1);
    let end = if line.starts_with("[[") {
        line.find("]]").map_or(line.len(), |i| i + 2)
    } else {
        end
    };
    line.get(..end)
        .unwrap_or(line)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// The default `state_dir`: `/var/lib/vigil` for root, else `$XDG_STATE_HOME/vigil`, else
/// `$HOME/.local/state/vigil` (and `/var/lib/vigil` when neither variable is usable).
pub fn default_state_dir() -> PathBuf {
    let system = PathBuf::from("/var/lib/vigil");
    if effective_uid() == Some(0) {
        return system;
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(xdg) = absolute("XDG_STATE_HOME") {
        return xdg.join("vigil");
    }
    if let Some(home) = absolute("HOME") {
        return home.join(".local/state/vigil");
    }
    system
}

/// The default `control_socket`: `/run/vigil/vigil.sock` for the system's instance (the
/// one whose `state_dir` is `/var/lib/vigil`, root's default), so members of
/// `control_socket_group` can reach it (`/var/lib/vigil` is closed to them); otherwise
/// `state_dir/vigil.sock`, so every other instance (another `state_dir`) has its own.
pub fn default_control_socket(state_dir: &Path) -> PathBuf {
    if state_dir == Path::new("/var/lib/vigil") {
        PathBuf::from("/run/vigil/vigil.sock")
    } else {
        state_dir.join("vigil.sock")
    }
}

/// The effective uid, from the `Uid:` line of `/proc/self/status` (real, effective, saved,
/// filesystem). Avoids `unsafe` `geteuid` in a crate that forbids unsafe code.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_compare_without_whitespace_and_comments() {
        assert_eq!(header_of("[ services . web ] # x"), "[services.web]");
        assert_eq!(
            header_of("[[services.web.schedule]]"),
            "[[services.web.schedule]]"
        );
    }

    #[test]
    fn effective_uid_is_readable_on_linux() {
        assert!(effective_uid().is_some());
    }
}
