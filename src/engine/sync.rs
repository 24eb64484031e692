//! Sources on an engine that cannot see this machine's files: each `[[mount]]` of a target is
//! a volume kept between builds ([`crate::plan::Plan::source_volume`]), labelled like the cache
//! volumes (so `clean --caches` removes it and `clean` keeps it). What to send is the
//! pipeline's business (it compares the fingerprint scan with what the volume last received);
//! here are the engine's parts: the volumes, a created, never-started helper container that
//! mounts them all writable at `/v/INDEX` (the archive API reaches a stopped container's
//! volumes), the tar upload, deletions (`rm` in a short container of the builder image), the
//! marker file that says which sync a volume holds, and reading outputs back.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, VolumeCreateRequest};
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::containers::{labels, offline, source_volume_mount, unique_name};
use super::error::{docker_error, Answer, On};
use super::mode::first_file_of;
use super::{Engine, Error, Result};
use crate::plan::Plan;
use crate::progress::Progress;

/// The file at a synced volume's root that names the sync it holds: `syncing` while one is
/// under way, the sync's token once it finished.
pub(crate) const SYNC_MARKER: &str = ".dockception-sync";

/// What a marker says while a sync is under way (never a token).
pub(crate) const SYNCING: &str = "syncing";

/// The label a source volume carries besides the cache labels: the mount's container path.
pub(crate) const SYNC_LABEL: &str = "dockception.sync";

/// Where the helper container mounts volume number `i`: `/v/i`.
const HELPER_ROOT: &str = "/v";

/// Where a warm builder on a remote engine mounts source volume number `i` writable, besides
/// at its mount's own path, so its sources are synced through it: `/.dockception-sync/i`. The
/// folder is made readable by root only before each build (see `remote`).
pub(super) const WARM_SYNC_ROOT: &str = "/.dockception-sync";

/// A container that mounts a target's source volumes writable: a created, never-started helper
/// made for one sync, or the running warm builder (which stays).
#[derive(Debug)]
pub(crate) struct SyncHelper {
    name: String,
    volumes: Vec<String>,
    /// Which volumes were made by this sync (they hold nothing yet).
    pub(crate) fresh: Vec<bool>,
    /// Where volume `i` is mounted: `ROOT/i`.
    root: &'static str,
    /// The warm builder: kept after the sync, and its markers read already.
    warm: Option<Vec<Option<String>>>,
}

impl SyncHelper {
    /// What the sync goes through, for its summary: the warm builder's name, or `helper`.
    pub(crate) fn through(&self) -> String {
        match self.warm {
            Some(_) => self.name.clone(),
            None => "helper".to_string(),
        }
    }

    /// The warm builder `name` on a remote engine, whose sync markers said `markers`.
    pub(super) fn in_warm(
        name: &str,
        plan: &Plan,
        fresh: Vec<bool>,
        markers: Vec<Option<String>>,
    ) -> SyncHelper {
        SyncHelper {
            name: name.to_string(),
            volumes: source_volumes(plan),
            fresh,
            root: WARM_SYNC_ROOT,
            warm: Some(markers),
        }
    }
}

/// The target's source volumes, in mount order.
fn source_volumes(plan: &Plan) -> Vec<String> {
    (0..plan.builder.mounts.len())
        .map(|i| plan.source_volume(i))
        .collect()
}

impl Engine {
    /// Make the target's source volumes that do not exist yet, and a helper container that
    /// mounts them all at `/v/INDEX`.
    pub(crate) async fn open_sync(&self, plan: &Plan) -> Result<SyncHelper> {
        let volumes = source_volumes(plan);
        let fresh = self.ensure_source_volumes(plan).await?;
        let name = self.create_helper(plan, &volumes).await?;
        Ok(SyncHelper {
            name,
            volumes,
            fresh,
            root: HELPER_ROOT,
            warm: None,
        })
    }

