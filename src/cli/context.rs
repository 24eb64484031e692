//! `dockception context`: the runtime image's build context as a tar on stdout.

use std::io::IsTerminal;

use crate::pipeline::interrupt::interruptible;
use crate::{Engine, Error, Selection};

use super::args::*;
use super::{options, progress};

/// `dockception context`.
pub(super) async fn context(common: &Common, target: Option<String>) -> Result<(), Error> {
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        return Err(Error::Usage {
            message: "refusing to write a tar to the terminal".into(),
            help: "pipe it instead: dockception context | docker build -t app -".into(),
        });
    }
    let progress = progress(common.quiet, common.progress);
    let selection = match target {
        Some(t) => Selection::Names(vec![t]),
        None => Selection::Default,
    };
    let plan = crate::api::load_plan(&options(common, selection, &[])?)?;
    let engine = Engine::connect().await?;
    let written = interruptible(
        &engine,
        crate::pipeline::write_context(&engine, &plan, &progress, stdout.lock()),
    )
    .await?;
    progress.phase(&format!("wrote a {written}-byte build context to stdout"));
    Ok(())
}
