//! The guard at the edge: the one gate every restart passes, from every source and every
//! process (SPEC §2).
//!
//! A request is two steps, so the lifecycle machine can drive what happens in between:
//! 1. [`begin`]: take the service's cross-process restart lock (`lock.rs`), at most
//!    `lock_timeout` (not acquired → `skipped(lock)`, recorded); resolve intents left by a
//!    Vigil that died mid-restart (safe: we hold the lock); read the counted restarts in
//!    the window and call the pure `vigil_core::decide`; record the verdict (an allowed
//!    one is the restart's *intent*, committed before anything acts). A refusal releases
//!    the lock; an allowed request returns a [`Permit`] that keeps it.
//! 2. [`finish`]: record the outcome and release the lock.
//!
//! [`request`] does both around one action, for callers that act in one step (a group's
//! stop/start sequence).
//!
//! Architecture Invariant: nothing restarts a service except through a [`Permit`]. The
//! decision itself stays in `vigil_core`; this module only sequences I/O around it.

pub mod lock;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use vigil_core::event::Event;
use vigil_core::guard::Denial;
use vigil_core::{
    GuardPolicy, RestartReport, RestartRequest, ServiceName, Skip, Timestamp, Verdict, decide,
};

use std::sync::Arc;

use self::lock::{LockError, RestartLock, RunningLock};
use crate::fleet::{Asked, FleetHandle, Lease};
use crate::ledger::{
    DanglingOutcome, HoldRow, Intent, LedgerError, LedgerHandle, NewVerdict, OperatorRow,
};
use crate::observe::bus::Events;
use crate::platform::clock;
use vigil_config::model::OnUnreachable;
use vigil_core::Source;
use vigil_core::fleet::{FleetNote, FleetRefusal};

/// What the guard needs: the ledger, where the lock files live, and where events go.
#[derive(Clone)]
pub struct GuardContext {
    pub ledger: LedgerHandle,
    pub state_dir: PathBuf,
    pub events: Events,
    /// `[fleet]`: fleet-keyed services' allowed restarts also take a fleet lease.
    pub fleet: Option<FleetHandle>,
}

/// The guard's verdict and, when allowed, how the action went.
#[derive(Clone, Debug)]
pub struct Decision {
    pub verdict: Verdict,
    pub report: Option<RestartReport>,
    pub decided_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

impl Decision {
    /// When a `denied(limit)` verdict re-arms.
    pub fn given_up_until(&self) -> Option<Timestamp> {
        match &self.verdict {
            Verdict::Denied(Denial::Limit { rearm_at, .. }) => Some(*rearm_at),
            _ => None,
        }
    }

    /// Allowed and the action succeeded.
    pub fn restarted(&self) -> bool {
        self.report.as_ref().is_some_and(|r| r.ok)
    }

