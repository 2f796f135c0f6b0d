//! The control socket keeps its documented contract against clients that do not: every
//! error answer is `{"error": "..."}` with its status code, a request body is refused,
//! idle and half-sent connections are closed, and the number of connections is bounded.
//! Requests are written by hand on a raw unix socket, as an attacker would.

#![allow(clippy::unwrap_used)] // A panic is a test failure.

mod support;

use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use support::http::Answer;
use support::*;
use vigild::control::server::MAX_CONNECTIONS;

fn config(env: &Env) {
    env.write_config(
        r#"[services.svc]
driver = "command"
restart_command = ["true"]

[services.svc.checks.beat]
kind = "heartbeat"
ttl = "1h"
on_failure = "alert"
"#,
    );
}

fn socket(env: &Env) -> PathBuf {
    env.state_dir().join("vigil.sock")
}

/// `vigil run`, with the control socket's header and idle timeouts shortened to
/// `timeouts` (milliseconds) when given.
fn start(env: &Env, timeouts: Option<(u64, u64)>) -> Daemon {
    let log = env.path("daemon.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = command(vigil_bin());
    cmd.arg("run").arg("-c").arg(env.config_path());
    if let Some((header, idle)) = timeouts {
        cmd.env("__VIGIL_TEST_CONTROL_TIMEOUTS", format!("{header},{idle}"));
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
    let daemon = Daemon {
        child: cmd.spawn().unwrap(),
        log,
    };
    daemon.wait_log("vigil running", Duration::from_secs(20));
    daemon
}

fn connect(env: &Env) -> UnixStream {
    UnixStream::connect(socket(env)).unwrap()
}

/// Reads one response within `limit` (the socket's read timeout bounds each read).
fn read_answer(stream: &mut UnixStream, limit: Duration) -> Answer {
    stream.set_read_timeout(Some(limit)).unwrap();
    support::http::read_answer(stream, limit)
}

/// Sends `request` as is and reads the answer.
fn ask(env: &Env, request: &str) -> Answer {
    let mut stream = connect(env);
    stream.write_all(request.as_bytes()).unwrap();
    read_answer(&mut stream, Duration::from_secs(30))
}

fn get(env: &Env, target: &str) -> Answer {
    ask(
        env,
        &format!("GET {target} HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n"),
    )
}

fn post(env: &Env, target: &str) -> Answer {
    ask(
        env,
        &format!("POST {target} HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n"),
    )
}

/// Waits, at most `limit`, for the daemon to close `stream` (reading and discarding what
/// it still sends); how long that took.
fn closed_within(stream: &mut UnixStream, limit: Duration) -> Duration {
    let started = instant_now();
    let mut chunk = [0u8; 8192];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "the connection is still open after {limit:?}"
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return started.elapsed(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the connection is still open after {limit:?}")
            }
            Err(e) => panic!("reading: {e}"),
        }
    }
}

#[test]
fn every_error_answer_is_json_with_its_status() {
    let env = Env::new();
    config(&env);
    let _daemon = start(&env, None);

    let bad_force = post(&env, "/v1/services/svc/restart?force=maybe");
    assert_eq!(bad_force.status, 400, "{bad_force:?}");
    assert!(bad_force.error().contains("force"), "{bad_force:?}");

    let huge_since = get(&env, "/v1/history?since=99999999999999999999");
    assert_eq!(huge_since.status, 400, "{huge_since:?}");
    assert!(huge_since.error().contains("since"), "{huge_since:?}");

    let bad_name = post(&env, "/v1/services/%ff/restart");
    assert_eq!(bad_name.status, 400, "{bad_name:?}");
    assert!(bad_name.error().contains("UTF-8"), "{bad_name:?}");

    let bad_format = get(&env, "/v1/status?format=xml");
    assert_eq!(bad_format.status, 400, "{bad_format:?}");
    bad_format.error();

    let wrong_method = get(&env, "/v1/services/svc/restart");
    assert_eq!(wrong_method.status, 405, "{wrong_method:?}");
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    assert!(wrong_method.error().contains("GET"), "{wrong_method:?}");
    let wrong_method = post(&env, "/v1/status");
    assert_eq!(wrong_method.status, 405, "{wrong_method:?}");
    wrong_method.error();

    // Unknown services are 404 on every read, like on every action.
    for target in [
        "/v1/status?service=nope",
        "/v1/history?service=nope",
        "/v1/history?service=nope&format=text",
    ] {
        let answer = get(&env, target);
        assert_eq!(answer.status, 404, "{target}: {answer:?}");
        assert!(
            answer.error().contains("no service `nope`"),
            "{target}: {answer:?}"
        );
    }
    let unknown = post(&env, "/v1/services/nope/reset");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    unknown.error();
    let no_route = get(&env, "/v2/anything");
    assert_eq!(no_route.status, 404, "{no_route:?}");
    no_route.error();

    // The good answers still are what they were.
    let ok = get(&env, "/v1/history?service=svc&since=0");
    assert_eq!(ok.status, 200, "{ok:?}");
    let doc: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(doc["version"], 1);
}

