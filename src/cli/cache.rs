//! `dockception cache ls|rm`: the manifest's cache volumes, and each target's kept builds (the
//! reuse store of earlier builds' outputs).

use crate::{Engine, Error};

use super::args::*;
use super::options;

pub(super) async fn cache(command: CacheCommand) -> Result<(), Error> {
    let (common, selector, all) = match &command {
        CacheCommand::Ls { common, all } => (common, None, *all),
        CacheCommand::Rm { common, target } => (common, target.as_deref(), false),
    };
    // The manifest's variables apply (a cache's name or path may use them).
    let plans = crate::api::load_plan(&options(common, crate::Selection::All, &[])?)?;
    let engine = Engine::connect().await?;
    if let CacheCommand::Rm { .. } = command {
        // A selector that names a target takes its kept builds too; one that names a cache
        // volume takes only that volume.
        let names_target = selector.is_none_or(|s| plans.target(s).is_some());
        for (cache, existed) in crate::pipeline::remove_caches(&engine, &plans, selector).await? {
            let what = if existed { "removed" } else { "did not exist:" };
            outln!("{what} {} ({})", cache.volume, cache.target);
        }
        if names_target {
            let removed = crate::pipeline::remove_kept_builds(&plans, selector)?;
            for (target, count, bytes) in &removed {
                outln!(
                    "removed {count} kept build(s) of target {target} ({})",
                    crate::units::human(*bytes)
                );
            }
            if removed.is_empty() {
                outln!("no kept builds to remove");
            }
        }
        return Ok(());
    }
    let rows = crate::pipeline::list_caches(&engine, &plans, all).await?;
    out!("{}", crate::pipeline::caches::to_text(&rows));
    let kept = crate::pipeline::kept_builds(&plans);
    if !kept.is_empty() {
        outln!();
        out!(
            "{}",
            crate::pipeline::kept_builds_text(&kept, crate::pipeline::reuse::now())
        );
    }
    Ok(())
}