    /// How long until asking again could be allowed, for a refusal (`None`: allowed, or
    /// the guard cannot tell).
    pub fn retry_after(&self) -> Option<Duration> {
        self.verdict
            .retry_at(self.decided_at)
            .map(|t| t.saturating_since(self.decided_at))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// An allowed restart in progress: the service's lock is held and its intent recorded
/// until [`finish`]. Dropped unfinished (Vigil stopping mid-restart), the lock is released
/// and the intent stays without outcome, to be reported as interrupted.
#[derive(Debug)]
pub struct Permit {
    /// `None` for a permit of the simulated gate (tests).
    lock: Option<RestartLock>,
    /// For a tracked action: the restart's own lock and where to report its progress.
    tracker: Option<Tracker>,
    intent: i64,
    service: ServiceName,
    request: RestartRequest,
    verdict: Verdict,
    decided_at: Timestamp,
    relaxed: bool,
    /// The fleet lease taken for this restart, released by [`finish`].
    lease: Option<Lease>,
}

impl Permit {
    /// A permit that holds no lock and no ledger row, for a simulated gate.
    pub fn simulated(
        service: ServiceName,
        request: RestartRequest,
        verdict: Verdict,
        decided_at: Timestamp,
    ) -> Permit {
        Permit {
            lock: None,
            tracker: None,
            intent: 0,
            service,
            request,
            verdict,
            decided_at,
            relaxed: false,
            lease: None,
        }
    }

    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    pub fn request(&self) -> RestartRequest {
        self.request
    }

    pub fn decided_at(&self) -> Timestamp {
        self.decided_at
    }

    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// Where a tracked action reports its progress.
    pub fn tracker(&self) -> Option<Tracker> {
        self.tracker.clone()
    }
}

/// How a tracked restart's action reports what it starts: recorded on the intent, so
/// that after a crash the next Vigil knows what ran (see `lock::RunningLock`).
#[derive(Clone)]
pub struct Tracker {
    ledger: LedgerHandle,
    intent: i64,
    running: Arc<RunningLock>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("intent", &self.intent)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// The restart's ledger row.
    pub fn intent(&self) -> i64 {
        self.intent
    }

    /// The restart's lock, for the spawned child to inherit.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.running.fd()
    }

    /// Records what the action is about to start, committed before it starts: an intent
    /// without it provably started nothing.
    pub async fn starting(&self, what: &str) {
        let (intent, what) = (self.intent, what.to_owned());
        if let Err(error) = self
            .ledger
            .call(move |l| l.record_action(intent, &what))
            .await
        {
            tracing::warn!(%error, "cannot record what a restart starts");
        }
    }

    /// Records the child the action spawned, while it runs (not awaited).
    pub fn spawned(&self, pid: u32) {
        let Some(start) = crate::platform::process::start_time(pid) else {
            return;
        };
        let (ledger, intent) = (self.ledger.clone(), self.intent);
        tokio::spawn(async move {
            if let Err(error) = ledger
                .call(move |l| l.record_child(intent, pid, start))
                .await
            {
                tracing::warn!(%error, "cannot record the process a restart spawned");
            }
        });
    }
}

/// The first step's result.
#[derive(Debug)]
pub enum Begun {
    Refused(Decision),
    Allowed(Permit),
}

/// One request to the guard.
#[derive(Clone, Debug)]
pub struct Ask {
    pub request: RestartRequest,
    /// What a hung process was doing (watchdog restarts), stored with the verdict.
    pub evidence: Option<String>,
    /// Commit the verdict without an fsync of its own (see [`begin`]).
    pub relaxed: bool,
    /// The action reports its progress through the permit's [`Tracker`] (what it starts,
    /// the process it spawns), and hands the restart's lock to what it spawns.
    pub tracked: bool,
    /// The longest the action may run (`command_timeout`, `job_timeout`): after a crash,
    /// the guard waits at most this long for what a dead Vigil's restart left running.
    pub action_timeout: Duration,
}

impl Ask {
    pub fn new(request: RestartRequest) -> Ask {
        Ask {
            request,
            evidence: None,
            relaxed: false,
            tracked: false,
            action_timeout: Duration::from_secs(60),
        }
    }
}

/// What a service actor asks the guard through: the ledger in the daemon and the CLI, an
/// in-memory guard in simulated-time tests.
pub trait Gate: Send + Sync {
    fn begin<'a>(
        &'a self,
        service: &'a ServiceName,
        policy: &'a GuardPolicy,
        ask: Ask,
    ) -> Pin<Box<dyn Future<Output = Result<Begun, GuardError>> + Send + 'a>>;

    fn finish<'a>(
        &'a self,
        permit: Permit,
        report: RestartReport,
    ) -> Pin<Box<dyn Future<Output = Result<Decision, GuardError>> + Send + 'a>>;

    /// A given-up episode re-armed by itself: record it (idempotent).
    fn rearmed<'a>(
        &'a self,
        _service: &'a ServiceName,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }

    /// Records an operator's action on the service (a ledger row).
    fn record_operator<'a>(
        &'a self,
        _service: &'a ServiceName,
        _row: OperatorRow,
    ) -> Pin<Box<dyn Future<Output = Result<(), GuardError>> + Send + 'a>> {
        Box::pin(async { Ok(()) })
    }

    /// The operator's hold recorded for the service at `now` (one whose time is up is
    /// recorded as ended, and is none).
    fn recorded_hold<'a>(
        &'a self,
        _service: &'a ServiceName,
        _now: Timestamp,
    ) -> Pin<Box<dyn Future<Output = Result<Option<HoldRow>, GuardError>> + Send + 'a>> {
        Box::pin(async { Ok(None) })
    }
}

