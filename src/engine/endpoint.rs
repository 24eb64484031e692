//! Which engine to talk to, decided the way the docker CLI decides: `DOCKER_HOST` (with
//! `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` for TLS), else the current Docker context
//! (`DOCKER_CONTEXT`, else `currentContext` in `$DOCKER_CONFIG/config.json`), else the local
//! socket. Plain data and files only: nothing here opens a connection.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Error, Result};

/// Where the engine is when nothing says otherwise.
pub(super) const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Which setting chose the engine: what a connection error names, and what it says to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChosenBy {
    /// Nothing was set: the local socket.
    Default,
    /// `DOCKER_HOST`, with its value.
    DockerHost(String),
    /// A Docker context, by name.
    Context {
        /// The context's name.
        name: String,
        /// What named it.
        from: ContextFrom,
    },
}

/// What named the current Docker context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextFrom {
    /// `DOCKER_CONTEXT`.
    Env,
    /// `currentContext` in this `config.json` (as it is shown: `~/` for the home folder).
    Config(String),
}

impl fmt::Display for ChosenBy {
    /// The setting, as a user would look for it: `DOCKER_HOST`, ``the context `x` (DOCKER_CONTEXT)``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChosenBy::Default => {
                write!(f, "the default (neither DOCKER_HOST nor a context is set)")
            }
            ChosenBy::DockerHost(_) => write!(f, "DOCKER_HOST"),
            ChosenBy::Context { name, from } => write!(f, "the context `{name}` {from}"),
        }
    }
}

impl fmt::Display for ContextFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextFrom::Env => write!(f, "(DOCKER_CONTEXT)"),
            ContextFrom::Config(path) => write!(f, "in {path}"),
        }
    }
}

impl ChosenBy {
    /// `", chosen by …"` after an address, or nothing for the default socket.
    pub fn origin(&self) -> String {
        match self {
            ChosenBy::Default => String::new(),
            other => format!(", chosen by {other}"),
        }
    }

    /// How to point dockception at another engine, for the end of a `help:` line.
    pub fn change(&self) -> String {
        match self {
            ChosenBy::Default => {
                "point DOCKER_HOST (or a Docker context) at a running engine".to_string()
            }
            ChosenBy::DockerHost(host) => format!(
                "fix DOCKER_HOST (it is set to {host}; unset it to use the local engine at {DEFAULT_HOST})"
            ),
            ChosenBy::Context {
                name,
                from: ContextFrom::Env,
            } => format!(
                "fix the context (docker context inspect {name}), or set DOCKER_CONTEXT to another one (unset it for the local engine)"
            ),
            ChosenBy::Context {
                name,
                from: ContextFrom::Config(_),
            } => format!(
                "fix the context (docker context inspect {name}), or choose another with `docker context use NAME` (`docker context use default` for the local engine)"
            ),
        }
    }
}

/// The TLS files of an endpoint: the CA that signs the engine's certificate, and the client's
/// own certificate and key when there are both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsFiles {
    pub ca: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The engine to talk to and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// The address: `unix://…`, `tcp://…`, `ssh://…`.
    pub host: String,
    /// TLS files, for a `tcp://` address that uses TLS.
    pub tls: Option<TlsFiles>,
    /// The setting that chose it.
    pub chosen_by: ChosenBy,
}

/// Looks up an environment variable; `None` when it is unset or empty.
pub(super) type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// What endpoint resolution reads: the environment and the home folder, so tests can give
/// their own.
pub(super) struct Settings {
    pub env: Lookup,
    pub home: Option<PathBuf>,
}

impl Settings {
    /// This process's environment and home folder.
    pub fn from_process() -> Settings {
        Settings {
            env: Box::new(|name| std::env::var(name).ok().filter(|v| !v.is_empty())),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// `$DOCKER_CONFIG`, else `~/.docker`.
    fn config_dir(&self) -> Option<PathBuf> {
        self.var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| self.home.as_ref().map(|h| h.join(".docker")))
    }

    /// `path` as a user would write it: `~/…` under the home folder.
    fn shown(&self, path: &Path) -> String {
        match self.home.as_ref().and_then(|h| path.strip_prefix(h).ok()) {
            Some(rest) => format!("~/{}", rest.display()),
            None => path.display().to_string(),
        }
    }
}

/// Decide which engine to talk to, as the docker CLI does.
pub(super) fn resolve(settings: &Settings) -> Result<Endpoint> {
    if let Some(host) = settings.var("DOCKER_HOST") {
        let chosen_by = ChosenBy::DockerHost(host.clone());
        let tls = match settings.var("DOCKER_TLS_VERIFY") {
            Some(_) if host.starts_with("tcp://") || host.starts_with("https://") => {
                let dir = match settings.var("DOCKER_CERT_PATH") {
                    Some(dir) => PathBuf::from(dir),
                    None => settings.config_dir().ok_or_else(|| Error::BadTls {
                        host: host.clone(),
                        chosen_by: chosen_by.clone(),
                        file: PathBuf::from("~/.docker/ca.pem"),
                        problem: "there is no home folder to find it in".into(),
                    })?,
                };
                Some(tls_files(&host, &chosen_by, &dir, true)?)
            }
            _ => None,
        };
        return Ok(Endpoint {
            host,
            tls,
            chosen_by,
        });
    }
    let config_dir = settings.config_dir();
    let named = match settings.var("DOCKER_CONTEXT") {
        Some(name) => Some((name, ContextFrom::Env)),
        None => match &config_dir {
            Some(dir) => current_context(settings, dir)?,
            None => None,
        },
    };
    match named {
        Some((name, from)) if name != "default" => {
            let dir = config_dir.unwrap_or_else(|| PathBuf::from(".docker"));
            context_endpoint(settings, &dir, name, from)
        }
        _ => Ok(Endpoint {
            host: DEFAULT_HOST.to_string(),
            tls: None,
            chosen_by: ChosenBy::Default,
        }),
    }
}

/// `currentContext` in `config.json`, when it names one.
fn current_context(settings: &Settings, dir: &Path) -> Result<Option<(String, ContextFrom)>> {
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::BadDockerConfig {
                path: settings.shown(&path),
                reason: e.to_string(),
            })
        }
    };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::BadDockerConfig {
            path: settings.shown(&path),
            reason: format!("it is not JSON ({e})"),
        })?;
    Ok(config
        .get("currentContext")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
        .map(|c| (c.to_string(), ContextFrom::Config(settings.shown(&path)))))
}

