//! The image stage: the runtime image as bytes dockception writes, the same bytes for the same
//! inputs. [`layer`] writes a deterministic layer tar (sorted entries, one mtime, uid/gid 0,
//! fixed modes) gzipped reproducibly into a content-addressed [`blobs::BlobStore`]; [`base`]
//! keeps a base image's config and layers there, by diff id, so a base is exported once;
//! [`config`] writes the image config (the base's first, then the manifest's runtime keys,
//! times from `SOURCE_DATE_EPOCH` or the epoch); [`manifest`] writes the OCI image manifest.
//! The result is a [`WrittenImage`]: plain values and files, which the deliver stage sends to an
//! engine, a registry or a file. [`context`] is the build context `dockception context` prints.

pub mod base;
pub mod blobs;
pub mod changes;
pub mod config;
pub mod context;
mod error;
pub mod layer;
pub mod manifest;

pub use error::{Error, Result};

use std::path::PathBuf;

/// OCI media types of what dockception writes.
pub mod media {
    /// An OCI image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An OCI image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// A gzipped OCI layer tar.
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// An OCI image index (an OCI layout's `index.json`).
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
}

/// What names a blob: its media type, digest and size (an OCI descriptor).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Descriptor {
    /// e.g. [`media::LAYER_GZIP`].
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:<hex>` of the blob's bytes.
    pub digest: String,
    /// The blob's size in bytes.
    pub size: u64,
}

/// One layer of a written image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenLayer {
    /// The gzipped blob, in the store.
    pub blob: Descriptor,
    /// `sha256:<hex>` of the uncompressed tar (the config's diff id).
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub tar_bytes: u64,
    /// Whether the layer is the base's (an engine that has the base has it too).
    pub from_base: bool,
}

/// The runtime image as dockception wrote it: its config and manifest bytes, and its layers,
/// whose blobs (and the config's and manifest's) are files in `blobs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenImage {
    /// The image config's bytes, exactly as written (its sha256 is the image id).
    pub config: Vec<u8>,
    /// The config's descriptor.
    pub config_blob: Descriptor,
    /// The OCI image manifest's bytes.
    pub manifest: Vec<u8>,
    /// The manifest's descriptor (its digest is the image's digest).
    pub manifest_blob: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<WrittenLayer>,
    /// The store holding every blob named above.
    pub blobs: PathBuf,
    /// Where the base came from, when its layers can be mounted from a registry repository.
    pub base_ref: Option<String>,
}

impl WrittenImage {
    /// The image id an engine gives it: the config's digest.
    pub fn image_id(&self) -> &str {
        &self.config_blob.digest
    }

    /// The manifest digest, what a registry names the image by.
    pub fn digest(&self) -> &str {
        &self.manifest_blob.digest
    }

    /// The file in the store that holds the blob `digest`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        blobs::BlobStore::at(&self.blobs).path(digest)
    }
}
