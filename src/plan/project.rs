//! The project's name: stable for one manifest location, distinct across projects, and known
//! without reading the manifest. Volumes and labels carry it.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::fsutil::hex;
use crate::plan::paths::{absolute, folder_of};
use crate::plan::Result;

/// The project name of the manifest at `manifest` (what its resources' `dockception.project`
/// label says), without reading or checking the manifest: `dockception clean` must work even
/// when the manifest is broken or gone.
pub fn project_for(manifest: &Path) -> Result<String> {
    Ok(project_name(&folder_of(&absolute(manifest)?)))
}

/// `<folder name>-<8 hex of the folder's absolute path>`, lowercased to what Docker accepts.
pub(crate) fn project_name(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map(|n| slug(&n.to_string_lossy()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "root".to_string());
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    format!("{name}-{}", hex(&digest[..4]))
}

/// Lowercase ASCII letters and digits, other runs collapsed to one `-`.
pub(crate) fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_docker_safe() {
        assert_eq!(slug("/root/.cache/go-build"), "root-cache-go-build");
        assert_eq!(slug("My App!"), "my-app");
    }
}
