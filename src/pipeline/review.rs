//! `report` and gates: load a report or an image as a baseline, compare, check the gates.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::report::gates::{self, GateSet};
use crate::report::store::{self as baseline, Source};
use crate::report::{diff, Document, Report};

use super::measure::measure_image;

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
