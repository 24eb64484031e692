//! One-shot containers: the builder and its helpers (a cache's hand-over, `du` of the caches, the
//! runtime steps). Each is created tracked, run with its output streamed, and removed whatever
//! happens.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};

use super::error::{docker_error, is_connection_lost, Answer, On};
use super::mode::Mode;
use super::owner::{Owner, OWNER_LABEL};
use super::{BuilderExit, Engine, Error, Result};
use crate::fsutil::FromIo as _;
use crate::plan::secrets::Resolved;
use crate::plan::{CacheVolume, Plan, LABEL, PROJECT_LABEL};
use crate::progress::Progress;

/// How many of the builder's last output lines a failure shows.
pub(super) const TAIL_LINES: usize = 20;

/// How long a create request that was in flight when its work stopped may take to land.
pub(super) const LATE_CREATE: Duration = Duration::from_millis(150);

impl Engine {
    /// Run the build command with the sources, caches and the fresh output folder mounted,
    /// stream its output, and remove the container whatever happens. Secrets' variables are
    /// added to the builder's (and only the builder's) environment, their files are
    /// bind-mounted read-only, and their values are masked in the builder's output.
    pub(crate) async fn run_builder_with(
        &self,
        plan: &Plan,
        output_dir: &Path,
        secrets: &Resolved,
        progress: &Progress,
    ) -> Result<BuilderExit> {
        self.hide_in_output(secrets);
        if self.mode_now() == Mode::Remote {
            return self
                .run_builder_remote(plan, output_dir, secrets, progress)
                .await;
        }
        let body = builder_body(plan, output_dir, secrets, true, Mode::Local)?;
        let name = unique_name("dockception-build", &plan.project);
        let action = format!("creating the builder container for {}", plan.builder.image);
        self.run_container(&name, body, action, progress)
            .await
            .map_err(|e| self.unless_blind(e))
    }

    /// `e`, or, when it says the engine's host has no such folder to bind-mount, the error
    /// that says the engine cannot see this machine's files (and a kept probe answer is
    /// forgotten, so the next build asks again).
    pub(super) fn unless_blind(&self, e: Error) -> Error {
        let message = match &e {
            Error::Container { message, .. }
                if message.contains("bind source path does not exist") =>
            {
                message.clone()
            }
            _ => return e,
        };
        self.forget_mode();
        Error::CannotSeeFiles {
            host: self.host.clone(),
            why: self
                .mode
                .get()
                .map_or_else(|| "the default".to_string(), |d| d.why.clone()),
            message,
        }
    }

    /// From now on, the builder's output shows `***` for each of the secrets' values.
    pub(super) fn hide_in_output(&self, secrets: &Resolved) {
        if let Ok(mut redact) = self.redact.lock() {
            redact.extend(secrets.values().map(str::to_string));
        }
    }

