//! `dockception plan`: the resolved plan, as text or JSON, without building.

use crate::Error;

use super::args::*;
use super::options;

/// `dockception plan`.
pub(super) fn plan(
    common: &Common,
    targets: &Targets,
    tags: &[String],
    format: Format,
) -> Result<(), Error> {
    let mut plan = crate::api::load_plan(&options(common, targets.selection(), tags)?)?;
    crate::pipeline::known_engine_mode(&mut plan);
    match format {
        Format::Text | Format::Markdown => out!("{}", plan.to_text()),
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        ),
    }
    Ok(())
}
