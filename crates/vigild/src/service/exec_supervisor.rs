//! `driver = "exec"`: Vigil spawns a service's process and supervises it itself (SPEC §4).
//!
//! One [`Supervisor`] task per exec service owns everything about it: the process (its
//! pidfd, output pipes, notify socket), readiness, the watchdog deadline, the deferred
//! restart, and its runtime state in the ledger. One task per child rather than a global
//! SIGCHLD reaper: a pidfd wakes exactly the task that owns the process, so nothing is
//! shared, nothing is looked up on the hot path, and a crash-to-restart is one wake-up of
//! one task; tokio's reactor multiplexes all of them on one thread.
//!
//! The policy decisions are pure and live in `vigil_core` (`RestartPolicy::restarts_after`,
//! `SuccessStatus::classify`, the guard's `decide`); restarts after an exit or a watchdog
//! kill go through `guard::request` with source `exit`/`watchdog` and are deferred, never
//! dropped, until the guard allows them.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use rustix::process::Pid;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_config::model::{ExecDriver, OnDaemonExit, Ready, Service};
use vigil_core::guard::{Denial, Skip};
use vigil_core::{
    ExitCause, GuardPolicy, RestartRequest, ServiceName, Signal, Source, Timestamp, Verdict,
};

use crate::drivers::RestartReport;
use crate::guard::{self, Action, Decision, GuardContext, IntentSync};
use crate::ledger::ExecStateRow;
use crate::observe::events;
use crate::platform::clock;
use crate::service::protocol::ServiceMsg;

use crate::drivers::exec::notify::{self, Message, NotifySocket};
use crate::drivers::exec::pipes::{Pipe, Stream};
use crate::drivers::exec::proc::{self, PidFd};

/// While given up, how often the guard is asked (without recording) whether the budget
/// has re-armed (a window entry expired, or `vigil reset` ran).
const GIVEN_UP_POLL: Duration = Duration::from_secs(1);
/// How long a SIGKILLed process may take to die before Vigil stops waiting for it.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Why Vigil is stopping the current process.
#[derive(Debug)]
enum StopCause {
    /// Watchdog deadline missed: the evidence was read before the signal.
    Watchdog { evidence: String },
    /// Not ready within `start_timeout`.
    StartTimeout,
}

/// One running instance of the service.
struct Instance {
    pid: Pid,
    pidfd: PidFd,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
    spawned: Instant,
    ready: bool,
    start_deadline: Option<Instant>,
    watchdog: Option<Duration>,
    last_ping: Instant,
    watchdog_deadline: Option<Instant>,
    main_pid: Option<Pid>,
    /// Set when Vigil signalled it (watchdog, start timeout): the cause and when SIGKILL
    /// follows.
    stopping: Option<(StopCause, Option<Instant>)>,
    /// Drop leaves the process alone (`on_daemon_exit = "leave"`) instead of killing it.
    detached: bool,
    reaped: bool,
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Safety net (a task aborted at the shutdown deadline): never leave a group behind
        // unless told to.
        if !self.reaped && !self.detached {
            proc::signal_group(self.pid, Signal::KILL);
        }
    }
}

/// What woke a supervisor (see [`Supervisor::poll_event`]).
enum Event {
    Cancelled,
    /// `None`: the daemon dropped the service's sender.
    Message(Option<ServiceMsg>),
    Exited,
    Output(Stream),
    Notify,
    Timer,
}

/// A restart waiting for its moment (restart_delay, the guard's cooldown/backoff, or a
/// given-up budget re-arming).
struct Pending {
    at: Instant,
    source: Source,
    evidence: Option<String>,
    given_up: bool,
}

pub struct Supervisor {
    name: ServiceName,
    spec: ExecDriver,
    policy: GuardPolicy,
    guard: GuardContext,
    started: watch::Sender<Option<Timestamp>>,
    cancel: CancellationToken,
    root: CancellationToken,
    notify: Option<NotifySocket>,
    child: Option<Instance>,
    pending: Option<Pending>,
    announced_given_up: Option<Timestamp>,
    recent: VecDeque<String>,
    status_text: Option<String>,
    /// When the last exit was observed, for the crash-to-restart figure in the log.
    last_exit: Option<Instant>,
}

