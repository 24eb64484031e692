//! The chain for each command: build (artifacts, image, report), context, caches, review.

pub mod caches;
pub mod fingerprint;
pub mod image;
pub mod interrupt;
pub mod schedule;
pub mod shared_libs;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::artifacts::collect::{self, Collected};
use crate::artifacts::pid1;
use crate::artifacts::run_dir::RunDir;
use crate::engine::{self, Engine};
use crate::error::{Error, Result};
use crate::image::context::{self, ContextSpec};
use crate::manifest;
use crate::plan::{self, secrets, Plan, PlanSet};
use crate::progress::{self, Progress};
use crate::report::gates::{self, GateFlags, GateSet};
use crate::report::measure::{self, MeasureContext, RulePlan};
use crate::report::store::{self as baseline, Source};
use crate::report::{diff, BuildFacts, Document, Report, SizedImage};

use caches as cache;

/// The report of one target's image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TargetReport {
    /// The target's name.
    pub target: String,
    /// The init that runs as PID 1 and where it came from, when `runtime.init` asks for one.
    pub init: Option<String>,
    /// Its report.
    #[serde(flatten)]
    pub report: Report,
}

/// Run the whole pipeline for every target of the plan: build the artifacts, build and tag the
/// selected targets' runtime images, report on each. Targets that do not take artifacts from
/// each other build at the same time (see [`build_if_changed`]). Always builds; records each
/// image's inputs so a later [`build_if_changed`] knows what it made.
pub async fn build(
    engine: &Engine,
    plans: &PlanSet,
    progress: &Progress,
) -> Result<Vec<TargetReport>> {
    build_if_changed(engine, plans, progress, true).await
}

/// Like [`build`], but a selected target that runs its own builder is skipped when nothing
/// changed: when its inputs' fingerprint (plan, builder and base image ids, mounted sources)
/// equals its last successful build's and that image still carries its tags, nothing runs and
/// that build's report comes back with `up_to_date` set. `force` builds anyway.
///
/// A target starts as soon as the target it takes artifacts from has finished, so targets that
/// do not depend on each other build at the same time, within this one call; the reports come
/// back in the plan's order all the same. With several targets, what each prints is marked
/// with its name (`[NAME]`), and a failure is [`Error::InTarget`], naming it: the other
/// targets are stopped, and their containers, untagged images and run folders removed, before
/// the error comes back.
pub async fn build_if_changed(
    engine: &Engine,
    plans: &PlanSet,
    progress: &Progress,
    force: bool,
) -> Result<Vec<TargetReport>> {
    let several = plans.targets.len() > 1;
    let in_target = |target: &str, e: Error| {
        if several {
            Error::InTarget {
                target: target.to_string(),
                source: Box::new(e),
            }
        } else {
            e
        }
    };
    // A secret that cannot be had stops the run before any target starts, even one that is
    // up to date.
    let mut secrets = Vec::with_capacity(plans.targets.len());
    for plan in &plans.targets {
        secrets.push(match plan.artifacts_from {
            None => Some(
                secrets::resolve(&plan.builder, |name| std::env::var_os(name))
                    .map_err(|e| in_target(&plan.target, e.into()))?,
            ),
            Some(_) => None,
        });
    }
    let width = plans
        .targets
        .iter()
        .map(|p| p.target.chars().count() + 2)
        .max()
        .unwrap_or(0);
    let before = Tracked::now(engine);
    let mut schedule = schedule::Schedule::of(&plans.targets);
    let mut outputs = Outputs::new();
    let mut reports: Vec<Option<TargetReport>> = vec![None; plans.targets.len()];
    let mut running = FuturesUnordered::new();
    loop {
        for i in schedule.start() {
            let plan = &plans.targets[i];
            let label = if several {
                format!("{:<width$}", format!("[{}]", plan.target))
            } else {
                String::new()
            };
            let secrets = secrets[i].take();
            // Each target gets the outputs of those finished so far, which include every
            // target it takes artifacts from.
            let work = build_target(
                engine,
                plans,
                plan,
                outputs.clone(),
                secrets,
                progress,
                force,
            );
            running.push(progress::labelled(label, async move { (i, work.await) }));
        }
        let Some((i, result)) = running.next().await else {
            break;
        };
        let plan = &plans.targets[i];
        match result {
            Ok(built) => {
                if let Some(output) = built.output {
                    outputs.insert(plan.target.clone(), output);
                }
                reports[i] = built.report;
                schedule.finish(i);
            }
            Err(e) => {
                stop_the_others(engine, &before, running).await;
                return Err(in_target(&plan.target, e));
            }
        }
    }
    let waiting: Vec<&str> = schedule
        .waiting()
        .into_iter()
        .map(|i| plans.targets[i].target.as_str())
        .collect();
    if !waiting.is_empty() {
        return Err(Error::Usage {
            message: format!(
                "targets {} take artifacts from each other, so none of them can start",
                waiting.join(", ")
            ),
            help: "make one of them build its own artifacts".into(),
        });
    }
    Ok(reports.into_iter().flatten().collect())
}

