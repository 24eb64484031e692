//! `--output`, in buildx's words: `type=oci,dest=DIR` (an OCI image layout folder),
//! `type=oci,dest=FILE.tar` (the same as a tar archive), `type=docker,dest=FILE.tar` (an
//! archive `docker load` takes: `manifest.json` for engines that read only that, and the OCI
//! `index.json` and `oci-layout` for newer engines and OCI tools) and `type=none` (build and
//! report only). Several may be given in one run.
//!
//! Archives are the same bytes for the same image: sorted entries, mtime 0, uid/gid 0, fixed
//! modes. Blobs are streamed from the store, never held in memory. Each output is written under
//! a temporary name beside its destination and renamed into place whole, so a failed write
//! leaves nothing there; [`check`] refuses an existing or unwritable destination before the
//! build.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::image::manifest::{archive_path, docker_archive_manifest};
use crate::image::{media, WrittenImage};

use super::{Error, Result};

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `type=oci`: an OCI image layout, as a folder or (`tar`) as a tar archive.
    Oci {
        /// The folder or file to write.
        dest: PathBuf,
        /// Whether `dest` is a tar archive (`dest` ends in `.tar`, or `tar=true`).
        tar: bool,
    },
    /// `type=docker`: a tar archive `docker load` takes.
    Docker {
        /// The file to write.
        dest: PathBuf,
    },
    /// `type=none`: nothing is written.
    None,
}

/// What [`write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The destination.
    pub dest: PathBuf,
    /// What was written there: `oci-layout`, `oci-archive` or `docker-archive`.
    pub kind: &'static str,
    /// Bytes written (the archive's size, or the layout's files together).
    pub bytes: u64,
}

impl Output {
    /// Read one `--output` value: comma-separated `key=value` pairs, `type` first or anywhere.
    pub fn parse(text: &str) -> Result<Output> {
        let bad = |message: String, help: &str| Error::OutputSyntax {
            given: text.to_string(),
            message,
            help: help.to_string(),
        };
        let mut kind = None;
        let mut dest = None;
        let mut tar = None;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(bad(
                    format!("`{part}` is not key=value"),
                    "write it as type=oci,dest=DIR (or type=docker,dest=FILE.tar, type=none)",
                ));
            };
            match key.trim() {
                "type" => kind = Some(value.trim().to_string()),
                "dest" => dest = Some(PathBuf::from(value.trim())),
                "tar" => {
                    tar = Some(match value.trim() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(bad(
                                format!("tar={other} is neither true nor false"),
                                "write tar=true or tar=false",
                            ))
                        }
                    })
                }
                other => {
                    return Err(bad(
                        format!("`{other}` is no key of an output"),
                        "the keys are type, dest and tar",
                    ))
                }
            }
        }
        let kind = kind.ok_or_else(|| {
            bad(
                "it names no type".into(),
                "start it with type=oci, type=docker or type=none",
            )
        })?;
        match kind.as_str() {
            "none" => match dest {
                None => Ok(Output::None),
                Some(_) => Err(bad(
                    "type=none writes nothing, so it takes no dest".into(),
                    "drop dest=, or use type=oci or type=docker",
                )),
            },
            "oci" => {
                let dest = dest.ok_or_else(|| {
                    bad(
                        "type=oci needs dest=".into(),
                        "add dest=DIR for a layout folder or dest=FILE.tar for an archive",
                    )
                })?;
                let tar = tar.unwrap_or_else(|| dest.extension().is_some_and(|e| e == "tar"));
                Ok(Output::Oci { dest, tar })
            }
            "docker" => {
                let dest = dest.ok_or_else(|| {
                    bad(
                        "type=docker needs dest=FILE.tar".into(),
                        "add dest=FILE.tar, or use --load to load the image into the engine",
                    )
                })?;
                if tar == Some(false) {
                    return Err(bad(
                        "a docker archive is always a tar".into(),
                        "drop tar=false, or use type=oci for a layout folder",
                    ));
                }
                Ok(Output::Docker { dest })
            }
            "registry" | "image" => Err(bad(
                format!("type={kind} is not an output of dockception"),
                "use --push to send the image to its registry",
            )),
            other => Err(bad(
                format!("type={other} is not known"),
                "the types are oci, docker and none",
            )),
        }
    }

    /// The destination, unless `type=none`.
    pub fn dest(&self) -> Option<&Path> {
        match self {
            Output::Oci { dest, .. } | Output::Docker { dest } => Some(dest),
            Output::None => None,
        }
    }
}

