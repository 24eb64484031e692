//! Reaching a registry: HTTPS first, verified against the system's roots and the CA files
//! given; plain HTTP only when HTTPS cannot be spoken and the registry is on loopback or named
//! in [`RegistrySettings::http`]; verification skipped only for the registries named in
//! [`RegistrySettings::skip_tls_verify`]. The two settings are separate. Also the one place
//! that turns the registry client's errors into this stage's, naming the registry, the
//! repository and what to do.

use std::net::IpAddr;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::{credentials, Error, RegistrySettings, Result};

/// A registry, reached: the client (with its scheme and TLS settings) and the credentials.
pub(super) struct Registry {
    pub client: Client,
    pub auth: RegistryAuth,
    /// The registry asked for a token (Bearer auth) and its token service gave one: a 401
    /// after that means the token does not grant the access, not that no credentials came.
    pub bearer: bool,
}

impl Registry {
    /// This stage's error for `e`, raised while `action` `reference`'s repository.
    pub fn error(
        &self,
        action: &'static str,
        reference: &Reference,
        e: OciDistributionError,
    ) -> Error {
        error_for(action, reference, e, self.bearer)
    }
}

/// Connect to the registry of `reference` for `operation`: read the credentials, pick the
/// scheme, and authenticate (a token when the registry asks for one).
pub(super) async fn connect(
    reference: &Reference,
    settings: &RegistrySettings,
    operation: RegistryOperation,
) -> Result<Registry> {
    let registry = reference.registry();
    let auth = credentials::for_registry(registry, settings)?;
    let action = match operation {
        RegistryOperation::Push => "pushing to",
        RegistryOperation::Pull => "pulling",
    };
    let https = client(registry, settings, ClientProtocol::Https)?;
    let tried = https.auth(reference, &auth, operation).await;
    let failed = match tried {
        Ok(token) => {
            return Ok(Registry {
                client: https,
                auth,
                bearer: token.is_some(),
            })
        }
        Err(e) if !is_connection(&e) || !http_allowed(registry, settings) => {
            return Err(registry_error(action, reference, e))
        }
        Err(e) => e,
    };
    let http = client(registry, settings, ClientProtocol::Http)?;
    match http.auth(reference, &auth, operation).await {
        // A TLS server answers plain HTTP with a 400: then HTTPS was right, and its error says
        // what is wrong (most often a certificate).
        Ok(token) if speaks_registry(&http, reference).await => Ok(Registry {
            client: http,
            auth,
            bearer: token.is_some(),
        }),
        Ok(_) => Err(registry_error(action, reference, failed)),
        Err(e) if is_connection(&e) => {
            // Neither answers: the HTTPS error says more (a refused connection, a certificate).
            Err(registry_error(action, reference, failed))
        }
        Err(e) => Err(registry_error(action, reference, e)),
    }
}

/// Whether the registry answers `client` as a registry does (a blob that is not there is a
/// 404, or credentials are asked for), not with a 400 as a TLS server asked in plain HTTP.
async fn speaks_registry(client: &Client, reference: &Reference) -> bool {
    let nothing = format!("sha256:{}", "0".repeat(64));
    match client.blob_exists(reference, &nothing).await {
        Ok(_) => true,
        Err(e) => !matches!(status_of(&e), Some(400)),
    }
}

/// A client for `registry` over `protocol`, with the TLS settings for it.
fn client(registry: &str, settings: &RegistrySettings, protocol: ClientProtocol) -> Result<Client> {
    install_crypto();
    let mut extra = Vec::new();
    for path in &settings.ca_files {
        let data = std::fs::read(path).map_err(|e| Error::CaFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if !String::from_utf8_lossy(&data).contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::CaFile {
                path: path.clone(),
                message: "it holds no PEM certificate".into(),
            });
        }
        extra.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    let config = ClientConfig {
        protocol,
        accept_invalid_certificates: settings.skip_tls_verify.iter().any(|r| r == registry),
        // One PUT per blob, its body streamed from the store: memory stays bounded.
        use_monolithic_push: true,
        extra_root_certificates: extra,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(120)),
        user_agent: concat!("dockception/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    };
    Client::try_from(config).map_err(|e| Error::Registry {
        action: "connecting to",
        registry: registry.to_string(),
        repository: String::new(),
        message: chain(&e),
        help: "check the CA files given for registries".into(),
    })
}

/// rustls's crypto is ring (see Cargo.toml); installed once for the process.
fn install_crypto() {
    // Err only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether plain HTTP may be tried for `registry`: loopback, or named by the user.
pub(super) fn http_allowed(registry: &str, settings: &RegistrySettings) -> bool {
    if settings.http.iter().any(|r| r == registry) {
        return true;
    }
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `e` means no HTTP exchange happened (refused, reset, TLS failed).
fn is_connection(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(e) => e.status().is_none() && !e.is_timeout(),
        _ => false,
    }
}

/// `text` without the query strings of the URLs in it (upload states, long and useless).
fn without_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_url = false;
    let mut skipping = false;
    for (at, c) in text.char_indices() {
        if text[at..].starts_with("http://") || text[at..].starts_with("https://") {
            in_url = true;
        }
        if c == ')' || c.is_whitespace() {
            in_url = false;
            skipping = false;
        }
        if in_url && c == '?' {
            skipping = true;
        }
        if !skipping {
            out.push(c);
        }
    }
    out
}

/// `e`'s message and every cause under it.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    without_queries(&text)
}

