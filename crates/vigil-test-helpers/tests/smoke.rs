//! Each helper program runs and does what its tests elsewhere rely on. Building this test
//! also makes `cargo test --workspace` build the helpers for other crates' tests.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vigil_test_helpers::{
    FLAKY_HTTP, HelperProcess, RESTART_RECORDER, SLEEPER, helper_bin, wait_for,
};

const DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn helper_bin_finds_every_helper_cargo_built() {
    for (name, built) in [
        (FLAKY_HTTP, env!("CARGO_BIN_EXE_vigil-flaky-http")),
        (
            RESTART_RECORDER,
            env!("CARGO_BIN_EXE_vigil-restart-recorder"),
        ),
        (SLEEPER, env!("CARGO_BIN_EXE_vigil-sleeper")),
    ] {
        let found = helper_bin(name).canonicalize().unwrap();
        assert_eq!(
            found,
            PathBuf::from(built).canonicalize().unwrap(),
            "{name}"
        );
    }
}

fn get(port: u16, method: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "{method} /anything HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn flaky_http_serves_the_status_from_its_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let status_file = dir.path().join("status");
    let mut server = HelperProcess::spawn(
        FLAKY_HTTP,
        &[
            "--port",
            "0",
            "--port-file",
            port_file.to_str().unwrap(),
            "--status-file",
            status_file.to_str().unwrap(),
        ],
    );
    wait_for("the port file exists", DEADLINE, || port_file.exists());
    let port: u16 = std::fs::read_to_string(&port_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(port, 0);

    let response = get(port, "GET");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("Content-Length: 3\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nok\n"), "{response}");

    write_atomically(&status_file, "503\n");
    let response = get(port, "GET");
    assert!(
        response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{response}"
    );
    assert!(response.ends_with("\r\n\r\nfail\n"), "{response}");

    let response = get(port, "HEAD");
    assert!(response.starts_with("HTTP/1.1 503 "), "{response}");
    assert!(
        response.ends_with("\r\n\r\n"),
        "HEAD has no body: {response}"
    );

    write_atomically(&status_file, "garbage");
    assert!(get(port, "GET").starts_with("HTTP/1.1 500 "));

    server.signal(libc::SIGTERM);
    let status = server.wait_exit(DEADLINE);
    assert_eq!(status.signal(), Some(libc::SIGTERM));
}

#[test]
fn restart_recorder_logs_start_and_end_and_exits_with_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("restarts.log");
    let log_arg = log.to_str().unwrap();
    let mut first = HelperProcess::spawn(RESTART_RECORDER, &["--log", log_arg, "--hold-ms", "50"]);
    assert_eq!(first.wait_exit(DEADLINE).code(), Some(0));
    let mut second = HelperProcess::spawn(
        RESTART_RECORDER,
        &["--log", log_arg, "--hold-ms", "50", "--exit", "3"],
    );
    assert_eq!(second.wait_exit(DEADLINE).code(), Some(3));

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 4, "{text}");
    let expected_pids = [first.pid(), first.pid(), second.pid(), second.pid()];
    let mut last_ns = 0u128;
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line.len(), 4, "{text}");
        // Run outside Vigil: no restart id.
        assert_eq!(line[3], "-", "{text}");
        assert_eq!(line[0], if i % 2 == 0 { "start" } else { "end" });
        assert_eq!(line[1].parse::<u32>().unwrap(), expected_pids[i]);
        let ns: u128 = line[2].parse().unwrap();
        assert!(ns >= last_ns, "timestamps never go backwards: {text}");
        if i % 2 == 1 {
            assert!(ns - last_ns >= 50_000_000, "held at least 50ms: {text}");
        }
        last_ns = ns;
    }
}

#[test]
fn restart_recorder_rejects_bad_arguments() {
    let mut bad = HelperProcess::spawn(RESTART_RECORDER, &["--hold-ms", "5"]);
    assert_eq!(bad.wait_exit(DEADLINE).code(), Some(2));
}

/// Whether `pid` ignores SIGTERM, from the `SigIgn` mask in /proc.
fn ignores_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (libc::SIGTERM - 1)) != 0
}

#[test]
fn sleeper_prints_its_pid_and_dies_on_sigterm() {
    let mut sleeper = HelperProcess::spawn(SLEEPER, &[]);
    assert_eq!(sleeper.read_line(), sleeper.pid().to_string());
    assert!(sleeper.is_running());
    assert!(!ignores_sigterm(sleeper.pid()));
    sleeper.signal(libc::SIGTERM);
    assert_eq!(sleeper.wait_exit(DEADLINE).signal(), Some(libc::SIGTERM));
}

#[test]
fn sleeper_can_ignore_sigterm() {
    let mut sleeper = HelperProcess::spawn(SLEEPER, &["--ignore-term"]);
    // The pid is printed only after SIGTERM is ignored.
    assert_eq!(sleeper.read_line(), sleeper.pid().to_string());
    assert!(ignores_sigterm(sleeper.pid()));
    sleeper.signal(libc::SIGTERM);
    sleeper.signal(libc::SIGKILL);
    assert_eq!(sleeper.wait_exit(DEADLINE).signal(), Some(libc::SIGKILL));
}
