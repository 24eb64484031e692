//! Connecting to the engine `endpoint` chose (a socket, TCP with or without TLS, or ssh
//! through `ssh`'s bridge), and refusing one too old to speak to. A failure names the setting
//! that chose the engine and the file at fault.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;

use super::endpoint::{self, Endpoint, Settings};
use super::error::{error_chain, io_kind};
use super::kind::EngineKind;
use super::ssh::{SshBridge, SshDestination};
use super::{Engine, Error, Result};

/// The oldest Engine API dockception speaks: `Mounts` in a container's host config came with
/// API 1.25 (Docker 1.13, January 2017).
const MIN_API_VERSION: (usize, usize) = (1, 25);

/// The answer to the background `/version` request, once it came. dockerd answers it by
/// running `runc --version` and its other components (5 to 8 ms of its CPU here), so it is
/// asked only once a build needs the engine beyond reads (`None` until then): an up-to-date
/// build never asks.
pub(super) enum ApiVersion {
    Asked(
        tokio::task::JoinHandle<
            std::result::Result<bollard::models::SystemVersion, bollard::errors::Error>,
        >,
    ),
    /// The API version and which engine it is.
    Known((usize, usize), EngineKind),
}

/// bollard's read and write timeout, in seconds (its default).
const TIMEOUT_SECS: u64 = 120;

/// What the error for an address of no known kind says.
const SCHEMES: &str = "dockception speaks to unix:// sockets, tcp:// or http:// addresses (TLS with DOCKER_TLS_VERIFY) and ssh://";

impl Engine {
    /// Connect the way the docker CLI does (`DOCKER_HOST` with its TLS settings, else the
    /// current Docker context, else the local socket) and make sure an engine answers.
    pub async fn connect() -> Result<Engine> {
        let endpoint = endpoint::resolve(&Settings::from_process())?;
        let (docker, ssh) = open(&endpoint)?;
        match tokio::time::timeout(Duration::from_secs(10), docker.ping()).await {
            Err(_) => {
                return Err(match ssh.as_ref().and_then(|s| s.last_error()) {
                    Some(message) => ssh_error(&endpoint, message),
                    None => Error::NoDaemon {
                        host: endpoint.host.clone(),
                        chosen_by: endpoint.chosen_by.clone(),
                        reason: "it did not answer within 10 s".into(),
                    },
                })
            }
            Ok(Err(e)) => return Err(connect_error(&endpoint, ssh.as_ref(), &e)),
            Ok(Ok(_)) => {}
        }
        Ok(Engine {
            docker,
            host: endpoint.host.clone(),
            endpoint,
            ssh,
            live_containers: Mutex::new(Vec::new()),
            ensured: Mutex::new(HashMap::new()),
            redact: Mutex::new(Vec::new()),
            api_version: tokio::sync::Mutex::new(None),
            mode_setting: Mutex::new(None),
            mode: tokio::sync::OnceCell::new(),
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
        let (version, _) = self.version_answer().await?;
        check_api_version(&self.host, version)
    }

    /// Ask the engine for its version in the background, once: a build that will need
    /// [`Engine::supported`] or [`Engine::kind`] calls this as soon as it knows, so the answer
    /// is there when it is needed.
    pub(crate) async fn ask_version(&self) {
        self.asked_version(&mut *self.api_version.lock().await);
    }

    /// `known`, with the request sent when nobody asked yet.
    fn asked_version<'a>(&self, known: &'a mut Option<ApiVersion>) -> &'a mut ApiVersion {
        known.get_or_insert_with(|| {
            // bollard sends no version prefix (the daemon answers in its own API version), so
            // no negotiation is needed: only the check that the engine is not too old.
            let asking = self.docker.clone();
            ApiVersion::Asked(tokio::spawn(async move { asking.version().await }))
        })
    }

    /// Which engine this is ([`EngineKind`]: what it can do), from its `/version` answer.
    pub(crate) async fn kind(&self) -> Result<EngineKind> {
        Ok(self.version_answer().await?.1)
    }

    /// The API version and kind the engine's `/version` named; asks, when nobody did yet, and
    /// waits for the answer the first time only.
    async fn version_answer(&self) -> Result<((usize, usize), EngineKind)> {
        let mut known = self.api_version.lock().await;
        match self.asked_version(&mut known) {
            ApiVersion::Known(version, kind) => Ok((*version, *kind)),
            ApiVersion::Asked(pending) => {
                let answer = pending.await.map_err(|e| Error::NoDaemon {
                    host: self.host.clone(),
                    chosen_by: self.endpoint.chosen_by.clone(),
                    reason: format!("asking for its version failed: {e}"),
                })?;
                let answer =
                    answer.map_err(|e| connect_error(&self.endpoint, self.ssh.as_ref(), &e))?;
                let kind = EngineKind::from_components(
                    answer.components.iter().flatten().map(|c| c.name.as_str()),
                );
                let version = api_version_of(&self.endpoint, answer.api_version)?;
                *known = Some(ApiVersion::Known(version, kind));
                Ok((version, kind))
            }
        }
    }
}

