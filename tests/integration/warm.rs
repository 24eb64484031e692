//! `builder.warm` against the real Docker Engine: a rebuild runs in the same kept builder
//! container, a change of its configuration makes another one, a failing command is an ordinary
//! build failure, and `dockception clean` removes the kept container. Every test removes its
//! warm containers, whatever happens.

use std::path::Path;

use crate::support::*;

/// Removes the project's warm builder containers when dropped.
struct WarmContainers(String);

impl WarmContainers {
    fn of(dir: &Path) -> WarmContainers {
        WarmContainers(project_label(dir))
    }

    /// Their ids, any state.
    fn ids(&self) -> Vec<String> {
        let project = format!("label=dockception.project={}", self.0);
        docker_stdout(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            "label=dockception.warm",
            "--filter",
            &project,
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }
}

impl Drop for WarmContainers {
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = docker(&["rm", "-f", &id]);
        }
    }
}

fn manifest(run: &str, env: &str) -> String {
    manifest_warm(run, env, "60s")
}

fn manifest_warm(run: &str, env: &str, warm: &str) -> String {
    let warm = if warm.is_empty() {
        String::new()
    } else {
        format!("warm = \"{warm}\"")
    };
    format!(
        r#"
[builder]
image = "busybox:local"
run = "{run}"
{warm}
{env}

[[mount]]
source = "."
target = "/src"

[artifacts]
include = ["app"]

[runtime]
base = "busybox:local"
cmd = ["cat", "/app"]
"#
    )
}

fn build(dir: &Path, image: &TestImage) -> std::process::Output {
    dockception(&["build", "--tag", &image.0], dir)
}

#[test]
fn a_rebuild_runs_in_the_same_warm_container_until_its_configuration_changes() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("warm-rebuild");
    let run = "cp /src/msg /out/app; echo built";
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest(run, "")), ("msg", "one\n")],
    );
    let warm = WarmContainers::of(dir.path());
    let image = TestImage::new("warm");

    let first = build(dir.path(), &image);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        !text(&first.stderr).contains("fresh container"),
        "{}",
        text(&first.stderr)
    );
    let kept = warm.ids();
    assert_eq!(kept.len(), 1, "one warm builder is kept: {kept:?}");
    assert_eq!(docker_stdout(&["run", "--rm", &image.0]).trim(), "one");
    // Its output mount is the folder that stays, `.dockception/warm/output`; each build's
    // entries were moved out of it into the run's folder.
    let mounts = docker_stdout(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Source}}={{.Destination}};{{end}}",
        &kept[0],
    ]);
    let output = dir
        .path()
        .canonicalize()
        .expect("canonical")
        .join(".dockception/warm/output");
    assert!(
        mounts.contains(&format!("{}=/out;", output.display())),
        "{mounts}"
    );
    assert_eq!(
        std::fs::read_dir(&output)
            .expect("the warm output folder")
            .count(),
        0,
        "its entries moved into the run's folder"
    );

    write_files(dir.path(), &[("msg", "two\n")]);
    let second = build(dir.path(), &image);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(
        text(&second.stderr).contains("built"),
        "{}",
        text(&second.stderr)
    );
    assert!(
        !text(&second.stderr).contains("fresh container"),
        "{}",
        text(&second.stderr)
    );
    assert_eq!(warm.ids(), kept, "the rebuild ran in the same container");
    assert_eq!(docker_stdout(&["run", "--rm", &image.0]).trim(), "two");
    let running = docker_stdout(&["inspect", "-f", "{{.State.Running}}", &kept[0]]);
    assert_eq!(running.trim(), "true", "the warm builder still runs");

    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            &manifest(run, "env = { GREETING = \"hello\" }"),
        )],
    );
    let third = build(dir.path(), &image);
    assert!(third.status.success(), "{}", text(&third.stderr));
    let now = warm.ids();
    assert_eq!(
        now.len(),
        2,
        "a changed env makes another warm builder: {now:?}"
    );
    assert!(now.contains(&kept[0]), "{now:?}");
    assert_eq!(docker_stdout(&["run", "--rm", &image.0]).trim(), "two");
}

