//! Resolve a checked manifest into a plain, printable plan: absolute host paths, the builder's
//! argv and user, volume names, artifact rules, runtime config and tags. No Docker here; the
//! only I/O is looking at the mount sources on the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::manifest::{self, Command, LoadedManifest, Port};

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
    /// Replace the manifest's tags.
    pub tags: Option<Vec<String>>,
    /// The tool's own output folder; defaults to `.dockception` next to the manifest.
    pub out_dir: Option<PathBuf>,
}

/// Everything a run needs, resolved.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Plan {
    /// The manifest file, absolute.
    pub manifest: PathBuf,
    /// A name for the project that is stable for one manifest location and distinct across
    /// projects: `<folder name>-<hash of its absolute path>`.
    pub project: String,
    /// The tool's own output folder on the host.
    pub out_dir: PathBuf,
    /// How the builder runs.
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
}

impl RuntimePlan {
    /// Whether the base is the empty `scratch` image.
    pub fn is_scratch(&self) -> bool {
        self.base == "scratch"
    }
}

/// Resolve a loaded manifest into a plan.
pub fn plan(loaded: &LoadedManifest, options: &PlanOptions) -> Result<Plan> {
    let m = &loaded.manifest;
    let manifest_path = absolute(&loaded.path)?;
    let manifest_dir = manifest_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let project = project_name(&manifest_dir);

    let mut problems = Vec::new();
    let mut mounts = Vec::new();
    for mount in &m.mounts {
        let given = Path::new(mount.source.get_ref());
        let host = normalise(&manifest_dir.join(given));
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
    for (name, path) in &m.builder.secrets {
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
        return Err(Error::Manifest(problems));
    }

    let caches = m
        .caches
        .iter()
        .map(|c| {
            let target = manifest::normalise_container_path(c.target.get_ref()).to_string();
            CacheVolume {
                volume: c
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("dockception-{project}-{}", slug(&target))),
                target,
            }
        })
        .collect();

    let command = match m.builder.run.get_ref() {
        Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        Command::Argv(argv) => argv.clone(),
    };
    let user = match (&m.builder.user, options.invoking_user) {
        (Some(user), _) => Some(user.get_ref().clone()),
        (None, Some((uid, gid))) => Some(format!("{uid}:{gid}")),
        (None, None) => None,
    };

    let runtime = &m.runtime;
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

    Ok(Plan {
        manifest: manifest_path,
        project,
        out_dir: options
            .out_dir
            .clone()
            .unwrap_or_else(|| manifest_dir.join(".dockception")),
        builder: BuilderPlan {
            image: m.builder.image.get_ref().clone(),
            workdir: m.builder.workdir.as_ref().map(|w| w.get_ref().clone()),
            env: sorted(&m.builder.env),
            command,
            user,
            mounts,
            caches,
            output_target: manifest::normalise_container_path(m.artifacts.from.get_ref())
                .to_string(),
            env_from_host: m
                .builder
                .env_from_host
                .iter()
                .map(|n| n.get_ref().clone())
                .collect(),
            secret_files,
        },
        artifacts: ArtifactPlan {
            include: m
                .artifacts
                .include
                .get_ref()
                .iter()
                .map(|g| g.get_ref().clone())
                .collect(),
            exclude: m
                .artifacts
                .exclude
                .iter()
                .map(|g| g.get_ref().clone())
                .collect(),
            dest: manifest::normalise_container_path(m.artifacts.dest.get_ref()).to_string(),
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
        },
        tags: options.tags.clone().unwrap_or_else(|| m.image.tags.clone()),
    })
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
        manifest::parse(&dir.join("dockception.toml"), text.to_string()).expect("manifest")
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
        .expect("plan");
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
        let pa = plan(&load(a.path(), MANIFEST), &PlanOptions::default()).expect("plan");
        let pb = plan(&load(b.path(), MANIFEST), &PlanOptions::default()).expect("plan");
        assert_ne!(pa.builder.caches[0].volume, pb.builder.caches[0].volume);
        assert_eq!(pa.builder.user, None);
    }

    #[test]
    fn a_missing_mount_source_points_at_the_manifest() {
        let dir = temp();
        let loaded = load(dir.path(), MANIFEST);
        let Err(Error::Manifest(d)) = plan(&loaded, &PlanOptions::default()) else {
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
                tags: Some(vec!["x:1".into()]),
                out_dir: None,
            },
        )
        .expect("plan");
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
        let p = plan(&load(dir.path(), &text), &PlanOptions::default()).expect("plan");
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
        let Err(Error::Manifest(d)) = plan(&load(dir.path(), &missing), &PlanOptions::default())
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
