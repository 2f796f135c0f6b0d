//! Property tests of the guard's loop-safety invariants (SPEC §2, GUIDE "Tests").
//!
//! Random policies meet random request sequences in simulated time; an allowed verdict
//! appends a `RestartRecord`, as the edge does. The properties hold for every input, so
//! they also hold for a wall clock that steps backwards.

use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::select;
use vigil_core::backoff::BackoffPolicy;
use vigil_core::health::{CheckHealth, RunVerdict, Thresholds};
use vigil_core::{GuardPolicy, RestartRecord, RestartRequest, Source, Timestamp, Verdict, decide};

/// 2025-02-14T10:00:00Z: scenarios start at a realistic instant, far from the extremes.
const START_MS: i64 = 1_739_527_200_000;

fn backoff() -> impl Strategy<Value = BackoffPolicy> {
    (
        1u64..300_000,
        1.0f64..4.0,
        1u64..3_600_000,
        1_000u64..7_200_000,
    )
        .prop_map(|(initial, factor, max, reset)| BackoffPolicy {
            initial: Duration::from_millis(initial),
            factor,
            max: Duration::from_millis(max.max(initial)),
            reset: Duration::from_millis(reset),
        })
}

fn policy() -> impl Strategy<Value = GuardPolicy> {
    (
        0u64..=600_000,
        0u32..=10,
        1_000u64..=7_200_000,
        proptest::option::of(backoff()),
    )
        .prop_map(|(cooldown, max_restarts, window, backoff)| GuardPolicy {
            cooldown: Duration::from_millis(cooldown),
            max_restarts,
            window: Duration::from_millis(window),
            lock_timeout: Duration::from_secs(10),
            backoff,
        })
}

#[derive(Clone, Copy, Debug)]
struct Step {
    /// Milliseconds since the previous request; negative when the clock stepped back.
    delta_ms: i64,
    source: Source,
    forced: bool,
}

/// Requests for `policy`: random gaps, plus gaps of exactly the policy's own durations
/// (and 1ms either side), where off-by-one errors at the edges of the window and the
/// cooldown would show.
fn steps(policy: &GuardPolicy, min_delta_ms: i64) -> impl Strategy<Value = Vec<Step>> + use<> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let mut edges = vec![ms(policy.window), ms(policy.cooldown)];
    if let Some(b) = &policy.backoff {
        edges.extend([ms(b.initial), ms(b.reset)]);
    }
    let edges: Vec<i64> = edges
        .into_iter()
        .flat_map(|e| [e.saturating_sub(1), e, e.saturating_add(1)])
        .filter(|e| *e >= 0)
        .collect();
    let step = (
        prop_oneof![
            // Bursts (same instant, a few seconds) and long gaps both matter.
            3 => 0i64..10_000,
            3 => 0i64..600_000,
            1 => 0i64..7_200_000,
            2 => select(edges),
            1 => min_delta_ms..=0,
        ],
        select(Source::ALL.to_vec()),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(delta_ms, source, forced)| Step {
            delta_ms,
            source,
            forced,
        });
    proptest::collection::vec(step, 1..80)
}

/// A policy and requests for it.
fn scenario(min_delta_ms: i64) -> impl Strategy<Value = (GuardPolicy, Vec<Step>)> {
    policy().prop_flat_map(move |p| {
        let steps = steps(&p, min_delta_ms);
        (Just(p), steps)
    })
}

/// One decision of the simulation, kept for the checks.
struct Decided {
    now: Timestamp,
    request: RestartRequest,
    verdict: Verdict,
    /// The history the decision saw.
    history_len: usize,
}

/// Drives `decide` through `steps`, appending a record for every allowed restart.
fn simulate(policy: &GuardPolicy, steps: &[Step]) -> (Vec<RestartRecord>, Vec<Decided>) {
    let mut now = Timestamp::from_millis(START_MS);
    let mut history = Vec::new();
    let mut decided = Vec::new();
    for step in steps {
        now = Timestamp::from_millis(now.as_millis() + step.delta_ms);
        let request = RestartRequest {
            source: step.source,
            forced: step.forced,
        };
        let verdict = decide(policy, &history, request, now);
        decided.push(Decided {
            now,
            request,
            verdict: verdict.clone(),
            history_len: history.len(),
        });
        if let Verdict::Allowed { forced, .. } = verdict {
            history.push(RestartRecord {
                at: now,
                source: step.source,
                forced,
            });
        }
    }
    (history, decided)
}

