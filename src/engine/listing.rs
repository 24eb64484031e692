//! What dockception has running on the engine, for `dockception ps`: builds in progress and
//! warm builders waiting for the next build.

use bollard::query_parameters::ListContainersOptionsBuilder;

use super::error::{Answer, On};
use super::warm::{TARGET_LABEL, WARM_IDLE_LABEL, WARM_LABEL};
use super::{Engine, Result};
use crate::plan::{LABEL, PROJECT_LABEL};

/// One of dockception's containers, as `dockception ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedContainer {
    /// The container's name.
    pub(crate) name: String,
    /// What it is for: its `dockception` label (`builder`, `steps`, `image-files`, …).
    pub(crate) role: String,
    /// The project it belongs to.
    pub(crate) project: Option<String>,
    /// The target, for a warm builder.
    pub(crate) target: Option<String>,
    /// Its image, as the engine names it.
    pub(crate) image: String,
    /// The engine's words for its state (`Up 3 minutes`, `Created`).
    pub(crate) status: String,
    /// For a warm builder: after how many seconds without a build it ends.
    pub(crate) warm_idle_secs: Option<u64>,
    /// For a warm builder: whether a build runs in it now.
    pub(crate) building: bool,
}

impl Engine {
    /// Every container with dockception's label on this engine, in any state, by name.
    pub(crate) async fn list_dockception_containers(&self) -> Result<Vec<ListedContainer>> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&std::collections::HashMap::from([(
                "label".to_string(),
                vec![LABEL.to_string()],
            )]))
            .build();
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .doing(On::Engine, || "listing dockception's containers".into());
        let listed = match listed {
            Ok(listed) => listed,
            Err(e) => return Err(self.failed(e).await),
        };
        let mut out = Vec::new();
        for c in listed {
            let labels = c.labels.unwrap_or_default();
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .or(c.id)
                .unwrap_or_default();
            let warm = labels.contains_key(WARM_LABEL);
            let building = warm && self.runs_a_build(&name).await;
            out.push(ListedContainer {
                role: labels.get(LABEL).cloned().unwrap_or_default(),
                project: labels.get(PROJECT_LABEL).cloned(),
                target: labels.get(TARGET_LABEL).cloned(),
                image: c.image.unwrap_or_default(),
                status: c.status.unwrap_or_default(),
                warm_idle_secs: warm
                    .then(|| labels.get(WARM_IDLE_LABEL).and_then(|s| s.parse().ok()))
                    .flatten(),
                building,
                name,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
