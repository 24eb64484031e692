//! What can go wrong resolving a manifest into a plan.

use crate::manifest::diagnostic::{render_diagnostics, Diagnostic};

/// What can go wrong in this stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest has syntax, type or semantic errors; each one points at its spot.
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),

    /// The command line asks for something the manifest does not have.
    #[error("{message}\n  help: {help}")]
    Usage {
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },

    /// A secret the manifest names for the builder is not available.
    #[error("builder.env_from_host names {name}, but {problem}\n  help: export {name}=... in the shell that runs dockception (or remove it from env_from_host)")]
    MissingSecret {
        /// The variable's name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] crate::fsutil::IoError),
}

/// This stage's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