/// The line a build says when it leaves a warm builder running.
const STAYS_UP: &str = "stays up until 10m without a build, for a faster rebuild (`dockception ps` lists it, `dockception clean` stops it, [builder] warm = \"off\" turns this off)";

#[test]
fn by_default_the_builder_stays_warm_says_so_once_and_ps_lists_it() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("warm-default");
    write_files(
        dir.path(),
        &[
            (
                "dockception.toml",
                &manifest_warm("cp /src/msg /out/app", "", ""),
            ),
            ("msg", "one\n"),
        ],
    );
    let warm = WarmContainers::of(dir.path());
    let image = TestImage::new("warm-default");
    let first = build(dir.path(), &image);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let kept = warm.ids();
    assert_eq!(
        kept.len(),
        1,
        "the default keeps one warm builder: {kept:?}"
    );
    let name = docker_stdout(&["inspect", "-f", "{{.Name}}", &kept[0]]);
    let name = name.trim().trim_start_matches('/').to_string();
    let said: Vec<String> = text(&first.stderr)
        .lines()
        .filter(|l| l.contains(STAYS_UP))
        .map(str::to_string)
        .collect();
    assert_eq!(
        said,
        [format!("note: the builder container {name} {STAYS_UP}")],
        "{}",
        text(&first.stderr)
    );

    let listed = dockception(&["ps"], dir.path());
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let line = text(&listed.stdout)
        .lines()
        .find(|l| l.starts_with(&name))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("ps does not list {name}:\n{}", text(&listed.stdout)));
    assert!(
        line.contains("warm builder of target default (idle, ends after 10m without a build)")
            && line.contains(&project_label(dir.path()))
            && line.contains("busybox:local")
            && line.contains("Up "),
        "{line}"
    );

    // A rebuild runs in the same container and says nothing more about it.
    std::fs::write(dir.path().join("msg"), "two\n").expect("write");
    let second = build(dir.path(), &image);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(warm.ids(), kept, "the rebuild ran in the kept container");
    assert!(
        !text(&second.stderr).contains(STAYS_UP),
        "{}",
        text(&second.stderr)
    );
    let ran = docker_stdout(&["run", "--rm", &image.0]);
    assert_eq!(ran, "two\n");

    let cleaned = dockception(&["clean"], dir.path());
    assert!(cleaned.status.success(), "{}", text(&cleaned.stderr));
    assert_eq!(warm.ids(), Vec::<String>::new());
    let listed = dockception(&["ps"], dir.path());
    assert!(
        !text(&listed.stdout).contains(&name),
        "{}",
        text(&listed.stdout)
    );
}

#[test]
fn warm_off_runs_each_build_in_a_fresh_container_and_leaves_nothing() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("warm-off");
    write_files(
        dir.path(),
        &[
            (
                "dockception.toml",
                &manifest_warm("cp /src/msg /out/app", "", "off"),
            ),
            ("msg", "one\n"),
        ],
    );
    let planned = dockception(&["plan"], dir.path());
    assert!(
        text(&planned.stdout).contains("  warm      off: a fresh container each build"),
        "{}",
        text(&planned.stdout)
    );
    let image = TestImage::new("warm-off");
    let built = build(dir.path(), &image);
    assert!(built.status.success(), "{}", text(&built.stderr));
    assert!(!text(&built.stderr).contains(STAYS_UP));
    assert_eq!(all_containers_of(dir.path()), Vec::<String>::new());
}

#[test]
fn clean_removes_the_warm_container() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("warm-clean");
    write_files(
        dir.path(),
        &[
            ("dockception.toml", &manifest("cp /src/msg /out/app", "")),
            ("msg", "hi\n"),
        ],
    );
    let warm = WarmContainers::of(dir.path());
    let image = TestImage::new("warm-clean");
    let built = build(dir.path(), &image);
    assert!(built.status.success(), "{}", text(&built.stderr));
    let kept = warm.ids();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let name = docker_stdout(&["inspect", "-f", "{{.Name}}", &kept[0]]);
    let name = name.trim().trim_start_matches('/');
    assert!(name.starts_with("dockception-warm-"), "{name}");

    let cleaned = dockception(&["clean"], dir.path());
    assert!(cleaned.status.success(), "{}", text(&cleaned.stderr));
    assert!(
        text(&cleaned.stdout).contains(&format!("removed container {name}")),
        "stdout: {}\nstderr: {}",
        text(&cleaned.stdout),
        text(&cleaned.stderr)
    );
    assert_eq!(warm.ids(), Vec::<String>::new());
}

