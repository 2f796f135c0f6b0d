//! An exec service's `user`/`group`, resolved through NSS as systemd's `User=`/`Group=`
//! are: the process runs with the user's uid, its primary group (or `group`), and its
//! supplementary groups (`initgroups`); names NSS does not know are refused with the
//! reason. (LDAP-style users that only NSS knows are tested in the package test bed,
//! `package_e2e.rs`, with libnss-extrausers.)
//!
//! Needs root to switch users (CI runs as root) and the `postgres` account that Debian's
//! postgresql package creates as a member of `ssl-cert`; otherwise prints "skipped".

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic is a test failure.

mod support;

use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(20);

/// The `postgres` account's uid, primary gid and every group it is in, through NSS.
fn postgres_account() -> Option<(u32, u32, Vec<u32>)> {
    let user = nix::unistd::User::from_name("postgres").ok().flatten()?;
    let name = std::ffi::CString::new(user.name.clone()).ok()?;
    let groups = nix::unistd::getgrouplist(&name, user.gid).ok()?;
    let mut groups: Vec<u32> = groups.iter().map(|g| g.as_raw()).collect();
    groups.sort_unstable();
    groups.dedup();
    Some((user.uid.as_raw(), user.gid.as_raw(), groups))
}

#[test]
fn an_exec_service_gets_its_users_supplementary_groups() {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: needs root to switch users");
        return;
    }
    let Some((uid, gid, groups)) = postgres_account().filter(|(_, _, g)| g.len() > 1) else {
        // CI installs postgresql (VIGIL_TEST_SERVERS=1): there the account must exist.
        assert!(
            std::env::var_os("VIGIL_TEST_SERVERS").is_none(),
            "no `postgres` account with a supplementary group"
        );
        println!("skipped: no `postgres` account with a supplementary group");
        return;
    };
    let env = Env::new();
    let out = env.path("id.txt");
    // The scratch directory is root's 0700: the service writes through its stdout pipe.
    env.write_config(&format!(
        r#"
[services.pg]
driver = "exec"
command = ["/bin/sh", "-c", "echo ids $(id -u) $(id -g) $(id -G); exec sleep 600"]
user = "postgres"
stdout = {{ file = {o:?} }}
"#,
        o = out.display().to_string()
    ));
    let _daemon = env.start_daemon(&[]);
    let line = wait_until(LONG, "the service's ids", || {
        let t = std::fs::read_to_string(&out).ok()?;
        t.lines().find(|l| l.starts_with("ids ")).map(str::to_owned)
    });
    let mut fields = line.split_whitespace().skip(1);
    assert_eq!(fields.next(), Some(uid.to_string().as_str()), "{line}");
    assert_eq!(fields.next(), Some(gid.to_string().as_str()), "{line}");
    let mut seen: Vec<u32> = fields.map(|f| f.parse().unwrap()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, groups, "{line}");
}

/// A user or group NSS does not know, and a bare uid without an account or a `group`
/// (which would leave the process in Vigil's own group), are start failures with the
/// reason in the log.
#[test]
fn unknown_names_and_a_bare_uid_without_group_are_refused() {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: needs root to switch users");
        return;
    }
    let env = Env::new();
    env.write_config(
        r#"
[services.ghost]
driver = "exec"
command = ["/bin/sleep", "600"]
user = "no-such-user-vigil"
restart = "no"

[services.nogroup]
driver = "exec"
command = ["/bin/sleep", "600"]
group = "no-such-group-vigil"
restart = "no"

[services.bare]
driver = "exec"
command = ["/bin/sleep", "600"]
user = "54321"
restart = "no"
"#,
    );
    let daemon = env.start_daemon(&[]);
    daemon.wait_log(
        "unknown user \"no-such-user-vigil\" (looked up through NSS",
        LONG,
    );
    daemon.wait_log(
        "unknown group \"no-such-group-vigil\" (looked up through NSS",
        LONG,
    );
    daemon.wait_log(
        "user 54321 has no account (through NSS): set `group` too",
        LONG,
    );
}
