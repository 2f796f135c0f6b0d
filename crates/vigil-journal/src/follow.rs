//! Following one unit's entries across the journal files of a directory, run after run.
//!
//! What counts as the unit's entries is what `journalctl -u UNIT` shows: `_SYSTEMD_UNIT=UNIT`
//! (the service's own output), `UNIT=UNIT` from `_PID=1` (systemd's messages about it),
//! `OBJECT_SYSTEMD_UNIT=UNIT` from `_UID=0` (other privileged daemons about it),
//! `COREDUMP_UNIT=UNIT` in a root coredump message, and for a slice `_SYSTEMD_SLICE=UNIT`.
//!
//! How new entries are found without reading the journal: each of those field values is one
//! DATA object per file, found through the file's hash table, and each DATA object keeps the
//! list of the entries that use it, in the order they were written. A file's position for
//! one match is an index into that list (plus the ENTRY_ARRAY holding it), so a run reads
//! only the entries appended to the unit's lists since the previous run: the work is
//! proportional to the unit's new entries, not to the journal's size or to other units'
//! traffic. An entry that several matches cover is counted under the first match only.
//!
//! Files are tracked by inode, so rotation (journald renames `system.journal` to
//! `system@….journal` and starts a new `system.journal`) keeps the old file's position: its
//! unread tail is still read. A listing can be stale by the time a file is opened, or miss a
//! file renamed while the directory was read; a file is registered only under the inode it
//! really has, and a known file missing from a listing is looked for in a second one before
//! it is forgotten (see `Follower::poll`); one it had not read to its end is reported
//! then in [`Poll::problems`] (journald deletes its oldest archives as the journal
//! outgrows its limits, and a follower far enough behind loses their entries). A file seen for the first time after the first run starts
//! after the cursor: entries with a greater seqnum than any seen before (when it shares the
//! seqnum ID, as journald's files do) or else a later realtime. The first run starts at the
//! tail of every file. Archived files that have been read to the end are not opened again,
//! and a directory is read again only when its mtime changed (see `Follower::list_dir`), so
//! a run with nothing new costs a `stat` per directory and two `pread`s per online file.
//!
//! A follower's state lives in its process; to go on in another process (a one-shot
//! `vigil check` from cron, then the next one), [`Follower::position`] gives its complete
//! position (per-file list positions by inode, the finished files, the marks) as a
//! [`Position`], one bounded line of text, and [`Follower::resume`] installs one in a new
//! follower before its first run: its runs then hand over what the first follower's next
//! runs would have. Format, size bound and what is left out when a journal has thousands
//! of files: [`position`].
//!
//! Known limit: when journald flushes `/run/log/journal` into `/var/log/journal` (once per
//! boot, `journalctl --flush`), the copies in `/var` are new entries of a known file and
//! are handed over again if the follower was already reading both directories; journalctl
//! hides such duplicates by comparing entries across files, this follower does not.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::file::{ChainPos, JournalFile, List};
use crate::format::{self, Error, State, entry_items, hex_id};

pub mod position;

pub use position::{Position, PositionError};

/// Where a follower looks for journal files.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Roots {
    /// journald's own: `/var/log/journal/<machine-id>/` and `/run/log/journal/<machine-id>/`
    /// (every machine-ID directory when `/etc/machine-id` cannot be read).
    Default,
    /// One directory (a container's `/var/log/journal`, say): its `*.journal` files and
    /// those of its machine-ID subdirectories, like `journalctl -D`.
    Directory(PathBuf),
}

impl Roots {
    /// The directories whose files are read, existing or not.
    pub fn directories(&self) -> Vec<PathBuf> {
        match self {
            Roots::Directory(d) => {
                let mut out = vec![d.clone()];
                out.extend(id_subdirs(d));
                out
            }
            Roots::Default => {
                let bases = [Path::new("/var/log/journal"), Path::new("/run/log/journal")];
                match machine_id() {
                    Some(id) => bases.iter().map(|b| b.join(&id)).collect(),
                    None => bases.iter().flat_map(|b| id_subdirs(b)).collect(),
                }
            }
        }
    }
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::Default => f.write_str("/var/log/journal, /run/log/journal"),
            Roots::Directory(d) => write!(f, "{}", d.display()),
        }
    }
}

fn machine_id() -> Option<String> {
    let text = fs::read_to_string("/etc/machine-id").ok()?;
    let id = text.trim();
    is_id128(id).then(|| id.to_owned())
}

