//! No needless work, against the real engine: an unchanged build is "up to date" and runs
//! nothing, a one-byte source change rebuilds, and `cache ls` / `cache rm` manage the project's
//! cache volumes. (How fast is measured by `cargo xtask bench`, never asserted here.)

use std::path::{Path, PathBuf};

use crate::support::*;

const MANIFEST: &str = r#"
[builder]
image = "gcc:local"
workdir = "/src"
run = "gcc -O2 -static -s -o /out/app app.c && ls /cache/a /cache/b > /dev/null"

[[mount]]
source = "src"
target = "/src"

[[cache]]
target = "/cache/a"

[[cache]]
target = "/cache/b/"

[artifacts]
include = ["app"]

[runtime]
entrypoint = ["/app"]
"#;

const APP: &str = "int main(void) { return 0; }\n";

/// Removes the cache volumes of the project folder `dir` when dropped, even after a failure.
struct Volumes(String, PathBuf);

impl Volumes {
    fn of(dir: &Path) -> Volumes {
        Volumes(
            format!(
                "dockception-{}-",
                slug(&dir.file_name().expect("name").to_string_lossy())
            ),
            dir.to_path_buf(),
        )
    }

    fn names(&self) -> Vec<String> {
        docker_stdout(&["volume", "ls", "--format", "{{.Name}}"])
            .lines()
            .filter(|n| n.starts_with(&self.0))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        // The project's warm builder (on by default) mounts its cache volumes: it goes first.
        drop(ContainersOf(self.1.clone()));
        for name in self.names() {
            let _ = docker(&["volume", "rm", "-f", &name]);
        }
    }
}

/// Build in `dir`; returns the JSON report and stderr.
fn build(dir: &Path, image: &TestImage, extra: &[&str]) -> (serde_json::Value, String) {
    let mut args = vec!["build", "--tag", &image.0, "--format", "json"];
    args.extend_from_slice(extra);
    let result = dockception(&args, dir);
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let reports: serde_json::Value = serde_json::from_slice(&result.stdout).expect("a JSON report");
    (reports[0].clone(), stderr)
}

fn built(report: &serde_json::Value, stderr: &str) -> bool {
    let ran = stderr.contains("==> building in gcc:local");
    let skipped =
        report["up_to_date"].as_bool().expect("up_to_date") || !report["reused_from"].is_null();
    assert_eq!(ran, !skipped, "{stderr}");
    ran
}

#[test]
fn nothing_changed_means_no_work_and_one_byte_rebuilds() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    let dir = project("uptodate");
    let _volumes = Volumes::of(dir.path());
    write_files(
        dir.path(),
        &[
            ("dockception.toml", MANIFEST),
            ("src/app.c", APP),
            ("src/.gitignore", "*.log\n"),
            ("src/build.log", "noise"),
        ],
    );
    let image = TestImage::new("uptodate");

    let (first, stderr) = build(dir.path(), &image, &[]);
    assert!(built(&first, &stderr));
    assert!(first["build_command_ms"].as_u64().is_some(), "{first}");

    // Nothing changed: no container, the same image, and the text form says so.
    let (again, stderr) = build(dir.path(), &image, &[]);
    assert!(!built(&again, &stderr));
    assert_eq!(again["image_id"], first["image_id"]);
    assert_eq!(again["build_command_ms"], serde_json::Value::Null);
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());
    let result = dockception(&["build", "--tag", &image.0], dir.path());
    assert!(result.status.success());
    let stdout = text(&result.stdout);
    assert!(
        stdout.starts_with(&format!(
            "{} is up to date: nothing changed since the last build (image ",
            image.0
        )),
        "{stdout}"
    );

    // Up to date, it asks the engine only about the images: never `/version`, which dockerd
    // answers by running its components. A build that runs asks it (so the proxy sees it).
    let proxy = EngineProxy::start(None);
    let through_proxy = |extra: &[&str]| {
        let mut args = vec!["build", "--tag", &image.0, "--format", "json"];
        args.extend_from_slice(extra);
        let (out, requests) = proxy.dockception(&args, dir.path());
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a report");
        (report[0].clone(), stderr, requests)
    };
    let (noop, stderr, requests) = through_proxy(&[]);
    assert!(!built(&noop, &stderr));
    assert!(
        requests.iter().any(|r| r.starts_with("GET /images/")),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.contains("/version")),
        "{requests:?}"
    );
    let (forced, stderr, requests) = through_proxy(&["--force"]);
    assert!(built(&forced, &stderr));
    assert!(
        requests.iter().any(|r| r.contains("/version")),
        "{requests:?}"
    );
    drop(proxy);

    // A file .gitignore excludes is not an input.
    write_files(dir.path(), &[("src/build.log", "more noise")]);
    let (ignored, stderr) = build(dir.path(), &image, &[]);
    assert!(!built(&ignored, &stderr));

    // One byte of source: rebuilt, and the new binary is in the new image.
    write_files(
        dir.path(),
        &[("src/app.c", "int main(void) { return 7; }\n")],
    );
    let (changed, stderr) = build(dir.path(), &image, &[]);
    assert!(built(&changed, &stderr));
    assert_ne!(changed["image_id"], first["image_id"]);
    let status = docker(&["run", "--rm", &image.0]).status.code();
    assert_eq!(status, Some(7), "the image runs the changed program");

    // --force builds although nothing changed.
    let (forced, stderr) = build(dir.path(), &image, &["--force"]);
    assert!(built(&forced, &stderr));

    // The image is gone: not up to date, but the kept output and image of the same inputs
    // come back without a build.
    docker_stdout(&["rmi", "-f", &image.0]);
    let (reloaded, stderr) = build(dir.path(), &image, &[]);
    assert!(!built(&reloaded, &stderr));
    assert_eq!(reloaded["up_to_date"], false, "{stderr}");
    assert_eq!(reloaded["image_id"], forced["image_id"]);
    assert!(image_exists(&image.0));

    // Without kept builds, it is built again.
    docker_stdout(&["rmi", "-f", &image.0]);
    let removed = dockception(&["cache", "rm"], dir.path());
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let (rebuilt, stderr) = build(dir.path(), &image, &[]);
    assert!(built(&rebuilt, &stderr));
    assert!(image_exists(&image.0));
}

