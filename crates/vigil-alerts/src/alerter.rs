//! The running alert channels: routing on the hot path, and per channel two tasks off it.
//!
//! [`Alerter::notify`] is all the hot path does: route the alert (the service's `alerts`
//! list, the channel's `events`) and push it into each chosen channel's bounded inbox. It
//! never awaits, never blocks on I/O, and cannot fail. Per channel:
//!
//! - the **group task** owns the channel's [`Throttle`]: it drains the inbox, deduplicates,
//!   and when a `group_wait` window closes pushes one [`Message`] into the outbox;
//! - the **send task** takes messages from the outbox and delivers each, retrying with
//!   backoff and jitter; every final outcome (delivered, or failed after the last try: a
//!   dead letter) goes to the [`DeliveryLog`] (the daemon's ledger).
//!
//! Both queues are [`DropOldest`]: bounded by the channel's `queue_size`, drops counted
//! and logged. Time comes from the injected [`Clock`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vigil_config::model::{AlertChannel, AlertEvent, AlertRoute, Config, EventSet};
use vigil_core::{Timestamp, format_duration};

use crate::alert::{Alert, Message, Numbers, Outcome};
use crate::queue::{DropOldest, Pushed};
use crate::retry;
use crate::send::{SendError, Sender};
use crate::throttle::{Offer, Throttle};

/// The wall clock, injected (only the daemon reads it).
pub type Clock = fn() -> Timestamp;

/// The final outcome of one message through one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub channel: String,
    /// `webhook`, `slack`, `email`, `exec`.
    pub kind: &'static str,
    /// When the group closed and the message was assembled.
    pub created_at: Timestamp,
    pub finished_at: Timestamp,
    pub delivered: bool,
    pub attempts: u32,
    /// The message's summary line.
    pub summary: String,
    /// The events in the message, each once, in order of first appearance.
    pub events: Vec<&'static str>,
    /// The services in the message, each once.
    pub services: Vec<String>,
    pub alerts: usize,
    /// The last error when not delivered.
    pub error: Option<String>,
}

/// Where deliveries are recorded (the daemon's ledger) and failed attempts reported.
pub trait DeliveryLog: Send + Sync + 'static {
    fn record(&self, delivery: Delivery);

    /// One failed attempt; `retry_in` is the pause before the next one (`None`: it was the
    /// last). Logging is done by the alerter; this is for observers.
    fn attempt_failed(
        &self,
        _channel: &str,
        _attempt: u32,
        _error: &str,
        _retry_in: Option<Duration>,
    ) {
    }
}

/// A log that records nothing.
#[derive(Debug, Default)]
pub struct NoLog;

impl DeliveryLog for NoLog {
    fn record(&self, _: Delivery) {}
}

/// What the alerter needs from its host process.
#[derive(Clone)]
pub struct Deps {
    /// The host name that goes into every message.
    pub host: Arc<str>,
    pub clock: Clock,
    pub log: Arc<dyn DeliveryLog>,
    pub http: reqwest::Client,
}

struct ChannelHandle {
    name: Arc<str>,
    events: EventSet,
    inbox: Arc<DropOldest<Arc<Alert>>>,
}

/// The running channels of one configuration.
pub struct Alerter {
    channels: Vec<ChannelHandle>,
    routes: HashMap<String, AlertRoute>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.channels.iter().map(|c| &*c.name).collect();
        f.debug_struct("Alerter").field("channels", &names).finish()
    }
}

impl Alerter {
    /// Starts the tasks of every channel of `config` on the current tokio runtime.
    pub fn start(config: &Config, deps: Deps) -> Alerter {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let channels = config
            .alerts
            .iter()
            .map(|spec| start_channel(spec, &deps, &cancel, &tracker))
            .collect();
        tracker.close();
        let routes = config
            .services
            .iter()
            .map(|s| (s.name.to_string(), s.alerts.clone()))
            .collect();
        Alerter {
            channels,
            routes,
            cancel,
            tracker,
        }
    }

