//! Images: what the engine knows about one, getting one (local or pulled), making one (build,
//! import, commit after the runtime steps), tagging, exporting and removing.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, CreateImageInfo, HostConfig, ImageInspect};
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ImportImageOptionsBuilder, RemoveImageOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use indicatif::ProgressBar;

use super::containers::{bind_mount, labels, unique_name};
use super::error::{daemon_message, docker_error, is_connection_lost, Answer, On};
use super::mode::Mode;
use super::{
    BaseConfig, BuilderExit, Change, ChangeKind, Engine, Error, HistoryStep, ImageDetails,
    ImageFacts, Result,
};
use crate::progress::Progress;

/// An archive on its way to the engine's `docker load`.
pub(crate) type LoadArchive =
    std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// How long a [`PendingLoad`] is used after it was opened: bollard gives a request 120 s to
/// be answered, counted from when it went out, and a load of a large image needs some of it.
const PENDING_LOAD_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// A `docker load` whose request went out before its image was written. The engine does
/// about half of a small image's load as soon as a load arrives (it starts the helper process
/// that unpacks the archive into a temporary folder), so a build opens one as its builder
/// starts and the engine is ready when the image is. Dropped unused, the request is cut short:
/// the engine sees an archive that ends early and keeps nothing.
pub(crate) struct PendingLoad {
    archive: Option<tokio::sync::oneshot::Sender<LoadArchive>>,
    request: tokio::task::JoinHandle<std::result::Result<(), bollard::errors::Error>>,
    opened: std::time::Instant,
}

/// `POST /images/load` of `archive`, quietly, to its answer's end.
async fn post_load(
    docker: &bollard::Docker,
    archive: LoadArchive,
) -> std::result::Result<(), bollard::errors::Error> {
    let options = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut load = docker.import_image_stream(options, archive, None);
    while let Some(item) = load.next().await {
        item?;
    }
    Ok(())
}

