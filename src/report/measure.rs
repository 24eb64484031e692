//! Measure an image from its `docker save` export, read once as a stream: the manifest, the
//! config and every layer tar. Each layer is hashed (its diff id), gzipped into a byte counter
//! (what a registry would store) and listed entry by entry while it flows past; nothing but the
//! file list is kept in memory.
//!
//! [`scan`] reads the archive; [`measure`] turns what it read into the report's numbers: layers
//! and their roles, sizes, artifacts per rule, the largest files, the final file listing and the
//! waste (through [`crate::report::waste`]). Both are pure functions over plain values.
//!
//! Two layouts are understood: the legacy one dockerd 20.10 writes (`<id>/layer.tar`,
//! `<config>.json`, `manifest.json`) and the OCI one of newer engines (`blobs/sha256/<hex>`,
//! layers recognised by their tar header, gzip-compressed ones decompressed on the way).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::report::waste::{self, Waste};

/// JSON files in an export larger than this are not configs or manifests; they are skipped.
const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// How many of the largest files a report lists.
pub const LARGEST_FILES: usize = 10;

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// One layer tar as read from the export.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        if path == "layer.tar" || path.ends_with("/layer.tar") {
            let layer = scan_layer(&mut entry).map_err(|e| in_layer(&path, e))?;
            layers.insert(path, layer);
        } else if path.starts_with("blobs/") {
            let mut head = Vec::with_capacity(512);
            (&mut entry).take(512).read_to_end(&mut head)?;
            let rest = io::Cursor::new(head.clone()).chain(&mut entry);
            if is_tar(&head) {
                let layer = scan_layer(rest).map_err(|e| in_layer(&path, e))?;
                layers.insert(path, layer);
            } else if head.starts_with(&[0x1f, 0x8b]) {
                let layer = scan_layer(GzDecoder::new(rest)).map_err(|e| in_layer(&path, e))?;
                layers.insert(path, layer);
            } else if head.first() == Some(&b'{') && size <= MAX_JSON_BYTES {
                let mut text = Vec::new();
                { rest }.read_to_end(&mut text)?;
                jsons.insert(path, text);
            }
        } else if path.ends_with(".json") && !path.contains('/') && size <= MAX_JSON_BYTES {
            let mut text = Vec::new();
            entry.read_to_end(&mut text)?;
            jsons.insert(path, text);
        }
    }
    assemble(jsons, layers)
}

/// The image made of `diff_ids`, bottom first, when every one of them is among `known`
/// (layers scanned on their way to the engine): no export is needed to measure it. The
/// engine's history does not say which steps made a layer, so it is used only when it has one
/// step per layer; `None` otherwise, or when a layer is unknown.
pub fn assemble_known(
    diff_ids: &[String],
    history: Vec<HistoryItem>,
    known: &[LayerScan],
) -> Option<SavedImage> {
    if history.len() != diff_ids.len() {
        return None;
    }
    let layers = diff_ids
        .iter()
        .map(|id| known.iter().find(|scan| &scan.diff_id == id).cloned())
        .collect::<Option<Vec<LayerScan>>>()?;
    Some(SavedImage {
        config: ImageConfig {
            rootfs: RootFs {
                diff_ids: diff_ids.to_vec(),
            },
            history: history
                .into_iter()
                .map(|step| HistoryItem {
                    empty_layer: false,
                    ..step
                })
                .collect(),
            created: None,
        },
        layers,
    })
}

