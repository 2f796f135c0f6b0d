//! A plain HTTP/1.1 client for the common `http` check: `GET` or `HEAD` of an `http://`
//! URL whose host is an IP address, or a name that resolves to loopback addresses only
//! (`localhost`), without proxy or redirects, over a pooled keep-alive connection.
//!
//! Why it exists (measured, issue 17): a daemon running 1,000 such checks a second spent
//! most of its user-space CPU per check in reqwest and hyper's layers for one request —
//! the boxed request future (large enough that every allocation of it made glibc
//! consolidate its fast bins), the header maps, the URI conversion, the connection task
//! and the channels between it and the request. Here a request is one `write` of bytes
//! prepared from the check and the response is parsed (httparse) from one reused buffer.
//!
//! It never decides anything reqwest would have decided differently: it answers only
//! when the exchange was clean (a response parsed whole and framed as RFC 9112 says).
//! Anything else — a refused or reset connection, a malformed or oversized head, a `1xx`
//! status, a body cut short, a framing it does not handle — returns `None`, and the probe
//! sends the request again through reqwest, whose reasons are the documented ones. Only
//! `GET` and `HEAD` are sent this way, so a request sent twice to a broken server is
//! harmless. A reused connection that the server closed while idle is retried once on a
//! new connection, as hyper does.
//!
//! A name is pooled by name and resolved (`getaddrinfo`, on the blocking pool) only when a
//! new connection is needed, as reqwest does; its addresses are tried in the resolver's
//! order. When they are all loopback, a refused address fails at once and the next is
//! tried, so this is what reqwest's happy-eyeballs connector does too. A name that
//! resolves to anything else is left to reqwest from then on (its connector races address
//! families on a slow network; this one does not).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Verdict;
use super::http::{BodyScan, expect_status, judge_body, judge_latency, wants_body};
use crate::context::ProbeContext;
use crate::model::HttpCheck;

/// Idle connections are closed after this (as reqwest's pool: `POOL_IDLE_TIMEOUT`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per address. A check has at most one request in flight, so an
/// address never needs more connections than it has checks; reqwest's 64 made 1,000
/// checks of one server at 10,000 a second open a new connection for 4 requests in 10.
const MAX_IDLE: usize = 1024;
/// A response head larger than this is left to reqwest.
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed at most (more: left to reqwest).
const MAX_HEADERS: usize = 100;
/// What one read asks for.
const READ_CHUNK: usize = 8 * 1024;

/// Requests prepared, kept at most (emptied when full: reloads can retire URLs).
const PREPARED_MAX: usize = 4096;

/// A map with a fast, randomly seeded hasher: its keys are URLs and addresses from the
/// config, looked up once or twice per check run (SipHash was 1–2 % of a daemon running
/// 1,000 checks a second).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Idle keep-alive connections by address, and requests prepared by URL. Part of the
/// [`ProbeContext`].
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<FastMap<Dest, Vec<Idle>>>,
    prepared: Mutex<FastMap<String, Prepared>>,
}

/// What [`prepare`] made of one check: the inputs it read besides the URL (compared on
/// every lookup, so two checks of one URL with different headers each get their own
/// request) and the result, `None` when this client does not send the check.
#[derive(Debug)]
struct Prepared {
    method: String,
    headers: Vec<(String, String)>,
    target: Option<Arc<Target>>,
}

/// Where and what to send.
#[derive(Debug)]
struct Target {
    dest: Dest,
    head_only: bool,
    request: Box<[u8]>,
    /// The name was found to resolve to an address that is not loopback: left to reqwest.
    remote: AtomicBool,
}

/// Where connections go, and what idle ones are pooled by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Dest {
    Addr(SocketAddr),
    /// A host name (as the URL has it) and port.
    Name(Box<str>, u16),
}

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Instant,
}

impl Pool {
    /// [`prepare`]'s answer for `check`, from the cache after the first run: parsing the
    /// URL and writing the request on every run was 4–5 % of a daemon running 1,000 checks
    /// a second.
    fn target(&self, check: &HttpCheck, cx: &ProbeContext) -> Option<Arc<Target>> {
        if check.proxy.is_some() || check.follow_redirects || check.client_cert.is_some() {
            return None;
        }
        let mut prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = prepared.get(&check.url)
            && p.method == check.method
            && p.headers == check.headers
        {
            return p.target.clone();
        }
        let target = prepare(check, cx).map(Arc::new);
        if prepared.len() >= PREPARED_MAX {
            prepared.clear();
        }
        prepared.insert(
            check.url.clone(),
            Prepared {
                method: check.method.clone(),
                headers: check.headers.clone(),
                target: target.clone(),
            },
        );
        target
    }

