//! What each channel kind sends for a [`Message`], built as values (no I/O).
//!
//! - [`document`]: the versioned JSON document of webhooks and exec channels
//!   (docs/alerts.md, "Webhook payload"); fields are only ever added within a version.
//! - [`slack`]: a Slack incoming-webhook payload (`text` + `blocks`).
//! - [`email_subject`] / [`email_body`]: a plain-text email a person can act on.

use serde_json::{Map, Value, json};
use vigil_config::model::AlertEvent;
use vigil_core::{Timestamp, format_duration};

use crate::alert::{Alert, Message, Numbers, Outcome};

/// The version of [`document`]'s schema.
pub const VERSION: u32 = 1;

/// The webhook / exec document.
pub fn document(msg: &Message) -> Value {
    let alerts: Vec<Value> = msg.alerts.iter().map(|a| alert_json(a)).collect();
    json!({
        "version": VERSION,
        "source": "vigil",
        "host": &*msg.host,
        "channel": &*msg.channel,
        "test": msg.test,
        "sent_at": msg.created_at.to_string(),
        "summary": msg.summary(),
        "alerts": alerts,
    })
}

/// [`document`] serialized: the exact bytes that are sent (and signed).
pub fn document_bytes(msg: &Message) -> Vec<u8> {
    // Serializing a `Value` cannot fail.
    serde_json::to_vec(&document(msg)).unwrap_or_default()
}

fn alert_json(a: &Alert) -> Value {
    json!({
        "event": a.event.as_str(),
        "service": a.service,
        "check": a.check,
        "at": a.at.to_string(),
        "title": a.title(),
        "message": a.message,
        "source": a.source,
        "status": a.status,
        "outcome": a.outcome.map(Outcome::as_str),
        "numbers": numbers_json(&a.numbers),
    })
}

fn numbers_json(n: &Numbers) -> Value {
    let mut m = Map::new();
    if let Some(count) = n.count {
        m.insert("count".into(), count.into());
    }
    if let Some(max) = n.max {
        m.insert("max".into(), max.into());
    }
    if let Some(window) = n.window {
        m.insert("window_secs".into(), window.as_secs().into());
    }
    if let Some(wait) = n.wait {
        m.insert("wait_secs".into(), wait.as_secs_f64().ceil().into());
    }
    if let Some(rearm_at) = n.rearm_at {
        m.insert("rearm_at".into(), rearm_at.to_string().into());
    }
    if let Some(duration) = n.duration {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        m.insert("duration_ms".into(), ms.into());
    }
    Value::Object(m)
}

/// The numbers in words: `5/5 restarts in 1h; re-arms at 2025-02-14T11:12:00Z`.
pub fn numbers_text(n: &Numbers, now: Timestamp) -> Option<String> {
    let mut parts = Vec::new();
    match (n.count, n.max, n.window) {
        (Some(c), Some(m), Some(w)) => {
            parts.push(format!("{c}/{m} restarts in {}", format_duration(w)))
        }
        (Some(c), Some(m), None) => parts.push(format!("{c}/{m} restarts")),
        _ => {}
    }
    if let Some(wait) = n.wait {
        parts.push(format!("allowed again in {}", format_duration(wait)));
    }
    if let Some(rearm_at) = n.rearm_at {
        parts.push(format!(
            "re-arms at {rearm_at} (in {})",
            format_duration(rearm_at.saturating_since(now))
        ));
    }
    if let Some(d) = n.duration {
        parts.push(format!("the restart took {}", format_duration(d)));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

// ---------------------------------------------------------------- Slack

/// At most this many alerts get their own section; Slack allows 50 blocks.
const SLACK_MAX_SECTIONS: usize = 20;

/// `&`, `<` and `>` must be escaped in Slack's mrkdwn.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cut(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The Slack incoming-webhook payload.
pub fn slack(msg: &Message) -> Value {
    let summary = msg.summary();
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&summary, 150), "emoji": false},
    })];
    for a in msg.alerts.iter().take(SLACK_MAX_SECTIONS) {
        let mut fields = vec![
            field("Service", &a.service),
            field("Event", a.event.as_str()),
        ];
        if let Some(check) = &a.check {
            fields.push(field("Check", check));
        }
        if let Some(status) = a.status {
            fields.push(field("Status", status));
        }
        if let Some(source) = a.source {
            fields.push(field("Source", source));
        }
        fields.push(field("Time", &a.at.to_string()));
        if let Some(numbers) = numbers_text(&a.numbers, msg.created_at) {
            fields.push(field("Numbers", &numbers));
        }
        let text = format!("*{}*\n{}", a.headline(), slack_escape(&a.message));
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": cut(&text, 3000)},
            "fields": fields,
        }));
    }
    if msg.alerts.len() > SLACK_MAX_SECTIONS {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("…and {} more alert(s) in this group", msg.alerts.len() - SLACK_MAX_SECTIONS)}],
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": slack_escape(&format!("Vigil on {} · channel {} · {}", msg.host, msg.channel, msg.created_at))}],
    }));
    json!({
        "text": slack_escape(&format!("[vigil {}] {summary}", msg.host)),
        "blocks": blocks,
    })
}

