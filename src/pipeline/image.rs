//! The runtime image, written by dockception: the base from the blob store (exported from
//! the engine once, then kept by diff id), one layer of our own (the artifacts, or what the
//! runtime steps changed), the config and the manifest. Our layer's plain tar is loaded into
//! the engine (which tags the image in the same call) while its gzip, which only the manifest
//! digest, the report's sizes, a push and an output need, finishes beside the load; the image
//! is measured from what was written. Nothing is left untagged on the engine: a load either
//! takes or does not, and one cut short (a failed gzip stops it) tags nothing.

use std::collections::HashMap;
use std::path::Path;

use futures_util::StreamExt;

use crate::artifacts::collect::{Artifact, Collected};
use crate::artifacts::pid1;
use crate::artifacts::run_dir::RunDir;
use crate::deliver;
use crate::deliver::push::RegistrySettings;
use crate::engine::{Engine, ImageFacts, PendingLoad};
use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::image::base::{self, BaseImage};
use crate::image::blobs::BlobStore;
use crate::image::config::{self, AddedLayer, Platform};
use crate::image::context::ContextSpec;
use crate::image::{changes, layer, manifest, WrittenImage, WrittenLayer};
use crate::plan::{Plan, RuntimePlan, LABEL};
use crate::progress::Progress;
use crate::report::measure::{self, LayerScan, MeasureContext, RulePlan, SavedImage};
use crate::report::Delivery;

/// A base image as the store keeps it, with its layers' listings for the report.
pub(crate) struct Base {
    pub(crate) image: BaseImage,
    pub(crate) scans: Vec<LayerScan>,
}

/// The blob store of `plan`'s project: shared by its targets, so a base is kept once.
pub(crate) fn blob_store(plan: &Plan) -> BlobStore {
    BlobStore::at(&plan.blobs_dir)
}

/// The base `base` (whose engine id is `facts.id`) from the store, else exported from the
/// engine into the store (once: later builds find it there). A base that names a registry
/// comes from [`registry_base`] instead, with no engine.
pub(crate) async fn base_image(
    engine: &Engine,
    store: &BlobStore,
    base: &str,
    facts: &ImageFacts,
    progress: &Progress,
) -> Result<Base> {
    if let Some(found) = cached_base(store, &facts.id) {
        return Ok(found);
    }
    progress.phase(&format!(
        "keeping the layers of the base {base} in {} (once)",
        store.root().display()
    ));
    let exported_store = store.clone();
    let name = base.to_string();
    let stored = engine
        .read_exported_image(base, move |reader| {
            let mut scanning = Vec::new();
            let stored = base::store_export(reader, &exported_store, &name, || {
                let (copy, chunks) = layer::copy_channel();
                scanning.push(std::thread::spawn(move || {
                    measure::scan_layer_listing(chunks)
                }));
                Some(copy)
            });
            let scans: Vec<_> = scanning.into_iter().map(|s| s.join()).collect();
            (stored, scans)
        })
        .await?;
    let (stored, scans) = stored;
    let image = stored?;
    let mut by_diff_id = HashMap::new();
    for scan in scans {
        match scan {
            Ok(Ok(scan)) => {
                by_diff_id.insert(scan.diff_id.clone(), scan);
            }
            Ok(Err(e)) => return Err(measure_error(base, e.to_string())),
            Err(_) => return Err(measure_error(base, "the scan thread panicked".into())),
        }
    }
    let scans = image
        .layers
        .iter()
        .map(|l| {
            by_diff_id
                .get(&l.diff_id)
                .cloned()
                .ok_or_else(|| measure_error(base, format!("layer {} was not read", l.diff_id)))
        })
        .collect::<Result<Vec<_>>>()?;
    let path = scans_path(store, &image.image_id);
    let bytes = serde_json::to_vec(&scans).map_err(|e| measure_error(base, e.to_string()))?;
    crate::fsutil::write_atomic(&path, &bytes).map_err(|e| Error::io("writing", &path, e))?;
    Ok(Base { image, scans })
}

