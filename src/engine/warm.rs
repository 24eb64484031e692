//! The warm builder: a builder container kept running between builds, each build run in it
//! through its channel (`warm_channel`) or a `docker exec`, so a build does not wait for a
//! container to be made and started.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig};

use super::containers::{builder_body, env_lines, millis_since, source_volume_mount, TAIL_LINES};
use super::error::{daemon_message, docker_error, status_code, Answer, On};
use super::mode::Mode;
use super::warm_channel;
use super::{BuilderExit, Engine, ImageFacts, Result, WarmRun};
use crate::fsutil::FromIo as _;
use crate::plan::secrets::Resolved;
use crate::plan::Plan;
use crate::progress::Progress;

/// The label a warm builder container carries: the hash of its configuration, which its name
/// ends with too.
pub(super) const WARM_LABEL: &str = "dockception.warm";

/// The label of a warm builder that names its target, for `dockception ps`.
pub(super) const TARGET_LABEL: &str = "dockception.target";

/// The label of a warm builder that says after how many idle seconds it ends.
pub(super) const WARM_IDLE_LABEL: &str = "dockception.warm-idle";

/// How often a warm builder's idle loop looks for a running exec, in seconds.
const WARM_POLL_SECS: u64 = 2;

impl Engine {
    /// Make sure the target's warm builder container runs, made and started first when none
    /// does, for a build with `docker exec` ([`Engine::run_in_warm`]). The container is
    /// configured like [`Engine::run_builder_with`]'s, with `output_dir` (a folder that stays,
    /// so later builds can use the same container) as its output mount, no secret variables in
    /// its own environment (each exec gets them), and an idle loop as its command that ends
    /// it, and the daemon removes it, after `plan.builder.warm` seconds without a build. Its
    /// name and its [`WARM_LABEL`] hold a hash of that configuration, the builder image's id
    /// and `output_identity`, so any change makes a new container. From here until the
    /// command ended the container is tracked like any other (an interrupt removes it, as no
    /// exec can be killed through the API); afterwards it is kept on purpose.
    ///
    /// On a local engine the container also mounts a folder of its own under `channel_root`
    /// (named by that hash) holding the pipes builds reach it through (`warm_channel`).
    ///
    /// On a remote engine the target's source volumes are made first (the container mounts
    /// them), and one root exec makes the output folder anew and reads the volumes' sync
    /// markers, so the sources can be synced through this container
    /// ([`WarmSession::sync_helper`]).
    pub(crate) async fn open_warm(
        &self,
        plan: &Plan,
        output_dir: &Path,
        output_identity: &str,
        channel_root: &Path,
        secrets: &Resolved,
        image: &ImageFacts,
    ) -> Result<WarmOpen> {
        let Some(warm_secs) = plan.builder.warm else {
            return Ok(WarmOpen::Unavailable(
                "the target has no builder.warm".into(),
            ));
        };
        self.hide_in_output(secrets);
        let mode = self.mode_now();
        // On a remote engine no folder of this machine is mounted: the output folder lives in
        // the container, emptied before each build and read back after it.
        let output_identity = match mode {
            Mode::Local => output_identity,
            Mode::Remote => "remote",
        };
        let fresh = match mode {
            Mode::Local => Vec::new(),
            Mode::Remote => self.ensure_source_volumes(plan).await?,
        };
        let channel_root = (mode == Mode::Local).then_some(channel_root);
        let (name, body, _channel) = warm_body(
            plan,
            output_dir,
            output_identity,
            channel_root,
            secrets,
            image,
            warm_secs,
            mode,
        )?;
        let started = match self
            .ensure_warm_container(&name, body, &plan.builder.image)
            .await?
        {
            WarmStart::Unavailable(reason) => return Ok(WarmOpen::Unavailable(reason)),
            WarmStart::Running => {
                self.track(&name);
                false
            }
            // Made by this run: tracked since its create.
            WarmStart::Started => true,
        };
        let mut session = WarmSession {
            name,
            output_dir: output_dir.to_path_buf(),
            output_identity: output_identity.to_string(),
            channel_root: channel_root.map(Path::to_path_buf),
            warm_secs,
            started,
            fresh,
            markers: None,
        };
        if mode == Mode::Remote {
            match self.prepare_remote_warm(&session.name, plan).await {
                Ok(Ok(markers)) => session.markers = Some(markers),
                Ok(Err(reason)) => {
                    self.remove_container(&session.name).await?;
                    return Ok(WarmOpen::Unavailable(reason));
                }
                Err(e) => {
                    let _ = self.remove_container(&session.name).await;
                    return Err(e);
                }
            }
        }
        Ok(WarmOpen::Ready(session))
    }

