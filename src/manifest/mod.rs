//! `dockception.toml`: the serde types that are also the JSON Schema, loading, and the checks
//! that need nothing but the file itself. Every error points at `file:line:col`.

pub mod diagnostic;
mod error;

pub use diagnostic::Diagnostic;
pub use error::{Error, Result};

pub mod gates;
pub mod glob;
pub mod shape;
pub mod starter;
pub mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::manifest::shape::{quoted, suggestion};
use crate::manifest::vars::Overrides;

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
pub const DEFAULT_TARGET: &str = "default";

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
    pub env: BTreeMap<String, String>,
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
    /// ends (`"90s"`, `"10m"`, `"1h"`), so a rebuild runs the command with `docker exec` in it
    /// instead of starting a new container (~80 ms instead of ~400 ms on a local engine). The
    /// container stays, labelled; it removes itself when idle that long, and
    /// `dockception clean` removes it at once. Off unless set.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub warm: Option<Spanned<String>>,
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
    /// projects never share a cache by accident.
    #[serde(default)]
    pub name: Option<String>,
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
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments, exec form.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Environment variables set in the runtime image.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory in the runtime image (absolute).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub workdir: Option<Spanned<String>>,
    /// The user the runtime image runs as, e.g. `65534:65534`.
    #[serde(default)]
    pub user: Option<String>,
    /// Ports the image listens on: a number (TCP) or `"53/udp"`.
    #[serde(default)]
    #[schemars(with = "Vec<Port>")]
    pub expose: Vec<Spanned<Port>>,
    /// Labels set on the runtime image.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
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
    Number(u16),
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
    pub tags: Vec<String>,
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

/// A manifest with where it came from, so later stages can point at its spans.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// The parsed and checked manifest, variables expanded.
    pub manifest: Manifest,
    /// The variables' values after the environment and `--set` were applied.
    pub vars: BTreeMap<String, String>,
}

/// A target of the manifest, by name (the single-image form has one, named `default`).
#[derive(Debug, Clone)]
pub struct NamedTarget {
    /// The target's name.
    pub name: String,
    /// Where the name is written (empty for the single-image form).
    pub span: std::ops::Range<usize>,
    /// The target.
    pub target: Target,
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

impl LoadedManifest {
    /// A diagnostic at `span` of this manifest.
    pub fn diagnostic(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        help: impl Into<Option<String>>,
    ) -> Diagnostic {
        Diagnostic::at(&self.path, &self.source, span, message, help.into())
    }

