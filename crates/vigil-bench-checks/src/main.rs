//! `vigil-bench-checks KIND N WARMUP [ARGS...]`: runs `vigil_checks::probe` for one check
//! kind `WARMUP` times (not measured: builds HTTP clients, log cursors, ...) and then `N`
//! times, in a tokio runtime shaped like the daemon's (multi-thread, 2 workers), and prints
//! one line of `key=value` pairs: CPU (user+sys, the whole process, all threads) and wall
//! time per run, plus how many runs passed. The measured loop also stops once it has run
//! for `VIGIL_BENCH_BUDGET_S` seconds of wall time (default 20), so a slow kind on a busy
//! host still finishes; `n=` reports the runs actually measured.
//!
//! CPU is read with `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)` around each probe call (the
//! same accounting as getrusage's `ru_utime + ru_stime`, at nanosecond resolution, and
//! safe through rustix); the user/sys split comes from `/proc/self/stat` over the whole
//! measured loop (clock-tick resolution).
//!
//! Kinds and their arguments:
//! - `http URL [PROXY_URL]` (proxy like `socks5h://127.0.0.1:1080`)
//! - `tcp HOST PORT`, `listening PORT`, `sockets PORT STATE` (`close-wait`, ...)
//! - `log PATH CHUNK_FILE`: before every run, `CHUNK_FILE`'s bytes are appended to `PATH`
//!   (outside the measured window)
//! - `exec PROGRAM [ARGS...]`, `redis HOST PORT`, `tls_cert HOST PORT`

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};
use vigil_checks::ProbeContext;
use vigil_config::model::{
    Argv, CheckKind, ExecCheck, HttpCheck, ListeningCheck, LogCheck, LogSource, Pattern, Protocol,
    Proxy, ProxyScheme, RedisCheck, Side, SocketsCheck, StatusSet, TcpCheck, TcpState,
    TlsCertCheck,
};

const TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-bench-checks: {e}");
            ExitCode::from(2)
        }
    }
}

struct Spec {
    kind: CheckKind,
    /// `log`: bytes appended before each run.
    append: Option<(std::path::PathBuf, Vec<u8>)>,
}

fn arg(args: &[String], i: usize, what: &str) -> Result<String, String> {
    args.get(i)
        .cloned()
        .ok_or_else(|| format!("missing {what}"))
}

fn port(s: &str) -> Result<u16, String> {
    s.parse().map_err(|e| format!("port {s}: {e}"))
}

fn parse_proxy(url: &str) -> Result<Proxy, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("proxy {url}: no scheme"))?;
    let scheme = match scheme {
        "socks5" => ProxyScheme::Socks5,
        "socks5h" => ProxyScheme::Socks5h,
        "http" => ProxyScheme::Http,
        other => return Err(format!("proxy scheme {other}")),
    };
    let (host, p) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("proxy {url}: no port"))?;
    Ok(Proxy {
        url: url.to_owned(),
        scheme,
        host: host.to_owned(),
        port: port(p)?,
        username: None,
        password: None,
    })
}

fn state(s: &str) -> Result<TcpState, String> {
    TcpState::ALL
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| format!("unknown tcp state {s}"))
}