/// The base `base` (which names its registry) as the registry names it now, with no engine:
/// kept in the store by the manifest digest its reference names (so a build whose base is
/// kept pulls nothing: one `HEAD`, or nothing for a `@sha256:` reference), its layers' listings
/// read from the stored blobs once. Also gives the manifest digest, which the fingerprint
/// takes: a tag that moves names another manifest, so the image is built again.
pub(crate) async fn registry_base(
    store: &BlobStore,
    base: &str,
    registry: &RegistrySettings,
    progress: &Progress,
) -> Result<(Base, String)> {
    let taken = take_from_registry(store, base, registry, progress).await?;
    let listed = match cached_base(store, &taken.image.image_id) {
        Some(found) => found,
        None => list_pulled(store, base, taken.image).await?,
    };
    Ok((listed, taken.manifest_digest))
}

/// What the up-to-date check knows a base that names a registry by: its image id and the
/// digest of the manifest its reference names now (the base is pulled when the store lacks
/// it; its listings are not read).
pub(crate) async fn registry_base_id(
    store: &BlobStore,
    base: &str,
    registry: &RegistrySettings,
    progress: &Progress,
) -> Result<String> {
    let taken = take_from_registry(store, base, registry, progress).await?;
    Ok(format!(
        "{} from {}",
        taken.image.image_id, taken.manifest_digest
    ))
}

async fn take_from_registry(
    store: &BlobStore,
    base: &str,
    registry: &RegistrySettings,
    progress: &Progress,
) -> Result<deliver::push::RegistryBase> {
    Ok(
        deliver::push::base_from_registry(base, store, registry, || {
            progress.phase(&format!(
                "taking the layers of the base {base} from its registry"
            ))
        })
        .await?,
    )
}

/// The facts the engine would give about `base`, read from its config and listings.
pub(crate) fn facts_of(base: &Base) -> ImageFacts {
    let config: serde_json::Value =
        serde_json::from_str(&base.image.config).unwrap_or(serde_json::Value::Null);
    let strings = |value: &serde_json::Value| -> Option<Vec<String>> {
        value.as_array().map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
    };
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("").to_string();
    let run = &config["config"];
    ImageFacts {
        id: base.image.image_id.clone(),
        size: base
            .scans
            .iter()
            .flat_map(|scan| &scan.entries)
            .map(|entry| entry.size)
            .sum(),
        config: crate::engine::BaseConfig {
            entrypoint: strings(&run["Entrypoint"]),
            cmd: strings(&run["Cmd"]),
            user: run["User"].as_str().map(String::from),
        },
        architecture: text(&config["architecture"]),
        os: text(&config["os"]),
    }
}

/// The listings of a base pulled from a registry, read from its blobs in the store, and kept.
async fn list_pulled(store: &BlobStore, base: &str, image: BaseImage) -> Result<Base> {
    let paths: Vec<_> = image
        .layers
        .iter()
        .map(|l| store.path(&l.blob.digest))
        .collect();
    let listed = tokio::task::spawn_blocking(move || {
        paths
            .iter()
            .map(|path| {
                let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
                measure::scan_layer_listing(flate2::read::GzDecoder::new(file))
                    .map_err(|e| e.to_string())
            })
            .collect::<std::result::Result<Vec<_>, String>>()
    })
    .await
    .map_err(|e| measure_error(base, e.to_string()))?
    .map_err(|e| measure_error(base, e))?;
    let path = scans_path(store, &image.image_id);
    let bytes = serde_json::to_vec(&listed).map_err(|e| measure_error(base, e.to_string()))?;
    crate::fsutil::write_atomic(&path, &bytes).map_err(|e| Error::io("writing", &path, e))?;
    Ok(Base {
        image,
        scans: listed,
    })
}

fn cached_base(store: &BlobStore, image_id: &str) -> Option<Base> {
    let image = base::cached(store, image_id)?;
    let bytes = std::fs::read(scans_path(store, image_id)).ok()?;
    let scans: Vec<LayerScan> = serde_json::from_slice(&bytes).ok()?;
    (scans.len() == image.layers.len()).then_some(Base { image, scans })
}

