//! Podman (Debian's podman 4.3) through its Docker-compatible API, rootful: each test starts
//! `podman system service` on a socket in its own folder and points dockception at it with
//! `DOCKER_HOST`, as a user would. The podman CLI (same storage) is the independent observer;
//! the docker CLI is pointed at the service only to `docker load` an archive through it.
//! `scripts/engine.sh podman` installs Podman, sets the ulimits its containers need here and
//! copies the local images into its storage.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// The local images the Podman tests build with; `scripts/engine.sh podman` copies them.
const IMAGES: [&str; 3] = ["busybox:local", "gcc:local", "debian-minimal:local"];

/// Whether Podman can serve here: root (its tests run it rootful), the podman CLI, and the
/// local images in its storage. Without them the test is skipped with a printed reason, but
/// fails under `CI=true`.
fn podman_possible() -> bool {
    if !tools(&["podman"]) {
        return false;
    }
    let problem = if !rustix::process::geteuid().is_root() {
        Some("Podman's tests run it rootful, which needs root".to_string())
    } else {
        IMAGES
            .iter()
            .find(|image| !podman(&["image", "exists", image]).status.success())
            .map(|image| format!("Podman's storage lacks the local image {image}"))
    };
    match problem {
        None => true,
        Some(problem) if in_ci() => {
            panic!("CI=true and {problem}; run scripts/engine.sh podman before the tests")
        }
        Some(problem) => {
            eprintln!("SKIPPED: {problem} (run scripts/engine.sh podman as root)");
            false
        }
    }
}

/// The podman CLI, an observer of the storage the service uses.
fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("the podman CLI runs")
}

