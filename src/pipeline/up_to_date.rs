//! The fingerprint of a target's inputs: plan, builder and base ids, mounted sources.
//!
//! A base that names a registry is identified by what its registry names it by now: the
//! digest of the manifest (or index) its reference gives, asked with one `HEAD` each build
//! (nothing is pulled when the store keeps that base), and the base's image id. A tag that
//! moves names another manifest, so the image is built again on the new base; a reference
//! pinned by digest asks the registry nothing.

use crate::deliver::push::RegistrySettings;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::image::context::{self};
use crate::plan::Plan;
use crate::progress::Progress;

use super::fingerprint;

/// The fingerprint of a target's inputs, the sources scanned for it, and the last state.
pub(crate) async fn fingerprint_target(
    engine: &Engine,
    plan: &Plan,
    registry: &RegistrySettings,
    progress: &Progress,
) -> Result<(fingerprint::Sources, String, fingerprint::State)> {
    // The sources are scanned on a blocking thread while the engine answers.
    let images = async {
        let builder = engine.ensure_image(&plan.builder.image, progress).await?;
        let base_id = if plan.runtime.is_scratch() {
            "scratch".to_string()
        } else if crate::manifest::names_registry(&plan.runtime.base) {
            let store = super::image::blob_store(plan);
            super::image::registry_base_id(&store, &plan.runtime.base, registry, progress).await?
        } else {
            engine.ensure_image(&plan.runtime.base, progress).await?.id
        };
        Ok::<_, Error>((builder, base_id))
    };
    let ((builder, base_id), (sources, previous)) = tokio::try_join!(images, scan_sources(plan))?;
    let print = fingerprint::fingerprint(
        &fingerprint::Inputs {
            plan,
            builder_id: &builder.id,
            base_id: &base_id,
            epoch: context_epoch(),
        },
        &sources,
    );
    Ok((sources, print, previous))
}

/// Read the last state and scan the mounted sources, off the async threads.
pub(crate) async fn scan_sources(
    plan: &Plan,
) -> Result<(fingerprint::Sources, fingerprint::State)> {
    let plan = plan.clone();
    tokio::task::spawn_blocking(move || fingerprint::load_and_scan(&plan))
        .await
        .map_err(|e| {
            Error::io(
                "scanning the sources of",
                "the mounts",
                std::io::Error::other(e),
            )
        })?
}

pub(crate) fn context_epoch() -> u64 {
    context::epoch_from(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())
}
