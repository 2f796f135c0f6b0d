//! `kind = "process"` against real child processes (found by pid file and by name).
//!
//! (`tests/process.rs` holds the spawn site's tests; this file is the probe's.)
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::wait_until;
use vigil_checks::model::{CheckKind, ProcessCheck, ProcessTarget};
use vigil_checks::{ProbeContext, ProbeOutcome, probe};

/// A child killed and reaped on drop.
struct Kid(Child);

impl Kid {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `program args...` with `argv[0]` set to `arg0`, stdio closed.
#[expect(clippy::disallowed_methods, reason = "tests spawn their own targets")]
fn spawn(arg0: &str, program: &str, args: &[&str]) -> Kid {
    let child = std::process::Command::new(program)
        .arg0(arg0)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    exec_over(child.id(), arg0);
    if program == "sleep" {
        asleep(child.id());
    }
    Kid(child)
}

/// Waits until a `sleep` child is in its `nanosleep`. Its `exec` being over is not
/// enough for counting fds: the dynamic loader and locale set-up still open (and close)
/// files after it, so a count taken then can differ from one taken a moment later.
fn asleep(pid: u32) {
    for _ in 0..10_000 {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if wchan.contains("nanosleep") {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("pid {pid} never went to sleep");
}

/// Waits until the child's `exec` is over: its `argv[0]` reads as `arg0` (or it has
/// already exited). `spawn` returns as soon as the exec closes the one close-on-exec
/// descriptor it waits on, while the others may still be closing and `cmdline` may still
/// be empty, so a probe right then could count fds that are going away, or not find the
/// process by name.
fn exec_over(pid: u32, arg0: &str) {
    for _ in 0..10_000 {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let exited = stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with('Z'));
        if cmdline.split(|&b| b == 0).next() == Some(arg0.as_bytes()) || exited {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("pid {pid} never showed argv[0] {arg0:?}");
}

fn spec(target: ProcessTarget) -> ProcessCheck {
    ProcessCheck {
        target,
        max_rss: None,
        max_fds: None,
        max_threads: None,
        max_cpu_percent: None,
    }
}

async fn run(check: ProcessCheck) -> ProbeOutcome {
    probe(
        &CheckKind::Process(check),
        Duration::from_secs(5),
        &ProbeContext::new(),
    )
    .await
}

fn pid_file(dir: &Path, pid: u32) -> ProcessTarget {
    let path = dir.join("x.pid");
    std::fs::write(&path, format!("{pid}\n")).unwrap();
    ProcessTarget::PidFile(path)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A name no other process on the host has.
fn unique_name(tag: &str) -> String {
    format!("vg{tag}{}", std::process::id())
}

#[tokio::test]
async fn pid_file_of_a_live_process_passes_under_limits() {
    let dir = tempfile::tempdir().unwrap();
    let kid = spawn("sleep", "sleep", &["30"]);
    let mut check = spec(pid_file(dir.path(), kid.pid()));
    check.max_rss = Some(1 << 30);
    check.max_fds = Some(100);
    check.max_threads = Some(4);
    check.max_cpu_percent = Some(50.0);
    let out = run(check).await;
    assert!(out.passed, "{out:?}");
    let pid = kid.pid();
    assert!(
        out.reason
            .starts_with(&format!("process {pid} (sleep) is running: CPU 0% over ")),
        "{}",
        out.reason
    );
    // Inherited fds (cargo's jobserver) come on top of the three stdio ones.
    let fds = open_fds(pid);
    assert!(fds >= 3);
    assert!(
        out.reason.ends_with(&format!(" 1 threads, {fds} open fds")),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn tiny_limits_fail_with_what_was_seen() {
    let dir = tempfile::tempdir().unwrap();
    let kid = spawn("sleep", "sleep", &["30"]);
    let pid = kid.pid();
    let mut check = spec(pid_file(dir.path(), pid));
    check.max_fds = Some(1);
    let out = run(check.clone()).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("process {pid} (sleep) {} open fds, limit 1", open_fds(pid))
    );

    check.max_fds = None;
    check.max_rss = Some(1024);
    let out = run(check.clone()).await;
    assert!(!out.passed);
    assert!(
        out.reason
            .starts_with(&format!("process {pid} (sleep) RSS "))
            && out.reason.ends_with(", limit 1 KiB"),
        "{}",
        out.reason
    );
}

#[tokio::test]
async fn a_busy_process_is_over_a_small_cpu_limit() {
    let name = unique_name("cpu");
    let _kid = spawn(&name, "sh", &["-c", "while :; do :; done"]);
    let mut check = spec(ProcessTarget::Name(name.clone()));
    check.max_cpu_percent = Some(5.0);
    // The busy loop needs a moment to be scheduled; on a loaded host it may get little
    // CPU, so retry within a deadline rather than trusting one sample.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(check.clone()).await;
        if !out.passed {
            assert!(out.reason.contains("% over "), "{}", out.reason);
            assert!(out.reason.ends_with(", limit 5%"), "{}", out.reason);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "busy loop never seen over 5%: {out:?}"
        );
    }
}

#[tokio::test]
async fn name_matches_argv0_basename_and_picks_the_oldest() {
    let name = unique_name("nm");
    let first = spawn(&format!("/opt/fake/{name}"), "sleep", &["30"]);
    let second = spawn(&name, "sleep", &["30"]);
    let out = run(spec(ProcessTarget::Name(name.clone()))).await;
    assert!(out.passed, "{out:?}");
    // Start times tick at 10ms: ties go to the lower pid, which is the first one unless
    // pids wrapped in between.
    let expected = if first.pid() < second.pid() {
        first.pid()
    } else {
        second.pid()
    };
    let alternative = first.pid();
    assert!(
        out.reason == format!("process {expected} (sleep) is running")
            || out.reason == format!("process {alternative} (sleep) is running"),
        "{}",
        out.reason
    );
    drop(second);
}

#[tokio::test]
async fn nothing_matching_fails() {
    let name = unique_name("none");
    let out = run(spec(ProcessTarget::Name(name.clone()))).await;
    assert!(!out.passed);
    assert_eq!(out.reason, format!("no process named {name} is running"));

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pid");
    let out = run(spec(ProcessTarget::PidFile(missing.clone()))).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!("pid file {} does not exist", missing.display())
    );

    let garbage = dir.path().join("bad.pid");
    std::fs::write(&garbage, "hello\n").unwrap();
    let out = run(spec(ProcessTarget::PidFile(garbage.clone()))).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!(
            "pid file {} does not hold a pid (read \"hello\")",
            garbage.display()
        )
    );
}

#[tokio::test]
async fn stale_pid_file_and_zombie_fail() {
    let dir = tempfile::tempdir().unwrap();
    // Stale: the process exited and was reaped.
    let mut kid = spawn("true", "true", &[]);
    let pid = kid.pid();
    kid.0.wait().unwrap();
    let out = run(spec(pid_file(dir.path(), pid))).await;
    assert!(!out.passed);
    assert_eq!(
        out.reason,
        format!(
            "pid file {} names pid {pid}, which is not running",
            dir.path().join("x.pid").display()
        )
    );

    // Zombie: exited, not reaped yet (the Kid reaps it on drop).
    let zombie = spawn("true", "true", &[]);
    let zpid = zombie.pid();
    wait_until("child is a zombie", Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{zpid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    })
    .await;
    let out = run(spec(pid_file(dir.path(), zpid))).await;
    assert!(!out.passed);
    assert_eq!(out.reason, format!("process {zpid} (true) is a zombie"));
    drop(zombie);
}
