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
//! Only `engine` talks to Docker; the other stages are plain functions over plain values.

#![warn(missing_docs)]

mod api;
mod artifacts;
#[doc(hidden)]
pub mod cli;
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

pub use api::{build_blocking, manifest_schema, report_schema, rust, Options};
pub use engine::Engine;
pub use error::{Error, Result};
pub use manifest::MAX_MANIFEST_BYTES;
pub use pipeline::{build, TargetReport};
pub use plan::{Plan, PlanSet, Selection, TagOverride};
pub use progress::Progress;
pub use report::Report;

/// Compiles the README's Rust example, so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
