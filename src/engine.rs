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
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, ContainerArchiveInfoOptionsBuilder,
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

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

/// How the build command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderExit {
    /// The exit status.
    pub code: i64,
    /// The last lines of output.
    pub tail: Vec<String>,
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
                network_mode: b.network.clone(),
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
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| docker_error("creating the builder container".into(), e))?;
        self.track(name);
        let result = self.start_and_wait(name, progress).await;
        let removed = self.remove_container(name).await;
        let exit = result?;
        removed?;
        Ok(exit)
    }

    async fn start_and_wait(&self, name: &str, progress: &Progress) -> Result<BuilderExit> {
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
        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        let mut pending = Vec::new();
        while let Some(item) = logs.next().await {
            let chunk = item.map_err(|e| docker_error("reading the builder's output".into(), e))?;
            pending.extend_from_slice(&chunk.into_bytes());
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                emit_line(&line[..line.len() - 1], progress, &mut tail);
            }
        }
        if !pending.is_empty() {
            emit_line(&pending, progress, &mut tail);
        }
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
    pub async fn stat_image_file(
        &self,
        files: &ImageFiles,
        path: &str,
    ) -> Result<crate::libs::Entry> {
        use crate::libs::Entry;
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
        if let crate::libs::Entry::Symlink { target } = self.stat_image_file(files, path).await? {
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

/// An entry of the engine's path stat: Go's `os.FileMode` bits and the resolved link target.
fn entry_of(mode: u32, link_target: &str) -> crate::libs::Entry {
    use crate::libs::Entry;
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

fn emit_line(line: &[u8], progress: &Progress, tail: &mut VecDeque<String>) {
    let text = String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_string();
    progress.log(&text);
    if tail.len() == TAIL_LINES {
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

/// Unique across concurrent runs of one project: pid plus a per-process counter plus time.
fn unique_name(prefix: &str, project: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{project}-{}-{}-{nanos:08x}",
        std::process::id(),
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
