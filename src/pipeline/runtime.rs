//! The runtime image: the init as PID 1, the context's spec, the build through the engine.

use crate::artifacts::collect::Collected;
use crate::artifacts::pid1;
use crate::artifacts::run_dir::RunDir;
use crate::engine::{self, Engine};
use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::image::config::Platform;
use crate::image::context::{self, ContextSpec};
use crate::plan::{self, Plan};
use crate::progress::{Progress, Stage};
use crate::report::measure;
use crate::report::store::{self as baseline};
use crate::report::{BuildFacts, Report, SizedImage};

use super::up_to_date::context_epoch;
use super::{image, shared_libs};

/// The runtime config with the init in place, and what the base runs by default.
pub(crate) struct PreparedRuntime {
    pub(crate) runtime: plan::RuntimePlan,
    pub(crate) base: engine::BaseConfig,
    /// The base's facts from the engine; `None` for scratch.
    pub(crate) base_facts: Option<engine::ImageFacts>,
    pub(crate) base_bytes: u64,
    pub(crate) init: Option<pid1::Init>,
}

pub(crate) async fn prepare_runtime(
    engine: &Engine,
    plan: &Plan,
    progress: &Progress,
) -> Result<PreparedRuntime> {
    let (base_bytes, base, base_facts) = if plan.runtime.is_scratch() {
        (0, engine::BaseConfig::default(), None)
    } else {
        let facts = engine.ensure_image(&plan.runtime.base, progress).await?;
        (facts.size, facts.config.clone(), Some(facts))
    };
    let base_user = base.user.clone().unwrap_or_default();
    if let Some(warning) = image::root_warning(&plan.runtime, Some(&base_user)) {
        progress.warn(&warning);
    }
    let init = choose_init(engine, plan).await?;
    let runtime = match &init {
        None => plan.runtime.clone(),
        Some(init) => pid1::wrap(
            &plan.runtime,
            &init.path,
            base.entrypoint.as_deref(),
            base.cmd.as_deref(),
        )
        .map_err(|message| Error::Init {
            message,
            help: "the init starts the program; name it in [runtime]".into(),
        })?,
    };
    Ok(PreparedRuntime {
        runtime,
        base,
        base_facts,
        base_bytes,
        init,
    })
}

/// Find the init `runtime.init` asks for: in the base first, else a static tini in the builder.
pub(crate) async fn choose_init(engine: &Engine, plan: &Plan) -> Result<Option<pid1::Init>> {
    let r = &plan.runtime;
    match &r.init {
        plan::InitPlan::None => Ok(None),
        plan::InitPlan::Path(path) => Ok(Some(pid1::Init {
            path: path.clone(),
            binary: None,
            description: format!("{path} (named in the manifest)"),
        })),
        plan::InitPlan::Auto => {
            if !r.is_scratch() {
                if let Some(path) =
                    first_present(engine, &r.base, pid1::BASE_CANDIDATES, &plan.project).await?
                {
                    return Ok(Some(pid1::Init {
                        description: format!("tini at {path}, from the base {}", r.base),
                        path,
                        binary: None,
                    }));
                }
            }
            let builder = &plan.builder.image;
            let Some(path) =
                first_present(engine, builder, pid1::BUILDER_CANDIDATES, &plan.project).await?
            else {
                return Err(Error::Init {
                    message: format!(
                        "runtime.init = true, but neither the base {} nor the builder {builder} has tini",
                        r.base
                    ),
                    help: "install tini in the builder (Debian: the tini package, which has a static /usr/bin/tini-static), or set runtime.init to the path of an init in the image".into(),
                });
            };
            let binary = copy_out(engine, builder, &path, plan).await?;
            if !pid1::runs_anywhere(&binary) {
                return Err(Error::Init {
                    message: format!(
                        "runtime.init = true found {path} in the builder {builder}, but it is not a static binary"
                    ),
                    help: "install a static tini in the builder (Debian's tini package has /usr/bin/tini-static), or set runtime.init to an init's path in the image".into(),
                });
            }
            Ok(Some(pid1::Init {
                description: format!(
                    "tini from the builder {builder} ({path}), copied to {}",
                    pid1::COPIED_PATH
                ),
                path: pid1::COPIED_PATH.to_string(),
                binary: Some(binary),
            }))
        }
    }
}

/// The first of `paths` that is a file (or a link to one) in `image`; nothing runs in it.
pub(crate) async fn first_present(
    engine: &Engine,
    image: &str,
    paths: &[&str],
    project: &str,
) -> Result<Option<String>> {
    let files = engine.open_image_files(image, project).await?;
    let mut found = Ok(None);
    for path in paths {
        match engine.stat_image_file(&files, path).await {
            Ok(engine::Entry::File { .. } | engine::Entry::Symlink { .. }) => {
                found = Ok(Some(path.to_string()));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                found = Err(e);
                break;
            }
        }
    }
    engine.close_image_files(files).await?;
    Ok(found?)
}

/// The content of the file at `path` in `image`, copied out through a run folder of the
/// plan's output folder (removed afterwards).
pub(crate) async fn copy_out(
    engine: &Engine,
    image: &str,
    path: &str,
    plan: &Plan,
) -> Result<Vec<u8>> {
    let stage = RunDir::create(&plan.out_dir)?;
    let dest = stage.output().join("init");
    let files = engine.open_image_files(image, &plan.project).await?;
    let copied = engine.copy_image_file(&files, path, &dest).await;
    engine.close_image_files(files).await?;
    copied?;
    std::fs::read(&dest).map_err(|e| Error::io("reading", &dest, e))
}

