//! End to end against the real Docker Engine: the examples build images that run, contexts are
//! reproducible, failures exit with the builder's status and leave nothing behind, sources stay
//! untouched, and outputs belong to the invoking user.

use std::path::Path;

use crate::support::*;

/// Build an example with a unique tag and a private output folder; return the image, the
/// report and the output folder.
fn build_example(example: &str) -> (TestImage, serde_json::Value, OutFolder) {
    let image = TestImage::new(example);
    let out = out_folder();
    let manifest = repo()
        .join("examples")
        .join(example)
        .join("dockception.toml");
    let before = tree_checksum(&repo().join("examples").join(example));
    let result = dockception(
        &[
            "build",
            "-f",
            manifest.to_str().expect("utf-8 path"),
            "--out-dir",
            out.path().to_str().expect("utf-8 path"),
            "--tag",
            &image.0,
            "--format",
            "json",
        ],
        &repo(),
    );
    assert!(
        result.status.success(),
        "build of {example} failed:\n{}",
        text(&result.stderr)
    );
    assert_eq!(
        before,
        tree_checksum(&repo().join("examples").join(example)),
        "building {example} changed its sources"
    );
    let reports: serde_json::Value = serde_json::from_slice(&result.stdout).expect("JSON report");
    assert_eq!(reports[0]["target"], "default");
    (image, reports[0].clone(), out)
}

fn assert_runs_and_is_small(example: &str, expected: &str) {
    let (image, report, out) = build_example(example);
    let output = docker_stdout(&["run", "--rm", &image.0]);
    assert_eq!(output.trim(), expected);

    let size: u64 = docker_stdout(&["image", "inspect", "-f", "{{.Size}}", &image.0])
        .trim()
        .parse()
        .expect("a size");
    let artifact = std::fs::metadata(out.path().join("last/hello")).expect("the kept output");
    assert!(
        size <= artifact.len() + 16 * 1024,
        "image of {size} bytes is more than its {}-byte artifact plus 16 KiB",
        artifact.len()
    );
    assert_eq!(report["runtime_bytes"], size);
    assert_eq!(report["artifacts"][0]["path"], "/hello");
    assert_eq!(report["artifacts"][0]["bytes"], artifact.len());
    assert!(report["builder"]["bytes"].as_u64().expect("bytes") > 100 * 1024 * 1024);
    assert_eq!(
        report["left_behind_bytes"].as_u64().expect("bytes"),
        report["builder"]["bytes"].as_u64().expect("bytes") - size
    );
    let layers = docker_stdout(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", &image.0]);
    assert_eq!(layers.trim(), "1", "one layer: the artifacts on scratch");
}

#[test]
fn hello_c_ships_a_static_binary_alone_on_scratch() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    assert_runs_and_is_small("hello-c", "Hello, world! (C, static, on scratch)");
}

#[test]
fn hello_go_is_the_2017_builder_pattern() {
    if !engine_with(&["golang:local"]) {
        return;
    }
    assert_runs_and_is_small("hello-go", "Hello, world! (Go, CGO_ENABLED=0, on scratch)");
}

#[test]
fn the_context_is_byte_identical_across_runs_and_docker_builds_it() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    let manifest = repo().join("examples/hello-c/dockception.toml");
    let out = out_folder();
    let args = [
        "context",
        "-q",
        "-f",
        manifest.to_str().expect("utf-8 path"),
        "--out-dir",
        out.path().to_str().expect("utf-8 path"),
    ];
    let first = dockception(&args, &repo());
    assert!(first.status.success(), "{}", text(&first.stderr));
    let second = dockception(&args, &repo());
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(first.stdout.len() > 10_000, "the context holds the binary");
    assert!(
        first.stdout == second.stdout,
        "two runs gave different bytes"
    );

    // The 2015 trick: `dockception context | docker build -t app -`.
    let image = TestImage::new("piped");
    let mut build = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &image.0, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("docker build runs");
    {
        use std::io::Write;
        let mut stdin = build.stdin.take().expect("stdin");
        stdin.write_all(&first.stdout).expect("send context");
    }
    assert!(build.wait().expect("docker build").success());
    let output = docker_stdout(&["run", "--rm", &image.0, "context"]);
    assert_eq!(output.trim(), "Hello, context! (C, static, on scratch)");
}

