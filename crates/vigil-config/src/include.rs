//! `include = ["conf.d/*.toml"]`: the files a configuration pulls in, read and merged into
//! one tree before validation.
//!
//! Owns the include rules (documented with the `include` key in `schema.rs`): patterns are
//! paths or globs relative to the main file's directory; each pattern's matches are taken
//! in path order, patterns in the order written; a glob that matches nothing is fine, a
//! plain path that does not exist is an error; a file named twice (or the main file
//! itself) is read once. An included file holds `[services.*]`, `[groups.*]` and
//! `[alerts.*]` tables only: `[vigil]`, `[defaults]` and `include` belong to the main file,
//! so there is one place for global settings and includes never nest (no cycles). A
//! service, group or channel defined in two files is an error at the later definition,
//! naming the first.
//!
//! Each included file keeps its own positions: its spans are moved into the offset space
//! of [`Sources`] (file `k` starts at its base offset), so every error, wherever the
//! validator finds it, names the file it is in. This module reads files and lists
//! directories; it never writes.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;
use toml::de::{DeArray, DeString, DeTable, DeValue};

use crate::error::{Collector, ConfigError, Sources};
use crate::suggest;
use crate::value::KeyPath;

/// The top-level tables an included file may hold, and what their entries are called.
const MERGED: [(&str, &str); 3] = [
    ("services", "service"),
    ("groups", "group"),
    ("alerts", "alert channel"),
];

/// An included file, read.
pub(crate) struct Included {
    pub(crate) path: PathBuf,
    /// Its text (with U+FFFD for invalid bytes, which are an error at `invalid_at`).
    pub(crate) text: String,
    pub(crate) invalid_at: Option<usize>,
}

/// The `include` patterns of the main file (at `root`), with the span of each; errors for
/// values that are not a list of non-empty strings.
pub(crate) fn patterns(
    root: &DeTable<'_>,
    sources: &Sources<'_>,
    errors: &mut Collector<ConfigError>,
) -> Vec<(String, Range<usize>)> {
    let Some(v) = root.get("include") else {
        return Vec::new();
    };
    let path = KeyPath::default().key("include");
    let DeValue::Array(items) = v.get_ref() else {
        let message = "expected an array of paths or globs like [\"conf.d/*.toml\"]";
        push(errors, sources, v.span(), &path, message);
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = path.index(i);
        match item.get_ref() {
            DeValue::String(s) if s.trim().is_empty() => {
                push(errors, sources, item.span(), &ipath, "must not be empty");
            }
            DeValue::String(s) if s.contains('\0') => {
                let message = "must not contain NUL characters";
                push(errors, sources, item.span(), &ipath, message);
            }
            DeValue::String(s) => out.push((s.to_string(), item.span())),
            _ => {
                let message = "expected a path or glob string like \"conf.d/*.toml\"";
                push(errors, sources, item.span(), &ipath, message);
            }
        }
    }
    out
}

fn push(
    errors: &mut Collector<ConfigError>,
    sources: &Sources<'_>,
    span: Range<usize>,
    path: &KeyPath,
    message: impl Into<String>,
) {
    let at = span.start;
    errors.push(at, sources.error(span, path.as_str(), message));
}

/// Reads the files the patterns name, in include order. Errors (a missing plain path, an
/// unreadable file or directory) are reported at the pattern.
pub(crate) fn read(
    patterns: &[(String, Range<usize>)],
    main: &Path,
    sources: &Sources<'_>,
    errors: &mut Collector<ConfigError>,
) -> Vec<Included> {
    let dir = main.parent().unwrap_or(Path::new(""));
    let mut seen = vec![identity(main)];
    let mut out = Vec::new();
    for (i, (pattern, span)) in patterns.iter().enumerate() {
        let key = KeyPath::default().key("include").index(i);
        let full = dir.join(pattern);
        let files = if is_glob(pattern) {
            match expand(&full) {
                Ok(files) => files,
                Err(message) => {
                    push(errors, sources, span.clone(), &key, message);
                    continue;
                }
            }
        } else {
            vec![full]
        };
        for file in files {
            let id = identity(&file);
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            match std::fs::read(&file) {
                Ok(bytes) => out.push(decode(file, bytes)),
                Err(e) => {
                    let message = format!("cannot read included file {}: {e}", file.display());
                    push(errors, sources, span.clone(), &key, message);
                }
            }
        }
    }
    out
}

/// The same file however it is named (falls back to the path when it cannot be resolved).
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn decode(path: PathBuf, bytes: Vec<u8>) -> Included {
    match String::from_utf8(bytes) {
        Ok(text) => Included {
            path,
            text,
            invalid_at: None,
        },
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            Included {
                path,
                text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                invalid_at: Some(at),
            }
        }
    }
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The files matching `pattern` (globs in any component), sorted by path. A directory
/// that does not exist matches nothing; one that cannot be listed is an error.
fn expand(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let mut current = vec![PathBuf::new()];
    for component in pattern.components() {
        let text = component.as_os_str().to_string_lossy();
        let glob = matches!(component, Component::Normal(_)) && is_glob(&text);
        let mut next = Vec::new();
        for base in &current {
            if !glob {
                next.push(base.join(component));
                continue;
            }
            let listing = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let entries = match std::fs::read_dir(listing) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => continue,
                Err(e) => return Err(format!("cannot list {}: {e}", listing.display())),
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                // As in a shell, `*` does not match a leading dot.
                if name.starts_with('.') && !text.starts_with('.') {
                    continue;
                }
                if glob_match(&text, &name) {
                    next.push(base.join(entry.file_name()));
                }
            }
        }
        current = next;
    }
    let mut files: Vec<PathBuf> = current.into_iter().filter(|p| p.is_file()).collect();
    files.sort();
    Ok(files)
}

