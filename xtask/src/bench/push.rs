//! Issue 14's second target: after a one-line change, a push uploads the changed layer and
//! little else. A real registry (Debian's `docker-registry`, as the tests run it) on a free
//! 127.0.0.1 port; the Go workload on busybox:local, pushed once, then changed and pushed again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::phased::run_phased;
use super::{copy_tree, one_line_change, quiet, root, GO};

/// A registry for this run, stopped (and its storage removed) on drop.
pub(super) struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub(super) address: String,
    dir: PathBuf,
}

impl Registry {
    pub(super) fn start(work: &Path) -> Result<Registry, String> {
        let dir = work.join("registry");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  delete:\n    enabled: true\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("registry.log")).map_err(|e| e.to_string())?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("docker-registry (scripts/engine.sh installs it): {e}"))?;
        let registry = Registry {
            child,
            address: format!("127.0.0.1:{port}"),
            dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "the registry did not start: {}",
                    std::fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(registry)
    }

    /// Remove everything pushed so far (a 1 GiB push fills the disk); the registry keeps
    /// running and answers as an empty one.
    pub(super) fn forget(&self) {
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}

/// One push of the changed project.
#[derive(Debug, Clone)]
pub(super) struct PushSample {
    pub(super) sent_bytes: u64,
    pub(super) skipped_bytes: u64,
    /// The artifacts layer's compressed size, from the same report.
    pub(super) layer_gzip_bytes: u64,
    /// From the `pushing` phase line to the process's exit.
    pub(super) push_seconds: f64,
    pub(super) seconds: f64,
}

pub(super) struct PushBench {
    pub(super) first: PushSample,
    pub(super) changes: Vec<PushSample>,
}

/// Push the Go workload once, then `reps` times after a one-line change each.
pub(super) fn measure_push(
    bin: &Path,
    work: &Path,
    registry: &Registry,
    reps: usize,
) -> Result<PushBench, String> {
    let dir = work.join("push").join(GO.name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    copy_tree(&root().join("benches/workloads").join(GO.name), &dir)?;
    let tag = format!("{}/bench/kvd:latest", registry.address);
    std::fs::write(
        dir.join("dockception.toml"),
        format!(
            "[builder]\nimage = \"{builder}\"\nworkdir = \"/src\"\nrun = \"{build}\"\n\n\
             [builder.env]\nCGO_ENABLED = \"0\"\nGOCACHE = \"/cache/go-build\"\nGOPATH = \"/tmp/go\"\n\n\
             [[mount]]\nsource = \".\"\ntarget = \"/src\"\n\n[[cache]]\ntarget = \"{cache}\"\n\n\
             [artifacts]\ninclude = [\"{bin}\"]\n\n\
             [runtime]\nbase = \"busybox:local\"\nuser = \"65534:65534\"\nentrypoint = [\"/{bin}\"]\n",
            builder = GO.builder,
            build = GO.build_cached,
            cache = GO.cache,
            bin = GO.binary,
        ),
    )
    .map_err(|e| e.to_string())?;
    let push = || -> Result<PushSample, String> {
        let run = run_phased(
            Command::new(bin)
                .args(["build", "--push", "--tag", &tag])
                .args(["--progress", "plain", "--format", "json"])
                .current_dir(&dir),
        )?;
        let report = run.report()?;
        let delivered = &report["delivered"][0];
        if delivered["to"] != "registry" {
            return Err(format!(
                "the push was not delivered to a registry: {report}"
            ));
        }
        let layer_gzip_bytes = report["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["role"] == "artifacts")
            .filter_map(|l| l["gzip_bytes"].as_u64())
            .sum();
        Ok(PushSample {
            sent_bytes: delivered["sent_bytes"].as_u64().ok_or("no sent_bytes")?,
            skipped_bytes: delivered["skipped_bytes"].as_u64().unwrap_or(0),
            layer_gzip_bytes,
            push_seconds: run.from("pushing ").ok_or("no `pushing` phase line")?,
            seconds: run.seconds,
        })
    };
    eprintln!("==> push: the first push of {tag}");
    let first = push()?;
    let mut changes = Vec::new();
    for rep in 1..=reps {
        eprintln!("==> push: one-line change {rep}/{reps}, pushed again");
        one_line_change(&dir.join(GO.change_file), &format!("bench-{rep}"))?;
        changes.push(push()?);
    }
    let _ = quiet(
        Command::new(bin)
            .args(["clean", "--caches"])
            .current_dir(&dir),
    );
    registry.forget();
    Ok(PushBench { first, changes })
}

/// The section of BENCHMARKS.md, and the target.
pub(super) fn render(bench: &PushBench, targets: &mut Vec<super::Target>) -> String {
    use super::{bytes, median, secs};
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## A push after a one-line change\n\n\
         Debian's `docker-registry` on a free 127.0.0.1 port (as the tests run it). The Go workload\n\
         (`benches/workloads/go-multi`, with its cache volume) on busybox:local, user 65534:\n\
         `dockception build --push --tag 127.0.0.1:PORT/bench/kvd:latest --format json` once, then {n} times\n\
         after a one-line change each (the constant in `internal/version/version.go`). *Sent* is the\n\
         report's `delivered[0].sent_bytes`, *skipped* its `skipped_bytes` (blobs the registry had), *layer*\n\
         the `gzip_bytes` of the report's `artifacts` layer; *push* is from the `==> pushing` phase line\n\
         to the process's exit.\n\n\
         | push | sent | skipped | changed layer (gzip) | sent minus layer | push | whole build |\n|---|---:|---:|---:|---:|---:|---:|",
        n = bench.changes.len()
    );
    let row = |name: String, s: &PushSample| {
        format!(
            "| {name} | {} ({} B) | {} | {} ({} B) | {} B | {} | {} |\n",
            bytes(s.sent_bytes),
            s.sent_bytes,
            bytes(s.skipped_bytes),
            bytes(s.layer_gzip_bytes),
            s.layer_gzip_bytes,
            s.sent_bytes as i64 - s.layer_gzip_bytes as i64,
            secs(s.push_seconds),
            secs(s.seconds)
        )
    };
    out.push_str(&row("first push".into(), &bench.first));
    for (n, s) in bench.changes.iter().enumerate() {
        out.push_str(&row(format!("after change {}", n + 1), s));
    }
    let over: Vec<i64> = bench
        .changes
        .iter()
        .map(|s| s.sent_bytes as i64 - s.layer_gzip_bytes as i64)
        .collect();
    let worst = over.iter().copied().max().unwrap_or(0);
    let med_over = median(&mut over.iter().map(|&o| o as f64).collect::<Vec<_>>());
    let med_push = median(
        &mut bench
            .changes
            .iter()
            .map(|s| s.push_seconds)
            .collect::<Vec<_>>(),
    );
    let _ = writeln!(
        out,
        "\nAfter a change: median {med_over:.0} B sent beyond the changed layer, at most {worst} B; the push\n\
         itself takes {} (median).\n",
        secs(med_push)
    );
    targets.push((
        "a push after a one-line change uploads at most the changed layer's gzip size + 16 KiB"
            .into(),
        format!(
            "at most {worst} B over the layer in {} pushes (median {med_over:.0} B; layer {})",
            bench.changes.len(),
            bytes(bench.changes.first().map_or(0, |s| s.layer_gzip_bytes))
        ),
        !over.is_empty() && over.iter().all(|&o| o <= 16 * 1024),
    ));
    out
}
