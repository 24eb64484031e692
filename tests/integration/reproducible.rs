//! The image dockception writes is the same for the same inputs, against the real engine: a
//! forced rebuild, or the same project in another folder, gives the same image id and manifest
//! digest; `SOURCE_DATE_EPOCH` changes the times and nothing else. On scratch, on busybox and
//! with runtime steps. The engine's own inspect is the witness.

use std::path::Path;

use crate::support::*;

const BUILDER: &str = r#"
[builder]
image = "busybox:local"
run = "printf 'hello\n' > /out/hello && chmod 0755 /out/hello && mkdir -p /out/share && printf 'data' > /out/share/data"

[artifacts]
include = ["hello", "share/**"]
"#;

fn manifest(runtime: &str) -> String {
    format!("{BUILDER}\n[runtime]\nuser = \"65534:65534\"\n{runtime}\n")
}

/// Build `dir` tagged `tag` with `env`, and return its report (one target).
fn build(dir: &Path, tag: &str, extra: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let mut args = vec!["build", "--format", "json", "--tag", tag];
    args.extend(extra);
    let out = std::process::Command::new(BIN)
        .args(&args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .envs(env.iter().copied())
        .output()
        .expect("dockception runs");
    assert!(out.status.success(), "build failed: {}", text(&out.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    reports[0].clone()
}

fn inspect(image: &str) -> serde_json::Value {
    let out = docker_stdout(&["image", "inspect", image]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
    v[0].clone()
}

/// Copy the project files (not the output folder) of `from` into a fresh folder.
fn copy_project(from: &Path, prefix: &str) -> Project {
    let to = project(prefix);
    std::fs::copy(
        from.join("dockception.toml"),
        to.path().join("dockception.toml"),
    )
    .expect("copy manifest");
    to
}

fn same_image_three_ways(runtime: &str, base_images: &[&str], name: &str) {
    if !engine_with(base_images) {
        return;
    }
    let dir = project(name);
    write_files(dir.path(), &[("dockception.toml", &manifest(runtime))]);
    let image = TestImage::new(name);
    let first = build(dir.path(), &image.0, &[], &[]);
    let id = first["image_id"].as_str().expect("image id").to_string();
    let digest = first["digest"].as_str().expect("digest").to_string();
    assert!(digest.starts_with("sha256:") && digest != id, "{first}");
    assert!(
        first["context_bytes"].is_null(),
        "no build context is sent, so it is null, not 0: {first}"
    );
    let engine = inspect(&image.0);
    assert_eq!(
        engine["Id"],
        id.as_str(),
        "the engine's id is our config's digest"
    );
    assert_eq!(engine["Created"], "1970-01-01T00:00:00Z");

    let forced = build(dir.path(), &image.0, &["--force"], &[]);
    assert_eq!(forced["up_to_date"], false, "a forced build builds");
    assert_eq!(
        forced["image_id"],
        id.as_str(),
        "a forced rebuild gives the same id"
    );
    assert_eq!(
        forced["digest"],
        digest.as_str(),
        "and the same manifest digest"
    );

    let elsewhere = copy_project(dir.path(), &format!("{name}-copy"));
    let moved = build(elsewhere.path(), &image.0, &[], &[]);
    assert_eq!(
        moved["image_id"],
        id.as_str(),
        "another folder, the same id"
    );
    assert_eq!(
        moved["digest"],
        digest.as_str(),
        "another folder, the same digest"
    );

    let dated = build(
        dir.path(),
        &image.0,
        &["--force"],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert_ne!(
        dated["image_id"],
        id.as_str(),
        "the time is part of the image"
    );
    let later = inspect(&image.0);
    assert_eq!(later["Created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        later["Config"], engine["Config"],
        "the config is the same but for times"
    );
    let files = |r: &serde_json::Value| {
        r["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| (f["path"].clone(), f["mode"].clone(), f["sha256"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        files(&dated),
        files(&first),
        "the same files, modes and content"
    );
    assert_eq!(
        docker_stdout(&["image", "inspect", "--format", "{{len .RepoTags}}", &id]).trim(),
        "0",
        "the image the tag left is untagged, as after a docker build"
    );
    let cleaned = dockception(&["clean"], dir.path());
    assert!(
        text(&cleaned.stdout).contains(&format!("removed image {id}")),
        "clean removes it: {}",
        text(&cleaned.stdout)
    );
}

#[test]
fn on_scratch_the_same_inputs_give_the_same_image() {
    same_image_three_ways(
        "entrypoint = [\"/hello\"]",
        &["busybox:local"],
        "repro-scratch",
    );
}

#[test]
fn on_busybox_the_same_inputs_give_the_same_image_and_only_our_layer_is_loaded() {
    same_image_three_ways(
        "base = \"busybox:local\"\nentrypoint = [\"/bin/cat\", \"/hello\"]",
        &["busybox:local"],
        "repro-busybox",
    );
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("repro-load");
    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            &manifest("base = \"busybox:local\"\nentrypoint = [\"/bin/cat\", \"/hello\"]"),
        )],
    );
    let image = TestImage::new("repro-load");
    let report = build(dir.path(), &image.0, &[], &[]);
    let delivered = &report["delivered"][0];
    assert_eq!(delivered["to"], "engine");
    let sent = delivered["sent_bytes"].as_u64().expect("sent");
    let skipped = delivered["skipped_bytes"].as_u64().expect("skipped");
    let base_gzip: u64 = report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter(|l| l["role"] == "base")
        .map(|l| l["gzip_bytes"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        base_gzip > 100_000,
        "busybox's layer is sizeable: {base_gzip}"
    );
    assert_eq!(skipped, base_gzip, "the base's layers are not sent");
    assert!(
        sent < 64 * 1024,
        "only our small layer, config and manifest go: {sent}"
    );
    let ours = report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["role"] == "artifacts")
        .expect("our layer");
    let (tar, gzip) = (
        ours["tar_bytes"].as_u64().expect("tar"),
        ours["gzip_bytes"].as_u64().expect("gzip"),
    );
    assert!(
        sent >= tar && gzip < tar,
        "our layer goes as its plain tar ({tar} bytes, gzipped {gzip}), not gzipped: {sent}"
    );
    let run = docker(&["run", "--rm", &image.0]);
    assert_eq!(text(&run.stdout), "hello\n", "{}", text(&run.stderr));
}

#[test]
fn with_runtime_steps_the_same_inputs_give_the_same_image() {
    same_image_three_ways(
        "base = \"busybox:local\"\nrun = [\"mkdir -p /opt/app\", \"cp /artifacts/hello /opt/app/hello\", \"rm /bin/true\"]\nentrypoint = [\"/bin/cat\", \"/opt/app/hello\"]",
        &["busybox:local"],
        "repro-steps",
    );
}

#[test]
fn runtime_steps_run_each_in_its_own_shell_and_the_failing_one_is_named() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("steps-shells");
    let runtime = "base = \"busybox:local\"\nrun = [\"cd /tmp && export X=1\", \"test \\\"$(pwd)\\\" = / && test -z \\\"$X\\\" && touch /ok\", \"exit 7\", \"touch /never\"]\nentrypoint = [\"/bin/true\"]";
    write_files(dir.path(), &[("dockception.toml", &manifest(runtime))]);
    let image = TestImage::new("steps-shells");
    let out = dockception(&["build", "--tag", &image.0], dir.path());
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("runtime step 3 failed with exit status 7"),
        "{stderr}"
    );
    assert!(!image_exists(&image.0), "no image after a failed step");
}
