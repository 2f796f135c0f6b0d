//! `driver = "exec"`: Vigil spawns a service's process and supervises it itself (SPEC §4).
//!
//! [`ExecProcess`] is the edge of one exec service: it spawns the process (`spawn`),
//! watches it through a pidfd and signals its process group (`proc`), routes its output
//! (`pipes`), receives its sd_notify datagrams (`notify`), and after the leader exits
//! empties the group of leftovers. What any of that *means* — readiness, the watchdog
//! deadline, stop escalation, the restart policy, the guard — is the lifecycle machine's
//! (`vigil_core::lifecycle`), driven by the service's actor. One actor per child rather
//! than a global SIGCHLD reaper: a pidfd wakes exactly the task that owns the process, so
//! a crash-to-restart is one wake-up of one task.

pub mod notify;
pub mod output;
pub mod pipes;
pub mod proc;
pub mod spawn;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustix::process::Pid;
use tokio::time::Instant;
use vigil_config::model::ExecDriver;
use vigil_core::event::Event;
use vigil_core::lifecycle::Notify;
use vigil_core::restart_policy::Termination;
use vigil_core::{ServiceName, Signal};

use self::notify::{Message, NotifySocket};
use self::pipes::{Pipe, Stream};
use self::proc::PidFd;
use super::{ProcessDriver, ProcessEvent};

/// How many of the last output lines hang evidence shows.
const EVIDENCE_LINES: usize = 20;

/// How long a SIGKILLed earlier instance may take to die before a start goes ahead.
const KILL_GRACE: Duration = Duration::from_secs(5);
use crate::observe::bus::Events;

/// One running instance of the service.
struct Instance {
    pid: Pid,
    pidfd: PidFd,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
    /// Drop leaves the process alone (`on_daemon_exit = "leave"`) instead of killing it.
    detached: bool,
    reaped: bool,
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Safety net (a task aborted at the shutdown deadline): never leave a group behind
        // unless told to.
        if !self.reaped && !self.detached {
            proc::signal_group(self.pid, Signal::KILL);
        }
    }
}

/// An exec service's process edge (see the module docs).
///
/// Never two instances of a service, even across a crash of Vigil: each instance inherits
/// the service's *instance lock* (`locks/NAME.instance`, an `flock` this driver holds for
/// the life of the daemon), so the lock stays held while anything of the instance runs.
/// A Vigil starting up that finds the lock held by another process ([`ExecProcess::prepare`])
/// finds what a Vigil that died left running (by the environment `spawn` gives every
/// instance) and stops it before starting its own.
pub struct ExecProcess {
    name: ServiceName,
    spec: ExecDriver,
    events: Events,
    state_dir: std::path::PathBuf,
    /// The instance lock, once held.
    instance: Option<std::fs::File>,
    notify: Option<NotifySocket>,
    child: Option<Instance>,
    /// What the service printed (`vigil logs`, hang evidence).
    output: std::sync::Arc<output::OutputLog>,
}

impl ExecProcess {
    /// Binds the service's notify socket under `state_dir`.
    pub fn new(
        name: ServiceName,
        spec: ExecDriver,
        state_dir: &std::path::Path,
        events: Events,
        output: std::sync::Arc<output::OutputLog>,
    ) -> Result<ExecProcess, super::BuildError> {
        let notify = NotifySocket::bind(state_dir, name.as_str())
            .map_err(super::BuildError::NotifySocket)?;
        Ok(ExecProcess {
            name,
            spec,
            events,
            state_dir: state_dir.to_path_buf(),
            instance: None,
            notify: Some(notify),
            child: None,
            output,
        })
    }

