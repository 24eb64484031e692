//! What can go wrong talking to a container engine; each failure names what it was doing and on what.

/// What can go wrong in this stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Docker Engine answers.
    #[error("no Docker Engine answers at {host}: {reason}\n  help: start one (as root on Debian: scripts/engine.sh), or point DOCKER_HOST at a running engine")]
    NoDaemon {
        /// The address that was tried.
        host: String,
        /// What the connection attempt said.
        reason: String,
    },

    /// `DOCKER_HOST` names an engine that does not answer.
    #[error("no Docker Engine answers at {host}: {reason}\n  help: start one there, or fix DOCKER_HOST (it is set to {host}; unset it to use the local engine at unix:///var/run/docker.sock)")]
    NoDaemonAtDockerHost {
        /// The address from `DOCKER_HOST`.
        host: String,
        /// What the connection attempt said.
        reason: String,
    },

    /// `DOCKER_HOST` is not an address dockception can use.
    #[error("DOCKER_HOST={host} is not a Docker Engine address: {reason}\n  help: set it like unix:///var/run/docker.sock or tcp://HOST:2375, or unset it to use the local engine")]
    BadDockerHost {
        /// The value of `DOCKER_HOST`.
        host: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The engine's socket exists but this user may not use it.
    #[error("permission denied on the Docker Engine socket at {host}\n  help: add yourself to the docker group (sudo usermod -aG docker $USER, then log in again), or run as a user that may use the socket")]
    EngineAccessDenied {
        /// The address that was tried.
        host: String,
    },

    /// The engine answers but speaks an API older than dockception needs.
    #[error("the Docker Engine at {host} speaks API {version}; dockception needs {minimum} or newer (Docker 1.13+)\n  help: upgrade the engine, or point DOCKER_HOST at a newer one")]
    EngineTooOld {
        /// The address of the engine.
        host: String,
        /// The API version it speaks.
        version: String,
        /// The oldest API version dockception speaks.
        minimum: String,
    },

    /// The connection to the engine broke in the middle of a run (it stopped or restarted).
    #[error("the Docker Engine stopped answering while {action}: {message}\n  help: check the engine (docker info) and start it again; then `dockception clean` removes what this run left behind")]
    EngineGone {
        /// What dockception was doing.
        action: String,
        /// What the connection said.
        message: String,
    },

    /// An image is neither present locally nor pullable.
    #[error("image {image} is not present locally and could not be pulled: {reason}\n  help: build or import it locally (scripts/engine.sh makes gcc:local, golang:local and busybox:local), or fix the name in the manifest")]
    ImageUnavailable {
        /// The image reference from the manifest.
        image: String,
        /// The daemon's message from the failed pull.
        reason: String,
    },

    /// The daemon refused the runtime image build.
    #[error("building the runtime image failed: {message}\n  help: check [runtime] in the manifest; `dockception context | tar -t` shows what was sent")]
    ImageBuild {
        /// The daemon's message.
        message: String,
    },

    /// Any other Docker Engine call failed.
    #[error("{action} failed: {message}")]
    Docker {
        /// What dockception was doing, e.g. "creating the builder container".
        action: String,
        /// The daemon's message.
        message: String,
    },

    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] crate::fsutil::IoError),
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<std::path::PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io(crate::fsutil::IoError::new(action, path, source))
    }
}

/// This stage's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
