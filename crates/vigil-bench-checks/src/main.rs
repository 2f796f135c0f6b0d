//! `vigil-bench-checks KIND N WARMUP [ARGS...]`: runs `vigil_checks::probe` for one check
//! kind `WARMUP` times (not measured: builds HTTP clients, log cursors, ...) and then `N`
//! times, in a tokio runtime, and prints one line of `key=value` pairs: CPU (user+sys, the
//! whole process, all threads) and wall time per run, plus how many runs passed. The
//! measured loop also stops once it has run for `VIGIL_BENCH_BUDGET_S` seconds of wall time
//! (default 20), so a slow kind on a busy host still finishes; `n=` reports the runs
//! actually measured.
//!
//! Per run CPU is also kept, and its median and 99th percentile printed (`cpu_p50_us=`,
//! `cpu_p99_us=`).
//!
//! `VIGIL_BENCH_RT` picks the runtime: `multi` (the default: multi-thread with two workers,
//! the shape of the earlier published figures) or `current` (the daemon's runtime today:
//! one thread runs every task, as in vigild's `cli::block_on`).
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
//! - `journal ROOT SOCKET UNIT UNIT_PID NOISE_PID K NOISE_K`: a `journal_unit` log check on
//!   the journal files under `ROOT`; before every run (outside the measured window) `K`
//!   entries of `UNIT` (1 in 10 says "error") and `NOISE_K` of another unit are sent to
//!   journald's `SOCKET` and waited for (see `journal_feed`). Prints `last_batch_us=`, the
//!   realtime before the last batch, for the shell twin's `--since`.
//! - `process pid_file PATH [LIMIT...]` or `process name NAME [LIMIT...]`: a `process` check
//!   by pid file or by name. Each `LIMIT` (`rss`, `fds`, `threads`, `cpu`, or `all` for
//!   the four) sets that limit to a value no process here reaches (1 TiB, 1M fds, 100k
//!   threads, 10,000 %), so the run reads what the limit needs and passes. `cpu` samples
//!   for 200 ms per run (the probe's window), which caps the runs the budget allows.
//! - `file_age PATH [MAX_AGE_S]` (default 3600 s)
//! - `interface NAME [no-carrier]` (`require_carrier = true` unless `no-carrier`)
//!
//! Two more modes measure one large run instead of many small ones:
//! - `journal-fill ROOT SOCKET UNIT_PID NOISE_PID TOTAL UNIT_PERMILLE`: writes `TOTAL`
//!   entries, `UNIT_PERMILLE`/1000 of them the unit's (a journal's history).
//! - `journal-scan ROOT SOCKET UNIT UNIT_PID NOISE_PID TOTAL UNIT_PERMILLE`: a first run
//!   (at the end), then `TOTAL` new entries, then one measured run that reads them: journal
//!   bytes written, CPU, MB/s of journal data and entries/s.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};
use vigil_checks::ProbeContext;
use vigil_config::model::{
    Argv, CheckKind, ExecCheck, FileAgeCheck, HttpCheck, InterfaceCheck, JournalSource,
    ListeningCheck, LogCheck, LogSource, Pattern, ProcessCheck, ProcessTarget, Protocol, Proxy,
    ProxyScheme, RedisCheck, Side, SocketsCheck, TcpCheck, TcpState, TlsCertCheck,
};

mod journal_feed;

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
    /// `journal`: entries sent to journald before each run (unit's, other unit's).
    journal: Option<(journal_feed::Feed, u64, u64)>,
}

fn num(args: &[String], i: usize, what: &str) -> Result<u64, String> {
    arg(args, i, what)?
        .parse()
        .map_err(|e| format!("{what}: {e}"))
}

fn pid_arg(args: &[String], i: usize, what: &str) -> Result<i32, String> {
    arg(args, i, what)?
        .parse()
        .map_err(|e| format!("{what}: {e}"))
}

