//! The report's numbers, from a scanned export ([`crate::report::scan`]): layers and their
//! roles, sizes, artifacts per rule, the largest files, the final file listing and the waste
//! (through [`crate::report::waste`]). Pure functions over plain values.

use std::collections::BTreeMap;
use std::path::Path;

use globset::{GlobSet, GlobSetBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::collect::matches_self_or_ancestor;
use crate::manifest::glob::compile_glob;
use crate::report::scan::FileKind;
use crate::report::waste::{self, Merged, Waste};

// The stages that measure an image reach the scan through here.
pub use crate::report::scan::{
    scan, scan_layer_listing, HistoryItem, ImageConfig, LayerScan, SavedImage,
};

/// How the history of an image dockception wrote names the step that added the artifacts.
pub const ARTIFACTS_STEP: &str = "dockception: the artifacts";

/// How many of the largest files a report lists.
pub const LARGEST_FILES: usize = 10;

/// What a layer is for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A layer (or metadata step) of the runtime base image.
    Base,
    /// The layer the artifacts were copied into (a `COPY` or `ADD` step).
    Artifacts,
    /// A step that changed only metadata (ENV, ENTRYPOINT, USER, LABEL...); it has no layer.
    Metadata,
    /// Any other layer, e.g. a `RUN` step of an image dockception did not build.
    Other,
}

impl Role {
    /// The lowercase name used in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            Role::Base => "base",
            Role::Artifacts => "artifacts",
            Role::Metadata => "metadata",
            Role::Other => "other",
        }
    }
}

/// Byte counts of something stored in an image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sizes {
    /// Bytes of file content (regular files).
    pub content_bytes: u64,
    /// Bytes of the uncompressed layer tars (headers, padding and content).
    pub tar_bytes: u64,
    /// Bytes of the layer tars gzipped at the default level: an estimate of what a registry
    /// stores.
    pub gzip_bytes: u64,
}

/// One step of the image's history, with its layer when it made one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Layer {
    /// Position in the history, bottom (0) first.
    pub index: usize,
    /// What the layer is for.
    pub role: Role,
    /// The step that made it, as the engine records it (may be empty for imported images).
    pub created_by: String,
    /// `sha256:<hex>` of the layer tar; absent for metadata steps.
    pub diff_id: Option<String>,
    /// Entries (files, folders, links) the layer adds or replaces.
    pub files: u64,
    /// Content, tar and gzip bytes of the layer (all 0 for metadata steps).
    #[serde(flatten)]
    pub sizes: Sizes,
}

/// One path of the image's final file system (folders are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileEntry {
    /// Absolute path in the image.
    pub path: String,
    /// What it is.
    pub kind: FileKind,
    /// Content bytes (0 for links and other non-regular files).
    pub size: u64,
    /// Permission bits in octal, e.g. `0755`.
    pub mode: String,
    /// SHA-256 of the content (regular files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The target of a link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// A path and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileSize {
    /// Absolute path in the image.
    pub path: String,
    /// Content bytes.
    pub bytes: u64,
}

/// One shipped file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactSize {
    /// Its path in the image.
    pub path: String,
    /// Its content bytes (0 for a symlink).
    pub bytes: u64,
    /// The include glob that selected it, when the manifest is known.
    #[serde(default)]
    pub rule: Option<String>,
}

/// What one artifact rule (an include glob) shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleSize {
    /// The include glob, as written in the manifest.
    pub include: String,
    /// How many files it shipped.
    pub files: u64,
    /// Their content bytes.
    pub content_bytes: u64,
    /// The bytes their entries take in the layer tar.
    pub tar_bytes: u64,
}

/// What the measurement knows beyond the export itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeasureContext {
    /// The runtime base's layers (diff ids, bottom first); empty for `scratch` or unknown.
    pub base_layers: Vec<String>,
    /// How many history steps the base has (its metadata steps count as base too).
    pub base_history_len: usize,
    /// The artifact rules (include globs) and where they land, when the manifest is known.
    pub rules: Option<RulePlan>,
}

/// The artifact rules of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlan {
    /// Include globs, relative to the output folder, in manifest order.
    pub include: Vec<String>,
    /// The image folder artifacts land in (`/` or `/app`).
    pub dest: String,
}

