//! What can go wrong writing the image.

use crate::fsutil::IoError;

/// What can go wrong in this stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the tool's own files failed.
    #[error(transparent)]
    Io(#[from] IoError),

    /// Writing a layer failed (an artifact could not be read, or the store could not be
    /// written).
    #[error("writing the image layer failed: {0}\n  help: check that the output folder is writable and the artifacts were not changed during the build")]
    Layer(std::io::Error),

    /// A base image's export does not read as a `docker save` archive.
    #[error("the export of the base {image} cannot be read: {message}\n  help: check the base with `docker image inspect {image}`; pull or build it again")]
    BaseExport {
        /// The base image.
        image: String,
        /// What is wrong.
        message: String,
    },

    /// A base image's config is not the JSON an image config is.
    #[error("the config of the base {image} is not an image config: {message}")]
    BaseConfig {
        /// The base image.
        image: String,
        /// What is wrong.
        message: String,
    },
}

/// The stage's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
