//! The OCI image manifest of a written image, and the `manifest.json` that `docker load` reads
//! from a docker archive (Docker's own format, which every engine version loads).

use serde_json::json;

use super::blobs::BlobStore;
use super::{media, Descriptor, WrittenImage, WrittenLayer};

/// Put `config` and the OCI manifest naming it and `layers` into `store`: the image, written.
pub fn assemble(
    store: &BlobStore,
    config: Vec<u8>,
    layers: Vec<WrittenLayer>,
    base_ref: Option<String>,
) -> std::io::Result<WrittenImage> {
    let config_blob = store.put(media::CONFIG, &config)?;
    let manifest = oci_manifest(&config_blob, &layers);
    let manifest_blob = store.put(media::MANIFEST, &manifest)?;
    Ok(WrittenImage {
        config,
        config_blob,
        manifest,
        manifest_blob,
        layers,
        blobs: store.root().to_path_buf(),
        base_ref,
    })
}

/// The OCI image manifest's bytes (sorted keys, no whitespace: the same inputs, the same
/// digest).
pub fn oci_manifest(config: &Descriptor, layers: &[WrittenLayer]) -> Vec<u8> {
    let layers: Vec<&Descriptor> = layers.iter().map(|l| &l.blob).collect();
    json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": config,
        "layers": layers,
    })
    .to_string()
    .into_bytes()
}

/// The path of a blob inside an archive (the OCI layout's `blobs/sha256/<hex>`; a docker
/// archive may use the same names).
pub fn archive_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// A docker archive's `manifest.json` for `image` tagged `tags`: the config and every layer
/// by their archive paths.
pub fn docker_archive_manifest(image: &WrittenImage, tags: &[String]) -> Vec<u8> {
    let layers: Vec<String> = image
        .layers
        .iter()
        .map(|l| archive_path(&l.blob.digest))
        .collect();
    json!([{
        "Config": archive_path(image.image_id()),
        "RepoTags": tags,
        "Layers": layers,
    }])
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_names_the_config_and_layers_and_is_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let layer_blob = store.put(media::LAYER_GZIP, b"gz").expect("put");
        let layers = vec![WrittenLayer {
            blob: layer_blob.clone(),
            diff_id: "sha256:d".into(),
            tar_bytes: 10,
            from_base: false,
        }];
        let a = assemble(&store, b"{}".to_vec(), layers.clone(), None).expect("assemble");
        let b = assemble(&store, b"{}".to_vec(), layers, None).expect("assemble");
        assert_eq!(a.digest(), b.digest());
        assert_eq!(
            a.image_id(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).expect("json");
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["config"]["digest"], a.image_id());
        assert_eq!(m["layers"][0]["digest"], layer_blob.digest.as_str());
        assert_eq!(m["layers"][0]["mediaType"], media::LAYER_GZIP);
        assert!(store.has(a.digest(), a.manifest.len() as u64));
        let archive: serde_json::Value =
            serde_json::from_slice(&docker_archive_manifest(&a, &["app:1".into()])).expect("json");
        assert_eq!(archive[0]["RepoTags"][0], "app:1");
        assert_eq!(
            archive[0]["Config"],
            format!("blobs/sha256/{}", &a.image_id()[7..])
        );
    }
}
