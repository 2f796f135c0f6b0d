//! Seed 000's "Protection Mechanisms", replayed in simulated time.
//!
//! A script of timed events goes in, a trace comes out, one line per thing that happened,
//! compared with the expected text. [`run`] is the only place that drives the guard, the
//! retry step and the health state machine, the way the daemon does: an allowed restart
//! is appended to the history (and resets the check's health), a refused request from a
//! health check or schedule is dropped (they ask again), and one from a process that died
//! (`exit`, `watchdog`) is deferred to the verdict's retry instant (SPEC §2).
//!
//! Script lines (all times on 2025-02-14, UTC; `#` starts a comment):
//!
//! ```text
//! policy cooldown=120s max=5 window=1h        # GuardPolicy, defaults as in SPEC §2
//! backoff initial=30s factor=2 max=5m reset=10m
//! check attempts=3 delay=5s failure=1 success=1 grace=30s
//! 10:00:00 request health                     # a restart request (add `forced`)
//! 10:00:00 attempt fail                       # one attempt of a health check run
//! 10:00:00 start                              # the service (re)started outside Vigil
//! 11:00:00 tick                               # only lets time pass (deferred requests)
//! ```

use std::time::Duration;

use vigil_core::backoff::BackoffPolicy;
use vigil_core::health::{CheckHealth, RunVerdict, Thresholds};
use vigil_core::retry::{NextStep, RetryPolicy};
use vigil_core::{
    GuardPolicy, RestartRecord, RestartRequest, Source, Timestamp, Verdict, decide, format_duration,
};

/// 2025-02-14T00:00:00Z.
const DAY_START_SECS: i64 = 1_739_491_200;

struct Check {
    retry: RetryPolicy,
    thresholds: Thresholds,
    grace: Duration,
    health: CheckHealth,
    /// The attempt that ended last in the current run, and when.
    last_attempt: Option<(u32, Timestamp)>,
}

/// The edge's state in simulated time.
struct Sim {
    policy: GuardPolicy,
    check: Check,
    history: Vec<RestartRecord>,
    started: Option<Timestamp>,
    deferred: Option<(Timestamp, RestartRequest)>,
    trace: Vec<String>,
}

impl Sim {
    /// The only call of `decide`: a restart request at `now`, with the edge's bookkeeping.
    fn request(&mut self, req: RestartRequest, now: Timestamp) {
        let verdict = decide(&self.policy, &self.history, req, now);
        self.trace.push(format!("[{}] {verdict}", clock(now)));
        if let Verdict::Allowed { forced, .. } = verdict {
            self.history.push(RestartRecord {
                at: now,
                source: req.source,
                forced,
            });
            self.check.health.reset(now);
            self.started = Some(now);
            return;
        }
        let retry = verdict
            .retry_at(now)
            .expect("guard verdicts name a retry time");
        if let Verdict::Denied(_) = verdict {
            self.trace.push(format!(
                "[{}]   given-up until {}",
                clock(now),
                clock(retry)
            ));
        }
        if req.source.is_deferred_when_skipped() {
            self.trace.push(format!(
                "[{}]   {} restart deferred to {}",
                clock(now),
                req.source,
                clock(retry)
            ));
            self.deferred = Some((retry, req));
        }
    }
}

