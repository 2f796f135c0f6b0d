//! Scenario scripts for the lifecycle: a small text of timed events in, a trace out.
//!
//! The pieces here are shared by two runners that must give the same trace for the same
//! script: [`run`] steps the pure [`Machine`] directly (vigil-core's tests), and vigild's
//! tests drive the daemon's service actor with fake drivers in simulated time. Both take
//! the parsed [`Script`], the health-check simulation ([`CheckSim`]), the in-memory guard
//! ([`GuardSim`]), the simulated service ([`World`]) and the trace formatting from here.
//!
//! Script lines (times on 2025-02-14, UTC; `#` starts a comment):
//!
//! ```text
//! policy cooldown=120s max=5 window=1h          # the guard policy (SPEC §2 defaults)
//! backoff initial=30s factor=2 max=5m reset=10m
//! guard delay=2s                               # the guard answers 2s late (a held lock)
//! check attempts=3 delay=5s failure=1 success=1 grace=30s
//! driver remote op=2s                           # command/systemd/docker: ops take 2s
//! driver exec restart=on-failure delay=0s notify watchdog=30s stop_timeout=10s
//! 10:00:00 start                                # the daemon starts an exec service
//! 10:00:00 request health                       # + `forced`, `repair`
//! 10:00:00 attempt fail                         # one attempt of the health check's run
//! 10:00:00 crash code=1                         # or signal=SEGV; remote: the driver sees it die
//! 10:00:00 ready | ping | hang                  # READY=1, WATCHDOG=1, SIGSTOP
//! 10:00:00 reset | opfail | recover | shutdown | tick
//! 10:00:00 operator stop [for=5m] | operator start | operator pause [for=3s] | operator resume
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::{Effect, GuardAnswer, Input, Machine, Model, Notify, Op, ProcessSpec, RequestId};
use crate::Source;
use crate::backoff::BackoffPolicy;
use crate::event::Event;
use crate::guard::{Denial, GuardPolicy, RestartRecord, RestartRequest, Verdict, decide};
use crate::health::{CheckHealth, HealthStatus, RunVerdict, Thresholds};
use crate::outcome::RestartReport;
use crate::restart_policy::{RestartPolicy, SuccessStatus, Termination};
use crate::retry::{NextStep, RetryPolicy};
use crate::signal::Signal;
use crate::time::{Moment, Timestamp, format_duration};

/// 2025-02-14T00:00:00Z: script times are moments since then.
pub const DAY_START: Timestamp = Timestamp::from_secs(1_739_491_200);

/// The wall-clock instant of a script moment.
pub fn wall(at: Moment) -> Timestamp {
    DAY_START.saturating_add(at.since_epoch())
}

/// `10:01:00`, or `11:00:00.001` when not on a whole second.
pub fn clock(at: Moment) -> String {
    let d = at.since_epoch();
    let secs = d.as_secs();
    let ms = d.subsec_millis();
    let hms = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    if ms == 0 {
        hms
    } else {
        format!("{hms}.{ms:03}")
    }
}

/// How the scripted service is driven.
#[derive(Clone, Debug, PartialEq)]
pub enum Driving {
    /// Operations take `op` and succeed unless `opfail` was scripted.
    Remote {
        op: Duration,
    },
    Exec(ProcessSpec),
}

/// A parsed script.
#[derive(Clone, Debug)]
pub struct Script {
    pub policy: GuardPolicy,
    /// How long the guard takes to answer (its lock held elsewhere); 0 by default.
    pub guard_delay: Duration,
    pub driving: Driving,
    pub check: CheckSpec,
    pub steps: Vec<Step>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CheckSpec {
    pub retry: RetryPolicy,
    pub thresholds: Thresholds,
    pub grace: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub at: Moment,
    pub action: Action,
    /// The script line, for error messages.
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Start,
    Request {
        request: RestartRequest,
        repair: bool,
    },
    Attempt {
        passed: bool,
    },
    Crash(Termination),
    Ready,
    Ping,
    Hang,
    Reset,
    OpFail,
    Recover,
    Shutdown,
    Tick,
    Operator(super::Operator),
}

impl Script {
    /// The machine's model for this script.
    pub fn model(&self) -> Model {
        match &self.driving {
            Driving::Remote { .. } => Model::Remote,
            Driving::Exec(spec) => Model::Process(spec.clone()),
        }
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}`: a duration needs a unit"))?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{text}`: not a number"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("`{text}`: unknown unit")),
    })
}