fn scans_path(store: &BlobStore, image_id: &str) -> std::path::PathBuf {
    store.root().join("bases").join(format!(
        "{}.listing.json",
        image_id.trim_start_matches("sha256:")
    ))
}

fn measure_error(image: &str, message: String) -> Error {
    Error::Report(crate::report::Error::Measure {
        image: image.to_string(),
        message,
    })
}

/// Our layer of the image: its tar written and listed, its gzip done or still running.
pub(crate) struct OurLayer {
    /// `sha256:<hex>` of the uncompressed tar.
    pub(crate) diff_id: String,
    tar_bytes: u64,
    /// What `docker load` takes of it: the plain tar while the gzip runs, else the blob.
    load_file: deliver::load::LoadLayer,
    /// Keeps the plain tar until this is dropped.
    tar: Option<layer::LayerTar>,
    gzip: Gzip,
}

enum Gzip {
    Running(layer::PendingGzip),
    Done(crate::image::Descriptor),
}

impl OurLayer {
    fn spooled(spooled: layer::SpooledLayer) -> OurLayer {
        OurLayer {
            load_file: deliver::load::LoadLayer {
                digest: spooled.diff_id.clone(),
                path: spooled.tar.path().to_path_buf(),
                size: spooled.tar_bytes,
                from_base: false,
            },
            diff_id: spooled.diff_id,
            tar_bytes: spooled.tar_bytes,
            tar: Some(spooled.tar),
            gzip: Gzip::Running(spooled.gzip),
        }
    }

    fn written(layer: WrittenLayer, store: &BlobStore) -> OurLayer {
        OurLayer {
            load_file: deliver::load::LoadLayer {
                digest: layer.blob.digest.clone(),
                path: store.path(&layer.blob.digest),
                size: layer.blob.size,
                from_base: false,
            },
            diff_id: layer.diff_id,
            tar_bytes: layer.tar_bytes,
            tar: None,
            gzip: Gzip::Done(layer.blob),
        }
    }

    /// What holds the plain tar: keep it until the load is over.
    pub(crate) fn take_tar(&mut self) -> Option<layer::LayerTar> {
        self.tar.take()
    }

    /// The layer, once its gzip is in the store.
    async fn finished(self) -> Result<WrittenLayer> {
        let blob = match self.gzip {
            Gzip::Done(blob) => blob,
            Gzip::Running(gzip) => gzip.finished().await.map_err(crate::image::Error::Layer)?,
        };
        Ok(layer::layer(self.diff_id, self.tar_bytes, blob))
    }
}

/// Write the layer of `spec`'s files into `store`, listing it for the report as it is written.
/// Its gzip goes on after this returns.
pub(crate) async fn write_files_layer(
    spec: ContextSpec,
    store: &BlobStore,
) -> Result<(OurLayer, LayerScan)> {
    let store = store.clone();
    let written = tokio::task::spawn_blocking(move || {
        let (copy, chunks) = layer::copy_channel();
        let scanning = std::thread::spawn(move || measure::scan_layer_listing(chunks));
        let written = layer::write_files(&spec, &store, Some(copy));
        (written, scanning.join())
    })
    .await;
    let (written, scan) =
        written.map_err(|e| Error::Image(crate::image::Error::Layer(std::io::Error::other(e))))?;
    let written = written.map_err(crate::image::Error::Layer)?;
    Ok((OurLayer::spooled(written), finish_scan(scan)?))
}

fn finish_scan(
    scan: std::thread::Result<std::result::Result<LayerScan, crate::report::scan::MeasureError>>,
) -> Result<LayerScan> {
    match scan {
        Ok(Ok(scan)) => Ok(scan),
        Ok(Err(e)) => Err(measure_error("the runtime image", e.to_string())),
        Err(_) => Err(measure_error(
            "the runtime image",
            "the scan thread panicked".into(),
        )),
    }
}