impl Gate for GuardContext {
    fn begin<'a>(
        &'a self,
        service: &'a ServiceName,
        policy: &'a GuardPolicy,
        ask: Ask,
    ) -> Pin<Box<dyn Future<Output = Result<Begun, GuardError>> + Send + 'a>> {
        Box::pin(begin(self, service, policy, ask))
    }

    fn finish<'a>(
        &'a self,
        permit: Permit,
        report: RestartReport,
    ) -> Pin<Box<dyn Future<Output = Result<Decision, GuardError>> + Send + 'a>> {
        Box::pin(finish(self, permit, report))
    }

    fn rearmed<'a>(
        &'a self,
        service: &'a ServiceName,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let name = service.to_string();
            let now = clock::now();
            if let Err(error) = self
                .ledger
                .call(move |l| l.close_expired_episode(&name, now))
                .await
            {
                tracing::warn!(service = %service, %error, "cannot record the re-arm");
            }
        })
    }

    fn record_operator<'a>(
        &'a self,
        service: &'a ServiceName,
        row: OperatorRow,
    ) -> Pin<Box<dyn Future<Output = Result<(), GuardError>> + Send + 'a>> {
        Box::pin(async move {
            let name = service.to_string();
            self.ledger
                .call(move |l| l.record_operator(&name, &row))
                .await?;
            Ok(())
        })
    }

    fn recorded_hold<'a>(
        &'a self,
        service: &'a ServiceName,
        now: Timestamp,
    ) -> Pin<Box<dyn Future<Output = Result<Option<HoldRow>, GuardError>> + Send + 'a>> {
        Box::pin(async move {
            let name = service.to_string();
            Ok(self
                .ledger
                .call(move |l| l.current_hold(&name, now))
                .await?)
        })
    }
}