/// Everything measured about an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Totals over all layers.
    pub sizes: Sizes,
    /// The history with the layers, bottom first.
    pub layers: Vec<Layer>,
    /// Files of the artifacts layer(s).
    pub artifacts: Vec<ArtifactSize>,
    /// Per include glob, when the rules are known.
    pub rules: Vec<RuleSize>,
    /// The largest files of the final file system, largest first.
    pub largest_files: Vec<FileSize>,
    /// The final file system without folders, sorted by path.
    pub files: Vec<FileEntry>,
    /// Bytes stored more than once.
    pub waste: Waste,
}

/// Turn a scanned export into the report's numbers.
pub fn measure(saved: &SavedImage, context: &MeasureContext) -> Measurement {
    let layers = history_rows(saved, context);
    let mut sizes = Sizes::default();
    for layer in &layers {
        sizes.content_bytes += layer.sizes.content_bytes;
        sizes.tar_bytes += layer.sizes.tar_bytes;
        sizes.gzip_bytes += layer.sizes.gzip_bytes;
    }

    // Which scanned layers hold artifacts: match rows to scans by position.
    let artifact_layers: Vec<&LayerScan> = layers
        .iter()
        .filter(|l| l.diff_id.is_some())
        .zip(&saved.layers)
        .filter(|(row, _)| row.role == Role::Artifacts)
        .map(|(_, scan)| scan)
        .collect();
    let (artifacts, rules) = artifacts_and_rules(&artifact_layers, context.rules.as_ref());

    let merged = waste::merge(&saved.layers);
    let files = final_files(&merged);
    Measurement {
        sizes,
        layers,
        artifacts,
        rules,
        largest_files: largest_files(&files),
        files,
        waste: waste::waste(&merged),
    }
}

/// The merged file system without its folders.
fn final_files(merged: &Merged) -> Vec<FileEntry> {
    merged
        .files
        .iter()
        .filter(|(_, f)| f.kind != FileKind::Dir)
        .map(|(path, f)| FileEntry {
            path: path.clone(),
            kind: f.kind,
            size: f.size,
            mode: format!("{:04o}", f.mode),
            sha256: f.sha256.clone(),
            link: f.link.clone(),
        })
        .collect()
}

/// The [`LARGEST_FILES`] largest regular files, largest first (then by path).
fn largest_files(files: &[FileEntry]) -> Vec<FileSize> {
    let mut largest: Vec<FileSize> = files
        .iter()
        .filter(|f| f.kind == FileKind::File)
        .map(|f| FileSize {
            path: f.path.clone(),
            bytes: f.size,
        })
        .collect();
    largest.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    largest.truncate(LARGEST_FILES);
    largest
}

/// One row per history step; a step that made a layer takes the next diff id. When the history
/// does not account for the layers (some importers write none), one row per layer.
fn history_rows(saved: &SavedImage, context: &MeasureContext) -> Vec<Layer> {
    let history = &saved.config.history;
    let made_layers = history.iter().filter(|h| !h.empty_layer).count();
    let fallback;
    let steps: &[HistoryItem] = if made_layers == saved.layers.len() {
        history
    } else {
        fallback = vec![HistoryItem::default(); saved.layers.len()];
        &fallback
    };
    let mut scans = saved.layers.iter().enumerate();
    let mut rows = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        let created_by = step
            .created_by
            .clone()
            .filter(|c| !c.is_empty())
            .or_else(|| step.comment.clone())
            .unwrap_or_default();
        if step.empty_layer {
            rows.push(metadata_row(index, created_by, context));
            continue;
        }
        let Some((position, scan)) = scans.next() else {
            break;
        };
        rows.push(layer_row(index, created_by, context, position, scan));
    }
    rows
}

/// A step that made no layer: part of the base, or metadata on top of it.
fn metadata_row(index: usize, created_by: String, context: &MeasureContext) -> Layer {
    let role = if index < context.base_history_len {
        Role::Base
    } else {
        Role::Metadata
    };
    Layer {
        index,
        role,
        created_by,
        diff_id: None,
        files: 0,
        sizes: Sizes::default(),
    }
}

