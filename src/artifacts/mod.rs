//! The artifacts stage: what the build produced and what of it ships. Plain functions over the
//! host's files and plain values; the engine is asked nothing here.
//!
//! - `run_dir`: each run's fresh output folder under `.dockception/runs/`, promoted to `last/`
//!   only on success, removed on failure or Ctrl-C.
//! - `collect`: [`collect::collect`] selects the artifacts by glob in a run's output, byte-exact
//!   names, links kept inside, into a [`collect::Collected`].
//! - `elf`, `shared_libs`, `linkage`: what dynamically linked artifacts need at run time
//!   ([`shared_libs::resolve`] answers from facts, or asks the queries the pipeline puts to the
//!   engine), and how the report shows it.
//! - `pid1`: which init runs as PID 1 and how it wraps the entrypoint.

mod error;

pub use error::{Error, Result};

pub mod collect;
pub mod elf;
pub mod linkage;
pub mod pid1;
pub mod run_dir;
pub mod shared_libs;