/// (a) No interval of length `window`, ends included, holds more than `max_restarts`
/// unforced restarts. The fullest interval starts at one of them, so those are the only
/// intervals to check.
fn check_budget(policy: &GuardPolicy, history: &[RestartRecord]) -> Result<(), TestCaseError> {
    let unforced: Vec<i64> = history
        .iter()
        .filter(|r| !r.forced)
        .map(|r| r.at.as_millis())
        .collect();
    let window = i64::try_from(policy.window.as_millis()).unwrap_or(i64::MAX);
    for &start in &unforced {
        let inside = unforced
            .iter()
            .filter(|&&at| at >= start && at - start <= window)
            .count();
        prop_assert!(
            inside <= policy.max_restarts as usize,
            "{inside} unforced restarts in [{start}, {start}+{window}] > max {}: {history:?}",
            policy.max_restarts
        );
    }
    Ok(())
}

/// (b) Two restarts are never closer than `cooldown` unless the later one (in decision
/// order) was forced.
fn check_cooldown(policy: &GuardPolicy, history: &[RestartRecord]) -> Result<(), TestCaseError> {
    let cooldown = i64::try_from(policy.cooldown.as_millis()).unwrap_or(i64::MAX);
    for (j, later) in history.iter().enumerate() {
        if later.forced {
            continue;
        }
        for earlier in &history[..j] {
            let gap = later.at.as_millis().abs_diff(earlier.at.as_millis());
            prop_assert!(
                gap >= cooldown.unsigned_abs(),
                "restarts {}ms apart with cooldown {cooldown}ms: {earlier:?} then {later:?}",
                gap
            );
        }
    }
    Ok(())
}