/// Runs `script` and returns its trace.
fn run(script: &str) -> String {
    let mut sim = Sim {
        policy: GuardPolicy::default(),
        check: Check {
            retry: RetryPolicy {
                attempts: 3,
                delay: Duration::from_secs(5),
            },
            thresholds: Thresholds::default(),
            grace: Duration::from_secs(30),
            health: CheckHealth::default(),
            last_attempt: None,
        },
        history: Vec::new(),
        started: None,
        deferred: None,
        trace: Vec::new(),
    };

    for (number, raw) in script.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let fail = |why: &str| -> ! { panic!("script line {}: {why}: `{raw}`", number + 1) };
        match words[0] {
            "policy" => {
                for (key, value) in settings(&words[1..]) {
                    match key {
                        "cooldown" => sim.policy.cooldown = duration(value),
                        "max" => sim.policy.max_restarts = value.parse().expect("max is a number"),
                        "window" => sim.policy.window = duration(value),
                        _ => fail("unknown policy key"),
                    }
                }
                continue;
            }
            "backoff" => {
                let mut b = BackoffPolicy {
                    initial: Duration::from_secs(30),
                    factor: 2.0,
                    max: Duration::from_secs(300),
                    reset: Duration::from_secs(600),
                };
                for (key, value) in settings(&words[1..]) {
                    match key {
                        "initial" => b.initial = duration(value),
                        "factor" => b.factor = value.parse().expect("factor is a number"),
                        "max" => b.max = duration(value),
                        "reset" => b.reset = duration(value),
                        _ => fail("unknown backoff key"),
                    }
                }
                sim.policy.backoff = Some(b);
                continue;
            }
            "check" => {
                for (key, value) in settings(&words[1..]) {
                    match key {
                        "attempts" => sim.check.retry.attempts = value.parse().expect("a number"),
                        "delay" => sim.check.retry.delay = duration(value),
                        "failure" => {
                            sim.check.thresholds.failure = value.parse().expect("a number")
                        }
                        "success" => {
                            sim.check.thresholds.success = value.parse().expect("a number")
                        }
                        "grace" => sim.check.grace = duration(value),
                        _ => fail("unknown check key"),
                    }
                }
                continue;
            }
            _ => {}
        }

        let now = parse_clock(words[0]).unwrap_or_else(|| fail("expected HH:MM:SS"));
        // Deferred restarts come back on their own before anything later happens.
        while let Some((at, req)) = sim.deferred.take_if(|(at, _)| *at <= now) {
            sim.request(req, at);
        }
        match words.get(1..) {
            Some(["request", source, rest @ ..]) => {
                let source = Source::parse(source).unwrap_or_else(|| fail("unknown source"));
                let req = match rest {
                    [] => RestartRequest::new(source),
                    ["forced"] => RestartRequest::forced(source),
                    _ => fail("expected `request SOURCE [forced]`"),
                };
                sim.request(req, now);
            }
            Some(["attempt", outcome]) => {
                let passed = match *outcome {
                    "pass" => true,
                    "fail" => false,
                    _ => fail("expected `attempt pass|fail`"),
                };
                let attempt = match sim.check.last_attempt {
                    None => 1,
                    Some((n, at)) => {
                        // The script must follow the retry delay the policy asked for.
                        let due = at.saturating_add(sim.check.retry.delay);
                        if now != due {
                            fail(&format!("attempt {} is due at {}", n + 1, clock(due)));
                        }
                        n + 1
                    }
                };
                let word = if passed { "succeeds" } else { "fails" };
                let of = sim.check.retry.attempts;
                let step = sim.check.retry.after_attempt(attempt, passed);
                match step {
                    NextStep::RetryAfter(delay) => {
                        sim.trace.push(format!(
                            "[{}] Health test {word} (attempt {attempt}/{of}), retry in {}",
                            clock(now),
                            format_duration(delay)
                        ));
                        sim.check.last_attempt = Some((attempt, now));
                    }
                    NextStep::Finish { passed } => {
                        sim.trace.push(format!(
                            "[{}] Health test {word} (attempt {attempt}/{of})",
                            clock(now)
                        ));
                        sim.check.last_attempt = None;
                        let verdict = if passed {
                            RunVerdict::Pass
                        } else {
                            RunVerdict::Fail
                        };
                        let uptime = sim.started.map(|s| now.saturating_since(s));
                        let obs = sim.check.health.observe_after_grace(
                            verdict,
                            sim.check.thresholds,
                            sim.check.grace,
                            uptime,
                            now,
                        );
                        let mut result = match (obs.in_grace, passed) {
                            (Some(left), _) => format!(
                                "in grace period ({} left), not counted",
                                format_duration(left)
                            ),
                            (None, true) => "Service is healthy, no restart needed".to_owned(),
                            (None, false) => format!(
                                "check {} ({} consecutive failures)",
                                sim.check.health.status.as_str(),
                                sim.check.health.consecutive_failures
                            ),
                        };
                        if obs.wants_action {
                            result.push_str(", restart requested");
                        }
                        sim.trace.push(format!("[{}] Result: {result}", clock(now)));
                        if obs.wants_action {
                            sim.request(RestartRequest::new(Source::Health), now);
                        }
                    }
                }
            }
            Some(["start"]) => {
                sim.started = Some(now);
                sim.trace.push(format!("[{}] Service started", clock(now)));
            }
            Some(["tick"]) => {}
            _ => fail("unknown event"),
        }
    }
    sim.trace.join("\n")
}

/// `key=value` pairs.
fn settings<'a>(words: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    words
        .iter()
        .map(|w| w.split_once('=').expect("settings are key=value"))
        .collect()
}

/// `500ms`, `30s`, `5m`, `1h`.
fn duration(text: &str) -> Duration {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .expect("a duration has a unit");
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().expect("a duration starts with a number");
    match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => panic!("unknown duration unit in `{text}`"),
    }
}

fn parse_clock(text: &str) -> Option<Timestamp> {
    let mut parts = text.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    parts
        .next()
        .is_none()
        .then(|| Timestamp::from_secs(DAY_START_SECS + h * 3600 + m * 60 + s))
}

