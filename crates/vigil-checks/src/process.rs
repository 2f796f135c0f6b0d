//! Vigil's single process-spawn site: every child Vigil starts (exec checks, command
//! drivers, repair commands) goes through [`run`].
//!
//! Owns: the process group (each child leads its own, so the child and everything it forks
//! can be killed as one), stdin/stdout/stderr plumbing with capped capture, the timeout,
//! and kill-on-drop. Must not: retry, interpret exit codes, or decide anything; callers get
//! a typed [`RunOutcome`] and judge it themselves.
//!
//! Architecture Invariant: the group is only ever signalled while its leader is still
//! unreaped (a zombie leader pins the process-group id), so a recycled pid can never make
//! us kill an unrelated process group. That is why the leader's exit is observed through a
//! pidfd (which does not reap) and reaped only after the group kill.

use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::time::Instant;

use crate::model::Argv;

/// How long output is still collected after the leader has exited (and, with
/// [`Leftovers::Kill`], its group has been killed). A process that escaped the group
/// (`setsid`) may hold the pipes open forever; we must not wait for it.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// What happens to processes left in the child's group after the leader exits normally.
/// On timeout and on drop the whole group is always killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Leftovers {
    /// SIGKILL whatever is left in the group (checks: a probe leaves nothing behind).
    #[default]
    Kill,
    /// Leave them running: a `restart_command` such as `managed_start.sh restart` may
    /// start the service in the background inside its own process group.
    Keep,
}

/// What to run and how.
#[derive(Clone, Copy)]
pub struct RunSpec<'a> {
    pub argv: &'a Argv,
    /// After this long the whole process group is SIGKILLed and the run reports
    /// `timed_out`.
    pub timeout: Duration,
    /// Written to the child's stdin, which is then closed; `None` gives `/dev/null`.
    pub stdin: Option<&'a [u8]>,
    /// Added to (or overriding) Vigil's own environment.
    pub env: &'a [(String, String)],
    pub cwd: Option<&'a Path>,
    /// At most this many bytes of stdout and of stderr are kept; the rest is read and
    /// discarded so the child never blocks on a full pipe.
    pub capture_limit: usize,
    pub leftovers: Leftovers,
    /// A descriptor the child inherits (at the same number): a restart's lock, so that
    /// the lock is held for as long as anything the restart started runs, even if Vigil
    /// dies (seed 000's `flock` on fd 200).
    pub inherit: Option<BorrowedFd<'a>>,
    /// Told the child's pid as soon as it is spawned, while it runs.
    pub on_spawn: Option<&'a (dyn Fn(u32) + Sync)>,
}

impl fmt::Debug for RunSpec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunSpec")
            .field("argv", &self.argv)
            .field("timeout", &self.timeout)
            .field("cwd", &self.cwd)
            .field("capture_limit", &self.capture_limit)
            .field("leftovers", &self.leftovers)
            .field("inherit", &self.inherit)
            .finish_non_exhaustive()
    }
}

impl<'a> RunSpec<'a> {
    /// Defaults: stdin from /dev/null, no extra environment, Vigil's cwd, 64 KiB of each
    /// stream captured, leftovers killed.
    pub fn new(argv: &'a Argv, timeout: Duration) -> RunSpec<'a> {
        RunSpec {
            argv,
            timeout,
            stdin: None,
            env: &[],
            cwd: None,
            capture_limit: 64 * 1024,
            leftovers: Leftovers::Kill,
            inherit: None,
            on_spawn: None,
        }
    }
}

/// How a process ended: its exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    fn from_status(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            // Neither is only possible for stopped/continued statuses, which `wait` never
            // returns; report something rather than panic.
            (None, None) => Exit::Code(-1),
        }
    }

    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(sig) => match signal_name(sig) {
                Some(name) => write!(f, "killed by signal {sig} ({name})"),
                None => write!(f, "killed by signal {sig}"),
            },
        }
    }
}

/// The conventional name of a signal number, e.g. `SIGKILL`.
pub fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

/// What a finished (or killed) run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// `None` when the run timed out and the group was killed.
    pub exit: Option<Exit>,
    pub timed_out: bool,
    /// At most `capture_limit` bytes; the rest was drained and discarded.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// From spawn until the leader exited (or was killed).
    pub duration: Duration,
    pub pid: u32,
}

