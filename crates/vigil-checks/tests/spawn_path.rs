//! The spawn path itself (`vigil_checks::process`): no child is ever started by a fork of
//! Vigil's address space, whatever the run asks for (a `PATH` of its own, a cwd, stdin, an
//! inherited descriptor), and an `exec` check's timeout kills its whole process group,
//! grandchildren that ignore SIGTERM included.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use support::{argv, wait_until};
use vigil_checks::model::{CheckKind, ExecCheck};
use vigil_checks::{ProbeContext, probe};

/// The live (not zombie) processes whose process group is `pgid`, from /proc.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Gone between the listing and the read: not a member.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the parenthesised command name: state, ppid, pgrp, ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let dead = matches!(fields.first(), Some(&("Z" | "X")));
        if !dead && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            members.push(pid);
        }
    }
    members
}

/// SIGKILLs a process group the test started indirectly when the test ends, pass or fail.
struct GroupKillOnDrop(u32);

impl Drop for GroupKillOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = i32::try_from(self.0)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

/// Whether `pid` ignores SIGTERM (`SigIgn` in /proc/PID/status).
fn ignores_term(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (libc::SIGTERM - 1)) != 0
}

#[tokio::test]
async fn a_timed_out_exec_check_kills_its_whole_group_term_ignoring_grandchild_included() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    // An ignored signal stays ignored across fork and exec: the shell (the group leader),
    // the background grandchild and the foreground sleep all ignore SIGTERM.
    let script = format!(
        "trap '' TERM; sleep 60 & echo $$ $! > {0}.tmp && mv {0}.tmp {0}; sleep 60",
        pid_file.display()
    );
    let kind = CheckKind::Exec(ExecCheck {
        command: argv(&["sh", "-c", &script]),
        expect_exit: 0,
        stdout_contains: None,
    });
    let timeout = Duration::from_millis(800);
    let check = tokio::spawn(async move { probe(&kind, timeout, &ProbeContext::new()).await });

    wait_until("the shell wrote its pids", Duration::from_secs(5), || {
        pid_file.exists()
    })
    .await;
    let pids: Vec<u32> = std::fs::read_to_string(&pid_file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let [leader, grandchild] = pids[..] else {
        panic!("want the leader's and the grandchild's pid: {pids:?}");
    };
    let _guard = GroupKillOnDrop(leader);
    assert!(ignores_term(leader), "the leader ignores SIGTERM");
    assert!(ignores_term(grandchild), "the grandchild ignores SIGTERM");
    // The leader leads its own group; the grandchild and the foreground sleep join it.
    wait_until(
        &format!("group {leader} has the leader and both sleeps"),
        Duration::from_secs(5),
        || {
            let members = group_members(leader);
            members.contains(&leader) && members.contains(&grandchild) && members.len() == 3
        },
    )
    .await;

    let out = check.await.unwrap();
    assert!(!out.passed);
    assert!(
        out.reason
            .ends_with(": timed out after 800ms (process group killed)"),
        "{}",
        out.reason
    );
    assert!(out.elapsed < Duration::from_secs(5), "{:?}", out.elapsed);
    wait_until(
        &format!("no process is left in group {leader}"),
        Duration::from_secs(5),
        || group_members(leader).is_empty(),
    )
    .await;
}

/// Vigil holds its own copies of the pipes' write ends until the leader exits: a leader
/// that closes its outputs early is still waited for, and what it wrote before is kept.
#[tokio::test]
async fn a_leader_that_closes_its_outputs_is_still_waited_for() {
    let a = argv(&[
        "sh",
        "-c",
        "echo early; echo warn >&2; exec >&- 2>&-; sleep 0.3; exit 4",
    ]);
    let out = vigil_checks::process::run(vigil_checks::process::RunSpec::new(
        &a,
        Duration::from_secs(10),
    ))
    .await
    .unwrap();
    assert_eq!(out.exit, Some(vigil_checks::process::Exit::Code(4)));
    assert_eq!(out.stdout, b"early\n");
    assert_eq!(out.stderr, b"warn\n");
    assert!(
        out.duration >= Duration::from_millis(300),
        "{:?}",
        out.duration
    );
}