fn failing_manifest(run: &str) -> String {
    format!(
        r#"
[builder]
image = "gcc:local"
run = {run:?}

[[mount]]
source = "src"
target = "/src"

[artifacts]
include = ["app"]
"#
    )
}

#[test]
fn a_failing_build_exits_with_its_status_and_leaves_nothing() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    let dir = project("failing");
    write_files(
        dir.path(),
        &[
            (
                "dockception.toml",
                &failing_manifest("echo compiling; echo 'app.c:3: error: boom' >&2; exit 3"),
            ),
            ("src/app.c", "int main(void) { return 0; }\n"),
        ],
    );
    let image = TestImage::new("never-built");
    let result = dockception(&["build", "--tag", &image.0], dir.path());
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(3), "{stderr}");
    // stdout and stderr travel through separate pipes, so their relative order may vary.
    let (_, tail) = stderr
        .split_once("error: the build command failed with exit status 3; its last lines were:\n")
        .unwrap_or_else(|| panic!("no failure summary in:\n{stderr}"));
    assert!(tail.contains("  | compiling\n"), "{stderr}");
    assert!(tail.contains("  | app.c:3: error: boom\n"), "{stderr}");
    assert!(!image_exists(&image.0), "a failed build tagged an image");
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());
    let runs = std::fs::read_dir(dir.path().join(".dockception/runs")).expect("runs folder");
    assert_eq!(runs.count(), 0, "the failed run's folder was left behind");
    assert!(!dir.path().join(".dockception/last").exists());
}

#[test]
fn sources_are_mounted_read_only() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    let dir = project("readonly");
    write_files(
        dir.path(),
        &[
            (
                "dockception.toml",
                &failing_manifest(
                    "echo tampered > /src/app.c && touch /src/new && cp /src/app.c /out/app",
                ),
            ),
            ("src/app.c", "int main(void) { return 0; }\n"),
        ],
    );
    let before = tree_checksum(&dir.path().join("src"));
    let result = dockception(&["build"], dir.path());
    let stderr = text(&result.stderr);
    assert!(
        !result.status.success(),
        "writing into the sources succeeded:\n{stderr}"
    );
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert_eq!(before, tree_checksum(&dir.path().join("src")));
}

#[test]
fn outputs_belong_to_the_invoking_user() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let dir = project("owner");
    write_files(
        dir.path(),
        &[
            (
                "dockception.toml",
                &failing_manifest(
                    "cp /src/app.c /out/app && mkdir -p /out/sub && touch /out/sub/x",
                ),
            ),
            ("src/app.c", "int main(void) { return 0; }\n"),
        ],
    );
    let image = TestImage::new("owner");
    let root = rustix::process::getuid().is_root();
    // As root, run the tool as `nobody` (with the docker group, to reach the socket) so the
    // test proves the builder does not write as root.
    let (uid, gid) = if root {
        (65534, 65534)
    } else {
        (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )
    };
    let result = if root {
        chown_tree(dir.path(), uid, gid);
        let docker_gid = docker_group().expect("the docker group exists (scripts/engine.sh)");
        std::process::Command::new("setpriv")
            .args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                format!("--groups={docker_gid}"),
                "--".into(),
                BIN.into(),
                "build".into(),
                "--tag".into(),
                image.0.clone(),
            ])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .output()
            .expect("setpriv runs")
    } else {
        dockception(&["build", "--tag", &image.0], dir.path())
    };
    assert!(result.status.success(), "{}", text(&result.stderr));
    for path in ["app", "sub", "sub/x"] {
        let meta = std::fs::metadata(dir.path().join(".dockception/last").join(path))
            .expect("output exists");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (uid, gid),
            "{path} has the wrong owner"
        );
    }
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.expect("walk");
        std::os::unix::fs::chown(entry.path(), Some(uid), Some(gid)).expect("chown");
    }
}

fn docker_group() -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups
        .lines()
        .find(|l| l.starts_with("docker:"))
        .and_then(|l| l.split(':').nth(2))
        .and_then(|g| g.parse().ok())
}

