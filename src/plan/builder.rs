//! How a target's builder container runs: its mounts (the only host paths the plan looks at),
//! secret files, cache volumes, command, user and output folder.

use std::path::Path;

use crate::manifest::{self, ArtifactSource, Command, Diagnostic, LoadedManifest, NamedTarget};
use crate::plan::paths::normalise;
use crate::plan::project::slug;
use crate::plan::resolve::sorted;
use crate::plan::{BindMount, BuilderPlan, CacheVolume, PlanOptions, SecretFile};

/// The builder of target `named`, or every mount source and secret file that cannot be used.
pub(crate) fn builder_plan(
    loaded: &LoadedManifest,
    manifest_dir: &Path,
    project: &str,
    named: &NamedTarget,
    builder: &manifest::Builder,
    options: &PlanOptions,
) -> std::result::Result<BuilderPlan, Vec<Diagnostic>> {
    let t = &named.target;
    let mut problems = Vec::new();
    let mounts = bind_mounts(loaded, manifest_dir, &t.mounts, &mut problems);
    let secret_files = secret_files(loaded, manifest_dir, builder, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
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
        ArtifactSource::Builder(from) => manifest::normalise_container_path(from),
        ArtifactSource::Target { .. } => "/out".to_string(),
    };
    Ok(BuilderPlan {
        image: builder.image.get_ref().clone(),
        workdir: builder.workdir.as_ref().map(|w| w.get_ref().clone()),
        env: sorted(&builder.env),
        command,
        user,
        mounts,
        caches: cache_volumes(loaded, project, named),
        output_target,
        env_from_host: builder
            .env_from_host
            .iter()
            .map(|n| n.get_ref().clone())
            .collect(),
        secret_files,
        network: builder.network.clone(),
        warm: manifest::parse_warm(builder.warm.as_ref().map(|w| w.get_ref().as_str())).flatten(),
        reuse_limit: builder
            .reuse_limit
            .as_ref()
            .and_then(|l| manifest::parse_reuse_limit(l.get_ref()).ok())
            .unwrap_or(crate::plan::DEFAULT_REUSE_LIMIT),
    })
}

/// The mounts whose host folder exists; a problem at each source that does not.
fn bind_mounts(
    loaded: &LoadedManifest,
    manifest_dir: &Path,
    mounts: &[manifest::Mount],
    problems: &mut Vec<Diagnostic>,
) -> Vec<BindMount> {
    let mut out = Vec::new();
    for mount in mounts {
        let host = normalise(&manifest_dir.join(Path::new(mount.source.get_ref())));
        match std::fs::metadata(&host) {
            Ok(_) => out.push(BindMount {
                source: host,
                target: manifest::normalise_container_path(mount.target.get_ref()),
                read_only: mount.read_only,
            }),
            Err(e) => problems.push(loaded.diagnostic(
                mount.source.span(),
                format!("mount source {} cannot be used: {e}", host.display()),
                Some("create the folder, or fix the path (relative paths start at the manifest's folder)".to_string()),
            )),
        }
    }
    out
}

/// The secrets whose host file is a regular file; a problem at each path that is not.
fn secret_files(
    loaded: &LoadedManifest,
    manifest_dir: &Path,
    builder: &manifest::Builder,
    problems: &mut Vec<Diagnostic>,
) -> Vec<SecretFile> {
    let mut out = Vec::new();
    for (name, path) in &builder.secrets {
        let host = normalise(&manifest_dir.join(path.get_ref()));
        match std::fs::metadata(&host) {
            Ok(meta) if meta.is_file() => out.push(SecretFile {
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
    out
}

/// Volume names carry the project, and the target when there are several, so that two
/// projects (or two targets) never share a cache by accident.
fn cache_volumes(loaded: &LoadedManifest, project: &str, named: &NamedTarget) -> Vec<CacheVolume> {
    named
        .target
        .caches
        .iter()
        .map(|c| {
            let target = manifest::normalise_container_path(c.target.get_ref());
            let scope = if loaded.manifest.has_named_targets() {
                format!("{}-{}", slug(&named.name), slug(&target))
            } else {
                slug(&target)
            };
            CacheVolume {
                volume: c
                    .name
                    .as_ref()
                    .map(|n| n.get_ref().clone())
                    .unwrap_or_else(|| format!("dockception-{project}-{scope}")),
                target,
            }
        })
        .collect()
}

/// Cache volumes two caches would share without saying so: a derived name that another cache's
/// name equals (`/a-b` and `/a/b` make one name, so do targets `my-app` and `my_app`), or one
/// name twice in a target. A problem at the second cache of each pair.
pub(crate) fn shared_volumes(
    loaded: &LoadedManifest,
    named: &[NamedTarget],
    builders: &std::collections::BTreeMap<&str, BuilderPlan>,
) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    // (volume, target, whether its name is written, the cache's path)
    let mut seen: Vec<(&str, &str, bool, &str)> = Vec::new();
    for t in named {
        let Some(builder) = builders.get(t.name.as_str()) else {
            continue;
        };
        for (cache, volume) in t.target.caches.iter().zip(&builder.caches) {
            let written = cache.name.is_some();
            let clash = seen.iter().find(|(v, target, other_written, _)| {
                *v == volume.volume && (!written || !other_written || *target == t.name)
            });
            if let Some((_, target, _, path)) = clash {
                let span = cache
                    .name
                    .as_ref()
                    .map_or(cache.target.span(), |n| n.span());
                // A derived name holds the project's path hash: name only what is written.
                let named_as = match &cache.name {
                    Some(name) => format!(", both named {}", name.get_ref()),
                    None => String::new(),
                };
                let of_target = if *target == t.name {
                    String::new()
                } else {
                    format!(" of target `{target}`")
                };
                problems.push(loaded.diagnostic(
                    span,
                    format!(
                        "the cache on {} would share one volume with the cache on {path}{of_target}{named_as}",
                        volume.target
                    ),
                    Some("give one of them a name of its own (name = \"...\" in its [[cache]])".into()),
                ));
            } else {
                seen.push((&volume.volume, &t.name, written, &volume.target));
            }
        }
    }
    problems
}
