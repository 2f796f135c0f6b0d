//! The service actor: the one owner of a service's driver, driving its lifecycle machine
//! (`vigil_core::lifecycle`).
//!
//! Every request for the service (a failing check, a schedule, the control socket, its
//! restart group, a container's death, an exec process's exit) becomes an input to the
//! machine; the actor carries out what the machine asks (the guard through a [`Gate`], a
//! driver operation, a spawn, a signal), feeds the answers back, and sleeps until the
//! machine's next timer. It decides nothing itself. The same actor runs in the daemon,
//! in one-shot commands (cron mode), and in tests with fake drivers and a simulated
//! [`Clock`].
//!
//! An idle actor's task is one hand-written poll over stored state ([`ServiceActor::run`]):
//! hundreds of exec services wait at once, and a `select!` over futures built afresh on
//! every turn would be several times larger.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use vigil_config::model::{Argv, DriverSpec, OnDaemonExit, Ready, Service};
use vigil_core::event::Event;
use vigil_core::lifecycle::{
    Effect, GuardAnswer, Hold, HoldKind, Input, Machine, Model, Op, Operator, ProcessSpec,
    ProcessState, Request, RequestId, Settled,
};
use vigil_core::{GuardPolicy, RestartReport, ServiceName, Timestamp};

use crate::drivers::{Driver, DriverEvent, ProcessEvent, RemoteDriver, run_command};
use crate::guard::{Ask, Begun, Decision, Gate, Permit};
use crate::ledger::{ExecStateRow, LedgerHandle, OperatorAction, OperatorRow};
use crate::observe::bus::Events;
use crate::platform::cell::Cell;
use crate::platform::clock::Clock;
use crate::service::RESTART_SHUTDOWN_GRACE;
use crate::service::inbox;
use crate::service::protocol::{
    Control, OperatorCommand, Outcome, RequestMsg, ServiceMsg, UpdateMsg,
};

/// What the machine's model is for a service definition.
pub fn model_of(service: &Service) -> Model {
    match &service.driver {
        DriverSpec::Exec(e) => Model::Process(ProcessSpec {
            command: e.command.to_string(),
            restart: e.restart,
            success: e.success_exit_status.clone(),
            restart_delay: e.restart_delay,
            notify: e.ready == Ready::Notify,
            start_timeout: e.start_timeout,
            watchdog: e.watchdog,
            watchdog_signal: e.watchdog_signal,
            stop_signal: e.stop_signal,
            stop_timeout: e.stop_timeout,
        }),
        _ => Model::Remote,
    }
}

/// What the actor needs besides its driver.
#[derive(Clone)]
pub struct Deps {
    pub gate: Arc<dyn Gate>,
    pub events: Events,
    pub clock: Clock,
    /// Where an exec service's runtime state is written for `vigil status` (`None` in
    /// tests).
    pub ledger: Option<LedgerHandle>,
    /// Follow the driver's own events (Docker's event stream): the daemon does; a
    /// one-shot command, which only acts and exits, does not.
    pub follow: bool,
}

/// A request's requester, until it is answered.
struct Waiting {
    id: RequestId,
    reply: Option<oneshot::Sender<Outcome>>,
    repair: Option<Argv>,
    decision: Option<Decision>,
}

/// What finished in the background, back to the actor.
struct Done {
    input: Input,
    permit: Option<Permit>,
    decision: Option<Decision>,
}

impl Done {
    fn input(input: Input) -> Box<Done> {
        Box::new(Done {
            input,
            permit: None,
            decision: None,
        })
    }
}

type Background = Pin<Box<dyn Future<Output = Box<Done>> + Send>>;

/// What was last written of an exec service's state: state, pid, main pid, `STATUS=`.
type Persisted = (ProcessState, Option<i32>, Option<i32>, Option<String>);

/// What woke the actor.
enum Wake {
    Cancelled,
    Message(Option<ServiceMsg>),
    Done(Box<Done>),
    Process(ProcessEvent),
    Driver(Option<DriverEvent>),
    Timer,
}

