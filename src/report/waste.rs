//! Bytes an image stores for nothing. Layers only add: a file deleted or overwritten in a later
//! layer still weighs in the one below. For every path, all its copies minus the one that
//! survives are reclaimable, so a deleted or overwritten file counts exactly what it wastes
//! (tools that add up every copy overstate it). Files with the same content at several paths of
//! the final file system are duplicates. An image dockception built has neither.

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::scan::{FileKind, LayerScan};

/// How many reclaimable paths and duplicate groups a report lists.
pub const LISTED: usize = 20;

/// One path of a merged file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedFile {
    /// What it is.
    pub kind: FileKind,
    /// Content bytes (regular files).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// SHA-256 of the content (regular files).
    pub sha256: Option<String>,
    /// Link target.
    pub link: Option<String>,
}

/// The final file system of a stack of layers, and every copy each path ever had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// What is visible at the top, folders included, by path.
    pub files: BTreeMap<String, MergedFile>,
    /// For each path that was ever a regular file: how many copies the layers hold and their
    /// total bytes.
    pub copies: BTreeMap<String, (u64, u64)>,
}

/// Apply the layers bottom first, the way the overlay file system shows them.
pub fn merge(layers: &[LayerScan]) -> Merged {
    let mut merged = Merged::default();
    for layer in layers {
        // Whiteouts and opaque markers hide what the layers below hold; this layer's own
        // entries come after them.
        for dir in &layer.opaque_dirs {
            remove_below(&mut merged.files, dir);
        }
        for path in &layer.whiteouts {
            merged.files.remove(path);
            remove_below(&mut merged.files, path);
        }
        for entry in &layer.entries {
            if entry.kind != FileKind::Dir {
                remove_below(&mut merged.files, &entry.path);
            }
            merged.files.insert(
                entry.path.clone(),
                MergedFile {
                    kind: entry.kind,
                    size: entry.size,
                    mode: entry.mode,
                    sha256: entry.sha256.clone(),
                    link: entry.link.clone(),
                },
            );
            if entry.kind == FileKind::File {
                let copies = merged.copies.entry(entry.path.clone()).or_default();
                copies.0 += 1;
                copies.1 += entry.size;
            }
        }
    }
    merged
}

/// Remove everything below the folder `dir` (not `dir` itself).
fn remove_below(files: &mut BTreeMap<String, MergedFile>, dir: &str) {
    let prefix = if dir == "/" {
        "/".to_string()
    } else {
        format!("{dir}/")
    };
    let below: Vec<String> = files
        .range(prefix.clone()..)
        .take_while(|(path, _)| path.starts_with(&prefix))
        .filter(|(path, _)| path.as_str() != "/")
        .map(|(path, _)| path.clone())
        .collect();
    for path in below {
        files.remove(&path);
    }
}

/// Bytes stored for nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Waste {
    /// Bytes of file copies that later layers deleted or overwrote: for each path, all copies
    /// minus the one that survives.
    pub reclaimable_bytes: u64,
    /// Bytes of files whose content is also at another path of the final file system: for
    /// each content, every path but one.
    pub duplicate_bytes: u64,
    /// `reclaimable_bytes + duplicate_bytes`: what the `max_waste` gate checks.
    pub total_bytes: u64,
    /// The paths with reclaimable bytes, most first (at most 20).
    pub reclaimable: Vec<Reclaimable>,
    /// Contents stored at several paths, most wasted first (at most 20).
    pub duplicates: Vec<Duplicate>,
}

/// A path whose copies waste bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reclaimable {
    /// Absolute path in the image.
    pub path: String,
    /// How many copies of it the layers hold.
    pub copies: u64,
    /// Bytes of all copies.
    pub stored_bytes: u64,
    /// Bytes of the copy the final file system shows (0 when it was deleted).
    pub surviving_bytes: u64,
    /// `stored_bytes - surviving_bytes`.
    pub reclaimable_bytes: u64,
}