/// Every endpoint takes its input from the path and query: a body is refused, not ignored
/// (a reset with a body did reset before).
#[test]
fn a_request_body_is_refused() {
    let env = Env::new();
    config(&env);
    let _daemon = start(&env, None);
    let requests = [
        "POST /v1/services/svc/reset HTTP/1.1\r\nHost: vigil\r\nContent-Length: 5\r\n\r\nhello",
        "POST /v1/services/svc/restart HTTP/1.1\r\nHost: vigil\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "GET /v1/status HTTP/1.1\r\nHost: vigil\r\nContent-Length: 2\r\n\r\n{}",
    ];
    for request in requests {
        let mut stream = connect(&env);
        stream.write_all(request.as_bytes()).unwrap();
        let answer = read_answer(&mut stream, Duration::from_secs(30));
        assert_eq!(answer.status, 413, "{request:?}: {answer:?}");
        assert!(
            answer.error().contains("takes no request body"),
            "{answer:?}"
        );
        // The body is not read: the connection is closed after the answer.
        closed_within(&mut stream, Duration::from_secs(10));
    }
    // Nothing was done.
    assert!(env.history().is_empty());
    // An empty body is no body.
    let empty = ask(
        &env,
        "POST /v1/services/svc/reset HTTP/1.1\r\nHost: vigil\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(empty.status, 200, "{empty:?}");
}

/// Header timeout 700 ms, idle timeout 2.5 s: a silent new connection, one sending only
/// blank lines and one stuck in the middle of its request line are closed after the
/// header timeout; a kept-alive connection after its answer only after the idle timeout.
#[test]
fn idle_and_half_sent_connections_are_closed() {
    const HEADER: Duration = Duration::from_millis(700);
    const IDLE: Duration = Duration::from_millis(2500);
    let env = Env::new();
    config(&env);
    let _daemon = start(
        &env,
        Some((HEADER.as_millis() as u64, IDLE.as_millis() as u64)),
    );

    let mut silent = connect(&env);
    let mut blank = connect(&env);
    blank.write_all(b"\r\n\r\n\r\n\r\n").unwrap();
    let mut partial = connect(&env);
    partial.write_all(b"GET /v1/hea").unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(10));
    assert!(
        took >= HEADER - Duration::from_millis(200) && took < IDLE,
        "silent: closed after {took:?}"
    );
    for (what, stream) in [
        ("blank lines", &mut blank),
        ("partial request line", &mut partial),
    ] {
        // Measured from when the wait starts, so a little under HEADER is fine.
        let took = closed_within(stream, Duration::from_secs(10));
        assert!(took < IDLE, "{what}: closed after {took:?}");
    }

    let mut kept = connect(&env);
    kept.write_all(b"GET /v1/health HTTP/1.1\r\nHost: vigil\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut kept, Duration::from_secs(30)).status, 200);
    // Still usable past the header timeout: idle, not half-sent.
    let took = closed_within(&mut kept, Duration::from_secs(30));
    assert!(
        took > HEADER * 2 && took >= IDLE - Duration::from_millis(300),
        "closed after {took:?}"
    );

    // A connection is reusable while it is not idle that long.
    let mut reused = connect(&env);
    for _ in 0..3 {
        reused
            .write_all(b"GET /v1/health HTTP/1.1\r\nHost: vigil\r\n\r\n")
            .unwrap();
        assert_eq!(
            read_answer(&mut reused, Duration::from_secs(30)).status,
            200
        );
    }
}

/// Real timeouts: a new connection that sends nothing is closed after the 10 s header
/// timeout, so a client cannot hold a connection slot by connecting alone.
#[test]
fn a_silent_connection_is_closed_at_the_real_header_timeout() {
    let env = Env::new();
    config(&env);
    let _daemon = start(&env, None);
    let mut silent = connect(&env);
    let took = closed_within(&mut silent, Duration::from_secs(20));
    assert!(took >= Duration::from_secs(9), "closed after {took:?}");
}

/// The connection bound: with MAX_CONNECTIONS connections held open, one more is answered
/// 503 in the documented shape and closed at once; the CLI says so; once the others
/// close, `vigil status` works again.
#[test]
fn connections_are_bounded() {
    let env = Env::new();
    config(&env);
    // Long timeouts, so the held connections stay open however slow the machine is.
    let _daemon = start(&env, Some((120_000, 120_000)));
    let held: Vec<UnixStream> = (0..MAX_CONNECTIONS).map(|_| connect(&env)).collect();

    let mut extra = connect(&env);
    extra
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: vigil\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut extra, Duration::from_secs(10));
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        answer
            .error()
            .contains(&format!("{MAX_CONNECTIONS} control connections")),
        "{answer:?}"
    );
    closed_within(&mut extra, Duration::from_secs(10));

    let out = env.vigil(&["status", "--json"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("control connections"),
        "{}",
        text(&out.stderr)
    );

    drop(held);
    wait_until(
        Duration::from_secs(10),
        "vigil status to work again",
        || {
            env.vigil(&["status", "--json"])
                .status
                .success()
                .then_some(())
        },
    );
}