fn moment(text: &str) -> Option<Moment> {
    let (hms, ms) = match text.split_once('.') {
        Some((hms, ms)) => (hms, ms.parse::<u64>().ok()?),
        None => (text, 0),
    };
    let mut parts = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    parts
        .next()
        .is_none()
        .then(|| Moment::from_duration(Duration::from_millis((h * 3600 + m * 60 + s) * 1000 + ms)))
}

fn settings<'a>(words: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    words
        .iter()
        .map(|w| w.split_once('=').unwrap_or((w, "")))
        .collect()
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("`{value}`: not a number"))
}

/// Parses a script; an error names the line and what is wrong.
pub fn parse(text: &str) -> Result<Script, String> {
    let mut script = Script {
        policy: GuardPolicy::default(),
        guard_delay: Duration::ZERO,
        driving: Driving::Remote {
            op: Duration::from_secs(1),
        },
        check: CheckSpec {
            retry: RetryPolicy {
                attempts: 1,
                delay: Duration::from_secs(5),
            },
            thresholds: Thresholds::default(),
            grace: Duration::ZERO,
        },
        steps: Vec::new(),
    };
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fail = |why: String| format!("script line {}: {why}: `{}`", n + 1, raw.trim());
        let words: Vec<&str> = line.split_whitespace().collect();
        let header = |s: &mut Script| -> Result<bool, String> {
            match words[0] {
                "policy" => {
                    for (k, v) in settings(&words[1..]) {
                        match k {
                            "cooldown" => s.policy.cooldown = duration(v)?,
                            "max" => s.policy.max_restarts = number(v)?,
                            "window" => s.policy.window = duration(v)?,
                            _ => return Err(format!("unknown policy key `{k}`")),
                        }
                    }
                }
                "backoff" => {
                    let mut b = BackoffPolicy {
                        initial: Duration::from_secs(30),
                        factor: 2.0,
                        max: Duration::from_secs(300),
                        reset: Duration::from_secs(600),
                    };
                    for (k, v) in settings(&words[1..]) {
                        match k {
                            "initial" => b.initial = duration(v)?,
                            "factor" => b.factor = number(v)?,
                            "max" => b.max = duration(v)?,
                            "reset" => b.reset = duration(v)?,
                            _ => return Err(format!("unknown backoff key `{k}`")),
                        }
                    }
                    s.policy.backoff = Some(b);
                }
                "guard" => {
                    for (k, v) in settings(&words[1..]) {
                        match k {
                            "delay" => s.guard_delay = duration(v)?,
                            _ => return Err(format!("unknown guard key `{k}`")),
                        }
                    }
                }
                "check" => {
                    for (k, v) in settings(&words[1..]) {
                        match k {
                            "attempts" => s.check.retry.attempts = number(v)?,
                            "delay" => s.check.retry.delay = duration(v)?,
                            "failure" => s.check.thresholds.failure = number(v)?,
                            "success" => s.check.thresholds.success = number(v)?,
                            "grace" => s.check.grace = duration(v)?,
                            _ => return Err(format!("unknown check key `{k}`")),
                        }
                    }
                }
                "driver" => match words.get(1).copied() {
                    Some("remote") => {
                        let mut op = Duration::from_secs(1);
                        for (k, v) in settings(&words[2..]) {
                            match k {
                                "op" => op = duration(v)?,
                                _ => return Err(format!("unknown remote driver key `{k}`")),
                            }
                        }
                        s.driving = Driving::Remote { op };
                    }
                    Some("exec") => {
                        let mut p = ProcessSpec {
                            command: "/usr/bin/service".to_owned(),
                            restart: RestartPolicy::OnFailure,
                            success: SuccessStatus::default(),
                            restart_delay: Duration::ZERO,
                            notify: false,
                            start_timeout: Duration::from_secs(90),
                            watchdog: None,
                            watchdog_signal: Signal::ABRT,
                            stop_signal: Signal::TERM,
                            stop_timeout: Duration::from_secs(10),
                        };
                        for (k, v) in settings(&words[2..]) {
                            match k {
                                "restart" => {
                                    p.restart = RestartPolicy::parse(v)
                                        .ok_or_else(|| format!("unknown restart `{v}`"))?
                                }
                                "delay" => p.restart_delay = duration(v)?,
                                "notify" => p.notify = true,
                                "start_timeout" => p.start_timeout = duration(v)?,
                                "watchdog" => p.watchdog = Some(duration(v)?),
                                "watchdog_signal" => {
                                    p.watchdog_signal = Signal::parse(v)
                                        .ok_or_else(|| format!("unknown signal `{v}`"))?
                                }
                                "stop_timeout" => p.stop_timeout = duration(v)?,
                                _ => return Err(format!("unknown exec driver key `{k}`")),
                            }
                        }
                        s.driving = Driving::Exec(p);
                    }
                    _ => return Err("expected `driver remote|exec ...`".to_owned()),
                },
                _ => return Ok(false),
            }
            Ok(true)
        };
        if header(&mut script).map_err(fail)? {
            continue;
        }
        let at = moment(words[0]).ok_or_else(|| fail("expected HH:MM:SS".to_owned()))?;
        let action = match &words[1..] {
            ["start"] => Action::Start,
            ["request", source, rest @ ..] => {
                let source =
                    Source::parse(source).ok_or_else(|| fail("unknown source".to_owned()))?;
                let forced = rest.contains(&"forced");
                let repair = rest.contains(&"repair");
                let request = if forced {
                    RestartRequest::forced(source)
                } else {
                    RestartRequest::new(source)
                };
                Action::Request { request, repair }
            }
            ["attempt", "pass"] => Action::Attempt { passed: true },
            ["attempt", "fail"] => Action::Attempt { passed: false },
            ["crash", rest @ ..] => {
                let mut term = Termination::Code(1);
                for (k, v) in settings(rest) {
                    term = match k {
                        "code" => Termination::Code(number(v).map_err(fail)?),
                        "signal" => Termination::Signal(
                            Signal::parse(v)
                                .ok_or_else(|| fail(format!("unknown signal `{v}`")))?,
                        ),
                        _ => return Err(fail(format!("unknown crash key `{k}`"))),
                    };
                }
                Action::Crash(term)
            }
            ["ready"] => Action::Ready,
            ["ping"] => Action::Ping,
            ["hang"] => Action::Hang,
            ["reset"] => Action::Reset,
            ["opfail"] => Action::OpFail,
            ["recover"] => Action::Recover,
            ["shutdown"] => Action::Shutdown,
            ["tick"] => Action::Tick,
            ["operator", "start"] => Action::Operator(super::Operator::Start),
            ["operator", "resume"] => Action::Operator(super::Operator::Resume),
            ["operator", kind @ ("stop" | "pause"), rest @ ..] => {
                let mut until = None;
                for (k, v) in settings(rest) {
                    match k {
                        "for" => until = Some(at + duration(v).map_err(&fail)?),
                        _ => return Err(fail(format!("unknown key `{k}`"))),
                    }
                }
                Action::Operator(if *kind == "stop" {
                    super::Operator::Stop { until }
                } else {
                    super::Operator::Pause { until }
                })
            }
            _ => return Err(fail("unknown event".to_owned())),
        };
        if script.steps.last().is_some_and(|s| s.at > at) {
            return Err(fail("times must not go backwards".to_owned()));
        }
        script.steps.push(Step {
            at,
            action,
            line: n + 1,
        });
    }
    Ok(script)
}

