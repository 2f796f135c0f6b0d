//! `kind = "heartbeat"`: checks that are pushed (`vigil heartbeat SERVICE/CHECK`), not
//! probed. The push is a ledger write, so it works from any process, with or without a
//! daemon; evaluating it is a ledger read.
//!
//! Before the first heartbeat, `ttl` counts from when the check started: in the daemon,
//! when its check loop started; in one-shot `vigil check` (cron mode), which has no memory
//! of its own, from when any Vigil first evaluated the check, as the ledger's saved state
//! of the check says (see [`one_shot_since`]). So a freshly configured heartbeat check
//! passes ("waiting") until `ttl` has passed, in both modes.

use std::time::Duration;

use vigil_checks::CheckRun;
use vigil_config::model::HeartbeatCheck;
use vigil_core::health::{HealthStatus, RunVerdict};
use vigil_core::{Timestamp, format_duration};

use crate::ledger::{CheckStateRow, LedgerError, LedgerHandle};

/// Evaluates a heartbeat check at `now`. `watching_since` is when monitoring started
/// (the daemon's check task); `None` in one-shot `vigil check`, where the check's saved
/// state stands in for it.
pub async fn evaluate(
    ledger: &LedgerHandle,
    service: &str,
    check: &str,
    spec: &HeartbeatCheck,
    watching_since: Option<Timestamp>,
    now: Timestamp,
) -> Result<CheckRun, LedgerError> {
    let (s, c) = (service.to_owned(), check.to_owned());
    let (last, since) = ledger
        .call(move |l| {
            let last = l.last_heartbeat(&s, &c)?;
            let since = match (last, watching_since) {
                (None, None) => {
                    let rows = l.check_states()?;
                    let row = rows.iter().find(|r| r.service == s && r.check == c);
                    one_shot_since(row, now)
                }
                _ => watching_since,
            };
            Ok((last, since))
        })
        .await?;
    Ok(judge(spec.ttl, last, since, now))
}

/// When a one-shot run's `ttl` counts from, for a check that never received a heartbeat:
/// the first time any Vigil evaluated it. No saved state: this run is the first, so now. A
/// saved state that is passing (or unknown, after a restart of the service): without a
/// heartbeat the check can only have passed by waiting, so since its status last changed,
/// which is when that wait began. A failing (or warning) one has waited out its `ttl`
/// already: `None`, no more waiting.
fn one_shot_since(row: Option<&CheckStateRow>, now: Timestamp) -> Option<Timestamp> {
    let Some(row) = row else {
        return Some(now);
    };
    match row.health.status {
        HealthStatus::Failing | HealthStatus::Warning => None,
        HealthStatus::Passing | HealthStatus::Unknown => {
            Some(row.health.last_change.or(row.last_run).unwrap_or(now))
        }
    }
}

fn judge(
    ttl: Duration,
    last: Option<Timestamp>,
    watching_since: Option<Timestamp>,
    now: Timestamp,
) -> CheckRun {
    let ttl_text = format_duration(ttl);
    let (verdict, reason) = match (last, watching_since) {
        (Some(at), since) => {
            // A heartbeat from before monitoring started still counts from monitoring start.
            let reference = since.map_or(at, |s| at.max(s));
            let age = now.saturating_since(reference);
            if age <= ttl {
                (
                    RunVerdict::Pass,
                    format!(
                        "last heartbeat {} ago (ttl {ttl_text})",
                        format_duration(now.saturating_since(at))
                    ),
                )
            } else {
                (
                    RunVerdict::Fail,
                    format!(
                        "no heartbeat for {} (last at {at}), expected one every {ttl_text}",
                        format_duration(age)
                    ),
                )
            }
        }
        (None, Some(since)) => {
            let waited = now.saturating_since(since);
            if waited <= ttl {
                (
                    RunVerdict::Pass,
                    format!(
                        "no heartbeat yet; waiting ({} of ttl {ttl_text})",
                        format_duration(waited)
                    ),
                )
            } else {
                (
                    RunVerdict::Fail,
                    format!(
                        "no heartbeat received in {} (ttl {ttl_text})",
                        format_duration(waited)
                    ),
                )
            }
        }
        (None, None) => (
            RunVerdict::Fail,
            format!("no heartbeat ever received (ttl {ttl_text})"),
        ),
    };
    CheckRun {
        verdict,
        attempts: Vec::new(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use vigil_core::health::CheckHealth;

    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn at(s: i64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    #[test]
    fn fresh_stale_and_never() {
        assert_eq!(
            judge(TTL, Some(at(100)), None, at(150)).verdict,
            RunVerdict::Pass
        );
        let stale = judge(TTL, Some(at(100)), None, at(200));
        assert_eq!(stale.verdict, RunVerdict::Fail);
        assert!(
            stale.reason.starts_with("no heartbeat for 100s"),
            "{}",
            stale.reason
        );
        assert_eq!(judge(TTL, None, None, at(200)).verdict, RunVerdict::Fail);
    }

    #[test]
    fn monitoring_start_gives_one_ttl_of_grace() {
        assert_eq!(
            judge(TTL, None, Some(at(100)), at(150)).verdict,
            RunVerdict::Pass
        );
        assert_eq!(
            judge(TTL, None, Some(at(100)), at(161)).verdict,
            RunVerdict::Fail
        );
        // An old heartbeat counts from monitoring start.
        assert_eq!(
            judge(TTL, Some(at(0)), Some(at(100)), at(150)).verdict,
            RunVerdict::Pass
        );
    }

    fn saved(status: HealthStatus, last_change: Option<Timestamp>) -> CheckStateRow {
        CheckStateRow {
            service: "svc".to_owned(),
            check: "beat".to_owned(),
            health: CheckHealth {
                status,
                consecutive_failures: 0,
                consecutive_successes: 1,
                last_change,
            },
            last_verdict: Some(RunVerdict::Pass),
            last_reason: String::new(),
            last_run: last_change,
            position: None,
        }
    }

    /// One-shot runs (`vigil check` from cron) of a check that never got a heartbeat: the
    /// first run waits, later runs count from it, and one `ttl` after it the check fails.
    #[test]
    fn one_shot_counts_from_the_first_evaluation() {
        let first = one_shot_since(None, at(1000));
        assert_eq!(first, Some(at(1000)));
        let run = judge(TTL, None, first, at(1000));
        assert_eq!(run.verdict, RunVerdict::Pass, "{}", run.reason);
        assert!(run.reason.starts_with("no heartbeat yet"), "{}", run.reason);

        // The first run saved a passing state at 1000.
        let row = saved(HealthStatus::Passing, Some(at(1000)));
        let since = one_shot_since(Some(&row), at(1030));
        assert_eq!(since, Some(at(1000)));
        assert_eq!(judge(TTL, None, since, at(1030)).verdict, RunVerdict::Pass);
        let late = judge(TTL, None, one_shot_since(Some(&row), at(1061)), at(1061));
        assert_eq!(late.verdict, RunVerdict::Fail);
        assert!(
            late.reason.starts_with("no heartbeat received in 61s"),
            "{}",
            late.reason
        );

        // Once failing for lack of a heartbeat, it stays failing.
        let failing = saved(HealthStatus::Failing, Some(at(1061)));
        assert_eq!(one_shot_since(Some(&failing), at(1062)), None);
        assert_eq!(
            judge(
                TTL,
                None,
                one_shot_since(Some(&failing), at(1062)),
                at(1062)
            )
            .verdict,
            RunVerdict::Fail
        );
    }
}