/// The HTTP status inside `e`, when the registry answered with one.
fn status_of(e: &OciDistributionError) -> Option<u16> {
    match e {
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::RequestError(e) => e.status().map(|s| s.as_u16()),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}", e.code))
                .collect();
            if codes.iter().any(|c| c.contains("Unauthorized")) {
                Some(401)
            } else if codes.iter().any(|c| c.contains("Denied")) {
                Some(403)
            } else if codes.iter().any(|c| c.contains("Unknown")) {
                Some(404)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// This stage's error for `e`, raised while `action` `reference`'s repository, before a token
/// was given: it names the registry and the repository and says what to do.
fn registry_error(action: &'static str, reference: &Reference, e: OciDistributionError) -> Error {
    error_for(action, reference, e, false)
}

/// The error for `e`; `bearer` when the registry's token service gave a token, so that a 401
/// means the token lacks the access (the registry's `insufficient_scope`), as a 403 does.
fn error_for(
    action: &'static str,
    reference: &Reference,
    e: OciDistributionError,
    bearer: bool,
) -> Error {
    let registry = reference.registry().to_string();
    let pushing = action == "pushing to";
    let nothing = if pushing {
        "; nothing was tagged, push again when fixed"
    } else {
        ""
    };
    let message = chain(&e).trim().to_string();
    let status = match status_of(&e) {
        Some(401) if bearer => Some(403),
        other => other,
    };
    let lower = message.to_lowercase();
    let help = match status {
        Some(401) => format!(
            "the registry wants credentials it did not get or did not accept: log in with `docker login {registry}` (dockception reads $DOCKER_CONFIG/config.json and its credential helpers){nothing}"
        ),
        Some(403) => format!(
            "the credentials for {registry} may not {} {}{}: ask for access, or use a repository you may {}{nothing}",
            if pushing { "push to" } else { "pull" },
            reference.repository(),
            if bearer { " (the token its token service gave does not grant it)" } else { "" },
            if pushing { "write" } else { "read" },
        ),
        Some(404) => format!(
            "{} does not exist on {registry}: check the name, or create the repository first (some registries do not create one on push){nothing}",
            reference.repository()
        ),
        Some(code) if code >= 500 => {
            format!("the registry failed (HTTP {code}); try again later or ask its operators{nothing}")
        }
        _ if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") => format!(
            "the registry's TLS certificate was not accepted: for a private CA give its PEM file (--registry-ca FILE); only for a registry you trust, skip verification for {registry}{nothing}"
        ),
        _ if matches!(e, OciDistributionError::AuthenticationFailure(_)) => format!(
            "the registry's token service refused the credentials: check the user and password, or log in again with `docker login {registry}` (dockception reads $DOCKER_CONFIG/config.json and its credential helpers){nothing}"
        ),
        _ => format!(
            "check that the registry runs and is reachable (the connection failed or dropped){nothing}"
        ),
    };
    Error::Registry {
        action,
        registry,
        repository: reference.repository().to_string(),
        message,
        help,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_and_the_registries_named() {
        let settings = RegistrySettings {
            http: vec!["reg.internal:5000".into()],
            ..RegistrySettings::default()
        };
        for yes in [
            "127.0.0.1:5000",
            "127.3.4.5",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "reg.internal:5000",
        ] {
            assert!(http_allowed(yes, &settings), "{yes}");
        }
        for no in ["reg.internal", "10.0.0.1:5000", "example.com", "128.0.0.1"] {
            assert!(!http_allowed(no, &settings), "{no}");
        }
    }

    #[test]
    fn urls_in_messages_lose_their_query_strings() {
        assert_eq!(
            without_queries(
                "sending (http://r:1/v2/a/blobs/uploads/u?_state=xyz&digest=d): closed"
            ),
            "sending (http://r:1/v2/a/blobs/uploads/u): closed"
        );
        assert_eq!(without_queries("why? because"), "why? because");
    }
}