/// Refuse, before the build, outputs whose destination exists, whose folder cannot be written,
/// or that share a destination.
pub fn check(outputs: &[Output]) -> Result<()> {
    let mut seen = HashSet::new();
    for dest in outputs.iter().filter_map(Output::dest) {
        let absolute = std::path::absolute(dest).unwrap_or_else(|_| dest.to_path_buf());
        if !seen.insert(absolute) {
            return Err(Error::OutputTwice {
                path: dest.to_path_buf(),
            });
        }
        if dest.symlink_metadata().is_ok() {
            return Err(Error::OutputExists {
                path: dest.to_path_buf(),
            });
        }
        let folder = parent_of(dest);
        tempfile::Builder::new()
            .prefix(".dockception-check-")
            .tempfile_in(&folder)
            .map_err(|source| Error::OutputUnwritable {
                path: dest.to_path_buf(),
                source,
            })?;
    }
    Ok(())
}

/// Write every output of `outputs` for `image` tagged `tags`, in order.
pub fn write_all(
    outputs: &[Output],
    image: &WrittenImage,
    tags: &[String],
) -> Result<Vec<Written>> {
    outputs
        .iter()
        .filter_map(|output| write(output, image, tags).transpose())
        .collect()
}

/// Write `image` tagged `tags` as `output`; `None` for `type=none`. The destination appears
/// whole or not at all.
pub fn write(output: &Output, image: &WrittenImage, tags: &[String]) -> Result<Option<Written>> {
    let (dest, kind) = match output {
        Output::None => return Ok(None),
        Output::Oci { dest, tar: false } => (dest, "oci-layout"),
        Output::Oci { dest, tar: true } => (dest, "oci-archive"),
        Output::Docker { dest } => (dest, "docker-archive"),
    };
    if dest.symlink_metadata().is_ok() {
        return Err(Error::OutputExists {
            path: dest.to_path_buf(),
        });
    }
    let failed = |source: io::Error| Error::OutputWrite {
        path: dest.to_path_buf(),
        source,
    };
    let files = files_of(image, tags, kind == "docker-archive");
    let bytes = if kind == "oci-layout" {
        write_layout(dest, &files).map_err(failed)?
    } else {
        write_archive(dest, &files).map_err(failed)?
    };
    Ok(Some(Written {
        dest: dest.to_path_buf(),
        kind,
        bytes,
    }))
}

/// One file of a layout or archive: its bytes, or a blob in the store.
enum Content {
    Bytes(Vec<u8>),
    Blob(PathBuf, u64),
}

