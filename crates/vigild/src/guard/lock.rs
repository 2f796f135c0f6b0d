//! The per-service restart lock, held across processes while a restart is decided and
//! performed (SPEC §2 step 1; seed 000's `flock -w 10`), and the lock of one restart in
//! progress ([`RunningLock`]), which outlives a crashed Vigil.
//!
//! The restart lock is an advisory `flock(2)` on `state_dir/locks/NAME.lock`, taken
//! through std's `File::try_lock`. The kernel releases it when the holder dies, so a
//! crashed Vigil never leaves a service locked. Locking a sidecar file (not the SQLite
//! database) keeps database transactions short: no transaction stays open while a
//! service restarts.
//!
//! That alone let two restarts overlap after a crash: a restart command keeps running in
//! its own process group when the Vigil that started it is killed, while the restart lock
//! died with Vigil. So each allowed restart also locks `locks/NAME.running.ID` (ID: its
//! intent's row) and hands that descriptor to what it spawns, as seed 000's `flock` on fd
//! 200 does: the lock is held for as long as anything the restart started runs. It is
//! only consulted for an intent whose Vigil died (`guard::begin`), so processes a
//! *finished* restart left behind in the background never block a later one.

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

/// The lock of one allowed restart in progress (see the module docs). Dropping it closes
/// Vigil's descriptor and removes the file: the outcome is recorded, nothing will ask.
#[derive(Debug)]
pub struct RunningLock {
    file: File,
    path: PathBuf,
}

impl RunningLock {
    /// Creates and locks `locks/NAME.running.ID`.
    pub fn take(state_dir: &Path, service: &str, intent: i64) -> Result<RunningLock, LockError> {
        let path = running_path(state_dir, service, intent);
        let open_err = |source| LockError::Open {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(open_err)?;
        match file.try_lock() {
            Ok(()) => Ok(RunningLock { file, path }),
            Err(std::fs::TryLockError::WouldBlock) => Err(open_err(std::io::Error::other(
                "already locked (a restart with this intent runs)",
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(open_err(e)),
        }
    }

    /// The descriptor a restart's child inherits.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.file.as_fd()
    }
}

impl Drop for RunningLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `locks/NAME.running.ID`.
pub fn running_path(state_dir: &Path, service: &str, intent: i64) -> PathBuf {
    state_dir
        .join("locks")
        .join(format!("{service}.running.{intent}"))
}

/// Whether anything the restart with intent `intent` started still holds its lock.
pub fn still_running(state_dir: &Path, service: &str, intent: i64) -> bool {
    let Ok(file) = OpenOptions::new()
        .write(true)
        .open(running_path(state_dir, service, intent))
    else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

/// Forgets the lock file of a resolved intent.
pub fn forget_running(state_dir: &Path, service: &str, intent: i64) {
    let _ = std::fs::remove_file(running_path(state_dir, service, intent));
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
