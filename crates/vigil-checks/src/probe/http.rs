//! `kind = "http"`: one request, judged by status and (optionally) body.
//!
//! Owns: the request, the status/body verdict and turning transport errors into short
//! reasons (`connection refused`, `TLS error: ...`). Must not: build clients (the
//! [`ProbeContext`] caches them), read more than `max_body` bytes of a body, or hold more
//! of it than `body_regex` needs (`body_contains` is matched as the body streams).

use reqwest::{Method, Response, StatusCode};
use tokio::time::Instant;

use super::{Verdict, causes, describe_io, http1, latency, tls};
use crate::context::{ClientKey, ProbeContext, ProxyUrl};
use crate::model::HttpCheck;

pub(super) fn label(check: &HttpCheck) -> String {
    match &check.proxy {
        Some(proxy) => format!("{} {} via {}", check.method, check.url, proxy.redacted()),
        None => format!("{} {}", check.method, check.url),
    }
}

pub(super) async fn probe(check: &HttpCheck, cx: &ProbeContext) -> Verdict {
    // Every failure reason starts with the label: formatted only then.
    request(check, cx)
        .await
        .map_err(|e| format!("{}: {e}", label(check)))
}

async fn request(check: &HttpCheck, cx: &ProbeContext) -> Verdict {
    if let Some(verdict) = http1::probe(check, cx).await {
        return verdict;
    }
    let key = ClientKey {
        // Plain http:// without redirects never does TLS: its client skips loading the
        // system roots (about 150 files, and an error on hosts without ca-certificates).
        tls: check
            .url
            .get(..6)
            .is_none_or(|scheme| scheme.eq_ignore_ascii_case("https:"))
            || check.follow_redirects,
        ca_file: check.ca_file.clone(),
        insecure: check.insecure,
        follow_redirects: check.follow_redirects,
        proxy: check.proxy.as_ref().map(|p| ProxyUrl(p.url.clone())),
        client_cert: check
            .client_cert
            .as_ref()
            .map(|c| (c.cert.clone(), c.key.clone())),
    };
    let client = cx.http_client(&key).await?;
    // Latency is the request's, not the (first-run) client build's.
    let started = Instant::now();
    let method = Method::from_bytes(check.method.as_bytes())
        .map_err(|_| format!("invalid method {:?}", check.method))?;
    let mut request = match cx.url(&check.url) {
        Some(url) => client.request(method, url),
        None => client.request(method, &check.url),
    };
    for (name, value) in &check.headers {
        request = request.header(name, value);
    }
    let mut response = request.send().await.map_err(|e| describe_reqwest(&e))?;
    let status = response.status();
    expect_status(check, status)?;
    if wants_body(check) {
        let body = scan_body(&mut response, check)
            .await
            .map_err(|e| format!("reading body: {}", describe_reqwest(&e)))?;
        judge_body(check, body)?;
    }
    // Dropping an unread body closes that connection instead of returning it to the pool,
    // which is what we want for a large or endless body.
    drop(response);
    judge_latency(check, status, started.elapsed())
}

/// The status is one `expect_status` allows.
pub(super) fn expect_status(check: &HttpCheck, status: StatusCode) -> Result<(), String> {
    if check.expect_status.contains(status.as_u16()) {
        return Ok(());
    }
    Err(format!(
        "expected status {}, got {}",
        check.expect_status,
        status_text(status)
    ))
}

/// The check reads the body (`body_contains` or `body_regex`).
pub(super) fn wants_body(check: &HttpCheck) -> bool {
    check.body_contains.is_some() || check.body_regex.is_some()
}

/// `body_contains` and `body_regex` against what was read.
pub(super) fn judge_body(check: &HttpCheck, body: Body) -> Result<(), String> {
    let seen = body.describe(check.max_body);
    if let Some(needle) = &check.body_contains
        && !body.contains
    {
        return Err(format!("body does not contain {needle:?} ({seen})"));
    }
    if let Some(pattern) = &check.body_regex {
        let text = match String::from_utf8(body.kept) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        if !pattern.0.is_match(&text) {
            return Err(format!(
                "body does not match /{}/ ({seen})",
                pattern.as_str()
            ));
        }
    }
    Ok(())
}

/// The verdict of a response whose status and body passed: `max_latency`, else the pass
/// reason.
pub(super) fn judge_latency(
    check: &HttpCheck,
    status: StatusCode,
    took: std::time::Duration,
) -> Verdict {
    if let Some(max) = check.max_latency
        && took > max
    {
        return Err(format!(
            "{} but took {}, max_latency {}",
            status_text(status),
            latency(took),
            latency(max)
        ));
    }
    Ok(format!("{} in {}", status_text(status), latency(took)))
}

/// `500 Internal Server Error`, or just `599` for codes without a reason phrase.
fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// What was read of a body.
pub(super) struct Body {
    /// Bytes read (at most `max_body`).
    read: usize,
    /// Reading stopped at `max_body`, not at the end of the body.
    capped: bool,
    /// `body_contains` was found (true when there is none).
    contains: bool,
    /// The body as read, for `body_regex` only (empty without one).
    kept: Vec<u8>,
}

