//! The deliver stage: where a [`WrittenImage`](crate::image::WrittenImage) goes. Only this stage
//! talks to registries. [`load`] makes the docker archive an engine loads (holding only what the
//! engine lacks; the engine stage sends it); [`output`] writes OCI layouts and archives
//! (`--output`, in buildx's words); [`push`] sends every tag straight to its registry (`--push`)
//! and pulls a base from a registry into the blob store, so an image on a registry base needs no
//! engine at all.
//!
//! Call [`output::check`] and [`push::check_tags`] before the build, so bad input fails before
//! any work; then, after assembly, [`output::write_all`] and [`push::push`].

mod error;
pub mod load;
pub mod output;
pub mod push;
#[doc(hidden)]
pub mod testkit;

pub use error::{Error, Result};
