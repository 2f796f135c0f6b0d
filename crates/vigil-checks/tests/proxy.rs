//! HTTP `proxy` / `max_latency` / `client_cert`, and the raw-socket probes' proxy dialer:
//! through a real `microsocks` (SOCKS5, with and without username/password) and an in-test
//! HTTP proxy, in front of loopback servers.
//!
//! The microsocks tests need the `microsocks` binary (Debian package `microsocks`); without
//! it they print "skipped" unless `VIGIL_TEST_SERVERS=1`, which makes its absence a failure.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{KillOnDrop, Reply, http, serve, serve_tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vigil_checks::model::{
    CheckKind, ClientCert, HttpCheck, Proxy, ProxyScheme, TlsCertCheck, WebSocketCheck,
};
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn run(kind: CheckKind) -> ProbeOutcome {
    probe(&kind, TIMEOUT, &ProbeContext::new()).await
}

fn free_port() -> u16 {
    // Bind, read the port, release it: a tiny race with other processes is acceptable.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn proxy(scheme: ProxyScheme, port: u16, creds: Option<(&str, &str)>) -> Proxy {
    let auth = creds.map(|(u, p)| format!("{u}:{p}@")).unwrap_or_default();
    Proxy {
        url: format!("{}://{auth}127.0.0.1:{port}", scheme.as_str()),
        scheme,
        host: "127.0.0.1".to_owned(),
        port,
        username: creds.map(|(u, _)| u.to_owned()),
        password: creds.map(|(_, p)| p.to_owned()),
    }
}

fn have(binary: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("VIGIL_TEST_SERVERS").is_none(),
            "VIGIL_TEST_SERVERS is set but {binary} is not installed"
        );
        eprintln!("skipped: {binary} is not installed (apt-get install {binary})");
    }
    found
}

/// A running microsocks, killed when dropped.
struct Socks {
    port: u16,
    _kill: KillOnDrop,
    _child: std::process::Child,
}

#[expect(
    clippy::disallowed_methods,
    reason = "test fixture: a long-running proxy the test owns and kills"
)]
async fn microsocks(creds: Option<(&str, &str)>) -> Socks {
    let port = free_port();
    let mut cmd = std::process::Command::new("microsocks");
    cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some((u, p)) = creds {
        cmd.args(["-u", u, "-P", p]);
    }
    let child = cmd.spawn().unwrap();
    let socks = Socks {
        port,
        _kill: KillOnDrop(child.id()),
        _child: child,
    };
    // Ready when it accepts connections.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "microsocks did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    socks
}

fn via(url: &str, p: Proxy) -> HttpCheck {
    HttpCheck {
        proxy: Some(p),
        ..http(url)
    }
}

