//! The service actor: the owner of one service's driver and guard policy, performing its
//! restart requests in order, and keeping a refused exit restart until the guard allows it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_checks::ProbeContext;
use vigil_config::model::Service;
use vigil_core::{RestartRequest, Source, Timestamp};

use crate::drivers::{Driver, DriverEvent};
use crate::guard::{self, Action, Decision, GuardContext};
use crate::observe::events;
use crate::platform::clock;
use crate::service::RESTART_SHUTDOWN_GRACE;
use crate::service::protocol::ServiceMsg;

/// The deadline of a check's repair command.
fn repair_timeout(service: &Service) -> Duration {
    service.driver.command_timeout()
}

/// The owner of one service's driver and policy; performs its restart requests in order.
pub struct ServiceActor {
    pub spec: Service,
    /// The re-arm instant of the given-up episode already announced, so "ACTION REQUIRED"
    /// is raised once per episode rather than on every denied request.
    pub announced_given_up: Option<Timestamp>,
    /// An automatic restart was already refused because the driver said it cannot succeed
    /// (systemd's start limit); later refusals of the same episode log quietly.
    pub announced_blocked: bool,
    pub driver: Driver,
    pub guard: GuardContext,
    pub probes: Arc<ProbeContext>,
    pub started: watch::Sender<Option<Timestamp>>,
    pub cancel: CancellationToken,
    /// The actor's own inbox, for the driver's event follower (a container's death).
    pub inbox: mpsc::Sender<ServiceMsg>,
    /// Stops the current driver's event follower (replaced when the driver changes).
    pub follower: Option<CancellationToken>,
    /// A refused restart whose source will not ask again (`exit`, `watchdog`): retried at
    /// this time (never dropped while the service stays down).
    pub deferred: Option<(RestartRequest, Timestamp)>,
}

impl ServiceActor {
    /// Starts following the driver's events, when it has any (Docker's event stream):
    /// a death is reported at once as a restart request with source `exit`.
    fn follow_driver(&mut self) {
        if let Some(old) = self.follower.take() {
            old.cancel();
        }
        if let Driver::Docker(spec, own) = &self.driver {
            let token = self.cancel.child_token();
            let (tx, mut events) = mpsc::channel(8);
            let follow = crate::drivers::docker::follow_events(
                self.spec.name.clone(),
                spec.clone(),
                own.clone(),
                tx,
                self.started.clone(),
                token.clone(),
            );
            let inbox = self.inbox.clone();
            let forward = async move {
                while let Some(DriverEvent::Died) = events.recv().await {
                    let msg = ServiceMsg::Restart {
                        request: RestartRequest::new(Source::Exit),
                        repair: None,
                        reply: None,
                    };
                    if inbox.send(msg).await.is_err() {
                        return;
                    }
                }
            };
            tokio::spawn(async move {
                tokio::join!(follow, forward);
            });
            self.follower = Some(token);
        }
    }