/// Step 1: lock, decide, record. See the module docs.
///
/// `ask.relaxed`: commit the verdict to the WAL without an fsync of its own; the ledger
/// thread fsyncs it right after (see `ledger/in_place.rs`). Only for restarting a process
/// Vigil itself runs: a power loss that loses the intent also ended the process the
/// restart started, so the ledger never under-counts a restart whose effect survived.
///
/// Intents left by a Vigil that died mid-restart are resolved first, under the lock. One
/// whose action still runs (its child, or anything that inherited the restart's lock) is
/// waited for, at most `lock_timeout`, before deciding: two restarts of a service never
/// overlap, even across a crash. Resolution says what is known: `interrupted` only when
/// the restart provably started nothing; otherwise `unknown`, with what was running.
pub async fn begin(
    cx: &GuardContext,
    service: &ServiceName,
    policy: &GuardPolicy,
    ask: Ask,
) -> Result<Begun, GuardError> {
    let Ask {
        request,
        evidence,
        relaxed,
        tracked,
        action_timeout,
    } = ask;
    let lock_path = lock::lock_path(&cx.state_dir, service.as_str());
    let waited_from = tokio::time::Instant::now();
    let deadline = waited_from + policy.lock_timeout;
    let mut held = lock::acquire(&lock_path, policy.lock_timeout).await?;
    if held.is_some() && !wait_for_orphans(cx, service, deadline, action_timeout, relaxed).await? {
        held = None;
    }
    let Some(held) = held else {
        let verdict = Verdict::Skipped(Skip::Lock {
            waited: waited_from.elapsed(),
        });
        let now = clock::now();
        let (name, v) = (service.to_string(), verdict.clone());
        cx.ledger
            .call(move |l| {
                l.record_verdict(&NewVerdict {
                    service: &name,
                    request,
                    verdict: &v,
                    at: now,
                    evidence: evidence.as_deref(),
                    tracked: false,
                })
                .map(drop)
            })
            .await?;
        cx.events.publish(
            service,
            Event::Verdict {
                request,
                verdict: verdict.clone(),
                repeat: None,
            },
        );
        return Ok(Begun::Refused(Decision {
            verdict,
            report: None,
            decided_at: now,
            finished_at: None,
        }));
    };

    let (fleet, mut lease) = ask_fleet(cx, service, policy, request).await?;
    let on_unreachable = cx
        .fleet
        .as_ref()
        .map_or(OnUnreachable::Local, FleetHandle::on_unreachable);
    let name = service.to_string();
    let state_dir = cx.state_dir.clone();
    let decision = {
        let policy = policy.clone();
        let decide = move |ledger: &mut crate::ledger::Ledger| -> Result<_, LedgerError> {
            let now = clock::now();
            ledger.transaction(relaxed, |ledger| {
                let mut resolved = Vec::new();
                for dangling in ledger.dangling_intents(Some(&name))? {
                    let (outcome, detail) = resolution(&dangling);
                    ledger.resolve_dangling(dangling.id, outcome, &detail, now)?;
                    resolved.push((dangling, outcome, detail));
                }
                ledger.close_expired_episode(&name, now)?;
                let history = ledger.counted_restarts(&name, policy.window_start(now))?;
                let verdict = with_fleet(
                    decide(&policy, &history, request, now),
                    fleet.clone(),
                    on_unreachable,
                    request,
                );
                let recorded = ledger.record_verdict(&NewVerdict {
                    service: &name,
                    request,
                    verdict: &verdict,
                    at: now,
                    evidence: evidence.as_deref(),
                    tracked,
                })?;
                Ok((verdict, now, recorded, resolved))
            })
        };
        ledger_job(cx, relaxed, decide).await?
    };
    let (verdict, now, recorded, resolved) = decision;
    for (dangling, outcome, detail) in resolved {
        lock::forget_running(&state_dir, service.as_str(), dangling.id);
        cx.events.publish(
            service,
            Event::RestartResolved {
                by_pid: dangling.pid,
                outcome: outcome.as_str(),
                detail,
            },
        );
    }
    if relaxed && !verdict.is_allowed() {
        // No outcome commit follows a refusal: the ledger thread makes it durable.
        cx.ledger.sync_soon();
    }
    cx.events.publish(
        service,
        Event::Verdict {
            request,
            verdict: verdict.clone(),
            repeat: recorded.repeat,
        },
    );
    if !verdict.is_allowed() {
        drop(held);
        if let (Some(fleet), Some(lease)) = (&cx.fleet, lease.take()) {
            fleet.release(lease, "not-started").await;
        }
        return Ok(Begun::Refused(Decision {
            verdict,
            report: None,
            decided_at: now,
            finished_at: None,
        }));
    }
    let tracker = if tracked {
        let running = RunningLock::take(&cx.state_dir, service.as_str(), recorded.id)?;
        Some(Tracker {
            ledger: cx.ledger.clone(),
            intent: recorded.id,
            running: Arc::new(running),
        })
    } else {
        None
    };
    Ok(Begun::Allowed(Permit {
        lock: Some(held),
        tracker,
        intent: recorded.id,
        service: service.clone(),
        request,
        verdict,
        decided_at: now,
        relaxed,
        lease,
    }))
}

/// What the fleet said to one request, before the verdict is recorded.
#[derive(Clone, Debug)]
enum FleetAnswer {
    /// Not a fleet-keyed service.
    NotAsked,
    /// A fleet-keyed service the local guard refused a moment ago (so the fleet was not
    /// asked): that refusal stands, even if the local guard would allow it now (a
    /// cooldown ending in between), since no lease was taken.
    LocalRefused(Verdict),
    Granted(FleetNote),
    Refused(FleetRefusal),
    Unreachable {
        key: String,
        error: String,
    },
}

/// For a fleet-keyed service whose local guard would allow the restart now (read under
/// the service's lock, so it cannot change before the verdict is recorded): asks the
/// fleet for a lease, bounded by `[fleet] timeout`.
async fn ask_fleet(
    cx: &GuardContext,
    service: &ServiceName,
    policy: &GuardPolicy,
    request: RestartRequest,
) -> Result<(FleetAnswer, Option<Lease>), GuardError> {
    let Some(fleet) = &cx.fleet else {
        return Ok((FleetAnswer::NotAsked, None));
    };
    if fleet.key_of(service.as_str()).is_none() {
        return Ok((FleetAnswer::NotAsked, None));
    }
    let local = preview(cx, service, policy, request).await?;
    if !local.is_allowed() {
        return Ok((FleetAnswer::LocalRefused(local), None));
    }
    Ok(
        match fleet.acquire(service.as_str(), request.forced).await {
            None => (FleetAnswer::NotAsked, None),
            Some(Asked::Granted { lease, note }) => (FleetAnswer::Granted(note), Some(lease)),
            Some(Asked::Refused(refusal)) => (FleetAnswer::Refused(refusal), None),
            Some(Asked::Unreachable { key, error }) => {
                (FleetAnswer::Unreachable { key, error }, None)
            }
        },
    )
}

