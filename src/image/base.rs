//! A base image's config and layers, kept in the blob store: its export (`docker save`) is read
//! once, each layer gzipped into the store by its diff id, and an index file records them by
//! the base's image id. Later builds, pushes and outputs take the base from there.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::fsutil::{write_atomic, FromIo as _};

use super::blobs::BlobStore;
use super::layer::LayerWriter;
use super::{Error, Result, WrittenLayer};

/// A base image as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseImage {
    /// Its image id (`sha256:` of its config).
    pub image_id: String,
    /// Its config JSON, exactly as the engine exported it.
    pub config: String,
    /// Its layers, bottom first, as gzipped blobs in the store.
    pub layers: Vec<WrittenLayer>,
}

/// The index file of the base `image_id`.
fn index_path(store: &BlobStore, image_id: &str) -> PathBuf {
    store
        .root()
        .join("bases")
        .join(format!("{}.json", image_id.trim_start_matches("sha256:")))
}

/// The base `image_id`, when the store has it whole (its index and every blob).
pub fn cached(store: &BlobStore, image_id: &str) -> Option<BaseImage> {
    let bytes = std::fs::read(index_path(store, image_id)).ok()?;
    let base: BaseImage = serde_json::from_slice(&bytes).ok()?;
    let whole = base.image_id == image_id
        && base
            .layers
            .iter()
            .all(|l| store.has(&l.blob.digest, l.blob.size));
    whole.then_some(base)
}

/// The file that records which base the manifest (or index) `manifest_digest` gave.
fn manifest_path(store: &BlobStore, manifest_digest: &str) -> PathBuf {
    store.root().join("bases").join("manifests").join(format!(
        "{}.id",
        manifest_digest.trim_start_matches("sha256:")
    ))
}

/// The base the manifest (or index) `manifest_digest` gave when it was pulled, when the store
/// still has it whole: a base from a registry is found again by what its tag names now.
pub fn by_manifest(store: &BlobStore, manifest_digest: &str) -> Option<BaseImage> {
    let named = manifest_digest.strip_prefix("sha256:")?;
    if named.len() != 64 || !named.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let image_id = std::fs::read_to_string(manifest_path(store, manifest_digest)).ok()?;
    cached(store, image_id.trim())
}

/// Record that the manifest (or index) `manifest_digest` gives the base `image_id`.
pub fn remember_manifest(store: &BlobStore, manifest_digest: &str, image_id: &str) -> Result<()> {
    let path = manifest_path(store, manifest_digest);
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(|e| Error::io("creating", folder, e))?;
    write_atomic(&path, image_id.as_bytes()).map_err(|e| Error::io("writing", &path, e))
}

