//! A real systemd-journald for tests (testbeds.md §7, way a): the host's
//! `/lib/systemd/systemd-journald` started alone in a private mount namespace, with tmpfs
//! over `/run` and `/var/log`, its own `journald.conf`, and volatile storage. Its files are
//! read from the host at `/proc/<pid>/root/run/log/journal/<machine-id>/` while it writes.
//!
//! Entries reach it three ways: [`Journald::send`] (the native protocol, from this process,
//! which is in no unit), [`Journald::send_as_pid1`] (the same with `SCM_CREDENTIALS` naming
//! PID 1, as systemd's messages about units look) and [`UnitWriter`] (`systemd-cat` run in a
//! cgroup `system.slice/<unit>`, so journald stamps `_SYSTEMD_UNIT=<unit>` itself).
//!
//! Needs root (unshare, mounts, cgroups), util-linux and systemd; tests using it are gated
//! on `VIGIL_TEST_SERVERS=1`. Everything it starts is killed on drop.
#![allow(
    clippy::disallowed_methods,
    reason = "a test bed: spawns journald and systemd-cat directly, and waits with deadlines"
)]

use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// How to configure the journald under test.
#[derive(Clone, Debug)]
pub struct Options {
    /// `SYSTEMD_JOURNAL_COMPACT` (systemd 252 defaults to compact files).
    pub compact: bool,
    /// `SYSTEMD_JOURNAL_KEYED_HASH` (default on).
    pub keyed_hash: bool,
    /// `RuntimeMaxFileSize=`, e.g. "1M", to make journald rotate by itself.
    pub max_file_size: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            compact: true,
            keyed_hash: true,
            max_file_size: None,
        }
    }
}

pub struct Journald {
    child: Child,
    pid: u32,
    _conf: tempfile_dir::Dir,
    /// The machine-ID directory holding the journal files (seen from the host).
    pub dir: PathBuf,
    /// `/proc/<pid>/root/run/log/journal`: what a check's `journal_directory` points at.
    pub root: PathBuf,
}

const JOURNALD: &str = "/lib/systemd/systemd-journald";

impl Journald {
    /// Whether this machine can run the test bed (journald and systemd-cat installed).
    pub fn available() -> bool {
        Path::new(JOURNALD).exists() && which("systemd-cat") && which("unshare") && which("nsenter")
    }

    pub fn start(options: &Options) -> Journald {
        let conf = tempfile_dir::Dir::new("vigil-journald");
        let mut text = String::from(
            "[Journal]\nStorage=volatile\nReadKMsg=no\nRateLimitIntervalSec=0\nRuntimeMaxUse=2G\nRuntimeKeepFree=0\nSplitMode=none\n",
        );
        if let Some(size) = &options.max_file_size {
            text.push_str(&format!("RuntimeMaxFileSize={size}\n"));
        }
        let conf_file = conf.path().join("journald.conf");
        std::fs::write(&conf_file, text).expect("write journald.conf");
        let script = format!(
            "set -e; mount --make-rprivate /; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /var/log; \
             mount --bind {conf} /etc/systemd/journald.conf; \
             exec env SYSTEMD_JOURNAL_COMPACT={compact} SYSTEMD_JOURNAL_KEYED_HASH={keyed} {JOURNALD}",
            conf = conf_file.display(),
            compact = u8::from(options.compact),
            keyed = u8::from(options.keyed_hash),
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn unshare + systemd-journald");
        let pid = child.id();
        let machine_id = std::fs::read_to_string("/etc/machine-id")
            .expect("/etc/machine-id")
            .trim()
            .to_owned();
        let root = PathBuf::from(format!("/proc/{pid}/root/run/log/journal"));
        let mut j = Journald {
            child,
            pid,
            _conf: conf,
            dir: root.join(machine_id),
            root,
        };
        let socket = j.socket();
        j.wait("journald's socket", Duration::from_secs(10), || {
            socket.exists()
        });
        let system = j.dir.join("system.journal");
        j.wait("system.journal", Duration::from_secs(10), || {
            system.exists()
        });
        j
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn socket(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/run/systemd/journal/socket",
            self.pid
        ))
    }

    fn wait(&mut self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("systemd-journald exited ({status}) while waiting for {what}");
            }
            assert!(
                Instant::now() < deadline,
                "journald test bed: no {what} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends one entry over the native protocol. Values may hold any bytes.
    pub fn send(&self, fields: &[(&str, &[u8])]) {
        let sock = UnixDatagram::unbound().expect("datagram socket");
        sock.send_to(&encode(fields), self.socket())
            .expect("send to journald");
    }

    /// Sends one entry whose credentials say PID 1 (root may name any existing PID), as
    /// systemd's own messages about a unit arrive.
    pub fn send_as_pid1(&self, fields: &[(&str, &[u8])]) {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, UCred};
        let sock = UnixDatagram::unbound().expect("datagram socket");
        let addr = rustix::net::SocketAddrUnix::new(self.socket()).expect("socket address");
        let payload = encode(fields);
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let cred = UCred {
            pid: rustix::process::Pid::from_raw(1).expect("pid 1"),
            uid: rustix::process::getuid(),
            gid: rustix::process::getgid(),
        };
        assert!(control.push(SendAncillaryMessage::ScmCredentials(cred)));
        rustix::net::sendmsg_addr(
            &sock,
            &addr,
            &[IoSlice::new(&payload)],
            &mut control,
            SendFlags::empty(),
        )
        .expect("send to journald as pid 1");
    }

