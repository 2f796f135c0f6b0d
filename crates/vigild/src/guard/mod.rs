//! The guard at the edge: the one gate every restart passes, from every source and every
//! process (SPEC §2).
//!
//! Order of operations for one request:
//! 1. take the service's cross-process restart lock (`lock.rs`), at most `lock_timeout`;
//!    not acquired → `skipped(lock)`, recorded;
//! 2. resolve intents left by a Vigil that died mid-restart (safe: we hold the lock);
//! 3. read the counted restarts in the window and call the pure `vigil_core::decide`;
//! 4. allowed → commit the intent, perform the action, commit the outcome; otherwise
//!    record the refusal;
//! 5. release the lock.
//!
//! Architecture Invariant: nothing restarts a service except through [`request`]. The
//! decision itself stays in `vigil_core`; this module only sequences I/O around it.

pub mod lock;

use std::path::PathBuf;
use std::time::Duration;

use vigil_config::model::Argv;
use vigil_core::guard::Denial;
use vigil_core::{GuardPolicy, RestartRequest, ServiceName, Skip, Timestamp, Verdict, decide};

use self::lock::LockError;
use crate::drivers::{self, Driver, RestartReport};
use crate::ledger::{LedgerError, LedgerHandle};
use crate::observe::alerting::AlertHub;
use crate::observe::events;
use crate::platform::clock;

/// What the guard needs: the ledger, where the lock files live, and where alerts go.
#[derive(Clone)]
pub struct GuardContext {
    pub ledger: LedgerHandle,
    pub state_dir: PathBuf,
    pub alerts: AlertHub,
}

/// What an allowed request performs.
pub enum Action<'a> {
    /// Restart through the service's driver.
    Restart(&'a Driver),
    /// Run a check's repair command (`on_failure = { exec = [...] }`) instead.
    Repair(&'a Argv, Duration),
    /// Performed by the caller: an exec supervisor (re)starting the process it owns, a
    /// group restart's stop/start sequence, a member's start.
    Run(std::pin::Pin<Box<dyn std::future::Future<Output = RestartReport> + Send + 'a>>),
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
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// Passes one restart request through the guard and, if allowed, performs it.
pub async fn request(
    cx: &GuardContext,
    service: &ServiceName,
    policy: &GuardPolicy,
    action: Action<'_>,
    request: RestartRequest,
) -> Result<Decision, GuardError> {
    request_with_evidence(
        cx,
        service,
        policy,
        action,
        request,
        None,
        IntentSync::BeforeAction,
    )
    .await
}

/// When the intent of an allowed restart reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntentSync {
    /// Committed and fsynced before the action (the default for every request).
    BeforeAction,
    /// Committed to the WAL before the action, so it survives a crash of Vigil (the case
    /// the intent exists for); the outcome too, and the ledger thread fsyncs the WAL right
    /// after (see [`ledger_job`]). Only for
    /// restarting a process Vigil itself runs: a power loss that loses the intent also
    /// ended the process the action started, so the ledger never under-counts a restart
    /// whose effect survived. Keeps a disk flush off the crash-to-restart path.
    WithOutcome,
}

/// [`request`], storing `evidence` (e.g. what a hung process was doing) with the ledger
/// entry of the verdict, whatever it is, and committing the intent per `sync`.
pub async fn request_with_evidence(
    cx: &GuardContext,
    service: &ServiceName,
    policy: &GuardPolicy,
    action: Action<'_>,
    request: RestartRequest,
    evidence: Option<String>,
    sync: IntentSync,
) -> Result<Decision, GuardError> {
    let lock_path = lock::lock_path(&cx.state_dir, service.as_str());
    let waited_from = tokio::time::Instant::now();
    let Some(held) = lock::acquire(&lock_path, policy.lock_timeout).await? else {
        let verdict = Verdict::Skipped(Skip::Lock {
            waited: waited_from.elapsed(),
        });
        let now = clock::now();
        record_refusal(cx, service, request, &verdict, now, evidence).await?;
        events::verdict(&cx.alerts, service, request, &verdict);
        return Ok(Decision {
            verdict,
            report: None,
            decided_at: now,
            finished_at: None,
        });
    };

    let name = service.to_string();
    let relaxed = sync == IntentSync::WithOutcome;
    let (verdict, now, intent) = {
        let policy = policy.clone();
        let decide = move |ledger: &mut crate::ledger::Ledger| -> Result<_, LedgerError> {
            let now = clock::now();
            let (verdict, id) = ledger.transaction(relaxed, |ledger| {
                for dangling in ledger.dangling_intents(Some(&name))? {
                    ledger.resolve_interrupted(dangling.id, now)?;
                    events::interrupted_restart(&dangling);
                }
                let history = ledger.counted_restarts(&name, policy.window_start(now))?;
                let verdict = decide(&policy, &history, request, now);
                let id = ledger.record_verdict(
                    &name,
                    request.source,
                    request.forced,
                    &verdict,
                    now,
                    evidence.as_deref(),
                )?;
                Ok((verdict, id))
            })?;
            let intent = verdict.is_allowed().then_some(id);
            Ok((verdict, now, intent))
        };
        ledger_job(cx, relaxed, decide).await?
    };
    if relaxed && intent.is_none() {
        // No outcome commit follows a refusal: the ledger thread makes it durable.
        cx.ledger.sync_soon();
    }
    events::verdict(&cx.alerts, service, request, &verdict);

    let Some(intent) = intent else {
        drop(held);
        return Ok(Decision {
            verdict,
            report: None,
            decided_at: now,
            finished_at: None,
        });
    };

    let report = match action {
        Action::Restart(driver) => driver.restart().await,
        Action::Repair(argv, timeout) => drivers::run_command(argv, timeout).await,
        Action::Run(fut) => fut.await,
    };
    let finished_at = clock::now();
    {
        let detail = report.detail.clone();
        let ok = report.ok;
        let record = move |ledger: &mut crate::ledger::Ledger| {
            ledger.transaction(relaxed, |l| {
                l.record_outcome(intent, ok, &detail, finished_at)
            })
        };
        ledger_job(cx, relaxed, record).await?;
        if relaxed {
            // Intent and outcome are in the WAL; the ledger thread fsyncs them next, while
            // the supervisor goes on (a crash loop's next exit is not held up).
            cx.ledger.sync_soon();
        }
    }
    events::restart_finished(&cx.alerts, service, request, &verdict, &report);
    drop(held);
    Ok(Decision {
        verdict,
        report: Some(report),
        decided_at: now,
        finished_at: Some(finished_at),
    })
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

async fn record_refusal(
    cx: &GuardContext,
    service: &ServiceName,
    request: RestartRequest,
    verdict: &Verdict,
    now: Timestamp,
    evidence: Option<String>,
) -> Result<(), LedgerError> {
    let name = service.to_string();
    let verdict = verdict.clone();
    cx.ledger
        .call(move |ledger| {
            ledger
                .record_verdict(
                    &name,
                    request.source,
                    request.forced,
                    &verdict,
                    now,
                    evidence.as_deref(),
                )
                .map(drop)
        })
        .await
}