fn spec(kind: &str, a: &[String]) -> Result<Spec, String> {
    let kind = match kind {
        "http" => CheckKind::Http(HttpCheck {
            url: arg(a, 0, "URL")?,
            method: "GET".to_owned(),
            expect_status: StatusSet::default(),
            body_contains: None,
            body_regex: None,
            headers: Vec::new(),
            ca_file: None,
            insecure: false,
            follow_redirects: false,
            max_body: 1024 * 1024,
            proxy: a.get(1).map(|p| parse_proxy(p)).transpose()?,
            max_latency: None,
            client_cert: None,
        }),
        "tcp" => CheckKind::Tcp(TcpCheck {
            host: arg(a, 0, "HOST")?,
            port: port(&arg(a, 1, "PORT")?)?,
        }),
        "listening" => CheckKind::Listening(ListeningCheck {
            port: port(&arg(a, 0, "PORT")?)?,
            protocol: Protocol::Tcp,
            address: None,
        }),
        "sockets" => CheckKind::Sockets(SocketsCheck {
            port: port(&arg(a, 0, "PORT")?)?,
            state: state(&arg(a, 1, "STATE")?)?,
            side: Side::Local,
            max: 1_000_000,
        }),
        "log" => {
            let path = std::path::PathBuf::from(arg(a, 0, "PATH")?);
            let chunk_file = arg(a, 1, "CHUNK_FILE")?;
            let chunk = std::fs::read(&chunk_file).map_err(|e| format!("{chunk_file}: {e}"))?;
            let regex = regex::Regex::new("error").map_err(|e| e.to_string())?;
            return Ok(Spec {
                kind: CheckKind::Log(LogCheck {
                    source: LogSource::File(path.clone()),
                    pattern: Pattern(regex),
                    min_matches: 1,
                }),
                append: Some((path, chunk)),
            });
        }
        "exec" => CheckKind::Exec(ExecCheck {
            command: Argv::new(a.to_vec()).ok_or("exec needs a program")?,
            expect_exit: 0,
            stdout_contains: None,
        }),
        "redis" => CheckKind::Redis(RedisCheck {
            host: arg(a, 0, "HOST")?,
            port: port(&arg(a, 1, "PORT")?)?,
            username: None,
            password: None,
            tls: None,
        }),
        "tls_cert" => CheckKind::TlsCert(TlsCertCheck {
            host: arg(a, 0, "HOST")?,
            port: port(&arg(a, 1, "PORT")?)?,
            server_name: Some("localhost".to_owned()),
            warn_days: 14,
            critical_days: 3,
            proxy: None,
        }),
        other => return Err(format!("unknown kind {other}")),
    };
    Ok(Spec { kind, append: None })
}

fn cpu_ns() -> u128 {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    u128::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u128::try_from(t.tv_nsec).unwrap_or(0)
}

fn mono_ns() -> u128 {
    let t = clock_gettime(ClockId::Monotonic);
    u128::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u128::try_from(t.tv_nsec).unwrap_or(0)
}

/// (utime, stime) in clock ticks from `/proc/self/stat`.
fn proc_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`; utime and stime are fields 14 and 15 (1-based).
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|s| s.parse().ok()).unwrap_or(0);
    (get(11), get(12))
}

fn append(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("append {}: {e}", path.display()))
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = arg(&args, 0, "KIND")?;
    let n: u32 = arg(&args, 1, "N")?.parse().map_err(|e| format!("N: {e}"))?;
    let warmup: u32 = arg(&args, 2, "WARMUP")?
        .parse()
        .map_err(|e| format!("WARMUP: {e}"))?;
    let spec = spec(&kind, &args[3..])?;
    vigil_checks::install_crypto_provider();
    // The daemon's runtime (vigild/src/cli.rs): multi-thread, two workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let cx = ProbeContext::new();
    let budget_s: u64 = std::env::var("VIGIL_BENCH_BUDGET_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let budget_ns = u128::from(budget_s) * 1_000_000_000;
    let result = runtime.block_on(async move {
        let handle = tokio::spawn(async move {
            let mut last = String::new();
            for _ in 0..warmup {
                if let Some((path, bytes)) = &spec.append {
                    append(path, bytes)?;
                }
                last = vigil_checks::probe(&spec.kind, TIMEOUT, &cx).await.reason;
            }
            let (u0, s0) = proc_ticks();
            let (mut cpu, mut wall, mut passed, mut runs) = (0u128, 0u128, 0u32, 0u32);
            let start = mono_ns();
            while runs < n && mono_ns() - start < budget_ns {
                if let Some((path, bytes)) = &spec.append {
                    append(path, bytes)?;
                }
                let (c0, w0) = (cpu_ns(), mono_ns());
                let out = vigil_checks::probe(&spec.kind, TIMEOUT, &cx).await;
                let (c1, w1) = (cpu_ns(), mono_ns());
                cpu += c1 - c0;
                wall += w1 - w0;
                passed += u32::from(out.passed);
                runs += 1;
                last = out.reason;
            }
            let (u1, s1) = proc_ticks();
            Ok::<_, String>((cpu, wall, passed, runs, u1 - u0, s1 - s0, last))
        });
        handle.await.map_err(|e| format!("join: {e}"))?
    })?;
    let (cpu, wall, passed, n, uticks, sticks, last) = result;
    let per = |ns: u128| ns as f64 / 1000.0 / f64::from(n.max(1));
    let total_ticks = (uticks + sticks).max(1) as f64;
    println!(
        "kind={kind} n={n} cpu_us={:.1} wall_us={:.1} user_share={:.2} sys_share={:.2} passed={passed} last_reason={:?}",
        per(cpu),
        per(wall),
        uticks as f64 / total_ticks,
        sticks as f64 / total_ticks,
        last,
    );
    Ok(())
}