    /// The folder relative host paths resolve against.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }
}

/// Read and check a manifest file, with variables from the manifest only.
pub fn load(path: &Path) -> Result<LoadedManifest> {
    load_with(path, &Overrides::default())
}

/// Read and check a manifest file, with variables overridden from outside.
pub fn load_with(path: &Path, overrides: &Overrides) -> Result<LoadedManifest> {
    use std::io::Read;
    let read_error = |source| Error::ReadManifest {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    parse_bytes_with(path, bytes, overrides)
}

/// The largest manifest dockception reads. Real manifests are a few KiB; a bigger file is
/// almost surely the wrong one, and refusing it keeps parsing time and memory bounded.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Parse and check manifest bytes as read from a file. Bytes that are not UTF-8 are reported
/// at the line and column of the first bad byte; anything over [`MAX_MANIFEST_BYTES`] is refused.
pub fn parse_bytes(path: &Path, bytes: Vec<u8>) -> Result<LoadedManifest> {
    parse_bytes_with(path, bytes, &Overrides::default())
}

/// [`parse_bytes`] with variables overridden from outside.
pub fn parse_bytes_with(
    path: &Path,
    bytes: Vec<u8>,
    overrides: &Overrides,
) -> Result<LoadedManifest> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(Error::ManifestTooLarge {
            path: path.to_path_buf(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    match String::from_utf8(bytes) {
        Ok(source) => parse_with(path, source, overrides),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bad = e.as_bytes().get(at).copied().unwrap_or(0);
            // The text before the bad byte is the input itself, so its line and column hold.
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            Err(Error::Invalid(vec![Diagnostic::at(
                path,
                &text,
                at..at + 1,
                format!("the manifest is not valid UTF-8 (byte 0x{bad:02x} at offset {at})"),
                Some("save the file as UTF-8".into()),
            )]))
        }
    }
}

/// Parse and check manifest text; `path` is only used in messages and to resolve relative paths.
pub fn parse(path: &Path, source: String) -> Result<LoadedManifest> {
    parse_with(path, source, &Overrides::default())
}

/// The most problems reported from one file; the rest are counted.
const MAX_DIAGNOSTICS: usize = 50;

/// Parse manifest text: TOML syntax, variables, shape (keys and types, against the schema),
/// then the checks that need nothing but the file. Every problem found is reported.
pub fn parse_with(path: &Path, source: String, overrides: &Overrides) -> Result<LoadedManifest> {
    let (vars, manifest, mut problems) = {
        let diagnostic = |span: std::ops::Range<usize>, message: String, help: Option<String>| {
            Diagnostic::at(path, &source, span, message, help)
        };
        let (mut document, syntax) = DeTable::parse_recoverable(&source);
        if !syntax.is_empty() {
            let diagnostics = syntax
                .iter()
                .take(MAX_DIAGNOSTICS)
                .map(|e| {
                    diagnostic(
                        e.span().unwrap_or(0..0),
                        e.message().trim_end().to_string(),
                        Some("fix the TOML syntax; see https://toml.io".into()),
                    )
                })
                .collect();
            return Err(Error::Invalid(diagnostics));
        }
        let mut problems = Vec::new();
        let declared = declared_vars(document.get_ref());
        let vars = crate::manifest::vars::resolve(&declared, overrides);
        expand_document(document.get_mut(), &vars, &source, &mut problems);
        if let Ok(schema) = serde_json::from_str::<serde_json::Value>(&json_schema()) {
            for p in crate::manifest::shape::check(&document, &schema) {
                problems.push((p.span, p.message, p.help));
            }
            // Without the unknown keys the rest may still deserialize and be checked, so a
            // typo does not hide the file's other mistakes.
            crate::manifest::shape::strip_unknown(document.get_mut(), &schema);
        }
        let manifest = match Manifest::deserialize(toml::de::Deserializer::from(document)) {
            Ok(m) => m,
            Err(e) if problems.is_empty() => {
                let message = e.message().trim_end().to_string();
                let help = help_for_parse_error(&message);
                return Err(manifest_error(
                    &source,
                    vec![diagnostic(e.span().unwrap_or(0..0), message, help)],
                ));
            }
            Err(_) => {
                return Err(manifest_error(
                    &source,
                    sorted_diagnostics(problems, &diagnostic),
                ))
            }
        };
        (vars, manifest, sorted_diagnostics(problems, &diagnostic))
    };
    let loaded = LoadedManifest {
        path: path.to_path_buf(),
        source,
        manifest,
        vars,
    };
    problems.extend(check(&loaded));
    problems.sort_by_key(|d| (d.line, d.column));
    if problems.is_empty() {
        Ok(loaded)
    } else {
        problems.truncate(MAX_DIAGNOSTICS);
        Err(manifest_error(&loaded.source, problems))
    }
}

/// Mistakes only inside `[gates]` tables are a misconfigured gate (exit status 2), anything
/// else a broken manifest.
fn manifest_error(source: &str, problems: Vec<Diagnostic>) -> Error {
    let all_in_gates = problems
        .iter()
        .all(|d| in_gates_table(source, line_offset(source, d.line)));
    if all_in_gates {
        Error::GateConfig {
            problems: problems.iter().map(ToString::to_string).collect(),
        }
    } else {
        Error::Invalid(problems)
    }
}

/// The byte offset where 1-based `line` starts.
fn line_offset(source: &str, line: usize) -> usize {
    source
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum()
}

/// Whether byte `offset` of the manifest is inside a `[gates]` (or `[targets.NAME.gates]`)
/// table, or on a `gates…` key.
fn in_gates_table(source: &str, offset: usize) -> bool {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let here = source.get(offset.min(source.len())..).unwrap_or("");
    let line = here.lines().next().unwrap_or("").trim_start();
    let header = before
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with('['))
        .map(|h| h.split('#').next().unwrap_or("").trim().to_string());
    let in_table = header
        .is_some_and(|h| h == "[gates]" || (h.starts_with("[targets.") && h.ends_with(".gates]")));
    in_table || line.starts_with("gates") || line.starts_with("[gates]")
}

fn sorted_diagnostics(
    mut problems: Problems,
    diagnostic: &impl Fn(std::ops::Range<usize>, String, Option<String>) -> Diagnostic,
) -> Vec<Diagnostic> {
    problems.sort_by_key(|p| p.0.start);
    problems.truncate(MAX_DIAGNOSTICS);
    problems
        .into_iter()
        .map(|(span, message, help)| diagnostic(span, message, help))
        .collect()
}

/// The `[vars]` table's string values; other shapes are reported by the shape check.
fn declared_vars(document: &DeTable<'_>) -> BTreeMap<String, String> {
    let Some(DeValue::Table(vars)) = document.get("vars").map(|v| v.get_ref()) else {
        return BTreeMap::new();
    };
    vars.iter()
        .filter_map(|(k, v)| match v.get_ref() {
            DeValue::String(s) => Some((k.get_ref().to_string(), s.to_string())),
            _ => None,
        })
        .collect()
}

type Problems = Vec<(std::ops::Range<usize>, String, Option<String>)>;

/// Expand variables in every string value except `[vars]` itself.
fn expand_document(
    document: &mut DeTable<'_>,
    vars: &BTreeMap<String, String>,
    source: &str,
    problems: &mut Problems,
) {
    for (key, value) in document.iter_mut() {
        if key.get_ref() == "vars" {
            continue;
        }
        expand_value(value, vars, source, problems);
    }
}

fn expand_value(
    value: &mut Spanned<DeValue<'_>>,
    vars: &BTreeMap<String, String>,
    source: &str,
    problems: &mut Problems,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(text) => match crate::manifest::vars::expand(text, vars) {
            Ok(expanded) => {
                if expanded != *text {
                    *text = std::borrow::Cow::Owned(expanded);
                }
            }
            Err(errors) => {
                for error in errors {
                    problems.push(variable_problem(&error, text, span.clone(), source));
                }
            }
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                expand_value(item, vars, source, problems);
            }
        }
        DeValue::Table(table) => {
            for (_, item) in table.iter_mut() {
                expand_value(item, vars, source, problems);
            }
        }
        _ => {}
    }
}

