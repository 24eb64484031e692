//! `dockception context`: the runtime image's build context as a tar, after the artifacts.

use std::io::Write;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::image::context::{self};
use crate::plan::PlanSet;
use crate::progress::Progress;

use super::artifacts::produce_artifacts;
use super::runtime::context_spec;
use super::runtime::{base_files, prepare_runtime};
use super::shared_libs;
use super::target::Outputs;

/// Build the artifacts of the one selected target (and of the targets it takes artifacts
/// from), then write its runtime image's build context to `out` (a tar); returns the bytes
/// written.
pub async fn write_context(
    engine: &Engine,
    plans: &PlanSet,
    progress: &Progress,
    out: impl Write,
) -> Result<u64> {
    let [target] = plans.selected.as_slice() else {
        return Err(Error::Usage {
            message: format!(
                "`context` writes one image's context, but {} targets are selected",
                plans.selected.len()
            ),
            help: format!(
                "name one: dockception context TARGET ({})",
                plans.order.join(", ")
            ),
        });
    };
    let mut outputs = Outputs::new();
    super::configure_mode(engine, plans);
    for plan in &plans.targets {
        let produced = produce_artifacts(engine, plan, &outputs, None, None, progress).await?;
        if &plan.target == target {
            let registry = crate::deliver::push::RegistrySettings::default();
            let prepared = prepare_runtime(engine, plan, &registry, progress).await?;
            if !prepared.runtime.steps.is_empty() {
                return Err(Error::Usage {
                    message: format!("target `{target}` has runtime.run steps, which a Dockerfile context cannot express (the artifacts are mounted, not copied)"),
                    help: "use dockception build for this target".into(),
                });
            }
            let files = base_files(engine, plan, prepared.registry_base.as_ref());
            let mut libraries =
                shared_libs::find_libraries(engine, plan, &produced.collected, files, progress)
                    .await?;
            let mut spec = context_spec(plan, &prepared, &produced.collected);
            spec.add_files(std::mem::take(&mut libraries.files));
            // The tar is made on a blocking thread and written chunk by chunk, so an interrupt
            // is noticed between chunks instead of after the whole context.
            let mut out = out;
            let mut written = 0u64;
            let mut chunks = std::pin::pin!(context::stream(spec));
            while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
                let chunk = chunk
                    .map_err(|e| Error::io("making the build context for", "standard output", e))?;
                tokio::task::block_in_place(|| out.write_all(&chunk))
                    .map_err(|e| Error::io("writing the build context to", "standard output", e))?;
                written += chunk.len() as u64;
            }
            tokio::task::block_in_place(|| out.flush())
                .map_err(|e| Error::io("writing the build context to", "standard output", e))?;
            produced.keep(plan, &mut outputs)?;
            return Ok(written);
        }
        produced.keep(plan, &mut outputs)?;
    }
    Err(Error::Usage {
        message: format!("target `{target}` was not planned"),
        help: "name a target of the manifest".into(),
    })
}