/// One trace line for an event published at `at`.
pub fn trace_event(at: Moment, event: &Event) -> String {
    let message = event.message(wall(at));
    match event.check() {
        Some(check) => format!("[{}] {check}: {message}", clock(at)),
        None => format!("[{}] {message}", clock(at)),
    }
}

/// The guard with an in-memory history: `decide` over the restarts it allowed, with the
/// edge's bookkeeping (denials inside one given-up episode are counted on it).
#[derive(Clone, Debug)]
pub struct GuardSim {
    pub policy: GuardPolicy,
    history: Vec<RestartRecord>,
    /// The open given-up episode: its re-arm instant and how many denials it counted.
    episode: Option<(Timestamp, u32)>,
}

impl GuardSim {
    pub fn new(policy: GuardPolicy) -> GuardSim {
        GuardSim {
            policy,
            history: Vec::new(),
            episode: None,
        }
    }

    /// Decides `request` at `now`, records it, and returns the answer with the verdict's
    /// event.
    pub fn ask(&mut self, request: RestartRequest, now: Timestamp) -> (GuardAnswer, Event) {
        let verdict = decide(&self.policy, &self.history, request, now);
        let mut repeat = None;
        match &verdict {
            Verdict::Allowed { .. } => {
                self.history.push(RestartRecord {
                    at: now,
                    source: request.source,
                    forced: request.forced,
                });
                self.episode = None;
            }
            Verdict::Denied(Denial::Limit { rearm_at, .. }) => match &mut self.episode {
                Some((until, count)) if now < *until => {
                    *count += 1;
                    *until = (*until).max(*rearm_at);
                    repeat = Some(*count);
                }
                _ => self.episode = Some((*rearm_at, 1)),
            },
            Verdict::Skipped(_) => {}
        }
        let retry_after = verdict.retry_at(now).map(|t| t.saturating_since(now));
        let event = Event::Verdict {
            request,
            verdict: verdict.clone(),
            repeat,
        };
        (
            GuardAnswer::Decided {
                verdict,
                retry_after,
            },
            event,
        )
    }

