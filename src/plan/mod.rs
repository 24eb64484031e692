//! Resolve a checked manifest into a plain, printable plan: absolute host paths, the builder's
//! argv and user, volume names, artifact rules, runtime config and tags. No Docker here; the
//! only I/O is looking at the mount sources on the host.

mod error;

pub use error::{Error, Result};

pub mod secrets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::manifest::{self, ArtifactSource, Command, LoadedManifest, NamedTarget, Port};

/// The label every container, volume and image dockception creates carries.
pub const LABEL: &str = "dockception";
/// The label naming the project (the manifest's folder) a resource belongs to.
pub const PROJECT_LABEL: &str = "dockception.project";

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

impl PlanSet {
    /// The plan for people: build order, then each target's resolved settings.
    pub fn to_text(&self) -> String {
        let mut out = format!("manifest {}\n", self.manifest.display());
        out.push_str(&format!("build order: {}\n", self.order.join(" -> ")));
        out.push_str(&format!("images built: {}\n", self.selected.join(", ")));
        if !self.vars.is_empty() {
            let vars: Vec<String> = self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("vars: {}\n", vars.join(" ")));
        }
        for plan in &self.targets {
            out.push('\n');
            out.push_str(&plan.to_text(self.is_selected(&plan.target)));
        }
        out
    }
}

impl Plan {
    fn to_text(&self, builds_image: bool) -> String {
        let b = &self.builder;
        let mut lines = vec![format!("[{}]", self.target)];
        match &self.artifacts_from {
            Some(from) => lines.push(format!(
                "  artifacts from target {from}: {}",
                if self.artifacts.subdir.is_empty() {
                    b.output_target.clone()
                } else {
                    format!("{}/{}", b.output_target, self.artifacts.subdir)
                }
            )),
            None => {
                lines.push(format!("  builder   {}", b.image));
                lines.push(format!("  run       {}", shell_words(&b.command)));
                if let Some(w) = &b.workdir {
                    lines.push(format!("  workdir   {w}"));
                }
                lines.push(format!(
                    "  user      {}",
                    b.user.as_deref().unwrap_or("(image default)")
                ));
                for (k, v) in &b.env {
                    lines.push(format!("  env       {k}={v}"));
                }
                if let Some(network) = &b.network {
                    lines.push(format!("  network   {network}"));
                }
                if let Some(warm) = b.warm {
                    lines.push(format!("  warm      {warm} s"));
                }
                for m in &b.mounts {
                    lines.push(format!(
                        "  mount     {} -> {} ({})",
                        m.source.display(),
                        m.target,
                        if m.read_only {
                            "read-only"
                        } else {
                            "read-write"
                        }
                    ));
                }
                for c in &b.caches {
                    lines.push(format!("  cache     {} -> {}", c.volume, c.target));
                }
                lines.push(format!(
                    "  output    {} -> {}",
                    self.out_dir.display(),
                    b.output_target
                ));
            }
        }
        lines.push(format!(
            "  ship      {}{} -> {}",
            self.artifacts.include.join(", "),
            if self.artifacts.exclude.is_empty() {
                String::new()
            } else {
                format!(" minus {}", self.artifacts.exclude.join(", "))
            },
            self.artifacts.dest
        ));
        if builds_image {
            let r = &self.runtime;
            lines.push(format!("  base      {}", r.base));
            if let Some(e) = &r.entrypoint {
                lines.push(format!("  entrypoint {}", shell_words(e)));
            }
            if let Some(c) = &r.cmd {
                lines.push(format!("  cmd       {}", shell_words(c)));
            }
            for (k, v) in &r.env {
                lines.push(format!("  env       {k}={v}"));
            }
            if let Some(w) = &r.workdir {
                lines.push(format!("  workdir   {w}"));
            }
            if let Some(u) = &r.user {
                lines.push(format!("  user      {u}"));
            }
            if !r.expose.is_empty() {
                lines.push(format!("  expose    {}", r.expose.join(" ")));
            }
            for (k, v) in &r.labels {
                lines.push(format!("  label     {k}={v}"));
            }
            for step in &r.steps {
                lines.push(format!(
                    "  step      {step}  (artifacts at {})",
                    r.artifacts_mount
                ));
            }
            match &r.init {
                InitPlan::None => {}
                InitPlan::Auto => {
                    lines.push("  init      tini (from the base, else the builder)".into())
                }
                InitPlan::Path(p) => lines.push(format!("  init      {p}")),
            }
            match r.libs {
                manifest::Libs::Check => {}
                manifest::Libs::Auto => lines.push(
                    "  libs      auto (what dynamic artifacts need is copied from the builder)"
                        .into(),
                ),
                manifest::Libs::Off => lines.push("  libs      off (not checked)".into()),
            }
            lines.push(format!(
                "  tags      {}",
                if self.tags.is_empty() {
                    "(none: the image is known by its id)".to_string()
                } else {
                    self.tags.join(", ")
                }
            ));
        } else {
            lines.push("  (artifacts only: another target uses them)".into());
        }
        lines.join("\n") + "\n"
    }
}