/// What a finished target leaves for the rest of the build.
struct Built {
    /// Its report, when its image was built (or is up to date).
    report: Option<TargetReport>,
    /// Its kept output folder, for the targets that take artifacts from it.
    output: Option<PathBuf>,
}

/// One target of [`build_if_changed`]: nothing when it is up to date (unless `force`), else
/// its artifacts (from its builder, or from the output in `outputs` of the target it takes
/// them from), then, when it is selected, its image, tagged and measured.
async fn build_target(
    engine: &Engine,
    plans: &PlanSet,
    plan: &Plan,
    outputs: Outputs,
    secrets: Option<secrets::Resolved>,
    progress: &Progress,
    force: bool,
) -> Result<Built> {
    let selected = plans.is_selected(&plan.target);
    let fingerprinted = if selected && plan.artifacts_from.is_none() {
        Some(fingerprint_target(engine, plan, progress).await?)
    } else {
        None
    };
    if let Some((_, print, previous)) = &fingerprinted {
        if !force {
            if let Some(last) = previous.last_build_with(print) {
                let last_output = plan.out_dir.join("last");
                if last_output.is_dir()
                    && engine
                        .carries_tags(&last.report.image_id, &last.report.tags)
                        .await?
                {
                    let mut report = last.report.clone();
                    report.up_to_date = true;
                    report.build_command_ms = None;
                    return Ok(Built {
                        report: Some(TargetReport {
                            target: plan.target.clone(),
                            init: None,
                            report,
                        }),
                        output: Some(last_output),
                    });
                }
            }
        }
    }
    let produced = produce_artifacts(engine, plan, &outputs, secrets.as_ref(), progress).await?;
    let mut built = None;
    if selected {
        let (mut report, init) = build_image(engine, plan, &produced.collected, progress).await?;
        report.build_command_ms = produced.ran_ms;
        if let Some((sources, print, _)) = fingerprinted {
            let state = fingerprint::State::after_build(sources, print, report.clone());
            if let Err(e) = state.save(&plan.out_dir) {
                progress.warn(&format!(
                    "{e}; the next build cannot tell whether it is up to date"
                ));
            }
        }
        built = Some(TargetReport {
            target: plan.target.clone(),
            init,
            report,
        });
    }
    Ok(Built {
        report: built,
        output: produced.promote()?,
    })
}

/// The containers and untagged images an engine tracks at one moment.
struct Tracked {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Tracked {
    fn now(engine: &Engine) -> Tracked {
        Tracked {
            containers: engine.live_containers(),
            images: engine.untagged_images(),
        }
    }

    /// What the engine tracks now that it did not then: what the work since created and has
    /// not removed (yet).
    fn new_since(&self, engine: &Engine) -> Tracked {
        let now = Tracked::now(engine);
        Tracked {
            containers: now
                .containers
                .into_iter()
                .filter(|c| !self.containers.contains(c))
                .collect(),
            images: now
                .images
                .into_iter()
                .filter(|i| !self.images.contains(i))
                .collect(),
        }
    }
}

/// After one target failed, stop the others (`running`): remove the containers and untagged
/// images created since `before` first, while their futures still hold the run folders, so no
/// container writes into a folder being removed; then drop them, which removes the folders and
/// stops their blocking work. A create request still in flight when they stopped may land a
/// moment later, so the containers are removed by name once more. What the engine created
/// since `before` is taken to be this build's: an engine serves one run at a time, as its
/// interrupt cleanup ([`Engine::remove_leftovers`]) assumes too.
async fn stop_the_others<F>(engine: &Engine, before: &Tracked, running: FuturesUnordered<F>) {
    let created = before.new_since(engine);
    if created.containers.is_empty() && created.images.is_empty() {
        return;
    }
    engine
        .remove_created(&created.containers, &created.images)
        .await;
    drop(running);
    if !created.containers.is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        engine.remove_created(&created.containers, &[]).await;
    }
}

