//! Test-side support for Vigil's integration tests: find the helper programs of this
//! crate, start them with a kill guard, and wait on conditions with a deadline.
//!
//! Owns: locating `target/<profile>/<helper>` from a running test, and the one place where
//! tests spawn helper processes directly. Must not: be used by product code (it panics on
//! every problem, as a test should), or depend on tokio: the helpers are plain std + libc
//! (+ rustix for the journald test bed's credentials).

pub mod journald;

pub mod receiver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, ExitStatus, Stdio};
use std::time::Duration;

/// The helper programs this crate builds.
pub const FLAKY_HTTP: &str = "vigil-flaky-http";
pub const RESTART_RECORDER: &str = "vigil-restart-recorder";
pub const SLEEPER: &str = "vigil-sleeper";
pub const NOTIFY_CLIENT: &str = "vigil-notify-client";

/// The path of helper program `name`, next to the calling test's own executable:
/// `…/target/debug/deps/some_test-hash` → `…/target/debug/<name>`.
///
/// Panics with instructions when it has not been built: tests of other crates need
/// `cargo build -p vigil-test-helpers` (or `cargo test --workspace`) first.
pub fn helper_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own executable");
    match find_helper(&exe, name) {
        Some(path) => path,
        None => panic!(
            "helper program {name} not found next to {}: run `cargo build -p vigil-test-helpers` \
             (with the same --profile/--target and CARGO_TARGET_DIR as the tests) first",
            exe.display()
        ),
    }
}

fn find_helper(exe: &Path, name: &str) -> Option<PathBuf> {
    let dir = exe.parent()?;
    // Test binaries live in `<profile>/deps`; build scripts or examples one level deeper
    // or beside the helpers. Look in the directory and its ancestors up to the profile.
    dir.ancestors()
        .take(3)
        .map(|d| d.join(name))
        .find(|candidate| candidate.is_file())
}

/// Polls `cond` every 10ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let step = Duration::from_millis(10);
    #[expect(
        clippy::disallowed_methods,
        reason = "test deadline; tests are outside the core's clock policy"
    )]
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "test deadline; tests are outside the core's clock policy"
        )]
        let now = std::time::Instant::now();
        if now >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(step);
    }
}

/// A helper process that is SIGKILLed and reaped when dropped, so a failing test never
/// leaves it behind.
#[derive(Debug)]
pub struct HelperProcess {
    name: String,
    child: Child,
}

impl HelperProcess {
    /// Starts helper `name` (see [`helper_bin`]) with `args`; stdout is piped, stderr
    /// inherited so its complaints show up in the test output.
    pub fn spawn(name: &str, args: &[&str]) -> HelperProcess {
        let path = helper_bin(name);
        #[expect(
            clippy::disallowed_methods,
            reason = "test-only spawn of helper programs, guarded by HelperProcess's kill-on-drop"
        )]
        let mut cmd = std::process::Command::new(&path);
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        HelperProcess {
            name: name.to_owned(),
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's stdout (once; later calls return `None`).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Reads one line of the child's stdout (blocking).
    pub fn read_line(&mut self) -> String {
        let stdout = self
            .child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("{}: stdout already taken", self.name));
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("{}: reading stdout: {e}", self.name));
        // Give the pipe back so the child never gets SIGPIPE for later output.
        self.child.stdout = Some(reader.into_inner());
        line.trim_end().to_owned()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the helper.
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        if !send_signal(pid, signal) {
            panic!("{}: kill({pid}, {signal}) failed", self.name);
        }
    }

    /// Waits (up to `timeout`) for the helper to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut status = None;
        let name = self.name.clone();
        wait_for(&format!("{name} exits"), timeout, || {
            status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("{name}: wait: {e}"));
            status.is_some()
        });
        status.expect("wait_for returned, so the child exited")
    }

    /// Whether the helper is still running (not yet exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(
    unsafe_code,
    reason = "kill(2) has no safe std wrapper; it touches no memory"
)]
fn send_signal(pid: libc::pid_t, signal: i32) -> bool {
    // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// A loopback TCP port where nothing listens, reserved for as long as the returned socket
/// lives: it is bound but never listens, so a connect is refused, and no other test that
/// binds port 0 meanwhile can be handed the same port (which a port taken from a closed
/// listener allowed: tests in parallel then saw "connection reset", not "refused").
pub fn refused_port() -> (rustix::fd::OwnedFd, u16) {
    use rustix::net::{AddressFamily, SocketType, bind, getsockname, ipproto, socket};
    let fd =
        socket(AddressFamily::INET, SocketType::STREAM, Some(ipproto::TCP)).expect("a TCP socket");
    let any = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0);
    bind(&fd, &any).expect("bind 127.0.0.1:0");
    let port = std::net::SocketAddr::try_from(getsockname(&fd).expect("getsockname"))
        .expect("an IPv4 address")
        .port();
    (fd, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_are_found_from_deps_or_the_profile_dir() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("debug");
        std::fs::create_dir_all(profile.join("deps")).unwrap();
        std::fs::write(profile.join("vigil-sleeper"), b"").unwrap();
        let from_deps = profile.join("deps").join("some_test-0123");
        assert_eq!(
            find_helper(&from_deps, "vigil-sleeper"),
            Some(profile.join("vigil-sleeper"))
        );
        let from_profile = profile.join("vigil-other");
        assert_eq!(
            find_helper(&from_profile, "vigil-sleeper"),
            Some(profile.join("vigil-sleeper"))
        );
        assert_eq!(find_helper(&from_deps, "vigil-missing"), None);
    }

    #[test]
    #[should_panic(expected = "cargo build -p vigil-test-helpers")]
    fn a_missing_helper_says_how_to_build_it() {
        helper_bin("vigil-no-such-helper");
    }
}
