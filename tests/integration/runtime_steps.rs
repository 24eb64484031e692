//! Runtime steps and init, against the real engine: packages built in the builder are
//! installed by a step with the artifacts mounted, so no layer holds them; and `init = true`
//! puts tini first, which reaps orphans and passes `docker stop`'s signal on.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

/// Every file path in every layer of `image`, bottom layer first, from `docker save`.
fn layer_paths(image: &str) -> Vec<Vec<String>> {
    let saved = std::process::Command::new("docker")
        .args(["save", image])
        .output()
        .expect("docker save runs");
    assert!(saved.status.success(), "{}", text(&saved.stderr));
    let mut files: std::collections::HashMap<String, Vec<u8>> = Default::default();
    let mut outer = tar::Archive::new(saved.stdout.as_slice());
    for entry in outer.entries().expect("image tar") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read");
        files.insert(path, bytes);
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&files["manifest.json"]).expect("manifest.json");
    manifest[0]["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|layer| {
            let bytes = &files[layer.as_str().expect("layer path")];
            tar::Archive::new(bytes.as_slice())
                .entries()
                .expect("layer tar")
                .map(|e| {
                    let path = e
                        .expect("entry")
                        .path()
                        .expect("path")
                        .to_string_lossy()
                        .into_owned();
                    path.trim_start_matches("./").to_string()
                })
                .collect()
        })
        .collect()
}

#[test]
fn a_package_is_installed_without_any_layer_holding_it() {
    if !engine_with(&["gcc:local", "debian-minimal:local"]) {
        return;
    }
    let manifest = repo().join("examples/clean-install/dockception.toml");
    let out = out_folder();
    let image = TestImage::new("clean-install");
    let result = dockception(
        &[
            "build",
            "-f",
            manifest.to_str().expect("utf-8"),
            "--out-dir",
            out.path().to_str().expect("utf-8"),
            "--tag",
            &image.0,
            "--format",
            "json",
        ],
        &repo(),
    );
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(stderr.contains("Setting up greet (1.0.0)"), "{stderr}");
    assert_eq!(
        docker_stdout(&["run", "--rm", &image.0]).trim(),
        "installed from a .deb that no layer of this image holds"
    );

    let layers = layer_paths(&image.0);
    let base_layers = layer_paths("debian-minimal:local").len();
    assert_eq!(
        layers.len(),
        base_layers + 1,
        "one layer more than the base"
    );
    for (i, layer) in layers.iter().enumerate() {
        for path in layer {
            assert!(!path.ends_with(".deb"), "layer {i} holds {path}");
            // Docker creates the (empty) mount point; nothing that was mounted is kept.
            assert!(
                path == "artifacts/" || !path.starts_with("artifacts/"),
                "layer {i} holds {path}"
            );
        }
    }
    let top = layers.last().expect("a top layer");
    assert!(
        top.iter().any(|p| p == "usr/bin/greet"),
        "the top layer ({} entries) lacks usr/bin/greet",
        top.len()
    );

    // The config is the manifest's, not the steps container's.
    let config = docker_stdout(&["image", "inspect", "-f", "{{json .Config}}", &image.0]);
    let config: serde_json::Value = serde_json::from_str(&config).expect("config JSON");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/bin/greet"]));
    assert!(config["Cmd"].is_null(), "{config}");
    assert_eq!(config["Labels"]["dockception"], "image");
}

#[test]
fn a_failing_runtime_step_exits_with_its_status_and_tags_nothing() {
    if !engine_with(&["gcc:local", "debian-minimal:local"]) {
        return;
    }
    let dir = project("badstep");
    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            "[builder]\nimage = \"gcc:local\"\nrun = \"echo data > /out/file.txt\"\n\n[artifacts]\ninclude = [\"*.txt\"]\n\n[runtime]\nbase = \"debian-minimal:local\"\nrun = [\"cat /artifacts/file.txt\", \"echo step failing >&2; exit 4\"]\n",
        )],
    );
    let image = TestImage::new("never-committed");
    let result = dockception(&["build", "--tag", &image.0], dir.path());
    let stderr = text(&result.stderr);
    assert_eq!(result.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("a runtime step failed with exit status 4"),
        "{stderr}"
    );
    assert!(stderr.contains("  | step failing"), "{stderr}");
    assert!(!image_exists(&image.0));
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());
}

