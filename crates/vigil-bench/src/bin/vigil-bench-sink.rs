//! `vigil-bench-sink`: a loopback HTTP/1.1 server that answers every request
//! `200 OK` and records, per request path, when each request arrived
//! (`CLOCK_MONOTONIC` ns, taken when the request line has been read).
//!
//! On SIGTERM/SIGINT, or after `--duration` seconds, it writes a JSON report:
//! per path the intervals between consecutive arrivals, and overall the
//! distribution of `|interval - expected|` (the check start jitter as seen from
//! the server: it includes loopback latency and connection setup on the client).
//! SIGUSR1 discards everything recorded so far (end of a warm-up); SIGUSR2 ends
//! the measurement window (requests are still answered, no longer recorded), so
//! that stopping the client afterwards does not pollute the report.
//!
//! ```text
//! vigil-bench-sink --port-file PATH [--report PATH] [--expect-interval-ms 1000]
//!                  [--duration SECS] [--bind 127.0.0.1:0] [--no-per-path]
//! ```
//!
//! One thread per connection (small stacks): HTTP/1.1 keep-alive clients such
//! as reqwest's pool hold few connections, and a blocked thread costs no CPU.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use vigil_bench::args::Args;
use vigil_bench::stats::{Summary, num, string};
use vigil_bench::sys::{self, Signal};

const USAGE: &str = "usage: vigil-bench-sink --port-file PATH [--report PATH] \
[--expect-interval-ms 1000] [--duration SECS] [--bind 127.0.0.1:0] [--no-per-path]";

/// Longest request head we accept (request line + headers).
const MAX_HEAD: usize = 16 * 1024;

#[derive(Default)]
struct Recorder {
    /// Start of the measurement window (sink start, or the last SIGUSR1).
    window_start_ns: u64,
    /// End of the measurement window (SIGUSR2), if frozen.
    window_end_ns: Option<u64>,
    arrivals: HashMap<String, Vec<u64>>,
    connections_accepted: u64,
}

struct Shared {
    rec: Mutex<Recorder>,
    open_connections: AtomicU64,
    max_open_connections: AtomicU64,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-bench-sink: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    // Before any thread exists, so that every thread inherits the mask.
    sys::block_signals().map_err(|e| format!("blocking signals: {e}"))?;
    let args = Args::parse(&["no-per-path"])?;
    let port_file: String = args.required("port-file")?;
    let report_path = args.get("report").map(str::to_owned);
    let expect_ms: f64 = args.parsed_or("expect-interval-ms", 1000.0)?;
    let duration: Option<f64> = args
        .get("duration")
        .map(str::parse)
        .transpose()
        .map_err(|e: std::num::ParseFloatError| format!("--duration: {e}"))?;
    let bind = args.get("bind").unwrap_or("127.0.0.1:0");
    let per_path = !args.switch("no-per-path");

    let listener = TcpListener::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let tmp = format!("{port_file}.tmp");
    fs::write(&tmp, format!("{port}\n")).map_err(|e| format!("{tmp}: {e}"))?;
    fs::rename(&tmp, &port_file).map_err(|e| format!("{port_file}: {e}"))?;

    let started_ns = sys::monotonic_ns();
    let shared = Arc::new(Shared {
        rec: Mutex::new(Recorder {
            window_start_ns: started_ns,
            ..Recorder::default()
        }),
        open_connections: AtomicU64::new(0),
        max_open_connections: AtomicU64::new(0),
    });

    {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("accept".into())
            .spawn(move || accept_loop(&listener, &shared))
            .map_err(|e| format!("spawn: {e}"))?;
    }
    eprintln!("vigil-bench-sink: listening on 127.0.0.1:{port}");