/// `10:01:00`, or `11:00:00.001` when the instant is not on a whole second.
fn clock(t: Timestamp) -> String {
    let secs = t.as_secs() - DAY_START_SECS;
    let ms = t.as_millis().rem_euclid(1000);
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

/// Compares a trace with the expected text; on mismatch, shows both with the differing
/// lines marked.
#[track_caller]
fn check(script: &str, expected: &str) {
    let actual = run(script);
    let expected = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if actual == expected {
        return;
    }
    let (a, e): (Vec<&str>, Vec<&str>) = (actual.lines().collect(), expected.lines().collect());
    let mut diff = String::new();
    for i in 0..a.len().max(e.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => diff.push_str(&format!("   {x}\n")),
            (x, y) => {
                if let Some(x) = x {
                    diff.push_str(&format!(" - {x}\n"));
                }
                if let Some(y) = y {
                    diff.push_str(&format!(" + {y}\n"));
                }
            }
        }
    }
    panic!("trace differs (- expected, + actual):\n{diff}");
}

#[test]
fn seed_1_cooldown() {
    check(
        "
        10:00:00 request health
        10:01:00 request schedule
        10:02:30 request schedule
        ",
        "
        [10:00:00] Restart ALLOWED (1/5 per hour)
        [10:01:00] Restart SKIPPED: cooldown active (60s ago by health, need 120s, wait 60s more)
        [10:02:30] Restart ALLOWED (2/5 per hour)
        ",
    );
}

#[test]
fn cooldown_ends_exactly_at_120s() {
    check(
        "
        10:00:00 request schedule
        10:01:59 request health
        10:02:00 request health
        ",
        "
        [10:00:00] Restart ALLOWED (1/5 per hour)
        [10:01:59] Restart SKIPPED: cooldown active (119s ago by schedule, need 120s, wait 1s more)
        [10:02:00] Restart ALLOWED (2/5 per hour)
        ",
    );
}

#[test]
fn seed_2_restart_limit_with_a_rolling_window() {
    // The window is closed: the 10:00:00 restart still counts at 11:00:00 exactly (a full
    // hour has elapsed, not more), and has left it at 11:00:01, as in the seed.
    check(
        "
        10:00:00 request health
        10:05:00 request schedule
        10:10:00 request health
        10:15:00 request schedule
        10:20:00 request health
        10:25:00 request health
        11:00:00 request schedule
        11:00:01 request schedule
        ",
        "
        [10:00:00] Restart ALLOWED (1/5 per hour)
        [10:05:00] Restart ALLOWED (2/5 per hour)
        [10:10:00] Restart ALLOWED (3/5 per hour)
        [10:15:00] Restart ALLOWED (4/5 per hour)
        [10:20:00] Restart ALLOWED (5/5 per hour)
        [10:25:00] Restart DENIED: limit reached (5/5 per hour)
        [10:25:00]   given-up until 11:00:00.001
        [11:00:00] Restart DENIED: limit reached (5/5 per hour)
        [11:00:00]   given-up until 11:00:00.001
        [11:00:01] Restart ALLOWED (5/5 per hour)
        ",
    );
}

#[test]
fn seed_3_retry_logic_passes_on_the_third_attempt() {
    check(
        "
        check attempts=3 delay=5s
        10:00:00 attempt fail
        10:00:05 attempt fail
        10:00:10 attempt pass
        ",
        "
        [10:00:00] Health test fails (attempt 1/3), retry in 5s
        [10:00:05] Health test fails (attempt 2/3), retry in 5s
        [10:00:10] Health test succeeds (attempt 3/3)
        [10:00:10] Result: Service is healthy, no restart needed
        ",
    );
}

#[test]
fn seed_3_retry_logic_three_failures_request_a_restart() {
    check(
        "
        check attempts=3 delay=5s
        10:00:00 attempt fail
        10:00:05 attempt fail
        10:00:10 attempt fail
        ",
        "
        [10:00:00] Health test fails (attempt 1/3), retry in 5s
        [10:00:05] Health test fails (attempt 2/3), retry in 5s
        [10:00:10] Health test fails (attempt 3/3)
        [10:00:10] Result: check failing (1 consecutive failures), restart requested
        [10:00:10] Restart ALLOWED (1/5 per hour)
        ",
    );
}

