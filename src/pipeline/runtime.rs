//! The runtime image: the init as PID 1, the context's spec, the build through the engine.

use crate::artifacts::collect::Collected;
use crate::artifacts::pid1;
use crate::artifacts::run_dir::RunDir;
use crate::deliver::push::RegistrySettings;
use crate::engine::{self, Engine, PendingLoad};
use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::image::config::Platform;
use crate::image::context::{self, ContextSpec};
use crate::plan::{self, Plan};
use crate::progress::{Progress, Stage};
use crate::report::measure;
use crate::report::store::{self as baseline};
use crate::report::{BuildFacts, Report, SizedImage};

use super::base_files::{ImageLookup, LayerTree};
use super::up_to_date::context_epoch;
use super::{image, shared_libs};

/// The runtime config with the init in place, and what the base runs by default.
pub(crate) struct PreparedRuntime {
    pub(crate) runtime: plan::RuntimePlan,
    pub(crate) base: engine::BaseConfig,
    /// The base's facts (from the engine, or from its registry); `None` for scratch.
    pub(crate) base_facts: Option<engine::ImageFacts>,
    pub(crate) base_bytes: u64,
    pub(crate) init: Option<pid1::Init>,
    /// The base, when it was taken straight from its registry (it names one): then the engine
    /// does not have it, and its files are looked up in its layers.
    pub(crate) registry_base: Option<image::Base>,
}

/// What the runtime base runs and holds, and the init: a base that names a registry is taken
/// from there (into the blob store, no engine); any other from the engine.
pub(crate) async fn prepare_runtime(
    engine: &Engine,
    plan: &Plan,
    registry: &RegistrySettings,
    progress: &Progress,
) -> Result<PreparedRuntime> {
    let mut registry_base = None;
    let (base_bytes, base, base_facts) = if plan.runtime.is_scratch() {
        (0, engine::BaseConfig::default(), None)
    } else if crate::manifest::names_registry(&plan.runtime.base) {
        let store = image::blob_store(plan);
        let (taken, _) =
            image::registry_base(&store, &plan.runtime.base, registry, progress).await?;
        let facts = image::facts_of(&taken);
        registry_base = Some(taken);
        (facts.size, facts.config.clone(), Some(facts))
    } else {
        let facts = engine.ensure_image(&plan.runtime.base, progress).await?;
        (facts.size, facts.config.clone(), Some(facts))
    };
    let base_user = base.user.clone().unwrap_or_default();
    if let Some(warning) = image::root_warning(&plan.runtime, Some(&base_user)) {
        progress.warn(&warning);
    }
    let init = choose_init(engine, plan, registry_base.as_ref()).await?;
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
        registry_base,
    })
}

/// Where the files of `plan`'s runtime base are looked up: the layers of a base taken from
/// its registry (`registry_base`), else a container of it in the engine.
pub(crate) fn base_files<'a>(
    engine: &'a Engine,
    plan: &'a Plan,
    registry_base: Option<&image::Base>,
) -> ImageLookup<'a> {
    match registry_base {
        Some(base) => ImageLookup::Layers(LayerTree::from_scans(&base.scans)),
        None => ImageLookup::engine(engine, &plan.runtime.base, &plan.project),
    }
}

