//! Configuration errors, each pinned to `file:line:col` and a key path.
//!
//! This module owns the error types, the collection of errors (every one counted, a bounded
//! number kept) and the byte-offset → line/column translation, for one file or for a main
//! file and its includes seen as one offset space. It must not decide what is an error: the
//! validator does that and only reports here.
//!
//! Architecture Invariant: the work per error is bounded (a binary search for the line, a
//! bounded scan for the column, no message built for an error that will not be kept), so a
//! file with millions of errors is diagnosed in time linear in its size.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How many errors [`ConfigErrors`] keeps (the first ones in file order); every error is
/// counted. Enough that the count of kept errors is the real count for any sane file.
pub const KEPT_ERRORS: usize = 100_000;

/// How many errors `Display` prints before "... and N more errors".
pub const SHOWN_ERRORS: usize = 100;

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

/// Every problem found in a configuration (never empty when returned as an error).
///
/// `.0` holds the errors kept, in file order (the main file first, then its includes):
/// all of them up to [`KEPT_ERRORS`], else the first [`KEPT_ERRORS`]. [`ConfigErrors::len`]
/// counts every error found. `Display` prints the first [`SHOWN_ERRORS`] and then how many
/// more there are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>, usize);

impl ConfigErrors {
    /// Errors that are all there is (nothing was dropped).
    pub fn new(errors: Vec<ConfigError>) -> ConfigErrors {
        let total = errors.len();
        ConfigErrors(errors, total)
    }

    /// How many errors were found, kept or not.
    pub fn len(&self) -> usize {
        self.1.max(self.0.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The errors kept, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for ConfigErrors {
    /// One error per line, in file order: at most [`SHOWN_ERRORS`], then
    /// `... and N more errors`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().take(SHOWN_ERRORS).enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        let shown = self.0.len().min(SHOWN_ERRORS);
        let more = self.len() - shown;
        if more > 0 {
            let noun = if more == 1 { "error" } else { "errors" };
            write!(f, "\n... and {} more {noun}", thousands(more))?;
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

/// Counts every item pushed and keeps the `cap` with the smallest keys (ties in push
/// order), in amortized constant time per item and `2 * cap` items of memory. Callers ask
/// [`Collector::wants`] first so that an item that would be dropped is never built.
pub(crate) struct Collector<T> {
    items: Vec<((usize, usize), T)>,
    cap: usize,
    total: usize,
    /// Once `cap` items are held, items with a key above the largest of them are dropped.
    threshold: Option<(usize, usize)>,
}

impl<T> Collector<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Collector {
            items: Vec::new(),
            cap: cap.max(1),
            total: 0,
            threshold: None,
        }
    }

    /// Whether an item at `offset` would be kept (if not, [`Collector::count`] it).
    pub(crate) fn wants(&self, offset: usize) -> bool {
        // A later push gets a larger sequence number, so only the offset can win.
        self.threshold.is_none_or(|(o, _)| offset < o)
    }

    /// Counts an item without keeping it.
    pub(crate) fn count(&mut self) {
        self.total += 1;
    }

    pub(crate) fn push(&mut self, offset: usize, item: T) {
        let key = (offset, self.total);
        self.total += 1;
        if self.threshold.is_some_and(|t| key > t) {
            return;
        }
        self.items.push((key, item));
        if self.threshold.is_none() && self.items.len() == self.cap {
            // `cap` items at or below this key exist: nothing above it can be kept.
            self.threshold = self.items.iter().map(|(k, _)| *k).max();
        }
        if self.items.len() >= self.cap.saturating_mul(2) {
            self.items
                .select_nth_unstable_by_key(self.cap - 1, |(k, _)| *k);
            self.items.truncate(self.cap);
            self.threshold = self.items.iter().map(|(k, _)| *k).max();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The kept items in key order, and the count of every item pushed.
    pub(crate) fn finish(mut self) -> (Vec<T>, usize) {
        self.items.sort_unstable_by_key(|(k, _)| *k);
        self.items.truncate(self.cap);
        (self.items.into_iter().map(|(_, t)| t).collect(), self.total)
    }
}

impl Collector<ConfigError> {
    /// The errors, deduplicated (an error reported twice at one spot counts once).
    pub(crate) fn into_errors(self) -> ConfigErrors {
        let (mut errors, total) = self.finish();
        let before = errors.len();
        errors.dedup();
        let dropped = before - errors.len();
        ConfigErrors(errors, total - dropped)
    }
}

/// Translates byte offsets of one source text into 1-based line/column positions.
pub(crate) struct Positions<'s> {
    src: &'s str,
    line_starts: Vec<usize>,
    /// `None` for ASCII text (a column is a byte count). Else the number of characters
    /// before each `CHUNK`-byte boundary, so a column costs at most two short scans.
    chars_before: Option<Vec<usize>>,
}

const CHUNK: usize = 256;

/// Whether `b` starts a character (is not a UTF-8 continuation byte).
fn starts_char(b: &u8) -> bool {
    (*b as i8) >= -0x40
}

impl<'s> Positions<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(line_ends(src));
        let chars_before = (!src.is_ascii()).then(|| {
            let mut before = Vec::with_capacity(src.len() / CHUNK + 1);
            let mut count = 0;
            for chunk in src.as_bytes().chunks(CHUNK) {
                before.push(count);
                count += chunk.iter().filter(|b| starts_char(b)).count();
            }
            before
        });
        Positions {
            src,
            line_starts,
            chars_before,
        }
    }

    /// Characters in `src[..offset]` (`offset` on a character boundary).
    fn chars_to(&self, offset: usize) -> usize {
        let Some(before) = &self.chars_before else {
            return offset;
        };
        let chunk = offset / CHUNK;
        let base = before.get(chunk).copied().unwrap_or(0);
        let start = chunk * CHUNK;
        let tail = self.src.as_bytes().get(start..offset).unwrap_or(&[]);
        base + tail.iter().filter(|b| starts_char(b)).count()
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
        let col = self.chars_to(offset) - self.chars_to(start);
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

    pub(crate) fn src(&self) -> &'s str {
        self.src
    }
}

/// The offsets just after each `\n`.
fn line_ends(src: &str) -> impl Iterator<Item = usize> + '_ {
    src.match_indices('\n').map(|(i, _)| i + 1)
}

/// One file of a configuration: its text and where its offsets start in the shared offset
/// space of the main file and its includes.
pub(crate) struct SourceFile<'s> {
    pub(crate) path: PathBuf,
    /// Relative paths written in this file are resolved against this directory.
    pub(crate) dir: PathBuf,
    pub(crate) base: usize,
    pub(crate) pos: Positions<'s>,
}