    let deadline_ns = duration.map(|d| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "durations are positive seconds, far below u64::MAX ns"
        )]
        let ns = (d.max(0.0) * 1e9) as u64;
        started_ns + ns
    });
    loop {
        let timeout =
            deadline_ns.map(|d| Duration::from_nanos(d.saturating_sub(sys::monotonic_ns())));
        if timeout.is_some_and(|t| t.is_zero()) {
            break;
        }
        match sys::wait_signal(timeout) {
            Some(Signal::Reset) => {
                let mut rec = shared.rec.lock().unwrap_or_else(PoisonError::into_inner);
                rec.window_start_ns = sys::monotonic_ns();
                rec.window_end_ns = None;
                rec.arrivals.clear();
                rec.connections_accepted = 0;
                shared.max_open_connections.store(
                    shared.open_connections.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                eprintln!("vigil-bench-sink: window reset");
            }
            Some(Signal::Freeze) => {
                let mut rec = shared.rec.lock().unwrap_or_else(PoisonError::into_inner);
                if rec.window_end_ns.is_none() {
                    rec.window_end_ns = Some(sys::monotonic_ns());
                    eprintln!("vigil-bench-sink: window frozen");
                }
            }
            Some(Signal::Stop) | None => break,
        }
    }

    let stop_ns = sys::monotonic_ns();
    let report = {
        let rec = shared.rec.lock().unwrap_or_else(PoisonError::into_inner);
        build_report(
            &rec,
            stop_ns,
            expect_ms,
            shared.max_open_connections.load(Ordering::Relaxed),
            per_path,
        )
    };
    match report_path {
        Some(p) => {
            let tmp = format!("{p}.tmp");
            fs::write(&tmp, &report.json).map_err(|e| format!("{tmp}: {e}"))?;
            fs::rename(&tmp, &p).map_err(|e| format!("{p}: {e}"))?;
        }
        None => println!("{}", report.json),
    }
    eprintln!("{}", report.text);
    // Connection threads are still blocked in read(); exiting the process ends them.
    std::process::exit(0);
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        {
            let mut rec = shared.rec.lock().unwrap_or_else(PoisonError::into_inner);
            if rec.window_end_ns.is_none() {
                rec.connections_accepted += 1;
            }
        }
        let open = shared.open_connections.fetch_add(1, Ordering::Relaxed) + 1;
        shared
            .max_open_connections
            .fetch_max(open, Ordering::Relaxed);
        let shared2 = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = serve(stream, &shared2);
                shared2.open_connections.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Serve requests on one connection until the peer closes it (keep-alive).
fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(4096, stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let arrived_ns = sys::monotonic_ns();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            // Stray CRLF between requests (allowed by RFC 9112).
            continue;
        }
        let mut parts = trimmed.split(' ');
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("/");
        let version = parts.next().unwrap_or("HTTP/1.0");
        let path = target.split('?').next().unwrap_or(target).to_owned();
        let mut keep_alive = version == "HTTP/1.1";

        // Headers.
        let mut content_length: u64 = 0;
        let mut chunked = false;
        let mut head_len = line.len();
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                return Ok(());
            }
            head_len += n;
            if head_len > MAX_HEAD {
                return Ok(());
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = !value.eq_ignore_ascii_case("identity");
                } else if name.eq_ignore_ascii_case("connection") {
                    let v = value.to_ascii_lowercase();
                    if v.contains("close") {
                        keep_alive = false;
                    } else if v.contains("keep-alive") {
                        keep_alive = true;
                    }
                }
            }
        }
        if content_length > 0 {
            io::copy(&mut (&mut reader).take(content_length), &mut io::sink())?;
        }
        if chunked {
            // Not worth decoding for a benchmark sink: answer, then close.
            keep_alive = false;
        }

        {
            let mut rec = shared.rec.lock().unwrap_or_else(PoisonError::into_inner);
            if arrived_ns >= rec.window_start_ns && rec.window_end_ns.is_none() {
                rec.arrivals.entry(path).or_default().push(arrived_ns);
            }
        }

        let body: &[u8] = if method == "HEAD" { b"" } else { b"ok\n" };
        let conn = if keep_alive { "keep-alive" } else { "close" };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: {conn}\r\n\r\n"
        );
        let mut resp = Vec::with_capacity(head.len() + body.len());
        resp.extend_from_slice(head.as_bytes());
        resp.extend_from_slice(body);
        writer.write_all(&resp)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

struct Report {
    json: String,
    text: String,
}

