//! The image stage: the runtime image as bytes we write (the deterministic context).

pub mod context;
