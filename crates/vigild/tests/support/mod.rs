//! Shared helpers for vigild's end-to-end tests: a scratch directory with a config, the
//! `vigil` binary, a daemon with a kill guard, and a deadline-bounded wait.
#![allow(dead_code)]

pub mod docker;
pub mod http;
pub mod systemd;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Real time for deadlines in tests (clippy bans the call elsewhere).
#[expect(clippy::disallowed_methods, reason = "tests wait on real time")]
pub fn instant_now() -> Instant {
    Instant::now()
}

/// Every process a test starts goes through here (clippy bans `Command::new` elsewhere).
#[expect(clippy::disallowed_methods, reason = "the test suite's one spawn site")]
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    Command::new(program)
}

/// A test-helper program, built on first use when this crate's tests run alone
/// (`cargo test --workspace` builds them anyway).
pub fn helper_bin(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().expect("current exe");
    let expected = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .expect("target dir");
    if !expected.exists() {
        BUILD.call_once(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = command(cargo)
                .args(["build", "-p", "vigil-test-helpers", "--bins"])
                .status()
                .expect("cargo build -p vigil-test-helpers");
            assert!(status.success(), "building the test helpers failed");
        });
    }
    vigil_test_helpers::helper_bin(name)
}

pub fn vigil_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vigil"))
}

/// A scratch directory holding `vigil.toml` and the state dir.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("vigil.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    /// Writes the config; `[vigil] state_dir` is prepended automatically.
    pub fn write_config(&self, body: &str) {
        let text = format!(
            "[vigil]\nstate_dir = {:?}\n\n{body}",
            self.state_dir().display().to_string()
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// `vigil ARGS -c CONFIG`, waiting for it.
    pub fn vigil(&self, args: &[&str]) -> Output {
        let mut cmd = command(vigil_bin());
        cmd.args(args).arg("-c").arg(self.config_path());
        cmd.stdin(Stdio::null());
        cmd.output().expect("run vigil")
    }

    /// `vigil history --json` entries.
    pub fn history(&self) -> Vec<serde_json::Value> {
        let out = self.vigil(&["history", "--json"]);
        assert!(
            out.status.success(),
            "history failed: {}",
            text(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
        doc["entries"].as_array().cloned().unwrap_or_default()
    }

    /// Starts `vigil run` with its stderr captured into `daemon.log`.
    pub fn start_daemon(&self, extra: &[&str]) -> Daemon {
        let log = self.path("daemon.log");
        let file = std::fs::File::create(&log).expect("daemon log");
        let mut cmd = command(vigil_bin());
        cmd.arg("run").args(extra).arg("-c").arg(self.config_path());
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        let child = cmd.spawn().expect("spawn vigil run");
        Daemon { child, log }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `vigil run`; killed (SIGKILL) if the test ends without stopping it.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        signal(self.child.id(), sig);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = instant_now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if instant_now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn wait_log(&self, needle: &str, limit: Duration) -> String {
        wait_until(limit, &format!("daemon log to contain {needle:?}"), || {
            let log = self.log_text();
            log.contains(needle).then_some(log)
        })
    }
}

impl Drop for Daemon {
    /// SIGTERM first, so the daemon stops what it supervises (exec children would
    /// otherwise outlive the test); SIGKILL if it has not exited within 10 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Sends `sig` to a process this test started.
pub fn signal(pid: u32, sig: rustix::process::Signal) {
    try_signal(pid, sig).expect("kill");
}

/// Sends `sig` to a process this test started, which may have exited (`Errno::SRCH`).
pub fn try_signal(pid: u32, sig: rustix::process::Signal) -> rustix::io::Result<()> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid > 0");
    rustix::process::kill_process(pid, sig)
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Polls `f` until it returns `Some`, failing loudly after `limit`.
pub fn wait_until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = instant_now() + limit;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if instant_now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Lines of a restart-recorder log: (kind, pid, unix_ns).
pub fn recorder_lines(path: &Path) -> Vec<(String, u32, u128)> {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        f.read_to_string(&mut text).expect("read recorder log");
    }
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                it.next()?.to_owned(),
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// Start/end intervals per recorder pid, asserting each run wrote both lines.
pub fn recorder_runs(path: &Path) -> Vec<(u128, u128)> {
    let lines = recorder_lines(path);
    let mut starts = std::collections::HashMap::new();
    let mut runs = Vec::new();
    for (kind, pid, ns) in lines {
        match kind.as_str() {
            "start" => {
                starts.insert(pid, ns);
            }
            "end" => {
                let start = starts.remove(&pid).expect("end without start");
                runs.push((start, ns));
            }
            other => panic!("unexpected recorder line kind {other}"),
        }
    }
    runs.sort();
    runs
}

pub fn now_ns() -> u128 {
    #[expect(clippy::disallowed_methods, reason = "tests measure real time")]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

/// Kills and reaps a child when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `vigil-flaky-http` on an ephemeral port; its status code is read from
/// `NAME.status` in the scratch directory (missing = 200).
pub fn start_flaky_http(env: &Env, name: &str) -> (KillOnDrop, u16) {
    let port_file = env.path(&format!("{name}.port"));
    let child = command(helper_bin("vigil-flaky-http"))
        .args(["--port", "0", "--port-file"])
        .arg(&port_file)
        .arg("--status-file")
        .arg(env.path(&format!("{name}.status")))
        .spawn()
        .expect("flaky http");
    let guard = KillOnDrop(child);
    let port = wait_until(Duration::from_secs(10), "flaky http port", || {
        std::fs::read_to_string(&port_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    (guard, port)
}
