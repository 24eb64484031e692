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
pub mod elf;
pub mod embed;
pub mod engine;
pub mod error;
pub mod image;
pub mod init;
pub mod interrupt;
pub mod libs;
pub mod manifest;
pub mod outdir;
pub mod plan;
pub mod progress;
pub mod report;
pub mod rust;
pub mod shape;
pub mod vars;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

pub use embed::build_blocking;
pub use engine::Engine;
pub use error::{Error, Result};
pub use plan::{Plan, PlanSet, Selection, TagOverride};
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
    /// Which targets to build.
    pub selection: Selection,
    /// Tags that replace the manifest's, per target (`TARGET=NAME`) or for the only target.
    pub tags: Vec<TagOverride>,
    /// Variables from `--set NAME=VALUE`; they win over the environment and the manifest.
    pub set: BTreeMap<String, String>,
    /// The tool's output folder (default: `.dockception` next to the manifest).
    pub out_dir: Option<PathBuf>,
    /// The manifest's text, when it does not come from the file: `manifest` then only names it
    /// in messages, and relative paths still resolve against its folder.
    pub source: Option<String>,
}

/// Load and check the manifest (variables from `[vars]`, the `DOCKCEPTION_VAR_*` environment
/// and `--set`), then resolve the selected targets into a plan for the invoking user.
pub fn load_plan(options: &Options) -> Result<PlanSet> {
    let overrides = vars::Overrides {
        env: vars::Overrides::from_env(std::env::vars()),
        set: options.set.clone(),
    };
    let loaded = match &options.source {
        Some(text) => manifest::parse_with(&options.manifest, text.clone(), &overrides)?,
        None => manifest::load_with(&options.manifest, &overrides)?,
    };
    let plan_options = plan::PlanOptions {
        invoking_user: Some((
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )),
        tags: options.tags.clone(),
        out_dir: options.out_dir.clone(),
        selection: options.selection.clone(),
    };
    plan::plan(&loaded, &plan_options)
}

/// The report of one target's image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TargetReport {
    /// The target's name.
    pub target: String,
    /// Its report.
    #[serde(flatten)]
    pub report: Report,
}

/// Run the whole pipeline for every target of the plan, in order: build the artifacts, build
/// and tag the selected targets' runtime images, report on each.
pub async fn build(
    engine: &Engine,
    plans: &PlanSet,
    progress: &Progress,
) -> Result<Vec<TargetReport>> {
    let mut outputs = Outputs::new();
    let mut reports = Vec::new();
    for plan in &plans.targets {
        if plans.targets.len() > 1 {
            progress.phase(&format!("target {}", plan.target));
        }
        let produced = produce_artifacts(engine, plan, &outputs, progress).await?;
        if plans.is_selected(&plan.target) {
            let report = build_image(engine, plan, &produced.collected, progress).await?;
            reports.push(TargetReport {
                target: plan.target.clone(),
                report,
            });
        }
        produced.keep(plan, &mut outputs)?;
    }
    Ok(reports)
}

/// Build the artifacts of the one selected target (and of the targets it takes artifacts
/// from), then write its runtime image's build context to `out` (a tar); returns the bytes
/// written.
pub async fn write_context(
    engine: &Engine,
    plans: &PlanSet,
    progress: &Progress,
    out: impl Write,
) -> Result<u64> {
    let [target] = plans.selected.as_slice() else {
        return Err(Error::Usage {
            message: format!(
                "`context` writes one image's context, but {} targets are selected",
                plans.selected.len()
            ),
            help: format!(
                "name one: dockception context TARGET ({})",
                plans.order.join(", ")
            ),
        });
    };
    let mut outputs = Outputs::new();
    for plan in &plans.targets {
        let produced = produce_artifacts(engine, plan, &outputs, progress).await?;
        if &plan.target == target {
            if !plan.runtime.is_scratch() {
                engine.ensure_image(&plan.runtime.base, progress).await?;
            }
            let mut libraries =
                libs::find_libraries(engine, plan, &produced.collected, progress).await?;
            let mut spec = context_spec(plan, &produced.collected);
            spec.add_files(std::mem::take(&mut libraries.files));
            let written = tokio::task::block_in_place(|| context::write(&spec, out))
                .map_err(|e| Error::io("writing the build context to", "standard output", e))?;
            produced.keep(plan, &mut outputs)?;
            return Ok(written);
        }
        produced.keep(plan, &mut outputs)?;
    }
    Err(Error::Usage {
        message: format!("target `{target}` was not planned"),
        help: "name a target of the manifest".into(),
    })
}

/// Each finished target's kept output folder, for the targets that take artifacts from it.
type Outputs = BTreeMap<String, PathBuf>;

/// A target's artifacts, and the run folder that holds them until they are kept.
struct Produced {
    collected: Collected,
    run: Option<RunDir>,
}

impl Produced {
    /// Keep the run's output as the target's `last/` one, for later targets and runs.
    fn keep(self, plan: &Plan, outputs: &mut Outputs) -> Result<()> {
        if let Some(run) = self.run {
            let last = run.promote()?;
            outputs.insert(plan.target.clone(), last);
        }
        Ok(())
    }
}

/// Run the target's builder into a fresh output folder, or take the output of the target it
/// takes artifacts from; then select the artifacts.
async fn produce_artifacts(
    engine: &Engine,
    plan: &Plan,
    outputs: &Outputs,
    progress: &Progress,
) -> Result<Produced> {
    if let Some(from) = &plan.artifacts_from {
        let root = outputs.get(from).ok_or_else(|| Error::Usage {
            message: format!(
                "target `{}` needs target `{from}`, which did not run",
                plan.target
            ),
            help: format!("build both: dockception build {from} {}", plan.target),
        })?;
        let collected = collect::collect(
            &root.join(&plan.artifacts.subdir),
            &plan.artifacts,
            &format!(
                "{from}:{}",
                container_join(&plan.builder.output_target, &plan.artifacts.subdir)
            ),
        )?;
        return Ok(Produced {
            collected,
            run: None,
        });
    }
    engine.ensure_image(&plan.builder.image, progress).await?;
    let run = RunDir::create(&plan.out_dir)?;
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
    let collected = collect::collect(
        &run.output().join(&plan.artifacts.subdir),
        &plan.artifacts,
        &plan.builder.output_target,
    )?;
    Ok(Produced {
        collected,
        run: Some(run),
    })
}

/// Build and tag the runtime image from the collected artifacts, and report on it.
async fn build_image(
    engine: &Engine,
    plan: &Plan,
    collected: &Collected,
    progress: &Progress,
) -> Result<Report> {
    let builder = engine.ensure_image(&plan.builder.image, progress).await?;
    let base_bytes = if plan.runtime.is_scratch() {
        0
    } else {
        engine
            .ensure_image(&plan.runtime.base, progress)
            .await?
            .size
    };
    let mut libraries = libs::find_libraries(engine, plan, collected, progress).await?;
    let mut spec = context_spec(plan, collected);
    spec.add_files(std::mem::take(&mut libraries.files));
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
    );
    report.libs = libraries.linkage;
    Ok(report)
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

fn container_join(root: &str, subdir: &str) -> String {
    if subdir.is_empty() {
        root.to_string()
    } else {
        format!("{}/{subdir}", root.trim_end_matches('/'))
    }
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