#[test]
fn no_health_restart_inside_grace_and_failing_run_after_it_hits_cooldown() {
    // The restart at 10:00:10 starts the new instance's 30s grace; its failed run at
    // 10:00:30 is not counted; the one at 10:01:00 is, and the guard's cooldown holds it.
    check(
        "
        check attempts=1 grace=30s
        10:00:10 request exit
        10:00:30 attempt fail
        10:01:00 attempt fail
        10:02:10 attempt fail
        ",
        "
        [10:00:10] Restart ALLOWED (1/5 per hour)
        [10:00:30] Health test fails (attempt 1/1)
        [10:00:30] Result: in grace period (10s left), not counted
        [10:01:00] Health test fails (attempt 1/1)
        [10:01:00] Result: check failing (1 consecutive failures), restart requested
        [10:01:00] Restart SKIPPED: cooldown active (50s ago by exit, need 120s, wait 70s more)
        [10:02:10] Health test fails (attempt 1/1)
        [10:02:10] Result: check failing (2 consecutive failures), restart requested
        [10:02:10] Restart ALLOWED (2/5 per hour)
        ",
    );
}

#[test]
fn force_goes_beyond_the_limit_and_delays_the_re_arm() {
    // Forced restarts count in the window: with seven in it and a budget of five, three
    // must leave before one more is allowed (10:00, 10:05 and 10:10: 11:10:00 plus 1ms).
    check(
        "
        10:00:00 request health
        10:05:00 request health
        10:10:00 request health
        10:15:00 request health
        10:20:00 request health
        10:21:00 request manual forced
        10:22:00 request manual forced
        10:30:00 request schedule
        11:00:01 request schedule
        11:05:01 request schedule
        ",
        "
        [10:00:00] Restart ALLOWED (1/5 per hour)
        [10:05:00] Restart ALLOWED (2/5 per hour)
        [10:10:00] Restart ALLOWED (3/5 per hour)
        [10:15:00] Restart ALLOWED (4/5 per hour)
        [10:20:00] Restart ALLOWED (5/5 per hour)
        [10:21:00] Restart ALLOWED (6/5 per hour, forced)
        [10:22:00] Restart ALLOWED (7/5 per hour, forced)
        [10:30:00] Restart DENIED: limit reached (7/5 per hour)
        [10:30:00]   given-up until 11:10:00.001
        [11:00:01] Restart DENIED: limit reached (6/5 per hour)
        [11:00:01]   given-up until 11:10:00.001
        [11:05:01] Restart DENIED: limit reached (5/5 per hour)
        [11:05:01]   given-up until 11:10:00.001
        ",
    );
}

#[test]
fn given_up_then_a_deferred_exit_restarts_when_the_window_frees() {
    // A process that died is not dropped: its restart waits for the budget to re-arm.
    check(
        "
        policy cooldown=60s max=3 window=1h
        10:00:00 request exit
        10:10:00 request exit
        10:20:00 request exit
        10:30:00 request exit
        11:30:00 tick
        ",
        "
        [10:00:00] Restart ALLOWED (1/3 per hour)
        [10:10:00] Restart ALLOWED (2/3 per hour)
        [10:20:00] Restart ALLOWED (3/3 per hour)
        [10:30:00] Restart DENIED: limit reached (3/3 per hour)
        [10:30:00]   given-up until 11:00:00.001
        [10:30:00]   exit restart deferred to 11:00:00.001
        [11:00:00.001] Restart ALLOWED (3/3 per hour)
        ",
    );
}

#[test]
fn backoff_streak_waits_grow_and_reset_after_healthy_uptime() {
    check(
        "
        policy cooldown=10s max=10 window=1h
        backoff initial=30s factor=2 max=5m reset=10m
        10:00:00 request exit
        10:00:20 request watchdog
        10:00:50 request exit
        10:02:00 request exit
        10:20:00 request exit
        ",
        "
        [10:00:00] Restart ALLOWED (1/10 per hour)
        [10:00:20] Restart SKIPPED: backoff active (20s ago, 1 quick restart in a row, need 30s, wait 10s more)
        [10:00:20]   watchdog restart deferred to 10:00:30
        [10:00:30] Restart ALLOWED (2/10 per hour)
        [10:00:50] Restart SKIPPED: backoff active (20s ago, 2 quick restarts in a row, need 60s, wait 40s more)
        [10:00:50]   exit restart deferred to 10:01:30
        [10:01:30] Restart ALLOWED (3/10 per hour)
        [10:02:00] Restart SKIPPED: backoff active (30s ago, 3 quick restarts in a row, need 120s, wait 90s more)
        [10:02:00]   exit restart deferred to 10:03:30
        [10:03:30] Restart ALLOWED (4/10 per hour)
        [10:20:00] Restart ALLOWED (5/10 per hour)
        ",
    );
}

#[test]
fn a_skipped_schedule_is_dropped_not_deferred() {
    check(
        "
        10:00:00 request watchdog
        10:01:00 request schedule
        10:30:00 tick
        ",
        "
        [10:00:00] Restart ALLOWED (1/5 per hour)
        [10:01:00] Restart SKIPPED: cooldown active (60s ago by watchdog, need 120s, wait 60s more)
        ",
    );
}
