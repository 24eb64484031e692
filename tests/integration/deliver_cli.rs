//! `build --push`, `--output` and `--load` through the real binary: a push goes straight to the
//! registry and leaves the engine without the image; a one-line change uploads only its layer;
//! outputs are written as skopeo and the engine read them; mistakes stop the build before any
//! container starts. Traffic only to 127.0.0.1.

use std::path::Path;

use crate::support::*;

fn manifest(message: &str) -> String {
    format!(
        r#"
[builder]
image = "busybox:local"
run = "printf '{message}\n' > /out/hello"

[artifacts]
include = ["hello"]

[runtime]
base = "busybox:local"
user = "65534:65534"
entrypoint = ["/bin/cat", "/hello"]
"#
    )
}

fn build_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["build", "--format", "json"];
    all.extend(args);
    let out = dockception(&all, dir);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    reports[0].clone()
}

fn artifacts_gzip(report: &serde_json::Value) -> u64 {
    report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter(|l| l["role"] == "artifacts")
        .map(|l| l["gzip_bytes"].as_u64().expect("gzip"))
        .sum()
}

#[test]
fn a_push_goes_straight_to_the_registry_and_a_change_uploads_only_its_layer() {
    if !engine_with(&["busybox:local"]) || !tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let dir = project("push");
    write_files(dir.path(), &[("dockception.toml", &manifest("one"))]);
    let tag = format!("{}/team/push-{}:1", registry.address, std::process::id());
    let first = build_json(dir.path(), &["--push", "--tag", &tag]);
    let pushed = &first["delivered"];
    assert_eq!(pushed.as_array().map(Vec::len), Some(1), "{pushed}");
    assert_eq!(pushed[0]["to"], "registry");
    assert!(
        !image_exists(&tag),
        "--push alone never puts the image into the engine"
    );
    let raw = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{tag}"),
        ])
        .output()
        .expect("skopeo runs");
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    use sha2::Digest;
    assert_eq!(
        format!("sha256:{:x}", sha2::Sha256::digest(&raw.stdout)),
        first["digest"].as_str().expect("digest"),
        "the registry names the tag by the digest the report gives"
    );

    write_files(dir.path(), &[("dockception.toml", &manifest("two"))]);
    let second = build_json(dir.path(), &["--push", "--tag", &tag]);
    let sent = second["delivered"][0]["sent_bytes"].as_u64().expect("sent");
    let skipped = second["delivered"][0]["skipped_bytes"]
        .as_u64()
        .expect("skipped");
    let changed = artifacts_gzip(&second);
    assert!(
        sent >= changed && sent <= changed + 16 * 1024,
        "a one-line change uploads its layer and the config: sent {sent}, layer {changed}"
    );
    assert!(
        skipped > 100_000,
        "busybox's layer is already there: {skipped}"
    );

    // The short answer says where it went, uploaded against already there.
    let again = dockception(&["build", "--push", "--tag", &tag], dir.path());
    let answer = text(&again.stdout);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let repository = tag.rsplit_once(':').map(|(r, _)| r).expect("a tag");
    assert!(
        answer.contains(&format!("pushed to {repository} (0 B uploaded, ")),
        "the same image again uploads nothing: {answer}"
    );
    let pulled = docker(&["pull", &tag]);
    assert!(pulled.status.success(), "{}", text(&pulled.stderr));
    let run = docker(&["run", "--rm", &tag]);
    let _ = docker(&["rmi", "-f", &tag]);
    assert_eq!(text(&run.stdout), "two\n", "{}", text(&run.stderr));
}