#[tokio::test]
async fn http_through_socks5_and_socks5h() {
    if !have("microsocks") {
        return;
    }
    let server = serve(|_| Reply::status(200, "ok")).await;
    let socks = microsocks(None).await;
    let out = run(CheckKind::Http(via(
        &server.url("/health"),
        proxy(ProxyScheme::Socks5, socks.port, None),
    )))
    .await;
    assert!(out.passed, "{out:?}");
    // socks5h: the proxy resolves "localhost".
    let url = format!("http://localhost:{}/health", server.addr.port());
    let out = run(CheckKind::Http(via(
        &url,
        proxy(ProxyScheme::Socks5h, socks.port, None),
    )))
    .await;
    assert!(out.passed, "{out:?}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn socks5_credentials_right_and_wrong() {
    if !have("microsocks") {
        return;
    }
    let server = serve(|_| Reply::status(200, "ok")).await;
    let socks = microsocks(Some(("tbuser", "tbpass"))).await;
    let good = proxy(ProxyScheme::Socks5h, socks.port, Some(("tbuser", "tbpass")));
    let out = run(CheckKind::Http(via(&server.url("/"), good))).await;
    assert!(out.passed, "{out:?}");

    let bad = proxy(ProxyScheme::Socks5h, socks.port, Some(("tbuser", "nope")));
    let out = run(CheckKind::Http(via(&server.url("/"), bad))).await;
    assert!(!out.passed, "{out:?}");
    assert!(
        out.reason.starts_with(&format!(
            "GET {} via socks5h://***@127.0.0.1:{}: ",
            server.url("/"),
            socks.port
        )),
        "{}",
        out.reason
    );
    assert!(!out.reason.contains("nope"), "{}", out.reason);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_dead_proxy_fails_clearly() {
    let server = serve(|_| Reply::status(200, "ok")).await;
    let port = free_port();
    let out = run(CheckKind::Http(via(
        &server.url("/"),
        proxy(ProxyScheme::Socks5h, port, None),
    )))
    .await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!(
            "GET {} via socks5h://127.0.0.1:{port}: SOCKS error: failed to create underlying connection",
            server.url("/")
        )
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn http_proxy_gets_absolute_form_requests_with_credentials() {
    // The "proxy" is a plain server: for http:// URLs the client sends it the absolute URL.
    let proxy_server = serve(|r| {
        if r.path.starts_with("http://") && r.header("proxy-authorization").is_some() {
            Reply::status(200, "proxied")
        } else {
            Reply::status(400, "not a proxy request")
        }
    })
    .await;
    let check = HttpCheck {
        body_contains: Some("proxied".to_owned()),
        ..via(
            "http://service.invalid/health",
            proxy(
                ProxyScheme::Http,
                proxy_server.addr.port(),
                Some(("u", "p")),
            ),
        )
    };
    let out = run(CheckKind::Http(check)).await;
    assert!(out.passed, "{out:?}");
    let seen = proxy_server.requests();
    assert_eq!(seen[0].path, "http://service.invalid/health");
    assert_eq!(seen[0].header("proxy-authorization"), Some("Basic dTpw"));
}

#[tokio::test]
async fn max_latency_fails_a_slow_answer() {
    let server = serve(|_| Reply::status(200, "ok")).await;
    let url = server.url("/");
    let fast_enough = HttpCheck {
        max_latency: Some(Duration::from_secs(10)),
        ..http(&url)
    };
    assert!(run(CheckKind::Http(fast_enough)).await.passed);
    let too_slow = HttpCheck {
        max_latency: Some(Duration::from_nanos(1)),
        ..http(&url)
    };
    let out = run(CheckKind::Http(too_slow)).await;
    assert!(!out.passed);
    assert!(
        out.reason
            .starts_with(&format!("GET {url}: 200 OK but took ")),
        "{}",
        out.reason
    );
    assert!(out.reason.ends_with(", max_latency 0ms"), "{}", out.reason);
}

/// A CONNECT-only HTTP proxy: answers 200 and splices the connection to the target.
async fn connect_proxy() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            conns.spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let target = text
                    .strip_prefix("CONNECT ")
                    .and_then(|t| t.split(' ').next())
                    .unwrap_or("")
                    .to_owned();
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
            while conns.try_join_next().is_some() {}
        }
    });
    (port, task)
}

/// A WebSocket endpoint that always answers 426 (like seed 001's Kurento to a bad request).
async fn ws_426() -> (u16, tokio::task::JoinHandle<()>) {
    let server = serve(|_| Reply::status(426, "")).await;
    let port = server.addr.port();
    // Keep the server alive for as long as the task handle lives.
    let task = tokio::spawn(async move {
        let _keep = server;
        std::future::pending::<()>().await;
    });
    (port, task)
}

fn ws(port: u16, p: Proxy) -> WebSocketCheck {
    WebSocketCheck {
        url: format!("ws://127.0.0.1:{port}/"),
        expect_status: vigil_checks::model::StatusSet(vec![(426, 426)]),
        headers: Vec::new(),
        proxy: Some(p),
        tls: Default::default(),
    }
}

#[tokio::test]
async fn websocket_through_an_http_connect_proxy() {
    let (ws_port, ws_task) = ws_426().await;
    let (proxy_port, proxy_task) = connect_proxy().await;
    let out = run(CheckKind::WebSocket(ws(
        ws_port,
        proxy(ProxyScheme::Http, proxy_port, None),
    )))
    .await;
    ws_task.abort();
    proxy_task.abort();
    assert!(out.passed, "{out:?}");
    assert!(out.reason.starts_with("426 "), "{}", out.reason);
}

