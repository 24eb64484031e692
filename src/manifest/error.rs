//! What can go wrong reading and checking a manifest.

use std::path::PathBuf;

use crate::manifest::diagnostic::{render_diagnostics, Diagnostic};

/// What can go wrong in this stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest file could not be read.
    #[error("cannot read manifest {path}: {source}\n  help: pass the manifest with -f FILE, or run from the folder that holds dockception.toml")]
    ReadManifest {
        /// The manifest path as given.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },

    /// The manifest file is larger than any real manifest.
    #[error("manifest {path} is larger than {limit} bytes, more than any real manifest\n  help: check that -f names the manifest (dockception.toml), not another file")]
    ManifestTooLarge {
        /// The manifest path as given.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },

    /// The manifest has syntax, type or semantic errors; each one points at its spot.
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),

    /// A gate's threshold is not valid (manifest `[gates]` or a command-line flag); nothing
    /// was built or checked. Exit status 2.
    #[error("misconfigured gate: {}", .problems.join("\n\n"))]
    GateConfig {
        /// Every problem found, each with its fix.
        problems: Vec<String>,
    },

    /// The command line asks for something the manifest does not have.
    #[error("{message}\n  help: {help}")]
    Usage {
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },

    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] crate::fsutil::IoError),
}

/// This stage's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
