//! Resolve a checked manifest into a plain, printable plan: absolute host paths, the builder's
//! argv and user, volume names, artifact rules, runtime config and tags. No Docker here; the
//! only I/O is looking at the mount sources on the host.
//!
//! The stage's contract is here: [`plan`] turns a loaded manifest and [`PlanOptions`] into a
//! [`PlanSet`]. `select` decides which targets run and in which order, `resolve` and `builder`
//! fill in each target's plan, `tags` the image names, `project` the project's name, `text` the
//! plan for people.

mod error;

pub use error::{Error, Result};

mod builder;
mod paths;
mod project;
mod resolve;
pub mod secrets;
mod select;
mod tags;
mod text;

pub use project::project_for;
pub use resolve::plan;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::manifest;

/// The label every container, volume and image dockception creates carries.
pub const LABEL: &str = "dockception";
/// The label naming the project (the manifest's folder) a resource belongs to.
pub const PROJECT_LABEL: &str = "dockception.project";
/// How many bytes of earlier builds' outputs a target keeps for reuse unless `builder.reuse_limit`
/// says otherwise.
pub const DEFAULT_REUSE_LIMIT: u64 = 2 << 30;

/// What the caller decides beyond the manifest.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// The invoking user's `(uid, gid)`: the builder runs as them unless the manifest says
    /// otherwise.
    pub invoking_user: Option<(u32, u32)>,
    /// Tags from the command line; they replace the manifest's tags of their target.
    pub tags: Vec<TagOverride>,
    /// The tool's own output folder; defaults to `.dockception` next to the manifest.
    pub out_dir: Option<PathBuf>,
    /// Which targets to build.
    pub selection: Selection,
    /// `--engine-mode`: wins over the manifest's `[engine] mode`.
    pub engine_mode: Option<manifest::EngineMode>,
}

/// Which targets a run builds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Selection {
    /// The manifest's `default`, else every target.
    #[default]
    Default,
    /// Every target.
    All,
    /// These targets and groups.
    Names(Vec<String>),
}

/// A tag given on the command line: `NAME[:TAG]` or `TARGET=NAME[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagOverride {
    /// The target it is for; `None` means the only selected target.
    pub target: Option<String>,
    /// The image reference.
    pub tag: String,
}

impl TagOverride {
    /// Parse `NAME[:TAG]` or `TARGET=NAME[:TAG]` (image references never contain `=`).
    pub fn parse(text: &str) -> TagOverride {
        match text.split_once('=') {
            Some((target, tag)) => TagOverride {
                target: Some(target.to_string()),
                tag: tag.to_string(),
            },
            None => TagOverride {
                target: None,
                tag: text.to_string(),
            },
        }
    }
}

/// The resolved plan of a run: every target that must run, in build order.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlanSet {
    /// The manifest file, absolute.
    pub manifest: PathBuf,
    /// The project name (see [`Plan::project`]).
    pub project: String,
    /// The variables' final values.
    pub vars: BTreeMap<String, String>,
    /// The targets whose images are built.
    pub selected: Vec<String>,
    /// Every target that runs, in build order: the selected ones and those they take artifacts
    /// from.
    pub order: Vec<String>,
    /// The targets' plans, in build order.
    pub targets: Vec<Plan>,
    /// Whether the builds bind-mount the sources or sync them into volumes, and which setting
    /// said so.
    pub engine: EnginePlan,
}

/// How the builds use the engine: `mode` as the setting that won (`set_by`) gave it. With
/// [`manifest::EngineMode::Auto`] the engine is asked at the first build.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EnginePlan {
    /// `auto`, `local` or `remote`.
    pub mode: manifest::EngineMode,
    /// The setting that chose it, in words: `set by --engine-mode`, `set by [engine] mode at
    /// FILE:LINE:COLUMN`, or `the default: …`.
    pub set_by: String,
}

impl Default for EnginePlan {
    fn default() -> Self {
        EnginePlan {
            mode: manifest::EngineMode::Auto,
            set_by: "the default: the first build asks the engine whether it sees this folder"
                .into(),
        }
    }
}

impl PlanSet {
    /// The plan of the target named `name`.
    pub fn target(&self, name: &str) -> Option<&Plan> {
        self.targets.iter().find(|p| p.target == name)
    }

    /// Whether the image of `name` is built (not only its artifacts).
    pub fn is_selected(&self, name: &str) -> bool {
        self.selected.iter().any(|s| s == name)
    }
}

/// Everything a run of one target needs, resolved.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Plan {
    /// The target's name (`default` for a single-image manifest).
    pub target: String,
    /// The manifest file, absolute.
    pub manifest: PathBuf,
    /// A name for the project that is stable for one manifest location and distinct across
    /// projects: `<folder name>-<hash of its absolute path>`.
    pub project: String,
    /// The tool's own output folder on the host for this target.
    pub out_dir: PathBuf,
    /// The project's blob store (image layers, configs, manifests and the bases' layers, by
    /// digest), shared by its targets: `blobs/` in the output folder.
    pub blobs_dir: PathBuf,
    /// When set, this target runs no builder: its artifacts come from that target's output.
    pub artifacts_from: Option<String>,
    /// How the builder runs; for a target with `artifacts_from`, the builder of that target
    /// (which produced the artifacts, and which the report compares the image with).
    pub builder: BuilderPlan,
    /// Which outputs are shipped.
    pub artifacts: ArtifactPlan,
    /// The runtime image.
    pub runtime: RuntimePlan,
    /// Tags for the runtime image.
    pub tags: Vec<String>,
    /// Whether `[image] push = true`: every tag is pushed after the build.
    pub push: bool,
}

