//! The lifecycle's scenario scripts (`crates/vigil-core/tests/scenarios/*.scn`), run
//! through the daemon's real service actor with fake drivers, an in-memory guard and
//! tokio's paused clock: the same traces as the pure machine gives.
//!
//! What is real here: `ServiceActor` (its poll loop, effect handling, background guard and
//! driver futures, timers through the `Clock` handle), the event bus. What is simulated:
//! the service (`sim::World`, the same as the pure runner's), the guard's ledger
//! (`sim::GuardSim`), and time. Nothing here touches a process, a socket or a file.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_config::model::{
    Argv, CommandDriver, DriverSpec, ExecDriver, OnDaemonExit, OutputTarget, Ready, Service,
};
use vigil_core::event::Event;
use vigil_core::lifecycle::sim::{self, Action, CheckSim, Driving, GuardSim, Script, World};
use vigil_core::lifecycle::{Notify, Op, Operator};
use vigil_core::restart_policy::Termination;
use vigil_core::{
    GuardPolicy, Moment, RestartReport, RestartRequest, ServiceName, Signal, Source, Timestamp,
};
use vigild::drivers::{
    Driver, DriverEvent, DriverFuture, ProcessDriver, ProcessEvent, RemoteDriver,
};
use vigild::guard::{Ask, Begun, Decision, Gate, GuardError, Permit, Tracker};
use vigild::observe::bus::{Events, Published, Subscriber};
use vigild::platform::cell::Cell;
use vigild::platform::clock::Clock;
use vigild::service::actor::{Deps, ServiceActor};
use vigild::service::inbox;
use vigild::service::protocol::{Control, OperatorCommand, ServiceMsg};

type Trace = Arc<Mutex<Vec<String>>>;

fn moment_of(at: Timestamp) -> Moment {
    Moment::from_duration(at.saturating_since(sim::DAY_START))
}

/// Every published event becomes a trace line, in publication order.
struct TraceLines(Trace);

impl Subscriber for TraceLines {
    fn publish(&self, p: &Published<'_>) {
        let line = sim::trace_event(moment_of(p.at), p.event);
        self.0.lock().expect("unpoisoned").push(line);
    }
}

/// The guard over `sim::GuardSim`: the same decisions and events as the pure runner's.
struct SimGate {
    guard: Arc<Mutex<GuardSim>>,
    events: Events,
    clock: Clock,
}

impl Gate for SimGate {
    fn begin<'a>(
        &'a self,
        service: &'a ServiceName,
        _policy: &'a GuardPolicy,
        ask: Ask,
    ) -> Pin<Box<dyn Future<Output = Result<Begun, GuardError>> + Send + 'a>> {
        let request = ask.request;
        Box::pin(async move {
            let now = self.clock.wall();
            let (answer, event) = self.guard.lock().expect("unpoisoned").ask(request, now);
            self.events.publish(service, event);
            let vigil_core::lifecycle::GuardAnswer::Decided { verdict, .. } = answer else {
                unreachable!("the simulated guard always decides")
            };
            Ok(if verdict.is_allowed() {
                Begun::Allowed(Permit::simulated(service.clone(), request, verdict, now))
            } else {
                Begun::Refused(Decision {
                    verdict,
                    report: None,
                    decided_at: now,
                    finished_at: None,
                })
            })
        })
    }

    fn finish<'a>(
        &'a self,
        permit: Permit,
        report: RestartReport,
    ) -> Pin<Box<dyn Future<Output = Result<Decision, GuardError>> + Send + 'a>> {
        Box::pin(async move {
            self.events.publish(
                permit.service(),
                Event::RestartFinished {
                    request: permit.request(),
                    verdict: permit.verdict().clone(),
                    report: report.clone(),
                },
            );
            Ok(Decision {
                verdict: permit.verdict().clone(),
                report: Some(report),
                decided_at: permit.decided_at(),
                finished_at: Some(self.clock.wall()),
            })
        })
    }
}

