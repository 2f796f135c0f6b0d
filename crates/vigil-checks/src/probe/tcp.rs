//! `kind = "tcp"`: a TCP connect to `host:port` succeeds.
//!
//! Owns: resolving the host and trying each address in turn. Must not: send anything on
//! the connection; it is closed as soon as it is established.
//!
//! Cost (issue 17): see [`connect`].

use std::io;
use std::net::SocketAddr;

use rustix::event::PollFlags;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use tokio::time::Instant;

use super::{Verdict, describe_io, host_port, latency};
use crate::model::TcpCheck;

pub(super) fn label(check: &TcpCheck) -> String {
    format!("tcp {}", host_port(&check.host, check.port))
}

pub(super) async fn probe(check: &TcpCheck) -> Verdict {
    let started = Instant::now();
    let label = label(check);
    let host = check.host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, check.port))
        .await
        .map_err(|e| format!("{label}: cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{label}: {host} resolved to no address"));
    }
    let mut failures = Vec::new();
    for addr in &addrs {
        match connect(addr).await {
            Ok(()) => {
                return Ok(format!(
                    "connected to {addr} in {}",
                    latency(started.elapsed())
                ));
            }
            Err(err) => failures.push((addr, describe_io(&err))),
        }
    }
    let seen = match failures.as_slice() {
        [(_, only)] => only.clone(),
        many => many
            .iter()
            .map(|(addr, why)| format!("{addr} {why}"))
            .collect::<Vec<_>>()
            .join("; "),
    };
    Err(format!("{label}: {seen}"))
}

/// Connects to `addr` and closes the connection. A non-blocking `connect` to a loopback
/// or nearby listener has usually finished the handshake by the time it returns
/// (`EINPROGRESS` only because the answer was processed on the way out), so one `poll`
/// with no wait settles it without registering the socket with the runtime: that
/// registration, its wake-up and its removal were 3 of the 8 system calls of a run.
/// A connection still in progress is awaited through the runtime, as before, with the
/// same errors (`SO_ERROR` once writable).
async fn connect(addr: &SocketAddr) -> io::Result<()> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, addr) {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    if !super::ready_now(&fd, PollFlags::OUT)?.is_empty() {
        return rustix::net::sockopt::socket_error(&fd)?.map_err(io::Error::from);
    }
    let stream = tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd))?;
    stream.writable().await?;
    match stream.take_error()? {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