    /// Not an `async fn`, which would store `self` twice; see `exec::Supervisor::run`.
    #[expect(clippy::manual_async_fn, reason = "an async fn would store self twice")]
    pub fn run(
        mut self,
        mut rx: mpsc::Receiver<ServiceMsg>,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            self.follow_driver();
            loop {
                let deferred_until = self.deferred.as_ref().map(|(_, at)| {
                    let wait = at.saturating_since(clock::now());
                    Instant::now() + wait
                });
                let msg = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return,
                    msg = rx.recv() => match msg { Some(m) => m, None => return },
                    _ = async {
                        match deferred_until {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    } => {
                        let Some((request, _)) = self.deferred.take() else { continue };
                        if self.driver.is_running().await == Some(true) {
                            tracing::info!(service = %self.spec.name, event = "deferred_dropped",
                                "the service runs again: the deferred restart (source {}) is no longer needed", request.source);
                            continue;
                        }
                        ServiceMsg::Restart { request, repair: None, reply: None }
                    }
                };
                match msg {
                    ServiceMsg::Update(spec) => {
                        let driver_changed = spec.driver != self.spec.driver;
                        self.driver = Driver::new(&spec.driver, &self.probes);
                        self.spec = *spec;
                        if driver_changed {
                            self.follow_driver();
                        }
                        tracing::info!(service = %self.spec.name, event = "service_updated", "driver/guard settings updated");
                    }
                    ServiceMsg::Restarted(at) => {
                        self.started.send_replace(Some(at));
                    }
                    ServiceMsg::Reset => {
                        // `vigil reset` through the API: a deferred restart may go now.
                        self.announced_given_up = None;
                        if let Some((_, at)) = &mut self.deferred {
                            *at = clock::now();
                        }
                    }
                    ServiceMsg::Restart {
                        request,
                        repair,
                        reply,
                    } => {
                        // An automatic restart that cannot succeed is not attempted (never a
                        // loop against systemd's start limit); a manual one always is.
                        if repair.is_none() && request.source != Source::Manual {
                            if let Some(why) = self.driver.restart_blocked().await {
                                events::restart_blocked(
                                    &self.spec.name,
                                    request,
                                    &why,
                                    !self.announced_blocked,
                                );
                                self.announced_blocked = true;
                                continue;
                            }
                            self.announced_blocked = false;
                        }
                        if !self.handle_restart(request, repair, reply).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Performs one restart request through the guard; false when shutdown abandoned it.
    async fn handle_restart(
        &mut self,
        request: RestartRequest,
        repair: Option<Box<vigil_config::model::Argv>>,
        reply: Option<oneshot::Sender<Decision>>,
    ) -> bool {
        let action = match &repair {
            Some(argv) => Action::Repair(argv, repair_timeout(&self.spec)),
            None => Action::Restart(&self.driver),
        };
        let fut = guard::request(
            &self.guard,
            &self.spec.name,
            &self.spec.guard,
            action,
            request,
        );
        let cancel = self.cancel.clone();
        let outcome = tokio::select! {
            res = fut => res,
            _ = async { cancel.cancelled().await; tokio::time::sleep(RESTART_SHUTDOWN_GRACE).await } => {
                tracing::error!(service = %self.spec.name, event = "restart_abandoned",
                    "shutdown: restart still running after {}; abandoned (its process group was killed; the ledger keeps the intent, reported as interrupted)",
                    vigil_core::format_duration(RESTART_SHUTDOWN_GRACE));
                return false;
            }
        };
        match outcome {
            Ok(decision) => {
                match decision.given_up_until() {
                    Some(rearm_at) => {
                        let announced = self
                            .announced_given_up
                            .is_some_and(|t| decision.decided_at < t);
                        if !announced {
                            events::given_up(
                                &self.guard.alerts,
                                &self.spec.name,
                                request,
                                &decision.verdict,
                                decision.decided_at,
                            );
                        }
                        self.announced_given_up = Some(rearm_at);
                    }
                    None if decision.verdict.is_allowed() => self.announced_given_up = None,
                    None => {}
                }
                if decision.restarted() && repair.is_none() {
                    self.started.send_replace(decision.finished_at);
                }
                if decision.verdict.is_allowed() {
                    // Whatever brought the service back settles a pending one.
                    self.deferred = None;
                } else if request.source.is_deferred_when_skipped() {
                    // Nothing else would bring a dead process back: retry when the guard
                    // will allow it (a lock held elsewhere: in a second).
                    let at = decision
                        .verdict
                        .retry_at(decision.decided_at)
                        .unwrap_or(decision.decided_at.saturating_add(Duration::from_secs(1)));
                    tracing::info!(service = %self.spec.name, event = "restart_deferred",
                        "restart (source {}) deferred until {at}: {}", request.source, decision.verdict);
                    self.deferred = Some((request, at));
                }
                if let Some(reply) = reply {
                    let _ = reply.send(decision);
                }
            }
            Err(error) => tracing::error!(
                service = %self.spec.name,
                event = "guard_error",
                %error,
                "restart request failed"
            ),
        }
        true
    }
}
