//! Issue 15 part 4, the scale of the no-op: a tree of 100,000 source files mounted into a
//! busybox builder. Timed from spawn to exit of `dockception build --format json`: the no-op
//! (nothing changed: one `stat` per file, nothing hashed, no container) and the one-file change
//! (one file rewritten with a value never used before, so the reuse store cannot answer: one
//! file hashed, the builder runs). How many files each run hashed is read from the report's
//! `source_files_hashed`, not guessed from a time.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// How many source files the tree has.
pub(super) const FILES: usize = 100_000;
/// The no-op's target, from the issue.
const NOOP_TARGET_SECS: f64 = 0.3;

/// One timed build.
pub(super) struct ScaleRun {
    pub(super) seconds: f64,
    pub(super) hashed: u64,
    pub(super) up_to_date: bool,
}

/// The no-ops and the one-file changes, in the order they ran.
pub(super) struct ScaleBench {
    pub(super) cold: ScaleRun,
    pub(super) noop: Vec<ScaleRun>,
    pub(super) change: Vec<ScaleRun>,
}

pub(super) fn measure_scale(bin: &Path, work: &Path, reps: usize) -> Result<ScaleBench, String> {
    let dir = work.join("scale");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let src = dir.join("src");
    eprintln!("==> scale: writing {FILES} source files");
    // Written an hour "ago", as a checkout is older than the racy-clean margin by the time
    // anyone rebuilds it; otherwise the first no-op would hash every file again.
    let old = SystemTime::now() - Duration::from_secs(3600);
    for i in 0..FILES {
        let folder = src.join(format!("d{:03}", i % 500));
        if i < 500 {
            std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
        }
        let path = folder.join(format!("f{i}.txt"));
        std::fs::write(&path, format!("file {i}\n")).map_err(|e| e.to_string())?;
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(old))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::fs::write(
        dir.join("dockception.toml"),
        "[builder]\nimage = \"busybox:local\"\nworkdir = \"/src\"\n\
         run = \"cat d007/f7.txt > /out/app\"\n\n\
         [[mount]]\nsource = \"src\"\ntarget = \"/src\"\n\n\
         [artifacts]\ninclude = [\"app\"]\n\n\
         [runtime]\nuser = \"65534:65534\"\n\n\
         [image]\ntags = [\"dockception-bench/scale:latest\"]\n",
    )
    .map_err(|e| e.to_string())?;
    let outcome = (|| {
        let cold = build(bin, &dir)?;
        let mut bench = ScaleBench {
            cold,
            noop: Vec::new(),
            change: Vec::new(),
        };
        for round in 0..reps {
            bench.noop.push(build(bin, &dir)?);
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            std::fs::write(src.join("d007/f7.txt"), format!("change {round} {nanos}\n"))
                .map_err(|e| e.to_string())?;
            bench.change.push(build(bin, &dir)?);
        }
        Ok(bench)
    })();
    let _ = Command::new(bin)
        .args(["clean", "--caches", "-q"])
        .current_dir(&dir)
        .output();
    let _ = Command::new("docker")
        .args(["rmi", "-f", "dockception-bench/scale:latest"])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn build(bin: &Path, dir: &Path) -> Result<ScaleRun, String> {
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["build", "--format", "json", "-q"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "scale build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hashed = super::json_u64(&stdout, "source_files_hashed")
        .ok_or("the report has no source_files_hashed")?;
    Ok(ScaleRun {
        seconds,
        hashed,
        up_to_date: stdout.contains("\"up_to_date\": true"),
    })
}

pub(super) fn render(bench: &ScaleBench, targets: &mut Vec<super::Target>) -> String {
    use std::fmt::Write as _;
    let median =
        |runs: &[ScaleRun]| super::median(&mut runs.iter().map(|r| r.seconds).collect::<Vec<_>>());
    let hashed = |runs: &[ScaleRun]| {
        let mut counts: Vec<u64> = runs.iter().map(|r| r.hashed).collect();
        counts.sort_unstable();
        counts.dedup();
        counts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (noop, change) = (median(&bench.noop), median(&bench.change));
    let all_up_to_date = bench.noop.iter().all(|r| r.up_to_date);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Scale: {FILES} source files\n\n\
         One mounted tree of {FILES} small files in 500 folders (written an hour back in time, as a\n\
         checkout is older than the racy-clean margin), a busybox builder that copies one of them.\n\
         `dockception build --format json -q` from spawn to exit, release build, medians of {} runs\n\
         (no-op and change alternating). The change writes a value never used before, so the reuse\n\
         store cannot answer and the builder runs. Files hashed: the report's `source_files_hashed`.\n\n\
         | scenario | median | files hashed |\n|---|---:|---:|\n\
         | cold (first build, once) | {} | {} |\n\
         | no-op{} | {} | {} |\n\
         | one-file change | {} | {} |\n",
        bench.noop.len(),
        super::secs(bench.cold.seconds),
        bench.cold.hashed,
        if all_up_to_date { "" } else { " (**not all up to date**)" },
        super::secs(noop),
        hashed(&bench.noop),
        super::secs(change),
        hashed(&bench.change),
    );
    targets.push((
        format!("no-op on {FILES} source files ≤ {NOOP_TARGET_SECS} s"),
        super::secs(noop),
        noop <= NOOP_TARGET_SECS && all_up_to_date,
    ));
    targets.push((
        format!("a one-file change in {FILES} files hashes one file"),
        format!("{} hashed", hashed(&bench.change)),
        bench.change.iter().all(|r| r.hashed == 1),
    ));
    out
}