/// One content at several paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Duplicate {
    /// SHA-256 of the content.
    pub sha256: String,
    /// Bytes of one copy.
    pub bytes: u64,
    /// The paths holding it, sorted.
    pub paths: Vec<String>,
    /// `bytes * (paths - 1)`.
    pub wasted_bytes: u64,
}

/// Reclaimable bytes and duplicates of a merged file system.
pub fn waste(merged: &Merged) -> Waste {
    let mut reclaimable = reclaimable(merged);
    let mut duplicates = duplicates(merged);
    // The totals count every path; the lists only show the first.
    let reclaimable_bytes = reclaimable.iter().map(|r| r.reclaimable_bytes).sum();
    let duplicate_bytes = duplicates.iter().map(|d| d.wasted_bytes).sum();
    reclaimable.truncate(LISTED);
    duplicates.truncate(LISTED);
    Waste {
        reclaimable_bytes,
        duplicate_bytes,
        total_bytes: reclaimable_bytes + duplicate_bytes,
        reclaimable,
        duplicates,
    }
}

/// Every path whose copies weigh more than the one that survives, most wasted first.
fn reclaimable(merged: &Merged) -> Vec<Reclaimable> {
    let mut reclaimable: Vec<Reclaimable> = merged
        .copies
        .iter()
        .filter_map(|(path, (copies, stored))| {
            let surviving = merged
                .files
                .get(path)
                .filter(|f| f.kind == FileKind::File)
                .map_or(0, |f| f.size);
            let wasted = stored.saturating_sub(surviving);
            (wasted > 0).then(|| Reclaimable {
                path: path.clone(),
                copies: *copies,
                stored_bytes: *stored,
                surviving_bytes: surviving,
                reclaimable_bytes: wasted,
            })
        })
        .collect();
    reclaimable.sort_by(|a, b| {
        b.reclaimable_bytes
            .cmp(&a.reclaimable_bytes)
            .then_with(|| a.path.cmp(&b.path))
    });
    reclaimable
}

