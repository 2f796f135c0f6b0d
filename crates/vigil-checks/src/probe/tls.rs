//! Shared transport for the raw-socket probes (websocket, tls_cert, redis, postgres, mqtt):
//! dialing a TCP connection directly or through a SOCKS5 / HTTP CONNECT proxy, rustls client
//! configurations, bounded reads and secrets.
//!
//! Owns: the proxy handshakes, the rustls verifiers (platform roots plus `ca_file`, or
//! accept-anything for `insecure` and for reading expiry dates), and short error texts.
//! Must not: speak any application protocol or keep state between probes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{describe_io, error_chain, host_port};
use crate::model::{ClientCert, Proxy, ProxyScheme, Secret, TlsOptions};

/// A byte stream: plain TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub(crate) type Stream = Box<dyn Io>;

/// The most bytes of a response head (status line plus headers) we read.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// Connects to `host:port`, through `proxy` when set. Errors are short (`connection
/// refused`, `proxy socks5://127.0.0.1:1080: rejected the credentials`).
pub(crate) async fn dial(
    host: &str,
    port: u16,
    proxy: Option<&Proxy>,
) -> Result<TcpStream, String> {
    let host = strip_brackets(host);
    let Some(proxy) = proxy else {
        return connect_direct(host, port).await;
    };
    let tag = format!("proxy {}", proxy.redacted());
    let mut stream = connect_direct(&proxy.host, proxy.port)
        .await
        .map_err(|e| format!("{tag}: {e}"))?;
    let result = match proxy.scheme {
        ProxyScheme::Socks5 | ProxyScheme::Socks5h => socks5(&mut stream, proxy, host, port).await,
        ProxyScheme::Http => http_connect(&mut stream, proxy, host, port).await,
    };
    result.map_err(|e| format!("{tag}: {e}"))?;
    Ok(stream)
}

fn strip_brackets(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} resolved to no address"));
    }
    Ok(addrs)
}

async fn connect_direct(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs = resolve(strip_brackets(host), port).await?;
    let mut failures = Vec::new();
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => failures.push(format!("{addr} {}", describe_io(&err))),
        }
    }
    Err(if failures.len() == 1 {
        failures
            .pop()
            .map(|f| {
                f.split_once(' ')
                    .map(|(_, why)| why.to_owned())
                    .unwrap_or(f)
            })
            .unwrap_or_default()
    } else {
        failures.join("; ")
    })
}

fn io_err(what: &str, err: &std::io::Error) -> String {
    format!("{what}: {}", describe_io(err))
}

/// RFC 1928 (+ RFC 1929 username/password).
async fn socks5(
    stream: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), String> {
    let creds = proxy
        .username
        .as_deref()
        .map(|u| (u, proxy.password.as_deref().unwrap_or("")));
    let greeting: &[u8] = if creds.is_some() {
        &[5, 2, 0, 2]
    } else {
        &[5, 1, 0]
    };
    stream
        .write_all(greeting)
        .await
        .map_err(|e| io_err("sending greeting", &e))?;
    let mut choice = [0u8; 2];
    stream
        .read_exact(&mut choice)
        .await
        .map_err(|e| io_err("reading greeting reply", &e))?;
    if choice[0] != 5 {
        return Err(format!("not a SOCKS5 proxy (version byte {})", choice[0]));
    }
    match (choice[1], creds) {
        (0, _) => {}
        (2, Some((user, pass))) => {
            let (user, pass) = (user.as_bytes(), pass.as_bytes());
            let (Ok(ulen), Ok(plen)) = (u8::try_from(user.len()), u8::try_from(pass.len())) else {
                return Err("username or password longer than 255 bytes".to_owned());
            };
            let mut msg = vec![1, ulen];
            msg.extend_from_slice(user);
            msg.push(plen);
            msg.extend_from_slice(pass);
            stream
                .write_all(&msg)
                .await
                .map_err(|e| io_err("sending credentials", &e))?;
            let mut status = [0u8; 2];
            stream
                .read_exact(&mut status)
                .await
                .map_err(|e| io_err("reading authentication reply", &e))?;
            if status[1] != 0 {
                return Err("rejected the credentials".to_owned());
            }
        }
        (0xff, None) | (2, None) => {
            return Err("requires authentication, no credentials configured".to_owned());
        }
        (0xff, Some(_)) => return Err("accepted none of our authentication methods".to_owned()),
        (other, _) => return Err(format!("chose unsupported authentication method {other}")),
    }
    let mut req = vec![5, 1, 0];
    let target_ip = match host.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if proxy.scheme == ProxyScheme::Socks5 => {
            // socks5://: we resolve the name ourselves.
            Some(resolve(host, port).await?[0].ip())
        }
        Err(_) => None,
    };
    match target_ip {
        Some(IpAddr::V4(v4)) => {
            req.push(1);
            req.extend_from_slice(&v4.octets());
        }
        Some(IpAddr::V6(v6)) => {
            req.push(4);
            req.extend_from_slice(&v6.octets());
        }
        None => {
            let Ok(len) = u8::try_from(host.len()) else {
                return Err("host name longer than 255 bytes".to_owned());
            };
            req.push(3);
            req.push(len);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    stream
        .write_all(&req)
        .await
        .map_err(|e| io_err("sending CONNECT", &e))?;
    let mut head = [0u8; 4];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| io_err("reading CONNECT reply", &e))?;
    if head[1] != 0 {
        let why = match head[1] {
            1 => "general failure",
            2 => "connection not allowed by ruleset",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused",
            6 => "TTL expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unknown error",
        };
        return Err(format!(
            "could not reach {}: {why} (SOCKS reply {})",
            host_port(host, port),
            head[1]
        ));
    }
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            stream
                .read_exact(&mut len)
                .await
                .map_err(|e| io_err("reading CONNECT reply", &e))?;
            usize::from(len[0]) + 2
        }
        other => return Err(format!("answered garbage (address type {other})")),
    };
    let mut skip = vec![0u8; rest];
    stream
        .read_exact(&mut skip)
        .await
        .map_err(|e| io_err("reading CONNECT reply", &e))?;
    Ok(())
}

