//! The dashboard's live feed, `GET /v1/live`: server-sent events, one a second to every
//! client at once: first a `snapshot` (the `vigil status` document and the ledger's last
//! entries), then `changes`: only the services whose facts changed since the last tick,
//! and the entries and dangling intents when they changed. What only time changes
//! (a check's age, the cooldown left, a hold's or a unit's seconds) is not a change: the
//! page counts those on from the tick's `generated_at`. A hundred services are about
//! 100 KB as a snapshot; a tick where two checks ran is about 2 KB.
//!
//! Owns: the one publisher task per listener, which runs only while a client is
//! connected, builds each tick once and serializes its two events once (a client costs a
//! wake-up and a write of shared bytes, never a report of its own); the bound on clients
//! ([`MAX_CLIENTS`], one more is a 503); and each client's body, which ends when the
//! daemon stops. Polling `/v1/status` and `/v1/history` instead would build a report per
//! client and per poll: 67-75 % of a core for 100 pages against 1.2-1.4 % on this feed
//! (docs/BENCHMARKS.md, "Dashboard (issue 14)").
//!
//! What the drivers say (a `status_command` run, Docker's inspect, a unit's state over
//! D-Bus) is read apart from the snapshots: by one background task at a time, every
//! [`DRIVERS_EVERY`], each snapshot carrying the last views read. A snapshot is the
//! ledger's facts only, so it costs no process and no round trip, and a probe that hangs
//! until its `command_timeout` delays those views, never the feed.
//!
//! Must not: change anything, or hold a report's ledger reads open between ticks.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::super::server::{ApiError, AppState, Peer};
use crate::render as output;

/// Live clients served at once by one listener (each holds one of its connections). One
/// more is answered 503 with `Retry-After`; the page then tries again on its own.
pub const MAX_CLIENTS: usize = 128;

/// How often a snapshot is built and sent while anyone watches: as often as `vigil
/// status` promises a change of verdict to be visible.
pub const EVERY: Duration = Duration::from_secs(1);

/// How many of the ledger's last entries a snapshot carries.
pub const RECENT_ENTRIES: usize = 20;

/// How often the drivers are asked again, while anyone watches (in ticks of [`EVERY`]):
/// a `status_command` run every second for every service would cost a process per
/// service per second for as long as a page stays open.
pub const DRIVERS_EVERY: Duration = Duration::from_secs(10);

/// What a browser waits before reconnecting after the stream ended (the daemon stopped
/// or restarted), sent as the stream's `retry:`.
const RECONNECT_MS: u64 = 3000;

/// One tick of the feed, framed as events: the whole `snapshot`, for a client that has
/// nothing yet or missed the previous tick, and the `changes` since the previous tick, for
/// a client that has that one (`None`: the previous tick had no snapshot).
struct Published {
    seq: u64,
    full: Bytes,
    changes: Option<Bytes>,
}

type Shared = Option<Arc<Published>>;

/// One listener's feed: the last tick, shared by its clients.
pub(in crate::control) struct Live {
    feed: watch::Sender<Shared>,
    clients: Arc<Semaphore>,
    /// Whether the publisher runs. Taken only to start or stop it, together with a look
    /// at the number of clients, so a client never subscribes to a publisher that is
    /// just ending.
    publishing: Mutex<bool>,
    cancel: CancellationToken,
}

impl Live {
    /// A feed whose streams end when `cancel` (the listener's, the daemon's shutdown).
    pub(in crate::control) fn new(cancel: CancellationToken) -> Arc<Live> {
        Arc::new(Live {
            feed: watch::Sender::new(None),
            clients: Arc::new(Semaphore::new(MAX_CLIENTS)),
            publishing: Mutex::new(false),
            cancel,
        })
    }

    fn publishing(&self) -> MutexGuard<'_, bool> {
        self.publishing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new client's receiver, starting the publisher (on the caller's runtime: the
    /// listener's) when nobody was watching.
    fn subscribe(self: &Arc<Live>, st: &AppState) -> watch::Receiver<Shared> {
        let mut publishing = self.publishing();
        let rx = self.feed.subscribe();
        if !*publishing {
            *publishing = true;
            tokio::spawn(publish(self.clone(), st.clone()));
        }
        rx
    }
}

