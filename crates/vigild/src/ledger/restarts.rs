//! The guard's side of the ledger: the restarts that count against a budget (cached per
//! service), verdict rows (an allowed one is the restart's intent), outcomes, dangling
//! intents and their resolution, resets, and the history `vigil history` shows.

use rusqlite::params;
use vigil_core::guard::Denial;
use vigil_core::{RestartRecord, RestartRequest, Source, Timestamp, Verdict};

use super::{Ledger, Result, sql_err, ts};

/// The counted restarts per service as last read, so that a guard decision in a crash
/// storm does not re-read thousands of rows. Coherent across processes through `PRAGMA
/// data_version`, which changes exactly when another connection committed; this
/// connection's own writes to counted rows update or drop the cached entry.
#[derive(Default)]
pub(super) struct CountedCache {
    data_version: i64,
    /// Per service: the window start the rows were read for, and the rows (by `at`).
    pub(super) services: std::collections::HashMap<String, (i64, Vec<RestartRecord>)>,
}

/// Cached rows per service beyond which the front (rows older than the window) is
/// dropped.
const COUNTED_CACHE_PRUNE: usize = 4096;

/// One row of restart history, as `vigil history` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRow {
    pub id: i64,
    pub service: String,
    pub at: Timestamp,
    pub source: String,
    pub forced: bool,
    /// `allowed`, `skipped`, `denied`, `reset` or `rearmed`.
    pub verdict: String,
    /// `cooldown`, `backoff`, `lock`, `limit`, or empty.
    pub reason: String,
    /// The verdict in words, with its numbers.
    pub message: String,
    /// `ok`, `failed`, `interrupted`, or `None` while in flight.
    pub outcome: Option<String>,
    pub outcome_detail: Option<String>,
    pub finished_at: Option<Timestamp>,
    pub pid: u32,
    /// What a hung process was doing when the watchdog fired (source `watchdog`).
    pub evidence: Option<String>,
    /// For the first denial of a given-up episode: how many more denials the episode
    /// counted, and the last one's time.
    pub repeats: u32,
    pub last_at: Option<Timestamp>,
}

/// One verdict to record ([`Ledger::record_verdict`]).
#[derive(Clone, Copy, Debug)]
pub struct NewVerdict<'a> {
    pub service: &'a str,
    pub request: RestartRequest,
    pub verdict: &'a Verdict,
    pub at: Timestamp,
    /// What a hung process was doing (watchdog restarts).
    pub evidence: Option<&'a str>,
    /// The restart's action will report its progress (see `Intent::tracked`).
    pub tracked: bool,
}

/// What [`Ledger::record_verdict`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The row: for an allowed restart, its intent (for [`Ledger::record_outcome`]).
    pub id: i64,
    /// A denial inside an open given-up episode was counted on the episode's first row
    /// (`id` is that row): the episode's denials so far, this one included.
    pub repeat: Option<u32>,
}

/// An operator's action on a service, as the ledger keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorAction {
    Stop,
    Start,
    Pause,
    Resume,
    /// A stop or pause ended by itself (`--for`, the end of a maintenance window).
    Expired,
}

impl OperatorAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Stop => "stop",
            OperatorAction::Start => "start",
            OperatorAction::Pause => "pause",
            OperatorAction::Resume => "resume",
            OperatorAction::Expired => "expired",
        }
    }
}

/// Who asked for an operator's action: on the control socket (or the CLI without a
/// daemon) the caller's uid and user name, from the peer credentials (or the process's
/// own); over the TCP listener, which knows no uid, the bearer token's holder (`token`)
/// and the address it connected from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: Option<u32>,
    pub user: String,
    /// A TCP caller's address (`192.0.2.7:41234`); `None` on the socket.
    pub from: Option<String>,
}

impl Caller {
    /// A caller on the control socket (or the CLI's own process).
    pub fn local(uid: u32, user: String) -> Caller {
        Caller {
            uid: Some(uid),
            user,
            from: None,
        }
    }

    /// A caller over the TCP listener that presented the bearer token.
    pub fn token(from: std::net::SocketAddr) -> Caller {
        Caller {
            uid: None,
            user: "token".to_owned(),
            from: Some(from.to_string()),
        }
    }
}

