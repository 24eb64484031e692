//! Issue 16's targets for remote mode, through a second engine that cannot see this machine's
//! files (the recipe of DESIGN.md and `tests/integration/second_engine.rs`: the root filesystem
//! `scripts/engine.sh second-engine` makes, dockerd with it as its root in fresh mount and pid
//! namespaces, inside a network namespace of its own, its socket in a folder of ours). The Go
//! workload is built side by side on the local engine and on that one: the first sync, a no-op,
//! and a one-line rebuild against the local engine's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::phased::run_phased;
use super::{copy_tree, median, one_line_change, quiet, root, secs, GO};

/// What the second engine runs as its namespaces' first process: the tests' script (without
/// a `shared` file, sshd or certificates it serves only its socket).
const INSIDE: &str = include_str!("../../../scripts/second-engine-inside.sh");

/// The second engine; stopped, and its namespace, cgroups and folder removed, on drop.
struct SecondEngine {
    dir: PathBuf,
    name: String,
    child: Option<Child>,
    socket: String,
}

impl SecondEngine {
    fn start(work: &Path) -> Result<SecondEngine, String> {
        let root_fs = std::env::var_os("DOCKCEPTION_SECOND_ENGINE_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib/dockception-tests/engine-root"));
        if !root_fs.join(".dockception-complete").exists() {
            return Err(format!(
                "the second engine's root filesystem {} is missing: run `bash scripts/engine.sh second-engine` as root",
                root_fs.display()
            ));
        }
        // Short: a socket path must fit in 108 bytes.
        let dir = PathBuf::from(format!("/tmp/dcpt-bench-2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
        let _ = work;
        let name = format!("dcptb{:x}", std::process::id() & 0xffff);
        let mut engine = SecondEngine {
            socket: format!("unix://{}", dir.join("docker.sock").display()),
            dir,
            name,
            child: None,
        };
        quiet(Command::new("ip").args(["netns", "add", &engine.name]))?;
        std::fs::write(engine.dir.join("inside.sh"), INSIDE).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(engine.dir.join("dockerd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", engine.name))
            .args([
                "unshare",
                "-m",
                "-p",
                "--kill-child",
                "--propagation",
                "private",
                "sh",
            ])
            .arg(engine.dir.join("inside.sh"))
            .arg(&root_fs)
            .arg(&engine.dir)
            .arg(&engine.name)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("nsenter: {e}"))?;
        engine.child = Some(child);
        let deadline = Instant::now() + std::time::Duration::from_secs(90);
        while !engine
            .docker()
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            if Instant::now() > deadline {
                return Err(format!(
                    "the second engine did not answer: {}",
                    std::fs::read_to_string(engine.dir.join("dockerd.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Ok(engine)
    }

    fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &self.socket)
            .env_remove("DOCKER_CONTEXT");
        c
    }

    /// Copy `image` from the machine's engine into this one.
    fn load(&self, image: &str) -> Result<(), String> {
        let tar = self.dir.join("image.tar");
        quiet(
            Command::new("docker")
                .args(["save", "-o"])
                .arg(&tar)
                .arg(image),
        )?;
        quiet(self.docker().args(["load", "-i"]).arg(&tar))?;
        let _ = std::fs::remove_file(tar);
        Ok(())
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The pid namespace's processes end with its first one; give them a moment.
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while Instant::now() < deadline && self.dir.join("docker.sock").exists() {
            if std::fs::remove_file(self.dir.join("docker.sock")).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for controller in controllers.flatten() {
                remove_cgroup_tree(&controller.path().join(&self.name));
            }
        }
        let _ = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Remove a cgroup folder and those below it, deepest first (only empty cgroups can go).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// What the remote part measured, in seconds.
pub(super) struct RemoteBench {
    /// From the `syncing the sources` phase line to the `synced` one, first build.
    first_sync: f64,
    /// The first build through the second engine, whole.
    first_build: f64,
    noop_remote: Vec<f64>,
    noop_local: Vec<f64>,
    change_remote: Vec<f64>,
    change_local: Vec<f64>,
    /// What the last change's sync sent, from `sync/last.json`.
    last_sent: String,
}

/// The Go workload with its cache, on scratch, tagged `tag`.
fn manifest(tag: &str) -> String {
    format!(
        "[builder]\nimage = \"{builder}\"\nworkdir = \"/src\"\nrun = \"{build}\"\n\n\
         [builder.env]\nCGO_ENABLED = \"0\"\nGOCACHE = \"/cache/go-build\"\nGOPATH = \"/tmp/go\"\n\n\
         [[mount]]\nsource = \".\"\ntarget = \"/src\"\n\n[[cache]]\ntarget = \"{cache}\"\n\n\
         [artifacts]\ninclude = [\"{bin}\"]\n\n\
         [runtime]\nbase = \"scratch\"\nuser = \"65534:65534\"\nentrypoint = [\"/{bin}\"]\n\n\
         [image]\ntags = [\"{tag}\"]\n",
        builder = GO.builder,
        build = GO.build_cached,
        cache = GO.cache,
        bin = GO.binary,
    )
}

/// One `dockception build -q` in `dir` (through `host` when given), wall clock.
fn build(bin: &Path, dir: &Path, host: Option<&str>) -> Result<f64, String> {
    let mut c = Command::new(bin);
    c.args(["build", "-q"])
        .current_dir(dir)
        .stdin(Stdio::null());
    if let Some(host) = host {
        c.env("DOCKER_HOST", host);
    }
    let start = Instant::now();
    let out = c.output().map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{c:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(seconds)
}

pub(super) fn measure_remote(bin: &Path, work: &Path, reps: usize) -> Result<RemoteBench, String> {
    eprintln!(
        "==> remote: starting a second engine and copying {} into it",
        GO.builder
    );
    let engine = SecondEngine::start(work)?;
    engine.load(GO.builder)?;
    let base = work.join("remote");
    let _ = std::fs::remove_dir_all(&base);
    let (local, remote) = (base.join("local"), base.join("remote"));
    for dir in [&local, &remote] {
        copy_tree(&root().join("benches/workloads").join(GO.name), dir)?;
        std::fs::write(
            dir.join("dockception.toml"),
            manifest("bench-remote-kvd:latest"),
        )
        .map_err(|e| e.to_string())?;
    }
    let host = engine.socket.clone();
    let result = (|| {
        eprintln!("==> remote: first builds (local engine, then the second engine)");
        build(bin, &local, None)?;
        let first = run_phased(
            Command::new(bin)
                .args(["build", "--progress", "plain"])
                .env("DOCKER_HOST", &host)
                .current_dir(&remote),
        )?;
        let first_sync = match (first.at("syncing the sources"), first.at("synced ")) {
            (Some(start), Some(end)) => end - start,
            _ => return Err("no sync phase lines in the first remote build".to_string()),
        };
        let mut bench = RemoteBench {
            first_sync,
            first_build: first.seconds,
            noop_remote: vec![],
            noop_local: vec![],
            change_remote: vec![],
            change_local: vec![],
            last_sent: String::new(),
        };
        for rep in 1..=reps.max(5) {
            eprintln!("==> remote: no-op {rep}, then one-line change {rep}, local and remote");
            bench.noop_local.push(build(bin, &local, None)?);
            bench.noop_remote.push(build(bin, &remote, Some(&host))?);
            one_line_change(&local.join(GO.change_file), &format!("bench-{rep}"))?;
            one_line_change(&remote.join(GO.change_file), &format!("bench-{rep}"))?;
            bench.change_local.push(build(bin, &local, None)?);
            bench.change_remote.push(build(bin, &remote, Some(&host))?);
        }
        let summary = std::fs::read_to_string(remote.join(".dockception/sync/last.json"))
            .map_err(|e| e.to_string())?;
        let summary: serde_json::Value =
            serde_json::from_str(&summary).map_err(|e| e.to_string())?;
        let volume = &summary["volumes"][0];
        bench.last_sent = format!(
            "{} file(s), {} B, {} deletion(s): {}",
            volume["sent_files"],
            volume["sent_bytes"],
            volume["deleted"].as_array().map_or(0, Vec::len),
            volume["sent"]
        );
        Ok(bench)
    })();
    let _ = quiet(
        Command::new(bin)
            .args(["clean", "--caches"])
            .current_dir(&local),
    );
    let _ = quiet(Command::new("docker").args(["rmi", "bench-remote-kvd:latest"]));
    drop(engine);
    let _ = std::fs::remove_dir_all(&base);
    result
}

pub(super) fn render(bench: &RemoteBench, targets: &mut Vec<(String, String, bool)>) -> String {
    use std::fmt::Write as _;
    let m = |v: &[f64]| median(&mut v.to_vec());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## On a remote engine (issue 16)\n\n\
         A second dockerd (Debian's docker.io, overlay2) in namespaces of its own, with the root\n\
         filesystem `scripts/engine.sh second-engine` makes: it cannot see this machine's files, so the\n\
         first build's probe finds remote mode and the sources are synced into a volume. The Go workload\n\
         (`benches/workloads/go-multi`, cache volume, scratch), one copy built on the local engine and one\n\
         through the second engine (`DOCKER_HOST=unix://…`), interleaved: a no-op, then the same one-line\n\
         change (`internal/version/version.go`) rebuilt on each; {n} rounds, medians. *First sync* is from the\n\
         `syncing the sources` phase line to the `synced` one of the first remote build (volume made,\n\
         everything sent).\n\n\
         | measurement | local engine | second engine |\n|---|---:|---:|\n\
         | first build (whole) | | {first} |\n\
         | first sync | | {sync} |\n\
         | no-op | {nl} | {nr} |\n\
         | one-line change | {cl} | {cr} |\n\n\
         The last change's sync sent {sent}.\n",
        n = bench.change_remote.len(),
        first = secs(bench.first_build),
        sync = secs(bench.first_sync),
        nl = secs(m(&bench.noop_local)),
        nr = secs(m(&bench.noop_remote)),
        cl = secs(m(&bench.change_local)),
        cr = secs(m(&bench.change_remote)),
        sent = bench.last_sent,
    );
    let over = m(&bench.change_remote) - m(&bench.change_local);
    targets.push((
        "remote: go-multi one-line rebuild ≤ local + 300 ms".into(),
        format!("local + {}", secs(over.max(0.0))),
        over <= 0.300,
    ));
    targets.push((
        "remote: first sync of go-multi ≤ 2 s".into(),
        secs(bench.first_sync),
        bench.first_sync <= 2.0,
    ));
    let noop = m(&bench.noop_remote);
    targets.push(("remote: no-op ≤ 50 ms".into(), secs(noop), noop <= 0.050));
    out
}
