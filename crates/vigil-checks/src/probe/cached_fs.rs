//! Answering a `stat` or a small read on the runtime thread, only when the kernel can
//! answer from memory (issue 17).
//!
//! Why it exists: `file_age` and `process` by `pid_file` used to hand every run to the
//! blocking pool, because a lookup on a hung network filesystem would otherwise stop the
//! daemon's one runtime thread. The hand-off (a futex wake, an eventfd write, two context
//! switches) was about 70 % of those checks' cost: 14–22 µs of CPU per run, where the
//! `stat` itself measured 2.3 µs. Here the common case is answered inline, and only when
//! the kernel guarantees that nothing can wait on I/O:
//!
//! 1. The path is resolved with `openat2(O_PATH, RESOLVE_CACHED)`: the kernel refuses
//!    (`EAGAIN`) when any component is not in its lookup cache or would need
//!    revalidation, and an `O_PATH` open never reaches a filesystem's own `open`.
//! 2. The mount the file is on must be of a type whose metadata is in memory once looked
//!    up ([`LOCAL_TYPES`]: ext4, xfs, btrfs, tmpfs, ...; not NFS, CIFS, FUSE, overlay or
//!    9p). Its id comes from `name_to_handle_at` with no room for a handle: the kernel
//!    fills in the mount id and answers `EOVERFLOW` without asking the filesystem for
//!    anything but the size of its handle (in memory). Where that gives no id (a
//!    filesystem that cannot make handles), from `mnt_id` in `/proc/thread-self/fdinfo`,
//!    which never asks the filesystem either.
//! 3. The table of mount types (`/proc/thread-self/mountinfo`) is read again whenever
//!    `poll` on it says it changed, checked after the lookup: a mount id reused by a new
//!    mount is never taken for the old one.
//! 4. `statx` of an open file on such a filesystem reads the inode in memory; a read (a pid
//!    file) is of a regular file only, with `preadv2(RWF_NOWAIT)` on a file opened
//!    `O_NOATIME`, so neither a page-cache miss nor an atime update (a journal write) can
//!    wait.
//!
//! Anything else (any error, including "no such file", another filesystem type, an old
//! kernel without `openat2`'s `RESOLVE_CACHED`) answers `None`, and the caller
//! takes the blocking pool exactly as before, so every failure reason is the one it was.
//! The first run of a path usually goes to the pool (its dentries are not cached yet).
//!
//! Per run this is `openat2`, `name_to_handle_at`, `ppoll`, then `statx` and `close` (a
//! read: `statx` for the file type, an `openat` of `N` in `/proc/thread-self/fd` kept
//! open, `preadv2`, two `close`). Reading the id from fdinfo instead cost three system
//! calls (`openat`, `read`, `close`), and reopening by the full `/proc/thread-self/fd/N`
//! path walked three more procfs components.
//! Keeping each mount's root open and resolving from it with `RESOLVE_NO_XDEV` would save
//! three of them (measured 4.2 µs per `file_age` run instead of 8.3), but an open root
//! makes `umount` of that filesystem fail with `EBUSY`: not done. Figures in
//! docs/BENCHMARKS.md, issue 17.
//!
//! Owns: the per-thread table of local mounts. Must not: block, keep anything open on a
//! watched filesystem, or answer anything it is not sure of.

use std::cell::RefCell;
use std::ffi::CStr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rustix::event::PollFlags;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, CWD, Mode, OFlags, ResolveFlags, StatxFlags};
use rustix::io::ReadWriteFlags;

/// Filesystem types whose inode metadata is in memory once a lookup has found it, so
/// `statx` on an open file answers without I/O, and whose regular files support
/// `RWF_NOWAIT`. Network, FUSE and stacking filesystems (overlay asks the filesystem
/// below it) are not here, nor is devtmpfs (opening a device runs its driver).
pub(crate) const LOCAL_TYPES: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "tmpfs", "ramfs",
];

/// The smallest page size Linux uses: a cached read stops short inside a page only at
/// the end of the file.
const PAGE: usize = 4096;

/// `mtime` of `path` (following symlinks, as `std::fs::metadata`), or `None` when that
/// cannot be known without possibly waiting: the caller then asks the blocking pool.
pub(crate) fn modified(path: &Path) -> Option<SystemTime> {
    let fd = with_mounts(|mounts| mounts.open_local(path))?;
    let st = rustix::fs::statx(&fd, c"", AtFlags::EMPTY_PATH, StatxFlags::MTIME).ok()?;
    if !StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::MTIME) {
        return None;
    }
    system_time(st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec)
}

