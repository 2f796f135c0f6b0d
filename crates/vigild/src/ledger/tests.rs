//! The ledger's tests: cache coherence, relaxed commits, query plans, round trips,
//! migrations from older schemas, concurrent opens.

use rusqlite::params;
use vigil_core::health::{CheckHealth, HealthStatus, RunVerdict};
use vigil_core::{GuardPolicy, RestartRequest, Source, Verdict, decide};

use super::in_place::wal_path;
use super::*;

fn allowed(ledger: &Ledger, service: &str, at: Timestamp) {
    let verdict = decide(
        &GuardPolicy {
            cooldown: Duration::ZERO,
            max_restarts: 1000,
            ..GuardPolicy::default()
        },
        &[],
        RestartRequest::new(Source::Exit),
        at,
    );
    assert!(verdict.is_allowed());
    ledger
        .record_verdict(&NewVerdict {
            service,
            request: RestartRequest {
                source: Source::Exit,
                forced: false,
            },
            verdict: &verdict,
            at,
            evidence: None,
            tracked: false,
        })
        .unwrap();
}

fn counted_at(ledger: &Ledger, service: &str, since: i64) -> Vec<i64> {
    ledger
        .counted_restarts(service, Timestamp::from_secs(since))
        .unwrap()
        .iter()
        .map(|r| r.at.as_millis() / 1000)
        .collect()
}

/// The counted-restarts cache must never hide what another process wrote: a daemon's
/// guard and a CLI's `restart`/`reset` share the ledger.
#[test]
fn counted_restarts_stay_coherent_with_other_connections_and_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Ledger::open(dir.path()).unwrap();
    let mut cli = Ledger::open(dir.path()).unwrap();
    allowed(&daemon, "web", Timestamp::from_secs(100));
    assert_eq!(counted_at(&daemon, "web", 0), [100]);
    // Own write: appended in order, also between equal and later times.
    allowed(&daemon, "web", Timestamp::from_secs(300));
    allowed(&daemon, "web", Timestamp::from_secs(200));
    assert_eq!(counted_at(&daemon, "web", 0), [100, 200, 300]);
    assert_eq!(counted_at(&daemon, "web", 150), [200, 300]);
    // Another connection's restart and reset are seen at once.
    allowed(&cli, "web", Timestamp::from_secs(400));
    assert_eq!(counted_at(&daemon, "web", 150), [200, 300, 400]);
    cli.reset("web", Timestamp::from_secs(500)).unwrap();
    assert!(counted_at(&daemon, "web", 0).is_empty());
    // Own reset drops the cached rows too.
    allowed(&daemon, "web", Timestamp::from_secs(600));
    assert_eq!(counted_at(&daemon, "web", 0), [600]);
    daemon.reset("web", Timestamp::from_secs(700)).unwrap();
    assert!(counted_at(&daemon, "web", 0).is_empty());
    // A window reaching further back than what was read re-reads.
    allowed(&cli, "api", Timestamp::from_secs(10));
    allowed(&cli, "api", Timestamp::from_secs(20));
    assert_eq!(counted_at(&daemon, "api", 15), [20]);
    assert_eq!(counted_at(&daemon, "api", 5), [10, 20]);
    // Skipped and denied verdicts never count.
    let skipped = Verdict::Skipped(vigil_core::Skip::Lock {
        waited: Duration::from_secs(1),
    });
    daemon
        .record_verdict(&NewVerdict {
            service: "api",
            request: RestartRequest {
                source: Source::Exit,
                forced: false,
            },
            verdict: &skipped,
            at: Timestamp::from_secs(30),
            evidence: None,
            tracked: false,
        })
        .unwrap();
    assert_eq!(counted_at(&daemon, "api", 5), [10, 20]);
}

