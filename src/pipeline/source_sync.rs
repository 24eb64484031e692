//! Sources for an engine that cannot see this machine's files: each mount of a target is kept
//! in its own volume, and a build sends only what changed since that volume's last complete
//! sync, and deletes what was removed. What changed comes from the fingerprint scan (the same
//! files an up-to-date check looks at: `.gitignore`d and `.dockerignore`d files are not
//! synced) compared with a record of what the volume last received (`sync/VOLUME.json` in the
//! target's output folder).
//!
//! A record counts only when the volume's own marker file holds the record's token: every
//! sync first sets the marker to `syncing`, and the last entry of its upload sets a new token,
//! written to the record only after the engine took the whole upload. A sync that was
//! interrupted leaves `syncing` (or a token no record has), and the next build empties the
//! volume and sends everything. A mount the build may write to (`read_only = false`) is sent
//! whole every time, as the build may have changed the volume.
//!
//! Two builds of one project on this machine take turns: a lock file in the target's output
//! folder is held from the sync to the end of the build command, so neither changes the
//! other's sources mid-build. (Builds of the same project from two machines use the same
//! volumes only when their projects' paths hash alike; the marker still keeps a half-synced
//! volume from being used.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{sync as engine_sync, Engine};
use crate::error::{Error, Result};
use crate::fsutil::FromIo as _;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::units::human;

use super::fingerprint::{EntryKind, SourceEntry, Sources};

/// The folder, in a target's output folder, of the sync records, its lock and its summary.
pub(crate) const SYNC_DIR: &str = "sync";

/// The summary of the last sync, in [`SYNC_DIR`].
pub(crate) const SUMMARY_FILE: &str = "last.json";

/// What a volume last received completely: the token its marker holds, and every path with
/// what identifies its content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    token: String,
    entries: BTreeMap<String, String>,
}

/// What one sync did, per volume (written to `sync/last.json`).
#[derive(Debug, Default, Serialize)]
pub(crate) struct Summary {
    /// The container the sources went through: the warm builder's name, or `helper` for a
    /// container made for the sync.
    through: String,
    volumes: Vec<VolumeSummary>,
}

#[derive(Debug, Serialize)]
struct VolumeSummary {
    volume: String,
    /// The mount's container path.
    target: String,
    /// Everything was sent (a new or emptied volume).
    full: bool,
    /// Regular files sent.
    sent_files: usize,
    /// Their bytes.
    sent_bytes: u64,
    /// Paths sent (files, folders, links), relative to the mount.
    sent: Vec<String>,
    /// Paths deleted, relative to the mount.
    deleted: Vec<String>,
}

/// Held while a build uses its target's synced volumes.
pub(crate) struct SyncLock {
    _file: std::fs::File,
}

/// One path to send: where it is on the host and in the upload.
struct Outgoing {
    host: PathBuf,
    path: String,
    entry: SourceEntry,
}