/// The folder the init binary is staged in, inside the artifacts mount.
const INIT_STAGE: &str = ".dockception-init";

/// Run `runtime.steps` in a container of the base with the artifacts mounted read-only, and
/// write what they changed as our layer: the image holds what the steps installed, in one
/// layer, and never the artifacts themselves. Each step runs as its own `sh -c`, in order,
/// and the first that fails stops the build.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_steps_layer(
    engine: &Engine,
    plan: &Plan,
    runtime: &RuntimePlan,
    base_user: Option<&str>,
    init: Option<&pid1::Init>,
    collected: &Collected,
    store: &BlobStore,
    progress: &Progress,
) -> Result<(OurLayer, LayerScan)> {
    let stage = RunDir::create(&plan.out_dir)?;
    let root = stage.output();
    for artifact in &collected.artifacts {
        stage_artifact(&root, artifact)?;
    }
    let mut script = steps_script(&runtime.steps);
    if let Some(binary) = init.and_then(|i| i.binary.as_ref()) {
        let staged = root.join(INIT_STAGE).join("tini");
        write_file(&staged, binary)?;
        script.push_str(&format!(
            "cp {mount}/{INIT_STAGE}/tini {path} && chmod 0755 {path}\n",
            mount = runtime.artifacts_mount,
            path = pid1::COPIED_PATH
        ));
    }
    let staging = RunDir::create(&plan.out_dir)?;
    let staging_dir = staging.output();
    std::fs::create_dir_all(&staging_dir).map_err(|e| Error::io("creating", &staging_dir, e))?;
    let mount = runtime.artifacts_mount.clone();
    let epoch = super::up_to_date::context_epoch();
    let layer_store = store.clone();
    let written = engine
        .run_steps_and_read(
            &runtime.base,
            base_user,
            &script,
            &root,
            &runtime.artifacts_mount,
            &plan.project,
            progress,
            move |list, export| {
                let set = changes::change_set(&list, &mount);
                let (copy, chunks) = layer::copy_channel();
                let scanning = std::thread::spawn(move || measure::scan_layer_listing(chunks));
                let written = changes::write_changes(
                    export,
                    &set,
                    &staging_dir,
                    epoch,
                    &layer_store,
                    Some(copy),
                );
                (written, scanning.join())
            },
        )
        .await?;
    let written = written.map_err(|exit| Error::RuntimeStepFailed {
        code: exit.code,
        base: runtime.base.clone(),
        mount: runtime.artifacts_mount.clone(),
        tail: exit.tail,
    })?;
    drop(staging);
    let (written, scan) = written;
    let written = written.map_err(crate::image::Error::Layer)?;
    let mut scan = finish_scan(scan)?;
    scan.gzip_bytes = written.blob.size;
    Ok((OurLayer::written(written, store), scan))
}

/// The steps as one POSIX sh script that runs each with its own `sh -c` (as Dockerfile RUN
/// lines do: a `cd` or a variable does not carry over) and stops at the first that fails, with
/// its status.
pub(crate) fn steps_script(steps: &[String]) -> String {
    let mut script = String::new();
    for (n, step) in steps.iter().enumerate() {
        script.push_str(&format!(
            "sh -c {} || {{ status=$?; echo \"dockception: runtime step {} failed with exit status $status\" >&2; exit $status; }}\n",
            crate::engine::sh_word(step),
            n + 1
        ));
    }
    script
}

/// Hard-link (or copy, across file systems) an artifact into the staging folder at its path,
/// byte for byte (a name that is not UTF-8, or holds a newline, stays as it is).
fn stage_artifact(root: &Path, artifact: &Artifact) -> Result<()> {
    let target = root.join(&artifact.relative);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    if let Some(link) = &artifact.symlink_target {
        return std::os::unix::fs::symlink(link, &target)
            .map_err(|e| Error::io("staging the artifact", &target, e));
    }
    if std::fs::hard_link(&artifact.host_path, &target).is_err() {
        std::fs::copy(&artifact.host_path, &target)
            .map_err(|e| Error::io("staging the artifact", &target, e))?;
    }
    Ok(())
}

