//! A base straight from its registry, into the blob store: the manifest (the host's platform,
//! else linux/amd64, from an index), the config, and each gzipped layer stored as it comes,
//! its diff id checked against the config's while it passes. A base the store has whole
//! (by image id) downloads no layer again. No engine is involved.
//!
//! [`base_from_registry`] is what a build calls: the store remembers which manifest digest gave
//! which base, so a build whose base is already kept asks the registry one `HEAD` (what does
//! the tag name now?) and pulls nothing; a reference pinned by digest asks nothing at all.

use std::io::Write;

use futures_util::StreamExt;
use oci_client::{Reference, RegistryOperation};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::fsutil::hex;
use crate::image::base::{self, BaseImage};
use crate::image::blobs::BlobStore;
use crate::image::{media, Descriptor, WrittenLayer};

use super::connect::{chain, connect, Registry};
use super::{parse_reference, Error, RegistrySettings, Result};

const ACTION: &str = "pulling";

/// The largest manifest or config read (they are small JSON; a bigger one is not an image).
const MAX_JSON: usize = 4 << 20;

const MANIFEST_TYPES: &[&str] = &[
    media::MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
    media::INDEX,
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

const GZIP_LAYERS: &[&str] = &[
    media::LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];

/// A base taken from its registry, and the digest of the manifest (or index) its reference
/// named when it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryBase {
    /// The base, kept in the store.
    pub image: BaseImage,
    /// `sha256:` of the manifest (or index) the reference named.
    pub manifest_digest: String,
    /// Whether its blobs were downloaded now (false: the store had them).
    pub pulled: bool,
}

/// The base `reference` as its registry names it now: from the store when the manifest digest
/// the reference names (asked with one `HEAD`, or read from a `@sha256:` reference without
/// asking) gave a base the store keeps whole, else pulled with [`pull_base`] (`before_pull` is
/// called first, to say so). A tag that moved gives another manifest digest, so the new base is
/// pulled.
pub async fn base_from_registry(
    reference: &str,
    store: &BlobStore,
    settings: &RegistrySettings,
    before_pull: impl FnOnce(),
) -> Result<RegistryBase> {
    let (_, image) = parse_reference(reference)?;
    let mut connected = None;
    let named = match image.digest() {
        Some(digest) => digest.to_string(),
        None => {
            let registry = connect(&image, settings, RegistryOperation::Pull).await?;
            let named = registry
                .client
                .fetch_manifest_digest(&image, &registry.auth)
                .await
                .map_err(|e| registry.error(ACTION, &image, e))?;
            connected = Some(registry);
            named
        }
    };
    if let Some(kept) = base::by_manifest(store, &named) {
        return Ok(RegistryBase {
            image: kept,
            manifest_digest: named,
            pulled: false,
        });
    }
    before_pull();
    let registry = match connected {
        Some(registry) => registry,
        None => connect(&image, settings, RegistryOperation::Pull).await?,
    };
    let (image, manifest_digest) = pull_from(&registry, &image, reference, store).await?;
    Ok(RegistryBase {
        image,
        manifest_digest,
        pulled: true,
    })
}

/// Pull the base `reference` (e.g. `registry.example.com/base/busybox:1.36`) into `store`: its
/// config and gzipped layers, by diff id, as `image::base::store_export` keeps an engine's export.
pub async fn pull_base(
    reference: &str,
    store: &BlobStore,
    settings: &RegistrySettings,
) -> Result<BaseImage> {
    let (_, image) = parse_reference(reference)?;
    let registry = connect(&image, settings, RegistryOperation::Pull).await?;
    pull_from(&registry, &image, reference, store)
        .await
        .map(|(base, _)| base)
}

