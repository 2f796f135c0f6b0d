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
//!
//! Architecture Invariant: a child is started by a `clone(CLONE_VM | CLONE_VFORK)` that
//! execs at once (what glibc's `posix_spawn` does), never by a `fork` that copies Vigil's
//! address space: there is no fork path in this module to fall back to (std's `Command`
//! silently forks for, e.g., a `PATH` in the child's environment). So a bare program name
//! is looked up on the child's `PATH` here, like a shell's command hash
//! (`tests/spawn_path.rs` runs spawns under a seccomp filter that refuses a fork).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString, OsStr, OsString, c_char};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustix::fs::{Access, AtFlags, CWD, OFlags};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, WaitIdStatus};
use tokio::io::AsyncWriteExt;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
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
    fn from_status(status: &WaitIdStatus) -> Exit {
        match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            // Neither is only possible for stopped/continued statuses, which a wait for
            // `EXITED` never returns; report something rather than panic.
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
/// Made the moment the child exists, so every way out of [`run`] (an error while wiring up
/// its pipes, a timeout, the future being dropped) kills the group while the leader is
/// still unreaped.
struct GroupGuard {
    /// The leader, whose pid is also the group's id.
    pid: Pid,
    /// `None` until the watch is set up, and once dropping has handed it to a reaper.
    watch: Option<ExitWatch>,
    /// Set once the leader has been reaped: from then on the pgid may be recycled.
    reaped: bool,
}

impl GroupGuard {
    fn kill_group(&self) {
        if !self.reaped {
            // ESRCH (nothing left) is fine; there is nothing else useful to do on error.
            let _ = rustix::process::kill_process_group(self.pid, Signal::KILL);
        }
    }

    /// Returns once the leader has exited, without reaping it.
    async fn exited(&self) {
        match &self.watch {
            Some(watch) => watch.wait().await,
            None => std::future::pending().await,
        }
    }

    /// Reaps the leader, which must have exited ([`GroupGuard::exited`]), so this does
    /// not block.
    fn reap(&mut self) -> io::Result<Exit> {
        let status = rustix::process::waitid(WaitId::Pid(self.pid), WaitIdOptions::EXITED);
        // Even on error: whatever happened to the leader, its pgid is no longer ours.
        self.reaped = true;
        match status? {
            Some(status) => Ok(Exit::from_status(&status)),
            None => Err(io::Error::other("waitid returned no status")),
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        self.kill_group();
        // Reap now if it is already gone (or was reaped elsewhere) ...
        let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        if !matches!(
            rustix::process::waitid(WaitId::Pid(self.pid), opts),
            Ok(None)
        ) {
            return;
        }
        // ... otherwise once the SIGKILL has landed.
        let pid = self.pid;
        match (self.watch.take(), tokio::runtime::Handle::try_current()) {
            (Some(watch), Ok(runtime)) => {
                runtime.spawn(async move {
                    watch.wait().await;
                    let _ = rustix::process::waitid(WaitId::Pid(pid), WaitIdOptions::EXITED);
                });
            }
            _ => tracing::debug!(
                pid = pid.as_raw_nonzero().get(),
                "no runtime to reap a killed child: it stays a zombie until Vigil exits"
            ),
        }
    }
}

/// Runs `spec.argv` to completion (or to its timeout) in its own process group.
///
/// Cancellation-safe: dropping the returned future SIGKILLs the whole process group.
pub async fn run(spec: RunSpec<'_>) -> Result<RunOutcome, SpawnError> {
    let program = spec.argv.program();
    let spawn_error = |err: io::Error| SpawnError::from_io(program, spec.cwd, err);

    let started = Instant::now();
    let Spawned {
        pid,
        pidfd,
        stdin,
        stdout,
        stderr,
        writers,
    } = spawn(&spec).map_err(spawn_error)?;
    let mut guard = GroupGuard {
        pid,
        watch: None,
        reaped: false,
    };
    let pid_raw = pid.as_raw_nonzero().get().unsigned_abs();
    if let Some(on_spawn) = spec.on_spawn {
        on_spawn(pid_raw);
    }
    guard.watch = Some(ExitWatch::new(pid, pidfd));
    let stdin = stdin
        .map(pipe::Sender::from_owned_fd_unchecked)
        .transpose()
        .map_err(spawn_error)?;
    let stdout = pipe::Receiver::from_owned_fd_unchecked(stdout).map_err(spawn_error)?;
    let stderr = pipe::Receiver::from_owned_fd_unchecked(stderr).map_err(spawn_error)?;

    let mut out_buf = Vec::new();
    let mut err_buf = Vec::new();
    let limit = spec.capture_limit;
    let deadline = started + spec.timeout;

    let (timed_out, duration, mut out_done, mut err_done) = {
        let mut out_pump = pin!(pump(&stdout, &mut out_buf, limit));
        let mut err_pump = pin!(pump(&stderr, &mut err_buf, limit));
        let mut feed = pin!(feed_stdin(stdin, spec.stdin));
        let mut out_done = false;
        let mut err_done = false;
        let mut feed_done = false;
        let mut exited = pin!(guard.exited());
        let mut sleep = pin!(tokio::time::sleep_until(deadline));
        let timed_out = loop {
            tokio::select! {
                () = &mut out_pump, if !out_done => out_done = true,
                () = &mut err_pump, if !err_done => err_done = true,
                () = &mut feed, if !feed_done => feed_done = true,
                () = &mut exited => break false,
                () = &mut sleep => break true,
            }
        };
        // Whatever the leader did not read of its stdin stays unread: the pipe closes here.
        (timed_out, started.elapsed(), out_done, err_done)
    };

    if timed_out || spec.leftovers == Leftovers::Kill {
        guard.kill_group();
    }
    if timed_out {
        // SIGKILLed just now: gone promptly.
        guard.exited().await;
    }
    let status = guard.reap();
    // Now the pipes can end: once nothing else in the group holds them.
    drop(writers);

    // Collect what is still in the pipes. Normally both are at EOF by now; only a process
    // that escaped the group (or was kept) may hold one open, and it is not waited for long.
    out_done = out_done || read_now(&stdout, &mut out_buf, limit);
    err_done = err_done || read_now(&stderr, &mut err_buf, limit);
    if !(out_done && err_done) {
        let drain = async {
            tokio::join!(
                async {
                    if !out_done {
                        pump(&stdout, &mut out_buf, limit).await;
                    }
                },
                async {
                    if !err_done {
                        pump(&stderr, &mut err_buf, limit).await;
                    }
                },
            )
        };
        let _ = tokio::time::timeout_at(Instant::now() + DRAIN_GRACE, drain).await;
    }

    let exit = match status {
        Ok(exit) if !timed_out => Some(exit),
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(pid = pid_raw, error = %err, "could not reap child");
            None
        }
    };

    Ok(RunOutcome {
        exit,
        timed_out,
        stdout: out_buf,
        stderr: err_buf,
        duration,
        pid: pid_raw,
    })
}

/// A pipe read asks for at least this much room in the capture buffer ...
const MIN_READ: usize = 4 * 1024;
/// ... and grows it by (at least) this much when there is less.
const READ_CHUNK: usize = 16 * 1024;

/// Reads `pipe` to EOF, keeping at most `limit` bytes in `buf` and discarding the rest.
/// Writes into a caller-owned buffer so a partially drained pipe keeps what it read.
async fn pump(pipe: &pipe::Receiver, buf: &mut Vec<u8>, limit: usize) {
    loop {
        make_room(buf);
        // Reads only once tokio has seen the pipe readable (else WouldBlock, no syscall).
        match pipe.try_read_buf(buf) {
            Ok(0) => return,
            Ok(_) => buf.truncate(limit),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if pipe.readable().await.is_err() {
                    return;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Reads what `pipe` holds right now, without waiting for the runtime to report it
/// readable: true once it is at EOF (or broken), false if it is open and empty.
fn read_now(pipe: &pipe::Receiver, buf: &mut Vec<u8>, limit: usize) -> bool {
    loop {
        make_room(buf);
        match rustix::io::read(pipe, rustix::buffer::spare_capacity(buf)) {
            Ok(0) => return true,
            Ok(_) => buf.truncate(limit),
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => return false,
            Err(_) => return true,
        }
    }
}

/// Reads go straight into the buffer's spare capacity (nothing to zero); whatever lands
/// past the limit is cut off again, so that room doubles as the discard buffer.
fn make_room(buf: &mut Vec<u8>) {
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(READ_CHUNK);
    }
}

/// Writes `data` to the child's stdin and closes it. A child that exits without reading
/// it (EPIPE) is not an error.
async fn feed_stdin(stdin: Option<pipe::Sender>, data: Option<&[u8]>) {
    if let (Some(mut stdin), Some(data)) = (stdin, data) {
        let _ = stdin.write_all(data).await;
        let _ = stdin.shutdown().await;
    }
}

/// A child that has just been started, and the parent's ends of its pipes (non-blocking).
struct Spawned {
    pid: Pid,
    /// From the clone itself, where the kernel can (>= 5.2).
    pidfd: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// Vigil's copies of the write ends of stdout and stderr, held until the leader has
    /// exited: the pipes cannot hang up before, so a run wakes once when the leader
    /// exits instead of once per pipe closing on the way out (output still wakes it).
    writers: [OwnedFd; 2],
}

/// Starts the child: argv, environment, working directory, stdio and process group as
/// [`run`] documents them, through [`vfork_exec`] (see the module's invariant).
///
/// Everything that holds raw pointers for the child lives and dies in here, so the
/// future of [`run`] stays `Send`.
fn spawn(spec: &RunSpec<'_>) -> io::Result<Spawned> {
    let args = spec
        .argv
        .as_slice()
        .iter()
        .map(|arg| c_string(arg.as_bytes().to_vec()))
        .collect::<io::Result<Vec<CString>>>()?;
    let argv: Vec<*const c_char> = args
        .iter()
        .map(|arg| arg.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let env = ChildEnv::new(spec.env)?;
    let cwd = spec
        .cwd
        .map(|cwd| c_string(cwd.as_os_str().as_bytes().to_vec()))
        .transpose()?;
    let mut program = resolve(spec.argv.program(), spec.env, spec.cwd)?;

    let stdin = spec.stdin.map(|_| pipe_pair()).transpose()?;
    let (stdout_r, stdout_w) = pipe_pair()?;
    let (stderr_r, stderr_w) = pipe_pair()?;
    let child_stdin = match &stdin {
        Some((read, write)) => {
            rustix::fs::fcntl_setfl(write, OFlags::NONBLOCK)?;
            read.as_fd()
        }
        None => dev_null()?,
    };
    rustix::fs::fcntl_setfl(&stdout_r, OFlags::NONBLOCK)?;
    rustix::fs::fcntl_setfl(&stderr_r, OFlags::NONBLOCK)?;
    let stdio = [child_stdin, stdout_w.as_fd(), stderr_w.as_fd()];

    // The inherited descriptor is made inheritable just around the spawn (the runtime that
    // spawns is single-threaded, so no other spawn can pick it up meanwhile), then closed
    // on exec again in this process.
    if let Some(fd) = spec.inherit {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
    }
    let mut spawned = vfork_exec(&program.path, &argv, &env.ptrs, stdio, cwd.as_deref());
    if let Err(err) = &spawned
        && program.hashed
        && matches!(
            err.raw_os_error(),
            Some(libc::ENOENT | libc::EACCES | libc::ENOTDIR)
        )
    {
        // The program moved (or lost its x bit) since it was found: look again, once,
        // like a shell whose hashed command is gone.
        forget(spec.argv.program(), spec.env);
        spawned = resolve(spec.argv.program(), spec.env, spec.cwd).and_then(|again| {
            program = again;
            vfork_exec(&program.path, &argv, &env.ptrs, stdio, cwd.as_deref())
        });
    }
    if let Some(fd) = spec.inherit {
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
    let (pid, pidfd) = spawned?;
    Ok(Spawned {
        pid,
        pidfd,
        stdin: stdin.map(|(_, write)| write),
        stdout: stdout_r,
        stderr: stderr_r,
        writers: [stdout_w, stderr_w],
    })
}

/// std's wording for the same refusal.
fn c_string(bytes: Vec<u8>) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        )
    })
}

/// A pipe, both ends close-on-exec: (read, write).
fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = io::pipe()?;
    Ok((read.into(), write.into()))
}

/// `/dev/null`, opened once, as every child's stdin unless it is fed.
fn dev_null() -> io::Result<BorrowedFd<'static>> {
    static DEV_NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = DEV_NULL.get() {
        return Ok(fd.as_fd());
    }
    let fd = rustix::fs::open(
        "/dev/null",
        OFlags::RDONLY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    Ok(DEV_NULL.get_or_init(|| fd).as_fd())
}

/// Starts `path` in a child that leads its own process group, with `stdio` on
/// descriptors 0, 1 and 2, `cwd` entered, SIGPIPE back at its default (Vigil ignores it;
/// std's `Command` resets it too), every signal Vigil handles back at its default, and
/// Vigil's signal mask. `argv` and `envp` end with a null pointer.
///
/// This is glibc's `posix_spawn` without its per-call costs (a child stack mapped and
/// unmapped on every call, a descriptor-limit query per file action): the child is a
/// `clone(CLONE_VM | CLONE_VFORK)` that shares Vigil's memory, runs on a stack kept per
/// thread, and only makes system calls until it execs; this thread is suspended
/// meanwhile. A failed exec (e.g. ENOENT) is this call's error, and that child is reaped.
/// Also returns a pidfd for the child, made by the clone itself (`CLONE_PIDFD`), unless
/// the kernel is too old for that.
#[allow(
    unsafe_code,
    reason = "a vfork child can only be had through clone(2) with raw pointers"
)]
fn vfork_exec(
    path: &CStr,
    argv: &[*const c_char],
    envp: &[*const c_char],
    stdio: [BorrowedFd<'_>; 3],
    cwd: Option<&CStr>,
) -> io::Result<(Pid, Option<OwnedFd>)> {
    /// Cleared once the kernel refused `CLONE_PIDFD` (EINVAL before Linux 5.2).
    static CLONE_PIDFD: AtomicBool = AtomicBool::new(true);
    if argv.last() != Some(&std::ptr::null()) || envp.last() != Some(&std::ptr::null()) {
        return Err(io::Error::other(
            "argv and envp must end with a null pointer",
        ));
    }
    let mut args = ChildArgs {
        path: path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        stdio: stdio.map(|fd| fd.as_raw_fd()),
        cwd: cwd.map_or(std::ptr::null(), CStr::as_ptr),
        // SAFETY: a sigset_t is plain bits; all-zero is a valid (empty) set.
        mask: unsafe { std::mem::zeroed() },
        err: 0,
    };
    CHILD_STACK.with_borrow_mut(|stack| {
        if stack.is_none() {
            *stack = Some(ChildStack::new()?);
        }
        let Some(stack) = stack else {
            return Err(io::Error::other("no child stack"));
        };
        // SAFETY: a sigset_t is plain bits; all-zero is a valid set, filled next.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY (the calls below): pointers to live locals; `child` only reads `args`
        // (and writes `args.err`) while this thread is suspended in `clone`, and only
        // uses `stack`, which nothing else touches meanwhile; with CLONE_VFORK, `clone`
        // returns once the child has exec'd or exited, after which it uses neither.
        unsafe {
            libc::sigfillset(&raw mut all);
            // No handler of Vigil's may run in the child before it has reset them.
            check(libc::pthread_sigmask(
                libc::SIG_BLOCK,
                &raw const all,
                &raw mut args.mask,
            ))?;
            let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
            let mut pidfd: libc::c_int = -1;
            let mut pid = -1;
            if CLONE_PIDFD.load(Ordering::Relaxed) {
                // With CLONE_PIDFD the kernel stores the pidfd where `parent_tid` points.
                pid = libc::clone(
                    child,
                    stack.top(),
                    flags | libc::CLONE_PIDFD,
                    (&raw mut args).cast(),
                    &raw mut pidfd,
                );
                if pid < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                    CLONE_PIDFD.store(false, Ordering::Relaxed);
                }
            }
            if !CLONE_PIDFD.load(Ordering::Relaxed) {
                pid = libc::clone(child, stack.top(), flags, (&raw mut args).cast());
            }
            let clone_error = io::Error::last_os_error();
            // The kernel made it close-on-exec; it is ours alone.
            let pidfd = (pid > 0 && pidfd >= 0).then(|| OwnedFd::from_raw_fd(pidfd));
            libc::pthread_sigmask(
                libc::SIG_SETMASK,
                &raw const args.mask,
                std::ptr::null_mut(),
            );
            let exec_errno = std::ptr::read_volatile(&raw const args.err);
            if pid < 0 {
                return Err(clone_error);
            }
            if exec_errno != 0 {
                // The child has exited (that is why `clone` returned): reap it.
                let mut status = 0;
                libc::waitpid(pid, &raw mut status, 0);
                return Err(io::Error::from_raw_os_error(exec_errno));
            }
            let pid =
                Pid::from_raw(pid).ok_or_else(|| io::Error::other("clone returned no pid"))?;
            Ok((pid, pidfd))
        }
    })
}

