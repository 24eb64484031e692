//! One target of a build: up to date, or its artifacts, then its image, tagged and measured.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::engine::Engine;
use crate::error::Result;
use crate::plan::{secrets, Plan, PlanSet};
use crate::progress::Progress;

use super::artifacts::produce_artifacts;
use super::fingerprint;
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

/// One target of [`super::build_if_changed`]: nothing when it is up to date (unless `force`), else
/// its artifacts (from its builder, or from the output in `outputs` of the target it takes
/// them from), then, when it is selected, its image, tagged and measured.
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
                            init: last.init.clone(),
                            report,
                        }),
                        output: Some(last_output),
                    });
                }
            }
        }
    }
    // Whether the engine sees this machine's files decides how sources, outputs and runtime
    // steps reach it; the probe, when one is needed, uses the builder image.
    engine.ensure_image(&plan.builder.image, progress).await?;
    engine.mode(&plan.builder.image).await?;
    let sources = fingerprinted.as_ref().map(|(sources, _, _)| sources);
    let produced =
        produce_artifacts(engine, plan, &outputs, secrets.as_ref(), sources, progress).await?;
    let mut built = None;
    if selected {
        let (mut report, init) =
            build_image(engine, plan, &produced.collected, progress, destinations).await?;
        report.build_command_ms = produced.ran_ms;
        if let Some((sources, print, _)) = fingerprinted {
            let state =
                fingerprint::State::after_build(sources, print, report.clone(), init.clone());
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

/// Each finished target's kept output folder, for the targets that take artifacts from it.
pub(crate) type Outputs = BTreeMap<String, PathBuf>;
