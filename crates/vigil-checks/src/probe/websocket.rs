//! `kind = "websocket"`: the HTTP/1.1 Upgrade handshake (RFC 6455 §4) over `ws://` or
//! `wss://`, optionally through a proxy.
//!
//! Owns: the upgrade request, the status verdict and, for `101`, checking
//! `Sec-WebSocket-Accept`. Must not: exchange messages (a close frame is sent after a `101`)
//! or read more than [`tls::MAX_HEAD`] bytes of the response head.

use base64::Engine as _;
use reqwest::Url;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::tls::{self, MAX_HEAD, Stream};
use super::{Verdict, first_line, host_port, latency};
use crate::model::WebSocketCheck;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub(super) fn label(check: &WebSocketCheck) -> String {
    format!("websocket {}", check.url)
}

/// `base64(sha1(key + GUID))`, the value a server must echo in `Sec-WebSocket-Accept`.
pub(crate) fn accept_for(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

fn random_key() -> Result<String, String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness available".to_owned())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub(super) async fn probe(check: &WebSocketCheck) -> Verdict {
    let started = Instant::now();
    let label = label(check);
    let url = Url::parse(&check.url).map_err(|e| format!("{label}: invalid URL: {e}"))?;
    let secure = match url.scheme() {
        "ws" => false,
        "wss" => true,
        other => {
            return Err(format!(
                "{label}: expected a ws:// or wss:// URL, got {other}://"
            ));
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| format!("{label}: URL has no host"))?
        .to_owned();
    let default_port = if secure { 443 } else { 80 };
    let port = url.port().unwrap_or(default_port);
    let host_header = match url.port() {
        Some(p) => host_port(&host, p),
        None => host.clone(),
    };
    let mut target = url.path().to_owned();
    if target.is_empty() {
        target.push('/');
    }
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let key = random_key().map_err(|e| format!("{label}: {e}"))?;
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         User-Agent: vigil/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in &check.headers {
        if [name, value].iter().any(|s| s.contains(['\r', '\n'])) {
            return Err(format!("{label}: header {name:?} contains a line break"));
        }
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");

    let tcp = tls::dial(&host, port, check.proxy.as_ref())
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    let mut stream: Stream = if secure {
        let config = tls::client_config(&check.tls)
            .await
            .map_err(|e| format!("{label}: {e}"))?;
        Box::new(
            tls::handshake(tcp, &host, config)
                .await
                .map_err(|e| format!("{label}: {e}"))?,
        )
    } else {
        Box::new(tcp)
    };
    stream.write_all(request.as_bytes()).await.map_err(|e| {
        format!(
            "{label}: sending the upgrade request: {}",
            super::describe_io(&e)
        )
    })?;
    let head = tls::read_head(&mut stream, MAX_HEAD)
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    let (code, reason) = tls::parse_status(&head).ok_or_else(|| {
        format!(
            "{label}: expected an HTTP response, got {:?}",
            first_line(&head, 80).unwrap_or_default()
        )
    })?;
    let status = if reason.is_empty() {
        code.to_string()
    } else {
        format!("{code} {reason}")
    };
    if !check.expect_status.contains(code) {
        return Err(format!(
            "{label}: expected status {}, got {status}",
            check.expect_status
        ));
    }
    if code == 101 {
        let expected = accept_for(&key);
        match header(&head, "sec-websocket-accept") {
            Some(seen) if seen == expected => {}
            Some(seen) => {
                return Err(format!(
                    "{label}: 101 but Sec-WebSocket-Accept is {seen:?}, expected {expected:?}"
                ));
            }
            None => {
                return Err(format!(
                    "{label}: 101 without a Sec-WebSocket-Accept header"
                ));
            }
        }
        // A masked close frame, status 1000; the server may already be gone.
        let mask = [0x5a, 0x17, 0x3c, 0x81];
        let frame = [
            0x88,
            0x82,
            mask[0],
            mask[1],
            mask[2],
            mask[3],
            0x03 ^ mask[0],
            0xe8 ^ mask[1],
        ];
        let _ = stream.write_all(&frame).await;
        let _ = stream.shutdown().await;
    }
    Ok(format!("{status} in {}", latency(started.elapsed())))
}

/// The first value of header `name` (lower case) in a response head.
fn header(head: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    text.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_the_rfc_example() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nSEC-WebSocket-Accept:  abc \r\n\r\n";
        assert_eq!(header(head, "sec-websocket-accept").as_deref(), Some("abc"));
        assert_eq!(header(head, "upgrade"), None);
    }
}
