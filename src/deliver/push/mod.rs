//! `--push`: every tag goes straight from dockception to its registry, never through the
//! engine, and a base can come straight from its registry ([`pull_base`]).
//!
//! A push skips the blobs the registry has (HEAD), mounts base layers from the base's
//! repository when the base came from the same registry, streams the rest from the blob store,
//! and puts our manifest bytes last, so a failed upload leaves no tag. Credentials are read the
//! way the docker CLI reads them (`credentials.rs`); plain HTTP is used only for loopback
//! registries and those named in [`RegistrySettings::http`], and skipping TLS verification is
//! a separate setting (`connect.rs`).

mod connect;
mod credentials;
mod pull;
#[cfg(test)]
mod tests;
mod upload;

use std::path::PathBuf;

pub use pull::{base_from_registry, pull_base, RegistryBase};
pub use upload::push;

use super::{Error, Result};

/// How registries are reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Registries (`host[:port]`) that may be reached over plain HTTP when HTTPS fails, besides
    /// `localhost` and 127.0.0.0/8, which always may.
    pub http: Vec<String>,
    /// Registries (`host[:port]`) whose TLS certificate is not verified. Separate from
    /// [`RegistrySettings::http`]: one never implies the other.
    pub skip_tls_verify: Vec<String>,
    /// PEM files of CA certificates to trust besides the system's, for private registries.
    pub ca_files: Vec<PathBuf>,
    /// The docker config folder to read credentials from; `None` for `$DOCKER_CONFIG`, else
    /// `~/.docker`.
    pub docker_config: Option<PathBuf>,
}

/// A tag to push, read: its registry, repository and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The tag as given.
    pub tag: String,
    /// The registry, `host[:port]`.
    pub registry: String,
    /// The repository inside it.
    pub repository: String,
    /// The tag part (`latest` when none was given).
    pub tag_name: String,
}

impl Target {
    fn reference(&self) -> oci_client::Reference {
        oci_client::Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            self.tag_name.clone(),
        )
    }
}

/// What a push of one tag did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The tag as given.
    pub tag: String,
    /// The registry.
    pub registry: String,
    /// The repository.
    pub repository: String,
    /// The manifest digest the registry now names the tag by (the one dockception wrote).
    pub digest: String,
    /// Bytes of blobs sent.
    pub uploaded_bytes: u64,
    /// Bytes of blobs the registry had already.
    pub present_bytes: u64,
    /// Bytes of blobs mounted from the base's repository on the same registry.
    pub mounted_bytes: u64,
}

impl Pushed {
    /// Bytes not sent: already present or mounted.
    pub fn skipped_bytes(&self) -> u64 {
        self.present_bytes + self.mounted_bytes
    }
}

/// Read the tags to push, before anything is built: each must name its registry (a first part
/// with a `.` or a `:`, or `localhost`, as the docker CLI decides).
pub fn check_tags(tags: &[String]) -> Result<Vec<Target>> {
    tags.iter()
        .map(|tag| {
            let (target, _) = parse_reference(tag)?;
            if !crate::manifest::names_registry(tag) {
                return Err(Error::TagWithoutRegistry { tag: tag.clone() });
            }
            Ok(target)
        })
        .collect()
}

/// Read `reference` (a tag, or a name with a digest) into its parts; a name without a registry
/// is on Docker Hub, as the docker CLI reads it.
fn parse_reference(reference: &str) -> Result<(Target, oci_client::Reference)> {
    let parsed: oci_client::Reference =
        reference
            .parse()
            .map_err(|e: oci_client::ParseError| Error::BadReference {
                reference: reference.to_string(),
                message: e.to_string(),
            })?;
    let target = Target {
        tag: reference.to_string(),
        registry: parsed.registry().to_string(),
        repository: parsed.repository().to_string(),
        tag_name: parsed.tag().unwrap_or("latest").to_string(),
    };
    Ok((target, parsed))
}
