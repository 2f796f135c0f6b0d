//! `kind = "log"`: count the lines appended to a log file (`path`), or the journal entries
//! of a systemd unit (`journal_unit`, see [`journal`]), since the previous run that match
//! `pattern`; the check FAILS when at least `min_matches` do (seed 000's
//! `journalctl | grep error`, without journalctl or grep).
//!
//! The rest of this comment is about the file source.
//!
//! Owns: the per-(path, pattern) read cursors ([`CURSORS`]: device, inode, offset, and the
//! compiled byte regex) and the chunked scan. Semantics:
//! - The first run of a (path, pattern) starts at the END of the file: only lines written
//!   after it count, so a restart of Vigil does not alert on old errors.
//! - A different device/inode at the path (rotation by rename + create) is read from
//!   offset 0; the unread tail of the old file is not read. A file shorter than the
//!   cursor (truncation, `copytruncate`) is read from 0 too.
//! - A missing file passes ("nothing new"); when it appears it is read from offset 0.
//! - Only complete lines are consumed: a partial last line is read again next run, once
//!   its newline has been written (a single line longer than [`MAX_LINE`] is taken as is).
//! - At most [`MAX_PER_RUN`] bytes are read per run, in [`CHUNK`]-sized reads, so a burst
//!   of gigabytes is worked through over several runs at bounded memory and time.
//!
//! Must not: allocate per line (the regex runs over whole chunks with `regex::bytes`, and
//! a match is then attributed to its line), hold the cursor lock during I/O, or read
//! anything but the new bytes. Two checks with the same path and pattern share a cursor
//! (and so split the new lines between them); the config should not define such twins.
//!
//! # Positions persist between processes
//!
//! The cursors (and the journal followers) live in process memory, so a one-shot
//! `vigil check` (cron mode) would be a first run every time and never see a new line.
//! So a check's position goes to the ledger and back: after a run, [`position`] gives it
//! as a token (one line of text, at most [`MAX_TOKEN`] bytes, versioned and checksummed);
//! before the check's first run in a new process, [`resume`] installs a saved token, and
//! runs then go on exactly as the saving process's next run would have: the lines
//! appended in between are read (and count against `min_matches`), a rotated (new inode)
//! or truncated file is read from 0, a file that was missing is read from 0 once it
//! appears, a partial last line is read again; for the journal, every entry written in
//! between is handed over once, across journal file rotation (see
//! [`vigil_journal::follow::position`]). The daemon and one-shot runs share the token;
//! a position already in memory wins over a saved one (it is newer). A token that cannot
//! be used (garbage, cut short, another version, saved for another path, unit or
//! pattern) is refused with the reason, and the check then starts as a first run does.
//!
//! Token format, version 1 (numbers in lowercase hex):
//!
//! ```text
//! vigil-log/1 file k=<check key> dev=<device> ino=<inode> off=<offset> sum=<checksum>
//! vigil-log/1 file k=<check key> missing sum=<checksum>
//! vigil-log/1 journal k=<check key> vigil-journal-position/1 … sum=<checksum>
//! ```
//!
//! `k` hashes the path (or journal unit and directory) and the pattern, `sum` everything
//! before it (both SipHash-2-4 with fixed keys).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use regex::bytes::{Regex, RegexBuilder};

use super::Verdict;
use crate::model::{LogCheck, LogSource};

mod journal;
mod token;

/// A position token is never longer than this (a file's is under 100 bytes; a journal's
/// is bounded as [`vigil_journal::follow::position`] says).
pub const MAX_TOKEN: usize = token::MAX_LEN;

/// One `read` call's size.
pub const CHUNK: usize = 64 * 1024;
/// At most this much is read per run; the rest waits for the next run.
pub const MAX_PER_RUN: u64 = 64 * 1024 * 1024;
/// A "line" without a newline is cut here, so memory stays bounded.
pub const MAX_LINE: usize = 1024 * 1024;
/// How much of the first matching line goes into the reason.
const LINE_MAX: usize = 200;

