//! The layer runtime steps make, written by us from what the steps container changed: the
//! engine's change list says which paths; the container's export gives their headers and
//! content. Entries are sorted, every time is the epoch (or `SOURCE_DATE_EPOCH`), owner names
//! are dropped (numeric ids stay: a package may own a file as a system user), modes stay as
//! the steps set them, deletions become whiteouts. The artifacts' mount point, which the engine
//! made for the mount, is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc::SyncSender;

use bytes::Bytes;

use crate::engine::{Change, ChangeKind};

use super::blobs::BlobStore;
use super::layer::LayerWriter;
use super::WrittenLayer;

/// Which paths the layer holds and which it deletes, relative to the root (no leading `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Added or changed paths.
    pub keep: BTreeSet<String>,
    /// Deleted paths (only the topmost of a deleted tree).
    pub deleted: BTreeSet<String>,
}

/// The change set of `changes`, without the mount point at `mount` (and the folders above it
/// that the engine added only for it).
pub fn change_set(changes: &[Change], mount: &str) -> ChangeSet {
    let relative = |p: &str| p.trim_start_matches('/').trim_end_matches('/').to_string();
    let mount = relative(mount);
    let mut set = ChangeSet::default();
    for change in changes {
        let path = relative(&change.path);
        if path.is_empty() || path == mount || path.starts_with(&format!("{mount}/")) {
            continue;
        }
        match change.kind {
            ChangeKind::Deleted => {
                set.deleted.insert(path);
            }
            ChangeKind::Added | ChangeKind::Modified => {
                set.keep.insert(path);
            }
        }
    }
    // A folder added only to hold the mount point is the engine's, not the steps'.
    let mut above = mount.as_str();
    while let Some((parent, _)) = above.rsplit_once('/') {
        let holds_other = set
            .keep
            .range(format!("{parent}/")..)
            .take_while(|p| p.starts_with(&format!("{parent}/")))
            .next()
            .is_some();
        let added = changes
            .iter()
            .any(|c| c.kind == ChangeKind::Added && relative(&c.path) == parent);
        if added && !holds_other {
            set.keep.remove(parent);
        }
        above = parent;
    }
    let all_deleted = set.deleted.clone();
    set.deleted
        .retain(|p| !ancestors(p).any(|a| all_deleted.contains(a)));
    set
}

fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = path;
    std::iter::from_fn(move || {
        let (parent, _) = rest.rsplit_once('/')?;
        rest = parent;
        Some(parent)
    })
}

/// One entry of the layer, as taken from the export.
struct Staged {
    header: tar::Header,
    link: Option<Vec<u8>>,
    /// The staged content's file, for a regular file.
    content: Option<std::path::PathBuf>,
}

