//! Delivery against real receivers on loopback: a webhook receiver (JSON schema, HMAC,
//! 500s then 200, a receiver that hangs), Slack, exec, and a real SMTP server (Debian's
//! python3-aiosmtpd) with STARTTLS and AUTH.
//!
//! The SMTP tests are gated like the other real-server tests: they run with
//! `VIGIL_TEST_SERVERS=1` (set by .ci/run, which installs python3-aiosmtpd) and print
//! "skipped" otherwise.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vigil_alerts::alerter::deliver;
use vigil_alerts::{
    Alert, Alerter, Delivery, DeliveryLog, Deps, Message, Numbers, Sender, http_client, sign,
};
use vigil_config::model::{AlertChannel, AlertEvent, Config};
use vigil_core::Timestamp;
use vigil_test_helpers::receiver::{Receiver, Script};

fn clock() -> Timestamp {
    #[expect(clippy::disallowed_methods, reason = "tests run on real time")]
    let now = std::time::SystemTime::now();
    let ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_millis(i64::try_from(ms).unwrap())
}

fn config(toml: &str) -> Config {
    vigil_config::parse(toml, Path::new("/tmp/vigil.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn channel(toml: &str) -> AlertChannel {
    config(toml).alerts.into_iter().next().unwrap()
}

#[derive(Default)]
struct Log {
    deliveries: Mutex<Vec<Delivery>>,
    failures: Mutex<Vec<(u32, String, Option<Duration>)>>,
}

impl DeliveryLog for Log {
    fn record(&self, d: Delivery) {
        self.deliveries.lock().unwrap().push(d);
    }

    fn attempt_failed(&self, _: &str, attempt: u32, error: &str, retry_in: Option<Duration>) {
        self.failures
            .lock()
            .unwrap()
            .push((attempt, error.to_owned(), retry_in));
    }
}

impl Log {
    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }
}

fn deps(log: &Arc<Log>) -> Deps {
    Deps {
        host: Arc::from("test-host"),
        clock,
        log: log.clone(),
        http: http_client(),
    }
}

fn given_up(service: &str) -> Alert {
    Alert {
        event: AlertEvent::GivenUp,
        service: service.to_owned(),
        check: None,
        at: clock(),
        message: "ACTION REQUIRED: Check service health manually - automatic restarts stopped"
            .to_owned(),
        source: Some("health"),
        status: None,
        outcome: None,
        numbers: Numbers {
            count: Some(5),
            max: Some(5),
            window: Some(Duration::from_secs(3600)),
            ..Numbers::default()
        },
    }
}

fn message(alerts: Vec<Alert>) -> Message {
    Message {
        channel: Arc::from("ops"),
        host: Arc::from("test-host"),
        test: false,
        created_at: clock(),
        alerts: alerts.into_iter().map(Arc::new).collect(),
    }
}

/// Waits (real time, bounded) until `f` holds.
async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn webhook_posts_the_documented_json_signed_with_hmac() {
    let rx = Receiver::start(Script::ok());
    let ch = channel(&format!(
        "[alerts.ops]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"s3cret\"\nheaders = {{ X-Team = \"ops\" }}\n",
        rx.url("/hook")
    ));
    let sender = Sender::new(Arc::new(ch), http_client());
    sender.send(&message(vec![given_up("web")])).await.unwrap();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/hook"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-team"), Some("ops"));
    assert!(req.header("user-agent").unwrap().starts_with("vigil/"));
    let sig = req.header("x-vigil-signature").unwrap();
    assert!(
        sign::verify(b"s3cret", &req.body, sig),
        "bad signature {sig}"
    );
    assert!(!sign::verify(b"wrong", &req.body, sig));
    let doc: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["source"], "vigil");
    assert_eq!(doc["host"], "test-host");
    assert_eq!(doc["channel"], "ops");
    assert_eq!(doc["test"], false);
    assert_eq!(
        doc["summary"],
        "ACTION REQUIRED: web: automatic restarts stopped"
    );
    let a = &doc["alerts"][0];
    assert_eq!(a["event"], "given-up");
    assert_eq!(a["service"], "web");
    assert_eq!(a["check"], serde_json::Value::Null);
    assert_eq!(a["title"], "ACTION REQUIRED: automatic restarts stopped");
    assert_eq!(a["source"], "health");
    assert_eq!(
        a["numbers"],
        serde_json::json!({"count": 5, "max": 5, "window_secs": 3600})
    );
    let sent_at = doc["sent_at"].as_str().unwrap();
    assert!(sent_at.ends_with('Z') && sent_at.len() == 20, "{sent_at}");
    assert!(a["at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_exactly_one_delivery() {
    let rx = Receiver::start(Script::Statuses {
        first: vec![500, 500, 500],
        then: 200,
    });
    let cfg = config(&format!(
        "[alerts.ops]\nkind = \"webhook\"\nurl = \"{}\"\ngroup_wait = \"0\"\nretry_delay = \"20ms\"\nretries = 5\n",
        rx.url("/")
    ));
    let log = Arc::new(Log::default());
    let alerter = Alerter::start(&cfg, deps(&log));
    alerter.notify(given_up("web"));
    until("the delivery record", Duration::from_secs(10), || {
        !log.deliveries().is_empty()
    })
    .await;
    let statuses: Vec<Option<u16>> = rx.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(500), Some(200)]);
    assert_eq!(rx.delivered().len(), 1);
    let d = &log.deliveries()[0];
    assert!(d.delivered, "{d:?}");
    assert_eq!((d.attempts, d.kind, d.alerts), (4, "webhook", 1));
    assert_eq!(d.services, ["web"]);
    assert_eq!(d.events, ["given-up"]);
    // The retry schedule doubled (with jitter within ±25%) and named the receiver's answer.
    let failures = log.failures.lock().unwrap().clone();
    assert_eq!(failures.len(), 3);
    for (i, (attempt, error, retry_in)) in failures.iter().enumerate() {
        assert_eq!(*attempt, u32::try_from(i).unwrap() + 1);
        assert!(error.contains("500"), "{error}");
        let base = Duration::from_millis(20 * (1 << i));
        let pause = retry_in.unwrap();
        assert!(
            pause >= base.mul_f64(0.75) && pause <= base.mul_f64(1.25),
            "{pause:?}"
        );
    }
    alerter.shutdown(Duration::from_secs(1)).await;
    assert_eq!(rx.delivered().len(), 1, "nothing was sent twice");
}