fn field(name: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": cut(&format!("*{name}*\n{}", slack_escape(value)), 2000)})
}

// ---------------------------------------------------------------- email

/// `[vigil] ACTION REQUIRED: web: automatic restarts stopped (web-01)`.
pub fn email_subject(msg: &Message) -> String {
    let subject = format!("[vigil] {} ({})", msg.summary(), msg.host);
    // Keep the subject on one line, whatever a service name holds.
    cut(&subject.replace(['\r', '\n'], " "), 200)
}

/// The plain-text body: each alert with its facts, then what to do.
pub fn email_body(msg: &Message) -> String {
    let mut out = String::new();
    if msg.test {
        out.push_str(&format!(
            "This is a test alert sent with `vigil alert test {}`. Nothing happened.\n\n",
            msg.channel
        ));
    }
    if msg.alerts.len() > 1 {
        out.push_str(&format!(
            "{} alerts from Vigil on {} (grouped):\n\n",
            msg.alerts.len(),
            msg.host
        ));
    }
    for (i, a) in msg.alerts.iter().enumerate() {
        if i > 0 {
            out.push_str("\n----\n\n");
        }
        out.push_str(a.title());
        out.push('\n');
        let mut line = |label: &str, value: &str| {
            out.push_str(&format!("{label:<8} {value}\n"));
        };
        line("Service:", &a.service);
        if let Some(check) = &a.check {
            line("Check:", check);
        }
        line("Event:", a.event.as_str());
        line("Host:", &msg.host);
        line("Time:", &a.at.to_string());
        if let Some(status) = a.status {
            line("Status:", status);
        }
        if let Some(source) = a.source {
            line("Source:", source);
        }
        line("What:", &a.message);
        if let Some(numbers) = numbers_text(&a.numbers, msg.created_at) {
            line("Numbers:", &numbers);
        }
    }
    let hints = hints(msg);
    if !hints.is_empty() {
        out.push_str("\nWhat to do:\n");
        for h in hints {
            out.push_str("  - ");
            out.push_str(&h);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n-- \nSent by Vigil on {} through alert channel {} at {}.\n",
        msg.host, msg.channel, msg.created_at
    ));
    out
}

