//! One delivery attempt of one [`Message`] through one channel: the thin I/O layer.
//!
//! Owns the transports (reqwest for webhooks and Slack, lettre for SMTP, the single spawn
//! site for exec). Must not retry, wait, or decide anything; [`Sender::send`] makes one
//! attempt and says how it went. Errors never contain a secret: HTTP errors are stripped of
//! their URL, and secrets are read here, at each attempt, and never formatted.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use vigil_config::model::{
    AlertChannel, ChannelKind, EmailChannel, ExecChannel, SlackChannel, SmtpTls, WebhookChannel,
};
use vigil_core::Timestamp;

use crate::alert::Message;
use crate::{payload, sign};

/// Why an attempt failed, in words a person can act on (never a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError(pub String);

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SendError {}

fn err(s: impl Into<String>) -> SendError {
    SendError(s.into())
}

/// How many bytes of an HTTP error answer (or an exec channel's stderr) are quoted.
const EXCERPT: usize = 200;

/// Sends messages through one channel.
#[derive(Clone)]
pub struct Sender {
    channel: Arc<AlertChannel>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("channel", &self.channel.name)
            .finish()
    }
}

/// One HTTP client for every webhook and Slack channel: no proxy from the environment, no
/// redirects (a redirect could carry the body elsewhere), rustls with ring.
///
/// On a host without CA certificates (a minimal container) the system roots cannot be
/// loaded: the client then trusts no root, so `http://` receivers still work and an
/// `https://` one fails each delivery with a certificate error that says so — Vigil never
/// refuses to start over it.
pub fn http_client() -> reqwest::Client {
    vigil_checks::install_crypto_provider();
    let builder = || {
        reqwest::Client::builder()
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
    };
    match builder().build() {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, event = "alert_tls_roots",
                "cannot load the system's CA certificates; https alert receivers will fail certificate checks");
            match builder().tls_certs_only([]).build() {
                Ok(client) => client,
                Err(error) => {
                    // Only a broken TLS backend gets here; there is no client to run with.
                    eprintln!("vigil: cannot build an HTTP client for alerts: {error}");
                    std::process::exit(1);
                }
            }
        }
    }
}

impl Sender {
    pub fn new(channel: Arc<AlertChannel>, http: reqwest::Client) -> Sender {
        Sender { channel, http }
    }

    pub fn channel(&self) -> &AlertChannel {
        &self.channel
    }