/// The child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot run {program}: program not found")]
    NotFound { program: String },
    #[error("cannot run {program}: permission denied (is it executable?)")]
    PermissionDenied { program: String },
    #[error("cannot run {program}: {source}")]
    Io {
        program: String,
        #[source]
        source: io::Error,
    },
}

impl SpawnError {
    fn from_io(program: &str, cwd: Option<&Path>, err: io::Error) -> SpawnError {
        let program = program.to_owned();
        // A missing working directory also surfaces as ENOENT; do not blame the program.
        if let Some(cwd) = cwd
            && !cwd.is_dir()
        {
            let source = io::Error::new(
                err.kind(),
                format!(
                    "working directory {} is not a directory: {err}",
                    cwd.display()
                ),
            );
            return SpawnError::Io { program, source };
        }
        match err.kind() {
            io::ErrorKind::NotFound => SpawnError::NotFound { program },
            io::ErrorKind::PermissionDenied => SpawnError::PermissionDenied { program },
            _ => SpawnError::Io {
                program,
                source: err,
            },
        }
    }

    pub fn program(&self) -> &str {
        match self {
            SpawnError::NotFound { program }
            | SpawnError::PermissionDenied { program }
            | SpawnError::Io { program, .. } => program,
        }
    }
}

/// Kills the child's whole process group unless the run got to reap the leader itself.
///
/// Holding the `Child` here (rather than beside the guard) fixes the order on drop: the
/// group is killed while the leader is still unreaped, then tokio reaps it in the
/// background.
struct GroupGuard {
    child: Child,
    pgid: Option<Pid>,
    /// Set once the leader has been reaped: from then on the pgid may be recycled.
    reaped: bool,
}

impl GroupGuard {
    fn kill_group(&self) {
        if let Some(pgid) = self.pgid
            && !self.reaped
        {
            // ESRCH (nothing left) is fine; there is nothing else useful to do on error.
            let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group();
            // Reap now if it is already gone; otherwise tokio's orphan queue does it.
            let _ = self.child.try_wait();
        }
    }
}

/// Runs `spec.argv` to completion (or to its timeout) in its own process group.
///
/// Cancellation-safe: dropping the returned future SIGKILLs the whole process group.
pub async fn run(spec: RunSpec<'_>) -> Result<RunOutcome, SpawnError> {
    let program = spec.argv.program();
    #[expect(
        clippy::disallowed_methods,
        reason = "the one blessed spawn site: process group, env policy and kill-on-drop live here"
    )]
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(spec.argv.args())
        .process_group(0)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Our guard kills the whole group; tokio's would only kill the leader.
        .kill_on_drop(false)
        // Vigil's own systemd notification channel is not for the commands it runs.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    for (key, value) in spec.env {
        cmd.env(key, value);
    }
    if let Some(cwd) = spec.cwd {
        cmd.current_dir(cwd);
    }

    let started = Instant::now();
    // The inherited descriptor is made inheritable just around the spawn (the runtime that
    // spawns is single-threaded, so no other spawn can pick it up meanwhile), then closed
    // on exec again in this process.
    if let Some(fd) = spec.inherit {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
            .map_err(|e| SpawnError::from_io(program, spec.cwd, e.into()))?;
    }
    let child = cmd.spawn();
    if let Some(fd) = spec.inherit {
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
    let child = child.map_err(|e| SpawnError::from_io(program, spec.cwd, e))?;
    let pid_raw = child.id();
    let pgid = pid_raw
        .and_then(|p| i32::try_from(p).ok())
        .and_then(Pid::from_raw);
    let mut guard = GroupGuard {
        child,
        pgid,
        reaped: false,
    };
    let (Some(pid), Some(pgid)) = (pid_raw, pgid) else {
        return Err(SpawnError::Io {
            program: program.to_owned(),
            source: io::Error::other("spawned child has no pid"),
        });
    };
    if let Some(on_spawn) = spec.on_spawn {
        on_spawn(pid);
    }

    let stdout = guard.child.stdout.take();
    let stderr = guard.child.stderr.take();
    let stdin = guard.child.stdin.take();
    let mut out_buf = Vec::new();
    let mut err_buf = Vec::new();
    let limit = spec.capture_limit;

    let exit_watch = ExitWatch::new(pgid);
    let deadline = started + spec.timeout;

    let (timed_out, exit, duration) = {
        let mut out_pump = pin!(pump(stdout, &mut out_buf, limit));
        let mut err_pump = pin!(pump(stderr, &mut err_buf, limit));
        let mut feed = pin!(feed_stdin(stdin, spec.stdin));
        let mut exited = pin!(exit_watch.wait());
        let mut out_done = false;
        let mut err_done = false;
        let mut feed_done = false;
        let sleep = tokio::time::sleep_until(deadline);
        let mut sleep = pin!(sleep);

        let timed_out = loop {
            tokio::select! {
                () = &mut out_pump, if !out_done => out_done = true,
                () = &mut err_pump, if !err_done => err_done = true,
                () = &mut feed, if !feed_done => feed_done = true,
                () = &mut exited => break false,
                () = &mut sleep => break true,
            }
        };
        let duration = started.elapsed();

        if timed_out || spec.leftovers == Leftovers::Kill {
            guard.kill_group();
        }
        // The leader is dead (exited, or SIGKILLed just now): this returns promptly.
        let status = guard.child.wait().await;
        guard.reaped = true;

        // Collect what is still in the pipes, but never wait long for an escaped process.
        let drain_until = Instant::now() + DRAIN_GRACE;
        let drain = async {
            tokio::join!(
                async {
                    if !out_done {
                        out_pump.as_mut().await;
                    }
                },
                async {
                    if !err_done {
                        err_pump.as_mut().await;
                    }
                },
            )
        };
        let _ = tokio::time::timeout_at(drain_until, drain).await;

        let exit = match status {
            Ok(status) if !timed_out => Some(Exit::from_status(status)),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(pid, error = %err, "could not reap child");
                None
            }
        };
        (timed_out, exit, duration)
    };

    Ok(RunOutcome {
        exit,
        timed_out,
        stdout: out_buf,
        stderr: err_buf,
        duration,
        pid,
    })
}

