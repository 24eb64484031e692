//! The one module that talks to the Docker Engine (bollard). Everything it is told comes as plain
//! data from the plan; everything it creates carries the `dockception` label and is removed
//! whatever happens, including on Ctrl-C (see [`Engine::remove_leftovers`]).

mod error;

pub use error::{Error, Result};

pub mod owner;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount as DockerMount, MountType, VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CommitContainerOptionsBuilder,
    ContainerArchiveInfoOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RemoveVolumeOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::plan::{CacheVolume, Plan, LABEL, PROJECT_LABEL};
use crate::progress::Progress;
use owner::{LabelledContainer, Owner};

/// What the base image runs by default, (what `image::context::commit_changes` keeps).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseConfig {
    /// The base's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// The base's cmd.
    pub cmd: Option<Vec<String>>,
    /// The base's user.
    pub user: Option<String>,
}

/// What a path is, in the base or the builder image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Nothing there.
    Missing,
    /// A regular file.
    File {
        /// Any execute bit set.
        executable: bool,
    },
    /// A symlink; `target` is where it finally leads, absolute, as the engine resolved it.
    Symlink {
        /// The resolved target.
        target: String,
    },
    /// A folder or anything else that is not a library.
    Other,
}

/// How many of the builder's last output lines a failure shows.
const TAIL_LINES: usize = 20;

/// The oldest Engine API dockception speaks: `Mounts` in a container's host config came with
/// API 1.25 (Docker 1.13, January 2017).
pub const MIN_API_VERSION: (usize, usize) = (1, 25);

/// A connection to a Docker Engine that answered a ping.
pub struct Engine {
    docker: Docker,
    host: String,
    /// Containers that exist right now and must go if the run is interrupted.
    live_containers: Mutex<Vec<String>>,
    /// Images [`Engine::ensure_image`] found or pulled during this run, by reference.
    ensured: Mutex<HashMap<String, ImageFacts>>,
    /// Images built by this run but not tagged yet: removed if the run is interrupted, so no
    /// half-finished build lingers.
    untagged_images: Mutex<Vec<String>>,
    /// Values that must never be printed (secrets given to the builder); the builder's output
    /// shows `***` instead.
    redact: Mutex<Vec<String>>,
    /// The engine's API version, asked for in the background at connect: a run with nothing to
    /// do never waits for it (`/version` takes ~10 ms, most of a no-op build); anything that
    /// creates something waits for it first, see [`Engine::supported`].
    api_version: tokio::sync::Mutex<ApiVersion>,
}

/// The answer to the background `/version` request, once it came.
enum ApiVersion {
    Asked(
        tokio::task::JoinHandle<
            std::result::Result<bollard::models::SystemVersion, bollard::errors::Error>,
        >,
    ),
    Known((usize, usize)),
}

/// What [`Engine::clean`] removed and what it kept, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Containers removed (names).
    pub containers: Vec<String>,
    /// Dangling images removed (ids).
    pub images: Vec<String>,
    /// Cache volumes removed (names).
    pub volumes: Vec<String>,
    /// What was kept, each with the reason.
    pub kept: Vec<String>,
}

/// What the report needs to know about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// The image id (`sha256:…`).
    pub id: String,
    /// The image's size as the engine reports it (uncompressed layer content), in bytes.
    pub size: u64,
    /// What it runs by default: entrypoint, cmd and user.
    pub config: BaseConfig,
}

/// What measuring needs to know about an image: inspect plus history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDetails {
    /// The image id (`sha256:…`).
    pub id: String,
    /// The image's size as the engine reports it, in bytes.
    pub size: u64,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its layers' diff ids, bottom first.
    pub layers: Vec<String>,
    /// Its history steps, bottom first (metadata steps included).
    pub history: Vec<HistoryStep>,
}

/// One step of an image's history as the engine lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryStep {
    /// The command that made the step (empty for an import).
    pub created_by: String,
    /// Its comment, e.g. `Imported from -`.
    pub comment: String,
}

/// A cache volume as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFacts {
    /// The volume's name.
    pub name: String,
    /// The `dockception.project` label, when the volume has one.
    pub project: Option<String>,
}

/// How the build command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderExit {
    /// The exit status.
    pub code: i64,
    /// The last lines of output.
    pub tail: Vec<String>,
    /// How long the command ran, from its start to the end of its output, in milliseconds.
    pub ran_ms: u64,
}

impl Engine {
    /// Connect the way the docker CLI does (`DOCKER_HOST`, else the local socket) and make sure
    /// an engine answers.
    pub async fn connect() -> Result<Engine> {
        let from_env = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        let host = from_env
            .clone()
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let docker = match &from_env {
            Some(h) => Docker::connect_with_host(h),
            None => Docker::connect_with_defaults(),
        }
        .map_err(|e| connect_error(&host, from_env.is_some(), &e))?;
        match tokio::time::timeout(Duration::from_secs(10), docker.ping()).await {
            Err(_) => {
                return Err(Error::NoDaemon {
                    host,
                    reason: "it did not answer within 10 s".into(),
                })
            }
            Ok(Err(e)) => return Err(connect_error(&host, from_env.is_some(), &e)),
            Ok(Ok(_)) => {}
        }
        // bollard sends no version prefix (the daemon answers in its own API version), so no
        // negotiation is needed: only the check that the engine is not too old.
        let asking = docker.clone();
        let version = tokio::spawn(async move { asking.version().await });
        Ok(Engine {
            docker,
            host,
            live_containers: Mutex::new(Vec::new()),
            ensured: Mutex::new(HashMap::new()),
            untagged_images: Mutex::new(Vec::new()),
            redact: Mutex::new(Vec::new()),
            api_version: tokio::sync::Mutex::new(ApiVersion::Asked(version)),
        })
    }

    /// `error`, unless the engine is too old for dockception, which is then the reason to give:
    /// an old engine answers reads in shapes bollard cannot parse. Only failures wait for the
    /// version.
    async fn failed(&self, error: Error) -> Error {
        match self.supported().await {
            Err(too_old @ Error::EngineTooOld { .. }) => too_old,
            _ => error,
        }
    }

    /// Make sure the engine speaks [`MIN_API_VERSION`] or newer, before creating anything on
    /// it. Waits for the answer asked for at connect the first time only.
    async fn supported(&self) -> Result<()> {
        let mut known = self.api_version.lock().await;
        let version = match &mut *known {
            ApiVersion::Known(version) => *version,
            ApiVersion::Asked(pending) => {
                let answer = pending.await.map_err(|e| Error::NoDaemon {
                    host: self.host.clone(),
                    reason: format!("asking for its version failed: {e}"),
                })?;
                let from_env = std::env::var_os("DOCKER_HOST").is_some_and(|h| !h.is_empty());
                let answer = answer.map_err(|e| connect_error(&self.host, from_env, &e))?;
                let version = parse_api_version(answer.api_version.as_deref().unwrap_or(""))
                    .ok_or_else(|| Error::NoDaemon {
                        host: self.host.clone(),
                        reason: format!(
                            "it names no API version dockception understands ({:?})",
                            answer.api_version
                        ),
                    })?;
                *known = ApiVersion::Known(version);
                version
            }
        };
        check_api_version(&self.host, version)
    }