    /// `vigil reset`: past restarts stop counting.
    pub fn reset(&mut self) {
        self.history.clear();
        self.episode = None;
    }
}

/// The health check's runs, attempt by attempt.
#[derive(Clone, Debug)]
pub struct CheckSim {
    spec: CheckSpec,
    health: CheckHealth,
    announced: bool,
    attempt: u32,
    last_attempt: Option<Moment>,
}

/// What one attempt led to.
pub struct AttemptOutcome {
    /// Trace lines, in order.
    pub lines: Vec<String>,
    /// A restart request with source `health` follows.
    pub request: bool,
}

impl CheckSim {
    pub fn new(spec: CheckSpec) -> CheckSim {
        CheckSim {
            spec,
            health: CheckHealth::default(),
            announced: false,
            attempt: 0,
            last_attempt: None,
        }
    }

    /// The service was restarted: the new instance starts unknown.
    pub fn restarted(&mut self, at: Moment) {
        self.health.reset(wall(at));
    }

    /// One attempt at `at`, with the service up for `uptime`.
    pub fn attempt(
        &mut self,
        passed: bool,
        at: Moment,
        uptime: Option<Duration>,
    ) -> Result<AttemptOutcome, String> {
        let n = match self.last_attempt {
            None => 1,
            Some(last) => {
                let due = last + self.spec.retry.delay;
                if at != due {
                    return Err(format!(
                        "attempt {} is due at {}",
                        self.attempt + 1,
                        clock(due)
                    ));
                }
                self.attempt + 1
            }
        };
        let word = if passed { "succeeds" } else { "fails" };
        let of = self.spec.retry.attempts;
        let mut lines = Vec::new();
        match self.spec.retry.after_attempt(n, passed) {
            NextStep::RetryAfter(delay) => {
                lines.push(format!(
                    "[{}] Health test {word} (attempt {n}/{of}), retry in {}",
                    clock(at),
                    format_duration(delay)
                ));
                self.attempt = n;
                self.last_attempt = Some(at);
                Ok(AttemptOutcome {
                    lines,
                    request: false,
                })
            }
            NextStep::Finish { passed } => {
                lines.push(format!(
                    "[{}] Health test {word} (attempt {n}/{of})",
                    clock(at)
                ));
                self.attempt = 0;
                self.last_attempt = None;
                let verdict = if passed {
                    RunVerdict::Pass
                } else {
                    RunVerdict::Fail
                };
                let reason = if passed { "ok" } else { "unhealthy" }.to_owned();
                let obs = self.health.observe_after_grace(
                    verdict,
                    self.spec.thresholds,
                    self.spec.grace,
                    uptime,
                    wall(at),
                );
                let event = match (obs.in_grace, obs.transition) {
                    (Some(left), _) => Event::CheckGrace {
                        check: "health".to_owned(),
                        verdict,
                        left,
                        reason,
                        took: Duration::ZERO,
                    },
                    (None, Some((from, to))) => {
                        let recovered = to == HealthStatus::Passing && self.announced;
                        if matches!(to, HealthStatus::Failing | HealthStatus::Warning) {
                            self.announced = true;
                        } else if recovered {
                            self.announced = false;
                        }
                        Event::CheckStatus {
                            check: "health".to_owned(),
                            verdict,
                            from,
                            to,
                            reason,
                            recovered,
                            took: Duration::ZERO,
                        }
                    }
                    (None, None) => Event::CheckRun {
                        check: "health".to_owned(),
                        verdict,
                        status: self.health.status,
                        reason,
                        took: Duration::ZERO,
                    },
                };
                lines.push(trace_event(at, &event));
                Ok(AttemptOutcome {
                    lines,
                    request: obs.wants_action && verdict == RunVerdict::Fail,
                })
            }
        }
    }
}