async fn http_connect(
    stream: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), String> {
    let target = host_port(host, port);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(user) = &proxy.username {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{user}:{}",
            proxy.password.as_deref().unwrap_or("")
        ));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| io_err("sending CONNECT", &e))?;
    let head = read_head(stream, MAX_HEAD).await?;
    let status = parse_status(&head).ok_or_else(|| {
        format!(
            "answered garbage to CONNECT: {:?}",
            super::first_line(&head, 80).unwrap_or_default()
        )
    })?;
    if !(200..300).contains(&status.0) {
        return Err(format!(
            "CONNECT {target}: expected status 200, got {} {}",
            status.0, status.1
        ));
    }
    Ok(())
}

/// Reads an HTTP response head up to and including the blank line, byte by byte so nothing
/// after it is consumed. At most `cap` bytes.
pub(crate) async fn read_head<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    cap: usize,
) -> Result<Vec<u8>, String> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= cap {
            return Err(format!("response head longer than {cap} bytes"));
        }
        match stream.read(&mut byte).await {
            Ok(0) if head.is_empty() => {
                return Err("connection closed without a response".to_owned());
            }
            Ok(0) => return Err("connection closed in the middle of the response head".to_owned()),
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(io_err("reading response", &e)),
        }
    }
    Ok(head)
}

/// `HTTP/1.1 426 Upgrade Required` → `(426, "Upgrade Required")`.
pub(crate) fn parse_status(head: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?.trim().parse::<u16>().ok()?;
    let reason = parts.next().unwrap_or("").trim().to_owned();
    Some((code, reason))
}

