//! The builder on an engine that cannot see this machine's files: the sources are the synced
//! volumes (see `sync`), the output folder is a folder of the container's own file system,
//! made for the build's user before it starts and read back through the archive API once the
//! command ended, and the secret files are uploaded into the container's own file system too.
//!
//! Secrets: a created, never-started container's tmpfs mounts do not exist yet, so nothing can
//! be uploaded into them. The container's own writable layer is never committed into an image
//! and goes with the container, which is removed at the end of the build (or by the interrupt
//! cleanup); no volume ever holds a secret. The warm builder, which outlives a build, gets them
//! for the length of one exec and deletes them right after it.

use std::path::Path;

use bollard::models::ExecConfig;
use bollard::query_parameters::UploadToContainerOptionsBuilder;

use super::containers::{builder_body, unique_name};
use super::error::{Answer, On};
use super::mode::Mode;
use super::sync::{numeric_user, SYNC_MARKER, WARM_SYNC_ROOT};
use super::warm::ExecEnd;
use super::{BuilderExit, Engine, ImageFacts, Result, WarmRun};
use crate::plan::secrets::Resolved;
use crate::plan::Plan;
use crate::progress::Progress;

impl Engine {
    /// [`Engine::run_builder_with`] on a remote engine: the outputs land in `output_dir` once
    /// the command succeeded.
    pub(super) async fn run_builder_remote(
        &self,
        plan: &Plan,
        output_dir: &Path,
        secrets: &Resolved,
        progress: &Progress,
    ) -> Result<BuilderExit> {
        let body = builder_body(plan, output_dir, secrets, true, Mode::Remote)?;
        let name = unique_name("dockception-build", &plan.project);
        let action = format!("creating the builder container for {}", plan.builder.image);
        self.create_tracked(&name, body, action).await?;
        let result = async {
            self.upload_prepared(&name, plan, secrets, true).await?;
            let exit = self.start_and_wait(&name, progress).await?;
            if exit.code == 0 {
                self.download_folder(&name, &plan.builder.output_target, output_dir)
                    .await?;
            }
            Ok(exit)
        }
        .await;
        self.then_remove(&name, result).await
    }

    /// The one root exec that readies the warm builder `name` on a remote engine for a build:
    /// the output folder made anew for the build's user (owned by its numeric user, else
    /// writable by all), [`WARM_SYNC_ROOT`] made readable by root only (so a build that does
    /// not run as root cannot reach its sources writable), and what each source volume's sync
    /// marker says. `Err` says why the container cannot be used.
    pub(super) async fn prepare_remote_warm(
        &self,
        name: &str,
        plan: &Plan,
    ) -> Result<std::result::Result<Vec<Option<String>>, String>> {
        let output = plan.builder.output_target.trim_end_matches('/').to_string();
        let owner = match numeric_user(plan.builder.user.as_deref()) {
            Some((uid, gid)) => format!("{uid}:{gid}"),
            None => String::new(),
        };
        // A missing marker prints `!`, one that is there `=` and its text.
        let script = "out=$1; own=$2; root=$3; shift 3; \
             rm -rf -- \"$out\" && mkdir -p -- \"$out\" && \
             if [ -n \"$own\" ]; then chown -- \"$own\" \"$out\" && chmod 755 -- \"$out\"; \
             else chmod 777 -- \"$out\"; fi && \
             { [ ! -d \"$root\" ] || chmod 700 -- \"$root\"; } || exit 1; \
             for m; do if [ -f \"$m\" ]; then printf '=%s\\n' \"$(cat -- \"$m\")\"; \
             else echo '!'; fi; done";
        let mut cmd = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            script.to_string(),
            "sh".to_string(),
            output.clone(),
            owner,
            WARM_SYNC_ROOT.to_string(),
        ];
        let volumes = plan.builder.mounts.len();
        cmd.extend((0..volumes).map(|i| format!("{WARM_SYNC_ROOT}/{i}/{SYNC_MARKER}")));
        match self.exec_as_root(name, cmd).await? {
            ExecEnd::Ended { code: 0, tail, .. } => {
                let markers: Vec<Option<String>> = tail
                    .iter()
                    .filter_map(|line| match line.trim_end() {
                        "!" => Some(None),
                        l => l.strip_prefix('=').map(|m| Some(m.trim().to_string())),
                    })
                    .collect();
                if markers.len() != volumes {
                    return Ok(Err(format!(
                        "reading its sync markers gave {} line(s) for {volumes} volume(s): {}",
                        markers.len(),
                        tail.join("; ")
                    )));
                }
                Ok(Ok(markers))
            }
            ExecEnd::Ended { code, tail, .. } => Ok(Err(format!(
                "making the output folder {output} anew exited with {code} in it: {}",
                tail.join("; ")
            ))),
            ExecEnd::Refused(reason) => Ok(Err(reason)),
        }
    }

    /// [`Engine::exec_build`] in a warm builder on a remote engine: the output folder in the
    /// container's own file system is made anew (unless `prepared` already) and the secret
    /// files are put in before the command, the outputs are read back into `output_dir` once
    /// it succeeded, and the secret files are deleted right after it. Were that deletion to
    /// fail, the container goes: a secret never outlives its build.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn exec_build_remote(
        &self,
        name: &str,
        plan: &Plan,
        output_dir: &Path,
        secrets: &Resolved,
        image: &ImageFacts,
        prepared: bool,
        progress: &Progress,
    ) -> Result<WarmRun> {
        let output = plan.builder.output_target.trim_end_matches('/');
        if !prepared {
            if let Err(reason) = self.prepare_remote_warm(name, plan).await? {
                return Ok(WarmRun::Unavailable(reason));
            }
        }
        if !secrets.files.is_empty() {
            self.upload_prepared(name, plan, secrets, false).await?;
        }
        let ran = async {
            let ran = self
                .exec_build(name, None, plan, secrets, image, progress)
                .await?;
            if let WarmRun::Ran(exit) = &ran {
                if exit.code == 0 {
                    self.download_folder(name, output, output_dir).await?;
                }
            }
            Ok(ran)
        }
        .await;
        if !secrets.files.is_empty() {
            let mut rm = vec!["rm".to_string(), "-f".to_string(), "--".to_string()];
            rm.extend(secrets.files.iter().map(|f| f.target.clone()));
            if !matches!(
                self.exec_as_root(name, rm).await,
                Ok(ExecEnd::Ended { code: 0, .. })
            ) {
                self.remove_container(name).await?;
            }
        }
        ran
    }

    /// Run `cmd` as root in the running container `name`, its output kept for a message only.
    pub(super) async fn exec_as_root(&self, name: &str, cmd: Vec<String>) -> Result<ExecEnd> {
        let what = format!("the exec of `{}`", cmd.join(" "));
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd),
            user: Some("0:0".into()),
            ..Default::default()
        };
        self.run_exec(name, config, &what, &Progress::Quiet, 64)
            .await
    }

    /// Put an empty output folder for the build's user (when `output`) and the secret files
    /// into container `name`.
    pub(super) async fn upload_prepared(
        &self,
        name: &str,
        plan: &Plan,
        secrets: &Resolved,
        output: bool,
    ) -> Result<()> {
        let tar = prepared_tar(plan, secrets, output).map_err(|e| {
            On::Container(name).error(
                format!("preparing the output folder and secrets of container {name}"),
                e.to_string(),
            )
        })?;
        let options = UploadToContainerOptionsBuilder::new().path("/").build();
        self.docker
            .upload_to_container(name, Some(options), bollard::body_full(tar.into()))
            .await
            .doing(On::Container(name), || {
                format!(
                    "making the output folder {} in container {name}",
                    plan.builder.output_target
                )
            })
    }
}

