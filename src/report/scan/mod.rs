//! Read an image's `docker save` export once, as a stream: the manifest, the config and every
//! layer tar. Each layer is hashed (its diff id), gzipped into a byte counter (what a registry
//! would store) and listed entry by entry while it flows past; nothing but the file list is
//! kept in memory. [`crate::report::measure`] turns what this reads into the report's numbers.
//!
//! Three layouts are understood: the legacy one dockerd 20.10 writes (`<id>/layer.tar`,
//! `<config>.json`, `manifest.json`), Podman's (`<diff id>.tar` at the top, the legacy paths
//! as links to them) and the OCI one of newer engines (`blobs/sha256/<hex>`, layers recognised
//! by their tar header, gzip-compressed ones decompressed on the way).

mod layer;
mod tee;

pub use layer::{scan_layer, scan_layer_listing};

use std::collections::HashMap;
use std::io::{self, Read};

use flate2::read::GzDecoder;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// JSON files in an export larger than this are not configs or manifests; they are skipped.
const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// Why an export could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// Reading the stream failed (the engine stopped sending, or a tar is cut short).
    #[error("reading the exported image: {0}")]
    Io(#[from] io::Error),
    /// The archive is not a `docker save` export this module understands.
    #[error("{0}")]
    Format(String),
}

/// What kind of file system entry a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to another path of the same layer (its content is stored once).
    Hardlink,
    /// A device, fifo or anything else.
    Other,
}

/// One entry of a layer tar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEntry {
    /// Absolute path in the image, e.g. `/bin/busybox`.
    pub path: String,
    /// What it is.
    pub kind: FileKind,
    /// Content bytes (regular files only; 0 for everything else).
    pub size: u64,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// SHA-256 of the content, hex (regular files only).
    pub sha256: Option<String>,
    /// The target of a symlink or hard link.
    pub link: Option<String>,
    /// Bytes the entry takes in the layer tar: its headers plus its content padded to 512.
    pub tar_bytes: u64,
}

/// One layer tar as read from the export (kept with a base's layers in the blob store, so the
/// base is read once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerScan {
    /// `sha256:<hex>` of the uncompressed layer tar (the image config's diff id).
    pub diff_id: String,
    /// Bytes of the uncompressed layer tar.
    pub tar_bytes: u64,
    /// Bytes of the layer tar gzipped at the default level, as `docker push` stores it.
    pub gzip_bytes: u64,
    /// Entries that add or replace paths, in tar order (directories included).
    pub entries: Vec<LayerEntry>,
    /// Paths this layer deletes from the layers below (`.wh.<name>` whiteouts).
    pub whiteouts: Vec<String>,
    /// Directories whose content in the layers below this layer hides (`.wh..wh..opq`).
    pub opaque_dirs: Vec<String>,
}

/// The parts of an image config a report needs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ImageConfig {
    /// The layers' diff ids, bottom first.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per Dockerfile step, bottom first; `empty_layer` ones made no layer.
    #[serde(default)]
    pub history: Vec<HistoryItem>,
    /// When the image was created (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RootFs {
    /// Diff ids, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One step of an image's history.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HistoryItem {
    /// The command that made the step.
    #[serde(default)]
    pub created_by: Option<String>,
    /// A comment, e.g. `Imported from -`.
    #[serde(default)]
    pub comment: Option<String>,
    /// Whether the step only changed metadata.
    #[serde(default)]
    pub empty_layer: bool,
}

/// An image as read from its export.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedImage {
    /// The image config.
    pub config: ImageConfig,
    /// The layers, bottom first, as `manifest.json` lists them.
    pub layers: Vec<LayerScan>,
}

/// What one file of an export turned out to be.
enum Part {
    Layer(LayerScan),
    Json(Vec<u8>),
    Skipped,
}

/// Read a `docker save` archive from `reader`, in one pass.
pub fn scan(reader: impl Read) -> Result<SavedImage, MeasureError> {
    let mut archive = tar::Archive::new(reader);
    let mut jsons: HashMap<String, Vec<u8>> = HashMap::new();
    let mut layers: HashMap<String, LayerScan> = HashMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = clean_archive_path(&entry.path()?.to_string_lossy());
        let size = entry.size();
        let part = if is_layer_tar(&path) {
            Part::Layer(scan_layer(&mut entry).map_err(|e| in_layer(&path, e))?)
        } else if path.starts_with("blobs/") {
            read_blob(&path, &mut entry, size)?
        } else if path.ends_with(".json") && !path.contains('/') && size <= MAX_JSON_BYTES {
            let mut text = Vec::new();
            entry.read_to_end(&mut text)?;
            Part::Json(text)
        } else {
            Part::Skipped
        };
        match part {
            Part::Layer(layer) => {
                layers.insert(path, layer);
            }
            Part::Json(text) => {
                jsons.insert(path, text);
            }
            Part::Skipped => {}
        }
    }
    assemble(jsons, layers)
}

