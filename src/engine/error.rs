//! What can go wrong talking to a container engine; each failure names what it was doing and on what.

use super::endpoint::{ChosenBy, ContextFrom};

/// What can go wrong in this stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Docker Engine answers at the address the settings chose.
    #[error("no Docker Engine answers at {host}{}: {reason}\n  help: {}", chosen_by.origin(), no_daemon_help(chosen_by))]
    NoDaemon {
        /// The address that was tried.
        host: String,
        /// The setting that chose it.
        chosen_by: ChosenBy,
        /// What the connection attempt said.
        reason: String,
    },

    /// `DOCKER_HOST` or a context names something that is not an engine address.
    #[error(
        "{} is not a Docker Engine address: {reason}\n  help: {}",
        address_setting(host, chosen_by),
        address_help(chosen_by)
    )]
    BadDockerHost {
        /// The address as it was given.
        host: String,
        /// The setting that gave it.
        chosen_by: ChosenBy,
        /// What is wrong with it.
        reason: String,
    },

    /// A TLS file is missing or wrong, or the engine and dockception do not agree on TLS.
    #[error("TLS failed with the Docker Engine at {host}{}: {problem}: {}\n  help: {}", chosen_by.origin(), file.display(), tls_help(chosen_by))]
    BadTls {
        /// The address of the engine.
        host: String,
        /// The setting that chose it.
        chosen_by: ChosenBy,
        /// The file at fault.
        file: std::path::PathBuf,
        /// What is wrong, in words.
        problem: String,
    },

    /// ssh to the engine's host did not work; `message` is ssh's own.
    #[error("ssh failed for the Docker Engine at {host}{}: {message}\n  help: make `ssh {} docker system dial-stdio` work without a prompt (a key or ssh-agent, the host in known_hosts, docker on that host's PATH), or {}", chosen_by.origin(), host.trim_start_matches("ssh://"), chosen_by.change())]
    Ssh {
        /// The `ssh://` address.
        host: String,
        /// The setting that chose it.
        chosen_by: ChosenBy,
        /// What ssh said.
        message: String,
    },

    /// The Docker context that `DOCKER_CONTEXT` or `config.json` names cannot be used.
    #[error("the Docker context `{name}` {from} {reason}\n  help: `docker context ls` lists the contexts; {}", context_help(from))]
    BadContext {
        /// The context's name.
        name: String,
        /// What named it.
        from: ContextFrom,
        /// What is wrong with it.
        reason: String,
    },

    /// The docker CLI's `config.json` cannot be read, so the current context is unknown.
    #[error("the docker CLI's configuration {path} cannot be used to find the current context: {reason}\n  help: fix or remove it, or set DOCKER_HOST or DOCKER_CONTEXT")]
    BadDockerConfig {
        /// The file, as shown to the user.
        path: String,
        /// What is wrong.
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

    /// An engine call about an image failed (inspect, history, pull, tag, export, its files).
    #[error("{action} failed: {message}")]
    Image {
        /// What dockception was doing, naming the image, e.g. "tagging image ID as app:1".
        action: String,
        /// The image: a reference or an id.
        image: String,
        /// The daemon's message.
        message: String,
    },

    /// An engine call about a container failed (create, attach, start, wait, exec, commit,
    /// remove).
    #[error("{action} failed: {message}")]
    Container {
        /// What dockception was doing, naming the container, e.g. "starting container NAME".
        action: String,
        /// The container's name.
        container: String,
        /// The daemon's message.
        message: String,
    },

    /// An engine call about a volume failed (create, inspect, remove).
    #[error("{action} failed: {message}")]
    Volume {
        /// What dockception was doing, naming the volume.
        action: String,
        /// The volume's name.
        volume: String,
        /// The daemon's message.
        message: String,
    },

    /// An engine call about no one object failed (listing what dockception made), or what the
    /// engine gave back made no sense.
    #[error("{action} failed: {message}")]
    Docker {
        /// What dockception was doing, e.g. "listing dockception's containers".
        action: String,
        /// The daemon's message.
        message: String,
    },

    /// The engine was used in local mode but cannot see this machine's files.
    #[error("the Docker Engine at {host} cannot see this machine's files ({message}), but the build bind-mounts them: local mode, {why}\n  help: build with --engine-mode remote or set [engine] mode = \"remote\" in the manifest (sources are then synced into volumes); with auto, the next build asks the engine again")]
    CannotSeeFiles {
        /// The engine's address.
        host: String,
        /// Which setting chose local mode.
        why: String,
        /// The daemon's words.
        message: String,
    },

    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] crate::fsutil::IoError),
}

/// The `help:` of [`Error::NoDaemon`].
fn no_daemon_help(chosen_by: &ChosenBy) -> String {
    match chosen_by {
        ChosenBy::Default => "start one (as root on Debian: scripts/engine.sh), or point DOCKER_HOST at a running engine".to_string(),
        other => format!("start one there, or {}", other.change()),
    }
}

