//! The machine is left as it was found, against the real engine: labels on everything the tool
//! creates, `dockception clean` for what interrupted runs leave, outputs that a failed build
//! cannot destroy, artifacts that cannot reach outside the output folder, concurrent builds
//! that do not collide, secrets that never reach the runtime image, and a warning for images
//! that run as root.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::support::*;
use rustix::process::Signal;

fn inspect(kind: &str, name: &str, format: &str) -> String {
    docker_stdout(&[kind, "inspect", "-f", format, name])
        .trim()
        .to_string()
}

#[test]
fn everything_the_tool_creates_is_labelled() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("labels");
    let manifest = r#"
[builder]
image = "busybox:local"
run = "echo started; sleep 3; echo hi > /out/app"

[[cache]]
target = "/cache"

[artifacts]
include = ["app"]

[runtime]
base = "busybox:local"
user = "65534:65534"
"#;
    write_files(dir.path(), &[("dockception.toml", manifest)]);
    let project = project_label(dir.path());
    let image = TestImage::new("labelled");
    let build = Running::start(&["build", "--tag", &image.0], dir.path(), &[]);
    build.wait_for("| started", 60);
    let containers = all_containers_of(dir.path());
    assert_eq!(containers.len(), 1, "{containers:?}");
    let name = containers[0].split(' ').next().expect("name");
    let labels = inspect("container", name, "{{json .Config.Labels}}");
    let labels: serde_json::Value = serde_json::from_str(&labels).expect("labels");
    assert_eq!(labels["dockception"], "builder");
    assert_eq!(labels["dockception.project"], project.as_str());
    let owner = labels["dockception.owner"]
        .as_str()
        .expect("an owner label");
    assert!(
        owner.ends_with(&format!("/{}", build.child.id())),
        "{owner} does not name the dockception process"
    );
    let (code, _, stderr) = build.finish(60);
    assert_eq!(code, Some(0), "{stderr}");

    let volumes = volumes_of(dir.path());
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    assert_eq!(
        inspect("volume", &volumes[0], "{{index .Labels \"dockception\"}}"),
        "cache"
    );
    // The image is labelled as dockception's, but names no project: its bytes must not depend
    // on the project's folder. The project's output folder lists it instead, for `clean`.
    assert_eq!(
        inspect(
            "image",
            &image.0,
            "{{index .Config.Labels \"dockception\"}}|{{index .Config.Labels \"dockception.project\"}}"
        ),
        "image|"
    );
    let loaded = std::fs::read_to_string(dir.path().join(".dockception/loaded-images"))
        .expect("the loaded images are listed");
    assert!(
        loaded.contains(&inspect("image", &image.0, "{{.Id}}")),
        "{loaded}"
    );

    // Cache volumes survive a plain clean and go with --caches.
    let cleaned = dockception(&["clean"], dir.path());
    assert!(cleaned.status.success(), "{}", text(&cleaned.stderr));
    assert!(
        text(&cleaned.stderr).contains(&format!(
            "kept cache volume {}: caches are kept (pass --caches to remove them)",
            volumes[0]
        )),
        "{}",
        text(&cleaned.stderr)
    );
    assert_eq!(volumes_of(dir.path()), volumes);
    let cleaned = dockception(&["clean", "--caches"], dir.path());
    assert!(cleaned.status.success(), "{}", text(&cleaned.stderr));
    assert!(
        text(&cleaned.stdout).contains(&format!("removed cache volume {}", volumes[0])),
        "{}",
        text(&cleaned.stdout)
    );
    assert_eq!(volumes_of(dir.path()), Vec::<String>::new());
    let blobs = dir.path().join(".dockception/blobs");
    assert!(
        text(&cleaned.stdout).contains(&format!("removed blob store {}", blobs.display())),
        "the blob store is a cache too: {}",
        text(&cleaned.stdout)
    );
    assert!(!blobs.exists());
    assert!(image_exists(&image.0), "clean removed a tagged image");
}