/// Reads `pipe` to EOF, keeping at most `limit` bytes in `buf` and discarding the rest.
/// Writes into a caller-owned buffer so a partially drained pipe keeps what it read.
async fn pump<R: AsyncRead + Unpin>(pipe: Option<R>, buf: &mut Vec<u8>, limit: usize) {
    let Some(mut pipe) = pipe else { return };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => {
                let room = limit.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Writes `data` to the child's stdin and closes it. A child that exits without reading
/// it (EPIPE) is not an error.
async fn feed_stdin(stdin: Option<ChildStdin>, data: Option<&[u8]>) {
    if let (Some(mut stdin), Some(data)) = (stdin, data) {
        let _ = stdin.write_all(data).await;
        let _ = stdin.shutdown().await;
    }
}

/// Observes the leader's exit without reaping it, so the group id stays pinned.
enum ExitWatch {
    Pidfd(AsyncFd<OwnedFd>),
    /// Kernels without pidfd (< 5.3): poll `waitid(WNOWAIT)`.
    Poll(Pid),
}

impl ExitWatch {
    fn new(pid: Pid) -> ExitWatch {
        match rustix::process::pidfd_open(pid, PidfdFlags::NONBLOCK)
            .map_err(io::Error::from)
            .and_then(register)
        {
            Ok(fd) => ExitWatch::Pidfd(fd),
            Err(err) => {
                tracing::debug!(error = %err, "pidfd unavailable, polling for child exit");
                ExitWatch::Poll(pid)
            }
        }
    }

    async fn wait(&self) {
        match self {
            ExitWatch::Pidfd(fd) => {
                // A pidfd turns readable once the process has exited and stays so.
                if fd.readable().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            ExitWatch::Poll(pid) => loop {
                let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
                match rustix::process::waitid(WaitId::Pid(*pid), opts) {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            },
        }
    }
}

/// Registers a pidfd with tokio's reactor.
#[allow(
    unsafe_code,
    reason = "tokio's AsyncFd::register is unsafe only to demand I/O safety, which OwnedFd gives"
)]
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of `fd`; an OwnedFd's raw fd is valid, stays
    // open and keeps referring to the same pidfd until it is dropped with the AsyncFd.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}