#[test]
fn cache_ls_and_rm_manage_the_projects_volumes() {
    if !engine_with(&["gcc:local", "busybox:local"]) {
        return;
    }
    let dir = project("caches");
    let volumes = Volumes::of(dir.path());
    write_files(
        dir.path(),
        &[("dockception.toml", MANIFEST), ("src/app.c", APP)],
    );
    let ls = |args: &[&str]| {
        let mut all = vec!["cache", "ls"];
        all.extend_from_slice(args);
        let result = dockception(&all, dir.path());
        assert!(result.status.success(), "{}", text(&result.stderr));
        text(&result.stdout)
    };

    let before = ls(&[]);
    assert_eq!(before.lines().count(), 3, "{before}");
    assert_eq!(
        before.matches("not created yet").count(),
        2,
        "no build yet: {before}"
    );

    let image = TestImage::new("caches");
    build(dir.path(), &image, &[]);
    let names = volumes.names();
    assert_eq!(names.len(), 2, "{names:?}");
    let listed = ls(&[]);
    for (name, target) in names.iter().zip(["/cache/a", "/cache/b"]) {
        let line = listed
            .lines()
            .find(|l| l.starts_with(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not listed:\n{listed}"));
        assert!(line.contains(target), "{line}");
        assert!(line.trim_end().ends_with("KiB"), "a measured size: {line}");
    }
    // --all adds another project's caches, named by their project.
    let other = project("caches-other");
    let other_volumes = Volumes::of(other.path());
    write_files(
        other.path(),
        &[("dockception.toml", &busybox_targets(&["solo"]))],
    );
    let other_image = TestImage::new("caches-other");
    let built = dockception(&["build", "-q", "--tag", &other_image.0], other.path());
    assert!(built.status.success(), "{}", text(&built.stderr));
    let other_names = other_volumes.names();
    assert_eq!(other_names.len(), 1, "{other_names:?}");
    assert!(!ls(&[]).contains(&other_names[0]), "only with --all");
    let all = ls(&["--all"]);
    assert!(all.contains(&names[0]), "{all}");
    let line = all
        .lines()
        .find(|l| l.starts_with(&other_names[0]))
        .unwrap_or_else(|| panic!("{} not listed:\n{all}", other_names[0]));
    assert!(
        line.contains(&format!("(project {})", project_label(other.path()))),
        "{line}"
    );

    let result = dockception(&["cache", "rm", "/cache/nope"], dir.path());
    assert_eq!(result.status.code(), Some(1));
    assert!(
        text(&result.stderr).starts_with(
            "error: no cache of this manifest is named /cache/nope; its caches are /cache/a ("
        ),
        "{}",
        text(&result.stderr)
    );

    let result = dockception(&["cache", "rm", "/cache/b/"], dir.path());
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert_eq!(
        text(&result.stdout),
        format!("removed {} (/cache/b)\n", names[1])
    );
    assert_eq!(volumes.names(), [names[0].clone()]);

    // Naming a cache volume keeps the kept builds; naming none takes them too.
    assert!(dir.path().join(".dockception/reuse").is_dir());
    let result = dockception(&["cache", "rm"], dir.path());
    assert!(result.status.success(), "{}", text(&result.stderr));
    let stdout = text(&result.stdout);
    assert!(
        stdout.starts_with(&format!(
            "removed {} (/cache/a)\ndid not exist: {} (/cache/b)\nremoved 1 kept build(s) of target default (",
            names[0], names[1]
        )),
        "{stdout}"
    );
    assert_eq!(volumes.names(), Vec::<String>::new());
    assert!(!dir.path().join(".dockception/reuse").exists());
}

/// Targets on busybox:local with one cache each, at `/cache/NAME`.
fn busybox_targets(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| {
            format!(
                "[targets.{name}]\nbuilder.image = \"busybox:local\"\n\
                 builder.run = \"echo {name} > /cache/{name}/seen && cp /bin/busybox /out/busybox\"\n\
                 artifacts.include = [\"busybox\"]\nruntime.entrypoint = [\"/busybox\", \"true\"]\n\n\
                 [[targets.{name}.cache]]\ntarget = \"/cache/{name}\"\n\n"
            )
        })
        .collect()
}

#[test]
fn cache_rm_by_target_name_removes_only_that_targets_caches() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("caches-targets");
    let volumes = Volumes::of(dir.path());
    write_files(
        dir.path(),
        &[("dockception.toml", &busybox_targets(&["one", "two"]))],
    );
    let images = [TestImage::new("one"), TestImage::new("two")];
    let built = dockception(
        &[
            "build",
            "-q",
            "--tag",
            &format!("one={}", images[0].0),
            "--tag",
            &format!("two={}", images[1].0),
        ],
        dir.path(),
    );
    assert!(built.status.success(), "{}", text(&built.stderr));
    let names = volumes.names();
    assert_eq!(names.len(), 2, "{names:?}");
    let plans = dockception::Options::new(
        dir.path()
            .canonicalize()
            .expect("path")
            .join("dockception.toml"),
    )
    .load()
    .expect("loads");
    let volume_of = |target: &str| {
        plans
            .targets
            .iter()
            .find(|p| p.target == target)
            .map(|p| p.builder.caches[0].volume.clone())
            .expect("a cache")
    };
    let (one, two) = (volume_of("one"), volume_of("two"));

    // A target's name takes its volumes and its kept builds, and only those.
    let kept = |target: &str| {
        dir.path()
            .join(format!(".dockception/targets/{target}/reuse"))
            .is_dir()
    };
    assert!(kept("one") && kept("two"));
    let result = dockception(&["cache", "rm", "one"], dir.path());
    assert!(result.status.success(), "{}", text(&result.stderr));
    let stdout = text(&result.stdout);
    assert!(
        stdout.starts_with(&format!(
            "removed {one} (/cache/one)\nremoved 1 kept build(s) of target one ("
        )),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert_eq!(volumes.names(), std::slice::from_ref(&two));
    assert!(!kept("one") && kept("two"));

    let result = dockception(&["cache", "rm", "two"], dir.path());
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert!(
        text(&result.stdout).starts_with(&format!("removed {two} (/cache/two)\n")),
        "{}",
        text(&result.stdout)
    );
    assert_eq!(volumes.names(), Vec::<String>::new());
    assert!(!kept("two"));
}

#[test]
fn a_new_cache_volume_is_handed_to_the_invoking_user() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    // Run as uid 1000, which a root test process can become (setpriv); CI runs as root.
    if !rustix::process::getuid().is_root() {
        let problem = "running dockception as another uid needs root";
        assert!(!in_ci(), "CI=true and {problem}");
        eprintln!("SKIPPED: {problem}");
        return;
    }
    let dir = project("cache-owner");
    let volumes = Volumes::of(dir.path());
    // Without the hand-over the volume belongs to root and the build, as 1000, cannot write.
    let manifest = r#"
[builder]
image = "busybox:local"
run = "busybox touch /cache/written && busybox id -u > /out/uid"

[[cache]]
target = "/cache"

[artifacts]
include = ["uid"]
"#;
    write_files(dir.path(), &[("dockception.toml", manifest)]);
    for path in [
        dir.path().to_path_buf(),
        dir.path().join("dockception.toml"),
    ] {
        std::os::unix::fs::chown(&path, Some(1000), Some(1000)).expect("chown");
    }
    // The engine's socket is root's; uid 1000 reaches it through a proxy socket of its own.
    let proxy = EngineProxy::start(Some((1000, 1000)));
    let image = TestImage::new("cache-owner");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", BIN])
        .args(["build", "--tag", &image.0])
        .current_dir(dir.path())
        .env("DOCKER_HOST", &proxy.host)
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("setpriv runs");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let names = volumes.names();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        stderr.contains(&format!("created cache volume {}", names[0])),
        "{stderr}"
    );
    let uid = std::fs::read_to_string(dir.path().join(".dockception/last/uid")).expect("uid");
    assert_eq!(uid.trim(), "1000");
    let owner = docker_stdout(&[
        "run",
        "--rm",
        "--network=none",
        "-v",
        &format!("{}:/c", names[0]),
        "busybox:local",
        "busybox",
        "stat",
        "-c",
        "%u:%g",
        "/c",
    ]);
    assert_eq!(owner.trim(), "1000:1000");
}
