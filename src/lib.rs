//! dockception: small, clean container images from one TOML manifest.
//!
//! Build in a fat builder image with the sources mounted (never copied into a layer), keep only
//! the artifacts that globs select, and ship them on a tiny runtime base. The pipeline, one
//! module per step, data flowing one way:
//!
//! ```text
//! manifest -> plan -> engine (builder) -> collect -> context -> image -> report
//! ```
//!
//! Only [`engine`] talks to Docker; the other steps are plain functions over plain values.

pub mod cache;
pub mod collect;
pub mod context;
pub mod engine;
pub mod error;
pub mod fingerprint;
pub mod image;
pub mod manifest;
pub mod outdir;
pub mod plan;
pub mod progress;
pub mod report;

use std::io::Write;
use std::path::PathBuf;

pub use engine::Engine;
pub use error::{Error, Result};
pub use plan::Plan;
pub use progress::Progress;
pub use report::Report;

use collect::Collected;
use context::ContextSpec;
use outdir::RunDir;
use report::{ArtifactSize, SizedImage};

/// Where the manifest is and what the caller overrides.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The manifest file.
    pub manifest: PathBuf,
    /// Replace the manifest's image tags.
    pub tags: Option<Vec<String>>,
    /// The tool's output folder (default: `.dockception` next to the manifest).
    pub out_dir: Option<PathBuf>,
}

/// Load and check the manifest, then resolve it into a plan for the invoking user.
pub fn load_plan(options: &Options) -> Result<Plan> {
    let loaded = manifest::load(&options.manifest)?;
    let plan_options = plan::PlanOptions {
        invoking_user: Some((
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )),
        tags: options.tags.clone(),
        out_dir: options.out_dir.clone(),
    };
    plan::plan(&loaded, &plan_options)
}

/// Run the whole pipeline: build the artifacts, build and tag the runtime image, report. Always
/// builds; records the inputs' fingerprint so a later [`build_if_changed`] knows what it made.
pub async fn build(engine: &Engine, plan: &Plan, progress: &Progress) -> Result<Report> {
    build_if_changed(engine, plan, progress, true).await
}

/// Like [`build`], unless nothing changed: when the inputs' fingerprint (plan, builder and base
/// image ids, mounted sources) equals the last successful build's and its image still carries
/// its tags, nothing runs and that build's report comes back with `up_to_date` set. `force`
/// builds anyway.
pub async fn build_if_changed(
    engine: &Engine,
    plan: &Plan,
    progress: &Progress,
    force: bool,
) -> Result<Report> {
    let builder = engine.ensure_image(&plan.builder.image, progress).await?;
    let base = if plan.runtime.is_scratch() {
        None
    } else {
        Some(engine.ensure_image(&plan.runtime.base, progress).await?)
    };
    let epoch = context_epoch();
    let (sources, previous) = scan_sources(plan).await?;
    let print = fingerprint::fingerprint(
        &fingerprint::Inputs {
            plan,
            builder_id: &builder.id,
            base_id: base.as_ref().map_or("scratch", |b| b.id.as_str()),
            epoch,
        },
        &sources,
    );
    if !force {
        if let Some(last) = previous.last_build_with(&print) {
            if engine
                .carries_tags(&last.report.image_id, &last.report.tags)
                .await?
            {
                let mut report = last.report.clone();
                report.up_to_date = true;
                report.build_command_ms = None;
                return Ok(report);
            }
        }
    }
    let base_bytes = base.map_or(0, |b| b.size);
    let report = build_now(engine, plan, progress, builder.size, base_bytes, epoch).await?;
    let state = fingerprint::State::after_build(sources, print, report.clone());
    if let Err(e) = state.save(&plan.out_dir) {
        progress.warn(&format!(
            "{e}; the next build cannot tell whether it is up to date"
        ));
    }
    Ok(report)
}

/// Read the last state and scan the mounted sources, off the async threads.
async fn scan_sources(plan: &Plan) -> Result<(fingerprint::Sources, fingerprint::State)> {
    let plan = plan.clone();
    tokio::task::spawn_blocking(move || {
        let previous = fingerprint::State::load(&plan.out_dir);
        fingerprint::scan(&plan, &previous).map(|sources| (sources, previous))
    })
    .await
    .map_err(|e| {
        Error::io(
            "scanning the sources of",
            "the mounts",
            std::io::Error::other(e),
        )
    })?
}

