//! Certificate errors read as words in a check's reason, not as rustls' `Debug`
//! (`Other(OtherError(CaUsedAsEndEntity))`): through reqwest (`http`) and through the raw
//! handshake the other TLS probes share (`websocket` over `wss://`).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::{Reply, http, serve_tls};
use vigil_checks::model::{CheckKind, HttpCheck, StatusSet, TlsOptions, WebSocketCheck};
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A private CA, its PEM in a file for `ca_file`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        Ca { issuer, dir }
    }

    fn file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf for `names`, with `edit` applied to its parameters.
    fn leaf(
        &self,
        names: &[&str],
        edit: impl FnOnce(&mut CertificateParams),
    ) -> tokio_rustls::TlsAcceptor {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        edit(&mut params);
        let issuer: &Issuer<'_, KeyPair> = &self.issuer;
        let cert = params.signed_by(&key, issuer).unwrap();
        acceptor(vec![cert.der().clone()], &key)
    }

    /// The server presents the CA's own certificate.
    fn itself(&self) -> tokio_rustls::TlsAcceptor {
        acceptor(vec![self.issuer.der().clone()], self.issuer.key())
    }
}

fn acceptor(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            chain,
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn http_reason(acceptor: tokio_rustls::TlsAcceptor, ca: &Ca) -> String {
    let server = serve_tls(acceptor, |_| Reply::status(200, "ok")).await;
    let check = HttpCheck {
        ca_file: Some(ca.file()),
        ..http(&server.https_url("/"))
    };
    let out: ProbeOutcome = probe(&CheckKind::Http(check), TIMEOUT, &ProbeContext::new()).await;
    assert!(!out.passed, "{out:?}");
    assert!(!out.reason.contains("Other("), "{}", out.reason);
    out.reason
}

#[tokio::test]
async fn a_ca_certificate_as_the_server_certificate_is_named() {
    let ca = Ca::new("Vigil Test CA");
    let reason = http_reason(ca.itself(), &ca).await;
    assert!(
        reason.ends_with(
            ": TLS error: invalid server certificate: the server's certificate is a CA certificate, not a server certificate"
        ),
        "{reason}"
    );
}

#[tokio::test]
async fn an_expired_certificate_says_when() {
    let ca = Ca::new("Vigil Test CA");
    let leaf = ca.leaf(&["127.0.0.1"], |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let reason = http_reason(leaf, &ca).await;
    assert!(
        reason.contains(
            ": TLS error: invalid server certificate: certificate expired at 2021-01-01T00:00:00Z ("
        ),
        "{reason}"
    );
}

#[tokio::test]
async fn a_name_mismatch_names_both_names() {
    let ca = Ca::new("Vigil Test CA");
    let reason = http_reason(ca.leaf(&["example.test"], |_| {}), &ca).await;
    assert!(
        reason.ends_with(
            ": TLS error: invalid server certificate: name mismatch: the certificate is for example.test, not 127.0.0.1"
        ),
        "{reason}"
    );
}

#[tokio::test]
async fn an_unknown_issuer_is_named() {
    let ca = Ca::new("Vigil Test CA");
    let other = Ca::new("Some Other CA");
    let reason = http_reason(ca.leaf(&["127.0.0.1"], |_| {}), &other).await;
    assert!(
        reason.contains(": TLS error: invalid server certificate: unknown issuer"),
        "{reason}"
    );
}

/// The raw-socket probes (websocket, redis, postgres, mqtt, tls_cert) share one handshake.
#[tokio::test]
async fn the_shared_handshake_names_it_too() {
    let ca = Ca::new("Vigil Test CA");
    let acceptor = ca.itself();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = acceptor.accept(stream).await;
        }
    });
    let check = WebSocketCheck {
        url: format!("wss://127.0.0.1:{port}/ws"),
        expect_status: StatusSet(vec![(101, 101)]),
        headers: Vec::new(),
        proxy: None,
        tls: TlsOptions {
            ca_file: Some(ca.file()),
            ..TlsOptions::default()
        },
    };
    let out = probe(&CheckKind::WebSocket(check), TIMEOUT, &ProbeContext::new()).await;
    server.abort();
    assert!(!out.passed, "{out:?}");
    assert!(
        out.reason.ends_with(
            "TLS handshake failed: invalid server certificate: the server's certificate is a CA certificate, not a server certificate"
        ),
        "{}",
        out.reason
    );
}
