//! dockception: small, clean container images from one TOML manifest.
//!
//! Build in a fat builder image with the sources mounted (never copied into a layer), keep only
//! the artifacts that globs select, and ship them on a tiny runtime base. The pipeline is the
//! folder layout, one stage a folder, data flowing one way (each stage imports only those above
//! it):
//!
//! ```text
//! dockception.toml
//!   -> manifest   parse and check; the serde types are the JSON Schema; spans on every error
//!   -> plan       one printable value per target: mounts, argv, user, caches, runtime, tags
//!   -> engine     the only code that talks to Docker: images, volumes, the builder container
//!   -> artifacts  the outputs the globs select; what ELF artifacts need; the PID 1 init
//!   -> image      the runtime image's deterministic tar
//!   -> report     sizes, layers, waste, the diff against a baseline, gates
//! ```
//!
//! `pipeline` wires the stages for each command; `api` is what an xtask calls and `cli` the
//! command line. Each stage owns its error type, wrapped once in [`Error`].
//!
//! ```no_run
//! # fn main() -> dockception::Result<()> {
//! let plans = dockception::Options::new("dockception.toml").load()?;
//! for built in dockception::build_blocking(&plans, dockception::Progress::auto())? {
//!     print!("{}", built.report.to_text());
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod api;
mod artifacts;
#[doc(hidden)]
pub mod cli;
// Public (hidden) for the integration tests, which drive the registry and file outputs directly.
#[doc(hidden)]
pub mod deliver;
mod engine;
pub mod error;
mod fsutil;
mod image;
mod manifest;
mod pipeline;
mod plan;
mod progress;
mod report;
mod units;

pub use api::{build_blocking, build_blocking_to, manifest_schema, report_schema, rust, Options};
pub use engine::Engine;
pub use error::{Error, Result};
pub use manifest::{EngineMode, MAX_MANIFEST_BYTES};
pub use pipeline::{build, build_to, Destinations, TargetReport};
pub use plan::{Plan, PlanSet, Selection, TagOverride};
pub use progress::Progress;
pub use report::Report;

/// Compiles the README's Rust example, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