    /// An alerter without channels: `notify` does nothing.
    pub fn none() -> Alerter {
        let tracker = TaskTracker::new();
        tracker.close();
        Alerter {
            channels: Vec::new(),
            routes: HashMap::new(),
            cancel: CancellationToken::new(),
            tracker,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The hot path: routes `alert` and queues it on each chosen channel. Never waits.
    pub fn notify(&self, alert: Alert) {
        if self.channels.is_empty() {
            return;
        }
        let route = self.routes.get(&alert.service);
        let mut shared: Option<Arc<Alert>> = None;
        for ch in &self.channels {
            if !ch.events.contains(alert.event) || route.is_some_and(|r| !r.includes(&ch.name)) {
                continue;
            }
            let item = shared
                .get_or_insert_with(|| Arc::new(alert.clone()))
                .clone();
            if let Pushed::DroppedOldest(old) = ch.inbox.push(item) {
                overflow(
                    &ch.name,
                    "inbox",
                    ch.inbox.dropped(),
                    old.event,
                    &old.service,
                );
            }
        }
    }

    /// Sends what is grouped at once, lets deliveries in flight finish for up to `grace`,
    /// and stops every task (naming how many were still running).
    pub async fn shutdown(self, grace: Duration) {
        self.cancel.cancel();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                event = "alerts_abandoned",
                tasks = self.tracker.len(),
                "shutdown: alert deliveries still running after {}; abandoned",
                format_duration(grace)
            );
        }
    }
}

impl Drop for Alerter {
    fn drop(&mut self) {
        // Without an explicit shutdown the tasks still flush and end on their own.
        self.cancel.cancel();
    }
}

fn overflow(channel: &str, queue: &str, dropped: u64, event: AlertEvent, service: &str) {
    // The first drop, then every 100th: a storm must not become a log storm.
    if dropped == 1 || dropped.is_multiple_of(100) {
        tracing::warn!(
            event = "alert_dropped",
            channel,
            queue,
            dropped,
            "alert channel {channel}: {queue} full, dropped the oldest entry ({event} for {service}); {dropped} dropped so far"
        );
    }
}

fn start_channel(
    spec: &AlertChannel,
    deps: &Deps,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> ChannelHandle {
    let name: Arc<str> = Arc::from(spec.name.as_str());
    let inbox = Arc::new(DropOldest::new(spec.queue_size));
    let outbox = Arc::new(DropOldest::new(spec.queue_size));
    let group = GroupTask {
        name: name.clone(),
        kind: spec.kind.as_str(),
        throttle: Throttle::new(spec.repeat, spec.group_wait, spec.events),
        inbox: inbox.clone(),
        outbox: outbox.clone(),
        deps: deps.clone(),
        cancel: cancel.clone(),
    };
    tracker.spawn(group.run());
    let send = SendTask {
        sender: Sender::new(Arc::new(spec.clone()), deps.http.clone()),
        outbox,
        deps: deps.clone(),
        cancel: cancel.clone(),
    };
    tracker.spawn(send.run());
    ChannelHandle {
        name,
        events: spec.events,
        inbox,
    }
}

struct GroupTask {
    name: Arc<str>,
    kind: &'static str,
    throttle: Throttle,
    inbox: Arc<DropOldest<Arc<Alert>>>,
    outbox: Arc<DropOldest<Message>>,
    deps: Deps,
    cancel: CancellationToken,
}

impl GroupTask {
    async fn run(mut self) {
        loop {
            let wait = self
                .throttle
                .due_at()
                .map(|at| at.saturating_since((self.deps.clock)()));
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                item = self.inbox.pop() => match item {
                    Some(alert) => {
                        self.offer(alert);
                        while let Some(more) = self.inbox.try_pop() {
                            self.offer(more);
                        }
                    }
                    None => break,
                },
                _ = sleep_opt(wait) => {}
            }
            if let Some(group) = self.throttle.take_due((self.deps.clock)()) {
                self.emit(group);
            }
        }
        // Shutdown or reload: what is grouped goes out now.
        while let Some(alert) = self.inbox.try_pop() {
            self.offer(alert);
        }
        if let Some(group) = self.throttle.take_all() {
            self.emit(group);
        }
        self.outbox.close();
    }

    fn offer(&mut self, alert: Arc<Alert>) {
        let now = (self.deps.clock)();
        match self.throttle.offer(alert.clone(), now) {
            Offer::Queued => {}
            Offer::Duplicate { ago } => tracing::debug!(
                event = "alert_suppressed",
                channel = &*self.name,
                service = %alert.service,
                "alert {} for {} not sent again: identical one sent {} ago (repeat)",
                alert.event,
                alert.subject(),
                format_duration(ago)
            ),
            Offer::NothingToRecover => tracing::debug!(
                event = "alert_suppressed",
                channel = &*self.name,
                service = %alert.service,
                "recovered for {} not sent: this channel was not told it was failing",
                alert.subject()
            ),
        }
    }

    fn emit(&mut self, alerts: Vec<Arc<Alert>>) {
        let msg = Message {
            channel: self.name.clone(),
            host: self.deps.host.clone(),
            test: false,
            created_at: (self.deps.clock)(),
            alerts,
        };
        if let Pushed::DroppedOldest(old) = self.outbox.push(msg) {
            let first = old.alerts.first();
            overflow(
                &self.name,
                "outbox",
                self.outbox.dropped(),
                first.map_or(AlertEvent::Failing, |a| a.event),
                first.map_or("", |a| a.service.as_str()),
            );
            self.deps.log.record(delivery(
                &self.name,
                self.kind,
                &old,
                (self.deps.clock)(),
                0,
                Some("dropped: the channel's queue was full".to_owned()),
            ));
        }
    }
}