fn write_file(path: &Path, content: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    std::fs::write(path, content).map_err(|e| Error::io("writing", path, e))
}

/// The config of the image made of `base` (none for scratch) and our layer `diff_id`, made by
/// `created_by`: all an engine needs to load it.
pub(crate) fn write_config(
    runtime: &RuntimePlan,
    base: Option<&Base>,
    platform: Platform,
    diff_id: &str,
    created_by: String,
) -> Result<Vec<u8>> {
    let labels = [(LABEL.to_string(), "image".to_string())];
    let added = [AddedLayer {
        diff_id: diff_id.to_string(),
        created_by,
    }];
    Ok(config::write(&config::ConfigInput {
        base: base.map(|b| b.image.config.as_bytes()),
        base_name: &runtime.base,
        platform,
        runtime,
        labels: &labels,
        layers: &added,
        epoch: super::up_to_date::context_epoch(),
    })?)
}

/// The image as `docker load` takes it: `config`, the base's blobs and our layer's file.
pub(crate) fn loadable(
    config: &[u8],
    base: Option<&Base>,
    store: &BlobStore,
    ours: &OurLayer,
) -> deliver::load::Loadable {
    let mut layers: Vec<_> = base
        .map(|b| {
            b.image
                .layers
                .iter()
                .map(|l| deliver::load::LoadLayer {
                    digest: l.blob.digest.clone(),
                    path: store.path(&l.blob.digest),
                    size: l.blob.size,
                    from_base: l.from_base,
                })
                .collect()
        })
        .unwrap_or_default();
    layers.push(ours.load_file.clone());
    deliver::load::Loadable::new(config.to_vec(), layers)
}

/// The image written whole once our layer's gzip is done: `config` and the OCI manifest in
/// the store.
pub(crate) async fn seal(
    store: &BlobStore,
    runtime: &RuntimePlan,
    base: Option<&Base>,
    config: Vec<u8>,
    ours: OurLayer,
) -> Result<WrittenImage> {
    let mut layers: Vec<WrittenLayer> = base.map(|b| b.image.layers.clone()).unwrap_or_default();
    layers.push(ours.finished().await?);
    // A base from a registry: a push to the same registry mounts its layers from there.
    let base_ref =
        Some(runtime.base.clone()).filter(|r| base.is_some() && crate::manifest::names_registry(r));
    let store = store.clone();
    // Two small files, each synced to disk: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        manifest::assemble(&store, config, layers, base_ref)
            .map_err(|e| Error::io("writing the image into", store.root(), e))
    })
    .await
    .map_err(|e| Error::Image(crate::image::Error::Layer(std::io::Error::other(e))))?
}

/// The image's measurement, from what was written: its config, the base's listings and ours.
pub(crate) fn measure_written(
    written: &WrittenImage,
    plan: &Plan,
    base: Option<&Base>,
    ours: LayerScan,
) -> Result<measure::Measurement> {
    let config: measure::ImageConfig = serde_json::from_slice(&written.config)
        .map_err(|e| measure_error(written.image_id(), e.to_string()))?;
    let mut layers: Vec<LayerScan> = Vec::new();
    if let Some(base) = base {
        for (scan, blob) in base.scans.iter().zip(&base.image.layers) {
            let mut scan = scan.clone();
            scan.gzip_bytes = blob.blob.size;
            layers.push(scan);
        }
    }
    layers.push(ours);
    let base_history_len = base
        .and_then(|b| serde_json::from_str::<measure::ImageConfig>(&b.image.config).ok())
        .map_or(0, |c| c.history.len());
    let context = MeasureContext {
        base_layers: base
            .map(|b| b.image.layers.iter().map(|l| l.diff_id.clone()).collect())
            .unwrap_or_default(),
        base_history_len,
        rules: Some(RulePlan {
            include: plan.artifacts.include.clone(),
            dest: plan.artifacts.dest.clone(),
        }),
    };
    Ok(measure::measure(&SavedImage { config, layers }, &context))
}

