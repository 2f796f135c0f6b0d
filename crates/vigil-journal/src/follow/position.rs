//! A follower's position as one line of text, so that a later process can go on where this
//! one stopped ([`Follower::position`], [`Follower::resume`]): a one-shot `vigil check` run
//! from cron saves it in the ledger and the next run resumes it.
//!
//! What a position holds is everything the follower needs to hand over exactly the entries
//! it would have handed over had it kept running:
//! - per file it is reading (by device and inode, with the header's file ID so a recycled
//!   inode is told apart): each match's next index in the file's entry list;
//! - the files read to their end that journald will not write again (by inode, with a hash
//!   of the file name), and whether they were finished in the last run;
//! - the files that could not be opened yet, with where they will start;
//! - the seqnum and realtime marks (after the last run, and as they were when it began:
//!   a file the next process finds for the first time was created after that run's
//!   listing, so it starts after those), the directories that had been listed, and the
//!   last entry handed over.
//!
//! # Format (version 1)
//!
//! One line of ASCII words separated by single spaces; numbers are lowercase hex:
//!
//! ```text
//! vigil-journal-position/1 u=<source hash> rt=<realtime mark> srt=<start realtime mark>
//!   [c=<journalctl cursor>] m=<seqnum ID>:<seqnum>... s=<seqnum ID>:<seqnum>...
//!   dir=<directory hash>... f=<dev>.<ino>.<file ID>.<next>,<next>,...
//!   p=<dev>.<ino>.tail | p=<dev>.<ino>.<realtime>[.<seqnum ID>:<seqnum>]...
//!   r=<dev>.<ino>.<name hash>... d=<dev>.<ino>.<name hash>...
//! ```
//!
//! (`f` a file being read, `p` one not opened yet, `r` finished in the last run, `d`
//! finished earlier; `u` hashes the unit and the roots, so a position is refused by a
//! follower of another unit or directory.)
//!
//! # Size
//!
//! The text is at most [`MAX_LEN`] bytes (a few hundred for a usual journal). Files are
//! added in order of what losing them costs, while they fit: files being read, files not
//! opened yet and files finished in the last run first (about 60, 40 and 20 bytes each),
//! then files being read that hold none of the unit's entries, then files finished before
//! the last run. A file left out is, to the resumed follower, a file it has not seen: it
//! starts after the start marks, which for the last two kinds reads nothing again (their
//! entries are all older than those marks) and costs one opening of the file. Only a
//! journal with thousands of files fills the budget; beyond that, files of the first kinds
//! left out may have entries handed over again or skipped. At most [`MAX_MARKS`] seqnum
//! marks of each kind are kept (a file whose seqnum ID has no mark compares by realtime).

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::str::FromStr;

use super::{Cursor, Done, FileId, Follower, Resumed, Roots, Start, dir_hash};
use crate::format::hex_id;

/// The first word of a position's text: the format and its version.
pub const MAGIC: &str = "vigil-journal-position/1";
/// A position's text is never longer than this (see the module documentation).
pub const MAX_LEN: usize = 64 * 1024;
/// Seqnum marks kept per kind (after the last run, at its start).
pub const MAX_MARKS: usize = 32;
/// Directories kept.
const MAX_DIRS: usize = 64;
/// Key of the source hash (`u=`): it names a unit and its roots, it is not secret.
const SOURCE_KEY: &[u8; 16] = b"vigil-journal-u1";

/// Where a file that could not be opened yet starts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SavedStart {
    Tail,
    After {
        marks: Vec<([u8; 16], u64)>,
        realtime: u64,
    },
}

/// A follower's complete position: see the module documentation. Made by
/// [`Follower::position`], written and read as text with `Display` and `FromStr`, given to
/// [`Follower::resume`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    source: u64,
    realtime: u64,
    start_realtime: u64,
    cursor: Option<Cursor>,
    marks: Vec<([u8; 16], u64)>,
    start_marks: Vec<([u8; 16], u64)>,
    dirs: Vec<u64>,
    files: Vec<(FileId, Resumed)>,
    pending: Vec<(FileId, SavedStart)>,
    /// Finished files: name hash, and whether they were finished in the last run.
    done: Vec<(FileId, u32, bool)>,
    left_out: usize,
}

