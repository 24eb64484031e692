//! Peak memory of `dockception build` against the artifact's size and where the image goes:
//! the engine (`--load`), a registry (`--push`) and a file (`--output type=oci,dest=….tar`).
//! The builder writes one file from /dev/urandom, so compression shrinks nothing and a blob
//! held in memory anywhere would show in the peak.

use std::path::Path;
use std::process::Command;

use super::phased::run_phased;
use super::push::Registry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Destination {
    Load,
    Push,
    OciArchive,
}

impl Destination {
    pub(super) fn title(self) -> &'static str {
        match self {
            Destination::Load => "the engine (`--load`)",
            Destination::Push => "a registry (`--push`)",
            Destination::OciArchive => "a file (`--output type=oci,dest=….tar`)",
        }
    }
    fn slug(self) -> &'static str {
        match self {
            Destination::Load => "load",
            Destination::Push => "push",
            Destination::OciArchive => "oci",
        }
    }
}

pub(super) struct Memory {
    pub(super) label: &'static str,
    pub(super) to: Destination,
    pub(super) artifact_bytes: u64,
    pub(super) seconds: f64,
    pub(super) max_rss_kib: u64,
    pub(super) build_command_ms: u64,
    /// From the `building the runtime image` line to the `loading` line: the layer, gzipped
    /// into the blob store, the config and the manifest.
    pub(super) assemble: f64,
    /// From there to the process's exit: the load, the push or the file, and the report.
    pub(super) deliver: f64,
    /// What the destination was sent (`delivered[0].sent_bytes`).
    pub(super) sent_bytes: u64,
}

/// The rows: a small artifact into the engine for scale, then 1 GiB to each destination.
pub(super) const ROWS: [(&str, u64, Destination); 4] = [
    ("1 MiB", 1 << 20, Destination::Load),
    ("1 GiB", 1 << 30, Destination::Load),
    ("1 GiB", 1 << 30, Destination::Push),
    ("1 GiB", 1 << 30, Destination::OciArchive),
];

pub(super) fn measure_memory(
    bin: &Path,
    work: &Path,
    registry: &Registry,
) -> Result<Vec<Memory>, String> {
    let mut rows = Vec::new();
    for (label, bytes, to) in ROWS {
        let dir = work.join(format!("memory-{bytes}-{}", to.slug()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let tag = match to {
            Destination::Push => format!("{}/bench/memory:{bytes}", registry.address),
            _ => format!("dockception-bench/memory:{bytes}"),
        };
        std::fs::write(
            dir.join("dockception.toml"),
            format!(
                "[builder]\nimage = \"busybox:local\"\nrun = \"head -c {bytes} /dev/urandom > /out/blob\"\n\n\
                 [artifacts]\ninclude = [\"blob\"]\n\n[runtime]\nuser = \"65534:65534\"\n\n[image]\ntags = [\"{tag}\"]\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        eprintln!("==> peak memory with a {label} artifact, to {}", to.title());
        let rss_file = dir.join("rss");
        let archive = dir.join("image.tar");
        let mut command = Command::new("/usr/bin/time");
        command
            .args(["-f", "%M", "-o"])
            .arg(&rss_file)
            .arg(bin)
            .args([
                "build",
                "--force",
                "--progress",
                "plain",
                "--format",
                "json",
            ])
            .current_dir(&dir);
        match to {
            Destination::Load => {}
            Destination::Push => {
                command.arg("--push");
            }
            Destination::OciArchive => {
                command
                    .arg("--output")
                    .arg(format!("type=oci,dest={}", archive.display()));
            }
        }
        let run = run_phased(&mut command);
        let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
        let _ = std::fs::remove_dir_all(dir.join(".dockception"));
        let _ = std::fs::remove_file(&archive);
        if to == Destination::Push {
            registry.forget();
        }
        let run = run.map_err(|e| format!("the {label} artifact build to {}: {e}", to.title()))?;
        let report = run.report()?;
        let building = run
            .at("building the runtime image")
            .ok_or("no `building the runtime image` phase line")?;
        let loading = run
            .at("loading ")
            .or_else(|| run.at("delivering "))
            .ok_or("no `loading` or `delivering` phase line")?;
        rows.push(Memory {
            label,
            to,
            artifact_bytes: report["artifact_bytes"].as_u64().unwrap_or(0),
            seconds: run.seconds,
            max_rss_kib: std::fs::read_to_string(&rss_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            build_command_ms: report["build_command_ms"].as_u64().unwrap_or(0),
            assemble: loading - building,
            deliver: run.seconds - loading,
            sent_bytes: report["delivered"][0]["sent_bytes"].as_u64().unwrap_or(0),
        });
    }
    Ok(rows)
}

/// The section of BENCHMARKS.md, and one target per destination.
pub(super) fn render(rows: &[Memory], targets: &mut Vec<super::Target>) -> String {
    use super::{bytes, secs};
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Peak memory against artifact size and destination\n\n\
         The builder (busybox:local) writes one file from `/dev/urandom`; dockception writes it into a\n\
         layer (gzipped into the blob store) and sends it on. Peak memory is the max RSS of the\n\
         `dockception build --force` process, from `/usr/bin/time -f %M`; one run each. *Assemble* is from\n\
         the `==> building the runtime image` phase line to the next (`==> loading …`, or `==> delivering …` when nothing\n\
         is loaded); *deliver* is from there to the process's exit (the load, the push or the\n\
         file, then the report).\n\n\
         | artifact | to | total time | build command | assemble | deliver | sent | peak memory (max RSS) |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} ({} B) | {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            row.artifact_bytes,
            row.to.title(),
            secs(row.seconds),
            secs(row.build_command_ms as f64 / 1000.0),
            secs(row.assemble),
            secs(row.deliver),
            bytes(row.sent_bytes),
            bytes(row.max_rss_kib * 1024)
        );
        if row.artifact_bytes >= 1 << 30 {
            targets.push((
                format!(
                    "peak memory with a 1 GiB artifact under 64 MiB, streaming to {}",
                    row.to.title()
                ),
                bytes(row.max_rss_kib * 1024),
                row.max_rss_kib < 64 * 1024,
            ));
        }
    }
    out.push('\n');
    out
}