fn journal_check(root: &str, unit: &str, pattern: &str) -> Result<CheckKind, String> {
    Ok(CheckKind::Log(LogCheck {
        source: LogSource::Journal(JournalSource {
            unit: unit.to_owned(),
            directory: Some(std::path::PathBuf::from(root)),
        }),
        pattern: Pattern(regex::Regex::new(pattern).map_err(|e| e.to_string())?),
        min_matches: 1,
    }))
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

/// `process pid_file PATH [LIMIT...]` / `process name NAME [LIMIT...]`.
fn process_check(a: &[String]) -> Result<ProcessCheck, String> {
    let target = match arg(a, 0, "pid_file or name")?.as_str() {
        "pid_file" => ProcessTarget::PidFile(arg(a, 1, "PATH")?.into()),
        "name" => ProcessTarget::Name(arg(a, 1, "NAME")?),
        other => return Err(format!("process target {other}: want pid_file or name")),
    };
    let mut check = ProcessCheck {
        target,
        max_rss: None,
        max_fds: None,
        max_threads: None,
        max_cpu_percent: None,
    };
    for limit in a.iter().skip(2) {
        let all = limit == "all";
        match limit.as_str() {
            "rss" | "fds" | "threads" | "cpu" | "all" => {}
            other => {
                return Err(format!(
                    "process limit {other}: want rss, fds, threads, cpu or all"
                ));
            }
        }
        if all || limit == "rss" {
            check.max_rss = Some(1 << 40);
        }
        if all || limit == "fds" {
            check.max_fds = Some(1_000_000);
        }
        if all || limit == "threads" {
            check.max_threads = Some(100_000);
        }
        if all || limit == "cpu" {
            check.max_cpu_percent = Some(10_000.0);
        }
    }
    Ok(check)
}

fn spec(kind: &str, a: &[String]) -> Result<Spec, String> {
    let kind = match kind {
        "http" => CheckKind::Http(HttpCheck {
            proxy: a.get(1).map(|p| parse_proxy(p)).transpose()?,
            ..HttpCheck::get(arg(a, 0, "URL")?)
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
                journal: None,
            });
        }
        "journal" => {
            let root = arg(a, 0, "ROOT")?;
            let feed = journal_feed::Feed::new(
                std::path::Path::new(&arg(a, 1, "SOCKET")?),
                std::path::Path::new(&root),
                pid_arg(a, 3, "UNIT_PID")?,
                pid_arg(a, 4, "NOISE_PID")?,
            )?;
            return Ok(Spec {
                kind: journal_check(&root, &arg(a, 2, "UNIT")?, "error")?,
                append: None,
                journal: Some((feed, num(a, 5, "K")?, num(a, 6, "NOISE_K")?)),
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
        "process" => CheckKind::Process(process_check(a)?),
        "file_age" => {
            let max_age = match a.get(1) {
                Some(s) => s.parse().map_err(|e| format!("MAX_AGE_S: {e}"))?,
                None => 3600,
            };
            let max_age = Duration::from_secs(max_age);
            CheckKind::FileAge(FileAgeCheck {
                path: arg(a, 0, "PATH")?.into(),
                max_age,
                fast_every: max_age / 10,
            })
        }
        "interface" => CheckKind::Interface(InterfaceCheck {
            interface: arg(a, 0, "NAME")?,
            require_carrier: match a.get(1).map(String::as_str) {
                None => true,
                Some("no-carrier") => false,
                Some(other) => return Err(format!("interface: {other}: want no-carrier")),
            },
        }),
        other => return Err(format!("unknown kind {other}")),
    };
    Ok(Spec {
        kind,
        append: None,
        journal: None,
    })
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
    if kind == "journal-fill" || kind == "journal-scan" {
        return journal_scan(&kind, &args[1..]);
    }
    let n: u32 = arg(&args, 1, "N")?.parse().map_err(|e| format!("N: {e}"))?;
    let warmup: u32 = arg(&args, 2, "WARMUP")?
        .parse()
        .map_err(|e| format!("WARMUP: {e}"))?;
    let mut spec = spec(&kind, &args[3..])?;
    vigil_checks::install_crypto_provider();
    let runtime = match std::env::var("VIGIL_BENCH_RT").as_deref() {
        // The daemon's runtime today (vigild/src/cli/mod.rs `block_on`): one thread runs
        // every task.
        Ok("current") => tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(8)
            .thread_keep_alive(Duration::from_secs(2))
            .enable_all()
            .build(),
        // The shape the earlier figures were measured in: multi-thread, two workers.
        Ok("multi") | Err(_) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        Ok(other) => return Err(format!("VIGIL_BENCH_RT={other}: want current or multi")),
    }
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
            let mut last_batch_us = 0u64;
            for _ in 0..warmup {
                if let Some((path, bytes)) = &spec.append {
                    append(path, bytes)?;
                }
                if let Some((feed, k, noise)) = &mut spec.journal {
                    last_batch_us = feed.batch(*k, *noise)?;
                }
                last = vigil_checks::probe(&spec.kind, TIMEOUT, &cx).await.reason;
            }
            let mut per_run = Vec::with_capacity(n.min(1_000_000) as usize);
            let (u0, s0) = proc_ticks();
            let (mut cpu, mut wall, mut passed, mut runs) = (0u128, 0u128, 0u32, 0u32);
            let start = mono_ns();
            while runs < n && mono_ns() - start < budget_ns {
                if let Some((path, bytes)) = &spec.append {
                    append(path, bytes)?;
                }
                if let Some((feed, k, noise)) = &mut spec.journal {
                    last_batch_us = feed.batch(*k, *noise)?;
                }
                let (c0, w0) = (cpu_ns(), mono_ns());
                let out = vigil_checks::probe(&spec.kind, TIMEOUT, &cx).await;
                let (c1, w1) = (cpu_ns(), mono_ns());
                cpu += c1 - c0;
                per_run.push(c1 - c0);
                wall += w1 - w0;
                passed += u32::from(out.passed);
                runs += 1;
                last = out.reason;
            }
            let (u1, s1) = proc_ticks();
            per_run.sort_unstable();
            Ok::<_, String>((
                (cpu, percentile(&per_run, 50), percentile(&per_run, 99)),
                wall,
                passed,
                runs,
                u1 - u0,
                s1 - s0,
                last,
                last_batch_us,
            ))
        });
        handle.await.map_err(|e| format!("join: {e}"))?
    })?;
    let ((cpu, p50, p99), wall, passed, n, uticks, sticks, last, last_batch_us) = result;
    let per = |ns: u128| ns as f64 / 1000.0 / f64::from(n.max(1));
    let total_ticks = (uticks + sticks).max(1) as f64;
    println!(
        "kind={kind} n={n} cpu_us={:.1} wall_us={:.1} user_share={:.2} sys_share={:.2} passed={passed} cpu_p50_us={:.1} cpu_p99_us={:.1} last_batch_us={last_batch_us} last_reason={:?}",
        per(cpu),
        per(wall),
        uticks as f64 / total_ticks,
        sticks as f64 / total_ticks,
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        last,
    );
    Ok(())
}

