//! Shared state for probes: one HTTP client per distinct TLS/redirect setting, one D-Bus
//! connection per bus.
//!
//! Owns: building and caching `reqwest::Client`s (each holds a connection pool, TLS
//! configuration and root store, which are expensive to build and cheap to clone) and the
//! systemd bus connections ([`Buses`], shared with vigild's systemd driver). Must not: hold
//! per-check or per-service state; a context is shared by every check.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use crate::systemd::Buses;

/// What makes two HTTP checks need different clients.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    /// Whether requests may use TLS (an `https://` URL, or redirects that may lead to
    /// one). Without it the client gets an empty root store instead of the system's.
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    pub follow_redirects: bool,
    /// `None` for a direct connection.
    pub proxy: Option<ProxyUrl>,
    /// `(client_cert, client_key)`, read when the client is built.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// A proxy URL as written, credentials included; its `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ProxyUrl(pub String);

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyUrl(***)")
    }
}

/// Redirects followed when `follow_redirects = true`.
const MAX_REDIRECTS: usize = 10;
/// Idle pooled connections are closed after this, so a check that runs every few seconds
/// reuses its connection while a rare one does not keep sockets open.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared by every probe; cheap to clone.
///
/// The `ca_file` contents are read once, when the first check using it runs. Build a new
/// context on config reload to pick up a changed CA file.
#[derive(Clone, Debug, Default)]
pub struct ProbeContext {
    clients: Arc<Mutex<HashMap<ClientKey, reqwest::Client>>>,
    /// `http` check URLs, parsed: parsing one (IDNA host mapping included) on every run
    /// was about 6 % of a daemon running 1,000 checks a second; a clone is a copy.
    urls: Arc<Mutex<HashMap<String, reqwest::Url>>>,
    /// Keep-alive connections of the plain HTTP/1.1 client (`probe::http1`).
    http1: Arc<crate::probe::http1::Pool>,
    buses: Buses,
}

/// The URL cache is emptied when it grows past this (reloads can retire URLs).
const URLS_MAX: usize = 4096;

impl ProbeContext {
    pub fn new() -> ProbeContext {
        ProbeContext::default()
    }

    /// The client for `key`, built on first use. A build failure (unreadable `ca_file`)
    /// is not cached, so fixing the file fixes the next run.
    pub(crate) async fn http_client(&self, key: &ClientKey) -> Result<reqwest::Client, String> {
        if let Some(client) = self.lock().get(key) {
            return Ok(client.clone());
        }
        let client = build_client(key).await?;
        // Two first runs may race to build; either client is fine, keep the first.
        Ok(self.lock().entry(key.clone()).or_insert(client).clone())
    }

    /// `text` parsed as a URL, from the cache after the first time; `None` if it does not
    /// parse (the request then reports why, as before).
    pub(crate) fn url(&self, text: &str) -> Option<reqwest::Url> {
        let mut urls = self.urls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(url) = urls.get(text) {
            return Some(url.clone());
        }
        let url = reqwest::Url::parse(text).ok()?;
        if urls.len() >= URLS_MAX {
            urls.clear();
        }
        urls.insert(text.to_owned(), url.clone());
        Some(url)
    }

    /// The plain HTTP/1.1 client's idle connections.
    pub(crate) fn http1_pool(&self) -> &Arc<crate::probe::http1::Pool> {
        &self.http1
    }

    /// The shared systemd bus connections (one per bus; the systemd check and driver).
    pub fn buses(&self) -> &Buses {
        &self.buses
    }

    /// How many distinct HTTP clients have been built (for tests and `vigil status`).
    pub fn cached_clients(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, reqwest::Client>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// reqwest (with `rustls-no-provider`) panics unless a process-wide crypto provider is
/// installed; we only ship ring.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means some provider is already installed, which is all we need.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

async fn build_client(key: &ClientKey) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    let redirect = if key.follow_redirects {
        reqwest::redirect::Policy::limited(MAX_REDIRECTS)
    } else {
        reqwest::redirect::Policy::none()
    };
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        // Proxies are explicit per check (SPEC §3), never taken from the environment.
        .no_proxy()
        .redirect(redirect)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true);
    if let Some(url) = &key.proxy {
        // After `no_proxy()`, which clears every proxy (the environment's included).
        // The error would quote the URL, credentials included.
        let proxy =
            reqwest::Proxy::all(url.0.as_str()).map_err(|_| "invalid proxy URL".to_owned())?;
        builder = builder.proxy(proxy);
    }
    if let Some((cert, key_path)) = &key.client_cert {
        let mut pem = tokio::fs::read(cert)
            .await
            .map_err(|e| format!("cannot read client_cert {}: {e}", cert.display()))?;
        pem.push(b'\n');
        pem.extend(
            tokio::fs::read(key_path)
                .await
                .map_err(|e| format!("cannot read client_key {}: {e}", key_path.display()))?,
        );
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "client_cert {} / client_key {}: {}",
                cert.display(),
                key_path.display(),
                crate::probe::error_chain(&e)
            )
        })?;
        builder = builder.identity(identity);
    }
    if key.insecure {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(path) = &key.ca_file {
        let pem = tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "ca_file {}: {}",
                path.display(),
                crate::probe::error_chain(&e)
            )
        })?;
        if certs.is_empty() {
            return Err(format!(
                "ca_file {}: no PEM certificate found",
                path.display()
            ));
        }
        builder = builder.tls_certs_merge(certs);
    }
    if !key.tls {
        builder = builder.tls_certs_only([]);
    }
    builder.build().map_err(|e| {
        format!(
            "cannot build HTTP client: {}",
            crate::probe::error_chain(&e)
        )
    })
}