/// The fingerprint of a target's inputs, the sources scanned for it, and the last state.
async fn fingerprint_target(
    engine: &Engine,
    plan: &Plan,
    progress: &Progress,
) -> Result<(fingerprint::Sources, String, fingerprint::State)> {
    // The sources are scanned on a blocking thread while the engine answers.
    let images = async {
        let builder = engine.ensure_image(&plan.builder.image, progress).await?;
        let base_id = if plan.runtime.is_scratch() {
            "scratch".to_string()
        } else {
            engine.ensure_image(&plan.runtime.base, progress).await?.id
        };
        Ok::<_, Error>((builder, base_id))
    };
    let ((builder, base_id), (sources, previous)) = tokio::try_join!(images, scan_sources(plan))?;
    let print = fingerprint::fingerprint(
        &fingerprint::Inputs {
            plan,
            builder_id: &builder.id,
            base_id: &base_id,
            epoch: context_epoch(),
        },
        &sources,
    );
    Ok((sources, print, previous))
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

fn context_epoch() -> u64 {
    context::epoch_from(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())
}

/// Every cache volume of the targets that run a builder, once each.
fn all_caches(plans: &PlanSet) -> Vec<plan::CacheVolume> {
    let mut caches: Vec<plan::CacheVolume> = Vec::new();
    for plan in plans.targets.iter().filter(|p| p.artifacts_from.is_none()) {
        for cache in &plan.builder.caches {
            if !caches.iter().any(|c| c.volume == cache.volume) {
                caches.push(cache.clone());
            }
        }
    }
    caches
}

/// The manifest's cache volumes, whether they exist and their size; with `all`, every other
/// dockception cache volume on the engine too. Sizes are measured in one short container of a
/// builder image (when it is present).
pub async fn list_caches(
    engine: &Engine,
    plans: &PlanSet,
    all: bool,
) -> Result<Vec<cache::CacheRow>> {
    let caches = all_caches(plans);
    let mut existing = Vec::new();
    for c in &caches {
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
    let mut rows = cache::rows(&caches, &plans.project, &existing, &others);
    let measured: Vec<String> = rows
        .iter()
        .filter(|r| r.exists)
        .map(|r| r.volume.clone())
        .collect();
    let builder = plans
        .targets
        .iter()
        .find(|p| p.artifacts_from.is_none())
        .map(|p| p.builder.image.clone());
    if let Some(builder) = builder {
        if !measured.is_empty() && engine.image_facts(&builder).await?.is_some() {
            let sizes = engine
                .volume_sizes(&builder, &measured, &plans.project)
                .await?;
            for row in &mut rows {
                row.bytes = sizes.get(&row.volume).copied();
            }
        }
    }
    Ok(rows)
}

/// Remove the manifest's cache volumes; `selector` narrows it to a target's caches (by target
/// name), or to one cache (see [`cache::select`]). Returns each with whether it existed.
pub async fn remove_caches(
    engine: &Engine,
    plans: &PlanSet,
    selector: Option<&str>,
) -> Result<Vec<(plan::CacheVolume, bool)>> {
    let chosen: Vec<plan::CacheVolume> = match selector.and_then(|s| plans.target(s)) {
        Some(target) => target.builder.caches.clone(),
        None => cache::select(&all_caches(plans), selector)?
            .into_iter()
            .cloned()
            .collect(),
    };
    let mut removed = Vec::new();
    for c in chosen {
        let existed = engine.remove_volume(&c.volume).await?;
        removed.push((c, existed));
    }
    Ok(removed)
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
        let produced = produce_artifacts(engine, plan, &outputs, None, progress).await?;
        if &plan.target == target {
            let prepared = prepare_runtime(engine, plan, progress).await?;
            if !prepared.runtime.steps.is_empty() {
                return Err(Error::Usage {
                    message: format!("target `{target}` has runtime.run steps, which a Dockerfile context cannot express (the artifacts are mounted, not copied)"),
                    help: "use dockception build for this target".into(),
                });
            }
            let mut libraries =
                shared_libs::find_libraries(engine, plan, &produced.collected, progress).await?;
            let mut spec = context_spec(plan, &prepared, &produced.collected);
            spec.add_files(std::mem::take(&mut libraries.files));
            // The tar is made on a blocking thread and written chunk by chunk, so an interrupt
            // is noticed between chunks instead of after the whole context.
            let mut out = out;
            let mut written = 0u64;
            let mut chunks = std::pin::pin!(context::stream(spec));
            while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
                let chunk = chunk
                    .map_err(|e| Error::io("making the build context for", "standard output", e))?;
                tokio::task::block_in_place(|| out.write_all(&chunk))
                    .map_err(|e| Error::io("writing the build context to", "standard output", e))?;
                written += chunk.len() as u64;
            }
            tokio::task::block_in_place(|| out.flush())
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
    /// How long the build command ran, when it ran.
    ran_ms: Option<u64>,
}

impl Produced {
    /// Keep the run's output as the target's `last/` one, for later targets and runs.
    fn keep(self, plan: &Plan, outputs: &mut Outputs) -> Result<()> {
        if let Some(last) = self.promote()? {
            outputs.insert(plan.target.clone(), last);
        }
        Ok(())
    }

    /// Make the run's output the target's `last/` one; returns its path, when a builder ran.
    fn promote(self) -> Result<Option<PathBuf>> {
        Ok(self.run.map(RunDir::promote).transpose()?)
    }
}

/// Run the target's builder into a fresh output folder, or take the output of the target it
/// takes artifacts from; then select the artifacts. `secrets` are the builder's when the caller
/// resolved them already.
async fn produce_artifacts(
    engine: &Engine,
    plan: &Plan,
    outputs: &Outputs,
    secrets: Option<&secrets::Resolved>,
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
            ran_ms: None,
        });
    }
    let builder = engine.ensure_image(&plan.builder.image, progress).await?;
    let secrets = match secrets {
        Some(resolved) => resolved.clone(),
        None => secrets::resolve(&plan.builder, |name| std::env::var_os(name))?,
    };
    engine.ensure_caches(plan, progress).await?;
    progress.phase(&format!(
        "building in {}: {}",
        plan.builder.image,
        plan.builder.command.join(" ")
    ));
    let (exit, run) = match run_warm(engine, plan, &builder, &secrets, progress).await? {
        Some(done) => done,
        None => {
            let run = RunDir::create(&plan.out_dir)?;
            let exit = engine
                .run_builder_with(plan, &run.output(), &secrets, progress)
                .await?;
            (exit, run)
        }
    };
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
        run.output().join(&plan.artifacts.subdir),
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
    Ok(Produced {
        collected,
        run: Some(run),
        ran_ms: Some(exit.ran_ms),
    })
}

