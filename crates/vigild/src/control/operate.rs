//! The operator's endpoints of the API: stop, start, pause and resume (of a service or
//! `@GROUP`), recorded with the caller (the socket peer's uid, or over TCP the token's
//! holder and address); and an exec service's captured output, streamed while it is
//! followed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use vigil_config::model::DriverSpec;

use super::server::{ApiError, ApiPath, ApiQuery, ApiResult, AppState, Peer, json};
use crate::drivers::exec::output::{Line, OutputLog};
use crate::ledger::Caller;
use crate::platform::clock;
use crate::render::hold as words;
use crate::service::operator::{self, Refused};
use crate::service::protocol::{Control, OperatorCommand};

#[derive(Deserialize)]
pub(super) struct HoldQuery {
    #[serde(rename = "for")]
    for_: Option<String>,
    reason: Option<String>,
}

pub(super) async fn stop(
    st: State<AppState>,
    peer: Extension<Peer>,
    name: ApiPath<String>,
    q: ApiQuery<HoldQuery>,
) -> ApiResult {
    hold(st, peer, name, q, Control::Stop).await
}

pub(super) async fn start(
    st: State<AppState>,
    peer: Extension<Peer>,
    name: ApiPath<String>,
    q: ApiQuery<HoldQuery>,
) -> ApiResult {
    hold(st, peer, name, q, Control::Start).await
}

pub(super) async fn pause(
    st: State<AppState>,
    peer: Extension<Peer>,
    name: ApiPath<String>,
    q: ApiQuery<HoldQuery>,
) -> ApiResult {
    hold(st, peer, name, q, Control::Pause).await
}

pub(super) async fn resume(
    st: State<AppState>,
    peer: Extension<Peer>,
    name: ApiPath<String>,
    q: ApiQuery<HoldQuery>,
) -> ApiResult {
    hold(st, peer, name, q, Control::Resume).await
}

fn refused(e: &Refused) -> ApiError {
    let status = if e.is_unknown() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(status, e.to_string())
}

/// One operator command: checked like the CLI checks it (400/404, nothing recorded),
/// then sent to the target's actors, which record what they accept.
async fn hold(
    State(st): State<AppState>,
    Extension(peer): Extension<Peer>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<HoldQuery>,
    action: Control,
) -> ApiResult {
    let view = st.view.borrow().clone();
    let now = clock::now();
    let target = operator::target(&view.config, &name).map_err(|e| refused(&e))?;
    let until = operator::prepare(&view.config, target, action, q.for_.as_deref(), now)
        .map_err(|e| refused(&e))?;
    // Over TCP the request got here with the bearer token (`http.rs`): its caller is the
    // token's holder, named by the address it came from.
    let caller = match peer {
        Peer::Local { uid: Some(uid) } => operator::caller_of(uid),
        Peer::Remote { addr } => Caller::token(addr),
        Peer::Local { uid: None } => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the caller's credentials are unknown (not a unix socket peer)",
            ));
        }
    };
    let command = OperatorCommand {
        action,
        until,
        caller: Some(caller),
        reason: q.reason,
        source: "operator",
    };
    let outcome = operator::apply(&view.config, target, command, |key| {
        view.services.get(key).cloned()
    })
    .await;
    let key = target.key().to_string();
    let now = clock::now();
    let current = st
        .guard
        .ledger
        .call(move |l| l.current_hold(&key, now))
        .await
        .map_err(ApiError::internal)?;
    Ok(json(&words::answer(
        &target.label(),
        action,
        &outcome,
        current.as_ref(),
        now,
    )))
}

#[derive(Deserialize)]
pub(super) struct LogsQuery {
    #[serde(default = "default_lines")]
    n: usize,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    format: LogsFormat,
}

fn default_lines() -> usize {
    50
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum LogsFormat {
    #[default]
    Text,
    Json,
}

/// The last `n` lines of an exec service's output; with `follow`, the answer stays open
/// and new lines are written as they come.
pub(super) async fn logs(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult {
    let view = st.view.borrow().clone();
    let Some(service) = view.config.service(&name) else {
        return Err(refused(
            &operator::target(&view.config, &name)
                .err()
                .unwrap_or(Refused::ForWithoutHold),
        ));
    };
    if !matches!(service.driver, DriverSpec::Exec(_)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{name}: logs are kept for exec services; this one is driver = \"{}\"",
                service.driver.kind()
            ),
        ));
    }
    let log = view.outputs.of(&service.name);
    let lines = log.last(q.n);
    let after = lines.last().map_or_else(|| log.newest(), |l| l.seq);
    let mut head = String::new();
    for line in &lines {
        render(&mut head, line, q.format);
    }
    let content_type = match q.format {
        LogsFormat::Text => "text/plain; charset=utf-8",
        LogsFormat::Json => "application/x-ndjson",
    };
    let body = if q.follow {
        Body::new(Follow {
            log,
            after,
            format: q.format,
            head: Some(Bytes::from(head)),
            waiting: None,
        })
    } else {
        Body::from(head)
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

fn render(out: &mut String, line: &Line, format: LogsFormat) {
    match format {
        LogsFormat::Text => {
            out.push_str(&format!("{} {} {}\n", line.at, line.stream, line.text));
        }
        LogsFormat::Json => {
            let doc = serde_json::json!({
                "seq": line.seq,
                "at": line.at.to_string(),
                "stream": line.stream,
                "text": line.text,
            });
            out.push_str(&doc.to_string());
            out.push('\n');
        }
    }
}

/// A followed output: what was asked for first, then each batch of new lines, until the
/// client goes away (or the daemon stops).
struct Follow {
    log: Arc<OutputLog>,
    after: u64,
    format: LogsFormat,
    head: Option<Bytes>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl hyper::body::Body for Follow {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if let Some(head) = self.head.take()
            && !head.is_empty()
        {
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(head))));
        }
        loop {
            let since = self.log.since(self.after);
            if since.missed > 0 || !since.lines.is_empty() {
                let mut out = String::new();
                if since.missed > 0 {
                    match self.format {
                        LogsFormat::Text => out.push_str(&format!(
                            "-- {} line(s) missed: the output came faster than it was read --\n",
                            since.missed
                        )),
                        LogsFormat::Json => {
                            out.push_str(&format!("{{\"missed\":{}}}\n", since.missed));
                        }
                    }
                }
                for line in &since.lines {
                    render(&mut out, line, self.format);
                }
                if let Some(last) = since.lines.last() {
                    self.after = last.seq;
                }
                self.waiting = None;
                return Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(out)))));
            }
            let after = self.after;
            let log = self.log.clone();
            let waiting = self
                .waiting
                .get_or_insert_with(|| Box::pin(async move { log.wait_after(after).await }));
            match waiting.as_mut().poll(cx) {
                Poll::Ready(()) => self.waiting = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