fn is_id128(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn id_subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(is_id128))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Where a journal entry sits, in journalctl's cursor terms. Seqnums only compare between
/// files with the same seqnum ID; realtime compares anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub seqnum_id: [u8; 16],
    pub seqnum: u64,
    pub boot_id: [u8; 16],
    pub monotonic: u64,
    pub realtime: u64,
    pub xor_hash: u64,
}

impl fmt::Display for Cursor {
    /// journalctl's cursor string (`__CURSOR`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "s={};i={:x};b={};m={:x};t={:x};x={:x}",
            hex_id(&self.seqnum_id),
            self.seqnum,
            hex_id(&self.boot_id),
            self.monotonic,
            self.realtime,
            self.xor_hash
        )
    }
}

/// One new entry of the unit, as handed to the caller's visitor.
#[derive(Debug)]
pub struct Entry<'a> {
    pub cursor: Cursor,
    /// The value of `MESSAGE` (without `MESSAGE=`); empty when the entry has none.
    pub message: &'a [u8],
}

/// Bounds on one run.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Entries of the unit read per run; the rest waits for the next run.
    pub entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { entries: 1_000_000 }
    }
}

/// What one run did.
#[derive(Debug, Default)]
pub struct Poll {
    /// This was the follower's first run: it only noted where each file ends.
    pub first: bool,
    /// Journal files looked at (opened or known to be read to the end).
    pub files: usize,
    /// New entries of the unit handed to the visitor.
    pub entries: u64,
    /// Bytes of entry objects and messages read.
    pub bytes: u64,
    /// The entry limit was reached: more new entries wait for the next run.
    pub more_pending: bool,
    /// Files or entries skipped because they did not parse, and files deleted before they
    /// were read to their end (file name: why).
    pub problems: Vec<String>,
}

/// The fields whose values select a unit's entries, with the extra values an entry must
/// also have for the match to count (see the module documentation).
fn matches_for(unit: &str) -> Vec<(Vec<u8>, Vec<&'static [u8]>)> {
    const PID1: &[u8] = b"_PID=1";
    const UID0: &[u8] = b"_UID=0";
    const COREDUMP: &[u8] = b"MESSAGE_ID=fc2e22bc6ee647b6b90729ab34a250b1";
    let mut m = vec![
        (format!("_SYSTEMD_UNIT={unit}").into_bytes(), vec![]),
        (format!("UNIT={unit}").into_bytes(), vec![PID1]),
        (
            format!("OBJECT_SYSTEMD_UNIT={unit}").into_bytes(),
            vec![UID0],
        ),
        (
            format!("COREDUMP_UNIT={unit}").into_bytes(),
            vec![UID0, COREDUMP],
        ),
    ];
    if unit.ends_with(".slice") {
        m.push((format!("_SYSTEMD_SLICE={unit}").into_bytes(), vec![]));
    }
    m
}

/// A file's position in one match's entry list.
#[derive(Clone, Debug, Default)]
struct Term {
    /// The DATA object of the match's field value, once the file has one.
    data: Option<u64>,
    /// The next list index to read.
    next: u64,
    hint: Option<ChainPos>,
    /// The list as of this run's snapshot.
    list: Option<List>,
}

struct Tracked {
    jf: JournalFile,
    file_id: [u8; 16],
    terms: Vec<Term>,
    /// DATA objects of the extra values (`_PID=1`, ...), by payload, once found.
    extra: HashMap<&'static [u8], u64>,
    /// Archived (or set aside as `*.journal~`): journald will not append to it again.
    final_: bool,
    /// DATA objects known not to be `MESSAGE` (hostname, PID, ...: shared by many entries).
    not_message: HashSet<u64>,
}

/// The memo of non-MESSAGE DATA objects is cleared when it grows past this.
const NOT_MESSAGE_MAX: usize = 16 * 1024;

