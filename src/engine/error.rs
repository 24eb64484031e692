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
        /// What dockception was doing and on what, e.g. "creating the builder container for
        /// gcc:local".
        action: String,
        /// The daemon's message.
        message: String,
    },

    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] crate::fsutil::IoError),
}

/// This stage's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a bollard call's answer means to dockception.
pub(super) trait Answer<T> {
    /// `None` for the engine's 404: the thing asked about is not there.
    fn or_absent(self) -> std::result::Result<Option<T>, bollard::errors::Error>;
    /// The error that names what was being done (`action` names the object too).
    fn doing(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Answer<T> for std::result::Result<T, bollard::errors::Error> {
    fn or_absent(self) -> std::result::Result<Option<T>, bollard::errors::Error> {
        match self {
            Ok(found) => Ok(Some(found)),
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn doing(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| docker_error(action(), e))
    }
}

pub(super) fn status_code(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The daemon's own words when there are some.
pub(super) fn daemon_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// A broken connection says the engine is gone (which `clean` is the cure for); anything
/// else is the daemon's answer to `action`.
pub(super) fn docker_error(action: String, e: bollard::errors::Error) -> Error {
    if is_connection_lost(&e) {
        let message = match io_kind(&e) {
            Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_string(),
            Some(std::io::ErrorKind::NotFound) => "its socket is gone".to_string(),
            Some(
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof,
            ) => "the connection was cut".to_string(),
            _ if matches!(e, bollard::errors::Error::RequestTimeoutError) => {
                "no answer in time".to_string()
            }
            _ => error_chain(&e),
        };
        return Error::EngineGone { action, message };
    }
    let message = daemon_message(&e);
    Error::Docker { action, message }
}

/// Whether `e` means the connection to the engine broke (it stopped, restarted or hung up),
/// as opposed to the engine answering with an error.
pub(super) fn is_connection_lost(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        e,
        E::HyperResponseError { .. }
            | E::IOError { .. }
            | E::HyperLegacyError { .. }
            | E::RequestTimeoutError
            | E::SocketNotFoundError(_)
    )
}

/// `e` and its sources, joined with `: `, without repeating a source already in the text.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The first I/O error in `e`'s chain of sources.
pub(super) fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        current = err.source();
    }
    None
}
