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
//! The report step measures the image from its export ([`measure`], [`waste`]), compares it
//! with a baseline ([`diff`], [`baseline`]) and checks the [`gates`].
//!
//! Only [`engine`] talks to Docker; the other steps are plain functions over plain values.

pub mod baseline;
pub mod collect;
pub mod context;
pub mod diff;
pub mod engine;
pub mod error;
pub mod gates;
pub mod image;
pub mod manifest;
pub mod measure;
pub mod outdir;
pub mod plan;
pub mod progress;
pub mod report;
pub mod waste;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use engine::Engine;
pub use error::{Error, Result};
pub use plan::Plan;
pub use progress::Progress;
pub use report::Report;

use baseline::Source;
use collect::Collected;
use context::ContextSpec;
use gates::{GateFlags, GateSet};
use measure::{MeasureContext, RulePlan};
use outdir::RunDir;
use report::{BuildFacts, Document, SizedImage};

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
    progress.phase("measuring the runtime image");
    let context = measure_context(engine, plan).await?;
    let measured = measure_export(engine, &built.id, context).await?;
    let report = Report::from_measurement(
        &built.id,
        plan.tags.clone(),
        runtime.size,
        Some(SizedImage {
            image: plan.runtime.base.clone(),
            bytes: base_bytes,
        }),
        measured,
    )
    .with_build(BuildFacts {
        builder: SizedImage {
            image: plan.builder.image.clone(),
            bytes: builder.size,
        },
        unshipped: (collected.unshipped_files as u64, collected.unshipped_bytes),
        context_bytes: built.context_bytes,
    });
    baseline::save(&plan.out_dir, &report)?;
    Ok(report)
}

/// What measuring an image of `plan` knows: the base's layers and the artifact rules.
async fn measure_context(engine: &Engine, plan: &Plan) -> Result<MeasureContext> {
    let base = if plan.runtime.is_scratch() {
        None
    } else {
        engine.image_details(&plan.runtime.base).await?
    };
    Ok(MeasureContext {
        base_layers: base.as_ref().map(|b| b.layers.clone()).unwrap_or_default(),
        base_history_len: base.map_or(0, |b| b.history_len),
        rules: Some(RulePlan {
            include: plan.artifacts.include.clone(),
            dest: plan.artifacts.dest.clone(),
        }),
    })
}

/// Export `image` and measure it as it streams past.
async fn measure_export(
    engine: &Engine,
    image: &str,
    context: MeasureContext,
) -> Result<measure::Measurement> {
    engine
        .read_exported_image(image, move |reader| {
            measure::scan(reader).map(|saved| measure::measure(&saved, &context))
        })
        .await?
        .map_err(|e| Error::Measure {
            image: image.to_string(),
            message: e.to_string(),
        })
}

/// Measure any local image. When `plan` is given and the image was built by dockception (it
/// carries the `dockception=image` label), layers of the plan's base are told apart and
/// artifacts are attributed to the plan's rules; other images are measured on their own.
pub async fn measure_image(
    engine: &Engine,
    image: &str,
    plan: Option<&Plan>,
    progress: &Progress,
) -> Result<Report> {
    let details = engine
        .image_details(image)
        .await?
        .ok_or_else(|| Error::Measure {
            image: image.to_string(),
            message: "the engine has no such image\n  help: build or pull it first, or name a report file (*.json) instead".into(),
        })?;
    progress.phase(&format!("measuring image {image}"));
    let built_by_us = details.labels.get(plan::LABEL).map(String::as_str) == Some("image");
    let (context, base) = match plan.filter(|_| built_by_us) {
        Some(plan) => {
            let base = if plan.runtime.is_scratch() {
                Some(SizedImage {
                    image: "scratch".into(),
                    bytes: 0,
                })
            } else {
                engine
                    .image_details(&plan.runtime.base)
                    .await?
                    .map(|b| SizedImage {
                        image: plan.runtime.base.clone(),
                        bytes: b.size,
                    })
            };
            (measure_context(engine, plan).await?, base)
        }
        None => (MeasureContext::default(), None),
    };
    let measured = measure_export(engine, &details.id, context).await?;
    let tags = if details.tags.iter().any(|t| t == image) || details.tags.is_empty() {
        details.tags.clone()
    } else {
        vec![image.to_string()]
    };
    Ok(Report::from_measurement(
        &details.id,
        tags,
        details.size,
        base,
        measured,
    ))
}

/// The gates of the manifest at `manifest` (when given) with `flags` on top; every problem is
/// one [`Error::GateConfig`] (exit status 2).
pub fn load_gates(manifest: Option<&Path>, flags: &GateFlags) -> Result<GateSet> {
    let loaded = manifest.map(manifest::load).transpose()?;
    GateSet::resolve(loaded.as_ref(), flags)
}

/// Load a report file, or measure an image (which needs `engine`). A file or image that does
/// not exist is [`Error::BaselineMissing`] when `as_baseline`.
pub async fn load_source(
    source: &Source,
    engine: Option<&Engine>,
    plan: Option<&Plan>,
    progress: &Progress,
    as_baseline: bool,
) -> Result<Report> {
    match source {
        Source::File(path) => match baseline::load_if_present(path)? {
            Some(report) => Ok(report),
            None if as_baseline => Err(Error::BaselineMissing {
                source_name: source.name(),
                reason: "no such file".into(),
                help: "name a report.json a build wrote (e.g. the main branch's, kept as a CI artifact) or an image".into(),
            }),
            None => Err(Error::ReportFile {
                action: "reading",
                path: path.clone(),
                message: "no such file; build first (it writes report.json into the output folder)".into(),
            }),
        },
        Source::Image(image) => {
            let engine = engine.ok_or_else(|| Error::Measure {
                image: image.clone(),
                message: "measuring an image needs a Docker Engine".into(),
            })?;
            if as_baseline && engine.image_facts(image).await?.is_none() {
                return Err(Error::BaselineMissing {
                    source_name: source.name(),
                    reason: "the engine has no such image".into(),
                    help: "pull or build it first, or name a report file (*.json)".into(),
                });
            }
            measure_image(engine, image, plan, progress).await
        }
    }
}

/// Compare `current` with `baseline` (a report and where it came from) and check the gates.
pub fn review(current: Report, baseline: Option<(Report, String)>, gates: &GateSet) -> Document {
    let diff = baseline.as_ref().map(|(b, _)| diff::diff(b, &current));
    let outcome = gates
        .any()
        .then(|| gates::evaluate(gates, &current, diff.as_ref()));
    Document::new(
        current,
        baseline.as_ref().map(|(b, source)| (b, source.clone())),
        diff,
        outcome,
    )
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