/// `manifest.json` names the config and the layers; find them among what was read.
fn assemble(
    jsons: HashMap<String, Vec<u8>>,
    mut layers: HashMap<String, LayerScan>,
) -> Result<SavedImage, MeasureError> {
    #[derive(Deserialize)]
    struct ManifestItem {
        #[serde(rename = "Config")]
        config: String,
        #[serde(rename = "Layers", default)]
        layers: Vec<String>,
    }
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
    let mut ordered = Vec::with_capacity(item.layers.len());
    let mut uses: HashMap<String, usize> = HashMap::new();
    for path in &item.layers {
        *uses.entry(clean_archive_path(path)).or_default() += 1;
    }
    for path in item.layers {
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
    Ok(SavedImage {
        config,
        layers: ordered,
    })
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

/// An archive path as an absolute image path: `./usr/bin/` -> `/usr/bin`, `./` -> `/`.
fn image_path(path: &str) -> String {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Everything read from the layer passes through here: hashed, gzipped, counted.
struct Tee<R> {
    inner: R,
    hasher: Sha256,
    gzip: BackgroundGzip,
    bytes: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.gzip.write(&buf[..n])?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// How many bytes go to the gzip thread at a time, and how many batches may wait for it: the
/// memory a scan holds for compression stays under 1 MiB whatever the layer's size.
const GZIP_BATCH: usize = 64 * 1024;
const GZIP_BATCHES_IN_FLIGHT: usize = 16;

/// Gzips on its own thread and counts the compressed bytes. Compressing is the slowest part
/// of a scan (several times slower than hashing), so it overlaps with reading the export,
/// hashing and listing instead of adding to them.
struct BackgroundGzip {
    pending: Vec<u8>,
    batches: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<io::Result<u64>>>,
}

impl BackgroundGzip {
    fn start() -> io::Result<BackgroundGzip> {
        let (batches, received) = std::sync::mpsc::sync_channel::<Vec<u8>>(GZIP_BATCHES_IN_FLIGHT);
        let worker = std::thread::Builder::new()
            .name("gzip-size".into())
            .spawn(move || {
                let mut gzip = GzEncoder::new(Counter::default(), Compression::default());
                for batch in received {
                    gzip.write_all(&batch)?;
                }
                Ok(gzip.finish()?.0)
            })?;
        Ok(BackgroundGzip {
            pending: Vec::with_capacity(GZIP_BATCH),
            batches: Some(batches),
            worker: Some(worker),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= GZIP_BATCH {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(GZIP_BATCH));
        let sent = self.batches.as_ref().map(|b| b.send(batch));
        match sent {
            Some(Ok(())) => Ok(()),
            // The worker stopped early: only an error of its own makes it do that.
            _ => Err(self.join().err().unwrap_or_else(|| {
                io::Error::other("the gzip thread stopped before the layer ended")
            })),
        }
    }

    /// The gzipped size of everything written.
    fn finish(mut self) -> io::Result<u64> {
        if !self.pending.is_empty() {
            self.send()?;
        }
        self.join()
    }

    fn join(&mut self) -> io::Result<u64> {
        self.batches = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the gzip thread panicked")),
            None => Err(io::Error::other("the gzip thread already ended")),
        }
    }
}

/// A writer that only counts.
#[derive(Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn padded(size: u64) -> u64 {
    size.div_ceil(512) * 512
}

/// Read one layer tar: list its entries, whiteouts and opaque folders; hash and gzip it.
pub fn scan_layer(reader: impl Read) -> Result<LayerScan, MeasureError> {
    let tee = Tee {
        inner: reader,
        hasher: Sha256::new(),
        gzip: BackgroundGzip::start()?,
        bytes: 0,
    };
    let mut archive = tar::Archive::new(tee);
    let mut entries = Vec::new();
    let mut whiteouts = Vec::new();
    let mut opaque_dirs = Vec::new();
    let mut previous_end = 0u64;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let data_start = entry.raw_file_position();
        let data_end = data_start + padded(entry.header().entry_size()?);
        let tar_bytes = data_end.saturating_sub(previous_end);
        previous_end = data_end;
        let path = image_path(&entry.path()?.to_string_lossy());
        let (parent, name) = match path.rsplit_once('/') {
            Some(("", name)) => ("/", name),
            Some((parent, name)) => (parent, name),
            None => ("/", path.as_str()),
        };
        if name == ".wh..wh..opq" {
            opaque_dirs.push(parent.to_string());
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            whiteouts.push(join(parent, hidden));
            continue;
        }
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => FileKind::File,
            tar::EntryType::Directory => FileKind::Dir,
            tar::EntryType::Symlink => FileKind::Symlink,
            tar::EntryType::Link => FileKind::Hardlink,
            _ => FileKind::Other,
        };
        let mode = header.mode().unwrap_or(0) & 0o7777;
        let link = match kind {
            FileKind::Symlink => entry.link_name()?.map(|l| l.to_string_lossy().into_owned()),
            FileKind::Hardlink => entry.link_name()?.map(|l| image_path(&l.to_string_lossy())),
            _ => None,
        };
        let (size, sha256) = if kind == FileKind::File {
            let mut hasher = HashWriter(Sha256::new());
            let size = io::copy(&mut entry, &mut hasher)?;
            (size, Some(hex(&hasher.0.finalize())))
        } else {
            (0, None)
        };
        entries.push(LayerEntry {
            path,
            kind,
            size,
            mode,
            sha256,
            link,
            tar_bytes,
        });
    }
    // The end-of-archive blocks and any padding belong to the layer tar too.
    let mut tee = archive.into_inner();
    io::copy(&mut tee, &mut io::sink())?;
    let gzip_bytes = tee.gzip.finish()?;
    Ok(LayerScan {
        diff_id: format!("sha256:{}", hex(&tee.hasher.finalize())),
        tar_bytes: tee.bytes,
        gzip_bytes,
        entries,
        whiteouts,
        opaque_dirs,
    })
}

fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// What a layer is for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A layer (or metadata step) of the runtime base image.
    Base,
    /// The layer the artifacts were copied into (a `COPY` or `ADD` step).
    Artifacts,
    /// A step that changed only metadata (ENV, ENTRYPOINT, USER, LABEL...); it has no layer.
    Metadata,
    /// Any other layer, e.g. a `RUN` step of an image dockception did not build.
    Other,
}

impl Role {
    /// The lowercase name used in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            Role::Base => "base",
            Role::Artifacts => "artifacts",
            Role::Metadata => "metadata",
            Role::Other => "other",
        }
    }
}

