//! One service's life between the guard's decisions, as a pure state machine.
//!
//! The daemon's service actor, an exec service's supervision, a restart group's member
//! steps and one-shot `vigil check` all drive this one machine; none re-implements it.
//! It is stepped in quinn-proto's shape: [`Machine::handle_event`] and
//! [`Machine::handle_timeout`] take inputs with `now` passed in, [`Machine::poll_timeout`]
//! says when it next needs to be woken, and [`Machine::poll_effect`] hands out what the
//! edge must do: ask the guard, run a driver operation, spawn or signal a process, record
//! an outcome, answer a requester, emit an [`Event`].
//!
//! It owns:
//! - **one driver operation at a time**: requests wait in order while one is in flight
//!   (repeated automatic requests of the same kind are merged), a stop in progress (an
//!   operation's, a watchdog's, a start timeout's) is never interrupted by a restart, and
//!   a restart that brought up a new instance answers the health requests that waited
//!   behind it (they were about the instance it replaced: asked afterwards, a restart
//!   longer than the cooldown was followed by another);
//! - **the deferred restart**: a refused restart whose source will not ask again (`exit`,
//!   `watchdog`) is kept and asked again exactly when the guard's verdict said it may go
//!   (the cooldown's or backoff's end, the budget's re-arm), never polled, and dropped
//!   only when something else brought the service back;
//! - **the given-up episode**: announced once, ended by an allowed restart, a reset, or
//!   its re-arm instant;
//! - for exec services: the process's readiness (`READY=1`, `start_timeout`), its
//!   watchdog deadline, systemd's restart policy after an exit (`restart_delay`), and stop
//!   escalation (the stop signal, `stop_timeout`, SIGKILL).
//!
//! Must not: read a clock, do I/O, or decide whether a restart is allowed (the guard
//! decides; the machine only acts on the verdict it is given).

pub mod sim;

use std::collections::VecDeque;
use std::time::Duration;

use crate::event::Event;
use crate::outcome::RestartReport;
use crate::restart_policy::{ExitCause, RestartPolicy, SuccessStatus, Termination};
use crate::signal::Signal;
use crate::time::Moment;
use crate::{RestartRequest, Source, Verdict};

/// How long a refused request waits when the guard could not name a moment (its lock was
/// held by another process, or the ledger failed).
pub const RETRY_UNKNOWN: Duration = Duration::from_secs(1);
/// How long a SIGKILLed process may take to die before a stop gives up on it.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// Names a request so its requester can be answered. The edge assigns them (from 1);
/// [`RequestId::INTERNAL`] marks requests the machine makes itself (a deferred restart,
/// the first start), which nobody waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl RequestId {
    pub const INTERNAL: RequestId = RequestId(0);
}

/// What a request wants done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Restart the service (stop what runs, start anew).
    Restart,
    /// Run a check's repair command instead of restarting.
    Repair,
    /// Start it (a group's start phase; the first start of an exec service).
    Start,
    /// Stop it (a group's stop phase).
    Stop,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Restart => "restart",
            Op::Repair => "repair",
            Op::Start => "start",
            Op::Stop => "stop",
        }
    }

    /// Whether a successful run of this operation leaves a (new) instance running.
    fn brings_up(self) -> bool {
        matches!(self, Op::Restart | Op::Start)
    }
}

/// A request to the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: RequestId,
    pub op: Op,
    /// The guard request to pass first; `None` for steps a decision already covers (a
    /// group's stop phase, an exec service's first start, a reload's restart).
    pub guard: Option<RestartRequest>,
}

/// What an operator's hold does to a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldKind {
    /// Down on purpose: stopped, and nothing restarts it (`vigil stop`).
    Stopped,
    /// Running and checked, but automatic actions are suspended (`vigil pause`).
    Paused,
}

impl HoldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::Stopped => "stopped",
            HoldKind::Paused => "paused",
        }
    }
}

/// An operator's hold on a service, until it is lifted or `until` passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub kind: HoldKind,
    pub until: Option<Moment>,
}

/// An operator's command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Stop the service and keep it down (`vigil stop [--for]`).
    Stop { until: Option<Moment> },
    /// Lift a stop and start the service (`vigil start`).
    Start,
    /// Suspend automatic actions (`vigil pause [--for]`).
    Pause { until: Option<Moment> },
    /// Lift a pause (`vigil resume`); what was held back goes through the guard as usual.
    Resume,
}

/// How the service is driven.
#[derive(Clone, Debug, PartialEq)]
pub enum Model {
    /// Through a driver whose operations run to completion with their own deadlines
    /// (command, systemd, docker).
    Remote,
    /// A process Vigil spawns and supervises itself (`driver = "exec"`).
    Process(ProcessSpec),
}

/// The parts of an exec service's definition the lifecycle acts on.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSpec {
    /// The command line, for messages.
    pub command: String,
    pub restart: RestartPolicy,
    pub success: SuccessStatus,
    pub restart_delay: Duration,
    /// `ready = "notify"`: up when `READY=1` arrives, within `start_timeout`.
    pub notify: bool,
    pub start_timeout: Duration,
    pub watchdog: Option<Duration>,
    pub watchdog_signal: Signal,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
}

/// The guard's answer to [`Effect::AskGuard`].
#[derive(Clone, Debug, PartialEq)]
pub enum GuardAnswer {
    /// The verdict. For a refusal, `retry_after` is how long until asking again could be
    /// allowed (`None`: the guard cannot tell, e.g. its lock was held elsewhere). For an
    /// allowed one the edge holds the permit (lock and intent) until [`Effect::Finish`].
    Decided {
        verdict: Verdict,
        retry_after: Option<Duration>,
    },
    /// The driver says an automatic restart cannot succeed now (systemd's start limit);
    /// the guard was not asked.
    Blocked(String),
    /// The guard could not be asked (ledger or lock error).
    Failed(String),
}