impl Body {
    fn describe(&self, max: usize) -> String {
        if self.capped {
            format!("read the first {} bytes, max_body = {max}", self.read)
        } else {
            format!("read {} bytes", self.read)
        }
    }
}

/// Streams at most `max_body` bytes of the body through the matchers, so memory stays
/// bounded whatever `max_body` says: `body_contains` is searched in each chunk plus the
/// previous chunk's last `len - 1` bytes (a match across chunks is found, nothing else
/// is kept), and only `body_regex` keeps the body, at most
/// [`MAX_BODY_WITH_REGEX`](crate::model::MAX_BODY_WITH_REGEX) of it (the config refuses
/// more). The needle is matched on the bytes, so it is found in a body that is not UTF-8
/// too. Without a regex, reading stops as soon as the needle is found.
async fn scan_body(response: &mut Response, check: &HttpCheck) -> Result<Body, reqwest::Error> {
    let mut scan = BodyScan::new(check);
    while !scan.done() {
        let Some(chunk) = response.chunk().await? else {
            return Ok(scan.end());
        };
        scan.feed(&chunk);
    }
    Ok(scan.end())
}

/// A body read chunk by chunk against a check's `max_body`, `body_contains` and
/// `body_regex` (see [`scan_body`]); shared by both HTTP clients.
pub(super) struct BodyScan<'a> {
    max: usize,
    keep: usize,
    needle: Option<Needle<'a>>,
    body: Body,
    /// Nothing more needs reading.
    stopped: bool,
}

impl<'a> BodyScan<'a> {
    pub(super) fn new(check: &'a HttpCheck) -> BodyScan<'a> {
        let max = check.max_body;
        let keep = if check.body_regex.is_some() {
            max.min(crate::model::MAX_BODY_WITH_REGEX)
        } else {
            0
        };
        // An empty needle is in every body, the empty one too.
        let needle = check
            .body_contains
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(|n| Needle::new(n.as_bytes()));
        BodyScan {
            max,
            keep,
            body: Body {
                read: 0,
                capped: max == 0,
                contains: needle.is_none(),
                kept: Vec::new(),
            },
            needle,
            stopped: max == 0,
        }
    }

    /// Nothing more needs reading: `max_body` is reached, or the needle was found and
    /// there is no regex.
    pub(super) fn done(&self) -> bool {
        self.stopped
    }

    pub(super) fn feed(&mut self, chunk: &[u8]) {
        if self.stopped {
            return;
        }
        let chunk = &chunk[..chunk.len().min(self.max - self.body.read)];
        self.body.read += chunk.len();
        if self.body.kept.len() < self.keep {
            let room = self.keep - self.body.kept.len();
            self.body
                .kept
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if let Some(n) = &mut self.needle
            && n.feed(chunk)
        {
            self.body.contains = true;
            self.needle = None;
            if self.keep == 0 {
                self.stopped = true;
                return;
            }
        }
        if self.body.read >= self.max {
            self.body.capped = true;
            self.stopped = true;
        }
    }

    /// What was read (at the body's end, or where reading stopped).
    pub(super) fn end(self) -> Body {
        self.body
    }
}

/// `body_contains` over a body that arrives in chunks: each chunk is searched together
/// with the previous one's last `len - 1` bytes, so a match across chunks is found and
/// nothing more is kept.
struct Needle<'a> {
    finder: memchr::memmem::Finder<'a>,
    /// The end of what was searched, then the chunk being searched.
    window: Vec<u8>,
}

impl<'a> Needle<'a> {
    fn new(needle: &'a [u8]) -> Needle<'a> {
        Needle {
            finder: memchr::memmem::Finder::new(needle),
            window: Vec::new(),
        }
    }

    /// Whether the needle ends in `chunk` (or was found before).
    fn feed(&mut self, chunk: &[u8]) -> bool {
        self.window.extend_from_slice(chunk);
        if self.finder.find(&self.window).is_some() {
            return true;
        }
        let overlap = self.finder.needle().len().saturating_sub(1);
        let searched = self.window.len().saturating_sub(overlap);
        self.window.drain(..searched);
        false
    }
}

/// A short reason for a failed request: the most specific cause we recognise.
fn describe_reqwest(err: &reqwest::Error) -> String {
    let chain = causes(err);
    for cause in &chain {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return format!("TLS error: {}", tls::describe_tls(tls));
        }
    }

    if err.is_timeout() {
        return "timed out".to_owned();
    }
    for cause in &chain {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.get_ref().is_none()
        {
            return describe_io(io);
        }
    }
    if err.is_redirect() {
        return format!("redirect failed: {}", innermost(&chain));
    }
    innermost(&chain)
}

fn innermost(chain: &[&(dyn std::error::Error + 'static)]) -> String {
    chain
        .last()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "unknown error".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_needle_split_across_chunks_is_found() {
        let body = b"zzzzREADYzzzz";
        for size in 1..body.len() {
            let mut needle = Needle::new(b"READY");
            let found = body.chunks(size).any(|chunk| needle.feed(chunk));
            assert!(found, "chunks of {size}");
            assert!(needle.window.len() <= size + 4);
        }
        let mut needle = Needle::new(b"READY");
        assert!(!b"READzREADzEADY".chunks(3).any(|c| needle.feed(c)));
    }
}
