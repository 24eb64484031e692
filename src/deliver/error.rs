//! What can go wrong delivering an image.

use std::path::PathBuf;

use crate::fsutil::IoError;

/// What can go wrong in this stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the tool's own files failed.
    #[error(transparent)]
    Io(#[from] IoError),

    /// An `--output` value does not read.
    #[error("--output {given}: {message}\n  help: {help}")]
    OutputSyntax {
        /// The value as given.
        given: String,
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },

    /// An `--output` destination exists already; nothing is overwritten.
    #[error("the output destination {} exists already\n  help: remove it, or give another dest=", .path.display())]
    OutputExists {
        /// The destination.
        path: PathBuf,
    },

    /// Two outputs name the same destination.
    #[error("two outputs write to {}\n  help: give each --output its own dest=", .path.display())]
    OutputTwice {
        /// The destination.
        path: PathBuf,
    },

    /// The folder an output goes into cannot be written.
    #[error("the output destination {} cannot be written: {source}\n  help: create its folder, or make it writable, or give another dest=", .path.display())]
    OutputUnwritable {
        /// The destination.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// Writing an output failed; nothing was left at the destination.
    #[error("writing the output {} failed: {source}\n  help: check the free space and permissions of its folder; nothing was left there", .path.display())]
    OutputWrite {
        /// The destination.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// A tag to push names no registry.
    #[error("--push: the tag {tag} names no registry\n  help: name the registry in the tag, e.g. registry.example.com/{tag} or 127.0.0.1:5000/{tag}")]
    TagWithoutRegistry {
        /// The tag.
        tag: String,
    },

    /// A tag or image reference does not read.
    #[error("{reference} is not an image reference: {message}\n  help: write it as REGISTRY/REPOSITORY:TAG, e.g. registry.example.com/team/app:1.0")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// What is wrong.
        message: String,
    },

    /// A registry refused or failed; for a push, no tag was written by the failed step.
    #[error("{action} {repository} on {registry} failed: {message}\n  help: {help}")]
    Registry {
        /// What was being done, e.g. "pushing to".
        action: &'static str,
        /// The registry (`host[:port]`).
        registry: String,
        /// The repository.
        repository: String,
        /// What went wrong.
        message: String,
        /// What to do.
        help: String,
    },

    /// A credential helper the docker config names cannot be run, or failed.
    #[error("the credential helper docker-credential-{helper} (for {registry}, named in {}) {message}\n  help: install docker-credential-{helper} on PATH, or remove it from that config; dockception does not go on without the credentials it names", .config.display())]
    CredentialHelper {
        /// The helper's name (after `docker-credential-`).
        helper: String,
        /// The registry asked for.
        registry: String,
        /// The docker config that names it.
        config: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// The docker config cannot be read, or its entry for a registry does not decode.
    #[error("the docker config {} cannot be used for {registry}: {message}\n  help: fix the file (or log in again with `docker login {registry}`), or point DOCKER_CONFIG at another folder", .config.display())]
    Credentials {
        /// The config file.
        config: PathBuf,
        /// The registry asked for.
        registry: String,
        /// What is wrong.
        message: String,
    },

    /// A CA file given for registries cannot be read or is no certificate.
    #[error("the CA file {} cannot be used: {message}\n  help: give a PEM file holding the registry's CA certificate", .path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A base pulled from a registry is not an image dockception can build on.
    #[error("the base {reference} cannot be used: {message}\n  help: {help}")]
    Base {
        /// The base's reference.
        reference: String,
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },
}

/// The stage's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