    /// The address of the engine.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Facts about a local image, or `None` when the engine does not have it.
    pub async fn image_facts(&self, image: &str) -> Result<Option<ImageFacts>> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => {
                let config = inspect.config.unwrap_or_default();
                Ok(Some(ImageFacts {
                    id: inspect.id.unwrap_or_default(),
                    size: inspect
                        .size
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                    config: BaseConfig {
                        entrypoint: config.entrypoint.filter(|e| !e.is_empty()),
                        cmd: config.cmd.filter(|c| !c.is_empty()),
                        user: config.user.filter(|u| !u.is_empty()),
                    },
                }))
            }
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(self
                .failed(docker_error(format!("inspecting image {image}"), e))
                .await),
        }
    }

    /// Inspect and history of a local image: its layers (diff ids) and history steps, or `None`
    /// when the engine does not have it.
    pub async fn image_details(&self, image: &str) -> Result<Option<ImageDetails>> {
        let inspect = match self.docker.inspect_image(image).await {
            Ok(inspect) => inspect,
            Err(e) if status_code(&e) == Some(404) => return Ok(None),
            Err(e) => {
                return Err(self
                    .failed(docker_error(format!("inspecting image {image}"), e))
                    .await)
            }
        };
        let history = self
            .docker
            .image_history(image)
            .await
            .map_err(|e| docker_error(format!("reading the history of image {image}"), e))?;
        Ok(Some(ImageDetails {
            id: inspect.id.unwrap_or_default(),
            size: inspect
                .size
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
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
                })
                .collect(),
        }))
    }

    /// Export `image` as a `docker save` tar and hand it to `read` as a byte stream, on a
    /// blocking thread: the export flows from the engine through `read` and is never collected
    /// into memory. The engine's errors surface as I/O errors of the stream.
    pub async fn read_exported_image<T, F>(&self, image: &str, read: F) -> Result<T>
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
            .map_err(|e| Error::Docker {
                action: format!("reading the export of image {image}"),
                message: e.to_string(),
            })
    }

    /// Make sure `image` is present: use the local one, else pull it with a progress bar.
    /// The builder and base are asked for several times a run; the engine is asked once.
    pub async fn ensure_image(&self, image: &str, progress: &Progress) -> Result<ImageFacts> {
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
        let options = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut layers: HashMap<String, (u64, u64)> = HashMap::new();
        let mut pull = self.docker.create_image(Some(options), None, None);
        while let Some(item) = pull.next().await {
            match item {
                Ok(info) => {
                    if let (Some(id), Some(detail)) = (info.id, info.progress_detail) {
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
                }
                Err(e) if is_connection_lost(&e) => {
                    bar.finish_and_clear();
                    return Err(docker_error(format!("pulling {image}"), e));
                }
                Err(e) => {
                    bar.finish_and_clear();
                    return Err(Error::ImageUnavailable {
                        image: image.to_string(),
                        reason: daemon_message(&e),
                    });
                }
            }
        }
        bar.finish_and_clear();
        self.image_facts(image)
            .await?
            .ok_or_else(|| Error::ImageUnavailable {
                image: image.to_string(),
                reason: "the pull ended but the engine does not list the image".into(),
            })
    }

    /// Create the cache volumes that do not exist yet, owned by the user the build runs as.
    pub async fn ensure_caches(&self, plan: &Plan, progress: &Progress) -> Result<()> {
        for cache in &plan.builder.caches {
            match self.docker.inspect_volume(&cache.volume).await {
                Ok(_) => continue,
                Err(e) if status_code(&e) == Some(404) => {}
                Err(e) => {
                    return Err(docker_error(
                        format!("inspecting volume {}", cache.volume),
                        e,
                    ))
                }
            }
            self.supported().await?;
            let request = VolumeCreateRequest {
                name: Some(cache.volume.clone()),
                labels: Some(labels("cache", &plan.project)),
                ..Default::default()
            };
            self.docker
                .create_volume(request)
                .await
                .map_err(|e| docker_error(format!("creating cache volume {}", cache.volume), e))?;
            progress.phase(&format!("created cache volume {}", cache.volume));
            if let Some(owner) = plan.builder.user.as_deref().filter(|u| needs_chown(u)) {
                self.hand_volume_to(cache, owner, plan, progress).await?;
            }
        }
        Ok(())
    }

    /// Whether `image_id` still exists and each of `tags` names it (the image a previous build
    /// made is still what its tags give).
    pub async fn carries_tags(&self, image_id: &str, tags: &[String]) -> Result<bool> {
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

    /// Every cache volume dockception made on this engine (label `dockception=cache`), sorted
    /// by name.
    pub async fn cache_volumes(&self) -> Result<Vec<VolumeFacts>> {
        let options = ListVolumesOptionsBuilder::new()
            .filters(&HashMap::from([(
                "label".to_string(),
                vec![format!("{LABEL}=cache")],
            )]))
            .build();
        let listed = match self.docker.list_volumes(Some(options)).await {
            Ok(listed) => listed,
            Err(e) => {
                return Err(self
                    .failed(docker_error("listing the cache volumes".into(), e))
                    .await)
            }
        };
        let mut volumes: Vec<VolumeFacts> = listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| VolumeFacts {
                project: v.labels.get(PROJECT_LABEL).cloned(),
                name: v.name,
            })
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Whether a volume named `name` exists.
    pub async fn volume_exists(&self, name: &str) -> Result<bool> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(e) if status_code(&e) == Some(404) => Ok(false),
            Err(e) => Err(docker_error(format!("inspecting volume {name}"), e)),
        }
    }

    /// The disk use of `volumes` in bytes, measured by `du -sk` in one short container of
    /// `image` that mounts them all read-only. A volume `du` cannot measure is left out.
    pub async fn volume_sizes(
        &self,
        image: &str,
        volumes: &[String],
        project: &str,
    ) -> Result<HashMap<String, u64>> {
        if volumes.is_empty() {
            return Ok(HashMap::new());
        }
        let paths: Vec<String> = (0..volumes.len()).map(|i| format!("/v/{i}")).collect();
        let mounts = volumes
            .iter()
            .zip(&paths)
            .map(|(volume, path)| DockerMount {
                typ: Some(MountType::VOLUME),
                source: Some(volume.clone()),
                target: Some(path.clone()),
                read_only: Some(true),
                ..Default::default()
            })
            .collect();
        let mut cmd = vec!["du".to_string(), "-sk".to_string()];
        cmd.extend(paths.iter().cloned());
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(cmd),
            user: Some("0:0".into()),
            labels: Some(labels("cache-size", project)),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = unique_name("dockception-du", project);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| docker_error("creating the container that measures caches".into(), e))?;
        self.track(&name);
        let result = self
            .start_and_wait_lines(&name, &Progress::Quiet, usize::MAX)
            .await;
        let removed = self.remove_container(&name).await;
        let exit = result?;
        removed?;
        let mut sizes = HashMap::new();
        for line in &exit.tail {
            let mut words = line.split_whitespace();
            let (Some(kib), Some(path)) = (words.next(), words.next()) else {
                continue;
            };
            let index = path
                .strip_prefix("/v/")
                .and_then(|i| i.parse::<usize>().ok());
            if let (Ok(kib), Some(volume)) =
                (kib.parse::<u64>(), index.and_then(|i| volumes.get(i)))
            {
                sizes.insert(volume.clone(), kib * 1024);
            }
        }
        Ok(sizes)
    }

    /// Remove the volume `name`; `false` when there was none.
    pub async fn remove_volume(&self, name: &str) -> Result<bool> {
        let options = RemoveVolumeOptionsBuilder::new().force(false).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) if status_code(&e) == Some(404) => Ok(false),
            Err(e) => Err(docker_error(format!("removing cache volume {name}"), e)),
        }
    }

    /// A fresh volume belongs to root; give it to the build's user so the cache is writable.
    async fn hand_volume_to(
        &self,
        cache: &CacheVolume,
        owner: &str,
        plan: &Plan,
        progress: &Progress,
    ) -> Result<()> {
        let body = ContainerCreateBody {
            image: Some(plan.builder.image.clone()),
            cmd: Some(vec!["chown".into(), owner.into(), cache.target.clone()]),
            user: Some("0:0".into()),
            labels: Some(labels("cache-setup", &plan.project)),
            host_config: Some(HostConfig {
                mounts: Some(vec![volume_mount(cache)]),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let exit = self
            .run_container(
                &unique_name("dockception-cache", &plan.project),
                body,
                &Progress::Quiet,
            )
            .await?;
        if exit.code != 0 {
            progress.warn(&format!(
                "could not give cache volume {} to {owner} (chown exited {}); the build may not be able to write to {}",
                cache.volume, exit.code, cache.target
            ));
        }
        Ok(())
    }

    /// Run the build command with the sources, caches and the fresh output folder mounted,
    /// stream its output, and remove the container whatever happens.
    pub async fn run_builder(
        &self,
        plan: &Plan,
        output_dir: &Path,
        progress: &Progress,
    ) -> Result<BuilderExit> {
        self.run_builder_with(
            plan,
            output_dir,
            &crate::plan::secrets::Resolved::default(),
            progress,
        )
        .await
    }

    /// [`Engine::run_builder`] with secrets: their environment variables are added to the
    /// builder's (and only the builder's) environment, their files are bind-mounted read-only,
    /// and their values are masked in the builder's output.
    pub async fn run_builder_with(
        &self,
        plan: &Plan,
        output_dir: &Path,
        secrets: &crate::plan::secrets::Resolved,
        progress: &Progress,
    ) -> Result<BuilderExit> {
        if let Ok(mut redact) = self.redact.lock() {
            redact.extend(secrets.values().map(str::to_string));
        }
        let body = builder_body(plan, output_dir, secrets, true)?;
        self.run_container(
            &unique_name("dockception-build", &plan.project),
            body,
            progress,
        )
        .await
    }

    async fn run_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
        progress: &Progress,
    ) -> Result<BuilderExit> {
        self.create_tracked(name, body, "creating the builder container")
            .await?;
        let result = self.start_and_wait(name, progress).await;
        let removed = self.remove_container(name).await;
        let exit = result?;
        removed?;
        Ok(exit)
    }

    async fn start_and_wait(&self, name: &str, progress: &Progress) -> Result<BuilderExit> {
        self.start_and_wait_lines(name, progress, TAIL_LINES).await
    }

    /// Start, stream the output keeping its last `keep` lines, and wait.
    async fn start_and_wait_lines(
        &self,
        name: &str,
        progress: &Progress,
        keep: usize,
    ) -> Result<BuilderExit> {
        // Attach before starting so no early line is lost, whatever the log driver.
        let options = AttachContainerOptionsBuilder::default()
            .stream(true)
            .logs(true)
            .stdout(true)
            .stderr(true)
            .build();
        let attached = self
            .docker
            .attach_container(name, Some(options))
            .await
            .map_err(|e| docker_error("attaching to the builder container".into(), e))?;
        let mut logs = attached.output;
        self.docker
            .start_container(name, None)
            .await
            .map_err(|e| docker_error("starting the builder container".into(), e))?;
        let started = std::time::Instant::now();
        let tail = self.stream_lines(&mut logs, progress, keep).await?;
        let ran_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut wait = self.docker.wait_container(name, None);
        let mut code = 0;
        while let Some(item) = wait.next().await {
            match item {
                Ok(response) => code = response.status_code,
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(e) => return Err(docker_error("waiting for the builder".into(), e)),
            }
        }
        Ok(BuilderExit { code, tail, ran_ms })
    }

    /// Show the builder's output line by line, secrets masked, and keep its last `keep` lines.
    async fn stream_lines(
        &self,
        logs: &mut (impl Stream<
            Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>,
        > + Unpin),
        progress: &Progress,
        keep: usize,
    ) -> Result<Vec<String>> {
        let mut tail: VecDeque<String> = VecDeque::with_capacity(keep.min(TAIL_LINES));
        let mut pending = Vec::new();
        let redact = self.redact.lock().map(|r| r.clone()).unwrap_or_default();
        while let Some(item) = logs.next().await {
            let chunk = item.map_err(|e| docker_error("reading the builder's output".into(), e))?;
            pending.extend_from_slice(&chunk.into_bytes());
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                emit_line(&line[..line.len() - 1], &redact, progress, &mut tail, keep);
            }
        }
        if !pending.is_empty() {
            emit_line(&pending, &redact, progress, &mut tail, keep);
        }
        Ok(tail.into_iter().collect())
    }

    async fn remove_container(&self, name: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(false)
            .build();
        let result = match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(docker_error(format!("removing container {name}"), e)),
        };
        if result.is_ok() {
            self.untrack(name);
        }
        result
    }

    /// Create a container, tracked from before the request is sent: if the run is interrupted
    /// while the request is in flight, the daemon may still create it, and the cleanup must
    /// know its name.
    async fn create_tracked(
        &self,
        name: &str,
        body: ContainerCreateBody,
        action: &str,
    ) -> Result<()> {
        self.supported().await?;
        let mut body = body;
        body.labels.get_or_insert_with(HashMap::new).insert(
            owner::OWNER_LABEL.to_string(),
            Owner::this_process().label(),
        );
        self.track(name);
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(_) => Ok(()),
            Err(e) => {
                // A lost connection may still have created it: keep it for the cleanup.
                if !is_connection_lost(&e) {
                    self.untrack(name);
                }
                Err(docker_error(action.to_string(), e))
            }
        }
    }

    fn track(&self, name: &str) {
        if let Ok(mut live) = self.live_containers.lock() {
            live.push(name.to_string());
        }
    }

    fn untrack(&self, name: &str) {
        if let Ok(mut live) = self.live_containers.lock() {
            live.retain(|n| n != name);
        }
    }

    /// Remove every container this engine created that still exists (after an interrupt).
    /// Returns the names that could not be removed.
    pub async fn remove_leftovers(&self) -> Vec<String> {
        let names: Vec<String> = self
            .live_containers
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        let mut left = Vec::new();
        for name in names {
            if self.remove_container(&name).await.is_err() {
                left.push(name);
            }
        }
        // A create that was in flight when the run was interrupted can still land: sweep for
        // this process's containers by the session token every name carries.
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let filters = HashMap::from([
                ("label".to_string(), vec![LABEL.to_string()]),
                ("name".to_string(), vec![session().to_string()]),
            ]);
            let options = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            if let Ok(found) = self.docker.list_containers(Some(options)).await {
                for name in found.into_iter().flat_map(|c| c.names.unwrap_or_default()) {
                    let name = name.trim_start_matches('/').to_string();
                    if self.remove_container(&name).await.is_err() && !left.contains(&name) {
                        left.push(name);
                    }
                }
            }
        }
        for id in self.untagged_images() {
            let options = RemoveImageOptionsBuilder::default().noprune(false).build();
            match self.docker.remove_image(&id, Some(options), None).await {
                Ok(_) => self.untrack_image(&id),
                Err(e) if status_code(&e) == Some(404) => self.untrack_image(&id),
                Err(_) => left.push(format!("image {id}")),
            }
        }
        left
    }

    /// Images this run built but did not tag (yet).
    pub fn untagged_images(&self) -> Vec<String> {
        self.untagged_images
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    fn untrack_image(&self, id: &str) {
        if let Ok(mut images) = self.untagged_images.lock() {
            images.retain(|i| i != id);
        }
    }

    /// Everything this run created that still exists, as words for a message: containers by
    /// name, images by id. Empty when nothing is left.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .live_containers()
            .into_iter()
            .map(|c| format!("container {c}"))
            .collect();
        out.extend(
            self.untagged_images()
                .into_iter()
                .map(|i| format!("untagged image {i}")),
        );
        out
    }

    /// Remove what interrupted or crashed runs left behind: their containers (those whose
    /// dockception process is gone, or all of them with `force`), the project's dangling
    /// images, and, only with `caches`, its cache volumes. `project` limits all of it to one
    /// project; `None` means every project on this engine.
    pub async fn clean(&self, project: Option<&str>, caches: bool, force: bool) -> Result<Cleaned> {
        let mut cleaned = Cleaned::default();
        let label_filter = |role: Option<&str>| {
            let mut labels = vec![match role {
                Some(role) => format!("{LABEL}={role}"),
                None => LABEL.to_string(),
            }];
            if let Some(p) = project {
                labels.push(format!("{PROJECT_LABEL}={p}"));
            }
            HashMap::from([("label".to_string(), labels)])
        };

        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&label_filter(None))
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| docker_error("listing dockception's containers".into(), e));
        let containers = match containers {
            Ok(containers) => containers,
            Err(e) => return Err(self.failed(e).await),
        };
        let this = Owner::this_process();
        for c in containers {
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .or(c.id.clone())
                .unwrap_or_default();
            let running = c.state.is_some_and(|s| {
                matches!(
                    s,
                    bollard::models::ContainerSummaryStateEnum::RUNNING
                        | bollard::models::ContainerSummaryStateEnum::CREATED
                        | bollard::models::ContainerSummaryStateEnum::RESTARTING
                )
            });
            let labels = c.labels.clone().unwrap_or_default();
            // A warm builder outlives the process that made it; another one may be building
            // in it right now.
            let building =
                running && labels.contains_key(WARM_LABEL) && self.runs_an_exec(&name).await;
            let labelled = LabelledContainer {
                labels,
                running,
                building,
            };
            match owner::container_verdict(&labelled, &this, force, owner::pid_alive) {
                owner::Verdict::Remove => match self.remove_container(&name).await {
                    Ok(()) => cleaned.containers.push(name),
                    Err(e) => cleaned.kept.push(format!("container {name}: {e}")),
                },
                owner::Verdict::Keep(reason) => {
                    cleaned.kept.push(format!("container {name}: {reason}"))
                }
            }
        }

        let mut filters = label_filter(None);
        filters.insert("dangling".into(), vec!["true".into()]);
        let options = ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(|e| docker_error("listing dockception's images".into(), e))?;
        for image in images {
            let options = RemoveImageOptionsBuilder::default().build();
            match self
                .docker
                .remove_image(&image.id, Some(options), None)
                .await
            {
                Ok(_) => cleaned.images.push(image.id),
                Err(e) if status_code(&e) == Some(404) => {}
                Err(e) => cleaned
                    .kept
                    .push(format!("image {}: {}", image.id, daemon_message(&e))),
            }
        }

        let options = ListVolumesOptionsBuilder::default()
            .filters(&label_filter(Some("cache")))
            .build();
        let volumes = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| docker_error("listing dockception's cache volumes".into(), e))?;
        for volume in volumes.volumes.unwrap_or_default() {
            if !caches {
                cleaned.kept.push(format!(
                    "cache volume {}: caches are kept (pass --caches to remove them)",
                    volume.name
                ));
                continue;
            }
            let options = RemoveVolumeOptionsBuilder::default().force(false).build();
            match self.docker.remove_volume(&volume.name, Some(options)).await {
                Ok(()) => cleaned.volumes.push(volume.name),
                Err(e) if status_code(&e) == Some(404) => {}
                Err(e) => cleaned.kept.push(format!(
                    "cache volume {}: {}",
                    volume.name,
                    daemon_message(&e)
                )),
            }
        }
        Ok(cleaned)
    }

    /// The containers that exist right now because of this engine.
    pub fn live_containers(&self) -> Vec<String> {
        self.live_containers
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Build an image from a context tar stream with the classic builder; the build's output is
    /// streamed to `progress`. Returns the new image's id; nothing is tagged here.
    pub async fn build_image(
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
                    docker_error("building the runtime image".into(), e)
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
        if let Ok(mut images) = self.untagged_images.lock() {
            images.push(id.clone());
        }
        Ok(id)
    }

    /// Run `script` in a container of `base` with `mount_dir` mounted read-only at
    /// `mount_at`, then commit the container as an image with `changes` (Dockerfile
    /// instructions: ENTRYPOINT, CMD, USER, ENV, …) applied. The result has exactly one layer
    /// more than the base, holding what the script changed and nothing of the mount.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_steps_and_commit(
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
                mounts: Some(vec![DockerMount {
                    typ: Some(MountType::BIND),
                    source: Some(mount_dir.to_string_lossy().into_owned()),
                    target: Some(mount_at.to_string()),
                    read_only: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.create_tracked(&name, body, "creating the runtime steps container")
            .await?;
        let result = self.commit_after_steps(&name, changes, progress).await;
        let removed = self.remove_container(&name).await;
        let result = result?;
        removed?;
        Ok(result)
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
            .map_err(|e| docker_error("committing the runtime steps".into(), e))?;
        Ok(Ok(committed.id))
    }

    /// Make an image of one layer from a tar stream of its files (`docker import`), with the
    /// config `changes` (Dockerfile metadata lines) and dockception's labels. No container runs,
    /// so this is the fast way onto `scratch`. Returns the new image's id; nothing is tagged.
    pub async fn import_image(
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
    pub async fn tag(&self, image_id: &str, tags: &[String]) -> Result<()> {
        for tag in tags {
            let (repo, version) = split_tag(tag);
            let options = TagImageOptionsBuilder::default()
                .repo(repo)
                .tag(version)
                .build();
            self.docker
                .tag_image(image_id, Some(options))
                .await
                .map_err(|e| docker_error(format!("tagging the image {tag}"), e))?;
        }
        self.untrack_image(image_id);
        Ok(())
    }
}

/// A created, never started container of an image, through which the image's files are read
/// with the engine's archive API (no process runs in it). Close it with
/// [`Engine::close_image_files`]; an interrupt removes it like any other container.
#[derive(Debug)]
pub struct ImageFiles {
    name: String,
    image: String,
}

impl Engine {
    /// Open `image`'s files for reading (the image must be present).
    pub async fn open_image_files(&self, image: &str, project: &str) -> Result<ImageFiles> {
        let name = unique_name("dockception-files", project);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            // Never run: the archive API reads a stopped container's files. An image without
            // a command still needs one to create a container.
            cmd: Some(vec!["/dockception-never-runs".into()]),
            labels: Some(labels("files", project)),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| {
                docker_error(
                    format!("creating a container of {image} to read its files"),
                    e,
                )
            })?;
        self.track(&name);
        Ok(ImageFiles {
            name,
            image: image.to_string(),
        })
    }

    /// What is at `path` in the image: a file, a symlink (with its target resolved inside the
    /// image), something else, or nothing.
    pub async fn stat_image_file(&self, files: &ImageFiles, path: &str) -> Result<Entry> {
        use Entry;
        let options = ContainerArchiveInfoOptionsBuilder::default()
            .path(path)
            .build();
        match self
            .docker
            .get_container_archive_info(&files.name, Some(options))
            .await
        {
            Ok(stat) => Ok(entry_of(stat.file_mode, &stat.link_target)),
            Err(e) if status_code(&e) == Some(404) => Ok(Entry::Missing),
            Err(e) => Err(docker_error(
                format!("looking at {path} in {}", files.image),
                e,
            )),
        }
    }

    /// Copy the regular file at `path` in the image to `dest` on the host (its folders are
    /// made); a symlink at `path` is followed. Returns the bytes copied.
    pub async fn copy_image_file(
        &self,
        files: &ImageFiles,
        path: &str,
        dest: &Path,
    ) -> Result<u64> {
        let failed = |message: String| Error::Docker {
            action: format!("copying {path} out of {}", files.image),
            message,
        };
        // The archive API packs a symlink as a link: ask for where it leads.
        let mut source = path.to_string();
        if let Entry::Symlink { target } = self.stat_image_file(files, path).await? {
            source = target;
        }
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(&source)
            .build();
        let mut stream = self
            .docker
            .download_from_container(&files.name, Some(options));
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
        let dest_owned = dest.to_path_buf();
        let unpack = tokio::task::spawn_blocking(move || unpack_one_file(receiver, &dest_owned));
        let mut streamed: Result<()> = Ok(());
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    if sender.send(chunk).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    streamed = Err(docker_error(
                        format!("copying {path} out of {}", files.image),
                        e,
                    ));
                    break;
                }
            }
        }
        drop(sender);
        let unpacked = unpack
            .await
            .map_err(|e| failed(format!("the copy stopped: {e}")))?;
        streamed?;
        unpacked.map_err(|e| failed(e.to_string()))
    }

    /// Remove the container behind `files`.
    pub async fn close_image_files(&self, files: ImageFiles) -> Result<()> {
        self.remove_container(&files.name).await
    }
}