/// A signal-set line of /proc/PID/status (`SigBlk`, `SigIgn`, ...) as a bit mask.
fn signal_mask(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// As std's `Command` leaves it: the child has the spawning thread's signal mask and
/// SIGPIPE back at its default, though Vigil (like every Rust program) ignores SIGPIPE.
#[tokio::test]
async fn a_child_gets_the_signal_mask_and_a_default_sigpipe() {
    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
    let ours = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    assert_ne!(
        signal_mask(&ours, "SigIgn") & sigpipe,
        0,
        "the test ignores SIGPIPE"
    );
    assert_eq!(signal_mask(&ours, "SigBlk"), 0, "{ours}");

    let a = argv(&["cat", "/proc/self/status"]);
    let out = vigil_checks::process::run(vigil_checks::process::RunSpec::new(
        &a,
        Duration::from_secs(10),
    ))
    .await
    .unwrap();
    let theirs = String::from_utf8(out.stdout).unwrap();
    assert_eq!(signal_mask(&theirs, "SigIgn") & sigpipe, 0, "{theirs}");
    assert_eq!(signal_mask(&theirs, "SigBlk"), 0, "{theirs}");
}

/// Every spawn runs on a thread under a seccomp filter that refuses to create a process
/// without `CLONE_VM` (so glibc's `fork`, which clones without it, fails with EPERM), while
/// `posix_spawn`'s `CLONE_VM|CLONE_VFORK` clone passes.
#[cfg(target_arch = "x86_64")]
mod no_fork {
    use std::os::fd::AsFd;
    use std::time::Duration;

    use vigil_checks::process::{Exit, RunSpec, run};

    use crate::support::argv;

    /// Installs, on the calling thread only (no TSYNC) and so on what it starts, a filter
    /// that fails `fork`, `vfork` and `clone` without `CLONE_VM` with EPERM, and `clone3`
    /// (whose flags a filter cannot read) with ENOSYS, which makes glibc fall back to
    /// `clone` for `posix_spawn` and thread creation alike.
    #[allow(unsafe_code, reason = "prctl with a raw BPF program")]
    fn refuse_fork_on_this_thread() {
        use libc::{
            BPF_ABS, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W, sock_filter,
        };
        const BPF_JGE: u32 = 0x30;
        /// `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE` (linux/audit.h).
        const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
        fn stmt(code: u32, k: u32) -> sock_filter {
            jump(code, k, 0, 0)
        }
        fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
            sock_filter {
                code: u16::try_from(code).unwrap(),
                jt,
                jf,
                k,
            }
        }
        let nr = |sys: libc::c_long| u32::try_from(sys).unwrap();
        let errno = |e: i32| libc::SECCOMP_RET_ERRNO | u32::try_from(e).unwrap();
        // Offsets into `struct seccomp_data`: nr, arch, then args[6] from 16 (the low half
        // of args[0], clone's flags, on little-endian x86_64).
        let program = [
            /* 0 */ stmt(BPF_LD | BPF_W | BPF_ABS, 4),
            /* 1 */
            jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 9), // -> 11
            /* 2 */ stmt(BPF_LD | BPF_W | BPF_ABS, 0),
            /* 3 */ jump(BPF_JMP | BPF_JGE | BPF_K, 0x4000_0000, 7, 0), // x32 -> 11
            /* 4 */
            jump(BPF_JMP | BPF_JEQ | BPF_K, nr(libc::SYS_clone3), 7, 0), // -> 12
            /* 5 */ jump(BPF_JMP | BPF_JEQ | BPF_K, nr(libc::SYS_fork), 5, 0), // -> 11
            /* 6 */ jump(BPF_JMP | BPF_JEQ | BPF_K, nr(libc::SYS_vfork), 4, 0), // -> 11
            /* 7 */
            jump(BPF_JMP | BPF_JEQ | BPF_K, nr(libc::SYS_clone), 0, 2), // else -> 10
            /* 8 */ stmt(BPF_LD | BPF_W | BPF_ABS, 16),
            /* 9 */
            jump(
                BPF_JMP | BPF_JSET | BPF_K,
                u32::try_from(libc::CLONE_VM).unwrap(),
                0,
                1,
            ), // -> 10 / 11
            /* 10 */ stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
            /* 11 */ stmt(BPF_RET | BPF_K, errno(libc::EPERM)),
            /* 12 */ stmt(BPF_RET | BPF_K, errno(libc::ENOSYS)),
        ];
        let prog = libc::sock_fprog {
            len: u16::try_from(program.len()).unwrap(),
            filter: program.as_ptr().cast_mut(),
        };
        // SAFETY: plain prctl calls; `prog` and the program it points to outlive the
        // PR_SET_SECCOMP call, which copies the program into the kernel.
        unsafe {
            assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
            assert_eq!(
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &raw const prog
                ),
                0,
                "seccomp: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    /// The filter is really in place: a plain `fork` and std's fork-based spawn (which
    /// it takes for a `pre_exec` hook) are refused.
    #[allow(unsafe_code, reason = "calling fork and pre_exec to see them refused")]
    fn assert_fork_is_refused() {
        use std::os::unix::process::CommandExt as _;

        // SAFETY: if the filter failed and this returns 0, the child only calls `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: async-signal-safe exit of a forked child.
            unsafe { libc::_exit(0) };
        }
        if pid > 0 {
            let mut status = 0;
            // SAFETY: reaping the child we just forked.
            unsafe { libc::waitpid(pid, &raw mut status, 0) };
            panic!("the seccomp filter let fork() through");
        }
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EPERM)
        );

        #[expect(
            clippy::disallowed_methods,
            reason = "std's own fork path, to see the filter refuse it"
        )]
        let mut cmd = std::process::Command::new("true");
        // SAFETY: the hook does nothing; it is only there to force std's fork path.
        unsafe { cmd.pre_exec(|| Ok(())) };
        let err = cmd.spawn().expect_err("std's fork path is refused");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    }

    async fn runs_ok(spec: RunSpec<'_>) -> vigil_checks::process::RunOutcome {
        let what = format!("{:?}", spec.argv);
        let out = run(spec)
            .await
            .unwrap_or_else(|e| panic!("{what} under the no-fork filter: {e}"));
        assert_eq!(out.exit, Some(Exit::Code(0)), "{what}: {out:?}");
        out
    }

    #[test]
    fn no_spawn_forks_vigils_address_space() {
        std::thread::spawn(|| {
            refuse_fork_on_this_thread();
            assert_fork_is_refused();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let long = Duration::from_secs(10);

                // A bare name looked up on Vigil's PATH, and a path.
                for program in ["true", "/bin/true"] {
                    let a = argv(&[program]);
                    runs_ok(RunSpec::new(&a, long)).await;
                }

                // A PATH of the run's own (std's Command forks for this one), with the
                // rest of the plumbing: env, cwd, stdin, an inherited descriptor.
                let dir = tempfile::tempdir().unwrap();
                let lock = std::fs::File::create(dir.path().join("lock")).unwrap();
                let env = [
                    ("PATH".to_owned(), "/nonexistent:/usr/bin:/bin".to_owned()),
                    ("VIGIL_SPAWN_TEST".to_owned(), "yes".to_owned()),
                ];
                let a = argv(&["env"]);
                let spec = RunSpec {
                    env: &env,
                    cwd: Some(dir.path()),
                    stdin: Some(b"ignored\n"),
                    inherit: Some(lock.as_fd()),
                    ..RunSpec::new(&a, long)
                };
                let out = runs_ok(spec).await;
                let stdout = String::from_utf8(out.stdout).unwrap();
                assert!(
                    stdout
                        .lines()
                        .any(|l| l == "PATH=/nonexistent:/usr/bin:/bin"),
                    "{stdout}"
                );
                assert!(
                    stdout.lines().any(|l| l == "VIGIL_SPAWN_TEST=yes"),
                    "{stdout}"
                );

                // The timeout path: the group is killed and the leader reaped.
                let a = argv(&["sleep", "30"]);
                let out = run(RunSpec::new(&a, Duration::from_millis(200)))
                    .await
                    .unwrap();
                assert!(out.timed_out, "{out:?}");
            });
        })
        .join()
        .unwrap();
    }
}