#[test]
fn a_failing_command_in_the_warm_container_is_an_ordinary_build_failure() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("warm-fail");
    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            &manifest("echo line-before-failure; exit 7", ""),
        )],
    );
    let warm = WarmContainers::of(dir.path());
    let image = TestImage::new("warm-fail");
    for attempt in ["a fresh warm container", "the kept one"] {
        let failed = build(dir.path(), &image);
        let stderr = text(&failed.stderr);
        assert_eq!(failed.status.code(), Some(7), "{attempt}: {stderr}");
        assert!(
            stderr.contains("the build command failed with exit status 7"),
            "{attempt}: {stderr}"
        );
        assert!(
            stderr.contains("line-before-failure"),
            "{attempt}: {stderr}"
        );
        assert!(!stderr.contains("fresh container"), "{attempt}: {stderr}");
        assert_eq!(warm.ids().len(), 1, "{attempt}");
    }
    assert!(!image_exists(&image.0));
    let runs = dir.path().join(".dockception/runs");
    let left = std::fs::read_dir(&runs).map(|r| r.count()).unwrap_or(0);
    assert_eq!(left, 0, "a failed run leaves no run folder");
}

/// A project whose build waits in its warm container for the file `signal/go`, after
/// writing `signal/started`.
fn busy_project(prefix: &str) -> Project {
    let dir = project(prefix);
    // The build waits for the test's go-ahead, so `clean` runs while it is in the container.
    let run = "touch /signal/started; i=0; until [ -f /signal/go ]; do i=$((i+1)); \
               [ $i -gt 600 ] && exit 9; sleep 0.1; done; cp /src/msg /out/app";
    let manifest = format!(
        "[builder]\nimage = \"busybox:local\"\nrun = {run:?}\nwarm = \"60s\"\n\n\
         [[mount]]\nsource = \"src\"\ntarget = \"/src\"\n\n\
         [[mount]]\nsource = \"signal\"\ntarget = \"/signal\"\nread_only = false\n\n\
         [artifacts]\ninclude = [\"app\"]\n\n[runtime]\nbase = \"busybox:local\"\ncmd = [\"cat\", \"/app\"]\n"
    );
    write_files(
        dir.path(),
        &[
            ("dockception.toml", &manifest),
            ("src/msg", "hi\n"),
            ("signal/go", ""),
        ],
    );
    dir
}

/// In a [`busy_project`] whose warm container a first build made (and ended), start another
/// build and wait until its command runs in that container, waiting for the go-ahead.
fn a_build_waiting_in_the_warm_container(dir: &Path, image: &TestImage) -> std::process::Child {
    let _ = std::fs::remove_file(dir.join("signal/go"));
    let _ = std::fs::remove_file(dir.join("signal/started"));
    let build = std::process::Command::new(env!("CARGO_BIN_EXE_dockception"))
        .args(["build", "--tag", &image.0])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the build starts");
    let started = dir.join("signal/started");
    for _ in 0..600 {
        if started.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(started.exists(), "the build never started its command");
    build
}

#[test]
fn clean_keeps_a_warm_container_while_a_build_runs_in_it() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = busy_project("warm-busy");
    let warm = WarmContainers::of(dir.path());
    let image = TestImage::new("warm-busy");
    // The first build makes the warm container and ends; the process that made it is gone.
    let first = build(dir.path(), &image);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let kept = warm.ids();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let second = a_build_waiting_in_the_warm_container(dir.path(), &image);

    let cleaned = dockception(&["clean"], dir.path());
    let said = format!("{}{}", text(&cleaned.stdout), text(&cleaned.stderr));
    assert!(cleaned.status.success(), "{said}");
    assert!(said.contains("a build is running in it"), "{said}");
    assert_eq!(warm.ids(), kept, "clean removed the warm builder in use");

    // A third build of the same target at the same time cannot have the warm builder: it
    // says so and runs in a fresh container, which goes when it is done.
    let third = Running::start(&["build", "--force", "--tag", &image.0], dir.path(), &[]);
    third.wait_for(
        "another dockception is building target default in its warm builder; this build runs in a fresh container",
        60,
    );
    // It makes the fresh container after the warning: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while all_containers_of(dir.path()).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no fresh container beside the warm one: {:?}\n{}",
            all_containers_of(dir.path()),
            third.stderr_so_far()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    std::fs::write(dir.path().join("signal/go"), "").expect("go");
    let (code, _, stderr) = third.finish(120);
    assert_eq!(code, Some(0), "{stderr}");
    let second = second.wait_with_output().expect("second build ends");
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(warm.ids(), kept, "the warm builder is kept");
    assert_eq!(
        all_containers_of(dir.path()).len(),
        1,
        "the fresh container is gone, the warm one stays"
    );
    assert_eq!(
        docker_stdout(&["run", "--rm", &image.0]).trim(),
        "hi",
        "the build that clean left alone made its image"
    );
}

