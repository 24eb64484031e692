//! The checks of one target's settings: container paths, where its artifacts come from, its
//! builder, its runtime steps, its artifact rules, paths mounted twice, and ports. They run in
//! this order, so that problems on the same spot keep theirs.

use toml::Spanned;

use crate::manifest::check_engine::check_engine_values;
use crate::manifest::suggest::{quoted, suggestion};
use crate::manifest::{
    glob, normalise_container_path, parse_port_spec, parse_reuse_limit, parse_warm, vars,
    ArtifactSource, Artifacts, Builder, Command, Diagnostic, Init, LoadedManifest, NamedTarget,
    Port, Runtime, Target,
};

/// Every problem of the target `named`; `names` and `targets` are all the manifest's targets.
pub(crate) fn check_target(
    loaded: &LoadedManifest,
    named: &NamedTarget,
    names: &[&str],
    targets: &[NamedTarget],
    out: &mut Vec<Diagnostic>,
) {
    let t = &named.target;
    check_absolute_paths(loaded, t, out);
    check_builder_or_source(loaded, named, out);
    check_other_target_source(loaded, &t.artifacts, names, targets, out);
    if let Some(b) = &t.builder {
        check_builder(loaded, b, out);
    }
    check_runtime(loaded, &t.runtime, out);
    check_artifact_rules(loaded, &t.artifacts, out);
    check_paths_used_twice(loaded, t, out);
    check_ports(loaded, &t.runtime, out);
    check_engine_values(loaded, named, out);
}

