//! Writing entries into a (private) systemd-journald for the journal benchmarks, and
//! waiting until journald has written them.
//!
//! Entries go over journald's native socket with `SCM_CREDENTIALS` naming a process that
//! sits in the cgroup of the wanted unit (root may name any PID), so journald stamps
//! `_SYSTEMD_UNIT` and the other trusted fields itself, as for a real service: each entry
//! carries ~20 fields like on a production host.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, UCred};
use rustix::process::{Pid, getgid, getuid};
use rustix::time::{ClockId, clock_gettime};

pub struct Feed {
    socket: SocketAddrUnix,
    sock: UnixDatagram,
    /// The journal files' directory (the machine-ID directory).
    dir: PathBuf,
    unit_pid: Pid,
    noise_pid: Pid,
    sent: u64,
}

impl Feed {
    pub fn new(socket: &Path, dir: &Path, unit_pid: i32, noise_pid: i32) -> Result<Feed, String> {
        Ok(Feed {
            socket: SocketAddrUnix::new(socket)
                .map_err(|e| format!("{}: {e}", socket.display()))?,
            sock: UnixDatagram::unbound().map_err(|e| format!("socket: {e}"))?,
            dir: machine_dir(dir),
            unit_pid: Pid::from_raw(unit_pid).ok_or("unit pid")?,
            noise_pid: Pid::from_raw(noise_pid).ok_or("noise pid")?,
            sent: 0,
        })
    }

    fn send(&mut self, pid: Pid, message: &str, identifier: &str) -> Result<(), String> {
        let payload = format!(
            "MESSAGE={message}\nSYSLOG_IDENTIFIER={identifier}\nPRIORITY=6\nCODE_FILE=src/handler.rs\nCODE_LINE=212\nCODE_FUNC=serve\n"
        );
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let cred = UCred {
            pid,
            uid: getuid(),
            gid: getgid(),
        };
        if !control.push(SendAncillaryMessage::ScmCredentials(cred)) {
            return Err("no room for credentials".into());
        }
        rustix::net::sendmsg_addr(
            &self.sock,
            &self.socket,
            &[IoSlice::new(payload.as_bytes())],
            &mut control,
            SendFlags::empty(),
        )
        .map_err(|e| format!("send to journald: {e}"))?;
        self.sent += 1;
        Ok(())
    }

    /// Sends `unit` entries of the unit (1 in 10 says "error") and `noise` entries of the
    /// other unit, interleaved, and waits until journald has written them all. Returns the
    /// realtime (µs) just before the first was sent.
    pub fn batch(&mut self, unit: u64, noise: u64) -> Result<u64, String> {
        let before_entries = self.entries()?;
        let t0 = realtime_us();
        let total = unit + noise;
        let (mut u, mut n) = (0u64, 0u64);
        for i in 0..total {
            // Spread the unit's entries evenly through the batch.
            let want_unit = u * total < (i + 1) * unit;
            if want_unit && u < unit {
                let seq = self.sent;
                let text = if u % 10 == 0 {
                    format!(
                        "request {seq} failed: error talking to upstream 10.0.0.7:5432 (connection reset), retrying in 250ms"
                    )
                } else {
                    format!(
                        "GET /api/v1/items/{seq} 200 12ms bytes=5120 user=alice agent=\"okhttp/4.12\""
                    )
                };
                self.send(self.unit_pid, &text, "app")?;
                u += 1;
            } else {
                let seq = self.sent;
                let text =
                    format!("sidecar heartbeat {seq}: queue depth 3, lag 14ms, peers 5/5 healthy");
                self.send(self.noise_pid, &text, "sidecar")?;
                n += 1;
            }
        }
        let want = before_entries + u + n;
        // journald writes in its own time: wait (bounded) until the files hold them.
        for _ in 0..60_000 {
            if self.entries()? >= want {
                return Ok(t0);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(format!(
            "journald did not write {} entries within 60 s",
            u + n
        ))
    }

    /// Entries in all the directory's files.
    pub fn entries(&self) -> Result<u64, String> {
        Ok(journal_files(&self.dir)?
            .iter()
            .filter_map(|p| vigil_journal::JournalFile::open(p).ok())
            .map(|f| f.header().n_entries)
            .sum())
    }
}

/// `ROOT` is `…/journal` or its machine-ID directory: the directory that holds the files.
fn machine_dir(root: &Path) -> PathBuf {
    if journal_files(root).is_ok_and(|f| !f.is_empty()) {
        return root.to_owned();
    }
    std::fs::read_dir(root)
        .ok()
        .and_then(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.is_dir())
        })
        .unwrap_or_else(|| root.to_owned())
}

fn journal_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "journal"))
        .collect())
}

/// Bytes of objects written to the directory's files (each file up to its last object).
pub fn journal_bytes(root: &Path) -> Result<u64, String> {
    let dir = machine_dir(root);
    let mut total = 0;
    for p in journal_files(&dir)? {
        if let Ok(f) = vigil_journal::JournalFile::open(&p) {
            total += f.header().tail_object_offset;
        }
    }
    Ok(total)
}

pub fn realtime_us() -> u64 {
    let t = clock_gettime(ClockId::Realtime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1000
}
