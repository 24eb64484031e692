//! One target of a build: up to date, or reused from an earlier build with the same inputs, or
//! its artifacts, then its image, tagged and measured.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::artifacts::run_dir::RunDir;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::image::WrittenImage;
use crate::plan::{secrets, Plan, PlanSet};
use crate::progress::{Progress, Stage};
use crate::report::store as baseline;
use crate::report::{Delivery, Report};

use super::artifacts::{produce_artifacts, select};
use super::fingerprint::{self, Sources, State};
use super::reuse::{self, Lookup};
use super::runtime::build_image;
use super::up_to_date::fingerprint_target;
use super::TargetReport;

/// What a finished target leaves for the rest of the build.
pub(crate) struct Built {
    /// Its report, when its image was built (or is up to date).
    pub(crate) report: Option<TargetReport>,
    /// Its kept output folder, for the targets that take artifacts from it.
    pub(crate) output: Option<PathBuf>,
}

/// One target of [`super::build_if_changed`]: nothing when it is up to date, an earlier
/// build's output and image when its inputs equal that build's (unless `force`), else its
/// artifacts (from its builder, or from the output in `outputs` of the target it takes them
/// from), then, when it is selected, its image, tagged and measured. A push or an output
/// needs the image delivered this run, so it is never "up to date", but it may reuse.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn build_target(
    engine: &Engine,
    plans: &PlanSet,
    plan: &Plan,
    outputs: Outputs,
    secrets: Option<secrets::Resolved>,
    progress: &Progress,
    force: bool,
    destinations: &super::Destinations,
) -> Result<Built> {
    let selected = plans.is_selected(&plan.target);
    let fingerprinted = if selected && plan.artifacts_from.is_none() {
        Some(fingerprint_target(engine, plan, destinations.registry(), progress).await?)
    } else {
        None
    };
    if let Some((sources, print, previous)) = &fingerprinted {
        if !force && destinations.only_load(plans) {
            if let Some(built) = up_to_date(engine, plan, sources, print, previous).await? {
                fingerprint::drop_aside(fingerprinted);
                return Ok(built);
            }
        }
    }
    // Not up to date: the engine's version is needed from here on (what a load may leave out,
    // whether it may create things), so it is asked for while the rest goes on.
    engine.ask_version().await;
    if let (false, Some((sources, print, _))) = (force, &fingerprinted) {
        if let Some(built) =
            reuse_earlier(engine, plan, sources, print, progress, destinations).await?
        {
            if let (Some((sources, print, _)), Some(target)) = (fingerprinted, &built.report) {
                save_state(
                    plan,
                    sources,
                    print,
                    &target.report,
                    target.init.clone(),
                    progress,
                );
            }
            return Ok(built);
        }
    }
    // Whether the engine sees this machine's files decides how sources, outputs and runtime
    // steps reach it; the probe, when one is needed, uses the builder image.
    engine.ensure_image(&plan.builder.image, progress).await?;
    engine.mode(&plan.builder.image).await?;
    let sources = fingerprinted.as_ref().map(|(sources, _, _)| sources);
    // The engine's side of the image's load gets ready while the builder runs.
    let pending_load = (selected && destinations.loads(plan))
        .then(|| engine.open_load(crate::deliver::load::archive_start()));
    let produced =
        produce_artifacts(engine, plan, &outputs, secrets.as_ref(), sources, progress).await?;
    let store = reuse::Store::of(plan);
    // The output goes into the reuse store while the image is written.
    let staging = match (&fingerprinted, &produced.run) {
        (Some(_), Some(run)) if selected && store.enabled() => {
            let (store, output) = (store.clone(), run.output());
            Some(tokio::task::spawn_blocking(move || store.stage(&output)))
        }
        _ => None,
    };
    let mut built = None;
    if selected {
        let (mut report, init, written) = build_image(
            engine,
            plan,
            &produced.collected,
            progress,
            destinations,
            pending_load,
        )
        .await?;
        report.build_command_ms = produced.ran_ms;
        if let Some((sources, print, _)) = fingerprinted {
            with_scan(&mut report, &sources);
            if let Some(staging) = staging {
                keep_for_reuse(
                    &store,
                    staging,
                    &print,
                    &report,
                    init.as_deref(),
                    &written,
                    progress,
                )
                .await;
            }
            save_state(plan, sources, print, &report, init.clone(), progress);
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

/// The last build's report, when its fingerprint is `print`, its output is still there and its
/// image still carries its tags.
async fn up_to_date(
    engine: &Engine,
    plan: &Plan,
    sources: &Sources,
    print: &str,
    previous: &State,
) -> Result<Option<Built>> {
    let Some(last) = previous.last_build_with(print) else {
        return Ok(None);
    };
    let last_output = plan.out_dir.join("last");
    if !last_output.is_dir()
        || !engine
            .carries_tags(&last.report.image_id, &last.report.tags)
            .await?
    {
        return Ok(None);
    }
    let mut report = last.report.clone();
    report.up_to_date = true;
    report.build_command_ms = None;
    report.reused_from = None;
    with_scan(&mut report, sources);
    Ok(Some(Built {
        report: Some(TargetReport {
            target: plan.target.clone(),
            init: last.init.clone(),
            report,
        }),
        output: Some(last_output),
    }))
}

/// An earlier build with the inputs `print`, from the reuse store: its output restored as the
/// target's `last/`, its image loaded (or only tagged, when the engine has it) and delivered
/// again, nothing built; the caller records it as the last build. When its image's blobs are gone from the blob store, the image is
/// written again from the restored output, still without a builder.
async fn reuse_earlier(
    engine: &Engine,
    plan: &Plan,
    sources: &Sources,
    print: &str,
    progress: &Progress,
    destinations: &super::Destinations,
) -> Result<Option<Built>> {
    let store = reuse::Store::of(plan);
    if !store.enabled() {
        return Ok(None);
    }
    let lookup = {
        let (looking, print) = (store.clone(), print.to_string());
        tokio::task::spawn_blocking(move || looking.lookup(&print))
            .await
            .map_err(|e| {
                Error::io(
                    "checking the kept output in",
                    store.root(),
                    std::io::Error::other(e),
                )
            })?
    };
    let entry = match lookup {
        Lookup::Missing => return Ok(None),
        Lookup::Changed(why) => {
            progress.warn(&format!(
                "an earlier build had these inputs, but its kept output cannot be reused: {why}; building instead"
            ));
            return Ok(None);
        }
        Lookup::Found(entry) => entry,
    };
    progress.stage(
        Stage::Builder,
        &format!(
            "reusing the output of an earlier build with the same inputs ({}); no build runs",
            &print[..12]
        ),
    );
    let run = RunDir::create(&plan.out_dir)?;
    store
        .restore(&entry, &run.output())
        .map_err(|e| Error::io("restoring the kept output into", run.output(), e))?;
    let (mut report, init) = match entry.written_image(&plan.blobs_dir) {
        Some(written) => {
            let report = deliver_again(
                engine,
                plan,
                &entry.report,
                &written,
                print,
                progress,
                destinations,
            )
            .await?;
            (report, entry.init.clone())
        }
        None => {
            let collected = select(plan, &run, progress).await?;
            let (report, init, _) =
                build_image(engine, plan, &collected, progress, destinations, None).await?;
            (report, init)
        }
    };
    report.up_to_date = false;
    report.build_command_ms = None;
    report.reused_from = Some(print.to_string());
    with_scan(&mut report, sources);
    if let Err(e) = store.touch(&entry) {
        progress.warn(&format!(
            "could not mark the kept build {} as used ({e}); it may be evicted first",
            &print[..12]
        ));
    }
    let output = run.promote()?;
    Ok(Some(Built {
        report: Some(TargetReport {
            target: plan.target.clone(),
            init,
            report,
        }),
        output: Some(output),
    }))
}

/// Deliver the image an earlier build wrote, as that build did: into the engine (only its
/// config and manifest when the engine still has the image, which then just takes the tags),
/// and to the run's other destinations. Returns that build's report with this run's
/// deliveries, stored as the last build's.
#[allow(clippy::too_many_arguments)]
async fn deliver_again(
    engine: &Engine,
    plan: &Plan,
    earlier: &Report,
    written: &WrittenImage,
    print: &str,
    progress: &Progress,
    destinations: &super::Destinations,
) -> Result<Report> {
    let mut delivered = Vec::new();
    if destinations.loads(plan) {
        progress.stage(
            Stage::Image,
            &format!("giving {} its tags in the engine", written.image_id()),
        );
        if engine.carries_tags(written.image_id(), &plan.tags).await? {
            delivered.push(Delivery {
                to: "engine".into(),
                destination: in_the_engine(&plan.tags),
                sent_bytes: 0,
                skipped_bytes: written.layers.iter().map(|l| l.blob.size).sum(),
            });
        } else if engine.image_facts(written.image_id()).await?.is_some() {
            // The engine still has the image (untagged, or under other names): it only needs
            // the tags, which costs far less than even an archive of the config alone.
            engine.tag_image(written.image_id(), &plan.tags).await?;
            delivered.push(Delivery {
                to: "engine".into(),
                destination: in_the_engine(&plan.tags),
                sent_bytes: 0,
                skipped_bytes: written.layers.iter().map(|l| l.blob.size).sum(),
            });
        } else {
            // The base's layers are left out only when the engine has it (a base from a
            // registry may not be there).
            let has_base = !plan.runtime.is_scratch()
                && engine.image_facts(&plan.runtime.base).await?.is_some();
            let store = super::image::blob_store(plan);
            let loadable = crate::deliver::load::Loadable::written(written);
            let (delivery, _) =
                super::image::load(engine, loadable, &store, &plan.tags, has_base, None).await?;
            delivered.push(delivery);
        }
    }
    delivered.extend(destinations.deliver(plan, written, progress).await?);
    let mut report = earlier.clone();
    report.delivered = delivered;
    report.reused_from = Some(print.to_string());
    baseline::save(&plan.out_dir, &report)?;
    Ok(report)
}

/// Make the staged output the reuse store's entry for `print`; a failure only warns (the
/// build itself succeeded).
async fn keep_for_reuse(
    store: &reuse::Store,
    staging: tokio::task::JoinHandle<std::io::Result<reuse::Staged>>,
    print: &str,
    report: &Report,
    init: Option<&str>,
    written: &WrittenImage,
    progress: &Progress,
) {
    let kept = match staging.await {
        Ok(Ok(staged)) => store.commit(staged, print, report, init, Some(written)),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(std::io::Error::other(e)),
    };
    if let Err(e) = kept {
        progress.warn(&format!(
            "the build output could not be kept in {} for reuse ({e}); a later build with these inputs will run again",
            store.root().display()
        ));
    }
}

/// Where a load put the image, as a load says it.
fn in_the_engine(tags: &[String]) -> String {
    if tags.is_empty() {
        "the engine (untagged)".into()
    } else {
        format!("the engine as {}", tags.join(", "))
    }
}

/// The scan's facts in the report: how many source files, how many read and hashed.
fn with_scan(report: &mut Report, sources: &Sources) {
    report.source_files = Some(sources.files.len() as u64);
    report.source_files_hashed = Some(sources.hashed as u64);
}

fn save_state(
    plan: &Plan,
    sources: Sources,
    print: String,
    report: &Report,
    init: Option<String>,
    progress: &Progress,
) {
    let state = fingerprint::State::after_build(sources, print, report.clone(), init);
    if let Err(e) = state.save(&plan.out_dir) {
        progress.warn(&format!(
            "{e}; the next build cannot tell whether it is up to date"
        ));
    }
}

/// Each finished target's kept output folder, for the targets that take artifacts from it.
pub(crate) type Outputs = BTreeMap<String, PathBuf>;
