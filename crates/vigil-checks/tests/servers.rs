//! `redis`, `postgres` and `mqtt` probes against the real servers, each started by the test
//! on an ephemeral loopback port in a temp dir and killed when it ends.
//!
//! Gated: these run only with `VIGIL_TEST_SERVERS=1` and need the Debian packages
//! `redis-server`, `mosquitto` (with `mosquitto_passwd`) and PostgreSQL 15 in
//! /usr/lib/postgresql/15/bin (run as the `postgres` user). Without the variable each test
//! prints "skipped: set VIGIL_TEST_SERVERS=1" and returns.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;
use vigil_checks::model::{CheckKind, MqttCheck, PostgresCheck, RedisCheck, Secret};
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

const TIMEOUT: Duration = Duration::from_secs(5);
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn enabled() -> bool {
    if std::env::var_os("VIGIL_TEST_SERVERS").is_some_and(|v| v == "1") {
        true
    } else {
        eprintln!("skipped: set VIGIL_TEST_SERVERS=1");
        false
    }
}

async fn run(kind: CheckKind) -> ProbeOutcome {
    probe(&kind, TIMEOUT, &ProbeContext::new()).await
}

fn free_port() -> u16 {
    // Bind, read the port, release it: a tiny race with other processes is acceptable.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A server process: SIGKILLed and reaped when dropped, pass or fail.
struct Server {
    child: Child,
}

impl Server {
    /// SIGTERM, then wait for it to exit.
    fn stop(&mut self) {
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "test fixture: a long-running server the test owns and kills"
)]
fn command(program: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Runs a setup command to completion; panics with its output when it fails.
fn setup(cmd: &mut std::process::Command) {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until something accepts TCP connections on `port`.
async fn wait_listening(port: u16, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start(cmd: &mut std::process::Command) -> Server {
    Server {
        child: cmd.spawn().unwrap(),
    }
}

// ---------------------------------------------------------------------------------------
// redis

fn redis(port: u16, username: Option<&str>, password: Option<Secret>) -> CheckKind {
    CheckKind::Redis(RedisCheck {
        host: "127.0.0.1".to_owned(),
        port,
        username: username.map(str::to_owned),
        password,
        tls: None,
    })
}

async fn start_redis(dir: &Path, password: Option<&str>) -> (Server, u16) {
    let port = free_port();
    let mut cmd = command("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ])
    .args(["--appendonly", "no", "--dir"])
    .arg(dir);
    if let Some(pw) = password {
        cmd.args(["--requirepass", pw]);
    }
    let server = start(&mut cmd);
    wait_listening(port, "redis-server").await;
    (server, port)
}

#[tokio::test]
async fn redis_ping_auth_and_refusal() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut open, open_port) = start_redis(dir.path(), None).await;
    let out = run(redis(open_port, None, None)).await;
    assert!(out.passed, "{out:?}");
    assert!(out.reason.starts_with("PONG in "), "{}", out.reason);
    open.stop();
    let out = run(redis(open_port, None, None)).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("redis 127.0.0.1:{open_port}: connection refused")
    );

    let auth_dir = tempfile::tempdir().unwrap();
    let (_auth, port) = start_redis(auth_dir.path(), Some("s3cret")).await;
    let out = run(redis(port, None, Some(Secret::Inline("s3cret".to_owned())))).await;
    assert!(out.passed, "{out:?}");
    let pw_file = auth_dir.path().join("pw");
    std::fs::write(&pw_file, "s3cret\n").unwrap();
    let out = run(redis(port, Some("default"), Some(Secret::File(pw_file)))).await;
    assert!(out.passed, "{out:?}");

    let out = run(redis(port, None, None)).await;
    assert!(!out.passed);
    assert!(
        out.reason.starts_with(&format!(
            "redis 127.0.0.1:{port}: server requires a password, none configured (\"-NOAUTH"
        )),
        "{}",
        out.reason
    );
    let out = run(redis(port, None, Some(Secret::Inline("wrong".to_owned())))).await;
    assert!(!out.passed);
    assert!(
        out.reason.starts_with(&format!(
            "redis 127.0.0.1:{port}: wrong password: expected +OK, got \"-WRONGPASS"
        )),
        "{}",
        out.reason
    );
}

// ---------------------------------------------------------------------------------------
// mosquitto

fn mqtt(port: u16, user: Option<&str>, password: Option<&str>) -> CheckKind {
    CheckKind::Mqtt(MqttCheck {
        host: "127.0.0.1".to_owned(),
        port,
        username: user.map(str::to_owned),
        password: password.map(|p| Secret::Inline(p.to_owned())),
        client_id: Some("vigil-test".to_owned()),
        tls: None,
    })
}

async fn start_mosquitto(dir: &Path, with_auth: bool) -> (Server, u16) {
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    let mut text = format!("listener {port} 127.0.0.1\npersistence false\nuser root\n");
    if with_auth {
        let passwd = dir.join("passwd");
        setup(
            command("mosquitto_passwd")
                .args(["-c", "-b"])
                .arg(&passwd)
                .args(["vigil", "mqttpass"]),
        );
        text.push_str(&format!(
            "allow_anonymous false\npassword_file {}\n",
            passwd.display()
        ));
    } else {
        text.push_str("allow_anonymous true\n");
    }
    std::fs::write(&conf, text).unwrap();
    let server = start(command("mosquitto").arg("-c").arg(&conf));
    wait_listening(port, "mosquitto").await;
    (server, port)
}

#[tokio::test]
async fn mqtt_connack_auth_and_refusal() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut open, open_port) = start_mosquitto(dir.path(), false).await;
    let out = run(mqtt(open_port, None, None)).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason.starts_with("CONNACK accepted in "),
        "{}",
        out.reason
    );
    open.stop();
    let out = run(mqtt(open_port, None, None)).await;
    assert_eq!(
        out.reason,
        format!("mqtt 127.0.0.1:{open_port}: connection refused")
    );

    let auth_dir = tempfile::tempdir().unwrap();
    let (_auth, port) = start_mosquitto(auth_dir.path(), true).await;
    let out = run(mqtt(port, Some("vigil"), Some("mqttpass"))).await;
    assert!(out.passed, "{out:?}");
    for (user, pass) in [(Some("vigil"), Some("wrong")), (None, None)] {
        let out = run(mqtt(port, user, pass)).await;
        assert!(!out.passed);
        let prefix = format!("mqtt 127.0.0.1:{port}: CONNACK refused the connection: ");
        assert!(
            out.reason == format!("{prefix}not authorized (return code 5)")
                || out.reason == format!("{prefix}bad user name or password (return code 4)"),
            "{}",
            out.reason
        );
    }
}