/// Shell-style matching of one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point for the last `*`: O(p * n).
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => class(&p[pi..], n[ni]),
            Some(&c) if c == n[ni] => Some(1),
            _ => None,
        };
        match step {
            Some(len) if len > 0 => {
                pi += if p.get(pi) == Some(&'[') { len } else { 1 };
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A `[...]` class at the start of `p`: `Some(its length)` when `c` is in it, `None` when
/// not. An unclosed `[` is a literal `[`.
fn class(p: &[char], c: char) -> Option<usize> {
    let Some(close) = p.iter().skip(2).position(|&x| x == ']').map(|i| i + 2) else {
        return (c == '[').then_some(1);
    };
    let body = &p[1..close];
    let (negate, body) = match body.first() {
        Some('!' | '^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut found = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            found |= body[i] <= c && c <= body[i + 2];
            i += 3;
        } else {
            found |= body[i] == c;
            i += 1;
        }
    }
    (found != negate).then_some(close + 1)
}

/// Moves every span of `v` by `by` bytes (into the shared offset space of [`Sources`]).
pub(crate) fn shift(v: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = v.span();
    let span = span.start + by..span.end + by;
    let value = match v.into_inner() {
        DeValue::Table(table) => DeValue::Table(shift_table(table, by)),
        DeValue::Array(items) => {
            let mut out = DeArray::new();
            for item in items.iter() {
                out.push(shift(item.clone(), by));
            }
            DeValue::Array(out)
        }
        other => other,
    };
    Spanned::new(span, value)
}

pub(crate) fn shift_table(table: DeTable<'_>, by: usize) -> DeTable<'_> {
    let mut out = DeTable::new();
    for (key, value) in table {
        out.insert(shift_key(key, by), shift(value, by));
    }
    out
}

fn shift_key(key: Spanned<DeString<'_>>, by: usize) -> Spanned<DeString<'_>> {
    let span = key.span();
    Spanned::new(span.start + by..span.end + by, key.into_inner())
}

/// Merges the tables of an included file (spans already shifted) into the main tree.
/// `main` names the main file in messages.
pub(crate) fn merge<'a>(
    into: &mut DeTable<'a>,
    included: DeTable<'a>,
    main: &Path,
    sources: &Sources<'_>,
    errors: &mut Collector<ConfigError>,
) {
    let holds = "an included file holds [services.*], [groups.*] and [alerts.*] tables";
    for (key, value) in included {
        let name = key.get_ref().to_string();
        let name = name.as_str();
        let path = KeyPath::default().key(name);
        let Some(&(_, what)) = MERGED.iter().find(|(k, _)| *k == name) else {
            let message = match name {
                "vigil" | "defaults" => format!(
                    "`[{name}]` may only be set in the main file {}: {holds}",
                    main.display()
                ),
                "include" => format!(
                    "`include` may only be used in the main file {}: included files cannot include others",
                    main.display()
                ),
                _ => match suggest::closest(name, MERGED.iter().map(|(k, _)| *k)) {
                    Some(near) => {
                        format!("unknown key `{name}` in an included file; did you mean `{near}`?")
                    }
                    None => format!("unknown key `{name}` in an included file ({holds})"),
                },
            };
            push(errors, sources, key.span(), &path, message);
            continue;
        };
        let value_span = value.span();
        let DeValue::Table(entries) = value.into_inner() else {
            push(errors, sources, value_span, &path, "expected a table");
            continue;
        };
        let target = match into.get_mut(name).map(|v| v.get_mut()) {
            Some(DeValue::Table(t)) => t,
            // Reported by the validator on the main file's value.
            Some(_) => continue,
            None => {
                let fresh = Spanned::new(value_span, DeValue::Table(DeTable::new()));
                into.insert(key, fresh);
                match into.get_mut(name).map(|v| v.get_mut()) {
                    Some(DeValue::Table(t)) => t,
                    _ => continue,
                }
            }
        };
        for (entry, v) in entries {
            let entry_name = entry.get_ref().to_string();
            match target.get(entry_name.as_str()) {
                Some(first) => {
                    let message = format!(
                        "duplicate {what} {entry_name:?} (first defined at {})",
                        sources.describe(first.span().start)
                    );
                    push(errors, sources, v.span(), &path.key(&entry_name), message);
                }
                None => {
                    target.insert(entry, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("*.toml", "web.toml"));
        assert!(!glob_match("*.toml", "web.toml.bak"));
        assert!(glob_match("web-?.toml", "web-1.toml"));
        assert!(!glob_match("web-?.toml", "web-10.toml"));
        assert!(glob_match("[a-c]*.toml", "b.toml"));
        assert!(!glob_match("[!a-c]*.toml", "b.toml"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("[", "["));
        assert!(glob_match("**.toml", "x.toml"));
    }
}