#[test]
fn a_missing_builder_image_names_it() {
    if !engine_with(&[]) {
        return;
    }
    let dir = project("noimage");
    let manifest = failing_manifest("true").replace("gcc:local", "dockception-test/absent:never");
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest), ("src/a", "")],
    );
    let result = dockception(&["build"], dir.path());
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .expect("an error line");
    assert!(
        error.starts_with("error: image dockception-test/absent:never is not present locally and could not be pulled: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: build or import it locally"),
        "{stderr}"
    );
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());
}

#[test]
fn an_interrupted_build_removes_its_container_and_folders() {
    if !engine_with(&["gcc:local"]) {
        return;
    }
    let dir = project("interrupt");
    write_files(
        dir.path(),
        &[
            (
                "dockception.toml",
                &failing_manifest("echo started; sleep 60"),
            ),
            ("src/app.c", ""),
        ],
    );
    let child = std::process::Command::new(BIN)
        .arg("build")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dockception runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while all_containers_of(dir.path()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the builder never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs")
        .success());
    let result = child.wait_with_output().expect("dockception ends");
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("error: interrupted by SIGINT"), "{stderr}");
    assert_eq!(all_containers_of(dir.path()), Vec::<String>::new());
    // (A build in the warm builder makes its run folder only once the command has ended.)
    let runs = std::fs::read_dir(dir.path().join(".dockception/runs"));
    assert_eq!(
        runs.map_or(0, |r| r.count()),
        0,
        "the interrupted run's folder was left behind"
    );
}

/// A real registry (Debian's docker-registry) on a free 127.0.0.1 port, stopped on drop.
struct LocalRegistry {
    child: std::process::Child,
    address: String,
    _storage: tempfile::TempDir,
}

impl LocalRegistry {
    fn start() -> LocalRegistry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let storage = tempfile::tempdir().expect("tempdir");
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.path().join("data").display()
            ),
        )
        .expect("write config");
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry starts (scripts/engine.sh installs it)");
        let address = format!("127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        LocalRegistry {
            child,
            address,
            _storage: storage,
        }
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_missing_builder_image_is_pulled_when_a_registry_answers() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let registry = LocalRegistry::start();
    let remote = format!("{}/dockception-test/busybox:pull", registry.address);
    let _remote_guard = TestImage(remote.clone());
    docker_stdout(&["tag", "busybox:local", &remote]);
    docker_stdout(&["push", &remote]);
    docker_stdout(&["rmi", &remote]);
    assert!(!image_exists(&remote));

    let dir = project("pull");
    let manifest = format!(
        r#"
[builder]
image = "{remote}"
run = "echo '#!/bin/sh' > /out/app && chmod +x /out/app"

[artifacts]
include = ["app"]

[runtime]
base = "busybox:local"
"#
    );
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    let image = TestImage::new("pulled");
    let result = dockception(&["build", "--tag", &image.0], dir.path());
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("==> {remote} is not present locally; pulling it")),
        "{stderr}"
    );
    assert!(image_exists(&remote), "the builder image was not pulled");
    let listing = docker_stdout(&["run", "--rm", "--entrypoint", "ls", &image.0, "-l", "/app"]);
    assert!(listing.starts_with("-rwxr-xr-x"), "{listing}");
}

