//! BuildKit, the headline peer (issue 15): the multi-stage Dockerfile a user would write today,
//! with the sources bind-mounted (`RUN --mount=type=bind`) and the compiler's cache in a cache
//! mount (`--mount=type=cache`), built by the engine's own BuildKit with
//! `DOCKER_BUILDKIT=1 /usr/bin/docker build` (Debian's 20.10 CLI; the docker 28 CLI in
//! /usr/local/bin has no buildx). It makes the same runtime image as dockception: `FROM
//! scratch` plus the one binary.
//!
//! BuildKit's cache is content-addressed, so a change value seen before is a cache hit: the
//! bench's one-line change writes a value made of a per-run nonce and the repetition
//! (`bench-<nonce>-<rep>`), never used before. A cold build empties the build cache the bench
//! made (cache mounts included) and passes `--no-cache`; build cache records that were on the
//! engine before the bench started belong to someone else and are never pruned.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::Command;

use super::{decimal_size, median, seconds_of, secs, Measured, Sample, Scenario, Target, Way};
use super::{Workload, SCENARIOS};

/// The Docker CLI that builds with BuildKit without buildx (Debian's docker.io, 20.10).
pub(super) const CLI: &str = "/usr/bin/docker";

/// What issue 15's misses come from, as understood when this harness was written; the phase
/// lines under each workload's targets are the measured account. Review after every run.
pub(super) const NOTES: &str = r#"
## Issue 15's misses: what they come from

- **Runner overhead at most 100 ms on a rebuild:** the build command runs in the builder
  container kept from the build before (the default on a local engine), reached through two
  named pipes it mounts rather than a `docker exec` (which costs the engine about 55 ms before
  the command starts); what is left is mostly the engine's `docker load` of the new layer,
  which has a floor: "Assembly plus load" times a new image whose artifact is 16 bytes, and its
  *load and report* column is what every rebuild pays before a byte of its artifacts. dockception opens the load as the
  builder starts, so the engine's own start of it (the helper process that unpacks an archive) is
  done by the time the image is written, but the engine still unpacks the whole archive into a
  temporary folder and then applies the layer from there: two passes over the layer, where
  `docker import` makes one. Writing the layer (tar, sha256, the report's listing) comes before
  the load, since the archive names the layer's size first; its gzip (for the digest, the
  report's sizes, a push or an output) runs beside the load.
- **No-op at most 15 ms and 0.05x BuildKit's:** a no-op is dockception's start-up alone (the
  process's start, manifest, plan, the image ids (the engine's `/version`, which dockerd answers
  by running its components, is not asked), and the fingerprint of every file of the mounted
  sources: the Rust workload mounts its 12 MiB `vendor/` folder too), shown as the one
  `start-up` phase of the no-op runs above. 0.05x of BuildKit's no-op is a few milliseconds,
  within the noise of a loaded machine: `dockception --version` alone takes about 2 ms here.
- BuildKit's own no-op is its solve of a fully cached graph plus the context check and the
  image export; its one-line change re-sends only the changed files of the context and reruns
  the `RUN` step with the cache mount, so cargo and go rebuild incrementally there as well.
"#;

/// The Dockerfile of the BuildKit way: the builder stage runs the same command as dockception's
/// manifest, with the same cache folder as a cache mount; the runtime stage is scratch plus the
/// binary.
pub(super) fn dockerfile(workload: &Workload) -> String {
    let env: String = workload
        .env
        .iter()
        .chain(workload.cache_env)
        .map(|(k, v)| format!("ENV {k}={v}\n"))
        .collect();
    format!(
        "# BuildKit's builder pattern: the sources bind-mounted (never COPYed into a layer), the\n\
         # compiler's cache in a cache mount kept between builds, only the binary shipped.\n\
         FROM {builder} AS build\nLABEL dockception.bench.way=buildkit\n{env}WORKDIR /src\n\
         RUN --mount=type=bind,target=/src --mount=type=cache,id=dockception-bench-{name},target={cache} {build}\n\n\
         FROM scratch\nCOPY --from=build /out/{bin} /{bin}\nENTRYPOINT [\"/{bin}\"]\n",
        builder = workload.builder,
        name = workload.name,
        cache = workload.cache,
        build = workload.build_cached,
        bin = workload.binary,
    )
}

/// `docker build` with BuildKit, plain progress (on stderr) to read what it sent.
pub(super) fn command(tag: &str, scenario: Scenario) -> Command {
    let mut c = Command::new(CLI);
    c.env("DOCKER_BUILDKIT", "1")
        .args(["build", "--progress", "plain", "-t", tag]);
    if scenario == Scenario::Cold {
        c.arg("--no-cache");
    }
    c.arg(".");
    c
}