/// Find the init `runtime.init` asks for: in the base first (`registry_base`: its layers), else
/// a static tini in the builder.
pub(crate) async fn choose_init(
    engine: &Engine,
    plan: &Plan,
    registry_base: Option<&image::Base>,
) -> Result<Option<pid1::Init>> {
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
                let files = base_files(engine, plan, registry_base);
                if let Some(path) = first_present(files, pid1::BASE_CANDIDATES).await? {
                    return Ok(Some(pid1::Init {
                        description: format!("tini at {path}, from the base {}", r.base),
                        path,
                        binary: None,
                    }));
                }
            }
            let builder = &plan.builder.image;
            let files = ImageLookup::engine(engine, builder, &plan.project);
            let Some(path) = first_present(files, pid1::BUILDER_CANDIDATES).await? else {
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

/// The first of `paths` that is a file (or a link to one) in `files`; nothing runs in it.
pub(crate) async fn first_present(
    mut files: ImageLookup<'_>,
    paths: &[&str],
) -> Result<Option<String>> {
    let mut found = Ok(None);
    for path in paths {
        match files.stat(path).await {
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
    files.close().await?;
    found
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
    pending_load: Option<PendingLoad>,
) -> Result<(Report, Option<String>, crate::image::WrittenImage)> {
    let builder = engine.ensure_image(&plan.builder.image, progress).await?;
    let mut prepared = prepare_runtime(engine, plan, destinations.registry(), progress).await?;
    let store = image::blob_store(plan);
    let from_registry = prepared.registry_base.is_some();
    let base = match (&prepared.base_facts, prepared.registry_base.take()) {
        (None, _) => None,
        (Some(_), Some(taken)) => Some(taken),
        (Some(facts), None) => {
            Some(image::base_image(engine, &store, &plan.runtime.base, facts, progress).await?)
        }
    };
    let steps = !prepared.runtime.steps.is_empty();
    if steps && from_registry {
        steps_base_in_engine(engine, plan, base.as_ref(), progress).await?;
    }
    // What dynamically linked artifacts need (checked, or copied from the builder): shipped
    // with the artifacts. Runtime steps install into a base that has its own libraries.
    let mut libraries = if steps {
        shared_libs::Libraries::default()
    } else {
        let files = base_files(engine, plan, base.as_ref().filter(|_| from_registry));
        shared_libs::find_libraries(engine, plan, collected, files, progress).await?
    };
    let (mut layer, mut scan, created_by) = if steps {
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
    let config = image::write_config(
        &prepared.runtime,
        base.as_ref(),
        platform,
        &layer.diff_id,
        created_by,
    )?;
    let loadable = image::loadable(&config, base.as_ref(), &store, &layer);
    let loads = destinations.loads(plan);
    let phase = if loads {
        format!("loading {} into the engine", loadable.image_id)
    } else {
        format!("delivering {}", loadable.image_id)
    };
    progress.stage(Stage::Image, &phase);
    // The engine takes our layer's plain tar while its gzip (for the manifest digest, the
    // report's sizes, a push or an output) finishes beside it: neither waits for the other.
    let loading = async {
        if !loads {
            return Ok((None, None));
        }
        // A base from the engine is there; one from a registry only when the engine has it too.
        let engine_has_base = match &base {
            None => false,
            Some(_) if !from_registry => true,
            Some(taken) => engine.image_facts(&taken.image.image_id).await?.is_some(),
        };
        // The size as the engine counts it, as for any image; the rest is from what we wrote.
        let (delivery, facts) = image::load(
            engine,
            loadable,
            &store,
            &plan.tags,
            engine_has_base,
            pending_load,
        )
        .await?;
        Ok((Some(delivery), Some(facts)))
    };
    // The plain tar stays until the load is over; the first to fail stops the other (a load
    // cut short tags nothing).
    let tar = layer.take_tar();
    let sealing = image::seal(&store, &prepared.runtime, base.as_ref(), config, layer);
    let ((delivery, loaded), written) = tokio::try_join!(loading, sealing)?;
    drop(tar);
    scan.gzip_bytes = written.layers.last().map_or(0, |l| l.blob.size);
    let measured = image::measure_written(&written, plan, base.as_ref(), scan)?;
    let mut delivered: Vec<_> = delivery.into_iter().collect();
    delivered.extend(destinations.deliver(plan, &written, progress).await?);
    let keep = written
        .layers
        .iter()
        .map(|l| l.blob.digest.clone())
        .chain([written.image_id().to_string(), written.digest().to_string()])
        .collect();
    store.prune(crate::image::blobs::DEFAULT_LIMIT, &keep);
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

/// Runtime steps run in a container of the base, so a base taken from its registry must be in
/// the engine too (the engine pulls it), and be the same image the layers came from.
async fn steps_base_in_engine(
    engine: &Engine,
    plan: &Plan,
    base: Option<&image::Base>,
    progress: &Progress,
) -> Result<()> {
    let facts = engine.ensure_image(&plan.runtime.base, progress).await?;
    match base {
        Some(taken) if taken.image.image_id != facts.id => Err(Error::Usage {
            message: format!(
                "the base {} is {} on its registry but {} in the engine, and the runtime steps run in the engine's",
                plan.runtime.base, taken.image.image_id, facts.id
            ),
            help: format!(
                "pull it again (docker pull {}), or name the base by digest (NAME@sha256:...)",
                plan.runtime.base
            ),
        }),
        _ => Ok(()),
    }
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