/// Byte counts of something stored in an image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sizes {
    /// Bytes of file content (regular files).
    pub content_bytes: u64,
    /// Bytes of the uncompressed layer tars (headers, padding and content).
    pub tar_bytes: u64,
    /// Bytes of the layer tars gzipped at the default level: an estimate of what a registry
    /// stores.
    pub gzip_bytes: u64,
}

/// One step of the image's history, with its layer when it made one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Layer {
    /// Position in the history, bottom (0) first.
    pub index: usize,
    /// What the layer is for.
    pub role: Role,
    /// The step that made it, as the engine records it (may be empty for imported images).
    pub created_by: String,
    /// `sha256:<hex>` of the layer tar; absent for metadata steps.
    pub diff_id: Option<String>,
    /// Entries (files, folders, links) the layer adds or replaces.
    pub files: u64,
    /// Content, tar and gzip bytes of the layer (all 0 for metadata steps).
    #[serde(flatten)]
    pub sizes: Sizes,
}

/// One path of the image's final file system (folders are left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileEntry {
    /// Absolute path in the image.
    pub path: String,
    /// What it is.
    pub kind: FileKind,
    /// Content bytes (0 for links and other non-regular files).
    pub size: u64,
    /// Permission bits in octal, e.g. `0755`.
    pub mode: String,
    /// SHA-256 of the content (regular files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The target of a link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// A path and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileSize {
    /// Absolute path in the image.
    pub path: String,
    /// Content bytes.
    pub bytes: u64,
}

/// One shipped file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactSize {
    /// Its path in the image.
    pub path: String,
    /// Its content bytes (0 for a symlink).
    pub bytes: u64,
    /// The include glob that selected it, when the manifest is known.
    #[serde(default)]
    pub rule: Option<String>,
}

/// What one artifact rule (an include glob) shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleSize {
    /// The include glob, as written in the manifest.
    pub include: String,
    /// How many files it shipped.
    pub files: u64,
    /// Their content bytes.
    pub content_bytes: u64,
    /// The bytes their entries take in the layer tar.
    pub tar_bytes: u64,
}

/// What the measurement knows beyond the export itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeasureContext {
    /// The runtime base's layers (diff ids, bottom first); empty for `scratch` or unknown.
    pub base_layers: Vec<String>,
    /// How many history steps the base has (its metadata steps count as base too).
    pub base_history_len: usize,
    /// The artifact rules (include globs) and where they land, when the manifest is known.
    pub rules: Option<RulePlan>,
}

/// The artifact rules of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlan {
    /// Include globs, relative to the output folder, in manifest order.
    pub include: Vec<String>,
    /// The image folder artifacts land in (`/` or `/app`).
    pub dest: String,
}

/// Everything measured about an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Totals over all layers.
    pub sizes: Sizes,
    /// The history with the layers, bottom first.
    pub layers: Vec<Layer>,
    /// Files of the artifacts layer(s).
    pub artifacts: Vec<ArtifactSize>,
    /// Per include glob, when the rules are known.
    pub rules: Vec<RuleSize>,
    /// The largest files of the final file system, largest first.
    pub largest_files: Vec<FileSize>,
    /// The final file system without folders, sorted by path.
    pub files: Vec<FileEntry>,
    /// Bytes stored more than once.
    pub waste: Waste,
}