#[test]
fn clean_force_removes_a_warm_container_even_while_a_build_runs_in_it() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = busy_project("warm-force");
    let warm = WarmContainers::of(dir.path());
    let image = TestImage::new("warm-force");
    let first = build(dir.path(), &image);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let kept = warm.ids();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let name = docker_stdout(&["inspect", "-f", "{{.Name}}", &kept[0]]);
    let name = name.trim().trim_start_matches('/').to_string();
    let second = a_build_waiting_in_the_warm_container(dir.path(), &image);

    let cleaned = dockception(&["clean", "--force"], dir.path());
    let said = format!("{}{}", text(&cleaned.stdout), text(&cleaned.stderr));
    assert!(cleaned.status.success(), "{said}");
    assert!(
        text(&cleaned.stdout).contains(&format!("removed container {name}")),
        "{said}"
    );
    assert_eq!(warm.ids(), Vec::<String>::new(), "{said}");

    // The build that was running there ends (its command was killed with the container, or
    // it ran again in a fresh container) and leaves nothing on the engine.
    std::fs::write(dir.path().join("signal/go"), "").expect("go");
    second.wait_with_output().expect("the build ends");
    assert_eq!(warm.ids(), Vec::<String>::new());
    assert_eq!(all_containers_of(dir.path()), Vec::<String>::new());
}

#[test]
fn a_builder_image_without_bin_sh_builds_in_a_fresh_container_with_a_warning() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    // A builder image holding busybox alone: no /bin/sh for the warm container's idle loop.
    let dir = project("warm-nosh");
    let busybox = docker(&["run", "--rm", "busybox:local", "cat", "/bin/busybox"]);
    assert!(busybox.status.success(), "{}", text(&busybox.stderr));
    let tar = dir.path().join("rootfs.tar");
    let mut rootfs = tar::Builder::new(std::fs::File::create(&tar).expect("create"));
    let mut header = tar::Header::new_gnu();
    header.set_size(busybox.stdout.len() as u64);
    header.set_mode(0o755);
    rootfs
        .append_data(&mut header, "bin/busybox", busybox.stdout.as_slice())
        .expect("append");
    rootfs.finish().expect("tar");
    let builder = TestImage::new("warm-nosh-builder");
    docker_stdout(&["import", &tar.to_string_lossy(), &builder.0]);
    let manifest = format!(
        "[builder]\nimage = \"{}\"\nrun = [\"/bin/busybox\", \"cp\", \"/src/msg\", \"/out/app\"]\nwarm = \"60s\"\n\n\
         [[mount]]\nsource = \"src\"\ntarget = \"/src\"\n\n\
         [artifacts]\ninclude = [\"app\"]\n\n[runtime]\nbase = \"busybox:local\"\ncmd = [\"cat\", \"/app\"]\n",
        builder.0
    );
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest), ("src/msg", "hi\n")],
    );
    let warm = WarmContainers::of(dir.path());
    let image = TestImage::new("warm-nosh");
    let built = build(dir.path(), &image);
    let stderr = text(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "warning: target default: no warm builder (it could not start (it runs /bin/sh, which the builder image needs)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("this build runs in a fresh container"),
        "{stderr}"
    );
    assert_eq!(docker_stdout(&["run", "--rm", &image.0]).trim(), "hi");
    assert_eq!(
        warm.ids(),
        Vec::<String>::new(),
        "no warm container is left"
    );
    assert_eq!(all_containers_of(dir.path()), Vec::<String>::new());
}