/// Every non-empty content at several paths of the final file system, most wasted first.
fn duplicates(merged: &Merged) -> Vec<Duplicate> {
    let mut by_content: HashMap<&str, (u64, Vec<String>)> = HashMap::new();
    for (path, file) in &merged.files {
        if let (FileKind::File, Some(sha), true) = (file.kind, &file.sha256, file.size > 0) {
            let group = by_content.entry(sha).or_insert((file.size, Vec::new()));
            group.1.push(path.clone());
        }
    }
    let mut duplicates: Vec<Duplicate> = by_content
        .into_iter()
        .filter(|(_, (_, paths))| paths.len() > 1)
        .map(|(sha, (bytes, paths))| Duplicate {
            sha256: sha.to_string(),
            bytes,
            wasted_bytes: bytes * (paths.len() as u64 - 1),
            paths,
        })
        .collect();
    duplicates.sort_by(|a, b| {
        b.wasted_bytes
            .cmp(&a.wasted_bytes)
            .then_with(|| a.paths.cmp(&b.paths))
    });
    duplicates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{layer_tar, Item};
    use crate::report::scan::{scan_layer, LayerEntry};

    fn layer(items: &[Item]) -> LayerScan {
        scan_layer(&layer_tar(items)[..]).expect("scan")
    }

    fn whiteout(path: &str) -> LayerScan {
        let (dir, name) = path.rsplit_once('/').expect("a path");
        let marker = format!("./{}/.wh.{name}", dir.trim_start_matches('/'));
        layer(&[Item::File(&marker, b"", 0o600)])
    }

    #[test]
    fn a_deleted_file_wastes_all_its_bytes() {
        let layers = [
            layer(&[Item::File("keep", &[1; 10], 0o644)]),
            layer(&[Item::File("junk.bin", &[2; 3000], 0o644)]),
            whiteout("/junk.bin"),
        ];
        let merged = merge(&layers);
        assert!(!merged.files.contains_key("/junk.bin"));
        let w = waste(&merged);
        assert_eq!(w.reclaimable_bytes, 3000);
        assert_eq!(w.total_bytes, 3000);
        assert_eq!(
            w.reclaimable,
            [Reclaimable {
                path: "/junk.bin".into(),
                copies: 1,
                stored_bytes: 3000,
                surviving_bytes: 0,
                reclaimable_bytes: 3000,
            }]
        );
    }

    #[test]
    fn an_overwritten_file_wastes_only_the_older_copies() {
        let layers = [
            layer(&[Item::File("etc/config", &[1; 100], 0o644)]),
            layer(&[Item::File("etc/config", &[2; 40], 0o644)]),
            layer(&[Item::File("etc/config", &[3; 70], 0o600)]),
        ];
        let w = waste(&merge(&layers));
        assert_eq!(w.reclaimable_bytes, 140);
        assert_eq!(w.reclaimable[0].copies, 3);
        assert_eq!(w.reclaimable[0].surviving_bytes, 70);
    }

    #[test]
    fn deleting_a_folder_or_making_it_opaque_hides_all_below() {
        let layers = [
            layer(&[
                Item::Dir("var/"),
                Item::Dir("var/cache/"),
                Item::File("var/cache/a", &[1; 50], 0o644),
                Item::File("var/cache/b", &[2; 60], 0o644),
                Item::File("var/cachefile", &[3; 5], 0o644),
                Item::File("opt/x/1", &[4; 7], 0o644),
            ]),
            whiteout("/var/cache"),
            layer(&[
                Item::Dir("opt/x/"),
                Item::File("opt/x/.wh..wh..opq", b"", 0o600),
                Item::File("opt/x/2", &[5; 9], 0o644),
            ]),
        ];
        let merged = merge(&layers);
        let paths: Vec<_> = merged.files.keys().map(String::as_str).collect();
        assert_eq!(paths, ["/opt/x", "/opt/x/2", "/var", "/var/cachefile"]);
        assert_eq!(waste(&merged).reclaimable_bytes, 50 + 60 + 7);
    }

    #[test]
    fn a_file_replacing_a_folder_removes_what_was_in_it() {
        let layers = [
            layer(&[Item::Dir("data/"), Item::File("data/f", &[1; 20], 0o644)]),
            layer(&[Item::Symlink("data", "/elsewhere")]),
        ];
        let merged = merge(&layers);
        assert_eq!(merged.files.len(), 1);
        assert_eq!(merged.files["/data"].kind, FileKind::Symlink);
        assert_eq!(waste(&merged).reclaimable_bytes, 20);
    }

    #[test]
    fn duplicates_count_every_path_but_one_and_links_are_not_duplicates() {
        let layers = [layer(&[
            Item::File("a/LICENSE", &[9; 1000], 0o644),
            Item::File("b/LICENSE", &[9; 1000], 0o644),
            Item::File("c/LICENSE", &[9; 1000], 0o644),
            Item::Hardlink("d/LICENSE", "a/LICENSE"),
            Item::Symlink("e/LICENSE", "/a/LICENSE"),
            Item::File("empty1", b"", 0o644),
            Item::File("empty2", b"", 0o644),
        ])];
        let w = waste(&merge(&layers));
        assert_eq!(w.reclaimable_bytes, 0);
        assert_eq!(w.duplicate_bytes, 2000);
        assert_eq!(w.duplicates.len(), 1);
        assert_eq!(
            w.duplicates[0].paths,
            ["/a/LICENSE", "/b/LICENSE", "/c/LICENSE"]
        );
    }

    #[test]
    fn the_same_path_in_one_layer_stack_without_changes_is_not_waste() {
        let entry = LayerEntry {
            path: "/app".into(),
            kind: FileKind::File,
            size: 10,
            mode: 0o755,
            sha256: Some("x".into()),
            link: None,
            tar_bytes: 1024,
        };
        let one = LayerScan {
            diff_id: "sha256:1".into(),
            tar_bytes: 2048,
            gzip_bytes: 100,
            entries: vec![entry],
            whiteouts: vec![],
            opaque_dirs: vec![],
        };
        assert_eq!(waste(&merge(&[one])).total_bytes, 0);
    }
}