/// Run the build in the target's warm builder (`builder.warm`), when the plan asks for one and
/// no other dockception is using it; `None` means the build is still to run in a fresh
/// container. The warm container's output mount is `<out_dir>/warm/output`, a folder that
/// stays (the mount points at it): it is emptied before the command runs, and its entries are
/// moved into a fresh run folder afterwards, so the rest of the pipeline sees a run like any
/// other.
async fn run_warm(
    engine: &Engine,
    plan: &Plan,
    builder: &engine::ImageFacts,
    secrets: &secrets::Resolved,
    progress: &Progress,
) -> Result<Option<(engine::BuilderExit, RunDir)>> {
    if plan.builder.warm.is_none() {
        return Ok(None);
    }
    let dir = plan.out_dir.join("warm");
    let output = dir.join("output");
    std::fs::create_dir_all(&output)
        .map_err(|e| Error::io("creating the warm builder's folder", &output, e))?;
    let lock_path = dir.join("lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("opening", &lock_path, e))?;
    // flock, not `File::try_lock`: the same lock, within the crate's minimum Rust version.
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            progress.warn(&format!(
                "another dockception is building target {} in its warm builder; this build runs in a fresh container",
                plan.target
            ));
            return Ok(None);
        }
        Err(e) => return Err(Error::io("locking", &lock_path, e.into())),
    }
    empty_folder(&output)?;
    // A folder made anew (say the output folder was deleted) is another mount source even at
    // the same path: its identity is part of the warm container's name.
    let identity = {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&output)
            .map_err(|e| Error::io("reading the warm builder's folder", &output, e))?;
        format!("{}:{}", meta.dev(), meta.ino())
    };
    let warm = engine
        .run_builder_warm(plan, &output, &identity, secrets, builder, progress)
        .await?;
    let exit = match warm {
        engine::WarmRun::Ran(exit) => exit,
        engine::WarmRun::Unavailable(reason) => {
            progress.warn(&format!(
                "target {}: no warm builder ({reason}); this build runs in a fresh container",
                plan.target
            ));
            empty_folder(&output)?;
            return Ok(None);
        }
    };
    let run = RunDir::create(&plan.out_dir)?;
    let into = run.output();
    for entry in std::fs::read_dir(&output).map_err(|e| Error::io("reading", &output, e))? {
        let entry = entry.map_err(|e| Error::io("reading", &output, e))?;
        let to = into.join(entry.file_name());
        std::fs::rename(entry.path(), &to)
            .map_err(|e| Error::io("moving the build output to", &to, e))?;
    }
    drop(lock);
    Ok(Some((exit, run)))
}

