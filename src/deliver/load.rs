//! `--load`: an image as a docker archive for `docker load`. The engine tags the image with the
//! archive's `RepoTags` in the same call, and keeps the config's bytes, so the image id is the
//! config's digest. A layer goes gzipped or as its plain tar (the engine takes either, and the
//! config names layers by their uncompressed digests), so a layer dockception has just written
//! is loaded before its gzip is done. Layers the engine already has (the base's, when the base
//! came from the engine) are left out: the engine does not open them (moby's `tarexport`), so a
//! rebuild sends only the layers that changed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::Stream;
use serde_json::json;

use crate::image::manifest::archive_path;
use crate::image::WrittenImage;

/// An image as `docker load` takes it: its config's bytes, and each layer as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loadable {
    /// The config's bytes, exactly as written.
    pub config: Vec<u8>,
    /// `sha256:<hex>` of the config: the image id the engine gives it.
    pub image_id: String,
    /// The layers, bottom first.
    pub layers: Vec<LoadLayer>,
}

/// One layer of a [`Loadable`]: a file holding its tar, gzipped or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadLayer {
    /// `sha256:<hex>` of the file's bytes: its name in the archive (`blobs/sha256/<hex>`).
    pub digest: String,
    /// The file; it must stay until the load is over.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Whether the layer is the base's (an engine that has the base has it too).
    pub from_base: bool,
}

impl Loadable {
    /// The image of `config` and `layers`.
    pub fn new(config: Vec<u8>, layers: Vec<LoadLayer>) -> Loadable {
        use sha2::Digest as _;
        let image_id = format!(
            "sha256:{}",
            crate::fsutil::hex(&sha2::Sha256::digest(&config))
        );
        Loadable {
            config,
            image_id,
            layers,
        }
    }

    /// `image` with every layer as its gzipped blob in the store.
    pub fn written(image: &WrittenImage) -> Loadable {
        let layers = image
            .layers
            .iter()
            .map(|l| LoadLayer {
                digest: l.blob.digest.clone(),
                path: image.blob_path(&l.blob.digest),
                size: l.blob.size,
                from_base: l.from_base,
            })
            .collect();
        Loadable::new(image.config.clone(), layers)
    }
}

/// The file in a project's output folder that lists the images its builds loaded, so that
/// `clean` knows which untagged images are the project's: the images name no project (their
/// bytes must not depend on the project's folder).
pub const LOADED_LIST: &str = "loaded-images";

/// How many loaded images the list remembers.
const LOADED_KEPT: usize = 500;

/// Add `image_id` to the list of images loaded from the output folder `out_base`.
pub fn record_loaded(out_base: &Path, image_id: &str) -> io::Result<()> {
    let mut ids = loaded_images(out_base);
    if ids.iter().any(|id| id == image_id) {
        return Ok(());
    }
    ids.push(image_id.to_string());
    let skip = ids.len().saturating_sub(LOADED_KEPT);
    let text: String = ids.iter().skip(skip).map(|id| format!("{id}\n")).collect();
    std::fs::create_dir_all(out_base)?;
    crate::fsutil::write_atomic(&out_base.join(LOADED_LIST), text.as_bytes())
}