/// Reads `path` into `buf` (all of it, or until `buf` is full), or `None` when that
/// cannot be done without possibly waiting: not on a local filesystem, not cached, or
/// any error.
pub(crate) fn read(path: &Path, buf: &mut [u8]) -> Option<usize> {
    let fd = with_mounts(|mounts| {
        let located = mounts.open_local(path)?;
        // Only a regular file: opening a FIFO or a device node could wait (or run a
        // driver).
        let st = rustix::fs::statx(&located, c"", AtFlags::EMPTY_PATH, StatxFlags::TYPE).ok()?;
        if rustix::fs::FileType::from_raw_mode(st.stx_mode.into())
            != rustix::fs::FileType::RegularFile
        {
            return None;
        }
        // Reopen the file found (not the path, which may lead elsewhere by now) for
        // reading.
        mounts.reopen(&located)
    })?;
    let mut filled = 0;
    while filled < buf.len() {
        let asked = buf.len() - filled;
        let mut slices = [std::io::IoSliceMut::new(&mut buf[filled..])];
        match rustix::io::preadv2(&fd, &mut slices, filled as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) => return Some(filled),
            Ok(n) => {
                filled += n;
                // A short read that ends inside a page ended at the file's size (one that
                // ends on a page boundary may be a page not cached: read on).
                if n < asked && filled % PAGE != 0 {
                    return Some(filled);
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    Some(filled)
}

/// Runs `f` with this thread's view of the mount table, opened on first use; `None` when
/// it cannot be had (no `/proc`), or once reading it again failed.
fn with_mounts<T>(f: impl FnOnce(&mut Mounts) -> Option<T>) -> Option<T> {
    MOUNTS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let mounts = match &mut *slot {
            Some(m) => m,
            None => slot.insert(Mounts::open()),
        };
        let table = mounts.as_mut()?;
        let out = f(table);
        if table.broken {
            *slot = Some(None);
        }
        out
    })
}

thread_local! {
    /// `None`: not opened yet on this thread; `Some(None)`: unavailable (no `/proc`).
    static MOUNTS: RefCell<Option<Option<Mounts>>> = const { RefCell::new(None) };
}

/// This thread's view of the mount table: the ids of mounts of a local type.
struct Mounts {
    /// `/proc/thread-self/mountinfo`, kept open: `poll` on it reports a change to the table
    /// since the last `poll`.
    table: OwnedFd,
    /// `/proc/thread-self/fdinfo`.
    fdinfo: OwnedFd,
    /// `/proc/thread-self/fd`: a file found is reopened from here by its fd's number.
    fds: OwnedFd,
    /// Sorted.
    local: Vec<u32>,
    /// Reading the table again failed: no more answers on this thread.
    broken: bool,
}

impl Mounts {
    fn open() -> Option<Mounts> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let table = rustix::fs::open("/proc/thread-self/mountinfo", flags, Mode::empty()).ok()?;
        let dir = |path: &str| rustix::fs::open(path, flags | OFlags::DIRECTORY, Mode::empty());
        let mut mounts = Mounts {
            table,
            fdinfo: dir("/proc/thread-self/fdinfo").ok()?,
            fds: dir("/proc/thread-self/fd").ok()?,
            local: Vec::new(),
            broken: false,
        };
        mounts.reload()?;
        Some(mounts)
    }

    /// Opens `path` as `O_PATH` from the lookup cache alone, and keeps it only when its
    /// mount is of a [`LOCAL_TYPES`] type in the current mount table.
    fn open_local(&mut self, path: &Path) -> Option<OwnedFd> {
        let fd = rustix::fs::openat2(
            CWD,
            path,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::CACHED,
        )
        .ok()?;
        let id = self.mount_id(&fd)?;
        // After the lookup: the fd holds its mount, so a table that has not changed since
        // it was read names that mount, not an earlier one with the same id.
        if self.changed() && self.reload().is_none() {
            self.broken = true;
            return None;
        }
        self.is_local(id).then_some(fd)
    }

    /// `located` (an `O_PATH` fd) opened again for reading, through its entry in
    /// `/proc/thread-self/fd`: the file found, not whatever its path names by now.
    fn reopen(&self, located: &OwnedFd) -> Option<OwnedFd> {
        let mut name = [0u8; 16];
        let name = fd_path(b"", located.as_raw_fd(), &mut name)?;
        rustix::fs::openat(
            &self.fds,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOATIME | OFlags::NOCTTY,
            Mode::empty(),
        )
        .ok()
    }

    /// Whether the table changed since the last call (or since it was opened). An error
    /// counts as a change.
    fn changed(&self) -> bool {
        super::ready_now(&self.table, PollFlags::PRI).map_or(true, |ready| !ready.is_empty())
    }

    /// Reads the table again, from its start.
    fn reload(&mut self) -> Option<()> {
        let mut text = Vec::with_capacity(8192);
        let mut chunk = [0u8; 8192];
        loop {
            let offset = text.len() as u64;
            match rustix::io::pread(&self.table, &mut chunk, offset) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&chunk[..n]),
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return None,
            }
        }
        self.local = local_mounts(&text);
        Some(())
    }

    fn is_local(&self, id: u32) -> bool {
        self.local.binary_search(&id).is_ok()
    }

    /// The mount id of `fd`: from [`handle_mount_id`], else from its fdinfo.
    fn mount_id(&self, fd: &OwnedFd) -> Option<u32> {
        handle_mount_id(fd.as_fd()).or_else(|| self.fdinfo_mount_id(fd))
    }

    /// The mount id of `fd`, from its fdinfo (procfs: the filesystem is not asked).
    fn fdinfo_mount_id(&self, fd: &OwnedFd) -> Option<u32> {
        let mut name = [0u8; 16];
        let name = fd_path(b"", fd.as_raw_fd(), &mut name)?;
        let info = rustix::fs::openat(
            &self.fdinfo,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let mut buf = [0u8; 512];
        let n = rustix::io::read(info.as_fd(), &mut buf).ok()?;
        fdinfo_mount_id(&buf[..n])
    }
}