    /// Make the target's source volumes that do not exist yet; which were.
    pub(super) async fn ensure_source_volumes(&self, plan: &Plan) -> Result<Vec<bool>> {
        let mut fresh = Vec::with_capacity(plan.builder.mounts.len());
        for (i, volume) in source_volumes(plan).iter().enumerate() {
            fresh.push(self.ensure_source_volume(plan, i, volume).await?);
        }
        Ok(fresh)
    }

    /// Create `volume` for mount number `index` when it is missing; whether it was.
    async fn ensure_source_volume(&self, plan: &Plan, index: usize, volume: &str) -> Result<bool> {
        if self.volume_exists(volume).await? {
            return Ok(false);
        }
        self.supported().await?;
        let request = VolumeCreateRequest {
            name: Some(volume.to_string()),
            labels: Some(source_labels(
                &plan.project,
                &plan.builder.mounts[index].target,
            )),
            ..Default::default()
        };
        self.docker
            .create_volume(request)
            .await
            .doing(On::Volume(volume), || {
                format!("creating source volume {volume}")
            })?;
        Ok(true)
    }

    async fn create_helper(&self, plan: &Plan, volumes: &[String]) -> Result<String> {
        let mounts = volumes
            .iter()
            .enumerate()
            .map(|(i, v)| source_volume_mount(v, &format!("{HELPER_ROOT}/{i}"), false))
            .collect();
        let body = ContainerCreateBody {
            image: Some(plan.builder.image.clone()),
            cmd: Some(vec!["true".into()]),
            user: Some("0:0".into()),
            labels: Some(labels("sync", &plan.project)),
            host_config: Some(offline(Some(mounts))),
            ..Default::default()
        };
        let name = unique_name("dockception-sync", &plan.project);
        let action = format!(
            "creating the container of {} that syncs the sources of target {}",
            plan.builder.image, plan.target
        );
        self.create_tracked(&name, body, action).await?;
        Ok(name)
    }

    /// What each volume's marker says; `None` where there is none.
    pub(crate) async fn sync_markers(&self, helper: &SyncHelper) -> Result<Vec<Option<String>>> {
        if let Some(markers) = &helper.warm {
            return Ok(markers.clone());
        }
        let mut markers = Vec::with_capacity(helper.volumes.len());
        for (i, fresh) in helper.fresh.iter().enumerate() {
            if *fresh {
                markers.push(None);
                continue;
            }
            let path = format!("{}/{i}/{SYNC_MARKER}", helper.root);
            let options = DownloadFromContainerOptionsBuilder::default()
                .path(&path)
                .build();
            let mut download = self
                .docker
                .download_from_container(&helper.name, Some(options));
            let mut tar = Vec::new();
            let mut missing = false;
            while let Some(chunk) = download.next().await {
                match chunk {
                    Ok(bytes) => tar.extend_from_slice(&bytes),
                    Err(e) if super::error::status_code(&e) == Some(404) => {
                        missing = true;
                        break;
                    }
                    Err(e) => {
                        return Err(docker_error(
                            On::Container(&helper.name),
                            format!("reading {SYNC_MARKER} of volume {}", helper.volumes[i]),
                            e,
                        ))
                    }
                }
            }
            markers.push(if missing {
                None
            } else {
                first_file_of(&tar).map(|c| String::from_utf8_lossy(&c).trim().to_string())
            });
        }
        Ok(markers)
    }

    /// Empty the volumes number `which`: the helper goes (the warm builder too: it is made anew
    /// for the build), they are removed and made anew, and a new helper mounts them all.
    pub(crate) async fn reset_sync_volumes(
        &self,
        plan: &Plan,
        helper: &mut SyncHelper,
        which: &[usize],
    ) -> Result<()> {
        if which.is_empty() {
            return Ok(());
        }
        self.remove_container(&helper.name).await?;
        for &i in which {
            let volume = &helper.volumes[i];
            self.delete_volume(volume)
                .await
                .doing(On::Volume(volume), || {
                    format!("removing source volume {volume} to sync it anew")
                })?;
            self.ensure_source_volume(plan, i, volume).await?;
            helper.fresh[i] = true;
        }
        helper.name = self.create_helper(plan, &helper.volumes).await?;
        helper.root = HELPER_ROOT;
        helper.warm = None;
        Ok(())
    }

