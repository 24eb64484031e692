//! The one module that talks to the Docker Engine (bollard). Everything it is told comes as plain
//! data from the plan; everything it creates carries the `dockception` label and is removed
//! whatever happens, including on Ctrl-C (see [`Engine::remove_leftovers`]).
//!
//! This file is the stage's contract: the [`Engine`] and the plain values the other stages
//! hand it and get back. bollard's types stay in the sibling files, one concern each:
//! `endpoint` (which engine: `DOCKER_HOST`, a Docker context or the local socket), `connect`
//! (the connection, TLS, and the engine's version), `ssh` (`ssh://` engines), `images`, `volumes` (cache volumes),
//! `containers` (one-shot containers: the builder and its helpers), `warm` (the kept builder)
//! and `warm_channel` (the way into it without an exec),
//! `files` (reading an image's files), `mode` (whether the engine sees this machine's
//! files), `sync` and `remote` (sources in volumes, outputs read back, for an engine that does
//! not), `cleanup` (what a run or a crash leaves), `owner` (which leftovers may go, from labels
//! alone) and `kind` (which engine it is: Docker or Podman, asked what it can do rather than by
//! name).

mod cleanup;
mod connect;
mod containers;
mod endpoint;
mod error;
mod files;
mod images;
mod kind;
mod listing;
pub(crate) mod mode;
pub(crate) mod owner;
mod remote;
mod ssh;
pub(crate) mod sync;
mod volumes;
mod warm;
mod warm_channel;

pub(crate) use containers::sh_word;
pub use error::{Error, Result};
pub(crate) use images::PendingLoad;
pub(crate) use listing::ListedContainer;
pub(crate) use warm::{WarmOpen, WarmSession};

/// The address of the engine the docker CLI's settings choose (nothing is connected).
pub(crate) fn configured_host() -> Result<String> {
    Ok(endpoint::resolve(&endpoint::Settings::from_process())?.host)
}

use std::collections::HashMap;
use std::sync::Mutex;

/// A connection to a Docker Engine that answered a ping.
pub struct Engine {
    docker: bollard::Docker,
    host: String,
    /// Where the engine is and which setting chose it, for the errors that name it.
    endpoint: endpoint::Endpoint,
    /// The local socket an `ssh://` engine is reached through, served while the engine lives.
    ssh: Option<ssh::SshBridge>,
    /// Containers that exist right now and must go if the run is interrupted.
    live_containers: Mutex<Vec<String>>,
    /// Images [`Engine::ensure_image`] found or pulled during this run, by reference.
    ensured: Mutex<HashMap<String, ImageFacts>>,
    /// Values that must never be printed (secrets given to the builder); the builder's output
    /// shows `***` instead.
    redact: Mutex<Vec<String>>,
    /// The engine's API version: `None` until a build that is not up to date asks for it in
    /// the background (`/version` costs dockerd 5 to 8 ms of CPU, so a run with nothing to do
    /// never asks); anything that creates something waits for it first.
    api_version: tokio::sync::Mutex<Option<connect::ApiVersion>>,
    /// What decides whether the engine sees this machine's files, set before the first build.
    mode_setting: Mutex<Option<mode::ModeSetting>>,
    /// That decision, made once per run when first needed.
    mode: tokio::sync::OnceCell<mode::Decided>,
}

/// What the base image runs by default (what an init wraps when the manifest names no program).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BaseConfig {
    /// The base's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// The base's cmd.
    pub cmd: Option<Vec<String>>,
    /// The base's user.
    pub user: Option<String>,
}

/// What a path is, in the base or the builder image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Nothing there.
    Missing,
    /// A regular file.
    File {
        /// Any execute bit set.
        executable: bool,
    },
    /// A symlink; `target` is where it finally leads, absolute, as the engine resolved it.
    Symlink {
        /// The resolved target.
        target: String,
    },
    /// A folder or anything else that is not a library.
    Other,
}

/// What the report needs to know about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageFacts {
    /// The image id (`sha256:…`).
    pub id: String,
    /// The image's size as the engine reports it (uncompressed layer content), in bytes.
    pub size: u64,
    /// What it runs by default: entrypoint, cmd and user.
    pub config: BaseConfig,
    /// Its CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// Its operating system, e.g. `linux`.
    pub os: String,
}

/// One path a container changed, as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// Absolute path in the container.
    pub path: String,
    /// How it changed.
    pub kind: ChangeKind,
}

/// How a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    /// It existed in the image and was changed.
    Modified,
    /// It is new.
    Added,
    /// It was deleted.
    Deleted,
}

/// What measuring needs to know about an image: inspect plus history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageDetails {
    /// The image id (`sha256:…`).
    pub id: String,
    /// The image's size as the engine reports it, in bytes.
    pub size: u64,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its layers' diff ids, bottom first.
    pub layers: Vec<String>,
    /// Its history steps, bottom first (metadata steps included).
    pub history: Vec<HistoryStep>,
}

/// One step of an image's history as the engine lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HistoryStep {
    /// The command that made the step (empty for an import).
    pub created_by: String,
    /// Its comment, e.g. `Imported from -`.
    pub comment: String,
    /// The step made no layer (ENV, ENTRYPOINT, ...): the engine lists such steps with size 0.
    /// A layer of folders alone has size 0 too, so this is exact only when as many steps made a
    /// layer as the image has layers; `report::scan::assemble_known` checks that.
    pub empty_layer: bool,
}

/// A cache volume as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeFacts {
    /// The volume's name.
    pub name: String,
    /// The `dockception.project` label, when the volume has one.
    pub project: Option<String>,
}

/// How the build command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuilderExit {
    /// The exit status.
    pub code: i64,
    /// The last lines of output.
    pub tail: Vec<String>,
    /// How long the command ran, from its start to the end of its output, in milliseconds.
    pub ran_ms: u64,
}

/// How a build in the warm builder went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WarmRun {
    /// The command ran in the warm container.
    Ran(BuilderExit),
    /// No warm container could be used (the reason says why); the build must run in a fresh
    /// container. Nothing of the attempt is left running.
    Unavailable(String),
}

/// A created, never started container of an image, through which the image's files are read
/// with the engine's archive API (no process runs in it). Close it with
/// [`Engine::close_image_files`]; an interrupt removes it like any other container.
#[derive(Debug)]
pub(crate) struct ImageFiles {
    name: String,
    image: String,
}

/// What [`Engine::clean`] removed and what it kept, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cleaned {
    /// Containers removed (names).
    pub containers: Vec<String>,
    /// Dangling images removed (ids).
    pub images: Vec<String>,
    /// Cache volumes removed (names).
    pub volumes: Vec<String>,
    /// What was kept, each with the reason.
    pub kept: Vec<String>,
}
