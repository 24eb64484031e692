//! Content-addressed reuse: a bounded store of earlier builds' outputs, keyed by the
//! fingerprint of their inputs, so a rebuild whose inputs equal any earlier build's (switching
//! back to a branch, undoing an edit) runs no builder, as BuildKit's cache does.
//!
//! Each entry is `<out_dir>/reuse/<fingerprint>/`: `output/`, the builder's whole output folder
//! (hard links to the run's files where the file system allows, else copies); `entry.json`:
//! every path of that output with its size and SHA-256, the build's report, and the descriptors
//! of the image it wrote (whose blobs the project's blob store holds by digest); and
//! `meta.json`, its size and when it was last used, all that listing and eviction read. Before an entry
//! is reused, every file is hashed again and the folder must hold exactly the recorded paths:
//! an output changed or deleted in the store is never reused (the entry goes, the build runs).
//!
//! The store is bounded by `builder.reuse_limit` (bytes of the outputs, counted as if copied);
//! past it, the entries used longest ago go first.

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::image::{Descriptor, WrittenImage, WrittenLayer};
use crate::plan::Plan;
use crate::report::Report;

/// The store's folder inside a target's output folder.
pub(crate) const REUSE_DIR: &str = "reuse";
const ENTRY_FILE: &str = "entry.json";
/// What listing and eviction read, small and rewritten on every use.
const META_FILE: &str = "meta.json";
const OUTPUT_DIR: &str = "output";
const STAGING_PREFIX: &str = "staging-";
/// Bumped when an entry's meaning changes; an older entry is not reused.
const ENTRY_VERSION: u32 = 1;

/// What is known of a kept build without reading it whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Meta {
    version: u32,
    /// The fingerprint of the build's inputs, hex: the entry's name.
    pub(crate) fingerprint: String,
    /// The image it wrote.
    pub(crate) image_id: String,
    /// When it was stored and last used, in nanoseconds since the epoch.
    pub(crate) stored_at_ns: i64,
    pub(crate) used_at_ns: i64,
    /// Bytes of its output's files.
    pub(crate) bytes: u64,
}

/// One kept build, whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    version: u32,
    /// The fingerprint of the build's inputs, hex: the entry's name.
    pub(crate) fingerprint: String,
    /// Bytes of its output's files.
    pub(crate) bytes: u64,
    /// Every path of the output, parents before children.
    paths: Vec<StoredPath>,
    /// The build's report.
    pub(crate) report: Report,
    /// The init it reported.
    pub(crate) init: Option<String>,
    /// The image it wrote, when it was written by dockception.
    image: Option<ImageRecord>,
}

/// One path of a stored output, relative to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredPath {
    path: String,
    mode: u32,
    kind: StoredKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum StoredKind {
    Dir,
    File { size: u64, sha256: String },
    Symlink { target: PathBuf },
}

/// What names a written image's blobs in the blob store.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImageRecord {
    config: Descriptor,
    manifest: Descriptor,
    layers: Vec<WrittenLayer>,
    base_ref: Option<String>,
}

/// A run's output copied into the store, not yet an entry.
pub(crate) struct Staged {
    dir: PathBuf,
    paths: Vec<StoredPath>,
    bytes: u64,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What [`Store::lookup`] found for a fingerprint.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// No entry (or one of an older format).
    Missing,
    /// An entry whose output is no longer what was stored; it was removed.
    Changed(String),
    /// An entry whose output is intact.
    Found(Box<Entry>),
}

/// A target's store of earlier outputs.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    root: PathBuf,
    limit: u64,
}

impl Store {
    /// The store of `plan`'s target, bounded by its `builder.reuse_limit`.
    pub(crate) fn of(plan: &Plan) -> Store {
        Store::at(plan.out_dir.join(REUSE_DIR), plan.builder.reuse_limit)
    }

    /// The store in `root`, bounded by `limit` bytes.
    pub(crate) fn at(root: PathBuf, limit: u64) -> Store {
        Store { root, limit }
    }

    /// The store's folder.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the store keeps anything at all.
    pub(crate) fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// Link (or copy) the run output `output` into a staging folder of the store, hashing each
    /// file as it goes. Runs while the image is written; [`Store::commit`] makes it an entry.
    pub(crate) fn stage(&self, output: &Path) -> std::io::Result<Staged> {
        std::fs::create_dir_all(&self.root)?;
        let dir = self.root.join(format!(
            "{STAGING_PREFIX}{}-{}",
            std::process::id(),
            now_ns()
        ));
        std::fs::create_dir(&dir)?;
        let mut staged = Staged {
            dir,
            paths: Vec::new(),
            bytes: 0,
        };
        let into = staged.dir.join(OUTPUT_DIR);
        copy_tree(output, &into, "", &mut staged.paths, &mut staged.bytes)?;
        Ok(staged)
    }