impl Engine {
    /// Remove the named containers and untagged images, which work stopped midway left (the
    /// other targets of a build, once one failed); unlike [`Engine::remove_leftovers`], what
    /// other work of this engine created is kept. What could not be removed stays in
    /// [`Engine::leftovers`].
    pub async fn remove_created(&self, containers: &[String], images: &[String]) {
        for name in containers {
            let _ = self.remove_container(name).await;
        }
        for id in images {
            let options = RemoveImageOptionsBuilder::default().noprune(false).build();
            match self.docker.remove_image(id, Some(options), None).await {
                Ok(_) => self.untrack_image(id),
                Err(e) if status_code(&e) == Some(404) => self.untrack_image(id),
                Err(_) => {}
            }
        }
    }

    /// Whether a `docker exec` runs in `container` right now. When the engine cannot tell,
    /// it counts as running, so `clean` keeps the container.
    async fn runs_an_exec(&self, container: &str) -> bool {
        let execs = match self.docker.inspect_container(container, None).await {
            Ok(details) => details.exec_ids.unwrap_or_default(),
            Err(e) if status_code(&e) == Some(404) => return false,
            Err(_) => return true,
        };
        for id in execs {
            match self.docker.inspect_exec(&id).await {
                Ok(exec) if exec.running == Some(true) => return true,
                Ok(_) => {}
                // Finished execs are forgotten by the engine after a while.
                Err(e) if status_code(&e) == Some(404) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// The label a warm builder container carries: the hash of its configuration, which its name
/// ends with too.
pub const WARM_LABEL: &str = "dockception.warm";

/// How often a warm builder's idle loop looks for a running exec, in seconds.
const WARM_POLL_SECS: u64 = 2;

/// How a build in the warm builder went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarmRun {
    /// The command ran in the warm container.
    Ran(BuilderExit),
    /// No warm container could be used (the reason says why); the build must run in a fresh
    /// container. Nothing of the attempt is left running.
    Unavailable(String),
}

impl Engine {
    /// Run the build command with `docker exec` in the target's warm builder container, made
    /// and started first when none runs. The container is configured like
    /// [`Engine::run_builder_with`]'s, with `output_dir` (a folder that stays, so later builds
    /// can use the same container) as its output mount, no secret variables in its own
    /// environment (each exec gets them), and an idle loop as its command that ends it, and
    /// the daemon removes it, after `plan.builder.warm` seconds without a build. Its name and
    /// its [`WARM_LABEL`] hold a hash of that configuration, the builder image's id and
    /// `output_identity`, so any change makes a new container. While the command runs the
    /// container is tracked like any other (an interrupt removes it, as no exec can be killed
    /// through the API); afterwards it is kept on purpose.
    pub async fn run_builder_warm(
        &self,
        plan: &Plan,
        output_dir: &Path,
        output_identity: &str,
        secrets: &crate::plan::secrets::Resolved,
        image: &ImageFacts,
        progress: &Progress,
    ) -> Result<WarmRun> {
        let Some(warm_secs) = plan.builder.warm else {
            return Ok(WarmRun::Unavailable(
                "the target has no builder.warm".into(),
            ));
        };
        if let Ok(mut redact) = self.redact.lock() {
            redact.extend(secrets.values().map(str::to_string));
        }
        let (name, body) = warm_body(plan, output_dir, output_identity, secrets, image, warm_secs)?;
        match self.ensure_warm_container(&name, body).await? {
            Some(reason) => return Ok(WarmRun::Unavailable(reason)),
            None => self.track(&name),
        }
        match self.exec_build(&name, plan, secrets, image, progress).await {
            Ok(WarmRun::Ran(exit)) => {
                self.untrack(&name);
                Ok(WarmRun::Ran(exit))
            }
            Ok(WarmRun::Unavailable(reason)) => {
                self.remove_container(&name).await?;
                Ok(WarmRun::Unavailable(reason))
            }
            // A warm container in an unknown state is not worth keeping.
            Err(e) => {
                let _ = self.remove_container(&name).await;
                Err(e)
            }
        }
    }

    /// Make sure the container `name` runs: use it when it does, replace it when it stopped,
    /// create and start it when absent. `Some(reason)` when it cannot be made to run (nothing
    /// of it is left then).
    async fn ensure_warm_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<Option<String>> {
        match self.docker.inspect_container(name, None).await {
            Ok(found) if found.state.as_ref().and_then(|s| s.running) == Some(true) => {
                return Ok(None)
            }
            Ok(_) => self.remove_container(name).await?,
            Err(e) if status_code(&e) == Some(404) => {}
            Err(e) => return Err(docker_error(format!("inspecting container {name}"), e)),
        }
        if let Err(e) = self
            .create_tracked(name, body, "creating the warm builder container")
            .await
        {
            let _ = self.remove_container(name).await;
            return Ok(Some(e.to_string()));
        }
        if let Err(e) = self.docker.start_container(name, None).await {
            let _ = self.remove_container(name).await;
            return Ok(Some(format!(
                "it could not start (it runs /bin/sh, which the builder image needs): {}",
                daemon_message(&e)
            )));
        }
        Ok(None)
    }

    /// Run the plan's command in the running container `name` and wait for its end.
    async fn exec_build(
        &self,
        name: &str,
        plan: &Plan,
        secrets: &crate::plan::secrets::Resolved,
        image: &ImageFacts,
        progress: &Progress,
    ) -> Result<WarmRun> {
        let b = &plan.builder;
        // A fresh container would run the image's entrypoint with the command as arguments.
        let mut cmd = image.config.entrypoint.clone().unwrap_or_default();
        cmd.extend(b.command.iter().cloned());
        let env: Vec<String> = b
            .env
            .iter()
            .chain(&secrets.env)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let config = bollard::models::ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd),
            env: Some(env),
            user: b.user.clone(),
            working_dir: b.workdir.clone(),
            ..Default::default()
        };
        let exec = match self.docker.create_exec(name, config).await {
            Ok(exec) => exec.id,
            // It stopped (idle time up) between the inspect and now.
            Err(e) if status_code(&e) == Some(409) => {
                return Ok(WarmRun::Unavailable(daemon_message(&e)))
            }
            Err(e) => return Err(docker_error("creating the build's exec".into(), e)),
        };
        let options = bollard::exec::StartExecOptions {
            detach: false,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let mut logs = match self.docker.start_exec(&exec, Some(options)).await {
            Ok(bollard::exec::StartExecResults::Attached { output, .. }) => output,
            Ok(bollard::exec::StartExecResults::Detached) => {
                return Ok(WarmRun::Unavailable(
                    "the engine started the build detached".into(),
                ))
            }
            Err(e) if status_code(&e) == Some(409) => {
                return Ok(WarmRun::Unavailable(daemon_message(&e)))
            }
            Err(e) => return Err(docker_error("starting the build's exec".into(), e)),
        };
        let tail = self.stream_lines(&mut logs, progress, TAIL_LINES).await?;
        let ran_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let inspected = self
            .docker
            .inspect_exec(&exec)
            .await
            .map_err(|e| docker_error("asking how the build's exec ended".into(), e))?;
        let code = inspected.exit_code.unwrap_or(-1);
        if code != 0 {
            // The idle loop may have ended the container just as the exec began: that is no
            // failure of the build, so it runs again in a fresh container.
            let running = match self.docker.inspect_container(name, None).await {
                Ok(found) => found.state.and_then(|s| s.running) == Some(true),
                Err(e) if status_code(&e) == Some(404) => false,
                Err(e) => return Err(docker_error(format!("inspecting container {name}"), e)),
            };
            if !running {
                return Ok(WarmRun::Unavailable(
                    "the warm container stopped during the build".into(),
                ));
            }
        }
        Ok(WarmRun::Ran(BuilderExit { code, tail, ran_ms }))
    }
}

/// The warm builder's name and configuration (see [`Engine::run_builder_warm`]).
fn warm_body(
    plan: &Plan,
    output_dir: &Path,
    output_identity: &str,
    secrets: &crate::plan::secrets::Resolved,
    image: &ImageFacts,
    warm_secs: u64,
) -> Result<(String, ContainerCreateBody)> {
    use sha2::{Digest, Sha256};
    let mut body = builder_body(plan, output_dir, secrets, false)?;
    body.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
    body.cmd = Some(vec![idle_script(warm_secs)]);
    if let Some(host) = body.host_config.as_mut() {
        host.auto_remove = Some(true);
    }
    // Labels are a HashMap, in a different order in every process: hash them sorted.
    let mut unlabelled = body.clone();
    let labels: std::collections::BTreeMap<String, String> = unlabelled
        .labels
        .take()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&unlabelled).unwrap_or_default());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(&labels).unwrap_or_default());
    hasher.update([0]);
    hasher.update(image.id.as_bytes());
    hasher.update([0]);
    hasher.update(output_identity.as_bytes());
    let hash: String = hasher.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    body.labels
        .get_or_insert_with(HashMap::new)
        .insert(WARM_LABEL.to_string(), hash.clone());
    let name = format!(
        "dockception-warm-{}-{}-{hash}",
        plan.project,
        name_part(&plan.target)
    );
    Ok((name, body))
}

