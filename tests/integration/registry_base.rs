//! A runtime base that names a registry and exists only there (copied in with skopeo, never
//! in the engine): the final image is written with no engine (the builder still runs in it),
//! the base's init and library lookups are answered from its layers, the pushed image runs
//! after a `docker pull`, a rebuild pulls nothing (a base pinned by digest asks nothing), and
//! a tag that moves rebuilds the image. Runtime steps still run in the engine, on the same base.
//! Traffic only to 127.0.0.1.

use std::path::Path;
use std::process::Command;

use dockception::deliver::{push, testkit};
use dockception::Progress;

use crate::support::*;

/// Copy the engine's `image` to `reference` on a test registry, without tagging it in the
/// engine.
fn copy_to_registry(image: &str, reference: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("docker-daemon:{image}"))
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    assert!(out.status.success(), "skopeo copy: {}", text(&out.stderr));
}

fn busybox_manifest(base: &str, message: &str) -> String {
    format!(
        r#"
[builder]
image = "busybox:local"
run = "printf '{message}\n' > /out/hello"

[artifacts]
include = ["hello"]

[runtime]
base = "{base}"
user = "65534:65534"
entrypoint = ["/bin/cat", "/hello"]
"#
    )
}

fn build(dir: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let mut all = vec!["build", "--format", "json"];
    all.extend(args);
    let out = dockception(&all, dir);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    (reports[0].clone(), stderr)
}

/// `docker pull` `tag` and run it; its output.
fn pull_and_run(tag: &str) -> String {
    let pulled = docker(&["pull", tag]);
    assert!(pulled.status.success(), "{}", text(&pulled.stderr));
    let run = docker(&["run", "--rm", tag]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    text(&run.stdout)
}

#[test]
fn a_base_only_on_a_registry_builds_with_no_engine_for_the_image_and_a_moved_tag_rebuilds() {
    if !engine_with(&["busybox:local"]) || !tools(&["docker-registry", "skopeo"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let base = format!("{}/base/busybox-{}:1", registry.address, std::process::id());
    copy_to_registry("busybox:local", &base);
    assert!(!image_exists(&base), "the base is only on the registry");

    let dir = project("registry-only-base");
    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            &busybox_manifest(&base, "from the registry"),
        )],
    );
    let tag = TestImage(format!(
        "{}/team/on-registry-base-{}:1",
        registry.address,
        std::process::id()
    ));
    let (report, stderr) = build(dir.path(), &["--push", "--tag", &tag.0]);
    assert!(
        stderr.contains(&format!(
            "taking the layers of the base {base} from its registry"
        )),
        "{stderr}"
    );
    assert_eq!(report["delivered"][0]["to"], "registry", "{report}");
    assert!(
        !image_exists(&base),
        "the engine never got the base: the image was written from the registry's layers"
    );
    assert_eq!(pull_and_run(&tag.0), "from the registry\n");

    // Again: the store keeps the base by the manifest digest the tag names; nothing is pulled.
    let (again, stderr) = build(dir.path(), &["--push", "--tag", &tag.0]);
    assert!(!stderr.contains("taking the layers"), "{stderr}");
    assert_eq!(again["digest"], report["digest"], "the same image");

    // Loaded into the engine (which has busybox:local's layers, so only ours go), then up to
    // date while the tag names the same base.
    let loaded = TestImage::new("registry-base-load");
    let (first, _) = build(dir.path(), &["--tag", &loaded.0]);
    assert_eq!(first["up_to_date"], false);
    let to_engine = &first["delivered"][0];
    assert_eq!(to_engine["to"], "engine", "{first}");
    assert!(
        to_engine["skipped_bytes"].as_u64().expect("skipped") > 100_000,
        "the engine has busybox's layer already (same diff id): {to_engine}"
    );
    let run = docker(&["run", "--rm", &loaded.0]);
    assert_eq!(
        text(&run.stdout),
        "from the registry\n",
        "{}",
        text(&run.stderr)
    );
    let (second, _) = build(dir.path(), &["--tag", &loaded.0]);
    assert_eq!(second["up_to_date"], true, "{second}");

    // The tag moves to another image (one the engine has never seen): the next build is not
    // up to date, takes the new base and loads all its layers.
    let store = tempfile::tempdir().expect("tempdir");
    let other = testkit::image(
        store.path(),
        &[vec![("etc/moved", b"the tag moved\n".to_vec())]],
    )
    .expect("image");
    block_on(push::push(
        &other,
        std::slice::from_ref(&base),
        &push::RegistrySettings::default(),
        &Progress::Silent,
    ))
    .expect("the tag moved");
    let (moved, stderr) = build(dir.path(), &["--tag", &loaded.0]);
    assert_eq!(moved["up_to_date"], false, "{moved}");
    assert_eq!(
        moved["delivered"][0]["skipped_bytes"], 0,
        "the engine lacks the new base: its layer is sent too"
    );
    assert!(stderr.contains("taking the layers of the base"), "{stderr}");
    assert_ne!(moved["image_id"], first["image_id"]);
    let id = docker_stdout(&["image", "inspect", "-f", "{{.Id}}", &loaded.0]);
    assert_eq!(id.trim(), moved["image_id"].as_str().expect("id"));
    let layers = docker_stdout(&[
        "image",
        "inspect",
        "-f",
        "{{len .RootFS.Layers}}",
        &loaded.0,
    ]);
    assert_eq!(layers.trim(), "2", "the moved base's one layer and ours");
    // The first load gave the pushed image (the same inputs, the same image), which the
    // pull tagged; with both tags gone nothing of the project is left.
    assert_eq!(first["image_id"], report["image_id"]);
    drop(loaded);
    drop(tag);
    assert!(
        images_of(dir.path()).is_empty(),
        "{:?}",
        images_of(dir.path())
    );
}

