//! What a run created and must not leave: tracked while it exists, removed after an interrupt
//! or when other work stops midway, and, for what a crashed run left, found by label and
//! removed by `dockception clean` (which of it may go is [`super::owner`]'s verdict).

use std::collections::HashMap;

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListVolumesOptionsBuilder,
};

use super::containers::{session, LATE_CREATE};
use super::error::{daemon_message, Answer, On};
use super::owner::{self, LabelledContainer, Owner, Verdict};
use super::warm::WARM_LABEL;
use super::{Cleaned, Engine, Result};
use crate::plan::{LABEL, PROJECT_LABEL};

impl Engine {
    /// Remove every container this engine created that still exists (after an interrupt).
    /// Returns the names that could not be removed.
    pub(crate) async fn remove_leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for name in self.live_containers() {
            if self.remove_container(&name).await.is_err() {
                left.push(name);
            }
        }
        // A create that was in flight when the run was interrupted can still land: sweep for
        // this process's containers by the session token every name carries.
        for _ in 0..2 {
            tokio::time::sleep(LATE_CREATE).await;
            for name in self.session_containers().await {
                if self.remove_container(&name).await.is_err() && !left.contains(&name) {
                    left.push(name);
                }
            }
        }
        left
    }

    /// The containers of this process that exist: by the session token in their names, and
    /// by the owner label (a warm builder's name is stable, so it carries no token); none when
    /// the engine cannot say.
    async fn session_containers(&self) -> Vec<String> {
        let by_name = HashMap::from([
            ("label".to_string(), vec![LABEL.to_string()]),
            ("name".to_string(), vec![session().to_string()]),
        ]);
        let by_owner = HashMap::from([(
            "label".to_string(),
            vec![format!(
                "{}={}",
                owner::OWNER_LABEL,
                Owner::this_process().label()
            )],
        )]);
        let mut names = Vec::new();
        for filters in [by_name, by_owner] {
            let options = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            let found = self
                .docker
                .list_containers(Some(options))
                .await
                .unwrap_or_default();
            for name in found.into_iter().flat_map(|c| c.names.unwrap_or_default()) {
                let name = name.trim_start_matches('/').to_string();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Remove the named containers, which work stopped midway left (the other targets of a
    /// build, once one failed); unlike [`Engine::remove_leftovers`], what other work of this
    /// engine created is kept. What could not be removed stays in [`Engine::leftovers`].
    pub(crate) async fn remove_created(&self, containers: &[String]) {
        for name in containers {
            let _ = self.remove_container(name).await;
        }
    }

    /// [`Engine::remove_created`], then `stop_work` (which ends the work that created them),
    /// then, a moment later, the containers once more: a create request in flight when the
    /// work stopped may still land.
    pub(crate) async fn remove_created_then_sweep(
        &self,
        containers: &[String],
        stop_work: impl FnOnce(),
    ) {
        if containers.is_empty() {
            stop_work();
            return;
        }
        self.remove_created(containers).await;
        stop_work();
        tokio::time::sleep(LATE_CREATE).await;
        self.remove_created(containers).await;
    }

    /// The containers that exist right now because of this engine.
    pub(crate) fn live_containers(&self) -> Vec<String> {
        self.live_containers
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Everything this run created that still exists, as words for a message: containers by
    /// name. Empty when nothing is left. (Images are loaded whole and tagged in one call, so
    /// no untagged image of a run is ever left in between.)
    pub(crate) fn leftovers(&self) -> Vec<String> {
        self.live_containers()
            .into_iter()
            .map(|c| format!("container {c}"))
            .collect()
    }

    /// Remove what interrupted or crashed runs left behind: their containers (those whose
    /// dockception process is gone, or all of them with `force`), the project's dangling
    /// images, and, only with `caches`, its cache volumes. `project` limits all of it to one
    /// project; `None` means every project on this engine.
    pub(crate) async fn clean(
        &self,
        project: Option<&str>,
        loaded: &[String],
        caches: bool,
        force: bool,
    ) -> Result<Cleaned> {
        let mut cleaned = Cleaned::default();
        self.clean_containers(project, force, &mut cleaned).await?;
        self.clean_images(project, loaded, &mut cleaned).await?;
        self.clean_volumes(project, caches, &mut cleaned).await?;
        Ok(cleaned)
    }

    async fn clean_containers(
        &self,
        project: Option<&str>,
        force: bool,
        cleaned: &mut Cleaned,
    ) -> Result<()> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&label_filter(None, project))
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .doing(On::Engine, || "listing dockception's containers".into());
        let containers = match containers {
            Ok(containers) => containers,
            Err(e) => return Err(self.failed(e).await),
        };
        let this = Owner::this_process();
        for c in containers {
            let (name, labelled) = self.labelled(c).await;
            match owner::container_verdict(&labelled, &this, force, owner::pid_alive) {
                Verdict::Remove => match self.remove_container(&name).await {
                    Ok(()) => cleaned.containers.push(name),
                    Err(e) => cleaned.kept.push(format!("container {name}: {e}")),
                },
                Verdict::Keep(reason) => cleaned.kept.push(format!("container {name}: {reason}")),
            }
        }
        Ok(())
    }

    /// A listed container's name and what its verdict needs to know about it.
    async fn labelled(&self, c: ContainerSummary) -> (String, LabelledContainer) {
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
                ContainerSummaryStateEnum::RUNNING
                    | ContainerSummaryStateEnum::CREATED
                    | ContainerSummaryStateEnum::RESTARTING
            )
        });
        let labels = c.labels.unwrap_or_default();
        // A warm builder outlives the process that made it; another one may be building in it
        // right now.
        let building = running && labels.contains_key(WARM_LABEL) && self.runs_a_build(&name).await;
        let labelled = LabelledContainer {
            labels,
            running,
            building,
        };
        (name, labelled)
    }

    /// Dangling images of `project`: those labelled with it (made before dockception wrote its
    /// images itself), and those of `loaded` (the images its builds loaded, which name no
    /// project: their bytes must not depend on the project's folder).
    async fn clean_images(
        &self,
        project: Option<&str>,
        loaded: &[String],
        cleaned: &mut Cleaned,
    ) -> Result<()> {
        let mut filters = label_filter(None, None);
        filters.insert("dangling".into(), vec!["true".into()]);
        let options = ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .doing(On::Engine, || "listing dockception's images".into())?;
        for image in images {
            let labelled = image.labels.get(PROJECT_LABEL).map(String::as_str);
            let its = match labelled {
                Some(_) => labelled == project,
                None => loaded.contains(&image.id),
            };
            if project.is_some() && !its {
                continue;
            }
            match self.remove_image(&image.id).await {
                Ok(true) => cleaned.images.push(image.id),
                Ok(false) => {}
                Err(e) => cleaned
                    .kept
                    .push(format!("image {}: {}", image.id, daemon_message(&e))),
            }
        }
        Ok(())
    }

    async fn clean_volumes(
        &self,
        project: Option<&str>,
        caches: bool,
        cleaned: &mut Cleaned,
    ) -> Result<()> {
        let options = ListVolumesOptionsBuilder::default()
            .filters(&label_filter(Some("cache"), project))
            .build();
        let volumes = self
            .docker
            .list_volumes(Some(options))
            .await
            .doing(On::Engine, || "listing dockception's cache volumes".into())?;
        for volume in volumes.volumes.unwrap_or_default() {
            if !caches {
                cleaned.kept.push(format!(
                    "cache volume {}: caches are kept (pass --caches to remove them)",
                    volume.name
                ));
                continue;
            }
            match self.delete_volume(&volume.name).await {
                Ok(true) => cleaned.volumes.push(volume.name),
                Ok(false) => {}
                Err(e) => cleaned.kept.push(format!(
                    "cache volume {}: {}",
                    volume.name,
                    daemon_message(&e)
                )),
            }
        }
        Ok(())
    }

    /// Whether a build runs in the warm builder `container` right now: a `docker exec`, or a
    /// request through its channel. When the engine cannot tell, it counts as running, so
    /// `clean` keeps the container.
    pub(super) async fn runs_a_build(&self, container: &str) -> bool {
        let details = match self
            .docker
            .inspect_container(container, None)
            .await
            .or_absent()
        {
            Ok(Some(details)) => details,
            Ok(None) => return false,
            Err(_) => return true,
        };
        let channel = details
            .mounts
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.destination.as_deref() == Some(super::warm_channel::CHANNEL_TARGET));
        if let Some(dir) = channel.and_then(|m| m.source) {
            if super::warm_channel::in_use(std::path::Path::new(&dir)) {
                return true;
            }
        }
        let execs = details.exec_ids.unwrap_or_default();
        for id in execs {
            match self.docker.inspect_exec(&id).await.or_absent() {
                Ok(Some(exec)) if exec.running == Some(true) => return true,
                // Finished execs are forgotten by the engine after a while.
                Ok(_) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// The list filter for dockception's things (of `role`, when given) of `project` (every
/// project's when `None`).
fn label_filter(role: Option<&str>, project: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut labels = vec![match role {
        Some(role) => format!("{LABEL}={role}"),
        None => LABEL.to_string(),
    }];
    if let Some(p) = project {
        labels.push(format!("{PROJECT_LABEL}={p}"));
    }
    HashMap::from([("label".to_string(), labels)])
}
