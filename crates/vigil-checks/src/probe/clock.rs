//! `kind = "clock"`: the local clock's offset against SNTP servers (RFC 4330).
//!
//! Owns: one mode-3 request per server (all servers concurrently), validating the answers
//! (mode, stratum, kiss-o'-death, leap indicator, echoed originate timestamp), choosing the
//! answer with the lowest round-trip delay and the warn/critical verdict. Must not: adjust
//! the clock, or read the wall clock outside [`wall_now`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Probed, host_port};
use crate::model::ClockCheck;

/// Seconds between 1900-01-01 (NTP era 0) and 1970-01-01.
const NTP_UNIX_OFFSET: f64 = 2_208_988_800.0;

pub(super) fn label(check: &ClockCheck) -> String {
    let servers: Vec<String> = check
        .servers
        .iter()
        .map(|(h, p)| host_port(h, *p))
        .collect();
    format!("clock {}", servers.join(", "))
}

/// The wall clock as Unix seconds: the very thing this probe measures.
#[expect(
    clippy::disallowed_methods,
    reason = "the clock probe compares the wall clock with NTP servers"
)]
fn wall_now() -> f64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[derive(Clone, Debug)]
struct Sample {
    server: String,
    offset: f64,
    delay: f64,
}

pub(super) async fn probe(check: &ClockCheck, timeout: Duration) -> Result<Probed, String> {
    let label = label(check);
    if check.servers.is_empty() {
        return Err(format!("{label}: no servers configured"));
    }
    // Each server gets most of the attempt's deadline, so one silent server still leaves
    // time to report the others.
    let per_server = timeout.mul_f64(0.8);
    let mut tasks = JoinSet::new();
    for (i, (host, port)) in check.servers.iter().enumerate() {
        let (host, port) = (host.clone(), *port);
        tasks.spawn(async move {
            let name = host_port(&host, port);
            let result = match tokio::time::timeout(per_server, query(&host, port)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {}", exact(per_server))),
            };
            (i, name, result)
        });
    }
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((_, name, Ok((offset, delay)))) => samples.push(Sample {
                server: name,
                offset,
                delay,
            }),
            Ok((i, name, Err(why))) => failures.push((i, format!("{name}: {why}"))),
            Err(e) => failures.push((usize::MAX, format!("query task failed: {e}"))),
        }
    }
    failures.sort();
    let Some(best) = samples
        .into_iter()
        .min_by(|a, b| a.delay.total_cmp(&b.delay))
    else {
        let why: Vec<String> = failures.into_iter().map(|(_, w)| w).collect();
        return Err(format!("clock: {}", why.join("; ")));
    };
    let abs = best.offset.abs();
    let seen = format!(
        "clock offset {:+.3}s against {} (delay {}ms)",
        best.offset,
        best.server,
        (best.delay * 1000.0).round()
    );
    let warn = check.warn.as_secs_f64();
    let critical = check.critical.as_secs_f64();
    if abs > critical {
        Err(format!(
            "{seen}, critical above {}",
            vigil_core::format_duration(check.critical)
        ))
    } else if abs > warn {
        Ok(Probed {
            reason: format!(
                "{seen}, warn above {}",
                vigil_core::format_duration(check.warn)
            ),
            warning: true,
        })
    } else {
        Ok(Probed {
            reason: seen,
            warning: false,
        })
    }
}

/// A wait as long as it really was: `400ms`, `1.6s`, `2s` (`format_duration` rounds up to
/// whole seconds, which made a 1.6 s wait read "within 2s").
fn exact(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        let secs = format!("{:.3}", d.as_secs_f64());
        format!("{}s", secs.trim_end_matches('0'))
    }
}

/// One server: `(offset, delay)` in seconds, or why not.
async fn query(host: &str, port: u16) -> Result<(f64, f64), String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolved to no address"))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| super::describe_io(&e))?;
    let mut request = [0u8; 48];
    request[0] = 0x23; // LI 0, version 4, mode 3 (client)
    let t1 = wall_now();
    let sent = Instant::now();
    let t1_wire = to_ntp(t1);
    request[40..48].copy_from_slice(&t1_wire);
    socket
        .send(&request)
        .await
        .map_err(|e| format!("sending: {}", super::describe_io(&e)))?;
    let mut buf = [0u8; 512];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| super::describe_io(&e))?;
        // The receive time, on the same (wall) timescale as t1 but measured monotonically.
        let t4 = t1 + sent.elapsed().as_secs_f64();
        let packet = &buf[..n];
        if n >= 48 && packet[24..32] != t1_wire {
            // Not the answer to this request (a late reply to an earlier one): keep waiting.
            continue;
        }
        return parse(packet, t1, t4);
    }
}

