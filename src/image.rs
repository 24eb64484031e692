//! Build the runtime image from its context, through the engine, and tag it only once the
//! build has succeeded, so a failed build never leaves a half-built image under a tag.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;

use crate::context::{self, ContextSpec};
use crate::engine::Engine;
use crate::error::Result;
use crate::progress::Progress;

/// A runtime image the engine has built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The image id.
    pub id: String,
    /// Bytes of build context streamed to the engine.
    pub context_bytes: u64,
}

/// Stream the context to the engine, build, then apply `tags`.
pub async fn build(
    engine: &Engine,
    spec: ContextSpec,
    project: &str,
    tags: &[String],
    progress: &Progress,
) -> Result<BuiltImage> {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let stream = context::stream(spec).inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    });
    let id = engine.build_image(stream, project, progress).await?;
    engine.tag(&id, tags).await?;
    Ok(BuiltImage {
        id,
        context_bytes: sent.load(Ordering::Relaxed),
    })
}

/// Make the runtime image on `scratch` by importing the artifacts as its one layer with the
/// config applied (no builder container, no Dockerfile steps), then apply `tags`.
pub async fn import(
    engine: &Engine,
    spec: ContextSpec,
    project: &str,
    tags: &[String],
) -> Result<BuiltImage> {
    let changes = context::import_changes(&spec);
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let stream = context::stream_rootfs(spec).inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    });
    let id = engine.import_image(stream, changes, project).await?;
    engine.tag(&id, tags).await?;
    Ok(BuiltImage {
        id,
        context_bytes: sent.load(Ordering::Relaxed),
    })
}