struct Running(String);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

fn build_orphans(dir: &Path, with_init: bool) -> (TestImage, serde_json::Value) {
    let fixture = repo().join("tests/fixtures/pid1");
    let mut manifest = std::fs::read_to_string(fixture.join("dockception.toml")).expect("read");
    if with_init {
        manifest.push_str("init = true\n");
    }
    write_files(
        dir,
        &[
            ("dockception.toml", &manifest),
            (
                "orphans.c",
                &std::fs::read_to_string(fixture.join("orphans.c")).expect("read"),
            ),
        ],
    );
    let image = TestImage::new(if with_init {
        "with-init"
    } else {
        "without-init"
    });
    let result = dockception(&["build", "--tag", &image.0, "--format", "json"], dir);
    assert!(result.status.success(), "{}", text(&result.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&result.stdout).expect("JSON");
    (image, reports[0].clone())
}

/// Run `image` until its program said ready; also the orphan's pid in the container.
fn start(image: &str) -> (Running, String) {
    let id = docker_stdout(&["run", "-d", image]).trim().to_string();
    let running = Running(id);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = docker_stdout(&["logs", &running.0]);
        let orphan = logs
            .lines()
            .find_map(|l| l.strip_prefix("orphan "))
            .map(str::to_string);
        if let (Some(orphan), true) = (orphan, logs.contains("ready")) {
            return (running, orphan);
        }
        assert!(Instant::now() < deadline, "the program never said ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The state of process `pid` in the container (`Z` for a zombie), `None` once it is gone.
fn state_of(container: &str, pid: &str) -> Option<String> {
    docker_stdout(&["exec", container, "ps", "-o", "pid,stat"])
        .lines()
        .skip(1)
        .find_map(|l| {
            let mut fields = l.split_whitespace();
            (fields.next() == Some(pid)).then(|| fields.next().unwrap_or("").to_string())
        })
}

/// The process states in the container, as busybox's ps prints them.
fn states(container: &str) -> Vec<String> {
    docker_stdout(&["exec", container, "ps", "-o", "stat,comm"])
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Poll until `done` holds for the orphan's state, at most 30 s; the last state seen.
fn wait_for_orphan(
    container: &str,
    pid: &str,
    done: impl Fn(&Option<String>) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = state_of(container, pid);
        if done(&state) || Instant::now() > deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn init_reaps_orphans_and_passes_signals_on() {
    if !engine_with(&["gcc:local", "busybox:local"]) {
        return;
    }
    // Without an init the program is PID 1, never waits, and the orphan stays a zombie: this
    // shows the check below can see one.
    let plain = project("noinit");
    let (image, report) = build_orphans(plain.path(), false);
    assert!(report["init"].is_null());
    let (container, orphan) = start(&image.0);
    let state = wait_for_orphan(&container.0, &orphan, |s| {
        s.as_deref().is_some_and(|s| s.starts_with('Z'))
    });
    assert!(
        state.as_deref().is_some_and(|s| s.starts_with('Z')),
        "the orphan {orphan} never became a zombie without init: {state:?}"
    );
    drop(container);

    let with = project("init");
    let (image, report) = build_orphans(with.path(), true);
    let init = report["init"].as_str().expect("the report names the init");
    assert!(
        init.starts_with("tini from the builder gcc:local (/usr/bin/tini-static)"),
        "{init}"
    );
    let entrypoint = docker_stdout(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Entrypoint}}",
        &image.0,
    ]);
    assert_eq!(
        entrypoint.trim(),
        r#"["/sbin/tini","--","/usr/local/bin/orphans"]"#
    );
    // Up to date, the build reports the init the real build chose.
    let again = dockception(
        &["build", "--tag", &image.0, "--format", "json"],
        with.path(),
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(again[0]["up_to_date"], true);
    assert_eq!(again[0]["init"], init);

    let (container, orphan) = start(&image.0);
    // The orphan exits a second after it started; tini reaps it, so it goes away entirely.
    let state = wait_for_orphan(&container.0, &orphan, Option::is_none);
    assert_eq!(state, None, "the orphan {orphan} was not reaped with init");
    let seen = states(&container.0);
    assert!(
        !seen.iter().any(|s| s.starts_with('Z')),
        "a zombie with init: {seen:?}"
    );
    assert!(seen.iter().any(|s| s.ends_with("tini")), "{seen:?}");

    docker_stdout(&["stop", "-t", "20", &container.0]);
    let code = docker_stdout(&["inspect", "-f", "{{.State.ExitCode}}", &container.0]);
    assert_eq!(
        code.trim(),
        "0",
        "docker stop had to kill it (the signal did not arrive)"
    );
    assert!(docker_stdout(&["logs", &container.0]).contains("bye"));
}

/// A base of the test's own: busybox:local with gcc:local's static tini at `/usr/bin/tini`
/// (where dockception looks in a base) and at `/opt/init/tini` (where it does not). The image
/// goes when the guard drops.
fn base_with_tini() -> TestImage {
    let base = TestImage::new("tini-base");
    let files = tempfile::tempdir().expect("tempdir");
    let tini = files.path().join("tini");
    let from = Running(
        docker_stdout(&["create", "gcc:local", "true"])
            .trim()
            .to_string(),
    );
    docker_stdout(&[
        "cp",
        &format!("{}:/usr/bin/tini-static", from.0),
        tini.to_str().expect("utf-8"),
    ]);
    let root = files.path().join("root");
    for place in ["usr/bin", "opt/init"] {
        std::fs::create_dir_all(root.join(place)).expect("mkdir");
        std::fs::copy(&tini, root.join(place).join("tini")).expect("copy tini");
    }
    let into = Running(
        docker_stdout(&["create", "busybox:local", "true"])
            .trim()
            .to_string(),
    );
    docker_stdout(&[
        "cp",
        &format!("{}/.", root.display()),
        &format!("{}:/", into.0),
    ]);
    docker_stdout(&["commit", &into.0, &base.0]);
    base
}

/// Build, on `base`, an image whose program prints a file, with `init` in [runtime]; the
/// report, the image's entrypoint and what it prints when run.
fn build_with_init(base: &str, init: &str) -> (serde_json::Value, String, String) {
    let dir = project("init-base");
    let manifest = format!(
        r#"
[builder]
image = "busybox:local"
run = "echo hello through the init > /out/hello.txt"

[artifacts]
include = ["hello.txt"]

[runtime]
base = "{base}"
entrypoint = ["/bin/cat", "/hello.txt"]
init = {init}
"#
    );
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    let image = TestImage::new("init-base");
    let result = dockception(
        &["build", "--tag", &image.0, "--format", "json"],
        dir.path(),
    );
    assert!(result.status.success(), "{}", text(&result.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&result.stdout).expect("JSON");
    let entrypoint = docker_stdout(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Entrypoint}}",
        &image.0,
    ]);
    let printed = docker_stdout(&["run", "--rm", &image.0]);
    (reports[0].clone(), entrypoint.trim().to_string(), printed)
}

#[test]
fn init_is_the_bases_own_tini_or_the_path_the_manifest_names() {
    if !engine_with(&["gcc:local", "busybox:local"]) {
        return;
    }
    let base = base_with_tini();

    // `init = true`: the base's tini is used, and nothing is copied in (the builder,
    // busybox:local, has no tini to copy: a build that looked only there would fail).
    let (report, entrypoint, printed) = build_with_init(&base.0, "true");
    assert_eq!(
        report["init"],
        format!("tini at /usr/bin/tini, from the base {}", base.0)
    );
    assert_eq!(
        entrypoint,
        r#"["/usr/bin/tini","--","/bin/cat","/hello.txt"]"#
    );
    let files: Vec<&str> = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("a path"))
        .collect();
    assert!(files.contains(&"/usr/bin/tini"), "{files:?}");
    assert!(
        !files.contains(&"/sbin/tini"),
        "a tini was copied: {files:?}"
    );
    assert_eq!(printed, "hello through the init\n");

    // `init = "/opt/init/tini"`: that path goes first, though no lookup would find it.
    let (report, entrypoint, printed) = build_with_init(&base.0, r#""/opt/init/tini""#);
    assert_eq!(report["init"], "/opt/init/tini (named in the manifest)");
    assert_eq!(
        entrypoint,
        r#"["/opt/init/tini","--","/bin/cat","/hello.txt"]"#
    );
    assert_eq!(printed, "hello through the init\n");
}

/// A copy of `examples/clean-install` in a fresh project folder, with `run` replaced.
fn clean_install_with(run: &str) -> Project {
    let dir = project("dpkg-repro");
    let example = repo().join("examples/clean-install");
    for file in ["debian/control", "src/greet.c"] {
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(example.join(file), &to).expect("copy");
    }
    let manifest = std::fs::read_to_string(example.join("dockception.toml")).expect("manifest");
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("run ") && l.contains('['))
        .expect("the example has a run line");
    let manifest = manifest.replace(line, &format!("run = {run}"));
    std::fs::write(dir.path().join("dockception.toml"), manifest).expect("write");
    dir
}