/// An sd_notify message from the service's own processes (the edge authenticated the
/// sender and resolved `MAINPID=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notify {
    Ready,
    Watchdog,
    WatchdogTrigger,
    WatchdogUsec(u64),
    ExtendTimeoutUsec(u64),
    Status(String),
    MainPid(i32),
    Stopping,
    Reloading,
}

/// Something the edge observed or was asked to report back.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Request(Request),
    Guard(GuardAnswer),
    /// The driver operation of [`Effect::RunOp`] finished.
    OpDone(RestartReport),
    /// Answer to [`Effect::ProbeRunning`]: whether the service runs (`None`: unknown).
    Running(Option<bool>),
    /// Answers to [`Effect::Spawn`].
    Spawned {
        pid: i32,
    },
    SpawnFailed {
        detail: String,
    },
    /// The exec process's leader ended (reaped, its group emptied).
    Exited {
        termination: Option<Termination>,
    },
    Notify(Notify),
    /// Answer to [`Effect::CollectEvidence`].
    Evidence(String),
    /// The driver's own event source says the service died and nothing else will bring it
    /// back (a container's death).
    Died,
    /// `vigil reset`: the given-up episode is over and a deferred restart may go now.
    Reset,
    /// What a refusal waited for may have ended early (a fleet lease of the service's key
    /// was released): a deferred restart that is not given up asks again now, instead of
    /// at the instant the refusal named.
    Retry,
    /// The exec definition changed on reload: use the new one, restarting the process
    /// with it when `restart` (directly, not through the guard: the operator asked).
    Reconfigure {
        model: Model,
        restart: bool,
    },
    /// Vigil is exiting (or the service was removed): stop the process per its stop
    /// policy, or `leave` it running.
    Shutdown {
        leave: bool,
    },
    /// An operator's command, answered as request `id`.
    Operator {
        id: RequestId,
        command: Operator,
    },
    /// The hold recorded before this process started (a daemon starting, a one-shot
    /// command): it applies, and nothing is stopped or started for it. Before
    /// [`Machine::start`].
    Restore(Hold),
}

/// How a request ended, for its requester.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The guard decided (and, when allowed, the operation ran and was recorded).
    Decided,
    /// Not attempted: the driver says it cannot succeed.
    NotAttempted(String),
    /// The guard could not be asked.
    Failed(String),
    /// Dropped: merged with an equal request already waiting, or Vigil is stopping.
    Dropped(String),
    /// An unguarded step finished (a group's stop phase, a start).
    Done(RestartReport),
    /// Refused: the service is held by an operator (stopped or paused).
    Held(HoldKind),
}

/// What the edge must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Pass `request` through the guard: lock, decide, record. When allowed, keep the
    /// permit until [`Effect::Finish`]. With `check_blocked`, first ask the driver whether
    /// an automatic restart can succeed at all. `relaxed`: the intent may reach the WAL
    /// without an fsync of its own (an exec process's exit or watchdog restart: a power
    /// loss that loses the intent also ended the process it started).
    AskGuard {
        id: RequestId,
        request: RestartRequest,
        evidence: Option<String>,
        check_blocked: bool,
        relaxed: bool,
    },
    /// Run the driver's operation (answer with [`Input::OpDone`]).
    RunOp {
        id: RequestId,
        op: Op,
    },
    /// Ask the driver whether the service runs (answer with [`Input::Running`]).
    ProbeRunning,
    /// Spawn the exec process (answer with [`Input::Spawned`] or [`Input::SpawnFailed`]).
    Spawn,
    /// Send `signal` to the exec process's group.
    Signal {
        pid: i32,
        signal: Signal,
    },
    /// Read what the hung process is doing (answer with [`Input::Evidence`] at once).
    CollectEvidence {
        pid: i32,
        since_ping: Duration,
        interval: Duration,
    },
    /// Stop watching a process that would not die: forget it.
    Abandon,
    /// Leave the process running past Vigil's exit.
    Detach,
    /// An allowed request's operation ended: record the outcome, release the permit.
    Finish {
        id: RequestId,
        report: RestartReport,
    },
    /// Answer the requester (no-op for [`RequestId::INTERNAL`]).
    Settle {
        id: RequestId,
        how: Settled,
    },
    /// The service is up as of now (a restart or start succeeded, or `READY=1`): the
    /// instance the checks watch is a new one.
    Up,
    Emit(Event),
}

/// An exec service's process as `vigil status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessState {
    Starting,
    Running,
    Stopping,
    /// Exited; a restart is waiting (restart_delay, cooldown, backoff, lock).
    RestartPending,
    /// Exited; the restart waits for the budget to re-arm.
    GivenUp,
    /// Exited, and the restart policy does not restart it.
    Exited,
    /// Stopped by Vigil (shutdown, removal, a group's stop phase).
    Stopped,
    LeftRunning,
}

impl ProcessState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessState::Starting => "starting",
            ProcessState::Running => "running",
            ProcessState::Stopping => "stopping",
            ProcessState::RestartPending => "restart-pending",
            ProcessState::GivenUp => "given-up",
            ProcessState::Exited => "exited",
            ProcessState::Stopped => "stopped",
            ProcessState::LeftRunning => "left-running",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum StopCause {
    /// The watchdog deadline passed; the evidence arrives with [`Input::Evidence`].
    Watchdog {
        evidence: Option<String>,
    },
    StartTimeout,
    /// Vigil stops it on purpose (an operation, a reload, the shutdown).
    Requested,
}

#[derive(Clone, Debug, PartialEq)]
struct Stopping {
    cause: StopCause,
    /// When the stop signal was sent.
    since: Moment,
    /// SIGKILL was sent.
    killed: bool,
    /// When SIGKILL follows (`None`: sent already, or not yet armed).
    kill_at: Option<Moment>,
    /// When a requested stop stops waiting for a process SIGKILL did not end.
    give_up_at: Option<Moment>,
}