/// Remove everything inside `dir`, keeping `dir` itself.
fn empty_folder(dir: &std::path::Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("reading", dir, e))? {
        let entry = entry.map_err(|e| Error::io("reading", dir, e))?;
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed.map_err(|e| Error::io("emptying the warm builder's folder of", &path, e))?;
    }
    Ok(())
}

/// Sets its flag when dropped, which tells a blocking task to stop.
#[derive(Default)]
struct CancelOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The runtime config with the init in place, and what the base runs by default.
struct PreparedRuntime {
    runtime: plan::RuntimePlan,
    base: engine::BaseConfig,
    base_bytes: u64,
    init: Option<pid1::Init>,
}

async fn prepare_runtime(
    engine: &Engine,
    plan: &Plan,
    progress: &Progress,
) -> Result<PreparedRuntime> {
    let (base_bytes, base) = if plan.runtime.is_scratch() {
        (0, engine::BaseConfig::default())
    } else {
        let facts = engine.ensure_image(&plan.runtime.base, progress).await?;
        (facts.size, facts.config)
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
        base_bytes,
        init,
    })
}

/// Find the init `runtime.init` asks for: in the base first, else a static tini in the builder.
async fn choose_init(engine: &Engine, plan: &Plan) -> Result<Option<pid1::Init>> {
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
async fn first_present(
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
async fn copy_out(engine: &Engine, image: &str, path: &str, plan: &Plan) -> Result<Vec<u8>> {
    let stage = RunDir::create(&plan.out_dir)?;
    let dest = stage.output().join("init");
    let files = engine.open_image_files(image, &plan.project).await?;
    let copied = engine.copy_image_file(&files, path, &dest).await;
    engine.close_image_files(files).await?;
    copied?;
    std::fs::read(&dest).map_err(|e| Error::io("reading", &dest, e))
}

/// Build and tag the runtime image from the collected artifacts, and report on it.
async fn build_image(
    engine: &Engine,
    plan: &Plan,
    collected: &Collected,
    progress: &Progress,
) -> Result<(Report, Option<String>)> {
    let builder = engine.ensure_image(&plan.builder.image, progress).await?;
    let prepared = prepare_runtime(engine, plan, progress).await?;
    let steps = !prepared.runtime.steps.is_empty();
    // What dynamically linked artifacts need (checked, or copied from the builder): shipped
    // with the artifacts. Runtime steps install into a base that has its own libraries.
    let mut libraries = if steps {
        shared_libs::Libraries::default()
    } else {
        shared_libs::find_libraries(engine, plan, collected, progress).await?
    };
    let built = if steps {
        progress.phase(&format!(
            "running {} runtime step(s) in {} with the artifacts at {}",
            prepared.runtime.steps.len(),
            plan.runtime.base,
            plan.runtime.artifacts_mount
        ));
        image::build_with_steps(
            engine,
            plan,
            &prepared.runtime,
            &prepared.base,
            prepared.init.as_ref(),
            collected,
            progress,
        )
        .await?
    } else {
        let mut spec = context_spec(plan, &prepared, collected);
        spec.add_files(std::mem::take(&mut libraries.files));
        progress.phase(&format!(
            "building the runtime image on {}",
            plan.runtime.base
        ));
        // On scratch the image is exactly one layer of files plus config: import it, no build.
        if plan.runtime.is_scratch() {
            image::import(engine, spec, &plan.project, &plan.tags).await?
        } else {
            image::build(engine, spec, &plan.project, &plan.tags, progress).await?
        }
    };
    progress.phase("measuring the runtime image");
    let context = measure_context(engine, plan).await?;
    let (runtime_bytes, measured) = measure_built(engine, &built, context).await?;
    let report = Report::from_measurement(
        &built.id,
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
        context_bytes: built.context_bytes,
    });
    let mut report = report;
    report.libs = libraries.linkage;
    baseline::save(&plan.out_dir, &report)?;
    Ok((report, prepared.init.map(|i| i.description)))
}

fn context_spec(plan: &Plan, prepared: &PreparedRuntime, collected: &Collected) -> ContextSpec {
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

fn container_join(root: &str, subdir: &str) -> String {
    if subdir.is_empty() {
        root.to_string()
    } else {
        format!("{}/{subdir}", root.trim_end_matches('/'))
    }
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
        base_history_len: base.map_or(0, |b| b.history.len()),
        rules: Some(RulePlan {
            include: plan.artifacts.include.clone(),
            dest: plan.artifacts.dest.clone(),
        }),
    })
}

