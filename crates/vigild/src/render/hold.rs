//! How an operator's hold reads: in `vigil status`, `vigil check`, the answers of
//! `vigil stop|start|pause|resume` (text and `--json`, docs/cli-json.md) and a refused
//! `vigil restart`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_core::Timestamp;
use vigil_core::lifecycle::HoldKind;

use super::JSON_VERSION;
use crate::ledger::HoldRow;
use crate::service::protocol::{Control, Outcome};

/// What `vigil stop|start|pause|resume --json` prints (docs/cli-json.md).
#[derive(Serialize, Deserialize, Debug)]
pub struct Answer {
    pub version: u32,
    /// `web` or `@group`.
    pub service: String,
    /// `stop`, `start`, `pause` or `resume`.
    pub action: String,
    pub ok: bool,
    /// One line: what was done, or why not.
    pub message: String,
    /// The hold now in force, if any.
    pub hold: Option<HoldJson>,
}

/// A hold as `status --json` and the operator commands show it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HoldJson {
    /// `stopped` or `paused`.
    pub state: String,
    pub since: String,
    pub until: Option<String>,
    /// Seconds left until `until`.
    pub left_secs: Option<u64>,
    pub by: Option<CallerJson>,
    pub reason: Option<String>,
    /// `operator`, `window` (a maintenance window) or `group`.
    pub source: String,
}

/// Who asked: on the control socket the caller's uid and user name; over the TCP
/// listener `uid` is null, `user` is `token` and `from` the caller's address.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CallerJson {
    pub uid: Option<u32>,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl HoldJson {
    pub fn of(row: &HoldRow, now: Timestamp) -> HoldJson {
        HoldJson {
            state: row.kind.as_str().to_owned(),
            since: row.since.to_string(),
            until: row.until.map(|t| t.to_string()),
            left_secs: row.until.map(|t| left(now, t).as_secs()),
            by: row.caller.as_ref().map(|c| CallerJson {
                uid: c.uid,
                user: c.user.clone(),
                from: c.from.clone(),
            }),
            reason: row.reason.clone(),
            source: row.source.clone(),
        }
    }
}

fn left(now: Timestamp, until: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(until.as_millis() - now.as_millis()).unwrap_or(0))
}

/// One line about a hold: `stopped by alice (uid 1000) until … (29m left): deploy`.
pub fn describe_hold(row: &HoldRow, now: Timestamp) -> String {
    HoldJson::of(row, now).describe()
}

impl HoldJson {
    /// One line (see [`describe_hold`]); the CLI says the same from the API's answer.
    pub fn describe(&self) -> String {
        let by = match (&self.by, self.source.as_str()) {
            (Some(c), _) => format!(
                " by {}",
                crate::ledger::describe_caller(c.uid, &c.user, c.from.as_deref())
            ),
            (None, "window") => " by a maintenance window".to_owned(),
            (None, "group") => " with its group".to_owned(),
            (None, _) => String::new(),
        };
        let time = match (&self.until, self.left_secs) {
            (Some(until), Some(secs)) => format!(
                " until {until} ({} left)",
                vigil_core::format_duration(Duration::from_secs(secs))
            ),
            _ => format!(" since {}", self.since),
        };
        let why = self
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        format!("{}{by}{time}{why}", self.state)
    }
}

/// How to clear a hold of `kind` on `name`.
pub fn how_to_clear(kind: HoldKind, name: &str) -> String {
    match kind {
        HoldKind::Stopped => format!("`vigil start {name}` clears it"),
        HoldKind::Paused => format!("`vigil resume {name}` clears it"),
    }
}

/// The answer to a command, from its outcome and the hold recorded after it.
pub fn answer(
    label: &str,
    action: Control,
    outcome: &Outcome,
    hold: Option<&HoldRow>,
    now: Timestamp,
) -> Answer {
    let (ok, message) = match outcome {
        Outcome::Done(r) => (r.ok, r.detail.clone()),
        Outcome::Held(kind) => {
            let what = match hold {
                Some(h) => describe_hold(h, now),
                None => kind.as_str().to_owned(),
            };
            (
                false,
                format!("refused: it is {what}; {}", how_to_clear(*kind, label)),
            )
        }
        other => (false, other.describe()),
    };
    Answer {
        version: JSON_VERSION,
        service: label.to_owned(),
        action: action.as_str().to_owned(),
        ok,
        message,
        hold: hold.map(|h| HoldJson::of(h, now)),
    }
}

/// Why a restart was refused by an operator's hold, and how to clear it.
pub fn held_restart(name: &str, kind: HoldKind, hold: Option<&HoldRow>, now: Timestamp) -> String {
    let what = hold.map_or_else(|| kind.as_str().to_owned(), |h| describe_hold(h, now));
    format!(
        "{name}: restart refused: it is {what}; {} (even --force does not override an operator's hold)",
        how_to_clear(kind, name)
    )
}