fn check(ret: libc::c_int) -> io::Result<()> {
    match ret {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// What the vfork child needs, all prepared by the parent: it must not allocate, lock
/// or touch anything but this and its stack.
struct ChildArgs {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    stdio: [libc::c_int; 3],
    /// Null: stay in Vigil's working directory.
    cwd: *const c_char,
    /// The parent thread's signal mask, for the child to restore right before it execs.
    mask: libc::sigset_t,
    /// Set by the child when it could not exec: the errno.
    err: libc::c_int,
}

/// The vfork child: system calls only (async-signal-safe libc wrappers), no allocation,
/// no panics. Writes the errno of the first failure to `ChildArgs::err` and exits 127.
#[allow(
    unsafe_code,
    reason = "the child of clone(2) gets its arguments as a raw pointer"
)]
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    let args = arg.cast::<ChildArgs>();
    // SAFETY: `arg` points to the parent's `ChildArgs`, alive and otherwise untouched
    // until this child has exec'd or exited (CLONE_VFORK); every pointer in it is valid
    // and NUL-terminated (see `vfork_exec`).
    unsafe {
        let fail = || -> ! {
            std::ptr::write_volatile(&raw mut (*args).err, *libc::__errno_location());
            libc::_exit(127)
        };
        // Vigil's handlers must not run here (this child shares Vigil's memory) once the
        // mask is lifted; SIGPIPE goes back to its default (Vigil ignores it).
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        let mut sig = 1;
        while sig <= libc::SIGRTMAX() {
            let mut old: libc::sigaction = std::mem::zeroed();
            // glibc's own signals (32, 33) are refused here (EINVAL); none is ever sent
            // to a child process.
            if sig != libc::SIGKILL
                && sig != libc::SIGSTOP
                && libc::sigaction(sig, std::ptr::null(), &raw mut old) == 0
                && (sig == libc::SIGPIPE
                    || (old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN))
                && libc::sigaction(sig, &raw const default, std::ptr::null_mut()) != 0
            {
                fail();
            }
            sig += 1;
        }
        if libc::setpgid(0, 0) != 0 {
            fail();
        }
        let mut target = 0;
        while target < 3 {
            let fd = (*args).stdio[target as usize];
            // dup2 onto itself would leave close-on-exec set.
            let done = if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            };
            if done < 0 {
                fail();
            }
            target += 1;
        }
        if !(*args).cwd.is_null() && libc::chdir((*args).cwd) != 0 {
            fail();
        }
        if libc::pthread_sigmask(
            libc::SIG_SETMASK,
            &raw const (*args).mask,
            std::ptr::null_mut(),
        ) != 0
        {
            fail();
        }
        libc::execve((*args).path, (*args).argv, (*args).envp);
        fail()
    }
}

