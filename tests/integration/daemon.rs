//! The Docker Engine goes away in the middle of a build: dockception ends with one clear error
//! and a hint instead of hanging, removes what it can (its run folder), names what it could
//! not (the builder container), and `dockception clean` removes that once the engine is back.
//!
//! Other builds use the machine's shared engine at the same time, so this test never touches
//! it: it starts a private dockerd (own data root, exec root, pid file, socket and bridge),
//! loads busybox:local into it, kills it mid-build with SIGKILL, restarts it, and stops and
//! removes it at the end. That needs root; elsewhere the test is skipped (it fails under CI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// A dockerd of this test's own, removed (with its bridge and files) on drop.
struct PrivateDaemon {
    dir: PathBuf,
    bridge: String,
    child: Option<Child>,
    host: String,
}

impl PrivateDaemon {
    fn start() -> PrivateDaemon {
        let tag = format!(
            "{:x}",
            (std::process::id() as u128
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0))
                & 0xff_ffff
        );
        // Short paths: a unix socket path must fit in 108 bytes, a bridge name in 15.
        let dir = PathBuf::from(format!("/tmp/dcpt-dockerd-{tag}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("daemon.json"), "{}").expect("write daemon.json");
        let bridge = format!("dcpt{tag}");
        // Its own bridge: started without one (`--bridge=none`), dockerd deletes the host's
        // docker0, which the shared engine needs.
        let octet = 16 + (std::process::id() % 200);
        run_ok(Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]));
        let mut daemon = PrivateDaemon {
            host: format!("unix://{}", dir.join("docker.sock").display()),
            dir,
            bridge,
            child: None,
        };
        run_ok(Command::new("ip").args([
            "addr",
            "add",
            &format!("10.213.{octet}.1/24"),
            "dev",
            &daemon.bridge,
        ]));
        run_ok(Command::new("ip").args(["link", "set", &daemon.bridge, "up"]));
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let d = &self.dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .expect("log file");
        let child = Command::new("dockerd")
            .arg(format!("--config-file={}", d.join("daemon.json").display()))
            .arg(format!("--data-root={}", d.join("data").display()))
            .arg(format!("--exec-root={}", d.join("exec").display()))
            .arg(format!("--pidfile={}", d.join("docker.pid").display()))
            .arg(format!("--host={}", self.host))
            .arg(format!("--bridge={}", self.bridge))
            .arg(format!("--cgroup-parent=/{}", self.cgroup_parent()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--storage-driver=vfs",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("dockerd starts (scripts/engine.sh installs docker.io)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "the private dockerd did not answer; its log:\n{}",
                std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn cgroup_parent(&self) -> String {
        self.bridge.clone()
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .output()
            .expect("the docker CLI runs")
    }

    /// Kill dockerd outright, as a crash would. Its containerd follows it down; wait for
    /// that, or a restart finds it half alive.
    fn kill(&mut self) {
        let containerd = std::fs::read_to_string(self.dir.join("exec/containerd/containerd.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = containerd {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Processes started by this daemon that outlived it (containerd, shims, container
    /// processes): they name its folder on their command line, or descend from one that does.
    fn stray_processes(&self) -> Vec<i32> {
        let marker = self.dir.to_string_lossy().into_owned();
        let mut found: Vec<i32> = Vec::new();
        let mut parents: Vec<(i32, i32)> = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&marker) {
                found.push(pid);
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            if let Some(ppid) = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1))
                .and_then(|p| p.parse().ok())
            {
                parents.push((pid, ppid));
            }
        }
        let mut i = 0;
        while i < found.len() {
            let parent = found[i];
            for (pid, ppid) in &parents {
                if *ppid == parent && !found.contains(pid) {
                    found.push(*pid);
                }
            }
            i += 1;
        }
        found
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        if self.child.is_none() && self.dir.join("data").exists() {
            // Killed: start it once more so it reaps its containers and shims, then stop it.
            let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.spawn();
                let ids = self.docker(&["ps", "-aq"]);
                for id in String::from_utf8_lossy(&ids.stdout).lines() {
                    let _ = self.docker(&["rm", "-f", id]);
                }
            }));
            let _ = restarted;
        }
        self.stop();
        for pid in self.stray_processes() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        remove_cgroups(&self.cgroup_parent());
        for mount in mounts_under(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&mount).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .status();
    }
}