/// Turn a scanned export into the report's numbers.
pub fn measure(saved: &SavedImage, context: &MeasureContext) -> Measurement {
    let layers = history_rows(saved, context);
    let mut sizes = Sizes::default();
    for layer in &layers {
        sizes.content_bytes += layer.sizes.content_bytes;
        sizes.tar_bytes += layer.sizes.tar_bytes;
        sizes.gzip_bytes += layer.sizes.gzip_bytes;
    }

    // Which scanned layers hold artifacts: match rows to scans by position.
    let artifact_layers: Vec<&LayerScan> = layers
        .iter()
        .filter(|l| l.diff_id.is_some())
        .zip(&saved.layers)
        .filter(|(row, _)| row.role == Role::Artifacts)
        .map(|(_, scan)| scan)
        .collect();
    let (artifacts, rules) = artifacts_and_rules(&artifact_layers, context.rules.as_ref());

    let merged = waste::merge(&saved.layers);
    let files: Vec<FileEntry> = merged
        .files
        .iter()
        .filter(|(_, f)| f.kind != FileKind::Dir)
        .map(|(path, f)| FileEntry {
            path: path.clone(),
            kind: f.kind,
            size: f.size,
            mode: format!("{:04o}", f.mode),
            sha256: f.sha256.clone(),
            link: f.link.clone(),
        })
        .collect();
    let mut largest: Vec<FileSize> = files
        .iter()
        .filter(|f| f.kind == FileKind::File)
        .map(|f| FileSize {
            path: f.path.clone(),
            bytes: f.size,
        })
        .collect();
    largest.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    largest.truncate(LARGEST_FILES);
    Measurement {
        sizes,
        layers,
        artifacts,
        rules,
        largest_files: largest,
        files,
        waste: waste::waste(&merged),
    }
}

/// One row per history step; a step that made a layer takes the next diff id. When the history
/// does not account for the layers (some importers write none), one row per layer.
fn history_rows(saved: &SavedImage, context: &MeasureContext) -> Vec<Layer> {
    let history = &saved.config.history;
    let made_layers = history.iter().filter(|h| !h.empty_layer).count();
    let fallback;
    let steps: &[HistoryItem] = if made_layers == saved.layers.len() {
        history
    } else {
        fallback = vec![HistoryItem::default(); saved.layers.len()];
        &fallback
    };
    let mut scans = saved.layers.iter().enumerate();
    let mut rows = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        let created_by = step
            .created_by
            .clone()
            .filter(|c| !c.is_empty())
            .or_else(|| step.comment.clone())
            .unwrap_or_default();
        if step.empty_layer {
            let role = if index < context.base_history_len {
                Role::Base
            } else {
                Role::Metadata
            };
            rows.push(Layer {
                index,
                role,
                created_by,
                diff_id: None,
                files: 0,
                sizes: Sizes::default(),
            });
            continue;
        }
        let Some((position, scan)) = scans.next() else {
            break;
        };
        let role = if context.base_layers.get(position) == Some(&scan.diff_id) {
            Role::Base
        } else if is_copy(&created_by) || (context.rules.is_some() && is_import(&created_by)) {
            Role::Artifacts
        } else {
            Role::Other
        };
        rows.push(Layer {
            index,
            role,
            created_by,
            diff_id: Some(scan.diff_id.clone()),
            files: scan.entries.len() as u64,
            sizes: Sizes {
                content_bytes: scan.entries.iter().map(|e| e.size).sum(),
                tar_bytes: scan.tar_bytes,
                gzip_bytes: scan.gzip_bytes,
            },
        });
    }
    rows
}

/// An image dockception imported onto scratch has its artifacts in the one imported layer.
fn is_import(created_by: &str) -> bool {
    created_by.starts_with("Imported from")
}

/// The classic builder records `COPY`/`ADD` as `/bin/sh -c #(nop) COPY dir:… in / `; BuildKit
/// as `COPY rootfs/ / # buildkit`.
fn is_copy(created_by: &str) -> bool {
    let step = created_by
        .trim_start_matches("/bin/sh -c ")
        .trim_start_matches("#(nop)")
        .trim_start();
    step.starts_with("COPY ") || step.starts_with("ADD ")
}

