//! One probe of one check: look once, report a [`ProbeOutcome`].
//!
//! Owns: dispatching a [`CheckKind`] to its probe, the per-attempt deadline, and the shape
//! of reasons (`<what>: expected ..., got ...`). Must not: retry (see `runner`), keep state
//! between attempts, panic, or return errors: every failure is `passed = false` with a
//! one-line reason.

mod cached_fs;
mod clock;
pub mod docker;
mod exec;
pub mod file_age;
mod http;
pub(crate) mod http1;
pub mod interface;
mod kept_netlink;
pub mod listening;
pub mod log;
mod mqtt;
mod postgres;
pub mod process;
mod redis;
pub mod sockets;
pub mod systemd;
mod tcp;
mod tls;
mod tls_cert;
mod websocket;

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use tokio::time::Instant;
use vigil_core::format_duration;

use crate::context::ProbeContext;
use crate::model::CheckKind;

/// The result of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub passed: bool,
    /// One line: what was expected and what was seen (`200 OK in 3ms`,
    /// `tcp 127.0.0.1:5432: connection refused`).
    pub reason: String,
    pub elapsed: Duration,
    /// Passed, but above a warning threshold (`clock`, `tls_cert`): the run is `warn`.
    /// Always false when `passed` is false.
    pub warning: bool,
    /// `file_age` only: the file's age when the probe looked (zero for an mtime in the
    /// future), or `None` when it was not known (missing, unreadable, not known in time).
    /// The daemon sets the next run's interval from it (`file_age::next_interval`)
    /// instead of looking the file up a second time.
    pub file_age: Option<Duration>,
}

/// A pass that may carry a warning (`clock`, `tls_cert`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Probed {
    pub reason: String,
    pub warning: bool,
}

/// Probes once, within `timeout`. Never panics, never fails: problems are failed outcomes.
///
/// Cancellation-safe: dropping the future abandons the probe (and kills an exec probe's
/// process group).
pub async fn probe(kind: &CheckKind, timeout: Duration, cx: &ProbeContext) -> ProbeOutcome {
    let started = Instant::now();
    let mut warning = false;
    let mut age = None;
    let mut warned = |p: Probed| {
        warning = p.warning;
        p.reason
    };
    let result = match kind {
        // The process runner enforces its own deadline so it can kill the group and say so.
        CheckKind::Exec(check) => exec::probe(check, timeout).await,
        CheckKind::Http(check) => {
            with_deadline(|| http::label(check), timeout, http::probe(check, cx)).await
        }
        CheckKind::Tcp(check) => {
            with_deadline(|| tcp::label(check), timeout, tcp::probe(check)).await
        }
        CheckKind::Listening(check) => {
            with_deadline(|| listening::label(check), timeout, listening::probe(check)).await
        }
        CheckKind::Sockets(check) => {
            with_deadline(|| sockets::label(check), timeout, sockets::probe(check)).await
        }
        CheckKind::WebSocket(check) => {
            with_deadline(|| websocket::label(check), timeout, websocket::probe(check)).await
        }
        CheckKind::TlsCert(check) => {
            with_deadline(|| tls_cert::label(check), timeout, tls_cert::probe(check))
                .await
                .map(&mut warned)
        }
        CheckKind::Clock(check) => with_deadline(
            || clock::label(check),
            timeout,
            clock::probe(check, timeout),
        )
        .await
        .map(&mut warned),
        CheckKind::Redis(check) => {
            with_deadline(|| redis::label(check), timeout, redis::probe(check)).await
        }
        CheckKind::Postgres(check) => {
            with_deadline(|| postgres::label(check), timeout, postgres::probe(check)).await
        }
        CheckKind::Mqtt(check) => {
            with_deadline(|| mqtt::label(check), timeout, mqtt::probe(check)).await
        }
        CheckKind::Interface(check) => {
            with_deadline(|| interface::label(check), timeout, interface::probe(check)).await
        }
        CheckKind::FileAge(check) => {
            with_deadline(
                || file_age::label(check),
                timeout,
                file_age::probe(check, &mut age),
            )
            .await
        }
        CheckKind::Process(check) => {
            with_deadline(
                || process::label(check),
                timeout,
                process::probe(check, timeout),
            )
            .await
        }
        CheckKind::Log(check) => {
            with_deadline(|| log::label(check), timeout, log::probe(check)).await
        }
        CheckKind::Docker(check) => {
            with_deadline(|| docker::label(check), timeout, docker::probe(check)).await
        }
        CheckKind::Systemd(check) => {
            with_deadline(|| systemd::label(check), timeout, systemd::probe(check, cx)).await
        }
        // The config refuses kinds this build does not implement (`schema::CHECK_KINDS`),
        // so this arm is only reachable through a hand-built spec.
        other => Err(format!(
            "check kind `{}` is not available in this build",
            other.as_str()
        )),
    };
    let elapsed = started.elapsed();
    match result {
        Ok(reason) => ProbeOutcome {
            passed: true,
            reason,
            elapsed,
            warning,
            file_age: age,
        },
        Err(reason) => ProbeOutcome {
            passed: false,
            reason,
            elapsed,
            warning: false,
            file_age: age,
        },
    }
}

