//! One layer tar, read as it streams past: its entries, whiteouts and opaque folders, while
//! [`Tee`] hashes, gzips and counts every byte of it.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::fsutil::hex;
use crate::report::scan::tee::Tee;
use crate::report::scan::{FileKind, LayerEntry, LayerScan, MeasureError};

/// Read one layer tar: list its entries, whiteouts and opaque folders; hash and gzip it.
pub fn scan_layer(reader: impl Read) -> Result<LayerScan, MeasureError> {
    scan_tee(Tee::start(reader)?)
}

/// [`scan_layer`] without the gzip: for a layer whose compressed size is known (one we
/// compressed); its `gzip_bytes` is 0 for the caller to fill in.
pub fn scan_layer_listing(reader: impl Read) -> Result<LayerScan, MeasureError> {
    scan_tee(Tee::start_unsized(reader))
}

fn scan_tee<R: Read>(tee: Tee<R>) -> Result<LayerScan, MeasureError> {
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
        match whiteout(&path) {
            Some(Whiteout::Opaque(dir)) => opaque_dirs.push(dir),
            Some(Whiteout::Hides(hidden)) => whiteouts.push(hidden),
            None => entries.push(read_entry(&mut entry, path, tar_bytes)?),
        }
    }
    // The end-of-archive blocks and any padding belong to the layer tar too.
    let mut tee = archive.into_inner();
    io::copy(&mut tee, &mut io::sink())?;
    let totals = tee.finish()?;
    Ok(LayerScan {
        diff_id: format!("sha256:{}", totals.sha256),
        tar_bytes: totals.bytes,
        gzip_bytes: totals.gzip_bytes,
        entries,
        whiteouts,
        opaque_dirs,
    })
}

/// A marker entry that deletes from the layers below instead of adding a path.
enum Whiteout {
    /// `.wh..wh..opq`: everything below this folder.
    Opaque(String),
    /// `.wh.<name>`: this path.
    Hides(String),
}

fn whiteout(path: &str) -> Option<Whiteout> {
    let (parent, name) = match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((parent, name)) => (parent, name),
        None => ("/", path),
    };
    if name == ".wh..wh..opq" {
        return Some(Whiteout::Opaque(parent.to_string()));
    }
    name.strip_prefix(".wh.")
        .map(|hidden| Whiteout::Hides(join(parent, hidden)))
}

/// The entry at `path`, its content hashed when it is a regular file.
fn read_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: String,
    tar_bytes: u64,
) -> io::Result<LayerEntry> {
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
        let mut hasher = Sha256::new();
        let size = io::copy(entry, &mut hasher)?;
        (size, Some(hex(&hasher.finalize())))
    } else {
        (0, None)
    };
    Ok(LayerEntry {
        path,
        kind,
        size,
        mode,
        sha256,
        link,
        tar_bytes,
    })
}

fn padded(size: u64) -> u64 {
    size.div_ceil(512) * 512
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

fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{gzip_size, layer_tar, sha, Item};

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
    fn long_names_are_read_and_counted() {
        let long = format!("./{}/file", "d".repeat(150));
        let tar = layer_tar(&[Item::File(&long, b"x", 0o644)]);
        let layer = scan_layer(&tar[..]).expect("scan");
        assert_eq!(layer.entries[0].path, format!("/{}/file", "d".repeat(150)));
        // GNU long name: its own header and a padded name block, then the real header and data.
        assert_eq!(layer.entries[0].tar_bytes, 512 + 512 + 512 + 512);
    }
}