impl Position {
    /// Files left out of this position to keep its text under [`MAX_LEN`] (0 when read
    /// from text).
    pub fn left_out(&self) -> usize {
        self.left_out
    }

    /// Files in this position (being read, not opened yet, finished).
    pub fn files(&self) -> usize {
        self.files.len() + self.pending.len() + self.done.len()
    }
}

/// Why a position's text or a position was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionError(pub String);

impl fmt::Display for PositionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PositionError {}

fn err<T>(message: impl Into<String>) -> Result<T, PositionError> {
    Err(PositionError(message.into()))
}

/// What a position is for: the unit and where its journal is.
fn source_hash(unit: &str, roots: &Roots) -> u64 {
    let mut data = Vec::with_capacity(unit.len() + 64);
    data.extend_from_slice(&(unit.len() as u64).to_le_bytes());
    data.extend_from_slice(unit.as_bytes());
    match roots {
        Roots::Default => data.push(0),
        Roots::Directory(dir) => {
            data.push(1);
            data.extend_from_slice(dir.as_os_str().as_bytes());
        }
    }
    crate::hash::siphash24(&data, SOURCE_KEY)
}

impl Follower {
    /// This follower's position, to be resumed by another process ([`Follower::resume`]);
    /// `None` before its first completed run. Bounded: see [`MAX_LEN`].
    pub fn position(&self) -> Option<Position> {
        if !self.started {
            return None;
        }
        // Seqnum IDs of the files being read go first when marks must be left out.
        let reading: HashSet<[u8; 16]> = self
            .tracked
            .values()
            .map(|t| t.jf.header().seqnum_id)
            .collect();
        let marks = |m: &HashMap<[u8; 16], u64>| {
            let mut v: Vec<([u8; 16], u64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
            v.sort_by_key(|(id, _)| (!reading.contains(id), *id));
            v.truncate(MAX_MARKS);
            v.sort();
            v
        };
        let mut dirs: Vec<u64> = self
            .roots_cache
            .iter()
            .flat_map(|(_, dirs, _)| dirs)
            .filter(|d| self.dir_cache.contains_key(*d))
            .map(|d| dir_hash(d))
            .chain(self.resumed_dirs.iter().copied())
            .collect();
        dirs.sort_unstable();
        dirs.dedup();
        dirs.truncate(MAX_DIRS);
        let mut p = Position {
            source: source_hash(&self.unit, &self.roots),
            realtime: self.realtime_mark,
            start_realtime: self.start_realtime,
            cursor: self.cursor,
            marks: marks(&self.marks),
            start_marks: marks(&self.start_marks),
            dirs,
            files: Vec::new(),
            pending: Vec::new(),
            done: Vec::new(),
            left_out: 0,
        };
        let mut used = p.to_string().len();
        let mut fits = |item: &dyn fmt::Display, left_out: &mut usize| {
            let len = item.to_string().len() + 1;
            if used + len <= MAX_LEN {
                used += len;
                true
            } else {
                *left_out += 1;
                false
            }
        };

        // In order of what leaving them out costs (see the module documentation).
        let mut reading: Vec<(FileId, Resumed, bool)> = self
            .tracked
            .iter()
            .map(|(id, t)| {
                let saved = Resumed {
                    file_id: t.file_id,
                    next: t.terms.iter().map(|x| x.next).collect(),
                };
                (*id, saved, t.terms.iter().all(|x| x.data.is_none()))
            })
            .chain(self.resumed.iter().map(|(id, r)| (*id, r.clone(), false)))
            .collect();
        reading.sort_by_key(|(id, _, idle)| (*idle, *id));
        let mut pending: Vec<(FileId, SavedStart)> = self
            .pending
            .iter()
            .map(|(id, start)| (*id, saved_start(start)))
            .collect();
        pending.sort_by_key(|(id, _)| *id);
        let mut done: Vec<(FileId, u32, bool)> = self
            .done
            .iter()
            .map(|(id, d)| (*id, d.name, d.poll >= self.polls))
            .collect();
        done.sort_by_key(|(id, _, recent)| (!*recent, *id));
        let mut left_out = 0;
        let mut idle_files = Vec::new();
        for (id, saved, idle) in reading {
            if idle {
                idle_files.push((id, saved));
            } else if fits(&FileItem(id, &saved), &mut left_out) {
                p.files.push((id, saved));
            }
        }
        for (id, start) in pending {
            if fits(&PendingItem(id, &start), &mut left_out) {
                p.pending.push((id, start));
            }
        }
        let (recent, old): (Vec<_>, Vec<_>) = done.into_iter().partition(|d| d.2);
        for d in recent {
            if fits(&DoneItem(d), &mut left_out) {
                p.done.push(d);
            }
        }
        for (id, saved) in idle_files {
            if fits(&FileItem(id, &saved), &mut left_out) {
                p.files.push((id, saved));
            }
        }
        for d in old {
            if fits(&DoneItem(d), &mut left_out) {
                p.done.push(d);
            }
        }
        p.files.sort_by_key(|(id, _)| *id);
        p.done.sort_by_key(|(id, ..)| *id);
        p.left_out = left_out;
        Some(p)
    }

    /// Makes this follower go on from `position`, saved by [`Follower::position`] in an
    /// earlier process: its next run hands over the entries written since that process's
    /// last run, as that process's next run would have (across rotation, and with the
    /// same start for files created in between). Refused when this follower has run
    /// already (its own position is newer) or `position` is another unit's or
    /// directory's.
    pub fn resume(&mut self, position: Position) -> Result<(), PositionError> {
        if self.started {
            return err("this follower has run already: its own position is newer");
        }
        if position.source != source_hash(&self.unit, &self.roots) {
            return err(format!(
                "the position was saved for another unit or journal directory than {} in {}",
                self.unit, self.roots
            ));
        }
        if let Some(((dev, ino), f)) = position
            .files
            .iter()
            .find(|(_, f)| f.next.len() != self.matches.len())
        {
            return err(format!(
                "file {dev:x}.{ino:x} has {} list positions where {} has {}",
                f.next.len(),
                self.unit,
                self.matches.len()
            ));
        }
        self.started = true;
        self.polls = 1;
        self.realtime_mark = position.realtime;
        self.start_realtime = position.start_realtime;
        self.marks = position.marks.into_iter().collect();
        self.start_marks = position.start_marks.into_iter().collect();
        self.resumed_dirs = position.dirs.into_iter().collect();
        self.cursor = position.cursor;
        self.resumed = position.files.into_iter().collect();
        self.pending = position
            .pending
            .into_iter()
            .map(|(id, start)| {
                let start = match start {
                    SavedStart::Tail => Start::Tail,
                    SavedStart::After { marks, realtime } => Start::After {
                        marks: marks.into_iter().collect(),
                        realtime,
                    },
                };
                (id, start)
            })
            .collect();
        self.done = position
            .done
            .into_iter()
            .map(|(id, name, recent)| {
                let poll = u64::from(recent);
                (id, Done { name, poll })
            })
            .collect();
        Ok(())
    }
}

fn saved_start(start: &Start) -> SavedStart {
    match start {
        Start::Tail => SavedStart::Tail,
        Start::After { marks, realtime } => {
            let mut marks: Vec<([u8; 16], u64)> = marks.iter().map(|(k, v)| (*k, *v)).collect();
            marks.sort();
            marks.truncate(MAX_MARKS);
            SavedStart::After {
                marks,
                realtime: *realtime,
            }
        }
    }
}

struct FileItem<'a>(FileId, &'a Resumed);