    /// Extract `tar` (paths `INDEX/…`, one folder per volume) into the volumes.
    pub(crate) async fn upload_sync(
        &self,
        helper: &SyncHelper,
        tar: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ) -> Result<()> {
        let options = UploadToContainerOptionsBuilder::new()
            .path(helper.root)
            .build();
        self.docker
            .upload_to_container(&helper.name, Some(options), bollard::body_try_stream(tar))
            .await
            .doing(On::Container(&helper.name), || {
                format!(
                    "sending the sources into volumes {}",
                    helper.volumes.join(", ")
                )
            })
    }

    /// Delete `paths` (`INDEX/…`, as in [`Engine::upload_sync`]) from the volumes, with `rm` in
    /// a short container of the builder image (the archive API cannot delete).
    pub(crate) async fn delete_synced(
        &self,
        plan: &Plan,
        helper: &SyncHelper,
        paths: &[String],
        progress: &Progress,
    ) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        if helper.warm.is_some() {
            return self.delete_in_warm(helper, paths).await;
        }
        let mounts = helper
            .volumes
            .iter()
            .enumerate()
            .map(|(i, v)| source_volume_mount(v, &format!("{HELPER_ROOT}/{i}"), false))
            .collect();
        let mut cmd = vec!["-rf".to_string(), "--".to_string()];
        cmd.extend(paths.iter().map(|p| format!("{HELPER_ROOT}/{p}")));
        let body = ContainerCreateBody {
            image: Some(plan.builder.image.clone()),
            entrypoint: Some(vec!["rm".into()]),
            cmd: Some(cmd),
            user: Some("0:0".into()),
            labels: Some(labels("sync", &plan.project)),
            host_config: Some(offline(Some(mounts))),
            ..Default::default()
        };
        let name = unique_name("dockception-sync-rm", &plan.project);
        let action = format!(
            "creating the container of {} that deletes removed sources from volumes {}",
            plan.builder.image,
            helper.volumes.join(", ")
        );
        let exit = self.run_container(&name, body, action, progress).await?;
        if exit.code != 0 {
            return Err(Error::Container {
                action: format!(
                    "deleting removed sources from volumes {} with rm in {}",
                    helper.volumes.join(", "),
                    plan.builder.image
                ),
                container: name,
                message: format!("rm exited with {}: {}", exit.code, exit.tail.join("; ")),
            });
        }
        Ok(())
    }

    /// [`Engine::delete_synced`] with a root exec in the warm builder.
    async fn delete_in_warm(&self, helper: &SyncHelper, paths: &[String]) -> Result<()> {
        let mut cmd = vec!["rm".to_string(), "-rf".to_string(), "--".to_string()];
        cmd.extend(paths.iter().map(|p| format!("{}/{p}", helper.root)));
        let action = || {
            format!(
                "deleting removed sources from volumes {} in the warm builder {}",
                helper.volumes.join(", "),
                helper.name
            )
        };
        match self.exec_as_root(&helper.name, cmd).await? {
            super::warm::ExecEnd::Ended { code: 0, .. } => Ok(()),
            super::warm::ExecEnd::Ended { code, tail, .. } => Err(Error::Container {
                action: action(),
                container: helper.name.clone(),
                message: format!("rm exited with {code}: {}", tail.join("; ")),
            }),
            super::warm::ExecEnd::Refused(reason) => Err(Error::Container {
                action: action(),
                container: helper.name.clone(),
                message: reason,
            }),
        }
    }

    /// Remove the helper container; the warm builder stays.
    pub(crate) async fn close_sync(&self, helper: SyncHelper) -> Result<()> {
        if helper.warm.is_some() {
            return Ok(());
        }
        self.remove_container(&helper.name).await
    }

    /// Extract the folder `path` of container `name` into `dest` (the folder itself becomes
    /// `dest`), streamed on a blocking thread.
    pub(super) async fn download_folder(&self, name: &str, path: &str, dest: &Path) -> Result<()> {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let stream = self.docker.download_from_container(name, Some(options));
        let dest_owned = dest.to_path_buf();
        let unpacked = super::images::read_blocking(stream, move |reader| {
            unpack_stripped(reader, &dest_owned)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        unpacked.map_err(|e| {
            On::Container(name).error(
                format!(
                    "reading {path} of container {name} back into {}",
                    dest.display()
                ),
                e.to_string(),
            )
        })
    }
}

/// Unpack a tar whose entries all sit below one top folder into `dest`, that folder dropped;
/// nothing lands outside `dest`.
fn unpack_stripped(reader: &mut dyn std::io::Read, dest: &Path) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    archive.set_preserve_mtime(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let inner: std::path::PathBuf = path.components().skip(1).collect();
        if inner.as_os_str().is_empty() {
            continue;
        }
        let to = dest.join(&inner);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // `unpack_in` refuses paths that climb out; with the top folder dropped, unpack at
        // the path inside `dest` after the same check.
        if inner
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            continue;
        }
        entry.unpack(&to)?;
    }
    Ok(())
}