/// The size the engine gives the image `built`, and its measurement: from the layers scanned
/// on their way to the engine when they are the whole image (then its history is all the
/// engine is asked for), else from its export.
async fn measure_built(
    engine: &Engine,
    built: &image::BuiltImage,
    context: MeasureContext,
) -> Result<(u64, measure::Measurement)> {
    let missing = || {
        Error::Engine(crate::engine::Error::ImageBuild {
            message: format!("the engine built {} but does not list it", built.id),
        })
    };
    if built.scanned_layers.is_empty() {
        let runtime = engine.image_facts(&built.id).await?.ok_or_else(missing)?;
        let measured = measure_export(engine, &built.id, context).await?;
        return Ok((runtime.size, measured));
    }
    let runtime = engine.image_details(&built.id).await?.ok_or_else(missing)?;
    let history = runtime
        .history
        .iter()
        .map(|step| measure::HistoryItem {
            created_by: Some(step.created_by.clone()),
            comment: Some(step.comment.clone()),
            empty_layer: false,
        })
        .collect();
    let measured = match measure::assemble_known(&runtime.layers, history, &built.scanned_layers) {
        Some(saved) => measure::measure(&saved, &context),
        None => measure_export(engine, &built.id, context).await?,
    };
    Ok((runtime.size, measured))
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
        .map_err(|e| {
            Error::Report(crate::report::Error::Measure {
                image: image.to_string(),
                message: e.to_string(),
            })
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
        .ok_or_else(|| Error::Report(crate::report::Error::Measure {
            image: image.to_string(),
            message: "the engine has no such image\n  help: build or pull it first, or name a report file (*.json) instead".into(),
        }))?;
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
pub fn load_gates(
    manifest: Option<&Path>,
    target: Option<&str>,
    flags: &GateFlags,
) -> Result<GateSet> {
    let loaded = manifest.map(manifest::load).transpose()?;
    Ok(GateSet::resolve(loaded.as_ref(), target, flags)?)
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
            None => Err(Error::Report(crate::report::Error::ReportFile {
                action: "reading",
                path: path.clone(),
                message: "no such file; build first (it writes report.json into the output folder)".into(),
            })),
        },
        Source::Image(image) => {
            let engine = engine.ok_or_else(|| Error::Report(crate::report::Error::Measure {
                image: image.clone(),
                message: "measuring an image needs a Docker Engine".into(),
            }))?;
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

/// Compiles the README's Rust example, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
