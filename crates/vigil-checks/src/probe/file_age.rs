//! `kind = "file_age"`: a file was modified less than `max_age` ago (seed 003's staleness
//! check on a file some job refreshes), and the adaptive interval ([`next_interval`]) the
//! daemon uses to look more often once the file is getting old.
//!
//! Owns: stat'ing the file and comparing its mtime with the wall clock. Must not: open or
//! read the file, or keep state between runs (the probe reports the age it saw, and the
//! daemon passes it to [`next_interval`]).
//!
//! The `stat` is answered inline when the kernel can answer from memory ([`cached_fs`]),
//! else on the blocking pool, so a hung filesystem never stops the runtime thread.
//!
//! This is the one probe that reads the wall clock (`SystemTime::now`, in [`wall_now`]):
//! a file's age is wall-clock time by nature.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use vigil_core::format_duration;

use super::{Verdict, cached_fs};
use crate::model::FileAgeCheck;

pub(super) fn label(check: &FileAgeCheck) -> String {
    format!("file_age {}", check.path.display())
}

/// Judges the file, and leaves the age it saw in `age` (see `ProbeOutcome::file_age`).
pub(super) async fn probe(check: &FileAgeCheck, age: &mut Option<Duration>) -> Verdict {
    let mtime = modified(&check.path).await;
    let now = wall_now();
    *age = mtime.as_ref().ok().map(|&t| age_at(t, now));
    judge(check, mtime, now)
}

/// How long before `now` a file modified at `mtime` was modified: zero for an mtime in
/// the future (clock stepped back, or set by hand), which counts as fresh.
fn age_at(mtime: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(mtime).unwrap_or(Duration::ZERO)
}

/// `path`'s mtime: inline when the kernel can answer from memory ([`cached_fs`]), else
/// on the blocking pool, so a hung filesystem never stops the runtime thread.
async fn modified(path: &Path) -> io::Result<SystemTime> {
    if let Some(mtime) = cached_fs::modified(path) {
        return Ok(mtime);
    }
    tokio::fs::metadata(path).await.and_then(|m| m.modified())
}

#[expect(
    clippy::disallowed_methods,
    reason = "a file's age is measured against the wall clock; mtimes are wall-clock times"
)]
fn wall_now() -> SystemTime {
    SystemTime::now()
}

fn judge(check: &FileAgeCheck, mtime: io::Result<SystemTime>, now: SystemTime) -> Verdict {
    let path = check.path.display();
    let max = format_duration(check.max_age);
    let mtime = match mtime {
        Ok(t) => t,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(format!("file {path} does not exist (max_age {max})"));
        }
        Err(err) => return Err(format!("cannot stat {path}: {err}")),
    };
    let age = age_at(mtime, now);
    let seen = format!("file {path} last modified {}s ago", age.as_secs());
    if age > check.max_age {
        Err(format!("{seen}, max_age {max}"))
    } else {
        Ok(format!("{seen} (max_age {max})"))
    }
}

/// The pause until the next run (seed 003's adaptive interval): `every` while the file is
/// young, but waking when it crosses half of `max_age`; from then on (and when its age is
/// unknown: missing, unreadable, or not known in time) `fast_every` (or `every` when that is
/// shorter), so a file going stale is noticed within `fast_every`.
pub fn next_interval(check: &FileAgeCheck, every: Duration, age: Option<Duration>) -> Duration {
    let half = check.max_age / 2;
    let fast = check.fast_every.min(every);
    match age {
        Some(age) if age < half => every.min((half - age).max(fast)),
        _ => fast,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn check() -> FileAgeCheck {
        FileAgeCheck {
            path: PathBuf::from("/var/lib/x/stamp"),
            max_age: Duration::from_secs(600),
            fast_every: Duration::from_secs(60),
        }
    }

    #[test]
    fn interval_speeds_up_past_half_of_max_age() {
        let c = check();
        let every = Duration::from_secs(300);
        // Unknown age: watched closely.
        assert_eq!(next_interval(&c, every, None), Duration::from_secs(60));
        // Young: `every`, but waking when the file crosses half of max_age.
        assert_eq!(
            next_interval(&c, every, Some(Duration::from_secs(10))),
            Duration::from_secs(290)
        );
        assert_eq!(
            next_interval(&c, Duration::from_secs(120), Some(Duration::from_secs(10))),
            Duration::from_secs(120)
        );
        assert_eq!(
            next_interval(&c, every, Some(Duration::from_secs(300))),
            Duration::from_secs(60)
        );
        assert_eq!(
            next_interval(&c, every, Some(Duration::from_secs(301))),
            Duration::from_secs(60)
        );
        assert_eq!(
            next_interval(&c, every, Some(Duration::from_secs(5000))),
            Duration::from_secs(60)
        );
        // fast_every never slows a check down.
        let slow = Duration::from_secs(30);
        assert_eq!(
            next_interval(&c, slow, Some(Duration::from_secs(400))),
            slow
        );
    }

    #[test]
    fn reasons() {
        let c = check();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            judge(&c, Ok(now - Duration::from_secs(912)), now),
            Err("file /var/lib/x/stamp last modified 912s ago, max_age 600s".to_owned())
        );
        assert_eq!(
            judge(&c, Ok(now - Duration::from_secs(12)), now),
            Ok("file /var/lib/x/stamp last modified 12s ago (max_age 600s)".to_owned())
        );
        assert_eq!(
            judge(&c, Ok(now + Duration::from_secs(12)), now),
            Ok("file /var/lib/x/stamp last modified 0s ago (max_age 600s)".to_owned())
        );
        assert_eq!(
            judge(&c, Err(io::ErrorKind::NotFound.into()), now),
            Err("file /var/lib/x/stamp does not exist (max_age 600s)".to_owned())
        );
    }
}