/// A relaxed transaction is committed (another process sees it at once) and leaves
/// the connection at `synchronous = FULL` for every later commit, also when it fails.
#[test]
fn relaxed_transactions_commit_and_restore_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Ledger::open(dir.path()).unwrap();
    let cli = Ledger::open(dir.path()).unwrap();
    let sync = |l: &Ledger| -> i64 {
        l.conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    };
    let autocheckpoint = |l: &Ledger| -> i64 {
        l.conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(sync(&daemon), 2, "FULL");
    assert_eq!(autocheckpoint(&daemon), 1000);
    daemon
        .transaction(true, |l| {
            assert_eq!(sync(l), 1, "NORMAL inside");
            assert_eq!(autocheckpoint(l), 0, "no checkpoint (an fsync) inside");
            allowed(l, "web", Timestamp::from_secs(100));
            Ok(())
        })
        .unwrap();
    assert_eq!(sync(&daemon), 2);
    assert_eq!(counted_at(&cli, "web", 0), [100]);
    assert_eq!(counted_at(&daemon, "web", 0), [100]);
    let failed: Result<()> = daemon.transaction(true, |l| {
        allowed(l, "web", Timestamp::from_secs(200));
        Err(LedgerError::TooNew {
            path: l.path.clone(),
            found: 99,
        })
    });
    assert!(failed.is_err());
    assert_eq!(sync(&daemon), 2);
    assert_eq!(autocheckpoint(&daemon), 1000);
    assert!(daemon.conn.is_autocommit(), "rolled back");
    assert_eq!(counted_at(&cli, "web", 0), [100], "the failed one is gone");
    assert_eq!(counted_at(&daemon, "web", 0), [100], "also from the cache");
    // What the ledger thread does after a relaxed commit; nothing pending without
    // a WAL.
    assert!(wal_path(&daemon.path).exists());
    sync_wal(&daemon.path).unwrap();
    sync_wal(&dir.path().join("absent.db")).unwrap();
}

/// The guard's two reads per decision use their partial indexes, so a decision does
/// not slow down as the history grows (the dangling-intent probe once scanned it all).
#[test]
fn guard_queries_use_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = ledger
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = stmt
            .query_map(params!["web", 0], |r| r.get::<_, String>(3))
            .unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
    };
    let counted = plan(
        "SELECT at, source, forced FROM restarts
             WHERE service = ?1 AND counts = 1 AND at >= ?2 ORDER BY at",
    );
    assert!(counted.contains("restarts_counted"), "{counted}");
    let dangling = plan(
            "SELECT id, service, at, source, pid FROM restarts
             WHERE service = ?1 AND verdict = 'allowed' AND outcome IS NULL AND ?2 = ?2 ORDER BY id",
        );
    assert!(dangling.contains("restarts_dangling"), "{dangling}");
}

#[test]
fn intents_outcomes_and_reset_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path()).unwrap();
    let now = Timestamp::from_secs(10_000);
    let verdict = decide(
        &GuardPolicy::default(),
        &[],
        RestartRequest::new(Source::Health),
        now,
    );
    let id = ledger
        .record_verdict(&NewVerdict {
            service: "web",
            request: RestartRequest {
                source: Source::Health,
                forced: false,
            },
            verdict: &verdict,
            at: now,
            evidence: None,
            tracked: false,
        })
        .unwrap()
        .id;
    assert_eq!(ledger.dangling_intents(None).unwrap().len(), 1);
    ledger
        .record_outcome(
            id,
            true,
            "exit code 0",
            now.saturating_add(Duration::from_secs(1)),
        )
        .unwrap();
    assert!(ledger.dangling_intents(None).unwrap().is_empty());
    let counted = ledger
        .counted_restarts("web", Timestamp::UNIX_EPOCH)
        .unwrap();
    assert_eq!(counted.len(), 1);
    assert_eq!(
        ledger.last_successful_restart("web").unwrap(),
        Some(Timestamp::from_secs(10_001))
    );
    assert_eq!(ledger.reset("web", now).unwrap(), 1);
    assert!(
        ledger
            .counted_restarts("web", Timestamp::UNIX_EPOCH)
            .unwrap()
            .is_empty()
    );
    let history = ledger.history(Some("web"), None).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].verdict, "reset");
    // Reopening keeps everything and does not migrate twice.
    drop(ledger);
    let ledger = Ledger::open(dir.path()).unwrap();
    assert_eq!(ledger.history(None, None).unwrap().len(), 2);
}