/// Point at the reference inside the string literal when it is written there as is.
fn variable_problem(
    error: &crate::manifest::vars::ExpandError,
    text: &str,
    literal: std::ops::Range<usize>,
    source: &str,
) -> (std::ops::Range<usize>, String, Option<String>) {
    use crate::manifest::vars::ExpandError;
    let (range, message, help) = match error {
        ExpandError::Undefined(u) => (
            u.range.clone(),
            format!("variable `{}` is not defined", u.name),
            format!(
                "define it in [vars], set {}{} or pass --set {}=VALUE, give a default with ${{{}:-VALUE}}, or write $${{ for a literal ${{",
                crate::manifest::vars::ENV_PREFIX,
                u.name,
                u.name,
                u.name
            ),
        ),
        ExpandError::Malformed(m) => (
            m.range.clone(),
            m.message.clone(),
            "write ${NAME} or ${NAME:-default}, or $${ for a literal ${".to_string(),
        ),
    };
    let reference = text.get(range).unwrap_or_default();
    let span = source
        .get(literal.clone())
        .and_then(|written| written.find(reference))
        .filter(|_| !reference.is_empty())
        .map(|at| literal.start + at..literal.start + at + reference.len())
        .unwrap_or(literal);
    (span, message, Some(help))
}

fn help_for_parse_error(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("remove the key or fix its spelling; the schema in schema/dockception.schema.json lists every key".into())
    } else if message.starts_with("missing field") {
        Some("add the key; see README.md for a manifest walk-through".into())
    } else {
        None
    }
}

/// The checks that need only the manifest text; all problems are collected.
fn check(loaded: &LoadedManifest) -> Vec<Diagnostic> {
    let m = &loaded.manifest;
    let mut out = Vec::new();
    let targets = m.targets();
    if m.has_named_targets() {
        let single: Vec<(&str, Option<std::ops::Range<usize>>)> = vec![
            ("builder", m.builder.as_ref().map(|b| b.image.span())),
            ("mount", m.mounts.first().map(|x| x.source.span())),
            ("cache", m.caches.first().map(|x| x.target.span())),
            ("artifacts", m.artifacts.as_ref().map(|a| a.include.span())),
            ("runtime", m.runtime.as_ref().map(|r| r.base.span())),
            ("image", m.image.as_ref().map(|_| 0..0)),
            ("gates", m.gates.as_ref().map(|_| 0..0)),
        ];
        for (key, span) in single {
            if let Some(span) = span {
                out.push(loaded.diagnostic(
                    span,
                    format!("a top-level [{key}] cannot be combined with [targets]"),
                    Some(format!("move it into a target, e.g. [targets.NAME.{key}]")),
                ));
            }
        }
    } else if m.artifacts.is_none() || m.builder.is_none() {
        let missing = if m.builder.is_none() {
            "[builder]"
        } else {
            "[artifacts]"
        };
        out.push(loaded.diagnostic(
            0..0,
            format!("the manifest has no {missing}, so it describes no image"),
            Some("add [builder] and [artifacts] (see README.md), or several [targets.NAME]".into()),
        ));
    }

    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    for named in &targets {
        check_target(loaded, named, &names, &targets, &mut out);
    }
    check_cycles(loaded, &targets, &mut out);
    check_groups(loaded, &names, &mut out);
    out.sort_by_key(|d| (d.line, d.column));
    out
}

