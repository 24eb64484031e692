//! The checked-in JSON Schema is generated from the manifest types and never goes stale.

use std::path::PathBuf;

#[test]
fn the_checked_in_schema_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/dockception.schema.json");
    let fresh = dockception::manifest::json_schema();
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != fresh {
        std::fs::write(&path, &fresh).expect("write the fresh schema");
        panic!(
            "{} was stale; it has been regenerated (cargo xtask schema): commit it",
            path.display()
        );
    }
}

#[test]
fn every_example_starts_with_the_schema_line_and_loads() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut manifests = vec![root.join("dockception.toml")];
    for entry in std::fs::read_dir(root.join("examples")).expect("examples/") {
        let path = entry.expect("entry").path().join("dockception.toml");
        if path.exists() {
            manifests.push(path);
        }
    }
    assert!(manifests.len() >= 3);
    for path in manifests {
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.starts_with("#:schema ")
                && text
                    .lines()
                    .next()
                    .is_some_and(|l| l.ends_with("schema/dockception.schema.json")),
            "{} does not start with the taplo #:schema line",
            path.display()
        );
        let schema_path = path.parent().expect("folder").join(
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("#:schema "),
        );
        assert!(
            schema_path.exists(),
            "{}: the #:schema path does not exist",
            path.display()
        );
        dockception::manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}
