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

use self::lock::{LockError, RestartLock};
use crate::ledger::{LedgerError, LedgerHandle};
use crate::observe::bus::Events;
use crate::platform::clock;

/// What the guard needs: the ledger, where the lock files live, and where events go.
#[derive(Clone)]
pub struct GuardContext {
    pub ledger: LedgerHandle,
    pub state_dir: PathBuf,
    pub events: Events,
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
    intent: i64,
    service: ServiceName,
    request: RestartRequest,
    verdict: Verdict,
    decided_at: Timestamp,
    relaxed: bool,
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
            intent: 0,
            service,
            request,
            verdict,
            decided_at,
            relaxed: false,
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
}

/// The first step's result.
#[derive(Debug)]
pub enum Begun {
    Refused(Decision),
    Allowed(Permit),
}

/// What a service actor asks the guard through: the ledger in the daemon and the CLI, an
/// in-memory guard in simulated-time tests.
pub trait Gate: Send + Sync {
    fn begin<'a>(
        &'a self,
        service: &'a ServiceName,
        policy: &'a GuardPolicy,
        request: RestartRequest,
        evidence: Option<String>,
        relaxed: bool,
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
}

impl Gate for GuardContext {
    fn begin<'a>(
        &'a self,
        service: &'a ServiceName,
        policy: &'a GuardPolicy,
        request: RestartRequest,
        evidence: Option<String>,
        relaxed: bool,
    ) -> Pin<Box<dyn Future<Output = Result<Begun, GuardError>> + Send + 'a>> {
        Box::pin(begin(self, service, policy, request, evidence, relaxed))
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
}

/// Step 1: lock, decide, record. See the module docs.
///
/// `relaxed`: commit the verdict to the WAL without an fsync of its own; the ledger
/// thread fsyncs it right after (see `ledger/in_place.rs`). Only for restarting a process
/// Vigil itself runs: a power loss that loses the intent also ended the process the
/// restart started, so the ledger never under-counts a restart whose effect survived.
pub async fn begin(
    cx: &GuardContext,
    service: &ServiceName,
    policy: &GuardPolicy,
    request: RestartRequest,
    evidence: Option<String>,
    relaxed: bool,
) -> Result<Begun, GuardError> {
    let lock_path = lock::lock_path(&cx.state_dir, service.as_str());
    let waited_from = tokio::time::Instant::now();
    let Some(held) = lock::acquire(&lock_path, policy.lock_timeout).await? else {
        let verdict = Verdict::Skipped(Skip::Lock {
            waited: waited_from.elapsed(),
        });
        let now = clock::now();
        let (name, v) = (service.to_string(), verdict.clone());
        cx.ledger
            .call(move |l| {
                l.record_verdict(
                    &name,
                    request.source,
                    request.forced,
                    &v,
                    now,
                    evidence.as_deref(),
                )
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

    let name = service.to_string();
    let decision = {
        let policy = policy.clone();
        let decide = move |ledger: &mut crate::ledger::Ledger| -> Result<_, LedgerError> {
            let now = clock::now();
            ledger.transaction(relaxed, |ledger| {
                let interrupted = ledger.dangling_intents(Some(&name))?;
                for dangling in &interrupted {
                    ledger.resolve_interrupted(dangling.id, now)?;
                }
                ledger.close_expired_episode(&name, now)?;
                let history = ledger.counted_restarts(&name, policy.window_start(now))?;
                let verdict = decide(&policy, &history, request, now);
                let recorded = ledger.record_verdict(
                    &name,
                    request.source,
                    request.forced,
                    &verdict,
                    now,
                    evidence.as_deref(),
                )?;
                Ok((verdict, now, recorded, interrupted))
            })
        };
        ledger_job(cx, relaxed, decide).await?
    };
    let (verdict, now, recorded, interrupted) = decision;
    for dangling in interrupted {
        cx.events.publish(
            service,
            Event::RestartInterrupted {
                intent: dangling.id,
                allowed_at: dangling.at,
                source: dangling.source,
                pid: dangling.pid,
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
        return Ok(Begun::Refused(Decision {
            verdict,
            report: None,
            decided_at: now,
            finished_at: None,
        }));
    }
    Ok(Begun::Allowed(Permit {
        lock: Some(held),
        intent: recorded.id,
        service: service.clone(),
        request,
        verdict,
        decided_at: now,
        relaxed,
    }))
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
        verdict,
        decided_at,
        ..
    } = permit;
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
    match begin(cx, service, policy, request, None, false).await? {
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
