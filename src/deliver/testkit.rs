//! Images for the tests of this stage (unit and integration), made with the image stage's own
//! writers: each layer a deterministic tar of the files given, gzipped into the store, a config
//! naming their diff ids, the OCI manifest. Not part of the API.

use std::io::{self, Write};
use std::path::Path;

pub use crate::image::base::BaseImage;
use crate::image::blobs::BlobStore;
use crate::image::layer::LayerWriter;
use crate::image::manifest;
pub use crate::image::{WrittenImage, WrittenLayer};

/// An image in the store at `store` with one layer per entry of `layers` (each a list of
/// `(path, content)` files), on no base.
pub fn image(store: &Path, layers: &[Vec<(&str, Vec<u8>)>]) -> io::Result<WrittenImage> {
    let store = BlobStore::at(store);
    let written = layers
        .iter()
        .map(|files| layer(&store, files))
        .collect::<io::Result<Vec<_>>>()?;
    image_of(&store, written, None)
}

/// An image of `layers` (already in `store`) with a config naming their diff ids; `base_ref`
/// as [`WrittenImage::base_ref`].
pub fn image_of(
    store: &BlobStore,
    layers: Vec<WrittenLayer>,
    base_ref: Option<String>,
) -> io::Result<WrittenImage> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/app"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes();
    manifest::assemble(store, config, layers, base_ref)
}

/// One layer of `files` in `store`.
pub fn layer(store: &BlobStore, files: &[(&str, Vec<u8>)]) -> io::Result<WrittenLayer> {
    let mut writer = LayerWriter::start(store, None)?;
    {
        let mut tar = tar::Builder::new(&mut writer);
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            header.set_mtime(0);
            tar.append_data(&mut header, path, data.as_slice())?;
        }
        tar.finish()?;
    }
    writer.flush()?;
    writer.finish()
}

/// The blob store at `root`.
pub fn store(root: &Path) -> BlobStore {
    BlobStore::at(root)
}

/// An image in the store at `store` on `base_layers` (marked as the base's), with one more
/// layer of `files`; `base_ref` names where the base came from.
pub fn image_on(
    store: &Path,
    base_layers: &[WrittenLayer],
    files: &[(&str, Vec<u8>)],
    base_ref: Option<String>,
) -> io::Result<WrittenImage> {
    let store = BlobStore::at(store);
    let mut layers: Vec<WrittenLayer> = base_layers
        .iter()
        .cloned()
        .map(|mut l| {
            l.from_base = true;
            l
        })
        .collect();
    layers.push(layer(&store, files)?);
    image_of(&store, layers, base_ref)
}