fn check_target(
    loaded: &LoadedManifest,
    named: &NamedTarget,
    names: &[&str],
    targets: &[NamedTarget],
    out: &mut Vec<Diagnostic>,
) {
    let t = &named.target;
    let mut absolute = |value: &Spanned<String>, what: &str| {
        if !value.get_ref().starts_with('/') {
            out.push(loaded.diagnostic(
                value.span(),
                format!(
                    "{what} must be an absolute path inside the container, not {:?}",
                    value.get_ref()
                ),
                Some(format!(
                    "write it from the root, e.g. \"/{}\"",
                    value.get_ref().trim_start_matches("./")
                )),
            ));
        }
    };
    if let Some(w) = t.builder.as_ref().and_then(|b| b.workdir.as_ref()) {
        absolute(w, "builder.workdir");
    }
    for mount in &t.mounts {
        absolute(&mount.target, "mount target");
    }
    for cache in &t.caches {
        absolute(&cache.target, "cache target");
    }
    let source = t.artifacts.source();
    match source {
        ArtifactSource::Builder(_) => absolute(&t.artifacts.from, "artifacts.from"),
        ArtifactSource::Target { .. } => {}
    }
    absolute(&t.artifacts.dest, "artifacts.dest");
    if let Some(w) = &t.runtime.workdir {
        absolute(w, "runtime.workdir");
    }
    absolute(&t.runtime.artifacts_mount, "runtime.artifacts_mount");
    if let Init::Path(path) = t.runtime.init.get_ref() {
        absolute(
            &Spanned::new(t.runtime.init.span(), path.clone()),
            "runtime.init",
        );
    }

    match (&t.builder, &source) {
        (Some(b), ArtifactSource::Target { name, .. }) => out.push(loaded.diagnostic(
            b.image.span(),
            format!(
                "target `{}` takes its artifacts from target `{name}`, so it cannot have a builder of its own",
                named.name
            ),
            Some("remove this [builder], or take the artifacts from this target's own output folder (e.g. from = \"/out\")".into()),
        )),
        (None, ArtifactSource::Builder(_)) if loaded.manifest.has_named_targets() => {
            out.push(loaded.diagnostic(
                named.span.clone(),
                format!("target `{}` has no [builder] and takes no artifacts from another target", named.name),
                Some(format!("add [targets.{}.builder], or set artifacts.from = \"TARGET:/path\"", named.name)),
            ))
        }
        (None, _) => {
            if let Some(first) = t.mounts.first() {
                out.push(loaded.diagnostic(
                    first.source.span(),
                    "a mount without a builder is never used",
                    Some("remove the mount, or give the target a [builder]".to_string()),
                ));
            }
        }
        _ => {}
    }
    if let ArtifactSource::Target { name, path } = source {
        if !names.contains(&name) {
            let help = suggestion(name, names, || format!("the targets are {}", quoted(names)));
            out.push(loaded.diagnostic(
                t.artifacts.from.span(),
                format!("artifacts.from names target `{name}`, which does not exist"),
                Some(help),
            ));
        } else if let Some(other) = targets.iter().find(|o| o.name == name) {
            if let ArtifactSource::Builder(root) = other.target.artifacts.source() {
                let root = normalise_container_path(root);
                let inside =
                    path == root || path.starts_with(&format!("{}/", root.trim_end_matches('/')));
                if !inside || has_parent_component(path) {
                    out.push(loaded.diagnostic(
                        t.artifacts.from.span(),
                        format!("{path} is not inside target `{name}`'s output folder {root}"),
                        Some(format!("take a folder below it, e.g. \"{name}:{root}\"")),
                    ));
                }
            }
        }
    }

    if let Some(b) = &t.builder {
        if b.image.get_ref().trim().is_empty() {
            out.push(loaded.diagnostic(
                b.image.span(),
                "builder.image is empty",
                Some("name the image the build runs in, e.g. \"gcc:local\"".into()),
            ));
        }
        match b.run.get_ref() {
            Command::Shell(s) if s.trim().is_empty() => out.push(loaded.diagnostic(
                b.run.span(),
                "builder.run is empty",
                Some("give the command that builds your artifacts".into()),
            )),
            Command::Argv(v) if v.is_empty() => out.push(loaded.diagnostic(
                b.run.span(),
                "builder.run is an empty list",
                Some("give the program and its arguments, e.g. [\"make\"]".into()),
            )),
            _ => {}
        }
        let mut seen_from_host: Vec<&str> = Vec::new();
        for name in &b.env_from_host {
            let n = name.get_ref().as_str();
            if !is_env_name(n) {
                out.push(
                    loaded.diagnostic(
                        name.span(),
                        format!("{n:?} is not an environment variable name"),
                        Some(
                            "use letters, digits and _, not starting with a digit, e.g. \"NPM_TOKEN\""
                                .into(),
                        ),
                    ),
                );
            } else if b.env.contains_key(n) {
                out.push(loaded.diagnostic(
                    name.span(),
                    format!("{n} is both in builder.env and builder.env_from_host"),
                    Some("keep one: env_from_host takes the value from your environment".into()),
                ));
            } else if seen_from_host.contains(&n) {
                out.push(loaded.diagnostic(
                    name.span(),
                    format!("{n} is listed twice in builder.env_from_host"),
                    Some("list each name once".into()),
                ));
            }
            seen_from_host.push(n);
        }
        if let Some(warm) = &b.warm {
            if parse_duration(warm.get_ref()).is_none() {
                out.push(loaded.diagnostic(
                    warm.span(),
                    format!("builder.warm {:?} is not a duration", warm.get_ref()),
                    Some(
                        "write a whole number of seconds, minutes or hours, e.g. \"90s\", \"10m\" or \"1h\""
                            .into(),
                    ),
                ));
            }
        }
        for (name, path) in &b.secrets {
            if !is_secret_name(name) {
                out.push(loaded.diagnostic(
                    path.span(),
                    format!("secret name {name:?} cannot be a file name in /run/secrets"),
                    Some("use letters, digits, `.`, `_` and `-`, e.g. npmrc".into()),
                ));
            }
            if path.get_ref().is_empty() {
                out.push(loaded.diagnostic(
                    path.span(),
                    format!("secret {name} names no file"),
                    Some("give the host path of the file to mount".into()),
                ));
            }
        }
    }
    if let Some(first) = t.runtime.run.first() {
        if t.runtime.base.get_ref() == "scratch" {
            out.push(loaded.diagnostic(
                first.span(),
                "runtime.run needs a base with a shell, and scratch has none",
                Some("set runtime.base to an image with /bin/sh (e.g. \"debian-minimal:local\"), or ship the artifacts without run steps".into()),
            ));
        }
        for step in &t.runtime.run {
            if step.get_ref().trim().is_empty() {
                out.push(loaded.diagnostic(
                    step.span(),
                    "an empty runtime.run step",
                    Some("remove it, or write the command".into()),
                ));
            }
        }
    }
    if t.runtime.base.get_ref().trim().is_empty() {
        out.push(loaded.diagnostic(
            t.runtime.base.span(),
            "runtime.base is empty",
            Some("write \"scratch\" for an empty base, or name an image".into()),
        ));
    }

    if has_parent_component(t.artifacts.dest.get_ref()) {
        out.push(loaded.diagnostic(
            t.artifacts.dest.span(),
            "artifacts.dest must not contain `..`",
            Some("name a folder inside the image, e.g. \"/app\"".into()),
        ));
    }
    if t.artifacts.include.get_ref().is_empty() {
        out.push(loaded.diagnostic(
            t.artifacts.include.span(),
            "artifacts.include is empty, so nothing would be shipped",
            Some("list the files to ship, e.g. [\"app\"] or [\"bin/*\"]".into()),
        ));
    }
    for glob in t
        .artifacts
        .include
        .get_ref()
        .iter()
        .chain(&t.artifacts.exclude)
    {
        let g = glob.get_ref();
        let shown = glob::short_glob(g);
        if g.starts_with('/') || has_parent_component(g) {
            out.push(loaded.diagnostic(
                glob.span(),
                format!("artifact glob {shown:?} reaches outside artifacts.from"),
                Some("write globs relative to artifacts.from, without a leading / or `..`".into()),
            ));
        } else if let Err(e) = glob::compile_glob(g) {
            out.push(loaded.diagnostic(
                glob.span(),
                format!("invalid glob {shown:?}: {}", e.kind()),
                Some("see https://docs.rs/globset for the glob syntax".into()),
            ));
        }
    }

    let mut seen: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
    for mount in &t.mounts {
        let path = normalise_container_path(mount.target.get_ref());
        if let Some((_, first)) = seen.iter().find(|(p, _)| *p == path) {
            let first = loaded.diagnostic(first.clone(), "", None);
            out.push(loaded.diagnostic(
                mount.target.span(),
                format!("two mounts on {path} (the first is at line {})", first.line),
                Some("mount each host folder on its own container path".into()),
            ));
        } else {
            seen.push((path, mount.target.span()));
        }
    }
    for cache in &t.caches {
        let path = normalise_container_path(cache.target.get_ref());
        if seen.iter().any(|(p, _)| *p == path) {
            out.push(loaded.diagnostic(
                cache.target.span(),
                format!("the cache on {path} collides with another mount on the same path"),
                Some("give the cache its own path".into()),
            ));
        } else {
            seen.push((path, cache.target.span()));
        }
    }
    if let ArtifactSource::Builder(from) = source {
        let from = normalise_container_path(from);
        if let Some((_, clash)) = seen.iter().find(|(p, _)| *p == from) {
            // `from` may be the default, written nowhere: then point at the clashing mount.
            let span = if t.artifacts.from.span().is_empty() {
                clash.clone()
            } else {
                t.artifacts.from.span()
            };
            out.push(loaded.diagnostic(
                span,
                format!("artifacts.from {from} is also a mount or cache target"),
                Some("dockception mounts the build's output folder on artifacts.from; move the mount, or set artifacts.from to a free path such as \"/dist\"".into()),
            ));
        }
    }

    for port in &t.runtime.expose {
        if let Port::Spec(s) = port.get_ref() {
            if parse_port_spec(s).is_none() {
                out.push(loaded.diagnostic(
                    port.span(),
                    format!("invalid port {s:?}"),
                    Some("write a number (8080) or \"PORT/tcp\" / \"PORT/udp\"".into()),
                ));
            }
        }
    }
}