    /// Run the build command in the warm builder `session` opened (through its channel, else
    /// with `docker exec`), and wait for its end. Were the container gone since (a sync that
    /// had to empty its volumes removes it), it is made anew.
    pub(crate) async fn run_in_warm(
        &self,
        session: WarmSession,
        plan: &Plan,
        secrets: &Resolved,
        image: &ImageFacts,
        progress: &Progress,
    ) -> Result<WarmRun> {
        let mode = self.mode_now();
        let output_dir = session.output_dir.as_path();
        let (name, body, channel) = warm_body(
            plan,
            output_dir,
            &session.output_identity,
            session.channel_root.as_deref(),
            secrets,
            image,
            session.warm_secs,
            mode,
        )?;
        // The output folder is ready when the container that made it still runs.
        let (started, prepared) = match self
            .ensure_warm_container(&name, body, &plan.builder.image)
            .await?
        {
            WarmStart::Unavailable(reason) => return Ok(WarmRun::Unavailable(reason)),
            WarmStart::Running => (session.started, session.markers.is_some()),
            WarmStart::Started => (true, false),
        };
        let ran = match mode {
            Mode::Local => {
                self.exec_build(&name, channel.as_deref(), plan, secrets, image, progress)
                    .await
            }
            Mode::Remote => {
                self.exec_build_remote(&name, plan, output_dir, secrets, image, prepared, progress)
                    .await
            }
        };
        match ran {
            Ok(WarmRun::Ran(exit)) => {
                self.untrack(&name);
                // Said once the build used it: one that could not be used is gone again.
                if started {
                    progress.say(&started_line(&name, session.warm_secs));
                }
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

    /// Give up a warm builder `session` opened without building in it: it is kept running
    /// (it was used before, or stays for the next build) but no longer tracked.
    pub(crate) fn leave_warm(&self, session: WarmSession) {
        self.untrack(&session.name);
    }

    /// Make sure the container `name` (of `image`) runs: use it when it does, replace it when
    /// it stopped, create and start it when absent. Nothing of it is left when it cannot be
    /// made to run.
    async fn ensure_warm_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
        image: &str,
    ) -> Result<WarmStart> {
        match self.container_running(name).await? {
            Some(true) => return Ok(WarmStart::Running),
            Some(false) => self.remove_container(name).await?,
            None => {}
        }
        let action = format!("creating the warm builder container for {image}");
        if let Err(e) = self.create_tracked(name, body, action).await {
            let _ = self.remove_container(name).await;
            return Ok(WarmStart::Unavailable(e.to_string()));
        }
        if let Err(e) = self.docker.start_container(name, None).await {
            let _ = self.remove_container(name).await;
            return Ok(WarmStart::Unavailable(format!(
                "it could not start (it runs /bin/sh, which the builder image needs): {}",
                daemon_message(&e)
            )));
        }
        Ok(WarmStart::Started)
    }

    /// Run the plan's command in the running container `name` (through its channel folder
    /// `channel` when it has one and the request fits, else as an exec) and wait for its end.
    pub(super) async fn exec_build(
        &self,
        name: &str,
        channel: Option<&Path>,
        plan: &Plan,
        secrets: &Resolved,
        image: &ImageFacts,
        progress: &Progress,
    ) -> Result<WarmRun> {
        let config = exec_config(plan, secrets, image);
        let through_channel = match channel {
            Some(dir) => {
                let request = warm_channel::Request {
                    cmd: config.cmd.as_deref().unwrap_or_default(),
                    env: config.env.as_deref().unwrap_or_default(),
                    workdir: config.working_dir.as_deref(),
                };
                self.run_through_channel(name, dir, &request, progress, TAIL_LINES)
                    .await
            }
            None => None,
        };
        let ended = match through_channel {
            Some(ended) => ended,
            None => {
                self.run_exec(name, config, "the build's exec", progress, TAIL_LINES)
                    .await?
            }
        };
        let (code, tail, ran_ms) = match ended {
            ExecEnd::Ended { code, tail, ran_ms } => (code, tail, ran_ms),
            ExecEnd::Refused(reason) => return Ok(WarmRun::Unavailable(reason)),
        };
        // The idle loop may have ended the container just as the exec began: that is no
        // failure of the build, so it runs again in a fresh container.
        if code != 0 && self.container_running(name).await? != Some(true) {
            return Ok(WarmRun::Unavailable(
                "the warm container stopped during the build".into(),
            ));
        }
        Ok(WarmRun::Ran(BuilderExit { code, tail, ran_ms }))
    }

    /// Run the exec `config` (`what`, for messages) in the running container `name`, its
    /// output shown on `progress`, and wait for its end.
    pub(super) async fn run_exec(
        &self,
        name: &str,
        config: ExecConfig,
        what: &str,
        progress: &Progress,
        keep: usize,
    ) -> Result<ExecEnd> {
        let exec = match self.docker.create_exec(name, config).await {
            Ok(exec) => exec.id,
            Err(e) => return refused(e, name, || format!("creating {what} in container {name}")),
        };
        let options = StartExecOptions {
            detach: false,
            ..Default::default()
        };
        let started = Instant::now();
        let mut logs = match self.docker.start_exec(&exec, Some(options)).await {
            Ok(StartExecResults::Attached { output, .. }) => output,
            Ok(StartExecResults::Detached) => {
                return Ok(ExecEnd::Refused(format!(
                    "the engine started {what} detached"
                )))
            }
            Err(e) => return refused(e, name, || format!("starting {what} in container {name}")),
        };
        let tail = self.stream_lines(&mut logs, name, progress, keep).await?;
        let ran_ms = millis_since(started);
        let code = self
            .docker
            .inspect_exec(&exec)
            .await
            .doing(On::Container(name), || {
                format!("asking how {what} in container {name} ended")
            })?
            .exit_code
            .unwrap_or(-1);
        Ok(ExecEnd::Ended { code, tail, ran_ms })
    }
}

/// How an exec in a warm builder went.
pub(super) enum ExecEnd {
    /// It ran: its exit code, its last lines of output, and how long it ran in milliseconds.
    Ended {
        code: i64,
        tail: Vec<String>,
        ran_ms: u64,
    },
    /// The engine would not run it (the container stopped since it was looked at); why.
    Refused(String),
}

/// A warm builder made sure to run by [`Engine::open_warm`], for [`Engine::run_in_warm`].
#[derive(Debug)]
pub(crate) struct WarmSession {
    name: String,
    /// Its output mount on a local engine.
    output_dir: std::path::PathBuf,
    /// What identifies that folder (`remote` on a remote engine).
    output_identity: String,
    /// Where its channel folder is made, on a local engine.
    channel_root: Option<PathBuf>,
    warm_secs: u64,
    /// Made and started by this run.
    started: bool,
    /// On a remote engine: which source volumes were made now (they hold nothing yet).
    fresh: Vec<bool>,
    /// On a remote engine: what each source volume's sync marker said when the output folder
    /// was made anew.
    markers: Option<Vec<Option<String>>>,
}

impl WarmSession {
    /// On a remote engine, the way to sync the sources into the volumes this container
    /// mounts, with the markers it read; `None` on a local one.
    pub(crate) fn sync_helper(&self, plan: &Plan) -> Option<super::sync::SyncHelper> {
        let markers = self.markers.clone()?;
        Some(super::sync::SyncHelper::in_warm(
            &self.name,
            plan,
            self.fresh.clone(),
            markers,
        ))
    }
}

/// Whether a warm builder could be made sure to run, or why not.
#[derive(Debug)]
pub(crate) enum WarmOpen {
    Ready(WarmSession),
    Unavailable(String),
}

/// Whether a warm builder was found running, was started for this build, or cannot be used.
enum WarmStart {
    Running,
    Started,
    Unavailable(String),
}

/// The one line a build says when it leaves a warm builder running: what stays, for how long,
/// and how to see, stop or turn off it.
fn started_line(name: &str, secs: u64) -> String {
    format!(
        "note: the builder container {name} stays up until {} without a build, for a faster rebuild (`dockception ps` lists it, `dockception clean` stops it, [builder] warm = \"off\" turns this off)",
        crate::units::duration_words(secs)
    )
}

/// A failed exec call: 409 says the container stopped (idle time up) since it was looked at,
/// so the build runs in a fresh one; anything else is an error of `action`.
fn refused(
    e: bollard::errors::Error,
    container: &str,
    action: impl FnOnce() -> String,
) -> Result<ExecEnd> {
    if status_code(&e) == Some(409) {
        return Ok(ExecEnd::Refused(daemon_message(&e)));
    }
    Err(docker_error(On::Container(container), action(), e))
}

/// The build command as an exec: what a fresh builder container would run, with the secrets'
/// variables, which the warm container itself never holds.
fn exec_config(plan: &Plan, secrets: &Resolved, image: &ImageFacts) -> ExecConfig {
    let b = &plan.builder;
    // A fresh container would run the image's entrypoint with the command as arguments.
    let mut cmd = image.config.entrypoint.clone().unwrap_or_default();
    cmd.extend(b.command.iter().cloned());
    ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(cmd),
        env: Some(env_lines(&b.env, &secrets.env)),
        user: b.user.clone(),
        working_dir: b.workdir.clone(),
        ..Default::default()
    }
}

/// The warm builder's name, configuration and channel folder (see [`Engine::open_warm`]):
/// with `channel_root`, a folder under it named by the configuration's hash, mounted at
/// [`warm_channel::CHANNEL_TARGET`], so a container of another configuration never reads this
/// one's requests; none when the pipes cannot be made there.
#[allow(clippy::too_many_arguments)]
fn warm_body(
    plan: &Plan,
    output_dir: &Path,
    output_identity: &str,
    channel_root: Option<&Path>,
    secrets: &Resolved,
    image: &ImageFacts,
    warm_secs: u64,
    mode: Mode,
) -> Result<(String, ContainerCreateBody, Option<PathBuf>)> {
    let mut body = builder_body(plan, output_dir, secrets, false, mode)?;
    body.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
    body.cmd = Some(vec![idle_script(warm_secs, channel_root.is_some())]);
    if let Some(host) = body.host_config.as_mut() {
        host.auto_remove = Some(true);
        if mode == Mode::Remote {
            let mounts = host.mounts.get_or_insert_with(Vec::new);
            mounts.extend((0..plan.builder.mounts.len()).map(|i| {
                source_volume_mount(
                    &plan.source_volume(i),
                    &format!("{}/{i}", super::sync::WARM_SYNC_ROOT),
                    false,
                )
            }));
        }
    }
    let labels = body.labels.get_or_insert_with(HashMap::new);
    labels.insert(TARGET_LABEL.to_string(), plan.target.clone());
    labels.insert(WARM_IDLE_LABEL.to_string(), warm_secs.to_string());
    let hash = config_hash(&body, image, output_identity);
    body.labels
        .get_or_insert_with(HashMap::new)
        .insert(WARM_LABEL.to_string(), hash.clone());
    let name = format!(
        "dockception-warm-{}-{}-{hash}",
        plan.project,
        name_part(&plan.target)
    );
    let channel = match channel_root {
        Some(root) => {
            let dir = root.join(&hash);
            let made = warm_channel::prepare(&dir)
                .map_err(|e| super::Error::io("making the warm builder's channel", &dir, e))?;
            if made {
                let host = body.host_config.get_or_insert_with(Default::default);
                host.mounts
                    .get_or_insert_with(Vec::new)
                    .push(super::containers::bind_mount(
                        &dir,
                        warm_channel::CHANNEL_TARGET,
                        false,
                    )?);
            }
            made.then_some(dir)
        }
        None => None,
    };
    Ok((name, body, channel))
}

/// 12 hex digits that change with `body`, the image's id and `output_identity`.
fn config_hash(body: &ContainerCreateBody, image: &ImageFacts, output_identity: &str) -> String {
    use sha2::{Digest, Sha256};
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
    crate::fsutil::hex(&hasher.finalize()[..6])
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

/// The warm builder's command (POSIX sh and `sleep` only): with `serve`, serve requests through
/// its channel ([`warm_channel::serve_script`]); wait, and end once no build has run
/// for `secs` seconds. An exec ran during a tick, even one that ended between two looks, when
/// process ids were taken between the tick's `sleep` and a probe forked right after it (sh's
/// tests and `read` are builtins, so the loop forks nothing else; the kernel's
/// `ns_last_pid` would say it directly, but is not readable in every sandbox); and one is at
/// work while any process but PID 1 is alive and not a zombie.
fn idle_script(secs: u64, serve: bool) -> String {
    let server = if serve {
        warm_channel::serve_script()
    } else {
        String::new()
    };
    format!(
        "trap 'exit 0' TERM INT; {server}idle=0; \
         while [ \"$idle\" -lt {secs} ]; do \
         sleep {WARM_POLL_SECS} & s=$!; wait \"$s\"; : & p=$!; wait \"$p\"; busy=0; \
         [ \"$p\" -gt $((s + 1)) ] && busy=1; \
         if [ \"$busy\" = 0 ]; then for d in /proc/[0-9]*; do \
         [ \"$d\" = /proc/1 ] && continue; [ \"$d\" = \"/proc/$srv\" ] && continue; \
         st=''; read -r st 2>/dev/null < \"$d/stat\" || [ -n \"$st\" ] || continue; \
         case \"${{st##*) }}\" in Z*) continue;; esac; \
         busy=1; break; \
         done; fi; \
         if [ \"$busy\" = 1 ]; then idle=0; else idle=$((idle + {WARM_POLL_SECS})); fi; \
         done"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::BaseConfig;

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
            architecture: "amd64".into(),
            os: "linux".into(),
        };
        let secrets = Resolved {
            env: vec![("TOKEN".into(), "secret-value".into())],
            files: vec![],
        };
        let channels = tempfile::tempdir().expect("tempdir");
        let name = |plan: &Plan, image: &ImageFacts| {
            warm_body(
                plan,
                Path::new("/o"),
                "1:2",
                Some(channels.path()),
                &secrets,
                image,
                60,
                Mode::Local,
            )
            .expect("a body")
            .0
        };
        let first = name(&plan, &image);
        assert!(first.starts_with("dockception-warm-"), "{first}");
        // Labels are a HashMap: the name must not follow its order.
        for _ in 0..20 {
            assert_eq!(name(&plan, &image), first);
        }
        let (_, body, channel) = warm_body(
            &plan,
            Path::new("/o"),
            "1:2",
            Some(channels.path()),
            &secrets,
            &image,
            60,
            Mode::Local,
        )
        .expect("a body");
        assert!(!format!("{:?}", body.env).contains("secret-value"));
        // The channel folder is named by the hash the name ends with, and mounted.
        let channel = channel.expect("a channel folder");
        let hash = channel.file_name().expect("a name").to_string_lossy();
        assert!(first.ends_with(&*hash), "{first} {channel:?}");
        let mounts = body.host_config.as_ref().and_then(|h| h.mounts.clone());
        assert!(mounts.unwrap_or_default().iter().any(|m| {
            m.target.as_deref() == Some(warm_channel::CHANNEL_TARGET)
                && m.source.as_deref() == channel.to_str()
        }));
        let script = body.cmd.clone().unwrap_or_default().join(" ");
        assert!(script.contains(&warm_channel::serve_script()), "{script}");
        let (_, remote_body, none) = warm_body(
            &plan,
            Path::new("/o"),
            "remote",
            None,
            &secrets,
            &image,
            60,
            Mode::Remote,
        )
        .expect("a body");
        assert_eq!(none, None);
        let script = remote_body.cmd.unwrap_or_default().join(" ");
        assert!(!script.contains(warm_channel::CHANNEL_TARGET), "{script}");
        assert_eq!(body.host_config.and_then(|h| h.auto_remove), Some(true));
        let other_image = ImageFacts {
            id: "sha256:2".into(),
            ..image.clone()
        };
        assert_ne!(name(&plan, &other_image), first);
        plan.builder.env.push(("A".into(), "1".into()));
        assert_ne!(name(&plan, &image), first);
    }
}