    /// The most recently used idle connection to `dest`.
    fn take(&self, dest: &Dest) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(dest)?;
        let conn = list.pop()?;
        // The newest is the last: if it has been idle too long, so has every other.
        if conn.since.elapsed() < IDLE_TIMEOUT {
            return Some(conn.stream);
        }
        list.clear();
        None
    }

    /// Keeps `stream` idle, and closes the connections idle too long. The list is in the
    /// order connections were put (oldest first), so those are a prefix; finding it reads
    /// the clock once (reading it per idle connection was two thirds of a daemon's clock
    /// reads at 1,000 checks a second).
    fn put(&self, dest: &Dest, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Read under the lock, so the list stays in order of `since`.
        let now = Instant::now();
        if !idle.contains_key(dest) {
            idle.insert(dest.clone(), Vec::new());
        }
        let Some(list) = idle.get_mut(dest) else {
            return;
        };
        let expired = list.partition_point(|c| now.duration_since(c.since) >= IDLE_TIMEOUT);
        list.drain(..expired);
        if list.len() < MAX_IDLE {
            list.push(Idle { stream, since: now });
        }
    }
}

/// The verdict of `check` through this client, or `None` when it does not apply or the
/// exchange was not clean (the caller then asks reqwest).
pub(super) async fn probe(check: &HttpCheck, cx: &ProbeContext) -> Option<Verdict> {
    let pool: &Arc<Pool> = cx.http1_pool();
    let target = pool.target(check, cx)?;
    if target.remote.load(Ordering::Relaxed) {
        return None;
    }
    let (dest, head_only, request) = (&target.dest, target.head_only, &target.request);
    let started = Instant::now();
    let mut reused = pool.take(dest);
    let mut buf = Vec::new();
    let (mut stream, head) = loop {
        let fresh = reused.is_none();
        let mut stream = match reused.take() {
            Some(s) => s,
            None => {
                let s = connect(&target).await?;
                s.set_nodelay(true).ok()?;
                s
            }
        };
        if stream.write_all(request).await.is_err() {
            if fresh {
                return None;
            }
            continue;
        }
        buf.clear();
        match read_head(&mut stream, &mut buf).await {
            Ok(head) => break (stream, head),
            // Closed while idle: the request never reached a live connection.
            Err(Early::Nothing) if !fresh => continue,
            Err(_) => return None,
        }
    };
    let status = StatusCode::from_u16(head.code).ok()?;
    if status.is_informational() {
        return None;
    }
    let body_len =
        if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Length(0)
        } else {
            head.framing
        };
    if let Err(reason) = expect_status(check, status) {
        return Some(Err(reason));
    }
    let mut reader = BodyReader {
        framing: body_len,
        chunk: ChunkState::Size,
    };
    buf.drain(..head.len);
    if wants_body(check) {
        let mut scan = BodyScan::new(check);
        loop {
            match reader.next(&mut buf, &mut scan) {
                Step::Ended => break,
                Step::Bad => return None,
                Step::More if scan.done() => break,
                Step::More => {}
            }
            if !read_more(&mut stream, &mut buf).await? {
                // The peer closed: the end of a close-delimited body, else a cut.
                if reader.framing != Framing::Close {
                    return None;
                }
                break;
            }
        }
        let ended = reader.ended() && buf.is_empty();
        if let Err(reason) = judge_body(check, scan.end()) {
            return Some(Err(reason));
        }
        let verdict = judge_latency(check, status, started.elapsed());
        if ended && head.keep_alive {
            pool.put(dest, stream);
        }
        return Some(verdict);
    }
    let took = started.elapsed();
    // Not read: the connection is kept only when the whole body is already here.
    let mut discard = Discard;
    if head.keep_alive && reader.next(&mut buf, &mut discard) == Step::Ended && buf.is_empty() {
        pool.put(dest, stream);
    }
    Some(judge_latency(check, status, took))
}

