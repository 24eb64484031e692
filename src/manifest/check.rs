//! The checks that need only the manifest's text, across the whole file: its form (one image
//! or several targets), artifacts passed between targets in a cycle, and groups. Each target's
//! own settings are checked in `check_target`. All problems are collected.

use toml::Spanned;

use crate::manifest::check_target::check_target;
use crate::manifest::suggest::{quoted, suggestion};
use crate::manifest::{canonical_tag, ArtifactSource, Diagnostic, LoadedManifest, NamedTarget};

/// Every problem the manifest's text shows, in file order.
pub(crate) fn check(loaded: &LoadedManifest) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    check_form(loaded, &mut out);
    let targets = loaded.manifest.targets();
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    for named in &targets {
        check_target(loaded, named, &names, &targets, &mut out);
    }
    check_cycles(loaded, &targets, &mut out);
    check_groups(loaded, &names, &mut out);
    check_shared_tags(loaded, &targets, &mut out);
    out.sort_by_key(|d| (d.line, d.column));
    out
}

/// One image (top-level tables) or several targets, never both, and never neither.
fn check_form(loaded: &LoadedManifest, out: &mut Vec<Diagnostic>) {
    let m = &loaded.manifest;
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

/// Two targets with one tag: the image built last would take it from the other.
fn check_shared_tags(loaded: &LoadedManifest, targets: &[NamedTarget], out: &mut Vec<Diagnostic>) {
    let mut seen: Vec<(String, &str)> = Vec::new();
    for named in targets {
        let mut own: Vec<String> = Vec::new();
        for tag in &named.target.image.tags {
            let canonical = canonical_tag(tag.get_ref());
            if own.contains(&canonical) {
                continue;
            }
            if let Some((_, other)) = seen.iter().find(|(t, _)| *t == canonical) {
                out.push(loaded.diagnostic(
                    tag.span(),
                    format!(
                        "targets `{other}` and `{}` both tag their image {:?}: the one built last would take the tag from the other",
                        named.name,
                        tag.get_ref()
                    ),
                    Some("give each target's image its own tag".into()),
                ));
            }
            own.push(canonical);
        }
        seen.extend(own.into_iter().map(|t| (t, named.name.as_str())));
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