/// Where the next run of one (path, pattern) starts.
#[derive(Clone, Debug)]
struct Cursor {
    /// `None`: the file did not exist at the previous run (read it from 0 once it does).
    identity: Option<(u64, u64)>,
    offset: u64,
    regex: Regex,
}

/// Every log check's cursor, keyed by (path, pattern source). Lives for the process, so
/// cursors survive config reloads; an entry is a few hundred bytes plus its regex.
static CURSORS: OnceLock<Mutex<HashMap<(PathBuf, String), Cursor>>> = OnceLock::new();

fn cursors() -> std::sync::MutexGuard<'static, HashMap<(PathBuf, String), Cursor>> {
    CURSORS
        .get_or_init(Mutex::default)
        .lock()
        // The map holds plain values; a panic elsewhere cannot leave it inconsistent.
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn label(check: &LogCheck) -> String {
    match &check.source {
        LogSource::File(path) => format!("log {}", path.display()),
        LogSource::Journal(j) => format!("log journal {}", j.unit),
    }
}

pub(super) async fn probe(check: &LogCheck) -> Verdict {
    let owned = check.clone();
    tokio::task::spawn_blocking(move || run(&owned))
        .await
        .map_err(|e| format!("{}: scan task failed: {e}", label(check)))?
}

/// One run, blocking: scan what was appended since the previous run and judge it.
pub fn run(check: &LogCheck) -> Verdict {
    let path = match &check.source {
        LogSource::File(path) => path,
        LogSource::Journal(source) => return journal::run(check, source),
    };
    let key = (path.clone(), check.pattern.as_str().to_owned());
    let previous = cursors().remove(&key);
    let regex = match &previous {
        Some(c) => c.regex.clone(),
        None => compile(check)?,
    };
    let (cursor, verdict) = scan(check, path, previous, regex);
    if let Some(cursor) = cursor {
        cursors().insert(key, cursor);
    }
    verdict
}

/// The check's pattern as a byte regex, `^`/`$` matching at line ends.
fn compile(check: &LogCheck) -> Result<Regex, String> {
    let pattern = check.pattern.as_str();
    RegexBuilder::new(pattern)
        .multi_line(true)
        .build()
        .map_err(|e| format!("{}: pattern /{pattern}/: {e}", label(check)))
}

/// The check's position after its last run in this process, as a token to save (in the
/// ledger) and give to [`resume`] in a later process: one line of ASCII, at most
/// [`MAX_TOKEN`] bytes. `None` before a first run (or while a run is under way, or when
/// the journal follower's first run failed).
///
/// File: the file's device and inode and the offset after the last complete line read
/// (or that the file did not exist). Journal: the follower's complete position
/// ([`vigil_journal::Follower::position`]).
pub fn position(check: &LogCheck) -> Option<String> {
    let body = match &check.source {
        LogSource::File(path) => {
            let key = (path.clone(), check.pattern.as_str().to_owned());
            let map = cursors();
            let cursor = map.get(&key)?;
            match cursor.identity {
                Some((dev, ino)) => format!("dev={dev:x} ino={ino:x} off={:x}", cursor.offset),
                None => "missing".to_owned(),
            }
        }
        LogSource::Journal(source) => journal::position(check, source)?,
    };
    Some(token::seal(check, &body))
}