/// Write the layer of `set` from the container's `export` into `store`. Regular files' content
/// is staged in `staging` on the way (the export's order is the file system's; the layer's is
/// sorted), so memory stays bounded.
pub fn write_changes(
    export: impl Read,
    set: &ChangeSet,
    staging: &Path,
    epoch: u64,
    store: &BlobStore,
    copy: Option<SyncSender<Bytes>>,
) -> io::Result<WrittenLayer> {
    let mut staged: BTreeMap<Vec<u8>, Staged> = BTreeMap::new();
    let mut archive = tar::Archive::new(export);
    for (index, entry) in archive.entries()?.enumerate() {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let path = String::from_utf8_lossy(&raw)
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if !set.keep.contains(&path) {
            continue;
        }
        let kind = entry.header().entry_type();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(entry.header().mode()? & 0o7777);
        header.set_uid(entry.header().uid()?);
        header.set_gid(entry.header().gid()?);
        header.set_mtime(epoch);
        header.set_size(0);
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let content = if kind == tar::EntryType::Regular {
            let file = staging.join(index.to_string());
            let mut out = io::BufWriter::new(File::create(&file)?);
            let size = io::copy(&mut entry, &mut out)?;
            out.flush()?;
            header.set_size(size);
            Some(file)
        } else {
            None
        };
        let mut key = path.into_bytes();
        if kind == tar::EntryType::Directory {
            key.push(b'/');
        }
        staged.insert(
            key,
            Staged {
                header,
                link,
                content,
            },
        );
    }
    let mut writer = LayerWriter::start(store, copy)?;
    {
        let mut tar = tar::Builder::new(&mut writer);
        for path in &set.deleted {
            let (parent, name) = match path.rsplit_once('/') {
                Some((parent, name)) => (format!("{parent}/"), name),
                None => (String::new(), path.as_str()),
            };
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_mtime(epoch);
            h.set_size(0);
            h.set_uid(0);
            h.set_gid(0);
            tar.append_data(&mut h, format!("{parent}.wh.{name}"), io::empty())?;
        }
        for (path, entry) in staged {
            let mut header = entry.header;
            let path = Path::new(OsStr::from_bytes(&path));
            match (&entry.content, &entry.link) {
                (Some(file), _) => {
                    tar.append_data(&mut header, path, File::open(file)?)?;
                }
                (None, Some(link)) => {
                    let target = Path::new(OsStr::from_bytes(link));
                    tar.append_link(&mut header, path, target)?;
                }
                (None, None) => tar.append_data(&mut header, path, io::empty())?,
            }
        }
        tar.finish()?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, kind: ChangeKind) -> Change {
        Change {
            path: path.into(),
            kind,
        }
    }

    #[test]
    fn the_mount_point_and_folders_made_for_it_are_left_out() {
        let changes = [
            change("/bin", ChangeKind::Modified),
            change("/bin/true", ChangeKind::Deleted),
            change("/opt", ChangeKind::Added),
            change("/opt/x", ChangeKind::Added),
            change("/mnt", ChangeKind::Added),
            change("/mnt/artifacts", ChangeKind::Added),
            change("/var/lib/a", ChangeKind::Deleted),
            change("/var/lib/a/b", ChangeKind::Deleted),
        ];
        let set = change_set(&changes, "/mnt/artifacts");
        assert_eq!(
            set.keep.iter().map(String::as_str).collect::<Vec<_>>(),
            ["bin", "opt", "opt/x"]
        );
        assert_eq!(
            set.deleted.iter().map(String::as_str).collect::<Vec<_>>(),
            ["bin/true", "var/lib/a"]
        );
    }

    #[test]
    fn the_layer_is_sorted_timeless_and_the_same_whatever_the_export_order() {
        let export = |order: &[&str]| {
            let mut b = tar::Builder::new(Vec::new());
            for path in order {
                let mut h = tar::Header::new_gnu();
                if path.ends_with('/') {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                } else {
                    h.set_size(3);
                    h.set_mode(0o4755);
                }
                h.set_mtime(1_700_000_000);
                h.set_uid(101);
                h.set_gid(0);
                h.set_username("daemon").expect("name");
                h.set_cksum();
                let data: &[u8] = if path.ends_with('/') { b"" } else { b"abc" };
                b.append_data(&mut h, path, data).expect("append");
            }
            b.into_inner().expect("tar")
        };
        let set = change_set(
            &[
                change("/opt", ChangeKind::Added),
                change("/opt/b", ChangeKind::Added),
                change("/opt/a", ChangeKind::Added),
                change("/gone", ChangeKind::Deleted),
            ],
            "/artifacts",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(&dir.path().join("blobs"));
        let write = |tar: Vec<u8>| {
            let staging = tempfile::tempdir_in(dir.path()).expect("staging");
            let (copy, mut reader) = super::super::layer::copy_channel();
            let read = std::thread::spawn(move || {
                let mut bytes = Vec::new();
                reader.read_to_end(&mut bytes).expect("read");
                bytes
            });
            let layer = write_changes(tar.as_slice(), &set, staging.path(), 0, &store, Some(copy))
                .expect("layer");
            (layer, read.join().expect("reader"))
        };
        let (a, tar_a) = write(export(&["opt/", "opt/b", "opt/a", "etc/"]));
        let (b, _) = write(export(&["opt/", "opt/a", "opt/b"]));
        assert_eq!(a, b, "the export's order does not matter");
        let mut archive = tar::Archive::new(tar_a.as_slice());
        let entries: Vec<(String, u64, u32, u64, Option<String>)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (
                    e.path().expect("path").to_string_lossy().into_owned(),
                    h.mtime().expect("mtime"),
                    h.mode().expect("mode"),
                    h.uid().expect("uid"),
                    h.username()
                        .ok()
                        .flatten()
                        .map(String::from)
                        .filter(|s| !s.is_empty()),
                )
            })
            .collect();
        let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(paths, [".wh.gone", "opt/", "opt/a", "opt/b"]);
        assert!(
            entries.iter().all(|e| e.1 == 0 && e.4.is_none()),
            "{entries:?}"
        );
        assert_eq!(entries[2].2, 0o4755, "modes stay as the steps set them");
        assert_eq!(entries[2].3, 101, "numeric owners stay");
    }
}