/// A command/systemd/docker driver over the simulated service.
struct FakeRemote {
    world: Arc<Mutex<World>>,
    op: Duration,
    died: Mutex<Option<mpsc::Receiver<DriverEvent>>>,
}

impl RemoteDriver for FakeRemote {
    fn run(&self, op: Op, _tracker: Option<Tracker>) -> DriverFuture<'_, RestartReport> {
        Box::pin(async move {
            tokio::time::sleep(self.op).await;
            self.world.lock().expect("unpoisoned").op(op, self.op)
        })
    }

    fn is_running(&self) -> DriverFuture<'_, Option<bool>> {
        let up = self.world.lock().expect("unpoisoned").up;
        Box::pin(async move { Some(up) })
    }

    fn restart_blocked(&self) -> DriverFuture<'_, Option<String>> {
        Box::pin(async { None })
    }

    fn follow(
        &self,
        _service: &ServiceName,
        _cancel: CancellationToken,
    ) -> Option<mpsc::Receiver<DriverEvent>> {
        self.died.lock().expect("unpoisoned").take()
    }
}

/// What the script does to the simulated process.
enum Inject {
    Exit(Termination),
    Notify(Notify),
}

/// An exec process over the simulated service.
struct FakeProcess {
    world: Arc<Mutex<World>>,
    inject: mpsc::UnboundedReceiver<Inject>,
    exited: Option<Termination>,
}

impl ProcessDriver for FakeProcess {
    fn spawn(&mut self) -> Result<i32, String> {
        Ok(self.world.lock().expect("unpoisoned").spawn())
    }