/// A target name as a container name may hold it.
fn name_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The warm builder's command (POSIX sh and `sleep` only): wait, and end once no exec has run
/// for `secs` seconds. Any process but PID 1 that is not a zombie is an exec (or its
/// children) at work; the loop's own `sleep` has ended by the time it looks.
fn idle_script(secs: u64) -> String {
    format!(
        "trap 'exit 0' TERM INT; idle=0; \
         while [ \"$idle\" -lt {secs} ]; do \
         sleep {WARM_POLL_SECS}; busy=0; \
         for d in /proc/[0-9]*; do \
         [ \"$d\" = /proc/1 ] && continue; \
         s=''; read -r s 2>/dev/null < \"$d/stat\" || [ -n \"$s\" ] || continue; \
         case \"${{s##*) }}\" in Z*) continue;; esac; \
         busy=1; break; \
         done; \
         if [ \"$busy\" = 1 ]; then idle=0; else idle=$((idle + {WARM_POLL_SECS})); fi; \
         done"
    )
}

/// An entry of the engine's path stat: Go's `os.FileMode` bits and the resolved link target.
fn entry_of(mode: u32, link_target: &str) -> Entry {
    use Entry;
    const MODE_DIR: u32 = 1 << 31;
    const MODE_SYMLINK: u32 = 1 << 27;
    const MODE_TYPE: u32 =
        MODE_DIR | MODE_SYMLINK | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19);
    if mode & MODE_SYMLINK != 0 && !link_target.is_empty() {
        Entry::Symlink {
            target: link_target.to_string(),
        }
    } else if mode & MODE_TYPE == 0 {
        Entry::File {
            executable: mode & 0o111 != 0,
        }
    } else {
        Entry::Other
    }
}