/// Paths inside the container are written from its root.
fn check_absolute_paths(loaded: &LoadedManifest, t: &Target, out: &mut Vec<Diagnostic>) {
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
    match t.artifacts.source() {
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
}

/// A target builds its artifacts itself or takes them from another target: one, not both.
fn check_builder_or_source(
    loaded: &LoadedManifest,
    named: &NamedTarget,
    out: &mut Vec<Diagnostic>,
) {
    let t = &named.target;
    match (&t.builder, &t.artifacts.source()) {
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
}

/// `artifacts.from = "TARGET:/path"` names a target, and a folder inside its output folder.
fn check_other_target_source(
    loaded: &LoadedManifest,
    artifacts: &Artifacts,
    names: &[&str],
    targets: &[NamedTarget],
    out: &mut Vec<Diagnostic>,
) {
    let ArtifactSource::Target { name, path } = artifacts.source() else {
        return;
    };
    if !names.contains(&name) {
        let help = suggestion(name, names, || format!("the targets are {}", quoted(names)));
        out.push(loaded.diagnostic(
            artifacts.from.span(),
            format!("artifacts.from names target `{name}`, which does not exist"),
            Some(help),
        ));
    } else if let Some(other) = targets.iter().find(|o| o.name == name) {
        if let ArtifactSource::Builder(root) = other.target.artifacts.source() {
            let root = normalise_container_path(root);
            let inside =
                path == root || path.starts_with(&format!("{}/", root.trim_end_matches('/')));
            let root = root.as_str();
            if !inside || has_parent_component(path) {
                out.push(loaded.diagnostic(
                    artifacts.from.span(),
                    format!("{path} is not inside target `{name}`'s output folder {root}"),
                    Some(format!("take a folder below it, e.g. \"{name}:{root}\"")),
                ));
            }
        }
    }
}

fn check_builder(loaded: &LoadedManifest, b: &Builder, out: &mut Vec<Diagnostic>) {
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
    check_env_from_host(loaded, b, out);
    if let Some(warm) = &b.warm {
        if parse_warm(Some(warm.get_ref())).is_none() {
            out.push(loaded.diagnostic(
                warm.span(),
                format!("builder.warm {:?} is neither a duration nor \"off\"", warm.get_ref()),
                Some(
                    "write a whole number of seconds, minutes or hours up to 24h, e.g. \"90s\", \"10m\" or \"1h\", or \"off\" for a fresh container per build"
                        .into(),
                ),
            ));
        }
    }
    if let Some(limit) = &b.reuse_limit {
        if let Err(why) = parse_reuse_limit(limit.get_ref()) {
            out.push(loaded.diagnostic(
                limit.span(),
                format!("builder.reuse_limit: {why}"),
                Some(
                    "write a number of bytes or a size such as \"2 GiB\" or \"500 MiB\" (0 keeps no earlier builds)"
                        .into(),
                ),
            ));
        }
    }
    check_secret_files(loaded, b, out);
}

/// Each name once, a real environment variable name, and not also given a value in `env`.
fn check_env_from_host(loaded: &LoadedManifest, b: &Builder, out: &mut Vec<Diagnostic>) {
    let mut seen: Vec<&str> = Vec::new();
    for name in &b.env_from_host {
        let n = name.get_ref().as_str();
        if !vars::is_name(n) {
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
        } else if seen.contains(&n) {
            out.push(loaded.diagnostic(
                name.span(),
                format!("{n} is listed twice in builder.env_from_host"),
                Some("list each name once".into()),
            ));
        }
        seen.push(n);
    }
}

/// Each secret is a file name in `/run/secrets` and names a host file.
fn check_secret_files(loaded: &LoadedManifest, b: &Builder, out: &mut Vec<Diagnostic>) {
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

/// Run steps need a shell in the base, and the base needs a name.
fn check_runtime(loaded: &LoadedManifest, runtime: &Runtime, out: &mut Vec<Diagnostic>) {
    if let Some(first) = runtime.run.first() {
        if runtime.base.get_ref() == "scratch" {
            out.push(loaded.diagnostic(
                first.span(),
                "runtime.run needs a base with a shell, and scratch has none",
                Some("set runtime.base to an image with /bin/sh (e.g. \"debian-minimal:local\"), or ship the artifacts without run steps".into()),
            ));
        }
        for step in &runtime.run {
            if step.get_ref().trim().is_empty() {
                out.push(loaded.diagnostic(
                    step.span(),
                    "an empty runtime.run step",
                    Some("remove it, or write the command".into()),
                ));
            }
        }
    }
    if runtime.base.get_ref().trim().is_empty() {
        out.push(loaded.diagnostic(
            runtime.base.span(),
            "runtime.base is empty",
            Some("write \"scratch\" for an empty base, or name an image".into()),
        ));
    }
}

/// Something is shipped, globs stay inside `artifacts.from` and compile, and `dest` stays in
/// the image.
fn check_artifact_rules(loaded: &LoadedManifest, artifacts: &Artifacts, out: &mut Vec<Diagnostic>) {
    if has_parent_component(artifacts.dest.get_ref()) {
        out.push(loaded.diagnostic(
            artifacts.dest.span(),
            "artifacts.dest must not contain `..`",
            Some("name a folder inside the image, e.g. \"/app\"".into()),
        ));
    }
    if artifacts.include.get_ref().is_empty() {
        out.push(loaded.diagnostic(
            artifacts.include.span(),
            "artifacts.include is empty, so nothing would be shipped",
            Some("list the files to ship, e.g. [\"app\"] or [\"bin/*\"]".into()),
        ));
    }
    for pattern in artifacts.include.get_ref().iter().chain(&artifacts.exclude) {
        let g = pattern.get_ref();
        let shown = glob::short_glob(g);
        if g.starts_with('/') || has_parent_component(g) {
            out.push(loaded.diagnostic(
                pattern.span(),
                format!("artifact glob {shown:?} reaches outside artifacts.from"),
                Some("write globs relative to artifacts.from, without a leading / or `..`".into()),
            ));
        } else if let Err(e) = glob::compile_glob(g) {
            out.push(loaded.diagnostic(
                pattern.span(),
                format!("invalid glob {shown:?}: {}", e.kind()),
                Some("see https://docs.rs/globset for the glob syntax".into()),
            ));
        }
    }
}

/// One container path takes one mount: a host folder, a cache, a secret file, or the build's
/// output folder (the engine refuses a container with two mounts on one path).
fn check_paths_used_twice(loaded: &LoadedManifest, t: &Target, out: &mut Vec<Diagnostic>) {
    let mut seen: Vec<(String, std::ops::Range<usize>)> = Vec::new();
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
    for (name, path) in t.builder.iter().flat_map(|b| &b.secrets) {
        let target = format!("/run/secrets/{name}");
        if seen.iter().any(|(p, _)| *p == target) {
            out.push(loaded.diagnostic(
                path.span(),
                format!(
                    "secret {name} is mounted on {target}, which is also a mount or cache target"
                ),
                Some("rename the secret, or move the other mount".into()),
            ));
        } else {
            seen.push((target, path.span()));
        }
    }
    if let ArtifactSource::Builder(from) = t.artifacts.source() {
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
}

fn check_ports(loaded: &LoadedManifest, runtime: &Runtime, out: &mut Vec<Diagnostic>) {
    for port in &runtime.expose {
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