#[test]
fn compilation_images_build_two_images_with_one_command() {
    if !engine_with(&["golang:local", "busybox:local"]) {
        return;
    }
    let manifest = repo().join("examples/compilation-images/dockception.toml");
    let out = out_folder();
    let (build_image, run_image) = (
        TestImage::new("compile-build"),
        TestImage::new("compile-run"),
    );
    let result = dockception(
        &[
            "build",
            "-f",
            manifest.to_str().expect("utf-8"),
            "--out-dir",
            out.path().to_str().expect("utf-8"),
            "--tag",
            &format!("build={}", build_image.0),
            "--tag",
            &format!("run={}", run_image.0),
            "--format",
            "json",
        ],
        &repo(),
    );
    assert!(result.status.success(), "{}", text(&result.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&result.stdout).expect("JSON");
    assert_eq!(reports[0]["target"], "build");
    assert_eq!(reports[1]["target"], "run");
    assert_eq!(
        docker_stdout(&["run", "--rm", &build_image.0]).trim(),
        "compiled once, shipped twice: hello from the build image (go1.19.8)"
    );
    assert_eq!(
        docker_stdout(&["run", "--rm", &run_image.0]).trim(),
        "compiled once, shipped twice: hello from the run image (go1.19.8)"
    );
    // The run image holds the one binary the build target compiled, and nothing else.
    let binary = std::fs::metadata(out.path().join("targets/build/last/bin/compilation"))
        .expect("the build target's kept output");
    assert_eq!(reports[1]["artifacts"][0]["path"], "/compilation");
    assert_eq!(reports[1]["artifacts"][0]["bytes"], binary.len());

    // Selecting only `run` still runs build's builder, but builds one image.
    let only_run = TestImage::new("compile-only-run");
    let result = dockception(
        &[
            "build",
            "run",
            "-f",
            manifest.to_str().expect("utf-8"),
            "--out-dir",
            out.path().to_str().expect("utf-8"),
            "--tag",
            &format!("run={}", only_run.0),
            "--format",
            "json",
        ],
        &repo(),
    );
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    // Two targets run (build's builder, run's image), so each line names its target.
    assert!(
        stderr.contains("==> [build] building in golang:local"),
        "{stderr}"
    );
    assert!(
        stderr.contains("==> [run]   building the runtime image on scratch"),
        "{stderr}"
    );
    let reports: serde_json::Value = serde_json::from_slice(&result.stdout).expect("JSON");
    assert_eq!(reports.as_array().map(Vec::len), Some(1));
    assert!(image_exists(&only_run.0));
}

/// `dockception init` in a folder holding `files`, its builder image swapped for `local`
/// (the starters name public images; this machine has local ones), then a build and a run.
fn starter_builds_and_runs(kind: &str, files: &[(&str, &str)], local: &str, expected: &str) {
    let dir = project(&format!("init-{kind}"));
    write_files(dir.path(), files);
    // The starters keep cache volumes; they go with the test, whatever happens.
    struct Caches<'a>(&'a Path);
    impl Drop for Caches<'_> {
        fn drop(&mut self) {
            let _ = dockception(&["clean", "--caches", "-q"], self.0);
        }
    }
    let _caches = Caches(dir.path());
    let init = dockception(&["init"], dir.path());
    assert!(init.status.success(), "{kind}: {}", text(&init.stderr));
    let manifest_path = dir.path().join("dockception.toml");
    let manifest = std::fs::read_to_string(&manifest_path).expect("the starter");
    let image_line = manifest
        .lines()
        .find(|l| l.starts_with("image "))
        .unwrap_or_else(|| panic!("{kind}: no builder image line in\n{manifest}"));
    let swapped = manifest.replace(image_line, &format!("image = \"{local}\""));
    std::fs::write(&manifest_path, swapped).expect("write");
    let image = TestImage::new(&format!("init-{kind}"));
    let built = dockception(&["build", "-q", "--tag", &image.0], dir.path());
    assert!(built.status.success(), "{kind}: {}", text(&built.stderr));
    let run = docker(&["run", "--rm", &image.0]);
    assert_eq!(
        text(&run.stdout).trim(),
        expected,
        "{kind}: {}",
        text(&run.stderr)
    );
}

#[test]
fn the_go_and_c_starters_build_for_real() {
    if !engine_with(&["golang:local", "gcc:local"]) {
        return;
    }
    let go_main =
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from a starter\") }\n";
    starter_builds_and_runs(
        "go-mod",
        &[
            ("go.mod", "module example.com/hello\n\ngo 1.19\n"),
            ("main.go", go_main),
        ],
        "golang:local",
        "hello from a starter",
    );
    // The 2017 builder-pattern article's own layout: a main.go and no go.mod.
    starter_builds_and_runs(
        "go-gopath",
        &[("main.go", go_main)],
        "golang:local",
        "hello from a starter",
    );
    starter_builds_and_runs(
        "c-files",
        &[(
            "hello.c",
            "#include <stdio.h>\nint main(void) { puts(\"hello from a C starter\"); return 0; }\n",
        )],
        "gcc:local",
        "hello from a C starter",
    );
}
