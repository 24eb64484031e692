//! The image stage: the runtime image as bytes dockception writes. Today that is `context`: the
//! deterministic tar (sorted entries, one mtime, uid/gid 0, fixed modes) of a generated
//! Dockerfile and the artifacts ([`context::ContextSpec`]), or of the artifacts alone for an
//! import onto scratch; the same inputs give the same bytes. The engine builds or imports it
//! (`pipeline::image`).

pub mod context;