#[test]
fn clean_removes_what_killed_runs_left_and_spares_builds_in_progress() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("clean");
    // Fresh containers: what a killed run leaves is its own (a warm builder's exec would
    // outlive the killed run, and `clean` keeps a warm builder while a build runs in it).
    let manifest = |run: &str| {
        format!(
            r#"
[builder]
image = "busybox:local"
run = {run:?}
warm = "off"

[artifacts]
include = ["app"]

[runtime]
user = "65534:65534"
"#
        )
    };
    let image = TestImage::new("clean");
    // Two builds under one tag: the first image is left dangling, labelled.
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest("echo one > /out/app"))],
    );
    let first = dockception(&["build", "--tag", &image.0], dir.path());
    assert!(first.status.success(), "{}", text(&first.stderr));
    let dangling = inspect("image", &image.0, "{{.Id}}");
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest("echo two > /out/app"))],
    );
    let second = dockception(&["build", "--tag", &image.0], dir.path());
    assert!(second.status.success(), "{}", text(&second.stderr));
    let kept = inspect("image", &image.0, "{{.Id}}");
    assert_ne!(dangling, kept);

    // A run killed outright (SIGKILL: no cleanup at all) leaves its container and folder.
    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            &manifest("echo started; sleep 120; echo > /out/app"),
        )],
    );
    let killed = Running::start(&["build"], dir.path(), &[]);
    killed.wait_for("| started", 60);
    killed.signal(Signal::KILL);
    let (code, _, _) = killed.finish(30);
    assert_eq!(code, None, "killed by a signal");
    let orphan = containers_of(dir.path());
    assert_eq!(orphan.len(), 1, "{orphan:?}");
    let runs = dir.path().join(".dockception/runs");
    assert_eq!(std::fs::read_dir(&runs).expect("runs").count(), 1);

    // A build in progress at the same time must survive the clean.
    let live = Running::start(&["build"], dir.path(), &[]);
    live.wait_for("| started", 60);
    let cleaned = dockception(&["clean"], dir.path());
    let (stdout, stderr) = (text(&cleaned.stdout), text(&cleaned.stderr));
    assert!(cleaned.status.success(), "{stderr}");
    let orphan_name = orphan[0].split(' ').next().expect("name");
    assert!(
        stdout.contains(&format!("removed container {orphan_name}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("removed image {dangling}")),
        "{stdout}"
    );
    assert!(stdout.contains("removed run folder "), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "its dockception run (pid {}) is still going",
            live.child.id()
        )),
        "{stderr}"
    );
    assert!(image_exists(&image.0), "the tagged image went");
    assert!(docker(&["image", "inspect", &dangling]).status.code() != Some(0));
    let left = containers_of(dir.path());
    assert_eq!(
        left.len(),
        1,
        "the live build's container is gone: {left:?}"
    );
    assert_ne!(left[0], orphan[0]);
    assert_eq!(std::fs::read_dir(&runs).expect("runs").count(), 1);

    live.signal(Signal::INT);
    let (code, _, stderr) = live.finish(60);
    assert_eq!(code, Some(130), "{stderr}");
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());
    let again = dockception(&["clean"], dir.path());
    assert!(
        text(&again.stdout).starts_with("nothing to clean for "),
        "{}",
        text(&again.stdout)
    );
}

#[test]
fn a_failed_build_keeps_the_previous_good_output() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("keep");
    let manifest = |run: &str| {
        format!(
            "[builder]\nimage = \"busybox:local\"\nrun = {run:?}\n\n[artifacts]\ninclude = [\"app\"]\n\n[runtime]\nuser = \"1:1\"\n"
        )
    };
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest("echo good > /out/app"))],
    );
    let image = TestImage::new("keep");
    let good = dockception(&["build", "--tag", &image.0], dir.path());
    assert!(good.status.success(), "{}", text(&good.stderr));
    let last = dir.path().join(".dockception/last/app");
    assert_eq!(std::fs::read_to_string(&last).expect("last"), "good\n");

    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            &manifest("echo broken > /out/app; echo half > /out/more; exit 7"),
        )],
    );
    let failed = dockception(&["build", "--tag", &image.0], dir.path());
    assert_eq!(failed.status.code(), Some(7), "{}", text(&failed.stderr));
    assert_eq!(std::fs::read_to_string(&last).expect("last"), "good\n");
    assert!(!dir.path().join(".dockception/last/more").exists());
    let runs = dir.path().join(".dockception/runs");
    assert_eq!(std::fs::read_dir(runs).expect("runs").count(), 0);
    // Nothing was written outside the output folder.
    let mut top: Vec<_> = std::fs::read_dir(dir.path())
        .expect("project")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, [".dockception", "dockception.toml"]);
}