/// Quote words that need it, so the line can be pasted into a shell.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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

impl RuntimePlan {
    /// Whether the base is the empty `scratch` image.
    pub fn is_scratch(&self) -> bool {
        self.base == "scratch"
    }
}

/// Resolve a loaded manifest into the plan of a run: the selected targets and what they need,
/// in build order.
pub fn plan(loaded: &LoadedManifest, options: &PlanOptions) -> Result<PlanSet> {
    let manifest_path = absolute(&loaded.path)?;
    let manifest_dir = manifest_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let project = project_name(&manifest_dir);
    let base_out = options
        .out_dir
        .clone()
        .unwrap_or_else(|| manifest_dir.join(".dockception"));
    let named = loaded.manifest.targets();
    let names: Vec<&str> = named.iter().map(|t| t.name.as_str()).collect();

    let selected = select(loaded, &names, &options.selection)?;
    let needed = with_dependencies(&named, &selected);
    let order = build_order(&named, &needed);

    let mut problems = Vec::new();
    let mut builders: BTreeMap<&str, BuilderPlan> = BTreeMap::new();
    for t in &named {
        if let Some(builder) = &t.target.builder {
            match builder_plan(loaded, &manifest_dir, &project, t, builder, options) {
                Ok(plan) => {
                    builders.insert(t.name.as_str(), plan);
                }
                Err(mut more) => problems.append(&mut more),
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }

    let tags = tags_by_target(&named, &selected, &options.tags)?;
    let mut targets = Vec::new();
    for name in &order {
        let Some(t) = named.iter().find(|t| &t.name == name) else {
            continue;
        };
        let (artifacts_from, builder, subdir) = match t.target.artifacts.source() {
            ArtifactSource::Builder(_) => {
                (None, builders.get(name.as_str()).cloned(), String::new())
            }
            ArtifactSource::Target { name: from, path } => {
                let builder = builders.get(from).cloned();
                let root = builder
                    .as_ref()
                    .map(|b| b.output_target.clone())
                    .unwrap_or_default();
                let subdir = path
                    .strip_prefix(root.as_str())
                    .unwrap_or_default()
                    .trim_matches('/')
                    .to_string();
                (Some(from.to_string()), builder, subdir)
            }
        };
        // The manifest checks guarantee a builder for every target that runs one.
        let Some(builder) = builder else {
            continue;
        };
        targets.push(target_plan(
            t,
            &manifest_path,
            &project,
            out_dir_for(&base_out, loaded.manifest.has_named_targets(), name),
            artifacts_from,
            builder,
            subdir,
            tags.get(name.as_str()).cloned().unwrap_or_default(),
        ));
    }
    Ok(PlanSet {
        manifest: manifest_path,
        project,
        vars: loaded.vars.clone(),
        selected,
        order,
        targets,
    })
}

fn out_dir_for(base: &Path, named_targets: bool, name: &str) -> PathBuf {
    if named_targets {
        base.join("targets").join(name)
    } else {
        base.to_path_buf()
    }
}

/// Expand groups and the default into target names, refusing unknown names.
fn select(loaded: &LoadedManifest, names: &[&str], selection: &Selection) -> Result<Vec<String>> {
    let m = &loaded.manifest;
    let requested: Vec<String> = match selection {
        Selection::All => return Ok(names.iter().map(|n| n.to_string()).collect()),
        Selection::Names(list) if !list.is_empty() => list.clone(),
        _ => match &m.default {
            Some(default) => default.get_ref().to_vec(),
            None => return Ok(names.iter().map(|n| n.to_string()).collect()),
        },
    };
    let mut out: Vec<String> = Vec::new();
    for name in requested {
        let members: Vec<String> = if names.contains(&name.as_str()) {
            vec![name]
        } else if let Some((_, members)) = m.groups.iter().find(|(g, _)| g.get_ref() == &name) {
            members.iter().map(|m| m.get_ref().clone()).collect()
        } else {
            let groups: Vec<&str> = m.groups.keys().map(|g| g.get_ref().as_str()).collect();
            let known: Vec<&str> = names.iter().chain(&groups).copied().collect();
            let help = crate::manifest::shape::suggestion(&name, &known, || {
                format!(
                    "the manifest has {}",
                    crate::manifest::shape::quoted(&known)
                )
            });
            return Err(Error::Usage {
                message: format!(
                    "`{name}` is not a target or group of {}",
                    loaded.path.display()
                ),
                help,
            });
        };
        for member in members {
            if !out.contains(&member) {
                out.push(member);
            }
        }
    }
    Ok(out)
}

fn dependency(target: &NamedTarget) -> Option<&str> {
    match target.target.artifacts.source() {
        ArtifactSource::Target { name, .. } => Some(name),
        ArtifactSource::Builder(_) => None,
    }
}

/// The selected targets and every target they take artifacts from, transitively.
fn with_dependencies(named: &[NamedTarget], selected: &[String]) -> Vec<String> {
    let mut needed: Vec<String> = Vec::new();
    let mut queue: Vec<String> = selected.to_vec();
    while let Some(name) = queue.pop() {
        if needed.contains(&name) {
            continue;
        }
        if let Some(dep) = named.iter().find(|t| t.name == name).and_then(dependency) {
            queue.push(dep.to_string());
        }
        needed.push(name);
    }
    needed
}

/// Dependencies first; otherwise in name order, so the order is stable.
fn build_order(named: &[NamedTarget], needed: &[String]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut remaining: Vec<&NamedTarget> =
        named.iter().filter(|t| needed.contains(&t.name)).collect();
    while !remaining.is_empty() {
        let ready = remaining
            .iter()
            .position(|t| dependency(t).is_none_or(|d| order.iter().any(|o| o == d)));
        // A cycle is reported by the manifest checks; never loop forever on one.
        let Some(at) = ready else { break };
        order.push(remaining.remove(at).name.clone());
    }
    order
}

fn tags_by_target<'a>(
    named: &'a [NamedTarget],
    selected: &[String],
    overrides: &[TagOverride],
) -> Result<BTreeMap<&'a str, Vec<String>>> {
    let mut tags: BTreeMap<&str, Vec<String>> = named
        .iter()
        .map(|t| (t.name.as_str(), t.target.image.tags.clone()))
        .collect();
    let mut replaced: Vec<String> = Vec::new();
    for o in overrides {
        let target = match &o.target {
            Some(target) => target.clone(),
            None if selected.len() == 1 => selected[0].clone(),
            None => {
                return Err(Error::Usage {
                    message: format!(
                        "--tag {} does not say which of the {} selected targets it is for",
                        o.tag,
                        selected.len()
                    ),
                    help: format!(
                        "write --tag TARGET={} (targets: {})",
                        o.tag,
                        selected.join(", ")
                    ),
                })
            }
        };
        let Some(list) = tags.get_mut(target.as_str()) else {
            return Err(Error::Usage {
                message: format!("--tag {target}={}: there is no target `{target}`", o.tag),
                help: format!(
                    "the targets are {}",
                    named
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        if !replaced.contains(&target) {
            list.clear();
            replaced.push(target);
        }
        list.push(o.tag.clone());
    }
    Ok(tags)
}

fn builder_plan(
    loaded: &LoadedManifest,
    manifest_dir: &Path,
    project: &str,
    named: &NamedTarget,
    builder: &manifest::Builder,
    options: &PlanOptions,
) -> std::result::Result<BuilderPlan, Vec<crate::manifest::Diagnostic>> {
    let t = &named.target;
    let mut problems = Vec::new();
    let mut mounts = Vec::new();
    for mount in &t.mounts {
        let host = normalise(&manifest_dir.join(Path::new(mount.source.get_ref())));
        match std::fs::metadata(&host) {
            Ok(_) => mounts.push(BindMount {
                source: host,
                target: manifest::normalise_container_path(mount.target.get_ref()).to_string(),
                read_only: mount.read_only,
            }),
            Err(e) => problems.push(loaded.diagnostic(
                mount.source.span(),
                format!("mount source {} cannot be used: {e}", host.display()),
                Some("create the folder, or fix the path (relative paths start at the manifest's folder)".to_string()),
            )),
        }
    }
    let mut secret_files = Vec::new();
    for (name, path) in &builder.secrets {
        let host = normalise(&manifest_dir.join(path.get_ref()));
        match std::fs::metadata(&host) {
            Ok(meta) if meta.is_file() => secret_files.push(SecretFile {
                name: name.clone(),
                source: host,
                target: format!("/run/secrets/{name}"),
            }),
            Ok(_) => problems.push(loaded.diagnostic(
                path.span(),
                format!("secret {name}: {} is not a file", host.display()),
                Some("name a regular file (its content is the secret)".to_string()),
            )),
            Err(e) => problems.push(loaded.diagnostic(
                path.span(),
                format!("secret {name}: {} cannot be used: {e}", host.display()),
                Some("create the file, or fix the path (relative paths start at the manifest's folder)".to_string()),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let caches = t
        .caches
        .iter()
        .map(|c| {
            let target = manifest::normalise_container_path(c.target.get_ref()).to_string();
            let scope = if loaded.manifest.has_named_targets() {
                format!("{}-{}", slug(&named.name), slug(&target))
            } else {
                slug(&target)
            };
            CacheVolume {
                volume: c
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("dockception-{project}-{scope}")),
                target,
            }
        })
        .collect();
    let command = match builder.run.get_ref() {
        Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        Command::Argv(argv) => argv.clone(),
    };
    let user = match (&builder.user, options.invoking_user) {
        (Some(user), _) => Some(user.get_ref().clone()),
        (None, Some((uid, gid))) => Some(format!("{uid}:{gid}")),
        (None, None) => None,
    };
    let output_target = match t.artifacts.source() {
        ArtifactSource::Builder(from) => manifest::normalise_container_path(from).to_string(),
        ArtifactSource::Target { .. } => "/out".to_string(),
    };
    Ok(BuilderPlan {
        image: builder.image.get_ref().clone(),
        workdir: builder.workdir.as_ref().map(|w| w.get_ref().clone()),
        env: sorted(&builder.env),
        command,
        user,
        mounts,
        caches,
        output_target,
        env_from_host: builder
            .env_from_host
            .iter()
            .map(|n| n.get_ref().clone())
            .collect(),
        secret_files,
        network: builder.network.clone(),
        warm: builder
            .warm
            .as_ref()
            .and_then(|w| manifest::parse_duration(w.get_ref())),
    })
}

#[allow(clippy::too_many_arguments)]
fn target_plan(
    named: &NamedTarget,
    manifest: &Path,
    project: &str,
    out_dir: PathBuf,
    artifacts_from: Option<String>,
    builder: BuilderPlan,
    subdir: String,
    tags: Vec<String>,
) -> Plan {
    let t = &named.target;
    let runtime = &t.runtime;
    let expose = runtime
        .expose
        .iter()
        .map(|p| match p.get_ref() {
            Port::Number(n) => format!("{n}/tcp"),
            Port::Spec(s) => match manifest::parse_port_spec(s) {
                Some((port, proto)) => format!("{port}/{proto}"),
                None => s.clone(),
            },
        })
        .collect();
    Plan {
        target: named.name.clone(),
        manifest: manifest.to_path_buf(),
        project: project.to_string(),
        out_dir,
        artifacts_from,
        builder,
        artifacts: ArtifactPlan {
            subdir,
            include: t
                .artifacts
                .include
                .get_ref()
                .iter()
                .map(|g| g.get_ref().clone())
                .collect(),
            exclude: t
                .artifacts
                .exclude
                .iter()
                .map(|g| g.get_ref().clone())
                .collect(),
            dest: manifest::normalise_container_path(t.artifacts.dest.get_ref()).to_string(),
        },
        runtime: RuntimePlan {
            base: runtime.base.get_ref().clone(),
            entrypoint: runtime.entrypoint.clone(),
            cmd: runtime.cmd.clone(),
            env: sorted(&runtime.env),
            workdir: runtime.workdir.as_ref().map(|w| w.get_ref().clone()),
            user: runtime.user.clone(),
            expose,
            labels: sorted(&runtime.labels),
            steps: runtime.run.iter().map(|s| s.get_ref().clone()).collect(),
            artifacts_mount: manifest::normalise_container_path(runtime.artifacts_mount.get_ref())
                .to_string(),
            init: match runtime.init.get_ref() {
                manifest::Init::Enabled(false) => InitPlan::None,
                manifest::Init::Enabled(true) => InitPlan::Auto,
                manifest::Init::Path(path) => InitPlan::Path(path.clone()),
            },
            libs: runtime.libs,
        },
        tags,
    }
}

fn sorted(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(normalise(path));
    }
    let cwd =
        std::env::current_dir().map_err(|e| Error::io("reading the current folder", ".", e))?;
    Ok(normalise(&cwd.join(path)))
}

/// Remove `.` and resolve `..` lexically, so the daemon gets clean absolute paths.
fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The project name of the manifest at `manifest` (what its resources' `dockception.project`
/// label says), without reading or checking the manifest: `dockception clean` must work even
/// when the manifest is broken or gone.
pub fn project_for(manifest: &Path) -> Result<String> {
    let path = absolute(manifest)?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    Ok(project_name(&dir))
}

/// `<folder name>-<8 hex of the folder's absolute path>`, lowercased to what Docker accepts.
fn project_name(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map(|n| slug(&n.to_string_lossy()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "root".to_string());
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{name}-{hex}")
}

/// Lowercase ASCII letters and digits, other runs collapsed to one `-`.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(dir: &Path, text: &str) -> LoadedManifest {
        manifest::parse_bytes_with(
            &dir.join("dockception.toml"),
            text.as_bytes().to_vec(),
            &Default::default(),
        )
        .expect("manifest")
    }

    fn temp() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    const MANIFEST: &str = r#"
[builder]
image = "golang:local"
run = "go build -o /out/app ."
env = { CGO_ENABLED = "0" }

[[mount]]
source = "./src/../src"
target = "/src/"

[[cache]]
target = "/root/.cache/go-build"

[artifacts]
include = ["app"]
dest = "/bin/"

[runtime]
expose = [8001, "53/udp"]

[image]
tags = ["hello:latest"]
"#;

    #[test]
    fn resolves_paths_users_and_commands() {
        let dir = temp();
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        let loaded = load(dir.path(), MANIFEST);
        let plan = plan(
            &loaded,
            &PlanOptions {
                invoking_user: Some((1000, 100)),
                ..Default::default()
            },
        )
        .expect("plan")
        .targets
        .remove(0);
        assert_eq!(plan.builder.mounts[0].source, dir.path().join("src"));
        assert_eq!(plan.builder.mounts[0].target, "/src");
        assert!(plan.builder.mounts[0].read_only);
        assert_eq!(plan.builder.user.as_deref(), Some("1000:100"));
        assert_eq!(
            plan.builder.command,
            ["/bin/sh", "-c", "go build -o /out/app ."]
        );
        assert_eq!(plan.builder.output_target, "/out");
        assert_eq!(plan.artifacts.dest, "/bin");
        assert_eq!(plan.runtime.expose, ["8001/tcp", "53/udp"]);
        assert!(plan.runtime.is_scratch());
        assert_eq!(plan.tags, ["hello:latest"]);
        assert_eq!(plan.out_dir, dir.path().join(".dockception"));
        let volume = &plan.builder.caches[0].volume;
        assert!(volume.starts_with("dockception-"), "{volume}");
        assert!(volume.ends_with("-root-cache-go-build"), "{volume}");
    }

    #[test]
    fn cache_names_differ_between_projects() {
        let (a, b) = (temp(), temp());
        for d in [&a, &b] {
            std::fs::create_dir(d.path().join("src")).expect("mkdir");
        }
        let pa = plan(&load(a.path(), MANIFEST), &PlanOptions::default())
            .expect("plan")
            .targets
            .remove(0);
        let pb = plan(&load(b.path(), MANIFEST), &PlanOptions::default())
            .expect("plan")
            .targets
            .remove(0);
        assert_ne!(pa.builder.caches[0].volume, pb.builder.caches[0].volume);
        assert_eq!(pa.builder.user, None);
    }

    #[test]
    fn a_missing_mount_source_points_at_the_manifest() {
        let dir = temp();
        let loaded = load(dir.path(), MANIFEST);
        let Err(Error::Invalid(d)) = plan(&loaded, &PlanOptions::default()) else {
            panic!("expected a manifest error");
        };
        assert_eq!((d[0].line, d[0].column), (8, 10));
        assert!(d[0].message.contains("mount source"), "{}", d[0]);
    }

    #[test]
    fn the_manifest_user_and_cli_tags_win() {
        let dir = temp();
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        let text = MANIFEST.replace("[[mount]]", "user = \"0:0\"\n\n[[mount]]");
        let plan = plan(
            &load(dir.path(), &text),
            &PlanOptions {
                invoking_user: Some((1000, 1000)),
                tags: vec![TagOverride::parse("x:1")],
                ..Default::default()
            },
        )
        .expect("plan")
        .targets
        .remove(0);
        assert_eq!(plan.builder.user.as_deref(), Some("0:0"));
        assert_eq!(plan.tags, ["x:1"]);
    }

    #[test]
    fn secret_files_resolve_and_must_exist() {
        let dir = temp();
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("token.txt"), "s3cr3t").expect("write");
        let text = MANIFEST.replace(
            "env = { CGO_ENABLED = \"0\" }",
            "env = { CGO_ENABLED = \"0\" }\nenv_from_host = [\"TOKEN\"]\nsecrets = { token = \"token.txt\" }",
        );
        let p = plan(&load(dir.path(), &text), &PlanOptions::default())
            .expect("plan")
            .targets
            .remove(0);
        assert_eq!(p.builder.env_from_host, ["TOKEN"]);
        assert_eq!(
            p.builder.secret_files,
            [SecretFile {
                name: "token".into(),
                source: dir.path().join("token.txt"),
                target: "/run/secrets/token".into(),
            }]
        );
        assert_eq!(
            project_for(&dir.path().join("dockception.toml")).expect("project"),
            p.project
        );
        let missing = text.replace("token.txt", "gone.txt");
        let Err(Error::Invalid(d)) = plan(&load(dir.path(), &missing), &PlanOptions::default())
        else {
            panic!("expected a manifest error");
        };
        assert!(d[0].message.starts_with("secret token: "), "{}", d[0]);
    }

    #[test]
    fn slugs_are_docker_safe() {
        assert_eq!(slug("/root/.cache/go-build"), "root-cache-go-build");
        assert_eq!(slug("My App!"), "my-app");
    }
}
