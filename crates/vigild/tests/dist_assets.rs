//! What the packages ship besides the binary, as the binary makes it: the unit file
//! (`vigil systemd-unit` prints the packaged `package/vigil.service`, pointed at itself),
//! man pages and shell completions generated from the clap definitions
//! (`vigil __dist-assets`, `vigil completions`), and the packaged configuration.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::path::Path;

use support::*;

fn packaged(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("package")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One text for the unit: the packaged file, but for the `ExecStart=` binary.
#[test]
fn systemd_unit_prints_the_packaged_unit_for_this_binary() {
    let out = command(vigil_bin()).arg("systemd-unit").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let expected = packaged("vigil.service").replace(
        "ExecStart=/usr/bin/vigil run\n",
        &format!("ExecStart={} run\n", vigil_bin().display()),
    );
    assert_eq!(printed, expected);
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "RuntimeDirectory=vigil",
        "StateDirectory=vigil",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(printed.lines().any(|l| l == line), "missing {line}");
    }
}

/// A man page for `vigil` and for every subcommand a user can type, none for hidden
/// ones; completion scripts for bash, zsh and fish that know the subcommands.
#[test]
fn dist_assets_are_man_pages_and_completions() {
    let env = Env::new();
    let out = command(vigil_bin())
        .arg("__dist-assets")
        .arg(env.path("assets"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut pages: Vec<String> = std::fs::read_dir(env.path("assets/man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in [
        "vigil.1",
        "vigil-run.1",
        "vigil-check.1",
        "vigil-restart.1",
        "vigil-status.1",
        "vigil-history.1",
        "vigil-reset.1",
        "vigil-heartbeat.1",
        "vigil-config.1",
        "vigil-config-check.1",
        "vigil-systemd-unit.1",
        "vigil-alert.1",
        "vigil-alert-test.1",
        "vigil-completions.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "no {page} in {pages:?}");
    }
    assert!(
        !pages.iter().any(|p| p.contains("__")),
        "a hidden command has a page: {pages:?}"
    );
    let main = std::fs::read_to_string(env.path("assets/man/vigil.1")).unwrap();
    assert!(main.contains("\n.TH vigil 1 "), "{main}");
    assert!(main.contains("vigil\\-status(1)"), "{main}");
    let status = std::fs::read_to_string(env.path("assets/man/vigil-status.1")).unwrap();
    assert!(status.contains("\\-\\-json"), "{status}");

    for (file, marker) in [
        ("vigil.bash", "complete -F _vigil"),
        ("_vigil", "#compdef vigil"),
        ("vigil.fish", "complete -c vigil"),
    ] {
        let script = std::fs::read_to_string(env.path("assets/completions").join(file)).unwrap();
        assert!(script.contains(marker), "{file}: no {marker:?}");
        assert!(script.contains("status"), "{file} does not know `status`");
        assert!(
            !script.contains("__dist-assets"),
            "{file} offers a hidden command"
        );
    }
}

/// `vigil completions SHELL` prints the same scripts; an unknown shell is a usage error.
#[test]
fn completions_print_to_stdout_and_reject_unknown_shells() {
    let env = Env::new();
    let out = command(vigil_bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    command(vigil_bin())
        .arg("__dist-assets")
        .arg(env.path("a"))
        .status()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        std::fs::read_to_string(env.path("a/completions/vigil.bash")).unwrap()
    );
    let out = command(vigil_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid value 'tcsh'"),
        "{}",
        text(&out.stderr)
    );
}

/// The packaged configuration is valid and monitors nothing until edited.
#[test]
fn the_packaged_configuration_is_valid_and_empty() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("package/vigil.toml");
    let out = command(vigil_bin())
        .args(["config", "check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("OK (0 service(s), 0 check(s)"),
        "{}",
        text(&out.stdout)
    );
}
