//! `kind = "systemd"`: the unit's `ActiveState` over D-Bus; passes while it is `active`
//! (or `reloading`).
//!
//! Owns: the wording of unit states (`unit x.service is failed (Result=exit-code,
//! NRestarts=3)`, `activating (start-pre) for 12s`, `not loaded`). Must not: connect by
//! itself (the connection is the context's, shared per bus) or change the unit.

use std::time::Duration;

use vigil_core::{Timestamp, format_duration};

use super::Verdict;
use crate::context::ProbeContext;
use crate::model::{SystemdBus, SystemdCheck};
use crate::systemd::UnitState;

pub(super) fn label(check: &SystemdCheck) -> String {
    match &check.bus {
        SystemdBus::System => format!("systemd {}", check.unit),
        other => format!("systemd {} on {other}", check.unit),
    }
}

/// Reads the wall clock: systemd's timestamps are wall-clock dates, and "activating for
/// 12s" compares one with now.
#[expect(
    clippy::disallowed_methods,
    reason = "systemd reports wall-clock timestamps; the reason says how long ago one was"
)]
fn wall_now() -> Timestamp {
    let ms = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    };
    Timestamp::from_millis(ms)
}

pub(super) async fn probe(check: &SystemdCheck, cx: &ProbeContext) -> Verdict {
    let unit = check.unit.as_str();
    let label = label(check);
    let state = cx
        .buses()
        .with(&check.bus, |bus| async move {
            let state = bus.unit_state(unit).await?;
            let load_error = if state.load_state == "loaded" {
                None
            } else {
                bus.load_error(unit).await
            };
            Ok((state, load_error))
        })
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    let (state, load_error) = state;
    judge(&state, load_error.as_deref(), wall_now())
}

/// The verdict for a unit state read at `now`.
pub fn judge(state: &UnitState, load_error: Option<&str>, now: Timestamp) -> Verdict {
    let unit = &state.unit;
    let since = |t: Option<Timestamp>| t.map(|t| now.saturating_since(t));
    let for_how_long = |t: Option<Timestamp>| match since(t) {
        Some(d) => format!(" for {}", short(d)),
        None => String::new(),
    };
    if state.load_state != "loaded" && state.active_state != "active" {
        return Err(match (state.load_state.as_str(), load_error) {
            ("masked", _) => format!("unit {unit} is masked"),
            (load, Some(why)) => format!("unit {unit} is not loaded ({load}: {why})"),
            (load, None) => format!("unit {unit} is not loaded ({load})"),
        });
    }
    let sub = &state.sub_state;
    match state.active_state.as_str() {
        "active" | "reloading" => Ok(format!(
            "unit {unit} is {} ({sub}){}",
            state.active_state,
            for_how_long(state.active_enter)
        )),
        "failed" => Err(format!(
            "unit {unit} is failed{}{}",
            state.result_suffix(),
            match since(state.state_change) {
                Some(d) => format!(", since {} ago", short(d)),
                None => String::new(),
            }
        )),
        "activating" if sub == "auto-restart" => Err(format!(
            "unit {unit} is restarting after a failure{} (auto-restart){}",
            state.result_suffix(),
            for_how_long(state.state_change)
        )),
        "activating" | "deactivating" => Err(format!(
            "unit {unit} is {} ({sub}){}",
            state.active_state,
            for_how_long(state.state_change)
        )),
        "inactive" => Err(format!(
            "unit {unit} is inactive ({sub}){}",
            match since(state.state_change) {
                Some(d) => format!(", since {} ago", short(d)),
                None => String::new(),
            }
        )),
        other => Err(format!("unit {unit}: expected active, got {other} ({sub})")),
    }
}

/// Whole seconds above 10 s, else tenths: `0.3s`, `12s`, `5m 3s`.
fn short(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format_duration(Duration::from_secs(d.as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(active: &str, sub: &str) -> UnitState {
        UnitState {
            unit: "web.service".to_owned(),
            load_state: "loaded".to_owned(),
            active_state: active.to_owned(),
            sub_state: sub.to_owned(),
            result: Some("success".to_owned()),
            n_restarts: Some(0),
            active_enter: Some(Timestamp::from_secs(1_000)),
            state_change: Some(Timestamp::from_secs(1_000)),
            invocation_id: String::new(),
        }
    }

    const NOW: Timestamp = Timestamp::from_secs(1_012);

    #[test]
    fn active_passes_with_its_uptime() {
        assert_eq!(
            judge(&state("active", "running"), None, NOW),
            Ok("unit web.service is active (running) for 12s".to_owned())
        );
    }

    #[test]
    fn failed_says_result_and_restarts() {
        let mut s = state("failed", "failed");
        s.result = Some("exit-code".to_owned());
        s.n_restarts = Some(3);
        assert_eq!(
            judge(&s, None, NOW),
            Err(
                "unit web.service is failed (Result=exit-code, NRestarts=3), since 12s ago"
                    .to_owned()
            )
        );
    }

    #[test]
    fn activating_says_for_how_long() {
        assert_eq!(
            judge(&state("activating", "start-pre"), None, NOW),
            Err("unit web.service is activating (start-pre) for 12s".to_owned())
        );
        let mut s = state("activating", "auto-restart");
        s.result = Some("exit-code".to_owned());
        s.n_restarts = Some(2);
        assert_eq!(
            judge(&s, None, Timestamp::from_millis(1_000_300)),
            Err("unit web.service is restarting after a failure (Result=exit-code, NRestarts=2) (auto-restart) for 0.3s".to_owned())
        );
    }

    #[test]
    fn missing_and_masked_units_are_not_loaded() {
        let mut s = state("inactive", "dead");
        s.load_state = "not-found".to_owned();
        assert_eq!(
            judge(&s, Some("Unit web.service not found"), NOW),
            Err(
                "unit web.service is not loaded (not-found: Unit web.service not found)".to_owned()
            )
        );
        s.load_state = "masked".to_owned();
        assert_eq!(
            judge(&s, None, NOW),
            Err("unit web.service is masked".to_owned())
        );
    }

    #[test]
    fn inactive_fails() {
        assert_eq!(
            judge(&state("inactive", "dead"), None, NOW),
            Err("unit web.service is inactive (dead), since 12s ago".to_owned())
        );
    }
}
