//! Measure an image: from the layers scanned on their way to the engine, else from its export.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::plan::{self, Plan};
use crate::progress::{Progress, Stage};
use crate::report::measure::{self, MeasureContext, RulePlan};
use crate::report::{Report, SizedImage};

/// What measuring an image of `plan` knows: the base's layers and the artifact rules.
pub(crate) async fn measure_context(engine: &Engine, plan: &Plan) -> Result<MeasureContext> {
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

/// Export `image` and measure it as it streams past.
pub(crate) async fn measure_export(
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
    progress.stage(Stage::Report, &format!("measuring image {image}"));
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