/// The local verdict with the fleet's answer folded in: an allowed restart the fleet
/// refuses is `skipped(fleet: ...)`; one it could not be asked about is allowed with a
/// note (`on_unreachable = "local"`, or a manual request) or skipped (`"deny"`).
fn with_fleet(
    verdict: Verdict,
    answer: FleetAnswer,
    on_unreachable: OnUnreachable,
    request: RestartRequest,
) -> Verdict {
    let Verdict::Allowed {
        count,
        max,
        window,
        forced,
        ..
    } = verdict
    else {
        return verdict;
    };
    let allowed = |fleet| Verdict::Allowed {
        count,
        max,
        window,
        forced,
        fleet,
    };
    match answer {
        FleetAnswer::NotAsked => allowed(None),
        FleetAnswer::LocalRefused(refusal) => refusal,
        FleetAnswer::Granted(note) => allowed(Some(note)),
        FleetAnswer::Refused(refusal) => Verdict::Skipped(Skip::Fleet(refusal)),
        FleetAnswer::Unreachable { key, error } => {
            let manual = request.forced || request.source == Source::Manual;
            if on_unreachable == OnUnreachable::Deny && !manual {
                Verdict::Skipped(Skip::Fleet(FleetRefusal::Unreachable { key, error }))
            } else {
                allowed(Some(FleetNote::Unreachable { key, error }))
            }
        }
    }
}

/// What is known about a dangling intent (called under the service's lock, with nothing
/// it started still running).
fn resolution(intent: &Intent) -> (DanglingOutcome, String) {
    let who = if intent.pid == std::process::id() {
        // Our own: the outcome's write failed (a full disk), the process did not die.
        return (
            DanglingOutcome::Unknown,
            "outcome unknown: this vigil could not record it (the ledger write failed)".to_owned(),
        );
    } else if crate::platform::process::is_vigil(intent.pid) {
        format!("vigil pid {} did not record it", intent.pid)
    } else {
        format!("vigil pid {} died", intent.pid)
    };
    match (&intent.action, intent.child, intent.tracked) {
        (None, _, true) => (
            DanglingOutcome::Interrupted,
            format!("{who} before the restart started anything"),
        ),
        (Some(what), Some((pid, _)), _) => (
            DanglingOutcome::Unknown,
            format!(
                "outcome unknown: {who} while {what} (pid {pid}) was running; it has ended since"
            ),
        ),
        (Some(what), None, _) => (
            DanglingOutcome::Unknown,
            format!("outcome unknown: {who} while starting {what}"),
        ),
        (None, _, false) => (
            DanglingOutcome::Unknown,
            format!("outcome unknown: {who} during the restart"),
        ),
    }
}