/// The docker endpoint of the context `name`: `contexts/meta/<sha256 of name>/meta.json`, and
/// its TLS files under `contexts/tls/<sha256 of name>/docker/`.
fn context_endpoint(
    settings: &Settings,
    config_dir: &Path,
    name: String,
    from: ContextFrom,
) -> Result<Endpoint> {
    let id = format!("{:x}", Sha256::digest(name.as_bytes()));
    let meta = config_dir.join("contexts/meta").join(&id).join("meta.json");
    let bad = |reason: String| Error::BadContext {
        name: name.clone(),
        from: from.clone(),
        reason,
    };
    let text = match std::fs::read_to_string(&meta) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(format!(
                "does not exist (there is no {})",
                settings.shown(&meta)
            )))
        }
        Err(e) => {
            return Err(bad(format!(
                "cannot be read ({}: {e})",
                settings.shown(&meta)
            )))
        }
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| bad(format!("is not JSON ({}: {e})", settings.shown(&meta))))?;
    let docker = &value["Endpoints"]["docker"];
    let host = docker["Host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            bad(format!(
                "names no Docker Engine (no Endpoints.docker.Host in {})",
                settings.shown(&meta)
            ))
        })?
        .to_string();
    let chosen_by = ChosenBy::Context {
        name: name.clone(),
        from: from.clone(),
    };
    let tls_dir = config_dir.join("contexts/tls").join(&id).join("docker");
    let tls = if tls_dir.join("ca.pem").exists() && host.starts_with("tcp://") {
        if docker["SkipTLSVerify"].as_bool() == Some(true) {
            return Err(bad(
                "skips TLS verification (SkipTLSVerify), which dockception does not do".into(),
            ));
        }
        Some(tls_files(&host, &chosen_by, &tls_dir, false)?)
    } else {
        None
    };
    Ok(Endpoint {
        host,
        tls,
        chosen_by,
    })
}

/// `ca.pem`, and `cert.pem` with `key.pem` when both exist, in `dir`, each checked to hold
/// what its name says, so a wrong file is named before any connection.
fn tls_files(host: &str, chosen_by: &ChosenBy, dir: &Path, from_env: bool) -> Result<TlsFiles> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |file: &Path, problem: String| Error::BadTls {
        host: host.to_string(),
        chosen_by: chosen_by.clone(),
        file: file.to_path_buf(),
        problem,
    };
    let read = |file: &Path| -> Result<Vec<u8>> {
        std::fs::read(file).map_err(|e| {
            let how = if from_env && e.kind() == std::io::ErrorKind::NotFound {
                "it does not exist (DOCKER_TLS_VERIFY is set; DOCKER_CERT_PATH names the folder of ca.pem, cert.pem and key.pem)".to_string()
            } else {
                format!("it cannot be read ({e})")
            };
            bad(file, how)
        })
    };
    let certificates = |file: &Path| -> Result<()> {
        let bytes = read(file)?;
        let found = CertificateDer::pem_slice_iter(&bytes)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(file, format!("it is not a PEM certificate ({e:?})")))?;
        if found.is_empty() {
            return Err(bad(file, "it holds no PEM certificate".into()));
        }
        Ok(())
    };
    let ca = dir.join("ca.pem");
    certificates(&ca)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let client = match (cert.exists(), key.exists()) {
        (false, false) => None,
        (true, false) => {
            return Err(bad(
                &key,
                format!("it is missing beside {}", cert.display()),
            ))
        }
        (false, true) => {
            return Err(bad(
                &cert,
                format!("it is missing beside {}", key.display()),
            ))
        }
        (true, true) => {
            certificates(&cert)?;
            PrivateKeyDer::from_pem_slice(&read(&key)?)
                .map_err(|e| bad(&key, format!("it is not a PEM private key ({e:?})")))?;
            Some((cert, key))
        }
    };
    Ok(TlsFiles { ca, client })
}

#[cfg(test)]
mod tests;