/// Write the first regular file of the tar arriving on `chunks` to `dest`.
fn unpack_one_file(
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    dest: &Path,
) -> std::io::Result<u64> {
    let reader = ChannelReader {
        chunks,
        current: Bytes::new(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut out = std::fs::File::create(dest)?;
            return std::io::copy(&mut entry, &mut out);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the engine sent no regular file",
    ))
}

/// Blocking reads over chunks sent from async code.
struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

fn emit_line(
    line: &[u8],
    redact: &[String],
    progress: &Progress,
    tail: &mut VecDeque<String>,
    keep: usize,
) {
    let mut text = String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_string();
    for secret in redact.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.as_str(), "***");
    }
    progress.log(&text);
    if tail.len() >= keep {
        tail.pop_front();
    }
    tail.push_back(text);
}

/// The builder container's configuration: the image, the command, the sources, caches and
/// `output_dir` mounted, secret files mounted, and secret variables in its environment only
/// when `with_secret_env` (a warm container gets them per exec instead, so they are never
/// part of a container that outlives the build).
fn builder_body(
    plan: &Plan,
    output_dir: &Path,
    secrets: &crate::plan::secrets::Resolved,
    with_secret_env: bool,
) -> Result<ContainerCreateBody> {
    let b = &plan.builder;
    let mut mounts: Vec<DockerMount> = Vec::new();
    for m in &b.mounts {
        mounts.push(DockerMount {
            typ: Some(MountType::BIND),
            source: Some(host_path(&m.source)?),
            target: Some(m.target.clone()),
            read_only: Some(m.read_only),
            ..Default::default()
        });
    }
    mounts.extend(b.caches.iter().map(volume_mount));
    mounts.push(DockerMount {
        typ: Some(MountType::BIND),
        source: Some(host_path(output_dir)?),
        target: Some(b.output_target.clone()),
        read_only: Some(false),
        ..Default::default()
    });
    for file in &secrets.files {
        mounts.push(DockerMount {
            typ: Some(MountType::BIND),
            source: Some(host_path(&file.source)?),
            target: Some(file.target.clone()),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let secret_env: &[(String, String)] = if with_secret_env { &secrets.env } else { &[] };
    let env = b
        .env
        .iter()
        .chain(secret_env)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Ok(ContainerCreateBody {
        image: Some(b.image.clone()),
        cmd: Some(b.command.clone()),
        env: Some(env),
        working_dir: b.workdir.clone(),
        user: b.user.clone(),
        labels: Some(labels("builder", &plan.project)),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            network_mode: b.network.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn volume_mount(cache: &CacheVolume) -> DockerMount {
    DockerMount {
        typ: Some(MountType::VOLUME),
        source: Some(cache.volume.clone()),
        target: Some(cache.target.clone()),
        read_only: Some(false),
        ..Default::default()
    }
}

fn labels(role: &str, project: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL.to_string(), role.to_string()),
        (PROJECT_LABEL.to_string(), project.to_string()),
    ])
}

/// A token unique to this process (pid and start time), carried by every container name it
/// creates, so its leftovers can be found by name.
fn session() -> &'static str {
    static SESSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SESSION.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("s{:x}x{nanos:08x}", std::process::id())
    })
}

