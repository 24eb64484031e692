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

pub mod clean;
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
pub mod secrets;

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
    let base_user = if plan.runtime.is_scratch() {
        Some(String::new())
    } else {
        engine.image_user(&plan.runtime.base).await?
    };
    if let Some(warning) = image::root_warning(&plan.runtime, base_user.as_deref()) {
        progress.warn(&warning);
    }
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
    // The tar is made on a blocking thread and written chunk by chunk, so an interrupt is
    // noticed between chunks instead of after the whole context.
    let mut out = out;
    let mut written = 0u64;
    let mut chunks = std::pin::pin!(context::stream(spec));
    while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
        let chunk =
            chunk.map_err(|e| Error::io("making the build context for", "standard output", e))?;
        tokio::task::block_in_place(|| out.write_all(&chunk))
            .map_err(|e| Error::io("writing the build context to", "standard output", e))?;
        written += chunk.len() as u64;
    }
    tokio::task::block_in_place(|| out.flush())
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
    let secrets = secrets::resolve(&plan.builder, |name| std::env::var_os(name))?;
    engine.ensure_caches(plan, progress).await?;
    progress.phase(&format!(
        "building in {}: {}",
        plan.builder.image,
        plan.builder.command.join(" ")
    ));
    let exit = engine
        .run_builder_with(plan, &run.output(), &secrets, progress)
        .await?;
    if exit.code != 0 {
        return Err(Error::BuildCommandFailed {
            code: exit.code,
            image: plan.builder.image.clone(),
            tail: exit.tail,
        });
    }
    progress.phase(&format!(
        "selecting artifacts in {}",
        plan.builder.output_target
    ));
    // Walking a large output takes a while: do it off the async threads, and stop it when
    // this future is dropped (Ctrl-C) so the run's folder can go.
    let cancel = CancelOnDrop::default();
    let (root, rules, from) = (
        run.output(),
        plan.artifacts.clone(),
        plan.builder.output_target.clone(),
    );
    let flag = std::sync::Arc::clone(&cancel.0);
    let collected =
        tokio::task::spawn_blocking(move || collect::collect_until(&root, &rules, &from, &flag))
            .await
            .map_err(|e| {
                Error::io(
                    "selecting artifacts in",
                    run.output(),
                    std::io::Error::other(e),
                )
            })??;
    for skipped in &collected.skipped {
        progress.warn(skipped);
    }
    Ok(collected)
}

/// Sets its flag when dropped, which tells a blocking task to stop.
#[derive(Default)]
struct CancelOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
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
