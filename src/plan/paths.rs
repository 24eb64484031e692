//! Host paths as the daemon gets them: absolute, without `.` and `..`.

use std::path::{Path, PathBuf};

use crate::fsutil::FromIo as _;
use crate::plan::{Error, Result};

/// `path` from the root, the current folder in front of a relative one.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(normalise(path));
    }
    let cwd =
        std::env::current_dir().map_err(|e| Error::io("reading the current folder", ".", e))?;
    Ok(normalise(&cwd.join(path)))
}

/// Remove `.` and resolve `..` lexically, so the daemon gets clean absolute paths.
pub(crate) fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The folder an absolute manifest path is in (`/` for a manifest at the root).
pub(crate) fn folder_of(manifest: &Path) -> PathBuf {
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}
