//! The static tarball (`dist/build.sh tarball`: musl, x86_64) on a Debian release older
//! than the one it was built on: bullseye (Debian 11, glibc 2.31), a debootstrap
//! minbase root cached by `bench/rootfs.sh`, entered with systemd-nspawn (a chroot with
//! its own /proc; not booted, the host's network so loopback is shared, stdout and stderr
//! passed through, changes to the root kept in memory only). Inside: `vigil --version`, `vigil config check`, and a
//! one-shot `vigil check` of an http check against a tiny server on the host's loopback,
//! passing and then failing.
//!
//! Gated: runs only with `VIGIL_TEST_STATIC=1`, `VIGIL_TEST_STATIC_TARBALL` (the
//! .tar.gz, its .sha256 beside it) and `VIGIL_TEST_STATIC_ROOT` (the bullseye root).

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use support::*;

/// Answers every request on 127.0.0.1 with the current status code; returns the port.
fn tiny_server(status: Arc<AtomicU16>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let code = status.load(Ordering::Relaxed);
            let body = if code == 200 { "ok\n" } else { "broken\n" };
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Whether an ELF file asks for a program interpreter (a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF");
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([elf[o], elf[o + 1]]));
    let phoff = usize::try_from(u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap())).unwrap();
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

/// `ARGS` inside the bullseye root, with the unpacked tarball at /opt/vigil and `work`
/// at /work.
fn inside(root: &Path, unpacked: &Path, work: &Path, args: &[&str]) -> Output {
    command("systemd-nspawn")
        .args([
            "-q",
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            "--as-pid2",
            "--pipe",
        ])
        .arg("-D")
        .arg(root)
        .arg(format!("--bind-ro={}:/opt/vigil", unpacked.display()))
        .arg(format!("--bind={}:/work", work.display()))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_static_binary_runs_on_an_older_debian() {
    if std::env::var("VIGIL_TEST_STATIC").as_deref() != Ok("1") {
        println!(
            "skipped: set VIGIL_TEST_STATIC=1, VIGIL_TEST_STATIC_TARBALL (dist/build.sh tarball) and VIGIL_TEST_STATIC_ROOT (bench/rootfs.sh bullseye ...)"
        );
        return;
    }
    let tarball = PathBuf::from(std::env::var("VIGIL_TEST_STATIC_TARBALL").unwrap());
    let root = PathBuf::from(std::env::var("VIGIL_TEST_STATIC_ROOT").unwrap());
    let env = Env::new();

    // The published sum matches, and the tarball holds what the README promises.
    let dir = tarball.parent().unwrap();
    let sum = command("sha256sum")
        .arg("-c")
        .arg(format!(
            "{}.sha256",
            tarball.file_name().unwrap().to_str().unwrap()
        ))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(sum.status.success(), "{}", text(&sum.stdout));
    let untar = command("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(env.dir.path())
        .status()
        .unwrap();
    assert!(untar.success());
    let name = tarball
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(".tar.gz");
    let unpacked = env.path(name);
    for file in [
        "vigil",
        "vigil.service",
        "vigil.toml",
        "man/vigil.1",
        "man/vigil-status.1",
        "completions/vigil.bash",
        "completions/_vigil",
        "completions/vigil.fish",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "README.md",
        "CHANGELOG.md",
    ] {
        assert!(unpacked.join(file).is_file(), "the tarball has no {file}");
    }
    let unit = std::fs::read_to_string(unpacked.join("vigil.service")).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/local/bin/vigil run\n"),
        "{unit}"
    );
    let elf = std::fs::read(unpacked.join("vigil")).unwrap();
    assert!(!has_interpreter(&elf), "the binary needs a dynamic loader");

    // An older Debian: bullseye's glibc 2.31 could not run a binary built against
    // bookworm's 2.36; a static binary needs none.
    let work = env.path("work");
    std::fs::create_dir(&work).unwrap();
    let release = inside(
        &root,
        &unpacked,
        &work,
        &["/bin/cat", "/etc/debian_version"],
    );
    assert!(
        text(&release.stdout).starts_with("11."),
        "not bullseye: {}{}",
        text(&release.stdout),
        text(&release.stderr)
    );
    let out = inside(&root, &unpacked, &work, &["/opt/vigil/vigil", "--version"]);
    assert_eq!(
        text(&out.stdout).trim(),
        format!("vigil {}", env!("CARGO_PKG_VERSION")),
        "{}",
        text(&out.stderr)
    );

    let status = Arc::new(AtomicU16::new(200));
    let port = tiny_server(status.clone());
    std::fs::write(
        work.join("vigil.toml"),
        format!(
            r#"[vigil]
state_dir = "/work/state"

[services.web]
driver = "command"
restart_command = ["/bin/true"]

[services.web.checks.health]
kind = "http"
url = "http://127.0.0.1:{port}/health"
timeout = "5s"
"#
        ),
    )
    .unwrap();
    let out = inside(
        &root,
        &unpacked,
        &work,
        &[
            "/opt/vigil/vigil",
            "config",
            "check",
            "-c",
            "/work/vigil.toml",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let check = |status_code: u16| {
        status.store(status_code, Ordering::Relaxed);
        let out = inside(
            &root,
            &unpacked,
            &work,
            &[
                "/opt/vigil/vigil",
                "check",
                "--no-restart",
                "--json",
                "-c",
                "/work/vigil.toml",
            ],
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
        (out.status.code(), doc)
    };
    let (code, doc) = check(200);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(doc["services"][0]["checks"][0]["verdict"], "pass", "{doc}");
    let (code, doc) = check(500);
    assert_eq!(code, Some(1), "{doc}");
    let reason = doc["services"][0]["checks"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("500"), "{doc}");
}