    /// Make `staged` the entry of `fingerprint`, then evict the entries used longest ago until
    /// the store fits its limit. An output larger than the whole limit is not kept. Returns
    /// the fingerprints evicted.
    pub(crate) fn commit(
        &self,
        staged: Staged,
        fingerprint: &str,
        report: &Report,
        init: Option<&str>,
        image: Option<&WrittenImage>,
    ) -> std::io::Result<Vec<String>> {
        if staged.bytes > self.limit {
            return self.evict(None);
        }
        let now = now_ns();
        let entry = Entry {
            version: ENTRY_VERSION,
            fingerprint: fingerprint.to_string(),
            bytes: staged.bytes,
            paths: staged.paths.clone(),
            report: report.clone(),
            init: init.map(str::to_string),
            image: image.map(ImageRecord::of),
        };
        write_json(&staged.dir.join(ENTRY_FILE), &entry)?;
        let meta = Meta {
            version: ENTRY_VERSION,
            fingerprint: fingerprint.to_string(),
            image_id: report.image_id.clone(),
            stored_at_ns: now,
            used_at_ns: now,
            bytes: staged.bytes,
        };
        write_json(&staged.dir.join(META_FILE), &meta)?;
        let final_dir = self.root.join(fingerprint);
        if final_dir.exists() {
            // The same inputs built again (`--force`): the newer output replaces the older.
            std::fs::remove_dir_all(&final_dir)?;
        }
        std::fs::rename(&staged.dir, &final_dir)?;
        self.evict(Some(fingerprint))
    }

    /// The entry of `fingerprint`, checked against what was stored: each file hashed again,
    /// each folder and link in place, nothing added. A changed entry is removed.
    pub(crate) fn lookup(&self, fingerprint: &str) -> Lookup {
        if !self.enabled() || !is_fingerprint(fingerprint) {
            return Lookup::Missing;
        }
        let dir = self.root.join(fingerprint);
        let entry = read_json::<Entry>(&dir.join(ENTRY_FILE))
            .filter(|e| e.version == ENTRY_VERSION && e.fingerprint == fingerprint);
        let Some(entry) = entry else {
            return Lookup::Missing;
        };
        match verify(&dir.join(OUTPUT_DIR), &entry.paths) {
            Ok(()) => Lookup::Found(Box::new(entry)),
            Err(why) => {
                let _ = std::fs::remove_dir_all(&dir);
                Lookup::Changed(why)
            }
        }
    }

    /// Link (or copy) the output of `entry` into the empty folder `into`.
    pub(crate) fn restore(&self, entry: &Entry, into: &Path) -> std::io::Result<()> {
        let from = self.root.join(&entry.fingerprint).join(OUTPUT_DIR);
        for stored in &entry.paths {
            let (src, dst) = (from.join(&stored.path), into.join(&stored.path));
            match &stored.kind {
                StoredKind::Dir if stored.path.is_empty() => {}
                StoredKind::Dir => std::fs::create_dir(&dst)?,
                StoredKind::File { .. } => link_or_copy(&src, &dst)?,
                StoredKind::Symlink { target } => std::os::unix::fs::symlink(target, &dst)?,
            }
        }
        // Folder modes last: a read-only folder would refuse its own children.
        for stored in entry.paths.iter().rev() {
            if stored.kind == StoredKind::Dir {
                let dst = into.join(&stored.path);
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(stored.mode))?;
            }
        }
        Ok(())
    }

    /// Record that `entry` was just used, so eviction takes it last.
    pub(crate) fn touch(&self, entry: &Entry) -> std::io::Result<()> {
        let path = self.root.join(&entry.fingerprint).join(META_FILE);
        let mut meta = read_json::<Meta>(&path)
            .ok_or_else(|| std::io::Error::other(format!("{} cannot be read", path.display())))?;
        meta.used_at_ns = now_ns();
        write_json(&path, &meta)
    }

    /// The entries, used longest ago first. Staging folders of runs that are gone are removed.
    pub(crate) fn entries(&self) -> Vec<Meta> {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut entries = Vec::new();
        for item in dir.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(STAGING_PREFIX) {
                let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|pid| !crate::engine::owner::pid_alive(pid)) {
                    let _ = std::fs::remove_dir_all(item.path());
                }
                continue;
            }
            let meta = read_json::<Meta>(&item.path().join(META_FILE))
                .filter(|m| m.version == ENTRY_VERSION && m.fingerprint == name);
            if let Some(meta) = meta {
                entries.push(meta);
            }
        }
        entries.sort_by_key(|e| (e.used_at_ns, e.fingerprint.clone()));
        entries
    }

    /// Remove every entry (and the store's folder); returns how many there were and their
    /// bytes.
    pub(crate) fn remove_all(&self) -> std::io::Result<(usize, u64)> {
        let entries = self.entries();
        let bytes = entries.iter().map(|e| e.bytes).sum();
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok((entries.len(), bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, 0)),
            Err(e) => Err(e),
        }
    }

    /// Remove the entries used longest ago (never `keep`) until the rest fit the limit.
    fn evict(&self, keep: Option<&str>) -> std::io::Result<Vec<String>> {
        let entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut evicted = Vec::new();
        for entry in &entries {
            if total <= self.limit {
                break;
            }
            if Some(entry.fingerprint.as_str()) == keep {
                continue;
            }
            std::fs::remove_dir_all(self.root.join(&entry.fingerprint))?;
            total -= entry.bytes;
            evicted.push(entry.fingerprint.clone());
        }
        Ok(evicted)
    }
}

