//! `dockception.toml`: the serde types that are also the JSON Schema, loading, and the checks
//! that need nothing but the file itself. Every error points at `file:line:col`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Diagnostic, Error, Result};

/// A dockception manifest: how to build the artifacts in a builder image and how to ship them
/// on a small runtime base.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "dockception manifest")]
pub struct Manifest {
    /// The fat image the build runs in, and the command that builds.
    pub builder: Builder,
    /// Host folders bind-mounted into the builder (read-only unless `read_only = false`). Sources
    /// are mounted, never copied into a layer.
    #[serde(default, rename = "mount")]
    pub mounts: Vec<Mount>,
    /// Named volumes mounted into the builder that survive between builds (compiler caches,
    /// package registries).
    #[serde(default, rename = "cache")]
    pub caches: Vec<Cache>,
    /// Which files of the builder's output folder are shipped, and where they land.
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
    pub gates: crate::gates::GatesTable,
}

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
    /// The folder inside the builder that the build writes its outputs into. dockception mounts a
    /// fresh host folder there for every run.
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
        }
    }
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
    /// The parsed and checked manifest.
    pub manifest: Manifest,
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

/// Read and check a manifest file.
pub fn load(path: &Path) -> Result<LoadedManifest> {
    let source = std::fs::read_to_string(path).map_err(|source| Error::ReadManifest {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, source)
}

/// Parse and check manifest text; `path` is only used in messages and to resolve relative paths.
pub fn parse(path: &Path, source: String) -> Result<LoadedManifest> {
    let manifest: Manifest = match toml::from_str(&source) {
        Ok(m) => m,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end().to_string();
            let help = help_for_parse_error(&message);
            let diagnostic = Diagnostic::at(path, &source, span.clone(), message, help);
            if in_gates_table(&source, span.start) {
                return Err(Error::GateConfig {
                    problems: vec![diagnostic.to_string()],
                });
            }
            return Err(Error::Manifest(vec![diagnostic]));
        }
    };
    let loaded = LoadedManifest {
        path: path.to_path_buf(),
        source,
        manifest,
    };
    let problems = check(&loaded);
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(Error::Manifest(problems))
    }
}

/// Whether byte `offset` of the manifest is inside its `[gates]` table, so a mistake there is a
/// misconfigured gate (exit status 2) rather than a broken manifest.
fn in_gates_table(source: &str, offset: usize) -> bool {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let header = before.lines().map(str::trim).rfind(|l| l.starts_with('['));
    let line = before.rsplit('\n').next().unwrap_or("").trim_start();
    header.is_some_and(|h| h.split('#').next().unwrap_or("").trim() == "[gates]")
        || line.starts_with("gates")
}

fn help_for_parse_error(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("remove the key or fix its spelling; the schema in schema/dockception.schema.json lists every key".into())
    } else if message.starts_with("missing field") {
        Some("add the key; see README.md for a manifest walk-through".into())
    } else if message.contains("untagged enum Command") {
        Some(
            r#"write the command as a string ("make") or a list of strings (["make", "-j2"])"#
                .into(),
        )
    } else if message.contains("untagged enum Port") {
        Some(r#"write a port number (8080) or a string like "53/udp""#.into())
    } else {
        None
    }
}

