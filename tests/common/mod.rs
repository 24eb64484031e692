//! Helpers for the tests that drive the real binary against the real Docker Engine. The docker
//! CLI is used only as an independent observer (run the image, inspect sizes, list leftovers).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_dockception");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether an engine answers and `images` exist. Without them the test is skipped with a printed
/// reason on a laptop, but fails under `CI=true`.
pub fn engine_with(images: &[&str]) -> bool {
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    let problem = match version {
        Err(e) => Some(format!("the docker CLI cannot run: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "no Docker Engine answers: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => images
            .iter()
            .find(|image| !image_exists(image))
            .map(|image| format!("the local image {image} is missing")),
    };
    match problem {
        None => true,
        Some(problem) if in_ci() => {
            panic!("CI=true and {problem}; run scripts/engine.sh before the tests")
        }
        Some(problem) => {
            eprintln!("SKIPPED: {problem} (run scripts/engine.sh to set it up)");
            false
        }
    }
}

pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).status.success()
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

pub fn docker_stdout(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run the dockception binary.
pub fn dockception(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("dockception runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A tag unique to this test run; the image is removed when the guard drops.
pub struct TestImage(pub String);

impl TestImage {
    pub fn new(name: &str) -> TestImage {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        TestImage(format!(
            "dockception-test/{name}:{}-{nanos}",
            std::process::id()
        ))
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// A throwaway project folder whose name marks the containers of its runs.
pub fn project(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("dcpt-{prefix}-"))
        .tempdir()
        .expect("tempdir")
}

/// Write `files` (path, content) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }
}

/// Containers (any state) whose project label belongs to the project folder `dir`.
pub fn containers_of(dir: &Path) -> Vec<String> {
    let name = slug(&dir.file_name().expect("name").to_string_lossy());
    docker_stdout(&[
        "ps",
        "-a",
        "--filter",
        "label=dockception",
        "--format",
        "{{.Names}} {{.Label \"dockception.project\"}}",
    ])
    .lines()
    .filter(|line| {
        line.split_once(' ')
            .is_some_and(|(_, project)| project.starts_with(&format!("{name}-")))
    })
    .map(str::to_string)
    .collect()
}

fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// A checksum of a tree: every path, type, mode and content, in sorted order.
pub fn tree_checksum(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let mut hasher = Sha256::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.expect("walk");
        let meta = entry.metadata().expect("metadata");
        hasher.update(entry.path().to_string_lossy().as_bytes());
        hasher.update(meta.permissions().mode().to_le_bytes());
        if meta.is_file() {
            hasher.update(std::fs::read(entry.path()).expect("read"));
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