/// The client config for `opts`: platform roots plus `ca_file`, or no verification with
/// `insecure`; a client certificate when set. Files are read on every call.
pub(crate) async fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    crate::context::install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
    } else {
        let extra = match &opts.ca_file {
            Some(path) => {
                let pem = tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!(
                        "ca_file {}: no PEM certificate found",
                        path.display()
                    ));
                }
                certs
            }
            None => Vec::new(),
        };
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
            .map_err(|e| format!("TLS setup: {e}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    };
    let config = match &opts.client_cert {
        Some(cc) => {
            let (chain, key) = load_identity(cc).await?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client_cert {}: {e}", cc.cert.display()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A config that accepts any server certificate (still checking handshake signatures), for
/// reading certificates that do not validate.
pub(crate) fn accept_any_config() -> Result<Arc<ClientConfig>, String> {
    crate::context::install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn load_identity(
    cc: &ClientCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let cert_pem = tokio::fs::read(&cc.cert)
        .await
        .map_err(|e| format!("cannot read client_cert {}: {e}", cc.cert.display()))?;
    let key_pem = tokio::fs::read(&cc.key)
        .await
        .map_err(|e| format!("cannot read client_key {}: {e}", cc.key.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("client_cert {}: {e}", cc.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "client_cert {}: no PEM certificate found",
            cc.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("client_key {}: {e}", cc.key.display()))?;
    Ok((chain, key))
}

/// A rustls error in words, for a check's reason. rustls prints many certificate errors
/// with `Debug` (`invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`).
pub(crate) fn describe_tls(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(cert) => {
            format!("invalid server certificate: {}", describe_certificate(cert))
        }
        rustls::Error::AlertReceived(alert) => format!(
            "the server refused the handshake ({})",
            words(&format!("{alert:?}"))
        ),
        other => other.to_string(),
    }
}

/// The first rustls error among `err`'s causes, in words; else the whole chain.
pub(crate) fn describe_tls_chain(err: &(dyn std::error::Error + 'static)) -> String {
    super::causes(err)
        .into_iter()
        .find_map(|cause| cause.downcast_ref::<rustls::Error>())
        .map_or_else(|| error_chain(err), describe_tls)
}

fn describe_certificate(error: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match error {
        E::BadEncoding => "the certificate is malformed".to_owned(),
        E::Expired => "certificate expired".to_owned(),
        E::ExpiredContext { time, not_after } => expired(time.as_secs(), not_after.as_secs()),
        E::NotValidYet => "certificate not valid yet".to_owned(),
        E::NotValidYetContext { time, not_before } => {
            not_yet_valid(time.as_secs(), not_before.as_secs())
        }
        E::Revoked => "the certificate is revoked".to_owned(),
        E::UnhandledCriticalExtension => {
            "the certificate has an unsupported critical extension".to_owned()
        }
        E::UnknownIssuer => UNKNOWN_ISSUER.to_owned(),
        E::UnknownRevocationStatus => "the certificate's revocation status is unknown".to_owned(),
        E::ExpiredRevocationList | E::ExpiredRevocationListContext { .. } => {
            "the certificate revocation list has expired".to_owned()
        }
        E::BadSignature => {
            "bad signature (the certificate was not signed by its issuer's key)".to_owned()
        }
        E::NotValidForName => "name mismatch".to_owned(),
        E::NotValidForNameContext {
            expected,
            presented,
        } => name_mismatch(expected.to_str().as_ref(), presented),
        E::InvalidPurpose | E::InvalidPurposeContext { .. } => NOT_FOR_SERVERS.to_owned(),
        E::ApplicationVerificationFailure => {
            "the certificate was rejected by the verifier".to_owned()
        }
        E::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(e) => describe_webpki(e),
            None => other.0.to_string(),
        },
        // Unsupported signature algorithms and whatever later rustls versions add.
        other => words(&format!("{other:?}")),
    }
}

const UNKNOWN_ISSUER: &str =
    "unknown issuer (not signed by a trusted CA; `ca_file` trusts a private one)";
const NOT_FOR_SERVERS: &str =
    "the certificate is not for TLS servers (its extended key usage lacks serverAuth)";

/// The webpki errors rustls passes on as `Other`.
fn describe_webpki(error: &webpki::Error) -> String {
    use webpki::Error as E;
    match error {
        E::CaUsedAsEndEntity => {
            "the server's certificate is a CA certificate, not a server certificate".to_owned()
        }
        E::EndEntityUsedAsCa => {
            "a server certificate is used as a CA in the chain the server sent".to_owned()
        }
        E::CertExpired { time, not_after } => expired(time.as_secs(), not_after.as_secs()),
        E::CertNotValidYet { time, not_before } => {
            not_yet_valid(time.as_secs(), not_before.as_secs())
        }
        E::UnknownIssuer => UNKNOWN_ISSUER.to_owned(),
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => NOT_FOR_SERVERS.to_owned(),
        E::CertRevoked => "the certificate is revoked".to_owned(),
        E::CertDistrusted => "the certificate's key is distrusted".to_owned(),
        E::PathLenConstraintViolated => {
            "the chain is longer than a CA in it allows (path length constraint)".to_owned()
        }
        E::NameConstraintViolation => {
            "the certificate's name is outside its CA's name constraints".to_owned()
        }
        E::MaximumPathDepthExceeded => "the certificate chain is too long".to_owned(),
        E::InvalidCertValidity => {
            "the certificate's validity period is invalid (notAfter before notBefore)".to_owned()
        }
        other => words(&format!("{other:?}")),
    }
}

fn expired(now: u64, not_after: u64) -> String {
    format!(
        "certificate expired at {} ({} ago)",
        date(not_after),
        vigil_core::format_duration(std::time::Duration::from_secs(
            now.saturating_sub(not_after)
        ))
    )
}

fn not_yet_valid(now: u64, not_before: u64) -> String {
    format!(
        "certificate not valid before {} (in {})",
        date(not_before),
        vigil_core::format_duration(std::time::Duration::from_secs(
            not_before.saturating_sub(now)
        ))
    )
}

fn name_mismatch(expected: &str, presented: &[String]) -> String {
    if presented.is_empty() {
        return format!("name mismatch: the certificate names no host, expected {expected}");
    }
    let names: Vec<&str> = presented.iter().map(|n| presented_name(n)).collect();
    format!(
        "name mismatch: the certificate is for {}, not {expected}",
        names.join(", ")
    )
}

/// webpki's `DnsName("example.com")` / `IpAddress(10.0.0.1)` → the name itself.
fn presented_name(debug: &str) -> &str {
    ["DnsName(\"", "UniformResourceIdentifier(\""]
        .iter()
        .find_map(|p| debug.strip_prefix(p)?.strip_suffix("\")"))
        .or_else(|| debug.strip_prefix("IpAddress(")?.strip_suffix(')'))
        .unwrap_or(debug)
}

/// Unix seconds as `2026-11-24T12:00:00Z`.
fn date(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| format!("{unix} (Unix time)"), |t| t.to_string())
}

/// `UnsupportedSignatureAlgorithmContext { .. }` → `unsupported signature algorithm
/// context`: a variant's name in words, for errors without a sentence of their own.
fn words(debug: &str) -> String {
    let name = debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or(debug);
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    if out.is_empty() {
        debug.to_owned()
    } else {
        out
    }
}

/// The TLS handshake with SNI `server_name` (an IP literal sends no SNI).
pub(crate) async fn handshake(
    stream: TcpStream,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(strip_brackets(server_name).to_owned())
        .map_err(|_| format!("invalid TLS server name {server_name:?}"))?;
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake failed: {}", describe_tls_chain(&e)))
}

/// Dials and, when `tls` is set, completes a TLS handshake with SNI `host`.
pub(crate) async fn dial_maybe_tls(
    host: &str,
    port: u16,
    tls: Option<&TlsOptions>,
    proxy: Option<&Proxy>,
) -> Result<Stream, String> {
    let tcp = dial(host, port, proxy).await?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some(opts) => {
            let config = client_config(opts).await?;
            Ok(Box::new(handshake(tcp, host, config).await?))
        }
    }
}

/// The secret's value; a `password_file` is read now, its trailing newline stripped.
pub(crate) async fn read_secret(secret: &Secret) -> Result<String, String> {
    match secret {
        Secret::Inline(value) => Ok(value.clone()),
        Secret::File(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?;
            Ok(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        Secret::Env(_) => secret.read(),
    }
}

/// Accepts any certificate chain; handshake signatures are still verified so the peer must
/// hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_read_as_words() {
        use rustls::CertificateError;
        let ca = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            Arc::new(webpki::Error::CaUsedAsEndEntity),
        )));
        assert_eq!(
            describe_tls(&ca),
            "invalid server certificate: the server's certificate is a CA certificate, not a server certificate"
        );
        let expired = rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                1_700_000_000 - 3 * 86_400,
            )),
        });
        assert_eq!(
            describe_tls(&expired),
            "invalid server certificate: certificate expired at 2023-11-11T22:13:20Z (3d ago)"
        );
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(describe_tls(&unknown).contains("unknown issuer"));
        assert_eq!(
            name_mismatch(
                "127.0.0.1",
                &[
                    "DnsName(\"example.test\")".to_owned(),
                    "IpAddress(10.0.0.1)".to_owned()
                ]
            ),
            "name mismatch: the certificate is for example.test, 10.0.0.1, not 127.0.0.1"
        );
        // Whatever has no sentence of its own is still words, not Debug.
        let other = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            Arc::new(webpki::Error::MalformedDnsIdentifier),
        )));
        assert_eq!(
            describe_tls(&other),
            "invalid server certificate: malformed dns identifier"
        );
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(
            parse_status(b"HTTP/1.1 426 Upgrade Required\r\n\r\n"),
            Some((426, "Upgrade Required".to_owned()))
        );
        assert_eq!(
            parse_status(b"HTTP/1.0 200\r\n\r\n"),
            Some((200, String::new()))
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
    }
}