/// Write the runtime image from the collected artifacts, measure it, deliver it, and report
/// on it; also the image as written (for the reuse store).
pub(crate) async fn build_image(
    engine: &Engine,
    plan: &Plan,
    collected: &Collected,
    progress: &Progress,
    destinations: &super::Destinations,
) -> Result<(Report, Option<String>, crate::image::WrittenImage)> {
    let builder = engine.ensure_image(&plan.builder.image, progress).await?;
    let prepared = prepare_runtime(engine, plan, progress).await?;
    let store = image::blob_store(plan);
    let base = match &prepared.base_facts {
        None => None,
        Some(facts) => Some(
            image::base_image(
                engine,
                &store,
                &plan.runtime.base,
                facts,
                destinations.registry(),
                progress,
            )
            .await?,
        ),
    };
    let steps = !prepared.runtime.steps.is_empty();
    // What dynamically linked artifacts need (checked, or copied from the builder): shipped
    // with the artifacts. Runtime steps install into a base that has its own libraries.
    let mut libraries = if steps {
        shared_libs::Libraries::default()
    } else {
        shared_libs::find_libraries(engine, plan, collected, progress).await?
    };
    let (layer, scan, created_by) = if steps {
        progress.stage(
            Stage::Image,
            &format!(
                "running {} runtime step(s) in {} with the artifacts at {}",
                prepared.runtime.steps.len(),
                plan.runtime.base,
                plan.runtime.artifacts_mount
            ),
        );
        let (layer, scan) = image::write_steps_layer(
            engine,
            plan,
            &prepared.runtime,
            prepared.base.user.as_deref(),
            prepared.init.as_ref(),
            collected,
            &store,
            progress,
        )
        .await?;
        let created_by = format!(
            "dockception: runtime steps: {}",
            prepared.runtime.steps.join(" && ")
        );
        (layer, scan, created_by)
    } else {
        let mut spec = context_spec(plan, &prepared, collected);
        spec.add_files(std::mem::take(&mut libraries.files));
        progress.stage(
            Stage::Image,
            &format!("building the runtime image on {}", plan.runtime.base),
        );
        let (layer, scan) = image::write_files_layer(spec, &store).await?;
        (layer, scan, measure::ARTIFACTS_STEP.to_string())
    };
    let platform = match &prepared.base_facts {
        Some(facts) => platform_of(facts),
        None => platform_of(&builder),
    };
    let written = image::assemble(
        &store,
        &prepared.runtime,
        base.as_ref(),
        platform,
        (layer, created_by),
    )?;
    let measured = image::measure_written(&written, plan, base.as_ref(), scan)?;
    let phase = if destinations.loads(plan) {
        format!("loading {} into the engine", written.image_id())
    } else {
        format!("delivering {}", written.image_id())
    };
    progress.stage(Stage::Image, &phase);
    let mut delivered = Vec::new();
    if destinations.loads(plan) {
        delivered.push(image::load(engine, &written, &plan.tags, base.is_some()).await?);
    }
    delivered.extend(destinations.deliver(plan, &written, progress).await?);
    let keep = written
        .layers
        .iter()
        .map(|l| l.blob.digest.clone())
        .chain([written.image_id().to_string(), written.digest().to_string()])
        .collect();
    store.prune(crate::image::blobs::DEFAULT_LIMIT, &keep);
    // The size as the engine counts it, as for any image; the rest is from what we wrote.
    let loaded = if destinations.loads(plan) {
        engine.image_facts(written.image_id()).await?
    } else {
        None
    };
    let runtime_bytes = match loaded {
        Some(facts) => facts.size,
        None => measured.layers.iter().map(|l| l.sizes.content_bytes).sum(),
    };
    let report = Report::from_measurement(
        written.image_id(),
        plan.tags.clone(),
        runtime_bytes,
        Some(SizedImage {
            image: plan.runtime.base.clone(),
            bytes: prepared.base_bytes,
        }),
        measured,
    )
    .with_build(BuildFacts {
        builder: SizedImage {
            image: plan.builder.image.clone(),
            bytes: builder.size,
        },
        unshipped: (collected.unshipped_files as u64, collected.unshipped_bytes),
        context_bytes: None,
    });
    let mut report = report;
    report.digest = Some(written.digest().to_string());
    report.delivered = delivered;
    report.libs = libraries.linkage;
    baseline::save(&plan.out_dir, &report)?;
    Ok((report, prepared.init.map(|i| i.description), written))
}

/// What an image runs on, from the engine's facts (amd64 and linux when it does not say).
fn platform_of(facts: &engine::ImageFacts) -> Platform {
    let or = |value: &str, default: &str| {
        if value.is_empty() {
            default.to_string()
        } else {
            value.to_string()
        }
    };
    Platform {
        architecture: or(&facts.architecture, "amd64"),
        os: or(&facts.os, "linux"),
    }
}

pub(crate) fn context_spec(
    plan: &Plan,
    prepared: &PreparedRuntime,
    collected: &Collected,
) -> ContextSpec {
    let epoch = context_epoch();
    let mut spec = ContextSpec::new(
        &prepared.runtime,
        &plan.artifacts.dest,
        &collected.artifacts,
        epoch,
    );
    if let Some(binary) = prepared.init.as_ref().and_then(|i| i.binary.clone()) {
        spec.extra.push(context::ExtraFile {
            image_path: pid1::COPIED_PATH.trim_start_matches('/').to_string(),
            content: binary,
            executable: true,
        });
    }
    spec
}

pub(crate) fn container_join(root: &str, subdir: &str) -> String {
    if subdir.is_empty() {
        root.to_string()
    } else {
        format!("{}/{subdir}", root.trim_end_matches('/'))
    }
}