/// `Ok(pass reason)` or `Err(fail reason)`; both complete one-line reasons.
type Verdict = Result<String, String>;

/// `label` is called only when the deadline passes: formatting it on every run cost more
/// than some probes do.
async fn with_deadline<T>(
    label: impl FnOnce() -> String,
    timeout: Duration,
    fut: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(verdict) => verdict,
        Err(_) => Err(format!(
            "{}: timed out after {}",
            label(),
            format_duration(timeout)
        )),
    }
}

/// The events `fd` has ready right now, from one `poll` that does not wait: how a probe
/// settles, without the runtime, what the kernel has usually finished already (a loopback
/// connect, a change to the mount table).
pub(crate) fn ready_now(
    fd: impl rustix::fd::AsFd,
    events: rustix::event::PollFlags,
) -> io::Result<rustix::event::PollFlags> {
    let mut fds = [rustix::event::PollFd::new(&fd, events)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero))?;
    Ok(fds[0].revents())
}

/// A latency for humans: `0ms`, `3ms`, `1.25s`.
pub(crate) fn latency(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        let secs = d.as_secs_f64();
        format!("{secs:.2}s")
    }
}

/// The first line of `bytes`, lossily decoded and cut to `max` characters.
pub(crate) fn first_line(bytes: &[u8], max: usize) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max {
        out.push('…');
    }
    Some(out)
}

/// A short description of a socket-level error (`connection refused`), falling back to
/// the OS message.
pub(crate) fn describe_io(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".to_owned(),
        io::ErrorKind::ConnectionAborted => "connection aborted".to_owned(),
        io::ErrorKind::TimedOut => "timed out".to_owned(),
        io::ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        io::ErrorKind::UnexpectedEof => "connection closed early".to_owned(),
        _ => err.to_string(),
    }
}

/// Every error in `err`'s source chain, outermost first. Looks inside `io::Error`s too,
/// whose `source()` skips the error they wrap (that is where rustls errors hide).
pub(crate) fn causes<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
        if out.len() > 32 {
            break;
        }
    }
    out
}

/// The error and its causes joined with `: `, skipping repeats.
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in causes(err) {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// `host:port`, bracketing IPv6 literals.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The rustls client config (ring provider) the checks use, for other TLS clients of
/// Vigil (the fleet's PostgreSQL connection): the platform's roots plus `ca_file`.
pub async fn tls_client_config(
    ca_file: Option<&std::path::Path>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    tls::client_config(&crate::model::TlsOptions {
        ca_file: ca_file.map(std::path::Path::to_path_buf),
        insecure: false,
        client_cert: None,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_short() {
        assert_eq!(latency(Duration::from_micros(300)), "0ms");
        assert_eq!(latency(Duration::from_millis(42)), "42ms");
        assert_eq!(latency(Duration::from_millis(1250)), "1.25s");
    }

    #[test]
    fn first_line_skips_blank_lines_and_truncates() {
        assert_eq!(
            first_line(b"\n  boom: bad\nmore", 100).as_deref(),
            Some("boom: bad")
        );
        assert_eq!(first_line(b"abcdef", 3).as_deref(), Some("abc…"));
        assert_eq!(first_line(b"\n \n", 10), None);
    }

    #[test]
    fn causes_look_inside_io_errors() {
        #[derive(Debug, thiserror::Error)]
        #[error("inner problem")]
        struct Inner;
        let io = io::Error::new(io::ErrorKind::InvalidData, Inner);
        let found = causes(&io);
        assert_eq!(found.len(), 2);
        assert!(found[1].downcast_ref::<Inner>().is_some());
        assert_eq!(error_chain(&io), "inner problem");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_port("::1", 80), "[::1]:80");
        assert_eq!(host_port("example.org", 80), "example.org:80");
    }
}
