//! `kind = "postgres"`: the startup handshake is answered (like `pg_isready`); with a
//! password it authenticates (cleartext, MD5 or SCRAM-SHA-256) and runs `SELECT 1`.
//!
//! Owns: the frontend/backend protocol 3.0 messages this needs, `SSLRequest` for `tls`,
//! and the MD5 / SCRAM-SHA-256 (RFC 5802/7677, no channel binding) exchanges. Must not:
//! read a backend message longer than [`MAX_MESSAGE`] or run anything but `SELECT 1`.

use std::num::NonZeroU32;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::tls::{self, Stream};
use super::{Verdict, describe_io, host_port, latency};
use crate::model::PostgresCheck;

const MAX_MESSAGE: usize = 64 * 1024;
/// SCRAM iteration counts above this are refused (CPU bound; PostgreSQL uses 4096).
const MAX_ITERATIONS: u32 = 1_000_000;

pub(super) fn label(check: &PostgresCheck) -> String {
    format!("postgres {}", host_port(&check.host, check.port))
}

pub(super) async fn probe(check: &PostgresCheck) -> Verdict {
    let started = Instant::now();
    let label = label(check);
    run(check, started)
        .await
        .map_err(|e| format!("{label}: {e}"))
}

async fn run(check: &PostgresCheck, started: Instant) -> Result<String, String> {
    let password = match &check.password {
        Some(secret) => Some(tls::read_secret(secret).await?),
        None => None,
    };
    let mut tcp = tls::dial(&check.host, check.port, None).await?;
    let mut stream: Stream = match &check.tls {
        None => Box::new(tcp),
        Some(opts) => {
            // SSLRequest: length 8, code 80877103.
            tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
                .await
                .map_err(|e| format!("sending SSLRequest: {}", describe_io(&e)))?;
            let mut answer = [0u8; 1];
            tcp.read_exact(&mut answer)
                .await
                .map_err(|e| format!("reading SSLRequest answer: {}", describe_io(&e)))?;
            if answer[0] != b'S' {
                return Err(format!(
                    "expected the server to accept TLS ('S'), got {:?}",
                    char::from(answer[0])
                ));
            }
            let config = tls::client_config(opts).await?;
            Box::new(tls::handshake(tcp, &check.host, config).await?)
        }
    };
    let database = check.database.as_deref().unwrap_or(&check.user);
    let mut startup = Vec::new();
    startup.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    for (k, v) in [
        ("user", check.user.as_str()),
        ("database", database),
        ("application_name", "vigil"),
    ] {
        startup.extend_from_slice(k.as_bytes());
        startup.push(0);
        startup.extend_from_slice(v.as_bytes());
        startup.push(0);
    }
    startup.push(0);
    send(&mut stream, None, &startup).await?;

    let Some(password) = password else {
        // pg_isready: any authentication request, error or ready answer means the server
        // is up; only "starting up" / "shutting down" count as rejecting connections.
        let (tag, body) = recv(&mut stream).await?;
        return match tag {
            b'R' | b'Z' | b'S' | b'K' => Ok(format!(
                "accepting connections in {}",
                latency(started.elapsed())
            )),
            b'E' => {
                let err = ErrorFields::parse(&body);
                if err.code.starts_with("57P") {
                    Err(format!("rejecting connections: {}", err.describe()))
                } else {
                    Ok(format!(
                        "accepting connections (server said: {}) in {}",
                        err.describe(),
                        latency(started.elapsed())
                    ))
                }
            }
            other => Err(format!(
                "expected an authentication request, got message {:?}",
                char::from(other)
            )),
        };
    };

    authenticate(&mut stream, &check.user, &password).await?;
    send(&mut stream, Some(b'Q'), b"SELECT 1\0").await?;
    let mut value = None;
    loop {
        let (tag, body) = recv(&mut stream).await?;
        match tag {
            b'D' => value = Some(first_column(&body)?),
            b'E' => {
                return Err(format!(
                    "SELECT 1 failed: {}",
                    ErrorFields::parse(&body).describe()
                ));
            }
            b'Z' => break,
            _ => {}
        }
    }
    let _ = send(&mut stream, Some(b'X'), b"").await;
    match value.as_deref() {
        Some("1") => Ok(format!(
            "SELECT 1 returned 1 in {}",
            latency(started.elapsed())
        )),
        Some(other) => Err(format!("SELECT 1: expected 1, got {other:?}")),
        None => Err("SELECT 1: expected one row, got none".to_owned()),
    }
}

