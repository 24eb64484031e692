//! The manifest as written: the serde types that are also the JSON Schema. Their doc comments
//! are the schema's descriptions and their field order is its order, so both are part of the
//! schema checked into `schema/dockception.schema.json`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::manifest::gates;
use crate::manifest::NamedTarget;

/// A dockception manifest: how to build the artifacts in a builder image and how to ship them
/// on a small runtime base. Either one image (top-level `[builder]`, `[artifacts]`, …) or
/// several named targets (`[targets.NAME]`), not both.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "dockception manifest")]
pub struct Manifest {
    /// Variables for `${NAME}` and `${NAME:-default}` in any string value. The environment
    /// (`DOCKCEPTION_VAR_NAME`) overrides them, and `--set NAME=VALUE` overrides both. Write
    /// `$${` for a literal `${` (e.g. the build shell's own `$${HOME}`).
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "read from the document before it has types; this gives `[vars]` its schema"
    )]
    pub vars: BTreeMap<String, String>,
    /// Single-image form: the fat image the build runs in, and the command that builds.
    #[serde(default)]
    pub builder: Option<Builder>,
    /// Single-image form: host folders bind-mounted into the builder (read-only unless
    /// `read_only = false`). Sources are mounted, never copied into a layer.
    #[serde(default, rename = "mount")]
    pub mounts: Vec<Mount>,
    /// Single-image form: named volumes mounted into the builder that survive between builds
    /// (compiler caches, package registries).
    #[serde(default, rename = "cache")]
    pub caches: Vec<Cache>,
    /// Single-image form: which files of the builder's output folder are shipped, and where
    /// they land.
    #[serde(default)]
    pub artifacts: Option<Artifacts>,
    /// Single-image form: the runtime image, its base and its configuration.
    #[serde(default)]
    pub runtime: Option<Runtime>,
    /// Single-image form: how the runtime image is named.
    #[serde(default)]
    pub image: Option<Image>,
    /// Single-image form: size gates checked after every build and by `dockception report`; a
    /// failed gate makes the command exit 1. Command-line flags of the same names override
    /// them.
    #[serde(default)]
    pub gates: Option<gates::GatesTable>,
    /// Several images from one file, by name (`[targets.build]`, `[targets.run]`). A target can
    /// take its artifacts from another target's output (`artifacts.from = "build:/out"`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Target>")]
    pub targets: BTreeMap<Spanned<String>, Target>,
    /// Named sets of targets, usable wherever a target name is: `images = ["build", "run"]`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Vec<String>>")]
    pub groups: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    /// What `dockception build` builds without target names: a target or group name, or a list
    /// of them. Without it, every target is built.
    #[serde(default)]
    #[schemars(with = "Option<Names>")]
    pub default: Option<Spanned<Names>>,
    /// How the builds use the engine. `dockception build --engine-mode` overrides it.
    #[serde(default)]
    pub engine: Option<EngineTable>,
}

/// `[engine]`: how the builds use the Docker Engine.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineTable {
    /// `"local"`: the engine sees this machine's files, and sources are bind-mounted.
    /// `"remote"`: it does not (`DOCKER_HOST=ssh://…` or `tcp://…` to another machine), so
    /// each `[[mount]]` is synced into a volume kept between builds and the outputs come back
    /// through the engine's archive API. `"auto"` (the default): a probe at the first build
    /// asks the engine whether it sees this folder, and its answer is kept for that engine.
    #[serde(default)]
    #[schemars(with = "Option<EngineMode>")]
    pub mode: Option<Spanned<EngineMode>>,
}

/// Whether the engine sees this machine's files: `[engine] mode`.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineMode {
    /// Ask the engine (a probe at the first build, its answer kept).
    #[default]
    Auto,
    /// Bind-mount the sources: the engine runs on this machine.
    Local,
    /// Sync the sources into volumes: the engine cannot see this machine's files.
    Remote,
}

/// One name or a list of names.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum Names {
    /// A single target or group name.
    One(String),
    /// Several target or group names.
    Many(Vec<String>),
}

impl Names {
    /// The names, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Names::One(name) => vec![name.clone()],
            Names::Many(names) => names.clone(),
        }
    }
}