/// The host's `(uid, gid)` as a tar header carries them for `user` (`UID[:GID]`); `None` for a
/// user name, which only the image can resolve.
pub(super) fn numeric_user(user: Option<&str>) -> Option<(u64, u64)> {
    let user = user?;
    let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
    Some((uid.parse().ok()?, gid.parse().unwrap_or(0)))
}

/// A tar of the folder `host` at `at` (a container path) for an upload to `/`, streamed.
pub(super) fn folder_tar(
    host: &Path,
    at: &str,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let (host, at) = (host.to_path_buf(), at.trim_matches('/').to_string());
    crate::fsutil::stream_written(move |out| {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        builder.mode(tar::HeaderMode::Complete);
        builder.append_dir_all(if at.is_empty() { "." } else { at.as_str() }, &host)?;
        builder.finish()
    })
}

/// A source volume's labels: a cache's, and the mount's container path.
fn source_labels(project: &str, target: &str) -> HashMap<String, String> {
    let mut l = labels("cache", project);
    l.insert(SYNC_LABEL.to_string(), target.to_string());
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_volumes_are_labelled_as_caches() {
        let l = source_labels("p-1", "/src");
        assert_eq!(l.get(crate::plan::LABEL).map(String::as_str), Some("cache"));
        assert_eq!(l.get(SYNC_LABEL).map(String::as_str), Some("/src"));
    }

    #[test]
    fn numeric_users_give_tar_owners_and_names_none() {
        assert_eq!(numeric_user(Some("1000:100")), Some((1000, 100)));
        assert_eq!(numeric_user(Some("1000")), Some((1000, 0)));
        assert_eq!(numeric_user(Some("builder")), None);
        assert_eq!(numeric_user(None), None);
    }

    #[test]
    fn outputs_unpack_without_their_top_folder_and_never_outside() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, content: &[u8], mode: u32| {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(mode);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, path, content)
                .expect("append");
        };
        add("out/app", b"binary", 0o755);
        add("out/sub/lib.so", b"lib", 0o644);
        let tar = builder.into_inner().expect("tar");
        let dir = tempfile::tempdir().expect("tempdir");
        unpack_stripped(&mut tar.as_slice(), dir.path()).expect("unpack");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("app"))
            .expect("app")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read(dir.path().join("sub/lib.so")).expect("lib"),
            b"lib"
        );
    }
}