/// What the files test's builder makes in /out (gcc:local, for coreutils and perl).
const FILES_BUILD: &str = r#"set -e
cd /out
printf '#!/bin/sh\necho run\n' > tool && chmod 0750 tool
echo data > data.txt && chmod 0600 data.txt
mkdir lib && echo so > lib/libx.so.1 && ln -s libx.so.1 lib/libx.so
ln -s tool tool-link
mkfifo pipe
perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Local => "/out/sock", Listen => 1) or die $!'
echo spaced > 'with space'
echo newline > "$(printf 'new\nline')"
echo latin1 > "$(printf 'caf\351')"
"#;

#[test]
fn artifacts_keep_modes_links_and_names_and_special_files_are_skipped() {
    if !engine_with(&["gcc:local", "busybox:local"]) {
        return;
    }
    let dir = project("files");
    let manifest = format!(
        "[builder]\nimage = \"gcc:local\"\nrun = {FILES_BUILD:?}\n\n[artifacts]\ninclude = [\"*\"]\ndest = \"/app\"\n\n[runtime]\nbase = \"busybox:local\"\nuser = \"65534:65534\"\n"
    );
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    let image = TestImage::new("files");
    let result = dockception(&["build", "--tag", &image.0], dir.path());
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    for warning in [
        "warning: skipped /out/pipe: a named pipe (fifo) cannot be shipped in an image layer",
        "warning: skipped /out/sock: a socket cannot be shipped in an image layer",
    ] {
        assert!(stderr.contains(warning), "{warning:?} not in:\n{stderr}");
    }
    let (_, layers) = saved_image(&image.0);
    let ours = layers.last().expect("the artifacts layer");
    let find = |path: &[u8]| {
        ours.iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| {
                panic!(
                    "{} not in the layer: {:?}",
                    String::from_utf8_lossy(path),
                    ours.iter()
                        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                        .collect::<Vec<_>>()
                )
            })
            .clone()
    };
    assert_eq!(find(b"app/tool").mode & 0o777, 0o755, "exec bit kept");
    assert_eq!(find(b"app/data.txt").mode & 0o777, 0o644);
    let link = find(b"app/lib/libx.so");
    assert_eq!(link.kind, tar::EntryType::Symlink);
    assert_eq!(link.link.as_deref(), Some(&b"libx.so.1"[..]));
    assert_eq!(find(b"app/tool-link").link.as_deref(), Some(&b"tool"[..]));
    for name in [&b"app/with space"[..], b"app/new\nline", b"app/caf\xe9"] {
        assert_eq!(find(name).kind, tar::EntryType::Regular);
    }
    assert!(!ours
        .iter()
        .any(|e| e.path.ends_with(b"pipe") || e.path.ends_with(b"sock")));
    // The image runs them: the link and the exec bit work.
    let out = docker_stdout(&["run", "--rm", "--entrypoint", "/app/tool-link", &image.0]);
    assert_eq!(out.trim(), "run");
}

#[test]
fn a_symlink_out_of_the_output_folder_is_refused() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    for (target, why) in [
        (
            "/etc/passwd",
            "an absolute target points outside the output folder",
        ),
        (
            "../../../etc/shadow",
            "it leads out of the output folder through `..`",
        ),
    ] {
        let dir = project("escape");
        let run = format!("echo x > /out/real && busybox ln -s {target} /out/app");
        let manifest = format!(
            "[builder]\nimage = \"busybox:local\"\nrun = {run:?}\n\n[artifacts]\ninclude = [\"app\", \"real\"]\n"
        );
        write_files(dir.path(), &[("dockception.toml", &manifest)]);
        let image = TestImage::new("escape");
        let result = dockception(&["build", "--tag", &image.0], dir.path());
        let stderr = text(&result.stderr);
        assert_eq!(result.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "error: artifact /out/app is a symlink to {target}, outside the builder output folder: {why}"
            )),
            "{stderr}"
        );
        assert!(stderr.contains("help: make the link relative"), "{stderr}");
        assert!(!image_exists(&image.0));
        assert_eq!(images_of(dir.path()), Vec::<String>::new());
        assert_eq!(containers_of(dir.path()), Vec::<String>::new());
    }
}