/// Waits, until `deadline`, for what the service's dangling restarts left running (their
/// child, or anything holding their restart lock). `false`: still running at the
/// deadline. Leftovers of a restart whose command itself has ended, or that ran longer
/// than `action_timeout`, are not waited for: they are the service, started in the
/// background, not a restart in progress.
///
/// `relaxed` (an exec crash loop's restart): the dangling intents are read in place when
/// the ledger is idle, like the decision itself. Queued behind the ledger thread's
/// fdatasync of the previous restart, this read made every crash-to-restart wait for the
/// disk (0.41 -> 0.70 ms median, docs/BENCHMARKS.md "After issues 11 and 12").
async fn wait_for_orphans(
    cx: &GuardContext,
    service: &ServiceName,
    deadline: tokio::time::Instant,
    action_timeout: Duration,
    relaxed: bool,
) -> Result<bool, GuardError> {
    let name = service.to_string();
    let dangling = ledger_job(cx, relaxed, move |l| l.dangling_intents(Some(&name))).await?;
    let mut announced = false;
    for intent in dangling {
        let mut pause = Duration::from_millis(5);
        loop {
            let running = lock::still_running(&cx.state_dir, service.as_str(), intent.id);
            let leader_done = intent
                .child
                .is_some_and(|(pid, start)| !crate::platform::process::is_alive(pid, start));
            let too_old = clock::now().saturating_since(intent.at) > action_timeout;
            if !running || leader_done || too_old {
                break;
            }
            if !announced {
                announced = true;
                cx.events.publish(
                    service,
                    Event::RestartStillRunning {
                        by_pid: intent.pid,
                        what: intent
                            .action
                            .clone()
                            .unwrap_or_else(|| "its action".to_owned()),
                        child: intent.child.map(|(pid, _)| pid),
                    },
                );
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
    Ok(true)
}

/// Step 2: records how the permitted action went and releases the lock.
pub async fn finish(
    cx: &GuardContext,
    permit: Permit,
    report: RestartReport,
) -> Result<Decision, GuardError> {
    let finished_at = clock::now();
    let relaxed = permit.relaxed;
    {
        let detail = report.detail.clone();
        let (ok, intent) = (report.ok, permit.intent);
        let record = move |ledger: &mut crate::ledger::Ledger| {
            ledger.transaction(relaxed, |l| {
                l.record_outcome(intent, ok, &detail, finished_at)
            })
        };
        ledger_job(cx, relaxed, record).await?;
        if relaxed {
            // Intent and outcome are in the WAL; the ledger thread fsyncs them next, while
            // the caller goes on (a crash loop's next exit is not held up).
            cx.ledger.sync_soon();
        }
    }
    let action_required = report.action_required.clone();
    cx.events.publish(
        &permit.service,
        Event::RestartFinished {
            request: permit.request,
            verdict: permit.verdict.clone(),
            report: report.clone(),
        },
    );
    if let Some(why) = action_required {
        cx.events
            .publish(&permit.service, Event::ActionRequired { why });
    }
    let Permit {
        lock,
        tracker,
        verdict,
        decided_at,
        lease,
        ..
    } = permit;
    // The outcome is recorded: nothing will ask whether the restart still runs.
    drop(tracker);
    if let (Some(fleet), Some(lease)) = (&cx.fleet, lease) {
        fleet
            .release(lease, if report.ok { "ok" } else { "failed" })
            .await;
    }
    drop(lock);
    Ok(Decision {
        verdict,
        report: Some(report),
        decided_at,
        finished_at: Some(finished_at),
    })
}

/// Passes one request through the guard and, if allowed, performs `action` under the
/// permit (a group's whole stop/start sequence).
pub async fn request<F>(
    cx: &GuardContext,
    service: &ServiceName,
    policy: &GuardPolicy,
    request: RestartRequest,
    action: F,
) -> Result<Decision, GuardError>
where
    F: Future<Output = RestartReport>,
{
    match begin(cx, service, policy, Ask::new(request)).await? {
        Begun::Refused(decision) => Ok(decision),
        Begun::Allowed(permit) => {
            let report = action.await;
            finish(cx, permit, report).await
        }
    }
}

/// Runs a decision's or an outcome's ledger job: with `relaxed` (nothing in it waits for
/// the disk) in place when the ledger is idle, else on the ledger thread.
async fn ledger_job<R, F>(cx: &GuardContext, relaxed: bool, f: F) -> Result<R, LedgerError>
where
    R: Send + 'static,
    F: Fn(&mut crate::ledger::Ledger) -> Result<R, LedgerError> + Send + 'static,
{
    if relaxed {
        cx.ledger.call_now_or_queued(f).await
    } else {
        cx.ledger.call(f).await
    }
}

/// What the guard would say now, without the lock and without recording anything
/// (`vigil check --no-restart`, `vigil status`).
pub async fn preview(
    cx: &GuardContext,
    service: &ServiceName,
    policy: &GuardPolicy,
    request: RestartRequest,
) -> Result<Verdict, GuardError> {
    let name = service.to_string();
    let policy = policy.clone();
    let verdict = cx
        .ledger
        .call(move |ledger| -> Result<_, LedgerError> {
            let now = clock::now();
            let history = ledger.counted_restarts(&name, policy.window_start(now))?;
            Ok(decide(&policy, &history, request, now))
        })
        .await?;
    Ok(verdict)
}

/// `vigil reset`: under the service's lock, so it cannot interleave with a restart.
pub async fn reset(
    cx: &GuardContext,
    service: &ServiceName,
    policy: &GuardPolicy,
) -> Result<Option<usize>, GuardError> {
    let lock_path = lock::lock_path(&cx.state_dir, service.as_str());
    let Some(held) = lock::acquire(&lock_path, policy.lock_timeout).await? else {
        return Ok(None);
    };
    let name = service.to_string();
    let cleared = cx
        .ledger
        .call(move |ledger| ledger.reset(&name, clock::now()))
        .await?;
    drop(held);
    Ok(Some(cleared))
}

#[cfg(test)]
mod fleet_tests {
    use super::*;

    fn allowed() -> Verdict {
        Verdict::Allowed {
            count: 1,
            max: 5,
            window: Duration::from_secs(3600),
            forced: false,
            fleet: None,
        }
    }

    fn busy() -> FleetRefusal {
        FleetRefusal::Busy {
            key: "api".to_owned(),
            held: 1,
            max: 1,
            host: "host-b".to_owned(),
            service: "api".to_owned(),
            ago: Duration::from_secs(4),
            wait: Duration::from_secs(26),
        }
    }

    fn unreachable() -> FleetAnswer {
        FleetAnswer::Unreachable {
            key: "api".to_owned(),
            error: "connection refused".to_owned(),
        }
    }

    #[test]
    fn a_fleet_refusal_is_a_skip_that_an_exit_restart_retries_within_a_second() {
        let exit = RestartRequest::new(Source::Exit);
        let v = with_fleet(
            allowed(),
            FleetAnswer::Refused(busy()),
            OnUnreachable::Local,
            exit,
        );
        assert_eq!(
            v.to_string(),
            "Restart SKIPPED: fleet: 1/1 restarting on host-b, started 4s ago (key api, api on host-b; its lease expires in 26s unless released sooner)"
        );
        assert_eq!(v.reason(), Some("fleet"));
        // Deferred, not dropped: the lifecycle asks again at `retry_at`.
        let now = Timestamp::from_millis(1_000_000);
        assert_eq!(
            v.retry_at(now),
            Some(now.saturating_add(vigil_core::fleet::BUSY_RECHECK))
        );
    }

    #[test]
    fn unreachable_deny_skips_automatic_restarts_but_not_manual_ones() {
        let health = RestartRequest::new(Source::Health);
        let v = with_fleet(allowed(), unreachable(), OnUnreachable::Deny, health);
        assert!(!v.is_allowed());
        assert!(v.to_string().contains("on_unreachable = deny"), "{v}");
        let manual = RestartRequest::new(Source::Manual);
        let v = with_fleet(allowed(), unreachable(), OnUnreachable::Deny, manual);
        assert!(v.is_allowed());
        assert!(
            v.to_string().contains("the local guard alone decided"),
            "{v}"
        );
        let v = with_fleet(allowed(), unreachable(), OnUnreachable::Local, health);
        assert!(v.is_allowed());
    }

    #[test]
    fn a_keyed_restart_never_goes_without_a_lease_when_a_cooldown_ends_in_between() {
        let refused = Verdict::Skipped(Skip::Cooldown {
            wait: Duration::from_millis(1),
            need: Duration::from_secs(120),
            ago: Duration::from_secs(120),
            by: Source::Health,
        });
        let v = with_fleet(
            allowed(),
            FleetAnswer::LocalRefused(refused.clone()),
            OnUnreachable::Local,
            RestartRequest::new(Source::Health),
        );
        assert_eq!(v, refused);
    }

    #[test]
    fn a_local_refusal_is_never_turned_into_an_allowance() {
        let skipped = Verdict::Skipped(Skip::Lock {
            waited: Duration::from_secs(1),
        });
        let note = FleetNote::Leased {
            key: "api".to_owned(),
            held: 1,
            max: 1,
            forced: false,
        };
        let v = with_fleet(
            skipped.clone(),
            FleetAnswer::Granted(note),
            OnUnreachable::Local,
            RestartRequest::new(Source::Health),
        );
        assert_eq!(v, skipped);
    }
}
