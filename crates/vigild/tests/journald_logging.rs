//! Vigil's log in the journal (issue 14, item 4): `vigil run` whose stderr is a journal
//! stream, set up as systemd sets up a unit's (a connection to journald's stdout socket
//! and `JOURNAL_STREAM` naming it), writes its records to a real systemd-journald over
//! the native protocol, so `journalctl -p warning`, `-t NAME` and `VIGIL_SERVICE=` work.
//!
//! The journald is the host's, alone in a private mount namespace (the test helpers'
//! `journald`); Vigil runs in that namespace (`nsenter -m`), so the socket it writes to is
//! the default `/run/systemd/journal/socket`, with no override for tests. Gated by
//! `VIGIL_TEST_SERVERS=1`, except the check that a `JOURNAL_STREAM` not naming stderr
//! changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::*;
use vigil_test_helpers::journald::{Journald, Options};

const LONG: Duration = Duration::from_secs(30);

fn journald() -> Option<Journald> {
    if std::env::var_os("VIGIL_TEST_SERVERS").is_none_or(|v| v != "1") {
        println!("skipped: set VIGIL_TEST_SERVERS=1");
        return None;
    }
    assert!(Journald::available(), "systemd-journald is needed");
    Some(Journald::start(&Options::default()))
}

/// What systemd gives a unit's stderr with `StandardError=journal`: a stream connected to
/// journald's stdout socket, opened with the stream header (identifier, unit, default
/// priority 6, `<N>` prefixes parsed, no forwarding), and `JOURNAL_STREAM=DEV:INODE` of
/// that socket.
fn journal_stream(j: &Journald, identifier: &str) -> (OwnedFd, String) {
    let stdout_socket = j.socket().with_file_name("stdout");
    let mut stream = UnixStream::connect(&stdout_socket).expect("journald's stdout socket");
    stream
        .write_all(format!("{identifier}\n\n6\n1\n0\n0\n0\n").as_bytes())
        .expect("stream header");
    let st = rustix::fs::fstat(&stream).expect("fstat the stream");
    (
        OwnedFd::from(stream),
        format!("{}:{}", st.st_dev, st.st_ino),
    )
}

/// `vigil run` inside journald's mount namespace, stderr the journal stream.
fn start_vigil(env: &Env, j: &Journald) -> Daemon {
    let (stderr, journal_stream) = journal_stream(j, "vigil");
    let mut cmd = command("nsenter");
    cmd.args(["-t", &j.pid().to_string(), "-m", "--"])
        .arg(vigil_bin())
        .arg("run")
        .arg("-c")
        .arg(env.config_path())
        .env("JOURNAL_STREAM", journal_stream)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr));
    Daemon {
        child: cmd.spawn().expect("spawn nsenter vigil run"),
        log: env.path("no-stderr-file"),
    }
}

/// The journal's entries matching `args` (journalctl's matches and options), as JSON.
fn entries(j: &Journald, args: &[&str]) -> Vec<Value> {
    let out = command("journalctl")
        .arg("-D")
        .arg(&j.root)
        .args(["--no-pager", "-q", "--all", "-o", "json"])
        .args(args)
        .output()
        .expect("journalctl");
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("journalctl json line"))
        .collect()
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or_default()
}

/// Waits until an entry matching `args` satisfies `pred`, and returns it.
fn wait_entry(j: &Journald, args: &[&str], what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(LONG, what, || entries(j, args).into_iter().find(&pred))
}

fn message_starts(prefix: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| field(e, "MESSAGE").starts_with(prefix)
}

const CONFIG: &str = r#"
[services.web]
driver = "exec"
command = ["/bin/sh", "-c", "echo 'web says hello on stdout'; echo 'web complains on stderr' >&2; exec sleep 600"]

[services.web.checks.probe]
kind = "exec"
command = ["false"]
every = "200ms"
on_failure = "alert"

[services.broken]
driver = "command"
restart_command = ["false"]

[services.broken.checks.probe]
kind = "exec"
command = ["false"]
every = "200ms"
"#;

