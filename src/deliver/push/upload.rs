//! The push itself: per repository, each blob once (skipped when the registry has it, mounted
//! from the base's repository when the base is on the same registry, else streamed from the
//! store in one PUT), then our manifest bytes under each tag, last, and checked.

use futures_util::TryStreamExt;
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};

use crate::image::{media, Descriptor, WrittenImage};
use crate::progress::Progress;
use crate::units::human;

use super::connect::{connect, Registry};
use super::{check_tags, parse_reference, Error, Pushed, RegistrySettings, Result, Target};

/// How many bytes are read from a blob file at a time.
const CHUNK: usize = 256 * 1024;

const ACTION: &str = "pushing to";

/// Push `image` under every tag of `tags` (each naming its registry, see [`check_tags`]).
/// Returns what happened per tag, in order. On an error, the tags pushed before it are named
/// in the error; the failed one has no tag on its registry.
pub async fn push(
    image: &WrittenImage,
    tags: &[String],
    settings: &RegistrySettings,
    progress: &Progress,
) -> Result<Vec<Pushed>> {
    let targets = check_tags(tags)?;
    let mut pushed: Vec<Pushed> = Vec::new();
    // A second tag in the same repository finds every blob there already.
    for target in &targets {
        match push_tag(image, target, settings, progress).await {
            Ok(one) => {
                progress.phase(&format!(
                    "pushed {} ({} uploaded, {} already there, {} mounted)",
                    one.tag,
                    human(one.uploaded_bytes),
                    human(one.present_bytes),
                    human(one.mounted_bytes)
                ));
                pushed.push(one);
            }
            Err(e) => return Err(with_pushed(e, &pushed)),
        }
    }
    Ok(pushed)
}

/// `e`, saying which tags were pushed before it.
fn with_pushed(e: Error, pushed: &[Pushed]) -> Error {
    match e {
        Error::Registry {
            action,
            registry,
            repository,
            message,
            help,
        } if !pushed.is_empty() => {
            let tags: Vec<&str> = pushed.iter().map(|p| p.tag.as_str()).collect();
            Error::Registry {
                action,
                registry,
                repository,
                message: format!(
                    "{message} (pushed before this failure: {})",
                    tags.join(", ")
                ),
                help,
            }
        }
        other => other,
    }
}

/// Push `image` as `target`.
async fn push_tag(
    image: &WrittenImage,
    target: &Target,
    settings: &RegistrySettings,
    progress: &Progress,
) -> Result<Pushed> {
    let reference = target.reference();
    progress.phase(&format!("pushing {}", target.tag));
    let registry = connect(&reference, settings, RegistryOperation::Push).await?;
    let mut result = Pushed {
        tag: target.tag.clone(),
        registry: target.registry.clone(),
        repository: target.repository.clone(),
        digest: image.digest().to_string(),
        uploaded_bytes: 0,
        present_bytes: 0,
        mounted_bytes: 0,
    };
    let mount_from = mount_source(image, target);
    let mut blobs: Vec<(&Descriptor, bool)> = Vec::new();
    for layer in &image.layers {
        if blobs.iter().all(|(b, _)| b.digest != layer.blob.digest) {
            blobs.push((&layer.blob, layer.from_base));
        }
    }
    blobs.push((&image.config_blob, false));
    for (blob, from_base) in blobs {
        let failed = |e| registry.error(ACTION, &reference, e);
        if registry
            .client
            .blob_exists(&reference, &blob.digest)
            .await
            .map_err(failed)?
        {
            result.present_bytes += blob.size;
            continue;
        }
        if let (true, Some(source)) = (from_base, &mount_from) {
            if mount(&registry, &reference, source, &blob.digest).await {
                result.mounted_bytes += blob.size;
                continue;
            }
        }
        upload(&registry, &reference, image, blob)
            .await
            .map_err(failed)?;
        result.uploaded_bytes += blob.size;
    }
    registry
        .client
        .push_manifest_raw(
            &reference,
            image.manifest.clone(),
            http::HeaderValue::from_static(media::MANIFEST),
        )
        .await
        .map_err(|e| registry.error(ACTION, &reference, e))?;
    let named = registry
        .client
        .fetch_manifest_digest(&reference, &registry.auth)
        .await
        .map_err(|e| registry.error(ACTION, &reference, e))?;
    if named != image.digest() {
        return Err(Error::Registry {
            action: ACTION,
            registry: target.registry.clone(),
            repository: target.repository.clone(),
            message: format!(
                "after the push the tag {} names {named}, not the manifest written, {}",
                target.tag_name,
                image.digest()
            ),
            help: "another push to the same tag may have raced this one; push again".into(),
        });
    }
    Ok(result)
}

/// The repository base layers can be mounted from: the base's, when it is on the target's
/// registry and is another repository.
fn mount_source(image: &WrittenImage, target: &Target) -> Option<Reference> {
    let base = image.base_ref.as_deref()?;
    let (base, reference) = parse_reference(base).ok()?;
    (base.registry == target.registry && base.repository != target.repository).then_some(reference)
}

/// Mount `digest` from `source` into `reference`'s repository; false when the registry would
/// not (then it is uploaded).
async fn mount(
    registry: &Registry,
    reference: &Reference,
    source: &Reference,
    digest: &str,
) -> bool {
    match registry.client.mount_blob(reference, source, digest).await {
        Ok(()) => true,
        // A registry that cannot mount answers 202 and opens an upload instead; the blob is
        // then sent as any other.
        Err(_) => false,
    }
}

/// Stream `blob` from the store to the registry in one PUT.
async fn upload(
    registry: &Registry,
    reference: &Reference,
    image: &WrittenImage,
    blob: &Descriptor,
) -> std::result::Result<(), OciDistributionError> {
    let path = image.blob_path(&blob.digest);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        OciDistributionError::IoError(std::io::Error::new(
            e.kind(),
            format!("reading the blob {}: {e}; build again", path.display()),
        ))
    })?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, CHUNK)
        .map_err(OciDistributionError::IoError);
    registry
        .client
        .push_blob_stream(reference, stream, &blob.digest, Some(blob.size))
        .await?;
    Ok(())
}