/// Load `image` into the engine as `tags` (only the layers it lacks when it has the base
/// and its load takes an archive without them: Podman's does not), through `pending` when the
/// build opened one. Gives the delivery and the loaded image's facts.
/// The tags' previous images stay, untagged, as after a `docker build`; `clean` removes them.
pub(crate) async fn load(
    engine: &Engine,
    image: deliver::load::Loadable,
    store: &BlobStore,
    tags: &[String],
    engine_has_base: bool,
    pending: Option<PendingLoad>,
) -> Result<(Delivery, ImageFacts)> {
    let engine_has_base = engine_has_base && engine.kind().await?.loads_without_present_layers();
    let image_id = image.image_id.clone();
    let skipped_bytes = deliver::load::skipped_bytes(&image, engine_has_base);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&sent);
    let archive =
        deliver::load::archive(image, tags.to_vec(), engine_has_base).inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                counter.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        });
    let facts = engine.load_archive(archive, &image_id, pending).await?;
    if let Some(out_base) = store.root().parent() {
        deliver::load::record_loaded(out_base, &image_id)
            .map_err(|e| Error::io("writing", out_base.join(deliver::load::LOADED_LIST), e))?;
    }
    let delivery = Delivery {
        to: "engine".into(),
        destination: engine_destination(tags),
        sent_bytes: sent.load(std::sync::atomic::Ordering::Relaxed),
        skipped_bytes,
    };
    Ok((delivery, facts))
}

fn engine_destination(tags: &[String]) -> String {
    if tags.is_empty() {
        "the engine (untagged)".into()
    } else {
        format!("the engine as {}", tags.join(", "))
    }
}

/// A warning when the runtime image would run as root: `[runtime] user` is unset and the base
/// sets no user (or a root one), or the manifest names root itself. `base_user` is the base
/// image's configured user (empty for `scratch`); `None` when it is unknown.
pub fn root_warning(runtime: &RuntimePlan, base_user: Option<&str>) -> Option<String> {
    let help = "set [runtime] user, e.g. user = \"65534:65534\" (nobody), unless it must be root";
    match (runtime.user.as_deref(), base_user) {
        (Some(user), _) if is_root(user) => Some(format!(
            "the runtime image runs as root ([runtime] user = {user:?}); {help}"
        )),
        (Some(_), _) => None,
        (None, Some(base)) if is_root(base) => Some(format!(
            "the runtime image runs as root: [runtime] user is not set and the base {} sets no other user; {help}",
            runtime.base
        )),
        (None, _) => None,
    }
}

/// Whether a Docker `USER` value means root: empty, `0`, `root`, with any group.
pub fn is_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or("").trim();
    name.is_empty() || name == "0" || name == "root"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(base: &str, user: Option<&str>) -> RuntimePlan {
        RuntimePlan {
            user: user.map(str::to_string),
            ..RuntimePlan::on(base)
        }
    }

    #[test]
    fn root_users_are_recognised() {
        for user in ["", "0", "root", "0:0", "root:wheel", " 0 "] {
            assert!(is_root(user), "{user:?}");
        }
        for user in ["65534:65534", "nobody", "1000", "app:0"] {
            assert!(!is_root(user), "{user:?}");
        }
    }

    #[test]
    fn a_warning_only_when_the_image_would_run_as_root() {
        let w = root_warning(&runtime("scratch", None), Some("")).expect("warns");
        assert!(
            w.contains("[runtime] user is not set and the base scratch"),
            "{w}"
        );
        assert!(w.contains("user = \"65534:65534\""), "{w}");
        assert!(root_warning(&runtime("scratch", Some("0:0")), Some("")).is_some());
        assert_eq!(
            root_warning(&runtime("scratch", Some("65534:65534")), Some("")),
            None
        );
        assert_eq!(
            root_warning(&runtime("app:base", None), Some("nobody")),
            None
        );
        assert_eq!(root_warning(&runtime("app:base", None), None), None);
    }
}