#[test]
fn under_journald_records_carry_priority_and_fields() {
    let Some(j) = journald() else { return };
    let env = Env::new();
    env.write_config(CONFIG);
    let _daemon = start_vigil(&env, &j);

    // Info: the daemon's start, with its code location.
    let running = wait_entry(
        &j,
        &["-t", "vigil"],
        "vigil running",
        message_starts("vigil running:"),
    );
    assert_eq!(field(&running, "PRIORITY"), "6", "{running}");
    assert!(!field(&running, "CODE_FILE").is_empty(), "{running}");

    // Warning: a failed health check run, at priority 4, with the event's fields, and the
    // message without Vigil's own timestamp or level (journald has both).
    let warn = wait_entry(
        &j,
        &["-t", "vigil", "-p", "warning", "VIGIL_SERVICE=web"],
        "web's failed check run at priority warning",
        message_starts("web probe: Health check FAIL"),
    );
    assert_eq!(field(&warn, "PRIORITY"), "4", "{warn}");
    assert_eq!(field(&warn, "SYSLOG_IDENTIFIER"), "vigil", "{warn}");
    assert_eq!(field(&warn, "VIGIL_CHECK"), "probe", "{warn}");
    assert_eq!(field(&warn, "VIGIL_EVENT"), "check_status", "{warn}");
    assert_eq!(field(&warn, "VIGIL_TO"), "failing", "{warn}");
    assert_eq!(field(&warn, "_TRANSPORT"), "journal", "{warn}");

    // Error: the restart command fails, at priority 3; `-p err` leaves warnings out.
    let error = wait_entry(
        &j,
        &["-p", "err"],
        "broken's failed restart at priority err",
        message_starts("broken: Restart FAILED"),
    );
    assert_eq!(field(&error, "PRIORITY"), "3", "{error}");
    assert_eq!(field(&error, "VIGIL_SERVICE"), "broken", "{error}");
    assert_eq!(field(&error, "VIGIL_EVENT"), "restart_failed", "{error}");
    assert_eq!(field(&error, "VIGIL_SOURCE"), "health", "{error}");
    assert!(
        field(&error, "VIGIL_DURATION_MS").parse::<u64>().is_ok(),
        "{error}"
    );
    assert!(
        entries(&j, &["-p", "err"])
            .iter()
            .all(|e| field(e, "PRIORITY") <= "3"),
        "-p err shows only errors"
    );

    // The exec service's output is its own: `journalctl -t web`, stderr above stdout.
    let stderr = wait_entry(
        &j,
        &["-t", "web"],
        "web's stderr line",
        message_starts("web complains on stderr"),
    );
    assert_eq!(field(&stderr, "MESSAGE"), "web complains on stderr");
    assert_eq!(field(&stderr, "PRIORITY"), "4", "{stderr}");
    assert_eq!(field(&stderr, "VIGIL_STREAM"), "stderr", "{stderr}");
    assert_eq!(field(&stderr, "VIGIL_SERVICE"), "web", "{stderr}");
    let stdout = wait_entry(
        &j,
        &["-t", "web"],
        "web's stdout line",
        message_starts("web says hello on stdout"),
    );
    assert_eq!(field(&stdout, "MESSAGE"), "web says hello on stdout");
    assert_eq!(field(&stdout, "PRIORITY"), "6", "{stdout}");
    assert_eq!(field(&stdout, "VIGIL_STREAM"), "stdout", "{stdout}");

    // The started process's pid, a numeric field of the event, as VIGIL_PID.
    let started = wait_entry(
        &j,
        &["VIGIL_SERVICE=web", "VIGIL_EVENT=exec_started"],
        "web's start",
        |_| true,
    );
    assert!(
        field(&started, "VIGIL_PID").parse::<u32>().is_ok(),
        "{started}"
    );

    // `VIGIL_SERVICE=web` filters to web: Vigil's records about it and its output.
    let web = entries(&j, &["VIGIL_SERVICE=web"]);
    assert!(web.iter().all(|e| field(e, "VIGIL_SERVICE") == "web"));
    assert!(web.iter().any(|e| field(e, "SYSLOG_IDENTIFIER") == "web"));
    assert!(web.iter().any(|e| field(e, "SYSLOG_IDENTIFIER") == "vigil"));

    // Every record went over the native protocol: nothing reached the stream, so no line
    // carries Vigil's own `[timestamp] LEVEL` prefix.
    let vigil_pid = format!("_PID={}", field(&running, "_PID"));
    let ours = entries(&j, &[&vigil_pid]);
    assert!(ours.len() >= 5, "{} entries", ours.len());
    for e in &ours {
        assert_eq!(field(e, "_TRANSPORT"), "journal", "{e}");
        let message = field(e, "MESSAGE");
        assert!(!message.starts_with('['), "{e}");
        assert!(
            !message.contains(" WARN ") && !message.contains(" INFO "),
            "{e}"
        );
    }
}