/// The longest `builder.warm`: a day. A longer idle builder is a forgotten one.
const MAX_WARM_SECS: u64 = 24 * 60 * 60;

/// Seconds in a duration written `<whole number><s|m|h>` (`"90s"`, `"10m"`, `"1h"`), more than
/// zero and at most a day; `None` for anything else.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 60 * 60,
        _ => return None,
    };
    let number = &text[..text.len() - unit.len_utf8()];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = number.parse::<u64>().ok()?.checked_mul(scale)?;
    (1..=MAX_WARM_SECS).contains(&secs).then_some(secs)
}

/// Targets that take artifacts from each other in a circle can never be built.
fn check_cycles(loaded: &LoadedManifest, targets: &[NamedTarget], out: &mut Vec<Diagnostic>) {
    let next = |name: &str| -> Option<&str> {
        targets
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| match t.target.artifacts.source() {
                ArtifactSource::Target { name, .. } => Some(name),
                ArtifactSource::Builder(_) => None,
            })
    };
    let mut reported: Vec<String> = Vec::new();
    for start in targets {
        let mut chain = vec![start.name.as_str()];
        let mut current = start.name.as_str();
        while let Some(following) = next(current) {
            if let Some(at) = chain.iter().position(|n| *n == following) {
                let mut cycle: Vec<&str> = chain[at..].to_vec();
                // Report each cycle once, starting from its smallest name.
                let smallest = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, n)| **n)
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                cycle.rotate_left(smallest);
                let key = cycle.join(" -> ");
                if !reported.contains(&key) {
                    let first = targets.iter().find(|t| t.name == cycle[0]);
                    let span = first
                        .map(|t| t.target.artifacts.from.span())
                        .unwrap_or(0..0);
                    out.push(loaded.diagnostic(
                        span,
                        format!("targets take artifacts from each other in a cycle: {key} -> {}", cycle[0]),
                        Some("one of them must build its artifacts itself (a [builder] and artifacts.from = \"/out\")".into()),
                    ));
                    reported.push(key);
                }
                break;
            }
            chain.push(following);
            current = following;
        }
    }
}

