//! `poll_cost DIR UNIT N`: polls a unit's new entries N times, every 200 ms, and prints the
//! CPU time (this thread) and the entries of each poll: the per-run cost of a follower
//! without a runtime around it.
#![allow(clippy::unwrap_used)]

use rustix::time::{ClockId, clock_gettime};
use vigil_journal::{Follower, Limits, Roots};

fn thread_cpu_ns() -> u128 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut f = Follower::new(&args[2], Roots::Directory(args[1].clone().into()));
    f.poll(Limits::default(), |_| {}).unwrap();
    let n: usize = args[3].parse().unwrap();
    let (mut total_cpu, mut total_entries) = (0u128, 0u64);
    for _ in 0..n {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let c0 = thread_cpu_ns();
        let p = f.poll(Limits::default(), |_| {}).unwrap();
        let c1 = thread_cpu_ns();
        total_cpu += c1 - c0;
        total_entries += p.entries;
        println!(
            "cpu_us={} entries={} files={} problems={}",
            (c1 - c0) / 1000,
            p.entries,
            p.files,
            p.problems.len()
        );
    }
    println!(
        "mean cpu_us={} entries/poll={}",
        total_cpu / 1000 / n as u128,
        total_entries / n as u64
    );
}
