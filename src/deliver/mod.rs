//! The deliver stage: where a written image goes. Into an engine (`load`: a docker archive
//! holding only what the engine lacks, for the engine stage to send), to a registry, or to an
//! OCI layout or archive. Only this stage talks to registries.

pub mod load;