/// Installs a position saved by [`position`] in an earlier process, before this process's
/// first run of `check`: the next run reads what was written since that process's last
/// run, as that process's next run would have (see the module documentation).
///
/// When `check` already has a position in this process (it has run, or was resumed), that
/// one is newer: it is kept, and this returns `Ok`. An error says why the token cannot be
/// used (not a token, another version, cut short or altered, saved for another path,
/// journal unit or pattern, the pattern does not compile); the caller then lets the check
/// start as a first run does (at the end), and should log the reason.
pub fn resume(check: &LogCheck, token: &str) -> Result<(), String> {
    let path = match &check.source {
        LogSource::File(path) => path,
        LogSource::Journal(source) => return journal::resume(check, source, token),
    };
    let key = (path.clone(), check.pattern.as_str().to_owned());
    if cursors().contains_key(&key) {
        return Ok(());
    }
    let body = token::open(check, token)?;
    let identity = if body == "missing" {
        None
    } else {
        let mut fields = body.split(' ');
        let mut field = |name: &str| {
            let value = fields
                .next()
                .and_then(|f| f.strip_prefix(name))
                .ok_or_else(|| format!("corrupt: no {name} where expected"))?;
            token::hex(value, name)
        };
        let (dev, ino, offset) = (field("dev=")?, field("ino=")?, field("off=")?);
        if fields.next().is_some() {
            return Err("corrupt: more fields than a file position has".to_owned());
        }
        Some(((dev, ino), offset))
    };
    let cursor = Cursor {
        identity: identity.map(|(id, _)| id),
        offset: identity.map_or(0, |(_, offset)| offset),
        regex: compile(check)?,
    };
    // A run that finished meanwhile has the newer position.
    cursors().entry(key).or_insert(cursor);
    Ok(())
}

/// Forgets `check`'s position in this process, as if the process had just started: for
/// tests of [`position`] and [`resume`].
#[doc(hidden)]
pub fn forget_position(check: &LogCheck) {
    match &check.source {
        LogSource::File(path) => {
            cursors().remove(&(path.clone(), check.pattern.as_str().to_owned()));
        }
        LogSource::Journal(source) => journal::forget(check, source),
    }
}

fn scan(
    check: &LogCheck,
    path: &Path,
    previous: Option<Cursor>,
    regex: Regex,
) -> (Option<Cursor>, Verdict) {
    let shown = path.display();
    let pattern = check.pattern.as_str();
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let cursor = Cursor {
                identity: None,
                offset: 0,
                regex,
            };
            return (
                Some(cursor),
                Ok(format!(
                    "no new line matches /{pattern}/: {shown} does not exist (yet)"
                )),
            );
        }
        // Keep the previous cursor: a permission glitch must not skip lines.
        Err(err) => return (previous, Err(format!("cannot open {shown}: {err}"))),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(err) => return (previous, Err(format!("cannot stat {shown}: {err}"))),
    };
    let identity = (meta.dev(), meta.ino());
    let size = meta.len();
    let start = match &previous {
        None => {
            // First run: follow from the end; older lines are history, not news.
            let cursor = Cursor {
                identity: Some(identity),
                offset: size,
                regex,
            };
            return (
                Some(cursor),
                Ok(format!(
                    "no new line matches /{pattern}/ in {shown} (first run: following from byte {size})"
                )),
            );
        }
        Some(c) if c.identity != Some(identity) => 0, // rotated (or appeared)
        Some(c) if size < c.offset => 0,              // truncated
        Some(c) => c.offset,
    };
    let scanned = match read_new(&mut file, start, &regex) {
        Ok(s) => s,
        Err(err) => {
            return (
                previous,
                Err(format!("cannot read {shown} from byte {start}: {err}")),
            );
        }
    };
    let cursor = Cursor {
        identity: Some(identity),
        offset: start + scanned.consumed,
        regex,
    };
    let mut read = format!("read {}", bytes(scanned.read));
    if scanned.more_pending {
        read.push_str("; more pending");
    }
    let n = scanned.matches;
    let verdict = if n >= u64::from(check.min_matches) && n > 0 {
        let first = scanned.first.unwrap_or_default();
        let more = if scanned.more_pending {
            "; more pending"
        } else {
            ""
        };
        Err(format!(
            "{n} new line{} match{} /{pattern}/ in {shown} (first: {first}{more})",
            if n == 1 { "" } else { "s" },
            if n == 1 { "es" } else { "" },
        ))
    } else if n == 0 {
        Ok(format!(
            "no new line matches /{pattern}/ in {shown} ({read})"
        ))
    } else {
        Ok(format!(
            "{n} new line{} match{} /{pattern}/ in {shown}, fewer than min_matches {} ({read})",
            if n == 1 { "" } else { "s" },
            if n == 1 { "es" } else { "" },
            check.min_matches
        ))
    };
    (Some(cursor), verdict)
}

