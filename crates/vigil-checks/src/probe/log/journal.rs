//! `kind = "log"` with `journal_unit`: the unit's journal entries since the previous run,
//! read natively from journald's files by [`vigil_journal::Follower`] (no journalctl),
//! with `pattern` matched against each entry's `MESSAGE`.
//!
//! Owns: one follower per (journal source, pattern), kept for the process like the file
//! source's cursors, so positions survive config reloads. Same semantics as the file
//! source: the first run starts at the end of the journal (old errors do not alert after a
//! restart of Vigil), later runs read only the entries written since, and at most
//! [`MAX_ENTRIES`] entries per run (the rest is read by the next runs).
//!
//! A follower's position goes to another process as the text of
//! [`vigil_journal::Position`] inside the log check's token (see [`super::position`]).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use regex::bytes::Regex;
use vigil_journal::{Follower, Limits, Position, Roots};

use super::{compile, shorten, token};
use crate::model::{JournalSource, LogCheck};
use crate::probe::Verdict;

/// Entries of the unit read per run at most: well under a second at the measured
/// 0.7–1 M entries/s (docs/BENCHMARKS-checks.md), so a burst is worked through over
/// several runs, each inside a check's timeout.
pub const MAX_ENTRIES: u64 = 200_000;

struct State {
    follower: Follower,
    regex: Regex,
}

type Key = (JournalSource, String);

static FOLLOWERS: OnceLock<Mutex<HashMap<Key, State>>> = OnceLock::new();

fn followers() -> MutexGuard<'static, HashMap<Key, State>> {
    FOLLOWERS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One run, blocking.
pub(super) fn run(check: &LogCheck, source: &JournalSource) -> Verdict {
    let pattern = check.pattern.as_str();
    let unit = source.unit.as_str();
    let key = (source.clone(), pattern.to_owned());
    // Taken out of the map for the run: the lock is not held during I/O.
    let previous = followers().remove(&key);
    let mut state = match previous {
        Some(state) => state,
        None => new_state(check, source)?,
    };
    let mut matches = 0u64;
    let mut first: Option<(u64, String)> = None;
    let regex = &state.regex;
    let polled = state.follower.poll(
        Limits {
            entries: MAX_ENTRIES,
        },
        |entry| {
            if regex.is_match(entry.message) {
                matches += 1;
                let t = entry.cursor.realtime;
                if first.as_ref().is_none_or(|(at, _)| t < *at) {
                    first = Some((t, shorten(entry.message)));
                }
            }
        },
    );
    let where_ = state.follower.roots().to_string();
    followers().insert(key, state);
    let poll = polled.map_err(|e| format!("journal of {unit}: {e}"))?;
    let problems = match poll.problems.as_slice() {
        [] => String::new(),
        [one] => format!("; skipped: {one}"),
        [one, rest @ ..] => format!("; skipped: {one} (and {} more)", rest.len()),
    };
    if poll.first {
        return Ok(format!(
            "no new entry of {unit} matches /{pattern}/ (first run: following {} journal file{} in {where_} from their ends{problems})",
            poll.files,
            plural(poll.files as u64),
        ));
    }
    if poll.files == 0 {
        return Ok(format!(
            "no new entry of {unit} matches /{pattern}/: no journal files in {where_} (yet)"
        ));
    }
    let more = if poll.more_pending {
        "; more pending"
    } else {
        ""
    };
    let read = format!(
        "read {} new entr{} of {unit} in {} journal file{}",
        poll.entries,
        if poll.entries == 1 { "y" } else { "ies" },
        poll.files,
        plural(poll.files as u64),
    );
    let n = matches;
    let entries = |n: u64| {
        if n == 1 {
            "1 new entry".to_owned()
        } else {
            format!("{n} new entries")
        }
    };
    let verb = if n == 1 { "matches" } else { "match" };
    if n >= u64::from(check.min_matches) && n > 0 {
        let shown = first.map(|(_, text)| text).unwrap_or_default();
        Err(format!(
            "{} of {unit} {verb} /{pattern}/ (min {}): first: {shown}{more}{problems}",
            entries(n),
            check.min_matches
        ))
    } else if n == 0 {
        Ok(format!(
            "no new entry of {unit} matches /{pattern}/ ({read}{more}{problems})"
        ))
    } else {
        Ok(format!(
            "{} of {unit} {verb} /{pattern}/, fewer than min_matches {} ({read}{more}{problems})",
            entries(n),
            check.min_matches
        ))
    }
}

fn new_state(check: &LogCheck, source: &JournalSource) -> Result<State, String> {
    let roots = match &source.directory {
        Some(dir) => Roots::Directory(dir.clone()),
        None => Roots::Default,
    };
    Ok(State {
        follower: Follower::new(&source.unit, roots),
        regex: compile(check)?,
    })
}

/// The follower's position as the body of a token; `None` before its first run.
pub(super) fn position(check: &LogCheck, source: &JournalSource) -> Option<String> {
    let key = (source.clone(), check.pattern.as_str().to_owned());
    let map = followers();
    let position = map.get(&key)?.follower.position()?;
    if position.left_out() > 0 {
        tracing::debug!(
            unit = %source.unit,
            left_out = position.left_out(),
            "journal position: files left out to stay within its size bound"
        );
    }
    Some(position.to_string())
}

/// Installs a follower resumed from a token, unless the check has one already.
pub(super) fn resume(check: &LogCheck, source: &JournalSource, text: &str) -> Result<(), String> {
    let key = (source.clone(), check.pattern.as_str().to_owned());
    if followers().contains_key(&key) {
        return Ok(());
    }
    let body = token::open(check, text)?;
    let position: Position = body
        .parse()
        .map_err(|e| format!("corrupt journal position: {e}"))?;
    let mut state = new_state(check, source)?;
    state
        .follower
        .resume(position)
        .map_err(|e| format!("journal position: {e}"))?;
    // A run that finished meanwhile has the newer position.
    followers().entry(key).or_insert(state);
    Ok(())
}

pub(super) fn forget(check: &LogCheck, source: &JournalSource) {
    followers().remove(&(source.clone(), check.pattern.as_str().to_owned()));
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