#[tokio::test]
async fn websocket_and_tls_cert_through_microsocks() {
    if !have("microsocks") {
        return;
    }
    let (ws_port, ws_task) = ws_426().await;
    let socks = microsocks(Some(("u1", "p1"))).await;
    let good = proxy(ProxyScheme::Socks5h, socks.port, Some(("u1", "p1")));
    let out = run(CheckKind::WebSocket(ws(ws_port, good.clone()))).await;
    assert!(out.passed, "{out:?}");
    let bad = proxy(ProxyScheme::Socks5, socks.port, Some(("u1", "wrong")));
    let out = run(CheckKind::WebSocket(ws(ws_port, bad))).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!(
            "websocket ws://127.0.0.1:{ws_port}/: proxy socks5://***@127.0.0.1:{}: rejected the credentials",
            socks.port
        )
    );
    let none = proxy(ProxyScheme::Socks5, socks.port, None);
    let out = run(CheckKind::WebSocket(ws(ws_port, none))).await;
    assert!(!out.passed);
    assert!(
        out.reason
            .ends_with("requires authentication, no credentials configured"),
        "{}",
        out.reason
    );
    ws_task.abort();

    let pki = pki(false);
    let tls_server = serve_tls(pki.acceptor.clone(), |_| Reply::status(200, "ok")).await;
    let check = TlsCertCheck {
        host: "localhost".to_owned(),
        port: tls_server.addr.port(),
        server_name: None,
        warn_days: 14,
        critical_days: 3,
        proxy: Some(good),
    };
    let out = run(CheckKind::TlsCert(check)).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason
            .starts_with("certificate for localhost expires in "),
        "{}",
        out.reason
    );
}

/// A CA, a server certificate for localhost and a client certificate, all signed by it.
struct Pki {
    dir: tempfile::TempDir,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Pki {
    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }
    fn client(&self) -> ClientCert {
        ClientCert {
            cert: self.dir.path().join("client.pem"),
            key: self.dir.path().join("client.key"),
        }
    }
}

fn pki(require_client_cert: bool) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Vigil Test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["vigil-client".to_owned()]).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "vigil-client");
    let client = client_params.signed_by(&client_key, &ca).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.path().join("client.key"), client_key.serialize_pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(
            vec![leaf.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    Pki {
        dir,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    }
}

#[tokio::test]
async fn client_certificates_are_presented() {
    let pki = pki(true);
    let server = serve_tls(pki.acceptor.clone(), |_| Reply::status(200, "hello client")).await;
    let url = format!("https://localhost:{}/", server.addr.port());
    let with_cert = HttpCheck {
        ca_file: Some(pki.ca()),
        client_cert: Some(pki.client()),
        body_contains: Some("hello client".to_owned()),
        ..http(&url)
    };
    let cx = ProbeContext::new();
    let out = probe(&CheckKind::Http(with_cert), TIMEOUT, &cx).await;
    assert!(out.passed, "{out:?}");

    let without = HttpCheck {
        ca_file: Some(pki.ca()),
        ..http(&url)
    };
    let out = probe(&CheckKind::Http(without), TIMEOUT, &cx).await;
    assert!(!out.passed, "{out:?}");
    // Different client settings never share a cached client.
    assert_eq!(cx.cached_clients(), 2);

    let missing = HttpCheck {
        ca_file: Some(pki.ca()),
        client_cert: Some(ClientCert {
            cert: pki.dir.path().join("nope.pem"),
            key: pki.dir.path().join("client.key"),
        }),
        ..http(&url)
    };
    let out = probe(&CheckKind::Http(missing), TIMEOUT, &cx).await;
    assert!(!out.passed);
    assert!(
        out.reason.contains("cannot read client_cert"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn wss_with_a_client_certificate() {
    let pki = pki(true);
    let server = serve_tls(pki.acceptor.clone(), |_| Reply::status(426, "")).await;
    let mut check = WebSocketCheck {
        url: format!("wss://localhost:{}/socket", server.addr.port()),
        expect_status: vigil_checks::model::StatusSet(vec![(426, 426)]),
        headers: Vec::new(),
        proxy: None,
        tls: vigil_checks::model::TlsOptions {
            ca_file: Some(pki.ca()),
            insecure: false,
            client_cert: Some(pki.client()),
        },
    };
    let out = run(CheckKind::WebSocket(check.clone())).await;
    assert!(out.passed, "{out:?}");
    check.tls.ca_file = None;
    let out = run(CheckKind::WebSocket(check.clone())).await;
    assert!(!out.passed);
    assert!(
        out.reason.contains("TLS handshake failed"),
        "{}",
        out.reason
    );
    check.tls.insecure = true;
    let out = run(CheckKind::WebSocket(check)).await;
    assert!(out.passed, "{out:?}");
}