/// The mount id of `fd` from `name_to_handle_at` given no room for a handle: the kernel
/// asks the filesystem only for its handle's size (`encode_fh`, from the inode in memory),
/// answers `EOVERFLOW` and fills in the mount id anyway. One system call where the fdinfo
/// takes three. `None` when no id came back (a filesystem that cannot make handles, such
/// as procfs or ramfs, answers `EOPNOTSUPP` before that).
#[allow(
    unsafe_code,
    reason = "name_to_handle_at has no binding in rustix or std"
)]
fn handle_mount_id(fd: BorrowedFd<'_>) -> Option<u32> {
    let mut handle = libc::file_handle {
        handle_bytes: 0,
        handle_type: 0,
        f_handle: [],
    };
    let mut id: libc::c_int = -1;
    // SAFETY: `fd` is open for the whole call and the path is an empty C string
    // (`AT_EMPTY_PATH`: `fd` itself). With `handle_bytes` 0 the kernel reads and writes
    // only the header that `handle` is, and writes one `c_int` to `id`.
    let rc = unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut handle,
            &mut id,
            libc::AT_EMPTY_PATH,
        )
    };
    let answered =
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EOVERFLOW);
    if answered {
        u32::try_from(id).ok()
    } else {
        None
    }
}

/// The ids of the mounts of a [`LOCAL_TYPES`] type in a mountinfo text, sorted:
/// `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER`, where no field
/// holds a space (mountinfo escapes it as `\040`).
fn local_mounts(text: &[u8]) -> Vec<u32> {
    let mut ids: Vec<u32> = text
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let id = line.split(' ').next()?.parse().ok()?;
            let (_, after) = line.split_once(" - ")?;
            let fstype = after.split(' ').next()?;
            LOCAL_TYPES.contains(&fstype).then_some(id)
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// `mnt_id:\t25` in an fdinfo text.
fn fdinfo_mount_id(text: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// `prefix` followed by the decimal `fd`, NUL-terminated, in `buf`.
fn fd_path<'b>(prefix: &[u8], fd: i32, buf: &'b mut [u8]) -> Option<&'b CStr> {
    let mut rest = u32::try_from(fd).ok()?;
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    let len = prefix.len() + digits.len();
    if len + 1 > buf.len() {
        return None;
    }
    buf[..prefix.len()].copy_from_slice(prefix);
    buf[prefix.len()..len].copy_from_slice(digits);
    buf[len] = 0;
    CStr::from_bytes_with_nul(&buf[..=len]).ok()
}