#[tokio::test]
async fn the_last_failure_is_a_dead_letter() {
    let rx = Receiver::start(Script::Statuses {
        first: Vec::new(),
        then: 503,
    });
    let cfg = config(&format!(
        "[alerts.ops]\nkind = \"webhook\"\nurl = \"{}\"\ngroup_wait = \"0\"\nretry_delay = \"10ms\"\nretries = 3\n",
        rx.url("/")
    ));
    let log = Arc::new(Log::default());
    let alerter = Alerter::start(&cfg, deps(&log));
    alerter.notify(given_up("web"));
    until("the dead letter", Duration::from_secs(10), || {
        !log.deliveries().is_empty()
    })
    .await;
    let d = &log.deliveries()[0];
    assert!(!d.delivered);
    assert_eq!(d.attempts, 3);
    assert!(d.error.as_deref().unwrap().contains("503"), "{:?}", d.error);
    assert_eq!(rx.requests().len(), 3);
    let last = log.failures.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (last.0, last.2),
        (3, None),
        "no retry after the last attempt"
    );
}

#[tokio::test]
async fn a_hanging_receiver_never_blocks_notify_and_overflow_drops_the_oldest() {
    let rx = Receiver::start(Script::Hang);
    let cfg = config(&format!(
        "[alerts.ops]\nkind = \"webhook\"\nurl = \"{}\"\ngroup_wait = \"0\"\nretries = 1\ntimeout = \"30s\"\nqueue_size = 2\n",
        rx.url("/")
    ));
    let log = Arc::new(Log::default());
    let alerter = Alerter::start(&cfg, deps(&log));
    for i in 0..10 {
        alerter.notify(given_up(&format!("svc-{i}")));
        // Let the channel's tasks run between alerts, as they would in the daemon.
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
    }
    until(
        "the receiver to hang on the first message",
        Duration::from_secs(5),
        || !rx.requests().is_empty(),
    )
    .await;
    until(
        "dropped messages to be recorded",
        Duration::from_secs(5),
        || log.deliveries().iter().any(|d| d.attempts == 0),
    )
    .await;
    for d in log.deliveries() {
        assert!(!d.delivered);
        assert_eq!(
            d.attempts, 0,
            "only drops are final while the receiver hangs"
        );
        assert!(d.error.as_deref().unwrap().contains("dropped"));
    }
    // Nothing was delivered, nothing blocked; shutdown abandons the hung attempt.
    assert!(rx.delivered().is_empty());
    alerter.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn slack_gets_a_readable_message_with_fields() {
    let rx = Receiver::start(Script::ok());
    let ch = channel(&format!(
        "[alerts.ops]\nkind = \"slack\"\nwebhook_url = \"{}\"\n",
        rx.url("/services/T/B/X")
    ));
    let sender = Sender::new(Arc::new(ch), http_client());
    sender.send(&message(vec![given_up("web")])).await.unwrap();
    let req = &rx.requests()[0];
    assert_eq!(req.path, "/services/T/B/X");
    let doc: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        doc["text"],
        "[vigil test-host] ACTION REQUIRED: web: automatic restarts stopped"
    );
    let section = &doc["blocks"][1];
    assert_eq!(section["type"], "section");
    assert!(section["fields"].to_string().contains("*Service*\\nweb"));
}