fn check_groups(loaded: &LoadedManifest, names: &[&str], out: &mut Vec<Diagnostic>) {
    let m = &loaded.manifest;
    let groups: Vec<&str> = m.groups.keys().map(|g| g.get_ref().as_str()).collect();
    for (group, members) in &m.groups {
        if names.contains(&group.get_ref().as_str()) {
            out.push(loaded.diagnostic(
                group.span(),
                format!("group `{}` has the name of a target", group.get_ref()),
                Some("rename the group".into()),
            ));
        }
        for member in members {
            if !names.contains(&member.get_ref().as_str()) {
                out.push(unknown_name(loaded, member, names, &[]));
            }
        }
    }
    if let Some(default) = &m.default {
        for name in default.get_ref().to_vec() {
            if !names.contains(&name.as_str()) && !groups.contains(&name.as_str()) {
                let spanned = Spanned::new(default.span(), name);
                out.push(unknown_name(loaded, &spanned, names, &groups));
            }
        }
    }
}

fn unknown_name(
    loaded: &LoadedManifest,
    name: &Spanned<String>,
    targets: &[&str],
    groups: &[&str],
) -> Diagnostic {
    let known: Vec<&str> = targets.iter().chain(groups).copied().collect();
    let help = suggestion(name.get_ref(), &known, || {
        format!("the targets are {}", quoted(targets))
    });
    loaded.diagnostic(
        name.span(),
        format!(
            "`{}` is not a target{}",
            name.get_ref(),
            if groups.is_empty() { "" } else { " or group" }
        ),
        Some(help),
    )
}

