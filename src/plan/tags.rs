//! The runtime images' tags: the manifest's, replaced target by target by `--tag`.

use std::collections::BTreeMap;

use crate::manifest::{self, NamedTarget, ReferenceUse};
use crate::plan::{Error, Result, TagOverride};

/// Each target's tags. A `--tag` without a target is for the only selected target; the first
/// `--tag` for a target replaces the manifest's tags, later ones add to it.
pub(crate) fn tags_by_target<'a>(
    named: &'a [NamedTarget],
    selected: &[String],
    overrides: &[TagOverride],
) -> Result<BTreeMap<&'a str, Vec<String>>> {
    let mut tags: BTreeMap<&str, Vec<String>> = named
        .iter()
        .map(|t| {
            let tags = t.target.image.tags.iter().map(|x| x.get_ref().clone());
            (t.name.as_str(), tags.collect())
        })
        .collect();
    let mut replaced: Vec<String> = Vec::new();
    for o in overrides {
        if let Some(problem) = manifest::reference_problem(&o.tag, ReferenceUse::Tag) {
            return Err(Error::Usage {
                message: format!("--tag {}: the image reference {problem}", o.tag),
                help: manifest::reference_help(&o.tag, ReferenceUse::Tag),
            });
        }
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
    shared_tags(&tags, selected)?;
    Ok(tags)
}

/// Two selected targets with one tag (given with `--tag`; the manifest's own are checked with
/// it): the image built last would take the tag from the other.
fn shared_tags(tags: &BTreeMap<&str, Vec<String>>, selected: &[String]) -> Result<()> {
    let mut seen: Vec<(String, &str)> = Vec::new();
    for target in selected {
        let Some(list) = tags.get(target.as_str()) else {
            continue;
        };
        let own: Vec<String> = list.iter().map(|t| manifest::canonical_tag(t)).collect();
        for (tag, canonical) in list.iter().zip(&own) {
            if let Some((_, other)) = seen.iter().find(|(t, _)| t == canonical) {
                return Err(Error::Usage {
                    message: format!(
                        "targets `{other}` and `{target}` would both be tagged {tag}: the image built last would take the tag from the other"
                    ),
                    help: format!("give each target its own tag: --tag {target}=NAME[:TAG]"),
                });
            }
        }
        seen.extend(own.into_iter().map(|t| (t, target.as_str())));
    }
    Ok(())
}