/// What one run's read found.
#[derive(Debug, Default)]
struct Scanned {
    /// Bytes read from the file.
    read: u64,
    /// Bytes of complete lines (the cursor moves by this much).
    consumed: u64,
    matches: u64,
    first: Option<String>,
    more_pending: bool,
}

fn read_new(file: &mut File, start: u64, regex: &Regex) -> io::Result<Scanned> {
    file.seek(SeekFrom::Start(start))?;
    let mut out = Scanned::default();
    let mut buf: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    loop {
        if out.read >= MAX_PER_RUN {
            out.more_pending = true;
            break;
        }
        let old = buf.len();
        buf.resize(old + CHUNK, 0);
        let n = match file.read(&mut buf[old..]) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => 0,
            Err(err) => return Err(err),
        };
        buf.truncate(old + n);
        if n == 0 {
            break;
        }
        out.read += n as u64;
        let complete = match buf.iter().rposition(|&b| b == b'\n') {
            Some(last) => last + 1,
            None if buf.len() >= MAX_LINE => buf.len(),
            None => continue,
        };
        count_lines(&buf[..complete], regex, &mut out);
        out.consumed += complete as u64;
        buf.drain(..complete);
    }
    Ok(out)
}

/// Counts the lines of `text` (complete lines) with a match, remembering the first.
fn count_lines(text: &[u8], regex: &Regex, out: &mut Scanned) {
    let mut pos = 0;
    while pos < text.len() {
        let Some(m) = regex.find_at(text, pos) else {
            break;
        };
        let line_start = text[..m.start()]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
            .max(pos);
        let line_end = text[m.start()..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |i| m.start() + i);
        let line = &text[line_start..line_end];
        // A match that runs past the newline (`\s`, `[^x]`) does not count unless the
        // line matches on its own.
        if m.end() <= line_end || regex.is_match(line) {
            out.matches += 1;
            if out.first.is_none() {
                out.first = Some(shorten(line));
            }
        }
        pos = line_end + 1;
    }
}

pub(super) fn shorten(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    let mut out: String = text.chars().take(LINE_MAX).collect();
    if text.chars().count() > LINE_MAX {
        out.push('…');
    }
    out
}

fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{} KiB", n / 1024)
    } else {
        format!("{} MiB", n / (1024 * 1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str, pattern: &str) -> (u64, Option<String>) {
        let regex = RegexBuilder::new(pattern).multi_line(true).build().unwrap();
        let mut out = Scanned::default();
        count_lines(text.as_bytes(), &regex, &mut out);
        (out.matches, out.first)
    }

    #[test]
    fn one_count_per_line() {
        assert_eq!(
            lines("ok\nerror error\nfine\nan error\n", "error"),
            (2, Some("error error".to_owned()))
        );
        assert_eq!(lines("a\nb\n", "error"), (0, None));
        assert_eq!(
            lines("x\nerror at start\n", "^error"),
            (1, Some("error at start".to_owned()))
        );
        assert_eq!(lines("ends error\nno\n", "error$").0, 1);
        // Empty matches still advance line by line.
        assert_eq!(lines("a\nb\nc\n", "").0, 3);
    }

    #[test]
    fn matches_spanning_lines_do_not_count() {
        assert_eq!(lines("error\nfoo\n", r"error\sfoo").0, 0);
        assert_eq!(lines("x error\nfoo error foo\n", r"error\sfoo").0, 1);
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(12 * 1024 + 5), "12 KiB");
        assert_eq!(bytes(64 * 1024 * 1024), "64 MiB");
    }
}
