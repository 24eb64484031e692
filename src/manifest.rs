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

/// The largest manifest dockception reads. Real manifests are a few KiB; a bigger file is
/// almost surely the wrong one, and refusing it keeps parsing time and memory bounded.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Read and check a manifest file.
pub fn load(path: &Path) -> Result<LoadedManifest> {
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
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(Error::ManifestTooLarge {
            path: path.to_path_buf(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    parse_bytes(path, bytes)
}

/// Parse and check manifest bytes as read from a file. Bytes that are not UTF-8 are reported
/// at the line and column of the first bad byte; anything over [`MAX_MANIFEST_BYTES`] is refused.
pub fn parse_bytes(path: &Path, bytes: Vec<u8>) -> Result<LoadedManifest> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(Error::ManifestTooLarge {
            path: path.to_path_buf(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    match String::from_utf8(bytes) {
        Ok(source) => parse(path, source),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bad = e.as_bytes().get(at).copied().unwrap_or(0);
            // The text before the bad byte is the input itself, so its line and column hold.
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            Err(Error::Manifest(vec![Diagnostic::at(
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
    let manifest: Manifest = match toml::from_str(&source) {
        Ok(m) => m,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end().to_string();
            let help = help_for_parse_error(&message);
            return Err(Error::Manifest(vec![Diagnostic::at(
                path, &source, span, message, help,
            )]));
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

    let mut seen_from_host: Vec<&str> = Vec::new();
    for name in &m.builder.env_from_host {
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
        } else if m.builder.env.contains_key(n) {
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
    for (name, path) in &m.builder.secrets {
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
        let shown = crate::collect::short_glob(g);
        if g.starts_with('/') || has_parent_component(g) {
            out.push(loaded.diagnostic(
                glob.span(),
                format!("artifact glob {shown:?} reaches outside artifacts.from"),
                Some("write globs relative to artifacts.from, without a leading / or `..`".into()),
            ));
        } else if let Err(e) = crate::collect::compile_glob(g) {
            out.push(loaded.diagnostic(
                glob.span(),
                format!("invalid glob {shown:?}: {}", e.kind()),
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
            loaded.manifest.builder.env_from_host[0].get_ref(),
            "NPM_TOKEN"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_located() {
        let bytes = b"[builder]\nimage = \"caf\xe9\"\n".to_vec();
        let Err(Error::Manifest(d)) = parse_bytes(Path::new("m.toml"), bytes) else {
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
        assert_eq!(loaded.manifest.artifacts.include.get_ref().len(), 2);

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
