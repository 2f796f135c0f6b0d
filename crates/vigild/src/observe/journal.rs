//! Log records as systemd journal entries, over journald's native protocol
//! (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>), for when systemd connected Vigil's
//! stderr to the journal: each entry carries its `PRIORITY` and Vigil's fields, so
//! `journalctl -p warning` and `journalctl VIGIL_SERVICE=web` work.
//!
//! Owns: telling whether stderr is the journal (`JOURNAL_STREAM`, systemd's rule), the
//! encoding of an entry, and sending it (one datagram, or a sealed memfd for an entry too
//! large for a datagram). Must not: decide what is logged or at which priority
//! (`observe::log` does), or wait long. journald's socket queues only
//! `net.unix.max_dgram_qlen` datagrams (10 by default), so a burst of records must wait
//! for journald to read (measured: with no wait, about 1 record in 10 of a burst was
//! refused); a send waits at most [`SEND_WAIT`], and after one such timeout sends do not
//! wait at all until one succeeds again, so a stuck journald costs one wait, not one per
//! record. A refused entry is an error the caller answers by writing the line to stderr.
//!
//! No libsystemd: the protocol is `NAME=value\n` per field, or for a value holding a
//! newline `NAME\n`, its length as a little-endian u64, the bytes, `\n`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;
use rustix::net::sockopt::Timeout;
use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

/// Where journald listens for native entries.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// The longest a send waits for room in journald's queue.
pub const SEND_WAIT: Duration = Duration::from_millis(100);

/// Syslog priorities (`PRIORITY=`), as journald and `journalctl -p` number them.
pub const ERR: u8 = 3;
pub const WARNING: u8 = 4;
pub const INFO: u8 = 6;
pub const DEBUG: u8 = 7;

/// Whether fd 2 is the stream systemd connected to the journal: `JOURNAL_STREAM` is set to
/// `DEVICE:INODE` and names what `fstat(2)` says fd 2 is (a redirected or inherited stderr
/// keeps the variable but not the stream, and must not count).
pub fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM")
        .ok()
        .as_deref()
        .and_then(parse_stream)
    else {
        return false;
    };
    rustix::fs::fstat(std::io::stderr().as_fd())
        .is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// A journal field name made from a Vigil field's: `VIGIL_` and the name in upper case,
/// anything journald would reject (it takes `A-Z`, `0-9`, `_`, at most 64 bytes) as `_`.
pub fn vigil_field(name: &str) -> String {
    let mut out = String::with_capacity(6 + name.len());
    out.push_str("VIGIL_");
    out.extend(name.chars().map(|c| match c.to_ascii_uppercase() {
        c @ ('A'..='Z' | '0'..='9') => c,
        _ => '_',
    }));
    out.truncate(64);
    out
}

/// One entry in the native protocol's encoding.
#[derive(Default)]
pub struct Entry {
    buf: Vec<u8>,
}

impl Entry {
    pub fn new() -> Entry {
        Entry {
            buf: Vec::with_capacity(256),
        }
    }

