//! Build the runtime image from its context, through the engine, and tag it only once the
//! build has succeeded, so a failed build never leaves a half-built image under a tag.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;

use crate::context::{self, ContextSpec};
use crate::engine::Engine;
use crate::error::Result;
use crate::plan::RuntimePlan;
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

/// A warning when the runtime image would run as root: `[runtime] user` is unset and the base
/// sets no user (or a root one), or the manifest names root itself. `base_user` is the base
/// image's configured user (empty for `scratch`); `None` when it is unknown.
pub fn root_warning(runtime: &RuntimePlan, base_user: Option<&str>) -> Option<String> {
    let help = "set [runtime] user, e.g. user = \"65534:65534\" (nobody), unless it must be root";
    match (runtime.user.as_deref(), base_user) {
        (Some(user), _) if is_root(user) => Some(format!(
            "the runtime image runs as root ([runtime] user = {user:?}); {help}"
        )),
        (Some(_), _) => None,
        (None, Some(base)) if is_root(base) => Some(format!(
            "the runtime image runs as root: [runtime] user is not set and the base {} sets no other user; {help}",
            runtime.base
        )),
        (None, _) => None,
    }
}

/// Whether a Docker `USER` value means root: empty, `0`, `root`, with any group.
pub fn is_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or("").trim();
    name.is_empty() || name == "0" || name == "root"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(base: &str, user: Option<&str>) -> RuntimePlan {
        RuntimePlan {
            base: base.into(),
            entrypoint: None,
            cmd: None,
            env: vec![],
            workdir: None,
            user: user.map(str::to_string),
            expose: vec![],
            labels: vec![],
        }
    }

    #[test]
    fn root_users_are_recognised() {
        for user in ["", "0", "root", "0:0", "root:wheel", " 0 "] {
            assert!(is_root(user), "{user:?}");
        }
        for user in ["65534:65534", "nobody", "1000", "app:0"] {
            assert!(!is_root(user), "{user:?}");
        }
    }

    #[test]
    fn a_warning_only_when_the_image_would_run_as_root() {
        let w = root_warning(&runtime("scratch", None), Some("")).expect("warns");
        assert!(
            w.contains("[runtime] user is not set and the base scratch"),
            "{w}"
        );
        assert!(w.contains("user = \"65534:65534\""), "{w}");
        assert!(root_warning(&runtime("scratch", Some("0:0")), Some("")).is_some());
        assert_eq!(
            root_warning(&runtime("scratch", Some("65534:65534")), Some("")),
            None
        );
        assert_eq!(
            root_warning(&runtime("app:base", None), Some("nobody")),
            None
        );
        assert_eq!(root_warning(&runtime("app:base", None), None), None);
    }
}