    /// Create, run to its end and remove the container `name`; `action` says what creating it
    /// is for.
    pub(super) async fn run_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
        action: String,
        progress: &Progress,
    ) -> Result<BuilderExit> {
        self.create_tracked(name, body, action).await?;
        let result = self.start_and_wait(name, progress).await;
        self.then_remove(name, result).await
    }

    /// `result`, of work done in the container `name`, once that container is removed; the
    /// work's error comes first, being the cause.
    pub(super) async fn then_remove<T>(&self, name: &str, result: Result<T>) -> Result<T> {
        let removed = self.remove_container(name).await;
        let value = result?;
        removed?;
        Ok(value)
    }

    pub(super) async fn start_and_wait(
        &self,
        name: &str,
        progress: &Progress,
    ) -> Result<BuilderExit> {
        self.start_and_wait_lines(name, progress, TAIL_LINES).await
    }

    /// Start, stream the output keeping its last `keep` lines, and wait.
    pub(super) async fn start_and_wait_lines(
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
            .doing(On::Container(name), || {
                format!("attaching to container {name}")
            })?;
        let mut logs = attached.output;
        self.docker
            .start_container(name, None)
            .await
            .doing(On::Container(name), || format!("starting container {name}"))?;
        let started = Instant::now();
        let tail = self.stream_lines(&mut logs, name, progress, keep).await?;
        let ran_ms = millis_since(started);
        let code = self.exit_code(name).await?;
        Ok(BuilderExit { code, tail, ran_ms })
    }

    /// Wait for the container `name` to end; its exit status.
    async fn exit_code(&self, name: &str) -> Result<i64> {
        let mut wait = self.docker.wait_container(name, None);
        let mut code = 0;
        while let Some(item) = wait.next().await {
            match item {
                Ok(response) => code = response.status_code,
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(e) => {
                    return Err(docker_error(
                        On::Container(name),
                        format!("waiting for container {name}"),
                        e,
                    ))
                }
            }
        }
        Ok(code)
    }

    /// Show the output of container `name` line by line, secrets masked, and keep its last
    /// `keep` lines.
    pub(super) async fn stream_lines(
        &self,
        logs: &mut (impl Stream<
            Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>,
        > + Unpin),
        name: &str,
        progress: &Progress,
        keep: usize,
    ) -> Result<Vec<String>> {
        let mut tail: VecDeque<String> = VecDeque::with_capacity(keep.min(TAIL_LINES));
        let mut pending = Vec::new();
        let redact = self.redact.lock().map(|r| r.clone()).unwrap_or_default();
        while let Some(item) = logs.next().await {
            let chunk = item.doing(On::Container(name), || {
                format!("reading the output of container {name}")
            })?;
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

    /// Remove the container `name` (running or not) and stop tracking it; one that is gone
    /// already counts as removed.
    pub(super) async fn remove_container(&self, name: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(false)
            .build();
        let removed = self.docker.remove_container(name, Some(options)).await;
        // A warm builder removes itself once stopped (auto-remove): when that removal is
        // already under way, wait for it, so that what it mounts (a cache volume) is free.
        if matches!(&removed, Err(e) if super::error::status_code(e) == Some(409)) {
            self.wait_until_gone(name).await;
        } else {
            removed
                .or_absent()
                .doing(On::Container(name), || format!("removing container {name}"))?;
        }
        self.untrack(name);
        Ok(())
    }

    /// Wait (up to ten seconds) until the engine no longer knows the container `name`.
    async fn wait_until_gone(&self, name: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match self.docker.inspect_container(name, None).await.or_absent() {
                Ok(None) | Err(_) => return,
                Ok(Some(_)) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    /// Create a container, tracked from before the request is sent: if the run is interrupted
    /// while the request is in flight, the daemon may still create it, and the cleanup must
    /// know its name. It carries [`OWNER_LABEL`], so `clean` knows whether its run is over.
    pub(super) async fn create_tracked(
        &self,
        name: &str,
        body: ContainerCreateBody,
        action: String,
    ) -> Result<()> {
        self.supported().await?;
        let mut body = body;
        body.labels
            .get_or_insert_with(HashMap::new)
            .insert(OWNER_LABEL.to_string(), Owner::this_process().label());
        self.track(name);
        self.create_container(name, body).await.map_err(|e| {
            // A lost connection may still have created it: keep it for the cleanup.
            if !is_connection_lost(&e) {
                self.untrack(name);
            }
            docker_error(On::Container(name), action, e)
        })
    }

    /// Create a container tracked once it exists, without the owner label or the version
    /// check: a short helper whose name alone the interrupt cleanup needs.
    pub(super) async fn create_untracked(
        &self,
        name: &str,
        body: ContainerCreateBody,
        action: impl FnOnce() -> String,
    ) -> Result<()> {
        self.create_container(name, body)
            .await
            .doing(On::Container(name), action)?;
        self.track(name);
        Ok(())
    }

    async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> std::result::Result<(), bollard::errors::Error> {
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map(drop)
    }

    /// Whether the container `name` runs; `None` when there is none.
    pub(super) async fn container_running(&self, name: &str) -> Result<Option<bool>> {
        let found = self
            .docker
            .inspect_container(name, None)
            .await
            .or_absent()
            .doing(On::Container(name), || {
                format!("inspecting container {name}")
            })?;
        Ok(found.map(|c| c.state.and_then(|s| s.running) == Some(true)))
    }

    pub(super) fn track(&self, name: &str) {
        if let Ok(mut live) = self.live_containers.lock() {
            live.push(name.to_string());
        }
    }

    pub(super) fn untrack(&self, name: &str) {
        if let Ok(mut live) = self.live_containers.lock() {
            live.retain(|n| n != name);
        }
    }
}

pub(super) fn emit_line(
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

/// `text` as one word for a container's `sh`: single quotes, with each `'` written as `'\''`.
pub(crate) fn sh_word(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Milliseconds since `started`, for [`BuilderExit::ran_ms`].
pub(super) fn millis_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The builder container's configuration: the image, the command, the sources, caches and
/// `output_dir` mounted, secret files mounted, and secret variables in its environment only
/// when `with_secret_env` (a warm container gets them per exec instead, so they are never
/// part of a container that outlives the build). On a remote engine the sources are their
/// synced volumes, and neither the output folder nor the secrets are mounted (they are
/// uploaded into the container, see `remote`).
pub(super) fn builder_body(
    plan: &Plan,
    output_dir: &Path,
    secrets: &Resolved,
    with_secret_env: bool,
    mode: Mode,
) -> Result<ContainerCreateBody> {
    let b = &plan.builder;
    let mut mounts: Vec<Mount> = Vec::new();
    for (i, m) in b.mounts.iter().enumerate() {
        mounts.push(match mode {
            Mode::Local => bind_mount(&m.source, &m.target, m.read_only)?,
            Mode::Remote => source_volume_mount(&plan.source_volume(i), &m.target, m.read_only),
        });
    }
    mounts.extend(b.caches.iter().map(volume_mount));
    if mode == Mode::Local {
        mounts.push(bind_mount(output_dir, &b.output_target, false)?);
        for file in &secrets.files {
            mounts.push(bind_mount(&file.source, &file.target, true)?);
        }
    }
    let secret_env: &[(String, String)] = if with_secret_env { &secrets.env } else { &[] };
    Ok(ContainerCreateBody {
        image: Some(b.image.clone()),
        cmd: Some(b.command.clone()),
        env: Some(env_lines(&b.env, secret_env)),
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

/// `KEY=value` lines of `env` and then `secret_env`.
pub(super) fn env_lines(env: &[(String, String)], secret_env: &[(String, String)]) -> Vec<String> {
    env.iter()
        .chain(secret_env)
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// The host folder or file `source` at `target` in the container.
pub(super) fn bind_mount(source: &Path, target: &str, read_only: bool) -> Result<Mount> {
    Ok(Mount {
        typ: Some(MountType::BIND),
        source: Some(host_path(source)?),
        target: Some(target.to_string()),
        read_only: Some(read_only),
        ..Default::default()
    })
}

/// The volume `volume` at `target` in the container.
pub(super) fn named_volume_mount(volume: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        typ: Some(MountType::VOLUME),
        source: Some(volume.to_string()),
        target: Some(target.to_string()),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// A source volume at `target`: never filled from the image's files at that path (Docker copies
/// them into an empty volume otherwise), as it holds the project's sources and nothing else.
pub(super) fn source_volume_mount(volume: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        volume_options: Some(bollard::models::MountVolumeOptions {
            no_copy: Some(true),
            ..Default::default()
        }),
        ..named_volume_mount(volume, target, read_only)
    }
}

/// A cache, writable, where the build expects it.
pub(super) fn volume_mount(cache: &CacheVolume) -> Mount {
    named_volume_mount(&cache.volume, &cache.target, false)
}

/// A host config with no network and only `mounts`: helpers need nothing else.
pub(super) fn offline(mounts: Option<Vec<Mount>>) -> HostConfig {
    HostConfig {
        mounts,
        network_mode: Some("none".into()),
        ..Default::default()
    }
}

/// The labels every resource dockception makes carries: its role and its project.
pub(super) fn labels(role: &str, project: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL.to_string(), role.to_string()),
        (PROJECT_LABEL.to_string(), project.to_string()),
    ])
}

/// A token unique to this process (pid and start time), carried by every container name it
/// creates, so its leftovers can be found by name.
pub(super) fn session() -> &'static str {
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
pub(super) fn unique_name(prefix: &str, project: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{project}-{}-{}",
        session(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A host path for the daemon. The Engine API carries paths as JSON strings, so a path that
/// is not UTF-8 cannot be sent without changing it; refuse it instead.
fn host_path(path: &Path) -> Result<String> {
    path.to_str().map(str::to_string).ok_or_else(|| {
        Error::io(
            "cannot hand the Docker Engine the path",
            path.to_path_buf(),
            std::io::Error::other(
                "it is not valid UTF-8, and the Engine API only carries UTF-8 paths; rename the folder",
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn names_are_unique_within_a_process() {
        assert_ne!(unique_name("a", "p"), unique_name("a", "p"));
    }
}