thread_local! {
    /// The vfork child's stack, one per thread that spawns: the thread is suspended
    /// while its child runs on it.
    static CHILD_STACK: std::cell::RefCell<Option<ChildStack>> =
        const { std::cell::RefCell::new(None) };
}

/// A mapped stack with a guard page below it.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    /// Plenty: the child makes a few system calls from one small frame.
    const SIZE: usize = 64 * 1024;

    #[allow(unsafe_code, reason = "mmap and mprotect of a fresh anonymous mapping")]
    fn new() -> io::Result<ChildStack> {
        let guard = rustix::param::page_size();
        let len = Self::SIZE + guard;
        // SAFETY: a fresh private anonymous mapping, owned by the returned value.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of the mapping just made (the stack grows down to it).
        if unsafe { libc::mprotect(base, guard, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// Where the stack starts (it grows down); page-aligned, so 16-byte aligned.
    #[allow(unsafe_code, reason = "pointer arithmetic within the mapping")]
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, which is what clone(2) wants.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for ChildStack {
    #[allow(unsafe_code, reason = "unmapping the mapping this value owns")]
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping made in `new`, used by no one now.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Vigil's own environment without its systemd notification channel (`NOTIFY_SOCKET`,
/// `WATCHDOG_USEC`, `WATCHDOG_PID` are not for the commands it runs): what every child
/// starts from, as `KEY=VALUE` strings in key order (the order std's `Command` passes).
///
/// Read once: Vigil never changes its own environment after start (`set_var` is a
/// disallowed method, and it and `remove_var` are unsafe code, which the workspace
/// denies), so every spawn would read the same.
struct BaseEnv {
    vars: Vec<(OsString, CString)>,
    /// `PATH`, where a bare program name is looked up unless the run sets its own.
    path: Option<Vec<u8>>,
}

fn base_env() -> &'static BaseEnv {
    static BASE: OnceLock<BaseEnv> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut vars: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            vars.remove(OsStr::new(key));
        }
        let path = vars.get(OsStr::new("PATH")).map(|p| p.as_bytes().to_vec());
        let vars = vars
            .into_iter()
            .filter_map(|(key, value)| {
                // Entries of the C environment hold no NUL; skip rather than panic.
                let entry = CString::new([key.as_bytes(), b"=", value.as_bytes()].concat()).ok()?;
                Some((key, entry))
            })
            .collect();
        BaseEnv { vars, path }
    })
}

