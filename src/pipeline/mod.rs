//! The chain for each command, readable top to bottom: load -> plan -> build artifacts ->
//! assemble the image -> report. `build_if_changed` runs the targets; `target` is one target's
//! chain; the other files are its steps.

mod artifacts;
mod base_files;
pub(crate) mod caches;
mod cleanup;
mod context;
mod destinations;
mod fingerprint;
mod image;
pub(crate) mod interrupt;
mod measure;
pub(crate) mod reuse;
mod review;
mod runtime;
mod schedule;
mod shared_libs;
mod source_sync;
mod target;
mod up_to_date;

pub(crate) use caches::{list_caches, remove_caches};
pub(crate) use context::write_context;
pub use destinations::Destinations;
pub(crate) use reuse::{kept_builds, kept_builds_text, remove_kept_builds};
pub(crate) use review::{load_source, review};

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::plan::{secrets, PlanSet};
use crate::progress::{self, Progress};
use crate::report::Report;

use cleanup::{stop_the_others, Tracked};
use target::{build_target, Outputs};

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
/// each other build at the same time; with several, a failure names its target and stops the
/// others. Always builds; records each image's inputs, so a later `dockception build` knows
/// whether it is up to date.
pub async fn build(
    engine: &Engine,
    plans: &PlanSet,
    progress: &Progress,
) -> Result<Vec<TargetReport>> {
    build_to(engine, plans, progress, &Destinations::default()).await
}

/// Like [`build`], with the images going to `destinations`: pushed, written to files, loaded.
pub async fn build_to(
    engine: &Engine,
    plans: &PlanSet,
    progress: &Progress,
    destinations: &Destinations,
) -> Result<Vec<TargetReport>> {
    build_if_changed(engine, plans, progress, true, destinations).await
}

/// Like [`build`], but a selected target that runs its own builder is skipped when nothing
/// changed: when its inputs' fingerprint (plan, builder and base image ids, mounted sources)
/// equals its last successful build's and that image still carries its tags, nothing runs and
/// that build's report comes back with `up_to_date` set. When it equals an earlier build's
/// kept in the target's reuse store, no builder runs either: that build's output and image come
/// back, delivered again, with `reused_from` set. A push or an output is never up to date, but
/// may reuse. `force` builds anyway.
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
    destinations: &Destinations,
) -> Result<Vec<TargetReport>> {
    destinations.check(plans)?;
    let mut secrets = resolve_secrets(plans)?;
    configure_mode(engine, plans);
    let before = Tracked::now(engine);
    let mut schedule = schedule::Schedule::of(&plans.targets);
    let mut outputs = Outputs::new();
    let mut reports: Vec<Option<TargetReport>> = vec![None; plans.targets.len()];
    let mut running = FuturesUnordered::new();
    loop {
        for i in schedule.start() {
            let plan = &plans.targets[i];
            // Each target gets the outputs of those finished so far, which include every
            // target it takes artifacts from.
            let work = build_target(
                engine,
                plans,
                plan,
                outputs.clone(),
                secrets[i].take(),
                progress,
                force,
                destinations,
            );
            let label = label(plans, &plan.target);
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
                return Err(in_target(plans, &plan.target, e));
            }
        }
    }
    never_started(plans, &schedule)?;
    Ok(reports.into_iter().flatten().collect())
}

/// Tell the engine what decides whether it sees this machine's files (asked only when a
/// target builds, so a run with nothing to do asks nothing).
fn configure_mode(engine: &Engine, plans: &PlanSet) {
    let Some(first) = plans.targets.first() else {
        return;
    };
    let project_dir = first
        .blobs_dir
        .parent()
        .map_or_else(|| first.out_dir.clone(), std::path::Path::to_path_buf);
    engine.configure_mode(crate::engine::mode::ModeSetting {
        mode: plans.engine.mode,
        set_by: plans.engine.set_by.clone(),
        project_dir,
        project: plans.project.clone(),
    });
}

/// For `dockception plan`: with `auto`, what the last probe of the configured engine found, if
/// one was kept (nothing is asked).
pub(crate) fn known_engine_mode(plans: &mut PlanSet) {
    use crate::engine::mode::{cached_mode, Mode, MODE_CACHE_FILE};
    if plans.engine.mode != crate::manifest::EngineMode::Auto {
        return;
    }
    let Some(first) = plans.targets.first() else {
        return;
    };
    let Some(project_dir) = first.blobs_dir.parent() else {
        return;
    };
    let Ok(host) = crate::engine::configured_host() else {
        return;
    };
    match cached_mode(project_dir, &host) {
        Some(mode) => {
            plans.engine.mode = match mode {
                Mode::Local => crate::manifest::EngineMode::Local,
                Mode::Remote => crate::manifest::EngineMode::Remote,
            };
            plans.engine.set_by = format!(
                "auto: the kept answer of a probe of {host}, in {}",
                project_dir.join(MODE_CACHE_FILE).display()
            );
        }
        None => {
            plans.engine.set_by =
                format!("the first build asks {host} whether it sees this folder");
        }
    }
}

/// With several targets, an error names the target it happened in.
fn in_target(plans: &PlanSet, target: &str, e: Error) -> Error {
    if plans.targets.len() > 1 {
        Error::InTarget {
            target: target.to_string(),
            source: Box::new(e),
        }
    } else {
        e
    }
}

/// `[NAME]`, padded to the longest name, for what a target prints when several build at once.
fn label(plans: &PlanSet, target: &str) -> String {
    if plans.targets.len() < 2 {
        return String::new();
    }
    let width = plans
        .targets
        .iter()
        .map(|p| p.target.chars().count() + 2)
        .max()
        .unwrap_or(0);
    format!("{:<width$}", format!("[{target}]"))
}

/// Each builder's secrets, in plan order. A secret that cannot be had stops the run before
/// any target starts, even one that is up to date.
fn resolve_secrets(plans: &PlanSet) -> Result<Vec<Option<secrets::Resolved>>> {
    let mut secrets = Vec::with_capacity(plans.targets.len());
    for plan in &plans.targets {
        secrets.push(match plan.artifacts_from {
            None => Some(
                secrets::resolve(&plan.builder, |name| std::env::var_os(name))
                    .map_err(|e| in_target(plans, &plan.target, e.into()))?,
            ),
            Some(_) => None,
        });
    }
    Ok(secrets)
}

/// Targets still waiting when nothing runs take artifacts from each other.
fn never_started(plans: &PlanSet, schedule: &schedule::Schedule) -> Result<()> {
    let waiting: Vec<&str> = schedule
        .waiting()
        .into_iter()
        .map(|i| plans.targets[i].target.as_str())
        .collect();
    if waiting.is_empty() {
        return Ok(());
    }
    Err(Error::Usage {
        message: format!(
            "targets {} take artifacts from each other, so none of them can start",
            waiting.join(", ")
        ),
        help: "make one of them build its own artifacts".into(),
    })
}
