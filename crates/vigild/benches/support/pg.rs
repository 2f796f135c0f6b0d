//! The fleet benches' own PostgreSQL 15: a fresh cluster in a temporary directory, run as
//! the `postgres` user on a free loopback port, killed when dropped.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Stdio};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

#[expect(clippy::disallowed_methods, reason = "a benchmark measures real time")]
pub fn now() -> std::time::Instant {
    std::time::Instant::now()
}

#[expect(clippy::disallowed_methods, reason = "the benchmark's own server")]
fn command(p: &str) -> std::process::Command {
    let mut c = std::process::Command::new(p);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

pub struct Pg(pub Child);
impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd.lines().find(|l| l.starts_with("postgres:")).unwrap();
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// initdb in `dir`, then a postmaster with `settings` (`-c name=value` pairs) besides
/// `listen_addresses=127.0.0.1`; its port.
pub fn start(dir: &std::path::Path, settings: &[String]) -> (Pg, u16) {
    let (uid, gid) = postgres_ids();
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    let ok = command(&format!("{PG_BIN}/initdb"))
        .uid(uid)
        .gid(gid)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-U", "postgres", "-A", "trust", "--no-sync"])
        .status()
        .unwrap();
    assert!(ok.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = command(&format!("{PG_BIN}/postgres"))
        .uid(uid)
        .gid(gid)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(settings)
        .spawn()
        .unwrap();
    (Pg(child), port)
}
