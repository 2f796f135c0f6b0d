//! `vigil-notify-client`: a supervised test service speaking sd_notify by hand (a plain
//! datagram to `$NOTIFY_SOCKET`), so supervision tests control every message and exit.
//!
//! Options (applied in this order): `--pid-file PATH` (appends "main PID"), `--print TEXT`
//! (a stdout line), `--fork-ignoring-term` (starts `vigil-sleeper --ignore-term` as a
//! child in the same process group and appends "child PID" to the pid file),
//! `--ready-after-ms N` (then READY=1), `--status TEXT`, `--ping-ms N` (WATCHDOG=1 every
//! N ms, for `--ping-for-ms M` then silence; `--ping-log PATH` appends the wall-clock
//! nanoseconds after each ping was sent), `--exit CODE` or `--signal SIG` after
//! `--after-ms N`; otherwise it sleeps until killed. `--ignore-term` ignores SIGTERM.

use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;
use std::time::Duration;

fn send(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        eprintln!("vigil-notify-client: NOTIFY_SOCKET is not set");
        return;
    };
    match UnixDatagram::unbound() {
        Ok(sock) => {
            if let Err(e) = sock.send_to(msg.as_bytes(), &path) {
                eprintln!("vigil-notify-client: send {msg:?}: {e}");
            }
        }
        Err(e) => eprintln!("vigil-notify-client: socket: {e}"),
    }
}

fn append(path: &Option<String>, line: &str) {
    if let Some(p) = path
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
    {
        let _ = writeln!(f, "{line}");
    }
}

#[allow(
    unsafe_code,
    reason = "std has no way to raise a signal or set a disposition"
)]
fn raise(sig: i32) {
    // SAFETY: plain libc calls on integers; SIG_DFL installs no handler code.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

#[allow(unsafe_code, reason = "std has no way to set a signal disposition")]
fn ignore_term() {
    // SAFETY: SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let get = |i: &mut usize| -> String {
        *i += 1;
        args.get(*i).cloned().unwrap_or_default()
    };
    let (mut pid_file, mut print, mut fork, mut ready_after, mut status) =
        (None, None, false, None, None);
    let (mut ping_ms, mut ping_for, mut exit, mut signal, mut after, mut ign) =
        (None, None, None, None, 0u64, false);
    let mut ping_log: Option<String> = None;
    while i < args.len() {
        match args[i].as_str() {
            "--pid-file" => pid_file = Some(get(&mut i)),
            "--print" => print = Some(get(&mut i)),
            "--fork-ignoring-term" => fork = true,
            "--ready-after-ms" => ready_after = get(&mut i).parse::<u64>().ok(),
            "--status" => status = Some(get(&mut i)),
            "--ping-ms" => ping_ms = get(&mut i).parse::<u64>().ok(),
            "--ping-for-ms" => ping_for = get(&mut i).parse::<u64>().ok(),
            "--exit" => exit = get(&mut i).parse::<u8>().ok(),
            "--signal" => signal = get(&mut i).parse::<i32>().ok(),
            "--after-ms" => after = get(&mut i).parse().unwrap_or(0),
            "--ignore-term" => ign = true,
            "--ping-log" => ping_log = Some(get(&mut i)),
            other => {
                eprintln!("vigil-notify-client: unknown argument {other}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    if ign {
        ignore_term();
    }
    append(&pid_file, &format!("main {}", std::process::id()));
    if let Some(text) = print {
        println!("{text}");
        let _ = std::io::stdout().flush();
    }
    let mut _child = None;
    if fork {
        let sleeper = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join(vigil_test_helpers::SLEEPER)));
        if let Some(path) = sleeper {
            #[expect(
                clippy::disallowed_methods,
                reason = "test helper forks a grandchild on purpose"
            )]
            let spawned = std::process::Command::new(path)
                .arg("--ignore-term")
                .stdout(std::process::Stdio::piped())
                .spawn();
            if let Ok(mut c) = spawned {
                let mut line = String::new();
                if let Some(out) = c.stdout.take() {
                    let _ =
                        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
                }
                append(&pid_file, &format!("child {}", line.trim()));
                _child = Some(c);
            }
        }
    }
    if let Some(ms) = ready_after {
        std::thread::sleep(Duration::from_millis(ms));
        send("READY=1");
    }
    if let Some(text) = status {
        send(&format!("STATUS={text}"));
    }
    if let Some(every) = ping_ms {
        std::thread::spawn(move || {
            let mut sent = 0u64;
            loop {
                if ping_for.is_some_and(|limit| sent * every >= limit) {
                    return;
                }
                send("WATCHDOG=1");
                if ping_log.is_some() {
                    // After the send: a process stopped in between is measured late, never early.
                    #[expect(clippy::disallowed_methods, reason = "benchmark timestamps")]
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0);
                    append(&ping_log, &now.to_string());
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(every));
            }
        });
    }
    if exit.is_some() || signal.is_some() {
        std::thread::sleep(Duration::from_millis(after));
        if let Some(sig) = signal {
            raise(sig);
        }
        return ExitCode::from(exit.unwrap_or(0));
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