/// A child's `envp`: the base environment with a run's own variables laid over it.
struct ChildEnv {
    /// The run's own `KEY=VALUE` strings, which `ptrs` may point into.
    _own: Vec<CString>,
    /// Null-terminated.
    ptrs: Vec<*const c_char>,
}

impl ChildEnv {
    fn new(extra: &[(String, String)]) -> io::Result<ChildEnv> {
        let base = base_env();
        if extra.is_empty() {
            let ptrs = base
                .vars
                .iter()
                .map(|(_, entry)| entry.as_ptr())
                .chain([std::ptr::null()])
                .collect();
            return Ok(ChildEnv {
                _own: Vec::new(),
                ptrs,
            });
        }
        let own = extra
            .iter()
            .map(|(key, value)| c_string([key.as_bytes(), b"=", value.as_bytes()].concat()))
            .collect::<io::Result<Vec<CString>>>()?;
        // Later settings of a key win, and the result stays in key order (as with std).
        let mut merged: BTreeMap<&[u8], *const c_char> = base
            .vars
            .iter()
            .map(|(key, entry)| (key.as_bytes(), entry.as_ptr()))
            .collect();
        for ((key, _), entry) in extra.iter().zip(&own) {
            merged.insert(key.as_bytes(), entry.as_ptr());
        }
        let ptrs = merged.into_values().chain([std::ptr::null()]).collect();
        Ok(ChildEnv { _own: own, ptrs })
    }
}