/// Authenticates and waits for ReadyForQuery.
async fn authenticate(stream: &mut Stream, user: &str, password: &str) -> Result<(), String> {
    let mut scram: Option<Scram> = None;
    loop {
        let (tag, body) = recv(stream).await?;
        match tag {
            b'E' => {
                return Err(format!(
                    "authentication failed: {}",
                    ErrorFields::parse(&body).describe()
                ));
            }
            b'Z' => return Ok(()),
            b'R' => {
                let code = read_u32(&body, 0)?;
                let rest = &body[4..];
                match code {
                    0 => {}
                    3 => {
                        let mut msg = password.as_bytes().to_vec();
                        msg.push(0);
                        send(stream, Some(b'p'), &msg).await?;
                    }
                    5 => {
                        let salt = rest.get(..4).ok_or("short MD5 salt")?;
                        let inner = md5_hex(&[password.as_bytes(), user.as_bytes()].concat());
                        let outer = md5_hex(&[inner.as_bytes(), salt].concat());
                        let mut msg = format!("md5{outer}").into_bytes();
                        msg.push(0);
                        send(stream, Some(b'p'), &msg).await?;
                    }
                    10 => {
                        let mechanisms: Vec<&[u8]> =
                            rest.split(|&b| b == 0).filter(|m| !m.is_empty()).collect();
                        if !mechanisms.contains(&&b"SCRAM-SHA-256"[..]) {
                            return Err(format!(
                                "server offers no supported SASL mechanism ({})",
                                mechanisms
                                    .iter()
                                    .map(|m| String::from_utf8_lossy(m).into_owned())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ));
                        }
                        let s = Scram::new()?;
                        let first = s.client_first();
                        let mut msg = b"SCRAM-SHA-256\0".to_vec();
                        let len = u32::try_from(first.len()).unwrap_or(u32::MAX);
                        msg.extend_from_slice(&len.to_be_bytes());
                        msg.extend_from_slice(first.as_bytes());
                        send(stream, Some(b'p'), &msg).await?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().ok_or("SASL continue without SASL start")?;
                        let fin = s.client_final(&String::from_utf8_lossy(rest), password)?;
                        send(stream, Some(b'p'), fin.as_bytes()).await?;
                    }
                    12 => {
                        let s = scram.as_ref().ok_or("SASL final without SASL start")?;
                        s.verify_server(&String::from_utf8_lossy(rest))?;
                    }
                    other => {
                        return Err(format!("unsupported authentication method (code {other})"));
                    }
                }
            }
            // ParameterStatus, BackendKeyData, NoticeResponse.
            _ => {}
        }
    }
}

async fn send(stream: &mut Stream, tag: Option<u8>, body: &[u8]) -> Result<(), String> {
    let mut msg = Vec::with_capacity(body.len() + 5);
    if let Some(tag) = tag {
        msg.push(tag);
    }
    let len = u32::try_from(body.len() + 4).map_err(|_| "message too long".to_owned())?;
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(body);
    stream
        .write_all(&msg)
        .await
        .map_err(|e| format!("sending: {}", describe_io(&e)))
}

async fn recv<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> Result<(u8, Vec<u8>), String> {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "connection closed by the server".to_owned()
        } else {
            format!("reading: {}", describe_io(&e))
        }
    })?;
    let len = read_u32(&head, 1)? as usize;
    if !(4..=MAX_MESSAGE).contains(&len) || !head[0].is_ascii_alphabetic() {
        return Err(format!(
            "server answered garbage (message {:?} of {len} bytes); is this PostgreSQL?",
            char::from(head[0])
        ));
    }
    let mut body = vec![0u8; len - 4];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("reading: {}", describe_io(&e)))?;
    Ok((head[0], body))
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, String> {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| "short message".to_owned())
}