/// `call_now_or_queued` runs in place only when nothing is queued: it never
/// overtakes a job sent before it, and it sees that job's writes.
#[tokio::test]
async fn a_call_in_place_never_overtakes_queued_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let handle = LedgerHandle::spawn(dir.path()).unwrap();
    let here = std::thread::current().id();
    // Idle: in place, on this thread.
    let this_thread = |_: &mut Ledger| Ok(std::thread::current().id());
    let ran_on = handle.call_now_or_queued(this_thread).await.unwrap();
    assert_eq!(ran_on, here);
    // A slow job queued first: the next call must wait for it and see its write.
    let queued = || {
        handle
            .cell
            .queued
            .load(std::sync::atomic::Ordering::Acquire)
    };
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let h = handle.clone();
    let slow = tokio::spawn(async move {
        h.call(move |l| {
            gate.recv().unwrap();
            allowed(l, "web", Timestamp::from_secs(100));
        })
        .await;
    });
    while queued() < 1 {
        tokio::task::yield_now().await;
    }
    let h = handle.clone();
    let after = tokio::spawn(async move {
        h.call_now_or_queued(|l| {
            let seen = l.counted_restarts("web", Timestamp::from_secs(0))?;
            Ok((std::thread::current().id(), seen.len()))
        })
        .await
    });
    while queued() < 2 {
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    slow.await.unwrap();
    let (ran_on, seen) = after.await.unwrap().unwrap();
    assert_ne!(
        ran_on, here,
        "queued behind the slow job, on the ledger thread"
    );
    assert_eq!(seen, 1, "after the slow job's write");
    // Idle again (the thread counts a job done just after answering): in place again.
    while queued() > 0 {
        tokio::task::yield_now().await;
    }
    let ran_on = handle.call_now_or_queued(this_thread).await.unwrap();
    assert_eq!(ran_on, here);
}

/// In place, a write another process holds is not waited for on the caller's (the
/// runtime's) thread: the call goes to the ledger thread, which waits for it.
#[tokio::test]
async fn a_busy_ledger_is_waited_for_on_the_ledger_thread_not_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let handle = LedgerHandle::spawn(dir.path()).unwrap();
    let here = std::thread::current().id();
    let other = Ledger::open(dir.path()).unwrap();
    other.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let h = handle.clone();
    let call = tokio::spawn(async move {
        h.call_now_or_queued(|l| {
            l.transaction(true, |l| {
                allowed(l, "web", Timestamp::from_secs(100));
                Ok(std::thread::current().id())
            })
        })
        .await
    });
    // The call tried in place, got SQLITE_BUSY at once and queued itself (waiting in
    // place would block this thread, which holds the other write, until the timeout).
    while handle
        .cell
        .queued
        .load(std::sync::atomic::Ordering::Acquire)
        < 1
    {
        tokio::task::yield_now().await;
    }
    allowed(&other, "web", Timestamp::from_secs(50));
    other.conn.execute_batch("COMMIT").unwrap();
    let ran_on = call.await.unwrap().unwrap();
    assert_ne!(ran_on, here);
    assert_eq!(counted_at(&other, "web", 0), [50, 100]);
    // And the connection waits for busy writes again afterwards.
    let timeout: i64 = handle
        .call(|l| l.conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(timeout, BUSY_TIMEOUT.as_millis() as i64);
}

/// Relaxed commits skip SQLite's automatic checkpoint; the ledger thread's WAL flushes
/// checkpoint now and then, so a long crash loop does not grow the WAL without bound.
#[tokio::test]
async fn relaxed_commits_with_flushes_keep_the_wal_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let handle = LedgerHandle::spawn(dir.path()).unwrap();
    for i in 0..1500 {
        handle
            .call_now_or_queued(move |l| {
                l.transaction(true, |l| {
                    allowed(l, "crash", Timestamp::from_secs(i));
                    Ok(())
                })
            })
            .await
            .unwrap();
        handle.sync_soon();
        // At a crash loop's pace (a restart takes a millisecond) the thread keeps up:
        // a queued job runs after every flush sent before it.
        handle.call(|_| ()).await;
    }
    let wal = std::fs::metadata(wal_path(handle.path())).unwrap().len();
    // Without checkpoints: 1500 commits of about four 4 KiB pages each, 26 MiB.
    assert!(wal < 6 << 20, "WAL is {wal} bytes");
    let rows = handle
        .call(|l| l.counted_restarts("crash", Timestamp::from_secs(0)))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1500);
}

#[tokio::test]
async fn queued_check_states_are_flushed_before_jobs_and_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let handle = LedgerHandle::spawn(dir.path()).unwrap();
    let row = |n: u32| CheckStateRow {
        service: "web".into(),
        check: "health".into(),
        health: CheckHealth {
            status: HealthStatus::Failing,
            consecutive_failures: n,
            consecutive_successes: 0,
            last_change: None,
        },
        last_verdict: Some(RunVerdict::Fail),
        last_reason: format!("run {n}"),
        last_run: Some(Timestamp::from_secs(i64::from(n))),
        position: None,
    };
    for n in 1..=50 {
        handle.save_check_state(row(n));
    }
    // A job sees every earlier write: the batch is flushed first, newest row wins.
    let states = handle.call(|l| l.check_states()).await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].health.consecutive_failures, 50);
    handle.save_check_state(row(51));
    drop(handle);
    // Dropping the last handle flushes; wait for the thread to let go, then reopen.
    let mut seen = 0;
    for _ in 0..200 {
        seen = Ledger::open(dir.path()).unwrap().check_states().unwrap()[0]
            .health
            .consecutive_failures;
        if seen == 51 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, 51);
}