/// (c) Every refusal names a retry instant strictly after `now`.
fn check_progress(decided: &[Decided]) -> Result<(), TestCaseError> {
    for d in decided {
        if !d.verdict.is_allowed() {
            let retry = d.verdict.retry_at(d.now);
            prop_assert!(
                retry.is_some_and(|r| r > d.now),
                "{} at {:?} retries at {retry:?}",
                d.verdict,
                d.now
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn budget_cooldown_and_progress_hold_with_a_monotonic_clock(
        (policy, steps) in scenario(0),
    ) {
        let (history, decided) = simulate(&policy, &steps);
        check_budget(&policy, &history)?;
        check_cooldown(&policy, &history)?;
        check_progress(&decided)?;
        // (c) Asking again at the retry instant, with nothing else restarted meanwhile,
        // never meets the same obstacle again: a wait always ends. (A budget of zero is the
        // exception by design: it never re-arms by itself, only a reset or force ends it.)
        for d in &decided {
            let Some(retry) = d.verdict.retry_at(d.now) else { continue };
            if policy.max_restarts == 0 {
                prop_assert_eq!(d.verdict.reason(), Some("limit"));
                continue;
            }
            let again = decide(&policy, &history[..d.history_len], d.request, retry);
            prop_assert!(
                again.reason() != d.verdict.reason(),
                "at {:?}: {} ; again at {:?}: {}",
                d.now, d.verdict, retry, again
            );
            if let Some(next) = again.retry_at(retry) {
                prop_assert!(next > retry);
            }
        }
    }

    #[test]
    fn a_clock_stepping_back_never_allows_more(
        (policy, steps) in scenario(-7_200_000),
    ) {
        // (d) Restarts recorded "in the future" count as in the window and as zero seconds
        // ago, so the budget and cooldown hold over the timestamps whatever the clock did.
        let (history, decided) = simulate(&policy, &steps);
        check_budget(&policy, &history)?;
        check_cooldown(&policy, &history)?;
        check_progress(&decided)?;
    }

    #[test]
    fn the_order_of_the_history_does_not_matter(
        policy in policy(),
        times in proptest::collection::btree_set(-7_200_000i64..7_200_000, 0..60),
        now_offset in -600_000i64..7_200_000,
        forced in proptest::bool::weighted(0.2),
        seed in any::<u64>(),
    ) {
        // Distinct instants, so "the latest restart" names one source whatever the order.
        let sorted: Vec<RestartRecord> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| RestartRecord {
                at: Timestamp::from_millis(START_MS + t),
                source: Source::ALL[i % Source::ALL.len()],
                forced: i % 5 == 0,
            })
            .collect();
        // A cheap deterministic shuffle: the sorted fast path against the general pass.
        let mut shuffled = sorted.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.swap(i, usize::try_from(x % (i as u64 + 1)).expect("small"));
        }
        let now = Timestamp::from_millis(START_MS + now_offset);
        let request = RestartRequest { source: Source::Schedule, forced };
        let a = decide(&policy, &sorted, request, now);
        let b = decide(&policy, &shuffled, request, now);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn decide_never_panics_on_extreme_inputs(
        history in proptest::collection::vec(
            (any::<i64>(), select(Source::ALL.to_vec()), any::<bool>()),
            0..40,
        ),
        now in prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), any::<i64>()],
        cooldown in any::<u64>(),
        window in any::<u64>(),
        max_restarts in any::<u32>(),
        backoff in proptest::option::of((any::<u64>(), any::<f64>(), any::<u64>(), any::<u64>())),
        forced in any::<bool>(),
    ) {
        let policy = GuardPolicy {
            cooldown: Duration::from_millis(cooldown),
            max_restarts: max_restarts % 12,
            window: Duration::from_millis(window),
            lock_timeout: Duration::from_secs(10),
            backoff: backoff.map(|(initial, factor, max, reset)| BackoffPolicy {
                initial: Duration::from_millis(initial),
                factor,
                max: Duration::from_millis(max),
                reset: Duration::from_millis(reset),
            }),
        };
        let history: Vec<RestartRecord> = history
            .into_iter()
            .map(|(at, source, forced)| RestartRecord {
                at: Timestamp::from_millis(at),
                source,
                forced,
            })
            .collect();
        let now = Timestamp::from_millis(now);
        let request = RestartRequest { source: Source::Health, forced };
        let verdict = decide(&policy, &history, request, now);
        // The message renders, and a retry is after `now` (at the very end of time it can
        // only be `now` itself).
        prop_assert!(!verdict.to_string().is_empty());
        if let Some(retry) = verdict.retry_at(now) {
            if now.as_millis() == i64::MAX {
                prop_assert_eq!(retry, now);
            } else {
                prop_assert!(retry > now, "{} at {:?} retries at {:?}", verdict, now, retry);
            }
        }
    }

    #[test]
    fn health_never_acts_inside_grace_nor_below_the_failure_threshold(
        failure in 1u32..6,
        success in 1u32..6,
        grace_s in 0u64..120,
        runs in proptest::collection::vec(
            (
                select(vec![RunVerdict::Pass, RunVerdict::Warn, RunVerdict::Fail]),
                proptest::option::of(0u64..240),
            ),
            1..60,
        ),
    ) {
        // (e)
        let thresholds = Thresholds { failure, success };
        let grace = Duration::from_secs(grace_s);
        let mut health = CheckHealth::default();
        for (i, (run, uptime_s)) in runs.into_iter().enumerate() {
            let now = Timestamp::from_secs(START_MS / 1000 + i as i64 * 30);
            let uptime = uptime_s.map(Duration::from_secs);
            let before = health;
            let o = health.observe_after_grace(run, thresholds, grace, uptime, now);
            if uptime.is_some_and(|u| u < grace) {
                prop_assert!(!o.wants_action, "action inside grace: {o:?}");
                prop_assert!(o.in_grace.is_some());
                prop_assert_eq!(health, before, "a run inside grace must not count");
            } else {
                prop_assert!(o.in_grace.is_none());
            }
            if o.wants_action {
                prop_assert!(run != RunVerdict::Pass);
                prop_assert!(
                    health.consecutive_failures >= failure,
                    "action after {} consecutive failures, threshold {failure}",
                    health.consecutive_failures
                );
            }
            // The converse: a failed run that reaches the threshold outside grace asks.
            let counted = o.in_grace.is_none();
            if run == RunVerdict::Fail && counted && health.consecutive_failures >= failure {
                prop_assert!(o.wants_action);
            }
        }
    }
}