const HELLO_C: &str = r#"#include <math.h>
#include <stdio.h>
int main(int argc, char **argv) {
    printf("Hello from C! sqrt(16) = %.0f\n", sqrt(16.0 * argc));
    return 0;
}
"#;

fn c_manifest(base: &str) -> String {
    format!(
        r#"[builder]
image   = "gcc:local"
workdir = "/src"
run     = "gcc -O2 -o /out/hello hello.c -lm"

[[mount]]
source = "src"
target = "/src"

[artifacts]
include = ["hello"]

[runtime]
base = "{base}"
user = "65534:65534"
entrypoint = ["/hello"]
libs = "auto"
"#
    )
}

#[test]
fn a_registry_base_answers_the_library_lookups_from_its_layers() {
    if !engine_with(&["gcc:local", "debian-minimal:local"])
        || !tools(&["docker-registry", "skopeo"])
    {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let base = format!("{}/base/debian-{}:1", registry.address, std::process::id());
    copy_to_registry("debian-minimal:local", &base);
    assert!(!image_exists(&base), "the base is only on the registry");

    // The same program on the same base, once from the engine: what the lookups must find.
    let from_engine = project("libs-engine-base");
    write_files(
        from_engine.path(),
        &[
            ("dockception.toml", &c_manifest("debian-minimal:local")),
            ("src/hello.c", HELLO_C),
        ],
    );
    let engine_image = TestImage::new("libs-engine-base");
    let (expected, _) = build(
        from_engine.path(),
        &["--tag", &engine_image.0, "--output", "type=none"],
    );

    let dir = project("libs-registry-base");
    write_files(
        dir.path(),
        &[
            ("dockception.toml", &c_manifest(&base)),
            ("src/hello.c", HELLO_C),
        ],
    );
    let tag = TestImage(format!(
        "{}/team/hello-{}:1",
        registry.address,
        std::process::id()
    ));
    let (report, _) = build(dir.path(), &["--push", "--tag", &tag.0]);
    let libs = &report["libs"];
    assert_eq!(libs["elf_artifacts"][0]["linking"], "dynamic", "{libs}");
    assert_eq!(
        libs["added"],
        serde_json::json!([]),
        "libc and libm are on the base, found in its layers: nothing copied from the builder"
    );
    let on_base = libs["on_base"].to_string();
    assert!(
        on_base.contains("libc.so.6") && on_base.contains("libm.so.6"),
        "{on_base}"
    );
    assert_eq!(
        libs, &expected["libs"],
        "the layers answer as a container of the base does"
    );
    assert!(!image_exists(&base), "the engine never got the base");
    assert_eq!(pull_and_run(&tag.0), "Hello from C! sqrt(16) = 4\n");
}

#[test]
fn runtime_steps_on_a_registry_base_run_in_the_engine_which_must_have_the_same_base() {
    if !engine_with(&["busybox:local", "debian-minimal:local"])
        || !tools(&["docker-registry", "skopeo"])
    {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let base = TestImage(format!(
        "{}/base/steps-{}:1",
        registry.address,
        std::process::id()
    ));
    copy_to_registry("busybox:local", &base.0);
    let manifest = format!(
        "{}run = [\"cp /artifacts/hello /copied\"]\n",
        busybox_manifest(&base.0, "stepped")
    )
    .replace("\"/bin/cat\", \"/hello\"", "\"/bin/cat\", \"/copied\"");
    let dir = project("registry-base-steps");
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    let tag = TestImage(format!(
        "{}/team/steps-{}:1",
        registry.address,
        std::process::id()
    ));
    build(dir.path(), &["--push", "--tag", &tag.0]);
    assert!(
        image_exists(&base.0),
        "runtime steps need a container of the base: the engine pulled it"
    );
    assert_eq!(pull_and_run(&tag.0), "stepped\n");

    // The engine's image of that name is another one: the steps would run on a base that is
    // not the one the layers came from, so the build stops, naming both.
    let other = TestImage(format!(
        "{}/base/steps-other-{}:1",
        registry.address,
        std::process::id()
    ));
    copy_to_registry("busybox:local", &other.0);
    docker_stdout(&["tag", "debian-minimal:local", &other.0]);
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest.replace(&base.0, &other.0))],
    );
    let out = dockception(&["build", "--push", "--tag", &tag.0], dir.path());
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("the base {} is sha256:", other.0))
            && stderr.contains("in the engine")
            && stderr.contains("docker pull"),
        "{stderr}"
    );
}

