//! dockception's integration tests, one binary (one link instead of one per file, as ripgrep
//! and just do): each module drives the real binary, and most of them the real Docker Engine.
//! Docker-backed tests skip with a printed reason when no engine answers, and fail under
//! `CI=true`. Helpers shared by the modules are in `support`.

mod support;

mod cli;
mod connect;
mod daemon;
mod deliver;
mod deliver_cli;
mod engine;
mod interrupt;
mod layout;
mod library;
mod libs;
mod manifest;
mod manifest_input;
mod podman;
mod registry_base;
mod remote;
mod report;
mod reproducible;
mod reuse;
mod runtime_steps;
mod safety;
mod schema;
mod second_engine;
mod speed;
mod targets;
mod terminal;
mod token_auth;
mod warm;
mod xtask;