#[test]
fn a_version_1_ledger_is_migrated_keeping_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    // A v1 ledger as the first release wrote it.
    let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
    conn.execute_batch(
            "CREATE TABLE restarts (id INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL,
                at INTEGER NOT NULL, source TEXT NOT NULL, forced INTEGER NOT NULL DEFAULT 0,
                verdict TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', message TEXT NOT NULL,
                counts INTEGER NOT NULL DEFAULT 0, outcome TEXT, outcome_detail TEXT,
                finished_at INTEGER, pid INTEGER NOT NULL);
             CREATE INDEX restarts_by_service ON restarts(service, at);
             CREATE TABLE check_state (service TEXT NOT NULL, name TEXT NOT NULL,
                status TEXT NOT NULL, consecutive_failures INTEGER NOT NULL,
                consecutive_successes INTEGER NOT NULL, last_change INTEGER, last_verdict TEXT,
                last_reason TEXT NOT NULL DEFAULT '', last_run INTEGER,
                PRIMARY KEY (service, name));
             INSERT INTO restarts (service, at, source, verdict, message, counts, outcome, pid)
                VALUES ('web', 1000, 'health', 'allowed', 'Restart ALLOWED (1/5 per hour)', 1, 'ok', 7);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    drop(conn);
    let ledger = Ledger::open(dir.path()).unwrap();
    assert_eq!(ledger.history(None, None).unwrap().len(), 1);
    ledger
        .record_heartbeat("web", "beat", Timestamp::from_secs(5))
        .unwrap();
    ledger
        .record_heartbeat("web", "beat", Timestamp::from_secs(3))
        .unwrap();
    assert_eq!(
        ledger.last_heartbeat("web", "beat").unwrap(),
        Some(Timestamp::from_secs(5))
    );
    assert_eq!(ledger.last_heartbeat("web", "other").unwrap(), None);
}

fn delivery(channel: &str, services: &[&str], at: i64, status: &str) -> DeliveryRow {
    DeliveryRow {
        id: 0,
        channel: channel.to_owned(),
        kind: "webhook".to_owned(),
        created_at: Timestamp::from_secs(at - 1),
        finished_at: Timestamp::from_secs(at),
        status: status.to_owned(),
        attempts: 4,
        alerts: services.len() as u32,
        events: vec!["failing".to_owned(), "given-up".to_owned()],
        services: services.iter().map(|s| (*s).to_owned()).collect(),
        summary: "ACTION REQUIRED: 2 alerts".to_owned(),
        error: (status != "delivered").then(|| "the receiver answered 500".to_owned()),
        pid: 0,
    }
}

