//! `kind = "redis"`: RESP `PING` answered with `+PONG`, after `AUTH` when a password is set.
//!
//! Owns: the two commands and turning `-NOAUTH` / `-WRONGPASS` into clear reasons. Must
//! not: read more than [`MAX_LINE`] bytes of a reply.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{Verdict, describe_io, host_port, latency, tls};
use crate::model::RedisCheck;

const MAX_LINE: usize = 4096;

pub(super) fn label(check: &RedisCheck) -> String {
    format!("redis {}", host_port(&check.host, check.port))
}

/// A RESP array of bulk strings.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One reply line without its CRLF, at most [`MAX_LINE`] bytes.
async fn read_line<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> Result<String, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() >= MAX_LINE {
            return Err(format!("reply line longer than {MAX_LINE} bytes"));
        }
        match stream.read(&mut byte).await {
            Ok(0) => return Err("connection closed before a reply".to_owned()),
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(format!("reading reply: {}", describe_io(&e))),
        }
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).chars().take(200).collect())
}

pub(super) async fn probe(check: &RedisCheck) -> Verdict {
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
    let mut stream = tls::dial_maybe_tls(&check.host, check.port, check.tls.as_ref(), None)
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    if let Some(password) = &password {
        let cmd = match &check.username {
            Some(user) => command(&["AUTH", user, password]),
            None => command(&["AUTH", password]),
        };
        stream
            .write_all(&cmd)
            .await
            .map_err(|e| format!("{label}: sending AUTH: {}", describe_io(&e)))?;
        let reply = read_line(&mut stream)
            .await
            .map_err(|e| format!("{label}: {e}"))?;
        if reply != "+OK" {
            let why = if reply.starts_with("-WRONGPASS") || reply.contains("invalid password") {
                "wrong password"
            } else {
                "AUTH refused"
            };
            return Err(format!("{label}: {why}: expected +OK, got {reply:?}"));
        }
    }
    stream
        .write_all(&command(&["PING"]))
        .await
        .map_err(|e| format!("{label}: sending PING: {}", describe_io(&e)))?;
    let reply = read_line(&mut stream)
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    if reply.starts_with("-NOAUTH") {
        return Err(format!(
            "{label}: server requires a password, none configured ({reply:?})"
        ));
    }
    if reply != "+PONG" {
        return Err(format!("{label}: expected +PONG, got {reply:?}"));
    }
    let _ = stream.write_all(&command(&["QUIT"])).await;
    Ok(format!("PONG in {}", latency(started.elapsed())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays() {
        assert_eq!(command(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            command(&["AUTH", "pw"]),
            b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"
        );
    }
}