/// What a person can do next, once per kind of event in the message.
fn hints(msg: &Message) -> Vec<String> {
    let svc = msg.single_service().unwrap_or("SERVICE").to_owned();
    let has = |e: AlertEvent| msg.alerts.iter().any(|a| a.event == e);
    let failed_restart = msg
        .alerts
        .iter()
        .any(|a| a.event == AlertEvent::Restarted && a.outcome == Some(Outcome::Failed));
    let mut out = Vec::new();
    if has(AlertEvent::GivenUp) {
        out.push(format!("Look at the service by hand: vigil status {svc}"));
        out.push(format!(
            "See what Vigil did: vigil history {svc} --since 24h"
        ));
        out.push(format!(
            "Once it is fixed, re-enable automatic restarts: vigil reset {svc} (or restart it now: vigil restart {svc} --force)"
        ));
    }
    if failed_restart {
        out.push(format!(
            "The restart command failed (see What: above); run it by hand to see why, and check vigil history {svc}"
        ));
    }
    if has(AlertEvent::Failing) || has(AlertEvent::Warning) {
        out.push(format!(
            "See every check's last result and reason: vigil status {svc}"
        ));
    }
    if has(AlertEvent::Failing) && !has(AlertEvent::GivenUp) {
        out.push(
            "A failing critical check makes Vigil restart the service through its guard (unless on_failure = \"alert\"); you will hear when it recovers or when automatic restarts stop".to_owned(),
        );
    }
    if has(AlertEvent::Restarted) && !failed_restart {
        out.push(format!(
            "Nothing to do unless it keeps happening: vigil history {svc} shows every restart and why"
        ));
    }
    if has(AlertEvent::Skipped) {
        out.push(
            "Vigil held a restart back (cooldown, backoff or lock); it asks again on the next failure".to_owned(),
        );
    }
    if has(AlertEvent::Watchdog) {
        out.push(format!(
            "The process stopped answering its watchdog and is restarted through the guard: vigil history {svc}"
        ));
    }
    if out.is_empty() && has(AlertEvent::Recovered) {
        out.push("Nothing to do: the check passes again.".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn given_up() -> Alert {
        Alert {
            event: AlertEvent::GivenUp,
            service: "web".to_owned(),
            check: None,
            at: Timestamp::from_secs(1_739_529_000),
            message: "ACTION REQUIRED: Check service health manually - automatic restarts stopped (re-arms at 2025-02-14T11:12:00Z, in 42m)".to_owned(),
            source: Some("health"),
            status: None,
            outcome: None,
            numbers: Numbers {
                count: Some(5),
                max: Some(5),
                window: Some(Duration::from_secs(3600)),
                rearm_at: Some(Timestamp::from_secs(1_739_531_520)),
                ..Numbers::default()
            },
        }
    }

    fn failing(service: &str) -> Alert {
        Alert {
            event: AlertEvent::Failing,
            service: service.to_owned(),
            check: Some("health".to_owned()),
            at: Timestamp::from_secs(1_739_529_000),
            message: "Health check FAIL: passing -> failing: GET http://127.0.0.1/health: expected status 200-399, got 500 <html> & co".to_owned(),
            source: None,
            status: Some("failing"),
            outcome: None,
            numbers: Numbers::default(),
        }
    }

    fn message(alerts: Vec<Alert>) -> Message {
        Message {
            channel: Arc::from("ops"),
            host: Arc::from("web-01"),
            test: false,
            created_at: Timestamp::from_secs(1_739_529_010),
            alerts: alerts.into_iter().map(Arc::new).collect(),
        }
    }

    #[test]
    fn webhook_document_has_the_documented_shape() {
        let doc = document(&message(vec![given_up()]));
        assert_eq!(
            doc,
            json!({
                "version": 1,
                "source": "vigil",
                "host": "web-01",
                "channel": "ops",
                "test": false,
                "sent_at": "2025-02-14T10:30:10Z",
                "summary": "ACTION REQUIRED: web: automatic restarts stopped",
                "alerts": [{
                    "event": "given-up",
                    "service": "web",
                    "check": null,
                    "at": "2025-02-14T10:30:00Z",
                    "title": "ACTION REQUIRED: automatic restarts stopped",
                    "message": "ACTION REQUIRED: Check service health manually - automatic restarts stopped (re-arms at 2025-02-14T11:12:00Z, in 42m)",
                    "source": "health",
                    "status": null,
                    "outcome": null,
                    "numbers": {"count": 5, "max": 5, "window_secs": 3600, "rearm_at": "2025-02-14T11:12:00Z"}
                }]
            })
        );
        let bytes = document_bytes(&message(vec![given_up()]));
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn a_group_summary_counts_events_and_names_services() {
        let msg = message(vec![
            failing("a"),
            failing("b"),
            failing("c"),
            failing("d"),
            given_up(),
        ]);
        assert_eq!(
            msg.summary(),
            "ACTION REQUIRED: 5 alerts: 4 failing, 1 given-up (a, b, c and 2 more)"
        );
        let mut test = message(vec![failing("a")]);
        test.test = true;
        assert_eq!(test.summary(), "TEST: a/health: Check failing");
    }

    #[test]
    fn slack_payload_is_readable_escaped_and_bounded() {
        let doc = slack(&message(vec![failing("web")]));
        assert_eq!(doc["text"], "[vigil web-01] web/health: Check failing");
        let blocks = doc["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let section = &blocks[1];
        let text = section["text"]["text"].as_str().unwrap();
        assert!(text.starts_with("*web/health: Check failing*\n"), "{text}");
        assert!(text.contains("got 500 &lt;html&gt; &amp; co"), "{text}");
        let fields: Vec<&str> = section["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&"*Service*\nweb"), "{fields:?}");
        assert!(fields.contains(&"*Check*\nhealth"), "{fields:?}");
        assert!(fields.contains(&"*Event*\nfailing"), "{fields:?}");
        // A storm stays within Slack's limits.
        let storm = slack(&message(
            (0..200).map(|i| failing(&format!("s{i}"))).collect(),
        ));
        let blocks = storm["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50, "{}", blocks.len());
        assert!(storm.to_string().contains("…and 180 more alert(s)"));
    }

    #[test]
    fn email_says_what_happened_and_what_to_do() {
        let msg = message(vec![given_up()]);
        assert_eq!(
            email_subject(&msg),
            "[vigil] ACTION REQUIRED: web: automatic restarts stopped (web-01)"
        );
        let body = email_body(&msg);
        for needle in [
            "ACTION REQUIRED: automatic restarts stopped\n",
            "Service: web\n",
            "Host:    web-01\n",
            "Time:    2025-02-14T10:30:00Z\n",
            "Numbers: 5/5 restarts in 1h; re-arms at 2025-02-14T11:12:00Z (in 41m 50s)\n",
            "What to do:\n",
            "vigil status web",
            "vigil reset web",
        ] {
            assert!(body.contains(needle), "missing {needle:?} in:\n{body}");
        }
    }

    #[test]
    fn email_subject_is_one_line() {
        let mut a = failing("web");
        a.service = "we\r\nBcc: x@y".to_owned();
        let subject = email_subject(&message(vec![a]));
        assert!(!subject.contains(['\r', '\n']), "{subject}");
    }
}