/// `alice (uid 1000)`, or `token from 192.0.2.7:41234` for a TCP caller.
pub fn describe_caller(uid: Option<u32>, user: &str, from: Option<&str>) -> String {
    match (uid, from) {
        (Some(uid), _) => format!("{user} (uid {uid})"),
        (None, Some(from)) => format!("{user} from {from}"),
        (None, None) => user.to_owned(),
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe_caller(self.uid, &self.user, self.from.as_deref()))
    }
}

/// One operator action to record.
#[derive(Clone, Debug)]
pub struct OperatorRow {
    pub action: OperatorAction,
    pub at: Timestamp,
    pub until: Option<Timestamp>,
    /// `None` when nobody in particular asked (an expiry, a maintenance window).
    pub caller: Option<Caller>,
    pub reason: Option<String>,
    /// `operator`, `window` (a maintenance window) or `group` (a group's step).
    pub source: String,
}

/// A service's current hold, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRow {
    pub kind: vigil_core::lifecycle::HoldKind,
    pub since: Timestamp,
    pub until: Option<Timestamp>,
    pub caller: Option<Caller>,
    pub reason: Option<String>,
    /// `operator` or `window`.
    pub source: String,
}

/// How a dangling intent is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DanglingOutcome {
    /// The restart provably did not run.
    Interrupted,
    /// It may have run; nobody saw how it ended.
    Unknown,
}

impl DanglingOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DanglingOutcome::Interrupted => "interrupted",
            DanglingOutcome::Unknown => "unknown",
        }
    }
}

/// The latest row of a service that opens or closes a given-up episode.
struct EpisodeRow {
    id: i64,
    verdict: String,
    rearm_at: Option<Timestamp>,
}

/// An allowed restart with no recorded outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub service: String,
    pub at: Timestamp,
    pub source: String,
    /// The Vigil process that was performing it.
    pub pid: u32,
    /// Its action reports its progress: `action` is recorded before anything is started.
    pub tracked: bool,
    /// What it started (`` `restart_command` ``, `RestartUnit x`), once it did.
    pub action: Option<String>,
    /// The process it spawned, and that process's start time (clock ticks since boot, to
    /// tell it from a later process with the same pid).
    pub child: Option<(u32, u64)>,
}

impl Ledger {
    /// The restarts that count against `service`'s budget and were requested at or after
    /// `since` (restarts stamped in the future, after a clock step back, are included).
    pub fn counted_restarts(&self, service: &str, since: Timestamp) -> Result<Vec<RestartRecord>> {
        let err = sql_err(&self.path);
        let version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
            .map_err(&err)?;
        let since_ms = since.as_millis();
        {
            let mut cache = self.counted.borrow_mut();
            if cache.data_version != version {
                cache.services.clear();
                cache.data_version = version;
            }
            if let Some((read_since, rows)) = cache.services.get_mut(service)
                && *read_since <= since_ms
            {
                let first = rows.partition_point(|r| r.at.as_millis() < since_ms);
                if rows.len() > COUNTED_CACHE_PRUNE {
                    rows.drain(..first);
                    *read_since = since_ms;
                    return Ok(rows.clone());
                }
                return Ok(rows[first..].to_vec());
            }
        }
        let rows = self.read_counted(service, since)?;
        self.counted
            .borrow_mut()
            .services
            .insert(service.to_owned(), (since_ms, rows.clone()));
        Ok(rows)
    }