#[test]
fn two_builds_of_one_manifest_at_once_do_not_collide() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("twice");
    let manifest = "[builder]\nimage = \"busybox:local\"\nrun = \"echo started; sleep 2; hostname > /out/app; hostname > /out/app2\"\n\n[artifacts]\ninclude = [\"app*\"]\n\n[runtime]\nuser = \"1:1\"\n";
    write_files(dir.path(), &[("dockception.toml", manifest)]);
    let (a, b) = (TestImage::new("twice-a"), TestImage::new("twice-b"));
    let first = Running::start(&["build", "--tag", &a.0], dir.path(), &[]);
    let second = Running::start(&["build", "--tag", &b.0], dir.path(), &[]);
    first.wait_for("| started", 60);
    second.wait_for("| started", 60);
    // One runs in the warm builder, the other in a fresh container beside it.
    let running = all_containers_of(dir.path());
    assert_eq!(
        running.len(),
        2,
        "both builders run side by side: {running:?}"
    );
    let (code_a, _, err_a) = first.finish(120);
    let (code_b, _, err_b) = second.finish(120);
    assert_eq!(code_a, Some(0), "{err_a}");
    assert_eq!(code_b, Some(0), "{err_b}");
    assert!(image_exists(&a.0) && image_exists(&b.0));
    // last/ is one run's whole output, not a mix.
    let last = dir.path().join(".dockception/last");
    assert_eq!(
        std::fs::read_to_string(last.join("app")).expect("app"),
        std::fs::read_to_string(last.join("app2")).expect("app2")
    );
    let runs = dir.path().join(".dockception/runs");
    assert_eq!(std::fs::read_dir(runs).expect("runs").count(), 0);
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());
}

#[test]
fn secrets_never_reach_the_runtime_image() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("secrets");
    let in_manifest = unique_token("manifest-env-secret");
    let from_host = unique_token("host-env-secret");
    let in_file = unique_token("file-secret");
    let in_sources = unique_token("mounted-source-secret");
    let run = r#"set -e
test "$FROM_HOST" = "$(cat /src/expected-host)" || { echo "FROM_HOST not passed"; exit 9; }
test -n "$IN_MANIFEST"
cat /run/secrets/token > /dev/null
cat /src/private.txt > /dev/null
echo "the token is $FROM_HOST"
echo '#!/bin/sh' > /out/app
"#;
    let manifest = format!(
        r#"
[builder]
image = "busybox:local"
run = {run:?}
env = {{ IN_MANIFEST = "{in_manifest}" }}
env_from_host = ["FROM_HOST"]

[builder.secrets]
token = "token.txt"

[[mount]]
source = "src"
target = "/src"

[artifacts]
include = ["app"]

[runtime]
user = "65534:65534"
entrypoint = ["/app"]
"#
    );
    write_files(
        dir.path(),
        &[
            ("dockception.toml", &manifest),
            ("token.txt", &in_file),
            ("src/private.txt", &in_sources),
            ("src/expected-host", &from_host),
        ],
    );
    let image = TestImage::new("secrets");
    let build = Running::start(
        &["build", "--tag", &image.0, "--format", "json"],
        dir.path(),
        &[("FROM_HOST", &from_host)],
    );
    let (code, stdout, stderr) = build.finish(120);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("| the token is ***"),
        "not masked:\n{stderr}"
    );
    assert!(
        !stderr.contains(&from_host),
        "the secret was printed:\n{stderr}"
    );

    let (saved, layers) = saved_image(&image.0);
    assert!(!layers.is_empty());
    let config = docker_stdout(&["image", "inspect", &image.0]);
    let history = docker_stdout(&["history", "--no-trunc", &image.0]);
    for secret in [&in_manifest, &from_host, &in_file, &in_sources] {
        let s = secret.as_bytes();
        assert!(!contains(&saved, s), "{secret} is in `docker save`");
        assert!(
            !config.contains(secret.as_str()),
            "{secret} is in the config"
        );
        assert!(
            !history.contains(secret.as_str()),
            "{secret} is in the history"
        );
        assert!(!contains(&stdout, s), "{secret} is in the report");
    }
    // Neither the secret file nor the sources are among the layer's files.
    for layer in &layers {
        for entry in layer {
            let name = Path::new(std::ffi::OsStr::from_bytes(&entry.path));
            assert!(
                !name.starts_with("run") && !name.starts_with("src"),
                "{} is in a layer",
                name.display()
            );
        }
    }
    assert_eq!(containers_of(dir.path()), Vec::<String>::new());

    // Without the variable, the build stops before any container with the fix in one line.
    let missing = dockception(&["build", "--tag", &image.0], dir.path());
    let stderr = text(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: builder.env_from_host names FROM_HOST, but it is not set in dockception's environment\n  help: export FROM_HOST=..."),
        "{stderr}"
    );
}

