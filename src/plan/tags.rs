//! The runtime images' tags: the manifest's, replaced target by target by `--tag`.

use std::collections::BTreeMap;

use crate::manifest::NamedTarget;
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
        .map(|t| (t.name.as_str(), t.target.image.tags.clone()))
        .collect();
    let mut replaced: Vec<String> = Vec::new();
    for o in overrides {
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
    Ok(tags)
}
