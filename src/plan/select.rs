//! Which targets a run builds, with the targets they take artifacts from, and in which order:
//! a dependency always before the target that uses its output.

use crate::manifest::suggest::{quoted, suggestion};
use crate::manifest::{ArtifactSource, LoadedManifest, NamedTarget};
use crate::plan::{Error, Result, Selection};

/// Expand groups and the default into target names, refusing unknown names.
pub(crate) fn select(
    loaded: &LoadedManifest,
    names: &[&str],
    selection: &Selection,
) -> Result<Vec<String>> {
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
            let help = suggestion(&name, &known, || {
                format!("the manifest has {}", quoted(&known))
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
pub(crate) fn with_dependencies(named: &[NamedTarget], selected: &[String]) -> Vec<String> {
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
pub(crate) fn build_order(named: &[NamedTarget], needed: &[String]) -> Vec<String> {
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
