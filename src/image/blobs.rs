//! A content-addressed store of blobs under the output folder: `sha256/<hex>` files, written
//! through a temporary file and renamed into place whole, so a reader never sees a part. A
//! temporary file goes when its writer is dropped (a failure, Ctrl-C); one that a killed
//! process left behind goes at a later [`BlobStore::prune`], once it is a day old. The store is
//! bounded: [`BlobStore::prune`] drops the least recently used blobs beyond a size.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::fsutil::hex;

use super::Descriptor;

/// How many bytes of blobs a store keeps by default before the oldest go.
pub const DEFAULT_LIMIT: u64 = 4 << 30;

/// How old a temporary file must be before [`BlobStore::prune`] takes it for a killed process's
/// leftover: far longer than any write, so another build's file in progress is never touched.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// The prefix of every temporary file in the store's folder (no blob's name starts with it).
const TEMPORARY: &str = ".incoming-";

/// A folder of blobs named by their sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// The store in `root` (created on first write).
    pub fn at(root: &Path) -> BlobStore {
        BlobStore {
            root: root.to_path_buf(),
        }
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds (or would hold) the blob `digest` (`sha256:<hex>`).
    pub fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("sha256").join(hex)
    }

    /// Whether the store holds `digest` with exactly `size` bytes; a hit counts as a use.
    pub fn has(&self, digest: &str, size: u64) -> bool {
        let path = self.path(digest);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == size => {
                touch(&path);
                true
            }
            _ => false,
        }
    }

    /// Store `bytes` as a blob of `media_type`.
    pub fn put(&self, media_type: &str, bytes: &[u8]) -> io::Result<Descriptor> {
        let mut writer = self.writer()?;
        writer.write_all(bytes)?;
        writer.finish(media_type)
    }

    /// A writer whose bytes become a blob when [`BlobWriter::finish`] is called; dropped
    /// unfinished, it leaves nothing.
    pub fn writer(&self) -> io::Result<BlobWriter> {
        let temp = self.temporary_file()?;
        Ok(BlobWriter {
            file: io::BufWriter::with_capacity(256 * 1024, temp),
            hasher: Sha256::new(),
            size: 0,
            folder: self.root.join("sha256"),
        })
    }

    /// A temporary file in the store's folder (the same file system as the blobs), removed
    /// when it is dropped: e.g. a layer's uncompressed tar while it is loaded and gzipped.
    pub fn temporary_file(&self) -> io::Result<tempfile::NamedTempFile> {
        let folder = self.root.join("sha256");
        std::fs::create_dir_all(&folder)?;
        tempfile::Builder::new()
            .prefix(TEMPORARY)
            .tempfile_in(&folder)
    }

    /// Remove the least recently used blobs until the store holds at most `limit` bytes; blobs
    /// in `keep` (the image just written) stay whatever their age. Temporary files a killed
    /// process left go too. Returns the bytes removed.
    pub fn prune(&self, limit: u64, keep: &HashSet<String>) -> u64 {
        self.remove_stale_temporaries();
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        entries.sort_by_key(|e| e.used);
        let mut removed = 0;
        for entry in entries {
            if total <= limit {
                break;
            }
            if keep.contains(&entry.digest) {
                continue;
            }
            if std::fs::remove_file(&entry.path).is_ok() {
                total -= entry.size;
                removed += entry.size;
            }
        }
        removed
    }

    fn remove_stale_temporaries(&self) {
        let Ok(dir) = std::fs::read_dir(self.root.join("sha256")) else {
            return;
        };
        let now = SystemTime::now();
        for entry in dir.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(TEMPORARY) {
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_TEMPORARY);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn entries(&self) -> Vec<StoredBlob> {
        let Ok(dir) = std::fs::read_dir(self.root.join("sha256")) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    return None;
                }
                let meta = e.metadata().ok()?;
                Some(StoredBlob {
                    digest: format!("sha256:{name}"),
                    path: e.path(),
                    size: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                })
            })
            .collect()
    }
}

struct StoredBlob {
    digest: String,
    path: PathBuf,
    size: u64,
    used: SystemTime,
}

/// Mark a blob as just used (its mtime), so pruning keeps it longest.
fn touch(path: &Path) {
    if let Ok(file) = File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Bytes on their way into the store, hashed as they pass.
pub struct BlobWriter {
    file: io::BufWriter<tempfile::NamedTempFile>,
    hasher: Sha256,
    size: u64,
    folder: PathBuf,
}

impl BlobWriter {
    /// Put the bytes written into the store under their digest. A blob the store has already
    /// is kept, and the new copy dropped.
    pub fn finish(self, media_type: &str) -> io::Result<Descriptor> {
        let digest = format!("sha256:{}", hex(&self.hasher.finalize()));
        let temp = self.file.into_inner().map_err(|e| e.into_error())?;
        temp.as_file().sync_all()?;
        let path = self.folder.join(digest.trim_start_matches("sha256:"));
        temp.persist(&path).map_err(|e| e.error)?;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: self.size,
        })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.file.write(data)?;
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_named_by_their_digest_and_written_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let blob = store.put("text/plain", b"hello").expect("put");
        assert_eq!(
            blob.digest,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(blob.size, 5);
        assert_eq!(
            std::fs::read(store.path(&blob.digest)).expect("read"),
            b"hello"
        );
        assert!(store.has(&blob.digest, 5));
        assert!(!store.has(&blob.digest, 6));
        // The same bytes again: one file, no temporary left.
        store.put("text/plain", b"hello").expect("put again");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sha256"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn an_unfinished_writer_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let mut writer = store.writer().expect("writer");
        writer.write_all(b"half").expect("write");
        drop(writer);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sha256"))
                .expect("dir")
                .count(),
            0
        );
    }

    #[test]
    fn pruning_removes_a_killed_writers_temporary_but_not_a_fresh_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let fresh = store.temporary_file().expect("temporary");
        let (_, stale) = store
            .temporary_file()
            .expect("temporary")
            .keep()
            .expect("keep");
        let day_and_more = std::time::Duration::from_secs(25 * 60 * 60);
        File::options()
            .write(true)
            .open(&stale)
            .expect("open")
            .set_modified(SystemTime::now() - day_and_more)
            .expect("mtime");
        store.prune(0, &HashSet::new());
        assert!(!stale.exists(), "a day-old temporary is a leftover");
        assert!(fresh.path().exists(), "a fresh one may be another build's");
    }

    #[test]
    fn pruning_drops_the_least_recently_used_first_and_keeps_what_is_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::at(dir.path());
        let old = store.put("x", &[1u8; 100]).expect("put");
        let kept = store.put("x", &[2u8; 100]).expect("put");
        let new = store.put("x", &[3u8; 100]).expect("put");
        let age = |d: &Descriptor, secs: u64| {
            let f = File::options()
                .write(true)
                .open(store.path(&d.digest))
                .expect("open");
            f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .expect("mtime");
        };
        age(&kept, 10);
        age(&old, 20);
        age(&new, 30);
        let keep = HashSet::from([kept.digest.clone()]);
        assert_eq!(store.prune(200, &keep), 100);
        assert!(
            !store.has(&old.digest, 100),
            "the oldest that may go is gone"
        );
        assert!(store.has(&kept.digest, 100), "kept although older");
        assert!(store.has(&new.digest, 100));
    }
}
