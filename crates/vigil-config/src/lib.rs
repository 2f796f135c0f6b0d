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
//! This crate reads exactly one file (the config) and a few environment variables for the
//! default `state_dir`; it never writes, spawns or reads a clock.

mod docs;
mod error;
pub mod model;
pub mod schema;
mod suggest;
mod validate;
mod value;

use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use docs::{COMPLETE_EXAMPLE, reference_markdown};
pub use error::{ConfigError, ConfigErrors};
pub use model::*;
pub use validate::is_valid_name;
pub use value::{parse_duration, parse_proxy, parse_size};

use error::Positions;
use value::Cx;

/// Reads and validates the configuration file at `path`.
///
/// An unreadable file is one error naming the path and the OS error.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
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
            let pos = Positions::new(&src);
            // The lossy copy has the same bytes up to the first invalid one.
            let err = pos.error(path, valid..valid, "", "the file is not valid UTF-8");
            Err(ConfigErrors(vec![err]))
        }
    }
}

/// Validates `src`, the contents of the configuration file `path`.
///
/// `path` names the file in errors and anchors relative paths (`state_dir`, `ca_file`);
/// nothing is read from it.
pub fn parse(src: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let pos = Positions::new(src);
    let (root, syntax) = DeTable::parse_recoverable(src);
    if !syntax.is_empty() {
        let errors = syntax
            .iter()
            .map(|e| {
                let span = e.span().unwrap_or(0..0);
                let message = syntax_message(src, &pos, span.clone(), e.message());
                pos.error(path, span, "", message)
            })
            .collect();
        return Err(ConfigErrors::sorted(without_echoes(errors, &pos)));
    }
    let base_dir = path.parent().unwrap_or(Path::new(""));
    let mut cx = Cx::new(path, src, base_dir);
    let span = root.span();
    let root = Spanned::new(span, DeValue::Table(root.into_inner()));
    let config = validate::config(&mut cx, &root, path);
    match config {
        Some(config) if cx.errors.is_empty() => Ok(config),
        Some(_) | None => {
            if cx.errors.is_empty() {
                // Unreachable by construction (every `None` records an error first), but a
                // failure must never come back without a reason.
                let err = pos.error(
                    path,
                    0..0,
                    "",
                    "internal error: invalid configuration without a reason",
                );
                cx.errors.push(err);
            }
            Err(ConfigErrors::sorted(cx.errors))
        }
    }
}

/// Makes toml's terse messages say what happened, especially for duplicates.
fn syntax_message(
    src: &str,
    pos: &Positions<'_>,
    span: std::ops::Range<usize>,
    message: &str,
) -> String {
    let message = message.replace('\n', "; ");
    if message != "duplicate key" {
        return format!("invalid TOML: {message}");
    }
    let key = src.get(span.clone()).unwrap_or("").trim();
    let (line, _) = pos.line_col(span.start);
    let text = pos.line_text(line).trim();
    if text.starts_with('[') {
        let header = header_of(text);
        let earlier = (1..line).find(|&l| header_of(pos.line_text(l).trim()) == header);
        let at = match earlier {
            Some(l) => format!("line {l}"),
            None => "earlier in the file".to_owned(),
        };
        let at = if earlier.is_some() {
            format!("on {at}")
        } else {
            at
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
fn without_echoes(errors: Vec<ConfigError>, pos: &Positions<'_>) -> Vec<ConfigError> {
    let mut echo_lines = Vec::new();
    for e in errors
        .iter()
        .filter(|e| e.message.starts_with("duplicate table"))
    {
        let mut line = e.line + 1;
        while line <= pos.line_count() && !pos.line_text(line).trim_start().starts_with('[') {
            echo_lines.push(line);
            line += 1;
        }
    }
    errors
        .into_iter()
        .filter(|e| !(e.message.starts_with("duplicate key") && echo_lines.contains(&e.line)))
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
