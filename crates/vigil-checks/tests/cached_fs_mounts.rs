//! `file_age` and `process` by `pid_file` answer inline from the kernel's caches
//! (`probe/cached_fs.rs`) when the file's mount is of a local type. A mount made over
//! that mount, or its unmount, must be seen at the very next run: the answer is the file
//! the path names now, never the covered one. And nothing is kept open on a watched
//! filesystem: `umount` right after a run succeeds (an earlier design kept each mount's
//! root open, and `umount` failed with `EBUSY`).
//!
//! Needs root (mounts, in a mount namespace private to the test's thread): CI runs as
//! root, and without it this test fails loudly.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use vigil_checks::model::{CheckKind, FileAgeCheck, ProcessCheck, ProcessTarget};
use vigil_checks::{ProbeContext, probe};

fn cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

#[allow(
    unsafe_code,
    reason = "unshare and mount through libc: a private mount namespace for this thread"
)]
fn private_namespace() {
    // SAFETY: plain system calls with valid NUL-terminated strings; unshare(CLONE_NEWNS)
    // affects only the calling thread (it also unshares its filesystem information).
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNS),
            0,
            "unshare(CLONE_NEWNS) needs root: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            0,
            "making / private: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[allow(unsafe_code, reason = "mount and umount through libc")]
fn mount_tmpfs(dir: &Path) {
    let target = cstring(dir);
    // SAFETY: valid NUL-terminated strings; the mount is in this thread's private namespace.
    let rc = unsafe {
        libc::mount(
            c"vigil-test".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=1m".as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
}

#[allow(unsafe_code, reason = "mount and umount through libc")]
fn unmount(dir: &Path) {
    let target = cstring(dir);
    // SAFETY: a valid NUL-terminated string.
    let rc = unsafe { libc::umount2(target.as_ptr(), 0) };
    assert_eq!(rc, 0, "umount: {}", std::io::Error::last_os_error());
}

/// Writes `stamp` (aged by `age`) and `svc.pid` (naming `pid`) in `dir`.
fn fill(dir: &Path, age: Duration, pid: u32) {
    let stamp = dir.join("stamp");
    std::fs::write(&stamp, b"x").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stamp)
        .unwrap()
        .set_modified(wall_now() - age)
        .unwrap();
    std::fs::write(dir.join("svc.pid"), format!("{pid}\n")).unwrap();
}

#[expect(
    clippy::disallowed_methods,
    reason = "mtimes are wall-clock times; the test ages files against the wall clock"
)]
fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// The age the `file_age` probe reports, and the pid the `process` probe names.
fn probe_both(rt: &tokio::runtime::Runtime, dir: &Path) -> (u64, String) {
    let cx = ProbeContext::new();
    let file_age = CheckKind::FileAge(FileAgeCheck {
        path: dir.join("stamp"),
        max_age: Duration::from_secs(3600),
        fast_every: Duration::from_secs(60),
    });
    let process = CheckKind::Process(ProcessCheck {
        target: ProcessTarget::PidFile(dir.join("svc.pid")),
        max_rss: None,
        max_fds: None,
        max_threads: None,
        max_cpu_percent: None,
    });
    let (age, proc) = rt.block_on(async {
        let timeout = Duration::from_secs(5);
        (
            probe(&file_age, timeout, &cx).await,
            probe(&process, timeout, &cx).await,
        )
    });
    assert!(age.passed && proc.passed, "{age:?} {proc:?}");
    let secs = age
        .reason
        .split("last modified ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", age.reason));
    (secs, proc.reason)
}

#[test]
fn a_mount_over_the_files_mount_is_seen_at_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let point = dir.path().join("m");
    std::fs::create_dir(&point).unwrap();
    let point2 = point.clone();
    std::thread::spawn(move || {
        let point = point2;
        private_namespace();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Two processes to name: this test's, and its parent.
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();

        // Three runs, each seeing the file `age` seconds old and the pid file naming
        // `pid`. The first run may go to the blocking pool (nothing cached yet); the others
        // answer inline.
        let expect = |what: &str, age: u64, pid: u32| {
            for _ in 0..3 {
                let (seen, reason) = probe_both(&rt, &point);
                assert!((age..=age + 2).contains(&seen), "{what}: {seen}");
                assert!(
                    reason.contains(&format!("process {pid} ")),
                    "{what}: {reason}"
                );
            }
        };

        mount_tmpfs(&point);
        fill(&point, Duration::from_secs(100), me);
        expect("the first mount", 100, me);

        mount_tmpfs(&point);
        fill(&point, Duration::from_secs(500), parent);
        expect("on top", 500, parent);

        unmount(&point);
        expect("uncovered again", 100, me);
        unmount(&point);
    })
    .join()
    .unwrap();
}
