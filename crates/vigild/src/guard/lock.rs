//! The per-service restart lock, held across processes while a restart is decided and
//! performed (SPEC §2 step 1; seed 000's `flock -w 10`).
//!
//! It is an advisory `flock(2)` on `state_dir/locks/NAME.lock`, taken through std's
//! `File::try_lock`. The kernel releases it when the holder dies, so a crashed Vigil never
//! leaves a service locked. Locking a sidecar file (not the SQLite database) keeps database
//! transactions short: no transaction stays open while a service restarts.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// A held restart lock. Dropping it releases the lock.
#[derive(Debug)]
pub struct RestartLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open lock file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The lock file of `service` under `state_dir`.
pub fn lock_path(state_dir: &Path, service: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{service}.lock"))
}

/// Takes the lock, waiting at most `timeout`. `Ok(None)` means someone else held it the
/// whole time.
pub async fn acquire(path: &Path, timeout: Duration) -> Result<Option<RestartLock>, LockError> {
    let open_err = |source| LockError::Open {
        path: path.to_owned(),
        source,
    };
    let open = || {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
    };
    // The directory exists after the first lock: try the open alone first.
    let file = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(open_err)?;
            }
            open()
        }
        other => other,
    }
    .map_err(open_err)?;
    let deadline = Instant::now() + timeout;
    // Poll with a short, growing pause: contention is rare and brief, and a poll keeps the
    // wait cancellable (a blocking flock in a thread could not be abandoned on shutdown).
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(RestartLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(open_err(e)),
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_times_out_then_gets_it_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "web");
        let held = acquire(&path, Duration::ZERO).await.unwrap().unwrap();
        let waited = acquire(&path, Duration::from_millis(30)).await.unwrap();
        assert!(waited.is_none());
        drop(held);
        assert!(acquire(&path, Duration::ZERO).await.unwrap().is_some());
    }
}
