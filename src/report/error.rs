//! What can go wrong measuring, storing and reading reports.

use std::path::PathBuf;

/// What can go wrong in this stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A report file could not be read, parsed or written.
    #[error("{action} report {path}: {message}")]
    ReportFile {
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// An image could not be measured from its export.
    #[error("measuring image {image} failed: {message}")]
    Measure {
        /// The image reference or id.
        image: String,
        /// What went wrong.
        message: String,
    },

    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] crate::fsutil::IoError),
}

/// This stage's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