    /// One attempt, bounded by the channel's `timeout`.
    pub async fn send(&self, msg: &Message) -> Result<(), SendError> {
        let timeout = self.channel.timeout;
        let attempt = async {
            match &self.channel.kind {
                ChannelKind::Webhook(w) => self.webhook(w, msg).await,
                ChannelKind::Slack(s) => self.slack(s, msg).await,
                ChannelKind::Email(e) => email(e, msg, timeout).await,
                ChannelKind::Exec(x) => exec(x, msg, timeout).await,
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(res) => res,
            Err(_) => Err(err(format!(
                "no answer within {} (timeout)",
                vigil_core::format_duration(timeout)
            ))),
        }
    }

    async fn webhook(&self, w: &WebhookChannel, msg: &Message) -> Result<(), SendError> {
        let url = w.url.read().map_err(err)?;
        let body = payload::document_bytes(msg);
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in &w.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(secret) = &w.secret {
            let key = secret.read().map_err(err)?;
            req = req.header(sign::HEADER, sign::signature(key.as_bytes(), &body));
        }
        post(req.body(body)).await
    }

    async fn slack(&self, s: &SlackChannel, msg: &Message) -> Result<(), SendError> {
        let url = s.webhook_url.read().map_err(err)?;
        let body = serde_json::to_vec(&payload::slack(msg)).unwrap_or_default();
        let req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        post(req).await
    }
}

/// The chain of an error's causes, without any URL (reqwest puts the URL, which may hold a
/// token, in its messages).
fn http_error(e: reqwest::Error) -> SendError {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    err(text)
}

async fn post(req: reqwest::RequestBuilder) -> Result<(), SendError> {
    let resp = req.send().await.map_err(http_error)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.bytes().await.unwrap_or_default();
    let excerpt = String::from_utf8_lossy(&body[..body.len().min(EXCERPT)])
        .trim()
        .replace(['\r', '\n'], " ");
    if excerpt.is_empty() {
        Err(err(format!("the receiver answered {status}")))
    } else {
        Err(err(format!("the receiver answered {status}: {excerpt}")))
    }
}

fn system_time(t: Timestamp) -> SystemTime {
    let ms = u64::try_from(t.as_millis()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// The email for `msg` (headers From/To/Subject/Date/Message-ID, a plain-text body).
pub fn build_email(e: &EmailChannel, msg: &Message) -> Result<lettre::Message, SendError> {
    use lettre::message::header::ContentType;
    let mailbox = |s: &str| {
        s.parse::<lettre::message::Mailbox>()
            .map_err(|reason| err(format!("invalid mailbox {s:?}: {reason}")))
    };
    let mut builder = lettre::Message::builder()
        .from(mailbox(&e.from)?)
        .subject(payload::email_subject(msg))
        .date(system_time(msg.created_at))
        .message_id(Some(format!(
            "<vigil.{}.{:016x}@{}>",
            msg.created_at.as_millis(),
            fastrand::u64(..),
            message_id_domain(&msg.host)
        )))
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")).to_owned())
        .header(ContentType::TEXT_PLAIN);
    for to in &e.to {
        builder = builder.to(mailbox(to)?);
    }
    builder
        .body(payload::email_body(msg))
        .map_err(|e| err(format!("cannot build the email: {e}")))
}

fn message_id_domain(host: &str) -> String {
    let clean: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .collect();
    if clean.is_empty() {
        "vigil.invalid".to_owned()
    } else {
        clean
    }
}

async fn email(e: &EmailChannel, msg: &Message, timeout: Duration) -> Result<(), SendError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::transport::smtp::extension::ClientId;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    vigil_checks::install_crypto_provider();
    let email = build_email(e, msg)?;
    let tls = match e.tls {
        SmtpTls::None => Tls::None,
        mode => {
            let mut params = TlsParameters::builder(e.smtp_host.clone());
            if let Some(path) = &e.ca_file {
                let pem = tokio::fs::read(path)
                    .await
                    .map_err(|x| err(format!("cannot read ca_file {}: {x}", path.display())))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|x| err(format!("ca_file {}: {x}", path.display())))?;
                params = params.add_root_certificate(cert);
            }
            let params = params.build().map_err(|x| err(format!("TLS setup: {x}")))?;
            if mode == SmtpTls::Implicit {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            }
        }
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&e.smtp_host)
        .port(e.smtp_port)
        .tls(tls)
        .timeout(Some(timeout))
        .hello_name(ClientId::Domain(message_id_domain(&msg.host)));
    if let Some((user, password)) = &e.auth {
        let password = password.read().map_err(err)?;
        transport = transport.credentials(Credentials::new(user.clone(), password));
    }
    let transport = transport.build();
    transport.send(email).await.map(|_| ()).map_err(|x| {
        let mut text = format!("SMTP {}:{}: {x}", e.smtp_host, e.smtp_port);
        let mut source = std::error::Error::source(&x);
        while let Some(s) = source {
            let part = s.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = s.source();
        }
        if x.is_permanent() && text.contains("535") {
            text.push_str(" (authentication failed: check username and password)");
        }
        err(text)
    })
}

async fn exec(x: &ExecChannel, msg: &Message, timeout: Duration) -> Result<(), SendError> {
    use vigil_checks::process::{RunSpec, run};
    let body = payload::document_bytes(msg);
    let mut spec = RunSpec::new(&x.command, timeout);
    spec.stdin = Some(&body);
    spec.capture_limit = 4096;
    let out = run(spec).await.map_err(|e| err(e.to_string()))?;
    if out.timed_out {
        return Err(err(format!(
            "{} did not finish within {} (killed)",
            x.command.program(),
            vigil_core::format_duration(timeout)
        )));
    }
    match out.exit {
        Some(exit) if exit.success() => Ok(()),
        Some(exit) => {
            let stderr = String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(EXCERPT)])
                .trim()
                .replace(['\r', '\n'], " ");
            let tail = if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            };
            Err(err(format!(
                "{} exited with {exit}{tail}",
                x.command.program()
            )))
        }
        None => Err(err(format!("{} was killed", x.command.program()))),
    }
}
