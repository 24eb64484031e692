//! dockception: small, clean container images from one TOML manifest.
//!
//! Build in a fat builder image with the sources mounted (never copied into a layer), keep only
//! the artifacts that globs select, and ship them on a tiny runtime base. The pipeline, one
//! folder per stage, data flowing one way:
//!
//! ```text
//! manifest -> plan -> engine (builder) -> artifacts -> image -> report
//! ```
//!
//! Only [`engine`] talks to Docker; the other stages are plain functions over plain values.

pub mod api;
pub mod artifacts;
pub mod cli;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod image;
pub mod manifest;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod report;
pub mod units;

pub use api::{build_blocking, rust, Options};
pub use engine::Engine;
pub use error::{Error, Result};
pub use manifest::MAX_MANIFEST_BYTES;
pub use pipeline::{build, TargetReport};
pub use plan::{Plan, PlanSet, Selection, TagOverride};
pub use progress::Progress;
pub use report::Report;