async fn sleep_opt(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

fn delivery(
    channel: &str,
    kind: &'static str,
    msg: &Message,
    finished_at: Timestamp,
    attempts: u32,
    error: Option<String>,
) -> Delivery {
    let mut events = Vec::new();
    let mut services: Vec<String> = Vec::new();
    for a in &msg.alerts {
        if !events.contains(&a.event.as_str()) {
            events.push(a.event.as_str());
        }
        if !services.contains(&a.service) {
            services.push(a.service.clone());
        }
    }
    Delivery {
        channel: channel.to_owned(),
        kind,
        created_at: msg.created_at,
        finished_at,
        delivered: error.is_none(),
        attempts,
        summary: msg.summary(),
        events,
        services,
        alerts: msg.alerts.len(),
        error,
    }
}

struct SendTask {
    sender: Sender,
    outbox: Arc<DropOldest<Message>>,
    deps: Deps,
    cancel: CancellationToken,
}

impl SendTask {
    async fn run(self) {
        while let Some(msg) = self.outbox.pop().await {
            let (attempts, result) = deliver(&self.sender, &msg, &self.deps, &self.cancel).await;
            let channel = self.sender.channel();
            let now = (self.deps.clock)();
            match &result {
                Ok(()) => tracing::info!(
                    event = "alert_delivered",
                    channel = %channel.name,
                    attempts,
                    alerts = msg.alerts.len(),
                    "alert delivered through {} ({}): {}",
                    channel.name,
                    channel.kind.as_str(),
                    msg.summary()
                ),
                Err(e) => tracing::error!(
                    event = "alert_failed",
                    channel = %channel.name,
                    attempts,
                    alerts = msg.alerts.len(),
                    "alert delivery through {} ({}) FAILED after {attempts} attempt(s), recorded as a dead letter: {e}; message was: {}",
                    channel.name,
                    channel.kind.as_str(),
                    msg.summary()
                ),
            }
            self.deps.log.record(delivery(
                &channel.name,
                channel.kind.as_str(),
                &msg,
                now,
                attempts,
                result.err().map(|e| e.0),
            ));
        }
    }
}

/// Attempts `msg` up to the channel's `retries` times; after shutdown started, no more
/// pauses (the attempt in flight may finish).
pub async fn deliver(
    sender: &Sender,
    msg: &Message,
    deps: &Deps,
    cancel: &CancellationToken,
) -> (u32, Result<(), SendError>) {
    let channel = sender.channel();
    let tries = channel.retries.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match sender.send(msg).await {
            Ok(()) => return (attempt, Ok(())),
            Err(e) => e,
        };
        let last = attempt >= tries || cancel.is_cancelled();
        let pause = (!last).then(|| retry::pause(channel.retry_delay, attempt, fastrand::f64()));
        deps.log
            .attempt_failed(&channel.name, attempt, &error.0, pause);
        let Some(pause) = pause else {
            return (attempt, Err(error));
        };
        tracing::warn!(
            event = "alert_retry",
            channel = %channel.name,
            attempt,
            of = tries,
            retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
            "alert delivery through {} failed (attempt {attempt}/{tries}): {error}; retrying in {}",
            channel.name,
            format_duration(pause)
        );
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => return (attempt, Err(error)),
        }
    }
}

/// A test message for `vigil alert test`: one alert of `event` about service `vigil-test`.
pub fn test_message(channel: &str, host: &str, event: AlertEvent, now: Timestamp) -> Message {
    let alert = Alert {
        event,
        service: "vigil-test".to_owned(),
        check: matches!(
            event,
            AlertEvent::Failing | AlertEvent::Recovered | AlertEvent::Warning
        )
        .then(|| "example".to_owned()),
        at: now,
        message: format!(
            "This is a test alert ({event}) sent with `vigil alert test {channel}`; nothing happened."
        ),
        source: matches!(event, AlertEvent::Restarted | AlertEvent::Skipped).then_some("manual"),
        status: None,
        outcome: (event == AlertEvent::Restarted).then_some(Outcome::Ok),
        numbers: Numbers::default(),
    };
    Message {
        channel: Arc::from(channel),
        host: Arc::from(host),
        test: true,
        created_at: now,
        alerts: vec![Arc::new(alert)],
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`), or `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
