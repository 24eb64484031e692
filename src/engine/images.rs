//! Images: what the engine knows about one, getting one (local or pulled), making one (build,
//! import, commit after the runtime steps), tagging, exporting and removing.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, CreateImageInfo, HostConfig, ImageInspect};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CommitContainerOptionsBuilder, CreateImageOptionsBuilder,
    RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use indicatif::ProgressBar;

use super::containers::{bind_mount, labels, unique_name};
use super::error::{daemon_message, docker_error, is_connection_lost, Answer, On};
use super::{
    BaseConfig, BuilderExit, Engine, Error, HistoryStep, ImageDetails, ImageFacts, Result,
};
use crate::progress::Progress;

impl Engine {
    /// Facts about a local image, or `None` when the engine does not have it.
    pub(crate) async fn image_facts(&self, image: &str) -> Result<Option<ImageFacts>> {
        Ok(self.inspect_image(image).await?.map(facts_of))
    }

    /// Inspect and history of a local image: its layers (diff ids) and history steps, or `None`
    /// when the engine does not have it.
    pub(crate) async fn image_details(&self, image: &str) -> Result<Option<ImageDetails>> {
        let Some(inspect) = self.inspect_image(image).await? else {
            return Ok(None);
        };
        let history = self
            .docker
            .image_history(image)
            .await
            .doing(On::Image(image), || {
                format!("reading the history of image {image}")
            })?;
        let (id, size) = id_and_size(&inspect);
        Ok(Some(ImageDetails {
            id,
            size,
            tags: inspect.repo_tags.unwrap_or_default(),
            labels: inspect
                .config
                .and_then(|c| c.labels)
                .unwrap_or_default()
                .into_iter()
                .collect(),
            layers: inspect.root_fs.and_then(|r| r.layers).unwrap_or_default(),
            // The engine lists the newest step first.
            history: history
                .into_iter()
                .rev()
                .map(|step| HistoryStep {
                    created_by: step.created_by,
                    comment: step.comment,
                    empty_layer: step.size == 0,
                })
                .collect(),
        }))
    }

    async fn inspect_image(&self, image: &str) -> Result<Option<ImageInspect>> {
        match self.docker.inspect_image(image).await.or_absent() {
            Ok(found) => Ok(found),
            Err(e) => Err(self
                .failed(docker_error(
                    On::Image(image),
                    format!("inspecting image {image}"),
                    e,
                ))
                .await),
        }
    }

    /// Export `image` as a `docker save` tar and hand it to `read` as a byte stream, on a
    /// blocking thread: the export flows from the engine through `read` and is never collected
    /// into memory. The engine's errors surface as I/O errors of the stream.
    pub(crate) async fn read_exported_image<T, F>(&self, image: &str, read: F) -> Result<T>
    where
        F: FnOnce(&mut dyn std::io::Read) -> T + Send + 'static,
        T: Send + 'static,
    {
        let export = self
            .docker
            .export_image(image)
            .map(|item| item.map_err(|e| std::io::Error::other(daemon_message(&e))));
        let reader = tokio_util::io::StreamReader::new(Box::pin(export));
        let mut bridge = tokio_util::io::SyncIoBridge::new(reader);
        tokio::task::spawn_blocking(move || read(&mut bridge))
            .await
            .map_err(|e| {
                On::Image(image).error(
                    format!("reading the export of image {image}"),
                    e.to_string(),
                )
            })
    }

    /// Make sure `image` is present: use the local one, else pull it with a progress bar.
    /// The builder and base are asked for several times a run; the engine is asked once.
    pub(crate) async fn ensure_image(
        &self,
        image: &str,
        progress: &Progress,
    ) -> Result<ImageFacts> {
        let known = self
            .ensured
            .lock()
            .ok()
            .and_then(|cache| cache.get(image).cloned());
        if let Some(facts) = known {
            return Ok(facts);
        }
        let facts = self.find_or_pull(image, progress).await?;
        if let Ok(mut cache) = self.ensured.lock() {
            cache.insert(image.to_string(), facts.clone());
        }
        Ok(facts)
    }

    async fn find_or_pull(&self, image: &str, progress: &Progress) -> Result<ImageFacts> {
        if let Some(facts) = self.image_facts(image).await? {
            return Ok(facts);
        }
        self.supported().await?;
        progress.phase(&format!("{image} is not present locally; pulling it"));
        let bar = progress.pull_bar(image);
        let pulled = self.pull(image, &bar).await;
        bar.finish_and_clear();
        pulled?;
        self.image_facts(image)
            .await?
            .ok_or_else(|| Error::ImageUnavailable {
                image: image.to_string(),
                reason: "the pull ended but the engine does not list the image".into(),
            })
    }

