//! The cache volumes of a manifest (`[[cache]]`): which ones a command names, and the table
//! `dockception cache ls` prints. Listing, measuring and removing them asks the engine.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::plan::CacheVolume;
use crate::plan::{self, PlanSet};
use crate::units::human;

/// One line of `dockception cache ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRow {
    /// The volume's name.
    pub volume: String,
    /// The container path it is mounted at, when it is one of this manifest's caches.
    pub target: Option<String>,
    /// The project it belongs to (its `dockception.project` label).
    pub project: Option<String>,
    /// Whether the volume exists on the engine (a cache is made by the first build).
    pub exists: bool,
    /// Its disk use in bytes, when measured.
    pub bytes: Option<u64>,
}

/// Whether `selector` names `cache`: its volume name, or its target path (a trailing `/` is
/// ignored). The one place that decides what `cache rm TARGET` means.
pub fn names(cache: &CacheVolume, selector: &str) -> bool {
    let trimmed = selector.trim_end_matches('/');
    cache.volume == selector || (!trimmed.is_empty() && cache.target == trimmed)
}

/// The caches `selector` names, or all of them without one. Naming nothing is an error that
/// lists what could be named.
pub fn select<'a>(
    caches: &'a [CacheVolume],
    selector: Option<&str>,
) -> Result<Vec<&'a CacheVolume>> {
    let Some(selector) = selector else {
        return Ok(caches.iter().collect());
    };
    let chosen: Vec<&CacheVolume> = caches.iter().filter(|c| names(c, selector)).collect();
    if chosen.is_empty() {
        return Err(Error::NoSuchCache {
            selector: selector.to_string(),
            known: caches
                .iter()
                .map(|c| format!("{} ({})", c.target, c.volume))
                .collect(),
        });
    }
    Ok(chosen)
}

/// The rows for `cache ls`: the manifest's caches first (in manifest order), then, with
/// `others`, the other dockception cache volumes on the engine.
pub fn rows(
    caches: &[CacheVolume],
    project: &str,
    existing: &[String],
    others: &[(String, Option<String>)],
) -> Vec<CacheRow> {
    let mut rows: Vec<CacheRow> = caches
        .iter()
        .map(|c| CacheRow {
            volume: c.volume.clone(),
            target: Some(c.target.clone()),
            project: Some(project.to_string()),
            exists: existing.contains(&c.volume),
            bytes: None,
        })
        .collect();
    for (volume, project) in others {
        if caches.iter().any(|c| &c.volume == volume) {
            continue;
        }
        rows.push(CacheRow {
            volume: volume.clone(),
            target: None,
            project: project.clone(),
            exists: true,
            bytes: None,
        });
    }
    rows
}