/// One image of a several-target manifest.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The fat image the build runs in, and the command that builds. Leave it out when the
    /// artifacts come from another target (`artifacts.from = "TARGET:/path"`).
    #[serde(default)]
    pub builder: Option<Builder>,
    /// Host folders bind-mounted into the builder (read-only unless `read_only = false`).
    #[serde(default, rename = "mount")]
    pub mounts: Vec<Mount>,
    /// Named volumes mounted into the builder that survive between builds.
    #[serde(default, rename = "cache")]
    pub caches: Vec<Cache>,
    /// Which files are shipped, and where they land.
    pub artifacts: Artifacts,
    /// The runtime image: its base and its configuration.
    #[serde(default)]
    pub runtime: Runtime,
    /// How the runtime image is named.
    #[serde(default)]
    pub image: Image,
    /// Size gates checked after every build and by `dockception report`; a failed gate makes
    /// the command exit 1. Command-line flags of the same names override them.
    #[serde(default)]
    pub gates: gates::GatesTable,
}

/// The name the single-image form's one target has.
const DEFAULT_TARGET: &str = "default";

/// The builder: an image with the toolchain, and the build command run inside it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Builder {
    /// The builder image, e.g. `golang:1.22-alpine` or a locally made `gcc:local`. Pulled when
    /// missing and a registry answers.
    #[schemars(with = "String")]
    pub image: Spanned<String>,
    /// The working directory of the build command inside the builder (absolute).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub workdir: Option<Spanned<String>>,
    /// Environment variables for the build command. They never reach the runtime image.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<Spanned<String>, String>,
    /// The build command: a shell string (run with `/bin/sh -c`) or an argv list (run as is).
    /// It writes the artifacts into `artifacts.from`.
    #[schemars(with = "Command")]
    pub run: Spanned<Command>,
    /// The user the build runs as, `uid[:gid]` or a name known to the builder image. Defaults to
    /// the invoking user's uid:gid, so files the build writes belong to you, not root.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub user: Option<Spanned<String>>,
    /// Names of environment variables handed from dockception's own environment to the build
    /// command, e.g. `["NPM_TOKEN"]`, so secrets never have to be written in the manifest. Like
    /// `env`, they never reach the runtime image; their values are masked in the build's output.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub env_from_host: Vec<Spanned<String>>,
    /// Secret files for the build only: `NAME = "host path"` is mounted read-only at
    /// `/run/secrets/NAME` in the builder (relative paths start at the manifest's folder). They
    /// never reach the runtime image.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub secrets: BTreeMap<String, Spanned<String>>,
    /// The network the build runs on: `"none"` cuts it off (everything it needs is mounted),
    /// or an engine network such as `"bridge"` or `"host"`. Defaults to the engine's default
    /// network.
    #[serde(default)]
    pub network: Option<String>,
    /// Keep the builder container running between builds for this long after its last build
    /// ends (`"90s"`, `"10m"`, `"1h"`, at most `"24h"`; default `"10m"`), so a rebuild runs the
    /// command with `docker exec` in it instead of creating and starting a new container. The
    /// container is labelled and named `dockception-warm-…`; `dockception ps` lists it, it
    /// removes itself when idle that long, and `dockception clean` removes it at once. `"off"`:
    /// a fresh container for every build, nothing left running.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub warm: Option<Spanned<String>>,
    /// How much of earlier builds' outputs to keep (default `"2 GiB"`; `0` keeps none): a
    /// number of bytes or a size such as `"500 MiB"`. A rebuild whose inputs (plan, images,
    /// sources) equal a kept build's runs no builder: that build's output and image come back,
    /// as when switching back to a branch or undoing an edit. The oldest used go first.
    #[serde(default)]
    #[schemars(with = "Option<gates::Threshold>")]
    pub reuse_limit: Option<Spanned<gates::Threshold>>,
}

/// A build command.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum Command {
    /// A shell command line, run with `/bin/sh -c`.
    Shell(String),
    /// An argv list, run without a shell.
    Argv(Vec<String>),
}

