//! `kind = "mqtt"`: an MQTT 3.1.1 CONNECT answered by a CONNACK with return code 0.
//!
//! Owns: the CONNECT packet (clean session, keepalive 10s, client id, optional
//! username/password), reading the 4-byte CONNACK and naming its return codes. Must not:
//! subscribe or publish; a DISCONNECT is sent after an accepted CONNACK.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{Verdict, describe_io, host_port, latency, tls};
use crate::model::MqttCheck;

pub(super) fn label(check: &MqttCheck) -> String {
    format!("mqtt {}", host_port(&check.host, check.port))
}

fn push_str(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
    let len = u16::try_from(bytes.len()).map_err(|_| "field longer than 65535 bytes".to_owned())?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn connect_packet(
    client_id: &str,
    user: Option<&str>,
    pass: Option<&str>,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    push_str(&mut body, b"MQTT")?;
    body.push(4); // protocol level 3.1.1
    let mut flags = 0x02; // clean session
    if user.is_some() {
        flags |= 0x80;
    }
    if pass.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&10u16.to_be_bytes()); // keepalive
    push_str(&mut body, client_id.as_bytes())?;
    if let Some(user) = user {
        push_str(&mut body, user.as_bytes())?;
    }
    if let Some(pass) = pass {
        push_str(&mut body, pass.as_bytes())?;
    }
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = u8::try_from(len % 128).unwrap_or(0);
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    Ok(packet)
}

fn return_code(code: u8) -> &'static str {
    match code {
        1 => "unacceptable protocol version",
        2 => "client identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown return code",
    }
}

pub(super) async fn probe(check: &MqttCheck) -> Verdict {
    let started = Instant::now();
    let label = label(check);
    let password = match &check.password {
        Some(secret) => Some(
            tls::read_secret(secret)
                .await
                .map_err(|e| format!("{label}: {e}"))?,
        ),
        None => None,
    };
    let client_id = check
        .client_id
        .clone()
        .unwrap_or_else(|| format!("vigil-{}", std::process::id()));
    let packet = connect_packet(&client_id, check.username.as_deref(), password.as_deref())
        .map_err(|e| format!("{label}: {e}"))?;
    let mut stream = tls::dial_maybe_tls(&check.host, check.port, check.tls.as_ref(), None)
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    stream
        .write_all(&packet)
        .await
        .map_err(|e| format!("{label}: sending CONNECT: {}", describe_io(&e)))?;
    let mut ack = [0u8; 4];
    stream.read_exact(&mut ack).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("{label}: connection closed before a CONNACK")
        } else {
            format!("{label}: reading CONNACK: {}", describe_io(&e))
        }
    })?;
    if ack[0] != 0x20 || ack[1] != 2 {
        return Err(format!(
            "{label}: expected a CONNACK (0x20 0x02), got 0x{:02x} 0x{:02x}",
            ack[0], ack[1]
        ));
    }
    if ack[3] != 0 {
        return Err(format!(
            "{label}: CONNACK refused the connection: {} (return code {})",
            return_code(ack[3]),
            ack[3]
        ));
    }
    let _ = stream.write_all(&[0xe0, 0x00]).await;
    let _ = stream.shutdown().await;
    Ok(format!(
        "CONNACK accepted in {}",
        latency(started.elapsed())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_packet_layout() {
        let p = connect_packet("c", Some("u"), Some("p")).unwrap_or_default();
        assert_eq!(
            p,
            [
                0x10, 19, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xc2, 0, 10, 0, 1, b'c', 0, 1, b'u', 0,
                1, b'p'
            ]
        );
        let long = connect_packet(&"x".repeat(200), None, None).unwrap_or_default();
        assert_eq!(&long[..3], &[0x10, 0xd4, 0x01]);
    }
}
