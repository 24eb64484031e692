//! Build the runtime image, through the engine, and tag it only once the build has succeeded,
//! so a failed build never leaves a half-built image under a tag: from the context (artifacts
//! copied in one layer), or by runtime steps with the artifacts mounted (run + commit).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;

use crate::artifacts::collect::{Artifact, Collected};
use crate::artifacts::pid1;
use crate::artifacts::run_dir::RunDir;
use crate::engine::BaseConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::image::context::{self, ContextSpec};
use crate::plan::{Plan, RuntimePlan, LABEL, PROJECT_LABEL};
use crate::progress::Progress;
use crate::report::measure::{self, LayerScan};

/// A runtime image the engine has built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The image id.
    pub id: String,
    /// Bytes of build context streamed to the engine.
    pub context_bytes: u64,
    /// Layers of the image already scanned on the way to the engine (the import's one layer),
    /// so measuring need not export them again.
    pub scanned_layers: Vec<LayerScan>,
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
        scanned_layers: Vec::new(),
    })
}

/// The folder the init binary is staged in, inside the artifacts mount.
const INIT_STAGE: &str = ".dockception-init";

/// Build the runtime image by running `runtime.steps` in a container of the base with the
/// artifacts mounted read-only, then committing it with the runtime config: the image holds
/// what the steps installed, in one layer, and never the artifacts themselves.
///
/// Run + commit rather than a Dockerfile: the classic builder cannot mount anything into a
/// RUN, and a COPY would put the packages into a layer of their own, which is what this mode
/// exists to avoid.
pub async fn build_with_steps(
    engine: &Engine,
    plan: &Plan,
    runtime: &RuntimePlan,
    base: &BaseConfig,
    init: Option<&pid1::Init>,
    collected: &Collected,
    progress: &Progress,
) -> Result<BuiltImage> {
    let stage = RunDir::create(&plan.out_dir)?;
    let root = stage.output();
    for artifact in &collected.artifacts {
        stage_artifact(&root, artifact)?;
    }
    let mut script = format!("set -e\n{}", runtime.steps.join("\n"));
    if let Some(binary) = init.and_then(|i| i.binary.as_ref()) {
        let staged = root.join(INIT_STAGE).join("tini");
        write_file(&staged, binary)?;
        script.push_str(&format!(
            "\ncp {mount}/{INIT_STAGE}/tini {path} && chmod 0755 {path}",
            mount = runtime.artifacts_mount,
            path = pid1::COPIED_PATH
        ));
    }
    let labels = [
        (LABEL.to_string(), "image".to_string()),
        (PROJECT_LABEL.to_string(), plan.project.clone()),
    ];
    let changes = context::commit_changes(runtime, base, &labels);
    let committed = engine
        .run_steps_and_commit(
            &runtime.base,
            base.user.as_deref(),
            &script,
            &root,
            &runtime.artifacts_mount,
            &changes,
            &plan.project,
            progress,
        )
        .await?;
    let id = committed.map_err(|exit| Error::RuntimeStepFailed {
        code: exit.code,
        base: runtime.base.clone(),
        mount: runtime.artifacts_mount.clone(),
        tail: exit.tail,
    })?;
    engine.tag(&id, &plan.tags).await?;
    Ok(BuiltImage {
        id,
        context_bytes: 0,
        scanned_layers: Vec::new(),
    })
}

/// Hard-link (or copy, across file systems) an artifact into the staging folder at its path.
fn stage_artifact(root: &Path, artifact: &Artifact) -> Result<()> {
    let target = root.join(&artifact.path);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    if let Some(link) = &artifact.symlink_target {
        return std::os::unix::fs::symlink(link, &target)
            .map_err(|e| Error::io("staging the artifact", &target, e));
    }
    if std::fs::hard_link(&artifact.host_path, &target).is_err() {
        std::fs::copy(&artifact.host_path, &target)
            .map_err(|e| Error::io("staging the artifact", &target, e))?;
    }
    Ok(())
}

fn write_file(path: &Path, content: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    std::fs::write(path, content).map_err(|e| Error::io("writing", path, e))
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
    // The tar sent is the image's layer byte for byte (its sha256 is the layer's diff id):
    // scan it while the engine imports it, on the other core, instead of exporting it after.
    let (stream, copy) = context::stream_rootfs_copied(spec);
    let scan = tokio::task::spawn_blocking(move || measure::scan_layer(copy));
    let stream = stream.inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    });
    let id = engine.import_image(stream, changes, project).await?;
    engine.tag(&id, tags).await?;
    // A scan that failed only means the image is measured from its export.
    let scanned_layers = match scan.await {
        Ok(Ok(layer)) => vec![layer],
        _ => Vec::new(),
    };
    Ok(BuiltImage {
        id,
        context_bytes: sent.load(Ordering::Relaxed),
        scanned_layers,
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
            user: user.map(str::to_string),
            ..RuntimePlan::on(base)
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