/// When the entry cannot be sent (here journald's native socket is gone), the record goes
/// to stderr, the journal stream, behind its `<N>` prefix: journald files it at that
/// priority, and nothing is lost.
#[test]
fn without_journalds_socket_records_fall_back_to_the_stream_with_their_priority() {
    let Some(j) = journald() else { return };
    std::fs::remove_file(j.socket()).expect("remove journald's native socket");
    let env = Env::new();
    env.write_config(CONFIG);
    let _daemon = start_vigil(&env, &j);
    let warn = wait_entry(
        &j,
        &["-t", "vigil", "-p", "warning"],
        "a warning through the stream",
        message_starts("web probe: Health check FAIL"),
    );
    assert_eq!(field(&warn, "PRIORITY"), "4", "{warn}");
    assert_eq!(field(&warn, "_TRANSPORT"), "stdout", "{warn}");
    let error = wait_entry(
        &j,
        &["-t", "vigil", "-p", "err"],
        "an error through the stream",
        message_starts("broken: Restart FAILED"),
    );
    assert_eq!(field(&error, "PRIORITY"), "3", "{error}");
    // A service's output falls back too, named in the line (the stream is Vigil's).
    let out = wait_entry(
        &j,
        &["-t", "vigil", "-p", "warning"],
        "web's stderr through the stream",
        message_starts("web: web complains on stderr"),
    );
    assert_eq!(field(&out, "PRIORITY"), "4", "{out}");
}

/// An entry larger than a datagram may be (the socket's send buffer) goes in a sealed memfd,
/// and a value holding newlines in the binary form: journald stores both intact.
#[test]
fn large_entries_and_multi_line_values_reach_journald_intact() {
    use vigild::observe::journal::{Entry, Journal};
    let Some(j) = journald() else { return };
    let journal = Journal::open(j.socket()).expect("journal socket");
    let big = "x".repeat(1024 * 1024);
    let mut entry = Entry::new();
    entry
        .field("MESSAGE", format!("big {big}"))
        .field("SYSLOG_IDENTIFIER", "vigil-big")
        .field("PRIORITY", "5");
    journal.send(&entry).expect("send a 1 MiB entry");
    let mut entry = Entry::new();
    entry
        .field("MESSAGE", "first line\nsecond line")
        .field("SYSLOG_IDENTIFIER", "vigil-lines")
        .field("VIGIL_REASON", "a=b\nc");
    journal.send(&entry).expect("send a multi-line entry");

    let stored = wait_entry(&j, &["-t", "vigil-big"], "the 1 MiB entry", |_| true);
    assert_eq!(field(&stored, "MESSAGE").len(), 4 + big.len());
    assert_eq!(field(&stored, "PRIORITY"), "5");
    let lines = wait_entry(&j, &["-t", "vigil-lines"], "the multi-line entry", |_| true);
    assert_eq!(
        field(&lines, "MESSAGE"),
        "first line\nsecond line",
        "{lines}"
    );
    assert_eq!(field(&lines, "VIGIL_REASON"), "a=b\nc", "{lines}");
}

/// Outside journald nothing changes, even with `JOURNAL_STREAM` inherited from a parent
/// whose stderr was the journal: it must name fd 2 to count (systemd's rule).
#[test]
fn a_journal_stream_that_is_not_stderr_keeps_the_human_lines() {
    let env = Env::new();
    env.write_config(
        r#"
[services.web]
driver = "exec"
command = ["/bin/sh", "-c", "echo 'web complains on stderr' >&2; exec sleep 600"]
"#,
    );
    let log = env.path("daemon.log");
    let file = std::fs::File::create(&log).unwrap();
    let st = rustix::fs::fstat(&file).unwrap();
    let mut cmd = command(vigil_bin());
    cmd.arg("run")
        .arg("-c")
        .arg(env.config_path())
        // The device of the file, another inode: not fd 2.
        .env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino + 1))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    let daemon = Daemon {
        child: cmd.spawn().expect("spawn vigil run"),
        log,
    };
    let text = daemon.wait_log("web: web complains on stderr", LONG);
    let line = text
        .lines()
        .find(|l| l.contains("web: web complains on stderr"))
        .unwrap();
    assert!(line.starts_with('['), "{line}");
    assert!(
        line.ends_with("] INFO web: web complains on stderr"),
        "{line}"
    );
}