impl fmt::Display for FileItem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let FileItem((dev, ino), saved) = self;
        write!(f, "f={dev:x}.{ino:x}.{}.", hex_id(&saved.file_id))?;
        for (i, next) in saved.next.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write!(f, "{next:x}")?;
        }
        Ok(())
    }
}

struct PendingItem<'a>(FileId, &'a SavedStart);

impl fmt::Display for PendingItem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PendingItem((dev, ino), start) = self;
        write!(f, "p={dev:x}.{ino:x}.")?;
        match start {
            SavedStart::Tail => f.write_str("tail"),
            SavedStart::After { marks, realtime } => {
                write!(f, "{realtime:x}")?;
                for (id, seqnum) in marks {
                    write!(f, ".{}:{seqnum:x}", hex_id(id))?;
                }
                Ok(())
            }
        }
    }
}

struct DoneItem((FileId, u32, bool));

impl fmt::Display for DoneItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let DoneItem(((dev, ino), name, recent)) = self;
        let tag = if *recent { 'r' } else { 'd' };
        write!(f, "{tag}={dev:x}.{ino:x}.{name:08x}")
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{MAGIC} u={:016x} rt={:x} srt={:x}",
            self.source, self.realtime, self.start_realtime
        )?;
        if let Some(c) = &self.cursor {
            write!(f, " c={c}")?;
        }
        for (id, seqnum) in &self.marks {
            write!(f, " m={}:{seqnum:x}", hex_id(id))?;
        }
        for (id, seqnum) in &self.start_marks {
            write!(f, " s={}:{seqnum:x}", hex_id(id))?;
        }
        for dir in &self.dirs {
            write!(f, " dir={dir:016x}")?;
        }
        for (id, saved) in &self.files {
            write!(f, " {}", FileItem(*id, saved))?;
        }
        for (id, start) in &self.pending {
            write!(f, " {}", PendingItem(*id, start))?;
        }
        for d in &self.done {
            write!(f, " {}", DoneItem(*d))?;
        }
        Ok(())
    }
}

