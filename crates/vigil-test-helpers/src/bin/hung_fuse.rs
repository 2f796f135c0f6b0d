//! `vigil-hung-fuse DIR PROGRAM [ARGS...]`: mounts a FUSE filesystem on `DIR` that is never
//! served (no process ever reads `/dev/fuse`), then runs `PROGRAM` in its place. Every
//! lookup under `DIR` waits for an answer that never comes, as on a hung network
//! filesystem. The `/dev/fuse` descriptor is left open across the exec, so the filesystem
//! stays hung while `PROGRAM` lives; when it exits, the descriptor closes and the kernel
//! aborts the connection (waiters get `ENOTCONN`).
//!
//! Needs root. Run it under `unshare --mount --propagation private` so only that process
//! tree sees the mount.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use rustix::fs::{Mode, OFlags};
use rustix::mount::MountFlags;

#[expect(
    clippy::disallowed_methods,
    reason = "replaces this helper with PROGRAM (exec); nothing is supervised here"
)]
fn exec(program: &str, args: &[String]) -> std::io::Error {
    Command::new(program).args(args).exec()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, program, rest @ ..] = args.as_slice() else {
        eprintln!("usage: vigil-hung-fuse DIR PROGRAM [ARGS...]");
        return ExitCode::from(2);
    };
    // Not close-on-exec: PROGRAM keeps the connection open.
    let fuse = match rustix::fs::open("/dev/fuse", OFlags::RDWR, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("vigil-hung-fuse: /dev/fuse: {e}");
            return ExitCode::from(1);
        }
    };
    let data = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0",
        rustix::fd::AsRawFd::as_raw_fd(&fuse)
    );
    let data = std::ffi::CString::new(data).expect("no NUL in mount options");
    if let Err(e) = rustix::mount::mount(
        "vigil-hung",
        dir.as_str(),
        "fuse",
        MountFlags::NOSUID | MountFlags::NODEV,
        data.as_c_str(),
    ) {
        eprintln!("vigil-hung-fuse: mounting FUSE on {dir}: {e}");
        return ExitCode::from(1);
    }
    std::mem::forget(fuse);
    let err = exec(program, rest);
    eprintln!("vigil-hung-fuse: {program}: {err}");
    ExitCode::from(1)
}
