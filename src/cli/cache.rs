//! `dockception cache ls|rm`: the manifest's cache volumes.

use crate::{Engine, Error, Selection};

use super::args::*;
use super::options;

pub(super) async fn cache(command: CacheCommand) -> Result<(), Error> {
    let (common, selector, all) = match &command {
        CacheCommand::Ls { common, all } => (common, None, *all),
        CacheCommand::Rm { common, target } => (common, target.as_deref(), false),
    };
    // The manifest's variables apply (a cache's name or path may use them).
    let plans = crate::api::load_plan(&options(common, Selection::All, &[])?)?;
    let engine = Engine::connect().await?;
    if let CacheCommand::Rm { .. } = command {
        for (cache, existed) in crate::pipeline::remove_caches(&engine, &plans, selector).await? {
            let what = if existed { "removed" } else { "did not exist:" };
            outln!("{what} {} ({})", cache.volume, cache.target);
        }
        return Ok(());
    }
    let rows = crate::pipeline::list_caches(&engine, &plans, all).await?;
    out!("{}", crate::pipeline::caches::to_text(&rows));
    Ok(())
}
