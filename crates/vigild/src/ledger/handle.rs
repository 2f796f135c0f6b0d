//! The ledger thread: in the daemon one thread owns the SQLite connection, async tasks send
//! it closures, and check and exec states are queued and written in batches. A one-shot
//! command's handle has no thread: its jobs run where they are called.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::in_place::{CHECKPOINT_EVERY, sync_wal, wal_path};
use super::states::{CheckStateRow, ExecStateRow};
use super::{DeliveryRow, Ledger, LedgerError, Result};

/// A cloneable handle to a ledger owned by one dedicated thread.
///
/// SQLite calls block; the daemon's async tasks send closures to the ledger thread
/// instead of holding the connection. Check states are the exception: they are saved
/// after every check run, so they are queued and written in one transaction per
/// [`CHECK_STATE_FLUSH`] (one fsync instead of one per run), and before any other job runs
/// so that the process always reads its own writes. Other processes may see check states
/// up to that long after the run. The thread ends when the last handle is dropped, after
/// finishing every queued call and flushing, so a graceful shutdown never loses a write.
///
/// The connection sits behind a mutex the thread takes for each message, so that
/// [`LedgerHandle::call_now_or_queued`] can run a short, fsync-free job in place when the
/// thread is idle with nothing queued: two cross-CPU wake-ups fewer on an exec service's
/// crash-to-restart path.
///
/// A one-shot command's handle ([`LedgerHandle::spawn_one_shot`]) has no thread and no
/// queue: every job and save runs on the caller's thread, at once.
#[derive(Clone)]
pub struct LedgerHandle {
    /// The ledger thread's queue; `None` for a one-shot command's handle.
    pub(super) tx: Option<std::sync::mpsc::Sender<Msg>>,
    path: PathBuf,
    pub(super) cell: std::sync::Arc<LedgerCell>,
}

pub(super) struct LedgerCell {
    pub(super) ledger: std::sync::Mutex<Ledger>,
    /// Jobs sent and not finished yet: a job run in place must not overtake them.
    pub(super) queued: std::sync::atomic::AtomicUsize,
    /// Check states saved since the thread last gathered them. Only the first of a batch
    /// wakes the thread ([`Msg::CheckStates`]); the rest wait here for the flush. Measured
    /// with 1,000 checks at 1 s: a channel message per save woke the thread 200 times a
    /// second, and the futex wake-ups were about 4 % of the daemon's CPU.
    pub(super) states: std::sync::Mutex<Vec<CheckStateRow>>,
}