fn artifacts_and_rules(
    layers: &[&LayerScan],
    rules: Option<&RulePlan>,
) -> (Vec<ArtifactSize>, Vec<RuleSize>) {
    let globs: Vec<(String, Option<globset::GlobMatcher>)> = rules
        .map(|r| {
            r.include
                .iter()
                .map(|g| {
                    let matcher = crate::manifest::glob::compile_glob(g)
                        .ok()
                        .map(|glob| glob.compile_matcher());
                    (g.clone(), matcher)
                })
                .collect()
        })
        .unwrap_or_default();
    let dest = rules
        .map(|r| r.dest.trim_matches('/').to_string())
        .unwrap_or_default();
    let mut per_rule: Vec<RuleSize> = globs
        .iter()
        .map(|(g, _)| RuleSize {
            include: g.clone(),
            files: 0,
            content_bytes: 0,
            tar_bytes: 0,
        })
        .collect();
    let mut artifacts = BTreeMap::new();
    for layer in layers {
        for entry in &layer.entries {
            if !matches!(entry.kind, FileKind::File | FileKind::Symlink) {
                continue;
            }
            let relative = entry.path.trim_start_matches('/');
            let relative = if dest.is_empty() {
                Some(relative)
            } else {
                relative
                    .strip_prefix(dest.as_str())
                    .and_then(|r| r.strip_prefix('/'))
            };
            let rule = relative.and_then(|rel| {
                globs
                    .iter()
                    .position(|(_, m)| m.as_ref().is_some_and(|m| self_or_ancestor(m, rel)))
            });
            if let Some(i) = rule {
                per_rule[i].files += 1;
                per_rule[i].content_bytes += entry.size;
                per_rule[i].tar_bytes += entry.tar_bytes;
            }
            artifacts.insert(
                entry.path.clone(),
                ArtifactSize {
                    path: entry.path.clone(),
                    bytes: entry.size,
                    rule: rule.map(|i| globs[i].0.clone()),
                },
            );
        }
    }
    (artifacts.into_values().collect(), per_rule)
}