/// The checks that need only the manifest text; all problems are collected.
fn check(loaded: &LoadedManifest) -> Vec<Diagnostic> {
    let m = &loaded.manifest;
    let mut out = Vec::new();
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
    if let Some(w) = &m.builder.workdir {
        absolute(w, "builder.workdir");
    }
    for mount in &m.mounts {
        absolute(&mount.target, "mount target");
    }
    for cache in &m.caches {
        absolute(&cache.target, "cache target");
    }
    absolute(&m.artifacts.from, "artifacts.from");
    absolute(&m.artifacts.dest, "artifacts.dest");
    if let Some(w) = &m.runtime.workdir {
        absolute(w, "runtime.workdir");
    }

    if m.builder.image.get_ref().trim().is_empty() {
        out.push(loaded.diagnostic(
            m.builder.image.span(),
            "builder.image is empty",
            Some("name the image the build runs in, e.g. \"gcc:local\"".into()),
        ));
    }
    match m.builder.run.get_ref() {
        Command::Shell(s) if s.trim().is_empty() => out.push(loaded.diagnostic(
            m.builder.run.span(),
            "builder.run is empty",
            Some("give the command that builds your artifacts".into()),
        )),
        Command::Argv(v) if v.is_empty() => out.push(loaded.diagnostic(
            m.builder.run.span(),
            "builder.run is an empty list",
            Some("give the program and its arguments, e.g. [\"make\"]".into()),
        )),
        _ => {}
    }

    if has_parent_component(m.artifacts.dest.get_ref()) {
        out.push(loaded.diagnostic(
            m.artifacts.dest.span(),
            "artifacts.dest must not contain `..`",
            Some("name a folder inside the image, e.g. \"/app\"".into()),
        ));
    }
    if m.artifacts.include.get_ref().is_empty() {
        out.push(loaded.diagnostic(
            m.artifacts.include.span(),
            "artifacts.include is empty, so nothing would be shipped",
            Some("list the files to ship, e.g. [\"app\"] or [\"bin/*\"]".into()),
        ));
    }
    for glob in m
        .artifacts
        .include
        .get_ref()
        .iter()
        .chain(&m.artifacts.exclude)
    {
        let g = glob.get_ref();
        if g.starts_with('/') || has_parent_component(g) {
            out.push(loaded.diagnostic(
                glob.span(),
                format!("artifact glob {g:?} reaches outside artifacts.from"),
                Some("write globs relative to artifacts.from, without a leading / or `..`".into()),
            ));
        } else if let Err(e) = crate::collect::compile_glob(g) {
            out.push(loaded.diagnostic(
                glob.span(),
                format!("invalid glob {g:?}: {e}"),
                Some("see https://docs.rs/globset for the glob syntax".into()),
            ));
        }
    }

    let mut targets: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
    for mount in &m.mounts {
        let t = normalise_container_path(mount.target.get_ref());
        if let Some((_, first)) = targets.iter().find(|(seen, _)| *seen == t) {
            let first = loaded.diagnostic(first.clone(), "", None);
            out.push(loaded.diagnostic(
                mount.target.span(),
                format!("two mounts on {t} (the first is at line {})", first.line),
                Some("mount each host folder on its own container path".into()),
            ));
        } else {
            targets.push((t, mount.target.span()));
        }
    }
    for cache in &m.caches {
        let t = normalise_container_path(cache.target.get_ref());
        if targets.iter().any(|(seen, _)| *seen == t) {
            out.push(loaded.diagnostic(
                cache.target.span(),
                format!("the cache on {t} collides with another mount on the same path"),
                Some("give the cache its own path".into()),
            ));
        } else {
            targets.push((t, cache.target.span()));
        }
    }
    let from = normalise_container_path(m.artifacts.from.get_ref());
    if targets.iter().any(|(seen, _)| *seen == from) {
        out.push(loaded.diagnostic(
            m.artifacts.from.span(),
            format!("artifacts.from {from} is also a mount or cache target"),
            Some("dockception mounts its own output folder there; pick a separate path such as \"/out\"".into()),
        ));
    }

    for port in &m.runtime.expose {
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
    out.sort_by_key(|d| (d.line, d.column));
    out
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
            Err(Error::Manifest(d)) => d,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("manifest was accepted"),
        }
    }

    #[test]
    fn a_good_manifest_loads_with_defaults() {
        let loaded = parse(Path::new("dockception.toml"), GOOD.to_string()).expect("loads");
        let m = loaded.manifest;
        assert_eq!(m.artifacts.from.get_ref(), "/out");
        assert_eq!(m.artifacts.dest.get_ref(), "/");
        assert_eq!(m.runtime.base.get_ref(), "scratch");
        assert!(m.mounts[0].read_only);
        assert_eq!(
            m.builder.run.get_ref(),
            &Command::Shell("gcc -static -o /out/hello hello.c".into())
        );
        assert_eq!(m.runtime.expose.len(), 2);
    }

    #[test]
    fn unknown_keys_are_rejected_at_their_spot() {
        let src = GOOD.replace("[[mount]]\n", "[[mount]]\nsorce = \"x\"\n");
        let d = errors(&src);
        assert_eq!(d.len(), 1);
        assert!(
            d[0].message.starts_with("unknown field `sorce`"),
            "{}",
            d[0]
        );
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
    fn port_specs_parse() {
        assert_eq!(parse_port_spec("53/udp"), Some((53, "udp")));
        assert_eq!(parse_port_spec("80"), Some((80, "tcp")));
        assert_eq!(parse_port_spec("x/tcp"), None);
    }
}