    fn signal(&mut self, _pid: i32, signal: Signal) {
        if let Some(term) = self.world.lock().expect("unpoisoned").signal(signal) {
            self.exited = Some(term);
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<ProcessEvent> {
        if self.exited.is_some() {
            return Poll::Ready(ProcessEvent::Exited);
        }
        match self.inject.poll_recv(cx) {
            Poll::Ready(Some(Inject::Exit(term))) => {
                self.exited = Some(term);
                Poll::Ready(ProcessEvent::Exited)
            }
            Poll::Ready(Some(Inject::Notify(n))) => Poll::Ready(ProcessEvent::Notify(vec![n])),
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    fn reap(&mut self) -> Pin<Box<dyn Future<Output = Option<Termination>> + Send + '_>> {
        let term = self.exited.take();
        Box::pin(async move { term })
    }

    fn evidence(&self, pid: i32, since_ping: Duration, _interval: Duration) -> String {
        self.world
            .lock()
            .expect("unpoisoned")
            .evidence(pid, since_ping)
    }

    fn abandon(&mut self) {}

    fn detach(&mut self) {}

    fn reconfigure(&mut self, _spec: &DriverSpec) {}

    fn exec_spec(&self) -> Option<&ExecDriver> {
        None
    }
}

/// The service definition the actor is built from: the script's guard policy and a
/// driver of the script's kind (its commands are never run: the fakes stand in).
fn service(script: &Script) -> Service {
    let argv = Argv::new(vec!["/usr/bin/service".to_owned()]).expect("argv");
    let driver = match &script.driving {
        Driving::Remote { .. } => DriverSpec::Command(CommandDriver {
            restart: argv,
            start: None,
            stop: None,
            status: None,
            timeout: Duration::from_secs(60),
        }),
        Driving::Exec(p) => DriverSpec::Exec(ExecDriver {
            command: argv,
            cwd: None,
            env: Vec::new(),
            user: None,
            group: None,
            stdout: OutputTarget::Null,
            stderr: OutputTarget::Null,
            log_max_size: 1 << 20,
            log_keep: 1,
            restart: p.restart,
            restart_delay: p.restart_delay,
            success_exit_status: p.success.clone(),
            stop_signal: p.stop_signal,
            stop_timeout: p.stop_timeout,
            ready: if p.notify {
                Ready::Notify
            } else {
                Ready::Started
            },
            start_timeout: p.start_timeout,
            watchdog: p.watchdog,
            watchdog_signal: p.watchdog_signal,
            on_daemon_exit: OnDaemonExit::Stop,
        }),
    };
    Service {
        name: ServiceName::new("svc".to_owned()),
        driver,
        guard: script.policy.clone(),
        checks: Vec::new(),
        schedules: Vec::new(),
        maintenance: Vec::new(),
        after: Vec::new(),
        ready_check: None,
        alerts: Default::default(),
        fleet_key: None,
    }
}

/// Runs `script` through a real `ServiceActor` in simulated time; its trace.
async fn run(script: &Script) -> String {
    let clock = Clock::simulated(sim::DAY_START);
    let trace: Trace = Arc::default();
    let events = Events::to(vec![Arc::new(TraceLines(trace.clone()))]).with_clock(clock.clone());
    let guard = Arc::new(Mutex::new(GuardSim::new(script.policy.clone())));
    let world = Arc::new(Mutex::new(World::new()));
    let mut check = CheckSim::new(script.check);
    let service = service(script);
    let (inject, injected) = mpsc::unbounded_channel();
    let (died_tx, died_rx) = mpsc::channel(8);
    let mut injected = Some(injected);
    let mut died_rx = Some(died_rx);
    let root = CancellationToken::new();
    let mut inbox: Option<inbox::Sender<ServiceMsg>> = None;
    // The start time the actor shares, and the version of it last looked at.
    let mut started: Option<(Cell<Option<Timestamp>>, u64)> = None;
    let mut up_since: Option<Moment> = None;
    let mut spawn_actor =
        |inbox: &mut Option<inbox::Sender<ServiceMsg>>,
         started: &mut Option<(Cell<Option<Timestamp>>, u64)>| {
            let driver = match &script.driving {
                Driving::Remote { op } => Driver::Remote(Arc::new(FakeRemote {
                    world: world.clone(),
                    op: *op,
                    died: Mutex::new(died_rx.take()),
                })),
                Driving::Exec(_) => Driver::Process(Box::new(FakeProcess {
                    world: world.clone(),
                    inject: injected.take().expect("one exec actor per script"),
                    exited: None,
                })),
            };
            let deps = Deps {
                gate: Arc::new(SimGate {
                    guard: guard.clone(),
                    events: events.clone(),
                    clock: clock.clone(),
                }),
                events: events.clone(),
                clock: clock.clone(),
                ledger: None,
                follow: true,
            };
            let started_at = Cell::new(None);
            let (tx, rx) = inbox::channel(64);
            let actor = ServiceActor::new(
                &service,
                driver,
                deps,
                started_at.clone(),
                root.child_token(),
                root.clone(),
            );
            tokio::spawn(actor.run(rx));
            *inbox = Some(tx);
            *started = Some((started_at, 0));
        };
    if matches!(script.driving, Driving::Remote { .. }) {
        spawn_actor(&mut inbox, &mut started);
    }
    for (n, step) in script.steps.iter().enumerate() {
        tokio::time::sleep_until(clock.instant_of(step.at)).await;
        if let Some((cell, seen)) = &mut started
            && cell.version() != *seen
        {
            *seen = cell.version();
            if let Some(at) = cell.get() {
                up_since = Some(moment_of(at));
                check.restarted(moment_of(at));
            }
        }
        let send = |msg: ServiceMsg| {
            let inbox = inbox.clone().expect("the service runs");
            async move { inbox.send(msg).await.expect("actor alive") }
        };
        match &step.action {
            Action::Start => spawn_actor(&mut inbox, &mut started),
            Action::Request { request, repair } => {
                send(ServiceMsg::request(
                    if *repair { Op::Repair } else { Op::Restart },
                    Some(*request),
                    repair.then(|| Argv::new(vec!["true".to_owned()]).expect("argv")),
                    None,
                ))
                .await
            }
            Action::Attempt { passed } => {
                let uptime = up_since.map(|s| step.at.saturating_since(s));
                let outcome = check
                    .attempt(*passed, step.at, uptime)
                    .unwrap_or_else(|e| panic!("script line {}: {e}", step.line));
                trace.lock().expect("unpoisoned").extend(outcome.lines);
                if outcome.request {
                    send(ServiceMsg::restart(
                        RestartRequest::new(Source::Health),
                        None,
                    ))
                    .await;
                }
            }
            Action::Crash(term) => match script.driving {
                Driving::Exec(_) => {
                    if world.lock().expect("unpoisoned").process.take().is_some() {
                        inject.send(Inject::Exit(*term)).expect("actor alive");
                    }
                }
                Driving::Remote { .. } => {
                    world.lock().expect("unpoisoned").up = false;
                    died_tx.send(DriverEvent::Died).await.expect("actor alive");
                }
            },
            Action::Ready => inject
                .send(Inject::Notify(Notify::Ready))
                .expect("actor alive"),
            Action::Ping => inject
                .send(Inject::Notify(Notify::Watchdog))
                .expect("actor alive"),
            Action::Hang => world.lock().expect("unpoisoned").hang(),
            Action::Reset => {
                guard.lock().expect("unpoisoned").reset();
                send(ServiceMsg::Reset).await;
            }
            Action::OpFail => world.lock().expect("unpoisoned").op_fails = true,
            Action::Recover => world.lock().expect("unpoisoned").up = true,
            Action::Shutdown => root.cancel(),
            Action::Tick => {}
            Action::Operator(command) => {
                let wall = |m: Moment| sim::DAY_START.saturating_add(m.since_epoch());
                let (action, until) = match *command {
                    Operator::Stop { until } => (Control::Stop, until.map(wall)),
                    Operator::Start => (Control::Start, None),
                    Operator::Pause { until } => (Control::Pause, until.map(wall)),
                    Operator::Resume => (Control::Resume, None),
                };
                send(ServiceMsg::operator(
                    OperatorCommand {
                        action,
                        until,
                        caller: None,
                        reason: None,
                        source: "operator",
                    },
                    None,
                ))
                .await
            }
        }
        let _ = n;
    }
    // Let whatever is due at the last step's moment run.
    tokio::task::yield_now().await;
    let lines = trace.lock().expect("unpoisoned").clone();
    root.cancel();
    lines.join("\n")
}

async fn scenario(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vigil-core/tests/scenarios")
        .join(format!("{name}.scn"));
    let text = std::fs::read_to_string(&path).expect("read scenario");
    let (script, expected) = sim::split_scenario(&text).expect("scenario shape");
    let script = sim::parse(script).expect("script parses");
    let actual = run(&script).await;
    if let Some(diff) = sim::diff(expected, &actual) {
        panic!(
            "{name} through the actor: trace differs from the pure machine's (- expected, + actual):\n{diff}"
        );
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $name() {
                scenario(stringify!($name)).await;
            }
        )*

        #[test]
        fn every_scenario_file_runs_through_the_actor_too() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vigil-core/tests/scenarios");
            let mut files: Vec<String> = std::fs::read_dir(dir)
                .expect("scenarios dir")
                .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".scn").map(str::to_owned))
                .collect();
            files.sort();
            let mut here = vec![$(stringify!($name).to_owned()),*];
            here.sort();
            assert_eq!(files, here, "add the new scenario here too");
        }
    };
}

scenarios!(
    deferred_exit_remote,
    deferred_exit_remote_recovers,
    operator_pause,
    operator_stop_exec,
    operator_stop_for,
    seed000_cooldown,
    seed000_restart_limit,
    seed000_retry,
    seed002_crash_loop,
    seed004_watchdog,
    slow_restart_answers_health,
    stop_is_never_interrupted,
);