/// A host folder bind-mounted into the builder.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// The host path; a relative path resolves against the manifest's folder. It must exist.
    #[schemars(with = "String")]
    pub source: Spanned<String>,
    /// The absolute path inside the builder.
    #[schemars(with = "String")]
    pub target: Spanned<String>,
    /// Mount read-only (the default), so the build cannot change your sources.
    #[serde(default = "default_true")]
    pub read_only: bool,
}

/// A named volume mounted into the builder, kept between builds.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// The absolute path inside the builder, e.g. `/root/.cache/go-build`.
    #[schemars(with = "String")]
    pub target: Spanned<String>,
    /// The volume name. Defaults to one derived from the project folder and the target, so two
    /// projects never share a cache by accident. The engine takes `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
}

/// The files that are shipped.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Artifacts {
    /// The folder inside the builder that the build writes its outputs into; dockception mounts
    /// a fresh host folder there for every run. Or `TARGET:/path`: the artifacts come from
    /// another target's output (like `COPY --from=build /path`), and this target has no builder.
    #[serde(default = "default_from")]
    #[schemars(with = "String", default = "default_from")]
    pub from: Spanned<String>,
    /// Globs, relative to `from`, of the files to ship (`*` stays within one folder, `**` crosses
    /// folders; a matching folder ships all it holds).
    #[schemars(with = "Vec<String>")]
    pub include: Spanned<Vec<Spanned<String>>>,
    /// Globs, relative to `from`, of files to leave out even when included.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub exclude: Vec<Spanned<String>>,
    /// Where the artifacts land in the runtime image (absolute); their paths relative to `from`
    /// are kept below it.
    #[serde(default = "default_dest")]
    #[schemars(with = "String", default = "default_dest")]
    pub dest: Spanned<String>,
}

/// The runtime image's base and configuration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// The base image: `scratch` (nothing at all) or any image, e.g. `busybox:local`.
    #[serde(default = "default_base")]
    #[schemars(with = "String", default = "default_base")]
    pub base: Spanned<String>,
    /// The program the container runs, exec form, e.g. `["/app"]`.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub entrypoint: Option<Spanned<Vec<String>>>,
    /// Default arguments, exec form.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub cmd: Option<Spanned<Vec<String>>>,
    /// Environment variables set in the runtime image.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<Spanned<String>, String>,
    /// The working directory in the runtime image (absolute).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub workdir: Option<Spanned<String>>,
    /// The user the runtime image runs as, e.g. `65534:65534`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub user: Option<Spanned<String>>,
    /// Ports the image listens on: a number (TCP) or `"53/udp"`.
    #[serde(default)]
    #[schemars(with = "Vec<Port>")]
    pub expose: Vec<Spanned<Port>>,
    /// Labels set on the runtime image.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub labels: BTreeMap<Spanned<String>, String>,
    /// Commands run inside the runtime image, in one container, with the artifacts mounted
    /// read-only at `artifacts_mount` instead of copied: `["dpkg -i /artifacts/*.deb"]` installs
    /// packages and the image keeps what they install, never the packages. The image gets one
    /// layer on its base. Each command runs with `/bin/sh -c`; the base needs a shell.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub run: Vec<Spanned<String>>,
    /// Where the artifacts are mounted while `run` executes.
    #[serde(default = "default_artifacts_mount")]
    #[schemars(with = "String", default = "default_artifacts_mount")]
    pub artifacts_mount: Spanned<String>,
    /// Put a small init first in the entrypoint, so zombies are reaped and signals reach the
    /// program: `true` finds tini in the base or the builder (a static tini from the builder is
    /// copied in), or give the init's path in the image (e.g. `"/usr/bin/tini"` installed by a
    /// `run` step).
    #[serde(default = "default_init")]
    #[schemars(with = "Init", default = "default_init")]
    pub init: Spanned<Init>,
    /// The shared libraries of dynamically linked ELF artifacts (their `PT_INTERP` program
    /// interpreter and `DT_NEEDED` libraries): `"check"` fails the build when the base lacks
    /// any of them and names them; `"auto"` copies what the base lacks from the builder image
    /// into the runtime image (symlinks followed, recursively), so a glibc binary runs on
    /// `scratch`; `"off"` looks at nothing.
    #[serde(default)]
    pub libs: Libs,
}

