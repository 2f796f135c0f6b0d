//! Properties of the lifecycle machine over random runs in simulated time.
//!
//! Every run goes through `sim::Runner` (the same harness as the scenario scripts) with a
//! random guard policy, a random exec or remote service and a random sequence of crashes,
//! requests, hangs, resets and failing operations; the properties are checked on
//! everything the runner saw.
//!
//! - never two driver operations at once for a service, never two processes at once;
//! - every allowed restart ends with its outcome recorded, even across a shutdown;
//! - no restart from any source while an operator holds the service (stopped, paused);
//! - a stop in progress is never interrupted by a restart (no guard request and no spawn
//!   between a stop signal and the process's exit);
//! - given-up is announced exactly once per episode;
//! - an exit or watchdog restart that was refused runs once the guard allows it: asked
//!   again exactly at the instant the refusal named (never earlier: no polling; never
//!   later or never: not dropped), and the service ends up running.

use std::time::Duration;

use proptest::prelude::*;
use vigil_core::event::Event;
use vigil_core::lifecycle::sim::{self, Action, CheckSpec, Driving, Runner, Script, Seen};
use vigil_core::lifecycle::{Effect, GuardAnswer, Input, Op, Operator, ProcessSpec, RequestId};
use vigil_core::restart_policy::{RestartPolicy, SuccessStatus, Termination};
use vigil_core::retry::RetryPolicy;
use vigil_core::{GuardPolicy, Moment, RestartRequest, Signal, Source, Verdict};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn policy() -> impl Strategy<Value = GuardPolicy> {
    (0u64..300, 1u32..6, 60u64..3600).prop_map(|(cooldown, max, window)| GuardPolicy {
        cooldown: secs(cooldown),
        max_restarts: max,
        window: secs(window),
        ..GuardPolicy::default()
    })
}

fn restart_policy() -> impl Strategy<Value = RestartPolicy> {
    prop::sample::select(RestartPolicy::ALL.to_vec())
}

fn driving() -> impl Strategy<Value = Driving> {
    prop_oneof![
        (0u64..20).prop_map(|op| Driving::Remote { op: secs(op) }),
        (
            restart_policy(),
            0u64..5,
            any::<bool>(),
            prop::option::of(1u64..30),
            1u64..10
        )
            .prop_map(|(restart, delay, notify, watchdog, stop)| {
                Driving::Exec(ProcessSpec {
                    command: "/bin/service".to_owned(),
                    restart,
                    success: SuccessStatus::default(),
                    restart_delay: secs(delay),
                    notify,
                    start_timeout: secs(20),
                    watchdog: watchdog.map(secs),
                    watchdog_signal: Signal::ABRT,
                    stop_signal: Signal::TERM,
                    stop_timeout: secs(stop),
                })
            }),
    ]
}

/// Mostly short pauses (things overlap: requests during stops, crashes during waits),
/// sometimes long ones (windows expire, budgets re-arm).
fn pause() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0u64..8_000, 1 => 0u64..400_000]
}

fn action() -> impl Strategy<Value = Action> {
    let source = prop::sample::select(Source::ALL.to_vec());
    prop_oneof![
        4 => (0i32..3).prop_map(|c| Action::Crash(Termination::Code(c))),
        1 => Just(Action::Crash(Termination::Signal(Signal::SEGV))),
        4 => (source, any::<bool>(), prop::bool::weighted(0.1)).prop_map(|(s, forced, repair)| {
            let request = if forced { RestartRequest::forced(s) } else { RestartRequest::new(s) };
            Action::Request { request, repair }
        }),
        2 => Just(Action::Ready),
        2 => Just(Action::Ping),
        1 => Just(Action::Hang),
        1 => Just(Action::Reset),
        1 => Just(Action::OpFail),
        1 => Just(Action::Recover),
        3 => Just(Action::Tick),
        1 => Just(Action::Shutdown),
        1 => prop::option::of(0u64..60).prop_map(|s| Action::Operator(Operator::Stop {
            until: s.map(|s| Moment::ZERO + Duration::from_secs(100_000 + s)),
        })),
        1 => Just(Action::Operator(Operator::Start)),
        1 => prop::option::of(0u64..60).prop_map(|s| Action::Operator(Operator::Pause {
            until: s.map(|s| Moment::ZERO + Duration::from_secs(s)),
        })),
        1 => Just(Action::Operator(Operator::Resume)),
    ]
}