#[derive(Clone, Debug, PartialEq)]
struct Instance {
    pid: i32,
    spawned: Moment,
    ready: bool,
    start_deadline: Option<Moment>,
    watchdog: Option<Duration>,
    last_ping: Moment,
    watchdog_deadline: Option<Moment>,
    main_pid: Option<i32>,
    stopping: Option<Stopping>,
}

/// Why no process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Down {
    Never,
    Exited,
    Stopped,
    Left,
}

#[derive(Clone, Debug, PartialEq)]
enum Process {
    /// Not an exec service.
    Remote,
    Down(Down),
    Up(Box<Instance>),
}

/// Where the operation in flight stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for the guard's answer.
    Guard,
    /// A deferred restart of a remote service: waiting to hear whether it runs again.
    Probe,
    /// Waiting for [`Input::OpDone`].
    Driver,
    /// Waiting for the process Vigil is stopping to exit.
    Stopping,
    /// Waiting for [`Input::Spawned`].
    Spawning,
}

#[derive(Clone, Debug, PartialEq)]
struct InFlight {
    id: RequestId,
    op: Op,
    guard: Option<RestartRequest>,
    /// The guard allowed it: a permit is held and [`Effect::Finish`] is owed.
    permitted: bool,
    stage: Stage,
    evidence: Option<String>,
}

/// A refused restart kept until the guard allows it.
#[derive(Clone, Debug, PartialEq)]
struct Deferred {
    request: RestartRequest,
    at: Moment,
    evidence: Option<String>,
    /// The last refusal was a denial: the budget is spent until `at`.
    given_up: bool,
}

/// One service's lifecycle.
#[derive(Clone, Debug)]
pub struct Machine {
    model: Model,
    now: Moment,
    queue: VecDeque<Request>,
    op: Option<InFlight>,
    deferred: Option<Deferred>,
    /// The announced given-up episode lasts until this instant (its re-arm).
    episode: Option<Moment>,
    /// An automatic restart was refused as not attemptable; later refusals of the same
    /// episode are quiet.
    blocked_announced: bool,
    process: Process,
    /// An operator's stop or pause.
    hold: Option<Hold>,
    /// Requests that are an operator's stop or start (their end is an event).
    operator_ops: Vec<RequestId>,
    last_exit: Option<Moment>,
    status_text: Option<String>,
    shutting_down: bool,
    finished: bool,
    effects: VecDeque<Effect>,
}

impl Machine {
    /// A machine for a service driven per `model`. An exec service is started with
    /// [`Machine::start`].
    pub fn new(model: Model, now: Moment) -> Machine {
        let process = match model {
            Model::Remote => Process::Remote,
            Model::Process(_) => Process::Down(Down::Never),
        };
        Machine {
            model,
            now,
            queue: VecDeque::new(),
            op: None,
            deferred: None,
            episode: None,
            blocked_announced: false,
            process,
            hold: None,
            operator_ops: Vec::new(),
            last_exit: None,
            status_text: None,
            shutting_down: false,
            finished: false,
            effects: VecDeque::new(),
        }
    }

    /// Starts an exec service's process (unguarded: the daemon starting, not a restart),
    /// unless an operator's stop holds it down.
    pub fn start(&mut self, now: Moment) {
        if self.hold.is_some_and(|h| h.kind == HoldKind::Stopped) {
            self.process = Process::Down(Down::Stopped);
            return;
        }
        self.handle_event(
            Input::Request(Request {
                id: RequestId::INTERNAL,
                op: Op::Start,
                guard: None,
            }),
            now,
        );
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The process's pid while one runs.
    pub fn pid(&self) -> Option<i32> {
        match &self.process {
            Process::Up(i) => Some(i.pid),
            _ => None,
        }
    }

    pub fn main_pid(&self) -> Option<i32> {
        match &self.process {
            Process::Up(i) => i.main_pid,
            _ => None,
        }
    }

    /// The last `STATUS=` text of the current process.
    pub fn status_text(&self) -> Option<&str> {
        self.status_text.as_deref()
    }

    /// An exec service's state for `vigil status` (`None` for other drivers).
    pub fn process_state(&self) -> Option<ProcessState> {
        match &self.process {
            Process::Remote => None,
            Process::Up(i) => Some(if i.stopping.is_some() {
                ProcessState::Stopping
            } else if i.ready {
                ProcessState::Running
            } else {
                ProcessState::Starting
            }),
            Process::Down(Down::Left) => Some(ProcessState::LeftRunning),
            Process::Down(down) => Some(match &self.deferred {
                Some(d) if d.given_up => ProcessState::GivenUp,
                Some(_) => ProcessState::RestartPending,
                None if *down == Down::Stopped => ProcessState::Stopped,
                None => ProcessState::Exited,
            }),
        }
    }

    /// Whether a restart is waiting for the guard (and until when).
    pub fn deferred_until(&self) -> Option<Moment> {
        self.deferred.as_ref().map(|d| d.at)
    }

    /// Whether the announced given-up episode lasts (and until when).
    pub fn given_up_until(&self) -> Option<Moment> {
        self.episode
    }

    /// The operator's hold, if any.
    pub fn hold(&self) -> Option<Hold> {
        self.hold
    }

    /// Whether an operation is in flight.
    pub fn busy(&self) -> bool {
        self.op.is_some()
    }

    /// After [`Input::Shutdown`]: nothing is left to do.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next effect, in order.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        let effect = self.effects.pop_front();
        if self.effects.is_empty() && self.effects.capacity() > 0 {
            // Drained: give the buffer back. An effect is ~190 bytes and the first burst
            // grows the queue to four, so each idle service kept 768 bytes it no longer
            // needed (a fifth of issue 11's memory regression with 500 exec services,
            // measured with heaptrack); one allocation per burst costs far less.
            self.effects = VecDeque::new();
        }
        effect
    }

