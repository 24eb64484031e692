//! `dockception report`: a report again, against a baseline, with gates, without building.

use std::path::Path;

use crate::report::gates::GateSet;
use crate::report::store::{self, Source};
use crate::report::{Document, Report, LAST_BUILD};
use crate::{Engine, Error, Options, Progress, Selection};

use super::args::*;
use super::{only_selected, progress};

/// `dockception report`: the last build (or `--current`) against the build before it (or
/// `--baseline`).
pub(super) async fn report(args: ReportArgs) -> Result<(), Error> {
    let progress = progress(args.quiet, args.progress);
    let manifest = args.manifest.clone().or_else(|| {
        let default = Path::new("dockception.toml");
        default.exists().then(|| default.to_path_buf())
    });
    let (plan, gate_set) = the_target(&args, manifest.as_deref())?;
    let current_source = args.current.as_deref().map(Source::parse);
    let baseline_source = args.gates.baseline.as_deref().map(Source::parse);
    let engine = if [&current_source, &baseline_source]
        .iter()
        .any(|s| matches!(s, Some(Source::Image(_))))
    {
        Some(Engine::connect().await?)
    } else {
        None
    };
    let out_dir = plan
        .as_ref()
        .map(|p| p.out_dir.clone())
        .or(args.out_dir.clone());
    let current = match &current_source {
        Some(source) => {
            crate::pipeline::load_source(source, engine.as_ref(), plan.as_ref(), &progress, false)
                .await?
        }
        None => last_build(out_dir.as_deref())?,
    };
    let baseline = match (&baseline_source, &current_source, &out_dir) {
        (Some(source), _, _) => Some((
            crate::pipeline::load_source(source, engine.as_ref(), plan.as_ref(), &progress, true)
                .await?,
            source.name(),
        )),
        (None, None, Some(dir)) => previous_build(dir, &progress),
        _ => None,
    };
    finish(
        crate::pipeline::review(current, baseline, &gate_set),
        args.format,
    )
}

/// The plan of the one target reported on, when there is a manifest, and its gates (read with
/// the plan, so with the same variables).
fn the_target(
    args: &ReportArgs,
    manifest: Option<&Path>,
) -> Result<(Option<crate::Plan>, GateSet), Error> {
    let Some(path) = manifest else {
        return Ok((None, GateSet::resolve(None, None, &args.gates.flags())?));
    };
    let checked = crate::api::load_checked(
        &Options {
            manifest: path.to_path_buf(),
            selection: match &args.target {
                Some(t) => Selection::Names(vec![t.clone()]),
                None => Selection::Default,
            },
            out_dir: args.out_dir.clone(),
            ..Default::default()
        },
        &args.gates.flags(),
    )?;
    let mut gates = checked.gates;
    let plans = checked.plan;
    let target = only_selected(&plans, "report")?;
    let gate_set = gates.remove(target).unwrap_or_default();
    Ok((plans.target(target).cloned(), gate_set))
}

/// The last build's report, from the output folder.
fn last_build(out_dir: Option<&Path>) -> Result<Report, Error> {
    let dir = out_dir.ok_or_else(|| Error::Report(crate::report::Error::ReportFile {
        action: "finding",
        path: "report.json".into(),
        message: "there is no dockception.toml here and no --out-dir or --current\n  help: run it next to the manifest, pass -f FILE, or name --current FILE|IMAGE".into(),
    }))?;
    let path = dir.join(store::REPORT_FILE);
    store::load_if_present(&path)?.ok_or_else(|| {
        Error::Report(crate::report::Error::ReportFile {
            action: "reading",
            path,
            message: "no such file; build first (each build writes it)".into(),
        })
    })
}

/// The report of the build before the last one, when there is a readable one.
pub(super) fn previous_build(out_dir: &Path, progress: &Progress) -> Option<(Report, String)> {
    let path = out_dir.join(store::PREVIOUS_FILE);
    match store::load_if_present(&path) {
        Ok(report) => report.map(|r| (r, LAST_BUILD.to_string())),
        Err(e) => {
            progress.warn(&format!("{e}; comparing with nothing"));
            None
        }
    }
}

/// Print the document, then exit as the gates say.
pub(super) fn finish(document: Document, format: Format) -> Result<(), Error> {
    match format {
        Format::Text => out!("{}", document.to_text()),
        Format::Json => out!("{}", document.to_json()),
        Format::Markdown => out!("{}", document.to_markdown()),
    }
    match (document.exit_code(), &document.gates) {
        (0, _) | (_, None) => Ok(()),
        (status, Some(gates)) => Err(Error::Gates {
            summary: gates.summary.clone(),
            status,
        }),
    }
}
