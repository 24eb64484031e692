//! Small helpers for the tool's own files, shared by every stage: the I/O error that names what
//! was being done and on which path.

use std::path::PathBuf;

/// A file system operation on the tool's own files failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct IoError {
    /// What was being done, e.g. "creating output folder".
    pub action: &'static str,
    /// The path involved.
    pub path: PathBuf,
    /// The underlying error.
    pub source: std::io::Error,
}

impl IoError {
    pub(crate) fn new(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        IoError {
            action,
            path: path.into(),
            source,
        }
    }
}