/// The artifact rule semantics of `collect`: a file is selected when it or a folder above it
/// matches.
fn self_or_ancestor(matcher: &globset::GlobMatcher, relative: &str) -> bool {
    let mut path = relative;
    loop {
        if matcher.is_match(path) {
            return true;
        }
        match path.rsplit_once('/') {
            Some((parent, _)) => path = parent,
            None => return false,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file, folder, symlink or whiteout to put in a test layer.
    pub(crate) enum Item<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
    }

    /// A layer tar, as the engine writes one.
    pub(crate) fn layer_tar(items: &[Item]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_gnu();
            match item {
                Item::File(path, content, mode) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(content.len() as u64);
                    header.set_mode(*mode);
                    builder
                        .append_data(&mut header, path, *content)
                        .expect("append");
                }
                Item::Dir(path) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    builder
                        .append_data(&mut header, path, io::empty())
                        .expect("append");
                }
                Item::Symlink(path, target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    header.set_mode(0o777);
                    builder
                        .append_link(&mut header, path, target)
                        .expect("append");
                }
                Item::Hardlink(path, target) => {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    header.set_mode(0o755);
                    builder
                        .append_link(&mut header, path, target)
                        .expect("append");
                }
            }
        }
        builder.into_inner().expect("tar")
    }

    pub(crate) fn sha(bytes: &[u8]) -> String {
        format!("sha256:{}", hex(&Sha256::digest(bytes)))
    }

    /// A legacy `docker save` archive of `layers` (bottom first) with `history`
    /// (`(created_by, empty_layer)`), its entries in the engine's order: layer folders (by
    /// name), the config, then `manifest.json`.
    pub(crate) fn save_tar(layers: &[Vec<u8>], history: &[(&str, bool)]) -> Vec<u8> {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history.iter().map(|(by, empty)| {
                let mut h = serde_json::json!({"created_by": by});
                if *empty { h["empty_layer"] = serde_json::json!(true); }
                h
            }).collect::<Vec<_>>(),
        });
        let config = serde_json::to_vec(&config).expect("json");
        let config_name = format!("{}.json", &sha(&config)["sha256:".len()..]);
        // Folder names as the engine makes them: unrelated to the order of the layers.
        let mut folders: Vec<(String, &Vec<u8>)> = layers
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("{:x}{}", 15 - i, &sha(l)[8..20]), l))
            .collect();
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": ["test:1"],
            "Layers": folders.iter().map(|(f, _)| format!("{f}/layer.tar")).collect::<Vec<_>>(),
        }]);
        folders.sort();
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, path, data)
                .expect("append");
        };
        for (folder, layer) in &folders {
            add(&format!("{folder}/VERSION"), b"1.0");
            add(&format!("{folder}/json"), b"{}");
            add(&format!("{folder}/layer.tar"), layer);
        }
        add(&config_name, &config);
        add(
            "manifest.json",
            &serde_json::to_vec(&manifest).expect("json"),
        );
        add("repositories", b"{}");
        builder.into_inner().expect("tar")
    }

    fn gzip_size(bytes: &[u8]) -> u64 {
        let mut gz = GzEncoder::new(Counter::default(), Compression::default());
        gz.write_all(bytes).expect("gzip");
        gz.finish().expect("gzip").0
    }

    #[test]
    fn a_layer_is_listed_hashed_and_gzipped() {
        let tar = layer_tar(&[
            Item::Dir("./"),
            Item::Dir("./bin/"),
            Item::File("./bin/app", &[7u8; 1000], 0o755),
            Item::Symlink("./bin/sh", "app"),
            Item::Hardlink("./bin/app2", "./bin/app"),
            Item::File("./etc/.wh.old", b"", 0o600),
            Item::File("./var/.wh..wh..opq", b"", 0o600),
        ]);
        let layer = scan_layer(&tar[..]).expect("scan");
        assert_eq!(layer.diff_id, sha(&tar));
        assert_eq!(layer.tar_bytes, tar.len() as u64);
        assert_eq!(layer.gzip_bytes, gzip_size(&tar));
        assert_eq!(layer.whiteouts, ["/etc/old"]);
        assert_eq!(layer.opaque_dirs, ["/var"]);
        let paths: Vec<_> = layer.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/", "/bin", "/bin/app", "/bin/sh", "/bin/app2"]);
        let app = &layer.entries[2];
        assert_eq!(
            (app.kind, app.size, app.mode),
            (FileKind::File, 1000, 0o755)
        );
        assert_eq!(app.sha256.as_deref(), Some(&sha(&[7u8; 1000])[7..]));
        assert_eq!(app.tar_bytes, 512 + 1024);
        assert_eq!(layer.entries[3].link.as_deref(), Some("app"));
        assert_eq!(layer.entries[4].kind, FileKind::Hardlink);
        assert_eq!(layer.entries[4].link.as_deref(), Some("/bin/app"));
        let listed: u64 = layer.entries.iter().map(|e| e.tar_bytes).sum();
        assert!(listed < layer.tar_bytes, "the end blocks are the rest");
    }

    #[test]
    fn an_image_of_known_layers_needs_no_export() {
        let tar = layer_tar(&[Item::Dir("./"), Item::File("./app", b"binary", 0o755)]);
        let layer = scan_layer(&tar[..]).expect("scan");
        let step = HistoryItem {
            created_by: Some(String::new()),
            comment: Some("Imported from -".into()),
            empty_layer: false,
        };
        let known = assemble_known(
            std::slice::from_ref(&layer.diff_id),
            vec![step.clone()],
            std::slice::from_ref(&layer),
        )
        .expect("every layer is known");
        assert_eq!(known.layers, std::slice::from_ref(&layer));
        assert_eq!(
            known.config.rootfs.diff_ids,
            std::slice::from_ref(&layer.diff_id)
        );
        assert_eq!(known.config.history, std::slice::from_ref(&step));
        // The same layers as an export of that image would give.
        let saved = scan(&save_tar(&[tar], &[("", false)])[..]).expect("scan the export");
        assert_eq!(saved.layers, known.layers);

        let other = "sha256:0000".to_string();
        assert_eq!(
            assemble_known(&[other], vec![step.clone()], std::slice::from_ref(&layer)),
            None,
            "a layer that was not scanned needs the export"
        );
        assert_eq!(
            assemble_known(
                std::slice::from_ref(&layer.diff_id),
                vec![step.clone(), step],
                std::slice::from_ref(&layer)
            ),
            None,
            "a history that does not say which steps made layers needs the export"
        );
    }

    #[test]
    fn long_names_are_read_and_counted() {
        let long = format!("./{}/file", "d".repeat(150));
        let tar = layer_tar(&[Item::File(&long, b"x", 0o644)]);
        let layer = scan_layer(&tar[..]).expect("scan");
        assert_eq!(layer.entries[0].path, format!("/{}/file", "d".repeat(150)));
        // GNU long name: its own header and a padded name block, then the real header and data.
        assert_eq!(layer.entries[0].tar_bytes, 512 + 512 + 512 + 512);
    }

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
        assert_eq!(m.layers[1].role, Role::Artifacts);
        assert_eq!(m.waste.reclaimable_bytes, 5, "the same file copied twice");
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

    fn rules(include: &[&str], dest: &str) -> MeasureContext {
        MeasureContext {
            rules: Some(RulePlan {
                include: include.iter().map(|s| s.to_string()).collect(),
                dest: dest.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn roles_sizes_and_rules_of_a_dockception_image() {
        let base = layer_tar(&[
            Item::File("bin/busybox", &[1u8; 3000], 0o755),
            Item::Symlink("bin/sh", "busybox"),
        ]);
        let app = layer_tar(&[
            Item::Dir("app/"),
            Item::File("app/server", &[2u8; 2000], 0o755),
            Item::Dir("app/static/"),
            Item::File("app/static/index.html", &[3u8; 100], 0o644),
            Item::File("app/static/logo.png", &[4u8; 300], 0o644),
        ]);
        let tar = save_tar(
            &[base.clone(), app.clone()],
            &[
                ("", false),
                ("/bin/sh -c #(nop)  CMD [\"sh\"]", true),
                ("/bin/sh -c #(nop) COPY dir:abc in / ", false),
                ("/bin/sh -c #(nop)  USER 65534", true),
            ],
        );
        let saved = scan(&tar[..]).expect("scan");
        let mut context = rules(&["server", "static", "missing"], "/app");
        context.base_layers = vec![sha(&base)];
        context.base_history_len = 2;
        let m = measure(&saved, &context);
        let roles: Vec<_> = m.layers.iter().map(|l| l.role).collect();
        assert_eq!(
            roles,
            [Role::Base, Role::Base, Role::Artifacts, Role::Metadata]
        );
        assert_eq!(m.layers[2].sizes.content_bytes, 2400);
        assert_eq!(m.layers[2].sizes.tar_bytes, app.len() as u64);
        assert_eq!(m.sizes.content_bytes, 5400);
        assert_eq!(m.sizes.tar_bytes, (base.len() + app.len()) as u64);
        assert_eq!(m.sizes.gzip_bytes, gzip_size(&base) + gzip_size(&app));
        assert_eq!(m.layers[3].diff_id, None);
        assert_eq!(
            m.rules,
            [
                RuleSize {
                    include: "server".into(),
                    files: 1,
                    content_bytes: 2000,
                    tar_bytes: 512 + 2048
                },
                RuleSize {
                    include: "static".into(),
                    files: 2,
                    content_bytes: 400,
                    tar_bytes: 512 * 2 + 512 + 512
                },
                RuleSize {
                    include: "missing".into(),
                    files: 0,
                    content_bytes: 0,
                    tar_bytes: 0
                },
            ]
        );
        assert_eq!(m.artifacts.len(), 3);
        assert_eq!(m.artifacts[0].path, "/app/server");
        assert_eq!(m.artifacts[0].rule.as_deref(), Some("server"));
        assert_eq!(
            m.largest_files[0],
            FileSize {
                path: "/bin/busybox".into(),
                bytes: 3000
            }
        );
        assert_eq!(m.files.len(), 5, "folders are left out: {:?}", m.files);
        assert_eq!(m.files[0].path, "/app/server");
        assert_eq!(m.files[0].mode, "0755");
        assert_eq!(m.waste.total_bytes, 0);
    }

    #[test]
    fn without_a_usable_history_each_layer_is_a_row() {
        let a = layer_tar(&[Item::File("a", b"a", 0o644)]);
        let tar = save_tar(&[a], &[]);
        let m = measure(&scan(&tar[..]).expect("scan"), &MeasureContext::default());
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].role, Role::Other);
    }

    #[test]
    fn copy_steps_are_recognised_in_both_builders() {
        assert!(is_copy("/bin/sh -c #(nop) COPY dir:0a1b in / "));
        assert!(is_copy("COPY rootfs/ / # buildkit"));
        assert!(is_copy("/bin/sh -c #(nop) ADD file:1 in /"));
        assert!(!is_copy("/bin/sh -c cp /a /b"));
        assert!(!is_copy("/bin/sh -c #(nop)  ENV COPY=1"));
    }
}