    /// When [`Machine::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Moment> {
        let mut next: Option<Moment> = None;
        let mut consider = |t: Option<Moment>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.episode);
        consider(self.hold.and_then(|h| h.until));
        if self.op.is_none() && !self.stopping() && !self.shutting_down && self.hold.is_none() {
            consider(self.deferred.as_ref().map(|d| d.at));
        }
        if let Process::Up(i) = &self.process {
            match &i.stopping {
                Some(s) => {
                    consider(s.kill_at);
                    consider(s.give_up_at);
                }
                None => {
                    if !i.ready {
                        consider(i.start_deadline);
                    }
                    consider(i.watchdog_deadline);
                }
            }
        }
        next
    }

    fn stopping(&self) -> bool {
        matches!(&self.process, Process::Up(i) if i.stopping.is_some())
    }

    fn emit(&mut self, event: Event) {
        self.effects.push_back(Effect::Emit(event));
    }

    fn settle(&mut self, id: RequestId, how: Settled) {
        self.effects.push_back(Effect::Settle { id, how });
    }

    fn process_spec(&self) -> Option<&ProcessSpec> {
        match &self.model {
            Model::Process(p) => Some(p),
            Model::Remote => None,
        }
    }

    /// Steps the machine with one input observed at `now`.
    pub fn handle_event(&mut self, input: Input, now: Moment) {
        self.now = self.now.max(now);
        match input {
            Input::Request(request) => self.on_request(request),
            Input::Guard(answer) => self.on_guard(answer),
            Input::OpDone(report) => self.on_op_done(report),
            Input::Running(running) => self.on_running(running),
            Input::Spawned { pid } => self.on_spawned(pid),
            Input::SpawnFailed { detail } => self.on_spawn_failed(detail),
            Input::Exited { termination } => self.on_exited(termination),
            Input::Notify(msg) => self.on_notify(msg),
            Input::Evidence(text) => self.on_evidence(text),
            Input::Died => self.on_request(Request {
                id: RequestId::INTERNAL,
                op: Op::Restart,
                guard: Some(RestartRequest::new(Source::Exit)),
            }),
            Input::Reset => {
                self.episode = None;
                if let Some(d) = &mut self.deferred {
                    d.at = self.now;
                    d.given_up = false;
                }
            }
            Input::Retry => {
                if let Some(d) = &mut self.deferred
                    && !d.given_up
                {
                    d.at = d.at.min(self.now);
                }
            }
            Input::Reconfigure { model, restart } => self.on_reconfigure(model, restart),
            Input::Shutdown { leave } => self.on_shutdown(leave),
            Input::Operator { id, command } => self.on_operator(id, command),
            Input::Restore(hold) => self.hold = Some(hold),
        }
        self.advance();
    }

    /// Runs whatever is due at `now` (the instant [`Machine::poll_timeout`] named, or
    /// later).
    pub fn handle_timeout(&mut self, now: Moment) {
        self.now = self.now.max(now);
        let now = self.now;
        if self.episode.is_some_and(|t| t <= now) {
            self.episode = None;
            self.emit(Event::Rearmed);
        }
        if let Some(hold) = self.hold.filter(|h| h.until.is_some_and(|t| t <= now)) {
            self.emit(Event::HoldExpired {
                kind: hold.kind.as_str(),
            });
            self.lift(hold.kind, RequestId::INTERNAL);
        }
        let mut kill = None;
        let mut give_up = None;
        let mut start_timeout = None;
        let mut watchdog = None;
        if let Process::Up(i) = &mut self.process {
            match &mut i.stopping {
                Some(s) => {
                    if s.kill_at.is_some_and(|t| t <= now) {
                        s.kill_at = None;
                        s.killed = true;
                        if s.cause == StopCause::Requested {
                            s.give_up_at = Some(now + KILL_GRACE);
                        }
                        kill = Some(i.pid);
                    } else if s.give_up_at.is_some_and(|t| t <= now) {
                        s.give_up_at = None;
                        give_up = Some(i.pid);
                    }
                }
                None => {
                    if !i.ready && i.start_deadline.is_some_and(|t| t <= now) {
                        i.start_deadline = None;
                        start_timeout = Some(i.pid);
                    } else if i.watchdog_deadline.is_some_and(|t| t <= now) {
                        i.watchdog_deadline = None;
                        watchdog = Some((
                            i.main_pid.unwrap_or(i.pid),
                            now.saturating_since(i.last_ping),
                            i.watchdog.unwrap_or_default(),
                        ));
                    }
                }
            }
        }
        let spec = self.process_spec().cloned();
        if let (Some(pid), Some(spec)) = (kill, &spec) {
            self.emit(Event::ProcessKill {
                pid,
                after: spec.stop_timeout,
            });
            self.effects.push_back(Effect::Signal {
                pid,
                signal: Signal::KILL,
            });
        }
        if let Some(pid) = give_up {
            self.emit(Event::ProcessUnkillable {
                pid,
                grace: KILL_GRACE,
            });
            self.effects.push_back(Effect::Abandon);
            self.on_exited(None);
        }
        if let (Some(pid), Some(spec)) = (start_timeout, &spec) {
            self.emit(Event::StartTimeout {
                pid,
                timeout: spec.start_timeout,
                signal: spec.stop_signal,
            });
            self.effects.push_back(Effect::Signal {
                pid,
                signal: spec.stop_signal,
            });
            if let Process::Up(i) = &mut self.process {
                i.stopping = Some(Stopping {
                    cause: StopCause::StartTimeout,
                    since: now,
                    killed: false,
                    kill_at: Some(now + spec.stop_timeout),
                    give_up_at: None,
                });
            }
        }
        if let Some((pid, since_ping, interval)) = watchdog {
            if let Process::Up(i) = &mut self.process {
                i.stopping = Some(Stopping {
                    cause: StopCause::Watchdog { evidence: None },
                    since: now,
                    killed: false,
                    kill_at: None,
                    give_up_at: None,
                });
            }
            self.effects.push_back(Effect::CollectEvidence {
                pid,
                since_ping,
                interval,
            });
        }
        self.advance();
    }

    fn on_request(&mut self, request: Request) {
        if self.shutting_down {
            self.settle(request.id, Settled::Dropped("vigil is stopping".to_owned()));
            return;
        }
        if let Some(hold) = self.hold
            && self.held_back(&request, hold.kind)
        {
            if let Some(g) = request.guard {
                self.emit(Event::RestartHeld {
                    source: g.source,
                    kind: hold.kind.as_str(),
                });
            }
            self.settle(request.id, Settled::Held(hold.kind));
            return;
        }
        // Automatic requests repeat on their own: one of a kind waiting is enough.
        let automatic = request
            .guard
            .is_some_and(|g| g.source != Source::Manual && !g.forced);
        if automatic
            && self
                .queue
                .iter()
                .any(|q| q.op == request.op && q.guard == request.guard)
        {
            self.settle(
                request.id,
                Settled::Dropped("an equal request is already waiting".to_owned()),
            );
            return;
        }
        self.queue.push_back(request);
    }

    /// Starts whatever can start: the next queued request, or a deferred restart that is
    /// due, when no operation is in flight and no stop is in progress.
    fn advance(&mut self) {
        loop {
            if self.op.is_some() || self.stopping() || self.finished {
                return;
            }
            if self.shutting_down {
                self.finish_shutdown();
                return;
            }
            if let Some(request) = self.queue.pop_front() {
                self.begin(request, None);
                continue;
            }
            if self.hold.is_none() && self.deferred.as_ref().is_some_and(|d| d.at <= self.now) {
                let Some(d) = self.deferred.take() else {
                    return;
                };
                let request = Request {
                    id: RequestId::INTERNAL,
                    op: Op::Restart,
                    guard: Some(d.request),
                };
                if matches!(self.process, Process::Remote) {
                    // Nothing tells Vigil when a remote service comes back by itself: ask
                    // the driver before asking the guard.
                    self.op = Some(InFlight {
                        id: RequestId::INTERNAL,
                        op: Op::Restart,
                        guard: Some(d.request),
                        permitted: false,
                        stage: Stage::Probe,
                        evidence: d.evidence,
                    });
                    self.effects.push_back(Effect::ProbeRunning);
                    return;
                }
                self.begin(request, d.evidence);
                continue;
            }
            return;
        }
    }

    fn begin(&mut self, request: Request, evidence: Option<String>) {
        let Some(guard) = request.guard else {
            self.op = Some(InFlight {
                id: request.id,
                op: request.op,
                guard: None,
                permitted: false,
                stage: Stage::Driver,
                evidence: None,
            });
            self.perform();
            return;
        };
        let exec = matches!(self.model, Model::Process(_));
        let check_blocked =
            request.op != Op::Repair && guard.source != Source::Manual && !guard.forced && !exec;
        let relaxed = exec && request.op == Op::Restart && guard.source.is_deferred_when_skipped();
        self.op = Some(InFlight {
            id: request.id,
            op: request.op,
            guard: Some(guard),
            permitted: false,
            stage: Stage::Guard,
            evidence: evidence.clone(),
        });
        self.effects.push_back(Effect::AskGuard {
            id: request.id,
            request: guard,
            evidence,
            check_blocked,
            relaxed,
        });
    }

    fn on_running(&mut self, running: Option<bool>) {
        let Some(op) = self.op.take_if(|op| op.stage == Stage::Probe) else {
            return;
        };
        let source = op.guard.map_or(Source::Exit, |g| g.source);
        if running == Some(true) {
            self.emit(Event::DeferredDropped { source });
            return;
        }
        self.begin(
            Request {
                id: op.id,
                op: op.op,
                guard: op.guard,
            },
            op.evidence,
        );
    }

    fn on_guard(&mut self, answer: GuardAnswer) {
        let Some(op) = self.op.take_if(|op| op.stage == Stage::Guard) else {
            return;
        };
        let Some(request) = op.guard else {
            return;
        };
        match answer {
            GuardAnswer::Blocked(why) => {
                let first = !self.blocked_announced;
                self.blocked_announced = true;
                self.emit(Event::RestartNotAttempted {
                    source: request.source,
                    why: why.clone(),
                    first,
                });
                self.settle(op.id, Settled::NotAttempted(why));
            }
            GuardAnswer::Failed(error) => {
                self.emit(Event::GuardError {
                    source: request.source,
                    error: error.clone(),
                });
                if op.op == Op::Restart && request.source.is_deferred_when_skipped() {
                    self.defer(request, RETRY_UNKNOWN, op.evidence, false, None);
                }
                self.settle(op.id, Settled::Failed(error));
            }
            GuardAnswer::Decided {
                verdict,
                retry_after,
            } => {
                if verdict.is_allowed() {
                    if !request.forced && request.source != Source::Manual {
                        self.blocked_announced = false;
                    }
                    self.episode = None;
                    if op.op.brings_up() {
                        // Whatever brings the service back settles a pending restart.
                        self.deferred = None;
                    }
                    self.op = Some(InFlight {
                        permitted: true,
                        stage: Stage::Driver,
                        ..op
                    });
                    self.perform();
                    return;
                }
                let denied = matches!(verdict, Verdict::Denied(_));
                if denied {
                    let announced = self.episode.is_some_and(|until| self.now < until);
                    let until = self.now + retry_after.unwrap_or(RETRY_UNKNOWN);
                    if !announced {
                        self.emit(Event::GivenUp {
                            request,
                            verdict: verdict.clone(),
                        });
                    }
                    self.episode = Some(self.episode.map_or(until, |e| e.max(until)));
                }
                if op.op == Op::Restart && request.source.is_deferred_when_skipped() {
                    let wait = retry_after.unwrap_or(RETRY_UNKNOWN);
                    self.defer(request, wait, op.evidence, denied, Some(verdict));
                }
                self.settle(op.id, Settled::Decided);
            }
        }
    }

    fn defer(
        &mut self,
        request: RestartRequest,
        wait: Duration,
        evidence: Option<String>,
        given_up: bool,
        verdict: Option<Verdict>,
    ) {
        let wait = wait.max(Duration::from_millis(1));
        if let Some(verdict) = verdict {
            self.emit(Event::RestartDeferred {
                source: request.source,
                wait,
                verdict,
            });
        }
        self.deferred = Some(Deferred {
            request,
            at: self.now + wait,
            evidence,
            given_up,
        });
    }

    /// Performs the operation in flight (the guard allowed it, or none was needed).
    fn perform(&mut self) {
        let pid = self.pid();
        let remote = matches!(self.model, Model::Remote);
        let Some(op) = &mut self.op else {
            return;
        };
        let (id, kind) = (op.id, op.op);
        if self.shutting_down && !remote && kind.brings_up() {
            // Vigil is stopping its processes: starting one now would only be stopped.
            self.complete(RestartReport {
                ok: false,
                detail: "not performed: vigil is stopping".to_owned(),
                duration: Duration::ZERO,
                action_required: None,
            });
            if self.op.is_none() {
                self.finish_shutdown();
            }
            return;
        }
        if remote || kind == Op::Repair {
            op.stage = Stage::Driver;
            self.effects.push_back(Effect::RunOp { id, op: kind });
            return;
        }
        match (kind, pid) {
            (Op::Restart | Op::Stop, Some(_)) => {
                let why = match (kind, op.guard) {
                    (Op::Stop, _) if self.hold.is_some_and(|h| h.kind == HoldKind::Stopped) => {
                        "stopped by an operator".to_owned()
                    }
                    (Op::Stop, _) => "stop requested".to_owned(),
                    (_, Some(g)) => format!("restart requested by {}", g.source),
                    (_, None) => "definition changed on reload".to_owned(),
                };
                op.stage = Stage::Stopping;
                self.stop_process(&why);
            }
            (Op::Restart | Op::Start, None) => {
                op.stage = Stage::Spawning;
                self.effects.push_back(Effect::Spawn);
            }
            (Op::Start, Some(pid)) => {
                let report = RestartReport {
                    ok: true,
                    detail: format!("already running (pid {pid})"),
                    duration: Duration::ZERO,
                    action_required: None,
                };
                self.complete(report);
            }
            (Op::Stop, None) => {
                let report = RestartReport {
                    ok: true,
                    detail: "not running".to_owned(),
                    duration: Duration::ZERO,
                    action_required: None,
                };
                self.complete(report);
            }
            (Op::Repair, _) => {}
        }
    }

    /// The operation in flight ended with `report`.
    fn complete(&mut self, report: RestartReport) {
        let Some(op) = self.op.take() else {
            return;
        };
        if report.ok && op.op.brings_up() {
            self.drop_answered_health_requests();
        }
        if report.ok && op.op.brings_up() && !matches!(self.model, Model::Process(_)) {
            self.effects.push_back(Effect::Up);
        }
        if let Some(i) = self.operator_ops.iter().position(|id| *id == op.id) {
            self.operator_ops.swap_remove(i);
            self.emit(Event::OperatorFinished {
                op: op.op.as_str(),
                report: report.clone(),
            });
        }
        if op.permitted {
            self.effects.push_back(Effect::Finish {
                id: op.id,
                report: report.clone(),
            });
            self.settle(op.id, Settled::Decided);
        } else {
            self.settle(op.id, Settled::Done(report));
        }
    }

    /// A (re)start just brought up a new instance: the health requests waiting behind it
    /// were raised by checks of the instance it replaced, and it answers them. Asked
    /// afterwards, a restart that outlasted the cooldown would be allowed at once and the
    /// service restarted twice (or more) for one failure. A check that still fails asks
    /// again, about the new instance (its loop voids runs that straddled the restart).
    fn drop_answered_health_requests(&mut self) {
        let (answered, waiting): (VecDeque<Request>, VecDeque<Request>) =
            std::mem::take(&mut self.queue).into_iter().partition(|r| {
                r.op == Op::Restart
                    && r.guard
                        .is_some_and(|g| g.source == Source::Health && !g.forced)
            });
        self.queue = waiting;
        for r in answered {
            self.settle(
                r.id,
                Settled::Dropped("the restart that just finished answers it".to_owned()),
            );
        }
    }

    fn on_op_done(&mut self, report: RestartReport) {
        if self.op.as_ref().is_some_and(|op| op.stage == Stage::Driver) {
            self.complete(report);
            if self.shutting_down {
                self.finish_shutdown();
            }
        }
    }

    /// Sends the stop signal and arms the escalation.
    fn stop_process(&mut self, why: &str) {
        let Some(spec) = self.process_spec().cloned() else {
            return;
        };
        let now = self.now;
        let Process::Up(i) = &mut self.process else {
            return;
        };
        let pid = i.pid;
        match &mut i.stopping {
            // A stop already under way (watchdog, start timeout) keeps its escalation; it
            // now ends in the requested operation.
            Some(s) => {
                s.cause = StopCause::Requested;
                return;
            }
            None => {
                i.stopping = Some(Stopping {
                    cause: StopCause::Requested,
                    since: now,
                    killed: false,
                    kill_at: Some(now + spec.stop_timeout),
                    give_up_at: None,
                });
            }
        }
        self.emit(Event::ProcessStopping {
            pid,
            why: why.to_owned(),
            signal: spec.stop_signal,
            timeout: spec.stop_timeout,
        });
        self.effects.push_back(Effect::Signal {
            pid,
            signal: spec.stop_signal,
        });
    }

    fn on_spawned(&mut self, pid: i32) {
        let Some(spec) = self.process_spec().cloned() else {
            return;
        };
        let now = self.now;
        let watchdog = spec.watchdog;
        self.process = Process::Up(Box::new(Instance {
            pid,
            spawned: now,
            ready: !spec.notify,
            start_deadline: spec.notify.then(|| now + spec.start_timeout),
            watchdog,
            last_ping: now,
            watchdog_deadline: if spec.notify {
                None
            } else {
                watchdog.map(|w| now + w)
            },
            main_pid: None,
            stopping: None,
        }));
        self.status_text = None;
        let since_exit = self.last_exit.take().map(|t| now.saturating_since(t));
        self.emit(Event::ProcessStarted {
            pid,
            command: spec.command.clone(),
            since_exit,
        });
        if !spec.notify {
            self.effects.push_back(Effect::Up);
        }
        if self
            .op
            .as_ref()
            .is_some_and(|op| op.stage == Stage::Spawning)
        {
            self.complete(RestartReport {
                ok: true,
                detail: format!("started pid {pid}: {}", spec.command),
                duration: Duration::ZERO,
                action_required: None,
            });
        }
    }

    fn on_spawn_failed(&mut self, detail: String) {
        self.emit(Event::SpawnFailed {
            detail: detail.clone(),
        });
        if self
            .op
            .as_ref()
            .is_some_and(|op| op.stage == Stage::Spawning)
        {
            self.complete(RestartReport {
                ok: false,
                detail: detail.clone(),
                duration: Duration::ZERO,
                action_required: None,
            });
        }
        // The old process is gone and the new one did not start: as an exit that the
        // restart policy may retry.
        self.process = Process::Down(Down::Exited);
        self.after_exit(ExitCause::UncleanExitCode, &detail, None);
    }

    fn on_exited(&mut self, termination: Option<Termination>) {
        let Some(spec) = self.process_spec().cloned() else {
            return;
        };
        let Process::Up(inst) = std::mem::replace(&mut self.process, Process::Down(Down::Exited))
        else {
            return;
        };
        let now = self.now;
        self.last_exit = Some(now);
        let how = match termination {
            Some(t) => t.to_string(),
            None => "ended (status unknown)".to_owned(),
        };
        let stopping = inst.stopping;
        let stop = stopping.as_ref().map(|s| s.cause.clone());
        if stop == Some(StopCause::Requested) {
            self.process = Process::Down(Down::Stopped);
            let (killed, since) = stopping.map_or((false, now), |s| (s.killed, s.since));
            self.emit(Event::ProcessStopped {
                pid: inst.pid,
                how: how.clone(),
                killed,
                took: now.saturating_since(since),
            });
            match self.op.as_ref().map(|op| (op.stage, op.op)) {
                Some((Stage::Stopping, Op::Restart | Op::Start)) => {
                    if let Some(op) = &mut self.op {
                        op.stage = Stage::Spawning;
                    }
                    self.effects.push_back(Effect::Spawn);
                }
                Some((Stage::Stopping, _)) => self.complete(RestartReport {
                    ok: true,
                    detail: format!("stopped pid {}: {how}", inst.pid),
                    duration: Duration::ZERO,
                    action_required: None,
                }),
                _ => {}
            }
            if self.shutting_down && self.op.is_none() {
                self.finish_shutdown();
            }
            return;
        }
        let (cause, evidence) = match stop {
            Some(StopCause::Watchdog { evidence }) => (ExitCause::Watchdog, evidence),
            Some(StopCause::StartTimeout) => (ExitCause::Timeout, None),
            _ => (
                termination.map_or(ExitCause::UncleanExitCode, |t| spec.success.classify(t)),
                None,
            ),
        };
        self.emit(Event::ProcessExited {
            pid: inst.pid,
            how: how.clone(),
            cause,
            uptime: now.saturating_since(inst.spawned),
        });
        self.after_exit(cause, &how, evidence);
    }

    /// Applies the restart policy to an exit.
    fn after_exit(&mut self, cause: ExitCause, how: &str, evidence: Option<String>) {
        let Some(spec) = self.process_spec().cloned() else {
            return;
        };
        if self.shutting_down || self.hold.is_some_and(|h| h.kind == HoldKind::Stopped) {
            return;
        }
        if spec.restart.restarts_after(cause) {
            let source = if cause == ExitCause::Watchdog {
                Source::Watchdog
            } else {
                Source::Exit
            };
            self.deferred = Some(Deferred {
                request: RestartRequest::new(source),
                at: self.now + spec.restart_delay,
                evidence,
                given_up: false,
            });
        } else {
            self.emit(Event::NotRestarted {
                policy: spec.restart,
                cause,
                how: how.to_owned(),
            });
        }
    }

    fn on_notify(&mut self, msg: Notify) {
        let now = self.now;
        let Process::Up(i) = &mut self.process else {
            return;
        };
        match msg {
            Notify::Ready => {
                if !i.ready {
                    i.ready = true;
                    i.start_deadline = None;
                    i.last_ping = now;
                    i.watchdog_deadline = i.watchdog.map(|w| now + w);
                    let (pid, after) = (i.pid, now.saturating_since(i.spawned));
                    self.emit(Event::ProcessReady { pid, after });
                    self.effects.push_back(Effect::Up);
                }
            }
            Notify::Watchdog => {
                i.last_ping = now;
                if i.ready && i.stopping.is_none() {
                    i.watchdog_deadline = i.watchdog.map(|w| now + w);
                }
            }
            Notify::WatchdogTrigger => {
                if i.stopping.is_none() {
                    i.watchdog_deadline = Some(now);
                }
            }
            Notify::WatchdogUsec(n) => {
                i.watchdog = (n > 0).then(|| Duration::from_micros(n));
                i.last_ping = now;
                i.watchdog_deadline = if i.ready {
                    i.watchdog.map(|w| now + w)
                } else {
                    None
                };
            }
            Notify::ExtendTimeoutUsec(n) => {
                if !i.ready {
                    i.start_deadline = Some(now + Duration::from_micros(n));
                } else if let Some(s) = &mut i.stopping
                    && s.kill_at.is_some()
                {
                    s.kill_at = Some(now + Duration::from_micros(n));
                }
            }
            Notify::Status(text) => self.status_text = Some(text),
            Notify::MainPid(pid) => i.main_pid = Some(pid),
            Notify::Stopping => self.emit(Event::Announced { what: "STOPPING=1" }),
            Notify::Reloading => self.emit(Event::Announced {
                what: "RELOADING=1",
            }),
        }
    }

    fn on_evidence(&mut self, evidence: String) {
        let Some(spec) = self.process_spec().cloned() else {
            return;
        };
        let now = self.now;
        let Process::Up(i) = &mut self.process else {
            return;
        };
        let Some(s) = &mut i.stopping else {
            return;
        };
        let StopCause::Watchdog { evidence: slot } = &mut s.cause else {
            return;
        };
        if slot.is_some() {
            return;
        }
        *slot = Some(evidence.clone());
        s.kill_at = Some(now + spec.stop_timeout);
        let pid = i.pid;
        self.emit(Event::WatchdogTimeout {
            pid,
            signal: spec.watchdog_signal,
            evidence,
        });
        self.effects.push_back(Effect::Signal {
            pid,
            signal: spec.watchdog_signal,
        });
    }

    fn on_reconfigure(&mut self, model: Model, restart: bool) {
        self.model = model;
        if !restart || !matches!(self.model, Model::Process(_)) {
            return;
        }
        self.emit(Event::DefinitionChanged);
        // Ahead of anything queued: the running process is the old definition.
        self.queue.push_front(Request {
            id: RequestId::INTERNAL,
            op: Op::Restart,
            guard: None,
        });
    }

    /// Whether a hold of `kind` refuses `request`: a stop refuses everything but the
    /// operator's own steps; a pause refuses restarts and repairs (what an operator asks
    /// for too: `vigil resume` first).
    fn held_back(&self, request: &Request, kind: HoldKind) -> bool {
        match (kind, request.guard) {
            // A group's stop phase of a stopped member has nothing to do but succeeds.
            (HoldKind::Stopped, None) => request.op != Op::Stop,
            (_, Some(_)) => true,
            (HoldKind::Paused, None) => false,
        }
    }

    fn on_operator(&mut self, id: RequestId, command: Operator) {
        if self.shutting_down {
            self.settle(id, Settled::Dropped("vigil is stopping".to_owned()));
            return;
        }
        match command {
            Operator::Stop { until } => {
                self.hold = Some(Hold {
                    kind: HoldKind::Stopped,
                    until,
                });
                self.deferred = None;
                self.drop_held_requests(HoldKind::Stopped);
                // After whatever runs now (a stop in progress is never interrupted).
                self.operator_ops.push(id);
                self.queue.push_front(Request {
                    id,
                    op: Op::Stop,
                    guard: None,
                });
            }
            Operator::Pause { .. } if self.hold.is_some_and(|h| h.kind == HoldKind::Stopped) => {
                // Stopped is more than paused: it stays stopped until started.
                self.settle(id, Settled::Held(HoldKind::Stopped));
            }
            Operator::Pause { until } => {
                self.hold = Some(Hold {
                    kind: HoldKind::Paused,
                    until,
                });
                self.drop_held_requests(HoldKind::Paused);
                self.settle(
                    id,
                    Settled::Done(RestartReport {
                        ok: true,
                        detail: "paused: automatic actions are suspended".to_owned(),
                        duration: Duration::ZERO,
                        action_required: None,
                    }),
                );
            }
            Operator::Start => self.lift(HoldKind::Stopped, id),
            Operator::Resume => self.lift(HoldKind::Paused, id),
        }
    }

    /// Lifts a hold of `kind` (a start also starts the service); answers `id`.
    fn lift(&mut self, kind: HoldKind, id: RequestId) {
        let was = self.hold.filter(|h| h.kind == kind);
        if was.is_some() {
            self.hold = None;
        }
        match kind {
            HoldKind::Stopped => {
                self.operator_ops.push(id);
                self.queue.push_front(Request {
                    id,
                    op: Op::Start,
                    guard: None,
                });
            }
            HoldKind::Paused => {
                // What an exit left waiting goes through the guard now.
                if let Some(d) = &mut self.deferred {
                    d.at = d.at.min(self.now);
                }
                let detail = if was.is_some() {
                    "resumed: automatic actions go through the guard again"
                } else {
                    "not paused"
                };
                self.settle(
                    id,
                    Settled::Done(RestartReport {
                        ok: true,
                        detail: detail.to_owned(),
                        duration: Duration::ZERO,
                        action_required: None,
                    }),
                );
            }
        }
    }

    /// Answers the waiting requests a new hold refuses.
    fn drop_held_requests(&mut self, kind: HoldKind) {
        let waiting = std::mem::take(&mut self.queue);
        for request in waiting {
            if self.held_back(&request, kind) {
                self.settle(request.id, Settled::Held(kind));
            } else {
                self.queue.push_back(request);
            }
        }
    }

    fn on_shutdown(&mut self, leave: bool) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        for request in std::mem::take(&mut self.queue) {
            self.settle(request.id, Settled::Dropped("vigil is stopping".to_owned()));
        }
        self.deferred = None;
        if leave && let Process::Up(i) = &self.process {
            let pid = i.pid;
            self.process = Process::Down(Down::Left);
            self.effects.push_back(Effect::Detach);
            self.emit(Event::LeftRunning { pid });
        }
        // A deferred restart's probe is abandoned. An operation waiting on the guard or
        // running in the driver finishes (the edge bounds how long it waits): an allowed
        // one holds a permit and its intent is recorded, so it must end with an outcome.
        if self.op.as_ref().is_some_and(|op| op.stage == Stage::Probe)
            && let Some(op) = self.op.take()
        {
            self.settle(op.id, Settled::Dropped("vigil is stopping".to_owned()));
        }
    }

    fn finish_shutdown(&mut self) {
        if self.op.is_some() {
            return;
        }
        if self.pid().is_some() {
            if !self.stopping() {
                self.stop_process("vigil is shutting down");
            }
            return;
        }
        self.finished = true;
    }
}
