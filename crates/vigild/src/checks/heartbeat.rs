//! `kind = "heartbeat"`: checks that are pushed (`vigil heartbeat SERVICE/CHECK`), not
//! probed. The push is a ledger write, so it works from any process, with or without a
//! daemon; evaluating it is a ledger read.

use std::time::Duration;

use vigil_checks::CheckRun;
use vigil_config::model::HeartbeatCheck;
use vigil_core::health::RunVerdict;
use vigil_core::{Timestamp, format_duration};

use crate::ledger::{LedgerError, LedgerHandle};

/// Evaluates a heartbeat check at `now`. `watching_since` is when monitoring started
/// (the daemon's check task); `None` means "no grace before the first heartbeat" (one-shot
/// `vigil check`, which has no memory of when monitoring began).
pub async fn evaluate(
    ledger: &LedgerHandle,
    service: &str,
    check: &str,
    spec: &HeartbeatCheck,
    watching_since: Option<Timestamp>,
    now: Timestamp,
) -> Result<CheckRun, LedgerError> {
    let (s, c) = (service.to_owned(), check.to_owned());
    let last = ledger.call(move |l| l.last_heartbeat(&s, &c)).await?;
    Ok(judge(spec.ttl, last, watching_since, now))
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
}