/// Whether the export's file at `path` is an uncompressed layer tar by its name: dockerd
/// 20.10's `<id>/layer.tar`, or Podman's `<diff id>.tar` at the top (its `<id>/layer.tar`
/// entries are links to those, which are not read).
fn is_layer_tar(path: &str) -> bool {
    path == "layer.tar"
        || path.ends_with("/layer.tar")
        || (!path.contains('/') && path.ends_with(".tar"))
}

/// An OCI blob says what it is only in its first bytes: a tar header, the gzip magic or `{`.
fn read_blob(path: &str, mut blob: impl Read, size: u64) -> Result<Part, MeasureError> {
    let mut head = Vec::with_capacity(512);
    (&mut blob).take(512).read_to_end(&mut head)?;
    let rest = io::Cursor::new(head.clone()).chain(blob);
    if is_tar(&head) {
        scan_layer(rest)
            .map(Part::Layer)
            .map_err(|e| in_layer(path, e))
    } else if head.starts_with(&[0x1f, 0x8b]) {
        scan_layer(GzDecoder::new(rest))
            .map(Part::Layer)
            .map_err(|e| in_layer(path, e))
    } else if head.first() == Some(&b'{') && size <= MAX_JSON_BYTES {
        let mut text = Vec::new();
        { rest }.read_to_end(&mut text)?;
        Ok(Part::Json(text))
    } else {
        Ok(Part::Skipped)
    }
}

/// The image `manifest.json` of an export lists first.
#[derive(Deserialize)]
struct ManifestItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// `manifest.json` names the config and the layers; find them among what was read.
fn assemble(
    jsons: HashMap<String, Vec<u8>>,
    layers: HashMap<String, LayerScan>,
) -> Result<SavedImage, MeasureError> {
    let manifest = jsons.get("manifest.json").ok_or_else(|| {
        MeasureError::Format("not a docker save archive: it has no manifest.json".into())
    })?;
    let items: Vec<ManifestItem> = serde_json::from_slice(manifest)
        .map_err(|e| MeasureError::Format(format!("manifest.json of the export: {e}")))?;
    let item = items
        .into_iter()
        .next()
        .ok_or_else(|| MeasureError::Format("manifest.json of the export lists no image".into()))?;
    let config_path = clean_archive_path(&item.config);
    let config_text = jsons.get(&config_path).ok_or_else(|| {
        MeasureError::Format(format!(
            "the image config {config_path} named in manifest.json is not in the export"
        ))
    })?;
    let config: ImageConfig = serde_json::from_slice(config_text)
        .map_err(|e| MeasureError::Format(format!("image config {config_path}: {e}")))?;
    Ok(SavedImage {
        config,
        layers: in_manifest_order(item.layers, layers)?,
    })
}

/// The scans of the layers `paths` names, in that order.
fn in_manifest_order(
    paths: Vec<String>,
    mut layers: HashMap<String, LayerScan>,
) -> Result<Vec<LayerScan>, MeasureError> {
    let mut ordered = Vec::with_capacity(paths.len());
    let mut uses: HashMap<String, usize> = HashMap::new();
    for path in &paths {
        *uses.entry(clean_archive_path(path)).or_default() += 1;
    }
    for path in paths {
        let path = clean_archive_path(&path);
        let left = uses.get_mut(&path).map(|n| {
            *n -= 1;
            *n
        });
        // The last use takes the scan; a layer listed twice (identical content) is cloned.
        let layer = if left == Some(0) {
            layers.remove(&path)
        } else {
            layers.get(&path).cloned()
        };
        ordered.push(layer.ok_or_else(|| {
            MeasureError::Format(format!(
                "layer {path} named in manifest.json is not in the export"
            ))
        })?);
    }
    Ok(ordered)
}

fn in_layer(path: &str, e: MeasureError) -> MeasureError {
    match e {
        MeasureError::Io(e) => {
            MeasureError::Io(io::Error::new(e.kind(), format!("layer {path}: {e}")))
        }
        MeasureError::Format(m) => MeasureError::Format(format!("layer {path}: {m}")),
    }
}

/// A tar starts with a header holding `ustar` at offset 257, or (an empty tar) with zeros.
fn is_tar(head: &[u8]) -> bool {
    (head.len() >= 262 && &head[257..262] == b"ustar")
        || (head.len() == 512 && head.iter().all(|b| *b == 0))
}