/// What to do about the shared libraries of dynamically linked artifacts.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Libs {
    /// Fail the build, naming them, when the base lacks the interpreter or a library.
    #[default]
    Check,
    /// Copy the interpreter and the libraries the base lacks from the builder image.
    Auto,
    /// Do not look: the artifacts are shipped as they are.
    Off,
}

/// Whether and which init runs as PID 1.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum Init {
    /// `true`: find tini in the base, else take a static one from the builder; `false`: none.
    Enabled(bool),
    /// The init's path inside the image.
    Path(String),
}

impl Default for Init {
    fn default() -> Self {
        Init::Enabled(false)
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            base: default_base(),
            entrypoint: None,
            cmd: None,
            env: BTreeMap::new(),
            workdir: None,
            user: None,
            expose: Vec::new(),
            labels: BTreeMap::new(),
            run: Vec::new(),
            artifacts_mount: default_artifacts_mount(),
            init: default_init(),
            libs: Libs::default(),
        }
    }
}

fn default_init() -> Spanned<Init> {
    Spanned::new(0..0, Init::default())
}

fn default_artifacts_mount() -> Spanned<String> {
    Spanned::new(0..0, "/artifacts".to_string())
}

/// An exposed port.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum Port {
    /// A TCP port number.
    Number(#[schemars(range(min = 1))] u16),
    /// `PORT/tcp` or `PORT/udp`.
    Spec(String),
}

/// The names of the runtime image.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Tags given to the runtime image, e.g. `["hello:latest"]`. `--tag` on the command line
    /// replaces them.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub tags: Vec<Spanned<String>>,
    /// Push every tag straight to the registry it names after each build, as `build --push`
    /// does (then the image is loaded into the engine only with `--load`). Every tag must name
    /// its registry, e.g. `registry.example.com/team/app:1`.
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub push: Option<Spanned<bool>>,
}

fn default_true() -> bool {
    true
}
fn default_from() -> Spanned<String> {
    Spanned::new(0..0, "/out".to_string())
}
fn default_dest() -> Spanned<String> {
    Spanned::new(0..0, "/".to_string())
}
fn default_base() -> Spanned<String> {
    Spanned::new(0..0, "scratch".to_string())
}

impl Manifest {
    /// Every target, in name order; the single-image form gives one named `default`.
    pub fn targets(&self) -> Vec<NamedTarget> {
        if !self.targets.is_empty() {
            return self
                .targets
                .iter()
                .map(|(name, target)| NamedTarget {
                    name: name.get_ref().clone(),
                    span: name.span(),
                    target: target.clone(),
                })
                .collect();
        }
        match &self.artifacts {
            Some(artifacts) => vec![NamedTarget {
                name: DEFAULT_TARGET.to_string(),
                span: 0..0,
                target: Target {
                    builder: self.builder.clone(),
                    mounts: self.mounts.clone(),
                    caches: self.caches.clone(),
                    artifacts: artifacts.clone(),
                    runtime: self.runtime.clone().unwrap_or_default(),
                    image: self.image.clone().unwrap_or_default(),
                    gates: self.gates.clone().unwrap_or_default(),
                },
            }],
            None => Vec::new(),
        }
    }

    /// Whether this is the several-target form.
    pub fn has_named_targets(&self) -> bool {
        !self.targets.is_empty()
    }
}

/// Where a target's artifacts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactSource<'a> {
    /// A folder of the target's own builder.
    Builder(&'a str),
    /// A folder of another target's output: `TARGET:/path`.
    Target {
        /// The other target.
        name: &'a str,
        /// A folder inside that target's `artifacts.from`.
        path: &'a str,
    },
}

impl Artifacts {
    /// Parse `from`.
    pub fn source(&self) -> ArtifactSource<'_> {
        let from = self.from.get_ref().as_str();
        match from.split_once(':') {
            Some((name, path)) if !from.starts_with('/') && path.starts_with('/') => {
                ArtifactSource::Target { name, path }
            }
            _ => ArtifactSource::Builder(from),
        }
    }
}

/// The JSON Schema of the manifest, as checked into `schema/dockception.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Manifest);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
