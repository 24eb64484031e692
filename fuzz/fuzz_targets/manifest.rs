//! Any bytes as a manifest: loading and planning either succeed or give diagnostics whose
//! line and column lie inside the input, and rendering them never panics.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dockception::Options;
use libfuzzer_sys::fuzz_target;

/// A real folder for the manifest, so relative mount sources resolve to something.
fn manifest_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join("dockception-fuzz-project");
        let _ = std::fs::create_dir_all(dir.join("src"));
        dir.join("dockception.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = manifest_path();
    match Options::from_bytes(path, data.to_vec()).load() {
        Ok(plan) => {
            let _ = format!("{plan:?}");
        }
        Err(e) if !e.diagnostics().is_empty() => {
            let diagnostics = e.diagnostics();
            let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
            for d in diagnostics {
                assert!(
                    d.line >= 1 && d.line <= lines.len(),
                    "line {} of {}",
                    d.line,
                    lines.len()
                );
                let line = String::from_utf8_lossy(lines[d.line - 1]);
                let chars = line.chars().count();
                assert!(
                    d.column >= 1 && d.column <= chars + 1,
                    "column {} on a line of {chars} characters",
                    d.column
                );
                let _ = d.to_string();
            }
            let _ = e.to_string();
        }
        Err(other) => {
            let _ = other.to_string();
        }
    }
});