fn script(policy: GuardPolicy, driving: Driving) -> Script {
    Script {
        policy,
        guard_delay: Duration::ZERO,
        driving,
        check: CheckSpec {
            retry: RetryPolicy {
                attempts: 1,
                delay: secs(1),
            },
            thresholds: Default::default(),
            grace: Duration::ZERO,
        },
        steps: Vec::new(),
    }
}

/// Runs `actions` (each after a pause), starting an exec service first, then lets
/// `horizon` of quiet time pass.
fn run(
    script: &Script,
    actions: &[(u64, Action)],
    horizon: Duration,
) -> Result<Runner, TestCaseError> {
    let mut runner = Runner::new(script);
    let mut at = Moment::ZERO;
    if matches!(script.driving, Driving::Exec(_)) {
        runner
            .apply(&Action::Start, 0)
            .map_err(TestCaseError::fail)?;
    }
    for (i, (pause, action)) in actions.iter().enumerate() {
        at = at + Duration::from_millis(*pause);
        runner.run_until(at);
        runner.apply(action, i + 1).map_err(TestCaseError::fail)?;
    }
    runner.run_until(at + horizon);
    Ok(runner)
}

/// Checks the invariants every run must keep.
fn invariants(runner: &Runner) -> Result<(), TestCaseError> {
    let mut permits = 0u32;
    let mut ops = 0u32;
    let mut alive: Option<i32> = None;
    let mut stopping: Option<i32> = None;
    let mut episode: Option<Moment> = None;
    let mut expect_given_up: Option<bool> = None;
    let mut held = false;
    for (i, (at, seen)) in runner.seen.iter().enumerate() {
        let at = *at;
        let here = || format!("at {} (record {i}): {seen:?}", sim::clock(at));
        match seen {
            Seen::Input(Input::Guard(GuardAnswer::Decided {
                verdict,
                retry_after,
            })) => {
                match verdict {
                    Verdict::Allowed { .. } => {
                        permits += 1;
                        episode = None;
                    }
                    Verdict::Denied(_) => {
                        let open = episode.is_some_and(|until| at < until);
                        expect_given_up = Some(!open);
                        let until = at + retry_after.unwrap_or(Duration::from_secs(1));
                        episode = Some(episode.map_or(until, |e| e.max(until)));
                    }
                    Verdict::Skipped(_) => {}
                }
                prop_assert!(permits <= 1, "two permits held: {}", here());
            }
            Seen::Input(Input::Reset) => episode = None,
            Seen::Input(Input::Operator { command, .. }) => {
                held = match command {
                    Operator::Stop { .. } | Operator::Pause { .. } => true,
                    Operator::Start | Operator::Resume => false,
                };
            }
            Seen::Effect(Effect::Emit(Event::HoldExpired { .. })) => held = false,
            Seen::Effect(Effect::Emit(Event::GivenUp { .. })) => {
                prop_assert_eq!(
                    expect_given_up.take(),
                    Some(true),
                    "given-up announced outside the first denial of an episode: {}",
                    here()
                );
            }
            Seen::Effect(Effect::Finish { .. }) => {
                prop_assert!(permits == 1, "finish without a permit: {}", here());
                permits -= 1;
            }
            Seen::Effect(Effect::AskGuard { .. }) => {
                prop_assert!(
                    !held,
                    "a restart while an operator holds the service: {}",
                    here()
                );
                prop_assert!(
                    permits == 0,
                    "guard asked while an operation runs: {}",
                    here()
                );
                prop_assert!(stopping.is_none(), "guard asked during a stop: {}", here());
            }
            Seen::Effect(Effect::RunOp { .. }) => {
                ops += 1;
                prop_assert!(ops <= 1, "two driver operations at once: {}", here());
            }
            Seen::Input(Input::OpDone(_)) => ops = ops.saturating_sub(1),
            Seen::Effect(Effect::Spawn) => {
                prop_assert!(alive.is_none(), "spawned while a process runs: {}", here());
                prop_assert!(stopping.is_none(), "spawned during a stop: {}", here());
            }
            Seen::Input(Input::Spawned { pid }) => alive = Some(*pid),
            Seen::Effect(Effect::Signal { pid, signal }) if *signal != Signal::KILL => {
                prop_assert_eq!(alive, Some(*pid), "signal to a dead process: {}", here());
                stopping = Some(*pid);
            }
            Seen::Input(Input::Exited { .. }) | Seen::Effect(Effect::Abandon) => {
                alive = None;
                stopping = None;
            }
            _ => {}
        }
        // A denial's announcement follows it in the same step, or never.
        if let Seen::Input(Input::Guard(_)) = seen {
        } else if matches!(seen, Seen::Input(_) | Seen::Timeout) && expect_given_up == Some(true) {
            return Err(TestCaseError::fail(format!(
                "a new episode's first denial was not announced, before {}",
                here()
            )));
        } else if matches!(seen, Seen::Input(_) | Seen::Timeout) {
            expect_given_up = None;
        }
    }
    if runner.machine.is_finished() {
        // Every permit ended with an outcome, even when Vigil stopped mid-request.
        prop_assert_eq!(permits, 0, "a permit was never finished");
        prop_assert_eq!(ops, 0, "a driver operation was never awaited");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_runs_keep_the_invariants(
        policy in policy(),
        driving in driving(),
        actions in prop::collection::vec((pause(), action()), 0..40),
        guard_delay in prop_oneof![Just(0u64), 0u64..3000],
    ) {
        let mut script = script(policy, driving);
        script.guard_delay = Duration::from_millis(guard_delay);
        let runner = run(&script, &actions, secs(7200))?;
        invariants(&runner)?;
    }

    /// Only crashes and time: every exit restart the guard refused is asked again exactly
    /// when the refusal said, and the service ends up running.
    #[test]
    fn a_refused_exit_restart_runs_exactly_when_the_guard_allows(
        policy in policy(),
        delay in 0u64..5,
        crashes in prop::collection::vec(0u64..400_000, 1..25),
    ) {
        let restart_delay = secs(delay);
        let script = script(policy.clone(), Driving::Exec(ProcessSpec {
            command: "/bin/service".to_owned(),
            restart: RestartPolicy::Always,
            success: SuccessStatus::default(),
            restart_delay,
            notify: false,
            start_timeout: secs(20),
            watchdog: None,
            watchdog_signal: Signal::ABRT,
            stop_signal: Signal::TERM,
            stop_timeout: secs(5),
        }));
        let actions: Vec<(u64, Action)> = crashes
            .into_iter()
            .map(|pause| (pause, Action::Crash(Termination::Code(1))))
            .collect();
        // Long enough for any budget to re-arm and any wait to end.
        let runner = run(&script, &actions, policy.window + policy.cooldown + secs(60))?;
        invariants(&runner)?;
        let mut due: Option<Moment> = None;
        for (at, seen) in &runner.seen {
            match seen {
                Seen::Input(Input::Exited { .. }) => due = Some(*at + restart_delay),
                Seen::Effect(Effect::AskGuard { id, request, .. })
                    if *id == RequestId::INTERNAL =>
                {
                    prop_assert_eq!(request.source, Source::Exit);
                    prop_assert_eq!(
                        Some(*at),
                        due,
                        "the deferred restart was asked at {} instead of when allowed",
                        sim::clock(*at)
                    );
                }
                Seen::Input(Input::Guard(GuardAnswer::Decided { verdict, retry_after })) => {
                    due = (!verdict.is_allowed())
                        .then(|| *at + retry_after.unwrap_or(Duration::from_secs(1)));
                }
                _ => {}
            }
        }
        prop_assert!(
            runner.world.process.is_some(),
            "the service is not running at the end: {:?}",
            runner.trace.last()
        );
        prop_assert!(runner.machine.deferred_until().is_none());
    }
}

#[test]
fn a_reset_lets_a_given_up_restart_go_at_once() {
    let mut s = script(
        GuardPolicy {
            cooldown: Duration::ZERO,
            max_restarts: 1,
            window: secs(3600),
            ..GuardPolicy::default()
        },
        Driving::Exec(ProcessSpec {
            command: "/bin/service".to_owned(),
            restart: RestartPolicy::Always,
            success: SuccessStatus::default(),
            restart_delay: Duration::ZERO,
            notify: false,
            start_timeout: secs(20),
            watchdog: None,
            watchdog_signal: Signal::ABRT,
            stop_signal: Signal::TERM,
            stop_timeout: secs(5),
        }),
    );
    s.steps.clear();
    let runner = run(
        &s,
        &[
            (1000, Action::Crash(Termination::Code(1))),
            (1000, Action::Crash(Termination::Code(1))),
            (60_000, Action::Reset),
        ],
        secs(1),
    )
    .expect("runs");
    let trace = runner.trace.join("\n");
    assert!(trace.contains("[00:00:02] ACTION REQUIRED"), "{trace}");
    assert!(
        trace.contains("[00:01:02] Restart ALLOWED (1/1 per hour) (source exit)"),
        "{trace}"
    );
    assert!(runner.world.process.is_some());
    let _ = Op::Restart;
}