/// One service's actor (see the module docs).
pub struct ServiceActor {
    name: ServiceName,
    policy: GuardPolicy,
    repair_timeout: Duration,
    leave_on_exit: bool,
    machine: Machine,
    driver: Driver,
    deps: Deps,
    started: Cell<Option<Timestamp>>,
    waiting: Vec<Waiting>,
    next_id: u64,
    /// The request whose guard answer or operation is in flight.
    pending_id: Option<RequestId>,
    background: Option<Background>,
    /// Boxed: an idle actor holds none, and inline it was a fifth of the actor's size.
    permit: Option<Box<Permit>>,
    driver_events: Option<mpsc::Receiver<DriverEvent>>,
    /// This service's token (cancelled: removed, or the daemon stops).
    cancel: CancellationToken,
    /// The daemon's (cancelled: the daemon stops, so `on_daemon_exit` applies).
    root: CancellationToken,
    /// Every sender of the inbox is gone.
    inbox_closed: bool,
    /// When a shutdown began, to bound how long a driver operation may still run.
    shutdown_since: Option<tokio::time::Instant>,
    /// The exec state last written, to write only changes.
    persisted: Option<Persisted>,
    /// What the last exit or refusal said, for `vigil status`.
    detail: String,
    /// Operator actions accepted, to record before their requesters hear back.
    to_record: Vec<OperatorRow>,
    /// The hold last marked on the event bus.
    marked_hold: Option<HoldKind>,
    /// Who placed the current hold (`operator`, `window`, `group`): its expiry says so.
    hold_source: &'static str,
}

impl ServiceActor {
    pub fn new(
        service: &Service,
        driver: Driver,
        deps: Deps,
        started: Cell<Option<Timestamp>>,
        cancel: CancellationToken,
        root: CancellationToken,
    ) -> ServiceActor {
        let machine = Machine::new(model_of(service), deps.clock.moment());
        ServiceActor {
            name: service.name.clone(),
            policy: service.guard.clone(),
            repair_timeout: service.driver.command_timeout(),
            leave_on_exit: matches!(&service.driver, DriverSpec::Exec(e) if e.on_daemon_exit == OnDaemonExit::Leave),
            machine,
            driver,
            deps,
            started,
            waiting: Vec::new(),
            next_id: 1,
            pending_id: None,
            background: None,
            permit: None,
            driver_events: None,
            cancel,
            root,
            inbox_closed: false,
            shutdown_since: None,
            persisted: None,
            detail: String::new(),
            to_record: Vec::new(),
            marked_hold: None,
            hold_source: "operator",
        }
    }

    /// The actor of a restart group: named by its ledger key (`@NAME`), with the group's
    /// guard policy, driven through its [`GroupDriver`](super::group::GroupDriver).
    pub fn for_group(
        group: &vigil_config::model::Group,
        driver: Driver,
        deps: Deps,
        cancel: CancellationToken,
        root: CancellationToken,
    ) -> ServiceActor {
        let started = Cell::new(None);
        let machine = Machine::new(Model::Remote, deps.clock.moment());
        ServiceActor {
            name: group.ledger_key(),
            policy: group.guard.clone(),
            repair_timeout: Duration::from_secs(60),
            leave_on_exit: false,
            machine,
            driver,
            deps,
            started,
            waiting: Vec::new(),
            next_id: 1,
            pending_id: None,
            background: None,
            permit: None,
            driver_events: None,
            cancel,
            root,
            inbox_closed: false,
            shutdown_since: None,
            persisted: None,
            detail: String::new(),
            to_record: Vec::new(),
            marked_hold: None,
            hold_source: "operator",
        }
    }