#[test]
fn a_version_2_ledger_gains_alert_deliveries_keeping_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    // A v2 ledger (v1 tables plus heartbeats), as the previous release wrote it.
    drop(Ledger::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
    conn.execute_batch(
            "DROP TABLE alert_deliveries;
             DROP TABLE exec_state;
             DROP INDEX restarts_counted;
             DROP INDEX restarts_dangling;
             DROP INDEX restarts_episodes;
             ALTER TABLE restarts DROP COLUMN evidence;
             ALTER TABLE restarts DROP COLUMN repeats;
             ALTER TABLE restarts DROP COLUMN last_at;
             ALTER TABLE restarts DROP COLUMN rearm_at;
             ALTER TABLE restarts DROP COLUMN tracked;
             ALTER TABLE restarts DROP COLUMN action;
             ALTER TABLE restarts DROP COLUMN child_pid;
             ALTER TABLE restarts DROP COLUMN child_start;
             DROP INDEX restarts_holds;
             ALTER TABLE restarts DROP COLUMN hold_until;
             ALTER TABLE restarts DROP COLUMN uid;
             ALTER TABLE restarts DROP COLUMN user;
             ALTER TABLE restarts DROP COLUMN peer;
             ALTER TABLE restarts DROP COLUMN reason_text;
             ALTER TABLE check_state DROP COLUMN position;
             INSERT INTO restarts (service, at, source, verdict, message, counts, outcome, pid)
                VALUES ('web', 1000, 'health', 'allowed', 'Restart ALLOWED (1/5 per hour)', 1, 'ok', 7);
             INSERT INTO heartbeats (service, name, at) VALUES ('web', 'beat', 5000);
             PRAGMA user_version = 2;",
        )
        .unwrap();
    drop(conn);
    let ledger = Ledger::open(dir.path()).unwrap();
    assert_eq!(ledger.history(None, None).unwrap().len(), 1);
    assert_eq!(
        ledger.last_heartbeat("web", "beat").unwrap(),
        Some(Timestamp::from_secs(5))
    );
    let version: i64 = ledger
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    ledger
        .record_delivery(&delivery("ops", &["web", "db"], 100, "failed"))
        .unwrap();
    ledger
        .record_delivery(&delivery("ops", &["api"], 200, "delivered"))
        .unwrap();
    let all = ledger.deliveries(None, None).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].services, ["web", "db"]);
    assert_eq!(all[0].events, ["failing", "given-up"]);
    assert_eq!(all[0].error.as_deref(), Some("the receiver answered 500"));
    assert_eq!(all[0].pid, std::process::id());
    assert_eq!(ledger.deliveries(Some("db"), None).unwrap().len(), 1);
    assert_eq!(
        ledger
            .deliveries(None, Some(Timestamp::from_secs(150)))
            .unwrap()[0]
            .channel,
        "ops"
    );
    assert!(ledger.deliveries(Some("nope"), None).unwrap().is_empty());
}

fn stop_by(caller: Caller, at: i64) -> OperatorRow {
    OperatorRow {
        action: OperatorAction::Stop,
        at: Timestamp::from_millis(at),
        until: None,
        caller: Some(caller),
        reason: Some("disk swap".to_owned()),
        source: "operator".to_owned(),
    }
}

/// A v6 ledger's holds (recorded with a uid) read the same after v7 adds `peer`; a hold
/// taken over the TCP listener has no uid, the user `token` and the caller's address.
#[test]
fn a_version_6_ledger_keeps_its_holds_and_tcp_callers_have_no_uid() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    ledger
        .record_operator(
            "web",
            &stop_by(Caller::local(1000, "alice".to_owned()), 1000),
        )
        .unwrap();
    drop(ledger);
    let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
    conn.execute_batch("ALTER TABLE restarts DROP COLUMN peer; PRAGMA user_version = 6;")
        .unwrap();
    drop(conn);
    let ledger = Ledger::open(dir.path()).unwrap();
    let hold = ledger
        .current_hold("web", Timestamp::from_millis(2000))
        .unwrap()
        .expect("held");
    assert_eq!(hold.caller, Some(Caller::local(1000, "alice".to_owned())));
    let from: std::net::SocketAddr = "192.0.2.7:41234".parse().unwrap();
    ledger
        .record_operator("api", &stop_by(Caller::token(from), 3000))
        .unwrap();
    let hold = ledger
        .current_hold("api", Timestamp::from_millis(4000))
        .unwrap()
        .expect("held");
    let caller = hold.caller.expect("a caller");
    assert_eq!(caller.uid, None);
    assert_eq!(caller.to_string(), "token from 192.0.2.7:41234");
    let row = ledger
        .history(Some("api"), None)
        .unwrap()
        .pop()
        .expect("the stop row");
    assert!(
        row.message.contains("by token from 192.0.2.7:41234"),
        "{}",
        row.message
    );
}

#[test]
fn concurrent_first_opens_all_succeed() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || Ledger::open(&path).map(|_| ()))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Ledger::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let err = Ledger::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