/// Where `execvp` looks when there is no `PATH` at all (glibc's `_CS_PATH`).
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// The program to exec.
struct Program {
    path: Arc<CStr>,
    /// Came from the hash rather than a fresh look-up.
    hashed: bool,
}

/// Where bare program names were found, per `PATH` value: a shell's command hash. Only
/// finds through absolute `PATH` entries are kept (a relative one depends on the cwd).
type Hash = HashMap<Vec<u8>, HashMap<String, Arc<CStr>>>;

fn hash() -> std::sync::MutexGuard<'static, Hash> {
    static HASH: OnceLock<Mutex<Hash>> = OnceLock::new();
    HASH.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Entries kept per `PATH` value before that table starts over (programs come from the
/// configuration, so this is never reached in practice).
const HASH_MAX: usize = 1024;

/// Resolves `program` the way `execvp` would in the child: as given when it contains a
/// `/`, else on the `PATH` the child will have (the run's own, else Vigil's).
fn resolve(program: &str, env: &[(String, String)], cwd: Option<&Path>) -> io::Result<Program> {
    if program.contains('/') {
        return Ok(Program {
            path: Arc::from(c_string(program.as_bytes().to_vec())?),
            hashed: false,
        });
    }
    let path_var = path_var(env);
    if let Some(path) = hash().get(path_var).and_then(|found| found.get(program)) {
        return Ok(Program {
            path: Arc::clone(path),
            hashed: true,
        });
    }
    let (path, absolute) = search_path(program, path_var, cwd)?;
    if absolute {
        let mut hash = hash();
        let found = hash.entry(path_var.to_vec()).or_default();
        if found.len() >= HASH_MAX {
            found.clear();
        }
        found.insert(program.to_owned(), Arc::clone(&path));
    }
    Ok(Program {
        path,
        hashed: false,
    })
}

/// The `PATH` the child will have: the run's own, else Vigil's, else `execvp`'s default.
fn path_var(env: &[(String, String)]) -> &[u8] {
    match env.iter().rev().find(|(key, _)| key == "PATH") {
        Some((_, value)) => value.as_bytes(),
        None => base_env().path.as_deref().unwrap_or(DEFAULT_PATH),
    }
}

fn forget(program: &str, env: &[(String, String)]) {
    if let Some(found) = hash().get_mut(path_var(env)) {
        found.remove(program);
    }
}

/// `execvp`'s search: the first `dir/program` on `path_var` that can be executed. Like
/// `execvp`, it skips entries that do not exist (ENOENT, ENOTDIR, ESTALE, ENODEV,
/// ETIMEDOUT), remembers refusals (EACCES: not executable, not a regular file) to report
/// if nothing is found, and stops at any other error. An empty entry is the working
/// directory. Also says whether every entry looked at was absolute.
fn search_path(
    program: &str,
    path_var: &[u8],
    cwd: Option<&Path>,
) -> io::Result<(Arc<CStr>, bool)> {
    let mut denied = false;
    let mut absolute = true;
    for dir in path_var.split(|&b| b == b':') {
        let mut candidate = Vec::with_capacity(dir.len() + 1 + program.len());
        if !dir.is_empty() {
            candidate.extend_from_slice(dir);
            candidate.push(b'/');
        }
        candidate.extend_from_slice(program.as_bytes());
        let candidate_path = Path::new(OsStr::from_bytes(&candidate));
        let relative = !dir.starts_with(b"/");
        absolute &= !relative;
        // A relative entry is resolved in the child, after it entered its own cwd.
        let checked = match cwd {
            Some(cwd) if relative => executable(&cwd.join(candidate_path)),
            _ => executable(candidate_path),
        };
        match checked {
            Ok(true) => return Ok((Arc::from(c_string(candidate)?), absolute)),
            Ok(false) => denied = true,
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(
                        libc::ENOENT
                            | libc::ENOTDIR
                            | libc::ESTALE
                            | libc::ENODEV
                            | libc::ETIMEDOUT
                    )
                ) => {}
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::from_raw_os_error(if denied {
        libc::EACCES
    } else {
        libc::ENOENT
    }))
}

/// Whether `execve` would accept `path`: executable for Vigil's effective ids (which also
/// refuses `noexec` mounts) and a regular file. `Ok(false)` is execve's EACCES.
fn executable(path: &Path) -> io::Result<bool> {
    match rustix::fs::accessat(CWD, path, Access::EXEC_OK, AtFlags::EACCESS) {
        // A directory passes the check (x is search there) but cannot be executed.
        Ok(()) => Ok(std::fs::metadata(path)?.is_file()),
        Err(rustix::io::Errno::ACCESS) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Observes the leader's exit without reaping it, so the group id stays pinned.
enum ExitWatch {
    Pidfd(AsyncFd<OwnedFd>),
    /// Kernels without pidfd (< 5.3): poll `waitid(WNOWAIT)`.
    Poll(Pid),
}

impl ExitWatch {
    /// With the child's `pidfd` if there is one already.
    fn new(pid: Pid, pidfd: Option<OwnedFd>) -> ExitWatch {
        let pidfd = match pidfd {
            Some(fd) => Ok(fd),
            None => rustix::process::pidfd_open(pid, PidfdFlags::NONBLOCK).map_err(io::Error::from),
        };
        match pidfd.and_then(register) {
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