fn first_column(row: &[u8]) -> Result<String, String> {
    let len = read_u32(row, 2)?;
    if len == u32::MAX {
        return Ok("NULL".to_owned());
    }
    let value = row
        .get(6..6 + len as usize)
        .ok_or_else(|| "short data row".to_owned())?;
    Ok(String::from_utf8_lossy(value).into_owned())
}

struct ErrorFields {
    severity: String,
    code: String,
    message: String,
}

impl ErrorFields {
    fn parse(body: &[u8]) -> ErrorFields {
        let mut out = ErrorFields {
            severity: String::new(),
            code: String::new(),
            message: String::new(),
        };
        for field in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
            let value = String::from_utf8_lossy(&field[1..]).into_owned();
            match field[0] {
                b'S' => out.severity = value,
                b'C' => out.code = value,
                b'M' => out.message = value,
                _ => {}
            }
        }
        out
    }

    fn describe(&self) -> String {
        format!("{}: {} ({})", self.severity, self.message, self.code)
    }
}

/// The client side of one SCRAM-SHA-256 exchange.
struct Scram {
    nonce: String,
    client_first_bare: String,
    /// Set by [`Scram::client_final`]: (AuthMessage, SaltedPassword).
    state: Option<(String, [u8; 32])>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

impl Scram {
    fn new() -> Result<Scram, String> {
        use ring::rand::SecureRandom as _;
        let mut raw = [0u8; 18];
        ring::rand::SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| "no randomness available".to_owned())?;
        Ok(Scram::with_nonce(b64().encode(raw)))
    }

    fn with_nonce(nonce: String) -> Scram {
        // PostgreSQL takes the user name from the startup message; it is left empty here.
        let client_first_bare = format!("n=,r={nonce}");
        Scram {
            nonce,
            client_first_bare,
            state: None,
        }
    }

    fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    fn client_final(&mut self, server_first: &str, password: &str) -> Result<String, String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = b64().decode(v).ok(),
                Some(("i=", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(format!(
                "SCRAM: malformed server-first message {server_first:?}"
            ));
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err("SCRAM: server nonce does not extend ours".to_owned());
        }
        let iterations = NonZeroU32::new(iterations)
            .filter(|i| i.get() <= MAX_ITERATIONS)
            .ok_or_else(|| format!("SCRAM: iteration count {iterations} out of range"))?;
        let mut salted = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = ring::digest::digest(&ring::digest::SHA256, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac(stored_key.as_ref(), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        self.state = Some((auth_message, salted));
        Ok(format!("{without_proof},p={}", b64().encode(proof)))
    }

    fn verify_server(&self, server_final: &str) -> Result<(), String> {
        let (auth_message, salted) = self
            .state
            .as_ref()
            .ok_or("SCRAM: final message before the exchange")?;
        if let Some(err) = server_final.strip_prefix("e=") {
            return Err(format!("authentication failed: SCRAM error {err}"));
        }
        let server_key = hmac(salted, b"Server Key");
        let expected = b64().encode(hmac(&server_key, auth_message.as_bytes()));
        match server_final.strip_prefix("v=") {
            Some(v) if v.trim_end_matches('\0') == expected => Ok(()),
            _ => Err("SCRAM: the server's signature is wrong (not the real server?)".to_owned()),
        }
    }
}

/// MD5 (RFC 1321) as lowercase hex; only for PostgreSQL's legacy `md5` authentication.
fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i: i32| ((f64::from(i + 1)).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for chunk in msg.chunks_exact(64) {
        let m: Vec<u32> = chunk
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
    }
    h.iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_rfc_1321() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            md5_hex(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            ),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn scram_matches_rfc_7677() {
        // RFC 7677 §3 (user "user", password "pencil"); the user name is part of the
        // client-first message there, so build it the same way.
        let mut s = Scram {
            nonce: "rOprNGfwEbeRWgbNEkqO".to_owned(),
            client_first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".to_owned(),
            state: None,
        };
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = s.client_final(server_first, "pencil").unwrap_or_default();
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(
            s.verify_server("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .is_ok()
        );
        assert!(s.verify_server("v=AAAA").is_err());
        assert_eq!(
            Scram::with_nonce("abc".to_owned()).client_first(),
            "n,,n=,r=abc"
        );
    }
}
