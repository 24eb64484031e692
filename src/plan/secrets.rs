//! Secrets for the build, kept out of the manifest and out of the runtime image.
//!
//! The manifest names them only: `builder.env_from_host = ["NPM_TOKEN"]` takes the value from
//! dockception's own environment when the build starts, and `[builder.secrets] npmrc = "path"`
//! mounts a host file read-only at `/run/secrets/npmrc`. Both reach the builder container and
//! nothing else: the runtime image is built from the artifacts alone, the plan holds names and
//! paths but no values, and the builder's output shows `***` wherever a value appears.

use std::fmt;

use crate::fsutil::FromIo as _;
use crate::plan::{BuilderPlan, SecretFile};
use crate::plan::{Error, Result};

/// The secrets of one build, with their values. Its `Debug` output never shows a value.
#[derive(Clone, Default)]
pub struct Resolved {
    /// Variables for the builder's environment, sorted by name.
    pub env: Vec<(String, String)>,
    /// Files mounted read-only into the builder.
    pub files: Vec<SecretFile>,
}

impl Resolved {
    /// The secret values, to mask them wherever output is shown.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.env.iter().map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Resolved")
            .field("env", &names)
            .field("files", &self.files)
            .finish()
    }
}

/// Take the values of `builder.env_from_host` from `lookup` (the process environment in the
/// CLI) and check that the secret files are still there.
pub fn resolve(
    builder: &BuilderPlan,
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Resolved> {
    let mut env = Vec::new();
    for name in &builder.env_from_host {
        let value = lookup(name).ok_or_else(|| Error::MissingSecret {
            name: name.clone(),
            problem: "it is not set in dockception's environment".into(),
        })?;
        let value = value.into_string().map_err(|_| Error::MissingSecret {
            name: name.clone(),
            problem: "its value is not valid UTF-8, which the Engine API cannot carry".into(),
        })?;
        env.push((name.clone(), value));
    }
    env.sort();
    for file in &builder.secret_files {
        if let Err(e) = std::fs::metadata(&file.source) {
            return Err(Error::io(
                "reading the secret file",
                &file.source,
                std::io::Error::new(e.kind(), format!("secret {}: {e}", file.name)),
            ));
        }
    }
    Ok(Resolved {
        env,
        files: builder.secret_files.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn builder(names: &[&str]) -> BuilderPlan {
        BuilderPlan {
            image: "gcc:local".into(),
            workdir: None,
            env: vec![],
            command: vec!["true".into()],
            user: None,
            mounts: vec![],
            caches: vec![],
            output_target: "/out".into(),
            env_from_host: names.iter().map(|n| n.to_string()).collect(),
            secret_files: vec![],
            network: None,
            warm: None,
            reuse_limit: crate::plan::DEFAULT_REUSE_LIMIT,
        }
    }

    #[test]
    fn values_come_from_the_environment_and_are_never_debug_printed() {
        let lookup = |name: &str| match name {
            "TOKEN" => Some(OsString::from("s3cr3t")),
            "API_KEY" => Some(OsString::from("k3y")),
            _ => None,
        };
        let resolved = resolve(&builder(&["TOKEN", "API_KEY"]), lookup).expect("resolve");
        assert_eq!(
            resolved.env,
            [
                ("API_KEY".to_string(), "k3y".to_string()),
                ("TOKEN".to_string(), "s3cr3t".to_string())
            ]
        );
        let debug = format!("{resolved:?}");
        assert!(
            debug.contains("TOKEN") && !debug.contains("s3cr3t"),
            "{debug}"
        );
        assert_eq!(resolved.values().collect::<Vec<_>>(), ["k3y", "s3cr3t"]);
    }

    #[test]
    fn a_missing_variable_is_named_with_the_fix() {
        let e = resolve(&builder(&["NPM_TOKEN"]), |_| None).expect_err("missing");
        let text = e.to_string();
        assert!(
            text.starts_with("builder.env_from_host names NPM_TOKEN, but it is not set"),
            "{text}"
        );
        assert!(text.contains("export NPM_TOKEN="), "{text}");
    }
}
