//! The documented defaults are the real ones: for every key with a default in the schema,
//! writing `key = <documented default>` gives the same configuration as leaving it out.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;

use vigil_config::schema::{self, Dflt, Section};
use vigil_config::{Config, parse};

const SERVICE: &str = "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n";

/// A minimal valid file where `{}` is a line inside the section's table.
fn template(section: &Section) -> String {
    let check =
        |kind_lines: &str| format!("{SERVICE}[services.web.checks.c]\n{kind_lines}\n{{}}\n");
    match section.id {
        "vigil" => "[vigil]\n{}\n".to_owned(),
        "guard" => "[defaults.guard]\n{}\n".to_owned(),
        "backoff" => "[defaults.guard.backoff]\ninitial = \"1s\"\nmax = \"1h\"\n{}\n".to_owned(),
        "driver-command" => format!("{SERVICE}{{}}\n"),
        "driver-docker" => {
            "[services.web]\ndriver = \"docker\"\ncontainer = \"web\"\n{}\n".to_owned()
        }
        "driver-exec" => {
            "[services.w]\ndriver = \"exec\"\ncommand = [\"/bin/true\"]\nwatchdog = \"1s\"\n{}\n"
                .to_owned()
        }
        "driver-systemd" => "[services.web]\ndriver = \"systemd\"\nunit = \"web\"\n{}\n".to_owned(),
        "checks" | "check-tcp" => check("kind = \"tcp\"\nhost = \"h\"\nport = 1"),
        "check-http" => check("kind = \"http\"\nurl = \"http://h\""),
        "check-listening" => check("kind = \"listening\"\nport = 1"),
        "check-exec" => check("kind = \"exec\"\ncommand = [\"/bin/true\"]"),
        "check-websocket" => check("kind = \"websocket\"\nurl = \"ws://h\""),
        "check-sockets" => check("kind = \"sockets\"\nport = 1\nstate = \"listen\"\nmax = 0"),
        "check-log" => check("kind = \"log\"\npath = \"/l\"\npattern = \"x\""),
        "check-interface" => check("kind = \"interface\"\ninterface = \"eth0\""),
        "check-file-age" => check("kind = \"file_age\"\npath = \"/f\"\nmax_age = \"1h\""),
        "check-clock" => check("kind = \"clock\"\nservers = [\"ntp\"]"),
        "check-tls-cert" => check("kind = \"tls_cert\"\nhost = \"h\""),
        "check-redis" => check("kind = \"redis\"\nhost = \"h\""),
        "check-postgres" => check("kind = \"postgres\"\nhost = \"h\""),
        "check-mqtt" => check("kind = \"mqtt\"\nhost = \"h\""),
        "check-process" => check("kind = \"process\"\nname = \"p\""),
        "check-docker" => check("kind = \"docker\"\ncontainer = \"c\""),
        "groups" => format!("{SERVICE}[groups.g]\nmembers = [\"web\"]\n{{}}\n"),
        "alerts" | "alert-webhook" => {
            "[alerts.a]\nkind = \"webhook\"\nurl = \"http://h\"\n{}\n".to_owned()
        }
        "alert-email" => {
            "[alerts.a]\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"a@b\"\nto = [\"c@d\"]\n{}\n"
                .to_owned()
        }
        "check-systemd" => check("kind = \"systemd\"\nunit = \"u\""),
        "schedule" => format!("{SERVICE}[[services.web.schedule]]\ncron = \"0 * * * *\"\n{{}}\n"),
        "maintenance" => format!(
            "{SERVICE}[[services.web.maintenance]]\ncron = \"0 * * * *\"\nduration = \"5m\"\n{{}}\n"
        ),
        "fleet" => "[fleet]\npostgres = \"postgres://vigil@db/fleet\"\n{}\n".to_owned(),
        "fleet-keys" => {
            "[fleet]\npostgres = \"postgres://vigil@db/fleet\"\n[fleet.keys.api]\n{}\n".to_owned()
        }
        other => panic!("no template for section {other}; add one"),
    }
}

fn parsed(src: &str) -> Config {
    parse(src, Path::new("/etc/vigil/vigil.toml"))
        .unwrap_or_else(|e| panic!("{e}\n--- source:\n{src}"))
}

#[test]
fn documented_defaults_equal_omitted_keys() {
    let mut tested = 0;
    for section in schema::SECTIONS {
        for key in section.keys {
            let Dflt::Value(literal) = key.default else {
                continue;
            };
            let t = template(section);
            let without = parsed(&t.replace("{}", ""));
            let with = parsed(&t.replace("{}", &format!("{} = {literal}", key.key)));
            assert_eq!(
                with, without,
                "`{} = {literal}` in {} is not the default",
                key.key, section.header
            );
            tested += 1;
        }
    }
    assert!(tested >= 25, "only {tested} defaults tested");
}

#[test]
fn non_default_values_are_not_ignored() {
    // Guards the test above against a template where the key has no effect at all.
    let t = template(&schema::CHECK);
    assert_ne!(
        parsed(&t.replace("{}", "every = \"31s\"")),
        parsed(&t.replace("{}", ""))
    );
}

#[test]
fn docker_defaults_are_resolved_at_probe_time() {
    use vigil_config::model::{CheckKind, DockerCheck};
    let config = parsed(&template(&schema::DOCKER).replace("{}", ""));
    let check = &config.services[0].checks[0];
    assert_eq!(
        check.kind,
        CheckKind::Docker(DockerCheck {
            container: "c".to_owned(),
            require_healthy: None,
            docker_host: None,
        })
    );
}