    /// Runs the actor until its service is gone: for an exec service, its process is
    /// started first and stopped (or left running) at the end. Not an `async fn`, which
    /// would store its arguments twice (as captured and as moved-in locals).
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would store self twice; see the module docs"
    )]
    pub fn run(
        mut self,
        mut rx: inbox::Receiver<ServiceMsg>,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            if let Driver::Remote(d) = &self.driver
                && self.deps.follow
            {
                self.driver_events = d.follow(&self.name, self.cancel.child_token());
            }
            Box::pin(self.restore_hold()).await;
            if let Driver::Process(p) = &mut self.driver {
                p.prepare().await;
                self.machine.start(self.deps.clock.moment());
            }
            Box::pin(self.pump()).await;
            let cancelled = self.cancel.clone().cancelled_owned();
            let timer = tokio::time::sleep_until(tokio::time::Instant::now());
            tokio::pin!(cancelled, timer);
            let mut armed = None;
            loop {
                let deadline = self.deadline();
                if deadline != armed {
                    if let Some(d) = deadline {
                        timer.as_mut().reset(d);
                    }
                    armed = deadline;
                }
                let wake = std::future::poll_fn(|cx| {
                    let timer = armed.is_some().then_some(timer.as_mut());
                    self.poll_wake(cx, &mut rx, cancelled.as_mut(), timer)
                })
                .await;
                let now = self.deps.clock.moment();
                match wake {
                    Wake::Cancelled | Wake::Message(None) => self.begin_shutdown(),
                    Wake::Message(Some(msg)) => self.on_message(msg),
                    Wake::Done(done) => {
                        let done = *done;
                        if let Some(p) = done.permit {
                            self.permit = Some(Box::new(p));
                        }
                        if let Some(d) = done.decision {
                            self.stash_decision(d);
                        }
                        self.machine.handle_event(done.input, now);
                    }
                    Wake::Process(ProcessEvent::Exited) => {
                        let termination = match &mut self.driver {
                            Driver::Process(p) => p.reap().await,
                            Driver::Remote(_) => None,
                        };
                        let now = self.deps.clock.moment();
                        self.machine
                            .handle_event(Input::Exited { termination }, now);
                    }
                    Wake::Process(ProcessEvent::Notify(messages)) => {
                        for msg in messages {
                            self.machine.handle_event(Input::Notify(msg), now);
                        }
                    }
                    Wake::Driver(Some(DriverEvent::Died)) => {
                        self.machine.handle_event(Input::Died, now);
                    }
                    Wake::Driver(Some(DriverEvent::Started(at))) => {
                        self.started.set(at);
                    }
                    Wake::Driver(None) => self.driver_events = None,
                    Wake::Timer => {
                        armed = None;
                        self.machine.handle_timeout(now);
                    }
                }
                // Boxed: its state (an effect, an event) would otherwise be stored in every
                // idle actor's task.
                Box::pin(self.pump()).await;
                if self.machine.is_finished() || self.shutdown_overdue() {
                    break;
                }
            }
            Box::pin(self.finish()).await;
            tracing::debug!(service = %self.name, event = "actor_stopped", "actor stopped");
        }
    }

    /// The first thing ready, in priority order.
    fn poll_wake(
        &mut self,
        cx: &mut Context<'_>,
        rx: &mut inbox::Receiver<ServiceMsg>,
        cancelled: Pin<&mut tokio_util::sync::WaitForCancellationFutureOwned>,
        timer: Option<Pin<&mut tokio::time::Sleep>>,
    ) -> Poll<Wake> {
        if self.shutdown_since.is_none() && cancelled.poll(cx).is_ready() {
            return Poll::Ready(Wake::Cancelled);
        }
        // A closed inbox (the service was removed) is reported once, then no longer
        // polled: it would be ready forever.
        if !self.inbox_closed
            && let Poll::Ready(msg) = rx.poll_recv(cx)
        {
            self.inbox_closed = msg.is_none();
            return Poll::Ready(Wake::Message(msg));
        }
        if let Some(bg) = &mut self.background
            && let Poll::Ready(done) = bg.as_mut().poll(cx)
        {
            self.background = None;
            return Poll::Ready(Wake::Done(done));
        }
        if let Driver::Process(p) = &mut self.driver
            && let Poll::Ready(ev) = p.poll_event(cx)
        {
            return Poll::Ready(Wake::Process(ev));
        }
        if let Some(events) = &mut self.driver_events
            && let Poll::Ready(ev) = events.poll_recv(cx)
        {
            return Poll::Ready(Wake::Driver(ev));
        }
        if let Some(timer) = timer
            && timer.poll(cx).is_ready()
        {
            return Poll::Ready(Wake::Timer);
        }
        Poll::Pending
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        let machine = self
            .machine
            .poll_timeout()
            .map(|m| self.deps.clock.instant_of(m));
        let grace = self
            .shutdown_since
            .map(|since| since + RESTART_SHUTDOWN_GRACE);
        match (machine, grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_since.is_some() {
            return;
        }
        tracing::debug!(service = %self.name, event = "actor_stopping", busy = self.machine.busy(), "actor stopping");
        self.shutdown_since = Some(tokio::time::Instant::now());
        let leave = self.root.is_cancelled() && self.leave_on_exit;
        let now = self.deps.clock.moment();
        self.machine.handle_event(Input::Shutdown { leave }, now);
    }

    /// A driver operation still running [`RESTART_SHUTDOWN_GRACE`] after a shutdown
    /// began is abandoned (a process's stop escalation has its own deadlines).
    fn shutdown_overdue(&self) -> bool {
        let Some(since) = self.shutdown_since else {
            return false;
        };
        if matches!(self.driver, Driver::Process(_)) && self.machine.pid().is_some() {
            return false;
        }
        if since.elapsed() < RESTART_SHUTDOWN_GRACE || self.background.is_none() {
            return false;
        }
        tracing::error!(service = %self.name, event = "restart_abandoned",
            "shutdown: restart still running after {}; abandoned (its process group was killed; the ledger keeps the intent, reported as interrupted)",
            vigil_core::format_duration(RESTART_SHUTDOWN_GRACE));
        true
    }

    fn on_message(&mut self, msg: ServiceMsg) {
        let now = self.deps.clock.moment();
        match msg {
            ServiceMsg::Request(request) => {
                let RequestMsg {
                    op,
                    guard,
                    repair,
                    reply,
                } = *request;
                let id = RequestId(self.next_id);
                self.next_id += 1;
                if reply.is_some() || repair.is_some() {
                    self.waiting.push(Waiting {
                        id,
                        reply,
                        repair,
                        decision: None,
                    });
                }
                self.machine
                    .handle_event(Input::Request(Request { id, op, guard }), now);
            }
            ServiceMsg::Update(update) => {
                let UpdateMsg { service, driver } = *update;
                self.policy = service.guard.clone();
                self.repair_timeout = service.driver.command_timeout();
                self.leave_on_exit = matches!(&service.driver, DriverSpec::Exec(e) if e.on_daemon_exit == OnDaemonExit::Leave);
                match (&mut self.driver, driver) {
                    (Driver::Process(p), _) => {
                        let changed = p.exec_spec().is_some_and(
                            |old| !matches!(&service.driver, DriverSpec::Exec(new) if *new == *old),
                        );
                        p.reconfigure(&service.driver);
                        self.machine.handle_event(
                            Input::Reconfigure {
                                model: model_of(&service),
                                restart: changed,
                            },
                            now,
                        );
                        if !changed {
                            tracing::info!(service = %self.name, event = "service_updated", "guard settings updated");
                        }
                    }
                    (Driver::Remote(_), Some(new)) => {
                        self.driver = new;
                        if let Driver::Remote(d) = &self.driver
                            && self.deps.follow
                        {
                            self.driver_events = d.follow(&self.name, self.cancel.child_token());
                        }
                        tracing::info!(service = %self.name, event = "service_updated", "driver/guard settings updated");
                    }
                    (Driver::Remote(_), None) => {
                        tracing::info!(service = %self.name, event = "service_updated", "guard settings updated");
                    }
                }
            }
            ServiceMsg::Reset => self.machine.handle_event(Input::Reset, now),
            ServiceMsg::Operator(msg) => self.on_operator(msg.command, msg.reply),
        }
    }

    /// The hold recorded before this actor started (by a previous daemon, a one-shot
    /// command, or an operator while no daemon ran) applies from the start.
    async fn restore_hold(&mut self) {
        let wall = self.deps.clock.wall();
        match self.deps.gate.recorded_hold(&self.name, wall).await {
            Ok(Some(row)) => {
                self.hold_source = match row.source.as_str() {
                    "window" => "window",
                    "group" => "group",
                    _ => "operator",
                };
                let until = row.until.map(|t| self.deps.clock.moment_at(t));
                let now = self.deps.clock.moment();
                self.machine.handle_event(
                    Input::Restore(Hold {
                        kind: row.kind,
                        until,
                    }),
                    now,
                );
                tracing::info!(service = %self.name, event = "hold_restored", kind = row.kind.as_str(),
                    "{} since {}{}", row.kind.as_str(), row.since,
                    row.until.map(|t| format!(" until {t}")).unwrap_or_default());
            }
            Ok(None) => {}
            Err(error) => self.deps.events.publish(
                &self.name,
                Event::GuardError {
                    source: vigil_core::Source::Manual,
                    error: format!("cannot read the operator's hold: {error}"),
                },
            ),
        }
    }

    /// An operator's command: recorded (before its answer) when the lifecycle accepts it.
    fn on_operator(&mut self, command: OperatorCommand, reply: Option<oneshot::Sender<Outcome>>) {
        let now = self.deps.clock.moment();
        // A maintenance window (or a group's step) never overrides an operator's own hold,
        // and a window already in force (restored after a restart of Vigil) is not applied
        // twice.
        if command.source != "operator"
            && matches!(command.action, Control::Stop | Control::Pause)
            && let Some(hold) = self.machine.hold()
            && (self.hold_source == "operator" || command.source == "window")
        {
            let answer = if self.hold_source != command.source {
                Outcome::Held(hold.kind)
            } else {
                Outcome::Done(RestartReport {
                    ok: true,
                    detail: format!("this window's {} is in force already", hold.kind.as_str()),
                    duration: Duration::ZERO,
                    action_required: None,
                })
            };
            if let Some(reply) = reply {
                let _ = reply.send(answer);
            }
            return;
        }
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.waiting.push(Waiting {
            id,
            reply,
            repair: None,
            decision: None,
        });
        let held = self.machine.hold().map(|h| h.kind);
        let until = command.until.map(|t| self.deps.clock.moment_at(t));
        let (input, accepted) = match command.action {
            Control::Stop => (Operator::Stop { until }, true),
            Control::Start => (Operator::Start, true),
            // Stopped is more than paused: the machine refuses.
            Control::Pause => (Operator::Pause { until }, held != Some(HoldKind::Stopped)),
            Control::Resume => (Operator::Resume, held == Some(HoldKind::Paused)),
        };
        if accepted && self.shutdown_since.is_none() {
            if matches!(command.action, Control::Stop | Control::Pause) {
                self.hold_source = command.source;
            }
            self.to_record.push(OperatorRow {
                action: command.action.action(),
                at: self.deps.clock.wall(),
                until: command.until,
                caller: command.caller,
                reason: command.reason,
                source: command.source.to_owned(),
            });
        }
        self.machine
            .handle_event(Input::Operator { id, command: input }, now);
    }

    /// Writes what `on_operator` accepted.
    async fn record_operator_actions(&mut self) {
        for row in std::mem::take(&mut self.to_record) {
            let action = row.action;
            if let Err(error) = self.deps.gate.record_operator(&self.name, row).await {
                self.deps.events.publish(
                    &self.name,
                    Event::GuardError {
                        source: vigil_core::Source::Manual,
                        error: format!("cannot record the operator's {}: {error}", action.as_str()),
                    },
                );
            }
        }
    }

    fn stash_decision(&mut self, decision: Decision) {
        if let Some(id) = self.pending_id
            && let Some(w) = self.waiting.iter_mut().find(|w| w.id == id)
        {
            w.decision = Some(decision);
        }
    }

    /// Carries out what the machine asks, feeding answers back, until it asks nothing
    /// more or waits on something in the background.
    async fn pump(&mut self) {
        if !self.to_record.is_empty() {
            self.record_operator_actions().await;
        }
        while let Some(effect) = self.machine.poll_effect() {
            let now = self.deps.clock.moment();
            match effect {
                Effect::AskGuard {
                    id,
                    request,
                    evidence,
                    check_blocked,
                    relaxed,
                } => {
                    self.pending_id = Some(id);
                    let gate = self.deps.gate.clone();
                    let name = self.name.clone();
                    let policy = self.policy.clone();
                    let blocked = match (&self.driver, check_blocked) {
                        (Driver::Remote(d), true) => Some(d.clone()),
                        _ => None,
                    };
                    let ask = Ask {
                        request,
                        evidence,
                        relaxed,
                        // Remote actions report what they start and hand the restart's lock
                        // to it; an exec service's process is watched by its own actor.
                        tracked: matches!(self.driver, Driver::Remote(_)),
                        action_timeout: self.repair_timeout,
                    };
                    self.background = Some(Box::pin(async move {
                        ask_guard(gate, name, policy, ask, blocked).await
                    }));
                }
                Effect::RunOp { id, op } => {
                    self.pending_id = Some(id);
                    let repair = self
                        .waiting
                        .iter()
                        .find(|w| w.id == id)
                        .and_then(|w| w.repair.clone());
                    let timeout = self.repair_timeout;
                    let driver: Option<Arc<dyn RemoteDriver>> = match &self.driver {
                        Driver::Remote(d) => Some(d.clone()),
                        Driver::Process(_) => None,
                    };
                    let tracker = self.permit.as_deref().and_then(Permit::tracker);
                    self.background = Some(Box::pin(async move {
                        let report = match (op, repair, driver) {
                            (Op::Repair, Some(argv), _) => {
                                run_command(&argv, timeout, tracker.as_ref()).await
                            }
                            (_, _, Some(d)) => d.run(op, tracker).await,
                            (_, _, None) => RestartReport {
                                ok: false,
                                detail: format!("no driver operation `{}` here", op.as_str()),
                                duration: Duration::ZERO,
                                action_required: None,
                            },
                        };
                        Done::input(Input::OpDone(report))
                    }));
                }
                Effect::ProbeRunning => {
                    let Driver::Remote(d) = &self.driver else {
                        self.machine.handle_event(Input::Running(None), now);
                        continue;
                    };
                    let d = d.clone();
                    self.background = Some(Box::pin(async move {
                        Done::input(Input::Running(d.is_running().await))
                    }));
                }
                Effect::Spawn => {
                    let input = match &mut self.driver {
                        Driver::Process(p) => match p.spawn() {
                            Ok(pid) => Input::Spawned { pid },
                            Err(detail) => Input::SpawnFailed { detail },
                        },
                        Driver::Remote(_) => Input::SpawnFailed {
                            detail: "not a process driver".to_owned(),
                        },
                    };
                    self.machine.handle_event(input, now);
                }
                Effect::Signal { pid, signal } => {
                    if let Driver::Process(p) = &mut self.driver {
                        p.signal(pid, signal);
                    }
                }
                Effect::CollectEvidence {
                    pid,
                    since_ping,
                    interval,
                } => {
                    let text = match &self.driver {
                        Driver::Process(p) => p.evidence(pid, since_ping, interval),
                        Driver::Remote(_) => String::new(),
                    };
                    self.machine.handle_event(Input::Evidence(text), now);
                }
                Effect::Abandon => {
                    if let Driver::Process(p) = &mut self.driver {
                        p.abandon();
                    }
                }
                Effect::Detach => {
                    if let Driver::Process(p) = &mut self.driver {
                        p.detach();
                    }
                }
                Effect::Finish { id, report } => {
                    let Some(permit) = self.permit.take() else {
                        continue;
                    };
                    match self.deps.gate.finish(*permit, report).await {
                        Ok(decision) => {
                            if let Some(w) = self.waiting.iter_mut().find(|w| w.id == id) {
                                w.decision = Some(decision);
                            }
                        }
                        Err(error) => self.deps.events.publish(
                            &self.name,
                            Event::GuardError {
                                source: vigil_core::Source::Manual,
                                error: format!("cannot record the restart's outcome: {error}"),
                            },
                        ),
                    }
                }
                Effect::Settle { id, how } => {
                    if self.pending_id == Some(id) {
                        self.pending_id = None;
                    }
                    let Some(i) = self.waiting.iter().position(|w| w.id == id) else {
                        continue;
                    };
                    let w = self.waiting.swap_remove(i);
                    if let Some(reply) = w.reply {
                        let outcome = match (how, w.decision) {
                            (Settled::Decided, Some(d)) => Outcome::Decided(d),
                            (Settled::Decided, None) => {
                                Outcome::Failed("the decision was not recorded".to_owned())
                            }
                            (Settled::NotAttempted(why), _) => Outcome::NotAttempted(why),
                            (Settled::Failed(why), _) => Outcome::Failed(why),
                            (Settled::Dropped(why), _) => Outcome::Dropped(why),
                            (Settled::Done(report), _) => Outcome::Done(report),
                            (Settled::Held(kind), _) => Outcome::Held(kind),
                        };
                        let _ = reply.send(outcome);
                    }
                }
                Effect::Up => {
                    self.started.replace(Some(self.deps.clock.wall()));
                }
                Effect::Emit(event) => {
                    match &event {
                        Event::Rearmed => self.deps.gate.rearmed(&self.name).await,
                        Event::HoldExpired { .. } => {
                            self.to_record.push(OperatorRow {
                                action: OperatorAction::Expired,
                                at: self.deps.clock.wall(),
                                until: None,
                                caller: None,
                                reason: None,
                                source: self.hold_source.to_owned(),
                            });
                            self.record_operator_actions().await;
                        }
                        Event::ProcessExited { how, .. } | Event::ProcessStopped { how, .. } => {
                            self.detail = how.clone();
                        }
                        Event::RestartDeferred { verdict, .. } => {
                            self.detail = verdict.to_string();
                        }
                        Event::NotRestarted { how, .. } => self.detail = how.clone(),
                        Event::SpawnFailed { detail } => self.detail = detail.clone(),
                        _ => {}
                    }
                    self.deps.events.publish(&self.name, event);
                }
            }
        }
        let hold = self.machine.hold().map(|h| h.kind);
        if hold != self.marked_hold {
            self.deps.events.set_hold(&self.name, hold);
            self.marked_hold = hold;
        }
        // Only a settled state is written: the instants between an exit and its restart
        // cost no write (and no cross-thread wake-up) on the crash-to-restart path.
        if self.background.is_none() {
            self.persist(false);
        }
    }

    /// Writes an exec service's runtime state for `vigil status` when it changed.
    fn persist(&mut self, force: bool) {
        let (Some(ledger), Some(state)) = (&self.deps.ledger, self.machine.process_state()) else {
            return;
        };
        let pid = self.machine.pid();
        let main_pid = self.machine.main_pid();
        let text = self.machine.status_text().map(str::to_owned);
        let key = (state, pid, main_pid, text.clone());
        if !force && self.persisted.as_ref() == Some(&key) {
            return;
        }
        let detail = match state {
            ProcessState::Starting => "waiting for READY=1".to_owned(),
            ProcessState::Running => String::new(),
            ProcessState::LeftRunning => "vigil exited; process left running".to_owned(),
            ProcessState::Stopped if self.shutdown_since.is_some() => {
                if self.root.is_cancelled() {
                    "vigil is shutting down".to_owned()
                } else {
                    "service removed from the configuration".to_owned()
                }
            }
            _ => self.detail.clone(),
        };
        let pid_of = |p: Option<i32>| p.and_then(|p| u32::try_from(p).ok());
        ledger.save_exec_state(ExecStateRow {
            service: self.name.to_string(),
            vigil_pid: std::process::id(),
            pid: pid_of(pid),
            main_pid: pid_of(main_pid),
            state: state.as_str().to_owned(),
            status_text: text,
            since: self.deps.clock.wall(),
            detail,
        });
        self.persisted = Some(key);
    }

    /// The actor is done: the final state is written before the daemon may exit.
    async fn finish(&mut self) {
        for w in self.waiting.drain(..) {
            if let Some(reply) = w.reply {
                let _ = reply.send(Outcome::Dropped("vigil is stopping".to_owned()));
            }
        }
        if self.deps.ledger.is_some() && self.machine.process_state().is_some() {
            self.persist(true);
            if let Some(ledger) = &self.deps.ledger {
                ledger.flush_exec_states().await;
            }
        }
    }
}