/// A step that made the layer `scan`, the `position`th of the image.
fn layer_row(
    index: usize,
    created_by: String,
    context: &MeasureContext,
    position: usize,
    scan: &LayerScan,
) -> Layer {
    let role = if context.base_layers.get(position) == Some(&scan.diff_id) {
        Role::Base
    } else if context.rules.is_some() && is_ours(&created_by) {
        // Only an image dockception built has an artifacts layer; anyone else's COPY is other.
        Role::Artifacts
    } else {
        Role::Other
    };
    Layer {
        index,
        role,
        created_by,
        diff_id: Some(scan.diff_id.clone()),
        files: scan.entries.len() as u64,
        sizes: Sizes {
            content_bytes: scan.entries.iter().map(|e| e.size).sum(),
            tar_bytes: scan.tar_bytes,
            gzip_bytes: scan.gzip_bytes,
        },
    }
}

/// The layer dockception writes with the artifacts.
fn is_ours(created_by: &str) -> bool {
    created_by.starts_with(ARTIFACTS_STEP)
}

/// Every shipped file (regular files and symlinks of the artifact layers) with the first rule
/// that selects it, and each rule's totals.
fn artifacts_and_rules(
    layers: &[&LayerScan],
    rules: Option<&RulePlan>,
) -> (Vec<ArtifactSize>, Vec<RuleSize>) {
    let globs = rule_globs(rules);
    let dest = rules
        .map(|r| r.dest.trim_matches('/').to_string())
        .unwrap_or_default();
    let mut per_rule: Vec<RuleSize> = globs
        .iter()
        .map(|(g, _)| RuleSize {
            include: g.clone(),
            files: 0,
            content_bytes: 0,
            tar_bytes: 0,
        })
        .collect();
    let mut artifacts = BTreeMap::new();
    for layer in layers {
        for entry in &layer.entries {
            if !matches!(entry.kind, FileKind::File | FileKind::Symlink) {
                continue;
            }
            let rule = under_dest(&entry.path, &dest).and_then(|rel| {
                globs.iter().position(|(_, set)| {
                    set.as_ref()
                        .is_some_and(|set| matches_self_or_ancestor(set, Path::new(rel)))
                })
            });
            if let Some(i) = rule {
                per_rule[i].files += 1;
                per_rule[i].content_bytes += entry.size;
                per_rule[i].tar_bytes += entry.tar_bytes;
            }
            artifacts.insert(
                entry.path.clone(),
                ArtifactSize {
                    path: entry.path.clone(),
                    bytes: entry.size,
                    rule: rule.map(|i| globs[i].0.clone()),
                },
            );
        }
    }
    (artifacts.into_values().collect(), per_rule)
}

/// Each include glob as a set of its own, so the first rule that selects a file is known; they
/// match as `collect` matches them (the file or a folder above it). A glob that does not
/// compile selects nothing.
fn rule_globs(rules: Option<&RulePlan>) -> Vec<(String, Option<GlobSet>)> {
    let Some(rules) = rules else {
        return Vec::new();
    };
    rules
        .include
        .iter()
        .map(|g| {
            let set = compile_glob(g)
                .ok()
                .and_then(|glob| GlobSetBuilder::new().add(glob).build().ok());
            (g.clone(), set)
        })
        .collect()
}