fn build_report(dir: &Path, tag: &str) -> serde_json::Value {
    let out = dockception(&["build", "--force", "--tag", tag, "--format", "json"], dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    reports[0].clone()
}

#[test]
fn dpkg_writes_the_time_into_one_file_and_without_it_the_image_is_the_same() {
    if !engine_with(&["gcc:local", "debian-minimal:local"]) {
        return;
    }
    let image = TestImage::new("dpkg-repro");
    let dir = clean_install_with(r#"["dpkg -i /artifacts/*.deb"]"#);
    let (a, b) = (
        build_report(dir.path(), &image.0),
        build_report(dir.path(), &image.0),
    );
    let files = |r: &serde_json::Value| -> std::collections::BTreeMap<String, serde_json::Value> {
        r["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().expect("path").to_string(),
                    f["sha256"].clone(),
                )
            })
            .collect()
    };
    let (fa, fb) = (files(&a), files(&b));
    let differing: Vec<&String> = fa.keys().filter(|p| fa.get(*p) != fb.get(*p)).collect();
    assert_eq!(
        differing,
        ["/var/log/dpkg.log"],
        "only dpkg's log holds the time"
    );

    let dir = clean_install_with(r#"["dpkg -i /artifacts/*.deb", "rm /var/log/dpkg.log"]"#);
    let (a, b) = (
        build_report(dir.path(), &image.0),
        build_report(dir.path(), &image.0),
    );
    assert_eq!(
        a["image_id"], b["image_id"],
        "without the log, the same image"
    );
    assert_eq!(a["digest"], b["digest"]);
}

#[test]
fn runtime_steps_see_artifacts_under_their_exact_names() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("steps-names");
    // `caf\351` is not UTF-8 and `new\nline` holds a newline: staged under a display form
    // (`caf\xe9`), neither would be found by its real name.
    let manifest = r#"
[builder]
image = "busybox:local"
run = '''printf x > "$(printf '/out/caf\351')" && printf y > "$(printf '/out/new\nline')"'''

[artifacts]
include = ["*"]

[runtime]
base = "busybox:local"
user = "65534:65534"
run = ['''test -f "$(printf '/artifacts/caf\351')" && test -f "$(printf '/artifacts/new\nline')" && mkdir -p /opt && touch /opt/found''']
entrypoint = ["/bin/true"]
"#;
    write_files(dir.path(), &[("dockception.toml", manifest)]);
    let image = TestImage::new("steps-names");
    let out = dockception(&["build", "--tag", &image.0], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let found = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/ls",
        &image.0,
        "/opt/found",
    ]);
    assert!(found.status.success(), "{}", text(&found.stderr));
}