    /// Sends a marker entry and waits until journald has written it: every datagram sent
    /// before it from this process is in the files then.
    pub fn sync(&mut self) {
        let marker = format!("sync-{}", next_marker());
        self.send(&[
            ("MESSAGE", marker.as_bytes()),
            ("SYSLOG_IDENTIFIER", b"vigil-sync"),
        ]);
        self.wait_for_message("vigil-sync", &marker);
    }

    /// Waits until an entry with `SYSLOG_IDENTIFIER=tag` and this exact message is in the
    /// files (read with journalctl, the reference reader).
    pub fn wait_for_message(&mut self, tag: &str, message: &str) {
        let dir = self.root.clone();
        let what = format!("{tag}: {message:?} in the journal");
        self.wait(&what, Duration::from_secs(20), || {
            let out = Command::new("journalctl")
                .args(["-D"])
                .arg(&dir)
                .args(["--no-pager", "-q", "-o", "cat", "-t", tag])
                .output();
            out.is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l == message)
            })
        });
    }

    /// Asks journald to rotate (SIGUSR2) and waits until the online file has been archived.
    pub fn rotate(&mut self) {
        let before = self.archived().len();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.pid as i32).expect("journald pid"),
            rustix::process::Signal::USR2,
        )
        .expect("SIGUSR2 to journald");
        let dir = self.dir.clone();
        self.wait("an archived journal file", Duration::from_secs(10), || {
            archived_in(&dir).len() > before && dir.join("system.journal").exists()
        });
    }

    /// Stops journald (SIGTERM): it syncs and marks its files offline before exiting.
    pub fn stop(&mut self) {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.pid as i32).expect("journald pid"),
            rustix::process::Signal::TERM,
        )
        .expect("SIGTERM to journald");
        let _ = self.child.wait();
    }

    /// The archived files (`system@….journal`), sorted.
    pub fn archived(&self) -> Vec<PathBuf> {
        archived_in(&self.dir)
    }

    /// A `systemd-cat -t tag` whose process sits in cgroup `system.slice/<unit>`.
    pub fn unit_writer(&self, unit: &str, tag: &str) -> UnitWriter {
        UnitWriter::start(self.pid, unit, tag)
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn archived_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().contains('@'))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn next_marker() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 1000 + u64::from(std::process::id())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// The native protocol: `FIELD=value\n`, or for values with a newline `FIELD\n`, a 64-bit
/// little-endian length, the value and `\n`.
pub fn encode(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        if value.contains(&b'\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// The cgroup hierarchies a process must join for journald to see its unit: cgroup2
/// (unified or hybrid) and the legacy `name=systemd` one, whichever this machine has.
fn cgroup_roots() -> Vec<PathBuf> {
    [
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.join("cgroup.procs").exists())
    .collect()
}

/// `systemd-cat -t TAG` in cgroup `system.slice/UNIT`: each line written becomes an entry
/// of that unit. Dropping it closes the stream and removes the cgroups, so two writers of
/// the same unit must not overlap (tests running in parallel use different units).
pub struct UnitWriter {
    child: Child,
    stdin: Option<ChildStdin>,
    cgroups: Vec<PathBuf>,
}

impl UnitWriter {
    fn start(journald: u32, unit: &str, tag: &str) -> UnitWriter {
        let cgroups: Vec<PathBuf> = cgroup_roots()
            .into_iter()
            .map(|root| root.join("system.slice").join(unit))
            .collect();
        assert!(
            !cgroups.is_empty(),
            "no writable cgroup hierarchy under /sys/fs/cgroup"
        );
        let mut join = String::new();
        for cg in &cgroups {
            std::fs::create_dir_all(cg).unwrap_or_else(|e| panic!("mkdir {}: {e}", cg.display()));
            join.push_str(&format!("echo $$ > {}/cgroup.procs; ", cg.display()));
        }
        // `set -e`: a writer that could not join its cgroup exits instead of writing lines
        // journald would stamp with no unit.
        let script = format!("set -e; {join}exec nsenter -t {journald} -m systemd-cat -t {tag}");
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn systemd-cat");
        let stdin = child.stdin.take();
        UnitWriter {
            child,
            stdin,
            cgroups,
        }
    }

    pub fn line(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("writer open");
        stdin
            .write_all(text.as_bytes())
            .expect("write to systemd-cat");
        stdin.write_all(b"\n").expect("write to systemd-cat");
        stdin.flush().expect("flush systemd-cat");
    }

    /// Closes the stream and waits for systemd-cat to exit (its lines are then sent).
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
        for cg in &self.cgroups {
            let _ = std::fs::remove_dir(cg);
        }
    }
}

impl Drop for UnitWriter {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
        }
        self.stop();
    }
}

/// A temporary directory without a dependency on `tempfile` (this crate's library is plain
/// std + libc + rustix).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "{prefix}-{}-{}",
                std::process::id(),
                super::next_marker()
            ));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