#[test]
fn outputs_are_written_for_skopeo_and_the_engine_and_load_can_join_them() {
    if !engine_with(&["busybox:local"]) || !tools(&["skopeo"]) {
        return;
    }
    let dir = project("outputs");
    write_files(dir.path(), &[("dockception.toml", &manifest("out"))]);
    let image = TestImage::new("outputs");
    let files = tempfile::tempdir().expect("tempdir");
    let layout = files.path().join("layout");
    let archive = files.path().join("image.tar");
    let report = build_json(
        dir.path(),
        &[
            "--tag",
            &image.0,
            "--output",
            &format!("type=oci,dest={}", layout.display()),
            "--output",
            &format!("type=docker,dest={}", archive.display()),
            "--load",
        ],
    );
    let kinds: Vec<&str> = report["delivered"]
        .as_array()
        .expect("delivered")
        .iter()
        .map(|d| d["to"].as_str().expect("to"))
        .collect();
    assert_eq!(kinds, ["engine", "oci", "docker"]);
    let inspected = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{}", layout.display())])
        .output()
        .expect("skopeo runs");
    assert!(inspected.status.success(), "{}", text(&inspected.stderr));
    use sha2::Digest;
    assert_eq!(
        format!("sha256:{:x}", sha2::Sha256::digest(&inspected.stdout)),
        report["digest"].as_str().expect("digest")
    );
    let id = report["image_id"].as_str().expect("id");
    assert_eq!(
        docker_stdout(&["image", "inspect", "--format", "{{.Id}}", &image.0]).trim(),
        id
    );
    let _ = docker(&["rmi", "-f", &image.0]);
    let loaded = docker(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(loaded.status.success(), "{}", text(&loaded.stderr));
    assert_eq!(
        docker_stdout(&["image", "inspect", "--format", "{{.Id}}", &image.0]).trim(),
        id
    );

    // The same destination again is refused before anything runs.
    let again = dockception(
        &[
            "build",
            "--force",
            "--output",
            &format!("type=oci,dest={}", layout.display()),
        ],
        dir.path(),
    );
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
    let stderr = text(&again.stderr);
    assert!(stderr.contains(&layout.display().to_string()), "{stderr}");
    assert!(
        !stderr.contains("building in"),
        "refused before the build: {stderr}"
    );
}

#[test]
fn a_push_to_a_tag_without_a_registry_is_refused_before_any_container() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("push-no-registry");
    write_files(dir.path(), &[("dockception.toml", &manifest("x"))]);
    let out = dockception(&["build", "--push", "--tag", "app:1"], dir.path());
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("app:1") && stderr.contains("registry"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("building in"),
        "refused before the build: {stderr}"
    );
    assert!(containers_of(dir.path()).is_empty());
}

#[test]
fn push_true_in_the_manifest_pushes_every_build_and_plan_says_so() {
    if !engine_with(&["busybox:local"]) || !tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let dir = project("push-true");
    let tag = format!("{}/team/pushed-{}:1", registry.address, std::process::id());
    let manifest = format!(
        "{}\n[image]\ntags = [\"{tag}\"]\npush = true\n",
        manifest("pushed")
    );
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    let plan = dockception(&["plan"], dir.path());
    assert!(
        text(&plan.stdout).contains("push      every tag, to its registry"),
        "{}",
        text(&plan.stdout)
    );
    let report = build_json(dir.path(), &[]);
    assert_eq!(report["delivered"][0]["to"], "registry", "{report}");
    assert!(!image_exists(&tag), "no --load, so not in the engine");
    let raw = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{tag}"),
        ])
        .output()
        .expect("skopeo runs");
    assert!(raw.status.success(), "{}", text(&raw.stderr));
}

#[test]
fn a_base_from_a_registry_comes_as_that_registry_has_it_and_a_push_there_sends_only_ours() {
    if !engine_with(&["busybox:local"]) || !tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let base = format!("{}/base/busybox-{}:1", registry.address, std::process::id());
    docker_stdout(&["tag", "busybox:local", &base]);
    let pushed_base = docker(&["push", &base]);
    let _ = docker(&["rmi", &base]);
    assert!(
        pushed_base.status.success(),
        "{}",
        text(&pushed_base.stderr)
    );

    let dir = project("registry-base");
    let manifest = manifest("on a registry base")
        .replace("base = \"busybox:local\"", &format!("base = \"{base}\""));
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    let tag = format!("{}/team/on-base-{}:1", registry.address, std::process::id());
    let out = dockception(
        &["build", "--push", "--tag", &tag, "--format", "json"],
        dir.path(),
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "taking the layers of the base {base} from its registry"
        )),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let report = &report[0];
    let base_gzip: u64 = report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter(|l| l["role"] == "base")
        .map(|l| l["gzip_bytes"].as_u64().expect("gzip"))
        .sum();
    let delivered = &report["delivered"][0];
    assert_eq!(delivered["to"], "registry");
    assert!(
        delivered["skipped_bytes"].as_u64().expect("skipped") >= base_gzip && base_gzip > 100_000,
        "the base's blobs are the registry's own, mounted, not sent: {delivered}"
    );
    assert!(
        delivered["sent_bytes"].as_u64().expect("sent") < 64 * 1024,
        "only our layer and config go: {delivered}"
    );
    let _ = docker(&["rmi", &base]);
}