/// `docker events` of the project's warm builders so far: (event, time in ns).
fn warm_events(warm: &WarmContainers, since: &str) -> Vec<(String, u128)> {
    let until = format!("{}", now_secs() + 1);
    docker_stdout(&[
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--filter",
        &format!("label=dockception.project={}", warm.0),
        "--filter",
        "label=dockception.warm",
        "--format",
        "{{.Action}} {{.TimeNano}}",
    ])
    .lines()
    .filter_map(|l| {
        let (action, time) = l.rsplit_once(' ')?;
        Some((action.to_string(), time.parse().ok()?))
    })
    .collect()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[test]
fn a_warm_builder_removes_itself_once_idle() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("warm-idle");
    write_files(
        dir.path(),
        &[
            (
                "dockception.toml",
                &manifest_warm("cp /src/msg /out/app", "", "2s"),
            ),
            ("msg", "hi\n"),
        ],
    );
    let warm = WarmContainers::of(dir.path());
    let since = format!("{}", now_secs().saturating_sub(1));
    let image = TestImage::new("warm-idle");
    let built = build(dir.path(), &image);
    assert!(built.status.success(), "{}", text(&built.stderr));
    // The condition: no warm builder of the project is left (any state), within a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !warm.ids().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle warm builder is still there after 60 s: {:?}",
            warm.ids()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // It was made, the build ran in it, and it ended by itself at least 2 s after the
    // command wrote its output (the file's time; the build reaches it through its channel,
    // which the engine's events do not show).
    let written = std::fs::metadata(dir.path().join(".dockception/last/app"))
        .and_then(|m| m.modified())
        .expect("the artifact's time")
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_nanos();
    let events = warm_events(&warm, &since);
    let at = |action: &str| {
        events
            .iter()
            .rev()
            .find(|(a, _)| a.starts_with(action))
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("no {action} event in {events:?}"))
    };
    let died = at("die");
    assert!(at("create") < written, "{events:?} {written}");
    assert!(
        died >= written + 2_000_000_000,
        "it ended less than 2 s after the build: {events:?} {written}"
    );
    at("destroy");
}

#[test]
fn an_interrupted_build_removes_the_warm_container_it_ran_in() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("warm-int");
    write_files(
        dir.path(),
        &[("dockception.toml", &manifest("echo started; sleep 120", ""))],
    );
    let warm = WarmContainers::of(dir.path());
    let image = TestImage::new("warm-int");
    let build = Running::start(&["build", "--tag", &image.0], dir.path(), &[]);
    build.wait_for("| started", 120);
    assert_eq!(warm.ids().len(), 1, "the build runs in a warm builder");
    build.signal(rustix::process::Signal::INT);
    let (code, _, stderr) = build.finish(60);
    assert_eq!(code, Some(130), "{stderr}");
    assert_eq!(warm.ids(), Vec::<String>::new(), "{stderr}");
    assert_eq!(all_containers_of(dir.path()), Vec::<String>::new());
}

#[test]
fn env_from_host_reaches_each_exec_and_never_the_warm_containers_config() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("warm-env");
    write_files(
        dir.path(),
        &[(
            "dockception.toml",
            &manifest(
                "echo $DCPT_WARM_TOKEN > /out/app",
                "env_from_host = [\"DCPT_WARM_TOKEN\"]",
            ),
        )],
    );
    let warm = WarmContainers::of(dir.path());
    let image = TestImage::new("warm-env");
    let mut kept = Vec::new();
    for round in ["first", "second"] {
        let token = unique_token(round);
        let run = Running::start(
            &["build", "--force", "--tag", &image.0],
            dir.path(),
            &[("DCPT_WARM_TOKEN", &token)],
        );
        let (code, _, stderr) = run.finish(120);
        assert_eq!(code, Some(0), "{stderr}");
        // This exec saw this build's value.
        assert_eq!(docker_stdout(&["run", "--rm", &image.0]).trim(), token);
        let ids = warm.ids();
        assert_eq!(ids.len(), 1, "{ids:?}");
        if kept.is_empty() {
            kept = ids.clone();
        }
        assert_eq!(ids, kept, "both builds ran in the same warm builder");
        let config = docker_stdout(&["inspect", &ids[0]]);
        assert!(
            !config.contains(&token),
            "the value is in the container's config"
        );
        assert!(!config.contains("DCPT_WARM_TOKEN"), "{config}");
    }
}

