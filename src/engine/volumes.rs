//! Cache volumes: made on first use and handed to the build's user, listed, measured, removed.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, VolumeCreateRequest};
use bollard::query_parameters::{
    ListVolumesOptionsBuilder, RemoveVolumeOptionsBuilder, UploadToContainerOptionsBuilder,
};

use super::containers::{labels, named_volume_mount, offline, unique_name, volume_mount};
use super::error::{daemon_message, docker_error, Answer, On};
use super::{Engine, Result, VolumeFacts};
use crate::plan::{CacheVolume, Plan, LABEL, PROJECT_LABEL};
use crate::progress::Progress;

impl Engine {
    /// Create the cache volumes that do not exist yet, owned by the user the build runs as.
    pub(crate) async fn ensure_caches(&self, plan: &Plan, progress: &Progress) -> Result<()> {
        for cache in &plan.builder.caches {
            if self.volume_exists(&cache.volume).await? {
                continue;
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
                .doing(On::Volume(&cache.volume), || {
                    format!("creating cache volume {}", cache.volume)
                })?;
            progress.phase(&format!("created cache volume {}", cache.volume));
            if let Some(owner) = plan.builder.user.as_deref().filter(|u| needs_chown(u)) {
                self.hand_volume_to(cache, owner, plan, progress).await?;
            }
        }
        Ok(())
    }

    /// Every cache volume dockception made on this engine (label `dockception=cache`), sorted
    /// by name.
    pub(crate) async fn cache_volumes(&self) -> Result<Vec<VolumeFacts>> {
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
                    .failed(docker_error(
                        On::Engine,
                        "listing the cache volumes".into(),
                        e,
                    ))
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
    pub(crate) async fn volume_exists(&self, name: &str) -> Result<bool> {
        let found = self
            .docker
            .inspect_volume(name)
            .await
            .or_absent()
            .doing(On::Volume(name), || format!("inspecting volume {name}"))?;
        Ok(found.is_some())
    }

    /// The disk use of `volumes` in bytes, measured by `du -sk` in one short container of
    /// `image` that mounts them all read-only. A volume `du` cannot measure is left out.
    pub(crate) async fn volume_sizes(
        &self,
        image: &str,
        volumes: &[String],
        project: &str,
    ) -> Result<HashMap<String, u64>> {
        if volumes.is_empty() {
            return Ok(HashMap::new());
        }
        let name = unique_name("dockception-du", project);
        let action = || format!("creating the container of {image} that measures cache volumes");
        self.create_untracked(&name, du_body(image, volumes, project), action)
            .await?;
        let result = self
            .start_and_wait_lines(&name, &Progress::Quiet, usize::MAX)
            .await;
        let exit = self.then_remove(&name, result).await?;
        Ok(parse_du(&exit.tail, volumes))
    }

    /// Remove the volume `name`; `false` when there was none.
    pub(crate) async fn remove_volume(&self, name: &str) -> Result<bool> {
        self.delete_volume(name)
            .await
            .doing(On::Volume(name), || format!("removing cache volume {name}"))
    }

    /// [`Engine::remove_volume`] with the daemon's own answer, for `clean`'s list of what it
    /// kept.
    pub(super) async fn delete_volume(
        &self,
        name: &str,
    ) -> std::result::Result<bool, bollard::errors::Error> {
        self.release_from_idle_warm_builders(name).await;
        let options = RemoveVolumeOptionsBuilder::new().force(false).build();
        let removed = self.docker.remove_volume(name, Some(options)).await;
        Ok(removed.or_absent()?.is_some())
    }

    /// Remove the warm builders that mount `volume` and run no build now: they keep it only
    /// for a next build, which would start one anew. One that builds keeps it, and removing
    /// the volume then fails with the engine's words, naming the container.
    async fn release_from_idle_warm_builders(&self, volume: &str) {
        let filters = HashMap::from([
            (
                "label".to_string(),
                vec![super::warm::WARM_LABEL.to_string()],
            ),
            ("volume".to_string(), vec![volume.to_string()]),
        ]);
        let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(holders) = self.docker.list_containers(Some(options)).await else {
            return;
        };
        for holder in holders {
            let Some(id) = holder.id else { continue };
            if !self.runs_a_build(&id).await {
                let _ = self.remove_container(&id).await;
            }
        }
    }

    /// A fresh volume belongs to root; give it to the build's user so the cache is writable.
    /// Nothing runs in the builder image (it may have no `chown`): a created, never-started
    /// container mounts the volume, and the engine extracts a tar holding only the volume's
    /// root folder, owned by that user, onto it.
    async fn hand_volume_to(
        &self,
        cache: &CacheVolume,
        owner: &str,
        plan: &Plan,
        progress: &Progress,
    ) -> Result<()> {
        let (uid, gid) = numeric_owner(owner);
        let body = ContainerCreateBody {
            image: Some(plan.builder.image.clone()),
            cmd: Some(vec!["true".into()]),
            user: Some("0:0".into()),
            labels: Some(labels("cache-setup", &plan.project)),
            host_config: Some(offline(Some(vec![volume_mount(cache)]))),
            ..Default::default()
        };
        let name = unique_name("dockception-cache", &plan.project);
        let action = format!(
            "creating the container of {} that gives cache volume {} to {owner}",
            plan.builder.image, cache.volume
        );
        self.create_tracked(&name, body, action).await?;
        let options = UploadToContainerOptionsBuilder::new().path("/").build();
        let uploaded = match owned_folder_tar(&cache.target, uid, gid) {
            Ok(tar) => self
                .docker
                .upload_to_container(&name, Some(options), bollard::body_full(tar.into()))
                .await
                .map_err(|e| daemon_message(&e)),
            Err(e) => Err(e.to_string()),
        };
        self.then_remove(&name, Ok(())).await?;
        if let Err(reason) = uploaded {
            progress.warn(&format!(
                "could not give cache volume {} to {owner} ({reason}); the build may not be able to write to {}",
                cache.volume, cache.target
            ));
        }
        Ok(())
    }
}

/// `UID[:GID]` as numbers; a group that is not a number (or none) leaves the folder's group
/// root's, as `chown UID` would.
fn numeric_owner(owner: &str) -> (u64, u64) {
    let (uid, gid) = owner.split_once(':').unwrap_or((owner, "0"));
    (uid.parse().unwrap_or(0), gid.parse().unwrap_or(0))
}

/// A tar of one entry: the folder `target` (an absolute path), owned by `uid:gid`, mode 0755.
fn owned_folder_tar(target: &str, uid: u64, gid: u64) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_uid(uid);
    header.set_gid(gid);
    header.set_mode(0o755);
    header.set_size(0);
    let mut builder = tar::Builder::new(Vec::new());
    let path = format!("{}/", target.trim_matches('/'));
    builder.append_data(&mut header, path, std::io::empty())?;
    builder.into_inner()
}

/// A container of `image` that runs `du -sk` over `volumes`, mounted read-only at `/v/<index>`.
fn du_body(image: &str, volumes: &[String], project: &str) -> ContainerCreateBody {
    let paths: Vec<String> = (0..volumes.len()).map(|i| format!("/v/{i}")).collect();
    let mounts = volumes
        .iter()
        .zip(&paths)
        .map(|(volume, path)| named_volume_mount(volume, path, true))
        .collect();
    let mut cmd = vec!["du".to_string(), "-sk".to_string()];
    cmd.extend(paths);
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        user: Some("0:0".into()),
        labels: Some(labels("cache-size", project)),
        host_config: Some(offline(Some(mounts))),
        ..Default::default()
    }
}