/// The builder container.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BuilderPlan {
    /// The builder image.
    pub image: String,
    /// The command's working directory in the container.
    pub workdir: Option<String>,
    /// Environment, sorted by name.
    pub env: Vec<(String, String)>,
    /// The argv the container runs.
    pub command: Vec<String>,
    /// `uid:gid` or a user name; `None` leaves the image's default.
    pub user: Option<String>,
    /// Bind mounts of host folders.
    pub mounts: Vec<BindMount>,
    /// Named cache volumes.
    pub caches: Vec<CacheVolume>,
    /// Where the fresh output folder is mounted (read-write) in the container.
    pub output_target: String,
    /// Names of variables whose values come from dockception's environment at build time
    /// (secrets; the plan holds only their names).
    pub env_from_host: Vec<String>,
    /// Secret files mounted read-only into the builder only.
    pub secret_files: Vec<SecretFile>,
    /// The network the build runs on (`None`: the engine's default).
    pub network: Option<String>,
    /// Seconds the builder container is kept running after its last build, so the next build
    /// runs in it with an exec (`builder.warm`); `None`: a fresh container per build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm: Option<u64>,
    /// Bytes of earlier builds' outputs kept in `<out_dir>/reuse` (`builder.reuse_limit`), so a
    /// rebuild whose inputs equal an earlier build's runs nothing; 0 keeps none.
    #[serde(skip_serializing_if = "is_default_reuse_limit")]
    pub reuse_limit: u64,
}

fn is_default_reuse_limit(limit: &u64) -> bool {
    *limit == DEFAULT_REUSE_LIMIT
}

/// A host file mounted read-only into the builder at `/run/secrets/NAME`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SecretFile {
    /// The secret's name.
    pub name: String,
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute container path, `/run/secrets/NAME`.
    pub target: String,
}

/// A host folder mounted into the builder.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute container path.
    pub target: String,
    /// Whether the mount is read-only.
    pub read_only: bool,
}

/// A named volume mounted into the builder.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CacheVolume {
    /// The volume's name.
    pub volume: String,
    /// Absolute container path.
    pub target: String,
}

/// How artifacts are selected and placed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ArtifactPlan {
    /// The folder, relative to the output root, the globs apply in (`""` for the root).
    pub subdir: String,
    /// Globs of files to ship, relative to the output folder.
    pub include: Vec<String>,
    /// Globs of files to leave out.
    pub exclude: Vec<String>,
    /// The folder in the image the artifacts land in, without a trailing slash except for `/`.
    pub dest: String,
}

/// The runtime image's base and configuration.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuntimePlan {
    /// `scratch` or an image reference.
    pub base: String,
    /// Exec-form entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Exec-form default arguments.
    pub cmd: Option<Vec<String>>,
    /// Environment, sorted by name.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub workdir: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Exposed ports as `PORT/PROTO`.
    pub expose: Vec<String>,
    /// Labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Commands run in the runtime image with the artifacts mounted (not copied); empty when
    /// the artifacts are copied in.
    pub steps: Vec<String>,
    /// Where the artifacts are mounted while the steps run.
    pub artifacts_mount: String,
    /// The init that runs as PID 1.
    pub init: InitPlan,
    /// What to do about the shared libraries of dynamically linked artifacts.
    pub libs: manifest::Libs,
}

/// The init of the runtime image.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "kind", content = "path")]
pub enum InitPlan {
    /// No init: the entrypoint is PID 1.
    None,
    /// Find tini in the base, else copy a static one from the builder.
    Auto,
    /// This path in the image.
    Path(String),
}

#[cfg(test)]
impl RuntimePlan {
    /// A runtime on `base` that sets nothing else (no init, libraries checked), for tests.
    pub(crate) fn on(base: &str) -> RuntimePlan {
        RuntimePlan {
            base: base.into(),
            entrypoint: None,
            cmd: None,
            env: vec![],
            workdir: None,
            user: None,
            expose: vec![],
            labels: vec![],
            steps: vec![],
            artifacts_mount: "/artifacts".into(),
            init: InitPlan::None,
            libs: manifest::Libs::Check,
        }
    }
}

impl Plan {
    /// The volume that holds the sources of the builder's mount number `index` on an engine
    /// that cannot see this machine's files: one per target and mount, kept between builds,
    /// labelled like the cache volumes.
    pub fn source_volume(&self, index: usize) -> String {
        format!("dockception-src-{}-{}-{index}", self.project, self.target)
    }
}

impl RuntimePlan {
    /// Whether the base is the empty `scratch` image.
    pub fn is_scratch(&self) -> bool {
        self.base == "scratch"
    }
}