/// The bytes BuildKit sent of the context this time (`#5 transferring context: 22.90kB 0.0s
/// done`: it sends only what changed since its last snapshot). The last such line counts.
pub(super) fn context_sent(progress: &str) -> Option<u64> {
    progress
        .lines()
        .filter_map(|line| line.split_once("transferring context: ").map(|(_, s)| s))
        .filter_map(|rest| decimal_size(rest.split_whitespace().next()?))
        .next_back()
}

/// The engine's build cache records that are the bench's own: everything not there before the
/// bench's first BuildKit build.
#[derive(Default)]
pub(super) struct BuildCache {
    /// The records that were on the engine before; `None` until the first BuildKit build.
    others: Option<BTreeSet<String>>,
}

impl BuildCache {
    fn records() -> Result<BTreeSet<String>, String> {
        let out = Command::new(CLI)
            .args(["system", "df", "-v", "--format", "{{json .BuildCache}}"])
            .output()
            .map_err(|e| format!("cannot run {CLI} system df: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{CLI} system df -v failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let records: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{CLI} system df printed no JSON list ({e})"))?;
        Ok(records
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["ID"].as_str().map(str::to_string))
            .collect())
    }

    /// Note whose records are there before the bench makes any (once).
    pub(super) fn note_others(&mut self) -> Result<(), String> {
        if self.others.is_none() {
            self.others = Some(Self::records()?);
        }
        Ok(())
    }

    /// Prune every record the bench made (`docker builder prune --filter id=` takes one id at a
    /// time; a parent goes once its children have), so the next BuildKit build is cold. Fails
    /// if one is left, since the cold build would not be cold.
    pub(super) fn empty_ours(&self) -> Result<(), String> {
        let Some(others) = &self.others else {
            return Ok(());
        };
        for _ in 0..8 {
            let ours: Vec<String> = Self::records()?.difference(others).cloned().collect();
            if ours.is_empty() {
                return Ok(());
            }
            for id in ours {
                let _ = Command::new(CLI)
                    .args(["builder", "prune", "-af", "--filter"])
                    .arg(format!("id={id}"))
                    .output();
            }
        }
        let left: Vec<String> = Self::records()?.difference(others).cloned().collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "BuildKit kept build cache records the bench made ({}); a cold build would not be cold",
                left.join(", ")
            ))
        }
    }
}

/// The workload with only the headline's ways (`--only buildkit`), for the rest of the run.
pub(super) fn headline_ways(workload: &Workload) -> &'static Workload {
    Box::leak(Box::new(Workload {
        ways: &[Way::Buildkit, Way::Dockception],
        ..*workload
    }))
}

/// A change value never used before on this engine: this run's nonce and the repetition.
pub(super) fn change_value(nonce: u64, rep: usize) -> String {
    format!("bench-{nonce}-{rep}")
}

/// This run's nonce: the clock in nanoseconds, so no two runs share their change values.
pub(super) fn nonce() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id())
}

/// Runner overhead of one dockception sample: its total minus the build command's own time.
fn overhead(sample: &Sample) -> f64 {
    sample.seconds - sample.build_command_ms.unwrap_or(0) as f64 / 1000.0
}

/// The sample whose time is the median's (the lower middle one for an even count).
fn middle(samples: &[Sample]) -> Option<&Sample> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

/// Where one dockception run's time went: from spawn to the first `==>` phase line, each
/// phase to the next, the last one to the exit.
fn phases(sample: &Sample) -> String {
    let mut out = String::new();
    let mut previous = (
        0.0,
        "start-up: manifest, plan, fingerprint of the inputs".to_string(),
    );
    for (at, line) in sample
        .phases
        .iter()
        .cloned()
        .chain([(sample.seconds, String::new())])
    {
        let (start, what) = &previous;
        let shown: String = what.chars().take(70).collect();
        let _ = write!(out, "{} `{shown}`; ", secs(at - start));
        previous = (at, line);
    }
    out.trim_end_matches("; ").to_string()
}