/// Follows one unit's entries in the journal files of `roots`. Keep one per check and call
/// [`Follower::poll`] once per run.
pub struct Follower {
    unit: String,
    roots: Roots,
    matches: Vec<(Vec<u8>, Vec<&'static [u8]>)>,
    started: bool,
    tracked: HashMap<FileId, Tracked>,
    /// Files read to the end that journald will not write again, with their name's hash
    /// (so an inode that now holds another file is not skipped) and the run they finished
    /// in.
    done: HashMap<FileId, Done>,
    /// Files that could not be registered yet, with the start they get once they can.
    pending: HashMap<FileId, Start>,
    /// Each directory's last listing, and the directories to read.
    dir_cache: HashMap<PathBuf, DirState>,
    roots_cache: Option<(Option<Stamp>, Vec<PathBuf>, u32)>,
    /// The highest seqnum seen per seqnum ID, and the latest realtime: where a file that
    /// shows up later starts.
    marks: HashMap<[u8; 16], u64>,
    realtime_mark: u64,
    /// The marks as they were when the last completed run began: where a file that the
    /// first listing after [`Follower::resume`] finds for the first time starts.
    start_marks: HashMap<[u8; 16], u64>,
    start_realtime: u64,
    /// Completed runs (after a resume: 1 plus the runs since).
    polls: u64,
    /// Files of a resumed position not opened again yet: file ID and list positions.
    resumed: HashMap<FileId, Resumed>,
    /// Hashes of the directories the resumed position's process had listed.
    resumed_dirs: HashSet<u64>,
    cursor: Option<Cursor>,
    // Reused buffers.
    entry_buf: Vec<u8>,
    items: Vec<u64>,
    message: Vec<u8>,
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
}

impl fmt::Debug for Follower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower")
            .field("unit", &self.unit)
            .field("roots", &self.roots)
            .field("started", &self.started)
            .field("files", &self.tracked.len())
            .field("cursor", &self.cursor)
            .finish()
    }
}

/// A run that could not look at the journal at all (a directory or file it may not read).
#[derive(Debug)]
pub struct PollError(pub String);

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PollError {}

impl Follower {
    pub fn new(unit: &str, roots: Roots) -> Follower {
        Follower {
            unit: unit.to_owned(),
            roots,
            matches: matches_for(unit),
            started: false,
            tracked: HashMap::new(),
            done: HashMap::new(),
            pending: HashMap::new(),
            dir_cache: HashMap::new(),
            roots_cache: None,
            marks: HashMap::new(),
            realtime_mark: 0,
            start_marks: HashMap::new(),
            start_realtime: 0,
            polls: 0,
            resumed: HashMap::new(),
            resumed_dirs: HashSet::new(),
            cursor: None,
            entry_buf: Vec::new(),
            items: Vec::new(),
            message: Vec::new(),
            scratch: Vec::new(),
            scratch2: Vec::new(),
        }
    }

