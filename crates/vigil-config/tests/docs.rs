//! `docs/config.md` is generated from the schema and must be committed up to date.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is a test failure.

use std::path::Path;

#[test]
fn docs_config_md_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
    let expected = vigil_config::reference_markdown();
    if std::env::var_os("VIGIL_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is out of date with the config schema; run `VIGIL_UPDATE_DOCS=1 cargo test -p vigil-config` and commit the result",
        path.display()
    );
}

#[test]
fn reference_lists_every_key_of_every_section() {
    let doc = vigil_config::reference_markdown();
    for section in vigil_config::schema::SECTIONS {
        assert!(
            doc.contains(&format!("<a id=\"{}\"></a>", section.id)),
            "{}",
            section.id
        );
        for key in section.keys {
            assert!(doc.contains(&format!("| `{}` |", key.key)), "{}", key.key);
        }
    }
}
