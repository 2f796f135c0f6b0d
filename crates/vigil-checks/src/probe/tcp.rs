//! `kind = "tcp"`: a TCP connect to `host:port` succeeds.
//!
//! Owns: resolving the host and trying each address in turn. Must not: send anything on
//! the connection; it is closed as soon as it is established.

use std::net::SocketAddr;

use tokio::net::TcpStream;
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
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                drop(stream);
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
