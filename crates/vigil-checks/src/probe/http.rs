//! `kind = "http"`: one request, judged by status and (optionally) body.
//!
//! Owns: the request, the status/body verdict and turning transport errors into short
//! reasons (`connection refused`, `TLS error: ...`). Must not: build clients (the
//! [`ProbeContext`] caches them) or read more than `max_body` bytes of a body.

use reqwest::{Method, Response, StatusCode};
use tokio::time::Instant;

use super::{Verdict, causes, describe_io, latency, tls};
use crate::context::{ClientKey, ProbeContext, ProxyUrl};
use crate::model::HttpCheck;

pub(super) fn label(check: &HttpCheck) -> String {
    match &check.proxy {
        Some(proxy) => format!("{} {} via {}", check.method, check.url, proxy.redacted()),
        None => format!("{} {}", check.method, check.url),
    }
}

pub(super) async fn probe(check: &HttpCheck, cx: &ProbeContext) -> Verdict {
    let label = label(check);
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
    let client = cx
        .http_client(&key)
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    // Latency is the request's, not the (first-run) client build's.
    let started = Instant::now();
    let method = Method::from_bytes(check.method.as_bytes())
        .map_err(|_| format!("{label}: invalid method {:?}", check.method))?;
    let mut request = client.request(method, &check.url);
    for (name, value) in &check.headers {
        request = request.header(name, value);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("{label}: {}", describe_reqwest(&e)))?;
    let status = response.status();
    if !check.expect_status.contains(status.as_u16()) {
        return Err(format!(
            "{label}: expected status {}, got {}",
            check.expect_status,
            status_text(status)
        ));
    }
    let wants_body = check.body_contains.is_some() || check.body_regex.is_some();
    if wants_body {
        let body = read_capped(&mut response, check.max_body)
            .await
            .map_err(|e| format!("{label}: reading body: {}", describe_reqwest(&e)))?;
        let seen = body.describe(check.max_body);
        let text = String::from_utf8_lossy(&body.bytes);
        if let Some(needle) = &check.body_contains
            && !text.contains(needle.as_str())
        {
            return Err(format!(
                "{label}: body does not contain {needle:?} ({seen})"
            ));
        }
        if let Some(pattern) = &check.body_regex
            && !pattern.0.is_match(&text)
        {
            return Err(format!(
                "{label}: body does not match /{}/ ({seen})",
                pattern.as_str()
            ));
        }
    }
    // Dropping an unread body closes that connection instead of returning it to the pool,
    // which is what we want for a large or endless body.
    drop(response);
    let took = started.elapsed();
    if let Some(max) = check.max_latency
        && took > max
    {
        return Err(format!(
            "{label}: {} but took {}, max_latency {}",
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

struct Body {
    bytes: Vec<u8>,
    capped: bool,
}

impl Body {
    fn describe(&self, max: usize) -> String {
        if self.capped {
            format!(
                "read the first {} bytes, max_body = {max}",
                self.bytes.len()
            )
        } else {
            format!("read {} bytes", self.bytes.len())
        }
    }
}

/// Streams the body chunk by chunk and stops at `max` bytes, so an endless body costs at
/// most `max` bytes of memory.
async fn read_capped(response: &mut Response, max: usize) -> Result<Body, reqwest::Error> {
    let mut bytes = Vec::new();
    while bytes.len() < max {
        let Some(chunk) = response.chunk().await? else {
            return Ok(Body {
                bytes,
                capped: false,
            });
        };
        let room = max - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(Body {
        bytes,
        capped: true,
    })
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