#[test]
fn the_init_is_found_in_a_registry_base_and_a_pinned_base_asks_the_registry_nothing() {
    if !engine_with(&["busybox:local"]) || !tools(&["docker-registry"]) {
        return;
    }
    let registry = Registry::start(RegistryOptions::default());
    let store = tempfile::tempdir().expect("tempdir");
    let with_tini = testkit::image(
        store.path(),
        &[vec![
            ("bin/cat", b"not run".to_vec()),
            ("usr/bin/tini", b"not run either".to_vec()),
        ]],
    )
    .expect("image");
    let base = format!("{}/base/tini-{}:1", registry.address, std::process::id());
    block_on(push::push(
        &with_tini,
        std::slice::from_ref(&base),
        &push::RegistrySettings::default(),
        &Progress::Silent,
    ))
    .expect("pushed");
    let pinned = format!(
        "{}@{}",
        base.rsplit_once(':').expect("a tag").0,
        with_tini.digest()
    );
    let dir = project("registry-base-init");
    let manifest = format!("{}init = true\n", busybox_manifest(&pinned, "with an init"));
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    let (report, _) = build(dir.path(), &["--output", "type=none"]);
    assert_eq!(
        report["init"],
        format!("tini at /usr/bin/tini, from the base {pinned}"),
        "{report}"
    );
    assert!(!image_exists(&pinned) && !image_exists(&base));

    // The registry is gone: the base pinned by digest is in the store, so nothing is asked.
    drop(registry);
    let (again, stderr) = build(dir.path(), &["--output", "type=none"]);
    assert!(!stderr.contains("taking the layers"), "{stderr}");
    assert_eq!(again["image_id"], report["image_id"]);

    // With no program and no user in the manifest, the base's config gives them: its Cmd is
    // what the init starts, and it sets no user, so the image would run as root.
    let bare = manifest
        .replace("user = \"65534:65534\"\n", "")
        .replace("entrypoint = [\"/bin/cat\", \"/hello\"]\n", "");
    write_files(dir.path(), &[("dockception.toml", &bare)]);
    let (_, stderr) = build(dir.path(), &["--output", "type=none"]);
    assert!(
        stderr.contains(&format!(
            "[runtime] user is not set and the base {pinned} sets no other user"
        )),
        "{stderr}"
    );
}