// ---------------------------------------------------------------------------------------
// postgres

fn postgres(port: u16, password: Option<Secret>) -> CheckKind {
    CheckKind::Postgres(PostgresCheck {
        host: "127.0.0.1".to_owned(),
        port,
        user: "postgres".to_owned(),
        database: None,
        password,
        tls: None,
    })
}

/// The `postgres` account's uid and gid, from /etc/passwd.
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("a postgres user");
    let fields: Vec<&str> = line.split(':').collect();
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

#[tokio::test]
async fn postgres_ready_scram_and_refusal() {
    if !enabled() {
        return;
    }
    let (uid, gid) = postgres_ids();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    let data = dir.path().join("data");
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, "pgs3cret\n").unwrap();
    std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
    setup(
        command(&format!("{PG_BIN}/initdb"))
            .uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display())),
    );
    let port = free_port();
    let mut server = start(
        command(&format!("{PG_BIN}/postgres"))
            .uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]),
    );
    wait_listening(port, "postgres").await;
    // Listening comes before "ready to accept connections": wait for the probe to agree.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = run(postgres(port, None)).await;
        if out.passed || tokio::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason.starts_with("accepting connections in "),
        "{}",
        out.reason
    );

    let out = run(postgres(port, Some(Secret::Inline("pgs3cret".to_owned())))).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason.starts_with("SELECT 1 returned 1 in "),
        "{}",
        out.reason
    );
    let out = run(postgres(port, Some(Secret::File(pwfile.clone())))).await;
    assert!(out.passed, "{out:?}");

    let out = run(postgres(port, Some(Secret::Inline("wrong".to_owned())))).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!(
            "postgres 127.0.0.1:{port}: authentication failed: FATAL: password authentication failed for user \"postgres\" (28P01)"
        )
    );

    server.stop();
    let out = run(postgres(port, None)).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("postgres 127.0.0.1:{port}: connection refused")
    );
}

// ---------------------------------------------------------------------------------------
// TLS: the same three servers with their own TLS listeners and a private CA.

/// A private CA, a server certificate for 127.0.0.1 and a client certificate, as PEM
/// files in `dir` (readable by `owner`, for postgres, which insists on a 0600 key).
struct TlsFiles {
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
}

fn tls_files(dir: &Path, owner: Option<(u32, u32)>) -> TlsFiles {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Vigil Test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (cert, key) = leaf(
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        "localhost",
    );
    let (client_cert, client_key) = leaf(Vec::new(), "vigil");
    let write = |name: &str, text: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        }
        path
    };
    TlsFiles {
        ca: write("ca.pem", &ca.pem(), 0o644),
        cert: write("server.pem", &cert, 0o644),
        key: write("server.key", &key, 0o600),
        client_cert: write("client.pem", &client_cert, 0o644),
        client_key: write("client.key", &client_key, 0o600),
    }
}