/// [`pull_base`] from `registry`, also giving the digest of the manifest (or index)
/// `reference` (read as `image`) named, which the store then remembers for
/// [`base_from_registry`].
async fn pull_from(
    registry: &Registry,
    image: &Reference,
    reference: &str,
    store: &BlobStore,
) -> Result<(BaseImage, String)> {
    let image = image.clone();
    let unusable = |message: String, help: &str| Error::Base {
        reference: reference.to_string(),
        message,
        help: help.to_string(),
    };
    let (mut manifest, manifest_digest) = fetch_manifest(registry, &image).await?;
    let remember = |base: &BaseImage| {
        base::remember_manifest(store, &manifest_digest, &base.image_id)
            .map_err(|e| unusable(e.to_string(), "check the output folder"))
    };
    if manifest.get("manifests").is_some() {
        let digest = pick_platform(&manifest).ok_or_else(|| {
            unusable(
                format!(
                    "its index has no image for {} or linux/amd64 (it has {})",
                    host_platform(),
                    platforms(&manifest)
                ),
                "name a base built for this platform",
            )
        })?;
        manifest = fetch_manifest(registry, &image.clone_with_digest(digest))
            .await?
            .0;
    }
    let config_blob = descriptor(&manifest["config"])
        .ok_or_else(|| unusable("its manifest names no config".into(), "check the base"))?;
    let mut config = Vec::new();
    registry
        .client
        .pull_blob(&image, config_blob.digest.as_str(), &mut config)
        .await
        .map_err(|e| registry.error(ACTION, &image, e))?;
    if config.len() > MAX_JSON {
        return Err(unusable("its config is too large".into(), "check the base"));
    }
    let config = String::from_utf8(config)
        .map_err(|_| unusable("its config is not UTF-8".into(), "check the base"))?;
    let image_id = format!("sha256:{}", hex(&Sha256::digest(config.as_bytes())));
    if let Some(kept) = base::cached(store, &image_id) {
        remember(&kept)?;
        return Ok((kept, manifest_digest));
    }
    let parsed: Value = serde_json::from_str(&config)
        .map_err(|e| unusable(format!("its config is not JSON: {e}"), "check the base"))?;
    let diff_ids: Vec<String> = parsed["rootfs"]["diff_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let blobs: Vec<Descriptor> = manifest["layers"]
        .as_array()
        .map(|l| l.iter().filter_map(descriptor).collect())
        .unwrap_or_default();
    if blobs.len() != diff_ids.len() {
        return Err(unusable(
            format!(
                "its manifest has {} layers but its config names {} diff ids",
                blobs.len(),
                diff_ids.len()
            ),
            "check the base; it may be broken on the registry",
        ));
    }
    let mut layers = Vec::new();
    for (blob, diff_id) in blobs.into_iter().zip(diff_ids) {
        if !GZIP_LAYERS.contains(&blob.media_type.as_str()) {
            return Err(unusable(
                format!(
                    "a layer is {}, and dockception takes gzipped layers only",
                    blob.media_type
                ),
                "use a base whose layers are gzip (as `docker push` writes them)",
            ));
        }
        layers.push(pull_layer(registry, &image, store, blob, diff_id, reference).await?);
    }
    let base = BaseImage {
        image_id,
        config,
        layers,
    };
    base::keep(store, &base).map_err(|e| unusable(e.to_string(), "check the output folder"))?;
    remember(&base)?;
    Ok((base, manifest_digest))
}

/// The manifest `image` names, as JSON, and the digest of its bytes.
async fn fetch_manifest(registry: &Registry, image: &Reference) -> Result<(Value, String)> {
    let (bytes, _) = registry
        .client
        .pull_manifest_raw(image, &registry.auth, MANIFEST_TYPES)
        .await
        .map_err(|e| registry.error(ACTION, image, e))?;
    if bytes.len() > MAX_JSON {
        return Err(Error::Base {
            reference: image.whole(),
            message: "its manifest is too large".into(),
            help: "check the base".into(),
        });
    }
    let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
    let value = serde_json::from_slice(&bytes).map_err(|e| Error::Base {
        reference: image.whole(),
        message: format!("its manifest is not JSON: {e}"),
        help: "check the base".into(),
    })?;
    Ok((value, digest))
}

/// A descriptor from its JSON.
fn descriptor(value: &Value) -> Option<Descriptor> {
    Some(Descriptor {
        media_type: value["mediaType"].as_str()?.to_string(),
        digest: value["digest"].as_str()?.to_string(),
        size: value["size"].as_u64()?,
    })
}

/// The OCI name of the host's platform, e.g. `linux/amd64`.
fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

/// The platforms an index lists.
fn platforms(index: &Value) -> String {
    let names: Vec<String> = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or("?"),
                m["platform"]["architecture"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The manifest of an index for the host's platform, else for linux/amd64.
fn pick_platform(index: &Value) -> Option<String> {
    let entries = index["manifests"].as_array()?;
    let find = |platform: &str| {
        entries.iter().find_map(|m| {
            let name = format!(
                "{}/{}",
                m["platform"]["os"].as_str()?,
                m["platform"]["architecture"].as_str()?
            );
            (name == platform).then(|| m["digest"].as_str().map(String::from))?
        })
    };
    find(&host_platform()).or_else(|| find("linux/amd64"))
}

/// Hashes and counts the uncompressed tar as it is unpacked.
struct TarCount {
    hasher: Sha256,
    bytes: u64,
}

impl Write for TarCount {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stream one gzipped layer into the store, unpacking it beside to check its diff id.
async fn pull_layer(
    registry: &Registry,
    image: &Reference,
    store: &BlobStore,
    blob: Descriptor,
    diff_id: String,
    name: &str,
) -> Result<WrittenLayer> {
    let stored = |e: std::io::Error| Error::Base {
        reference: name.to_string(),
        message: format!("storing its layer {}: {e}", blob.digest),
        help: "check that the output folder is writable and has room".into(),
    };
    let mut stream = registry
        .client
        .pull_blob_stream(image, blob.digest.as_str())
        .await
        .map_err(|e| registry.error(ACTION, image, e))?;
    let mut writer = store.writer().map_err(stored)?;
    let mut tar = flate2::write::GzDecoder::new(TarCount {
        hasher: Sha256::new(),
        bytes: 0,
    });
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Registry {
            action: ACTION,
            registry: image.registry().to_string(),
            repository: image.repository().to_string(),
            message: format!("the layer {} stopped coming: {}", blob.digest, chain(&e)),
            help: "check that the registry runs and is reachable, then build again".into(),
        })?;
        writer.write_all(&chunk).map_err(stored)?;
        tar.write_all(&chunk).map_err(|e| Error::Base {
            reference: name.to_string(),
            message: format!("its layer {} is not gzip: {e}", blob.digest),
            help: "check the base; it may be broken on the registry".into(),
        })?;
    }
    let count = tar.finish().map_err(|e| Error::Base {
        reference: name.to_string(),
        message: format!("its layer {} is not whole gzip: {e}", blob.digest),
        help: "check the base; it may be broken on the registry".into(),
    })?;
    let found = format!("sha256:{}", hex(&count.hasher.finalize()));
    if found != diff_id {
        return Err(Error::Base {
            reference: name.to_string(),
            message: format!(
                "its layer {} unpacks to {found}, but its config names {diff_id}",
                blob.digest
            ),
            help: "check the base; it may be broken on the registry".into(),
        });
    }
    let kept = writer.finish(media::LAYER_GZIP).map_err(stored)?;
    if kept.digest != blob.digest || kept.size != blob.size {
        return Err(Error::Base {
            reference: name.to_string(),
            message: format!(
                "its layer {} ({} bytes) arrived as {} ({} bytes)",
                blob.digest, blob.size, kept.digest, kept.size
            ),
            help: "pull again; the registry or a proxy changed the bytes".into(),
        });
    }
    Ok(WrittenLayer {
        blob: kept,
        diff_id,
        tar_bytes: count.bytes,
        from_base: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_gives_the_hosts_platform_else_linux_amd64() {
        let index = serde_json::json!({"manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
        ]});
        let expected = if host_platform() == "linux/arm" {
            "sha256:arm"
        } else {
            "sha256:amd"
        };
        assert_eq!(pick_platform(&index).as_deref(), Some(expected));
        let none = serde_json::json!({"manifests": [
            {"digest": "sha256:w", "platform": {"os": "windows", "architecture": "amd64"}},
        ]});
        assert_eq!(pick_platform(&none), None);
        assert_eq!(platforms(&none), "windows/amd64");
    }
}
