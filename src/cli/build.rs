//! `dockception build`.

use std::time::{Duration, Instant};

use crate::pipeline::interrupt::interruptible;
use crate::progress::Stage;
use crate::report::store::Source;
use crate::report::Document;
use crate::{Engine, Error};

use super::args::*;
use super::report::previous_build;
use super::{only_selected, options, progress};

/// How `build` prints its reports.
#[derive(Debug, Clone, Copy)]
pub(super) struct Output {
    pub(super) format: Format,
    /// For text: the short answer or every table.
    pub(super) length: ReportLength,
}

/// `dockception build`: build the selected targets (or find them up to date), then report on
/// each against its baseline and check its gates; last, on stderr, how long it took.
pub(super) async fn build(
    common: &Common,
    targets: &Targets,
    tags: &[String],
    output: Output,
    gates: &GateArgs,
    force: bool,
    destinations: &crate::pipeline::Destinations,
) -> Result<(), Error> {
    let started = Instant::now();
    let _ = crate::progress::take_timings();
    let progress = progress(common.quiet, common.progress);
    // The gates come from the same reading of the manifest as the plan, with the same
    // variables; by target name, as reports come back in the manifest's order.
    let crate::api::Checked {
        plan,
        gates: mut gate_sets,
    } = crate::api::load_checked(&options(common, targets.selection(), tags)?, &gates.flags())?;
    let engine = Engine::connect().await?;
    // An explicit baseline is read before the build, which may retag its image.
    let explicit = match gates.baseline.as_deref().map(Source::parse) {
        Some(source) => {
            let target = only_selected(&plan, "--baseline")?;
            Some((
                crate::pipeline::load_source(
                    &source,
                    Some(&engine),
                    plan.target(target),
                    &progress,
                    true,
                )
                .await?,
                source.name(),
            ))
        }
        None => None,
    };
    let reports = interruptible(
        &engine,
        crate::pipeline::build_if_changed(&engine, &plan, &progress, force, destinations),
    )
    .await?;
    crate::progress::finish();
    let up_to_date = reports.iter().all(|r| r.report.up_to_date);
    let mut documents = Vec::new();
    let mut explicit = explicit;
    for built in reports {
        let gate_set = gate_sets
            .remove(&built.target)
            .ok_or_else(|| Error::Usage {
                message: format!("target `{}` was built but not selected", built.target),
                help: "this is a bug in dockception; please report it".into(),
            })?;
        let baseline = match explicit.take() {
            Some(b) => Some(b),
            None => plan
                .target(&built.target)
                .and_then(|p| previous_build(&p.out_dir, &progress)),
        };
        let document = crate::pipeline::review(built.report, baseline, &gate_set);
        documents.push((built.target, built.init, document));
    }
    let finished = finish_all(documents, output);
    progress.say(&timing_line(
        started.elapsed(),
        up_to_date,
        &crate::progress::take_timings(),
    ));
    finished
}

/// `built in 1.2 s (builder 0.9 s, image 0.2 s, report 0.1 s)`: the whole run, then each
/// stage that took a noticeable time (with several targets, theirs add up).
fn timing_line(total: Duration, up_to_date: bool, stages: &[(Stage, Duration)]) -> String {
    if up_to_date {
        return format!("up to date in {}", seconds(total));
    }
    let parts: Vec<String> = stages
        .iter()
        .filter(|(_, d)| *d >= Duration::from_millis(50))
        .map(|(stage, d)| format!("{} {}", stage.name(), seconds(*d)))
        .collect();
    if parts.is_empty() {
        format!("built in {}", seconds(total))
    } else {
        format!("built in {} ({})", seconds(total), parts.join(", "))
    }
}

/// `1.2 s`.
fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Print one document per built target, then exit as the worst gate says.
pub(super) fn finish_all(
    documents: Vec<(String, Option<String>, Document)>,
    output: Output,
) -> Result<(), Error> {
    let several = documents.len() > 1;
    let full = output.length == ReportLength::Full;
    match output.format {
        Format::Json => {
            let array: Vec<serde_json::Value> = documents
                .iter()
                .map(|(target, init, document)| {
                    let mut value: serde_json::Value =
                        serde_json::from_str(&document.to_json()).unwrap_or_default();
                    if let Some(object) = value.as_object_mut() {
                        object.insert("target".into(), target.clone().into());
                        object.insert("init".into(), init.clone().into());
                    }
                    value
                })
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&array).unwrap_or_default()
            );
        }
        Format::Text | Format::Markdown => {
            for (i, (target, init, document)) in documents.iter().enumerate() {
                if several {
                    out!("{}[{target}] ", if i > 0 { "\n" } else { "" });
                }
                match output.format {
                    Format::Markdown => out!("{}", document.to_markdown()),
                    _ if full => out!("{}", document.to_text()),
                    _ => out!("{}", document.to_short_text()),
                }
                if let Some(init) = init.as_ref().filter(|_| full) {
                    outln!("  init (PID 1): {init}");
                }
            }
        }
    }
    // 1 wins over 3, as a single report's gates decide it.
    let status =
        crate::report::gates::combined_exit_code(documents.iter().map(|(_, _, d)| d.exit_code()));
    let summary = documents
        .iter()
        .find(|(_, _, d)| d.exit_code() == status)
        .and_then(|(_, _, d)| d.gates.as_ref().map(|g| g.summary.clone()));
    match status {
        0 => Ok(()),
        status => Err(Error::Gates {
            summary: summary.unwrap_or_default(),
            status,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timing_line_names_the_stages_that_took_time() {
        let ms = Duration::from_millis;
        assert_eq!(
            timing_line(
                ms(1234),
                false,
                &[
                    (Stage::Builder, ms(900)),
                    (Stage::Artifacts, ms(3)),
                    (Stage::Image, ms(200)),
                    (Stage::Report, ms(100)),
                ]
            ),
            "built in 1.2 s (builder 0.9 s, image 0.2 s, report 0.1 s)"
        );
        assert_eq!(timing_line(ms(80), false, &[]), "built in 0.1 s");
        assert_eq!(
            timing_line(ms(300), true, &[(Stage::Report, ms(90))]),
            "up to date in 0.3 s"
        );
    }
}