fn trusting(files: &TlsFiles, client: bool) -> vigil_checks::model::TlsOptions {
    vigil_checks::model::TlsOptions {
        ca_file: Some(files.ca.clone()),
        insecure: false,
        client_cert: client.then(|| vigil_checks::model::ClientCert {
            cert: files.client_cert.clone(),
            key: files.client_key.clone(),
        }),
    }
}

fn untrusting() -> vigil_checks::model::TlsOptions {
    vigil_checks::model::TlsOptions {
        ca_file: None,
        insecure: false,
        client_cert: None,
    }
}

#[tokio::test]
async fn redis_over_tls_with_and_without_client_certificates() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = tls_files(dir.path(), None);
    let start_tls = |auth_clients: &str| {
        let port = free_port();
        let mut cmd = command("redis-server");
        cmd.args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--tls-cert-file")
            .arg(&files.cert)
            .arg("--tls-key-file")
            .arg(&files.key)
            .arg("--tls-ca-cert-file")
            .arg(&files.ca)
            .args(["--tls-auth-clients", auth_clients]);
        (start(&mut cmd), port)
    };
    let with_tls = |port: u16, tls| {
        let CheckKind::Redis(mut check) = redis(port, None, None) else {
            unreachable!()
        };
        check.tls = Some(tls);
        CheckKind::Redis(check)
    };
    let (_server, port) = start_tls("no");
    wait_listening(port, "redis-server (tls)").await;
    let out = run(with_tls(port, trusting(&files, false))).await;
    assert!(out.passed, "{out:?}");
    assert!(out.reason.starts_with("PONG in "), "{}", out.reason);
    // The server's CA is not in the system store: a clear certificate failure.
    let out = run(with_tls(port, untrusting())).await;
    assert!(!out.passed);
    assert!(
        out.reason.to_lowercase().contains("certificate"),
        "{}",
        out.reason
    );
    // Plain RESP against a TLS port is not a PONG.
    let out = run(redis(port, None, None)).await;
    assert!(!out.passed, "{out:?}");

    // Mutual TLS: the client certificate is required and presented.
    let (_mtls, mport) = start_tls("yes");
    wait_listening(mport, "redis-server (mtls)").await;
    let out = run(with_tls(mport, trusting(&files, true))).await;
    assert!(out.passed, "{out:?}");
    let out = run(with_tls(mport, trusting(&files, false))).await;
    assert!(!out.passed, "{out:?}");
}

#[tokio::test]
async fn mqtt_over_tls_against_mosquitto() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = tls_files(dir.path(), None);
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\npersistence false\nuser root\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n",
            files.ca.display(),
            files.cert.display(),
            files.key.display()
        ),
    )
    .unwrap();
    let _server = start(command("mosquitto").arg("-c").arg(&conf));
    wait_listening(port, "mosquitto (tls)").await;
    let with_tls = |tls| {
        let CheckKind::Mqtt(mut check) = mqtt(port, None, None) else {
            unreachable!()
        };
        check.tls = Some(tls);
        CheckKind::Mqtt(check)
    };
    let out = run(with_tls(trusting(&files, false))).await;
    assert!(out.passed, "{out:?}");
    assert!(
        out.reason.starts_with("CONNACK accepted in "),
        "{}",
        out.reason
    );
    let out = run(with_tls(untrusting())).await;
    assert!(!out.passed);
    assert!(
        out.reason.to_lowercase().contains("certificate"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn postgres_over_tls() {
    if !enabled() {
        return;
    }
    let (uid, gid) = postgres_ids();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    let files = tls_files(dir.path(), Some((uid, gid)));
    let data = dir.path().join("data");
    setup(
        command(&format!("{PG_BIN}/initdb"))
            .uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync"]),
    );
    let port = free_port();
    let _server = start(
        command(&format!("{PG_BIN}/postgres"))
            .uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", files.cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", files.key.display())),
    );
    wait_listening(port, "postgres (ssl)").await;
    let with_tls = |tls| {
        let CheckKind::Postgres(mut check) = postgres(port, None) else {
            unreachable!()
        };
        check.tls = Some(tls);
        CheckKind::Postgres(check)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = run(with_tls(trusting(&files, false))).await;
        if out.passed || tokio::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(out.passed, "{out:?}");
    let out = run(with_tls(untrusting())).await;
    assert!(!out.passed);
    assert!(
        out.reason.to_lowercase().contains("certificate"),
        "{}",
        out.reason
    );
}
