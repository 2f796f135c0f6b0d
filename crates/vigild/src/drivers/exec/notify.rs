//! The receiving side of systemd's `sd_notify` protocol, one datagram socket per exec
//! service (its `NOTIFY_SOCKET`), so programs written for systemd run unchanged.
//!
//! Owns: binding the socket (`SO_PASSCRED`), receiving datagrams with the sender's kernel-
//! verified credentials (`SCM_CREDENTIALS`) and any passed descriptors (`SCM_RIGHTS`, e.g.
//! `systemd-notify`'s `BARRIER=1` pipe), and parsing `KEY=VALUE` lines. Must not: decide
//! what a message means for the service, or trust a sender; the supervisor checks that the
//! sender's pid belongs to the service (`proc::belongs_to`) before acting.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::process::Pid;
use tokio::io::Interest;

/// One understood `sd_notify` assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Ready,
    Reloading,
    Stopping,
    Watchdog,
    WatchdogTrigger,
    /// `WATCHDOG_USEC=`: a new watchdog interval (0 turns it off).
    WatchdogUsec(u64),
    /// `EXTEND_TIMEOUT_USEC=`: the current start (or stop) deadline becomes now + this.
    ExtendTimeoutUsec(u64),
    Status(String),
    MainPid(i32),
}

/// Parses one datagram; unknown or malformed assignments are skipped (as systemd does).
pub fn parse(text: &str) -> Vec<Message> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let msg = match key {
            "READY" if value == "1" => Message::Ready,
            "RELOADING" if value == "1" => Message::Reloading,
            "STOPPING" if value == "1" => Message::Stopping,
            "WATCHDOG" if value == "1" => Message::Watchdog,
            "WATCHDOG" if value == "trigger" => Message::WatchdogTrigger,
            "WATCHDOG_USEC" => match value.parse() {
                Ok(n) => Message::WatchdogUsec(n),
                Err(_) => continue,
            },
            "EXTEND_TIMEOUT_USEC" => match value.parse() {
                Ok(n) => Message::ExtendTimeoutUsec(n),
                Err(_) => continue,
            },
            "STATUS" => Message::Status(value.chars().take(512).collect()),
            "MAINPID" => match value.parse() {
                Ok(n) if n > 0 => Message::MainPid(n),
                _ => continue,
            },
            _ => continue,
        };
        out.push(msg);
    }
    out
}

/// One received datagram.
pub struct Datagram {
    /// The sender's pid as the kernel attached it; `None` without credentials.
    pub pid: Option<Pid>,
    pub text: String,
    /// Descriptors passed along (`BARRIER=1`); closing them (on drop, after the message
    /// was handled) is the answer the sender waits for.
    pub _fds: Vec<OwnedFd>,
}

/// A service's notify socket.
pub struct NotifySocket {
    sock: tokio::net::UnixDatagram,
    /// What `NOTIFY_SOCKET` says: a path, or `@name` for the abstract namespace.
    address: PathBuf,
    /// The file to remove on drop (none for abstract sockets).
    file: Option<PathBuf>,
}

/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_PATH: usize = 107;

impl NotifySocket {
    /// Binds `DIR/notify/SERVICE.sock` (world-writable: services may run as other users;
    /// credentials decide who is heard). A path too long for `sun_path` falls back to the
    /// abstract name `@vigil-PID-SERVICE`.
    pub fn bind(state_dir: &Path, service: &str) -> io::Result<NotifySocket> {
        let dir = state_dir.join("notify");
        let path = dir.join(format!("{service}.sock"));
        let (sock, address, file) = if path.as_os_str().len() <= MAX_PATH {
            std::fs::create_dir_all(&dir)?;
            set_mode(&dir, 0o755);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let sock = UnixDatagram::bind(&path)?;
            set_mode(&path, 0o666);
            (sock, path.clone(), Some(path))
        } else {
            use std::os::linux::net::SocketAddrExt as _;
            let name = format!("vigil-{}-{service}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            let sock = UnixDatagram::bind_addr(&addr)?;
            (sock, PathBuf::from(format!("@{name}")), None)
        };
        sock.set_nonblocking(true)?;
        rustix::net::sockopt::set_socket_passcred(&sock, true)?;
        Ok(NotifySocket {
            sock: tokio::net::UnixDatagram::from_std(sock)?,
            address,
            file,
        })
    }

    pub fn address(&self) -> &Path {
        &self.address
    }

    /// `Ready` when datagrams may be waiting ([`NotifySocket::drain`] reads them);
    /// otherwise the task is woken when they arrive.
    pub fn poll_readable(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self.sock.poll_recv_ready(cx) {
            std::task::Poll::Ready(Ok(())) => std::task::Poll::Ready(()),
            std::task::Poll::Ready(Err(_)) | std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    #[cfg(test)]
    pub async fn readable(&self) {
        std::future::poll_fn(|cx| self.poll_readable(cx)).await;
    }

    /// Every datagram waiting now (at most 64 per call, so one chatty service cannot
    /// starve its own supervisor).
    pub fn drain(&self) -> Vec<Datagram> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            let mut space =
                [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1), ScmRights(8))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buf)];
            // try_io clears the readiness when the socket is empty (EAGAIN).
            let res = self.sock.try_io(Interest::READABLE, || {
                rustix::net::recvmsg(
                    &self.sock,
                    &mut iov,
                    &mut control,
                    RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)
            });
            let n = match res {
                Ok(msg) => msg.bytes.min(buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut pid = None;
            let mut fds = Vec::new();
            for msg in control.drain() {
                match msg {
                    RecvAncillaryMessage::ScmCredentials(cred) => pid = Some(cred.pid),
                    RecvAncillaryMessage::ScmRights(rights) => fds.extend(rights),
                    _ => {}
                }
            }
            out.push(Datagram {
                pid,
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                _fds: fds,
            });
        }
        out
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_understood_assignment_and_skips_the_rest() {
        let msgs = parse(
            "READY=1\nSTATUS=Processing 3 jobs\nWATCHDOG=1\nWATCHDOG=trigger\nWATCHDOG_USEC=500000\nEXTEND_TIMEOUT_USEC=2000000\nMAINPID=42\nSTOPPING=1\nRELOADING=1\nERRNO=2\nREADY=0\nWATCHDOG_USEC=x\nMAINPID=0\ngarbage",
        );
        assert_eq!(
            msgs,
            vec![
                Message::Ready,
                Message::Status("Processing 3 jobs".into()),
                Message::Watchdog,
                Message::WatchdogTrigger,
                Message::WatchdogUsec(500_000),
                Message::ExtendTimeoutUsec(2_000_000),
                Message::MainPid(42),
                Message::Stopping,
                Message::Reloading,
            ]
        );
    }

    #[tokio::test]
    async fn receives_the_senders_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let sock = NotifySocket::bind(dir.path(), "svc").unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1", sock.address()).unwrap();
        sock.readable().await;
        let got = sock.drain();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "READY=1");
        assert_eq!(got[0].pid, Some(rustix::process::getpid()));
    }
}