/// An image path relative to the folder artifacts land in (`dest`, without slashes around
/// it); `None` outside it.
fn under_dest<'a>(path: &'a str, dest: &str) -> Option<&'a str> {
    let relative = path.trim_start_matches('/');
    if dest.is_empty() {
        Some(relative)
    } else {
        relative
            .strip_prefix(dest)
            .and_then(|r| r.strip_prefix('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{gzip_size, layer_tar, save_tar, sha, Item};

    fn rules(include: &[&str], dest: &str) -> MeasureContext {
        MeasureContext {
            rules: Some(RulePlan {
                include: include.iter().map(|s| s.to_string()).collect(),
                dest: dest.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn roles_sizes_and_rules_of_a_dockception_image() {
        let base = layer_tar(&[
            Item::File("bin/busybox", &[1u8; 3000], 0o755),
            Item::Symlink("bin/sh", "busybox"),
        ]);
        let app = layer_tar(&[
            Item::Dir("app/"),
            Item::File("app/server", &[2u8; 2000], 0o755),
            Item::Dir("app/static/"),
            Item::File("app/static/index.html", &[3u8; 100], 0o644),
            Item::File("app/static/logo.png", &[4u8; 300], 0o644),
        ]);
        let tar = save_tar(
            &[base.clone(), app.clone()],
            &[
                ("", false),
                ("/bin/sh -c #(nop)  CMD [\"sh\"]", true),
                (ARTIFACTS_STEP, false),
                ("/bin/sh -c #(nop)  USER 65534", true),
            ],
        );
        let saved = scan(&tar[..]).expect("scan");
        let mut context = rules(&["server", "static", "missing"], "/app");
        context.base_layers = vec![sha(&base)];
        context.base_history_len = 2;
        let m = measure(&saved, &context);
        let roles: Vec<_> = m.layers.iter().map(|l| l.role).collect();
        assert_eq!(
            roles,
            [Role::Base, Role::Base, Role::Artifacts, Role::Metadata]
        );
        assert_eq!(m.layers[2].sizes.content_bytes, 2400);
        assert_eq!(m.layers[2].sizes.tar_bytes, app.len() as u64);
        assert_eq!(m.sizes.content_bytes, 5400);
        assert_eq!(m.sizes.tar_bytes, (base.len() + app.len()) as u64);
        assert_eq!(m.sizes.gzip_bytes, gzip_size(&base) + gzip_size(&app));
        assert_eq!(m.layers[3].diff_id, None);
        assert_eq!(
            m.rules,
            [
                RuleSize {
                    include: "server".into(),
                    files: 1,
                    content_bytes: 2000,
                    tar_bytes: 512 + 2048
                },
                RuleSize {
                    include: "static".into(),
                    files: 2,
                    content_bytes: 400,
                    tar_bytes: 512 * 2 + 512 + 512
                },
                RuleSize {
                    include: "missing".into(),
                    files: 0,
                    content_bytes: 0,
                    tar_bytes: 0
                },
            ]
        );
        assert_eq!(m.artifacts.len(), 3);
        assert_eq!(m.artifacts[0].path, "/app/server");
        assert_eq!(m.artifacts[0].rule.as_deref(), Some("server"));
        assert_eq!(
            m.largest_files[0],
            FileSize {
                path: "/bin/busybox".into(),
                bytes: 3000
            }
        );
        assert_eq!(m.files.len(), 5, "folders are left out: {:?}", m.files);
        assert_eq!(m.files[0].path, "/app/server");
        assert_eq!(m.files[0].mode, "0755");
        assert_eq!(m.waste.total_bytes, 0);
    }

    #[test]
    fn without_a_usable_history_each_layer_is_a_row() {
        let a = layer_tar(&[Item::File("a", b"a", 0o644)]);
        let tar = save_tar(&[a], &[]);
        let m = measure(&scan(&tar[..]).expect("scan"), &MeasureContext::default());
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].role, Role::Other);
    }

    #[test]
    fn a_copy_layer_of_an_image_dockception_did_not_build_is_other() {
        let a = layer_tar(&[Item::File("a", b"a", 0o644)]);
        let tar = save_tar(
            std::slice::from_ref(&a),
            &[("/bin/sh -c #(nop) COPY file:0a1b in /a ", false)],
        );
        let saved = scan(&tar[..]).expect("scan");
        let foreign = measure(&saved, &MeasureContext::default());
        assert_eq!(foreign.layers[0].role, Role::Other);
        // Not even with the manifest's rules: only the layer dockception writes is artifacts.
        let with_rules = measure(&saved, &rules(&["a"], "/"));
        assert_eq!(with_rules.layers[0].role, Role::Other);
        let ours = save_tar(std::slice::from_ref(&a), &[(ARTIFACTS_STEP, false)]);
        let ours = measure(&scan(&ours[..]).expect("scan"), &rules(&["a"], "/"));
        assert_eq!(ours.layers[0].role, Role::Artifacts);
    }
}