/// The files of the OCI layout of `image` (and, for a docker archive, its `manifest.json`),
/// sorted by path.
fn files_of(image: &WrittenImage, tags: &[String], docker: bool) -> Vec<(String, Content)> {
    let mut files: Vec<(String, Content)> = vec![
        (
            "oci-layout".into(),
            Content::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ),
        ("index.json".into(), Content::Bytes(index_json(image, tags))),
        (
            archive_path(image.image_id()),
            Content::Bytes(image.config.clone()),
        ),
        (
            archive_path(image.digest()),
            Content::Bytes(image.manifest.clone()),
        ),
    ];
    if docker {
        files.push((
            "manifest.json".into(),
            Content::Bytes(docker_archive_manifest(image, tags)),
        ));
    }
    for layer in &image.layers {
        let path = archive_path(&layer.blob.digest);
        if files.iter().all(|(p, _)| *p != path) {
            files.push((
                path,
                Content::Blob(image.blob_path(&layer.blob.digest), layer.blob.size),
            ));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// The layout's `index.json`: the manifest once per tag, named by both the OCI annotation
/// (the tag) and containerd's (the full name), or once unnamed when there is no tag.
pub fn index_json(image: &WrittenImage, tags: &[String]) -> Vec<u8> {
    let entry = |tag: Option<&String>| {
        let mut entry = json!({
            "mediaType": media::MANIFEST,
            "digest": image.digest(),
            "size": image.manifest_blob.size,
        });
        if let Some(tag) = tag {
            entry["annotations"] = json!({
                "io.containerd.image.name": full_name(tag),
                "org.opencontainers.image.ref.name": tag_of(tag),
            });
        }
        entry
    };
    let manifests: Vec<serde_json::Value> = if tags.is_empty() {
        vec![entry(None)]
    } else {
        tags.iter().map(Some).map(entry).collect()
    };
    json!({
        "schemaVersion": 2,
        "mediaType": media::INDEX,
        "manifests": manifests,
    })
    .to_string()
    .into_bytes()
}

/// The tag part of `name` (`latest` when it has none), as `docker save` writes the OCI ref name.
fn tag_of(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, t)| t).unwrap_or("latest")
}

/// `name` in full, as containerd names images: `docker.io/library/app:latest` for `app`.
pub fn full_name(name: &str) -> String {
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let names_registry = first.contains('.') || first.contains(':') || first == "localhost";
    let mut full = if names_registry {
        name.to_string()
    } else if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else {
        format!("docker.io/{name}")
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        full.push_str(":latest");
    }
    full
}

/// The folder `dest` goes into.
fn parent_of(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The name `dest` is written under until it is whole.
fn temp_name(dest: &Path) -> String {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    format!(".{name}.partial-")
}

/// Write `files` as a layout folder at `dest`; the bytes written.
fn write_layout(dest: &Path, files: &[(String, Content)]) -> io::Result<u64> {
    let temp = tempfile::Builder::new()
        .prefix(&temp_name(dest))
        .tempdir_in(parent_of(dest))?;
    let mut total = 0;
    for (path, content) in files {
        let target = temp.path().join(path);
        if let Some(folder) = target.parent() {
            std::fs::create_dir_all(folder)?;
        }
        total += match content {
            Content::Bytes(bytes) => {
                std::fs::write(&target, bytes)?;
                bytes.len() as u64
            }
            Content::Blob(source, _) => std::fs::copy(source, &target)?,
        };
    }
    let folder = temp.keep();
    if let Err(e) = rename_new(&folder, dest) {
        let _ = std::fs::remove_dir_all(&folder);
        return Err(e);
    }
    Ok(total)
}

/// Rename `from` to `to`, refusing to replace something that appeared at `to` meanwhile.
fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    if to.symlink_metadata().is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "it appeared while the output was written",
        ));
    }
    std::fs::rename(from, to)
}

/// Write `files` as a deterministic tar at `dest`; the archive's size.
fn write_archive(dest: &Path, files: &[(String, Content)]) -> io::Result<u64> {
    let temp = tempfile::Builder::new()
        .prefix(&temp_name(dest))
        .tempfile_in(parent_of(dest))?;
    let mut archive = tar::Builder::new(BufWriter::with_capacity(256 * 1024, temp));
    let mut folders: Vec<String> = Vec::new();
    for (path, content) in files {
        // Each folder once, before its first file (the paths are sorted).
        let mut at = 0;
        while let Some(slash) = path[at..].find('/') {
            let folder = &path[..at + slash + 1];
            if !folders.iter().any(|f| f == folder) {
                folders.push(folder.to_string());
                let mut header = header(tar::EntryType::Directory, 0o755, 0);
                archive.append_data(&mut header, folder, io::empty())?;
            }
            at += slash + 1;
        }
        match content {
            Content::Bytes(bytes) => {
                let mut header = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
                archive.append_data(&mut header, path, bytes.as_slice())?;
            }
            Content::Blob(source, size) => {
                let file = File::open(source)?;
                let found = file.metadata()?.len();
                if found != *size {
                    return Err(io::Error::other(format!(
                        "the blob {} holds {found} bytes, not the {size} its descriptor says; build again",
                        source.display()
                    )));
                }
                let mut header = header(tar::EntryType::Regular, 0o644, *size);
                archive.append_data(&mut header, path, file)?;
            }
        }
    }
    let mut writer = archive.into_inner()?;
    writer.flush()?;
    let temp = writer.into_inner().map_err(|e| e.into_error())?;
    temp.as_file().sync_all()?;
    let size = temp.as_file().metadata()?.len();
    if dest.symlink_metadata().is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "it appeared while the output was written",
        ));
    }
    temp.persist_noclobber(dest).map_err(|e| e.error)?;
    Ok(size)
}

/// A tar header with nothing from the machine in it: mtime 0, uid/gid 0, no user names.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

#[cfg(test)]
mod tests;