/// Validates an answer and computes `(offset, delay)`.
fn parse(packet: &[u8], t1: f64, t4: f64) -> Result<(f64, f64), String> {
    if packet.len() < 48 {
        return Err(format!(
            "server answered garbage ({} bytes, expected at least 48)",
            packet.len()
        ));
    }
    let leap = packet[0] >> 6;
    let mode = packet[0] & 0x7;
    let stratum = packet[1];
    if mode != 4 {
        return Err(format!("server answered garbage (mode {mode}, expected 4)"));
    }
    if stratum == 0 {
        let code: String = packet[12..16]
            .iter()
            .filter(|b| b.is_ascii_graphic())
            .map(|&b| char::from(b))
            .collect();
        return Err(format!("server sent kiss-o'-death {code:?}"));
    }
    if leap == 3 || stratum > 15 {
        return Err(format!(
            "server is not synchronized (leap indicator {leap}, stratum {stratum})"
        ));
    }
    let t2 = from_ntp(&packet[32..40]);
    let t3 = from_ntp(&packet[40..48]);
    let (Some(t2), Some(t3)) = (t2, t3) else {
        return Err("server answered garbage (zero timestamps)".to_owned());
    };
    let offset = ((t2 - t1) + (t3 - t4)) / 2.0;
    let delay = ((t4 - t1) - (t3 - t2)).max(0.0);
    Ok((offset, delay))
}

/// Unix seconds → NTP 64-bit timestamp.
fn to_ntp(unix: f64) -> [u8; 8] {
    let ntp = unix + NTP_UNIX_OFFSET;
    let secs = ntp.floor();
    let frac = ((ntp - secs) * 4_294_967_296.0) as u64;
    // Era 1 (from 2036) wraps the seconds field.
    let secs = (secs as u64) & 0xffff_ffff;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(secs as u32).to_be_bytes());
    out[4..].copy_from_slice(&(frac.min(0xffff_ffff) as u32).to_be_bytes());
    out
}

/// NTP 64-bit timestamp → Unix seconds; `None` for the all-zero "unknown" timestamp.
fn from_ntp(bytes: &[u8]) -> Option<f64> {
    let secs = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let frac = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
    if secs == 0 && frac == 0 {
        return None;
    }
    // Seconds below 2^31 are read as era 1 (2036-2104).
    let secs = if secs < 0x8000_0000 {
        f64::from(secs) + 4_294_967_296.0
    } else {
        f64::from(secs)
    };
    Some(secs - NTP_UNIX_OFFSET + f64::from(frac) / 4_294_967_296.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(t2: f64, t3: f64) -> [u8; 48] {
        let mut p = [0u8; 48];
        p[0] = 0x24;
        p[1] = 2;
        p[32..40].copy_from_slice(&to_ntp(t2));
        p[40..48].copy_from_slice(&to_ntp(t3));
        p
    }

    #[test]
    fn waits_are_said_as_they_are() {
        assert_eq!(exact(Duration::from_millis(400)), "400ms");
        assert_eq!(exact(Duration::from_millis(1600)), "1.6s");
        assert_eq!(exact(Duration::from_millis(1250)), "1.25s");
        assert_eq!(exact(Duration::from_secs(2)), "2s");
        assert_eq!(exact(Duration::from_secs(4).mul_f64(0.8)), "3.2s");
    }

    #[test]
    fn timestamps_round_trip() {
        let t = 1_780_000_000.25;
        let back = from_ntp(&to_ntp(t)).unwrap_or_default();
        assert!((back - t).abs() < 1e-6, "{back}");
    }

    #[test]
    fn offset_and_delay() {
        let (offset, delay) = parse(&answer(1005.0, 1005.0), 1000.0, 1000.2).unwrap_or_default();
        assert!((offset - 4.9).abs() < 1e-6, "{offset}");
        assert!((delay - 0.2).abs() < 1e-6, "{delay}");
    }

    #[test]
    fn bad_answers_are_refused() {
        assert!(
            parse(&[0u8; 10], 0.0, 0.0)
                .unwrap_err()
                .contains("garbage (10 bytes")
        );
        let mut kod = answer(1.0, 1.0);
        kod[1] = 0;
        kod[12..16].copy_from_slice(b"RATE");
        assert_eq!(
            parse(&kod, 0.0, 0.0).unwrap_err(),
            "server sent kiss-o'-death \"RATE\""
        );
        let mut unsync = answer(1.0, 1.0);
        unsync[0] = 0xe4;
        assert!(
            parse(&unsync, 0.0, 0.0)
                .unwrap_err()
                .contains("not synchronized")
        );
        let mut client = answer(1.0, 1.0);
        client[0] = 0x23;
        assert!(parse(&client, 0.0, 0.0).unwrap_err().contains("mode 3"));
    }
}
