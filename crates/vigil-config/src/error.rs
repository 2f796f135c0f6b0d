//! Configuration errors, each pinned to `file:line:col` and a key path.
//!
//! This module owns the error types and the byte-offset → line/column translation. It must
//! not decide what is an error: the validator does that and only reports here.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
///
/// `line` and `col` are 1-based; `col` counts characters, not bytes. They point at the
/// offending value (or at the key, for unknown keys; or at the table header, for missing
/// keys). Both are 0 for errors about the file as a whole (it cannot be read), which
/// display as `file: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    /// Dotted path of the key, e.g. `services.web.checks.health.every`. Empty for TOML
    /// syntax errors and for errors about the file as a whole.
    pub key_path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // No position: the file as a whole (e.g. it cannot be read).
            write!(f, "{}: ", self.file.display())?;
        } else {
            write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        }
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file (never empty when returned as an error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// Sorts by position (line, then column); errors at the same spot keep their order.
    pub(crate) fn sorted(mut errors: Vec<ConfigError>) -> ConfigErrors {
        errors.sort_by_key(|e| (e.line, e.col));
        errors.dedup();
        ConfigErrors(errors)
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line, in file order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted: Vec<&ConfigError> = self.0.iter().collect();
        sorted.sort_by_key(|e| (e.line, e.col));
        for (i, e) in sorted.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Translates byte offsets of one source text into 1-based line/column positions.
pub(crate) struct Positions<'s> {
    src: &'s str,
    line_starts: Vec<usize>,
}

impl<'s> Positions<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Positions { src, line_starts }
    }

    /// `(line, col)`, both 1-based. Offsets past the end or inside a character are clamped.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.src.len());
        while !self.src.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let col = self.src.get(start..offset).map_or(0, |s| s.chars().count());
        (line.max(1), col + 1)
    }

    pub(crate) fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// The text of the 1-based line `line`, without its newline.
    pub(crate) fn line_text(&self, line: usize) -> &'s str {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return "";
        };
        let end = self
            .line_starts
            .get(line)
            .map_or(self.src.len(), |&next| next - 1);
        self.src
            .get(start..end)
            .unwrap_or("")
            .trim_end_matches('\r')
    }

    pub(crate) fn error(
        &self,
        file: &Path,
        span: Range<usize>,
        key_path: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, col) = self.line_col(span.start);
        ConfigError {
            file: file.to_path_buf(),
            line,
            col,
            key_path: key_path.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_chars() {
        let p = Positions::new("ab\nçd\n\nx");
        assert_eq!(p.line_col(0), (1, 1));
        assert_eq!(p.line_col(1), (1, 2));
        assert_eq!(p.line_col(3), (2, 1));
        assert_eq!(p.line_col(5), (2, 2)); // after the two-byte 'ç'
        assert_eq!(p.line_col(4), (2, 1)); // inside 'ç': clamped back
        assert_eq!(p.line_col(7), (3, 1));
        assert_eq!(p.line_col(8), (4, 1));
        assert_eq!(p.line_col(999), (4, 2));
        assert_eq!(p.line_text(2), "çd");
        assert_eq!(p.line_text(4), "x");
        assert_eq!(p.line_text(9), "");
    }

    #[test]
    fn display_omits_empty_key_path() {
        let e = ConfigError {
            file: "v.toml".into(),
            line: 3,
            col: 7,
            key_path: String::new(),
            message: "boom".into(),
        };
        assert_eq!(e.to_string(), "v.toml:3:7: boom");
        let e = ConfigError {
            key_path: "vigil.log_level".into(),
            ..e
        };
        assert_eq!(e.to_string(), "v.toml:3:7: vigil.log_level: boom");
    }
}
