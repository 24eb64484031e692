//! `dockception ps`: what dockception has running on the engine, above all the warm builders a
//! build leaves up for the next one.

use crate::engine::ListedContainer;
use crate::{Engine, Error};

pub(super) async fn ps(all: bool) -> Result<(), Error> {
    let engine = Engine::connect().await?;
    let listed = engine.list_dockception_containers().await?;
    out!("{}", to_text(&listed, all));
    Ok(())
}

/// The table `dockception ps` prints: one line per container (by default only those running
/// or just created; `all` adds stopped ones), or one line saying there are none.
pub(super) fn to_text(listed: &[ListedContainer], all: bool) -> String {
    let shown: Vec<&ListedContainer> = listed
        .iter()
        .filter(|c| all || !c.status.starts_with("Exited"))
        .collect();
    if shown.is_empty() {
        return "no dockception container is running on this engine\n".into();
    }
    let rows: Vec<[String; 5]> = shown
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                what(c),
                c.project.clone().unwrap_or_else(|| "-".into()),
                c.image.clone(),
                c.status.clone(),
            ]
        })
        .collect();
    let header = ["NAME", "WHAT", "PROJECT", "IMAGE", "STATUS"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// What a container is for, in words: a warm builder says its target, whether it builds now
/// and when it ends.
fn what(c: &ListedContainer) -> String {
    match c.warm_idle_secs {
        Some(secs) => {
            let target = c.target.as_deref().unwrap_or("?");
            let doing = if c.building {
                "building now".to_string()
            } else {
                format!(
                    "idle, ends after {} without a build",
                    crate::units::duration_words(secs)
                )
            };
            format!("warm builder of target {target} ({doing})")
        }
        None => match c.role.as_str() {
            "builder" => "build in progress".into(),
            "steps" => "runtime steps in progress".into(),
            "" => "dockception container".into(),
            other => format!("{other} (in progress)"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warm(building: bool) -> ListedContainer {
        ListedContainer {
            name: "dockception-warm-app-x-1a2b3c4d5e6f".into(),
            role: "builder".into(),
            project: Some("app-x".into()),
            target: Some("app".into()),
            image: "gcc:local".into(),
            status: "Up 3 minutes".into(),
            warm_idle_secs: Some(600),
            building,
        }
    }

    #[test]
    fn a_warm_builder_says_its_target_and_when_it_ends() {
        let text = to_text(&[warm(false)], false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(
            lines[1].contains("warm builder of target app (idle, ends after 10m without a build)"),
            "{text}"
        );
        assert!(lines[1].ends_with("Up 3 minutes"), "{text}");
        assert!(to_text(&[warm(true)], false).contains("(building now)"));
    }

    #[test]
    fn stopped_containers_show_only_with_all_and_none_says_so() {
        let mut stopped = warm(false);
        stopped.status = "Exited (0) 2 seconds ago".into();
        assert_eq!(
            to_text(&[stopped.clone()], false),
            "no dockception container is running on this engine\n"
        );
        assert!(to_text(&[stopped], true).contains("Exited (0)"));
        assert_eq!(
            to_text(&[], true),
            "no dockception container is running on this engine\n"
        );
    }
}
