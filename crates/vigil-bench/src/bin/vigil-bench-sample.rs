//! `vigil-bench-sample`: samples another process's CPU time and memory.
//!
//! CPU is `utime + stime` from `/proc/PID/stat` (delta over the run, divided by
//! the wall time: percent of one core). Memory is RSS and PSS from
//! `/proc/PID/smaps_rollup`, sampled every `--interval-ms`; the report gives the
//! maximum over the samples and the last sample. Repeatable on a shared
//! machine, unlike wall-clock timings.
//!
//! ```text
//! vigil-bench-sample --pid PID --duration SECS [--interval-ms 1000] [--out PATH]
//! ```
//! Stops early (and says so) when the process exits; SIGTERM/SIGINT also stop
//! it early with a report.

use std::fs;
use std::process::ExitCode;
use std::time::Duration;

use vigil_bench::args::Args;
use vigil_bench::procfs::{self, Memory};
use vigil_bench::stats::num;
use vigil_bench::sys::{self, Signal};

const USAGE: &str =
    "usage: vigil-bench-sample --pid PID --duration SECS [--interval-ms 1000] [--out PATH]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-bench-sample: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[derive(Default)]
struct Max {
    rss: u64,
    pss: u64,
    pss_anon: u64,
    pss_file: u64,
    private_dirty: u64,
    threads: u64,
}

impl Max {
    fn update(&mut self, m: &Memory) {
        self.rss = self.rss.max(m.rss_kib);
        self.pss = self.pss.max(m.pss_kib);
        self.pss_anon = self.pss_anon.max(m.pss_anon_kib);
        self.pss_file = self.pss_file.max(m.pss_file_kib);
        self.private_dirty = self.private_dirty.max(m.private_dirty_kib);
        self.threads = self.threads.max(m.threads);
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "tick and nanosecond counts fit f64 for reporting"
)]
fn run() -> Result<(), String> {
    sys::block_signals().map_err(|e| format!("blocking signals: {e}"))?;
    let args = Args::parse(&[])?;
    let pid: u32 = args.required("pid")?;
    let duration_s: f64 = args.required("duration")?;
    let interval_ms: u64 = args.parsed_or("interval-ms", 1000)?;
    let out = args.get("out").map(str::to_owned);
    let tck = sys::clock_ticks_per_second();

    let cpu0 = procfs::read_stat(pid).map_err(|e| format!("pid {pid}: {e}"))?;
    let t0 = sys::monotonic_ns();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positive seconds, far below u64::MAX ns"
    )]
    let end = t0 + (duration_s.max(0.0) * 1e9) as u64;

    let mut max = Max::default();
    let mut last = procfs::read_memory(pid).map_err(|e| format!("pid {pid}: {e}"))?;
    max.update(&last);
    let mut samples = 1_u64;
    let mut cpu1 = cpu0;
    let mut t1 = t0;
    let mut exited = false;
    let mut interrupted = false;
    loop {
        let now = sys::monotonic_ns();
        if now >= end {
            break;
        }
        let wait = Duration::from_millis(interval_ms).min(Duration::from_nanos(end - now));
        if let Some(Signal::Stop) = sys::wait_signal(Some(wait)) {
            interrupted = true;
            break;
        }
        match (procfs::read_stat(pid), procfs::read_memory(pid)) {
            (Ok(c), Ok(m)) => {
                cpu1 = c;
                t1 = sys::monotonic_ns();
                last = m;
                max.update(&m);
                samples += 1;
            }
            _ => {
                exited = true;
                break;
            }
        }
    }
    if !exited && let Ok(c) = procfs::read_stat(pid) {
        cpu1 = c;
        t1 = sys::monotonic_ns();
    }

    let wall_s = (t1 - t0) as f64 / 1e9;
    let cpu_ticks = cpu1.total().saturating_sub(cpu0.total());
    let cpu_s = cpu_ticks as f64 / tck as f64;
    let user_s = cpu1.utime.saturating_sub(cpu0.utime) as f64 / tck as f64;
    let sys_s = cpu1.stime.saturating_sub(cpu0.stime) as f64 / tck as f64;
    let cpu_pct = if wall_s > 0.0 {
        100.0 * cpu_s / wall_s
    } else {
        0.0
    };
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");

    let json = format!(
        "{{\n  \"pid\": {pid},\n  \"wall_s\": {},\n  \"cpu_s\": {},\n  \"user_s\": {},\n  \"sys_s\": {},\n  \
\"cpu_pct_one_core\": {},\n  \"clk_tck\": {tck},\n  \"samples\": {samples},\n  \"exited\": {exited},\n  \
\"interrupted\": {interrupted},\n  \"loadavg_end\": \"{load}\",\n  \
\"max\": {{\"rss_kib\": {}, \"pss_kib\": {}, \"pss_anon_kib\": {}, \"pss_file_kib\": {}, \"private_dirty_kib\": {}, \"threads\": {}}},\n  \
\"last\": {{\"rss_kib\": {}, \"pss_kib\": {}, \"pss_anon_kib\": {}, \"pss_file_kib\": {}, \"private_dirty_kib\": {}, \"threads\": {}, \"vm_hwm_kib\": {}}}\n}}\n",
        num(wall_s),
        num(cpu_s),
        num(user_s),
        num(sys_s),
        num(cpu_pct),
        max.rss,
        max.pss,
        max.pss_anon,
        max.pss_file,
        max.private_dirty,
        max.threads,
        last.rss_kib,
        last.pss_kib,
        last.pss_anon_kib,
        last.pss_file_kib,
        last.private_dirty_kib,
        last.threads,
        last.hwm_kib,
    );
    match out {
        Some(p) => fs::write(&p, &json).map_err(|e| format!("{p}: {e}"))?,
        None => print!("{json}"),
    }
    eprintln!(
        "vigil-bench-sample: pid {pid}: cpu {cpu_s:.2}s over {wall_s:.1}s = {cpu_pct:.2}% of one core; \
max rss {} KiB, max pss {} KiB, threads {}; load {load}",
        max.rss, max.pss, max.threads
    );
    Ok(())
}