    fn read_counted(&self, service: &str, since: Timestamp) -> Result<Vec<RestartRecord>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at, source, forced FROM restarts
                 WHERE service = ?1 AND counts = 1 AND at >= ?2 ORDER BY at",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![service, since.as_millis()], |r| {
                let source: String = r.get(1)?;
                Ok(RestartRecord {
                    at: Timestamp::from_millis(r.get(0)?),
                    source: Source::parse(&source).unwrap_or(Source::Manual),
                    forced: r.get(2)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }

    /// Records how an allowed restart ended.
    pub fn record_outcome(
        &self,
        id: i64,
        ok: bool,
        detail: &str,
        finished_at: Timestamp,
    ) -> Result<()> {
        let err = sql_err(&self.path);
        self.conn
            .execute(
                "UPDATE restarts SET outcome = ?2, outcome_detail = ?3, finished_at = ?4 WHERE id = ?1",
                params![id, if ok { "ok" } else { "failed" }, detail, finished_at.as_millis()],
            )
            .map_err(&err)?;
        Ok(())
    }

    /// Records one verdict; only allowed ones count against the budget. For an allowed
    /// restart this is the *intent*, committed before the restart is performed; the
    /// returned row id is for [`Ledger::record_outcome`].
    ///
    /// A denial while the service's latest episode row is a denial that has not re-armed
    /// yet is the same given-up episode: it is counted on that row (`repeats`), not
    /// stored as a row of its own, so a check failing every 2 s while given up does not
    /// write 1,800 rows an hour.
    ///
    /// `evidence` (e.g. what a hung process was doing) is stored with the row, in the same
    /// commit.
    pub fn record_verdict(&self, new: &NewVerdict<'_>) -> Result<Recorded> {
        let NewVerdict {
            service,
            request,
            verdict,
            at,
            evidence,
            tracked,
        } = *new;
        let (source, forced) = (request.source, request.forced);
        let err = sql_err(&self.path);
        let rearm_at = match verdict {
            Verdict::Denied(Denial::Limit { rearm_at, .. }) => Some(*rearm_at),
            _ => None,
        };
        if let Some(rearm_at) = rearm_at
            && let Some(episode) = self.latest_episode_row(service)?
            && episode.verdict == "denied"
            && episode.rearm_at.is_some_and(|r| at < r)
        {
            self.conn
                .prepare_cached(
                    "UPDATE restarts SET repeats = repeats + 1, last_at = ?2,
                        rearm_at = MAX(rearm_at, ?3)
                     WHERE id = ?1 RETURNING repeats",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![episode.id, at.as_millis(), rearm_at.as_millis()],
                        |r| r.get::<_, u32>(0),
                    )
                })
                .map_err(&err)
                .map(|repeats| Recorded {
                    id: episode.id,
                    repeat: Some(repeats.saturating_add(1)),
                })
        } else {
            self.conn
                .prepare_cached(
                    "INSERT INTO restarts (service, at, source, forced, verdict, reason, message,
                        counts, pid, evidence, rearm_at, tracked)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        service,
                        at.as_millis(),
                        source.as_str(),
                        forced,
                        verdict.kind(),
                        verdict.reason().unwrap_or(""),
                        verdict.to_string(),
                        verdict.is_allowed(),
                        std::process::id(),
                        evidence,
                        rearm_at.map(Timestamp::as_millis),
                        tracked && verdict.is_allowed(),
                    ])
                })
                .map_err(&err)?;
            if verdict.is_allowed()
                && let Some((_, rows)) = self.counted.borrow_mut().services.get_mut(service)
            {
                // After any equal `at`, as the index (service, at, rowid) orders them.
                let record = RestartRecord { at, source, forced };
                let i = rows.partition_point(|r| r.at <= at);
                rows.insert(i, record);
            }
            Ok(Recorded {
                id: self.conn.last_insert_rowid(),
                repeat: None,
            })
        }
    }

    /// The service's latest row that opens or closes a given-up episode (an allowed
    /// restart, a denial, a reset, a re-arm).
    fn latest_episode_row(&self, service: &str) -> Result<Option<EpisodeRow>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, verdict, rearm_at FROM restarts
                 WHERE service = ?1 AND verdict IN ('allowed', 'denied', 'reset', 'rearmed')
                 ORDER BY at DESC, id DESC LIMIT 1",
            )
            .map_err(&err)?;
        let mut rows = stmt
            .query_map(params![service], |r| {
                Ok(EpisodeRow {
                    id: r.get(0)?,
                    verdict: r.get(1)?,
                    rearm_at: ts(r.get(2)?),
                })
            })
            .map_err(&err)?;
        rows.next().transpose().map_err(&err)
    }

    /// The service's open given-up episode at `now`, if any: how many denials it counted
    /// and when the first was.
    pub fn given_up_episode(
        &self,
        service: &str,
        now: Timestamp,
    ) -> Result<Option<(u32, Timestamp)>> {
        let Some(row) = self.latest_episode_row(service)? else {
            return Ok(None);
        };
        if row.verdict != "denied" || row.rearm_at.is_none_or(|r| r <= now) {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT repeats, at FROM restarts WHERE id = ?1",
                params![row.id],
                |r| {
                    Ok((
                        r.get::<_, u32>(0)?.saturating_add(1),
                        Timestamp::from_millis(r.get(1)?),
                    ))
                },
            )
            .map(Some)
            .map_err(sql_err(&self.path))
    }

    /// Records the end of a given-up episode that re-armed by itself (its budget freed
    /// at `rearm_at`, at or before `now`) as a `rearmed` row at that instant. Idempotent:
    /// a closed episode, or one still running, records nothing.
    pub fn close_expired_episode(&self, service: &str, now: Timestamp) -> Result<()> {
        let Some(episode) = self.latest_episode_row(service)? else {
            return Ok(());
        };
        let Some(rearm_at) = episode.rearm_at.filter(|r| *r <= now) else {
            return Ok(());
        };
        if episode.verdict != "denied" {
            return Ok(());
        }
        self.conn
            .prepare_cached(
                "INSERT INTO restarts (service, at, source, forced, verdict, reason, message,
                    counts, pid)
                 SELECT service, ?2, source, 0, 'rearmed', '', ?3, 0, ?4
                 FROM restarts WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    episode.id,
                    rearm_at.as_millis(),
                    "Restart budget re-armed: automatic restarts resume",
                    std::process::id()
                ])
            })
            .map_err(sql_err(&self.path))?;
        Ok(())
    }

    /// Allowed restarts without an outcome, oldest first (all services when `None`).
    pub fn dangling_intents(&self, service: Option<&str>) -> Result<Vec<Intent>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(match service {
                // Two statements, not `(?1 IS NULL OR service = ?1)`: that form cannot use
                // the partial index and scans the whole table.
                Some(_) => {
                    "SELECT id, service, at, source, pid, tracked, action, child_pid, child_start
                     FROM restarts
                     WHERE service = ?1 AND verdict = 'allowed' AND outcome IS NULL ORDER BY id"
                }
                None => {
                    "SELECT id, service, at, source, pid, tracked, action, child_pid, child_start
                     FROM restarts
                     WHERE verdict = 'allowed' AND outcome IS NULL AND ?1 IS NULL ORDER BY id"
                }
            })
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![service], |r| {
                let child = match (r.get::<_, Option<u32>>(7)?, r.get::<_, Option<i64>>(8)?) {
                    (Some(pid), Some(start)) => Some((pid, u64::try_from(start).unwrap_or(0))),
                    _ => None,
                };
                Ok(Intent {
                    id: r.get(0)?,
                    service: r.get(1)?,
                    at: Timestamp::from_millis(r.get(2)?),
                    source: r.get(3)?,
                    pid: r.get(4)?,
                    tracked: r.get(5)?,
                    action: r.get(6)?,
                    child,
                })
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }

    /// Resolves a dangling intent with what is known: `interrupted` only when the restart
    /// provably did not run (a tracked one that started nothing), otherwise `unknown`.
    /// Call only while holding the service's restart lock, with nothing the restart started
    /// still running. The restart keeps counting against the budget: it may well have
    /// happened.
    pub fn resolve_dangling(
        &self,
        id: i64,
        outcome: DanglingOutcome,
        detail: &str,
        at: Timestamp,
    ) -> Result<()> {
        let err = sql_err(&self.path);
        self.conn
            .execute(
                "UPDATE restarts SET outcome = ?2, outcome_detail = ?3, finished_at = ?4
                 WHERE id = ?1 AND outcome IS NULL",
                params![id, outcome.as_str(), detail, at.as_millis()],
            )
            .map_err(&err)?;
        Ok(())
    }

    /// A tracked restart is about to start `what` (committed before it does: an intent
    /// without it provably started nothing).
    pub fn record_action(&self, id: i64, what: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE restarts SET action = ?2 WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute(params![id, what]))
            .map_err(sql_err(&self.path))?;
        Ok(())
    }

    /// A tracked restart spawned `pid` (started at `start`, in clock ticks since boot).
    pub fn record_child(&self, id: i64, pid: u32, start: u64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE restarts SET child_pid = ?2, child_start = ?3 WHERE id = ?1")
            .and_then(|mut stmt| {
                stmt.execute(params![id, pid, i64::try_from(start).unwrap_or(i64::MAX)])
            })
            .map_err(sql_err(&self.path))?;
        Ok(())
    }

    /// Records an operator's action (a row of the history, source `operator`).
    pub fn record_operator(&self, service: &str, row: &OperatorRow) -> Result<()> {
        let until = row.until.map(|t| format!(" until {t}")).unwrap_or_default();
        let by = match (&row.caller, row.source.as_str()) {
            (Some(c), _) => format!(" by {c}"),
            (None, "window") => " by a maintenance window".to_owned(),
            (None, _) => String::new(),
        };
        let why = row
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let message = match row.action {
            OperatorAction::Expired if row.source == "window" => {
                "the maintenance window ended".to_owned()
            }
            OperatorAction::Expired => "the hold ended by itself (its time was up)".to_owned(),
            a => format!(
                "{}{by}{until}{why}",
                match a {
                    OperatorAction::Stop => "stopped",
                    OperatorAction::Start => "started",
                    OperatorAction::Pause => "paused",
                    OperatorAction::Resume => "resumed",
                    OperatorAction::Expired => "expired",
                }
            ),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO restarts (service, at, source, forced, verdict, reason, message,
                    counts, pid, hold_until, uid, user, reason_text, peer)
                 VALUES (?1, ?2, ?3, 0, ?4, '', ?5, 0, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    service,
                    row.at.as_millis(),
                    row.source,
                    row.action.as_str(),
                    message,
                    std::process::id(),
                    row.until.map(Timestamp::as_millis),
                    row.caller.as_ref().and_then(|c| c.uid),
                    row.caller.as_ref().map(|c| c.user.as_str()),
                    row.reason,
                    row.caller.as_ref().and_then(|c| c.from.as_deref()),
                ])
            })
            .map_err(sql_err(&self.path))?;
        Ok(())
    }

    /// The service's hold at `now`: its latest stop or pause, unless lifted or expired. A
    /// hold whose time is up by `now` is recorded as `expired` (at its `until`) here, if
    /// no one has yet: so every expiry is a row, with or without a daemon.
    pub fn current_hold(&self, service: &str, now: Timestamp) -> Result<Option<HoldRow>> {
        let err = sql_err(&self.path);
        let latest = self
            .conn
            .prepare_cached(
                "SELECT verdict, at, hold_until, uid, user, reason_text, source, peer FROM restarts
                 WHERE service = ?1 AND verdict IN ('stop', 'start', 'pause', 'resume', 'expired')
                 ORDER BY at DESC, id DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                let mut rows = stmt.query_map(params![service], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Timestamp::from_millis(r.get(1)?),
                        ts(r.get(2)?),
                        r.get::<_, Option<u32>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, Option<String>>(7)?,
                    ))
                })?;
                rows.next().transpose()
            })
            .map_err(&err)?;
        let Some((verdict, since, until, uid, user, reason, source, from)) = latest else {
            return Ok(None);
        };
        let kind = match verdict.as_str() {
            "stop" => vigil_core::lifecycle::HoldKind::Stopped,
            "pause" => vigil_core::lifecycle::HoldKind::Paused,
            _ => return Ok(None),
        };
        if let Some(until) = until
            && until <= now
        {
            self.record_operator(
                service,
                &OperatorRow {
                    action: OperatorAction::Expired,
                    at: until,
                    until: None,
                    caller: None,
                    reason: None,
                    source,
                },
            )?;
            return Ok(None);
        }
        Ok(Some(HoldRow {
            kind,
            since,
            until,
            caller: user.map(|user| Caller { uid, user, from }),
            reason,
            source,
        }))
    }

    /// `vigil reset`: the service's past restarts stop counting (they stay in the history)
    /// and a `reset` row records who did it and when.
    pub fn reset(&mut self, service: &str, at: Timestamp) -> Result<usize> {
        self.counted.borrow_mut().services.remove(service);
        let path = self.path.clone();
        let err = sql_err(&path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let cleared = tx
            .execute(
                "UPDATE restarts SET counts = 0 WHERE service = ?1 AND counts = 1",
                params![service],
            )
            .map_err(&err)?;
        tx.execute(
            "INSERT INTO restarts (service, at, source, forced, verdict, reason, message, counts, pid)
             VALUES (?1, ?2, 'manual', 0, 'reset', '', ?3, 0, ?4)",
            params![
                service,
                at.as_millis(),
                format!("Restart history reset ({cleared} restart(s) no longer count)"),
                std::process::id()
            ],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(cleared)
    }

    /// The end of the last successful restart: the start of the current instance as far
    /// as the ledger knows (used for `grace` with the command driver).
    pub fn last_successful_restart(&self, service: &str) -> Result<Option<Timestamp>> {
        let err = sql_err(&self.path);
        self.conn
            .query_row(
                "SELECT MAX(finished_at) FROM restarts WHERE service = ?1 AND outcome = 'ok'",
                params![service],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(ts)
            .map_err(&err)
    }

    /// History rows, newest last, optionally for one service and since an instant.
    pub fn history(
        &self,
        service: Option<&str>,
        since: Option<Timestamp>,
    ) -> Result<Vec<HistoryRow>> {
        self.history_rows(service, since, None, i64::MAX)
    }

    /// Up to `limit` history rows whose id is above `after`, by id (the fleet publisher).
    pub fn history_after(&self, after: i64, limit: i64) -> Result<Vec<HistoryRow>> {
        self.history_rows(None, None, Some(after), limit)
    }

    fn history_rows(
        &self,
        service: Option<&str>,
        since: Option<Timestamp>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<HistoryRow>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {HISTORY_COLUMNS} FROM restarts
                 WHERE (?1 IS NULL OR service = ?1) AND (?2 IS NULL OR at >= ?2)
                   AND (?3 IS NULL OR id > ?3)
                 ORDER BY CASE WHEN ?3 IS NULL THEN at ELSE id END, id
                 LIMIT ?4"
            ))
            .map_err(&err)?;
        let rows = stmt
            .query_map(
                params![service, since.map(Timestamp::as_millis), after, limit],
                history_row,
            )
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }

    /// The service's last allowed restart (what `vigil status` shows as its last
    /// restart), read backwards through the `(service, at)` index rather than by reading
    /// its whole history: the dashboard asks every second.
    pub fn last_allowed(&self, service: &str) -> Result<Option<HistoryRow>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {HISTORY_COLUMNS} FROM restarts
                 WHERE service = ?1 AND verdict = 'allowed'
                 ORDER BY at DESC, id DESC LIMIT 1"
            ))
            .map_err(&err)?;
        let mut rows = stmt
            .query_map(params![service], history_row)
            .map_err(&err)?;
        rows.next().transpose().map_err(&err)
    }

    /// The last `limit` rows written (by id, which the primary key makes a lookup, not a
    /// scan of the whole history), newest last in the order `history` uses: what the
    /// dashboard shows every second.
    pub fn recent_history(&self, limit: usize) -> Result<Vec<HistoryRow>> {
        let err = sql_err(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {HISTORY_COLUMNS} FROM restarts ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(&err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = stmt
            .query_map(params![limit], history_row)
            .map_err(&err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&err)?;
        rows.sort_by_key(|r| (r.at, r.id));
        Ok(rows)
    }
}

/// The columns `history_row` reads, in its order.
const HISTORY_COLUMNS: &str = "id, service, at, source, forced, verdict, reason, message, outcome,
     outcome_detail, finished_at, pid, evidence, repeats, last_at";

fn history_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryRow> {
    Ok(HistoryRow {
        id: r.get(0)?,
        service: r.get(1)?,
        at: Timestamp::from_millis(r.get(2)?),
        source: r.get(3)?,
        forced: r.get(4)?,
        verdict: r.get(5)?,
        reason: r.get(6)?,
        message: r.get(7)?,
        outcome: r.get(8)?,
        outcome_detail: r.get(9)?,
        finished_at: ts(r.get(10)?),
        pid: r.get(11)?,
        evidence: r.get(12)?,
        repeats: r.get(13)?,
        last_at: ts(r.get(14)?),
    })
}