/// A new connection to `target`: to its address, or to the first of its name's addresses
/// that accepts, when they are all loopback (else the target is marked `remote`).
async fn connect(target: &Target) -> Option<TcpStream> {
    match &target.dest {
        Dest::Addr(addr) => TcpStream::connect(addr).await.ok(),
        Dest::Name(host, port) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((&**host, *port))
                .await
                .ok()?
                .collect();
            if !all_loopback(&addrs) {
                target.remote.store(true, Ordering::Relaxed);
                return None;
            }
            for addr in &addrs {
                if let Ok(stream) = TcpStream::connect(addr).await {
                    return Some(stream);
                }
            }
            None
        }
    }
}

/// Whether a name's addresses are all loopback (and there are some).
fn all_loopback(addrs: &[SocketAddr]) -> bool {
    !addrs.is_empty() && addrs.iter().all(|a| a.ip().to_canonical().is_loopback())
}

/// Where to connect, whether the method is `HEAD`, and the request's bytes; `None` when the
/// check is not one this client sends. A function of the check's `url`, `method`,
/// `headers` and the fields [`Pool::target`] looks at first.
fn prepare(check: &HttpCheck, cx: &ProbeContext) -> Option<Target> {
    let head_only = match check.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    let url = cx.url(&check.url)?;
    if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    // An IP address (IPv6 in brackets), or a name resolved when connecting.
    let host_text = url.host_str()?;
    let port = url.port_or_known_default()?;
    let bare = host_text
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host_text);
    let dest = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => Dest::Addr(SocketAddr::new(ip, port)),
        // An `http:` URL's host is an address or a domain name (the URL parser's rule).
        Err(_) => Dest::Name(bare.into(), port),
    };
    let mut request = Vec::with_capacity(256);
    request.extend_from_slice(check.method.as_bytes());
    request.push(b' ');
    request.extend_from_slice(url.path().as_bytes());
    if let Some(query) = url.query() {
        request.push(b'?');
        request.extend_from_slice(query.as_bytes());
    }
    request.extend_from_slice(b" HTTP/1.1\r\n");
    let (mut agent, mut accept, mut host) = (true, true, true);
    for (name, value) in &check.headers {
        // What reqwest would refuse is left to it, for its reason.
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = HeaderValue::from_str(value).ok()?;
        agent &= name != reqwest::header::USER_AGENT;
        accept &= name != reqwest::header::ACCEPT;
        host &= name != reqwest::header::HOST;
        request.extend_from_slice(name.as_str().as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    // The headers reqwest sends by default (`context::build_client`).
    if agent {
        request.extend_from_slice(
            concat!("user-agent: vigil/", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes(),
        );
    }
    if accept {
        request.extend_from_slice(b"accept: */*\r\n");
    }
    if host {
        request.extend_from_slice(b"host: ");
        // The URL's host as written (IPv6 in brackets) and its port unless the default.
        request.extend_from_slice(host_text.as_bytes());
        if let Some(port) = url.port() {
            request.extend_from_slice(format!(":{port}").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    Some(Target {
        dest,
        head_only,
        request: request.into_boxed_slice(),
        remote: AtomicBool::new(false),
    })
}

/// A parsed response head.
struct Head {
    code: u16,
    /// Bytes of the head in the buffer.
    len: usize,
    framing: Framing,
    /// HTTP/1.1 without `Connection: close`.
    keep_alive: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// Until the server closes.
    Close,
}

/// Why no head was read.
enum Early {
    /// The connection ended before any byte of a response.
    Nothing,
    /// Anything else (an error, a malformed or oversized head).
    Other,
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Head, Early> {
    loop {
        match read_more(stream, buf).await {
            Some(true) => {}
            Some(false) | None if buf.is_empty() => return Err(Early::Nothing),
            _ => return Err(Early::Other),
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                return parse_head(&response, len).ok_or(Early::Other);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            _ => return Err(Early::Other),
        }
    }
}

fn parse_head(response: &httparse::Response<'_, '_>, len: usize) -> Option<Head> {
    let code = response.code?;
    let mut keep_alive = response.version? == 1;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a lone `chunked` is read here.
            if chunked
                || !std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .eq_ignore_ascii_case("chunked")
            {
                return None;
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            let value = std::str::from_utf8(h.value).ok()?;
            if value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
            {
                keep_alive = false;
            }
        }
    }
    let framing = match (chunked, length) {
        (true, Some(_)) => return None,
        (true, None) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => {
            keep_alive = false;
            Framing::Close
        }
    };
    Some(Head {
        code,
        len,
        framing,
        keep_alive,
    })
}

/// Reads more into `buf`: `Some(true)` read some, `Some(false)` the peer closed, `None`
/// an error.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<bool> {
    buf.reserve(READ_CHUNK);
    match stream.read_buf(buf).await {
        Ok(0) => Some(false),
        Ok(_) => Some(true),
        Err(_) => None,
    }
}

/// Where a body's bytes go.
trait Sink {
    fn take(&mut self, data: &[u8]);
}

impl Sink for BodyScan<'_> {
    fn take(&mut self, data: &[u8]) {
        self.feed(data);
    }
}

/// A body not read.
struct Discard;

impl Sink for Discard {
    fn take(&mut self, _: &[u8]) {}
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The body ended.
    Ended,
    /// More bytes are needed.
    More,
    /// Malformed.
    Bad,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of chunk data left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailer,
    Done,
}

/// Takes a body's bytes out of the buffer as they arrive.
struct BodyReader {
    framing: Framing,
    chunk: ChunkState,
}

impl BodyReader {
    fn ended(&self) -> bool {
        match self.framing {
            Framing::Length(n) => n == 0,
            Framing::Chunked => self.chunk == ChunkState::Done,
            Framing::Close => false,
        }
    }

    /// Hands what `buf` holds of the body to `sink`, removing it from `buf`.
    fn next(&mut self, buf: &mut Vec<u8>, sink: &mut impl Sink) -> Step {
        match self.framing {
            Framing::Length(n) => {
                let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                sink.take(&buf[..take]);
                buf.drain(..take);
                self.framing = Framing::Length(n - take as u64);
                if n == take as u64 {
                    Step::Ended
                } else {
                    Step::More
                }
            }
            Framing::Close => {
                sink.take(buf);
                buf.clear();
                Step::More
            }
            Framing::Chunked => self.next_chunked(buf, sink),
        }
    }

    fn next_chunked(&mut self, buf: &mut Vec<u8>, sink: &mut impl Sink) -> Step {
        let mut at = 0;
        let step = loop {
            match self.chunk {
                ChunkState::Size => {
                    let Some(end) = line_end(&buf[at..]) else {
                        break if buf.len() - at > 1024 {
                            Step::Bad
                        } else {
                            Step::More
                        };
                    };
                    let line = &buf[at..at + end];
                    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                    let Some(size) = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| u64::from_str_radix(d.trim(), 16).ok())
                    else {
                        break Step::Bad;
                    };
                    at += end + 2;
                    self.chunk = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let have = buf.len() - at;
                    if have == 0 {
                        break Step::More;
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(have);
                    sink.take(&buf[at..at + take]);
                    at += take;
                    let left = left - take as u64;
                    self.chunk = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    if buf.len() - at < 2 {
                        break Step::More;
                    }
                    if &buf[at..at + 2] != b"\r\n" {
                        break Step::Bad;
                    }
                    at += 2;
                    self.chunk = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(end) = line_end(&buf[at..]) else {
                        break if buf.len() - at > MAX_HEAD {
                            Step::Bad
                        } else {
                            Step::More
                        };
                    };
                    at += end + 2;
                    if end == 0 {
                        self.chunk = ChunkState::Done;
                    }
                }
                ChunkState::Done => break Step::Ended,
            }
        };
        buf.drain(..at);
        step
    }
}

/// Where the first CRLF in `bytes` starts.
fn line_end(bytes: &[u8]) -> Option<usize> {
    memchr::memmem::find(bytes, b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<u8>);
    impl Sink for Collect {
        fn take(&mut self, data: &[u8]) {
            self.0.extend_from_slice(data);
        }
    }

    fn idle_count(pool: &Pool, dest: &Dest) -> usize {
        pool.idle.lock().unwrap().get(dest).map_or(0, Vec::len)
    }

    #[test]
    fn only_names_of_loopback_addresses_are_sent_here() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(all_loopback(&[a("[::1]:80"), a("127.0.0.1:80")]));
        assert!(all_loopback(&[a("127.0.1.1:80")]));
        assert!(all_loopback(&[a("[::ffff:127.0.0.1]:80")]));
        assert!(!all_loopback(&[a("127.0.0.1:80"), a("192.0.2.7:80")]));
        assert!(!all_loopback(&[a("[2001:db8::1]:80")]));
        assert!(!all_loopback(&[]));
    }

    /// `localhost` goes through this client, pooled by name: one connection serves every
    /// run (the server answers on 127.0.0.1 only, so whichever of `::1` and 127.0.0.1 the
    /// resolver lists first, the loopback one that accepts is used).
    #[tokio::test]
    async fn localhost_is_sent_here_and_pooled_by_name() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let check = HttpCheck::get(format!("http://localhost:{port}/health"));
        let cx = ProbeContext::new();
        for _ in 0..5 {
            let verdict = probe(&check, &cx).await;
            assert!(matches!(verdict, Some(Ok(_))), "{verdict:?}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        let dest = Dest::Name("localhost".into(), port);
        assert_eq!(idle_count(cx.http1_pool(), &dest), 1);
    }

    /// Connections idle for [`IDLE_TIMEOUT`] are closed when another is put, the newest is
    /// taken first, and none is taken once the newest has been idle too long.
    #[tokio::test(start_paused = true)]
    async fn idle_connections_expire_oldest_first() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dest = Dest::Addr(addr);
        let mut streams = Vec::new();
        for _ in 0..4 {
            streams.push(TcpStream::connect(addr).await.unwrap());
        }
        let local = |s: &TcpStream| s.local_addr().unwrap();
        let ports: Vec<SocketAddr> = streams.iter().map(local).collect();
        let pool = Pool::default();
        let mut streams = streams.into_iter();
        pool.put(&dest, streams.next().unwrap());
        tokio::time::advance(Duration::from_secs(20)).await;
        pool.put(&dest, streams.next().unwrap());
        tokio::time::advance(Duration::from_secs(15)).await;
        // The first has been idle 35 s: closed now. The second (15 s) stays.
        pool.put(&dest, streams.next().unwrap());
        assert_eq!(idle_count(&pool, &dest), 2);
        assert_eq!(local(&pool.take(&dest).unwrap()), ports[2]);
        pool.put(&dest, streams.next().unwrap());
        assert_eq!(local(&pool.take(&dest).unwrap()), ports[3]);
        assert_eq!(idle_count(&pool, &dest), 1);
        tokio::time::advance(IDLE_TIMEOUT).await;
        assert!(pool.take(&dest).is_none());
        assert_eq!(idle_count(&pool, &dest), 0);
    }

    /// A chunked body split at every possible point decodes the same.
    #[test]
    fn a_chunked_body_decodes_however_it_arrives() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for split in 1..wire.len() {
            let mut reader = BodyReader {
                framing: Framing::Chunked,
                chunk: ChunkState::Size,
            };
            let mut out = Collect(Vec::new());
            let mut buf = wire[..split].to_vec();
            assert_eq!(reader.next(&mut buf, &mut out), Step::More, "split {split}");
            buf.extend_from_slice(&wire[split..]);
            assert_eq!(
                reader.next(&mut buf, &mut out),
                Step::Ended,
                "split {split}"
            );
            assert_eq!(out.0, b"hello world");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_malformed_chunk_is_left_to_reqwest() {
        for wire in [&b"zz\r\nhello\r\n"[..], b"5\r\nhelloXX0\r\n\r\n"] {
            let mut reader = BodyReader {
                framing: Framing::Chunked,
                chunk: ChunkState::Size,
            };
            let mut buf = wire.to_vec();
            assert_eq!(reader.next(&mut buf, &mut Discard), Step::Bad);
        }
    }

    #[test]
    fn framing_follows_the_head() {
        let parse = |raw: &[u8]| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(len) = r.parse(raw).unwrap() else {
                panic!("partial");
            };
            parse_head(&r, len).map(|h| (h.framing, h.keep_alive))
        };
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Some((Framing::Length(5), true))
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, close\r\n\r\n"),
            Some((Framing::Chunked, false))
        );
        assert_eq!(
            parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Some((Framing::Length(0), false))
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\n\r\n"),
            Some((Framing::Close, false))
        );
        // What hyper would refuse or read otherwise is not read here.
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            None
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            None
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            None
        );
    }
}
