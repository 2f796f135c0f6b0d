//! `include = [...]`: files in a `conf.d` directory join the main file; their errors are
//! theirs; the same name in two files is an error naming both places.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::PathBuf;

use vigil_config::{Config, ConfigErrors, load};

const SERVICE: &str = "driver = \"command\"\nrestart_command = [\"/bin/true\"]\n";

struct Dir(tempfile::TempDir);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        let dir = Dir(tempfile::tempdir().unwrap());
        for (name, text) in files {
            dir.write(name, text.as_bytes());
        }
        dir
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn load(&self) -> Result<Config, ConfigErrors> {
        load(&self.path("vigil.toml"))
    }

    fn errors(&self) -> Vec<String> {
        let errs = self.load().map(|_| ()).unwrap_err();
        let root = format!("{}/", self.0.path().display());
        errs.iter()
            .map(|e| e.to_string().replace(&root, ""))
            .collect()
    }
}

fn names(config: &Config) -> Vec<&str> {
    config.services.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn conf_d_files_join_in_path_order() {
    let dir = Dir::new(&[
        (
            "vigil.toml",
            &format!("include = [\"conf.d/*.toml\"]\n\n[services.main]\n{SERVICE}"),
        ),
        ("conf.d/20-b.toml", &format!("[services.b]\n{SERVICE}")),
        ("conf.d/10-a.toml", &format!("[services.a]\n{SERVICE}")),
        (
            "conf.d/30-c.toml.bak",
            &format!("[services.bak]\n{SERVICE}"),
        ),
        (
            "conf.d/.hidden.toml",
            &format!("[services.hidden]\n{SERVICE}"),
        ),
    ]);
    let config = dir.load().unwrap();
    assert_eq!(names(&config), ["main", "a", "b"]);
    assert_eq!(config.path, dir.path("vigil.toml"));
    assert_eq!(
        config.files,
        [
            dir.path("vigil.toml"),
            dir.path("conf.d/10-a.toml"),
            dir.path("conf.d/20-b.toml"),
        ]
    );
}

#[test]
fn included_files_define_services_groups_and_channels_that_refer_across_files() {
    let dir = Dir::new(&[
        (
            "vigil.toml",
            "include = [\"conf.d/*.toml\", \"alerts.toml\"]\n[defaults.guard]\ncooldown = \"7s\"\n",
        ),
        (
            "conf.d/web.toml",
            &format!(
                "[services.web]\n{SERVICE}alerts = [\"ops\"]\n[services.db]\n{SERVICE}[groups.stack]\nmembers = [\"db\", \"web\"]\n"
            ),
        ),
        (
            "alerts.toml",
            "[alerts.ops]\nkind = \"exec\"\ncommand = [\"/bin/page\"]\n",
        ),
    ]);
    let config = dir.load().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&config), ["web", "db"]);
    assert_eq!(config.groups[0].members.len(), 2);
    assert_eq!(config.alerts[0].name, "ops");
    // `[defaults.guard]` of the main file applies to included services.
    assert_eq!(config.services[0].guard.cooldown.as_secs(), 7);
}

#[test]
fn an_empty_conf_d_is_fine_and_a_missing_plain_path_is_not() {
    let dir = Dir::new(&[(
        "vigil.toml",
        "include = [\"conf.d/*.toml\", \"nowhere/*.toml\"]\n",
    )]);
    assert!(dir.load().unwrap().services.is_empty());
    let dir = Dir::new(&[("vigil.toml", "\ninclude = [\"extra.toml\"]\n")]);
    let errors = dir.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("vigil.toml:2:12: include[0]: cannot read included file ")
            && errors[0].contains("extra.toml: No such file or directory"),
        "{errors:?}"
    );
}

#[test]
fn errors_in_an_included_file_are_at_its_own_line_and_column() {
    let dir = Dir::new(&[
        (
            "vigil.toml",
            &format!(
                "include = [\"conf.d/*.toml\"]\n[services.main]\n{SERVICE}comand_timeout = 5\n"
            ),
        ),
        (
            "conf.d/a.toml",
            &format!("# web\n\n[services.web]\n{SERVICE}command_timeout = \"5x\"\n"),
        ),
        ("conf.d/b.toml", "[services.broken\n"),
    ]);
    // In file order: the main file, then the included files in include order.
    assert_eq!(
        dir.errors(),
        [
            "vigil.toml:5:1: services.main.comand_timeout: unknown key `comand_timeout` in [services.main]; did you mean `command_timeout`?",
            "conf.d/a.toml:6:19: services.web.command_timeout: invalid duration \"5x\": expected e.g. \"30s\", \"5m\", \"1h 30m\"",
            "conf.d/b.toml:1:17: invalid TOML: unclosed table, expected `]`",
        ]
    );
}