impl Entry {
    /// The image the build wrote, again from the blob store `blobs`, when every blob is still
    /// there: the config and the manifest checked by hash (they are small), the layers by size
    /// (an engine or registry checks their digests as it takes them).
    pub(crate) fn written_image(&self, blobs: &Path) -> Option<WrittenImage> {
        let record = self.image.as_ref()?;
        let store = crate::image::blobs::BlobStore::at(blobs);
        let read = |d: &Descriptor| {
            let bytes = std::fs::read(store.path(&d.digest)).ok()?;
            let digest = format!("sha256:{}", crate::fsutil::hex(&Sha256::digest(&bytes)));
            (digest == d.digest && bytes.len() as u64 == d.size).then_some(bytes)
        };
        let config = read(&record.config)?;
        let manifest = read(&record.manifest)?;
        for layer in &record.layers {
            let size = std::fs::metadata(store.path(&layer.blob.digest))
                .ok()?
                .len();
            if size != layer.blob.size {
                return None;
            }
        }
        Some(WrittenImage {
            config,
            config_blob: record.config.clone(),
            manifest,
            manifest_blob: record.manifest.clone(),
            layers: record.layers.clone(),
            blobs: blobs.to_path_buf(),
            base_ref: record.base_ref.clone(),
        })
    }
}

impl ImageRecord {
    fn of(written: &WrittenImage) -> ImageRecord {
        ImageRecord {
            config: written.config_blob.clone(),
            manifest: written.manifest_blob.clone(),
            layers: written.layers.clone(),
            base_ref: written.base_ref.clone(),
        }
    }
}

/// One line of `dockception cache ls`'s kept builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptBuild {
    /// The target it was built for.
    pub target: String,
    /// The fingerprint of its inputs, hex.
    pub fingerprint: String,
    /// The image it wrote.
    pub image_id: String,
    /// Bytes of its kept output.
    pub bytes: u64,
    /// When it was last built or reused, in nanoseconds since the epoch.
    pub used_at_ns: i64,
}

/// The kept builds of every target that runs a builder, each target's used longest ago first;
/// with each target's store folder and limit.
pub fn kept_builds(plans: &crate::plan::PlanSet) -> Vec<KeptBuild> {
    let mut rows = Vec::new();
    for plan in plans.targets.iter().filter(|p| p.artifacts_from.is_none()) {
        for entry in Store::of(plan).entries() {
            rows.push(KeptBuild {
                target: plan.target.clone(),
                fingerprint: entry.fingerprint,
                image_id: entry.image_id,
                bytes: entry.bytes,
                used_at_ns: entry.used_at_ns,
            });
        }
    }
    rows
}

/// Remove the kept builds of the targets `selector` names (a target's name, or none for every
/// target); a selector that names a cache volume removes none. Returns, per target that had
/// any, how many went and their bytes.
pub fn remove_kept_builds(
    plans: &crate::plan::PlanSet,
    selector: Option<&str>,
) -> crate::error::Result<Vec<(String, usize, u64)>> {
    use crate::fsutil::FromIo as _;
    let mut removed = Vec::new();
    for plan in plans.targets.iter().filter(|p| p.artifacts_from.is_none()) {
        if selector.is_some_and(|s| s != plan.target) {
            continue;
        }
        let store = Store::of(plan);
        let (count, bytes) = store
            .remove_all()
            .map_err(|e| crate::error::Error::io("removing the kept builds in", store.root(), e))?;
        if count > 0 {
            removed.push((plan.target.clone(), count, bytes));
        }
    }
    Ok(removed)
}