/// The setting that holds a wrong address, with its value.
fn address_setting(host: &str, chosen_by: &ChosenBy) -> String {
    match chosen_by {
        ChosenBy::Context { .. } => format!("the host {host} of {chosen_by}"),
        _ => format!("DOCKER_HOST={host}"),
    }
}

/// The `help:` of [`Error::BadDockerHost`].
fn address_help(chosen_by: &ChosenBy) -> String {
    match chosen_by {
        ChosenBy::Context { name, .. } => format!("give it one like unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST (docker context update {name} --docker host=…), or {}", chosen_by.change()),
        _ => "set it like unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST, or unset it to use the local engine".to_string(),
    }
}

/// The `help:` of [`Error::BadTls`].
fn tls_help(chosen_by: &ChosenBy) -> String {
    match chosen_by {
        ChosenBy::Context { name, .. } => format!("give the context the engine's CA and a client certificate it accepts (docker context update {name} --docker host=…,ca=…,cert=…,key=…), or {}", chosen_by.change()),
        _ => "point DOCKER_CERT_PATH at the folder with the engine's ca.pem and a cert.pem and key.pem it accepts; DOCKER_TLS_VERIFY=1 for an engine that speaks TLS, unset for one that does not".to_string(),
    }
}

/// The `help:` of [`Error::BadContext`].
fn context_help(from: &ContextFrom) -> &'static str {
    match from {
        ContextFrom::Env => "set DOCKER_CONTEXT to one of them, or unset it for the local engine",
        ContextFrom::Config(_) => "`docker context use NAME` chooses another (`docker context use default` the local engine)",
    }
}

/// This stage's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a bollard call's answer means to dockception.
pub(super) trait Answer<T> {
    /// `None` for the engine's 404: the thing asked about is not there.
    fn or_absent(self) -> std::result::Result<Option<T>, bollard::errors::Error>;
    /// The error that names what was being done and `on` what (`action` names it too).
    fn doing(self, on: On<'_>, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Answer<T> for std::result::Result<T, bollard::errors::Error> {
    fn or_absent(self) -> std::result::Result<Option<T>, bollard::errors::Error> {
        match self {
            Ok(found) => Ok(Some(found)),
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn doing(self, on: On<'_>, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| docker_error(on, action(), e))
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

/// What a failed engine call was about: each kind of object has its own error variant, so a
/// caller can tell a missing image from a container that would not start.
#[derive(Debug, Clone, Copy)]
pub(super) enum On<'a> {
    Image(&'a str),
    Container(&'a str),
    Volume(&'a str),
    /// No one object: the engine's lists.
    Engine,
}

impl On<'_> {
    /// The error of this object's kind for `action`, with the daemon's `message`.
    pub(super) fn error(self, action: String, message: String) -> Error {
        match self {
            On::Image(image) => Error::Image {
                action,
                image: image.to_string(),
                message,
            },
            On::Container(container) => Error::Container {
                action,
                container: container.to_string(),
                message,
            },
            On::Volume(volume) => Error::Volume {
                action,
                volume: volume.to_string(),
                message,
            },
            On::Engine => Error::Docker { action, message },
        }
    }
}

/// A broken connection says the engine is gone (which `clean` is the cure for); anything
/// else is the daemon's answer to `action` on `on`.
pub(super) fn docker_error(on: On<'_>, action: String, e: bollard::errors::Error) -> Error {
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
    on.error(action, daemon_message(&e))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: message.into(),
        }
    }

    #[test]
    fn a_failed_call_is_an_error_of_its_objects_kind_naming_it() {
        let e = docker_error(
            On::Container("dcpt-b"),
            "starting container dcpt-b".into(),
            refused("no such network"),
        );
        assert!(
            matches!(&e, Error::Container { container, .. } if container == "dcpt-b"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "starting container dcpt-b failed: no such network"
        );
        let e = docker_error(On::Image("app:1"), "tagging".into(), refused("x"));
        assert!(
            matches!(&e, Error::Image { image, .. } if image == "app:1"),
            "{e:?}"
        );
        let e = docker_error(On::Volume("cache"), "removing".into(), refused("in use"));
        assert!(
            matches!(&e, Error::Volume { volume, .. } if volume == "cache"),
            "{e:?}"
        );
        let e = docker_error(On::Engine, "listing".into(), refused("x"));
        assert!(matches!(e, Error::Docker { .. }), "{e:?}");
    }

    #[test]
    fn a_lost_connection_is_the_engine_gone_whatever_the_object() {
        let e = docker_error(
            On::Image("app:1"),
            "pulling app:1".into(),
            bollard::errors::Error::RequestTimeoutError,
        );
        assert!(
            matches!(&e, Error::EngineGone { action, message } if action == "pulling app:1" && message == "no answer in time"),
            "{e:?}"
        );
    }
}