#[tokio::test]
async fn secrets_from_env_and_file_are_read_at_send_time_and_never_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("url");
    // Nothing listens on port 9: the error must not echo the URL's token.
    std::fs::write(&url_file, "http://127.0.0.1:9/hook?token=SUPERSECRET\n").unwrap();
    let ch = channel(&format!(
        "[alerts.ops]\nkind = \"webhook\"\nurl_file = {:?}\ntimeout = \"2s\"\n",
        url_file.display().to_string()
    ));
    let sender = Sender::new(Arc::new(ch), http_client());
    let err = sender
        .send(&message(vec![given_up("web")]))
        .await
        .unwrap_err();
    assert!(!err.0.contains("SUPERSECRET"), "{err}");
    assert!(!err.0.contains("127.0.0.1:9"), "{err}");
    let missing = channel(
        "[alerts.ops]\nkind = \"slack\"\nwebhook_url_env = \"VIGIL_TEST_UNSET_SLACK_URL\"\n",
    );
    let err = Sender::new(Arc::new(missing), http_client())
        .send(&message(vec![given_up("web")]))
        .await
        .unwrap_err();
    assert_eq!(
        err.0,
        "environment variable VIGIL_TEST_UNSET_SLACK_URL is not set"
    );
}

#[tokio::test]
async fn exec_gets_the_document_on_stdin_and_its_failure_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alert.json");
    let ch = channel(&format!(
        "[alerts.ops]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"cat > {}\"]\n",
        out.display()
    ));
    let sender = Sender::new(Arc::new(ch), http_client());
    sender.send(&message(vec![given_up("web")])).await.unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc["alerts"][0]["event"], "given-up");

    let failing = channel(
        "[alerts.ops]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo pager down >&2; exit 3\"]\n",
    );
    let err = Sender::new(Arc::new(failing), http_client())
        .send(&message(vec![given_up("web")]))
        .await
        .unwrap_err();
    assert!(err.0.contains("sh exited with"), "{err}");
    assert!(err.0.contains("pager down"), "{err}");

    let slow = channel(
        "[alerts.ops]\nkind = \"exec\"\ncommand = [\"sleep\", \"30\"]\ntimeout = \"200ms\"\n",
    );
    let err = Sender::new(Arc::new(slow), http_client())
        .send(&message(vec![given_up("web")]))
        .await
        .unwrap_err();
    assert!(err.0.contains("200ms"), "{err}");
}

// ---------------------------------------------------------------- SMTP (aiosmtpd)

fn servers_enabled() -> bool {
    if std::env::var_os("VIGIL_TEST_SERVERS").is_some_and(|v| v == "1") {
        true
    } else {
        eprintln!("skipped: set VIGIL_TEST_SERVERS=1 (needs python3-aiosmtpd)");
        false
    }
}

const SMTP_SERVER: &str = r#"
import json, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == b"vigil" and auth_data.password == b"mail-pass")
    # handled=False: aiosmtpd itself answers (535 on failure).
    return AuthResult(success=ok, handled=False)

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx,
                        require_starttls=True, authenticator=authenticator,
                        auth_required=True, auth_require_tls=True)
controller.start()
print("READY", flush=True)
while True:
    time.sleep(3600)
"#;

/// A CA and a leaf for 127.0.0.1 signed by it (PEM).
fn pki(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Vigil Test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let (ca_file, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca_file, cert, key)
}

struct Smtp {
    child: std::process::Child,
    port: u16,
    out: std::path::PathBuf,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_smtp() -> Smtp {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, cert, key) = pki(dir.path());
    let script = dir.path().join("smtpd.py");
    std::fs::write(&script, SMTP_SERVER).unwrap();
    let out = dir.path().join("mail.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Debian's python3 (where python3-aiosmtpd lives), whatever python3 is first in PATH.
    #[expect(clippy::disallowed_methods, reason = "the test's own server process")]
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(port.to_string())
        .arg(&cert)
        .arg(&key)
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start /usr/bin/python3 (apt-get install python3-aiosmtpd)");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "READY",
        "aiosmtpd did not start (is python3-aiosmtpd installed?)"
    );
    Smtp {
        child,
        port,
        out,
        ca_file,
        _dir: dir,
    }
}

