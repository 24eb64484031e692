//! The one module that talks to the Docker Engine (bollard). Everything it is told comes as plain
//! data from the plan; everything it creates carries the `dockception` label and is removed
//! whatever happens, including on Ctrl-C (see [`Engine::remove_leftovers`]).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount as DockerMount, MountType, VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CommitContainerOptionsBuilder,
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::context::BaseConfig;
use crate::error::{Error, Result};
use crate::plan::{CacheVolume, Plan, LABEL, PROJECT_LABEL};
use crate::progress::Progress;

/// How many of the builder's last output lines a failure shows.
const TAIL_LINES: usize = 20;

/// A connection to a Docker Engine that answered a ping.
pub struct Engine {
    docker: Docker,
    host: String,
    /// Containers that exist right now and must go if the run is interrupted.
    live_containers: Mutex<Vec<String>>,
}

/// What the report needs to know about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// The image id (`sha256:…`).
    pub id: String,
    /// The image's size as the engine reports it (uncompressed layer content), in bytes.
    pub size: u64,
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
    /// How many history steps it has (metadata steps included).
    pub history_len: usize,
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
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let no_daemon = |reason: String| Error::NoDaemon {
            host: host.clone(),
            reason,
        };
        let docker = Docker::connect_with_defaults().map_err(|e| no_daemon(e.to_string()))?;
        match tokio::time::timeout(Duration::from_secs(10), docker.ping()).await {
            Err(_) => return Err(no_daemon("it did not answer within 10 s".into())),
            Ok(Err(e)) => return Err(no_daemon(explain_connect_error(&e))),
            Ok(Ok(_)) => {}
        }
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| no_daemon(e.to_string()))?;
        Ok(Engine {
            docker,
            host,
            live_containers: Mutex::new(Vec::new()),
        })
    }

    /// The address of the engine.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Facts about a local image, or `None` when the engine does not have it.
    pub async fn image_facts(&self, image: &str) -> Result<Option<ImageFacts>> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => Ok(Some(ImageFacts {
                id: inspect.id.unwrap_or_default(),
                size: inspect
                    .size
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
            })),
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(docker_error(format!("inspecting image {image}"), e)),
        }
    }

    /// Inspect and history of a local image: its layers (diff ids) and how many history steps
    /// it has, or `None` when the engine does not have it.
    pub async fn image_details(&self, image: &str) -> Result<Option<ImageDetails>> {
        let inspect = match self.docker.inspect_image(image).await {
            Ok(inspect) => inspect,
            Err(e) if status_code(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(docker_error(format!("inspecting image {image}"), e)),
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
            history_len: history.len(),
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
    pub async fn ensure_image(&self, image: &str, progress: &Progress) -> Result<ImageFacts> {
        if let Some(facts) = self.image_facts(image).await? {
            return Ok(facts);
        }
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
        let listed = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| docker_error("listing the cache volumes".into(), e))?;
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
        let b = &plan.builder;
        let mut mounts: Vec<DockerMount> = b
            .mounts
            .iter()
            .map(|m| DockerMount {
                typ: Some(MountType::BIND),
                source: Some(m.source.to_string_lossy().into_owned()),
                target: Some(m.target.clone()),
                read_only: Some(m.read_only),
                ..Default::default()
            })
            .collect();
        mounts.extend(b.caches.iter().map(volume_mount));
        mounts.push(DockerMount {
            typ: Some(MountType::BIND),
            source: Some(output_dir.to_string_lossy().into_owned()),
            target: Some(b.output_target.clone()),
            read_only: Some(false),
            ..Default::default()
        });
        let body = ContainerCreateBody {
            image: Some(b.image.clone()),
            cmd: Some(b.command.clone()),
            env: Some(b.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: b.workdir.clone(),
            user: b.user.clone(),
            labels: Some(labels("builder", &plan.project)),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                ..Default::default()
            }),
            ..Default::default()
        };
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
        let mut tail: VecDeque<String> = VecDeque::with_capacity(keep.min(TAIL_LINES));
        let mut pending = Vec::new();
        while let Some(item) = logs.next().await {
            let chunk = item.map_err(|e| docker_error("reading the builder's output".into(), e))?;
            pending.extend_from_slice(&chunk.into_bytes());
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                emit_line(&line[..line.len() - 1], progress, &mut tail, keep);
            }
        }
        if !pending.is_empty() {
            emit_line(&pending, progress, &mut tail, keep);
        }
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
        Ok(BuilderExit {
            code,
            tail: tail.into_iter().collect(),
            ran_ms,
        })
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
        self.track(name);
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.untrack(name);
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
        left
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
            let info = item.map_err(|e| Error::ImageBuild {
                message: daemon_message(&e),
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
        id.ok_or_else(|| Error::ImageBuild {
            message: "the engine finished without naming the built image".into(),
        })
    }

    /// The entrypoint, cmd and user an image runs with, as its config says.
    pub async fn image_run_config(&self, image: &str) -> Result<BaseConfig> {
        let inspect = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|e| docker_error(format!("inspecting image {image}"), e))?;
        let config = inspect.config.unwrap_or_default();
        Ok(BaseConfig {
            entrypoint: config.entrypoint.filter(|e| !e.is_empty()),
            cmd: config.cmd.filter(|c| !c.is_empty()),
            user: config.user.filter(|u| !u.is_empty()),
        })
    }

    /// The first of `paths` that is a regular file in `image`, with its content; `None` when the
    /// image has none of them. Nothing runs: a container is created, read and removed.
    pub async fn file_from_image(
        &self,
        image: &str,
        paths: &[&str],
        project: &str,
    ) -> Result<Option<(String, Vec<u8>)>> {
        let name = unique_name("dockception-probe", project);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            // Never started; a command is only needed because images without one cannot be
            // created.
            entrypoint: Some(vec!["/nonexistent".into()]),
            labels: Some(labels("probe", project)),
            network_disabled: Some(true),
            ..Default::default()
        };
        self.create_tracked(&name, body, &format!("creating a container of {image}"))
            .await?;
        let mut found = None;
        let mut failure = None;
        for path in paths {
            match self.read_file(&name, path).await {
                Ok(Some(content)) => {
                    found = Some((path.to_string(), content));
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        self.remove_container(&name).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }

    async fn read_file(&self, container: &str, path: &str) -> Result<Option<Vec<u8>>> {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut archive = Vec::new();
        let mut stream = self
            .docker
            .download_from_container(container, Some(options));
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => archive.extend_from_slice(&bytes),
                Err(e) if status_code(&e) == Some(404) => return Ok(None),
                Err(e) => return Err(docker_error(format!("reading {path} from {container}"), e)),
            }
        }
        let mut tar = tar::Archive::new(archive.as_slice());
        let entries = tar
            .entries()
            .map_err(|e| Error::io("reading the archive of", path, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::io("reading the archive of", path, e))?;
            if entry.header().entry_type().is_file() {
                let mut content = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut content)
                    .map_err(|e| Error::io("reading", path, e))?;
                return Ok(Some(content));
            }
        }
        Ok(None)
    }

    /// Run `script` in a container of `base` with `mount_dir` mounted read-only at
    /// `mount_at`, then commit the container as an image with `changes` (Dockerfile
    /// instructions: ENTRYPOINT, CMD, USER, ENV, …) applied. The result has exactly one layer
    /// more than the base, holding what the script changed and nothing of the mount.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_steps_and_commit(
        &self,
        base: &str,
        script: &str,
        mount_dir: &Path,
        mount_at: &str,
        changes: &[String],
        project: &str,
        progress: &Progress,
    ) -> Result<std::result::Result<String, BuilderExit>> {
        let base_user = self.image_run_config(base).await?.user;
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
        Ok(())
    }
}