/// The table `cache ls` prints: volume, target (or the owning project for other projects'
/// volumes), and size (`not created yet` before a first build).
pub fn to_text(rows: &[CacheRow]) -> String {
    if rows.is_empty() {
        return "no cache volumes: add a [[cache]] to the manifest\n".to_string();
    }
    let cells: Vec<[String; 3]> = rows
        .iter()
        .map(|r| {
            let place = match (&r.target, &r.project) {
                (Some(target), _) => target.clone(),
                (None, Some(project)) => format!("(project {project})"),
                (None, None) => "(no project label)".to_string(),
            };
            let size = match (r.exists, r.bytes) {
                (false, _) => "not created yet".to_string(),
                (true, Some(bytes)) => human(bytes),
                (true, None) => "?".to_string(),
            };
            [r.volume.clone(), place, size]
        })
        .collect();
    let header = ["VOLUME", "TARGET", "SIZE"].map(String::from);
    let width = |i: usize| {
        cells
            .iter()
            .chain(std::iter::once(&header))
            .map(|c| c[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0), width(1));
    let mut out = String::new();
    for c in std::iter::once(&header).chain(cells.iter()) {
        out.push_str(&format!("{:<w0$}  {:<w1$}  {}\n", c[0], c[1], c[2]));
    }
    out
}

/// Every cache volume of the targets that run a builder, once each.
pub(crate) fn all_caches(plans: &PlanSet) -> Vec<plan::CacheVolume> {
    let mut caches: Vec<plan::CacheVolume> = Vec::new();
    for plan in plans.targets.iter().filter(|p| p.artifacts_from.is_none()) {
        for cache in &plan.builder.caches {
            if !caches.iter().any(|c| c.volume == cache.volume) {
                caches.push(cache.clone());
            }
        }
    }
    caches
}

/// The manifest's cache volumes, whether they exist and their size; with `all`, every other
/// dockception cache volume on the engine too. Sizes are measured in one short container of a
/// builder image (when it is present).
pub async fn list_caches(engine: &Engine, plans: &PlanSet, all: bool) -> Result<Vec<CacheRow>> {
    let caches = all_caches(plans);
    let mut existing = Vec::new();
    for c in &caches {
        if engine.volume_exists(&c.volume).await? {
            existing.push(c.volume.clone());
        }
    }
    let others: Vec<(String, Option<String>)> = if all {
        engine
            .cache_volumes()
            .await?
            .into_iter()
            .map(|v| (v.name, v.project))
            .collect()
    } else {
        Vec::new()
    };
    let mut rows = rows(&caches, &plans.project, &existing, &others);
    let measured: Vec<String> = rows
        .iter()
        .filter(|r| r.exists)
        .map(|r| r.volume.clone())
        .collect();
    let builder = plans
        .targets
        .iter()
        .find(|p| p.artifacts_from.is_none())
        .map(|p| p.builder.image.clone());
    if let Some(builder) = builder {
        if !measured.is_empty() && engine.image_facts(&builder).await?.is_some() {
            let sizes = engine
                .volume_sizes(&builder, &measured, &plans.project)
                .await?;
            for row in &mut rows {
                row.bytes = sizes.get(&row.volume).copied();
            }
        }
    }
    Ok(rows)
}

/// Remove the manifest's cache volumes; `selector` narrows it to a target's caches (by target
/// name), or to one cache (see [`select`]). Returns each with whether it existed.
pub async fn remove_caches(
    engine: &Engine,
    plans: &PlanSet,
    selector: Option<&str>,
) -> Result<Vec<(plan::CacheVolume, bool)>> {
    let chosen: Vec<plan::CacheVolume> = match selector.and_then(|s| plans.target(s)) {
        Some(target) => target.builder.caches.clone(),
        None => select(&all_caches(plans), selector)?
            .into_iter()
            .cloned()
            .collect(),
    };
    let mut removed = Vec::new();
    for c in chosen {
        let existed = engine.remove_volume(&c.volume).await?;
        removed.push((c, existed));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caches() -> Vec<CacheVolume> {
        vec![
            CacheVolume {
                volume: "dockception-app-1234abcd-cache-go-build".into(),
                target: "/cache/go-build".into(),
            },
            CacheVolume {
                volume: "my-registry".into(),
                target: "/usr/local/cargo/registry".into(),
            },
        ]
    }

    #[test]
    fn a_cache_is_named_by_its_target_or_its_volume() {
        let c = caches();
        let pick = |s: Option<&str>| -> Vec<String> {
            select(&c, s)
                .expect("selected")
                .iter()
                .map(|c| c.volume.clone())
                .collect()
        };
        assert_eq!(pick(None).len(), 2);
        assert_eq!(
            pick(Some("/cache/go-build/")),
            ["dockception-app-1234abcd-cache-go-build"]
        );
        assert_eq!(pick(Some("my-registry")), ["my-registry"]);
    }

    #[test]
    fn naming_nothing_lists_what_can_be_named() {
        let err = select(&caches(), Some("/cache")).expect_err("no match");
        let text = err.to_string();
        assert!(
            text.starts_with("no cache of this manifest is named /cache; its caches are /cache/go-build (dockception-app-1234abcd-cache-go-build), /usr/local/cargo/registry (my-registry)"),
            "{text}"
        );
        assert!(select(&caches(), Some("/")).is_err());
    }

    #[test]
    fn the_table_shows_targets_sizes_and_other_projects() {
        let mut rows = rows(
            &caches(),
            "app-1234abcd",
            &["my-registry".to_string()],
            &[
                ("my-registry".to_string(), None),
                (
                    "dockception-web-99-cache".to_string(),
                    Some("web-99".to_string()),
                ),
            ],
        );
        assert_eq!(rows.len(), 3);
        rows[1].bytes = Some(3 * 1024 * 1024);
        assert_eq!(
            to_text(&rows),
            "VOLUME                                   TARGET                     SIZE\n\
             dockception-app-1234abcd-cache-go-build  /cache/go-build            not created yet\n\
             my-registry                              /usr/local/cargo/registry  3.0 MiB\n\
             dockception-web-99-cache                 (project web-99)           ?\n"
        );
        assert_eq!(
            to_text(&[]),
            "no cache volumes: add a [[cache]] to the manifest\n"
        );
    }
}
