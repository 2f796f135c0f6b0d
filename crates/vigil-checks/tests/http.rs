//! HTTP(S) probes against real servers on loopback.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{Reply, http, run_http as run, serve, serve_tls, wait_until};
use vigil_checks::model::{CheckKind, HttpCheck, Pattern, StatusSet};
use vigil_checks::{ProbeContext, probe};

#[tokio::test]
async fn status_in_the_default_range_passes() {
    let server = serve(|_| Reply::status(200, "ok\n")).await;
    let out = run(http(&server.url("/health")), &ProbeContext::new()).await;
    assert!(out.passed, "{out:?}");
    assert!(out.reason.starts_with("200 OK in "), "{}", out.reason);
    assert!(out.reason.ends_with("ms"), "{}", out.reason);
}

#[tokio::test]
async fn status_outside_the_expected_set_fails_with_both_in_the_reason() {
    let server = serve(|_| Reply::status(500, "boom")).await;
    let url = server.url("/health");
    let out = run(http(&url), &ProbeContext::new()).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("GET {url}: expected status 200-399, got 500 Internal Server Error")
    );
}

#[tokio::test]
async fn status_lists_and_ranges() {
    let server = serve(|r| match r.path.as_str() {
        "/204" => Reply::status(204, ""),
        "/404" => Reply::status(404, "nope"),
        _ => Reply::status(503, "down"),
    })
    .await;
    let cx = ProbeContext::new();
    let expect = StatusSet(vec![(204, 204), (400, 404)]);
    for (path, passes) in [("/204", true), ("/404", true), ("/503", false)] {
        let check = HttpCheck {
            expect_status: expect.clone(),
            ..http(&server.url(path))
        };
        let out = run(check, &cx).await;
        assert_eq!(out.passed, passes, "{path}: {out:?}");
    }
    let check = HttpCheck {
        expect_status: expect,
        ..http(&server.url("/503"))
    };
    let out = run(check, &cx).await;
    assert!(
        out.reason
            .ends_with("expected status 204, 400-404, got 503 Service Unavailable"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn body_contains_and_regex() {
    let server = serve(|_| Reply::status(200, "status: ready (3 workers)\n")).await;
    let cx = ProbeContext::new();
    let url = server.url("/");

    let ok = HttpCheck {
        body_contains: Some("ready".into()),
        body_regex: Some(Pattern(regex::Regex::new(r"\(\d+ workers\)").unwrap())),
        ..http(&url)
    };
    let out = run(ok, &cx).await;
    assert!(out.passed, "{out:?}");

    let missing = HttpCheck {
        body_contains: Some("ok".into()),
        ..http(&url)
    };
    let out = run(missing, &cx).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("GET {url}: body does not contain \"ok\" (read 26 bytes)")
    );

    let no_match = HttpCheck {
        body_regex: Some(Pattern(regex::Regex::new("^healthy$").unwrap())),
        ..http(&url)
    };
    let out = run(no_match, &cx).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("GET {url}: body does not match /^healthy$/ (read 26 bytes)")
    );
}

#[tokio::test]
async fn method_and_headers_are_sent() {
    let server = serve(|_| Reply::status(200, "ok")).await;
    let check = HttpCheck {
        method: "HEAD".into(),
        headers: vec![
            ("X-Vigil-Probe".into(), "yes".into()),
            ("Authorization".into(), "Bearer t0ken".into()),
        ],
        ..http(&server.url("/h"))
    };
    let out = run(check, &ProbeContext::new()).await;
    assert!(out.passed, "{out:?}");
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "HEAD");
    assert_eq!(seen[0].path, "/h");
    assert_eq!(seen[0].header("x-vigil-probe"), Some("yes"));
    assert_eq!(seen[0].header("authorization"), Some("Bearer t0ken"));
    assert!(seen[0].header("user-agent").unwrap().starts_with("vigil/"));
}

#[tokio::test]
async fn a_server_that_never_answers_fails_within_the_timeout() {
    let server = serve(|_| Reply::Silent).await;
    let url = server.url("/");
    let timeout = Duration::from_millis(300);
    let out = probe(&CheckKind::Http(http(&url)), timeout, &ProbeContext::new()).await;
    assert!(!out.passed);
    assert_eq!(out.reason, format!("GET {url}: timed out after 300ms"));
    assert!(
        out.elapsed >= timeout && out.elapsed < Duration::from_secs(3),
        "{:?}",
        out.elapsed
    );
}

#[tokio::test]
async fn connection_refused_is_named() {
    let (_reserved, port) = vigil_test_helpers::refused_port();
    let url = format!("http://127.0.0.1:{port}/health");
    let out = run(http(&url), &ProbeContext::new()).await;
    assert!(!out.passed);
    assert_eq!(out.reason, format!("GET {url}: connection refused"));
}

