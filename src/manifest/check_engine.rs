//! The values of one target that the engine, the kernel or the runtime would refuse later,
//! refused at their spot instead: image references and tags, environment variable names, users,
//! labels, empty programs, cache volume names, mount points and the target's own name.

use toml::Spanned;

use crate::manifest::reference::{names_registry, reference_help, reference_problem, Use};
use crate::manifest::values::{env_name_problem, is_target_name, is_volume_name, user_problem};
use crate::manifest::{normalise_container_path, Diagnostic, Init, LoadedManifest, NamedTarget};
use crate::manifest::{ArtifactSource, Target};

/// The labels dockception sets on every image it makes: a manifest may not set them.
const RESERVED_LABEL: &str = "dockception";

/// Every value of `named` that would be refused downstream.
pub(crate) fn check_engine_values(
    loaded: &LoadedManifest,
    named: &NamedTarget,
    out: &mut Vec<Diagnostic>,
) {
    let t = &named.target;
    if loaded.manifest.has_named_targets() && !is_target_name(&named.name) {
        out.push(loaded.diagnostic(
            named.span.clone(),
            format!("target name {:?} cannot name its output folder and volumes", named.name),
            Some("use letters, digits, `_`, `.` and `-`, starting with a letter or digit, e.g. \"run\"".into()),
        ));
    }
    check_references(loaded, t, out);
    check_env_names(loaded, t, out);
    check_users(loaded, t, out);
    check_labels(loaded, t, out);
    check_programs(loaded, t, out);
    check_volume_names(loaded, t, out);
    check_mount_points(loaded, t, out);
}

/// The builder image, the base and the tags, as Docker's reference grammar reads them.
fn check_references(loaded: &LoadedManifest, t: &Target, out: &mut Vec<Diagnostic>) {
    let mut check = |value: &Spanned<String>, what: &str, use_: Use| {
        if unexpanded(value.get_ref()) {
            return;
        }
        if let Some(problem) = reference_problem(value.get_ref(), use_) {
            out.push(loaded.diagnostic(
                value.span(),
                format!("{what} {:?} {problem}", value.get_ref()),
                Some(reference_help(value.get_ref(), use_)),
            ));
        }
    };
    if let Some(b) = &t.builder {
        if !b.image.get_ref().trim().is_empty() {
            check(&b.image, "builder.image", Use::Image);
        }
    }
    let base = t.runtime.base.get_ref();
    if base != "scratch" && !base.trim().is_empty() {
        check(&t.runtime.base, "runtime.base", Use::Image);
    }
    for tag in &t.image.tags {
        check(tag, "image tag", Use::Tag);
    }
    if let Some(push) = t.image.push.as_ref().filter(|p| *p.get_ref()) {
        check_push(loaded, t, push, out);
    }
}

/// `push = true`: there must be tags, and each must name the registry it goes to.
fn check_push(
    loaded: &LoadedManifest,
    t: &Target,
    push: &Spanned<bool>,
    out: &mut Vec<Diagnostic>,
) {
    if t.image.tags.is_empty() {
        out.push(loaded.diagnostic(
            push.span(),
            "push = true, but [image] has no tags to push".to_string(),
            Some("add a tag that names its registry: tags = [\"registry.example.com/team/app:1\"]".into()),
        ));
    }
    for tag in &t.image.tags {
        let name = tag.get_ref();
        if !unexpanded(name) && !names_registry(name) {
            out.push(loaded.diagnostic(
                tag.span(),
                format!("push = true, but the tag {name:?} names no registry"),
                Some(format!("name the registry first, e.g. \"registry.example.com/{name}\" or \"localhost:5000/{name}\"")),
            ));
        }
    }
}

/// `KEY=value` in the container: a key without `=`, spaces or control characters.
fn check_env_names(loaded: &LoadedManifest, t: &Target, out: &mut Vec<Diagnostic>) {
    let builder_env = t.builder.iter().flat_map(|b| b.env.keys());
    let envs = builder_env
        .map(|k| ("builder.env", k))
        .chain(t.runtime.env.keys().map(|k| ("runtime.env", k)));
    for (what, key) in envs {
        if let Some(problem) =
            env_name_problem(key.get_ref()).filter(|_| !unexpanded(key.get_ref()))
        {
            out.push(loaded.diagnostic(
                key.span(),
                format!("{what} name {:?} {problem}", key.get_ref()),
                Some("name it with letters, digits and `_`, e.g. RUST_LOG, and put the rest in its value".into()),
            ));
        }
    }
}

/// `USER[:GROUP]`, each a name or a numeric id.
fn check_users(loaded: &LoadedManifest, t: &Target, out: &mut Vec<Diagnostic>) {
    let users = [
        (
            "builder.user",
            t.builder.as_ref().and_then(|b| b.user.as_ref()),
        ),
        ("runtime.user", t.runtime.user.as_ref()),
    ];
    for (what, user) in users {
        let Some(user) = user else { continue };
        if let Some(problem) = user_problem(user.get_ref()).filter(|_| !unexpanded(user.get_ref()))
        {
            out.push(loaded.diagnostic(
                user.span(),
                format!("{what} {:?} {problem}", user.get_ref()),
                Some("write USER or USER:GROUP, each a name or a numeric id, e.g. \"65534:65534\" or \"app\"".into()),
            ));
        }
    }
}