/// The simulated service: its process (exec) or its up/down state (remote).
#[derive(Clone, Debug, Default)]
pub struct World {
    next_pid: i32,
    /// The exec process: its pid and whether it is SIGSTOPped.
    pub process: Option<(i32, bool)>,
    /// A remote service runs.
    pub up: bool,
    /// The next driver operation fails.
    pub op_fails: bool,
}

impl World {
    /// A remote service starts out running; an exec one is spawned.
    pub fn new() -> World {
        World {
            next_pid: 100,
            up: true,
            ..World::default()
        }
    }

    pub fn spawn(&mut self) -> i32 {
        self.next_pid += 1;
        self.process = Some((self.next_pid, false));
        self.next_pid
    }

    /// A signal to the process group: how the process ends, if it does (a stopped process
    /// only dies of SIGKILL; anything else runs no handler and ends it).
    pub fn signal(&mut self, signal: Signal) -> Option<Termination> {
        let (_, stopped) = self.process?;
        if stopped && signal != Signal::KILL {
            return None;
        }
        self.process = None;
        Some(Termination::Signal(signal))
    }

    pub fn hang(&mut self) {
        if let Some((_, stopped)) = &mut self.process {
            *stopped = true;
        }
    }

    /// The outcome of one remote operation.
    pub fn op(&mut self, op: Op, took: Duration) -> RestartReport {
        let ok = !std::mem::take(&mut self.op_fails);
        if ok && op != Op::Repair {
            self.up = op != Op::Stop;
        }
        RestartReport {
            ok,
            detail: format!(
                "`{}`: {} in {}",
                op.as_str(),
                if ok { "exit code 0" } else { "exit code 1" },
                format_duration(took)
            ),
            duration: took,
            action_required: None,
        }
    }

    pub fn evidence(&self, pid: i32, since_ping: Duration) -> String {
        let state = match self.process {
            Some((_, true)) => "T (stopped)",
            _ => "R (running)",
        };
        format!(
            "pid {pid} state {state}, no WATCHDOG=1 for {}",
            format_duration(since_ping)
        )
    }
}

/// Something the simulated world does later.
#[derive(Clone, Debug)]
enum Later {
    OpDone(RestartReport),
    /// The guard decides the request now (after its delay).
    Ask(RequestId, RestartRequest),
}

/// Runs `script` on the pure machine and returns its trace.
pub fn run(script: &Script) -> Result<String, String> {
    let mut runner = Runner::new(script);
    for step in &script.steps {
        runner.run_until(step.at);
        runner
            .apply(&step.action, step.line)
            .map_err(|e| format!("script line {}: {e}", step.line))?;
    }
    Ok(runner.trace.join("\n"))
}

/// What the runner saw, in order: for property tests over whole runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// An input given to the machine.
    Input(Input),
    /// A timer fired.
    Timeout,
    Effect(Effect),
}