/// Builds and sends a snapshot every [`EVERY`] until the last client has gone (or the
/// daemon stops). The next client starts it again.
async fn publish(live: Arc<Live>, st: AppState) {
    tracing::debug!("dashboard feed: started");
    let mut drivers = Drivers::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    let mut previous = None;
    let mut seq = 0_u64;
    loop {
        tokio::select! {
            () = live.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        {
            let mut publishing = live.publishing();
            if live.feed.receiver_count() == 0 {
                // No stale snapshot for the next client: it waits for a fresh one.
                live.feed.send_replace(None);
                *publishing = false;
                tracing::debug!("dashboard feed: stopped, nobody watches");
                return;
            }
        }
        drivers.tick(&st, std::mem::take(&mut first)).await;
        seq += 1;
        let published = match snapshot(&st, &drivers.views).await {
            Ok(tick) => tick.publish(seq, st.started_at, &mut previous),
            Err(error) => {
                tracing::warn!(%error, event = "dashboard_snapshot_failed", "dashboard feed: cannot build a snapshot");
                // The next tick is a whole snapshot for everyone.
                previous = None;
                let problem = serde_json::json!({ "error": error.to_string() }).to_string();
                Published {
                    seq,
                    full: Bytes::from(event("problem", &problem)),
                    changes: None,
                }
            }
        };
        live.feed.send_replace(Some(Arc::new(published)));
    }
}

/// One tick's facts, as JSON values.
struct Tick {
    status: Value,
    history: Value,
}

/// What the last tick sent, to tell what changed.
struct Previous {
    /// Each service's facts without what only time changes, by name.
    services: BTreeMap<String, String>,
    order: Vec<String>,
    history: Value,
    dangling: Value,
}

impl Tick {
    fn publish(
        self,
        seq: u64,
        started_at: vigil_core::Timestamp,
        previous: &mut Option<Previous>,
    ) -> Published {
        let Tick { status, history } = self;
        let generated_at = status.get("generated_at").cloned().unwrap_or(Value::Null);
        let dangling = status
            .get("dangling_intents")
            .cloned()
            .unwrap_or(Value::Null);
        let services: &[Value] = status
            .get("services")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let keys: Vec<(String, String)> = services
            .iter()
            .map(|s| {
                let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
                (name.to_owned(), timeless(s))
            })
            .collect();
        let order: Vec<String> = keys.iter().map(|(name, _)| name.clone()).collect();
        let changes = previous.as_ref().map(|before| {
            let changed: Vec<&Value> = services
                .iter()
                .zip(&keys)
                .filter(|(_, (name, key))| before.services.get(name) != Some(key))
                .map(|(service, _)| service)
                .collect();
            let mut doc = serde_json::json!({
                "seq": seq,
                "generated_at": generated_at,
                "services": changed,
            });
            if order != before.order {
                doc["order"] = serde_json::json!(order);
            }
            if history != before.history {
                doc["history"] = history.clone();
            }
            if dangling != before.dangling {
                doc["dangling_intents"] = dangling.clone();
            }
            Bytes::from(event("changes", &doc.to_string()))
        });
        let full = serde_json::json!({
            "version": output::JSON_VERSION,
            "vigil": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "started_at": started_at.to_string(),
            "every_ms": u64::try_from(EVERY.as_millis()).unwrap_or(u64::MAX),
            "seq": seq,
            "status": &status,
            "history": &history,
        });
        *previous = Some(Previous {
            services: keys.into_iter().collect(),
            order,
            history,
            dangling,
        });
        Published {
            seq,
            full: Bytes::from(event("snapshot", &full.to_string())),
            changes,
        }
    }
}

/// A service's facts as compact JSON without what only the passing of time changes: a
/// check's `age_secs`, `cooldown_left_secs`, a hold's `left_secs` and a unit's
/// `uptime_secs` (the page counts them on from the tick's `generated_at`).
fn timeless(service: &Value) -> String {
    let mut service = service.clone();
    if let Some(s) = service.as_object_mut() {
        s.remove("cooldown_left_secs");
        for (outer, inner) in [("hold", "left_secs"), ("systemd", "uptime_secs")] {
            if let Some(o) = s.get_mut(outer).and_then(Value::as_object_mut) {
                o.remove(inner);
            }
        }
        if let Some(checks) = s.get_mut("checks").and_then(Value::as_array_mut) {
            for check in checks.iter_mut().filter_map(Value::as_object_mut) {
                check.remove("age_secs");
            }
        }
    }
    service.to_string()
}

/// One server-sent event. `data` is one line (compact JSON escapes its newlines).
fn event(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The drivers' views a publisher's snapshots carry, and the one task reading them anew.
struct Drivers {
    views: Arc<BTreeMap<String, output::DriverView>>,
    reading: Option<JoinHandle<BTreeMap<String, output::DriverView>>>,
    /// Ticks since the last read started.
    age: u32,
    probes: vigil_checks::ProbeContext,
}

impl Drivers {
    fn new() -> Drivers {
        Drivers {
            views: Arc::default(),
            reading: None,
            age: 0,
            probes: vigil_checks::ProbeContext::new(),
        }
    }

    /// Takes the views of a read that finished, and starts the next one when it is due
    /// and none is running. On the `first` tick it waits up to [`EVERY`] for them, so a
    /// new page usually starts with the drivers' views rather than without.
    async fn tick(&mut self, st: &AppState, first: bool) {
        self.age = self.age.saturating_add(1);
        let due = self.age >= ticks(DRIVERS_EVERY);
        if self.reading.is_none() && (first || due) {
            self.age = 0;
            let config = st.view.borrow().config.clone();
            let probes = self.probes.clone();
            self.reading = Some(tokio::spawn(async move {
                let mut views = BTreeMap::new();
                for service in &config.services {
                    let view = output::DriverView::read(&service.driver, &probes).await;
                    views.insert(service.name.to_string(), view);
                }
                views
            }));
        }
        let Some(reading) = self.reading.as_mut() else {
            return;
        };
        let done = if first {
            tokio::time::timeout(EVERY, reading).await.ok()
        } else if reading.is_finished() {
            Some(reading.await)
        } else {
            None
        };
        match done {
            None => {}
            Some(Ok(views)) => {
                self.views = Arc::new(views);
                self.reading = None;
            }
            Some(Err(error)) => {
                tracing::warn!(%error, event = "dashboard_drivers_failed", "dashboard feed: reading the drivers failed");
                self.reading = None;
            }
        }
    }
}

impl Drop for Drivers {
    /// The publisher ended: a read still running is abandoned (its processes are killed
    /// with their group when their futures drop).
    fn drop(&mut self) {
        if let Some(reading) = self.reading.take() {
            reading.abort();
        }
    }
}

/// How many ticks of [`EVERY`] make `every`.
fn ticks(every: Duration) -> u32 {
    let n = every.as_millis() / EVERY.as_millis().max(1);
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

async fn snapshot(
    st: &AppState,
    drivers: &BTreeMap<String, output::DriverView>,
) -> Result<Tick, crate::ledger::LedgerError> {
    let view = st.view.borrow().clone();
    let status = output::status_using(
        &view.config,
        &st.guard.ledger,
        None,
        output::Drivers::Known(drivers),
    )
    .await?;
    let mut rows = st
        .guard
        .ledger
        .call(|l| l.recent_history(RECENT_ENTRIES))
        .await?;
    for row in &mut rows {
        row.evidence = None;
    }
    // Serializing these types cannot fail (string keys, no non-finite floats that
    // serde_json would refuse); null would show as an empty page, not a panic.
    Ok(Tick {
        status: serde_json::to_value(&status).unwrap_or(Value::Null),
        history: serde_json::to_value(output::history_json(&rows, &[]).entries)
            .unwrap_or(Value::Null),
    })
}

/// `GET /v1/live`: a `hello` event (whether this listener needs the bearer token for the
/// operator's endpoints), then the current snapshot, then each new one, until the client
/// goes away or the daemon stops.
pub(super) async fn stream(
    State(st): State<AppState>,
    Extension(peer): Extension<Peer>,
) -> Result<Response, ApiError> {
    let live = st.live.clone();
    if live.cancel.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is stopping",
        ));
    }
    let Ok(client) = live.clients.clone().try_acquire_owned() else {
        let mut busy = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_CLIENTS} dashboards are watching already; try again later"),
        )
        .into_response();
        busy.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return Ok(busy);
    };
    let hello = serde_json::json!({
        "version": output::JSON_VERSION,
        "token_needed": matches!(peer, Peer::Remote { .. }),
        "every_ms": u64::try_from(EVERY.as_millis()).unwrap_or(u64::MAX),
    });
    let hello = format!(
        "retry: {RECONNECT_MS}\n{}",
        event("hello", &hello.to_string())
    );
    let body = Feed {
        hello: Some(Bytes::from(hello)),
        rx: live.subscribe(&st),
        fresh: true,
        sent: None,
        changed: None,
        stopping: Box::pin(live.cancel.clone().cancelled_owned()),
        _client: client,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Body::new(body),
    )
        .into_response())
}