/// Unique across concurrent runs of one project: the session token plus a counter.
fn unique_name(prefix: &str, project: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{project}-{}-{}",
        session(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A numeric user other than root needs fresh volumes handed over.
fn needs_chown(user: &str) -> bool {
    let uid = user.split(':').next().unwrap_or(user);
    uid.parse::<u32>().is_ok_and(|uid| uid != 0)
}

/// `registry:5000/app:v1` -> (`registry:5000/app`, `v1`); no tag means `latest`.
fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

fn status_code(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The daemon's own words when there are some.
fn daemon_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

fn docker_error(action: String, e: bollard::errors::Error) -> Error {
    if is_connection_lost(&e) {
        let message = match io_kind(&e) {
            Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_string(),
            Some(std::io::ErrorKind::NotFound) => "its socket is gone".to_string(),
            Some(
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof,
            ) => "the connection was cut".to_string(),
            _ if matches!(e, bollard::errors::Error::RequestTimeoutError) => {
                "no answer in time".to_string()
            }
            _ => error_chain(&e),
        };
        return Error::EngineGone { action, message };
    }
    let message = daemon_message(&e);
    Error::Docker { action, message }
}

/// Whether `e` means the connection to the engine broke (it stopped, restarted or hung up),
/// as opposed to the engine answering with an error.
fn is_connection_lost(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        e,
        E::HyperResponseError { .. }
            | E::IOError { .. }
            | E::HyperLegacyError { .. }
            | E::RequestTimeoutError
            | E::SocketNotFoundError(_)
    )
}

/// `e` and its sources, joined with `: `, without repeating a source already in the text.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The first I/O error in `e`'s chain of sources.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        current = err.source();
    }
    None
}