#[tokio::test]
async fn an_endless_body_is_read_only_up_to_max_body() {
    const GIB: u64 = 1 << 30;
    let server = serve(|_| Reply::Stream {
        prefix: b"ok ".to_vec(),
        len: GIB,
    })
    .await;
    let cx = ProbeContext::new();
    let url = server.url("/big");

    // The needle is not in the first max_body bytes: fail, having read only those.
    let absent = HttpCheck {
        body_contains: Some("needle".into()),
        max_body: 64 * 1024,
        ..http(&url)
    };
    let out = run(absent, &cx).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!(
            "GET {url}: body does not contain \"needle\" (read the first 65536 bytes, max_body = 65536)"
        )
    );
    assert!(out.elapsed < Duration::from_secs(3), "{:?}", out.elapsed);
    wait_until(
        "the server saw the client go away",
        Duration::from_secs(10),
        || server.stream_done.load(Ordering::SeqCst),
    )
    .await;
    let sent = server.streamed.load(Ordering::SeqCst);
    assert!(
        sent < 64 * 1024 * 1024,
        "the client stopped reading early, but {sent} bytes were sent"
    );

    // The needle is early: pass without reading the rest.
    let present = HttpCheck {
        body_contains: Some("ok".into()),
        max_body: 64 * 1024,
        ..http(&url)
    };
    let out = run(present, &cx).await;
    assert!(out.passed, "{out:?}");

    // Without a body condition the body is not read at all.
    let out = run(http(&url), &cx).await;
    assert!(out.passed, "{out:?}");
}

#[tokio::test]
async fn redirects_are_not_followed_unless_asked() {
    let server = serve(|r| match r.path.as_str() {
        "/old" => Reply::redirect(302, "/new"),
        "/new" => Reply::status(200, "the new place"),
        "/loop" => Reply::redirect(301, "/loop"),
        _ => Reply::status(404, ""),
    })
    .await;
    let cx = ProbeContext::new();
    let url = server.url("/old");

    // Like curl without -L: the 302 itself is the answer, and 3xx is in the default range.
    let out = run(http(&url), &cx).await;
    assert!(out.passed, "{out:?}");
    assert!(out.reason.starts_with("302 Found"), "{}", out.reason);

    let strict = HttpCheck {
        expect_status: StatusSet(vec![(200, 200)]),
        ..http(&url)
    };
    let out = run(strict.clone(), &cx).await;
    assert_eq!(
        out.reason,
        format!("GET {url}: expected status 200, got 302 Found")
    );

    let follow = HttpCheck {
        follow_redirects: true,
        body_contains: Some("new place".into()),
        ..strict
    };
    let out = run(follow, &cx).await;
    assert!(out.passed, "{out:?}");
    assert!(server.requests().iter().any(|r| r.path == "/new"));

    let endless = HttpCheck {
        follow_redirects: true,
        ..http(&server.url("/loop"))
    };
    let out = run(endless, &cx).await;
    assert!(!out.passed);
    assert!(
        out.reason
            .ends_with(": redirect failed: too many redirects"),
        "{}",
        out.reason
    );
}

/// A CA and a leaf certificate for `localhost` and `127.0.0.1` signed by it.
struct Pki {
    ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Vigil Test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    }
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let pki = pki();
    let server = serve_tls(pki.acceptor.clone(), |_| Reply::status(200, "secure ok")).await;
    let url = server.https_url("/health");
    let cx = ProbeContext::new();

    // Not trusted by default: a clear TLS reason.
    let out = run(http(&url), &cx).await;
    assert!(!out.passed);
    assert!(
        out.reason.starts_with(&format!(
            "GET {url}: TLS error: invalid server certificate: unknown issuer"
        )),
        "{}",
        out.reason
    );

    // insecure = true skips verification.
    let insecure = HttpCheck {
        insecure: true,
        body_contains: Some("secure ok".into()),
        ..http(&url)
    };
    let out = run(insecure, &cx).await;
    assert!(out.passed, "{out:?}");

    // ca_file trusts the private CA, by IP and by name.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    for url in [
        url.clone(),
        format!("https://localhost:{}/health", server.addr.port()),
    ] {
        let trusted = HttpCheck {
            ca_file: Some(ca_file.clone()),
            ..http(&url)
        };
        let out = run(trusted, &cx).await;
        assert!(out.passed, "{url}: {out:?}");
    }
}

#[tokio::test]
async fn an_unreadable_ca_file_is_a_failed_probe_not_a_panic() {
    let url = "https://127.0.0.1:1/";
    let check = HttpCheck {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..http(url)
    };
    let out = run(check, &ProbeContext::new()).await;
    assert!(!out.passed);
    assert!(
        out.reason.starts_with(&format!(
            "GET {url}: cannot read ca_file /nonexistent/ca.pem: "
        )),
        "{}",
        out.reason
    );

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let check = HttpCheck {
        ca_file: Some(junk),
        ..http(url)
    };
    let out = run(check, &ProbeContext::new()).await;
    assert!(!out.passed);
    assert!(
        out.reason.contains("no PEM certificate found"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn clients_are_reused_across_probes() {
    let server = serve(|_| Reply::status(200, "ok")).await;
    let cx = ProbeContext::new();
    // A plain GET of an IP address goes through the plain HTTP/1.1 client
    // (probe/http1.rs): no reqwest client is built at all.
    for _ in 0..20 {
        let out = run(http(&server.url("/")), &cx.clone()).await;
        assert!(out.passed, "{out:?}");
    }
    assert_eq!(cx.cached_clients(), 0);
    // Many probes with one setting reqwest sends, and a clone of the context, share one
    // client; this mostly guards against accidentally building a client (and TLS roots)
    // per run.
    let post = HttpCheck {
        method: "POST".to_owned(),
        ..http(&server.url("/"))
    };
    let started = tokio::time::Instant::now();
    for _ in 0..200 {
        let out = run(post.clone(), &cx.clone()).await;
        assert!(out.passed, "{out:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cx.cached_clients(), 1);
    let other = HttpCheck {
        follow_redirects: true,
        ..http(&server.url("/"))
    };
    assert!(run(other, &cx).await.passed);
    assert_eq!(cx.cached_clients(), 2);
}
