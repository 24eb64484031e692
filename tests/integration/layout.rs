//! The layout README's "How it works" promises: stages as folders, each importing only the
//! stages above it, bollard's types only in the engine, no file over 900 lines, a thin
//! lib.rs. Read from the source text, as `module-graph.py` does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level modules of `src/`, in the one direction imports may go: each may use only
/// the ones before it.
const ORDER: &[&str] = &[
    "units",
    "fsutil",
    "progress",
    "manifest",
    "plan",
    "engine",
    "artifacts",
    "image",
    "deliver",
    "report",
    "error",
    "pipeline",
    "api",
    "cli",
];

fn src() -> PathBuf {
    crate::support::repo().join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs and main.rs).
fn top_module(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).expect("under src");
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The source of `file` without its unit tests, which may reach anywhere.
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("read");
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The top-level modules `code` names as `crate::NAME` or inside `crate::{...}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                let word: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.insert(word);
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(word);
        }
    }
    names
}

#[test]
fn each_stage_imports_only_the_stages_above_it() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = top_module(file) else {
            continue;
        };
        let rank = ORDER
            .iter()
            .position(|m| *m == module)
            .unwrap_or_else(|| panic!("{} is in no stage of ORDER", file.display()));
        for used in named_modules(&code_of(file)) {
            if let Some(used_rank) = ORDER.iter().position(|m| *m == used) {
                if used_rank > rank {
                    wrong.push(format!("{} uses crate::{used}", file.display()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the flow:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn only_the_engine_sees_bollard() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let outside: Vec<String> = files
        .iter()
        .filter(|f| top_module(f).as_deref() != Some("engine"))
        .filter(|f| {
            std::fs::read_to_string(f)
                .expect("read")
                .contains("bollard")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "bollard outside src/engine: {outside:?}"
    );
}

#[test]
fn files_stay_short_and_lib_rs_thin() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for file in &files {
        let lines = std::fs::read_to_string(file).expect("read").lines().count();
        assert!(lines <= 900, "{} has {lines} lines", file.display());
    }
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    assert!(
        lib.lines().count() < 250,
        "lib.rs has {} lines",
        lib.lines().count()
    );
}

#[test]
fn the_module_scan_sees_imports() {
    let names = named_modules("use crate::engine::Engine;\nuse crate::{plan, report::Report};");
    assert_eq!(
        names,
        ["engine", "plan", "report"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

#[test]
fn the_readme_names_every_test_module_and_only_those() {
    let main = std::fs::read_to_string(crate::support::repo().join("tests/integration/main.rs"))
        .expect("main.rs");
    let modules: BTreeSet<&str> = main
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .filter(|m| *m != "support")
        .collect();
    let readme = std::fs::read_to_string(crate::support::repo().join("README.md")).expect("README");
    let start = readme
        .find("`tests/integration/` is one test binary")
        .expect("README.md describes the test binary");
    let end = start + readme[start..].find("\n\n").expect("the paragraph ends");
    let named: BTreeSet<&str> = readme[start..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| word.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert_eq!(
        named, modules,
        "README.md's \"How it works\" names the modules of tests/integration/main.rs"
    );
}
