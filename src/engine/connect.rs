//! Finding the engine the way the docker CLI does, and refusing one too old to speak to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;

use super::error::{error_chain, io_kind};
use super::{Engine, Error, Result};

/// The oldest Engine API dockception speaks: `Mounts` in a container's host config came with
/// API 1.25 (Docker 1.13, January 2017).
const MIN_API_VERSION: (usize, usize) = (1, 25);

/// Where the engine is when `DOCKER_HOST` does not say.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The answer to the background `/version` request, once it came.
pub(super) enum ApiVersion {
    Asked(
        tokio::task::JoinHandle<
            std::result::Result<bollard::models::SystemVersion, bollard::errors::Error>,
        >,
    ),
    Known((usize, usize)),
}

impl Engine {
    /// Connect the way the docker CLI does (`DOCKER_HOST`, else the local socket) and make sure
    /// an engine answers.
    pub async fn connect() -> Result<Engine> {
        let from_env = docker_host();
        let host = from_env.clone().unwrap_or_else(|| DEFAULT_HOST.to_string());
        let docker = match &from_env {
            Some(h) => Docker::connect_with_host(h),
            None => Docker::connect_with_defaults(),
        }
        .map_err(|e| connect_error(&host, from_env.is_some(), &e))?;
        match tokio::time::timeout(Duration::from_secs(10), docker.ping()).await {
            Err(_) => {
                return Err(Error::NoDaemon {
                    host,
                    reason: "it did not answer within 10 s".into(),
                })
            }
            Ok(Err(e)) => return Err(connect_error(&host, from_env.is_some(), &e)),
            Ok(Ok(_)) => {}
        }
        // bollard sends no version prefix (the daemon answers in its own API version), so no
        // negotiation is needed: only the check that the engine is not too old.
        let asking = docker.clone();
        let version = tokio::spawn(async move { asking.version().await });
        Ok(Engine {
            docker,
            host,
            live_containers: Mutex::new(Vec::new()),
            ensured: Mutex::new(HashMap::new()),
            redact: Mutex::new(Vec::new()),
            api_version: tokio::sync::Mutex::new(ApiVersion::Asked(version)),
        })
    }

    /// `error`, unless the engine is too old for dockception, which is then the reason to give:
    /// an old engine answers reads in shapes bollard cannot parse. Only failures wait for the
    /// version.
    pub(super) async fn failed(&self, error: Error) -> Error {
        match self.supported().await {
            Err(too_old @ Error::EngineTooOld { .. }) => too_old,
            _ => error,
        }
    }

    /// Make sure the engine speaks [`MIN_API_VERSION`] or newer, before creating anything on
    /// it. Waits for the answer asked for at connect the first time only.
    pub(super) async fn supported(&self) -> Result<()> {
        let mut known = self.api_version.lock().await;
        let version = match &mut *known {
            ApiVersion::Known(version) => *version,
            ApiVersion::Asked(pending) => {
                let answer = pending.await.map_err(|e| Error::NoDaemon {
                    host: self.host.clone(),
                    reason: format!("asking for its version failed: {e}"),
                })?;
                let answer =
                    answer.map_err(|e| connect_error(&self.host, docker_host().is_some(), &e))?;
                let version = api_version_of(&self.host, answer.api_version)?;
                *known = ApiVersion::Known(version);
                version
            }
        };
        check_api_version(&self.host, version)
    }
}

/// `DOCKER_HOST`, when it is set to something.
fn docker_host() -> Option<String> {
    std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty())
}

/// The version the engine named in its `/version` answer.
fn api_version_of(host: &str, named: Option<String>) -> Result<(usize, usize)> {
    parse_api_version(named.as_deref().unwrap_or("")).ok_or_else(|| Error::NoDaemon {
        host: host.to_string(),
        reason: format!("it names no API version dockception understands ({named:?})"),
    })
}

/// Turn a failed connection into the one error that says what to do about it.
fn connect_error(host: &str, from_env: bool, e: &bollard::errors::Error) -> Error {
    use bollard::errors::Error as E;
    let reason = error_chain(e);
    if let E::UnsupportedURISchemeError { .. } = e {
        return Error::BadDockerHost {
            host: host.to_string(),
            reason: "dockception speaks to unix:// sockets and tcp:// or http:// addresses".into(),
        };
    }
    let kind = io_kind(e);
    let lower = reason.to_lowercase();
    if kind == Some(std::io::ErrorKind::PermissionDenied) || lower.contains("permission denied") {
        return Error::EngineAccessDenied {
            host: host.to_string(),
        };
    }
    if lower.contains("dns error") || lower.contains("failed to lookup address") {
        return Error::BadDockerHost {
            host: host.to_string(),
            reason: format!("its host name does not resolve ({reason})"),
        };
    }
    let reason = match (e, kind) {
        (E::SocketNotFoundError(path), _) => format!("the socket {path} does not exist"),
        (_, Some(std::io::ErrorKind::NotFound)) => "the socket does not exist".to_string(),
        (_, Some(std::io::ErrorKind::ConnectionRefused)) => {
            "nothing listens there (connection refused)".to_string()
        }
        _ => reason,
    };
    if from_env {
        Error::NoDaemonAtDockerHost {
            host: host.to_string(),
            reason,
        }
    } else {
        Error::NoDaemon {
            host: host.to_string(),
            reason,
        }
    }
}

/// `"1.41"` -> `(1, 41)`.
fn parse_api_version(text: &str) -> Option<(usize, usize)> {
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Refuse an engine whose API is older than [`MIN_API_VERSION`].
fn check_api_version(host: &str, version: (usize, usize)) -> Result<()> {
    if version < MIN_API_VERSION {
        return Err(Error::EngineTooOld {
            host: host.to_string(),
            version: format!("{}.{}", version.0, version.1),
            minimum: format!("{}.{}", MIN_API_VERSION.0, MIN_API_VERSION.1),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_engines_are_refused_with_the_versions() {
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert_eq!(parse_api_version(" 1.9 "), Some((1, 9)));
        assert_eq!(parse_api_version("1"), None);
        assert_eq!(parse_api_version("one.two"), None);
        assert!(check_api_version("unix:///x", (1, 41)).is_ok());
        assert!(check_api_version("unix:///x", (1, 25)).is_ok());
        let e = check_api_version("unix:///x", (1, 24)).expect_err("too old");
        let text = e.to_string();
        assert!(
            text.starts_with(
                "the Docker Engine at unix:///x speaks API 1.24; dockception needs 1.25 or newer"
            ),
            "{text}"
        );
        assert!(text.contains("help: upgrade the engine"), "{text}");
    }
}