async fn maybe<F: Future>(f: Option<F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn usec(n: u64) -> Duration {
    Duration::from_micros(n)
}

impl Supervisor {
    pub fn new(
        service: &Service,
        spec: ExecDriver,
        guard: GuardContext,
        started: watch::Sender<Option<Timestamp>>,
        cancel: CancellationToken,
        root: CancellationToken,
    ) -> Supervisor {
        let notify = match NotifySocket::bind(&guard.state_dir, service.name.as_str()) {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::error!(service = %service.name, event = "notify_socket_error", %error,
                    "cannot bind the service's NOTIFY_SOCKET; sd_notify messages will not be received");
                None
            }
        };
        Supervisor {
            name: service.name.clone(),
            spec,
            policy: service.guard.clone(),
            guard,
            started,
            cancel,
            root,
            notify,
            child: None,
            pending: None,
            announced_given_up: None,
            recent: VecDeque::new(),
            status_text: None,
            last_exit: None,
        }
    }

    /// One hand-written poll over everything the service waits for, in priority order,
    /// with one stored cancellation future and one timer re-armed in place: an idle
    /// service's task is the `Supervisor` and little more, where a `select!` would hold
    /// seven futures built afresh on every turn. The rare, large paths (a restart through
    /// the guard, a stop, the shutdown) are boxed when taken. Not an `async fn`: that
    /// would store its arguments twice (as captured and as moved-in locals), 1.1 KB more
    /// per service; the `async move` block uses the captured ones in place.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would store self twice; see above"
    )]
    pub fn run(
        mut self,
        mut rx: mpsc::Receiver<ServiceMsg>,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            if let Err(detail) = self.start() {
                self.after_exit(ExitCause::UncleanExitCode, &detail, None);
            }
            let cancelled = self.cancel.clone().cancelled_owned();
            let timer = tokio::time::sleep_until(Instant::now());
            tokio::pin!(cancelled, timer);
            let mut armed: Option<Instant> = None;
            loop {
                let deadline = self.next_deadline();
                if deadline != armed {
                    if let Some(d) = deadline {
                        timer.as_mut().reset(d);
                    }
                    armed = deadline;
                }
                let event = std::future::poll_fn(|cx| {
                    let timer = armed.is_some().then_some(timer.as_mut());
                    self.poll_event(cx, &mut rx, cancelled.as_mut(), timer)
                })
                .await;
                match event {
                    Event::Cancelled | Event::Message(None) => break,
                    Event::Message(Some(msg)) => Box::pin(self.on_message(msg)).await,
                    Event::Exited => Box::pin(self.on_exit()).await,
                    Event::Output(stream) => self.pump(stream),
                    Event::Notify => self.on_notify(),
                    Event::Timer => Box::pin(self.on_timer()).await,
                }
            }
            Box::pin(self.shutdown()).await;
        }
    }

    /// The first thing ready, in priority order: cancellation, a message, the exit, the
    /// outputs, the notify socket, the timer. Everything polled and not ready wakes the
    /// task when it becomes ready.
    fn poll_event(
        &self,
        cx: &mut std::task::Context<'_>,
        rx: &mut mpsc::Receiver<ServiceMsg>,
        cancelled: std::pin::Pin<&mut tokio_util::sync::WaitForCancellationFutureOwned>,
        timer: Option<std::pin::Pin<&mut tokio::time::Sleep>>,
    ) -> std::task::Poll<Event> {
        use std::task::Poll;
        if cancelled.poll(cx).is_ready() {
            return Poll::Ready(Event::Cancelled);
        }
        if let Poll::Ready(msg) = rx.poll_recv(cx) {
            return Poll::Ready(Event::Message(msg));
        }
        if let Some(c) = &self.child {
            if c.pidfd.poll_exited(cx).is_ready() {
                return Poll::Ready(Event::Exited);
            }
            for (pipe, stream) in [(&c.stdout, Stream::Stdout), (&c.stderr, Stream::Stderr)] {
                if pipe
                    .as_ref()
                    .is_some_and(|p| p.poll_readable(cx).is_ready())
                {
                    return Poll::Ready(Event::Output(stream));
                }
            }
        }
        if self
            .notify
            .as_ref()
            .is_some_and(|n| n.poll_readable(cx).is_ready())
        {
            return Poll::Ready(Event::Notify);
        }
        if let Some(timer) = timer
            && timer.poll(cx).is_ready()
        {
            return Poll::Ready(Event::Timer);
        }
        Poll::Pending
    }

    /// The daemon exits (root cancelled) or the service was removed from the config.
    async fn shutdown(&mut self) {
        let leave = self.root.is_cancelled() && self.spec.on_daemon_exit == OnDaemonExit::Leave;
        if leave {
            if let Some(mut inst) = self.child.take() {
                inst.detached = true;
                tracing::info!(service = %self.name, event = "exec_left_running", pid = inst.pid.as_raw_nonzero().get(),
                    "on_daemon_exit = leave: process {} keeps running", inst.pid.as_raw_nonzero().get());
                let pid = inst.pid;
                drop(inst);
                self.persist_now(
                    "left-running",
                    Some(pid),
                    "vigil exited; process left running",
                )
                .await;
            }
            return;
        }
        let why = if self.root.is_cancelled() {
            "vigil is shutting down"
        } else {
            "service removed from the configuration"
        };
        self.stop(why).await;
        self.persist_now("stopped", None, why).await;
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut all: Vec<Instant> = Vec::new();
        if let Some(c) = &self.child {
            all.extend(c.start_deadline.filter(|_| !c.ready));
            all.extend(c.watchdog_deadline);
            if let Some((_, Some(kill_at))) = &c.stopping {
                all.push(*kill_at);
            }
        }
        if let Some(p) = &self.pending {
            all.push(p.at);
        }
        all.into_iter().min()
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        self.spec.watchdog
    }

    /// Spawns a new instance. Err: a one-line reason (the spawn failed).
    fn start(&mut self) -> Result<RestartReport, String> {
        let socket = self
            .notify
            .as_ref()
            .map(|n| n.address().to_path_buf())
            .unwrap_or_default();
        let t0 = Instant::now();
        let spawned =
            crate::drivers::exec::spawn::spawn(&self.spec, &socket, self.watchdog_interval())
                .map_err(|e| e.to_string());
        let spawned = match spawned {
            Ok(s) => s,
            Err(detail) => {
                events::exec_spawn_failed(&self.name, &detail);
                return Err(detail);
            }
        };
        let pid = spawned.pid;
        let pidfd = match PidFd::open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                proc::signal_group(pid, Signal::KILL);
                let detail = format!("cannot watch pid {}: {e}", pid.as_raw_nonzero().get());
                events::exec_spawn_failed(&self.name, &detail);
                return Err(detail);
            }
        };
        let pipe = |fd: Option<std::os::fd::OwnedFd>, stream, target| {
            fd.and_then(|fd| {
                Pipe::new(
                    fd,
                    stream,
                    target,
                    self.spec.log_max_size,
                    self.spec.log_keep,
                )
                .ok()
            })
        };
        let stdout = pipe(spawned.stdout, Stream::Stdout, &self.spec.stdout);
        let stderr = pipe(spawned.stderr, Stream::Stderr, &self.spec.stderr);
        let now = Instant::now();
        let notify = self.spec.ready == Ready::Notify;
        let watchdog = self.watchdog_interval();
        self.child = Some(Instance {
            pid,
            pidfd,
            stdout,
            stderr,
            spawned: now,
            ready: !notify,
            start_deadline: notify.then(|| now + self.spec.start_timeout),
            watchdog,
            last_ping: now,
            watchdog_deadline: if notify {
                None
            } else {
                watchdog.map(|w| now + w)
            },
            main_pid: None,
            stopping: None,
            detached: false,
            reaped: false,
        });
        self.pending = None;
        self.status_text = None;
        let raw = pid.as_raw_nonzero().get();
        let since_exit = self.last_exit.take().map(|t| t.elapsed());
        events::exec_started(&self.name, raw, &self.spec.command.to_string(), since_exit);
        if notify {
            self.persist("starting", Some(pid), "waiting for READY=1");
        } else {
            self.started.send_replace(Some(clock::now()));
            self.persist("running", Some(pid), "");
        }
        Ok(RestartReport {
            ok: true,
            detail: format!("started pid {raw}: {}", self.spec.command),
            duration: t0.elapsed(),
            action_required: None,
        })
    }

    /// A restart's action: stop what runs (if anything), start anew.
    async fn replace(&mut self, why: &str) -> RestartReport {
        let t0 = Instant::now();
        self.stop(why).await;
        match self.start() {
            Ok(mut report) => {
                report.duration = t0.elapsed();
                report
            }
            Err(detail) => RestartReport {
                ok: false,
                detail,
                duration: t0.elapsed(),
                action_required: None,
            },
        }
    }

    fn pump(&mut self, stream: Stream) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let pipe = match stream {
            Stream::Stdout => &mut child.stdout,
            Stream::Stderr => &mut child.stderr,
        };
        if let Some(p) = pipe
            && !p.pump(&self.name, &mut self.recent)
        {
            *pipe = None;
        }
    }

    fn drain_outputs(&mut self) {
        for _ in 0..4 {
            self.pump(Stream::Stdout);
            self.pump(Stream::Stderr);
        }
    }

    /// The leader exited on its own (or after Vigil's watchdog/start-timeout signal).
    async fn on_exit(&mut self) {
        let Some(inst) = self.child.as_mut() else {
            return;
        };
        let pid = inst.pid;
        let term = inst.pidfd.reap();
        inst.reaped = true;
        self.last_exit = Some(Instant::now());
        if proc::group_alive(pid) {
            self.clean_group(pid, None).await;
        }
        self.drain_outputs();
        let Some(mut inst) = self.child.take() else {
            return;
        };
        let (cause, evidence) = match inst.stopping.take() {
            Some((StopCause::Watchdog { evidence }, _)) => (ExitCause::Watchdog, Some(evidence)),
            Some((StopCause::StartTimeout, _)) => (ExitCause::Timeout, None),
            None => match term {
                Some(t) => (self.spec.success_exit_status.classify(t), None),
                None => (ExitCause::UncleanExitCode, None),
            },
        };
        let how = match term {
            Some(t) => t.to_string(),
            None => "ended (status unknown)".to_owned(),
        };
        events::exec_exited(
            &self.name,
            pid.as_raw_nonzero().get(),
            &how,
            cause.as_str(),
            inst.spawned.elapsed(),
        );
        self.after_exit(cause, &how, evidence);
        // restart_delay = 0: ask the guard now rather than on the timer, whose millisecond
        // granularity would add up to a millisecond to every crash-to-restart.
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.at <= Instant::now())
        {
            self.try_restart().await;
        }
    }

    /// Applies the restart policy to an exit and schedules the deferred restart.
    fn after_exit(&mut self, cause: ExitCause, how: &str, evidence: Option<String>) {
        if self.spec.restart.restarts_after(cause) {
            let source = if cause == ExitCause::Watchdog {
                Source::Watchdog
            } else {
                Source::Exit
            };
            self.pending = Some(Pending {
                at: Instant::now() + self.spec.restart_delay,
                source,
                evidence,
                given_up: false,
            });
            // With no delay the restart request follows at once and writes the next
            // state; skipping this write keeps an fsync off the crash-to-restart path.
            if !self.spec.restart_delay.is_zero() {
                self.persist("restart-pending", None, how);
            }
        } else {
            tracing::info!(service = %self.name, event = "exec_not_restarted", restart = self.spec.restart.as_str(), cause = cause.as_str(),
                "not restarted: restart = {} does not restart after {} ({how})", self.spec.restart, cause.as_str());
            self.persist("exited", None, how);
        }
    }

    /// Empties a process group whose reaped leader left live members behind (they pin the
    /// group id): they get `stop_signal`, then SIGKILL at `kill_at` (default:
    /// `stop_timeout` from now). Leftovers are reported.
    async fn clean_group(&mut self, pgid: Pid, kill_at: Option<Instant>) {
        let left = proc::group_members(pgid, pgid);
        if left.is_empty() {
            // Gone between the probe and the scan.
            return;
        }
        let names: Vec<String> = left.iter().map(|p| proc::describe(*p)).collect();
        proc::signal_group(pgid, self.spec.stop_signal);
        let kill_at = kill_at.unwrap_or_else(|| Instant::now() + self.spec.stop_timeout);
        let fds: Vec<PidFd> = left.iter().filter_map(|p| PidFd::open(*p).ok()).collect();
        let all_gone = async {
            for fd in &fds {
                fd.exited().await;
            }
        };
        let killed = tokio::time::timeout_at(kill_at, all_gone).await.is_err();
        if killed {
            proc::signal_group(pgid, Signal::KILL);
        }
        // Anything forked meanwhile joined the group: one last sweep.
        for _ in 0..3 {
            if !proc::group_alive(pgid) || proc::group_members(pgid, pgid).is_empty() {
                break;
            }
            proc::signal_group(pgid, Signal::KILL);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        events::exec_leftovers(
            &self.name,
            &names,
            if killed {
                "SIGKILL"
            } else {
                self.spec.stop_signal.name().unwrap_or("stop signal")
            },
        );
    }

    /// Stops the running instance: `stop_signal` to the group, SIGKILL after
    /// `stop_timeout`, leftovers killed and reported, then reaped. No restart follows.
    async fn stop(&mut self, why: &str) {
        let Some(inst) = self.child.as_ref() else {
            return;
        };
        let pid = inst.pid;
        let raw = pid.as_raw_nonzero().get();
        tracing::info!(service = %self.name, event = "exec_stopping", pid = raw, signal = %self.spec.stop_signal,
            "stopping pid {raw} ({why}): {} to its process group, SIGKILL after {}", self.spec.stop_signal, vigil_core::format_duration(self.spec.stop_timeout));
        self.persist("stopping", Some(pid), why);
        let t0 = Instant::now();
        let deadline = t0 + self.spec.stop_timeout;
        proc::signal_group(pid, self.spec.stop_signal);
        let mut killed = false;
        // A process stuck in uninterruptible sleep may not even die of SIGKILL; do not
        // wait for it forever (it stays unreaped, and is SIGKILLed again on drop).
        let give_up = deadline + KILL_GRACE;
        loop {
            let child = self.child.as_ref();
            tokio::select! {
                _ = maybe(child.map(|c| c.pidfd.exited())) => break,
                _ = maybe(child.and_then(|c| c.stdout.as_ref()).map(Pipe::readable)) => self.pump(Stream::Stdout),
                _ = maybe(child.and_then(|c| c.stderr.as_ref()).map(Pipe::readable)) => self.pump(Stream::Stderr),
                _ = tokio::time::sleep_until(deadline), if !killed => {
                    proc::signal_group(pid, Signal::KILL);
                    killed = true;
                }
                _ = tokio::time::sleep_until(give_up) => {
                    tracing::error!(service = %self.name, event = "exec_unkillable", pid = raw,
                        "pid {raw} did not die within {} of SIGKILL (uninterruptible sleep?); giving up on it", vigil_core::format_duration(KILL_GRACE));
                    self.child = None;
                    return;
                }
            }
        }
        let Some(inst) = self.child.as_mut() else {
            return;
        };
        let term = inst.pidfd.reap();
        inst.reaped = true;
        if proc::group_alive(pid) {
            let kill_at = if killed { Instant::now() } else { deadline };
            self.clean_group(pid, Some(kill_at)).await;
        }
        self.drain_outputs();
        self.child = None;
        let how = term.map_or_else(|| "ended".to_owned(), |t| t.to_string());
        events::exec_stopped(&self.name, raw, &how, killed, t0.elapsed());
    }

    async fn on_message(&mut self, msg: ServiceMsg) {
        match msg {
            ServiceMsg::Reset => {
                // `vigil reset` through the API: a deferred restart may go now.
                self.announced_given_up = None;
                if let Some(p) = &mut self.pending {
                    p.at = Instant::now();
                }
            }
            // Exec services are not restart-group members (rejected by the config).
            ServiceMsg::Restarted(_) => {}
            ServiceMsg::Update(service) => {
                let vigil_config::model::DriverSpec::Exec(spec) = &service.driver else {
                    tracing::error!(service = %self.name, event = "service_updated", "driver changed away from exec; takes effect after restarting vigil");
                    return;
                };
                self.policy = service.guard.clone();
                if *spec != self.spec {
                    self.spec = spec.clone();
                    tracing::info!(service = %self.name, event = "exec_definition_changed", "definition changed on reload: restarting with the new one");
                    self.stop("definition changed on reload").await;
                    if let Err(detail) = self.start() {
                        self.after_exit(ExitCause::UncleanExitCode, &detail, None);
                    }
                } else {
                    tracing::info!(service = %self.name, event = "service_updated", "guard settings updated");
                }
            }
            ServiceMsg::Restart {
                request,
                repair,
                reply,
            } => {
                let cx = self.guard.clone();
                let name = self.name.clone();
                let policy = self.policy.clone();
                let timeout = self.spec.stop_timeout.max(Duration::from_secs(60));
                let outcome = match &repair {
                    Some(argv) => {
                        guard::request(&cx, &name, &policy, Action::Repair(argv, timeout), request)
                            .await
                    }
                    None => {
                        let why = format!("restart requested by {}", request.source);
                        let action = Action::Run(Box::pin(self.replace(&why)));
                        guard::request(&cx, &name, &policy, action, request).await
                    }
                };
                match outcome {
                    Ok(decision) => {
                        self.note_given_up(&decision, request);
                        if repair.is_none()
                            && decision.verdict.is_allowed()
                            && !decision.restarted()
                        {
                            // The old process is gone and the new one did not start: the
                            // same as an exit that the restart policy may retry.
                            let detail = decision
                                .report
                                .as_ref()
                                .map(|r| r.detail.clone())
                                .unwrap_or_default();
                            self.after_exit(ExitCause::UncleanExitCode, &detail, None);
                        }
                        if let Some(reply) = reply {
                            let _ = reply.send(decision);
                        }
                    }
                    Err(error) => {
                        tracing::error!(service = %self.name, event = "guard_error", %error, "restart request failed")
                    }
                }
            }
        }
    }

    /// Raises "ACTION REQUIRED" once per given-up episode.
    fn note_given_up(&mut self, decision: &Decision, request: RestartRequest) {
        match decision.given_up_until() {
            Some(rearm_at) => {
                let announced = self
                    .announced_given_up
                    .is_some_and(|t| decision.decided_at < t);
                if !announced {
                    events::given_up(
                        &self.guard.alerts,
                        &self.name,
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
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        let mut watchdog_fired = false;
        let mut start_timed_out = false;
        let mut kill = false;
        if let Some(c) = self.child.as_mut() {
            if c.watchdog_deadline.is_some_and(|d| d <= now) && c.stopping.is_none() {
                c.watchdog_deadline = None;
                watchdog_fired = true;
            }
            if !c.ready && c.start_deadline.is_some_and(|d| d <= now) && c.stopping.is_none() {
                c.start_deadline = None;
                start_timed_out = true;
            }
            if let Some((_, at)) = &mut c.stopping
                && at.is_some_and(|a| a <= now)
            {
                *at = None;
                kill = true;
            }
        }
        if watchdog_fired {
            self.watchdog_timeout();
        }
        if start_timed_out && let Some(c) = self.child.as_mut() {
            let raw = c.pid.as_raw_nonzero().get();
            tracing::warn!(service = %self.name, event = "start_timeout", pid = raw,
                "no READY=1 within start_timeout {}: stopping pid {raw} with {}", vigil_core::format_duration(self.spec.start_timeout), self.spec.stop_signal);
            proc::signal_group(c.pid, self.spec.stop_signal);
            c.stopping = Some((StopCause::StartTimeout, Some(now + self.spec.stop_timeout)));
        }
        if kill && let Some(c) = self.child.as_ref() {
            tracing::warn!(service = %self.name, event = "exec_kill", pid = c.pid.as_raw_nonzero().get(),
                "still running {} after the signal: SIGKILL to its process group", vigil_core::format_duration(self.spec.stop_timeout));
            proc::signal_group(c.pid, Signal::KILL);
        }
        if self.pending.as_ref().is_some_and(|p| p.at <= now) {
            self.try_restart().await;
        }
    }

    /// The watchdog deadline passed: evidence first, then `watchdog_signal`.
    fn watchdog_timeout(&mut self) {
        let Some(c) = self.child.as_ref() else {
            return;
        };
        let target = c.main_pid.unwrap_or(c.pid);
        let since = c.last_ping.elapsed();
        let interval = c.watchdog.unwrap_or_default();
        let lines: Vec<String> = self.recent.iter().cloned().collect();
        let evidence = proc::hang_evidence(target, since, interval, &lines);
        let pid = c.pid;
        events::watchdog_timeout(
            &self.guard.alerts,
            &self.name,
            pid.as_raw_nonzero().get(),
            self.spec.watchdog_signal,
            &evidence,
        );
        proc::signal_group(pid, self.spec.watchdog_signal);
        let kill_at = Instant::now() + self.spec.stop_timeout;
        if let Some(c) = self.child.as_mut() {
            c.stopping = Some((StopCause::Watchdog { evidence }, Some(kill_at)));
        }
        self.persist("stopping", Some(pid), "watchdog timeout");
    }

    /// The deferred restart's moment has come: ask the guard.
    async fn try_restart(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let request = RestartRequest::new(p.source);
        let cx = self.guard.clone();
        let name = self.name.clone();
        let policy = self.policy.clone();
        if p.given_up {
            match guard::preview(&cx, &name, &policy, request).await {
                Ok(v) if v.is_allowed() => {}
                _ => {
                    self.pending = Some(Pending {
                        at: Instant::now() + GIVEN_UP_POLL,
                        ..p
                    });
                    return;
                }
            }
        }
        let why = format!("restart after {}", p.source);
        let action = Action::Run(Box::pin(self.replace(&why)));
        let result = guard::request_with_evidence(
            &cx,
            &name,
            &policy,
            action,
            request,
            p.evidence.clone(),
            IntentSync::WithOutcome,
        )
        .await;
        let decision = match result {
            Ok(d) => d,
            Err(error) => {
                tracing::error!(service = %self.name, event = "guard_error", %error, "restart request failed; retrying in 1s");
                self.pending = Some(Pending {
                    at: Instant::now() + GIVEN_UP_POLL,
                    ..p
                });
                return;
            }
        };
        self.note_given_up(&decision, request);
        match &decision.verdict {
            Verdict::Allowed { .. } => {
                if !decision.restarted() {
                    let detail = decision
                        .report
                        .as_ref()
                        .map(|r| r.detail.clone())
                        .unwrap_or_default();
                    self.after_exit(ExitCause::UncleanExitCode, &detail, None);
                }
            }
            Verdict::Skipped(skip) => {
                let wait = match skip {
                    Skip::Cooldown { wait, .. } | Skip::Backoff { wait, .. } => *wait,
                    Skip::Lock { .. } => GIVEN_UP_POLL,
                };
                self.pending = Some(Pending {
                    at: Instant::now() + wait.max(Duration::from_millis(1)),
                    ..p
                });
                self.persist("restart-pending", None, &decision.verdict.to_string());
            }
            Verdict::Denied(Denial::Limit { .. }) => {
                self.pending = Some(Pending {
                    at: Instant::now() + GIVEN_UP_POLL,
                    given_up: true,
                    ..p
                });
                self.persist("given-up", None, &decision.verdict.to_string());
            }
        }
    }

    fn on_notify(&mut self) {
        let Some(sock) = self.notify.as_ref() else {
            return;
        };
        let datagrams = sock.drain();
        for dg in datagrams {
            let Some(c) = self.child.as_ref() else {
                tracing::debug!(service = %self.name, event = "notify_ignored", "sd_notify datagram while no process runs: ignored");
                continue;
            };
            let leader = c.pid;
            let Some(sender) = dg.pid else { continue };
            if !proc::belongs_to(sender, leader) {
                tracing::warn!(service = %self.name, event = "notify_spoofed", sender = sender.as_raw_nonzero().get(),
                    "ignored sd_notify datagram from pid {}: not part of the service's process group or tree", sender.as_raw_nonzero().get());
                continue;
            }
            let mut changed = false;
            for msg in notify::parse(&dg.text) {
                changed |= self.on_notify_message(msg);
            }
            if changed && let Some(c) = self.child.as_ref() {
                let state = if c.ready { "running" } else { "starting" };
                let pid = c.pid;
                self.persist(state, Some(pid), "");
            }
            // `dg` (and any BARRIER fd) is dropped here: the sender may go on.
        }
    }

    /// Applies one message; `true` when `vigil status` should see the change.
    fn on_notify_message(&mut self, msg: Message) -> bool {
        let now = Instant::now();
        let Some(c) = self.child.as_mut() else {
            return false;
        };
        match msg {
            Message::Ready => {
                if !c.ready {
                    c.ready = true;
                    c.start_deadline = None;
                    c.last_ping = now;
                    c.watchdog_deadline = c.watchdog.map(|w| now + w);
                    let raw = c.pid.as_raw_nonzero().get();
                    tracing::info!(service = %self.name, event = "exec_ready", pid = raw,
                        "ready (READY=1) {} after start", vigil_core::format_duration(c.spawned.elapsed()));
                    self.started.send_replace(Some(clock::now()));
                    return true;
                }
            }
            Message::Watchdog => {
                c.last_ping = now;
                if c.ready && c.stopping.is_none() {
                    c.watchdog_deadline = c.watchdog.map(|w| now + w);
                }
            }
            Message::WatchdogTrigger => {
                if c.stopping.is_none() {
                    c.watchdog_deadline = Some(now);
                }
            }
            Message::WatchdogUsec(n) => {
                c.watchdog = (n > 0).then(|| usec(n));
                c.last_ping = now;
                c.watchdog_deadline = if c.ready {
                    c.watchdog.map(|w| now + w)
                } else {
                    None
                };
            }
            Message::ExtendTimeoutUsec(n) => {
                if !c.ready {
                    c.start_deadline = Some(now + usec(n));
                } else if let Some((_, at @ Some(_))) = &mut c.stopping {
                    *at = Some(now + usec(n));
                }
            }
            Message::Status(text) => {
                self.status_text = Some(text);
                return true;
            }
            Message::MainPid(p) => {
                if let Some(p) = Pid::from_raw(p)
                    && proc::belongs_to(p, c.pid)
                {
                    c.main_pid = Some(p);
                    return true;
                } else {
                    tracing::warn!(service = %self.name, event = "notify_mainpid_ignored",
                        "MAINPID={p} ignored: not part of the service's process group or tree");
                }
            }
            Message::Stopping => {
                tracing::info!(service = %self.name, event = "exec_stopping_announced", "the service announced STOPPING=1");
            }
            Message::Reloading => {
                tracing::info!(service = %self.name, event = "exec_reloading", "the service announced RELOADING=1");
            }
        }
        false
    }

    /// Queues the runtime state for `vigil status` (batched, written within a second).
    fn persist(&self, state: &str, pid: Option<Pid>, detail: &str) {
        self.guard
            .ledger
            .save_exec_state(self.state_row(state, pid, detail));
    }

    /// Writes the final runtime state and waits for it (the daemon may exit right after).
    async fn persist_now(&self, state: &str, pid: Option<Pid>, detail: &str) {
        self.persist(state, pid, detail);
        self.guard.ledger.flush_exec_states().await;
    }

    fn state_row(&self, state: &str, pid: Option<Pid>, detail: &str) -> ExecStateRow {
        ExecStateRow {
            service: self.name.to_string(),
            vigil_pid: std::process::id(),
            pid: pid.and_then(|p| u32::try_from(p.as_raw_nonzero().get()).ok()),
            main_pid: self
                .child
                .as_ref()
                .and_then(|c| c.main_pid)
                .and_then(|p| u32::try_from(p.as_raw_nonzero().get()).ok()),
            state: state.to_owned(),
            status_text: self.status_text.clone(),
            since: clock::now(),
            detail: detail.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle supervisor's task is its `run` future: keep it small, since hundreds of
    /// them wait at once (the rare, large paths are boxed when taken). A regression guard.
    #[tokio::test]
    async fn an_idle_supervisor_task_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let config = vigil_config::parse(
            "[services.s]\ndriver = \"exec\"\ncommand = [\"/bin/true\"]\n",
            &dir.path().join("vigil.toml"),
        )
        .unwrap();
        let service = &config.services[0];
        let vigil_config::model::DriverSpec::Exec(spec) = &service.driver else {
            panic!("exec");
        };
        let guard = GuardContext {
            ledger: crate::ledger::LedgerHandle::spawn(dir.path()).unwrap(),
            state_dir: dir.path().to_path_buf(),
            alerts: crate::observe::alerting::AlertHub::none(),
        };
        let (started, _) = watch::channel(None);
        let sup = Supervisor::new(
            service,
            spec.clone(),
            guard,
            started,
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let (_tx, rx) = mpsc::channel(1);
        let fut = sup.run(rx);
        let size = std::mem::size_of_val(&fut);
        eprintln!(
            "supervisor future: {size} bytes, Supervisor {} bytes, Instance {}, ExecDriver {}, Pipe {}",
            std::mem::size_of::<Supervisor>(),
            std::mem::size_of::<Instance>(),
            std::mem::size_of::<ExecDriver>(),
            std::mem::size_of::<Pipe>()
        );
        // About 1.5 KB, 1.1 KB of it the Supervisor itself (a `select!` over seven futures
        // in an `async fn` made it 4.9 KB).
        assert!(size < 2048, "supervisor future is {size} bytes");
    }
}
