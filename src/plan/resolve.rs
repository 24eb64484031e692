//! A run's plan, target by target: which targets run (`select`), their builders (`builder`),
//! where each one's artifacts come from, and its artifact rules, runtime image and tags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::manifest::{self, ArtifactSource, LoadedManifest, NamedTarget, Port};
use crate::plan::builder::{builder_plan, shared_volumes};
use crate::plan::paths::{absolute, folder_of};
use crate::plan::project::project_name;
use crate::plan::select::{build_order, select, with_dependencies};
use crate::plan::tags::tags_by_target;
use crate::plan::{
    ArtifactPlan, BuilderPlan, EnginePlan, Error, InitPlan, Plan, PlanOptions, PlanSet, Result,
    RuntimePlan,
};

/// Resolve a loaded manifest into the plan of a run: the selected targets and what they need,
/// in build order.
pub fn plan(loaded: &LoadedManifest, options: &PlanOptions) -> Result<PlanSet> {
    let manifest_path = absolute(&loaded.path)?;
    let manifest_dir = folder_of(&manifest_path);
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
    let builders = builder_plans(loaded, &manifest_dir, &project, &named, options)?;
    let tags = tags_by_target(&named, &selected, &options.tags)?;

    let mut targets = Vec::new();
    for name in &order {
        let Some(t) = named.iter().find(|t| &t.name == name) else {
            continue;
        };
        // The manifest checks guarantee a builder for every target that runs one.
        let Some(origin) = origin(t, &builders) else {
            continue;
        };
        targets.push(target_plan(
            t,
            &manifest_path,
            &project,
            out_dir_for(&base_out, loaded.manifest.has_named_targets(), name),
            base_out.join("blobs"),
            origin,
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
        engine: engine_plan(loaded, options),
    })
}

/// `--engine-mode`, else the manifest's `[engine] mode`, else auto.
fn engine_plan(loaded: &LoadedManifest, options: &PlanOptions) -> EnginePlan {
    if let Some(mode) = options.engine_mode {
        return EnginePlan {
            mode,
            set_by: "set by --engine-mode".into(),
        };
    }
    match loaded
        .manifest
        .engine
        .as_ref()
        .and_then(|e| e.mode.as_ref())
    {
        Some(mode) => {
            let at = loaded.diagnostic(mode.span(), "", None);
            EnginePlan {
                mode: *mode.get_ref(),
                set_by: format!(
                    "set by [engine] mode at {}:{}:{}",
                    at.path.display(),
                    at.line,
                    at.column
                ),
            }
        }
        None => EnginePlan::default(),
    }
}

/// The builder of every target that has one, by target name; or every problem of them all.
fn builder_plans<'a>(
    loaded: &LoadedManifest,
    manifest_dir: &Path,
    project: &str,
    named: &'a [NamedTarget],
    options: &PlanOptions,
) -> Result<BTreeMap<&'a str, BuilderPlan>> {
    let mut problems = Vec::new();
    let mut builders = BTreeMap::new();
    for t in named {
        if let Some(builder) = &t.target.builder {
            match builder_plan(loaded, manifest_dir, project, t, builder, options) {
                Ok(plan) => {
                    builders.insert(t.name.as_str(), plan);
                }
                Err(mut more) => problems.append(&mut more),
            }
        }
    }
    if problems.is_empty() {
        problems = shared_volumes(loaded, named, &builders);
    }
    if problems.is_empty() {
        Ok(builders)
    } else {
        Err(Error::Invalid(problems))
    }
}

/// Where a target's artifacts come from.
struct Origin {
    /// The other target whose output they are taken from, if any.
    artifacts_from: Option<String>,
    /// The builder that makes them: the target's own, or the other target's.
    builder: BuilderPlan,
    /// The folder below that builder's output folder they are taken from (`""`: all of it).
    subdir: String,
}

fn origin(t: &NamedTarget, builders: &BTreeMap<&str, BuilderPlan>) -> Option<Origin> {
    match t.target.artifacts.source() {
        ArtifactSource::Builder(_) => Some(Origin {
            artifacts_from: None,
            builder: builders.get(t.name.as_str())?.clone(),
            subdir: String::new(),
        }),
        ArtifactSource::Target { name: from, path } => {
            let builder = builders.get(from)?.clone();
            let subdir = path
                .strip_prefix(builder.output_target.as_str())
                .unwrap_or_default()
                .trim_matches('/')
                .to_string();
            Some(Origin {
                artifacts_from: Some(from.to_string()),
                builder,
                subdir,
            })
        }
    }
}

fn out_dir_for(base: &Path, named_targets: bool, name: &str) -> PathBuf {
    if named_targets {
        base.join("targets").join(name)
    } else {
        base.to_path_buf()
    }
}

fn target_plan(
    named: &NamedTarget,
    manifest: &Path,
    project: &str,
    out_dir: PathBuf,
    blobs_dir: PathBuf,
    origin: Origin,
    tags: Vec<String>,
) -> Plan {
    let t = &named.target;
    Plan {
        target: named.name.clone(),
        manifest: manifest.to_path_buf(),
        project: project.to_string(),
        out_dir,
        blobs_dir,
        artifacts_from: origin.artifacts_from,
        builder: origin.builder,
        artifacts: ArtifactPlan {
            subdir: origin.subdir,
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
            dest: manifest::normalise_container_path(t.artifacts.dest.get_ref()),
        },
        runtime: runtime_plan(&t.runtime),
        tags,
        push: t.image.push.as_ref().is_some_and(|p| *p.get_ref()),
    }
}

fn runtime_plan(runtime: &manifest::Runtime) -> RuntimePlan {
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
    RuntimePlan {
        base: runtime.base.get_ref().clone(),
        entrypoint: runtime.entrypoint.as_ref().map(|e| e.get_ref().clone()),
        cmd: runtime.cmd.as_ref().map(|c| c.get_ref().clone()),
        env: sorted(&runtime.env),
        workdir: runtime.workdir.as_ref().map(|w| w.get_ref().clone()),
        user: runtime.user.as_ref().map(|u| u.get_ref().clone()),
        expose,
        labels: sorted(&runtime.labels),
        steps: runtime.run.iter().map(|s| s.get_ref().clone()).collect(),
        artifacts_mount: manifest::normalise_container_path(runtime.artifacts_mount.get_ref()),
        init: match runtime.init.get_ref() {
            manifest::Init::Enabled(false) => InitPlan::None,
            manifest::Init::Enabled(true) => InitPlan::Auto,
            manifest::Init::Path(path) => InitPlan::Path(path.clone()),
        },
        libs: runtime.libs,
    }
}

/// A map's entries in name order.
pub(crate) fn sorted(map: &BTreeMap<toml::Spanned<String>, String>) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| (k.get_ref().clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{project_for, SecretFile, TagOverride};

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
    fn a_cache_named_in_the_manifest_keeps_its_name() {
        let dir = temp();
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        let text = MANIFEST.replace(
            "target = \"/root/.cache/go-build\"",
            "target = \"/root/.cache/go-build\"\nname = \"my-go-cache\"",
        );
        let plan = plan(&load(dir.path(), &text), &PlanOptions::default())
            .expect("plan")
            .targets
            .remove(0);
        assert_eq!(plan.builder.caches[0].volume, "my-go-cache");
        assert_eq!(plan.builder.caches[0].target, "/root/.cache/go-build");
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
}