/// Wait for the target's sync lock: held from before its volumes' markers are read until its
/// build command ended.
pub(crate) async fn lock_sources(plan: &Plan, progress: &Progress) -> Result<SyncLock> {
    let dir = plan.out_dir.join(SYNC_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    lock(&dir, plan, progress).await
}

/// Bring the target's source volumes up to date with `sources` (scanned now when `None`),
/// through `via` (the warm builder) when given, else through a helper made for it, under the
/// target's `lock` ([`lock_sources`], taken before `via` read its markers), which it returns.
pub(crate) async fn sync_sources(
    engine: &Engine,
    plan: &Plan,
    sources: Option<&Sources>,
    via: Option<engine_sync::SyncHelper>,
    lock: SyncLock,
    progress: &Progress,
) -> Result<SyncLock> {
    let dir = plan.out_dir.join(SYNC_DIR);
    if plan.builder.mounts.is_empty() {
        return Ok(lock);
    }
    let scanned;
    let sources = match sources {
        Some(sources) => sources,
        None => {
            scanned = super::up_to_date::scan_sources(plan).await?.0;
            &scanned
        }
    };
    let volumes: Vec<String> = (0..plan.builder.mounts.len())
        .map(|i| plan.source_volume(i))
        .collect();
    progress.phase(&format!(
        "syncing the sources of target {} into {}",
        plan.target,
        volumes.join(", ")
    ));
    let helper = match via {
        Some(helper) => helper,
        None => engine.open_sync(plan).await?,
    };
    let result = send(engine, plan, helper, sources, &dir, progress).await;
    let summary = result?;
    let bytes = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    let path = dir.join(SUMMARY_FILE);
    crate::fsutil::write_atomic(&path, &bytes).map_err(|e| Error::io("writing", &path, e))?;
    Ok(lock)
}

/// Everything after the helper exists: it is closed whatever happens.
async fn send(
    engine: &Engine,
    plan: &Plan,
    helper: engine_sync::SyncHelper,
    sources: &Sources,
    dir: &Path,
    progress: &Progress,
) -> Result<Summary> {
    let markers = match engine.sync_markers(&helper).await {
        Ok(markers) => markers,
        Err(e) => {
            let _ = engine.close_sync(helper).await;
            return Err(e.into());
        }
    };
    let mounts = &plan.builder.mounts;
    let mut records = Vec::with_capacity(mounts.len());
    let mut wipe = Vec::new();
    for (i, mount) in mounts.iter().enumerate() {
        let record = read_record(&record_path(dir, &plan.source_volume(i)));
        let usable = mount.read_only
            && record
                .as_ref()
                .is_some_and(|r| markers[i].as_deref() == Some(r.token.as_str()));
        if !usable && !helper.fresh[i] {
            wipe.push(i);
        }
        records.push(if usable { record } else { None });
    }
    let mut helper = helper;
    if let Err(e) = engine.reset_sync_volumes(plan, &mut helper, &wipe).await {
        let _ = engine.close_sync(helper).await;
        return Err(e.into());
    }
    let token = format!("{:016x}", crate::engine::mode::random_token());
    let mut summary = Summary {
        through: helper.through(),
        ..Summary::default()
    };
    let mut sends: Vec<Outgoing> = Vec::new();
    let mut deletes: Vec<String> = Vec::new();
    let mut changed: Vec<usize> = Vec::new();
    let mut next: Vec<Record> = Vec::new();
    for (i, mount) in mounts.iter().enumerate() {
        let current: BTreeMap<String, (String, &SourceEntry)> = sources
            .entries
            .iter()
            .filter(|e| e.mount == i)
            .map(|e| (e.path.clone(), (identity(e), e)))
            .collect();
        let before = records[i].as_ref();
        let mut volume = VolumeSummary {
            volume: plan.source_volume(i),
            target: mount.target.clone(),
            full: before.is_none(),
            sent_files: 0,
            sent_bytes: 0,
            sent: vec![],
            deleted: vec![],
        };
        for (path, (id, entry)) in &current {
            if before.and_then(|r| r.entries.get(path)) == Some(id) {
                continue;
            }
            if let EntryKind::File(_) = entry.kind {
                volume.sent_files += 1;
            }
            volume.sent.push(path.clone());
            sends.push(Outgoing {
                host: if path.is_empty() {
                    mount.source.clone()
                } else {
                    mount.source.join(path)
                },
                path: upload_path(i, path, matches!(entry.kind, EntryKind::Dir)),
                entry: (*entry).clone(),
            });
        }
        if let Some(before) = before {
            volume.deleted = topmost(
                before
                    .entries
                    .keys()
                    .filter(|p| !current.contains_key(*p))
                    .cloned()
                    .collect(),
            );
            deletes.extend(volume.deleted.iter().map(|p| format!("{i}/{p}")));
        }
        if volume.full || !volume.sent.is_empty() || !volume.deleted.is_empty() {
            changed.push(i);
        }
        next.push(Record {
            token: token.clone(),
            entries: current.into_iter().map(|(p, (id, _))| (p, id)).collect(),
        });
        summary.volumes.push(volume);
    }
    let sent = upload(
        engine, plan, &helper, sends, &deletes, &changed, &token, progress,
    )
    .await;
    let closed = engine.close_sync(helper).await;
    let sizes = sent?;
    closed?;
    for (volume, bytes) in summary.volumes.iter_mut().zip(sizes) {
        volume.sent_bytes = bytes;
    }
    for (i, record) in next.into_iter().enumerate() {
        let path = record_path(dir, &plan.source_volume(i));
        if !mounts[i].read_only {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if changed.contains(&i) {
            let bytes = serde_json::to_vec(&record).unwrap_or_default();
            crate::fsutil::write_atomic(&path, &bytes)
                .map_err(|e| Error::io("writing the sync record", &path, e))?;
        }
    }
    for volume in &summary.volumes {
        progress.phase(&format!(
            "synced {} file(s) ({}) and {} deletion(s) into {}{}",
            volume.sent_files,
            human(volume.sent_bytes),
            volume.deleted.len(),
            volume.volume,
            if volume.full { " (all of it)" } else { "" }
        ));
    }
    Ok(summary)
}

/// Outgoing the deletions (the changed volumes' markers set to `syncing` first), then one tar:
/// those markers again, the paths, and the markers set to `token`. The regular files' bytes
/// sent, per volume.
#[allow(clippy::too_many_arguments)]
async fn upload(
    engine: &Engine,
    plan: &Plan,
    helper: &engine_sync::SyncHelper,
    sends: Vec<Outgoing>,
    deletes: &[String],
    changed: &[usize],
    token: &str,
    progress: &Progress,
) -> Result<Vec<u64>> {
    let mut sizes = vec![0u64; plan.builder.mounts.len()];
    if changed.is_empty() {
        return Ok(sizes);
    }
    if !deletes.is_empty() {
        let markers = changed.to_vec();
        let tar = crate::fsutil::stream_written(move |out| {
            let mut builder = tar::Builder::new(out);
            for &i in &markers {
                append_marker(&mut builder, i, engine_sync::SYNCING)?;
            }
            builder.finish()
        });
        engine.upload_sync(helper, tar).await?;
        engine
            .delete_synced(plan, helper, deletes, progress)
            .await?;
    }
    for send in &sends {
        if let EntryKind::File(_) = send.entry.kind {
            let bytes = std::fs::symlink_metadata(&send.host).map_or(0, |m| m.len());
            sizes[send.entry.mount] += bytes;
        }
    }
    progress.phase(&format!(
        "sending {} path(s) ({}) into {}",
        sends.len(),
        human(sizes.iter().sum()),
        changed
            .iter()
            .map(|&i| plan.source_volume(i))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let (markers, token) = (changed.to_vec(), token.to_string());
    let tar = crate::fsutil::stream_written(move |out| {
        let mut builder = tar::Builder::new(out);
        for &i in &markers {
            append_marker(&mut builder, i, engine_sync::SYNCING)?;
        }
        for send in &sends {
            append_source(&mut builder, send)?;
        }
        for &i in &markers {
            append_marker(&mut builder, i, &token)?;
        }
        builder.finish()
    });
    engine.upload_sync(helper, tar).await?;
    Ok(sizes)
}

/// The marker of volume `i`, saying `text`.
fn append_marker(
    builder: &mut tar::Builder<&mut dyn std::io::Write>,
    i: usize,
    text: &str,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(text.len() as u64);
    let path = format!("{i}/{}", engine_sync::SYNC_MARKER);
    builder.append_data(&mut header, path, text.as_bytes())
}

/// One source path as the build would see it through a bind mount: its owner, mode and mtime.
fn append_source(
    builder: &mut tar::Builder<&mut dyn std::io::Write>,
    send: &Outgoing,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(&send.host)?;
    let mut header = tar::Header::new_gnu();
    header.set_uid(u64::from(meta.uid()));
    header.set_gid(u64::from(meta.gid()));
    header.set_mode(send.entry.mode);
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    match &send.entry.kind {
        EntryKind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, &send.path, std::io::empty())
        }
        EntryKind::Symlink(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, &send.path, target)
        }
        EntryKind::File(_) => {
            let file = std::fs::File::open(&send.host)?;
            let size = file.metadata()?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            builder.append_data(&mut header, &send.path, std::io::Read::take(file, size))
        }
    }
}

/// Take the lock of the target's synced volumes, waiting (and saying so) while another
/// dockception holds it.
async fn lock(dir: &Path, plan: &Plan, progress: &Progress) -> Result<SyncLock> {
    let path = dir.join("lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("opening", &path, e))?;
    use rustix::fs::{flock, FlockOperation};
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => return Ok(SyncLock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => progress.phase(&format!(
            "waiting for another dockception building target {} on this engine",
            plan.target
        )),
        Err(e) => return Err(Error::io("locking", &path, e.into())),
    }
    let waited = tokio::task::spawn_blocking(move || {
        flock(&file, FlockOperation::LockExclusive).map(|()| file)
    })
    .await
    .map_err(|e| Error::io("locking", &path, std::io::Error::other(e)))?;
    let file = waited.map_err(|e| Error::io("locking", &path, e.into()))?;
    Ok(SyncLock { _file: file })
}

/// What identifies a path's content for the record: kind, content and mode.
fn identity(entry: &SourceEntry) -> String {
    match &entry.kind {
        EntryKind::Dir => format!("d {:o}", entry.mode),
        EntryKind::File(digest) => format!("f {:o} {digest}", entry.mode),
        EntryKind::Symlink(target) => format!("l {}", target.display()),
    }
}

/// `INDEX/PATH` in the upload (a folder's with a trailing `/`; the mount's root is `INDEX/`).
fn upload_path(index: usize, path: &str, dir: bool) -> String {
    match (path.is_empty(), dir) {
        (true, _) => format!("{index}/"),
        (false, true) => format!("{index}/{path}/"),
        (false, false) => format!("{index}/{path}"),
    }
}

/// `paths` without those inside another of them (deleting a folder deletes what it holds).
fn topmost(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    let mut kept: Vec<String> = Vec::new();
    for path in paths {
        if kept
            .last()
            .is_some_and(|k| path.starts_with(&format!("{k}/")))
        {
            continue;
        }
        kept.push(path);
    }
    kept
}

fn record_path(dir: &Path, volume: &str) -> PathBuf {
    dir.join(format!("{volume}.json"))
}

fn read_record(path: &Path) -> Option<Record> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fingerprint::FileDigest;

    #[test]
    fn deleting_a_folder_covers_what_it_held() {
        let paths = ["a", "a/b", "a/b/c", "ab", "c/d"]
            .map(String::from)
            .to_vec();
        assert_eq!(topmost(paths), ["a", "ab", "c/d"]);
    }

    #[test]
    fn upload_paths_put_each_mount_in_its_folder() {
        assert_eq!(upload_path(0, "", true), "0/");
        assert_eq!(upload_path(1, "src", true), "1/src/");
        assert_eq!(upload_path(1, "src/a.c", false), "1/src/a.c");
    }

    #[test]
    fn a_mode_change_is_a_change() {
        let entry = |mode| SourceEntry {
            mount: 0,
            path: "run.sh".into(),
            kind: EntryKind::File(FileDigest([0xab; 32])),
            mode,
        };
        assert_ne!(identity(&entry(0o644)), identity(&entry(0o755)));
    }
}