    /// Appends a field. `name` must be a valid journal field name (see [`vigil_field`]).
    pub fn field(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Entry {
        let value = value.as_ref();
        self.buf.extend_from_slice(name.as_bytes());
        if value.contains(&b'\n') {
            self.buf.push(b'\n');
            self.buf
                .extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            self.buf.push(b'=');
        }
        self.buf.extend_from_slice(value);
        self.buf.push(b'\n');
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// journald's native socket, from an unbound datagram socket of Vigil's.
pub struct Journal {
    fd: OwnedFd,
    addr: SocketAddrUnix,
    /// A send timed out and none has succeeded since: do not wait.
    stalled: AtomicBool,
}

impl Journal {
    pub fn open(path: impl AsRef<Path>) -> io::Result<Journal> {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::sockopt::set_socket_timeout(&fd, Timeout::Send, Some(SEND_WAIT))?;
        let addr = SocketAddrUnix::new(path.as_ref())?;
        Ok(Journal {
            fd,
            addr,
            stalled: AtomicBool::new(false),
        })
    }

    /// Sends one entry, waiting at most [`SEND_WAIT`] for room (not at all while stalled):
    /// a full queue is `WouldBlock`, a missing journald `NotFound` or `ConnectionRefused`.
    pub fn send(&self, entry: &Entry) -> io::Result<()> {
        let mut flags = SendFlags::NOSIGNAL;
        if self.stalled.load(Ordering::Relaxed) {
            flags |= SendFlags::DONTWAIT;
        }
        let sent = match rustix::net::sendto(&self.fd, entry.as_bytes(), flags, &self.addr) {
            Ok(_) => Ok(()),
            // Larger than the socket's send buffer: the protocol's other form.
            Err(Errno::MSGSIZE) => self.send_memfd(entry.as_bytes(), flags),
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => {
                self.stalled.store(false, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                if e == Errno::AGAIN {
                    self.stalled.store(true, Ordering::Relaxed);
                }
                Err(e.into())
            }
        }
    }

    /// The entry in a sealed memfd, passed with `SCM_RIGHTS` in an empty datagram (journald
    /// takes a memfd only once it is sealed against writes, growing and shrinking).
    fn send_memfd(&self, data: &[u8], flags: SendFlags) -> rustix::io::Result<()> {
        let memfd = rustix::fs::memfd_create(
            "vigil-journal-entry",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut rest = data;
        while !rest.is_empty() {
            match rustix::io::write(&memfd, rest) {
                Ok(0) => return Err(Errno::IO),
                Ok(n) => rest = &rest[n..],
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        rustix::fs::fcntl_add_seals(
            &memfd,
            SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
        )?;
        let fds = [memfd.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(Errno::NOBUFS); // cmsg_space! sized it: cannot happen
        }
        rustix::net::sendmsg_addr(&self.fd, &self.addr, &[], &mut control, flags)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_are_name_equals_value_lines() {
        let mut e = Entry::new();
        e.field("MESSAGE", "web: Health check FAIL")
            .field("PRIORITY", "4");
        assert_eq!(
            e.as_bytes(),
            b"MESSAGE=web: Health check FAIL\nPRIORITY=4\n"
        );
    }

    #[test]
    fn a_value_with_a_newline_takes_the_binary_form() {
        let mut e = Entry::new();
        e.field("MESSAGE", "two\nlines").field("PRIORITY", "3");
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\nPRIORITY=3\n");
        assert_eq!(e.as_bytes(), &want[..]);
    }

    #[test]
    fn empty_values_and_any_bytes_are_kept() {
        let mut e = Entry::new();
        e.field("VIGIL_CHECK", "")
            .field("VIGIL_REASON", b"=\x00\xff");
        assert_eq!(e.as_bytes(), b"VIGIL_CHECK=\nVIGIL_REASON==\x00\xff\n");
    }

    #[test]
    fn vigil_field_names_are_what_journald_accepts() {
        assert_eq!(vigil_field("wait_ms"), "VIGIL_WAIT_MS");
        assert_eq!(vigil_field("by-pid.x"), "VIGIL_BY_PID_X");
        assert_eq!(vigil_field("é"), "VIGIL__");
        let long = vigil_field(&"a".repeat(100));
        assert_eq!(long.len(), 64);
        assert!(long.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
    }

    /// A real datagram socket nobody reads, as a stuck journald's: the send that finds
    /// the queue full waits [`SEND_WAIT`], the next ones do not wait, and one that gets
    /// through again ends the stall.
    #[test]
    fn a_full_queue_costs_one_wait_then_none_until_a_send_goes_through() {
        use crate::platform::clock::monotonic;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let reader = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let journal = Journal::open(&path).unwrap();
        let mut entry = Entry::new();
        entry.field("MESSAGE", "x");
        let mut sent = 0;
        let first_refusal = loop {
            let start = monotonic();
            match journal.send(&entry) {
                Ok(()) => sent += 1,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
                    break start.elapsed();
                }
            }
            assert!(sent < 100_000, "the queue never filled");
        };
        assert!(first_refusal >= SEND_WAIT / 2, "{first_refusal:?}");
        let start = monotonic();
        assert!(journal.send(&entry).is_err());
        assert!(start.elapsed() < SEND_WAIT / 2, "{:?}", start.elapsed());
        // journald reads one: the next send goes through and sends wait again.
        let mut buf = [0u8; 64];
        reader.recv(&mut buf).unwrap();
        journal.send(&entry).unwrap();
        assert!(!journal.stalled.load(Ordering::Relaxed));
    }

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_stream("8:123456"), Some((8, 123456)));
        assert_eq!(parse_stream("8:123456\n"), Some((8, 123456)));
        assert_eq!(parse_stream("8"), None);
        assert_eq!(parse_stream("a:1"), None);
        assert_eq!(parse_stream(""), None);
    }
}
