//! The checked-in JSON Schemas are generated from the manifest and report types and never go
//! stale; the README documents every field of the report's JSON.

use std::path::PathBuf;

use crate::support::{blessing, check_snapshot};

/// Compare a checked-in schema with the fresh one; a stale one fails, and is rewritten only
/// with `DOCKCEPTION_BLESS=1` (or by `cargo xtask schema`).
fn assert_fresh(relative: &str, fresh: String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    if let Err(problem) = check_snapshot(&path, &fresh, blessing()) {
        panic!("{problem}\n(or regenerate it with `cargo xtask schema`)");
    }
}

/// The snapshot check fails on a stale or missing file without touching it, every time, and
/// writes the file only when blessed.
#[test]
fn a_stale_or_missing_snapshot_fails_until_it_is_blessed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snapshot.txt");
    for _ in 0..2 {
        let missing = check_snapshot(&path, "new\n", false).expect_err("missing");
        assert!(missing.contains("does not exist"), "{missing}");
        assert!(missing.contains("DOCKCEPTION_BLESS=1"), "{missing}");
        assert!(!path.exists(), "a missing snapshot is not written");
    }
    std::fs::write(&path, "old\n").expect("write");
    for _ in 0..2 {
        let stale = check_snapshot(&path, "new\n", false).expect_err("stale");
        assert!(
            stale.contains("differs") && stale.contains("DOCKCEPTION_BLESS=1"),
            "{stale}"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old\n");
    }
    check_snapshot(&path, "new\n", true).expect("blessed");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "new\n");
    check_snapshot(&path, "new\n", false).expect("now up to date");
}

#[test]
fn the_checked_in_schema_is_up_to_date() {
    assert_fresh(
        "schema/dockception.schema.json",
        dockception::manifest_schema(),
    );
}

#[test]
fn the_checked_in_report_schema_is_up_to_date() {
    assert_fresh("schema/report.schema.json", dockception::report_schema());
}

/// Every property of the report's JSON, at every level, is named in README.md's section on
/// the JSON report, so the documented shape is the real one.
#[test]
fn the_readme_documents_every_field_of_the_json_report() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let section = readme
        .split_once("### The JSON report")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .expect("README.md has a \"### The JSON report\" section");
    let schema: serde_json::Value =
        serde_json::from_str(&dockception::report_schema()).expect("schema JSON");
    let mut names = std::collections::BTreeSet::new();
    collect_properties(&schema, &mut names);
    assert!(names.len() > 40, "{names:?}");
    let missing: Vec<_> = names
        .iter()
        .filter(|name| {
            !section.contains(&format!("`{name}`")) && !section.contains(&format!("\"{name}\""))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's JSON report section does not document {missing:?}"
    );
}

fn collect_properties(value: &serde_json::Value, names: &mut std::collections::BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                names.extend(props.keys().cloned());
            }
            for v in map.values() {
                collect_properties(v, names);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                collect_properties(v, names);
            }
        }
        _ => {}
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
        // The dogfood manifests mount the vendored crates and the toolchain: point them at a
        // folder that exists, as a fresh checkout has neither yet.
        let mut options = dockception::Options::new(&path);
        for name in ["VENDOR", "RUST_SYSROOT"] {
            if text.contains(&format!("${{{name}}}")) {
                options = options.set(name, root.join("src").to_string_lossy());
            }
        }
        options.load().unwrap_or_else(|e| panic!("{e}"));
    }
}