fn email_channel(smtp: &Smtp, password: &str, retries: u32) -> AlertChannel {
    channel(&format!(
        r#"[alerts.mail]
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {port}
tls = "starttls"
username = "vigil"
password = "{password}"
from = "Vigil <vigil@example.com>"
to = ["ops@example.com", "Oncall <oncall@example.com>"]
ca_file = {ca:?}
retries = {retries}
retry_delay = "20ms"
timeout = "10s"
"#,
        port = smtp.port,
        ca = smtp.ca_file.display().to_string()
    ))
}

/// Header `name` of a raw message (unfolded), if present.
fn header(head: &str, name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(v) = &mut value {
            if line.starts_with([' ', '\t']) {
                v.push_str(line);
                continue;
            }
            return value;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_owned());
        }
    }
    value
}

#[tokio::test]
async fn email_over_starttls_with_auth_reaches_a_real_smtp_server() {
    if !servers_enabled() {
        return;
    }
    let smtp = start_smtp();
    let sender = Sender::new(
        Arc::new(email_channel(&smtp, "mail-pass", 1)),
        http_client(),
    );
    sender
        .send(&message(vec![given_up("web")]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&smtp.out).unwrap();
    let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(record["tls"], true, "the message went over STARTTLS");
    assert_eq!(record["mail_from"], "vigil@example.com");
    assert_eq!(
        record["rcpt_tos"],
        serde_json::json!(["ops@example.com", "oncall@example.com"])
    );
    let data = record["data"].as_str().unwrap();
    let (head, body) = data.split_once("\r\n\r\n").unwrap();
    assert_eq!(
        header(head, "From").as_deref(),
        Some("Vigil <vigil@example.com>")
    );
    let to = header(head, "To").unwrap();
    assert!(
        to.contains("ops@example.com") && to.contains("Oncall <oncall@example.com>"),
        "{to}"
    );
    assert_eq!(
        header(head, "Subject").as_deref(),
        Some("[vigil] ACTION REQUIRED: web: automatic restarts stopped (test-host)")
    );
    let date = header(head, "Date").unwrap();
    assert!(date.ends_with("+0000"), "{date}");
    let id = header(head, "Message-ID").unwrap();
    assert!(
        id.starts_with("<vigil.") && id.ends_with("@test-host>"),
        "{id}"
    );
    assert!(
        header(head, "Content-Type")
            .unwrap()
            .starts_with("text/plain"),
        "{head}"
    );
    for needle in [
        "ACTION REQUIRED: automatic restarts stopped",
        "Service: web",
        "Numbers: 5/5 restarts in 1h",
        "What to do:",
        "vigil reset web",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in:\n{body}");
    }
}

#[tokio::test]
async fn a_wrong_smtp_password_is_a_clear_error_with_a_retry_schedule() {
    if !servers_enabled() {
        return;
    }
    let smtp = start_smtp();
    let sender = Sender::new(Arc::new(email_channel(&smtp, "wrong", 3)), http_client());
    let log = Arc::new(Log::default());
    let deps = deps(&log);
    let cancel = tokio_util::sync::CancellationToken::new();
    let (attempts, result) =
        deliver(&sender, &message(vec![given_up("web")]), &deps, &cancel).await;
    assert_eq!(attempts, 3);
    let err = result.unwrap_err();
    assert!(err.0.contains("535"), "{err}");
    assert!(
        err.0
            .contains("authentication failed: check username and password"),
        "{err}"
    );
    assert!(!err.0.contains("wrong"), "the password leaked: {err}");
    let failures = log.failures.lock().unwrap().clone();
    let pauses: Vec<Option<Duration>> = failures.iter().map(|f| f.2).collect();
    assert_eq!(pauses.len(), 3);
    let (p1, p2) = (pauses[0].unwrap(), pauses[1].unwrap());
    assert!(
        p1 >= Duration::from_millis(15) && p1 <= Duration::from_millis(25),
        "{p1:?}"
    );
    assert!(
        p2 >= Duration::from_millis(30) && p2 <= Duration::from_millis(50),
        "{p2:?}"
    );
    assert_eq!(pauses[2], None);
    assert!(!smtp.out.exists(), "nothing was delivered");
}