#[test]
fn a_rebuild_in_the_warm_builder_goes_through_its_channel_not_an_exec() {
    if !engine_with(&["busybox:local"]) {
        return;
    }
    let dir = project("warm-channel");
    let run = "cp /src/msg /out/app; echo \\\"built $(cat /src/msg) in $(pwd) with $GREETING\\\"; test ! -e /src/fail || { echo failing; exit 5; }";
    write_files(
        dir.path(),
        &[
            (
                "dockception.toml",
                &manifest(
                    run,
                    "workdir = \"/src\"\nenv = { GREETING = \"it's \\\"quoted\\\"\" }",
                ),
            ),
            ("msg", "one\n"),
        ],
    );
    let warm = WarmContainers::of(dir.path());
    let image = TestImage::new("warm-channel");
    // The first build makes the warm builder (its channel may not be served yet).
    let first = build(dir.path(), &image);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let kept = warm.ids();
    assert_eq!(kept.len(), 1, "{kept:?}");

    let proxy = EngineProxy::start(None);
    let through_proxy = || {
        proxy.dockception(
            &["build", "--tag", &image.0, "--progress", "plain"],
            dir.path(),
        )
    };
    write_files(dir.path(), &[("msg", "two\n")]);
    let (second, requests) = through_proxy();
    let stderr = text(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(
        stderr.contains("built two in /src with it's \"quoted\""),
        "the command's output, with its folder and variables: {stderr}"
    );
    assert!(
        !requests.iter().any(|r| r.contains("/exec")),
        "no exec: {requests:?}"
    );
    assert_eq!(warm.ids(), kept, "the rebuild ran in the same container");
    assert_eq!(docker_stdout(&["run", "--rm", &image.0]).trim(), "two");

    // A failing command through the channel is an ordinary build failure with its status.
    write_files(dir.path(), &[("msg", "three\n"), ("fail", "")]);
    let (third, requests) = through_proxy();
    let stderr = text(&third.stderr);
    assert_eq!(third.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("the build command failed with exit status 5"),
        "{stderr}"
    );
    assert!(stderr.contains("failing"), "{stderr}");
    assert!(
        !requests.iter().any(|r| r.contains("/exec")),
        "no exec: {requests:?}"
    );
    assert_eq!(docker_stdout(&["run", "--rm", &image.0]).trim(), "two");

    // With nobody reading its requests (the server ended), a build takes `docker exec`.
    docker_stdout(&[
        "exec",
        &kept[0],
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' < $p/cmdline)\" = '/bin/sh -s ' ] && kill ${p#/proc/}; done; true",
    ]);
    std::fs::remove_file(dir.path().join("fail")).expect("remove");
    write_files(dir.path(), &[("msg", "four\n")]);
    let (fourth, requests) = through_proxy();
    let stderr = text(&fourth.stderr);
    assert!(fourth.status.success(), "{stderr}");
    assert!(stderr.contains("built four in /src"), "{stderr}");
    assert!(
        requests.iter().any(|r| r.contains("/exec")),
        "an exec: {requests:?}"
    );
    assert_eq!(warm.ids(), kept, "still the same container");
    assert_eq!(docker_stdout(&["run", "--rm", &image.0]).trim(), "four");

    // The channel's folder is the owner's only, named like the container.
    let channels = dir.path().join(".dockception/warm/channel");
    let folders: Vec<_> = std::fs::read_dir(&channels)
        .expect("the channel folders")
        .map(|e| e.expect("an entry").path())
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    let name = docker_stdout(&["inspect", "-f", "{{.Name}}", &kept[0]]);
    let hash = folders[0].file_name().expect("a name").to_string_lossy();
    assert!(name.trim().ends_with(&*hash), "{name} {hash}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&folders[0])
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}