/// The guard step of a request, in the background: the driver's start-limit check for
/// automatic restarts, then the guard's lock and decision.
async fn ask_guard(
    gate: Arc<dyn Gate>,
    name: ServiceName,
    policy: GuardPolicy,
    ask: Ask,
    blocked: Option<Arc<dyn RemoteDriver>>,
) -> Box<Done> {
    if let Some(d) = blocked
        && let Some(why) = d.restart_blocked().await
    {
        return Done::input(Input::Guard(GuardAnswer::Blocked(why)));
    }
    match gate.begin(&name, &policy, ask).await {
        Ok(Begun::Refused(decision)) => Box::new(Done {
            input: Input::Guard(GuardAnswer::Decided {
                verdict: decision.verdict.clone(),
                retry_after: decision.retry_after(),
            }),
            permit: None,
            decision: Some(decision),
        }),
        Ok(Begun::Allowed(permit)) => Box::new(Done {
            input: Input::Guard(GuardAnswer::Decided {
                verdict: permit.verdict().clone(),
                retry_after: None,
            }),
            permit: Some(permit),
            decision: None,
        }),
        Err(error) => Done::input(Input::Guard(GuardAnswer::Failed(error.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle actor's task is its `run` future: keep it small, since hundreds of exec
    /// services wait at once (the supervisor it replaced was 1.5 KB; a `select!` over
    /// seven futures in an `async fn` had made it 4.9 KB). A regression guard.
    #[tokio::test]
    async fn an_idle_actor_task_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let config = vigil_config::parse(
            "[services.s]\ndriver = \"exec\"\ncommand = [\"/bin/true\"]\n",
            &dir.path().join("vigil.toml"),
        )
        .unwrap();
        let service = &config.services[0];
        let cx = crate::guard::GuardContext {
            ledger: crate::ledger::LedgerHandle::spawn(dir.path()).unwrap(),
            state_dir: dir.path().to_path_buf(),
            events: Events::log_only(),
            fleet: None,
        };
        let drivers = crate::drivers::DriverContext {
            probes: Arc::new(vigil_checks::ProbeContext::new()),
            state_dir: dir.path().to_path_buf(),
            events: Events::log_only(),
            outputs: Default::default(),
        };
        let driver = crate::drivers::build(service, &drivers).unwrap();
        let deps = Deps {
            gate: Arc::new(cx.clone()),
            events: Events::log_only(),
            clock: Clock::real(),
            ledger: Some(cx.ledger.clone()),
            follow: true,
        };
        let started = Cell::new(None);
        let actor = ServiceActor::new(
            service,
            driver,
            deps,
            started,
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let actor_size = std::mem::size_of::<ServiceActor>();
        let (_tx, rx) = inbox::channel(1);
        let fut = actor.run(rx);
        let size = std::mem::size_of_val(&fut);
        eprintln!(
            "actor future: {size} bytes, ServiceActor {actor_size} bytes, Machine {}",
            std::mem::size_of::<Machine>()
        );
        // Each inbox allocates 32 message slots up front (see ServiceMsg).
        let msg = std::mem::size_of::<ServiceMsg>();
        assert!(msg <= 16, "a service message is {msg} bytes");
        assert!(size < 2048, "actor future is {size} bytes");
    }
}
