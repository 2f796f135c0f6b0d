//! The spawn site: exit reporting, plumbing, caps, timeouts and cancellation all leave no
//! process behind.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic is a test failure"
)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::{KillOnDrop, argv, process_gone, wait_until};
use vigil_checks::process::{Exit, Leftovers, RunSpec, SpawnError, run};

const GONE_WITHIN: Duration = Duration::from_secs(5);

fn pids(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[tokio::test]
async fn reports_exit_codes_and_signals() {
    let a = argv(&["sh", "-c", "exit 3"]);
    let out = run(RunSpec::new(&a, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.exit, Some(Exit::Code(3)));
    assert!(!out.timed_out);
    assert_eq!(Exit::Code(3).to_string(), "exit code 3");

    let a = argv(&["sh", "-c", "kill -9 $$"]);
    let out = run(RunSpec::new(&a, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.exit, Some(Exit::Signal(9)));
    assert_eq!(
        out.exit.unwrap().to_string(),
        "killed by signal 9 (SIGKILL)"
    );
    assert_eq!(Exit::Signal(64).to_string(), "killed by signal 64");
}

#[tokio::test]
async fn passes_stdin_env_and_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let a = argv(&[
        "sh",
        "-c",
        "cat; echo \"$VIGIL_TEST_VAR\"; pwd; echo oops >&2",
    ]);
    let env = [("VIGIL_TEST_VAR".to_owned(), "from-env".to_owned())];
    let spec = RunSpec {
        stdin: Some(b"from-stdin\n"),
        env: &env,
        cwd: Some(dir.path()),
        ..RunSpec::new(&a, Duration::from_secs(10))
    };
    let out = run(spec).await.unwrap();
    assert_eq!(out.exit, Some(Exit::Code(0)));
    let cwd = dir.path().canonicalize().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("from-stdin\nfrom-env\n{}\n", cwd.display())
    );
    assert_eq!(out.stderr, b"oops\n");
    assert!(out.pid > 0);
}

#[tokio::test]
async fn stdin_defaults_to_dev_null() {
    let a = argv(&["cat"]);
    let out = run(RunSpec::new(&a, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.exit, Some(Exit::Code(0)));
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let a = argv(&["sh", "-c", "sleep 30 & echo $!; sleep 30"]);
    let out = run(RunSpec::new(&a, Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(out.timed_out);
    assert_eq!(out.exit, None);
    assert!(
        out.duration >= Duration::from_millis(300),
        "{:?}",
        out.duration
    );
    assert!(out.duration < Duration::from_secs(5), "{:?}", out.duration);
    let found = pids(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(found.len(), 1, "grandchild pid printed first: {found:?}");
    let _guard = KillOnDrop(found[0]);
    wait_until("the grandchild is gone", GONE_WITHIN, || {
        process_gone(found[0])
    })
    .await;
    wait_until("the leader is gone", GONE_WITHIN, || process_gone(out.pid)).await;
}

#[tokio::test]
async fn dropping_the_future_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    let script = format!(
        "sleep 30 & echo $$ $! > {}.tmp && mv {0}.tmp {0}; sleep 30",
        pid_file.display()
    );
    let a = argv(&["sh", "-c", &script]);
    let task = tokio::spawn(async move { run(RunSpec::new(&a, Duration::from_secs(60))).await });

    wait_until("the shell wrote its pids", GONE_WITHIN, || {
        pid_file.exists()
    })
    .await;
    let found = pids(&std::fs::read_to_string(&pid_file).unwrap());
    assert_eq!(found.len(), 2, "{found:?}");
    let _guards: Vec<KillOnDrop> = found.iter().map(|&p| KillOnDrop(p)).collect();
    assert!(!process_gone(found[0]) && !process_gone(found[1]));

    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    for pid in found {
        wait_until(&format!("pid {pid} is gone"), GONE_WITHIN, || {
            process_gone(pid)
        })
        .await;
    }
}

#[tokio::test]
async fn leftovers_are_killed_after_a_normal_exit_by_default() {
    let a = argv(&["sh", "-c", "sleep 30 & echo $!"]);
    let out = run(RunSpec::new(&a, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(out.exit, Some(Exit::Code(0)));
    let found = pids(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(found.len(), 1);
    let _guard = KillOnDrop(found[0]);
    wait_until("the leftover is gone", GONE_WITHIN, || {
        process_gone(found[0])
    })
    .await;
}

#[tokio::test]
async fn leftovers_can_be_kept_without_waiting_for_their_pipes() {
    // The background sleep keeps stdout open; the run must not wait for it.
    let a = argv(&["sh", "-c", "sleep 30 & echo $!"]);
    let spec = RunSpec {
        leftovers: Leftovers::Keep,
        ..RunSpec::new(&a, Duration::from_secs(20))
    };
    let started = tokio::time::Instant::now();
    let out = run(spec).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.exit, Some(Exit::Code(0)));
    let found = pids(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(found.len(), 1);
    let _guard = KillOnDrop(found[0]);
    assert!(!process_gone(found[0]), "the kept process still runs");
}

#[tokio::test]
async fn missing_program_is_not_found() {
    for program in [
        "/nonexistent/vigil-no-such-program",
        "vigil-no-such-program-on-path",
    ] {
        let a = argv(&[program, "--flag"]);
        let err = run(RunSpec::new(&a, Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(matches!(err, SpawnError::NotFound { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot run {program}: program not found")
        );
    }
}

#[tokio::test]
async fn non_executable_file_is_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.sh");
    std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let a = argv(&[path.to_str().unwrap()]);
    let err = run(RunSpec::new(&a, Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SpawnError::PermissionDenied { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[tokio::test]
async fn missing_working_directory_is_blamed_on_the_directory() {
    let a = argv(&["true"]);
    let spec = RunSpec {
        cwd: Some(std::path::Path::new("/nonexistent/vigil-dir")),
        ..RunSpec::new(&a, Duration::from_secs(5))
    };
    let err = run(spec).await.unwrap_err();
    assert!(matches!(err, SpawnError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("working directory /nonexistent/vigil-dir"),
        "{err}"
    );
}

#[tokio::test]
async fn output_is_capped_and_the_rest_drained() {
    let a = argv(&[
        "sh",
        "-c",
        "head -c 10000000 /dev/zero; head -c 10000000 /dev/zero >&2; echo done >&2",
    ]);
    let spec = RunSpec {
        capture_limit: 1000,
        ..RunSpec::new(&a, Duration::from_secs(30))
    };
    let out = run(spec).await.unwrap();
    assert_eq!(
        out.exit,
        Some(Exit::Code(0)),
        "the child never blocked on a full pipe"
    );
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout.iter().all(|&b| b == 0));
    assert_eq!(out.stderr.len(), 1000);
}

#[tokio::test]
async fn a_large_stdin_is_abandoned_when_the_child_does_not_read_it() {
    let data = vec![b'x'; 4 * 1024 * 1024];
    let a = argv(&["true"]);
    let spec = RunSpec {
        stdin: Some(&data),
        ..RunSpec::new(&a, Duration::from_secs(10))
    };
    let out = run(spec).await.unwrap();
    assert_eq!(out.exit, Some(Exit::Code(0)));
    assert!(!out.timed_out);
}
