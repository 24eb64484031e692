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

pub mod collect;
pub mod context;
pub mod engine;
pub mod error;
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

/// Run the whole pipeline: build the artifacts, build and tag the runtime image, report.
pub async fn build(engine: &Engine, plan: &Plan, progress: &Progress) -> Result<Report> {
    let builder = engine.ensure_image(&plan.builder.image, progress).await?;
    let base_bytes = if plan.runtime.is_scratch() {
        0
    } else {
        engine
            .ensure_image(&plan.runtime.base, progress)
            .await?
            .size
    };
    let run = RunDir::create(&plan.out_dir)?;
    let collected = build_artifacts(engine, plan, &run, progress).await?;
    let spec = context_spec(plan, &collected);
    progress.phase(&format!(
        "building the runtime image on {}",
        plan.runtime.base
    ));
    let built = image::build(engine, spec, &plan.project, &plan.tags, progress).await?;
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
    Ok(Report::new(
        built.id,
        plan.tags.clone(),
        SizedImage {
            image: plan.builder.image.clone(),
            bytes: builder.size,
        },
        SizedImage {
            image: plan.runtime.base.clone(),
            bytes: base_bytes,
        },
        runtime.size,
        artifacts,
        (collected.unshipped_files, collected.unshipped_bytes),
        built.context_bytes,
    ))
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
    let collected = build_artifacts(engine, plan, &run, progress).await?;
    let spec = context_spec(plan, &collected);
    let written = tokio::task::block_in_place(|| context::write(&spec, out))
        .map_err(|e| Error::io("writing the build context to", "standard output", e))?;
    run.promote()?;
    Ok(written)
}

/// Run the builder into the run's fresh output folder and select the artifacts.
async fn build_artifacts(
    engine: &Engine,
    plan: &Plan,
    run: &RunDir,
    progress: &Progress,
) -> Result<Collected> {
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
    collect::collect(&run.output(), &plan.artifacts, &plan.builder.output_target)
}

fn context_spec(plan: &Plan, collected: &Collected) -> ContextSpec {
    let epoch = context::epoch_from(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref());
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
