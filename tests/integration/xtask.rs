//! The xtask pattern against the real engine: `cargo xtask image` builds dockception's own image
//! through the library (and it prints its version), and `examples/xtask-consumer`, a project of
//! its own, builds and runs its image with its own `cargo xtask image`.
//!
//! Both run cargo. They share this workspace's target folder (the consumer's xtask reuses the
//! dockception library compiled for these tests), so they take turns.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use crate::support::*;

/// One nested cargo at a time: they share `target/` and its `xtask` binary.
static CARGO: Mutex<()> = Mutex::new(());

fn cargo_xtask(dir: &Path, args: &[&str]) -> Output {
    let _turn = CARGO.lock().unwrap_or_else(|e| e.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .arg("xtask")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", repo().join("target"))
        .env("CI", "true") // plain progress lines
        .stdin(Stdio::null())
        .output()
        .expect("cargo runs")
}

fn image_size(image: &str) -> u64 {
    docker_stdout(&["image", "inspect", "-f", "{{.Size}}", image])
        .trim()
        .parse()
        .expect("a size")
}

#[test]
fn cargo_xtask_image_builds_dockceptions_own_image_which_prints_its_version() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    let image = TestImage::new("dogfood");
    // The build leaves its warm builder (on by default) up, as for a user: the test does not.
    let _warm = ContainersOf(repo());
    let out = cargo_xtask(&repo(), &["image", "--tag", &image.0]);
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "cargo xtask image failed:\n{}",
        text(&out.stderr)
    );
    assert!(report.contains("/dockception: dynamic, needs /lib64/ld-linux-x86-64.so.2"));
    assert!(
        report.contains("libraries added from the builder"),
        "{report}"
    );

    let version = docker_stdout(&["run", "--rm", &image.0, "--version"]);
    assert_eq!(
        version.trim(),
        format!("dockception {}", env!("CARGO_PKG_VERSION"))
    );

    // At most a few MiB beyond the binary: its glibc loader and libraries, nothing else.
    let binary = std::fs::metadata(repo().join(".dockception/last/dockception"))
        .expect("the kept output")
        .len();
    let size = image_size(&image.0);
    assert!(
        size <= binary + 4 * 1024 * 1024,
        "the image has {size} bytes for a {binary}-byte binary"
    );
    let layers = docker_stdout(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", &image.0]);
    assert_eq!(layers.trim(), "1");
}

#[test]
fn the_consumer_example_builds_its_image_with_its_own_xtask() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    let example = repo().join("examples/xtask-consumer");
    let image = TestImage::new("consumer");
    let _warm = ContainersOf(example.clone());
    let out = cargo_xtask(&example, &["image", "--tag", &image.0]);
    assert!(
        out.status.success(),
        "cargo xtask image in examples/xtask-consumer failed:\n{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("/hello-xtask: dynamic"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        docker_stdout(&["run", "--rm", &image.0]).trim(),
        "Hello from an image built by `cargo xtask image`!"
    );
    assert_eq!(
        docker_stdout(&["run", "--rm", &image.0, "xtask", "users"]).trim(),
        "Hello, xtask users!"
    );
    let user = docker_stdout(&["image", "inspect", "-f", "{{.Config.User}}", &image.0]);
    assert_eq!(user.trim(), "65534:65534");

    // The same choices as the CLI: --push sends it to a registry, the same image (same id).
    if !tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let pushed = format!("{}/consumer/app:1", registry.address);
    let out = cargo_xtask(&example, &["image", "--tag", &pushed, "--push"]);
    assert!(
        out.status.success(),
        "--push failed:\n{}",
        text(&out.stderr)
    );
    assert!(
        !image_exists(&pushed),
        "--push alone does not load the image"
    );
    let manifest = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{pushed}"),
        ])
        .output()
        .expect("skopeo runs");
    assert!(manifest.status.success(), "the registry has the tag");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).expect("a manifest");
    let loaded = docker_stdout(&["image", "inspect", "-f", "{{.Id}}", &image.0]);
    assert_eq!(
        manifest["config"]["digest"],
        loaded.trim(),
        "the pushed image is the loaded one, byte for byte"
    );
}