/// A POSIX environment variable name: letters, digits and `_`, not starting with a digit.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A plain file name for `/run/secrets/NAME`.
fn is_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn has_parent_component(path: &str) -> bool {
    path.split('/').any(|c| c == "..")
}

/// `/out/` and `/out` are the same container path.
pub(crate) fn normalise_container_path(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}

/// `"8080"`, `"8080/tcp"`, `"53/udp"` -> (port, protocol).
pub(crate) fn parse_port_spec(spec: &str) -> Option<(u16, &str)> {
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let port: u16 = port.parse().ok()?;
    matches!(proto, "tcp" | "udp" | "sctp").then_some((port, proto))
}

/// The JSON Schema of the manifest, as checked into `schema/dockception.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Manifest);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[builder]
image = "gcc:local"
run = "gcc -static -o /out/hello hello.c"

[[mount]]
source = "."
target = "/src"

[artifacts]
include = ["hello"]

[runtime]
entrypoint = ["/hello"]
expose = [8080, "53/udp"]
"#;

    fn errors(src: &str) -> Vec<Diagnostic> {
        match parse(Path::new("dockception.toml"), src.to_string()) {
            Err(Error::Invalid(d)) => d,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("manifest was accepted"),
        }
    }

    #[test]
    fn warm_durations_are_whole_seconds_minutes_or_hours() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("1h"), Some(3600));
        assert_eq!(parse_duration("24h"), Some(86_400));
        for bad in [
            "", "s", "10", "0s", "1.5m", "-5s", "10 m", "1d", "25h", "5ms", "+5s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_malformed_warm_duration_points_at_its_value() {
        let src = GOOD.replace("run = ", "warm = \"ten minutes\"\nrun = ");
        let found = errors(&src);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].to_string().contains("builder.warm"),
            "{}",
            found[0]
        );
        assert_eq!((found[0].line, found[0].column), (4, 8));
    }

    #[test]
    fn a_good_manifest_loads_with_defaults() {
        let loaded = parse(Path::new("dockception.toml"), GOOD.to_string()).expect("loads");
        let m = loaded.manifest;
        let artifacts = m.artifacts.as_ref().expect("artifacts");
        assert_eq!(artifacts.from.get_ref(), "/out");
        assert_eq!(artifacts.dest.get_ref(), "/");
        let runtime = m.runtime.as_ref().expect("runtime");
        assert_eq!(runtime.base.get_ref(), "scratch");
        assert!(m.mounts[0].read_only);
        assert_eq!(
            m.builder.as_ref().expect("builder").run.get_ref(),
            &Command::Shell("gcc -static -o /out/hello hello.c".into())
        );
        assert_eq!(runtime.expose.len(), 2);
    }

    #[test]
    fn unknown_keys_are_rejected_at_their_spot() {
        let src = GOOD.replace("[[mount]]\n", "[[mount]]\nsorce = \"x\"\n");
        let d = errors(&src);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].message, "unknown key `sorce` in `mount[0]`",
            "{}",
            d[0]
        );
        assert_eq!(d[0].help.as_deref(), Some("did you mean `source`?"));
        assert_eq!((d[0].line, d[0].column), (7, 1));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let d = errors("[builder\nimage = 1\n");
        assert_eq!(d[0].line, 1);
        assert!(d[0].to_string().starts_with("dockception.toml:1:"));
    }

    #[test]
    fn all_semantic_errors_are_collected() {
        let src = r#"
[builder]
image = "gcc:local"
run = []
workdir = "src"

[[mount]]
source = "."
target = "/src"

[[mount]]
source = "other"
target = "/src/"

[artifacts]
include = []
exclude = ["../etc/*"]
dest = "/app/../.."
"#;
        let d = errors(src);
        let messages: Vec<_> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(d.len(), 6, "{messages:#?}");
        assert!(messages[0].contains("empty list"));
        assert!(messages[1].contains("builder.workdir must be an absolute path"));
        assert!(messages[2].contains("two mounts on /src (the first is at line 9)"));
        assert!(messages[3].contains("include is empty"));
        assert!(messages[4].contains("reaches outside"));
        assert!(messages[5].contains("must not contain `..`"));
        assert_eq!((d[1].line, d[1].column), (5, 11));
    }

    #[test]
    fn bad_ports_and_globs_are_reported() {
        let src = GOOD
            .replace("[8080, \"53/udp\"]", "[\"53/icmp\"]")
            .replace("[\"hello\"]", "[\"a[\"]");
        let d = errors(&src);
        assert_eq!(d.len(), 2, "{d:#?}");
        assert!(d[0].message.starts_with("invalid glob"));
        assert!(d[1].message.starts_with("invalid port"));
    }

    #[test]
    fn secrets_from_the_host_are_checked() {
        let src = GOOD.replace(
            "run = \"gcc",
            "env = { TOKEN = \"x\" }\nenv_from_host = [\"TOKEN\", \"9LIVES\", \"NPM_TOKEN\", \"NPM_TOKEN\"]\nsecrets = { \"../x\" = \"a\", npmrc = \"\" }\nrun = \"gcc",
        );
        let d = errors(&src);
        let messages: Vec<_> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "TOKEN is both in builder.env and builder.env_from_host",
                "\"9LIVES\" is not an environment variable name",
                "NPM_TOKEN is listed twice in builder.env_from_host",
                "secret name \"../x\" cannot be a file name in /run/secrets",
                "secret npmrc names no file",
            ]
        );
        let good = GOOD.replace(
            "run = \"gcc",
            "env_from_host = [\"NPM_TOKEN\"]\nsecrets = { npmrc = \"~/.npmrc\" }\nrun = \"gcc",
        );
        let loaded = parse(Path::new("dockception.toml"), good).expect("loads");
        assert_eq!(
            loaded
                .manifest
                .builder
                .as_ref()
                .expect("builder")
                .env_from_host[0]
                .get_ref(),
            "NPM_TOKEN"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_located() {
        let bytes = b"[builder]\nimage = \"caf\xe9\"\n".to_vec();
        let Err(Error::Invalid(d)) = parse_bytes(Path::new("m.toml"), bytes) else {
            panic!("expected a manifest error");
        };
        assert_eq!((d[0].line, d[0].column), (2, 13));
        assert_eq!(
            d[0].message,
            "the manifest is not valid UTF-8 (byte 0xe9 at offset 22)"
        );
    }

    #[test]
    fn huge_manifests_are_refused() {
        let big = vec![b'#'; MAX_MANIFEST_BYTES as usize + 1];
        let e = parse_bytes(Path::new("m.toml"), big).expect_err("too big");
        assert!(matches!(e, Error::ManifestTooLarge { .. }), "{e}");
        assert!(e.to_string().contains("larger than 1048576 bytes"), "{e}");
    }

    #[test]
    fn deep_nesting_is_an_error_at_its_spot_not_a_crash() {
        for (open, close) in [("[", "]"), ("{a=", "}")] {
            let src = format!("a = {}1{}\n", open.repeat(100_000), close.repeat(100_000));
            let d = errors(&src);
            assert_eq!(d.len(), 1);
            assert!(d[0].message.contains("recurs"), "{}", d[0].message);
            assert_eq!(d[0].line, 1);
        }
        let d = errors(&format!("[{}]\n", vec!["a"; 100_000].join(".")));
        assert!(d[0].message.contains("recursion"), "{}", d[0].message);
    }

    #[test]
    fn enormous_globs_load_and_broken_ones_are_cut_in_messages() {
        let alternatives: Vec<String> = (0..50_000).map(|i| format!("f{i}")).collect();
        let huge = format!("{{{}}}", alternatives.join(","));
        let src = GOOD.replace("[\"hello\"]", &format!("[\"{huge}\", \"**/*.so\"]"));
        assert!(src.len() > 300_000);
        let loaded = parse(Path::new("dockception.toml"), src).expect("loads");
        assert_eq!(
            loaded
                .manifest
                .artifacts
                .as_ref()
                .expect("artifacts")
                .include
                .get_ref()
                .len(),
            2
        );

        let broken = format!("{{{}", alternatives.join(","));
        let d = errors(&GOOD.replace("[\"hello\"]", &format!("[\"{broken}\"]")));
        assert_eq!(d.len(), 1);
        assert!(
            d[0].message.starts_with("invalid glob \"{f0,f1,"),
            "{}",
            d[0].message
        );
        assert!(
            d[0].message
                .ends_with("unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)"),
            "{}",
            d[0].message
        );
        assert!(d[0].to_string().len() < 1_000);
    }

    #[test]
    fn port_specs_parse() {
        assert_eq!(parse_port_spec("53/udp"), Some((53, "udp")));
        assert_eq!(parse_port_spec("80"), Some((80, "tcp")));
        assert_eq!(parse_port_spec("x/tcp"), None);
    }
}