#[expect(
    clippy::cast_precision_loss,
    reason = "nanosecond deltas and counts fit f64 for reporting"
)]
fn build_report(
    rec: &Recorder,
    stop_ns: u64,
    expect_ms: f64,
    max_open: u64,
    per_path: bool,
) -> Report {
    let end_ns = rec.window_end_ns.unwrap_or(stop_ns);
    let window_s = end_ns.saturating_sub(rec.window_start_ns) as f64 / 1e9;
    let mut paths: Vec<(&String, &Vec<u64>)> = rec.arrivals.iter().collect();
    paths.sort_by(|a, b| a.0.cmp(b.0));

    let mut deviations = Vec::new();
    let mut intervals_all = Vec::new();
    let mut all_arrivals = Vec::new();
    let mut requests = 0_usize;
    let mut late = 0_usize;
    let mut per_path_json = String::new();
    for (i, (path, arrivals)) in paths.iter().enumerate() {
        requests += arrivals.len();
        all_arrivals.extend_from_slice(arrivals);
        let mut sorted = (*arrivals).clone();
        sorted.sort_unstable();
        let intervals: Vec<f64> = sorted
            .windows(2)
            .map(|w| (w[1] - w[0]) as f64 / 1e6)
            .collect();
        for &iv in &intervals {
            deviations.push((iv - expect_ms).abs());
            if iv > expect_ms * 1.5 {
                late += 1;
            }
        }
        intervals_all.extend_from_slice(&intervals);
        if per_path {
            if i > 0 {
                per_path_json.push_str(",\n");
            }
            let list: Vec<String> = intervals.iter().map(|&v| num(v)).collect();
            let _ = write!(
                per_path_json,
                "    {}: {{\"count\": {}, \"intervals_ms\": [{}]}}",
                string(path),
                arrivals.len(),
                list.join(", ")
            );
        }
    }

    // Burstiness: the most requests that arrived within one 10 ms bucket.
    all_arrivals.sort_unstable();
    let mut burst_max = 0_usize;
    let mut lo = 0_usize;
    for hi in 0..all_arrivals.len() {
        while all_arrivals[hi] - all_arrivals[lo] >= 10_000_000 {
            lo += 1;
        }
        burst_max = burst_max.max(hi - lo + 1);
    }

    let jitter = Summary::of(&mut deviations);
    let interval = Summary::of(&mut intervals_all);
    let min_interval = intervals_all.first().copied();
    let rate = if window_s > 0.0 {
        requests as f64 / window_s
    } else {
        0.0
    };
    let opt = |s: Option<Summary>| s.map_or_else(|| "null".to_owned(), |s| s.to_json());

    let mut json = String::new();
    let _ = write!(
        json,
        "{{\n  \"note\": \"jitter = |interval between consecutive arrivals of one path - expected|, \
measured at the server: includes loopback latency and client connection setup\",\n  \
\"expect_interval_ms\": {},\n  \"window_s\": {},\n  \"requests\": {},\n  \"paths\": {},\n  \
\"requests_per_s\": {},\n  \"connections_accepted\": {},\n  \"max_open_connections\": {},\n  \
\"burst_max_per_10ms\": {},\n  \"late_intervals_over_1_5x\": {},\n  \"jitter_ms\": {},\n  \
\"interval_ms\": {},\n  \"interval_min_ms\": {}",
        num(expect_ms),
        num(window_s),
        requests,
        paths.len(),
        num(rate),
        rec.connections_accepted,
        max_open,
        burst_max,
        late,
        opt(jitter),
        opt(interval),
        min_interval.map_or_else(|| "null".to_owned(), num),
    );
    if per_path {
        let _ = write!(json, ",\n  \"per_path\": {{\n{per_path_json}\n  }}");
    }
    json.push_str("\n}\n");

    let text = jitter.map_or_else(
        || format!("vigil-bench-sink: {requests} requests in {window_s:.1}s, no intervals"),
        |j| {
            format!(
                "vigil-bench-sink: {requests} requests on {} paths in {window_s:.1}s ({rate:.1}/s); \
jitter |interval-{expect_ms}ms| p50 {:.3} p90 {:.3} p99 {:.3} max {:.3} ms; late {late}; \
burst {burst_max}/10ms; connections {} (max open {max_open})",
                paths.len(),
                j.p50,
                j.p90,
                j.p99,
                j.max,
                rec.connections_accepted
            )
        },
    );
    Report { json, text }
}