/// A number: 1 to 16 lowercase hex digits (no sign, no prefix).
fn hex(s: &str, what: &str) -> Result<u64, PositionError> {
    if s.is_empty()
        || s.len() > 16
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return err(format!("{what}: {s:?} is not a hex number"));
    }
    u64::from_str_radix(s, 16).or_else(|_| err(format!("{what}: {s:?} is not a hex number")))
}

/// A 128-bit ID: exactly 32 lowercase hex digits.
fn id128(s: &str, what: &str) -> Result<[u8; 16], PositionError> {
    if s.len() != 32 {
        return err(format!("{what}: {s:?} is not a 128-bit ID"));
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = s.get(2 * i..2 * i + 2).unwrap_or_default();
        *byte = u8::try_from(hex(pair, what)?)
            .or_else(|_| err(format!("{what}: {s:?} is not a 128-bit ID")))?;
    }
    Ok(out)
}

/// `<seqnum ID>:<seqnum>`
fn mark(s: &str, what: &str) -> Result<([u8; 16], u64), PositionError> {
    let Some((id, seqnum)) = s.split_once(':') else {
        return err(format!("{what}: {s:?} is not <seqnum ID>:<seqnum>"));
    };
    Ok((id128(id, what)?, hex(seqnum, what)?))
}

/// `<dev>.<ino>.<rest>`
fn file_id<'a>(s: &'a str, what: &str) -> Result<(FileId, &'a str), PositionError> {
    let mut parts = s.splitn(3, '.');
    let (Some(dev), Some(ino), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return err(format!("{what}: {s:?} is not <dev>.<ino>.…"));
    };
    Ok(((hex(dev, what)?, hex(ino, what)?), rest))
}

impl FromStr for Cursor {
    type Err = PositionError;