    fn pump(&mut self, stream: Stream) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let pipe = match stream {
            Stream::Stdout => &mut child.stdout,
            Stream::Stderr => &mut child.stderr,
        };
        if let Some(p) = pipe
            && !p.pump(&self.name, &self.output)
        {
            *pipe = None;
        }
    }

    fn drain_outputs(&mut self) {
        for _ in 0..4 {
            self.pump(Stream::Stdout);
            self.pump(Stream::Stderr);
        }
    }

    /// Empties a process group whose reaped leader left live members behind (they pin the
    /// group id): they get `stop_signal`, then SIGKILL after `stop_timeout`. Leftovers are
    /// reported.
    async fn clean_group(&mut self, pgid: Pid) {
        let left = proc::group_members(pgid, pgid);
        if left.is_empty() {
            // Gone between the probe and the scan.
            return;
        }
        let names: Vec<String> = left.iter().map(|p| proc::describe(*p)).collect();
        proc::signal_group(pgid, self.spec.stop_signal);
        let kill_at = Instant::now() + self.spec.stop_timeout;
        let fds: Vec<PidFd> = left.iter().filter_map(|p| PidFd::open(*p).ok()).collect();
        let all_gone = async {
            for fd in &fds {
                fd.exited().await;
            }
        };
        let killed = tokio::time::timeout_at(kill_at, all_gone).await.is_err();
        if killed {
            proc::signal_group(pgid, Signal::KILL);
        }
        // Anything forked meanwhile joined the group: one last sweep.
        for _ in 0..3 {
            if !proc::group_alive(pgid) || proc::group_members(pgid, pgid).is_empty() {
                break;
            }
            proc::signal_group(pgid, Signal::KILL);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.events.publish(
            &self.name,
            Event::Leftovers {
                processes: names,
                killed_by: if killed {
                    "SIGKILL".to_owned()
                } else {
                    self.spec
                        .stop_signal
                        .name()
                        .unwrap_or("stop signal")
                        .to_owned()
                },
            },
        );
    }

    /// The sd_notify messages of the datagrams waiting, from senders that belong to the
    /// service (its process group, or a descendant of its leader).
    fn notify_messages(&mut self) -> Vec<Notify> {
        let Some(sock) = self.notify.as_ref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for dg in sock.drain() {
            let Some(c) = self.child.as_ref() else {
                tracing::debug!(service = %self.name, event = "notify_ignored", "sd_notify datagram while no process runs: ignored");
                continue;
            };
            let leader = c.pid;
            let Some(sender) = dg.pid else { continue };
            if !proc::belongs_to(sender, leader) {
                tracing::warn!(service = %self.name, event = "notify_spoofed", sender = sender.as_raw_nonzero().get(),
                    "ignored sd_notify datagram from pid {}: not part of the service's process group or tree", sender.as_raw_nonzero().get());
                continue;
            }
            for msg in notify::parse(&dg.text) {
                out.push(match msg {
                    Message::Ready => Notify::Ready,
                    Message::Reloading => Notify::Reloading,
                    Message::Stopping => Notify::Stopping,
                    Message::Watchdog => Notify::Watchdog,
                    Message::WatchdogTrigger => Notify::WatchdogTrigger,
                    Message::WatchdogUsec(n) => Notify::WatchdogUsec(n),
                    Message::ExtendTimeoutUsec(n) => Notify::ExtendTimeoutUsec(n),
                    Message::Status(s) => Notify::Status(s),
                    Message::MainPid(p) => match Pid::from_raw(p) {
                        Some(p) if proc::belongs_to(p, leader) => Notify::MainPid(p.as_raw_nonzero().get()),
                        _ => {
                            tracing::warn!(service = %self.name, event = "notify_mainpid_ignored",
                                "MAINPID={p} ignored: not part of the service's process group or tree");
                            continue;
                        }
                    },
                });
            }
            // `dg` (and any BARRIER fd) is dropped here: the sender may go on.
        }
        out
    }
}

impl ExecProcess {
    fn instance_path(&self) -> std::path::PathBuf {
        self.state_dir
            .join("locks")
            .join(format!("{}.instance", self.name))
    }