/// Turn a failed connection into the one error that says what to do about it.
fn connect_error(host: &str, from_env: bool, e: &bollard::errors::Error) -> Error {
    use bollard::errors::Error as E;
    let reason = error_chain(e);
    if let E::UnsupportedURISchemeError { .. } = e {
        return Error::BadDockerHost {
            host: host.to_string(),
            reason: "dockception speaks to unix:// sockets and tcp:// or http:// addresses".into(),
        };
    }
    let kind = io_kind(e);
    let lower = reason.to_lowercase();
    if kind == Some(std::io::ErrorKind::PermissionDenied) || lower.contains("permission denied") {
        return Error::EngineAccessDenied {
            host: host.to_string(),
        };
    }
    if lower.contains("dns error") || lower.contains("failed to lookup address") {
        return Error::BadDockerHost {
            host: host.to_string(),
            reason: format!("its host name does not resolve ({reason})"),
        };
    }
    let reason = match (e, kind) {
        (E::SocketNotFoundError(path), _) => format!("the socket {path} does not exist"),
        (_, Some(std::io::ErrorKind::NotFound)) => "the socket does not exist".to_string(),
        (_, Some(std::io::ErrorKind::ConnectionRefused)) => {
            "nothing listens there (connection refused)".to_string()
        }
        _ => reason,
    };
    if from_env {
        Error::NoDaemonAtDockerHost {
            host: host.to_string(),
            reason,
        }
    } else {
        Error::NoDaemon {
            host: host.to_string(),
            reason,
        }
    }
}