type Changed = Pin<Box<dyn Future<Output = Option<watch::Receiver<Shared>>> + Send>>;

/// One client's stream: its `hello`, then each tick the publisher sends: its `changes`
/// when this client got the tick before, else its whole `snapshot` (a tick that came while
/// the client was still writing the last one replaces it: a slow client skips ticks, it
/// never queues them, and catches up with a snapshot).
struct Feed {
    hello: Option<Bytes>,
    rx: watch::Receiver<Shared>,
    /// `rx`'s current value has not been sent yet.
    fresh: bool,
    /// The last tick sent.
    sent: Option<u64>,
    changed: Option<Changed>,
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    _client: OwnedSemaphorePermit,
}

impl hyper::body::Body for Feed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(hello) = this.hello.take() {
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(hello))));
        }
        // The daemon stops: the stream ends, so the connection can close at once.
        if this.stopping.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        loop {
            if std::mem::take(&mut this.fresh)
                && let Some(tick) = this.rx.borrow_and_update().clone()
            {
                let follows = this
                    .sent
                    .is_some_and(|sent| sent.wrapping_add(1) == tick.seq);
                this.sent = Some(tick.seq);
                let event = match &tick.changes {
                    Some(changes) if follows => changes.clone(),
                    _ => tick.full.clone(),
                };
                return Poll::Ready(Some(Ok(hyper::body::Frame::data(event))));
            }
            let rx = &this.rx;
            let changed = this.changed.get_or_insert_with(|| {
                let mut rx = rx.clone();
                Box::pin(async move { rx.changed().await.ok().map(|()| rx) })
            });
            match changed.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(rx)) => {
                    this.changed = None;
                    this.rx = rx;
                    this.fresh = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str, status: &str, age: u64, cooldown: u64) -> Value {
        json!({
            "name": name, "state": "ok", "cooldown_left_secs": cooldown,
            "hold": {"state": "paused", "left_secs": cooldown},
            "systemd": null,
            "checks": [{"name": "c", "status": status, "age_secs": age}],
        })
    }

    fn tick(at: &str, services: Vec<Value>, history: Value) -> Tick {
        Tick {
            status: json!({"generated_at": at, "services": services, "dangling_intents": []}),
            history,
        }
    }

    /// The `data:` of an event, parsed.
    fn data(event: &Bytes) -> Value {
        let text = std::str::from_utf8(event).expect("utf-8");
        let line = text.lines().nth(1).expect("a data line");
        serde_json::from_str(line.trim_start_matches("data: ")).expect("JSON")
    }

    #[test]
    fn changes_carry_only_what_changed_beyond_the_passing_of_time() {
        let at = vigil_core::Timestamp::UNIX_EPOCH;
        let mut previous = None;
        let first = tick(
            "t1",
            vec![
                service("a", "passing", 1, 30),
                service("b", "passing", 1, 0),
            ],
            json!([]),
        )
        .publish(1, at, &mut previous);
        assert!(first.changes.is_none(), "nothing to change from");
        assert!(
            std::str::from_utf8(&first.full)
                .expect("utf-8")
                .starts_with("event: snapshot\n")
        );
        assert_eq!(data(&first.full)["seq"], 1);

        // Only ages and the cooldown moved on: no service is sent.
        let second = tick(
            "t2",
            vec![
                service("a", "passing", 2, 29),
                service("b", "passing", 2, 0),
            ],
            json!([]),
        )
        .publish(2, at, &mut previous);
        let changes = data(second.changes.as_ref().expect("changes"));
        assert_eq!(
            changes,
            json!({"seq": 2, "generated_at": "t2", "services": []})
        );
        // The whole snapshot is there for a client that missed a tick.
        assert_eq!(
            data(&second.full)["status"]["services"][0]["cooldown_left_secs"],
            29
        );

        // b's check fails and the ledger has an entry: b and the entries are sent.
        let third = tick(
            "t3",
            vec![
                service("a", "passing", 3, 28),
                service("b", "failing", 0, 0),
            ],
            json!([{"id": 1}]),
        )
        .publish(3, at, &mut previous);
        let changes = data(third.changes.as_ref().expect("changes"));
        assert_eq!(changes["services"].as_array().map(Vec::len), Some(1));
        assert_eq!(changes["services"][0]["name"], "b");
        assert_eq!(changes["history"], json!([{"id": 1}]));
        assert!(changes.get("order").is_none());
        assert!(changes.get("dangling_intents").is_none());

        // A reload removed a: the order says so.
        let fourth = tick(
            "t4",
            vec![service("b", "failing", 1, 0)],
            json!([{"id": 1}]),
        )
        .publish(4, at, &mut previous);
        let changes = data(fourth.changes.as_ref().expect("changes"));
        assert_eq!(changes["order"], json!(["b"]));
        assert_eq!(changes["services"], json!([]));
        assert!(changes.get("history").is_none());
    }
}
