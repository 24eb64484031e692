//! The Rust workload (issue 15): `benches/workloads/rust-toml2json`, toml's `toml2json` example
//! built against the toml crate's own library sources (toml 1.2.1, about 9,300 lines) as a path
//! crate, with serde_json and toml's dependencies vendored. The toml sources and `vendor/` are
//! filled in at bench time from cargo's registry (`~/.cargo/registry`, 12 MiB vendored: too
//! big to check in); the build runs `cargo build --offline --locked` in `rust:local`
//! (`scripts/engine.sh rust`), with cargo's target folder in dockception's cache volume and in
//! BuildKit's cache mount.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{copy_tree, fetch_crate, Way, Workload};

/// The toml release whose library the workload compiles, from crates.io.
const TOML: &str = "1.2.1+spec-1.1.0";

/// Debug profile, as a developer's edit-build loop runs it; a static binary (glibc's `-static`,
/// no proc macros in the tree) so the runtime image is scratch plus the binary, like the others.
pub(super) const RUST: Workload = Workload {
    name: "rust-toml2json",
    what: "`benches/workloads/rust-toml2json`: toml2json (toml's example program) built against the `toml` 1.2.1 crate's own library as a path crate (9,300 lines of Rust; copied from cargo's registry at bench time) plus 18 vendored crates (serde_json, winnow, toml_parser, indexmap, ...; `cargo vendor` at bench time, 12 MiB); `cargo build --offline --locked` (debug, static) in `rust:local`, cargo's target folder in the cache. The one-line change edits a string constant in toml's `lib.rs`, which the binary prints.",
    builder: "rust:local",
    binary: "toml2json",
    build: "cargo build --offline --locked && mkdir -p /out && cp target/debug/toml2json /out/",
    build_cached: "cargo build --offline --locked && mkdir -p /out && cp /cache/target/debug/toml2json /out/",
    env: &[("RUSTFLAGS", "-Ctarget-feature=+crt-static")],
    cache_env: &[("CARGO_TARGET_DIR", "/cache/target")],
    cache: "/cache/target",
    change_file: "toml/src/lib.rs",
    // The classic ways rebuild every crate on every change (no cache mount); measuring them
    // here would add minutes a repetition and say nothing new.
    ways: &[Way::Buildkit, Way::Dockception, Way::Warm],
};

/// The toml crate's sources, ready to copy: fetched into cargo's registry once.
pub(super) fn fetch_toml(work: &Path) -> Result<std::path::PathBuf, String> {
    fetch_crate(work, "toml", TOML)
}

/// Put toml's library (its manifest without dev-dependencies, examples and the optional
/// dependencies the workload does not use, which the registry need not hold) into `dir/toml`,
/// add the label the one-line change rewrites, and vendor the rest into `dir/vendor`.
pub(super) fn add_sources(dir: &Path, toml: &Path) -> Result<(), String> {
    let dest = dir.join("toml");
    copy_tree(&toml.join("src"), &dest.join("src"))?;
    let manifest = std::fs::read_to_string(toml.join("Cargo.toml"))
        .map_err(|e| format!("{}: {e}", toml.display()))?;
    std::fs::write(dest.join("Cargo.toml"), trimmed_manifest(&manifest))
        .map_err(|e| e.to_string())?;
    let lib = dest.join("src/lib.rs");
    let mut text = std::fs::read_to_string(&lib).map_err(|e| e.to_string())?;
    text.push_str(
        "\n/// What `toml2json --version` prints; the bench's one-line change rewrites it.\n\
         #[doc(hidden)]\npub const BENCH_LABEL: &str = \"bench-0\";\n",
    );
    std::fs::write(&lib, text).map_err(|e| e.to_string())?;
    // The workload's config replaces crates.io with vendor/, which does not exist yet: set it
    // aside while vendoring.
    let config = dir.join(".cargo");
    let aside = dir.join(".cargo.aside");
    std::fs::rename(&config, &aside).map_err(|e| format!("{}: {e}", config.display()))?;
    let vendored = vendor(dir);
    std::fs::rename(&aside, &config).map_err(|e| format!("{}: {e}", aside.display()))?;
    vendored
}

/// `cargo vendor` of the workload's locked dependencies into `dir/vendor`: offline first (the
/// registry has every crate when dockception was built on this machine), from crates.io only
/// when it lacks one.
fn vendor(dir: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for offline in [true, false] {
        let mut vendor = Command::new(&cargo);
        vendor.args(["vendor", "--locked", "--quiet"]);
        if offline {
            vendor.arg("--offline");
        }
        let status = vendor
            .arg("vendor")
            .current_dir(dir)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("cargo vendor: {e}"))?;
        if status.success() {
            return Ok(());
        }
    }
    Err(format!("cargo vendor failed in {}", dir.display()))
}

/// toml's registry manifest without `[dev-dependencies.*]`, `[[example]]`, `[lints.*]` and the
/// `debug` and `fast_hash` features' optional dependencies (anstream, anstyle, foldhash).
fn trimmed_manifest(manifest: &str) -> String {
    let mut out = String::new();
    let (mut skip, mut in_features, mut skip_feature) = (false, false, false);
    for line in manifest.lines() {
        if line.starts_with('[') {
            skip = line.starts_with("[dev-dependencies")
                || line.starts_with("[[example")
                || line.starts_with("[lints")
                || [
                    "[dependencies.anstream]",
                    "[dependencies.anstyle]",
                    "[dependencies.foldhash]",
                ]
                .contains(&line);
            in_features = line == "[features]";
            skip_feature = false;
        } else if in_features && line.contains(" = ") {
            skip_feature = matches!(line.split(" = ").next(), Some("debug" | "fast_hash"));
        }
        if !skip && !skip_feature {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_loses_what_the_registry_may_lack() {
        let manifest = "[package]\nname = \"toml\"\n\n[features]\ndebug = [\n    \"dep:anstream\",\n]\ndefault = [\n    \"std\",\n]\nfast_hash = [\"dep:foldhash\"]\n\n[[example]]\nname = \"decode\"\n\n[dependencies.anstream]\nversion = \"1\"\n\n[dependencies.winnow]\nversion = \"1\"\n\n[dev-dependencies.snapbox]\nversion = \"1\"\n\n[lints.rust]\nx = \"warn\"\n";
        let trimmed = trimmed_manifest(manifest);
        for gone in [
            "debug", "anstream", "foldhash", "example", "snapbox", "lints",
        ] {
            assert!(!trimmed.contains(gone), "{gone} is left in:\n{trimmed}");
        }
        for kept in [
            "[package]",
            "default = [",
            "\"std\"",
            "[dependencies.winnow]",
        ] {
            assert!(trimmed.contains(kept), "{kept} is gone from:\n{trimmed}");
        }
    }
}