fn run_ok(command: &mut Command) {
    let out = command.output().expect("runs");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Remove the (empty) cgroups below `/sys/fs/cgroup/*/NAME`, deepest first.
fn remove_cgroups(name: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for controller in controllers.flatten() {
        let top = controller.path().join(name);
        if !top.is_dir() {
            continue;
        }
        let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(&top)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_dir())
            .map(|e| e.path().to_path_buf())
            .collect();
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for dir in dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Mount points below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts
}

fn can_run_a_private_engine() -> bool {
    let root = rustix::process::getuid().is_root();
    let tools = ["dockerd", "ip"].iter().all(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if root && tools {
        return true;
    }
    let problem = "starting a private dockerd needs root, dockerd and ip";
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("CI=true and {problem}");
    }
    eprintln!("SKIPPED: {problem}");
    false
}

#[test]
fn the_engine_dying_mid_build_is_one_clear_error_and_clean_finishes_the_job() {
    if !engine_with(&["busybox:local"]) || !can_run_a_private_engine() {
        return;
    }
    let mut daemon = PrivateDaemon::start();
    // busybox:local from the shared engine into the private one.
    let saved = tempfile::tempdir().expect("tempdir");
    let tar = saved.path().join("busybox.tar");
    docker_stdout(&["save", "-o", tar.to_str().expect("utf-8"), "busybox:local"]);
    let loaded = daemon.docker(&["load", "-i", tar.to_str().expect("utf-8")]);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    let dir = project("enginegone");
    let manifest = "[builder]\nimage = \"busybox:local\"\nrun = \"echo started; sleep 300\"\nwarm = \"off\"\n\n[artifacts]\ninclude = [\"app\"]\n";
    write_files(dir.path(), &[("dockception.toml", manifest)]);
    let build = Running::start(&["build"], dir.path(), &[("DOCKER_HOST", &daemon.host)]);
    build.wait_for("| started", 120);
    let started = Instant::now();
    daemon.kill();
    let (code, _, stderr) = build.finish(60);
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
    assert!(
        error.starts_with("error: the Docker Engine stopped answering while "),
        "{stderr}"
    );
    assert!(
        stderr.contains("  help: check the engine (docker info) and start it again; then `dockception clean` removes what this run left behind"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("error: ").count(),
        1,
        "one error, not a cascade:\n{stderr}"
    );
    let left = stderr
        .lines()
        .find(|l| l.starts_with("warning: left behind: container dockception-"))
        .unwrap_or_else(|| panic!("the leftover is not named:\n{stderr}"));
    let name = left
        .trim_start_matches("warning: left behind: container ")
        .split(';')
        .next()
        .expect("a name")
        .to_string();
    // What could be cleaned was: the run's folder.
    // (A build in the warm builder makes its run folder only once the command has ended.)
    let runs = dir.path().join(".dockception/runs");
    assert_eq!(std::fs::read_dir(&runs).map_or(0, |r| r.count()), 0);
    eprintln!("dockception gave up {took:?} after the engine died; it said:\n{stderr}");

    // The engine comes back; the hint works.
    daemon.spawn();
    let cleaned = Command::new(BIN)
        .arg("clean")
        .current_dir(dir.path())
        .env("DOCKER_HOST", &daemon.host)
        .output()
        .expect("dockception runs");
    assert!(cleaned.status.success(), "{}", text(&cleaned.stderr));
    assert!(
        text(&cleaned.stdout).contains(&format!("removed container {name}")),
        "{}",
        text(&cleaned.stdout)
    );
    let labelled = daemon.docker(&["ps", "-aq", "--filter", "label=dockception"]);
    assert_eq!(text(&labelled.stdout), "", "labelled containers are left");
}

/// busybox:local from the shared engine into `daemon`.
fn load_busybox(daemon: &PrivateDaemon) {
    let saved = tempfile::tempdir().expect("tempdir");
    let tar = saved.path().join("busybox.tar");
    docker_stdout(&["save", "-o", tar.to_str().expect("utf-8"), "busybox:local"]);
    let loaded = daemon.docker(&["load", "-i", tar.to_str().expect("utf-8")]);
    assert!(loaded.status.success(), "{}", text(&loaded.stderr));
}

/// The names of `daemon`'s containers of the project folder `dir`, sorted.
fn containers_on(daemon: &PrivateDaemon, dir: &Path) -> Vec<String> {
    let filter = format!("label=dockception.project={}", project_label(dir));
    let listed = daemon.docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let mut names: Vec<String> = text(&listed.stdout).lines().map(str::to_string).collect();
    names.sort();
    names
}

/// Start `dockception build` in `dir` against `daemon` (on another host name when `host` is
/// given: its own UTS namespace), once its builder runs.
fn build_running(daemon: &PrivateDaemon, dir: &Path, host: Option<&str>) -> Running {
    let mut command = match host {
        None => Command::new(BIN),
        Some(host) => {
            let mut c = Command::new("unshare");
            c.args(["--uts", "sh", "-c"])
                .arg(format!("hostname {host} && exec \"$0\" \"$@\""))
                .arg(BIN);
            c
        }
    };
    command
        .arg("build")
        .current_dir(dir)
        .env("DOCKER_HOST", &daemon.host);
    let build = Running::spawn(command);
    build.wait_for("| started", 120);
    build
}

/// Kill a build outright, as a crash would: its builder container stays, owned by a process
/// that is gone. Returns the container's name.
fn crashed_build(daemon: &PrivateDaemon, dir: &Path, host: Option<&str>) -> String {
    let before = containers_on(daemon, dir);
    let mut build = build_running(daemon, dir, host);
    build.child.kill().expect("kill");
    let (code, _, stderr) = build.finish(30);
    assert_eq!(code, None, "it was killed:\n{stderr}");
    let new: Vec<String> = containers_on(daemon, dir)
        .into_iter()
        .filter(|c| !before.contains(c))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    new[0].clone()
}

/// `dockception clean ARGS` in `dir` against `daemon`: the sorted `removed …` lines (run
/// folders aside) and stderr.
fn clean(daemon: &PrivateDaemon, dir: &Path, args: &[&str]) -> (Vec<String>, String) {
    let out = Command::new(BIN)
        .arg("clean")
        .args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", &daemon.host)
        .output()
        .expect("dockception runs");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let mut removed: Vec<String> = text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("removed ") && !l.starts_with("removed run folder "))
        .map(str::to_string)
        .collect();
    removed.sort();
    (removed, stderr)
}

#[test]
fn clean_all_reaches_every_project_and_force_the_containers_it_would_keep() {
    if !engine_with(&["busybox:local"]) || !can_run_a_private_engine() {
        return;
    }
    // A private engine: `clean --all` on the shared one would take other tests' things.
    let daemon = PrivateDaemon::start();
    load_busybox(&daemon);
    // Fresh containers: a crashed run's command would go on in a warm builder, which `clean`
    // keeps (without --force) while a build runs in it.
    let manifest = "[vars]\nRUN = \"echo started; sleep 300\"\n\n[builder]\nimage = \"busybox:local\"\nrun = \"${RUN}\"\nwarm = \"off\"\n\n[[cache]]\ntarget = \"/cache\"\n\n[artifacts]\ninclude = [\"app\"]\n";
    let a = project("clean-a");
    let b = project("clean-b");
    for dir in [&a, &b] {
        write_files(dir.path(), &[("dockception.toml", manifest)]);
    }
    let on_daemon = |args: &[&str]| {
        let out = daemon.docker(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };

    // A dangling dockception image of project b: the tag moves to a second build while a
    // container uses the first image; then that container goes.
    let mut user = String::new();
    for run in ["echo one > /out/app", "echo two > /out/app"] {
        if user.is_empty()
            && daemon
                .docker(&["image", "inspect", "dcpt-clean:latest"])
                .status
                .success()
        {
            user = on_daemon(&["create", "dcpt-clean:latest", "/app"])
                .trim()
                .to_string();
        }
        let out = Command::new(BIN)
            .args(["build", "-q", "--tag", "dcpt-clean:latest", "--set"])
            .arg(format!("RUN={run}"))
            .current_dir(b.path())
            .env("DOCKER_HOST", &daemon.host)
            .output()
            .expect("dockception runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    on_daemon(&["rm", &user]);
    let dangling = on_daemon(&[
        "images",
        "-q",
        "--no-trunc",
        "--filter",
        "dangling=true",
        "--filter",
        "label=dockception",
    ]);
    let dangling: Vec<&str> = dangling.lines().collect();
    assert_eq!(dangling.len(), 1, "{dangling:?}");
    let tagged = on_daemon(&["image", "inspect", "-f", "{{.Id}}", "dcpt-clean:latest"]);

    let crashed_a = crashed_build(&daemon, a.path(), None);
    let crashed_b = crashed_build(&daemon, b.path(), None);
    let elsewhere = crashed_build(&daemon, b.path(), Some("dcpt-elsewhere"));
    let live = build_running(&daemon, a.path(), None);
    let live_name = containers_on(&daemon, a.path())
        .into_iter()
        .find(|c| *c != crashed_a)
        .expect("the live build's container");
    let volume = |dir: &Project| format!("dockception-{}-cache", project_label(dir.path()));
    let volumes = || {
        let mut v: Vec<String> =
            on_daemon(&["volume", "ls", "-q", "--filter", "label=dockception"])
                .lines()
                .map(str::to_string)
                .collect();
        v.sort();
        v
    };
    let mut both = vec![volume(&a), volume(&b)];
    both.sort();
    assert_eq!(volumes(), both);

    // This project only: its crashed build's container; the live build's is kept, and so is
    // its cache; b's dangling image is b's (its builds loaded it), so a's clean leaves it.
    let (removed, stderr) = clean(&daemon, a.path(), &[]);
    assert_eq!(
        removed,
        [format!("removed container {crashed_a}")],
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "kept container {live_name}: its dockception run (pid {}) is still going",
            live.child.id()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "kept cache volume {}: caches are kept",
            volume(&a)
        )),
        "{stderr}"
    );

    // --force: this project's live build's container too, still nothing of project b.
    let (removed, stderr) = clean(&daemon, a.path(), &["--force"]);
    assert_eq!(
        removed,
        [format!("removed container {live_name}")],
        "{stderr}"
    );
    let (code, _, stderr) = live.finish(60);
    assert_ne!(code, Some(0), "{stderr}");

    // --all: project b's crashed container and the dangling image; the container made on
    // another host is kept.
    let (removed, stderr) = clean(&daemon, a.path(), &["--all"]);
    let mut expected = vec![
        format!("removed container {crashed_b}"),
        format!("removed image {}", dangling[0]),
    ];
    expected.sort();
    assert_eq!(removed, expected, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "kept container {elsewhere}: it was made by a dockception run on host dcpt-elsewhere"
        )),
        "{stderr}"
    );

    // --all --force: that one as well. Caches and the tagged image stay.
    let (removed, stderr) = clean(&daemon, a.path(), &["--all", "--force"]);
    assert_eq!(
        removed,
        [format!("removed container {elsewhere}")],
        "{stderr}"
    );
    let left = on_daemon(&["ps", "-aq", "--filter", "label=dockception"]);
    assert_eq!(left, "", "containers left");
    assert_eq!(volumes(), both);
    assert_eq!(
        on_daemon(&["image", "inspect", "-f", "{{.Id}}", "dcpt-clean:latest"]),
        tagged
    );

    // --all --caches: the caches of both projects.
    let (removed, stderr) = clean(&daemon, a.path(), &["--all", "--caches"]);
    let expected: Vec<String> = both
        .iter()
        .map(|v| format!("removed cache volume {v}"))
        .collect();
    assert_eq!(removed, expected, "{stderr}");
    assert_eq!(volumes(), Vec::<String>::new());
}