/// Within one given-up episode, later denials are counted on its first denial row; an
/// allowed restart or a reset ends the episode; when it re-arms by itself, a `rearmed`
/// row records the instant (once, however often it is asked).
#[test]
fn denials_of_one_episode_are_counted_on_its_first_row() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let policy = GuardPolicy {
        cooldown: Duration::ZERO,
        max_restarts: 1,
        ..GuardPolicy::default()
    };
    let ask = |secs: i64| {
        let now = Timestamp::from_secs(secs);
        let counted = ledger
            .counted_restarts("web", policy.window_start(now))
            .unwrap();
        let verdict = decide(&policy, &counted, RestartRequest::new(Source::Health), now);
        let recorded = ledger
            .record_verdict(&NewVerdict {
                service: "web",
                request: RestartRequest {
                    source: Source::Health,
                    forced: false,
                },
                verdict: &verdict,
                at: now,
                evidence: None,
                tracked: false,
            })
            .unwrap();
        (verdict, recorded)
    };
    let (v, _) = ask(1000);
    assert!(v.is_allowed());
    let (v, first) = ask(1010);
    assert_eq!(v.reason(), Some("limit"));
    assert_eq!(first.repeat, None);
    for n in 2..=5 {
        let (_, again) = ask(1010 + i64::from(n));
        assert_eq!(
            again,
            Recorded {
                id: first.id,
                repeat: Some(n)
            }
        );
    }
    let rows = ledger.history(Some("web"), None).unwrap();
    assert_eq!(rows.len(), 2, "one allowed, one denied row: {rows:?}");
    assert_eq!(rows[1].repeats, 4);
    assert_eq!(
        ledger
            .given_up_episode("web", Timestamp::from_secs(1020))
            .unwrap(),
        Some((5, Timestamp::from_secs(1010)))
    );
    // The budget re-arms at 1000 + 1h + 1ms: recorded then, once.
    let later = Timestamp::from_secs(5000);
    ledger.close_expired_episode("web", later).unwrap();
    ledger.close_expired_episode("web", later).unwrap();
    let rows = ledger.history(Some("web"), None).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].verdict, "rearmed");
    assert_eq!(rows[2].at, Timestamp::from_millis(4_600_001));
    assert_eq!(ledger.given_up_episode("web", later).unwrap(), None);
    // A denial after the re-arm opens a new episode: a row of its own.
    let (v, _) = ask(5000);
    assert!(v.is_allowed());
    let (_, new) = ask(5001);
    assert_eq!(new.repeat, None);
    assert_ne!(new.id, first.id);
}

/// The dashboard's last entries: the newest `limit` rows by id, shown oldest first, and
/// read through the primary key (no scan of the whole history every second).
#[test]
fn recent_history_is_the_last_rows_through_the_primary_key() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    assert!(ledger.recent_history(5).unwrap().is_empty());
    for (i, service) in ["web", "db", "web", "api", "db"].into_iter().enumerate() {
        allowed(&ledger, service, Timestamp::from_secs(100 + i as i64));
    }
    let recent = ledger.recent_history(3).unwrap();
    let seen: Vec<(&str, i64)> = recent
        .iter()
        .map(|r| (r.service.as_str(), r.at.as_millis() / 1000))
        .collect();
    assert_eq!(seen, [("web", 102), ("api", 103), ("db", 104)]);
    assert_eq!(ledger.recent_history(50).unwrap().len(), 5);
    let plan: String = ledger
        .conn
        .prepare("EXPLAIN QUERY PLAN SELECT id FROM restarts ORDER BY id DESC LIMIT 3")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    // The last allowed restart of one service, the same row its whole history ends with.
    let last = ledger.last_allowed("web").unwrap().unwrap();
    assert_eq!(last.at.as_millis() / 1000, 102);
    let whole = ledger.history(Some("web"), None).unwrap();
    assert_eq!(whole.last(), Some(&last));
    assert_eq!(ledger.last_allowed("nobody").unwrap(), None);
}

/// The bundled SQLite is built as `.cargo/config.toml` says: without the extensions a
/// one-shot command's every connection would register (FTS3/FTS5, R*Tree, dbstat) and
/// without loadable extensions, but with what the ledger relies on (foreign keys on by
/// default, WAL).
#[test]
fn sqlite_is_built_without_the_extensions_the_ledger_does_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let mut stmt = ledger.conn.prepare("PRAGMA compile_options").unwrap();
    let options: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for absent in [
        "ENABLE_FTS3",
        "ENABLE_FTS5",
        "ENABLE_RTREE",
        "ENABLE_DBSTAT_VTAB",
        "SOUNDEX",
        "ENABLE_STAT4",
    ] {
        assert!(
            !options.iter().any(|o| o == absent),
            "{absent}: {options:?}"
        );
    }
    for present in [
        "OMIT_LOAD_EXTENSION",
        "DEFAULT_MEMSTATUS=0",
        "DEFAULT_FOREIGN_KEYS",
    ] {
        assert!(
            options.iter().any(|o| o == present),
            "{present}: {options:?}"
        );
    }
    let fts5 = ledger
        .conn
        .execute_batch("CREATE VIRTUAL TABLE t USING fts5(x)");
    assert!(fts5.is_err(), "fts5 is built in");
    let journal: String = ledger
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}