fn podman_stdout(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `podman system service` on a socket in a folder of its own. On drop, what the test's
/// projects left in Podman (containers, volumes, images) and the tags it made are removed, and
/// the service is stopped.
struct PodmanService {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `unix://` address of the service's socket, for `DOCKER_HOST`.
    host: String,
    /// The test's project folders (removed after their leftovers) and their project labels.
    projects: Vec<(Project, String)>,
    tags: Vec<String>,
}

impl PodmanService {
    /// Start the service; waits until its socket answers a ping.
    fn start() -> PodmanService {
        // Short: a socket path must fit in 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("dcpt-pm-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let socket = dir.path().join("podman.sock");
        let host = format!("unix://{}", socket.display());
        let log = std::fs::File::create(dir.path().join("service.log")).expect("log");
        let child = Command::new("podman")
            .args(["system", "service", "--time=0", &host])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("podman runs");
        let mut service = PodmanService {
            dir,
            child: Some(child),
            host,
            projects: Vec::new(),
            tags: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pings(&socket) {
            let exited = service
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                Instant::now() < deadline && exited.is_none(),
                "podman system service did not answer at {}; its log:\n{}",
                service.host,
                std::fs::read_to_string(service.dir.path().join("service.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }

    /// A project folder holding `files`; it and its leftovers in Podman go with the service.
    fn project(&mut self, prefix: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = project(prefix);
        write_files(dir.path(), files);
        let label = project_label(dir.path());
        let path = dir.path().to_path_buf();
        self.projects.push((dir, label));
        path
    }

    /// What Podman holds of the project folder `dir`, one of [`PodmanService::project`]'s.
    fn things_of(&self, dir: &Path) -> Vec<String> {
        let (_, label) = self
            .projects
            .iter()
            .find(|(d, _)| d.path() == dir)
            .expect("a project of this service");
        podman_things_of(dir, label)
    }

    /// A tag unique to this test, removed with the service.
    fn tag(&mut self, name: &str) -> String {
        let tag = format!("dockception-test/{}:latest", unique_token(name));
        self.tags.push(tag.clone());
        tag
    }

    /// dockception with `args` in `dir`, pointed at this service by `DOCKER_HOST` alone.
    fn dockception(&self, args: &[&str], dir: &Path) -> Output {
        self.command(args, dir).output().expect("dockception runs")
    }

    fn command(&self, args: &[&str], dir: &Path) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .env("DOCKER_HOST", &self.host)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY");
        command
    }

    /// The docker CLI, talking to this service.
    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env_remove("DOCKER_CONTEXT")
            .output()
            .expect("the docker CLI runs")
    }
}

/// Whether a Docker API answers `GET /_ping` on the unix socket at `path`.
fn pings(path: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(path) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.contains(" 200 ") && answer.ends_with("OK")
}

/// What Podman holds of the project folder `dir` (labelled `label`): containers and volumes
/// with its project label, and the images its builds loaded (those name no project).
fn podman_things_of(dir: &Path, label: &str) -> Vec<String> {
    let filter = format!("label=dockception.project={label}");
    let mut things: Vec<String> = Vec::new();
    for (kind, list) in [
        ("container", &["ps", "-a"][..]),
        ("volume", &["volume", "ls"]),
    ] {
        let mut args = list.to_vec();
        args.extend(["-q", "--filter", &filter]);
        let out = podman(&args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            text(&out.stderr)
        );
        things.extend(
            text(&out.stdout)
                .lines()
                .map(|line| format!("{kind} {line}")),
        );
    }
    let loaded =
        std::fs::read_to_string(dir.join(".dockception/loaded-images")).unwrap_or_default();
    for id in loaded.lines().filter(|l| l.starts_with("sha256:")) {
        if podman(&["image", "exists", id]).status.success() {
            things.push(format!("image {id}"));
        }
    }
    things
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        for tag in &self.tags {
            let _ = podman(&["rmi", tag]);
        }
        for (dir, label) in &self.projects {
            let things = std::panic::catch_unwind(|| podman_things_of(dir.path(), label));
            for thing in things.unwrap_or_default() {
                let (kind, id) = thing.split_once(' ').unwrap_or_default();
                let _ = match kind {
                    "container" => podman(&["rm", "-f", id]),
                    "volume" => podman(&["volume", "rm", "-f", id]),
                    // An image the test loaded goes only when no tag names it any more: the
                    // same bytes may be someone else's image too.
                    _ => podman(&["rmi", id]),
                };
            }
        }
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// examples/hello-c's manifest and source in a project folder of `service`.
fn hello_c(service: &mut PodmanService, name: &str) -> PathBuf {
    let example = repo().join("examples/hello-c");
    let manifest = std::fs::read_to_string(example.join("dockception.toml")).expect("manifest");
    let source = std::fs::read_to_string(example.join("src/hello.c")).expect("hello.c");
    service.project(
        name,
        &[("dockception.toml", &manifest), ("src/hello.c", &source)],
    )
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    reports[0].clone()
}

#[test]
fn hello_c_builds_on_scratch_and_on_busybox_through_podman() {
    if !podman_possible() {
        return;
    }
    let mut service = PodmanService::start();
    let dir = hello_c(&mut service, "pm-hello");
    let scratch = service.tag("hello-scratch");
    let out = service.dockception(&["build", "--tag", &scratch, "--format", "json"], &dir);
    let report = json_of(&out);
    assert_eq!(
        podman_stdout(&["run", "--rm", &scratch]).trim(),
        "Hello, world! (C, static, on scratch)"
    );
    assert_eq!(report["delivered"][0]["to"], "engine");

    // On busybox, the base is exported from Podman (its own save layout) into the blob store,
    // and loaded with the image: Podman's load wants every layer, the base's too.
    let manifest = std::fs::read_to_string(dir.join("dockception.toml")).expect("read");
    let manifest = manifest.replace("base       = \"scratch\"", "base = \"busybox:local\"");
    assert!(manifest.contains("base = \"busybox:local\""), "{manifest}");
    std::fs::write(dir.join("dockception.toml"), manifest).expect("write");
    let busybox = service.tag("hello-busybox");
    let out = service.dockception(&["build", "--tag", &busybox, "--format", "json"], &dir);
    let report = json_of(&out);
    assert_eq!(
        podman_stdout(&["run", "--rm", &busybox]).trim(),
        "Hello, world! (C, static, on scratch)"
    );
    let listed = podman_stdout(&["run", "--rm", "--entrypoint", "/bin/ls", &busybox, "/"]);
    for path in ["bin", "hello"] {
        assert!(listed.lines().any(|l| l == path), "{listed}");
    }
    assert_eq!(report["base"]["image"], "busybox:local");
    assert_eq!(
        report["layers"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    let delivered = &report["delivered"][0];
    assert_eq!(delivered["skipped_bytes"], 0, "{delivered}");
    let base_gzip = report["layers"][0]["gzip_bytes"]
        .as_u64()
        .expect("the base layer's gzip bytes");
    assert!(
        delivered["sent_bytes"].as_u64().expect("sent") > base_gzip,
        "the base's layer is sent: {delivered}"
    );

    // The report of the last build, and of the image as Podman exports it.
    let out = service.dockception(&["report"], &dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let last = text(&out.stdout);
    assert!(last.contains("base image busybox:local"), "{last}");
    let out = service.dockception(&["report", "--current", &busybox], &dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let measured = text(&out.stdout);
    assert!(measured.contains("/hello"), "{measured}");
    assert!(measured.contains("base image busybox:local"), "{measured}");

    // The archive `--output type=docker` writes loads through Podman's /images/load.
    let archive = dir.join("image.tar");
    let loaded = service.tag("hello-archive");
    let dest = format!("type=docker,dest={}", archive.display());
    let out = service.dockception(
        &[
            "build", "-q", "--force", "--tag", &loaded, "--output", &dest,
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = service.docker(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        podman_stdout(&["run", "--rm", &loaded]).trim(),
        "Hello, world! (C, static, on scratch)"
    );
    // Only the warm builder stays, on purpose (`[builder] warm` is on by default).
    let warm = podman(&[
        "ps",
        "-aq",
        "--filter",
        "label=dockception.warm",
        "--filter",
        &format!("label=dockception.project={}", project_label(&dir)),
    ]);
    let warm: Vec<String> = text(&warm.stdout)
        .lines()
        .map(|id| format!("container {id}"))
        .collect();
    assert_eq!(warm.len(), 1, "one warm builder: {warm:?}");
    let containers: Vec<String> = service
        .things_of(&dir)
        .into_iter()
        .filter(|t| t.starts_with("container ") && !warm.contains(t))
        .collect();
    assert!(containers.is_empty(), "left behind: {containers:?}");
}

#[test]
fn runtime_steps_install_a_package_through_podman() {
    if !podman_possible() {
        return;
    }
    let mut service = PodmanService::start();
    let example = repo().join("examples/clean-install");
    let files: Vec<(&str, String)> = ["dockception.toml", "src/greet.c", "debian/control"]
        .into_iter()
        .map(|f| {
            (
                f,
                std::fs::read_to_string(example.join(f)).expect("example file"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(f, c)| (*f, c.as_str())).collect();
    let dir = service.project("pm-steps", &files);
    let tag = service.tag("steps");
    let out = service.dockception(&["build", "--tag", &tag, "--format", "json"], &dir);
    let report = json_of(&out);
    assert!(
        text(&out.stderr).contains("Setting up greet (1.0.0)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        podman_stdout(&["run", "--rm", &tag]).trim(),
        "installed from a .deb that no layer of this image holds"
    );
    // The installed program is there; the .deb and the artifacts' mount point are not.
    podman_stdout(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &tag,
        "-c",
        "test -x /usr/bin/greet && test ! -e /artifacts && test -z \"$(find / -xdev -name '*.deb')\"",
    ]);
    let roles: Vec<&str> = report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["role"].as_str().expect("role"))
        .collect();
    assert_eq!(
        roles.len(),
        2,
        "the base's layer and the steps' one: {roles:?}"
    );
    assert_eq!(roles[0], "base");
}

#[test]
fn shared_libraries_are_found_on_debian_minimal_and_copied_to_scratch_through_podman() {
    if !podman_possible() {
        return;
    }
    let mut service = PodmanService::start();
    let program = "#include <math.h>\n#include <stdio.h>\nint main(int argc, char **argv) {\n    printf(\"Hello from C! sqrt(16) = %.0f\\n\", sqrt(16.0 * argc));\n    return 0;\n}\n";
    let manifest = |runtime: &str| {
        format!("[builder]\nimage = \"gcc:local\"\nworkdir = \"/src\"\nrun = \"gcc -O2 -o /out/hello hello.c -lm\"\n\n[[mount]]\nsource = \"src\"\ntarget = \"/src\"\n\n[artifacts]\ninclude = [\"hello\"]\n\n[runtime]\nentrypoint = [\"/hello\"]\n{runtime}\n")
    };
    let dynamic = |report: &serde_json::Value| {
        let libs = &report["libs"];
        assert_eq!(libs["elf_artifacts"][0]["path"], "/hello", "{libs}");
        assert_eq!(libs["elf_artifacts"][0]["linking"], "dynamic", "{libs}");
        libs["added"]
            .as_array()
            .map(|added| {
                added
                    .iter()
                    .map(|a| a["path"].as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };

    // On debian-minimal the base has glibc: found there (its files read through Podman).
    let dir = service.project(
        "pm-libs",
        &[
            (
                "dockception.toml",
                &manifest("base = \"debian-minimal:local\""),
            ),
            ("src/hello.c", program),
        ],
    );
    let on_debian = service.tag("libs-debian");
    let out = service.dockception(&["build", "--tag", &on_debian, "--format", "json"], &dir);
    assert_eq!(dynamic(&json_of(&out)), Vec::<String>::new());
    assert_eq!(
        podman_stdout(&["run", "--rm", &on_debian]).trim(),
        "Hello from C! sqrt(16) = 4"
    );

    // On scratch with libs = "auto" they come from the builder gcc:local.
    write_files(&dir, &[("dockception.toml", &manifest("libs = \"auto\""))]);
    let on_scratch = service.tag("libs-scratch");
    let out = service.dockception(&["build", "--tag", &on_scratch, "--format", "json"], &dir);
    assert_eq!(
        dynamic(&json_of(&out)),
        [
            "/lib64/ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/lib/x86_64-linux-gnu/libc.so.6"
        ]
    );
    assert_eq!(
        podman_stdout(&["run", "--rm", &on_scratch]).trim(),
        "Hello from C! sqrt(16) = 4"
    );
}

#[test]
fn clean_removes_what_builds_left_in_podman() {
    if !podman_possible() {
        return;
    }
    let mut service = PodmanService::start();
    // Fresh containers: a killed run's command would go on in a warm builder, which `clean`
    // keeps while a build runs in it.
    let manifest = "[vars]\nRUN = \"echo started; sleep 300\"\n\n[builder]\nimage = \"busybox:local\"\nrun = \"${RUN}\"\nwarm = \"off\"\n\n[[cache]]\ntarget = \"/cache\"\n\n[artifacts]\ninclude = [\"app\"]\n";
    let dir = service.project("pm-clean", &[("dockception.toml", manifest)]);
    let tag = service.tag("clean");

    // Two builds of one tag: the first image is left untagged (dangling). Their content is
    // this run's own, so no other image has their ids.
    let token = unique_token("clean");
    let mut ids = Vec::new();
    for n in ["one", "two"] {
        let set = format!("RUN=echo {n} {token} > /out/app");
        let out = service.dockception(
            &["build", "--tag", &tag, "--set", &set, "--format", "json"],
            &dir,
        );
        ids.push(json_of(&out)["image_id"].as_str().expect("id").to_string());
    }
    let dangling = podman_stdout(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]);
    assert!(
        dangling
            .lines()
            .any(|l| ids[0].ends_with(l.trim_start_matches("sha256:"))),
        "{} is not dangling: {dangling}",
        ids[0]
    );

    // A build killed outright, as a crash would: its builder container stays.
    let mut command = service.command(&["build", "--tag", &tag], &dir);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let build = Running::spawn(command);
    build.wait_for("| started", 120);
    let mut build = build;
    build.child.kill().expect("kill");
    let (code, _, _) = build.finish(30);
    assert_eq!(code, None, "it was killed");
    let before = service.things_of(&dir);
    assert!(
        before.iter().any(|t| t.starts_with("container ")),
        "{before:?}"
    );
    assert!(
        before.iter().any(|t| t.starts_with("volume ")),
        "{before:?}"
    );

    // clean --caches finds all of it through Podman's filters and labels.
    let out = service.dockception(&["clean", "--caches"], &dir);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for expected in [
        "removed container dockception-build-".to_string(),
        format!("removed image {}", ids[0]),
        format!(
            "removed cache volume dockception-{}-cache",
            project_label(&dir)
        ),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} in:\n{stdout}");
    }
    // What is left is the tagged image alone; it goes with the tag.
    assert_eq!(
        service.things_of(&dir),
        [format!("image {}", ids[1])],
        "left behind in Podman"
    );
    let _ = podman(&["rmi", &tag]);
    assert_eq!(service.things_of(&dir), Vec::<String>::new());
}
