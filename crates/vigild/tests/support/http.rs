//! Raw HTTP/1.1 over TCP for the listener's tests: requests written by hand, as a browser
//! or an attacker would, and answers read off the wire.

#![allow(clippy::unwrap_used)] // A panic is a test failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use std::process::Stdio;

use super::{Daemon, Env, command, instant_now, text, vigil_bin};

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", text(&self.body)))
    }

    /// The documented error shape: `{"error": "..."}` and nothing else.
    pub fn error(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let doc = self.json();
        assert_eq!(doc.as_object().unwrap().len(), 1, "{doc}");
        let message = doc["error"].as_str().unwrap().to_owned();
        assert!(!message.is_empty(), "{doc}");
        message
    }

    /// No answer over TCP ever lets another origin's page read it.
    pub fn assert_no_cors(&self) {
        for (name, _) in &self.headers {
            assert!(
                !name.to_ascii_lowercase().starts_with("access-control-"),
                "a CORS header in {self:?}"
            );
        }
    }
}

/// Reads one response (head, then `content-length` bytes of body) within `limit`.
pub fn read_answer(stream: &mut impl Read, limit: Duration) -> Answer {
    let deadline = instant_now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(instant_now() < deadline, "no answer in {limit:?}");
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before a complete answer: {:?}", text(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = text(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed in the middle of the body");
        body.extend_from_slice(&chunk[..n]);
    }
    Answer {
        status,
        headers,
        body,
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// `METHOD TARGET` with `headers` (each `Name: value`), on a fresh connection.
pub fn ask(addr: SocketAddr, method: &str, target: &str, headers: &[&str]) -> Answer {
    let mut stream = connect(addr);
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let answer = read_answer(&mut stream, Duration::from_secs(30));
    answer.assert_no_cors();
    answer
}

/// `vigil run` with the connection timeouts shortened to `timeouts` (header, idle; ms).
pub fn start(env: &Env, timeouts: Option<(u64, u64)>) -> (Daemon, SocketAddr) {
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
    let log = daemon.wait_log("vigil running", Duration::from_secs(20));
    (daemon, listening_addr(&log))
}

/// The address from the daemon's `http listener on http://ADDR` line.
pub fn listening_addr(log: &str) -> SocketAddr {
    let line = log
        .lines()
        .find(|l| l.contains("http listener on "))
        .unwrap_or_else(|| panic!("no listener line in:\n{log}"));
    let rest = line.split("://").nth(1).unwrap();
    rest.split_whitespace().next().unwrap().parse().unwrap()
}