    pub fn unit(&self) -> &str {
        &self.unit
    }

    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// The last entry of the unit handed to a visitor.
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Reads the unit's entries written since the previous run (none on the first run: it
    /// notes where each file ends) and hands each to `visit`, file by file, each file's in
    /// the order they were written.
    pub fn poll(
        &mut self,
        limits: Limits,
        mut visit: impl FnMut(&Entry<'_>),
    ) -> Result<Poll, PollError> {
        let mut poll = Poll {
            first: !self.started,
            ..Poll::default()
        };
        // Where files start that the next real listing of a directory finds: after what
        // was seen before this run (see `list_dir`).
        // (On the first run, no marks: files created after it are new from their start.)
        let poll_start = Start::After {
            marks: self.marks.clone(),
            realtime: self.realtime_mark,
        };
        let mut new_marks: Vec<([u8; 16], u64, u64)> = Vec::new();
        let mut seen: HashSet<FileId> = HashSet::new();
        let mut budget = limits.entries;
        let dirs = self.directories();
        let mut starts: HashMap<PathBuf, Start> = HashMap::new();
        // A known file missing from a listing was deleted, or renamed while the directory
        // was read: readdir does not promise to return an entry renamed meanwhile (journald
        // archives by renaming), and a renamed file forgotten would be found again as new,
        // starting after marks that can be past its unread entries. So the directories are
        // listed once more; a file missing from both listings is forgotten.
        for pass in 0..2 {
            for dir in &dirs {
                let (files, start) = self.list_dir(dir, &poll_start, pass > 0)?;
                // The second listing's new files start where the first's would have.
                let start = starts.entry(dir.clone()).or_insert(start).clone();
                for (path, id) in files {
                    if !seen.insert(id) {
                        continue;
                    }
                    poll.files += 1;
                    if let Some(done) = self.done.get(&id) {
                        if done.name == name_hash(&path) {
                            continue;
                        }
                        // The inode now holds another file (the finished one was deleted).
                        self.done.remove(&id);
                    }
                    let result = self.visit_file(
                        &path,
                        id,
                        &start,
                        &mut new_marks,
                        &mut budget,
                        &mut poll,
                        &mut visit,
                    );
                    match result {
                        Ok(()) => {}
                        Err(Error::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                            // Renamed or deleted since the listing (journald archiving
                            // `system.journal`: between the rename and the new file's
                            // creation the name does not exist). Missing, it makes the second
                            // listing, which finds it under its new name if it has one.
                            poll.files -= 1;
                            seen.remove(&id);
                        }
                        Err(Error::Io(e)) if e.kind() == io::ErrorKind::PermissionDenied => {
                            return Err(PollError(format!("cannot read {}: {e}", path.display())));
                        }
                        // Not registered (journald creates a file before it writes its
                        // header): it keeps its start, or its saved position, for the next
                        // run.
                        Err(e)
                            if self.pending.contains_key(&id) || self.resumed.contains_key(&id) =>
                        {
                            poll.problems
                                .push(format!("{}: {e} (retrying next run)", path.display()));
                        }
                        Err(e) => poll.problems.push(format!("{}: {e}", path.display())),
                    }
                }
            }
            let missing = self
                .tracked
                .keys()
                .chain(self.resumed.keys())
                .chain(self.pending.keys())
                .any(|id| !seen.contains(id));
            if !missing {
                break;
            }
        }
        // A file not read to its end (or that journald could still append to) that is
        // gone from both listings was deleted: journald removes its oldest archives when
        // the journal outgrows its limits, so a follower far enough behind loses what they
        // held. Said, not silent (a file still being created, `pending`, held nothing).
        let mut gone: Vec<String> = self
            .tracked
            .iter()
            .filter(|(id, _)| !seen.contains(id))
            .map(|(_, t)| t.jf.path().display().to_string())
            .collect();
        gone.sort();
        let unnamed = self.resumed.keys().filter(|id| !seen.contains(id)).count();
        if unnamed > 0 {
            gone.push(format!(
                "{unnamed} file{} of the saved position",
                if unnamed == 1 { "" } else { "s" }
            ));
        }
        for what in gone {
            poll.problems.push(format!(
                "{what}: deleted before it was read to its end; entries of {} in it may be missed",
                self.unit
            ));
        }
        self.tracked.retain(|id, _| seen.contains(id));
        self.done.retain(|id, _| seen.contains(id));
        self.pending.retain(|id, _| seen.contains(id));
        self.resumed.retain(|id, _| seen.contains(id));
        // Every directory was listed: the resumed ones all have their state now.
        self.resumed_dirs.clear();
        if let Start::After { marks, realtime } = poll_start {
            self.start_marks = marks;
            self.start_realtime = realtime;
        }
        for (seqnum_id, seqnum, realtime) in new_marks {
            let m = self.marks.entry(seqnum_id).or_insert(0);
            *m = (*m).max(seqnum);
            self.realtime_mark = self.realtime_mark.max(realtime);
        }
        poll.more_pending = budget == 0;
        self.started = true;
        self.polls += 1;
        Ok(poll)
    }

    /// The directories to read, cached: `Roots::directories` reads a directory (or
    /// /etc/machine-id), so it is redone only when the root directory changed, and at least
    /// every [`RELIST_EVERY`] runs.
    fn directories(&mut self) -> Vec<PathBuf> {
        let stamp = match &self.roots {
            Roots::Directory(d) => stamp(d).ok().flatten(),
            Roots::Default => None,
        };
        if let Some((old, dirs, age)) = &mut self.roots_cache
            && *old == stamp
            && *age < RELIST_EVERY
        {
            *age += 1;
            return dirs.clone();
        }
        let dirs = self.roots.directories();
        self.roots_cache = Some((stamp, dirs.clone(), 0));
        dirs
    }

    /// The journal files of `dir`, and where those of them that are new start.
    ///
    /// A directory is read again only when its mtime changed (a file was created, renamed
    /// or deleted) or every [`RELIST_EVERY`] runs. A file that a listing finds for the
    /// first time was created after the previous real listing of its directory, so its
    /// entries all come after the marks taken at the start of that run: it starts there.
    ///
    /// Directory timestamps are coarse (a kernel tick): a file created in the same tick as
    /// the change before it leaves the mtime as it was. So a listing is reused only once
    /// the mtime was the same at two real listings in a row (runs are further apart than a
    /// tick); until then the directory is read every run. A file found late still starts
    /// right: after the marks of the run whose listing missed it.
    ///
    /// `again`: read the directory even if its listing could be reused, a second time in
    /// this run (see [`Follower::poll`]).
    fn list_dir(
        &mut self,
        dir: &Path,
        poll_start: &Start,
        again: bool,
    ) -> Result<(Vec<(PathBuf, FileId)>, Start), PollError> {
        let stamp =
            stamp(dir).map_err(|e| PollError(format!("cannot stat {}: {e}", dir.display())))?;
        if !again
            && let Some(state) = self.dir_cache.get_mut(dir)
            && state.stamp == stamp
            && state.verified
            && state.age < RELIST_EVERY
        {
            state.age += 1;
            return Ok((state.files.clone(), state.start.clone()));
        }
        let files = match stamp {
            None => Vec::new(),
            Some((dev, ..)) => list_files(dir, dev)?,
        };
        // A directory not listed before: on the first run its files are at their tails;
        // after a resume, if the saved position's process had listed it, its unknown files
        // were created after that process's last run began; later, it did not exist (or was
        // not read) before, so its files are all new.
        let unseen =
            if !self.dir_cache.contains_key(dir) && self.resumed_dirs.remove(&dir_hash(dir)) {
                Start::After {
                    marks: self.start_marks.clone(),
                    realtime: self.start_realtime,
                }
            } else if self.started {
                Start::After {
                    marks: HashMap::new(),
                    realtime: 0,
                }
            } else {
                Start::Tail
            };
        let state = self.dir_cache.entry(dir.to_owned()).or_insert(DirState {
            stamp: None,
            verified: false,
            files: Vec::new(),
            start: unseen,
            age: 0,
        });
        let start = std::mem::replace(&mut state.start, poll_start.clone());
        // Two listings in one run are closer than a tick: they verify nothing.
        state.verified = !again && state.stamp == stamp && stamp.is_some();
        state.stamp = stamp;
        state.files = files.clone();
        state.age = 0;
        Ok((files, start))
    }

    /// Registers a file when it is new (or its inode now holds another file), reads its
    /// counts, then its new entries. A file that cannot be registered keeps the start it
    /// would have had ([`Follower::pending`]) for the next run.
    #[allow(clippy::too_many_arguments)]
    fn visit_file(
        &mut self,
        path: &Path,
        id: FileId,
        start: &Start,
        new_marks: &mut Vec<([u8; 16], u64, u64)>,
        budget: &mut u64,
        poll: &mut Poll,
        visit: &mut impl FnMut(&Entry<'_>),
    ) -> Result<(), Error> {
        let mut same = false;
        if let Some(t) = self.tracked.get_mut(&id) {
            t.jf.set_path(path.to_owned());
            t.jf.refresh()?;
            // The same inode with another file ID: deleted and recreated.
            same = t.jf.header().file_id == t.file_id;
        }
        if same {
            let Some(t) = self.tracked.get_mut(&id) else {
                return Ok(());
            };
            t.final_ = is_final(t.jf.header(), path);
            counts(t, &self.matches, &mut self.scratch, &mut self.scratch2)?;
        } else {
            self.tracked.remove(&id);
            if let Some(saved) = self.resumed.remove(&id) {
                match self.reopen(path, id, &saved) {
                    Ok(Some(t)) => {
                        self.tracked.insert(id, t);
                    }
                    // Another file than the saved position's: registered as new below.
                    Ok(None) => {}
                    Err(e) => {
                        self.resumed.insert(id, saved);
                        return Err(e);
                    }
                }
            }
        }
        if !self.tracked.contains_key(&id) {
            let start = self.pending.remove(&id).unwrap_or_else(|| start.clone());
            match self.register(path, id, &start) {
                Ok(Some(t)) => {
                    self.tracked.insert(id, t);
                }
                Ok(None) => {
                    // Archived before the first run: nothing in it is new.
                    self.finish(id, path);
                    return Ok(());
                }
                Err(e) => {
                    self.pending.insert(id, start);
                    return Err(e);
                }
            }
        }
        let Some(t) = self.tracked.get_mut(&id) else {
            return Ok(());
        };
        let h = t.jf.header().clone();
        new_marks.push((h.seqnum_id, h.tail_entry_seqnum, h.tail_entry_realtime));
        let outcome = self.read_new(id, path, budget, poll, visit);
        if let Some(t) = self.tracked.get_mut(&id) {
            t.jf.clear_cache();
            let read_all = t
                .terms
                .iter()
                .all(|x| x.list.is_none_or(|l| x.next >= l.len));
            if t.final_ && read_all && outcome.is_ok() {
                self.tracked.remove(&id);
                self.finish(id, path);
            }
        }
        outcome
    }

    /// Notes that a file journald will not write again has been read to its end.
    fn finish(&mut self, id: FileId, path: &Path) {
        let done = Done {
            name: name_hash(path),
            poll: self.polls + 1,
        };
        self.done.insert(id, done);
    }

    /// Opens a file of a resumed position again and puts its list positions back.
    /// `None`: the inode now holds another file.
    fn reopen(
        &mut self,
        path: &Path,
        id: FileId,
        saved: &Resumed,
    ) -> Result<Option<Tracked>, Error> {
        let jf = open_listed(path, id)?;
        let h = jf.header().clone();
        if h.file_id != saved.file_id {
            return Ok(None);
        }
        let mut t = Tracked {
            jf,
            file_id: h.file_id,
            terms: vec![Term::default(); self.matches.len()],
            extra: HashMap::new(),
            final_: is_final(&h, path),
            not_message: HashSet::new(),
        };
        counts(&mut t, &self.matches, &mut self.scratch, &mut self.scratch2)?;
        for (term, &next) in t.terms.iter_mut().zip(&saved.next) {
            term.next = next;
        }
        Ok(Some(t))
    }

    /// Opens a file seen for the first time and sets where each match's list starts.
    /// `None`: nothing in it can ever be new.
    fn register(
        &mut self,
        path: &Path,
        id: FileId,
        start: &Start,
    ) -> Result<Option<Tracked>, Error> {
        let jf = open_listed(path, id)?;
        let h = jf.header().clone();
        let mut t = Tracked {
            jf,
            file_id: h.file_id,
            terms: vec![Term::default(); self.matches.len()],
            extra: HashMap::new(),
            final_: is_final(&h, path),
            not_message: HashSet::new(),
        };
        if t.final_ && matches!(start, Start::Tail) {
            return Ok(None);
        }
        counts(&mut t, &self.matches, &mut self.scratch, &mut self.scratch2)?;
        for term in &mut t.terms {
            let Some(list) = term.list else { continue };
            term.next = match start {
                Start::Tail => list.len,
                Start::After { marks, realtime } => {
                    let after = marks.get(&h.seqnum_id).copied();
                    let all_new = match after {
                        Some(m) => h.head_entry_seqnum > m,
                        None => h.head_entry_realtime > *realtime,
                    };
                    if all_new {
                        0
                    } else {
                        first_after(&mut t.jf, &list, after, *realtime)?
                    }
                }
            };
        }
        Ok(Some(t))
    }

    /// Phase 2: the entries of each match's list past its position, up to the counts.
    fn read_new(
        &mut self,
        id: FileId,
        path: &Path,
        budget: &mut u64,
        poll: &mut Poll,
        visit: &mut impl FnMut(&Entry<'_>),
    ) -> Result<(), Error> {
        let Some(t) = self.tracked.get_mut(&id) else {
            return Ok(());
        };
        t.jf.clear_cache();
        let seqnum_id = t.jf.header().seqnum_id;
        let known: Vec<u64> = t
            .terms
            .iter()
            .filter_map(|x| x.data)
            .chain(t.extra.values().copied())
            .collect();
        if t.not_message.len() > NOT_MESSAGE_MAX {
            t.not_message.clear();
        }
        for k in 0..t.terms.len() {
            let Some(list) = t.terms[k].list else {
                continue;
            };
            while t.terms[k].next < list.len {
                if *budget == 0 {
                    return Ok(());
                }
                let index = t.terms[k].next;
                let mut hint = t.terms[k].hint;
                let read = read_entry(&mut t.jf, &list, index, &mut hint, &mut self.entry_buf);
                t.terms[k].hint = hint;
                let head = match read {
                    Ok(head) => head,
                    Err(e) if !t.final_ => {
                        // Probably not completely written yet: the next run tries again.
                        poll.problems
                            .push(format!("{}: {e} (retrying next run)", path.display()));
                        break;
                    }
                    Err(e) => {
                        poll.problems
                            .push(format!("{}: {e} (entry skipped)", path.display()));
                        t.terms[k].next += 1;
                        continue;
                    }
                };
                t.terms[k].next += 1;
                let mut items = std::mem::take(&mut self.items);
                items.clear();
                items.extend(entry_items(&self.entry_buf, t.jf.header()));
                let satisfies = |j: usize| -> bool {
                    let Some(d) = t.terms[j].data else {
                        return false;
                    };
                    items.contains(&d)
                        && self.matches[j]
                            .1
                            .iter()
                            .all(|p| t.extra.get(p).is_some_and(|o| items.contains(o)))
                };
                if !satisfies(k) || (0..k).any(satisfies) {
                    self.items = items;
                    continue;
                }
                *budget -= 1;
                poll.entries += 1;
                poll.bytes += self.entry_buf.len() as u64;
                let found = find_message(
                    &mut t.jf,
                    &items,
                    &known,
                    &mut t.not_message,
                    &mut self.message,
                    &mut self.scratch,
                );
                match found {
                    Ok(true) => poll.bytes += self.message.len() as u64 + 8,
                    Ok(false) => self.message.clear(),
                    Err(e) => {
                        poll.problems
                            .push(format!("{}: {e} (message unreadable)", path.display()));
                        self.message.clear();
                    }
                }
                let cursor = Cursor {
                    seqnum_id,
                    seqnum: head.seqnum,
                    boot_id: head.boot_id,
                    monotonic: head.monotonic,
                    realtime: head.realtime,
                    xor_hash: head.xor_hash,
                };
                if self.cursor.is_none_or(|c| newer(&cursor, &c)) {
                    self.cursor = Some(cursor);
                }
                visit(&Entry {
                    cursor,
                    message: &self.message,
                });
                self.items = items;
            }
        }
        Ok(())
    }
}

/// A file's identity while it exists: (device, inode). Survives renames (rotation).
type FileId = (u64, u64);

/// A file read to its end that journald will not write again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Done {
    /// [`name_hash`] of its file name: a finished file is never renamed again, so another
    /// name at the inode is another file.
    name: u32,
    /// The run (1-based) it was finished in.
    poll: u64,
}

/// A file of a resumed position, until it is opened again.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Resumed {
    /// The header's file ID: another one at the inode is another file.
    file_id: [u8; 16],
    /// Each match's next list index.
    next: Vec<u64>,
}

/// Key of the hashes below: they name things in a saved position; they are not secret.
const NAME_KEY: &[u8; 16] = b"vigil-journal-n1";

/// A file name's 32-bit hash (a finished file's identity besides its inode).
fn name_hash(path: &Path) -> u32 {
    use std::os::unix::ffi::OsStrExt;
    let name = path.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
    // Truncated on purpose: 32 bits tell a recycled inode apart well enough.
    crate::hash::siphash24(name, NAME_KEY) as u32
}

/// A directory path's hash.
fn dir_hash(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let mut data = b"dir\0".to_vec();
    data.extend_from_slice(dir.as_os_str().as_bytes());
    crate::hash::siphash24(&data, NAME_KEY)
}

/// A directory's identity and modification time: (device, inode, mtime s, mtime ns).
type Stamp = (u64, u64, i64, i64);

/// `None` when `dir` does not exist.
fn stamp(dir: &Path) -> io::Result<Option<Stamp>> {
    match fs::metadata(dir) {
        Ok(m) => Ok(Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Listings are redone at least this often (in runs), even without a directory change.
const RELIST_EVERY: u32 = 16;

/// The last listing of one directory.
struct DirState {
    stamp: Option<Stamp>,
    /// The stamp was the same at the listing before this one: no change can hide in it.
    verified: bool,
    files: Vec<(PathBuf, FileId)>,
    /// Where files that the next real listing finds for the first time start.
    start: Start,
    /// Runs since the listing was read.
    age: u32,
}

/// Where a file seen for the first time starts.
#[derive(Clone, Debug)]
enum Start {
    /// The follower's first run: at the end.
    Tail,
    /// After the highest seqnum seen per seqnum ID (or, for another seqnum ID, after the
    /// latest realtime).
    After {
        marks: HashMap<[u8; 16], u64>,
        realtime: u64,
    },
}

fn is_final(h: &format::Header, path: &Path) -> bool {
    h.state == State::Archived || path.as_os_str().to_string_lossy().ends_with('~')
}

/// Phase 1: each match's DATA object and list count, then the extra values' DATA objects
/// (an entry a count covers was written, with all its DATA objects, before the count was
/// read, so this order finds every DATA object those entries use).
fn counts(
    t: &mut Tracked,
    matches: &[(Vec<u8>, Vec<&'static [u8]>)],
    scratch: &mut Vec<u8>,
    scratch2: &mut Vec<u8>,
) -> Result<(), Error> {
    t.jf.set_cached(false);
    let result = counts_uncached(t, matches, scratch, scratch2);
    t.jf.set_cached(true);
    result
}

fn counts_uncached(
    t: &mut Tracked,
    matches: &[(Vec<u8>, Vec<&'static [u8]>)],
    scratch: &mut Vec<u8>,
    scratch2: &mut Vec<u8>,
) -> Result<(), Error> {
    for (term, (payload, _)) in t.terms.iter_mut().zip(matches) {
        if term.data.is_none() {
            term.data = t.jf.find_data(payload, scratch, scratch2)?;
        }
        term.list = match term.data {
            Some(d) => Some(t.jf.data_list(d)?),
            None => None,
        };
    }
    // Only the matches present in this file need their extra values.
    let present = t
        .terms
        .iter()
        .zip(matches)
        .filter(|(term, _)| term.data.is_some());
    for (_, (_, extra)) in present {
        for &payload in extra {
            if !t.extra.contains_key(payload)
                && let Some(d) = t.jf.find_data(payload, scratch, scratch2)?
            {
                t.extra.insert(payload, d);
            }
        }
    }
    Ok(())
}

fn newer(a: &Cursor, b: &Cursor) -> bool {
    if a.seqnum_id == b.seqnum_id {
        a.seqnum > b.seqnum
    } else {
        a.realtime > b.realtime
    }
}

fn read_entry(
    jf: &mut JournalFile,
    list: &List,
    index: u64,
    hint: &mut Option<ChainPos>,
    buf: &mut Vec<u8>,
) -> Result<format::EntryHead, Error> {
    let offset = jf.list_item(list, index, hint)?;
    jf.entry(offset, buf)
}

/// The first index of `list` whose entry is newer than the marks (`list.len` if none).
fn first_after(
    jf: &mut JournalFile,
    list: &List,
    seqnum: Option<u64>,
    realtime: u64,
) -> Result<u64, Error> {
    let mut buf = Vec::new();
    let (mut lo, mut hi) = (0u64, list.len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let mut hint = None;
        let head = read_entry(jf, list, mid, &mut hint, &mut buf)?;
        let is_new = match seqnum {
            Some(s) => head.seqnum > s,
            None => head.realtime > realtime,
        };
        if is_new {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// Puts the MESSAGE value of the entry with DATA `items` into `out`. `known` are DATA
/// objects that are not MESSAGE (the match values); `not_message` remembers others.
fn find_message(
    jf: &mut JournalFile,
    items: &[u64],
    known: &[u64],
    not_message: &mut HashSet<u64>,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<bool, Error> {
    const FIELD: &[u8] = b"MESSAGE=";
    // journald writes an entry's new DATA objects just before the entry: a message not
    // seen before is among the highest offsets, in the pages the entry itself is in.
    let mut order: [u64; 64] = [0; 64];
    let sorted: &[u64] = if items.len() <= order.len() {
        order[..items.len()].copy_from_slice(items);
        order[..items.len()].sort_unstable_by(|a, b| b.cmp(a));
        &order[..items.len()]
    } else {
        items
    };
    for &item in sorted {
        if known.contains(&item) || not_message.contains(&item) {
            continue;
        }
        let head = jf.data_head(item)?;
        if !head.compressed() {
            jf.data_raw_prefix(item, &head, scratch, FIELD.len())?;
            if scratch.as_slice() != FIELD {
                not_message.insert(item);
                continue;
            }
        }
        jf.data_payload(item, out, scratch)?;
        if out.starts_with(FIELD) {
            out.drain(..FIELD.len());
            return Ok(true);
        }
        not_message.insert(item);
    }
    Ok(false)
}

/// Opens a file of a directory listing, if the name still holds the listing's inode.
///
/// journald archives by renaming `system.journal` and creating a new one under the name, so
/// a name listed a moment ago can already be another file. Registered under the listing's
/// inode, the new file would take the place of the renamed one: a resumed position's list
/// indexes would be lost with it and the renamed file's unread entries, found again under
/// its new name after the new file's marks, skipped. Such an open fails as `NotFound`,
/// as if the name were gone. Only the inode is compared: readdir's `d_ino` equals `st_ino` for files on
/// every filesystem a journal lives on (overlayfs too), while `st_dev` can differ between a
/// directory and its files (overlayfs over several filesystems without `xino`).
fn open_listed(path: &Path, id: FileId) -> Result<JournalFile, Error> {
    let file = fs::File::open(path)?;
    if file.metadata()?.ino() != id.1 {
        return Err(Error::Io(io::Error::new(io::ErrorKind::NotFound, Renamed)));
    }
    JournalFile::from_file(file, path.to_owned())
}

/// A listed name that holds another inode by the time it is opened (see [`open_listed`]).
#[derive(Debug)]
struct Renamed;

impl fmt::Display for Renamed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("renamed since the directory was listed")
    }
}

impl std::error::Error for Renamed {}

/// The journal files in `dir` (on device `dev`) with their identity (device, inode).
fn list_files(dir: &Path, dev: u64) -> Result<Vec<(PathBuf, FileId)>, PollError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(PollError(format!("cannot list {}: {e}", dir.display()))),
    };
    for e in rd {
        let e = e.map_err(|e| PollError(format!("cannot list {}: {e}", dir.display())))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".journal") || name.ends_with(".journal~") {
            out.push((e.path(), (dev, e.ino())));
        }
    }
    // Oldest first: a name's archived files (`system@<seqnum ID>-<head seqnum>-….journal`,
    // in seqnum order) before its online file (`system.journal`).
    out.sort_by_cached_key(|(path, _)| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let online = !name.contains('@');
        let stem = name.split(['@', '.']).next().unwrap_or_default().to_owned();
        (path.parent().map(Path::to_path_buf), stem, online, name)
    });
    Ok(out)
}