/// The `pct`th percentile (nearest rank) of sorted `values`; 0 when empty.
fn percentile(sorted: &[u128], pct: usize) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// `journal-fill` and `journal-scan` (see the crate documentation).
fn journal_scan(mode: &str, a: &[String]) -> Result<(), String> {
    let root = arg(a, 0, "ROOT")?;
    let socket = arg(a, 1, "SOCKET")?;
    let (unit, rest) = if mode == "journal-scan" {
        (arg(a, 2, "UNIT")?, &a[3..])
    } else {
        (String::new(), &a[2..])
    };
    let mut feed = journal_feed::Feed::new(
        std::path::Path::new(&socket),
        std::path::Path::new(&root),
        pid_arg(rest, 0, "UNIT_PID")?,
        pid_arg(rest, 1, "NOISE_PID")?,
    )?;
    let total = num(rest, 2, "TOTAL")?;
    let permille = num(rest, 3, "UNIT_PERMILLE")?.min(1000);
    let unit_n = total * permille / 1000;
    // In chunks, so that the socket's queue never holds the whole batch.
    let write = |feed: &mut journal_feed::Feed| -> Result<(), String> {
        let chunk = 10_000u64;
        let mut done = 0;
        while done < total {
            let n = chunk.min(total - done);
            let u = (done + n) * permille / 1000 - done * permille / 1000;
            feed.batch(u, n - u)?;
            done += n;
        }
        Ok(())
    };
    if mode == "journal-fill" {
        write(&mut feed)?;
        println!(
            "kind=journal-fill total={total} unit_entries={unit_n} entries_now={}",
            feed.entries()?
        );
        return Ok(());
    }
    // A pattern that never matches: the regex runs over every message, and the reason
    // says how many entries were read.
    let kind = journal_check(&root, &unit, "no such text in any message")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let cx = ProbeContext::new();
    let first = runtime.block_on(vigil_checks::probe(&kind, TIMEOUT, &cx));
    let bytes0 = journal_feed::journal_bytes(std::path::Path::new(&root))?;
    write(&mut feed)?;
    let bytes1 = journal_feed::journal_bytes(std::path::Path::new(&root))?;
    let (c0, w0) = (cpu_ns(), mono_ns());
    let out = runtime.block_on(vigil_checks::probe(&kind, TIMEOUT, &cx));
    let (c1, w1) = (cpu_ns(), mono_ns());
    let cpu_s = (c1 - c0) as f64 / 1e9;
    let grown = bytes1.saturating_sub(bytes0);
    println!(
        "kind=journal-scan total={total} unit_entries={unit_n} journal_bytes={grown} cpu_us={:.1} wall_us={:.1} mb_per_s={:.0} entries_per_s={:.0} unit_entries_per_s={:.0} first_reason={:?} reason={:?}",
        cpu_s * 1e6,
        (w1 - w0) as f64 / 1e3,
        grown as f64 / 1e6 / cpu_s,
        total as f64 / cpu_s,
        unit_n as f64 / cpu_s,
        first.reason,
        out.reason,
    );
    Ok(())
}