/// `"1.41"` -> `(1, 41)`.
fn parse_api_version(text: &str) -> Option<(usize, usize)> {
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Refuse an engine whose API is older than [`MIN_API_VERSION`].
pub fn check_api_version(host: &str, version: (usize, usize)) -> Result<()> {
    if version < MIN_API_VERSION {
        return Err(Error::EngineTooOld {
            host: host.to_string(),
            version: format!("{}.{}", version.0, version.1),
            minimum: format!("{}.{}", MIN_API_VERSION.0, MIN_API_VERSION.1),
        });
    }
    Ok(())
}

/// A host path for the daemon. The Engine API carries paths as JSON strings, so a path that
/// is not UTF-8 cannot be sent without changing it; refuse it instead.
fn host_path(path: &Path) -> Result<String> {
    path.to_str().map(str::to_string).ok_or_else(|| Error::io("cannot hand the Docker Engine the path", path.to_path_buf(), std::io::Error::other(
            "it is not valid UTF-8, and the Engine API only carries UTF-8 paths; rename the folder",
        )))
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

    #[test]
    fn only_numeric_non_root_users_need_a_chown() {
        assert!(needs_chown("1000:1000"));
        assert!(needs_chown("1000"));
        assert!(!needs_chown("0:0"));
        assert!(!needs_chown("builder"));
    }

    #[test]
    fn old_engines_are_refused_with_the_versions() {
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert_eq!(parse_api_version(" 1.9 "), Some((1, 9)));
        assert_eq!(parse_api_version("1"), None);
        assert_eq!(parse_api_version("one.two"), None);
        assert!(check_api_version("unix:///x", (1, 41)).is_ok());
        assert!(check_api_version("unix:///x", (1, 25)).is_ok());
        let e = check_api_version("unix:///x", (1, 24)).expect_err("too old");
        let text = e.to_string();
        assert!(
            text.starts_with(
                "the Docker Engine at unix:///x speaks API 1.24; dockception needs 1.25 or newer"
            ),
            "{text}"
        );
        assert!(text.contains("help: upgrade the engine"), "{text}");
    }

    #[test]
    fn secrets_are_masked_in_the_builders_output() {
        let mut tail = VecDeque::new();
        emit_line(
            b"token is s3cr3t, again s3cr3t\r",
            &["s3cr3t".to_string(), String::new()],
            &Progress::Quiet,
            &mut tail,
            TAIL_LINES,
        );
        assert_eq!(tail[0], "token is ***, again ***");
    }

    #[test]
    fn non_utf8_host_paths_are_refused_not_mangled() {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/caf\xe9"));
        let e = host_path(path).expect_err("not UTF-8");
        assert!(e.to_string().contains("not valid UTF-8"), "{e}");
        assert_eq!(host_path(Path::new("/tmp/a b")).expect("utf-8"), "/tmp/a b");
    }

    #[test]
    fn a_warm_builders_name_follows_its_configuration_only() {
        let loaded = crate::manifest::parse_bytes_with(
            Path::new("/p/dockception.toml"),
            "[builder]\nimage = \"busybox:local\"\nrun = \"true\"\nwarm = \"60s\"\n[artifacts]\ninclude = [\"app\"]\n".into(),
            &Default::default(),
        )
        .expect("a manifest");
        let plans =
            crate::plan::plan(&loaded, &crate::plan::PlanOptions::default()).expect("a plan");
        let mut plan = plans.targets[0].clone();
        let image = ImageFacts {
            id: "sha256:1".into(),
            size: 0,
            config: BaseConfig::default(),
        };
        let secrets = crate::plan::secrets::Resolved {
            env: vec![("TOKEN".into(), "secret-value".into())],
            files: vec![],
        };
        let name = |plan: &Plan, image: &ImageFacts| {
            warm_body(plan, Path::new("/o"), "1:2", &secrets, image, 60)
                .expect("a body")
                .0
        };
        let first = name(&plan, &image);
        assert!(first.starts_with("dockception-warm-"), "{first}");
        // Labels are a HashMap: the name must not follow its order.
        for _ in 0..20 {
            assert_eq!(name(&plan, &image), first);
        }
        let (_, body) =
            warm_body(&plan, Path::new("/o"), "1:2", &secrets, &image, 60).expect("a body");
        assert!(!format!("{:?}", body.env).contains("secret-value"));
        assert_eq!(body.host_config.and_then(|h| h.auto_remove), Some(true));
        let other_image = ImageFacts {
            id: "sha256:2".into(),
            ..image.clone()
        };
        assert_ne!(name(&plan, &other_image), first);
        plan.builder.env.push(("A".into(), "1".into()));
        assert_ne!(name(&plan, &image), first);
    }

    #[test]
    fn names_are_unique_within_a_process() {
        assert_ne!(unique_name("a", "p"), unique_name("a", "p"));
    }
}
