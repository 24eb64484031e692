//! `dockception.toml`: the serde types that are also the JSON Schema, loading, and the checks
//! that need nothing but the file itself. Every error points at `file:line:col`.
//!
//! The stage's contract is here: [`load_with`] / [`parse_bytes_with`] give a
//! [`LoadedManifest`] whose targets ([`Manifest::targets`]) later stages resolve. `document`
//! holds the types, `load` the reading, `expand` the variables, `schema_check` the key and type
//! check against the schema, `check` and `check_target` the semantic checks, `check_engine` what
//! the engine would refuse later (with `reference`, Docker's image reference grammar), `suggest`
//! the "did you mean" of every rejected name.

pub mod diagnostic;
mod error;

pub use diagnostic::Diagnostic;
pub use error::{Error, Result};

mod check;
mod check_engine;
mod check_target;
mod document;
mod expand;
pub mod gates;
pub mod glob;
mod load;
mod reference;
pub mod schema_check;
pub mod starter;
pub mod suggest;
mod values;
pub mod vars;

#[cfg(test)]
mod tests;

pub use document::{
    json_schema, ArtifactSource, Artifacts, Builder, Command, EngineMode, Init, Libs, Manifest,
    Mount, Port, Runtime, Target,
};
pub use load::{load_with, parse_bytes_with, MAX_MANIFEST_BYTES};
pub(crate) use reference::{
    canonical_tag, names_registry, reference_help, reference_problem, Use as ReferenceUse,
};
pub use values::parse_reuse_limit;
pub use values::parse_warm;
pub(crate) use values::{normalise_container_path, parse_port_spec};

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A manifest with where it came from, so later stages can point at its spans.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// The parsed and checked manifest, variables expanded.
    pub manifest: Manifest,
    /// The variables' values after the environment and `--set` were applied.
    pub vars: BTreeMap<String, String>,
}

impl LoadedManifest {
    /// A diagnostic at `span` of this manifest.
    pub fn diagnostic(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        help: impl Into<Option<String>>,
    ) -> Diagnostic {
        Diagnostic::at(&self.path, &self.source, span, message, help.into())
    }
}

/// A target of the manifest, by name (the single-image form has one, named `default`).
#[derive(Debug, Clone)]
pub struct NamedTarget {
    /// The target's name.
    pub name: String,
    /// Where the name is written (empty for the single-image form).
    pub span: std::ops::Range<usize>,
    /// The target.
    pub target: Target,
}