/// A statx timestamp as `SystemTime` (as `std::fs::Metadata::modified` makes it).
fn system_time(sec: i64, nsec: u32) -> Option<SystemTime> {
    let whole = if sec >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(sec.unsigned_abs()))?
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(sec.unsigned_abs()))?
    };
    whole.checked_add(Duration::from_nanos(u64::from(nsec)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[u8] = b"22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw
25 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 25 0:26 / /run/my\\040dir rw shared:5 master:2 - tmpfs tmpfs rw,size=10k
31 25 0:27 / /mnt/nfs rw - nfs4 server:/x rw
32 25 0:28 / /mnt/over rw - overlay overlay rw,lowerdir=/a
33 25 0:29 / /mnt/f rw - fuse.sshfs host: rw
34 31 0:30 / /mnt/nfs/local rw - tmpfs tmpfs rw
35 25 0:31 / /mnt/over rw - xfs /dev/vdb rw
not a line
";

    #[test]
    fn local_mounts_are_found_by_type() {
        assert_eq!(local_mounts(TABLE), vec![25, 30, 34, 35]);
    }

    #[test]
    fn fdinfo_mount_id_is_read() {
        assert_eq!(
            fdinfo_mount_id(b"pos:\t0\nflags:\t012000000\nmnt_id:\t341\nino:\t12\n"),
            Some(341)
        );
        assert_eq!(fdinfo_mount_id(b"pos:\t0\n"), None);
    }

    #[test]
    fn timestamps_match_std() {
        let t = system_time(1_700_000_000, 5).unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::new(1_700_000_000, 5)
        );
        let before = system_time(-2, 500_000_000).unwrap();
        assert_eq!(
            SystemTime::UNIX_EPOCH.duration_since(before).unwrap(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn a_file_on_the_root_filesystem_is_answered_inline_and_as_std_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"4242\n").unwrap();
        let std_mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        // The write above put every component in the lookup cache.
        assert_eq!(modified(&path), Some(std_mtime));
        let mut buf = [0u8; 64];
        let n = read(&path, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"4242\n");
        // A buffer smaller than the file is filled.
        let mut small = [0u8; 2];
        assert_eq!(read(&path, &mut small), Some(2));
        assert_eq!(&small, b"42");
    }

    #[test]
    fn anything_unsure_is_left_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        // Missing: the pool gives the reason.
        assert_eq!(modified(&dir.path().join("missing")), None);
        // procfs is not a local type.
        assert_eq!(modified(Path::new("/proc/self/stat")), None);
        let mut buf = [0u8; 64];
        assert_eq!(read(Path::new("/proc/version"), &mut buf), None);
        // Not a regular file: a FIFO's open would wait for a writer.
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(read(&fifo, &mut buf), None);
        assert!(
            modified(&fifo).is_some(),
            "a FIFO's mtime is still read inline"
        );
        // A symlink or `..` to another filesystem: the mount of the file found counts.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/proc/version", &link).unwrap();
        assert_eq!(read(&link, &mut buf), None);
        let up = Path::new("/tmp/../proc/version");
        assert_eq!(read(up, &mut buf), None);
    }

    #[test]
    fn the_handle_mount_id_is_the_fdinfo_one() {
        let dir = tempfile::tempdir().unwrap();
        for path in [dir.path(), Path::new("/"), Path::new("/dev/shm")] {
            let Ok(fd) = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            else {
                continue;
            };
            let from_handle = handle_mount_id(fd.as_fd());
            let from_fdinfo = with_mounts(|m| m.fdinfo_mount_id(&fd));
            // The temporary directory is on ext4 or tmpfs, which make handles.
            if path == dir.path() {
                assert!(from_handle.is_some(), "{}", path.display());
            }
            if from_handle.is_some() {
                assert_eq!(from_handle, from_fdinfo, "{}", path.display());
            }
        }
        // procfs makes no handles: the fdinfo answers.
        let proc =
            rustix::fs::open("/proc", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
        assert_eq!(handle_mount_id(proc.as_fd()), None);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let id = with_mounts(|m| m.mount_id(&proc)).unwrap();
        assert!(
            mounts
                .lines()
                .any(|l| l.starts_with(&format!("{id} ")) && l.contains(" - proc ")),
            "{id}: {mounts}"
        );
    }

    #[test]
    fn fd_names_are_decimal() {
        let mut buf = [0u8; 16];
        assert_eq!(fd_path(b"", 0, &mut buf), Some(c"0"));
        assert_eq!(fd_path(b"", 1234, &mut buf), Some(c"1234"));
        assert_eq!(fd_path(b"", i32::MAX, &mut buf), Some(c"2147483647"));
        assert_eq!(fd_path(b"", -1, &mut buf), None);
        let mut long = [0u8; 32];
        assert_eq!(
            fd_path(b"/proc/self/fd/", 7, &mut long),
            Some(c"/proc/self/fd/7")
        );
        assert_eq!(fd_path(b"/proc/self/fd/", 1234, &mut buf), None);
    }
}
