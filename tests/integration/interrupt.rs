//! Ctrl-C and SIGTERM at every phase of a build, against the real engine: pulling the builder,
//! running it, selecting the artifacts, building the runtime image. Each time the process
//! exits 130 (143 for SIGTERM), no container of the run is left, its run folder is gone and no
//! image of it is tagged; a second Ctrl-C exits at once and names what it left.

use std::path::Path;
use std::time::Duration;

use crate::support::*;
use rustix::process::Signal;

fn manifest(builder: &str, run: &str, include: &str) -> String {
    format!(
        r#"
[builder]
image = "{builder}"
run = {run:?}

[artifacts]
include = [{include:?}]
"#
    )
}

/// After an interrupt: nothing of the run is left on the engine or on disk. Only the warm
/// builder stays (`[builder] warm` is on by default), and only once the build command has
/// ended in it: an interrupt while the command runs removes it too.
fn assert_left_nothing(dir: &Path, image: &TestImage, command_ended: bool) {
    assert_eq!(containers_of(dir), Vec::<String>::new(), "containers left");
    if !command_ended {
        assert_eq!(
            warm_builders_of(dir),
            Vec::<String>::new(),
            "the warm builder the command ran in is left"
        );
    }
    assert_eq!(images_of(dir), Vec::<String>::new(), "images left");
    assert!(!image_exists(&image.0), "an image was tagged");
    let runs = dir.join(".dockception/runs");
    if runs.exists() {
        let left: Vec<_> = std::fs::read_dir(&runs)
            .expect("runs")
            .map(|e| e.expect("entry").path())
            .collect();
        assert!(left.is_empty(), "run folders left: {left:?}");
    }
    assert!(!dir.join(".dockception/last").exists());
}

/// Interrupt `dockception build` once stderr shows `when`, with `signal`; return its stderr.
fn interrupt_at(
    dir: &Path,
    when: &str,
    signal: Signal,
    status: i32,
    command_ended: bool,
) -> String {
    let image = TestImage::new("interrupted");
    let build = Running::start(&["build", "--tag", &image.0], dir, &[]);
    build.wait_for(when, 120);
    build.signal(signal);
    let (code, _, stderr) = build.finish(60);
    assert_eq!(code, Some(status), "{stderr}");
    let name = if status == 130 { "SIGINT" } else { "SIGTERM" };
    assert!(
        stderr.contains(&format!("error: interrupted by {name}")),
        "{stderr}"
    );
    assert_left_nothing(dir, &image, command_ended);
    stderr
}

/// A "registry" that accepts connections and never answers, so a pull hangs until interrupted.
struct StallingRegistry {
    address: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallingRegistry {
    fn start() -> StallingRegistry {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address").to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((stream, _)) = listener.accept() {
                    held.push(stream);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        StallingRegistry { address, stop }
    }
}

impl Drop for StallingRegistry {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn ctrl_c_while_pulling_the_builder() {
    if !engine_with(&[]) {
        return;
    }
    let registry = StallingRegistry::start();
    let builder = format!("{}/dockception-test/stalled:never", registry.address);
    let dir = project("int-pull");
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest(&builder, "true", "app"))],
    );
    let stderr = interrupt_at(
        dir.path(),
        "is not present locally; pulling it",
        Signal::INT,
        130,
        false,
    );
    assert!(!stderr.contains("==> building in"), "{stderr}");
    assert!(!image_exists(&builder));
}

#[test]
fn sigterm_while_the_builder_runs() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("int-build");
    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            &manifest("busybox:local", "echo started; sleep 120", "app"),
        )],
    );
    interrupt_at(dir.path(), "| started", Signal::TERM, 143, false);
}

#[test]
fn ctrl_c_while_selecting_artifacts() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("int-collect");
    // 150,000 files take the walk long enough to be interrupted in the middle.
    let run =
        "mkdir -p /out/many && cd /out/many && busybox seq 1 150000 | busybox xargs busybox touch";
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest("busybox:local", run, "many"))],
    );
    let stderr = interrupt_at(
        dir.path(),
        "==> selecting artifacts",
        Signal::INT,
        130,
        true,
    );
    assert!(
        !stderr.contains("==> building the runtime image"),
        "the walk ended before the signal:\n{stderr}"
    );
}

#[test]
fn ctrl_c_while_building_the_runtime_image() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("int-image");
    // A 400 MB artifact keeps the engine busy receiving the context.
    let run = "busybox dd if=/dev/zero of=/out/big bs=1M count=400 2>/dev/null";
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest("busybox:local", run, "big"))],
    );
    let stderr = interrupt_at(
        dir.path(),
        "==> building the runtime image on",
        Signal::INT,
        130,
        true,
    );
    assert!(!stderr.contains("tagged"), "{stderr}");
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_names_what_is_left() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("int-twice");
    let _left = ContainersOf(dir.path().to_path_buf());
    // A fresh container: a warm builder left with the killed run's command still running in it
    // is kept by `clean` until that command ends (or `--force`), as a build in use.
    let fresh = manifest("busybox:local", "echo started; sleep 120", "app")
        .replace("[builder]\n", "[builder]\nwarm = \"off\"\n");
    write_files(dir.path(), &[("dockception.toml", &fresh)]);
    // The build reaches the engine through a proxy that is frozen once the builder runs: the
    // removal the first Ctrl-C asks for never arrives, so the container is certainly left.
    let proxy = EngineProxy::start(None);
    let build = Running::start(&["build"], dir.path(), &[("DOCKER_HOST", &proxy.host)]);
    build.wait_for("| started", 120);
    proxy.freeze();
    build.signal(Signal::INT);
    build.wait_for("SIGINT received: cleaning up", 30);
    build.signal(Signal::INT);
    let (code, _, stderr) = build.finish(60);
    drop(proxy);
    assert_eq!(code, Some(130), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("exiting without cleanup; left behind: "))
        .unwrap_or_else(|| panic!("no left-behind line in:\n{stderr}"));
    let left = all_containers_of(dir.path());
    assert_eq!(left.len(), 1, "{left:?}");
    let name = left[0].split(' ').next().expect("a name");
    assert!(
        line.contains(&format!("container {name}")),
        "{line} does not name {name}"
    );
    assert!(line.contains("`dockception clean` removes them"), "{line}");

    // And the hint is true: clean (straight to the engine) removes it, since its dockception
    // process is gone.
    let cleaned = dockception(&["clean"], dir.path());
    assert!(cleaned.status.success(), "{}", text(&cleaned.stderr));
    let stdout = text(&cleaned.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l == format!("removed container {name}")),
        "{stdout}"
    );
    assert_eq!(all_containers_of(dir.path()), Vec::<String>::new());
}