impl Drop for PendingLoad {
    fn drop(&mut self) {
        self.request.abort();
    }
}

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
        read_blocking(self.docker.export_image(image), read)
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

    /// Give the local image `image_id` the names `tags` (moving each from whatever image had
    /// it): what an earlier build's image needs when it is reused while the engine still has it.
    pub(crate) async fn tag_image(&self, image_id: &str, tags: &[String]) -> Result<()> {
        for reference in tags {
            // The tag is what follows the last `:` after the last `/` (a registry's port is not).
            let name_start = reference.rfind('/').map_or(0, |i| i + 1);
            let (repo, tag) = match reference[name_start..].rfind(':') {
                Some(i) => (
                    &reference[..name_start + i],
                    &reference[name_start + i + 1..],
                ),
                None => (reference.as_str(), "latest"),
            };
            let options = bollard::query_parameters::TagImageOptionsBuilder::default()
                .repo(repo)
                .tag(tag)
                .build();
            self.docker
                .tag_image(image_id, Some(options))
                .await
                .map_err(|e| {
                    docker_error(
                        On::Image(image_id),
                        format!("tagging image {image_id} as {reference}"),
                        e,
                    )
                })?;
        }
        Ok(())
    }

    /// A load whose request goes out now, before its image is written, sending `start` (a
    /// whole entry of the archive to come) at once: see [`PendingLoad`].
    pub(crate) fn open_load(&self, start: Bytes) -> PendingLoad {
        let (archive, arrives) = tokio::sync::oneshot::channel::<LoadArchive>();
        // Until the archive arrives the body sends nothing; a sender dropped unused ends it
        // with an error, so the engine sees a cut archive and keeps nothing.
        let rest = futures_util::stream::once(arrives).flat_map(|archive| match archive {
            Ok(archive) => archive,
            Err(_) => Box::pin(futures_util::stream::once(async {
                Err(std::io::Error::other("the image was not written"))
            })) as LoadArchive,
        });
        let body = futures_util::stream::once(async { Ok(start) }).chain(rest);
        let docker = self.docker.clone();
        let request = tokio::spawn(async move { post_load(&docker, Box::pin(body)).await });
        PendingLoad {
            archive: Some(archive),
            request,
            opened: std::time::Instant::now(),
        }
    }

    /// Load a docker archive (`manifest.json`, config and layer blobs) into the engine, which
    /// tags the image with the archive's `RepoTags` in the same call, through `pending` when it
    /// is still open, else a request of its own. Layers the engine has already (the base's)
    /// may be left out of the archive: the engine does not open them. Gives the image's facts.
    pub(crate) async fn load_archive(
        &self,
        archive: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
        image_id: &str,
        pending: Option<PendingLoad>,
    ) -> Result<ImageFacts> {
        self.supported().await?;
        let archive: LoadArchive = Box::pin(archive);
        let pending = pending.filter(|p| p.opened.elapsed() < PENDING_LOAD_FOR);
        let loaded = match pending {
            Some(mut pending) => {
                let sent = match pending.archive.take() {
                    Some(to) => to.send(archive),
                    None => Err(archive),
                };
                match sent {
                    Ok(()) => match (&mut pending.request).await {
                        Ok(answer) => answer,
                        Err(_) => {
                            return Err(Error::ImageBuild {
                                message: format!("loading image {image_id} was cut short"),
                            })
                        }
                    },
                    // The request ended before the image was ready (the engine closed it): the
                    // archive goes in a request of its own.
                    Err(archive) => post_load(&self.docker, archive).await,
                }
            }
            None => post_load(&self.docker, archive).await,
        };
        if let Err(e) = loaded {
            return Err(if is_connection_lost(&e) {
                docker_error(On::Image(image_id), format!("loading image {image_id}"), e)
            } else {
                Error::ImageBuild {
                    message: format!(
                        "the engine refused to load image {image_id}: {}",
                        daemon_message(&e)
                    ),
                }
            });
        }
        match self.inspect_image(image_id).await? {
            Some(inspect) => Ok(facts_of(inspect)),
            None => Err(Error::ImageBuild {
                message: format!("the engine finished loading but does not list image {image_id}"),
            }),
        }
    }

    /// Run `script` in a container of `base` with `mount_dir` mounted read-only at
    /// `mount_at`; when it succeeds, hand `read` what the script changed (the engine's change
    /// list) and the container's file system as a tar stream (on a blocking thread, never
    /// collected in memory). The container is removed either way.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_steps_and_read<T, F>(
        &self,
        base: &str,
        base_user: Option<&str>,
        script: &str,
        mount_dir: &Path,
        mount_at: &str,
        project: &str,
        progress: &Progress,
        read: F,
    ) -> Result<std::result::Result<T, BuilderExit>>
    where
        F: FnOnce(Vec<Change>, &mut dyn std::io::Read) -> T + Send + 'static,
        T: Send + 'static,
    {
        let name = unique_name("dockception-steps", project);
        // A remote engine cannot see `mount_dir`: its files are uploaded to `mount_at` in the
        // created container instead, where the change list leaves them out all the same.
        let remote = self.mode_now() == Mode::Remote;
        let mounts = if remote {
            vec![]
        } else {
            vec![bind_mount(mount_dir, mount_at, true)?]
        };
        let body = ContainerCreateBody {
            image: Some(base.to_string()),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec![script.to_string()]),
            // Installing needs root; the image keeps its own user in its config.
            user: base_user.map(|_| "0:0".to_string()),
            labels: Some(labels("steps", project)),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                ..Default::default()
            }),
            ..Default::default()
        };
        let action = format!("creating the runtime steps container on {base}");
        self.create_tracked(&name, body, action).await?;
        let result = async {
            if remote {
                self.upload_folder(&name, mount_dir, mount_at).await?;
            }
            self.read_after_steps(&name, progress, read).await
        }
        .await;
        self.then_remove(&name, result).await
    }

    /// Upload the host folder `dir` to `at` in container `name`.
    async fn upload_folder(&self, name: &str, dir: &Path, at: &str) -> Result<()> {
        let options = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
            .path("/")
            .build();
        let tar = super::sync::folder_tar(dir, at);
        self.docker
            .upload_to_container(name, Some(options), bollard::body_try_stream(tar))
            .await
            .doing(On::Container(name), || {
                format!("sending the artifacts to {at} in container {name}")
            })
    }

    async fn read_after_steps<T, F>(
        &self,
        name: &str,
        progress: &Progress,
        read: F,
    ) -> Result<std::result::Result<T, BuilderExit>>
    where
        F: FnOnce(Vec<Change>, &mut dyn std::io::Read) -> T + Send + 'static,
        T: Send + 'static,
    {
        let exit = self.start_and_wait(name, progress).await?;
        if exit.code != 0 {
            return Ok(Err(exit));
        }
        let changes = self
            .docker
            .container_changes(name)
            .await
            .doing(On::Container(name), || {
                format!("listing what the runtime steps changed in container {name}")
            })?
            .unwrap_or_default()
            .into_iter()
            .map(|c| Change {
                path: c.path,
                kind: match c.kind {
                    bollard::models::ChangeType::_0 => ChangeKind::Modified,
                    bollard::models::ChangeType::_1 => ChangeKind::Added,
                    bollard::models::ChangeType::_2 => ChangeKind::Deleted,
                },
            })
            .collect();
        let value = read_blocking(self.docker.export_container(name), move |export| {
            read(changes, export)
        })
        .await
        .map_err(|e| {
            On::Container(name).error(
                format!("reading the file system of container {name}"),
                e.to_string(),
            )
        })?;
        Ok(Ok(value))
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
        Ok(removed)
    }
}

/// Hand the engine's byte stream `export` to `read` as a reader, on a blocking thread: the
/// bytes flow through and are never collected; the engine's errors surface as I/O errors.
pub(super) async fn read_blocking<T, F>(
    export: impl Stream<Item = std::result::Result<Bytes, bollard::errors::Error>> + Send + 'static,
    read: F,
) -> std::result::Result<T, tokio::task::JoinError>
where
    F: FnOnce(&mut dyn std::io::Read) -> T + Send + 'static,
    T: Send + 'static,
{
    let export = export.map(|item| item.map_err(|e| std::io::Error::other(daemon_message(&e))));
    let reader = tokio_util::io::StreamReader::new(Box::pin(export));
    let mut bridge = tokio_util::io::SyncIoBridge::new(reader);
    tokio::task::spawn_blocking(move || read(&mut bridge)).await
}

/// The facts of an inspected image.
fn facts_of(inspect: ImageInspect) -> ImageFacts {
    let (id, size) = id_and_size(&inspect);
    let config = inspect.config.unwrap_or_default();
    ImageFacts {
        id,
        size,
        architecture: inspect.architecture.clone().unwrap_or_default(),
        os: inspect.os.clone().unwrap_or_default(),
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