/// Labels have a name, and leave dockception's own alone.
fn check_labels(loaded: &LoadedManifest, t: &Target, out: &mut Vec<Diagnostic>) {
    for key in t.runtime.labels.keys() {
        let name = key.get_ref();
        if name.trim().is_empty() {
            out.push(loaded.diagnostic(
                key.span(),
                "a runtime.labels name is empty",
                Some("name the label, e.g. \"org.opencontainers.image.source\"".into()),
            ));
        } else if name == RESERVED_LABEL || name.starts_with(&format!("{RESERVED_LABEL}.")) {
            out.push(loaded.diagnostic(
                key.span(),
                format!("the label {name:?} is dockception's own: it marks the images it makes, so they can be found and cleaned"),
                Some("choose another name, e.g. with your domain: \"com.example.build\"".into()),
            ));
        }
    }
}

/// The program the image runs has a name.
fn check_programs(loaded: &LoadedManifest, t: &Target, out: &mut Vec<Diagnostic>) {
    let runtime = &t.runtime;
    let entrypoint = runtime
        .entrypoint
        .as_ref()
        .filter(|e| !e.get_ref().is_empty());
    // Without an entrypoint, cmd's first word is the program.
    let program = entrypoint
        .map(|e| ("runtime.entrypoint", e))
        .or_else(|| runtime.cmd.as_ref().map(|c| ("runtime.cmd", c)));
    if let Some((what, argv)) = program {
        if argv.get_ref().first().is_some_and(|p| p.trim().is_empty()) {
            out.push(loaded.diagnostic(
                argv.span(),
                format!("{what} starts with an empty program name, which cannot be run"),
                Some("name the program first, e.g. [\"/app\", \"--flag\"]".into()),
            ));
        }
    }
}

/// Cache volumes the engine's local driver can create.
fn check_volume_names(loaded: &LoadedManifest, t: &Target, out: &mut Vec<Diagnostic>) {
    for name in t.caches.iter().filter_map(|c| c.name.as_ref()) {
        if !is_volume_name(name.get_ref()) && !unexpanded(name.get_ref()) {
            out.push(loaded.diagnostic(
                name.span(),
                format!("cache volume name {:?} is not one the engine takes", name.get_ref()),
                Some("use two or more letters, digits, `_`, `.` and `-`, starting with a letter or digit, e.g. \"go-build-cache\"; or leave name out".into()),
            ));
        }
    }
}

/// Paths in the container: no control characters (they end a Dockerfile line), and nothing
/// mounted on `/`, which the engine refuses.
fn check_mount_points(loaded: &LoadedManifest, t: &Target, out: &mut Vec<Diagnostic>) {
    let mut mounted: Vec<(&str, &Spanned<String>)> = Vec::new();
    mounted.extend(t.mounts.iter().map(|m| ("mount target", &m.target)));
    mounted.extend(t.caches.iter().map(|c| ("cache target", &c.target)));
    if let ArtifactSource::Builder(_) = t.artifacts.source() {
        mounted.push(("artifacts.from", &t.artifacts.from));
    }
    if !t.runtime.run.is_empty() {
        mounted.push(("runtime.artifacts_mount", &t.runtime.artifacts_mount));
    }
    for (what, path) in &mounted {
        if path.get_ref().starts_with('/') && normalise_container_path(path.get_ref()) == "/" {
            out.push(loaded.diagnostic(
                path.span(),
                format!("{what} is the container's root, and the engine mounts nothing on /"),
                Some("mount it on a folder, e.g. \"/src\"".into()),
            ));
        }
    }
    let init = match t.runtime.init.get_ref() {
        Init::Path(path) => Some(Spanned::new(t.runtime.init.span(), path.clone())),
        Init::Enabled(_) => None,
    };
    let mut paths: Vec<(&str, &Spanned<String>)> = mounted;
    paths.push(("artifacts.dest", &t.artifacts.dest));
    paths.extend(t.runtime.workdir.as_ref().map(|w| ("runtime.workdir", w)));
    if let Some(b) = &t.builder {
        paths.extend(b.workdir.as_ref().map(|w| ("builder.workdir", w)));
    }
    paths.extend(init.as_ref().map(|i| ("runtime.init", i)));
    for (what, path) in paths {
        if path.get_ref().chars().any(char::is_control) {
            out.push(loaded.diagnostic(
                path.span(),
                format!(
                    "{what} {:?} contains a control character (a newline, a tab…)",
                    path.get_ref()
                ),
                Some("write the path on one line, without control characters".into()),
            ));
        }
    }
}

/// A value that still holds `${`: its variable could not be expanded, which is reported at the
/// reference itself; checking the rest of it would only say the same again.
fn unexpanded(value: &str) -> bool {
    value.contains("${")
}
