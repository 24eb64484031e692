//! `dockception clean`: what interrupted or crashed runs left behind; with `--caches`, the
//! caches too (volumes, the blob store, the kept builds).

use crate::fsutil::FromIo as _;
use crate::{Engine, Error};

use super::args::*;

/// `dockception clean`: the engine's leftovers first (scoped to this manifest's project unless
/// `all`), then the stale run folders of the output folder.
pub(super) async fn clean(
    common: &Common,
    caches: bool,
    all: bool,
    force: bool,
) -> Result<(), Error> {
    let project = crate::plan::project_for(&common.manifest)?;
    let out_dir = match &common.out_dir {
        Some(dir) => dir.clone(),
        None => {
            let manifest = std::path::absolute(&common.manifest).map_err(|e| {
                Error::io("reading the current folder for", common.manifest.clone(), e)
            })?;
            manifest
                .parent()
                .unwrap_or(std::path::Path::new("/"))
                .join(".dockception")
        }
    };
    // Run folders first: they need no engine, and an engine that is down is a reason to clean.
    let runs = crate::artifacts::run_dir::remove_stale_runs(&out_dir)?;
    for run in &runs.removed {
        outln!("removed run folder {}", run.display());
    }
    let engine = Engine::connect().await?;
    let cleaned = engine
        .clean(
            (!all).then_some(project.as_str()),
            &crate::deliver::load::loaded_images(&out_dir),
            caches,
            force,
        )
        .await?;
    for name in &cleaned.containers {
        outln!("removed container {name}");
    }
    for id in &cleaned.images {
        outln!("removed image {id}");
    }
    for name in &cleaned.volumes {
        outln!("removed cache volume {name}");
    }
    // The blob store (the bases' layers, the images written) is a cache too: it goes with them.
    let blobs = out_dir.join("blobs");
    let blobs_removed = caches && blobs.is_dir();
    if blobs_removed {
        std::fs::remove_dir_all(&blobs).map_err(|e| Error::io("removing", &blobs, e))?;
        outln!("removed blob store {}", blobs.display());
    }
    // So is the reuse store of each target: earlier builds' outputs.
    let mut stores_removed = 0;
    if caches {
        for store in reuse_stores(&out_dir) {
            std::fs::remove_dir_all(&store).map_err(|e| Error::io("removing", &store, e))?;
            outln!("removed kept builds {}", store.display());
            stores_removed += 1;
        }
    }
    let removed = cleaned.containers.len()
        + cleaned.images.len()
        + cleaned.volumes.len()
        + runs.removed.len()
        + usize::from(blobs_removed)
        + stores_removed;
    if removed == 0 {
        outln!(
            "nothing to clean for {}",
            if all { "any project" } else { project.as_str() }
        );
    }
    if !common.quiet {
        for kept in cleaned.kept.iter().chain(&runs.kept) {
            eprintln!("kept {kept}");
        }
    }
    Ok(())
}

/// The reuse stores in the output folder `out_dir`: its own (a single-image manifest) and each
/// named target's (`targets/NAME/reuse`).
fn reuse_stores(out_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    use crate::pipeline::reuse::REUSE_DIR;
    let mut stores = vec![out_dir.join(REUSE_DIR)];
    if let Ok(targets) = std::fs::read_dir(out_dir.join("targets")) {
        let mut named: Vec<_> = targets
            .flatten()
            .map(|t| t.path().join(REUSE_DIR))
            .collect();
        named.sort();
        stores.extend(named);
    }
    stores.retain(|s| s.is_dir());
    stores
}