/// The tar that [`Engine::upload_prepared`] sends: the output folder (owned by the build's
/// numeric user, else writable by all) and each secret file (readable by that user only,
/// else by all), without the folders above them (the engine makes missing ones).
fn prepared_tar(plan: &Plan, secrets: &Resolved, output: bool) -> std::io::Result<Vec<u8>> {
    let owner = numeric_user(plan.builder.user.as_deref());
    let (uid, gid) = owner.unwrap_or((0, 0));
    let mut builder = tar::Builder::new(Vec::new());
    if output {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mode(if owner.is_some() { 0o755 } else { 0o777 });
        header.set_size(0);
        let path = format!("{}/", plan.builder.output_target.trim_matches('/'));
        builder.append_data(&mut header, path, std::io::empty())?;
    }
    for file in &secrets.files {
        let content = std::fs::read(&file.source)?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mode(if owner.is_some() { 0o400 } else { 0o444 });
        header.set_size(content.len() as u64);
        builder.append_data(
            &mut header,
            file.target.trim_start_matches('/'),
            &content[..],
        )?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prepared_tar_holds_the_output_folder_and_the_secrets_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("npmrc");
        std::fs::write(&secret, "token").expect("write");
        let loaded = crate::manifest::parse_bytes_with(
            Path::new("/p/dockception.toml"),
            "[builder]\nimage = \"busybox:local\"\nrun = \"true\"\nuser = \"1000:100\"\n[artifacts]\ninclude = [\"app\"]\n".into(),
            &Default::default(),
        )
        .expect("a manifest");
        let plans =
            crate::plan::plan(&loaded, &crate::plan::PlanOptions::default()).expect("a plan");
        let secrets = Resolved {
            env: vec![],
            files: vec![crate::plan::SecretFile {
                name: "npmrc".into(),
                source: secret,
                target: "/run/secrets/npmrc".into(),
            }],
        };
        let tar = prepared_tar(&plans.targets[0], &secrets, true).expect("tar");
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u64, u32)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    h.uid().expect("uid"),
                    h.mode().expect("mode"),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("out/".to_string(), 1000, 0o755),
                ("run/secrets/npmrc".to_string(), 1000, 0o400)
            ]
        );
    }
}