/// The whole point, under a real systemd (the nspawn test bed's systemd 252, gated by
/// `VIGIL_TEST_SYSTEMD=1`): Vigil as a unit whose stderr systemd connected to the journal,
/// and `journalctl -u UNIT -p warning` shows its warnings, `-p err` its errors, and
/// `-t web` what its exec service printed, stderr at priority 4.
#[test]
fn under_systemd_journalctl_filters_vigils_records_by_priority() {
    if std::env::var("VIGIL_TEST_SYSTEMD").as_deref() != Ok("1") {
        println!(
            "skipped: set VIGIL_TEST_SYSTEMD=1 and VIGIL_TEST_SYSTEMD_LEADER (see bench/nspawn-up.sh)"
        );
        return;
    }
    let leader = std::env::var("VIGIL_TEST_SYSTEMD_LEADER").expect("VIGIL_TEST_SYSTEMD_LEADER");
    let root = std::path::PathBuf::from(format!("/proc/{leader}/root"));
    let run = |args: &[&str]| {
        command("nsenter")
            .args(["-t", &leader, "-a"])
            .args(args)
            .output()
            .unwrap()
    };
    let id = format!("vigil-journal-{}", std::process::id());
    let unit = format!("{id}.service");
    let bin_in = format!("usr/local/bin/{id}");
    let conf_in = format!("etc/{id}.toml");
    let unit_in = format!("etc/systemd/system/{unit}");

    /// Stops the unit and removes what the test installed, pass or fail.
    struct Installed<F: Fn(&[&str]) -> std::process::Output> {
        run: F,
        unit: String,
        files: Vec<std::path::PathBuf>,
        state_dir: std::path::PathBuf,
    }
    impl<F: Fn(&[&str]) -> std::process::Output> Drop for Installed<F> {
        fn drop(&mut self) {
            let _ = (self.run)(&["systemctl", "stop", &self.unit]);
            for f in &self.files {
                let _ = std::fs::remove_file(f);
            }
            let _ = std::fs::remove_dir_all(&self.state_dir);
            let _ = (self.run)(&["systemctl", "daemon-reload"]);
        }
    }
    let _installed = Installed {
        run: &run,
        unit: unit.clone(),
        files: [&bin_in, &conf_in, &unit_in]
            .iter()
            .map(|p| root.join(p))
            .collect(),
        state_dir: root.join(format!("var/lib/{id}")),
    };
    std::fs::copy(vigil_bin(), root.join(&bin_in)).unwrap();
    std::fs::write(
        root.join(&conf_in),
        format!("[vigil]\nstate_dir = \"/var/lib/{id}\"\n{CONFIG}"),
    )
    .unwrap();
    // systemd's defaults: stdout and stderr to the journal, JOURNAL_STREAM set.
    std::fs::write(
        root.join(&unit_in),
        format!("[Service]\nExecStart=/{bin_in} run -c /{conf_in}\n"),
    )
    .unwrap();
    assert!(run(&["systemctl", "daemon-reload"]).status.success());
    let start = run(&["systemctl", "start", &unit]);
    assert!(start.status.success(), "{}", text(&start.stderr));

    let journal = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["journalctl", "-u", &unit, "--no-pager", "-q", "-o", "json"];
        all.extend_from_slice(args);
        text(&run(&all).stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("journalctl json line"))
            .collect()
    };
    let find = |args: &[&str], what: &str, prefix: &str| -> Value {
        wait_until(LONG, what, || {
            journal(args)
                .into_iter()
                .find(|e| field(e, "MESSAGE").starts_with(prefix))
        })
    };
    let warn = find(
        &["-p", "warning"],
        "a warning in journalctl -u UNIT -p warning",
        "web probe: Health check FAIL",
    );
    assert_eq!(field(&warn, "PRIORITY"), "4", "{warn}");
    assert_eq!(field(&warn, "_SYSTEMD_UNIT"), unit, "{warn}");
    assert_eq!(field(&warn, "_TRANSPORT"), "journal", "{warn}");
    let error = find(
        &["-p", "err"],
        "an error in journalctl -u UNIT -p err",
        "broken: Restart FAILED",
    );
    assert_eq!(field(&error, "PRIORITY"), "3", "{error}");
    let stderr = find(
        &["-t", "web"],
        "web's stderr in journalctl -u UNIT -t web",
        "web complains on stderr",
    );
    assert_eq!(field(&stderr, "PRIORITY"), "4", "{stderr}");
    let stdout = find(
        &["-t", "web"],
        "web's stdout in journalctl -u UNIT -t web",
        "web says hello on stdout",
    );
    assert_eq!(field(&stdout, "PRIORITY"), "6", "{stdout}");
    // Nothing of Vigil's came through the stream as a `[timestamp] LEVEL` line.
    for e in journal(&["-t", "vigil"]) {
        assert!(!field(&e, "MESSAGE").starts_with('['), "{e}");
    }
}