/// The headline for one workload: BuildKit against dockception's defaults (on a local engine,
/// the builder container kept between builds), issue 15's targets, and for each miss where the
/// time goes.
pub(super) fn headline(m: &Measured, targets: &mut Vec<Target>) -> String {
    let w = m.workload;
    let samples = |way: Way, s: Scenario| &m.results[&(way, s)];
    let bk = |s| seconds_of(samples(Way::Buildkit, s));
    let ours = |s| seconds_of(samples(Way::Dockception, s));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "**Headline: BuildKit (multi-stage, bind + cache mounts) against dockception's defaults**\n\
         (medians of {} runs each, interleaved):\n\n\
         | scenario | BuildKit | dockception | dockception / BuildKit |\n|---|---:|---:|---:|",
        samples(Way::Dockception, Scenario::Change).len()
    );
    for s in SCENARIOS {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3}x |",
            s.title(),
            secs(bk(s)),
            secs(ours(s)),
            ours(s) / bk(s)
        );
    }
    let change = samples(Way::Dockception, Scenario::Change);
    let rebuild_overhead = median(&mut change.iter().map(overhead).collect::<Vec<_>>());
    let command = median(
        &mut change
            .iter()
            .map(|x| x.build_command_ms.unwrap_or(0) as f64 / 1000.0)
            .collect::<Vec<_>>(),
    );
    let checks: [(Scenario, String, String, bool); 4] = [
        (
            Scenario::Change,
            "one-line change at most 0.8x BuildKit's".into(),
            format!(
                "{:.2}x ({} vs {})",
                ours(Scenario::Change) / bk(Scenario::Change),
                secs(ours(Scenario::Change)),
                secs(bk(Scenario::Change))
            ),
            ours(Scenario::Change) <= 0.8 * bk(Scenario::Change),
        ),
        (
            Scenario::Change,
            "runner overhead (total minus the build command) at most 100 ms on a rebuild".into(),
            format!(
                "{} ({} total, {} build command)",
                secs(rebuild_overhead),
                secs(ours(Scenario::Change)),
                secs(command)
            ),
            rebuild_overhead <= 0.1,
        ),
        (
            Scenario::Noop,
            "no-op at most 0.05x BuildKit's and at most 15 ms".into(),
            format!(
                "{:.3}x, {} (BuildKit {})",
                ours(Scenario::Noop) / bk(Scenario::Noop),
                secs(ours(Scenario::Noop)),
                secs(bk(Scenario::Noop))
            ),
            ours(Scenario::Noop) <= 0.05 * bk(Scenario::Noop) && ours(Scenario::Noop) <= 0.015,
        ),
        (
            Scenario::Cold,
            "cold build at most 1.0x BuildKit's cold build".into(),
            format!(
                "{:.2}x ({} vs {})",
                ours(Scenario::Cold) / bk(Scenario::Cold),
                secs(ours(Scenario::Cold)),
                secs(bk(Scenario::Cold))
            ),
            ours(Scenario::Cold) <= bk(Scenario::Cold),
        ),
    ];
    let _ = writeln!(
        out,
        "\n**Issue 15's targets for {}** (dockception's default settings):\n\n| target | measured | met |\n|---|---|---|",
        w.name
    );
    let mut misses = String::new();
    for (s, what, figures, met) in checks {
        let _ = writeln!(
            out,
            "| {what} | {figures} | {} |",
            if met { "yes" } else { "**no**" }
        );
        targets.push((format!("{}: {what} (issue 15)", w.name), figures, met));
        if !met {
            if let Some(sample) = middle(samples(Way::Dockception, s)) {
                let _ = writeln!(
                    misses,
                    "- {} ({}, the median run of the {}: {} total, build command {}): {}",
                    what,
                    w.name,
                    s.title(),
                    secs(sample.seconds),
                    sample
                        .build_command_ms
                        .map(|ms| secs(ms as f64 / 1000.0))
                        .unwrap_or_else(|| "did not run".into()),
                    phases(sample)
                );
            }
        }
    }
    if !misses.is_empty() {
        let _ = writeln!(
            out,
            "\n**Where the time goes in each miss** (dockception's `==>` phase lines, timed as they\n\
             reached stderr by xtask/src/bench/phased.rs; each figure runs from its phase's line to\n\
             the next line, the last to the exit):\n\n{misses}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_context_buildkit_sent() {
        let progress = "#5 [internal] load build context\n\
                        #5 transferring context: 2B\n\
                        #5 transferring context: 22.90kB 0.0s done\n\
                        #2 transferring dockerfile: 37B done\n";
        assert_eq!(context_sent(progress), Some(22_900));
        assert_eq!(context_sent("#1 nothing"), None);
    }

    #[test]
    fn change_values_differ_between_runs_and_reps() {
        assert_ne!(change_value(1, 1), change_value(1, 2));
        assert_ne!(change_value(1, 1), change_value(2, 1));
    }
}