/// A bollard client for `endpoint`, and the local bridge an `ssh://` engine is reached
/// through. Nothing is sent yet.
fn open(endpoint: &Endpoint) -> Result<(Docker, Option<SshBridge>)> {
    let host = endpoint.host.as_str();
    let bad_address = |reason: String| Error::BadDockerHost {
        host: host.to_string(),
        chosen_by: endpoint.chosen_by.clone(),
        reason,
    };
    if host.starts_with("ssh://") {
        let destination = SshDestination::parse(host).map_err(bad_address)?;
        let bridge = SshBridge::start(destination).map_err(|e| Error::Ssh {
            host: host.to_string(),
            chosen_by: endpoint.chosen_by.clone(),
            message: format!("serving a local socket for it failed: {e}"),
        })?;
        let socket = format!("unix://{}", bridge.socket().display());
        let docker = Docker::connect_with_unix(&socket, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(|e| connect_error(endpoint, None, &e))?;
        return Ok((docker, Some(bridge)));
    }
    let docker = match &endpoint.tls {
        Some(tls) => {
            // The process-wide provider: ring (see Cargo.toml); a second install is a no-op.
            let _ = rustls::crypto::ring::default_provider().install_default();
            // Without a client certificate, bollard finds none at these paths and sends none.
            let (cert, key) = tls.client.clone().unwrap_or_else(|| {
                (
                    tls.ca.with_file_name("cert.pem"),
                    tls.ca.with_file_name("key.pem"),
                )
            });
            Docker::connect_with_ssl(
                host,
                &key,
                &cert,
                &tls.ca,
                TIMEOUT_SECS,
                bollard::API_DEFAULT_VERSION,
            )
        }
        None if ["unix://", "tcp://", "http://"]
            .iter()
            .any(|scheme| host.starts_with(scheme)) =>
        {
            Docker::connect_with_host(host)
        }
        None => return Err(bad_address(SCHEMES.into())),
    };
    docker
        .map_err(|e| connect_error(endpoint, None, &e))
        .map(|d| (d, None))
}

/// The version the engine named in its `/version` answer.
fn api_version_of(endpoint: &Endpoint, named: Option<String>) -> Result<(usize, usize)> {
    parse_api_version(named.as_deref().unwrap_or("")).ok_or_else(|| Error::NoDaemon {
        host: endpoint.host.clone(),
        chosen_by: endpoint.chosen_by.clone(),
        reason: format!("it names no API version dockception understands ({named:?})"),
    })
}

/// The one error that says what an ssh failure was, in ssh's own words.
fn ssh_error(endpoint: &Endpoint, message: String) -> Error {
    Error::Ssh {
        host: endpoint.host.clone(),
        chosen_by: endpoint.chosen_by.clone(),
        message,
    }
}

/// Turn a failed connection into the one error that says what to do about it.
fn connect_error(
    endpoint: &Endpoint,
    ssh: Option<&SshBridge>,
    e: &bollard::errors::Error,
) -> Error {
    use bollard::errors::Error as E;
    let host = endpoint.host.as_str();
    let chosen_by = endpoint.chosen_by.clone();
    if let Some(message) = ssh.and_then(|s| s.last_error()) {
        return ssh_error(endpoint, message);
    }
    let reason = error_chain(e);
    if let E::UnsupportedURISchemeError { .. } = e {
        return Error::BadDockerHost {
            host: host.to_string(),
            chosen_by,
            reason: SCHEMES.into(),
        };
    }
    if let Some(tls) = tls_error(endpoint, e, &reason) {
        return tls;
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
            chosen_by,
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
    Error::NoDaemon {
        host: host.to_string(),
        chosen_by,
        reason,
    }
}

/// The TLS error naming the file at fault, when `e` is a disagreement about TLS: the
/// engine's certificate not signed by our CA or not for its address, our client certificate
/// refused, or one side speaking TLS and the other not.
fn tls_error(endpoint: &Endpoint, e: &bollard::errors::Error, reason: &str) -> Option<Error> {
    let bad = |file: PathBuf, problem: &str| {
        Some(Error::BadTls {
            host: endpoint.host.clone(),
            chosen_by: endpoint.chosen_by.clone(),
            file,
            problem: problem.to_string(),
        })
    };
    let Some(tls) = &endpoint.tls else {
        // Plain HTTP to a port that speaks TLS: Go's TLS server answers with a 400 that says so.
        let message = match e {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message.as_str(),
            _ => reason,
        };
        if message.contains("HTTPS server") {
            return Some(Error::NoDaemon {
                host: endpoint.host.clone(),
                chosen_by: endpoint.chosen_by.clone(),
                reason: "the engine there speaks TLS, and DOCKER_TLS_VERIFY is not set (set it, with DOCKER_CERT_PATH naming the folder of ca.pem, cert.pem and key.pem)".into(),
            });
        }
        return None;
    };
    let cert = tls
        .client
        .as_ref()
        .map(|(c, _)| c.clone())
        .unwrap_or_else(|| tls.ca.with_file_name("cert.pem"));
    let found = |words: &[&str]| words.iter().any(|w| reason.contains(w));
    if found(&["UnknownIssuer", "BadSignature"]) {
        return bad(
            tls.ca.clone(),
            "the engine's certificate is not signed by the CA in",
        );
    }
    if found(&["NotValidForName"]) {
        return bad(
            tls.ca.clone(),
            "the engine's certificate does not name the address it was reached at (its CA is)",
        );
    }
    if found(&["Expired", "NotValidYet"]) {
        return bad(
            tls.ca.clone(),
            "the engine's certificate has expired or is not valid yet (its CA is)",
        );
    }
    if found(&[
        "CertificateRequired",
        "BadCertificate",
        "UnknownCA",
        "bad certificate",
    ]) {
        let problem = if tls.client.is_some() {
            "the engine refused dockception's client certificate"
        } else {
            "the engine wants a client certificate and there is none"
        };
        return bad(cert, problem);
    }
    if found(&["InvalidContentType", "corrupt message"]) {
        return bad(
            tls.ca.clone(),
            "the engine does not speak TLS there (unset DOCKER_TLS_VERIFY for a plain tcp:// engine); the CA read was",
        );
    }
    None
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