/// `./a/b/` -> `a/b`: archive paths without the leading `./` or trailing `/`.
fn clean_archive_path(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_end_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;
    use crate::report::fixtures::{layer_tar, save_tar, sha, Item};
    use crate::report::measure::{measure, MeasureContext, Role};

    #[test]
    fn a_save_archive_is_read_in_manifest_order() {
        let base = layer_tar(&[Item::File("bin/busybox", &[1u8; 3000], 0o755)]);
        let app = layer_tar(&[Item::File("app", &[2u8; 700], 0o755)]);
        let tar = save_tar(
            &[base.clone(), app.clone()],
            &[
                ("", false),
                ("/bin/sh -c #(nop) COPY dir:abc in / ", false),
                ("/bin/sh -c #(nop)  ENTRYPOINT [\"/app\"]", true),
            ],
        );
        let saved = scan(&tar[..]).expect("scan");
        assert_eq!(saved.layers.len(), 2);
        assert_eq!(saved.layers[0].diff_id, sha(&base));
        assert_eq!(saved.layers[1].diff_id, sha(&app));
        assert_eq!(saved.config.rootfs.diff_ids, [sha(&base), sha(&app)]);
        assert_eq!(saved.config.history.len(), 3);
    }

    #[test]
    fn an_oci_layout_is_read_too() {
        let layer = layer_tar(&[Item::File("app", b"hello", 0o755)]);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&layer).expect("gzip");
        let gzipped = gz.finish().expect("gzip");
        let config = serde_json::to_vec(&serde_json::json!({
            "rootfs": {"diff_ids": [sha(&layer), sha(&layer)]},
            "history": [{"created_by": "COPY app /app # buildkit"}, {"created_by": "COPY app /app # buildkit"}],
        }))
        .expect("json");
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": "blobs/sha256/cccc",
            "Layers": ["blobs/sha256/aaaa", "blobs/sha256/bbbb"],
        }]))
        .expect("json");
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("blobs/sha256/aaaa", &layer),
            ("blobs/sha256/bbbb", &gzipped),
            ("blobs/sha256/cccc", &config),
            ("index.json", &b"{}".to_vec()),
            ("manifest.json", &manifest),
            ("oci-layout", &b"{}".to_vec()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, path, &data[..])
                .expect("append");
        }
        let saved = scan(&builder.into_inner().expect("tar")[..]).expect("scan");
        assert_eq!(saved.layers.len(), 2);
        assert_eq!(saved.layers[0], saved.layers[1]);
        let m = measure(&saved, &MeasureContext::default());
        // Not an image dockception built (no rules): its COPY layers are `other`.
        assert_eq!(m.layers[1].role, Role::Other);
        assert_eq!(m.waste.reclaimable_bytes, 5, "the same file copied twice");
    }

    #[test]
    fn a_podman_export_is_read_too() {
        // As Podman 4.3 saves busybox:local: the layer at the top as `<diff id>.tar`, the
        // legacy folder's layer.tar a link to it, manifest.json naming the top file.
        let layer = layer_tar(&[Item::File("bin/busybox", &[1u8; 3000], 0o755)]);
        let hex = &sha(&layer)["sha256:".len()..];
        let config = serde_json::to_vec(&serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]},
            "history": [{"created_by": "", "comment": "Imported from -"}],
        }))
        .expect("json");
        let config_name = format!("{}.json", &sha(&config)["sha256:".len()..]);
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name,
            "RepoTags": ["localhost/busybox:local"],
            "Layers": [format!("{hex}.tar")],
        }]))
        .expect("json");
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o444);
            builder
                .append_data(&mut header, path, data)
                .expect("append");
        };
        add(&format!("{hex}.tar"), &layer);
        add(&config_name, &config);
        add("f14b/VERSION", b"1.0");
        add("f14b/json", b"{}");
        add("manifest.json", &manifest);
        add("repositories", b"{}");
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder
            .append_link(&mut link, "f14b/layer.tar", format!("../{hex}.tar"))
            .expect("link");
        let saved = scan(&builder.into_inner().expect("tar")[..]).expect("scan");
        assert_eq!(saved.layers.len(), 1);
        assert_eq!(saved.layers[0].diff_id, sha(&layer));
        assert_eq!(saved.layers[0].entries[0].path, "/bin/busybox");
    }

    #[test]
    fn a_truncated_or_foreign_archive_is_an_error() {
        let err = scan(&layer_tar(&[Item::File("a", b"x", 0o644)])[..]).expect_err("no manifest");
        assert!(err.to_string().contains("no manifest.json"), "{err}");
        let base = layer_tar(&[Item::File("a", &[0u8; 5000], 0o644)]);
        let tar = save_tar(&[base], &[("", false)]);
        let err = scan(&tar[..tar.len() / 2]).expect_err("cut short");
        assert!(
            matches!(err, MeasureError::Io(_) | MeasureError::Format(_)),
            "{err}"
        );
    }
}
