//! `vigil-bench-systemd BUS_ADDRESS UNIT N LEADER_PID`: restart-decision-to-active time of a
//! systemd unit, Vigil over D-Bus versus `systemctl restart` run inside the container, in
//! one run and interleaved (Vigil, systemctl, Vigil, ...), so both see the same load.
//!
//! Vigil side: exactly the systemd driver's path (`vigil_checks::systemd::Bus::restart_unit`
//! on the shared connection: `Subscribe` and the `JobRemoved` match set up once per
//! connection, then per restart `RestartUnit` mode `replace` and the wait for the job's
//! `JobRemoved`), timed from the call to the job's end,
//! which for a `Type=simple` unit is the moment it is active again; `report` adds the
//! unit-state read the driver does before it reports, `queued` is the `RestartUnit` round
//! trip alone (call to the reply naming the job).
//! systemctl side: `nsenter -t LEADER -a systemctl restart UNIT`, timed from spawn to exit
//! (systemctl talks to PID 1 over its private socket, waits for the job the same way).
//!
//! systemd's own job time for every restart, either side: `ActiveEnterTimestampMonotonic -
//! ActiveExitTimestampMonotonic` of the unit (from leaving `active` to being `active`
//! again, as systemd stamped it). Overhead = measured time - that span: the client's cost
//! plus the IPC hops and systemd's job bookkeeping around the span (an upper bound on what
//! the client adds).
//!
//! `cpu` is this process's CPU time (user+sys, all threads) across the restart call: what
//! Vigil's own code costs per restart, whatever the machine's load.
//!
//! Prints `key=value` lines: for each side the median, p90 and p99 of the measured time,
//! the job span and the overhead, in microseconds.

use std::process::ExitCode;
use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};
use tokio::time::Instant;
use vigil_checks::model::{Argv, SystemdBus};
use vigil_checks::process::{self, RunSpec};
use vigil_checks::systemd::{Bus, Buses, JobEnd};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 4 {
        eprintln!("usage: vigil-bench-systemd BUS_ADDRESS UNIT N LEADER_PID");
        return ExitCode::from(2);
    }
    // The daemon's runtime shape (one worker thread; see vigild's main).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vigil-bench-systemd: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-bench-systemd: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Default)]
struct Side {
    measured: Vec<u64>,
    span: Vec<u64>,
    overhead: Vec<i64>,
}

async fn span(bus: &Bus, unit: &str) -> Result<u64, String> {
    let exit = bus
        .unit_u64(unit, "ActiveExitTimestampMonotonic")
        .await
        .map_err(|e| e.to_string())?;
    let enter = bus
        .unit_u64(unit, "ActiveEnterTimestampMonotonic")
        .await
        .map_err(|e| e.to_string())?;
    enter
        .checked_sub(exit)
        .ok_or_else(|| format!("{unit}: ActiveEnter {enter} before ActiveExit {exit}"))
}

async fn run(args: &[String]) -> Result<(), String> {
    let bus_address = SystemdBus::Address(args[0].clone());
    let unit = args[1].as_str();
    let n: usize = args[2].parse().map_err(|e| format!("N: {e}"))?;
    let leader = args[3].as_str();
    let buses = Buses::default();
    let bus = buses.get(&bus_address).await.map_err(|e| e.to_string())?;
    let deadline = Duration::from_secs(30);
    let systemctl = Argv::new(
        ["nsenter", "-t", leader, "-a", "systemctl", "restart", unit]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    )
    .ok_or("empty argv")?;

    // Warm up both paths (connection, match rules, page cache for nsenter/systemctl).
    for _ in 0..5 {
        bus.restart_unit(unit, deadline)
            .await
            .map_err(|e| e.to_string())?;
        process::run(RunSpec::new(&systemctl, deadline))
            .await
            .map_err(|e| e.to_string())?;
    }

    let (mut vigil, mut report, mut ctl) = (Side::default(), Vec::new(), Side::default());
    let (mut queued, mut cpu, mut cpu_state) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let c0 = clock_gettime(ClockId::ProcessCPUTime);
        let t0 = Instant::now();
        let out = bus
            .restart_unit(unit, deadline)
            .await
            .map_err(|e| e.to_string())?;
        let total = t0.elapsed();
        let c1 = clock_gettime(ClockId::ProcessCPUTime);
        cpu.push(cpu_us(c0, c1));
        if out.end != JobEnd::Removed("done".to_owned())
            || !out.state.as_ref().is_some_and(|s| s.is_active())
        {
            return Err(format!("RestartUnit {unit}: {:?}", out.end));
        }
        let s = span(&bus, unit).await?;
        push(&mut vigil, out.took, s);
        // The unit-state read alone (the driver does one after the job), for the split.
        let c2 = clock_gettime(ClockId::ProcessCPUTime);
        bus.unit_state(unit).await.map_err(|e| e.to_string())?;
        cpu_state.push(cpu_us(c2, clock_gettime(ClockId::ProcessCPUTime)));
        report.push(us(total));
        queued.push(us(out.queued));

        let t0 = Instant::now();
        let run = process::run(RunSpec::new(&systemctl, deadline))
            .await
            .map_err(|e| e.to_string())?;
        let took = t0.elapsed();
        if !matches!(run.exit, Some(process::Exit::Code(0))) {
            return Err(format!("{systemctl}: {:?}", run.exit));
        }
        let s = span(&bus, unit).await?;
        push(&mut ctl, took, s);
    }
    println!("n={n} unit={unit}");
    print("vigil", &vigil);
    let (m, p90, p99) = pct(&mut report.clone());
    println!("vigil_report_us median={m} p90={p90} p99={p99}");
    let (m, p90, p99) = pct(&mut queued);
    println!("vigil_queued_us median={m} p90={p90} p99={p99}");
    let (m, p90, p99) = pct(&mut cpu);
    println!("vigil_cpu_us median={m} p90={p90} p99={p99}");
    let (m, p90, p99) = pct(&mut cpu_state);
    println!("vigil_cpu_state_us median={m} p90={p90} p99={p99}");
    print("systemctl", &ctl);
    Ok(())
}

/// CPU time (user+sys, every thread of this process) between two readings.
fn cpu_us(a: rustix::time::Timespec, b: rustix::time::Timespec) -> u64 {
    let ns =
        |t: rustix::time::Timespec| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    u64::try_from((ns(b) - ns(a)) / 1000).unwrap_or(0)
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn push(side: &mut Side, took: Duration, span: u64) {
    let m = us(took);
    side.measured.push(m);
    side.span.push(span);
    side.overhead
        .push(i64::try_from(m).unwrap_or(i64::MAX) - i64::try_from(span).unwrap_or(i64::MAX));
}

fn pct<T: Ord + Copy + Default>(v: &mut [T]) -> (T, T, T) {
    if v.is_empty() {
        return (T::default(), T::default(), T::default());
    }
    v.sort_unstable();
    let at = |q: f64| {
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i.min(v.len() - 1)]
    };
    (at(0.5), at(0.9), at(0.99))
}

fn print(name: &str, side: &Side) {
    let (m, p90, p99) = pct(&mut side.measured.clone());
    println!("{name}_to_active_us median={m} p90={p90} p99={p99}");
    let (m, p90, p99) = pct(&mut side.span.clone());
    println!("{name}_job_span_us median={m} p90={p90} p99={p99}");
    let (m, p90, p99) = pct(&mut side.overhead.clone());
    println!("{name}_overhead_us median={m} p90={p90} p99={p99}");
}