/// The table of kept builds `cache ls` prints (after the volumes', when there are any),
/// `now_ns` being the time it is printed.
pub fn kept_builds_text(rows: &[KeptBuild], now_ns: i64) -> String {
    let header = ["TARGET", "INPUTS", "IMAGE", "SIZE", "LAST USED"].map(String::from);
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let ago = now_ns.saturating_sub(r.used_at_ns).max(0) / 1_000_000_000;
            [
                r.target.clone(),
                r.fingerprint.chars().take(12).collect(),
                r.image_id
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect(),
                crate::units::human(r.bytes),
                ago_text(ago),
            ]
        })
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .chain(std::iter::once(&header))
            .map(|c| c[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..4).map(width).collect();
    let mut out = String::new();
    for c in std::iter::once(&header).chain(cells.iter()) {
        out.push_str(&format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}\n",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        ));
    }
    out
}

fn ago_text(secs: i64) -> String {
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// The current time in nanoseconds since the epoch, for [`kept_builds_text`].
pub fn now() -> i64 {
    now_ns()
}

/// Copy the tree at `from` to `to` (which must not exist), files as hard links where
/// possible, recording each path (relative `prefix`) and adding the files' bytes.
fn copy_tree(
    from: &Path,
    to: &Path,
    prefix: &str,
    paths: &mut Vec<StoredPath>,
    bytes: &mut u64,
) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    std::fs::create_dir(to)?;
    paths.push(StoredPath {
        path: prefix.to_string(),
        mode: meta.mode() & 0o7777,
        kind: StoredKind::Dir,
    });
    for (name, child) in sorted_children(from)? {
        let path = join(prefix, &name);
        let meta = std::fs::symlink_metadata(&child)?;
        let dst = to.join(&name);
        let kind = meta.file_type();
        if kind.is_dir() {
            copy_tree(&child, &dst, &path, paths, bytes)?;
            continue;
        }
        let stored = if kind.is_symlink() {
            let target = std::fs::read_link(&child)?;
            std::os::unix::fs::symlink(&target, &dst)?;
            StoredKind::Symlink { target }
        } else if kind.is_file() {
            link_or_copy(&child, &dst)?;
            *bytes += meta.len();
            StoredKind::File {
                size: meta.len(),
                sha256: hash_file(&dst)?,
            }
        } else {
            continue; // sockets and fifos: no artifact, nothing to keep
        };
        paths.push(StoredPath {
            path,
            mode: meta.mode() & 0o7777,
            kind: stored,
        });
    }
    let _ = std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777));
    Ok(())
}

/// Whether the tree at `root` holds exactly `paths`: the same kinds, links and modes, and
/// files of the same size and SHA-256. The reason when it does not.
fn verify(root: &Path, paths: &[StoredPath]) -> Result<(), String> {
    let mut found = Vec::new();
    list_tree(root, "", &mut found)
        .map_err(|e| format!("{} cannot be read: {e}", root.display()))?;
    let expected: Vec<&str> = paths.iter().map(|p| p.path.as_str()).collect();
    if let Some(extra) = found.iter().find(|p| !expected.contains(&p.as_str())) {
        return Err(format!("{extra} was added to the stored output"));
    }
    for stored in paths {
        let path = root.join(&stored.path);
        let shown = if stored.path.is_empty() {
            "the output folder"
        } else {
            &stored.path
        };
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("{shown} is gone from the stored output ({e})"))?;
        let same = match &stored.kind {
            StoredKind::Dir => meta.is_dir(),
            StoredKind::Symlink { target } => {
                meta.file_type().is_symlink()
                    && std::fs::read_link(&path).ok().as_ref() == Some(target)
            }
            StoredKind::File { size, sha256 } => {
                meta.is_file()
                    && meta.len() == *size
                    && (meta.mode() & 0o7777) == stored.mode
                    && hash_file(&path).ok().as_ref() == Some(sha256)
            }
        };
        if !same {
            return Err(format!("{shown} changed in the stored output"));
        }
    }
    Ok(())
}

fn list_tree(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    for (name, child) in sorted_children(dir)? {
        let path = join(prefix, &name);
        let is_dir = std::fs::symlink_metadata(&child)?.is_dir();
        out.push(path.clone());
        if is_dir {
            list_tree(&child, &path, out)?;
        }
    }
    Ok(())
}

fn sorted_children(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut children = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name().into_string().map_err(|name| {
            std::io::Error::other(format!("{name:?} is not UTF-8, so it cannot be kept"))
        })?;
        children.push((name, item.path()));
    }
    children.sort();
    Ok(children)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// A hard link where the file system allows one (same device, permitted), else a copy.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map(|_| ())
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(crate::fsutil::hex(&hasher.finalize()))
}

fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(path, &bytes)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A fingerprint is 64 lowercase hex digits; nothing else names an entry's folder.
fn is_fingerprint(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "reuse/tests.rs"]
mod tests;