#[test]
fn the_runtime_image_runs_as_the_manifest_user_and_root_is_warned_about() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("user");
    let manifest = |user: &str| {
        format!(
            "[builder]\nimage = \"busybox:local\"\nrun = \"echo > /out/app\"\n\n[artifacts]\ninclude = [\"app\"]\n\n[runtime]\nbase = \"busybox:local\"\n{user}"
        )
    };
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest("user = \"65534:65534\"\n"))],
    );
    let image = TestImage::new("user");
    let result = dockception(&["build", "--tag", &image.0], dir.path());
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(!stderr.contains("runs as root"), "{stderr}");
    let ids = docker_stdout(&["run", "--rm", "--entrypoint", "id", &image.0]);
    assert_eq!(
        ids.trim(),
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
    );

    write_files(dir.path(), &[("dockception.toml", &manifest(""))]);
    let result = dockception(&["build", "--tag", &image.0], dir.path());
    let stderr = text(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: the runtime image runs as root: [runtime] user is not set and the base busybox:local sets no other user; set [runtime] user, e.g. user = \"65534:65534\" (nobody), unless it must be root"),
        "{stderr}"
    );
    let ids = docker_stdout(&["run", "--rm", "--entrypoint", "id", &image.0]);
    assert!(ids.starts_with("uid=0(root)"), "{ids}");
    // The dangling first image is this test's: clean it.
    let cleaned = dockception(&["clean"], dir.path());
    assert!(cleaned.status.success(), "{}", text(&cleaned.stderr));
}

#[test]
fn a_glob_matching_100_000_files_ships_them_all() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("many");
    let run = "mkdir -p /out/many && cd /out/many && busybox seq -w 1 100000 | busybox xargs busybox touch && echo x > /out/other";
    let manifest = format!(
        "[builder]\nimage = \"busybox:local\"\nrun = {run:?}\n\n[artifacts]\ninclude = [\"many/*\"]\n\n[runtime]\nuser = \"65534:65534\"\n"
    );
    write_files(dir.path(), &[("dockception.toml", &manifest)]);
    let image = TestImage::new("many");
    let result = dockception(
        &["build", "--tag", &image.0, "--format", "json", "-q"],
        dir.path(),
    );
    assert!(result.status.success(), "{}", text(&result.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&result.stdout).expect("JSON report");
    let report = &reports[0];
    let artifacts = report["artifacts"].as_array().expect("artifacts");
    assert_eq!(artifacts.len(), 100_000);
    assert_eq!(artifacts[0]["path"], "/many/000001");
    assert_eq!(report["unshipped_files"], 1);
    let (_, layers) = saved_image(&image.0);
    let files = layers
        .last()
        .expect("a layer")
        .iter()
        .filter(|e| e.path.starts_with(b"many/") && e.kind == tar::EntryType::Regular)
        .count();
    assert_eq!(files, 100_000);
}