/// Steps the pure machine through a script's world: the one place that drives it in
/// simulated time (the scenarios and the property tests both go through here).
pub struct Runner {
    pub machine: Machine,
    pub guard: GuardSim,
    guard_delay: Duration,
    check: CheckSim,
    pub world: World,
    driving: Driving,
    later: BTreeMap<(Moment, u64), Later>,
    seq: u64,
    up_since: Option<Moment>,
    /// Requests allowed by the guard and not finished, for the restart's outcome event.
    asked: VecDeque<(RequestId, RestartRequest, Verdict)>,
    pub trace: Vec<String>,
    /// Everything seen, with the moment it happened.
    pub seen: Vec<(Moment, Seen)>,
    now: Moment,
}

impl Runner {
    pub fn new(script: &Script) -> Runner {
        Runner {
            machine: Machine::new(script.model(), Moment::ZERO),
            guard: GuardSim::new(script.policy.clone()),
            guard_delay: script.guard_delay,
            check: CheckSim::new(script.check),
            world: World::new(),
            driving: script.driving.clone(),
            later: BTreeMap::new(),
            seq: 0,
            up_since: None,
            asked: VecDeque::new(),
            trace: Vec::new(),
            seen: Vec::new(),
            now: Moment::ZERO,
        }
    }

    pub fn now(&self) -> Moment {
        self.now
    }

    fn give(&mut self, input: Input) {
        self.seen.push((self.now, Seen::Input(input.clone())));
        self.machine.handle_event(input, self.now);
    }
    /// Lets simulated time run to `until`: timers and scheduled completions, in order.
    ///
    /// # Panics
    /// When the machine keeps asking to be woken at the same moment without doing
    /// anything (a wait that makes no progress): a bug in the machine, which would spin
    /// the daemon's runtime thread.
    pub fn run_until(&mut self, until: Moment) {
        let mut same = (Moment::ZERO, 0u32);
        loop {
            let timer = self.machine.poll_timeout();
            let later = self.later.keys().next().map(|(at, _)| *at);
            let next = match (timer, later) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if later == Some(next) {
                match self.later.pop_first() {
                    Some((_, Later::OpDone(report))) => self.give(Input::OpDone(report)),
                    Some((_, Later::Ask(id, request))) => self.decide(id, request),
                    None => {}
                }
            } else {
                same = if same.0 == next {
                    (next, same.1 + 1)
                } else {
                    (next, 1)
                };
                assert!(
                    same.1 < 1000,
                    "the machine asks to be woken at {} again and again without progress",
                    clock(next)
                );
                self.seen.push((self.now, Seen::Timeout));
                self.machine.handle_timeout(self.now);
            }
            self.drain();
        }
        self.now = self.now.max(until);
    }

    /// Applies one scripted action at the current moment (`line` names requests).
    pub fn apply(&mut self, action: &Action, line: usize) -> Result<(), String> {
        let now = self.now;
        let input = match action {
            Action::Start => Some(Input::Request(super::Request {
                id: RequestId::INTERNAL,
                op: Op::Start,
                guard: None,
            })),
            Action::Request { request, repair } => Some(Input::Request(super::Request {
                id: RequestId(line as u64),
                op: if *repair { Op::Repair } else { Op::Restart },
                guard: Some(*request),
            })),
            Action::Attempt { passed } => {
                let uptime = self.up_since.map(|s| now.saturating_since(s));
                let outcome = self.check.attempt(*passed, now, uptime)?;
                self.trace.extend(outcome.lines);
                outcome.request.then_some(Input::Request(super::Request {
                    id: RequestId(line as u64),
                    op: Op::Restart,
                    guard: Some(RestartRequest::new(Source::Health)),
                }))
            }
            Action::Crash(term) => match self.driving {
                // A crash of a process that does not run is nothing.
                Driving::Exec(_) => self.world.process.take().map(|_| Input::Exited {
                    termination: Some(*term),
                }),
                Driving::Remote { .. } => {
                    self.world.up = false;
                    Some(Input::Died)
                }
            },
            Action::Ready => Some(Input::Notify(Notify::Ready)),
            Action::Ping => Some(Input::Notify(Notify::Watchdog)),
            Action::Hang => {
                self.world.hang();
                None
            }
            Action::Reset => {
                self.guard.reset();
                Some(Input::Reset)
            }
            Action::OpFail => {
                self.world.op_fails = true;
                None
            }
            Action::Recover => {
                self.world.up = true;
                None
            }
            Action::Shutdown => Some(Input::Shutdown { leave: false }),
            Action::Tick => None,
            Action::Operator(command) => Some(Input::Operator {
                id: RequestId(line as u64),
                command: *command,
            }),
        };
        if let Some(input) = input {
            self.give(input);
        }
        self.drain();
        Ok(())
    }

