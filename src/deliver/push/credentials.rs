//! Credentials the way the docker CLI finds them: `config.json` in `$DOCKER_CONFIG` (else
//! `~/.docker`), `credHelpers[registry]` first, then `auths`, then `credsStore`; a helper is
//! `docker-credential-NAME get` on PATH. No config, or none for the registry, is anonymous; a
//! helper that is named but cannot run is an error that names it, never a silent fall back to
//! anonymous.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

use super::{Error, RegistrySettings, Result};

/// The parts of the docker config that name helpers, to name the one that failed.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Helpers {
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

/// The docker config file `settings` points at.
fn config_file(settings: &RegistrySettings) -> Option<PathBuf> {
    let folder = settings
        .docker_config
        .clone()
        .or_else(|| std::env::var_os("DOCKER_CONFIG").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))?;
    Some(folder.join("config.json"))
}

/// The name the docker config knows `registry` by (Docker Hub's is its v1 address).
fn server_key(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        other => other,
    }
}

/// The credentials for `registry`.
pub(super) fn for_registry(registry: &str, settings: &RegistrySettings) -> Result<RegistryAuth> {
    let Some(config) = config_file(settings) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let bytes = match std::fs::read(&config) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(e) => {
            return Err(Error::Credentials {
                config,
                registry: registry.to_string(),
                message: e.to_string(),
            })
        }
    };
    let helpers: Helpers = serde_json::from_slice(&bytes).map_err(|e| Error::Credentials {
        config: config.clone(),
        registry: registry.to_string(),
        message: format!("it is not a docker config: {e}"),
    })?;
    let server = server_key(registry);
    let found = docker_credential::get_credential_from_reader(bytes.as_slice(), server);
    let helper = || {
        helpers
            .cred_helpers
            .get(server)
            .filter(|h| !h.is_empty())
            .or(helpers.creds_store.as_ref())
            .cloned()
            .unwrap_or_default()
    };
    let helper_error = |message: String| Error::CredentialHelper {
        helper: helper(),
        registry: registry.to_string(),
        config: config.clone(),
        message,
    };
    match found {
        Ok(DockerCredential::UsernamePassword(user, secret)) => {
            Ok(RegistryAuth::Basic(user, secret))
        }
        Ok(DockerCredential::IdentityToken(_)) => Err(Error::Credentials {
            config: config.clone(),
            registry: registry.to_string(),
            message: "it holds an identity (refresh) token, which dockception cannot use yet"
                .into(),
        }),
        Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(RegistryAuth::Anonymous),
        Err(CredentialRetrievalError::HelperCommunicationError) => Err(helper_error(
            "cannot be run: it is not on PATH, or not executable".into(),
        )),
        Err(CredentialRetrievalError::MalformedHelperResponse) => Err(helper_error(
            "answered with something other than {\"Username\": ..., \"Secret\": ...}".into(),
        )),
        Err(CredentialRetrievalError::HelperFailure { stdout, stderr, .. }) => {
            // As the docker CLI does: a helper that has nothing for this registry means none.
            let said = format!("{stdout}{stderr}");
            if said.contains("credentials not found") {
                Ok(RegistryAuth::Anonymous)
            } else {
                Err(helper_error(format!("failed: {}", said.trim())))
            }
        }
        Err(other) => Err(Error::Credentials {
            config: config.clone(),
            registry: registry.to_string(),
            message: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_config(json: &str) -> (tempfile::TempDir, RegistrySettings) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.json"), json).expect("write");
        let settings = RegistrySettings {
            docker_config: Some(dir.path().to_path_buf()),
            ..RegistrySettings::default()
        };
        (dir, settings)
    }

    #[test]
    fn auths_give_basic_credentials_and_no_entry_is_anonymous() {
        // "user:pass" in base64.
        let (_dir, settings) =
            with_config(r#"{"auths":{"reg.example:5000":{"auth":"dXNlcjpwYXNz"}}}"#);
        match for_registry("reg.example:5000", &settings).expect("found") {
            RegistryAuth::Basic(u, p) => assert_eq!((u.as_str(), p.as_str()), ("user", "pass")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            for_registry("other.example", &settings).expect("none"),
            RegistryAuth::Anonymous
        ));
    }

    #[test]
    fn a_missing_config_is_anonymous_and_a_broken_one_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = RegistrySettings {
            docker_config: Some(dir.path().join("none")),
            ..RegistrySettings::default()
        };
        assert!(matches!(
            for_registry("r.example", &settings).expect("anonymous"),
            RegistryAuth::Anonymous
        ));
        let (_dir, settings) = with_config("{not json");
        let e = for_registry("r.example", &settings).expect_err("broken");
        assert!(e.to_string().contains("config.json"), "{e}");
    }

    #[test]
    fn a_named_helper_that_is_missing_is_an_error_naming_it() {
        for json in [
            r#"{"credHelpers":{"r.example":"dockception-test-missing"}}"#,
            r#"{"credsStore":"dockception-test-missing"}"#,
        ] {
            let (_dir, settings) = with_config(json);
            let e = for_registry("r.example", &settings).expect_err("missing helper");
            let text = e.to_string();
            assert!(
                text.contains("docker-credential-dockception-test-missing")
                    && text.contains("r.example")
                    && text.contains("PATH"),
                "{text}"
            );
        }
    }
}