    /// Takes the instance lock without waiting: `Ok(true)` when held now.
    fn try_instance_lock(&mut self) -> std::io::Result<bool> {
        if self.instance.is_some() {
            return Ok(true);
        }
        let path = self.instance_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {
                self.instance = Some(file);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

impl ProcessDriver for ExecProcess {
    fn prepare(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            match self.try_instance_lock() {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(service = %self.name, %error, "cannot take the instance lock");
                    return;
                }
            }
            // Another process holds it: what a Vigil that died left running.
            let groups = proc::owned_groups(self.name.as_str(), &self.state_dir);
            let names: Vec<String> = groups.iter().map(|(_, d)| d.clone()).collect();
            tracing::warn!(service = %self.name, event = "exec_orphans",
                "an instance left by a vigil that died still runs ({}): stopping it before starting a new one",
                if names.is_empty() { "processes holding its instance lock".to_owned() } else { names.join("; ") });
            for (pg, _) in &groups {
                proc::signal_group(*pg, self.spec.stop_signal);
            }
            let kill_at = Instant::now() + self.spec.stop_timeout;
            let give_up = kill_at + KILL_GRACE;
            let mut killed = false;
            loop {
                if matches!(self.try_instance_lock(), Ok(true)) {
                    self.events.publish(
                        &self.name,
                        Event::Leftovers {
                            processes: names,
                            killed_by: if killed {
                                "SIGKILL".to_owned()
                            } else {
                                self.spec
                                    .stop_signal
                                    .name()
                                    .unwrap_or("stop signal")
                                    .to_owned()
                            },
                        },
                    );
                    return;
                }
                let now = Instant::now();
                if now >= give_up {
                    tracing::error!(service = %self.name, event = "exec_orphans_unkillable",
                        "the earlier instance did not die within {} of SIGKILL; starting anyway",
                        vigil_core::format_duration(KILL_GRACE));
                    return;
                }
                if now >= kill_at && !killed {
                    killed = true;
                    for (pg, _) in proc::owned_groups(self.name.as_str(), &self.state_dir) {
                        proc::signal_group(pg, Signal::KILL);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }

    fn spawn(&mut self) -> Result<i32, String> {
        let socket = self
            .notify
            .as_ref()
            .map(|n| n.address().to_path_buf())
            .unwrap_or_default();
        // Held since `prepare` in the daemon; one try more costs one syscall.
        let _ = self.try_instance_lock();
        let owner = spawn::Owner {
            service: self.name.as_str(),
            state_dir: &self.state_dir,
            instance_lock: self.instance.as_ref().map(std::os::fd::AsFd::as_fd),
        };
        let spawned = spawn::spawn(&self.spec, &socket, self.spec.watchdog, &owner)
            .map_err(|e| e.to_string())?;
        let pid = spawned.pid;
        let pidfd = match PidFd::open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                proc::signal_group(pid, Signal::KILL);
                return Err(format!(
                    "cannot watch pid {}: {e}",
                    pid.as_raw_nonzero().get()
                ));
            }
        };
        let pipe = |fd: Option<std::os::fd::OwnedFd>, stream, target| {
            fd.and_then(|fd| {
                Pipe::new(
                    fd,
                    stream,
                    target,
                    self.spec.log_max_size,
                    self.spec.log_keep,
                )
                .ok()
            })
        };
        let stdout = pipe(spawned.stdout, Stream::Stdout, &self.spec.stdout);
        let stderr = pipe(spawned.stderr, Stream::Stderr, &self.spec.stderr);
        self.child = Some(Instance {
            pid,
            pidfd,
            stdout,
            stderr,
            detached: false,
            reaped: false,
        });
        Ok(pid.as_raw_nonzero().get())
    }

    fn signal(&mut self, pid: i32, signal: Signal) {
        // Only the process this driver runs: a stale pid from the machine is ignored.
        if let Some(c) = &self.child
            && c.pid.as_raw_nonzero().get() == pid
            && !c.reaped
        {
            proc::signal_group(c.pid, signal);
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<ProcessEvent> {
        if let Some(c) = &self.child {
            if c.pidfd.poll_exited(cx).is_ready() {
                return Poll::Ready(ProcessEvent::Exited);
            }
            let mut readable = [false; 2];
            for (i, pipe) in [&c.stdout, &c.stderr].into_iter().enumerate() {
                readable[i] = pipe
                    .as_ref()
                    .is_some_and(|p| p.poll_readable(cx).is_ready());
            }
            if readable[0] {
                self.pump(Stream::Stdout);
            }
            if readable[1] {
                self.pump(Stream::Stderr);
            }
            if readable.iter().any(|r| *r) {
                // Pumped: poll again so the pipes re-register their wake-ups.
                cx.waker().wake_by_ref();
            }
        }
        if self
            .notify
            .as_ref()
            .is_some_and(|n| n.poll_readable(cx).is_ready())
        {
            let messages = self.notify_messages();
            if !messages.is_empty() {
                return Poll::Ready(ProcessEvent::Notify(messages));
            }
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    fn reap(&mut self) -> Pin<Box<dyn Future<Output = Option<Termination>> + Send + '_>> {
        Box::pin(async move {
            let inst = self.child.as_mut()?;
            let pid = inst.pid;
            let term = inst.pidfd.reap();
            inst.reaped = true;
            if proc::group_alive(pid) {
                self.clean_group(pid).await;
            }
            self.drain_outputs();
            self.child = None;
            term
        })
    }

    fn evidence(&self, pid: i32, since_ping: Duration, interval: Duration) -> String {
        let lines: Vec<String> = self
            .output
            .last(EVIDENCE_LINES)
            .into_iter()
            .map(|l| format!("{}: {}", l.stream, l.text))
            .collect();
        match Pid::from_raw(pid) {
            Some(p) => proc::hang_evidence(p, since_ping, interval, &lines),
            None => format!("no process {pid}"),
        }
    }

    fn abandon(&mut self) {
        if let Some(mut c) = self.child.take() {
            // It would not die of SIGKILL; do not SIGKILL it again on drop.
            c.detached = true;
        }
    }

    fn detach(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.detached = true;
        }
    }

    fn reconfigure(&mut self, spec: &vigil_config::model::DriverSpec) {
        if let vigil_config::model::DriverSpec::Exec(e) = spec {
            self.spec = e.clone();
        }
    }

    fn exec_spec(&self) -> Option<&ExecDriver> {
        Some(&self.spec)
    }
}