    /// The guard decides `request` now and answers.
    fn decide(&mut self, id: RequestId, request: RestartRequest) {
        let now = self.now;
        let (answer, event) = self.guard.ask(request, wall(now));
        self.trace.push(trace_event(now, &event));
        if let GuardAnswer::Decided { verdict, .. } = &answer
            && verdict.is_allowed()
        {
            self.asked.push_back((id, request, verdict.clone()));
        }
        self.give(Input::Guard(answer));
        self.drain();
    }

    /// Carries out every effect, feeding answers back at once.
    fn drain(&mut self) {
        let now = self.now;
        while let Some(effect) = self.machine.poll_effect() {
            self.seen.push((now, Seen::Effect(effect.clone())));
            match effect {
                Effect::AskGuard { id, request, .. } => {
                    if self.guard_delay.is_zero() {
                        self.decide(id, request);
                    } else {
                        self.seq += 1;
                        self.later
                            .insert((now + self.guard_delay, self.seq), Later::Ask(id, request));
                    }
                }
                Effect::RunOp { op, .. } => {
                    let took = match self.driving {
                        Driving::Remote { op } => op,
                        Driving::Exec(_) => Duration::from_secs(1),
                    };
                    let report = self.world.op(op, took);
                    self.seq += 1;
                    self.later
                        .insert((now + took, self.seq), Later::OpDone(report));
                }
                Effect::ProbeRunning => {
                    let up = self.world.up;
                    self.give(Input::Running(Some(up)));
                }
                Effect::Spawn => {
                    let pid = self.world.spawn();
                    self.give(Input::Spawned { pid });
                }
                Effect::Signal { signal, .. } => {
                    if let Some(term) = self.world.signal(signal) {
                        self.give(Input::Exited {
                            termination: Some(term),
                        });
                    }
                }
                Effect::CollectEvidence {
                    pid, since_ping, ..
                } => {
                    let text = self.world.evidence(pid, since_ping);
                    self.give(Input::Evidence(text));
                }
                Effect::Finish { id, report } => {
                    if let Some(i) = self.asked.iter().position(|(a, ..)| *a == id) {
                        let (_, request, verdict) = self
                            .asked
                            .remove(i)
                            .unwrap_or_else(|| unreachable!("position found"));
                        let event = Event::RestartFinished {
                            request,
                            verdict,
                            report,
                        };
                        self.trace.push(trace_event(now, &event));
                    }
                }
                Effect::Up => {
                    self.up_since = Some(now);
                    self.world.up = true;
                    self.check.restarted(now);
                }
                Effect::Emit(event) => self.trace.push(trace_event(now, &event)),
                Effect::Settle { .. } | Effect::Abandon | Effect::Detach => {}
            }
        }
    }
}

/// Compares `actual` with `expected` (both trimmed per line); on mismatch, a diff with
/// the differing lines marked.
pub fn diff(expected: &str, actual: &str) -> Option<String> {
    let norm = |s: &str| -> Vec<String> {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (e, a) = (norm(expected), norm(actual));
    if e == a {
        return None;
    }
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => out.push_str(&format!("   {x}\n")),
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!(" - {x}\n"));
                }
                if let Some(y) = y {
                    out.push_str(&format!(" + {y}\n"));
                }
            }
        }
    }
    Some(out)
}

/// A scenario file: the script, a line `---`, and the expected trace.
pub fn split_scenario(text: &str) -> Result<(&str, &str), String> {
    let mut parts = text.splitn(2, "\n---\n");
    match (parts.next(), parts.next()) {
        (Some(script), Some(expected)) => Ok((script, expected)),
        _ => Err("a scenario is a script, a line `---`, then the expected trace".to_owned()),
    }
}