fn emit_line(line: &[u8], progress: &Progress, tail: &mut VecDeque<String>, keep: usize) {
    let text = String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_string();
    progress.log(&text);
    if tail.len() >= keep {
        tail.pop_front();
    }
    tail.push_back(text);
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
    let message = daemon_message(&e);
    if matches!(
        e,
        bollard::errors::Error::HyperResponseError { .. } | bollard::errors::Error::IOError { .. }
    ) {
        return Error::Docker {
            action,
            message: format!("{message} (did the Docker Engine stop? check `docker info`)"),
        };
    }
    Error::Docker { action, message }
}

fn explain_connect_error(e: &bollard::errors::Error) -> String {
    let text = e.to_string();
    let lower = text.to_lowercase();
    if lower.contains("permission denied") {
        format!(
            "{text} (add yourself to the docker group, or run with a user that may use the socket)"
        )
    } else {
        text
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

    #[test]
    fn only_numeric_non_root_users_need_a_chown() {
        assert!(needs_chown("1000:1000"));
        assert!(needs_chown("1000"));
        assert!(!needs_chown("0:0"));
        assert!(!needs_chown("builder"));
    }

    #[test]
    fn names_are_unique_within_a_process() {
        assert_ne!(unique_name("a", "p"), unique_name("a", "p"));
    }
}