    /// Pull `image`, its layers' progress summed on `bar`.
    async fn pull(&self, image: &str, bar: &ProgressBar) -> Result<()> {
        let options = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut layers: HashMap<String, (u64, u64)> = HashMap::new();
        let mut pull = self.docker.create_image(Some(options), None, None);
        while let Some(item) = pull.next().await {
            match item {
                Ok(info) => show_pull_progress(info, &mut layers, bar),
                Err(e) if is_connection_lost(&e) => {
                    return Err(docker_error(
                        On::Image(image),
                        format!("pulling {image}"),
                        e,
                    ));
                }
                Err(e) => {
                    return Err(Error::ImageUnavailable {
                        image: image.to_string(),
                        reason: daemon_message(&e),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether `image_id` still exists and each of `tags` names it (the image a previous build
    /// made is still what its tags give).
    pub(crate) async fn carries_tags(&self, image_id: &str, tags: &[String]) -> Result<bool> {
        if tags.is_empty() {
            return Ok(self.image_facts(image_id).await?.is_some());
        }
        for tag in tags {
            match self.image_facts(tag).await? {
                Some(facts) if facts.id == image_id => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Build an image from a context tar stream with the classic builder; the build's output is
    /// streamed to `progress`. Returns the new image's id; nothing is tagged here.
    pub(crate) async fn build_image(
        &self,
        context: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
        project: &str,
        progress: &Progress,
    ) -> Result<String> {
        self.supported().await?;
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .rm(true)
            .forcerm(true)
            .labels(&labels("image", project))
            .build();
        let mut build =
            self.docker
                .build_image(options, None, Some(bollard::body_try_stream(context)));
        let mut id = None;
        while let Some(item) = build.next().await {
            let info = item.map_err(|e| {
                if is_connection_lost(&e) {
                    docker_error(
                        On::Engine,
                        format!("building the runtime image of {project}"),
                        e,
                    )
                } else {
                    Error::ImageBuild {
                        message: daemon_message(&e),
                    }
                }
            })?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(Error::ImageBuild { message: detail });
            }
            if let Some(text) = info.stream {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    progress.log(line.trim_end());
                }
            }
            if let Some(aux) = info.aux.and_then(|a| a.id) {
                id = Some(aux);
            }
        }
        let id = id.ok_or_else(|| Error::ImageBuild {
            message: "the engine finished without naming the built image".into(),
        })?;
        self.track_image(&id);
        Ok(id)
    }

    /// Run `script` in a container of `base` with `mount_dir` mounted read-only at
    /// `mount_at`, then commit the container as an image with `changes` (Dockerfile
    /// instructions: ENTRYPOINT, CMD, USER, ENV, …) applied. The result has exactly one layer
    /// more than the base, holding what the script changed and nothing of the mount.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_steps_and_commit(
        &self,
        base: &str,
        base_user: Option<&str>,
        script: &str,
        mount_dir: &Path,
        mount_at: &str,
        changes: &[String],
        project: &str,
        progress: &Progress,
    ) -> Result<std::result::Result<String, BuilderExit>> {
        let name = unique_name("dockception-steps", project);
        let body = ContainerCreateBody {
            image: Some(base.to_string()),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec![script.to_string()]),
            // Installing needs root; the image's own user comes back with the changes.
            user: base_user.map(|_| "0:0".to_string()),
            labels: Some(labels("steps", project)),
            host_config: Some(HostConfig {
                mounts: Some(vec![bind_mount(mount_dir, mount_at, true)?]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let action = format!("creating the runtime steps container on {base}");
        self.create_tracked(&name, body, action).await?;
        let result = self.commit_after_steps(&name, changes, progress).await;
        self.then_remove(&name, result).await
    }

    async fn commit_after_steps(
        &self,
        name: &str,
        changes: &[String],
        progress: &Progress,
    ) -> Result<std::result::Result<String, BuilderExit>> {
        let exit = self.start_and_wait(name, progress).await?;
        if exit.code != 0 {
            return Ok(Err(exit));
        }
        let options = CommitContainerOptionsBuilder::default()
            .container(name)
            .comment("dockception runtime steps")
            .changes(&changes.join("\n"))
            .pause(false)
            .build();
        let committed = self
            .docker
            .commit_container(options, bollard::models::ContainerConfig::default())
            .await
            .doing(On::Container(name), || {
                format!("committing the runtime steps in container {name}")
            })?;
        Ok(Ok(committed.id))
    }

    /// Make an image of one layer from a tar stream of its files (`docker import`), with the
    /// config `changes` (Dockerfile metadata lines) and dockception's labels. No container runs,
    /// so this is the fast way onto `scratch`. Returns the new image's id; nothing is tagged.
    pub(crate) async fn import_image(
        &self,
        rootfs: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
        changes: Vec<String>,
        project: &str,
    ) -> Result<String> {
        self.supported().await?;
        let mut changes = changes;
        let mut names: Vec<(String, String)> = labels("image", project).into_iter().collect();
        names.sort();
        for (key, value) in names {
            changes.push(format!(
                "LABEL {}={}",
                serde_json::Value::String(key),
                serde_json::Value::String(value)
            ));
        }
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .changes(changes)
            .build();
        let mut import =
            self.docker
                .create_image(Some(options), Some(bollard::body_try_stream(rootfs)), None);
        let mut id = None;
        while let Some(item) = import.next().await {
            let info = item.map_err(|e| Error::ImageBuild {
                message: daemon_message(&e),
            })?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(Error::ImageBuild { message: detail });
            }
            if let Some(status) = info.status.filter(|s| s.starts_with("sha256:")) {
                id = Some(status.trim().to_string());
            }
        }
        id.ok_or_else(|| Error::ImageBuild {
            message: "the engine finished the import without naming the image".into(),
        })
    }

    /// Give `image_id` each of `tags`.
    pub(crate) async fn tag(&self, image_id: &str, tags: &[String]) -> Result<()> {
        for tag in tags {
            let (repo, version) = split_tag(tag);
            let options = TagImageOptionsBuilder::default()
                .repo(repo)
                .tag(version)
                .build();
            self.docker
                .tag_image(image_id, Some(options))
                .await
                .doing(On::Image(image_id), || {
                    format!("tagging image {image_id} as {tag}")
                })?;
        }
        self.untrack_image(image_id);
        Ok(())
    }

    /// Remove the image `id` (its untagged parents too); `false` when there was none. Either
    /// way it is no longer this run's to clean up.
    pub(super) async fn remove_image(
        &self,
        id: &str,
    ) -> std::result::Result<bool, bollard::errors::Error> {
        let options = RemoveImageOptionsBuilder::default().noprune(false).build();
        let removed = self
            .docker
            .remove_image(id, Some(options), None)
            .await
            .or_absent()?
            .is_some();
        self.untrack_image(id);
        Ok(removed)
    }
}

/// The facts of an inspected image.
fn facts_of(inspect: ImageInspect) -> ImageFacts {
    let (id, size) = id_and_size(&inspect);
    let config = inspect.config.unwrap_or_default();
    ImageFacts {
        id,
        size,
        config: BaseConfig {
            entrypoint: config.entrypoint.filter(|e| !e.is_empty()),
            cmd: config.cmd.filter(|c| !c.is_empty()),
            user: config.user.filter(|u| !u.is_empty()),
        },
    }
}

/// What every answer about an image starts with: its id and size.
fn id_and_size(inspect: &ImageInspect) -> (String, u64) {
    let size = inspect
        .size
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(0);
    (inspect.id.clone().unwrap_or_default(), size)
}

/// Add one pull message's layer progress to `layers` and show the sum on `bar`.
fn show_pull_progress(
    info: CreateImageInfo,
    layers: &mut HashMap<String, (u64, u64)>,
    bar: &ProgressBar,
) {
    let (Some(id), Some(detail)) = (info.id, info.progress_detail) else {
        return;
    };
    let entry = layers.entry(id).or_default();
    if let Some(total) = detail.total {
        entry.1 = u64::try_from(total).unwrap_or(0);
    }
    if let Some(current) = detail.current {
        entry.0 = u64::try_from(current).unwrap_or(0);
    }
    bar.set_length(layers.values().map(|l| l.1).sum());
    bar.set_position(layers.values().map(|l| l.0).sum());
}

/// `registry:5000/app:v1` -> (`registry:5000/app`, `v1`); no tag means `latest`.
fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_at_the_last_colon_after_the_last_slash() {
        assert_eq!(split_tag("hello:latest"), ("hello", "latest"));
        assert_eq!(split_tag("hello"), ("hello", "latest"));
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(
            split_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
    }
}