    /// journalctl's cursor string, as `Display` writes it.
    fn from_str(s: &str) -> Result<Cursor, PositionError> {
        let mut fields = s.split(';');
        let mut field = |name: &str| -> Result<&str, PositionError> {
            match fields.next().and_then(|f| f.strip_prefix(name)) {
                Some(value) => Ok(value),
                None => err(format!("cursor {s:?}: no {name} where expected")),
            }
        };
        let cursor = Cursor {
            seqnum_id: id128(field("s=")?, "cursor seqnum ID")?,
            seqnum: hex(field("i=")?, "cursor seqnum")?,
            boot_id: id128(field("b=")?, "cursor boot ID")?,
            monotonic: hex(field("m=")?, "cursor monotonic time")?,
            realtime: hex(field("t=")?, "cursor realtime")?,
            xor_hash: hex(field("x=")?, "cursor hash")?,
        };
        if fields.next().is_some() {
            return err(format!("cursor {s:?}: more fields than expected"));
        }
        Ok(cursor)
    }
}

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(text: &str) -> Result<Position, PositionError> {
        if text.len() > MAX_LEN {
            return err(format!(
                "{} bytes, longer than a position can be ({MAX_LEN})",
                text.len()
            ));
        }
        let mut words = text.split(' ');
        let magic = words.next().unwrap_or_default();
        if magic != MAGIC {
            return match magic.strip_prefix("vigil-journal-position/") {
                Some(version) => err(format!(
                    "a journal position of version {version:?}; this Vigil reads {MAGIC}"
                )),
                None => err(format!("not a journal position (it starts {magic:?})")),
            };
        }
        let (mut source, mut realtime, mut start_realtime) = (None, None, None);
        let mut p = Position {
            source: 0,
            realtime: 0,
            start_realtime: 0,
            cursor: None,
            marks: Vec::new(),
            start_marks: Vec::new(),
            dirs: Vec::new(),
            files: Vec::new(),
            pending: Vec::new(),
            done: Vec::new(),
            left_out: 0,
        };
        let mut ids: HashSet<FileId> = HashSet::new();
        let mut seen_ids: HashSet<([u8; 16], bool)> = HashSet::new();
        let once = |slot: &mut Option<u64>, value: &str, what: &str| {
            if slot.is_some() {
                return err(format!("{what} given twice"));
            }
            *slot = Some(hex(value, what)?);
            Ok(())
        };
        for word in words {
            let Some((tag, value)) = word.split_once('=') else {
                return err(format!("{word:?} is not <tag>=<value>"));
            };
            match tag {
                "u" => once(&mut source, value, "u (source)")?,
                "rt" => once(&mut realtime, value, "rt (realtime mark)")?,
                "srt" => once(&mut start_realtime, value, "srt (start realtime mark)")?,
                "c" => {
                    if p.cursor.is_some() {
                        return err("c (cursor) given twice");
                    }
                    p.cursor = Some(value.parse()?);
                }
                "m" | "s" => {
                    let (id, seqnum) = mark(value, "seqnum mark")?;
                    if !seen_ids.insert((id, tag == "m")) {
                        return err(format!("seqnum ID {} marked twice", hex_id(&id)));
                    }
                    match tag {
                        "m" => p.marks.push((id, seqnum)),
                        _ => p.start_marks.push((id, seqnum)),
                    }
                }
                "dir" => p.dirs.push(hex(value, "dir")?),
                "f" | "p" | "r" | "d" => {
                    let (id, rest) = file_id(value, tag)?;
                    if !ids.insert(id) {
                        return err(format!("file {:x}.{:x} given twice", id.0, id.1));
                    }
                    match tag {
                        "f" => {
                            let (fid, next) = rest.split_once('.').unwrap_or((rest, ""));
                            let file_id = id128(fid, "file ID")?;
                            let next = next
                                .split(',')
                                .map(|n| hex(n, "list position"))
                                .collect::<Result<Vec<u64>, _>>()?;
                            p.files.push((id, Resumed { file_id, next }));
                        }
                        "p" => {
                            let start = if rest == "tail" {
                                SavedStart::Tail
                            } else {
                                let mut parts = rest.split('.');
                                let realtime = hex(parts.next().unwrap_or_default(), "start")?;
                                let marks =
                                    parts
                                        .map(|m| mark(m, "start mark"))
                                        .collect::<Result<Vec<_>, _>>()?;
                                SavedStart::After { marks, realtime }
                            };
                            p.pending.push((id, start));
                        }
                        _ => {
                            if rest.len() > 8 {
                                return err(format!("name hash {rest:?} is too long"));
                            }
                            let name = hex(rest, "name hash")? as u32;
                            p.done.push((id, name, tag == "r"));
                        }
                    }
                }
                _ => return err(format!("unknown tag {tag:?}")),
            }
        }
        let (Some(source), Some(realtime), Some(start_realtime)) =
            (source, realtime, start_realtime)
        else {
            return err("incomplete: u, rt or srt is missing");
        };
        p.source = source;
        p.realtime = realtime;
        p.start_realtime = start_realtime;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Position {
        Position {
            source: 0x0123_4567_89ab_cdef,
            realtime: 1_700_000_000_000_000,
            start_realtime: 1_699_999_999_000_000,
            cursor: Some(Cursor {
                seqnum_id: [7; 16],
                seqnum: 42,
                boot_id: [9; 16],
                monotonic: 5,
                realtime: 1_700_000_000_000_000,
                xor_hash: u64::MAX,
            }),
            marks: vec![([7; 16], 42), ([8; 16], 3)],
            start_marks: vec![([7; 16], 40)],
            dirs: vec![1, u64::MAX],
            files: vec![(
                (2049, 1234),
                Resumed {
                    file_id: [0xab; 16],
                    next: vec![3, 0, 0, 0],
                },
            )],
            pending: vec![
                ((2049, 5), SavedStart::Tail),
                (
                    (2049, 6),
                    SavedStart::After {
                        marks: vec![([7; 16], 40)],
                        realtime: 17,
                    },
                ),
                (
                    (2049, 7),
                    SavedStart::After {
                        marks: vec![],
                        realtime: 0,
                    },
                ),
            ],
            done: vec![((2049, 99), 0xdead_beef, true), ((2049, 100), 0, false)],
            left_out: 0,
        }
    }

    #[test]
    fn text_round_trips() {
        let p = sample();
        let text = p.to_string();
        assert!(text.starts_with("vigil-journal-position/1 u=0123456789abcdef "));
        assert!(!text.contains('\n'));
        assert_eq!(text.parse::<Position>().unwrap(), p);
        let cursor = p.cursor.unwrap();
        assert_eq!(cursor.to_string().parse::<Cursor>().unwrap(), cursor);
    }

    #[test]
    fn bad_text_is_refused_with_a_reason() {
        let good = sample().to_string();
        let cases: &[(&str, &str)] = &[
            ("", "not a journal position"),
            ("hello", "not a journal position"),
            ("vigil-journal-position/2 u=1", "version \"2\""),
            ("vigil-journal-position/1", "incomplete"),
            ("vigil-journal-position/1 u=1 rt=2", "incomplete"),
            ("vigil-journal-position/1 u=1 u=1 rt=2 srt=3", "twice"),
            (
                "vigil-journal-position/1 u=+1 rt=2 srt=3",
                "not a hex number",
            ),
            ("vigil-journal-position/1 u=1 rt=2 srt=3 x=1", "unknown tag"),
            (
                "vigil-journal-position/1 u=1 rt=2 srt=3  ",
                "not <tag>=<value>",
            ),
            (
                "vigil-journal-position/1 u=1 rt=2 srt=3 u=11111111111111111",
                "twice",
            ),
            (
                "vigil-journal-position/1 u=1 rt=2 srt=3 f=1.2",
                "<dev>.<ino>",
            ),
            (
                "vigil-journal-position/1 u=1 rt=2 srt=3 d=1.2.123456789",
                "too long",
            ),
            (
                "vigil-journal-position/1 u=1 rt=2 srt=3 d=1.2.1 r=1.2.1",
                "twice",
            ),
            ("vigil-journal-position/1 u=1 rt=2 srt=3 c=s=1", "128-bit"),
        ];
        for (text, why) in cases {
            let e = text.parse::<Position>().unwrap_err();
            assert!(e.0.contains(why), "{text:?}: {e}");
        }
        for cut in 0..good.len() {
            // Every prefix either parses (a cut between words) or is refused; none panics.
            let _ = good[..cut].parse::<Position>();
        }
        let long = format!("{good} {}", "dir=1 ".repeat(MAX_LEN / 6));
        assert!(long.parse::<Position>().unwrap_err().0.contains("longer"));
    }

    #[test]
    fn a_follower_resumes_and_gives_back_the_same_position() {
        let roots = Roots::Directory("/nonexistent/journal".into());
        let mut p = sample();
        p.source = source_hash("x.service", &roots);
        let mut f = Follower::new("x.service", roots.clone());
        f.resume(p.clone()).unwrap();
        // Not polled since: the same position, file for file.
        assert_eq!(f.position().unwrap(), p);
        let e = f.resume(p.clone()).unwrap_err();
        assert!(e.0.contains("has run already"), "{e}");
        let mut other = Follower::new("x.service", Roots::Default);
        let e = other.resume(p.clone()).unwrap_err();
        assert!(e.0.contains("another unit or journal directory"), "{e}");
        let mut three = p.clone();
        three.files[0].1.next.pop();
        let e = Follower::new("x.service", roots).resume(three).unwrap_err();
        assert!(
            e.0.contains("has 3 list positions where x.service has 4"),
            "{e}"
        );
    }

    #[test]
    fn the_text_stays_within_its_budget_leaving_out_old_finished_files_first() {
        let roots = Roots::Directory("/nonexistent/journal".into());
        let mut p = sample();
        p.source = source_hash("x.service", &roots);
        p.pending.clear();
        p.files = (0..100)
            .map(|i| {
                let next = vec![i, 0, 0, 0];
                let file_id = [1; 16];
                ((2049, 1_000_000 + i), Resumed { file_id, next })
            })
            .collect();
        p.done = (0..6000u64)
            .map(|i| ((2049, 2_000_000 + i), i as u32, i % 6 == 0))
            .collect();
        let mut f = Follower::new("x.service", roots);
        f.resume(p.clone()).unwrap();
        let saved = f.position().unwrap();
        let text = saved.to_string();
        assert!(text.len() <= MAX_LEN, "{}", text.len());
        assert!(
            text.len() > MAX_LEN - 100,
            "the budget is used: {}",
            text.len()
        );
        assert!(saved.left_out() > 0);
        assert_eq!(saved.files() + saved.left_out(), p.files());
        // Every file being read and every file finished in the last run is kept.
        assert_eq!(saved.files, p.files);
        let recent = |q: &Position| q.done.iter().filter(|d| d.2).count();
        assert_eq!(recent(&saved), 1000);
        let reread: Position = text.parse().unwrap();
        assert_eq!(reread.files(), saved.files());
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused(text in ".{0,300}") {
            let _ = text.parse::<Position>();
        }

        #[test]
        fn words_of_the_format_parse_or_are_refused(
            words in proptest::collection::vec(
                "(u|rt|srt|c|m|s|dir|f|p|r|d|x)=[0-9a-f.:,;=stibmx]{0,40}",
                0..12,
            )
        ) {
            let text = format!("{MAGIC} u=1 rt=2 srt=3 {}", words.join(" "));
            if let Ok(p) = text.parse::<Position>() {
                // What parses writes back to text that parses to the same.
                prop_assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
            }
        }
    }
}