impl LedgerCell {
    fn new(ledger: Ledger) -> LedgerCell {
        LedgerCell {
            ledger: std::sync::Mutex::new(ledger),
            queued: std::sync::atomic::AtomicUsize::new(0),
            states: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A job that panicked left no transaction open (rusqlite rolls back on drop);
        // the connection stays usable.
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long check-state writes may wait to be batched.
pub const CHECK_STATE_FLUSH: Duration = Duration::from_secs(1);

type Job = Box<dyn FnOnce(&mut Ledger) + Send>;

pub(super) enum Msg {
    Job(Job),
    /// The first check state of a batch is waiting in [`LedgerCell::states`].
    CheckStates,
    /// Batched like check states, but not flushed before every job: nothing in the
    /// daemon reads them back, and an exec service's crash-to-restart path must not wait
    /// for their fsync.
    ExecState(ExecStateRow),
    /// Write the pending exec states now, then answer.
    FlushExec(tokio::sync::oneshot::Sender<()>),
    /// fdatasync the WAL: outside the connection's lock and not counted as a queued
    /// job, so a decision in place never waits for it.
    SyncWal,
}

/// Check states waiting for the next batched write, newest per check.
#[derive(Default)]
struct PendingStates {
    rows: std::collections::BTreeMap<(String, String), CheckStateRow>,
    exec: std::collections::BTreeMap<String, ExecStateRow>,
    since: Option<std::time::Instant>,
}

impl PendingStates {
    /// Takes the check states saved since the last call, newest per check.
    fn gather(&mut self, cell: &LedgerCell) {
        let saved = std::mem::take(
            &mut *cell
                .states
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for row in saved {
            self.rows
                .insert((row.service.clone(), row.check.clone()), row);
        }
    }

    fn flush_exec(&mut self, ledger: &mut Ledger) {
        if self.exec.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.exec);
        if self.rows.is_empty() {
            self.since = None;
        }
        if let Err(error) = ledger.save_exec_states(rows.values()) {
            tracing::warn!(%error, rows = rows.len(), "cannot save exec states");
        }
    }

    fn flush(&mut self, ledger: &mut Ledger) {
        if !self.rows.is_empty() && !self.exec.is_empty() {
            // Both at once (the timer or shutdown): exec states first, then checks.
            self.flush_exec(ledger);
        }
        if self.rows.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.rows);
        self.since = (!self.exec.is_empty()).then_some(self.since).flatten();
        if let Err(error) = ledger.save_check_states(rows.values()) {
            tracing::warn!(%error, rows = rows.len(), "cannot save check states");
        }
    }

    fn wait(&self) -> Option<Duration> {
        let since = self.since?;
        Some(
            CHECK_STATE_FLUSH.saturating_sub(
                crate::platform::clock::monotonic().saturating_duration_since(since),
            ),
        )
    }
}

impl LedgerHandle {
    /// Opens the ledger and starts its thread.
    pub fn spawn(state_dir: &Path) -> Result<LedgerHandle> {
        Self::start(Ledger::open(state_dir)?)
    }

    /// Opens the ledger for a one-shot command (`Ledger::open_one_shot`), without a thread:
    /// jobs block the caller's thread, the command's runtime, for as long as they run
    /// (fsyncs and busy waits included). A one-shot command waits for each of its ledger
    /// calls and has next to nothing else running meanwhile; the daemon, which has, keeps
    /// its thread. Measured on a cron `vigil check` (issue 17, perf stat at a load of 2),
    /// the thread's start (its stacks, 65 page faults) and the wake-ups of each call to it
    /// were 0.4 to 1.9 ms of the command's 3.4 to 5.5 ms of CPU.
    pub fn spawn_one_shot(state_dir: &Path) -> Result<LedgerHandle> {
        let ledger = Ledger::open_one_shot(state_dir)?;
        Ok(LedgerHandle {
            tx: None,
            path: ledger.path().to_owned(),
            cell: std::sync::Arc::new(LedgerCell::new(ledger)),
        })
    }

    fn start(ledger: Ledger) -> Result<LedgerHandle> {
        let path = ledger.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let cell = std::sync::Arc::new(LedgerCell::new(ledger));
        let shared = cell.clone();
        let wal_of = path.clone();
        std::thread::Builder::new()
            .name("vigil-ledger".to_owned())
            .spawn(move || {
                let cell = shared;
                let mut syncs: u64 = 0;
                use std::sync::mpsc::RecvTimeoutError;
                let mut pending = PendingStates::default();
                loop {
                    let msg = match pending.wait() {
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some(wait) => rx.recv_timeout(wait),
                    };
                    match msg {
                        Ok(Msg::Job(job)) => {
                            pending.gather(&cell);
                            let mut ledger = cell.lock();
                            pending.flush(&mut ledger);
                            job(&mut ledger);
                            drop(ledger);
                            cell.queued
                                .fetch_sub(1, std::sync::atomic::Ordering::Release);
                        }
                        Ok(Msg::CheckStates) => {
                            // Gathered at the flush: until then, saves do not wake us.
                            if pending.since.is_none() {
                                pending.since = Some(crate::platform::clock::monotonic());
                            }
                        }
                        Ok(Msg::ExecState(row)) => {
                            if pending.since.is_none() {
                                pending.since = Some(crate::platform::clock::monotonic());
                            }
                            pending.exec.insert(row.service.clone(), row);
                        }
                        Ok(Msg::SyncWal) => {
                            // Relaxed commits skip SQLite's automatic checkpoint; without
                            // one now and then a long crash loop would grow the WAL forever.
                            syncs += 1;
                            let result = if syncs.is_multiple_of(CHECKPOINT_EVERY) {
                                cell.lock().checkpoint()
                            } else {
                                sync_wal(&wal_of).map_err(|source| LedgerError::StateDir {
                                    path: wal_path(&wal_of),
                                    source,
                                })
                            };
                            if let Err(error) = result {
                                tracing::warn!(%error, "cannot flush the ledger's write-ahead log");
                            }
                        }
                        Ok(Msg::FlushExec(reply)) => {
                            pending.flush_exec(&mut cell.lock());
                            let _ = reply.send(());
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            pending.gather(&cell);
                            let mut ledger = cell.lock();
                            pending.flush_exec(&mut ledger);
                            pending.flush(&mut ledger);
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            pending.gather(&cell);
                            let mut ledger = cell.lock();
                            pending.flush_exec(&mut ledger);
                            pending.flush(&mut ledger);
                            return;
                        }
                    }
                }
            })
            .map_err(|source| LedgerError::StateDir {
                path: path.clone(),
                source,
            })?;
        Ok(LedgerHandle {
            tx: Some(tx),
            path,
            cell,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a check state for the next batched write. Never blocks, except on a one-shot
    /// command's handle, which writes it now.
    pub fn save_check_state(&self, row: CheckStateRow) {
        let Some(tx) = &self.tx else {
            if let Err(error) = self.cell.lock().save_check_states([&row]) {
                tracing::warn!(%error, "cannot save a check state");
            }
            return;
        };
        let first = {
            let mut states = self
                .cell
                .states
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            states.push(row);
            states.len() == 1
        };
        if first {
            // The thread outlives every handle; a send can only fail after a job panicked.
            let _ = tx.send(Msg::CheckStates);
        }
    }

    /// Queues an exec service's runtime state for the next batched write (within
    /// [`CHECK_STATE_FLUSH`]). Never blocks, except on a one-shot command's handle, which
    /// writes it now.
    pub fn save_exec_state(&self, row: ExecStateRow) {
        match &self.tx {
            Some(tx) => {
                let _ = tx.send(Msg::ExecState(row));
            }
            None => {
                if let Err(error) = self.cell.lock().save_exec_states([&row]) {
                    tracing::warn!(%error, "cannot save an exec state");
                }
            }
        }
    }

    /// Writes the queued exec states now (e.g. the final ones before vigil exits).
    pub async fn flush_exec_states(&self) {
        let Some(tx) = &self.tx else {
            return; // Written when saved.
        };
        let (reply, rx) = tokio::sync::oneshot::channel();
        if tx.send(Msg::FlushExec(reply)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Queues an alert delivery record. Never blocks: alert delivery must not wait on the
    /// ledger either.
    pub fn record_delivery(&self, row: DeliveryRow) {
        let job: Job = Box::new(move |ledger| {
            if let Err(error) = ledger.record_delivery(&row) {
                tracing::warn!(%error, channel = %row.channel, "cannot record an alert delivery");
            }
        });
        self.send_job(job);
    }

    /// Queues a job, counted until the thread has run it (a one-shot command's handle runs
    /// it now).
    fn send_job(&self, job: Job) -> bool {
        let Some(tx) = &self.tx else {
            job(&mut self.cell.lock());
            return true;
        };
        self.cell
            .queued
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if tx.send(Msg::Job(job)).is_ok() {
            true
        } else {
            self.cell
                .queued
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            false
        }
    }

    /// Makes every commit so far durable soon: the ledger thread fsyncs the WAL next,
    /// while this caller goes on (see [`sync_wal`]). A one-shot command's handle does it
    /// now.
    pub fn sync_soon(&self) {
        match &self.tx {
            Some(tx) => {
                let _ = tx.send(Msg::SyncWal);
            }
            None => {
                if let Err(error) = sync_wal(&self.path) {
                    tracing::warn!(%error, "cannot flush the ledger's write-ahead log");
                }
            }
        }
    }

    /// Runs `f` on the ledger thread (a one-shot command's handle: here) and returns its
    /// result.
    pub async fn call<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Ledger) -> R + Send + 'static,
    {
        if self.tx.is_none() {
            return f(&mut self.cell.lock());
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |ledger| {
            let _ = reply.send(f(ledger));
        });
        // The ledger thread only stops when every handle is gone, and we hold one.
        if !self.send_job(job) {
            unreachable_ledger();
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => unreachable_ledger(),
        }
    }
}

#[cold]
fn unreachable_ledger() -> ! {
    // Only reachable if a ledger job panicked, which is a bug; fail loudly.
    panic!("the ledger thread stopped unexpectedly")
}