/// Read the export of the base `name` (a `docker save` archive, in either the layout of
/// Docker 20.10 or the OCI layout newer engines write) and keep it in `store`. `tap` is asked,
/// for each layer, for a channel that receives the layer's uncompressed tar as it passes (the
/// report's scan); `None` to skip.
pub fn store_export(
    reader: impl Read,
    store: &BlobStore,
    name: &str,
    mut tap: impl FnMut() -> Option<SyncSender<Bytes>>,
) -> Result<BaseImage> {
    let broken = |message: String| Error::BaseExport {
        image: name.to_string(),
        message,
    };
    let mut archive = tar::Archive::new(reader);
    let mut layers: HashMap<String, WrittenLayer> = HashMap::new();
    let mut json: HashMap<String, Vec<u8>> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    for entry in archive.entries().map_err(|e| broken(e.to_string()))? {
        let mut entry = entry.map_err(|e| broken(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| broken(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Symlink => {
                if let Ok(Some(target)) = entry.link_name() {
                    let target = resolve(&path, &target.to_string_lossy());
                    links.insert(path, target);
                }
                continue;
            }
            tar::EntryType::Regular => {}
            _ => continue,
        }
        let mut head = [0u8; 1];
        let n = entry.read(&mut head).map_err(|e| broken(e.to_string()))?;
        let rest = io::Read::chain(&head[..n], &mut entry);
        if n == 1 && (head[0] == b'{' || head[0] == b'[') {
            let mut bytes = Vec::new();
            let mut rest = rest;
            rest.read_to_end(&mut bytes)
                .map_err(|e| broken(e.to_string()))?;
            json.insert(path, bytes);
        } else if is_layer_path(&path) {
            let mut writer = LayerWriter::start(store, tap()).map_err(Error::Layer)?;
            let mut rest = rest;
            io::copy(&mut rest, &mut writer).map_err(|e| broken(e.to_string()))?;
            let mut layer = writer.finish().map_err(Error::Layer)?;
            layer.from_base = true;
            layers.insert(path, layer);
        }
    }
    let manifest = json
        .get("manifest.json")
        .ok_or_else(|| broken("it has no manifest.json".into()))?;
    let manifest: Vec<SavedManifest> =
        serde_json::from_slice(manifest).map_err(|e| broken(format!("manifest.json: {e}")))?;
    let first = manifest
        .first()
        .ok_or_else(|| broken("manifest.json lists no image".into()))?;
    let config = json
        .get(&first.config)
        .ok_or_else(|| broken(format!("the config {} is not in the export", first.config)))?;
    let config = String::from_utf8(config.clone()).map_err(|e| broken(e.to_string()))?;
    let image_id = format!(
        "sha256:{}",
        crate::fsutil::hex(&<sha2::Sha256 as sha2::Digest>::digest(config.as_bytes()))
    );
    let mut ordered = Vec::new();
    for path in &first.layers {
        let real = links.get(path).unwrap_or(path);
        let layer = layers.get(real).ok_or_else(|| {
            broken(format!(
                "layer {path} named in manifest.json is not in the export"
            ))
        })?;
        ordered.push(layer.clone());
    }
    check_diff_ids(&config, &ordered).map_err(broken)?;
    let base = BaseImage {
        image_id,
        config,
        layers: ordered,
    };
    keep(store, &base)?;
    Ok(base)
}

/// Record `base` (whose blobs are in `store`) in the store's index, so [`cached`] finds it.
pub fn keep(store: &BlobStore, base: &BaseImage) -> Result<()> {
    let index = index_path(store, &base.image_id);
    let folder = index.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(|e| Error::io("creating", folder, e))?;
    let bytes = serde_json::to_vec(base).map_err(|e| Error::BaseExport {
        image: base.image_id.clone(),
        message: e.to_string(),
    })?;
    write_atomic(&index, &bytes).map_err(|e| Error::io("writing", &index, e))
}

/// Whether the export's file at `path` (not JSON) is a layer tar, in any of the layouts an
/// engine's `docker save` writes: Docker 20.10's `<id>/layer.tar`, the OCI layout's
/// `blobs/sha256/<digest>` (Docker 25 and newer), and Podman's `<diff id>.tar` at the top, whose
/// legacy `<id>/layer.tar` entries are links to it.
fn is_layer_path(path: &str) -> bool {
    path.ends_with("/layer.tar")
        || path.starts_with("blobs/")
        || (!path.contains('/') && path.ends_with(".tar"))
}

/// One image of a `docker save` manifest.json.
#[derive(Deserialize)]
struct SavedManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The archive path a link at `path` to `target` names.
fn resolve(path: &str, target: &str) -> String {
    let mut parts: Vec<&str> = path.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// The layers read must be the ones the config names, in its order.
fn check_diff_ids(config: &str, layers: &[WrittenLayer]) -> std::result::Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
    let named: Vec<&str> = value["rootfs"]["diff_ids"]
        .as_array()
        .map(|ids| ids.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let read: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    if named != read {
        return Err(format!(
            "its layers hash to {read:?}, but its config names {named:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn saved(layer: &[u8]) -> (Vec<u8>, String) {
        let diff = format!(
            "sha256:{}",
            crate::fsutil::hex(&sha2::Sha256::digest(layer))
        );
        let manifest = r#"[{"Config":"abc.json","RepoTags":["b:1"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#;
        let config2 = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["{diff}","{diff}"]}},"config":{{}}}}"#
        );
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, data).expect("append");
        };
        add("l1/layer.tar", layer);
        add("abc.json", config2.as_bytes());
        add("manifest.json", manifest.as_bytes());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "l2/layer.tar", "../l1/layer.tar")
            .expect("link");
        (b.into_inner().expect("tar"), diff)
    }

    #[test]
    fn an_export_is_kept_by_image_id_with_its_layers_gzipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let layer = tar_of(&[("bin/sh", b"#!")]);
        let (export, diff) = saved(&layer);
        let mut taps = 0;
        let base = store_export(export.as_slice(), &store, "b:1", || {
            taps += 1;
            None
        })
        .expect("stored");
        assert_eq!(taps, 1, "the linked duplicate is read once");
        assert_eq!(base.layers.len(), 2);
        assert!(base.layers.iter().all(|l| l.diff_id == diff && l.from_base));
        assert_eq!(cached(&store, &base.image_id), Some(base.clone()));
        let manifest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(by_manifest(&store, &manifest), None, "not remembered yet");
        remember_manifest(&store, &manifest, &base.image_id).expect("remembered");
        assert_eq!(by_manifest(&store, &manifest), Some(base.clone()));
        assert_eq!(by_manifest(&store, "sha256:../../x"), None, "only digests");
        std::fs::remove_file(store.path(&base.layers[0].blob.digest)).expect("rm");
        assert_eq!(
            cached(&store, &base.image_id),
            None,
            "a missing blob is a miss"
        );
    }

    #[test]
    fn a_podman_export_is_kept_too() {
        // As Podman 4.3 saves busybox:local: the layer at the top as `<diff id>.tar` (named so
        // by manifest.json), the legacy folder's layer.tar a link to it, read-only modes.
        let layer = tar_of(&[("bin/busybox", b"\x7fELF")]);
        let hex = crate::fsutil::hex(&sha2::Sha256::digest(&layer));
        let config = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["sha256:{hex}"]}},"config":{{}}}}"#
        );
        let manifest = format!(
            r#"[{{"Config":"c0f1.json","RepoTags":["localhost/busybox:local"],"Layers":["{hex}.tar"]}}]"#
        );
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o444);
            h.set_cksum();
            b.append_data(&mut h, path, data).expect("append");
        };
        add(&format!("{hex}.tar"), &layer);
        add("c0f1.json", config.as_bytes());
        add("f14b/VERSION", b"1.0");
        add("f14b/json", b"{}");
        add("manifest.json", manifest.as_bytes());
        add("repositories", b"{}");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "f14b/layer.tar", format!("../{hex}.tar"))
            .expect("link");
        let export = b.into_inner().expect("tar");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let mut taps = 0;
        let base = store_export(export.as_slice(), &store, "busybox:local", || {
            taps += 1;
            None
        })
        .expect("stored");
        assert_eq!(taps, 1, "one layer read");
        assert_eq!(base.layers.len(), 1);
        assert_eq!(base.layers[0].diff_id, format!("sha256:{hex}"));
        assert_eq!(cached(&store, &base.image_id), Some(base));
    }

    #[test]
    fn an_export_without_its_layers_is_an_error_naming_the_base() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let export = tar_of(&[
            ("abc.json", br#"{"rootfs":{"diff_ids":[]}}"#),
            (
                "manifest.json",
                br#"[{"Config":"abc.json","Layers":["x/layer.tar"]}]"#,
            ),
        ]);
        let e = store_export(export.as_slice(), &store, "b:1", || None).expect_err("fails");
        let text = e.to_string();
        assert!(
            text.contains("b:1") && text.contains("x/layer.tar"),
            "{text}"
        );
    }
}