#[test]
fn a_name_defined_in_two_files_is_an_error_naming_both() {
    let dir = Dir::new(&[
        (
            "vigil.toml",
            &format!(
                "include = [\"a.toml\"]\n\n[alerts.ops]\nkind = \"exec\"\ncommand = [\"/x\"]\n\n\n\n\n\n\n[services.web]\n{SERVICE}"
            ),
        ),
        (
            "a.toml",
            &format!(
                "# again\n\n[services.web]\n{SERVICE}[alerts.ops]\nkind = \"exec\"\ncommand = [\"/y\"]\n"
            ),
        ),
    ]);
    assert_eq!(
        dir.errors(),
        [
            "a.toml:3:1: services.web: duplicate service \"web\" (first defined at vigil.toml:12:1)",
            "a.toml:6:1: alerts.ops: duplicate alert channel \"ops\" (first defined at vigil.toml:3:1)",
        ]
    );
}

#[test]
fn included_files_hold_services_groups_and_channels_only() {
    let dir = Dir::new(&[
        ("vigil.toml", "include = [\"a.toml\"]\n"),
        (
            "a.toml",
            "include = [\"b.toml\"]\n[vigil]\nlog_level = \"debug\"\n[defaults.guard]\n[servics.x]\n",
        ),
        ("b.toml", "[services.never]\n"),
    ]);
    let errors = dir.errors();
    let main = "vigil.toml";
    assert_eq!(
        errors,
        [
            format!(
                "a.toml:1:1: include: `include` may only be used in the main file {main}: included files cannot include others"
            ),
            format!(
                "a.toml:2:2: vigil: `[vigil]` may only be set in the main file {main}: an included file holds [services.*], [groups.*] and [alerts.*] tables"
            ),
            format!(
                "a.toml:4:2: defaults: `[defaults]` may only be set in the main file {main}: an included file holds [services.*], [groups.*] and [alerts.*] tables"
            ),
            "a.toml:5:2: servics: unknown key `servics` in an included file; did you mean `services`?"
                .to_owned(),
        ]
    );
}

#[test]
fn relative_paths_in_an_included_file_are_relative_to_it() {
    let dir = Dir::new(&[
        ("vigil.toml", "include = [\"sub/*.toml\"]\n"),
        (
            "sub/web.toml",
            "[services.web]\ndriver = \"command\"\nrestart_command = [\"/bin/true\"]\n\
             [services.web.checks.fresh]\nkind = \"file_age\"\npath = \"stamp\"\nmax_age = \"1h\"\n",
        ),
    ]);
    let config = dir.load().unwrap();
    let vigil_config::CheckKind::FileAge(check) = &config.services[0].checks[0].kind else {
        panic!("not a file_age check");
    };
    assert_eq!(check.path, dir.path("sub").join("stamp"));
}

#[test]
fn the_main_file_and_files_named_twice_are_read_once() {
    let dir = Dir::new(&[
        (
            "vigil.toml",
            &format!("include = [\"*.toml\", \"a.toml\"]\n[services.main]\n{SERVICE}"),
        ),
        ("a.toml", &format!("[services.a]\n{SERVICE}")),
    ]);
    let config = dir.load().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&config), ["main", "a"]);
}

#[test]
fn an_included_file_that_is_not_utf8_is_located() {
    let dir = Dir::new(&[("vigil.toml", "include = [\"a.toml\"]\n")]);
    dir.write("a.toml", b"[services.web]\ndriver = \"\xff\"\n");
    assert_eq!(dir.errors(), ["a.toml:2:11: the file is not valid UTF-8"]);
}

#[test]
fn include_must_be_a_list_of_paths() {
    let dir = Dir::new(&[("vigil.toml", "include = \"conf.d/*.toml\"\n")]);
    assert_eq!(
        dir.errors(),
        ["vigil.toml:1:11: include: expected an array of paths or globs like [\"conf.d/*.toml\"]"]
    );
}