async fn build_now(
    engine: &Engine,
    plan: &Plan,
    progress: &Progress,
    builder_bytes: u64,
    base_bytes: u64,
    epoch: u64,
) -> Result<Report> {
    let run = RunDir::create(&plan.out_dir)?;
    let (collected, ran_ms) = build_artifacts(engine, plan, &run, progress).await?;
    let spec = context_spec(plan, &collected, epoch);
    progress.phase(&format!(
        "building the runtime image on {}",
        plan.runtime.base
    ));
    // On scratch the image is exactly one layer of artifacts plus config: import it, no build.
    let built = if plan.runtime.is_scratch() {
        image::import(engine, spec, &plan.project, &plan.tags).await?
    } else {
        image::build(engine, spec, &plan.project, &plan.tags, progress).await?
    };
    let runtime = engine
        .image_facts(&built.id)
        .await?
        .ok_or_else(|| Error::ImageBuild {
            message: format!("the engine built {} but does not list it", built.id),
        })?;
    run.promote()?;
    let dest = plan.artifacts.dest.trim_matches('/');
    let artifacts = collected
        .artifacts
        .iter()
        .map(|a| ArtifactSize {
            path: format!("/{}", join(dest, &a.path)),
            bytes: a.size,
        })
        .collect();
    let mut report = Report::new(
        built.id,
        plan.tags.clone(),
        SizedImage {
            image: plan.builder.image.clone(),
            bytes: builder_bytes,
        },
        SizedImage {
            image: plan.runtime.base.clone(),
            bytes: base_bytes,
        },
        runtime.size,
        artifacts,
        (collected.unshipped_files, collected.unshipped_bytes),
        built.context_bytes,
    );
    report.build_command_ms = Some(ran_ms);
    Ok(report)
}

/// The manifest's cache volumes, whether they exist and their size; with `all`, every other
/// dockception cache volume on the engine too. Sizes are measured in one short container of the
/// builder image (when it is present).
pub async fn list_caches(engine: &Engine, plan: &Plan, all: bool) -> Result<Vec<cache::CacheRow>> {
    let mut existing = Vec::new();
    for c in &plan.builder.caches {
        if engine.volume_exists(&c.volume).await? {
            existing.push(c.volume.clone());
        }
    }
    let others: Vec<(String, Option<String>)> = if all {
        engine
            .cache_volumes()
            .await?
            .into_iter()
            .map(|v| (v.name, v.project))
            .collect()
    } else {
        Vec::new()
    };
    let mut rows = cache::rows(&plan.builder.caches, &plan.project, &existing, &others);
    let measured: Vec<String> = rows
        .iter()
        .filter(|r| r.exists)
        .map(|r| r.volume.clone())
        .collect();
    if !measured.is_empty() && engine.image_facts(&plan.builder.image).await?.is_some() {
        let sizes = engine
            .volume_sizes(&plan.builder.image, &measured, &plan.project)
            .await?;
        for row in &mut rows {
            row.bytes = sizes.get(&row.volume).copied();
        }
    }
    Ok(rows)
}

/// Remove the manifest's cache volumes, or only those `selector` names (see
/// [`cache::select`]); returns each with whether it existed.
pub async fn remove_caches(
    engine: &Engine,
    plan: &Plan,
    selector: Option<&str>,
) -> Result<Vec<(plan::CacheVolume, bool)>> {
    let mut removed = Vec::new();
    for c in cache::select(&plan.builder.caches, selector)? {
        let existed = engine.remove_volume(&c.volume).await?;
        removed.push((c.clone(), existed));
    }
    Ok(removed)
}

/// Build the artifacts and write the runtime image's build context to `out` (a tar); returns
/// the bytes written.
pub async fn write_context(
    engine: &Engine,
    plan: &Plan,
    progress: &Progress,
    out: impl Write,
) -> Result<u64> {
    engine.ensure_image(&plan.builder.image, progress).await?;
    let run = RunDir::create(&plan.out_dir)?;
    let (collected, _) = build_artifacts(engine, plan, &run, progress).await?;
    let spec = context_spec(plan, &collected, context_epoch());
    let written = tokio::task::block_in_place(|| context::write(&spec, out))
        .map_err(|e| Error::io("writing the build context to", "standard output", e))?;
    run.promote()?;
    Ok(written)
}

/// Run the builder into the run's fresh output folder and select the artifacts; also returns how
/// long the build command ran, in milliseconds.
async fn build_artifacts(
    engine: &Engine,
    plan: &Plan,
    run: &RunDir,
    progress: &Progress,
) -> Result<(Collected, u64)> {
    engine.ensure_caches(plan, progress).await?;
    progress.phase(&format!(
        "building in {}: {}",
        plan.builder.image,
        plan.builder.command.join(" ")
    ));
    let exit = engine.run_builder(plan, &run.output(), progress).await?;
    if exit.code != 0 {
        return Err(Error::BuildCommandFailed {
            code: exit.code,
            image: plan.builder.image.clone(),
            tail: exit.tail,
        });
    }
    let collected = collect::collect(&run.output(), &plan.artifacts, &plan.builder.output_target)?;
    Ok((collected, exit.ran_ms))
}

fn context_epoch() -> u64 {
    context::epoch_from(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())
}

fn context_spec(plan: &Plan, collected: &Collected, epoch: u64) -> ContextSpec {
    ContextSpec::new(
        &plan.runtime,
        &plan.artifacts.dest,
        &collected.artifacts,
        epoch,
    )
}

/// Compiles the README's Rust example, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;

fn join(dest: &str, path: &str) -> String {
    if dest.is_empty() {
        path.to_string()
    } else {
        format!("{dest}/{path}")
    }
}
