//! `kind = "tls_cert"`: days until the certificate served on `host:port` expires.
//!
//! Owns: the handshake with a verifier that accepts any certificate (so expired and
//! self-signed certificates can still be read), parsing the leaf's `notAfter` and the
//! warn/critical verdict. Must not: trust the connection for anything else, or read the
//! wall clock outside [`wall_now`].

use tokio::time::Instant;

use super::{Probed, host_port, latency, tls};
use crate::model::TlsCertCheck;

const DAY: i64 = 86_400;

pub(super) fn label(check: &TlsCertCheck) -> String {
    format!("tls_cert {}", host_port(&check.host, check.port))
}

/// Seconds since the Unix epoch, from the wall clock: certificate dates are wall-clock
/// dates.
#[expect(
    clippy::disallowed_methods,
    reason = "certificate expiry is a wall-clock date; this probe must compare against now"
)]
fn wall_now() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

pub(super) async fn probe(check: &TlsCertCheck) -> Result<Probed, String> {
    let started = Instant::now();
    let label = label(check);
    let name = check.server_name.as_deref().unwrap_or(&check.host);
    let tcp = tls::dial(&check.host, check.port, check.proxy.as_ref())
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    let config = tls::accept_any_config().map_err(|e| format!("{label}: {e}"))?;
    let stream = tls::handshake(tcp, name, config)
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    let (_, conn) = stream.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| format!("{label}: server sent no certificate"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("{label}: cannot parse the server certificate: {e}"))?;
    let not_after = cert.validity().not_after.timestamp();
    let verdict = judge(
        name,
        not_after,
        wall_now(),
        check.warn_days,
        check.critical_days,
    );
    match verdict {
        Judged::Fail(reason) => Err(format!("{label}: {reason}")),
        Judged::Warn(reason) => Ok(Probed {
            reason: format!("{label}: {reason}"),
            warning: true,
        }),
        Judged::Pass(reason) => Ok(Probed {
            reason: format!("{reason} (checked in {})", latency(started.elapsed())),
            warning: false,
        }),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Judged {
    Pass(String),
    Warn(String),
    Fail(String),
}

fn judge(name: &str, not_after: i64, now: i64, warn_days: u32, critical_days: u32) -> Judged {
    let left = not_after.saturating_sub(now);
    let date = rfc3339(not_after);
    if left <= 0 {
        let ago = -left / DAY;
        return Judged::Fail(format!(
            "certificate for {name} expired {} ago ({date})",
            days(ago)
        ));
    }
    // Rounded for display; the comparisons use seconds.
    let shown = days((left + DAY / 2) / DAY);
    if left < i64::from(critical_days) * DAY {
        Judged::Fail(format!(
            "certificate for {name} expires in {shown} ({date}), critical below {critical_days}"
        ))
    } else if left < i64::from(warn_days) * DAY {
        Judged::Warn(format!(
            "certificate for {name} expires in {shown} ({date}), warn below {warn_days}"
        ))
    } else {
        Judged::Pass(format!(
            "certificate for {name} expires in {shown} ({date})"
        ))
    }
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".to_owned()
    } else {
        format!("{n} days")
    }
}

/// `2026-11-24T12:00:00Z` for Unix seconds (proleptic Gregorian, Howard Hinnant's
/// civil-from-days).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(DAY);
    let rem = secs.rem_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_521_600), "2026-11-24T12:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn thresholds() {
        let now = 1_000_000_000;
        assert_eq!(
            judge("example.com", now + 2 * DAY, now, 14, 3),
            Judged::Fail(format!(
                "certificate for example.com expires in 2 days ({}), critical below 3",
                rfc3339(now + 2 * DAY)
            ))
        );
        assert!(matches!(
            judge("x", now + 10 * DAY, now, 14, 3),
            Judged::Warn(_)
        ));
        assert!(matches!(
            judge("x", now + 30 * DAY, now, 14, 3),
            Judged::Pass(_)
        ));
        assert!(
            matches!(judge("x", now - DAY, now, 14, 3), Judged::Fail(r) if r.contains("expired 1 day ago"))
        );
    }
}