/// The images loaded from the output folder `out_base`, oldest first (none when the list is
/// missing).
pub fn loaded_images(out_base: &Path) -> Vec<String> {
    std::fs::read_to_string(out_base.join(LOADED_LIST))
        .map(|text| {
            text.lines()
                .filter(|l| l.starts_with("sha256:"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Bytes of the layers [`archive`] leaves out when the engine has the base (as they are
/// stored: the base's blobs are gzipped).
pub fn skipped_bytes(image: &Loadable, engine_has_base: bool) -> u64 {
    image
        .layers
        .iter()
        .filter(|l| engine_has_base && l.from_base)
        .map(|l| l.size)
        .sum()
}

/// The docker archive of `image` tagged `tags`, as a stream of chunks produced on a blocking
/// thread (layers are read from their files, never held whole in memory). With
/// `engine_has_base`, the base's layers are named in `manifest.json` but left out.
pub fn archive(
    image: Loadable,
    tags: Vec<String>,
    engine_has_base: bool,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    crate::image::context::stream_written(move |out| {
        write_archive(&image, &tags, engine_has_base, out)
    })
}

/// A whole first entry for an archive whose load is opened before the archive is written (the
/// folder of the blobs, which the archive holds anyway): the engine starts unpacking once the
/// archive's first bytes arrive, and what follows it is an archive of its own.
pub fn archive_start() -> Bytes {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(0);
    let _ = h.set_path("blobs/");
    h.set_cksum();
    Bytes::copy_from_slice(h.as_bytes())
}

fn write_archive(
    image: &Loadable,
    tags: &[String],
    engine_has_base: bool,
    out: impl Write,
) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    append(&mut tar, &archive_path(&image.image_id), &image.config)?;
    let mut sent = std::collections::HashSet::new();
    for layer in &image.layers {
        if (engine_has_base && layer.from_base) || !sent.insert(&layer.digest) {
            continue;
        }
        let file = File::open(&layer.path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening layer {}: {e}", layer.path.display()),
            )
        })?;
        let mut h = header(layer.size);
        tar.append_data(&mut h, archive_path(&layer.digest), file.take(layer.size))?;
    }
    append(&mut tar, "manifest.json", &manifest_json(image, tags))?;
    tar.into_inner()?.flush()
}

/// The archive's `manifest.json`: the config and every layer by their paths in it.
fn manifest_json(image: &Loadable, tags: &[String]) -> Vec<u8> {
    let layers: Vec<String> = image
        .layers
        .iter()
        .map(|l| archive_path(&l.digest))
        .collect();
    json!([{
        "Config": archive_path(&image.image_id),
        "RepoTags": tags,
        "Layers": layers,
    }])
    .to_string()
    .into_bytes()
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = header(bytes.len() as u64);
    tar.append_data(&mut h, path, bytes)
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::blobs::BlobStore;
    use crate::image::{manifest, media, WrittenLayer};

    fn image(store: &BlobStore) -> WrittenImage {
        let base = store.put(media::LAYER_GZIP, b"base").expect("put");
        let ours = store.put(media::LAYER_GZIP, b"ours").expect("put");
        let layer = |blob, from_base| WrittenLayer {
            blob,
            diff_id: "sha256:x".into(),
            tar_bytes: 4,
            from_base,
        };
        manifest::assemble(
            store,
            b"{}".to_vec(),
            vec![layer(base, true), layer(ours, false)],
            None,
        )
        .expect("assemble")
    }

    fn names(tar: &[u8]) -> Vec<String> {
        tar::Archive::new(tar)
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn loaded_images_are_listed_once_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(loaded_images(dir.path()).is_empty());
        record_loaded(dir.path(), "sha256:a").expect("record");
        record_loaded(dir.path(), "sha256:b").expect("record");
        record_loaded(dir.path(), "sha256:a").expect("record");
        assert_eq!(loaded_images(dir.path()), ["sha256:a", "sha256:b"]);
    }

    #[test]
    fn the_archive_leaves_out_what_the_engine_has_and_names_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let written = image(&store);
        let image = Loadable::written(&written);
        assert_eq!(image.image_id, written.image_id());
        let mut all = Vec::new();
        write_archive(&image, &["app:1".into()], false, &mut all).expect("write");
        let mut lean = Vec::new();
        write_archive(&image, &["app:1".into()], true, &mut lean).expect("write");
        assert_eq!(names(&all).len(), 4, "{:?}", names(&all));
        let lean_names = names(&lean);
        assert_eq!(lean_names.len(), 3, "{lean_names:?}");
        assert!(!lean_names.contains(&archive_path(&written.layers[0].blob.digest)));
        assert_eq!(skipped_bytes(&image, true), 4);
        assert_eq!(skipped_bytes(&image, false), 0);
    }

    #[test]
    fn an_archive_after_its_start_entry_is_still_one_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let image = Loadable::written(&image(&store));
        let mut archive = archive_start().to_vec();
        assert_eq!(archive.len(), 512, "one header, no data");
        write_archive(&image, &["app:1".into()], false, &mut archive).expect("write");
        let mut names = names(&archive);
        assert_eq!(names.remove(0), "blobs/");
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(names.contains(&"manifest.json".to_string()), "{names:?}");
    }

    #[test]
    fn a_plain_tar_layer_goes_whole_under_its_own_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tar_path = dir.path().join("layer.tar");
        std::fs::write(&tar_path, b"plain tar bytes").expect("write");
        let image = Loadable::new(
            b"{}".to_vec(),
            vec![LoadLayer {
                digest: "sha256:abc".into(),
                path: tar_path,
                size: 15,
                from_base: false,
            }],
        );
        let mut archive = Vec::new();
        write_archive(&image, &[], false, &mut archive).expect("write");
        let mut entries = tar::Archive::new(archive.as_slice());
        let mut found = std::collections::BTreeMap::new();
        for entry in entries.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read");
            found.insert(name, bytes);
        }
        assert_eq!(found["blobs/sha256/abc"], b"plain tar bytes");
        let manifest: serde_json::Value =
            serde_json::from_slice(&found["manifest.json"]).expect("json");
        assert_eq!(manifest[0]["Layers"][0], "blobs/sha256/abc");
        assert_eq!(
            manifest[0]["Config"],
            archive_path(&image.image_id),
            "the config under its digest"
        );
        assert_eq!(found[&archive_path(&image.image_id)], b"{}");
    }
}