/// The sizes in `du -sk` output lines (`KIB<tab>/v/<index>`) by volume name, in bytes.
fn parse_du(lines: &[String], volumes: &[String]) -> HashMap<String, u64> {
    let mut sizes = HashMap::new();
    for line in lines {
        let mut words = line.split_whitespace();
        let (Some(kib), Some(path)) = (words.next(), words.next()) else {
            continue;
        };
        let index = path
            .strip_prefix("/v/")
            .and_then(|i| i.parse::<usize>().ok());
        if let (Ok(kib), Some(volume)) = (kib.parse::<u64>(), index.and_then(|i| volumes.get(i))) {
            sizes.insert(volume.clone(), kib * 1024);
        }
    }
    sizes
}

/// A numeric user other than root needs fresh volumes handed over.
fn needs_chown(user: &str) -> bool {
    let uid = user.split(':').next().unwrap_or(user);
    uid.parse::<u32>().is_ok_and(|uid| uid != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numeric_non_root_users_need_a_chown() {
        assert!(needs_chown("1000:1000"));
        assert!(needs_chown("1000"));
        assert!(!needs_chown("0:0"));
        assert!(!needs_chown("builder"));
    }

    #[test]
    fn the_owners_tar_is_the_volumes_root_folder_alone() {
        assert_eq!(numeric_owner("1000:100"), (1000, 100));
        assert_eq!(numeric_owner("1000"), (1000, 0));
        assert_eq!(numeric_owner("1000:staff"), (1000, 0));
        let tar = owned_folder_tar("/cache/go-build/", 1000, 100).expect("a tar");
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (
                    e.path_bytes().into_owned(),
                    h.entry_type(),
                    h.uid().expect("uid"),
                    h.gid().expect("gid"),
                    h.mode().expect("mode"),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [(
                b"cache/go-build/".to_vec(),
                tar::EntryType::Directory,
                1000,
                100,
                0o755
            )]
        );
    }

    #[test]
    fn du_lines_give_sizes_by_volume_and_skip_the_rest() {
        let volumes = vec!["a".to_string(), "b".to_string()];
        let lines = ["12\t/v/1", "du: cannot read /v/0/x", "7\t/v/9", "x\t/v/0"].map(String::from);
        assert_eq!(
            parse_du(&lines, &volumes),
            HashMap::from([("b".into(), 12 * 1024)])
        );
    }
}
