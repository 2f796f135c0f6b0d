//! `tls_cert` probes against rustls servers on loopback serving certificates with chosen
//! expiry dates (self-signed, so only an accept-anything verifier can read them).
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use vigil_checks::model::{CheckKind, TlsCertCheck};
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

const DAY: u64 = 86_400;

#[expect(
    clippy::disallowed_methods,
    reason = "certificate dates are wall-clock dates"
)]
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Server {
    port: u16,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS server whose self-signed certificate for `example.com` is valid from
/// `not_before` to `not_after` (Unix seconds).
async fn serve(not_before: u64, not_after: u64) -> Server {
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["example.com".to_owned()]).unwrap();
    let epoch = date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
    let cert = params.self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            conns.spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 64];
                    let _ = tls.read(&mut buf).await;
                }
            });
            while conns.try_join_next().is_some() {}
        }
    });
    Server { port, task }
}

fn check(port: u16) -> TlsCertCheck {
    TlsCertCheck {
        host: "127.0.0.1".to_owned(),
        port,
        server_name: Some("example.com".to_owned()),
        warn_days: 14,
        critical_days: 3,
        proxy: None,
    }
}

async fn run(check: TlsCertCheck) -> ProbeOutcome {
    probe(
        &CheckKind::TlsCert(check),
        Duration::from_secs(5),
        &ProbeContext::new(),
    )
    .await
}

#[tokio::test]
async fn two_days_left_is_critical() {
    let now = unix_now();
    let server = serve(now - DAY, now + 2 * DAY).await;
    let out = run(check(server.port)).await;
    assert!(!out.passed, "{out:?}");
    assert!(!out.warning);
    assert!(
        out.reason
            .contains("certificate for example.com expires in 2 days ("),
        "{}",
        out.reason
    );
    assert!(
        out.reason.ends_with("Z), critical below 3"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn ten_days_left_warns() {
    let now = unix_now();
    let server = serve(now - DAY, now + 10 * DAY).await;
    let out = run(check(server.port)).await;
    assert!(out.passed, "{out:?}");
    assert!(out.warning, "{out:?}");
    assert!(
        out.reason.contains("expires in 10 days (") && out.reason.ends_with("warn below 14"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn thirty_days_left_passes() {
    let now = unix_now();
    let server = serve(now - DAY, now + 30 * DAY).await;
    let out = run(check(server.port)).await;
    assert!(out.passed, "{out:?}");
    assert!(!out.warning, "{out:?}");
    assert!(
        out.reason
            .starts_with("certificate for example.com expires in 30 days ("),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn an_expired_certificate_fails() {
    let now = unix_now();
    let server = serve(now - 40 * DAY, now - 5 * DAY).await;
    let out = run(check(server.port)).await;
    assert!(!out.passed, "{out:?}");
    assert!(
        out.reason
            .contains("certificate for example.com expired 5 days ago ("),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn warn_outcomes_become_warn_runs() {
    use vigil_checks::model::{Check, OnFailure, Severity};
    use vigil_core::health::{RunVerdict, Thresholds};
    let now = unix_now();
    let server = serve(now - DAY, now + 10 * DAY).await;
    let spec = Check {
        name: vigil_core::CheckName::new("cert"),
        kind: CheckKind::TlsCert(check(server.port)),
        every: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        retries: 1,
        retry_delay: Duration::from_millis(20),
        thresholds: Thresholds::default(),
        grace: Duration::ZERO,
        on_failure: OnFailure::Restart,
        severity: Severity::Critical,
    };
    let run = vigil_checks::run_check(&spec, &ProbeContext::new()).await;
    assert_eq!(run.verdict, RunVerdict::Warn, "{run:?}");
}

#[tokio::test]
async fn nothing_listening_fails_clearly() {
    let (_reserved, port) = vigil_test_helpers::refused_port();
    let out = run(check(port)).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("tls_cert 127.0.0.1:{port}: connection refused")
    );
}

/// A real web server: nginx (gated on `VIGIL_TEST_SERVERS=1`) serving, by SNI, a
/// certificate that expires in 3 days for `example.com` and a 30-day one for the default
/// server. The probe reads the one its `server_name` selects.
#[tokio::test]
async fn nginx_serves_a_certificate_expiring_in_three_days() {
    if std::env::var_os("VIGIL_TEST_SERVERS").is_none_or(|v| v != "1") {
        eprintln!("skipped: set VIGIL_TEST_SERVERS=1");
        return;
    }
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let write_cert = |name: &str, host: &str, days: u64| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![host.to_owned()]).unwrap();
        let epoch = date_time_ymd(1970, 1, 1);
        params.not_before = epoch + Duration::from_secs(now - DAY);
        // Three days and an hour: "3 days" whatever second the probe runs in.
        params.not_after = epoch + Duration::from_secs(now + days * DAY + 3600);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
    };
    write_cert("short", "example.com", 3);
    write_cert("long", "other.test", 30);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.path().display();
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{ listen 127.0.0.1:{port} ssl default_server; server_name other.test; ssl_certificate {d}/long.pem; ssl_certificate_key {d}/long.key; return 200 ok; }}\n  server {{ listen 127.0.0.1:{port} ssl; server_name example.com; ssl_certificate {d}/short.pem; ssl_certificate_key {d}/short.key; return 200 ok; }}\n}}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "test fixture: a server the test owns and kills"
    )]
    let child = std::process::Command::new("nginx")
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir.path())
        .args(["-g", "daemon off;"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx (apt-get install nginx)");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SIGTERM: the master stops its workers too (SIGKILL would orphan them).
            if let Some(pid) = i32::try_from(self.0.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = self.0.wait();
        }
    }
    let _nginx = Kill(child);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let out = run(check(port)).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.warning,
        "3 days left must warn (critical below 3): {out:?}"
    );
    assert!(
        out.reason
            .contains("certificate for example.com expires in 3 days ("),
        "{}",
        out.reason
    );
    let out = run(TlsCertCheck {
        critical_days: 4,
        ..check(port)
    })
    .await;
    assert!(!out.passed, "{out:?}");
    let out = run(TlsCertCheck {
        server_name: Some("other.test".to_owned()),
        ..check(port)
    })
    .await;
    assert!(out.passed && !out.warning, "{out:?}");
    assert!(
        out.reason
            .contains("certificate for other.test expires in 30 days ("),
        "{}",
        out.reason
    );
}