/// The files of a configuration as one offset space: file `k`'s byte `i` is offset
/// `files[k].base + i`, so a span anywhere names its file.
pub(crate) struct Sources<'s> {
    files: Vec<SourceFile<'s>>,
}

impl<'s> Sources<'s> {
    pub(crate) fn new() -> Self {
        Sources { files: Vec::new() }
    }

    /// Adds a file after the others; returns its base offset.
    pub(crate) fn add(&mut self, path: &Path, src: &'s str) -> usize {
        let base = self
            .files
            .last()
            .map_or(0, |f| f.base + f.pos.src().len() + 1);
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        self.files.push(SourceFile {
            path: path.to_path_buf(),
            dir,
            base,
            pos: Positions::new(src),
        });
        base
    }

    pub(crate) fn file(&self, index: usize) -> Option<&SourceFile<'s>> {
        self.files.get(index)
    }

    /// The file an offset belongs to, and the offset inside it.
    pub(crate) fn locate(&self, offset: usize) -> Option<(&SourceFile<'s>, usize)> {
        let i = self.files.partition_point(|f| f.base <= offset);
        let file = self.files.get(i.checked_sub(1)?)?;
        Some((file, offset - file.base))
    }

    /// `path:line:col` of an offset, for messages that point at another place.
    pub(crate) fn describe(&self, offset: usize) -> String {
        match self.locate(offset) {
            Some((f, local)) => {
                let (line, col) = f.pos.line_col(local);
                format!("{}:{line}:{col}", f.path.display())
            }
            None => "?".to_owned(),
        }
    }

    pub(crate) fn error(
        &self,
        span: Range<usize>,
        key_path: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (file, line, col) = match self.locate(span.start) {
            Some((f, local)) => {
                let (line, col) = f.pos.line_col(local);
                (f.path.clone(), line, col)
            }
            None => (PathBuf::new(), 0, 0),
        };
        ConfigError {
            file,
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
    fn columns_count_chars_across_chunk_boundaries() {
        let line = format!("{}é{}", "a".repeat(300), "ü".repeat(400));
        let src = format!("x\n{line}\n");
        let p = Positions::new(&src);
        for (col0, (byte, _)) in line.char_indices().enumerate() {
            assert_eq!(p.line_col(2 + byte), (2, col0 + 1), "byte {byte}");
        }
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

    #[test]
    fn collector_keeps_the_first_by_key_and_counts_all() {
        let mut c = Collector::new(3);
        for offset in [50, 10, 40, 30, 20, 60, 5, 70, 10] {
            if c.wants(offset) {
                c.push(offset, offset);
            } else {
                c.count();
            }
        }
        let (kept, total) = c.finish();
        assert_eq!(kept, [5, 10, 10]);
        assert_eq!(total, 9);
    }

    #[test]
    fn display_caps_and_counts_the_rest() {
        let e = |line| ConfigError {
            file: "v.toml".into(),
            line,
            col: 1,
            key_path: String::new(),
            message: "x".into(),
        };
        let errs = ConfigErrors((1..=150).map(e).collect(), 100_000);
        let text = errs.to_string();
        assert_eq!(text.lines().count(), 101);
        assert!(text.ends_with("\n... and 99,900 more errors"), "{text}");
        assert_eq!(errs.len(), 100_000);
        assert_eq!(ConfigErrors::new(vec![e(1)]).to_string(), "v.toml:1:1: x");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
