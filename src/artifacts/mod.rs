//! The artifacts stage: select outputs by glob inside the run folder; what ELF artifacts need
//! (shared libraries); the PID 1 init.

mod error;

pub use error::{Error, Result};

pub mod collect;
pub mod elf;
pub mod linkage;
pub mod pid1;
pub mod run_dir;
pub mod shared_libs;
